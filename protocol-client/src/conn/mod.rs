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
//! Setup ([`Connection::connect`]): TCP (`TCP_NODELAY`, optional socket buffer sizes), then the
//! TLS handshake if configured, then ApiVersions, then SASL if configured ([`auth`]: SaslHandshake
//! and SaslAuthenticate, and KIP-368 re-authentication before the session the broker granted
//! expires; while it runs, other requests wait in the queue so nothing is interleaved with the
//! SASL exchange). Security failures (an untrusted certificate, a wrong password, ...) are
//! [`ConnError::Tls`] / [`ConnError::Auth`]: not transport errors, so they are never retried.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest};
use kafka_protocol::protocol::{Request, StrBytes};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, warn};

use crate::bufpool;
use crate::codec::{
    self, decode_frame, decode_response, encode_request, ApiVersionTable, BufChain, CodecError,
    ResponseFrame,
};
use crate::security::sasl::SaslConfig;
use crate::security::tls::{self, TlsConnector, TlsFailure};

pub mod auth;

pub use auth::AuthFailure;

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
    /// TLS, if the listener speaks it (`SSL`, `SASL_SSL`).
    pub tls: Option<TlsConnector>,
    /// SASL, if the listener requires it (`SASL_PLAINTEXT`, `SASL_SSL`).
    pub sasl: Option<SaslConfig>,
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
            tls: None,
            sasl: None,
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
    /// TLS failed in a way only a configuration change can fix.
    #[error("TLS with {broker}: {failure}")]
    Tls {
        /// Broker address.
        broker: String,
        /// What went wrong.
        failure: TlsFailure,
    },
    /// SASL authentication failed.
    #[error("SASL {mechanism} authentication with {broker} failed: {failure}")]
    Auth {
        /// Broker address.
        broker: String,
        /// Mechanism used.
        mechanism: &'static str,
        /// What went wrong (boxed: keeps every `Result` of the client small).
        failure: Box<AuthFailure>,
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

    /// A short name of the failure, for counting.
    pub fn kind(&self) -> &'static str {
        match self {
            ConnError::Resolve { .. } => "resolve",
            ConnError::Connect { .. } => "connect",
            ConnError::ConnectTimeout { .. } => "connect_timeout",
            ConnError::Closed { .. } => "connection_closed",
            ConnError::Timeout { .. } => "request_timeout",
            ConnError::Codec { .. } => "codec",
            ConnError::ApiVersions { .. } => "api_versions",
            ConnError::Tls { .. } => "tls",
            ConnError::Auth { .. } => "sasl",
        }
    }

    /// Whether this is a TLS or authentication failure (a configuration problem: retrying or
    /// asking another broker of the same cluster will not help).
    pub fn is_security(&self) -> bool {
        match self {
            ConnError::Tls { failure, .. } => failure.is_configuration(),
            ConnError::Auth { .. } => true,
            _ => false,
        }
    }

    /// A copy of a security failure, to hand the same failure to several waiters; `None` for
    /// other kinds.
    pub fn clone_security(&self) -> Option<ConnError> {
        match self {
            ConnError::Tls { broker, failure } => Some(ConnError::Tls {
                broker: broker.clone(),
                failure: failure.clone(),
            }),
            ConnError::Auth {
                broker,
                mechanism,
                failure,
            } => Some(ConnError::Auth {
                broker: broker.clone(),
                mechanism,
                failure: failure.clone(),
            }),
            _ => None,
        }
    }
}

type BoxRead = Box<dyn AsyncRead + Send + Unpin>;
type BoxWrite = Box<dyn AsyncWrite + Send + Unpin>;

/// What the writer task sends.
enum Outgoing {
    /// A request frame.
    Frame(BufChain),
    /// From here on, send only the frames of this channel until it closes (a SASL
    /// re-authentication must not be interleaved with other requests).
    Exclusive(mpsc::UnboundedReceiver<BufChain>),
}

struct Pending {
    tx: oneshot::Sender<Result<Bytes, String>>,
}

#[derive(Default)]
struct State {
    next_correlation: i32,
    pending: HashMap<i32, Pending>,
    abandoned: HashSet<i32>,
    closed: Option<String>,
    /// A TLS-level cause of the failure, kept so setup can report it as [`ConnError::Tls`].
    tls_failure: Option<TlsFailure>,
    /// Responses received so far.
    answered: u64,
}

