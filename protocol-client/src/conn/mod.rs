//! One connection to one broker.
//!
//! Many requests are in flight at once, matched to responses by correlation id. A writer task
//! owns the socket's write half and sends queued requests in order, coalescing what is queued
//! into one vectored write (record batches go from their `Bytes` to the socket without a copy);
//! a reader task owns the read half, cuts frames ([`crate::codec::decode_frame`]) and hands each
//! response to its waiting caller, which decodes it on its own task.
//!
//! Failure rules: a read, write or framing error fails every in-flight request and closes the
//! connection; a response with a correlation id that was never issued is a protocol error (same
//! treatment); a caller that gives up (dropped future or request timeout) removes its slot, and the
//! late response is discarded when it arrives.
//!
//! The transport is TCP (`TCP_NODELAY`, optional socket buffer sizes); TLS and SASL slot in at
//! [`Connection::connect`] between the TCP connect and the ApiVersions exchange.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest};
use kafka_protocol::protocol::{Request, StrBytes};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, warn};

use crate::codec::{
    self, decode_frame, decode_response, encode_request, ApiVersionTable, BufChain, CodecError,
    ResponseFrame,
};

/// How many abandoned (timed out or cancelled) requests a connection tolerates before it is
/// considered broken and closed.
const MAX_ABANDONED: usize = 1024;

/// Kafka's `UNSUPPORTED_VERSION` error code.
const UNSUPPORTED_VERSION: i16 = 35;

/// Settings of one connection.
#[derive(Clone, Debug)]
pub struct ConnConfig {
    /// Client id sent in every request header.
    pub client_id: String,
    /// How long to wait for the TCP connect.
    pub connect_timeout: Duration,
    /// How long a request may wait for its response.
    pub request_timeout: Duration,
    /// Largest response frame accepted.
    pub max_frame_bytes: usize,
    /// `SO_SNDBUF`, if set.
    pub send_buffer_bytes: Option<u32>,
    /// `SO_RCVBUF`, if set.
    pub receive_buffer_bytes: Option<u32>,
}

impl Default for ConnConfig {
    fn default() -> ConnConfig {
        ConnConfig {
            client_id: "strait".into(),
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            max_frame_bytes: codec::DEFAULT_MAX_FRAME_BYTES,
            send_buffer_bytes: None,
            receive_buffer_bytes: None,
        }
    }
}

/// Errors of one connection.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    /// Name resolution failed.
    #[error("resolving {broker}: {source}")]
    Resolve {
        /// Broker address.
        broker: String,
        /// Cause.
        source: std::io::Error,
    },
    /// TCP connect failed.
    #[error("connecting to {broker}: {source}")]
    Connect {
        /// Broker address.
        broker: String,
        /// Cause.
        source: std::io::Error,
    },
    /// TCP connect took too long.
    #[error("connecting to {broker}: timed out after {after:?}")]
    ConnectTimeout {
        /// Broker address.
        broker: String,
        /// Timeout.
        after: Duration,
    },
    /// The connection is closed; the reason is the first failure seen on it.
    #[error("connection to {broker} closed: {reason}")]
    Closed {
        /// Broker address.
        broker: String,
        /// Why.
        reason: String,
    },
    /// No response within the request timeout.
    #[error("{api:?} request to {broker} timed out after {after:?}")]
    Timeout {
        /// Broker address.
        broker: String,
        /// API.
        api: ApiKey,
        /// Timeout.
        after: Duration,
    },
    /// A request could not be encoded or its response decoded.
    #[error("{broker}: {source}")]
    Codec {
        /// Broker address.
        broker: String,
        /// Cause.
        source: CodecError,
    },
    /// ApiVersions failed.
    #[error("ApiVersions with {broker} failed with error code {code}")]
    ApiVersions {
        /// Broker address.
        broker: String,
        /// Kafka error code.
        code: i16,
    },
}

impl ConnError {
    /// Whether a new connection might succeed where this one failed.
    pub fn is_transport(&self) -> bool {
        matches!(
            self,
            ConnError::Resolve { .. }
                | ConnError::Connect { .. }
                | ConnError::ConnectTimeout { .. }
                | ConnError::Closed { .. }
                | ConnError::Timeout { .. }
        )
    }
}

type BoxRead = Box<dyn AsyncRead + Send + Unpin>;
type BoxWrite = Box<dyn AsyncWrite + Send + Unpin>;

struct Pending {
    tx: oneshot::Sender<Result<Bytes, String>>,
}

#[derive(Default)]
struct State {
    next_correlation: i32,
    pending: HashMap<i32, Pending>,
    abandoned: HashSet<i32>,
    closed: Option<String>,
}

