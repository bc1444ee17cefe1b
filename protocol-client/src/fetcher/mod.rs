//! The fetcher: raw record bytes for many partitions, and ListOffsets.
//!
//! [`fetch_once`] is one Fetch request to one broker for many partitions; it returns each
//! partition's record bytes as a slice of the response frame (no copy), with the high
//! watermark, last stable offset, log start offset and aborted transactions.
//! [`Fetcher`] keeps a position per assigned partition, fetches from every leader concurrently,
//! advances positions past the complete batches it returned, follows leader moves, and handles
//! `OFFSET_OUT_OF_RANGE` observably: ListOffsets tells a position below the log start (records
//! deleted before they were read: reset by the [`OffsetReset`] policy) from one past the end
//! (topic re-created or log truncated: the partition is paused, never reset), and every such
//! event is reported ([`Fetcher::take_out_of_range`]) and logged.
//!
//! [`Fetcher::poll`] is cancel-safe: it decides everything first, awaits everything, and only
//! then applies the round's changes in one synchronous step, so a poll dropped by a `select!`
//! (or failing) leaves every position where it was and the next poll fetches the same records.
//! Each broker's request starts at a rotating cursor, so partitions share `max_bytes` fairly
//! (see [`Fetcher`]).
//!
//! [`Fetcher`] keeps an incremental fetch session (KIP-227) with each broker it fetches from:
//! after the first (full) request of a session, a request names only the partitions whose
//! position or leader epoch changed since the broker last heard of them, and those to drop
//! (forgotten); the broker answers only for partitions with something new (records, a moved
//! high watermark, log start or last stable offset, an error). An idle replicator with
//! thousands of partitions then sends and reads near-empty requests instead of listing every
//! partition several times a second. A session is started again whenever its state is in
//! doubt (any failed request, an answer outside the session); a session the broker no longer
//! knows (`FETCH_SESSION_ID_NOT_FOUND`, `INVALID_FETCH_SESSION_EPOCH`: evicted, or the broker
//! restarted) is replaced at once by a full request, not counted as a broker failure. A session
//! given up is named in the next full request so the broker closes it, and a dropped
//! [`Fetcher`] closes its sessions (final epoch). A broker that opens no session
//! (`session_id` 0: no free slot, or no support) gets full requests. One-off reads
//! ([`fetch_once`], [`fetch_partition`]) use no session. In a session the broker serves
//! partitions in its own order, moving those that returned records to the back (Kafka's
//! `FetchSession`), which keeps the sharing of `max_bytes` fair; the cursor below orders full
//! requests. A high watermark change in an answer that is dropped (a cancelled poll, or a
//! partition sought or paused meanwhile) is reported again only at its next change: records
//! are never lost that way, but a lag reading may lag.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::fetch_request::{
    FetchPartition, FetchRequest, FetchTopic, ForgottenTopic,
};
use kafka_protocol::messages::list_offsets_request::{
    ListOffsetsPartition, ListOffsetsRequest, ListOffsetsTopic,
};
use kafka_protocol::messages::{ApiKey, BrokerId, TopicName};
use kafka_protocol::protocol::StrBytes;
use tracing::{debug, info, warn};

use crate::cluster::{BrokerInfo, Cluster, ConnKind};
use crate::error::{Error, ResponseError, Result};
use crate::fasthash::{FastMap, FastSet};
use crate::record::split_batches;
use crate::retry::{Backoff, RetryPolicy};

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
    /// Whether [`Fetcher`] keeps an incremental fetch session (KIP-227) per broker.
    pub sessions: bool,
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
            sessions: true,
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

/// One Fetch request to `broker` for `positions` (one attempt, no retries, no session).
pub async fn fetch_once(
    cluster: &Cluster,
    broker: &BrokerInfo,
    config: &FetcherConfig,
    positions: &[FetchPosition],
) -> Result<Vec<FetchedPartition>> {
    fetch_with_session(cluster, broker, config, positions, None).await
}

/// What a broker's incremental fetch session (KIP-227) holds, as this client last left it.
#[derive(Debug, Default)]
pub struct FetchSession {
    /// The broker's session id; 0: no session (the next request asks for one).
    id: i32,
    /// A session given up whose id the next full request names, so that the broker closes it
    /// (a full request naming a session closes it; Java's `nextCloseExistingAttemptNew`).
    closing: i32,
    /// The epoch the next request carries (1 and up while a session is open).
    epoch: i32,
    /// Per topic and partition in the session: the fetch offset and leader epoch the broker
    /// holds.
    sent: FastMap<Arc<str>, FastMap<i32, (i64, i32)>>,
    /// Partitions named in the last request (for tests and metrics).
    last_listed: usize,
}

impl FetchSession {
    /// Whether a session is open.
    pub fn is_open(&self) -> bool {
        self.id != 0
    }

    /// How many partitions the last request named.
    pub fn last_listed(&self) -> usize {
        self.last_listed
    }

