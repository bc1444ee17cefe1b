//! Strait and MirrorMaker 2 side by side on Apache Kafka 4.1.1: MM2's own Java client library
//! (`RemoteClusterUtils`, `MirrorClient`, `Checkpoint`/`Heartbeat`/`OffsetSync.deserializeRecord`,
//! Connect's `JsonConverter`) reads what Strait writes, one `mm2.properties` runs both, and a
//! deployment moves from MM2 to Strait and back without losing records.
//!
//! The Java side is `tests/java/Checker.java`, run with `java -cp '<kafka libs>/*'` (source
//! launch, no build step); it prints `CHECK <kind> key=value ...` lines.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use strait_tests::kafka::{
    connect_put_connector, mm2_test_properties, run_checker, start_clusters, KafkaCluster,
    Mm2Process,
};
use strait_tests::reference::{self, Outgoing};
use strait_tests::strait::{mm2_properties, strait_command, StraitProcess};

// ---------------------------------------------------------------------------------------------
// The Java checker
// ---------------------------------------------------------------------------------------------

/// One `CHECK <kind> k=v ...` line.
#[derive(Clone, Debug)]
struct Line {
    kind: String,
    fields: BTreeMap<String, String>,
}

impl Line {
    fn get(&self, k: &str) -> &str {
        self.fields
            .get(k)
            .unwrap_or_else(|| panic!("checker line {self:?} has no {k}"))
    }

    fn num(&self, k: &str) -> i64 {
        self.get(k)
            .parse()
            .unwrap_or_else(|e| panic!("checker line {self:?}: {k} is not a number: {e}"))
    }
}

/// The lines one checker command printed, and its status (0 = everything decoded).
#[derive(Debug)]
struct Section {
    command: String,
    status: i64,
    lines: Vec<Line>,
}

impl Section {
    fn of<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = &'a Line> + 'a {
        self.lines.iter().filter(move |l| l.kind == kind)
    }

    fn one<'a>(&'a self, kind: &'a str) -> &'a Line {
        let mut it = self.of(kind);
        let l = it
            .next()
            .unwrap_or_else(|| panic!("`{}` printed no {kind} line", self.command));
        assert!(it.next().is_none(), "`{}`: several {kind}", self.command);
        l
    }

    /// Asserts the command ran and every record decoded; returns `self`.
    fn ok(&self, output: &str) -> &Section {
        let errors: Vec<_> = self
            .lines
            .iter()
            .filter(|l| l.kind == "error" || l.kind == "exception")
            .collect();
        assert!(
            self.status == 0 && errors.is_empty(),
            "`{}` failed (status {}): {errors:#?}\n--- checker output\n{output}",
            self.command,
            self.status
        );
        self
    }
}

#[derive(Debug)]
struct CheckerRun {
    sections: Vec<Section>,
    output: String,
}

impl CheckerRun {
    /// The `i`-th command's section, asserted successful.
    fn ok(&self, i: usize) -> &Section {
        self.sections
            .get(i)
            .unwrap_or_else(|| panic!("checker printed no section {i}:\n{}", self.output))
            .ok(&self.output)
    }
}

