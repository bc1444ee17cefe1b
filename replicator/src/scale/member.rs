//! The assignor the group's leader runs ([`StraitAssignor`], Kafka's classic group protocol
//! through `protocol_client::group`), and the claim a member announces.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use protocol_client::group::Assignor;
use tracing::{info, warn};

use super::assign::{assign, MemberAssignment, MemberClaim, Unit};
use super::wire::{decode_claim, encode_assignment, Claim, PROTOCOL};

/// The units that exist and their loads, as this process knows them; the leader assigns these.
#[derive(Clone, Debug, Default)]
pub struct UnitsView(Arc<Mutex<BTreeMap<Unit, u64>>>);

impl UnitsView {
    /// Replaces the units (the loads members report in their claims take precedence).
    pub fn set(&self, units: BTreeMap<Unit, u64>) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = units;
    }

    /// The units now.
    pub fn get(&self) -> BTreeMap<Unit, u64> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// The leader's assignor: every member's claim decoded, [`assign`] run, every member's
/// assignment encoded. A claim that does not decode (a member of a future, incompatible
/// version, or corrupt bytes) counts as a fresh member's claim: it is given units and a slot
/// like any newcomer, and the problem is logged.
#[derive(Debug)]
pub struct StraitAssignor {
    units: UnitsView,
}

impl StraitAssignor {
    /// An assignor over `units`.
    pub fn new(units: UnitsView) -> StraitAssignor {
        StraitAssignor { units }
    }
}

impl Assignor for StraitAssignor {
    fn assign(&self, protocol: &str, members: &[(String, Bytes)]) -> Vec<(String, Bytes)> {
        if protocol != PROTOCOL {
            warn!(
                protocol,
                "unknown assignment protocol chosen: members get nothing"
            );
            return members
                .iter()
                .map(|(id, _)| (id.clone(), Bytes::new()))
                .collect();
        }
        let mut units = self.units.get();
        let mut claims = Vec::with_capacity(members.len());
        for (id, bytes) in members {
            match decode_claim(id, bytes) {
                Ok(c) => {
                    for (u, load) in &c.loads {
                        if let Some(l) = units.get_mut(u) {
                            *l = *load;
                        }
                    }
                    claims.push(c.claim);
                }
                Err(e) => {
                    warn!(member = %id, error = %e, "unreadable claim: treated as a new member's");
                    claims.push(MemberClaim {
                        id: id.clone(),
                        generation: -1,
                        ..MemberClaim::default()
                    });
                }
            }
        }
        let plan = assign(&claims, &units);
        info!(
            members = members.len(),
            units = units.len(),
            revoked = plan.revoked.len(),
            "assigned the group's work"
        );
        members
            .iter()
            .map(|(id, _)| {
                let a = plan.members.get(id).cloned().unwrap_or_default();
                (
                    id.clone(),
                    Bytes::from(encode_assignment(&a, plan.revoked.len())),
                )
            })
            .collect()
    }
}

/// The claim a member announces after `assignment` of `generation`, owning `owned` (what it
/// still runs: the assignment's units minus what it has released), with `loads` measured.
pub fn claim_after(
    generation: i32,
    assignment: &MemberAssignment,
    owned: impl IntoIterator<Item = Unit>,
    loads: &BTreeMap<Unit, u64>,
    process: &str,
) -> Claim {
    let owned: std::collections::BTreeSet<Unit> = owned.into_iter().collect();
    Claim {
        loads: owned
            .iter()
            .map(|u| (u.clone(), loads.get(u).copied().unwrap_or(0)))
            .collect(),
        claim: MemberClaim {
            id: String::new(),
            generation,
            slot: Some(assignment.slot),
            owned,
            max_slot_seen: Some(assignment.max_slot_seen),
            slots_held: assignment.slots_held.clone(),
        },
        process: process.to_string(),
    }
}
