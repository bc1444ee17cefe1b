//! The cluster view: bootstrap, a metadata cache, connection pools and request routing.
//!
//! - Bootstraps from several addresses (the first that answers wins).
//! - Caches metadata (brokers, topics, partition leaders and epochs) in an immutable snapshot
//!   replaced atomically; every snapshot has a generation number. Refreshed on demand (after an
//!   error that calls for it, see [`crate::Error::needs_metadata_refresh`]) and on a timer.
//! - Keeps separate connections per broker for fetch, produce and control (metadata, admin,
//!   group) traffic, so a long fetch wait or a large produce never delays a heartbeat
//!   (franz-go's connection types).
//! - Routes partition requests to leaders and group/transaction requests to coordinators
//!   (FindCoordinator, batched from v4, KIP-699).
//! - [`Cluster::retry`] is the one retry loop: backoff from [`crate::retry`], classification from
//!   [`crate::Error`].

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, Instant};

use kafka_protocol::messages::find_coordinator_request::FindCoordinatorRequest;
use kafka_protocol::messages::metadata_request::{MetadataRequest, MetadataRequestTopic};
use kafka_protocol::messages::{ApiKey, TopicName};
use kafka_protocol::protocol::{Request, StrBytes};
use tracing::{debug, info, warn};

use crate::conn::{ConnConfig, Connection};
use crate::error::{Error, ResponseError, Result};
use crate::retry::{Backoff, RetryPolicy};

/// Client-wide settings.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// `host:port` addresses to bootstrap from.
    pub bootstrap_servers: Vec<String>,
    /// Per-connection settings.
    pub conn: ConnConfig,
    /// Retry budget.
    pub retry: RetryPolicy,
    /// Refresh metadata at least this often (`metadata.max.age.ms`).
    pub metadata_max_age: Duration,
}

impl ClientConfig {
    /// Defaults for the given bootstrap list (comma-separated or one address).
    pub fn new(bootstrap: &str) -> ClientConfig {
        ClientConfig {
            bootstrap_servers: bootstrap
                .split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect(),
            conn: ConnConfig::default(),
            retry: RetryPolicy::default(),
            metadata_max_age: Duration::from_secs(300),
        }
    }
}

/// One broker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrokerInfo {
    /// Node id.
    pub id: i32,
    /// Advertised host.
    pub host: String,
    /// Advertised port.
    pub port: i32,
    /// Rack, if configured.
    pub rack: Option<String>,
}

impl BrokerInfo {
    /// `host:port`.
    pub fn addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// One partition's placement.
#[derive(Clone, Debug)]
pub struct PartitionInfo {
    /// Index.
    pub partition: i32,
    /// Leader's node id (-1 when none).
    pub leader: i32,
    /// Leader epoch (-1 when unknown).
    pub leader_epoch: i32,
    /// Replicas.
    pub replicas: Vec<i32>,
    /// Error reported for the partition.
    pub error: Option<ResponseError>,
}

/// One topic.
#[derive(Clone, Debug)]
pub struct TopicInfo {
    /// Name.
    pub name: String,
    /// Topic id (zero when the broker does not report one).
    pub id: [u8; 16],
    /// Internal topic flag.
    pub is_internal: bool,
    /// Partitions sorted by index.
    pub partitions: Vec<PartitionInfo>,
    /// Error reported for the topic.
    pub error: Option<ResponseError>,
}

/// An immutable metadata snapshot.
#[derive(Clone, Debug, Default)]
pub struct Metadata {
    /// Increases with every refresh.
    pub generation: u64,
    /// Cluster id.
    pub cluster_id: Option<String>,
    /// Controller id.
    pub controller_id: i32,
    /// Brokers by id.
    pub brokers: HashMap<i32, BrokerInfo>,
    /// Topics by name.
    pub topics: HashMap<String, TopicInfo>,
}

impl Metadata {
    /// The partition's info, if known.
    pub fn partition(&self, topic: &str, partition: i32) -> Option<&PartitionInfo> {
        self.topics.get(topic)?.partition(partition)
    }
}

impl TopicInfo {
    /// The partition's info, if known.
    pub fn partition(&self, partition: i32) -> Option<&PartitionInfo> {
        let partitions = &self.partitions;
        // Sorted by index and normally dense: partition i is at position i.
        usize::try_from(partition)
            .ok()
            .and_then(|i| partitions.get(i))
            .filter(|p| p.partition == partition)
            .or_else(|| partitions.iter().find(|p| p.partition == partition))
    }
}

/// Which connection of a broker a request uses.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum ConnKind {
    /// Produce requests.
    Produce,
    /// Fetch requests (may block for `max_wait`).
    Fetch,
    /// Metadata, admin, group and coordinator traffic.
    Control,
}

