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
//! connection strictly in order, so a partition's batches arrive in sequence order. Sequences are assigned when a batch is first sent and kept
//! across retries. After a retriable failure a partition is *held*: nothing new is sent until
//! everything in flight has answered, then the failed batches are resent in sequence order. An
//! `OUT_OF_ORDER_SEQUENCE_NUMBER` or `UNKNOWN_PRODUCER_ID` not explained by an earlier failure
//! bumps the epoch (InitProducerId with the current id and epoch) and renumbers what is not yet
//! acknowledged. Every acknowledged batch reports the base offset it was given.

pub mod records;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::{ApiKey, InitProducerIdRequest, ProduceRequest, ProducerId};
use tokio::sync::{oneshot, Notify};
use tracing::{debug, warn};

use crate::cluster::{BrokerInfo, Cluster, ConnKind};
use crate::codec::produce::{encode_produce, PartitionRecords, ProduceBody, TopicRecords};
use crate::error::{Error, ResponseError, Result};
use crate::record::RecordBatch;
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
    /// it. A replicator's data path needs this; a producer of independent records (internal
    /// topics) does not, and then later batches go on under a new epoch.
    pub stop_partition_on_failure: bool,
}

impl Default for ProducerConfig {
    fn default() -> ProducerConfig {
        ProducerConfig {
            acks: -1,
            request_timeout: Duration::from_secs(30),
            idempotent: true,
            max_in_flight_batches: 5,
            max_request_bytes: 8 * 1024 * 1024,
            delivery_timeout: Duration::from_secs(120),
            linger: Duration::from_millis(5),
            batch_bytes: 256 * 1024,
            compression: crate::record::Compression::None,
            stop_partition_on_failure: false,
        }
    }
}

/// Where a batch landed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProduceAck {
    /// Offset the broker gave the batch's first record.
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

struct Pending {
    batch: RecordBatch,
    /// Sequence and epoch assigned at first send.
    seq: Option<SeqAssignment>,
    enqueued: Instant,
    tx: oneshot::Sender<Result<ProduceAck>>,
}

/// The producer identity a batch's sequence number belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct SeqAssignment {
    seq: i32,
    producer_id: i64,
    epoch: i16,
    /// Bumped whenever the id or epoch changes: sequences of an older generation are redone.
    generation: u64,
}

#[derive(Default)]
struct PartState {
    queue: VecDeque<Pending>,
    /// Failed batches waiting to be resent, by sequence.
    retry: BTreeMap<i32, Pending>,
    in_flight: usize,
    next_seq: i32,
    hold: bool,
    not_before: Option<Instant>,
    backoff: Option<Backoff>,
    /// Producer generation the partition's `next_seq` belongs to.
    seq_generation: u64,
    /// Why the partition was stopped (`stop_partition_on_failure`): every later batch fails.
    failed: Option<String>,
}

