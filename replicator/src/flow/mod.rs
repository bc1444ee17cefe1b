//! One replication flow `A->B`: topics, the data path, progress, offset syncs and checkpoints.
//!
//! # Data path
//! A fetch loop polls the source (all assigned partitions, every leader concurrently), plans each
//! partition's bytes ([`plan`]) and appends the batches to the same partition of the remote
//! topic through the target producer, without decoding them. Appends are queued in order; each
//! partition's acknowledgements are consumed, in the same order, by that partition's ack lane,
//! which feeds the exact upstream→downstream mapping into the partition's [`OffsetMap`] and the
//! MM2 offset-sync rule. Memory is bounded by an in-flight byte budget
//! (`strait.inflight.bytes`): a batch waits for budget before it is appended, and the fetch loop
//! waits with it (backpressure).
//!
//! # Tasks
//! | task | owns | reads | ends when | its error goes |
//! |---|---|---|---|---|
//! | fetch loop (`run`) | fetcher, budget, lanes' senders | stop, failure channel | stop, its own error, or the first failure reported | returned by `run` |
//! | ack lane (one per partition) | that partition's queue of acknowledgements | producer acks | its sender is dropped (drain), or its first failed ack | failure channel |
//! | commit loop | — | flow state (locked briefly) | aux stop | failure channel, after [`PERIODIC_FAILURE_LIMIT`] of failures |
//! | checkpoint loop | checkpoint state | source groups, flow state | aux stop | failure channel, likewise |
//!
//! Drain order when the fetch loop ends: lanes closed and awaited (each records what is in
//! flight, or stops at its first failure) → aux stop → commit and checkpoint tasks awaited →
//! failures reported meanwhile collected → final commit. The first failure is the flow's error.
//!
//! # Durability and resume
//! Every commit interval (and at shutdown) the flow writes, in this order: changed offset-map
//! runs (`mm2-offset-map.<source>.internal`), MM2 offset syncs, then MM2 source progress
//! (`mm2-offsets.<source>.internal`). On start each partition resumes from its offset map: if
//! the remote partition holds more than the map knows (a crash after the target acknowledged
//! but before the commit), the remote tail is matched batch by batch against the source
//! ([`resume`]), which finds the exact next upstream offset: nothing lost, nothing duplicated.
//!
//! # Checkpoints
//! Every `emit.checkpoints.interval.seconds` the source groups' committed offsets are translated
//! exactly through the offset maps and written as MM2 checkpoints; with
//! `sync.group.offsets.enabled` they are also committed into idle target groups (never rewinding).

pub mod plan;
mod ready;
pub mod resume;
mod topic_ids;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use protocol_client::admin::{AclFilter, Admin, AlterOp, NewTopic};
use protocol_client::cluster::Cluster;
use protocol_client::fetcher::{Fetcher, FetcherConfig, IsolationLevel, OutOfRangeKind};
use protocol_client::producer::records::ProducerRecord;
use protocol_client::producer::{ProduceAck, Producer};
use protocol_client::record::DecodeLimits;
use protocol_client::ResponseError;
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};
use tracing::{debug, error, info, warn};

use crate::config::{self, FlowConfig};
use crate::error::{Error, Result};
use crate::formats::{Checkpoint, OffsetMapRecord, OffsetSync, SourceProgress, SourceProgressKey};
use crate::internal::{self, offset_map_topic};
use crate::metrics::{Acked, FlowMetrics, Metrics};
use crate::offsets::{
    conservative_below, decide_group_offset_sync, CheckpointState, CommittedOffset,
    Mm2OffsetSyncStore, OffsetMap, SyncEmitter, SyncPoint, TargetGroupState, TopicPartition,
};

/// The source topics (and their partition counts) the flow replicates, from the source's
/// metadata: the topic filter (and heartbeats when replicated), minus internal topics and
/// cycles back to the target.
pub fn selected_topics(
    config: &FlowConfig,
    md: &protocol_client::cluster::Metadata,
) -> BTreeMap<String, i32> {
    let policy = &config.policy;
    let mut out = BTreeMap::new();
    for (name, t) in &md.topics {
        let wanted = config.topics.should_replicate_topic(name)
            || (config.replicate_heartbeats && policy.is_heartbeats_topic(name));
        if wanted
            && !policy.is_internal_topic(name)
            && !t.is_internal
            && !policy.is_cycle(name, &config.target)
        {
            out.insert(name.clone(), t.partitions.len() as i32);
        }
    }
    out
}

/// Every this long (MM2's default `offset.flush.interval.ms`) the offset syncs MM2's rule
/// delayed are flushed, as MM2 does at each offset flush since KAFKA-15906: at the first commit
/// after it.
pub const SYNC_FLUSH_INTERVAL: Duration = Duration::from_secs(60);

type AckFuture = Pin<Box<dyn Future<Output = protocol_client::Result<ProduceAck>> + Send>>;

enum AckItem {
    /// Boxed: a lane's channel allocates room for 32 items at once, per partition.
    Forward(Box<Forward>),
    Skip {
        next: i64,
    },
    /// Answered once everything queued on the lane before it is applied (a partition being
    /// released waits for it before its progress is committed).
    Barrier(tokio::sync::oneshot::Sender<()>),
}

/// A forwarded batch waiting for its acknowledgement.
struct Forward {
    /// First upstream offset of the batch (for error messages).
    first: i64,
    /// Records, bytes and newest timestamp of the batch (for metrics).
    records: u64,
    bytes: u64,
    max_timestamp: i64,
    stretches: Vec<(i64, i64)>,
    next: i64,
    ack: AckFuture,
    _permit: Held,
}

/// Budget a partition holds for one batch in flight: released (to the flow's budget and the
/// partition's own count) when its lane has applied the acknowledgement.
struct Held {
    _permit: OwnedSemaphorePermit,
    bytes: usize,
    partition: Arc<AtomicUsize>,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.partition.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

/// One acknowledgement lane (a task) per partition, so a slow or retrying partition holds up
/// only itself; lanes are created on a partition's first append.
struct Lanes {
    senders: HashMap<(String, i32), mpsc::UnboundedSender<AckItem>>,
    tasks: tokio::task::JoinSet<()>,
    fail: mpsc::UnboundedSender<Error>,
}

impl Lanes {
    fn new(fail: mpsc::UnboundedSender<Error>) -> Lanes {
        Lanes {
            senders: HashMap::new(),
            tasks: tokio::task::JoinSet::new(),
            fail,
        }
    }

    /// Queues `item` on `key`'s lane; false when that lane has ended (it failed).
    fn send(&mut self, flow: &Arc<Flow>, key: &(String, i32), item: AckItem) -> bool {
        let Lanes {
            senders,
            tasks,
            fail,
        } = self;
        let tx = senders.entry(key.clone()).or_insert_with(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            tasks.spawn(flow.clone().ack_lane(key.clone(), rx, fail.clone()));
            tx
        });
        tx.send(item).is_ok()
    }

    /// Closes `key`'s lane; the receiver answers once everything it was given is applied
    /// (errs if the lane failed first). `None`: the partition has no lane.
    fn close(&mut self, key: &(String, i32)) -> Option<tokio::sync::oneshot::Receiver<()>> {
        let tx = self.senders.remove(key)?;
        let (done, applied) = tokio::sync::oneshot::channel();
        // A lane that failed drops the barrier: the release waits for nothing and aborts.
        let _ = tx.send(AckItem::Barrier(done));
        Some(applied)
    }

    /// Closes every lane and waits until each has recorded what it was given (a lane's
    /// failure went to the flow's failure channel).
    async fn drain(mut self) {
        self.senders.clear();
        while let Some(joined) = self.tasks.join_next().await {
            if let Err(e) = joined {
                report(
                    &self.fail,
                    Error::Other(format!("ack lane ended abnormally: {e}")),
                );
            }
        }
    }
}

/// Replication state of one source partition.
#[derive(Debug)]
pub struct PartitionState {
    /// Remote topic name.
    pub remote_topic: String,
    /// Exact offset map.
    pub map: OffsetMap,
    emitter: SyncEmitter,
    committed_next: Option<i64>,
    /// Exactly-once mode: every upstream offset below this is mirrored in a committed
    /// transaction (resumed from what read_committed showed, or committed since). Checkpoints
    /// translate only up to it: above it the downstream records may still be aborted.
    durable_next: Option<i64>,
}

/// Everything the tasks of a flow share.
#[derive(Debug, Default)]
pub struct FlowState {
    /// Per source partition.
    pub partitions: HashMap<(String, i32), PartitionState>,
    pending_syncs: Vec<OffsetSync>,
    /// Partitions stopped during this run, and why: the run then ends with an error naming
    /// them (the exit status shows it), whatever else happened.
    pub stopped: BTreeMap<(String, i32), String>,
    /// Source ranges lost during this run (deleted before they were mirrored): the partition
    /// goes on as `auto.offset.reset` says, and the run ends with an error listing them.
    pub data_loss: Vec<String>,
}

/// Where a flow reports the partitions it released.
pub type Released = mpsc::UnboundedSender<BTreeSet<(String, i32)>>;

/// A change of the partitions a flow may replicate ([`Flow::with_ownership`]). Changes are
/// applied in the order sent (never merged), and every partition taken away is reported
/// released exactly once: after its appends and commit if it was running, at once if it was
/// not.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OwnershipChange {
    /// Partitions given.
    pub give: BTreeSet<(String, i32)>,
    /// Partitions taken away.
    pub take: BTreeSet<(String, i32)>,
}

/// Which source partitions a flow replicates: all (one process) or an owned set.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
enum Owned {
    #[default]
    All,
    Only(BTreeSet<(String, i32)>),
}

impl Owned {
    fn owns(&self, key: &(String, i32)) -> bool {
        match self {
            Owned::All => true,
            Owned::Only(s) => s.contains(key),
        }
    }
}

/// The scale-out wiring of a flow: what it owns at start, where changes arrive and where
/// releases are reported.
struct Ownership {
    initial: BTreeSet<(String, i32)>,
    changes: std::sync::Mutex<Option<mpsc::UnboundedReceiver<OwnershipChange>>>,
    released: Released,
}

/// Whether a process runs a flow's once-per-flow work now (scale-out: the member the group gave
/// the flow's leader unit). Checkpoints, group offset sync and topic config/ACL sync run only
/// while `leader` is true, each round holding `work`: whoever takes leadership away sets
/// `leader` false, then takes `work`, and from then on no round of this process runs.
///
/// With a `lease` (the membership's, see [`protocol_client::producer::ProducerConfig::send_gate`])
/// the process leads only while the lease holds, and writes its progress (offset maps, syncs,
/// MM2 progress) only while it holds: a member woken after its session writes nothing before
/// it learns it is out.
#[derive(Clone, Debug)]
pub struct Leadership {
    /// `Some(epoch)` while this process leads the flow (a new epoch each time it gains it).
    pub leader: watch::Receiver<Option<u64>>,
    /// Held by every round of leader work.
    pub work: Arc<tokio::sync::Mutex<()>>,
    /// The membership lease.
    pub lease: Option<protocol_client::producer::SendGate>,
}

/// Partitions a remote topic is created or grown by in one operation: a KRaft controller
/// refuses an operation of more than 10 000 metadata records, and the topic record and its
/// configs count too.
const PARTITIONS_PER_OPERATION: i32 = 9_000;

/// Splits topics to create into CreateTopics requests that each stay within one controller
/// operation's metadata records (one per partition, one per config, one per topic).
fn operations(topics: &[NewTopic]) -> Vec<&[NewTopic]> {
    let records = |t: &NewTopic| t.partitions.max(0) as usize + t.configs.len() + 1;
    let mut out = Vec::new();
    let mut start = 0;
    let mut sum = 0;
    for (i, t) in topics.iter().enumerate() {
        let n = records(t);
        if i > start && sum + n > OPERATION_RECORDS {
            out.push(&topics[start..i]);
            start = i;
            sum = 0;
        }
        sum += n;
    }
    if start < topics.len() {
        out.push(&topics[start..]);
    }
    out
}

/// Metadata records one CreateTopics request is given (the controller's limit is 10 000).
const OPERATION_RECORDS: usize = 9_500;

/// A running flow.
pub struct Flow {
    /// The flow's settings.
    pub config: FlowConfig,
    source: Arc<Cluster>,
    target: Arc<Cluster>,
    source_admin: Admin,
    target_admin: Admin,
    /// Internal records (offset map, progress, checkpoints).
    producer: Producer,
    /// Forwarded batches; stops a partition at its first failed batch.
    data_producer: Producer,
    sync_producer: Producer,
    /// Shared state (the checkpoint task and `strait check` read it).
    pub state: Arc<Mutex<FlowState>>,
    checkpoints: Mutex<CheckpointState>,
    limits: DecodeLimits,
    warned: Mutex<HashSet<&'static str>>,
    /// Groups whose offsets could not be read on the source last time.
    group_read_failing: GroupFailures,
    /// Target groups whose offset sync failed last time.
    group_sync_failing: GroupFailures,
    /// MM2's offset syncs per source partition (distinct, newest first), read once on the
    /// first checkpoint round: they translate, as MM2 would, offsets below where Strait's
    /// exact maps start (groups that committed before Strait took over from MM2).
    mm2_syncs: tokio::sync::OnceCell<HashMap<(String, i32), Vec<SyncPoint>>>,
    /// Failures reading what failback checkpoints need (the reverse flow's offset maps).
    failback_failing: GroupFailures,
    /// What the flow did, for `/metrics` and the health probes.
    metrics: Arc<FlowMetrics>,
    /// Per source topic, the largest batch small source batches are merged into:
    /// `strait.coalesce.bytes` capped by the remote topic's `max.message.bytes` (a merged batch
    /// must not be refused where its parts were not). No entry: not merged.
    coalesce_limits: Mutex<HashMap<String, usize>>,
    /// The partitions this process may replicate, and where it reports those it released
    /// (drained and committed) after they were taken away.
    ownership: Option<Ownership>,
    /// One commit at a time (the commit task, releases and the final commit).
    commit_lock: tokio::sync::Mutex<()>,
    /// Scale-out: when this process runs the flow's once-per-flow work (`None`: always).
    leadership: Option<Leadership>,
    /// Scale-out: the membership was lost; this run writes nothing more (no commit).
    abandoned: std::sync::atomic::AtomicBool,
}

