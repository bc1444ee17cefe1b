//! Fetcher tests: the pure decisions, and `Fetcher::poll` against a scripted broker (a real TCP
//! socket speaking just enough Kafka: ApiVersions, Metadata, Fetch, ListOffsets) that can leave
//! a request unanswered, so a poll can be dropped in the middle like a `select!` does.

use std::sync::Mutex;

use bytes::{BufMut, BytesMut};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{
    ApiVersionsResponse, FetchResponse, ListOffsetsResponse, MetadataResponse, ResponseHeader,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

use super::*;
use crate::cluster::ClientConfig;
use crate::record::{BatchBuilder, Compression};
use crate::retry::RetryPolicy;

// ---------------------------------------------------------------------------------------------
// Pure decisions

/// A fetch session names only what changed since the broker last heard of it, forgets what is
/// no longer wanted, advances its epoch (wrapping to 1), and starts again after a failure or
/// when the broker opened none.
#[test]
fn a_fetch_session_names_only_what_changed() {
    let pos = |t: &str, p: i32, offset: i64, epoch: i32| FetchPosition {
        topic: Arc::from(t),
        partition: p,
        offset,
        leader_epoch: epoch,
    };
    let names = |named: &[&FetchPosition]| -> Vec<(String, i32, i64)> {
        named
            .iter()
            .map(|p| (p.topic.to_string(), p.partition, p.offset))
            .collect()
    };
    let mut s = FetchSession::default();
    let all = vec![pos("a", 0, 10, 1), pos("a", 1, 20, 1), pos("b", 0, 5, 3)];
    // No session: a full request that opens one (epoch 0).
    let (id, epoch, named, forgotten) = s.plan(&all);
    assert_eq!((id, epoch, named.len(), forgotten.len()), (0, 0, 3, 0));
    s.answered(0, 77, &named, &forgotten);
    assert!(s.is_open());
    // Nothing moved: an empty incremental request.
    let (id, epoch, named, forgotten) = s.plan(&all);
    assert_eq!((id, epoch, named.len(), forgotten.len()), (77, 1, 0, 0));
    s.answered(1, 77, &named, &forgotten);
    assert_eq!(s.last_listed(), 0);
    // a/1 advanced, b/0's leader epoch moved, a/0 is no longer wanted (paused, moved away).
    let now = vec![pos("a", 1, 25, 1), pos("b", 0, 5, 4)];
    let (_, epoch, named, forgotten) = s.plan(&now);
    assert_eq!(epoch, 2);
    assert_eq!(names(&named), [("a".into(), 1, 25), ("b".into(), 0, 5)]);
    assert_eq!(forgotten, vec![(Arc::from("a"), 0)]);
    s.answered(2, 77, &named, &forgotten);
    // a/0 wanted again: named again, at its position.
    let again = vec![pos("a", 0, 10, 1), pos("a", 1, 25, 1), pos("b", 0, 5, 4)];
    let (_, epoch, named, forgotten) = s.plan(&again);
    assert_eq!(
        (epoch, names(&named), forgotten.len()),
        (3, vec![("a".into(), 0, 10)], 0)
    );
    s.answered(3, 77, &named, &forgotten);
    // The epoch wraps to 1, never 0 (which opens a new session).
    s.epoch = i32::MAX;
    let (_, epoch, named, forgotten) = s.plan(&again);
    assert_eq!(epoch, i32::MAX);
    s.answered(epoch, 77, &named, &forgotten);
    assert_eq!(s.plan(&again).1, 1);
    // An answer outside the session (the broker closed it): the next request is full, and
    // names no session to close.
    let (_, epoch, named, forgotten) = s.plan(&again);
    s.answered(epoch, 0, &named, &forgotten);
    assert!(!s.is_open());
    assert_eq!(s.plan(&again).0, 0);
    s.answered(0, 78, &s.plan(&again).2, &[]);
    assert!(s.is_open());
    // A failure: the next request is full again, and closes the session given up.
    s.reset(true);
    let (id, epoch, named, _) = s.plan(&again);
    assert_eq!((id, epoch, named.len()), (78, 0, 3));
    s.answered(0, 79, &named, &[]);
    s.reset(false);
    let (id, epoch, named, _) = s.plan(&again);
    assert_eq!((id, epoch, named.len()), (0, 0, 3));
    // A broker that opens no session (id 0) keeps getting full requests.
    s.answered(0, 0, &named, &[]);
    assert!(!s.is_open());
    assert_eq!(s.plan(&again).2.len(), 3);
}

#[test]
fn out_of_range_is_classified_against_the_log() {
    use OutOfRangeKind::*;
    assert_eq!(OutOfRangeKind::classify(5, 10, 20), Some(BelowLogStart));
    assert_eq!(OutOfRangeKind::classify(21, 10, 20), Some(AboveLogEnd));
    // Within the log again (a race with the leader or the log start): no reset.
    assert_eq!(OutOfRangeKind::classify(10, 10, 20), None);
    assert_eq!(OutOfRangeKind::classify(20, 10, 20), None);
    assert_eq!(OutOfRangeKind::classify(15, 10, 20), None);
}

#[test]
fn requests_rotate_to_the_cursor_and_wrap() {
    let order = [2, 5, 9, 14];
    assert_eq!(rotation(&order, 0), 0);
    assert_eq!(rotation(&order, 2), 0);
    assert_eq!(rotation(&order, 3), 1);
    assert_eq!(rotation(&order, 9), 2);
    assert_eq!(rotation(&order, 14), 3);
    // Past the last one: wrap to the first.
    assert_eq!(rotation(&order, 15), 0);
    assert_eq!(rotation(&[], 3), 0);
}

#[test]
fn the_cursor_moves_to_the_first_partition_that_waited_for_room() {
    let t: Arc<str> = Arc::from("t");
    let pos = |p: i32| FetchPosition {
        topic: t.clone(),
        partition: p,
        offset: 0,
        leader_epoch: -1,
    };
    let request = BrokerRequest {
        broker: BrokerInfo {
            id: 0,
            host: "h".into(),
            port: 1,
            rack: None,
        },
        positions: vec![pos(3), pos(0), pos(1), pos(2)],
        order: vec![3, 0, 1, 2],
    };
    let waited = |ps: &[i32]| ps.iter().map(|&p| (t.clone(), p)).collect::<HashSet<Key>>();
    assert_eq!(next_cursor(&request, &waited(&[])), None);
    assert_eq!(next_cursor(&request, &waited(&[2, 1])), Some(1));
    // The request's first partition is left out: KIP-74 gives it a batch if it has one.
    assert_eq!(next_cursor(&request, &waited(&[3])), None);
    assert_eq!(next_cursor(&request, &waited(&[3, 2])), Some(2));
}

#[test]
fn waiting_for_room_means_records_were_available() {
    let mut p = FetchedPartition {
        topic: Arc::from("t"),
        partition: 0,
        fetch_offset: 10,
        error: None,
        high_watermark: 10,
        last_stable_offset: 10,
        log_start_offset: 0,
        aborted: vec![],
        records: Bytes::new(),
    };
    assert!(!had_records_available(&p, IsolationLevel::ReadUncommitted));
    p.high_watermark = 11;
    assert!(had_records_available(&p, IsolationLevel::ReadUncommitted));
    // read_committed stops at the last stable offset.
    assert!(!had_records_available(&p, IsolationLevel::ReadCommitted));
    p.last_stable_offset = -1;
    assert!(had_records_available(&p, IsolationLevel::ReadCommitted));
}

// ---------------------------------------------------------------------------------------------
// Scripted broker

/// Answer to one partition of a Fetch: (topic, partition, fetch offset, index in the request).
type FetchScript = Box<dyn FnMut(&str, i32, i64, usize) -> PartitionData + Send>;
/// Answer to ListOffsets: (topic, partition, timestamp spec, isolation) → offset, or `None` to
/// leave the request unanswered.
type ListScript = Box<dyn FnMut(&str, i32, i64, i8) -> Option<i64> + Send>;

struct Script {
    topics: Vec<(String, i32)>,
    fetch: FetchScript,
    list_offsets: ListScript,
    /// Metadata requests after this many are left unanswered.
    answer_metadata: usize,
    /// The cluster's brokers as `(node id, port)` in metadata; empty: this broker alone, id 0.
    brokers: Vec<(i32, i32)>,
    /// Leader of each partition index (node id); missing: 0.
    leaders: Vec<i32>,
    /// Fetches are never answered (a cut network path).
    silent_fetch: bool,
    /// Fetches are answered this late.
    fetch_delay: Duration,
    /// Sessions: the id a request with epoch 0 opens (0: none), and whether the broker has
    /// lost it (every incremental request is refused with FETCH_SESSION_ID_NOT_FOUND).
    session: i32,
    session_lost: bool,
}

#[derive(Default)]
struct Seen {
    /// Every Fetch as (topic, partition, offset), in request order.
    fetches: Vec<Vec<(String, i32, i64)>>,
    /// Every Fetch's (session id, epoch, forgotten partitions).
    sessions: Vec<(i32, i32, usize)>,
    metadata: usize,
}

struct Broker {
    addr: String,
    script: Arc<Mutex<Script>>,
    seen: Arc<Mutex<Seen>>,
    /// Notified whenever a request is left unanswered.
    stalled: Arc<Notify>,
}

impl Broker {
    async fn start(topics: &[(&str, i32)]) -> Broker {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let script = Arc::new(Mutex::new(Script {
            topics: topics.iter().map(|(t, n)| (t.to_string(), *n)).collect(),
            fetch: Box::new(|_, p, _, _| empty(p, 0)),
            list_offsets: Box::new(|_, _, _, _| Some(0)),
            answer_metadata: usize::MAX,
            brokers: Vec::new(),
            leaders: Vec::new(),
            silent_fetch: false,
            fetch_delay: Duration::ZERO,
            session: 0,
            session_lost: false,
        }));
        let seen = Arc::new(Mutex::new(Seen::default()));
        let stalled = Arc::new(Notify::new());
        let (sc, se, st) = (script.clone(), seen.clone(), stalled.clone());
        tokio::spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                tokio::spawn(serve(s, port as i32, sc.clone(), se.clone(), st.clone()));
            }
        });
        Broker {
            addr: format!("127.0.0.1:{port}"),
            script,
            seen,
            stalled,
        }
    }

    fn on_fetch(&self, f: impl FnMut(&str, i32, i64, usize) -> PartitionData + Send + 'static) {
        self.script.lock().unwrap().fetch = Box::new(f);
    }

    fn on_list_offsets(&self, f: impl FnMut(&str, i32, i64, i8) -> Option<i64> + Send + 'static) {
        self.script.lock().unwrap().list_offsets = Box::new(f);
    }

    fn fetches(&self) -> Vec<Vec<(String, i32, i64)>> {
        self.seen.lock().unwrap().fetches.clone()
    }

    async fn cluster(&self) -> Arc<Cluster> {
        let mut cfg = ClientConfig::new(&self.addr);
        cfg.retry = RetryPolicy {
            min_backoff: Duration::from_millis(5),
            max_backoff: Duration::from_millis(20),
            max_elapsed: Duration::from_millis(200),
        };
        cfg.conn.request_timeout = Duration::from_secs(10);
        Cluster::connect(cfg).await.unwrap()
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

async fn serve(
    mut s: TcpStream,
    port: i32,
    script: Arc<Mutex<Script>>,
    seen: Arc<Mutex<Seen>>,
    stalled: Arc<Notify>,
) {
    loop {
        let Ok(len) = s.read_i32().await else { return };
        let mut buf = vec![0u8; len as usize];
        if s.read_exact(&mut buf).await.is_err() {
            return;
        }
        let mut b = Bytes::from(buf);
        let h = kafka_protocol::protocol::decode_request_header_from_buffer(&mut b).unwrap();
        let (corr, v) = (h.correlation_id, h.request_api_version);
        let answer = match ApiKey::try_from(h.request_api_key).unwrap() {
            ApiKey::ApiVersions => {
                let keys = [
                    ApiKey::ApiVersions,
                    ApiKey::Metadata,
                    ApiKey::Fetch,
                    ApiKey::ListOffsets,
                ]
                .iter()
                .map(|k| {
                    let r = k.valid_versions();
                    ApiVersion::default()
                        .with_api_key(*k as i16)
                        .with_min_version(r.min)
                        .with_max_version(r.max)
                })
                .collect();
                Some(frame(
                    corr,
                    v,
                    &ApiVersionsResponse::default().with_api_keys(keys),
                ))
            }
            ApiKey::Metadata => {
                let n = {
                    let mut seen = seen.lock().unwrap();
                    seen.metadata += 1;
                    seen.metadata
                };
                let script = script.lock().unwrap();
                (n <= script.answer_metadata).then(|| {
                    let topics = script
                        .topics
                        .iter()
                        .map(|(name, n)| {
                            MetadataResponseTopic::default()
                                .with_name(Some(TopicName(StrBytes::from_string(name.clone()))))
                                .with_partitions(
                                    (0..*n)
                                        .map(|p| {
                                            let leader = BrokerId(
                                                script
                                                    .leaders
                                                    .get(p as usize)
                                                    .copied()
                                                    .unwrap_or(0),
                                            );
                                            MetadataResponsePartition::default()
                                                .with_partition_index(p)
                                                .with_leader_id(leader)
                                                .with_leader_epoch(0)
                                                .with_replica_nodes(vec![leader])
                                                .with_isr_nodes(vec![leader])
                                        })
                                        .collect(),
                                )
                        })
                        .collect();
                    let brokers = if script.brokers.is_empty() {
                        vec![(0, port)]
                    } else {
                        script.brokers.clone()
                    };
                    let resp = MetadataResponse::default()
                        .with_brokers(
                            brokers
                                .into_iter()
                                .map(|(id, port)| {
                                    MetadataResponseBroker::default()
                                        .with_node_id(BrokerId(id))
                                        .with_host(StrBytes::from_static_str("127.0.0.1"))
                                        .with_port(port)
                                })
                                .collect(),
                        )
                        .with_controller_id(BrokerId(0))
                        .with_topics(topics);
                    frame(corr, v, &resp)
                })
            }
            ApiKey::Fetch => {
                let req = FetchRequest::decode(&mut b, v).unwrap();
                let (responses, silent, delay) = {
                    let mut asked = Vec::new();
                    let mut responses = Vec::new();
                    let mut script = script.lock().unwrap();
                    for t in &req.topics {
                        let mut parts = Vec::new();
                        for p in &t.partitions {
                            let i = asked.len();
                            asked.push((t.topic.0.to_string(), p.partition, p.fetch_offset));
                            parts.push((script.fetch)(&t.topic.0, p.partition, p.fetch_offset, i));
                        }
                        responses.push(
                            FetchableTopicResponse::default()
                                .with_topic(t.topic.clone())
                                .with_partitions(parts),
                        );
                    }
                    let forgotten = req
                        .forgotten_topics_data
                        .iter()
                        .map(|t| t.partitions.len())
                        .sum();
                    let mut seen = seen.lock().unwrap();
                    seen.fetches.push(asked);
                    seen.sessions
                        .push((req.session_id, req.session_epoch, forgotten));
                    let mut resp = FetchResponse::default();
                    if req.session_epoch == 0 {
                        resp.session_id = script.session;
                        resp.responses = responses;
                    } else if req.session_epoch > 0 && script.session_lost {
                        resp.error_code = ResponseError::FetchSessionIdNotFound.code();
                    } else {
                        resp.session_id = req.session_id;
                        resp.responses = responses;
                    }
                    (resp, script.silent_fetch, script.fetch_delay)
                };
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                (!silent).then(|| frame(corr, v, &responses))
            }
            ApiKey::ListOffsets => {
                let req = ListOffsetsRequest::decode(&mut b, v).unwrap();
                let mut script = script.lock().unwrap();
                let mut topics = Vec::new();
                let mut stall = false;
                for t in &req.topics {
                    let mut parts = Vec::new();
                    for p in &t.partitions {
                        match (script.list_offsets)(
                            &t.name.0,
                            p.partition_index,
                            p.timestamp,
                            req.isolation_level,
                        ) {
                            Some(offset) => parts.push(
                                ListOffsetsPartitionResponse::default()
                                    .with_partition_index(p.partition_index)
                                    .with_offset(offset)
                                    .with_timestamp(-1),
                            ),
                            None => stall = true,
                        }
                    }
                    topics.push(
                        ListOffsetsTopicResponse::default()
                            .with_name(t.name.clone())
                            .with_partitions(parts),
                    );
                }
                (!stall)
                    .then(|| frame(corr, v, &ListOffsetsResponse::default().with_topics(topics)))
            }
            other => panic!("scripted broker got {other:?}"),
        };
        match answer {
            Some(f) => {
                if s.write_all(&f).await.is_err() {
                    return;
                }
            }
            None => stalled.notify_one(),
        }
    }
}

/// Three records at `offset`, as one batch.
fn batch(offset: i64) -> Bytes {
    let mut b = BatchBuilder::new(Compression::None).base_offset(offset);
    for i in 0..3 {
        b.push(1_700_000_000_000 + i, Some(b"k"), Some(b"value"), &[]);
    }
    b.build().unwrap().into_bytes()
}

fn partition_data(partition: i32, high_watermark: i64, records: Bytes) -> PartitionData {
    PartitionData::default()
        .with_partition_index(partition)
        .with_high_watermark(high_watermark)
        .with_last_stable_offset(high_watermark)
        .with_log_start_offset(0)
        .with_records(Some(records))
}

/// A partition with a batch at `offset` (high watermark far ahead).
fn data(partition: i32, offset: i64) -> PartitionData {
    partition_data(partition, 1_000_000, batch(offset))
}

/// A partition with nothing new at `offset`.
fn empty(partition: i32, offset: i64) -> PartitionData {
    partition_data(partition, offset, Bytes::new())
}

fn error(partition: i32, e: ResponseError) -> PartitionData {
    PartitionData::default()
        .with_partition_index(partition)
        .with_error_code(e.code())
        .with_high_watermark(-1)
        .with_last_stable_offset(-1)
        .with_log_start_offset(-1)
}

fn config(reset: OffsetReset, isolation: IsolationLevel) -> FetcherConfig {
    FetcherConfig {
        max_wait: Duration::from_millis(10),
        isolation,
        reset,
        ..FetcherConfig::default()
    }
}

/// Partition 0 has a batch wherever it is fetched; partition 1 is out of range.
fn p0_data_p1_out_of_range(_: &str, p: i32, offset: i64, _: usize) -> PartitionData {
    if p == 0 {
        data(0, offset)
    } else {
        error(p, ResponseError::OffsetOutOfRange)
    }
}

/// ListOffsets answering `earliest` and `latest` (read_uncommitted) / `stable` (read_committed).
fn log(earliest: i64, latest: i64, stable: i64) -> impl FnMut(&str, i32, i64, i8) -> Option<i64> {
    move |_, _, spec, isolation| {
        Some(match spec {
            -2 => earliest,
            -1 if isolation == 1 => stable,
            -1 => latest,
            other => panic!("ListOffsets for timestamp {other}"),
        })
    }
}

// ---------------------------------------------------------------------------------------------
// A. Cancel-safety

/// The replicator races `poll` against timers; dropping it after the Fetch answered (while
/// ListOffsets for an out-of-range partition is pending) must not move any position, or the
/// fetched batches would be lost.
#[tokio::test]
async fn a_poll_dropped_while_list_offsets_is_pending_moves_nothing() {
    let broker = Broker::start(&[("t", 2)]).await;
    broker.on_fetch(p0_data_p1_out_of_range);
    broker.on_list_offsets(|_, _, _, _| None);
    let mut f = Fetcher::new(
        broker.cluster().await,
        config(OffsetReset::Earliest, IsolationLevel::ReadUncommitted),
    );
    f.assign("t", 0, 0);
    f.assign("t", 1, 100);
    tokio::select! {
        r = f.poll() => panic!("poll completed: {r:?}"),
        _ = broker.stalled.notified() => {}
    }
    assert_eq!(broker.fetches().len(), 1, "the Fetch was answered");
    assert_eq!(f.position("t", 0), Some(0), "no position moved");
    assert_eq!(f.position("t", 1), Some(100));
    assert!(f.take_out_of_range().is_empty());
    assert!(!f.is_paused("t", 1));
    // The next poll fetches the same records again, and completes.
    broker.on_list_offsets(log(0, 200, 200));
    let got = f.poll().await.unwrap();
    assert_eq!(broker.fetches()[1][..1], [("t".to_string(), 0, 0)]);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].fetch_offset, 0);
    assert_eq!(f.position("t", 0), Some(3));
}

