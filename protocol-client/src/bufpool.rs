//! A process-wide pool of large byte buffers: fetch responses and merged batches.
//!
//! Why: the forward path allocates a buffer per fetch response (hundreds of KiB to MiB) and per
//! merged batch, keeps it while its batches are in flight, and frees it when the target has
//! acknowledged them. The allocator hands such memory back to the kernel and the next buffer is
//! faulted in and zeroed again, page by page: a fifth of the replicator's CPU in a profile of
//! 16 partitions at 1 KiB (`exc_page_fault`, `clear_page_erms`, under `recv` and `memmove`).
//! Buffers made here return to the pool when the last [`Bytes`] referring to them is dropped,
//! and are reused with their pages already resident.
//!
//! Bounded: the pool keeps at most [`BufPool::set_limit`] bytes of idle capacity (default
//! [`DEFAULT_LIMIT`]); beyond it the smallest idle buffers are freed. Buffers below
//! [`MIN_POOLED`] are ordinary allocations. Capacities are rounded up to size classes an eighth
//! of a power of two apart, and a buffer is reused only for its own class, so a reused buffer
//! is never more than a quarter (or 64 KiB) larger than what it holds.
//!
//! No I/O and no unsafe code: a pooled buffer is an owner given to [`Bytes::from_owner`].

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use bytes::Bytes;

/// Smallest capacity worth pooling: below it the allocator's own free lists do as well.
pub const MIN_POOLED: usize = 64 * 1024;

/// Idle capacity kept by default.
pub const DEFAULT_LIMIT: usize = 40 * 1024 * 1024;

/// The process's pool.
pub static GLOBAL: BufPool = BufPool::new(DEFAULT_LIMIT);

/// A pool of idle buffers (see the module's documentation); the process uses [`GLOBAL`].
#[derive(Debug)]
pub struct BufPool {
    limit: AtomicUsize,
    idle: Mutex<Idle>,
}

#[derive(Debug)]
struct Idle {
    /// Sorted by capacity, smallest first.
    buffers: Vec<Vec<u8>>,
    bytes: usize,
}

impl Idle {
    fn trim(&mut self, limit: usize) {
        while self.bytes > limit && !self.buffers.is_empty() {
            let b = self.buffers.remove(0);
            self.bytes -= b.capacity();
        }
    }
}

/// The capacity a request for `len` bytes gets: `len` rounded up to an eighth of the next power
/// of two (at least [`MIN_POOLED`]), so a buffer is at most a quarter (or 64 KiB) larger than asked for
/// (its pages, once touched, stay resident while it is reused) and requests of similar sizes
/// share buffers.
fn class(len: usize) -> usize {
    if len < MIN_POOLED {
        return len;
    }
    let step = (len.checked_next_power_of_two().unwrap_or(len) / 8).max(MIN_POOLED);
    len.div_ceil(step).saturating_mul(step)
}

