//! End-to-end bench (issue 7): the real `strait run` process against a librdkafka mirror tuned
//! the way MirrorMaker 2 users tune theirs, between two tansu clusters, on the same data.
//!
//! One row:
//! 1. Two tansu clusters (source, target) start; the source gets topic `bench` (the workload)
//!    and two latency topics `lat-strait`, `lat-base`.
//! 2. `bench` is preloaded with our producer (fast), with the workload's record size, keys,
//!    codec and source batching.
//! 3. **Strait**: `target/release/strait run` is spawned with a generated `mm2.properties`
//!    (flow `A->B`, topics `bench, lat-strait`). The bench polls the high watermarks of
//!    `A.bench` on the target (`strait_benches::kafka::high_watermarks`, every 50 ms) until
//!    they add up to the preloaded count. Its CPU (`utime + stime` of `/proc/<pid>/stat`) and
//!    peak RSS (`VmHWM`) are read then.
//! 4. **Latency**, with Strait still running: records carrying their creation time (ns since
//!    the epoch, in the first 8 bytes of the value) are produced to `lat-strait` at a fixed
//!    rate (default: half the rate Strait reached in step 3) with linger 0; an observer fetches
//!    `A.lat-strait` on the target and computes, per record, observation time − creation time.
//!    A second observer does the same on the source topic: the floor (produce + fetch) that any
//!    mirror adds to. Both observers run in this process, fetch with `max_wait` 10 ms and decode
//!    every record. Strait is then stopped with SIGTERM.
//! 5. **Baseline**: this binary re-runs itself with `--baseline-child` — a librdkafka consumer
//!    (assigned all partitions from the beginning) feeding a librdkafka producer that writes
//!    each record, with its key, value, headers and timestamp, to the same partition of
//!    `base.<topic>` on the target: `linger.ms=50`, `batch.size=1048576`, `acks=all`,
//!    `enable.idempotence=true`, the source's codec. Steps 3-4 are repeated against it.
//!
//! Reported per mirror: MB/s and records/s of record values between the first record appearing
//! on the target and the last, CPU seconds per GB of values (the mirror process only: not the
//! brokers, not this process), peak RSS, time from process start to the first record on the
//! target and to the last, and latency p50/p99. `--suite` runs the standard rows (1, 16, 256 and 1000
//! partitions, a compressed keyed row and a small-batch row) and prints a summary.
//!
//! Run: `cargo build --release -p replicator --bin strait && cargo run --release -p
//! strait-benches --bin e2e-bench -- --gb 0.5 --record-size 1024 --partitions 16 --codec none`

use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use clap::Parser;
use protocol_client::cluster::Cluster;
use protocol_client::fetcher::{Fetcher, FetcherConfig, IsolationLevel};
use protocol_client::producer::records::ProducerRecord;
use protocol_client::producer::{Producer, ProducerConfig};
use protocol_client::record::{split_batches, Compression, DecodeLimits};
use strait_benches::proc_stats::{cpu_seconds, peak_rss_bytes};
use strait_benches::table::{num, ratio, Table};
use strait_benches::workload::{key, ValuePool};
use strait_benches::{kafka, now_ns, GB, MB, MIB};
use strait_tests::kafka::Mm2Process;
use strait_tests::{start_pair, BrokerKind, TestCluster};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Parser, Debug, Clone)]
#[command(
    name = "e2e-bench",
    about = "Strait vs a tuned librdkafka mirror between two tansu clusters"
)]
struct Args {
    /// Gigabytes of record values to replicate (10^9 bytes).
    #[arg(long, default_value_t = 0.5)]
    gb: f64,
    /// Value size in bytes.
    #[arg(long, default_value_t = 1024)]
    record_size: usize,
    /// Partitions of the replicated topic.
    #[arg(long, default_value_t = 16)]
    partitions: i32,
    /// Codec of the source batches (and of the baseline's producer): none, gzip, snappy, lz4,
    /// zstd.
    #[arg(long, default_value = "none")]
    codec: String,
    /// Keyed records (10 000 keys, Kafka's murmur2 partitioner) instead of round-robin.
    #[arg(long)]
    keys: bool,
    /// Source producer's batch size in bytes (the batches Strait forwards as they are).
    #[arg(long, default_value_t = 64 * 1024)]
    source_batch_bytes: usize,
    /// Source producer's linger in ms.
    #[arg(long, default_value_t = 5)]
    source_linger_ms: u64,
    /// Latency phase length in seconds (0 skips it).
    #[arg(long, default_value_t = 10)]
    latency_secs: u64,
    /// After catching up, measure the mirror's CPU while nothing new arrives for this long
    /// (0 skips it): the cost of idle partitions.
    #[arg(long, default_value_t = 0)]
    idle_secs: u64,
    /// Skip the broker warm-up (it writes a topic with as many partitions as the row's to the
    /// target: too many for one broker's file descriptors at 10 000).
    #[arg(long)]
    no_warm_up: bool,
    /// Latency phase rate in records/s (default: half of Strait's measured rate, at most
    /// `--latency-max-rate`).
    #[arg(long)]
    latency_rate: Option<f64>,
    /// Upper bound of the default latency rate. Above about 20 000 records/s the bench's own
    /// probe producer and observers (which decode every record) saturate this 2-core machine
    /// and the source floor itself grows to seconds, so nothing of the mirrors is measured.
    #[arg(long, default_value_t = 20_000.0)]
    latency_max_rate: f64,
    /// `max_wait` of the latency observers' fetches, in ms.
    #[arg(long, default_value_t = 10)]
    observer_wait_ms: u64,
    /// Delete each mirror's remote topics on the target once it has stopped, so that the
    /// target broker holds one mirror's copy at a time: at 10 000 partitions one broker's 20 000
    /// file descriptors do not hold three.
    #[arg(long)]
    drop_remote: bool,
    /// Skip the librdkafka mirror.
    #[arg(long)]
    no_baseline: bool,
    /// Skip MirrorMaker 2.
    #[arg(long)]
    no_mm2: bool,
    /// Extra `key=value` line for Strait's mm2.properties (repeatable), e.g.
    /// `--strait-set strait.coalesce.bytes=0`.
    #[arg(long)]
    strait_set: Vec<String>,
    /// The mirror is done when `read_committed` consumers can read every record (the remote
    /// partitions' last stable offsets), not when the records are appended (high watermarks):
    /// what exactly-once mode's commit interval costs. Transaction markers count as records
    /// here (one per partition per commit).
    #[arg(long)]
    committed: bool,
    /// Strait processes sharing the work (`strait.group.enabled`, scale-out) when above 1: CPU
    /// and peak RSS are summed over them, and each member's share of the CPU is printed.
    #[arg(long, default_value_t = 1)]
    members: usize,
    /// `STRAIT_LOG` for the Strait process (its log is printed on failure).
    #[arg(long, default_value = "warn")]
    strait_log: String,
    /// Where Strait's log goes (default: a temporary file, removed after the row).
    #[arg(long)]
    strait_log_file: Option<PathBuf>,
    /// Broker implementation: `kafka` (Apache Kafka from scripts/install-kafka.sh) or `tansu`.
    #[arg(long, default_value = "kafka")]
    broker: String,
    /// Record Strait's throughput phase with `perf record -g` into this file.
    #[arg(long)]
    perf: Option<PathBuf>,
    /// The strait binary (default: target/release/strait, built if missing).
    #[arg(long)]
    strait_bin: Option<PathBuf>,
    /// Run the standard rows and print a summary (other workload flags are ignored).
    #[arg(long)]
    suite: bool,
    /// Internal: run as the baseline mirror.
    #[arg(long, hide = true)]
    baseline_child: bool,
    /// Internal (baseline child): source bootstrap.
    #[arg(long, hide = true)]
    source: Option<String>,
    /// Internal (baseline child): target bootstrap.
    #[arg(long, hide = true)]
    target: Option<String>,
    /// Internal (baseline child): comma-separated topics to mirror.
    #[arg(long, hide = true)]
    topics: Option<String>,
}

