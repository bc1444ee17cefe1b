//! Apache Kafka clusters (the real Java broker, KRaft mode) and MirrorMaker 2 as child processes.
//!
//! The jars come from `scripts/install-kafka.sh` (Maven Central, cached), or from the directory in
//! `STRAIT_KAFKA_LIBS`. Each [`KafkaCluster`] is an independent cluster (its own random cluster id)
//! of one or more combined broker+controller nodes on free loopback ports, each node in its own
//! directory under one temporary directory. A cluster is ready when every node answers ApiVersions
//! and librdkafka's metadata lists all brokers; nothing waits a fixed time.
//!
//! Speed on small machines (see `tests/README.md`, "Apache Kafka test clusters"):
//! - Storage is formatted without a JVM per node: `kafka.tools.StorageTool format` runs once per
//!   machine (cached under `target/kafka-cache/`) and each node gets a copy of its
//!   `bootstrap.checkpoint` (feature levels only, no id inside) and a `meta.properties` of its own.
//!   The quorum is static (`controller.quorum.voters`), so no voter checkpoint is needed.
//! - JVMs run with C1 only (`-XX:TieredStopAtLevel=1`) and the serial GC, and share an AppCDS
//!   archive of the classes a broker loads (created once, by the first broker of the machine,
//!   with `-XX:ArchiveClassesAtExit`); `STRAIT_KAFKA_CDS=0` turns the archive off.
//!
//! Security ([`KafkaOptions::listener`], [`KafkaListener`]): besides the harness's `PLAINTEXT`
//! listener (inter-broker, readiness) and the `CONTROLLER` one (both always plaintext), a
//! cluster can have any number of `SSL` (optionally mutual), `SASL_PLAINTEXT` and `SASL_SSL`
//! listeners, each on a port of its own, with PEM keystores from [`crate::secure::certs`], SCRAM
//! users created at format time, PLAIN users in the JAAS configuration, per-listener mechanisms
//! and session lifetimes (KIP-368), and optionally the `StandardAuthorizer`
//! ([`KafkaOptions::authorizer`]). [`KafkaCluster::bootstrap_for`] gives a listener's addresses.
//!
//! Every JVM is watched by a small `sh` loop that SIGKILLs it when the test process is gone, so
//! no broker outlives a test binary that aborted or was killed; handles also kill on drop.

use std::collections::BTreeSet;
use std::fs::File;
use std::hash::{BuildHasher, Hasher};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;

use crate::secure::ScramUser;
use crate::tansu::{api_versions_ok, free_port};
use crate::{BrokerKind, TestCluster};

/// How long a cluster (or a restarted broker) may take to become ready.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long `stop_broker` and `Mm2Process::stop` wait after SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// Attempts at starting a cluster whose process exits early (a port taken meanwhile).
const START_ATTEMPTS: usize = 3;

// ---------------------------------------------------------------------------------------------
// Installation
// ---------------------------------------------------------------------------------------------

/// The directory of Apache Kafka's jars (broker, tools, MirrorMaker 2, log4j binding):
/// `STRAIT_KAFKA_LIBS`, or the last line `scripts/install-kafka.sh` prints (run once per process).
pub fn kafka_libs() -> PathBuf {
    static LIBS: OnceLock<PathBuf> = OnceLock::new();
    LIBS.get_or_init(|| {
        let libs = match std::env::var_os("STRAIT_KAFKA_LIBS").filter(|v| !v.is_empty()) {
            Some(p) => PathBuf::from(p),
            None => run_installer(),
        };
        let has_broker = std::fs::read_dir(&libs).is_ok_and(|mut d| {
            d.any(|e| {
                e.is_ok_and(|e| {
                    let n = e.file_name();
                    let n = n.to_string_lossy();
                    n.starts_with("kafka_2.13-") && n.ends_with(".jar")
                })
            })
        });
        assert!(
            has_broker,
            "{} holds no kafka_2.13-*.jar: run scripts/install-kafka.sh (or set STRAIT_KAFKA_LIBS \
             to the directory it prints)",
            libs.display()
        );
        libs
    })
    .clone()
}

fn run_installer() -> PathBuf {
    let script = crate::workspace_root().join("scripts/install-kafka.sh");
    let out = Command::new(&script)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let last = stdout.lines().rev().find(|l| !l.trim().is_empty());
    match last {
        Some(dir) if out.status.success() => {
            eprint!("{stderr}");
            PathBuf::from(dir.trim())
        }
        _ => panic!(
            "{} failed ({}): Apache Kafka tests need Java >= 17 and the Kafka jars from Maven \
             Central (or STRAIT_KAFKA_LIBS pointing at them)\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
            script.display(),
            out.status
        ),
    }
}

/// The `java` to run: `$JAVA_HOME/bin/java` when it exists, else `java` from `PATH`.
pub fn java_binary() -> PathBuf {
    if let Some(home) = std::env::var_os("JAVA_HOME").filter(|v| !v.is_empty()) {
        let p = PathBuf::from(home).join("bin/java");
        if p.exists() {
            return p;
        }
    }
    PathBuf::from("java")
}