/// Per-group failures of a periodic job, logged when a group starts failing (warning, with the
/// error) and when it works again, not every round: one group the cluster refuses (its ACLs)
/// never stops the others or the flow.
#[derive(Default)]
struct GroupFailures(Mutex<HashSet<String>>);

impl GroupFailures {
    fn observe<T>(&self, flow: &str, group: &str, what: &str, r: &Result<T>) {
        let mut failing = self.0.lock().unwrap_or_else(|p| p.into_inner());
        match r {
            Ok(_) => {
                if failing.remove(group) {
                    info!(flow, group, "{what} works again");
                }
            }
            Err(e) => {
                if failing.insert(group.to_string()) {
                    warn!(flow, group, error = %e, "{what} failed for this group; retried every round, other groups go on");
                } else {
                    debug!(flow, group, error = %e, "{what} still failing");
                }
            }
        }
    }
}

impl std::fmt::Debug for Flow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Flow")
            .field("source", &self.config.source)
            .field("target", &self.config.target)
            .finish()
    }
}

fn isolation(level: config::IsolationLevel) -> IsolationLevel {
    match level {
        config::IsolationLevel::ReadCommitted => IsolationLevel::ReadCommitted,
        config::IsolationLevel::ReadUncommitted => IsolationLevel::ReadUncommitted,
    }
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Flow {
    /// Prepares a flow over connected clusters and producers.
    pub fn new(
        config: FlowConfig,
        source: Arc<Cluster>,
        target: Arc<Cluster>,
        producer: Producer,
        sync_producer: Producer,
    ) -> Flow {
        let (config_source, config_target) = (config.source.clone(), config.target.clone());
        Flow {
            source_admin: Admin::new(source.clone()),
            target_admin: Admin::new(target.clone()),
            config,
            source,
            target,
            data_producer: producer.clone(),
            producer,
            sync_producer,
            state: Arc::new(Mutex::new(FlowState::default())),
            checkpoints: Mutex::new(CheckpointState::new()),
            limits: DecodeLimits::default(),
            warned: Mutex::new(HashSet::new()),
            group_read_failing: GroupFailures::default(),
            group_sync_failing: GroupFailures::default(),
            mm2_syncs: tokio::sync::OnceCell::new(),
            coalesce_limits: Mutex::new(HashMap::new()),
            failback_failing: GroupFailures::default(),
            metrics: Metrics::new().flow(&config_source, &config_target),
            ownership: None,
            commit_lock: tokio::sync::Mutex::new(()),
            leadership: None,
            abandoned: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Replicates only the partitions it owns: `initial`, then as `changes` say. A partition
    /// taken away is **released** (no longer fetched; the run waits for its appends, commits
    /// its progress, forgets it, then sends it on `released`; one that was not running is
    /// reported at once); a partition given is resumed from its stored progress (read again:
    /// another process may have written it since) and the remote tail, as after a restart.
    /// One run of the flow consumes `changes` (a restarted flow needs a new channel).
    pub fn with_ownership(
        mut self,
        initial: BTreeSet<(String, i32)>,
        changes: mpsc::UnboundedReceiver<OwnershipChange>,
        released: Released,
    ) -> Flow {
        self.ownership = Some(Ownership {
            initial,
            changes: std::sync::Mutex::new(Some(changes)),
            released,
        });
        self
    }

    /// Runs checkpoints, group offset sync and topic config/ACL sync only while `leadership`
    /// says this process leads the flow. Gaining it reloads the checkpoints written so far
    /// (by the previous leader), so checkpoints stay monotonic across hand-overs; with
    /// ownership, checkpoints translate through the stored offset maps of partitions other
    /// processes replicate.
    pub fn with_leadership(mut self, leadership: Leadership) -> Flow {
        self.leadership = Some(leadership);
        self
    }

    /// Whether this process runs the flow's once-per-flow work now.
    fn leads(&self) -> bool {
        self.leader_epoch().is_some()
    }

    /// The epoch of this process's leadership of the flow (0 without scale-out), if it leads
    /// and its lease holds.
    fn leader_epoch(&self) -> Option<u64> {
        match &self.leadership {
            None => Some(0),
            Some(l) => {
                let epoch = (*l.leader.borrow())?;
                self.leased().then_some(epoch)
            }
        }
    }

    /// Whether this process may write: not abandoned, and its membership lease (if any) holds.
    fn leased(&self) -> bool {
        if self.abandoned.load(Ordering::Acquire) {
            return false;
        }
        match self.leadership.as_ref().and_then(|l| l.lease.as_ref()) {
            None => true,
            Some(lease) => (*lease.borrow()).is_some_and(|u| std::time::Instant::now() < u),
        }
    }

    /// The membership was lost: this run writes nothing more (its progress included; the
    /// next owner matches the remote tail).
    pub fn abandon(&self) {
        self.abandoned.store(true, Ordering::Release);
    }

    /// Held while a round of once-per-flow work runs (a guard of nothing without leadership).
    async fn leader_work(&self) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        match &self.leadership {
            Some(l) => Some(l.work.lock().await),
            None => None,
        }
    }

    /// Counts into `metrics` (the process's, served on `/metrics`) instead of a private set.
    pub fn with_metrics(mut self, metrics: Arc<FlowMetrics>) -> Flow {
        self.metrics = metrics;
        self
    }

    /// Forwards batches through `producer` instead of the internal-records producer. It should
    /// be one made for this run of the flow, with `stop_partition_on_failure`, and aborted when
    /// the run ends, so a restarted flow never races batches of its predecessor.
    pub fn with_data_producer(mut self, producer: Producer) -> Flow {
        self.data_producer = producer;
        self
    }

    fn src(&self) -> impl FnOnce(protocol_client::Error) -> Error + '_ {
        Error::client(&self.config.source)
    }

    fn tgt(&self) -> impl FnOnce(protocol_client::Error) -> Error + '_ {
        Error::client(&self.config.target)
    }

    /// Unassigns the partitions of source topics deleted and re-created under the same name
    /// (a new topic id) and records them as stopped: their records are never mixed into the
    /// old remote partitions.
    fn stop_recreated(
        &self,
        ids: &mut topic_ids::TopicIds,
        fetcher: &mut Fetcher,
        assigned: &mut HashSet<(String, i32)>,
    ) {
        let md = self.source.metadata();
        for topic in ids.changed(&md) {
            let mut keys: Vec<_> = assigned.iter().filter(|k| k.0 == topic).cloned().collect();
            if keys.is_empty() {
                // Unassigned when it was deleted: the re-created topic's partitions.
                let n = md
                    .topics
                    .get(&topic)
                    .map_or(0, |t| t.partitions.len() as i32);
                keys = (0..n).map(|p| (topic.clone(), p)).collect();
            }
            for key in &keys {
                fetcher.unassign(&key.0, key.1);
                assigned.remove(key);
                error!(flow = %self.name(), topic = %key.0, partition = key.1, "partition stopped: the source topic was deleted and re-created (its topic id changed); its records are not mixed into the old remote partition");
                self.record_stopped(key, "the source topic was re-created (new topic id)".into());
            }
        }
    }

    /// Records that a partition stopped (it is paused, the rest of the flow goes on).
    fn record_stopped(&self, key: &(String, i32), why: String) {
        self.metrics.stopped(&key.0, key.1);
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .stopped
            .insert(key.clone(), why);
    }

    fn warn_once(&self, what: &'static str, message: String) {
        if self
            .warned
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(what)
        {
            warn!(flow = %self.name(), "{message}");
        }
    }

    /// `A->B`.
    pub fn name(&self) -> String {
        self.config.name()
    }

    /// Source topics this flow replicates, with their partition counts (MM2's
    /// `shouldReplicateTopic`: the topic filter or a heartbeats topic, never internal topics,
    /// never a cycle back to the target).
    pub async fn select_topics(&self) -> Result<BTreeMap<String, i32>> {
        let md = self.source.refresh_all_topics().await.map_err(self.src())?;
        Ok(selected_topics(&self.config, &md))
    }

    /// Remote name of a source topic.
    pub fn remote_topic(&self, topic: &str) -> String {
        self.config
            .policy
            .format_remote_topic(&self.config.source, topic)
    }

    /// Source topic configs to carry to the remote topic: MM2's filtered set, plus the source's
    /// effective `max.message.bytes`.
    async fn replicated_configs(&self, topic: &str) -> Result<Vec<(String, String)>> {
        Ok(self.config_changes(topic).await?.0)
    }

    /// [`replicated_configs`](Self::replicated_configs), and the properties the source topic
    /// does not override: with `use.defaults.from=target` (MM2's default) config sync DELETEs
    /// them on the remote topic, so an override removed on the source is removed on the target
    /// too and the target's default applies (MM2 4.x, incremental config sync: it DELETEs the
    /// entries whose source value is a default).
    async fn config_changes(&self, topic: &str) -> Result<(Vec<(String, String)>, Vec<String>)> {
        let described = self
            .source_admin
            .describe_topic_configs(&[topic.to_string()])
            .await
            .map_err(self.src())?;
        let mut out = Vec::new();
        let mut delete = Vec::new();
        let defaults_from_target =
            self.config.config_properties.defaults_from() == crate::filter::DefaultsFrom::Target;
        for (_, entries) in described {
            let entries = match entries {
                Ok(e) => e,
                Err(e) => {
                    self.warn_once("describe-configs", format!("cannot describe configs of source topics ({e}); remote topics get broker defaults"));
                    return Ok((Vec::new(), Vec::new()));
                }
            };
            for e in entries {
                if e.read_only || e.is_sensitive {
                    continue;
                }
                let broker_level = matches!(
                    e.source,
                    protocol_client::admin::ConfigSource::StaticBroker
                        | protocol_client::admin::ConfigSource::DynamicBroker
                        | protocol_client::admin::ConfigSource::DynamicDefaultBroker
                );
                if e.name != "max.message.bytes"
                    && defaults_from_target
                    && (broker_level || e.is_default)
                    && self
                        .config
                        .config_properties
                        .should_replicate_config_property(&e.name)
                {
                    delete.push(e.name.clone());
                }
                let Some(value) = e.value else { continue };
                if e.name != "max.message.bytes" && broker_level {
                    continue;
                }
                // A remote topic must accept every batch the source accepted: its
                // `max.message.bytes` is carried even when the source's is a broker default.
                if e.name == "max.message.bytes"
                    || self
                        .config
                        .config_properties
                        .should_replicate(&e.name, e.is_default)
                {
                    out.push((e.name, value));
                }
            }
        }
        Ok((out, delete))
    }

    /// Creates missing remote topics (source partition count, `replication.factor`, filtered
    /// configs) and grows partition counts, before any record is written.
    ///
    /// Missing topics are created together, as many per CreateTopics request as one controller
    /// operation takes: a broker creating a large topic's logs answers a request for the next
    /// topic only when it is done (3.7 s for a 16-partition topic behind a 1000-partition one,
    /// measured), so creating them one after the other adds those waits up.
    ///
    /// Returns once every partition of the topics it created answers on its leader (see
    /// [`internal::wait_until_ready`]); at start, [`create_remote_topics`](Self::create_remote_topics)
    /// returns before that and partitions are resumed as they become ready.
    pub async fn sync_topics(&self, topics: &BTreeMap<String, i32>) -> Result<()> {
        for (_, remote, partitions) in self.create_remote_topics(topics).await? {
            internal::wait_until_ready(&self.target, &self.config.target, &remote, partitions)
                .await?;
        }
        Ok(())
    }

    /// One poll of the new remote partitions not served yet (one ListOffsets per leader): those
    /// that answer now leave `not_ready`, and are returned. A leader that cannot be reached
    /// serves nothing yet; one that refuses this client (TLS, SASL) fails the flow.
    async fn poll_not_ready(&self, not_ready: &mut ready::NotReady) -> Result<Vec<(String, i32)>> {
        let waiting = not_ready.waiting();
        let md = self.target.metadata();
        let leaderless = waiting.iter().any(|(remote, parts)| {
            parts
                .iter()
                .any(|&p| md.partition(remote, p).is_none_or(|i| i.leader < 0))
        });
        if leaderless {
            if let Err(e) = self.target.refresh_metadata().await {
                if e.is_security() {
                    return Err(self.tgt()(e));
                }
                debug!(flow = %self.name(), error = %e, "metadata refresh for new remote partitions failed");
            }
        }
        let mut served = Vec::new();
        for (remote, parts) in waiting {
            match protocol_client::fetcher::partitions_not_ready(&self.target, &remote, &parts)
                .await
            {
                Ok(still) => served.extend(not_ready.answered(&remote, &parts, &still)),
                Err(e) if e.is_security() => return Err(self.tgt()(e)),
                Err(e) => {
                    debug!(flow = %self.name(), %remote, error = %e, "polling new remote partitions failed")
                }
            }
        }
        if !served.is_empty() {
            debug!(flow = %self.name(), served = served.len(), waiting = not_ready.keys().len(), "new remote partitions served");
        }
        Ok(served)
    }

    /// [`sync_topics`](Self::sync_topics) without waiting for the new partitions' logs: the
    /// topics it created (source name, remote name, partitions), whose partitions have leaders
    /// in the target's metadata but may not answer on them yet. A broker creates a new
    /// partition's log when its metadata reaches it, one partition after the other (2.9-5.9 s
    /// for 1000 partitions on this machine), and serves each as soon as its own log exists.
    async fn create_remote_topics(
        &self,
        topics: &BTreeMap<String, i32>,
    ) -> Result<Vec<(String, String, i32)>> {
        let md = self.target.refresh_all_topics().await.map_err(self.tgt())?;
        let mut missing: Vec<NewTopic> = Vec::new();
        let mut sources: HashMap<String, (&String, i32)> = HashMap::new();
        for (topic, &partitions) in topics {
            let remote = self.remote_topic(topic);
            match md.topics.get(&remote) {
                None => {
                    let configs = self.replicated_configs(topic).await?;
                    // A KRaft controller takes at most 10 000 metadata records per operation
                    // (`QuorumController.MAX_RECORDS_PER_USER_OP`: one per partition, one per
                    // config, one for the topic) and refuses more with POLICY_VIOLATION: a
                    // larger topic is created in steps, growing by CreatePartitions.
                    missing.push(NewTopic {
                        name: remote.clone(),
                        partitions: partitions.min(PARTITIONS_PER_OPERATION),
                        replication_factor: self.config.replication_factor,
                        configs,
                    });
                    sources.insert(remote, (topic, partitions));
                }
                Some(t) if (t.partitions.len() as i32) < partitions => {
                    match self.target_admin.create_partitions(&remote, partitions).await {
                        Ok(()) => info!(flow = %self.name(), %remote, partitions, "grew remote topic"),
                        Err(e) => self.warn_once(
                            "create-partitions",
                            format!("cannot grow {remote} to {partitions} partitions ({e}); the new source partitions are not replicated until it can"),
                        ),
                    }
                    self.target.track_topics([remote.as_str()]);
                }
                Some(_) => {}
            }
        }
        let mut created: Vec<&NewTopic> = Vec::new();
        // The first failure is returned once the topics created meanwhile are complete (grown
        // in steps, served): a topic left at its first step would be grown later by one
        // CreatePartitions larger than a controller takes.
        let mut failed: Option<Error> = None;
        for group in operations(&missing) {
            let res = match self.target_admin.create_topics(group).await {
                Ok(res) => res,
                Err(e) => {
                    failed.get_or_insert(self.tgt()(e));
                    continue;
                }
            };
            for (remote, r) in res {
                let Some(new) = group.iter().find(|t| t.name == remote) else {
                    continue;
                };
                match r {
                    Ok(()) => {
                        let (topic, partitions) = sources[&remote];
                        info!(flow = %self.name(), %topic, %remote, partitions, configs = new.configs.len(), "created remote topic");
                        created.push(new);
                    }
                    Err(e) if e.response_error() == Some(ResponseError::TopicAlreadyExists) => {
                        // Made meanwhile by someone else: grown like any existing remote topic
                        // (the next refresh), not here.
                        if let Err(e) =
                            internal::wait_for_topic(&self.target, &self.config.target, &remote)
                                .await
                        {
                            failed.get_or_insert(e);
                        }
                    }
                    Err(e) => {
                        failed.get_or_insert(self.tgt()(e));
                    }
                }
            }
        }
        for new in &created {
            let (_, partitions) = sources[&new.name];
            let remote = &new.name;
            let mut made = new.partitions;
            while made < partitions {
                internal::wait_for_partitions(&self.target, &self.config.target, remote, made)
                    .await?;
                made = (made + PARTITIONS_PER_OPERATION).min(partitions);
                self.target_admin
                    .create_partitions(remote, made)
                    .await
                    .map_err(self.tgt())?;
                info!(flow = %self.name(), %remote, partitions = made, "grew remote topic (created in steps)");
            }
            internal::wait_for_partitions(&self.target, &self.config.target, remote, partitions)
                .await?;
        }
        if let Some(e) = failed {
            return Err(e);
        }
        self.target.refresh_metadata().await.map_err(self.tgt())?;
        self.learn_coalesce_limits(topics).await;
        Ok(created
            .into_iter()
            .map(|new| {
                let (topic, partitions) = sources[&new.name];
                (topic.clone(), new.name.clone(), partitions)
            })
            .collect())
    }

    /// Reads the remote topics' `max.message.bytes` and sets how large merged batches of each
    /// topic may be. A topic whose limit cannot be read is not merged (its batches go as they
    /// came), with a warning.
    async fn learn_coalesce_limits(&self, topics: &BTreeMap<String, i32>) {
        let wanted = self.config.coalesce_bytes;
        if wanted == 0 || topics.is_empty() {
            return;
        }
        let remotes: Vec<String> = topics.keys().map(|t| self.remote_topic(t)).collect();
        let described = match self.target_admin.describe_topic_configs(&remotes).await {
            Ok(d) => d,
            Err(e) => {
                self.warn_once("coalesce-limits", format!("cannot read the remote topics' max.message.bytes ({e}); small batches are forwarded unmerged"));
                return;
            }
        };
        let by_remote: HashMap<String, usize> = described
            .into_iter()
            .filter_map(|(remote, entries)| {
                let limit = entries
                    .ok()?
                    .into_iter()
                    .find(|e| e.name == "max.message.bytes")?
                    .value?
                    .parse::<usize>()
                    .ok()?;
                Some((remote, limit))
            })
            .collect();
        let mut limits = self
            .coalesce_limits
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        for topic in topics.keys() {
            match by_remote.get(&self.remote_topic(topic)) {
                Some(&limit) => {
                    limits.insert(topic.clone(), wanted.min(limit));
                }
                None => {
                    limits.remove(topic);
                }
            }
        }
    }

    /// How large merged batches of `topic` may be (0: not merged).
    fn coalesce_limit(&self, topic: &str) -> usize {
        self.coalesce_limits
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(topic)
            .copied()
            .unwrap_or(0)
    }

    /// MM2's topic config sync: SET the filtered source configs on existing remote topics, and
    /// DELETE the overrides of what the source leaves at its default (`use.defaults.from=target`).
    pub async fn sync_topic_configs(&self, topics: &BTreeMap<String, i32>) -> Result<()> {
        for topic in topics.keys() {
            let (configs, mut delete) = self.config_changes(topic).await?;
            if !delete.is_empty() {
                // Only overrides the remote topic has (a property the target does not know
                // would fail the whole request).
                let remote = self.remote_topic(topic);
                let overridden: HashSet<String> = match self
                    .target_admin
                    .describe_topic_configs(std::slice::from_ref(&remote))
                    .await
                {
                    Ok(described) => described
                        .into_iter()
                        .filter_map(|(_, r)| r.ok())
                        .flatten()
                        .filter(|e| e.source == protocol_client::admin::ConfigSource::DynamicTopic)
                        .map(|e| e.name)
                        .collect(),
                    Err(_) => HashSet::new(),
                };
                delete.retain(|k| overridden.contains(k));
            }
            if configs.is_empty() && delete.is_empty() {
                continue;
            }
            let ops: Vec<_> = configs
                .into_iter()
                .map(|(k, v)| (k, AlterOp::Set, Some(v)))
                .chain(delete.into_iter().map(|k| (k, AlterOp::Delete, None)))
                .collect();
            if let Err(e) = self
                .target_admin
                .incremental_alter_topic_configs(&self.remote_topic(topic), &ops)
                .await
            {
                self.warn_once(
                    "alter-configs",
                    format!("topic config sync failed ({e}); continuing without it"),
                );
            }
        }
        // `max.message.bytes` may have changed on either side.
        self.learn_coalesce_limits(topics).await;
        Ok(())
    }

    /// MM2's ACL sync: literal TOPIC ACLs of replicated topics, ALLOW WRITE dropped, ALLOW ALL
    /// downgraded to ALLOW READ, created on the remote topic names, never deleted.
    pub async fn sync_topic_acls(&self, topics: &BTreeMap<String, i32>) -> Result<()> {
        use protocol_client::admin::{acl_operation, permission_type};
        let acls = match self
            .source_admin
            .describe_acls(&AclFilter::literal_topics())
            .await
        {
            Ok(a) => a,
            Err(e) => {
                self.warn_once(
                    "describe-acls",
                    format!("source cluster does not describe ACLs ({e}); ACL sync is off"),
                );
                return Ok(());
            }
        };
        let mut out = Vec::new();
        for mut acl in acls {
            if !topics.contains_key(&acl.resource_name) {
                continue;
            }
            if acl.permission_type == permission_type::ALLOW
                && acl.operation == acl_operation::WRITE
            {
                continue;
            }
            if acl.permission_type == permission_type::ALLOW && acl.operation == acl_operation::ALL
            {
                acl.operation = acl_operation::READ;
            }
            acl.resource_name = self.remote_topic(&acl.resource_name);
            out.push(acl);
        }
        if out.is_empty() {
            return Ok(());
        }
        match self.target_admin.create_acls(&out).await {
            Ok(results) => {
                for r in results.into_iter().filter_map(|r| r.err()) {
                    self.warn_once(
                        "create-acls",
                        format!("creating ACLs on the target failed ({r})"),
                    );
                }
            }
            Err(e) => self.warn_once(
                "create-acls",
                format!("target cluster does not accept ACLs ({e}); ACL sync is off"),
            ),
        }
        Ok(())
    }

    /// Creates this flow's internal topics where they are missing.
    pub async fn ensure_internal_topics(&self) -> Result<()> {
        let c = &self.config;
        let (syncs_topic, syncs_alias) = c.offset_syncs_topic();
        let syncs_admin = if syncs_alias == c.source {
            &self.source_admin
        } else {
            &self.target_admin
        };
        internal::ensure_compacted_topic(
            &self.target_admin,
            &c.target,
            &offset_map_topic(&c.source),
            1,
            c.offset_storage_replication_factor,
        )
        .await?;
        internal::ensure_compacted_topic(
            &self.target_admin,
            &c.target,
            &c.offset_storage_topic,
            c.offset_storage_partitions,
            c.offset_storage_replication_factor,
        )
        .await?;
        if c.emit_offset_syncs {
            internal::ensure_compacted_topic(
                syncs_admin,
                syncs_alias,
                &syncs_topic,
                1,
                c.offset_syncs_topic_replication_factor,
            )
            .await?;
        }
        if c.emit_checkpoints {
            internal::ensure_compacted_topic(
                &self.target_admin,
                &c.target,
                &c.checkpoints_topic(),
                1,
                c.checkpoints_topic_replication_factor,
            )
            .await?;
        }
        Ok(())
    }

    /// Loads offset maps, MM2 progress and checkpoints written by earlier runs.
    async fn load_stored(
        &self,
    ) -> Result<(
        HashMap<(String, i32), OffsetMap>,
        HashMap<(String, i32), i64>,
    )> {
        let (maps, progress) = self.load_progress().await?;
        self.load_checkpoints().await?;
        Ok((maps, progress))
    }

    /// Loads the checkpoints written so far (decisions about the next ones start from them).
    async fn load_checkpoints(&self) -> Result<()> {
        let c = &self.config;
        if c.emit_checkpoints {
            let mut cs = CheckpointState::new();
            let mut skipped = internal::Skipped::default();
            for r in internal::read_to_end(&self.target, &c.target, &c.checkpoints_topic()).await? {
                let (Some(key), Some(value)) = (r.key, r.value) else {
                    continue;
                };
                match Checkpoint::decode(&key, Some(&value)) {
                    Ok(cp) => cs.load(cp),
                    Err(e) => skipped.add(r.offset, &e),
                }
            }
            skipped.warn(&c.target, &c.checkpoints_topic());
            *self.checkpoints.lock().unwrap_or_else(|p| p.into_inner()) = cs;
        }
        Ok(())
    }

    /// The stored offset maps and MM2 progress of every partition.
    async fn load_progress(
        &self,
    ) -> Result<(
        HashMap<(String, i32), OffsetMap>,
        HashMap<(String, i32), i64>,
    )> {
        let c = &self.config;
        let stored =
            internal::read_offset_maps(&self.target, &c.target, &c.source, c.offset_map_max_runs)
                .await?;
        let mut maps = HashMap::new();
        for (key, restored) in stored {
            match restored {
                Ok(m) => {
                    maps.insert(key, m);
                }
                Err(e) => {
                    warn!(flow = %self.name(), topic = %key.0, partition = key.1, error = %e, "stored offset map unusable; partition resumes from MM2 progress")
                }
            }
        }
        let progress = internal::read_progress(&self.target, c).await?;
        Ok((maps, progress))
    }

    /// Runs the flow until `stop` turns true; then finishes in-flight appends and commits.
    pub async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>) -> Result<()> {
        // Scale-out: what this process owns, and the changes to come (applied in order).
        let mut owned = match &self.ownership {
            Some(o) => Owned::Only(o.initial.clone()),
            None => Owned::All,
        };
        let mut changes = match &self.ownership {
            Some(o) => Some(lock(&o.changes).take().ok_or_else(|| {
                Error::Other(
                    "a flow with ownership runs once (its changes channel is used up)".into(),
                )
            })?),
            None => None,
        };
        self.ensure_internal_topics().await?;
        let topics = self.select_topics().await?;
        // Partitions of the remote topics created now are resumed as their leaders serve them
        // (the loop below polls them), not after the last of them.
        let mut not_ready = ready::NotReady::new(
            self.create_remote_topics(&topics).await?,
            tokio::time::Instant::now(),
        );
        if !not_ready.is_empty() {
            info!(flow = %self.name(), partitions = not_ready.keys().len(), "remote topics created; each partition is resumed as soon as its leader serves it");
        }
        if self.config.sync_topic_acls && self.leadership.is_none() {
            // With leadership, the leader's periodic sync does it.
            self.sync_topic_acls(&topics).await?;
        }
        let (mut stored, progress) = self.load_stored().await?;
        let iso = isolation(self.config.isolation_level);
        let budget_total = self.config.inflight_bytes.clamp(1 << 20, u32::MAX as u64) as usize;
        // A fetched batch keeps its whole response in memory until it is acknowledged (batches
        // are slices of it): responses are kept to a quarter of the budget, so memory stays
        // near the budget whatever the partition count.
        let fetch_max_bytes = (budget_total / 4).clamp(1 << 20, 50 << 20);
        let mut fetcher = Fetcher::new(
            self.source.clone(),
            FetcherConfig {
                isolation: iso,
                max_wait: Duration::from_millis(200),
                max_bytes: fetch_max_bytes as i32,
                partition_max_bytes: 1024 * 1024,
                sessions: self.config.fetch_sessions,
                ..FetcherConfig::default()
            },
        );
        let mut assigned: HashSet<(String, i32)> = HashSet::new();
        self.assign_new_except(
            &topics,
            &mut stored,
            &progress,
            &mut fetcher,
            &mut assigned,
            (&owned, not_ready.keys()),
        )
        .await?;
        if self.ownership.is_some() {
            // Partitions given later resume from progress read then (another process may have
            // written it since), never from what was read at start.
            stored.clear();
        }
        let mut ids = topic_ids::TopicIds::default();
        ids.remember(
            &self.source.metadata(),
            assigned.iter().map(|k| k.0.as_str()),
        );
        info!(flow = %self.name(), topics = topics.len(), partitions = assigned.len(), "replicating");

        let budget = Arc::new(Semaphore::new(budget_total));
        self.metrics.set_budget(budget.clone(), budget_total);
        // No partition holds more than an eighth of the budget (beyond its first batch): a
        // target partition that cannot take appends (below min ISR, no leader) stops being
        // fetched once it holds its share, and the others keep the rest.
        let partition_cap = budget_total / 8;
        let mut held: HashMap<(String, i32), Arc<AtomicUsize>> = HashMap::new();
        let mut starved: HashSet<(String, i32)> = HashSet::new();
        // Every task of the flow reports a failure here; the fetch loop stops at the first.
        let (fail_tx, mut fail_rx) = mpsc::unbounded_channel::<Error>();
        let mut lanes = Lanes::new(fail_tx.clone());
        let aux_stop = watch::channel(false);
        let commit_task = tokio::spawn(
            self.clone()
                .commit_loop(aux_stop.1.clone(), fail_tx.clone()),
        );
        let checkpoint_task = tokio::spawn(
            self.clone()
                .checkpoint_loop(aux_stop.1.clone(), fail_tx.clone()),
        );
        // Topic discovery, remote topic creation and config/ACL sync wait for the target's
        // admin answers: they run in their own task, so the fetch loop keeps fetching (and
        // lag stays current) while the target is slow or away. New topics come back here to
        // be assigned.
        let ids = Arc::new(std::sync::Mutex::new(ids));
        let (updates_tx, mut updates) = mpsc::channel::<TopicsUpdate>(1);
        // The topics handed to the fetch loop so far: partitions given to this process later
        // are looked up in them.
        let mut known_topics = topics.clone();
        // Partitions being released (drained, then committed) and the tasks doing it.
        let releasing: Arc<std::sync::Mutex<HashSet<(String, i32)>>> = Arc::default();
        let mut releases = tokio::task::JoinSet::new();
        let topics_task = tokio::spawn(self.clone().topics_loop(
            topics,
            ids.clone(),
            updates_tx,
            aux_stop.1.clone(),
            fail_tx.clone(),
        ));

        // New remote partitions not served yet are polled this often (one ListOffsets per
        // leader), each resumed when it answers.
        let mut ready_tick = tokio::time::interval(Duration::from_millis(50));
        ready_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // `Fetcher::poll` is cancel-safe (positions move only when it returns batches), so the
        // ticks below may interrupt it; every other await in the loop is raced only against
        // stop and failure, after which nothing more is appended.
        // Running (ready) once every partition is resumed: with new remote topics, when the
        // last of their partitions is served.
        let mut running = not_ready.is_empty();
        if running {
            self.metrics.set_running(true);
        }
        let result: Result<()> = async {
            loop {
                self.metrics.loop_turned(now_ms());
                if *stop.borrow() {
                    return Ok(());
                }
                starved.retain(|key| {
                    let busy = held.get(key).is_some_and(|h| h.load(Ordering::Acquire) >= partition_cap);
                    if !busy {
                        fetcher.resume(&key.0, key.1);
                    }
                    busy
                });
                let fetched = tokio::select! {
                    biased;
                    Some(e) = fail_rx.recv() => return Err(e),
                    _ = stop.changed() => return Ok(()),
                    Some(update) = updates.recv() => {
                        // Partitions already assigned are never resumed again within a run
                        // (their live map is the truth); a topic back under its old id after a
                        // deletion resumes from its live map, as after a restart.
                        for topic in update.gone {
                            let keys: Vec<_> = assigned.iter().filter(|k| k.0 == topic).cloned().collect();
                            if keys.is_empty() {
                                continue;
                            }
                            for key in &keys {
                                fetcher.unassign(&key.0, key.1);
                                assigned.remove(key);
                            }
                            self.metrics.forget_topic(&self.remote_topic(&topic));
                            warn!(flow = %self.name(), %topic, partitions = keys.len(), "source topic deleted: no longer mirrored (its remote topic, offset map and checkpoints stay)");
                        }
                        let now: BTreeMap<String, i32> = {
                            let mut ids = lock(&ids);
                            self.stop_recreated(&mut ids, &mut fetcher, &mut assigned);
                            update.topics.into_iter().filter(|(t, _)| !ids.is_recreated(t)).collect()
                        };
                        known_topics = now.clone();
                        not_ready.retain_topics(|t| known_topics.contains_key(t));
                        if !running && not_ready.is_empty() {
                            running = true;
                            self.metrics.set_running(true);
                        }
                        if self.ownership.is_some() {
                            self.resume_given(&known_topics, &owned, &mut fetcher, &mut assigned, &releasing, &not_ready).await?;
                        } else {
                            self.assign_new(&now, &mut stored, &progress, &mut fetcher, &mut assigned, &not_ready).await?;
                        }
                        lock(&ids).remember(&self.source.metadata(), assigned.iter().map(|k| k.0.as_str()));
                        continue;
                    }
                    Some(change) = async {
                        match changes.as_mut() {
                            Some(rx) => rx.recv().await,
                            None => std::future::pending().await,
                        }
                    } => {
                        if let Owned::Only(set) = &mut owned {
                            set.extend(change.give.iter().cloned());
                            for k in &change.take {
                                set.remove(k);
                            }
                        }
                        // Taken away: no longer fetched; released once its appends are applied
                        // and committed. One that was not running is released at once.
                        let mut gone = Vec::new();
                        let mut idle = BTreeSet::new();
                        for key in change.take {
                            if owned.owns(&key) {
                                continue;
                            }
                            if assigned.contains(&key) {
                                gone.push(key);
                            } else {
                                idle.insert(key);
                            }
                        }
                        if !gone.is_empty() {
                            let mut applied = Vec::new();
                            for key in &gone {
                                fetcher.unassign(&key.0, key.1);
                                assigned.remove(key);
                                starved.remove(key);
                                applied.extend(lanes.close(key));
                            }
                            lock(&releasing).extend(gone.iter().cloned());
                            info!(flow = %self.name(), partitions = gone.len(), "releasing partitions taken away");
                            releases.spawn(self.clone().release(gone, applied, releasing.clone(), fail_tx.clone()));
                        }
                        if !idle.is_empty() {
                            if let Some(o) = &self.ownership {
                                let _ = o.released.send(idle);
                            }
                        }
                        // Given: resumed from progress read now (its last owner committed it).
                        self.resume_given(&known_topics, &owned, &mut fetcher, &mut assigned, &releasing, &not_ready).await?;
                        continue;
                    }
                    Some(_) = releases.join_next(), if !releases.is_empty() => {
                        // A partition given back while it was being released runs again now.
                        self.resume_given(&known_topics, &owned, &mut fetcher, &mut assigned, &releasing, &not_ready).await?;
                        continue;
                    }
                    _ = ready_tick.tick(), if !not_ready.is_empty() => {
                        let served = self.poll_not_ready(&mut not_ready).await?;
                        if !served.is_empty() {
                            if self.ownership.is_some() {
                                self.resume_given(&known_topics, &owned, &mut fetcher, &mut assigned, &releasing, &not_ready).await?;
                            } else {
                                self.assign_new(&known_topics, &mut stored, &progress, &mut fetcher, &mut assigned, &not_ready).await?;
                            }
                            lock(&ids).remember(&self.source.metadata(), assigned.iter().map(|k| k.0.as_str()));
                            if !running && not_ready.is_empty() {
                                info!(flow = %self.name(), partitions = assigned.len(), "every partition of the new remote topics is served");
                                running = true;
                                self.metrics.set_running(true);
                            }
                        }
                        if let Some(what) = not_ready.overdue(tokio::time::Instant::now()) {
                            return Err(Error::Client {
                                cluster: self.config.target.clone(),
                                source: protocol_client::Error::Metadata(what),
                            });
                        }
                        continue;
                    }
                    r = fetcher.poll() => r.map_err(self.src())?,
                };
                for oor in fetcher.take_out_of_range() {
                    let key = (oor.topic.to_string(), oor.partition);
                    match (oor.kind, oor.reset_to) {
                        (OutOfRangeKind::BelowLogStart, Some(to)) => {
                            error!(flow = %self.name(), topic = %key.0, partition = key.1, from = oor.fetch_offset, to, lost = to - oor.fetch_offset, log_start = oor.log_start_offset, "DATA LOSS: source records were deleted (retention or DeleteRecords) before they were mirrored; continuing from the log start");
                            self.state.lock().unwrap_or_else(|p| p.into_inner()).data_loss.push(format!(
                                "{}/{}: {} offsets ({}..{})",
                                key.0, key.1, to - oor.fetch_offset, oor.fetch_offset, to
                            ));
                            self.metrics.lost(&self.remote_topic(&key.0), key.1, (to - oor.fetch_offset).max(0) as u64);
                            if !lanes.send(&self, &key, AckItem::Skip { next: to }) {
                                return Err(lane_ended(&mut fail_rx, &key).await);
                            }
                        }
                        (OutOfRangeKind::BelowLogStart, None) => {}
                        (OutOfRangeKind::AboveLogEnd, _) => {
                            error!(flow = %self.name(), topic = %key.0, partition = key.1, position = oor.fetch_offset, log_end = oor.high_watermark, "partition stopped: the source partition ends before Strait's position (topic re-created, or the log truncated by an unclean election); it is not re-replicated into the same remote partition");
                            self.record_stopped(&key, format!("the source log ends at {} before position {}", oor.high_watermark, oor.fetch_offset));
                        }
                    }
                }
                // Checked against the metadata the fetcher used: a re-created topic's records
                // are dropped before anything of them is forwarded.
                let recreated: HashSet<String> = {
                    let mut ids = lock(&ids);
                    self.stop_recreated(&mut ids, &mut fetcher, &mut assigned);
                    fetched
                        .iter()
                        .filter(|fp| ids.is_recreated(&fp.topic))
                        .map(|fp| fp.topic.to_string())
                        .collect()
                };
                for fp in fetched {
                    if recreated.contains(&*fp.topic) {
                        continue;
                    }
                    let key = (fp.topic.to_string(), fp.partition);
                    let remote = self.remote_topic(&key.0);
                    self.metrics.fetched(&remote, key.1, fp.high_watermark, now_ms());
                    if fp.log_start_offset > 0 {
                        // Retention moved the source's log start: the map forgets what lies
                        // below it (no consumer can commit there any more), within what it has
                        // recorded.
                        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
                        if let Some(ps) = st.partitions.get_mut(&key) {
                            let below = ps.map.start().is_some_and(|s| s < fp.log_start_offset);
                            let recorded = ps.map.frontier().is_some_and(|f| fp.log_start_offset <= f);
                            if below && recorded {
                                ps.map.trim_before(fp.log_start_offset);
                            }
                        }
                    }
                    let merge_up_to = self.coalesce_limit(&key.0);
                    let steps = match plan::plan(fp.records, fp.fetch_offset, fp.aborted, iso, &self.limits)
                        .and_then(|steps| plan::coalesce(steps, merge_up_to, &self.limits))
                    {
                        Ok(steps) => steps,
                        Err(source) => {
                            // A batch Strait cannot read (magic v0/v1, corrupt framing, a
                            // decompression bomb) stops that partition only, loudly.
                            let e = Error::Record {
                                context: format!("{}:{}/{} at {}", self.config.source, key.0, key.1, fp.fetch_offset),
                                source,
                            };
                            error!(flow = %self.name(), topic = %key.0, partition = key.1, offset = fp.fetch_offset, error = %e, "partition stopped: a source batch cannot be forwarded");
                            self.record_stopped(&key, e.to_string());
                            fetcher.pause(&key.0, key.1);
                            continue;
                        }
                    };
                    if steps.is_empty() {
                        continue;
                    }
                    let in_flight = held.entry(key.clone()).or_default().clone();
                    // The upstream position before each step (where a re-fetch starts).
                    let mut position = fp.fetch_offset;
                    for step in steps {
                        let step_next = step.next();
                        let item = match step {
                            plan::Step::Forward { batch, stretches, next, .. } => {
                                let need = batch.len().clamp(1, budget_total);
                                let holding = in_flight.load(Ordering::Acquire);
                                if holding > 0 && holding + need > partition_cap {
                                    // This partition holds its share: the rest of this fetch is
                                    // dropped, fetched again from here once its lane catches up.
                                    fetcher.seek(&key.0, key.1, position);
                                    fetcher.pause(&key.0, key.1);
                                    starved.insert(key.clone());
                                    break;
                                }
                                // Waiting for budget (the target is slow or down) is
                                // back-pressure, not a hang: the liveness probe hears of it.
                                let permit = loop {
                                    tokio::select! {
                                        biased;
                                        Some(e) = fail_rx.recv() => return Err(e),
                                        _ = stop.changed() => return Ok(()),
                                        p = budget.clone().acquire_many_owned(need as u32) => {
                                            break p.map_err(|_| Error::Other("budget closed".into()))?;
                                        }
                                        _ = tokio::time::sleep(Duration::from_secs(10)) => self.metrics.loop_turned(now_ms()),
                                    }
                                };
                                in_flight.fetch_add(need, Ordering::AcqRel);
                                let permit = Held { _permit: permit, bytes: need, partition: in_flight.clone() };
                                let first = stretches.first().map(|s| s.0).unwrap_or(next);
                                let records = stretches.iter().map(|s| s.1.max(0) as u64).sum();
                                let (bytes, max_timestamp) = (batch.len() as u64, batch.max_timestamp());
                                self.metrics.forwarding(&remote, key.1, max_timestamp, now_ms());
                                let ack = Box::pin(self.data_producer.append(&remote, key.1, batch));
                                AckItem::Forward(Box::new(Forward { first, records, bytes, max_timestamp, stretches, next, ack, _permit: permit }))
                            }
                            plan::Step::Skip { next } => AckItem::Skip { next },
                        };
                        if !lanes.send(&self, &key, item) {
                            // The partition's lane ended: it failed and said why on `fail_rx`.
                            return Err(lane_ended(&mut fail_rx, &key).await);
                        }
                        position = step_next;
                    }
                }
            }
        }
        .await;
        self.metrics.set_running(false);
        // Drain order: no more appends; every partition's lane records what is in flight (or
        // stops at its first failure); then the commit and checkpoint tasks stop; then the final
        // commit writes what the lanes recorded.
        lanes.drain().await;
        while let Some(joined) = releases.join_next().await {
            if let Err(e) = joined {
                warn!(flow = %self.name(), error = %e, "release task ended abnormally");
            }
        }
        let _ = aux_stop.0.send(true);
        if let Err(e) = commit_task.await {
            warn!(flow = %self.name(), error = %e, "commit task ended abnormally");
        }
        if let Err(e) = checkpoint_task.await {
            warn!(flow = %self.name(), error = %e, "checkpoint task ended abnormally");
        }
        if let Err(e) = topics_task.await {
            warn!(flow = %self.name(), error = %e, "topic task ended abnormally");
        }
        drop(fail_tx);
        // Failures reported while draining (a lane refused at the end, a commit gave up).
        let mut late = Vec::new();
        while let Ok(e) = fail_rx.try_recv() {
            late.push(e);
        }
        let committed = self.commit(true).await;
        if result.is_ok() && late.is_empty() {
            // Under the leadership's work lock, and only by the flow's leader.
            let _work = self.leader_work().await;
            if self.leads() {
                if let Err(e) = self.emit_checkpoints().await {
                    warn!(flow = %self.name(), error = %e, "final checkpoints failed");
                }
            }
        }
        if result.is_err() {
            // The flow's error is returned; what else failed while it drained is only logged.
            for e in &late {
                warn!(flow = %self.name(), error = %e, "also failed while stopping");
            }
        }
        result?;
        let mut late = late.into_iter();
        if let Some(e) = late.next() {
            for other in late {
                warn!(flow = %self.name(), error = %other, "also failed while stopping");
            }
            return Err(e);
        }
        committed?;
        let (stopped, lost) = {
            let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
            (
                std::mem::take(&mut st.stopped),
                std::mem::take(&mut st.data_loss),
            )
        };
        if !stopped.is_empty() {
            let list: Vec<String> = stopped
                .iter()
                .map(|((t, p), why)| format!("{t}/{p} ({why})"))
                .collect();
            return Err(Error::Other(format!(
                "{} partition(s) stopped during the run: {}",
                stopped.len(),
                list.join("; ")
            )));
        }
        if !lost.is_empty() {
            return Err(Error::Other(format!(
                "DATA LOSS during the run: {}",
                lost.join("; ")
            )));
        }
        Ok(())
    }

    async fn assign_new(
        &self,
        topics: &BTreeMap<String, i32>,
        stored: &mut HashMap<(String, i32), OffsetMap>,
        progress: &HashMap<(String, i32), i64>,
        fetcher: &mut Fetcher,
        assigned: &mut HashSet<(String, i32)>,
        not_ready: &ready::NotReady,
    ) -> Result<()> {
        self.assign_new_except(
            topics,
            stored,
            progress,
            fetcher,
            assigned,
            (&Owned::All, not_ready.keys()),
        )
        .await
    }

    /// Resumes owned partitions not running yet (and not still being released) from
    /// progress read now; reads nothing when there are none.
    async fn resume_given(
        &self,
        topics: &BTreeMap<String, i32>,
        owned: &Owned,
        fetcher: &mut Fetcher,
        assigned: &mut HashSet<(String, i32)>,
        releasing: &std::sync::Mutex<HashSet<(String, i32)>>,
        not_ready: &ready::NotReady,
    ) -> Result<()> {
        let mut busy = lock(releasing).clone();
        busy.extend(not_ready.keys().iter().cloned());
        let given = topics.iter().any(|(t, n)| {
            (0..*n).any(|p| {
                let k = (t.clone(), p);
                owned.owns(&k) && !assigned.contains(&k) && !busy.contains(&k)
            })
        });
        if !given {
            return Ok(());
        }
        let (mut maps, progress) = self.load_progress().await?;
        let before = assigned.len();
        self.assign_new_except(
            topics,
            &mut maps,
            &progress,
            fetcher,
            assigned,
            (owned, &busy),
        )
        .await?;
        if assigned.len() > before {
            info!(flow = %self.name(), partitions = assigned.len() - before, "resumed partitions given to this process");
        }
        Ok(())
    }

    /// A partition taken away from this process and given back before its release finished:
    /// it is resumed by the ownership change after the release.
    async fn assign_new_except(
        &self,
        topics: &BTreeMap<String, i32>,
        stored: &mut HashMap<(String, i32), OffsetMap>,
        progress: &HashMap<(String, i32), i64>,
        fetcher: &mut Fetcher,
        assigned: &mut HashSet<(String, i32)>,
        (owned, releasing): (&Owned, &HashSet<(String, i32)>),
    ) -> Result<()> {
        /// Partitions resumed at once (each resume is one or two fetches per cluster).
        const RESUME_CONCURRENCY: usize = 64;
        let target_md = self.target.metadata();
        let mut todo = Vec::new();
        // Exactly-once: a partition resumed from its live map (its topic deleted and
        // re-created during the run) keeps the bound of what is committed.
        let mut live_durable: HashMap<(String, i32), i64> = HashMap::new();
        for (topic, &partitions) in topics {
            let remote = self.remote_topic(topic);
            let remote_partitions = target_md
                .topics
                .get(&remote)
                .map(|t| t.partitions.len() as i32)
                .unwrap_or(0);
            for partition in 0..partitions.min(remote_partitions) {
                let key = (topic.clone(), partition);
                if !assigned.contains(&key) && owned.owns(&key) && !releasing.contains(&key) {
                    // Stored at start, or live from before the topic was deleted and re-created.
                    let stored = stored.remove(&key).or_else(|| {
                        let st = self.state.lock().unwrap_or_else(|p| p.into_inner());
                        st.partitions.get(&key).map(|ps| {
                            if let Some(d) = ps.durable_next {
                                live_durable.insert(key.clone(), d);
                            }
                            ps.map.clone()
                        })
                    });
                    let mm2 = progress.get(&key).copied();
                    todo.push((key, remote.clone(), stored, mm2));
                }
            }
        }
        while !todo.is_empty() {
            let mut chunk: Vec<_> = todo.drain(..todo.len().min(RESUME_CONCURRENCY)).collect();
            let resumed = protocol_client::fetcher::join_all(chunk.iter_mut().map(
                |((topic, partition), remote, stored, mm2)| {
                    resume::resume_partition(self, topic, *partition, remote, stored.take(), *mm2)
                },
            ))
            .await;
            for (((topic, partition), remote, _, _), result) in chunk.into_iter().zip(resumed) {
                let resume::Resumed {
                    map,
                    position,
                    continuation,
                } = result?;
                if let Some(c) = continuation {
                    // Appends a predecessor left in flight meet the sequences we take, and
                    // are not written after our copies of the same records.
                    let continued = self.data_producer.continue_identity(
                        &remote,
                        partition,
                        c.producer_id,
                        c.epoch,
                        c.next_sequence,
                    );
                    debug!(flow = %self.name(), %topic, partition, producer_id = c.producer_id, epoch = c.epoch, next_sequence = c.next_sequence, continued, "continuing the remote log's last writer");
                }
                debug!(flow = %self.name(), %topic, partition, position, "assigned");
                fetcher.assign(&topic, partition, position);
                self.metrics
                    .advanced(&remote, partition, position, now_ms());
                let key = (topic, partition);
                self.state
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .partitions
                    .insert(
                        key.clone(),
                        PartitionState {
                            remote_topic: remote,
                            map,
                            emitter: SyncEmitter::new(self.config.offset_lag_max),
                            committed_next: None,
                            durable_next: Some(
                                live_durable
                                    .get(&key)
                                    .map_or(position, |d| (*d).min(position)),
                            ),
                        },
                    );
                assigned.insert(key);
            }
        }
        Ok(())
    }

    /// Applies one acknowledgement (or skip) of partition `key`, in the partition's order:
    /// the exact mapping goes into its offset map and the MM2 sync rule.
    async fn apply_ack(&self, key: &(String, i32), item: AckItem) -> Result<()> {
        match item {
            AckItem::Forward(forward) => {
                let Forward {
                    first,
                    records,
                    bytes,
                    max_timestamp,
                    stretches,
                    next,
                    ack,
                    _permit,
                } = *forward;
                let ack = ack.await.map_err(|source| Error::Append {
                    cluster: self.config.target.clone(),
                    topic: key.0.clone(),
                    partition: key.1,
                    remote: self.remote_topic(&key.0),
                    first,
                    next,
                    source: Box::new(source),
                })?;
                let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
                let FlowState {
                    partitions,
                    pending_syncs,
                    ..
                } = &mut *st;
                let Some(ps) = partitions.get_mut(key) else {
                    return Ok(());
                };
                let mut downstream = ack.base_offset;
                for (upstream, count) in stretches {
                    ps.map
                        .record_forwarded(upstream, downstream, count)
                        .map_err(|source| Error::OffsetMap {
                            context: format!("{}/{}", key.0, key.1),
                            source,
                        })?;
                    if self.config.emit_offset_syncs {
                        for s in ps
                            .emitter
                            .on_batch_acked(upstream, downstream, count)
                            .iter()
                        {
                            pending_syncs.push(OffsetSync {
                                topic: key.0.clone(),
                                partition: key.1,
                                upstream_offset: s.upstream,
                                downstream_offset: s.downstream,
                            });
                        }
                    }
                    downstream += count;
                }
                ps.map.advance_upstream(next);
                let remote = ps.remote_topic.clone();
                drop(st);
                let acked = Acked {
                    records,
                    bytes,
                    max_timestamp,
                };
                self.metrics
                    .acknowledged(&remote, key.1, acked, next, now_ms());
            }
            AckItem::Barrier(done) => {
                let _ = done.send(());
            }
            AckItem::Skip { next } => {
                let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(ps) = st.partitions.get_mut(key) {
                    ps.map.advance_upstream(next);
                    let remote = ps.remote_topic.clone();
                    drop(st);
                    self.metrics.advanced(&remote, key.1, next, now_ms());
                }
            }
        }
        Ok(())
    }

    /// One partition's acknowledgements, in append order. At the first failure the lane stops:
    /// the partition advances no further (the producer refuses its later batches, so the
    /// target has no gap either), the rest of its queue is dropped (releasing budget), and the
    /// error goes to the flow.
    /// Releases partitions taken away: waits until their lanes applied everything they were
    /// given, commits (their final map, syncs and progress), forgets them and reports them
    /// released. A lane that failed fails the flow instead (nothing is released).
    async fn release(
        self: Arc<Self>,
        keys: Vec<(String, i32)>,
        applied: Vec<tokio::sync::oneshot::Receiver<()>>,
        releasing: Arc<std::sync::Mutex<HashSet<(String, i32)>>>,
        fail: mpsc::UnboundedSender<Error>,
    ) {
        for a in applied {
            if a.await.is_err() {
                return;
            }
        }
        // The commit task tolerates transient failures for a while; so does a release.
        let mut attempts = 0;
        while let Err(e) = self.commit(true).await {
            attempts += 1;
            // Exactly-once: a failed commit leaves a transaction that must be aborted, which
            // only a new run does; but a lease that does not hold yet is waited for.
            let lapsed = !self.leased() && !self.abandoned.load(Ordering::Acquire);
            let retry = !self.config.exactly_once || lapsed;
            if !e.is_transient() || attempts >= 60 || !retry {
                report(&fail, e);
                return;
            }
            warn!(flow = %self.name(), error = %e, attempts, "commit of released partitions failed; retrying");
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        let mut busy = Vec::new();
        {
            let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
            for key in &keys {
                if let Some(ps) = st.partitions.remove(key) {
                    self.metrics.forget_partition(&ps.remote_topic, key.1);
                    // Its next writer may continue this producer's identity and sequences; if
                    // the partition comes back, it continues theirs.
                    if !self.data_producer.forget_partition(&ps.remote_topic, key.1) {
                        busy.push(format!("{}/{}", key.0, key.1));
                    }
                }
            }
        }
        if !busy.is_empty() {
            // Cannot happen once the lanes applied everything; if it did, this run's producer
            // could repeat sequences a successor continued: the run restarts with a new one.
            report(
                &fail,
                Error::Other(format!(
                    "released partitions still have batches in the producer: {}",
                    busy.join(", ")
                )),
            );
            return;
        }
        {
            let mut r = lock(&releasing);
            for key in &keys {
                r.remove(key);
            }
        }
        info!(flow = %self.name(), partitions = keys.len(), "released partitions (drained and committed)");
        if let Some(o) = &self.ownership {
            let _ = o.released.send(keys.into_iter().collect());
        }
    }

    async fn ack_lane(
        self: Arc<Self>,
        key: (String, i32),
        mut rx: mpsc::UnboundedReceiver<AckItem>,
        fail: mpsc::UnboundedSender<Error>,
    ) {
        while let Some(item) = rx.recv().await {
            if let Err(e) = self.apply_ack(&key, item).await {
                error!(flow = %self.name(), topic = %key.0, partition = key.1, error = %e, "partition stopped");
                rx.close();
                while rx.recv().await.is_some() {}
                report(&fail, e);
                return;
            }
        }
    }

    /// Topic maintenance, off the fetch loop: every `refresh.topics.interval.seconds` the
    /// source's topics are listed again and their remote topics created or grown (a remote
    /// topic deleted meanwhile is created again), then handed to the fetch loop, which assigns
    /// partitions whose remote partition exists only now. A topic gone from two metadata
    /// answers in a row (one lagging broker can omit a topic) was deleted: the loop unassigns
    /// it. A topic whose id differs from the one first seen (re-created) is left out here and
    /// stopped by the loop. Topic configs and ACLs are synced on their own intervals.
    ///
    /// A transient failure (a cluster unreachable) is warned about, counted
    /// (`strait_errors_total{kind="topics"}`) and tried again [`TOPICS_RETRY`] later, for as
    /// long as it lasts: the data path has its own limits (the producer's delivery timeout),
    /// and a failing refresh only delays new topics. Any other failure stops the flow through
    /// `fail`.
    async fn topics_loop(
        self: Arc<Self>,
        mut topics: BTreeMap<String, i32>,
        ids: Arc<std::sync::Mutex<topic_ids::TopicIds>>,
        updates: mpsc::Sender<TopicsUpdate>,
        mut stop: watch::Receiver<bool>,
        fail: mpsc::UnboundedSender<Error>,
    ) {
        let every = |d: Duration| {
            let mut i = tokio::time::interval_at(
                tokio::time::Instant::now() + d.max(Duration::from_secs(1)),
                d.max(Duration::from_secs(1)),
            );
            i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            i
        };
        let mut refresh = every(self.config.refresh_topics_interval);
        let mut config_sync = every(self.config.sync_topic_configs_interval);
        let mut acl_sync = every(self.config.sync_topic_acls_interval);
        // Every topic handed to the loop and not yet seen deleted: what may be assigned there
        // (the loop's `assigned`, by topic), so a topic missing from one answer is still
        // checked for deletion at the next refresh.
        let mut known: BTreeSet<String> = topics.keys().cloned().collect();
        let mut failing_since: Option<tokio::time::Instant> = None;
        loop {
            let mut what = "topic refresh";
            let work = async {
                tokio::select! {
                    _ = refresh.tick(), if self.config.refresh_topics => {
                        let now = self.select_topics().await?;
                        let missing: Vec<String> =
                            known.iter().filter(|t| !now.contains_key(*t)).cloned().collect();
                        let gone: Vec<String> = if missing.is_empty() {
                            missing
                        } else {
                            let again = self.select_topics().await?;
                            missing.into_iter().filter(|t| !again.contains_key(t)).collect()
                        };
                        // Re-created topics (a topic id other than the one first seen, in the
                        // metadata just read) are not synced: the loop stops them.
                        let now: BTreeMap<String, i32> = {
                            let ids = lock(&ids);
                            let md = self.source.metadata();
                            now.into_iter()
                                .filter(|(t, _)| !ids.is_recreated(t) && !ids.differs(&md, t))
                                .collect()
                        };
                        self.sync_topics(&now).await?;
                        for t in &gone {
                            known.remove(t);
                        }
                        known.extend(now.keys().cloned());
                        topics = now.clone();
                        // The loop is gone only when the flow stops.
                        let _ = updates.send(TopicsUpdate { topics: now, gone }).await;
                    }
                    _ = config_sync.tick(), if self.config.sync_topic_configs => {
                        what = "topic config sync";
                        let _work = self.leader_work().await;
                        if self.leads() {
                            self.sync_topic_configs(&topics).await?;
                        }
                    }
                    _ = acl_sync.tick(), if self.config.sync_topic_acls => {
                        what = "topic ACL sync";
                        let _work = self.leader_work().await;
                        if self.leads() {
                            self.sync_topic_acls(&topics).await?;
                        }
                    }
                    _ = std::future::pending::<()>() => {}
                }
                Ok::<(), Error>(())
            };
            let r = tokio::select! {
                _ = stop.changed() => return,
                r = work => r,
            };
            match r {
                Ok(()) => {
                    if let Some(since) = failing_since.take() {
                        info!(flow = %self.name(), failed_for = ?since.elapsed(), "topic maintenance works again");
                    }
                }
                Err(e) if e.is_transient() => {
                    self.metrics.error("topics");
                    let since = *failing_since.get_or_insert_with(tokio::time::Instant::now);
                    warn!(flow = %self.name(), what, error = %e, failing_for = ?since.elapsed(), "topic maintenance failed; will retry");
                    // Sooner than the next tick (600 s by default): a failed refresh delays new
                    // topics only until the cluster answers again.
                    let c = &self.config;
                    let (tick, interval) = match what {
                        "topic config sync" => (&mut config_sync, c.sync_topic_configs_interval),
                        "topic ACL sync" => (&mut acl_sync, c.sync_topic_acls_interval),
                        _ => (&mut refresh, c.refresh_topics_interval),
                    };
                    tick.reset_after(TOPICS_RETRY.min(interval.max(Duration::from_secs(1))));
                }
                Err(e) => {
                    report(&fail, e.context(what));
                    return;
                }
            }
        }
    }

    async fn commit_loop(
        self: Arc<Self>,
        mut stop: watch::Receiver<bool>,
        fail: mpsc::UnboundedSender<Error>,
    ) {
        let mut tick = tokio::time::interval(self.config.commit_interval);
        let commits_per_flush = (SYNC_FLUSH_INTERVAL.as_millis()
            / self.config.commit_interval.as_millis().max(1))
        .max(1) as u64;
        tick.tick().await;
        let mut failing = FailingSince::default();
        let mut commits = 0u64;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.changed() => return,
            }
            // MM2 (KAFKA-15906) promotes delayed offset syncs at every offset flush
            // (`offset.flush.interval.ms`, 60 s): a quiet partition's last sync reaches its end.
            commits += 1;
            let flush = commits % commits_per_flush == 0;
            if self.config.exactly_once && !self.leased() {
                // Scale-out, the membership lease lapsed (a long rebalance, or this member
                // stalled): the transaction stays open until it holds again or the run ends.
                continue;
            }
            let r = self.commit(flush).await;
            if r.is_err() {
                self.metrics.error("commit");
            }
            let r = match r {
                Err(e) if self.config.exactly_once => {
                    // The transaction may hold records that can no longer commit: the run
                    // ends, and the next one's producer aborts it (fencing this one) before
                    // resuming.
                    report(
                        &fail,
                        e.context("exactly-once: the transaction did not commit"),
                    );
                    return;
                }
                r => r,
            };
            if let Some(e) = failing.observe(r, tokio::time::Instant::now()) {
                report(&fail, e.context("progress commits kept failing"));
                return;
            }
        }
    }

    /// Makes progress durable: offset-map changes, then offset syncs, then MM2 progress.
    /// `flush` also emits MM2's delayed syncs for partitions whose last record is unsynced.
    pub async fn commit(&self, flush: bool) -> Result<()> {
        let _one = self.commit_lock.lock().await;
        let c = &self.config;
        let eos = c.exactly_once;
        if !self.leased() {
            if eos {
                // The open transaction's records are invisible to a next owner until it
                // commits: a partition is not released before they are.
                return Err(Error::Client {
                    cluster: c.target.clone(),
                    source: protocol_client::Error::Producer(
                        "not committing the transaction: the membership lease does not hold".into(),
                    ),
                });
            }
            // Scale-out: the membership is lost or unconfirmed; what would be written stays
            // for the next commit, and the next owner matches the remote tail meanwhile.
            debug!(flow = %self.name(), "not committing: the membership lease does not hold");
            return Ok(());
        }
        // Exactly-once mode: the offset map and MM2 progress go into the data producer's
        // transaction and commit with the records they describe; offset syncs follow the
        // commit (MM2 writes them outside the transaction too).
        let writer = if eos {
            &self.data_producer
        } else {
            &self.producer
        };
        let map_topic = offset_map_topic(&c.source);
        let (map_records, syncs, progress, durable) = {
            let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
            let FlowState {
                partitions,
                pending_syncs,
                ..
            } = &mut *st;
            let mut map_records = Vec::new();
            let mut progress = Vec::new();
            let mut durable = Vec::new();
            let mut syncs = std::mem::take(pending_syncs);
            for ((topic, partition), ps) in partitions.iter_mut() {
                map_records.extend(ps.map.take_changes(topic, *partition));
                // Everything recorded so far was acknowledged, so it is in the transaction
                // this commit ends (or an earlier one).
                if let (true, Some(f)) = (eos, ps.map.frontier()) {
                    durable.push(((topic.clone(), *partition), f));
                }
                if flush && c.emit_offset_syncs {
                    if let Some(s) = ps.emitter.flush() {
                        syncs.push(OffsetSync {
                            topic: topic.clone(),
                            partition: *partition,
                            upstream_offset: s.upstream,
                            downstream_offset: s.downstream,
                        });
                    }
                }
                if let Some(frontier) = ps.map.frontier() {
                    if ps.committed_next != Some(frontier) && frontier > 0 {
                        progress.push((topic.clone(), *partition, frontier));
                    }
                }
            }
            (map_records, syncs, progress, durable)
        };
        let now = now_ms();
        let fmt_err = |topic: &str| {
            let context = topic.to_string();
            move |source| Error::Format { context, source }
        };
        let mut records = Vec::with_capacity(map_records.len());
        for r in &map_records {
            let key = r.encode_key().map_err(fmt_err(&map_topic))?;
            records.push(internal_record(
                &map_topic,
                Some(0),
                key,
                r.encode_value(),
                now,
            ));
        }
        // What a failed write handed out goes back, so the next commit writes it again: a run
        // or sync is never lost because one write failed.
        let requeue = |map_records: &[OffsetMapRecord], syncs: Vec<OffsetSync>| {
            let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
            let mut by_partition: HashMap<(String, i32), Vec<OffsetMapRecord>> = HashMap::new();
            for r in map_records {
                let (t, p) = r.topic_partition();
                by_partition
                    .entry((t.to_string(), p))
                    .or_default()
                    .push(r.clone());
            }
            for (key, records) in by_partition {
                if let Some(ps) = st.partitions.get_mut(&key) {
                    ps.map.requeue_changes(&records);
                }
            }
            let newer = std::mem::take(&mut st.pending_syncs);
            st.pending_syncs = syncs;
            st.pending_syncs.extend(newer);
        };
        if let Err(e) = write_all(writer, &c.target, records).await {
            requeue(&map_records, syncs);
            return Err(e);
        }
        if eos {
            // Progress joins the transaction, which then commits; syncs after it.
            self.write_progress(writer, &progress, now).await?;
            self.data_producer
                .commit_transaction()
                .await
                .map_err(self.tgt())?;
            {
                let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
                for (key, next) in durable {
                    if let Some(ps) = st.partitions.get_mut(&key) {
                        ps.durable_next = Some(next);
                    }
                }
            }
            if let Err(e) = self.write_syncs(syncs, now).await {
                // The transaction committed: the syncs wait for the next commit (requeued).
                warn!(flow = %self.name(), error = %e, "offset syncs not written; retried at the next commit");
                self.metrics.error("offset_syncs");
            }
        } else {
            self.write_syncs(syncs, now).await?;
            self.write_progress(writer, &progress, now).await?;
        }
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        for (topic, partition, frontier) in progress {
            if let Some(ps) = st.partitions.get_mut(&(topic, partition)) {
                ps.committed_next = Some(frontier);
            }
        }
        Ok(())
    }

    /// Writes offset syncs; a failed write puts them back for the next commit.
    async fn write_syncs(&self, syncs: Vec<OffsetSync>, now: i64) -> Result<()> {
        let c = &self.config;
        if !syncs.is_empty() {
            let (topic, alias) = c.offset_syncs_topic();
            let mut records = Vec::with_capacity(syncs.len());
            for s in &syncs {
                let key = s.encode_key().map_err(|source| Error::Format {
                    context: topic.clone(),
                    source,
                })?;
                records.push(internal_record(
                    &topic,
                    Some(0),
                    key,
                    Some(s.encode_value()),
                    now,
                ));
            }
            if let Err(e) = write_all(&self.sync_producer, alias, records).await {
                let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
                let newer = std::mem::take(&mut st.pending_syncs);
                st.pending_syncs = syncs;
                st.pending_syncs.extend(newer);
                return Err(e);
            }
            self.metrics.offset_syncs_written(now_ms());
        }
        Ok(())
    }

    /// Writes MM2 source progress (the next offset to replicate, minus one, per partition).
    async fn write_progress(
        &self,
        writer: &Producer,
        progress: &[(String, i32, i64)],
        now: i64,
    ) -> Result<()> {
        let c = &self.config;
        let records = progress
            .iter()
            .map(|(topic, partition, frontier)| {
                let key = SourceProgressKey {
                    connector: c.progress_connector.clone(),
                    ..SourceProgressKey::mirror_source(&c.source, topic, *partition)
                }
                .encode();
                let value = SourceProgress {
                    last_replicated_offset: frontier - 1,
                }
                .encode();
                internal_record(&c.offset_storage_topic, None, key, Some(value), now)
            })
            .collect();
        write_all(writer, &c.target, records).await
    }

    async fn checkpoint_loop(
        self: Arc<Self>,
        mut stop: watch::Receiver<bool>,
        fail: mpsc::UnboundedSender<Error>,
    ) {
        if !self.config.emit_checkpoints && !self.config.sync_group_offsets {
            return;
        }
        let c = &self.config;
        let mut failing = FailingSince::default();
        // One tick at the shorter of the two intervals; each job runs when its own is due.
        let mut period = Duration::MAX;
        if c.emit_checkpoints {
            period = period.min(c.emit_checkpoints_interval);
        }
        if c.sync_group_offsets {
            period = period.min(c.sync_group_offsets_interval);
        }
        let mut tick = tokio::time::interval(period.max(Duration::from_millis(100)));
        tick.tick().await;
        let start = tokio::time::Instant::now();
        let (mut emitted_at, mut synced_at, mut groups_at) = (start, start, None);
        let mut groups = Vec::new();
        // Whether the checkpoints loaded are current: with leadership, they are reloaded each
        // time it is gained (the previous leader wrote more meanwhile).
        // The leadership epoch the loaded checkpoints are current for: with leadership they are
        // reloaded each time it is gained (the previous leader wrote more meanwhile).
        let mut current = if self.leadership.is_none() {
            Some(0)
        } else {
            None
        };
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.changed() => return,
            }
            // Taken before the check: whoever takes leadership away waits for this round.
            let _work = self.leader_work().await;
            let Some(epoch) = self.leader_epoch() else {
                continue;
            };
            if current != Some(epoch) {
                let r = self.load_checkpoints().await;
                current = r.is_ok().then_some(epoch);
                if let Some(e) = failing.observe(r, tokio::time::Instant::now()) {
                    report(
                        &fail,
                        e.context("loading checkpoints on gaining the flow's leadership"),
                    );
                    return;
                }
                if current.is_none() {
                    continue;
                }
            }
            let now = tokio::time::Instant::now();
            let slack = Duration::from_millis(50);
            let emit =
                c.emit_checkpoints && now + slack >= emitted_at + c.emit_checkpoints_interval;
            let sync =
                c.sync_group_offsets && now + slack >= synced_at + c.sync_group_offsets_interval;
            if !emit && !sync {
                continue;
            }
            // The source's group list is refreshed every `refresh.groups.interval.seconds`.
            // With `refresh.groups.enabled=false` the list is read once, as MM2 does.
            let refresh = groups_at.is_none_or(|at: tokio::time::Instant| {
                c.refresh_groups && now + slack >= at + c.refresh_groups_interval
            });
            let r = async {
                if refresh {
                    groups = self.replicated_groups().await?;
                    groups_at = Some(now);
                }
                self.checkpoint_groups(&groups, emit || !c.emit_checkpoints, sync)
                    .await
            }
            .await;
            if r.is_ok() {
                if emit {
                    emitted_at = now;
                }
                if sync {
                    synced_at = now;
                }
            }
            if r.is_err() {
                self.metrics.error("checkpoint");
            }
            if let Some(e) = failing.observe(r, now) {
                report(&fail, e.context("checkpoints kept failing"));
                return;
            }
        }
    }

    /// The source's consumer groups that the group filter replicates.
    async fn replicated_groups(&self) -> Result<Vec<String>> {
        Ok(self
            .source_admin
            .list_groups()
            .await
            .map_err(self.src())?
            .into_iter()
            .map(|g| g.group_id)
            .filter(|g| self.config.groups.should_replicate_group(g))
            .collect())
    }

    /// Translates the source groups' committed offsets exactly and writes MM2 checkpoints
    /// (and, with `sync.group.offsets.enabled`, commits them into idle target groups).
    pub async fn emit_checkpoints(&self) -> Result<()> {
        let groups = self.replicated_groups().await?;
        self.checkpoint_groups(&groups, true, self.config.sync_group_offsets)
            .await
    }

    /// Checkpoints for `groups` (written when `emit` and `emit.checkpoints.enabled`; the
    /// translations are always taken), then, when `sync`, group offset sync.
    async fn checkpoint_groups(&self, groups: &[String], write: bool, sync: bool) -> Result<()> {
        let c = &self.config;
        let groups = groups.to_vec();
        let current_groups = groups.clone();
        let now = now_ms();
        let topic = c.checkpoints_topic();
        let mm2_syncs = self.mm2_syncs().await;
        // Scale-out: partitions other processes replicate translate through the maps they
        // committed (behind their live maps by at most a commit interval: a group offset past
        // what is stored waits for the next round, it is never guessed).
        let others: HashMap<(String, i32), OffsetMap> = if self.ownership.is_some() {
            internal::read_offset_maps(&self.target, &c.target, &c.source, c.offset_map_max_runs)
                .await?
                .into_iter()
                .filter_map(|(k, m)| m.ok().map(|m| (k, m)))
                .collect()
        } else {
            HashMap::new()
        };
        let mut found = Vec::new();
        let mut failback = Vec::new();
        let (mut exact, mut conservative) = (0usize, 0usize);
        let mut touched = Vec::new();
        for group in groups {
            let offsets = self
                .source_admin
                .fetch_offsets(&group, None)
                .await
                .map_err(self.src());
            self.group_read_failing.observe(
                &self.name(),
                &group,
                "reading the source group's committed offsets (for checkpoints)",
                &offsets,
            );
            // A refusal (TLS, SASL) is not one group's: it fails the round, and the task.
            let offsets = match offsets {
                Ok(offsets) => offsets,
                Err(e) if e.is_security() => return Err(e),
                Err(_) => continue,
            };
            let st = self.state.lock().unwrap_or_else(|p| p.into_inner());
            for o in offsets {
                let key = (o.topic.clone(), o.partition);
                let (map, remote_topic) = match st.partitions.get(&key) {
                    // Exactly-once: an offset whose records may still be aborted waits for
                    // their commit.
                    Some(ps) if c.exactly_once && ps.durable_next.is_none_or(|d| o.offset > d) => {
                        continue
                    }
                    Some(ps) => (&ps.map, ps.remote_topic.clone()),
                    None => match others.get(&key) {
                        Some(m) => (m, self.remote_topic(&o.topic)),
                        None => {
                            if self.failback_topic(&o.topic).is_some() {
                                failback.push((group.clone(), o));
                            }
                            continue;
                        }
                    },
                };
                // Exact, or (below where the map starts: a group that committed before Strait
                // took over from MM2) MM2's conservative answer from its own syncs, or
                // nothing: never a checkpoint ahead of what is known.
                let downstream = match map.translate(o.offset) {
                    Some(d) => {
                        exact += 1;
                        d
                    }
                    None => {
                        let syncs = mm2_syncs.get(&key).map_or(&[][..], Vec::as_slice);
                        match conservative_below(map, syncs, o.offset) {
                            Some(d) => {
                                conservative += 1;
                                d
                            }
                            None => continue,
                        }
                    }
                };
                found.push(Checkpoint {
                    consumer_group_id: group.clone(),
                    topic: remote_topic,
                    partition: o.partition,
                    upstream_offset: o.offset,
                    downstream_offset: downstream,
                    metadata: o.metadata.unwrap_or_default(),
                });
            }
            drop(st);
            touched.push(group);
        }
        let failed_back = self.failback_checkpoints(failback).await;
        debug!(flow = %self.name(), exact, conservative, failback = failed_back.len(), "translated group offsets");
        found.extend(failed_back);
        let mut emit = Vec::new();
        {
            let mut cps = self.checkpoints.lock().unwrap_or_else(|p| p.into_inner());
            for cp in found {
                if !c.emit_checkpoints {
                    // Group offset sync alone still needs the translations.
                    cps.offer(cp);
                } else if write && cps.decide(&cp).emits() {
                    emit.push(cp);
                }
            }
        }
        // Written first, then recorded as emitted: a failed write is retried next round.
        let mut records = Vec::with_capacity(emit.len());
        for cp in &emit {
            let context = || topic.clone();
            let key = cp.encode_key().map_err(|source| Error::Format {
                context: context(),
                source,
            })?;
            let value = cp.encode_value().map_err(|source| Error::Format {
                context: context(),
                source,
            })?;
            records.push(internal_record(&topic, Some(0), key, Some(value), now));
        }
        write_all(&self.producer, &c.target, records).await?;
        let written: Vec<_> = emit
            .iter()
            .map(|cp| {
                (
                    cp.consumer_group_id.clone(),
                    cp.topic.clone(),
                    cp.partition,
                    now,
                )
            })
            .collect();
        self.metrics
            .checkpoints_written(&current_groups, &written, now_ms());
        {
            let mut cps = self.checkpoints.lock().unwrap_or_else(|p| p.into_inner());
            for cp in emit {
                cps.offer(cp);
            }
        }
        if sync {
            // Each group on its own: one group the target refuses (its ACLs, a live consumer
            // of the other protocol) neither stops the others nor the flow. Like MM2, the
            // failure is logged (once when it starts, once when it ends) and retried next round.
            for group in touched {
                let r = self.sync_group_offsets(&group).await;
                self.group_sync_failing
                    .observe(&self.name(), &group, "group offset sync", &r);
                if matches!(&r, Err(e) if e.is_security()) {
                    return r;
                }
            }
        }
        Ok(())
    }

    /// MM2's offset syncs of this flow, read once (a failure is logged and leaves them empty:
    /// only groups below Strait's first run go without checkpoints).
    async fn mm2_syncs(&self) -> &HashMap<(String, i32), Vec<SyncPoint>> {
        self.mm2_syncs
            .get_or_init(|| async {
                let (topic, alias) = self.config.offset_syncs_topic();
                let cluster = if alias == self.config.source {
                    &self.source
                } else {
                    &self.target
                };
                // MM2 builds the full history when its checkpoints loaded; Strait's checkpoints
                // are loaded and kept monotonic, so the same.
                let mut store = Mm2OffsetSyncStore::with_full_history();
                match internal::read_offset_syncs(cluster, alias, &topic).await {
                    Ok(syncs) => {
                        for sync in &syncs {
                            store.handle(sync);
                        }
                    }
                    Err(e) => {
                        warn!(flow = %self.name(), %topic, error = %e, "could not read the offset syncs: groups that committed below where Strait started get no checkpoints");
                    }
                }
                store.mark_read_to_end();
                store
                    .partitions()
                    .map(|tp| ((tp.topic.clone(), tp.partition), store.syncs(tp)))
                    .collect()
            })
            .await
    }

    /// For a topic of the source that is itself a remote topic of this flow's target (`A.t`
    /// on B, in the flow B->A): the topic it came from on the target (`t`), when the topic
    /// filter takes either name. Groups that consumed it get failback checkpoints.
    fn failback_topic<'a>(&self, topic: &'a str) -> Option<&'a str> {
        let c = &self.config;
        if c.policy.topic_source(topic) != Some(c.target.as_str()) {
            return None;
        }
        let upstream = c.policy.upstream_topic(topic).filter(|u| *u != topic)?;
        (c.topics.should_replicate_topic(topic) || c.topics.should_replicate_topic(upstream))
            .then_some(upstream)
    }

    /// Failback checkpoints: a group on this flow's source committed offsets of `A.t`, which
    /// the reverse flow (A->B) wrote from `t` on this flow's target. That flow's exact offset
    /// map (kept on this flow's source) gives the offset in `t` to continue at, exactly, so a
    /// consumer that moved from A to B moves back without re-reading or skipping. MM2 names
    /// the same checkpoints (`renameTopicPartition`) but has no syncs to translate them.
    async fn failback_checkpoints(
        &self,
        offsets: Vec<(String, protocol_client::admin::CommittedOffset)>,
    ) -> Vec<Checkpoint> {
        if offsets.is_empty() {
            return Vec::new();
        }
        let c = &self.config;
        let maps =
            internal::read_offset_maps(&self.source, &c.source, &c.target, c.offset_map_max_runs)
                .await;
        self.failback_failing.observe(
            &self.name(),
            &internal::offset_map_topic(&c.target),
            "reading the reverse flow's offset maps (for failback checkpoints)",
            &maps,
        );
        let Ok(maps) = maps else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (group, o) in offsets {
            let Some(upstream) = self.failback_topic(&o.topic) else {
                continue;
            };
            let Some(Ok(map)) = maps.get(&(upstream.to_string(), o.partition)) else {
                continue;
            };
            let Some(back) = map.upstream_for(o.offset) else {
                continue;
            };
            let cp = Checkpoint {
                consumer_group_id: group,
                topic: upstream.to_string(),
                partition: o.partition,
                upstream_offset: o.offset,
                downstream_offset: back,
                metadata: o.metadata.unwrap_or_default(),
            };
            // Only what would be written is checked (two fetches), and only what checks out
            // is written.
            let news = !c.emit_checkpoints
                || self
                    .checkpoints
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .decide(&cp)
                    .emits();
            if news
                && self
                    .failback_holds(&o.topic, upstream, o.partition, map, back)
                    .await
            {
                out.push(cp);
            }
        }
        out
    }

    /// Whether the reverse flow's map still describes this flow's target: the record the
    /// failback position points at (or, at the end, the last one mirrored before it) is the
    /// same on both clusters, and the target's partition reaches the position. It would not
    /// after the target lost data (an unclean election, the topic re-created): a checkpoint
    /// there could make the group skip records written since. Logged once per partition when
    /// it fails, and when it holds again.
    async fn failback_holds(
        &self,
        remote: &str,
        upstream: &str,
        partition: i32,
        map: &OffsetMap,
        back: i64,
    ) -> bool {
        let c = &self.config;
        // The pair to compare: the record at `back`, or the last one mirrored before the end.
        let pair = match map.translate(back) {
            Some(d) if map.downstream_end().is_some_and(|end| d < end) => Some((back, d)),
            _ => map
                .runs()
                .last()
                .map(|r| (r.upstream_end() - 1, r.downstream_end() - 1)),
        };
        let check = async {
            let Some((u, d)) = pair else {
                return Ok(false);
            };
            let ours =
                resume::record_at(&self.source, &c.source, remote, partition, d, &self.limits)
                    .await?;
            let theirs = resume::record_at(
                &self.target,
                &c.target,
                upstream,
                partition,
                u,
                &self.limits,
            )
            .await?;
            let end = protocol_client::fetcher::list_offset(
                &self.target,
                upstream,
                partition,
                protocol_client::fetcher::OffsetSpec::Latest,
                IsolationLevel::ReadUncommitted,
            )
            .await
            .map_err(self.tgt())?
            .offset;
            Ok::<bool, Error>(ours.is_some() && ours == theirs && end >= back)
        };
        let r = match check.await {
            Ok(true) => Ok(()),
            Ok(false) => Err(Error::Other(format!(
                "{} no longer holds at {upstream}/{partition} what the {}->{} flow mirrored from it (truncated or re-created?): no failback checkpoints for it",
                c.target, c.target, c.source
            ))),
            Err(e) => Err(e),
        };
        let holds = r.is_ok();
        self.failback_failing.observe(
            &self.name(),
            &format!("{upstream}/{partition}"),
            "failback checkpoint check",
            &r,
        );
        holds
    }

    async fn sync_group_offsets(&self, group: &str) -> Result<()> {
        let converted = self
            .checkpoints
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .converted_offsets(group);
        if converted.is_empty() {
            return Ok(());
        }
        let described = self
            .target_admin
            .describe_groups(&[group.to_string()])
            .await
            .map_err(self.tgt())?;
        let not_found = described
            .first()
            .is_some_and(|d| d.error == Some(ResponseError::GroupIdNotFound));
        let described_state = described.first().map(|d| d.state.as_str());
        let idle = matches!(described_state, None | Some("Dead" | "" | "Empty"));
        let current = if idle {
            self.target_admin
                .fetch_offsets(group, None)
                .await
                .map_err(self.tgt())?
        } else {
            Vec::new()
        };
        let state = match described_state {
            _ if !idle => TargetGroupState::Active,
            _ if current.is_empty() => TargetGroupState::Absent,
            Some("Empty") => TargetGroupState::Empty(
                current
                    .into_iter()
                    .map(|o| {
                        (
                            TopicPartition::new(o.topic, o.partition),
                            (o.offset >= 0).then_some(o.offset),
                        )
                    })
                    .collect(),
            ),
            // DescribeGroups also answers GROUP_ID_NOT_FOUND for a group of Kafka 4's consumer
            // protocol (KIP-848), which may have members: a group with committed offsets that
            // DescribeGroups cannot see is not absent, and is left alone.
            _ => {
                if not_found {
                    self.warn_once(
                        "kip848-group",
                        format!("target group {group} is not visible to DescribeGroups but has committed offsets (a KIP-848 consumer group?); group offset sync leaves it alone"),
                    );
                }
                TargetGroupState::Active
            }
        };
        let commit = decide_group_offset_sync(&state, &converted);
        if commit.is_empty() {
            return Ok(());
        }
        let offsets: Vec<_> = commit
            .into_iter()
            .map(|(tp, CommittedOffset { offset, metadata })| {
                protocol_client::admin::CommittedOffset {
                    topic: tp.topic,
                    partition: tp.partition,
                    offset,
                    leader_epoch: -1,
                    metadata: Some(metadata),
                }
            })
            .collect();
        self.target_admin
            .commit_offsets(group, &offsets)
            .await
            .map_err(self.tgt())?;
        debug!(flow = %self.name(), group, partitions = offsets.len(), "synced group offsets");
        Ok(())
    }

    pub(crate) fn source_cluster(&self) -> &Arc<Cluster> {
        &self.source
    }

    pub(crate) fn target_cluster(&self) -> &Arc<Cluster> {
        &self.target
    }

    pub(crate) fn limits(&self) -> &DecodeLimits {
        &self.limits
    }
}

