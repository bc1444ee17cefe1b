//! Configuration: MM2 dedicated-mode `mm2.properties` and Strimzi `KafkaMirrorMaker2`
//! YAML, validated into one model ([`Config`]).
//!
//! Sources:
//! - `mm2.properties` (KIP-382 dedicated mode; `MirrorMakerConfig.java`,
//!   `MirrorSourceConfig.java`, `MirrorCheckpointConfig.java`, `MirrorConnectorConfig.java`):
//!   `clusters`, `<alias>.<client setting>`, flows `A->B.enabled` and `A->B.<setting>`
//!   overriding top-level settings, Kafka config-provider references (`${file:..}`,
//!   `${env:..}`, see [`providers`]).
//! - Strimzi `KafkaMirrorMaker2` (`kafka.strimzi.io/v1beta2`, also the `v1` layout with
//!   `spec.target` and `spec.mirrors[].source`), translated to the same settings and
//!   validated by the same code. Secrets named in the resource are read through a
//!   [`SecretSource`]: environment variable `STRAIT_SECRET_<SECRET>_<KEY>` first, else the
//!   file `$STRAIT_SECRETS_DIR/<secret>/<key>` (default `/etc/strait/secrets`), the layout
//!   of a mounted Kubernetes secret. A single trailing newline is stripped from passwords
//!   and user names read from files.
//!
//! Resolution order for a flow `A->B` setting: `A->B.<setting>` > top-level `<setting>` >
//! MM2's default. Cluster client settings: `A.<setting>` > top-level client setting
//! (`security.protocol`, `ssl.*`, `sasl.*`), as `MirrorMakerConfig.clusterProps` does.
//! Client overrides `producer.*`, `consumer.*`, `admin.*` may be given at top level, per
//! cluster (`A.consumer.*`) and per flow (`A->B.consumer.*`), most specific winning.
//!
//! Differences from MM2, on purpose:
//! - The source consumer's isolation level defaults to `read_committed` (MM2 inherits the
//!   consumer default `read_uncommitted`); set `consumer.isolation.level` to change it.
//! - Flows run only when enabled (`A->B.enabled=true`, or a top-level `enabled=true`);
//!   pairs that are not enabled but keep `emit.heartbeats.enabled` (MM2's default) are
//!   listed in [`Config::heartbeat_only`], as MM2 runs a heartbeat connector for them.
//! - Custom Java classes (policies, filters, forwarding admin) cannot be loaded: only the
//!   default filters and the Default/Identity policies are accepted; others are errors.
//! - Kafka Connect worker settings (converters, config/status storage, REST listeners)
//!   have no meaning and produce warnings.
//!
//! Strait's own settings (top level or per flow):
//! - `strait.inflight.bytes` (default 33554432 = 32 MiB): byte budget for fetched but
//!   not yet acknowledged data;
//! - `strait.coalesce.bytes` (default 1048576 = 1 MiB, 0 = off): consecutive small uncompressed
//!   source batches of a partition are merged into batches up to this size (and the remote
//!   topic's `max.message.bytes`), see [`crate::flow::plan::coalesce`];
//! - `strait.offset-map.max-runs` (default 4096): bound on offset-map runs per partition
//!   (see [`crate::offsets::OffsetMap`]).
//!
//! Scale-out (top level only, see [`GroupSettings`] and [`crate::scale`]):
//! `strait.group.enabled` (default false), `strait.group.id`, `strait.group.cluster`,
//! `strait.group.session.timeout.ms`, `strait.group.heartbeat.interval.ms`,
//! `strait.group.rebalance.timeout.ms`.
//!
//! Unknown keys are not errors: each becomes a [`ConfigWarning`] for the binary to log.

mod build;
pub mod client;
/// Exposed for the fuzz targets only (`fuzz/fuzz_targets/mm2_properties.rs`).
#[doc(hidden)]
pub mod properties;
pub mod providers;
mod strimzi;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use client::{
    ClientSettings, JaasConfig, RawSettings, SaslMechanism, SaslSettings, Secret, SecurityProtocol,
    TlsSettings,
};
pub use providers::{SecretSource, SystemSecrets};

use crate::filter::{ConfigPropertyFilter, GroupFilter, TopicFilter};
use crate::policy::ReplicationPolicy;

/// Default `strait.inflight.bytes`.
pub const DEFAULT_INFLIGHT_BYTES: u64 = 32 * 1024 * 1024;

/// Default `strait.coalesce.bytes`.
pub const DEFAULT_COALESCE_BYTES: u64 = 1024 * 1024;

