//! Deciding, batch by batch, what to do with one partition's fetched bytes. Pure: bytes and
//! positions in, steps out.
//!
//! Rules (DESIGN-NOTES "Forwarding batches as they are"):
//! - batches wholly below the position were already handled: ignored;
//! - control batches (transaction markers) are never forwarded: a skip;
//! - with `read_committed`, transactional batches of aborted transactions are skipped, using the
//!   fetch response's aborted-transaction list exactly as Kafka's consumer does (a producer id
//!   becomes "aborted" once the batch reaches that transaction's first offset, and stops being
//!   so at its ABORT marker);
//! - a batch starting below the position (resuming inside a batch) is rebuilt with only the
//!   records at or after the position;
//! - a batch with offset gaps (`lastOffsetDelta + 1 != recordCount`, left by compaction) is
//!   renumbered, since brokers reject such batches from clients;
//! - a `LogAppendTime` batch is rebuilt as a `CreateTime` batch whose records carry the append
//!   time its consumers read (see [`rebuild_from`]);
//! - everything else is forwarded byte for byte (the producer rewrites producer fields in the
//!   header only).
//!
//! Each forwarded step lists the upstream offset stretches its records cover, in order, so the
//! offset map learns the exact upstream→downstream mapping of every record.

use std::collections::HashSet;

use bytes::Bytes;
use protocol_client::fetcher::{AbortedTransaction, IsolationLevel};
use protocol_client::record::{
    split_batches, BatchBuilder, ControlType, DecodeLimits, Record, RecordBatch, RecordError,
    TimestampType,
};

/// Upstream offset stretches `(first offset, count)` covered by a forwarded batch, in order.
pub type Stretches = Vec<(i64, i64)>;

/// What to do next for a partition.
#[derive(Debug, Clone)]
pub enum Step {
    /// Append `batch` to the remote partition. Its records are, in order, the upstream offsets
    /// in `stretches` (`(first offset, count)`); afterwards the upstream position is `next`.
    Forward {
        /// The batch to append.
        batch: RecordBatch,
        /// Upstream stretches covered.
        stretches: Stretches,
        /// Next upstream offset after this step.
        next: i64,
        /// Whether the batch was rebuilt (trimmed or renumbered) rather than forwarded as is.
        rebuilt: bool,
    },
    /// Nothing is forwarded up to `next` (markers, aborted data).
    Skip {
        /// Next upstream offset after this step.
        next: i64,
    },
}

impl Step {
    /// The upstream position after this step.
    pub fn next(&self) -> i64 {
        match self {
            Step::Forward { next, .. } | Step::Skip { next } => *next,
        }
    }
}

/// Tracks aborted transactions across the batches of one fetch response (Kafka's
/// read_committed rule: once a batch reaches the first offset of a listed aborted
/// transaction, that producer's transactional batches are aborted until its ABORT marker).
#[derive(Debug, Default)]
pub(crate) struct AbortTracker {
    pending: Vec<AbortedTransaction>,
    aborted: HashSet<i64>,
}

impl AbortTracker {
    pub(crate) fn new(mut list: Vec<AbortedTransaction>) -> AbortTracker {
        list.sort_by_key(|a| std::cmp::Reverse(a.first_offset));
        AbortTracker {
            pending: list,
            aborted: HashSet::new(),
        }
    }

    /// Whether a transactional data batch belongs to an aborted transaction.
    fn is_aborted(&mut self, batch: &RecordBatch) -> bool {
        while let Some(a) = self.pending.last() {
            if a.first_offset <= batch.last_offset() {
                self.aborted.insert(a.producer_id);
                self.pending.pop();
            } else {
                break;
            }
        }
        batch.is_transactional() && self.aborted.contains(&batch.producer_id())
    }

    fn on_control(&mut self, batch: &RecordBatch, kind: Option<ControlType>) {
        // Bring in aborted transactions that start at or before this marker too.
        let _ = self.is_aborted(batch);
        if kind == Some(ControlType::Abort) {
            self.aborted.remove(&batch.producer_id());
        }
    }

    /// Whether `batch` (every batch of the response, in order) is left out by a
    /// read_committed reader: a transaction marker, or data of an aborted transaction.
    pub(crate) fn skips(&mut self, batch: &RecordBatch) -> bool {
        if batch.is_control() {
            self.on_control(batch, batch.control_type().ok().flatten());
            return true;
        }
        self.is_aborted(batch)
    }
}

