//! Bounded exponential backoff with jitter, shared by every retry loop in the client.
//!
//! Whether an error is worth retrying is decided in one place, [`crate::Error::is_retriable`];
//! this module only decides how long to wait and when to stop.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Retry budget and backoff bounds.
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    /// First backoff.
    pub min_backoff: Duration,
    /// Largest backoff.
    pub max_backoff: Duration,
    /// Total time a call may spend retrying before it gives up.
    pub max_elapsed: Duration,
}

impl Default for RetryPolicy {
    fn default() -> RetryPolicy {
        RetryPolicy {
            min_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(1),
            max_elapsed: Duration::from_secs(60),
        }
    }
}

/// The state of one retry loop. Time is passed in, so it is testable without a clock.
#[derive(Clone, Debug)]
pub struct Backoff {
    policy: RetryPolicy,
    started: Instant,
    attempts: u32,
    seed: u64,
}

impl Backoff {
    /// Starts a retry loop at `now`.
    pub fn new(policy: &RetryPolicy, now: Instant) -> Backoff {
        let seed = (now.elapsed().as_nanos() as u64)
            ^ (std::process::id() as u64).rotate_left(32)
            ^ (&policy as *const _ as u64);
        Backoff {
            policy: policy.clone(),
            started: now,
            attempts: 0,
            seed: seed | 1,
        }
    }

    /// Attempts made so far.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// Time since the loop started.
    pub fn elapsed(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.started)
    }

    /// Records a failed attempt at `now`; returns how long to wait before the next one, or
    /// `None` when the budget is spent.
    pub fn next_delay(&mut self, now: Instant) -> Option<Duration> {
        self.attempts += 1;
        let elapsed = self.elapsed(now);
        if elapsed >= self.policy.max_elapsed {
            return None;
        }
        let exp = self
            .policy
            .min_backoff
            .saturating_mul(1u32 << self.attempts.saturating_sub(1).min(16));
        let cap = exp.min(self.policy.max_backoff);
        // Full jitter in [cap/2, cap].
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        let half = cap / 2;
        let jitter = Duration::from_nanos(self.seed % (half.as_nanos() as u64 + 1));
        let delay = half + jitter;
        Some(delay.min(self.policy.max_elapsed - elapsed))
    }
}

/// Retries made, by operation and kind of error ([`crate::Error::kind`]): what an operator's
/// dashboard shows. One per cluster, shared by every client of it
/// ([`crate::cluster::Cluster::retries`]); only failures that are retried are counted.
#[derive(Debug, Default)]
pub struct RetryCounts(Mutex<BTreeMap<(String, String), u64>>);

impl RetryCounts {
    /// One retry of `operation` after `error`.
    pub fn note(&self, operation: &str, error: &crate::Error) {
        self.note_kind(operation, &error.kind());
    }

    /// One retry of `operation` after a broker's per-partition error `code`.
    pub fn note_code(&self, operation: &str, code: crate::error::ResponseError) {
        self.note_kind(operation, &format!("{code:?}"));
    }

    fn note_kind(&self, operation: &str, kind: &str) {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        match m.get_mut(&(operation.to_string(), kind.to_string())) {
            Some(n) => *n += 1,
            None => {
                m.insert((operation.to_string(), kind.to_string()), 1);
            }
        }
    }

    /// Every (operation, kind, count) so far.
    pub fn snapshot(&self) -> Vec<(String, String, u64)> {
        let m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        m.iter()
            .map(|((o, k), n)| (o.clone(), k.clone(), *n))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_exponentially_within_bounds_and_stops() {
        let policy = RetryPolicy {
            min_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(800),
            max_elapsed: Duration::from_secs(5),
        };
        let t0 = Instant::now();
        let mut b = Backoff::new(&policy, t0);
        let mut now = t0;
        let mut delays = Vec::new();
        while let Some(d) = b.next_delay(now) {
            delays.push(d);
            now += d;
        }
        assert!(delays[0] >= Duration::from_millis(50) && delays[0] <= Duration::from_millis(100));
        assert!(delays.iter().all(|d| *d <= Duration::from_millis(800)));
        assert!(delays[3] >= Duration::from_millis(400), "{delays:?}");
        let total: Duration = delays.iter().sum();
        assert!(
            total <= Duration::from_secs(5),
            "budget respected: {total:?}"
        );
        assert!(
            total >= Duration::from_millis(4500),
            "budget used: {total:?}"
        );
    }

    #[test]
    fn retries_are_counted_by_operation_and_kind() {
        let c = RetryCounts::default();
        let timeout = crate::Error::Conn(crate::conn::ConnError::Timeout {
            broker: "b:9092".into(),
            api: kafka_protocol::messages::ApiKey::Fetch,
            after: Duration::from_secs(1),
        });
        c.note("fetch", &timeout);
        c.note("fetch", &timeout);
        c.note_code("fetch", crate::error::ResponseError::NotLeaderOrFollower);
        c.note_code("produce", crate::error::ResponseError::NotLeaderOrFollower);
        assert_eq!(
            c.snapshot(),
            vec![
                ("fetch".into(), "NotLeaderOrFollower".into(), 1),
                ("fetch".into(), "request_timeout".into(), 2),
                ("produce".into(), "NotLeaderOrFollower".into(), 1),
            ]
        );
    }
}
