//! Strait against Apache Kafka brokers: what a real broker does that tansu does not — refuse a
//! batch, move a partition's log start, report the high watermark exactly.

use std::time::{Duration, Instant};

use strait_tests::kafka::start_clusters;
use strait_tests::reference::{self, Outgoing};
use strait_tests::strait::{mm2_properties, StraitProcess};

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn numbered(from: usize, to: usize, timestamp: i64) -> Vec<Outgoing> {
    (from..to)
        .map(|i| Outgoing {
            timestamp: Some(timestamp),
            ..Outgoing::kv(format!("k{i}"), format!("v{i}"))
        })
        .collect()
}

fn values(recs: &[reference::RefRecord]) -> Vec<String> {
    recs.iter()
        .map(|r| String::from_utf8(r.value.clone().unwrap()).unwrap())
        .collect()
}

fn wait_for_high_watermark(
    bootstrap: &str,
    topic: &str,
    partition: i32,
    want: i64,
    within: Duration,
) {
    let deadline = Instant::now() + within;
    loop {
        let hi = reference::try_watermarks(bootstrap, topic, partition).map_or(-1, |w| w.1);
        if hi >= want {
            assert_eq!(hi, want, "{topic}/{partition}: more records than expected");
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{topic}/{partition}: high watermark {hi}, waited for {want}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The target refuses one batch for good (INVALID_TIMESTAMP: the remote topic only takes records
/// at most an hour old, and the source holds ten 2020 records between recent ones). The
/// partition stops right before that batch — no later record reaches the target, so there is
/// no gap — and Strait exits non-zero naming the topic, partition, source offsets and the
/// broker's reason. Before the fix the producer wrote the later batches under a new epoch
/// (a hole in the remote partition) while the process kept running.
///
/// With merging off (`strait.coalesce.bytes = 0`) the partition stops exactly before the
/// refused source batch. With merging on (the default) the small source batches may have been
/// merged into one: the partition then stops before the merged batch that holds the refused
/// record (here offset 0 or 100, as the fetch happened to cut them), never after it.
#[test]
fn a_refused_batch_stops_the_partition_without_a_gap() {
    refused_batch_stops_the_partition(false);
}

#[test]
fn a_refused_merged_batch_stops_the_partition_without_a_gap() {
    refused_batch_stops_the_partition(true);
}

fn refused_batch_stops_the_partition(merging: bool) {
    let clusters = start_clusters(if merging { "refuse-merged" } else { "refuse" }, 2);
    let (a, b) = (clusters[0].bootstrap(), clusters[1].bootstrap());
    reference::create_topic(&a, "events", 1);
    reference::create_topic_with_configs(
        &b,
        "A.events",
        1,
        &[("message.timestamp.before.max.ms", "3600000")],
    );
    let now = now_ms();
    // Three produce calls: three separate batches (at least) with their own timestamps.
    reference::produce(&a, "events", 0, &numbered(0, 100, now), &[]);
    reference::produce(&a, "events", 0, &numbered(100, 110, 1_580_000_000_000), &[]);
    reference::produce(&a, "events", 0, &numbered(110, 300, now), &[]);
    let dir = tempfile::tempdir().unwrap();
    let extra = if merging {
        ""
    } else {
        "strait.coalesce.bytes = 0\n"
    };
    let mut strait = StraitProcess::start(&mm2_properties(&a, &b, extra), dir.path());
    let status = strait
        .wait_exit(Duration::from_secs(90))
        .unwrap_or_else(|| {
            panic!(
                "strait kept running after the target refused a batch:\n{}",
                strait.log()
            )
        });
    let log = strait.log();
    assert!(!status.success(), "exit status {status:?}\n{log}");
    let last = log
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    // Exactly the records before the refused (or merged) batch, nothing after it.
    let (_, hi) = reference::watermarks(&b, "A.events", 0);
    if merging {
        assert!(
            hi == 0 || hi == 100,
            "remote partition holds only what came before the refused batch: {hi}\n{log}"
        );
    } else {
        assert_eq!(
            hi, 100,
            "remote partition holds only what came before the refused batch\n{log}"
        );
    }
    let stopped_at = format!("offsets {hi}..");
    for want in [
        "events/0",
        stopped_at.as_str(),
        "A.events",
        "InvalidTimestamp",
        "out of range",
    ] {
        assert!(
            log.contains(want),
            "the error names {want:?}; last line: {last}\n{log}"
        );
    }
    let got = reference::consume(&b, "A.events", 0, 0, hi as usize, Duration::from_secs(20));
    let want: Vec<String> = (0..hi).map(|i| format!("v{i}")).collect();
    assert_eq!(values(&got), want);
}

/// Resume after the target's log start moved past 0 (retention, here DeleteRecords): Strait
/// stops, the remote partition's first records are deleted, more source data arrives, Strait
/// starts again and mirrors exactly the new records. Before the fix the resume probe fetched
/// the remote partition at offset 0, Apache Kafka answered OFFSET_OUT_OF_RANGE with a high
/// watermark of -1, and the flow restarted every 30 s replicating nothing.
#[test]
fn resumes_after_the_remote_log_start_moved() {
    let clusters = start_clusters("logstart", 2);
    let (a, b) = (clusters[0].bootstrap(), clusters[1].bootstrap());
    reference::create_topic(&a, "logs", 1);
    let now = now_ms();
    reference::produce(&a, "logs", 0, &numbered(0, 200, now), &[]);
    let dir = tempfile::tempdir().unwrap();
    let config = mm2_properties(&a, &b, "");
    let mut first = StraitProcess::start(&config, dir.path());
    wait_for_high_watermark(&b, "A.logs", 0, 200, Duration::from_secs(60));
    let status = first
        .terminate(Duration::from_secs(30))
        .expect("exits after SIGTERM");
    assert!(status.success(), "{}", first.log());
    assert_eq!(reference::delete_records(&b, "A.logs", 0, 150), 150);
    reference::produce(&a, "logs", 0, &numbered(200, 300, now), &[]);
    let mut second = StraitProcess::start(&config, dir.path());
    wait_for_high_watermark(&b, "A.logs", 0, 300, Duration::from_secs(60));
    let got = reference::consume(&b, "A.logs", 0, 150, 150, Duration::from_secs(20));
    let want: Vec<String> = (150..300).map(|i| format!("v{i}")).collect();
    assert_eq!(values(&got), want, "{}", second.log());
    let status = second
        .terminate(Duration::from_secs(30))
        .expect("exits after SIGTERM");
    assert!(status.success(), "{}", second.log());
}

/// The source's log start moves past Strait's position while it is stopped (retention; here
/// DeleteRecords): on restart the lost range is reported loudly with its size, and Strait
/// continues from the new log start (`auto.offset.reset` = earliest, MM2's default for its
/// source consumer), and the run's exit status says records were lost. Before the fix the
/// fetcher reset the position with a debug line only.
#[test]
fn source_records_deleted_before_mirroring_are_reported_as_lost() {
    let clusters = start_clusters("srclost", 2);
    let (a, b) = (clusters[0].bootstrap(), clusters[1].bootstrap());
    reference::create_topic(&a, "t", 1);
    let now = now_ms();
    reference::produce(&a, "t", 0, &numbered(0, 100, now), &[]);
    let dir = tempfile::tempdir().unwrap();
    let config = mm2_properties(&a, &b, "");
    let mut first = StraitProcess::start(&config, dir.path());
    wait_for_high_watermark(&b, "A.t", 0, 100, Duration::from_secs(60));
    let status = first
        .terminate(Duration::from_secs(30))
        .expect("exits after SIGTERM");
    assert!(status.success(), "{}", first.log());
    reference::produce(&a, "t", 0, &numbered(100, 200, now), &[]);
    assert_eq!(reference::delete_records(&a, "t", 0, 150), 150);
    let mut second = StraitProcess::start(&config, dir.path());
    wait_for_high_watermark(&b, "A.t", 0, 150, Duration::from_secs(60));
    let got = reference::consume(&b, "A.t", 0, 100, 50, Duration::from_secs(20));
    let want: Vec<String> = (150..200).map(|i| format!("v{i}")).collect();
    assert_eq!(values(&got), want);
    let log = second.log();
    assert!(
        log.contains("DATA LOSS") && log.contains("lost=50") && log.contains("from=100"),
        "the loss is reported with its range:\n{log}"
    );
    let status = second
        .terminate(Duration::from_secs(30))
        .expect("exits after SIGTERM");
    assert!(!status.success(), "a run that lost data exits non-zero");
    assert!(
        second
            .log()
            .contains("DATA LOSS during the run: t/0: 50 offsets (100..150)"),
        "{}",
        second.log()
    );
}

/// The leader of a remote partition (a 3-broker target, replication factor 3, min ISR 2) is
/// killed with kill -9 while Strait mirrors a stream and comes back later: leadership moves
/// with appends in flight, the producer retries against the new leader, and every source
/// record is on the target exactly once, in order (remote high watermark = record count).
#[test]
fn target_leader_killed_mid_stream_loses_and_duplicates_nothing() {
    use strait_tests::kafka::{KafkaCluster, KafkaOptions};
    let a_cluster = strait_tests::kafka::KafkaCluster::start("lm-src");
    let mut b_cluster = KafkaCluster::start_with("lm-dst", KafkaOptions::brokers(3));
    let (a, b) = (a_cluster.bootstrap(), b_cluster.bootstrap());
    reference::create_topic(&a, "lm", 2);
    reference::create_topic_replicated(&b, "A.lm", 2, 3, &[("min.insync.replicas", "2")]);
    let total = 6000usize;
    let now = now_ms();
    let a2 = a.clone();
    let writer = std::thread::spawn(move || {
        for chunk in 0..30 {
            let (from, to) = (chunk * total / 30, (chunk + 1) * total / 30);
            for p in 0..2 {
                reference::produce(
                    &a2,
                    "lm",
                    p,
                    &numbered(from, to, now),
                    &[("linger.ms", "1")],
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let mut strait = StraitProcess::start(&mm2_properties(&a, &b, ""), dir.path());
    wait_for_some(&b, "A.lm", 0, 500, Duration::from_secs(60));
    let leader = leader_of(&b, "A.lm", 0);
    let i = b_cluster
        .index_of(leader)
        .expect("leader is a node of the cluster");
    eprintln!("killing broker {leader} (leader of A.lm/0)");
    b_cluster.kill_broker(i);
    std::thread::sleep(Duration::from_secs(4));
    b_cluster.restart_broker(i);
    writer.join().unwrap();
    for p in 0..2 {
        wait_for_high_watermark(&b, "A.lm", p, total as i64, Duration::from_secs(120));
        let got = reference::consume(&b, "A.lm", p, 0, total, Duration::from_secs(30));
        let want: Vec<String> = (0..total).map(|i| format!("v{i}")).collect();
        assert_eq!(values(&got), want, "partition {p}\n{}", strait.log());
    }
    let status = strait
        .terminate(Duration::from_secs(60))
        .expect("exits after SIGTERM");
    assert!(status.success(), "{}", strait.log());
}

fn wait_for_some(bootstrap: &str, topic: &str, partition: i32, at_least: i64, within: Duration) {
    let deadline = Instant::now() + within;
    while reference::try_watermarks(bootstrap, topic, partition).map_or(-1, |w| w.1) < at_least {
        assert!(
            Instant::now() < deadline,
            "{topic}/{partition}: fewer than {at_least} records"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn leader_of(bootstrap: &str, topic: &str, partition: i32) -> i32 {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let c = protocol_client::cluster::Cluster::connect(
            protocol_client::cluster::ClientConfig::new(bootstrap),
        )
        .await
        .unwrap();
        let md = c.refresh_all_topics().await.unwrap();
        md.partition(topic, partition).expect("partition").leader
    })
}

/// One remote partition cannot take appends (its replicas: nodes 1 and 3, min ISR 2, node 3
/// stopped: NOT_ENOUGH_REPLICAS, retried) while its source partition holds twice the in-flight
/// budget and another partition of the same flow carries three times the budget.
/// Acknowledgements are applied per partition and a partition holds at most an eighth of the
/// budget, so the stuck partition stops being fetched and the other is mirrored completely
/// meanwhile (before, the stuck one took the whole budget and everything stalled). Then node 3
/// returns and the stuck partition catches up from where its fetches were dropped, exactly
/// once.
#[test]
fn a_stuck_target_partition_does_not_stall_the_others() {
    use strait_tests::kafka::{KafkaCluster, KafkaOptions};
    let a_cluster = KafkaCluster::start("lane-src");
    let mut b_cluster = KafkaCluster::start_with("lane-dst", KafkaOptions::brokers(3));
    let (a, b) = (a_cluster.bootstrap(), b_cluster.bootstrap());
    reference::create_topic(&a, "lanes", 2);
    reference::create_topic_assigned(
        &b,
        "A.lanes",
        &[&[1, 3], &[1, 2]],
        &[("min.insync.replicas", "2")],
    );
    let budget = 4 << 20;
    b_cluster.stop_broker(2);
    let big = "x".repeat(1000);
    let records = |from: usize, to: usize| -> Vec<Outgoing> {
        (from..to)
            .map(|i| Outgoing::kv(format!("k{i}"), format!("v{i}:{big}")))
            .collect()
    };
    let stuck = 2 * budget / 1000;
    reference::produce(&a, "lanes", 0, &records(0, stuck), &[]);
    let free = 3 * budget / 1000;
    reference::produce(&a, "lanes", 1, &records(0, free), &[]);
    let dir = tempfile::tempdir().unwrap();
    let mut strait = StraitProcess::start(
        &mm2_properties(&a, &b, &format!("strait.inflight.bytes = {budget}\n")),
        dir.path(),
    );
    let deadline = Instant::now() + Duration::from_secs(90);
    while reference::try_watermarks(&b, "A.lanes", 1).map_or(-1, |w| w.1) < free as i64 {
        assert!(
            Instant::now() < deadline,
            "partition 1 not mirrored while partition 0 is stuck\n{}",
            strait.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        reference::watermarks(&b, "A.lanes", 0).1,
        0,
        "partition 0 cannot take appends while node 3 is down"
    );
    b_cluster.restart_broker(2);
    wait_for_high_watermark(&b, "A.lanes", 0, stuck as i64, Duration::from_secs(120));
    for (p, n) in [(0, stuck), (1, free)] {
        let got = reference::consume(&b, "A.lanes", p, 0, n, Duration::from_secs(30));
        let want: Vec<String> = (0..n).map(|i| format!("v{i}:{big}")).collect();
        assert_eq!(values(&got), want, "partition {p}\n{}", strait.log());
        assert_eq!(
            reference::watermarks(&b, "A.lanes", p).1,
            n as i64,
            "nothing twice"
        );
    }
    let status = strait
        .terminate(Duration::from_secs(60))
        .expect("exits after SIGTERM");
    assert!(status.success(), "{}", strait.log());
}

/// A source cluster that is down when Strait starts is waited for: Strait keeps trying (with
/// backoff, within its 60 s connect budget) and mirrors everything once the broker is up. A
/// cluster that never comes up (nothing listens on its port) ends the run after that budget
/// with exit status 1 and an error naming the cluster and the address.
#[test]
fn a_cluster_down_at_start_is_waited_for_and_one_never_up_is_named() {
    let mut clusters = start_clusters("down-at-start", 2);
    let (a, b) = (clusters[0].bootstrap(), clusters[1].bootstrap());
    reference::create_topic(&a, "early", 1);
    reference::produce(&a, "early", 0, &numbered(0, 100, now_ms()), &[]);
    // A port nobody listens on.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let never_dir = tempfile::tempdir().unwrap();
    let never_config = mm2_properties(&dead.to_string(), &b, "A->B.topics = never-.*\n")
        .replace("A->B.topics = .*\n", "");
    strait_tests::strait::strait_binary(); // built before the clocks start
    let started = Instant::now();
    let mut never = StraitProcess::start(&never_config, never_dir.path());

    clusters[0].stop_broker(0);
    let dir = tempfile::tempdir().unwrap();
    let mut late = StraitProcess::start(&mm2_properties(&a, &b, ""), dir.path());
    std::thread::sleep(Duration::from_secs(8));
    assert!(
        late.wait_exit(Duration::ZERO).is_none(),
        "gave up on a cluster down for 8 s\n{}",
        late.log()
    );
    clusters[0].restart_broker(0);
    wait_for_high_watermark(&b, "A.early", 0, 100, Duration::from_secs(60));
    let got = reference::consume(&b, "A.early", 0, 0, 100, Duration::from_secs(20));
    let want: Vec<String> = (0..100).map(|i| format!("v{i}")).collect();
    assert_eq!(values(&got), want, "{}", late.log());
    let status = late
        .terminate(Duration::from_secs(30))
        .expect("exits after SIGTERM");
    assert!(status.success(), "{}", late.log());
    if started.elapsed() < Duration::from_secs(50) {
        assert!(
            never.wait_exit(Duration::ZERO).is_none(),
            "gave up on the closed port after {:?}, before its connect budget\n{}",
            started.elapsed(),
            never.log()
        );
    }

    let status = never
        .wait_exit(Duration::from_secs(100))
        .unwrap_or_else(|| {
            panic!(
                "still running {:?} after start against a closed port\n{}",
                started.elapsed(),
                never.log()
            )
        });
    let elapsed = started.elapsed();
    let log = never.log();
    assert_eq!(status.code(), Some(1), "{log}");
    let last = log
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    for want in [
        "cluster A".to_string(),
        dead.to_string(),
        "gave up after".to_string(),
    ] {
        assert!(
            last.contains(&want),
            "the final error lacks `{want}`: {last}\n{log}"
        );
    }
    assert!(
        elapsed >= Duration::from_secs(50),
        "gave up after {elapsed:?}, before its connect budget\n{log}"
    );
    eprintln!("never up: exit 1 after {elapsed:?}: {last}");
}
