//! TLS client side (rustls with the `ring` provider; pure Rust, so static musl builds need no
//! OpenSSL).
//!
//! [`TlsConfig`] is what a user configures (Kafka's `ssl.*` settings, already read into PEM
//! text): trust anchors (a PEM bundle or the system's roots), an optional client certificate
//! chain and key for mutual TLS, hostname verification (Kafka's
//! `ssl.endpoint.identification.algorithm=https`, on by default), protocol versions and cipher
//! suites. [`TlsConfig::build`] checks all of it once and gives a [`TlsConnector`] that every
//! connection of a cluster shares.
//!
//! Failures are sorted into [`TlsFailure`]s a user can act on: an untrusted certificate, a
//! hostname mismatch, an expired certificate, a client certificate the broker refused, a TLS
//! client talking to a plaintext listener (and, seen from the plaintext side, a plaintext client
//! talking to a TLS listener; see [`looks_like_tls_record`]).

use std::fmt;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::net::TcpStream;

use super::Secret;

/// The TLS stream a connection runs over.
pub type TlsStream = tokio_rustls::client::TlsStream<TcpStream>;

/// Which certificate authorities a client trusts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TrustAnchors {
    /// The operating system's CA store (rustls-native-certs: `SSL_CERT_FILE`, `SSL_CERT_DIR`,
    /// else the distribution's bundle).
    System,
    /// One or more PEM certificates (`ssl.truststore.certificates`, or a PEM truststore file's
    /// contents).
    Pem(String),
}

/// A client certificate chain and its private key, for mutual TLS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientIdentity {
    /// PEM certificate chain, leaf first.
    pub certificate_chain: String,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1), unencrypted.
    pub private_key: Secret,
}

/// TLS protocol versions (`ssl.enabled.protocols`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsVersion {
    /// TLS 1.2.
    V1_2,
    /// TLS 1.3.
    V1_3,
}

/// What a client's TLS looks like.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsConfig {
    /// Trusted authorities.
    pub trust: TrustAnchors,
    /// Client certificate for mutual TLS.
    pub identity: Option<ClientIdentity>,
    /// Check that the broker's certificate names the host connected to (Kafka's default).
    pub verify_hostname: bool,
    /// Allowed versions; empty means TLS 1.2 and 1.3.
    pub versions: Vec<TlsVersion>,
    /// Allowed cipher suites by IANA name (`TLS_AES_128_GCM_SHA256`,
    /// `TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384`, …); empty means rustls's defaults.
    pub cipher_suites: Vec<String>,
}

impl Default for TlsConfig {
    fn default() -> TlsConfig {
        TlsConfig {
            trust: TrustAnchors::System,
            identity: None,
            verify_hostname: true,
            versions: Vec::new(),
            cipher_suites: Vec::new(),
        }
    }
}

/// A TLS setting that cannot be used.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlsConfigError {
    /// The trusted certificates could not be read.
    #[error("trusted certificates: {0}")]
    Trust(String),
    /// The client certificate chain or key could not be read.
    #[error("client certificate: {0}")]
    Identity(String),
    /// A version or cipher-suite setting names nothing this build supports.
    #[error("{0}")]
    Unsupported(String),
}

/// Builds the connector; the rustls configuration is made once and shared by every connection.
impl TlsConfig {
    /// Checks the settings and makes the connector.
    pub fn build(&self) -> Result<TlsConnector, TlsConfigError> {
        let provider = provider(&self.cipher_suites)?;
        let versions: Vec<&'static rustls::SupportedProtocolVersion> = if self.versions.is_empty() {
            vec![&rustls::version::TLS13, &rustls::version::TLS12]
        } else {
            self.versions
                .iter()
                .map(|v| match v {
                    TlsVersion::V1_2 => &rustls::version::TLS12,
                    TlsVersion::V1_3 => &rustls::version::TLS13,
                })
                .collect()
        };
        let roots = Arc::new(self.root_store()?);
        let webpki = WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
            .build()
            .map_err(|e| TlsConfigError::Trust(e.to_string()))?;
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&versions)
            .map_err(|e| {
                TlsConfigError::Unsupported(format!(
                    "no cipher suite of ssl.cipher.suites works with the enabled TLS versions: {e}"
                ))
            })?;
        let builder = if self.verify_hostname {
            builder.with_webpki_verifier(webpki)
        } else {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoHostnameVerifier { inner: webpki }))
        };
        let config = match &self.identity {
            None => builder.with_no_client_auth(),
            Some(id) => {
                let (chain, key) = id.parse()?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| TlsConfigError::Identity(e.to_string()))?
            }
        };
        Ok(TlsConnector {
            inner: tokio_rustls::TlsConnector::from(Arc::new(config)),
            verify_hostname: self.verify_hostname,
        })
    }

    fn root_store(&self) -> Result<RootCertStore, TlsConfigError> {
        let mut store = RootCertStore::empty();
        match &self.trust {
            TrustAnchors::Pem(pem) => {
                let certs = parse_certs(pem).map_err(TlsConfigError::Trust)?;
                for c in certs {
                    store.add(c).map_err(|e| {
                        TlsConfigError::Trust(format!("a certificate is not a usable CA: {e}"))
                    })?;
                }
            }
            TrustAnchors::System => {
                let found = rustls_native_certs::load_native_certs();
                let (added, _ignored) = store.add_parsable_certificates(found.certs);
                if added == 0 {
                    let why = found
                        .errors
                        .first()
                        .map(|e| format!(" ({e})"))
                        .unwrap_or_default();
                    return Err(TlsConfigError::Trust(format!(
                        "no system CA certificates found{why}; set ssl.truststore.location or ssl.truststore.certificates"
                    )));
                }
            }
        }
        Ok(store)
    }
}

