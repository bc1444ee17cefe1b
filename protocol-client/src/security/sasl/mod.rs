//! SASL mechanisms, client side, as sans-IO state machines.
//!
//! A [`SaslConfig`] names a mechanism and its credentials; [`SaslConfig::start`] begins one
//! exchange, which the connection layer drives: it sends [`Mechanism::initial`] in the first
//! SaslAuthenticate request, passes every server answer to [`Mechanism::step`], sends what that
//! returns, and stops when it returns `Ok(None)` (the exchange is complete *and* the server's
//! part verified). Kafka wraps each message in SaslAuthenticate (KIP-152), after a SaslHandshake
//! v1 that names the mechanism.
//!
//! Mechanisms: SCRAM-SHA-256 / SCRAM-SHA-512 (RFC 5802, RFC 7677; Kafka `ScramSaslClient`),
//! PLAIN (RFC 4616; `PlainSaslClient`), OAUTHBEARER (RFC 7628; `OAuthBearerSaslClient`) with a
//! static token, a token file re-read at each authentication, or an unsecured JWT built like
//! Kafka's `OAuthBearerUnsecuredLoginCallbackHandler`.

use std::fmt;

mod oauthbearer;
mod plain;
pub(crate) mod scram;

pub use oauthbearer::OAuthBearer;
pub use plain::Plain;
pub use scram::{
    Scram, MAX_ITERATIONS as SCRAM_MAX_ITERATIONS, MIN_ITERATIONS as SCRAM_MIN_ITERATIONS,
};

/// Errors of a SASL exchange.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SaslError {
    /// The server refused the credentials. `reason` is the server's word for it, e.g. SCRAM's
    /// `e=` attribute (`invalid-proof`, `unknown-user`) or an OAUTHBEARER error status.
    #[error("the server rejected the credentials: {reason}")]
    Rejected {
        /// The server's reason.
        reason: String,
    },
    /// The server's final SCRAM message carried a signature that does not prove it knows the
    /// password (a man in the middle, or a server with other credentials).
    #[error("the server's SCRAM signature does not verify: the server does not know this user's credentials")]
    ServerSignature,
    /// A server message that does not follow the mechanism's grammar.
    #[error("malformed {mechanism} server message: {detail}")]
    Protocol {
        /// Mechanism name.
        mechanism: &'static str,
        /// What was wrong (never includes secrets).
        detail: String,
    },
    /// The local credentials cannot be used (e.g. a token file that cannot be read, a username
    /// that SASLprep rejects).
    #[error("SASL credentials: {0}")]
    Credentials(String),
}

/// One client-side SASL exchange.
pub trait Mechanism: Send + fmt::Debug {
    /// The mechanism's name as Kafka spells it (`SCRAM-SHA-512`, `PLAIN`, `OAUTHBEARER`).
    fn name(&self) -> &'static str;
    /// The client's first message.
    fn initial(&mut self) -> Result<Vec<u8>, SaslError>;
    /// Handles the server's next message: `Ok(Some(bytes))` is the client's next message,
    /// `Ok(None)` means the exchange completed and verified.
    fn step(&mut self, server: &[u8]) -> Result<Option<Vec<u8>>, SaslError>;
}

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::SystemTime;

use super::Secret;

/// The hash function of a SCRAM mechanism.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScramHash {
    /// SCRAM-SHA-256 (RFC 7677).
    Sha256,
    /// SCRAM-SHA-512.
    Sha512,
}

/// Where an OAUTHBEARER token comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenSource {
    /// A fixed token (Strimzi's `accessToken`, JAAS option `oauth.access.token`).
    Static(Secret),
    /// A file holding the token, read again at every (re-)authentication
    /// (`sasl.oauthbearer.token.endpoint.url=file:…`, Kafka's `FileTokenRetriever`).
    File(PathBuf),
    /// An unsecured JWT (`alg: none`) made from JAAS options, like Kafka's
    /// `OAuthBearerUnsecuredLoginCallbackHandler` (`unsecuredLoginStringClaim_sub="alice"`, …).
    /// The map holds the `unsecuredLogin*` options verbatim.
    Unsecured(BTreeMap<String, String>),
}

/// A SASL mechanism with its credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SaslConfig {
    /// PLAIN: username and password in the clear (use it over TLS only).
    Plain {
        /// Authentication identity.
        username: String,
        /// Password.
        password: Secret,
    },
    /// SCRAM-SHA-256 or SCRAM-SHA-512.
    Scram {
        /// Hash function.
        hash: ScramHash,
        /// User name.
        username: String,
        /// Password.
        password: Secret,
    },
    /// OAUTHBEARER.
    OAuthBearer {
        /// The token.
        token: TokenSource,
        /// SASL extensions sent with the token (`unsecuredLoginExtension_<name>` options).
        extensions: BTreeMap<String, String>,
    },
}

