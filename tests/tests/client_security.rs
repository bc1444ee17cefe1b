//! protocol-client's TLS and SASL against Apache Kafka's own security listeners: `SSL` (mutual
//! TLS with `ssl.client.auth=required`), `SASL_PLAINTEXT` and `SASL_SSL` with SCRAM-SHA-256,
//! SCRAM-SHA-512, PLAIN and OAUTHBEARER (Kafka's unsecured tokens), and KIP-368
//! re-authentication on a listener with `connections.max.reauth.ms`. librdkafka is the
//! independent reference: what our producer writes over a secured listener it reads back
//! identically over its own secured connection.
//!
//! Every negative case must fail with a security error (not retried, so well within the time
//! bound) that names the broker, and with the kind Apache Kafka's answer allows: Kafka gives
//! the same SASL_AUTHENTICATION_FAILED for a wrong password and an unknown user (on purpose), so
//! those two are one kind here (see tests/README.md, "TLS and SASL test servers"). One tansu
//! case stays: a TLS client on tansu's plaintext port gets silence (Kafka hangs up at once), the
//! path of the client's own handshake timeout.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use protocol_client::cluster::{ClientConfig, Cluster};
use protocol_client::conn::{AuthFailure, ConnError};
use protocol_client::producer::records::ProducerRecord;
use protocol_client::producer::{Producer, ProducerConfig};
use protocol_client::record::{BatchBuilder, Compression};
use protocol_client::security::sasl::{SaslConfig, ScramHash, TokenSource};
use protocol_client::security::tls::{ClientIdentity, TlsConfig, TlsFailure, TrustAnchors};
use protocol_client::security::Secret;
use strait_tests::kafka::{KafkaCluster, KafkaListener, KafkaOptions, SecurityProtocol};
use strait_tests::reference::{self, Outgoing, RefSecurity};
use strait_tests::secure::{
    certs, sasl_listener, tls_listener, ScramMechanism, ScramUser, ServerCert,
};
use strait_tests::tansu::TansuBroker;

/// SCRAM users of every cluster of this file (one formatted storage template for all).
const ALICE: (&str, &str) = ("alice", "alice-secret"); // SCRAM-SHA-256 only
const BOB: (&str, &str) = ("bob", "bob-secret"); // SCRAM-SHA-512 only
const CAROL: (&str, &str) = ("carol", "carol-secret"); // SCRAM-SHA-512 only
/// A PLAIN user (JAAS configuration).
const PAT: (&str, &str) = ("pat", "pat-secret");

/// Kafka's answer to every SCRAM failure (`SaslServerAuthenticator`: the reason is withheld
/// on purpose, "it may contain sensitive data like the existence of the user").
const KAFKA_SCRAM_REFUSAL: &str =
    "Authentication failed during authentication due to invalid credentials with SASL mechanism";
/// Kafka's answer to a PLAIN failure (`PlainServerCallbackHandler`, passed through as is).
const KAFKA_PLAIN_REFUSAL: &str = "Authentication failed: Invalid username or password";

/// A single-node Kafka cluster with `listeners` and this file's users.
fn kafka(name: &str, listeners: Vec<KafkaListener>) -> KafkaCluster {
    let mut options = KafkaOptions::brokers(1)
        // Records carry fixed timestamps from 2023-24: Kafka's time retention (7 days by
        // default, first checked 30 s after start) would delete them mid-test.
        .property("log.retention.ms", "-1")
        .scram_user(ScramUser::new(ScramMechanism::Sha256, ALICE.0, ALICE.1))
        .scram_user(ScramUser::new(ScramMechanism::Sha512, BOB.0, BOB.1))
        .scram_user(ScramUser::new(ScramMechanism::Sha512, CAROL.0, CAROL.1))
        .plain_user(PAT.0, PAT.1);
    for l in listeners {
        options = options.listener(l);
    }
    KafkaCluster::start_with(name, options)
}

fn tls(ca: &Path, identity: Option<(&Path, &Path)>, verify_hostname: bool) -> TlsConfig {
    let c = certs();
    TlsConfig {
        trust: TrustAnchors::Pem(c.pem(ca)),
        identity: identity.map(|(cert, key)| ClientIdentity {
            certificate_chain: c.pem(cert),
            private_key: Secret::new(c.pem(key)),
        }),
        verify_hostname,
        ..TlsConfig::default()
    }
}

