//! Turns flat `key = value` entries (from properties or translated YAML) into [`Config`].

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use super::client::{
    ClientSettings, JaasConfig, RawSettings, SaslMechanism, SaslSettings, Secret, SecurityProtocol,
    TlsSettings,
};
use super::providers::{ProviderKind, Resolver, SecretSource};
use super::{
    ClusterConfig, Config, ConfigError, ConfigWarning, FlowConfig, GroupSettings, HeartbeatFlow,
    IsolationLevel, OffsetSyncsLocation, DEFAULT_COALESCE_BYTES, DEFAULT_INFLIGHT_BYTES,
};
use crate::filter::{
    parse_list, ConfigPropertyFilter, DefaultsFrom, GroupFilter, PatternList, TopicFilter,
    DEFAULT_CONFIG_PROPERTIES_EXCLUDE, DEFAULT_GROUPS, DEFAULT_GROUPS_EXCLUDE, DEFAULT_TOPICS,
    DEFAULT_TOPICS_EXCLUDE,
};
use crate::offsets::DEFAULT_MAX_RUNS;
use crate::policy::{PolicyKind, ReplicationPolicy};

/// One setting with where it came from.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub(crate) key: String,
    pub(crate) value: String,
    pub(crate) origin: String,
    /// Whether `${...}` references are resolved (false for secret values read already).
    pub(crate) resolve: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Properties,
    Strimzi,
}

/// Flow-level settings Strait understands (top level or `A->B.`).
const FLOW_KEYS: &[&str] = &[
    "enabled",
    "topics",
    "topics.exclude",
    "topics.blacklist",
    "groups",
    "groups.exclude",
    "groups.blacklist",
    "config.properties.exclude",
    "config.properties.blacklist",
    "use.defaults.from",
    "topic.filter.class",
    "group.filter.class",
    "config.property.filter.class",
    "replication.policy.class",
    "replication.policy.separator",
    "replication.policy.internal.topic.separator.enabled",
    "replication.factor",
    "heartbeats.topic.replication.factor",
    "checkpoints.topic.replication.factor",
    "offset-syncs.topic.replication.factor",
    "offset.storage.replication.factor",
    "offset.storage.topic",
    "offset.storage.partitions",
    "offset-syncs.topic.location",
    "emit.offset-syncs.enabled",
    "refresh.topics.enabled",
    "refresh.topics.interval.seconds",
    "refresh.groups.enabled",
    "refresh.groups.interval.seconds",
    "sync.topic.configs.enabled",
    "sync.topic.configs.interval.seconds",
    "sync.topic.acls.enabled",
    "sync.topic.acls.interval.seconds",
    "emit.heartbeats.enabled",
    "emit.heartbeats.interval.seconds",
    "emit.checkpoints.enabled",
    "emit.checkpoints.interval.seconds",
    "sync.group.offsets.enabled",
    "sync.group.offsets.interval.seconds",
    "heartbeats.replication.enabled",
    "offset.lag.max",
    "tasks.max",
    "consumer.poll.timeout.ms",
    "admin.timeout.ms",
    "exactly.once.source.support",
    "strait.inflight.bytes",
    "strait.coalesce.bytes",
    "strait.fetch.sessions",
    "strait.commit.interval.ms",
    "strait.offset-map.max-runs",
    "strait.progress.connector",
];

/// Settings that belong to Kafka Connect's machinery and mean nothing to Strait.
const IGNORED_PREFIXES: &[&str] = &[
    "key.converter",
    "value.converter",
    "header.converter",
    "config.storage.",
    "status.storage.",
    "offset.flush.",
    "rest.",
    "listeners",
    "admin.listeners",
    "dedicated.mode.",
    "plugin.path",
    "plugin.discovery",
    "task.shutdown.",
    "worker.",
    "metric.reporters",
    "metrics.",
    "group.id",
    "name",
    "connector.class",
    "source.cluster.alias",
    "target.cluster.alias",
    "forwarding.admin.class",
    "producer.override.",
    "consumer.override.",
    "admin.override.",
    "errors.",
    "scheduled.rebalance.",
    "connect.protocol",
    "offset-syncs.topic.config.",
];

fn is_ignored(key: &str) -> bool {
    IGNORED_PREFIXES
        .iter()
        .any(|p| key == *p || key.starts_with(p))
}

fn is_client_key(key: &str) -> bool {
    matches!(
        key,
        "bootstrap.servers" | "security.protocol" | "client.id" | "request.timeout.ms"
    ) || key.starts_with("ssl.")
        || key.starts_with("sasl.")
}

fn is_client_override(key: &str) -> bool {
    key.starts_with("producer.") || key.starts_with("consumer.") || key.starts_with("admin.")
}

fn invalid(e: &Entry, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        origin: e.origin.clone(),
        key: e.key.clone(),
        message: message.into(),
    }
}