/// Runs `tests/java/Checker.java` (Kafka's and MM2's own Java client code; its header lists the
/// commands, several in one JVM separated by `+`) with `args`, and returns its output. One
/// source launch compiles the file (~4 s).
pub fn run_checker(args: &[&str]) -> std::process::Output {
    Command::new(java_binary())
        .args(["-Xmx256m", "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC"])
        .arg("-cp")
        .arg(format!("{}/*", kafka_libs().display()))
        .arg(crate::workspace_root().join("tests/java/Checker.java"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run {} Checker.java: {e}", java_binary().display()))
}

/// Per machine: the formatted-storage template and the class-data-sharing archive, keyed by the
/// jars and the JVM (`target/kafka-cache/<hash>/`).
fn cache_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let libs = kafka_libs();
        let version = Command::new(java_binary())
            .arg("-version")
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", java_binary().display()));
        assert!(
            version.status.success(),
            "`java -version` failed: {}",
            String::from_utf8_lossy(&version.stderr)
        );
        let mut h = std::collections::hash_map::DefaultHasher::new();
        h.write(libs.as_os_str().as_encoded_bytes());
        // The jars themselves (names, sizes, times): a reinstall in place makes a new cache.
        let mut jars: Vec<String> = std::fs::read_dir(&libs)
            .map(|d| {
                d.flatten()
                    .map(|e| {
                        let m = e.metadata().ok();
                        format!(
                            "{:?} {:?} {:?}",
                            e.file_name(),
                            m.as_ref().map(|m| m.len()),
                            m.and_then(|m| m.modified().ok())
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        jars.sort();
        h.write(jars.join("\n").as_bytes());
        h.write(&version.stderr);
        h.write(&version.stdout);
        let dir = crate::target_dir()
            .join("kafka-cache")
            .join(format!("{:016x}", h.finish()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        dir
    })
}

/// `bootstrap.checkpoint` as `StorageTool format` writes it (the feature levels of this Kafka
/// version; no cluster or node id inside), made once per machine. With `scram_users`, the format
/// ran with one `--add-scram` per user, so the checkpoint also holds their salted credentials
/// (`UserScramCredentialRecord`s, applied when the quorum first starts): each distinct set of
/// users gets a checkpoint of its own, cached next to the plain one and keyed by a hash of the
/// users (names, mechanisms and passwords), so no user is ever lost to, or leaked by, the cache.
fn bootstrap_checkpoint(scram_users: &[ScramUser]) -> PathBuf {
    use std::collections::HashMap;
    use std::sync::Mutex;
    // One format at a time in this process (the same set asked for twice is formatted once).
    static MADE: OnceLock<Mutex<HashMap<String, PathBuf>>> = OnceLock::new();
    let mut made = MADE
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    let mut lines: Vec<String> = scram_users
        .iter()
        .map(|u| {
            for (what, text) in [("name", &u.name), ("password", &u.password)] {
                assert!(
                    !text.is_empty() && !text.contains([',', '[', ']', '=', '"', '\\', '\'']),
                    "SCRAM user {:?}: the {what} must be non-empty and free of , [ ] = \" \\ ' \
                     (StorageTool --add-scram syntax)",
                    u.name
                );
            }
            format!(
                "{}=[name={},password={}]",
                u.mechanism.name(),
                u.name,
                u.password
            )
        })
        .collect();
    lines.sort();
    lines.dedup();
    let file = if lines.is_empty() {
        "bootstrap.checkpoint".to_string()
    } else {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        h.write(lines.join("\n").as_bytes());
        format!("bootstrap-scram-{:016x}.checkpoint", h.finish())
    };
    let key = file.clone();
    if let Some(p) = made.get(&key) {
        return p.clone();
    }
    let path = cache_dir().join(&file);
    if !path.exists() {
        format_checkpoint(&path, &lines);
    }
    made.insert(key, path.clone());
    path
}

/// Runs `kafka.tools.StorageTool format` (with `--add-scram` for each of `scram`) and installs
/// its `bootstrap.checkpoint` at `path` (atomically: a temporary file renamed).
fn format_checkpoint(path: &Path, scram: &[String]) {
    let started = Instant::now();
    let dir = tempfile::Builder::new()
        .prefix("strait-kafka-format-")
        .tempdir()
        .expect("temp dir");
    let data = dir.path().join("data");
    let props = dir.path().join("server.properties");
    std::fs::write(
        &props,
        format!(
            "process.roles=broker,controller\nnode.id=1\n\
             controller.quorum.voters=1@127.0.0.1:9093\n\
             listeners=PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093\n\
             controller.listener.names=CONTROLLER\n\
             listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT\n\
             log.dirs={}\n",
            data.display()
        ),
    )
    .expect("write format config");
    let mut cmd = java_command(256, cds_if_present().map_or(Cds::None, Cds::Use), None);
    cmd.arg("kafka.tools.StorageTool")
        .args(["format", "--config"])
        .arg(&props)
        .args(["--cluster-id", &random_uuid()]);
    for s in scram {
        cmd.args(["--add-scram", s]);
    }
    let out = cmd.output().expect("run kafka.tools.StorageTool");
    assert!(
        out.status.success(),
        "kafka.tools.StorageTool format failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let tmp = path.with_extension(format!("checkpoint.{}", std::process::id()));
    std::fs::copy(data.join("bootstrap.checkpoint"), &tmp).expect("copy bootstrap.checkpoint");
    std::fs::rename(&tmp, path).expect("install bootstrap.checkpoint");
    eprintln!(
        "kafka: storage template formatted in {:.1?}{} ({})",
        started.elapsed(),
        if scram.is_empty() {
            String::new()
        } else {
            format!(" with {} SCRAM credential(s)", scram.len())
        },
        path.display()
    );
}

fn cds_path() -> PathBuf {
    cache_dir().join("kafka.jsa")
}

fn cds_enabled() -> bool {
    std::env::var("STRAIT_KAFKA_CDS").as_deref() != Ok("0")
}

/// The archive if it exists (no creation: for the one-shot tools).
fn cds_if_present() -> Option<PathBuf> {
    let p = cds_path();
    (cds_enabled() && p.exists()).then_some(p)
}

/// The AppCDS archive for every JVM of this harness, created by the first broker of the machine:
/// a throw-away single-node cluster started with `-XX:ArchiveClassesAtExit`, given some work
/// (topic, produce, fetch) and stopped with SIGTERM, which writes the archive. Halves startup
/// (measured: 5.3 s → 2.5 s to "Kafka Server started" for one node on 2 cores). `None` when
/// disabled or when the dump failed (then every JVM just loads its classes from the jars).
fn cds_archive() -> Option<PathBuf> {
    static ARCHIVE: OnceLock<Option<PathBuf>> = OnceLock::new();
    ARCHIVE
        .get_or_init(|| {
            if !cds_enabled() {
                return None;
            }
            let path = cds_path();
            if path.exists() {
                return Some(path);
            }
            // A machine where the dump failed once (e.g. a JDK without a base CDS archive) does
            // not pay for another attempt in every test process.
            let failed = cache_dir().join("kafka.jsa.failed");
            if failed.exists() {
                return None;
            }
            let why = match std::panic::catch_unwind(|| make_cds_archive(&path)) {
                Ok(Ok(())) => return Some(path),
                Ok(Err(why)) => why,
                Err(panic) => panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "making it panicked".into()),
            };
            eprintln!(
                "kafka: no class-data-sharing archive, JVMs start without one (delete {} to \
                 try again): {why}",
                failed.display()
            );
            let _ = std::fs::write(&failed, why);
            None
        })
        .clone()
}

fn make_cds_archive(path: &Path) -> Result<(), String> {
    let started = Instant::now();
    let tmp = cache_dir().join(format!("kafka.jsa.{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let mut cluster =
        KafkaCluster::start_inner("cds", &KafkaOptions::default(), Cds::Dump(tmp.clone()));
    let topic = crate::unique("cds");
    let bootstrap = cluster.bootstrap();
    crate::reference::create_topic(&bootstrap, &topic, 1);
    crate::reference::produce(
        &bootstrap,
        &topic,
        0,
        &[crate::reference::Outgoing::kv("k", "v")],
        &[],
    );
    crate::reference::consume(&bootstrap, &topic, 0, 0, 1, Duration::from_secs(30));
    let status = cluster.stop_broker(0);
    if tmp.metadata().is_ok_and(|m| m.len() > 0) {
        std::fs::rename(&tmp, path).map_err(|e| format!("rename {}: {e}", tmp.display()))?;
        eprintln!(
            "kafka: class-data-sharing archive made in {:.1?} ({})",
            started.elapsed(),
            path.display()
        );
        Ok(())
    } else {
        let _ = std::fs::remove_file(&tmp);
        Err(format!(
            "the broker exited with {status} without writing {}; its log ends:\n{}",
            tmp.display(),
            tail(&cluster.log(0), 40)
        ))
    }
}

/// What a JVM does with the class-data-sharing archive.
#[derive(Clone, Debug)]
enum Cds {
    None,
    Use(PathBuf),
    Dump(PathBuf),
}

impl Cds {
    fn current() -> Cds {
        cds_archive().map_or(Cds::None, Cds::Use)
    }
}

/// `java <flags> -cp 'libs/*'` ready for the main class: C1 only, serial GC, `heap_mb` heap.
fn java_command(heap_mb: u32, cds: Cds, log4j: Option<&Path>) -> Command {
    let mut cmd = Command::new(java_binary());
    match cds {
        Cds::None => {}
        Cds::Use(p) => {
            cmd.arg(format!("-XX:SharedArchiveFile={}", p.display()));
        }
        Cds::Dump(p) => {
            cmd.arg(format!("-XX:ArchiveClassesAtExit={}", p.display()));
        }
    }
    cmd.arg(format!("-Xms{}m", heap_mb.min(256)))
        .arg(format!("-Xmx{heap_mb}m"))
        .args([
            "-XX:TieredStopAtLevel=1",
            "-XX:+UseSerialGC",
            "-Djava.awt.headless=true",
        ]);
    if let Some(l) = log4j {
        cmd.arg(format!("-Dlog4j2.configurationFile={}", l.display()));
    }
    cmd.arg("-cp")
        .arg(format!("{}/*", kafka_libs().display()))
        .stdin(Stdio::null());
    cmd
}

/// A log4j2 configuration: everything on the console (the log file) at INFO, or at
/// `STRAIT_KAFKA_LOG`'s level when set; without it the configuration dumps and a few chatty
/// loggers stay at WARN.
fn log4j2_properties() -> String {
    let custom = std::env::var("STRAIT_KAFKA_LOG")
        .ok()
        .filter(|v| !v.is_empty());
    let root = custom.clone().unwrap_or_else(|| "INFO".into());
    let mut s = format!(
        "status = warn\n\
         name = strait-test\n\
         appender.console.type = Console\n\
         appender.console.name = STDOUT\n\
         appender.console.layout.type = PatternLayout\n\
         appender.console.layout.pattern = [%d] %p %m (%c)%n\n\
         rootLogger.level = {root}\n\
         rootLogger.appenderRef.stdout.ref = STDOUT\n"
    );
    if custom.is_none() {
        let quiet = [
            "org.apache.kafka.common.config.AbstractConfig",
            "org.apache.kafka.common.utils.AppInfoParser",
            "org.apache.kafka.common.metrics",
            "kafka.utils.Log4jControllerRegistration$",
            "org.apache.kafka.storage.internals.log",
            "kafka.log.LogManager",
            "org.apache.kafka.connect.runtime.isolation",
        ];
        for (i, logger) in quiet.iter().enumerate() {
            s.push_str(&format!(
                "logger.q{i}.name = {logger}\nlogger.q{i}.level = WARN\n"
            ));
        }
    }
    s
}

// ---------------------------------------------------------------------------------------------
// Ids
// ---------------------------------------------------------------------------------------------

/// 16 random bytes from the standard library's randomly keyed hasher (time, pid and a counter as
/// input; no extra crate).
fn random_bytes() -> [u8; 16] {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut out = [0u8; 16];
    for (i, chunk) in out.chunks_mut(8).enumerate() {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        h.write_u128(now.as_nanos());
        h.write_u32(std::process::id());
        h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
        h.write_usize(i);
        chunk.copy_from_slice(&h.finish().to_le_bytes());
    }
    out
}

/// A random Kafka `Uuid` as Kafka prints it: a version-4 UUID in base64url without padding
/// (22 characters), never starting with `-` (Kafka's own rule, for command lines).
pub fn random_uuid() -> String {
    loop {
        let mut b = random_bytes();
        b[6] = (b[6] & 0x0f) | 0x40;
        b[8] = (b[8] & 0x3f) | 0x80;
        let s = base64url(&b);
        if !s.starts_with('-') {
            return s;
        }
    }
}

fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Supervised JVM processes
// ---------------------------------------------------------------------------------------------

/// A JVM child plus its watchdog (`sh` polling both pids every second; when the test process
/// is gone it SIGKILLs the JVM: this covers panic=abort, `abort()` and SIGKILL of the test).
#[derive(Debug)]
struct Supervised {
    java: Child,
    watchdog: Option<Child>,
}

impl Supervised {
    fn spawn(mut cmd: Command, log: &Path) -> Result<Supervised, String> {
        let file = File::options()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|e| format!("open {}: {e}", log.display()))?;
        let java = cmd
            .stdout(file.try_clone().map_err(|e| e.to_string())?)
            .stderr(file)
            .spawn()
            .map_err(|e| format!("spawn {}: {e}", java_binary().display()))?;
        let watchdog = Command::new("sh")
            .arg("-c")
            .arg(
                "while kill -0 \"$1\" 2>/dev/null && kill -0 \"$2\" 2>/dev/null; do sleep 1; done; \
                 kill -9 \"$2\" 2>/dev/null",
            )
            .arg("strait-kafka-watchdog")
            .arg(std::process::id().to_string())
            .arg(java.id().to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok();
        Ok(Supervised { java, watchdog })
    }

    fn pid(&self) -> u32 {
        self.java.id()
    }

    fn exited(&mut self) -> Option<ExitStatus> {
        self.java.try_wait().ok().flatten()
    }

    /// Ends the watchdog first, so it can never signal a pid reused after the JVM was reaped.
    fn end_watchdog(&mut self) {
        if let Some(mut w) = self.watchdog.take() {
            let _ = w.kill();
            let _ = w.wait();
        }
    }

    fn kill(&mut self) -> Option<ExitStatus> {
        self.end_watchdog();
        let _ = self.java.kill();
        self.java.wait().ok()
    }

    /// SIGTERM, then up to `timeout` for the exit; SIGKILL after that (`Err` with the time).
    fn terminate(&mut self, timeout: Duration) -> Result<ExitStatus, Duration> {
        let started = Instant::now();
        if let Some(s) = self.exited() {
            self.end_watchdog();
            return Ok(s);
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
        while started.elapsed() < timeout {
            if let Some(s) = self.exited() {
                self.end_watchdog();
                return Ok(s);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.kill();
        Err(started.elapsed())
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Whether the process in `slot` is alive; an exited one is reaped and the slot emptied.
fn still_running(slot: &mut Option<Supervised>) -> bool {
    if slot.as_mut().is_some_and(|p| p.exited().is_some()) {
        *slot = None;
    }
    slot.is_some()
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    let from = all.len().saturating_sub(lines);
    let mut s = String::new();
    if from > 0 {
        s.push_str(&format!("[… {from} earlier lines]\n"));
    }
    for l in &all[from..] {
        s.push_str(l);
        s.push('\n');
    }
    s
}

/// librdkafka without its log output (connection refused while a broker starts is expected).
#[derive(Debug, Default)]
struct Quiet;

impl ClientContext for Quiet {
    fn log(&self, _: RDKafkaLogLevel, _: &str, _: &str) {}
    fn error(&self, _: KafkaError, _: &str) {}
}

impl ConsumerContext for Quiet {}

fn metadata_client(bootstrap: &str) -> BaseConsumer<Quiet> {
    crate::reference::base_config(bootstrap)
        .set("log_level", "0")
        .create_with_context(Quiet)
        .expect("create librdkafka metadata client")
}

/// The broker ids one metadata request answers.
fn broker_ids(client: &BaseConsumer<Quiet>) -> Result<BTreeSet<i32>, String> {
    client
        .fetch_metadata(None, Duration::from_secs(2))
        .map(|md| md.brokers().iter().map(|b| b.id()).collect())
        .map_err(|e| e.to_string())
}

// ---------------------------------------------------------------------------------------------
// Clusters
// ---------------------------------------------------------------------------------------------

/// The security protocol of a client listener (Kafka's `SecurityProtocol`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SecurityProtocol {
    /// `PLAINTEXT`: neither TLS nor SASL.
    Plaintext,
    /// `SSL`: TLS (mutual TLS with [`ClientAuth::Required`]).
    Ssl,
    /// `SASL_PLAINTEXT`: SASL on a plain TCP connection.
    SaslPlaintext,
    /// `SASL_SSL`: SASL inside TLS.
    SaslSsl,
}

impl SecurityProtocol {
    /// The protocol's name in Kafka's configuration (`SASL_SSL`, …), also the default name of a
    /// listener using it.
    pub fn name(self) -> &'static str {
        match self {
            SecurityProtocol::Plaintext => "PLAINTEXT",
            SecurityProtocol::Ssl => "SSL",
            SecurityProtocol::SaslPlaintext => "SASL_PLAINTEXT",
            SecurityProtocol::SaslSsl => "SASL_SSL",
        }
    }

    /// Whether the listener speaks TLS.
    pub fn uses_tls(self) -> bool {
        matches!(self, SecurityProtocol::Ssl | SecurityProtocol::SaslSsl)
    }

    /// Whether the listener authenticates with SASL.
    pub fn uses_sasl(self) -> bool {
        matches!(
            self,
            SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl
        )
    }
}

/// `ssl.client.auth` of a TLS listener.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ClientAuth {
    /// `none`: no client certificate asked for.
    #[default]
    None,
    /// `requested`: asked for, not required.
    Requested,
    /// `required`: mutual TLS; the certificate must chain to the listener's client CA.
    Required,
}

impl ClientAuth {
    fn value(self) -> &'static str {
        match self {
            ClientAuth::None => "none",
            ClientAuth::Requested => "requested",
            ClientAuth::Required => "required",
        }
    }
}

/// SASL mechanisms a SASL listener enables unless told otherwise.
pub const DEFAULT_SASL_MECHANISMS: [&str; 3] = ["SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"];

/// A client listener besides the harness's own `PLAINTEXT` one (which stays the inter-broker
/// listener and the one readiness is checked on; the controller listener is PLAINTEXT too).
/// Each listener gets a free port on every node and is advertised, so a client bootstrapping
/// from it is sent back to the same listener of every broker.
///
/// Everything here becomes `listener.name.<name in lower case>.*` settings: TLS listeners get a
/// PEM keystore (`ssl.keystore.type=PEM`, a file with the key and the certificate chain written
/// into the cluster's directory) and a PEM truststore of the CA that signs client certificates;
/// SASL listeners get `sasl.enabled.mechanisms` and one `<mechanism>.sasl.jaas.config` per
/// mechanism (SCRAM: `ScramLoginModule`, users from [`KafkaOptions::scram_user`]; PLAIN:
/// `PlainLoginModule` with a `user_<name>="<password>"` option per
/// [`KafkaOptions::plain_user`]; OAUTHBEARER: `OAuthBearerLoginModule`, Kafka's unsecured
/// token validator).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KafkaListener {
    /// Listener name (`[A-Z0-9_]`; the protocol's name by default), unique in the cluster and
    /// neither `PLAINTEXT` nor `CONTROLLER`.
    pub name: String,
    /// Its security protocol.
    pub protocol: SecurityProtocol,
    /// TLS: server certificate chain and key (PEM files, unencrypted PKCS#8 key); `None` is
    /// the test CA's server certificate for `IP:127.0.0.1, DNS:localhost`
    /// ([`crate::secure::certs`]).
    pub certificate: Option<(PathBuf, PathBuf)>,
    /// TLS: `ssl.client.auth`.
    pub client_auth: ClientAuth,
    /// TLS: CA certificates (PEM) that client certificates must chain to; `None` is the test
    /// CA.
    pub client_ca: Option<PathBuf>,
    /// SASL: the mechanisms enabled on this listener; `None` is the cluster's
    /// ([`KafkaOptions::sasl_mechanisms`]).
    pub sasl_mechanisms: Option<Vec<String>>,
    /// SASL: `connections.max.reauth.ms` (KIP-368): the broker tells clients this session
    /// lifetime in SaslAuthenticate and closes connections that do not re-authenticate in time.
    pub reauth: Option<Duration>,
    /// Further settings of this listener, written as `listener.name.<name>.<key>=<value>`.
    pub properties: Vec<(String, String)>,
    /// The address it binds to and advertises (`127.0.0.1` when `None`), e.g. the host side
    /// of a [`crate::netns::NetNs`] veth pair, so that a process in that namespace reaches it.
    pub host: Option<String>,
}

impl From<SecurityProtocol> for KafkaListener {
    fn from(protocol: SecurityProtocol) -> KafkaListener {
        KafkaListener::new(protocol)
    }
}

impl KafkaListener {
    /// A listener named after its protocol, with the defaults above.
    pub fn new(protocol: SecurityProtocol) -> KafkaListener {
        KafkaListener {
            name: protocol.name().to_string(),
            protocol,
            certificate: None,
            client_auth: ClientAuth::None,
            client_ca: None,
            sasl_mechanisms: None,
            reauth: None,
            properties: Vec::new(),
            host: None,
        }
    }

    /// Binds and advertises the listener on `host` instead of `127.0.0.1`.
    pub fn host(mut self, host: &str) -> KafkaListener {
        self.host = Some(host.to_string());
        self
    }

    /// The address the listener binds to and advertises.
    fn host_or_loopback(&self) -> &str {
        self.host.as_deref().unwrap_or("127.0.0.1")
    }

    /// Renames the listener (for several listeners of one protocol), e.g. `SSL_EXPIRED`.
    pub fn named(mut self, name: &str) -> KafkaListener {
        self.name = name.to_string();
        self
    }

    /// The server certificate chain and key (PEM files) a TLS listener presents.
    pub fn certificate(mut self, chain: &Path, key: &Path) -> KafkaListener {
        self.certificate = Some((chain.to_path_buf(), key.to_path_buf()));
        self
    }

    /// `ssl.client.auth`.
    pub fn client_auth(mut self, auth: ClientAuth) -> KafkaListener {
        self.client_auth = auth;
        self
    }

    /// Mutual TLS: `ssl.client.auth=required`.
    pub fn require_client_certificate(self) -> KafkaListener {
        self.client_auth(ClientAuth::Required)
    }

    /// The CA certificates (PEM file) client certificates must chain to.
    pub fn client_ca(mut self, ca: &Path) -> KafkaListener {
        self.client_ca = Some(ca.to_path_buf());
        self
    }

    /// The SASL mechanisms of this listener (instead of the cluster's).
    pub fn sasl_mechanisms(mut self, mechanisms: &[&str]) -> KafkaListener {
        self.sasl_mechanisms = Some(mechanisms.iter().map(|m| m.to_string()).collect());
        self
    }

    /// `connections.max.reauth.ms` of this listener: SASL sessions last `lifetime`.
    pub fn reauthenticate_after(mut self, lifetime: Duration) -> KafkaListener {
        self.reauth = Some(lifetime);
        self
    }

    /// A further `listener.name.<name>.<key>=<value>` setting.
    pub fn property(mut self, key: impl Into<String>, value: impl Into<String>) -> KafkaListener {
        self.properties.push((key.into(), value.into()));
        self
    }

    /// `listener.name.<name in lower case>.`
    fn prefix(&self) -> String {
        format!("listener.name.{}.", self.name.to_lowercase())
    }
}

/// How to start a [`KafkaCluster`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KafkaOptions {
    /// Number of nodes, each a combined broker and controller (a static quorum of all of them).
    /// 1 and 3 are what the harness tests; with 3 or more, internal topics get replication
    /// factor 3 and min ISR 2. Brokers are fenced 4 s after their last heartbeat.
    pub brokers: usize,
    /// Extra `server.properties` lines for every node, after the harness's (so they win).
    pub properties: Vec<(String, String)>,
    /// Maximum heap of each broker JVM (`-Xmx`), in MiB.
    pub heap_mb: u32,
    /// Client listeners besides `PLAINTEXT` (TLS, SASL), in the order given.
    pub listeners: Vec<KafkaListener>,
    /// SCRAM credentials, created when the storage is formatted (`StorageTool format
    /// --add-scram`), so they exist before the first client connects.
    pub scram_users: Vec<crate::secure::ScramUser>,
    /// PLAIN users (name, password): `user_<name>="<password>"` options of the PLAIN login
    /// module of every SASL listener.
    pub plain_users: Vec<(String, String)>,
    /// The SASL mechanisms of SASL listeners that do not set their own
    /// ([`DEFAULT_SASL_MECHANISMS`] by default).
    pub sasl_mechanisms: Vec<String>,
    /// `Some`: authorization on, with Kafka's `StandardAuthorizer` and these `super.users`
    /// principals besides `User:ANONYMOUS` (which must be one: the inter-broker and controller
    /// listeners are PLAINTEXT, and readiness is checked on PLAINTEXT).
    pub super_users: Option<Vec<String>>,
}

impl Default for KafkaOptions {
    fn default() -> KafkaOptions {
        KafkaOptions {
            brokers: 1,
            properties: Vec::new(),
            heap_mb: 512,
            listeners: Vec::new(),
            scram_users: Vec::new(),
            plain_users: Vec::new(),
            sasl_mechanisms: DEFAULT_SASL_MECHANISMS.map(String::from).to_vec(),
            super_users: None,
        }
    }
}

impl KafkaOptions {
    /// `n` combined broker+controller nodes.
    pub fn brokers(n: usize) -> KafkaOptions {
        KafkaOptions {
            brokers: n,
            ..KafkaOptions::default()
        }
    }

    /// Adds a `server.properties` setting for every node.
    pub fn property(mut self, key: impl Into<String>, value: impl Into<String>) -> KafkaOptions {
        self.properties.push((key.into(), value.into()));
        self
    }

    /// Sets the heap of each broker JVM (MiB).
    pub fn heap_mb(mut self, mb: u32) -> KafkaOptions {
        self.heap_mb = mb;
        self
    }

    /// Adds a client listener: a [`SecurityProtocol`] (a listener of that name with the
    /// defaults of [`KafkaListener`]) or a [`KafkaListener`].
    pub fn listener(mut self, listener: impl Into<KafkaListener>) -> KafkaOptions {
        self.listeners.push(listener.into());
        self
    }

    /// Adds a SCRAM user (credentials for one mechanism; add the user twice for both).
    pub fn scram_user(mut self, user: crate::secure::ScramUser) -> KafkaOptions {
        self.scram_users.push(user);
        self
    }

    /// Adds a PLAIN user.
    pub fn plain_user(mut self, name: &str, password: &str) -> KafkaOptions {
        self.plain_users
            .push((name.to_string(), password.to_string()));
        self
    }

    /// The SASL mechanisms of every SASL listener that does not set its own.
    pub fn sasl_mechanisms(mut self, mechanisms: &[&str]) -> KafkaOptions {
        self.sasl_mechanisms = mechanisms.iter().map(|m| m.to_string()).collect();
        self
    }

    /// Turns authorization on (`authorizer.class.name=
    /// org.apache.kafka.metadata.authorizer.StandardAuthorizer`) with `super.users` =
    /// `User:ANONYMOUS` plus `super_users` (principals such as `User:admin`, or
    /// `User:CN=strait-client` for the test client certificate). Everything else needs ACLs;
    /// since every PLAINTEXT client is `ANONYMOUS`, authorization tests go through a TLS or
    /// SASL listener.
    pub fn authorizer(mut self, super_users: &[&str]) -> KafkaOptions {
        self.super_users = Some(super_users.iter().map(|u| u.to_string()).collect());
        self
    }
}

/// One node of a cluster: node id `index + 1`.
#[derive(Debug)]
struct Node {
    id: i32,
    port: u16,
    controller_port: u16,
    /// The port of each of the cluster's extra listeners, in their order.
    listener_ports: Vec<u16>,
    dir: PathBuf,
    log: PathBuf,
    process: Option<Supervised>,
}

impl Node {
    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn properties(&self) -> PathBuf {
        self.dir.join("server.properties")
    }
}

/// Why an attempt at starting failed without panicking.
enum StartError {
    /// A node exited while starting (typically a port taken since it was picked): retried.
    Exited(String),
}

/// An Apache Kafka cluster of combined broker+controller nodes on loopback ports; every process
/// is killed on drop (logs kept under `target/test-logs/` when the test panics).
#[derive(Debug)]
pub struct KafkaCluster {
    name: String,
    cluster_id: String,
    heap_mb: u32,
    cds: Cds,
    nodes: Vec<Node>,
    listeners: Vec<KafkaListener>,
    log4j: PathBuf,
    dir: tempfile::TempDir,
}

impl KafkaCluster {
    /// Starts a single-node cluster named `name` (made unique per process) and waits until it is
    /// ready.
    pub fn start(name: &str) -> KafkaCluster {
        KafkaCluster::start_with(name, KafkaOptions::default())
    }

    /// Starts a cluster as `options` say and waits until every broker is in the metadata.
    pub fn start_with(name: &str, options: KafkaOptions) -> KafkaCluster {
        let cds = Cds::current();
        KafkaCluster::start_inner(name, &options, cds)
    }

    fn start_inner(name: &str, options: &KafkaOptions, cds: Cds) -> KafkaCluster {
        assert!(options.brokers >= 1, "a cluster needs at least one node");
        check_listeners(options);
        let mut last = String::new();
        for attempt in 1..=START_ATTEMPTS {
            match KafkaCluster::try_start(name, options, cds.clone()) {
                Ok(c) => return c,
                Err(StartError::Exited(why)) => {
                    eprintln!(
                        "kafka: cluster {name}: attempt {attempt} of {START_ATTEMPTS} failed, \
                         a node exited while starting"
                    );
                    last = why;
                }
            }
        }
        panic!("could not start Kafka cluster {name} in {START_ATTEMPTS} attempts: {last}");
    }

    fn try_start(name: &str, options: &KafkaOptions, cds: Cds) -> Result<KafkaCluster, StartError> {
        let started = Instant::now();
        let checkpoint = bootstrap_checkpoint(&options.scram_users);
        let name = crate::unique(name);
        let dir = tempfile::Builder::new()
            .prefix(&format!("strait-kafka-{name}-"))
            .tempdir()
            .expect("temp dir for a Kafka cluster");
        let log4j = dir.path().join("log4j2.properties");
        std::fs::write(&log4j, log4j2_properties()).expect("write log4j2.properties");

        let mut ports = BTreeSet::new();
        let mut port = || loop {
            let p = free_port();
            if ports.insert(p) {
                return p;
            }
        };
        let nodes: Vec<Node> = (0..options.brokers)
            .map(|i| {
                let node_dir = dir.path().join(format!("node{i}"));
                Node {
                    id: i as i32 + 1,
                    port: port(),
                    controller_port: port(),
                    listener_ports: options.listeners.iter().map(|_| port()).collect(),
                    log: node_dir.join("kafka.log"),
                    dir: node_dir,
                    process: None,
                }
            })
            .collect();
        let cluster_id = random_uuid();
        let voters = nodes
            .iter()
            .map(|n| format!("{}@127.0.0.1:{}", n.id, n.controller_port))
            .collect::<Vec<_>>()
            .join(",");
        let keystores = write_keystores(dir.path(), &options.listeners);
        for n in &nodes {
            let data = n.dir.join("data");
            std::fs::create_dir_all(&data).expect("create node data dir");
            std::fs::write(
                n.properties(),
                server_properties(n, &voters, &data, options, &keystores),
            )
            .expect("write server.properties");
            // What `StorageTool format` writes (static quorum: no voter checkpoint).
            std::fs::write(
                data.join("meta.properties"),
                format!(
                    "#Written by strait-tests\nnode.id={}\ndirectory.id={}\nversion=1\ncluster.id={cluster_id}\n",
                    n.id,
                    random_uuid()
                ),
            )
            .expect("write meta.properties");
            std::fs::copy(&checkpoint, data.join("bootstrap.checkpoint"))
                .expect("copy bootstrap.checkpoint");
        }

        let mut cluster = KafkaCluster {
            name,
            cluster_id,
            heap_mb: options.heap_mb,
            cds,
            nodes,
            listeners: options.listeners.clone(),
            log4j,
            dir,
        };
        for i in 0..cluster.nodes.len() {
            cluster.spawn(i).map_err(StartError::Exited)?;
        }
        let all: Vec<usize> = (0..cluster.nodes.len()).collect();
        cluster.wait_ready(&all, "start")?;
        eprintln!(
            "kafka: cluster {} ({} node{}) ready in {:.1?} at {}",
            cluster.name,
            cluster.nodes.len(),
            if cluster.nodes.len() == 1 { "" } else { "s" },
            started.elapsed(),
            cluster.bootstrap()
        );
        Ok(cluster)
    }

    fn spawn(&mut self, i: usize) -> Result<(), String> {
        let mut cmd = java_command(self.heap_mb, self.cds.clone(), Some(&self.log4j));
        let node = &mut self.nodes[i];
        cmd.arg("kafka.Kafka")
            .arg(node.properties())
            .current_dir(&node.dir);
        node.process = Some(Supervised::spawn(cmd, &node.log)?);
        Ok(())
    }

    /// Waits until the nodes `which` answer ApiVersions (a broker serves clients only once it
    /// is unfenced) and a metadata request to the running nodes lists every running broker.
    /// A node that exits is `Err`; the timeout panics with the logs.
    fn wait_ready(&mut self, which: &[usize], what: &str) -> Result<(), StartError> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let mut answering = BTreeSet::new();
        let mut client: Option<BaseConsumer<Quiet>> = None;
        let mut last: String;
        loop {
            for &i in which {
                let node = &mut self.nodes[i];
                if let Some(status) = node.process.as_mut().and_then(Supervised::exited) {
                    let log = std::fs::read_to_string(&node.log).unwrap_or_default();
                    node.process = None;
                    return Err(StartError::Exited(format!(
                        "{what}: node {} of {} exited with {status}; its log:\n{}",
                        node.id,
                        self.name,
                        tail(&log, 60)
                    )));
                }
                if !answering.contains(&i) && api_versions_ok(node.addr().parse().expect("addr")) {
                    answering.insert(i);
                }
            }
            if answering.len() == which.len() {
                let running = self.running_ids();
                let client = client.get_or_insert_with(|| metadata_client(&self.bootstrap()));
                match broker_ids(client) {
                    Ok(ids) if ids == running => return Ok(()),
                    Ok(ids) => last = format!("metadata lists brokers {ids:?}, want {running:?}"),
                    Err(e) => last = format!("metadata: {e}"),
                }
            } else {
                last = format!(
                    "nodes answering ApiVersions: {:?} of {:?}",
                    answering.iter().map(|i| i + 1).collect::<Vec<_>>(),
                    which.iter().map(|i| i + 1).collect::<Vec<_>>()
                );
            }
            if Instant::now() > deadline {
                let mut msg = format!(
                    "Kafka cluster {} not ready ({what}) within {READY_TIMEOUT:?}: {last}",
                    self.name
                );
                for &i in which {
                    msg.push_str(&format!(
                        "\n--- log of node {} ({})\n{}",
                        self.nodes[i].id,
                        self.nodes[i].log.display(),
                        tail(&self.log(i), 150)
                    ));
                }
                panic!("{msg}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn running_ids(&mut self) -> BTreeSet<i32> {
        self.nodes
            .iter_mut()
            .filter_map(|n| still_running(&mut n.process).then_some(n.id))
            .collect()
    }

    /// The cluster's name (unique per test process), used for its logs.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Comma-separated `host:port` of every broker (also of stopped ones).
    pub fn bootstrap(&self) -> String {
        self.nodes
            .iter()
            .map(Node::addr)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Comma-separated `host:port` of the brokers whose process is alive. librdkafka reports a
    /// bootstrap broker that is down as an error event, which `reference::consume` treats as
    /// fatal: bootstrap from this while a broker is down.
    pub fn running_bootstrap(&mut self) -> String {
        self.nodes
            .iter_mut()
            .filter_map(|n| still_running(&mut n.process).then(|| n.addr()))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// `host:port` of broker `i` (0-based; its node id is `i + 1`).
    pub fn broker_addr(&self, i: usize) -> String {
        self.nodes[i].addr()
    }

    /// Comma-separated `host:port` of every broker's listener named `name` (a
    /// [`KafkaListener`] of [`KafkaOptions::listeners`], or `PLAINTEXT`). Panics when there is
    /// no such listener.
    pub fn bootstrap_for_listener(&self, name: &str) -> String {
        (0..self.nodes.len())
            .map(|i| self.listener_addr(i, name))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Comma-separated `host:port` of every broker's first listener using `protocol`
    /// ([`KafkaCluster::bootstrap`] for [`SecurityProtocol::Plaintext`]). Panics when there is
    /// no such listener.
    pub fn bootstrap_for(&self, protocol: SecurityProtocol) -> String {
        if protocol == SecurityProtocol::Plaintext {
            return self.bootstrap();
        }
        let Some(l) = self.listeners.iter().find(|l| l.protocol == protocol) else {
            panic!(
                "cluster {} has no {} listener (KafkaOptions::listener)",
                self.name,
                protocol.name()
            );
        };
        self.bootstrap_for_listener(&l.name)
    }

    /// `host:port` of broker `i`'s listener named `name` (or `PLAINTEXT`).
    pub fn listener_addr(&self, i: usize, name: &str) -> String {
        if name == "PLAINTEXT" {
            return self.broker_addr(i);
        }
        let Some(at) = self.listeners.iter().position(|l| l.name == name) else {
            panic!(
                "cluster {} has no listener {name} (it has PLAINTEXT{})",
                self.name,
                self.listeners
                    .iter()
                    .map(|l| format!(", {}", l.name))
                    .collect::<String>()
            );
        };
        format!(
            "{}:{}",
            self.listeners[at].host_or_loopback(),
            self.nodes[i].listener_ports[at]
        )
    }

    /// The port of broker `i`'s listener named `name` (or `PLAINTEXT`).
    pub fn listener_port(&self, i: usize, name: &str) -> u16 {
        let addr = self.listener_addr(i, name);
        addr.rsplit_once(':')
            .and_then(|(_, p)| p.parse().ok())
            .expect("host:port")
    }

    /// Runs one of Kafka's command-line tools (`class`, e.g.
    /// `org.apache.kafka.tools.LeaderElectionCommand`) with `args` against this cluster's
    /// `PLAINTEXT` listener (pass `{bootstrap}` where the tool wants the bootstrap address) and
    /// returns its exit status and output.
    pub fn run_tool(&self, class: &str, args: &[&str]) -> (ExitStatus, String) {
        let bootstrap = self.bootstrap();
        let mut cmd = java_command(256, self.cds.clone(), Some(&self.log4j));
        cmd.arg(class);
        for a in args {
            cmd.arg(a.replace("{bootstrap}", &bootstrap));
        }
        let out = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .unwrap_or_else(|e| panic!("run {class}: {e}"));
        let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&out.stderr));
        (out.status, text)
    }

    /// The extra listeners (as given in [`KafkaOptions::listeners`]).
    pub fn listeners(&self) -> &[KafkaListener] {
        &self.listeners
    }

    /// The node id of broker `i` (`i + 1`).
    pub fn broker_id(&self, i: usize) -> i32 {
        self.nodes[i].id
    }

    /// The index of the broker with node id `id`.
    pub fn index_of(&self, id: i32) -> Option<usize> {
        self.nodes.iter().position(|n| n.id == id)
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the cluster has no nodes (never: for clippy's `len_without_is_empty`).
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The cluster id (random, base64url, 22 characters).
    pub fn cluster_id(&self) -> &str {
        &self.cluster_id
    }

    /// Broker `i`'s log so far (every incarnation of it, restarts marked).
    pub fn log(&self, i: usize) -> String {
        std::fs::read_to_string(&self.nodes[i].log).unwrap_or_default()
    }

    /// Path of broker `i`'s log file.
    pub fn log_path(&self, i: usize) -> &Path {
        &self.nodes[i].log
    }

    /// The cluster's temporary directory (`node<i>/{server.properties,data,kafka.log}`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Whether broker `i`'s process is alive.
    pub fn is_running(&mut self, i: usize) -> bool {
        still_running(&mut self.nodes[i].process)
    }

    /// SIGKILLs broker `i` (a crash: no controlled shutdown, nothing flushed by the broker).
    pub fn kill_broker(&mut self, i: usize) {
        if let Some(mut p) = self.nodes[i].process.take() {
            p.kill();
        }
    }

    /// Replaces the certificate TLS listener `listener` presents (its PEM keystore in the
    /// cluster's directory), as an operator renewing it does; brokers read it when they
    /// (re)start.
    pub fn replace_certificate(&self, listener: &str, chain: &Path, key: &Path) {
        assert!(
            self.listeners
                .iter()
                .any(|l| l.name == listener && l.protocol.uses_tls()),
            "no TLS listener {listener}"
        );
        write_keystore(self.dir(), listener, chain, key);
    }

    /// SIGTERMs broker `i` (controlled shutdown) and waits up to 30 s for it to exit; panics,
    /// after a SIGKILL, if it does not.
    pub fn stop_broker(&mut self, i: usize) -> ExitStatus {
        let Some(mut p) = self.nodes[i].process.take() else {
            panic!("stop_broker({i}): broker of {} is not running", self.name);
        };
        match p.terminate(STOP_TIMEOUT) {
            Ok(s) => s,
            Err(waited) => panic!(
                "broker {} of {} did not exit within {waited:?} of SIGTERM (killed); log:\n{}",
                self.nodes[i].id,
                self.name,
                tail(&self.log(i), 80)
            ),
        }
    }

    /// Starts broker `i` again (same ports, same data) after `kill_broker` or `stop_broker` and
    /// waits until it serves clients and the metadata lists every running broker again.
    pub fn restart_broker(&mut self, i: usize) {
        assert!(
            !self.is_running(i),
            "restart_broker({i}): broker of {} is still running (kill or stop it first)",
            self.name
        );
        let started = Instant::now();
        {
            use std::io::Write;
            if let Ok(mut f) = File::options().append(true).open(&self.nodes[i].log) {
                let _ = writeln!(f, "===== strait-tests: restarting broker =====");
            }
        }
        if let Err(e) = self.spawn(i) {
            panic!("restart_broker({i}) of {}: {e}", self.name);
        }
        if let Err(StartError::Exited(why)) = self.wait_ready(&[i], "restart") {
            panic!("restart_broker({i}) of {}: {why}", self.name);
        }
        eprintln!(
            "kafka: broker {} of {} back in {:.1?}",
            self.nodes[i].id,
            self.name,
            started.elapsed()
        );
    }
}

fn server_properties(
    node: &Node,
    voters: &str,
    data: &Path,
    options: &KafkaOptions,
    keystores: &[Option<PathBuf>],
) -> String {
    let n = options.brokers;
    let rf = n.min(3);
    let min_isr = if n >= 3 { 2 } else { 1 };
    let mut listeners = format!(
        "PLAINTEXT://127.0.0.1:{},CONTROLLER://127.0.0.1:{}",
        node.port, node.controller_port
    );
    let mut protocol_map = "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT".to_string();
    for (l, port) in options.listeners.iter().zip(&node.listener_ports) {
        listeners.push_str(&format!(",{}://{}:{port}", l.name, l.host_or_loopback()));
        protocol_map.push_str(&format!(",{}:{}", l.name, l.protocol.name()));
    }
    let mut s = format!(
        "process.roles=broker,controller\n\
         node.id={id}\n\
         controller.quorum.voters={voters}\n\
         listeners={listeners}\n\
         advertised.listeners={listeners}\n\
         inter.broker.listener.name=PLAINTEXT\n\
         controller.listener.names=CONTROLLER\n\
         listener.security.protocol.map={protocol_map}\n\
         log.dirs={data}\n\
         offsets.topic.replication.factor={rf}\n\
         transaction.state.log.replication.factor={rf}\n\
         transaction.state.log.min.isr={min_isr}\n\
         share.coordinator.state.topic.replication.factor={rf}\n\
         share.coordinator.state.topic.min.isr={min_isr}\n\
         group.initial.rebalance.delay.ms=0\n\
         auto.create.topics.enable=false\n\
         log.cleaner.dedupe.buffer.size=2097152\n\
         num.network.threads=2\n\
         num.io.threads=2\n\
         background.threads=2\n\
         num.replica.fetchers=1\n\
         offsets.topic.num.partitions=5\n\
         transaction.state.log.num.partitions=5\n",
        id = node.id,
        data = data.display(),
    );
    // A killed broker is fenced (its leaderships move) 4 s after its last heartbeat instead of 9,
    // and a broker restarted after SIGKILL can register again once its old session expired
    // (DUPLICATE_BROKER_REGISTRATION until then): 4 s instead of 9 for that too.
    s.push_str("broker.session.timeout.ms=4000\nbroker.heartbeat.interval.ms=500\n");
    // No time-based retention by default: tests write records with fixed timestamps years in
    // the past, which the default 7 days would delete mid-test (first check 30 s after start).
    // A test that wants retention sets it on its topic.
    s.push_str("log.retention.ms=-1\n");
    s.push_str(&security_properties(options, keystores));
    for (k, v) in &options.properties {
        s.push_str(&format!("{k}={v}\n"));
    }
    s
}

/// Panics on listener settings Kafka would refuse at startup (three times, after a long wait).
fn check_listeners(options: &KafkaOptions) {
    let mut names = BTreeSet::new();
    for l in &options.listeners {
        assert!(
            !l.name.is_empty()
                && l.name
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'),
            "listener name {:?}: use [A-Z0-9_]",
            l.name
        );
        assert!(
            l.name != "PLAINTEXT" && l.name != "CONTROLLER",
            "listener name {}: taken by the harness (name the listener)",
            l.name
        );
        assert!(names.insert(&l.name), "two listeners named {}", l.name);
        for m in l.sasl_mechanisms.iter().flatten() {
            jaas_module(m);
        }
    }
    for m in &options.sasl_mechanisms {
        jaas_module(m);
    }
    for (name, password) in &options.plain_users {
        assert!(
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
                && !password.contains(['"', '\\', '\n']),
            "PLAIN user {name:?}: names are [A-Za-z0-9-_.], passwords without \" \\ or newlines"
        );
    }
}

/// The server-side JAAS login module of a SASL mechanism.
fn jaas_module(mechanism: &str) -> &'static str {
    match mechanism {
        "SCRAM-SHA-256" | "SCRAM-SHA-512" => "org.apache.kafka.common.security.scram.ScramLoginModule",
        "PLAIN" => "org.apache.kafka.common.security.plain.PlainLoginModule",
        "OAUTHBEARER" => "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule",
        other => panic!("SASL mechanism {other}: the harness serves SCRAM-SHA-256, SCRAM-SHA-512, PLAIN and OAUTHBEARER"),
    }
}

/// For each listener, the PEM keystore (private key, then the certificate chain) a TLS listener
/// presents, written under `<cluster dir>/tls/`; `None` for listeners without TLS.
fn write_keystores(dir: &Path, listeners: &[KafkaListener]) -> Vec<Option<PathBuf>> {
    listeners
        .iter()
        .map(|l| {
            if !l.protocol.uses_tls() {
                return None;
            }
            let (chain, key) = match &l.certificate {
                Some((c, k)) => (c.clone(), k.clone()),
                None => {
                    let c = crate::secure::certs();
                    (c.server_cert.clone(), c.server_key.clone())
                }
            };
            Some(write_keystore(dir, &l.name, &chain, &key))
        })
        .collect()
}

/// Writes listener `name`'s PEM keystore (the key, then the chain) under `<dir>/tls/`.
fn write_keystore(dir: &Path, name: &str, chain: &Path, key: &Path) -> PathBuf {
    let read = |p: &Path| {
        std::fs::read_to_string(p)
            .unwrap_or_else(|e| panic!("listener {name}: read {}: {e}", p.display()))
    };
    let tls = dir.join("tls");
    std::fs::create_dir_all(&tls).expect("create the cluster's tls directory");
    let path = tls.join(format!("{}-keystore.pem", name.to_lowercase()));
    let (key, chain) = (read(key), read(chain));
    std::fs::write(&path, format!("{}\n{}", key.trim_end(), chain))
        .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    path
}

/// The `listener.name.*` settings of the extra listeners, SASL users and the authorizer.
fn security_properties(options: &KafkaOptions, keystores: &[Option<PathBuf>]) -> String {
    let mut s = String::new();
    for (l, keystore) in options.listeners.iter().zip(keystores) {
        let p = l.prefix();
        if let Some(keystore) = keystore {
            let ca = l
                .client_ca
                .clone()
                .unwrap_or_else(|| crate::secure::certs().ca.clone());
            s.push_str(&format!(
                "{p}ssl.keystore.type=PEM\n\
                 {p}ssl.keystore.location={}\n\
                 {p}ssl.truststore.type=PEM\n\
                 {p}ssl.truststore.location={}\n\
                 {p}ssl.client.auth={}\n",
                keystore.display(),
                ca.display(),
                l.client_auth.value()
            ));
        }
        if l.protocol.uses_sasl() {
            let mechanisms = l
                .sasl_mechanisms
                .as_ref()
                .unwrap_or(&options.sasl_mechanisms);
            assert!(
                !mechanisms.is_empty(),
                "listener {}: no SASL mechanism",
                l.name
            );
            s.push_str(&format!(
                "{p}sasl.enabled.mechanisms={}\n",
                mechanisms.join(",")
            ));
            for m in mechanisms {
                let mut jaas = format!("{} required", jaas_module(m));
                if m == "PLAIN" {
                    for (name, password) in &options.plain_users {
                        jaas.push_str(&format!(" user_{name}=\"{password}\""));
                    }
                }
                s.push_str(&format!(
                    "{p}{}.sasl.jaas.config={jaas};\n",
                    m.to_lowercase()
                ));
            }
            if let Some(lifetime) = l.reauth {
                s.push_str(&format!(
                    "{p}connections.max.reauth.ms={}\n",
                    lifetime.as_millis()
                ));
            }
        }
        for (k, v) in &l.properties {
            s.push_str(&format!("{p}{k}={v}\n"));
        }
    }
    if let Some(users) = &options.super_users {
        let mut principals = vec!["User:ANONYMOUS".to_string()];
        principals.extend(users.iter().cloned());
        s.push_str(&format!(
            "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer\n\
             super.users={}\n",
            principals.join(";")
        ));
    }
    s
}

impl Drop for KafkaCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut p) = node.process.take() {
                p.kill();
            }
        }
        if std::thread::panicking() {
            let dir = crate::log_dir();
            let _ = std::fs::create_dir_all(&dir);
            for node in &self.nodes {
                let kept = dir.join(format!("kafka-{}-node{}.log", self.name, node.id));
                if std::fs::copy(&node.log, &kept).is_ok() {
                    eprintln!(
                        "kafka log of cluster {} node {} kept at {}",
                        self.name,
                        node.id,
                        kept.display()
                    );
                }
            }
        }
    }
}

impl TestCluster for KafkaCluster {
    fn bootstrap(&self) -> String {
        KafkaCluster::bootstrap(self)
    }

    fn kind(&self) -> BrokerKind {
        BrokerKind::Kafka
    }

    fn cluster_id(&self) -> &str {
        KafkaCluster::cluster_id(self)
    }

    fn pids(&self) -> Vec<u32> {
        self.nodes
            .iter()
            .filter_map(|n| n.process.as_ref().map(Supervised::pid))
            .collect()
    }
}

/// Starts a source and a target cluster (each as its closure says) in parallel.
pub fn start_source_and_target(
    source: impl FnOnce() -> KafkaCluster + Send,
    target: impl FnOnce() -> KafkaCluster + Send,
) -> (KafkaCluster, KafkaCluster) {
    std::thread::scope(|s| {
        let t = s.spawn(target);
        let src = source();
        (src, t.join().expect("start the target cluster"))
    })
}

/// Starts `n` independent single-node clusters named `prefix-0`, `prefix-1`, … in parallel.
pub fn start_clusters(prefix: &str, n: usize) -> Vec<KafkaCluster> {
    // Made before the threads, so they do not all wait on it at once with nothing to do.
    let _ = Cds::current();
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..n)
            .map(|i| s.spawn(move || KafkaCluster::start(&format!("{prefix}-{i}"))))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("start Kafka cluster"))
            .collect()
    })
}

// ---------------------------------------------------------------------------------------------
// MirrorMaker 2
// ---------------------------------------------------------------------------------------------

/// An `mm2.properties` for clusters `A` and `B` with MM2's test-friendly settings: every
/// interval 1 s and every internal topic with replication factor 1. No flow is enabled: `extra`
/// (appended last, so it also overrides) says which, e.g. `[("A->B.enabled", "true"),
/// ("A->B.topics", "orders")]`.
pub fn mm2_test_properties(a_bootstrap: &str, b_bootstrap: &str, extra: &[(&str, &str)]) -> String {
    let mut s = format!(
        "clusters = A, B\n\
         A.bootstrap.servers = {a_bootstrap}\n\
         B.bootstrap.servers = {b_bootstrap}\n\
         emit.checkpoints.interval.seconds = 1\n\
         emit.heartbeats.interval.seconds = 1\n\
         refresh.topics.interval.seconds = 1\n\
         refresh.groups.interval.seconds = 1\n\
         sync.topic.configs.interval.seconds = 1\n\
         sync.group.offsets.interval.seconds = 1\n\
         replication.factor = 1\n\
         checkpoints.topic.replication.factor = 1\n\
         heartbeats.topic.replication.factor = 1\n\
         offset-syncs.topic.replication.factor = 1\n\
         offset.storage.replication.factor = 1\n\
         status.storage.replication.factor = 1\n\
         config.storage.replication.factor = 1\n"
    );
    for (k, v) in extra {
        s.push_str(&format!("{k} = {v}\n"));
    }
    s
}

/// MirrorMaker 2 in dedicated mode (`org.apache.kafka.connect.mirror.MirrorMaker`), or a Kafka
/// Connect worker running MM2's connectors as Strimzi does, as a child process with its own
/// temporary directory; killed on drop (log kept when the test panics).
#[derive(Debug)]
pub struct Mm2Process {
    name: String,
    log: PathBuf,
    process: Option<Supervised>,
    dir: tempfile::TempDir,
}

impl Mm2Process {
    /// Starts MM2 with `config_text` as its `mm2.properties` (see [`mm2_test_properties`]).
    /// Returns once the JVM is spawned: MM2 logs "Kafka MirrorMaker started" before its
    /// connectors run, so wait for the data on the target instead.
    pub fn start(config_text: &str) -> Mm2Process {
        Mm2Process::start_with_args(config_text, &[])
    }

    /// [`Mm2Process::start`] with extra arguments after the properties file (`--clusters B`).
    pub fn start_with_args(config_text: &str, args: &[&str]) -> Mm2Process {
        Mm2Process::spawn(
            "org.apache.kafka.connect.mirror.MirrorMaker",
            "mm2",
            config_text,
            args,
        )
    }

    /// A Kafka Connect worker in distributed mode (`ConnectDistributed`) with
    /// `worker_properties`, as Strimzi runs MM2: its connectors are then created through the
    /// REST API (see [`connect_put_connector`]).
    pub fn start_connect(worker_properties: &str) -> Mm2Process {
        Mm2Process::spawn(
            "org.apache.kafka.connect.cli.ConnectDistributed",
            "connect",
            worker_properties,
            &[],
        )
    }

    fn spawn(main_class: &str, prefix: &str, config_text: &str, args: &[&str]) -> Mm2Process {
        let cds = cds_archive();
        let name = crate::unique(prefix);
        let dir = tempfile::Builder::new()
            .prefix(&format!("strait-{name}-"))
            .tempdir()
            .expect("temp dir for MM2");
        let props = dir.path().join("mm2.properties");
        let log4j = dir.path().join("log4j2.properties");
        let log = dir.path().join("mm2.log");
        std::fs::write(&props, config_text).expect("write mm2.properties");
        std::fs::write(&log4j, log4j2_properties()).expect("write log4j2.properties");
        let mut cmd = java_command(512, cds.map_or(Cds::None, Cds::Use), Some(&log4j));
        cmd.arg(main_class)
            .arg(&props)
            .args(args)
            .current_dir(dir.path());
        let process =
            Supervised::spawn(cmd, &log).unwrap_or_else(|e| panic!("start {main_class}: {e}"));
        Mm2Process {
            name,
            log,
            process: Some(process),
            dir,
        }
    }

    /// MM2's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Path of the log file.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The temporary directory (`mm2.properties`, `mm2.log`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Whether the process is alive.
    pub fn is_running(&mut self) -> bool {
        still_running(&mut self.process)
    }

    /// The JVM's process id while it runs (for CPU and memory readings).
    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().map(Supervised::pid)
    }

    /// SIGTERM and wait up to 30 s for the exit; panics, after a SIGKILL, if it does not.
    pub fn stop(&mut self) -> ExitStatus {
        let Some(mut p) = self.process.take() else {
            panic!("MM2 {} is not running", self.name);
        };
        match p.terminate(STOP_TIMEOUT) {
            Ok(s) => s,
            Err(waited) => panic!(
                "MM2 {} did not exit within {waited:?} of SIGTERM (killed); log:\n{}",
                self.name,
                tail(&self.log(), 80)
            ),
        }
    }

    /// SIGKILL (a crash).
    pub fn kill9(&mut self) {
        if let Some(mut p) = self.process.take() {
            p.kill();
        }
    }
}

impl Drop for Mm2Process {
    fn drop(&mut self) {
        self.kill9();
        if std::thread::panicking() {
            let dir = crate::log_dir();
            let _ = std::fs::create_dir_all(&dir);
            let kept = dir.join(format!("{}.log", self.name));
            if std::fs::copy(&self.log, &kept).is_ok() {
                eprintln!("MM2 log kept at {}", kept.display());
            }
        }
    }
}

/// `PUT /connectors/<name>/config` on a Connect worker's REST port with `config` (string
/// values), retried until the worker answers 200 or 201 (it starts its REST server before it
/// has joined its group); panics after `within`.
pub fn connect_put_connector(
    rest_port: u16,
    name: &str,
    config: &[(&str, &str)],
    within: Duration,
) {
    let escape = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
    let body = format!(
        "{{{}}}",
        config
            .iter()
            .map(|(k, v)| format!("\"{}\":\"{}\"", escape(k), escape(v)))
            .collect::<Vec<_>>()
            .join(",")
    );
    let path = format!("/connectors/{}/config", crate::http::percent_encode(name));
    let deadline = Instant::now() + within;
    let mut last = None;
    while Instant::now() < deadline {
        match crate::http::request(rest_port, "PUT", &path, Some(&body)) {
            Some((200 | 201, _)) => return,
            answer => last = answer.or(last),
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    panic!("PUT connector {name} never succeeded; last answer: {last:?}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64url_known_answers() {
        assert_eq!(base64url(b""), "");
        assert_eq!(base64url(b"f"), "Zg");
        assert_eq!(base64url(b"fo"), "Zm8");
        assert_eq!(base64url(b"foo"), "Zm9v");
        assert_eq!(base64url(&[0xfb, 0xff]), "-_8");
        assert_eq!(base64url(&[0u8; 16]), "AAAAAAAAAAAAAAAAAAAAAA");
    }

    #[test]
    fn random_uuids_are_distinct_kafka_uuids() {
        let ids: BTreeSet<String> = (0..1000).map(|_| random_uuid()).collect();
        assert_eq!(ids.len(), 1000);
        assert!(ids.iter().all(|s| s.len() == 22 && !s.starts_with('-')));
    }
}
