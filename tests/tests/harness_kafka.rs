//! Self-tests of the Apache Kafka harness (`strait_tests::kafka`): independent clusters, data
//! surviving a SIGKILL and restart, a three-broker cluster losing and regaining a broker, and
//! MirrorMaker 2 mirroring a topic. librdkafka is the client throughout.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use strait_tests::kafka::{
    mm2_test_properties, start_clusters, KafkaCluster, KafkaOptions, Mm2Process,
};
use strait_tests::reference::{self, Outgoing, RefRecord};
use strait_tests::{BrokerKind, TestCluster};

fn records(tag: &str, from: usize, n: usize) -> Vec<Outgoing> {
    (from..from + n)
        .map(|i| Outgoing::kv(format!("k{i}"), format!("{tag}-v{i}")))
        .collect()
}

fn values(got: &[RefRecord]) -> Vec<String> {
    got.iter()
        .map(|r| String::from_utf8(r.value.clone().expect("value")).expect("UTF-8 value"))
        .collect()
}

fn expected(tag: &str, from: usize, n: usize) -> Vec<String> {
    (from..from + n).map(|i| format!("{tag}-v{i}")).collect()
}

fn metadata_client(bootstrap: &str) -> BaseConsumer {
    reference::base_config(bootstrap)
        .create()
        .expect("metadata client")
}

/// The topic names the cluster reports.
fn topics(bootstrap: &str) -> BTreeSet<String> {
    metadata_client(bootstrap)
        .fetch_metadata(None, Duration::from_secs(10))
        .expect("metadata")
        .topics()
        .iter()
        .map(|t| t.name().to_string())
        .collect()
}

/// Leader, replicas and ISR of `topic`/0 as the metadata says.
fn partition0(client: &BaseConsumer, topic: &str) -> Option<(i32, Vec<i32>, Vec<i32>)> {
    let md = client
        .fetch_metadata(Some(topic), Duration::from_secs(5))
        .ok()?;
    let t = md.topics().iter().find(|t| t.name() == topic)?;
    let p = t.partitions().iter().find(|p| p.id() == 0)?;
    let mut isr = p.isr().to_vec();
    isr.sort_unstable();
    Some((p.leader(), p.replicas().to_vec(), isr))
}

/// One body for any cluster kind: a topic, three records in, the same three out.
fn round_trip(cluster: &dyn TestCluster, topic: &str) {
    let bootstrap = cluster.bootstrap();
    let tag = format!("{}-{}", cluster.kind().name(), cluster.cluster_id());
    reference::create_topic(&bootstrap, topic, 1);
    reference::produce(&bootstrap, topic, 0, &records(&tag, 0, 3), &[]);
    let got = reference::consume(&bootstrap, topic, 0, 0, 3, Duration::from_secs(20));
    assert_eq!(
        values(&got),
        expected(&tag, 0, 3),
        "{}",
        cluster.kind().name()
    );
    assert_eq!(got.iter().map(|r| r.offset).collect::<Vec<_>>(), [0, 1, 2]);
}

#[test]
fn two_kafka_clusters_are_independent() {
    let t0 = Instant::now();
    let clusters = start_clusters("kh-indep", 2);
    eprintln!("two single-node clusters ready in {:.1?}", t0.elapsed());
    assert_ne!(clusters[0].cluster_id(), clusters[1].cluster_id());
    assert_ne!(clusters[0].bootstrap(), clusters[1].bootstrap());
    assert_eq!(clusters[0].cluster_id().len(), 22);
    for c in &clusters {
        assert_eq!(c.kind(), BrokerKind::Kafka);
        assert_eq!(c.len(), 1);
    }

    // The same topic name on both clusters, each with its own records.
    let shared = strait_tests::unique("shared");
    for c in &clusters {
        round_trip(c, &shared);
    }
    // A topic made on one cluster only is absent from the other.
    let only0 = strait_tests::unique("only-on-0");
    reference::create_topic(&clusters[0].bootstrap(), &only0, 2);
    reference::produce(
        &clusters[0].bootstrap(),
        &only0,
        1,
        &records("only0", 0, 5),
        &[],
    );
    let got = reference::consume(
        &clusters[0].bootstrap(),
        &only0,
        1,
        0,
        5,
        Duration::from_secs(20),
    );
    assert_eq!(values(&got), expected("only0", 0, 5));
    let on0 = topics(&clusters[0].bootstrap());
    let on1 = topics(&clusters[1].bootstrap());
    assert!(on0.contains(&only0) && on0.contains(&shared), "{on0:?}");
    assert!(
        !on1.contains(&only0),
        "{only0} leaked into the other cluster: {on1:?}"
    );
    assert!(on1.contains(&shared), "{on1:?}");
    eprintln!("two_kafka_clusters_are_independent: {:.1?}", t0.elapsed());
}

