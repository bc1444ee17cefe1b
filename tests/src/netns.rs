//! A network namespace of the test's own, joined to the host namespace by a veth pair, for
//! network faults on one process's path only: a program run inside it (`ip netns exec`)
//! reaches brokers through listeners bound to [`NetNs::host_addr`] (see
//! [`crate::kafka::KafkaListener::host`]), and `iptables` rules inside the namespace cut that
//! path to one broker port, or drop a share of its packets, without touching the brokers' own
//! traffic on loopback or any other process.
//!
//! Needs root, iproute2 and iptables (`scripts/install-deps.sh` installs iptables). `tc netem`
//! would add latency, but this machine's kernel has no netem (nor `prio`/`gact`), so delay is
//! not injected; random loss through iptables' `statistic` match makes TCP retransmit instead.
//! Everything is removed on drop.

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

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
        for tool in ["ip", "iptables"] {
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

    fn iptables(&self, op: &str, rule: &[String]) -> Result<(), String> {
        let mut args: Vec<&str> = vec!["ip", "netns", "exec", &self.name, "iptables", op];
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
