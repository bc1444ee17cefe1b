//! protocol-client against real brokers (Apache Kafka and tansu, each test on both), with
//! librdkafka as the independent reference:
//! what our producer writes librdkafka reads back identically, what librdkafka writes our
//! fetcher returns byte-for-byte, and fetched batches appended elsewhere stay identical.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use protocol_client::cluster::{ClientConfig, Cluster};
use protocol_client::fetcher::{Fetcher, FetcherConfig, IsolationLevel};
use protocol_client::producer::records::ProducerRecord;
use protocol_client::producer::{Producer, ProducerConfig};
use protocol_client::record::{
    split_batches, Compression, DecodeLimits, RecordBatch, RecordHeader,
};
use strait_tests::reference::{self, Outgoing, RefRecord};
use strait_tests::{BrokerKind, TestCluster};

async fn cluster(b: &dyn TestCluster) -> Arc<Cluster> {
    Cluster::connect(ClientConfig::new(&b.bootstrap()))
        .await
        .expect("connect")
}

fn sample(n: usize) -> Vec<Outgoing> {
    (0..n)
        .map(|i| Outgoing {
            key: if i % 5 == 0 {
                None
            } else {
                Some(format!("key-{i}").into_bytes())
            },
            value: if i % 7 == 3 {
                None
            } else {
                Some(format!("value-{i}-{}", "x".repeat(i % 50)).into_bytes())
            },
            headers: if i % 3 == 0 {
                vec![
                    ("h1".into(), Some(vec![i as u8, 1, 2])),
                    ("h-null".into(), None),
                ]
            } else {
                vec![]
            },
            timestamp: Some(1_700_000_000_000 + i as i64 * 1000),
        })
        .collect()
}

fn to_ref(o: &Outgoing, offset: i64) -> RefRecord {
    RefRecord {
        offset,
        timestamp: o.timestamp,
        key: o.key.clone(),
        value: o.value.clone(),
        headers: o.headers.clone(),
    }
}

/// Our fetcher reading everything written (read_uncommitted), with the default sessions.
fn reading_fetcher(cluster: &Arc<Cluster>) -> Fetcher {
    Fetcher::new(
        cluster.clone(),
        FetcherConfig {
            max_wait: Duration::from_millis(100),
            isolation: IsolationLevel::ReadUncommitted,
            ..FetcherConfig::default()
        },
    )
}

/// Fetches every batch of a partition up to `end` records with our fetcher.
async fn fetch_all(
    cluster: &Arc<Cluster>,
    topic: &str,
    partition: i32,
    until: i64,
) -> Vec<RecordBatch> {
    let mut f = reading_fetcher(cluster);
    f.assign(topic, partition, 0);
    let mut out = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while f.position(topic, partition).unwrap() < until {
        assert!(
            std::time::Instant::now() < deadline,
            "fetch timed out at {:?}",
            f.position(topic, partition)
        );
        for p in f.poll().await.expect("poll") {
            for b in split_batches(p.records) {
                let b = b.expect("valid batch");
                b.verify_crc().expect("crc");
                if b.next_offset() > p.fetch_offset {
                    out.push(b);
                }
            }
        }
    }
    out
}

fn decode(batches: &[RecordBatch]) -> Vec<RefRecord> {
    let mut out = Vec::new();
    for b in batches {
        if b.is_control() {
            continue;
        }
        for r in b.records(&DecodeLimits::default()).expect("records") {
            let r = r.expect("record");
            out.push(RefRecord {
                offset: r.offset(b.base_offset()),
                timestamp: Some(r.timestamp(b.base_timestamp())),
                key: r.key.map(|k| k.to_vec()),
                value: r.value.map(|v| v.to_vec()),
                headers: r
                    .headers
                    .iter()
                    .map(|h| {
                        (
                            String::from_utf8(h.key.to_vec()).unwrap(),
                            h.value.as_ref().map(|v| v.to_vec()),
                        )
                    })
                    .collect(),
            });
        }
    }
    out
}

