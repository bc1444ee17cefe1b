//! The exact offset map of one source partition.
//!
//! Strait forwards whole batches and learns from each produce response the downstream base
//! offset of every batch, so it knows the downstream offset of every forwarded record.
//! Upstream offsets that are not forwarded (transaction markers, aborted records,
//! compaction gaps) are *skipped*. The map keeps **runs**: maximal stretches of forwarded
//! records contiguous in both upstream and downstream offsets (so `downstream - upstream`
//! is constant inside a run). Between runs lie skipped upstream offsets.
//!
//! The map is authoritative for upstream offsets in `[start, frontier]`:
//! - `start`: the lowest upstream offset whose fate is known;
//! - `frontier`: the next upstream offset to be processed (everything below it was either
//!   forwarded and acknowledged, or skipped);
//! - `downstream_end`: the downstream offset after the last forwarded record.
//!
//! `translate(U)` is the downstream offset of the first forwarded record whose upstream
//! offset is `>= U`: inside a run it is affine; on a skipped offset it is the next run's
//! first downstream offset; between the last run and the frontier (inclusive) it is
//! `downstream_end`. Outside `[start, frontier]` it is `None`: never guess ahead.
//!
//! Bound: at most `max_runs` runs are kept ([`DEFAULT_MAX_RUNS`] = 4096, 24 bytes each,
//! under 100 KiB per partition). When a new run would exceed it, the oldest run is
//! dropped and `start` moves to its end: older offsets become untranslatable, never wrong.
//! Runs are also trimmed as the source log start advances ([`OffsetMap::trim_before`]).
//! A transactional source starts a new run at every commit marker, so the bound limits how
//! far back (in transactions) a lagging group can be translated.
//!
//! Durability: [`OffsetMap::take_changes`] yields [`OffsetMapRecord`]s (one compacted
//! record per run plus a head record) to write since the last call;
//! [`OffsetMap::restore`] rebuilds the map from the records read back.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use crate::formats::OffsetMapRecord;

/// Default bound on runs kept per partition.
pub const DEFAULT_MAX_RUNS: usize = 4096;

/// A stretch of forwarded records, contiguous upstream and downstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Run {
    /// First upstream offset.
    pub upstream_start: i64,
    /// Downstream offset of that record.
    pub downstream_start: i64,
    /// Number of records (>= 1).
    pub count: i64,
}

impl Run {
    /// Upstream offset after the run.
    pub fn upstream_end(&self) -> i64 {
        self.upstream_start + self.count
    }

    /// Downstream offset after the run.
    pub fn downstream_end(&self) -> i64 {
        self.downstream_start + self.count
    }
}

/// Misuse of the map or inconsistent restored records.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OffsetMapError {
    /// A batch must hold at least one record.
    #[error("invalid record count {count}")]
    InvalidCount {
        /// The count given.
        count: i64,
    },
    /// Offsets are never negative.
    #[error("negative offset (upstream {upstream}, downstream {downstream})")]
    NegativeOffset {
        /// Upstream offset given.
        upstream: i64,
        /// Downstream offset given.
        downstream: i64,
    },
    /// `upstream + count` overflows.
    #[error("offset overflow")]
    Overflow,
    /// A forwarded batch starts below the frontier: acks must be applied in upstream order.
    #[error("forwarded batch at upstream {got} is below the frontier {frontier}")]
    UpstreamRegression {
        /// Current frontier.
        frontier: i64,
        /// Batch base offset.
        got: i64,
    },
    /// A forwarded batch landed below the downstream end: the remote partition was
    /// truncated or rewritten; the caller must [`OffsetMap::reset`] and resume.
    #[error("forwarded batch at downstream {got} is below the downstream end {downstream_end}")]
    DownstreamRegression {
        /// Current downstream end.
        downstream_end: i64,
        /// Batch downstream base offset.
        got: i64,
    },
    /// Records read back are inconsistent.
    #[error("corrupt offset map records: {0}")]
    Corrupt(String),
}

/// Exact upstream→downstream offset map for one source partition. See the module docs.
#[derive(Debug, Clone)]
pub struct OffsetMap {
    runs: VecDeque<Run>,
    start: Option<i64>,
    frontier: Option<i64>,
    downstream_end: Option<i64>,
    max_runs: usize,
    dirty_runs: BTreeSet<i64>,
    dropped_runs: BTreeSet<i64>,
    head_dirty: bool,
}

impl Default for OffsetMap {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_RUNS)
    }
}

