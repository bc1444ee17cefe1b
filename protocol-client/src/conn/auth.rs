//! SASL over a Kafka connection: SaslHandshake v1 names the mechanism (KIP-43), then the
//! mechanism's messages travel in SaslAuthenticate requests (KIP-152) until the mechanism says
//! the exchange is complete and verified. Java's `SaslClientAuthenticator` is the model.
//!
//! A broker's error code is not the whole story: the mechanism checks the server's messages too
//! (SCRAM's server-final `e=` attribute and signature), so a broker that answers a wrong password
//! with error code 0 still fails the authentication here.
//!
//! KIP-368: when SaslAuthenticate v1+ returns a session lifetime, the connection authenticates
//! again at a random point between 85 % and 95 % of it (Java's choice), on the same connection.
//! The exchange runs in an exclusive section of the writer, so no other request is interleaved
//! between SaslHandshake and the last SaslAuthenticate; requests issued meanwhile wait in the
//! queue. A failed re-authentication closes the connection (the next connect reports why).

use std::time::{Duration, SystemTime};

use kafka_protocol::messages::{ApiKey, SaslAuthenticateRequest, SaslHandshakeRequest};
use kafka_protocol::protocol::{Request, StrBytes};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use super::{ConnError, Outgoing, Requester};
use crate::codec::{self, decode_response, encode_request, BufChain};
use crate::security::sasl::{SaslConfig, SaslError};

/// Kafka error codes of the SASL APIs.
const UNSUPPORTED_SASL_MECHANISM: i16 = 33;
const ILLEGAL_SASL_STATE: i16 = 34;
const SASL_AUTHENTICATION_FAILED: i16 = 58;

/// Most SaslAuthenticate round trips one exchange may take (SCRAM needs 2).
const MAX_ROUNDS: usize = 16;

/// Why SASL authentication failed.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthFailure {
    /// The listener does not offer SASL (no SaslHandshake v1 in its ApiVersions).
    #[error("the broker does not offer SASL on this listener (its ApiVersions has no SaslHandshake v1); check security.protocol")]
    NotOffered,
    /// The mechanism is not enabled on the broker.
    #[error("the mechanism is not enabled on the broker (it enables: {})", if enabled.is_empty() { "none".to_string() } else { enabled.join(", ") })]
    UnsupportedMechanism {
        /// Mechanisms the broker named.
        enabled: Vec<String>,
    },
    /// The broker closed the connection instead of answering SaslHandshake (some brokers do
    /// this for a mechanism they do not enable).
    #[error("the broker closed the connection when asked for this mechanism: it is most likely not enabled there (check sasl.mechanism)")]
    MechanismRefused,
    /// The user is known but the password is wrong.
    #[error("wrong password for user `{user}` (the server's answer: {server})")]
    WrongPassword {
        /// User name.
        user: String,
        /// The server's word for it (e.g. `invalid-proof`).
        server: String,
    },
    /// The broker does not know the user.
    #[error("unknown user `{user}` (the server's answer: {server})")]
    UnknownUser {
        /// User name.
        user: String,
        /// The server's word for it (e.g. `unknown-user`).
        server: String,
    },
    /// The broker refused the credentials (an error code, or a mechanism-level refusal).
    #[error("the broker refused the credentials: {0}")]
    Rejected(String),
    /// The server could not prove it knows the credentials (SCRAM server signature).
    #[error("{0}")]
    ServerNotVerified(String),
    /// The exchange did not follow the protocol.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The local credentials could not be used.
    #[error("{0}")]
    Credentials(String),
}

/// Authenticates a freshly set-up connection; returns the session lifetime the broker set, if
/// any.
pub(super) async fn authenticate(
    req: &Requester,
    sasl: &SaslConfig,
) -> Result<Option<Duration>, ConnError> {
    exchange(req, sasl, None).await
}

