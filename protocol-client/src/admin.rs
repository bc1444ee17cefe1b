//! The admin API: topics, partitions, topic configs, ACLs, consumer groups and their committed
//! offsets, and the cluster itself.
//!
//! A thin layer over [`Cluster`], after Kafka's `KafkaAdminClient` (Java) and KIP-4 (admin
//! requests): every call runs inside [`Cluster::retry`], so the one classifier
//! ([`Error::is_retriable`], [`Error::needs_metadata_refresh`]) decides what is tried again.
//! Routing follows the Java client:
//! - CreateTopics, DeleteTopics and CreatePartitions go to the controller reported by Metadata
//!   (any broker when none is reported; KRaft brokers forward to the active controller). After
//!   `NOT_CONTROLLER` the metadata is reloaded before the next attempt.
//! - Group requests (DescribeGroups, OffsetFetch, OffsetCommit) go to the group's coordinator
//!   (FindCoordinator, cached by [`Cluster::coordinator`]); a coordinator that moved or went away
//!   is forgotten before the next attempt.
//! - ListGroups is asked of every broker (each only knows the groups it coordinates).
//! - Everything else goes to any broker.
//!
//! Calls about many resources (topics, groups, ACLs) return one outcome per resource: a retriable
//! per-resource error is retried for that resource only; any other one is that resource's final
//! answer. `UNKNOWN_TOPIC_OR_PARTITION` is final in admin answers (the broker is telling us the
//! topic does not exist, as the Java admin client treats it), although the classifier calls it
//! retriable for produce and fetch, where it can mean stale metadata.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::create_acls_request::{AclCreation, CreateAclsRequest};
use kafka_protocol::messages::create_partitions_request::{
    CreatePartitionsRequest, CreatePartitionsTopic,
};
use kafka_protocol::messages::create_topics_request::{
    CreatableTopic, CreatableTopicConfig, CreateTopicsRequest,
};
use kafka_protocol::messages::delete_topics_request::{DeleteTopicState, DeleteTopicsRequest};
use kafka_protocol::messages::describe_acls_request::DescribeAclsRequest;
use kafka_protocol::messages::describe_cluster_request::DescribeClusterRequest;
use kafka_protocol::messages::describe_configs_request::{
    DescribeConfigsRequest, DescribeConfigsResource,
};
use kafka_protocol::messages::describe_groups_request::DescribeGroupsRequest;
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig, IncrementalAlterConfigsRequest,
};
use kafka_protocol::messages::list_groups_request::ListGroupsRequest;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequest, OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequest, OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::{ApiKey, GroupId, TopicName};
use kafka_protocol::protocol::StrBytes;
use tracing::debug;

use crate::cluster::{BrokerInfo, Cluster, ConnKind, CoordinatorType, TopicInfo};
use crate::conn::Connection;
use crate::error::{Error, ResponseError, Result};

/// A topic to create.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewTopic {
    /// Name.
    pub name: String,
    /// Partition count (-1 = broker default).
    pub partitions: i32,
    /// Replication factor (-1 = broker default).
    pub replication_factor: i16,
    /// Topic configs to set at creation.
    pub configs: Vec<(String, String)>,
}

/// Where a config value comes from (DescribeConfigs v1+ `config_source`, Java `ConfigSource`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ConfigSource {
    /// Unknown (0), or a code this client does not know.
    Unknown,
    /// Dynamic topic config (1).
    DynamicTopic,
    /// Dynamic per-broker config (2).
    DynamicBroker,
    /// Dynamic cluster-wide broker default (3).
    DynamicDefaultBroker,
    /// `server.properties` (4).
    StaticBroker,
    /// Built-in default (5).
    Default,
    /// Dynamic broker logger config (6).
    DynamicBrokerLogger,
    /// Client metrics subscription config (7, KIP-714).
    DynamicClientMetrics,
    /// Dynamic group config (8, KIP-848).
    DynamicGroup,
}

impl ConfigSource {
    /// From the wire code.
    pub fn from_code(code: i8) -> ConfigSource {
        match code {
            1 => ConfigSource::DynamicTopic,
            2 => ConfigSource::DynamicBroker,
            3 => ConfigSource::DynamicDefaultBroker,
            4 => ConfigSource::StaticBroker,
            5 => ConfigSource::Default,
            6 => ConfigSource::DynamicBrokerLogger,
            7 => ConfigSource::DynamicClientMetrics,
            8 => ConfigSource::DynamicGroup,
            _ => ConfigSource::Unknown,
        }
    }
}

/// One config entry of a resource.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigEntry {
    /// Config name.
    pub name: String,
    /// Value (`None` for sensitive entries and unset values).
    pub value: Option<String>,
    /// Whether it cannot be altered.
    pub read_only: bool,
    /// Whether the value is the built-in default.
    pub is_default: bool,
    /// Whether the value is hidden (passwords, keys).
    pub is_sensitive: bool,
    /// Where the value comes from.
    pub source: ConfigSource,
}

/// An IncrementalAlterConfigs operation (KIP-339).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AlterOp {
    /// Set the value.
    Set = 0,
    /// Revert to the default.
    Delete = 1,
    /// Add to a list value.
    Append = 2,
    /// Remove from a list value.
    Subtract = 3,
}

/// ACL resource type codes (Java `ResourceType`).
pub mod resource_type {
    /// Matches any type (filters only).
    pub const ANY: i8 = 1;
    /// A topic.
    pub const TOPIC: i8 = 2;
    /// A consumer group.
    pub const GROUP: i8 = 3;
    /// The cluster.
    pub const CLUSTER: i8 = 4;
    /// A transactional id.
    pub const TRANSACTIONAL_ID: i8 = 5;
    /// A delegation token.
    pub const DELEGATION_TOKEN: i8 = 6;
    /// A user principal.
    pub const USER: i8 = 7;
}

/// ACL resource pattern type codes (Java `PatternType`, KIP-290).
pub mod pattern_type {
    /// Matches any pattern type (filters only).
    pub const ANY: i8 = 1;
    /// Matches every pattern that would match the name (filters only).
    pub const MATCH: i8 = 2;
    /// The name exactly.
    pub const LITERAL: i8 = 3;
    /// Names starting with the resource name.
    pub const PREFIXED: i8 = 4;
}