fn parse_bool(e: &Entry) -> Result<bool, ConfigError> {
    match e.value.trim().to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(invalid(
            e,
            format!("expected true or false, got `{}`", e.value),
        )),
    }
}

fn parse_long(e: &Entry) -> Result<i64, ConfigError> {
    e.value
        .trim()
        .parse::<i64>()
        .map_err(|_| invalid(e, format!("expected an integer, got `{}`", e.value)))
}

struct Builder {
    file: String,
    warnings: Vec<ConfigWarning>,
}

impl Builder {
    fn warn(&mut self, e: &Entry, message: impl Into<String>) {
        self.warnings.push(ConfigWarning {
            origin: e.origin.clone(),
            key: e.key.clone(),
            message: message.into(),
        });
    }
}

/// Layered settings: setting name → entry (most specific layer wins).
struct Settings<'e> {
    map: BTreeMap<&'e str, &'e Entry>,
}

impl<'e> Settings<'e> {
    fn get(&self, name: &str) -> Option<&'e Entry> {
        self.map.get(name).copied()
    }

    fn bool(&self, name: &str, default: bool) -> Result<bool, ConfigError> {
        self.get(name).map_or(Ok(default), parse_bool)
    }

    fn long(&self, name: &str, default: i64) -> Result<i64, ConfigError> {
        self.get(name).map_or(Ok(default), parse_long)
    }

    fn long_in(&self, name: &str, default: i64, min: i64, max: i64) -> Result<i64, ConfigError> {
        let v = self.long(name, default)?;
        if v < min || v > max {
            let e = self
                .get(name)
                .expect("out-of-range value came from an entry");
            return Err(invalid(
                e,
                format!("must be between {min} and {max}, got {v}"),
            ));
        }
        Ok(v)
    }

    fn string(&self, name: &str, default: &str) -> String {
        self.get(name)
            .map_or_else(|| default.to_owned(), |e| e.value.clone())
    }

    /// A replication factor: -1 (broker default) or 1..=32767.
    fn replication_factor(&self, name: &str, default: i16) -> Result<i16, ConfigError> {
        let v = self.long(name, i64::from(default))?;
        if v == -1 || (1..=i64::from(i16::MAX)).contains(&v) {
            Ok(v as i16)
        } else {
            let e = self.get(name).expect("invalid value came from an entry");
            Err(invalid(
                e,
                format!("replication factor must be -1 (broker default) or 1..32767, got {v}"),
            ))
        }
    }

    /// `<base>.enabled` and `<base>.interval.seconds`; a negative interval disables, as
    /// MM2's scheduler does.
    fn interval(
        &self,
        base: &str,
        enabled_default: bool,
        seconds_default: i64,
    ) -> Result<(bool, Duration), ConfigError> {
        let enabled = self.bool(&format!("{base}.enabled"), enabled_default)?;
        let key = format!("{base}.interval.seconds");
        let secs = self.long(&key, seconds_default)?;
        if secs == 0 {
            let e = self.get(&key).expect("zero came from an entry");
            return Err(invalid(
                e,
                "interval must be positive (or negative to disable)",
            ));
        }
        if secs < 0 {
            return Ok((false, Duration::from_secs(seconds_default.max(1) as u64)));
        }
        Ok((enabled, Duration::from_secs(secs as u64)))
    }

    fn millis(&self, name: &str, default: i64) -> Result<Duration, ConfigError> {
        let v = self.long_in(name, default, 0, i64::MAX)?;
        Ok(Duration::from_millis(v as u64))
    }
}

/// Splits `A->B.rest` into (source, target, setting) using the known aliases.
fn split_flow_key<'k>(
    key: &'k str,
    aliases: &[String],
) -> Option<(&'k str, Option<(&'k str, &'k str)>)> {
    let idx = key.find("->")?;
    let source = &key[..idx];
    let rest = &key[idx + 2..];
    let target = aliases
        .iter()
        .filter(|a| {
            rest.len() > a.len() && rest.starts_with(a.as_str()) && rest.as_bytes()[a.len()] == b'.'
        })
        .max_by_key(|a| a.len())
        .map(|a| (&rest[..a.len()], &rest[a.len() + 1..]));
    Some((source, target))
}

fn cluster_prefix<'k>(key: &'k str, aliases: &[String]) -> Option<(&'k str, &'k str)> {
    aliases
        .iter()
        .filter(|a| {
            key.len() > a.len() && key.starts_with(a.as_str()) && key.as_bytes()[a.len()] == b'.'
        })
        .max_by_key(|a| a.len())
        .map(|a| (&key[..a.len()], &key[a.len() + 1..]))
}