#[test]
fn one_test_body_runs_on_both_broker_kinds() {
    let t0 = Instant::now();
    let kafka = KafkaCluster::start("kh-body");
    round_trip(&kafka, &strait_tests::unique("body"));
    eprintln!("body on Apache Kafka: {:.1?}", t0.elapsed());
    let tansu_installed = std::env::var_os("STRAIT_TANSU").is_some()
        || strait_tests::workspace_root()
            .join(".tansu/bin/tansu")
            .exists();
    if !tansu_installed {
        strait_tests::skip!(
            "tansu half of the shared body: tansu is not installed (scripts/install-tansu.sh)"
        );
    }
    let tansu = strait_tests::tansu::TansuBroker::start("kh-body");
    assert_eq!(tansu.kind(), BrokerKind::Tansu);
    round_trip(&tansu, &strait_tests::unique("body"));
}

#[test]
fn a_broker_that_exits_while_starting_is_reported_with_its_log() {
    let t0 = Instant::now();
    let err = std::panic::catch_unwind(|| {
        KafkaCluster::start_with(
            "kh-broken",
            KafkaOptions::default().property("num.io.threads", "0"),
        )
    })
    .expect_err("a broker with num.io.threads=0 cannot start");
    let msg = err
        .downcast_ref::<String>()
        .cloned()
        .unwrap_or_else(|| "<non-string panic>".into());
    assert!(msg.contains("in 3 attempts"), "{msg}");
    assert!(msg.contains("exited with"), "{msg}");
    assert!(
        msg.contains("num.io.threads"),
        "the broker's own error is shown: {msg}"
    );
    eprintln!(
        "early exit detected and retried 3 times in {:.1?}",
        t0.elapsed()
    );
}

#[test]
fn single_node_survives_kill_and_restart() {
    let t0 = Instant::now();
    let mut c = KafkaCluster::start("kh-restart");
    let started = t0.elapsed();
    let topic = strait_tests::unique("durable");
    let bootstrap = c.bootstrap();
    reference::create_topic(&bootstrap, &topic, 1);
    // `reference::produce` waits for acks=all acknowledgements.
    reference::produce(&bootstrap, &topic, 0, &records("before", 0, 50), &[]);

    c.kill_broker(0);
    assert!(!c.is_running(0));
    assert!(!strait_tests::tansu::api_versions_ok(
        c.broker_addr(0).parse().unwrap()
    ));
    let t1 = Instant::now();
    c.restart_broker(0);
    let restarted = t1.elapsed();
    assert!(c.is_running(0));
    assert!(c.log(0).contains("restarting broker"));

    let got = reference::consume(&bootstrap, &topic, 0, 0, 50, Duration::from_secs(30));
    assert_eq!(values(&got), expected("before", 0, 50));
    // The log continues after the recovered records.
    reference::produce(&bootstrap, &topic, 0, &records("after", 50, 5), &[]);
    let got = reference::consume(&bootstrap, &topic, 0, 50, 5, Duration::from_secs(30));
    assert_eq!(values(&got), expected("after", 50, 5));
    assert_eq!(got[0].offset, 50);

    // A graceful stop and restart too.
    let status = c.stop_broker(0);
    eprintln!("SIGTERM stop: {status}");
    c.restart_broker(0);
    let got = reference::consume(&bootstrap, &topic, 0, 0, 55, Duration::from_secs(30));
    assert_eq!(got.len(), 55);
    eprintln!(
        "single_node_survives_kill_and_restart: start {started:.1?}, restart after SIGKILL \
         {restarted:.1?}, total {:.1?}",
        t0.elapsed()
    );
}