/// ACL operation codes (Java `AclOperation`).
pub mod acl_operation {
    /// Matches any operation (filters only).
    pub const ANY: i8 = 1;
    /// Every operation.
    pub const ALL: i8 = 2;
    /// Read.
    pub const READ: i8 = 3;
    /// Write.
    pub const WRITE: i8 = 4;
    /// Create.
    pub const CREATE: i8 = 5;
    /// Delete.
    pub const DELETE: i8 = 6;
    /// Alter.
    pub const ALTER: i8 = 7;
    /// Describe.
    pub const DESCRIBE: i8 = 8;
    /// Cluster action.
    pub const CLUSTER_ACTION: i8 = 9;
    /// Describe configs.
    pub const DESCRIBE_CONFIGS: i8 = 10;
    /// Alter configs.
    pub const ALTER_CONFIGS: i8 = 11;
    /// Idempotent write.
    pub const IDEMPOTENT_WRITE: i8 = 12;
}

/// ACL permission type codes (Java `AclPermissionType`).
pub mod permission_type {
    /// Matches any permission (filters only).
    pub const ANY: i8 = 1;
    /// Deny.
    pub const DENY: i8 = 2;
    /// Allow.
    pub const ALLOW: i8 = 3;
}

/// One ACL: who may (or may not) do what to which resource, from where.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct AclBinding {
    /// See [`resource_type`].
    pub resource_type: i8,
    /// Resource name.
    pub resource_name: String,
    /// See [`pattern_type`].
    pub pattern_type: i8,
    /// Principal, e.g. `User:alice`.
    pub principal: String,
    /// Host, `*` for any.
    pub host: String,
    /// See [`acl_operation`].
    pub operation: i8,
    /// See [`permission_type`].
    pub permission_type: i8,
}

impl AclBinding {
    fn describe(&self) -> String {
        format!(
            "ACL resource {}:{} pattern {} {} from {} operation {} permission {}",
            self.resource_type,
            self.resource_name,
            self.pattern_type,
            self.principal,
            self.host,
            self.operation,
            self.permission_type
        )
    }
}

/// Which ACLs DescribeAcls returns; `None` and the `ANY` codes match everything.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct AclFilter {
    /// See [`resource_type`] (`ANY` allowed).
    pub resource_type: i8,
    /// Resource name, `None` for any.
    pub resource_name: Option<String>,
    /// See [`pattern_type`] (`ANY` and `MATCH` allowed).
    pub pattern_type: i8,
    /// Principal, `None` for any.
    pub principal: Option<String>,
    /// Host, `None` for any.
    pub host: Option<String>,
    /// See [`acl_operation`] (`ANY` allowed).
    pub operation: i8,
    /// See [`permission_type`] (`ANY` allowed).
    pub permission_type: i8,
}

impl AclFilter {
    /// Matches every ACL.
    pub fn any() -> AclFilter {
        AclFilter {
            resource_type: resource_type::ANY,
            resource_name: None,
            pattern_type: pattern_type::ANY,
            principal: None,
            host: None,
            operation: acl_operation::ANY,
            permission_type: permission_type::ANY,
        }
    }

    /// Matches the literal ACLs of every topic (what MirrorMaker 2 syncs).
    pub fn literal_topics() -> AclFilter {
        AclFilter {
            resource_type: resource_type::TOPIC,
            pattern_type: pattern_type::LITERAL,
            ..AclFilter::any()
        }
    }
}

/// A group as ListGroups reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupListing {
    /// Group id.
    pub group_id: String,
    /// Protocol type (`consumer`, `connect`, or empty for groups that only commit offsets).
    pub protocol_type: String,
    /// State (ListGroups v4+, KIP-518), e.g. `Stable` or `Empty`.
    pub state: Option<String>,
}

/// One member of a described group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberDescription {
    /// Member id.
    pub member_id: String,
    /// Client id.
    pub client_id: String,
    /// Client host.
    pub client_host: String,
    /// The member's assignment, in the group's protocol format.
    pub assignment: Bytes,
}

/// A group as DescribeGroups reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupDescription {
    /// Group id.
    pub group_id: String,
    /// State, e.g. `Stable`, `Empty`, `Dead`.
    pub state: String,
    /// Protocol type.
    pub protocol_type: String,
    /// Chosen protocol (e.g. the assignor name).
    pub protocol: String,
    /// Members.
    pub members: Vec<MemberDescription>,
    /// The group's non-retriable error (e.g. `GROUP_AUTHORIZATION_FAILED`, or
    /// `GROUP_ID_NOT_FOUND` from DescribeGroups v6 for a group that does not exist).
    pub error: Option<ResponseError>,
}

/// A committed offset of a group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommittedOffset {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Next offset to consume.
    pub offset: i64,
    /// Leader epoch of the record before `offset`, or -1.
    pub leader_epoch: i32,
    /// Metadata stored with the commit.
    pub metadata: Option<String>,
}

/// The cluster: id, controller and brokers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterDescription {
    /// Cluster id.
    pub cluster_id: Option<String>,
    /// Controller id (-1 when unknown).
    pub controller_id: i32,
    /// Brokers, sorted by id.
    pub brokers: Vec<BrokerInfo>,
}

/// DescribeConfigs / IncrementalAlterConfigs resource type of a topic.
const TOPIC_RESOURCE: i8 = 2;

/// Admin operations on one cluster.
#[derive(Debug, Clone)]
pub struct Admin {
    cluster: Arc<Cluster>,
    operation_timeout: Duration,
}

pub(crate) fn who(b: &BrokerInfo) -> String {
    format!("{}@{}", b.id, b.addr())
}

fn topic_name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

fn str_bytes(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

fn opt_string(s: Option<StrBytes>) -> Option<String> {
    s.map(|s| s.to_string())
}

/// A copy of `e` for the retry loop (errors are not `Clone`; broker errors keep their code).
fn duplicate(e: &Error) -> Error {
    match e {
        Error::Broker {
            api,
            broker,
            resource,
            error,
            message,
        } => Error::Broker {
            api: *api,
            broker: broker.clone(),
            resource: resource.clone(),
            error: *error,
            message: message.clone(),
        },
        other => Error::Metadata(other.to_string()),
    }
}

/// Whether a per-resource error in an admin answer is worth asking again for.
fn retry_resource(e: &Error) -> bool {
    e.is_retriable() && e.response_error() != Some(ResponseError::UnknownTopicOrPartition)
}

/// Runs `op` against `group`'s coordinator; after an error that says the coordinator may have
/// moved (or cannot be reached) the cached coordinator is forgotten so the next attempt looks
/// it up again.
pub(crate) async fn on_coordinator<T, F, Fut>(cluster: &Cluster, group: &str, op: F) -> Result<T>
where
    F: FnOnce(BrokerInfo, Arc<Connection>) -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let coordinator = cluster.coordinator(CoordinatorType::Group, group).await?;
    let conn = match cluster.connection(&coordinator, ConnKind::Control).await {
        Ok(c) => c,
        Err(e) => {
            cluster.invalidate_coordinator(CoordinatorType::Group, group);
            return Err(e);
        }
    };
    let out = op(coordinator, conn).await;
    if let Err(e) = &out {
        if e.needs_metadata_refresh() {
            debug!(group, error = %e, "forgetting group coordinator");
            cluster.invalidate_coordinator(CoordinatorType::Group, group);
        }
    }
    out
}

