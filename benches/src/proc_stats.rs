//! CPU time and memory of a process, read from Linux `/proc` (proc(5)).
//!
//! - CPU: `utime + stime` (fields 14 and 15 of `/proc/<pid>/stat`), in clock ticks of
//!   `USER_HZ`, which the kernel fixes at 100 for this interface on every architecture Linux
//!   exports it for; the resolution is 10 ms, fine for phases of seconds. The counts cover
//!   every thread of the process (the kernel sums them into the process entry), so tokio
//!   workers and librdkafka's background threads are included. Children are not.
//! - Memory: `VmHWM` (peak resident set) and `VmRSS` from `/proc/<pid>/status`, in KiB.
//!
//! Reading `/proc` needs no `unsafe`, unlike `getrusage(2)` through `libc`.

use std::io;

/// Clock ticks per second of `/proc/<pid>/stat` time fields (`USER_HZ`).
pub const USER_HZ: f64 = 100.0;

fn proc_path(pid: Option<u32>, file: &str) -> String {
    match pid {
        Some(p) => format!("/proc/{p}/{file}"),
        None => format!("/proc/self/{file}"),
    }
}

/// User plus system CPU seconds used so far by process `pid` (this process when `None`).
pub fn cpu_seconds(pid: Option<u32>) -> io::Result<f64> {
    let stat = std::fs::read_to_string(proc_path(pid, "stat"))?;
    parse_cpu_seconds(&stat)
}

/// Parses `utime + stime` out of a `/proc/<pid>/stat` line.
pub fn parse_cpu_seconds(stat: &str) -> io::Result<f64> {
    let bad =
        |what: &str| io::Error::new(io::ErrorKind::InvalidData, format!("/proc stat: {what}"));
    // The command name (field 2) is in parentheses and may contain spaces: split after it.
    let close = stat
        .rfind(')')
        .ok_or_else(|| bad("no ')' after the command name"))?;
    let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
    // fields[0] is field 3 (state), so field n is fields[n - 3].
    let tick = |n: usize| -> io::Result<u64> {
        fields
            .get(n - 3)
            .ok_or_else(|| bad("too few fields"))?
            .parse::<u64>()
            .map_err(|_| bad("time field is not a number"))
    };
    Ok((tick(14)? + tick(15)?) as f64 / USER_HZ)
}

fn status_kib(pid: Option<u32>, key: &str) -> io::Result<u64> {
    let status = std::fs::read_to_string(proc_path(pid, "status"))?;
    parse_status_kib(&status, key)
}

/// Reads a `Key:   123 kB` line of `/proc/<pid>/status`, in bytes.
pub fn parse_status_kib(status: &str, key: &str) -> io::Result<u64> {
    for line in status.lines() {
        if let Some(rest) = line.strip_prefix(key).and_then(|r| r.strip_prefix(':')) {
            let kib = rest
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .map_err(|_| {
                    io::Error::new(io::ErrorKind::InvalidData, format!("{key}: not a number"))
                })?;
            return Ok(kib * 1024);
        }
    }
    Err(io::Error::new(
        io::ErrorKind::NotFound,
        format!("no {key} line in /proc status"),
    ))
}

/// Peak resident set size of `pid` (this process when `None`), in bytes.
pub fn peak_rss_bytes(pid: Option<u32>) -> io::Result<u64> {
    status_kib(pid, "VmHWM")
}

/// Current resident set size of `pid` (this process when `None`), in bytes.
pub fn rss_bytes(pid: Option<u32>) -> io::Result<u64> {
    status_kib(pid, "VmRSS")
}

/// Wall time and CPU time of this process over one phase.
#[derive(Debug, Clone, Copy)]
pub struct Phase {
    start: std::time::Instant,
    cpu: f64,
    pid: Option<u32>,
}

/// What a [`Phase`] measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PhaseResult {
    /// Wall-clock seconds.
    pub secs: f64,
    /// CPU seconds (user + system) of the measured process.
    pub cpu_secs: f64,
}

impl Phase {
    /// Starts measuring `pid` (this process when `None`).
    pub fn start(pid: Option<u32>) -> io::Result<Phase> {
        Ok(Phase {
            start: std::time::Instant::now(),
            cpu: cpu_seconds(pid)?,
            pid,
        })
    }

    /// Wall and CPU time since [`Phase::start`].
    pub fn finish(&self) -> io::Result<PhaseResult> {
        Ok(PhaseResult {
            secs: self.start.elapsed().as_secs_f64(),
            cpu_secs: cpu_seconds(self.pid)? - self.cpu,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_line_with_spaces_in_the_name() {
        let line = "1234 (tokio runtime) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 3 0";
        assert_eq!(parse_cpu_seconds(line).unwrap(), 3.25);
        assert!(parse_cpu_seconds("1 (x) S 1").is_err());
    }

    #[test]
    fn status_lines() {
        let s = "Name:\tstrait\nVmHWM:\t   20480 kB\nVmRSS:\t   10240 kB\n";
        assert_eq!(parse_status_kib(s, "VmHWM").unwrap(), 20480 * 1024);
        assert_eq!(parse_status_kib(s, "VmRSS").unwrap(), 10240 * 1024);
        assert!(parse_status_kib(s, "VmPeak").is_err());
    }

    #[test]
    fn own_process_is_readable_and_cpu_grows() {
        let before = cpu_seconds(None).unwrap();
        // Spin until the process has used 20 ms of CPU more (on a loaded machine that takes
        // longer than 20 ms of wall time); bounded, so a clock that never moves fails.
        let t = std::time::Instant::now();
        let mut x = 0u64;
        while cpu_seconds(None).unwrap() < before + 0.02 {
            assert!(
                t.elapsed() < std::time::Duration::from_secs(20),
                "CPU time did not grow"
            );
            for _ in 0..100_000 {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
            }
        }
        std::hint::black_box(x);
        assert!(peak_rss_bytes(None).unwrap() >= rss_bytes(None).unwrap() / 2);
    }
}
