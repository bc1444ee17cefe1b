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

use std::sync::Arc;
use std::time::Duration;

use protocol_client::fetcher::{fetch_partition, FetchedPartition, FetcherConfig, IsolationLevel};
use protocol_client::record::{split_batches, RecordBatch, BATCH_HEADER_LEN};
use protocol_client::ResponseError;
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
    probe: bool,
) -> Result<FetchedPartition> {
    // A probe only needs the partition's offsets (high watermark, log start): ask for one byte
    // (brokers still return one whole batch, KIP-74), so resuming many partitions is cheap.
    let max_bytes = if probe {
        1
    } else {
        FetcherConfig::default().max_bytes
    };
    let config = FetcherConfig {
        max_wait: Duration::from_millis(10),
        isolation,
        max_bytes,
        partition_max_bytes: max_bytes.min(FetcherConfig::default().partition_max_bytes),
        ..FetcherConfig::default()
    };
    fetch_partition(cluster, topic, partition, offset, &config)
        .await
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
    // Where the remote partition ends now.
    let probe = fetch_at(
        target,
        &c.target,
        remote,
        partition,
        0,
        IsolationLevel::ReadUncommitted,
        true,
    )
    .await?;
    let remote_end = probe.high_watermark;
    let remote_start = probe.log_start_offset.max(0);
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
            let first = fetch_at(source, &c.source, topic, partition, 0, iso, true).await?;
            let start = match first.error {
                Some(ResponseError::OffsetOutOfRange) | None => first.log_start_offset.max(0),
                Some(e) => {
                    return Err(Error::Other(format!(
                        "{}: {topic}/{partition}: {e}",
                        c.source
                    )))
                }
            };
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
            false,
        )
        .await?;
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
            let src = fetch_at(source, &c.source, topic, partition, up, iso, false).await?;
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