fn main() -> Result<(), BoxError> {
    let args = Args::parse();
    if args.baseline_child {
        return baseline_child(&args);
    }
    let strait = strait_binary(&args)?;
    let rows: Vec<(String, Args)> = if args.suite {
        suite(&args)
    } else {
        vec![(describe(&args), args.clone())]
    };
    let mut summary = Table::new([
        "row",
        "mirror",
        "MB/s",
        "CPU s/GB",
        "peak RSS MiB",
        "first record s",
        "all records s",
        "lat p99 ms",
        "added p99 ms",
        "idle % core",
    ]);
    for (name, row_args) in rows {
        eprintln!("== {name} (load {})", load_average());
        match run_row(&row_args, &strait) {
            Ok(r) => {
                println!("\n### {name}\n\n{}", r.table().render());
                r.summary_rows(&name, &mut summary);
            }
            Err(e) => {
                eprintln!("row {name} failed: {e}");
                summary.row([name, format!("failed: {e}")]);
            }
        }
    }
    if args.suite {
        println!(
            "\n### Summary (load at end {})\n\n{}",
            load_average(),
            summary.render()
        );
    }
    Ok(())
}

fn describe(a: &Args) -> String {
    format!(
        "{} partitions, {} B values, {} GB, codec {}, {}, source batches {} B linger {} ms",
        a.partitions,
        a.record_size,
        a.gb,
        a.codec,
        if a.keys { "keyed" } else { "unkeyed" },
        a.source_batch_bytes,
        a.source_linger_ms
    )
}

fn suite(base: &Args) -> Vec<(String, Args)> {
    let row = |name: &str, partitions: i32, gb: f64, size: usize, codec: &str, keys: bool| {
        let mut a = base.clone();
        a.suite = false;
        a.partitions = partitions;
        a.gb = gb;
        a.record_size = size;
        a.codec = codec.into();
        a.keys = keys;
        (name.to_string(), a)
    };
    let mut rows = vec![
        row("1 partition, 1 KiB", 1, 0.25, 1024, "none", false),
        row("16 partitions, 1 KiB", 16, 0.5, 1024, "none", false),
        row(
            "16 partitions, 1 KiB, lz4, keyed",
            16,
            0.5,
            1024,
            "lz4",
            true,
        ),
        row("256 partitions, 1 KiB", 256, 0.25, 1024, "none", false),
        row("1000 partitions, 1 KiB", 1000, 0.1, 1024, "none", false),
    ];
    let mut small = row(
        "small batches: 16 partitions, 100 B, linger 0, 1 KiB batches",
        16,
        0.05,
        100,
        "none",
        false,
    );
    small.1.source_linger_ms = 0;
    small.1.source_batch_bytes = 1024;
    rows.push(small);
    // A trickle over many partitions: about one record per partition, then 30 s with nothing
    // new. 9 900, not 10 000: a KRaft controller refuses a CreateTopics request of more than
    // 10 000 partitions in all ("Excessively large number of partitions per request"), and MM2
    // creates its remote topics in one request (this one, its heartbeats and its latency
    // topic): at 9 999 it never starts. No warm-up (it would write a topic of as many
    // partitions to the target), and one mirror's remote topic on the target at a time.
    let mut idle = row(
        "~10 000 partitions (9 900), idle: 1 KiB trickle, then 30 s idle",
        9_900,
        0.01,
        1024,
        "none",
        false,
    );
    idle.1.latency_secs = 0;
    idle.1.idle_secs = 30;
    idle.1.no_warm_up = true;
    idle.1.drop_remote = true;
    rows.push(idle);
    rows
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

fn codec(name: &str) -> Result<Compression, BoxError> {
    Ok(match name {
        "none" => Compression::None,
        "gzip" => Compression::Gzip,
        "snappy" => Compression::Snappy,
        "lz4" => Compression::Lz4,
        "zstd" => Compression::Zstd,
        other => return Err(format!("unknown codec {other}").into()),
    })
}

fn strait_binary(args: &Args) -> Result<PathBuf, BoxError> {
    if let Some(p) = &args.strait_bin {
        return Ok(p.clone());
    }
    let root = strait_benches::workspace_root();
    let bin = root.join("target/release/strait");
    if !bin.exists() && !args.baseline_child {
        eprintln!("building target/release/strait");
        let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args(["build", "--release", "-p", "replicator", "--bin", "strait"])
            .current_dir(&root)
            .status()?;
        if !status.success() {
            return Err("cargo build --release -p replicator --bin strait failed".into());
        }
    }
    Ok(bin)
}

/// A mirror under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mirror {
    Strait,
    Librdkafka,
    Mm2,
}

