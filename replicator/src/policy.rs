//! Replication policies: how remote topics are named, how a topic's origin is recovered
//! from its name, MM2's internal topic names and cycle detection.
//!
//! Mirrors `connect/mirror-client/.../ReplicationPolicy.java`,
//! `DefaultReplicationPolicy.java` and `IdentityReplicationPolicy.java`, and
//! `MirrorSourceConnector.isCycle`. Pure functions of names; no I/O.
//!
//! Notable Java details reproduced here:
//! - `topicSource` splits on the separator like `Pattern.split`, which drops *trailing*
//!   empty parts: `"a."` has no source, `".a"` has source `""`, `"a..b"` has source `"a"`.
//! - Internal topic names use the separator only when
//!   `replication.policy.internal.topic.separator.enabled` is true (the default);
//!   otherwise `.`. The heartbeats topic is always `heartbeats`.
//! - The identity policy leaves names alone except heartbeats topics (names ending in
//!   `heartbeats`), which it prefixes like the default policy; `topicSource` of any other
//!   topic is the configured source alias (MM2 sets `source.cluster.alias` per flow).

/// Name of MM2's heartbeats topic (`ReplicationPolicy.heartbeatsTopic()`).
pub const HEARTBEATS_TOPIC: &str = "heartbeats";

/// Default separator (`DefaultReplicationPolicy.SEPARATOR_DEFAULT`).
pub const DEFAULT_SEPARATOR: &str = ".";

/// Which naming scheme a policy uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PolicyKind {
    /// `org.apache.kafka.connect.mirror.DefaultReplicationPolicy`: `<source><sep><topic>`.
    Default,
    /// `org.apache.kafka.connect.mirror.IdentityReplicationPolicy`: names unchanged.
    Identity,
}

impl PolicyKind {
    /// Parses a `replication.policy.class` value: the full Java class name or the simple name.
    pub fn from_class_name(name: &str) -> Option<Self> {
        match name.trim() {
            "org.apache.kafka.connect.mirror.DefaultReplicationPolicy"
            | "DefaultReplicationPolicy" => Some(Self::Default),
            "org.apache.kafka.connect.mirror.IdentityReplicationPolicy"
            | "IdentityReplicationPolicy" => Some(Self::Identity),
            _ => None,
        }
    }

    /// The Java class name.
    pub fn class_name(self) -> &'static str {
        match self {
            Self::Default => "org.apache.kafka.connect.mirror.DefaultReplicationPolicy",
            Self::Identity => "org.apache.kafka.connect.mirror.IdentityReplicationPolicy",
        }
    }
}

/// A configured replication policy.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ReplicationPolicy {
    kind: PolicyKind,
    separator: String,
    internal_topic_separator_enabled: bool,
    source_cluster_alias: Option<String>,
}

impl Default for ReplicationPolicy {
    fn default() -> Self {
        Self::default_policy()
    }
}

impl ReplicationPolicy {
    /// The default policy with separator `.`.
    pub fn default_policy() -> Self {
        Self {
            kind: PolicyKind::Default,
            separator: DEFAULT_SEPARATOR.to_owned(),
            internal_topic_separator_enabled: true,
            source_cluster_alias: None,
        }
    }

    /// The identity policy; `source_cluster_alias` is what `topic_source` reports for
    /// non-heartbeat topics (MM2's `source.cluster.alias`).
    pub fn identity(source_cluster_alias: Option<String>) -> Self {
        Self {
            kind: PolicyKind::Identity,
            source_cluster_alias,
            ..Self::default_policy()
        }
    }

    /// A policy of `kind` with a custom separator. Returns `None` for an empty separator,
    /// which Java would turn into a regex matching between every character.
    pub fn new(
        kind: PolicyKind,
        separator: &str,
        internal_topic_separator_enabled: bool,
        source_cluster_alias: Option<String>,
    ) -> Option<Self> {
        if separator.is_empty() {
            return None;
        }
        Some(Self {
            kind,
            separator: separator.to_owned(),
            internal_topic_separator_enabled,
            source_cluster_alias,
        })
    }

    /// The naming scheme.
    pub fn kind(&self) -> PolicyKind {
        self.kind
    }

    /// The separator between alias and topic.
    pub fn separator(&self) -> &str {
        &self.separator
    }

