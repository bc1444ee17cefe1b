//! Crash and resume against Apache Kafka when the target broker rewrites what Strait forwards:
//! a remote topic with `message.timestamp.type=LogAppendTime` (the broker sets the batch's
//! timestamp type and max timestamp on append) or with a `compression.type` other than the
//! source batches' codec (the broker recompresses each batch). Strait is killed with SIGKILL
//! after the target acknowledged appends it had not committed yet; on restart the remote tail
//! must still be recognised as the copy of the source (`matched the remote tail`), so every
//! record is on the target exactly once.
//!
//! Before the fix, tail matching compared the batches byte for byte: the restart logged "remote
//! partition holds records that do not match the source" and wrote the unmatched tail again.

use std::time::{Duration, Instant};

use strait_tests::kafka::start_clusters;
use strait_tests::reference::{self, Outgoing, RefRecord};
use strait_tests::strait::{mm2_properties, strait_binary, StraitProcess};

const TOTAL: usize = 6000;
const PARTITIONS: i32 = 2;

/// Record `i` of a partition: key, value and one header, so that every field is compared.
fn numbered(partition: i32, from: usize, to: usize) -> Vec<Outgoing> {
    (from..to)
        .map(|i| Outgoing {
            headers: vec![(
                "h".to_string(),
                Some(format!("p{partition}-{i}").into_bytes()),
            )],
            ..Outgoing::kv(format!("k{i}"), format!("v{i}"))
        })
        .collect()
}

fn values(recs: &[RefRecord]) -> Vec<String> {
    recs.iter()
        .map(|r| String::from_utf8(r.value.clone().unwrap_or_default()).unwrap())
        .collect()
}

/// The records without their timestamps (a LogAppendTime target replaces those).
fn without_timestamps(recs: &[RefRecord]) -> Vec<RefRecord> {
    recs.iter()
        .map(|r| RefRecord {
            timestamp: None,
            ..r.clone()
        })
        .collect()
}

