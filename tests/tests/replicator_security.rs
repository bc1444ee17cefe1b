//! `strait run` between secured clusters, configured the MM2 way (mm2.properties) and the
//! Strimzi way (KafkaMirrorMaker2 YAML with secrets from files), against real servers: tansu
//! behind stunnel for TLS and mutual TLS, the SQLite tansu with `--authentication` for SASL/SCRAM.
//! librdkafka writes the source and reads the target over its own secured connections, and the
//! records must come out byte-identical at the same offsets.
//!
//! Negative cases: each misconfiguration makes `strait run` exit non-zero quickly with its own
//! readable error naming the cluster alias and the broker, writes nothing to the target, and
//! never prints a secret (the run logs at `trace`).

use std::path::Path;
use std::time::Duration;

use strait_tests::reference::{self, Outgoing, RefRecord, RefSecurity};
use strait_tests::secure::{
    certs, ScramMechanism, ScramUser, SecureBroker, ServerCert, SASL_TANSU_MISSING,
};
use strait_tests::skip;
use strait_tests::strait::{mm2_properties, strait_command, StraitProcess};
use strait_tests::tansu::TansuBroker;

const SRC_PASSWORD: &str = "src-Pa55-word";

fn records(n: usize) -> Vec<Outgoing> {
    (0..n)
        .map(|i| Outgoing {
            key: (i % 3 != 0).then(|| format!("k{i}").into_bytes()),
            value: Some(format!("secured-value-{i}-{}", "z".repeat(i % 70)).into_bytes()),
            headers: if i % 5 == 0 {
                vec![
                    ("trace".into(), Some(vec![i as u8, 0xff])),
                    ("nil".into(), None),
                ]
            } else {
                vec![]
            },
            timestamp: Some(1_710_000_000_000 + i as i64 * 7),
        })
        .collect()
}

fn expected(recs: &[Outgoing]) -> Vec<RefRecord> {
    recs.iter()
        .enumerate()
        .map(|(i, r)| RefRecord {
            offset: i as i64,
            timestamp: r.timestamp,
            key: r.key.clone(),
            value: r.value.clone(),
            headers: r.headers.clone(),
        })
        .collect()
}

/// A PEM file's text as a one-line `.properties` value (`\n` escapes).
fn inline(path: &Path) -> String {
    certs().pem(path).trim_end().replace('\n', "\\n")
}

/// Topic and group settings shared by every test config.
fn flow_settings() -> &'static str {
    "replication.factor = 1\n\
     offset-syncs.topic.replication.factor = 1\n\
     checkpoints.topic.replication.factor = 1\n\
     heartbeats.topic.replication.factor = 1\n\
     emit.checkpoints.interval.seconds = 1\n\
     emit.heartbeats.interval.seconds = 1\n\
     refresh.topics.interval.seconds = 2\n\
     refresh.groups.interval.seconds = 1\n"
}

#[test]
fn sasl_ssl_scram_512_source_to_mutual_tls_target_via_mm2_properties() {
    strait_tests::init_tracing();
    let c = certs();
    let users = [ScramUser::new(
        ScramMechanism::Sha512,
        "mirror",
        SRC_PASSWORD,
    )];
    let Some(source) = SecureBroker::sasl("e2e-sasl-ssl", &users, Some((ServerCert::Good, false)))
    else {
        skip!("{SASL_TANSU_MISSING}");
    };
    let target = SecureBroker::tls("e2e-mtls", ServerCert::Good, true);
    let src_ref = RefSecurity::tls(&c.ca).with_sasl("SCRAM-SHA-512", "mirror", SRC_PASSWORD);
    let src_cfg = reference::secure_config(&source.bootstrap(), &src_ref);
    let tgt_cfg = reference::secure_config(
        &target.bootstrap(),
        &RefSecurity::tls(&c.ca).with_client_cert(&c.client_cert, &c.client_key),
    );
    let topic = strait_tests::unique("orders");
    let recs = records(300);
    {
        let (cfg, t, r) = (src_cfg.clone(), topic.clone(), recs.clone());
        reference::blocking(move || {
            reference::create_topic_with(&cfg, &t, 2);
            reference::produce_with(&cfg, &t, 1, &r);
        });
    }
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "clusters = A, B\n\
         A.bootstrap.servers = {a}\n\
         B.bootstrap.servers = {b}\n\
         A->B.enabled = true\n\
         A->B.topics = {topic}\n\
         {flow}\
         A.security.protocol = SASL_SSL\n\
         A.sasl.mechanism = SCRAM-SHA-512\n\
         A.sasl.jaas.config = org.apache.kafka.common.security.scram.ScramLoginModule required username=\"mirror\" password=\"${{env:STRAIT_TEST_SRC_PASSWORD}}\";\n\
         A.ssl.truststore.type = PEM\n\
         A.ssl.truststore.location = {ca}\n\
         B.security.protocol = SSL\n\
         B.ssl.truststore.certificates = {ca_inline}\n\
         B.ssl.keystore.type = PEM\n\
         B.ssl.keystore.certificate.chain = {cert_inline}\n\
         B.ssl.keystore.key = {key_inline}\n",
        a = source.bootstrap(),
        b = target.bootstrap(),
        flow = flow_settings(),
        ca = c.ca.display(),
        ca_inline = inline(&c.ca),
        cert_inline = inline(&c.client_cert),
        key_inline = inline(&c.client_key),
    );
    let strait = StraitProcess::start_with(
        "mm2.properties",
        &config,
        dir.path(),
        &[
            ("STRAIT_TEST_SRC_PASSWORD", SRC_PASSWORD),
            ("STRAIT_LOG", "debug"),
        ],
    );
    let remote = format!("A.{topic}");
    let got = reference::blocking(move || {
        reference::consume_with(&tgt_cfg, &remote, 1, 0, 300, Duration::from_secs(90))
    });
    let log = strait.log();
    assert_eq!(
        got,
        expected(&recs),
        "mirrored over SASL_SSL -> mTLS\n{log}"
    );
    assert!(!log.contains(SRC_PASSWORD), "password in the log");
    assert!(
        !log.contains(&inline(&c.client_key)[40..80]),
        "key material in the log"
    );
    assert!(log.contains("SASL authenticated"), "{log}");
}

