//! Writes fuzz seeds made by a real client: librdkafka produces to a tansu broker (every codec,
//! headers, null keys and values, an idempotent producer, a transactional producer with
//! committed and aborted transactions so that control batches exist), Strait's fetcher reads the
//! partitions back read_uncommitted, and each fetched partition's raw record bytes become seeds
//! of the record targets. The fetched records are also wrapped in Fetch v12 response frames for
//! `frame_decode`, next to populated Produce v9, Metadata v12 (the broker's own answer),
//! ApiVersions v3, FindCoordinator v4 and OffsetFetch v8 responses.
//!
//! Usage: `gen-fuzz-corpus <seeds dir>` (normally `fuzz/seeds`, via `scripts/gen-fuzz-corpus.sh`).
//! Files are named `librdkafka-<topic>-<n>` (record targets) and `librdkafka-<what>` (frames);
//! existing files of those names are replaced, others are left alone. The input layouts are the
//! ones described in `fuzz/README.md`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::api_versions_response::{ApiVersion, ApiVersionsResponse};
use kafka_protocol::messages::fetch_response::{
    AbortedTransaction, FetchResponse, FetchableTopicResponse, PartitionData,
};
use kafka_protocol::messages::find_coordinator_response::{Coordinator, FindCoordinatorResponse};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponse, OffsetFetchResponseGroup, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopics,
};
use kafka_protocol::messages::produce_response::{
    PartitionProduceResponse, ProduceResponse, TopicProduceResponse,
};
use kafka_protocol::messages::{ApiKey, BrokerId, GroupId, MetadataRequest, ProducerId, TopicName};
use kafka_protocol::protocol::{Encodable, HeaderVersion, StrBytes};
use protocol_client::cluster::{ClientConfig, Cluster};
use protocol_client::fetcher::{fetch_once, FetchPosition, FetcherConfig, IsolationLevel};
use protocol_client::record::{split_batches, ControlType, RecordBatch, BATCH_HEADER_LEN};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use strait_tests::reference::{self, Outgoing};
use strait_tests::tansu::TansuBroker;

/// The targets whose input is raw record bytes as a fetch returns them.
const RECORD_TARGETS: [&str; 4] = [
    "record_split_view",
    "record_decode",
    "record_rewrite",
    "record_rebuild",
];

/// Fetch size per partition: small, so that a topic gives several seeds of a few batches each.
const PARTITION_MAX_BYTES: i32 = 12 * 1024;

/// At most this many per-batch records sections per topic for `record_decode`.
const SECTIONS_PER_TOPIC: usize = 4;

/// `frame_decode`'s leading bytes: maximum frame size selector (`0xff`, about 16 MiB) and no
/// chunk sizes (the stream arrives at once).
const FRAME_WHOLE: [u8; 2] = [0xff, 0x00];
/// The same with three chunk sizes (1 byte, 17 bytes, 6 KiB), cyclically.
const FRAME_CHUNKED: [u8; 5] = [0xff, 0x03, 0x00, 0x10, 0x85];

fn main() {
    let out = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| strait_tests::workspace_root().join("fuzz/seeds"));
    let broker = TansuBroker::start("fuzz-corpus");
    let bootstrap = broker.bootstrap();
    eprintln!("tansu cluster {} at {bootstrap}", broker.cluster_id());

    let topics = produce_all(&bootstrap);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let written = runtime.block_on(async {
        let cluster = Cluster::connect(ClientConfig::new(&bootstrap))
            .await
            .expect("connect to tansu");
        cluster.track_topics(topics.iter().cloned());
        cluster.refresh_metadata().await.expect("metadata");
        let mut written = 0usize;
        let mut fetch_frames = Vec::new();
        for topic in &topics {
            let fetches = fetch_topic(&cluster, topic, IsolationLevel::ReadUncommitted).await;
            written += write_record_seeds(&out, topic, &fetches);
            // read_committed for the frame, so that it lists the aborted transaction.
            let committed = fetch_topic(&cluster, topic, IsolationLevel::ReadCommitted).await;
            fetch_frames.push(fetch_response_frame(topic, &committed[0]));
        }
        written += write_frame_seeds(&out, &cluster, &fetch_frames).await;
        written
    });
    eprintln!("wrote {written} seed files under {}", out.display());
}

