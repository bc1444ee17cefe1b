//! Real TLS, mutual-TLS and SASL/SCRAM endpoints for the integration tests.
//!
//! tansu 0.6 cannot serve TLS, so a TLS listener is Debian's `stunnel4` in front of a tansu
//! broker: tansu listens on a plain loopback port and advertises the stunnel port, stunnel
//! accepts TLS there (requiring a client certificate signed by a given CA for mutual TLS) and
//! forwards the decrypted bytes to tansu. To the client this is what a Kafka `SSL` listener is
//! (`security.protocol=SSL`, KIP-103 listener names; Java's `SslTransportLayer`): a TLS session,
//! then the ordinary Kafka protocol inside it.
//!
//! SASL/SCRAM (RFC 5802, RFC 7677; Kafka's KIP-84 and KIP-43 `SaslHandshake`/KIP-152
//! `SaslAuthenticate`) is served by tansu itself when it is built with SQLite storage
//! (`scripts/install-tansu-sasl.sh`): users are created with `tansu user create` (an
//! AlterUserScramCredentials request, KIP-554) on a broker without `--authentication`, which is
//! then restarted with `--authentication` on the same database. `SASL_SSL` is that broker behind
//! stunnel.
//!
//! Certificates (a CA, server and client certificates, and the wrong ones for negative tests) are
//! generated once per test process with the `openssl` command-line tool.
//!
//! Every process started here is killed on drop (also on panic); the logs of a failed test are
//! kept under [`crate::log_dir`].

use std::fs::File;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::tansu::{api_versions_ok, free_port, tansu_binary};

/// How long a broker or stunnel may take to become ready.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

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

/// A server certificate that expired long ago. `openssl x509` (OpenSSL 3.0) cannot set a start
/// date in the past; `openssl ca` can, with a minimal CA database.
fn new_expired_server(dir: &Path, name: &str, ca: &str) {
    let key = format!("{name}.key");
    let csr = format!("{name}.csr");
    new_key_and_csr(dir, &key, "localhost", &csr);
    std::fs::create_dir_all(dir.join("ca-db")).expect("create ca-db");
    write(dir, "ca-db/index.txt", "");
    write(dir, "ca-db/serial", "1000\n");
    write(
        dir,
        "ca.cnf",
        "[ca]\n\
         default_ca = test_ca\n\
         [test_ca]\n\
         dir = ./ca-db\n\
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
         extendedKeyUsage = serverAuth\n",
    );
    openssl(
        dir,
        &[
            "ca",
            "-batch",
            "-config",
            "ca.cnf",
            "-cert",
            &format!("{ca}.pem"),
            "-keyfile",
            &format!("{ca}.key"),
            "-in",
            &csr,
            "-out",
            &format!("{name}.pem"),
            "-startdate",
            "20200101000000Z",
            "-enddate",
            "20210101000000Z",
            "-extensions",
            "server_ext",
            "-notext",
        ],
    );
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
    new_expired_server(dir, "expired", "ca");
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
// Child processes
// ---------------------------------------------------------------------------------------------

/// A child process writing stdout and stderr to a log file; killed on drop, its log kept under
/// [`crate::log_dir`] when the test panics.
#[derive(Debug)]
struct Proc {
    child: Option<Child>,
    name: String,
    log: PathBuf,
}

impl Proc {
    fn spawn(cmd: &mut Command, name: String, log: PathBuf) -> Result<Proc, String> {
        let file = File::create(&log).map_err(|e| format!("create {}: {e}", log.display()))?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(file.try_clone().map_err(|e| e.to_string())?)
            .stderr(file)
            .spawn()
            .map_err(|e| format!("spawn {name} ({:?}): {e}", cmd.get_program()))?;
        Ok(Proc {
            child: Some(child),
            name,
            log,
        })
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `Err` with the exit status and the log if the process has exited.
    fn check_running(&mut self) -> Result<(), String> {
        match self.child.as_mut().map(Child::try_wait) {
            Some(Ok(None)) => Ok(()),
            Some(Ok(Some(status))) => {
                self.child = None;
                Err(format!(
                    "{} exited with {status}: {}",
                    self.name,
                    self.log()
                ))
            }
            Some(Err(e)) => Err(format!("{}: wait: {e}", self.name)),
            None => Err(format!("{} is not running", self.name)),
        }
    }

    /// Polls `ready` until it holds, the process exits or [`READY_TIMEOUT`] passes.
    fn wait_ready(&mut self, what: &str, mut ready: impl FnMut() -> bool) -> Result<(), String> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            self.check_running()?;
            if ready() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "{} not ready ({what}) within {READY_TIMEOUT:?}: {}",
                    self.name,
                    self.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            let dir = crate::log_dir();
            let _ = std::fs::create_dir_all(&dir);
            let kept = dir.join(format!("{}.log", self.name));
            if std::fs::copy(&self.log, &kept).is_ok() {
                eprintln!("log of {} kept at {}", self.name, kept.display());
            }
        }
    }
}

