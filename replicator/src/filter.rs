//! Topic, consumer-group and topic-config-property filters, as MM2's
//! `DefaultTopicFilter`, `DefaultGroupFilter` and `DefaultConfigPropertyFilter`
//! (`connect/mirror/src/main/java/org/apache/kafka/connect/mirror/`).
//!
//! Each setting is a Kafka `LIST`: the trimmed value split on commas with surrounding
//! whitespace. Entries are regular expressions joined with `|` and matched against the
//! **whole** name (`Pattern.matcher(name).matches()`). An empty list matches nothing
//! (`MirrorUtils.compilePatternList` returns null). Excludes win over includes.
//!
//! Defaults (Kafka 3.x–4.0 releases):
//! - `topics` = `.*`; `topics.exclude` = `.*[\-\.]internal, .*\.replica, __.*`
//! - `groups` = `.*`; `groups.exclude` = `console-consumer-.*, connect-.*, __.*`
//! - `config.properties.exclude` = the throttling, timestamp, unclean-election and
//!   `min.insync.replicas` properties listed in [`DEFAULT_CONFIG_PROPERTIES_EXCLUDE`];
//!   `use.defaults.from` = `target` (KIP-894: properties whose source value is a default are
//!   not replicated, and config sync deletes their overrides on the remote topic, so the
//!   target cluster's defaults apply).
//!
//! Patterns are compiled with Rust's `regex` crate, which has no look-around or
//! back-references; such Java patterns are rejected when the configuration is loaded.

use regex::Regex;

/// Default `topics`.
pub const DEFAULT_TOPICS: &str = ".*";
/// Default `topics.exclude`.
pub const DEFAULT_TOPICS_EXCLUDE: &str = r".*[\-\.]internal, .*\.replica, __.*";
/// Default `groups`.
pub const DEFAULT_GROUPS: &str = ".*";
/// Default `groups.exclude`.
pub const DEFAULT_GROUPS_EXCLUDE: &str = "console-consumer-.*, connect-.*, __.*";
/// Default `config.properties.exclude`.
pub const DEFAULT_CONFIG_PROPERTIES_EXCLUDE: &str = r"follower\.replication\.throttled\.replicas, leader\.replication\.throttled\.replicas, message\.timestamp\.difference\.max\.ms, message\.timestamp\.type, unclean\.leader\.election\.enable, min\.insync\.replicas";

/// A pattern list failed to compile.
#[derive(Debug, Clone, thiserror::Error)]
#[error("invalid regular expression list `{list}`: {source}")]
#[non_exhaustive]
pub struct FilterError {
    /// The list as given.
    pub list: String,
    /// Why it failed.
    #[source]
    pub source: regex::Error,
}

/// Splits a Kafka `LIST` value: trim, then split on `\s*,\s*`; the empty string is the
/// empty list. (Java keeps interior empty entries, e.g. `a,,b`, which then match the
/// empty name only; they are kept here too.)
pub fn parse_list(value: &str) -> Vec<String> {
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return Vec::new();
    }
    trimmed.split(',').map(|s| s.trim().to_owned()).collect()
}

/// A compiled list of full-match regular expressions; the empty list matches nothing.
#[derive(Debug, Clone)]
pub struct PatternList {
    source: Vec<String>,
    regex: Option<Regex>,
}

impl PatternList {
    /// Compiles a list of patterns.
    pub fn new(patterns: Vec<String>) -> Result<Self, FilterError> {
        if patterns.is_empty() {
            return Ok(Self {
                source: patterns,
                regex: None,
            });
        }
        let joined = patterns.join("|");
        let regex = Regex::new(&format!("^(?:{joined})$")).map_err(|source| FilterError {
            list: patterns.join(", "),
            source,
        })?;
        Ok(Self {
            source: patterns,
            regex: Some(regex),
        })
    }

    /// Parses and compiles a Kafka `LIST` value.
    pub fn parse(value: &str) -> Result<Self, FilterError> {
        Self::new(parse_list(value))
    }

    /// Whether `name` matches one of the patterns in full.
    pub fn matches(&self, name: &str) -> bool {
        self.regex.as_ref().is_some_and(|r| r.is_match(name))
    }

    /// The patterns as given.
    pub fn patterns(&self) -> &[String] {
        &self.source
    }

    /// True for the empty list.
    pub fn is_empty(&self) -> bool {
        self.source.is_empty()
    }
}