    /// The session id, epoch, partitions to name and partitions to forget in a request for
    /// `positions` (every partition wanted from this broker now).
    fn plan<'a>(
        &self,
        positions: &'a [FetchPosition],
    ) -> (i32, i32, Vec<&'a FetchPosition>, Vec<Key>) {
        if self.id == 0 {
            // A full request that opens a session (and closes the one given up, if any).
            return (self.closing, 0, positions.iter().collect(), Vec::new());
        }
        // Positions name distinct partitions: when every one of `sent` is among them, nothing
        // is to be forgotten, and the set of wanted partitions is not built.
        let mut in_session = 0;
        // Positions come a topic at a time: its partitions' map is looked up once per run.
        type Parts = FastMap<i32, (i64, i32)>;
        let mut topic: Option<(&Arc<str>, Option<&Parts>)> = None;
        let named = positions
            .iter()
            .filter(|p| {
                let parts = match topic {
                    Some((t, parts)) if Arc::ptr_eq(t, &p.topic) || **t == *p.topic => parts,
                    _ => {
                        let parts = self.sent.get(&p.topic);
                        topic = Some((&p.topic, parts));
                        parts
                    }
                };
                match parts.and_then(|m| m.get(&p.partition)) {
                    Some(at) => {
                        in_session += 1;
                        *at != (p.offset, p.leader_epoch)
                    }
                    None => true,
                }
            })
            .collect();
        let sent: usize = self.sent.values().map(|m| m.len()).sum();
        let forgotten = if in_session == sent {
            Vec::new()
        } else {
            let wanted: HashSet<(&str, i32)> =
                positions.iter().map(|p| (&*p.topic, p.partition)).collect();
            self.sent
                .iter()
                .flat_map(|(t, m)| m.keys().map(move |p| (t, *p)))
                .filter(|(t, p)| !wanted.contains(&(&***t, *p)))
                .map(|(t, p)| (t.clone(), p))
                .collect()
        };
        (self.id, self.epoch, named, forgotten)
    }

    /// After a successful answer to a request planned by [`plan`](Self::plan).
    fn answered(
        &mut self,
        epoch: i32,
        response_id: i32,
        named: &[&FetchPosition],
        forgotten: &[Key],
    ) {
        self.last_listed = named.len();
        if epoch > 0 && response_id != self.id {
            // The broker answered outside the session (it closed it): start again.
            self.reset(response_id != 0);
            return;
        }
        if epoch == 0 {
            self.sent.clear();
            self.closing = 0;
            self.id = response_id;
            self.epoch = 1;
            if response_id == 0 {
                return;
            }
        } else {
            // Epochs run 1..=i32::MAX, then wrap to 1 (Kafka's `FetchMetadata.nextEpoch`).
            self.epoch = if self.epoch == i32::MAX {
                1
            } else {
                self.epoch + 1
            };
            for (t, p) in forgotten {
                if let Some(m) = self.sent.get_mut(t) {
                    m.remove(p);
                    if m.is_empty() {
                        self.sent.remove(t);
                    }
                }
            }
        }
        for p in named {
            self.sent
                .entry(p.topic.clone())
                .or_default()
                .insert(p.partition, (p.offset, p.leader_epoch));
        }
    }

    /// Forgets the session: its state on the broker is in doubt. With `close`, the next full
    /// request asks the broker to close it.
    fn reset(&mut self, close: bool) {
        self.closing = if close { self.id } else { 0 };
        self.id = 0;
        self.epoch = 0;
        self.sent.clear();
    }
}

/// One Fetch request to `broker` for `positions`, in `session` when given: then only what
/// changed since the session's last request is named, and the answer covers only partitions
/// with something new. The session is updated when the broker answered, and reset when the
/// request failed (its state on the broker is then unknown).
async fn fetch_with_session(
    cluster: &Cluster,
    broker: &BrokerInfo,
    config: &FetcherConfig,
    positions: &[FetchPosition],
    session: Option<&std::sync::Mutex<FetchSession>>,
) -> Result<Vec<FetchedPartition>> {
    fn lock(s: &std::sync::Mutex<FetchSession>) -> std::sync::MutexGuard<'_, FetchSession> {
        s.lock().unwrap_or_else(|p| p.into_inner())
    }
    // A session the broker no longer knows (evicted, or the broker restarted) is normal: the
    // request is made again at once as a full one, without counting as a broker failure.
    let mut attempts = 0;
    loop {
        attempts += 1;
        let (session_id, session_epoch, named, forgotten) = match session {
            Some(s) => lock(s).plan(positions),
            None => (0, -1, positions.iter().collect(), Vec::new()),
        };
        let result = fetch_request(
            cluster,
            broker,
            config,
            positions,
            (session_id, session_epoch),
            &named,
            &forgotten,
        )
        .await;
        let Some(s) = session else {
            return result.map(|(_, _, parts)| parts);
        };
        let mut s = lock(s);
        match result {
            Ok((sent_epoch, id, parts)) => {
                if sent_epoch == session_epoch {
                    s.answered(session_epoch, id, &named, &forgotten);
                } else {
                    // The broker's Fetch version has no sessions: a plain request was sent.
                    s.reset(false);
                }
                return Ok(parts);
            }
            Err(e) => {
                let lost = matches!(
                    e.response_error(),
                    Some(ResponseError::FetchSessionIdNotFound)
                );
                let stale = matches!(
                    e.response_error(),
                    Some(ResponseError::InvalidFetchSessionEpoch)
                );
                debug!(broker = %broker.addr(), session_id, session_epoch, error = %e, "fetch session started again");
                // A session the broker no longer has needs no closing; any other is closed.
                s.reset(!lost);
                if (lost || stale) && session_epoch > 0 && attempts == 1 {
                    continue;
                }
                return Err(e);
            }
        }
    }
}

