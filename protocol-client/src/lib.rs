//! Strait's Kafka wire client.
//!
//! Layers, bottom up (see `ARCHITECTURE.md`):
//! - [`record`]: record batches v2 — zero-copy view, in-place header rewrite, decode and rebuild (sans-IO).

pub mod admin;
pub mod bufpool;
pub mod cluster;
pub mod codec;
pub mod conn;
pub mod error;
pub mod fasthash;
pub mod fetcher;
pub mod group;
pub mod producer;
pub mod record;
pub mod retry;
pub mod security;

pub use error::{Error, ResponseError, Result};
