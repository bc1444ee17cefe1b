//! Test support for Strait's integration tests.
//!
//! - [`tansu`]: start independent tansu clusters (real Kafka-compatible brokers) as processes on
//!   free loopback ports, wait until they answer ApiVersions, kill them on drop (also on panic) and
//!   keep the broker's log of a failed test under `target/test-logs/`.
//! - [`kafka`]: start Apache Kafka clusters (the real Java broker, KRaft, one or three combined
//!   broker+controller nodes) on free loopback ports from the jars of `scripts/install-kafka.sh`,
//!   wait until librdkafka's metadata lists every broker, kill, stop and restart brokers, and run
//!   MirrorMaker 2 (dedicated mode) next to them; every JVM dies with the test process (watchdog)
//!   and its log is kept under `target/test-logs/` when a test fails.
//! - [`TestCluster`]: what a test body needs from a cluster of either kind, so one body can run
//!   against tansu and Apache Kafka.
//! - [`reference`]: librdkafka (through the `rdkafka` crate) as the independent reference client.
//! - [`secure`]: TLS, mutual TLS and SASL (SCRAM, PLAIN, OAUTHBEARER) test brokers on Apache
//!   Kafka's own listeners, and the test certificates.
//! - [`mock`]: librdkafka's mock cluster, a second Kafka implementation with fault injection.
//! - [`skip`]: how a test that needs a feature a broker lacks says so.
//!
//! The known gaps of the brokers used here are listed in `tests/README.md`.

pub mod http;
pub mod kafka;
pub mod mock;
pub mod netns;
pub mod reference;
pub mod secure;
pub mod strait;
pub mod tansu;

/// Which broker implementation a [`TestCluster`] runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BrokerKind {
    /// tansu ([`tansu::TansuBroker`]).
    Tansu,
    /// Apache Kafka ([`kafka::KafkaCluster`]).
    Kafka,
}

impl BrokerKind {
    /// `"tansu"` or `"kafka"`, for test output and names.
    pub fn name(self) -> &'static str {
        match self {
            BrokerKind::Tansu => "tansu",
            BrokerKind::Kafka => "kafka",
        }
    }
}

/// A running test cluster of either kind, so one test body can run against both.
pub trait TestCluster {
    /// Comma-separated `host:port` to bootstrap from.
    fn bootstrap(&self) -> String;
    /// The broker implementation.
    fn kind(&self) -> BrokerKind;
    /// The cluster id the brokers report.
    fn cluster_id(&self) -> &str;
    /// Process ids of the running broker processes (for CPU and memory readings).
    fn pids(&self) -> Vec<u32>;
}

/// Two independent clusters of `kind` (tansu or Apache Kafka) for one test.
pub fn start_pair(kind: BrokerKind, name: &str) -> Vec<Box<dyn TestCluster>> {
    match kind {
        BrokerKind::Tansu => tansu::start_clusters(name, 2)
            .into_iter()
            .map(|c| Box::new(c) as Box<dyn TestCluster>)
            .collect(),
        BrokerKind::Kafka => kafka::start_clusters(name, 2)
            .into_iter()
            .map(|c| Box::new(c) as Box<dyn TestCluster>)
            .collect(),
    }
}

/// One cluster of `kind` (tansu or Apache Kafka) for one test.
pub fn start_one(kind: BrokerKind, name: &str) -> Box<dyn TestCluster> {
    match kind {
        BrokerKind::Tansu => Box::new(tansu::TansuBroker::start(name)),
        BrokerKind::Kafka => Box::new(kafka::KafkaCluster::start(name)),
    }
}

/// Runs each named scenario (`async fn name(kind: BrokerKind)` in the calling test file) once on
/// tansu and once on Apache Kafka, as tests `tansu::name` and `kafka::name`.
#[macro_export]
macro_rules! on_both_brokers {
    ($($name:ident),* $(,)?) => {
        mod tansu {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::BrokerKind::Tansu).await
                }
            )*
        }
        mod kafka {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::BrokerKind::Kafka).await
                }
            )*
        }
    };
}

/// Prints why a test does not run its body and returns from the test.
///
/// Skipped tests are never silently green: the reason is printed on stderr with a `SKIPPED:`
/// prefix (visible with `--nocapture` and in the summary of a failed run) and counted in
/// `target/test-logs/skipped.txt`.
#[macro_export]
macro_rules! skip {
    ($($reason:tt)+) => {{
        $crate::record_skip(module_path!(), &format!($($reason)+));
        return;
    }};
}

/// Records a skipped test and its reason (used by [`skip!`]).
pub fn record_skip(test: &str, reason: &str) {
    eprintln!("SKIPPED: {test}: {reason}");
    let dir = log_dir();
    if std::fs::create_dir_all(&dir).is_ok() {
        use std::io::Write;
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("skipped.txt"))
        {
            // One write per line: tests run in parallel and append to the same file.
            let _ = f.write_all(format!("{test}: {reason}\n").as_bytes());
        }
    }
}

/// The workspace root (parent of this crate).
pub fn workspace_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests crate has a parent")
        .to_path_buf()
}

/// Cargo's target directory (`CARGO_TARGET_DIR`, else `target/` of the workspace).
pub fn target_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

/// Where logs of failed tests are kept.
pub fn log_dir() -> std::path::PathBuf {
    target_dir().join("test-logs")
}

/// A unique name for topics and groups within one test process.
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Installs a `tracing` subscriber that writes to the test's captured output (once per process).
pub fn init_tracing() {
    use std::sync::Once;
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let filter = tracing_subscriber::EnvFilter::try_from_env("STRAIT_TEST_LOG")
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .try_init();
    });
}