/// The Fetch request itself: `named` partitions (a subset of `positions` in a session, all of
/// them otherwise), `forgotten` ones dropped from the session; answers are matched to
/// `positions` for their fetch offsets. Returns the session epoch actually sent (-1 when the
/// broker's Fetch version has no sessions), the response's session id and the partitions.
async fn fetch_request(
    cluster: &Cluster,
    broker: &BrokerInfo,
    config: &FetcherConfig,
    positions: &[FetchPosition],
    (session_id, session_epoch): (i32, i32),
    named: &[&FetchPosition],
    forgotten: &[Key],
) -> Result<(i32, i32, Vec<FetchedPartition>)> {
    let conn = cluster.connection(broker, ConnKind::Fetch).await?;
    let version = conn.version(ApiKey::Fetch)?;
    // Sessions need Fetch v7.
    let (session_id, session_epoch) = if version >= 7 {
        (session_id, session_epoch)
    } else {
        (0, -1)
    };
    let named: Vec<&FetchPosition> = if version >= 7 {
        named.to_vec()
    } else {
        positions.iter().collect()
    };
    let mut topics: Vec<FetchTopic> = Vec::new();
    let mut topic_index: HashMap<&str, usize> = HashMap::new();
    for p in named {
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
    let mut forgotten_topics: Vec<ForgottenTopic> = Vec::new();
    if version >= 7 {
        let mut by_topic: HashMap<&str, Vec<i32>> = HashMap::new();
        for (t, p) in forgotten {
            by_topic.entry(t).or_default().push(*p);
        }
        for (t, partitions) in by_topic {
            forgotten_topics.push(
                ForgottenTopic::default()
                    .with_topic(TopicName(StrBytes::from_string(t.to_string())))
                    .with_partitions(partitions),
            );
        }
    }
    let req = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(config.max_wait.as_millis().min(i32::MAX as u128) as i32)
        .with_min_bytes(config.min_bytes)
        .with_max_bytes(config.max_bytes)
        .with_isolation_level(config.isolation as i8)
        .with_session_id(session_id)
        .with_session_epoch(session_epoch)
        .with_topics(topics)
        .with_forgotten_topics_data(forgotten_topics);
    let resp = conn.send_versioned(&req, version).await?;
    cluster.note_throttle(broker.id, ApiKey::Fetch, version, resp.throttle_time_ms);
    let who = format!("{}@{}", broker.id, broker.addr());
    if let Some(e) = Error::broker(ApiKey::Fetch, who, None, resp.error_code, None) {
        return Err(e);
    }
    // Built only for an answer that holds partitions: an idle session's answer holds none, and
    // this request may stand for thousands of positions.
    let asked: HashMap<(&str, i32), (&Arc<str>, i64)> =
        if resp.responses.iter().any(|t| !t.partitions.is_empty()) {
            positions
                .iter()
                .map(|q| ((&*q.topic, q.partition), (&q.topic, q.offset)))
                .collect()
        } else {
            HashMap::new()
        };
    let mut out = Vec::new();
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
    Ok((session_epoch, resp.session_id, out))
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
        .retry("ListOffsets", || {
            list_offset_once(cluster, topic, partition, spec, isolation)
        })
        .await
}

/// The end of `topic`/`partition`'s log on its leader, uncommitted records included: the end
/// offset of the leader's current epoch (OffsetForLeaderEpoch, KIP-320, asked as a consumer),
/// which Kafka does not bound by the high watermark. Records between the high watermark and
/// this end were appended but are not yet replicated to the in-sync replicas (acks=all waits
/// for them): a client reading up to the high watermark does not see them yet. `None` when the
/// broker gives no answer for the epoch. One attempt.
pub async fn log_end_offset(cluster: &Cluster, topic: &str, partition: i32) -> Result<Option<i64>> {
    use kafka_protocol::messages::offset_for_leader_epoch_request::{
        OffsetForLeaderEpochRequest, OffsetForLeaderPartition, OffsetForLeaderTopic,
    };
    let leader = cluster.leader(topic, partition).await?;
    let epoch = cluster
        .metadata()
        .partition(topic, partition)
        .map_or(-1, |p| p.leader_epoch);
    if epoch < 0 {
        return Ok(None);
    }
    let conn = cluster.connection(&leader, ConnKind::Control).await?;
    let req = OffsetForLeaderEpochRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![OffsetForLeaderTopic::default()
            .with_topic(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partitions(vec![OffsetForLeaderPartition::default()
                .with_partition(partition)
                .with_current_leader_epoch(epoch)
                .with_leader_epoch(epoch)])]);
    let resp = conn.send(&req).await?;
    let Some(p) = resp
        .topics
        .iter()
        .flat_map(|t| t.partitions.iter())
        .find(|p| p.partition == partition)
    else {
        return Ok(None);
    };
    if let Some(e) = Error::broker(
        ApiKey::OffsetForLeaderEpoch,
        format!("{}@{}", leader.id, leader.addr()),
        Some(format!("topic {topic} partition {partition}")),
        p.error_code,
        None,
    ) {
        return Err(e);
    }
    Ok((p.leader_epoch == epoch && p.end_offset >= 0).then_some(p.end_offset))
}

/// Which of `partitions` of `topic` are not served by their leader yet (ListOffsets) (a
/// broker names a freshly created partition's leader in metadata before it has created the
/// partition's log, and answers NOT_LEADER_OR_FOLLOWER meanwhile; a leader that cannot be
/// reached serves none of its partitions). One request per leader, one attempt: a caller
/// waiting for a new topic polls this instead of retrying a request per partition, which at
/// thousands of partitions keeps the broker that is creating them busy. A leader that refuses
/// this client (TLS, SASL) fails it: no poll would ever succeed.
pub async fn partitions_not_ready(
    cluster: &Cluster,
    topic: &str,
    partitions: &[i32],
) -> Result<Vec<i32>> {
    let md = cluster.metadata();
    let mut by_leader: std::collections::BTreeMap<i32, Vec<i32>> = Default::default();
    let mut not_ready = Vec::new();
    for &partition in partitions {
        match md.partition(topic, partition) {
            Some(p) if p.leader >= 0 && md.brokers.contains_key(&p.leader) => {
                by_leader.entry(p.leader).or_default().push(partition)
            }
            _ => not_ready.push(partition),
        }
    }
    for (leader, wanted) in by_leader {
        let broker = md.brokers[&leader].clone();
        // A leader that cannot be reached serves none of its partitions yet; one that refuses
        // this client (TLS, SASL) never will.
        let conn = match cluster.connection(&broker, ConnKind::Control).await {
            Ok(conn) => conn,
            Err(e) if e.is_security() => return Err(e),
            Err(_) => {
                not_ready.extend(wanted);
                continue;
            }
        };
        let req = ListOffsetsRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_topics(vec![ListOffsetsTopic::default()
                .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                .with_partitions(
                    wanted
                        .iter()
                        .map(|&p| {
                            ListOffsetsPartition::default()
                                .with_partition_index(p)
                                .with_current_leader_epoch(-1)
                                .with_timestamp(OffsetSpec::Latest.wire())
                        })
                        .collect(),
                )]);
        let resp = match conn.send(&req).await {
            Ok(resp) => resp,
            Err(e) if e.is_security() => return Err(e.into()),
            Err(_) => {
                not_ready.extend(wanted);
                continue;
            }
        };
        let answered: std::collections::HashSet<i32> = resp
            .topics
            .iter()
            .flat_map(|t| t.partitions.iter())
            .filter(|p| p.error_code == 0)
            .map(|p| p.partition_index)
            .collect();
        not_ready.extend(wanted.into_iter().filter(|p| !answered.contains(p)));
    }
    not_ready.sort_unstable();
    Ok(not_ready)
}

/// ListOffsets for one partition through its current leader, one attempt.
async fn list_offset_once(
    cluster: &Cluster,
    topic: &str,
    partition: i32,
    spec: OffsetSpec,
    isolation: IsolationLevel,
) -> Result<ListedOffset> {
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
}

/// Which end of the log a position fell off (OFFSET_OUT_OF_RANGE, classified with ListOffsets).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OutOfRangeKind {
    /// The position is below the log start offset: records `fetch_offset..log_start_offset`
    /// were deleted (retention, DeleteRecords) before they were read. Data loss.
    BelowLogStart,
    /// The position is past the end of the log: the topic was re-created or the log was
    /// truncated (unclean leader election). The fetcher does not reset such a position: it
    /// pauses the partition and leaves the decision to the caller.
    AboveLogEnd,
}