impl ClientIdentity {
    fn parse(
        &self,
    ) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsConfigError> {
        let chain = parse_certs(&self.certificate_chain).map_err(TlsConfigError::Identity)?;
        let pem = self.private_key.expose();
        if pem.contains("ENCRYPTED PRIVATE KEY") || pem.contains("Proc-Type: 4,ENCRYPTED") {
            return Err(TlsConfigError::Identity(
                "the private key is encrypted; this build reads unencrypted PEM keys only \
                 (decrypt it with `openssl pkcs8 -in key.pem -out key-plain.pem`)"
                    .into(),
            ));
        }
        // Never echo parse details of the key: they could quote key material.
        let key = PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|_| {
            TlsConfigError::Identity(
                "no PEM private key (PKCS#8, PKCS#1 or SEC1) found in the key material".into(),
            )
        })?;
        Ok((chain, key))
    }
}

fn parse_certs(pem: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let mut out = Vec::new();
    for c in CertificateDer::pem_slice_iter(pem.as_bytes()) {
        out.push(c.map_err(|e| format!("bad PEM certificate: {e}"))?);
    }
    if out.is_empty() {
        return Err("no PEM certificate (-----BEGIN CERTIFICATE-----) found".into());
    }
    Ok(out)
}

/// The `ring` provider, restricted to the named cipher suites if any are given.
fn provider(names: &[String]) -> Result<Arc<rustls::crypto::CryptoProvider>, TlsConfigError> {
    let mut provider = rustls::crypto::ring::default_provider();
    if !names.is_empty() {
        let all = provider.cipher_suites.clone();
        let mut chosen = Vec::new();
        for name in names {
            let want = iana_name(name);
            match all
                .iter()
                .find(|s| suite_iana_name(s).as_deref() == Some(&want))
            {
                Some(s) => chosen.push(*s),
                None => {
                    let known: Vec<String> = all.iter().filter_map(suite_iana_name).collect();
                    return Err(TlsConfigError::Unsupported(format!(
                        "ssl.cipher.suites: `{name}` is not supported (supported: {})",
                        known.join(", ")
                    )));
                }
            }
        }
        provider.cipher_suites = chosen;
    }
    Ok(Arc::new(provider))
}

/// IANA name of a rustls suite (rustls spells TLS 1.3 suites `TLS13_…`).
fn suite_iana_name(s: &rustls::SupportedCipherSuite) -> Option<String> {
    s.suite().as_str().map(iana_name)
}

fn iana_name(name: &str) -> String {
    let n = name.trim().to_ascii_uppercase();
    match n.strip_prefix("TLS13_") {
        Some(rest) => format!("TLS_{rest}"),
        None => n,
    }
}

/// Verifies the chain and validity like webpki but accepts a certificate for another name
/// (`ssl.endpoint.identification.algorithm=` empty).
#[derive(Debug)]
struct NoHostnameVerifier {
    inner: Arc<WebPkiServerVerifier>,
}

impl ServerCertVerifier for NoHostnameVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// A checked TLS configuration, cheap to clone.
#[derive(Clone)]
pub struct TlsConnector {
    inner: tokio_rustls::TlsConnector,
    verify_hostname: bool,
}

impl fmt::Debug for TlsConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsConnector")
            .field("verify_hostname", &self.verify_hostname)
            .finish_non_exhaustive()
    }
}

