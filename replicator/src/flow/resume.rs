//! Where a partition resumes, exactly.
//!
//! The offset map stored at the last commit says how far replication was durable: upstream
//! frontier `F`, downstream end `D`. If the remote partition ends at `D`, replication resumes
//! at `F`. If it holds more (the target acknowledged appends after the last commit and then
//! Strait stopped), those extra batches are copies of source batches after `F`: the remote
//! tail is matched batch by batch against what the source would forward from `F`, and the map
//! is extended with each match. Replication resumes after the last matched source batch:
//! nothing is lost and nothing is written twice.
//!
//! A killed Strait's appends may still land after the resume (requests queued on a target
//! broker's connection are read after the process died). When the remote log is known to end
//! where the partition resumes, the resume names the log's last writer ([`Continuation`]) and
//! the run's producer continues its identity and sequence, so that the broker refuses, or
//! answers as a duplicate, whichever of the two copies comes second.
//!
//! If MM2's progress (`mm2-offsets.*`) is ahead of the stored map's frontier, MM2 ran after
//! Strait (Strait → MM2 → Strait): its batches cannot be matched (MM2 re-batches), so the
//! partition resumes at MM2's progress and the map restarts there (what MM2 wrote has no exact
//! map; its old runs are tombstoned).
//!
//! Without a stored map the partition starts from MM2's progress (`mm2-offsets.*`, the next
//! offset after the last one MM2 replicated; MM2 may have written past it, so a move from MM2
//! can repeat what MM2 wrote after its last commit) or, failing that, from the source's log
//! start, still matching whatever the remote partition already holds.
//!
//! Where a log starts and ends is asked with ListOffsets (earliest, latest), never by fetching at
//! offset 0: once retention has deleted offset 0, Kafka answers such a fetch with
//! OFFSET_OUT_OF_RANGE and -1 for both the high watermark and the log start. Nothing here
//! assumes a log starts at 0; a remote log start above the stored downstream end is fine (the
//! map still knows that history), only the remote end matters for matching.
//!
//! # What "copy" means: what the broker preserves
//!
//! Strait forwards each source batch as one batch, and a v2 Produce request carries exactly
//! one batch per partition (Apache Kafka refuses more: `LogValidator`
//! `getFirstBatchAndMaybeValidateNoMoreBatches`, "Compressed outer record has more than one
//! batch"), so every remote batch is the copy of exactly one forwarded batch, with the same
//! record count and offset deltas `0..n`. A forwarded batch is one source batch, or a run of
//! consecutive small uncompressed source batches merged into one (`plan::coalesce`,
//! `strait.coalesce.bytes`): a remote batch with more records than the source batch at its
//! position is matched record by record against that batch and the ones after it (key, value,
//! headers, timestamp), and recorded only once all its records matched, with the stretches of
//! every part. Its header is not ours, and its records may not be
//! either. Apache Kafka's `LogValidator` changes a batch on append in two ways besides the
//! offsets, leader epoch and producer fields:
//!
//! - a topic with `message.timestamp.type=LogAppendTime` stamps it in place
//!   (`setMaxTimestamp(LOG_APPEND_TIME, now)`): the timestamp-type attribute bit is set and
//!   `maxTimestamp` becomes the append time; the records bytes stay (consumers then read every
//!   record's timestamp as that append time). A `CreateTime` topic sets `maxTimestamp` to the
//!   largest record timestamp as read: the same max for a batch its source broker validated
//!   (Strait sends only `CreateTime` batches: [`super::plan`] rebuilds a `LogAppendTime` source
//!   batch with the append time in every record);
//! - a topic whose `compression.type` is neither `producer` nor the batch's codec rebuilds the
//!   batch (`buildRecordsAndAssignOffsets`): every record decoded and appended again, with
//!   the timestamp Kafka reads for it, into one new batch with the topic's codec,
//!   `baseTimestamp` = the first record's timestamp, record attributes 0. No records byte is
//!   the same.
//!
//! So matching first compares bytes (no decoding): record count, last offset delta, codec and
//! the other attributes (transactional and timestamp-type bits aside), base timestamp, max
//! timestamp (unless the remote batch is `LogAppendTime`) and the records bytes. Only if that
//! fails are both batches decoded ([`DecodeLimits`] of the flow; an undecodable batch is a
//! mismatch, never an error) and compared record by record: same count, and for each record
//! the offset delta, key, value, headers and, unless the remote batch is `LogAppendTime`, the
//! timestamp as Kafka reads it (base + delta, or the batch's max timestamp in a
//! `LogAppendTime` source batch). The log line "matched the remote tail" counts the batches
//! matched this way as `recompressed`.
//!
//! # What remote topics get (`message.timestamp.type`, `compression.type`)
//!
//! As in MirrorMaker 2. `message.timestamp.type` is in MM2's default
//! `config.properties.exclude` (`DefaultConfigPropertyFilter.CONFIG_PROPERTIES_EXCLUDE_DEFAULT`;
//! here [`crate::filter::DEFAULT_CONFIG_PROPERTIES_EXCLUDE`]): by default it is not copied, so
//! a remote topic has whatever the target gives it (its broker's `log.message.timestamp.type`,
//! or the operator's setting). `compression.type` is not excluded: a value set on the source
//! topic is copied to the remote topic; a source default is not (`use.defaults.from=target`),
//! so the target's default applies (the target broker's `compression.type`, `producer` unless
//! set). MM2 also DELETEs such a property from an existing remote topic; Strait leaves an
//! override the operator set there. Either way a remote topic may legitimately stamp or
//! recompress what Strait forwards, and matching accepts both.

use std::sync::Arc;
use std::time::Duration;

use protocol_client::fetcher::{
    fetch_partition, list_offset, log_end_offset, FetchedPartition, FetcherConfig, IsolationLevel,
    OffsetSpec,
};
use protocol_client::record::{
    split_batches, DecodeLimits, RecordBatch, TimestampType, BATCH_HEADER_LEN,
    DELETE_HORIZON_FLAG_MASK, TIMESTAMP_TYPE_MASK, TRANSACTIONAL_FLAG_MASK,
};
use tracing::{debug, info, warn};

