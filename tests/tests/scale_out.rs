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
/// more, plus a commit interval in exactly-once mode): every record is there once, in order
/// (librdkafka, `read_committed`).
fn assert_exactly_once(b: &str, written: &[usize], logs: &[&StraitProcess]) {
    assert_exactly_once_after(b, written, logs, Duration::from_secs(3))
}

fn assert_exactly_once_after(
    b: &str,
    written: &[usize],
    logs: &[&StraitProcess],
    settle: Duration,
) {
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
    std::thread::sleep(settle);
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
    two_members_with(name, "")
}

fn two_members_with(name: &str, extra: &str) -> Setup {
    strait_binary();
    let clusters = start_clusters(name, 2);
    let (a, b) = (clusters[0].bootstrap(), clusters[1].bootstrap());
    reference::create_topic(&a, "stream", PARTITIONS);
    let dir = tempfile::tempdir().unwrap();
    let config = mm2_properties(
        &a,
        &b,
        &format!(
            "strait.group.enabled = true\n\
             strait.group.session.timeout.ms = 6000\n\
             strait.group.heartbeat.interval.ms = 1000\n\
             A->B.topics = stream\n\
             {extra}"
        ),
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
    add_stop_kill("scale", "", Duration::from_secs(3));
}

/// The same in exactly-once mode: hand-overs commit the loser's transaction before the gainer
/// reads the committed tail; the killed member's open transaction is aborted when the gainer
/// fences its slot.
#[test]
fn exactly_once_members_added_stopped_and_killed_mirror_every_record_once() {
    add_stop_kill(
        "eos-scale",
        "exactly.once.source.support = enabled\n",
        Duration::from_secs(8),
    );
}

/// Three members under a writer: one added, one stopped cleanly, one killed.
fn add_stop_kill(name: &str, extra: &str, settle: Duration) {
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
    } = two_members_with(name, extra);
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
    // committed maps: every partition's checkpoint arrives, and it is exact (checked at the
    // end against what a read_committed consumer of the target reads there).
    let mut checkpoints = std::collections::BTreeMap::new();
    wait_until(
        "checkpoints of every partition",
        Duration::from_secs(60),
        &[&m1, &m2, &m3],
        || {
            checkpoints = latest_checkpoints(&b, "app");
            committed
                .iter()
                .all(|(_, p, o)| checkpoints.get(p).is_some_and(|c| c.0 == *o))
        },
    );

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
    assert_exactly_once_after(&b, &written, &survivors, settle);
    for (p, (up, down)) in &checkpoints {
        assert_checkpoint_exact(&b, *p, *up, *down);
    }
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

/// Stops `zombie` (SIGSTOP) mid-stream until `survivor` has taken its partitions over (past
/// its session), then 3 s more, and wakes it (SIGCONT). Returns how long the take-over took.
fn stall_past_session(survivor: &StraitProcess, zombie: &StraitProcess) -> Duration {
    let pid = zombie.pid().expect("running").to_string();
    let given = count(survivor, "partitions given");
    let stopped = Instant::now();
    let signal = |sig: &str| {
        assert!(std::process::Command::new("kill")
            .args([sig, &pid])
            .status()
            .unwrap()
            .success());
    };
    signal("-STOP");
    wait_until(
        "the survivor takes over",
        Duration::from_secs(30),
        &[survivor],
        || count(survivor, "partitions given") > given,
    );
    let takeover = stopped.elapsed();
    std::thread::sleep(Duration::from_secs(3));
    signal("-CONT");
    takeover
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
    stall_past_session(&m1, &m2);
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

/// Every value of `topic`/`partition` as a `read_uncommitted` reader sees it (aborted records
/// included, markers never delivered), read to the high watermark.
fn uncommitted_values(bootstrap: &str, topic: &str, partition: i32) -> Vec<String> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::error::KafkaError;
    use rdkafka::Message;
    let consumer: BaseConsumer = reference::base_config(bootstrap)
        .set("group.id", strait_tests::unique("uncommitted"))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("isolation.level", "read_uncommitted")
        .create()
        .expect("consumer");
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, rdkafka::Offset::Beginning)
        .expect("tpl");
    consumer.assign(&tpl).expect("assign");
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut out = Vec::new();
    loop {
        assert!(
            Instant::now() < deadline,
            "read_uncommitted {topic}/{partition}"
        );
        match consumer.poll(Duration::from_millis(100)) {
            None => {}
            Some(Err(KafkaError::PartitionEOF(_))) => return out,
            Some(Err(e)) => panic!("read_uncommitted {topic}/{partition}: {e}"),
            Some(Ok(m)) => {
                out.push(String::from_utf8_lossy(m.payload().unwrap_or_default()).into())
            }
        }
    }
}