impl Admin {
    /// Admin operations over `cluster`.
    pub fn new(cluster: Arc<Cluster>) -> Admin {
        let request = cluster.config().conn.request_timeout;
        // The broker must answer before our request times out.
        let operation_timeout = request
            .saturating_sub(Duration::from_secs(5))
            .max(request / 2);
        Admin {
            cluster,
            operation_timeout,
        }
    }

    /// How long the broker may take to complete topic creation/deletion before answering
    /// `REQUEST_TIMED_OUT` (the requests' `timeout_ms`). Keep it below the connection's request
    /// timeout.
    pub fn with_operation_timeout(mut self, timeout: Duration) -> Admin {
        self.operation_timeout = timeout;
        self
    }

    /// The cluster.
    pub fn cluster(&self) -> &Arc<Cluster> {
        &self.cluster
    }

    fn timeout_ms(&self) -> i32 {
        self.operation_timeout.as_millis().min(i32::MAX as u128) as i32
    }

    /// A control connection to the controller (any broker when metadata names none).
    async fn controller(&self) -> Result<(String, Arc<Connection>)> {
        let md = self.cluster.metadata();
        if let Some(b) = md.brokers.get(&md.controller_id) {
            let conn = self.cluster.connection(b, ConnKind::Control).await?;
            return Ok((who(b), conn));
        }
        let conn = self.cluster.any_connection().await?;
        Ok((conn.broker().to_string(), conn))
    }

    /// Runs a request about many keyed resources until every key has a final outcome or the
    /// retry budget is spent. `send` gets the keys still pending and returns an outcome per key;
    /// keys with retriable outcomes (and keys the answer left out) are sent again.
    async fn per_key<T, F, Fut>(
        &self,
        what: &str,
        keys: &[String],
        mut send: F,
    ) -> Result<Vec<(String, Result<T>)>>
    where
        F: FnMut(Vec<String>) -> Fut,
        Fut: Future<Output = Result<Vec<(String, Result<T>)>>>,
    {
        let mut seen = HashSet::new();
        if let Some(dup) = keys.iter().find(|k| !seen.insert(k.as_str())) {
            return Err(Error::InvalidArgument(format!(
                "{what}: {dup} is listed twice"
            )));
        }
        let done: Mutex<HashMap<String, Result<T>>> = Mutex::new(HashMap::new());
        let last: Mutex<HashMap<String, Error>> = Mutex::new(HashMap::new());
        let cluster = &self.cluster;
        let outcome = self
            .cluster
            .retry(what, || {
                let pending: Vec<String> = {
                    let done = done.lock().unwrap_or_else(|p| p.into_inner());
                    keys.iter().filter(|k| !done.contains_key(*k)).cloned().collect()
                };
                let fut = send(pending.clone());
                let (done, last) = (&done, &last);
                async move {
                    if pending.is_empty() {
                        return Ok(());
                    }
                    let answers = fut.await?;
                    let mut again: Option<Error> = None;
                    let mut answered = HashSet::new();
                    {
                        let mut done = done.lock().unwrap_or_else(|p| p.into_inner());
                        let mut last = last.lock().unwrap_or_else(|p| p.into_inner());
                        for (key, outcome) in answers {
                            if !pending.contains(&key) || !answered.insert(key.clone()) {
                                continue;
                            }
                            match outcome {
                                Err(e) if retry_resource(&e) => {
                                    // One representative error for the retry loop's classifier.
                                    if again.is_none() {
                                        again = Some(duplicate(&e));
                                    }
                                    last.insert(key, e);
                                }
                                other => {
                                    last.remove(&key);
                                    done.insert(key, other);
                                }
                            }
                        }
                        for key in &pending {
                            if !answered.contains(key) {
                                let e = Error::Metadata(format!("{what}: the answer did not mention {key}"));
                                last.insert(key.clone(), e);
                                again.get_or_insert_with(|| Error::Metadata(format!("{what}: incomplete answer")));
                            }
                        }
                    }
                    match again {
                        None => Ok(()),
                        Some(e) => {
                            if e.response_error() == Some(ResponseError::NotController) {
                                // The classifier retries NOT_CONTROLLER but does not ask for new
                                // metadata; the controller id comes from metadata, so reload it.
                                if let Err(err) = cluster.refresh_metadata().await {
                                    debug!(what, error = %err, "metadata refresh after NOT_CONTROLLER failed");
                                }
                            }
                            Err(e)
                        }
                    }
                }
            })
            .await;
        let mut done = done.into_inner().unwrap_or_else(|p| p.into_inner());
        let mut last = last.into_inner().unwrap_or_else(|p| p.into_inner());
        match outcome {
            Ok(()) => {}
            Err(Error::RetriesExhausted {
                attempts,
                elapsed,
                last: request_err,
            }) => {
                if keys
                    .iter()
                    .any(|k| !done.contains_key(k) && !last.contains_key(k))
                {
                    return Err(Error::RetriesExhausted {
                        attempts,
                        elapsed,
                        last: request_err,
                    });
                }
                for k in keys {
                    if let Some(e) = last.remove(k) {
                        done.insert(
                            k.clone(),
                            Err(Error::RetriesExhausted {
                                attempts,
                                elapsed,
                                last: Box::new(e),
                            }),
                        );
                    }
                }
            }
            Err(e) => return Err(e),
        }
        keys.iter()
            .map(|k| {
                done.remove(k)
                    .map(|r| (k.clone(), r))
                    .ok_or_else(|| Error::Metadata(format!("{what}: no outcome for {k}")))
            })
            .collect()
    }