/// How long a periodic task (commits, checkpoints) may fail without a single success before
/// its failure becomes the flow's: long enough to ride out a broker restart or a leader
/// election, short enough that a persistent failure does not scroll by unnoticed for hours.
pub const PERIODIC_FAILURE_LIMIT: Duration = Duration::from_secs(120);

/// How soon a topic refresh, config sync or ACL sync that failed transiently is tried again
/// (or at its interval, if shorter).
pub const TOPICS_RETRY: Duration = Duration::from_secs(10);

/// Tracks consecutive failures of a periodic task.
#[derive(Debug, Default)]
struct FailingSince(Option<tokio::time::Instant>);

impl FailingSince {
    /// Records one round's result; the error once failures have lasted past
    /// [`PERIODIC_FAILURE_LIMIT`] (earlier ones are logged as warnings), or at once for a TLS or
    /// SASL refusal.
    fn observe(&mut self, r: Result<()>, now: tokio::time::Instant) -> Option<Error> {
        match r {
            Ok(()) => {
                self.0 = None;
                None
            }
            // A refusal (TLS, SASL) will not pass by itself: the flow's at once.
            Err(e) if e.is_security() => Some(e),
            Err(e) => {
                let since = *self.0.get_or_insert(now);
                if now.duration_since(since) >= PERIODIC_FAILURE_LIMIT {
                    Some(e)
                } else {
                    warn!(error = %e, failing_for = ?now.duration_since(since), "periodic task failed; will retry");
                    None
                }
            }
        }
    }
}

