//! The producer: appends record batches to partitions with `acks=all` and idempotence.
//!
//! Two entry points share one sender:
//! - **raw** ([`Producer::append`]): pre-built v2 record batches (`RecordBatch`, e.g. fetched
//!   from another cluster) go to a partition as they are. With idempotence on, the producer id,
//!   epoch and base sequence are rewritten on the way out without touching the record bytes
//!   ([`rewrite_producer_fields`]): the 61-byte header is copied and patched, its CRC updated
//!   from the changed bytes (CRC-32C is linear; the record layer's table-driven shift moves the
//!   difference past the records, about a microsecond at any size), and the records stay in the buffer they came in.
//! - **high level** ([`Producer::send`], in [`records`]): records batched by size and linger,
//!   compressed, appended through the raw path.
//!
//! # Ordering and idempotence (KIP-98, KIP-360)
//! Appends to one partition are queued in call order. The sender task groups ready partitions
//! by leader into Produce requests carrying **one batch per partition** (as the Java client and
//! librdkafka do: a broker checks a partition's append for duplicates by its first batch, so a
//! retried request holding an already-written batch and a new one would lose the new one; and
//! librdkafka's mock only assigns offsets to the first), keeping at most
//! [`ProducerConfig::max_in_flight_batches`] (≤ 5, the broker's duplicate-detection window)
//! batches of a partition in flight. One task per broker puts that broker's requests on its
//! connection strictly in order, so a partition's batches arrive in sequence order.
//!
//! Sequences are assigned when a batch is first sent, under the partition's producer identity
//! (id, epoch), and a batch keeps them for every retry: a batch whose outcome is unknown (a
//! timeout, NOT_ENOUGH_REPLICAS_AFTER_APPEND, a dropped connection: the broker may have written
//! it) is only ever resent as it was first sent, so the broker recognises it and answers with
//! the offset it wrote it at instead of writing it again. After a retriable failure a partition
//! is *held*: nothing is sent until everything in flight has answered, then the failed batches
//! are resent in sequence order. Until the broker has acknowledged one batch of a partition
//! under an identity, only one batch of it is in flight (the broker takes any sequence from a
//! producer id it has no state for, so a batch behind a refused first one would be written
//! before it).
//!
//! Renumbering follows the Java producer's rule (`TransactionManager.canRetry` /
//! `handleFailedBatch`, KIP-360): a sequence error (`OUT_OF_ORDER_SEQUENCE_NUMBER`,
//! `UNKNOWN_PRODUCER_ID`, `INVALID_PRODUCER_EPOCH`) proves a gap only for the lowest batch of the
//! partition not yet settled, with nothing before it in flight or waiting for a retry; any other
//! one is retried in order. A proven gap, or a batch refused for good, means the batches from
//! there on cannot have been written: once those before it are settled (still under their own
//! sequences), that partition alone moves to a newer identity (InitProducerId, once for the
//! producer) and renumbers them from 0. Other partitions keep their identity and sequences.
//! Every acknowledged batch reports the base offset it was given (-1 when an old broker answered
//! a retry DUPLICATE_SEQUENCE_NUMBER: written, offset not known).

pub mod records;
mod txn;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::{ApiKey, InitProducerIdRequest, ProduceRequest, ProducerId};
use tokio::sync::{oneshot, Notify};
use tracing::{debug, info, warn};

use crate::cluster::{BrokerInfo, Cluster, ConnKind};
use crate::codec::produce::{encode_produce, PartitionRecords, ProduceBody, TopicRecords};
use crate::error::{Error, ResponseError, Result};
use crate::record::{RecordBatch, TimestampType};
use crate::retry::Backoff;

/// Producer settings.
#[derive(Clone, Debug)]
pub struct ProducerConfig {
    /// `acks`: -1 (all) by default.
    pub acks: i16,
    /// Broker-side timeout of a Produce request.
    pub request_timeout: Duration,
    /// Idempotent producer (InitProducerId, sequences).
    pub idempotent: bool,
    /// Batches of one partition in flight at once (≤ 5 when idempotent).
    pub max_in_flight_batches: usize,
    /// Largest Produce request built.
    pub max_request_bytes: usize,
    /// Produce requests in flight to one broker at once. A broker reads a connection's
    /// requests one at a time, so more only queue there; meanwhile batches appended wait here
    /// and go together in the next request (as the Java producer's
    /// `max.in.flight.requests.per.connection`): without it, many partitions each fed a small
    /// batch at a time make as many requests as batches, and the broker's per-request work
    /// dominates.
    pub max_requests_per_broker: usize,
    /// How long a batch may take from append to acknowledgement, retries included.
    pub delivery_timeout: Duration,
    /// High-level API: records wait up to this long to fill a batch.
    pub linger: Duration,
    /// High-level API: a batch is closed at this many bytes.
    pub batch_bytes: usize,
    /// High-level API: codec of built batches.
    pub compression: crate::record::Compression,
    /// When a batch fails for good (a non-retriable error, or its delivery timeout), fail every
    /// later batch of that partition too — queued, waiting for a retry, in flight, and every
    /// append made afterwards — so the partition's log never gets a gap with later data after
    /// it. (Batches sent before it are still retried under their sequences: they may have been
    /// written.) A replicator's data path needs this; a producer of independent records
    /// (internal topics) does not, and then later batches go on under a new epoch.
    pub stop_partition_on_failure: bool,
    /// Transactional id (KIP-98): the producer writes inside transactions that
    /// [`Producer::commit_transaction`] commits, and fences every earlier producer of the same
    /// id when it starts. Implies `idempotent` and `stop_partition_on_failure`.
    pub transactional_id: Option<String>,
    /// How long the coordinator lets a transaction stay open before aborting it (and fencing
    /// this producer); at most the brokers' `transaction.max.timeout.ms` (15 minutes).
    pub transaction_timeout: Duration,
    /// A lease: Produce requests are sent only before the instant it holds (`None`: not
    /// before it holds one). A request due while the lease has run out waits, in order, until
    /// it is renewed, or fails unsent if the producer is aborted meanwhile. A scale-out member
    /// leases its appends from its group membership, so that a member that stalled past its
    /// session sends nothing when it wakes until the group has confirmed it is still in.
    pub send_gate: Option<SendGate>,
}

/// See [`ProducerConfig::send_gate`].
pub type SendGate = tokio::sync::watch::Receiver<Option<std::time::Instant>>;

impl Default for ProducerConfig {
    fn default() -> ProducerConfig {
        ProducerConfig {
            acks: -1,
            request_timeout: Duration::from_secs(30),
            idempotent: true,
            max_in_flight_batches: 5,
            max_request_bytes: 8 * 1024 * 1024,
            max_requests_per_broker: 5,
            delivery_timeout: Duration::from_secs(120),
            linger: Duration::from_millis(5),
            batch_bytes: 256 * 1024,
            compression: crate::record::Compression::None,
            stop_partition_on_failure: false,
            transactional_id: None,
            transaction_timeout: Duration::from_secs(60),
            send_gate: None,
        }
    }
}

/// Where a batch landed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProduceAck {
    /// Offset the broker gave the batch's first record; -1 if the broker answered a retry of it
    /// with DUPLICATE_SEQUENCE_NUMBER (written by an earlier attempt, offset not reported: only
    /// brokers older than Kafka 1.0 do that, later ones answer with the offset).
    pub base_offset: i64,
    /// Broker append time when the topic uses `LogAppendTime`, else -1.
    pub log_append_time: i64,
    /// The partition's log start offset, if reported (else -1).
    pub log_start_offset: i64,
}

type TopicPartition = (Arc<str>, i32);

/// Base offset, log append time and log start offset of an acknowledged partition.
type PartitionOutcome = Result<(i64, i64, i64), Error>;

type Completion = (oneshot::Sender<Result<ProduceAck>>, Result<ProduceAck>);

/// One Produce request's partitions (one batch each).
type Request = Vec<Outgoing>;

/// Requests per broker, in the order they must be sent.
type BrokerRequests = Vec<(BrokerInfo, Vec<Request>)>;

/// How long the sender sleeps when nothing is unacknowledged (an append wakes it sooner).
const IDLE_WAKE: Duration = Duration::from_secs(5);

struct Pending {
    batch: RecordBatch,
    /// Position in the partition's append order.
    ordinal: u64,
    /// Sequence and producer identity assigned at first send, kept for every retry.
    seq: Option<SeqAssignment>,
    enqueued: Instant,
    tx: oneshot::Sender<Result<ProduceAck>>,
    /// Sent with the LogAppendTime bit cleared (the partition's topic refused it).
    clear_log_append_time: bool,
}

