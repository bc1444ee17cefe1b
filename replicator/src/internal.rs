//! Internal topics: creating them (compacted) and reading them to the end.
//!
//! Strait keeps its state where MM2 keeps it — offset syncs, checkpoints, heartbeats and
//! source progress, in MM2's formats — plus its own compacted offset-map topic
//! `mm2-offset-map.<source>.internal` on the target (exact runs, see
//! [`crate::formats::OffsetMapRecord`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use protocol_client::admin::{Admin, NewTopic};
use protocol_client::cluster::Cluster;
use protocol_client::fetcher::{
    fetch_partition, join_all, list_offset, FetcherConfig, IsolationLevel, OffsetSpec,
};
use protocol_client::record::{split_batches, DecodeLimits};
use protocol_client::ResponseError;
use tracing::{info, warn};

use crate::error::{Error, Result};
use crate::formats::{OffsetMapRecord, OffsetSync, SourceProgress, SourceProgressKey};
use crate::offsets::{OffsetMap, OffsetMapError};

/// Name of Strait's offset-map topic for a source cluster.
///
/// MM2 4.x's `ReplicationPolicy.isInternalTopic` counts as internal only names starting with
/// `__` or `.`, checkpoint topics, and names starting with `mm2` and ending with `.internal`;
/// any other `x.A.internal` is read by MM2's tooling (`MirrorClient.remoteTopics`) as a remote
/// topic from a cluster `x`. Hence the `mm2-` prefix.
pub fn offset_map_topic(source_alias: &str) -> String {
    format!("mm2-offset-map.{source_alias}.internal")
}

/// The offset-map topic's name before it followed MM2's internal-topic rule: read on start
/// (below the current topic's records) so a deployment of an earlier Strait resumes exactly.
pub fn legacy_offset_map_topic(source_alias: &str) -> String {
    format!("strait-offset-map.{source_alias}.internal")
}

/// Offset maps read back from a cluster, per source partition; a partition whose records do
/// not make a consistent map has the reason instead.
pub type StoredMaps = HashMap<(String, i32), std::result::Result<OffsetMap, OffsetMapError>>;

/// Reads the offset maps of the flows from `source_alias` kept on `cluster` (the flows'
/// target): the legacy topic first (earlier Strait versions), then the current one, so later
/// records win.
pub async fn read_offset_maps(
    cluster: &Arc<Cluster>,
    alias: &str,
    source_alias: &str,
    max_runs: usize,
) -> Result<StoredMaps> {
    let legacy = legacy_offset_map_topic(source_alias);
    let has_legacy = cluster
        .refresh_all_topics()
        .await
        .map_err(Error::client(alias))?
        .topics
        .contains_key(&legacy);
    let topics = has_legacy
        .then_some(legacy)
        .into_iter()
        .chain([offset_map_topic(source_alias)]);
    let mut by_partition: HashMap<(String, i32), Vec<OffsetMapRecord>> = HashMap::new();
    // A record that does not decode (written by someone else, or by a newer Strait) makes its
    // partition's map unusable, not the whole run: that partition resumes from MM2 progress and
    // the remote tail, as after any restore failure. One whose partition cannot be read from
    // its key is skipped.
    let mut unreadable: HashMap<(String, i32), String> = HashMap::new();
    for map_topic in topics {
        for r in read_to_end(cluster, alias, &map_topic).await? {
            let Some(key) = r.key else { continue };
            let rec = match OffsetMapRecord::decode(&key, r.value.as_deref()) {
                Ok(rec) => rec,
                Err(e) => {
                    let at = format!("{alias}:{map_topic} offset {}", r.offset);
                    match OffsetMapRecord::key_partition(&key) {
                        Some(tp) => {
                            unreadable
                                .entry(tp)
                                .or_insert(format!("record at {at}: {e}"));
                        }
                        None => {
                            warn!(record = %at, error = %e, "offset map record does not decode and names no partition; skipped")
                        }
                    }
                    continue;
                }
            };
            let (t, p) = rec.topic_partition();
            by_partition
                .entry((t.to_string(), p))
                .or_default()
                .push(rec);
        }
    }
    let mut maps: StoredMaps = by_partition
        .into_iter()
        .map(|(key, records)| (key, OffsetMap::restore(records, max_runs)))
        .collect();
    for (key, why) in unreadable {
        maps.insert(key, Err(OffsetMapError::Corrupt(why)));
    }
    Ok(maps)
}