    /// Creates topics; one outcome per topic, in the order given. A topic that exists already is
    /// `Err(Error::Broker { error: ResponseError::TopicAlreadyExists, .. })`.
    pub async fn create_topics(&self, topics: &[NewTopic]) -> Result<Vec<(String, Result<()>)>> {
        let names: Vec<String> = topics.iter().map(|t| t.name.clone()).collect();
        self.per_key("CreateTopics", &names, |pending| async move {
            let (broker, conn) = self.controller().await?;
            let req = CreateTopicsRequest::default()
                .with_timeout_ms(self.timeout_ms())
                .with_validate_only(false)
                .with_topics(
                    topics
                        .iter()
                        .filter(|t| pending.contains(&t.name))
                        .map(|t| {
                            CreatableTopic::default()
                                .with_name(topic_name(&t.name))
                                .with_num_partitions(t.partitions)
                                .with_replication_factor(t.replication_factor)
                                .with_configs(
                                    t.configs
                                        .iter()
                                        .map(|(k, v)| {
                                            CreatableTopicConfig::default()
                                                .with_name(str_bytes(k))
                                                .with_value(Some(str_bytes(v)))
                                        })
                                        .collect(),
                                )
                        })
                        .collect(),
                );
            let resp = conn.send(&req).await?;
            Ok(resp
                .topics
                .into_iter()
                .map(|t| {
                    let name = t.name.0.to_string();
                    let outcome = match Error::broker(
                        ApiKey::CreateTopics,
                        broker.as_str(),
                        Some(format!("topic {name}")),
                        t.error_code,
                        opt_string(t.error_message),
                    ) {
                        Some(e) => Err(e),
                        None => Ok(()),
                    };
                    (name, outcome)
                })
                .collect())
        })
        .await
    }

    /// Deletes topics; one outcome per topic, in the order given.
    pub async fn delete_topics(&self, names: &[String]) -> Result<Vec<(String, Result<()>)>> {
        self.per_key("DeleteTopics", names, |pending| async move {
            let (broker, conn) = self.controller().await?;
            let version = conn.version(ApiKey::DeleteTopics)?;
            let req = delete_topics_request(version, &pending, self.timeout_ms());
            let resp = conn.send_versioned(&req, version).await?;
            Ok(resp
                .responses
                .into_iter()
                .filter_map(|t| {
                    let name = t.name?.0.to_string();
                    let outcome = match Error::broker(
                        ApiKey::DeleteTopics,
                        broker.as_str(),
                        Some(format!("topic {name}")),
                        t.error_code,
                        opt_string(t.error_message),
                    ) {
                        Some(e) => Err(e),
                        None => Ok(()),
                    };
                    Some((name, outcome))
                })
                .collect())
        })
        .await
    }

    /// Grows `topic` to `new_total` partitions.
    pub async fn create_partitions(&self, topic: &str, new_total: i32) -> Result<()> {
        let names = [topic.to_string()];
        let mut out = self
            .per_key("CreatePartitions", &names, |_pending| async move {
                let (broker, conn) = self.controller().await?;
                let req = CreatePartitionsRequest::default()
                    .with_timeout_ms(self.timeout_ms())
                    .with_validate_only(false)
                    .with_topics(vec![CreatePartitionsTopic::default()
                        .with_name(topic_name(topic))
                        .with_count(new_total)
                        .with_assignments(None)]);
                let resp = conn.send(&req).await?;
                Ok(resp
                    .results
                    .into_iter()
                    .map(|r| {
                        let name = r.name.0.to_string();
                        let outcome = match Error::broker(
                            ApiKey::CreatePartitions,
                            broker.as_str(),
                            Some(format!("topic {name} to {new_total} partitions")),
                            r.error_code,
                            opt_string(r.error_message),
                        ) {
                            Some(e) => Err(e),
                            None => Ok(()),
                        };
                        (name, outcome)
                    })
                    .collect())
            })
            .await?;
        out.pop().map(|(_, r)| r).unwrap_or(Ok(()))
    }

    /// Every topic in the cluster (internal ones included), sorted by name.
    pub async fn list_topics(&self) -> Result<Vec<TopicInfo>> {
        let md = self
            .cluster
            .retry("Metadata (all topics)", || {
                self.cluster.refresh_all_topics()
            })
            .await?;
        let mut topics: Vec<TopicInfo> = md.topics.values().cloned().collect();
        topics.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(topics)
    }

    /// Every config entry of each topic; one outcome per topic, in the order given.
    pub async fn describe_topic_configs(
        &self,
        topics: &[String],
    ) -> Result<Vec<(String, Result<Vec<ConfigEntry>>)>> {
        self.per_key("DescribeConfigs", topics, |pending| async move {
            let conn = self.cluster.any_connection().await?;
            let req = DescribeConfigsRequest::default()
                .with_include_synonyms(false)
                .with_resources(
                    pending
                        .iter()
                        .map(|t| {
                            DescribeConfigsResource::default()
                                .with_resource_type(TOPIC_RESOURCE)
                                .with_resource_name(str_bytes(t))
                                .with_configuration_keys(None)
                        })
                        .collect(),
                );
            let resp = conn.send(&req).await?;
            Ok(resp
                .results
                .into_iter()
                .filter(|r| r.resource_type == TOPIC_RESOURCE)
                .map(|r| {
                    let name = r.resource_name.to_string();
                    let outcome = match Error::broker(
                        ApiKey::DescribeConfigs,
                        conn.broker(),
                        Some(format!("configs of topic {name}")),
                        r.error_code,
                        opt_string(r.error_message),
                    ) {
                        Some(e) => Err(e),
                        None => Ok(r
                            .configs
                            .into_iter()
                            .map(|c| {
                                let source = ConfigSource::from_code(c.config_source);
                                ConfigEntry {
                                    name: c.name.to_string(),
                                    value: opt_string(c.value),
                                    read_only: c.read_only,
                                    is_default: source == ConfigSource::Default,
                                    is_sensitive: c.is_sensitive,
                                    source,
                                }
                            })
                            .collect()),
                    };
                    (name, outcome)
                })
                .collect())
        })
        .await
    }

    /// Applies `ops` (name, operation, value) to `topic`'s configs in one request (KIP-339).
    /// `Delete` takes no value.
    pub async fn incremental_alter_topic_configs(
        &self,
        topic: &str,
        ops: &[(String, AlterOp, Option<String>)],
    ) -> Result<()> {
        let names = [topic.to_string()];
        let mut out = self
            .per_key("IncrementalAlterConfigs", &names, |_pending| async move {
                let conn = self.cluster.any_connection().await?;
                let req = IncrementalAlterConfigsRequest::default()
                    .with_validate_only(false)
                    .with_resources(vec![AlterConfigsResource::default()
                        .with_resource_type(TOPIC_RESOURCE)
                        .with_resource_name(str_bytes(topic))
                        .with_configs(
                            ops.iter()
                                .map(|(name, op, value)| {
                                    AlterableConfig::default()
                                        .with_name(str_bytes(name))
                                        .with_config_operation(*op as i8)
                                        .with_value(value.as_deref().map(str_bytes))
                                })
                                .collect(),
                        )]);
                let resp = conn.send(&req).await?;
                Ok(resp
                    .responses
                    .into_iter()
                    .filter(|r| r.resource_type == TOPIC_RESOURCE)
                    .map(|r| {
                        let name = r.resource_name.to_string();
                        let outcome = match Error::broker(
                            ApiKey::IncrementalAlterConfigs,
                            conn.broker(),
                            Some(format!("configs of topic {name}")),
                            r.error_code,
                            opt_string(r.error_message),
                        ) {
                            Some(e) => Err(e),
                            None => Ok(()),
                        };
                        (name, outcome)
                    })
                    .collect())
            })
            .await?;
        out.pop().map(|(_, r)| r).unwrap_or(Ok(()))
    }

