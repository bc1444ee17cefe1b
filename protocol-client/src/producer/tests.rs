//! Producer tests: the zero-copy header rewrite, and the idempotent producer against a scripted
//! broker that keeps producer state the way Apache Kafka does.
//!
//! The scripted broker is a real TCP socket speaking just enough Kafka (ApiVersions, Metadata,
//! InitProducerId, Produce). Per partition it keeps the log and, per producer id, what Kafka's
//! `ProducerStateManager` / `ProducerAppendInfo` keep: the epoch, the last sequence and the last
//! five batches. A batch with the producer's epoch whose first and last sequence match one of
//! those five is a duplicate: it is answered with the offset it was written at and not written
//! again. Otherwise a sequence that does not follow the last one is OUT_OF_ORDER_SEQUENCE_NUMBER,
//! an older epoch is INVALID_PRODUCER_EPOCH, a newer epoch must start at sequence 0, and a
//! producer id the partition has no state for may start anywhere. InitProducerId without a
//! transactional id hands out a new producer id, as Kafka does.
//!
//! Faults are scripted per attempt of a batch (batches carry one record whose value names them):
//! refused (not written), written and then reported failed (REQUEST_TIMED_OUT when replication
//! took too long, NOT_ENOUGH_REPLICAS_AFTER_APPEND), written and then the connection closed
//! without an answer, and answered late. Kafka answers a connection's requests in order, but the
//! producer handles each answer on its own task, so it may see them in any order; an answer held
//! back while later ones go out gives the producer exactly that order.

use std::collections::VecDeque;
use std::future::Future;

use bytes::{BufMut, BytesMut};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{
    ApiVersionsResponse, BrokerId, InitProducerIdResponse, MetadataResponse, ProduceResponse,
    ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::*;
use crate::cluster::ClientConfig;
use crate::record::{BatchBuilder, Compression, DecodeLimits};
use crate::retry::RetryPolicy;

/// A batch a source broker's cleaner marked with a delete horizon (KIP-534, attribute bit 6,
/// `baseTimestamp` = the horizon) goes out without the bit: a target broker keeps it as sent,
/// and its cleaner would then drop the batch's tombstones at its next clean. Timestamps as read
/// (base + delta) stay, and so does a valid CRC.
#[test]
fn the_delete_horizon_bit_is_not_forwarded() {
    let mut b = BatchBuilder::new(Compression::None);
    b.push(1_700_000_000_000, Some(b"k"), None, &[]);
    b.push(1_700_000_000_500, Some(b"j"), Some(b"v"), &[]);
    let built = b.build().unwrap();
    let mut raw = BytesMut::from(&built.as_bytes()[..]);
    raw[22] |= 0x40;
    let crc = crc32c::crc32c(&raw[21..]);
    raw[17..21].copy_from_slice(&crc.to_be_bytes());
    let marked = RecordBatch::parse(raw.freeze()).unwrap();
    marked.verify_crc().unwrap();
    assert!(marked.has_delete_horizon());
    for [head, records] in [
        marked.split_with_producer(-1, -1, -1, false),
        rewrite_producer_fields(&marked, 5, 1, 0),
    ] {
        let mut joined = BytesMut::new();
        joined.extend_from_slice(&head);
        joined.extend_from_slice(&records);
        let sent = RecordBatch::parse(joined.freeze()).unwrap();
        sent.verify_crc().unwrap();
        assert!(!sent.has_delete_horizon());
        let times = |b: &RecordBatch| -> Vec<i64> {
            b.records(&DecodeLimits::default())
                .unwrap()
                .map(|r| r.unwrap().timestamp(b.base_timestamp()))
                .collect()
        };
        assert_eq!(times(&sent), times(&marked));
    }
}

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

// ---------------------------------------------------------------------------------------------
// Scripted broker

const TOPIC: &str = "t";
const NOT_LEADER_OR_FOLLOWER: i16 = 6;
const REQUEST_TIMED_OUT: i16 = 7;
const NOT_ENOUGH_REPLICAS: i16 = 19;
const NOT_ENOUGH_REPLICAS_AFTER_APPEND: i16 = 20;
const OUT_OF_ORDER_SEQUENCE_NUMBER: i16 = 45;
const DUPLICATE_SEQUENCE_NUMBER: i16 = 46;
const INVALID_PRODUCER_EPOCH: i16 = 47;
const INVALID_RECORD: i16 = 87;
const INVALID_TIMESTAMP: i16 = 32;
/// `Attempt::answer` of a request whose connection was closed instead of answered.
const NO_ANSWER: i16 = -1;

/// What the broker does with one attempt of a batch.
#[derive(Clone, Copy, Debug, Default)]
struct Fault {
    /// Refused with this code before anything is written.
    refuse: Option<i16>,
    /// Handled (written if its sequence is right), then reported failed with this code.
    written_then: Option<i16>,
    /// Handled, then the connection is closed without an answer (requests behind it on the
    /// connection are never read).
    written_then_drop: bool,
    /// The request's answer waits this long (answers to later requests go out before it).
    late: Option<Duration>,
    /// Handled as above, then the partitions lose their leader (Metadata answers leader -1).
    then_leaderless: bool,
    /// The answer asks the client to hold back this long (quota throttling, KIP-219).
    throttle_ms: i32,
}

fn ok() -> Fault {
    Fault::default()
}

fn refuse(code: i16) -> Fault {
    Fault {
        refuse: Some(code),
        ..Fault::default()
    }
}

fn written_then(code: i16) -> Fault {
    Fault {
        written_then: Some(code),
        ..Fault::default()
    }
}

fn written_then_drop() -> Fault {
    Fault {
        written_then_drop: true,
        ..Fault::default()
    }
}

impl Fault {
    fn then_leaderless(self) -> Fault {
        Fault {
            then_leaderless: true,
            ..self
        }
    }

    fn throttle(self, ms: i32) -> Fault {
        Fault {
            throttle_ms: ms,
            ..self
        }
    }

    fn late(self, after: Duration) -> Fault {
        Fault {
            late: Some(after),
            ..self
        }
    }
}

/// One attempt of a batch as the broker saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Attempt {
    partition: i32,
    value: String,
    producer_id: i64,
    epoch: i16,
    seq: i32,
    /// The code answered (0: written now or before), or [`NO_ANSWER`].
    answer: i16,
    /// When the broker read it.
    at: Instant,
}

