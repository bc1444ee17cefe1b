//! The bytes members exchange through the group coordinator: a member's claim (its JoinGroup
//! metadata, protocol [`PROTOCOL`] of protocol type [`PROTOCOL_TYPE`]) and its assignment
//! (SyncGroup). Sans-IO; decoding checks every length against what remains before allocating,
//! never panics, and ignores bytes a newer version appends (so members of two versions can
//! share a group during a rolling upgrade).
//!
//! Layout (big-endian, as Kafka's own embedded protocols): `version: i16`, then
//! - claim: `generation: i32`, `slot: i32` (-1 none), `max_slot_seen: i32` (-1 none),
//!   `slots_held: [u32]`, `owned: [unit, load: u64]`, `process: string`;
//! - assignment: `slot: u32`, `max_slot_seen: u32`, `slots_held: [u32]`,
//!   `units: [unit, fenced: bool]`, `fence: [u32]`, `revoked: i32` (count, for logs);
//! - unit: `kind: i8` (0 flow leader, 1 partition), `flow: string`, then for a partition
//!   `topic: string`, `partition: i32`; strings `i16` length + UTF-8, arrays `i32` count.

use std::collections::{BTreeMap, BTreeSet};

use super::assign::{MemberAssignment, MemberClaim, Unit};

/// The group's protocol type: neither `consumer` nor `connect`, so a Strait group can never be
/// mistaken for (or joined by) a consumer group or a Connect cluster.
pub const PROTOCOL_TYPE: &str = "strait";
/// The one assignment protocol.
pub const PROTOCOL: &str = "strait-cooperative-v1";

const VERSION: i16 = 1;

/// A claim or assignment that does not decode.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("group message: {0}")]
pub struct WireError(String);

/// A member's claim and the loads of the units it owns.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Claim {
    /// Slots, generation and owned units.
    pub claim: MemberClaim,
    /// Bytes per second of each owned unit, as its owner measured it.
    pub loads: BTreeMap<Unit, u64>,
    /// Who the member is, for logs (host and process id).
    pub process: String,
}

struct Writer(Vec<u8>);