    /// The ACLs matching `filter`.
    pub async fn describe_acls(&self, filter: &AclFilter) -> Result<Vec<AclBinding>> {
        self.cluster
            .retry("DescribeAcls", || async {
                let conn = self.cluster.any_connection().await?;
                let req = DescribeAclsRequest::default()
                    .with_resource_type_filter(filter.resource_type)
                    .with_resource_name_filter(filter.resource_name.as_deref().map(str_bytes))
                    .with_pattern_type_filter(filter.pattern_type)
                    .with_principal_filter(filter.principal.as_deref().map(str_bytes))
                    .with_host_filter(filter.host.as_deref().map(str_bytes))
                    .with_operation(filter.operation)
                    .with_permission_type(filter.permission_type);
                let resp = conn.send(&req).await?;
                if let Some(e) = Error::broker(
                    ApiKey::DescribeAcls,
                    conn.broker(),
                    None,
                    resp.error_code,
                    opt_string(resp.error_message),
                ) {
                    return Err(e);
                }
                Ok(resp
                    .resources
                    .into_iter()
                    .flat_map(|r| {
                        let (rt, name, pt) =
                            (r.resource_type, r.resource_name.to_string(), r.pattern_type);
                        r.acls.into_iter().map(move |a| AclBinding {
                            resource_type: rt,
                            resource_name: name.clone(),
                            pattern_type: pt,
                            principal: a.principal.to_string(),
                            host: a.host.to_string(),
                            operation: a.operation,
                            permission_type: a.permission_type,
                        })
                    })
                    .collect())
            })
            .await
    }

    /// Creates ACLs; one outcome per ACL, in the order given.
    pub async fn create_acls(&self, acls: &[AclBinding]) -> Result<Vec<Result<()>>> {
        let keys: Vec<String> = (0..acls.len()).map(|i| i.to_string()).collect();
        let out = self
            .per_key("CreateAcls", &keys, |pending| async move {
                let conn = self.cluster.any_connection().await?;
                let chosen: Vec<(String, &AclBinding)> = pending
                    .into_iter()
                    .filter_map(|k| {
                        let acl = k.parse::<usize>().ok().and_then(|i| acls.get(i))?;
                        Some((k, acl))
                    })
                    .collect();
                let req = CreateAclsRequest::default().with_creations(
                    chosen
                        .iter()
                        .map(|(_, a)| {
                            AclCreation::default()
                                .with_resource_type(a.resource_type)
                                .with_resource_name(str_bytes(&a.resource_name))
                                .with_resource_pattern_type(a.pattern_type)
                                .with_principal(str_bytes(&a.principal))
                                .with_host(str_bytes(&a.host))
                                .with_operation(a.operation)
                                .with_permission_type(a.permission_type)
                        })
                        .collect(),
                );
                let resp = conn.send(&req).await?;
                if resp.results.len() != chosen.len() {
                    return Err(Error::Metadata(format!(
                        "CreateAcls to {}: {} results for {} ACLs",
                        conn.broker(),
                        resp.results.len(),
                        chosen.len()
                    )));
                }
                // Results come in request order.
                Ok(chosen
                    .into_iter()
                    .zip(resp.results)
                    .map(|((k, acl), r)| {
                        let outcome = match Error::broker(
                            ApiKey::CreateAcls,
                            conn.broker(),
                            Some(acl.describe()),
                            r.error_code,
                            opt_string(r.error_message),
                        ) {
                            Some(e) => Err(e),
                            None => Ok(()),
                        };
                        (k, outcome)
                    })
                    .collect())
            })
            .await?;
        Ok(out.into_iter().map(|(_, r)| r).collect())
    }

    /// Every group of the cluster: ListGroups is asked of every broker in the metadata and the
    /// answers merged (sorted by group id). Fails if any broker cannot answer, since a partial
    /// listing would silently miss groups.
    pub async fn list_groups(&self) -> Result<Vec<GroupListing>> {
        let mut md = self.cluster.metadata();
        if md.brokers.is_empty() {
            md = self
                .cluster
                .retry("Metadata", || self.cluster.refresh_metadata())
                .await?;
        }
        let mut brokers: Vec<BrokerInfo> = md.brokers.values().cloned().collect();
        brokers.sort_by_key(|b| b.id);
        let mut groups: HashMap<String, GroupListing> = HashMap::new();
        for b in &brokers {
            let listed = self
                .cluster
                .retry("ListGroups", || async {
                    let conn = self.cluster.connection(b, ConnKind::Control).await?;
                    let version = conn.version(ApiKey::ListGroups)?;
                    let resp = conn
                        .send_versioned(&ListGroupsRequest::default(), version)
                        .await?;
                    if let Some(e) =
                        Error::broker(ApiKey::ListGroups, who(b), None, resp.error_code, None)
                    {
                        return Err(e);
                    }
                    Ok(resp
                        .groups
                        .into_iter()
                        .map(|g| GroupListing {
                            group_id: g.group_id.0.to_string(),
                            protocol_type: g.protocol_type.to_string(),
                            state: (version >= 4).then(|| g.group_state.to_string()),
                        })
                        .collect::<Vec<_>>())
                })
                .await?;
            for g in listed {
                groups.entry(g.group_id.clone()).or_insert(g);
            }
        }
        let mut out: Vec<GroupListing> = groups.into_values().collect();
        out.sort_by(|a, b| a.group_id.cmp(&b.group_id));
        Ok(out)
    }