/// Runs `Checker.java` once (one JVM, one compilation) for several commands.
fn checker(commands: &[&[&str]]) -> CheckerRun {
    let t = Instant::now();
    let mut args: Vec<&str> = Vec::new();
    for (i, c) in commands.iter().enumerate() {
        if i > 0 {
            args.push("+");
        }
        args.extend_from_slice(c);
    }
    let out = run_checker(&args);
    let output = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let mut sections: Vec<Section> = Vec::new();
    for raw in String::from_utf8_lossy(&out.stdout).lines() {
        let Some(rest) = raw.strip_prefix("CHECK ") else {
            continue;
        };
        if let Some(cmd) = rest.strip_prefix("command ") {
            sections.push(Section {
                command: cmd.to_string(),
                status: -1,
                lines: Vec::new(),
            });
            continue;
        }
        let mut words = rest.split(' ');
        let kind = words.next().unwrap_or_default().to_string();
        let fields = words
            .filter_map(|w| w.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let line = Line { kind, fields };
        let Some(s) = sections.last_mut() else {
            panic!("checker line before any command: {raw}\n{output}");
        };
        if line.kind == "done" {
            s.status = line.num("status");
        } else {
            s.lines.push(line);
        }
    }
    assert_eq!(
        sections.len(),
        commands.len(),
        "checker ran {} of {} commands (exit {:?}):\n{output}",
        sections.len(),
        commands.len(),
        out.status
    );
    eprintln!(
        "checker: {} command(s) in {:.1?}",
        commands.len(),
        t.elapsed()
    );
    CheckerRun { sections, output }
}

type Offsets = BTreeMap<(String, i32), i64>;

/// `RemoteClusterUtils.translateOffsets` lines as a map.
fn translated(s: &Section) -> Offsets {
    s.of("offset")
        .map(|l| {
            (
                (l.get("topic").to_string(), l.num("partition") as i32),
                l.num("offset"),
            )
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Strait's own translation (`strait translate --json`)
// ---------------------------------------------------------------------------------------------

/// `"name":value` of one flat JSON object, as text (strings unquoted).
fn json_field<'a>(object: &'a str, name: &str) -> Option<&'a str> {
    let at = object.find(&format!("\"{name}\":"))? + name.len() + 3;
    let rest = &object[at..];
    if let Some(s) = rest.strip_prefix('"') {
        s.find('"').map(|end| &s[..end])
    } else {
        let end = rest.find([',', '}']).unwrap_or(rest.len());
        Some(rest[..end].trim())
    }
}

/// Parses `[{"basis":B,"offset":N,"partition":P,"topic":"T"},...]` (no serde_json in this
/// crate) into offsets and their bases (`exact` or `conservative`).
fn parse_translate_json(output: &str) -> Option<BTreeMap<(String, i32), (i64, String)>> {
    let line = output.lines().find(|l| l.trim_start().starts_with('['))?;
    let mut m = BTreeMap::new();
    for object in line.split('{').skip(1) {
        let topic = json_field(object, "topic")?.to_string();
        let partition = json_field(object, "partition")?.parse().ok()?;
        let offset = json_field(object, "offset")?.parse().ok()?;
        let basis = json_field(object, "basis")?.to_string();
        m.insert((topic, partition), (offset, basis));
    }
    Some(m)
}

/// `strait translate --json`: offsets and their bases.
fn strait_translate_with_basis(
    config: &Path,
    source: &str,
    target: &str,
    group: &str,
) -> BTreeMap<(String, i32), (i64, String)> {
    let path = config.to_str().expect("utf-8 path");
    let (status, out) = strait_command(
        &[
            "translate",
            "--config",
            path,
            "--source",
            source,
            "--target",
            target,
            "--group",
            group,
            "--json",
        ],
        &[],
        Duration::from_secs(60),
    );
    assert!(
        status.is_some_and(|s| s.success()),
        "strait translate failed ({status:?}):\n{out}"
    );
    parse_translate_json(&out).unwrap_or_else(|| panic!("no JSON in strait translate:\n{out}"))
}

/// `strait translate --json`: offsets.
fn strait_translate(config: &Path, source: &str, target: &str, group: &str) -> Offsets {
    strait_translate_with_basis(config, source, target, group)
        .into_iter()
        .map(|(k, (offset, _))| (k, offset))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------------------------

fn topics(bootstrap: &str) -> BTreeSet<String> {
    let c: BaseConsumer = reference::base_config(bootstrap)
        .create()
        .expect("metadata client");
    c.fetch_metadata(None, Duration::from_secs(10))
        .map(|md| md.topics().iter().map(|t| t.name().to_string()).collect())
        .unwrap_or_default()
}

fn high_watermark(bootstrap: &str, topic: &str, partition: i32) -> i64 {
    reference::try_watermarks(bootstrap, topic, partition).map_or(-1, |w| w.1)
}

/// Polls `f` every 500 ms until it returns `Some`, panicking with `what()` after `within`.
fn wait_for<T>(within: Duration, what: impl Fn() -> String, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "waited {within:?} for {}",
            what()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Produces `count` records to `topic`/`partition` in `batches` produce calls (so the source
/// holds several batches), values `"<partition>-<seq>"`.
fn produce_numbered(bootstrap: &str, topic: &str, partition: i32, count: i64, batches: i64) {
    let per = count / batches;
    for b in 0..batches {
        let to = if b == batches - 1 {
            count
        } else {
            (b + 1) * per
        };
        let recs: Vec<_> = (b * per..to)
            .map(|i| Outgoing::kv(format!("k{i}"), format!("{partition}-{i}")))
            .collect();
        reference::produce(bootstrap, topic, partition, &recs, &[]);
    }
}

/// The sequence number in a `"<partition>-<seq>"` value.
fn seq(r: &reference::RefRecord, partition: i32) -> i64 {
    let v = String::from_utf8(r.value.clone().expect("value")).expect("utf-8 value");
    let (p, s) = v.split_once('-').expect("numbered value");
    assert_eq!(p, partition.to_string(), "record of another partition: {v}");
    s.parse().expect("sequence number")
}

/// A librdkafka writer producing `"<partition>-<seq>"` records to every partition of a topic
/// (chunks of 20, every 50 ms) until stopped.
struct Writer {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<Vec<i64>>>,
}

impl Writer {
    fn start(bootstrap: &str, topic: &str, partitions: i32) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let (bs, topic, flag) = (bootstrap.to_string(), topic.to_string(), stop.clone());
        let handle = std::thread::spawn(move || {
            let mut counts = vec![0i64; partitions as usize];
            while !flag.load(Ordering::Relaxed) {
                for p in 0..partitions {
                    let c = &mut counts[p as usize];
                    let recs: Vec<_> = (*c..*c + 20)
                        .map(|i| Outgoing::kv(format!("k{i}"), format!("{p}-{i}")))
                        .collect();
                    reference::produce(&bs, &topic, p, &recs, &[]);
                    *c += 20;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            counts
        });
        Writer {
            stop,
            handle: Some(handle),
        }
    }

    /// Stops the writer; returns how many records each partition got.
    fn finish(mut self) -> Vec<i64> {
        self.stop.store(true, Ordering::Relaxed);
        self.handle
            .take()
            .expect("writer running")
            .join()
            .expect("writer thread")
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Waits until `remote`/`partition` on `bootstrap` ends with source record `n - 1`.
fn wait_caught_up(bootstrap: &str, remote: &str, partition: i32, n: i64, within: Duration) {
    let last = format!("{partition}-{}", n - 1);
    wait_for(
        within,
        || {
            format!(
                "{remote}/{partition} to end with {last} (high watermark {})",
                high_watermark(bootstrap, remote, partition)
            )
        },
        || {
            let hw = high_watermark(bootstrap, remote, partition);
            if hw < n {
                return None;
            }
            let r = reference::consume(
                bootstrap,
                remote,
                partition,
                hw - 1,
                1,
                Duration::from_secs(10),
            );
            (r[0].value.as_deref() == Some(last.as_bytes())).then_some(())
        },
    )
}

/// How one partition came through a hand-over: `first` wrote `0..written` (remote offsets ==
/// source offsets), `second` resumed at source offset `resumed` and wrote to the end.
#[derive(Debug)]
struct Handover {
    resumed: i64,
    duplicates: i64,
}

/// Reads the remote partition and checks its shape: `0..written`, then `resumed..source`
/// with `resumed <= written` (nothing lost, nothing out of order).
fn analyze(bootstrap: &str, remote: &str, partition: i32, source: i64, written: i64) -> Handover {
    let recs = reference::consume_until_end(bootstrap, remote, partition);
    let seqs: Vec<i64> = recs.iter().map(|r| seq(r, partition)).collect();
    assert_eq!(recs.first().map(|r| r.offset), Some(0));
    let w = written as usize;
    assert!(
        seqs.len() > w,
        "{remote}/{partition}: nothing after the hand-over"
    );
    assert_eq!(
        seqs[..w],
        (0..written).collect::<Vec<_>>()[..],
        "{remote}/{partition}: the first replicator's records are not the source's 0..{written}"
    );
    let resumed = seqs[w];
    assert!(
        resumed <= written,
        "{remote}/{partition}: LOST source records {written}..{resumed} at the hand-over"
    );
    assert_eq!(
        seqs[w..],
        (resumed..source).collect::<Vec<_>>()[..],
        "{remote}/{partition}: after the hand-over the remote partition is not source \
         {resumed}..{source}"
    );
    let missing: Vec<i64> = {
        let have: BTreeSet<i64> = seqs.iter().copied().collect();
        (0..source).filter(|s| !have.contains(s)).collect()
    };
    assert!(missing.is_empty(), "{remote}/{partition}: lost {missing:?}");
    let duplicates = seqs.len() as i64 - source;
    assert_eq!(duplicates, written - resumed);
    assert_eq!(
        high_watermark(bootstrap, remote, partition),
        source + duplicates,
        "{remote}/{partition}: high watermark != source count + duplicates"
    );
    Handover {
        resumed,
        duplicates,
    }
}

/// The last `mm2-offsets.*` record for `(cluster, topic, partition)` as decoded by Connect's
/// `JsonConverter`: `(offset, progress-topic partition)`. Every record of one key must sit in
/// one partition of the progress topic (the one Kafka's partitioner picks), or which one wins
/// when Connect loads the topic is undefined.
fn last_progress(s: &Section, cluster: &str, topic: &str, partition: i32) -> Option<i64> {
    let recs: Vec<&Line> = s
        .of("progress")
        .filter(|l| {
            l.get("cluster") == cluster
                && l.get("topic") == topic
                && l.num("partition") == i64::from(partition)
        })
        .collect();
    let parts: BTreeSet<i64> = recs.iter().map(|l| l.num("p")).collect();
    assert!(
        parts.len() <= 1,
        "progress of {cluster}/{topic}/{partition} in several partitions {parts:?}: {recs:#?}"
    );
    recs.iter()
        .max_by_key(|l| l.num("o"))
        .map(|l| l.num("offset"))
}

fn mm2_config(a: &str, b: &str, topics: &str) -> String {
    mm2_test_properties(
        a,
        b,
        &[
            ("A->B.enabled", "true"),
            ("A->B.topics", topics),
            ("B->A.enabled", "false"),
            ("B->A.emit.heartbeats.enabled", "false"),
        ],
    )
}

fn bootstraps(c: &[KafkaCluster]) -> Vec<String> {
    c.iter().map(KafkaCluster::bootstrap).collect()
}

// ---------------------------------------------------------------------------------------------
// a. MM2's client library reads Strait's target
// ---------------------------------------------------------------------------------------------

#[test]
fn mm2_client_library_reads_straits_target() {
    let t0 = Instant::now();
    let clusters = start_clusters("interop-a", 2);
    let (a, b) = (clusters[0].bootstrap(), clusters[1].bootstrap());
    let t_clusters = t0.elapsed();
    reference::create_topic(&a, "t1", 2);
    reference::create_topic(&a, "t2", 1);
    produce_numbered(&a, "t1", 0, 100, 4);
    produce_numbered(&a, "t1", 1, 50, 2);
    produce_numbered(&a, "t2", 0, 30, 3);
    // Partition end, the middle, one before the end.
    reference::commit_offsets(&a, "g", &[("t1", 0, 100), ("t1", 1, 17), ("t2", 0, 29)]);
    let expected: Offsets = [
        (("A.t1".to_string(), 0), 100),
        (("A.t1".to_string(), 1), 17),
        (("A.t2".to_string(), 0), 29),
    ]
    .into_iter()
    .collect();

    let dir = tempfile::tempdir().unwrap();
    let mut strait = StraitProcess::start(&mm2_properties(&a, &b, ""), dir.path());
    let config = dir.path().join("mm2.properties");
    let t1 = Instant::now();
    let last = RefCell::new(Offsets::new());
    wait_for(
        Duration::from_secs(90),
        || format!("Strait's checkpoints {expected:?} (last {last:?}) and A.heartbeats on B"),
        || {
            *last.borrow_mut() = strait_translate(&config, "A", "B", "g");
            (*last.borrow() == expected && topics(&b).contains("A.heartbeats")).then_some(())
        },
    );
    let t_checkpoints = t1.elapsed();
    let status = strait.terminate(Duration::from_secs(30));
    assert!(
        status.is_some_and(|s| s.success()),
        "strait exit {status:?}:\n{}",
        strait.log()
    );

    let run = checker(&[
        &["translate", &b, "A", "g"],
        &["client", &b, "A"],
        &["decode", &b, "A.checkpoints.internal"],
        &["decode", &b, "heartbeats"],
        &["decode", &b, "A.heartbeats"],
        &["decode", &a, "mm2-offset-syncs.B.internal"],
        &["decode", &b, "mm2-offsets.A.internal"],
    ]);

    // RemoteClusterUtils.translateOffsets == strait translate == the exact offsets.
    let java = translated(run.ok(0));
    assert_eq!(java, expected, "RemoteClusterUtils.translateOffsets");
    assert_eq!(java, strait_translate(&config, "A", "B", "g"));

    // MirrorClient.
    let client = run.ok(1);
    assert_eq!(client.one("upstreamClusters").get("value"), "A");
    let hb: BTreeSet<&str> = client
        .one("heartbeatTopics")
        .get("value")
        .split(',')
        .collect();
    assert_eq!(hb, BTreeSet::from(["heartbeats", "A.heartbeats"]));
    assert_eq!(
        client.one("checkpointTopics").get("value"),
        "A.checkpoints.internal"
    );
    let remote: BTreeSet<&str> = client.one("remoteTopics").get("value").split(',').collect();
    for t in ["A.t1", "A.t2", "A.heartbeats"] {
        assert!(remote.contains(t), "remoteTopics {remote:?} lacks {t}");
    }
    assert_eq!(client.one("replicationHops").num("value"), 1);
    for t in ["A.t1", "A.t2", "A.heartbeats"] {
        let l = client
            .of("topicHops")
            .find(|l| l.get("topic") == t)
            .unwrap_or_else(|| panic!("no hops for {t}"));
        assert_eq!((l.num("hops"), l.get("source")), (1, "A"), "{l:?}");
    }
    // Every other remote topic MM2 sees on B would come from a cluster that does not exist;
    // asserted last, so the checks below still run.
    let phantom: Vec<&Line> = client
        .of("topicHops")
        .filter(|l| l.get("source") != "A")
        .collect();

    // Checkpoints: every one decodes; for group g exact (upstream == downstream: the remote
    // topics were empty), the last one per partition is the committed offset.
    let cps = run.ok(2);
    assert!(cps.of("checkpoint").count() > 0);
    let mut latest = Offsets::new();
    for l in cps.of("checkpoint").filter(|l| l.get("group") == "g") {
        assert_eq!(l.num("upstream"), l.num("downstream"), "not exact: {l:?}");
        assert_eq!(l.num("p"), 0, "{l:?}");
        latest.insert(
            (l.get("topic").to_string(), l.num("partition") as i32),
            l.num("downstream"),
        );
    }
    assert_eq!(latest, expected);

    // Heartbeats on B: A -> B; the mirrored A.heartbeats: B -> A (emitted on A by the reverse
    // pair, as MM2 does); the value's timestamp is the record's.
    for (i, source, target) in [(3, "A", "B"), (4, "B", "A")] {
        let s = run.ok(i);
        assert!(s.of("heartbeat").count() > 0, "{}", s.command);
        for l in s.of("heartbeat") {
            assert_eq!(
                (l.get("source"), l.get("target")),
                (source, target),
                "{l:?}"
            );
            assert_eq!(l.num("timestamp"), l.num("record_timestamp"), "{l:?}");
        }
    }

    // Offset syncs on A: all exact (the remote topics were empty, so upstream == downstream).
    let syncs = run.ok(5);
    let mut synced = BTreeSet::new();
    for l in syncs.of("offsetsync") {
        assert_eq!(l.num("upstream"), l.num("downstream"), "{l:?}");
        synced.insert((l.get("topic").to_string(), l.num("partition")));
    }
    for (t, p) in [("t1", 0), ("t1", 1), ("t2", 0)] {
        assert!(
            synced.contains(&(t.to_string(), p)),
            "no offset sync for {t}/{p}"
        );
    }

    // Progress: as MM2's worker writes it (key bytes, value bytes, partition), final after
    // SIGTERM: the last source offset of each partition.
    let progress = run.ok(6);
    for (t, p, last) in [("t1", 0, 99), ("t1", 1, 49), ("t2", 0, 29)] {
        assert_eq!(
            last_progress(progress, "A", t, p),
            Some(last),
            "progress of {t}/{p}"
        );
    }
    eprintln!(
        "mm2_client_library_reads_straits_target: clusters {t_clusters:.1?}, checkpoints \
         {t_checkpoints:.1?} after start, total {:.1?}",
        t0.elapsed()
    );
    assert!(
        phantom.is_empty(),
        "MM2's MirrorClient.remoteTopics() on B lists topics of clusters that do not exist \
         (ReplicationPolicy.isInternalTopic in MM2 4.1.1 is `__*`, `.*`, `mm2*.internal` and \
         checkpoints topics only): {phantom:#?}"
    );
}

// ---------------------------------------------------------------------------------------------
// b + c. One mm2.properties for both; hand-over MM2 -> Strait
// ---------------------------------------------------------------------------------------------

/// MM2 mirrors `h` (2 partitions) while a writer produces; MM2 is stopped (SIGTERM) mid-stream;
/// `strait check` accepts the very file MM2 ran with, and Strait runs with it and continues.
/// Nothing is lost; what is repeated is at most what MM2 wrote after its last progress commit.
#[test]
fn hand_over_from_mm2_to_strait_with_one_config_file() {
    mm2_to_strait("interop-c", false);
}

/// The same after MM2 crashed (SIGKILL), with MM2 committing its progress every second
/// (`B.offset.flush.interval.ms = 1000`; the default is 60 s): Strait repeats what MM2 wrote
/// after its last commit, and no more.
#[test]
fn hand_over_from_a_killed_mm2_to_strait() {
    mm2_to_strait("interop-f", true);
}

fn mm2_to_strait(name: &str, kill: bool) {
    let t0 = Instant::now();
    let clusters = start_clusters(name, 2);
    let (a, b) = (clusters[0].bootstrap(), clusters[1].bootstrap());
    let t_clusters = t0.elapsed();
    reference::create_topic(&a, "h", 2);
    let mut config = mm2_config(&a, &b, "h");
    if kill {
        config.push_str("B.offset.flush.interval.ms = 1000\n");
    }
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("mm2.properties");
    std::fs::write(&config_path, &config).unwrap();

    let writer = Writer::start(&a, "h", 2);
    let t1 = Instant::now();
    let mut mm2 = Mm2Process::start(&config);
    wait_for(
        Duration::from_secs(120),
        || {
            format!(
                "MM2 to mirror 200 records per partition; log:\n{}",
                mm2.log()
            )
        },
        || {
            (0..2)
                .all(|p| high_watermark(&b, "A.h", p) >= 200)
                .then_some(())
        },
    );
    let t_mm2 = t1.elapsed();
    let t2 = Instant::now();
    let mm2_status = if kill {
        // Past a few progress commits, then a crash.
        std::thread::sleep(Duration::from_secs(3));
        mm2.kill9();
        "SIGKILL".to_string()
    } else {
        mm2.stop().to_string()
    };
    let t_mm2_stop = t2.elapsed();
    let written: Vec<i64> = (0..2).map(|p| high_watermark(&b, "A.h", p)).collect();

    // b. The file MM2 ran with passes `strait check`.
    let (status, out) = strait_command(
        &["check", "--config", config_path.to_str().unwrap()],
        &[],
        Duration::from_secs(60),
    );
    assert!(
        status.is_some_and(|s| s.success()),
        "strait check of MM2's own file failed ({status:?}):\n{config}\n---\n{out}"
    );
    eprintln!("strait check of the MM2 file:\n{out}");

    // MM2's progress, read with Connect's converter (also proves the checker on MM2's bytes).
    let run = checker(&[&["decode", &b, "mm2-offsets.A.internal"]]);
    let mm2_progress: Vec<i64> = (0..2)
        .map(|p| last_progress(run.ok(0), "A", "h", p).unwrap_or(-1))
        .collect();

    let t3 = Instant::now();
    let mut strait = StraitProcess::start(&config, dir.path());
    wait_for(
        Duration::from_secs(120),
        || format!("Strait to write to A.h; log:\n{}", strait.log()),
        || {
            (0..2)
                .all(|p| high_watermark(&b, "A.h", p) > written[p as usize] + 100)
                .then_some(())
        },
    );
    let source = writer.finish();
    for p in 0..2 {
        wait_caught_up(&b, "A.h", p, source[p as usize], Duration::from_secs(120));
    }
    let t_strait = t3.elapsed();
    let status = strait.terminate(Duration::from_secs(30));
    assert!(
        status.is_some_and(|s| s.success()),
        "strait exit {status:?}:\n{}",
        strait.log()
    );

    let mut total_dups = 0;
    for p in 0..2 {
        let (n, w, pr) = (source[p], written[p], mm2_progress[p]);
        let h = analyze(&b, "A.h", p as i32, n, w);
        eprintln!(
            "MM2 ({mm2_status}) -> Strait, A.h/{p}: source {n}, MM2 wrote {w}, MM2's last progress {pr} \
             (resume at {}), Strait resumed at {}, duplicates {}",
            pr + 1,
            h.resumed,
            h.duplicates
        );
        assert!(
            h.resumed > pr,
            "{h:?}: Strait resumed before MM2's progress {pr} + 1"
        );
        assert!(
            h.duplicates <= w - (pr + 1),
            "{h:?}: more duplicates than MM2 wrote after its last commit ({})",
            w - (pr + 1)
        );
        total_dups += h.duplicates;
    }

    // Strait's progress records sit with MM2's (same key bytes, same partition) and are final.
    let run = checker(&[&["decode", &b, "mm2-offsets.A.internal"]]);
    for p in 0..2 {
        assert_eq!(
            last_progress(run.ok(0), "A", "h", p),
            Some(source[p as usize] - 1)
        );
    }
    eprintln!(
        "hand_over_from_mm2_to_strait ({name}): MM2 exit {mm2_status}, duplicates {total_dups}; clusters \
         {t_clusters:.1?}, MM2 to 200/partition {t_mm2:.1?}, MM2 stop {t_mm2_stop:.1?}, Strait to \
         caught up {t_strait:.1?}, total {:.1?}",
        t0.elapsed()
    );
}

// ---------------------------------------------------------------------------------------------
// d. Hand-over Strait -> MM2
// ---------------------------------------------------------------------------------------------

/// Strait mirrors while a writer produces, is stopped (SIGTERM), and MM2 continues from Strait's
/// `mm2-offsets.A.internal`: nothing lost, nothing repeated (Strait commits at shutdown). Then
/// Strait takes over again from MM2's progress, writing nothing MM2 wrote.
#[test]
fn hand_over_from_strait_to_mm2() {
    let t0 = Instant::now();
    let clusters = start_clusters("interop-d", 2);
    let (a, b) = (clusters[0].bootstrap(), clusters[1].bootstrap());
    let t_clusters = t0.elapsed();
    reference::create_topic(&a, "h", 2);
    let config = mm2_config(&a, &b, "h");
    let dir = tempfile::tempdir().unwrap();

    let writer = Writer::start(&a, "h", 2);
    let t1 = Instant::now();
    let mut strait = StraitProcess::start(&config, dir.path());
    wait_for(
        Duration::from_secs(60),
        || {
            format!(
                "Strait to mirror 300 records per partition; log:\n{}",
                strait.log()
            )
        },
        || {
            (0..2)
                .all(|p| high_watermark(&b, "A.h", p) >= 300)
                .then_some(())
        },
    );
    let t_strait = t1.elapsed();
    let status = strait.terminate(Duration::from_secs(30));
    assert!(
        status.is_some_and(|s| s.success()),
        "strait exit {status:?}:\n{}",
        strait.log()
    );
    let written: Vec<i64> = (0..2).map(|p| high_watermark(&b, "A.h", p)).collect();
    let run = checker(&[&["decode", &b, "mm2-offsets.A.internal"]]);
    let strait_progress: Vec<i64> = (0..2)
        .map(|p| last_progress(run.ok(0), "A", "h", p).expect("Strait's progress"))
        .collect();

    let t2 = Instant::now();
    let mut mm2 = Mm2Process::start(&config);
    wait_for(
        Duration::from_secs(120),
        || format!("MM2 to write to A.h; log:\n{}", mm2.log()),
        || {
            (0..2)
                .all(|p| high_watermark(&b, "A.h", p) > written[p as usize] + 100)
                .then_some(())
        },
    );
    let source = writer.finish();
    for p in 0..2 {
        wait_caught_up(&b, "A.h", p, source[p as usize], Duration::from_secs(120));
    }
    let t_mm2 = t2.elapsed();
    let mm2_status = mm2.stop();

    let mut total_dups = 0;
    for p in 0..2 {
        let (n, w, pr) = (source[p], written[p], strait_progress[p]);
        let h = analyze(&b, "A.h", p as i32, n, w);
        eprintln!(
            "Strait -> MM2, A.h/{p}: source {n}, Strait wrote {w}, Strait's last progress {pr}, \
             MM2 resumed at {}, duplicates {}",
            h.resumed, h.duplicates
        );
        assert_eq!(
            h.resumed,
            pr + 1,
            "{h:?}: MM2 did not resume at Strait's progress"
        );
        assert_eq!(
            pr + 1,
            w,
            "{h:?}: Strait's final progress is not the end of what it wrote"
        );
        total_dups += h.duplicates;
    }

    // And back to Strait (Strait -> MM2 -> Strait): MM2's progress is ahead of Strait's stored
    // offset map, so Strait resumes there. Before, Strait trusted its own map, failed to match
    // MM2's re-batched records and wrote everything MM2 had written a second time.
    let before: Vec<i64> = (0..2).map(|p| high_watermark(&b, "A.h", p)).collect();
    for p in 0..2 {
        let from = source[p as usize];
        let recs: Vec<_> = (from..from + 50)
            .map(|i| Outgoing::kv(format!("k{i}"), format!("{p}-{i}")))
            .collect();
        reference::produce(&a, "h", p, &recs, &[]);
    }
    let mut back = StraitProcess::start(&config, dir.path());
    for p in 0..2 {
        wait_caught_up(
            &b,
            "A.h",
            p,
            source[p as usize] + 50,
            Duration::from_secs(60),
        );
    }
    let status = back.terminate(Duration::from_secs(30));
    assert!(
        status.is_some_and(|s| s.success()),
        "strait exit {status:?}:\n{}",
        back.log()
    );
    for p in 0..2 {
        let after = high_watermark(&b, "A.h", p);
        assert_eq!(
            after - before[p as usize],
            50,
            "A.h/{p}: back on Strait, only the 50 new records are written (MM2's are not \
             repeated)\n{}",
            back.log()
        );
    }
    eprintln!(
        "hand_over_from_strait_to_mm2 (and back): MM2 exit {mm2_status}, duplicates \
         {total_dups}; clusters {t_clusters:.1?}, Strait to 300/partition {t_strait:.1?}, MM2 to \
         caught up {t_mm2:.1?}, total {:.1?}",
        t0.elapsed()
    );
}

// ---------------------------------------------------------------------------------------------
// e. MM2 (A -> B) and Strait (A -> C) side by side
// ---------------------------------------------------------------------------------------------

/// The same source and group mirrored by MM2 to B and by Strait to C: both checkpoint topics
/// decode with MM2's classes; Strait's translation is exact and MM2's is never ahead of it.
#[test]
fn mm2_and_strait_side_by_side_translate_one_group() {
    let t0 = Instant::now();
    let clusters = start_clusters("interop-e", 3);
    let bs = bootstraps(&clusters);
    let (a, b, c) = (&bs[0], &bs[1], &bs[2]);
    let t_clusters = t0.elapsed();
    reference::create_topic(a, "t", 2);
    produce_numbered(a, "t", 0, 300, 3);
    produce_numbered(a, "t", 1, 120, 2);
    reference::commit_offsets(a, "g", &[("t", 0, 150), ("t", 1, 120)]);
    let exact: Offsets = [(("A.t".to_string(), 0), 150), (("A.t".to_string(), 1), 120)]
        .into_iter()
        .collect();

    let dir = tempfile::tempdir().unwrap();
    let mm2_text = mm2_config(a, b, "t");
    let mm2_path = dir.path().join("mm2-b.properties");
    std::fs::write(&mm2_path, &mm2_text).unwrap();
    let strait_text = format!(
        "clusters = A, C\n\
         A.bootstrap.servers = {a}\n\
         C.bootstrap.servers = {c}\n\
         A->C.enabled = true\n\
         A->C.topics = t\n\
         C->A.emit.heartbeats.enabled = false\n\
         replication.factor = 1\n\
         offset-syncs.topic.replication.factor = 1\n\
         checkpoints.topic.replication.factor = 1\n\
         heartbeats.topic.replication.factor = 1\n\
         offset.storage.replication.factor = 1\n\
         emit.checkpoints.interval.seconds = 1\n\
         refresh.groups.interval.seconds = 1\n"
    );
    let t1 = Instant::now();
    let mut mm2 = Mm2Process::start(&mm2_text);
    let mut strait = StraitProcess::start(&strait_text, dir.path());
    let strait_path = dir.path().join("mm2.properties");
    let last = RefCell::new((Offsets::new(), Offsets::new()));
    wait_for(
        Duration::from_secs(120),
        || {
            format!(
                "checkpoints of g on B (MM2) and C (Strait); last {last:?}; MM2 log:\n{}",
                mm2.log()
            )
        },
        || {
            let mut last = last.borrow_mut();
            last.1 = strait_translate(&strait_path, "A", "C", "g");
            if last.1 != exact {
                return None;
            }
            last.0 = strait_translate(&mm2_path, "A", "B", "g");
            (last.0.len() == 2).then_some(())
        },
    );
    let t_checkpoints = t1.elapsed();

    let run = checker(&[
        &["translate", b, "A", "g"],
        &["translate", c, "A", "g"],
        &["decode", b, "A.checkpoints.internal"],
        &["decode", c, "A.checkpoints.internal"],
        &["decode", a, "mm2-offset-syncs.B.internal"],
        &["decode", a, "mm2-offset-syncs.C.internal"],
    ]);
    let by_mm2 = translated(run.ok(0));
    let by_strait = translated(run.ok(1));
    // Every record of both checkpoint topics and both offset-sync topics decodes, and there are
    // some (`ok` fails on any record MM2's classes reject).
    for i in 2..6 {
        let s = run.ok(i);
        assert!(
            s.one("decoded").num("count") > 0,
            "{}: no records",
            s.command
        );
    }
    eprintln!("group g at {exact:?}: MM2 (B) {by_mm2:?}, Strait (C) {by_strait:?}");
    assert_eq!(by_strait, exact, "Strait's translation is exact");
    // MM2's checkpoints, read by `strait translate`, are what MM2's own library reads.
    assert_eq!(by_mm2, strait_translate(&mm2_path, "A", "B", "g"));
    assert_eq!(
        by_mm2.keys().collect::<Vec<_>>(),
        exact.keys().collect::<Vec<_>>()
    );
    for (k, v) in &by_mm2 {
        assert!(
            (0..=exact[k]).contains(v),
            "MM2's {k:?} = {v} is ahead of the exact {}",
            exact[k]
        );
    }
    // Both offset-sync streams: MM2's and Strait's syncs agree where they name the same
    // upstream offset (both remote topics were empty, so every sync is upstream == downstream).
    for i in [4, 5] {
        for l in run.ok(i).of("offsetsync") {
            assert_eq!(l.num("upstream"), l.num("downstream"), "{l:?}");
        }
    }
    let status = strait.terminate(Duration::from_secs(30));
    assert!(
        status.is_some_and(|s| s.success()),
        "strait exit {status:?}"
    );
    mm2.stop();
    eprintln!(
        "mm2_and_strait_side_by_side: clusters {t_clusters:.1?}, both checkpoints \
         {t_checkpoints:.1?} after start, total {:.1?}",
        t0.elapsed()
    );
}

// ---------------------------------------------------------------------------------------------
// f. Groups below the hand-over point
// ---------------------------------------------------------------------------------------------

/// After MM2 -> Strait, a group that committed below where Strait took over, and that MM2 never
/// checkpointed, still gets a checkpoint: MM2's rule over MM2's own offset syncs (as decoded by
/// MM2's classes), never ahead of the group; `strait translate` calls it conservative, and a
/// group committed above the hand-over exact.
#[test]
fn groups_below_the_hand_over_get_checkpoints_by_mm2s_rule() {
    use replicator::formats::OffsetSync;
    use replicator::offsets::{Mm2OffsetSyncStore, Mm2Translation, TopicPartition};
    let t0 = Instant::now();
    let clusters = start_clusters("interop-g", 2);
    let (a, b) = (clusters[0].bootstrap(), clusters[1].bootstrap());
    reference::create_topic(&a, "lo", 1);
    produce_numbered(&a, "lo", 0, 1000, 10);
    let config = mm2_config(&a, &b, "lo");
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("mm2.properties");
    std::fs::write(&config_path, &config).unwrap();

    let mut mm2 = Mm2Process::start(&config);
    wait_for(
        Duration::from_secs(120),
        || format!("MM2 to mirror lo; log:\n{}", mm2.log()),
        || (high_watermark(&b, "A.lo", 0) >= 1000).then_some(()),
    );
    mm2.stop();
    // Committed while nothing checkpoints: MM2 never saw it.
    reference::commit_offsets(&a, "g-below", &[("lo", 0, 250)]);
    let run = checker(&[
        &["decode", &b, "mm2-offsets.A.internal"],
        &["decode", &a, "mm2-offset-syncs.B.internal"],
    ]);
    let start = last_progress(run.ok(0), "A", "lo", 0).expect("MM2's progress") + 1;
    // MM2's answer for 250 over its syncs below the hand-over, by Kafka 4's OffsetSyncStore
    // rule (full history: MM2 with its checkpoints loaded).
    let mut store = Mm2OffsetSyncStore::with_full_history();
    for l in run.ok(1).of("offsetsync") {
        if l.get("topic") == "lo" && l.num("upstream") < start {
            store.handle(&OffsetSync {
                topic: "lo".into(),
                partition: l.num("partition") as i32,
                upstream_offset: l.num("upstream"),
                downstream_offset: l.num("downstream"),
            });
        }
    }
    store.mark_read_to_end();
    let Mm2Translation::Offset(by_mm2_rule) = store.translate(&TopicPartition::new("lo", 0), 250)
    else {
        panic!("MM2's syncs do not translate 250: {:?}", run.ok(1).lines);
    };
    assert!(by_mm2_rule <= 250, "MM2's rule is never ahead");

    let mut strait = StraitProcess::start(&config, dir.path());
    produce_numbered(&a, "lo", 0, 100, 1);
    wait_for(
        Duration::from_secs(120),
        || format!("Strait to mirror lo; log:\n{}", strait.log()),
        || (high_watermark(&b, "A.lo", 0) >= 1100).then_some(()),
    );
    reference::commit_offsets(&a, "g-above", &[("lo", 0, 1050)]);
    let key = ("A.lo".to_string(), 0);
    let below = wait_for(
        Duration::from_secs(60),
        || format!("checkpoints of g-below and g-above; log:\n{}", strait.log()),
        || {
            let below = strait_translate_with_basis(&config_path, "A", "B", "g-below");
            let above = strait_translate_with_basis(&config_path, "A", "B", "g-above");
            // The map confirming g-above is written at Strait's next commit (within 5 s):
            // until then it shows as conservative.
            let above_exact = above.get(&key) == Some(&(1050, "exact".to_string()));
            (above_exact && below.contains_key(&key)).then(|| below[&key].clone())
        },
    );
    eprintln!(
        "g-below at 250 (hand-over at {start}): Strait {below:?}, MM2's rule {by_mm2_rule}; total {:.1?}",
        t0.elapsed()
    );
    assert_eq!(below, (by_mm2_rule, "conservative".to_string()), "g-below");
    let status = strait.terminate(Duration::from_secs(30));
    assert!(
        status.is_some_and(|s| s.success()),
        "strait exit {status:?}:\n{}",
        strait.log()
    );
}

// ---------------------------------------------------------------------------------------------
// g. Strimzi hand-over, both ways
// ---------------------------------------------------------------------------------------------

/// Source records `from..to` of partition `p`, valued `"<p>-<i>"`.
fn produce_range(bootstrap: &str, topic: &str, p: i32, from: i64, to: i64) {
    let recs: Vec<_> = (from..to)
        .map(|i| Outgoing::kv(format!("k{i}"), format!("{p}-{i}")))
        .collect();
    reference::produce(bootstrap, topic, p, &recs, &[]);
}

/// The remote partition holds exactly source records `0..n`, in order, once each.
fn assert_exactly(bootstrap: &str, remote: &str, p: i32, n: i64, context: &str) {
    let recs = reference::consume_until_end(bootstrap, remote, p);
    let seqs: Vec<i64> = recs.iter().map(|r| seq(r, p)).collect();
    let first_wrong = seqs.iter().zip(0..).position(|(got, want)| *got != want);
    assert!(
        seqs.len() as i64 == n && first_wrong.is_none(),
        "{remote}/{p} after {context}: {} records, not exactly 0..{n}; first out of place at \
         remote offset {first_wrong:?} (source record {:?})",
        seqs.len(),
        first_wrong.map(|i| seqs[i])
    );
}

/// MM2 deployed as Strimzi deploys it (a Connect cluster in distributed mode on the target,
/// group `mirrormaker2-cluster`, offsets in `mirrormaker2-cluster-offsets`, the connector named
/// `A->B.MirrorSourceConnector` and created through the REST API) hands over to Strait run with
/// the `KafkaMirrorMaker2` resource, and Strait hands back: each continues exactly where the
/// other stopped, reading and writing the progress where and as the other does.
#[test]
fn strimzi_hand_over_both_ways_repeats_nothing() {
    let t0 = Instant::now();
    let clusters = start_clusters("interop-s", 2);
    let (a, b) = (clusters[0].bootstrap(), clusters[1].bootstrap());
    reference::create_topic(&a, "s", 2);
    for p in 0..2 {
        produce_range(&a, "s", p, 0, 300);
    }
    let rest = strait_tests::tansu::free_port();
    let worker = format!(
        "bootstrap.servers = {b}\n\
         group.id = mirrormaker2-cluster\n\
         offset.storage.topic = mirrormaker2-cluster-offsets\n\
         config.storage.topic = mirrormaker2-cluster-configs\n\
         status.storage.topic = mirrormaker2-cluster-status\n\
         offset.storage.replication.factor = 1\n\
         config.storage.replication.factor = 1\n\
         status.storage.replication.factor = 1\n\
         offset.flush.interval.ms = 1000\n\
         key.converter = org.apache.kafka.connect.converters.ByteArrayConverter\n\
         value.converter = org.apache.kafka.connect.converters.ByteArrayConverter\n\
         listeners = http://127.0.0.1:{rest}\n\
         scheduled.rebalance.max.delay.ms = 0\n"
    );
    let connector: Vec<(&str, &str)> = vec![
        (
            "connector.class",
            "org.apache.kafka.connect.mirror.MirrorSourceConnector",
        ),
        ("source.cluster.alias", "A"),
        ("target.cluster.alias", "B"),
        ("source.cluster.bootstrap.servers", &a),
        ("target.cluster.bootstrap.servers", &b),
        ("topics", "s"),
        ("tasks.max", "1"),
        ("replication.factor", "1"),
        ("offset-syncs.topic.replication.factor", "1"),
        ("sync.topic.acls.enabled", "false"),
        ("refresh.topics.interval.seconds", "1"),
        (
            "key.converter",
            "org.apache.kafka.connect.converters.ByteArrayConverter",
        ),
        (
            "value.converter",
            "org.apache.kafka.connect.converters.ByteArrayConverter",
        ),
    ];
    let mut connect = Mm2Process::start_connect(&worker);
    connect_put_connector(
        rest,
        "A->B.MirrorSourceConnector",
        &connector,
        Duration::from_secs(120),
    );
    for p in 0..2 {
        wait_caught_up(&b, "A.s", p, 300, Duration::from_secs(120));
    }
    // Past an offset flush (every second), then a graceful stop.
    std::thread::sleep(Duration::from_secs(3));
    connect.stop();
    let t_connect = t0.elapsed();
    for p in 0..2 {
        produce_range(&a, "s", p, 300, 400);
    }

    let yaml = format!(
        r#"apiVersion: kafka.strimzi.io/v1beta2
kind: KafkaMirrorMaker2
metadata:
  name: mm2
spec:
  replicas: 1
  connectCluster: B
  clusters:
    - alias: A
      bootstrapServers: {a}
    - alias: B
      bootstrapServers: {b}
      config:
        offset.storage.replication.factor: 1
  mirrors:
    - sourceCluster: A
      targetCluster: B
      sourceConnector:
        config:
          replication.factor: 1
          offset-syncs.topic.replication.factor: 1
          sync.topic.acls.enabled: "false"
          refresh.topics.interval.seconds: 1
      topicsPattern: "s"
"#
    );
    let dir = tempfile::tempdir().unwrap();
    let mut strait = StraitProcess::start_with("mm2.yaml", &yaml, dir.path(), &[]);
    for p in 0..2 {
        wait_caught_up(&b, "A.s", p, 400, Duration::from_secs(120));
    }
    let status = strait.terminate(Duration::from_secs(30));
    assert!(
        status.is_some_and(|s| s.success()),
        "strait exit {status:?}:\n{}",
        strait.log()
    );
    for p in 0..2 {
        assert_exactly(&b, "A.s", p, 400, "Strimzi's MM2 -> Strait");
    }
    let t_strait = t0.elapsed();

    // Back to the Connect cluster: its connector (kept in its config topic) resumes from what
    // Strait wrote into `mirrormaker2-cluster-offsets`.
    for p in 0..2 {
        produce_range(&a, "s", p, 400, 500);
    }
    let mut connect = Mm2Process::start_connect(&worker);
    for p in 0..2 {
        wait_for(
            Duration::from_secs(120),
            || format!("Connect to resume A.s/{p}; log:\n{}", connect.log()),
            || (high_watermark(&b, "A.s", p) >= 500).then_some(()),
        );
    }
    // Anything repeated would arrive right behind; give it the time to.
    std::thread::sleep(Duration::from_secs(3));
    connect.stop();
    for p in 0..2 {
        assert_exactly(&b, "A.s", p, 500, "Strait -> Strimzi's MM2");
    }
    eprintln!(
        "strimzi hand-over: Connect {t_connect:.1?}, Strait {:.1?}, Connect again {:.1?}",
        t_strait - t_connect,
        t0.elapsed() - t_strait
    );
}
