//! The group's assignor: which member runs which unit of work. Sans-IO: the leader calls
//! [`assign`] with every member's claims and every unit's load, and hands each member its
//! [`MemberAssignment`].
//!
//! Rules, in order:
//! 1. **Claims.** A member claims what it owns now (cooperative rebalancing: it keeps running
//!    those while the group rebalances). A unit claimed by two members (one of them a zombie
//!    that rejoined) goes to the claim of the newest generation, ties to the smaller member id;
//!    claims on units that no longer exist are dropped.
//! 2. **Balance by load.** Every unit weighs its load (bytes per second measured by its owner;
//!    at least 1, so idle units still spread). Each member keeps its claimed units, heaviest
//!    first, while it stays within its fair share (`total / members` rounded down, or the
//!    heaviest unit's weight when a single unit exceeds that); the rest are released.
//!    Unclaimed and released units go, heaviest first, to the least loaded member (ties: the
//!    member that owns it now, then fewest units, then smallest member id). So a member keeps everything it can (sticky), hot units
//!    spread instead of piling up, and the result does not depend on the order members joined.
//! 3. **Cooperative hand-over.** A unit moving from a live member to another is only *revoked*
//!    in this generation: its owner stops it (drains in-flight appends, commits its progress)
//!    and rejoins; the next generation hands it to its new owner, unclaimed. Only moved units
//!    pause. [`Plan::follow_up`] says a second rebalance is due.
//! 4. **Fencing.** Every member holds a *slot*; its transactional id is derived from the slot
//!    (`<group>-<slot>`), so the ids in use stay few and known. A member keeps its slot; a new
//!    member takes the smallest slot that is neither held nor freed in this generation (a slot
//!    freed now is fenced now, and only reused once that is done). A unit whose last owner is
//!    gone (dead, or stalled past its session: a zombie that may still write) is handed over
//!    with every slot no live member keeps, up to the highest slot ever seen
//!    ([`MemberAssignment::fence`]): the gainer re-initialises those transactional ids
//!    (bumping their epochs, aborting what they had open) before it resumes the unit, so a
//!    woken zombie's writes are refused. Slots stay about as many as members at most.

use std::collections::{BTreeMap, BTreeSet};

/// Slots are numbered below this. A claim naming a slot at or above it (a corrupt or hostile
/// member) is read as naming none: the leader never iterates or fences that far.
pub const MAX_SLOTS: u32 = 4096;

/// A unit of work the group hands out.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Unit {
    /// The work that runs once per flow: checkpoints, group offset sync, topic config and ACL
    /// sync, heartbeats. (Every member discovers topics and creates remote topics itself:
    /// that is idempotent, and a member needs the remote topic of a partition it is given.)
    FlowLeader {
        /// Flow name (`A->B`).
        flow: String,
    },
    /// One source partition of a flow.
    Partition {
        /// Flow name (`A->B`).
        flow: String,
        /// Source topic.
        topic: String,
        /// Source partition.
        partition: i32,
    },
}

/// What a member tells the leader when it joins.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemberClaim {
    /// Group member id.
    pub id: String,
    /// The generation its `owned` and `slot` come from (-1: it owns nothing yet).
    pub generation: i32,
    /// Its slot, if it has one.
    pub slot: Option<u32>,
    /// Units it runs now.
    pub owned: BTreeSet<Unit>,
    /// The highest slot it has seen held in any generation.
    pub max_slot_seen: Option<u32>,
    /// The slots held in the last generation it was in.
    pub slots_held: BTreeSet<u32>,
}

/// One member's share of a generation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemberAssignment {
    /// Its slot.
    pub slot: u32,
    /// Units it runs in this generation (what it claimed and keeps, plus what it gains).
    pub units: BTreeSet<Unit>,
    /// Slots whose transactional ids it must fence before it resumes the units in
    /// `fenced_units` (slots no live member holds: their last holders may be zombies).
    pub fence: BTreeSet<u32>,
    /// Units it gains whose last owner is not a live member.
    pub fenced_units: BTreeSet<Unit>,
    /// The highest slot held or fenced in this generation, for the next claim.
    pub max_slot_seen: u32,
    /// Every slot held in this generation, for the next claim.
    pub slots_held: BTreeSet<u32>,
}

/// The leader's answer for a generation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Per member id.
    pub members: BTreeMap<String, MemberAssignment>,
    /// Units revoked from a live owner in this generation, to be handed out in the next.
    pub revoked: BTreeSet<Unit>,
}