/// A retriable partition error calls for a metadata refresh, and the refresh never answers
/// (its broker is cut off): the poll does not wait for it.
#[tokio::test]
async fn a_hanging_metadata_refresh_does_not_hold_the_poll_back() {
    let broker = Broker::start(&[("t", 2)]).await;
    broker.on_fetch(|_, p, offset, _| {
        if p == 0 {
            data(0, offset)
        } else {
            error(p, ResponseError::NotLeaderOrFollower)
        }
    });
    let mut f = Fetcher::new(
        broker.cluster().await,
        config(OffsetReset::Earliest, IsolationLevel::ReadUncommitted),
    );
    f.assign("t", 0, 0);
    f.assign("t", 1, 100);
    let answered = broker.seen.lock().unwrap().metadata;
    broker.script.lock().unwrap().answer_metadata = answered;
    // The refresh the error calls for never answers; the poll does not wait for it: t/0's
    // records are returned and applied, t/1 stays where it was.
    let got = tokio::time::timeout(Duration::from_secs(2), f.poll())
        .await
        .expect("the poll does not wait for the metadata refresh")
        .unwrap();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(f.position("t", 0), Some(3));
    assert_eq!(f.position("t", 1), Some(100));
}

/// A poll that fails moves nothing either, even for partitions that came back fine before the
/// failing one.
#[tokio::test]
async fn a_failed_poll_moves_nothing() {
    let broker = Broker::start(&[("t", 2)]).await;
    broker.on_fetch(|_, p, offset, _| {
        if p == 0 {
            data(0, offset)
        } else {
            error(p, ResponseError::TopicAuthorizationFailed)
        }
    });
    let mut f = Fetcher::new(
        broker.cluster().await,
        config(OffsetReset::Earliest, IsolationLevel::ReadUncommitted),
    );
    f.assign("t", 0, 0);
    f.assign("t", 1, 100);
    let err = f.poll().await.unwrap_err();
    assert_eq!(
        err.response_error(),
        Some(ResponseError::TopicAuthorizationFailed)
    );
    assert!(err.to_string().contains("topic t partition 1"), "{err}");
    assert_eq!(f.position("t", 0), Some(0), "no position moved");
    assert_eq!(f.position("t", 1), Some(100));
}

