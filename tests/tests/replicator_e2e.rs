//! Strait end to end between two real tansu clusters, with librdkafka writing the source data
//! and reading both sides: remote names and partition counts, byte-identical records, exact
//! offset syncs and checkpoints, heartbeats, internal topics not mirrored.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use protocol_client::admin::Admin;
use protocol_client::cluster::{ClientConfig, Cluster};
use replicator::config::{Config, SystemSecrets};
use replicator::formats::{Checkpoint, Heartbeat, OffsetSync};
use replicator::internal::read_to_end;
use strait_tests::reference::{self, Outgoing, RefRecord};
use strait_tests::BrokerKind;

fn records(n: usize, tag: &str) -> Vec<Outgoing> {
    (0..n)
        .map(|i| Outgoing {
            key: (i % 4 != 0).then(|| format!("{tag}-k{i}").into_bytes()),
            value: (i % 9 != 5).then(|| format!("{tag}-v{i}-{}", "z".repeat(i % 40)).into_bytes()),
            headers: if i % 3 == 0 {
                vec![
                    ("trace".into(), Some(vec![i as u8])),
                    ("empty".into(), None),
                ]
            } else {
                vec![]
            },
            timestamp: Some(1_700_000_000_000 + i as i64),
        })
        .collect()
}

fn commit_group(bootstrap: &str, group: &str, offsets: &[(&str, i32, i64)]) {
    reference::commit_offsets(bootstrap, group, offsets);
}