#[test]
fn sasl_plaintext_scram_256_source_to_mutual_tls_target_via_strimzi_yaml() {
    strait_tests::init_tracing();
    let c = certs();
    let users = [ScramUser::new(
        ScramMechanism::Sha256,
        "mm2-user",
        SRC_PASSWORD,
    )];
    let Some(source) = SecureBroker::sasl("e2e-sasl-plain", &users, None) else {
        skip!("{SASL_TANSU_MISSING}");
    };
    let target = SecureBroker::tls("e2e-strimzi-mtls", ServerCert::Good, true);
    let src_cfg = reference::secure_config(
        &source.bootstrap(),
        &RefSecurity::default().with_sasl("SCRAM-SHA-256", "mm2-user", SRC_PASSWORD),
    );
    let tgt_cfg = reference::secure_config(
        &target.bootstrap(),
        &RefSecurity::tls(&c.ca).with_client_cert(&c.client_cert, &c.client_key),
    );
    let topic = strait_tests::unique("payments");
    let recs = records(200);
    {
        let (cfg, t, r) = (src_cfg.clone(), topic.clone(), recs.clone());
        reference::blocking(move || {
            reference::create_topic_with(&cfg, &t, 1);
            reference::produce_with(&cfg, &t, 0, &r);
        });
    }
    // Secrets laid out as Kubernetes mounts them: <dir>/<secret name>/<key>.
    let dir = tempfile::tempdir().unwrap();
    let secrets = dir.path().join("secrets");
    for (secret, key, content) in [
        ("mm2-user", "password", format!("{SRC_PASSWORD}\n")),
        ("target-ca", "ca.crt", c.pem(&c.ca)),
        ("mm2-tls", "user.crt", c.pem(&c.client_cert)),
        ("mm2-tls", "user.key", c.pem(&c.client_key)),
    ] {
        std::fs::create_dir_all(secrets.join(secret)).unwrap();
        std::fs::write(secrets.join(secret).join(key), content).unwrap();
    }
    let yaml = format!(
        r#"apiVersion: kafka.strimzi.io/v1beta2
kind: KafkaMirrorMaker2
metadata:
  name: secured
spec:
  replicas: 1
  connectCluster: target
  clusters:
    - alias: source
      bootstrapServers: {a}
      authentication:
        type: scram-sha-256
        username: mm2-user
        passwordSecret:
          secretName: mm2-user
          password: password
    - alias: target
      bootstrapServers: {b}
      tls:
        trustedCertificates:
          - secretName: target-ca
            certificate: ca.crt
      authentication:
        type: tls
        certificateAndKey:
          secretName: mm2-tls
          certificate: user.crt
          key: user.key
  mirrors:
    - sourceCluster: source
      targetCluster: target
      sourceConnector:
        config:
          replication.factor: 1
          offset-syncs.topic.replication.factor: 1
          refresh.topics.interval.seconds: 2
      checkpointConnector:
        config:
          checkpoints.topic.replication.factor: 1
          emit.checkpoints.interval.seconds: 1
      heartbeatConnector:
        config:
          heartbeats.topic.replication.factor: 1
      topicsPattern: "{topic}"
"#,
        a = source.bootstrap(),
        b = target.bootstrap(),
    );
    let secrets_dir = secrets.display().to_string();
    let strait = StraitProcess::start_with(
        "mm2.yaml",
        &yaml,
        dir.path(),
        &[
            ("STRAIT_SECRETS_DIR", &secrets_dir),
            ("STRAIT_LOG", "debug"),
        ],
    );
    let remote = format!("source.{topic}");
    let got = reference::blocking(move || {
        reference::consume_with(&tgt_cfg, &remote, 0, 0, 200, Duration::from_secs(90))
    });
    let log = strait.log();
    assert_eq!(got, expected(&recs), "mirrored via Strimzi YAML\n{log}");
    assert!(!log.contains(SRC_PASSWORD), "password in the log");
}