impl Attempt {
    fn identity(&self) -> (i64, i16, i32) {
        (self.producer_id, self.epoch, self.seq)
    }
}

/// A batch in a partition's log (its offset is its index: every batch has one record).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Stored {
    value: String,
    producer_id: i64,
    epoch: i16,
    seq: i32,
}

/// Kafka's per-producer state of one partition.
struct ProducerEntry {
    epoch: i16,
    last_seq: i32,
    /// (first sequence, last sequence, base offset) of the last five batches.
    recent: VecDeque<(i32, i32, i64)>,
}

#[derive(Default)]
struct PartitionLog {
    batches: Vec<Stored>,
    producers: HashMap<i64, ProducerEntry>,
}

impl PartitionLog {
    /// Kafka's checks (`UnifiedLog.analyzeAndValidateProducerState`: the duplicate lookup, then
    /// `ProducerAppendInfo.checkProducerEpoch` / `checkSequence`), then the append. Returns the
    /// base offset the batch was written at, now or before (a duplicate).
    fn append(&mut self, stored: Stored, count: i32) -> std::result::Result<i64, i16> {
        let (pid, epoch, seq) = (stored.producer_id, stored.epoch, stored.seq);
        let last = seq.wrapping_add(count - 1) & i32::MAX;
        if let Some(e) = self.producers.get(&pid) {
            if epoch < e.epoch {
                return Err(INVALID_PRODUCER_EPOCH);
            }
            if epoch == e.epoch {
                if let Some(&(_, _, offset)) =
                    e.recent.iter().find(|(f, l, _)| *f == seq && *l == last)
                {
                    return Ok(offset);
                }
                if seq != e.last_seq.wrapping_add(1) & i32::MAX {
                    return Err(OUT_OF_ORDER_SEQUENCE_NUMBER);
                }
            } else if seq != 0 {
                return Err(OUT_OF_ORDER_SEQUENCE_NUMBER);
            }
        }
        let offset = self.batches.len() as i64;
        self.batches.push(stored);
        let e = self.producers.entry(pid).or_insert(ProducerEntry {
            epoch,
            last_seq: -1,
            recent: VecDeque::new(),
        });
        if e.epoch != epoch {
            e.epoch = epoch;
            e.recent.clear();
        }
        e.last_seq = last;
        e.recent.push_back((seq, last, offset));
        if e.recent.len() > 5 {
            e.recent.pop_front();
        }
        Ok(offset)
    }
}

/// Decides the fault of an attempt, given how many attempts of that batch came before it.
type FaultScript = Box<dyn FnMut(&Attempt, usize) -> Fault + Send>;

struct BrokerState {
    partitions: i32,
    logs: HashMap<i32, PartitionLog>,
    attempts: Vec<Attempt>,
    /// Per Produce request: when it was read and how many partitions it carried.
    produce_requests: Vec<(Instant, usize)>,
    init_producer_ids: usize,
    faults: FaultScript,
    /// Metadata answers every partition without a leader.
    leaderless: bool,
    /// The topic is `message.timestamp.type=LogAppendTime`: like Kafka's `LogValidator`, a
    /// batch claiming LogAppendTime is refused with INVALID_TIMESTAMP.
    log_append_time: bool,
}

struct Broker {
    addr: String,
    state: Arc<Mutex<BrokerState>>,
}