async fn our_producer_writes_what_librdkafka_reads(kind: BrokerKind) {
    strait_tests::init_tracing();
    let broker = strait_tests::start_one(kind, "client-produce");
    let cluster = cluster(&*broker).await;
    for codec in [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ] {
        let topic = strait_tests::unique(&format!("ours-{}", codec.name()));
        reference::blocking(|| reference::create_topic(&broker.bootstrap(), &topic, 2));
        let producer = Producer::new(
            cluster.clone(),
            ProducerConfig {
                compression: codec,
                linger: Duration::from_millis(20),
                batch_bytes: 4096,
                ..ProducerConfig::default()
            },
        )
        .await
        .expect("producer");
        let recs = sample(200);
        let mut pending = Vec::new();
        for r in &recs {
            let rec = ProducerRecord {
                topic: topic.clone(),
                partition: Some(1),
                key: r.key.clone().map(Bytes::from),
                value: r.value.clone().map(Bytes::from),
                headers: r
                    .headers
                    .iter()
                    .map(|(k, v)| RecordHeader::new(k, v.as_deref()))
                    .collect(),
                timestamp: r.timestamp,
            };
            pending.push(producer.send_nowait(rec).await.expect("queue"));
        }
        let mut offsets = Vec::new();
        for p in pending {
            let md = p.await.expect("ack channel").expect("acked");
            assert_eq!(md.partition, 1);
            offsets.push(md.offset);
        }
        assert_eq!(
            offsets,
            (0..200).collect::<Vec<i64>>(),
            "{codec}: offsets reported in order"
        );
        let got = reference::blocking(|| {
            reference::consume(
                &broker.bootstrap(),
                &topic,
                1,
                0,
                200,
                Duration::from_secs(30),
            )
        });
        let want: Vec<_> = recs
            .iter()
            .enumerate()
            .map(|(i, r)| to_ref(r, i as i64))
            .collect();
        assert_eq!(got, want, "{codec}: librdkafka reads what we wrote");
        // Idempotence fields are ours.
        let batches = fetch_all(&cluster, &topic, 1, 200).await;
        let (pid, epoch) = producer.producer_id_and_epoch();
        assert!(pid >= 0);
        let mut seq = 0;
        for b in &batches {
            assert_eq!(
                (b.producer_id(), b.producer_epoch(), b.base_sequence()),
                (pid, epoch, seq)
            );
            assert_eq!(b.compression().unwrap(), codec);
            seq += b.record_count();
        }
    }
}

async fn librdkafka_writes_our_fetcher_reads_and_raw_append_forwards_identically(kind: BrokerKind) {
    strait_tests::init_tracing();
    let broker = strait_tests::start_one(kind, "client-fetch");
    let cluster = cluster(&*broker).await;
    for codec in ["none", "gzip", "snappy", "lz4", "zstd"] {
        let src = strait_tests::unique(&format!("ref-{codec}"));
        let dst = strait_tests::unique(&format!("fwd-{codec}"));
        reference::blocking(|| {
            reference::create_topic(&broker.bootstrap(), &src, 1);
            reference::create_topic(&broker.bootstrap(), &dst, 1);
        });
        let recs = sample(300);
        let idempotent = if codec == "zstd" { "true" } else { "false" };
        reference::blocking(|| {
            reference::produce(
                &broker.bootstrap(),
                &src,
                0,
                &recs,
                &[
                    ("compression.codec", codec),
                    ("batch.num.messages", "37"),
                    ("enable.idempotence", idempotent),
                ],
            )
        });
        let batches = fetch_all(&cluster, &src, 0, 300).await;
        assert!(batches.len() > 1, "{codec}: several batches");
        let want: Vec<_> = recs
            .iter()
            .enumerate()
            .map(|(i, r)| to_ref(r, i as i64))
            .collect();
        assert_eq!(
            decode(&batches),
            want,
            "{codec}: our fetch + decode equals what librdkafka wrote"
        );
        // Forward the fetched batches, as they are, to another topic.
        let producer = Producer::new(
            cluster.clone(),
            ProducerConfig {
                idempotent: false,
                ..ProducerConfig::default()
            },
        )
        .await
        .unwrap();
        let acks: Vec<_> = batches
            .iter()
            .map(|b| producer.append(&dst, 0, b.clone()))
            .collect();
        let mut expect_base = 0;
        for (ack, b) in acks.into_iter().zip(&batches) {
            let ack = ack.await.expect("append acked");
            assert_eq!(
                ack.base_offset, expect_base,
                "{codec}: exact downstream offset"
            );
            expect_base += i64::from(b.last_offset_delta()) + 1;
        }
        let forwarded = fetch_all(&cluster, &dst, 0, 300).await;
        assert_eq!(forwarded.len(), batches.len());
        for (a, b) in batches.iter().zip(&forwarded) {
            b.verify_crc().expect("forwarded batch has a valid CRC");
            // The records are always the same bytes.
            assert_eq!(
                a.as_bytes()[61..],
                b.as_bytes()[61..],
                "{codec}: records byte-identical"
            );
            if a.producer_id() == -1 {
                // Nothing to rewrite: identical from the CRC on.
                assert_eq!(
                    a.as_bytes()[17..],
                    b.as_bytes()[17..],
                    "{codec}: forwarded batch is byte-identical"
                );
            } else {
                // An idempotent source's producer fields are blanked for a non-idempotent
                // target producer; everything else in the header is kept.
                assert_eq!(
                    (b.producer_id(), b.producer_epoch(), b.base_sequence()),
                    (-1, -1, -1)
                );
                assert_eq!(
                    a.as_bytes()[21..43],
                    b.as_bytes()[21..43],
                    "{codec}: attributes..maxTimestamp kept"
                );
                assert_eq!(
                    a.as_bytes()[57..61],
                    b.as_bytes()[57..61],
                    "{codec}: record count kept"
                );
            }
        }
        let got = reference::blocking(|| {
            reference::consume(
                &broker.bootstrap(),
                &dst,
                0,
                0,
                300,
                Duration::from_secs(30),
            )
        });
        assert_eq!(
            got, want,
            "{codec}: librdkafka reads the forwarded topic identically"
        );
    }
}

