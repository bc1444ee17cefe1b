//! Checkpoint emission and consumer-group offset sync decisions
//! (`MirrorCheckpointTask.checkpointsForGroup`/`checkpointIsMoreRecent`,
//! `MirrorCheckpointTask.syncGroupOffset`, `CheckpointStore`).

use std::collections::{BTreeMap, HashMap};

use super::TopicPartition;
use crate::formats::Checkpoint;

/// Why a checkpoint is or is not emitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CheckpointDecision {
    /// No checkpoint known for the group.
    EmitFirstForGroup,
    /// No checkpoint known for the partition.
    EmitFirstForPartition,
    /// The upstream group rewound (checkpoints may then go backwards).
    EmitUpstreamRewind,
    /// The downstream offset advanced.
    EmitDownstreamAdvanced,
    /// Same downstream offset as the last checkpoint.
    SkipRepeated,
    /// Would move the downstream offset backwards without an upstream rewind.
    SkipDownstreamRewind,
    /// Negative downstream offset (not translatable accurately).
    SkipUntranslatable,
}

impl CheckpointDecision {
    /// Whether to emit.
    pub fn emits(self) -> bool {
        matches!(
            self,
            Self::EmitFirstForGroup
                | Self::EmitFirstForPartition
                | Self::EmitUpstreamRewind
                | Self::EmitDownstreamAdvanced
        )
    }
}

/// The last checkpoint per (group, downstream topic, partition). Load it from the
/// checkpoints topic before emitting, so restarts stay monotonic.
#[derive(Debug, Clone, Default)]
pub struct CheckpointState {
    groups: HashMap<String, BTreeMap<TopicPartition, Checkpoint>>,
}

impl CheckpointState {
    /// Empty state.
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies a checkpoint read from the checkpoints topic (later reads replace earlier).
    pub fn load(&mut self, checkpoint: Checkpoint) {
        let tp = TopicPartition::new(checkpoint.topic.clone(), checkpoint.partition);
        self.groups
            .entry(checkpoint.consumer_group_id.clone())
            .or_default()
            .insert(tp, checkpoint);
    }

    /// What `checkpointIsMoreRecent` (after the `downstreamOffset >= 0` filter) decides.
    pub fn decide(&self, checkpoint: &Checkpoint) -> CheckpointDecision {
        if checkpoint.downstream_offset < 0 {
            return CheckpointDecision::SkipUntranslatable;
        }
        let Some(group) = self.groups.get(&checkpoint.consumer_group_id) else {
            return CheckpointDecision::EmitFirstForGroup;
        };
        let tp = TopicPartition::new(checkpoint.topic.clone(), checkpoint.partition);
        let Some(last) = group.get(&tp) else {
            return CheckpointDecision::EmitFirstForPartition;
        };
        if checkpoint.upstream_offset < last.upstream_offset {
            CheckpointDecision::EmitUpstreamRewind
        } else if checkpoint.downstream_offset > last.downstream_offset {
            CheckpointDecision::EmitDownstreamAdvanced
        } else if checkpoint.downstream_offset == last.downstream_offset {
            CheckpointDecision::SkipRepeated
        } else {
            CheckpointDecision::SkipDownstreamRewind
        }
    }

    /// Decides and, when emitting, records the checkpoint as the latest.
    pub fn offer(&mut self, checkpoint: Checkpoint) -> CheckpointDecision {
        let decision = self.decide(&checkpoint);
        if decision.emits() {
            self.load(checkpoint);
        }
        decision
    }

    /// The latest checkpoint of a group's partition.
    pub fn get(&self, group: &str, tp: &TopicPartition) -> Option<&Checkpoint> {
        self.groups.get(group)?.get(tp)
    }