impl Mirror {
    fn name(self) -> &'static str {
        match self {
            Mirror::Strait => "strait",
            Mirror::Librdkafka => "librdkafka mirror",
            Mirror::Mm2 => "MirrorMaker 2",
        }
    }

    /// Its own latency topic on the source (each mirror copies only its own).
    fn latency_topic(self) -> &'static str {
        match self {
            Mirror::Strait => "lat-strait",
            Mirror::Librdkafka => "lat-base",
            Mirror::Mm2 => "lat-mm2",
        }
    }

    /// Where it writes `topic` on the target: Strait as flow `A->B`, MM2 as flow `S->T` (its
    /// own aliases, so the two never share a remote topic or an internal topic), the librdkafka
    /// mirror under `base.`.
    fn remote(self, topic: &str) -> String {
        match self {
            Mirror::Strait => format!("A.{topic}"),
            Mirror::Librdkafka => format!("base.{topic}"),
            Mirror::Mm2 => format!("S.{topic}"),
        }
    }
}

/// What one mirror achieved.
#[derive(Debug, Clone)]
struct MirrorResult {
    records: u64,
    value_bytes: u64,
    /// Seconds from the first record on the target to the last.
    secs: f64,
    cpu_secs: f64,
    /// CPU seconds of the source and the target brokers' processes over the same time.
    broker_cpu_secs: (f64, f64),
    peak_rss: u64,
    first_record: f64,
    latency: Option<Latency>,
    /// After catching up, with no new data for `--idle-secs`: CPU in % of one core, and the
    /// RSS at the end (MiB).
    idle: Option<(f64, f64)>,
}

impl MirrorResult {
    fn mb_s(&self) -> f64 {
        self.value_bytes as f64 / MB / self.secs
    }
    fn rec_s(&self) -> f64 {
        self.records as f64 / self.secs
    }
    /// Seconds from start to the last record on the target (what a user waits for a whole
    /// backlog): MB/s leaves the wait for the first record out.
    fn all_records(&self) -> f64 {
        self.first_record + self.secs
    }
    fn cpu_per_gb(&self) -> f64 {
        self.cpu_secs / (self.value_bytes as f64 / GB)
    }
    fn broker_cpu_per_gb(&self) -> (f64, f64) {
        let gb = self.value_bytes as f64 / GB;
        (self.broker_cpu_secs.0 / gb, self.broker_cpu_secs.1 / gb)
    }
    fn rss_mib(&self) -> f64 {
        self.peak_rss as f64 / MIB
    }
}

#[derive(Debug, Clone)]
struct Latency {
    rate: f64,
    sent: u64,
    seen: u64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    floor_p50_ms: f64,
    floor_p99_ms: f64,
}

impl Latency {
    /// What the mirror adds at p99: its p99 minus the source floor's p99.
    fn added_p99_ms(&self) -> f64 {
        self.p99_ms - self.floor_p99_ms
    }
}

#[derive(Debug)]
struct RowResult {
    preload_mb_s: f64,
    mirrors: Vec<(Mirror, MirrorResult)>,
}

impl RowResult {
    fn get(&self, m: Mirror) -> Option<&MirrorResult> {
        self.mirrors.iter().find(|(k, _)| *k == m).map(|(_, r)| r)
    }

    /// Strait over each other mirror, per column.
    fn ratios(&self) -> Vec<(Mirror, [String; 10])> {
        let Some(s) = self.get(Mirror::Strait) else {
            return Vec::new();
        };
        self.mirrors
            .iter()
            .filter(|(k, _)| *k != Mirror::Strait)
            .map(|(k, b)| {
                let lat = |f: fn(&Latency) -> f64| match (&s.latency, &b.latency) {
                    (Some(x), Some(y)) => ratio(f(x), f(y)),
                    _ => "-".into(),
                };
                (
                    *k,
                    [
                        ratio(s.mb_s(), b.mb_s()),
                        ratio(s.rec_s(), b.rec_s()),
                        ratio(s.cpu_per_gb(), b.cpu_per_gb()),
                        ratio(s.rss_mib(), b.rss_mib()),
                        ratio(s.first_record, b.first_record),
                        ratio(s.all_records(), b.all_records()),
                        lat(|l| l.p50_ms),
                        lat(|l| l.p99_ms),
                        lat(|l| l.max_ms),
                        match (s.idle, b.idle) {
                            (Some((x, _)), Some((y, _))) => ratio(x, y),
                            _ => "-".into(),
                        },
                    ],
                )
            })
            .collect()
    }

    fn table(&self) -> Table {
        let mut t = Table::new([
            "mirror",
            "MB/s",
            "records/s",
            "CPU s/GB",
            "source/target broker CPU s/GB",
            "peak RSS MiB",
            "first record s",
            "all records s",
            "latency rate rec/s",
            "p50 ms",
            "p99 ms",
            "max ms",
            "source floor p50/p99 ms",
            "added p99 ms",
            "seen/sent",
            "idle % core / RSS MiB",
        ]);
        for (k, m) in &self.mirrors {
            let l = m.latency.as_ref();
            t.row([
                k.name().to_string(),
                num(m.mb_s(), 1),
                num(m.rec_s(), 0),
                num(m.cpu_per_gb(), 2),
                {
                    let (s, t) = m.broker_cpu_per_gb();
                    format!("{}/{}", num(s, 2), num(t, 2))
                },
                num(m.rss_mib(), 1),
                num(m.first_record, 2),
                num(m.all_records(), 2),
                l.map_or("-".into(), |l| num(l.rate, 0)),
                l.map_or("-".into(), |l| num(l.p50_ms, 1)),
                l.map_or("-".into(), |l| num(l.p99_ms, 1)),
                l.map_or("-".into(), |l| num(l.max_ms, 1)),
                l.map_or("-".into(), |l| {
                    format!("{}/{}", num(l.floor_p50_ms, 1), num(l.floor_p99_ms, 1))
                }),
                l.map_or("-".into(), |l| num(l.added_p99_ms(), 1)),
                l.map_or("-".into(), |l| format!("{}/{}", l.seen, l.sent)),
                m.idle.map_or("-".into(), |(cpu, rss)| {
                    format!("{} / {}", num(cpu, 2), num(rss, 1))
                }),
            ]);
        }
        for (k, r) in self.ratios() {
            let [mb, rec, cpu, rss, first, all, p50, p99, max, idle] = r;
            t.row([
                format!("strait / {}", k.name()),
                mb,
                rec,
                cpu,
                String::new(),
                rss,
                first,
                all,
                String::new(),
                p50,
                p99,
                max,
                String::new(),
                String::new(),
                String::new(),
                idle,
            ]);
        }
        t.row([format!("(preload {} MB/s)", num(self.preload_mb_s, 1))]);
        t
    }

