//! Offset bookkeeping as pure state machines: exact upstream→downstream offset maps,
//! MM2-compatible offset-sync emission, checkpoint emission rules, consumer-group offset
//! sync decisions, and an MM2-compatible translator over offset syncs.
//!
//! Nothing here does I/O or reads the clock: callers feed offsets and records in and get
//! decisions and records out.
//!
//! - [`OffsetMap`]: Strait's exact translation (DESIGN-NOTES "Knowing every downstream
//!   offset"): a short list of runs with constant `downstream - upstream`, answering
//!   "the downstream offset of the first replicated record at or after upstream U".
//! - [`SyncEmitter`]: when to write an MM2 `OffsetSync`
//!   (`connect/mirror/.../OffsetSyncWriter.java`, `PartitionState.update`), plus Strait's
//!   rule of syncing wherever the offset delta changes, and a final sync on flush for
//!   quiet partitions (KAFKA-15906).
//! - [`CheckpointState`]: `MirrorCheckpointTask.checkpointIsMoreRecent` (checkpoints are
//!   monotonic unless the upstream group rewinds).
//! - [`decide_group_offset_sync`]: `MirrorCheckpointTask.syncGroupOffset` (only empty or
//!   absent target groups; never rewind an offset that is already ahead).
//! - [`Mm2OffsetSyncStore`]: `OffsetSyncStore.java` (KAFKA-14666's 64 exponentially spaced
//!   syncs; newest sync at or below U, plus one if not equal), for reading syncs written by
//!   real MM2 when migrating.

mod checkpoint;
mod map;
mod mm2;
mod sync;

pub use checkpoint::{
    decide_group_offset_sync, CheckpointDecision, CheckpointState, CommittedOffset,
    TargetGroupState,
};
pub use map::{OffsetMap, OffsetMapError, Run, DEFAULT_MAX_RUNS};
pub use mm2::{
    conservative_below, translate_over, Mm2OffsetSyncStore, Mm2Translation, MM2_SYNCS_PER_PARTITION,
};
pub use sync::{EmittedSyncs, SyncEmitter, SyncPoint};

use std::fmt;

/// A topic and partition.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    /// Topic name.
    pub topic: String,
    /// Partition number.
    pub partition: i32,
}

impl TopicPartition {
    /// Builds one.
    pub fn new(topic: impl Into<String>, partition: i32) -> Self {
        Self {
            topic: topic.into(),
            partition,
        }
    }
}

impl fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}