use super::plan::{plan, Step};
use super::Flow;
use crate::error::{Error, Result};
use crate::offsets::OffsetMap;

/// How a remote batch was recognised as the copy of a source batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Match {
    /// The records bytes are the source's (header fields Strait or the broker owns aside).
    Bytes,
    /// The broker rebuilt the batch (recompression); its decoded records are the source's.
    Records,
}

/// Attribute bits a forwarded copy may differ in: the transactional and delete-horizon bits
/// (Strait's producer clears them) and the timestamp type (the target topic's
/// `message.timestamp.type` sets it).
const IGNORED_ATTRIBUTES: i16 =
    TRANSACTIONAL_FLAG_MASK | TIMESTAMP_TYPE_MASK | DELETE_HORIZON_FLAG_MASK;

/// Whether `remote` is the copy of `source` as the target stores it (see the module docs):
/// byte for byte (header fields Strait rewrites — base offset, leader epoch, CRC, producer
/// id/epoch/sequence, transactional bit — aside, and the max timestamp and timestamp type a
/// `LogAppendTime` topic sets), or failing that record by record (a topic recompressing with
/// its own `compression.type`). Decoding is capped by `limits`; a batch that cannot be decoded
/// within them is not a copy.
pub fn same_batch(source: &RecordBatch, remote: &RecordBatch, limits: &DecodeLimits) -> bool {
    match_batch(source, remote, limits).is_some()
}

fn match_batch(source: &RecordBatch, remote: &RecordBatch, limits: &DecodeLimits) -> Option<Match> {
    if source.record_count() != remote.record_count()
        || source.last_offset_delta() != remote.last_offset_delta()
        || source.is_control() != remote.is_control()
    {
        return None;
    }
    if same_bytes(source, remote) {
        Some(Match::Bytes)
    } else if same_records(source, remote, limits) {
        Some(Match::Records)
    } else {
        None
    }
}

/// The cheap comparison, no decoding: codec and other attributes, base timestamp, max timestamp
/// (unless the remote batch carries the append time there) and the records bytes.
fn same_bytes(source: &RecordBatch, remote: &RecordBatch) -> bool {
    let log_append_time = remote.timestamp_type() == TimestampType::LogAppendTime;
    source.attributes() & !IGNORED_ATTRIBUTES == remote.attributes() & !IGNORED_ATTRIBUTES
        && source.base_timestamp() == remote.base_timestamp()
        && (log_append_time || source.max_timestamp() == remote.max_timestamp())
        && source.as_bytes()[BATCH_HEADER_LEN..] == remote.as_bytes()[BATCH_HEADER_LEN..]
}

/// Both batches decoded and compared record by record: offset delta, key, value, headers and
/// (unless the remote batch is `LogAppendTime`, whose record timestamps are the broker's) the
/// timestamp as Kafka reads it. Record attributes are not compared (Kafka writes 0 when it
/// rebuilds a batch). Any decoding error, or a count that does not add up, is a mismatch.
fn same_records(source: &RecordBatch, remote: &RecordBatch, limits: &DecodeLimits) -> bool {
    let compare_timestamps = remote.timestamp_type() == TimestampType::CreateTime;
    let (Ok(mut ours), Ok(mut theirs)) = (source.records(limits), remote.records(limits)) else {
        return false;
    };
    loop {
        match (ours.next(), theirs.next()) {
            (None, None) => return true,
            (Some(Ok(a)), Some(Ok(b))) => {
                if a.offset_delta != b.offset_delta
                    || a.key != b.key
                    || a.value != b.value
                    || a.headers != b.headers
                    || (compare_timestamps && source.timestamp_of(&a) != remote.timestamp_of(&b))
                {
                    return false;
                }
            }
            _ => return false,
        }
    }
}

async fn fetch_at(
    cluster: &Arc<protocol_client::cluster::Cluster>,
    alias: &str,
    topic: &str,
    partition: i32,
    offset: i64,
    isolation: IsolationLevel,
) -> Result<FetchedPartition> {
    let config = FetcherConfig {
        max_wait: Duration::from_millis(10),
        isolation,
        ..FetcherConfig::default()
    };
    // Partition-level errors come back in the result; retriable ones (a leader moving, a
    // replica not caught up) are retried here like request-level ones, so a transient error
    // does not end the matching early (which would repeat records).
    cluster
        .retry("fetch to match the remote tail", || async {
            let p = fetch_partition(cluster, topic, partition, offset, &config).await?;
            match p.error {
                Some(e) if protocol_client::error::is_retriable_code(e) => {
                    Err(protocol_client::Error::Metadata(format!(
                        "Fetch {topic}/{partition} at {offset}: {e}"
                    )))
                }
                _ => Ok(p),
            }
        })
        .await
        .map_err(Error::client(alias))
}

/// What consumers read of one record (key, value, headers), to tell two copies apart.
pub(crate) type RecordContent = (
    Option<bytes::Bytes>,
    Option<bytes::Bytes>,
    Vec<protocol_client::record::RecordHeader>,
);

/// The record at `offset` (read_committed), or `None` when there is none there: a marker,
/// aborted or compacted away, below the log start or past the end.
pub(crate) async fn record_at(
    cluster: &Arc<protocol_client::cluster::Cluster>,
    alias: &str,
    topic: &str,
    partition: i32,
    offset: i64,
    limits: &DecodeLimits,
) -> Result<Option<RecordContent>> {
    let fp = fetch_at(
        cluster,
        alias,
        topic,
        partition,
        offset,
        IsolationLevel::ReadCommitted,
    )
    .await?;
    if fp.error.is_some() {
        return Ok(None);
    }
    let mut aborts = super::plan::AbortTracker::new(fp.aborted);
    for batch in split_batches(fp.records) {
        let Ok(batch) = batch else { return Ok(None) };
        let skip = aborts.skips(&batch);
        if batch.next_offset() <= offset {
            continue;
        }
        if skip || batch.base_offset() > offset {
            return Ok(None);
        }
        let Ok(records) = batch.records(limits) else {
            return Ok(None);
        };
        for r in records {
            let Ok(r) = r else { return Ok(None) };
            if r.offset(batch.base_offset()) == offset {
                return Ok(Some((r.key, r.value, r.headers)));
            }
        }
        return Ok(None);
    }
    Ok(None)
}

