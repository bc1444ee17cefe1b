//! Strait's operational behaviour against two tansu clusters: crash and resume, clean stop,
//! topics created later, bidirectional flows, the identity policy, group offset sync and
//! transactional sources.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use protocol_client::admin::Admin;
use protocol_client::cluster::{ClientConfig, Cluster};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use replicator::config::{Config, SystemSecrets};
use replicator::formats::Checkpoint;
use replicator::internal::read_to_end;
use strait_tests::reference::{self, Outgoing};
use strait_tests::strait::{mm2_properties, StraitProcess};
use strait_tests::BrokerKind;

fn numbered(from: usize, to: usize) -> Vec<Outgoing> {
    (from..to)
        .map(|i| Outgoing::kv(format!("k{i}"), format!("v{i}")))
        .collect()
}

fn values(recs: &[reference::RefRecord]) -> Vec<String> {
    recs.iter()
        .map(|r| String::from_utf8(r.value.clone().unwrap()).unwrap())
        .collect()
}

async fn topics(bootstrap: &str) -> Vec<String> {
    let c = Cluster::connect(ClientConfig::new(bootstrap))
        .await
        .unwrap();
    let md = c.refresh_all_topics().await.unwrap();
    let mut v: Vec<_> = md.topics.keys().cloned().collect();
    v.sort();
    v
}

