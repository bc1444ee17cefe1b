//! A network namespace of the test's own, joined to the host namespace by a veth pair, for
//! network faults on one process's path only: a program run inside it (`ip netns exec`)
//! reaches brokers through listeners bound to [`NetNs::host_addr`] (see
//! [`crate::kafka::KafkaListener::host`]), and `iptables` rules inside the namespace cut that
//! path to one broker port, or drop a share of its packets, without touching the brokers' own
//! traffic on loopback or any other process.
//!
//! Needs root, iproute2 and iptables (`scripts/install-deps.sh` installs iptables). `tc netem`
//! would add latency, but this machine's kernel has no netem (nor `prio`/`gact`), so latency
//! is added in user space instead: [`NetNs::redirect_port`] sends the namespace's new
//! connections to a broker port through a [`DelayProxy`] (iptables DNAT), and
//! [`NetNs::reset_connections`] (`ss -K`) makes the process in the namespace reconnect. Random
//! loss uses iptables' `statistic` match, which makes TCP retransmit. Everything is removed on
//! drop.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

/// One namespace and its veth pair (`/30`: the host end is `.1`, the namespace end `.2`).
#[derive(Debug)]
pub struct NetNs {
    name: String,
    host_if: String,
    host_addr: String,
    rules: Vec<Vec<String>>,
}

static NEXT: AtomicU32 = AtomicU32::new(0);