    fn summary_rows(&self, name: &str, t: &mut Table) {
        for (k, m) in &self.mirrors {
            t.row([
                name.to_string(),
                k.name().to_string(),
                num(m.mb_s(), 1),
                num(m.cpu_per_gb(), 2),
                num(m.rss_mib(), 1),
                num(m.first_record, 2),
                num(m.all_records(), 2),
                m.latency.as_ref().map_or("-".into(), |l| num(l.p99_ms, 1)),
                m.latency
                    .as_ref()
                    .map_or("-".into(), |l| num(l.added_p99_ms(), 1)),
                m.idle.map_or("-".into(), |(cpu, _)| num(cpu, 2)),
            ]);
        }
        for (k, r) in self.ratios() {
            let [mb, _, cpu, rss, first, all, _, p99, _, idle] = r;
            t.row([
                name.to_string(),
                format!("**strait / {}**", k.name()),
                mb,
                cpu,
                rss,
                first,
                all,
                p99,
                String::new(),
                idle,
            ]);
        }
    }
}

/// A mirror's running processes.
enum Running {
    /// One process, or several Strait members of one group.
    Children(Vec<(Child, PathBuf)>),
    Mm2(Mm2Process),
}

impl Running {
    fn pid(&self) -> u32 {
        self.pids().first().copied().unwrap_or(0)
    }

    fn pids(&self) -> Vec<u32> {
        match self {
            Running::Children(c) => c.iter().map(|(c, _)| c.id()).collect(),
            Running::Mm2(m) => vec![m.pid().unwrap_or(0)],
        }
    }

    fn log_tail(&self) -> String {
        match self {
            Running::Children(c) => c
                .iter()
                .map(|(_, log)| tail_lines(&std::fs::read_to_string(log).unwrap_or_default(), 20))
                .collect::<Vec<_>>()
                .join("\n-----\n"),
            Running::Mm2(m) => tail_lines(&m.log(), 20),
        }
    }

    /// SIGTERM (Strait: a clean stop whose errors are reported) or a kill.
    fn stop(self, graceful: bool) {
        match self {
            Running::Children(children) => {
                if graceful {
                    for (child, _) in &children {
                        signal(child.id(), "TERM");
                    }
                }
                for (mut child, log) in children {
                    if graceful {
                        wait_or_kill(&mut child, Duration::from_secs(30));
                        let text = std::fs::read_to_string(&log).unwrap_or_default();
                        let errors: Vec<&str> =
                            text.lines().filter(|l| l.contains("ERROR")).collect();
                        if !errors.is_empty() {
                            eprintln!("logged errors:\n{}", errors.join("\n"));
                        }
                    } else {
                        let _ = child.kill();
                        let _ = child.wait();
                    }
                }
            }
            Running::Mm2(mut m) => m.kill9(),
        }
    }
}