impl TlsConnector {
    /// Runs the TLS handshake over `tcp` with the broker at `host` (a DNS name or an IP
    /// address, used for SNI and hostname verification).
    pub async fn handshake(&self, host: &str, tcp: TcpStream) -> Result<TlsStream, TlsFailure> {
        let name = ServerName::try_from(host.to_string()).map_err(|e| {
            TlsFailure::Handshake(format!("`{host}` is not a valid TLS server name: {e}"))
        })?;
        self.inner
            .connect(name, tcp)
            .await
            .map_err(|e| classify_io(&e))
    }
}

/// Whether the listener at `tcp`'s peer speaks TLS: runs a handshake that accepts any
/// certificate and reports whether the server answered with TLS at all. Used only to explain a
/// plaintext connection the broker hung up on (a plaintext client on a TLS port gets a bare
/// reset from many TLS terminators, with no bytes to recognise). Nothing is sent after the
/// handshake.
pub async fn probe_speaks_tls(host: &str, tcp: TcpStream) -> bool {
    static PROBE: std::sync::OnceLock<Option<tokio_rustls::TlsConnector>> =
        std::sync::OnceLock::new();
    let Some(connector) = PROBE.get_or_init(|| {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .ok()?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate { provider }))
            .with_no_client_auth();
        Some(tokio_rustls::TlsConnector::from(Arc::new(config)))
    }) else {
        return false;
    };
    let name = ServerName::try_from(host.to_string())
        .unwrap_or_else(|_| ServerName::try_from("localhost").expect("valid name"));
    match connector.connect(name, tcp).await {
        Ok(_) => true,
        // Anything past the ServerHello (certificate or alert problems) is still TLS.
        // A TLS-level verdict other than "not TLS" (certificate, alert) means the server spoke
        // TLS; a transport failure proves nothing.
        Err(e) => !matches!(
            classify_io(&e),
            TlsFailure::NotTls(_) | TlsFailure::Interrupted(_)
        ),
    }
}

/// Accepts every certificate: for [`probe_speaks_tls`] only, which never sends data.
#[derive(Debug)]
struct AnyCertificate {
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Why a TLS connection failed, in terms a user can act on.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlsFailure {
    /// The broker's certificate does not chain to a trusted authority.
    #[error("the broker's certificate is not trusted ({0}); check ssl.truststore.* / tls.trustedCertificates")]
    Untrusted(String),
    /// The certificate is valid but for other names.
    #[error("the broker's certificate is not valid for this host name ({0}); fix the certificate or advertised name, or set ssl.endpoint.identification.algorithm= (empty) to skip the check")]
    HostnameMismatch(String),
    /// The certificate has expired (or is not valid yet).
    #[error("the broker's certificate is outside its validity period ({0})")]
    Expired(String),
    /// The broker refused this client's certificate (or its absence) during mutual TLS.
    #[error("the broker refused the client certificate ({0}); check ssl.keystore.* / authentication.certificateAndKey")]
    ClientCertificateRejected(String),
    /// The broker did not speak TLS: a plaintext listener.
    #[error("the broker did not answer the TLS handshake with TLS ({0}); is this a plaintext listener? (security.protocol is SSL or SASL_SSL)")]
    NotTls(String),
    /// The broker answered a plaintext request with TLS bytes: a TLS listener.
    #[error(
        "the broker answered with TLS: it is a TLS listener; set security.protocol=SSL or SASL_SSL"
    )]
    PlaintextToTls,
    /// Any other handshake failure reported by TLS itself.
    #[error("TLS handshake failed: {0}")]
    Handshake(String),
    /// The transport failed under TLS (EOF, reset, I/O error): not a verdict on the
    /// configuration by itself; the connection layer finds out whether the listener is
    /// plaintext, else treats it as a transport failure.
    #[error("the connection failed during TLS: {0}")]
    Interrupted(String),
}

/// Sorts an I/O error from a TLS stream into a [`TlsFailure`]: what TLS itself reported, or
/// [`TlsFailure::Interrupted`] for a bare transport failure.
pub fn classify_io(e: &std::io::Error) -> TlsFailure {
    match e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(err) => classify(err),
        None => TlsFailure::Interrupted(e.to_string()),
    }
}

impl TlsFailure {
    /// Whether this is a verdict on the configuration (certificates, protocol mismatch) rather
    /// than a transport failure.
    pub fn is_configuration(&self) -> bool {
        !matches!(self, TlsFailure::Interrupted(_))
    }
}