pub(crate) fn build(
    entries: Vec<Entry>,
    file: &str,
    src: &dyn SecretSource,
    mode: Mode,
) -> Result<Config, ConfigError> {
    let mut b = Builder {
        file: file.to_owned(),
        warnings: Vec::new(),
    };

    // Last occurrence wins, as in java.util.Properties.
    let mut by_key: BTreeMap<String, Entry> = BTreeMap::new();
    for e in entries {
        if let Some(prev) = by_key.get(&e.key) {
            let message = format!("set again (earlier value at {} is ignored)", prev.origin);
            b.warn(&e, message);
        }
        by_key.insert(e.key.clone(), e);
    }

    // Config providers.
    let mut declared: HashMap<String, Option<ProviderKind>> = HashMap::new();
    if let Some(e) = by_key.get("config.providers") {
        for name in parse_list(&e.value) {
            let class_key = format!("config.providers.{name}.class");
            let kind = by_key
                .get(&class_key)
                .and_then(|c| ProviderKind::from_class(&c.value));
            if kind.is_none() {
                b.warn(
                    e,
                    format!("config provider `{name}` has no supported `{class_key}`; references to it will fail"),
                );
            }
            declared.insert(name, kind);
        }
    }
    let mut resolver = Resolver::new(declared, src);
    for e in by_key.values_mut() {
        if e.resolve && !e.key.starts_with("config.providers") {
            e.value = resolver
                .resolve(&e.value)
                .map_err(|m| ConfigError::Invalid {
                    origin: e.origin.clone(),
                    key: e.key.clone(),
                    message: m,
                })?;
        }
    }

    // Clusters.
    let clusters_entry = by_key.get("clusters").ok_or_else(|| ConfigError::Missing {
        origin: b.file.clone(),
        key: "clusters".into(),
        message: "list the cluster aliases, e.g. `clusters = A, B`".into(),
    })?;
    let mut aliases: Vec<String> = Vec::new();
    for alias in parse_list(&clusters_entry.value) {
        if alias.is_empty() || alias.contains("->") {
            return Err(invalid(
                clusters_entry,
                format!("invalid cluster alias `{alias}`"),
            ));
        }
        if aliases.contains(&alias) {
            let e = clusters_entry.clone();
            b.warn(&e, format!("cluster `{alias}` listed twice"));
            continue;
        }
        aliases.push(alias);
    }
    if aliases.is_empty() {
        return Err(invalid(clusters_entry, "no cluster aliases"));
    }

    // Classify keys.
    let mut top: BTreeMap<&str, &Entry> = BTreeMap::new();
    let mut top_client: BTreeMap<&str, &Entry> = BTreeMap::new();
    let mut cluster_keys: BTreeMap<&str, BTreeMap<&str, &Entry>> = BTreeMap::new();
    let mut flow_keys: BTreeMap<(&str, &str), BTreeMap<&str, &Entry>> = BTreeMap::new();
    let mut deferred_warnings: Vec<(Entry, String)> = Vec::new();
    let mut metrics_listen = None;
    let mut group_keys: BTreeMap<&str, &Entry> = BTreeMap::new();
    for (key, e) in &by_key {
        let key = key.as_str();
        if key == "clusters" || key.starts_with("config.providers") {
            continue;
        }
        if let Some((source, target)) = split_flow_key(key, &aliases) {
            if !aliases.iter().any(|a| a == source) {
                return Err(invalid(
                    e,
                    format!(
                        "flow names unknown cluster `{source}` (clusters: {})",
                        aliases.join(", ")
                    ),
                ));
            }
            let Some((target, setting)) = target else {
                return Err(invalid(
                    e,
                    format!(
                        "flow target is not a known cluster (clusters: {})",
                        aliases.join(", ")
                    ),
                ));
            };
            if source == target {
                return Err(invalid(e, "a flow's source and target must differ"));
            }
            flow_keys
                .entry((source, target))
                .or_default()
                .insert(setting, e);
            continue;
        }
        if let Some((alias, setting)) = cluster_prefix(key, &aliases) {
            cluster_keys.entry(alias).or_default().insert(setting, e);
            continue;
        }
        if key == "strait.metrics.listen" {
            let addr = e.value.trim();
            metrics_listen = Some(addr.parse().map_err(|err| {
                invalid(
                    e,
                    format!("`{addr}` is not a listen address such as 127.0.0.1:9464 or [::]:9464 ({err})"),
                )
            })?);
            continue;
        }
        if GROUP_KEYS.contains(&key) {
            group_keys.insert(key, e);
            continue;
        }
        if FLOW_KEYS.contains(&key) || is_client_override(key) {
            top.insert(key, e);
        } else if is_client_key(key) {
            top_client.insert(key, e);
        } else if is_ignored(key) {
            deferred_warnings.push((
                (*e).clone(),
                "ignored: a Kafka Connect setting Strait does not use".into(),
            ));
        } else {
            deferred_warnings.push(((*e).clone(), "unknown setting; ignored".into()));
        }
    }
    for (e, m) in deferred_warnings {
        b.warn(&e, m);
    }

    // Top-level client overrides are defaults for every cluster.
    let top_overrides = |prefix: &str| -> BTreeMap<String, String> {
        top.iter()
            .filter_map(|(k, e)| {
                k.strip_prefix(prefix)
                    .map(|s| (s.to_owned(), e.value.clone()))
            })
            .collect()
    };

    let mut clusters = BTreeMap::new();
    let mut cluster_worker: HashMap<String, BTreeMap<&str, &Entry>> = HashMap::new();
    for alias in &aliases {
        let own = cluster_keys.remove(alias.as_str()).unwrap_or_default();
        let mut client: BTreeMap<&str, &Entry> = top_client.clone();
        let mut producer = top_overrides("producer.");
        let mut consumer = top_overrides("consumer.");
        let mut admin = top_overrides("admin.");
        let mut worker = BTreeMap::new();
        for (setting, e) in own {
            if is_client_key(setting) {
                client.insert(setting, e);
            } else if let Some(s) = setting.strip_prefix("producer.") {
                producer.insert(s.to_owned(), e.value.clone());
            } else if let Some(s) = setting.strip_prefix("consumer.") {
                consumer.insert(s.to_owned(), e.value.clone());
            } else if let Some(s) = setting.strip_prefix("admin.") {
                admin.insert(s.to_owned(), e.value.clone());
            } else if setting == "offset.storage.replication.factor"
                || setting == "offset.storage.topic"
                || setting == "offset.storage.partitions"
                || setting == "exactly.once.source.support"
            {
                worker.insert(setting, e);
            } else if is_ignored(setting) {
                b.warn(e, "ignored: a Kafka Connect setting Strait does not use");
            } else if FLOW_KEYS.contains(&setting) {
                b.warn(
                    e,
                    format!("`{setting}` is a flow setting; a cluster prefix does not apply it (use `<source>-><target>.{setting}` or the top level)"),
                );
            } else {
                b.warn(e, "unknown cluster setting; ignored");
            }
        }
        cluster_worker.insert(alias.clone(), worker);
        let cluster = build_cluster(alias, &client, &mut b)?;
        clusters.insert(
            alias.clone(),
            ClusterConfig {
                producer: RawSettings(producer),
                consumer: RawSettings(consumer),
                admin: RawSettings(admin),
                ..cluster
            },
        );
    }

    // Flows.
    let mut flows = Vec::new();
    let mut heartbeat_only = Vec::new();
    for source in &aliases {
        for target in &aliases {
            if source == target {
                continue;
            }
            let own = flow_keys
                .remove(&(source.as_str(), target.as_str()))
                .unwrap_or_default();
            let has_own = !own.is_empty();
            let mut layered: BTreeMap<&str, &Entry> = top.clone();
            for (k, e) in &own {
                layered.insert(k, e);
            }
            let settings = Settings { map: layered };
            let enabled = settings.bool("enabled", false)?;
            let heartbeats = settings.bool("emit.heartbeats.enabled", true)?;
            if !enabled && !heartbeats && !has_own {
                continue;
            }
            let flow = build_flow(
                source,
                target,
                &settings,
                &own,
                &clusters,
                cluster_worker
                    .get(target)
                    .expect("every alias has a worker map"),
                &mut b,
            )?;
            if enabled {
                for alias in [source, target] {
                    if clusters[alias].bootstrap_servers.is_empty() {
                        let why = settings.get("enabled").expect("enabled came from an entry");
                        return Err(ConfigError::Missing {
                            origin: b.file.clone(),
                            key: format!("{alias}.bootstrap.servers"),
                            message: format!(
                                "flow {source}->{target} is enabled ({} at {})",
                                why.key, why.origin
                            ),
                        });
                    }
                }
                flows.push(flow);
            } else if flow.emit_heartbeats && mode == Mode::Properties {
                if clusters[source].bootstrap_servers.is_empty()
                    || clusters[target].bootstrap_servers.is_empty()
                {
                    continue;
                }
                heartbeat_only.push(HeartbeatFlow {
                    source: source.clone(),
                    target: target.clone(),
                    interval: flow.emit_heartbeats_interval,
                    replication_factor: flow.heartbeats_topic_replication_factor,
                });
            }
        }
    }
    if flows.is_empty() {
        b.warnings.push(ConfigWarning {
            origin: b.file.clone(),
            key: "enabled".into(),
            message: "no replication flow is enabled (set `<source>-><target>.enabled = true`)"
                .into(),
        });
    }

    let group = build_group(&Settings { map: group_keys }, &flows, &aliases, &b.file)?;
    Ok(Config {
        clusters,
        flows,
        heartbeat_only,
        warnings: b.warnings,
        metrics_listen,
        group,
    })
}