impl BufPool {
    pub const fn new(limit: usize) -> Self {
        BufPool {
            limit: AtomicUsize::new(limit),
            idle: Mutex::new(Idle {
                buffers: Vec::new(),
                bytes: 0,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Idle> {
        // A panic while holding the lock leaves only a list of buffers behind: still consistent.
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sets the most idle capacity kept (0: none, every buffer is freed when dropped). Idle
    /// buffers beyond a lowered limit are freed at once.
    pub fn set_limit(&self, bytes: usize) {
        self.limit.store(bytes, Ordering::Relaxed);
        self.lock().trim(bytes);
    }

    /// Idle capacity held now.
    pub fn idle_bytes(&self) -> usize {
        self.lock().bytes
    }

    /// An empty buffer with room for at least `len` bytes: an idle one of its size class, else
    /// a new one.
    pub fn take(&self, len: usize) -> Vec<u8> {
        let want = class(len);
        if want >= MIN_POOLED {
            let mut idle = self.lock();
            if let Some(i) = idle.buffers.iter().position(|b| b.capacity() == want) {
                let b = idle.buffers.remove(i);
                idle.bytes -= b.capacity();
                return b;
            }
        }
        Vec::with_capacity(want)
    }

    /// Freezes a buffer into [`Bytes`]; a buffer of at least [`MIN_POOLED`] capacity returns
    /// to this pool when the last `Bytes` referring to it is dropped.
    pub fn freeze(&'static self, buf: Vec<u8>) -> Bytes {
        if buf.capacity() < MIN_POOLED {
            return Bytes::from(buf);
        }
        Bytes::from_owner(Pooled { buf, pool: self })
    }

    fn give_back(&self, mut buf: Vec<u8>) {
        let limit = self.limit.load(Ordering::Relaxed);
        // A buffer not made by `take` (grown by pushing) fits no class: freed.
        if buf.capacity() > limit || class(buf.capacity()) != buf.capacity() {
            return;
        }
        buf.clear();
        let mut idle = self.lock();
        let at = idle
            .buffers
            .partition_point(|b| b.capacity() < buf.capacity());
        idle.bytes += buf.capacity();
        idle.buffers.insert(at, buf);
        idle.trim(limit);
    }
}

struct Pooled {
    buf: Vec<u8>,
    pool: &'static BufPool,
}

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        self.pool.give_back(std::mem::take(&mut self.buf));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_return_are_reused_and_the_idle_total_is_bounded() {
        let pool: &'static BufPool = Box::leak(Box::new(BufPool::new(4 * MIN_POOLED)));
        let small = pool.freeze(vec![1, 2, 3]);
        drop(small);
        assert_eq!(pool.idle_bytes(), 0, "small buffers are not pooled");

        let mut a = pool.take(MIN_POOLED + 1);
        assert_eq!(a.capacity(), 2 * MIN_POOLED, "rounded to a power of two");
        a.extend_from_slice(&[7; 100]);
        let ptr = a.as_ptr();
        let bytes = pool.freeze(a);
        let slice = bytes.slice(10..20);
        drop(bytes);
        assert_eq!(pool.idle_bytes(), 0, "a slice keeps the buffer alive");
        assert_eq!(&slice[..], &[7; 10]);
        drop(slice);
        assert_eq!(pool.idle_bytes(), 2 * MIN_POOLED);

        let other = pool.take(MIN_POOLED);
        assert_ne!(other.as_ptr(), ptr, "another class gets a new buffer");
        drop(other);
        let b = pool.take(MIN_POOLED + 100);
        assert_eq!(b.as_ptr(), ptr, "the idle buffer is reused for its class");
        assert!(b.is_empty());
        assert_eq!(pool.idle_bytes(), 0);

        // Over the limit: the smallest idle buffers go first.
        let big = pool.take(4 * MIN_POOLED);
        drop(pool.freeze(b));
        drop(pool.freeze(big));
        assert_eq!(pool.idle_bytes(), 4 * MIN_POOLED, "the larger one stays");
        pool.set_limit(0);
        assert_eq!(pool.idle_bytes(), 0);
        drop(pool.freeze(pool.take(MIN_POOLED)));
        assert_eq!(pool.idle_bytes(), 0, "limit 0 pools nothing");

        let mut grown = Vec::with_capacity(MIN_POOLED + 3);
        grown.push(1);
        pool.set_limit(DEFAULT_LIMIT);
        drop(pool.freeze(grown));
        assert_eq!(pool.idle_bytes(), 0, "a capacity of no class is freed");
    }

    #[test]
    fn classes_are_at_most_a_quarter_or_64_kib_larger_than_asked() {
        assert_eq!(class(100), 100);
        assert_eq!(class(MIN_POOLED), MIN_POOLED);
        assert_eq!(class(MIN_POOLED + 1), 2 * MIN_POOLED);
        assert_eq!(class(1 << 20), 1 << 20);
        assert_eq!(class((1 << 20) + 1), (1 << 20) + (1 << 18));
        assert_eq!(class(600 * 1024), 640 * 1024);
        for len in (MIN_POOLED..64 << 20).step_by(77_777) {
            let c = class(len);
            assert!(
                c >= len && c - len < (len / 4 + 1).max(MIN_POOLED),
                "{len} -> {c}"
            );
            assert_eq!(class(c), c, "a class is its own class");
        }
    }
}
