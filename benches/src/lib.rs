//! Support for Strait's benchmarks: process CPU and memory accounting from `/proc`, the
//! deterministic workload, small Kafka helpers over `protocol-client`, and table output.
//!
//! The binaries (`client-bench`, `e2e-bench`) and the criterion benches (`record_batch`,
//! `pipeline`) are described in `benches/README.md`.

pub mod kafka;
pub mod proc_stats;
pub mod table;
pub mod workload;

/// Bytes in a (decimal) megabyte, the unit of every MB/s figure.
pub const MB: f64 = 1e6;
/// Bytes in a (decimal) gigabyte, the unit of CPU seconds per GB.
pub const GB: f64 = 1e9;
/// Bytes in a mebibyte, the unit of RSS figures.
pub const MIB: f64 = 1024.0 * 1024.0;

/// The workspace root (parent of this crate).
pub fn workspace_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("benches crate has a parent")
        .to_path_buf()
}

/// Milliseconds since the Unix epoch (Kafka record timestamps).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Nanoseconds since the Unix epoch (latency probes: comparable across processes).
pub fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}
