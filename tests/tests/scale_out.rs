//! Scale-out on Apache Kafka: several `strait run` processes with the same configuration and
//! `strait.group.enabled` share a flow's partitions through the group coordinator of the
//! target cluster. While a writer keeps appending to the source, a member is added, one is
//! stopped cleanly (SIGTERM) and one is killed (SIGKILL); every source record must then be on
//! the target exactly once per partition and in order (read back by librdkafka with
//! `read_committed`), and the checkpoints the flow's leader writes — translating partitions
//! other members replicate through their committed offset maps — must be exact.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use replicator::formats::Checkpoint;
use strait_tests::kafka::start_clusters;
use strait_tests::reference::{self, Outgoing};
use strait_tests::strait::{mm2_properties, strait_binary, StraitProcess};

const PARTITIONS: i32 = 6;
/// Records per partition per round of the writer (a round takes about a second here).
const CHUNK: usize = 10_000;

fn high_watermarks(bootstrap: &str, topic: &str) -> Vec<i64> {
    (0..PARTITIONS)
        .map(|p| reference::try_watermarks(bootstrap, topic, p).map_or(0, |w| w.1))
        .collect()
}

/// Waits until `cond` holds, failing with `what` and the members' logs after `within`.
fn wait_until(
    what: &str,
    within: Duration,
    logs: &[&StraitProcess],
    mut cond: impl FnMut() -> bool,
) {
    let deadline = Instant::now() + within;
    while !cond() {
        if Instant::now() > deadline {
            let logs: Vec<String> = logs.iter().map(|p| p.log()).collect();
            panic!("{what}: not within {within:?}\n{}", logs.join("\n-----\n"));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Appends rounds of `CHUNK` numbered records (`p<partition>-<i>`) to every partition of
/// `stream` until `stop`; returns how many each partition got.
fn start_writer(a: &str, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<Vec<usize>> {
    let a = a.to_string();
    std::thread::spawn(move || {
        let mut next = vec![0usize; PARTITIONS as usize];
        while !stop.load(Ordering::Relaxed) {
            for p in 0..PARTITIONS {
                let from = next[p as usize];
                let records: Vec<Outgoing> = (from..from + CHUNK)
                    .map(|i| Outgoing::kv(format!("k{i}"), format!("p{p}-{i}")))
                    .collect();
                reference::produce(&a, "stream", p, &records, &[("linger.ms", "5")]);
                next[p as usize] += CHUNK;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        next
    })
}

/// Once every record written reached the target, and anything late would have landed (3 s
/// more): every record is there once, in order (librdkafka, `read_committed`).
fn assert_exactly_once(b: &str, written: &[usize], logs: &[&StraitProcess]) {
    wait_until(
        "every record mirrored",
        Duration::from_secs(120),
        logs,
        || {
            high_watermarks(b, "A.stream")
                .iter()
                .zip(written)
                .all(|(h, w)| *h >= *w as i64)
        },
    );
    std::thread::sleep(Duration::from_secs(3));
    for p in 0..PARTITIONS {
        let got = reference::consume_committed(b, "A.stream", p, Duration::from_secs(60));
        let want: Vec<String> = (0..written[p as usize])
            .map(|i| format!("p{p}-{i}"))
            .collect();
        let values: Vec<String> = got
            .iter()
            .map(|r| String::from_utf8(r.value.clone().unwrap_or_default()).unwrap())
            .collect();
        if values != want {
            let logs: Vec<String> = logs.iter().map(|p| p.log()).collect();
            panic!(
                "partition {p}: {} records mirrored, {} written; first difference at {:?}\n{}",
                values.len(),
                want.len(),
                values.iter().zip(&want).position(|(g, w)| g != w),
                logs.join("\n-----\n")
            );
        }
    }
}

/// Waits until the group settles: no member joins another generation for 4 s (a
/// hand-over takes two generations about a second apart). A group that keeps rebalancing
/// (units handed back and forth) fails here.
fn settles(members: &[&StraitProcess]) {
    let generations = || -> usize {
        members
            .iter()
            .map(|m| count(m, "joined the group's generation"))
            .sum()
    };
    let mut last = (generations(), Instant::now());
    wait_until(
        "the group settles",
        Duration::from_secs(30),
        members,
        || {
            let now = generations();
            if now != last.0 {
                last = (now, Instant::now());
            }
            last.1.elapsed() >= Duration::from_secs(4)
        },
    );
}

/// How many times `needle` appears in a member's log.
fn count(p: &StraitProcess, needle: &str) -> usize {
    p.log().matches(needle).count()
}

/// Two clusters with `stream` on A, a writer appending to it, and two `strait run` members of
/// one group (6 s session) that both run partitions.
struct Setup {
    _clusters: Vec<strait_tests::kafka::KafkaCluster>,
    a: String,
    b: String,
    dir: tempfile::TempDir,
    config: String,
    stop: Arc<AtomicBool>,
    writer: std::thread::JoinHandle<Vec<usize>>,
    m1: StraitProcess,
    m2: StraitProcess,
}

fn two_members(name: &str) -> Setup {
    strait_binary();
    let clusters = start_clusters(name, 2);
    let (a, b) = (clusters[0].bootstrap(), clusters[1].bootstrap());
    reference::create_topic(&a, "stream", PARTITIONS);
    let dir = tempfile::tempdir().unwrap();
    let config = mm2_properties(
        &a,
        &b,
        "strait.group.enabled = true\n\
         strait.group.session.timeout.ms = 6000\n\
         strait.group.heartbeat.interval.ms = 1000\n\
         A->B.topics = stream\n",
    );
    let stop = Arc::new(AtomicBool::new(false));
    let writer = start_writer(&a, stop.clone());
    let m1 = StraitProcess::start(&config, dir.path());
    let m2 = StraitProcess::start(&config, dir.path());
    wait_until(
        "two members sharing the partitions",
        Duration::from_secs(90),
        &[&m1, &m2],
        || count(&m1, "partitions given") > 0 && count(&m2, "partitions given") > 0,
    );
    settles(&[&m1, &m2]);
    Setup {
        _clusters: clusters,
        a,
        b,
        dir,
        config,
        stop,
        writer,
        m1,
        m2,
    }
}

#[test]
fn members_added_stopped_and_killed_mirror_every_record_exactly_once() {
    let started = Instant::now();
    let Setup {
        _clusters,
        a,
        b,
        dir,
        config,
        stop,
        writer,
        mut m1,
        mut m2,
    } = two_members("scale");
    // A third member joins: partitions move to it cooperatively.
    let m3 = StraitProcess::start(&config, dir.path());
    wait_until(
        "the added member runs partitions",
        Duration::from_secs(60),
        &[&m1, &m2, &m3],
        || count(&m3, "partitions given") > 0,
    );
    settles(&[&m1, &m2, &m3]);
    // Let the three run together, so the leader checkpoints partitions others replicate.
    std::thread::sleep(Duration::from_secs(3));
    let at_commit = high_watermarks(&b, "A.stream");
    let committed: Vec<(&str, i32, i64)> = (0..PARTITIONS)
        .map(|p| ("stream", p, at_commit[p as usize] / 2))
        .collect();
    reference::commit_offsets(&a, "app", &committed);
    // The flow's leader is one member; the others' partitions are translated through their
    // committed maps: every partition's checkpoint arrives, and it is exact (offsets are the
    // same on both sides here: fresh topics, nothing compacted or aborted).
    let mut checkpoints = std::collections::BTreeMap::new();
    wait_until(
        "checkpoints of every partition",
        Duration::from_secs(60),
        &[&m1, &m2, &m3],
        || {
            for r in reference::consume_until_end(&b, "A.checkpoints.internal", 0) {
                let (Some(k), Some(v)) = (r.key, r.value) else {
                    continue;
                };
                let Ok(cp) = Checkpoint::decode(&k, Some(&v)) else {
                    continue;
                };
                if cp.consumer_group_id == "app" {
                    checkpoints.insert(cp.partition, (cp.upstream_offset, cp.downstream_offset));
                }
            }
            committed
                .iter()
                .all(|(_, p, o)| checkpoints.get(p).is_some_and(|c| c.0 == *o))
        },
    );
    for (_, p, o) in &committed {
        assert_eq!(checkpoints[p], (*o, *o), "partition {p}: exact checkpoint");
    }

    // A member stops cleanly: it drains, commits and leaves; the others take over at once
    // (well within the session timeout) and every partition catches up.
    let given = count(&m2, "partitions given") + count(&m3, "partitions given");
    let stopped = Instant::now();
    let status = m1.terminate(Duration::from_secs(60)).expect("clean stop");
    assert!(status.success(), "clean stop: {status:?}\n{}", m1.log());
    assert!(
        !m1.log().contains("leaving the group failed"),
        "{}",
        m1.log()
    );
    wait_until(
        "the stopped member's partitions taken over",
        Duration::from_secs(30),
        &[&m2, &m3],
        || count(&m2, "partitions given") + count(&m3, "partitions given") > given,
    );
    let handed = stopped.elapsed();
    assert!(
        handed < Duration::from_secs(6),
        "a cleanly stopped member's partitions are handed over at once, not after the 6 s session ({handed:?})"
    );
    let source_now = high_watermarks(&a, "stream");
    wait_until(
        "every partition caught up after the clean stop",
        Duration::from_secs(60),
        &[&m2, &m3],
        || {
            high_watermarks(&b, "A.stream")
                .iter()
                .zip(&source_now)
                .all(|(n, s)| n >= s)
        },
    );

    // A member dies: its partitions move to the survivor after the session timeout.
    let before = high_watermarks(&b, "A.stream");
    let source_before = high_watermarks(&a, "stream");
    let killed = Instant::now();
    m2.kill9();
    let survivors = [&m3];
    wait_until(
        "every partition advancing after the kill",
        Duration::from_secs(60),
        &survivors,
        || {
            let now = high_watermarks(&b, "A.stream");
            now.iter()
                .zip(&before)
                .zip(&source_before)
                .all(|((n, b), s)| n > b && n >= s)
        },
    );
    let takeover = killed.elapsed();

    // The writer stops; everything written reaches the target once.
    stop.store(true, Ordering::Relaxed);
    let written = writer.join().unwrap();
    assert_exactly_once(&b, &written, &survivors);
    // Checkpoints never went back, across every hand-over of the flow's leadership.
    let mut last: std::collections::BTreeMap<i32, (i64, i64)> = Default::default();
    for r in reference::consume_until_end(&b, "A.checkpoints.internal", 0) {
        let (Some(k), Some(v)) = (r.key, r.value) else {
            continue;
        };
        let cp = Checkpoint::decode(&k, Some(&v)).expect("a checkpoint");
        if cp.consumer_group_id != "app" {
            continue;
        }
        let now = (cp.upstream_offset, cp.downstream_offset);
        if let Some(prev) = last.insert(cp.partition, now) {
            assert!(
                now.1 >= prev.1 && now.0 >= prev.0,
                "partition {}: checkpoint {now:?} after {prev:?}",
                cp.partition
            );
        }
    }
    for (name, m) in [("m1", &m1), ("m2", &m2), ("m3", &m3)] {
        for l in m.log().lines().filter(|l| {
            l.contains("joined the group")
                || l.contains("partitions given")
                || l.contains("releasing")
                || l.contains("released")
                || l.contains("leading")
                || l.contains("membership lost")
                || l.contains("took over")
        }) {
            eprintln!("{name}: {l}");
        }
    }
    let total: usize = written.iter().sum();
    eprintln!(
        "scale-out: {total} records over {PARTITIONS} partitions; a stopped member's partitions handed over {:.1} s after SIGTERM; a killed member's partitions advanced again after {:.1} s (session timeout 6 s); {:.1} s in all",
        handed.as_secs_f64(),
        takeover.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    drop(m2);
}

#[test]
fn a_member_woken_after_its_session_expired_writes_nothing() {
    // The directory holds the members' logs: kept to the end.
    let Setup {
        _clusters,
        b,
        dir: _dir,
        stop,
        writer,
        m1,
        m2,
        ..
    } = two_members("zombie");
    std::thread::sleep(Duration::from_secs(3));
    // Stopped mid-stream, for longer than its session.
    let pid = m2.pid().expect("running").to_string();
    let given = count(&m1, "partitions given");
    assert!(std::process::Command::new("kill")
        .args(["-STOP", &pid])
        .status()
        .unwrap()
        .success());
    wait_until(
        "the survivor takes over",
        Duration::from_secs(30),
        &[&m1],
        || count(&m1, "partitions given") > given,
    );
    std::thread::sleep(Duration::from_secs(3));
    assert!(std::process::Command::new("kill")
        .args(["-CONT", &pid])
        .status()
        .unwrap()
        .success());
    // The zombie wakes while the writer still writes, and the survivor mirrors on.
    std::thread::sleep(Duration::from_secs(8));
    stop.store(true, Ordering::Relaxed);
    let written = writer.join().unwrap();
    assert_exactly_once(&b, &written, &[&m1, &m2]);
    let log = m2.log();
    assert!(
        log.contains("membership lost"),
        "the zombie noticed:\n{log}"
    );
    // Appends it had due when it woke were held by its lease (run out while it was stopped)
    // and dropped with its run, never sent.
    assert!(
        !log.contains("lease renewed"),
        "the zombie's held appends were sent:\n{log}"
    );
    eprintln!(
        "zombie: {}",
        log.lines()
            .filter(|l| {
                l.contains("membership lost")
                    || l.contains("lease")
                    || l.contains("scale::runner")
                    || l.contains("replicator::run")
            })
            .collect::<Vec<_>>()
            .join("\n")
    );
}