// ---------------------------------------------------------------------------------------------
// B. Out of range, observably

#[tokio::test]
async fn below_the_log_start_is_reset_by_policy_and_reported() {
    let broker = Broker::start(&[("t", 2)]).await;
    broker.on_fetch(p0_data_p1_out_of_range);
    broker.on_list_offsets(log(150, 200, 190));
    let cluster = broker.cluster().await;
    let cases = [
        (OffsetReset::Earliest, IsolationLevel::ReadCommitted, 150),
        (OffsetReset::Latest, IsolationLevel::ReadUncommitted, 200),
        // Latest under read_committed is the last stable offset, as Kafka's consumer resets.
        (OffsetReset::Latest, IsolationLevel::ReadCommitted, 190),
    ];
    for (reset, isolation, to) in cases {
        let mut f = Fetcher::new(cluster.clone(), config(reset, isolation));
        f.assign("t", 0, 0);
        f.assign("t", 1, 100);
        let got = f.poll().await.unwrap();
        assert_eq!(got.len(), 1, "{reset:?}");
        assert_eq!(f.position("t", 0), Some(3));
        assert_eq!(f.position("t", 1), Some(to), "{reset:?} {isolation:?}");
        assert!(!f.is_paused("t", 1));
        assert_eq!(
            f.take_out_of_range(),
            vec![OutOfRange {
                topic: Arc::from("t"),
                partition: 1,
                fetch_offset: 100,
                log_start_offset: 150,
                high_watermark: 200,
                reset_to: Some(to),
                kind: OutOfRangeKind::BelowLogStart,
            }]
        );
        assert!(f.take_out_of_range().is_empty(), "drained");
    }
}