impl SaslConfig {
    /// The mechanism's name as the SaslHandshake request spells it (`PLAIN`, `SCRAM-SHA-256`,
    /// `SCRAM-SHA-512`, `OAUTHBEARER`).
    pub fn mechanism_name(&self) -> &'static str {
        match self {
            SaslConfig::Plain { .. } => "PLAIN",
            SaslConfig::Scram { hash, .. } => hash.mechanism_name(),
            SaslConfig::OAuthBearer { .. } => "OAUTHBEARER",
        }
    }

    /// Begins one exchange (an authentication or a KIP-368 re-authentication).
    ///
    /// SCRAM draws a fresh nonce from the system random number generator; OAUTHBEARER reads a
    /// token file now (so every re-authentication sees a rotated token) or issues an unsecured
    /// JWT at `now`. Fails with [`SaslError::Credentials`] when the credentials cannot be used.
    pub fn start(&self, now: SystemTime) -> Result<Box<dyn Mechanism>, SaslError> {
        Ok(match self {
            SaslConfig::Plain { username, password } => {
                Box::new(Plain::new(username, password.clone())?)
            }
            SaslConfig::Scram {
                hash,
                username,
                password,
            } => Box::new(Scram::new(*hash, username, password.clone())?),
            SaslConfig::OAuthBearer { token, extensions } => {
                Box::new(OAuthBearer::from_source(token, extensions, now)?)
            }
        })
    }
}

/// Longest server-supplied text quoted in an error, in characters.
const MAX_SERVER_TEXT: usize = 200;

/// Server-supplied bytes made fit for an error message: decoded as UTF-8 (lossily), control
/// characters escaped, cut at [`MAX_SERVER_TEXT`] characters of output (marked with `…`).
fn server_text(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut out = String::new();
    let mut count = 0;
    for c in text.chars() {
        let len = if c.is_control() {
            c.escape_default().count()
        } else {
            1
        };
        if count + len > MAX_SERVER_TEXT {
            out.push('…');
            break;
        }
        count += len;
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mechanism_names() {
        let scram = |hash| SaslConfig::Scram {
            hash,
            username: "u".into(),
            password: Secret::new("p"),
        };
        let cases = [
            (
                SaslConfig::Plain {
                    username: "u".into(),
                    password: Secret::new("p"),
                },
                "PLAIN",
            ),
            (scram(ScramHash::Sha256), "SCRAM-SHA-256"),
            (scram(ScramHash::Sha512), "SCRAM-SHA-512"),
            (
                SaslConfig::OAuthBearer {
                    token: TokenSource::Static(Secret::new("t")),
                    extensions: BTreeMap::new(),
                },
                "OAUTHBEARER",
            ),
        ];
        for (config, name) in cases {
            assert_eq!(config.mechanism_name(), name);
            let mut mechanism = config.start(SystemTime::now()).unwrap();
            assert_eq!(mechanism.name(), name);
            let first = mechanism.initial().unwrap();
            assert!(!first.is_empty());
        }
    }

    #[test]
    fn start_reports_unusable_credentials() {
        let config = SaslConfig::Scram {
            hash: ScramHash::Sha256,
            username: String::new(),
            password: Secret::new("p"),
        };
        assert!(matches!(
            config.start(SystemTime::now()),
            Err(SaslError::Credentials(_))
        ));
        let config = SaslConfig::OAuthBearer {
            token: TokenSource::File(PathBuf::from("/nonexistent/strait/token")),
            extensions: BTreeMap::new(),
        };
        match config.start(SystemTime::now()) {
            Err(SaslError::Credentials(detail)) => {
                assert!(detail.contains("/nonexistent/strait/token"), "{detail}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn each_start_is_a_fresh_exchange() {
        let config = SaslConfig::Scram {
            hash: ScramHash::Sha512,
            username: "u".into(),
            password: Secret::new("p"),
        };
        let a = config.start(SystemTime::now()).unwrap().initial().unwrap();
        let b = config.start(SystemTime::now()).unwrap().initial().unwrap();
        assert_ne!(a, b, "a new nonce per exchange");
    }

    #[test]
    fn server_text_is_bounded_and_escaped() {
        assert_eq!(server_text(b"invalid-proof"), "invalid-proof");
        assert_eq!(server_text(b"a\nb\x1b\xff"), "a\\nb\\u{1b}\u{fffd}");
        assert_eq!(server_text(b"\xff"), "\u{fffd}");
        let long = server_text(&[b'x'; 1000]);
        assert_eq!(long.chars().count(), MAX_SERVER_TEXT + 1);
        assert!(long.ends_with('…'));
        let controls = server_text(&[0x10; 1000]);
        assert!(controls.chars().count() <= MAX_SERVER_TEXT + 1);
        assert!(controls.starts_with("\\u{10}") && controls.ends_with('…'));
    }
}
