//! When to write an MM2 offset sync for one source partition.
//!
//! MM2's rule (`OffsetSyncWriter.PartitionState.update`, Kafka 3.7+), applied per
//! acknowledged record `(upstream, downstream)`: sync now if
//! - no sync was emitted yet in this lifetime, or
//! - `downstream - (lastSyncDownstream + 1) >= offset.lag.max` (the `+ 1` is because
//!   `OffsetSyncStore` translates offsets past a sync to `sync.downstream + 1`), or
//! - the upstream offsets jumped (`upstream - previousUpstream != 1`), or
//! - the downstream offset went backwards (`downstream < previousDownstream`).
//!
//! Otherwise the pair becomes the partition's *delayed* sync, sent at the next offset
//! commit (`promoteDelayedOffsetSyncs`, KAFKA-15906), so quiet partitions end up exactly
//! synced.
//!
//! Strait acknowledges whole batches. [`SyncEmitter::on_batch_acked`] evaluates the rule at
//! the batch's first record (where a jump or backwards step shows) with Strait's extra
//! trigger — the offset delta `downstream - upstream` changed, which also catches writes
//! by others into the remote partition — and evaluates staleness at the batch's last
//! record. So a batch yields at most two syncs, each exact (the record at `upstream` is the
//! record at `downstream`). [`SyncEmitter::flush`] returns the delayed sync.

/// An exact (upstream, downstream) pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SyncPoint {
    /// Upstream offset of the record.
    pub upstream: i64,
    /// Downstream offset of the same record.
    pub downstream: i64,
}

impl SyncPoint {
    fn delta(self) -> i64 {
        self.downstream - self.upstream
    }
}

/// Syncs to emit now for one batch, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EmittedSyncs {
    /// A sync at the batch's first record.
    pub first: Option<SyncPoint>,
    /// A sync at the batch's last record.
    pub last: Option<SyncPoint>,
}

impl EmittedSyncs {
    /// The syncs in emission order.
    pub fn iter(&self) -> impl Iterator<Item = SyncPoint> + '_ {
        self.first.iter().chain(self.last.iter()).copied()
    }

    /// True when nothing is to be emitted.
    pub fn is_empty(&self) -> bool {
        self.first.is_none() && self.last.is_none()
    }
}

/// Offset-sync state of one source partition.
#[derive(Debug, Clone)]
pub struct SyncEmitter {
    max_offset_lag: i64,
    last_sync: Option<SyncPoint>,
    previous: Option<SyncPoint>,
}

impl SyncEmitter {
    /// A fresh partition state with `offset.lag.max`.
    pub fn new(max_offset_lag: i64) -> Self {
        Self {
            max_offset_lag,
            last_sync: None,
            previous: None,
        }
    }

    /// The last sync emitted (immediately or by flush).
    pub fn last_sync(&self) -> Option<SyncPoint> {
        self.last_sync
    }

    /// Decides which syncs to emit for a batch of `count` records acknowledged at
    /// `downstream_base`, starting at `upstream_base`. A `count` below 1 is treated as 1.
    pub fn on_batch_acked(
        &mut self,
        upstream_base: i64,
        downstream_base: i64,
        count: i64,
    ) -> EmittedSyncs {
        let span = count.max(1) - 1;
        let first = SyncPoint {
            upstream: upstream_base,
            downstream: downstream_base,
        };
        let last = SyncPoint {
            upstream: upstream_base.saturating_add(span),
            downstream: downstream_base.saturating_add(span),
        };
        let mut out = EmittedSyncs::default();
        let first_trigger = match (self.last_sync, self.previous) {
            (None, _) | (_, None) => true,
            (Some(_), Some(prev)) => {
                first.upstream.wrapping_sub(prev.upstream) != 1
                    || first.downstream < prev.downstream
                    || first.delta() != prev.delta()
            }
        };
        if first_trigger {
            out.first = Some(first);
            self.last_sync = Some(first);
        }
        if let Some(sync) = self.last_sync {
            if last != sync
                && last
                    .downstream
                    .saturating_sub(sync.downstream.saturating_add(1))
                    >= self.max_offset_lag
            {
                out.last = Some(last);
                self.last_sync = Some(last);
            }
        }
        self.previous = Some(last);
        out
    }

    /// The delayed sync: the last acknowledged record if it was not synced yet
    /// (MM2 sends these at each offset commit).
    pub fn flush(&mut self) -> Option<SyncPoint> {
        let prev = self.previous?;
        if self.last_sync == Some(prev) {
            return None;
        }
        self.last_sync = Some(prev);
        Some(prev)
    }

    /// Forgets the partition's history (e.g. after reassignment); the next batch syncs.
    pub fn reset(&mut self) {
        self.last_sync = None;
        self.previous = None;
    }
}