/// One misconfiguration: `strait run` must exit non-zero within the time limit, with `phrase`
/// and the broker's address in its output, and print no secret.
fn expect_refused(name: &str, config: &str, broker: &str, phrase: &str, secrets: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mm2.properties");
    std::fs::write(&path, config).unwrap();
    strait_tests::strait::strait_binary(); // built before the clock starts
    let started = std::time::Instant::now();
    let (status, out) = strait_command(
        &["run", "--config", path.to_str().unwrap()],
        &[
            ("STRAIT_LOG", "trace"),
            ("STRAIT_TEST_SRC_PASSWORD", SRC_PASSWORD),
        ],
        Duration::from_secs(60),
    );
    let elapsed = started.elapsed();
    let status = status.unwrap_or_else(|| panic!("{name}: still running after 60 s\n{out}"));
    assert!(!status.success(), "{name}: exited 0\n{out}");
    assert!(
        elapsed < Duration::from_secs(30),
        "{name}: took {elapsed:?} (retrying a configuration error?)\n{out}"
    );
    let last = out
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    for want in ["cluster A", broker, phrase] {
        assert!(
            last.contains(want),
            "{name}: the final error lacks `{want}`: {last}\n{out}"
        );
    }
    for s in secrets {
        assert!(!out.contains(s), "{name}: secret `{s}` printed\n{out}");
    }
    eprintln!("{name}: {last}");
}

