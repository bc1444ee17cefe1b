//! TLS, mutual-TLS and SASL endpoints for the integration tests: Apache Kafka's own security
//! listeners ([`crate::kafka`]), and the test certificates they present.
//!
//! A TLS listener is a Kafka `SSL` listener (`ssl.client.auth=required` for mutual TLS) with a
//! PEM keystore made from the certificates here; SASL is Kafka's own: `SASL_PLAINTEXT` and
//! `SASL_SSL` listeners with SCRAM-SHA-256, SCRAM-SHA-512 (users created when the storage is
//! formatted, `StorageTool format --add-scram`) and PLAIN (users in the JAAS configuration).
//! [`SecureBroker`] is a single-node cluster with one such listener; tests that need several
//! listeners (a good, a wrong-host and an expired certificate, …) start one
//! [`KafkaCluster`] with all of them ([`tls_listener`], [`sasl_listener`]).
//!
//! Certificates (a CA, server and client certificates, and the wrong ones for negative tests) are
//! generated once per test process with the `openssl` command-line tool.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use crate::kafka::{KafkaCluster, KafkaListener, KafkaOptions, SecurityProtocol};

/// The password of [`Certs::client_key_encrypted`].
const CLIENT_KEY_PASSWORD: &str = "strait-test-key-password";

// ---------------------------------------------------------------------------------------------
// Certificates
// ---------------------------------------------------------------------------------------------

/// Paths of the test certificates and keys (PEM; keys are unencrypted PKCS#8 EC P-256 unless
/// named otherwise). The server certificates name `IP:127.0.0.1` and `DNS:localhost`.
#[derive(Clone, Debug)]
pub struct Certs {
    /// The directory holding every file below.
    pub dir: PathBuf,
    /// The test CA (self-signed) that signed the server and client certificates.
    pub ca: PathBuf,
    /// The test CA's key.
    pub ca_key: PathBuf,
    /// Server certificate signed by [`Certs::ca`], SAN `IP:127.0.0.1, DNS:localhost`.
    pub server_cert: PathBuf,
    /// Key of [`Certs::server_cert`].
    pub server_key: PathBuf,
    /// Client certificate (`CN=strait-client`, extended key usage clientAuth) signed by
    /// [`Certs::ca`].
    pub client_cert: PathBuf,
    /// Key of [`Certs::client_cert`].
    pub client_key: PathBuf,
    /// [`Certs::client_key`] encrypted with [`Certs::client_key_password`] (PKCS#8,
    /// PBES2 with AES-256-CBC).
    pub client_key_encrypted: PathBuf,
    /// Password of [`Certs::client_key_encrypted`].
    pub client_key_password: String,
    /// A second CA that signed nothing the servers trust ("untrusted" negatives).
    pub other_ca: PathBuf,
    /// Client certificate signed by [`Certs::other_ca`].
    pub other_client_cert: PathBuf,
    /// Key of [`Certs::other_client_cert`].
    pub other_client_key: PathBuf,
    /// Server certificate signed by [`Certs::ca`] whose only name is `DNS:wrong.example`.
    pub wrong_host_cert: PathBuf,
    /// Key of [`Certs::wrong_host_cert`].
    pub wrong_host_key: PathBuf,
    /// Server certificate signed by [`Certs::ca`] with the right names, valid only in 2020.
    pub expired_cert: PathBuf,
    /// Key of [`Certs::expired_cert`].
    pub expired_key: PathBuf,
}

impl Certs {
    /// The contents of one of the PEM files.
    pub fn pem(&self, path: &Path) -> String {
        std::fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("read test certificate {}: {e}", path.display()))
    }
}

/// The test certificates, generated on first use (once per test process).
pub fn certs() -> &'static Certs {
    static CERTS: OnceLock<Certs> = OnceLock::new();
    CERTS.get_or_init(|| {
        let root = crate::log_dir()
            .parent()
            .map(|p| p.join("test-certs"))
            .unwrap_or_else(|| std::env::temp_dir().join("strait-test-certs"));
        prune_stale_cert_dirs(&root);
        let dir = root.join(std::process::id().to_string());
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        generate_certs(&dir)
    })
}