/// Top-level settings of scale-out (`strait.group.*`).
const GROUP_KEYS: &[&str] = &[
    "strait.group.enabled",
    "strait.group.id",
    "strait.group.cluster",
    "strait.group.session.timeout.ms",
    "strait.group.heartbeat.interval.ms",
    "strait.group.rebalance.timeout.ms",
];

/// Scale-out settings, when `strait.group.enabled`.
fn build_group(
    s: &Settings<'_>,
    flows: &[FlowConfig],
    aliases: &[String],
    file: &str,
) -> Result<Option<GroupSettings>, ConfigError> {
    if !s.bool("strait.group.enabled", false)? {
        return Ok(None);
    }
    let id = match s.get("strait.group.id") {
        Some(e) if e.value.trim().is_empty() => return Err(invalid(e, "must not be empty")),
        Some(e) => e.value.trim().to_string(),
        None => default_group_id(flows),
    };
    let cluster = match s.get("strait.group.cluster") {
        Some(e) => {
            let alias = e.value.trim();
            if !aliases.iter().any(|a| a == alias) {
                return Err(invalid(
                    e,
                    format!(
                        "`{alias}` is not a cluster alias (clusters: {})",
                        aliases.join(", ")
                    ),
                ));
            }
            alias.to_string()
        }
        None => match flows.iter().map(|f| f.target.clone()).min() {
            Some(t) => t,
            None => {
                return Err(ConfigError::Missing {
                    origin: file.to_string(),
                    key: "strait.group.cluster".into(),
                    message:
                        "scale-out needs a cluster to coordinate on: enable a flow or name one"
                            .into(),
                })
            }
        },
    };
    let session = s.long_in("strait.group.session.timeout.ms", 10_000, 1_000, 3_600_000)?;
    let heartbeat = s.long_in(
        "strait.group.heartbeat.interval.ms",
        // A tenth of the session: a member that rejoins after releasing partitions waits
        // for the others to hear of the rebalance at their next heartbeat, so this bounds how
        // long handed-over partitions pause (at a fifth, ~2 s of the ~2.1 s measured).
        (session / 10).max(100),
        100,
        session,
    )?;
    // Appends are leased for 0.6 of the session from each confirmed heartbeat: one missed
    // heartbeat must not run the lease out.
    if heartbeat > session / 3 {
        let e = s.get("strait.group.heartbeat.interval.ms").expect("set");
        return Err(invalid(
            e,
            format!("must be at most a third of strait.group.session.timeout.ms ({session})"),
        ));
    }
    let rebalance = s.long_in(
        "strait.group.rebalance.timeout.ms",
        60_000,
        1_000,
        3_600_000,
    )?;
    Ok(Some(GroupSettings {
        id,
        cluster,
        session_timeout: Duration::from_millis(session as u64),
        heartbeat_interval: Duration::from_millis(heartbeat as u64),
        rebalance_timeout: Duration::from_millis(rebalance as u64),
    }))
}