#[tokio::test]
async fn past_the_end_of_the_log_pauses_and_reports_without_reset() {
    let broker = Broker::start(&[("t", 2)]).await;
    broker.on_fetch(p0_data_p1_out_of_range);
    broker.on_list_offsets(log(0, 50, 50));
    let mut f = Fetcher::new(
        broker.cluster().await,
        config(OffsetReset::Earliest, IsolationLevel::ReadUncommitted),
    );
    f.assign("t", 0, 0);
    f.assign("t", 1, 100);
    f.poll().await.unwrap();
    assert_eq!(f.position("t", 1), Some(100), "not reset");
    assert!(f.is_paused("t", 1));
    assert_eq!(
        f.take_out_of_range(),
        vec![OutOfRange {
            topic: Arc::from("t"),
            partition: 1,
            fetch_offset: 100,
            log_start_offset: 0,
            high_watermark: 50,
            reset_to: None,
            kind: OutOfRangeKind::AboveLogEnd,
        }]
    );
    // Paused: no longer fetched, until the caller decides.
    f.poll().await.unwrap();
    let last = broker.fetches().pop().unwrap();
    assert_eq!(last, vec![("t".to_string(), 0, 3)]);
    broker.on_fetch(|_, p, offset, _| data(p, offset));
    f.seek("t", 1, 50);
    f.resume("t", 1);
    f.poll().await.unwrap();
    assert_eq!(f.position("t", 1), Some(53));
}

