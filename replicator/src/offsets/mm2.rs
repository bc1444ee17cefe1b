//! MM2-compatible translation over offset syncs (`OffsetSyncStore.java` as of Kafka 4.x:
//! KAFKA-14666's exponentially spaced syncs, with the invariants of its later rework).
//!
//! Per partition the store keeps 64 slots, newest first: slot 0 is the newest sync, and slot
//! `j` holds a sync at most about `2^j` upstream offsets older than slot `i < j` (invariant B:
//! `slot[i].upstream <= slot[j].upstream + 2^j - 2^i`) while distinct slots stay apart
//! (invariant C: `slot[i].upstream >= slot[j].upstream + 2^max(i-2,0)`), so recent offsets
//! translate finely and old ones coarsely. A sync older than slot 0 (upstream went
//! backwards) clears every slot.
//!
//! Loading: MM2 keeps only the last sync of each partition while it reads the syncs topic
//! for the first time ("pessimistic" loading), unless its checkpoint store loaded, in which
//! case checkpoints cannot regress and it builds the full structure from the whole topic
//! (`MirrorCheckpointTask.start`, KAFKA-15905). [`Mm2OffsetSyncStore::new`] is the former,
//! [`Mm2OffsetSyncStore::with_full_history`] the latter. Nothing is translated until
//! [`Mm2OffsetSyncStore::mark_read_to_end`].
//!
//! Translation of a committed upstream offset `U`: the newest sync with `upstream <= U`;
//! `downstream + (U == upstream ? 0 : 1)`. If every sync is ahead of `U` the answer is
//! [`Mm2Translation::TooOld`] (Java's `-1`, which checkpointing then drops). The answer is
//! never ahead of the truth: a consumer re-reads at most what lies between the sync and `U`.

use std::collections::HashMap;

use super::{OffsetMap, SyncPoint, TopicPartition};
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

/// A sync in a slot, with the number of the record it came from: MM2 compares slots by
/// identity (two records with equal offsets are different syncs), and so does this store.
#[derive(Debug, Clone, Copy)]
struct Slot {
    point: SyncPoint,
    id: u64,
}

impl Slot {
    fn same(&self, other: &Slot) -> bool {
        self.id == other.id
    }
}

type Slots = [Slot; MM2_SYNCS_PER_PARTITION];

/// In-memory MM2 offset-sync store.
#[derive(Debug, Clone)]
pub struct Mm2OffsetSyncStore {
    syncs: HashMap<TopicPartition, Box<Slots>>,
    read_to_end: bool,
    only_last_until_read: bool,
    next_id: u64,
}

impl Default for Mm2OffsetSyncStore {
    fn default() -> Self {
        Self::new()
    }
}

impl Mm2OffsetSyncStore {
    /// Empty store, not yet read to the end, loading pessimistically (MM2's default: only
    /// each partition's last sync survives the first read).
    pub fn new() -> Self {
        Self {
            syncs: HashMap::new(),
            read_to_end: false,
            only_last_until_read: true,
            next_id: 0,
        }
    }

    /// Empty store that keeps the spaced history from the first read on (MM2 once its
    /// checkpoints have loaded: the caller must keep checkpoints monotonic, as
    /// [`CheckpointState`](super::CheckpointState) does).
    pub fn with_full_history() -> Self {
        Self {
            only_last_until_read: false,
            ..Self::new()
        }
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
        let new = Slot {
            point: SyncPoint {
                upstream: sync.upstream_offset,
                downstream: sync.downstream_offset,
            },
            id: self.next_id,
        };
        self.next_id += 1;
        let only_last = !self.read_to_end && self.only_last_until_read;
        let tp = TopicPartition::new(sync.topic.clone(), sync.partition);
        match self.syncs.get_mut(&tp) {
            None => {
                self.syncs
                    .insert(tp, Box::new([new; MM2_SYNCS_PER_PARTITION]));
            }
            Some(slots) => update(slots, new, only_last),
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
            .find(|s| s.point.upstream <= upstream)
            .unwrap_or(&slots[MM2_SYNCS_PER_PARTITION - 1])
            .point;
        translate_with(sync, upstream)
    }

    /// The distinct syncs held for a partition, newest first: [`translate_over`] over them
    /// answers as [`translate`](Self::translate) does, in a fraction of the memory.
    pub fn syncs(&self, tp: &TopicPartition) -> Vec<SyncPoint> {
        let mut out: Vec<SyncPoint> = Vec::new();
        let mut last: Option<&Slot> = None;
        if let Some(slots) = self.syncs.get(tp) {
            for s in slots.iter() {
                if !last.is_some_and(|l| l.same(s)) {
                    out.push(s.point);
                }
                last = Some(s);
            }
        }
        out
    }

    /// The partitions with syncs.
    pub fn partitions(&self) -> impl Iterator<Item = &TopicPartition> + '_ {
        self.syncs.keys()
    }
}