/// `strait.<source>-<target>[.<source>-<target>...]`: the same for every process given the same
/// flows, and never one of MM2's or Connect's group ids (`connect-*`, `mm2-*`, the worker's
/// `group.id`).
fn default_group_id(flows: &[FlowConfig]) -> String {
    let mut names: Vec<String> = flows
        .iter()
        .map(|f| format!("{}-{}", f.source, f.target))
        .collect();
    names.sort();
    names.dedup();
    format!("strait.{}", names.join("."))
}

fn build_cluster(
    alias: &str,
    client: &BTreeMap<&str, &Entry>,
    b: &mut Builder,
) -> Result<ClusterConfig, ConfigError> {
    let bootstrap_servers = match client.get("bootstrap.servers") {
        Some(e) => {
            let servers: Vec<String> = parse_list(&e.value)
                .into_iter()
                .filter(|s| !s.is_empty())
                .collect();
            for s in &servers {
                let ok = s
                    .rsplit_once(':')
                    .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
                if !ok {
                    return Err(invalid(e, format!("`{s}` is not host:port")));
                }
            }
            if servers.is_empty() {
                return Err(invalid(e, "empty server list"));
            }
            servers
        }
        None => Vec::new(),
    };
    let get = |k: &str| client.get(k).copied();
    let security_protocol = match get("security.protocol") {
        Some(e) => SecurityProtocol::parse(&e.value)
            .ok_or_else(|| invalid(e, "expected PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL"))?,
        None => SecurityProtocol::Plaintext,
    };
    let sasl = if security_protocol.uses_sasl() {
        let mechanism =
            get("sasl.mechanism").map_or(SaslMechanism::Gssapi, |e| SaslMechanism::parse(&e.value));
        let jaas = match get("sasl.jaas.config") {
            Some(e) => Some(JaasConfig::parse(&e.value).map_err(|m| invalid(e, m))?),
            None => None,
        };
        let (mut username, mut password) = (None, None);
        if matches!(
            mechanism,
            SaslMechanism::Plain | SaslMechanism::ScramSha256 | SaslMechanism::ScramSha512
        ) {
            let Some(j) = &jaas else {
                return Err(ConfigError::Missing {
                    origin: b.file.clone(),
                    key: format!("{alias}.sasl.jaas.config"),
                    message: format!("SASL mechanism {mechanism:?} needs a username and password"),
                });
            };
            let e = get("sasl.jaas.config").expect("jaas parsed from an entry");
            username = Some(
                j.options
                    .get("username")
                    .cloned()
                    .ok_or_else(|| invalid(e, "no `username` option"))?,
            );
            password = Some(Secret::new(
                j.options
                    .get("password")
                    .cloned()
                    .ok_or_else(|| invalid(e, "no `password` option"))?,
            ));
        }
        Some(SaslSettings {
            mechanism,
            jaas,
            username,
            password,
        })
    } else {
        for k in ["sasl.mechanism", "sasl.jaas.config"] {
            if let Some(e) = get(k) {
                b.warn(
                    e,
                    format!("ignored: security.protocol is {security_protocol:?}"),
                );
            }
        }
        None
    };
    let string = |k: &str| get(k).map(|e| e.value.clone());
    let secret = |k: &str| get(k).map(|e| Secret::new(e.value.clone()));
    let list = |k: &str| get(k).map(|e| parse_list(&e.value)).unwrap_or_default();
    let tls = TlsSettings {
        truststore_type: string("ssl.truststore.type"),
        truststore_location: string("ssl.truststore.location"),
        truststore_password: secret("ssl.truststore.password"),
        truststore_certificates: string("ssl.truststore.certificates"),
        keystore_type: string("ssl.keystore.type"),
        keystore_location: string("ssl.keystore.location"),
        keystore_password: secret("ssl.keystore.password"),
        key_password: secret("ssl.key.password"),
        keystore_certificate_chain: string("ssl.keystore.certificate.chain"),
        keystore_key: secret("ssl.keystore.key"),
        endpoint_identification_algorithm: string("ssl.endpoint.identification.algorithm")
            .unwrap_or_else(|| "https".to_owned()),
        protocol: string("ssl.protocol"),
        enabled_protocols: list("ssl.enabled.protocols"),
        cipher_suites: list("ssl.cipher.suites"),
    };
    // Kafka's clients: how long to wait for a response before the request fails (and the
    // connection is closed); Strait then retries on a new connection.
    let request_timeout = match get("request.timeout.ms") {
        Some(e) => match e.value.trim().parse::<u64>() {
            Ok(ms) if (1..=i32::MAX as u64).contains(&ms) => Some(Duration::from_millis(ms)),
            _ => {
                return Err(invalid(
                    e,
                    "expected milliseconds, a whole number from 1 to 2147483647",
                ))
            }
        },
        None => None,
    };
    let raw = RawSettings(
        client
            .iter()
            .map(|(k, e)| ((*k).to_owned(), e.value.clone()))
            .collect(),
    );
    Ok(ClusterConfig {
        alias: alias.to_owned(),
        bootstrap_servers,
        client: ClientSettings {
            security_protocol,
            sasl,
            tls,
            client_id: string("client.id"),
            request_timeout,
            raw,
        },
        producer: RawSettings::default(),
        consumer: RawSettings::default(),
        admin: RawSettings::default(),
    })
}

