//! `strait translate`: a group's latest checkpoints (MM2's `RemoteClusterUtils.translateOffsets`)
//! and, for each, whether Strait's exact offset maps confirm it. No I/O: the caller reads the
//! checkpoints topic and the maps.
//!
//! A checkpoint comes from one of three places: Strait's exact map (the offset a consumer
//! continues at, exactly), MM2's rule over offset syncs (written by MM2, or by Strait for
//! groups that committed below where it took over from MM2: never ahead, but a consumer may
//! re-read up to `offset.lag.max` records), or Strait's failback translation (exact, through
//! the reverse flow's map). A checkpoint the maps confirm is [`Basis::Exact`]; any other is
//! [`Basis::Conservative`], which is what MM2 promises of every checkpoint.

use std::collections::{BTreeMap, HashMap};

use crate::formats::Checkpoint;
use crate::internal::StoredMaps;
use crate::offsets::OffsetMap;
use crate::policy::ReplicationPolicy;

/// How far a translated offset can be trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Basis {
    /// Confirmed by an exact offset map: the consumer continues at the record after the last
    /// one it consumed on the source.
    Exact,
    /// MM2's guarantee only: never past the consumer's position, possibly behind it.
    Conservative,
}

impl Basis {
    /// `exact` or `conservative`.
    pub fn as_str(self) -> &'static str {
        match self {
            Basis::Exact => "exact",
            Basis::Conservative => "conservative",
        }
    }
}

/// One translated partition of a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Translated {
    /// Topic on the target cluster.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Offset to continue at on the target.
    pub offset: i64,
    /// Whether an exact map confirms it.
    pub basis: Basis,
}

/// The latest checkpoint of `group` per (target topic, partition), as read from the
/// checkpoints topic in order (later records win; undecodable ones are skipped).
pub fn latest_checkpoints<I>(records: I, group: &str) -> BTreeMap<(String, i32), Checkpoint>
where
    I: IntoIterator<Item = (Vec<u8>, Vec<u8>)>,
{
    let mut latest = BTreeMap::new();
    for (key, value) in records {
        if let Ok(cp) = Checkpoint::decode(&key, Some(&value)) {
            if cp.consumer_group_id == group {
                latest.insert((cp.topic.clone(), cp.partition), cp);
            }
        }
    }
    latest
}

/// The checkpoints a reverse map would have to confirm: those on topics that are not remote
/// topics of `source` (in the flow `source->target`, a failback checkpoint names the target's
/// own topic `t`, not `source.t`).
pub fn needs_reverse(
    checkpoints: &BTreeMap<(String, i32), Checkpoint>,
    policy: &ReplicationPolicy,
    source: &str,
) -> bool {
    checkpoints
        .keys()
        .any(|(t, _)| policy.topic_source(t) != Some(source))
}

/// Classifies each checkpoint of the flow `source->target`. `forward`: the offset maps of
/// that flow (kept on the target, keyed by source topic). `reverse`: the maps of the flow
/// `target->source` (kept on the source, keyed by the target's topic), if they could be read.
pub fn classify(
    checkpoints: &BTreeMap<(String, i32), Checkpoint>,
    forward: &StoredMaps,
    reverse: Option<&StoredMaps>,
    policy: &ReplicationPolicy,
    source: &str,
) -> Vec<Translated> {
    let by_remote: HashMap<(String, i32), &OffsetMap> = forward
        .iter()
        .filter_map(|((topic, p), m)| {
            Some((
                (policy.format_remote_topic(source, topic), *p),
                m.as_ref().ok()?,
            ))
        })
        .collect();
    checkpoints
        .values()
        .map(|cp| {
            let key = (cp.topic.clone(), cp.partition);
            let forward_exact = by_remote
                .get(&key)
                .is_some_and(|m| m.translate(cp.upstream_offset) == Some(cp.downstream_offset));
            let failback_exact = reverse
                .and_then(|r| r.get(&key))
                .and_then(|m| m.as_ref().ok())
                .is_some_and(|m| m.upstream_for(cp.upstream_offset) == Some(cp.downstream_offset));
            Translated {
                topic: cp.topic.clone(),
                partition: cp.partition,
                offset: cp.downstream_offset,
                basis: if forward_exact || failback_exact {
                    Basis::Exact
                } else {
                    Basis::Conservative
                },
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cp(topic: &str, up: i64, down: i64) -> Checkpoint {
        Checkpoint {
            consumer_group_id: "g".into(),
            topic: topic.into(),
            partition: 0,
            upstream_offset: up,
            downstream_offset: down,
            metadata: String::new(),
        }
    }

    #[test]
    fn exact_where_a_map_confirms_it() {
        let policy = ReplicationPolicy::default_policy();
        // Flow A->B: upstream 100.. forwarded to 40.. (Strait took over at 100).
        let mut ab = OffsetMap::starting_at(100, Some(40), 8).unwrap();
        ab.record_forwarded(100, 40, 50).unwrap();
        let forward: StoredMaps = [(("t".to_string(), 0), Ok(ab.clone()))].into();
        let mut cps = BTreeMap::new();
        cps.insert(("A.t".to_string(), 0), cp("A.t", 120, 60));
        let out = classify(&cps, &forward, None, &policy, "A");
        assert_eq!(out[0].basis, Basis::Exact);
        assert_eq!(out[0].offset, 60);
        // Below the map (MM2's rule): conservative.
        cps.insert(("A.t".to_string(), 0), cp("A.t", 50, 31));
        assert_eq!(
            classify(&cps, &forward, None, &policy, "A")[0].basis,
            Basis::Conservative
        );
        // Failback, in the flow B->A: a group on B at A.t/0 = 60 continues on A at t/0 = 120,
        // confirmed by the A->B map (the reverse of B->A).
        let mut back = BTreeMap::new();
        back.insert(("t".to_string(), 0), cp("t", 60, 120));
        assert!(needs_reverse(&back, &policy, "B"));
        let none = StoredMaps::new();
        assert_eq!(
            classify(&back, &none, Some(&forward), &policy, "B")[0].basis,
            Basis::Exact
        );
        assert_eq!(
            classify(&back, &none, None, &policy, "B")[0].basis,
            Basis::Conservative
        );
    }

    #[test]
    fn latest_checkpoint_per_partition_of_the_group() {
        let rec = |c: Checkpoint| {
            (
                c.encode_key().unwrap().to_vec(),
                c.encode_value().unwrap().to_vec(),
            )
        };
        let mut other = cp("A.t", 5, 5);
        other.consumer_group_id = "h".into();
        let got = latest_checkpoints(
            [rec(cp("A.t", 1, 1)), rec(other), rec(cp("A.t", 9, 8))],
            "g",
        );
        assert_eq!(got.len(), 1);
        assert_eq!(got[&("A.t".to_string(), 0)].downstream_offset, 8);
    }
}
