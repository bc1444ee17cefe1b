//! The fetcher: raw record bytes for many partitions, and ListOffsets.
//!
//! [`fetch_once`] is one Fetch request to one broker for many partitions; it returns each
//! partition's record bytes as a slice of the response frame (no copy), with the high
//! watermark, last stable offset, log start offset and aborted transactions.
//! [`Fetcher`] keeps a position per assigned partition, fetches from every leader concurrently,
//! advances positions past the complete batches it returned, follows leader moves, and applies
//! an [`OffsetReset`] policy on `OFFSET_OUT_OF_RANGE`.
//!
//! Fetch sessions (KIP-227) are not used: every request is a full fetch (`session_epoch = -1`).
//! For a replicator that fetches the same partitions in every request from few brokers, the
//! saving is the per-partition request fields (~30 bytes each), which has not been worth the
//! extra state so far.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchRequest, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{
    ListOffsetsPartition, ListOffsetsRequest, ListOffsetsTopic,
};
use kafka_protocol::messages::{ApiKey, BrokerId, TopicName};
use kafka_protocol::protocol::StrBytes;
use tracing::debug;

use crate::cluster::{BrokerInfo, Cluster, ConnKind};
use crate::error::{Error, ResponseError, Result};
use crate::record::split_batches;

/// Isolation level of fetches and ListOffsets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum IsolationLevel {
    /// Everything up to the high watermark.
    ReadUncommitted = 0,
    /// Up to the last stable offset; aborted transactions listed.
    #[default]
    ReadCommitted = 1,
}

/// What to do when a position is out of range.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum OffsetReset {
    /// Go to the log start offset.
    #[default]
    Earliest,
    /// Go to the end.
    Latest,
    /// Surface the error.
    Error,
}

/// Fetch settings.
#[derive(Clone, Debug)]
pub struct FetcherConfig {
    /// How long the broker may wait for `min_bytes`.
    pub max_wait: Duration,
    /// Bytes the broker waits for.
    pub min_bytes: i32,
    /// Response size limit.
    pub max_bytes: i32,
    /// Per-partition size limit.
    pub partition_max_bytes: i32,
    /// Isolation level.
    pub isolation: IsolationLevel,
    /// Out-of-range policy.
    pub reset: OffsetReset,
}

impl Default for FetcherConfig {
    fn default() -> FetcherConfig {
        FetcherConfig {
            max_wait: Duration::from_millis(500),
            min_bytes: 1,
            max_bytes: 50 * 1024 * 1024,
            partition_max_bytes: 1024 * 1024,
            isolation: IsolationLevel::ReadCommitted,
            reset: OffsetReset::Earliest,
        }
    }
}

/// An aborted transaction reported by a read_committed fetch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AbortedTransaction {
    /// Producer id.
    pub producer_id: i64,
    /// First offset of the aborted transaction.
    pub first_offset: i64,
}

/// One partition of a fetch response.
#[derive(Clone, Debug)]
pub struct FetchedPartition {
    /// Topic.
    pub topic: Arc<str>,
    /// Partition.
    pub partition: i32,
    /// The offset that was asked for.
    pub fetch_offset: i64,
    /// Error, if any (the fetcher handles the retriable ones itself).
    pub error: Option<ResponseError>,
    /// High watermark.
    pub high_watermark: i64,
    /// Last stable offset (-1 if unknown).
    pub last_stable_offset: i64,
    /// Log start offset (-1 if unknown).
    pub log_start_offset: i64,
    /// Aborted transactions overlapping the returned data (read_committed only).
    pub aborted: Vec<AbortedTransaction>,
    /// Raw record batches, a slice of the response (may end in a partial batch).
    pub records: Bytes,
}

/// A partition to fetch.
#[derive(Clone, Debug)]
pub struct FetchPosition {
    /// Topic.
    pub topic: Arc<str>,
    /// Partition.
    pub partition: i32,
    /// Offset to fetch from.
    pub offset: i64,
    /// Current leader epoch, or -1.
    pub leader_epoch: i32,
}