/// Re-authenticates before each session ends, until the connection goes away.
pub(super) async fn reauthenticate_loop(req: Requester, sasl: SaslConfig, mut lifetime: Duration) {
    loop {
        tokio::time::sleep(reauth_delay(lifetime)).await;
        if req.shared.lock().closed.is_some() {
            return;
        }
        let (tx, rx) = mpsc::unbounded_channel();
        if req.tx.send(Outgoing::Exclusive(rx)).is_err() {
            return;
        }
        let result = exchange(&req, &sasl, Some(&tx)).await;
        if let Err(e) = &result {
            // Fail the connection before the exclusive section ends, so nothing queued behind
            // it is written on a connection whose authentication failed.
            warn!(broker = %req.shared.broker, error = %e, "SASL re-authentication failed; closing the connection");
            req.shared
                .fail_all(format!("SASL re-authentication failed: {e}"));
        }
        drop(tx); // ends the exclusive section
        match result {
            Ok(Some(next)) => {
                debug!(broker = %req.shared.broker, lifetime_ms = next.as_millis() as u64, "re-authenticated");
                lifetime = next;
            }
            Ok(None) => return,
            Err(_) => return,
        }
    }
}

/// When to re-authenticate: a random point in [85 %, 95 %) of the session lifetime.
fn reauth_delay(lifetime: Duration) -> Duration {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let jitter = f64::from(nanos % 1000) / 1000.0;
    lifetime.mul_f64(0.85 + 0.10 * jitter)
}