/// Sorts a rustls error into a [`TlsFailure`].
pub fn classify(err: &rustls::Error) -> TlsFailure {
    use rustls::AlertDescription as A;
    match err {
        rustls::Error::InvalidCertificate(c) => match c {
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                TlsFailure::HostnameMismatch(err.to_string())
            }
            CertificateError::Expired
            | CertificateError::ExpiredContext { .. }
            | CertificateError::NotValidYet
            | CertificateError::NotValidYetContext { .. } => TlsFailure::Expired(err.to_string()),
            _ => TlsFailure::Untrusted(err.to_string()),
        },
        rustls::Error::AlertReceived(
            a @ (A::BadCertificate
            | A::UnknownCA
            | A::CertificateRequired
            | A::CertificateUnknown
            | A::UnsupportedCertificate
            | A::CertificateExpired
            | A::CertificateRevoked
            | A::AccessDenied),
        ) => TlsFailure::ClientCertificateRejected(format!("alert {a:?}")),
        rustls::Error::InvalidMessage(_) | rustls::Error::InappropriateMessage { .. } => {
            TlsFailure::NotTls(err.to_string())
        }
        other => TlsFailure::Handshake(other.to_string()),
    }
}

/// Whether bytes a plaintext client received look like a TLS record (an alert or handshake
/// record header: content type 21/22, major version 3). A Kafka response frame starting so
/// would announce more than 350 MB, beyond any frame limit, so the test cannot misfire on a
/// real response.
pub fn looks_like_tls_record(bytes: &[u8]) -> bool {
    bytes.len() >= 2 && matches!(bytes[0], 0x15 | 0x16) && bytes[1] == 0x03
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cipher_suite_names() {
        assert_eq!(
            iana_name("TLS13_AES_128_GCM_SHA256"),
            "TLS_AES_128_GCM_SHA256"
        );
        let p = provider(&["TLS_AES_256_GCM_SHA384".into()]).unwrap();
        assert_eq!(p.cipher_suites.len(), 1);
        let p = provider(&["tls_ecdhe_rsa_with_aes_128_gcm_sha256".into()]).unwrap();
        assert_eq!(p.cipher_suites.len(), 1);
        let e = provider(&["TLS_RSA_WITH_RC4_128_MD5".into()]).unwrap_err();
        assert!(e.to_string().contains("TLS_AES_128_GCM_SHA256"), "{e}");
    }

    #[test]
    fn bad_material_is_named_without_echoing_keys() {
        let cfg = TlsConfig {
            trust: TrustAnchors::Pem("not a certificate".into()),
            ..TlsConfig::default()
        };
        assert!(matches!(cfg.build(), Err(TlsConfigError::Trust(_))));
        let id = ClientIdentity {
            certificate_chain: "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
                .into(),
            private_key: Secret::new("-----BEGIN ENCRYPTED PRIVATE KEY-----\nc2VjcmV0\n"),
        };
        let e = id.parse().unwrap_err().to_string();
        assert!(e.contains("encrypted") && !e.contains("c2VjcmV0"), "{e}");
        let id = ClientIdentity {
            private_key: Secret::new("hunter2"),
            ..id
        };
        assert!(!format!("{id:?}").contains("hunter2"));
    }

    #[test]
    fn tls_record_sniffing() {
        assert!(looks_like_tls_record(&[0x15, 0x03, 0x03, 0x00, 0x02]));
        assert!(looks_like_tls_record(&[0x16, 0x03, 0x01]));
        assert!(!looks_like_tls_record(&[0x00, 0x00, 0x01, 0x00]));
        assert!(!looks_like_tls_record(&[0x15]));
    }

    #[test]
    fn classification() {
        let e = rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer);
        assert!(matches!(classify(&e), TlsFailure::Untrusted(_)));
        let e = rustls::Error::InvalidCertificate(CertificateError::Expired);
        assert!(matches!(classify(&e), TlsFailure::Expired(_)));
        let e = rustls::Error::InvalidCertificate(CertificateError::NotValidForName);
        assert!(matches!(classify(&e), TlsFailure::HostnameMismatch(_)));
        let e = rustls::Error::AlertReceived(rustls::AlertDescription::CertificateRequired);
        assert!(matches!(
            classify(&e),
            TlsFailure::ClientCertificateRejected(_)
        ));
        let io = std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "eof");
        assert!(matches!(classify_io(&io), TlsFailure::Interrupted(_)));
        assert!(!classify_io(&io).is_configuration());
        let io = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer),
        );
        assert!(matches!(classify_io(&io), TlsFailure::Untrusted(_)));
    }
}