async fn mirrors_byte_identical_with_exact_syncs_checkpoints_and_heartbeats(kind: BrokerKind) {
    strait_tests::init_tracing();
    let clusters = strait_tests::start_pair(kind, "e2e");
    let (a, b) = (clusters[0].bootstrap(), clusters[1].bootstrap());
    // Source data, written by librdkafka with several codecs and producers.
    let mut expected: BTreeMap<(String, i32), Vec<Outgoing>> = BTreeMap::new();
    // `orders` with a larger-than-default max.message.bytes, which the remote topic must carry.
    let admin_a = Admin::new(Cluster::connect(ClientConfig::new(&a)).await.unwrap());
    for (_, r) in admin_a
        .create_topics(&[protocol_client::admin::NewTopic {
            name: "orders".into(),
            partitions: 3,
            replication_factor: -1,
            configs: vec![("max.message.bytes".into(), "2097152".into())],
        }])
        .await
        .unwrap()
    {
        r.expect("create orders");
    }
    reference::blocking(|| {
        reference::create_topic(&a, "events", 1);
        for p in 0..3 {
            let recs = records(150 + 20 * p as usize, &format!("o{p}"));
            reference::produce(
                &a,
                "orders",
                p,
                &recs,
                &[("compression.codec", "zstd"), ("batch.num.messages", "40")],
            );
            expected.insert(("orders".into(), p), recs);
        }
        for (topic, codec) in [("logs", "snappy"), ("plain", "none")] {
            reference::create_topic(&a, topic, 1);
            let recs = records(90, topic);
            reference::produce(
                &a,
                topic,
                0,
                &recs,
                &[("compression.codec", codec), ("batch.num.messages", "20")],
            );
            expected.insert((topic.into(), 0), recs);
        }
        let recs = records(120, "e");
        reference::produce(
            &a,
            "events",
            0,
            &recs,
            &[
                ("compression.codec", "lz4"),
                ("enable.idempotence", "true"),
                ("batch.num.messages", "25"),
            ],
        );
        expected.insert(("events".into(), 0), recs);
        commit_group(
            &a,
            "analytics",
            &[
                ("orders", 0, 0),
                ("orders", 1, 85),
                ("orders", 2, 190),
                ("events", 0, 60),
            ],
        );
    });

    let config = Config::from_properties_str(
        &strait_tests::strait::mm2_properties(&a, &b, ""),
        "test.properties",
        &SystemSecrets,
    )
    .expect("config");
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let runner = tokio::spawn(replicator::run::run(config, stop_rx));

    // Every record arrives, byte for byte (librdkafka reads both sides).
    for ((topic, p), recs) in &expected {
        let remote = format!("A.{topic}");
        let got = reference::blocking(|| {
            reference::consume(&b, &remote, *p, 0, recs.len(), Duration::from_secs(60))
        });
        let source = reference::blocking(|| {
            reference::consume(&a, topic, *p, 0, recs.len(), Duration::from_secs(30))
        });
        assert_eq!(
            got, source,
            "{remote}/{p} identical to {topic}/{p}, offsets included"
        );
    }

    let target = Cluster::connect(ClientConfig::new(&b)).await.unwrap();
    let source = Cluster::connect(ClientConfig::new(&a)).await.unwrap();
    // Checkpoints for the group, exact.
    let want_cps: BTreeMap<(String, i32), (i64, i64)> = [
        (("A.orders".to_string(), 0), (0, 0)),
        (("A.orders".to_string(), 1), (85, 85)),
        (("A.orders".to_string(), 2), (190, 190)),
        (("A.events".to_string(), 0), (60, 60)),
    ]
    .into_iter()
    .collect();
    let mut cps = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while cps.len() < want_cps.len() {
        assert!(Instant::now() < deadline, "checkpoints: got {cps:?}");
        cps.clear();
        for r in read_to_end(&target, "B", "A.checkpoints.internal")
            .await
            .unwrap()
        {
            let cp = Checkpoint::decode(r.key.as_deref().unwrap(), r.value.as_deref()).unwrap();
            assert_eq!(cp.consumer_group_id, "analytics");
            cps.insert(
                (cp.topic.clone(), cp.partition),
                (cp.upstream_offset, cp.downstream_offset),
            );
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(cps, want_cps, "checkpoints translate exactly");

    let _ = stop_tx.send(true);
    tokio::time::timeout(Duration::from_secs(20), runner)
        .await
        .expect("stops in time")
        .unwrap()
        .expect("clean stop");

    // Remote topics: names, partition counts; internal topics not mirrored.
    let md = target.refresh_all_topics().await.unwrap();
    assert_eq!(md.topics["A.orders"].partitions.len(), 3);
    assert_eq!(md.topics["A.events"].partitions.len(), 1);
    for name in md.topics.keys() {
        assert!(
            !name.starts_with("A.mm2-")
                && !name.starts_with("A.__")
                && !name.contains("checkpoints.internal."),
            "internal topic mirrored: {name}"
        );
    }
    // Remote topics accept every batch the source accepted.
    let described = Admin::new(source.clone())
        .describe_topic_configs(&["orders".to_string()])
        .await
        .unwrap();
    let src_max = described[0]
        .1
        .as_ref()
        .unwrap()
        .iter()
        .find(|e| e.name == "max.message.bytes")
        .and_then(|e| e.value.clone());
    let described = Admin::new(target.clone())
        .describe_topic_configs(&["A.orders".to_string()])
        .await
        .unwrap();
    let dst_max = described[0]
        .1
        .as_ref()
        .unwrap()
        .iter()
        .find(|e| e.name == "max.message.bytes")
        .and_then(|e| e.value.clone());
    assert_eq!(
        src_max.as_deref(),
        Some("2097152"),
        "source describes max.message.bytes"
    );
    assert_eq!(
        dst_max, src_max,
        "remote topic carries the source's max.message.bytes"
    );
    // Offset syncs (on the source, MM2 default): every one exact.
    let syncs = read_to_end(&source, "A", "mm2-offset-syncs.B.internal")
        .await
        .unwrap();
    assert!(!syncs.is_empty(), "offset syncs written");
    for r in syncs {
        let s = OffsetSync::decode(r.key.as_deref().unwrap(), r.value.as_deref()).unwrap();
        let up = reference::blocking(|| {
            reference::consume(
                &a,
                &s.topic,
                s.partition,
                s.upstream_offset,
                1,
                Duration::from_secs(10),
            )
        });
        let down = reference::blocking(|| {
            reference::consume(
                &b,
                &format!("A.{}", s.topic),
                s.partition,
                s.downstream_offset,
                1,
                Duration::from_secs(10),
            )
        });
        let strip = |r: &RefRecord| {
            (
                r.key.clone(),
                r.value.clone(),
                r.headers.clone(),
                r.timestamp,
            )
        };
        assert_eq!(strip(&up[0]), strip(&down[0]), "sync {s:?} is exact");
    }
    // Heartbeats on the target decode as MM2's.
    let hbs = read_to_end(&target, "B", "heartbeats").await.unwrap();
    assert!(!hbs.is_empty(), "heartbeats emitted");
    for r in hbs {
        let h = Heartbeat::decode(r.key.as_deref().unwrap(), r.value.as_deref()).unwrap();
        assert_eq!(
            (
                h.source_cluster_alias.as_str(),
                h.target_cluster_alias.as_str()
            ),
            ("A", "B")
        );
        assert!(h.timestamp > 1_700_000_000_000);
    }
}

strait_tests::on_both_brokers!(mirrors_byte_identical_with_exact_syncs_checkpoints_and_heartbeats,);
