//! protocol-client's TLS and SASL against real servers: tansu behind stunnel (TLS, mutual TLS),
//! tansu built with SQLite and `--authentication` (SASL/SCRAM), and both together (SASL_SSL).
//! librdkafka is the independent reference: what our producer writes over a secured listener it
//! reads back identically over its own secured connection.
//!
//! Every negative case must fail with its own error kind, quickly (no retry loop), and name the
//! broker. PLAIN and OAUTHBEARER: no server here accepts them (tansu compiles SCRAM only); their
//! wire formats are unit-tested in `protocol-client/src/security/sasl/`.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use protocol_client::cluster::{ClientConfig, Cluster};
use protocol_client::conn::{AuthFailure, ConnError};
use protocol_client::producer::records::ProducerRecord;
use protocol_client::producer::{Producer, ProducerConfig};
use protocol_client::security::sasl::{SaslConfig, ScramHash};
use protocol_client::security::tls::{ClientIdentity, TlsConfig, TlsFailure, TrustAnchors};
use protocol_client::security::Secret;
use strait_tests::reference::{self, Outgoing, RefSecurity};
use strait_tests::secure::{
    certs, ScramMechanism, ScramUser, SecureBroker, ServerCert, SASL_TANSU_MISSING,
};
use strait_tests::skip;
use strait_tests::tansu::TansuBroker;

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