/// Coordinator types (FindCoordinator `key_type`).
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum CoordinatorType {
    /// Consumer group coordinator.
    Group = 0,
    /// Transaction coordinator.
    Transaction = 1,
}

type Slot = Arc<tokio::sync::Mutex<Option<Arc<Connection>>>>;

/// A Kafka cluster as seen by this client. Share it with `Arc`.
pub struct Cluster {
    config: ClientConfig,
    metadata: RwLock<Arc<Metadata>>,
    tracked_topics: Mutex<BTreeSet<String>>,
    pool: Mutex<HashMap<(String, ConnKind), Slot>>,
    coordinators: Mutex<HashMap<(CoordinatorType, String), BrokerInfo>>,
    refresh: tokio::sync::Mutex<()>,
    last_refresh: Mutex<Instant>,
    /// Per broker id: until when it asked us not to send (quota throttling, KIP-219).
    throttles: Mutex<HashMap<i32, Instant>>,
    /// Retries by the clients of this cluster (metrics).
    retries: crate::retry::RetryCounts,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("bootstrap", &self.config.bootstrap_servers)
            .field("generation", &self.metadata().generation)
            .finish()
    }
}

impl Cluster {
    /// Connects to the first reachable bootstrap broker, loads broker metadata and starts the
    /// periodic metadata refresh.
    pub async fn connect(config: ClientConfig) -> Result<Arc<Cluster>> {
        if config.bootstrap_servers.is_empty() {
            return Err(Error::InvalidArgument("no bootstrap servers".into()));
        }
        let cluster = Arc::new(Cluster {
            config,
            metadata: RwLock::new(Arc::new(Metadata::default())),
            tracked_topics: Mutex::new(BTreeSet::new()),
            pool: Mutex::new(HashMap::new()),
            coordinators: Mutex::new(HashMap::new()),
            refresh: tokio::sync::Mutex::new(()),
            last_refresh: Mutex::new(Instant::now()),
            throttles: Mutex::new(HashMap::new()),
            retries: Default::default(),
        });
        cluster
            .retry("bootstrap metadata", || cluster.refresh_metadata())
            .await?;
        let weak = Arc::downgrade(&cluster);
        tokio::spawn(refresh_periodically(weak));
        Ok(cluster)
    }

    /// The settings.
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// Retries made so far by the clients of this cluster (this handle's calls, its producers
    /// and fetchers), by operation and kind of error.
    pub fn retries(&self) -> &crate::retry::RetryCounts {
        &self.retries
    }

    /// Records the `throttle_time_ms` of a response from `broker` to `api` at `version`. From
    /// the versions of KIP-219 on (Produce v6, Fetch v8) a broker over its quota answers at once
    /// and then stops reading the connection for that long: a request sent meanwhile only waits
    /// on the broker's side and ages toward its timeout, so senders hold back instead, as the
    /// Java client does (`NetworkClient.maybeThrottle`). Older versions were delayed by the
    /// broker itself and are ignored here.
    pub fn note_throttle(&self, broker: i32, api: ApiKey, version: i16, throttle_ms: i32) {
        if throttle_ms <= 0 || !client_throttles(api, version) {
            return;
        }
        let until = Instant::now() + Duration::from_millis(throttle_ms as u64);
        debug!(broker, api = ?api, throttle_ms, "broker throttles this client (quota)");
        let mut t = self.throttles.lock().unwrap_or_else(|p| p.into_inner());
        let e = t.entry(broker).or_insert(until);
        *e = (*e).max(until);
    }