/// A checkpoint's downstream offset is where a consumer of the target continues: its first
/// committed record there must be the source record the group continues at. Returns the
/// partition's committed records.
fn assert_checkpoint_exact(b: &str, p: i32, up: i64, down: i64) -> Vec<reference::RefRecord> {
    let got = reference::consume_committed(b, "A.stream", p, Duration::from_secs(60));
    let next = got.iter().find(|r| r.offset >= down).expect("a record");
    assert_eq!(
        String::from_utf8(next.value.clone().unwrap()).unwrap(),
        format!("p{p}-{up}"),
        "partition {p}: checkpoint ({up}, {down})"
    );
    got
}

/// The latest checkpoint of `group` per partition: (upstream, downstream).
fn latest_checkpoints(b: &str, group: &str) -> std::collections::BTreeMap<i32, (i64, i64)> {
    let mut out = std::collections::BTreeMap::new();
    for r in reference::consume_until_end(b, "A.checkpoints.internal", 0) {
        let (Some(k), Some(v)) = (r.key, r.value) else {
            continue;
        };
        let Ok(cp) = Checkpoint::decode(&k, Some(&v)) else {
            continue;
        };
        if cp.consumer_group_id == group {
            out.insert(cp.partition, (cp.upstream_offset, cp.downstream_offset));
        }
    }
    out
}

/// Exactly-once mode (`exactly.once.source.support = enabled`) in one process, killed twice
/// mid-stream: each run writes inside transactions with its offset map and MM2 progress, so a
/// killed run's open transaction (aborted when the next run's producer fences it) leaves
/// records on the target that `read_committed` readers never see, and the next run resumes
/// from what was committed, matching the committed tail. Every record once for librdkafka with
/// `read_committed`; checkpoints exact although remote offsets now differ from the source's
/// (transaction markers).
#[test]
fn exactly_once_mode_resumes_killed_runs_from_what_was_committed() {
    strait_binary();
    let clusters = start_clusters("eos-kill", 2);
    let (a, b) = (clusters[0].bootstrap(), clusters[1].bootstrap());
    reference::create_topic(&a, "stream", PARTITIONS);
    let dir = tempfile::tempdir().unwrap();
    let config = mm2_properties(
        &a,
        &b,
        "A->B.topics = stream\nexactly.once.source.support = enabled\n",
    );
    let stop = Arc::new(AtomicBool::new(false));
    let writer = start_writer(&a, stop.clone());
    let mut killed = Vec::new();
    // The first run is killed before its first commit (5 s): the remote partitions start with
    // aborted records and no offset map describes any of them. The second is killed past a
    // commit: committed records, then an aborted transaction.
    for round in 0..2 {
        let mut m = StraitProcess::start(&config, dir.path());
        if round == 0 {
            wait_until("the run starts", Duration::from_secs(60), &[&m], || {
                m.log().contains("transactional producer started")
            });
            std::thread::sleep(Duration::from_secs(2));
        } else {
            let before: i64 = high_watermarks(&b, "A.stream").iter().sum();
            wait_until("the run mirrors", Duration::from_secs(60), &[&m], || {
                high_watermarks(&b, "A.stream").iter().sum::<i64>() >= before + 30_000
            });
            std::thread::sleep(Duration::from_secs(6));
        }
        m.kill9();
        killed.push(m);
    }
    let m = StraitProcess::start(&config, dir.path());
    wait_until(
        "the last run mirrors",
        Duration::from_secs(60),
        &[&m],
        || m.log().contains("transactional producer started"),
    );
    let source = high_watermarks(&a, "stream");
    let committed: Vec<(&str, i32, i64)> = (0..PARTITIONS)
        .map(|p| ("stream", p, source[p as usize] / 2))
        .collect();
    reference::commit_offsets(&a, "app", &committed);
    let mut checkpoints = Default::default();
    wait_until(
        "checkpoints of every partition",
        Duration::from_secs(60),
        &[&m],
        || {
            checkpoints = latest_checkpoints(&b, "app");
            committed
                .iter()
                .all(|(_, p, o)| checkpoints.get(p).is_some_and(|c| c.0 == *o))
        },
    );
    stop.store(true, Ordering::Relaxed);
    let written = writer.join().unwrap();
    // A commit interval (5 s) for the last records' transaction to commit.
    assert_exactly_once_after(&b, &written, &[&m], Duration::from_secs(8));
    let mut aborted = 0;
    for p in 0..PARTITIONS {
        let (up, down) = checkpoints[&p];
        let got = assert_checkpoint_exact(&b, p, up, down);
        let all = uncommitted_values(&b, "A.stream", p);
        aborted += all.len() - got.len();
    }
    assert!(
        aborted > 0,
        "the killed runs left aborted records on the target (what this test is about)"
    );
    for (i, run) in killed.iter().chain([&m]).enumerate() {
        for l in run.log().lines().filter(|l| {
            l.contains("remote tail") || l.contains("do not match") || l.contains("resuming")
        }) {
            eprintln!("run {i}: {l}");
        }
    }
    eprintln!("exactly-once: {} records mirrored once; {aborted} records of killed runs' transactions aborted on the target", written.iter().sum::<usize>());
    drop(killed);
}