/// MM2's source progress of flow `fc` (kept on its target `cluster`): per source partition the
/// next offset to replicate, from the records of `fc`'s source cluster and connector name;
/// later records win, a tombstone forgets.
pub async fn read_progress(
    cluster: &Arc<Cluster>,
    fc: &crate::config::FlowConfig,
) -> Result<HashMap<(String, i32), i64>> {
    let mut progress = HashMap::new();
    let mut skipped = Skipped::default();
    for r in read_to_end(cluster, &fc.target, &fc.offset_storage_topic).await? {
        let Some(key) = r.key else { continue };
        let k = match SourceProgressKey::decode(&key) {
            Ok(k) => k,
            Err(e) => {
                skipped.add(r.offset, &e);
                continue;
            }
        };
        if k.cluster != fc.source || k.connector != fc.progress_connector {
            continue;
        }
        match SourceProgress::decode(r.value.as_deref()) {
            Ok(Some(p)) => {
                progress.insert((k.topic, k.partition), p.resume_offset());
            }
            Ok(None) => {
                progress.remove(&(k.topic, k.partition));
            }
            Err(e) => skipped.add(r.offset, &e),
        }
    }
    skipped.warn(&fc.target, &fc.offset_storage_topic);
    Ok(progress)
}

/// The offset syncs in `topic` on `cluster`, in the order written (records that do not decode
/// as MM2 offset syncs are skipped).
pub async fn read_offset_syncs(
    cluster: &Arc<Cluster>,
    alias: &str,
    topic: &str,
) -> Result<Vec<OffsetSync>> {
    let mut skipped = Skipped::default();
    let syncs = read_to_end(cluster, alias, topic)
        .await?
        .into_iter()
        .filter_map(|r| {
            OffsetSync::decode(&r.key?, r.value.as_deref())
                .map_err(|e| skipped.add(r.offset, &e))
                .ok()
        })
        .collect();
    skipped.warn(alias, topic);
    Ok(syncs)
}

/// Records of an internal topic that did not decode (written by someone else): skipped, and
/// said once per read with how many and the first.
#[derive(Debug, Default)]
pub struct Skipped {
    count: u64,
    first: Option<(i64, String)>,
}

impl Skipped {
    /// One more record at `offset` that did not decode.
    pub fn add(&mut self, offset: i64, error: &dyn std::fmt::Display) {
        self.count += 1;
        self.first
            .get_or_insert_with(|| (offset, error.to_string()));
    }

    /// Logs a warning naming `alias:topic` if anything was skipped.
    pub fn warn(&self, alias: &str, topic: &str) {
        if let Some((offset, error)) = &self.first {
            warn!(cluster = %alias, %topic, skipped = self.count, first_offset = offset, first_error = %error, "records that do not decode were skipped");
        }
    }
}

/// Creates `topic` as a compacted topic unless it exists.
pub async fn ensure_compacted_topic(
    admin: &Admin,
    alias: &str,
    topic: &str,
    partitions: i32,
    replication_factor: i16,
) -> Result<()> {
    let md = admin.cluster().metadata();
    if md.topics.contains_key(topic) {
        return Ok(());
    }
    let res = admin
        .create_topics(&[NewTopic {
            name: topic.to_string(),
            partitions,
            replication_factor,
            configs: vec![("cleanup.policy".into(), "compact".into())],
        }])
        .await
        .map_err(Error::client(alias))?;
    for (name, r) in res {
        match r {
            Ok(()) => info!(cluster = alias, topic = %name, partitions, "created internal topic"),
            Err(e) if e.response_error() == Some(ResponseError::TopicAlreadyExists) => {}
            Err(e) => return Err(Error::client(alias)(e)),
        }
    }
    admin.cluster().track_topics([topic]);
    wait_for_topic(admin.cluster(), alias, topic).await
}

/// Waits until metadata shows every partition of `topic` with a leader.
pub async fn wait_for_topic(cluster: &Arc<Cluster>, alias: &str, topic: &str) -> Result<()> {
    wait_for_partitions(cluster, alias, topic, 1).await
}

/// [`wait_for_topic`] until the topic has at least `partitions` partitions, all with leaders.
pub async fn wait_for_partitions(
    cluster: &Arc<Cluster>,
    alias: &str,
    topic: &str,
    partitions: i32,
) -> Result<()> {
    cluster.track_topics([topic]);
    poll_after_creation(alias, partitions, move || async move {
        let md = cluster
            .refresh_metadata()
            .await
            .map_err(Error::client(alias))?;
        let done = md.topics.get(topic).is_some_and(|t| {
            !t.partitions.is_empty()
                && t.partitions.len() >= partitions.max(1) as usize
                && t.partitions.iter().all(|p| p.leader >= 0)
        });
        Ok((!done).then(|| format!("topic {topic} has no leaders for {partitions} partitions")))
    })
    .await
}