/// Varied records: null keys every 5th, null values every 7th, headers (one with a null value)
/// every 3rd, values of 0 to a few hundred bytes, compressible and not.
fn records(tag: &str, n: usize) -> Vec<Outgoing> {
    (0..n)
        .map(|i| Outgoing {
            key: (i % 5 != 0).then(|| format!("{tag}-key-{i}").into_bytes()),
            value: (i % 7 != 3).then(|| {
                let mut v = format!("{tag}-value-{i}-").into_bytes();
                v.extend(std::iter::repeat_n(b'a' + (i % 26) as u8, i * 7 % 300));
                v.extend((0..i % 40).map(|j| (i * 31 + j * 17) as u8));
                v
            }),
            headers: if i % 3 == 0 {
                vec![
                    ("trace".into(), Some(format!("{i:08x}").into_bytes())),
                    ("null-header".into(), None),
                ]
            } else {
                vec![]
            },
            timestamp: Some(1_700_000_000_000 + i as i64 * 1_000),
        })
        .collect()
}

/// Produces every topic with librdkafka; returns the topic names.
fn produce_all(bootstrap: &str) -> Vec<String> {
    let mut topics = Vec::new();
    for codec in ["none", "gzip", "snappy", "lz4", "zstd"] {
        let topic = format!("codec-{codec}");
        reference::create_topic(bootstrap, &topic, 1);
        reference::produce(
            bootstrap,
            &topic,
            0,
            &records(codec, 150),
            &[
                ("compression.codec", codec),
                ("linger.ms", "20"),
                ("batch.num.messages", "40"),
            ],
        );
        topics.push(topic);
    }

    let topic = "idempotent".to_string();
    reference::create_topic(bootstrap, &topic, 1);
    reference::produce(
        bootstrap,
        &topic,
        0,
        &records("idem", 100),
        &[
            ("enable.idempotence", "true"),
            ("compression.codec", "lz4"),
            ("linger.ms", "20"),
            ("batch.num.messages", "30"),
        ],
    );
    topics.push(topic);

    let topic = "transactional".to_string();
    reference::create_topic(bootstrap, &topic, 1);
    produce_transactions(bootstrap, &topic);
    topics.push(topic);
    topics
}

/// Three transactions: committed (uncompressed), aborted, committed again; each ends in a
/// control batch.
fn produce_transactions(bootstrap: &str, topic: &str) {
    let producer: ThreadedProducer<DefaultProducerContext> = reference::base_config(bootstrap)
        .set("transactional.id", strait_tests::unique("fuzz-txn"))
        .set("enable.idempotence", "true")
        .set("linger.ms", "10")
        .create()
        .expect("transactional producer");
    producer
        .init_transactions(Duration::from_secs(30))
        .expect("init transactions");
    for (t, commit) in [(0, true), (1, false), (2, true)] {
        producer.begin_transaction().expect("begin transaction");
        for r in records(&format!("txn{t}"), 20) {
            let mut rec: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(topic).partition(0);
            if let Some(k) = &r.key {
                rec = rec.key(k);
            }
            if let Some(v) = &r.value {
                rec = rec.payload(v);
            }
            producer
                .send(rec)
                .map_err(|(e, _)| e)
                .expect("transactional send");
        }
        // Send before ending: aborting purges records still queued, and the aborted data must
        // reach the log for the seeds to hold it.
        producer
            .flush(Duration::from_secs(30))
            .expect("flush transaction");
        if commit {
            producer
                .commit_transaction(Duration::from_secs(30))
                .expect("commit transaction");
        } else {
            producer
                .abort_transaction(Duration::from_secs(30))
                .expect("abort transaction");
        }
    }
}