/// MM2's translation over a partition's distinct syncs, newest first (as
/// [`Mm2OffsetSyncStore::syncs`] returns them).
pub fn translate_over(syncs: &[SyncPoint], upstream: i64) -> Mm2Translation {
    match syncs.iter().find(|s| s.upstream <= upstream) {
        Some(sync) => translate_with(*sync, upstream),
        None if syncs.is_empty() => Mm2Translation::NoSync,
        None => Mm2Translation::TooOld,
    }
}

/// MM2's answer for an upstream offset below what an exact [`OffsetMap`] covers (a group
/// committed before Strait took over from MM2), from MM2's syncs of the partition (newest
/// first). Only syncs below the map's start that form one consistent history with it are
/// believed: walking back from the map's start, each older sync must lie at or below the next
/// newer one downstream, by no more than it lies below upstream (a remote partition only
/// grows, by at most what was replicated). The walk stops at the first sync that breaks this
/// (one from before the remote partition was re-created or truncated, which MM2 would still
/// use), and the answer is capped at the map's answer at its start. `None` where the map
/// answers itself, or nothing believable does.
pub fn conservative_below(map: &OffsetMap, syncs: &[SyncPoint], upstream: i64) -> Option<i64> {
    let start = map.start()?;
    if upstream >= start {
        return None;
    }
    let at_start = map.translate(start)?;
    let mut newer = SyncPoint {
        upstream: start,
        downstream: at_start,
    };
    let mut believed: Vec<SyncPoint> = Vec::new();
    for s in syncs.iter().filter(|s| s.upstream < start) {
        // Exact in i128: syncs read back may hold any i64.
        let consistent = s.upstream <= newer.upstream
            && s.downstream <= newer.downstream
            && i128::from(newer.downstream) - i128::from(s.downstream)
                <= i128::from(newer.upstream) - i128::from(s.upstream);
        if !consistent {
            break;
        }
        believed.push(*s);
        newer = *s;
    }
    match translate_over(&believed, upstream) {
        Mm2Translation::Offset(d) => Some(d.min(at_start)),
        _ => None,
    }
}

fn translate_with(sync: SyncPoint, upstream: i64) -> Mm2Translation {
    if sync.upstream > upstream {
        return Mm2Translation::TooOld;
    }
    let step = if upstream == sync.upstream { 0 } else { 1 };
    // Java's wrapping `long` addition: a sync at `i64::MAX` gives a negative offset, which
    // checkpointing drops as untranslatable.
    Mm2Translation::Offset(sync.downstream.wrapping_add(step))
}

/// `updateSyncArray`: puts `new` in slot 0 and moves older syncs down only as far as the
/// invariants require, promoting a still-useful older sync into each slot it rewrites.
fn update(slots: &mut Slots, new: Slot, only_last: bool) {
    if only_last || new.point.upstream < slots[0].point.upstream {
        slots.fill(new);
        return;
    }
    let original: Slots = *slots;
    let mut replacement = new;
    let mut replacement_index = 0usize;
    slots[0] = replacement;
    for current in 1..MM2_SYNCS_PER_PARTITION {
        let previous = current - 1;
        loop {
            let old = original[replacement_index];
            let is_recent = invariant_b(&slots[previous], &old, previous, current);
            let separated_from_previous = invariant_c(&slots[previous], &old, previous);
            let next = current + 1;
            let separated_from_next =
                next >= MM2_SYNCS_PER_PARTITION || invariant_c(&old, &slots[next], current);
            let duplicate = replacement_index + 1 < MM2_SYNCS_PER_PARTITION
                && old.same(&original[replacement_index + 1]);
            let promote = is_recent && separated_from_previous && separated_from_next;
            if promote {
                replacement = old;
            }
            let skip_old = duplicate || !separated_from_previous;
            if promote || skip_old {
                replacement_index += 1;
            }
            if !(replacement_index < current && skip_old) {
                break;
            }
        }
        if invariant_b(&slots[previous], &slots[current], previous, current) {
            break;
        }
        slots[current] = replacement;
    }
}