/// A configuration problem that stops Strait from starting.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// File path.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The text is not valid properties or YAML.
    #[error("{origin}: {message}")]
    Syntax {
        /// `file:line` or file and YAML path.
        origin: String,
        /// What is wrong.
        message: String,
    },
    /// A setting has an invalid value.
    #[error("{origin}: `{key}`: {message}")]
    Invalid {
        /// Where the setting is.
        origin: String,
        /// The key as written (e.g. `A->B.offset.lag.max`).
        key: String,
        /// What is wrong.
        message: String,
    },
    /// A required setting is missing.
    #[error("{origin}: missing `{key}`: {message}")]
    Missing {
        /// The file, and what needed the setting.
        origin: String,
        /// The missing key (e.g. `B.bootstrap.servers`).
        key: String,
        /// Why it is needed.
        message: String,
    },
}

/// A setting Strait accepted but does not use, or used with a caveat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigWarning {
    /// Where the setting is.
    pub origin: String,
    /// The key as written.
    pub key: String,
    /// What to know.
    pub message: String,
}

impl fmt::Display for ConfigWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: `{}`: {}", self.origin, self.key, self.message)
    }
}

/// One Kafka cluster.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// Alias, as in `clusters`.
    pub alias: String,
    /// `bootstrap.servers` (empty if not configured; flows require it).
    pub bootstrap_servers: Vec<String>,
    /// Connection and security settings.
    pub client: ClientSettings,
    /// `producer.*` overrides (prefix stripped).
    pub producer: RawSettings,
    /// `consumer.*` overrides (prefix stripped).
    pub consumer: RawSettings,
    /// `admin.*` overrides (prefix stripped).
    pub admin: RawSettings,
}

/// Where offset syncs are written (`offset-syncs.topic.location`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum OffsetSyncsLocation {
    /// `mm2-offset-syncs.<target>.internal` on the source cluster (MM2's default).
    #[default]
    Source,
    /// `mm2-offset-syncs.<source>.internal` on the target cluster.
    Target,
}

/// `isolation.level` of the source consumer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum IsolationLevel {
    /// Only committed transactional data (Strait's default).
    #[default]
    ReadCommitted,
    /// Everything, including aborted and open transactions.
    ReadUncommitted,
}