/// Removes the certificate directories of test processes that are gone (named by pid; Linux).
fn prune_stale_cert_dirs(root: &Path) {
    if !Path::new("/proc/self").exists() {
        return;
    }
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        if !Path::new("/proc").join(pid.to_string()).exists() {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// Runs `openssl args…` in `dir`; panics with its stderr when it fails.
fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run openssl ({e}): run scripts/install-deps.sh"));
    assert!(
        out.status.success(),
        "openssl {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).unwrap_or_else(|e| panic!("write {name}: {e}"));
}

/// A new key `key` and a certificate signing request `csr` for `/CN=<common_name>`.
fn new_key_and_csr(dir: &Path, key: &str, common_name: &str, csr: &str) {
    new_key(dir, key);
    let subject = format!("/CN={common_name}");
    openssl(
        dir,
        &["req", "-new", "-key", key, "-subj", &subject, "-out", csr],
    );
}

/// A new EC P-256 key, unencrypted PKCS#8 PEM.
fn new_key(dir: &Path, name: &str) {
    openssl(
        dir,
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            name,
        ],
    );
}

/// A self-signed CA certificate `{name}.pem` with key `{name}.key`.
fn new_ca(dir: &Path, name: &str, common_name: &str) {
    let key = format!("{name}.key");
    new_key(dir, &key);
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-new",
            "-key",
            &key,
            "-subj",
            &format!("/CN={common_name}"),
            "-days",
            "3650",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
            "-out",
            &format!("{name}.pem"),
        ],
    );
}

const SERVER_EXT: &str = "basicConstraints=critical,CA:FALSE\n\
    keyUsage=critical,digitalSignature\n\
    extendedKeyUsage=serverAuth\n";
const CLIENT_EXT: &str = "basicConstraints=critical,CA:FALSE\n\
    keyUsage=critical,digitalSignature\n\
    extendedKeyUsage=clientAuth\n";

/// A key `{name}.key` and a certificate `{name}.pem` signed by CA `{ca}` with the given
/// extensions (valid from now for a year).
fn new_leaf(dir: &Path, name: &str, ca: &str, common_name: &str, ext: &str, serial: u32) {
    let key = format!("{name}.key");
    let csr = format!("{name}.csr");
    let ext_file = format!("{name}.ext");
    new_key_and_csr(dir, &key, common_name, &csr);
    write(dir, &ext_file, ext);
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &format!("{ca}.pem"),
            "-CAkey",
            &format!("{ca}.key"),
            "-set_serial",
            &serial.to_string(),
            "-days",
            "365",
            "-extfile",
            &ext_file,
            "-out",
            &format!("{name}.pem"),
        ],
    );
}

/// A server certificate `{name}.pem` (key `{name}.key`) for `IP:127.0.0.1, DNS:localhost`,
/// signed by the CA `ca_cert`/`ca_key`, valid from `start` to `end` (`YYYYMMDDHHMMSSZ`).
/// `openssl x509` (OpenSSL 3.0) cannot set a start date in the past nor an end date to the
/// second; `openssl ca` can, with a minimal CA database (in `dir/ca-db-<name>`).
fn new_dated_server(dir: &Path, name: &str, ca_cert: &Path, ca_key: &Path, start: &str, end: &str) {
    let key = format!("{name}.key");
    let csr = format!("{name}.csr");
    new_key_and_csr(dir, &key, "localhost", &csr);
    let db = format!("ca-db-{name}");
    std::fs::create_dir_all(dir.join(&db)).expect("create the CA database");
    write(dir, &format!("{db}/index.txt"), "");
    write(dir, &format!("{db}/serial"), "1000\n");
    let cnf = format!("ca-{name}.cnf");
    write(
        dir,
        &cnf,
        &format!(
            "[ca]\n\
             default_ca = test_ca\n\
             [test_ca]\n\
             dir = ./{db}\n\
             database = $dir/index.txt\n\
             serial = $dir/serial\n\
             new_certs_dir = $dir\n\
             default_md = sha256\n\
             policy = any_name\n\
             copy_extensions = none\n\
             unique_subject = no\n\
             [any_name]\n\
             commonName = supplied\n\
             [server_ext]\n\
             subjectAltName = IP:127.0.0.1,DNS:localhost\n\
             basicConstraints = critical,CA:FALSE\n\
             keyUsage = critical,digitalSignature\n\
             extendedKeyUsage = serverAuth\n"
        ),
    );
    openssl(
        dir,
        &[
            "ca",
            "-batch",
            "-config",
            &cnf,
            "-cert",
            ca_cert.to_str().expect("UTF-8 path"),
            "-keyfile",
            ca_key.to_str().expect("UTF-8 path"),
            "-in",
            &csr,
            "-out",
            &format!("{name}.pem"),
            "-startdate",
            start,
            "-enddate",
            end,
            "-extensions",
            "server_ext",
            "-notext",
        ],
    );
}