/// The generation of an identity continued from a predecessor ([`Producer::continue_identity`]):
/// older than every identity this producer obtained itself (those start at 1).
const CONTINUED: u64 = 0;

/// A producer identity: id and epoch, and the generation that numbers the identities this
/// producer has had.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Identity {
    producer_id: i64,
    epoch: i16,
    generation: u64,
}

/// A batch's sequence number and the identity it belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct SeqAssignment {
    seq: i32,
    producer_id: i64,
    epoch: i16,
    generation: u64,
}

#[derive(Default)]
struct PartState {
    queue: VecDeque<Pending>,
    /// Failed batches waiting to be resent, by append order.
    retry: BTreeMap<u64, Pending>,
    /// Append order of the batches in flight.
    in_flight: BTreeSet<u64>,
    /// Ordinal of the next append.
    next_ordinal: u64,
    /// The identity this partition's sequences belong to (idempotent; set at the first send).
    ident: Option<Identity>,
    next_seq: i32,
    /// The broker acknowledged a batch of this partition under `ident`, so it keeps sequence
    /// state for it; until then one batch is in flight at a time.
    confirmed: bool,
    /// A sequence gap (or a batch refused for good) showed that the batches from this ordinal on
    /// were not written: once everything before it is settled they are renumbered under a newer
    /// identity.
    renumber_from: Option<u64>,
    hold: bool,
    not_before: Option<Instant>,
    backoff: Option<Backoff>,
    /// Why the partition was stopped (`stop_partition_on_failure`): every later batch fails.
    failed: Option<String>,
    /// Ordinal of the batch that stopped the partition: batches after it fail, batches before
    /// it (sent earlier, their outcome not yet known) are still retried.
    stopped_at: u64,
    /// The topic is `LogAppendTime`: batches go with the LogAppendTime bit cleared.
    clear_log_append_time: bool,
}

impl PartState {
    /// Stops the partition after the batch `at` failed for good: what is queued or waiting for
    /// a retry after it fails now, what is in flight after it fails when it answers, later
    /// appends fail at once.
    fn stop(&mut self, tp: &TopicPartition, reason: &str, at: u64, finished: &mut Vec<Completion>) {
        if self.failed.is_none() {
            warn!(topic = %tp.0, partition = tp.1, reason, "partition stopped: a batch failed for good, later batches are refused");
            self.failed = Some(reason.to_string());
            self.stopped_at = at;
        }
        self.stopped_at = self.stopped_at.min(at);
        let reason = self.failed.clone().unwrap_or_default();
        let err = || stopped_error(tp, &reason);
        let keep = self
            .queue
            .iter()
            .take_while(|p| p.ordinal < self.stopped_at)
            .count();
        for p in self.queue.drain(keep..) {
            finished.push((p.tx, Err(err())));
        }
        for (_, p) in self.retry.split_off(&self.stopped_at) {
            finished.push((p.tx, Err(err())));
        }
    }

    /// Fails every queued batch with `e`, a refusal no retry can get past (TLS, SASL), as the
    /// delivery timeout would: a batch sent before keeps an unknown outcome; stopping on
    /// failure, the partition stops at the first of them; a transaction can only be aborted.
    fn fail_queued(
        &mut self,
        tp: &TopicPartition,
        e: &Error,
        stop_on_failure: bool,
        txn: Option<&mut TxnState>,
        stopped: &mut Vec<Completion>,
        failed: &mut Vec<Completion>,
    ) {
        let reason = e.to_string();
        if let Some(t) = txn {
            t.abortable.get_or_insert_with(|| reason.clone());
        }
        while let Some(p) = self.queue.pop_front() {
            if stop_on_failure {
                self.stop(tp, &reason, p.ordinal, stopped);
            }
            let err = e
                .security_copy()
                .unwrap_or_else(|| Error::Producer(reason.clone()));
            failed.push((p.tx, Err(err)));
        }
    }

    /// Whether a sequence error for `p` proves a gap (Java's `canRetry`: the batch is the next
    /// one the broker should take): `p` is the lowest batch of its identity not yet settled,
    /// with nothing before it in flight, waiting for a retry, or queued for a resend. A sequence
    /// error for any other batch may just follow an earlier batch that failed on its way.
    fn proves_gap(&self, p: &Pending) -> bool {
        let Some(a) = p.seq else { return false };
        let current = self.ident.map(|i| i.generation) == Some(a.generation);
        let known = self.renumber_from.is_some_and(|r| p.ordinal >= r);
        let before = ..p.ordinal;
        current
            && !known
            && self.in_flight.range(before).next().is_none()
            && self.retry.range(before).next().is_none()
            && !self
                .queue
                .front()
                .is_some_and(|q| q.seq.is_some() && q.ordinal < p.ordinal)
    }
}

fn stopped_error(tp: &TopicPartition, reason: &str) -> Error {
    Error::PartitionStopped {
        topic: tp.0.to_string(),
        partition: tp.1,
        reason: reason.to_string(),
    }
}

struct State {
    producer_id: i64,
    epoch: i16,
    /// Numbers the identities (id, epoch) this producer has had; a partition moves to a newer
    /// one only when it must renumber.
    generation: u64,
    /// An InitProducerId for a newer identity is under way.
    bumping: bool,
    parts: HashMap<TopicPartition, PartState>,
    /// Produce requests sent to each broker and not yet answered.
    requests_in_flight: HashMap<i32, usize>,
    unacked: usize,
    closed: bool,
    /// `abort()` was called: nothing is retried any more.
    aborting: bool,
    /// The transaction under way, for a transactional producer.
    txn: Option<TxnState>,
    /// A metadata refresh was refused for a security reason (TLS, SASL) while the cached
    /// metadata had this generation: batches waiting for a leader fail with it (no refresh can
    /// succeed until the configuration changes). A later successful refresh outdates it.
    refused: Option<(u64, Error)>,
    /// The last request for a newer producer identity was refused for a security reason:
    /// batches waiting for one fail with it. Cleared when one is granted.
    bump_refused: Option<Error>,
}

/// A transactional producer's transaction (one open at a time; it opens with the first batch).
struct TxnState {
    id: String,
    /// Partitions added to the open transaction (AddPartitionsToTxn answered).
    added: HashSet<TopicPartition>,
    /// Partitions with a first batch waiting to be added.
    to_add: Vec<TopicPartition>,
    /// An AddPartitionsToTxn is under way.
    adding: bool,
    /// The partitions it adds.
    being_added: Vec<TopicPartition>,
    /// The transaction is being ended: batches not yet sent wait for the next one.
    ending: bool,
    /// It is being aborted: appends are refused.
    aborting: bool,
    /// Another producer took the id: nothing more is written.
    fenced: Option<String>,
    /// A batch of the open transaction failed for good: it can only be aborted.
    abortable: Option<String>,
}

struct Inner {
    cluster: Arc<Cluster>,
    config: ProducerConfig,
    state: Mutex<State>,
    wake: Arc<Notify>,
    idle: Notify,
    acc: records::Accumulator,
    /// Held by `end_transaction`.
    end_lock: tokio::sync::Mutex<()>,
    /// A metadata refresh of the sender's is under way (one at a time: a refresh may wait a
    /// connect timeout, and the sender asks every 100 ms while a leader is unknown).
    refreshing: std::sync::atomic::AtomicBool,
}