#[test]
fn misconfigurations_fail_fast_with_distinct_errors_and_write_nothing() {
    strait_tests::init_tracing();
    let c = certs();
    let target = TansuBroker::start("neg-target");
    let b = target.bootstrap();
    let base = |a: &str, extra: &str| mm2_properties(a, &b, extra);

    // TLS failures.
    let good = SecureBroker::tls("neg-tls", ServerCert::Good, false);
    let wrong = SecureBroker::tls("neg-wronghost", ServerCert::WrongHost, false);
    let expired = SecureBroker::tls("neg-expired", ServerCert::Expired, false);
    let mtls = SecureBroker::tls("neg-mtls", ServerCert::Good, true);
    let plain = TansuBroker::start("neg-plain");
    let ssl = |ca: &Path| {
        format!(
            "A.security.protocol = SSL\nA.ssl.truststore.type = PEM\nA.ssl.truststore.location = {}\n",
            ca.display()
        )
    };
    expect_refused(
        "untrusted certificate",
        &base(&good.bootstrap(), &ssl(&c.other_ca)),
        &good.bootstrap(),
        "is not trusted",
        &[],
    );
    expect_refused(
        "hostname mismatch",
        &base(&wrong.bootstrap(), &ssl(&c.ca)),
        &wrong.bootstrap(),
        "not valid for this host name",
        &[],
    );
    expect_refused(
        "expired certificate",
        &base(&expired.bootstrap(), &ssl(&c.ca)),
        &expired.bootstrap(),
        "outside its validity period",
        &[],
    );
    expect_refused(
        "TLS to a plaintext port",
        &base(&plain.bootstrap(), &ssl(&c.ca)),
        &plain.bootstrap(),
        "did not answer the TLS handshake with TLS",
        &[],
    );
    expect_refused(
        "plaintext to a TLS port",
        &base(&good.bootstrap(), ""),
        &good.bootstrap(),
        "it is a TLS listener",
        &[],
    );
    expect_refused(
        "mutual TLS without a client certificate",
        &base(&mtls.bootstrap(), &ssl(&c.ca)),
        &mtls.bootstrap(),
        "refused the client certificate",
        &[],
    );
    expect_refused(
        "mutual TLS with another CA's client certificate",
        &base(
            &mtls.bootstrap(),
            &format!(
                "{}A.ssl.keystore.type = PEM\nA.ssl.keystore.certificate.chain = {}\nA.ssl.keystore.key = {}\n",
                ssl(&c.ca),
                inline(&c.other_client_cert),
                inline(&c.other_client_key)
            ),
        ),
        &mtls.bootstrap(),
        "refused the client certificate",
        &[&inline(&c.other_client_key)[40..80]],
    );
    expect_refused(
        "encrypted client key",
        &base(
            &mtls.bootstrap(),
            &format!(
                "{}A.ssl.keystore.type = PEM\nA.ssl.keystore.certificate.chain = {}\nA.ssl.keystore.key = {}\nA.ssl.key.password = {}\n",
                ssl(&c.ca),
                inline(&c.client_cert),
                inline(&c.client_key_encrypted),
                c.client_key_password
            ),
        ),
        "A.ssl",
        "encrypted",
        &[
            &c.client_key_password,
            &inline(&c.client_key_encrypted)[60..100],
        ],
    );

    // SASL failures.
    let users = [ScramUser::new(ScramMechanism::Sha256, "svc", SRC_PASSWORD)];
    let Some(sasl) = SecureBroker::sasl("neg-sasl", &users, None) else {
        skip!("{SASL_TANSU_MISSING}");
    };
    let jaas = |mechanism: &str, module: &str, user: &str, password: &str| {
        format!(
            "A.security.protocol = SASL_PLAINTEXT\nA.sasl.mechanism = {mechanism}\nA.sasl.jaas.config = org.apache.kafka.common.security.{module} required username=\"{user}\" password=\"{password}\";\n"
        )
    };
    let scram = "scram.ScramLoginModule";
    expect_refused(
        "wrong password",
        &base(
            &sasl.bootstrap(),
            &jaas("SCRAM-SHA-256", scram, "svc", "not-the-Pa55"),
        ),
        &sasl.bootstrap(),
        "wrong password for user `svc`",
        &["not-the-Pa55"],
    );
    expect_refused(
        "unknown user",
        &base(
            &sasl.bootstrap(),
            &jaas("SCRAM-SHA-256", scram, "nobody", "nobody-Pa55"),
        ),
        &sasl.bootstrap(),
        "unknown user `nobody`",
        &["nobody-Pa55"],
    );
    expect_refused(
        "unsupported mechanism",
        &base(
            &sasl.bootstrap(),
            &jaas(
                "PLAIN",
                "plain.PlainLoginModule",
                "svc",
                "${env:STRAIT_TEST_SRC_PASSWORD}",
            ),
        ),
        &sasl.bootstrap(),
        "not enabled",
        &[SRC_PASSWORD],
    );
    expect_refused(
        "SASL to a listener without SASL",
        &base(
            &plain.bootstrap(),
            &jaas(
                "SCRAM-SHA-256",
                scram,
                "svc",
                "${env:STRAIT_TEST_SRC_PASSWORD}",
            ),
        ),
        &plain.bootstrap(),
        "probably does not use SASL",
        &[SRC_PASSWORD],
    );

    // `strait check` with good credentials: describes the security without the secret.
    {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mm2.properties");
        std::fs::write(
            &path,
            base(
                &sasl.bootstrap(),
                &jaas(
                    "SCRAM-SHA-256",
                    scram,
                    "svc",
                    "${env:STRAIT_TEST_SRC_PASSWORD}",
                ),
            ),
        )
        .unwrap();
        let (status, out) = strait_command(
            &["check", "--config", path.to_str().unwrap()],
            &[
                ("STRAIT_LOG", "trace"),
                ("STRAIT_TEST_SRC_PASSWORD", SRC_PASSWORD),
            ],
            Duration::from_secs(60),
        );
        assert!(status.is_some_and(|s| s.success()), "strait check\n{out}");
        assert!(
            out.contains("cluster A: SASL_PLAINTEXT, mechanism SCRAM-SHA-256 as user `svc`"),
            "{out}"
        );
        assert!(
            !out.contains(SRC_PASSWORD),
            "password printed by strait check\n{out}"
        );
    }

    // Nothing reached the target: no topic was created there.
    let topics = tokio::runtime::Runtime::new().unwrap().block_on(async {
        let c = protocol_client::cluster::Cluster::connect(
            protocol_client::cluster::ClientConfig::new(&b),
        )
        .await
        .expect("connect to the target");
        let md = c.refresh_all_topics().await.expect("target metadata");
        md.topics.keys().cloned().collect::<Vec<_>>()
    });
    assert!(
        topics.iter().all(|t| !t.starts_with("A.")),
        "the target got topics: {topics:?}"
    );
}