impl Plan {
    /// Whether another rebalance must follow (revoked units wait for it).
    pub fn follow_up(&self) -> bool {
        !self.revoked.is_empty()
    }
}

/// Computes a generation's assignment; `units` are every unit that exists, with its load.
pub fn assign(claims: &[MemberClaim], units: &BTreeMap<Unit, u64>) -> Plan {
    let mut plan = Plan::default();
    if claims.is_empty() {
        return plan;
    }
    // Slot numbers from other members are bounded before anything ranges over them.
    let sane: Vec<MemberClaim> = claims
        .iter()
        .map(|c| MemberClaim {
            slot: c.slot.filter(|s| *s < MAX_SLOTS),
            max_slot_seen: c.max_slot_seen.filter(|s| *s < MAX_SLOTS),
            slots_held: c.slots_held.range(..MAX_SLOTS).copied().collect(),
            ..c.clone()
        })
        .collect();
    let mut members: Vec<&MemberClaim> = sane.iter().collect();
    members.sort_by(|a, b| a.id.cmp(&b.id));
    members.dedup_by(|a, b| a.id == b.id);
    // 1. Claims: newest generation wins, then the smaller id.
    let mut owner: BTreeMap<&Unit, &str> = BTreeMap::new();
    let mut by_claim: Vec<&MemberClaim> = members.clone();
    by_claim.sort_by(|a, b| b.generation.cmp(&a.generation).then(a.id.cmp(&b.id)));
    for m in &by_claim {
        for u in &m.owned {
            if units.contains_key(u) {
                owner.entry(u).or_insert(m.id.as_str());
            }
        }
    }
    // Slots: kept when unique (the newest claim wins), the smallest free one otherwise.
    let mut slot_of: BTreeMap<&str, u32> = BTreeMap::new();
    let mut taken: BTreeSet<u32> = BTreeSet::new();
    for m in &by_claim {
        if let Some(s) = m.slot {
            if taken.insert(s) {
                slot_of.insert(m.id.as_str(), s);
            }
        }
    }
    // Slots kept by their holders; every other slot up to the highest seen may belong to a
    // zombie and is fenced by whoever gains an orphaned unit.
    let kept = &taken.clone();
    let freed_now: BTreeSet<u32> = members
        .iter()
        .flat_map(|m| m.slots_held.iter().copied())
        .filter(|s| !kept.contains(s))
        .collect();
    for m in &members {
        if !slot_of.contains_key(m.id.as_str()) {
            let s = (0..)
                .find(|s| !taken.contains(s) && !freed_now.contains(s))
                .expect("a free slot");
            taken.insert(s);
            slot_of.insert(m.id.as_str(), s);
        }
    }
    let max_seen = members
        .iter()
        .filter_map(|m| m.max_slot_seen)
        .chain(taken.iter().copied())
        .chain(freed_now.iter().copied())
        .max()
        .unwrap_or(0);
    // A slot given to a new member now is left out: it was free for at least a generation (so
    // fenced then, if it was an orphan's), and its new holder's own InitProducerId fences any
    // earlier holder; fencing it here could fence the new holder.
    let fence: BTreeSet<u32> = (0..=max_seen).filter(|s| !taken.contains(s)).collect();

    // 2. Balance by load.
    // Loads come from other members' claims: bounded (1 TB/s), so sums cannot overflow.
    let weight = |u: &Unit| units.get(u).copied().unwrap_or(0).clamp(1, 1 << 40);
    let total: u64 = units.keys().map(weight).sum();
    let heaviest = units.keys().map(weight).max().unwrap_or(1);
    let n = members.len() as u64;
    let share = (total / n).max(heaviest);
    let mut load: BTreeMap<&str, (u64, usize)> =
        members.iter().map(|m| (m.id.as_str(), (0, 0))).collect();
    let mut target: BTreeMap<&Unit, &str> = BTreeMap::new();
    // Claimed units, per owner heaviest first, kept within the share.
    let mut claimed: BTreeMap<&str, Vec<&Unit>> = BTreeMap::new();
    for (u, m) in &owner {
        claimed.entry(m).or_default().push(u);
    }
    for (m, mut us) in claimed {
        us.sort_by(|a, b| weight(b).cmp(&weight(a)).then(a.cmp(b)));
        for u in us {
            let l = load.get_mut(m).expect("member");
            if l.0 + weight(u) <= share {
                l.0 += weight(u);
                l.1 += 1;
                target.insert(u, m);
            }
        }
    }
    // Everything else, heaviest first, to the least loaded member; on a tie, the member that
    // owns it now (a remainder stays where it is).
    let mut rest: Vec<&Unit> = units.keys().filter(|u| !target.contains_key(u)).collect();
    rest.sort_by(|a, b| weight(b).cmp(&weight(a)).then(a.cmp(b)));
    for u in rest {
        let current = owner.get(u).copied();
        let (&m, _) = load
            .iter()
            .min_by(|a, b| {
                a.1 .0
                    .cmp(&b.1 .0)
                    .then((Some(*a.0) != current).cmp(&(Some(*b.0) != current)))
                    .then(a.1 .1.cmp(&b.1 .1))
                    .then(a.0.cmp(b.0))
            })
            .expect("members");
        let l = load.get_mut(m).expect("member");
        l.0 += weight(u);
        l.1 += 1;
        target.insert(u, m);
    }

    // 3. Cooperative hand-over, 4. fencing.
    for m in &members {
        plan.members.insert(
            m.id.clone(),
            MemberAssignment {
                slot: slot_of[m.id.as_str()],
                max_slot_seen: max_seen,
                slots_held: taken.clone(),
                ..MemberAssignment::default()
            },
        );
    }
    for (u, to) in target {
        match owner.get(u) {
            Some(from) if *from != to => {
                plan.revoked.insert(u.clone());
            }
            Some(_) => {
                plan.members
                    .get_mut(to)
                    .expect("member")
                    .units
                    .insert(u.clone());
            }
            None => {
                // Nobody live owns it. A member whose claim lost to a newer one (a zombie that
                // rejoined) or a member that left may have written it: fenced before resuming.
                let a = plan.members.get_mut(to).expect("member");
                a.units.insert(u.clone());
                a.fenced_units.insert(u.clone());
            }
        }
    }
    for a in plan.members.values_mut() {
        if !a.fenced_units.is_empty() {
            a.fence = fence.clone();
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(flow: &str, p: i32) -> Unit {
        Unit::Partition {
            flow: flow.into(),
            topic: "t".into(),
            partition: p,
        }
    }

    fn units(n: i32) -> BTreeMap<Unit, u64> {
        let mut u: BTreeMap<Unit, u64> = (0..n).map(|p| (part("A->B", p), 1)).collect();
        u.insert(
            Unit::FlowLeader {
                flow: "A->B".into(),
            },
            1,
        );
        u
    }

    /// The claims members make after `plan` in `generation`: what they were given.
    fn claims_after(plan: &Plan, generation: i32, alive: &[&str]) -> Vec<MemberClaim> {
        alive
            .iter()
            .map(|id| match plan.members.get(*id) {
                Some(a) => MemberClaim {
                    id: id.to_string(),
                    generation,
                    slot: Some(a.slot),
                    owned: a.units.clone(),
                    max_slot_seen: Some(a.max_slot_seen),
                    slots_held: a.slots_held.clone(),
                },
                None => MemberClaim {
                    id: id.to_string(),
                    generation: -1,
                    ..MemberClaim::default()
                },
            })
            .collect()
    }

    /// Every unit is with at most one member, and with exactly one unless revoked.
    fn check_exclusive(plan: &Plan, units: &BTreeMap<Unit, u64>) {
        let mut seen: BTreeMap<&Unit, &str> = BTreeMap::new();
        for (m, a) in &plan.members {
            for u in &a.units {
                assert!(units.contains_key(u), "{u:?} does not exist");
                if let Some(other) = seen.insert(u, m) {
                    panic!("{u:?} given to {other} and {m}");
                }
            }
        }
        for u in units.keys() {
            assert!(
                seen.contains_key(u) != plan.revoked.contains(u),
                "{u:?}: assigned {} revoked {}",
                seen.contains_key(u),
                plan.revoked.contains(u)
            );
        }
    }

    fn sizes(plan: &Plan) -> Vec<usize> {
        plan.members.values().map(|a| a.units.len()).collect()
    }

    #[test]
    fn a_new_group_splits_evenly_and_fences_nothing_held() {
        let u = units(8);
        let plan = assign(&claims_after(&Plan::default(), 0, &["m1", "m2", "m3"]), &u);
        check_exclusive(&plan, &u);
        assert_eq!(sizes(&plan), vec![3, 3, 3]);
        assert!(!plan.follow_up());
        let slots: BTreeSet<u32> = plan.members.values().map(|a| a.slot).collect();
        assert_eq!(slots, BTreeSet::from([0, 1, 2]));
        // Nobody owned anything: every unit is resumed after fencing, but no slot is free.
        assert!(plan.members.values().all(|a| a.fence.is_empty()));
    }

    #[test]
    fn the_same_members_keep_everything() {
        let u = units(20);
        let first = assign(&claims_after(&Plan::default(), 0, &["a", "b", "c"]), &u);
        let again = assign(&claims_after(&first, 1, &["a", "b", "c"]), &u);
        assert_eq!(
            first
                .members
                .iter()
                .map(|(m, a)| (m, &a.units, a.slot))
                .collect::<Vec<_>>(),
            again
                .members
                .iter()
                .map(|(m, a)| (m, &a.units, a.slot))
                .collect::<Vec<_>>()
        );
        assert!(again.members.values().all(|a| a.fenced_units.is_empty()));
        assert!(!again.follow_up());
    }

    #[test]
    fn a_joining_member_gets_revoked_units_in_the_follow_up_generation() {
        let u = units(23);
        let g1 = assign(&claims_after(&Plan::default(), 0, &["a", "b", "c"]), &u);
        let g2 = assign(&claims_after(&g1, 1, &["a", "b", "c", "d"]), &u);
        check_exclusive(&g2, &u);
        assert!(g2.follow_up());
        assert!(
            g2.members["d"].units.is_empty(),
            "nothing moves in the revoking generation"
        );
        // Only what moves pauses: each old member keeps all but its surplus.
        for m in ["a", "b", "c"] {
            assert!(g2.members[m].units.is_subset(&g1.members[m].units));
        }
        let moved = g2.revoked.len();
        assert_eq!(moved, 6, "24 units over 4 members: 6 move to the newcomer");
        let g3 = assign(&claims_after(&g2, 2, &["a", "b", "c", "d"]), &u);
        check_exclusive(&g3, &u);
        assert!(!g3.follow_up());
        assert_eq!(sizes(&g3), vec![6, 6, 6, 6]);
        assert_eq!(g3.members["d"].units, g2.revoked);
        // Released by live members after they committed: no fencing needed, but the units
        // are unclaimed, so they go through the fenced path with nothing to fence.
        assert!(g3.members["d"].fence.is_empty());
    }

    #[test]
    fn a_dead_members_units_are_fenced_and_its_slot_not_reused_at_once() {
        let u = units(11);
        let g1 = assign(&claims_after(&Plan::default(), 0, &["a", "b", "c"]), &u);
        let dead_slot = g1.members["b"].slot;
        let lost = g1.members["b"].units.clone();
        // b stops heartbeating; e joins in the same generation.
        let g2 = assign(&claims_after(&g1, 1, &["a", "c", "e"]), &u);
        check_exclusive(&g2, &u);
        assert!(!g2.follow_up(), "nothing moves between live members");
        assert_ne!(
            g2.members["e"].slot, dead_slot,
            "the freed slot is fenced now, not reused"
        );
        let mut gained = BTreeSet::new();
        for a in g2.members.values() {
            gained.extend(a.fenced_units.iter().cloned());
            if !a.fenced_units.is_empty() {
                assert!(a.fence.contains(&dead_slot), "{a:?}");
                assert!(!a.fence.contains(&a.slot));
            }
        }
        assert_eq!(
            gained, lost,
            "exactly the dead member's units are resumed after fencing"
        );
        // Next generation: the slot can be reused by a newcomer.
        let g3 = assign(&claims_after(&g2, 2, &["a", "c", "e", "f"]), &u);
        assert_eq!(g3.members["f"].slot, dead_slot);
    }

    #[test]
    fn hot_units_spread_instead_of_piling_up() {
        let mut u: BTreeMap<Unit, u64> = (0..8).map(|p| (part("A->B", p), 10)).collect();
        u.insert(part("A->B", 100), 1_000);
        u.insert(part("A->B", 101), 1_000);
        let plan = assign(&claims_after(&Plan::default(), 0, &["a", "b"]), &u);
        let with_hot: Vec<usize> = plan
            .members
            .values()
            .map(|a| a.units.iter().filter(|x| u[*x] == 1_000).count())
            .collect();
        assert_eq!(with_hot, vec![1, 1]);
        let loads: Vec<u64> = plan
            .members
            .values()
            .map(|a| a.units.iter().map(|x| u[x]).sum())
            .collect();
        assert_eq!(loads, vec![1_040, 1_040]);
    }

    #[test]
    fn slot_numbers_beyond_the_bound_are_ignored() {
        // Found by the fuzzer: a claim saying it saw slot u32::MAX made the leader range over
        // four billion slots.
        let u = units(2);
        let wild = MemberClaim {
            id: "w".into(),
            generation: 1,
            slot: Some(u32::MAX),
            max_slot_seen: Some(u32::MAX - 1),
            slots_held: BTreeSet::from([7, MAX_SLOTS, u32::MAX]),
            ..MemberClaim::default()
        };
        let plan = assign(&[wild], &u);
        let a = &plan.members["w"];
        assert_eq!(a.slot, 0);
        assert_eq!(a.max_slot_seen, 7);
        assert!(a.fence.iter().all(|s| *s <= 7));
    }

    #[test]
    fn huge_loads_do_not_overflow() {
        // Found by the fuzzer: loads near u64::MAX overflowed the sums.
        let mut u = units(3);
        for l in u.values_mut() {
            *l = u64::MAX;
        }
        let plan = assign(&claims_after(&Plan::default(), 0, &["a", "b"]), &u);
        assert_eq!(sizes(&plan).iter().sum::<usize>(), 4);
    }

    #[test]
    fn a_stale_claim_loses_to_the_newest() {
        let u = units(3);
        let zombie = MemberClaim {
            id: "a".into(),
            generation: 3,
            slot: Some(0),
            owned: u.keys().cloned().collect(),
            max_slot_seen: Some(1),
            slots_held: BTreeSet::from([0, 1]),
        };
        let current = MemberClaim {
            id: "z".into(),
            generation: 5,
            slot: Some(0),
            owned: [part("A->B", 0)].into(),
            max_slot_seen: Some(1),
            slots_held: BTreeSet::from([0]),
        };
        let plan = assign(&[zombie, current], &u);
        check_exclusive(&plan, &u);
        assert_eq!(plan.members["z"].slot, 0, "the newest claim keeps the slot");
        assert_ne!(plan.members["a"].slot, 0);
        assert!(
            plan.revoked.contains(&part("A->B", 0))
                || plan.members["z"].units.contains(&part("A->B", 0)),
            "the disputed unit is never given to the stale claimant"
        );
        assert!(!plan.members["a"].units.contains(&part("A->B", 0)));
    }

    #[test]
    fn random_membership_changes_keep_every_unit_exclusive_and_converge() {
        // A small deterministic generator (no dependency): members join, leave and die in
        // random order; every generation is checked, and a quiet generation after each change
        // must leave nothing revoked and everything balanced within one unit.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        let u = units(37);
        let mut alive: Vec<String> = vec!["m0".into()];
        let mut plan = Plan::default();
        let mut generation = 0;
        for step in 0..200 {
            match next(3) {
                0 if alive.len() < 6 => alive.push(format!("m{}", step + 1)),
                1 if alive.len() > 1 => {
                    let i = next(alive.len() as u64) as usize;
                    alive.remove(i);
                }
                _ => {}
            }
            let ids: Vec<&str> = alive.iter().map(|s| s.as_str()).collect();
            // Claims arrive in any order.
            let mut claims = claims_after(&plan, generation, &ids);
            let k = next(claims.len() as u64) as usize;
            claims.rotate_left(k);
            plan = assign(&claims, &u);
            check_exclusive(&plan, &u);
            generation += 1;
            let mut settle = 0;
            while plan.follow_up() {
                settle += 1;
                assert!(settle <= 2, "no convergence after {settle} follow-ups");
                plan = assign(&claims_after(&plan, generation, &ids), &u);
                check_exclusive(&plan, &u);
                generation += 1;
            }
            let s = sizes(&plan);
            let (lo, hi) = (s.iter().min().unwrap(), s.iter().max().unwrap());
            assert!(hi - lo <= 1, "unbalanced after step {step}: {s:?}");
            let slots: BTreeSet<u32> = plan.members.values().map(|a| a.slot).collect();
            assert_eq!(slots.len(), plan.members.len(), "slots are distinct");
            assert!(
                *slots.iter().max().unwrap() < 2 * 6,
                "slots stay about as many as members: {slots:?}"
            );
        }
    }
}