/// One replication flow `source->target` with every setting resolved.
#[derive(Debug, Clone)]
pub struct FlowConfig {
    /// Source cluster alias.
    pub source: String,
    /// Target cluster alias.
    pub target: String,
    /// `topics` / `topics.exclude`.
    pub topics: TopicFilter,
    /// `groups` / `groups.exclude`.
    pub groups: GroupFilter,
    /// `config.properties.exclude` / `use.defaults.from`.
    pub config_properties: ConfigPropertyFilter,
    /// Replication policy (with `source.cluster.alias` set to `source`).
    pub policy: ReplicationPolicy,
    /// `emit.heartbeats.enabled`.
    pub emit_heartbeats: bool,
    /// `emit.heartbeats.interval.seconds`.
    pub emit_heartbeats_interval: Duration,
    /// `emit.checkpoints.enabled`.
    pub emit_checkpoints: bool,
    /// `emit.checkpoints.interval.seconds`.
    pub emit_checkpoints_interval: Duration,
    /// `emit.offset-syncs.enabled`.
    pub emit_offset_syncs: bool,
    /// `sync.group.offsets.enabled`.
    pub sync_group_offsets: bool,
    /// `sync.group.offsets.interval.seconds`.
    pub sync_group_offsets_interval: Duration,
    /// `sync.topic.configs.enabled`.
    pub sync_topic_configs: bool,
    /// `sync.topic.configs.interval.seconds`.
    pub sync_topic_configs_interval: Duration,
    /// `sync.topic.acls.enabled`.
    pub sync_topic_acls: bool,
    /// `sync.topic.acls.interval.seconds`.
    pub sync_topic_acls_interval: Duration,
    /// `refresh.topics.enabled`.
    pub refresh_topics: bool,
    /// `refresh.topics.interval.seconds`.
    pub refresh_topics_interval: Duration,
    /// `refresh.groups.enabled`.
    pub refresh_groups: bool,
    /// `refresh.groups.interval.seconds`.
    pub refresh_groups_interval: Duration,
    /// `heartbeats.replication.enabled`: replicate heartbeats topics regardless of `topics`.
    pub replicate_heartbeats: bool,
    /// `offset.lag.max`.
    pub offset_lag_max: i64,
    /// `replication.factor` for remote topics (-1 = broker default).
    pub replication_factor: i16,
    /// `heartbeats.topic.replication.factor`.
    pub heartbeats_topic_replication_factor: i16,
    /// `checkpoints.topic.replication.factor`.
    pub checkpoints_topic_replication_factor: i16,
    /// `offset-syncs.topic.replication.factor`.
    pub offset_syncs_topic_replication_factor: i16,
    /// `offset.storage.replication.factor` (source-progress topic).
    pub offset_storage_replication_factor: i16,
    /// `offset.storage.topic` (default `mm2-offsets.<source>.internal`).
    pub offset_storage_topic: String,
    /// Partitions of the progress topic when Strait creates it (`offset.storage.partitions`).
    pub offset_storage_partitions: i32,
    /// `offset-syncs.topic.location`.
    pub offset_syncs_location: OffsetSyncsLocation,
    /// Source consumer isolation level.
    pub isolation_level: IsolationLevel,
    /// `exactly.once.source.support=enabled`.
    pub exactly_once: bool,
    /// `strait.inflight.bytes`.
    pub inflight_bytes: u64,
    /// `strait.coalesce.bytes`: largest batch that consecutive small uncompressed source
    /// batches are merged into (0: forward every batch as it is).
    pub coalesce_bytes: usize,
    /// `strait.fetch.sessions`: incremental fetch sessions (KIP-227) with the source brokers.
    pub fetch_sessions: bool,
    /// `strait.offset-map.max-runs`.
    pub offset_map_max_runs: usize,
    /// `strait.commit.interval.ms` (default 5000): how often progress, offset-map runs and
    /// offset syncs are made durable; in exactly-once mode, how often the transaction commits
    /// (what read_committed readers wait for at most).
    pub commit_interval: Duration,
    /// Connector name keying MM2 source progress (`strait.progress.connector`):
    /// `MirrorSourceConnector` in MM2's dedicated mode, `<source>-><target>.MirrorSourceConnector`
    /// under Strimzi.
    pub progress_connector: String,
    /// `tasks.max` (a parallelism hint).
    pub tasks_max: u32,
    /// `consumer.poll.timeout.ms`.
    pub consumer_poll_timeout: Duration,
    /// `admin.timeout.ms`.
    pub admin_timeout: Duration,
    /// Flow-level `producer.*` overrides (prefix stripped).
    pub producer: RawSettings,
    /// Flow-level `consumer.*` overrides (prefix stripped).
    pub consumer: RawSettings,
    /// Flow-level `admin.*` overrides (prefix stripped).
    pub admin: RawSettings,
    /// Every `A->B.<setting>` given for this flow, as written (prefix stripped).
    pub overrides: RawSettings,
}

impl FlowConfig {
    /// `source->target`, as logs, metrics and the scale-out group name a flow.
    pub fn name(&self) -> String {
        format!("{}->{}", self.source, self.target)
    }

    /// Exactly-once mode: the stem of this flow's transactional ids, `<prefix>.<source>-<target>`
    /// (`prefix`: the scale-out group id, or `strait` for a single process).
    pub fn transactional_id_stem(&self, prefix: &str) -> String {
        format!("{prefix}.{}-{}", self.source, self.target)
    }

    /// The transactional id of slot `slot` (a scale-out member's; 0 for a single process).
    pub fn transactional_id(stem: &str, slot: u32) -> String {
        format!("{stem}.{slot}")
    }

    /// The offset-syncs topic name and the cluster alias holding it.
    pub fn offset_syncs_topic(&self) -> (String, &str) {
        match self.offset_syncs_location {
            OffsetSyncsLocation::Source => {
                (self.policy.offset_syncs_topic(&self.target), &self.source)
            }
            OffsetSyncsLocation::Target => {
                (self.policy.offset_syncs_topic(&self.source), &self.target)
            }
        }
    }

    /// The checkpoints topic on the target.
    pub fn checkpoints_topic(&self) -> String {
        self.policy.checkpoints_topic(&self.source)
    }
}