/// ListOffsets `spec` for one partition (retried through the cluster's retry loop).
async fn offset_of(
    cluster: &Arc<protocol_client::cluster::Cluster>,
    alias: &str,
    topic: &str,
    partition: i32,
    spec: OffsetSpec,
    isolation: IsolationLevel,
) -> Result<i64> {
    list_offset(cluster, topic, partition, spec, isolation)
        .await
        .map(|l| l.offset)
        .map_err(Error::client(alias))
}

/// How long a resume waits for the remote partition's high watermark to reach its leader's
/// log end.
const SETTLE_WITHIN: Duration = Duration::from_secs(15);

/// The remote partition's end to match the tail against, once what a previous Strait appended
/// has settled. A process killed with appends in flight can leave batches on the leader's log
/// above the high watermark (acks=all: the followers have not fetched them yet); matching only
/// up to the high watermark would miss them, and the records would be written again after
/// them. So the high watermark is awaited until it reaches the leader's log end for its epoch
/// ([`log_end_offset`]), for at most [`SETTLE_WITHIN`] (appends the in-sync replicas never take
/// stay above it: then, with a warning, as before). A broker that does not answer
/// OffsetForLeaderEpoch (tansu) leaves the high watermark as it is.
async fn settled_end(
    flow: &Flow,
    remote: &str,
    partition: i32,
    high_watermark: i64,
) -> Result<i64> {
    let c = &flow.config;
    let target = flow.target_cluster();
    let deadline = tokio::time::Instant::now() + SETTLE_WITHIN;
    let mut end = high_watermark;
    loop {
        let log_end = match log_end_offset(target, remote, partition).await {
            Ok(Some(e)) => e,
            Ok(None) => return Ok(end),
            Err(e) => {
                debug!(flow = %flow.name(), %remote, partition, error = %e, "log end unknown (OffsetForLeaderEpoch); matching up to the high watermark");
                return Ok(end);
            }
        };
        if log_end <= end {
            return Ok(end);
        }
        if tokio::time::Instant::now() >= deadline {
            warn!(flow = %flow.name(), %remote, partition, high_watermark = end, log_end, "appends above the remote high watermark did not settle; matching up to the high watermark (records above it may repeat)");
            return Ok(end);
        }
        debug!(flow = %flow.name(), %remote, partition, high_watermark = end, log_end, "waiting for appends above the remote high watermark to settle");
        tokio::time::sleep(Duration::from_millis(100)).await;
        end = end.max(
            offset_of(
                target,
                &c.target,
                remote,
                partition,
                OffsetSpec::Latest,
                IsolationLevel::ReadUncommitted,
            )
            .await?,
        );
    }
}

/// How long an exactly-once resume waits for the remote partition's transactions to complete
/// (longer than the transaction timeout, after which the coordinator aborts an open one).
const STABLE_WITHIN: Duration = Duration::from_secs(90);