/// An idempotent producer. Cheap to clone.
#[derive(Clone)]
pub struct Producer {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Producer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let st = self.inner.lock();
        f.debug_struct("Producer")
            .field("producer_id", &st.producer_id)
            .field("epoch", &st.epoch)
            .field("unacked", &st.unacked)
            .finish()
    }
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Producer {
    /// Creates a producer (obtaining a producer id when idempotent) and starts its sender.
    pub async fn new(cluster: Arc<Cluster>, mut config: ProducerConfig) -> Result<Producer> {
        if config.transactional_id.is_some() {
            config.idempotent = true;
            config.stop_partition_on_failure = true;
            // A batch must fail before the coordinator aborts its transaction on timeout.
            config.delivery_timeout = config.delivery_timeout.min(config.transaction_timeout);
        }
        if config.idempotent {
            config.max_in_flight_batches = config.max_in_flight_batches.clamp(1, 5);
        }
        let inner = Arc::new(Inner {
            cluster,
            state: Mutex::new(State {
                producer_id: -1,
                epoch: -1,
                generation: 0,
                bumping: false,
                parts: HashMap::new(),
                requests_in_flight: HashMap::new(),
                unacked: 0,
                closed: false,
                aborting: false,
                txn: config.transactional_id.clone().map(|id| TxnState {
                    id,
                    added: HashSet::new(),
                    to_add: Vec::new(),
                    adding: false,
                    being_added: Vec::new(),
                    ending: false,
                    aborting: false,
                    fenced: None,
                    abortable: None,
                }),
                refused: None,
                bump_refused: None,
            }),
            config,
            wake: Arc::new(Notify::new()),
            idle: Notify::new(),
            acc: records::Accumulator::default(),
            end_lock: tokio::sync::Mutex::new(()),
            refreshing: std::sync::atomic::AtomicBool::new(false),
        });
        if let Some(txn_id) = &inner.config.transactional_id {
            let (id, epoch) = txn::init(
                &inner.cluster,
                txn_id,
                inner.config.transaction_timeout,
                None,
            )
            .await?;
            info!(transactional_id = %txn_id, producer_id = id, epoch, "transactional producer started (earlier producers of the id are fenced)");
            let mut st = inner.lock();
            st.producer_id = id;
            st.epoch = epoch;
            st.generation = 1;
        } else if inner.config.idempotent {
            let (id, epoch) = init_producer_id(&inner.cluster, -1, -1).await?;
            let mut st = inner.lock();
            st.producer_id = id;
            st.epoch = epoch;
            st.generation = 1;
        }
        tokio::spawn(sender_loop(Arc::downgrade(&inner), inner.wake.clone()));
        Ok(Producer { inner })
    }

    /// The cluster this producer writes to.
    pub fn cluster(&self) -> &Arc<Cluster> {
        &self.inner.cluster
    }

    /// The transactional id, for a transactional producer.
    pub fn transactional_id(&self) -> Option<&str> {
        self.inner.config.transactional_id.as_deref()
    }

    /// The producer id and epoch (-1, -1 when not idempotent).
    pub fn producer_id_and_epoch(&self) -> (i64, i16) {
        let st = self.inner.lock();
        (st.producer_id, st.epoch)
    }

    /// Queues `batch` for `topic`/`partition` and returns a future for its acknowledgement.
    ///
    /// The batch is queued before this returns, so appends made one after another to the same
    /// partition are written in that order even if their futures are awaited later.
    pub fn append(
        &self,
        topic: &str,
        partition: i32,
        batch: RecordBatch,
    ) -> impl std::future::Future<Output = Result<ProduceAck>> + Send + 'static {
        let (tx, rx) = oneshot::channel();
        let queued = {
            let mut st = self.inner.lock();
            let key: TopicPartition = (Arc::from(topic), partition);
            let failed = st.parts.get(&key).and_then(|ps| ps.failed.clone());
            let fenced = st.txn.as_ref().and_then(|t| {
                if let Some(r) = &t.fenced {
                    Some(Error::Fenced {
                        transactional_id: t.id.clone(),
                        reason: r.clone(),
                    })
                } else if t.aborting {
                    Some(Error::Producer(format!(
                        "transaction {} is being aborted",
                        t.id
                    )))
                } else {
                    // A transaction that can only be aborted takes nothing more (its data
                    // would be discarded with it).
                    t.abortable.as_ref().map(|r| {
                        Error::Producer(format!("transaction {} must be aborted: {r}", t.id))
                    })
                }
            });
            if st.closed {
                Err(Error::Shutdown)
            } else if let Some(e) = fenced {
                Err(e)
            } else if let Some(reason) = failed {
                Err(stopped_error(&key, &reason))
            } else {
                st.unacked += 1;
                if !st.parts.contains_key(&key) {
                    self.inner.cluster.track_topics([topic]);
                }
                let ps = st.parts.entry(key).or_default();
                let ordinal = ps.next_ordinal;
                ps.next_ordinal += 1;
                ps.queue.push_back(Pending {
                    batch,
                    ordinal,
                    seq: None,
                    enqueued: Instant::now(),
                    tx,
                    clear_log_append_time: false,
                });
                Ok(())
            }
        };
        if queued.is_ok() {
            self.inner.wake.notify_one();
        }
        async move {
            queued?;
            rx.await.unwrap_or(Err(Error::Shutdown))
        }
    }

    /// Continues a predecessor's producer identity on `topic`/`partition`: this partition's
    /// batches go under `producer_id` and `epoch`, numbered from `next_sequence` (the sequence
    /// after the last one of the predecessor's batches the partition's log ends with), instead
    /// of under this producer's own identity. Appends the predecessor still had in flight (a
    /// process killed with requests queued on a broker's connection: the broker reads and writes
    /// them after it died) are then told apart by the broker: one landing after ours repeats
    /// sequences the broker already holds and is refused or answered as a duplicate, never
    /// written a second time; one that landed first takes the sequence ours would get, and ours
    /// is answered as its duplicate (same sequences carry the same records when both writers
    /// forward the same records in the same order) or, refused, fails with
    /// [`Error::Producer`] ("sequence ... taken") instead of being renumbered, so the caller
    /// can read the log again. A later sequence gap still moves the partition to this
    /// producer's own identity.
    ///
    /// Only for an idempotent producer that stops a partition on failure
    /// ([`ProducerConfig::stop_partition_on_failure`]: after a "taken" refusal nothing more of
    /// the partition may be written under another identity), a valid identity, and a partition
    /// this producer has not appended to yet; returns whether it was taken.
    pub fn continue_identity(
        &self,
        topic: &str,
        partition: i32,
        producer_id: i64,
        epoch: i16,
        next_sequence: i32,
    ) -> bool {
        let config = &self.inner.config;
        if !config.idempotent
            || !config.stop_partition_on_failure
            || producer_id < 0
            || epoch < 0
            || next_sequence < 0
        {
            return false;
        }
        let mut st = self.inner.lock();
        let key: TopicPartition = (Arc::from(topic), partition);
        if !st.parts.contains_key(&key) {
            // As `append` does for a partition it has not seen: the producer's metadata
            // refreshes follow the topic's leaders.
            self.inner.cluster.track_topics([topic]);
        }
        let ps = st.parts.entry(key).or_default();
        if ps.ident.is_some() || ps.next_ordinal > 0 {
            return false;
        }
        ps.ident = Some(Identity {
            producer_id,
            epoch,
            generation: CONTINUED,
        });
        ps.next_seq = next_sequence;
        // The broker may no longer hold state for it (expired): one batch at a time until
        // one is acknowledged, as for a fresh identity.
        ps.confirmed = false;
        true
    }

    /// Forgets everything about `topic`/`partition` (its identity, sequences, a stop) once
    /// nothing of it is queued, in flight or waiting for a retry; returns whether it did. A
    /// partition handed to another writer is forgotten, so that if it comes back, its next
    /// batch goes under the identity its log then ends with ([`continue_identity`]
    /// (Self::continue_identity)) and never under sequences this producer used before it left:
    /// the other writer may have continued those, and the broker would take a repeat of one of
    /// its batches' sequences for a duplicate.
    pub fn forget_partition(&self, topic: &str, partition: i32) -> bool {
        let mut st = self.inner.lock();
        let key: TopicPartition = (Arc::from(topic), partition);
        let idle = st
            .parts
            .get(&key)
            .is_none_or(|ps| ps.queue.is_empty() && ps.in_flight.is_empty() && ps.retry.is_empty());
        if idle {
            st.parts.remove(&key);
        }
        idle
    }

    /// Waits until every queued batch has been acknowledged or failed.
    pub async fn flush(&self) {
        loop {
            let idle = self.inner.idle.notified();
            if self.inner.lock().unacked == 0 {
                return;
            }
            idle.await;
        }
    }

    /// Commits the open transaction (transactional producers): batches already sent are
    /// awaited, batches appended but not yet sent wait and go into the next transaction, then
    /// EndTxn commits every batch acknowledged since the last commit at once. Fails, leaving
    /// the transaction to [`abort_transaction`](Self::abort_transaction), if a batch of it
    /// failed for good; fails with [`Error::Fenced`] if another producer took the id. A
    /// commit with nothing written is a no-op.
    pub async fn commit_transaction(&self) -> Result<()> {
        self.end_transaction(true).await
    }

    /// Aborts the open transaction: every batch appended since the last commit is discarded,
    /// those not yet acknowledged fail (they followed data that is aborted), and stopped
    /// partitions start again. After a batch failed for good the producer then bumps its epoch
    /// (KIP-360) so the next transaction starts its sequences afresh.
    pub async fn abort_transaction(&self) -> Result<()> {
        self.end_transaction(false).await
    }

    async fn end_transaction(&self, commit: bool) -> Result<()> {
        // One end at a time: a second would see the first's transaction half ended.
        let _one = self.inner.end_lock.lock().await;
        let fenced = |t: &TxnState| {
            t.fenced.as_ref().map(|r| Error::Fenced {
                transactional_id: t.id.clone(),
                reason: r.clone(),
            })
        };
        let txn_id = {
            let mut st = self.inner.lock();
            let Some(t) = st.txn.as_mut() else {
                return Err(Error::InvalidArgument(
                    "not a transactional producer".into(),
                ));
            };
            if let Some(e) = fenced(t) {
                return Err(e);
            }
            t.ending = true;
            t.aborting = !commit;
            t.id.clone()
        };
        // Dropped before it finishes (a caller's timeout): sends resume, nothing is ended.
        let _guard = EndGuard(&self.inner);
        if !commit {
            self.fail_unsent("the transaction was aborted");
        }
        // Everything sent in this transaction settles (acknowledged, or failed for good), and
        // no AddPartitionsToTxn is under way (none starts while the transaction ends).
        loop {
            let idle = self.inner.idle.notified();
            let settled = {
                let st = self.inner.lock();
                !st.txn.as_ref().is_some_and(|t| t.adding)
                    && st.parts.values().all(|ps| {
                        ps.in_flight.is_empty()
                            && ps.retry.is_empty()
                            && ps.queue.front().is_none_or(|p| p.seq.is_none())
                    })
            };
            if settled {
                break;
            }
            tokio::select! {
                _ = idle => {}
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
        }
        let (ident, added, spoiled) = {
            let mut st = self.inner.lock();
            let ident = (st.producer_id, st.epoch);
            let t = st.txn.as_mut().expect("transactional");
            if let Some(e) = fenced(t) {
                return Err(e);
            }
            if commit {
                if let Some(r) = &t.abortable {
                    return Err(Error::Producer(format!(
                        "transaction {txn_id} cannot commit: {r}; it must be aborted"
                    )));
                }
            }
            (ident, !t.added.is_empty(), t.abortable.is_some())
        };
        // A commit is a write like any append: under a lease (`send_gate`) it goes out only
        // while the lease holds, checked right before the request (an abort always may).
        if let (true, true, Some(gate)) = (added, commit, &self.inner.config.send_gate) {
            if (*gate.borrow()).is_none_or(|u| std::time::Instant::now() >= u) {
                return Err(Error::Producer(format!(
                    "transaction {txn_id} not committed: the lease does not hold"
                )));
            }
        }
        let result = if added {
            txn::end(&self.inner.cluster, &txn_id, ident, commit).await
        } else {
            Ok(())
        };
        // After a failure the next transaction starts under a bumped epoch: the broker may hold
        // sequences this producer never had acknowledged. Until that succeeds the transaction
        // stays spoiled, so a retried abort bumps again.
        let bumped = match (&result, commit, spoiled) {
            (Ok(()), false, true) => Some(
                txn::init(
                    &self.inner.cluster,
                    &txn_id,
                    self.inner.config.transaction_timeout,
                    Some(ident),
                )
                .await,
            ),
            _ => None,
        };
        let unsent = {
            let mut st = self.inner.lock();
            let st: &mut State = &mut st;
            if let Some(Ok((id, epoch))) = &bumped {
                st.producer_id = *id;
                st.epoch = *epoch;
                st.generation += 1;
                for ps in st.parts.values_mut() {
                    ps.ident = None;
                    ps.renumber_from = None;
                }
            }
            let clean = !matches!(bumped, Some(Err(_)));
            let t = st.txn.as_mut().expect("transactional");
            match &result {
                Err(Error::Fenced { reason, .. }) => {
                    t.fenced.get_or_insert_with(|| reason.clone());
                }
                Err(_) => {}
                Ok(()) => {
                    t.added.clear();
                    if !commit && clean {
                        t.abortable = None;
                        for ps in st.parts.values_mut() {
                            ps.failed = None;
                        }
                    }
                }
            }
            if let Some(Err(Error::Fenced { reason, .. })) = &bumped {
                t.fenced.get_or_insert_with(|| reason.clone());
            }
            // Appends refused while the abort ran; none can have slipped in, but what is
            // queued unsent now follows aborted data either way.
            if commit {
                Vec::new()
            } else {
                take_unsent(st)
            }
        };
        for tx in unsent {
            let _ = tx.send(Err(Error::Producer("the transaction was aborted".into())));
        }
        result?;
        match bumped {
            Some(Err(e)) => Err(e),
            _ => Ok(()),
        }
    }

    /// Fails every batch appended and not yet sent (an aborted transaction's).
    fn fail_unsent(&self, why: &str) {
        let finished = take_unsent(&mut self.inner.lock());
        for tx in finished {
            let _ = tx.send(Err(Error::Producer(why.to_string())));
        }
        self.inner.idle.notify_waiters();
    }

    /// Stops accepting appends, then waits for what is queued.
    pub async fn close(&self) {
        self.inner.lock().closed = true;
        self.flush().await;
    }

    /// Stops accepting appends, fails what is queued or waiting for a retry (never sent, or
    /// refused by the broker), and waits until every request in flight has answered, without
    /// retrying any of them. Afterwards nothing of this producer can still land on the target.
    pub async fn abort(&self) {
        let finished = {
            let mut st = self.inner.lock();
            st.closed = true;
            st.aborting = true;
            let mut finished = Vec::new();
            for ps in st.parts.values_mut() {
                for p in ps.queue.drain(..) {
                    finished.push(p.tx);
                }
                for (_, p) in std::mem::take(&mut ps.retry) {
                    finished.push(p.tx);
                }
                ps.hold = false;
            }
            st.unacked -= finished.len();
            finished
        };
        for tx in finished {
            let _ = tx.send(Err(Error::Shutdown));
        }
        self.inner.idle.notify_waiters();
        self.flush().await;
    }
}