/// One scenario: `A.stream` pre-created on B with `remote_configs`; a background writer sends
/// `TOTAL` records per partition to A with librdkafka's `source_codec`; Strait runs, is killed
/// mid-stream once records reached B, and is started again.
fn crash_resume_with_rewritten_remote(
    name: &str,
    remote_configs: &[(&str, &str)],
    source_codec: &'static str,
    keeps_timestamps: bool,
    batch_records: &'static str,
) {
    // Built before anything runs, so that Strait starts while the writer is still writing.
    strait_binary();
    let started = Instant::now();
    let clusters = start_clusters(name, 2);
    let (a, b) = (clusters[0].bootstrap(), clusters[1].bootstrap());
    reference::create_topic(&a, "stream", PARTITIONS);
    reference::create_topic_with_configs(&b, "A.stream", PARTITIONS, remote_configs);
    let dir = tempfile::tempdir().unwrap();
    let config = mm2_properties(&a, &b, "");
    // A writer producing continuously in the background: 30 chunks per partition over a few
    // seconds, so that Strait is killed while records are still arriving.
    let a2 = a.clone();
    let writer = std::thread::spawn(move || {
        for chunk in 0..30 {
            let from = chunk * TOTAL / 30;
            let to = (chunk + 1) * TOTAL / 30;
            for p in 0..PARTITIONS {
                reference::produce(
                    &a2,
                    "stream",
                    p,
                    &numbered(p, from, to),
                    &[
                        ("linger.ms", "1"),
                        ("compression.codec", source_codec),
                        ("batch.num.messages", batch_records),
                    ],
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    });
    let mut first = StraitProcess::start(&config, dir.path());
    let first_started = Instant::now();
    // Let it replicate part of the stream (some records on both remote partitions, and at
    // least one periodic commit of its offset map: every 5 s), then crash it: the target
    // holds acknowledged batches the stored map does not know.
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let his: Vec<i64> = (0..PARTITIONS)
            .map(|p| reference::try_watermarks(&b, "A.stream", p).map_or(0, |w| w.1))
            .collect();
        if his.iter().all(|&h| h > 0) && first_started.elapsed() > Duration::from_secs(10) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no record mirrored yet ({his:?})\n{}",
            first.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let at_kill: Vec<i64> = (0..PARTITIONS)
        .map(|p| reference::watermarks(&b, "A.stream", p).1)
        .collect();
    first.kill9();
    writer.join().unwrap();
    let second = StraitProcess::start(&config, dir.path());
    for p in 0..PARTITIONS {
        let source = reference::consume(&a, "stream", p, 0, TOTAL, Duration::from_secs(30));
        let got = reference::consume(&b, "A.stream", p, 0, TOTAL, Duration::from_secs(90));
        let want: Vec<String> = (0..TOTAL).map(|i| format!("v{i}")).collect();
        assert_eq!(
            values(&got),
            want,
            "partition {p}: every record once, in order\n{}",
            second.log()
        );
        // Offsets, keys, values and headers as on the source; timestamps too unless the
        // remote topic stamps the append time.
        if keeps_timestamps {
            assert_eq!(got, source, "partition {p}: records as on the source");
        } else {
            assert_eq!(
                without_timestamps(&got),
                without_timestamps(&source),
                "partition {p}: records as on the source (timestamps aside)"
            );
        }
    }
    // Nothing beyond the last record (no duplicates), once the second run had time to write
    // anything it would.
    std::thread::sleep(Duration::from_secs(3));
    for p in 0..PARTITIONS {
        let (_, hi) = reference::watermarks(&b, "A.stream", p);
        assert_eq!(
            hi,
            TOTAL as i64,
            "partition {p}: exactly {TOTAL} records (killed at {at_kill:?})\n{}",
            second.log()
        );
    }
    // The restart recognised the rewritten tail as the copy of the source (`A.heartbeats` is
    // matched too: only lines about `stream` count).
    let log = second.log();
    let matched: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("matched the remote tail") && l.contains("topic=stream"))
        .collect();
    assert!(
        !matched.is_empty(),
        "tail matching did not run for stream (killed at {at_kill:?}):\n{log}"
    );
    assert!(
        !log.contains("do not match the source"),
        "a remote batch was taken for foreign data:\n{log}"
    );
    assert!(
        at_kill.iter().any(|&h| h < TOTAL as i64),
        "killed after the stream ended ({at_kill:?}): not a mid-stream crash"
    );
    if name == "resume-merged" {
        assert!(
            matched.iter().any(|l| !l.contains(" merged=0")),
            "no merged remote batch in the matched tail (killed at {at_kill:?}):\n{log}"
        );
    }
    eprintln!(
        "{name}: killed at remote high watermarks {at_kill:?}; {:.1} s; {}",
        started.elapsed().as_secs_f64(),
        matched.join(" | ")
    );
}

/// The remote topic stamps batches with the append time: the broker sets the timestamp-type
/// bit and the max timestamp of every batch (records keep their bytes).
#[test]
fn log_append_time_remote_topic_resumes_without_duplicates() {
    crash_resume_with_rewritten_remote(
        "resume-lat",
        &[("message.timestamp.type", "LogAppendTime")],
        "lz4",
        false,
        "10000",
    );
}

/// The remote topic's `compression.type` (gzip) differs from the source batches' codec (lz4):
/// the broker recompresses each batch, so no record byte is the same.
#[test]
fn recompressing_remote_topic_resumes_without_duplicates() {
    crash_resume_with_rewritten_remote(
        "resume-gzip",
        &[("compression.type", "gzip")],
        "lz4",
        true,
        "10000",
    );
}

/// Both at once, from uncompressed source batches: the broker compresses with zstd and stamps
/// the append time.
#[test]
fn log_append_time_and_compressing_remote_topic_resumes_without_duplicates() {
    crash_resume_with_rewritten_remote(
        "resume-both",
        &[
            ("message.timestamp.type", "LogAppendTime"),
            ("compression.type", "zstd"),
        ],
        "none",
        false,
        "10000",
    );
}

/// Uncompressed source batches of 10 records each: Strait merges runs of them into one batch
/// per request (`strait.coalesce.bytes`), so a remote batch is the copy of several source
/// batches. Tail matching must recognise such a batch record by record, or the
/// restart would write its records again.
#[test]
fn merged_batches_resume_without_duplicates() {
    crash_resume_with_rewritten_remote("resume-merged", &[], "none", true, "10");
}

/// The offset map topic holds records Strait cannot read: one whose key names `om/0` but whose
/// value is of an unknown format version (a newer writer), and one that is not an offset map
/// key at all. Strait still starts: `om/0`'s map is dropped with a warning and the partition
/// resumes from MM2 progress and the remote tail (every record once), `om/1` keeps its map,
/// and the foreign record is skipped with a warning. Before, the first undecodable record
/// stopped every flow at every start.
#[test]
fn unreadable_offset_map_records_cost_only_their_partition() {
    strait_binary();
    let clusters = start_clusters("om-foreign", 2);
    let (a, b) = (clusters[0].bootstrap(), clusters[1].bootstrap());
    reference::create_topic(&a, "om", 2);
    for p in 0..2 {
        reference::produce(&a, "om", p, &numbered(p, 0, 100), &[]);
    }
    let dir = tempfile::tempdir().unwrap();
    let config = mm2_properties(&a, &b, "");
    let mut first = StraitProcess::start(&config, dir.path());
    for p in 0..2 {
        reference::consume(&b, "A.om", p, 0, 100, Duration::from_secs(60));
    }
    let status = first.terminate(Duration::from_secs(60)).expect("exits");
    assert!(status.success(), "{}", first.log());

    // Key: version 0, kind 0 (head), topic "om", partition 0; value: version 7.
    let mut key = vec![0, 0, 0];
    key.extend_from_slice(&(2i16).to_be_bytes());
    key.extend_from_slice(b"om");
    key.extend_from_slice(&0i32.to_be_bytes());
    let mut value = 7i16.to_be_bytes().to_vec();
    value.extend_from_slice(&[0; 24]);
    reference::produce(
        &b,
        "mm2-offset-map.A.internal",
        0,
        &[
            Outgoing::kv(key, value),
            Outgoing::kv(b"not an offset map key".to_vec(), b"x".to_vec()),
        ],
        &[],
    );
    for p in 0..2 {
        reference::produce(&a, "om", p, &numbered(p, 100, 150), &[]);
    }
    let mut second = StraitProcess::start(&config, dir.path());
    for p in 0..2 {
        let got = reference::consume(&b, "A.om", p, 0, 150, Duration::from_secs(60));
        let want: Vec<String> = (0..150).map(|i| format!("v{i}")).collect();
        assert_eq!(values(&got), want, "partition {p}\n{}", second.log());
    }
    std::thread::sleep(Duration::from_secs(2));
    for p in 0..2 {
        let high = reference::watermarks(&b, "A.om", p).1;
        assert_eq!(
            high,
            150,
            "partition {p}: nothing written twice\n{}",
            second.log()
        );
    }
    let status = second.terminate(Duration::from_secs(60)).expect("exits");
    let log = second.log();
    assert!(status.success(), "{log}");
    assert!(
        log.contains("stored offset map unusable") && log.contains("partition=0"),
        "{log}"
    );
    assert!(log.contains("names no partition; skipped"), "{log}");
}

/// A killed Strait's produce requests still queued on a target broker's connection are read
/// and written after it died, possibly after the next Strait resumed the partition. The next
/// Strait continues the remote log's last writer (its producer id, epoch and next sequence),
/// so the broker tells the two copies apart:
///
/// - partition 0: the predecessor's late batch holds what Strait then forwards, with the same
///   boundaries: Strait's copy is answered as its duplicate and not written;
/// - partition 1: the predecessor had merged two source batches into one: Strait's copy of the
///   first is refused (its sequence is taken), the flow restarts, and the resume matches the
///   merged batch instead of writing it again.
///
/// Source transactions left open (one per partition) hold the second run at its resume
/// position (read_committed) until the late appends landed; partition 0's is committed and
/// mirrored before partition 1's, so the restart of the second case cannot cover the first.
/// Before the fix the second run wrote under a new producer id: both partitions held those
/// records twice.
#[test]
fn a_predecessors_late_append_is_not_written_twice() {
    use protocol_client::cluster::{ClientConfig, Cluster};
    use protocol_client::fetcher::{fetch_partition, FetcherConfig, IsolationLevel};
    use protocol_client::producer::{Producer, ProducerConfig};
    use protocol_client::record::{split_batches, BatchBuilder, Compression, DecodeLimits};
    use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer as _, ThreadedProducer};
    use replicator::flow::resume::Continuation;

    strait_binary();
    let clusters = start_clusters("late-append", 2);
    let (a, b) = (clusters[0].bootstrap(), clusters[1].bootstrap());
    reference::create_topic(&a, "late", 2);
    for p in 0..2 {
        reference::produce(&a, "late", p, &numbered(p, 0, 10), &[]);
    }
    let dir = tempfile::tempdir().unwrap();
    // Merging off: the second run forwards each source batch alone.
    let config = mm2_properties(&a, &b, "strait.coalesce.bytes = 0\n");
    let mut first = StraitProcess::start(&config, dir.path());
    let mirrored = |n: [i64; 2]| {
        (0..2).all(|p| {
            reference::try_watermarks(&b, "A.late", p).map(|w| w.1).ok() == Some(n[p as usize])
        })
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while !mirrored([10, 10]) {
        assert!(Instant::now() < deadline, "not mirrored\n{}", first.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    let status = first.terminate(Duration::from_secs(30));
    assert!(
        status.is_some_and(|s| s.success()),
        "{status:?}\n{}",
        first.log()
    );

    // Open transactions: 5 records on partition 0, two batches of 5 on partition 1.
    let transactional = || {
        let txp: ThreadedProducer<DefaultProducerContext> = reference::base_config(&a)
            .set("transactional.id", strait_tests::unique("late-tx"))
            .create()
            .expect("transactional producer");
        txp.init_transactions(Duration::from_secs(30)).unwrap();
        txp.begin_transaction().unwrap();
        txp
    };
    let txps = [transactional(), transactional()];
    for (p, from, to) in [(0, 10, 15), (1, 10, 15), (1, 15, 20)] {
        let txp = &txps[p as usize];
        for r in numbered(p, from, to) {
            txp.send(
                BaseRecord::<[u8], [u8]>::to("late")
                    .partition(p)
                    .key(r.key.as_deref().unwrap())
                    .payload(r.value.as_deref().unwrap()),
            )
            .map_err(|(e, _)| e)
            .unwrap();
        }
        txp.flush(Duration::from_secs(10)).unwrap();
    }

    let mut second = StraitProcess::start(&config, dir.path());
    let deadline = Instant::now() + Duration::from_secs(60);
    while !second.log().contains("replicating") {
        assert!(Instant::now() < deadline, "not resumed\n{}", second.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    // The predecessor's late appends land now, under its identity and sequence.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let src = Cluster::connect(ClientConfig::new(&a)).await.unwrap();
        let dst = Cluster::connect(ClientConfig::new(&b)).await.unwrap();
        let fetch = FetcherConfig {
            isolation: IsolationLevel::ReadUncommitted,
            max_wait: Duration::from_millis(100),
            ..FetcherConfig::default()
        };
        for p in 0..2 {
            let fp = fetch_partition(&src, "late", p, 10, &fetch).await.unwrap();
            let open: Vec<_> = split_batches(fp.records)
                .map(|b| b.unwrap())
                .filter(|b| b.base_offset() >= 10)
                .collect();
            assert_eq!(
                open.iter().map(|b| b.record_count()).collect::<Vec<_>>(),
                if p == 0 { vec![5] } else { vec![5, 5] },
                "partition {p}: the open transaction's batches"
            );
            let late = if p == 0 {
                open[0].clone()
            } else {
                let mut merged = BatchBuilder::new(Compression::None);
                for batch in &open {
                    for r in batch.records(&DecodeLimits::default()).unwrap() {
                        merged.push_record(batch.base_timestamp(), &r.unwrap());
                    }
                }
                merged.build().unwrap()
            };
            let remote = fetch_partition(&dst, "A.late", p, 9, &fetch).await.unwrap();
            let last = split_batches(remote.records)
                .map(|b| b.unwrap())
                .find(|b| b.next_offset() == 10)
                .expect("the remote batch ending at 10");
            let c = Continuation::after(&last).expect("written by an idempotent producer");
            let predecessor = Producer::new(
                dst.clone(),
                ProducerConfig {
                    stop_partition_on_failure: true,
                    ..ProducerConfig::default()
                },
            )
            .await
            .unwrap();
            assert!(predecessor.continue_identity(
                "A.late",
                p,
                c.producer_id,
                c.epoch,
                c.next_sequence
            ));
            let ack = predecessor.append("A.late", p, late).await.unwrap();
            assert_eq!(ack.base_offset, 10, "partition {p}: the late append landed");
        }
    });
    for (p, n) in [(0, 15), (1, 20)] {
        txps[p as usize]
            .commit_transaction(Duration::from_secs(30))
            .unwrap();
        let source = reference::consume(&a, "late", p, 0, n, Duration::from_secs(30));
        let got = reference::consume(&b, "A.late", p, 0, n, Duration::from_secs(60));
        assert_eq!(
            got,
            source,
            "partition {p}: every record once\n{}",
            second.log()
        );
        if p == 0 {
            // Strait's copy of partition 0's batch was answered as a duplicate: the run
            // carried on (no restart) and wrote nothing more.
            std::thread::sleep(Duration::from_secs(2));
            let log = second.log();
            assert!(
                mirrored([15, 20]) && !log.contains("taken") && !log.contains("restarting"),
                "partition 0:\n{log}"
            );
        }
    }
    // Strait's own copies must not show up after them.
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        mirrored([15, 20]),
        "{:?}\n{}",
        (0..2)
            .map(|p| reference::watermarks(&b, "A.late", p))
            .collect::<Vec<_>>(),
        second.log()
    );
    let log = second.log();
    assert!(
        log.contains("sequence continued from the partition's previous writer is taken"),
        "partition 1's copy was not refused:\n{log}"
    );
    assert!(
        log.contains("merged=1"),
        "the restart did not match the merged batch:\n{log}"
    );
    assert!(
        second.pid().is_some() && second.wait_exit(Duration::from_millis(10)).is_none(),
        "Strait exited:\n{log}"
    );
}