impl Broker {
    async fn start(
        partitions: i32,
        faults: impl FnMut(&Attempt, usize) -> Fault + Send + 'static,
    ) -> Broker {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(BrokerState {
            partitions,
            logs: HashMap::new(),
            attempts: Vec::new(),
            produce_requests: Vec::new(),
            init_producer_ids: 0,
            faults: Box::new(faults),
            leaderless: false,
            log_append_time: false,
        }));
        let st = state.clone();
        tokio::spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                tokio::spawn(serve(s, port as i32, st.clone()));
            }
        });
        Broker {
            addr: format!("127.0.0.1:{port}"),
            state,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BrokerState> {
        self.state.lock().unwrap()
    }

    async fn producer(&self, config: ProducerConfig) -> Producer {
        let mut cfg = ClientConfig::new(&self.addr);
        cfg.retry = RetryPolicy {
            min_backoff: Duration::from_millis(5),
            max_backoff: Duration::from_millis(20),
            max_elapsed: Duration::from_secs(5),
        };
        cfg.conn.request_timeout = Duration::from_secs(10);
        let cluster = Cluster::connect(cfg).await.unwrap();
        Producer::new(cluster, config).await.unwrap()
    }

    /// The partition's log.
    fn log(&self, partition: i32) -> Vec<Stored> {
        self.lock()
            .logs
            .get(&partition)
            .map(|l| l.batches.clone())
            .unwrap_or_default()
    }

    /// Every attempt of the batch named `value`, in order.
    fn attempts(&self, partition: i32, value: &str) -> Vec<Attempt> {
        self.lock()
            .attempts
            .iter()
            .filter(|a| a.partition == partition && a.value == value)
            .cloned()
            .collect()
    }

    /// Asserts that the partition's log holds exactly `expected`, in order, showing each stored
    /// batch's producer id, epoch and sequence otherwise.
    fn assert_log(&self, partition: i32, expected: &[String]) {
        let log = self.log(partition);
        let values: Vec<&str> = log.iter().map(|s| s.value.as_str()).collect();
        assert_eq!(
            values,
            expected,
            "partition {partition}: every batch once, in order; log (value, producer id, epoch, \
             sequence): {:?}",
            log.iter()
                .map(|s| (s.value.as_str(), s.producer_id, s.epoch, s.seq))
                .collect::<Vec<_>>()
        );
    }

    fn init_producer_ids(&self) -> usize {
        self.lock().init_producer_ids
    }

    /// Asserts that every attempt of the batch `value` carried the producer id, epoch and
    /// sequence of its first attempt, and returns how many attempts there were.
    fn assert_sent_under_one_identity(&self, partition: i32, value: &str) -> usize {
        let attempts = self.attempts(partition, value);
        assert!(!attempts.is_empty(), "{value} never sent");
        let first = attempts[0].identity();
        for a in &attempts {
            assert_eq!(
                a.identity(),
                first,
                "{value} was renumbered while its outcome was unknown: {attempts:?}"
            );
        }
        attempts.len()
    }
}

fn frame<M: Encodable + HeaderVersion>(corr: i32, version: i16, msg: &M) -> BytesMut {
    let mut body = BytesMut::new();
    ResponseHeader::default()
        .with_correlation_id(corr)
        .encode(&mut body, M::header_version(version))
        .unwrap();
    msg.encode(&mut body, version).unwrap();
    let mut out = BytesMut::with_capacity(body.len() + 4);
    out.put_i32(body.len() as i32);
    out.extend_from_slice(&body);
    out
}

fn first_value(batch: &RecordBatch) -> String {
    let mut records = batch.records(&DecodeLimits::default()).unwrap();
    let r = records.next().unwrap().unwrap();
    String::from_utf8(r.value.unwrap().to_vec()).unwrap()
}

/// What to do after handling a request.
enum Answer {
    Now(BytesMut),
    Late(BytesMut, Duration),
    Drop,
}