    /// Describes groups, each asked of its coordinator; one description per group, in the order
    /// given. A group's non-retriable error is in its [`GroupDescription::error`].
    pub async fn describe_groups(&self, groups: &[String]) -> Result<Vec<GroupDescription>> {
        let out = self
            .per_key("DescribeGroups", groups, |pending| async move {
                let mut answers = Vec::with_capacity(pending.len());
                for group in pending {
                    let cluster = &*self.cluster;
                    let group_ref = group.as_str();
                    let answer =
                        on_coordinator(cluster, group_ref, |coordinator, conn| async move {
                            let group = group_ref;
                            let req = DescribeGroupsRequest::default()
                                .with_groups(vec![GroupId(str_bytes(group))]);
                            let resp = conn.send(&req).await?;
                            let g = resp
                                .groups
                                .into_iter()
                                .find(|g| *g.group_id.0 == *group)
                                .ok_or_else(|| {
                                    Error::Metadata(format!(
                                        "DescribeGroups to {}: answer lacks group {group}",
                                        who(&coordinator)
                                    ))
                                })?;
                            if let Some(e) = Error::broker(
                                ApiKey::DescribeGroups,
                                who(&coordinator),
                                Some(format!("group {group}")),
                                g.error_code,
                                opt_string(g.error_message.clone()),
                            ) {
                                if e.is_retriable() {
                                    return Err(e);
                                }
                            }
                            Ok(GroupDescription {
                                group_id: group.to_string(),
                                state: g.group_state.to_string(),
                                protocol_type: g.protocol_type.to_string(),
                                protocol: g.protocol_data.to_string(),
                                members: g
                                    .members
                                    .into_iter()
                                    .map(|m| MemberDescription {
                                        member_id: m.member_id.to_string(),
                                        client_id: m.client_id.to_string(),
                                        client_host: m.client_host.to_string(),
                                        assignment: m.member_assignment,
                                    })
                                    .collect(),
                                error: ResponseError::try_from_code(g.error_code),
                            })
                        })
                        .await;
                    match answer {
                        // Without the coordinator nothing can be said about the group: retry it.
                        Err(e) if retry_resource(&e) => answers.push((group, Err(e))),
                        Err(e) if e.response_error().is_none() => return Err(e),
                        other => answers.push((group, other)),
                    }
                }
                Ok(answers)
            })
            .await?;
        out.into_iter()
            .map(|(group, r)| match r {
                Ok(d) => Ok(d),
                Err(e) => match e.response_error() {
                    Some(code) if !matches!(e, Error::RetriesExhausted { .. }) => {
                        Ok(GroupDescription {
                            group_id: group,
                            state: String::new(),
                            protocol_type: String::new(),
                            protocol: String::new(),
                            members: Vec::new(),
                            error: Some(code),
                        })
                    }
                    _ => Err(e),
                },
            })
            .collect()
    }

    /// The offsets `group` has committed: for `partitions`, or every partition when `None`.
    /// Partitions without a committed offset are left out.
    pub async fn fetch_offsets(
        &self,
        group: &str,
        partitions: Option<&[(String, i32)]>,
    ) -> Result<Vec<CommittedOffset>> {
        let cluster = &*self.cluster;
        cluster
            .retry("OffsetFetch", || {
                on_coordinator(cluster, group, |coordinator, conn| async move {
                    let version = conn.version(ApiKey::OffsetFetch)?;
                    let req = offset_fetch_request(version, group, partitions)?;
                    let resp = conn.send_versioned(&req, version).await?;
                    let broker = who(&coordinator);
                    let (group_code, parts) = offset_fetch_parts(resp, group);
                    if let Some(e) = Error::broker(
                        ApiKey::OffsetFetch,
                        broker.as_str(),
                        Some(format!("group {group}")),
                        group_code,
                        None,
                    ) {
                        if e.response_error() == Some(ResponseError::GroupIdNotFound) {
                            return Ok(Vec::new());
                        }
                        return Err(e);
                    }
                    let mut out = Vec::with_capacity(parts.len());
                    for (topic, p) in parts {
                        match Error::broker(
                            ApiKey::OffsetFetch,
                            broker.as_str(),
                            Some(format!(
                                "group {group} topic {topic} partition {}",
                                p.partition
                            )),
                            p.error_code,
                            None,
                        ) {
                            // Brokers answer so for partitions of topics they do not know: nothing
                            // is committed there.
                            Some(e)
                                if e.response_error()
                                    == Some(ResponseError::UnknownTopicOrPartition) => {}
                            Some(e) => return Err(e),
                            None if p.offset < 0 => {}
                            None => out.push(CommittedOffset {
                                topic,
                                partition: p.partition,
                                offset: p.offset,
                                leader_epoch: p.leader_epoch,
                                metadata: p.metadata,
                            }),
                        }
                    }
                    out.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
                    Ok(out)
                })
            })
            .await
    }

    /// Commits `offsets` for `group` as an admin tool does (generation -1, no member id): the
    /// broker accepts it only while the group has no active members. The first partition error
    /// that is not retriable is returned, naming the topic and partition.
    pub async fn commit_offsets(&self, group: &str, offsets: &[CommittedOffset]) -> Result<()> {
        let cluster = &*self.cluster;
        cluster
            .retry("OffsetCommit", || {
                on_coordinator(cluster, group, |coordinator, conn| async move {
                    let version = conn.version(ApiKey::OffsetCommit)?;
                    let req = offset_commit_request(version, group, -1, "", None, offsets);
                    let resp = conn.send_versioned(&req, version).await?;
                    check_offset_commit(&resp, &who(&coordinator), group)
                })
            })
            .await
    }

    /// The cluster id, controller and brokers: DescribeCluster (KIP-700) when the broker offers
    /// it, else Metadata.
    pub async fn describe_cluster(&self) -> Result<ClusterDescription> {
        self.cluster
            .retry("DescribeCluster", || async {
                let conn = self.cluster.any_connection().await?;
                if conn
                    .versions()
                    .broker_range(ApiKey::DescribeCluster)
                    .is_none()
                {
                    let md = self.cluster.refresh_metadata().await?;
                    let mut brokers: Vec<BrokerInfo> = md.brokers.values().cloned().collect();
                    brokers.sort_by_key(|b| b.id);
                    return Ok(ClusterDescription {
                        cluster_id: md.cluster_id.clone(),
                        controller_id: md.controller_id,
                        brokers,
                    });
                }
                let resp = conn.send(&DescribeClusterRequest::default()).await?;
                if let Some(e) = Error::broker(
                    ApiKey::DescribeCluster,
                    conn.broker(),
                    None,
                    resp.error_code,
                    opt_string(resp.error_message),
                ) {
                    return Err(e);
                }
                let mut brokers: Vec<BrokerInfo> = resp
                    .brokers
                    .into_iter()
                    .map(|b| BrokerInfo {
                        id: b.broker_id.0,
                        host: b.host.to_string(),
                        port: b.port,
                        rack: opt_string(b.rack),
                    })
                    .collect();
                brokers.sort_by_key(|b| b.id);
                Ok(ClusterDescription {
                    cluster_id: Some(resp.cluster_id.to_string()),
                    controller_id: resp.controller_id.0,
                    brokers,
                })
            })
            .await
    }
}

