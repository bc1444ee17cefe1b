//! `strait run` between secured clusters, configured the MM2 way (mm2.properties) and the
//! Strimzi way (KafkaMirrorMaker2 YAML with secrets from files), against Apache Kafka's own
//! security listeners: `SASL_SSL` and `SASL_PLAINTEXT` with SCRAM sources, mutual-TLS (`SSL`
//! with `ssl.client.auth=required`) targets. librdkafka writes the source and reads the target
//! over its own secured connections, and the records must come out byte-identical at the same
//! offsets.
//!
//! Negative cases: each misconfiguration makes `strait run` exit non-zero quickly with a
//! readable error naming the cluster alias and the broker, writes nothing to the target, and
//! never prints a secret (the run logs at `trace`). Kafka refuses a wrong password and an
//! unknown user with the same answer, so those two share their message; one case runs against
//! tansu, whose listener without SASL answers SaslHandshake differently from Kafka's.

use std::path::Path;
use std::time::Duration;

use strait_tests::kafka::{KafkaCluster, KafkaListener, KafkaOptions};
use strait_tests::reference::{self, Outgoing, RefRecord, RefSecurity};
use strait_tests::secure::{
    certs, sasl_listener, tls_listener, ScramMechanism, ScramUser, ServerCert,
};
use strait_tests::strait::{mm2_properties, strait_command, StraitProcess};
use strait_tests::tansu::TansuBroker;

const SRC_PASSWORD: &str = "src-Pa55-word";

/// A source cluster with `listeners` and every SCRAM user of this file (one storage template):
/// `mirror` (SCRAM-SHA-512), `mm2-user` and `svc` (SCRAM-SHA-256), all with [`SRC_PASSWORD`].
fn source(name: &str, listeners: Vec<KafkaListener>) -> KafkaCluster {
    let mut options = KafkaOptions::brokers(1)
        // Records carry fixed timestamps from 2023-24: Kafka's time retention (7 days by
        // default, first checked 30 s after start) would delete them mid-test.
        .property("log.retention.ms", "-1")
        .scram_user(ScramUser::new(
            ScramMechanism::Sha512,
            "mirror",
            SRC_PASSWORD,
        ))
        .scram_user(ScramUser::new(
            ScramMechanism::Sha256,
            "mm2-user",
            SRC_PASSWORD,
        ))
        .scram_user(ScramUser::new(ScramMechanism::Sha256, "svc", SRC_PASSWORD));
    for l in listeners {
        options = options.listener(l);
    }
    KafkaCluster::start_with(name, options)
}

/// A target cluster whose `SSL_MTLS` listener requires a client certificate from the test CA.
fn mtls_target(name: &str) -> KafkaCluster {
    KafkaCluster::start_with(
        name,
        KafkaOptions::brokers(1)
            .property("log.retention.ms", "-1")
            .listener(tls_listener("SSL_MTLS", ServerCert::Good, true)),
    )
}

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