/// Exactly-once mode with scale-out: a member stopped (SIGSTOP) past its session is fenced at
/// the broker by whoever takes over its partitions (InitProducerId of its transactional id,
/// which aborts its open transaction); when it wakes, its transaction is refused as fenced
/// (logged), and every record is on the target once for `read_committed` readers.
#[test]
fn exactly_once_members_fence_a_woken_zombie() {
    let Setup {
        _clusters,
        b,
        dir: _dir,
        stop,
        writer,
        m1,
        m2,
        ..
    } = two_members_with("eos-zombie", "exactly.once.source.support = enabled\n");
    std::thread::sleep(Duration::from_secs(3));
    let takeover = stall_past_session(&m1, &m2);
    std::thread::sleep(Duration::from_secs(10));
    stop.store(true, Ordering::Relaxed);
    let written = writer.join().unwrap();
    assert_exactly_once_after(&b, &written, &[&m1, &m2], Duration::from_secs(8));
    let (survivor, zombie) = (m1.log(), m2.log());
    assert!(
        survivor.contains("fenced a departed member's transactional id"),
        "the survivor fenced the zombie before taking over:\n{survivor}"
    );
    assert!(
        zombie.contains("fenced: "),
        "the woken zombie's transaction was refused as fenced:\n{zombie}"
    );
    eprintln!(
        "exactly-once zombie: partitions taken over {:.1} s after SIGSTOP (session 6 s)\n{}",
        takeover.as_secs_f64(),
        zombie
            .lines()
            .filter(|l| l.contains("fenced") || l.contains("membership lost"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// Exactly-once mode commits on its interval while a backlog is being mirrored: records become
/// visible to `read_committed` readers long before the backlog is done. (A commit that waited
/// for the data producer to have nothing unacknowledged, as a flush does, never came while the
/// fetch loop kept appending: everything stayed in one transaction until the backlog ended, or
/// until the coordinator aborted it at the transaction timeout.)
#[test]
fn exactly_once_mode_commits_while_a_backlog_is_mirrored() {
    strait_binary();
    let clusters = start_clusters("eos-backlog", 2);
    let (a, b) = (clusters[0].bootstrap(), clusters[1].bootstrap());
    reference::create_topic(&a, "stream", PARTITIONS);
    // 6 × 80 000 records of 1 KiB: a debug build takes several seconds to mirror them, with
    // appends always in flight; commits every 500 ms.
    const PER_PARTITION: usize = 80_000;
    let filler = "x".repeat(1000);
    for p in 0..PARTITIONS {
        let records: Vec<Outgoing> = (0..PER_PARTITION)
            .map(|i| Outgoing::kv(format!("k{i}"), format!("p{p}-{i}-{filler}")))
            .collect();
        reference::produce(&a, "stream", p, &records, &[("linger.ms", "5")]);
    }
    let dir = tempfile::tempdir().unwrap();
    let config = mm2_properties(
        &a,
        &b,
        "A->B.topics = stream\nexactly.once.source.support = enabled\nstrait.commit.interval.ms = 500\n",
    );
    let m = StraitProcess::start(&config, dir.path());
    let total = (PER_PARTITION * PARTITIONS as usize) as i64;
    // The first committed record on partition 0, and how much of the backlog was appended then.
    let started = Instant::now();
    let consumer: rdkafka::consumer::BaseConsumer = reference::base_config(&b)
        .set("group.id", strait_tests::unique("committed-reader"))
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set("auto.offset.reset", "earliest")
        .set("topic.metadata.refresh.interval.ms", "500")
        .create()
        .expect("consumer");
    use rdkafka::consumer::Consumer;
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition_offset("A.stream", 0, rdkafka::Offset::Beginning)
        .expect("tpl");
    let appended_when_visible = loop {
        assert!(
            started.elapsed() < Duration::from_secs(180),
            "nothing committed within 180 s\n{}",
            m.log()
        );
        if consumer.assignment().map_or(0, |a| a.count()) == 0 {
            if reference::try_watermarks(&b, "A.stream", 0).is_err() {
                std::thread::sleep(Duration::from_millis(200));
                continue;
            }
            consumer.assign(&tpl).expect("assign");
        }
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(_)) => break high_watermarks(&b, "A.stream").iter().sum::<i64>(),
            _ => continue,
        }
    };
    let visible_after = started.elapsed();
    wait_until(
        "the backlog mirrored",
        Duration::from_secs(300),
        &[&m],
        || high_watermarks(&b, "A.stream").iter().sum::<i64>() >= total,
    );
    let done_after = started.elapsed();
    eprintln!(
        "exactly-once backlog: first committed record after {:.1} s with {appended_when_visible} of {total} records appended; backlog appended after {:.1} s",
        visible_after.as_secs_f64(),
        done_after.as_secs_f64()
    );
    assert!(
        appended_when_visible < total / 2,
        "records became visible only when {appended_when_visible} of {total} were appended (after {visible_after:?}; all after {done_after:?})\n{}",
        m.log()
    );
}