/// One fetch's data for a partition.
struct Fetched {
    records: Bytes,
    high_watermark: i64,
    last_stable_offset: i64,
    log_start_offset: i64,
    aborted: Vec<(i64, i64)>,
}

/// Reads partition 0 of `topic` from offset 0 to the high watermark in fetches of at most
/// [`PARTITION_MAX_BYTES`] (a limit the broker may exceed to return whole batches).
async fn fetch_topic(
    cluster: &Arc<Cluster>,
    topic: &str,
    isolation: IsolationLevel,
) -> Vec<Fetched> {
    let leader = cluster.leader(topic, 0).await.expect("leader");
    let config = FetcherConfig {
        max_wait: Duration::from_millis(100),
        partition_max_bytes: PARTITION_MAX_BYTES,
        isolation,
        ..FetcherConfig::default()
    };
    let mut offset = 0;
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(Instant::now() < deadline, "fetching {topic} timed out");
        let position = FetchPosition {
            topic: Arc::from(topic),
            partition: 0,
            offset,
            leader_epoch: -1,
        };
        let parts = fetch_once(cluster, &leader, &config, &[position])
            .await
            .expect("fetch");
        let Some(p) = parts.into_iter().find(|p| p.partition == 0) else {
            continue;
        };
        if let Some(e) = p.error {
            panic!("fetch {topic} at {offset}: {e:?}");
        }
        let next = split_batches(p.records.clone())
            .map(|b| b.expect("librdkafka's batches parse").next_offset())
            .last();
        eprintln!(
            "{topic} ({isolation:?}): {} bytes at offset {offset}, high watermark {}, last \
             stable offset {}, {} aborted transactions",
            p.records.len(),
            p.high_watermark,
            p.last_stable_offset,
            p.aborted.len()
        );
        if let Some(next) = next {
            offset = next;
            out.push(Fetched {
                records: p.records,
                high_watermark: p.high_watermark,
                last_stable_offset: p.last_stable_offset,
                log_start_offset: p.log_start_offset,
                aborted: p
                    .aborted
                    .iter()
                    .map(|a| (a.producer_id, a.first_offset))
                    .collect(),
            });
        }
        let end = match isolation {
            IsolationLevel::ReadUncommitted => p.high_watermark,
            IsolationLevel::ReadCommitted => p.last_stable_offset,
        };
        if offset >= end && !out.is_empty() {
            return out;
        }
    }
}

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    std::fs::create_dir_all(dir).expect("create seed directory");
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// Raw fetched bytes for every record target, and `record_decode`'s records-section layout
/// (attributes byte, count byte, records) for the first batches.
fn write_record_seeds(out: &Path, topic: &str, fetches: &[Fetched]) -> usize {
    let mut n = 0;
    for (i, f) in fetches.iter().enumerate() {
        for target in RECORD_TARGETS {
            write(
                &out.join(target),
                &format!("librdkafka-{topic}-{i}"),
                &f.records,
            );
            n += 1;
        }
    }
    let batches: Vec<RecordBatch> = fetches
        .iter()
        .flat_map(|f| split_batches(f.records.clone()))
        .map(|b| b.expect("librdkafka's batches parse"))
        .collect();
    // The first data batches and, for the transactional topic, the first control batch.
    let mut chosen: Vec<&RecordBatch> = batches
        .iter()
        .filter(|b| !b.is_control())
        .take(SECTIONS_PER_TOPIC)
        .collect();
    chosen.extend(batches.iter().find(|b| b.is_control()));
    for (i, b) in chosen.into_iter().enumerate() {
        let bytes = b.as_bytes();
        let mut seed = vec![
            b.attributes() as u8,
            u8::try_from(b.record_count()).unwrap_or(u8::MAX),
        ];
        seed.extend_from_slice(&bytes[BATCH_HEADER_LEN..]);
        write(
            &out.join("record_decode"),
            &format!("librdkafka-{topic}-section-{i}"),
            &seed,
        );
        n += 1;
    }
    n
}

