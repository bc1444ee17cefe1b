//! Scale-out (issue 13): many `strait run` processes share the work through Kafka's group
//! protocol. Built bottom-up, sans-IO first: the assignor ([`assign`]), the bytes members
//! exchange ([`wire`]), the leader's assignor for `protocol_client::group` ([`member`]) and a
//! member's hand-over state machine ([`driver`]). `strait run` does not use them yet: wiring
//! them to the flows (release = drain + commit, start = resume behind a fence) and the
//! transactional data producer per slot come next.

pub mod assign;
pub mod driver;
pub mod member;
pub mod wire;
