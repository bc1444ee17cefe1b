//! A chain of `Bytes` that is one [`Buf`]: headers and framing bytes interleaved with record
//! batches that stay in the buffers they were fetched into. `chunks_vectored` exposes every
//! part, so a vectored socket write sends them without a user-space copy.

use std::collections::VecDeque;
use std::io::IoSlice;

use bytes::{Buf, Bytes};

/// An ordered list of byte buffers read as one.
#[derive(Clone, Debug, Default)]
pub struct BufChain {
    parts: VecDeque<Bytes>,
    remaining: usize,
}

impl BufChain {
    /// An empty chain.
    pub fn new() -> BufChain {
        BufChain::default()
    }

    /// Appends a buffer (empty ones are dropped).
    pub fn push(&mut self, b: Bytes) {
        if !b.is_empty() {
            self.remaining += b.len();
            self.parts.push_back(b);
        }
    }

    /// Appends every part of another chain.
    pub fn append(&mut self, other: BufChain) {
        for p in other.parts {
            self.push(p);
        }
    }

    /// Number of parts.
    pub fn parts(&self) -> usize {
        self.parts.len()
    }

    /// Copies the whole chain into one contiguous buffer (tests and diagnostics only).
    pub fn to_contiguous(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.remaining);
        for p in &self.parts {
            v.extend_from_slice(p);
        }
        v
    }
}

impl From<Bytes> for BufChain {
    fn from(b: Bytes) -> BufChain {
        let mut c = BufChain::new();
        c.push(b);
        c
    }
}

impl Buf for BufChain {
    fn remaining(&self) -> usize {
        self.remaining
    }

    fn chunk(&self) -> &[u8] {
        self.parts.front().map(|b| &b[..]).unwrap_or(&[])
    }

    fn advance(&mut self, mut cnt: usize) {
        assert!(cnt <= self.remaining, "advance past the end of a BufChain");
        self.remaining -= cnt;
        while cnt > 0 {
            let front = self.parts.front_mut().expect("remaining > 0");
            if cnt >= front.len() {
                cnt -= front.len();
                self.parts.pop_front();
            } else {
                front.advance(cnt);
                cnt = 0;
            }
        }
    }

    fn chunks_vectored<'a>(&'a self, dst: &mut [IoSlice<'a>]) -> usize {
        let mut n = 0;
        for (slot, part) in dst.iter_mut().zip(self.parts.iter()) {
            *slot = IoSlice::new(part);
            n += 1;
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advance_across_parts_and_vectored_view() {
        let mut c = BufChain::new();
        c.push(Bytes::from_static(b"abc"));
        c.push(Bytes::new());
        c.push(Bytes::from_static(b"de"));
        c.push(Bytes::from_static(b"fgh"));
        assert_eq!(c.remaining(), 8);
        assert_eq!(c.parts(), 3);
        c.advance(4);
        assert_eq!(c.chunk(), b"e");
        let mut slices = [IoSlice::new(&[]); 4];
        assert_eq!(c.chunks_vectored(&mut slices), 2);
        assert_eq!(&*slices[1], b"fgh");
        assert_eq!(c.to_contiguous(), b"efgh");
    }
}