/// One Fetch request to `broker` for `positions` (one attempt, no retries).
pub async fn fetch_once(
    cluster: &Cluster,
    broker: &BrokerInfo,
    config: &FetcherConfig,
    positions: &[FetchPosition],
) -> Result<Vec<FetchedPartition>> {
    let conn = cluster.connection(broker, ConnKind::Fetch).await?;
    let version = conn.version(ApiKey::Fetch)?;
    let mut topics: Vec<FetchTopic> = Vec::new();
    let mut topic_index: HashMap<&str, usize> = HashMap::new();
    for p in positions {
        let fp = FetchPartition::default()
            .with_partition(p.partition)
            .with_current_leader_epoch(p.leader_epoch)
            .with_fetch_offset(p.offset)
            .with_log_start_offset(-1)
            .with_partition_max_bytes(config.partition_max_bytes);
        match topic_index.get(&*p.topic) {
            Some(&i) => topics[i].partitions.push(fp),
            None => {
                topic_index.insert(&p.topic, topics.len());
                topics.push(
                    FetchTopic::default()
                        .with_topic(TopicName(StrBytes::from_string(p.topic.to_string())))
                        .with_partitions(vec![fp]),
                );
            }
        }
    }
    let req = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(config.max_wait.as_millis().min(i32::MAX as u128) as i32)
        .with_min_bytes(config.min_bytes)
        .with_max_bytes(config.max_bytes)
        .with_isolation_level(config.isolation as i8)
        .with_session_id(0)
        .with_session_epoch(-1)
        .with_topics(topics);
    let resp = conn.send_versioned(&req, version).await?;
    let who = format!("{}@{}", broker.id, broker.addr());
    if let Some(e) = Error::broker(ApiKey::Fetch, who, None, resp.error_code, None) {
        return Err(e);
    }
    let asked: HashMap<(&str, i32), (&Arc<str>, i64)> = positions
        .iter()
        .map(|q| ((&*q.topic, q.partition), (&q.topic, q.offset)))
        .collect();
    let mut out = Vec::with_capacity(positions.len());
    for t in resp.responses {
        let name: &str = &t.topic.0;
        let mut topic: Option<Arc<str>> = None;
        for p in t.partitions {
            let (topic, fetch_offset) = match asked.get(&(name, p.partition_index)) {
                Some((t, offset)) => ((*t).clone(), *offset),
                None => (topic.get_or_insert_with(|| Arc::from(name)).clone(), -1),
            };
            out.push(FetchedPartition {
                topic,
                partition: p.partition_index,
                fetch_offset,
                error: ResponseError::try_from_code(p.error_code),
                high_watermark: p.high_watermark,
                last_stable_offset: p.last_stable_offset,
                log_start_offset: p.log_start_offset,
                aborted: p
                    .aborted_transactions
                    .unwrap_or_default()
                    .into_iter()
                    .map(|a| AbortedTransaction {
                        producer_id: a.producer_id.0,
                        first_offset: a.first_offset,
                    })
                    .collect(),
                records: p.records.unwrap_or_default(),
            });
        }
    }
    Ok(out)
}

/// Fetches one partition from `offset` through its current leader, retried by the cluster's
/// retry loop (leader moves, transport errors). For one-off reads: internal topics, resume
/// checks, summaries. Partition-level errors are returned in the result, not raised.
pub async fn fetch_partition(
    cluster: &Cluster,
    topic: &str,
    partition: i32,
    offset: i64,
    config: &FetcherConfig,
) -> Result<FetchedPartition> {
    let topic_arc: Arc<str> = Arc::from(topic);
    let parts = cluster
        .retry("fetch partition", || async {
            let leader = cluster.leader(topic, partition).await?;
            fetch_once(
                cluster,
                &leader,
                config,
                &[FetchPosition {
                    topic: topic_arc.clone(),
                    partition,
                    offset,
                    leader_epoch: -1,
                }],
            )
            .await
        })
        .await?;
    parts
        .into_iter()
        .find(|p| p.partition == partition && *p.topic == *topic)
        .ok_or_else(|| {
            Error::Metadata(format!(
                "Fetch response lacks topic {topic} partition {partition}"
            ))
        })
}

/// Which offset ListOffsets looks up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OffsetSpec {
    /// Log start offset.
    Earliest,
    /// End offset (high watermark, or last stable offset for read_committed).
    Latest,
    /// First offset whose timestamp is ≥ the given ms.
    Timestamp(i64),
}

impl OffsetSpec {
    fn wire(self) -> i64 {
        match self {
            OffsetSpec::Earliest => -2,
            OffsetSpec::Latest => -1,
            OffsetSpec::Timestamp(t) => t,
        }
    }
}