struct Shared {
    broker: String,
    state: Mutex<State>,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave State inconsistent (only map inserts and
        // removes happen under it), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Closes the connection with `reason` and fails every in-flight request.
    fn fail_all(&self, reason: String) {
        let pending = {
            let mut st = self.lock();
            if st.closed.is_none() {
                st.closed = Some(reason.clone());
            }
            st.abandoned.clear();
            std::mem::take(&mut st.pending)
        };
        if !pending.is_empty() {
            debug!(broker = %self.broker, in_flight = pending.len(), %reason, "connection failed");
        }
        for (_, p) in pending {
            let _ = p.tx.send(Err(reason.clone()));
        }
    }
}

/// Removes a request's slot if its caller goes away before the response.
struct SlotGuard {
    shared: Arc<Shared>,
    correlation_id: i32,
    armed: bool,
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let close = {
            let mut st = self.shared.lock();
            if st.pending.remove(&self.correlation_id).is_some() && st.closed.is_none() {
                st.abandoned.insert(self.correlation_id);
            }
            st.abandoned.len() > MAX_ABANDONED
        };
        if close {
            self.shared
                .fail_all(format!("more than {MAX_ABANDONED} requests abandoned"));
        }
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);
impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A live connection to one broker. Cheap to share behind an `Arc`; dropping the last handle
/// closes it.
pub struct Connection {
    shared: Arc<Shared>,
    tx: mpsc::UnboundedSender<BufChain>,
    versions: ApiVersionTable,
    config: ConnConfig,
    _reader: AbortOnDrop,
    _writer: AbortOnDrop,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("broker", &self.shared.broker)
            .field("closed", &self.shared.lock().closed)
            .finish()
    }
}

impl Connection {
    /// Connects to `broker` (`host:port`) and negotiates API versions.
    pub async fn connect(broker: &str, config: &ConnConfig) -> Result<Connection, ConnError> {
        let stream = tcp_connect(broker, config).await?;
        let (rd, wr) = stream.into_split();
        let mut conn = Connection::start(broker, Box::new(rd), Box::new(wr), config.clone());
        // TLS and SASL hook in here (security issue): the transport above is swapped for a TLS
        // stream, and SASL runs after ApiVersions below.
        conn.versions = conn.negotiate_versions().await?;
        Ok(conn)
    }

    /// Wraps an already-connected transport (tests use in-memory streams).
    pub fn start(broker: &str, rd: BoxRead, wr: BoxWrite, config: ConnConfig) -> Connection {
        let shared = Arc::new(Shared {
            broker: broker.to_string(),
            state: Mutex::new(State {
                next_correlation: 1,
                ..State::default()
            }),
        });
        let (tx, rx) = mpsc::unbounded_channel();
        let reader = tokio::spawn(read_loop(shared.clone(), rd, config.max_frame_bytes));
        let writer = tokio::spawn(write_loop(shared.clone(), wr, rx));
        Connection {
            shared,
            tx,
            versions: ApiVersionTable::default(),
            config,
            _reader: AbortOnDrop(reader),
            _writer: AbortOnDrop(writer),
        }
    }