fn run_row(args: &Args, strait: &PathBuf) -> Result<RowResult, BoxError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let kind = match args.broker.as_str() {
        "kafka" => BrokerKind::Kafka,
        "tansu" => BrokerKind::Tansu,
        other => return Err(format!("--broker {other}: kafka or tansu").into()),
    };
    let brokers = start_pair(kind, "e2e");
    let (src_addr, dst_addr) = (brokers[0].bootstrap(), brokers[1].bootstrap());
    let n = ((args.gb * GB) / args.record_size as f64).round().max(1.0) as usize;
    let lat_partitions = args.partitions.min(16);
    let mut mirrors = vec![Mirror::Strait];
    if !args.no_baseline {
        mirrors.push(Mirror::Librdkafka);
    }
    if !args.no_mm2 {
        mirrors.push(Mirror::Mm2);
    }
    let (source, target) = rt.block_on(async {
        let s = kafka::connect(&src_addr).await?;
        let t = kafka::connect(&dst_addr).await?;
        kafka::create_topic(&s, "bench", args.partitions, &[]).await?;
        for m in &mirrors {
            kafka::create_topic(&s, m.latency_topic(), lat_partitions, &[]).await?;
        }
        // Fresh clusters hand out the same first producer ids: without this the source batches
        // would carry exactly the id, epoch and sequences Strait's target producer gets, and
        // its header rewrite would find nothing to change, which never happens in production.
        for _ in 0..3 {
            Producer::new(s.clone(), ProducerConfig::default())
                .await?
                .close()
                .await;
        }
        Ok::<_, protocol_client::Error>((s, t))
    })?;

    eprintln!("preloading {n} records of {} B", args.record_size);
    let preload = rt.block_on(preload(&source, args, n))?;
    let preload_mb_s = (n * args.record_size) as f64 / MB / preload;
    if !args.no_warm_up {
        eprintln!("warming up the brokers");
        rt.block_on(warm_up(&source, &target, args, n))?;
    }
    let dir = tempfile::tempdir()?;
    let mut results: Vec<(Mirror, MirrorResult)> = Vec::new();
    let last = mirrors.last().copied();
    for m in mirrors {
        eprintln!("{}: replicating (load {})", m.name(), load_average());
        let brokers_cpu = || -> (f64, f64) {
            let cpu = |c: &dyn TestCluster| -> f64 {
                c.pids()
                    .iter()
                    .filter_map(|p| cpu_seconds(Some(*p)).ok())
                    .sum()
            };
            (cpu(brokers[0].as_ref()), cpu(brokers[1].as_ref()))
        };
        // Every mirror's clock and broker CPU start before its remote topic exists: Strait and
        // MM2 create theirs, and the bench creates the librdkafka mirror's in `start_mirror`.
        let started = Instant::now();
        let broker_cpu_before = brokers_cpu();
        let target_fds_before = open_files(&brokers[1].pids());
        let running = start_mirror(m, args, strait, &src_addr, &dst_addr, &target, &rt, &dir)?;
        let mut guard = ChildGuard(running.pids());
        let perf = match (&args.perf, m) {
            (Some(out), Mirror::Strait) => Some(
                Command::new("perf")
                    .args(["record", "-e", "cpu-clock", "-F", "999", "-g", "-o"])
                    .arg(out)
                    .args(["-p", &running.pid().to_string()])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()?,
            ),
            _ => None,
        };
        let measured = rt
            .block_on(measure_mirror(
                &target,
                &m.remote("bench"),
                args,
                n,
                &running.pids(),
                started,
            ))
            .map(|mut r| {
                let after = brokers_cpu();
                r.broker_cpu_secs = (after.0 - broker_cpu_before.0, after.1 - broker_cpu_before.1);
                r
            });
        if let Some(mut p) = perf {
            signal(p.id(), "INT");
            let _ = p.wait();
        }
        let mut r = match measured {
            Ok(r) => r,
            Err(e) => {
                let tail = running.log_tail();
                running.stop(false);
                guard.0.clear();
                return Err(format!("{}: {e}; log tail:\n{tail}", m.name()).into());
            }
        };
        if args.idle_secs > 0 {
            let pid = running.pid();
            let before = cpu_seconds(Some(pid)).unwrap_or(0.0);
            std::thread::sleep(Duration::from_secs(args.idle_secs));
            let used = cpu_seconds(Some(pid)).unwrap_or(0.0) - before;
            let rss = strait_benches::proc_stats::rss_bytes(Some(pid)).unwrap_or(0) as f64 / MIB;
            r.idle = Some((100.0 * used / args.idle_secs as f64, rss));
            eprintln!(
                "{}: idle {:.2} % of a core, RSS {rss:.1} MiB",
                m.name(),
                100.0 * used / args.idle_secs as f64
            );
        }
        if args.latency_secs > 0 {
            // Every mirror gets the same rate: half of what Strait moved (it runs first).
            let strait_rate = results
                .first()
                .map_or(r.rec_s(), |(_, s): &(Mirror, MirrorResult)| s.rec_s());
            let rate = args
                .latency_rate
                .unwrap_or((strait_rate / 2.0).min(args.latency_max_rate))
                .max(1.0);
            eprintln!("{}: latency at {rate:.0} records/s", m.name());
            r.latency = Some(rt.block_on(latency_phase(
                &source,
                &target,
                (m.latency_topic(), &m.remote(m.latency_topic())),
                lat_partitions,
                rate,
                args,
            ))?);
        }
        running.stop(m == Mirror::Strait);
        guard.0.clear();
        if args.drop_remote && Some(m) != last {
            rt.block_on(drop_remote(&target, m))?;
            // Kafka closes a deleted partition's files only when it removes them
            // (`file.delete.delay.ms` later): the next mirror waits for the descriptors.
            let deadline = Instant::now() + Duration::from_secs(180);
            while open_files(&brokers[1].pids()) > target_fds_before + 500
                && Instant::now() < deadline
            {
                std::thread::sleep(Duration::from_millis(500));
            }
            eprintln!(
                "target broker: {} open files (before {}: {target_fds_before})",
                open_files(&brokers[1].pids()),
                m.name()
            );
        }
        results.push((m, r));
    }
    drop(brokers);
    Ok(RowResult {
        preload_mb_s,
        mirrors: results,
    })
}

/// Open file descriptors of processes `pids`.
fn open_files(pids: &[u32]) -> usize {
    pids.iter()
        .filter_map(|p| std::fs::read_dir(format!("/proc/{p}/fd")).ok())
        .map(|d| d.count())
        .sum()
}

/// Deletes `m`'s remote topics on the target and waits until its metadata no longer lists
/// them (Kafka closes a deleted partition's files at once and removes them later).
async fn drop_remote(target: &Arc<Cluster>, m: Mirror) -> Result<(), BoxError> {
    let topics = vec![m.remote("bench"), m.remote(m.latency_topic())];
    let admin = protocol_client::admin::Admin::new(target.clone());
    for (topic, r) in admin.delete_topics(&topics).await? {
        match r {
            Ok(()) => {}
            Err(e)
                if e.response_error()
                    == Some(protocol_client::ResponseError::UnknownTopicOrPartition) => {}
            Err(e) => return Err(format!("deleting {topic}: {e}").into()),
        }
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let listed = admin.list_topics().await?;
        if !listed.iter().any(|t| topics.contains(&t.name)) {
            eprintln!("{}: deleted {} on the target", m.name(), topics.join(", "));
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("{} still listed 120 s after deletion", topics.join(", ")).into());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Starts one mirror of the row's topic and its latency topic.
#[allow(clippy::too_many_arguments)]
fn start_mirror(
    m: Mirror,
    args: &Args,
    strait: &PathBuf,
    src_addr: &str,
    dst_addr: &str,
    target: &Arc<Cluster>,
    rt: &tokio::runtime::Runtime,
    dir: &tempfile::TempDir,
) -> Result<Running, BoxError> {
    Ok(match m {
        Mirror::Strait => {
            let cfg = dir.path().join("mm2.properties");
            let mut props = strait_properties(src_addr, dst_addr);
            if args.members > 1 {
                props.push_str("strait.group.enabled=true\n");
            }
            for line in &args.strait_set {
                props.push_str(line);
                props.push('\n');
            }
            std::fs::write(&cfg, props)?;
            let mut children = Vec::new();
            for member in 0..args.members.max(1) {
                let log = match (&args.strait_log_file, member) {
                    (Some(f), 0) => f.clone(),
                    (Some(f), m) => f.with_extension(format!("{m}.log")),
                    (None, m) => dir.path().join(format!("strait-{m}.log")),
                };
                let child = Command::new(strait)
                    .args(["run", "--config"])
                    .arg(&cfg)
                    .env("STRAIT_LOG", &args.strait_log)
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(std::fs::File::create(&log)?)
                    .spawn()?;
                children.push((child, log));
            }
            Running::Children(children)
        }
        Mirror::Librdkafka => {
            let lat_partitions = args.partitions.min(16);
            rt.block_on(async {
                kafka::create_topic(target, &m.remote("bench"), args.partitions, &[]).await?;
                kafka::create_topic(target, &m.remote(m.latency_topic()), lat_partitions, &[]).await
            })?;
            let log = dir.path().join("baseline.log");
            let child = Command::new(std::env::current_exe()?)
                .args([
                    "--baseline-child",
                    "--source",
                    src_addr,
                    "--target",
                    dst_addr,
                ])
                .args(["--topics", &format!("bench,{}", m.latency_topic())])
                .args(["--codec", &args.codec])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log)?)
                .spawn()?;
            Running::Children(vec![(child, log)])
        }
        Mirror::Mm2 => Running::Mm2(Mm2Process::start(&mm2_properties(src_addr, dst_addr, args))),
    })
}