/// A ListOffsets answer: offset -1 when no record matches a timestamp.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListedOffset {
    /// Offset.
    pub offset: i64,
    /// Timestamp of that record (-1 for earliest/latest).
    pub timestamp: i64,
}

/// ListOffsets for one partition, retried through the cluster's retry loop.
pub async fn list_offset(
    cluster: &Cluster,
    topic: &str,
    partition: i32,
    spec: OffsetSpec,
    isolation: IsolationLevel,
) -> Result<ListedOffset> {
    cluster
        .retry("ListOffsets", || async {
            let leader = cluster.leader(topic, partition).await?;
            let conn = cluster.connection(&leader, ConnKind::Control).await?;
            let req = ListOffsetsRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_isolation_level(isolation as i8)
                .with_topics(vec![ListOffsetsTopic::default()
                    .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                    .with_partitions(vec![ListOffsetsPartition::default()
                        .with_partition_index(partition)
                        .with_current_leader_epoch(-1)
                        .with_timestamp(spec.wire())])]);
            let resp = conn.send(&req).await?;
            let p = resp
                .topics
                .iter()
                .flat_map(|t| t.partitions.iter())
                .find(|p| p.partition_index == partition)
                .ok_or_else(|| {
                    Error::Metadata(format!("ListOffsets response lacks {topic}/{partition}"))
                })?;
            if let Some(e) = Error::broker(
                ApiKey::ListOffsets,
                format!("{}@{}", leader.id, leader.addr()),
                Some(format!("topic {topic} partition {partition}")),
                p.error_code,
                None,
            ) {
                return Err(e);
            }
            Ok(ListedOffset {
                offset: p.offset,
                timestamp: p.timestamp,
            })
        })
        .await
}

/// Keeps positions for assigned partitions and fetches from their leaders.
#[derive(Debug)]
pub struct Fetcher {
    cluster: Arc<Cluster>,
    config: FetcherConfig,
    positions: HashMap<(Arc<str>, i32), i64>,
    paused: std::collections::HashSet<(Arc<str>, i32)>,
}

impl Fetcher {
    /// A fetcher with no assignment.
    pub fn new(cluster: Arc<Cluster>, config: FetcherConfig) -> Fetcher {
        Fetcher {
            cluster,
            config,
            positions: HashMap::new(),
            paused: Default::default(),
        }
    }

    /// The settings.
    pub fn config(&self) -> &FetcherConfig {
        &self.config
    }

    /// Starts fetching `topic`/`partition` at `offset`.
    pub fn assign(&mut self, topic: &str, partition: i32, offset: i64) {
        self.cluster.track_topics([topic]);
        self.positions.insert((Arc::from(topic), partition), offset);
    }

    /// Stops fetching a partition.
    pub fn unassign(&mut self, topic: &str, partition: i32) {
        let key = (Arc::from(topic), partition);
        self.positions.remove(&key);
        self.paused.remove(&key);
    }

    /// Moves a partition's position.
    pub fn seek(&mut self, topic: &str, partition: i32, offset: i64) {
        if let Some(p) = self.positions.get_mut(&(Arc::from(topic), partition)) {
            *p = offset;
        }
    }

    /// Skips a partition in fetches until [`resume`](Self::resume) (backpressure).
    pub fn pause(&mut self, topic: &str, partition: i32) {
        self.paused.insert((Arc::from(topic), partition));
    }

    /// Undoes [`pause`](Self::pause).
    pub fn resume(&mut self, topic: &str, partition: i32) {
        self.paused.remove(&(Arc::from(topic), partition));
    }

    /// The next offset to fetch for a partition.
    pub fn position(&self, topic: &str, partition: i32) -> Option<i64> {
        self.positions.get(&(Arc::from(topic), partition)).copied()
    }

