//! Transport security and authentication: TLS (rustls) and SASL.
//!
//! - [`tls`]: builds a rustls client configuration from PEM material (CA bundle or system roots,
//!   optional client certificate for mutual TLS, hostname verification that can be turned off)
//!   and names the failures a user can act on (untrusted certificate, hostname mismatch, expiry,
//!   a TLS client on a plaintext port).
//! - [`sasl`]: the client side of the SASL mechanisms Kafka brokers offer (SCRAM-SHA-256/512,
//!   PLAIN, OAUTHBEARER) as sans-IO state machines; the connection layer drives them over
//!   SaslHandshake + SaslAuthenticate (KIP-43, KIP-152) and re-authenticates (KIP-368).
//!
//! Secrets (passwords, private keys, tokens) are held in [`Secret`], whose `Debug` and `Display`
//! never show the value.

pub mod sasl;
pub mod tls;

use std::fmt;

/// A secret string: `Debug` and `Display` print `[redacted]`; read it with [`Secret::expose`].
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The secret value.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Secret {
        Secret(s)
    }
}

/// How a connection is secured: TLS on the wire and/or SASL authentication after ApiVersions.
#[derive(Clone, Debug, Default)]
pub struct Security {
    /// TLS (`SSL` / `SASL_SSL`), if used.
    pub tls: Option<tls::TlsConfig>,
    /// SASL (`SASL_PLAINTEXT` / `SASL_SSL`), if used.
    pub sasl: Option<sasl::SaslConfig>,
}
