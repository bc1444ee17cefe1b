//! A minimal HTTP/1.0 client for the tests' REST calls (Strait's `/metrics` and probes,
//! Prometheus's query API, Kafka Connect's REST API): one request per connection.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// `s` with everything but unreserved characters percent-encoded (a path segment or a query
/// value).
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `method path` on 127.0.0.1:`port` with an optional JSON body: (status code, body), or
/// `None` when the server cannot be reached or answers something that is not HTTP.
pub fn request(port: u16, method: &str, path: &str, json: Option<&str>) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    let mut head = format!("{method} {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n");
    if let Some(body) = json {
        head.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).ok()?;
    if let Some(body) = json {
        s.write_all(body.as_bytes()).ok()?;
    }
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    let code = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((code, body.to_string()))
}

/// `GET path`.
pub fn get(port: u16, path: &str) -> Option<(u16, String)> {
    request(port, "GET", path, None)
}