fn check_default_class(
    settings: &Settings<'_>,
    key: &str,
    simple: &str,
) -> Result<(), ConfigError> {
    if let Some(e) = settings.get(key) {
        let v = e.value.trim();
        let full = format!("org.apache.kafka.connect.mirror.{simple}");
        if v != simple && v != full {
            return Err(invalid(
                e,
                format!("custom classes cannot be loaded; only {full} is supported"),
            ));
        }
    }
    Ok(())
}

/// Picks `new` or its deprecated alias (`ConfigUtils.translateDeprecatedConfigs`: the new
/// name wins when both are set).
fn with_alias<'e>(
    settings: &Settings<'e>,
    new: &str,
    old: &str,
    b: &mut Builder,
) -> Option<&'e Entry> {
    match (settings.get(new), settings.get(old)) {
        (Some(n), Some(o)) => {
            b.warn(o, format!("deprecated and overridden by `{}`", n.key));
            Some(n)
        }
        (Some(n), None) => Some(n),
        (None, Some(o)) => {
            b.warn(o, format!("deprecated; use `{new}`"));
            Some(o)
        }
        (None, None) => None,
    }
}

fn pattern_list(e: Option<&Entry>, default: &str) -> Result<PatternList, ConfigError> {
    match e {
        Some(e) => PatternList::parse(&e.value).map_err(|err| invalid(e, err.source.to_string())),
        None => Ok(PatternList::parse(default).expect("defaults compile")),
    }
}