/// Encodes a whole response frame: size, correlation id, header tagged fields when the
/// version's header is v1, body.
fn try_frame<M: Encodable + HeaderVersion>(
    correlation_id: i32,
    version: i16,
    body: &M,
) -> Result<Bytes, String> {
    let mut buf = BytesMut::new();
    buf.put_i32(0);
    buf.put_i32(correlation_id);
    if M::header_version(version) >= 1 {
        buf.put_u8(0); // no tagged fields
    }
    body.encode(&mut buf, version)
        .map_err(|e| format!("encode response v{version}: {e}"))?;
    let size = i32::try_from(buf.len() - 4).map_err(|_| "frame over 2 GiB".to_string())?;
    buf[..4].copy_from_slice(&size.to_be_bytes());
    Ok(buf.freeze())
}

/// [`try_frame`] for messages built here, which always encode.
fn frame<M: Encodable + HeaderVersion>(correlation_id: i32, version: i16, body: &M) -> Bytes {
    try_frame(correlation_id, version, body).unwrap_or_else(|e| panic!("{e}"))
}

/// Aborted transactions as a read_committed Fetch lists them (producer id, first offset), derived
/// from the ABORT markers in `records`: tansu does not fill in the list.
fn aborted_from_markers(records: &Bytes) -> Vec<(i64, i64)> {
    let mut open: Vec<(i64, i64)> = Vec::new();
    let mut aborted = Vec::new();
    for batch in split_batches(records.clone()).flatten() {
        if !batch.is_transactional() {
            continue;
        }
        let pid = batch.producer_id();
        match batch.control_type() {
            Ok(None) => {
                if !open.iter().any(|&(p, _)| p == pid) {
                    open.push((pid, batch.base_offset()));
                }
            }
            Ok(Some(kind)) => {
                if let Some(i) = open.iter().position(|&(p, _)| p == pid) {
                    let txn = open.remove(i);
                    if kind == ControlType::Abort {
                        aborted.push(txn);
                    }
                }
            }
            Err(_) => {}
        }
    }
    aborted
}

/// A Fetch v12 response carrying one fetch of librdkafka's records.
fn fetch_response_frame(topic: &str, f: &Fetched) -> Bytes {
    let aborted = if f.aborted.is_empty() {
        aborted_from_markers(&f.records)
    } else {
        f.aborted.clone()
    };
    let partition = PartitionData::default()
        .with_partition_index(0)
        .with_high_watermark(f.high_watermark)
        .with_last_stable_offset(f.last_stable_offset)
        .with_log_start_offset(f.log_start_offset)
        .with_aborted_transactions(Some(
            aborted
                .iter()
                .map(|&(pid, first)| {
                    AbortedTransaction::default()
                        .with_producer_id(ProducerId(pid))
                        .with_first_offset(first)
                })
                .collect(),
        ))
        .with_preferred_read_replica(BrokerId(-1))
        .with_records(Some(f.records.clone()));
    let body = FetchResponse::default()
        .with_session_id(0)
        .with_responses(vec![FetchableTopicResponse::default()
            .with_topic(TopicName(StrBytes::from_string(topic.to_owned())))
            .with_partitions(vec![partition])]);
    frame(12, 12, &body)
}

fn str_bytes(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_owned())
}