async fn eventually<F, Fut>(what: &str, timeout: Duration, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !f().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

async fn run_in_process(
    text: String,
) -> (
    tokio::sync::watch::Sender<bool>,
    tokio::task::JoinHandle<replicator::Result<()>>,
) {
    let config =
        Config::from_properties_str(&text, "test.properties", &SystemSecrets).expect("config");
    let (tx, rx) = tokio::sync::watch::channel(false);
    (tx, tokio::spawn(replicator::run::run(config, rx)))
}

async fn stop(
    tx: tokio::sync::watch::Sender<bool>,
    h: tokio::task::JoinHandle<replicator::Result<()>>,
) {
    let _ = tx.send(true);
    tokio::time::timeout(Duration::from_secs(20), h)
        .await
        .expect("stops in time")
        .unwrap()
        .expect("clean stop");
}

/// kill -9 in the middle of a stream, restart: every record exactly once.
async fn kill_9_mid_stream_then_restart_loses_and_duplicates_nothing(kind: BrokerKind) {
    strait_tests::init_tracing();
    let clusters = strait_tests::start_pair(kind, "crash");
    let (a, b) = (clusters[0].bootstrap(), clusters[1].bootstrap());
    reference::blocking(|| reference::create_topic(&a, "stream", 2));
    let dir = tempfile::tempdir().unwrap();
    let config = mm2_properties(&a, &b, "");
    let total = 6000usize;
    // A producer writing continuously in the background.
    let a2 = a.clone();
    let writer = std::thread::spawn(move || {
        for chunk in 0..30 {
            let from = chunk * total / 30;
            let to = (chunk + 1) * total / 30;
            for p in 0..2 {
                reference::produce(&a2, "stream", p, &numbered(from, to), &[("linger.ms", "1")]);
            }
            std::thread::sleep(Duration::from_millis(60));
        }
    });
    let mut first = StraitProcess::start(&config, dir.path());
    // Let it replicate part of the stream, then crash it.
    let b2 = b.clone();
    eventually("some records mirrored", Duration::from_secs(60), || {
        let b2 = b2.clone();
        async move { topics(&b2).await.contains(&"A.stream".to_string()) }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    first.kill9();
    writer.join().unwrap();
    let second = StraitProcess::start(&config, dir.path());
    for p in 0..2 {
        let want: Vec<String> = (0..total).map(|i| format!("v{i}")).collect();
        let got = reference::blocking(|| {
            reference::consume(&b, "A.stream", p, 0, total, Duration::from_secs(90))
        });
        assert_eq!(
            values(&got),
            want,
            "partition {p}: every record once, in order"
        );
        // Nothing beyond the last record (no duplicates). Apache Kafka's high watermark says
        // it exactly, after the second run had time to write anything it would; tansu's
        // ListOffsets "latest" is not the high watermark (tests/README.md), so there a read
        // one past the end must find nothing.
        if kind == BrokerKind::Kafka {
            std::thread::sleep(Duration::from_secs(3));
            let (_, hi) = reference::blocking(|| reference::watermarks(&b, "A.stream", p));
            assert_eq!(hi, total as i64, "partition {p}: exactly {total} records");
        } else {
            let extra = std::panic::catch_unwind(|| {
                reference::consume(&b, "A.stream", p, total as i64, 1, Duration::from_secs(3))
            });
            assert!(
                extra.is_err(),
                "partition {p}: no record after the last one (no duplicates)"
            );
        }
    }
    // The restart found what the crashed run had written after its last commit by matching
    // the remote tail against the source (not by luck of timing).
    let log = second.log();
    assert!(
        log.lines()
            .any(|l| l.contains("matched the remote tail") && l.contains("topic=stream")),
        "tail matching did not run:\n{log}"
    );
}

/// SIGTERM: the process stops fetching, finishes, commits, exits 0 within a few seconds.
async fn sigterm_exits_zero_promptly(kind: BrokerKind) {
    let clusters = strait_tests::start_pair(kind, "term");
    let (a, b) = (clusters[0].bootstrap(), clusters[1].bootstrap());
    reference::blocking(|| {
        reference::create_topic(&a, "t", 1);
        reference::produce(&a, "t", 0, &numbered(0, 100), &[]);
    });
    let dir = tempfile::tempdir().unwrap();
    let mut p = StraitProcess::start(&mm2_properties(&a, &b, ""), dir.path());
    let got =
        reference::blocking(|| reference::consume(&b, "A.t", 0, 0, 100, Duration::from_secs(60)));
    assert_eq!(got.len(), 100);
    let started = Instant::now();
    let status = p
        .terminate(Duration::from_secs(15))
        .expect("exits after SIGTERM");
    assert!(status.success(), "exit status {status:?}\n{}", p.log());
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
}

/// A topic created after start appears on the target; A<->B does not loop; heartbeats travel.
async fn bidirectional_flows_do_not_loop_and_new_topics_appear(kind: BrokerKind) {
    strait_tests::init_tracing();
    let clusters = strait_tests::start_pair(kind, "bidi");
    let (a, b) = (clusters[0].bootstrap(), clusters[1].bootstrap());
    reference::blocking(|| {
        reference::create_topic(&a, "x", 1);
        reference::produce(&a, "x", 0, &numbered(0, 10), &[]);
        reference::create_topic(&b, "y", 1);
        reference::produce(&b, "y", 0, &numbered(0, 7), &[]);
    });
    let text = mm2_properties(&a, &b, "B->A.enabled = true\nB->A.topics = .*\n");
    let (tx, h) = run_in_process(text).await;
    let got =
        reference::blocking(|| reference::consume(&b, "A.x", 0, 0, 10, Duration::from_secs(60)));
    assert_eq!(
        values(&got),
        values(&reference::blocking(|| reference::consume(
            &a,
            "x",
            0,
            0,
            10,
            Duration::from_secs(10)
        )))
    );
    reference::blocking(|| reference::consume(&a, "B.y", 0, 0, 7, Duration::from_secs(60)));
    // A topic created later shows up within the refresh interval.
    reference::blocking(|| {
        reference::create_topic(&a, "late", 2);
        reference::produce(&a, "late", 1, &numbered(0, 5), &[]);
    });
    let got =
        reference::blocking(|| reference::consume(&b, "A.late", 1, 0, 5, Duration::from_secs(60)));
    assert_eq!(got.len(), 5);
    // Heartbeats: B->A writes Heartbeat(B, A) into A's `heartbeats`, A->B carries it to B.
    let b2 = b.clone();
    eventually("A.heartbeats on B", Duration::from_secs(30), || {
        let b2 = b2.clone();
        async move { topics(&b2).await.contains(&"A.heartbeats".to_string()) }
    })
    .await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    stop(tx, h).await;
    let on_a = topics(&a).await;
    let on_b = topics(&b).await;
    for t in on_a.iter().chain(on_b.iter()) {
        assert!(
            !t.starts_with("A.B.") && !t.starts_with("B.A."),
            "replication loop: {t} (A: {on_a:?}, B: {on_b:?})"
        );
    }
    assert!(on_a.contains(&"B.heartbeats".to_string()), "{on_a:?}");
}

/// The identity policy keeps names; data is identical.
async fn identity_policy_keeps_topic_names(kind: BrokerKind) {
    let clusters = strait_tests::start_pair(kind, "ident");
    let (a, b) = (clusters[0].bootstrap(), clusters[1].bootstrap());
    reference::blocking(|| {
        reference::create_topic(&a, "same", 2);
        reference::produce(
            &a,
            "same",
            1,
            &numbered(0, 30),
            &[("compression.codec", "gzip")],
        );
    });
    let text = mm2_properties(
        &a,
        &b,
        "replication.policy.class = org.apache.kafka.connect.mirror.IdentityReplicationPolicy\n",
    );
    let (tx, h) = run_in_process(text).await;
    let got =
        reference::blocking(|| reference::consume(&b, "same", 1, 0, 30, Duration::from_secs(60)));
    let src =
        reference::blocking(|| reference::consume(&a, "same", 1, 0, 30, Duration::from_secs(10)));
    assert_eq!(got, src);
    stop(tx, h).await;
    assert!(!topics(&b).await.contains(&"A.same".to_string()));
}

/// Committed transactions: markers are not forwarded, a group committed on a marker or at the
/// end translates exactly, and group offsets are synced into the (absent) target group.
async fn transactions_translate_exactly_and_group_offsets_sync(kind: BrokerKind) {
    strait_tests::init_tracing();
    let clusters = strait_tests::start_pair(kind, "txn");
    let (a, b) = (clusters[0].bootstrap(), clusters[1].bootstrap());
    reference::blocking(|| {
        reference::create_topic(&a, "tx", 1);
        let p: ThreadedProducer<DefaultProducerContext> = reference::base_config(&a)
            .set("transactional.id", strait_tests::unique("txid"))
            .set("enable.idempotence", "true")
            .create()
            .expect("transactional producer");
        p.init_transactions(Duration::from_secs(30))
            .expect("init transactions");
        for t in 0..2 {
            p.begin_transaction().unwrap();
            for i in 0..10 {
                let v = format!("t{t}-{i}");
                p.send(
                    BaseRecord::<[u8], [u8]>::to("tx")
                        .partition(0)
                        .payload(v.as_bytes()),
                )
                .map_err(|(e, _)| e)
                .unwrap();
            }
            p.commit_transaction(Duration::from_secs(30))
                .expect("commit");
        }
        // Source offsets: 0-9 data, 10 marker, 11-20 data, 21 marker.
        reference::commit_offsets(&a, "g-txn", &[("tx", 0, 10)]);
        reference::commit_offsets(&a, "g-end", &[("tx", 0, 22)]);
    });
    let text = mm2_properties(&a, &b, "sync.group.offsets.enabled = true\n");
    let (tx, h) = run_in_process(text).await;
    let got =
        reference::blocking(|| reference::consume(&b, "A.tx", 0, 0, 20, Duration::from_secs(60)));
    let want: Vec<String> = (0..2)
        .flat_map(|t| (0..10).map(move |i| format!("t{t}-{i}")))
        .collect();
    assert_eq!(values(&got), want);
    assert_eq!(
        got.iter().map(|r| r.offset).collect::<Vec<_>>(),
        (0..20).collect::<Vec<i64>>(),
        "markers not forwarded"
    );
    let target = Cluster::connect(ClientConfig::new(&b)).await.unwrap();
    let mut cps: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while cps.len() < 2 {
        assert!(Instant::now() < deadline, "checkpoints {cps:?}");
        for r in read_to_end(&target, "B", "A.checkpoints.internal")
            .await
            .unwrap()
        {
            let cp = Checkpoint::decode(r.key.as_deref().unwrap(), r.value.as_deref()).unwrap();
            cps.insert(
                cp.consumer_group_id.clone(),
                (cp.upstream_offset, cp.downstream_offset),
            );
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // Offset 10 is the first marker: the next record (t1-0, upstream 11) is downstream 10.
    assert_eq!(cps["g-txn"], (10, 10));
    // 22 is the end: the downstream end, 20.
    assert_eq!(cps["g-end"], (22, 20));
    // Group offsets synced into the target groups (absent there before).
    let admin = Admin::new(target.clone());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let o = admin.fetch_offsets("g-txn", None).await.unwrap();
        if o.iter().any(|c| c.topic == "A.tx" && c.offset == 10) {
            break;
        }
        assert!(Instant::now() < deadline, "group offsets not synced: {o:?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    stop(tx, h).await;
}

strait_tests::on_both_brokers!(
    kill_9_mid_stream_then_restart_loses_and_duplicates_nothing,
    sigterm_exits_zero_promptly,
    bidirectional_flows_do_not_loop_and_new_topics_appear,
    identity_policy_keeps_topic_names,
    transactions_translate_exactly_and_group_offsets_sync,
);

/// Two in-process "members" of one flow hand partitions to each other while a writer keeps
/// producing (what the scale-out group will drive, `Flow::with_ownership`): the one losing a
/// partition stops fetching it, waits for its appends, commits and reports it released; the
/// one gaining it resumes from the committed progress and the remote tail. A partition is
/// also given back while its release may still run, and taken from a member that never ran
/// it (released at once). Every source record is on the target exactly once, in order (read
/// by librdkafka). Apache Kafka.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_handed_between_two_members_are_mirrored_exactly_once() {
    use replicator::flow::{Flow, OwnershipChange};
    use replicator::run::{aliases, data_producer, writers, Clusters};
    use std::collections::BTreeSet;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;
    use tokio::sync::{mpsc, watch};

    const PARTITIONS: i32 = 4;
    strait_tests::init_tracing();
    let kafka = strait_tests::kafka::start_clusters("handover", 2);
    let (a, b) = (kafka[0].bootstrap(), kafka[1].bootstrap());
    let topic = strait_tests::unique("handed");
    reference::blocking(|| reference::create_topic(&a, &topic, PARTITIONS));
    let text = mm2_properties(
        &a,
        &b,
        &format!(
            "A->B.topics = {topic}\n\
             emit.checkpoints.enabled = false\n\
             sync.group.offsets.enabled = false\n\
             emit.heartbeats.enabled = false\n\
             sync.topic.acls.enabled = false\n\
             refresh.topics.interval.seconds = 1\n"
        ),
    );
    let config = Config::from_properties_str(&text, "test.properties", &SystemSecrets).unwrap();
    let fc = config.flows[0].clone();
    let key = |p: i32| (topic.clone(), p);
    let keys = |ps: &[i32]| -> BTreeSet<(String, i32)> { ps.iter().map(|p| key(*p)).collect() };
    struct Member {
        changes: mpsc::UnboundedSender<OwnershipChange>,
        released: mpsc::UnboundedReceiver<BTreeSet<(String, i32)>>,
        stop: watch::Sender<bool>,
        run: tokio::task::JoinHandle<replicator::Result<()>>,
    }
    impl Member {
        fn change(&self, give: BTreeSet<(String, i32)>, take: BTreeSet<(String, i32)>) {
            self.changes.send(OwnershipChange { give, take }).unwrap();
        }
        async fn released(&mut self) -> BTreeSet<(String, i32)> {
            tokio::time::timeout(Duration::from_secs(30), self.released.recv())
                .await
                .expect("released in time")
                .unwrap()
        }
    }
    let start = |initial: BTreeSet<(String, i32)>| {
        let (config, fc) = (config.clone(), fc.clone());
        async move {
            let clusters = Clusters::connect(&config, &aliases(&config), &writers(&config))
                .await
                .unwrap();
            let (source, target) = (
                clusters.clusters["A"].clone(),
                clusters.clusters["B"].clone(),
            );
            // Internal records go to B, offset syncs to A (`offset-syncs.topic.location`).
            let (producer, sync_producer) = (
                clusters.producers["B"].clone(),
                clusters.producers["A"].clone(),
            );
            let data = data_producer(&target, "B", None, None).await.unwrap();
            let (changes, changes_rx) = mpsc::unbounded_channel();
            let (released_tx, released) = mpsc::unbounded_channel();
            let flow = Arc::new(
                Flow::new(fc, source, target, producer, sync_producer)
                    .with_data_producer(data)
                    .with_ownership(initial, changes_rx, released_tx),
            );
            let (stop, stop_rx) = watch::channel(false);
            let run = tokio::spawn(flow.run(stop_rx));
            Member {
                changes,
                released,
                stop,
                run,
            }
        }
    };
    let mut m1 = start(keys(&[0, 1, 2, 3])).await;
    let mut m2 = start(keys(&[])).await;
    // A writer produces to every partition until told to stop.
    let writing = Arc::new(AtomicBool::new(true));
    let written = Arc::new(AtomicUsize::new(0));
    let writer = {
        let (a, topic, writing, written) =
            (a.clone(), topic.clone(), writing.clone(), written.clone());
        std::thread::spawn(move || {
            let mut n = 0;
            while writing.load(Ordering::Acquire) {
                for p in 0..PARTITIONS {
                    let recs: Vec<Outgoing> = (n..n + 100)
                        .map(|i| Outgoing::kv(format!("k{i}"), format!("p{p}-v{i}")))
                        .collect();
                    reference::produce(&a, &topic, p, &recs, &[("linger.ms", "5")]);
                }
                n += 100;
                written.store(n, Ordering::Release);
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    let remote = format!("A.{topic}");
    let remote_count = |p: i32| reference::try_watermarks(&b, &remote, p).map_or(0, |(_, h)| h);
    eventually(
        "the first records on the target",
        Duration::from_secs(60),
        || async { (0..PARTITIONS).all(|p| remote_count(p) > 0) },
    )
    .await;
    // Hand-over 1: partitions 2 and 3 move to the second member.
    m1.change(keys(&[]), keys(&[2, 3]));
    assert_eq!(m1.released().await, keys(&[2, 3]));
    m2.change(keys(&[2, 3]), keys(&[]));
    tokio::time::sleep(Duration::from_secs(1)).await;
    // Hand-over 2: partition 1 moves to the second member, 3 back to the first; 0 is taken
    // from the second member, which never ran it (released at once), and 2 is taken from it
    // and given back at once (runs again after its release).
    m2.change(keys(&[]), keys(&[0]));
    assert_eq!(m2.released().await, keys(&[0]));
    m2.change(keys(&[]), keys(&[2, 3]));
    m2.change(keys(&[2]), keys(&[]));
    assert_eq!(m2.released().await, keys(&[2, 3]));
    m1.change(keys(&[]), keys(&[1]));
    assert_eq!(m1.released().await, keys(&[1]));
    m1.change(keys(&[3]), keys(&[]));
    m2.change(keys(&[1]), keys(&[]));
    let before = written.load(Ordering::Acquire);
    eventually(
        "more records written after the hand-overs",
        Duration::from_secs(30),
        || async { written.load(Ordering::Acquire) >= before + 500 },
    )
    .await;
    writing.store(false, Ordering::Release);
    writer.join().unwrap();
    let total = written.load(Ordering::Acquire);
    eventually(
        "every record on the target",
        Duration::from_secs(90),
        || async { (0..PARTITIONS).all(|p| remote_count(p) >= total as i64) },
    )
    .await;
    for m in [m1, m2] {
        let _ = m.stop.send(true);
        tokio::time::timeout(Duration::from_secs(30), m.run)
            .await
            .expect("stops in time")
            .unwrap()
            .expect("clean stop");
    }
    for p in 0..PARTITIONS {
        let want: Vec<String> = (0..total).map(|i| format!("p{p}-v{i}")).collect();
        let got = reference::blocking(|| {
            reference::consume(&b, &remote, p, 0, total, Duration::from_secs(30))
        });
        assert_eq!(
            values(&got),
            want,
            "partition {p}: every record once, in order"
        );
        assert_eq!(
            remote_count(p),
            total as i64,
            "partition {p}: nothing more on the target"
        );
    }
}