/// Plans the steps for one partition's fetched `records`, given the upstream `position` (next
/// offset to replicate). Returns the steps in order; the last step's `next` is the new
/// position (no steps: nothing complete was returned at or after `position`).
pub fn plan(
    records: Bytes,
    position: i64,
    aborted: Vec<AbortedTransaction>,
    isolation: IsolationLevel,
    limits: &DecodeLimits,
) -> Result<Vec<Step>, RecordError> {
    let mut steps = Vec::new();
    let mut tracker = AbortTracker::new(if isolation == IsolationLevel::ReadCommitted {
        aborted
    } else {
        Vec::new()
    });
    let mut position = position;
    for batch in split_batches(records) {
        let batch = batch?;
        if batch.next_offset() <= position {
            if batch.is_control() {
                tracker.on_control(&batch, batch.control_type()?);
            } else {
                let _ = tracker.is_aborted(&batch);
            }
            continue;
        }
        let next = batch.next_offset();
        if batch.is_control() {
            tracker.on_control(&batch, batch.control_type()?);
            steps.push(Step::Skip { next });
        } else if tracker.is_aborted(&batch) {
            steps.push(Step::Skip { next });
        } else if batch.base_offset() < position
            || batch.last_offset_delta() + 1 != batch.record_count()
            || batch.timestamp_type() == TimestampType::LogAppendTime
        {
            match rebuild_from(&batch, position, limits)? {
                Some((rebuilt, stretches)) => steps.push(Step::Forward {
                    batch: rebuilt,
                    stretches,
                    next,
                    rebuilt: true,
                }),
                None => steps.push(Step::Skip { next }),
            }
        } else {
            let count = i64::from(batch.record_count());
            steps.push(Step::Forward {
                stretches: vec![(batch.base_offset(), count)],
                batch,
                next,
                rebuilt: false,
            });
        }
        position = next;
    }
    Ok(steps)
}