impl Writer {
    fn i8(&mut self, v: i8) {
        self.0.push(v as u8);
    }
    fn i16(&mut self, v: i16) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn i32(&mut self, v: i32) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn str(&mut self, s: &str) {
        // Topic and flow names are far below i16::MAX bytes; longer text is cut at a char
        // boundary rather than written with a wrong length.
        let mut end = s.len().min(i16::MAX as usize);
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        self.i16(end as i16);
        self.0.extend_from_slice(&s.as_bytes()[..end]);
    }
    fn count(&mut self, n: usize) {
        self.i32(n.min(i32::MAX as usize) as i32);
    }
    fn unit(&mut self, u: &Unit) {
        match u {
            Unit::FlowLeader { flow } => {
                self.i8(0);
                self.str(flow);
            }
            Unit::Partition {
                flow,
                topic,
                partition,
            } => {
                self.i8(1);
                self.str(flow);
                self.str(topic);
                self.i32(*partition);
            }
        }
    }
    fn slots(&mut self, s: &BTreeSet<u32>) {
        self.count(s.len());
        for v in s {
            self.u32(*v);
        }
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], WireError> {
        if self.0.len() < n {
            return Err(WireError(format!(
                "{what}: {n} bytes needed, {} left",
                self.0.len()
            )));
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    fn i8(&mut self, what: &str) -> Result<i8, WireError> {
        Ok(self.take(1, what)?[0] as i8)
    }
    fn i16(&mut self, what: &str) -> Result<i16, WireError> {
        Ok(i16::from_be_bytes(
            self.take(2, what)?.try_into().expect("2"),
        ))
    }
    fn i32(&mut self, what: &str) -> Result<i32, WireError> {
        Ok(i32::from_be_bytes(
            self.take(4, what)?.try_into().expect("4"),
        ))
    }
    fn u32(&mut self, what: &str) -> Result<u32, WireError> {
        Ok(u32::from_be_bytes(
            self.take(4, what)?.try_into().expect("4"),
        ))
    }
    fn u64(&mut self, what: &str) -> Result<u64, WireError> {
        Ok(u64::from_be_bytes(
            self.take(8, what)?.try_into().expect("8"),
        ))
    }
    fn str(&mut self, what: &str) -> Result<String, WireError> {
        let n = self.i16(what)?;
        let n = usize::try_from(n).map_err(|_| WireError(format!("{what}: length {n}")))?;
        let b = self.take(n, what)?;
        String::from_utf8(b.to_vec()).map_err(|_| WireError(format!("{what}: not UTF-8")))
    }
    /// An array count, checked against the bytes left (each element takes at least `min`).
    fn count(&mut self, min: usize, what: &str) -> Result<usize, WireError> {
        let n = self.i32(what)?;
        let n = usize::try_from(n).map_err(|_| WireError(format!("{what}: count {n}")))?;
        if n.saturating_mul(min) > self.0.len() {
            return Err(WireError(format!(
                "{what}: {n} elements cannot fit in {} bytes",
                self.0.len()
            )));
        }
        Ok(n)
    }
    fn unit(&mut self) -> Result<Unit, WireError> {
        match self.i8("unit kind")? {
            0 => Ok(Unit::FlowLeader {
                flow: self.str("flow")?,
            }),
            1 => Ok(Unit::Partition {
                flow: self.str("flow")?,
                topic: self.str("topic")?,
                partition: self.i32("partition")?,
            }),
            k => Err(WireError(format!("unknown unit kind {k}"))),
        }
    }
    fn slots(&mut self, what: &str) -> Result<BTreeSet<u32>, WireError> {
        let n = self.count(4, what)?;
        (0..n).map(|_| self.u32(what)).collect()
    }
    fn version(&mut self) -> Result<i16, WireError> {
        let v = self.i16("version")?;
        if v < 1 {
            return Err(WireError(format!("version {v}")));
        }
        Ok(v)
    }
}

fn opt(v: Option<u32>) -> i32 {
    v.map_or(-1, |s| s.min(i32::MAX as u32) as i32)
}

fn from_opt(v: i32) -> Option<u32> {
    u32::try_from(v).ok()
}

/// Encodes a member's claim (JoinGroup metadata).
pub fn encode_claim(c: &Claim) -> Vec<u8> {
    let mut w = Writer(Vec::new());
    w.i16(VERSION);
    w.i32(c.claim.generation);
    w.i32(opt(c.claim.slot));
    w.i32(opt(c.claim.max_slot_seen));
    w.slots(&c.claim.slots_held);
    w.count(c.claim.owned.len());
    for u in &c.claim.owned {
        w.unit(u);
        w.u64(c.loads.get(u).copied().unwrap_or(0));
    }
    w.str(&c.process);
    w.0
}

/// Decodes a member's claim; `id` is its member id (from JoinGroup, not in the bytes).
pub fn decode_claim(id: &str, bytes: &[u8]) -> Result<Claim, WireError> {
    let mut r = Reader(bytes);
    r.version()?;
    let generation = r.i32("generation")?;
    let slot = from_opt(r.i32("slot")?);
    let max_slot_seen = from_opt(r.i32("max slot seen")?);
    let slots_held = r.slots("slots held")?;
    let n = r.count(1 + 2 + 8, "owned units")?;
    let mut owned = BTreeSet::new();
    let mut loads = BTreeMap::new();
    for _ in 0..n {
        let u = r.unit()?;
        let load = r.u64("load")?;
        loads.insert(u.clone(), load);
        owned.insert(u);
    }
    let process = r.str("process")?;
    Ok(Claim {
        claim: MemberClaim {
            id: id.to_string(),
            generation,
            slot,
            owned,
            max_slot_seen,
            slots_held,
        },
        loads,
        process,
    })
}

/// Encodes a member's assignment (SyncGroup); `revoked` is how many units the generation
/// revoked in the whole group.
pub fn encode_assignment(a: &MemberAssignment, revoked: usize) -> Vec<u8> {
    let mut w = Writer(Vec::new());
    w.i16(VERSION);
    w.u32(a.slot);
    w.u32(a.max_slot_seen);
    w.slots(&a.slots_held);
    w.count(a.units.len());
    for u in &a.units {
        w.unit(u);
        w.i8(i8::from(a.fenced_units.contains(u)));
    }
    w.slots(&a.fence);
    w.count(revoked);
    w.0
}

/// Decodes an assignment, and how many units the generation revoked in the group.
pub fn decode_assignment(bytes: &[u8]) -> Result<(MemberAssignment, usize), WireError> {
    let mut r = Reader(bytes);
    r.version()?;
    let slot = r.u32("slot")?;
    let max_slot_seen = r.u32("max slot seen")?;
    let slots_held = r.slots("slots held")?;
    let n = r.count(1 + 2 + 1, "units")?;
    let mut units = BTreeSet::new();
    let mut fenced_units = BTreeSet::new();
    for _ in 0..n {
        let u = r.unit()?;
        if r.i8("fenced")? != 0 {
            fenced_units.insert(u.clone());
        }
        units.insert(u);
    }
    let fence = r.slots("fence")?;
    let revoked = r.count(0, "revoked")?;
    Ok((
        MemberAssignment {
            slot,
            units,
            fence,
            fenced_units,
            max_slot_seen,
            slots_held,
        },
        revoked,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_units() -> Vec<Unit> {
        vec![
            Unit::FlowLeader {
                flow: "A->B".into(),
            },
            Unit::Partition {
                flow: "A->B".into(),
                topic: "orders".into(),
                partition: 7,
            },
            Unit::Partition {
                flow: "B->A".into(),
                topic: "ünïcode".into(),
                partition: 0,
            },
        ]
    }

    #[test]
    fn claims_and_assignments_round_trip() {
        let owned: BTreeSet<Unit> = sample_units().into_iter().collect();
        let c = Claim {
            claim: MemberClaim {
                id: "m-1".into(),
                generation: 12,
                slot: Some(3),
                owned: owned.clone(),
                max_slot_seen: Some(5),
                slots_held: BTreeSet::from([0, 3, 5]),
            },
            loads: owned.iter().cloned().zip([0u64, 1_000_000, 7]).collect(),
            process: "host-a/4242".into(),
        };
        assert_eq!(decode_claim("m-1", &encode_claim(&c)).unwrap(), c);
        let fresh = Claim {
            claim: MemberClaim {
                id: "m-2".into(),
                generation: -1,
                ..MemberClaim::default()
            },
            ..Claim::default()
        };
        assert_eq!(decode_claim("m-2", &encode_claim(&fresh)).unwrap(), fresh);
        let a = MemberAssignment {
            slot: 2,
            units: owned.clone(),
            fence: BTreeSet::from([1, 4]),
            fenced_units: owned.iter().take(1).cloned().collect(),
            max_slot_seen: 4,
            slots_held: BTreeSet::from([0, 2, 3]),
        };
        assert_eq!(
            decode_assignment(&encode_assignment(&a, 9)).unwrap(),
            (a, 9)
        );
    }

    #[test]
    fn bytes_a_newer_version_appends_are_ignored() {
        let a = MemberAssignment {
            slot: 1,
            ..MemberAssignment::default()
        };
        let mut b = encode_assignment(&a, 0);
        b[1] = 2; // version 2
        b.extend_from_slice(b"future fields");
        assert_eq!(decode_assignment(&b).unwrap().0, a);
    }

    #[test]
    fn every_truncation_and_corruption_is_an_error_not_a_panic() {
        let owned: BTreeSet<Unit> = sample_units().into_iter().collect();
        let c = Claim {
            claim: MemberClaim {
                owned,
                ..MemberClaim::default()
            },
            ..Claim::default()
        };
        let bytes = encode_claim(&c);
        for n in 0..bytes.len() {
            assert!(decode_claim("x", &bytes[..n]).is_err(), "truncated at {n}");
        }
        // Every single-byte corruption decodes or errors, never panics or allocates wildly.
        for i in 0..bytes.len() {
            for v in [0x00, 0x7f, 0x80, 0xff] {
                let mut b = bytes.clone();
                b[i] = v;
                let _ = decode_claim("x", &b);
                let _ = decode_assignment(&b);
            }
        }
        // A count far beyond the bytes left is refused before allocating.
        let mut huge = Vec::new();
        huge.extend_from_slice(&1i16.to_be_bytes());
        huge.extend_from_slice(&0u32.to_be_bytes());
        huge.extend_from_slice(&0u32.to_be_bytes());
        huge.extend_from_slice(&i32::MAX.to_be_bytes());
        let e = decode_assignment(&huge).unwrap_err();
        assert!(e.to_string().contains("cannot fit"), "{e}");
        assert!(decode_claim("x", &[0, 0]).is_err(), "version 0");
    }
}