/// Include/exclude filter (the shape of both `DefaultTopicFilter` and `DefaultGroupFilter`).
#[derive(Debug, Clone)]
pub struct IncludeExclude {
    include: PatternList,
    exclude: PatternList,
}

impl IncludeExclude {
    /// Builds a filter from compiled lists.
    pub fn new(include: PatternList, exclude: PatternList) -> Self {
        Self { include, exclude }
    }

    /// Included and not excluded.
    pub fn accepts(&self, name: &str) -> bool {
        self.include.matches(name) && !self.exclude.matches(name)
    }

    /// The include list.
    pub fn include(&self) -> &PatternList {
        &self.include
    }

    /// The exclude list.
    pub fn exclude(&self) -> &PatternList {
        &self.exclude
    }
}

/// `DefaultTopicFilter`: `topics` / `topics.exclude`.
#[derive(Debug, Clone)]
pub struct TopicFilter(IncludeExclude);

impl TopicFilter {
    /// From `topics` and `topics.exclude` values.
    pub fn parse(include: &str, exclude: &str) -> Result<Self, FilterError> {
        Ok(Self(IncludeExclude::new(
            PatternList::parse(include)?,
            PatternList::parse(exclude)?,
        )))
    }

    /// From compiled include and exclude lists.
    pub fn from_lists(include: PatternList, exclude: PatternList) -> Self {
        Self(IncludeExclude::new(include, exclude))
    }

    /// `shouldReplicateTopic`.
    pub fn should_replicate_topic(&self, topic: &str) -> bool {
        self.0.accepts(topic)
    }

    /// The underlying lists.
    pub fn lists(&self) -> &IncludeExclude {
        &self.0
    }
}

impl Default for TopicFilter {
    fn default() -> Self {
        Self::parse(DEFAULT_TOPICS, DEFAULT_TOPICS_EXCLUDE).expect("default topic filter compiles")
    }
}

/// `DefaultGroupFilter`: `groups` / `groups.exclude`.
#[derive(Debug, Clone)]
pub struct GroupFilter(IncludeExclude);

impl GroupFilter {
    /// From `groups` and `groups.exclude` values.
    pub fn parse(include: &str, exclude: &str) -> Result<Self, FilterError> {
        Ok(Self(IncludeExclude::new(
            PatternList::parse(include)?,
            PatternList::parse(exclude)?,
        )))
    }

    /// From compiled include and exclude lists.
    pub fn from_lists(include: PatternList, exclude: PatternList) -> Self {
        Self(IncludeExclude::new(include, exclude))
    }

    /// `shouldReplicateGroup`.
    pub fn should_replicate_group(&self, group: &str) -> bool {
        self.0.accepts(group)
    }

    /// The underlying lists.
    pub fn lists(&self) -> &IncludeExclude {
        &self.0
    }
}

impl Default for GroupFilter {
    fn default() -> Self {
        Self::parse(DEFAULT_GROUPS, DEFAULT_GROUPS_EXCLUDE).expect("default group filter compiles")
    }
}

/// Whose defaults apply to topic configs left at their default value
/// (`use.defaults.from`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum DefaultsFrom {
    /// Do not replicate properties whose source value is a default (MM2's default).
    #[default]
    Target,
    /// Replicate them too.
    Source,
}

impl DefaultsFrom {
    /// Parses `source` / `target` (case-sensitive, as Java's `equals("source")`; any other
    /// value is refused here rather than silently meaning `target`).
    pub fn parse(value: &str) -> Option<Self> {
        match value.trim() {
            "target" => Some(Self::Target),
            "source" => Some(Self::Source),
            _ => None,
        }
    }
}

/// `DefaultConfigPropertyFilter`: which topic config properties to copy to remote topics.
#[derive(Debug, Clone)]
pub struct ConfigPropertyFilter {
    exclude: PatternList,
    defaults_from: DefaultsFrom,
}

impl ConfigPropertyFilter {
    /// From `config.properties.exclude` and `use.defaults.from`.
    pub fn new(exclude: PatternList, defaults_from: DefaultsFrom) -> Self {
        Self {
            exclude,
            defaults_from,
        }
    }

    /// From a `config.properties.exclude` value, defaults taken from the target.
    pub fn parse(exclude: &str) -> Result<Self, FilterError> {
        Ok(Self::new(
            PatternList::parse(exclude)?,
            DefaultsFrom::Target,
        ))
    }