/// A batch Strait rebuilds (resuming inside a batch) is accepted by a real broker and read back
/// identically by librdkafka.
async fn rebuilt_batches_are_accepted_and_read_back_identically(kind: BrokerKind) {
    strait_tests::init_tracing();
    let broker = strait_tests::start_one(kind, "client-rebuild");
    let cluster = cluster(&*broker).await;
    for codec in ["none", "gzip", "snappy", "lz4", "zstd"] {
        let src = strait_tests::unique(&format!("rb-src-{codec}"));
        let dst = strait_tests::unique(&format!("rb-dst-{codec}"));
        let recs = sample(60);
        reference::blocking(|| {
            reference::create_topic(&broker.bootstrap(), &src, 1);
            reference::create_topic(&broker.bootstrap(), &dst, 1);
            reference::produce(
                &broker.bootstrap(),
                &src,
                0,
                &recs,
                &[
                    ("compression.codec", codec),
                    ("batch.num.messages", "60"),
                    ("linger.ms", "50"),
                ],
            );
        });
        let batches = fetch_all(&cluster, &src, 0, 60).await;
        let mut raw = bytes::BytesMut::new();
        for b in &batches {
            raw.extend_from_slice(b.as_bytes());
        }
        // Resume at offset 17: the batch holding 17 is rebuilt with records 17.. only.
        let steps = replicator::flow::plan::plan(
            raw.freeze(),
            17,
            vec![],
            IsolationLevel::ReadUncommitted,
            &DecodeLimits::default(),
        )
        .unwrap();
        assert!(
            matches!(
                steps.first(),
                Some(replicator::flow::plan::Step::Forward { rebuilt: true, .. })
            ),
            "{codec}: first step is a rebuild"
        );
        let producer = Producer::new(cluster.clone(), ProducerConfig::default())
            .await
            .unwrap();
        let mut acks = Vec::new();
        for s in steps {
            if let replicator::flow::plan::Step::Forward { batch, .. } = s {
                acks.push(producer.append(&dst, 0, batch));
            }
        }
        for a in acks {
            a.await.expect("broker accepts the rebuilt batch");
        }
        let got = reference::blocking(|| {
            reference::consume(&broker.bootstrap(), &dst, 0, 0, 43, Duration::from_secs(30))
        });
        let want: Vec<_> = recs[17..]
            .iter()
            .enumerate()
            .map(|(i, r)| to_ref(r, i as i64))
            .collect();
        assert_eq!(
            got, want,
            "{codec}: librdkafka reads records 17.. identically"
        );
    }
}