fn handle(
    state: &Mutex<BrokerState>,
    port: i32,
    api: ApiKey,
    corr: i32,
    v: i16,
    mut b: Bytes,
) -> Answer {
    let mut st = state.lock().unwrap();
    match api {
        ApiKey::ApiVersions => {
            let keys = [
                ApiKey::ApiVersions,
                ApiKey::Metadata,
                ApiKey::Produce,
                ApiKey::InitProducerId,
            ]
            .iter()
            .map(|k| {
                let (min, mut max) = crate::codec::versions::Supported::range(*k);
                if *k == ApiKey::InitProducerId {
                    // Apache Kafka 4.0's range (the vendored schema encodes up to v5).
                    max = max.min(5);
                }
                ApiVersion::default()
                    .with_api_key(*k as i16)
                    .with_min_version(min)
                    .with_max_version(max)
            })
            .collect();
            Answer::Now(frame(
                corr,
                v,
                &ApiVersionsResponse::default().with_api_keys(keys),
            ))
        }
        ApiKey::Metadata => {
            let leader = if st.leaderless { -1 } else { 0 };
            let partitions = (0..st.partitions)
                .map(|p| {
                    MetadataResponsePartition::default()
                        .with_partition_index(p)
                        .with_leader_id(BrokerId(leader))
                        .with_leader_epoch(0)
                        .with_replica_nodes(vec![BrokerId(0)])
                        .with_isr_nodes(vec![BrokerId(0)])
                })
                .collect();
            let resp = MetadataResponse::default()
                .with_brokers(vec![MetadataResponseBroker::default()
                    .with_node_id(BrokerId(0))
                    .with_host(StrBytes::from_static_str("127.0.0.1"))
                    .with_port(port)])
                .with_controller_id(BrokerId(0))
                .with_topics(vec![MetadataResponseTopic::default()
                    .with_name(Some(TopicName(StrBytes::from_static_str(TOPIC))))
                    .with_partitions(partitions)]);
            Answer::Now(frame(corr, v, &resp))
        }
        ApiKey::InitProducerId => {
            // Without a transactional id Kafka hands out a new producer id, whatever was asked.
            st.init_producer_ids += 1;
            let id = 1000 + st.init_producer_ids as i64;
            Answer::Now(frame(
                corr,
                v,
                &InitProducerIdResponse::default()
                    .with_producer_id(ProducerId(id))
                    .with_producer_epoch(0),
            ))
        }
        ApiKey::Produce => {
            let req = ProduceRequest::decode(&mut b, v).unwrap();
            let carried = req.topic_data.iter().map(|t| t.partition_data.len()).sum();
            st.produce_requests.push((Instant::now(), carried));
            let (mut drop, mut late, mut throttle) = (false, None::<Duration>, 0);
            let mut topics = Vec::new();
            for t in &req.topic_data {
                let mut parts = Vec::new();
                for p in &t.partition_data {
                    let batch = RecordBatch::parse(p.records.clone().unwrap()).unwrap();
                    let mut attempt = Attempt {
                        partition: p.index,
                        value: first_value(&batch),
                        producer_id: batch.producer_id(),
                        epoch: batch.producer_epoch(),
                        seq: batch.base_sequence(),
                        answer: 0,
                        at: Instant::now(),
                    };
                    let before = st
                        .attempts
                        .iter()
                        .filter(|a| a.partition == attempt.partition && a.value == attempt.value)
                        .count();
                    let mut fault = (st.faults)(&attempt, before);
                    if st.log_append_time
                        && batch.timestamp_type() == crate::record::TimestampType::LogAppendTime
                    {
                        fault.refuse = Some(INVALID_TIMESTAMP);
                    }
                    let log = st.logs.entry(p.index).or_default();
                    let (mut code, mut base) = match fault.refuse {
                        Some(code) => (code, -1),
                        None => {
                            let stored = Stored {
                                value: attempt.value.clone(),
                                producer_id: attempt.producer_id,
                                epoch: attempt.epoch,
                                seq: attempt.seq,
                            };
                            match log.append(stored, batch.record_count()) {
                                Ok(offset) => (0, offset),
                                Err(code) => (code, -1),
                            }
                        }
                    };
                    if let (Some(c), 0) = (fault.written_then, code) {
                        (code, base) = (c, -1);
                    }
                    drop |= fault.written_then_drop;
                    late = late.max(fault.late);
                    throttle = throttle.max(fault.throttle_ms);
                    st.leaderless |= fault.then_leaderless;
                    attempt.answer = if fault.written_then_drop {
                        NO_ANSWER
                    } else {
                        code
                    };
                    st.attempts.push(attempt);
                    parts.push(
                        PartitionProduceResponse::default()
                            .with_index(p.index)
                            .with_error_code(code)
                            .with_base_offset(base)
                            .with_log_append_time_ms(-1)
                            .with_log_start_offset(0),
                    );
                }
                topics.push(
                    TopicProduceResponse::default()
                        .with_name(t.name.clone())
                        .with_partition_responses(parts),
                );
            }
            let resp = frame(
                corr,
                v,
                &ProduceResponse::default()
                    .with_responses(topics)
                    .with_throttle_time_ms(throttle),
            );
            match (drop, late) {
                (true, _) => Answer::Drop,
                (false, Some(after)) => Answer::Late(resp, after),
                (false, None) => Answer::Now(resp),
            }
        }
        other => panic!("scripted broker got {other:?}"),
    }
}