impl OutOfRangeKind {
    /// Classifies `fetch_offset` against the log as ListOffsets sees it now: below `log_start`
    /// (earliest), above `high_watermark` (latest, read_uncommitted), or `None` when it is
    /// within the log again (the leader or the log start moved between Fetch and ListOffsets:
    /// fetch again, do not reset).
    pub fn classify(fetch_offset: i64, log_start: i64, high_watermark: i64) -> Option<Self> {
        if fetch_offset < log_start {
            Some(OutOfRangeKind::BelowLogStart)
        } else if fetch_offset > high_watermark {
            Some(OutOfRangeKind::AboveLogEnd)
        } else {
            None
        }
    }
}

impl std::fmt::Display for OutOfRangeKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            OutOfRangeKind::BelowLogStart => {
                "below the log start (records were deleted before they were read)"
            }
            OutOfRangeKind::AboveLogEnd => {
                "past the end of the log (topic re-created or log truncated)"
            }
        })
    }
}

/// An OFFSET_OUT_OF_RANGE the fetcher met, and what it did about it. Stored when a
/// [`Fetcher::poll`] completes; drained with [`Fetcher::take_out_of_range`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutOfRange {
    /// Topic.
    pub topic: Arc<str>,
    /// Partition.
    pub partition: i32,
    /// The position that was out of range.
    pub fetch_offset: i64,
    /// The log start offset (ListOffsets earliest) when it was classified.
    pub log_start_offset: i64,
    /// The end of the log (ListOffsets latest, read_uncommitted) when it was classified.
    pub high_watermark: i64,
    /// Where the position was reset to by the [`OffsetReset`] policy (`BelowLogStart`);
    /// `None` when it was not reset (`AboveLogEnd`: the partition is paused at `fetch_offset`).
    pub reset_to: Option<i64>,
    /// Which end of the log.
    pub kind: OutOfRangeKind,
}

/// At most this many [`OutOfRange`] reports are kept for [`Fetcher::take_out_of_range`]; older
/// ones are dropped (each was also logged).
const MAX_OUT_OF_RANGE_REPORTS: usize = 10_000;

type Key = (Arc<str>, i32);

/// Keeps positions for assigned partitions and fetches from their leaders.
///
/// Request order: every assigned partition has a place in one cyclic order (assignment order).
/// Each broker's request follows that order from a per-broker cursor, and after a round the
/// cursor moves to the first partition that had records available but got no complete batch
/// because the response ran out of room (`max_bytes`) or its first batch was larger than
/// `partition_max_bytes`. That partition leads the next request, and Kafka returns at least one
/// whole batch for the first non-empty partition of a request whatever the limits (KIP-74), so
/// no partition waits behind others forever and an oversized batch gets through. (A request
/// names each topic once, so the cursor topic's partitions that come before the cursor ride
/// along right after it: sharing is fair to within that, and nobody is starved.) Cost per
/// round: one pass over the assignment and a rotation of each broker's list.
///
/// Brokers are independent: each broker has at most one Fetch in flight, as a task of its own
/// that outlives the `poll` that sent it, and a poll returns as soon as one broker has
/// answered. A broker that does not answer (a cut network path, a host that died without
/// closing its connections) holds back only its own partitions until the request times out;
/// the others keep flowing (before, every round waited for the slowest broker). A partition
/// is never in two requests at once, and an answer is used only for partitions still assigned,
/// unpaused and at the position it was fetched from (a `seek` or `unassign` meanwhile drops
/// it; the records are fetched again from the new position).
#[derive(Debug)]
pub struct Fetcher {
    cluster: Arc<Cluster>,
    config: FetcherConfig,
    positions: FastMap<Key, i64>,
    /// Every assigned partition, in assignment order: the cyclic order requests follow.
    order: Vec<Key>,
    /// Per broker id: the index in `order` its next request starts at.
    cursors: HashMap<i32, usize>,
    paused: FastSet<Key>,
    out_of_range: Vec<OutOfRange>,
    /// Fetches sent and not yet answered, one per broker at most.
    inflight: Vec<InFlight>,
    /// Answers taken from finished fetches and not yet applied (a poll dropped after taking
    /// them leaves them here for the next one).
    answered: Vec<(BrokerRequest, Result<Vec<FetchedPartition>>)>,
    /// Brokers whose last Fetch failed: their backoff, and when they may be asked again.
    backoff: HashMap<i32, (Backoff, std::time::Instant)>,
    /// A metadata refresh running in the background.
    refreshing: Option<tokio::task::JoinHandle<Result<()>>>,
    /// Per broker id: its fetch session, used by one request at a time (one Fetch in flight
    /// per broker).
    sessions: HashMap<i32, Arc<std::sync::Mutex<FetchSession>>>,
}

/// A Fetch running as a task of its own.
#[derive(Debug)]
struct InFlight {
    request: BrokerRequest,
    task: tokio::task::JoinHandle<Result<Vec<FetchedPartition>>>,
}

impl Drop for Fetcher {
    fn drop(&mut self) {
        for f in &self.inflight {
            f.task.abort();
        }
        if let Some(h) = &self.refreshing {
            h.abort();
        }
        // Close the open fetch sessions (as Java's `prepareCloseFetchSessionRequests` does), so
        // that brokers do not keep them, and the partitions they cache, until evicted. Best
        // effort: in the background, when a runtime is there to run it.
        let md = self.cluster.metadata();
        let open: Vec<(BrokerInfo, i32)> = self
            .sessions
            .iter()
            .filter_map(|(broker, s)| {
                let id = s.lock().unwrap_or_else(|p| p.into_inner()).id;
                (id != 0)
                    .then(|| md.brokers.get(broker).map(|b| (b.clone(), id)))
                    .flatten()
            })
            .collect();
        if open.is_empty() {
            return;
        }
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let cluster = self.cluster.clone();
            rt.spawn(async move {
                for (broker, id) in open {
                    if let Err(e) = close_session(&cluster, &broker, id).await {
                        debug!(broker = %broker.addr(), session_id = id, error = %e, "closing the fetch session failed");
                    }
                }
            });
        }
    }
}