/// Exactly-once mode: waits until the remote partition's last stable offset reaches `end`, so
/// that a read_committed read of the tail sees every transaction that touched it, committed or
/// aborted. Kafka answers EndTxn before the markers are written: a partition just handed over
/// by a member that committed can still show its last records as pending, and a tail read then
/// would stop short and write them again. An open transaction of a fenced producer is aborted
/// by the fence; one that never completes within [`STABLE_WITHIN`] fails the resume (a
/// transient error: the flow starts again).
async fn stable_end(flow: &Flow, remote: &str, partition: i32, end: i64) -> Result<()> {
    let c = &flow.config;
    let target = flow.target_cluster();
    let deadline = tokio::time::Instant::now() + STABLE_WITHIN;
    loop {
        let stable = offset_of(
            target,
            &c.target,
            remote,
            partition,
            OffsetSpec::Latest,
            IsolationLevel::ReadCommitted,
        )
        .await?;
        if stable >= end {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(Error::Client {
                cluster: c.target.clone(),
                source: protocol_client::Error::Producer(format!(
                    "{remote}/{partition}: a transaction stayed open for {STABLE_WITHIN:?} (last stable offset {stable}, end {end}); not resuming past it"
                )),
            });
        }
        debug!(flow = %flow.name(), %remote, partition, stable, end, "waiting for the remote partition's transactions to complete");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The producer identity a resumed partition's writes continue, and the sequence they start
/// at: the writer of the remote log's last batch, whose appends still in flight (a killed
/// process's requests queued on a broker's connection are read and written after it died) then
/// meet sequences the broker already holds instead of being written a second time
/// ([`protocol_client::producer::Producer::continue_identity`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Continuation {
    pub producer_id: i64,
    pub epoch: i16,
    pub next_sequence: i32,
}

impl Continuation {
    /// The identity of `batch` and the sequence after its last one (Kafka's
    /// `DefaultRecordBatch.incrementSequence`: sequences wrap from `i32::MAX` to 0); `None` for
    /// a batch of no idempotent producer, a transactional one or a marker.
    pub fn after(batch: &RecordBatch) -> Option<Continuation> {
        if batch.producer_id() < 0
            || batch.producer_epoch() < 0
            || batch.base_sequence() < 0
            || batch.last_offset_delta() < 0
            || batch.is_transactional()
            || batch.is_control()
        {
            return None;
        }
        let next = (i64::from(batch.base_sequence()) + i64::from(batch.last_offset_delta()) + 1)
            % (i64::from(i32::MAX) + 1);
        Some(Continuation {
            producer_id: batch.producer_id(),
            epoch: batch.producer_epoch(),
            next_sequence: next as i32,
        })
    }
}

/// Where a partition resumes: its offset map, the upstream position, and (when the remote log
/// is known to end exactly where the map says) whose writes to continue.
#[derive(Debug)]
pub struct Resumed {
    pub map: OffsetMap,
    pub position: i64,
    pub continuation: Option<Continuation>,
}

/// The identity of the batch holding the remote log's last record (`end - 1`), if it can be
/// read.
async fn last_writer(flow: &Flow, remote: &str, partition: i32, end: i64) -> Option<Continuation> {
    let c = &flow.config;
    let fp = fetch_at(
        flow.target_cluster(),
        &c.target,
        remote,
        partition,
        end - 1,
        IsolationLevel::ReadUncommitted,
    )
    .await;
    let fp = match fp {
        Ok(fp) if fp.error.is_none() => fp,
        Ok(fp) => {
            debug!(flow = %flow.name(), %remote, partition, end, error = ?fp.error, "the remote log's last batch cannot be read: its writer is not continued");
            return None;
        }
        Err(e) => {
            debug!(flow = %flow.name(), %remote, partition, end, error = %e, "the remote log's last batch cannot be read: its writer is not continued");
            return None;
        }
    };
    split_batches(fp.records)
        .map_while(|b| b.ok())
        .find(|b| b.base_offset() < end && end <= b.next_offset())
        .filter(|b| b.next_offset() == end)
        .and_then(|b| Continuation::after(&b))
}

pub async fn resume_partition(
    flow: &Flow,
    topic: &str,
    partition: i32,
    remote: &str,
    stored: Option<OffsetMap>,
    mm2_progress: Option<i64>,
) -> Result<Resumed> {
    let resumed = |map, position| Resumed {
        map,
        position,
        continuation: None,
    };
    let c = &flow.config;
    let target = flow.target_cluster();
    let source = flow.source_cluster();
    // Where the remote partition starts and ends now (everything Strait wrote counts, committed
    // or not: read_uncommitted, the high watermark).
    let bound = |spec| {
        offset_of(
            target,
            &c.target,
            remote,
            partition,
            spec,
            IsolationLevel::ReadUncommitted,
        )
    };
    let (remote_start, remote_end) =
        tokio::join!(bound(OffsetSpec::Earliest), bound(OffsetSpec::Latest));
    let (remote_start, mut remote_end) = (remote_start?, remote_end?);
    // A Fetch at the log start reports the high watermark too; trust the larger: some brokers
    // (tansu 0.6) answer ListOffsets "latest" with the last batch's base offset + 1.
    if remote_end > remote_start {
        // One byte asked for: brokers still return one whole batch (KIP-74), cheap to resume
        // many partitions.
        let config = FetcherConfig {
            max_wait: Duration::from_millis(10),
            isolation: IsolationLevel::ReadUncommitted,
            max_bytes: 1,
            partition_max_bytes: 1,
            ..FetcherConfig::default()
        };
        let probe = fetch_partition(target, remote, partition, remote_start, &config)
            .await
            .map_err(Error::client(&c.target))?;
        if probe.error.is_none() {
            remote_end = remote_end.max(probe.high_watermark);
        }
    }
    let remote_end = settled_end(flow, remote, partition, remote_end).await?;
    if c.exactly_once && remote_end > remote_start {
        stable_end(flow, remote, partition, remote_end).await?;
    }
    let iso = super::isolation(c.isolation_level);
    let map_error = |source| Error::OffsetMap {
        context: format!("{topic}/{partition}"),
        source,
    };
    let (mut map, upstream, downstream) = match (stored, mm2_progress) {
        (Some(mut map), Some(p)) if map.frontier().is_some_and(|f| p > f) => {
            // MM2 ran after Strait (Strait -> MM2 -> Strait) and replicated further than the
            // map knows: its batches are not Strait's (MM2 re-batches), so matching them would
            // fail and everything MM2 wrote would be written again. MM2's progress wins; what
            // MM2 wrote has no exact map, so the map restarts there.
            info!(flow = %flow.name(), %topic, partition, position = p, frontier = map.frontier(), "resuming from MM2 source progress, ahead of Strait's offset map (MM2 ran after Strait); offsets below it are no longer translated");
            map.restart_at(p, remote_end).map_err(map_error)?;
            return Ok(resumed(map, p));
        }
        (Some(mut map), _) if map.frontier().is_some() && map.downstream_end().is_some() => {
            let f = map.frontier().unwrap_or(0);
            let d = map.downstream_end().unwrap_or(0);
            if remote_end < d {
                warn!(flow = %flow.name(), %topic, partition, remote_end, expected = d, "remote partition is shorter than recorded (truncated or recreated); resuming at the recorded source position, older offsets are no longer translatable");
                map.restart_at(f, remote_end).map_err(map_error)?;
                return Ok(resumed(map, f));
            }
            (map, f, d)
        }
        (_, Some(p)) => {
            info!(flow = %flow.name(), %topic, partition, position = p, "resuming from MM2 source progress");
            let map = OffsetMap::starting_at(p, Some(remote_end), c.offset_map_max_runs).map_err(
                |source| Error::OffsetMap {
                    context: format!("{topic}/{partition}"),
                    source,
                },
            )?;
            return Ok(resumed(map, p));
        }
        _ => {
            let start = offset_of(
                source,
                &c.source,
                topic,
                partition,
                OffsetSpec::Earliest,
                iso,
            )
            .await?;
            let map = OffsetMap::starting_at(start, Some(remote_start), c.offset_map_max_runs)
                .map_err(|source| Error::OffsetMap {
                    context: format!("{topic}/{partition}"),
                    source,
                })?;
            (map, start, remote_start)
        }
    };
    // Exactly-once mode: the remote log holds transactions (ours, and a fenced predecessor's
    // aborted ones). Only committed records are copies: the tail is read read_committed, and
    // markers and aborted batches are stepped over. Nobody's writes are continued: the run's
    // transactional producer fenced every earlier one of its id before this.
    let eos = c.exactly_once;
    let tail_isolation = if eos {
        IsolationLevel::ReadCommitted
    } else {
        IsolationLevel::ReadUncommitted
    };
    if remote_end <= downstream {
        if eos {
            return Ok(resumed(map, upstream));
        }
        // The remote log ends where the map does, and the map's last run ends there: its last
        // batch is Strait's copy of the records just before the resume position (a map
        // started again at MM2's progress or a truncated log's end has no such run).
        let ours = map
            .runs()
            .last()
            .is_some_and(|r| r.downstream_end() == downstream);
        let continuation = if ours && remote_end == downstream && remote_end > remote_start {
            last_writer(flow, remote, partition, remote_end).await
        } else {
            None
        };
        return Ok(Resumed {
            map,
            position: upstream,
            continuation,
        });
    }
    if remote_start > downstream {
        // Retention (or DeleteRecords) on the target removed records after the known end
        // before they could be matched: what they were copies of cannot be told.
        warn!(flow = %flow.name(), %topic, partition, remote_start, remote_end, downstream, "remote records after the recorded end were deleted before they could be matched; resuming at the last known position (records after it may repeat)");
        return Ok(resumed(map, upstream));
    }
    // The remote partition holds batches the map does not know: match them.
    let (mut up, mut down) = (upstream, downstream);
    let mut matched = 0i64;
    // Of those, batches the target rebuilt (recompressed), matched by their decoded records.
    let mut rewritten = 0i64;
    // Of those, batches Strait merged from several source batches.
    let mut merged = 0i64;
    // A remote batch being matched against several source batches (a merged copy); nothing of
    // it is recorded until all its records matched.
    let mut merging: Option<MergedCopy> = None;
    // The last remote batch matched: whose writes to continue once all of the tail matched.
    let mut last_matched: Option<RecordBatch> = None;
    'outer: while down < remote_end {
        let remote_fetch =
            fetch_at(target, &c.target, remote, partition, down, tail_isolation).await?;
        if let Some(e) = remote_fetch.error {
            warn!(flow = %flow.name(), %topic, partition, downstream = down, error = %e, "could not read the remote tail to match it; resuming at the last known position (records after it may repeat)");
            break;
        }
        // Each remote batch, and whether a read_committed reader steps over it.
        let mut remote_batches: Vec<(RecordBatch, bool)> = Vec::new();
        let mut aborts = super::plan::AbortTracker::new(remote_fetch.aborted);
        for b in split_batches(remote_fetch.records) {
            let b = b.map_err(|source| Error::Record {
                context: format!("{}:{remote}/{partition}", c.target),
                source,
            })?;
            let skip = eos && aborts.skips(&b);
            if b.next_offset() > down {
                remote_batches.push((b, skip));
            }
        }
        if remote_batches.is_empty() {
            break;
        }
        let mut remote_iter = remote_batches.into_iter().peekable();
        // Steps over markers and aborted batches at the front.
        let step_over = |it: &mut std::iter::Peekable<std::vec::IntoIter<(RecordBatch, bool)>>,
                         down: &mut i64| {
            while let Some((b, true)) = it.peek() {
                *down = (*down).max(b.next_offset());
                it.next();
            }
        };
        step_over(&mut remote_iter, &mut down);
        if down >= remote_end {
            break;
        }
        while remote_iter.peek().is_some() {
            let src = fetch_at(source, &c.source, topic, partition, up, iso).await?;
            if let Some(e) = src.error {
                warn!(flow = %flow.name(), %topic, partition, upstream = up, error = %e, "could not read the source to match the remote tail; resuming at the last known position (records after it may repeat)");
                break 'outer;
            }
            let steps =
                plan(src.records, up, src.aborted, iso, flow.limits()).map_err(|source| {
                    Error::Record {
                        context: format!("{}:{topic}/{partition}", c.source),
                        source,
                    }
                })?;
            if steps.is_empty() {
                break 'outer;
            }
            for step in steps {
                match step {
                    Step::Skip { .. } if merging.is_some() => {
                        // Merged runs never span a skipped batch.
                        warn!(flow = %flow.name(), %topic, partition, upstream = up, downstream = down, "remote partition holds a batch that does not match the source; resuming at the last known position (records after it may repeat)");
                        break 'outer;
                    }
                    Step::Skip { next } => {
                        map.advance_upstream(next);
                        up = next;
                    }
                    Step::Forward {
                        batch,
                        stretches,
                        next,
                        ..
                    } => {
                        let Some((r, _)) = remote_iter.peek() else {
                            continue 'outer;
                        };
                        if merging.is_none()
                            && r.base_offset() == down
                            && r.record_count() > batch.record_count()
                        {
                            // Not the copy of this batch alone: of it and the ones after it,
                            // merged (`plan::coalesce`)?
                            match MergedCopy::start(r, up, flow.limits()) {
                                Some(m) => merging = Some(m),
                                None => {
                                    warn!(flow = %flow.name(), %topic, partition, upstream = up, downstream = down, "remote batch cannot be read to match it; resuming at the last known position (records after it may repeat)");
                                    break 'outer;
                                }
                            }
                        }
                        if let Some(m) = merging.as_mut() {
                            if !m.take(&batch, r, stretches, flow.limits()) {
                                warn!(flow = %flow.name(), %topic, partition, upstream = m.start_up, downstream = down, "remote partition holds a merged batch that does not match the source; resuming at the last known position (records after it may repeat)");
                                break 'outer;
                            }
                            up = next;
                            if !m.complete() {
                                continue;
                            }
                            let m = merging.take().expect("merging");
                            record_copies(&mut map, m.stretches, down, topic, partition)?;
                            map.advance_upstream(next);
                            let (r, _) = remote_iter.next().expect("peeked");
                            down = r.next_offset();
                            step_over(&mut remote_iter, &mut down);
                            last_matched = Some(r);
                            matched += 1;
                            merged += 1;
                            if down >= remote_end {
                                break 'outer;
                            }
                            continue;
                        }
                        let found = if r.base_offset() == down {
                            match_batch(&batch, r, flow.limits())
                        } else {
                            None
                        };
                        let Some(found) = found else {
                            let codec =
                                |b: &RecordBatch| b.compression().map_or("unknown", |c| c.name());
                            warn!(flow = %flow.name(), %topic, partition, upstream = up, downstream = down, source_codec = codec(&batch), remote_codec = codec(r), remote_timestamp_type = ?r.timestamp_type(), "remote partition holds records that do not match the source; resuming at the last known position (records after it may repeat)");
                            break 'outer;
                        };
                        if found == Match::Records {
                            rewritten += 1;
                        }
                        record_copies(&mut map, stretches, down, topic, partition)?;
                        map.advance_upstream(next);
                        let (r, _) = remote_iter.next().expect("peeked");
                        down = r.next_offset();
                        step_over(&mut remote_iter, &mut down);
                        last_matched = Some(r);
                        up = next;
                        matched += 1;
                        if down >= remote_end {
                            break 'outer;
                        }
                    }
                }
            }
        }
    }
    let complete = merging.is_none() && down == remote_end;
    if let Some(m) = merging {
        // A merged copy only partly matched (the source ended, or could not be read): resume
        // before it; nothing of it was recorded.
        up = m.start_up;
    }
    if matched > 0 {
        info!(flow = %flow.name(), %topic, partition, from = downstream, batches = matched, recompressed = rewritten, merged, resume_at = up, "matched the remote tail written after the last commit: no duplicates");
    }
    // Only a tail matched to its end says whose sequence comes next; after a partial match
    // the records after it are written again anyway (warned above).
    let continuation = last_matched
        .filter(|_| complete && !eos)
        .and_then(|b| Continuation::after(&b));
    Ok(Resumed {
        map,
        position: up,
        continuation,
    })
}