async fn serve(s: TcpStream, port: i32, state: Arc<Mutex<BrokerState>>) {
    let (mut rd, wr) = s.into_split();
    let wr = Arc::new(tokio::sync::Mutex::new(wr));
    loop {
        let Ok(len) = rd.read_i32().await else { return };
        let mut buf = vec![0u8; len as usize];
        if rd.read_exact(&mut buf).await.is_err() {
            return;
        }
        let mut b = Bytes::from(buf);
        let h = kafka_protocol::protocol::decode_request_header_from_buffer(&mut b).unwrap();
        let api = ApiKey::try_from(h.request_api_key).unwrap();
        match handle(
            &state,
            port,
            api,
            h.correlation_id,
            h.request_api_version,
            b,
        ) {
            Answer::Now(resp) => {
                if wr.lock().await.write_all(&resp).await.is_err() {
                    return;
                }
            }
            Answer::Late(resp, after) => {
                let wr = wr.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(after).await;
                    let _ = wr.lock().await.write_all(&resp).await;
                });
            }
            Answer::Drop => {
                let _ = wr.lock().await.shutdown().await;
                return;
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Idempotence against the scripted broker

fn batch(value: &str) -> RecordBatch {
    let mut b = BatchBuilder::new(Compression::None);
    b.push(1_700_000_000_000, Some(b"k"), Some(value.as_bytes()), &[]);
    b.build().unwrap()
}

/// Appends the batches named `values` to `partition` one after another (all queued before the
/// sender runs, so up to five go out at once, one per request).
fn append_all(
    producer: &Producer,
    partition: i32,
    values: &[String],
) -> Vec<impl Future<Output = Result<ProduceAck>>> {
    values
        .iter()
        .map(|v| producer.append(TOPIC, partition, batch(v)))
        .collect()
}

async fn outcomes(
    pending: Vec<impl Future<Output = Result<ProduceAck>>>,
) -> Vec<std::result::Result<i64, Error>> {
    let mut out = Vec::new();
    for p in pending {
        let r = tokio::time::timeout(Duration::from_secs(30), p)
            .await
            .expect("acknowledged or failed in time");
        out.push(r.map(|a| a.base_offset));
    }
    out
}

fn names(prefix: &str, range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("{prefix}{i}")).collect()
}

fn config() -> ProducerConfig {
    ProducerConfig {
        delivery_timeout: Duration::from_secs(60),
        ..ProducerConfig::default()
    }
}

/// The broker wrote a batch but the producer never learned it: REQUEST_TIMED_OUT (acks=all
/// waited too long for the followers), NOT_ENOUGH_REPLICAS_AFTER_APPEND, or a connection that
/// closed before the answer. The retry carries the original producer id, epoch and sequence, the
/// broker recognises it, and every batch is in the log once, in order, at the offset it was
/// acknowledged with.
#[tokio::test]
async fn a_written_batch_whose_answer_was_lost_is_retried_under_its_sequence_and_lands_once() {
    let broker = Broker::start(1, |a, before| match (a.value.as_str(), before) {
        ("v2", 0) => written_then(REQUEST_TIMED_OUT),
        ("v5", 0) => written_then(NOT_ENOUGH_REPLICAS_AFTER_APPEND),
        ("v7", 0) => written_then_drop(),
        _ => ok(),
    })
    .await;
    let producer = broker.producer(config()).await;
    let values = names("v", 0..12);
    let acks = outcomes(append_all(&producer, 0, &values)).await;
    broker.assert_log(0, &values);
    let acks: Vec<i64> = acks.into_iter().map(|r| r.expect("produced")).collect();
    assert_eq!(acks, (0..12).collect::<Vec<i64>>(), "acknowledged offsets");
    for v in &values {
        broker.assert_sent_under_one_identity(0, v);
    }
    for v in ["v2", "v5", "v7"] {
        assert!(broker.attempts(0, v).len() >= 2, "{v} was retried");
    }
    assert_eq!(broker.init_producer_ids(), 1, "no epoch bump");
}

/// A batch is refused for good (INVALID_RECORD) while the batch before it, written by the broker,
/// waits for a retry after REQUEST_TIMED_OUT. The refused batch leaves a gap, so the batches
/// after it go on under a new epoch; the one before it must not: it is retried under its
/// original sequence and is deduplicated, not written twice.
#[tokio::test]
async fn a_refused_batch_does_not_renumber_an_earlier_batch_whose_outcome_is_unknown() {
    let broker = Broker::start(1, |a, before| match (a.value.as_str(), before) {
        ("v1", 0) => written_then(REQUEST_TIMED_OUT),
        ("v2", _) => refuse(INVALID_RECORD),
        _ => ok(),
    })
    .await;
    let producer = broker.producer(config()).await;
    let warm = outcomes(append_all(&producer, 0, &names("v", 0..1))).await;
    assert_eq!(*warm[0].as_ref().expect("v0 produced"), 0);
    let acks = outcomes(append_all(&producer, 0, &names("v", 1..6))).await;
    broker.assert_log(0, &["v0", "v1", "v3", "v4", "v5"].map(String::from));
    assert_eq!(*acks[0].as_ref().expect("v1 produced"), 1);
    assert_eq!(
        acks[1].as_ref().unwrap_err().response_error(),
        Some(ResponseError::InvalidRecord)
    );
    let rest: Vec<i64> = acks[2..]
        .iter()
        .map(|r| *r.as_ref().expect("produced"))
        .collect();
    assert_eq!(rest, vec![2, 3, 4]);
    assert!(broker.attempts(0, "v1").len() >= 2, "v1 was retried");
    broker.assert_sent_under_one_identity(0, "v1");
}

/// Another partition's batch was written but answered REQUEST_TIMED_OUT in the request where
/// this partition's batch was refused for good. The epoch bump the refusal needs is this
/// partition's business: the other batch is retried under its original producer id and sequence.
#[tokio::test]
async fn an_epoch_bump_for_one_partition_does_not_renumber_another_partitions_unknown_batch() {
    let broker = Broker::start(2, |a, before| {
        match (a.partition, a.value.as_str(), before) {
            (0, "x0", _) => refuse(INVALID_RECORD),
            (1, "w0", 0) => written_then(REQUEST_TIMED_OUT),
            _ => ok(),
        }
    })
    .await;
    let producer = broker.producer(config()).await;
    let x = append_all(&producer, 0, &names("x", 0..1));
    let w = append_all(&producer, 1, &names("w", 0..1));
    let (x, w) = (outcomes(x).await, outcomes(w).await);
    broker.assert_log(1, &names("w", 0..1));
    assert_eq!(
        x[0].as_ref().unwrap_err().response_error(),
        Some(ResponseError::InvalidRecord)
    );
    assert_eq!(*w[0].as_ref().expect("w0 produced"), 0);
    let x = append_all(&producer, 0, &names("x", 1..3));
    let w = append_all(&producer, 1, &names("w", 1..3));
    let (x, w) = (outcomes(x).await, outcomes(w).await);
    broker.assert_log(0, &names("x", 1..3));
    broker.assert_log(1, &names("w", 0..3));
    assert_eq!(
        x.into_iter().map(|r| r.unwrap()).collect::<Vec<_>>(),
        [0, 1]
    );
    assert_eq!(
        w.into_iter().map(|r| r.unwrap()).collect::<Vec<_>>(),
        [1, 2]
    );
    broker.assert_sent_under_one_identity(1, "w0");
}

/// A batch is refused with a retriable error (NOT_ENOUGH_REPLICAS, nothing written), so the four
/// behind it are OUT_OF_ORDER_SEQUENCE_NUMBER; their answers reach the producer before the first
/// one's. An earlier batch of the partition is still in flight, so the sequence errors prove no
/// gap: no epoch bump, everything is retried in sequence order under its sequence. In the same
/// request as the refused batch, another partition's batch was written and answered
/// REQUEST_TIMED_OUT: a needless bump would renumber it and write it twice.
#[tokio::test]
async fn a_sequence_error_seen_before_an_earlier_batchs_answer_does_not_bump_the_epoch() {
    let late = Duration::from_millis(300);
    let broker = Broker::start(2, move |a, before| {
        match (a.partition, a.value.as_str(), before) {
            (0, "v1", 0) => refuse(NOT_ENOUGH_REPLICAS).late(late),
            (1, "w0", 0) => written_then(REQUEST_TIMED_OUT).late(late),
            _ => ok(),
        }
    })
    .await;
    let producer = broker.producer(config()).await;
    let warm = outcomes(append_all(&producer, 0, &names("v", 0..1))).await;
    assert_eq!(*warm[0].as_ref().expect("v0 produced"), 0);
    let values = names("v", 1..6);
    let v = append_all(&producer, 0, &values);
    let w = append_all(&producer, 1, &names("w", 0..1));
    let (v, w) = (outcomes(v).await, outcomes(w).await);
    assert_eq!(
        broker.attempts(0, "v2")[0].answer,
        OUT_OF_ORDER_SEQUENCE_NUMBER,
        "the scenario happened"
    );
    broker.assert_log(0, &names("v", 0..6));
    broker.assert_log(1, &names("w", 0..1));
    assert_eq!(
        v.into_iter().map(|r| r.unwrap()).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5]
    );
    assert_eq!(*w[0].as_ref().expect("w0 produced"), 0);
    for v in &values {
        broker.assert_sent_under_one_identity(0, v);
    }
    broker.assert_sent_under_one_identity(1, "w0");
    assert_eq!(broker.init_producer_ids(), 1, "no epoch bump");
}