/// DeleteTopics by name: v6 lists topic states, older versions names.
fn delete_topics_request(version: i16, names: &[String], timeout_ms: i32) -> DeleteTopicsRequest {
    let req = DeleteTopicsRequest::default().with_timeout_ms(timeout_ms);
    if version >= 6 {
        req.with_topics(
            names
                .iter()
                .map(|n| DeleteTopicState::default().with_name(Some(topic_name(n))))
                .collect(),
        )
    } else {
        req.with_topic_names(names.iter().map(|n| topic_name(n)).collect())
    }
}

/// OffsetFetch for one group: v8+ carries a list of groups, older versions one.
fn offset_fetch_request(
    version: i16,
    group: &str,
    partitions: Option<&[(String, i32)]>,
) -> Result<OffsetFetchRequest> {
    let mut by_topic: Vec<(String, Vec<i32>)> = Vec::new();
    for (t, p) in partitions.unwrap_or_default() {
        match by_topic.iter_mut().find(|(name, _)| name == t) {
            Some((_, ps)) => ps.push(*p),
            None => by_topic.push((t.clone(), vec![*p])),
        }
    }
    let req = OffsetFetchRequest::default();
    if version >= 8 {
        let topics = partitions.map(|_| {
            by_topic
                .iter()
                .map(|(t, ps)| {
                    OffsetFetchRequestTopics::default()
                        .with_name(topic_name(t))
                        .with_partition_indexes(ps.clone())
                })
                .collect()
        });
        Ok(req
            .with_require_stable(false)
            .with_groups(vec![OffsetFetchRequestGroup::default()
                .with_group_id(GroupId(str_bytes(group)))
                .with_topics(topics)]))
    } else {
        if partitions.is_none() && version < 2 {
            return Err(Error::InvalidArgument(format!(
                "OffsetFetch v{version} cannot fetch all partitions of group {group}; name them"
            )));
        }
        let topics = partitions.map(|_| {
            by_topic
                .iter()
                .map(|(t, ps)| {
                    OffsetFetchRequestTopic::default()
                        .with_name(topic_name(t))
                        .with_partition_indexes(ps.clone())
                })
                .collect()
        });
        Ok(req
            .with_group_id(GroupId(str_bytes(group)))
            .with_topics(topics))
    }
}

struct FetchedOffset {
    partition: i32,
    offset: i64,
    leader_epoch: i32,
    metadata: Option<String>,
    error_code: i16,
}

/// The group-level error code and the partitions of an OffsetFetch answer, for either layout.
fn offset_fetch_parts(
    resp: kafka_protocol::messages::OffsetFetchResponse,
    group: &str,
) -> (i16, Vec<(String, FetchedOffset)>) {
    let mut out = Vec::new();
    if let Some(g) = resp.groups.into_iter().find(|g| *g.group_id.0 == *group) {
        for t in g.topics {
            let topic = t.name.0.to_string();
            for p in t.partitions {
                out.push((
                    topic.clone(),
                    FetchedOffset {
                        partition: p.partition_index,
                        offset: p.committed_offset,
                        leader_epoch: p.committed_leader_epoch,
                        metadata: opt_string(p.metadata),
                        error_code: p.error_code,
                    },
                ));
            }
        }
        return (g.error_code, out);
    }
    for t in resp.topics {
        let topic = t.name.0.to_string();
        for p in t.partitions {
            out.push((
                topic.clone(),
                FetchedOffset {
                    partition: p.partition_index,
                    offset: p.committed_offset,
                    leader_epoch: p.committed_leader_epoch,
                    metadata: opt_string(p.metadata),
                    error_code: p.error_code,
                },
            ));
        }
    }
    (resp.error_code, out)
}

/// OffsetCommit of `offsets`, with the fields each version knows.
pub(crate) fn offset_commit_request(
    version: i16,
    group: &str,
    generation: i32,
    member_id: &str,
    group_instance_id: Option<&str>,
    offsets: &[CommittedOffset],
) -> OffsetCommitRequest {
    let mut topics: Vec<OffsetCommitRequestTopic> = Vec::new();
    for o in offsets {
        let mut p = OffsetCommitRequestPartition::default()
            .with_partition_index(o.partition)
            .with_committed_offset(o.offset)
            .with_committed_metadata(o.metadata.as_deref().map(str_bytes));
        if version >= 6 {
            p = p.with_committed_leader_epoch(o.leader_epoch);
        }
        match topics.iter_mut().find(|t| *t.name.0 == *o.topic) {
            Some(t) => t.partitions.push(p),
            None => topics.push(
                OffsetCommitRequestTopic::default()
                    .with_name(topic_name(&o.topic))
                    .with_partitions(vec![p]),
            ),
        }
    }
    let mut req = OffsetCommitRequest::default()
        .with_group_id(GroupId(str_bytes(group)))
        .with_generation_id_or_member_epoch(generation)
        .with_member_id(str_bytes(member_id))
        .with_topics(topics);
    if version >= 7 {
        req = req.with_group_instance_id(group_instance_id.map(str_bytes));
    }
    req
}