/// Fences every producer of `transactional_id`, as Kafka's `Admin.fenceProducers` does: an
/// InitProducerId for the id bumps its epoch, so their later appends, AddPartitionsToTxn and
/// EndTxn are refused (PRODUCER_FENCED / INVALID_PRODUCER_EPOCH), and a transaction they left
/// open is aborted (retried while the coordinator writes the abort). Returns the id's producer
/// id and new epoch.
pub async fn fence_transactional_id(
    cluster: &Cluster,
    transactional_id: &str,
    transaction_timeout: Duration,
) -> Result<(i64, i16)> {
    let fenced = txn::init(cluster, transactional_id, transaction_timeout, None).await?;
    info!(
        transactional_id,
        producer_id = fenced.0,
        epoch = fenced.1,
        "fenced the transactional id's earlier producers"
    );
    Ok(fenced)
}

async fn init_producer_id(cluster: &Cluster, id: i64, epoch: i16) -> Result<(i64, i16)> {
    cluster
        .retry("InitProducerId", || async {
            let conn = cluster.any_connection().await?;
            let version = conn.version(ApiKey::InitProducerId)?;
            // Bumping an existing id's epoch needs v3+ (KIP-360); older brokers get a new id.
            let (id, epoch) = if version >= 3 { (id, epoch) } else { (-1, -1) };
            let req = InitProducerIdRequest::default()
                .with_transactional_id(None)
                .with_transaction_timeout_ms(i32::MAX)
                .with_producer_id(ProducerId(id))
                .with_producer_epoch(epoch);
            let resp = conn.send_versioned(&req, version).await?;
            if let Some(e) = Error::broker(
                ApiKey::InitProducerId,
                conn.broker(),
                None,
                resp.error_code,
                None,
            ) {
                return Err(e);
            }
            Ok((resp.producer_id.0, resp.producer_epoch))
        })
        .await
}

/// Rewrites producer id, epoch and base sequence of `batch`, and clears its transactional bit
/// (this producer writes outside transactions), without copying its records: the patched
/// 61-byte header and the untouched records slice ([`RecordBatch::split_with_producer`]: the
/// CRC is updated from the changed header bytes alone, in about a microsecond whatever the
/// batch size, so a batch whose CRC was wrong stays wrong).
pub fn rewrite_producer_fields(
    batch: &RecordBatch,
    producer_id: i64,
    epoch: i16,
    base_sequence: i32,
) -> [Bytes; 2] {
    batch.split_with_producer(producer_id, epoch, base_sequence, false)
}

/// Whether a non-idempotent producer must rewrite a batch: a producer id it does not own, or
/// the transactional bit, would make the target check sequences or expect a transaction.
fn needs_blank_producer(batch: &RecordBatch) -> bool {
    batch.producer_id() != -1 || batch.is_transactional()
}

/// One partition's share of a request.
struct Outgoing {
    tp: TopicPartition,
    batches: Vec<Pending>,
}

