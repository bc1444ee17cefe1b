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
    split_batches, BatchBuilder, Compression, ControlType, DecodeLimits, Record, RecordBatch,
    RecordError, TimestampType, BATCH_HEADER_LEN,
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
        // Kafka's consumers check every batch's CRC (`check.crcs`); so does Strait, before a
        // batch is forwarded, rebuilt (which would give corrupt records a fresh, valid CRC) or
        // read for its transaction markers. A corrupt batch stops its partition.
        if batch.next_offset() > position {
            batch.verify_crc()?;
        }
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

/// Per-record growth bound when a record is re-encoded in a merged batch: its length varint
/// (≤ 5 bytes), timestamp delta (≤ 10) and offset delta (≤ 5) may each grow.
const REENCODE_GROWTH: usize = 20;

/// Whether a forwarded batch may be merged with its neighbours: uncompressed (merging
/// compressed batches would mean decompressing and compressing again, costing more CPU than
/// the broker saves), `CreateTime`, not transactional, no delete horizon (a compacted batch's
/// tombstone clock), and smaller than a quarter of the merged size (larger batches already
/// amortise the target's per-batch work and stay byte for byte).
fn mergeable(batch: &RecordBatch, max_bytes: usize) -> bool {
    batch.len().saturating_mul(4) <= max_bytes
        && matches!(batch.compression(), Ok(Compression::None))
        && batch.timestamp_type() == TimestampType::CreateTime
        && !batch.is_transactional()
        && !batch.is_control()
        && !batch.has_delete_horizon()
}

/// Merges runs of consecutive small forwarded batches (see [`mergeable`]) into batches of at
/// most `max_bytes` (0: off). The target broker does a fixed amount of work per batch and per
/// request, and Kafka allows one batch per partition per Produce request within the
/// idempotent window of five: a source written in small batches is otherwise mirrored no
/// faster than those five batches per round trip allow. A merged batch keeps every record's
/// key, value, headers, attributes and timestamp, renumbered consecutively; its `stretches`
/// are its parts' in order, so the offset map stays exact. It carries no producer fields (the
/// producer sets them) and costs one copy of its records. A run of one batch, and every batch
/// that is not mergeable, is forwarded as it was planned; a skip ends a run.
pub fn coalesce(
    steps: Vec<Step>,
    max_bytes: usize,
    limits: &DecodeLimits,
) -> Result<Vec<Step>, RecordError> {
    if max_bytes == 0 || steps.len() < 2 {
        return Ok(steps);
    }
    let mut out = Vec::with_capacity(steps.len());
    let mut run: Vec<Step> = Vec::new();
    let mut run_bytes = 0usize;
    for step in steps {
        let size = match &step {
            Step::Forward { batch, .. } if mergeable(batch, max_bytes) => {
                let records = batch.len().saturating_sub(BATCH_HEADER_LEN);
                let growth = (batch.record_count().max(0) as usize).saturating_mul(REENCODE_GROWTH);
                Some(records.saturating_add(growth))
            }
            _ => None,
        };
        match size {
            Some(size) => {
                if !run.is_empty() && BATCH_HEADER_LEN + run_bytes + size > max_bytes {
                    flush_run(&mut run, run_bytes, &mut out, limits)?;
                    run_bytes = 0;
                }
                run_bytes += size;
                run.push(step);
            }
            None => {
                flush_run(&mut run, run_bytes, &mut out, limits)?;
                run_bytes = 0;
                out.push(step);
            }
        }
    }
    flush_run(&mut run, run_bytes, &mut out, limits)?;
    Ok(out)
}