struct Shared {
    broker: String,
    /// Whether the transport is TLS (a plaintext connection sniffs for TLS answers).
    tls: bool,
    /// Whether the connection authenticated with SASL.
    sasl: bool,
    state: Mutex<State>,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave State inconsistent (only map inserts and
        // removes happen under it), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Closes the connection with `reason` and fails every in-flight request.
    fn fail_tls(&self, failure: TlsFailure) {
        let reason = failure.to_string();
        self.lock().tls_failure.get_or_insert(failure);
        self.fail_all(reason);
    }

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
    req: Requester,
    /// When SASL granted a session lifetime, the task that re-authenticates before it ends.
    reauth: Mutex<Option<AbortOnDrop>>,
    _reader: AbortOnDrop,
    _writer: AbortOnDrop,
}

/// The request-sending half of a connection (the connection itself, and its re-authentication
/// task, hold one each).
#[derive(Clone)]
struct Requester {
    shared: Arc<Shared>,
    tx: mpsc::UnboundedSender<Outgoing>,
    versions: ApiVersionTable,
    config: ConnConfig,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("broker", &self.req.shared.broker)
            .field("tls", &self.req.shared.tls)
            .field("closed", &self.req.shared.lock().closed)
            .finish()
    }
}

impl Connection {
    /// Connects to `broker` (`host:port`), runs the TLS handshake if configured, negotiates
    /// API versions and authenticates with SASL if configured.
    pub async fn connect(broker: &str, config: &ConnConfig) -> Result<Connection, ConnError> {
        match Connection::connect_once(broker, config).await {
            // Some brokers (tansu) hang up on a SaslHandshake for a mechanism they lack instead
            // of answering UNSUPPORTED_SASL_MECHANISM. Once may be a broker going away; twice in
            // a row on fresh connections that answered ApiVersions is the broker's answer.
            Err(ConnError::Auth { failure, .. })
                if matches!(*failure, AuthFailure::MechanismRefused) =>
            {
                debug!(
                    broker,
                    "connection closed at SaslHandshake; trying once more"
                );
                Connection::connect_once(broker, config).await
            }
            other => other,
        }
    }

    async fn connect_once(broker: &str, config: &ConnConfig) -> Result<Connection, ConnError> {
        let stream = tcp_connect(broker, config).await?;
        let mut conn = match &config.tls {
            None => {
                let (rd, wr) = stream.into_split();
                Connection::start_with(broker, Box::new(rd), Box::new(wr), config.clone(), false)
            }
            Some(tls) => {
                let host = host_of(broker);
                let handshake = tls.handshake(host, stream);
                let stream = match tokio::time::timeout(config.connect_timeout, handshake).await {
                    Ok(Ok(s)) => s,
                    Ok(Err(failure)) if failure.is_configuration() => {
                        warn!(broker, %failure, "TLS handshake failed");
                        return Err(ConnError::Tls {
                            broker: broker.to_string(),
                            failure,
                        });
                    }
                    // EOF, reset or silence: a plaintext listener (Java brokers hang up on a
                    // ClientHello, tansu waits for the rest of a 369 MB "frame"), or a broker
                    // going away. Ask the port for plaintext ApiVersions to tell which.
                    interrupted => {
                        let what = match interrupted {
                            Ok(Err(failure)) => failure.to_string(),
                            _ => format!("no TLS answer within {:?}", config.connect_timeout),
                        };
                        if probe_speaks_plaintext_kafka(broker, config).await {
                            return Err(ConnError::Tls {
                                broker: broker.to_string(),
                                failure: TlsFailure::NotTls(format!(
                                    "{what}; the port answers plaintext Kafka requests"
                                )),
                            });
                        }
                        return Err(ConnError::Closed {
                            broker: broker.to_string(),
                            reason: format!("TLS handshake: {what}"),
                        });
                    }
                };
                let (rd, wr) = tokio::io::split(stream);
                Connection::start_with(broker, Box::new(rd), Box::new(wr), config.clone(), true)
            }
        };
        conn.req.versions = match conn.req.negotiate_versions().await {
            Ok(v) => v,
            Err(e) => {
                // A plaintext connection hung up on before the first answer: many TLS
                // terminators reset a non-TLS client without a byte to recognise. Ask the
                // listener for a TLS handshake on a fresh connection to say so.
                if config.tls.is_none()
                    && matches!(e, ConnError::Closed { .. })
                    && conn.req.shared.lock().tls_failure.is_none()
                {
                    if let Ok(tcp) = tcp_connect(broker, config).await {
                        let probe = tls::probe_speaks_tls(host_of(broker), tcp);
                        if let Ok(true) = tokio::time::timeout(config.connect_timeout, probe).await
                        {
                            return Err(ConnError::Tls {
                                broker: broker.to_string(),
                                failure: TlsFailure::PlaintextToTls,
                            });
                        }
                    }
                }
                return Err(conn.req.setup_error(e, "ApiVersions"));
            }
        };
        if let Some(sasl) = &config.sasl {
            let lifetime = auth::authenticate(&conn.req, sasl)
                .await
                .map_err(|e| conn.req.setup_error(e, "SASL authentication"))?;
            if let Some(lifetime) = lifetime {
                let task = tokio::spawn(auth::reauthenticate_loop(
                    conn.req.clone(),
                    sasl.clone(),
                    lifetime,
                ));
                *conn.reauth.get_mut().unwrap_or_else(|p| p.into_inner()) = Some(AbortOnDrop(task));
            }
        }
        debug!(
            broker,
            tls = config.tls.is_some(),
            sasl = config.sasl.as_ref().map(|s| s.mechanism_name()),
            "connected"
        );
        Ok(conn)
    }