    async fn negotiate_versions(&self) -> Result<ApiVersionTable, ConnError> {
        let req = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("strait"))
            .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")));
        let mut version = codec::Supported::range(ApiKey::ApiVersions).1;
        let client_id = &self.config.client_id;
        for _ in 0..2 {
            let rest = self
                .roundtrip(ApiKey::ApiVersions, |corr| {
                    encode_request(corr, client_id, version, &req).map(BufChain::from)
                })
                .await?;
            // ApiVersions responses always use header v0, and the error code is the first field
            // of every version. A broker that does not know `version` answers
            // UNSUPPORTED_VERSION, per KIP-511 with a v0 body listing its ranges; some
            // implementations send something else (librdkafka's mock writes a body no version
            // parses). So: take the broker's ApiVersions range from a v0 body if there is one,
            // else retry at v0, as Java's client does.
            let code = if rest.len() >= 2 {
                i16::from_be_bytes([rest[0], rest[1]])
            } else {
                0
            };
            if code == UNSUPPORTED_VERSION {
                let fallback = decode_response::<ApiVersionsRequest>(rest, 0)
                    .map(|r| ApiVersionTable::api_versions_fallback(&r))
                    .unwrap_or(0);
                debug!(broker = %self.shared.broker, version, fallback, "ApiVersions version not supported, retrying");
                if fallback >= version {
                    break;
                }
                version = fallback;
                continue;
            }
            let resp = decode_response::<ApiVersionsRequest>(rest, version)
                .map_err(|source| self.codec_err(source))?;
            if resp.error_code != 0 {
                return Err(ConnError::ApiVersions {
                    broker: self.shared.broker.clone(),
                    code: resp.error_code,
                });
            }
            return Ok(ApiVersionTable::from_response(&resp));
        }
        Err(ConnError::ApiVersions {
            broker: self.shared.broker.clone(),
            code: UNSUPPORTED_VERSION,
        })
    }

    /// The broker this connection talks to.
    pub fn broker(&self) -> &str {
        &self.shared.broker
    }

    /// The broker's API versions.
    pub fn versions(&self) -> &ApiVersionTable {
        &self.versions
    }

    /// The highest version of `api` both sides support.
    pub fn version(&self, api: ApiKey) -> Result<i16, ConnError> {
        self.versions
            .pick(api)
            .map_err(|source| self.codec_err(source))
    }

    /// Whether the connection has failed or been closed.
    pub fn is_closed(&self) -> bool {
        self.shared.lock().closed.is_some() || self.tx.is_closed()
    }

    /// Sends a request at the highest common version and waits for its response.
    pub async fn send<R: Request>(&self, request: &R) -> Result<R::Response, ConnError> {
        let version = self.version(codec::header::api_key_of::<R>())?;
        self.send_versioned(request, version).await
    }

    /// Sends a request at `version` and waits for its response.
    pub async fn send_versioned<R: Request>(
        &self,
        request: &R,
        version: i16,
    ) -> Result<R::Response, ConnError> {
        let api = codec::header::api_key_of::<R>();
        let client_id = &self.config.client_id;
        let rest = self
            .roundtrip(api, |corr| {
                encode_request(corr, client_id, version, request).map(BufChain::from)
            })
            .await?;
        decode_response::<R>(rest, version).map_err(|source| self.codec_err(source))
    }

    /// Sends a pre-encoded request (built by `encode` for the correlation id it is given) and
    /// returns the response after the correlation id. Used for zero-copy Produce requests.
    pub async fn roundtrip(
        &self,
        api: ApiKey,
        encode: impl FnOnce(i32) -> Result<BufChain, CodecError>,
    ) -> Result<Bytes, ConnError> {
        self.begin(api, encode)?.response().await
    }

    /// Queues a request on the connection now (synchronously: requests started one after
    /// another reach the socket in that order) and returns a handle to await its response.
    pub fn begin(
        &self,
        api: ApiKey,
        encode: impl FnOnce(i32) -> Result<BufChain, CodecError>,
    ) -> Result<InFlight, ConnError> {
        let mut st = self.shared.lock();
        if let Some(reason) = &st.closed {
            return Err(self.closed_err(reason.clone()));
        }
        let corr = st.next_correlation;
        st.next_correlation = st.next_correlation.checked_add(1).unwrap_or(1);
        let frame = encode(corr).map_err(|source| self.codec_err(source))?;
        let (tx, rx) = oneshot::channel();
        st.pending.insert(corr, Pending { tx });
        // Queue while holding the lock so requests reach the socket in correlation order.
        if self.tx.send(frame).is_err() {
            st.pending.remove(&corr);
            return Err(self.closed_err("writer stopped".into()));
        }
        Ok(InFlight {
            rx,
            guard: SlotGuard {
                shared: self.shared.clone(),
                correlation_id: corr,
                armed: true,
            },
            api,
            timeout: self.config.request_timeout,
        })
    }

    fn codec_err(&self, source: CodecError) -> ConnError {
        ConnError::Codec {
            broker: self.shared.broker.clone(),
            source,
        }
    }

    fn closed_err(&self, reason: String) -> ConnError {
        ConnError::Closed {
            broker: self.shared.broker.clone(),
            reason,
        }
    }
}

/// A request on the wire; [`InFlight::response`] waits for its answer (dropping it abandons
/// the request and frees its slot).
pub struct InFlight {
    rx: oneshot::Receiver<Result<Bytes, String>>,
    guard: SlotGuard,
    api: ApiKey,
    timeout: Duration,
}

impl std::fmt::Debug for InFlight {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InFlight")
            .field("api", &self.api)
            .field("correlation_id", &self.guard.correlation_id)
            .finish()
    }
}

impl InFlight {
    /// Waits for the response (after the correlation id), up to the request timeout.
    pub async fn response(mut self) -> Result<Bytes, ConnError> {
        let broker = || self.guard.shared.broker.clone();
        let result = tokio::time::timeout(self.timeout, &mut self.rx).await;
        match result {
            Err(_) => Err(ConnError::Timeout {
                broker: broker(),
                api: self.api,
                after: self.timeout,
            }),
            Ok(Err(_)) => {
                self.guard.armed = false;
                Err(ConnError::Closed {
                    broker: broker(),
                    reason: "connection dropped".into(),
                })
            }
            Ok(Ok(Err(reason))) => {
                self.guard.armed = false;
                Err(ConnError::Closed {
                    broker: broker(),
                    reason,
                })
            }
            Ok(Ok(Ok(rest))) => {
                self.guard.armed = false;
                Ok(rest)
            }
        }
    }
}