/// Records in `map` that the remote records from `down` on are, in order, the copies of the
/// upstream `stretches`.
fn record_copies(
    map: &mut OffsetMap,
    stretches: Vec<(i64, i64)>,
    down: i64,
    topic: &str,
    partition: i32,
) -> Result<()> {
    let mut d = down;
    for (u, n) in stretches {
        map.record_forwarded(u, d, n)
            .map_err(|source| Error::OffsetMap {
                context: format!("{topic}/{partition}"),
                source,
            })?;
        d += n;
    }
    Ok(())
}

/// A remote batch matched record by record against consecutive source batches: Strait merges
/// runs of small source batches into one (`plan::coalesce`), renumbered, each record's key,
/// value, headers and timestamp kept.
struct MergedCopy {
    /// The source position before its first part.
    start_up: i64,
    /// The remote batch's records, decoded once.
    records: Vec<protocol_client::record::Record>,
    /// Records matched so far.
    taken: usize,
    /// The upstream stretches of the parts matched so far.
    stretches: Vec<(i64, i64)>,
}

impl MergedCopy {
    fn start(remote: &RecordBatch, start_up: i64, limits: &DecodeLimits) -> Option<MergedCopy> {
        let records = remote
            .records(limits)
            .ok()?
            .collect::<Result<Vec<_>, _>>()
            .ok()?;
        (records.len() == remote.record_count().max(0) as usize).then_some(MergedCopy {
            start_up,
            records,
            taken: 0,
            stretches: Vec::new(),
        })
    }