    /// Wraps an already-connected plaintext transport (tests use in-memory streams).
    pub fn start(broker: &str, rd: BoxRead, wr: BoxWrite, config: ConnConfig) -> Connection {
        Connection::start_with(broker, rd, wr, config, false)
    }

    fn start_with(
        broker: &str,
        rd: BoxRead,
        wr: BoxWrite,
        config: ConnConfig,
        tls: bool,
    ) -> Connection {
        let shared = Arc::new(Shared {
            broker: broker.to_string(),
            tls,
            sasl: config.sasl.is_some(),
            state: Mutex::new(State {
                next_correlation: 1,
                ..State::default()
            }),
        });
        let (tx, rx) = mpsc::unbounded_channel();
        let reader = tokio::spawn(read_loop(shared.clone(), rd, config.max_frame_bytes));
        let writer = tokio::spawn(write_loop(shared.clone(), wr, rx));
        Connection {
            req: Requester {
                shared,
                tx,
                versions: ApiVersionTable::default(),
                config,
            },
            reauth: Mutex::new(None),
            _reader: AbortOnDrop(reader),
            _writer: AbortOnDrop(writer),
        }
    }

    /// The broker this connection talks to.
    pub fn broker(&self) -> &str {
        &self.req.shared.broker
    }

    /// The broker's API versions.
    pub fn versions(&self) -> &ApiVersionTable {
        &self.req.versions
    }

    /// The highest version of `api` both sides support.
    pub fn version(&self, api: ApiKey) -> Result<i16, ConnError> {
        self.req.version(api)
    }

    /// Whether the connection has failed or been closed.
    pub fn is_closed(&self) -> bool {
        self.req.shared.lock().closed.is_some() || self.req.tx.is_closed()
    }

    /// Sends a request at the highest common version and waits for its response.
    pub async fn send<R: Request>(&self, request: &R) -> Result<R::Response, ConnError> {
        self.req.send(request).await
    }

    /// Sends a request at `version` and waits for its response.
    pub async fn send_versioned<R: Request>(
        &self,
        request: &R,
        version: i16,
    ) -> Result<R::Response, ConnError> {
        self.req.send_versioned(request, version).await
    }

    /// Sends a pre-encoded request (built by `encode` for the correlation id it is given) and
    /// returns the response after the correlation id. Used for zero-copy Produce requests.
    pub async fn roundtrip(
        &self,
        api: ApiKey,
        encode: impl FnOnce(i32) -> Result<BufChain, CodecError>,
    ) -> Result<Bytes, ConnError> {
        self.req.begin(api, encode)?.response().await
    }

