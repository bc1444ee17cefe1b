//! A member's side of the group, as a state machine without I/O: what it runs, what it is
//! releasing, and what it must do when an assignment arrives, a release finishes or the
//! membership is lost. The caller executes the [`Action`]s (stopping partitions, fencing,
//! resuming, rejoining) and reports back.
//!
//! Rules:
//! - Units the new assignment no longer gives this member are **released** gracefully: the
//!   member stops fetching them, waits for their appends, commits their progress, and only then
//!   lets them go. Until then it keeps claiming them, so the leader cannot hand them to anyone
//!   (a unit claimed by a live member is only ever revoked, never given away).
//! - When the last release of a generation finishes, the member **rejoins**, so the follow-up
//!   generation hands the released units to their new owners.
//! - Units gained are **started**; those whose last owner is gone start only after the
//!   assignment's fence slots have been fenced (their transactional ids re-initialised).
//! - A **lost** membership (the coordinator no longer knows this member: session expired,
//!   fenced generation) stops everything at once, without committing: another member may
//!   already own those units. The member then rejoins as a newcomer.

use std::collections::BTreeSet;

use super::assign::{MemberAssignment, Unit};

/// What the caller must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Stop these units gracefully (drain, commit), then report [`Driver::released`].
    Release(BTreeSet<Unit>),
    /// Fence these slots' transactional ids, then start `units` (resumed from their stored
    /// progress and the remote tail).
    Start {
        /// Slots to fence first (empty: none).
        fence: BTreeSet<u32>,
        /// Units to start.
        units: BTreeSet<Unit>,
    },
    /// Stop these units now, committing nothing.
    Abandon(BTreeSet<Unit>),
    /// Join the group again (with [`Driver::claim`]).
    Rejoin,
}

/// A member's state between generations.
#[derive(Clone, Debug, Default)]
pub struct Driver {
    generation: i32,
    assignment: Option<MemberAssignment>,
    running: BTreeSet<Unit>,
    releasing: BTreeSet<Unit>,
}

impl Driver {
    /// A member that owns nothing yet.
    pub fn new() -> Driver {
        Driver {
            generation: -1,
            ..Driver::default()
        }
    }

    /// Units running now.
    pub fn running(&self) -> &BTreeSet<Unit> {
        &self.running
    }

    /// Units being released.
    pub fn releasing(&self) -> &BTreeSet<Unit> {
        &self.releasing
    }

    /// The generation of the last assignment (-1: none).
    pub fn generation(&self) -> i32 {
        self.generation
    }

    /// The last assignment.
    pub fn assignment(&self) -> Option<&MemberAssignment> {
        self.assignment.as_ref()
    }

    /// What the member claims when it joins: the units it runs or is still releasing.
    pub fn owned(&self) -> BTreeSet<Unit> {
        self.running.union(&self.releasing).cloned().collect()
    }

    /// A new generation's assignment arrived.
    pub fn assigned(&mut self, generation: i32, a: MemberAssignment) -> Vec<Action> {
        let mut actions = Vec::new();
        let lost: BTreeSet<Unit> = self.running.difference(&a.units).cloned().collect();
        let gained: BTreeSet<Unit> = a
            .units
            .difference(&self.running)
            .filter(|u| !self.releasing.contains(*u))
            .cloned()
            .collect();
        if !lost.is_empty() {
            for u in &lost {
                self.running.remove(u);
            }
            self.releasing.extend(lost.iter().cloned());
            actions.push(Action::Release(lost));
        }
        // A unit handed back while it was still being released runs on once released (it
        // is reported as gained then).
        if !gained.is_empty() {
            let (fenced, plain): (BTreeSet<Unit>, BTreeSet<Unit>) =
                gained.into_iter().partition(|u| a.fenced_units.contains(u));
            if !fenced.is_empty() {
                actions.push(Action::Start {
                    fence: a.fence.clone(),
                    units: fenced.clone(),
                });
            }
            if !plain.is_empty() {
                actions.push(Action::Start {
                    fence: BTreeSet::new(),
                    units: plain.clone(),
                });
            }
            self.running.extend(fenced);
            self.running.extend(plain);
        }
        self.generation = generation;
        self.assignment = Some(a);
        actions
    }

