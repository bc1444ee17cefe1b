//! The benchmark workload: deterministic, realistically compressible record values.
//!
//! Values look like JSON events: field names repeat, ids vary, and the payload mixes random hex
//! with repeated words, so codecs reach ratios of about 2-4x (as in `benches/record_batch.rs`)
//! instead of compressing zeros. A [`ValuePool`] pre-generates a few thousand values so the
//! producers under test do not spend their time formatting.

use bytes::Bytes;

/// One value of about `size` bytes for record `i`.
pub fn value(i: usize, size: usize, seed: &mut u64) -> Vec<u8> {
    let mut v = format!(
        r#"{{"id":{i},"user":"user-{}","event":"page_view","ts":{},"payload":""#,
        i * 7919 % 10_007,
        1_700_000_000_000u64 + i as u64
    )
    .into_bytes();
    const HEX: &[u8; 16] = b"0123456789abcdef";
    while v.len() + 2 < size {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        if *seed & 1 == 0 {
            v.push(HEX[(*seed >> 8) as usize & 15]);
        } else {
            v.extend_from_slice(b"lorem ");
        }
    }
    v.truncate(size.saturating_sub(2));
    v.extend_from_slice(b"\"}");
    v.truncate(size);
    v
}

/// Pre-generated values of one size, handed out round-robin.
#[derive(Debug, Clone)]
pub struct ValuePool {
    values: Vec<Bytes>,
    size: usize,
}

impl ValuePool {
    /// `count` distinct values of `size` bytes.
    pub fn new(size: usize, count: usize) -> ValuePool {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let values = (0..count.max(1))
            .map(|i| Bytes::from(value(i, size, &mut seed)))
            .collect();
        ValuePool { values, size }
    }

    /// The value for record `i`.
    pub fn get(&self, i: usize) -> &Bytes {
        &self.values[i % self.values.len()]
    }

    /// Size of every value.
    pub fn size(&self) -> usize {
        self.size
    }
}

/// Key of record `i` when the workload is keyed (10 000 distinct keys, like a user id).
pub fn key(i: usize) -> Bytes {
    Bytes::from(format!("user-{:05}", i * 7919 % 10_000))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_have_the_requested_size_and_vary() {
        for size in [100, 1024] {
            let pool = ValuePool::new(size, 8);
            assert!((0..8).all(|i| pool.get(i).len() == size));
            assert_ne!(pool.get(0), pool.get(1));
            assert_eq!(pool.get(0), pool.get(8));
        }
        assert_eq!(key(1), key(10_001));
    }
}