async fn tcp_connect(
    broker: &str,
    config: &ConnConfig,
) -> Result<tokio::net::TcpStream, ConnError> {
    let addrs: Vec<_> = tokio::net::lookup_host(broker)
        .await
        .map_err(|source| ConnError::Resolve {
            broker: broker.to_string(),
            source,
        })?
        .collect();
    let mut last = None;
    for addr in addrs {
        let socket = if addr.is_ipv4() {
            tokio::net::TcpSocket::new_v4()
        } else {
            tokio::net::TcpSocket::new_v6()
        };
        let socket = socket.map_err(|source| ConnError::Connect {
            broker: broker.to_string(),
            source,
        })?;
        if let Some(n) = config.send_buffer_bytes {
            let _ = socket.set_send_buffer_size(n);
        }
        if let Some(n) = config.receive_buffer_bytes {
            let _ = socket.set_recv_buffer_size(n);
        }
        match tokio::time::timeout(config.connect_timeout, socket.connect(addr)).await {
            Ok(Ok(stream)) => {
                stream
                    .set_nodelay(true)
                    .map_err(|source| ConnError::Connect {
                        broker: broker.to_string(),
                        source,
                    })?;
                return Ok(stream);
            }
            Ok(Err(source)) => {
                last = Some(ConnError::Connect {
                    broker: broker.to_string(),
                    source,
                })
            }
            Err(_) => {
                last = Some(ConnError::ConnectTimeout {
                    broker: broker.to_string(),
                    after: config.connect_timeout,
                })
            }
        }
    }
    Err(last.unwrap_or_else(|| ConnError::Resolve {
        broker: broker.to_string(),
        source: std::io::Error::new(std::io::ErrorKind::NotFound, "no addresses"),
    }))
}

async fn read_loop(shared: Arc<Shared>, mut rd: BoxRead, max_frame: usize) {
    let mut buf = BytesMut::with_capacity(64 * 1024);
    loop {
        loop {
            match decode_frame(&mut buf, max_frame) {
                Ok(Some(frame)) => {
                    if let Err(reason) = dispatch(&shared, frame) {
                        warn!(broker = %shared.broker, %reason, "closing connection");
                        shared.fail_all(reason);
                        return;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    warn!(broker = %shared.broker, error = %e, "bad frame, closing connection");
                    shared.fail_all(format!("bad frame: {e}"));
                    return;
                }
            }
        }
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(64 * 1024);
        }
        match rd.read_buf(&mut buf).await {
            Ok(0) => {
                let reason = if buf.is_empty() {
                    "closed by the broker".to_string()
                } else {
                    format!(
                        "closed by the broker in the middle of a response ({} bytes buffered)",
                        buf.len()
                    )
                };
                shared.fail_all(reason);
                return;
            }
            Ok(_) => {}
            Err(e) => {
                shared.fail_all(format!("read error: {e}"));
                return;
            }
        }
    }
}

fn dispatch(shared: &Shared, frame: Bytes) -> Result<(), String> {
    let frame = ResponseFrame::parse(frame).map_err(|e| e.to_string())?;
    let mut st = shared.lock();
    match st.pending.remove(&frame.correlation_id) {
        Some(p) => {
            drop(st);
            // The caller may have given up in the meantime; then the response is dropped.
            let _ = p.tx.send(Ok(frame.rest));
            Ok(())
        }
        None if st.abandoned.remove(&frame.correlation_id) => Ok(()),
        None => Err(format!(
            "response with unknown correlation id {}",
            frame.correlation_id
        )),
    }
}

async fn write_loop(
    shared: Arc<Shared>,
    mut wr: BoxWrite,
    mut rx: mpsc::UnboundedReceiver<BufChain>,
) {
    const COALESCE_BYTES: usize = 4 * 1024 * 1024;
    while let Some(mut chain) = rx.recv().await {
        while chain.remaining() < COALESCE_BYTES {
            match rx.try_recv() {
                Ok(more) => chain.append(more),
                Err(_) => break,
            }
        }
        if let Err(e) = wr.write_all_buf(&mut chain).await {
            shared.fail_all(format!("write error: {e}"));
            return;
        }
    }
    let _ = wr.shutdown().await;
}

#[cfg(test)]
mod tests;