/// A pair that only emits heartbeats (MM2 runs a heartbeat connector for every pair with
/// `emit.heartbeats.enabled`, replicating or not).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeartbeatFlow {
    /// Source alias written in the heartbeat.
    pub source: String,
    /// Cluster the heartbeats are written to.
    pub target: String,
    /// `emit.heartbeats.interval.seconds`.
    pub interval: Duration,
    /// `heartbeats.topic.replication.factor`.
    pub replication_factor: i16,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Clusters by alias.
    pub clusters: BTreeMap<String, ClusterConfig>,
    /// Enabled replication flows.
    pub flows: Vec<FlowConfig>,
    /// Heartbeat-only pairs.
    pub heartbeat_only: Vec<HeartbeatFlow>,
    /// Unknown or ignored settings.
    pub warnings: Vec<ConfigWarning>,
    /// `strait.metrics.listen`: where `/metrics`, `/healthz` and `/readyz` are served (off
    /// when absent).
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Scale-out (`strait.group.enabled`): processes with this configuration share the work
    /// through a group; `None`: this process replicates everything.
    pub group: Option<GroupSettings>,
}

/// How `strait run` processes share the work (top-level `strait.group.*` settings).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupSettings {
    /// `strait.group.id` (default `strait.<source>-<target>...` over the enabled flows).
    pub id: String,
    /// `strait.group.cluster`: the alias whose group coordinator is used (default: the first
    /// flow target, by name).
    pub cluster: String,
    /// `strait.group.session.timeout.ms` (default 10 000): a member silent this long is
    /// dropped and its partitions handed over.
    pub session_timeout: Duration,
    /// `strait.group.heartbeat.interval.ms` (default a tenth of the session timeout, at most a
    /// third: each confirmed heartbeat leases appends for 0.6 of the session).
    pub heartbeat_interval: Duration,
    /// `strait.group.rebalance.timeout.ms` (default 60 000): how long a rebalance waits for
    /// members to rejoin (a member releasing partitions rejoins once they are committed).
    pub rebalance_timeout: Duration,
}

/// Input format of a configuration file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigFormat {
    /// MM2 `mm2.properties`.
    Properties,
    /// Strimzi `KafkaMirrorMaker2` YAML.
    StrimziYaml,
}

impl ConfigFormat {
    /// Picks the format from the extension (`.yaml`/`.yml` vs `.properties`/`.conf`),
    /// else from the content (a YAML `kind:` or `apiVersion:` line).
    pub fn detect(path: &Path, text: &str) -> Self {
        match path.extension().and_then(|e| e.to_str()) {
            Some("yaml" | "yml") => return Self::StrimziYaml,
            Some("properties" | "conf") => return Self::Properties,
            _ => {}
        }
        let yamlish = text
            .lines()
            .map(str::trim_start)
            .any(|l| l.starts_with("kind:") || l.starts_with("apiVersion:") || l == "---");
        if yamlish {
            Self::StrimziYaml
        } else {
            Self::Properties
        }
    }
}

impl Config {
    /// Parses and validates `mm2.properties` text; `origin` names it in messages.
    pub fn from_properties_str(
        text: &str,
        origin: &str,
        secrets: &dyn SecretSource,
    ) -> Result<Self, ConfigError> {
        let lines = properties::parse(text).map_err(|e| ConfigError::Syntax {
            origin: format!("{origin}:{}", e.line),
            message: e.message,
        })?;
        let entries = lines
            .into_iter()
            .map(|l| build::Entry {
                key: l.key,
                value: l.value,
                origin: format!("{origin}:{}", l.line),
                resolve: true,
            })
            .collect();
        build::build(entries, origin, secrets, build::Mode::Properties)
    }

    /// Parses and validates a Strimzi `KafkaMirrorMaker2` resource.
    pub fn from_strimzi_yaml_str(
        text: &str,
        origin: &str,
        secrets: &dyn SecretSource,
    ) -> Result<Self, ConfigError> {
        let (entries, warnings) = strimzi::to_entries(text, origin, secrets)?;
        let mut config = build::build(entries, origin, secrets, build::Mode::Strimzi)?;
        let mut all = warnings;
        all.append(&mut config.warnings);
        config.warnings = all;
        Ok(config)
    }

    /// Reads a file, detects its format, and validates it with the real environment.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        Self::load_with(path, &SystemSecrets)
    }

    /// [`Config::load`] with an injected secret source.
    pub fn load_with(path: &Path, secrets: &dyn SecretSource) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_owned(),
            source,
        })?;
        let origin = path.display().to_string();
        match ConfigFormat::detect(path, &text) {
            ConfigFormat::Properties => Self::from_properties_str(&text, &origin, secrets),
            ConfigFormat::StrimziYaml => Self::from_strimzi_yaml_str(&text, &origin, secrets),
        }
    }

    /// The flow `source->target`, if enabled.
    pub fn flow(&self, source: &str, target: &str) -> Option<&FlowConfig> {
        self.flows
            .iter()
            .find(|f| f.source == source && f.target == target)
    }
}

#[cfg(test)]
mod tests;
