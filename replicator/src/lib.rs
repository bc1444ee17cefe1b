//! Strait: a MirrorMaker 2 compatible Kafka replicator with zero-copy forwarding and exact
//! offset translation. See `ARCHITECTURE.md` for the map of the code.
//!
//! Pure parts (no I/O): [`config`], [`policy`], [`filter`], [`formats`], [`offsets`],
//! [`flow::plan`], [`translate`]. Runtime: [`flow`], [`internal`], [`heartbeat`], [`run`].

pub mod config;
pub mod error;
pub mod filter;
pub mod flow;
pub mod formats;
pub mod heartbeat;
pub mod internal;
pub mod metrics;
pub mod offsets;
pub mod policy;
pub mod run;
pub mod sample;
pub mod scale;
pub mod security;
pub mod serve;
pub mod status;
pub mod translate;

pub use error::{Error, Result};