fn tail_lines(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Kills child processes on drop (error paths), by pid.
#[derive(Debug)]
struct ChildGuard(Vec<u32>);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        for pid in &self.0 {
            signal(*pid, "KILL");
        }
    }
}

fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status();
}

fn wait_or_kill(child: &mut Child, within: Duration) {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!(
        "process {} did not stop in {within:?}; killing it",
        child.id()
    );
    let _ = child.kill();
    let _ = child.wait();
}

fn strait_properties(source: &str, target: &str) -> String {
    format!(
        "clusters = A, B\n\
         A.bootstrap.servers = {source}\n\
         B.bootstrap.servers = {target}\n\
         A->B.enabled = true\n\
         A->B.topics = bench, lat-strait\n\
         replication.factor = 1\n\
         offset-syncs.topic.replication.factor = 1\n\
         checkpoints.topic.replication.factor = 1\n\
         heartbeats.topic.replication.factor = 1\n\
         offset.storage.replication.factor = 1\n\
         sync.topic.acls.enabled = false\n"
    )
}

/// MirrorMaker 2 (dedicated mode) tuned as its users tune it for throughput: `tasks.max` =
/// partitions up to 4 (the machine has 2 cores; more tasks only add threads), the target
/// producer batching like the librdkafka mirror (`batch.size` 1 MiB, `linger.ms` 50,
/// `max.request.size` 2 MiB) with the source's codec (MM2 re-produces records: without it the
/// target data would be uncompressed), and the source consumer fetching in large polls
/// (`max.poll.records` 10 000, 4 MiB per partition). Connect's own producer guarantees stay
/// (`acks=all`, one request in flight, idempotence off): they are what MM2 runs with.
fn mm2_properties(source: &str, target: &str, args: &Args) -> String {
    let tasks = args.partitions.clamp(1, 4);
    format!(
        "clusters = S, T\n\
         S.bootstrap.servers = {source}\n\
         T.bootstrap.servers = {target}\n\
         S->T.enabled = true\n\
         S->T.topics = bench, lat-mm2\n\
         tasks.max = {tasks}\n\
         T.producer.batch.size = 1048576\n\
         T.producer.linger.ms = 50\n\
         T.producer.max.request.size = 2097152\n\
         T.producer.compression.type = {codec}\n\
         S.consumer.max.poll.records = 10000\n\
         S.consumer.max.partition.fetch.bytes = 4194304\n\
         replication.factor = 1\n\
         offset-syncs.topic.replication.factor = 1\n\
         checkpoints.topic.replication.factor = 1\n\
         heartbeats.topic.replication.factor = 1\n\
         offset.storage.replication.factor = 1\n\
         status.storage.replication.factor = 1\n\
         config.storage.replication.factor = 1\n\
         sync.topic.acls.enabled = false\n",
        codec = args.codec,
    )
}

async fn preload(source: &Arc<Cluster>, args: &Args, n: usize) -> Result<f64, BoxError> {
    produce_load(source, "bench", args, n).await
}

/// Writes `n` records of the row's workload to `topic`; returns the seconds it took and checks
/// the topic holds them.
async fn produce_load(
    source: &Arc<Cluster>,
    topic: &str,
    args: &Args,
    n: usize,
) -> Result<f64, BoxError> {
    let pool = ValuePool::new(args.record_size, 4096);
    let producer = Producer::new(
        source.clone(),
        ProducerConfig {
            linger: Duration::from_millis(args.source_linger_ms),
            batch_bytes: args.source_batch_bytes,
            compression: codec(&args.codec)?,
            ..ProducerConfig::default()
        },
    )
    .await?;
    let start = Instant::now();
    let mut pending = std::collections::VecDeque::new();
    for i in 0..n {
        let rx = producer
            .send_nowait(ProducerRecord {
                topic: topic.into(),
                partition: if args.keys {
                    None
                } else {
                    Some(i as i32 % args.partitions)
                },
                key: args.keys.then(|| key(i)),
                value: Some(pool.get(i).clone()),
                headers: Vec::new(),
                timestamp: None,
            })
            .await?;
        pending.push_back(rx);
        if pending.len() > 100_000 {
            pending.pop_front().expect("non-empty").await??;
        }
    }
    producer.flush_records().await;
    for rx in pending {
        rx.await??;
    }
    let secs = start.elapsed().as_secs_f64();
    producer.close().await;
    let total = kafka::total_records(source, topic, args.partitions).await?;
    if total != n as i64 {
        return Err(format!("{topic} holds {total} records after writing {n}").into());
    }
    Ok(secs)
}