    /// How long `broker` still asked us to wait before the next request, if at all.
    pub fn throttled_for(&self, broker: i32) -> Option<Duration> {
        let mut t = self.throttles.lock().unwrap_or_else(|p| p.into_inner());
        let until = *t.get(&broker)?;
        let now = Instant::now();
        if until <= now {
            t.remove(&broker);
            return None;
        }
        Some(until - now)
    }

    /// The current metadata snapshot.
    pub fn metadata(&self) -> Arc<Metadata> {
        self.metadata
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Adds topics to the set whose metadata is kept fresh.
    pub fn track_topics<I: IntoIterator<Item = S>, S: Into<String>>(&self, topics: I) {
        let mut t = self
            .tracked_topics
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        t.extend(topics.into_iter().map(Into::into));
    }

    /// Refreshes brokers and the tracked topics now.
    pub async fn refresh_metadata(&self) -> Result<Arc<Metadata>> {
        let topics: Vec<String> = self
            .tracked_topics
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect();
        self.fetch_metadata(Some(&topics)).await
    }

    /// Loads metadata of every topic in the cluster (used to discover topics).
    pub async fn refresh_all_topics(&self) -> Result<Arc<Metadata>> {
        self.fetch_metadata(None).await
    }

    /// Loads metadata for `topics` (all topics when `None`) and merges it into the cache.
    pub async fn fetch_metadata(&self, topics: Option<&[String]>) -> Result<Arc<Metadata>> {
        let before = self.metadata().generation;
        let _guard = self.refresh.lock().await;
        // Coalesce: if another task refreshed everything while we waited, use its result.
        let now = self.metadata();
        if now.generation != before && topics.map(<[String]>::is_empty).unwrap_or(false) {
            return Ok(now);
        }
        let req = MetadataRequest::default()
            .with_allow_auto_topic_creation(false)
            .with_topics(topics.map(|ts| {
                ts.iter()
                    .map(|t| {
                        MetadataRequestTopic::default()
                            .with_name(Some(TopicName(StrBytes::from_string(t.clone()))))
                    })
                    .collect()
            }));
        let (conn, resp) = self.send_any(&req).await?;
        if let Some(e) = Error::broker(ApiKey::Metadata, conn.broker(), None, resp.error_code, None)
        {
            return Err(e);
        }
        let mut next = (*self.metadata()).clone();
        next.generation += 1;
        next.cluster_id = resp.cluster_id.map(|s| s.to_string());
        next.controller_id = resp.controller_id.0;
        next.brokers = resp
            .brokers
            .into_iter()
            .map(|b| {
                (
                    b.node_id.0,
                    BrokerInfo {
                        id: b.node_id.0,
                        host: b.host.to_string(),
                        port: b.port,
                        rack: b.rack.map(|r| r.to_string()),
                    },
                )
            })
            .collect();
        if topics.is_none() {
            next.topics.clear();
        }
        for t in resp.topics {
            let Some(name) = t.name.map(|n| n.0.to_string()) else {
                continue;
            };
            let error = ResponseError::try_from_code(t.error_code);
            if error == Some(ResponseError::UnknownTopicOrPartition) {
                next.topics.remove(&name);
                continue;
            }
            let mut partitions: Vec<PartitionInfo> = t
                .partitions
                .into_iter()
                .map(|p| PartitionInfo {
                    partition: p.partition_index,
                    leader: p.leader_id.0,
                    leader_epoch: p.leader_epoch,
                    replicas: p.replica_nodes.into_iter().map(|r| r.0).collect(),
                    error: ResponseError::try_from_code(p.error_code),
                })
                .collect();
            partitions.sort_by_key(|p| p.partition);
            next.topics.insert(
                name.clone(),
                TopicInfo {
                    name,
                    id: *t.topic_id.as_bytes(),
                    is_internal: t.is_internal,
                    partitions,
                    error,
                },
            );
        }
        let next = Arc::new(next);
        *self.metadata.write().unwrap_or_else(|p| p.into_inner()) = next.clone();
        *self.last_refresh.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
        debug!(
            generation = next.generation,
            brokers = next.brokers.len(),
            topics = next.topics.len(),
            "metadata refreshed"
        );
        Ok(next)
    }

    /// The leader of a partition, refreshing metadata once if it is unknown.
    pub async fn leader(&self, topic: &str, partition: i32) -> Result<BrokerInfo> {
        for attempt in 0..2 {
            let md = self.metadata();
            if let Some(p) = md.partition(topic, partition) {
                if p.leader >= 0 {
                    if let Some(b) = md.brokers.get(&p.leader) {
                        return Ok(b.clone());
                    }
                }
            }
            if attempt == 0 {
                self.track_topics([topic]);
                self.refresh_metadata().await?;
            }
        }
        Err(Error::Metadata(format!(
            "no leader known for topic {topic} partition {partition}"
        )))
    }

    /// A connection of `kind` to `broker`, reconnecting if the previous one failed.
    pub async fn connection(&self, broker: &BrokerInfo, kind: ConnKind) -> Result<Arc<Connection>> {
        self.connection_to(&broker.addr(), kind).await
    }

    async fn connection_to(&self, addr: &str, kind: ConnKind) -> Result<Arc<Connection>> {
        let slot = {
            let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
            pool.entry((addr.to_string(), kind)).or_default().clone()
        };
        let mut guard = slot.lock().await;
        if let Some(c) = guard.as_ref() {
            if !c.is_closed() {
                return Ok(c.clone());
            }
            debug!(broker = addr, ?kind, "reconnecting");
        }
        let conn = Arc::new(Connection::connect(addr, &self.config.conn).await?);
        *guard = Some(conn.clone());
        Ok(conn)
    }

    /// Sends a request to a specific broker on a connection of `kind` (one attempt).
    pub async fn send_to<R: Request>(
        &self,
        broker: &BrokerInfo,
        kind: ConnKind,
        request: &R,
    ) -> Result<R::Response> {
        let conn = self.connection(broker, kind).await?;
        Ok(conn.send(request).await?)
    }

    /// Candidate addresses for control traffic: known brokers (rotated by generation to spread
    /// load), then the bootstrap list.
    fn control_addrs(&self) -> Vec<String> {
        let md = self.metadata();
        let mut addrs: Vec<String> = md.brokers.values().map(BrokerInfo::addr).collect();
        addrs.sort();
        if !addrs.is_empty() {
            let n = addrs.len();
            addrs.rotate_left((md.generation as usize) % n);
        }
        for b in &self.config.bootstrap_servers {
            if !addrs.contains(b) {
                addrs.push(b.clone());
            }
        }
        addrs
    }

    /// A control connection to any reachable broker.
    pub async fn any_connection(&self) -> Result<Arc<Connection>> {
        let addrs = self.control_addrs();
        let mut last = None;
        for addr in &addrs {
            match self.connection_to(addr, ConnKind::Control).await {
                Ok(conn) => return Ok(conn),
                Err(e) if e.is_security() => return Err(e),
                Err(e) => last = Some(e.to_string()),
            }
        }
        Err(Error::NoBrokers {
            tried: addrs.join(","),
            last: last.unwrap_or_default(),
        })
    }

    /// Sends a control request to any reachable broker, trying the next one on transport
    /// failure. Returns the connection used, for error context.
    pub async fn send_any<R: Request>(
        &self,
        request: &R,
    ) -> Result<(Arc<Connection>, R::Response)> {
        let addrs = self.control_addrs();
        let mut last = None;
        for addr in &addrs {
            match self.connection_to(addr, ConnKind::Control).await {
                Ok(conn) => match conn.send(request).await {
                    Ok(resp) => return Ok((conn, resp)),
                    Err(e) => {
                        debug!(broker = %addr, error = %e, "request failed, trying another broker");
                        last = Some(e.to_string());
                    }
                },
                Err(e) if e.is_security() => return Err(e),
                Err(e) => last = Some(e.to_string()),
            }
        }
        Err(Error::NoBrokers {
            tried: addrs.join(","),
            last: last.unwrap_or_default(),
        })
    }

    /// The coordinator for a group or transactional id (cached until invalidated).
    pub async fn coordinator(&self, kind: CoordinatorType, key: &str) -> Result<BrokerInfo> {
        if let Some(b) = self
            .coordinators
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(kind, key.to_string()))
        {
            return Ok(b.clone());
        }
        let (conn, resp) = {
            // FindCoordinator v4+ takes a list of keys; older versions one key.
            let probe = FindCoordinatorRequest::default();
            let conn = self.any_connection().await?;
            let version = conn.version(ApiKey::FindCoordinator)?;
            let req = if version >= 4 {
                probe
                    .with_key_type(kind as i8)
                    .with_coordinator_keys(vec![StrBytes::from_string(key.to_string())])
            } else {
                probe
                    .with_key_type(kind as i8)
                    .with_key(StrBytes::from_string(key.to_string()))
            };
            // librdkafka's mock cluster writes a null `host` (non-nullable in the schema) in its
            // FindCoordinator error answers; an unreadable answer means "no coordinator known
            // yet", so it is retried like COORDINATOR_NOT_AVAILABLE instead of failing the caller.
            let resp = match conn.send_versioned(&req, version).await {
                Err(crate::conn::ConnError::Codec { source, .. }) => {
                    return Err(Error::Metadata(format!(
                        "unreadable FindCoordinator answer from {} for {key}: {source}",
                        conn.broker()
                    )))
                }
                other => other?,
            };
            (conn, resp)
        };
        let resource = Some(format!("{kind:?} coordinator of {key}"));
        let (code, msg, id, host, port) = if let Some(c) = resp.coordinators.first() {
            (
                c.error_code,
                c.error_message.clone(),
                c.node_id.0,
                c.host.clone(),
                c.port,
            )
        } else {
            (
                resp.error_code,
                resp.error_message.clone(),
                resp.node_id.0,
                resp.host.clone(),
                resp.port,
            )
        };
        if let Some(e) = Error::broker(
            ApiKey::FindCoordinator,
            conn.broker(),
            resource,
            code,
            msg.map(|m| m.to_string()),
        ) {
            return Err(e);
        }
        let info = BrokerInfo {
            id,
            host: host.to_string(),
            port,
            rack: None,
        };
        self.coordinators
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert((kind, key.to_string()), info.clone());
        Ok(info)
    }