impl OffsetMap {
    /// An empty map keeping at most `max_runs` runs (at least 1). Its coverage starts at
    /// the first batch or skip it is fed.
    pub fn new(max_runs: usize) -> Self {
        Self {
            runs: VecDeque::new(),
            start: None,
            frontier: None,
            downstream_end: None,
            max_runs: max_runs.max(1),
            dirty_runs: BTreeSet::new(),
            dropped_runs: BTreeSet::new(),
            head_dirty: false,
        }
    }

    /// A map whose coverage starts at `upstream` (the replication start position), with the
    /// remote partition's end offset if known. With a known end, `translate(upstream)` is
    /// answerable before anything is forwarded. The end is only correct if nothing but
    /// Strait writes to the remote partition.
    pub fn starting_at(
        upstream: i64,
        downstream_end: Option<i64>,
        max_runs: usize,
    ) -> Result<Self, OffsetMapError> {
        if upstream < 0 || downstream_end.is_some_and(|d| d < 0) {
            return Err(OffsetMapError::NegativeOffset {
                upstream,
                downstream: downstream_end.unwrap_or(0),
            });
        }
        let mut map = Self::new(max_runs);
        map.start = Some(upstream);
        map.frontier = Some(upstream);
        map.downstream_end = downstream_end;
        map.head_dirty = true;
        Ok(map)
    }