/// Topics of assigned partitions that `topics` (one metadata answer) no longer lists.
/// What the topic task hands the fetch loop after a refresh.
#[derive(Debug)]
struct TopicsUpdate {
    /// The topics to replicate now, with their partition counts (remote topics made).
    topics: BTreeMap<String, i32>,
    /// Topics deleted on the source (absent from two metadata answers in a row).
    gone: Vec<String>,
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The error of a partition's lane that ended: what it reported, or (a lane that panicked
/// reports nothing) a generic one after a short wait.
async fn lane_ended(fail_rx: &mut mpsc::UnboundedReceiver<Error>, key: &(String, i32)) -> Error {
    match tokio::time::timeout(Duration::from_secs(5), fail_rx.recv()).await {
        Ok(Some(e)) => e,
        _ => Error::Other(format!(
            "acknowledgements of {}/{} stopped without an error",
            key.0, key.1
        )),
    }
}

/// Hands a task's failure to the flow. The flow keeps the receiver until every task has ended,
/// so a failed send means the flow is gone already; the error is logged then.
fn report(fail: &mpsc::UnboundedSender<Error>, e: Error) {
    if let Err(mpsc::error::SendError(e)) = fail.send(e) {
        error!(error = %e, "failure after the flow ended");
    }
}

/// Sends `records` and waits until every one is acknowledged.
async fn write_all(producer: &Producer, alias: &str, records: Vec<ProducerRecord>) -> Result<()> {
    let mut acks = Vec::with_capacity(records.len());
    for r in records {
        acks.push(
            producer
                .send_nowait(r)
                .await
                .map_err(Error::client(alias))?,
        );
    }
    // Only these records are awaited: a flush would also wait for every batch appended
    // meanwhile (the data producer in exactly-once mode, which never idles under load).
    producer.send_open_batches();
    for a in acks {
        a.await
            .map_err(|_| Error::Other("producer closed".into()))?
            .map_err(Error::client(alias))?;
    }
    Ok(())
}

/// A record for an internal topic.
pub fn internal_record(
    topic: &str,
    partition: Option<i32>,
    key: Bytes,
    value: Option<Bytes>,
    timestamp: i64,
) -> ProducerRecord {
    ProducerRecord {
        topic: topic.to_string(),
        partition,
        key: Some(key),
        value,
        headers: Vec::new(),
        timestamp: Some(timestamp),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_to_create_are_grouped_within_one_controller_operation() {
        let topic = |name: &str, partitions: i32, configs: usize| NewTopic {
            name: name.into(),
            partitions,
            replication_factor: 1,
            configs: vec![("k".into(), "v".into()); configs],
        };
        let names = |groups: Vec<&[NewTopic]>| -> Vec<Vec<String>> {
            groups
                .iter()
                .map(|g| g.iter().map(|t| t.name.clone()).collect())
                .collect()
        };
        assert!(operations(&[]).is_empty());
        let few = [topic("a", 1000, 2), topic("b", 16, 1), topic("c", 1, 0)];
        assert_eq!(names(operations(&few)), vec![vec!["a", "b", "c"]]);
        // 9000 + 1 + 1 records, then 600 + 1: over 9500 together.
        let big = [topic("a", 9000, 1), topic("b", 600, 0), topic("c", 10, 0)];
        assert_eq!(names(operations(&big)), vec![vec!["a"], vec!["b", "c"]]);
        // A single topic always gets its own request, whatever its size.
        let huge = [topic("a", 9000, 600), topic("b", 9000, 0)];
        assert_eq!(names(operations(&huge)), vec![vec!["a"], vec!["b"]]);
    }

    /// A periodic task's failures become the flow's only after `PERIODIC_FAILURE_LIMIT`
    /// without a success; one success resets the clock (time passed in, no sleeping).
    #[test]
    fn periodic_failures_escalate_after_the_limit_without_a_success() {
        let t0 = tokio::time::Instant::now();
        let fail = || Err(Error::Other("target unavailable".into()));
        let mut f = FailingSince::default();
        assert!(f.observe(fail(), t0).is_none());
        assert!(f.observe(fail(), t0 + PERIODIC_FAILURE_LIMIT / 2).is_none());
        // A success in between resets the clock.
        assert!(f.observe(Ok(()), t0 + PERIODIC_FAILURE_LIMIT / 2).is_none());
        assert!(f.observe(fail(), t0 + PERIODIC_FAILURE_LIMIT).is_none());
        assert!(f
            .observe(
                fail(),
                t0 + PERIODIC_FAILURE_LIMIT + PERIODIC_FAILURE_LIMIT / 2
            )
            .is_none());
        let e = f
            .observe(fail(), t0 + PERIODIC_FAILURE_LIMIT * 2)
            .expect("escalates");
        assert_eq!(e.to_string(), "target unavailable");
    }

    /// A TLS or SASL refusal (a rotated password, an expired certificate) is the flow's at
    /// once: no retry within the limit can get past it.
    #[test]
    fn a_security_refusal_of_a_periodic_task_escalates_at_once() {
        let t0 = tokio::time::Instant::now();
        let refused = protocol_client::Error::Conn(protocol_client::conn::ConnError::Auth {
            broker: "127.0.0.1:9092".into(),
            mechanism: "SCRAM-SHA-512",
            failure: Box::new(protocol_client::conn::AuthFailure::MechanismRefused),
        });
        let mut f = FailingSince::default();
        assert!(f
            .observe(Err(Error::Other("target unavailable".into())), t0)
            .is_none());
        let e = f
            .observe(Err(Error::client("B")(refused).context("checkpoints")), t0)
            .expect("escalates at once");
        assert!(e.is_security(), "{e}");
    }
}
