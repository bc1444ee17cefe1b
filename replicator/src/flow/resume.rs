//! Where a partition resumes, exactly.
//!
//! The offset map stored at the last commit says how far replication was durable: upstream
//! frontier `F`, downstream end `D`. If the remote partition ends at `D`, replication resumes
//! at `F`. If it holds more (the target acknowledged appends after the last commit and then
//! Strait stopped), those extra batches are byte-identical to source batches after `F` (apart
//! from producer fields in the header, which Strait owns): the remote tail is matched batch by
//! batch against what the source would forward from `F` — record count, offset delta,
//! timestamps, codec and the records bytes themselves — and the map is extended with each
//! match. Replication resumes after the last matched source batch: nothing is lost and nothing
//! is written twice.
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

use std::sync::Arc;
use std::time::Duration;

use protocol_client::fetcher::{
    fetch_partition, list_offset, FetchedPartition, FetcherConfig, IsolationLevel, OffsetSpec,
};
use protocol_client::record::{split_batches, RecordBatch, BATCH_HEADER_LEN};
use tracing::{info, warn};

use super::plan::{plan, Step};
use super::Flow;
use crate::error::{Error, Result};
use crate::offsets::OffsetMap;

/// Whether a remote batch is the forwarded copy of `source` (header fields Strait rewrites —
/// base offset, leader epoch, CRC, producer id/epoch/sequence, transactional bit — aside).
pub fn same_batch(source: &RecordBatch, remote: &RecordBatch) -> bool {
    let attrs = |b: &RecordBatch| b.attributes() & !0x10;
    source.record_count() == remote.record_count()
        && source.last_offset_delta() == remote.last_offset_delta()
        && source.base_timestamp() == remote.base_timestamp()
        && source.max_timestamp() == remote.max_timestamp()
        && attrs(source) == attrs(remote)
        && source.as_bytes()[BATCH_HEADER_LEN..] == remote.as_bytes()[BATCH_HEADER_LEN..]
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

/// The offset map and upstream position a partition resumes with.
pub async fn resume_partition(
    flow: &Flow,
    topic: &str,
    partition: i32,
    remote: &str,
    stored: Option<OffsetMap>,
    mm2_progress: Option<i64>,
) -> Result<(OffsetMap, i64)> {
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
    let iso = super::isolation(c.isolation_level);
    let (mut map, upstream, downstream) = match (stored, mm2_progress) {
        (Some(map), _) if map.frontier().is_some() && map.downstream_end().is_some() => {
            let f = map.frontier().unwrap_or(0);
            let d = map.downstream_end().unwrap_or(0);
            if remote_end < d {
                warn!(flow = %flow.name(), %topic, partition, remote_end, expected = d, "remote partition is shorter than recorded (truncated or recreated); resuming at the recorded source position, older offsets are no longer translatable");
                let fresh = OffsetMap::starting_at(f, Some(remote_end), c.offset_map_max_runs)
                    .map_err(|source| Error::OffsetMap {
                        context: format!("{topic}/{partition}"),
                        source,
                    })?;
                return Ok((fresh, f));
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
            return Ok((map, p));
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
    if remote_end <= downstream {
        return Ok((map, upstream));
    }
    if remote_start > downstream {
        // Retention (or DeleteRecords) on the target removed records after the known end
        // before they could be matched: what they were copies of cannot be told.
        warn!(flow = %flow.name(), %topic, partition, remote_start, remote_end, downstream, "remote records after the recorded end were deleted before they could be matched; resuming at the last known position (records after it may repeat)");
        return Ok((map, upstream));
    }
    // The remote partition holds batches the map does not know: match them.
    let (mut up, mut down) = (upstream, downstream);
    let mut matched = 0i64;
    'outer: while down < remote_end {
        let remote_fetch = fetch_at(
            target,
            &c.target,
            remote,
            partition,
            down,
            IsolationLevel::ReadUncommitted,
        )
        .await?;
        if let Some(e) = remote_fetch.error {
            warn!(flow = %flow.name(), %topic, partition, downstream = down, error = %e, "could not read the remote tail to match it; resuming at the last known position (records after it may repeat)");
            break;
        }
        let mut remote_batches: Vec<RecordBatch> = Vec::new();
        for b in split_batches(remote_fetch.records) {
            let b = b.map_err(|source| Error::Record {
                context: format!("{}:{remote}/{partition}", c.target),
                source,
            })?;
            if b.next_offset() > down {
                remote_batches.push(b);
            }
        }
        if remote_batches.is_empty() {
            break;
        }
        let mut remote_iter = remote_batches.into_iter().peekable();
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
                        let Some(r) = remote_iter.peek() else {
                            continue 'outer;
                        };
                        if r.base_offset() != down || !same_batch(&batch, r) {
                            warn!(flow = %flow.name(), %topic, partition, upstream = up, downstream = down, "remote partition holds records that do not match the source; resuming at the last known position (records after it may repeat)");
                            break 'outer;
                        }
                        let mut d = down;
                        for (u, n) in stretches {
                            map.record_forwarded(u, d, n)
                                .map_err(|source| Error::OffsetMap {
                                    context: format!("{topic}/{partition}"),
                                    source,
                                })?;
                            d += n;
                        }
                        map.advance_upstream(next);
                        let r = remote_iter.next().expect("peeked");
                        down = r.next_offset();
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
    if matched > 0 {
        info!(flow = %flow.name(), %topic, partition, batches = matched, resume_at = up, "matched the remote tail written after the last commit: no duplicates");
    }
    Ok((map, up))
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol_client::producer::rewrite_producer_fields;
    use protocol_client::record::{BatchBuilder, Compression};

    #[test]
    fn forwarded_copy_matches_and_different_data_does_not() {
        let mut b = BatchBuilder::new(Compression::Lz4)
            .producer(42, 1, 7)
            .transactional(true);
        for i in 0..10 {
            b.push(100 + i, Some(b"k"), Some(&[i as u8; 20]), &[]);
        }
        let src = b.build().unwrap();
        // What the target holds: producer fields ours, transactional bit cleared, new offset.
        let [h, r] = rewrite_producer_fields(&src, 9000, 0, 123);
        let mut joined = bytes::BytesMut::from(&h[..]);
        joined.extend_from_slice(&r);
        joined[..8].copy_from_slice(&555i64.to_be_bytes());
        let remote = RecordBatch::parse(joined.freeze()).unwrap();
        assert!(same_batch(&src, &remote));
        let mut other = BatchBuilder::new(Compression::Lz4);
        for i in 0..10 {
            other.push(100 + i, Some(b"k"), Some(&[i as u8 + 1; 20]), &[]);
        }
        assert!(!same_batch(&src, &other.build().unwrap()));
    }
}