fn accepts_tcp(addr: SocketAddr) -> bool {
    TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
}

// ---------------------------------------------------------------------------------------------
// stunnel
// ---------------------------------------------------------------------------------------------

/// Path of stunnel: `STRAIT_STUNNEL`, else `/usr/bin/stunnel4` (Debian's `stunnel4` package,
/// installed by `scripts/install-deps.sh`), else `stunnel` on `PATH`.
pub fn stunnel_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("STRAIT_STUNNEL") {
        return PathBuf::from(p);
    }
    let debian = PathBuf::from("/usr/bin/stunnel4");
    if debian.exists() {
        debian
    } else {
        PathBuf::from("stunnel")
    }
}

/// A TLS listener on `127.0.0.1:accept_port` that forwards to a plaintext address: one stunnel
/// process in the foreground, killed on drop.
#[derive(Debug)]
pub struct Stunnel {
    proc: Proc,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Stunnel {
    /// Starts stunnel accepting TLS on `127.0.0.1:accept_port` with `cert`/`key`, forwarding to
    /// `connect`; with `client_ca`, clients must present a certificate signed by that CA
    /// (mutual TLS, stunnel's `verify = 2`). Waits until the port accepts connections.
    pub fn start(
        accept_port: u16,
        connect: SocketAddr,
        cert: &Path,
        key: &Path,
        client_ca: Option<&Path>,
    ) -> Stunnel {
        let name = crate::unique("stunnel");
        Self::try_start(&name, accept_port, connect, cert, key, client_ca)
            .unwrap_or_else(|e| panic!("could not start stunnel: {e}"))
    }

    fn try_start(
        name: &str,
        accept_port: u16,
        connect: SocketAddr,
        cert: &Path,
        key: &Path,
        client_ca: Option<&Path>,
    ) -> Result<Stunnel, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let addr: SocketAddr = ([127, 0, 0, 1], accept_port).into();
        // debug = 6 logs "Accepting new connections" once the port is bound, and each
        // connection's TLS outcome (kept for failed tests).
        let mut conf = format!(
            "foreground = yes\n\
             pid =\n\
             syslog = no\n\
             debug = 6\n\
             [kafka]\n\
             accept = {addr}\n\
             connect = {connect}\n\
             cert = {}\n\
             key = {}\n",
            cert.display(),
            key.display()
        );
        if let Some(ca) = client_ca {
            conf.push_str(&format!("verify = 2\nCAfile = {}\n", ca.display()));
        }
        let conf_path = dir.path().join("stunnel.conf");
        std::fs::write(&conf_path, conf).map_err(|e| e.to_string())?;
        let log = dir.path().join("stunnel.log");
        let mut proc = Proc::spawn(
            Command::new(stunnel_binary())
                .arg(&conf_path)
                .current_dir(dir.path()),
            name.to_string(),
            log,
        )?;
        proc.wait_ready("listening", || {
            std::fs::read_to_string(dir.path().join("stunnel.log"))
                .is_ok_and(|l| l.contains("Accepting new connections"))
                && accepts_tcp(addr)
        })?;
        Ok(Stunnel {
            proc,
            addr,
            _dir: dir,
        })
    }