/// The broker takes any sequence from a producer id it has no state for (Kafka since KIP-360),
/// so if the first batch under a new identity is refused with a retriable error, a batch behind
/// it in flight would be written first. Until the first acknowledgement a partition has one
/// batch in flight, and the order holds.
#[tokio::test]
async fn the_first_batches_under_a_new_producer_id_keep_their_order() {
    let broker = Broker::start(1, |a, before| match (a.value.as_str(), before) {
        ("v0", 0) => refuse(NOT_ENOUGH_REPLICAS).late(Duration::from_millis(100)),
        _ => ok(),
    })
    .await;
    let producer = broker.producer(config()).await;
    let values = names("v", 0..5);
    let acks = outcomes(append_all(&producer, 0, &values)).await;
    broker.assert_log(0, &values);
    assert_eq!(
        acks.into_iter().map(|r| r.unwrap()).collect::<Vec<_>>(),
        [0, 1, 2, 3, 4]
    );
}

/// OUT_OF_ORDER_SEQUENCE_NUMBER for the lowest unacknowledged batch of a partition, with nothing
/// before it in flight (as after the broker lost the producer's state): a real gap. That
/// partition bumps the epoch and renumbers what it has not had acknowledged, which the broker
/// cannot have written; another partition's batch written but answered REQUEST_TIMED_OUT meanwhile
/// keeps its producer id and sequence.
#[tokio::test]
async fn a_gap_at_the_lowest_unacknowledged_batch_renumbers_that_partition_only() {
    let broker = Broker::start(2, |a, before| {
        match (a.partition, a.value.as_str(), before) {
            (0, "v2", 0) => refuse(OUT_OF_ORDER_SEQUENCE_NUMBER),
            (1, "w0", 0) => written_then(REQUEST_TIMED_OUT),
            _ => ok(),
        }
    })
    .await;
    let producer = broker.producer(config()).await;
    let first = outcomes(append_all(&producer, 0, &names("v", 0..2))).await;
    assert!(first.iter().all(|r| r.is_ok()), "{first:?}");
    let v = append_all(&producer, 0, &names("v", 2..5));
    let w = append_all(&producer, 1, &names("w", 0..1));
    let (v, w) = (outcomes(v).await, outcomes(w).await);
    broker.assert_log(0, &names("v", 0..5));
    broker.assert_log(1, &names("w", 0..1));
    assert_eq!(
        v.into_iter().map(|r| r.unwrap()).collect::<Vec<_>>(),
        [2, 3, 4]
    );
    assert_eq!(*w[0].as_ref().expect("w0 produced"), 0);
    broker.assert_sent_under_one_identity(1, "w0");
    assert_eq!(broker.init_producer_ids(), 2, "one epoch bump");
    let log = broker.log(0);
    assert_ne!(
        log[2].producer_id, log[1].producer_id,
        "renumbered after the gap"
    );
    assert_eq!(
        log[2..].iter().map(|s| s.seq).collect::<Vec<_>>(),
        [0, 1, 2]
    );
}