/// MM2's per-record rule, kept as the reference the batch rule is tested against.
#[cfg(test)]
#[derive(Debug, Clone)]
struct Mm2PartitionState {
    previous_upstream: i64,
    previous_downstream: i64,
    last_sync_downstream: i64,
    max_offset_lag: i64,
}

#[cfg(test)]
impl Mm2PartitionState {
    fn new(max_offset_lag: i64) -> Self {
        Self {
            previous_upstream: -1,
            previous_downstream: -1,
            last_sync_downstream: -1,
            max_offset_lag,
        }
    }

    fn update(&mut self, upstream: i64, downstream: i64) -> bool {
        let sync = self.last_sync_downstream == -1
            || downstream - (self.last_sync_downstream + 1) >= self.max_offset_lag
            || upstream - self.previous_upstream != 1
            || downstream < self.previous_downstream;
        if sync {
            self.last_sync_downstream = downstream;
        }
        self.previous_upstream = upstream;
        self.previous_downstream = downstream;
        sync
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn first_batch_syncs_and_quiet_partition_flushes() {
        let mut s = SyncEmitter::new(100);
        let e = s.on_batch_acked(0, 0, 10);
        assert_eq!(
            e.first,
            Some(SyncPoint {
                upstream: 0,
                downstream: 0
            })
        );
        assert_eq!(e.last, None);
        assert!(s.on_batch_acked(10, 10, 10).is_empty());
        assert_eq!(
            s.flush(),
            Some(SyncPoint {
                upstream: 19,
                downstream: 19
            })
        );
        assert_eq!(s.flush(), None);
    }

    #[test]
    fn gaps_and_delta_changes_sync_at_the_first_record() {
        let mut s = SyncEmitter::new(100);
        s.on_batch_acked(0, 0, 10);
        // A transaction marker at upstream 10: the next batch starts at 11 but lands at 10.
        let e = s.on_batch_acked(11, 10, 5);
        assert_eq!(
            e.first,
            Some(SyncPoint {
                upstream: 11,
                downstream: 10
            })
        );
        // Someone else wrote to the remote partition: same upstream step, delta changed.
        let e = s.on_batch_acked(16, 20, 1);
        assert!(e.first.is_some());
        // The remote partition went backwards.
        let e = s.on_batch_acked(17, 0, 1);
        assert!(e.first.is_some());
    }

    #[test]
    fn staleness_uses_last_sync_plus_one() {
        let mut s = SyncEmitter::new(10);
        s.on_batch_acked(0, 0, 1); // sync at 0
                                   // Last record downstream 10: 10 - (0 + 1) = 9 < 10 -> no sync.
        assert!(s.on_batch_acked(1, 1, 10).is_empty());
        // Downstream 11: 11 - 1 = 10 >= 10 -> sync at the batch's last record.
        let e = s.on_batch_acked(11, 11, 1);
        assert_eq!(
            e.last,
            Some(SyncPoint {
                upstream: 11,
                downstream: 11
            })
        );
        // Zero lag syncs at every batch's end.
        let mut z = SyncEmitter::new(0);
        z.on_batch_acked(0, 0, 1);
        assert!(z.on_batch_acked(1, 1, 1).last.is_some());
    }

    proptest! {
        /// Every sync is exact, and the batch rule syncs at least as often as MM2's per-record
        /// rule would for the same records (never a staler MM2 translation).
        #[test]
        fn exact_and_no_staler_than_mm2(lag in 0i64..20,
                                        batches in proptest::collection::vec((1i64..30, 0i64..3, 0i64..3), 1..30)) {
            let mut s = SyncEmitter::new(lag);
            let mut mm2 = Mm2PartitionState::new(lag);
            let (mut u, mut d) = (0i64, 0i64);
            let mut truth = std::collections::HashMap::new();
            let mut our_last_sync_d = -1i64;
            for (count, skip, foreign) in batches {
                u += skip;
                d += foreign;
                for i in 0..count {
                    truth.insert(u + i, d + i);
                    if mm2.update(u + i, d + i) {
                        // MM2 would sync here; ours must be no staler by the batch's end.
                    }
                }
                for sync in s.on_batch_acked(u, d, count).iter() {
                    prop_assert_eq!(truth.get(&sync.upstream), Some(&sync.downstream));
                    our_last_sync_d = sync.downstream;
                }
                // After the batch, our last sync is within the lag bound of the batch end.
                let end_d = d + count - 1;
                prop_assert!(end_d - (our_last_sync_d + 1) < lag.max(1) || lag == 0 && end_d == our_last_sync_d,
                    "end {} last sync {} lag {}", end_d, our_last_sync_d, lag);
                u += count;
                d += count;
            }
            if let Some(f) = s.flush() {
                prop_assert_eq!(truth.get(&f.upstream), Some(&f.downstream));
                prop_assert_eq!(f.upstream, u - 1);
            }
        }
    }
}