    /// One round: fetches every unpaused partition from its leader (brokers in parallel) and
    /// returns what came back. Positions move past the complete batches returned. Partitions
    /// with retriable errors are left for the next round (metadata refreshed); out-of-range
    /// positions are reset by policy.
    pub async fn poll(&mut self) -> Result<Vec<FetchedPartition>> {
        let md = self.cluster.metadata();
        let mut by_leader: HashMap<i32, (BrokerInfo, Vec<FetchPosition>)> = HashMap::new();
        let mut missing = false;
        for ((topic, partition), offset) in &self.positions {
            if self.paused.contains(&(topic.clone(), *partition)) {
                continue;
            }
            let info = md.partition(topic, *partition);
            let Some((leader, epoch)) = info.filter(|p| p.leader >= 0).and_then(|p| {
                md.brokers
                    .get(&p.leader)
                    .map(|b| (b.clone(), p.leader_epoch))
            }) else {
                missing = true;
                continue;
            };
            by_leader
                .entry(leader.id)
                .or_insert_with(|| (leader, Vec::new()))
                .1
                .push(FetchPosition {
                    topic: topic.clone(),
                    partition: *partition,
                    offset: *offset,
                    leader_epoch: epoch,
                });
        }
        if missing {
            self.cluster.refresh_metadata().await?;
        }
        if by_leader.is_empty() {
            if !missing {
                tokio::time::sleep(self.config.max_wait.min(Duration::from_millis(100))).await;
            }
            return Ok(Vec::new());
        }
        let cluster = &self.cluster;
        let config = &self.config;
        let results = join_all(
            by_leader
                .into_values()
                .map(|(broker, positions)| async move {
                    let r = fetch_once(cluster, &broker, config, &positions).await;
                    (broker, r)
                }),
        )
        .await;
        let mut out = Vec::new();
        let mut refresh = false;
        let mut resets = Vec::new();
        for (broker, r) in results {
            match r {
                Err(e) if e.is_retriable() => {
                    debug!(broker = %broker.addr(), error = %e, "fetch failed, will retry");
                    refresh |= e.needs_metadata_refresh();
                }
                Err(e) => return Err(e),
                Ok(parts) => {
                    for p in parts {
                        match p.error {
                            None => {
                                let mut next = None;
                                for b in split_batches(p.records.clone()) {
                                    match b {
                                        Ok(b) => next = Some(b.next_offset()),
                                        Err(e) => {
                                            return Err(Error::Record(e));
                                        }
                                    }
                                }
                                if let Some(n) = next {
                                    let key = (p.topic.clone(), p.partition);
                                    if let Some(pos) = self.positions.get_mut(&key) {
                                        if n > *pos {
                                            *pos = n;
                                        }
                                    }
                                }
                                out.push(p);
                            }
                            Some(ResponseError::OffsetOutOfRange) => resets.push(p),
                            Some(e) if crate::error::is_retriable_code(e) => {
                                refresh |= crate::error::refreshes_metadata(e);
                            }
                            Some(e) => {
                                return Err(Error::Broker {
                                    api: ApiKey::Fetch,
                                    broker: format!("{}@{}", broker.id, broker.addr()),
                                    resource: Some(format!(
                                        "topic {} partition {}",
                                        p.topic, p.partition
                                    )),
                                    error: e,
                                    message: None,
                                })
                            }
                        }
                    }
                }
            }
        }
        for p in resets {
            let spec = match self.config.reset {
                OffsetReset::Earliest => OffsetSpec::Earliest,
                OffsetReset::Latest => OffsetSpec::Latest,
                OffsetReset::Error => {
                    return Err(Error::Broker {
                        api: ApiKey::Fetch,
                        broker: String::new(),
                        resource: Some(format!(
                            "topic {} partition {} offset {}",
                            p.topic, p.partition, p.fetch_offset
                        )),
                        error: ResponseError::OffsetOutOfRange,
                        message: None,
                    })
                }
            };
            let listed = list_offset(
                &self.cluster,
                &p.topic,
                p.partition,
                spec,
                self.config.isolation,
            )
            .await?;
            debug!(topic = %p.topic, partition = p.partition, from = p.fetch_offset, to = listed.offset, "offset out of range, reset");
            self.seek(&p.topic, p.partition, listed.offset);
        }
        if refresh {
            self.cluster.refresh_metadata().await?;
        }
        Ok(out)
    }
}

/// Runs futures concurrently on the current task and collects their outputs in order (a small
/// `futures::future::join_all`, to avoid the dependency).
pub async fn join_all<F: std::future::Future>(futs: impl IntoIterator<Item = F>) -> Vec<F::Output> {
    let mut set = Vec::new();
    for f in futs {
        set.push(Box::pin(f));
    }
    let mut outputs: Vec<Option<F::Output>> = (0..set.len()).map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, f) in set.iter_mut().enumerate() {
            if outputs[i].is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => outputs[i] = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    outputs.into_iter().map(|o| o.expect("all ready")).collect()
}