/// A killed writer's appends still queued on a broker connection are written after it died.
/// A successor that continues the last writer's identity and sequence (what a resumed
/// partition does, `Producer::continue_identity`) makes Apache Kafka tell them apart: a late
/// append after ours is answered as a duplicate and not written; one that landed first makes
/// ours a duplicate of it (same sequences, same records); one that landed first with other
/// batch boundaries makes ours fail as "taken" (not renumbered, not written); one landing
/// after ours with other boundaries is refused. librdkafka reads every record exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_successor_continuing_the_last_writers_sequence_is_never_written_twice() {
    use replicator::flow::resume::Continuation;
    strait_tests::init_tracing();
    let broker = strait_tests::start_one(BrokerKind::Kafka, "client-continue");
    let cluster = cluster(&*broker).await;
    let recs = sample(40);
    // The same records in batches of 5 and of 10 (Strait may merge small batches).
    let (by5, by10) = (
        strait_tests::unique("cont-src5"),
        strait_tests::unique("cont-src10"),
    );
    reference::blocking(|| {
        for (t, n) in [(&by5, "5"), (&by10, "10")] {
            reference::create_topic(&broker.bootstrap(), t, 1);
            reference::produce(
                &broker.bootstrap(),
                t,
                0,
                &recs,
                &[("batch.num.messages", n), ("linger.ms", "200")],
            );
        }
    });
    let by5 = fetch_all(&cluster, &by5, 0, 40).await;
    let by10 = fetch_all(&cluster, &by10, 0, 40).await;
    assert!(
        by5.iter().all(|b| b.record_count() == 5) && by10.iter().all(|b| b.record_count() == 10),
        "batches of 5 and 10: {:?} {:?}",
        by5.iter().map(|b| b.record_count()).collect::<Vec<_>>(),
        by10.iter().map(|b| b.record_count()).collect::<Vec<_>>()
    );
    let config = ProducerConfig {
        stop_partition_on_failure: true,
        ..ProducerConfig::default()
    };
    let last_writer =
        |batches: &[RecordBatch]| Continuation::after(batches.last().unwrap()).unwrap();
    let want = |n: usize| -> Vec<RefRecord> {
        recs[..n]
            .iter()
            .enumerate()
            .map(|(i, r)| to_ref(r, i as i64))
            .collect()
    };
    for case in [
        "late after ours",
        "late before ours",
        "late before ours, other boundaries",
        "late after ours, other boundaries",
    ] {
        let dst = strait_tests::unique("cont-dst");
        reference::blocking(|| reference::create_topic(&broker.bootstrap(), &dst, 1));
        // The predecessor wrote records 0..10 and is killed with more in flight.
        let old = Producer::new(cluster.clone(), config.clone())
            .await
            .unwrap();
        for b in &by5[..2] {
            old.append(&dst, 0, b.clone())
                .await
                .expect("predecessor's append");
        }
        // The successor resumes after record 9, continuing the log's last writer.
        let written = fetch_all(&cluster, &dst, 0, 10).await;
        let c = last_writer(&written);
        assert_eq!(
            (c.producer_id, c.epoch, c.next_sequence),
            (
                old.producer_id_and_epoch().0,
                old.producer_id_and_epoch().1,
                10
            )
        );
        let new = Producer::new(cluster.clone(), config.clone())
            .await
            .unwrap();
        assert_ne!(new.producer_id_and_epoch().0, c.producer_id);
        assert!(new.continue_identity(&dst, 0, c.producer_id, c.epoch, c.next_sequence));
        match case {
            "late after ours" => {
                let ours = new.append(&dst, 0, by5[2].clone()).await.expect("ours");
                assert_eq!(ours.base_offset, 10);
                // The predecessor's queued append lands now: a duplicate, not written.
                let late = old.append(&dst, 0, by5[2].clone()).await.expect("late");
                assert_eq!(late.base_offset, 10, "answered as the duplicate of ours");
                for b in &by5[3..] {
                    new.append(&dst, 0, b.clone()).await.expect("ours");
                }
            }
            "late before ours" => {
                let late = old.append(&dst, 0, by5[2].clone()).await.expect("late");
                assert_eq!(late.base_offset, 10);
                let ours = new.append(&dst, 0, by5[2].clone()).await.expect("ours");
                assert_eq!(
                    ours.base_offset, 10,
                    "ours answered as the duplicate of the late one"
                );
                for b in &by5[3..] {
                    new.append(&dst, 0, b.clone()).await.expect("ours");
                }
            }
            "late after ours, other boundaries" => {
                let ours = new.append(&dst, 0, by5[2].clone()).await.expect("ours");
                assert_eq!(ours.base_offset, 10);
                // The predecessor had merged records 10..20 into one batch, sequences 10..19
                // (sent as a dead process's request is: once, under its identity).
                let late = Producer::new(cluster.clone(), config.clone())
                    .await
                    .unwrap();
                assert!(late.continue_identity(&dst, 0, c.producer_id, c.epoch, c.next_sequence));
                let refused = late.append(&dst, 0, by10[1].clone()).await;
                assert!(
                    refused.is_err(),
                    "the late merged batch is refused: {refused:?}"
                );
                for b in &by5[3..] {
                    new.append(&dst, 0, b.clone()).await.expect("ours");
                }
            }
            _ => {
                // The predecessor had merged records 10..20 into one batch.
                let late = old.append(&dst, 0, by10[1].clone()).await.expect("late");
                assert_eq!(late.base_offset, 10);
                let err = new
                    .append(&dst, 0, by5[2].clone())
                    .await
                    .expect_err("the sequence is taken");
                assert!(
                    matches!(err, protocol_client::Error::Producer(ref m) if m.contains("taken")),
                    "{err}"
                );
                // The partition stopped: nothing after it is written either.
                assert!(new.append(&dst, 0, by5[3].clone()).await.is_err());
                // A successor that reads the log again continues after record 19.
                let written = fetch_all(&cluster, &dst, 0, 20).await;
                let c = last_writer(&written);
                assert_eq!(c.next_sequence, 20);
                let next = Producer::new(cluster.clone(), config.clone())
                    .await
                    .unwrap();
                assert!(next.continue_identity(&dst, 0, c.producer_id, c.epoch, c.next_sequence));
                for b in &by5[4..] {
                    next.append(&dst, 0, b.clone()).await.expect("ours");
                }
            }
        }
        let got = reference::blocking(|| {
            reference::consume(&broker.bootstrap(), &dst, 0, 0, 40, Duration::from_secs(30))
        });
        assert_eq!(got, want(40), "{case}: every record exactly once, in order");
        let (_, high) = reference::blocking(|| reference::watermarks(&broker.bootstrap(), &dst, 0));
        assert_eq!(high, 40, "{case}: nothing else written");
    }
}