#[tokio::test]
async fn out_of_range_but_within_the_log_now_is_fetched_again() {
    let broker = Broker::start(&[("t", 2)]).await;
    broker.on_fetch(p0_data_p1_out_of_range);
    broker.on_list_offsets(log(0, 200, 200));
    let mut f = Fetcher::new(
        broker.cluster().await,
        config(OffsetReset::Earliest, IsolationLevel::ReadUncommitted),
    );
    f.assign("t", 0, 0);
    f.assign("t", 1, 100);
    f.poll().await.unwrap();
    assert_eq!(f.position("t", 1), Some(100));
    assert!(!f.is_paused("t", 1));
    assert!(f.take_out_of_range().is_empty());
}

#[tokio::test]
async fn the_error_policy_fails_the_poll_and_moves_nothing() {
    let broker = Broker::start(&[("t", 2)]).await;
    broker.on_fetch(p0_data_p1_out_of_range);
    broker.on_list_offsets(log(0, 50, 50));
    let mut f = Fetcher::new(
        broker.cluster().await,
        config(OffsetReset::Error, IsolationLevel::ReadUncommitted),
    );
    f.assign("t", 0, 0);
    f.assign("t", 1, 100);
    let err = f.poll().await.unwrap_err();
    assert_eq!(err.response_error(), Some(ResponseError::OffsetOutOfRange));
    let text = err.to_string();
    assert!(text.contains("topic t partition 1 offset 100"), "{text}");
    assert!(text.contains("past the end of the log"), "{text}");
    assert_eq!(f.position("t", 0), Some(0));
    assert_eq!(f.position("t", 1), Some(100));
    assert!(!f.is_paused("t", 1));
}