/// Warms both brokers' produce and fetch paths before the first mirror runs, so that the first
/// one (Strait) does not pay for the JVM's just-in-time compilation that later ones would not:
/// up to 0.2 GB of the workload is written to a `warmup` topic on the target, and the
/// preloaded topic is read once on the source.
async fn warm_up(
    source: &Arc<Cluster>,
    target: &Arc<Cluster>,
    args: &Args,
    n: usize,
) -> Result<(), BoxError> {
    let warm = n.min((0.2 * GB / args.record_size as f64) as usize).max(1);
    kafka::create_topic(target, "warmup", args.partitions, &[]).await?;
    produce_load(target, "warmup", args, warm).await?;
    let mut fetcher = Fetcher::new(
        source.clone(),
        FetcherConfig {
            isolation: IsolationLevel::ReadUncommitted,
            ..FetcherConfig::default()
        },
    );
    let ends = kafka::last_batch_offsets(source, "bench", args.partitions).await?;
    let mut done = vec![false; args.partitions as usize];
    for p in 0..args.partitions {
        fetcher.assign("bench", p, 0);
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while done.iter().any(|d| !d) && Instant::now() < deadline {
        for fp in fetcher.poll().await? {
            let i = fp.partition as usize;
            if i < done.len() && fp.high_watermark >= ends[i] {
                if let Some(Ok(last)) = split_batches(fp.records).last() {
                    done[i] |= last.next_offset() >= ends[i];
                }
                if !done[i] && ends[i] == 0 {
                    done[i] = true;
                }
            }
        }
    }
    Ok(())
}

/// Polls `topic` on the target until it holds `n` records; returns the mirror's numbers.
async fn measure_mirror(
    target: &Arc<Cluster>,
    topic: &str,
    args: &Args,
    n: usize,
    pids: &[u32],
    start: Instant,
) -> Result<MirrorResult, BoxError> {
    let cpu_before: Vec<f64> = pids
        .iter()
        .map(|p| cpu_seconds(Some(*p)).unwrap_or(0.0))
        .collect();
    let mut known = Vec::new();
    let mut first: Option<Instant> = None;
    let mut last_progress = (0i64, Instant::now());
    let mut last_draw = start;
    loop {
        // The remote topic may not exist yet: until it does, nothing has arrived.
        // Partitions the mirror has not created yet (a large topic grows in steps) count as
        // empty until they have a leader.
        let total = if target.leader(topic, 0).await.is_ok() {
            let _ = kafka::end_offsets(target, topic, args.partitions, &mut known, args.committed)
                .await;
            known.iter().sum()
        } else {
            0
        };
        let now = Instant::now();
        if total > 0 && first.is_none() {
            // With `--committed` the first records become visible only with the first commit,
            // when most of the run may be done: the clock then runs from the mirror's start.
            first = Some(if args.committed { start } else { now });
        }
        if total >= n as i64 {
            let mut cpu_secs = 0.0;
            let mut peak_rss = 0;
            let mut shares = Vec::new();
            for (p, before) in pids.iter().zip(&cpu_before) {
                let cpu = cpu_seconds(Some(*p))?;
                cpu_secs += cpu;
                shares.push(cpu - before);
                peak_rss = peak_rss.max(peak_rss_bytes(Some(*p))?);
            }
            if pids.len() > 1 {
                let total: f64 = shares.iter().sum::<f64>().max(1e-9);
                eprintln!(
                    "members' CPU during the run: {} s ({} of the total)",
                    shares
                        .iter()
                        .map(|c| format!("{c:.2}"))
                        .collect::<Vec<_>>()
                        .join(" / "),
                    shares
                        .iter()
                        .map(|c| format!("{:.0} %", 100.0 * c / total))
                        .collect::<Vec<_>>()
                        .join(" / ")
                );
            }
            let first = first.unwrap_or(now);
            return Ok(MirrorResult {
                records: n as u64,
                value_bytes: (n * args.record_size) as u64,
                secs: (now - first).as_secs_f64().max(1e-3),
                cpu_secs,
                broker_cpu_secs: (0.0, 0.0),
                peak_rss,
                first_record: (first - start).as_secs_f64(),
                latency: None,
                idle: None,
            });
        }
        // A one-line progress bar on stderr: redrawn in place twice a second on a terminal,
        // a line every 5 s otherwise (logs).
        let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
        let every = if tty {
            Duration::from_millis(500)
        } else {
            Duration::from_secs(5)
        };
        if now - last_draw >= every || total >= n as i64 {
            last_draw = now;
            let done = (total.max(0) as f64 / n.max(1) as f64).min(1.0);
            let width = 30;
            let filled = (done * width as f64) as usize;
            let mb = total.max(0) as f64 * args.record_size as f64 / 1e6;
            let secs = first
                .map(|f| (now - f).as_secs_f64())
                .unwrap_or(0.0)
                .max(1e-3);
            let line = format!(
                "  {topic} [{}{}] {:>5.1}% {total}/{n} records, {:.1} MB/s",
                "#".repeat(filled),
                "-".repeat(width - filled),
                done * 100.0,
                mb / secs
            );
            if tty {
                eprint!("\r{line}");
                if total >= n as i64 {
                    eprintln!();
                }
            } else {
                eprintln!("{line}");
            }
        }
        // Before the first record the mirror may still be creating its remote topic: a
        // broker creates thousands of partitions in tens of seconds.
        let patience = if total > 0 {
            Duration::from_secs(60)
        } else {
            Duration::from_secs(60) + Duration::from_millis(20) * args.partitions.max(0) as u32
        };
        if total > last_progress.0 {
            last_progress = (total, now);
        } else if now - last_progress.1 > patience {
            return Err(
                format!("{topic}: stuck at {total} of {n} records for {patience:?}").into(),
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Value of a latency probe: creation time (ns since the epoch) and sequence, padded.
fn probe(seq: u64, size: usize, pad: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(size.max(16));
    b.put_u64(now_ns());
    b.put_u64(seq);
    let rest = size.saturating_sub(16).min(pad.len());
    b.put_slice(&pad[..rest]);
    b.freeze()
}

/// Fetches `topic` from offset 0 and records, per probe, observation − creation in ns.
async fn observe(
    cluster: Arc<Cluster>,
    topic: String,
    partitions: i32,
    expect: Arc<std::sync::atomic::AtomicU64>,
    deadline: Instant,
    max_wait: Duration,
) -> Result<Vec<u64>, BoxError> {
    let limits = DecodeLimits::default();
    let mut fetcher = Fetcher::new(
        cluster,
        FetcherConfig {
            max_wait,
            isolation: IsolationLevel::ReadUncommitted,
            ..FetcherConfig::default()
        },
    );
    for p in 0..partitions {
        fetcher.assign(&topic, p, 0);
    }
    let mut out = Vec::new();
    loop {
        let want = expect.load(std::sync::atomic::Ordering::Acquire);
        if (want != u64::MAX && out.len() as u64 >= want) || Instant::now() > deadline {
            return Ok(out);
        }
        let fetched = match fetcher.poll().await {
            Ok(f) => f,
            // The remote topic may not be known yet.
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let now = now_ns();
        for fp in fetched {
            for batch in split_batches(fp.records) {
                let batch = batch?;
                if batch.next_offset() <= fp.fetch_offset || batch.is_control() {
                    continue;
                }
                for r in batch.records(&limits)? {
                    let r = r?;
                    if r.offset(batch.base_offset()) < fp.fetch_offset {
                        continue;
                    }
                    if let Some(v) = r.value.filter(|v| v.len() >= 8) {
                        let sent = u64::from_be_bytes(v[..8].try_into().expect("8 bytes"));
                        out.push(now.saturating_sub(sent));
                    }
                }
            }
        }
    }
}

fn percentile(sorted: &[u64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[i.min(sorted.len() - 1)] as f64 / 1e6
}

async fn latency_phase(
    source: &Arc<Cluster>,
    target: &Arc<Cluster>,
    (src_topic, dst_topic): (&str, &str),
    partitions: i32,
    rate: f64,
    args: &Args,
) -> Result<Latency, BoxError> {
    use std::sync::atomic::{AtomicU64, Ordering};
    let secs = args.latency_secs as f64;
    let total = (rate * secs).round() as u64;
    let deadline = Instant::now() + Duration::from_secs_f64(secs + 30.0);
    let expect = Arc::new(AtomicU64::new(u64::MAX));
    let src_obs = tokio::spawn(observe(
        source.clone(),
        src_topic.to_string(),
        partitions,
        expect.clone(),
        deadline,
        Duration::from_millis(args.observer_wait_ms),
    ));
    let dst_obs = tokio::spawn(observe(
        target.clone(),
        dst_topic.to_string(),
        partitions,
        expect.clone(),
        deadline,
        Duration::from_millis(args.observer_wait_ms),
    ));
    // Linger 1 ms: at tens of thousands of records per second, one record per batch would
    // make the probe producer itself the bottleneck (seconds of queueing in the floor).
    let producer = Producer::new(
        source.clone(),
        ProducerConfig {
            linger: Duration::from_millis(1),
            ..ProducerConfig::default()
        },
    )
    .await?;
    let pad = ValuePool::new(args.record_size, 1).get(0).clone();
    let start = Instant::now();
    let mut sent = 0u64;
    let mut acks = Vec::with_capacity(total as usize);
    while sent < total {
        let due = ((start.elapsed().as_secs_f64() * rate) as u64).min(total);
        while sent < due {
            acks.push(
                producer
                    .send_nowait(ProducerRecord {
                        topic: src_topic.to_string(),
                        partition: Some((sent % partitions as u64) as i32),
                        value: Some(probe(sent, args.record_size, &pad)),
                        ..ProducerRecord::default()
                    })
                    .await?,
            );
            sent += 1;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    producer.flush_records().await;
    for a in acks {
        a.await??;
    }
    producer.close().await;
    expect.store(total, Ordering::Release);
    let mut floor = src_obs.await??;
    let mut lat = dst_obs.await??;
    floor.sort_unstable();
    lat.sort_unstable();
    Ok(Latency {
        rate,
        sent: total,
        seen: lat.len() as u64,
        p50_ms: percentile(&lat, 0.50),
        p99_ms: percentile(&lat, 0.99),
        max_ms: percentile(&lat, 1.0),
        floor_p50_ms: percentile(&floor, 0.50),
        floor_p99_ms: percentile(&floor, 0.99),
    })
}

/// The baseline mirror: librdkafka consumer → librdkafka producer, same partition, tuned as
/// MirrorMaker 2 deployments are (`linger.ms=50`, `batch.size=1048576`, the source codec,
/// `acks=all`, idempotent). Runs until killed.
/// The librdkafka mirror's delivery reports: a record its producer gave up on is printed (the
/// first few of them, then a count every thousand), so that a row stuck short of its records
/// says why instead of waiting in silence.
#[derive(Default)]
struct FailureLog(std::sync::atomic::AtomicU64);

impl rdkafka::ClientContext for FailureLog {}

impl rdkafka::producer::ProducerContext for FailureLog {
    type DeliveryOpaque = ();
    fn delivery(&self, report: &rdkafka::message::DeliveryResult<'_>, _: ()) {
        use rdkafka::message::Message;
        if let Err((e, m)) = report {
            let n = self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
            if n <= 5 || n % 1000 == 0 {
                eprintln!(
                    "baseline produce to {}/{} failed ({n} so far): {e}",
                    m.topic(),
                    m.partition()
                );
            }
        }
    }
}

fn baseline_child(args: &Args) -> Result<(), BoxError> {
    use rdkafka::config::ClientConfig as RdConfig;
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::{Headers, Message};
    use rdkafka::producer::{BaseRecord, ThreadedProducer};
    use rdkafka::{Offset, TopicPartitionList};

    let source = args.source.as_deref().ok_or("--source")?;
    let target = args.target.as_deref().ok_or("--target")?;
    let topics: Vec<&str> = args
        .topics
        .as_deref()
        .ok_or("--topics")?
        .split(',')
        .collect();
    let consumer: BaseConsumer = RdConfig::new()
        .set("bootstrap.servers", source)
        .set("group.id", "baseline-mirror")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("log_level", "3")
        .create()?;
    let producer: ThreadedProducer<FailureLog> = RdConfig::new()
        .set("bootstrap.servers", target)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("linger.ms", "50")
        .set("batch.size", "1048576")
        .set("message.max.bytes", "2097152")
        .set("compression.type", args.codec.as_str())
        .set("log_level", "3")
        .create_with_context(FailureLog::default())?;
    let md = consumer.fetch_metadata(None, Duration::from_secs(10))?;
    let mut tpl = TopicPartitionList::new();
    for t in md.topics() {
        if topics.contains(&t.name()) {
            for p in t.partitions() {
                tpl.add_partition_offset(t.name(), p.id(), Offset::Beginning)?;
            }
        }
    }
    consumer.assign(&tpl)?;
    let remote: std::collections::HashMap<String, String> = topics
        .iter()
        .map(|t| (t.to_string(), format!("base.{t}")))
        .collect();
    let mut stderr = std::io::stderr();
    loop {
        let m = match consumer.poll(Duration::from_millis(100)) {
            None => continue,
            Some(Err(e)) => {
                let _ = writeln!(stderr, "baseline consume: {e}");
                continue;
            }
            Some(Ok(m)) => m,
        };
        let Some(to) = remote.get(m.topic()) else {
            continue;
        };
        let mut rec: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(to).partition(m.partition());
        if let Some(k) = m.key() {
            rec = rec.key(k);
        }
        if let Some(v) = m.payload() {
            rec = rec.payload(v);
        }
        if let Some(ts) = m.timestamp().to_millis() {
            rec = rec.timestamp(ts);
        }
        if let Some(h) = m.headers() {
            if h.count() > 0 {
                rec = rec.headers(h.detach());
            }
        }
        strait_benches::kafka::rdkafka_send(&producer, rec, "baseline produce")?;
    }
}