/// Every record of `topic`'s partitions `0..n` fetched by `f` until each reaches `ends`,
/// decoded, per partition.
async fn poll_until(f: &mut Fetcher, topic: &str, ends: &[i64]) -> Vec<Vec<RefRecord>> {
    let mut got = vec![Vec::new(); ends.len()];
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while (0..ends.len()).any(|p| f.position(topic, p as i32).unwrap() < ends[p]) {
        assert!(std::time::Instant::now() < deadline, "fetch timed out");
        for fp in f.poll().await.expect("poll") {
            let batches: Vec<RecordBatch> = split_batches(fp.records)
                .map(|b| b.expect("valid batch"))
                .filter(|b| b.next_offset() > fp.fetch_offset)
                .collect();
            got[fp.partition as usize].extend(
                decode(&batches)
                    .into_iter()
                    .filter(|r| r.offset >= fp.fetch_offset),
            );
        }
    }
    got
}

/// The fetcher's incremental fetch sessions (KIP-227): after the first request a broker is
/// told only what changed, an idle round names no partition, and still every record arrives
/// exactly once — new records on a partition not named, a paused partition (forgotten) when it
/// is resumed, a partition sought back, and none of an unassigned one. librdkafka wrote them.
async fn fetch_sessions_name_only_what_changed_and_lose_nothing(kind: BrokerKind) {
    strait_tests::init_tracing();
    let broker = strait_tests::start_one(kind, "client-sessions");
    let cluster = cluster(&*broker).await;
    let topic = strait_tests::unique("sessions");
    let recs = sample(120);
    let produce = |p: i32, range: std::ops::Range<usize>| {
        reference::blocking(|| {
            reference::produce(
                &broker.bootstrap(),
                &topic,
                p,
                &recs[range],
                &[("linger.ms", "5")],
            )
        })
    };
    reference::blocking(|| reference::create_topic(&broker.bootstrap(), &topic, 4));
    for p in 0..4 {
        produce(p, 0..30);
    }
    let mut f = reading_fetcher(&cluster);
    for p in 0..4 {
        f.assign(&topic, p, 0);
    }
    // Records `range` at their offsets (each partition got the same records).
    let want = |range: std::ops::Range<usize>| -> Vec<RefRecord> {
        range.map(|i| to_ref(&recs[i], i as i64)).collect()
    };
    let got = poll_until(&mut f, &topic, &[30, 30, 30, 30]).await;
    for (p, got) in got.iter().enumerate() {
        assert_eq!(got, &want(0..30), "partition {p}");
    }
    // Idle rounds: once the positions are known to the broker, a request names nothing.
    for _ in 0..3 {
        assert!(f.poll().await.unwrap().iter().all(|p| p.records.is_empty()));
    }
    let sessions = f.sessions();
    let opened = sessions.iter().any(|&(_, open, _)| open);
    if kind == BrokerKind::Tansu && !opened {
        eprintln!(
            "client_broker: tansu opens no fetch session (session_id 0); full fetches are checked"
        );
    } else {
        assert!(
            sessions
                .iter()
                .all(|&(_, open, listed)| open && listed == 0),
            "idle requests name no partition: {sessions:?}"
        );
    }
    // New records on partition 1 (not named in the request that returns them).
    produce(1, 30..60);
    let got = poll_until(&mut f, &topic, &[30, 60, 30, 30]).await;
    assert_eq!(got[1], want(30..60));
    assert!(got[0].is_empty() && got[2].is_empty() && got[3].is_empty());
    // Partition 2 paused (forgotten by the session) while records arrive, then resumed;
    // partition 3 unassigned; partition 0 sought back to 10.
    f.pause(&topic, 2);
    f.unassign(&topic, 3);
    produce(2, 30..50);
    produce(3, 30..40);
    for _ in 0..3 {
        assert!(f.poll().await.unwrap().iter().all(|p| p.records.is_empty()));
    }
    f.resume(&topic, 2);
    f.seek(&topic, 0, 10);
    let got = poll_until(&mut f, &topic, &[30, 60, 50]).await;
    assert_eq!(got[0], want(10..30), "partition 0 again from 10");
    assert_eq!(got[2], want(30..50), "partition 2 after its pause");
    assert!(got[1].is_empty());
    // Nothing more, nothing of the unassigned partition.
    for _ in 0..3 {
        for p in f.poll().await.unwrap() {
            assert!(
                p.records.is_empty(),
                "{}/{} at {}",
                p.topic,
                p.partition,
                p.fetch_offset
            );
            assert_ne!(p.partition, 3);
        }
    }
}