/// Closes fetch session `id` on `broker`: a sessionless Fetch naming it with the final epoch
/// (-1) and no partitions.
async fn close_session(cluster: &Cluster, broker: &BrokerInfo, id: i32) -> Result<()> {
    let conn = cluster.connection(broker, ConnKind::Fetch).await?;
    let version = conn.version(ApiKey::Fetch)?;
    if version < 7 {
        return Ok(());
    }
    let req = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(0)
        .with_min_bytes(0)
        .with_max_bytes(1)
        .with_session_id(id)
        .with_session_epoch(-1);
    conn.send_versioned(&req, version).await?;
    Ok(())
}

/// One broker's share of a round: its partitions in request order, with their places in
/// [`Fetcher::order`].
#[derive(Debug)]
struct BrokerRequest {
    broker: BrokerInfo,
    positions: Vec<FetchPosition>,
    order: Vec<usize>,
}

/// Everything a round changes, applied at once when it completes (so dropping the round's
/// future, or an error, changes nothing).
#[derive(Debug, Default)]
struct RoundUpdate {
    /// `(partition, offset fetched from, next position)`.
    advances: Vec<(Key, i64, i64)>,
    /// Classified out-of-range positions: reset (`reset_to`) or paused.
    out_of_range: Vec<OutOfRange>,
    /// `(broker id, index in order)` where that broker's next request starts.
    cursors: Vec<(i32, usize)>,
    /// `(broker id, address, the error if its Fetch failed)`: a failure backs that broker off.
    outcomes: Vec<(i32, String, Option<String>)>,
}

/// How long a broker whose Fetch failed (refused connection, timeout) waits before the next
/// one: 50 ms doubling to 1 s, with jitter, for as long as it keeps failing. Without it a broker
/// that refuses connections at once was asked again in a tight loop, since the other brokers'
/// answers no longer pace the rounds.
fn broker_retry_policy() -> RetryPolicy {
    RetryPolicy {
        min_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_secs(1),
        max_elapsed: Duration::from_secs(u64::from(u32::MAX)),
    }
}

/// The offset after the last complete batch in `records` (`None`: no complete batch).
fn complete_end(records: &Bytes) -> std::result::Result<Option<i64>, crate::record::RecordError> {
    let mut next = None;
    for b in split_batches(records.clone()) {
        next = Some(b?.next_offset());
    }
    Ok(next)
}

/// Whether a partition that got no complete batch had records available to this isolation
/// level: then the response ran out of room before it (or its first batch exceeds
/// `partition_max_bytes`), it did not simply have nothing new.
fn had_records_available(p: &FetchedPartition, isolation: IsolationLevel) -> bool {
    let end = if isolation == IsolationLevel::ReadCommitted && p.last_stable_offset >= 0 {
        p.last_stable_offset
    } else {
        p.high_watermark
    };
    p.fetch_offset >= 0 && p.fetch_offset < end
}

/// How far to rotate a broker's request (`order`: its partitions' places in the cyclic order,
/// ascending) so it starts at the first partition at or after `cursor`, wrapping around.
fn rotation(order: &[usize], cursor: usize) -> usize {
    let k = order.partition_point(|&g| g < cursor);
    if k == order.len() {
        0
    } else {
        k
    }
}

/// Where a broker's next request starts: the place of the first partition of this request
/// (in request order) that waited for room, leaving out the request's first partition (KIP-74
/// gives it a batch if it has one, so if it got none it was not waiting for room). `None`:
/// nobody waited, the cursor stays.
fn next_cursor(request: &BrokerRequest, waited: &HashSet<Key>) -> Option<usize> {
    if waited.is_empty() {
        return None;
    }
    request
        .positions
        .iter()
        .zip(&request.order)
        .skip(1)
        .find(|(p, _)| waited.contains(&(p.topic.clone(), p.partition)))
        .map(|(_, &g)| g)
}

/// The log's start and end (ListOffsets earliest, and latest read_uncommitted: the high
/// watermark) for classifying an out-of-range position; one attempt each.
async fn log_range(
    cluster: &Cluster,
    topic: &str,
    partition: i32,
    isolation: IsolationLevel,
) -> Result<(i64, i64)> {
    let start =
        list_offset_once(cluster, topic, partition, OffsetSpec::Earliest, isolation).await?;
    let end = list_offset_once(
        cluster,
        topic,
        partition,
        OffsetSpec::Latest,
        IsolationLevel::ReadUncommitted,
    )
    .await?;
    Ok((start.offset, end.offset))
}

impl Fetcher {
    /// A fetcher with no assignment.
    pub fn new(cluster: Arc<Cluster>, config: FetcherConfig) -> Fetcher {
        Fetcher {
            cluster,
            config,
            positions: FastMap::default(),
            order: Vec::new(),
            cursors: HashMap::new(),
            paused: FastSet::default(),
            out_of_range: Vec::new(),
            inflight: Vec::new(),
            answered: Vec::new(),
            backoff: HashMap::new(),
            refreshing: None,
            sessions: HashMap::new(),
        }
    }

    /// Per broker the fetcher has a session with: whether it is open, and how many partitions
    /// its last request named (an idle session names none).
    pub fn sessions(&self) -> Vec<(i32, bool, usize)> {
        let mut out: Vec<_> = self
            .sessions
            .iter()
            .map(|(id, s)| {
                let s = s.lock().unwrap_or_else(|p| p.into_inner());
                (*id, s.is_open(), s.last_listed())
            })
            .collect();
        out.sort_unstable();
        out
    }

    /// The settings.
    pub fn config(&self) -> &FetcherConfig {
        &self.config
    }

    /// Starts fetching `topic`/`partition` at `offset` (or moves an assigned partition there).
    pub fn assign(&mut self, topic: &str, partition: i32, offset: i64) {
        self.cluster.track_topics([topic]);
        let key: Key = (Arc::from(topic), partition);
        if self.positions.insert(key.clone(), offset).is_none() {
            self.order.push(key);
        }
    }

    /// Stops fetching a partition.
    pub fn unassign(&mut self, topic: &str, partition: i32) {
        let key = (Arc::from(topic), partition);
        if self.positions.remove(&key).is_some() {
            self.order.retain(|k| *k != key);
        }
        self.paused.remove(&key);
    }

    /// Moves a partition's position.
    pub fn seek(&mut self, topic: &str, partition: i32, offset: i64) {
        if let Some(p) = self.positions.get_mut(&(Arc::from(topic), partition)) {
            *p = offset;
        }
    }