/// Waits until `topic` exists on the cluster `cfg` reaches (librdkafka's consumer reports a
/// topic that does not exist yet as a fatal error: Apache Kafka answers
/// UNKNOWN_TOPIC_OR_PARTITION until Strait has created the remote topic).
fn wait_for_topic(cfg: &rdkafka::ClientConfig, topic: &str, within: Duration) {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let client: BaseConsumer = cfg.create().expect("metadata client");
    let deadline = std::time::Instant::now() + within;
    loop {
        let exists = client
            .fetch_metadata(Some(topic), Duration::from_secs(2))
            .is_ok_and(|md| {
                md.topics()
                    .iter()
                    .any(|t| t.name() == topic && t.error().is_none() && !t.partitions().is_empty())
            });
        if exists {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{topic} not created on the target within {within:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
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
     offset.storage.replication.factor = 1\n\
     emit.checkpoints.interval.seconds = 1\n\
     emit.heartbeats.interval.seconds = 1\n\
     refresh.topics.interval.seconds = 2\n\
     refresh.groups.interval.seconds = 1\n"
}

#[test]
fn sasl_ssl_scram_512_source_to_mutual_tls_target_via_mm2_properties() {
    strait_tests::init_tracing();
    let c = certs();
    let (source, target) = strait_tests::kafka::start_source_and_target(
        || {
            source(
                "e2e-sasl-ssl",
                vec![sasl_listener("SASL_SSL", Some((ServerCert::Good, false)))],
            )
        },
        || mtls_target("e2e-mtls"),
    );
    let a = source.bootstrap_for_listener("SASL_SSL");
    let b = target.bootstrap_for_listener("SSL_MTLS");
    let src_ref = RefSecurity::tls(&c.ca).with_sasl("SCRAM-SHA-512", "mirror", SRC_PASSWORD);
    let src_cfg = reference::secure_config(&a, &src_ref);
    let tgt_cfg = reference::secure_config(
        &b,
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
        wait_for_topic(&tgt_cfg, &remote, Duration::from_secs(90));
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
    let (source, target) = strait_tests::kafka::start_source_and_target(
        || {
            source(
                "e2e-sasl-plain",
                vec![sasl_listener("SASL_PLAINTEXT", None)],
            )
        },
        || mtls_target("e2e-strimzi-mtls"),
    );
    let a = source.bootstrap_for_listener("SASL_PLAINTEXT");
    let b = target.bootstrap_for_listener("SSL_MTLS");
    let src_cfg = reference::secure_config(
        &a,
        &RefSecurity::default().with_sasl("SCRAM-SHA-256", "mm2-user", SRC_PASSWORD),
    );
    let tgt_cfg = reference::secure_config(
        &b,
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
      config:
        offset.storage.replication.factor: 1
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
        wait_for_topic(&tgt_cfg, &remote, Duration::from_secs(90));
        reference::consume_with(&tgt_cfg, &remote, 0, 0, 200, Duration::from_secs(90))
    });
    let log = strait.log();
    assert_eq!(got, expected(&recs), "mirrored via Strimzi YAML\n{log}");
    assert!(!log.contains(SRC_PASSWORD), "password in the log");
}

/// A listener's bootstrap address (the `.bootstrap()` of each case's broker).
struct Listener(String);

impl Listener {
    fn bootstrap(&self) -> String {
        self.0.clone()
    }
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
    // Cluster A: every listener a case needs; SASL with SCRAM only (PLAIN is "not enabled").
    let (source, target) = strait_tests::kafka::start_source_and_target(
        || {
            source(
                "neg-source",
                vec![
                    tls_listener("SSL", ServerCert::Good, false),
                    tls_listener("SSL_WRONG_HOST", ServerCert::WrongHost, false),
                    tls_listener("SSL_EXPIRED", ServerCert::Expired, false),
                    tls_listener("SSL_MTLS", ServerCert::Good, true),
                    sasl_listener("SASL_PLAINTEXT", None)
                        .sasl_mechanisms(&["SCRAM-SHA-256", "SCRAM-SHA-512"]),
                ],
            )
        },
        || KafkaCluster::start("neg-target"),
    );
    let b = target.bootstrap();
    let base = |a: &str, extra: &str| mm2_properties(a, &b, extra);
    let listener = |name: &str| Listener(source.bootstrap_for_listener(name));
    let good = listener("SSL");
    let wrong = listener("SSL_WRONG_HOST");
    let expired = listener("SSL_EXPIRED");
    let mtls = listener("SSL_MTLS");
    let plain = listener("PLAINTEXT");

    // TLS failures.
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
    let sasl = listener("SASL_PLAINTEXT");
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
        "refused the credentials: Authentication failed during authentication due to invalid credentials with SASL mechanism SCRAM-SHA-256",
        &["not-the-Pa55"],
    );
    expect_refused(
        "unknown user",
        &base(
            &sasl.bootstrap(),
            &jaas("SCRAM-SHA-256", scram, "nobody", "nobody-Pa55"),
        ),
        &sasl.bootstrap(),
        "refused the credentials: Authentication failed during authentication due to invalid credentials with SASL mechanism SCRAM-SHA-256",
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
        "the mechanism is not enabled on the broker (it enables: SCRAM-SHA-",
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
        "SaslHandshake answered error code 34 (ILLEGAL_SASL_STATE)",
        &[SRC_PASSWORD],
    );
    // tansu's listener without SASL answers SaslHandshake with UNSUPPORTED_SASL_MECHANISM,
    // listing the very mechanism asked for.
    let tansu = TansuBroker::start("neg-plain");
    expect_refused(
        "SASL to tansu without SASL",
        &base(
            &tansu.bootstrap(),
            &jaas(
                "SCRAM-SHA-256",
                scram,
                "svc",
                "${env:STRAIT_TEST_SRC_PASSWORD}",
            ),
        ),
        &tansu.bootstrap(),
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
    drop(source);
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

/// Waits until `topic`/0 on `bootstrap` (plaintext) holds `n` records, or fails after `within`.
fn wait_for_records(
    bootstrap: &str,
    topic: &str,
    n: i64,
    within: Duration,
    log: impl Fn() -> String,
) {
    let deadline = std::time::Instant::now() + within;
    loop {
        if matches!(reference::try_watermarks(bootstrap, topic, 0), Ok((_, h)) if h >= n) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{topic} did not reach {n} records within {within:?}\n{}",
            log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The last non-empty line of a log.
fn last_line(log: &str) -> &str {
    log.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
}

/// A topic of one partition on `bootstrap` (plaintext) holding the first 200 of 300 records,
/// and an `mm2.properties` mirroring it from `a` to `b` with `security` settings; returns the
/// topic, its records and the config.
fn mid_run_setup(
    name: &str,
    bootstrap: &str,
    a: &str,
    b: &str,
    security: &str,
) -> (String, Vec<Outgoing>, String) {
    let topic = strait_tests::unique(name);
    let recs = records(300);
    reference::create_topic(bootstrap, &topic, 1);
    reference::produce(bootstrap, &topic, 0, &recs[..200], &[]);
    let config = format!(
        "clusters = A, B\n\
         A.bootstrap.servers = {a}\n\
         B.bootstrap.servers = {b}\n\
         A->B.enabled = true\n\
         A->B.topics = {topic}\n\
         {flow}\
         {security}",
        flow = flow_settings(),
    );
    (topic, recs, config)
}

/// `first` must exit non-zero within 60 s (`why` it should), its last line holding every one
/// of `wants`, having written exactly the first 200 records to `remote` on `b` (plaintext);
/// returns that last line.
fn expect_stopped_after_200(
    first: &mut StraitProcess,
    why: &str,
    wants: &[&str],
    b: &str,
    remote: &str,
    recs: &[Outgoing],
) -> String {
    let status = first
        .wait_exit(Duration::from_secs(60))
        .unwrap_or_else(|| panic!("Strait still runs 60 s after {why}\n{}", first.log()));
    let log = first.log();
    assert!(!status.success(), "exited 0 after {why}\n{log}");
    let last = last_line(&log).to_string();
    for want in wants {
        assert!(
            last.contains(want),
            "the final error lacks `{want}`: {last}\n{log}"
        );
    }
    let before = reference::consume_until_end(b, remote, 0);
    assert_eq!(before, expected(recs)[..200], "what the first run wrote");
    last
}

/// `second` must bring `remote` on `b` (plaintext) to exactly `recs`, each once, in order.
fn expect_resumed_exactly(second: &StraitProcess, b: &str, remote: &str, recs: &[Outgoing]) {
    wait_for_records(
        b,
        remote,
        recs.len() as i64,
        Duration::from_secs(90),
        || second.log(),
    );
    std::thread::sleep(Duration::from_secs(2)); // anything more would be a duplicate
    assert_eq!(
        reference::consume_until_end(b, remote, 0),
        expected(recs),
        "after the restart\n{}",
        second.log()
    );
}

/// An operator rotates Strait's password on the source while it runs. Kafka refuses the next
/// re-authentication (KIP-368; the listener's `connections.max.reauth.ms` is 3 s), and Strait
/// stops, exiting non-zero with an error naming cluster A, the broker and the refusal, neither
/// password printed, and what it had written intact. Started again with the new password it
/// goes on from there: the records written meanwhile arrive, every record once, in order.
#[test]
fn a_password_rotated_mid_run_stops_strait_and_the_new_one_resumes_exactly() {
    strait_tests::init_tracing();
    const NEW_PASSWORD: &str = "rotated-Pa55-word";
    let (source, target) = strait_tests::kafka::start_source_and_target(
        || {
            source(
                "rotate-src",
                vec![
                    sasl_listener("SASL_REAUTH", None).reauthenticate_after(Duration::from_secs(3))
                ],
            )
        },
        || {
            KafkaCluster::start_with(
                "rotate-tgt",
                KafkaOptions::brokers(1).property("log.retention.ms", "-1"),
            )
        },
    );
    let a = source.bootstrap_for_listener("SASL_REAUTH");
    let (a_plain, b) = (source.bootstrap(), target.bootstrap());
    let (topic, recs, config) = mid_run_setup(
        "rotated",
        &a_plain,
        &a,
        &b,
        "A.security.protocol = SASL_PLAINTEXT\n\
         A.sasl.mechanism = SCRAM-SHA-512\n\
         A.sasl.jaas.config = org.apache.kafka.common.security.scram.ScramLoginModule required username=\"mirror\" password=\"${env:STRAIT_TEST_SRC_PASSWORD}\";\n",
    );
    let remote = format!("A.{topic}");
    let dir = tempfile::tempdir().unwrap();
    let mut first = StraitProcess::start_with(
        "mm2.properties",
        &config,
        dir.path(),
        &[("STRAIT_TEST_SRC_PASSWORD", SRC_PASSWORD)],
    );
    wait_for_records(&b, &remote, 200, Duration::from_secs(90), || first.log());

    let out = strait_tests::kafka::run_checker(&[
        "scram",
        &a_plain,
        "SCRAM-SHA-512",
        "mirror",
        NEW_PASSWORD,
    ]);
    assert!(
        out.status.success(),
        "Checker scram: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let last = expect_stopped_after_200(
        &mut first,
        "its password was rotated (session lifetime 3 s)",
        &[
            "cluster A",
            "refused the credentials",
            "invalid credentials",
        ],
        &b,
        &remote,
        &recs,
    );
    let log = first.log();
    for secret in [SRC_PASSWORD, NEW_PASSWORD] {
        assert!(!log.contains(secret), "a password in the log\n{log}");
    }
    eprintln!("rotated: {last}");
    reference::produce(&a_plain, &topic, 0, &recs[200..], &[]);
    let second = StraitProcess::start_with(
        "mm2.properties",
        &config,
        dir.path(),
        &[("STRAIT_TEST_SRC_PASSWORD", NEW_PASSWORD)],
    );
    expect_resumed_exactly(&second, &b, &remote, &recs);
}

/// The target's certificate expires while Strait runs (the broker is given one valid for 45
/// s more before Strait starts). TLS checks a certificate when a connection is made, so nothing happens
/// until the broker restarts and Strait connects again: then it exits non-zero naming cluster
/// B, the broker and the expiry, with what it had written intact. The operator renews the
/// certificate, restarts the broker and Strait, and every record arrives once, in order.
#[test]
fn a_target_certificate_expiring_mid_run_stops_strait_and_a_renewed_one_resumes_exactly() {
    strait_tests::init_tracing();
    let c = certs();
    let (source, mut target) = strait_tests::kafka::start_source_and_target(
        || {
            KafkaCluster::start_with(
                "expiry-src",
                KafkaOptions::brokers(1).property("log.retention.ms", "-1"),
            )
        },
        || {
            KafkaCluster::start_with(
                "expiry-tgt",
                KafkaOptions::brokers(1)
                    .property("log.retention.ms", "-1")
                    .listener(tls_listener("SSL", ServerCert::Good, false)),
            )
        },
    );
    let a = source.bootstrap();
    let (b_tls, b_plain) = (target.bootstrap_for_listener("SSL"), target.bootstrap());
    let (topic, recs, config) = mid_run_setup(
        "expiring",
        &a,
        &a,
        &b_tls,
        &format!(
            "B.security.protocol = SSL\n\
             B.ssl.truststore.type = PEM\n\
             B.ssl.truststore.location = {}\n",
            c.ca.display()
        ),
    );
    let remote = format!("A.{topic}");
    // Built before the certificate's short life starts (a build takes a minute on 2 cores).
    strait_tests::strait::strait_binary();
    let certs_dir = tempfile::tempdir().unwrap();
    let valid_until = std::time::SystemTime::now() + Duration::from_secs(45);
    let (chain, key) =
        strait_tests::secure::server_cert_valid_until(certs_dir.path(), "short-lived", valid_until);
    target.replace_certificate("SSL", &chain, &key);
    target.stop_broker(0);
    target.restart_broker(0);
    let dir = tempfile::tempdir().unwrap();
    let mut first = StraitProcess::start(&config, dir.path());
    wait_for_records(&b_plain, &remote, 200, Duration::from_secs(40), || {
        first.log()
    });
    let left = valid_until
        .duration_since(std::time::SystemTime::now())
        .unwrap_or_default();
    std::thread::sleep(left + Duration::from_secs(2));
    // Open connections go on (TLS checks the certificate at the handshake); the broker's
    // restart makes Strait connect again. (A connection Strait happened to open after the
    // expiry would stop it a little earlier, with the same error.)
    target.stop_broker(0);
    target.restart_broker(0);
    let last = expect_stopped_after_200(
        &mut first,
        "reconnecting to a broker with an expired certificate",
        &["cluster B", "outside its validity period"],
        &b_plain,
        &remote,
        &recs,
    );
    eprintln!("expired: {last}");
    reference::produce(&a, &topic, 0, &recs[200..], &[]);
    target.replace_certificate("SSL", &c.server_cert, &c.server_key);
    target.stop_broker(0);
    target.restart_broker(0);
    let second = StraitProcess::start(&config, dir.path());
    expect_resumed_exactly(&second, &b_plain, &remote, &recs);
}