    /// `shouldReplicateConfigProperty`.
    pub fn should_replicate_config_property(&self, property: &str) -> bool {
        !self.exclude.matches(property)
    }

    /// `shouldReplicateSourceDefault`: whether a property whose source value is a default
    /// should still be copied.
    pub fn should_replicate_source_default(&self, _property: &str) -> bool {
        self.defaults_from == DefaultsFrom::Source
    }

    /// Whether to copy a source topic config entry: not excluded, and (if it is the source
    /// cluster's default) only when defaults come from the source.
    pub fn should_replicate(&self, property: &str, is_source_default: bool) -> bool {
        self.should_replicate_config_property(property)
            && (!is_source_default || self.should_replicate_source_default(property))
    }

    /// The exclude list.
    pub fn exclude(&self) -> &PatternList {
        &self.exclude
    }

    /// `use.defaults.from`.
    pub fn defaults_from(&self) -> DefaultsFrom {
        self.defaults_from
    }
}

impl Default for ConfigPropertyFilter {
    fn default() -> Self {
        Self::parse(DEFAULT_CONFIG_PROPERTIES_EXCLUDE).expect("default config filter compiles")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_parsing() {
        assert_eq!(parse_list(" a , b,c "), vec!["a", "b", "c"]);
        assert!(parse_list("   ").is_empty());
        assert_eq!(parse_list("a,,b"), vec!["a", "", "b"]);
    }

    #[test]
    fn default_topic_filter() {
        let f = TopicFilter::default();
        assert!(f.should_replicate_topic("orders"));
        assert!(f.should_replicate_topic("A.orders"));
        assert!(!f.should_replicate_topic("__consumer_offsets"));
        assert!(!f.should_replicate_topic("mm2-offsets.A.internal"));
        assert!(!f.should_replicate_topic("connect-status-internal"));
        assert!(!f.should_replicate_topic("orders.replica"));
        assert!(f.should_replicate_topic("internalstuff"));
    }

    #[test]
    fn full_match_and_excludes_win() {
        let f = TopicFilter::parse("orders, pay.*", "payments-secret").unwrap();
        assert!(f.should_replicate_topic("orders"));
        assert!(!f.should_replicate_topic("orders2"));
        assert!(!f.should_replicate_topic("xorders"));
        assert!(f.should_replicate_topic("payments"));
        assert!(!f.should_replicate_topic("payments-secret"));
        // Empty include list matches nothing; empty exclude excludes nothing.
        let none = TopicFilter::parse("", "").unwrap();
        assert!(!none.should_replicate_topic("orders"));
        let all = TopicFilter::parse(".*", "").unwrap();
        assert!(all.should_replicate_topic("__consumer_offsets"));
        // Alternation inside one entry is scoped by the full-match anchors.
        let alt = TopicFilter::parse("a|b", "").unwrap();
        assert!(alt.should_replicate_topic("a") && alt.should_replicate_topic("b"));
        assert!(!alt.should_replicate_topic("ab"));
    }

    #[test]
    fn default_group_filter() {
        let f = GroupFilter::default();
        assert!(f.should_replicate_group("analytics"));
        assert!(!f.should_replicate_group("console-consumer-123"));
        assert!(!f.should_replicate_group("connect-mirror"));
        assert!(!f.should_replicate_group("__share"));
    }

    #[test]
    fn config_property_filter() {
        let f = ConfigPropertyFilter::default();
        assert!(f.should_replicate_config_property("retention.ms"));
        assert!(!f.should_replicate_config_property("min.insync.replicas"));
        assert!(!f.should_replicate_config_property("message.timestamp.type"));
        assert!(!f.should_replicate_config_property("leader.replication.throttled.replicas"));
        assert!(f.should_replicate("retention.ms", false));
        assert!(!f.should_replicate("retention.ms", true));
        let src = ConfigPropertyFilter::new(PatternList::parse("").unwrap(), DefaultsFrom::Source);
        assert!(src.should_replicate("retention.ms", true));
        assert!(src.should_replicate("min.insync.replicas", false));
        assert_eq!(DefaultsFrom::parse("source"), Some(DefaultsFrom::Source));
        assert_eq!(DefaultsFrom::parse("Source"), None);
    }

    #[test]
    fn bad_regex_is_an_error() {
        let err = TopicFilter::parse("(unclosed", "").unwrap_err();
        assert!(err.to_string().contains("(unclosed"));
        // Look-around is Java-only.
        assert!(PatternList::parse("(?!x).*").is_err());
    }
}