fn config(bootstrap: &str, tls: Option<TlsConfig>, sasl: Option<SaslConfig>) -> ClientConfig {
    let mut cfg = ClientConfig::new(bootstrap);
    cfg.conn.tls = tls.map(|t| t.build().expect("TLS settings build"));
    cfg.conn.sasl = sasl;
    cfg.conn.connect_timeout = Duration::from_secs(5);
    cfg
}

fn scram(hash: ScramHash, user: &str, password: &str) -> SaslConfig {
    SaslConfig::Scram {
        hash,
        username: user.into(),
        password: Secret::new(password),
    }
}

fn plain(user: &str, password: &str) -> SaslConfig {
    SaslConfig::Plain {
        username: user.into(),
        password: Secret::new(password),
    }
}

/// Connects and expects a security failure, fast, naming the broker.
async fn connect_fails(cfg: ClientConfig, what: &str) -> ConnError {
    let started = Instant::now();
    let broker = cfg.bootstrap_servers[0].clone();
    let err = match Cluster::connect(cfg).await {
        Ok(_) => panic!("{what}: connected, expected a failure"),
        Err(e) => e,
    };
    let elapsed = started.elapsed();
    eprintln!("CASE {what}: {err} (after {elapsed:?})");
    assert!(
        elapsed < Duration::from_secs(15),
        "{what}: took {elapsed:?} (retried?): {err}"
    );
    assert!(err.is_security(), "{what}: not a security error: {err}");
    assert!(!err.is_retriable(), "{what}: retriable: {err}");
    let text = err.to_string();
    assert!(text.contains(&broker), "{what}: broker not named: {text}");
    match err {
        protocol_client::Error::Conn(c) => c,
        other => panic!("{what}: {other}"),
    }
}

/// The TLS failure inside `e` (fails the test for any other error).
fn tls_failure(e: &ConnError) -> &TlsFailure {
    match e {
        ConnError::Tls { failure, .. } => failure,
        other => panic!("expected a TLS failure, got: {other}"),
    }
}

/// The SASL failure inside `e` (fails the test for any other error).
fn auth_failure(e: &ConnError) -> &AuthFailure {
    match e {
        ConnError::Auth { failure, .. } => failure,
        other => panic!("expected a SASL failure, got: {other}"),
    }
}

/// Asserts Kafka's refusal of credentials: `Rejected` carrying the broker's own message.
fn assert_refused(e: &ConnError, kafka_message: &str) {
    match auth_failure(e) {
        AuthFailure::Rejected(m) => assert!(m.starts_with(kafka_message), "{e}"),
        other => panic!("expected the broker's refusal ({kafka_message}), got: {other}"),
    }
}

fn records(n: usize, tag: &str) -> Vec<Outgoing> {
    (0..n)
        .map(|i| Outgoing {
            key: Some(format!("{tag}-key-{i}").into_bytes()),
            value: Some(format!("{tag}-value-{i}-{}", "v".repeat(i % 40)).into_bytes()),
            headers: if i % 4 == 0 {
                vec![("h".into(), Some(vec![i as u8]))]
            } else {
                vec![]
            },
            timestamp: Some(1_700_000_000_000 + i as i64),
        })
        .collect()
}

fn producer_record(topic: &str, r: &Outgoing) -> ProducerRecord {
    ProducerRecord {
        topic: topic.to_string(),
        partition: Some(0),
        key: r.key.clone().map(Bytes::from),
        value: r.value.clone().map(Bytes::from),
        headers: r
            .headers
            .iter()
            .map(|(k, v)| protocol_client::record::RecordHeader::new(k, v.as_deref()))
            .collect(),
        timestamp: r.timestamp,
    }
}