    /// Releases finished for `units`: rejoin once nothing is left to release, so the
    /// follow-up generation hands them over. A unit the latest assignment gives back to this
    /// member starts again.
    /// A report for units this member is not releasing (abandoned meanwhile: the membership
    /// was lost) changes nothing.
    pub fn released(&mut self, units: &BTreeSet<Unit>) -> Vec<Action> {
        let units: BTreeSet<Unit> = units
            .iter()
            .filter(|u| self.releasing.remove(*u))
            .cloned()
            .collect();
        if units.is_empty() {
            return Vec::new();
        }
        let mut actions = Vec::new();
        if let Some(a) = &self.assignment {
            let back: BTreeSet<Unit> = units
                .iter()
                .filter(|u| a.units.contains(*u) && !self.running.contains(*u))
                .cloned()
                .collect();
            if !back.is_empty() {
                self.running.extend(back.iter().cloned());
                actions.push(Action::Start {
                    fence: BTreeSet::new(),
                    units: back,
                });
            }
        }
        if self.releasing.is_empty() {
            actions.push(Action::Rejoin);
        }
        actions
    }

    /// The membership was lost: everything stops at once, and the member rejoins as new.
    pub fn lost(&mut self) -> Vec<Action> {
        let all: BTreeSet<Unit> = self.owned();
        self.running.clear();
        self.releasing.clear();
        self.generation = -1;
        let mut actions = Vec::new();
        if !all.is_empty() {
            actions.push(Action::Abandon(all));
        }
        actions.push(Action::Rejoin);
        actions
    }
}

#[cfg(test)]
mod tests {
    use super::super::assign::{assign, MemberClaim, Plan};
    use super::*;
    use std::collections::BTreeMap;

    fn unit(p: i32) -> Unit {
        Unit::Partition {
            flow: "A->B".into(),
            topic: "t".into(),
            partition: p,
        }
    }

    fn set(ps: &[i32]) -> BTreeSet<Unit> {
        ps.iter().map(|p| unit(*p)).collect()
    }

    fn assignment(units: &[i32], fenced: &[i32], fence: &[u32]) -> MemberAssignment {
        MemberAssignment {
            units: set(units),
            fenced_units: set(fenced),
            fence: fence.iter().copied().collect(),
            ..MemberAssignment::default()
        }
    }

    #[test]
    fn gains_start_fenced_or_plain_and_losses_are_released_before_a_rejoin() {
        let mut d = Driver::new();
        let a = d.assigned(1, assignment(&[0, 1, 2, 3], &[0, 1, 2, 3], &[]));
        assert_eq!(
            a,
            vec![Action::Start {
                fence: BTreeSet::new(),
                units: set(&[0, 1, 2, 3])
            }]
        );
        // Generation 2 takes 2 and 3 away: they are released, still claimed meanwhile.
        let a = d.assigned(2, assignment(&[0, 1], &[], &[]));
        assert_eq!(a, vec![Action::Release(set(&[2, 3]))]);
        assert_eq!(d.owned(), set(&[0, 1, 2, 3]), "claimed until released");
        assert_eq!(d.released(&set(&[2])), vec![]);
        assert_eq!(d.released(&set(&[3])), vec![Action::Rejoin]);
        assert_eq!(d.owned(), set(&[0, 1]));
        // Generation 4 hands over a dead member's units: fenced first.
        let a = d.assigned(4, assignment(&[0, 1, 7, 8], &[7], &[3]));
        assert_eq!(
            a,
            vec![
                Action::Start {
                    fence: BTreeSet::from([3]),
                    units: set(&[7])
                },
                Action::Start {
                    fence: BTreeSet::new(),
                    units: set(&[8])
                },
            ]
        );
    }

    #[test]
    fn a_unit_given_back_while_releasing_runs_again_once_released() {
        let mut d = Driver::new();
        d.assigned(1, assignment(&[0, 1], &[], &[]));
        assert_eq!(
            d.assigned(2, assignment(&[0], &[], &[])),
            vec![Action::Release(set(&[1]))]
        );
        // Another rebalance gives 1 back before the release finished: nothing starts twice.
        assert_eq!(d.assigned(3, assignment(&[0, 1], &[], &[])), vec![]);
        assert_eq!(
            d.released(&set(&[1])),
            vec![
                Action::Start {
                    fence: BTreeSet::new(),
                    units: set(&[1])
                },
                Action::Rejoin
            ]
        );
        assert_eq!(d.running(), &set(&[0, 1]));
    }

