//! Scale-out (issue 13): many `strait run` processes share the work through Kafka's group
//! protocol. Built bottom-up, sans-IO first: the assignor ([`assign`]), the bytes members
//! exchange ([`wire`]), the leader's assignor for `protocol_client::group` ([`member`]) and a
//! member's hand-over state machine ([`driver`]), and the membership task `strait run` runs
//! with `strait.group.enabled` ([`runner`]), which steers the flows (release = drain + commit,
//! start = resume from the stored map and the remote tail). Still to come: the transactional
//! data producer per slot, which fences a stalled member's writes.

pub mod assign;
pub mod driver;
pub mod member;
pub mod runner;
pub mod wire;