/// Connects and expects a security failure, fast, naming the broker.
async fn connect_fails(cfg: ClientConfig, what: &str) -> ConnError {
    let started = Instant::now();
    let broker = cfg.bootstrap_servers[0].clone();
    let err = match Cluster::connect(cfg).await {
        Ok(_) => panic!("{what}: connected, expected a failure"),
        Err(e) => e,
    };
    let elapsed = started.elapsed();
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
        let rec = ProducerRecord {
            topic: topic.clone(),
            partition: Some(0),
            key: r.key.clone().map(Bytes::from),
            value: r.value.clone().map(Bytes::from),
            headers: r
                .headers
                .iter()
                .map(|(k, v)| protocol_client::record::RecordHeader::new(k, v.as_deref()))
                .collect(),
            timestamp: r.timestamp,
        };
        acks.push(producer.send_nowait(rec).await.expect("queue"));
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
    let broker = SecureBroker::tls("tls-ok", ServerCert::Good, false);
    let cluster = Cluster::connect(config(
        &broker.bootstrap(),
        Some(tls(&c.ca, None, true)),
        None,
    ))
    .await
    .unwrap_or_else(|e| panic!("TLS connect: {e}\n{}", broker.log()));
    let reference_cfg = reference::secure_config(&broker.bootstrap(), &RefSecurity::tls(&c.ca));
    round_trip(cluster, reference_cfg, "tls").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_failures_are_named_and_not_retried() {
    strait_tests::init_tracing();
    let c = certs();
    let good = SecureBroker::tls("tls-neg", ServerCert::Good, false);

    let e = connect_fails(
        config(&good.bootstrap(), Some(tls(&c.other_ca, None, true)), None),
        "untrusted CA",
    )
    .await;
    assert!(matches!(tls_failure(&e), TlsFailure::Untrusted(_)), "{e}");

    // Plaintext Kafka bytes to the TLS port.
    let e = connect_fails(config(&good.bootstrap(), None, None), "plaintext to TLS").await;
    assert!(matches!(tls_failure(&e), TlsFailure::PlaintextToTls), "{e}");

    // A TLS client to a plaintext listener (tansu's own port).
    let plain = TansuBroker::start("tls-to-plain");
    let e = connect_fails(
        config(&plain.bootstrap(), Some(tls(&c.ca, None, true)), None),
        "TLS to plaintext",
    )
    .await;
    assert!(matches!(tls_failure(&e), TlsFailure::NotTls(_)), "{e}");

    let wrong = SecureBroker::tls("tls-wronghost", ServerCert::WrongHost, false);
    let e = connect_fails(
        config(&wrong.bootstrap(), Some(tls(&c.ca, None, true)), None),
        "hostname mismatch",
    )
    .await;
    assert!(
        matches!(tls_failure(&e), TlsFailure::HostnameMismatch(_)),
        "{e}"
    );
    // ssl.endpoint.identification.algorithm= (empty): the same certificate is accepted.
    Cluster::connect(config(
        &wrong.bootstrap(),
        Some(tls(&c.ca, None, false)),
        None,
    ))
    .await
    .expect("hostname verification off accepts the certificate");

    let expired = SecureBroker::tls("tls-expired", ServerCert::Expired, false);
    let e = connect_fails(
        config(&expired.bootstrap(), Some(tls(&c.ca, None, true)), None),
        "expired certificate",
    )
    .await;
    assert!(matches!(tls_failure(&e), TlsFailure::Expired(_)), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_requires_a_certificate_from_the_trusted_ca() {
    strait_tests::init_tracing();
    let c = certs();
    let broker = SecureBroker::tls("mtls", ServerCert::Good, true);
    let e = connect_fails(
        config(&broker.bootstrap(), Some(tls(&c.ca, None, true)), None),
        "mTLS without a client certificate",
    )
    .await;
    assert!(
        matches!(tls_failure(&e), TlsFailure::ClientCertificateRejected(_)),
        "{e}"
    );
    let e = connect_fails(
        config(
            &broker.bootstrap(),
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
        &broker.bootstrap(),
        Some(tls(&c.ca, Some((&c.client_cert, &c.client_key)), true)),
        None,
    ))
    .await
    .unwrap_or_else(|e| panic!("mTLS connect: {e}\n{}", broker.log()));
    let reference_cfg = reference::secure_config(
        &broker.bootstrap(),
        &RefSecurity::tls(&c.ca).with_client_cert(&c.client_cert, &c.client_key),
    );
    round_trip(cluster, reference_cfg, "mtls").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scram_sha_256_and_512_authenticate_and_failures_are_named() {
    strait_tests::init_tracing();
    let users = [
        ScramUser::new(ScramMechanism::Sha256, "alice", "alice-secret"),
        ScramUser::new(ScramMechanism::Sha512, "bob", "bob-secret"),
    ];
    let Some(broker) = SecureBroker::sasl("scram", &users, None) else {
        skip!("{SASL_TANSU_MISSING}");
    };
    let b = broker.bootstrap();

    let cluster = Cluster::connect(config(
        &b,
        None,
        Some(scram(ScramHash::Sha256, "alice", "alice-secret")),
    ))
    .await
    .unwrap_or_else(|e| panic!("SCRAM-SHA-256: {e}\n{}", broker.log()));
    let reference_cfg = reference::secure_config(
        &b,
        &RefSecurity::default().with_sasl("SCRAM-SHA-256", "alice", "alice-secret"),
    );
    round_trip(cluster, reference_cfg, "scram256").await;

    let cluster = Cluster::connect(config(
        &b,
        None,
        Some(scram(ScramHash::Sha512, "bob", "bob-secret")),
    ))
    .await
    .unwrap_or_else(|e| panic!("SCRAM-SHA-512: {e}\n{}", broker.log()));
    cluster
        .refresh_metadata()
        .await
        .expect("metadata after SCRAM-SHA-512");

    let e = connect_fails(
        config(
            &b,
            None,
            Some(scram(ScramHash::Sha256, "alice", "wrong-password")),
        ),
        "wrong password",
    )
    .await;
    assert!(
        matches!(auth_failure(&e), AuthFailure::WrongPassword { .. }),
        "{e}"
    );
    assert!(
        !e.to_string().contains("wrong-password"),
        "password leaked: {e}"
    );

    let e = connect_fails(
        config(&b, None, Some(scram(ScramHash::Sha512, "mallory", "x"))),
        "unknown user",
    )
    .await;
    assert!(
        matches!(auth_failure(&e), AuthFailure::UnknownUser { .. }),
        "{e}"
    );

    let e = connect_fails(
        config(
            &b,
            None,
            Some(SaslConfig::Plain {
                username: "alice".into(),
                password: Secret::new("alice-secret"),
            }),
        ),
        "unsupported mechanism",
    )
    .await;
    assert!(
        matches!(
            auth_failure(&e),
            AuthFailure::UnsupportedMechanism { .. } | AuthFailure::MechanismRefused
        ),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sasl_ssl_scram_sha_512_over_tls() {
    strait_tests::init_tracing();
    let c = certs();
    let users = [ScramUser::new(
        ScramMechanism::Sha512,
        "carol",
        "carol-secret",
    )];
    let Some(broker) = SecureBroker::sasl("sasl-ssl", &users, Some((ServerCert::Good, false)))
    else {
        skip!("{SASL_TANSU_MISSING}");
    };
    let cluster = Cluster::connect(config(
        &broker.bootstrap(),
        Some(tls(&c.ca, None, true)),
        Some(scram(ScramHash::Sha512, "carol", "carol-secret")),
    ))
    .await
    .unwrap_or_else(|e| panic!("SASL_SSL: {e}\n{}", broker.log()));
    let reference_cfg = reference::secure_config(
        &broker.bootstrap(),
        &RefSecurity::tls(&c.ca).with_sasl("SCRAM-SHA-512", "carol", "carol-secret"),
    );
    round_trip(cluster, reference_cfg, "sasl-ssl").await;
    // TLS without SASL to the authenticating broker: it answers ApiVersions, then hangs up on
    // anything but the SASL APIs. Indistinguishable from a broker going away, so it is retried
    // within the retry budget, and the error says what to check.
    let mut cfg = config(&broker.bootstrap(), Some(tls(&c.ca, None, true)), None);
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