fn build_flow(
    source: &str,
    target: &str,
    s: &Settings<'_>,
    own: &BTreeMap<&str, &Entry>,
    clusters: &BTreeMap<String, ClusterConfig>,
    target_worker: &BTreeMap<&str, &Entry>,
    b: &mut Builder,
) -> Result<FlowConfig, ConfigError> {
    for (k, e) in own {
        if !FLOW_KEYS.contains(k) && !is_client_override(k) {
            if is_ignored(k) {
                b.warn(e, "ignored: a Kafka Connect setting Strait does not use");
            } else {
                b.warn(e, "unknown flow setting; ignored");
            }
        }
    }
    check_default_class(s, "topic.filter.class", "DefaultTopicFilter")?;
    check_default_class(s, "group.filter.class", "DefaultGroupFilter")?;
    check_default_class(
        s,
        "config.property.filter.class",
        "DefaultConfigPropertyFilter",
    )?;

    let topics_exclude = with_alias(s, "topics.exclude", "topics.blacklist", b);
    let topics = TopicFilter::from_lists(
        pattern_list(s.get("topics"), DEFAULT_TOPICS)?,
        pattern_list(topics_exclude, DEFAULT_TOPICS_EXCLUDE)?,
    );
    let groups_exclude = with_alias(s, "groups.exclude", "groups.blacklist", b);
    let groups = GroupFilter::from_lists(
        pattern_list(s.get("groups"), DEFAULT_GROUPS)?,
        pattern_list(groups_exclude, DEFAULT_GROUPS_EXCLUDE)?,
    );
    let cfg_exclude = with_alias(
        s,
        "config.properties.exclude",
        "config.properties.blacklist",
        b,
    );
    let defaults_from = match s.get("use.defaults.from") {
        Some(e) => DefaultsFrom::parse(&e.value)
            .ok_or_else(|| invalid(e, "expected `source` or `target`"))?,
        None => DefaultsFrom::Target,
    };
    let config_properties = ConfigPropertyFilter::new(
        pattern_list(cfg_exclude, DEFAULT_CONFIG_PROPERTIES_EXCLUDE)?,
        defaults_from,
    );

    let kind = match s.get("replication.policy.class") {
        Some(e) => PolicyKind::from_class_name(&e.value).ok_or_else(|| {
            invalid(
                e,
                "unknown replication policy (supported: DefaultReplicationPolicy, IdentityReplicationPolicy)",
            )
        })?,
        None => PolicyKind::Default,
    };
    let separator = s.string("replication.policy.separator", ".");
    let internal_sep = s.bool("replication.policy.internal.topic.separator.enabled", true)?;
    let policy = ReplicationPolicy::new(kind, &separator, internal_sep, Some(source.to_owned()))
        .ok_or_else(|| {
            invalid(
                s.get("replication.policy.separator")
                    .expect("empty separator came from an entry"),
                "separator must not be empty",
            )
        })?;

    let (emit_heartbeats, emit_heartbeats_interval) = s.interval("emit.heartbeats", true, 1)?;
    let (emit_checkpoints, emit_checkpoints_interval) = s.interval("emit.checkpoints", true, 60)?;
    let (sync_group_offsets, sync_group_offsets_interval) =
        s.interval("sync.group.offsets", false, 60)?;
    let (sync_topic_configs, sync_topic_configs_interval) =
        s.interval("sync.topic.configs", true, 600)?;
    let (sync_topic_acls, sync_topic_acls_interval) = s.interval("sync.topic.acls", true, 600)?;
    let (refresh_topics, refresh_topics_interval) = s.interval("refresh.topics", true, 600)?;
    let (refresh_groups, refresh_groups_interval) = s.interval("refresh.groups", true, 600)?;

    let offset_syncs_location = match s.get("offset-syncs.topic.location") {
        Some(e) => match e.value.trim() {
            "source" => OffsetSyncsLocation::Source,
            "target" => OffsetSyncsLocation::Target,
            _ => return Err(invalid(e, "expected `source` or `target`")),
        },
        None => OffsetSyncsLocation::Source,
    };

    // Worker-level settings may also come from the target cluster's prefix.
    let worker = |name: &str| -> Option<&Entry> {
        own.get(name)
            .copied()
            .or_else(|| target_worker.get(name).copied())
            .or_else(|| s.get(name))
    };
    let worker_settings = Settings {
        map: [
            "offset.storage.replication.factor",
            "offset.storage.topic",
            "offset.storage.partitions",
        ]
        .into_iter()
        .filter_map(|k| worker(k).map(|e| (k, e)))
        .collect(),
    };
    let offset_storage_replication_factor =
        worker_settings.replication_factor("offset.storage.replication.factor", 3)?;
    let offset_storage_topic =
        worker_settings.string("offset.storage.topic", &policy.offsets_topic(source));
    // Used when Strait creates the topic (Connect's default, 25); progress records go to
    // partitions by key hash over the topic's actual partition count, as Connect writes them.
    let offset_storage_partitions =
        worker_settings.long_in("offset.storage.partitions", 25, 1, i64::from(i32::MAX))? as i32;

    let flow_override = |prefix: &str| -> BTreeMap<String, String> {
        own.iter()
            .filter_map(|(k, e)| {
                k.strip_prefix(prefix)
                    .map(|s| (s.to_owned(), e.value.clone()))
            })
            .collect()
    };
    let producer = flow_override("producer.");
    let consumer = flow_override("consumer.");
    let admin = flow_override("admin.");

    let isolation_level = {
        let flow_level = own.get("consumer.isolation.level").copied();
        let value = flow_level.map(|e| (e.value.clone(), Some(e))).or_else(|| {
            clusters[source]
                .consumer
                .get("isolation.level")
                .map(|v| (v.to_owned(), None))
        });
        match value {
            None => IsolationLevel::ReadCommitted,
            Some((v, e)) => match v.trim().to_ascii_lowercase().as_str() {
                "read_committed" => IsolationLevel::ReadCommitted,
                "read_uncommitted" => IsolationLevel::ReadUncommitted,
                _ => {
                    return Err(ConfigError::Invalid {
                        origin: e.map_or_else(|| b.file.clone(), |e| e.origin.clone()),
                        key: e.map_or_else(
                            || format!("{source}.consumer.isolation.level"),
                            |e| e.key.clone(),
                        ),
                        message: format!("expected read_committed or read_uncommitted, got `{v}`"),
                    })
                }
            },
        }
    };

    // A worker setting in MM2 (`<target>.exactly.once.source.support`), also read per flow.
    let exactly_once = match worker("exactly.once.source.support") {
        Some(e) => match e.value.trim().to_ascii_lowercase().as_str() {
            "enabled" => {
                if isolation_level == IsolationLevel::ReadUncommitted {
                    // What MM2's MirrorSourceConnector says when exactly-once is required.
                    b.warn(
                        e,
                        "exactly-once mode with a read_uncommitted source consumer: records of \
                         aborted and open source transactions are mirrored too",
                    );
                }
                true
            }
            "disabled" | "preparing" => false,
            _ => return Err(invalid(e, "expected enabled, preparing or disabled")),
        },
        None => false,
    };

    let replication_factor = s.replication_factor("replication.factor", 2)?;
    let offset_lag_max = s.long_in("offset.lag.max", 100, 0, i64::MAX)?;
    let tasks_max = s.long_in("tasks.max", 1, 1, i64::from(u32::MAX))? as u32;
    let inflight_bytes = s.long_in(
        "strait.inflight.bytes",
        DEFAULT_INFLIGHT_BYTES as i64,
        1,
        i64::MAX,
    )? as u64;
    let coalesce_bytes = s.long_in(
        "strait.coalesce.bytes",
        DEFAULT_COALESCE_BYTES as i64,
        0,
        64 * 1024 * 1024,
    )? as usize;
    let fetch_sessions = s.bool("strait.fetch.sessions", true)?;
    let commit_interval =
        Duration::from_millis(s.long_in("strait.commit.interval.ms", 5_000, 100, 600_000)? as u64);
    let offset_map_max_runs = s.long_in(
        "strait.offset-map.max-runs",
        DEFAULT_MAX_RUNS as i64,
        1,
        1 << 24,
    )? as usize;
    let progress_connector = s.string(
        "strait.progress.connector",
        crate::formats::MIRROR_SOURCE_CONNECTOR_NAME,
    );

    Ok(FlowConfig {
        source: source.to_owned(),
        target: target.to_owned(),
        topics,
        groups,
        config_properties,
        policy,
        emit_heartbeats,
        emit_heartbeats_interval,
        emit_checkpoints,
        emit_checkpoints_interval,
        emit_offset_syncs: s.bool("emit.offset-syncs.enabled", true)?,
        sync_group_offsets,
        sync_group_offsets_interval,
        sync_topic_configs,
        sync_topic_configs_interval,
        sync_topic_acls,
        sync_topic_acls_interval,
        refresh_topics,
        refresh_topics_interval,
        refresh_groups,
        refresh_groups_interval,
        replicate_heartbeats: s.bool("heartbeats.replication.enabled", true)?,
        offset_lag_max,
        replication_factor,
        heartbeats_topic_replication_factor: s
            .replication_factor("heartbeats.topic.replication.factor", 3)?,
        checkpoints_topic_replication_factor: s
            .replication_factor("checkpoints.topic.replication.factor", 3)?,
        offset_syncs_topic_replication_factor: s
            .replication_factor("offset-syncs.topic.replication.factor", 3)?,
        offset_storage_replication_factor,
        offset_storage_topic,
        offset_storage_partitions,
        offset_syncs_location,
        isolation_level,
        exactly_once,
        inflight_bytes,
        coalesce_bytes,
        fetch_sessions,
        offset_map_max_runs,
        commit_interval,
        progress_connector,
        tasks_max,
        consumer_poll_timeout: s.millis("consumer.poll.timeout.ms", 1000)?,
        admin_timeout: s.millis("admin.timeout.ms", 60_000)?,
        producer: RawSettings(producer),
        consumer: RawSettings(consumer),
        admin: RawSettings(admin),
        overrides: RawSettings(
            own.iter()
                .map(|(k, e)| ((*k).to_owned(), e.value.clone()))
                .collect(),
        ),
    })
}