    /// Skips a partition in fetches until [`resume`](Self::resume) (backpressure, or a
    /// position past the end of the log, see [`take_out_of_range`](Self::take_out_of_range)).
    pub fn pause(&mut self, topic: &str, partition: i32) {
        self.paused.insert((Arc::from(topic), partition));
    }

    /// Undoes [`pause`](Self::pause).
    pub fn resume(&mut self, topic: &str, partition: i32) {
        self.paused.remove(&(Arc::from(topic), partition));
    }

    /// Whether a partition is paused.
    pub fn is_paused(&self, topic: &str, partition: i32) -> bool {
        self.paused.contains(&(Arc::from(topic), partition))
    }

    /// The next offset to fetch for a partition.
    pub fn position(&self, topic: &str, partition: i32) -> Option<i64> {
        self.positions.get(&(Arc::from(topic), partition)).copied()
    }

    /// The out-of-range positions met by completed polls since the last call, oldest first
    /// (at most 10 000 are kept). `BelowLogStart` ones were reset by the [`OffsetReset`]
    /// policy (`reset_to`); `AboveLogEnd` ones were not: those partitions are paused at
    /// `fetch_offset` until the caller [`seek`](Self::seek)s and [`resume`](Self::resume)s
    /// them (or unassigns them).
    pub fn take_out_of_range(&mut self) -> Vec<OutOfRange> {
        std::mem::take(&mut self.out_of_range)
    }

    /// This round's requests: every assigned, unpaused partition whose leader is known and not
    /// throttling us, per leader, each broker's list starting at its cursor. Also says whether
    /// some partition's leader is unknown, and the shortest throttle that held a partition back.
    fn build_requests(&self) -> (Vec<BrokerRequest>, bool, Option<Duration>) {
        let md = self.cluster.metadata();
        let mut requests: Vec<BrokerRequest> = Vec::new();
        let mut by_broker: HashMap<i32, usize> = HashMap::new();
        let mut missing = false;
        let mut throttled: Option<Duration> = None;
        let now = std::time::Instant::now();
        let busy_brokers: HashSet<i32> =
            self.inflight.iter().map(|f| f.request.broker.id).collect();
        let busy: HashSet<(&str, i32)> = self
            .inflight
            .iter()
            .map(|f| &f.request)
            .chain(self.answered.iter().map(|(r, _)| r))
            .flat_map(|r| r.positions.iter().map(|p| (&*p.topic, p.partition)))
            .collect();
        // This runs over every assigned partition each round (thousands, mostly idle): what is
        // the same for many partitions is looked up once. `order` keeps a topic's partitions
        // together, so the topic's metadata is looked up once per run of them; a broker's
        // throttle and backoff once per round (`None`: it may be asked; `Some(wait)`: not now).
        let mut topic_md: Option<(&Arc<str>, Option<&crate::cluster::TopicInfo>)> = None;
        let mut broker_wait: HashMap<i32, Option<Duration>> = HashMap::new();
        // The last leader seen and where its partitions go (`None`: not asked this round).
        let mut last_broker: Option<(i32, Option<usize>)> = None;
        for (g, key) in self.order.iter().enumerate() {
            let Some(&offset) = self.positions.get(key) else {
                continue;
            };
            if (!self.paused.is_empty() && self.paused.contains(key))
                || (!busy.is_empty() && busy.contains(&(&*key.0, key.1)))
            {
                continue;
            }
            let (topic, partition) = key;
            let info = match topic_md {
                Some((t, info)) if Arc::ptr_eq(t, topic) || **t == **topic => info,
                _ => {
                    let info = md.topics.get(&**topic);
                    topic_md = Some((topic, info));
                    info
                }
            };
            let Some((leader, epoch)) = info
                .and_then(|i| i.partition(*partition))
                .filter(|p| p.leader >= 0)
                .and_then(|p| md.brokers.get(&p.leader).map(|b| (b, p.leader_epoch)))
            else {
                missing = true;
                continue;
            };
            // Consecutive partitions mostly share a leader: its verdict is kept at hand.
            let i = match last_broker {
                Some((id, verdict)) if id == leader.id => verdict,
                _ => {
                    let verdict = if busy_brokers.contains(&leader.id) {
                        None
                    } else {
                        let wait = *broker_wait.entry(leader.id).or_insert_with(|| {
                            if let Some(d) = self.cluster.throttled_for(leader.id) {
                                return Some(d);
                            }
                            self.backoff
                                .get(&leader.id)
                                .map(|(_, at)| at.saturating_duration_since(now))
                                .filter(|w| !w.is_zero())
                        });
                        if let Some(wait) = wait {
                            throttled = Some(throttled.map_or(wait, |t| t.min(wait)));
                            None
                        } else {
                            Some(*by_broker.entry(leader.id).or_insert_with(|| {
                                requests.push(BrokerRequest {
                                    broker: leader.clone(),
                                    positions: Vec::new(),
                                    order: Vec::new(),
                                });
                                requests.len() - 1
                            }))
                        }
                    };
                    last_broker = Some((leader.id, verdict));
                    verdict
                }
            };
            let Some(i) = i else {
                continue;
            };
            requests[i].positions.push(FetchPosition {
                topic: topic.clone(),
                partition: *partition,
                offset,
                leader_epoch: epoch,
            });
            requests[i].order.push(g);
        }
        for r in &mut requests {
            let k = rotation(
                &r.order,
                self.cursors.get(&r.broker.id).copied().unwrap_or(0),
            );
            r.positions.rotate_left(k);
            r.order.rotate_left(k);
        }
        (requests, missing, throttled)
    }