/// Rebuilds `batch` with the records at or after `from`, renumbered consecutively, keeping
/// codec, attributes, producer fields and every record's timestamp as a consumer reads it.
/// Returns the new batch and the upstream stretches of its records, or `None` when no record is
/// left.
///
/// A `LogAppendTime` batch (from a source topic with `message.timestamp.type=LogAppendTime`) is
/// always rebuilt: its consumers read the batch's max timestamp (the source's append time) for
/// every record, while the records hold their producers' create times. Forwarded as is, a
/// `CreateTime` remote topic would clear the flag in place and its consumers would read the
/// create times, and a `LogAppendTime` remote topic refuses the flag. So the copy is a
/// `CreateTime` batch whose records all carry the append time, which is what MirrorMaker 2
/// writes (it produces each record with the timestamp its consumer read); a `LogAppendTime`
/// remote topic stamps its own time over it, as it does for MM2.
fn rebuild_from(
    batch: &RecordBatch,
    from: i64,
    limits: &DecodeLimits,
) -> Result<Option<(RecordBatch, Stretches)>, RecordError> {
    let log_append_time = batch.timestamp_type() == TimestampType::LogAppendTime;
    let mut builder = BatchBuilder::new(batch.compression()?)
        .producer(
            batch.producer_id(),
            batch.producer_epoch(),
            batch.base_sequence(),
        )
        .transactional(batch.is_transactional())
        .partition_leader_epoch(batch.partition_leader_epoch());
    let mut stretches: Stretches = Vec::new();
    for r in batch.records(limits)? {
        let r = r?;
        let offset = r.offset(batch.base_offset());
        if offset < from {
            continue;
        }
        if log_append_time {
            let r = Record {
                timestamp_delta: 0,
                ..r
            };
            builder.push_record(batch.max_timestamp(), &r);
        } else {
            builder.push_record(batch.base_timestamp(), &r);
        }
        match stretches.last_mut() {
            Some((start, count)) if *start + *count == offset => *count += 1,
            _ => stretches.push((offset, 1)),
        }
    }
    if builder.is_empty() {
        return Ok(None);
    }
    Ok(Some((builder.build()?, stretches)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use protocol_client::record::Compression;

    fn batch(base: i64, n: usize, pid: i64, txn: bool, codec: Compression) -> RecordBatch {
        let mut b = BatchBuilder::new(codec)
            .base_offset(base)
            .producer(pid, 0, 0)
            .transactional(txn);
        for i in 0..n {
            b.push(
                1000 + i as i64,
                Some(b"k"),
                Some(format!("v{}", base + i as i64).as_bytes()),
                &[],
            );
        }
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

    fn concat(bs: &[RecordBatch]) -> Bytes {
        let mut out = BytesMut::new();
        for b in bs {
            out.extend_from_slice(b.as_bytes());
        }
        out.freeze()
    }

    /// Each record's timestamp as Kafka reads it in a `CreateTime` batch (base + delta).
    fn timestamps(b: &RecordBatch) -> Vec<i64> {
        b.records(&DecodeLimits::default())
            .unwrap()
            .map(|r| r.unwrap().timestamp(b.base_timestamp()))
            .collect()
    }

    fn values(b: &RecordBatch) -> Vec<String> {
        b.records(&DecodeLimits::default())
            .unwrap()
            .map(|r| String::from_utf8(r.unwrap().value.unwrap().to_vec()).unwrap())
            .collect()
    }

    #[test]
    fn plain_batches_are_forwarded_untouched_and_markers_skipped() {
        let a = batch(0, 3, -1, false, Compression::Lz4);
        let t = batch(3, 2, 7, true, Compression::None);
        let m = marker(5, 7, ControlType::Commit);
        let b = batch(6, 4, -1, false, Compression::Zstd);
        let steps = plan(
            concat(&[a.clone(), t.clone(), m, b.clone()]),
            0,
            vec![],
            IsolationLevel::ReadCommitted,
            &DecodeLimits::default(),
        )
        .unwrap();
        assert_eq!(steps.len(), 4);
        match &steps[0] {
            Step::Forward {
                batch,
                stretches,
                next,
                rebuilt,
            } => {
                assert_eq!(batch.as_bytes(), a.as_bytes(), "byte for byte");
                assert_eq!(stretches, &vec![(0, 3)]);
                assert_eq!((*next, *rebuilt), (3, false));
            }
            s => panic!("{s:?}"),
        }
        assert!(
            matches!(&steps[1], Step::Forward { stretches, .. } if stretches == &vec![(3, 2)]),
            "committed txn data forwarded"
        );
        assert!(matches!(steps[2], Step::Skip { next: 6 }));
        assert!(
            matches!(&steps[3], Step::Forward { batch, next: 10, .. } if batch.as_bytes() == b.as_bytes())
        );
    }

    #[test]
    fn aborted_transactions_are_skipped_only_in_read_committed() {
        let a = batch(0, 2, 9, true, Compression::None);
        let abort = marker(2, 9, ControlType::Abort);
        let other = batch(3, 2, 9, true, Compression::None); // same pid, later txn, committed
        let commit = marker(5, 9, ControlType::Commit);
        let bytes = concat(&[a, abort, other, commit]);
        let aborted = vec![AbortedTransaction {
            producer_id: 9,
            first_offset: 0,
        }];
        let steps = plan(
            bytes.clone(),
            0,
            aborted.clone(),
            IsolationLevel::ReadCommitted,
            &DecodeLimits::default(),
        )
        .unwrap();
        let kinds: Vec<_> = steps
            .iter()
            .map(|s| matches!(s, Step::Forward { .. }))
            .collect();
        assert_eq!(kinds, vec![false, false, true, false]);
        assert_eq!(steps.last().unwrap().next(), 6);
        let steps = plan(
            bytes,
            0,
            aborted,
            IsolationLevel::ReadUncommitted,
            &DecodeLimits::default(),
        )
        .unwrap();
        let kinds: Vec<_> = steps
            .iter()
            .map(|s| matches!(s, Step::Forward { .. }))
            .collect();
        assert_eq!(kinds, vec![true, false, true, false]);
    }

    #[test]
    fn resuming_inside_a_batch_forwards_only_the_rest() {
        let a = batch(10, 5, -1, false, Compression::Gzip);
        let steps = plan(
            concat(&[a]),
            12,
            vec![],
            IsolationLevel::ReadCommitted,
            &DecodeLimits::default(),
        )
        .unwrap();
        match &steps[..] {
            [Step::Forward {
                batch,
                stretches,
                next: 15,
                rebuilt: true,
            }] => {
                assert_eq!(stretches, &vec![(12, 3)]);
                assert_eq!(values(batch), vec!["v12", "v13", "v14"]);
                assert_eq!(batch.compression().unwrap(), Compression::Gzip);
                assert_eq!(batch.record_count(), 3);
                assert_eq!(batch.last_offset_delta(), 2);
                batch.verify_crc().unwrap();
            }
            s => panic!("{s:?}"),
        }
        // Batches wholly below the position produce nothing.
        assert!(plan(
            concat(&[batch(0, 5, -1, false, Compression::None)]),
            5,
            vec![],
            IsolationLevel::ReadCommitted,
            &DecodeLimits::default()
        )
        .unwrap()
        .is_empty());
    }

    #[test]
    fn compacted_batches_with_gaps_are_renumbered_with_exact_stretches() {
        // Build offsets 20, 21, 24, 27 (deltas 0, 1, 4, 7) as compaction would leave them.
        let mut b = BatchBuilder::new(Compression::Snappy).base_offset(20);
        for (delta, v) in [(0, "a"), (1, "b"), (4, "c"), (7, "d")] {
            let r = protocol_client::record::Record {
                attributes: 0,
                timestamp_delta: delta,
                offset_delta: delta as i32,
                key: Some(Bytes::from_static(b"k")),
                value: Some(Bytes::from(v)),
                headers: vec![],
            };
            b.push_record_with_offset_delta(1000, &r).unwrap();
        }
        let gapped = b.build().unwrap();
        assert_eq!((gapped.record_count(), gapped.last_offset_delta()), (4, 7));
        let steps = plan(
            concat(&[gapped]),
            0,
            vec![],
            IsolationLevel::ReadCommitted,
            &DecodeLimits::default(),
        )
        .unwrap();
        match &steps[..] {
            [Step::Forward {
                batch,
                stretches,
                next: 28,
                rebuilt: true,
            }] => {
                assert_eq!(stretches, &vec![(20, 2), (24, 1), (27, 1)]);
                assert_eq!((batch.record_count(), batch.last_offset_delta()), (4, 3));
                assert_eq!(values(batch), vec!["a", "b", "c", "d"]);
                assert_eq!(
                    timestamps(batch),
                    vec![1000, 1001, 1004, 1007],
                    "timestamps kept"
                );
            }
            s => panic!("{s:?}"),
        }
    }

    /// A batch from a `LogAppendTime` source topic: its consumers read the append time (the
    /// batch's max timestamp) for every record. The forwarded copy is a `CreateTime` batch whose
    /// records carry that time (what MM2 writes), never the producers' create times hidden in the
    /// records, and never the LogAppendTime flag (a LogAppendTime target refuses it).
    #[test]
    fn log_append_time_batches_carry_the_append_time_as_create_time() {
        let appended = 1_800_000_000_000;
        let mut b = BatchBuilder::new(Compression::Lz4)
            .base_offset(40)
            .timestamp_type(TimestampType::LogAppendTime)
            .max_timestamp(appended);
        for i in 0..3 {
            b.push(1000 + i, Some(b"k"), Some(format!("v{i}").as_bytes()), &[]);
        }
        let source = b.build().unwrap();
        let steps = plan(
            concat(&[source]),
            40,
            vec![],
            IsolationLevel::ReadCommitted,
            &DecodeLimits::default(),
        )
        .unwrap();
        match &steps[..] {
            [Step::Forward {
                batch,
                stretches,
                next: 43,
                rebuilt: true,
            }] => {
                assert_eq!(stretches, &vec![(40, 3)]);
                assert_eq!(batch.timestamp_type(), TimestampType::CreateTime);
                assert_eq!(batch.compression().unwrap(), Compression::Lz4);
                assert_eq!(values(batch), vec!["v0", "v1", "v2"]);
                assert_eq!(timestamps(batch), vec![appended; 3]);
                assert_eq!(batch.max_timestamp(), appended);
                batch.verify_crc().unwrap();
            }
            s => panic!("{s:?}"),
        }
    }
}