    #[test]
    fn a_lost_membership_abandons_everything_without_commit() {
        let mut d = Driver::new();
        d.assigned(1, assignment(&[0, 1, 2], &[], &[]));
        d.assigned(2, assignment(&[0], &[], &[]));
        assert_eq!(
            d.lost(),
            vec![Action::Abandon(set(&[0, 1, 2])), Action::Rejoin]
        );
        assert!(d.owned().is_empty());
        assert_eq!(d.generation(), -1);
    }

    /// Members driven through the assignor, with releases finishing at random moments and
    /// members joining and dying: no unit ever runs (or is being released) on two members at
    /// once, except a dead member's, which the gainer starts only behind a fence of that
    /// member's slot.
    #[test]
    fn no_unit_ever_runs_on_two_live_members() {
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        let units: BTreeMap<Unit, u64> = (0..17).map(|p| (unit(p), 1 + p as u64 % 3)).collect();
        let mut members: BTreeMap<String, (Driver, Option<u32>)> = BTreeMap::new();
        let mut dead_slots: BTreeSet<u32> = BTreeSet::new();
        let mut generation = 0;
        let mut serial = 0;
        for _ in 0..300 {
            match next(6) {
                0 if members.len() < 5 => {
                    serial += 1;
                    members.insert(format!("m{serial:03}"), (Driver::new(), None));
                }
                1 if members.len() > 1 => {
                    let k = members
                        .keys()
                        .nth(next(members.len() as u64) as usize)
                        .cloned()
                        .unwrap();
                    let (_, slot) = members.remove(&k).unwrap();
                    dead_slots.extend(slot);
                }
                2 => {
                    // Some member finishes one of its releases.
                    let k = members
                        .keys()
                        .nth(next(members.len() as u64) as usize)
                        .cloned()
                        .unwrap();
                    let d = &mut members.get_mut(&k).unwrap().0;
                    if let Some(u) = d.releasing().iter().next().cloned() {
                        d.released(&BTreeSet::from([u]));
                    }
                }
                _ => {}
            }
            // A generation: every live member claims what it runs or releases.
            generation += 1;
            let claims: Vec<MemberClaim> = members
                .iter()
                .map(|(id, (d, slot))| MemberClaim {
                    id: id.clone(),
                    generation: d.generation(),
                    slot: *slot,
                    owned: d.owned(),
                    max_slot_seen: d.assignment().map(|a| a.max_slot_seen),
                    slots_held: d
                        .assignment()
                        .map(|a| a.slots_held.clone())
                        .unwrap_or_default(),
                })
                .collect();
            let plan: Plan = assign(&claims, &units);
            for (id, (d, slot)) in members.iter_mut() {
                let a = plan.members[id].clone();
                *slot = Some(a.slot);
                for action in d.assigned(generation, a.clone()) {
                    if let Action::Start { fence, units } = action {
                        if units.iter().any(|u| a.fenced_units.contains(u)) {
                            // Every slot that died since is fenced by the gainer.
                            for s in &dead_slots {
                                if !plan.members.values().any(|m| m.slot == *s) {
                                    assert!(fence.contains(s), "slot {s} not fenced: {fence:?}");
                                }
                            }
                        }
                    }
                }
            }
            // Exclusive: running or releasing on at most one live member.
            let mut seen: BTreeMap<Unit, String> = BTreeMap::new();
            for (id, (d, _)) in &members {
                // What it really runs or drains, not what it claims.
                for u in d.running().union(d.releasing()) {
                    if let Some(other) = seen.insert(u.clone(), id.clone()) {
                        panic!("{u:?} on {other} and {id} in generation {generation}");
                    }
                }
            }
        }
    }

    #[test]
    fn a_release_report_for_abandoned_units_changes_nothing() {
        let mut d = Driver::new();
        d.assigned(1, assignment(&[0, 1, 2], &[], &[]));
        let actions = d.assigned(2, assignment(&[0], &[], &[]));
        assert_eq!(actions, vec![Action::Release(set(&[1, 2]))]);
        // The membership is lost while 1 and 2 are being released.
        assert_eq!(
            d.lost(),
            vec![Action::Abandon(set(&[0, 1, 2])), Action::Rejoin]
        );
        // Their release ends later: no second rejoin, nothing started.
        assert_eq!(d.released(&set(&[1, 2])), vec![]);
        assert!(d.running().is_empty() && d.releasing().is_empty());
    }
}