// ---------------------------------------------------------------------------------------------
// C. Fairness

/// Responses only have room for two partitions (as with `max_bytes`): every partition, of
/// every topic, still gets through, round after round. (Requests group partitions by topic,
/// so the start topic's partitions before the cursor ride along early: fair within a factor
/// of two here, never starved.)
#[tokio::test]
async fn every_partition_gets_through_a_full_response() {
    let broker = Broker::start(&[("a", 3), ("b", 3)]).await;
    broker.on_fetch(|_, p, offset, i| {
        if i < 2 {
            data(p, offset)
        } else {
            partition_data(p, 1_000_000, Bytes::new())
        }
    });
    let mut f = Fetcher::new(
        broker.cluster().await,
        config(OffsetReset::Earliest, IsolationLevel::ReadUncommitted),
    );
    for t in ["a", "b"] {
        for p in 0..3 {
            f.assign(t, p, 0);
        }
    }
    let served = |f: &Fetcher, t: &str, p: i32| f.position(t, p).unwrap() / 3;
    for _ in 0..4 {
        f.poll().await.unwrap();
    }
    for t in ["a", "b"] {
        for p in 0..3 {
            assert!(served(&f, t, p) >= 1, "{t}/{p}: {:?}", broker.fetches());
        }
    }
    for _ in 0..20 {
        f.poll().await.unwrap();
    }
    for t in ["a", "b"] {
        for p in 0..3 {
            assert!(served(&f, t, p) >= 6, "{t}/{p}: {}", served(&f, t, p));
        }
    }
}