    /// Forgets a cached coordinator (after NOT_COORDINATOR and similar).
    pub fn invalidate_coordinator(&self, kind: CoordinatorType, key: &str) {
        self.coordinators
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&(kind, key.to_string()));
    }

    /// Runs `op` until it succeeds, fails with a non-retriable error, or the retry budget is
    /// spent. Between attempts it refreshes metadata when the error calls for it.
    pub async fn retry<T, F, Fut>(&self, what: &str, mut op: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let mut backoff = Backoff::new(&self.config.retry, Instant::now());
        loop {
            let err = match op().await {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            if !err.is_retriable() {
                return Err(err);
            }
            let Some(delay) = backoff.next_delay(Instant::now()) else {
                warn!(what, attempts = backoff.attempts(), error = %err, "giving up");
                return Err(Error::RetriesExhausted {
                    attempts: backoff.attempts(),
                    elapsed: backoff.elapsed(Instant::now()),
                    last: Box::new(err),
                });
            };
            debug!(what, attempt = backoff.attempts(), ?delay, error = %err, "retrying");
            self.retries.note(what, &err);
            tokio::time::sleep(delay).await;
            if err.needs_metadata_refresh() {
                if let Err(e) = self.refresh_metadata().await {
                    debug!(what, error = %e, "metadata refresh failed");
                }
            }
        }
    }
}

/// Whether responses to `api` at `version` leave throttling to the client (KIP-219).
fn client_throttles(api: ApiKey, version: i16) -> bool {
    match api {
        ApiKey::Produce => version >= 6,
        ApiKey::Fetch => version >= 8,
        _ => false,
    }
}

async fn refresh_periodically(cluster: Weak<Cluster>) {
    loop {
        let wait = match cluster.upgrade() {
            Some(c) => {
                let age = c
                    .last_refresh
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .elapsed();
                let max = c.config.metadata_max_age;
                if age >= max {
                    if let Err(e) = c.refresh_metadata().await {
                        info!(error = %e, "periodic metadata refresh failed");
                    }
                    max
                } else {
                    max - age
                }
            }
            None => return,
        };
        tokio::time::sleep(wait).await;
    }
}