/// Polls raced against a short timer in `select!` (as the replicator's loop does) while a
/// writer keeps producing: whatever answers are dropped with a cancelled poll, every record
/// arrives exactly once, in order, session or not.
async fn polls_cancelled_mid_flight_lose_and_repeat_nothing(kind: BrokerKind) {
    strait_tests::init_tracing();
    let broker = strait_tests::start_one(kind, "client-cancel");
    let cluster = cluster(&*broker).await;
    let recs = sample(400);
    for sessions in [true, false] {
        // A topic and a writer per pass, so that both race the writer.
        let topic = strait_tests::unique("cancel");
        reference::blocking(|| reference::create_topic(&broker.bootstrap(), &topic, 3));
        let bootstrap = broker.bootstrap();
        let (t2, r2) = (topic.clone(), recs.clone());
        let writer = std::thread::spawn(move || {
            for chunk in 0..20 {
                for p in 0..3 {
                    reference::produce(&bootstrap, &t2, p, &r2[chunk * 20..(chunk + 1) * 20], &[]);
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        let mut f = Fetcher::new(
            cluster.clone(),
            FetcherConfig {
                max_wait: Duration::from_millis(50),
                isolation: IsolationLevel::ReadUncommitted,
                sessions,
                ..FetcherConfig::default()
            },
        );
        for p in 0..3 {
            f.assign(&topic, p, 0);
        }
        let mut got = vec![Vec::new(); 3];
        let (mut cancelled, mut completed) = (0, 0);
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while (0..3).any(|p| f.position(&topic, p).unwrap() < 400) {
            assert!(
                std::time::Instant::now() < deadline,
                "stalled: {:?}",
                (0..3).map(|p| f.position(&topic, p)).collect::<Vec<_>>()
            );
            // A timer short enough to cut many polls off mid-flight.
            let timer = tokio::time::sleep(Duration::from_millis(if completed % 3 == 0 {
                1
            } else {
                30
            }));
            tokio::select! {
                r = f.poll() => {
                    completed += 1;
                    for fp in r.expect("poll") {
                        let batches: Vec<RecordBatch> = split_batches(fp.records)
                            .map(|b| b.expect("valid batch"))
                            .filter(|b| b.next_offset() > fp.fetch_offset)
                            .collect();
                        got[fp.partition as usize].extend(
                            decode(&batches).into_iter().filter(|r| r.offset >= fp.fetch_offset),
                        );
                    }
                }
                _ = timer => cancelled += 1,
            }
        }
        for (p, got) in got.iter().enumerate() {
            let want: Vec<RefRecord> = recs
                .iter()
                .enumerate()
                .map(|(i, r)| to_ref(r, i as i64))
                .collect();
            assert_eq!(
                got, &want,
                "sessions {sessions}: partition {p} exactly once, in order"
            );
        }
        assert!(
            cancelled > 0,
            "no poll was cancelled ({completed} completed)"
        );
        eprintln!("client_broker: sessions {sessions}: {completed} polls completed, {cancelled} cancelled");
        writer.join().unwrap();
    }
}

strait_tests::on_both_brokers!(
    polls_cancelled_mid_flight_lose_and_repeat_nothing,
    fetch_sessions_name_only_what_changed_and_lose_nothing,
    our_producer_writes_what_librdkafka_reads,
    librdkafka_writes_our_fetcher_reads_and_raw_append_forwards_identically,
    rebuilt_batches_are_accepted_and_read_back_identically,
);

/// `recs` written by librdkafka in batches of 5 records, fetched as batches.
async fn batches_of_five(
    broker: &dyn TestCluster,
    cluster: &Arc<Cluster>,
    recs: &[Outgoing],
) -> Vec<RecordBatch> {
    let src = strait_tests::unique("txn-src");
    reference::blocking(|| {
        reference::create_topic(&broker.bootstrap(), &src, 1);
        reference::produce(
            &broker.bootstrap(),
            &src,
            0,
            recs,
            &[("batch.num.messages", "5"), ("linger.ms", "200")],
        );
    });
    let b = fetch_all(cluster, &src, 0, recs.len() as i64).await;
    assert_eq!(b.len(), recs.len() / 5, "batches of 5");
    b
}

fn values(rs: Vec<RefRecord>) -> Vec<Option<Vec<u8>>> {
    rs.into_iter().map(|r| r.value).collect()
}

fn values_of(recs: &[Outgoing], ranges: &[std::ops::Range<usize>]) -> Vec<Option<Vec<u8>>> {
    ranges
        .iter()
        .flat_map(|r| recs[r.clone()].iter().map(|o| o.value.clone()))
        .collect()
}

/// A transactional producer against Apache Kafka, read back by librdkafka with
/// read_committed: committed transactions are seen, aborted ones are not, and a second
/// producer with the same transactional id fences the first (its open transaction is aborted,
/// its next append and commit fail with `Error::Fenced`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_commit_abort_and_fence_a_zombie() {
    use protocol_client::Error;
    strait_tests::init_tracing();
    let broker = strait_tests::start_one(BrokerKind::Kafka, "client-txn");
    let cluster = cluster(&*broker).await;
    let recs = sample(40);
    let b = batches_of_five(&*broker, &cluster, &recs).await;
    let dst = strait_tests::unique("txn-dst");
    reference::blocking(|| reference::create_topic(&broker.bootstrap(), &dst, 2));
    let txn_id = strait_tests::unique("txn");
    let config = ProducerConfig {
        transactional_id: Some(txn_id.clone()),
        transaction_timeout: Duration::from_secs(30),
        ..ProducerConfig::default()
    };
    let p1 = Producer::new(cluster.clone(), config.clone())
        .await
        .unwrap();
    // Committed: 0..10 to partition 0, 10..15 to partition 1.
    let acks = tokio::join!(
        p1.append(&dst, 0, b[0].clone()),
        p1.append(&dst, 0, b[1].clone()),
        p1.append(&dst, 1, b[2].clone()),
    );
    assert!(
        acks.0.is_ok() && acks.1.is_ok() && acks.2.is_ok(),
        "{acks:?}"
    );
    p1.commit_transaction().await.expect("commit");
    // Aborted: 15..20.
    p1.append(&dst, 0, b[3].clone()).await.expect("append");
    p1.abort_transaction().await.expect("abort");
    // Committed: 20..25.
    p1.append(&dst, 0, b[4].clone()).await.expect("append");
    p1.commit_transaction().await.expect("commit");
    // A commit with nothing in it.
    p1.commit_transaction().await.expect("empty commit");
    // Open when the successor starts: 25..30 is aborted by the fencing.
    p1.append(&dst, 0, b[5].clone()).await.expect("append");
    let p2 = Producer::new(cluster.clone(), config.clone())
        .await
        .unwrap();
    let zombie = p1.append(&dst, 0, b[6].clone()).await;
    assert!(
        matches!(zombie, Err(Error::Fenced { .. })),
        "the zombie's append: {zombie:?}"
    );
    let zombie_commit = p1.commit_transaction().await;
    assert!(
        matches!(zombie_commit, Err(Error::Fenced { .. })),
        "the zombie's commit: {zombie_commit:?}"
    );
    // The successor writes 35..40.
    p2.append(&dst, 0, b[7].clone()).await.expect("append");
    p2.commit_transaction().await.expect("commit");
    let want = |ranges: &[std::ops::Range<usize>]| values_of(&recs, ranges);
    let (got0, got1) = reference::blocking(|| {
        (
            reference::consume_committed(&broker.bootstrap(), &dst, 0, Duration::from_secs(30)),
            reference::consume_committed(&broker.bootstrap(), &dst, 1, Duration::from_secs(30)),
        )
    });
    assert_eq!(
        values(got0),
        want(&[0..10, 20..25, 35..40]),
        "partition 0, read_committed"
    );
    assert_eq!(
        values(got1),
        want(std::slice::from_ref(&(10..15))),
        "partition 1, read_committed"
    );
}

/// A batch of a transaction failing for good (MESSAGE_TOO_LARGE) spoils the transaction:
/// later appends are refused, the commit is refused, the abort discards what was written and
/// bumps the epoch, and the next transaction commits normally (librdkafka, read_committed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spoiled_transaction_can_only_be_aborted_and_the_next_one_commits() {
    strait_tests::init_tracing();
    let broker = strait_tests::start_one(BrokerKind::Kafka, "client-txn-spoiled");
    let cluster = cluster(&*broker).await;
    let recs = sample(20);
    let b = batches_of_five(&*broker, &cluster, &recs).await;
    // One record of 8 KiB: too large for the target topic.
    let big_src = strait_tests::unique("txn-big");
    let big_rec = vec![Outgoing::kv("big", vec![b'x'; 8192])];
    reference::blocking(|| {
        reference::create_topic(&broker.bootstrap(), &big_src, 1);
        reference::produce(&broker.bootstrap(), &big_src, 0, &big_rec, &[]);
    });
    let big = fetch_all(&cluster, &big_src, 0, 1).await.remove(0);
    let dst = strait_tests::unique("txn-small");
    reference::blocking(|| {
        reference::create_topic_with_configs(
            &broker.bootstrap(),
            &dst,
            1,
            &[("max.message.bytes", "4096")],
        )
    });
    let p = Producer::new(
        cluster.clone(),
        ProducerConfig {
            transactional_id: Some(strait_tests::unique("txn-spoiled")),
            ..ProducerConfig::default()
        },
    )
    .await
    .unwrap();
    p.append(&dst, 0, b[0].clone()).await.expect("append");
    let refused = p.append(&dst, 0, big).await;
    assert!(
        refused.is_err(),
        "an 8 KiB batch into a 4 KiB topic: {refused:?}"
    );
    let later = p.append(&dst, 0, b[1].clone()).await;
    assert!(
        later.is_err(),
        "an append to a spoiled transaction: {later:?}"
    );
    let commit = p.commit_transaction().await;
    assert!(
        commit
            .as_ref()
            .is_err_and(|e| e.to_string().contains("must be aborted")),
        "{commit:?}"
    );
    p.abort_transaction().await.expect("abort");
    p.append(&dst, 0, b[2].clone())
        .await
        .expect("append after the abort");
    p.commit_transaction().await.expect("commit");
    let got = reference::blocking(|| {
        reference::consume_committed(&broker.bootstrap(), &dst, 0, Duration::from_secs(30))
    });
    assert_eq!(
        values(got),
        values_of(&recs, std::slice::from_ref(&(10..15)))
    );
}

/// A producer under a lease (`send_gate`, how a scale-out member sends): nothing is sent before
/// the lease holds or after it ran out; a renewed lease sends what waited, in order; an abort
/// while requests wait fails them unsent (nothing lands).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leased_producer_sends_only_while_its_lease_holds() {
    use std::time::Instant;
    strait_tests::init_tracing();
    let broker = strait_tests::start_one(BrokerKind::Kafka, "client-lease");
    let cluster = cluster(&*broker).await;
    let recs = sample(20);
    let b = batches_of_five(&*broker, &cluster, &recs).await;
    let dst = strait_tests::unique("lease-dst");
    reference::blocking(|| reference::create_topic(&broker.bootstrap(), &dst, 1));
    let (lease, gate) = tokio::sync::watch::channel(None::<Instant>);
    let p = Producer::new(
        cluster.clone(),
        ProducerConfig {
            send_gate: Some(gate),
            ..ProducerConfig::default()
        },
    )
    .await
    .unwrap();
    let bootstrap = broker.bootstrap();
    let hw = |t: String| {
        let bs = bootstrap.clone();
        async move { reference::blocking(move || reference::watermarks(&bs, &t, 0).1) }
    };
    // No lease yet: held.
    let first = tokio::spawn({
        let (p, b0, dst) = (p.clone(), b[0].clone(), dst.clone());
        async move { p.append(&dst, 0, b0).await }
    });
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(!first.is_finished(), "sent before any lease");
    assert_eq!(hw(dst.clone()).await, 0);
    // Leased: sent.
    lease.send_replace(Some(Instant::now() + Duration::from_secs(30)));
    first.await.unwrap().expect("sent once leased");
    p.append(&dst, 0, b[1].clone())
        .await
        .expect("sent under the lease");
    // Run out: held again, then renewed: sent, in order.
    lease.send_replace(Some(Instant::now()));
    let held = tokio::spawn({
        let (p, b2, dst) = (p.clone(), b[2].clone(), dst.clone());
        async move { p.append(&dst, 0, b2).await }
    });
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(!held.is_finished(), "sent after the lease ran out");
    assert_eq!(hw(dst.clone()).await, 10);
    lease.send_replace(Some(Instant::now() + Duration::from_secs(30)));
    held.await.unwrap().expect("sent once renewed");
    // Run out, and aborted while waiting: fails, never sent.
    lease.send_replace(Some(Instant::now()));
    let dropped = tokio::spawn({
        let (p, b3, dst) = (p.clone(), b[3].clone(), dst.clone());
        async move { p.append(&dst, 0, b3).await }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    tokio::time::timeout(Duration::from_secs(10), p.abort())
        .await
        .expect("an abort does not wait for the lease");
    assert!(dropped.await.unwrap().is_err(), "failed unsent");
    lease.send_replace(Some(Instant::now() + Duration::from_secs(30)));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(hw(dst.clone()).await, 15, "nothing after the abort");
    let got = reference::blocking({
        let (bs, dst) = (broker.bootstrap(), dst.clone());
        move || reference::consume_committed(&bs, &dst, 0, Duration::from_secs(30))
    });
    assert_eq!(values(got), values_of(&recs, &[0..10, 10..15]));
}
