//! The metrics and health endpoint: a minimal HTTP/1.1 server on the process's tokio runtime.
//!
//! `GET /metrics` (OpenMetrics text, see [`crate::metrics`]), `GET /healthz` (200 unless a
//! flow is wedged), `GET /readyz` (200 once every flow replicates). One request per
//! connection, at most 16 at once; the request head is read with a size limit and the whole
//! exchange with a 10 s limit, and only the head's first line is looked at, so a slow or
//! hostile client costs one small buffer and one of the 16 slots for at most 10 s.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::error::{Error, Result};
use crate::flow::now_ms;
use crate::metrics::{Metrics, ProcessStats};

/// Largest request head read.
const MAX_HEAD: usize = 8 * 1024;
/// Time a client has for a whole exchange (request head in, answer out).
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections answered at once; more wait to be accepted (the descriptors are shared with
/// the Kafka connections).
const MAX_CONNECTIONS: usize = 16;

/// Binds `addr`; the returned future serves until `stop` turns true.
pub async fn bind(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    stop: watch::Receiver<bool>,
) -> Result<impl std::future::Future<Output = ()>> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| Error::Other(format!("metrics endpoint: cannot listen on {addr}: {e}")))?;
    let local = listener.local_addr().unwrap_or(addr);
    info!(%local, "serving /metrics, /healthz and /readyz");
    Ok(serve(listener, metrics, stop))
}

async fn serve(listener: TcpListener, metrics: Arc<Metrics>, mut stop: watch::Receiver<bool>) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let slot = tokio::select! {
            _ = stop.changed() => return,
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => return,
            },
        };
        tokio::select! {
            _ = stop.changed() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let metrics = metrics.clone();
                    tokio::spawn(async move {
                        let _slot = slot;
                        match tokio::time::timeout(EXCHANGE_TIMEOUT, answer(stream, &metrics)).await {
                            Ok(Ok(())) => {}
                            Ok(Err(e)) => debug!(%peer, error = %e, "metrics request failed"),
                            Err(_) => debug!(%peer, "metrics request timed out"),
                        }
                    });
                }
                Err(e) => {
                    warn!(error = %e, "metrics endpoint: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
}

async fn answer(mut stream: TcpStream, metrics: &Arc<Metrics>) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_HEAD {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let (status, content_type, body) = route(&head, metrics);
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    if !head.starts_with(b"HEAD ") {
        stream.write_all(body.as_bytes()).await?;
    }
    stream.shutdown().await
}

/// The answer to a request head: status line, content type, body.
fn route(head: &[u8], metrics: &Arc<Metrics>) -> (&'static str, &'static str, String) {
    const TEXT: &str = "text/plain; charset=utf-8";
    let first = head.split(|b| *b == b'\n').next().unwrap_or_default();
    let first = String::from_utf8_lossy(first);
    let mut parts = first.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    if method != "GET" && method != "HEAD" {
        return ("405 Method Not Allowed", TEXT, "GET only\n".into());
    }
    let now = now_ms();
    match path {
        "/metrics" => (
            "200 OK",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            metrics.encode(now, process_stats()),
        ),
        "/healthz" | "/readyz" => {
            let h = metrics.health(now);
            let ok = if path == "/healthz" { h.live } else { h.ready };
            let mut body = h.detail.join("\n");
            body.push('\n');
            if ok {
                ("200 OK", TEXT, body)
            } else {
                ("503 Service Unavailable", TEXT, body)
            }
        }
        _ => (
            "404 Not Found",
            TEXT,
            "try /metrics, /healthz or /readyz\n".into(),
        ),
    }
}

/// The process's CPU time, RSS, open descriptors and start time, from `/proc` (Linux; `None`
/// elsewhere). Assumes 100 clock ticks per second and 4 KiB pages, as on Linux x86-64 and
/// aarch64.
fn process_stats() -> Option<ProcessStats> {
    const TICKS: f64 = 100.0;
    const PAGE: u64 = 4096;
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name (which may hold spaces).
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime, stime, starttime are fields 14, 15, 22 of the whole line (11, 12, 19 here).
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok());
    let cpu_seconds = (ticks(11)? + ticks(12)?) / TICKS;
    let rss_pages: u64 = fields.get(21)?.parse().ok()?;
    let boot = std::fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("btime ")?.trim().parse::<f64>().ok())?;
    let open_fds = std::fs::read_dir("/proc/self/fd").ok()?.count() as u64;
    Some(ProcessStats {
        cpu_seconds,
        resident_bytes: rss_pages * PAGE,
        open_fds,
        start_time_seconds: boot + ticks(19)? / TICKS,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        let m = Metrics::new();
        m.flow("A", "B").set_running(true);
        let (status, ty, body) = route(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", &m);
        assert_eq!(status, "200 OK");
        assert!(ty.starts_with("application/openmetrics-text"));
        assert!(
            body.contains("strait_flow_running{source=\"A\",target=\"B\"} 1"),
            "{body}"
        );
        assert!(body.contains("process_resident_memory_bytes"), "{body}");
        assert!(body.ends_with("# EOF\n"));
        assert_eq!(route(b"GET /readyz HTTP/1.1\r\n\r\n", &m).0, "200 OK");
        assert_eq!(route(b"GET /healthz?x=1 HTTP/1.0\r\n\r\n", &m).0, "200 OK");
        assert_eq!(
            route(b"POST /metrics HTTP/1.1\r\n\r\n", &m).0,
            "405 Method Not Allowed"
        );
        assert_eq!(route(b"GET /nope HTTP/1.1\r\n\r\n", &m).0, "404 Not Found");
        assert_eq!(route(b"\xff\xfe", &m).0, "405 Method Not Allowed");
        m.flow("A", "C");
        assert_eq!(
            route(b"GET /readyz HTTP/1.1\r\n\r\n", &m).0,
            "503 Service Unavailable"
        );
    }
}
