//! Scale-out (issue 13): many `strait run` processes share the work through Kafka's group
//! protocol. This module is built bottom-up; so far it holds the sans-IO assignor
//! ([`assign`]). Membership, hand-over and fencing in `strait run` come next.

pub mod assign;
pub mod member;
pub mod wire;