/// Waits until every partition of a topic this process just created answers on its leader
/// (see [`protocol_client::fetcher::partitions_not_ready`]), polling with one request per
/// leader, so that resuming its partitions does not meet a storm of NOT_LEADER retries.
pub async fn wait_until_ready(
    cluster: &Arc<Cluster>,
    alias: &str,
    topic: &str,
    partitions: i32,
) -> Result<()> {
    poll_after_creation(alias, partitions, move || async move {
        cluster
            .refresh_metadata()
            .await
            .map_err(Error::client(alias))?;
        let all: Vec<i32> = (0..partitions).collect();
        let not_ready = protocol_client::fetcher::partitions_not_ready(cluster, topic, &all)
            .await
            .map_err(Error::client(alias))?;
        Ok(not_ready.first().map(|first| {
            format!(
                "{} of {partitions} partitions of topic {topic} (first: {first}) still not served by their leaders",
                not_ready.len()
            )
        }))
    })
    .await
}

/// Polls `pending` every 100 ms until it reports nothing pending (`None`), for as long as a
/// topic of `partitions` partitions may take to be created: a broker creates a partition's log
/// in milliseconds, thousands take tens of seconds. Past that, what is still pending is a
/// transient error (a restart of the flow tries again).
async fn poll_after_creation<F, Fut>(alias: &str, partitions: i32, mut pending: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<String>>>,
{
    let within = Duration::from_secs(30) + Duration::from_millis(10) * partitions.max(0) as u32;
    let deadline = Instant::now() + within;
    loop {
        let Some(what) = pending().await? else {
            return Ok(());
        };
        if Instant::now() > deadline {
            return Err(Error::Client {
                cluster: alias.to_string(),
                source: protocol_client::Error::Metadata(format!(
                    "{what} {within:?} after creation"
                )),
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One record read back from a topic.
#[derive(Debug, Clone)]
pub struct StoredRecord {
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// Key.
    pub key: Option<Bytes>,
    /// Value (`None` = tombstone).
    pub value: Option<Bytes>,
    /// Timestamp (the append time on a `LogAppendTime` topic).
    pub timestamp: i64,
}

/// Reads every record of every partition of `topic`, from its log start up to its last stable
/// offset as of the call, in offset order per partition. A missing topic reads as empty.
///
/// Reads are `read_committed`: transaction markers and the records of aborted transactions are
/// left out, as Kafka's consumer does (MM2 in exactly-once mode writes its progress in
/// transactions, and aborted progress must not be believed); for data written without
/// transactions this is the same as reading everything. Where a partition starts and ends comes
/// from ListOffsets (earliest; latest under read_committed, the last stable offset, which is
/// what a read_committed fetch can reach, so the loop ends), never from assuming offset 0:
/// retention and compaction may have removed it.
pub async fn read_to_end(
    cluster: &Arc<Cluster>,
    alias: &str,
    topic: &str,
) -> Result<Vec<StoredRecord>> {
    cluster.track_topics([topic]);
    let md = cluster
        .refresh_metadata()
        .await
        .map_err(Error::client(alias))?;
    let Some(info) = md.topics.get(topic) else {
        return Ok(Vec::new());
    };
    let partitions = join_all(
        info.partitions
            .iter()
            .map(|p| read_partition(cluster, alias, topic, p.partition)),
    )
    .await;
    let mut out = Vec::new();
    for records in partitions {
        out.extend(records?);
    }
    Ok(out)
}

/// One partition of [`read_to_end`].
async fn read_partition(
    cluster: &Arc<Cluster>,
    alias: &str,
    topic: &str,
    partition: i32,
) -> Result<Vec<StoredRecord>> {
    const ISOLATION: IsolationLevel = IsolationLevel::ReadCommitted;
    let offset = |spec| async move {
        list_offset(cluster, topic, partition, spec, ISOLATION)
            .await
            .map(|l| l.offset)
            .map_err(Error::client(alias))
    };
    let (start, end) = tokio::join!(offset(OffsetSpec::Earliest), offset(OffsetSpec::Latest));
    let (mut position, mut end) = (start?, end?);
    // The first fetch's own bound counts too: some brokers (tansu 0.6) answer ListOffsets
    // "latest" with the last batch's base offset + 1, which would cut the last batch short.
    let mut bound_checked = false;
    let config = FetcherConfig {
        max_wait: Duration::from_millis(10),
        isolation: ISOLATION,
        ..FetcherConfig::default()
    };
    let limits = DecodeLimits::default();
    let context = |at: Option<i64>| match at {
        Some(at) => format!("{alias}:{topic}/{partition} at {at}"),
        None => format!("{alias}:{topic}/{partition}"),
    };
    let mut out = Vec::new();
    while position < end {
        // Partition-level errors come back in the result; retry the transient ones (a leader
        // moving) like request-level ones.
        let fp = cluster
            .retry("read internal topic", || async {
                let fp = fetch_partition(cluster, topic, partition, position, &config).await?;
                match fp.error {
                    Some(e) if protocol_client::error::is_retriable_code(e) => {
                        Err(protocol_client::Error::Metadata(format!(
                            "Fetch {topic}/{partition} at {position}: {e}"
                        )))
                    }
                    _ => Ok(fp),
                }
            })
            .await
            .map_err(Error::client(alias))?;
        match fp.error {
            None => {}
            Some(ResponseError::OffsetOutOfRange) => {
                // Retention removed records while we read: go on from the new log start.
                let start = offset(OffsetSpec::Earliest).await?;
                if start > position {
                    position = start;
                    continue;
                }
                return Err(Error::Other(format!(
                    "cluster {alias}: reading {topic}/{partition} at {position}: offset out of range (log start {start}, end {end})"
                )));
            }
            Some(e) => {
                return Err(Error::Other(format!(
                    "cluster {alias}: reading {topic}/{partition}: {e}"
                )))
            }
        }
        if !bound_checked {
            bound_checked = true;
            let bound = if fp.last_stable_offset >= 0 {
                fp.last_stable_offset
            } else {
                fp.high_watermark
            };
            end = end.max(bound);
        }
        let mut aborts = crate::flow::plan::AbortTracker::new(fp.aborted);
        let mut advanced = false;
        for batch in split_batches(fp.records) {
            let batch = batch.map_err(|source| Error::Record {
                context: context(None),
                source,
            })?;
            let skip = aborts.skips(&batch);
            if batch.next_offset() <= position {
                continue;
            }
            advanced = true;
            if !skip {
                let records = batch.records(&limits).map_err(|source| Error::Record {
                    context: context(Some(batch.base_offset())),
                    source,
                })?;
                for r in records {
                    let r = r.map_err(|source| Error::Record {
                        context: context(None),
                        source,
                    })?;
                    let offset = r.offset(batch.base_offset());
                    let timestamp = batch.timestamp_of(&r);
                    if offset >= position && offset < end {
                        out.push(StoredRecord {
                            partition,
                            offset,
                            key: r.key,
                            value: r.value,
                            timestamp,
                        });
                    }
                }
            }
            position = batch.next_offset();
        }
        if !advanced {
            break;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use crate::flow::plan::AbortTracker;
    use protocol_client::fetcher::AbortedTransaction;
    use protocol_client::record::{BatchBuilder, Compression};
    use protocol_client::record::{ControlType, RecordBatch};

    fn batch(base: i64, pid: i64, txn: bool) -> RecordBatch {
        let mut b = BatchBuilder::new(Compression::None)
            .base_offset(base)
            .producer(pid, 0, 0)
            .transactional(txn);
        b.push(1000, Some(b"k"), Some(b"v"), &[]);
        b.build().unwrap()
    }

    fn marker(base: i64, pid: i64, kind: ControlType) -> RecordBatch {
        let mut key = Vec::new();
        key.extend_from_slice(&0i16.to_be_bytes());
        key.extend_from_slice(&kind.type_id().to_be_bytes());
        let mut b = BatchBuilder::new(Compression::None)
            .base_offset(base)
            .producer(pid, 0, 0)
            .transactional(true)
            .control(true);
        b.push(5000, Some(&key), Some(&[0, 0, 0, 0, 0, 0]), &[]);
        b.build().unwrap()
    }

    /// MM2 progress written in an aborted transaction is not believed; committed progress,
    /// progress written without a transaction and other producers' data are.
    #[test]
    fn aborted_transactions_and_markers_are_left_out() {
        let log = [
            (batch(0, 7, true), true),                 // aborted
            (batch(1, 8, false), false),               // plain
            (batch(2, 9, true), false),                // committed below
            (batch(3, 7, true), true),                 // still aborted
            (marker(4, 7, ControlType::Abort), true),  // marker
            (marker(5, 9, ControlType::Commit), true), // marker
            (batch(6, 7, true), false),                // a later, committed transaction
            (marker(7, 7, ControlType::Commit), true), // marker
        ];
        let mut filter = AbortTracker::new(vec![AbortedTransaction {
            producer_id: 7,
            first_offset: 0,
        }]);
        for (i, (b, skipped)) in log.iter().enumerate() {
            assert_eq!(filter.skips(b), *skipped, "batch {i}");
        }
    }
}