    /// The TLS address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// stunnel's log so far (one line per connection and TLS failure).
    pub fn log(&self) -> String {
        self.proc.log()
    }
}

// ---------------------------------------------------------------------------------------------
// Brokers
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
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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

    /// The value of `tansu user create --mechanism`.
    fn tansu_arg(self) -> &'static str {
        match self {
            ScramMechanism::Sha256 => "scram256",
            ScramMechanism::Sha512 => "scram512",
        }
    }
}

/// A SCRAM user to create on a [`SecureBroker::sasl`] broker.
#[derive(Clone, Debug, PartialEq, Eq)]
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

/// Path of the tansu built with SQLite (the one that can authenticate with SCRAM):
/// `STRAIT_TANSU_SASL`, else `scripts/install-tansu-sasl.sh`'s cache path. `None` when it is not
/// installed.
pub fn sasl_tansu_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("STRAIT_TANSU_SASL") {
        let p = PathBuf::from(p);
        return p.exists().then_some(p);
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    let p = cache.join("strait/tansu-libsql-0.6.0/bin/tansu");
    p.exists().then_some(p)
}

/// Why tests needing [`sasl_tansu_binary`] are skipped when it is missing.
pub const SASL_TANSU_MISSING: &str =
    "the tansu built with SQLite (SASL/SCRAM) is not installed: run scripts/install-tansu-sasl.sh";

/// A tansu broker behind a TLS and/or SASL listener: a single-broker cluster of its own.
#[derive(Debug)]
pub struct SecureBroker {
    // Drop order: stunnel, then tansu, then the directory holding their logs and database.
    stunnel: Option<Stunnel>,
    tansu: Proc,
    cluster_id: String,
    plain: SocketAddr,
    dir: tempfile::TempDir,
}

impl SecureBroker {
    /// The PyPI tansu ([`tansu_binary`], in-memory storage) behind stunnel presenting `cert`;
    /// with `mtls`, clients must present a certificate signed by [`Certs::ca`].
    pub fn tls(cluster_id: &str, cert: ServerCert, mtls: bool) -> SecureBroker {
        let binary = tansu_binary();
        retry(cluster_id, || {
            Self::try_start(&binary, false, cluster_id, &[], Some((cert, mtls)))
        })
    }

    /// The SQLite tansu with `--authentication` (SASL/SCRAM required) and `users`, in plaintext
    /// (`SASL_PLAINTEXT`) or behind stunnel (`SASL_SSL`, with `tls = Some((cert, mtls))`).
    /// `None` when that tansu is not installed (skip with [`SASL_TANSU_MISSING`]).
    pub fn sasl(
        cluster_id: &str,
        users: &[ScramUser],
        tls: Option<(ServerCert, bool)>,
    ) -> Option<SecureBroker> {
        let binary = sasl_tansu_binary()?;
        Some(retry(cluster_id, || {
            Self::try_start(&binary, true, cluster_id, users, tls)
        }))
    }