    /// Groups with checkpoints.
    pub fn groups(&self) -> impl Iterator<Item = &str> + '_ {
        self.groups.keys().map(String::as_str)
    }

    /// The downstream offsets (with metadata) a group's checkpoints say to commit on the
    /// target (`CheckpointStore.computeConvertedUpstreamOffset`).
    pub fn converted_offsets(&self, group: &str) -> BTreeMap<TopicPartition, CommittedOffset> {
        self.groups
            .get(group)
            .map(|m| {
                m.iter()
                    .map(|(tp, cp)| {
                        (
                            tp.clone(),
                            CommittedOffset {
                                offset: cp.downstream_offset,
                                metadata: cp.metadata.clone(),
                            },
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Forgets a group (e.g. it no longer passes the group filter).
    pub fn remove_group(&mut self, group: &str) {
        self.groups.remove(group);
    }
}

/// An offset with commit metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedOffset {
    /// Offset.
    pub offset: i64,
    /// Metadata.
    pub metadata: String,
}

/// The target cluster's view of a consumer group.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TargetGroupState {
    /// The group does not exist (`GroupIdNotFoundException`) or is `Dead`.
    Absent,
    /// `Empty`: no members; its committed offsets per partition, `None` where the commit
    /// is missing its offset (some clients reset to -1).
    Empty(BTreeMap<TopicPartition, Option<i64>>),
    /// Any state with members (`Stable`, rebalancing, ...): never touched.
    Active,
}

/// Which translated offsets to commit into the target group (`syncGroupOffset`): all of
/// them for an absent group; for an empty group, those for partitions it has no offset
/// for, or whose offset is behind the translation (never rewind); nothing for an active
/// group (MM2 would fail with `UnknownMemberIdException`).
pub fn decide_group_offset_sync(
    state: &TargetGroupState,
    converted: &BTreeMap<TopicPartition, CommittedOffset>,
) -> BTreeMap<TopicPartition, CommittedOffset> {
    match state {
        TargetGroupState::Active => BTreeMap::new(),
        TargetGroupState::Absent => converted.clone(),
        TargetGroupState::Empty(target) => converted
            .iter()
            .filter(|(tp, c)| match target.get(*tp) {
                None | Some(None) => true,
                Some(Some(current)) => *current < c.offset,
            })
            .map(|(tp, c)| (tp.clone(), c.clone()))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cp(group: &str, up: i64, down: i64) -> Checkpoint {
        Checkpoint {
            consumer_group_id: group.into(),
            topic: "A.orders".into(),
            partition: 0,
            upstream_offset: up,
            downstream_offset: down,
            metadata: String::new(),
        }
    }

    #[test]
    fn monotonic_checkpoints() {
        let mut s = CheckpointState::new();
        assert_eq!(
            s.offer(cp("g", 10, 8)),
            CheckpointDecision::EmitFirstForGroup
        );
        assert_eq!(s.offer(cp("g", 10, 8)), CheckpointDecision::SkipRepeated);
        assert_eq!(
            s.offer(cp("g", 12, 9)),
            CheckpointDecision::EmitDownstreamAdvanced
        );
        // Upstream advanced but translation went backwards (coarser sync): skip.
        assert_eq!(
            s.offer(cp("g", 13, 7)),
            CheckpointDecision::SkipDownstreamRewind
        );
        assert_eq!(
            s.get("g", &TopicPartition::new("A.orders", 0))
                .unwrap()
                .downstream_offset,
            9
        );
        // The group rewound upstream: emit even though downstream goes back.
        assert_eq!(
            s.offer(cp("g", 5, 3)),
            CheckpointDecision::EmitUpstreamRewind
        );
        assert_eq!(
            s.offer(cp("g", 6, -1)),
            CheckpointDecision::SkipUntranslatable
        );
        let mut other = cp("g", 1, 1);
        other.partition = 1;
        assert_eq!(s.offer(other), CheckpointDecision::EmitFirstForPartition);
    }

    #[test]
    fn loaded_state_prevents_regressions_after_restart() {
        let mut s = CheckpointState::new();
        s.load(cp("g", 100, 90));
        s.load(cp("g", 120, 110)); // later record wins
        assert_eq!(
            s.decide(&cp("g", 120, 100)),
            CheckpointDecision::SkipDownstreamRewind
        );
        let conv = s.converted_offsets("g");
        assert_eq!(conv[&TopicPartition::new("A.orders", 0)].offset, 110);
        assert!(s.converted_offsets("none").is_empty());
        s.remove_group("g");
        assert_eq!(s.groups().count(), 0);
    }

    #[test]
    fn group_offset_sync_rules() {
        let tp0 = TopicPartition::new("A.t", 0);
        let tp1 = TopicPartition::new("A.t", 1);
        let tp2 = TopicPartition::new("A.t", 2);
        let tp3 = TopicPartition::new("A.t", 3);
        let conv: BTreeMap<_, _> = [(&tp0, 10), (&tp1, 20), (&tp2, 30), (&tp3, 40)]
            .into_iter()
            .map(|(tp, o)| {
                (
                    tp.clone(),
                    CommittedOffset {
                        offset: o,
                        metadata: "m".into(),
                    },
                )
            })
            .collect();
        assert_eq!(
            decide_group_offset_sync(&TargetGroupState::Absent, &conv),
            conv
        );
        assert!(decide_group_offset_sync(&TargetGroupState::Active, &conv).is_empty());
        let target: BTreeMap<_, _> = [
            (tp0.clone(), Some(10)), // equal: skip
            (tp1.clone(), Some(25)), // ahead: never rewind
            (tp2.clone(), None),     // reset to -1: sync
        ]
        .into_iter()
        .collect();
        let out = decide_group_offset_sync(&TargetGroupState::Empty(target), &conv);
        assert_eq!(out.keys().cloned().collect::<Vec<_>>(), vec![tp2, tp3]);
        let behind: BTreeMap<_, _> = [(tp0.clone(), Some(3))].into_iter().collect();
        let out = decide_group_offset_sync(&TargetGroupState::Empty(behind), &conv);
        assert_eq!(out[&tp0].offset, 10);
    }
}
