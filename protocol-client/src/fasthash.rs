//! A fast, non-cryptographic hasher for the per-partition maps walked on every fetch round.
//!
//! The standard library's SipHash resists collision attacks at a price that showed in profiles
//! of an idle mirror of 10 000 partitions (a fifth of its CPU was SipHash over `(topic,
//! partition)` keys). These maps are keyed by topic names and partition numbers this process was
//! configured with or read from its own cluster's metadata, not by data from the records, so a
//! multiply-rotate hash (the scheme of rustc's `FxHasher`, with its v2 finishing rotation so the
//! high bits hashbrown uses for its control bytes are mixed) is enough.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

/// A `HashMap` with [`FastHasher`].
pub type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FastHasher>>;
/// A `HashSet` with [`FastHasher`].
pub type FastSet<K> = HashSet<K, BuildHasherDefault<FastHasher>>;

const K: u64 = 0xf135_7aea_2e62_a9c5;

/// Multiply-rotate hasher; see the module docs for when it may be used.
#[derive(Clone, Copy, Debug, Default)]
pub struct FastHasher {
    hash: u64,
}

impl FastHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.hash = (self.hash.wrapping_add(word)).wrapping_mul(K);
    }
}

impl Hasher for FastHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.add(u64::from_le_bytes(c.try_into().expect("8 bytes")));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut last = [0u8; 8];
            last[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(last) ^ ((rest.len() as u64) << 59));
        }
    }
    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }
    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.add(u64::from(i));
    }
    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }
    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }
    #[inline]
    fn finish(&self) -> u64 {
        self.hash.rotate_left(26)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::BuildHasher;
    use std::sync::Arc;

    #[test]
    fn partition_keys_spread_over_a_small_table() {
        // 10 000 partitions of one topic and 1 000 topics of 10 partitions: what an idle mirror
        // holds. hashbrown takes the bucket from the low bits and a tag from the top 7: both
        // must vary.
        let b = BuildHasherDefault::<FastHasher>::default();
        let one: Arc<str> = Arc::from("bench");
        let mut keys: Vec<(Arc<str>, i32)> = (0..10_000).map(|p| (one.clone(), p)).collect();
        keys.extend(
            (0..1000).flat_map(|t| (0..10).map(move |p| (Arc::from(format!("topic-{t}")), p))),
        );
        let hashes: Vec<u64> = keys.iter().map(|k| b.hash_one(k)).collect();
        let buckets: HashSet<u64> = hashes.iter().map(|h| h & 0x3fff).collect();
        let tags: HashSet<u64> = hashes.iter().map(|h| h >> 57).collect();
        assert!(
            buckets.len() > 16384 / 2,
            "{} of 16384 buckets used",
            buckets.len()
        );
        assert_eq!(tags.len(), 128);
        let set: FastSet<(Arc<str>, i32)> = keys.iter().cloned().collect();
        assert_eq!(set.len(), keys.len());
    }
}