/// A partition whose first batch does not fit (`partition_max_bytes`) gets a partial batch
/// unless it leads the request (KIP-74): it is moved to the front and gets through.
#[tokio::test]
async fn an_oversized_batch_gets_through_by_leading_the_request() {
    let broker = Broker::start(&[("t", 4)]).await;
    broker.on_fetch(|_, p, offset, i| {
        if p == 2 && i > 0 {
            let whole = batch(offset);
            partition_data(p, 1_000_000, whole.slice(..whole.len() / 2))
        } else {
            data(p, offset)
        }
    });
    let mut f = Fetcher::new(
        broker.cluster().await,
        config(OffsetReset::Earliest, IsolationLevel::ReadUncommitted),
    );
    for p in 0..4 {
        f.assign("t", p, 0);
    }
    f.poll().await.unwrap();
    assert_eq!(f.position("t", 2), Some(0));
    f.poll().await.unwrap();
    assert_eq!(f.position("t", 2), Some(3), "{:?}", broker.fetches());
    assert_eq!(broker.fetches()[1][0], ("t".to_string(), 2, 0));
}

// ---------------------------------------------------------------------------------------------
// D. Brokers are independent

/// Two brokers, each leading one partition of `t`; `t/1`'s leader is `second`.
async fn two_brokers() -> (Broker, Broker) {
    let (first, second) = (
        Broker::start(&[("t", 2)]).await,
        Broker::start(&[("t", 2)]).await,
    );
    let port = |b: &Broker| b.addr.rsplit_once(':').unwrap().1.parse::<i32>().unwrap();
    let brokers = vec![(0, port(&first)), (1, port(&second))];
    for b in [&first, &second] {
        let mut s = b.script.lock().unwrap();
        s.brokers = brokers.clone();
        s.leaders = vec![0, 1];
        s.fetch = Box::new(|_, p, offset, _| data(p, offset));
    }
    (first, second)
}

/// A broker that never answers (a cut network path: the request waits for its timeout, 10 s
/// here) holds back its own partition only: polls keep returning the other broker's records
/// within milliseconds, and the silent broker is not sent a second Fetch meanwhile. Before,
/// every poll waited for every broker.
#[tokio::test]
async fn a_silent_broker_holds_back_only_its_own_partitions() {
    let (first, second) = two_brokers().await;
    second.script.lock().unwrap().silent_fetch = true;
    let mut f = Fetcher::new(
        first.cluster().await,
        config(OffsetReset::Earliest, IsolationLevel::ReadUncommitted),
    );
    f.assign("t", 0, 0);
    f.assign("t", 1, 0);
    for round in 0..5 {
        let got = tokio::time::timeout(Duration::from_secs(2), f.poll())
            .await
            .unwrap_or_else(|_| panic!("poll {round} waited for the silent broker"))
            .unwrap();
        assert!(got.iter().all(|p| p.partition == 0), "{got:?}");
    }
    assert_eq!(f.position("t", 0), Some(15));
    assert_eq!(f.position("t", 1), Some(0));
    assert_eq!(second.fetches(), vec![vec![("t".to_string(), 1, 0)]]);
}

/// An answer for a partition whose position moved while its Fetch was in flight is dropped
/// (never returned, position untouched), and the partition is fetched from its new position.
#[tokio::test]
async fn an_answer_for_a_partition_moved_meanwhile_is_dropped() {
    let (first, second) = two_brokers().await;
    second.script.lock().unwrap().fetch_delay = Duration::from_millis(300);
    let mut f = Fetcher::new(
        first.cluster().await,
        config(OffsetReset::Earliest, IsolationLevel::ReadUncommitted),
    );
    f.assign("t", 0, 0);
    f.assign("t", 1, 0);
    let got = f.poll().await.unwrap();
    assert!(got.iter().all(|p| p.partition == 0), "{got:?}");
    f.seek("t", 1, 30);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while f.position("t", 1) == Some(30) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "t/1 never fetched at 30"
        );
        for p in f.poll().await.unwrap() {
            assert!(
                p.partition == 0 || p.fetch_offset == 30,
                "stale answer returned: {p:?}"
            );
        }
    }
    assert_eq!(f.position("t", 1), Some(33));
    let asked: Vec<i64> = second.fetches().iter().map(|r| r[0].2).collect();
    assert_eq!(asked, vec![0, 30]);
}

/// Records of one partition that do not frame (an old message format here, magic 1) do not
/// fail the poll: they are returned for the reader to judge, that partition's position stays,
/// and the other partition's records come through and advance. Before, the whole poll failed,
/// and with it every partition of the replicator.
#[tokio::test]
async fn records_that_do_not_frame_stay_with_their_partition() {
    let broker = Broker::start(&[("t", 2)]).await;
    broker.on_fetch(|_, p, offset, _| {
        if p == 0 {
            let mut old = batch(offset).to_vec();
            old[16] = 1; // magic
            partition_data(p, 100, Bytes::from(old))
        } else {
            data(p, offset)
        }
    });
    let mut f = Fetcher::new(
        broker.cluster().await,
        config(OffsetReset::Earliest, IsolationLevel::ReadUncommitted),
    );
    f.assign("t", 0, 0);
    f.assign("t", 1, 0);
    let got = f.poll().await.expect("the poll succeeds");
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(got
        .iter()
        .any(|p| p.partition == 0 && !p.records.is_empty()));
    assert_eq!(f.position("t", 0), Some(0));
    assert_eq!(f.position("t", 1), Some(3));
}