    /// Queues a request on the connection now (synchronously: requests started one after
    /// another reach the socket in that order) and returns a handle to await its response.
    pub fn begin(
        &self,
        api: ApiKey,
        encode: impl FnOnce(i32) -> Result<BufChain, CodecError>,
    ) -> Result<InFlight, ConnError> {
        self.req.begin(api, encode)
    }
}

/// Whether `broker` answers a plaintext ApiVersions request (explains a TLS handshake that got
/// nowhere). Bounded by the connect timeout; never sends anything but ApiVersions.
async fn probe_speaks_plaintext_kafka(broker: &str, config: &ConnConfig) -> bool {
    let Ok(tcp) = tcp_connect(broker, config).await else {
        return false;
    };
    let (rd, wr) = tcp.into_split();
    let plain = ConnConfig {
        tls: None,
        sasl: None,
        ..config.clone()
    };
    let conn = Connection::start_with(broker, Box::new(rd), Box::new(wr), plain, false);
    matches!(
        tokio::time::timeout(config.connect_timeout, conn.req.negotiate_versions()).await,
        Ok(Ok(_))
    )
}

/// The host part of `host:port` (IPv6 literals in brackets lose them).
fn host_of(broker: &str) -> &str {
    let host = broker.rsplit_once(':').map_or(broker, |(h, _)| h);
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
}