/// Merges `run` (whose records take at most `run_bytes` re-encoded) into one batch.
fn flush_run(
    run: &mut Vec<Step>,
    run_bytes: usize,
    out: &mut Vec<Step>,
    limits: &DecodeLimits,
) -> Result<(), RecordError> {
    if run.len() < 2 {
        out.append(run);
        return Ok(());
    }
    let mut builder = BatchBuilder::with_capacity(Compression::None, BATCH_HEADER_LEN + run_bytes);
    let mut all: Stretches = Vec::new();
    let mut last_next = 0;
    for step in run.drain(..) {
        let Step::Forward {
            batch,
            stretches,
            next,
            ..
        } = step
        else {
            unreachable!("runs hold forwarded batches only");
        };
        // Records are copied as encoded (checked, not decoded into fields): the same bytes
        // as decoding and encoding again, for less CPU.
        let mut records = batch.records(limits)?;
        let data = records.data().clone();
        while let Some(r) = records.next_raw() {
            builder.push_raw(batch.base_timestamp(), &r?, &data);
        }
        for (start, count) in stretches {
            match all.last_mut() {
                Some((s, c)) if *s + *c == start => *c += count,
                _ => all.push((start, count)),
            }
        }
        last_next = next;
    }
    out.push(Step::Forward {
        batch: builder.build()?,
        stretches: all,
        next: last_next,
        rebuilt: true,
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;

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

    /// A batch whose bytes changed after its CRC was computed (one record byte flipped) is
    /// refused whatever would happen to it: forwarded as is, rebuilt (a resume inside it, or
    /// offset gaps), or read as a transaction marker; a corrupt batch already behind the
    /// position is not looked at.
    #[test]
    fn corrupt_batches_are_refused_before_forwarding_or_rebuilding() {
        let corrupt = |b: &RecordBatch| {
            let mut bytes = BytesMut::from(b.as_bytes().as_ref());
            let last = bytes.len() - 1;
            bytes[last] ^= 0x01;
            bytes.freeze()
        };
        let limits = DecodeLimits::default();
        let plain = batch(0, 3, -1, false, Compression::None);
        let mark = marker(0, 7, ControlType::Abort);
        for (what, bytes, position) in [
            ("forwarded", corrupt(&plain), 0),
            ("rebuilt from inside", corrupt(&plain), 1),
            ("a marker", corrupt(&mark), 0),
        ] {
            match plan(
                bytes,
                position,
                vec![],
                IsolationLevel::ReadCommitted,
                &limits,
            ) {
                Err(RecordError::CrcMismatch { base_offset: 0, .. }) => {}
                other => panic!("{what}: {other:?}"),
            }
        }
        let behind = corrupt(&plain);
        let next = batch(3, 2, -1, false, Compression::None);
        let mut both = BytesMut::from(behind.as_ref());
        both.extend_from_slice(next.as_bytes());
        let steps = plan(
            both.freeze(),
            3,
            vec![],
            IsolationLevel::ReadCommitted,
            &limits,
        )
        .unwrap();
        assert!(
            matches!(&steps[..], [Step::Forward { next: 5, .. }]),
            "{steps:?}"
        );
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

    /// Every record a consumer reads from `steps`' forwarded batches: (upstream offset from the
    /// stretches, timestamp, key, value, headers), in order.
    type Seen = (
        i64,
        i64,
        Option<Bytes>,
        Option<Bytes>,
        Vec<(String, Option<Bytes>)>,
    );
    fn forwarded(steps: &[Step]) -> Vec<Seen> {
        let limits = DecodeLimits::default();
        let mut out = Vec::new();
        for s in steps {
            if let Step::Forward {
                batch, stretches, ..
            } = s
            {
                let upstream: Vec<i64> = stretches.iter().flat_map(|(a, n)| *a..*a + *n).collect();
                let records: Vec<Record> = batch
                    .records(&limits)
                    .unwrap()
                    .map(|r| r.unwrap())
                    .collect();
                assert_eq!(
                    upstream.len(),
                    records.len(),
                    "stretches cover every record"
                );
                assert_eq!(batch.last_offset_delta() + 1, batch.record_count());
                for (u, r) in upstream.into_iter().zip(records) {
                    out.push((
                        u,
                        batch.timestamp_of(&r),
                        r.key.clone(),
                        r.value.clone(),
                        r.headers
                            .iter()
                            .map(|h| (h.key_str().unwrap().to_string(), h.value.clone()))
                            .collect(),
                    ));
                }
            }
        }
        out
    }

    /// A batch of `n` records at `base` with distinct timestamps (some earlier than the
    /// first), keys, values and a header.
    fn rich(base: i64, n: usize, codec: Compression, value_len: usize) -> RecordBatch {
        let mut b = BatchBuilder::new(codec).base_offset(base).producer(5, 1, 7);
        for i in 0..n {
            let o = base + i as i64;
            b.push(
                1_700_000_000_000 + (o * 37) % 11 - 5,
                (o % 3 != 0)
                    .then(|| format!("k{o}"))
                    .as_deref()
                    .map(str::as_bytes),
                (o % 5 != 0)
                    .then(|| vec![b'a' + (o % 26) as u8; value_len])
                    .as_deref(),
                &[protocol_client::record::RecordHeader::new(
                    "h",
                    Some(format!("{o}").as_bytes()),
                )],
            );
        }
        b.build().unwrap()
    }

    fn planned(batches: &[RecordBatch]) -> Vec<Step> {
        let mut buf = BytesMut::new();
        for b in batches {
            buf.extend_from_slice(b.as_bytes());
        }
        plan(
            buf.freeze(),
            0,
            Vec::new(),
            IsolationLevel::ReadCommitted,
            &DecodeLimits::default(),
        )
        .unwrap()
    }

    #[test]
    fn coalescing_merges_small_batches_and_keeps_every_record() {
        let batches: Vec<_> = (0..5)
            .map(|i| rich(i * 4, 4, Compression::None, 100))
            .collect();
        let steps = planned(&batches);
        let merged = coalesce(steps.clone(), 64 * 1024, &DecodeLimits::default()).unwrap();
        assert_eq!(merged.len(), 1);
        match &merged[0] {
            Step::Forward {
                batch,
                stretches,
                next,
                rebuilt,
            } => {
                assert_eq!(stretches, &vec![(0, 20)]);
                assert_eq!(*next, 20);
                assert!(*rebuilt);
                assert_eq!(batch.record_count(), 20);
                assert_eq!(batch.producer_id(), -1, "the producer sets producer fields");
                batch.verify_crc().unwrap();
            }
            s => panic!("{s:?}"),
        }
        assert_eq!(forwarded(&merged), forwarded(&steps));
    }

    #[test]
    fn coalescing_leaves_large_compressed_transactional_and_lone_batches_alone() {
        let limits = DecodeLimits::default();
        // A marker between two small batches ends the run: each is alone, forwarded as is.
        let steps = planned(&[
            rich(0, 2, Compression::None, 10),
            marker(2, 9, ControlType::Commit),
            rich(3, 2, Compression::None, 10),
        ]);
        let out = coalesce(steps.clone(), 64 * 1024, &limits).unwrap();
        assert_eq!(out.len(), 3);
        for (a, b) in steps.iter().zip(&out) {
            if let (Step::Forward { batch: x, .. }, Step::Forward { batch: y, .. }) = (a, b) {
                assert_eq!(x.as_bytes(), y.as_bytes());
            }
        }
        // Large (over a quarter of the limit), compressed and transactional batches stay byte
        // for byte; the small ones around them merge only with their neighbours.
        let big = rich(4, 40, Compression::None, 500);
        let lz4 = rich(44, 3, Compression::Lz4, 10);
        let txn = batch(47, 2, 9, true, Compression::None);
        let steps = planned(&[
            rich(0, 2, Compression::None, 10),
            rich(2, 2, Compression::None, 10),
            big.clone(),
            lz4.clone(),
            txn.clone(),
            rich(49, 1, Compression::None, 10),
            rich(50, 1, Compression::None, 10),
        ]);
        let out = coalesce(steps.clone(), 64 * 1024, &limits).unwrap();
        let bytes: Vec<Option<Bytes>> = out
            .iter()
            .map(|s| match s {
                Step::Forward { batch, .. } => Some(batch.as_bytes().clone()),
                Step::Skip { .. } => None,
            })
            .collect();
        assert_eq!(out.len(), 5, "{out:?}");
        assert_eq!(bytes[1].as_ref(), Some(big.as_bytes()));
        assert_eq!(bytes[2].as_ref(), Some(lz4.as_bytes()));
        assert_eq!(bytes[3].as_ref(), Some(txn.as_bytes()));
        assert_eq!(forwarded(&out), forwarded(&steps));
        // Off.
        let off = coalesce(steps.clone(), 0, &limits).unwrap();
        assert_eq!(off.len(), steps.len());
    }

    proptest::proptest! {
        /// Whatever the batch sizes, codecs, gaps and markers: the same records, timestamps and
        /// upstream offsets come out in the same order, every merged batch fits the limit, and
        /// the last step's position is the same.
        #[test]
        fn coalescing_never_changes_what_is_read(
            shapes in proptest::collection::vec((1usize..30, 0usize..400, 0u8..6), 1..25),
            max_bytes in 1024usize..40_000,
        ) {
            let mut batches = Vec::new();
            let mut base = 0i64;
            for (n, len, kind) in shapes {
                let b = match kind {
                    0 => rich(base, n, Compression::Lz4, len),
                    1 => marker(base, 9, ControlType::Commit),
                    _ => rich(base, n, Compression::None, len),
                };
                base = b.next_offset() + i64::from(kind == 5); // an offset gap now and then
                batches.push(b);
            }
            let steps = planned(&batches);
            let out = coalesce(steps.clone(), max_bytes, &DecodeLimits::default()).unwrap();
            proptest::prop_assert_eq!(forwarded(&out), forwarded(&steps));
            proptest::prop_assert_eq!(out.last().map(Step::next), steps.last().map(Step::next));
            for s in &out {
                if let Step::Forward { batch, rebuilt: true, .. } = s {
                    if batch.compression().unwrap() == Compression::None && batch.producer_id() == -1 {
                        proptest::prop_assert!(batch.len() <= max_bytes, "{} > {max_bytes}", batch.len());
                    }
                }
            }
        }
    }
}