/// `t` as an X.509 GeneralizedTime (`YYYYMMDDHHMMSSZ`, UTC).
fn generalized_time(t: std::time::SystemTime) -> String {
    let secs = t
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}{month:02}{day:02}{:02}{:02}{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// A server certificate signed by the test CA with the right names (like
/// [`ServerCert::Good`]) that stops being valid at `until`: for a certificate expiring while
/// clients are connected. Written to `dir` as `{name}.pem` and `{name}.key`; returns them.
pub fn server_cert_valid_until(
    dir: &Path,
    name: &str,
    until: std::time::SystemTime,
) -> (PathBuf, PathBuf) {
    let c = certs();
    let start = until - std::time::Duration::from_secs(86_400);
    new_dated_server(
        dir,
        name,
        &c.ca,
        &c.ca_key,
        &generalized_time(start),
        &generalized_time(until),
    );
    (
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}.key")),
    )
}

fn generate_certs(dir: &Path) -> Certs {
    let server_ext = format!("subjectAltName=IP:127.0.0.1,DNS:localhost\n{SERVER_EXT}");
    let wrong_ext = format!("subjectAltName=DNS:wrong.example\n{SERVER_EXT}");
    new_ca(dir, "ca", "Strait Test CA");
    new_ca(dir, "other-ca", "Strait Other Test CA");
    new_leaf(dir, "server", "ca", "localhost", &server_ext, 1);
    new_leaf(dir, "client", "ca", "strait-client", CLIENT_EXT, 2);
    new_leaf(dir, "wrong-host", "ca", "wrong.example", &wrong_ext, 3);
    new_leaf(
        dir,
        "other-client",
        "other-ca",
        "strait-client",
        CLIENT_EXT,
        4,
    );
    new_dated_server(
        dir,
        "expired",
        &dir.join("ca.pem"),
        &dir.join("ca.key"),
        "20200101000000Z",
        "20210101000000Z",
    );
    openssl(
        dir,
        &[
            "pkcs8",
            "-topk8",
            "-in",
            "client.key",
            "-v2",
            "aes-256-cbc",
            "-passout",
            &format!("pass:{CLIENT_KEY_PASSWORD}"),
            "-out",
            "client-encrypted.key",
        ],
    );
    let p = |name: &str| dir.join(name);
    Certs {
        dir: dir.to_path_buf(),
        ca: p("ca.pem"),
        ca_key: p("ca.key"),
        server_cert: p("server.pem"),
        server_key: p("server.key"),
        client_cert: p("client.pem"),
        client_key: p("client.key"),
        client_key_encrypted: p("client-encrypted.key"),
        client_key_password: CLIENT_KEY_PASSWORD.to_string(),
        other_ca: p("other-ca.pem"),
        other_client_cert: p("other-client.pem"),
        other_client_key: p("other-client.key"),
        wrong_host_cert: p("wrong-host.pem"),
        wrong_host_key: p("wrong-host.key"),
        expired_cert: p("expired.pem"),
        expired_key: p("expired.key"),
    }
}

// ---------------------------------------------------------------------------------------------
// Listeners and brokers
// ---------------------------------------------------------------------------------------------

/// Which server certificate a TLS listener presents.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerCert {
    /// Signed by the test CA, names `127.0.0.1` and `localhost`.
    Good,
    /// Signed by the test CA, names only `wrong.example`.
    WrongHost,
    /// Signed by the test CA, right names, expired in 2021.
    Expired,
}

impl ServerCert {
    /// Certificate and key files.
    pub fn files(self) -> (&'static Path, &'static Path) {
        let c = certs();
        match self {
            ServerCert::Good => (&c.server_cert, &c.server_key),
            ServerCert::WrongHost => (&c.wrong_host_cert, &c.wrong_host_key),
            ServerCert::Expired => (&c.expired_cert, &c.expired_key),
        }
    }
}

/// A SCRAM mechanism (RFC 7677 / RFC 5802).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ScramMechanism {
    /// `SCRAM-SHA-256`.
    Sha256,
    /// `SCRAM-SHA-512`.
    Sha512,
}

impl ScramMechanism {
    /// The Kafka/SASL mechanism name (`sasl.mechanism`).
    pub fn name(self) -> &'static str {
        match self {
            ScramMechanism::Sha256 => "SCRAM-SHA-256",
            ScramMechanism::Sha512 => "SCRAM-SHA-512",
        }
    }
}

/// A SCRAM user: credentials for one mechanism (Kafka keeps them per mechanism; a user with
/// both needs two entries).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ScramUser {
    pub mechanism: ScramMechanism,
    pub name: String,
    pub password: String,
}

impl ScramUser {
    /// A user with credentials for `mechanism`.
    pub fn new(mechanism: ScramMechanism, name: &str, password: &str) -> ScramUser {
        ScramUser {
            mechanism,
            name: name.to_string(),
            password: password.to_string(),
        }
    }
}