/// The first partition error of an OffsetCommit answer, retriable ones first (so the retry loop
/// sees them), with group, topic and partition context.
pub(crate) fn check_offset_commit(
    resp: &kafka_protocol::messages::OffsetCommitResponse,
    broker: &str,
    group: &str,
) -> Result<()> {
    let mut first: Option<Error> = None;
    for t in &resp.topics {
        for p in &t.partitions {
            if let Some(e) = Error::broker(
                ApiKey::OffsetCommit,
                broker,
                Some(format!(
                    "group {group} topic {} partition {}",
                    t.name.0, p.partition_index
                )),
                p.error_code,
                None,
            ) {
                let replace = match &first {
                    None => true,
                    Some(f) => !f.is_retriable() && e.is_retriable(),
                };
                if replace {
                    first = Some(e);
                }
            }
        }
    }
    match first {
        None => Ok(()),
        Some(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use kafka_protocol::protocol::{Decodable, Encodable, Message};

    fn encodes<M: Encodable + Message>(m: &M, version: i16) {
        let mut buf = BytesMut::new();
        m.encode(&mut buf, version)
            .unwrap_or_else(|e| panic!("v{version}: {e}"));
    }

    #[test]
    fn offset_fetch_encodes_at_every_version() {
        let parts = vec![
            ("a".to_string(), 0),
            ("a".to_string(), 2),
            ("b".to_string(), 1),
        ];
        for v in OffsetFetchRequest::VERSIONS.min..=OffsetFetchRequest::VERSIONS.max {
            let req = offset_fetch_request(v, "g", Some(&parts)).unwrap();
            encodes(&req, v);
            let topics: Vec<(String, Vec<i32>)> = if v >= 8 {
                assert_eq!(req.groups.len(), 1);
                req.groups[0]
                    .topics
                    .as_ref()
                    .unwrap()
                    .iter()
                    .map(|t| (t.name.0.to_string(), t.partition_indexes.clone()))
                    .collect()
            } else {
                assert_eq!(&*req.group_id.0, "g");
                req.topics
                    .as_ref()
                    .unwrap()
                    .iter()
                    .map(|t| (t.name.0.to_string(), t.partition_indexes.clone()))
                    .collect()
            };
            assert_eq!(
                topics,
                vec![("a".into(), vec![0, 2]), ("b".into(), vec![1])]
            );
            if v >= 2 {
                let all = offset_fetch_request(v, "g", None).unwrap();
                encodes(&all, v);
            }
        }
        assert!(matches!(
            offset_fetch_request(1, "g", None),
            Err(Error::InvalidArgument(_))
        ));
    }

    #[test]
    fn offset_commit_encodes_at_every_version() {
        let offsets = vec![
            CommittedOffset {
                topic: "a".into(),
                partition: 0,
                offset: 10,
                leader_epoch: 3,
                metadata: Some("m".into()),
            },
            CommittedOffset {
                topic: "a".into(),
                partition: 1,
                offset: 11,
                leader_epoch: -1,
                metadata: None,
            },
        ];
        for v in OffsetCommitRequest::VERSIONS.min..=OffsetCommitRequest::VERSIONS.max {
            let req = offset_commit_request(v, "g", -1, "", Some("inst"), &offsets);
            encodes(&req, v);
            assert_eq!(req.topics.len(), 1);
            assert_eq!(req.topics[0].partitions.len(), 2);
            let epoch = req.topics[0].partitions[0].committed_leader_epoch;
            assert_eq!(epoch, if v >= 6 { 3 } else { -1 }, "v{v}");
            assert_eq!(req.group_instance_id.is_some(), v >= 7, "v{v}");
        }
    }

    #[test]
    fn delete_topics_encodes_at_every_version() {
        let names = vec!["x".to_string(), "y".to_string()];
        for v in DeleteTopicsRequest::VERSIONS.min..=DeleteTopicsRequest::VERSIONS.max {
            encodes(&delete_topics_request(v, &names, 1000), v);
        }
    }

    #[test]
    fn offset_fetch_answer_in_both_layouts() {
        use kafka_protocol::messages::offset_fetch_response::*;
        let old = OffsetFetchResponse::default()
            .with_error_code(0)
            .with_topics(vec![OffsetFetchResponseTopic::default()
                .with_name(topic_name("t"))
                .with_partitions(vec![OffsetFetchResponsePartition::default()
                    .with_partition_index(4)
                    .with_committed_offset(42)
                    .with_committed_leader_epoch(7)
                    .with_metadata(Some(str_bytes("md")))])]);
        let (code, parts) = offset_fetch_parts(old, "g");
        assert_eq!(code, 0);
        assert_eq!(parts.len(), 1);
        assert_eq!(
            (parts[0].0.as_str(), parts[0].1.partition, parts[0].1.offset),
            ("t", 4, 42)
        );
        let new = OffsetFetchResponse::default().with_groups(vec![
            OffsetFetchResponseGroup::default()
                .with_group_id(GroupId(str_bytes("other")))
                .with_error_code(16),
            OffsetFetchResponseGroup::default()
                .with_group_id(GroupId(str_bytes("g")))
                .with_error_code(14)
                .with_topics(vec![OffsetFetchResponseTopics::default()
                    .with_name(topic_name("u"))
                    .with_partitions(vec![OffsetFetchResponsePartitions::default()
                        .with_partition_index(1)
                        .with_committed_offset(9)])]),
        ]);
        let (code, parts) = offset_fetch_parts(new, "g");
        assert_eq!(code, 14, "the group's own error, not another group's");
        assert_eq!((parts[0].0.as_str(), parts[0].1.offset), ("u", 9));
        // Round trip through the wire at v8 to be sure the layout is the broker's.
        let mut buf = BytesMut::new();
        let resp = OffsetFetchResponse::default().with_groups(vec![
            OffsetFetchResponseGroup::default().with_group_id(GroupId(str_bytes("g"))),
        ]);
        resp.encode(&mut buf, 8).unwrap();
        let back = OffsetFetchResponse::decode(&mut buf.freeze(), 8).unwrap();
        assert_eq!(offset_fetch_parts(back, "g").0, 0);
    }

    #[test]
    fn offset_commit_errors_prefer_retriable_and_name_the_partition() {
        use kafka_protocol::messages::offset_commit_response::*;
        let resp =
            OffsetCommitResponse::default().with_topics(vec![OffsetCommitResponseTopic::default()
                .with_name(topic_name("t"))
                .with_partitions(vec![
                    OffsetCommitResponsePartition::default().with_partition_index(0),
                    // OFFSET_METADATA_TOO_LARGE: final
                    OffsetCommitResponsePartition::default()
                        .with_partition_index(1)
                        .with_error_code(12),
                    // NOT_COORDINATOR: retriable
                    OffsetCommitResponsePartition::default()
                        .with_partition_index(2)
                        .with_error_code(16),
                ])]);
        let e = check_offset_commit(&resp, "1@h:1", "g").unwrap_err();
        assert_eq!(e.response_error(), Some(ResponseError::NotCoordinator));
        assert!(e.to_string().contains("group g topic t partition 2"), "{e}");
        let ok = OffsetCommitResponse::default();
        assert!(check_offset_commit(&ok, "b", "g").is_ok());
    }

    #[test]
    fn config_sources_and_resource_retry_rule() {
        assert_eq!(ConfigSource::from_code(1), ConfigSource::DynamicTopic);
        assert_eq!(ConfigSource::from_code(5), ConfigSource::Default);
        assert_eq!(
            ConfigSource::from_code(7),
            ConfigSource::DynamicClientMetrics
        );
        assert_eq!(ConfigSource::from_code(99), ConfigSource::Unknown);
        let unknown = Error::broker(ApiKey::DeleteTopics, "b", None, 3, None).unwrap();
        assert!(unknown.is_retriable() && !retry_resource(&unknown));
        let not_controller = Error::broker(ApiKey::CreateTopics, "b", None, 41, None).unwrap();
        assert!(retry_resource(&not_controller));
        let exists = Error::broker(ApiKey::CreateTopics, "b", None, 36, None).unwrap();
        assert!(!retry_resource(&exists));
    }
}