#[test]
fn three_brokers_lose_and_regain_one() {
    let t0 = Instant::now();
    let mut c = KafkaCluster::start_with("kh-three", KafkaOptions::brokers(3));
    let started = t0.elapsed();
    eprintln!("three-node cluster ready in {started:.1?}");
    assert_eq!(c.len(), 3);
    let bootstrap = c.bootstrap();
    assert_eq!(bootstrap.split(',').count(), 3);
    let client = metadata_client(&bootstrap);
    let md = client
        .fetch_metadata(None, Duration::from_secs(10))
        .expect("metadata");
    let ids: BTreeSet<i32> = md.brokers().iter().map(|b| b.id()).collect();
    assert_eq!(ids, BTreeSet::from([1, 2, 3]));

    let topic = strait_tests::unique("replicated");
    reference::create_topic_replicated(&bootstrap, &topic, 1, 3, &[("min.insync.replicas", "2")]);
    reference::produce(&bootstrap, &topic, 0, &records("r", 0, 20), &[]);
    let deadline = Instant::now() + Duration::from_secs(30);
    let (leader, replicas, _) = loop {
        match partition0(&client, &topic) {
            Some((leader, replicas, isr)) if isr.len() == 3 => break (leader, replicas, isr),
            other => assert!(
                Instant::now() < deadline,
                "{topic}/0 not fully replicated: {other:?}"
            ),
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(replicas.len(), 3);

    // Kill the partition's leader: the others must take over.
    let victim = c.index_of(leader).expect("leader is one of ours");
    let t1 = Instant::now();
    c.kill_broker(victim);
    assert!(!c.is_running(victim));
    reference::produce(&bootstrap, &topic, 0, &records("r", 20, 20), &[]);
    let failover = t1.elapsed();
    // librdkafka's consumer reports a dead bootstrap broker as an error: bootstrap from the rest.
    let alive = c.running_bootstrap();
    assert_eq!(alive.split(',').count(), 2);
    let got = reference::consume(&alive, &topic, 0, 0, 40, Duration::from_secs(30));
    assert_eq!(values(&got), expected("r", 0, 40));
    let (new_leader, _, isr) = partition0(&client, &topic).expect("metadata after the kill");
    assert_ne!(new_leader, leader, "leadership moved");
    assert!(
        !isr.contains(&leader),
        "killed broker left the ISR: {isr:?}"
    );
    eprintln!(
        "killed leader {leader}: acks=all produce resumed after {failover:.1?}, leader now \
         {new_leader}, ISR {isr:?}"
    );

    // Back again: in the metadata, then back in the ISR.
    let t2 = Instant::now();
    c.restart_broker(victim);
    let rejoined = t2.elapsed();
    let ids: BTreeSet<i32> = client
        .fetch_metadata(None, Duration::from_secs(10))
        .expect("metadata")
        .brokers()
        .iter()
        .map(|b| b.id())
        .collect();
    assert_eq!(ids, BTreeSet::from([1, 2, 3]));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let p = partition0(&client, &topic);
        if matches!(&p, Some((_, _, isr)) if isr.len() == 3) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{leader} did not rejoin the ISR: {p:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let in_isr = t2.elapsed();
    // The restarted broker bootstraps clients again, and nothing was lost.
    reference::produce(&bootstrap, &topic, 0, &records("r", 40, 5), &[]);
    let got = reference::consume(
        &c.broker_addr(victim),
        &topic,
        0,
        0,
        45,
        Duration::from_secs(30),
    );
    assert_eq!(values(&got), expected("r", 0, 45));
    eprintln!(
        "three_brokers_lose_and_regain_one: start {started:.1?}, restart {rejoined:.1?}, back in \
         ISR {in_isr:.1?}, total {:.1?}",
        t0.elapsed()
    );
}

#[test]
fn mirror_maker_2_mirrors_a_topic() {
    let t0 = Instant::now();
    let clusters = start_clusters("kh-mm2", 2);
    let (a, b) = (clusters[0].bootstrap(), clusters[1].bootstrap());
    let topic = strait_tests::unique("mirrored");
    reference::create_topic(&a, &topic, 1);
    reference::produce(&a, &topic, 0, &records("m", 0, 10), &[]);

    let config = mm2_test_properties(
        &a,
        &b,
        &[
            ("A->B.enabled", "true"),
            ("A->B.topics", &topic),
            ("B->A.enabled", "false"),
            ("B->A.emit.heartbeats.enabled", "false"),
        ],
    );
    let t1 = Instant::now();
    let mut mm2 = Mm2Process::start(&config);
    let remote = format!("A.{topic}");
    let deadline = Instant::now() + Duration::from_secs(120);
    while !topics(&b).contains(&remote) {
        assert!(mm2.is_running(), "MM2 exited; log:\n{}", mm2.log());
        assert!(
            Instant::now() < deadline,
            "{remote} did not appear on B within 120 s; MM2 log:\n{}",
            mm2.log()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    let topic_seen = t1.elapsed();
    let got = reference::consume(&b, &remote, 0, 0, 10, Duration::from_secs(60));
    let first_records = t1.elapsed();
    assert_eq!(values(&got), expected("m", 0, 10));
    assert_eq!(
        got.iter()
            .map(|r| r.key.clone().unwrap())
            .collect::<Vec<_>>(),
        (0..10)
            .map(|i| format!("k{i}").into_bytes())
            .collect::<Vec<_>>()
    );
    let on_b = topics(&b);
    assert!(
        on_b.contains("mm2-offsets.A.internal"),
        "MM2's offset store missing on B: {on_b:?}"
    );
    assert!(
        mm2.log().contains("Kafka MirrorMaker"),
        "MM2 log has content"
    );
    let status = mm2.stop();
    eprintln!(
        "mirror_maker_2_mirrors_a_topic: {remote} on B after {topic_seen:.1?}, records after \
         {first_records:.1?} (MM2 exit {status}); topics on B: {on_b:?}; total {:.1?}",
        t0.elapsed()
    );
}