/// A broker that refuses every connection at once is asked again only after a backoff (50 ms
/// doubling to 1 s), not in a tight loop, while the other broker's partition keeps flowing.
#[tokio::test]
async fn a_refusing_broker_is_retried_with_backoff() {
    let (first, _second) = two_brokers().await;
    // Broker 1 is now a port that accepts and closes every connection, counting them.
    let closer = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let closer_port = closer.local_addr().unwrap().port() as i32;
    let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = closer.accept().await {
            counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            drop(s);
        }
    });
    {
        let first_port = first
            .addr
            .rsplit_once(':')
            .unwrap()
            .1
            .parse::<i32>()
            .unwrap();
        let mut s = first.script.lock().unwrap();
        s.brokers = vec![(0, first_port), (1, closer_port)];
        s.fetch = Box::new(|_, p, offset, _| data(p, offset));
        s.fetch_delay = Duration::from_millis(20);
    }
    let mut f = Fetcher::new(
        first.cluster().await,
        config(OffsetReset::Earliest, IsolationLevel::ReadUncommitted),
    );
    f.assign("t", 0, 0);
    f.assign("t", 1, 0);
    let until = tokio::time::Instant::now() + Duration::from_secs(2);
    let mut polls = 0;
    while tokio::time::Instant::now() < until {
        f.poll().await.unwrap();
        polls += 1;
    }
    let n = accepted.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        n >= 2,
        "the refusing broker was tried again ({n} connections)"
    );
    assert!(
        n <= 25,
        "{n} connections in 2 s: no backoff ({polls} polls)"
    );
    assert!(f.position("t", 0).unwrap() >= 30, "t/0 kept flowing");
    assert_eq!(f.position("t", 1), Some(0));
}

/// A broker that lost the fetch session (restarted, evicted it) refuses the next incremental
/// request with FETCH_SESSION_ID_NOT_FOUND: the fetcher starts a new session with a full request
/// and nothing is lost or fetched twice.
#[tokio::test]
async fn a_lost_fetch_session_is_started_again_with_a_full_request() {
    let b = Broker::start(&[("t", 2)]).await;
    {
        let mut s = b.script.lock().unwrap();
        s.session = 7;
        // Partition 0 has records up to 30, partition 1 none.
        s.fetch = Box::new(|_, p, offset, _| {
            if p == 0 && offset < 30 {
                data(p, offset)
            } else {
                empty(p, if p == 0 { 30 } else { 0 })
            }
        });
    }
    let mut f = Fetcher::new(
        b.cluster().await,
        config(OffsetReset::Earliest, IsolationLevel::ReadUncommitted),
    );
    f.assign("t", 0, 0);
    f.assign("t", 1, 0);
    let mut fetched = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while f.position("t", 0) < Some(30) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "stalled at {:?}",
            f.position("t", 0)
        );
        for p in f.poll().await.unwrap() {
            fetched += split_batches(p.records)
                .map(|b| i64::from(b.unwrap().record_count()))
                .sum::<i64>();
        }
    }
    // One request names t/0 at its final position, the next names nothing.
    f.poll().await.unwrap();
    f.poll().await.unwrap();
    {
        let seen = b.seen.lock().unwrap();
        // The first request opens the session with both partitions; later ones name only the
        // partition whose position moved; the idle one names none.
        assert_eq!(seen.sessions[0], (0, 0, 0));
        assert_eq!(seen.fetches[0].len(), 2);
        assert!(seen.sessions[1..]
            .iter()
            .all(|&(id, epoch, _)| id == 7 && epoch > 0));
        assert!(seen.fetches[1..]
            .iter()
            .all(|f| f.iter().all(|(_, p, _)| *p == 0)));
        assert!(
            seen.fetches.last().unwrap().is_empty(),
            "{:?}",
            seen.fetches
        );
    }
    assert_eq!(f.sessions(), vec![(0, true, 0)]);
    // The broker loses the session: one refused request, then at once (same poll, not a
    // broker failure) a full one, opening a new session.
    b.script.lock().unwrap().session_lost = true;
    f.pause("t", 1);
    let before = b.seen.lock().unwrap().fetches.len();
    f.poll().await.unwrap();
    assert_eq!(f.sessions(), vec![(0, true, 1)]);
    {
        let seen = b.seen.lock().unwrap();
        assert_eq!(seen.fetches.len(), before + 2);
        let after: Vec<_> = seen.sessions[before..].to_vec();
        assert!(
            after[0].1 > 0,
            "an incremental request was refused: {after:?}"
        );
        assert_eq!(after[1], (0, 0, 0), "then a full request: {after:?}");
        assert_eq!(
            seen.fetches[before + 1],
            vec![("t".to_string(), 0, 30)],
            "naming every wanted partition at its position (t/1 paused)"
        );
    }
    assert_eq!(fetched, 30, "every record once");
    assert_eq!(f.position("t", 0), Some(30));
    // Dropped, the fetcher closes its session: the final epoch, no partitions.
    drop(f);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let last = b.seen.lock().unwrap().sessions.last().copied();
        if last == Some((7, -1, 0)) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not closed: {last:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