    /// One round: fetches every unpaused partition from its leader (brokers in parallel) and
    /// returns what came back. Positions move past the complete batches returned. Partitions
    /// with retriable errors are left for the next round (metadata refreshed). An
    /// out-of-range position is classified with ListOffsets: below the log start it is reset
    /// by the [`OffsetReset`] policy, past the end of the log the partition is paused (never
    /// reset); both are reported by [`take_out_of_range`](Self::take_out_of_range), and with
    /// [`OffsetReset::Error`] both fail the poll.
    ///
    /// **Cancel-safe**: if the future is dropped before it completes, no position has moved
    /// (and no pause, cursor or report has changed); the same records are fetched again by
    /// the next poll. The same holds when it returns `Err`. Every change of a round is applied
    /// in one synchronous step after its last `.await`, right before it returns `Ok`. So it
    /// may be raced in a `select!` against timers.
    pub async fn poll(&mut self) -> Result<Vec<FetchedPartition>> {
        self.refresh_outcome()?;
        let (requests, missing, throttled) = self.build_requests();
        if missing {
            self.refresh_in_background();
        }
        if requests.is_empty() && self.inflight.is_empty() && self.answered.is_empty() {
            let idle = self.config.max_wait.min(Duration::from_millis(100));
            // A throttling broker is asked again as soon as its throttle ends.
            tokio::time::sleep(throttled.map_or(idle, |t| t.min(self.config.max_wait))).await;
            return Ok(Vec::new());
        }
        // Send: one task per broker, which a dropped poll does not cancel.
        for request in requests {
            let (cluster, config) = (self.cluster.clone(), self.config.clone());
            let (broker, positions) = (request.broker.clone(), request.positions.clone());
            let session = config
                .sessions
                .then(|| self.sessions.entry(broker.id).or_default().clone());
            let task = tokio::spawn(async move {
                fetch_with_session(&cluster, &broker, &config, &positions, session.as_deref()).await
            });
            self.inflight.push(InFlight { request, task });
        }
        // Wait for at least one answer; take every answer there is.
        std::future::poll_fn(|cx| {
            let mut i = 0;
            while i < self.inflight.len() {
                match std::future::Future::poll(std::pin::Pin::new(&mut self.inflight[i].task), cx)
                {
                    std::task::Poll::Ready(r) => {
                        let f = self.inflight.swap_remove(i);
                        // A panic in the task is the poll's, as when it ran inline; the
                        // task is aborted only when the fetcher is dropped.
                        let r = match r {
                            Ok(r) => r,
                            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                            Err(_) => Err(Error::Shutdown),
                        };
                        self.answered.push((f.request, r));
                    }
                    std::task::Poll::Pending => i += 1,
                }
            }
            if self.answered.is_empty() {
                std::task::Poll::Pending
            } else {
                std::task::Poll::Ready(())
            }
        })
        .await;
        let answered = std::mem::take(&mut self.answered);

        // Decide (no mutation of self; the answers taken above are dropped if the poll is,
        // and fetched again).
        let mut round = RoundUpdate::default();
        let mut out = Vec::new();
        let mut refresh = false;
        let mut out_of_range: Vec<(String, FetchedPartition)> = Vec::new();
        let config = &self.config;
        for (request, r) in answered {
            let request = &request;
            let broker = &request.broker;
            let who = || format!("{}@{}", broker.id, broker.addr());
            let parts = match r {
                Ok(parts) => parts,
                Err(e) if e.is_retriable() => {
                    debug!(broker = %broker.addr(), error = %e, "fetch failed, will retry");
                    self.cluster.retries().note("Fetch", &e);
                    refresh |= e.needs_metadata_refresh();
                    round
                        .outcomes
                        .push((broker.id, broker.addr(), Some(e.to_string())));
                    continue;
                }
                Err(e) => return Err(e),
            };
            round.outcomes.push((broker.id, broker.addr(), None));
            let mut waited: HashSet<Key> = HashSet::new();
            for p in parts {
                // Sent before a seek, unassign or pause of its partition: not used.
                let key: Key = (p.topic.clone(), p.partition);
                if self.positions.get(&key) != Some(&p.fetch_offset) || self.paused.contains(&key) {
                    debug!(topic = %p.topic, partition = p.partition, offset = p.fetch_offset, "fetched data no longer wanted (position moved, unassigned or paused); dropped");
                    continue;
                }
                match p.error {
                    None => {
                        match complete_end(&p.records) {
                            // Records this client cannot frame (an old magic, a corrupt
                            // length) are the reader's to judge for this partition alone: they
                            // are returned and the position stays, so the rest of the round is
                            // not lost with them.
                            Err(e) => {
                                debug!(topic = %p.topic, partition = p.partition, offset = p.fetch_offset, error = %e, "fetched records do not frame; returned, position kept");
                            }
                            Ok(Some(next)) if next > p.fetch_offset && p.fetch_offset >= 0 => {
                                round.advances.push((
                                    (p.topic.clone(), p.partition),
                                    p.fetch_offset,
                                    next,
                                ));
                            }
                            Ok(_) if had_records_available(&p, config.isolation) => {
                                waited.insert((p.topic.clone(), p.partition));
                            }
                            Ok(_) => {}
                        }
                        out.push(p);
                    }
                    Some(ResponseError::OffsetOutOfRange) => out_of_range.push((who(), p)),
                    Some(e) if crate::error::is_retriable_code(e) => {
                        self.cluster.retries().note_code("Fetch", e);
                        refresh |= crate::error::refreshes_metadata(e);
                    }
                    Some(e) => {
                        return Err(Error::Broker {
                            api: ApiKey::Fetch,
                            broker: who(),
                            resource: Some(format!("topic {} partition {}", p.topic, p.partition)),
                            error: e,
                            message: None,
                        })
                    }
                }
            }
            if let Some(g) = next_cursor(request, &waited) {
                round.cursors.push((broker.id, g));
            }
        }

        // Out-of-range positions: classify, and decide by policy (awaits; still no mutation).
        if !out_of_range.is_empty() {
            let (reports, again) = self.resolve_out_of_range(out_of_range).await?;
            round.out_of_range = reports;
            refresh |= again;
        }
        if refresh {
            self.refresh_in_background();
        }

        // Apply: one synchronous step, nothing awaited after it.
        self.apply(round);
        Ok(out)
    }

    /// Starts a metadata refresh as a task of its own unless one is running. A refresh may wait
    /// for a request timeout (the broker it asks does not answer): awaited here, it held every
    /// partition's answers back, and a poll raced against a timer shorter than that never
    /// completed at all (found by the chaos test: catch-up 12-18 s after a 12 s cut).
    fn refresh_in_background(&mut self) {
        if self.refreshing.as_ref().is_some_and(|h| !h.is_finished()) {
            return;
        }
        let cluster = self.cluster.clone();
        self.refreshing = Some(tokio::spawn(async move {
            cluster.refresh_metadata().await.map(|_| ())
        }));
    }