/// An `SSL` listener named `name` presenting `cert`; with `mtls`, clients must present a
/// certificate signed by [`Certs::ca`] (`ssl.client.auth=required`).
pub fn tls_listener(name: &str, cert: ServerCert, mtls: bool) -> KafkaListener {
    let (chain, key) = cert.files();
    let l = KafkaListener::new(SecurityProtocol::Ssl)
        .named(name)
        .certificate(chain, key);
    if mtls {
        l.require_client_certificate()
    } else {
        l
    }
}

/// A SASL listener named `name`: `SASL_PLAINTEXT`, or `SASL_SSL` presenting `cert` (mutual TLS
/// too with `mtls`) with `tls = Some((cert, mtls))`. Mechanisms: the cluster's.
pub fn sasl_listener(name: &str, tls: Option<(ServerCert, bool)>) -> KafkaListener {
    match tls {
        None => KafkaListener::new(SecurityProtocol::SaslPlaintext).named(name),
        Some((cert, mtls)) => {
            let (chain, key) = cert.files();
            let l = KafkaListener::new(SecurityProtocol::SaslSsl)
                .named(name)
                .certificate(chain, key);
            if mtls {
                l.require_client_certificate()
            } else {
                l
            }
        }
    }
}

/// A single-node Apache Kafka cluster with one secured client listener (besides its
/// `PLAINTEXT` one): what a test or bench needs when one TLS or SASL endpoint is enough.
#[derive(Debug)]
pub struct SecureBroker {
    kafka: KafkaCluster,
    listener: String,
}

impl SecureBroker {
    /// An `SSL` listener presenting `cert`; with `mtls`, clients must present a certificate
    /// signed by [`Certs::ca`].
    pub fn tls(name: &str, cert: ServerCert, mtls: bool) -> SecureBroker {
        let listener = tls_listener("SSL", cert, mtls);
        SecureBroker::start(name, KafkaOptions::brokers(1).listener(listener), "SSL")
    }

    /// A SASL listener (SCRAM-SHA-256, SCRAM-SHA-512 and PLAIN enabled) with the SCRAM `users`:
    /// `SASL_PLAINTEXT`, or `SASL_SSL` with `tls = Some((cert, mtls))`. Always `Some` (Apache
    /// Kafka serves SASL itself; the `Option` is from when a separately built broker was
    /// needed).
    pub fn sasl(
        name: &str,
        users: &[ScramUser],
        tls: Option<(ServerCert, bool)>,
    ) -> Option<SecureBroker> {
        let listener_name = if tls.is_some() {
            "SASL_SSL"
        } else {
            "SASL_PLAINTEXT"
        };
        let mut options = KafkaOptions::brokers(1).listener(sasl_listener(listener_name, tls));
        for u in users {
            options = options.scram_user(u.clone());
        }
        Some(SecureBroker::start(name, options, listener_name))
    }

    fn start(name: &str, options: KafkaOptions, listener: &str) -> SecureBroker {
        // Records with old timestamps (tests and benches use fixed ones) stay: no time retention.
        let options = options.property("log.retention.ms", "-1");
        SecureBroker {
            kafka: KafkaCluster::start_with(name, options),
            listener: listener.to_string(),
        }
    }

    /// `host:port` of the secured listener (clients bootstrap from it and the metadata sends
    /// them back to it).
    pub fn bootstrap(&self) -> String {
        self.kafka.bootstrap_for_listener(&self.listener)
    }

    /// The broker's `PLAINTEXT` listener (for negative tests and setup).
    pub fn plain_addr(&self) -> SocketAddr {
        self.kafka.broker_addr(0).parse().expect("loopback address")
    }

    /// The TLS listener's address, if the secured listener uses TLS.
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        let tls = self
            .kafka
            .listeners()
            .iter()
            .any(|l| l.name == self.listener && l.protocol.uses_tls());
        tls.then(|| self.bootstrap().parse().expect("loopback address"))
    }

    /// The cluster id.
    pub fn cluster_id(&self) -> &str {
        self.kafka.cluster_id()
    }

    /// The broker's log so far.
    pub fn log(&self) -> String {
        self.kafka.log(0)
    }

    /// The cluster's directory (configuration, keystores, data, log).
    pub fn dir(&self) -> &Path {
        self.kafka.dir()
    }

    /// The cluster itself.
    pub fn kafka(&self) -> &KafkaCluster {
        &self.kafka
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn generalized_time_is_utc_calendar_time() {
        assert_eq!(super::generalized_time(UNIX_EPOCH), "19700101000000Z");
        // 2000-02-29 (a leap day of a century year) and 2026-12-04T00:31:05Z.
        let t = |s: u64| super::generalized_time(UNIX_EPOCH + Duration::from_secs(s));
        assert_eq!(t(951_782_400), "20000229000000Z");
        assert_eq!(t(1_796_344_265), "20261204003105Z");
    }
}