/// One complete SASL exchange. With `via`, requests go through that exclusive channel
/// (re-authentication); otherwise through the connection's queue (setup, nothing else is in
/// flight yet).
async fn exchange(
    req: &Requester,
    sasl: &SaslConfig,
    via: Option<&mpsc::UnboundedSender<BufChain>>,
) -> Result<Option<Duration>, ConnError> {
    let mechanism_name = sasl.mechanism_name();
    let fail = |failure: AuthFailure| ConnError::Auth {
        broker: req.shared.broker.clone(),
        mechanism: mechanism_name,
        failure: Box::new(failure),
    };
    let handshake_version = match req.versions.broker_range(ApiKey::SaslHandshake) {
        Some((_, max)) if max >= 1 => 1,
        _ => return Err(fail(AuthFailure::NotOffered)),
    };
    let auth_version = match req.versions.broker_range(ApiKey::SaslAuthenticate) {
        Some((_, max)) => max.min(codec::Supported::range(ApiKey::SaslAuthenticate).1),
        None => return Err(fail(AuthFailure::NotOffered)),
    };

    let hs = match call(
        req,
        via,
        &SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str(mechanism_name)),
        handshake_version,
    )
    .await
    {
        Ok(hs) => hs,
        Err(ConnError::Closed { .. }) => return Err(fail(AuthFailure::MechanismRefused)),
        Err(e) => return Err(e),
    };
    match hs.error_code {
        0 => {}
        UNSUPPORTED_SASL_MECHANISM => {
            let enabled: Vec<String> = hs.mechanisms.iter().map(|m| m.to_string()).collect();
            // A listener that does not authenticate at all may refuse every mechanism while
            // echoing the one asked for (tansu without --authentication does).
            if enabled.iter().any(|m| m == mechanism_name) {
                return Err(fail(AuthFailure::Protocol(format!(
                    "SaslHandshake refused {mechanism_name} (UNSUPPORTED_SASL_MECHANISM) while listing it as enabled: this listener probably does not use SASL; check security.protocol"
                ))));
            }
            return Err(fail(AuthFailure::UnsupportedMechanism { enabled }));
        }
        code => {
            return Err(fail(AuthFailure::Protocol(format!(
                "SaslHandshake answered error code {code}{}",
                if code == ILLEGAL_SASL_STATE {
                    " (ILLEGAL_SASL_STATE)"
                } else {
                    ""
                }
            ))))
        }
    }

    let user = username(sasl);
    let from_mechanism = |e: SaslError| match e {
        SaslError::Rejected { reason } => match reason.as_str() {
            "invalid-proof" | "invalid-encoding" if user.is_some() => AuthFailure::WrongPassword {
                user: user.clone().unwrap_or_default(),
                server: reason,
            },
            "unknown-user" if user.is_some() => AuthFailure::UnknownUser {
                user: user.clone().unwrap_or_default(),
                server: reason,
            },
            _ => AuthFailure::Rejected(reason),
        },
        SaslError::ServerSignature => AuthFailure::ServerNotVerified(e.to_string()),
        SaslError::Protocol { .. } => AuthFailure::Protocol(e.to_string()),
        SaslError::Credentials(m) => AuthFailure::Credentials(m),
    };
    let mut mechanism = sasl
        .start(SystemTime::now())
        .map_err(|e| fail(from_mechanism(e)))?;
    let mut message = mechanism.initial().map_err(|e| fail(from_mechanism(e)))?;
    let mut lifetime = None;
    for _ in 0..MAX_ROUNDS {
        let resp = call(
            req,
            via,
            &SaslAuthenticateRequest::default().with_auth_bytes(message.into()),
            auth_version,
        )
        .await?;
        if resp.error_code != 0 {
            let detail = resp
                .error_message
                .as_ref()
                .map(|m| m.to_string())
                .unwrap_or_default();
            let failure = match resp.error_code {
                SASL_AUTHENTICATION_FAILED => AuthFailure::Rejected(if detail.is_empty() {
                    "SASL_AUTHENTICATION_FAILED".into()
                } else {
                    detail
                }),
                ILLEGAL_SASL_STATE => {
                    AuthFailure::Protocol(format!("ILLEGAL_SASL_STATE: {detail}"))
                }
                code => AuthFailure::Rejected(format!("error code {code}: {detail}")),
            };
            return Err(fail(failure));
        }
        if resp.session_lifetime_ms > 0 {
            lifetime = Some(Duration::from_millis(resp.session_lifetime_ms as u64));
        }
        match mechanism
            .step(&resp.auth_bytes)
            .map_err(|e| fail(from_mechanism(e)))?
        {
            Some(next) => message = next,
            None => {
                info!(broker = %req.shared.broker, mechanism = mechanism_name, user = user.as_deref().unwrap_or(""), session_lifetime_ms = lifetime.map(|l| l.as_millis() as u64), "SASL authenticated");
                return Ok(lifetime);
            }
        }
    }
    Err(fail(AuthFailure::Protocol(format!(
        "no result after {MAX_ROUNDS} SaslAuthenticate round trips"
    ))))
}

/// The user name of the credentials, if the mechanism has one (never the password).
fn username(sasl: &SaslConfig) -> Option<String> {
    match sasl {
        SaslConfig::Plain { username, .. } | SaslConfig::Scram { username, .. } => {
            Some(username.clone())
        }
        _ => None,
    }
}

/// Sends one typed request at `version`, through `via` if given.
async fn call<R: Request>(
    req: &Requester,
    via: Option<&mpsc::UnboundedSender<BufChain>>,
    request: &R,
    version: i16,
) -> Result<R::Response, ConnError> {
    let api = codec::header::api_key_of::<R>();
    let client_id = &req.config.client_id;
    let encode = |corr| encode_request(corr, client_id, version, request).map(BufChain::from);
    let in_flight = match via {
        None => req.begin(api, encode)?,
        Some(tx) => req.begin_on(api, encode, |frame| tx.send(frame).map_err(|_| ()))?,
    };
    let rest = in_flight.response().await?;
    decode_response::<R>(rest, version).map_err(|source| req.codec_err(source))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reauth_delay_is_within_85_to_95_percent() {
        for _ in 0..100 {
            let d = reauth_delay(Duration::from_secs(100));
            assert!(
                d >= Duration::from_secs(85) && d < Duration::from_secs(95),
                "{d:?}"
            );
        }
    }
}