/// Slot `j` is recent enough for slot `i < j`: `i.upstream <= j.upstream + 2^j - 2^i`
/// (Java's wrapping `long` arithmetic; a wrapped bound always holds).
fn invariant_b(i_sync: &Slot, j_sync: &Slot, i: usize, j: usize) -> bool {
    let bound = j_sync
        .point
        .upstream
        .wrapping_add(1i64 << j)
        .wrapping_sub(1i64 << i);
    i_sync.same(j_sync) || bound < 0 || i_sync.point.upstream <= bound
}

/// Slot `i` is far enough from the older `j`: `i.upstream >= j.upstream + 2^max(i-2, 0)`.
fn invariant_c(i_sync: &Slot, j_sync: &Slot, i: usize) -> bool {
    let bound = j_sync
        .point
        .upstream
        .wrapping_add(1i64 << i.saturating_sub(2));
    i_sync.same(j_sync) || (bound >= 0 && i_sync.point.upstream >= bound)
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
        // syncs[j].upstream <= syncs[i].upstream <= syncs[j].upstream + 2^j - 2^i for i <= j.
        for j in 0..MM2_SYNCS_PER_PARTITION {
            for i in 0..=j {
                assert!(slots[j].point.upstream <= slots[i].point.upstream);
                if j < 62 {
                    assert!(invariant_b(&slots[i], &slots[j], i, j), "i={i} j={j}");
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

    /// `translate(U - 1)`, `translate(U)`, `translate(U + 1)`, `translate(U + 2)` for a sync
    /// at `U` whose older neighbour in the store is `previous` (-1: none).
    fn assert_sparse(s: &Mm2OffsetSyncStore, at: i64, previous: i64) {
        let tp = TopicPartition::new("t", 0);
        let before = if previous < 0 {
            Mm2Translation::TooOld
        } else {
            Mm2Translation::Offset(previous + 1)
        };
        assert_eq!(s.translate(&tp, at - 1), before, "below {at}");
        assert_eq!(s.translate(&tp, at), Mm2Translation::Offset(at), "at {at}");
        assert_eq!(s.translate(&tp, at + 1), Mm2Translation::Offset(at + 1));
        assert_eq!(s.translate(&tp, at + 2), Mm2Translation::Offset(at + 1));
    }

    /// The answers of Kafka 4's `OffsetSyncStoreTest.testPastOffsetTranslation`: syncs every
    /// 10 offsets to 1000 during the first read (pessimistic), then every 10 to 10 000.
    #[test]
    fn past_offsets_as_mm2_after_a_pessimistic_load() {
        let mut s = Mm2OffsetSyncStore::new();
        for u in (0..=1000).step_by(10) {
            s.handle(&sync(u, u));
        }
        s.mark_read_to_end();
        assert_sparse(&s, 1000, -1);
        for u in (1010..=10_000).step_by(10) {
            s.handle(&sync(u, u));
        }
        assert_sparse(&s, 1000, -1);
        for (at, previous) in [
            (4840, 1000),
            (6760, 4840),
            (8680, 6760),
            (9160, 8680),
            (9640, 9160),
            (9880, 9640),
            (9940, 9880),
            (9970, 9940),
            (9990, 9970),
            (10_000, 9990),
        ] {
            assert_sparse(&s, at, previous);
        }
        // An upstream rewind clears the history.
        let tp = TopicPartition::new("t", 0);
        s.handle(&sync(1500, 11_000));
        assert_eq!(s.translate(&tp, 1499), Mm2Translation::TooOld);
        assert_eq!(s.translate(&tp, 1500), Mm2Translation::Offset(11_000));
        assert_eq!(s.translate(&tp, 2000), Mm2Translation::Offset(11_001));
    }

    /// `testPastOffsetTranslationWithoutInitializationReadToEnd`: the history is kept from
    /// the first read on (MM2 with its checkpoints loaded).
    #[test]
    fn past_offsets_as_mm2_with_full_history() {
        let mut s = Mm2OffsetSyncStore::with_full_history();
        for u in (0..=1000).step_by(10) {
            s.handle(&sync(u, u));
        }
        s.mark_read_to_end();
        assert_sparse(&s, 480, 0);
        assert_sparse(&s, 720, 480);
        assert_sparse(&s, 1000, 990);
        for u in (1000..=10_000).step_by(10) {
            s.handle(&sync(u, u));
        }
        for (at, previous) in [
            (3840, 0),
            (7680, 3840),
            (8640, 7680),
            (9120, 8640),
            (9600, 9120),
            (9840, 9600),
            (9900, 9840),
            (9960, 9900),
            (9990, 9960),
            (10_000, 9990),
        ] {
            assert_sparse(&s, at, previous);
        }
        // The compact form answers the same.
        let tp = TopicPartition::new("t", 0);
        let compact = s.syncs(&tp);
        assert!(compact.len() <= MM2_SYNCS_PER_PARTITION);
        for u in -5..10_010 {
            assert_eq!(translate_over(&compact, u), s.translate(&tp, u), "u={u}");
        }
    }

    /// Below an exact map's start (a hand-over from MM2), MM2's syncs answer conservatively;
    /// at and above it the map answers; syncs that contradict the map are not believed.
    #[test]
    fn conservative_below_an_exact_map() {
        // MM2 mirrored 0..500 one to one (syncs every 100); Strait resumed at 500 with the
        // remote end at 500.
        let map = OffsetMap::starting_at(500, Some(500), 16).unwrap();
        let syncs: Vec<SyncPoint> = [400, 300, 200, 100, 0]
            .into_iter()
            .map(|u| SyncPoint {
                upstream: u,
                downstream: u,
            })
            .collect();
        assert_eq!(conservative_below(&map, &syncs, 250), Some(201));
        assert_eq!(conservative_below(&map, &syncs, 300), Some(300));
        assert_eq!(conservative_below(&map, &syncs, 499), Some(401));
        assert_eq!(conservative_below(&map, &syncs, 500), None, "the map's own");
        assert_eq!(conservative_below(&map, &[], 250), None);
        // A sync past the map's answer at its start (an older remote partition) ends what is
        // believed: nothing older is used either.
        let mut wrong = vec![SyncPoint {
            upstream: 450,
            downstream: 9000,
        }];
        wrong.extend(syncs.iter().copied());
        assert_eq!(conservative_below(&map, &wrong, 460), None);
        // MM2 went on into a re-created remote partition at upstream 300 (downstream 0): its
        // older syncs (downstream 200 at upstream 200) belong to the old partition.
        let recreated: Vec<SyncPoint> = [(400, 100), (300, 0), (200, 200), (100, 100)]
            .into_iter()
            .map(|(u, d)| SyncPoint {
                upstream: u,
                downstream: d,
            })
            .collect();
        let later = OffsetMap::starting_at(500, Some(200), 16).unwrap();
        assert_eq!(conservative_below(&later, &recreated, 450), Some(101));
        assert_eq!(conservative_below(&later, &recreated, 350), Some(1));
        assert_eq!(
            conservative_below(&later, &recreated, 250),
            None,
            "MM2 would say 201"
        );
        // Capped at the map's answer at its start.
        let edge = [SyncPoint {
            upstream: 490,
            downstream: 500,
        }];
        assert_eq!(conservative_below(&map, &edge, 495), Some(500));
    }

    /// Syncs are read from a topic and may hold any `i64` (found by `fuzz/mm2_records`): a
    /// sync far below the map in downstream or upstream offsets overflowed the consistency
    /// check (`newer - older`), a panic with overflow checks, and a wrong answer without them
    /// (the wrapped difference made the sync look consistent).
    #[test]
    fn conservative_below_with_extreme_syncs() {
        let map = OffsetMap::starting_at(500, Some(300), 16).unwrap();
        let far_below_downstream = [SyncPoint {
            upstream: 100,
            downstream: i64::MIN,
        }];
        assert_eq!(conservative_below(&map, &far_below_downstream, 200), None);
        let far_below_upstream = [SyncPoint {
            upstream: i64::MIN,
            downstream: 0,
        }];
        assert_eq!(conservative_below(&map, &far_below_upstream, -1), Some(1));
    }

    /// A sync at the largest downstream offset translates a later upstream offset as MM2's
    /// `long` arithmetic does (wrapping to a negative offset, which checkpointing drops) instead
    /// of overflowing (seen while writing `fuzz/mm2_records`, whose sync logs reach it).
    #[test]
    fn translate_past_a_sync_at_the_largest_offset() {
        let tp = TopicPartition::new("t", 0);
        let mut s = Mm2OffsetSyncStore::new();
        s.handle(&sync(10, i64::MAX));
        s.mark_read_to_end();
        assert_eq!(s.translate(&tp, 10), Mm2Translation::Offset(i64::MAX));
        assert_eq!(s.translate(&tp, 11), Mm2Translation::Offset(i64::MIN));
        assert_eq!(
            translate_over(&s.syncs(&tp), 11),
            Mm2Translation::Offset(i64::MIN)
        );
    }
}
