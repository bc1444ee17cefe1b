//! Independent tansu clusters as child processes.
//!
//! Each [`TansuBroker`] is its own cluster (distinct cluster id, in-memory storage) listening on a
//! free loopback port. The binary comes from `scripts/install-tansu.sh` (`.tansu/bin/tansu`), or
//! from `STRAIT_TANSU`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Path of the tansu binary, or a panic telling how to install it.
pub fn tansu_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("STRAIT_TANSU") {
        return PathBuf::from(p);
    }
    let p = crate::workspace_root().join(".tansu/bin/tansu");
    assert!(
        p.exists(),
        "tansu is not installed at {}: run scripts/install-tansu.sh (or set STRAIT_TANSU)",
        p.display()
    );
    p
}

/// One tansu broker process: a single-broker cluster.
#[derive(Debug)]
pub struct TansuBroker {
    child: Option<Child>,
    cluster_id: String,
    addr: SocketAddr,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl TansuBroker {
    /// Starts a broker for a new cluster named `cluster_id` (made unique per process) and waits
    /// until it answers ApiVersions.
    pub fn start(cluster_id: &str) -> TansuBroker {
        let mut last_err = String::new();
        for _attempt in 0..5 {
            match Self::try_start(cluster_id) {
                Ok(b) => return b,
                Err(e) => last_err = e,
            }
        }
        panic!("could not start tansu cluster {cluster_id}: {last_err}");
    }

    fn try_start(cluster_id: &str) -> Result<TansuBroker, String> {
        let port = free_port();
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let log = dir.path().join("tansu.log");
        let log_file = std::fs::File::create(&log).map_err(|e| e.to_string())?;
        let url = format!("tcp://127.0.0.1:{port}");
        let cluster_id = crate::unique(cluster_id);
        let child = Command::new(tansu_binary())
            .arg("broker")
            .args(["--cluster-id", &cluster_id])
            .args(["--listener-url", &url])
            .args(["--advertised-listener-url", &url])
            .args(["--storage-engine", "memory://tansu/"])
            .current_dir(dir.path())
            .env(
                "RUST_LOG",
                std::env::var("STRAIT_TANSU_LOG").unwrap_or("warn".into()),
            )
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().map_err(|e| e.to_string())?)
            .stderr(log_file)
            .spawn()
            .map_err(|e| format!("spawn {}: {e}", tansu_binary().display()))?;
        let mut broker = TansuBroker {
            child: Some(child),
            cluster_id,
            addr,
            log,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = broker
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                let log = std::fs::read_to_string(&broker.log).unwrap_or_default();
                broker.child = None;
                return Err(format!("tansu exited with {status}: {log}"));
            }
            if api_versions_ok(addr) {
                return Ok(broker);
            }
            if Instant::now() > deadline {
                return Err("tansu did not answer ApiVersions within 20 s".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `host:port` to bootstrap from.
    pub fn bootstrap(&self) -> String {
        self.addr.to_string()
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The cluster id this broker was started with (unique per test process).
    pub fn cluster_id(&self) -> &str {
        &self.cluster_id
    }

    /// The broker's combined stdout/stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Path of the broker's log file (deleted with the broker unless the test failed).
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Kills the broker process now (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for TansuBroker {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            let dir = crate::log_dir();
            let _ = std::fs::create_dir_all(&dir);
            let kept = dir.join(format!("{}.log", self.cluster_id));
            if std::fs::copy(&self.log, &kept).is_ok() {
                eprintln!(
                    "tansu log of cluster {} kept at {}",
                    self.cluster_id,
                    kept.display()
                );
            }
        }
    }
}

impl crate::TestCluster for TansuBroker {
    fn bootstrap(&self) -> String {
        TansuBroker::bootstrap(self)
    }

    fn kind(&self) -> crate::BrokerKind {
        crate::BrokerKind::Tansu
    }

    fn cluster_id(&self) -> &str {
        TansuBroker::cluster_id(self)
    }

    fn pids(&self) -> Vec<u32> {
        self.child.iter().map(Child::id).collect()
    }
}

/// Starts `n` independent clusters named `prefix-0`, `prefix-1`, … (in parallel).
pub fn start_clusters(prefix: &str, n: usize) -> Vec<TansuBroker> {
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..n)
            .map(|i| s.spawn(move || TansuBroker::start(&format!("{prefix}-{i}"))))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("start broker"))
            .collect()
    })
}

/// A loopback port that was free a moment ago (bind to port 0, read it, release it).
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    l.local_addr().expect("local addr").port()
}

/// Sends ApiVersions v0 by hand (no client library involved) and checks the answer.
pub fn api_versions_ok(addr: SocketAddr) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    // size, api_key=18, api_version=0, correlation_id=7, client_id="probe"
    let mut req = Vec::new();
    let body: &[u8] = &[0, 18, 0, 0, 0, 0, 0, 7, 0, 5, b'p', b'r', b'o', b'b', b'e'];
    req.extend_from_slice(&(body.len() as i32).to_be_bytes());
    req.extend_from_slice(body);
    if s.write_all(&req).is_err() {
        return false;
    }
    let mut head = [0u8; 10];
    if s.read_exact(&mut head).is_err() {
        return false;
    }
    let correlation = i32::from_be_bytes([head[4], head[5], head[6], head[7]]);
    let error = i16::from_be_bytes([head[8], head[9]]);
    correlation == 7 && error == 0
}