/// Populated control-path responses at the versions Strait uses.
fn control_frames(metadata: Option<Bytes>) -> Vec<(&'static str, Bytes)> {
    let api_versions = ApiVersionsResponse::default()
        .with_api_keys(
            [
                (ApiKey::Produce, 3, 12),
                (ApiKey::Fetch, 4, 17),
                (ApiKey::Metadata, 0, 12),
                (ApiKey::ApiVersions, 0, 4),
                (ApiKey::FindCoordinator, 0, 6),
                (ApiKey::OffsetFetch, 0, 9),
            ]
            .into_iter()
            .map(|(k, min, max)| {
                ApiVersion::default()
                    .with_api_key(k as i16)
                    .with_min_version(min)
                    .with_max_version(max)
            })
            .collect(),
        )
        .with_throttle_time_ms(0);
    let produce = ProduceResponse::default().with_responses(vec![TopicProduceResponse::default()
        .with_name(TopicName(str_bytes("codec-zstd")))
        .with_partition_responses(vec![
            PartitionProduceResponse::default()
                .with_index(0)
                .with_base_offset(150)
                .with_log_append_time_ms(-1)
                .with_log_start_offset(0),
            PartitionProduceResponse::default()
                .with_index(1)
                .with_error_code(6) // NOT_LEADER_OR_FOLLOWER
                .with_base_offset(-1)
                .with_error_message(Some(str_bytes("not the leader"))),
        ])]);
    let find_coordinator =
        FindCoordinatorResponse::default().with_coordinators(vec![Coordinator::default()
            .with_key(str_bytes("strait-group"))
            .with_node_id(BrokerId(1))
            .with_host(str_bytes("127.0.0.1"))
            .with_port(9092)]);
    let offset_fetch =
        OffsetFetchResponse::default().with_groups(vec![OffsetFetchResponseGroup::default()
            .with_group_id(GroupId(str_bytes("strait-group")))
            .with_topics(vec![OffsetFetchResponseTopics::default()
                .with_name(TopicName(str_bytes("transactional")))
                .with_partitions(vec![
                    OffsetFetchResponsePartitions::default()
                        .with_partition_index(0)
                        .with_committed_offset(42)
                        .with_committed_leader_epoch(3)
                        .with_metadata(Some(str_bytes(""))),
                    OffsetFetchResponsePartitions::default()
                        .with_partition_index(1)
                        .with_committed_offset(-1)
                        .with_committed_leader_epoch(-1)
                        .with_metadata(None),
                ])])]);
    let mut out = vec![
        ("api-versions-v3", frame(1, 3, &api_versions)),
        ("produce-v9", frame(2, 9, &produce)),
        ("find-coordinator-v4", frame(3, 4, &find_coordinator)),
        ("offset-fetch-v8", frame(4, 8, &offset_fetch)),
    ];
    if let Some(m) = metadata {
        out.push(("metadata-v12", m));
    }
    out
}

/// The broker's own Metadata answer, re-encoded as v12 (`None` if it cannot be).
async fn metadata_frame(cluster: &Cluster) -> Option<Bytes> {
    let req = MetadataRequest::default().with_topics(None);
    let (_, resp) = cluster
        .send_any(&req)
        .await
        .map_err(|e| eprintln!("no Metadata seed: {e}"))
        .ok()?;
    try_frame(5, 12, &resp)
        .map_err(|e| eprintln!("no Metadata seed: tansu's answer does not {e}"))
        .ok()
}

/// `frame_decode` seeds: each response alone, arriving at once, and all of them back to back,
/// arriving in chunks.
async fn write_frame_seeds(out: &Path, cluster: &Cluster, fetch_frames: &[Bytes]) -> usize {
    let dir = out.join("frame_decode");
    let frames = control_frames(metadata_frame(cluster).await);
    let mut n = 0;
    for (i, f) in fetch_frames.iter().enumerate() {
        let mut seed = FRAME_WHOLE.to_vec();
        seed.extend_from_slice(f);
        write(&dir, &format!("librdkafka-fetch-v12-{i}"), &seed);
        n += 1;
    }
    let mut all = FRAME_CHUNKED.to_vec();
    for (name, f) in &frames {
        let mut seed = FRAME_WHOLE.to_vec();
        seed.extend_from_slice(f);
        write(&dir, &format!("librdkafka-{name}"), &seed);
        all.extend_from_slice(f);
        n += 1;
    }
    // The transactional topic's fetch (control batches) after the control responses.
    if let Some(f) = fetch_frames.last() {
        all.extend_from_slice(f);
    }
    write(&dir, "librdkafka-all-chunked", &all);
    n + 1
}