async fn sender_loop(inner: std::sync::Weak<Inner>, wake_handle: Arc<Notify>) {
    // One task per broker puts that broker's requests on its connection strictly in order, so
    // a partition's batches reach the broker in sequence order.
    let mut brokers: HashMap<i32, tokio::sync::mpsc::UnboundedSender<(BrokerInfo, Vec<Outgoing>)>> =
        HashMap::new();
    loop {
        let wake = wake_handle.notified();
        let Some(strong) = inner.upgrade() else {
            return;
        };
        let (requests, next_wake, bump) = collect_ready(&strong);
        if bump {
            tokio::spawn(bump_epoch(strong.clone()));
        }
        let to_add = {
            let mut st = strong.lock();
            match st.txn.as_mut() {
                Some(t) if !t.adding && !t.ending && !t.to_add.is_empty() => {
                    t.adding = true;
                    t.being_added = std::mem::take(&mut t.to_add);
                    Some((t.id.clone(), t.being_added.clone()))
                }
                _ => None,
            }
        };
        if let Some((txn_id, parts)) = to_add {
            tokio::spawn(add_to_txn(strong.clone(), txn_id, parts));
        }
        for (broker, reqs) in requests {
            let tx = brokers.entry(broker.id).or_insert_with(|| {
                let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
                tokio::spawn(broker_sender(std::sync::Arc::downgrade(&strong), rx));
                tx
            });
            for parts in reqs {
                if let Err(e) = tx.send((broker.clone(), parts)) {
                    // The broker task ended (it only does when the producer is gone).
                    let (broker, parts) = e.0;
                    request_answered(&strong, broker.id);
                    complete(
                        &strong,
                        parts
                            .into_iter()
                            .map(|o| (o, Err(Error::Shutdown)))
                            .collect(),
                    )
                    .await;
                }
            }
        }
        let sleep = next_wake.unwrap_or(Duration::from_millis(200));
        drop(strong);
        tokio::select! {
            _ = wake => {}
            _ = tokio::time::sleep(sleep) => {}
        }
    }
}

async fn broker_sender(
    inner: std::sync::Weak<Inner>,
    mut rx: tokio::sync::mpsc::UnboundedReceiver<(BrokerInfo, Vec<Outgoing>)>,
) {
    while let Some((broker, parts)) = rx.recv().await {
        let Some(inner) = inner.upgrade() else { return };
        match start_request(&inner, &broker, &parts).await {
            Ok((version, in_flight)) => {
                tokio::spawn(async move {
                    let resp = match in_flight.response().await {
                        Ok(rest) => crate::codec::decode_response::<ProduceRequest>(rest, version)
                            .map_err(Error::Codec),
                        Err(e) => Err(Error::Conn(e)),
                    };
                    if let Ok(r) = &resp {
                        inner.cluster.note_throttle(
                            broker.id,
                            ApiKey::Produce,
                            version,
                            r.throttle_time_ms,
                        );
                    }
                    finish_request(&inner, &broker, parts, resp).await;
                });
            }
            Err(e) => finish_request(&inner, &broker, parts, Err(e)).await,
        }
    }
}

