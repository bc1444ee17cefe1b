//! The scale-out group's messages and assignor (`replicator::scale`): a member's claim
//! (JoinGroup metadata) and assignment (SyncGroup) decoders on arbitrary bytes, and
//! `assign` over the claims that decode.
//!
//! Input: byte 0 = number of claims `k` (mod 5, at least 1); then `k` chunks of `u16` BE
//! length + claim bytes; the rest is an assignment. Units that exist are the decoded claims'
//! units plus 4 partitions of flow `A->B` (loads from the claims).
//!
//! Asserts: no panic; a decoded claim or assignment re-encodes to bytes that decode to the same
//! value (a canonical form); the plan gives every existing unit to at most one member, to exactly
//! one unless it is revoked, only revokes units a live member claimed, keeps slots distinct, and
//! fences no slot a member of the plan holds.
#![no_main]

use std::collections::{BTreeMap, BTreeSet};

use libfuzzer_sys::fuzz_target;
use replicator::scale::assign::{assign, Unit};
use replicator::scale::wire::{decode_assignment, decode_claim, encode_assignment, encode_claim};

fuzz_target!(|data: &[u8]| {
    let Some((&k, mut rest)) = data.split_first() else {
        return;
    };
    let k = (k % 5).max(1);
    let mut claims = Vec::new();
    for i in 0..k {
        if rest.len() < 2 {
            break;
        }
        let n = (u16::from_be_bytes([rest[0], rest[1]]) as usize).min(rest.len() - 2);
        let bytes = &rest[2..2 + n];
        rest = &rest[2 + n..];
        let id = format!("m{i}");
        if let Ok(c) = decode_claim(&id, bytes) {
            let again = decode_claim(&id, &encode_claim(&c)).expect("re-encoded claim decodes");
            assert_eq!(again, c);
            claims.push(c);
        }
    }
    if let Ok((a, revoked)) = decode_assignment(rest) {
        let again = decode_assignment(&encode_assignment(&a, revoked)).expect("re-encoded");
        assert_eq!(again, (a, revoked.min(i32::MAX as usize)));
    }
    let mut units: BTreeMap<Unit, u64> = (0..4)
        .map(|p| {
            (
                Unit::Partition {
                    flow: "A->B".into(),
                    topic: "t".into(),
                    partition: p,
                },
                1,
            )
        })
        .collect();
    for c in &claims {
        for (u, l) in &c.loads {
            units.insert(u.clone(), *l);
        }
    }
    let member_claims: Vec<_> = claims.iter().map(|c| c.claim.clone()).collect();
    let plan = assign(&member_claims, &units);
    if member_claims.is_empty() {
        assert!(plan.members.is_empty());
        return;
    }
    let claimed: BTreeSet<&Unit> = member_claims.iter().flat_map(|c| c.owned.iter()).collect();
    let mut seen = BTreeSet::new();
    let mut slots = BTreeSet::new();
    for a in plan.members.values() {
        assert!(slots.insert(a.slot), "slot {} twice", a.slot);
        for u in &a.units {
            assert!(units.contains_key(u));
            assert!(seen.insert(u.clone()), "{u:?} twice");
        }
        assert!(a.fenced_units.is_subset(&a.units));
    }
    for a in plan.members.values() {
        assert!(a.fence.is_disjoint(&slots), "fences a held slot: {:?}", a.fence);
    }
    for u in units.keys() {
        assert!(seen.contains(u) != plan.revoked.contains(u), "{u:?}");
        if plan.revoked.contains(u) {
            assert!(claimed.contains(u), "revoked an unclaimed unit {u:?}");
        }
    }
});
