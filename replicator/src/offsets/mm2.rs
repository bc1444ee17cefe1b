//! MM2-compatible translation over offset syncs (`OffsetSyncStore.java`, KAFKA-14666).
//!
//! Per partition the store keeps 64 slots; slot 0 is the newest sync and slot `i` holds a
//! sync no more than about `2^i` upstream offsets older, so recent offsets translate
//! finely and old ones coarsely. Until the syncs topic has been read to its end once
//! ([`Mm2OffsetSyncStore::mark_read_to_end`]), every sync replaces all slots and nothing is
//! translated. A sync older than slot 0 (upstream went backwards) also clears all slots.
//!
//! Translation of a committed upstream offset `U`: the newest sync with `upstream <= U`;
//! `downstream + (U == upstream ? 0 : 1)`. If every sync is ahead of `U` the answer is
//! [`Mm2Translation::TooOld`] (Java's `-1`, which checkpointing then drops).

use std::collections::HashMap;

use super::{SyncPoint, TopicPartition};
use crate::formats::OffsetSync;

/// Slots per partition (`Long.SIZE`).
pub const MM2_SYNCS_PER_PARTITION: usize = 64;

/// Result of an MM2-style translation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Mm2Translation {
    /// The syncs topic has not been read to the end yet.
    NotReady,
    /// No sync for the partition.
    NoSync,
    /// Every sync is newer than the offset.
    TooOld,
    /// The translated downstream offset.
    Offset(i64),
}

/// In-memory MM2 offset-sync store.
#[derive(Debug, Clone, Default)]
pub struct Mm2OffsetSyncStore {
    syncs: HashMap<TopicPartition, Box<[SyncPoint; MM2_SYNCS_PER_PARTITION]>>,
    read_to_end: bool,
}

impl Mm2OffsetSyncStore {
    /// Empty store, not yet read to the end.
    pub fn new() -> Self {
        Self::default()
    }

    /// Declares the initial read of the syncs topic complete.
    pub fn mark_read_to_end(&mut self) {
        self.read_to_end = true;
    }

    /// Whether translation is enabled.
    pub fn is_read_to_end(&self) -> bool {
        self.read_to_end
    }

    /// Applies one sync record (`handleRecord`).
    pub fn handle(&mut self, sync: &OffsetSync) {
        let point = SyncPoint {
            upstream: sync.upstream_offset,
            downstream: sync.downstream_offset,
        };
        let tp = TopicPartition::new(sync.topic.clone(), sync.partition);
        let read_to_end = self.read_to_end;
        let slots = self
            .syncs
            .entry(tp)
            .or_insert_with(|| Box::new([point; MM2_SYNCS_PER_PARTITION]));
        if !read_to_end || slots[0].upstream > point.upstream {
            slots.fill(point);
            return;
        }
        slots[0] = point;
        for i in 1..MM2_SYNCS_PER_PARTITION {
            let old = slots[i];
            let mask = i64::MAX << i;
            if ((old.upstream ^ point.upstream) & mask) != 0 {
                slots[i] = point;
            } else {
                break;
            }
        }
    }

    /// Translates a committed upstream offset (`translateDownstream`).
    pub fn translate(&self, tp: &TopicPartition, upstream: i64) -> Mm2Translation {
        if !self.read_to_end {
            return Mm2Translation::NotReady;
        }
        let Some(slots) = self.syncs.get(tp) else {
            return Mm2Translation::NoSync;
        };
        let sync = slots
            .iter()
            .find(|s| s.upstream <= upstream)
            .copied()
            .unwrap_or(slots[MM2_SYNCS_PER_PARTITION - 1]);
        if sync.upstream > upstream {
            return Mm2Translation::TooOld;
        }
        let step = if upstream == sync.upstream { 0 } else { 1 };
        Mm2Translation::Offset(sync.downstream + step)
    }

    /// The distinct syncs held for a partition, newest first.
    pub fn syncs(&self, tp: &TopicPartition) -> Vec<SyncPoint> {
        let mut out: Vec<SyncPoint> = Vec::new();
        if let Some(slots) = self.syncs.get(tp) {
            for s in slots.iter() {
                if out.last() != Some(s) {
                    out.push(*s);
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sync(u: i64, d: i64) -> OffsetSync {
        OffsetSync {
            topic: "t".into(),
            partition: 0,
            upstream_offset: u,
            downstream_offset: d,
        }
    }

    #[test]
    fn translation_rules() {
        let tp = TopicPartition::new("t", 0);
        let mut s = Mm2OffsetSyncStore::new();
        s.handle(&sync(100, 50));
        assert_eq!(s.translate(&tp, 100), Mm2Translation::NotReady);
        s.mark_read_to_end();
        assert_eq!(s.translate(&tp, 100), Mm2Translation::Offset(50));
        assert_eq!(s.translate(&tp, 150), Mm2Translation::Offset(51));
        assert_eq!(s.translate(&tp, 99), Mm2Translation::TooOld);
        assert_eq!(
            s.translate(&TopicPartition::new("t", 1), 5),
            Mm2Translation::NoSync
        );
        s.handle(&sync(200, 140));
        assert_eq!(s.translate(&tp, 150), Mm2Translation::Offset(51));
        assert_eq!(s.translate(&tp, 200), Mm2Translation::Offset(140));
        // Upstream went backwards: everything is replaced.
        s.handle(&sync(10, 5));
        assert_eq!(
            s.syncs(&tp),
            vec![SyncPoint {
                upstream: 10,
                downstream: 5
            }]
        );
    }

    #[test]
    fn initial_read_keeps_only_latest() {
        let tp = TopicPartition::new("t", 0);
        let mut s = Mm2OffsetSyncStore::new();
        s.handle(&sync(0, 0));
        s.handle(&sync(100, 90));
        s.mark_read_to_end();
        assert_eq!(s.translate(&tp, 50), Mm2Translation::TooOld);
    }

    #[test]
    fn exponential_spacing_invariant() {
        let tp = TopicPartition::new("t", 0);
        let mut s = Mm2OffsetSyncStore::new();
        s.mark_read_to_end();
        for u in 0..5000i64 {
            s.handle(&sync(u * 3, u * 2));
        }
        let slots = &s.syncs[&tp];
        // syncs[j].upstream <= syncs[i].upstream < syncs[j].upstream + 2^j for i <= j.
        for j in 0..MM2_SYNCS_PER_PARTITION {
            for i in 0..=j {
                assert!(slots[j].upstream <= slots[i].upstream);
                if j < 62 {
                    assert!(slots[i].upstream < slots[j].upstream + (1i64 << j));
                }
            }
        }
        assert!(s.syncs(&tp).len() < 20);
        // Translation is never ahead of the truth (downstream = upstream * 2 / 3 here).
        for u in (0..15000i64).step_by(7) {
            if let Mm2Translation::Offset(d) = s.translate(&tp, u) {
                let truth = (u + 2) / 3 * 2; // first record at or after u
                assert!(d <= truth, "u={u} d={d} truth={truth}");
            }
        }
    }
}
