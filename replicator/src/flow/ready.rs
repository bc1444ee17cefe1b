//! Partitions of remote topics created at start whose leaders do not serve them yet.
//!
//! A broker creates a new partition's log when the topic's metadata reaches it, one partition
//! after the other, and serves each as soon as its own log exists: for 1000 partitions the
//! last one answers seconds after the first. A flow resumes each partition as soon as its
//! remote partition answers, instead of waiting for all of them (the first record then reaches
//! the target as soon as the first partition is served), and never asks a partition that does
//! not answer yet (one resume per partition would meet NOT_LEADER retries by the thousand).
//!
//! No I/O: the flow polls the leaders and reports what answered; time is passed in.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::time::Duration;

use tokio::time::Instant;

/// The partitions still waited for, by remote topic.
#[derive(Debug, Default)]
pub(super) struct NotReady {
    /// Remote topic → its source topic and the partitions that have not answered yet.
    topics: BTreeMap<String, (String, BTreeSet<i32>)>,
    /// The same partitions as source keys (what the flow's resume skips).
    keys: HashSet<(String, i32)>,
    /// When the wait started, and how long it may take before it is an error.
    since: Option<Instant>,
    within: Duration,
}

impl NotReady {
    /// Every partition of the topics just `created` (source topic, remote topic, partitions).
    /// The wait may last as long as [`crate::internal::wait_until_ready`]'s: 30 s plus 10 ms
    /// per partition.
    pub(super) fn new(created: Vec<(String, String, i32)>, now: Instant) -> Self {
        let mut out = NotReady::default();
        let mut total = 0u32;
        for (topic, remote, partitions) in created {
            let partitions = partitions.max(0);
            total = total.saturating_add(partitions as u32);
            out.keys.extend((0..partitions).map(|p| (topic.clone(), p)));
            out.topics
                .entry(remote)
                .or_insert_with(|| (topic, BTreeSet::new()))
                .1
                .extend(0..partitions);
        }
        out.topics.retain(|_, (_, parts)| !parts.is_empty());
        if !out.keys.is_empty() {
            out.since = Some(now);
            out.within = Duration::from_secs(30) + Duration::from_millis(10) * total;
        }
        out
    }

    /// Nothing is waited for.
    pub(super) fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The source partitions waited for.
    pub(super) fn keys(&self) -> &HashSet<(String, i32)> {
        &self.keys
    }

    /// What to poll: each remote topic with its partitions not answering yet.
    pub(super) fn waiting(&self) -> Vec<(String, Vec<i32>)> {
        self.topics
            .iter()
            .map(|(remote, (_, parts))| (remote.clone(), parts.iter().copied().collect()))
            .collect()
    }

    /// A poll of `remote` answered: of the partitions polled (`polled`), those not in
    /// `still_not_ready` are served now. Returns their source keys, no longer waited for.
    pub(super) fn answered(
        &mut self,
        remote: &str,
        polled: &[i32],
        still_not_ready: &[i32],
    ) -> Vec<(String, i32)> {
        let Some((topic, parts)) = self.topics.get_mut(remote) else {
            return Vec::new();
        };
        let still: BTreeSet<i32> = still_not_ready.iter().copied().collect();
        let mut ready = Vec::new();
        for p in polled {
            if !still.contains(p) && parts.remove(p) {
                let key = (topic.clone(), *p);
                self.keys.remove(&key);
                ready.push(key);
            }
        }
        if parts.is_empty() {
            self.topics.remove(remote);
        }
        if self.keys.is_empty() {
            self.since = None;
        }
        ready
    }

    /// Keeps waiting only for the source topics `keep` accepts (the others were deleted or
    /// re-created meanwhile: they are not resumed from here).
    pub(super) fn retain_topics(&mut self, keep: impl Fn(&str) -> bool) {
        self.topics.retain(|_, (t, _)| keep(t));
        self.keys.retain(|(t, _)| keep(t));
        if self.keys.is_empty() {
            self.since = None;
        }
    }

    /// What is still waited for once the wait has lasted too long: the flow fails with it (a
    /// transient error: the next run creates nothing and waits again).
    pub(super) fn overdue(&self, now: Instant) -> Option<String> {
        let since = self.since?;
        if now.duration_since(since) <= self.within {
            return None;
        }
        let (remote, (_, parts)) = self.topics.iter().next()?;
        Some(format!(
            "{} partition(s) of new remote topics (first: {remote}/{}) still not served by their leaders {:?} after creation",
            self.keys.len(),
            parts.iter().next().copied().unwrap_or(0),
            self.within
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(t: &str, p: i32) -> (String, i32) {
        (t.to_string(), p)
    }

    #[test]
    fn partitions_leave_the_wait_as_their_leaders_answer() {
        let t0 = Instant::now();
        let mut w = NotReady::new(
            vec![
                ("a".into(), "B.a".into(), 3),
                ("b".into(), "B.b".into(), 1),
                ("empty".into(), "B.empty".into(), 0),
            ],
            t0,
        );
        assert_eq!(w.keys().len(), 4);
        assert!(w.keys().contains(&key("a", 2)));
        assert_eq!(
            w.waiting(),
            vec![
                ("B.a".to_string(), vec![0, 1, 2]),
                ("B.b".to_string(), vec![0])
            ]
        );
        // Partitions 0 and 2 answer; 1 does not yet.
        let mut ready = w.answered("B.a", &[0, 1, 2], &[1]);
        ready.sort();
        assert_eq!(ready, vec![key("a", 0), key("a", 2)]);
        assert_eq!(
            w.waiting(),
            vec![("B.a".to_string(), vec![1]), ("B.b".to_string(), vec![0])]
        );
        // An answer for partitions not polled (or already served) changes nothing.
        assert!(w.answered("B.a", &[0], &[]).is_empty());
        assert!(w.answered("B.zzz", &[0], &[]).is_empty());
        assert_eq!(w.answered("B.a", &[1], &[]), vec![key("a", 1)]);
        assert!(!w.is_empty());
        assert_eq!(w.answered("B.b", &[0], &[]), vec![key("b", 0)]);
        assert!(w.is_empty());
        assert!(w.waiting().is_empty());
        assert!(w.overdue(t0 + Duration::from_secs(3600)).is_none());
    }

    #[test]
    fn a_wait_past_its_bound_is_reported_and_a_topic_dropped_is_not_waited_for() {
        let t0 = Instant::now();
        let mut w = NotReady::new(vec![("a".into(), "B.a".into(), 1000)], t0);
        // 30 s + 10 ms per partition.
        assert!(w.overdue(t0 + Duration::from_secs(40)).is_none());
        let late = w.overdue(t0 + Duration::from_secs(41)).expect("overdue");
        assert!(late.contains("1000 partition(s)"), "{late}");
        assert!(late.contains("B.a/0"), "{late}");
        w.retain_topics(|t| t != "a");
        assert!(w.is_empty());
        assert!(w.overdue(t0 + Duration::from_secs(41)).is_none());
    }

    #[test]
    fn nothing_created_means_nothing_to_wait_for() {
        let w = NotReady::new(Vec::new(), Instant::now());
        assert!(w.is_empty());
        assert!(w.waiting().is_empty());
        assert!(w
            .overdue(Instant::now() + Duration::from_secs(3600))
            .is_none());
    }
}