    /// Whether internal topic names use the custom separator.
    pub fn internal_topic_separator_enabled(&self) -> bool {
        self.internal_topic_separator_enabled
    }

    /// The alias the identity policy reports as every topic's source.
    pub fn source_cluster_alias(&self) -> Option<&str> {
        self.source_cluster_alias.as_deref()
    }

    /// Returns the same policy with `source.cluster.alias` set (done per flow).
    pub fn with_source_cluster_alias(mut self, alias: Option<String>) -> Self {
        self.source_cluster_alias = alias;
        self
    }

    fn looks_like_heartbeat(topic: &str) -> bool {
        topic.ends_with(HEARTBEATS_TOPIC)
    }

    fn default_topic_source<'a>(&self, topic: &'a str) -> Option<&'a str> {
        let sep = self.separator.as_str();
        let idx = topic.find(sep)?;
        let rest = &topic[idx + sep.len()..];
        // Java's Pattern.split drops trailing empty strings; the topic is remote only if
        // something non-empty follows the first separator.
        if rest.split(sep).any(|part| !part.is_empty()) {
            Some(&topic[..idx])
        } else {
            None
        }
    }

    fn default_upstream_topic<'a>(&self, topic: &'a str) -> Option<&'a str> {
        let source = self.default_topic_source(topic)?;
        Some(&topic[source.len() + self.separator.len()..])
    }

    /// The remote name of `topic` replicated from `source_alias` (`formatRemoteTopic`).
    pub fn format_remote_topic(&self, source_alias: &str, topic: &str) -> String {
        match self.kind {
            PolicyKind::Identity if !Self::looks_like_heartbeat(topic) => topic.to_owned(),
            _ => format!("{source_alias}{}{topic}", self.separator),
        }
    }

    /// The source alias of a remote topic, or `None` if it is not remote (`topicSource`).
    pub fn topic_source<'a>(&'a self, topic: &'a str) -> Option<&'a str> {
        match self.kind {
            PolicyKind::Default => self.default_topic_source(topic),
            PolicyKind::Identity => {
                if Self::looks_like_heartbeat(topic) {
                    self.default_topic_source(topic)
                } else {
                    self.source_cluster_alias.as_deref()
                }
            }
        }
    }

    /// The name of the topic one hop upstream, or `None` if not remote (`upstreamTopic`).
    pub fn upstream_topic<'a>(&self, topic: &'a str) -> Option<&'a str> {
        match self.kind {
            PolicyKind::Default => self.default_upstream_topic(topic),
            PolicyKind::Identity => {
                if Self::looks_like_heartbeat(topic) {
                    self.default_upstream_topic(topic)
                } else {
                    Some(topic)
                }
            }
        }
    }

    /// The original topic name after any number of hops (`originalTopic`).
    pub fn original_topic<'a>(&self, topic: &'a str) -> &'a str {
        let mut current = topic;
        // Each hop strictly shortens the name, so this terminates; the identity policy's
        // `upstream == topic` case stops it like the Java does.
        while let Some(up) = self.upstream_topic(current) {
            if up == current {
                break;
            }
            current = up;
        }
        current
    }

    fn internal_separator(&self) -> &str {
        if self.internal_topic_separator_enabled {
            &self.separator
        } else {
            DEFAULT_SEPARATOR
        }
    }

    fn internal_suffix(&self) -> String {
        format!("{}internal", self.internal_separator())
    }

    fn checkpoints_topic_suffix(&self) -> String {
        format!(
            "{}checkpoints{}",
            self.internal_separator(),
            self.internal_suffix()
        )
    }

    /// `heartbeats`.
    pub fn heartbeats_topic(&self) -> &'static str {
        HEARTBEATS_TOPIC
    }

    /// `mm2-offset-syncs<sep><alias><sep>internal` (`offsetSyncsTopic`).
    pub fn offset_syncs_topic(&self, cluster_alias: &str) -> String {
        format!(
            "mm2-offset-syncs{}{cluster_alias}{}",
            self.internal_separator(),
            self.internal_suffix()
        )
    }

    /// `<alias><sep>checkpoints<sep>internal` (`checkpointsTopic`).
    pub fn checkpoints_topic(&self, source_alias: &str) -> String {
        format!("{source_alias}{}", self.checkpoints_topic_suffix())
    }

    /// `mm2-offsets.<source>.internal`: Connect's offset storage topic in dedicated mode
    /// (`MirrorMakerConfig.workerConfig`; it never takes the custom separator).
    pub fn offsets_topic(&self, source_alias: &str) -> String {
        format!("mm2-offsets.{source_alias}.internal")
    }

    /// `heartbeats` or any remote copy of it (`isHeartbeatsTopic`).
    pub fn is_heartbeats_topic(&self, topic: &str) -> bool {
        self.original_topic(topic) == HEARTBEATS_TOPIC
    }

    /// A checkpoints topic (`isCheckpointsTopic`).
    pub fn is_checkpoints_topic(&self, topic: &str) -> bool {
        topic.ends_with(&self.checkpoints_topic_suffix())
    }

    /// An MM2 internal topic (`isMM2InternalTopic`).
    pub fn is_mm2_internal_topic(&self, topic: &str) -> bool {
        topic.ends_with(&self.internal_suffix())
    }

    /// A topic that is never replicated (`isInternalTopic`): MM2 internal topics, names
    /// starting `__` or `.`, and names ending `.internal` or `-internal`.
    pub fn is_internal_topic(&self, topic: &str) -> bool {
        self.is_mm2_internal_topic(topic)
            || topic.starts_with("__")
            || topic.starts_with('.')
            || topic.ends_with(".internal")
            || topic.ends_with("-internal")
    }

    /// Whether replicating `topic` into `target_alias` would close a cycle: some hop of its
    /// name already came from the target (`MirrorSourceConnector.isCycle`). The identity
    /// policy cannot detect cycles (its upstream topic is the topic itself).
    pub fn is_cycle(&self, topic: &str, target_alias: &str) -> bool {
        let mut current = topic;
        loop {
            let Some(source) = self.topic_source(current) else {
                return false;
            };
            if source == target_alias {
                return true;
            }
            match self.upstream_topic(current) {
                Some(up) if up != current => current = up,
                _ => return false,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn default_policy_names() {
        let p = ReplicationPolicy::default_policy();
        assert_eq!(p.format_remote_topic("us-west", "topic1"), "us-west.topic1");
        assert_eq!(p.topic_source("us-west.topic1"), Some("us-west"));
        assert_eq!(p.topic_source("topic1"), None);
        assert_eq!(p.upstream_topic("us-west.topic1"), Some("topic1"));
        assert_eq!(p.upstream_topic("a.b.topic1"), Some("b.topic1"));
        assert_eq!(p.original_topic("a.b.topic1"), "topic1");
        assert_eq!(p.original_topic("topic1"), "topic1");
        assert_eq!(p.offset_syncs_topic("B"), "mm2-offset-syncs.B.internal");
        assert_eq!(p.checkpoints_topic("A"), "A.checkpoints.internal");
        assert_eq!(p.heartbeats_topic(), "heartbeats");
        assert_eq!(p.offsets_topic("A"), "mm2-offsets.A.internal");
    }

    #[test]
    fn java_split_edge_cases() {
        let p = ReplicationPolicy::default_policy();
        assert_eq!(p.topic_source("a."), None);
        assert_eq!(p.topic_source("a.."), None);
        assert_eq!(p.topic_source("."), None);
        assert_eq!(p.topic_source(""), None);
        assert_eq!(p.topic_source(".a"), Some(""));
        assert_eq!(p.upstream_topic(".a"), Some("a"));
        assert_eq!(p.topic_source("a..b"), Some("a"));
        assert_eq!(p.upstream_topic("a..b"), Some(".b"));
        assert_eq!(p.topic_source("a.b."), Some("a"));
    }

    #[test]
    fn custom_separator_and_internal_names() {
        let p = ReplicationPolicy::new(PolicyKind::Default, "_", true, None).unwrap();
        assert_eq!(p.format_remote_topic("A", "t"), "A_t");
        assert_eq!(p.topic_source("A_t_x"), Some("A"));
        assert_eq!(p.offset_syncs_topic("B"), "mm2-offset-syncs_B_internal");
        assert_eq!(p.checkpoints_topic("A"), "A_checkpoints_internal");
        assert!(p.is_checkpoints_topic("A_checkpoints_internal"));
        assert!(p.is_mm2_internal_topic("mm2-offset-syncs_B_internal"));
        assert!(p.is_internal_topic("mm2-offset-syncs_B_internal"));
        let q = ReplicationPolicy::new(PolicyKind::Default, "_", false, None).unwrap();
        assert_eq!(q.offset_syncs_topic("B"), "mm2-offset-syncs.B.internal");
        assert_eq!(q.checkpoints_topic("A"), "A.checkpoints.internal");
        assert!(ReplicationPolicy::new(PolicyKind::Default, "", true, None).is_none());
        let multi = ReplicationPolicy::new(PolicyKind::Default, "::", true, None).unwrap();
        assert_eq!(multi.topic_source("A::b::c"), Some("A"));
        assert_eq!(multi.upstream_topic("A::b::c"), Some("b::c"));
    }

    #[test]
    fn internal_and_heartbeat_topics() {
        let p = ReplicationPolicy::default_policy();
        for t in [
            "__consumer_offsets",
            ".hidden",
            "connect-offsets-internal",
            "x.internal",
            "A.checkpoints.internal",
        ] {
            assert!(p.is_internal_topic(t), "{t}");
        }
        assert!(!p.is_internal_topic("orders"));
        assert!(p.is_heartbeats_topic("heartbeats"));
        assert!(p.is_heartbeats_topic("A.heartbeats"));
        assert!(p.is_heartbeats_topic("B.A.heartbeats"));
        assert!(!p.is_heartbeats_topic("myheartbeats"));
        assert!(p.is_checkpoints_topic("A.checkpoints.internal"));
        assert!(!p.is_checkpoints_topic("A.checkpoints"));
    }

    #[test]
    fn identity_policy() {
        let p = ReplicationPolicy::identity(Some("A".into()));
        assert_eq!(p.format_remote_topic("A", "orders"), "orders");
        assert_eq!(p.format_remote_topic("A", "heartbeats"), "A.heartbeats");
        assert_eq!(p.topic_source("orders"), Some("A"));
        assert_eq!(p.topic_source("B.heartbeats"), Some("B"));
        assert_eq!(p.topic_source("heartbeats"), None);
        assert_eq!(p.upstream_topic("orders"), Some("orders"));
        assert_eq!(p.upstream_topic("B.heartbeats"), Some("heartbeats"));
        assert_eq!(p.original_topic("orders"), "orders");
        assert_eq!(p.original_topic("C.B.heartbeats"), "heartbeats");
        assert!(p.is_heartbeats_topic("B.heartbeats"));
        let unconfigured = ReplicationPolicy::identity(None);
        assert_eq!(unconfigured.topic_source("orders"), None);
    }

    #[test]
    fn cycles() {
        let p = ReplicationPolicy::default_policy();
        // Flow A->B: topics that came from B must not go back to B.
        assert!(p.is_cycle("B.orders", "B"));
        assert!(p.is_cycle("C.B.orders", "B"));
        assert!(!p.is_cycle("C.orders", "B"));
        assert!(!p.is_cycle("orders", "B"));
        // Identity can't see cycles unless the configured source is the target.
        let id = ReplicationPolicy::identity(Some("A".into()));
        assert!(!id.is_cycle("orders", "B"));
        assert!(id.is_cycle("B.heartbeats", "B"));
        assert!(!id.is_cycle("C.heartbeats", "B"));
    }

    #[test]
    fn class_names() {
        assert_eq!(
            PolicyKind::from_class_name(
                "org.apache.kafka.connect.mirror.IdentityReplicationPolicy"
            ),
            Some(PolicyKind::Identity)
        );
        assert_eq!(
            PolicyKind::from_class_name(" DefaultReplicationPolicy "),
            Some(PolicyKind::Default)
        );
        assert_eq!(PolicyKind::from_class_name("com.acme.Custom"), None);
    }

    proptest! {
        #[test]
        fn remote_name_round_trips(source in "[a-zA-Z0-9-]{1,10}", topic in "[a-zA-Z0-9._-]{1,20}") {
            let p = ReplicationPolicy::default_policy();
            let remote = p.format_remote_topic(&source, &topic);
            // Only names with a non-separator character after the prefix are remote.
            if topic.split('.').any(|s| !s.is_empty()) {
                prop_assert_eq!(p.topic_source(&remote), Some(source.as_str()));
                prop_assert_eq!(p.upstream_topic(&remote), Some(topic.as_str()));
                prop_assert!(p.is_cycle(&remote, &source));
            } else {
                prop_assert_eq!(p.topic_source(&remote), None);
            }
        }
    }
}
