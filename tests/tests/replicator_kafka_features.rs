//! Replicator features that only a real Apache Kafka can show: partition growth while
//! mirroring, topic config sync with real config sources, a compacted source (the log cleaner
//! actually run), a remote topic that cannot take a source batch, a remote topic deleted while
//! running, a source topic deleted while running, LogAppendTime topics on both sides.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use protocol_client::admin::{Admin, AlterOp};
use protocol_client::cluster::{ClientConfig, Cluster};
use replicator::formats::{Checkpoint, OffsetSync};
use replicator::internal::read_to_end;
use strait_tests::kafka::{start_clusters, KafkaCluster, KafkaOptions};
use strait_tests::reference::{self, Outgoing};
use strait_tests::strait::{mm2_properties, strait_command, StraitProcess};

fn numbered(from: usize, to: usize) -> Vec<Outgoing> {
    (from..to)
        .map(|i| Outgoing::kv(format!("k{i}"), format!("v{i}")))
        .collect()
}

fn values(recs: &[reference::RefRecord]) -> Vec<String> {
    recs.iter()
        .map(|r| String::from_utf8(r.value.clone().unwrap_or_default()).unwrap())
        .collect()
}

fn wait_until(what: &str, within: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn high_watermark(bootstrap: &str, topic: &str, partition: i32) -> i64 {
    reference::try_watermarks(bootstrap, topic, partition).map_or(-1, |w| w.1)
}

fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

async fn admin(bootstrap: &str) -> Admin {
    Admin::new(
        Cluster::connect(ClientConfig::new(bootstrap))
            .await
            .unwrap(),
    )
}

/// Deletes `topics`, each of which must exist.
fn delete_topics(bootstrap: &str, topics: &[&str]) {
    let names: Vec<String> = topics.iter().map(|t| t.to_string()).collect();
    block_on(async {
        for (topic, r) in admin(bootstrap).await.delete_topics(&names).await.unwrap() {
            r.unwrap_or_else(|e| panic!("delete {topic}: {e}"));
        }
    });
}

/// Non-default topic configs of `topic` as the broker reports them: (value, source).
fn topic_configs(bootstrap: &str, topic: &str) -> BTreeMap<String, (String, String)> {
    block_on(async {
        let a = admin(bootstrap).await;
        let mut out = BTreeMap::new();
        for (_, entries) in a
            .describe_topic_configs(&[topic.to_string()])
            .await
            .unwrap()
        {
            for e in entries.unwrap() {
                if let Some(v) = e.value {
                    out.insert(e.name, (v, format!("{:?}", e.source)));
                }
            }
        }
        out
    })
}

/// The source topic grows from 3 to 6 partitions while Strait mirrors it: the remote topic
/// grows too and the new partitions are mirrored within the refresh interval, nothing lost.
#[test]
fn source_partition_growth_is_mirrored() {
    let clusters = start_clusters("grow", 2);
    let (a, b) = (clusters[0].bootstrap(), clusters[1].bootstrap());
    reference::create_topic(&a, "g", 3);
    for p in 0..3 {
        reference::produce(&a, "g", p, &numbered(0, 50), &[]);
    }
    let dir = tempfile::tempdir().unwrap();
    let mut strait = StraitProcess::start(&mm2_properties(&a, &b, ""), dir.path());
    wait_until("first partitions mirrored", Duration::from_secs(60), || {
        (0..3).all(|p| high_watermark(&b, "A.g", p) == 50)
    });
    block_on(async { admin(&a).await.create_partitions("g", 6).await.unwrap() });
    for p in 0..6 {
        reference::produce(&a, "g", p, &numbered(100, 130), &[]);
    }
    // refresh.topics.interval.seconds = 2 in the test properties.
    wait_until("grown partitions mirrored", Duration::from_secs(60), || {
        (0..6).all(|p| high_watermark(&b, "A.g", p) == if p < 3 { 80 } else { 30 })
    });
    for p in 3..6 {
        let got = reference::consume(&b, "A.g", p, 0, 30, Duration::from_secs(20));
        let want: Vec<String> = (100..130).map(|i| format!("v{i}")).collect();
        assert_eq!(values(&got), want, "partition {p}");
    }
    let status = strait.terminate(Duration::from_secs(30)).expect("exits");
    assert!(status.success(), "{}", strait.log());
}

/// Topic config sync with real config sources: a non-default source config is carried (at
/// creation and when it changes later), broker defaults are not, MM2's exclude list is honoured,
/// and an override removed on the source is removed on the target.
#[test]
fn topic_configs_are_synced_from_real_config_sources() {
    let clusters = start_clusters("cfg", 2);
    let (a, b) = (clusters[0].bootstrap(), clusters[1].bootstrap());
    reference::create_topic_with_configs(
        &a,
        "c",
        1,
        &[
            ("retention.ms", "86400000"),
            ("cleanup.policy", "compact,delete"),
            // Excluded by MM2's default config.properties.exclude.
            ("message.timestamp.type", "LogAppendTime"),
            ("min.insync.replicas", "1"),
        ],
    );
    reference::produce(&a, "c", 0, &numbered(0, 10), &[]);
    let dir = tempfile::tempdir().unwrap();
    let mut strait = StraitProcess::start(
        &mm2_properties(&a, &b, "sync.topic.configs.interval.seconds = 1\n"),
        dir.path(),
    );
    wait_until("remote topic", Duration::from_secs(60), || {
        high_watermark(&b, "A.c", 0) == 10
    });
    let remote = topic_configs(&b, "A.c");
    let get = |m: &BTreeMap<String, (String, String)>, k: &str| m.get(k).cloned();
    assert_eq!(
        get(&remote, "retention.ms").map(|v| v.0),
        Some("86400000".into())
    );
    assert_eq!(
        get(&remote, "cleanup.policy").map(|v| v.0),
        Some("compact,delete".into())
    );
    // Not carried: excluded names keep the target's default.
    assert_eq!(
        get(&remote, "message.timestamp.type").map(|v| v.0),
        Some("CreateTime".into()),
        "{remote:?}"
    );
    // A broker default of the source (segment.bytes) is not written as a topic override.
    let seg = get(&remote, "segment.bytes").expect("segment.bytes described");
    assert!(
        !seg.1.contains("DynamicTopic"),
        "broker default carried as a topic override: {seg:?}"
    );
    // A later change on the source reaches the target within the sync interval.
    block_on(async {
        admin(&a)
            .await
            .incremental_alter_topic_configs(
                "c",
                &[("retention.ms".into(), AlterOp::Set, Some("3600000".into()))],
            )
            .await
            .unwrap()
    });
    wait_until("changed config synced", Duration::from_secs(30), || {
        get(&topic_configs(&b, "A.c"), "retention.ms").map(|v| v.0) == Some("3600000".into())
    });
    // An override removed on the source is removed on the target (use.defaults.from=target,
    // as MM2 4.x DELETEs it): the remote topic falls back to the target's default. Before, the
    // stale override stayed forever.
    block_on(async {
        admin(&a)
            .await
            .incremental_alter_topic_configs("c", &[("retention.ms".into(), AlterOp::Delete, None)])
            .await
            .unwrap()
    });
    wait_until("removed override synced", Duration::from_secs(30), || {
        get(&topic_configs(&b, "A.c"), "retention.ms")
            .is_some_and(|v| !v.1.contains("DynamicTopic"))
    });
    assert_eq!(
        get(&topic_configs(&b, "A.c"), "cleanup.policy").map(|v| v.0),
        Some("compact,delete".into()),
        "other overrides stay"
    );
    let status = strait.terminate(Duration::from_secs(30)).expect("exits");
    assert!(status.success(), "{}", strait.log());
}

/// A compacted source topic whose log cleaner has actually run (offset gaps inside and
/// between batches, tombstones): records arrive byte-identical in content and order, remote
/// offsets are contiguous, and every offset sync maps an upstream offset to the downstream
/// offset of the same record.
#[test]
fn compacted_source_with_gaps_mirrors_exactly() {
    let clusters = start_clusters("compact", 2);
    let (a, b) = (clusters[0].bootstrap(), clusters[1].bootstrap());
    reference::create_topic_with_configs(
        &a,
        "cmp",
        1,
        &[
            ("cleanup.policy", "compact"),
            ("segment.ms", "100"),
            ("min.cleanable.dirty.ratio", "0.01"),
            ("delete.retention.ms", "86400000"),
            ("min.compaction.lag.ms", "0"),
        ],
    );
    // 20 keys written 10 times each, plus tombstones for 5 keys; several produce calls so
    // batches span rewritten keys.
    for round in 0..10 {
        let recs: Vec<Outgoing> = (0..20)
            .map(|k| Outgoing::kv(format!("key{k}"), format!("r{round}-k{k}")))
            .collect();
        reference::produce(&a, "cmp", 0, &recs, &[]);
        std::thread::sleep(Duration::from_millis(120));
    }
    let tombstones: Vec<Outgoing> = (0..5)
        .map(|k| Outgoing {
            key: Some(format!("key{k}").into_bytes()),
            value: None,
            ..Outgoing::default()
        })
        .collect();
    reference::produce(&a, "cmp", 0, &tombstones, &[]);
    std::thread::sleep(Duration::from_millis(200));
    // One more record rolls the active segment, so the cleaner can clean everything before.
    reference::produce(&a, "cmp", 0, &[Outgoing::kv("last", "last")], &[]);
    let (_, hi) = reference::watermarks(&a, "cmp", 0);
    assert_eq!(hi, 206);
    // Wait until the cleaner removed records (fewer records readable than offsets).
    let deadline = Instant::now() + Duration::from_secs(90);
    let source = loop {
        let all = reference::consume_until_end(&a, "cmp", 0);
        if all.len() < 100 {
            break all;
        }
        assert!(
            Instant::now() < deadline,
            "the log cleaner did not run ({} records left)",
            all.len()
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    let dir = tempfile::tempdir().unwrap();
    let mut strait =
        StraitProcess::start(&mm2_properties(&a, &b, "offset.lag.max = 0\n"), dir.path());
    let n = source.len() as i64;
    wait_until("compacted topic mirrored", Duration::from_secs(60), || {
        high_watermark(&b, "A.cmp", 0) == n
    });
    let remote = reference::consume(&b, "A.cmp", 0, 0, source.len(), Duration::from_secs(20));
    let strip = |r: &reference::RefRecord| {
        (
            r.key.clone(),
            r.value.clone(),
            r.headers.clone(),
            r.timestamp,
        )
    };
    assert_eq!(
        remote.iter().map(strip).collect::<Vec<_>>(),
        source.iter().map(strip).collect::<Vec<_>>()
    );
    assert!(
        remote.iter().enumerate().all(|(i, r)| r.offset == i as i64),
        "remote offsets are contiguous"
    );
    let status = strait.terminate(Duration::from_secs(30)).expect("exits");
    assert!(status.success(), "{}", strait.log());
    // Every offset sync names an upstream offset and the downstream offset of the same record
    // (or the end).
    let by_upstream: BTreeMap<i64, i64> = source
        .iter()
        .zip(&remote)
        .map(|(s, r)| (s.offset, r.offset))
        .collect();
    let syncs = block_on(async {
        let c = Cluster::connect(ClientConfig::new(&a)).await.unwrap();
        read_to_end(&c, "A", "mm2-offset-syncs.B.internal")
            .await
            .unwrap()
    });
    let mut checked = 0;
    for r in syncs {
        let s = OffsetSync::decode(&r.key.unwrap(), r.value.as_deref()).unwrap();
        if s.topic != "cmp" {
            continue;
        }
        let want = by_upstream
            .range(s.upstream_offset..)
            .next()
            .map(|(_, d)| *d)
            .unwrap_or(n);
        assert_eq!(s.downstream_offset, want, "sync {s:?}");
        checked += 1;
    }
    assert!(checked > 0, "no offset syncs for the compacted topic");
}

/// The remote topic's `max.message.bytes` is smaller than a source batch and Strait may not
/// raise it (the topic exists with that override and config sync is off): the batch is refused
/// for good, the partition stops right before it, and Strait exits non-zero naming the topic,
/// the offsets and MESSAGE_TOO_LARGE / RECORD_LIST_TOO_LARGE.
#[test]
fn a_remote_topic_too_small_for_a_batch_stops_loudly() {
    let clusters = start_clusters("toolarge", 2);
    let (a, b) = (clusters[0].bootstrap(), clusters[1].bootstrap());
    reference::create_topic(&a, "big", 1);
    reference::create_topic_with_configs(&b, "A.big", 1, &[("max.message.bytes", "2000")]);
    reference::produce(&a, "big", 0, &numbered(0, 5), &[]);
    let large: Vec<Outgoing> = (0..3)
        .map(|i| Outgoing::kv(format!("big{i}"), "x".repeat(5000)))
        .collect();
    reference::produce(&a, "big", 0, &large, &[]);
    reference::produce(&a, "big", 0, &numbered(10, 15), &[]);
    let dir = tempfile::tempdir().unwrap();
    let mut strait = StraitProcess::start(
        &mm2_properties(&a, &b, "sync.topic.configs.enabled = false\n"),
        dir.path(),
    );
    let status = strait
        .wait_exit(Duration::from_secs(90))
        .unwrap_or_else(|| panic!("strait kept running:\n{}", strait.log()));
    let log = strait.log();
    assert!(!status.success(), "{log}");
    assert!(log.contains("big/0 offsets 5.."), "{log}");
    assert!(
        log.contains("MessageTooLarge") || log.contains("RecordListTooLarge"),
        "{log}"
    );
    assert_eq!(high_watermark(&b, "A.big", 0), 5, "{log}");
}

/// The remote topic is deleted while Strait runs: it is re-created (or the failure is
/// reported), and what the source holds afterwards arrives; Strait does not look healthy while
/// replicating nothing.
#[test]
fn a_remote_topic_deleted_while_running_is_recreated() {
    let clusters = start_clusters("deleted", 2);
    let (a, b) = (clusters[0].bootstrap(), clusters[1].bootstrap());
    reference::create_topic(&a, "d", 1);
    reference::produce(&a, "d", 0, &numbered(0, 20), &[]);
    let dir = tempfile::tempdir().unwrap();
    let mut strait = StraitProcess::start(&mm2_properties(&a, &b, ""), dir.path());
    wait_until("first records", Duration::from_secs(60), || {
        high_watermark(&b, "A.d", 0) == 20
    });
    delete_topics(&b, &["A.d"]);
    std::thread::sleep(Duration::from_secs(2));
    reference::produce(&a, "d", 0, &numbered(20, 40), &[]);
    // Re-created and refilled: the new remote partition starts at 0 and holds what the source
    // held after the deletion (Strait's map says the old remote records are gone).
    wait_until(
        "records after the deletion",
        Duration::from_secs(180),
        || high_watermark(&b, "A.d", 0) >= 20,
    );
    let (lo, hi) = reference::watermarks(&b, "A.d", 0);
    let got = reference::consume(
        &b,
        "A.d",
        0,
        lo,
        (hi - lo) as usize,
        Duration::from_secs(20),
    );
    let vals = values(&got);
    assert!(
        vals.ends_with(&(20..40).map(|i| format!("v{i}")).collect::<Vec<_>>()),
        "{vals:?}\n{}",
        strait.log()
    );
    let status = strait.terminate(Duration::from_secs(30)).expect("exits");
    assert!(status.success(), "{}", strait.log());
}

/// A source topic deleted while Strait runs: its partitions are unassigned (logged once), the
/// other topics keep flowing, and the process stays healthy and exits cleanly.
#[test]
fn a_source_topic_deleted_while_running_is_unassigned() {
    let clusters = start_clusters("srcdel", 2);
    let (a, b) = (clusters[0].bootstrap(), clusters[1].bootstrap());
    reference::create_topic(&a, "keep", 1);
    reference::create_topic(&a, "gone", 2);
    reference::produce(&a, "keep", 0, &numbered(0, 10), &[]);
    reference::produce(&a, "gone", 0, &numbered(0, 10), &[]);
    let dir = tempfile::tempdir().unwrap();
    let mut strait = StraitProcess::start(&mm2_properties(&a, &b, ""), dir.path());
    wait_until("first records", Duration::from_secs(60), || {
        high_watermark(&b, "A.keep", 0) == 10 && high_watermark(&b, "A.gone", 0) == 10
    });
    delete_topics(&a, &["gone"]);
    wait_until("the deletion noticed", Duration::from_secs(60), || {
        strait.log().contains("source topic deleted")
    });
    reference::produce(&a, "keep", 0, &numbered(10, 30), &[]);
    wait_until(
        "records after the deletion",
        Duration::from_secs(60),
        || high_watermark(&b, "A.keep", 0) == 30,
    );
    let log = strait.log();
    assert_eq!(
        log.matches("source topic deleted").count(),
        1,
        "logged once for the topic\n{log}"
    );
    assert_eq!(
        high_watermark(&b, "A.gone", 0),
        10,
        "the remote topic stays"
    );
    let status = strait.terminate(Duration::from_secs(30)).expect("exits");
    assert!(status.success(), "{}", strait.log());
}

/// A source topic with `message.timestamp.type=LogAppendTime` mirrored into a target whose
/// topics default to LogAppendTime too: Kafka refuses a produced batch that claims
/// LogAppendTime (INVALID_TIMESTAMP), so the forwarded batches go without that flag and the
/// target stamps its own append time, as it does for MirrorMaker 2's records. Every record
/// arrives once, in order.
#[test]
fn log_append_time_source_into_log_append_time_target() {
    let source = KafkaCluster::start("lat-src");
    let target = KafkaCluster::start_with(
        "lat-tgt",
        KafkaOptions::brokers(1).property("log.message.timestamp.type", "LogAppendTime"),
    );
    let (a, b) = (source.bootstrap(), target.bootstrap());
    reference::create_topic_with_configs(
        &a,
        "stamped",
        1,
        &[("message.timestamp.type", "LogAppendTime")],
    );
    reference::produce(&a, "stamped", 0, &numbered(0, 50), &[]);
    let dir = tempfile::tempdir().unwrap();
    let mut strait = StraitProcess::start(&mm2_properties(&a, &b, ""), dir.path());
    wait_until("mirrored", Duration::from_secs(60), || {
        high_watermark(&b, "A.stamped", 0) >= 50
    });
    reference::produce(&a, "stamped", 0, &numbered(50, 60), &[]);
    wait_until("mirrored after the first", Duration::from_secs(60), || {
        high_watermark(&b, "A.stamped", 0) >= 60
    });
    let got = reference::consume(&b, "A.stamped", 0, 0, 60, Duration::from_secs(20));
    assert_eq!(
        values(&got),
        (0..60).map(|i| format!("v{i}")).collect::<Vec<_>>(),
        "{}",
        strait.log()
    );
    assert_eq!(high_watermark(&b, "A.stamped", 0), 60, "nothing twice");
    let status = strait.terminate(Duration::from_secs(30)).expect("exits");
    assert!(status.success(), "{}", strait.log());
}

/// A source topic deleted and re-created while Strait runs, once with fewer records than
/// Strait's position and once with more (where a fetch at the old position succeeds in the new
/// log). Either way the partition stops: the topic id changed, and nothing of the new topic is
/// forwarded into the old remote partition at the wrong offsets. The rest goes on, and the exit
/// status says a partition was stopped.
#[test]
fn a_recreated_source_topic_stops_its_partitions_and_the_exit_status_says_so() {
    let clusters = start_clusters("recreate", 2);
    let (a, b) = (clusters[0].bootstrap(), clusters[1].bootstrap());
    reference::create_topic(&a, "again", 1);
    reference::produce(&a, "again", 0, &numbered(0, 20), &[]);
    reference::create_topic(&a, "longer", 1);
    reference::produce(&a, "longer", 0, &numbered(0, 20), &[]);
    reference::create_topic(&a, "other", 1);
    let dir = tempfile::tempdir().unwrap();
    let mut strait = StraitProcess::start(&mm2_properties(&a, &b, ""), dir.path());
    wait_until("first records", Duration::from_secs(60), || {
        high_watermark(&b, "A.again", 0) == 20 && high_watermark(&b, "A.longer", 0) == 20
    });
    delete_topics(&a, &["again", "longer"]);
    wait_until("the topics gone", Duration::from_secs(30), || {
        reference::try_watermarks(&a, "again", 0).is_err()
            && reference::try_watermarks(&a, "longer", 0).is_err()
    });
    reference::create_topic(&a, "again", 1);
    reference::produce(&a, "again", 0, &numbered(100, 105), &[]);
    reference::create_topic(&a, "longer", 1);
    reference::produce(&a, "longer", 0, &numbered(100, 140), &[]);
    wait_until("both partitions stopped", Duration::from_secs(90), || {
        let log = strait.log();
        ["again", "longer"].iter().all(|t| {
            log.lines()
                .any(|l| l.contains("partition stopped") && l.contains(t))
        })
    });
    reference::produce(&a, "other", 0, &numbered(0, 10), &[]);
    wait_until("the rest goes on", Duration::from_secs(60), || {
        high_watermark(&b, "A.other", 0) == 10
    });
    for t in ["A.again", "A.longer"] {
        assert_eq!(
            high_watermark(&b, t, 0),
            20,
            "{t}: nothing forwarded\n{}",
            strait.log()
        );
    }
    let status = strait.terminate(Duration::from_secs(30)).expect("exits");
    assert!(!status.success(), "a stopped partition fails the run");
    assert!(
        strait.log().contains("partition(s) stopped during the run"),
        "{}",
        strait.log()
    );
}

/// A `LogAppendTime` source topic mirrored into a `CreateTime` remote topic: the remote's
/// consumers read the same timestamp for every record as the source's consumers (the source's
/// append time), as with MirrorMaker 2, not the producers' create times the records hold (what a
/// remote topic showed when the batch was forwarded as is and the broker cleared its flag).
#[test]
fn log_append_time_source_into_create_time_target_keeps_the_timestamps_read() {
    let clusters = start_clusters("latct", 2);
    let (a, b) = (clusters[0].bootstrap(), clusters[1].bootstrap());
    reference::create_topic_with_configs(
        &a,
        "stamped",
        1,
        &[("message.timestamp.type", "LogAppendTime")],
    );
    let old = 1_600_000_000_000;
    let records: Vec<Outgoing> = (0..30)
        .map(|i| Outgoing {
            timestamp: Some(old + i),
            ..Outgoing::kv(format!("k{i}"), format!("v{i}"))
        })
        .collect();
    reference::produce(&a, "stamped", 0, &records, &[("compression.type", "lz4")]);
    let dir = tempfile::tempdir().unwrap();
    let mut strait = StraitProcess::start(&mm2_properties(&a, &b, ""), dir.path());
    wait_until("mirrored", Duration::from_secs(60), || {
        high_watermark(&b, "A.stamped", 0) >= 30
    });
    let source = reference::consume(&a, "stamped", 0, 0, 30, Duration::from_secs(20));
    let remote = reference::consume(&b, "A.stamped", 0, 0, 30, Duration::from_secs(20));
    assert_eq!(values(&remote), values(&source), "{}", strait.log());
    let times = |rs: &[reference::RefRecord]| -> Vec<Option<i64>> {
        rs.iter().map(|r| r.timestamp).collect()
    };
    assert!(
        times(&source)
            .iter()
            .all(|t| t.is_some_and(|t| t > old + 1000)),
        "the source stamped its append time: {:?}",
        times(&source)
    );
    assert_eq!(times(&remote), times(&source), "timestamps as read");
    let status = strait.terminate(Duration::from_secs(30)).expect("exits");
    assert!(status.success(), "{}", strait.log());
}

/// The latest checkpoint per (group, topic, partition) in `topic` on a cluster:
/// (upstream offset, downstream offset).
fn latest_checkpoints(
    bootstrap: &str,
    alias: &str,
    topic: &str,
) -> BTreeMap<(String, String, i32), (i64, i64)> {
    let cluster = block_on(Cluster::connect(ClientConfig::new(bootstrap))).unwrap();
    let mut got = BTreeMap::new();
    for r in block_on(read_to_end(&cluster, alias, topic)).unwrap() {
        let cp = Checkpoint::decode(r.key.as_deref().unwrap(), r.value.as_deref()).unwrap();
        got.insert(
            (cp.consumer_group_id.clone(), cp.topic.clone(), cp.partition),
            (cp.upstream_offset, cp.downstream_offset),
        );
    }
    got
}

/// Creates `topic` on `a` and writes, on each of its partitions, committed and aborted
/// transactions interleaved with plain records:
///
/// | offset | 0 | 1 | 2 | 3 | 4 | 5 | 6 | 7 | 8 |
/// |---|---|---|---|---|---|---|---|---|---|
/// | record | a0 | b0 (aborted) | a1 | b1 (aborted) | n0 (plain) | ABORT | COMMIT | b2 | COMMIT |
///
/// Mirrored read_committed: a0, a1, n0, b2 at remote offsets 0..4.
fn write_interleaved_transactions(a: &str, topic: &str, partitions: i32) {
    use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
    reference::create_topic(a, topic, partitions);
    let transactional = |name: &str| -> ThreadedProducer<DefaultProducerContext> {
        let p: ThreadedProducer<DefaultProducerContext> = reference::base_config(a)
            .set("transactional.id", strait_tests::unique(name))
            .create()
            .expect("transactional producer");
        p.init_transactions(Duration::from_secs(30)).unwrap();
        p
    };
    let (keep, aborting) = (transactional("keep"), transactional("aborting"));
    let plain: ThreadedProducer<DefaultProducerContext> =
        reference::base_config(a).create().expect("producer");
    // One record to every partition, flushed, so the source order is this program's order.
    let send = |p: &ThreadedProducer<DefaultProducerContext>, v: &str| {
        for partition in 0..partitions {
            p.send(
                BaseRecord::<[u8], [u8]>::to(topic)
                    .partition(partition)
                    .payload(v.as_bytes()),
            )
            .map_err(|(e, _)| e)
            .unwrap();
        }
        p.flush(Duration::from_secs(10)).unwrap();
    };
    keep.begin_transaction().unwrap();
    aborting.begin_transaction().unwrap();
    send(&keep, "a0"); // 0
    send(&aborting, "b0"); // 1
    send(&keep, "a1"); // 2
    send(&aborting, "b1"); // 3
    send(&plain, "n0"); // 4
    aborting.abort_transaction(Duration::from_secs(30)).unwrap(); // 5: ABORT marker
    keep.commit_transaction(Duration::from_secs(30)).unwrap(); // 6: COMMIT marker
    aborting.begin_transaction().unwrap();
    send(&aborting, "b2"); // 7
    aborting
        .commit_transaction(Duration::from_secs(30))
        .unwrap(); // 8: COMMIT marker
    assert_eq!(high_watermark(a, topic, 0), 9, "source layout as planned");
}

/// read_committed with transactions interleaved across two partitions: a transaction that
/// commits and one that aborts are open at the same time on both partitions, with
/// non-transactional records between them, then the aborting producer commits a later
/// transaction. Only committed and plain records reach the target, in source order, on both
/// partitions; checkpoints on an aborted record, on a marker, on a plain record and at the end
/// translate to the next record that was forwarded (never ahead of it).
#[test]
fn interleaved_transactions_across_partitions_mirror_and_translate_exactly() {
    let clusters = start_clusters("txmix", 2);
    let (a, b) = (clusters[0].bootstrap(), clusters[1].bootstrap());
    write_interleaved_transactions(&a, "mix", 2);
    for (group, offset) in [
        ("g-aborted", 1),
        ("g-marker", 5),
        ("g-plain", 4),
        ("g-end", 9),
    ] {
        reference::commit_offsets(&a, group, &[("mix", 0, offset), ("mix", 1, offset)]);
    }

    let dir = tempfile::tempdir().unwrap();
    let mut strait = StraitProcess::start(&mm2_properties(&a, &b, ""), dir.path());
    wait_until("mirrored", Duration::from_secs(60), || {
        (0..2).all(|p| high_watermark(&b, "A.mix", p) == 4)
    });
    for p in 0..2 {
        let got = reference::consume(&b, "A.mix", p, 0, 4, Duration::from_secs(20));
        assert_eq!(values(&got), ["a0", "a1", "n0", "b2"], "partition {p}");
    }
    // Upstream -> downstream: a0 0->0, a1 2->1, n0 4->2, b2 7->3, end 9->4.
    let want: BTreeMap<String, (i64, i64)> = [
        ("g-aborted", (1, 1)),
        ("g-marker", (5, 3)),
        ("g-plain", (4, 2)),
        ("g-end", (9, 4)),
    ]
    .into_iter()
    .map(|(g, o)| (g.to_string(), o))
    .collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got: BTreeMap<(String, i32), (i64, i64)> =
            latest_checkpoints(&b, "B", "A.checkpoints.internal")
                .into_iter()
                .map(|((g, _, p), o)| ((g, p), o))
                .collect();
        let complete = want
            .iter()
            .all(|(g, o)| (0..2).all(|p| got.get(&(g.clone(), p)) == Some(o)));
        if complete {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "checkpoints {got:?}, want {want:?} on both partitions\n{}",
            strait.log()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    let status = strait.terminate(Duration::from_secs(30)).expect("exits");
    assert!(status.success(), "{}", strait.log());
}

/// Failback A -> B -> A: consumers moved from A to B read `A.fb` there; to move them back,
/// the flow B->A writes checkpoints for their groups naming A's own topic `fb` (as MM2's
/// `renameTopicPartition` does; MM2 has no offset syncs to translate them and writes none),
/// translated exactly through the A->B offset map, and syncs them into the groups on A. The
/// source has transactions (aborted records and markers), so offsets on A and B differ.
/// Each group continues on A at the record after the last one it consumed on B.
#[test]
fn failback_checkpoints_move_groups_back_exactly() {
    let clusters = start_clusters("failback", 2);
    let (a, b) = (clusters[0].bootstrap(), clusters[1].bootstrap());
    write_interleaved_transactions(&a, "fb", 1);
    let dir = tempfile::tempdir().unwrap();
    let config = mm2_properties(
        &a,
        &b,
        "B->A.enabled = true\n\
         B->A.topics = .*\n\
         sync.group.offsets.enabled = true\n",
    );
    let mut strait = StraitProcess::start(&config, dir.path());
    wait_until("mirrored", Duration::from_secs(60), || {
        high_watermark(&b, "A.fb", 0) == 4
    });
    // On B: a0 a1 n0 b2 at 0..4; on A the same records at 0, 2, 4, 7 and the end at 9.
    let moved = [
        ("g-fb-1", 1, 2),
        ("g-fb-2", 2, 4),
        ("g-fb-3", 3, 7),
        ("g-fb-end", 4, 9),
    ];
    for (group, on_b, _) in moved {
        reference::commit_offsets(&b, group, &[("A.fb", 0, on_b)]);
    }
    let want: BTreeMap<(String, String, i32), (i64, i64)> = moved
        .iter()
        .map(|&(g, on_b, on_a)| ((g.to_string(), "fb".to_string(), 0), (on_b, on_a)))
        .collect();
    let mut got = BTreeMap::new();
    wait_until("failback checkpoints on A", Duration::from_secs(60), || {
        got = latest_checkpoints(&a, "A", "B.checkpoints.internal");
        got.retain(|k, _| k.0.starts_with("g-fb"));
        got == want
    });
    // The groups on A were absent: group offset sync commits the exact offsets.
    let a_admin = block_on(admin(&a));
    for (group, _, on_a) in moved {
        wait_until(
            &format!("{group} synced on A"),
            Duration::from_secs(30),
            || {
                block_on(a_admin.fetch_offsets(group, None))
                    .unwrap()
                    .iter()
                    .any(|o| o.topic == "fb" && o.partition == 0 && o.offset == on_a)
            },
        );
    }
    // The record each group reads next is the same on both clusters.
    for (group, on_b, on_a) in moved {
        if on_b < 4 {
            let next_b = reference::consume(&b, "A.fb", 0, on_b, 1, Duration::from_secs(20));
            let next_a = reference::consume(&a, "fb", 0, on_a, 1, Duration::from_secs(20));
            assert_eq!(values(&next_a), values(&next_b), "{group}");
        }
    }
    // `strait translate` finds them, confirmed by the A->B map.
    let config_path = dir.path().join("translate.properties");
    std::fs::write(&config_path, &config).unwrap();
    let (status, out) = strait_command(
        &[
            "translate",
            "--config",
            config_path.to_str().unwrap(),
            "--source",
            "B",
            "--target",
            "A",
            "--group",
            "g-fb-3",
        ],
        &[],
        Duration::from_secs(60),
    );
    assert!(status.is_some_and(|s| s.success()), "{out}");
    assert!(
        out.lines().any(|l| l == "fb\t0\t7\texact"),
        "strait translate:\n{out}"
    );
    let status = strait.terminate(Duration::from_secs(30)).expect("exits");
    assert!(status.success(), "{}", strait.log());

    // A loses `fb` (deleted, re-created, new records): the A->B map no longer describes it, so
    // B->A writes no failback checkpoint that would point into the new records.
    delete_topics(&a, &["fb"]);
    wait_until("fb gone", Duration::from_secs(30), || {
        reference::try_watermarks(&a, "fb", 0).is_err()
    });
    reference::create_topic(&a, "fb", 1);
    reference::produce(&a, "fb", 0, &numbered(100, 110), &[]);
    reference::commit_offsets(&b, "g-fb-lost", &[("A.fb", 0, 2)]);
    let only_back = config.replace("A->B.enabled = true", "A->B.enabled = false");
    let dir = tempfile::tempdir().unwrap();
    let mut strait = StraitProcess::start(&only_back, dir.path());
    wait_until(
        "the failback check to refuse",
        Duration::from_secs(60),
        || strait.log().contains("no longer holds at fb/0"),
    );
    std::thread::sleep(Duration::from_secs(3));
    let got = latest_checkpoints(&a, "A", "B.checkpoints.internal");
    assert!(
        !got.keys().any(|k| k.0 == "g-fb-lost"),
        "a failback checkpoint into the re-created topic: {got:?}"
    );
    let status = strait.terminate(Duration::from_secs(30)).expect("exits");
    assert!(status.success(), "{}", strait.log());
}