/// An old broker answers a retry of a batch it already has with DUPLICATE_SEQUENCE_NUMBER: the
/// batch is written; like the Java producer, the acknowledgement has no offset (-1).
#[tokio::test]
async fn a_duplicate_sequence_answer_to_a_retry_counts_as_written() {
    let broker = Broker::start(1, |a, before| match (a.value.as_str(), before) {
        ("v0", 0) => written_then(REQUEST_TIMED_OUT),
        ("v0", _) => refuse(DUPLICATE_SEQUENCE_NUMBER),
        _ => ok(),
    })
    .await;
    let producer = broker.producer(config()).await;
    let acks = outcomes(append_all(&producer, 0, &names("v", 0..2))).await;
    broker.assert_log(0, &names("v", 0..2));
    assert_eq!(*acks[0].as_ref().expect("v0 acknowledged"), -1);
    assert_eq!(*acks[1].as_ref().expect("v1 produced"), 1);
    assert_eq!(broker.init_producer_ids(), 1, "no epoch bump");
}

/// `stop_partition_on_failure`: the batches after a refused one fail, and so does every later
/// append; the batch before it, written but answered REQUEST_TIMED_OUT, is still retried under its
/// sequence and acknowledged with its offset.
#[tokio::test]
async fn a_stopped_partition_still_retries_the_batch_before_the_refused_one() {
    let broker = Broker::start(1, |a, before| match (a.value.as_str(), before) {
        ("v1", 0) => written_then(REQUEST_TIMED_OUT),
        ("v2", _) => refuse(INVALID_RECORD),
        _ => ok(),
    })
    .await;
    let producer = broker
        .producer(ProducerConfig {
            stop_partition_on_failure: true,
            ..config()
        })
        .await;
    let warm = outcomes(append_all(&producer, 0, &names("v", 0..1))).await;
    assert_eq!(*warm[0].as_ref().expect("v0 produced"), 0);
    let acks = outcomes(append_all(&producer, 0, &names("v", 1..6))).await;
    assert_eq!(*acks[0].as_ref().expect("v1 produced"), 1);
    assert_eq!(
        acks[1].as_ref().unwrap_err().response_error(),
        Some(ResponseError::InvalidRecord)
    );
    for r in &acks[2..] {
        assert!(matches!(r, Err(Error::PartitionStopped { .. })), "{r:?}");
    }
    let later = outcomes(append_all(&producer, 0, &names("v", 6..7))).await;
    assert!(matches!(later[0], Err(Error::PartitionStopped { .. })));
    broker.assert_log(0, &names("v", 0..2));
    broker.assert_sent_under_one_identity(0, "v1");
}