fn run(args: &[&str]) -> Result<String, String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|e| format!("{}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "`{}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl NetNs {
    /// Why namespaces cannot be used here (not root, a tool missing), or `None`.
    pub fn unavailable() -> Option<String> {
        // The effective uid: the second field of /proc/self/status's `Uid:` line.
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let euid = status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|l| l.split_whitespace().nth(1).map(str::to_owned));
        if euid.as_deref() != Some("0") {
            return Some("network namespaces need root".into());
        }
        for tool in ["ip", "iptables", "ss"] {
            if which(tool).is_none() {
                return Some(format!(
                    "`{tool}` is not installed (scripts/install-deps.sh)"
                ));
            }
        }
        None
    }

    /// Creates the namespace and the veth pair, both ends up, loopback up inside.
    pub fn create() -> Result<NetNs, String> {
        let pid = std::process::id();
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        remove_stale();
        let tag = format!("{}{}", pid % 100_000, n);
        let name = format!("strait-{pid}-{n}");
        let host_if = format!("sh{tag}");
        let ns_if = format!("sn{tag}");
        // 10.213.0.0/16 split in /30s by (pid, n): distinct for concurrent test processes.
        let slot = (pid.wrapping_mul(7).wrapping_add(n)) % 16_384;
        let base = slot * 4;
        let (b2, b3) = (base / 256, base % 256);
        let host_addr = format!("10.213.{b2}.{}", b3 + 1);
        let ns_addr = format!("10.213.{b2}.{}", b3 + 2);
        let ns = NetNs {
            name: name.clone(),
            host_if: host_if.clone(),
            host_addr: host_addr.clone(),
            rules: Vec::new(),
        };
        run(&["ip", "netns", "add", &name])?;
        run(&[
            "ip", "link", "add", &host_if, "type", "veth", "peer", "name", &ns_if,
        ])?;
        run(&["ip", "link", "set", &ns_if, "netns", &name])?;
        run(&[
            "ip",
            "addr",
            "add",
            &format!("{host_addr}/30"),
            "dev",
            &host_if,
        ])?;
        run(&["ip", "link", "set", &host_if, "up"])?;
        let inside = |args: &[&str]| {
            let mut all = vec!["ip", "netns", "exec", &name];
            all.extend_from_slice(args);
            run(&all)
        };
        inside(&["ip", "addr", "add", &format!("{ns_addr}/30"), "dev", &ns_if])?;
        inside(&["ip", "link", "set", &ns_if, "up"])?;
        inside(&["ip", "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The host end's address: what listeners for processes in the namespace bind to.
    pub fn host_addr(&self) -> &str {
        &self.host_addr
    }

    /// The command prefix that runs a program inside the namespace.
    pub fn exec_prefix(&self) -> Vec<String> {
        vec![
            "ip".into(),
            "netns".into(),
            "exec".into(),
            self.name.clone(),
        ]
    }

    /// `iptables [-t table] <op> <rule…>`; a rule may start with `-t <table>`.
    fn iptables(&self, op: &str, rule: &[String]) -> Result<(), String> {
        let mut args: Vec<&str> = vec!["ip", "netns", "exec", &self.name, "iptables"];
        let rule = match rule {
            [t, table, rest @ ..] if t == "-t" => {
                args.extend(["-t", table.as_str()]);
                rest
            }
            _ => rule,
        };
        args.push(op);
        args.extend(rule.iter().map(String::as_str));
        run(&args).map(|_| ())
    }

    fn add(&mut self, rule: Vec<String>) -> Result<(), String> {
        self.iptables("-A", &rule)?;
        self.rules.push(rule);
        Ok(())
    }

    /// Silently drops every packet between the namespace and `port` on the host end (both
    /// directions): established connections stall and new ones time out, as when a network
    /// path is cut.
    pub fn cut_port(&mut self, port: u16) -> Result<(), String> {
        let host = self.host_addr.clone();
        let p = port.to_string();
        self.add(
            [
                "OUTPUT", "-p", "tcp", "-d", &host, "--dport", &p, "-j", "DROP",
            ]
            .map(String::from)
            .to_vec(),
        )?;
        self.add(
            [
                "INPUT", "-p", "tcp", "-s", &host, "--sport", &p, "-j", "DROP",
            ]
            .map(String::from)
            .to_vec(),
        )
    }

    /// Drops each packet in and out of the namespace with probability `p`.
    pub fn lose_packets(&mut self, p: f64) -> Result<(), String> {
        let prob = format!("{p}");
        for chain in ["OUTPUT", "INPUT"] {
            self.add(
                [
                    chain,
                    "-m",
                    "statistic",
                    "--mode",
                    "random",
                    "--probability",
                    &prob,
                    "-j",
                    "DROP",
                ]
                .map(String::from)
                .to_vec(),
            )?;
        }
        Ok(())
    }

    /// Sends the namespace's new connections to `port` on the host end to `to` there instead
    /// (DNAT in the namespace): through a [`DelayProxy`] listening on [`NetNs::host_addr`].
    /// Connections already open keep their path; [`NetNs::reset_connections`] ends them.
    pub fn redirect_port(&mut self, port: u16, to: u16) -> Result<(), String> {
        let host = self.host_addr.clone();
        let (p, dest) = (port.to_string(), format!("{host}:{to}"));
        self.add(
            [
                "-t",
                "nat",
                "OUTPUT",
                "-p",
                "tcp",
                "-d",
                &host,
                "--dport",
                &p,
                "-j",
                "DNAT",
                "--to-destination",
                &dest,
            ]
            .map(String::from)
            .to_vec(),
        )
    }

    /// Resets every TCP connection from the namespace to the host end (`ss -K`): the process
    /// inside sees them fail and connects again, through the rules in force now.
    pub fn reset_connections(&self) -> Result<(), String> {
        run(&[
            "ip",
            "netns",
            "exec",
            &self.name,
            "ss",
            "-K",
            "dst",
            &self.host_addr,
        ])
        .map(|_| ())
    }

    /// Removes every rule added (the path is whole again).
    pub fn heal(&mut self) -> Result<(), String> {
        let mut first_err = None;
        for rule in std::mem::take(&mut self.rules).into_iter().rev() {
            if let Err(e) = self.iptables("-D", &rule) {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = run(&["ip", "netns", "del", &self.name]);
        // Deleting the namespace deletes its veth end, and with it the pair; this is for the
        // case where the move into the namespace failed.
        let _ = run(&["ip", "link", "del", &self.host_if]);
    }
}

/// Deletes the namespaces of test processes that are gone (killed before their drop ran).
fn remove_stale() {
    let Ok(list) = run(&["ip", "netns", "list"]) else {
        return;
    };
    for name in list.lines().filter_map(|l| l.split_whitespace().next()) {
        let Some(pid) = name
            .strip_prefix("strait-")
            .and_then(|rest| rest.split_once('-'))
            .map(|(pid, _)| pid)
        else {
            continue;
        };
        if pid.parse::<u32>().is_ok() && !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = run(&["ip", "netns", "del", name]);
        }
    }
}

fn which(tool: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}

/// A TCP proxy that holds every chunk of bytes for a settable delay in each direction, in
/// order: the latency `tc netem delay` adds, in user space (a round trip through it takes
/// twice the delay more). It listens on `host` (port picked by the system) and opens one
/// connection to `upstream` per connection it accepts; it stops accepting on drop, and its
/// open connections end when either side closes.
#[derive(Debug)]
pub struct DelayProxy {
    addr: SocketAddr,
    delay_ms: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    accepted: Arc<AtomicU64>,
    bytes: Arc<AtomicU64>,
}

impl DelayProxy {
    /// Starts the proxy with no delay.
    pub fn start(host: &str, upstream: SocketAddr) -> std::io::Result<DelayProxy> {
        let listener = TcpListener::bind((host, 0))?;
        let addr = listener.local_addr()?;
        let delay_ms = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let accepted = Arc::new(AtomicU64::new(0));
        let bytes = Arc::new(AtomicU64::new(0));
        let (d, st, acc, by) = (
            delay_ms.clone(),
            stop.clone(),
            accepted.clone(),
            bytes.clone(),
        );
        std::thread::Builder::new()
            .name(format!("delay-proxy-{}", addr.port()))
            .spawn(move || {
                for conn in listener.incoming() {
                    if st.load(Ordering::Relaxed) {
                        break;
                    }
                    let Ok(down) = conn else { continue };
                    acc.fetch_add(1, Ordering::Relaxed);
                    let Ok(up) = TcpStream::connect(upstream) else {
                        let _ = down.shutdown(Shutdown::Both);
                        continue;
                    };
                    let _ = (down.set_nodelay(true), up.set_nodelay(true));
                    let (Ok(down2), Ok(up2)) = (down.try_clone(), up.try_clone()) else {
                        continue;
                    };
                    pump(down, up2, d.clone(), by.clone());
                    pump(up, down2, d.clone(), by.clone());
                }
            })?;
        Ok(DelayProxy {
            addr,
            delay_ms,
            stop,
            accepted,
            bytes,
        })
    }

    /// Bytes carried so far (both directions, written to the other side).
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The delay for bytes read from now on (each direction).
    pub fn set_delay(&self, delay: Duration) {
        self.delay_ms
            .store(delay.as_millis() as u64, Ordering::Relaxed);
    }
}

impl Drop for DelayProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1)); // wakes accept
    }
}

/// Copies `from` to `to`, each chunk held until it is `delay` old (never before an earlier
/// chunk): a reader thread stamps chunks, a writer thread sends them when due.
fn pump(mut from: TcpStream, mut to: TcpStream, delay: Arc<AtomicU64>, carried: Arc<AtomicU64>) {
    let (tx, rx) = mpsc::channel::<(Instant, Vec<u8>)>();
    let reader = from.try_clone();
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let due = Instant::now() + Duration::from_millis(delay.load(Ordering::Relaxed));
                    if tx.send((due, buf[..n].to_vec())).is_err() {
                        break;
                    }
                }
            }
        }
    });
    std::thread::spawn(move || {
        let mut last = Instant::now();
        for (due, bytes) in rx {
            let due = due.max(last);
            last = due;
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            if to.write_all(&bytes).is_err() {
                break;
            }
            carried.fetch_add(bytes.len() as u64, Ordering::Relaxed);
        }
        // The reader ended (EOF or error) or the writer failed: close this direction and stop
        // the reader, so the other direction's pump sees its end too.
        let _ = to.shutdown(Shutdown::Write);
        if let Ok(r) = reader {
            let _ = r.shutdown(Shutdown::Read);
        }
    });
}