/// Our producer writes `n` records over `cluster`; librdkafka (configured with `reference`)
/// reads them back identically.
async fn round_trip(cluster: Arc<Cluster>, reference_cfg: rdkafka::ClientConfig, tag: &str) {
    let topic = strait_tests::unique(tag);
    let rc = reference_cfg.clone();
    let t = topic.clone();
    reference::blocking(move || reference::create_topic_with(&rc, &t, 1));
    let producer = Producer::new(cluster.clone(), ProducerConfig::default())
        .await
        .expect("producer over the secured connection");
    let recs = records(40, tag);
    let mut acks = Vec::new();
    for r in &recs {
        acks.push(
            producer
                .send_nowait(producer_record(&topic, r))
                .await
                .expect("queue"),
        );
    }
    for a in acks {
        a.await.expect("ack channel").expect("acked");
    }
    producer.close().await;
    let t = topic.clone();
    let got = reference::blocking(move || {
        reference::consume_with(&reference_cfg, &t, 0, 0, 40, Duration::from_secs(30))
    });
    for (i, (g, w)) in got.iter().zip(&recs).enumerate() {
        assert_eq!(g.offset, i as i64);
        assert_eq!(g.key, w.key, "{tag}: key {i}");
        assert_eq!(g.value, w.value, "{tag}: value {i}");
        assert_eq!(g.headers, w.headers, "{tag}: headers {i}");
        assert_eq!(g.timestamp, w.timestamp, "{tag}: timestamp {i}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_a_trusted_ca_carries_records_and_librdkafka_reads_them() {
    strait_tests::init_tracing();
    let c = certs();
    let kafka = kafka("tls-ok", vec![tls_listener("SSL", ServerCert::Good, false)]);
    let b = kafka.bootstrap_for(SecurityProtocol::Ssl);
    let cluster = Cluster::connect(config(&b, Some(tls(&c.ca, None, true)), None))
        .await
        .unwrap_or_else(|e| panic!("TLS connect: {e}\n{}", kafka.log(0)));
    let reference_cfg = reference::secure_config(&b, &RefSecurity::tls(&c.ca));
    round_trip(cluster, reference_cfg, "tls").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_failures_are_named_and_not_retried() {
    strait_tests::init_tracing();
    let c = certs();
    let kafka = kafka(
        "tls-neg",
        vec![
            tls_listener("SSL", ServerCert::Good, false),
            tls_listener("SSL_WRONG_HOST", ServerCert::WrongHost, false),
            tls_listener("SSL_EXPIRED", ServerCert::Expired, false),
        ],
    );
    let good = kafka.bootstrap_for_listener("SSL");

    let e = connect_fails(
        config(&good, Some(tls(&c.other_ca, None, true)), None),
        "untrusted CA",
    )
    .await;
    assert!(matches!(tls_failure(&e), TlsFailure::Untrusted(_)), "{e}");

    // Plaintext Kafka bytes to the TLS port: Kafka answers with a TLS alert record
    // (internal_error) and hangs up.
    let e = connect_fails(config(&good, None, None), "plaintext to TLS").await;
    assert!(matches!(tls_failure(&e), TlsFailure::PlaintextToTls), "{e}");

    // A TLS client to Kafka's plaintext listener: Kafka reads the ClientHello's record header
    // as a 369 MB frame size, over socket.request.max.bytes, and hangs up at once; the client's
    // plaintext probe of the port tells why.
    let e = connect_fails(
        config(&kafka.bootstrap(), Some(tls(&c.ca, None, true)), None),
        "TLS to Kafka's plaintext listener",
    )
    .await;
    assert!(matches!(tls_failure(&e), TlsFailure::NotTls(_)), "{e}");

    // The same against tansu, which waits for the rest of that "frame" in silence: the
    // client's own handshake timeout, then the probe.
    let tansu = TansuBroker::start("tls-to-plain");
    let e = connect_fails(
        config(&tansu.bootstrap(), Some(tls(&c.ca, None, true)), None),
        "TLS to tansu's plaintext port",
    )
    .await;
    assert!(matches!(tls_failure(&e), TlsFailure::NotTls(_)), "{e}");

    let wrong = kafka.bootstrap_for_listener("SSL_WRONG_HOST");
    let e = connect_fails(
        config(&wrong, Some(tls(&c.ca, None, true)), None),
        "hostname mismatch",
    )
    .await;
    assert!(
        matches!(tls_failure(&e), TlsFailure::HostnameMismatch(_)),
        "{e}"
    );
    // ssl.endpoint.identification.algorithm= (empty): the same certificate is accepted.
    Cluster::connect(config(&wrong, Some(tls(&c.ca, None, false)), None))
        .await
        .expect("hostname verification off accepts the certificate");

    let e = connect_fails(
        config(
            &kafka.bootstrap_for_listener("SSL_EXPIRED"),
            Some(tls(&c.ca, None, true)),
            None,
        ),
        "expired certificate",
    )
    .await;
    assert!(matches!(tls_failure(&e), TlsFailure::Expired(_)), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_requires_a_certificate_from_the_trusted_ca() {
    strait_tests::init_tracing();
    let c = certs();
    let kafka = kafka(
        "mtls",
        vec![tls_listener("SSL_MTLS", ServerCert::Good, true)],
    );
    let b = kafka.bootstrap_for_listener("SSL_MTLS");
    let e = connect_fails(
        config(&b, Some(tls(&c.ca, None, true)), None),
        "mTLS without a client certificate",
    )
    .await;
    assert!(
        matches!(tls_failure(&e), TlsFailure::ClientCertificateRejected(_)),
        "{e}"
    );
    let e = connect_fails(
        config(
            &b,
            Some(tls(
                &c.ca,
                Some((&c.other_client_cert, &c.other_client_key)),
                true,
            )),
            None,
        ),
        "mTLS with a certificate from another CA",
    )
    .await;
    assert!(
        matches!(tls_failure(&e), TlsFailure::ClientCertificateRejected(_)),
        "{e}"
    );
    let cluster = Cluster::connect(config(
        &b,
        Some(tls(&c.ca, Some((&c.client_cert, &c.client_key)), true)),
        None,
    ))
    .await
    .unwrap_or_else(|e| panic!("mTLS connect: {e}\n{}", kafka.log(0)));
    let reference_cfg = reference::secure_config(
        &b,
        &RefSecurity::tls(&c.ca).with_client_cert(&c.client_cert, &c.client_key),
    );
    round_trip(cluster, reference_cfg, "mtls").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scram_plain_and_oauthbearer_authenticate_and_failures_are_named() {
    strait_tests::init_tracing();
    let kafka = kafka(
        "sasl",
        vec![
            sasl_listener("SASL_PLAINTEXT", None),
            sasl_listener("SASL_SCRAM_ONLY", None)
                .sasl_mechanisms(&["SCRAM-SHA-512", "SCRAM-SHA-256"]),
            sasl_listener("SASL_OAUTH", None).sasl_mechanisms(&["OAUTHBEARER"]),
        ],
    );
    let b = kafka.bootstrap_for_listener("SASL_PLAINTEXT");

    let cluster = Cluster::connect(config(
        &b,
        None,
        Some(scram(ScramHash::Sha256, ALICE.0, ALICE.1)),
    ))
    .await
    .unwrap_or_else(|e| panic!("SCRAM-SHA-256: {e}\n{}", kafka.log(0)));
    let reference_cfg = reference::secure_config(
        &b,
        &RefSecurity::default().with_sasl("SCRAM-SHA-256", ALICE.0, ALICE.1),
    );
    round_trip(cluster, reference_cfg, "scram256").await;

    let cluster = Cluster::connect(config(
        &b,
        None,
        Some(scram(ScramHash::Sha512, BOB.0, BOB.1)),
    ))
    .await
    .unwrap_or_else(|e| panic!("SCRAM-SHA-512: {e}\n{}", kafka.log(0)));
    cluster
        .refresh_metadata()
        .await
        .expect("metadata after SCRAM-SHA-512");

    // PLAIN: no server accepted it before Apache Kafka.
    let cluster = Cluster::connect(config(&b, None, Some(plain(PAT.0, PAT.1))))
        .await
        .unwrap_or_else(|e| panic!("PLAIN: {e}\n{}", kafka.log(0)));
    let reference_cfg =
        reference::secure_config(&b, &RefSecurity::default().with_sasl("PLAIN", PAT.0, PAT.1));
    round_trip(cluster, reference_cfg, "plain").await;

    // OAUTHBEARER with an unsecured token (`alg: none`), which Kafka's default validator takes.
    let mut claims = std::collections::BTreeMap::new();
    claims.insert(
        "unsecuredLoginStringClaim_sub".to_string(),
        "olivia".to_string(),
    );
    let oauth = SaslConfig::OAuthBearer {
        token: TokenSource::Unsecured(claims),
        extensions: Default::default(),
    };
    let cluster = Cluster::connect(config(
        &kafka.bootstrap_for_listener("SASL_OAUTH"),
        None,
        Some(oauth),
    ))
    .await
    .unwrap_or_else(|e| panic!("OAUTHBEARER: {e}\n{}", kafka.log(0)));
    cluster
        .refresh_metadata()
        .await
        .expect("metadata after OAUTHBEARER");

    // Wrong password and unknown user: Kafka answers both with SASL_AUTHENTICATION_FAILED and
    // the same message (the unknown user at the client-first message, the wrong password at
    // the client-final one), and closes the connection.
    let e = connect_fails(
        config(
            &b,
            None,
            Some(scram(ScramHash::Sha256, ALICE.0, "wrong-password")),
        ),
        "wrong password",
    )
    .await;
    assert_refused(&e, KAFKA_SCRAM_REFUSAL);
    assert!(
        !e.to_string().contains("wrong-password"),
        "password leaked: {e}"
    );
    let e = connect_fails(
        config(&b, None, Some(scram(ScramHash::Sha512, "mallory", "x"))),
        "unknown user",
    )
    .await;
    assert_refused(&e, KAFKA_SCRAM_REFUSAL);
    let e = connect_fails(
        config(&b, None, Some(scram(ScramHash::Sha512, ALICE.0, ALICE.1))),
        "SCRAM-SHA-512 for a user with SCRAM-SHA-256 credentials only",
    )
    .await;
    assert_refused(&e, KAFKA_SCRAM_REFUSAL);
    let e = connect_fails(
        config(&b, None, Some(plain(PAT.0, "not-pat-secret"))),
        "PLAIN, wrong password",
    )
    .await;
    assert_refused(&e, KAFKA_PLAIN_REFUSAL);
    assert!(
        !e.to_string().contains("not-pat-secret"),
        "password leaked: {e}"
    );

    // A mechanism the listener does not enable: UNSUPPORTED_SASL_MECHANISM with the enabled
    // ones (in the order of Kafka's set, not the configuration's).
    let e = connect_fails(
        config(
            &kafka.bootstrap_for_listener("SASL_SCRAM_ONLY"),
            None,
            Some(plain(PAT.0, PAT.1)),
        ),
        "mechanism not enabled",
    )
    .await;
    match auth_failure(&e) {
        AuthFailure::UnsupportedMechanism { enabled } => {
            let mut enabled = enabled.clone();
            enabled.sort();
            assert_eq!(enabled, ["SCRAM-SHA-256", "SCRAM-SHA-512"], "{e}")
        }
        other => panic!("expected UnsupportedMechanism, got {other}"),
    }

    // SASL to Kafka's PLAINTEXT listener: SaslHandshake answered with ILLEGAL_SASL_STATE.
    let e = connect_fails(
        config(
            &kafka.bootstrap(),
            None,
            Some(scram(ScramHash::Sha256, ALICE.0, ALICE.1)),
        ),
        "SASL to a listener without SASL",
    )
    .await;
    assert!(
        matches!(auth_failure(&e), AuthFailure::Protocol(m) if m.contains("ILLEGAL_SASL_STATE")),
        "{e}"
    );

    // No SASL to the SASL listener: Kafka answers ApiVersions, then hangs up on Metadata (as
    // on anything but SaslHandshake). A broker going away looks the same, so it is retried
    // within the budget, and the error says what to check.
    let mut cfg = config(&b, None, None);
    cfg.retry.max_elapsed = Duration::from_secs(3);
    let started = Instant::now();
    let err = Cluster::connect(cfg)
        .await
        .map(|_| ())
        .expect_err("no SASL to an authenticating broker");
    eprintln!(
        "CASE plaintext client to a SASL listener: {err} (after {:?})",
        started.elapsed()
    );
    assert!(
        err.to_string().contains("if the listener requires SASL"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sasl_ssl_scram_sha_512_and_plain_over_tls() {
    strait_tests::init_tracing();
    let c = certs();
    let kafka = kafka(
        "sasl-ssl",
        vec![sasl_listener("SASL_SSL", Some((ServerCert::Good, false)))],
    );
    let b = kafka.bootstrap_for(SecurityProtocol::SaslSsl);
    let cluster = Cluster::connect(config(
        &b,
        Some(tls(&c.ca, None, true)),
        Some(scram(ScramHash::Sha512, CAROL.0, CAROL.1)),
    ))
    .await
    .unwrap_or_else(|e| panic!("SASL_SSL: {e}\n{}", kafka.log(0)));
    let reference_cfg = reference::secure_config(
        &b,
        &RefSecurity::tls(&c.ca).with_sasl("SCRAM-SHA-512", CAROL.0, CAROL.1),
    );
    round_trip(cluster, reference_cfg, "sasl-ssl").await;

    let cluster = Cluster::connect(config(
        &b,
        Some(tls(&c.ca, None, true)),
        Some(plain(PAT.0, PAT.1)),
    ))
    .await
    .unwrap_or_else(|e| panic!("SASL_SSL PLAIN: {e}\n{}", kafka.log(0)));
    cluster
        .refresh_metadata()
        .await
        .expect("metadata after PLAIN over TLS");

    let e = connect_fails(
        config(
            &b,
            Some(tls(&c.ca, None, true)),
            Some(scram(ScramHash::Sha512, CAROL.0, "wrong")),
        ),
        "SASL_SSL, wrong password",
    )
    .await;
    assert_refused(&e, KAFKA_SCRAM_REFUSAL);
    let e = connect_fails(
        config(
            &b,
            Some(tls(&c.other_ca, None, true)),
            Some(scram(ScramHash::Sha512, CAROL.0, CAROL.1)),
        ),
        "SASL_SSL, untrusted CA",
    )
    .await;
    assert!(matches!(tls_failure(&e), TlsFailure::Untrusted(_)), "{e}");

    // TLS without SASL to the authenticating listener: it answers ApiVersions, then hangs up on
    // anything but the SASL APIs. Indistinguishable from a broker going away, so it is retried
    // within the retry budget, and the error says what to check.
    let mut cfg = config(&b, Some(tls(&c.ca, None, true)), None);
    cfg.retry.max_elapsed = Duration::from_secs(3);
    let err = Cluster::connect(cfg)
        .await
        .map(|_| ())
        .expect_err("no SASL to an authenticating broker");
    assert!(
        err.to_string().contains("if the listener requires SASL"),
        "{err}"
    );
}

/// A `tracing` writer keeping everything in memory (for the re-authentication test).
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|p| p.into_inner())).into_owned()
    }
}

/// KIP-368 against the real broker: a listener with `connections.max.reauth.ms` = 3 s gives
/// that session lifetime in SaslAuthenticate, and closes a connection that carries on past it
/// without re-authenticating. Our client re-authenticates each connection at 85–95 % of the
/// lifetime while records keep flowing over it; nothing fails, and every record arrives once.
#[test]
fn sasl_sessions_are_reauthenticated_before_kafka_expires_them() {
    const LIFETIME: Duration = Duration::from_secs(3);
    let kafka = kafka(
        "reauth",
        vec![sasl_listener("SASL_REAUTH", None).reauthenticate_after(LIFETIME)],
    );
    let b = kafka.bootstrap_for_listener("SASL_REAUTH");
    let reference_cfg = reference::secure_config(
        &b,
        &RefSecurity::default().with_sasl("SCRAM-SHA-512", BOB.0, BOB.1),
    );
    let topic = strait_tests::unique("reauth");
    {
        let (cfg, t) = (reference_cfg.clone(), topic.clone());
        reference::create_topic_with(&cfg, &t, 1);
    }
    // Our client's log, captured: a current-thread runtime keeps every task on this thread,
    // where the capturing subscriber is the default.
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let recs = records(60, "reauth");
    let started = Instant::now();
    runtime.block_on(async {
        let cluster = Cluster::connect(config(
            &b,
            None,
            Some(scram(ScramHash::Sha512, BOB.0, BOB.1)),
        ))
        .await
        .unwrap_or_else(|e| panic!("SCRAM-SHA-512: {e}\n{}", kafka.log(0)));
        let producer = Producer::new(cluster.clone(), ProducerConfig::default())
            .await
            .expect("producer");
        // One record every 150 ms for 9 s: three session lifetimes.
        for r in &recs {
            producer
                .send_nowait(producer_record(&topic, r))
                .await
                .expect("queue")
                .await
                .expect("ack channel")
                .unwrap_or_else(|e| panic!("record not acknowledged: {e}\n{}", captured.text()));
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
        producer.close().await;
    });
    let elapsed = started.elapsed();
    let log = captured.text();
    let reauths = log
        .lines()
        .filter(|l| l.contains("re-authenticated"))
        .count();
    let failures: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("re-authentication failed") || l.contains("closing connection"))
        .collect();
    eprintln!(
        "re-authentications in {elapsed:?}: {reauths}; session lifetime announced: {}",
        log.lines()
            .find(|l| l.contains("SASL authenticated"))
            .unwrap_or("(none)")
    );
    assert!(
        log.contains(&format!("session_lifetime_ms={}", LIFETIME.as_millis())),
        "Kafka did not announce the session lifetime:\n{log}"
    );
    assert!(
        reauths >= 2,
        "expected at least 2 re-authentications in {elapsed:?}:\n{log}"
    );
    assert!(failures.is_empty(), "{failures:#?}\n{log}");
    let got = reference::consume_with(
        &reference_cfg,
        &topic,
        0,
        0,
        recs.len(),
        Duration::from_secs(30),
    );
    assert_eq!(got.len(), recs.len());
    for (i, (g, w)) in got.iter().zip(&recs).enumerate() {
        assert_eq!((g.offset, &g.value), (i as i64, &w.value), "record {i}");
    }
}

/// A producer with a batch for a partition whose leader it does not know (a broker restarting,
/// leadership moving) asks for metadata until it learns one. When the cluster then refuses its
/// credentials (the password was rotated and Kafka ended the session at its re-authentication),
/// no retry can help: the batch fails at once with the security error, which a caller stops on,
/// instead of waiting out the delivery timeout while every refresh is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_waiting_for_a_leader_fails_with_the_refusal_when_credentials_are_rotated() {
    let kafka = kafka(
        "refused-leaderless",
        vec![sasl_listener("SASL_REAUTH", None).reauthenticate_after(Duration::from_secs(3))],
    );
    let (b, plain) = (
        kafka.bootstrap_for_listener("SASL_REAUTH"),
        kafka.bootstrap(),
    );
    let topic = strait_tests::unique("leaderless");
    let (p, t) = (plain.clone(), topic.clone());
    reference::blocking(move || reference::create_topic(&p, &t, 1));
    let cluster = Cluster::connect(config(
        &b,
        None,
        Some(scram(ScramHash::Sha512, CAROL.0, CAROL.1)),
    ))
    .await
    .expect("SCRAM-SHA-512");
    let delivery_timeout = Duration::from_secs(90);
    let producer = Producer::new(
        cluster,
        ProducerConfig {
            delivery_timeout,
            // As Strait's producers: the partition stops at the failure, nothing after it lands.
            stop_partition_on_failure: true,
            ..ProducerConfig::default()
        },
    )
    .await
    .expect("producer");
    let batch = |tag: &str| {
        let mut b = BatchBuilder::new(Compression::None);
        b.push(1_700_000_000_000, None, Some(tag.as_bytes()), &[]);
        b.build().expect("batch")
    };
    producer
        .append(&topic, 0, batch("before"))
        .await
        .expect("written before the rotation");
    // Partition 1 does not exist: its batches wait for a leader, refreshing metadata.
    let waiting = tokio::spawn(producer.append(&topic, 1, batch("leaderless")));
    let behind = tokio::spawn(producer.append(&topic, 1, batch("behind it")));
    let out = reference::blocking(move || {
        strait_tests::kafka::run_checker(&[
            "scram",
            &plain,
            "SCRAM-SHA-512",
            CAROL.0,
            "rotated-Pa55",
        ])
    });
    assert!(
        out.status.success(),
        "Checker scram: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let rotated = Instant::now();
    let err = tokio::time::timeout(Duration::from_secs(30), waiting)
        .await
        .unwrap_or_else(|_| {
            panic!("the batch still waits 30 s after the rotation (delivery timeout {delivery_timeout:?})")
        })
        .expect("task")
        .expect_err("a partition that does not exist took a batch");
    eprintln!("failed {:?} after the rotation: {err}", rotated.elapsed());
    assert!(err.is_security(), "not a security error: {err:?}");
    assert!(
        err.to_string().contains(KAFKA_SCRAM_REFUSAL),
        "Kafka's refusal is not named: {err}"
    );
    let second = behind
        .await
        .expect("task")
        .expect_err("the batch behind the refused one was written");
    assert!(
        matches!(
            second,
            protocol_client::Error::PartitionStopped { partition: 1, .. }
        ),
        "the batch behind it: {second:?}"
    );
    // Nothing is left unacknowledged: closing does not wait.
    tokio::time::timeout(Duration::from_secs(10), producer.close())
        .await
        .expect("the producer closes");
}
