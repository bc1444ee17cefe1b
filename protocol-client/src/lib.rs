//! Strait's Kafka wire client.
//!
//! Layers, bottom up (see `ARCHITECTURE.md`):
//! - [`record`]: record batches v2 — zero-copy view, in-place header rewrite, decode and rebuild (sans-IO).

pub mod record;
pub mod codec;
