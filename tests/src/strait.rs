//! Running Strait in tests: in-process (`replicator::run::run`) or as the `strait` binary.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

/// Writes an `mm2.properties` for a flow between two tansu clusters, with test-friendly
/// intervals (1 s heartbeats and checkpoints, internal topics with replication factor 1).
pub fn mm2_properties(a: &str, b: &str, extra: &str) -> String {
    format!(
        "clusters = A, B\n\
         A.bootstrap.servers = {a}\n\
         B.bootstrap.servers = {b}\n\
         A->B.enabled = true\n\
         A->B.topics = .*\n\
         replication.factor = 1\n\
         offset-syncs.topic.replication.factor = 1\n\
         checkpoints.topic.replication.factor = 1\n\
         heartbeats.topic.replication.factor = 1\n\
         offset.storage.replication.factor = 1\n\
         emit.checkpoints.interval.seconds = 1\n\
         emit.heartbeats.interval.seconds = 1\n\
         refresh.topics.interval.seconds = 2\n\
         refresh.groups.interval.seconds = 1\n\
         sync.group.offsets.interval.seconds = 1\n\
         {extra}\n"
    )
}

/// The `strait` binary: `STRAIT_BIN` when set (e.g. the static musl build, which CI runs the
/// smoke tests with), else the debug build, built on demand.
pub fn strait_binary() -> PathBuf {
    if let Some(bin) = std::env::var_os("STRAIT_BIN") {
        return PathBuf::from(bin);
    }
    let root = crate::workspace_root();
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let bin = target.join("debug/strait");
    static BUILD: std::sync::Once = std::sync::Once::new();
    BUILD.call_once(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "-p", "replicator", "--bin", "strait"])
            .current_dir(&root)
            .status()
            .expect("run cargo build");
        assert!(status.success(), "building strait failed");
    });
    bin
}

/// A `strait run` child process; killed on drop.
#[derive(Debug)]
pub struct StraitProcess {
    child: Option<Child>,
    log: PathBuf,
}

impl StraitProcess {
    /// Starts `strait run --config <file>`.
    pub fn start(config_text: &str, dir: &std::path::Path) -> StraitProcess {
        StraitProcess::start_with("mm2.properties", config_text, dir, &[])
    }

    /// Starts `strait run --config <dir>/<file_name>` (the name's extension picks the format:
    /// `.properties` or `.yaml` for Strimzi) with extra environment variables.
    pub fn start_with(
        file_name: &str,
        config_text: &str,
        dir: &std::path::Path,
        env: &[(&str, &str)],
    ) -> StraitProcess {
        StraitProcess::start_wrapped(&[], file_name, config_text, dir, env)
    }

    /// [`StraitProcess::start_with`] run through a command prefix, e.g.
    /// [`crate::netns::NetNs::exec_prefix`] (which execs, so the child is Strait itself).
    pub fn start_wrapped(
        prefix: &[String],
        file_name: &str,
        config_text: &str,
        dir: &std::path::Path,
        env: &[(&str, &str)],
    ) -> StraitProcess {
        let cfg = dir.join(file_name);
        std::fs::write(&cfg, config_text).expect("write config");
        let log = dir.join(format!("strait-{}.log", crate::unique("run")));
        let f = std::fs::File::create(&log).expect("log file");
        let mut cmd = match prefix.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(strait_binary());
                c
            }
            None => Command::new(strait_binary()),
        };
        let child = cmd
            .args(["run", "--config"])
            .arg(&cfg)
            .env(
                "STRAIT_LOG",
                std::env::var("STRAIT_TEST_LOG").unwrap_or("info".into()),
            )
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(f.try_clone().expect("dup"))
            .stderr(f)
            .spawn()
            .expect("spawn strait");
        StraitProcess {
            child: Some(child),
            log,
        }
    }

    /// Waits up to `within` for the process to exit by itself.
    pub fn wait_exit(&mut self, within: std::time::Duration) -> Option<std::process::ExitStatus> {
        let c = self.child.as_mut()?;
        let deadline = std::time::Instant::now() + within;
        loop {
            if let Ok(Some(s)) = c.try_wait() {
                self.child = None;
                return Some(s);
            }
            if std::time::Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    /// The process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Where its output goes.
    pub fn log_path(&self) -> &std::path::Path {
        &self.log
    }

    /// The process's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL, as a crash.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then waits up to `within` for the exit status.
    pub fn terminate(&mut self, within: std::time::Duration) -> Option<std::process::ExitStatus> {
        let c = self.child.as_mut()?;
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(c.id().to_string())
            .status();
        self.wait_exit(within)
    }
}

impl Drop for StraitProcess {
    fn drop(&mut self) {
        self.kill9();
        if std::thread::panicking() {
            eprintln!("---- strait log ----\n{}", self.log());
        }
    }
}

/// Runs `strait <args>` to completion (killed after `timeout`) with extra environment
/// variables; returns the exit status (`None` if it had to be killed) and stdout + stderr.
pub fn strait_command(
    args: &[&str],
    env: &[(&str, &str)],
    timeout: std::time::Duration,
) -> (Option<std::process::ExitStatus>, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("out.log");
    let f = std::fs::File::create(&log).expect("log file");
    let mut child = Command::new(strait_binary())
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(f.try_clone().expect("dup"))
        .stderr(f)
        .spawn()
        .expect("spawn strait");
    let deadline = std::time::Instant::now() + timeout;
    let status = loop {
        if let Ok(Some(s)) = child.try_wait() {
            break Some(s);
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    (status, std::fs::read_to_string(&log).unwrap_or_default())
}