    /// `sasl`: `binary` is the SQLite tansu, started with `--authentication` (after a first
    /// run without it that creates `users`).
    fn try_start(
        binary: &Path,
        sasl: bool,
        cluster_id: &str,
        users: &[ScramUser],
        tls: Option<(ServerCert, bool)>,
    ) -> Result<SecureBroker, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let cluster_id = crate::unique(cluster_id);
        let plain_port = free_port();
        let tls_port = tls.map(|_| loop {
            let p = free_port();
            if p != plain_port {
                break p;
            }
        });
        let plain: SocketAddr = ([127, 0, 0, 1], plain_port).into();
        let advertised: SocketAddr = ([127, 0, 0, 1], tls_port.unwrap_or(plain_port)).into();
        // SQLite keeps the SCRAM users across the restart that turns authentication on; the
        // path is relative to the broker's working directory.
        let storage = if sasl {
            SQLITE_STORAGE
        } else {
            "memory://tansu/"
        };
        let spawn = |tag: &str, authentication: bool| -> Result<Proc, String> {
            let mut cmd = Command::new(binary);
            cmd.arg("broker")
                .args(["--cluster-id", &cluster_id])
                .args(["--listener-url", &format!("tcp://{plain}")])
                .args(["--advertised-listener-url", &format!("tcp://{advertised}")])
                .args(["--storage-engine", storage])
                .current_dir(dir.path())
                .env(
                    "RUST_LOG",
                    std::env::var("STRAIT_TANSU_LOG").unwrap_or("warn".into()),
                );
            if authentication {
                cmd.arg("--authentication");
            }
            Proc::spawn(
                &mut cmd,
                format!("{cluster_id}-{tag}"),
                dir.path().join(format!("{tag}.log")),
            )
        };
        if sasl && !users.is_empty() {
            let mut setup = spawn("tansu-setup", false)?;
            setup.wait_ready("ApiVersions", || api_versions_ok(plain))?;
            for u in users {
                create_user(binary, dir.path(), plain, u)?;
            }
            // SQLite has committed every user: a killed process loses nothing.
            setup.kill();
        }
        // ApiVersions is answered before authentication (KIP-511 / KIP-43 order).
        let mut tansu = spawn("tansu", sasl)?;
        tansu.wait_ready("ApiVersions", || api_versions_ok(plain))?;
        let stunnel = match (tls, tls_port) {
            (Some((cert, mtls)), Some(port)) => {
                let (cert_file, key_file) = cert.files();
                let ca = mtls.then(|| certs().ca.as_path());
                Some(Stunnel::try_start(
                    &format!("{cluster_id}-stunnel"),
                    port,
                    plain,
                    cert_file,
                    key_file,
                    ca,
                )?)
            }
            _ => None,
        };
        Ok(SecureBroker {
            stunnel,
            tansu,
            cluster_id,
            plain,
            dir,
        })
    }

    /// `host:port` clients bootstrap from: the TLS port when there is one, else tansu's.
    pub fn bootstrap(&self) -> String {
        self.tls_addr().unwrap_or(self.plain).to_string()
    }

    /// tansu's own plaintext port (behind stunnel when TLS is on; for negative tests).
    pub fn plain_addr(&self) -> SocketAddr {
        self.plain
    }

    /// stunnel's TLS port, if this broker has one.
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.stunnel.as_ref().map(Stunnel::addr)
    }

    /// The cluster id (unique per test process).
    pub fn cluster_id(&self) -> &str {
        &self.cluster_id
    }

    /// The broker's and stunnel's logs so far.
    pub fn log(&self) -> String {
        let mut s = format!("== tansu\n{}", self.tansu.log());
        if let Some(st) = &self.stunnel {
            s.push_str(&format!("== stunnel\n{}", st.log()));
        }
        s
    }

    /// The directory holding the logs (and the SQLite database of a SASL broker).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

/// The `--storage-engine` of SASL brokers (relative to the broker's working directory).
const SQLITE_STORAGE: &str = "sqlite://tansu.db";

fn retry(
    cluster_id: &str,
    mut start: impl FnMut() -> Result<SecureBroker, String>,
) -> SecureBroker {
    let mut last_err = String::new();
    for _attempt in 0..5 {
        match start() {
            Ok(b) => return b,
            Err(e) => last_err = e,
        }
    }
    panic!("could not start secure broker {cluster_id}: {last_err}");
}

/// `tansu user create --broker tcp://… --mechanism scram256|scram512 NAME PASSWORD`.
fn create_user(
    binary: &Path,
    dir: &Path,
    broker: SocketAddr,
    user: &ScramUser,
) -> Result<(), String> {
    let out = Command::new(binary)
        .args(["user", "create"])
        .args(["--broker", &format!("tcp://{broker}")])
        .args(["--mechanism", user.mechanism.tansu_arg()])
        .arg(&user.name)
        .arg(&user.password)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("run tansu user create: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "tansu user create {} ({}) failed with {}: {}{}",
            user.name,
            user.mechanism.name(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}