/// Waits until the lease of [`ProducerConfig::send_gate`] holds; false if the producer is
/// aborted first.
async fn wait_for_lease(inner: &Inner, mut gate: SendGate) -> bool {
    let mut held_since: Option<std::time::Instant> = None;
    loop {
        if inner.lock().aborting {
            return false;
        }
        let until = *gate.borrow_and_update();
        let now = std::time::Instant::now();
        if until.is_some_and(|u| now < u) {
            if let Some(since) = held_since {
                info!(held = ?since.elapsed(), "lease renewed: produce requests sent again");
            }
            return true;
        }
        if held_since.is_none() {
            warn!("lease run out: produce requests held until it is renewed");
            held_since = Some(now);
        }
        // Renewed (a change), or checked again for an abort.
        if let Ok(Err(_)) = tokio::time::timeout(Duration::from_millis(50), gate.changed()).await {
            // Nobody renews it any more: only an abort ends the wait.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Takes what can be sent now, grouped by leader, and whether a newer producer identity must be
/// asked for (the caller starts [`bump_epoch`]; `bumping` is already set).
fn collect_ready(inner: &Arc<Inner>) -> (BrokerRequests, Option<Duration>, bool) {
    let md = inner.cluster.metadata();
    let now = Instant::now();
    let mut next_wake: Option<Duration> = None;
    // Per broker, requests in the order they must be sent: request k carries the k-th batch
    // taken from each partition (one batch per partition per request).
    // (request, its size in bytes) per broker.
    #[allow(clippy::type_complexity)]
    let mut by_broker: HashMap<i32, (BrokerInfo, Vec<(Request, usize)>)> = HashMap::new();
    let mut need_metadata = false;
    let mut need_bump = false;
    let mut st = inner.lock();
    if st.unacked == 0 {
        // Nothing queued, waiting for a retry or in flight: nothing to send and no deadline to
        // keep. An append wakes the sender; the scan of every partition it would cost (thousands
        // on an idle mirror, several times a second) is skipped.
        return (Vec::new(), Some(IDLE_WAKE), false);
    }
    let max_in_flight = inner.config.max_in_flight_batches;
    let max_bytes = inner.config.max_request_bytes;
    let delivery_timeout = inner.config.delivery_timeout;
    let idempotent = inner.config.idempotent;
    let current = Identity {
        producer_id: st.producer_id,
        epoch: st.epoch,
        generation: st.generation,
    };
    let stop_on_failure = inner.config.stop_partition_on_failure;
    let max_requests = inner.config.max_requests_per_broker.max(1);
    let busy_before = st.requests_in_flight.clone();
    let mut expired = Vec::new();
    let mut stopped: Vec<Completion> = Vec::new();
    let mut refused: Vec<Completion> = Vec::new();
    let State {
        parts,
        txn,
        refused: st_refused,
        bump_refused: st_bump_refused,
        ..
    } = &mut *st;
    let mut txn = txn.as_mut();
    for (tp, ps) in parts.iter_mut() {
        // Fail batches that ran out of time while queued (not in flight): never sent, or sent
        // before and waiting for a retry (no leader, throttled). A batch that was sent keeps an
        // unknown outcome: the broker may have written it. What follows it is left to the
        // broker's answer to the next batch (a proven gap renumbers), or, stopping on failure,
        // is failed with it.
        while let Some(front) = ps.queue.front() {
            if now.duration_since(front.enqueued) > delivery_timeout {
                let p = ps.queue.pop_front().expect("front exists");
                if stop_on_failure {
                    let reason = format!(
                        "a batch was not acknowledged within the delivery timeout \
                         {delivery_timeout:?}"
                    );
                    ps.stop(tp, &reason, p.ordinal, &mut stopped);
                    if let Some(t) = txn.as_deref_mut() {
                        // Its outcome is unknown: the transaction must not commit.
                        t.abortable.get_or_insert(reason);
                    }
                }
                expired.push(p);
            } else {
                break;
            }
        }
        if ps.hold {
            if !ps.in_flight.is_empty() {
                continue;
            }
            // Everything in flight has answered: put failed batches back in sequence order.
            let retry = std::mem::take(&mut ps.retry);
            for (_, p) in retry.into_iter().rev() {
                ps.queue.push_front(p);
            }
            ps.hold = false;
        }
        if let Some(t) = ps.not_before {
            if t > now {
                let d = t - now;
                next_wake = Some(next_wake.map_or(d, |w| w.min(d)));
                continue;
            }
            ps.not_before = None;
        }
        if ps.queue.is_empty() || ps.in_flight.len() >= max_in_flight {
            continue;
        }
        // A transactional producer: a partition's first batch of a transaction waits until the
        // partition is added to it; batches not yet sent wait while the transaction ends; once
        // fenced, nothing is sent.
        let mut txn_ending = false;
        if let Some(t) = txn.as_deref_mut() {
            if let Some(reason) = &t.fenced {
                let at = ps.queue.front().map_or(0, |p| p.ordinal);
                let reason = format!("producer fenced: {reason}");
                ps.stop(tp, &reason, at, &mut stopped);
                continue;
            }
            txn_ending = t.ending;
            if ps.queue.front().is_some_and(|p| p.seq.is_none()) {
                if t.ending {
                    continue;
                }
                if !t.added.contains(tp) {
                    if !t.to_add.contains(tp) && !t.being_added.contains(tp) {
                        t.to_add.push(tp.clone());
                    }
                    continue;
                }
            }
        }
        // Only batches before this ordinal may go (those sent before a proven gap).
        let mut only_before = None;
        if idempotent {
            if let Some(from) = ps.renumber_from {
                if !ps.in_flight.is_empty() {
                    continue;
                }
                if ps.queue.front().is_some_and(|p| p.ordinal < from) {
                    // Batches sent before the gap are settled first, under their own sequences.
                    only_before = Some(from);
                } else if ps.ident.is_some_and(|i| i.generation >= current.generation) {
                    // Everything before the gap is settled; a newer identity is needed (and
                    // none comes while the cluster refuses this client).
                    if let Some(e) = st_bump_refused.as_ref() {
                        ps.fail_queued(
                            tp,
                            e,
                            stop_on_failure,
                            txn.as_deref_mut(),
                            &mut stopped,
                            &mut refused,
                        );
                    } else {
                        need_bump = true;
                    }
                    continue;
                } else {
                    // The broker cannot have written these: number them afresh under the
                    // current identity.
                    for p in ps.queue.iter_mut() {
                        p.seq = None;
                    }
                    ps.ident = None;
                    ps.renumber_from = None;
                }
            }
            if ps.ident.is_none() {
                ps.ident = Some(current);
                ps.next_seq = 0;
                ps.confirmed = false;
            }
        }
        // Until the broker holds sequence state for this identity, it takes any sequence: one
        // batch at a time, so a later batch cannot be written before a refused earlier one.
        let limit = if idempotent && !ps.confirmed {
            1
        } else {
            max_in_flight
        };
        if ps.in_flight.len() >= limit {
            continue;
        }
        let leader = md
            .partition(&tp.0, tp.1)
            .filter(|p| p.leader >= 0)
            .and_then(|p| md.brokers.get(&p.leader));
        let Some(leader) = leader else {
            let refusal = st_refused
                .as_ref()
                .filter(|(generation, _)| *generation == md.generation)
                .map(|(_, e)| e);
            if let Some(e) = refusal {
                // No leader, and the cluster refuses this client.
                ps.fail_queued(
                    tp,
                    e,
                    stop_on_failure,
                    txn.as_deref_mut(),
                    &mut stopped,
                    &mut refused,
                );
                continue;
            }
            need_metadata = true;
            next_wake = Some(next_wake.map_or(Duration::from_millis(100), |w| {
                w.min(Duration::from_millis(100))
            }));
            continue;
        };
        if let Some(d) = inner.cluster.throttled_for(leader.id) {
            // The leader asked for a pause (quota); sent now, the request would only wait on
            // the broker's muted connection.
            next_wake = Some(next_wake.map_or(d, |w| w.min(d)));
            continue;
        }
        let entry = by_broker
            .entry(leader.id)
            .or_insert_with(|| (leader.clone(), Vec::new()));
        let mut layer = 0;
        while ps.in_flight.len() < limit {
            let Some(front) = ps.queue.front() else { break };
            if only_before.is_some_and(|from| front.ordinal >= from) {
                break;
            }
            if txn_ending && front.seq.is_none() {
                break;
            }
            let size = front.batch.len();
            // Find the first request at or after `layer` with room (requests after a full one
            // keep the order: a partition's k-th batch always goes in a later request than its
            // (k-1)-th).
            while layer < entry.1.len()
                && entry.1[layer].1 > 0
                && entry.1[layer].1 + size > max_bytes
            {
                layer += 1;
            }
            if layer == entry.1.len() {
                let busy = busy_before.get(&leader.id).copied().unwrap_or(0);
                if busy + entry.1.len() >= max_requests {
                    // The broker has enough requests to read: this batch waits for one to
                    // answer and goes with what else has queued by then.
                    break;
                }
                entry.1.push((Vec::new(), 0));
            }
            let mut p = ps.queue.pop_front().expect("front exists");
            p.clear_log_append_time |= ps.clear_log_append_time;
            if let (true, None, Some(id)) = (idempotent, p.seq, ps.ident) {
                // First send. A batch with a sequence keeps it: it may have been written.
                p.seq = Some(SeqAssignment {
                    seq: ps.next_seq,
                    producer_id: id.producer_id,
                    epoch: id.epoch,
                    generation: id.generation,
                });
                let count = p.batch.record_count().max(1);
                ps.next_seq = ps.next_seq.wrapping_add(count) & i32::MAX;
            }
            ps.in_flight.insert(p.ordinal);
            entry.1[layer].1 += size;
            entry.1[layer].0.push(Outgoing {
                tp: tp.clone(),
                batches: vec![p],
            });
            layer += 1;
        }
    }
    let bump = need_bump && !st.bumping;
    if bump {
        st.bumping = true;
    }
    for (id, (_, reqs)) in &by_broker {
        *st.requests_in_flight.entry(*id).or_default() += reqs.len();
    }
    let n_expired = expired.len() + stopped.len() + refused.len();
    st.unacked -= n_expired;
    drop(st);
    for p in expired {
        let outcome = if p.seq.is_some() {
            "sent before, so it may have been written"
        } else {
            "never sent"
        };
        let _ = p.tx.send(Err(Error::Producer(format!(
            "batch not acknowledged within the delivery timeout {delivery_timeout:?} ({outcome})"
        ))));
    }
    for (tx, r) in stopped.into_iter().chain(refused) {
        let _ = tx.send(r);
    }
    if n_expired > 0 {
        inner.idle.notify_waiters();
    }
    if need_metadata {
        spawn_refresh(inner, "producer metadata refresh");
    }
    (
        by_broker
            .into_values()
            .map(|(b, reqs)| (b, reqs.into_iter().map(|(parts, _)| parts).collect()))
            .collect(),
        next_wake,
        bump,
    )
}

/// Refreshes the producer's metadata in a task of its own (`what`, for the log) unless a
/// refresh is under way, and wakes the sender when it is done. A refusal for a security reason
/// is kept for the sender, which fails the batches that wait for a leader with it. The task
/// does not keep a dropped producer alive.
fn spawn_refresh(inner: &Arc<Inner>, what: &'static str) {
    use std::sync::atomic::Ordering;
    if inner.refreshing.swap(true, Ordering::AcqRel) {
        return;
    }
    let (weak, cluster) = (Arc::downgrade(inner), inner.cluster.clone());
    let generation = cluster.metadata().generation;
    tokio::spawn(async move {
        let r = cluster.refresh_metadata().await;
        let Some(inner) = weak.upgrade() else {
            return;
        };
        inner.refreshing.store(false, Ordering::Release);
        if let Err(e) = r {
            debug!(error = %e, "{what} failed");
            if e.is_security() {
                inner.lock().refused = Some((generation, e));
            }
        }
        inner.wake.notify_one();
    });
}

/// Builds a Produce request (headers rewritten, records untouched) and puts it on the broker's
/// produce connection.
async fn start_request(
    inner: &Inner,
    broker: &BrokerInfo,
    parts: &[Outgoing],
) -> Result<(i16, crate::conn::InFlight)> {
    let mut topics: Vec<TopicRecords> = Vec::new();
    let transactional = inner.config.transactional_id.is_some();
    for out in parts {
        let mut batches = Vec::with_capacity(out.batches.len() * 2);
        for p in &out.batches {
            let lat = p.clear_log_append_time;
            match (inner.config.idempotent, p.seq) {
                (true, Some(a)) => batches.extend(p.batch.split_for_produce(
                    a.producer_id,
                    a.epoch,
                    a.seq,
                    transactional,
                    lat,
                )),
                _ if needs_blank_producer(&p.batch) => {
                    batches.extend(p.batch.split_for_produce(-1, -1, -1, false, lat));
                }
                // Same producer fields: only base offset and leader epoch are reset (no CRC
                // change; both slices of the batch when they already are 0 and -1).
                _ => batches.extend(p.batch.split_for_produce(
                    p.batch.producer_id(),
                    p.batch.producer_epoch(),
                    p.batch.base_sequence(),
                    p.batch.is_transactional(),
                    lat,
                )),
            }
        }
        let pr = PartitionRecords {
            partition: out.tp.1,
            batches,
        };
        match topics.iter_mut().find(|t| *t.name == *out.tp.0) {
            Some(t) => t.partitions.push(pr),
            None => topics.push(TopicRecords {
                name: out.tp.0.to_string(),
                partitions: vec![pr],
            }),
        }
    }
    let conn = inner.cluster.connection(broker, ConnKind::Produce).await?;
    // The lease is checked last, right before the request is written (getting a connection
    // can take long); an abort while it is out fails the request unsent.
    if let Some(gate) = &inner.config.send_gate {
        if !wait_for_lease(inner, gate.clone()).await {
            return Err(Error::Shutdown);
        }
    }
    let mut version = conn.version(ApiKey::Produce)?;
    if transactional {
        // v12 would make it a version-2 transaction (partitions added implicitly, an epoch
        // bump at every commit), which this producer does not speak.
        version = version.min(txn::MAX_TXN_PRODUCE_VERSION);
    }
    let body = ProduceBody {
        transactional_id: inner.config.transactional_id.as_deref(),
        acks: inner.config.acks,
        timeout_ms: inner
            .config
            .request_timeout
            .as_millis()
            .min(i32::MAX as u128) as i32,
        topics: &topics,
    };
    let client_id = &inner.cluster.config().conn.client_id;
    let in_flight = conn.begin(ApiKey::Produce, |corr| {
        encode_produce(corr, client_id, version, &body)
    })?;
    Ok((version, in_flight))
}

/// The broker's words on a refused partition: its error message and the per-record errors
/// (KIP-467: e.g. which record's timestamp was out of range), whichever it sent.
fn produce_error_message(
    p: &kafka_protocol::messages::produce_response::PartitionProduceResponse,
) -> Option<String> {
    let mut parts: Vec<String> = p.error_message.iter().map(|m| m.to_string()).collect();
    for e in p.record_errors.iter().take(1) {
        if let Some(m) = &e.batch_index_error_message {
            parts.push(format!("record {}: {m}", e.batch_index));
        }
    }
    if p.record_errors.len() > 1 {
        parts.push(format!("{} more record errors", p.record_errors.len() - 1));
    }
    (!parts.is_empty()).then(|| parts.join("; "))
}

/// A request to `broker` has its answer (or failed): one fewer in flight there.
fn request_answered(inner: &Inner, broker: i32) {
    let mut st = inner.lock();
    if let Some(n) = st.requests_in_flight.get_mut(&broker) {
        *n = n.saturating_sub(1);
    }
}

/// Maps a Produce response (or the failure to get one) onto each partition of the request.
async fn finish_request(
    inner: &Arc<Inner>,
    broker: &BrokerInfo,
    parts: Vec<Outgoing>,
    result: Result<kafka_protocol::messages::ProduceResponse>,
) {
    request_answered(inner, broker.id);
    let mut outcomes: Vec<(Outgoing, PartitionOutcome)> = Vec::with_capacity(parts.len());
    match result {
        Ok(resp) => {
            for out in parts {
                let r = resp
                    .responses
                    .iter()
                    .find(|t| *t.name.0 == *out.tp.0)
                    .and_then(|t| t.partition_responses.iter().find(|p| p.index == out.tp.1));
                let outcome = match r {
                    None => Err(Error::Metadata(format!(
                        "Produce response from {} lacks topic {} partition {}",
                        broker.addr(),
                        out.tp.0,
                        out.tp.1
                    ))),
                    Some(p) => match Error::broker(
                        ApiKey::Produce,
                        format!("{}@{}", broker.id, broker.addr()),
                        Some(format!("topic {} partition {}", out.tp.0, out.tp.1)),
                        p.error_code,
                        produce_error_message(p),
                    ) {
                        Some(e) => Err(e),
                        None => Ok((p.base_offset, p.log_append_time_ms, p.log_start_offset)),
                    },
                };
                outcomes.push((out, outcome));
            }
        }
        Err(e) => {
            let msg = e.to_string();
            let retriable = e.is_retriable();
            let security = e.is_security();
            for out in parts {
                let err = if security {
                    // A TLS or SASL failure is a configuration problem: keep its kind so no
                    // layer above mistakes it for something a restart fixes.
                    e.security_copy().unwrap_or_else(|| {
                        Error::Producer(format!("Produce to {} failed: {msg}", broker.addr()))
                    })
                } else if retriable {
                    Error::Metadata(format!("Produce to {} failed: {msg}", broker.addr()))
                } else {
                    Error::Producer(format!("Produce to {} failed: {msg}", broker.addr()))
                };
                outcomes.push((out, Err(err)));
            }
        }
    }
    complete(inner, outcomes).await;
}

async fn complete(inner: &Arc<Inner>, outcomes: Vec<(Outgoing, PartitionOutcome)>) {
    let mut refresh = false;
    let mut finished: Vec<Completion> = Vec::new();
    {
        let mut guard = inner.lock();
        let st: &mut State = &mut guard;
        let st_aborting = st.aborting;
        for (out, outcome) in outcomes {
            let Some(ps) = st.parts.get_mut(&out.tp) else {
                continue;
            };
            for p in &out.batches {
                ps.in_flight.remove(&p.ordinal);
            }
            let first = out.batches.first().map_or(0, |p| p.ordinal);
            let outcome = match outcome {
                // The broker has this sequence from an earlier attempt but no longer its offset
                // (brokers before Kafka 1.0): written. The Java producer completes it the same
                // way (`Sender.completeBatch`).
                Err(e)
                    if inner.config.idempotent
                        && e.response_error() == Some(ResponseError::DuplicateSequenceNumber) =>
                {
                    debug!(topic = %out.tp.0, partition = out.tp.1, "retry answered DUPLICATE_SEQUENCE_NUMBER: written before");
                    Ok((-1, -1, -1))
                }
                o => o,
            };
            match outcome {
                Ok((base, log_append_time, log_start)) => {
                    ps.backoff = None;
                    if out
                        .batches
                        .iter()
                        .any(|p| p.seq.map(|a| a.generation) == ps.ident.map(|i| i.generation))
                    {
                        ps.confirmed = true;
                    }
                    let mut offset = base;
                    for p in out.batches {
                        let ack = ProduceAck {
                            base_offset: offset,
                            log_append_time,
                            log_start_offset: log_start,
                        };
                        if offset >= 0 {
                            offset += i64::from(p.batch.last_offset_delta()) + 1;
                        }
                        finished.push((p.tx, Ok(ack)));
                    }
                }
                Err(e) if st_aborting || (ps.failed.is_some() && first > ps.stopped_at) => {
                    // The producer aborted, or the partition was stopped before this batch: no
                    // retries.
                    let reason = ps.failed.clone().filter(|_| first > ps.stopped_at);
                    let mut first = Some(e);
                    for p in out.batches {
                        let err = match (&reason, first.take()) {
                            (Some(r), _) => stopped_error(&out.tp, r),
                            (None, Some(e)) => e,
                            (None, None) => Error::Shutdown,
                        };
                        finished.push((p.tx, Err(err)));
                    }
                }
                Err(e) => {
                    let code = e.response_error();
                    let seq_trouble = matches!(
                        code,
                        Some(
                            ResponseError::OutOfOrderSequenceNumber
                                | ResponseError::UnknownProducerId
                                | ResponseError::InvalidProducerEpoch
                        )
                    );
                    let expired = out
                        .batches
                        .first()
                        .map(|p| p.enqueued.elapsed() > inner.config.delivery_timeout)
                        .unwrap_or(false);
                    // A LogAppendTime topic refuses a batch that claims LogAppendTime itself
                    // (a mirrored batch from such a source topic); nothing was written. It goes
                    // again with the bit cleared, as does every later batch of the partition.
                    let log_append_time_refused = code == Some(ResponseError::InvalidTimestamp)
                        && out.batches.iter().any(|p| {
                            !p.clear_log_append_time
                                && p.batch.timestamp_type() == TimestampType::LogAppendTime
                        });
                    if log_append_time_refused {
                        info!(topic = %out.tp.0, partition = out.tp.1, "the topic stamps LogAppendTime: batches are sent without their own LogAppendTime flag");
                        ps.clear_log_append_time = true;
                        for p in ps.queue.iter_mut() {
                            p.clear_log_append_time = true;
                        }
                    }
                    // A sequence error for the next batch under a continued identity: the
                    // predecessor's append took the sequence after the partition was resumed.
                    // Renumbering would write these records after their first copy.
                    // (UNKNOWN_PRODUCER_ID is not that: the broker holds nothing of the
                    // identity, so nothing of it landed; the usual renumbering applies.)
                    let taken = seq_trouble
                        && code != Some(ResponseError::UnknownProducerId)
                        && inner.config.idempotent
                        && out.batches.iter().any(|p| {
                            p.seq.is_some_and(|a| a.generation == CONTINUED) && ps.proves_gap(p)
                        });
                    // A transactional producer neither renumbers nor bumps its epoch on its own:
                    // a fenced identity, a proven sequence gap or a transaction the broker
                    // refuses ends the transaction, which can then only be aborted.
                    let in_txn = st.txn.is_some();
                    let fenced_now = in_txn && txn::is_fenced(&e);
                    let txn_final = fenced_now
                        || (in_txn && seq_trouble && out.batches.iter().any(|p| ps.proves_gap(p)))
                        || (in_txn
                            && matches!(
                                code,
                                Some(
                                    ResponseError::InvalidTxnState
                                        | ResponseError::TransactionAbortable
                                        | ResponseError::TransactionalIdAuthorizationFailed
                                )
                            ));
                    if let (true, Some(t)) = (txn_final, st.txn.as_mut()) {
                        warn!(transactional_id = %t.id, topic = %out.tp.0, partition = out.tp.1, error = %e, "batch refused: the transaction can only be aborted");
                        if fenced_now {
                            t.fenced.get_or_insert_with(|| e.to_string());
                        }
                        t.abortable.get_or_insert_with(|| e.to_string());
                    }
                    let e = if fenced_now {
                        Error::Fenced {
                            transactional_id: inner
                                .config
                                .transactional_id
                                .clone()
                                .unwrap_or_default(),
                            reason: e.to_string(),
                        }
                    } else if taken {
                        warn!(topic = %out.tp.0, partition = out.tp.1, error = %e, "sequence continued from the partition's previous writer is taken: it wrote after the partition was resumed");
                        Error::Producer(format!(
                            "topic {} partition {}: the sequence continued from the partition's \
                             previous writer is taken ({e}): something it had in flight was \
                             written after the partition was resumed",
                            out.tp.0, out.tp.1
                        ))
                    } else {
                        e
                    };
                    if !taken
                        && !txn_final
                        && (e.is_retriable() || seq_trouble || log_append_time_refused)
                        && !expired
                    {
                        if seq_trouble && inner.config.idempotent {
                            if let Some(p) = out.batches.iter().find(|p| ps.proves_gap(p)) {
                                // The broker refused the next batch it should take: a real gap
                                // (its state was lost, or an earlier batch given up on was not
                                // written). Nothing from here on was written; these batches go
                                // under a newer identity, renumbered.
                                warn!(topic = %out.tp.0, partition = out.tp.1, error = %e, "sequence gap: the partition's unacknowledged batches will be renumbered under a new producer epoch");
                                ps.renumber_from = Some(p.ordinal);
                            }
                        }
                        refresh |= e.needs_metadata_refresh();
                        ps.hold = true;
                        let backoff = ps.backoff.get_or_insert_with(|| {
                            Backoff::new(&inner.cluster.config().retry, Instant::now())
                        });
                        let delay = backoff
                            .next_delay(Instant::now())
                            .unwrap_or(Duration::from_millis(100));
                        ps.not_before = Some(Instant::now() + delay);
                        debug!(topic = %out.tp.0, partition = out.tp.1, error = %e, ?delay, "produce will be retried");
                        inner.cluster.retries().note("Produce", &e);
                        // Kept as sent (same identity and sequence): the broker may have it.
                        for mut p in out.batches {
                            p.clear_log_append_time |= ps.clear_log_append_time;
                            ps.retry.insert(p.ordinal, p);
                        }
                    } else {
                        // The broker refused it (nothing written), or it is given up with its
                        // outcome unknown (it may have been written).
                        let refused = (matches!(e, Error::Broker { .. }) && !e.is_retriable())
                            || seq_trouble
                            || taken
                            || txn_final;
                        if let Some(t) = st.txn.as_mut() {
                            // Whatever failed for good in a transaction spoils it.
                            t.abortable.get_or_insert_with(|| e.to_string());
                        }
                        let msg = e.to_string();
                        let mut first_err = Some(e);
                        let last = out.batches.last().map_or(first, |p| p.ordinal);
                        for p in out.batches {
                            let err = first_err
                                .take()
                                .unwrap_or_else(|| Error::Producer(msg.clone()));
                            finished.push((p.tx, Err(err)));
                        }
                        if inner.config.stop_partition_on_failure {
                            ps.stop(&out.tp, &msg, first, &mut finished);
                        } else if inner.config.idempotent && refused {
                            // A hole in the sequence: the batches after it cannot be written
                            // under their sequences (an unknown outcome is left to the broker's
                            // answer to the next batch instead).
                            let from = last + 1;
                            ps.renumber_from = Some(ps.renumber_from.map_or(from, |r| r.min(from)));
                        }
                    }
                }
            }
        }
        st.unacked -= finished.len();
    }
    for (tx, r) in finished {
        let _ = tx.send(r);
    }
    inner.idle.notify_waiters();
    if refresh {
        // In the background: the caller may be a broker's sender, and a refresh that asks a
        // broker that does not answer waits a request timeout.
        spawn_refresh(inner, "metadata refresh after produce error");
    }
    inner.wake.notify_one();
}

/// Takes every batch appended and not yet sent out of the queues (counted as finished).
fn take_unsent(st: &mut State) -> Vec<oneshot::Sender<Result<ProduceAck>>> {
    let mut finished = Vec::new();
    for ps in st.parts.values_mut() {
        let keep = ps.queue.iter().take_while(|p| p.seq.is_some()).count();
        for p in ps.queue.drain(keep..) {
            finished.push(p.tx);
        }
    }
    st.unacked -= finished.len();
    finished
}

/// Clears a transaction's "ending" state when `end_transaction` returns or is dropped, and
/// wakes the sender.
struct EndGuard<'a>(&'a Inner);

impl Drop for EndGuard<'_> {
    fn drop(&mut self) {
        if let Some(t) = self.0.lock().txn.as_mut() {
            t.ending = false;
            t.aborting = false;
        }
        self.0.wake.notify_one();
        self.0.idle.notify_waiters();
    }
}

/// Adds `parts` to the open transaction; their first batches are sent once it answers. If it
/// fails for good, the transaction can only be aborted, and the partitions' queued batches
/// fail.
async fn add_to_txn(inner: Arc<Inner>, txn_id: String, parts: Vec<TopicPartition>) {
    let ident = {
        let st = inner.lock();
        (st.producer_id, st.epoch)
    };
    let result = txn::add_partitions(&inner.cluster, &txn_id, ident, &parts).await;
    let mut finished: Vec<Completion> = Vec::new();
    {
        let mut st = inner.lock();
        let State {
            parts: states, txn, ..
        } = &mut *st;
        let Some(t) = txn.as_mut() else { return };
        t.adding = false;
        t.being_added.clear();
        match result {
            Ok(()) => {
                debug!(transactional_id = %txn_id, partitions = parts.len(), "partitions added to the transaction");
                t.added.extend(parts);
            }
            Err(e) => {
                warn!(transactional_id = %txn_id, error = %e, "AddPartitionsToTxn failed: the transaction can only be aborted");
                let reason = format!("AddPartitionsToTxn failed: {e}");
                if let Error::Fenced { reason: r, .. } = &e {
                    t.fenced.get_or_insert_with(|| r.clone());
                }
                t.abortable.get_or_insert_with(|| reason.clone());
                for tp in &parts {
                    if let Some(ps) = states.get_mut(tp) {
                        let at = ps.queue.front().map_or(ps.next_ordinal, |p| p.ordinal);
                        ps.stop(tp, &reason, at, &mut finished);
                    }
                }
            }
        }
        st.unacked -= finished.len();
    }
    for (tx, r) in finished {
        let _ = tx.send(r);
    }
    inner.idle.notify_waiters();
    inner.wake.notify_one();
}

/// Obtains a newer producer identity for the partitions that must renumber (`bumping` was set
/// by [`collect_ready`]). Partitions that need none keep theirs.
async fn bump_epoch(inner: Arc<Inner>) {
    let (id, epoch) = {
        let st = inner.lock();
        (st.producer_id, st.epoch)
    };
    // KIP-360 bump of the current id; where the broker cannot (older brokers, or one that does
    // not track idempotent producers for bumps), a fresh producer id, as Java does. (Apache
    // Kafka answers an InitProducerId without a transactional id with a new id anyway.)
    let result = match init_producer_id(&inner.cluster, id, epoch).await {
        Ok(r) => Ok(r),
        Err(e) => {
            debug!(error = %e, "epoch bump refused; asking for a new producer id");
            init_producer_id(&inner.cluster, -1, -1).await
        }
    };
    let failed = {
        let mut st = inner.lock();
        match result {
            Ok((id, epoch)) => {
                st.producer_id = id;
                st.epoch = epoch;
                st.generation += 1;
                st.bump_refused = None;
                false
            }
            Err(e) if e.is_security() => {
                warn!(error = %e, "could not renew the producer id: the cluster refuses this client");
                st.bump_refused = Some(e);
                true
            }
            Err(e) => {
                warn!(error = %e, "could not renew the producer id; will try again");
                true
            }
        }
    };
    if failed {
        tokio::time::sleep(inner.cluster.config().retry.max_backoff).await;
    }
    inner.lock().bumping = false;
    inner.wake.notify_one();
}

#[cfg(test)]
mod tests;