    /// The outcome of a finished background refresh: a retriable failure is retried by the next
    /// round that needs one; any other fails this poll (as an awaited refresh did).
    fn refresh_outcome(&mut self) -> Result<()> {
        if !self.refreshing.as_ref().is_some_and(|h| h.is_finished()) {
            return Ok(());
        }
        let mut h = self.refreshing.take().expect("checked");
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        match std::future::Future::poll(std::pin::Pin::new(&mut h), &mut cx) {
            std::task::Poll::Ready(Ok(Err(e))) if !e.is_retriable() => Err(e),
            std::task::Poll::Ready(Ok(Err(e))) => {
                debug!(error = %e, "metadata refresh failed, will retry");
                Ok(())
            }
            std::task::Poll::Ready(Err(e)) if e.is_panic() => {
                std::panic::resume_unwind(e.into_panic())
            }
            _ => Ok(()),
        }
    }

    /// Classifies out-of-range positions with ListOffsets and decides what to do with each by
    /// the policy. Changes nothing. Returns the reports, and whether metadata needs a refresh.
    /// A partition whose ListOffsets fails retriably, or whose position is within the log by
    /// now, is left for the next round.
    async fn resolve_out_of_range(
        &self,
        candidates: Vec<(String, FetchedPartition)>,
    ) -> Result<(Vec<OutOfRange>, bool)> {
        let cluster = &*self.cluster;
        let isolation = self.config.isolation;
        let ranges = join_all(
            candidates
                .iter()
                .map(|(_, p)| log_range(cluster, &p.topic, p.partition, isolation)),
        )
        .await;
        let mut reports = Vec::new();
        let mut refresh = false;
        for ((who, p), range) in candidates.into_iter().zip(ranges) {
            let (log_start, high_watermark) = match range {
                Ok(r) => r,
                Err(e) if e.is_retriable() => {
                    debug!(topic = %p.topic, partition = p.partition, error = %e, "offset out of range, ListOffsets failed; will retry");
                    refresh |= e.needs_metadata_refresh();
                    continue;
                }
                Err(e) => return Err(e),
            };
            let Some(kind) = OutOfRangeKind::classify(p.fetch_offset, log_start, high_watermark)
            else {
                debug!(topic = %p.topic, partition = p.partition, offset = p.fetch_offset, log_start, high_watermark, "offset out of range but within the log now (leader or log start moved); fetching again");
                continue;
            };
            let reset_to = match (kind, self.config.reset) {
                (_, OffsetReset::Error) => {
                    return Err(Error::Broker {
                        api: ApiKey::Fetch,
                        broker: who,
                        resource: Some(format!(
                            "topic {} partition {} offset {}",
                            p.topic, p.partition, p.fetch_offset
                        )),
                        error: ResponseError::OffsetOutOfRange,
                        message: Some(format!(
                            "{kind}: log start {log_start}, high watermark {high_watermark}"
                        )),
                    })
                }
                (OutOfRangeKind::AboveLogEnd, _) => None,
                (OutOfRangeKind::BelowLogStart, OffsetReset::Earliest) => Some(log_start),
                (OutOfRangeKind::BelowLogStart, OffsetReset::Latest) => match isolation {
                    IsolationLevel::ReadUncommitted => Some(high_watermark),
                    IsolationLevel::ReadCommitted => {
                        match list_offset_once(
                            cluster,
                            &p.topic,
                            p.partition,
                            OffsetSpec::Latest,
                            isolation,
                        )
                        .await
                        {
                            Ok(l) => Some(l.offset),
                            Err(e) if e.is_retriable() => {
                                debug!(topic = %p.topic, partition = p.partition, error = %e, "offset out of range, ListOffsets failed; will retry");
                                refresh |= e.needs_metadata_refresh();
                                continue;
                            }
                            Err(e) => return Err(e),
                        }
                    }
                },
            };
            reports.push(OutOfRange {
                topic: p.topic,
                partition: p.partition,
                fetch_offset: p.fetch_offset,
                log_start_offset: log_start,
                high_watermark,
                reset_to,
                kind,
            });
        }
        Ok((reports, refresh))
    }

    /// Applies a completed round (synchronous: the only place `poll` changes anything).
    fn apply(&mut self, round: RoundUpdate) {
        for (key, from, to) in round.advances {
            if let Some(pos) = self.positions.get_mut(&key) {
                if *pos == from && to > from {
                    *pos = to;
                }
            }
        }
        for r in &round.out_of_range {
            let key: Key = (r.topic.clone(), r.partition);
            match r.reset_to {
                Some(to) => {
                    if let Some(pos) = self.positions.get_mut(&key) {
                        if *pos == r.fetch_offset {
                            *pos = to;
                        }
                    }
                    warn!(topic = %r.topic, partition = r.partition, from = r.fetch_offset, to, lost = to - r.fetch_offset, log_start = r.log_start_offset, high_watermark = r.high_watermark, "offset out of range, {}: position reset, records skipped", r.kind);
                }
                None => {
                    self.paused.insert(key);
                    warn!(topic = %r.topic, partition = r.partition, offset = r.fetch_offset, log_start = r.log_start_offset, high_watermark = r.high_watermark, "offset out of range, {}: partition paused, position kept", r.kind);
                }
            }
        }
        let now = std::time::Instant::now();
        // Said once when a broker starts failing and once when it answers again; the retries
        // between are debug lines.
        for (broker, addr, failure) in round.outcomes {
            match failure {
                None => {
                    if let Some((b, _)) = self.backoff.remove(&broker) {
                        info!(broker = %addr, failed_for_ms = b.elapsed(now).as_millis() as u64, attempts = b.attempts(), "fetches from the broker answer again");
                    }
                }
                Some(error) => {
                    let (b, at) = self.backoff.entry(broker).or_insert_with(|| {
                        warn!(broker = %addr, %error, "fetch from the broker failed; its partitions wait, the others go on; retrying with backoff");
                        (Backoff::new(&broker_retry_policy(), now), now)
                    });
                    *at = now + b.next_delay(now).unwrap_or(Duration::from_secs(1));
                }
            }
        }
        self.cursors.extend(round.cursors);
        self.out_of_range.extend(round.out_of_range);
        if self.out_of_range.len() > MAX_OUT_OF_RANGE_REPORTS {
            let excess = self.out_of_range.len() - MAX_OUT_OF_RANGE_REPORTS;
            self.out_of_range.drain(..excess);
        }
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

#[cfg(test)]
mod tests;