impl Requester {
    /// Turns a failure during connection setup into the most telling error: a TLS cause seen
    /// by the reader, or a hint when the broker hung up on the very first request.
    fn setup_error(&self, e: ConnError, step: &str) -> ConnError {
        let broker = self.shared.broker.clone();
        if let Some(failure) = self.shared.lock().tls_failure.clone() {
            return ConnError::Tls { broker, failure };
        }
        match e {
            ConnError::Closed { reason, .. } => ConnError::Closed {
                broker,
                reason: format!(
                    "{reason} during {step}{}",
                    if self.shared.tls {
                        ""
                    } else {
                        " (if the listener uses TLS or SASL, set security.protocol to match)"
                    }
                ),
            },
            other => other,
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

    /// The highest version of `api` both sides support.
    fn version(&self, api: ApiKey) -> Result<i16, ConnError> {
        self.versions
            .pick(api)
            .map_err(|source| self.codec_err(source))
    }

    /// Sends a request at the highest common version and waits for its response.
    async fn send<R: Request>(&self, request: &R) -> Result<R::Response, ConnError> {
        let version = self.version(codec::header::api_key_of::<R>())?;
        self.send_versioned(request, version).await
    }

    /// Sends a request at `version` and waits for its response.
    async fn send_versioned<R: Request>(
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
    async fn roundtrip(
        &self,
        api: ApiKey,
        encode: impl FnOnce(i32) -> Result<BufChain, CodecError>,
    ) -> Result<Bytes, ConnError> {
        self.begin(api, encode)?.response().await
    }

    /// Queues a request on the connection now (synchronously: requests started one after
    /// another reach the socket in that order) and returns a handle to await its response.
    fn begin(
        &self,
        api: ApiKey,
        encode: impl FnOnce(i32) -> Result<BufChain, CodecError>,
    ) -> Result<InFlight, ConnError> {
        self.begin_on(api, encode, |frame| {
            self.tx.send(Outgoing::Frame(frame)).map_err(|_| ())
        })
    }

    /// Registers a request and hands its frame to `queue` while holding the state lock (so
    /// requests reach the socket in correlation order).
    fn begin_on(
        &self,
        api: ApiKey,
        encode: impl FnOnce(i32) -> Result<BufChain, CodecError>,
        queue: impl FnOnce(BufChain) -> Result<(), ()>,
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
        if queue(frame).is_err() {
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
        // Complete frames go to their callers. A large response (a fetch) that is not complete
        // yet is read straight into a pooled buffer of its size (its pages are reused rather
        // than faulted in anew, see `bufpool`), before `decode_frame` would reserve room for it
        // in `buf`, which would then keep that capacity for the connection's life.
        let large = loop {
            if let Ok(Some(len)) = codec::frame::announced_len(&buf, max_frame) {
                if len >= bufpool::MIN_POOLED && buf.len() < 4 + len {
                    break Some(len);
                }
            }
            match decode_frame(&mut buf, max_frame) {
                Ok(Some(frame)) => {
                    if let Err(reason) = dispatch(&shared, frame) {
                        warn!(broker = %shared.broker, %reason, "closing connection");
                        shared.fail_all(reason);
                        return;
                    }
                }
                Ok(None) => break None,
                Err(e) => {
                    if !shared.tls && tls::looks_like_tls_record(&buf) {
                        shared.fail_tls(TlsFailure::PlaintextToTls);
                        return;
                    }
                    warn!(broker = %shared.broker, error = %e, "bad frame, closing connection");
                    shared.fail_all(format!("bad frame: {e}"));
                    return;
                }
            }
        };
        if let Some(len) = large {
            buf.advance(4);
            let mut body = bufpool::GLOBAL.take(len);
            body.extend_from_slice(&buf);
            buf.clear();
            while body.len() < len {
                let want = len - body.len();
                let mut room = BufMut::limit(&mut body, want);
                match rd.read_buf(&mut room).await {
                    Ok(0) => {
                        let got = body.len();
                        shared.fail_all(format!(
                            "closed by the broker in the middle of a response ({got} of {len} bytes received)"
                        ));
                        return;
                    }
                    Ok(_) => {}
                    Err(e) => return read_failed(&shared, e),
                }
            }
            if let Err(reason) = dispatch(&shared, bufpool::GLOBAL.freeze(body)) {
                warn!(broker = %shared.broker, %reason, "closing connection");
                shared.fail_all(reason);
                return;
            }
            continue;
        }
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(64 * 1024);
        }
        match rd.read_buf(&mut buf).await {
            Ok(0) => {
                if !shared.tls && tls::looks_like_tls_record(&buf) {
                    shared.fail_tls(TlsFailure::PlaintextToTls);
                    return;
                }
                let answered = shared.lock().answered;
                let reason = if buf.is_empty() && answered == 1 && !shared.sasl {
                    // Brokers that require SASL answer ApiVersions, then hang up on anything
                    // but the SASL APIs.
                    "closed by the broker after ApiVersions, before answering anything else (if the listener requires SASL, set security.protocol to SASL_PLAINTEXT or SASL_SSL)".to_string()
                } else if buf.is_empty() {
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
            Err(e) => return read_failed(&shared, e),
        }
    }
}

fn read_failed(shared: &Shared, e: std::io::Error) {
    if shared.tls {
        // E.g. a mutual-TLS refusal, which TLS 1.3 delivers after the handshake.
        let failure = tls::classify_io(&e);
        if failure.is_configuration() {
            shared.fail_tls(failure);
            return;
        }
    }
    shared.fail_all(format!("read error: {e}"));
}

fn dispatch(shared: &Shared, frame: Bytes) -> Result<(), String> {
    let frame = ResponseFrame::parse(frame).map_err(|e| e.to_string())?;
    let mut st = shared.lock();
    st.answered += 1;
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
    mut rx: mpsc::UnboundedReceiver<Outgoing>,
) {
    const COALESCE_BYTES: usize = 4 * 1024 * 1024;
    let mut next = rx.recv().await;
    while let Some(item) = next.take() {
        // Nothing more is written once the connection failed (e.g. a failed re-authentication
        // whose exclusive section ended): every waiter has been told already.
        if shared.lock().closed.is_some() {
            break;
        }
        match item {
            Outgoing::Frame(mut chain) => {
                // Coalesce what is queued behind it, up to an exclusive section.
                while chain.remaining() < COALESCE_BYTES {
                    match rx.try_recv() {
                        Ok(Outgoing::Frame(more)) => chain.append(more),
                        Ok(exclusive) => {
                            next = Some(exclusive);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                if let Err(e) = wr.write_all_buf(&mut chain).await {
                    shared.fail_all(format!("write error: {e}"));
                    return;
                }
            }
            Outgoing::Exclusive(mut only) => {
                while let Some(mut chain) = only.recv().await {
                    if let Err(e) = wr.write_all_buf(&mut chain).await {
                        shared.fail_all(format!("write error: {e}"));
                        return;
                    }
                }
            }
        }
        if next.is_none() {
            next = rx.recv().await;
        }
    }
    let _ = wr.shutdown().await;
}

#[cfg(test)]
mod tests;