/// `abort`: a batch in flight is answered (here REQUEST_TIMED_OUT after being written) and not
/// retried; what is queued fails; nothing is sent afterwards.
#[tokio::test]
async fn abort_waits_for_what_is_in_flight_and_retries_nothing() {
    let broker = Broker::start(1, |a, before| match (a.value.as_str(), before) {
        ("v0", 0) => written_then(REQUEST_TIMED_OUT).late(Duration::from_millis(200)),
        _ => ok(),
    })
    .await;
    let producer = broker
        .producer(ProducerConfig {
            max_in_flight_batches: 1,
            ..config()
        })
        .await;
    let pending = append_all(&producer, 0, &names("v", 0..3));
    tokio::time::sleep(Duration::from_millis(50)).await;
    producer.abort().await;
    let acks = outcomes(pending).await;
    assert_eq!(
        acks[0].as_ref().unwrap_err().response_error(),
        Some(ResponseError::RequestTimedOut)
    );
    assert!(
        acks[1..].iter().all(|r| matches!(r, Err(Error::Shutdown))),
        "{acks:?}"
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(broker.attempts(0, "v0").len(), 1, "not retried");
    assert!(broker.attempts(0, "v1").is_empty(), "never sent");
}

/// A batch is answered NOT_LEADER_OR_FOLLOWER and the partition then has no leader for longer
/// than the delivery timeout. The batch waits for a retry with its sequence; it must still fail
/// when its time is up (saying it may have been written), not wait forever.
#[tokio::test]
async fn a_batch_waiting_for_a_leader_to_retry_fails_at_the_delivery_timeout() {
    let broker = Broker::start(1, |a, before| match (a.value.as_str(), before) {
        ("v1", 0) => refuse(NOT_LEADER_OR_FOLLOWER).then_leaderless(),
        _ => ok(),
    })
    .await;
    let producer = broker
        .producer(ProducerConfig {
            delivery_timeout: Duration::from_millis(800),
            ..config()
        })
        .await;
    let warm = outcomes(append_all(&producer, 0, &names("v", 0..1))).await;
    assert_eq!(*warm[0].as_ref().expect("v0 produced"), 0);
    let acks = outcomes(append_all(&producer, 0, &names("v", 1..3))).await;
    let msg = acks[0].as_ref().expect_err("v1 expired").to_string();
    assert!(msg.contains("may have been written"), "{msg}");
    assert!(acks[1].is_err(), "v2 expired too: {:?}", acks[1]);
    assert_eq!(broker.attempts(0, "v1").len(), 1, "no leader to retry on");
    broker.assert_log(0, &names("v", 0..1));
}

/// A Produce answer carries throttle_time_ms (the broker is over its quota, KIP-219): the next
/// request to that broker waits until the throttle has passed.
#[tokio::test]
async fn a_throttled_answer_holds_back_the_next_request_to_that_broker() {
    let broker = Broker::start(1, |a, _| match a.value.as_str() {
        "v0" => ok().throttle(400),
        _ => ok(),
    })
    .await;
    let producer = broker.producer(config()).await;
    let first = outcomes(append_all(&producer, 0, &names("v", 0..1))).await;
    assert_eq!(*first[0].as_ref().expect("v0 produced"), 0);
    let second = outcomes(append_all(&producer, 0, &names("v", 1..2))).await;
    assert_eq!(*second[0].as_ref().expect("v1 produced"), 1);
    let gap = broker.attempts(0, "v1")[0].at - broker.attempts(0, "v0")[0].at;
    assert!(
        gap >= Duration::from_millis(350),
        "sent {gap:?} after the throttled answer"
    );
}

/// Mirrored batches from a `LogAppendTime` source topic carry the LogAppendTime bit; a
/// `LogAppendTime` target topic refuses them (INVALID_TIMESTAMP, nothing written). The producer
/// sends the refused batch again without the bit, and every later batch of the partition
/// without it from the start: all land once, in order, under their sequences.
#[tokio::test]
async fn a_log_append_time_topic_gets_batches_without_the_log_append_time_bit() {
    let broker = Broker::start(1, |_, _| ok()).await;
    broker.lock().log_append_time = true;
    let producer = broker.producer(config()).await;
    let values = names("v", 0..4);
    let pending: Vec<_> = values
        .iter()
        .map(|v| {
            let mut b = BatchBuilder::new(Compression::None)
                .timestamp_type(crate::record::TimestampType::LogAppendTime);
            b.push(1_700_000_000_000, Some(b"k"), Some(v.as_bytes()), &[]);
            producer.append(TOPIC, 0, b.build().unwrap())
        })
        .collect();
    let acks: Vec<i64> = outcomes(pending)
        .await
        .into_iter()
        .map(|r| r.expect("produced"))
        .collect();
    assert_eq!(acks, vec![0, 1, 2, 3]);
    broker.assert_log(0, &values);
    for v in &values {
        broker.assert_sent_under_one_identity(0, v);
    }
    let refused = broker
        .lock()
        .attempts
        .iter()
        .filter(|a| a.answer == INVALID_TIMESTAMP)
        .count();
    assert!(refused <= 1, "only the first batch is refused: {refused}");
}

/// Many partitions fed one batch at a time, as a replicator's fetch loop feeds them: no more
/// than `max_requests_per_broker` Produce requests are outstanding at the broker at once, and
/// the batches appended meanwhile go together in the next requests instead of one request
/// each (the broker's per-request work is what a small-batch workload pays for).
#[tokio::test]
async fn requests_to_a_broker_are_capped_and_what_waits_goes_together() {
    let broker = Broker::start(40, |_, _| ok().late(Duration::from_millis(150))).await;
    let producer = broker.producer(config()).await;
    let mut pending = Vec::new();
    for p in 0..40 {
        pending.push(producer.append(TOPIC, p, batch(&format!("p{p}"))));
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    for (r, p) in outcomes(pending).await.into_iter().zip(0..) {
        assert_eq!(r.expect("produced"), 0, "partition {p}");
    }
    let requests = broker.lock().produce_requests.clone();
    let first = requests[0].0;
    let early = requests
        .iter()
        .filter(|(at, _)| *at < first + Duration::from_millis(100))
        .count();
    assert!(
        early <= 5,
        "{early} requests outstanding before the first answer: {requests:?}"
    );
    assert!(
        requests.len() < 20,
        "40 batches went in {} requests: {requests:?}",
        requests.len()
    );
    assert_eq!(requests.iter().map(|r| r.1).sum::<usize>(), 40);
}