    /// Matches `source`'s records against the next ones of `remote` (the batch `start` read):
    /// key, value, headers and, unless `remote` is `LogAppendTime`, the timestamp as read.
    fn take(
        &mut self,
        source: &RecordBatch,
        remote: &RecordBatch,
        stretches: Vec<(i64, i64)>,
        limits: &DecodeLimits,
    ) -> bool {
        let compare_timestamps = remote.timestamp_type() == TimestampType::CreateTime;
        let Ok(ours) = source.records(limits) else {
            return false;
        };
        for a in ours {
            let Ok(a) = a else { return false };
            let Some(b) = self.records.get(self.taken) else {
                return false;
            };
            if a.key != b.key
                || a.value != b.value
                || a.headers != b.headers
                || (compare_timestamps && source.timestamp_of(&a) != remote.timestamp_of(b))
            {
                return false;
            }
            self.taken += 1;
        }
        self.stretches.extend(stretches);
        true
    }

    fn complete(&self) -> bool {
        self.taken == self.records.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::{Bytes, BytesMut};
    use protocol_client::producer::rewrite_producer_fields;
    use protocol_client::record::{BatchBuilder, Compression, Record, RecordHeader, TimestampType};

    const T0: i64 = 1_700_000_000_000;

    fn limits() -> DecodeLimits {
        DecodeLimits::default()
    }

    /// One record of a test batch: key (sometimes null), value, a header on every other record,
    /// timestamps not in order.
    type Rec = (Option<Vec<u8>>, Option<Vec<u8>>, Vec<RecordHeader>, i64);

    fn records(n: usize) -> Vec<Rec> {
        (0..n)
            .map(|i| {
                let key = (i % 3 != 0).then(|| format!("key-{i}").into_bytes());
                let value =
                    (i != 4).then(|| format!("value {i} {}", "x".repeat(i * 7)).into_bytes());
                let headers = if i % 2 == 0 {
                    vec![RecordHeader::new("h", Some(format!("{i}").as_bytes()))]
                } else {
                    Vec::new()
                };
                // Not monotonic: records keep their own timestamps.
                let ts = T0 + ((i as i64 * 37) % 11) * 1000;
                (key, value, headers, ts)
            })
            .collect()
    }

    /// A source batch as a producer wrote it (producer fields, transactional), `baseTimestamp`
    /// below the first record's (allowed; a recompressing broker starts from the first record).
    fn source(codec: Compression, recs: &[Rec]) -> RecordBatch {
        let mut b = BatchBuilder::new(codec)
            .base_offset(1000)
            .producer(42, 1, 7)
            .transactional(true)
            .base_timestamp(T0 - 500);
        for (k, v, h, ts) in recs {
            b.push(*ts, k.as_deref(), v.as_deref(), h);
        }
        b.build().unwrap()
    }

    /// What Strait sends and a broker stores without rewriting: producer fields Strait's,
    /// transactional bit cleared, the broker's base offset.
    fn forwarded(src: &RecordBatch) -> RecordBatch {
        let [h, r] = rewrite_producer_fields(src, 9000, 0, 123);
        let mut joined = BytesMut::from(&h[..]);
        joined.extend_from_slice(&r);
        joined[..8].copy_from_slice(&555i64.to_be_bytes());
        RecordBatch::parse(joined.freeze()).unwrap()
    }

    /// The writer a resumed partition continues: the last batch's identity and the sequence
    /// after it, wrapping as Kafka does; nothing for a transactional batch or no producer.
    #[test]
    fn continuation_follows_the_last_batch_and_wraps_like_kafka() {
        let src = source(Compression::None, &records(5));
        let with_seq = |seq: i32| {
            let [h, r] = rewrite_producer_fields(&src, 9000, 3, seq);
            let mut joined = BytesMut::from(&h[..]);
            joined.extend_from_slice(&r);
            RecordBatch::parse(joined.freeze()).unwrap()
        };
        assert_eq!(
            Continuation::after(&with_seq(123)),
            Some(Continuation {
                producer_id: 9000,
                epoch: 3,
                next_sequence: 128
            })
        );
        // Kafka's incrementSequence: i32::MAX - 2 plus 5 records wraps to 2.
        assert_eq!(
            Continuation::after(&with_seq(i32::MAX - 2)).map(|c| c.next_sequence),
            Some(2)
        );
        assert_eq!(
            Continuation::after(&with_seq(i32::MAX - 4)).map(|c| c.next_sequence),
            Some(0)
        );
        // The source batch is transactional: its producer is in a transaction, not continued.
        assert_eq!(Continuation::after(&src), None);
        let [h, r] = rewrite_producer_fields(&src, -1, -1, -1);
        let mut joined = BytesMut::from(&h[..]);
        joined.extend_from_slice(&r);
        assert_eq!(
            Continuation::after(&RecordBatch::parse(joined.freeze()).unwrap()),
            None
        );
    }

    /// A broker appending to a `message.timestamp.type=LogAppendTime` topic without
    /// recompressing (Kafka `LogValidator`, in-place): `setMaxTimestamp(LOG_APPEND_TIME, now)`
    /// sets the timestamp-type bit and the max timestamp, and recomputes the CRC.
    fn log_append_time(b: &RecordBatch, now: i64) -> RecordBatch {
        let mut buf = BytesMut::from(&b.as_bytes()[..]);
        let attributes = i16::from_be_bytes([buf[21], buf[22]]) | 0x08;
        buf[21..23].copy_from_slice(&attributes.to_be_bytes());
        buf[35..43].copy_from_slice(&now.to_be_bytes());
        let batch = RecordBatch::parse(buf.freeze()).unwrap();
        let crc = batch.compute_crc();
        let mut buf = BytesMut::from(&batch.as_bytes()[..]);
        buf[17..21].copy_from_slice(&crc.to_be_bytes());
        let batch = RecordBatch::parse(buf.freeze()).unwrap();
        batch.verify_crc().unwrap();
        assert_eq!(batch.timestamp_type(), TimestampType::LogAppendTime);
        batch
    }

    /// A broker whose topic's `compression.type` differs from the batch's codec (Kafka
    /// `LogValidator.buildRecordsAndAssignOffsets`): every record appended again, in order,
    /// with its timestamp as read (`baseTimestamp` = the first record's), offsets from 0,
    /// producer fields kept, into one new batch with the topic's codec and timestamp type
    /// (`maxTimestamp` = the append time for LogAppendTime).
    fn recompressed(b: &RecordBatch, codec: Compression, log_append: Option<i64>) -> RecordBatch {
        let mut out = BatchBuilder::new(codec)
            .base_offset(b.base_offset())
            .producer(b.producer_id(), b.producer_epoch(), b.base_sequence())
            .transactional(b.is_transactional());
        if let Some(now) = log_append {
            out = out
                .timestamp_type(TimestampType::LogAppendTime)
                .max_timestamp(now);
        }
        for r in b.records(&limits()).unwrap() {
            let r = r.unwrap();
            out.push(
                r.timestamp(b.base_timestamp()),
                r.key.as_deref(),
                r.value.as_deref(),
                &r.headers,
            );
        }
        out.build().unwrap()
    }

    #[test]
    fn forwarded_copy_matches_and_different_data_does_not() {
        let mut b = BatchBuilder::new(Compression::Lz4)
            .producer(42, 1, 7)
            .transactional(true);
        for i in 0..10 {
            b.push(100 + i, Some(b"k"), Some(&[i as u8; 20]), &[]);
        }
        let src = b.build().unwrap();
        assert!(same_batch(&src, &forwarded(&src), &limits()));
        let mut other = BatchBuilder::new(Compression::Lz4);
        for i in 0..10 {
            other.push(100 + i, Some(b"k"), Some(&[i as u8 + 1; 20]), &[]);
        }
        assert!(!same_batch(&src, &other.build().unwrap(), &limits()));
    }

    #[test]
    fn byte_identical_copy_matches_without_decoding() {
        for codec in Compression::ALL {
            let src = source(codec, &records(20));
            // Nothing may be decompressed: an exact copy matches by its bytes alone.
            let none = DecodeLimits::default().with_max_decompressed_bytes(0);
            assert!(same_batch(&src, &forwarded(&src), &none), "{codec:?}");
            // Stamped with the append time in place: same records bytes, no decoding either.
            let lat = log_append_time(&forwarded(&src), T0 + 99_000);
            assert!(same_batch(&src, &lat, &none), "{codec:?}");
        }
    }

    #[test]
    fn log_append_time_copy_matches() {
        for codec in Compression::ALL {
            let src = source(codec, &records(20));
            let remote = log_append_time(&forwarded(&src), T0 + 99_000);
            assert!(same_batch(&src, &remote, &limits()), "{codec:?}");
        }
    }

    #[test]
    fn recompressed_copy_matches() {
        for codec in Compression::ALL {
            let src = source(codec, &records(20));
            for target in Compression::ALL {
                if target == codec {
                    continue;
                }
                let remote = recompressed(&forwarded(&src), target, None);
                assert_ne!(
                    remote.as_bytes()[BATCH_HEADER_LEN..],
                    src.as_bytes()[BATCH_HEADER_LEN..]
                );
                assert!(
                    same_batch(&src, &remote, &limits()),
                    "{codec:?} -> {target:?}"
                );
                let both = recompressed(&forwarded(&src), target, Some(T0 + 99_000));
                assert!(
                    same_batch(&src, &both, &limits()),
                    "{codec:?} -> {target:?}, LogAppendTime"
                );
            }
        }
    }

    #[test]
    fn different_batches_do_not_match() {
        let recs = records(20);
        for codec in Compression::ALL {
            let src = source(codec, &recs);
            let mut changed_value = recs.clone();
            changed_value[7].1 = Some(b"another value".to_vec());
            let mut changed_key = recs.clone();
            changed_key[3].0 = Some(b"key-X".to_vec());
            let mut changed_header = recs.clone();
            changed_header[2].2 = vec![RecordHeader::new("h", Some(b"other"))];
            let mut null_value = recs.clone();
            null_value[5].1 = None;
            let mut changed_time = recs.clone();
            changed_time[9].3 += 1;
            let mut missing_last = recs.clone();
            missing_last.pop();
            let mut missing_middle = recs.clone();
            missing_middle.remove(10);
            let with_time = [
                ("value", &changed_value),
                ("key", &changed_key),
                ("header", &changed_header),
                ("null value", &null_value),
                ("missing last record", &missing_last),
                ("missing middle record", &missing_middle),
            ];
            for target in Compression::ALL {
                for (what, other) in with_time.iter().chain([&("timestamp", &changed_time)]) {
                    let other = forwarded(&source(codec, other));
                    // As forwarded, recompressed, recompressed with CreateTime.
                    let remote = if target == codec {
                        other
                    } else {
                        recompressed(&other, target, None)
                    };
                    assert!(
                        !same_batch(&src, &remote, &limits()),
                        "{what}: {codec:?} -> {target:?}"
                    );
                }
                // LogAppendTime: record timestamps are the broker's, everything else counts.
                for (what, other) in with_time {
                    let other = forwarded(&source(codec, other));
                    let remote = if target == codec {
                        log_append_time(&other, T0 + 99_000)
                    } else {
                        recompressed(&other, target, Some(T0 + 99_000))
                    };
                    assert!(
                        !same_batch(&src, &remote, &limits()),
                        "{what}: {codec:?} -> {target:?}, LogAppendTime"
                    );
                }
            }
        }
    }

    #[test]
    fn offset_deltas_count() {
        // Same count, same last offset delta, same records, other offsets inside the batch.
        let with_deltas = |codec, deltas: [i32; 3]| {
            let mut b = BatchBuilder::new(codec).base_timestamp(T0);
            for (i, d) in deltas.into_iter().enumerate() {
                let r = Record {
                    attributes: 0,
                    timestamp_delta: i as i64,
                    offset_delta: d,
                    key: None,
                    value: Some(Bytes::from(format!("v{i}"))),
                    headers: Vec::new(),
                };
                b.push_record_with_offset_delta(T0, &r).unwrap();
            }
            b.build().unwrap()
        };
        let src = with_deltas(Compression::Gzip, [0, 2, 3]);
        assert!(same_batch(
            &src,
            &with_deltas(Compression::None, [0, 2, 3]),
            &limits()
        ));
        assert!(!same_batch(
            &src,
            &with_deltas(Compression::None, [0, 1, 3]),
            &limits()
        ));
    }

    #[test]
    fn undecodable_or_oversized_remote_is_a_mismatch() {
        let src = source(Compression::Lz4, &records(50));
        // A remote batch whose compressed bytes are garbage (CRC recomputed, so only decoding
        // can tell).
        let good = recompressed(&forwarded(&src), Compression::Gzip, None);
        let mut buf = BytesMut::from(&good.as_bytes()[..]);
        let len = buf.len();
        for b in &mut buf[BATCH_HEADER_LEN + 10..len - 8] {
            *b ^= 0x5a;
        }
        let bad = RecordBatch::parse(buf.freeze()).unwrap();
        assert!(!same_batch(&src, &bad, &limits()));
        // Decompression beyond the limit is refused, not performed.
        let tiny = DecodeLimits::default().with_max_decompressed_bytes(64);
        assert!(same_batch(&src, &good, &limits()));
        assert!(!same_batch(&src, &good, &tiny));
        // An uncompressed remote batch cut short inside its records.
        let plain = recompressed(&forwarded(&src), Compression::None, None);
        let cut = plain.as_bytes().len() - 3;
        let mut buf = BytesMut::from(&plain.as_bytes()[..cut]);
        buf[8..12].copy_from_slice(&((cut - 12) as i32).to_be_bytes());
        let short = RecordBatch::parse(buf.freeze()).unwrap();
        assert!(!same_batch(&src, &short, &limits()));
    }
}
