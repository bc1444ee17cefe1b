//! Strait replicator.

pub mod config;
pub mod filter;
pub mod formats;
pub mod offsets;
pub mod policy;