impl PartState {
    /// Stops the partition after a batch failed for good: what is queued or waiting for a
    /// retry fails now, what is in flight fails when it answers, later appends fail at once.
    fn stop(&mut self, tp: &TopicPartition, reason: &str, finished: &mut Vec<Completion>) {
        if self.failed.is_none() {
            warn!(topic = %tp.0, partition = tp.1, reason, "partition stopped: a batch failed for good, later batches are refused");
            self.failed = Some(reason.to_string());
        }
        let err = || stopped_error(tp, reason);
        for p in self.queue.drain(..) {
            finished.push((p.tx, Err(err())));
        }
        for (_, p) in std::mem::take(&mut self.retry) {
            finished.push((p.tx, Err(err())));
        }
        self.hold = false;
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
    generation: u64,
    bumping: bool,
    parts: HashMap<TopicPartition, PartState>,
    unacked: usize,
    closed: bool,
    /// `abort()` was called: nothing is retried any more.
    aborting: bool,
}

struct Inner {
    cluster: Arc<Cluster>,
    config: ProducerConfig,
    state: Mutex<State>,
    wake: Arc<Notify>,
    idle: Notify,
    acc: records::Accumulator,
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
                unacked: 0,
                closed: false,
                aborting: false,
            }),
            config,
            wake: Arc::new(Notify::new()),
            idle: Notify::new(),
            acc: records::Accumulator::default(),
        });
        if inner.config.idempotent {
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
            if st.closed {
                Err(Error::Shutdown)
            } else if let Some(reason) = failed {
                Err(stopped_error(&key, &reason))
            } else {
                st.unacked += 1;
                if !st.parts.contains_key(&key) {
                    self.inner.cluster.track_topics([topic]);
                }
                st.parts.entry(key).or_default().queue.push_back(Pending {
                    batch,
                    seq: None,
                    enqueued: Instant::now(),
                    tx,
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
        let (requests, next_wake) = collect_ready(&strong);
        for (broker, reqs) in requests {
            let tx = brokers.entry(broker.id).or_insert_with(|| {
                let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
                tokio::spawn(broker_sender(std::sync::Arc::downgrade(&strong), rx));
                tx
            });
            for parts in reqs {
                if let Err(e) = tx.send((broker.clone(), parts)) {
                    // The broker task ended (it only does when the producer is gone).
                    let (_, parts) = e.0;
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
                    finish_request(&inner, &broker, parts, resp).await;
                });
            }
            Err(e) => finish_request(&inner, &broker, parts, Err(e)).await,
        }
    }
}

/// Takes what can be sent now, grouped by leader.
fn collect_ready(inner: &Arc<Inner>) -> (BrokerRequests, Option<Duration>) {
    let md = inner.cluster.metadata();
    let now = Instant::now();
    let mut next_wake: Option<Duration> = None;
    // Per broker, requests in the order they must be sent: request k carries the k-th batch
    // taken from each partition (one batch per partition per request).
    // (request, its size in bytes) per broker.
    #[allow(clippy::type_complexity)]
    let mut by_broker: HashMap<i32, (BrokerInfo, Vec<(Request, usize)>)> = HashMap::new();
    let mut need_metadata = false;
    let mut st = inner.lock();
    let max_in_flight = inner.config.max_in_flight_batches;
    let max_bytes = inner.config.max_request_bytes;
    let delivery_timeout = inner.config.delivery_timeout;
    if st.bumping {
        return (Vec::new(), Some(Duration::from_millis(50)));
    }
    let (producer_id, epoch, generation) = (st.producer_id, st.epoch, st.generation);
    let stop_on_failure = inner.config.stop_partition_on_failure;
    let mut expired = Vec::new();
    let mut stopped: Vec<Completion> = Vec::new();
    for (tp, ps) in st.parts.iter_mut() {
        // Fail batches that ran out of time while still queued (not in flight).
        while let Some(front) = ps.queue.front() {
            if front.seq.is_none() && now.duration_since(front.enqueued) > delivery_timeout {
                expired.push(ps.queue.pop_front().expect("front exists"));
                if stop_on_failure {
                    let reason = format!(
                        "a batch was not sent within the delivery timeout {delivery_timeout:?}"
                    );
                    ps.stop(tp, &reason, &mut stopped);
                }
            } else {
                break;
            }
        }
        if ps.hold {
            if ps.in_flight > 0 {
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
        if ps.queue.is_empty() || ps.in_flight >= max_in_flight {
            continue;
        }
        let leader = md
            .partition(&tp.0, tp.1)
            .filter(|p| p.leader >= 0)
            .and_then(|p| md.brokers.get(&p.leader));
        let Some(leader) = leader else {
            need_metadata = true;
            next_wake = Some(next_wake.map_or(Duration::from_millis(100), |w| {
                w.min(Duration::from_millis(100))
            }));
            continue;
        };
        let entry = by_broker
            .entry(leader.id)
            .or_insert_with(|| (leader.clone(), Vec::new()));
        // A new epoch restarts every partition's sequences at 0.
        if inner.config.idempotent && ps.seq_generation != generation {
            ps.seq_generation = generation;
            ps.next_seq = 0;
        }
        let mut layer = 0;
        while ps.in_flight < max_in_flight {
            let Some(front) = ps.queue.front() else { break };
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
                entry.1.push((Vec::new(), 0));
            }
            let mut p = ps.queue.pop_front().expect("front exists");
            if inner.config.idempotent {
                let stale = p.seq.map(|a| a.generation != generation).unwrap_or(true);
                if stale {
                    p.seq = Some(SeqAssignment {
                        seq: ps.next_seq,
                        producer_id,
                        epoch,
                        generation,
                    });
                    let count = p.batch.record_count().max(1);
                    ps.next_seq = ps.next_seq.wrapping_add(count) & i32::MAX;
                }
            }
            ps.in_flight += 1;
            entry.1[layer].1 += size;
            entry.1[layer].0.push(Outgoing {
                tp: tp.clone(),
                batches: vec![p],
            });
            layer += 1;
        }
    }
    let n_expired = expired.len() + stopped.len();
    st.unacked -= n_expired;
    drop(st);
    for p in expired {
        let _ = p.tx.send(Err(Error::Producer(format!(
            "batch not sent within delivery timeout {delivery_timeout:?}"
        ))));
    }
    for (tx, r) in stopped {
        let _ = tx.send(r);
    }
    if n_expired > 0 {
        inner.idle.notify_waiters();
    }
    if need_metadata {
        let c = inner.cluster.clone();
        tokio::spawn(async move {
            if let Err(e) = c.refresh_metadata().await {
                debug!(error = %e, "producer metadata refresh failed");
            }
        });
    }
    (
        by_broker
            .into_values()
            .map(|(b, reqs)| (b, reqs.into_iter().map(|(parts, _)| parts).collect()))
            .collect(),
        next_wake,
    )
}

/// Builds a Produce request (headers rewritten, records untouched) and puts it on the broker's
/// produce connection.
async fn start_request(
    inner: &Inner,
    broker: &BrokerInfo,
    parts: &[Outgoing],
) -> Result<(i16, crate::conn::InFlight)> {
    let mut topics: Vec<TopicRecords> = Vec::new();
    for out in parts {
        let mut batches = Vec::with_capacity(out.batches.len() * 2);
        for p in &out.batches {
            match (inner.config.idempotent, p.seq) {
                (true, Some(a)) => {
                    batches.extend(rewrite_producer_fields(
                        &p.batch,
                        a.producer_id,
                        a.epoch,
                        a.seq,
                    ));
                }
                _ if needs_blank_producer(&p.batch) => {
                    batches.extend(rewrite_producer_fields(&p.batch, -1, -1, -1));
                }
                // Same producer fields: only base offset and leader epoch are reset (no CRC
                // change; both slices of the batch when they already are 0 and -1).
                _ => batches.extend(p.batch.split_with_producer(
                    p.batch.producer_id(),
                    p.batch.producer_epoch(),
                    p.batch.base_sequence(),
                    p.batch.is_transactional(),
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
    let version = conn.version(ApiKey::Produce)?;
    let body = ProduceBody {
        transactional_id: None,
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

/// Maps a Produce response (or the failure to get one) onto each partition of the request.
async fn finish_request(
    inner: &Arc<Inner>,
    broker: &BrokerInfo,
    parts: Vec<Outgoing>,
    result: Result<kafka_protocol::messages::ProduceResponse>,
) {
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
                    match &e {
                        Error::Conn(c) => {
                            c.clone_security().map(Error::Conn).unwrap_or_else(|| {
                                Error::Producer(format!(
                                    "Produce to {} failed: {msg}",
                                    broker.addr()
                                ))
                            })
                        }
                        _ => Error::Producer(format!("Produce to {} failed: {msg}", broker.addr())),
                    }
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
    let mut bump = false;
    let mut refresh = false;
    let mut finished: Vec<Completion> = Vec::new();
    {
        let mut st = inner.lock();
        let st_aborting = st.aborting;
        for (out, outcome) in outcomes {
            let n = out.batches.len();
            let Some(ps) = st.parts.get_mut(&out.tp) else {
                continue;
            };
            ps.in_flight -= n;
            match outcome {
                Ok((base, log_append_time, log_start)) => {
                    ps.backoff = None;
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
                Err(e) if ps.failed.is_some() || st_aborting => {
                    // The partition was stopped, or the producer aborted: no retries.
                    let reason = ps.failed.clone();
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
                    if (e.is_retriable() || seq_trouble) && !expired {
                        if seq_trouble && !ps.hold && ps.retry.is_empty() {
                            // Not explained by an earlier failure of this partition: the broker
                            // lost or rejected our sequence state. New epoch, new sequences.
                            warn!(topic = %out.tp.0, partition = out.tp.1, error = %e, "sequence error, bumping producer epoch");
                            bump = true;
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
                        for p in out.batches {
                            let key = p.seq.map(|a| a.seq).unwrap_or(i32::MAX);
                            ps.retry.insert(key, p);
                        }
                    } else {
                        let msg = e.to_string();
                        let mut first = Some(e);
                        for p in out.batches {
                            let err = first.take().unwrap_or_else(|| Error::Producer(msg.clone()));
                            finished.push((p.tx, Err(err)));
                        }
                        if inner.config.stop_partition_on_failure {
                            ps.stop(&out.tp, &msg, &mut finished);
                        }
                        // A failed batch leaves a hole in the sequence: start a new epoch.
                        if inner.config.idempotent {
                            bump = true;
                        }
                    }
                }
            }
        }
        st.unacked -= finished.len();
        if bump && !st.bumping && inner.config.idempotent {
            st.bumping = true;
        } else {
            bump = false;
        }
    }
    for (tx, r) in finished {
        let _ = tx.send(r);
    }
    inner.idle.notify_waiters();
    if refresh {
        if let Err(e) = inner.cluster.refresh_metadata().await {
            debug!(error = %e, "metadata refresh after produce error failed");
        }
    }
    if bump {
        let (id, epoch) = {
            let st = inner.lock();
            (st.producer_id, st.epoch)
        };
        // KIP-360 bump of the current id; where the broker cannot (older brokers, or one that
        // does not track idempotent producers for bumps), a fresh producer id, as Java does.
        let result = match init_producer_id(&inner.cluster, id, epoch).await {
            Ok(r) => Ok(r),
            Err(e) => {
                debug!(error = %e, "epoch bump refused; asking for a new producer id");
                init_producer_id(&inner.cluster, -1, -1).await
            }
        };
        let mut st = inner.lock();
        match result {
            Ok((id, epoch)) => {
                // New epoch or new id: every partition's sequences start again at 0, and
                // unacknowledged batches are renumbered when next sent.
                st.producer_id = id;
                st.epoch = epoch;
                st.generation += 1;
            }
            Err(e) => {
                warn!(error = %e, "could not renew the producer id; retrying with the old one")
            }
        }
        st.bumping = false;
    }
    inner.wake.notify_one();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{BatchBuilder, Compression};
    use bytes::BytesMut;

    /// A fetched batch carries its source base offset and leader epoch; Apache Kafka 4 refuses
    /// a client batch whose base offset is not 0. The produced header has 0 and -1, the CRC
    /// (which does not cover them) stays valid, the records are not copied.
    #[test]
    fn produced_header_has_base_offset_zero() {
        let mut b = BatchBuilder::new(Compression::None);
        for i in 0..5 {
            b.push(1_700_000_000_000 + i, Some(b"k"), Some(b"v"), &[]);
        }
        let built = b.build().unwrap();
        let mut raw = BytesMut::from(&built.as_bytes()[..]);
        raw[0..8].copy_from_slice(&1234i64.to_be_bytes());
        raw[12..16].copy_from_slice(&7i32.to_be_bytes());
        let fetched = RecordBatch::parse(raw.freeze()).unwrap();
        assert_eq!(fetched.base_offset(), 1234);
        for [head, records] in [
            fetched.split_with_producer(
                fetched.producer_id(),
                fetched.producer_epoch(),
                fetched.base_sequence(),
                fetched.is_transactional(),
            ),
            rewrite_producer_fields(&fetched, 5, 1, 0),
        ] {
            let mut joined = BytesMut::new();
            joined.extend_from_slice(&head);
            joined.extend_from_slice(&records);
            let sent = RecordBatch::parse(joined.freeze()).unwrap();
            sent.verify_crc().unwrap();
            assert_eq!(sent.base_offset(), 0);
            assert_eq!(&sent.as_bytes()[12..16], &(-1i32).to_be_bytes());
            assert_eq!(
                records.as_ptr(),
                fetched.as_bytes()[crate::record::BATCH_HEADER_LEN..].as_ptr()
            );
        }
    }

    #[test]
    fn zero_copy_rewrite_matches_full_recompute() {
        for codec in [Compression::None, Compression::Zstd] {
            let mut b = BatchBuilder::new(codec).producer(77, 3, 1000);
            for i in 0..50 {
                b.push(
                    1_700_000_000_000 + i,
                    Some(b"key"),
                    Some(&[i as u8; 100]),
                    &[],
                );
            }
            let batch = b.build().unwrap();
            batch.verify_crc().unwrap();
            let [head, records] = rewrite_producer_fields(&batch, 123_456, 9, 42);
            assert_eq!(head.len(), crate::record::BATCH_HEADER_LEN);
            assert_eq!(
                records.as_ptr(),
                batch.as_bytes()[crate::record::BATCH_HEADER_LEN..].as_ptr(),
                "records not copied"
            );
            let mut joined = BytesMut::new();
            joined.extend_from_slice(&head);
            joined.extend_from_slice(&records);
            let re = RecordBatch::parse(joined.freeze()).unwrap();
            re.verify_crc().unwrap();
            assert_eq!(
                (re.producer_id(), re.producer_epoch(), re.base_sequence()),
                (123_456, 9, 42)
            );
            assert_eq!(re.record_count(), 50);
            // Unchanged fields leave the CRC as it was.
            let [same, _] = rewrite_producer_fields(&batch, 77, 3, 1000);
            assert_eq!(
                &same[..],
                &batch.as_bytes()[..crate::record::BATCH_HEADER_LEN]
            );
        }
    }
}