    /// The runs, oldest first.
    pub fn runs(&self) -> impl ExactSizeIterator<Item = &Run> + '_ {
        self.runs.iter()
    }

    /// Lowest covered upstream offset.
    pub fn start(&self) -> Option<i64> {
        self.start
    }

    /// Next upstream offset to process.
    pub fn frontier(&self) -> Option<i64> {
        self.frontier
    }

    /// Downstream offset the next forwarded record is expected at.
    pub fn downstream_end(&self) -> Option<i64> {
        self.downstream_end
    }

    /// The bound on runs.
    pub fn max_runs(&self) -> usize {
        self.max_runs
    }

    /// Records that `count` records starting at upstream `upstream_base` were acknowledged
    /// by the target starting at downstream `downstream_base`.
    ///
    /// Calls must come in upstream order, each after everything below `upstream_base` was
    /// either recorded or is known to be skipped: upstream offsets between the frontier and
    /// `upstream_base` are taken as skipped. The records must be contiguous in both offset
    /// spaces (a compacted batch with internal gaps is recorded per contiguous stretch).
    pub fn record_forwarded(
        &mut self,
        upstream_base: i64,
        downstream_base: i64,
        count: i64,
    ) -> Result<(), OffsetMapError> {
        if count <= 0 {
            return Err(OffsetMapError::InvalidCount { count });
        }
        if upstream_base < 0 || downstream_base < 0 {
            return Err(OffsetMapError::NegativeOffset {
                upstream: upstream_base,
                downstream: downstream_base,
            });
        }
        let upstream_end = upstream_base
            .checked_add(count)
            .ok_or(OffsetMapError::Overflow)?;
        let downstream_end = downstream_base
            .checked_add(count)
            .ok_or(OffsetMapError::Overflow)?;
        if let Some(frontier) = self.frontier {
            if upstream_base < frontier {
                return Err(OffsetMapError::UpstreamRegression {
                    frontier,
                    got: upstream_base,
                });
            }
        }
        if let Some(end) = self.downstream_end {
            if downstream_base < end {
                return Err(OffsetMapError::DownstreamRegression {
                    downstream_end: end,
                    got: downstream_base,
                });
            }
        }
        if self.start.is_none() {
            self.start = Some(upstream_base);
        }
        match self.runs.back_mut() {
            Some(last)
                if last.upstream_end() == upstream_base
                    && last.downstream_end() == downstream_base =>
            {
                last.count += count;
                self.dirty_runs.insert(last.upstream_start);
            }
            _ => {
                self.runs.push_back(Run {
                    upstream_start: upstream_base,
                    downstream_start: downstream_base,
                    count,
                });
                self.dropped_runs.remove(&upstream_base);
                self.dirty_runs.insert(upstream_base);
            }
        }
        self.frontier = Some(upstream_end);
        self.downstream_end = Some(downstream_end);
        self.head_dirty = true;
        while self.runs.len() > self.max_runs {
            self.drop_oldest();
        }
        Ok(())
    }

    /// Records that every upstream offset below `next_upstream` has been processed (the
    /// fetch position moved past offsets that will not be forwarded). Values at or below the
    /// frontier are ignored. On an empty map this sets the start of coverage.
    pub fn advance_upstream(&mut self, next_upstream: i64) {
        match self.frontier {
            None => {
                if next_upstream < 0 {
                    return;
                }
                self.start = Some(next_upstream);
                self.frontier = Some(next_upstream);
                self.head_dirty = true;
            }
            Some(frontier) if next_upstream > frontier => {
                self.frontier = Some(next_upstream);
                self.head_dirty = true;
            }
            Some(_) => {}
        }
    }

    /// The downstream offset for committed upstream offset `upstream`, exactly; `None` when
    /// `upstream` is outside `[start, frontier]` or (past the last run) the downstream end
    /// is unknown.
    pub fn translate(&self, upstream: i64) -> Option<i64> {
        let start = self.start?;
        let frontier = self.frontier?;
        if upstream < start || upstream > frontier {
            return None;
        }
        let idx = self.runs.partition_point(|r| r.upstream_end() <= upstream);
        match self.runs.get(idx) {
            Some(run) if upstream >= run.upstream_start => {
                Some(run.downstream_start + (upstream - run.upstream_start))
            }
            Some(run) => Some(run.downstream_start),
            None => self.downstream_end,
        }
    }

    /// The inverse of [`translate`](Self::translate), for failback: a consumer that committed
    /// downstream offset `downstream` (it has read every record below it) continues upstream
    /// at the returned offset, exactly. Inside a run that is the record's own upstream
    /// offset; in a downstream gap (records Strait did not write) the next run's first
    /// upstream offset; at the downstream end the frontier. Everything upstream below the
    /// answer was either forwarded below `downstream` or never forwarded (markers, aborted or
    /// compacted records). `None` outside what the map covers: below its first forwarded
    /// record (or its start's downstream offset), or past the downstream end.
    pub fn upstream_for(&self, downstream: i64) -> Option<i64> {
        let frontier = self.frontier?;
        let end = self.downstream_end?;
        let first = self.translate(self.start?)?;
        if downstream < first || downstream > end {
            return None;
        }
        let idx = self
            .runs
            .partition_point(|r| r.downstream_end() <= downstream);
        match self.runs.get(idx) {
            Some(run) if downstream >= run.downstream_start => {
                Some(run.upstream_start + (downstream - run.downstream_start))
            }
            Some(run) => Some(run.upstream_start),
            None => Some(frontier),
        }
    }

    /// Forgets everything below the source partition's log start offset: runs wholly below
    /// it are dropped and coverage starts there (capped at the frontier).
    pub fn trim_before(&mut self, log_start: i64) {
        while let Some(first) = self.runs.front() {
            if first.upstream_end() <= log_start {
                let dropped = *first;
                self.runs.pop_front();
                self.mark_dropped(dropped.upstream_start);
            } else {
                break;
            }
        }
        if let (Some(start), Some(frontier)) = (self.start, self.frontier) {
            let new_start = log_start.min(frontier);
            if new_start > start {
                self.start = Some(new_start);
                self.head_dirty = true;
            }
        }
    }

    /// Forgets what the map knew and starts it again at `upstream` (next offset to replicate)
    /// with the remote partition ending at `downstream_end`: when the remote partition no
    /// longer continues from the recorded end (truncated or re-created), or another writer
    /// (MM2) replicated further. Existing run records are tombstoned by the next
    /// [`take_changes`](Self::take_changes), and the new head is written.
    pub fn restart_at(&mut self, upstream: i64, downstream_end: i64) -> Result<(), OffsetMapError> {
        let fresh = Self::starting_at(upstream, Some(downstream_end), self.max_runs)?;
        self.reset();
        self.start = fresh.start;
        self.frontier = fresh.frontier;
        self.downstream_end = fresh.downstream_end;
        self.head_dirty = true;
        Ok(())
    }

    /// Forgets everything (e.g. after the remote partition was truncated). Existing run
    /// records are tombstoned by the next [`take_changes`](Self::take_changes).
    pub fn reset(&mut self) {
        while let Some(run) = self.runs.pop_front() {
            self.mark_dropped(run.upstream_start);
        }
        self.start = None;
        self.frontier = None;
        self.downstream_end = None;
        self.head_dirty = false;
    }

    fn drop_oldest(&mut self) {
        if let Some(run) = self.runs.pop_front() {
            self.mark_dropped(run.upstream_start);
            // The gap after the dropped run is still known to be skipped.
            let new_start = run.upstream_end();
            if self.start.is_none_or(|s| s < new_start) {
                self.start = Some(new_start);
                self.head_dirty = true;
            }
        }
    }

    fn mark_dropped(&mut self, upstream_start: i64) {
        self.dirty_runs.remove(&upstream_start);
        self.dropped_runs.insert(upstream_start);
    }

    /// The durable records to write for changes since the last call: tombstones for
    /// dropped runs, new or grown runs, then the head. Write them in this order.
    pub fn take_changes(&mut self, topic: &str, partition: i32) -> Vec<OffsetMapRecord> {
        let mut out = Vec::new();
        for upstream_start in std::mem::take(&mut self.dropped_runs) {
            out.push(OffsetMapRecord::RunTombstone {
                topic: topic.to_owned(),
                partition,
                upstream_start,
            });
        }
        let dirty = std::mem::take(&mut self.dirty_runs);
        for run in self
            .runs
            .iter()
            .filter(|r| dirty.contains(&r.upstream_start))
        {
            out.push(Self::run_record(topic, partition, run));
        }
        if std::mem::take(&mut self.head_dirty) {
            if let Some(head) = self.head_record(topic, partition) {
                out.push(head);
            }
        }
        out
    }

    /// Puts back changes that [`take_changes`](Self::take_changes) handed out but that could
    /// not be written: the runs (if still kept; a run dropped since is a tombstone again),
    /// tombstones and the head are written by the next `take_changes`, with the map's current
    /// values.
    pub fn requeue_changes(&mut self, records: &[OffsetMapRecord]) {
        for r in records {
            match r {
                OffsetMapRecord::RunTombstone { upstream_start, .. } => {
                    if !self
                        .runs
                        .iter()
                        .any(|run| run.upstream_start == *upstream_start)
                    {
                        self.dropped_runs.insert(*upstream_start);
                    }
                }
                OffsetMapRecord::Run { upstream_start, .. } => {
                    if self
                        .runs
                        .iter()
                        .any(|run| run.upstream_start == *upstream_start)
                    {
                        self.dirty_runs.insert(*upstream_start);
                    } else {
                        self.dropped_runs.insert(*upstream_start);
                    }
                }
                OffsetMapRecord::Head { .. } => self.head_dirty = true,
            }
        }
    }

    /// Every record describing the current state (runs, then head), e.g. to rewrite the
    /// partition's state in full. Clears pending changes except tombstones.
    pub fn snapshot_records(&mut self, topic: &str, partition: i32) -> Vec<OffsetMapRecord> {
        self.dirty_runs.clear();
        self.head_dirty = false;
        let mut out: Vec<_> = self
            .runs
            .iter()
            .map(|r| Self::run_record(topic, partition, r))
            .collect();
        out.extend(self.head_record(topic, partition));
        out
    }

    fn run_record(topic: &str, partition: i32, run: &Run) -> OffsetMapRecord {
        OffsetMapRecord::Run {
            topic: topic.to_owned(),
            partition,
            upstream_start: run.upstream_start,
            downstream_start: run.downstream_start,
            count: run.count,
        }
    }

    fn head_record(&self, topic: &str, partition: i32) -> Option<OffsetMapRecord> {
        Some(OffsetMapRecord::Head {
            topic: topic.to_owned(),
            partition,
            start: self.start?,
            frontier: self.frontier?,
            downstream_end: self.downstream_end,
        })
    }

    /// Rebuilds a map from the records of one source partition, in the order they were read
    /// (later records replace earlier ones with the same key; tombstones delete runs).
    /// A head older than the runs (a crash between writes) is reconciled: the frontier and
    /// downstream end never fall behind the last run.
    pub fn restore<I>(records: I, max_runs: usize) -> Result<Self, OffsetMapError>
    where
        I: IntoIterator<Item = OffsetMapRecord>,
    {
        let mut runs: BTreeMap<i64, Run> = BTreeMap::new();
        let mut head: Option<(i64, i64, Option<i64>)> = None;
        let mut tp: Option<(String, i32)> = None;
        for record in records {
            let (topic, partition) = record.topic_partition();
            match &tp {
                None => tp = Some((topic.to_owned(), partition)),
                Some((t, p)) if t == topic && *p == partition => {}
                Some((t, p)) => {
                    return Err(OffsetMapError::Corrupt(format!(
                        "records for {t}-{p} and {topic}-{partition} mixed"
                    )))
                }
            }
            match record {
                OffsetMapRecord::Head {
                    start,
                    frontier,
                    downstream_end,
                    ..
                } => head = Some((start, frontier, downstream_end)),
                OffsetMapRecord::Run {
                    upstream_start,
                    downstream_start,
                    count,
                    ..
                } => {
                    if upstream_start < 0 || downstream_start < 0 || count <= 0 {
                        return Err(OffsetMapError::Corrupt(format!(
                            "run at {upstream_start} has invalid fields"
                        )));
                    }
                    if upstream_start.checked_add(count).is_none()
                        || downstream_start.checked_add(count).is_none()
                    {
                        return Err(OffsetMapError::Overflow);
                    }
                    runs.insert(
                        upstream_start,
                        Run {
                            upstream_start,
                            downstream_start,
                            count,
                        },
                    );
                }
                OffsetMapRecord::RunTombstone { upstream_start, .. } => {
                    runs.remove(&upstream_start);
                }
            }
        }
        let mut map = Self::new(max_runs);
        let mut prev: Option<Run> = None;
        for run in runs.into_values() {
            if let Some(p) = prev {
                if run.upstream_start < p.upstream_end()
                    || run.downstream_start < p.downstream_end()
                {
                    return Err(OffsetMapError::Corrupt(format!(
                        "run at upstream {} overlaps the run at {}",
                        run.upstream_start, p.upstream_start
                    )));
                }
            }
            prev = Some(run);
            map.runs.push_back(run);
        }
        let last = map.runs.back().copied();
        let first = map.runs.front().copied();
        match head {
            Some((start, frontier, downstream_end)) => {
                if start < 0 || frontier < start {
                    return Err(OffsetMapError::Corrupt(format!(
                        "head has start {start} and frontier {frontier}"
                    )));
                }
                // Runs entirely below the recorded start were meant to be deleted.
                while map.runs.front().is_some_and(|r| r.upstream_end() <= start) {
                    map.runs.pop_front();
                }
                let start = match map.runs.front() {
                    Some(r) => start.min(r.upstream_start),
                    None => start,
                };
                map.start = Some(start);
                map.frontier = Some(last.map_or(frontier, |r| frontier.max(r.upstream_end())));
                map.downstream_end = match (downstream_end, last) {
                    (Some(d), Some(r)) => Some(d.max(r.downstream_end())),
                    (None, Some(r)) => Some(r.downstream_end()),
                    (d, None) => d,
                };
            }
            None => {
                if let (Some(first), Some(last)) = (first, last) {
                    map.start = Some(first.upstream_start);
                    map.frontier = Some(last.upstream_end());
                    map.downstream_end = Some(last.downstream_end());
                }
            }
        }
        while map.runs.len() > map.max_runs {
            map.drop_oldest();
        }
        // What was read back is already durable.
        map.dirty_runs.clear();
        map.head_dirty = false;
        Ok(map)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Restarting drops every run durably (tombstones, then the new head): read back, the map
    /// knows only the new start, and translates nothing below it.
    #[test]
    fn restart_at_tombstones_the_old_runs() {
        let mut m = OffsetMap::starting_at(0, Some(0), 16).unwrap();
        m.record_forwarded(0, 0, 10).unwrap();
        m.record_forwarded(12, 10, 5).unwrap();
        let mut written = m.take_changes("t", 0);
        m.restart_at(40, 30).unwrap();
        let changes = m.take_changes("t", 0);
        assert!(changes
            .iter()
            .any(|r| matches!(r, OffsetMapRecord::RunTombstone { .. })));
        written.extend(changes);
        let back = OffsetMap::restore(written, 16).unwrap();
        assert_eq!(back.runs().len(), 0);
        assert_eq!(
            (back.start(), back.frontier(), back.downstream_end()),
            (Some(40), Some(40), Some(30))
        );
        assert_eq!(back.translate(5), None);
        assert_eq!(back.translate(40), Some(30));
    }

    #[test]
    fn design_notes_example() {
        // Upstream 0..10 forwarded to 0..10, marker at 10, 11..20 forwarded to 10..19.
        let mut m = OffsetMap::new(16);
        m.record_forwarded(0, 0, 5).unwrap();
        m.record_forwarded(5, 5, 5).unwrap(); // merges
        assert_eq!(m.runs().len(), 1);
        m.advance_upstream(11);
        m.record_forwarded(11, 10, 9).unwrap();
        assert_eq!(m.runs().len(), 2);
        assert_eq!(m.translate(0), Some(0));
        assert_eq!(m.translate(9), Some(9));
        assert_eq!(m.translate(10), Some(10)); // the marker maps to the next real record
        assert_eq!(m.translate(11), Some(10));
        assert_eq!(m.translate(19), Some(18));
        assert_eq!(m.translate(20), Some(19)); // the end maps to the downstream end
        assert_eq!(m.translate(21), None); // never guess ahead
        assert_eq!(m.translate(-1), None);
        m.advance_upstream(22); // trailing marker(s)
        assert_eq!(m.translate(21), Some(19));
        assert_eq!(m.translate(22), Some(19));
        assert_eq!(m.translate(23), None);
    }

    #[test]
    fn implicit_skip_and_start() {
        let mut m = OffsetMap::starting_at(100, Some(40), 8).unwrap();
        assert_eq!(m.translate(100), Some(40));
        assert_eq!(m.translate(99), None);
        m.record_forwarded(103, 40, 2).unwrap();
        assert_eq!(m.translate(100), Some(40));
        assert_eq!(m.translate(104), Some(41));
        assert_eq!(m.translate(105), Some(42));
        let mut empty = OffsetMap::new(8);
        assert_eq!(empty.translate(0), None);
        empty.advance_upstream(7);
        assert_eq!(empty.translate(7), None); // downstream end unknown
        empty.record_forwarded(9, 3, 1).unwrap();
        assert_eq!(empty.translate(7), Some(3));
        assert_eq!(empty.translate(6), None);
    }

    #[test]
    fn misuse_is_reported() {
        let mut m = OffsetMap::new(8);
        assert_eq!(
            m.record_forwarded(0, 0, 0),
            Err(OffsetMapError::InvalidCount { count: 0 })
        );
        m.record_forwarded(10, 10, 5).unwrap();
        assert!(matches!(
            m.record_forwarded(12, 20, 1),
            Err(OffsetMapError::UpstreamRegression {
                frontier: 15,
                got: 12
            })
        ));
        assert!(matches!(
            m.record_forwarded(15, 14, 1),
            Err(OffsetMapError::DownstreamRegression { .. })
        ));
        assert!(matches!(
            m.record_forwarded(i64::MAX, 20, 2),
            Err(OffsetMapError::Overflow)
        ));
        assert!(matches!(
            m.record_forwarded(-1, 20, 2),
            Err(OffsetMapError::NegativeOffset { .. })
        ));
        m.reset();
        assert_eq!(m.translate(12), None);
        m.record_forwarded(0, 0, 1).unwrap();
        assert_eq!(m.translate(0), Some(0));
    }

    #[test]
    fn bounded_runs_drop_oldest() {
        let mut m = OffsetMap::new(2);
        m.record_forwarded(0, 0, 2).unwrap(); // run A: 0..2
        m.record_forwarded(3, 2, 2).unwrap(); // run B: 3..5 (gap at 2)
        m.record_forwarded(6, 4, 2).unwrap(); // run C: 6..8 -> A dropped
        assert_eq!(m.runs().len(), 2);
        assert_eq!(m.start(), Some(2));
        assert_eq!(m.translate(1), None);
        assert_eq!(m.translate(2), Some(2)); // gap after A still known
        assert_eq!(m.translate(7), Some(5));
    }

    #[test]
    fn trim_by_log_start() {
        let mut m = OffsetMap::new(8);
        m.record_forwarded(0, 0, 2).unwrap();
        m.record_forwarded(3, 2, 2).unwrap();
        m.trim_before(3);
        assert_eq!(m.runs().len(), 1);
        assert_eq!(m.start(), Some(3));
        assert_eq!(m.translate(2), None);
        assert_eq!(m.translate(3), Some(2));
        m.trim_before(100); // beyond the frontier: coverage shrinks to the frontier
        assert_eq!(m.start(), Some(5));
        assert_eq!(m.translate(5), Some(4));
        assert_eq!(m.runs().len(), 0);
    }

    /// A commit whose write failed puts its records back: the next `take_changes` hands out
    /// everything again (with current values), so restoring from what was finally written
    /// equals the map — no run lost (before `requeue_changes`, the failed batch was gone).
    #[test]
    fn requeued_changes_are_written_again() {
        let mut m = OffsetMap::new(3);
        m.record_forwarded(0, 0, 2).unwrap();
        let written = m.take_changes("t", 0);
        m.record_forwarded(3, 2, 2).unwrap(); // a new run after a skipped offset
        let failed = m.take_changes("t", 0);
        assert!(!failed.is_empty());
        m.requeue_changes(&failed);
        m.record_forwarded(6, 4, 1).unwrap(); // another run meanwhile; the failed one is unchanged
        let retried = m.take_changes("t", 0);
        let log: Vec<_> = written.into_iter().chain(retried).collect();
        let restored = OffsetMap::restore(compact(log), 3).unwrap();
        for u in -1..12 {
            assert_eq!(restored.translate(u), m.translate(u), "upstream {u}");
        }
        assert_eq!(restored.frontier(), m.frontier());
    }

    /// What a compacted topic keeps of `log`: the last record per key (tombstones remove).
    fn compact(log: Vec<OffsetMapRecord>) -> Vec<OffsetMapRecord> {
        let mut by_key: Vec<(bytes::Bytes, Option<OffsetMapRecord>)> = Vec::new();
        for r in log {
            let key = r.encode_key().unwrap();
            let value = r.encode_value().map(|_| r.clone());
            by_key.retain(|(k, _)| *k != key);
            by_key.push((key, value));
        }
        by_key.into_iter().filter_map(|(_, v)| v).collect()
    }

    #[test]
    fn durable_records_round_trip() {
        let mut m = OffsetMap::new(3);
        m.record_forwarded(0, 0, 2).unwrap();
        let first = m.take_changes("t", 0);
        assert_eq!(first.len(), 2); // run + head
        m.record_forwarded(2, 2, 2).unwrap(); // grows run 0
        m.record_forwarded(5, 4, 1).unwrap();
        m.record_forwarded(7, 5, 1).unwrap();
        m.record_forwarded(9, 6, 1).unwrap(); // drops run 0
        m.advance_upstream(11);
        let second = m.take_changes("t", 0);
        assert!(second.contains(&OffsetMapRecord::RunTombstone {
            topic: "t".into(),
            partition: 0,
            upstream_start: 0
        }));
        assert!(m.take_changes("t", 0).is_empty());
        // Through the byte format, as read back from the topic.
        let bytes: Vec<_> = first
            .iter()
            .chain(second.iter())
            .map(|r| (r.encode_key().unwrap(), r.encode_value()))
            .collect();
        let decoded = bytes
            .iter()
            .map(|(k, v)| OffsetMapRecord::decode(k, v.as_deref()).unwrap());
        let restored = OffsetMap::restore(decoded, 3).unwrap();
        for u in -1..13 {
            assert_eq!(restored.translate(u), m.translate(u), "u={u}");
        }
        // A head written before the latest run is reconciled with the runs.
        let mut stale = m.snapshot_records("t", 0);
        let head = stale.pop().unwrap();
        let mut reordered = vec![head];
        reordered.extend(stale);
        reordered.push(OffsetMapRecord::Run {
            topic: "t".into(),
            partition: 0,
            upstream_start: 11,
            downstream_start: 7,
            count: 3,
        });
        let r = OffsetMap::restore(reordered, 8).unwrap();
        assert_eq!(r.frontier(), Some(14));
        assert_eq!(r.translate(14), Some(10));
        // Overlapping runs are corrupt.
        let bad = vec![
            OffsetMapRecord::Run {
                topic: "t".into(),
                partition: 0,
                upstream_start: 0,
                downstream_start: 0,
                count: 5,
            },
            OffsetMapRecord::Run {
                topic: "t".into(),
                partition: 0,
                upstream_start: 3,
                downstream_start: 9,
                count: 1,
            },
        ];
        assert!(matches!(
            OffsetMap::restore(bad, 8),
            Err(OffsetMapError::Corrupt(_))
        ));
    }

    #[derive(Debug, Clone)]
    enum Event {
        Forward(i64),
        Skip(i64),
        ForeignWrites(i64),
        TrailingSkip(i64),
    }

    fn event() -> impl Strategy<Value = Event> {
        prop_oneof![
            4 => (1i64..6).prop_map(Event::Forward),
            2 => (1i64..4).prop_map(Event::Skip),
            1 => (1i64..3).prop_map(Event::ForeignWrites),
            1 => (1i64..3).prop_map(Event::TrailingSkip),
        ]
    }

    /// Brute force: per upstream offset, its downstream offset if forwarded.
    struct Model {
        start: i64,
        fate: Vec<Option<i64>>,
        downstream_end: i64,
    }

    impl Model {
        fn truth(&self, u: i64) -> Option<i64> {
            let frontier = self.start + self.fate.len() as i64;
            if u < self.start || u > frontier {
                return None;
            }
            let from = (u - self.start) as usize;
            Some(
                self.fate[from..]
                    .iter()
                    .flatten()
                    .next()
                    .copied()
                    .unwrap_or(self.downstream_end),
            )
        }
    }

    fn run_events(start: i64, d0: i64, events: &[Event], max_runs: usize) -> (OffsetMap, Model) {
        let mut map = OffsetMap::starting_at(start, Some(d0), max_runs).unwrap();
        let mut model = Model {
            start,
            fate: Vec::new(),
            downstream_end: d0,
        };
        let mut pending_skip = 0;
        for e in events {
            match e {
                Event::Forward(n) => {
                    let u = start + model.fate.len() as i64 + pending_skip;
                    model.fate.extend((0..pending_skip).map(|_| None));
                    pending_skip = 0;
                    let d = model.downstream_end;
                    map.record_forwarded(u, d, *n).unwrap();
                    model.fate.extend((0..*n).map(|i| Some(d + i)));
                    model.downstream_end += n;
                }
                Event::Skip(n) => pending_skip += n, // implicit skip
                Event::ForeignWrites(n) => model.downstream_end += n,
                Event::TrailingSkip(n) => {
                    model.fate.extend((0..pending_skip + n).map(|_| None));
                    pending_skip = 0;
                    map.advance_upstream(start + model.fate.len() as i64);
                }
            }
        }
        (map, model)
    }

    proptest! {
        #[test]
        fn translate_matches_brute_force(start in 0i64..50, d0 in 0i64..50,
                                         events in proptest::collection::vec(event(), 0..40)) {
            let (map, model) = run_events(start, d0, &events, usize::MAX);
            let frontier = start + model.fate.len() as i64;
            for u in (start - 3)..(frontier + 3) {
                // Foreign writes after the last forward move the real end, which the map cannot
                // see; compare only where the model's answer is a forwarded record or the end
                // as the map knows it.
                let expected = model.truth(u);
                let got = map.translate(u);
                let forwarded_after = u >= start && u <= frontier
                    && model.fate[((u - start) as usize).min(model.fate.len())..].iter().flatten().next().is_some();
                if forwarded_after || expected.is_none() {
                    prop_assert_eq!(got, expected, "u={}", u);
                } else {
                    // Past the last forwarded record: the map answers its own downstream end,
                    // which is never ahead of the real end.
                    prop_assert!(got.is_some() && got <= expected, "u={} got={:?} expected={:?}", u, got, expected);
                }
            }
        }

        #[test]
        fn upstream_for_inverts_translate(start in 0i64..50, d0 in 0i64..50,
                                          events in proptest::collection::vec(event(), 0..40)) {
            let (map, model) = run_events(start, d0, &events, usize::MAX);
            let frontier = start + model.fate.len() as i64;
            let first = map.translate(start).unwrap();
            let end = map.downstream_end().unwrap();
            for d in (d0 - 3)..(model.downstream_end + 3) {
                let got = map.upstream_for(d);
                if d < first || d > end {
                    prop_assert_eq!(got, None, "d={}", d);
                    continue;
                }
                // The first upstream record forwarded at or after `d`, else the frontier.
                let want = model.fate.iter().position(|f| f.is_some_and(|x| x >= d))
                    .map_or(frontier, |i| start + i as i64);
                prop_assert_eq!(got, Some(want), "d={}", d);
                // Nothing forwarded below the answer lies at or after `d`; round trip.
                let u = want;
                prop_assert!(model.fate[..(u - start) as usize].iter().flatten().all(|&x| x < d));
                prop_assert!(map.translate(u).unwrap() >= d);
            }
        }

        #[test]
        fn bounded_map_is_never_wrong(start in 0i64..50, d0 in 0i64..50, max_runs in 1usize..4,
                                      events in proptest::collection::vec(event(), 0..40)) {
            let (mut map, model) = run_events(start, d0, &events, max_runs);
            let (full, _) = run_events(start, d0, &events, usize::MAX);
            let frontier = start + model.fate.len() as i64;
            prop_assert!(map.runs().len() <= max_runs);
            for u in (start - 3)..(frontier + 3) {
                if let Some(got) = map.translate(u) {
                    prop_assert_eq!(Some(got), full.translate(u), "u={}", u);
                }
            }
            // Restoring from the durable records gives the same answers.
            let records = map.snapshot_records("t", 3);
            let restored = OffsetMap::restore(records, max_runs).unwrap();
            for u in (start - 3)..(frontier + 3) {
                prop_assert_eq!(restored.translate(u), map.translate(u), "u={}", u);
            }
        }

        #[test]
        fn incremental_changes_rebuild_the_map(start in 0i64..50, d0 in 0i64..50, max_runs in 1usize..5,
                                                events in proptest::collection::vec(event(), 0..40),
                                                flush_every in 1usize..5) {
            let mut map = OffsetMap::starting_at(start, Some(d0), max_runs).unwrap();
            let mut log = Vec::new();
            let mut d = d0;
            let mut u = start;
            for (i, e) in events.iter().enumerate() {
                match e {
                    Event::Forward(n) => { map.record_forwarded(u, d, *n).unwrap(); u += n; d += n; }
                    Event::Skip(n) => u += n,
                    Event::ForeignWrites(n) => d += n,
                    Event::TrailingSkip(n) => { u += n; map.advance_upstream(u); }
                }
                if i % flush_every == 0 { log.extend(map.take_changes("t", 0)); }
            }
            log.extend(map.take_changes("t", 0));
            let restored = OffsetMap::restore(log, max_runs).unwrap();
            for q in (start - 3)..(u + 3) {
                prop_assert_eq!(restored.translate(q), map.translate(q), "u={}", q);
            }
        }
    }
}
