//! Tests of the configuration model, both input formats.

use std::time::Duration;

use super::providers::FakeSecrets;
use super::*;

fn props(text: &str) -> Result<Config, ConfigError> {
    Config::from_properties_str(text, "mm2.properties", &FakeSecrets::default())
}

const BASIC: &str = "\
# two clusters
clusters = A, B
A.bootstrap.servers = a1:9092, a2:9092
B.bootstrap.servers = b1:9092
A->B.enabled = true
A->B.topics = orders.*, payments
";

#[test]
fn basic_flow_with_mm2_defaults() {
    let c = props(BASIC).unwrap();
    assert_eq!(c.clusters.len(), 2);
    assert_eq!(
        c.clusters["A"].bootstrap_servers,
        vec!["a1:9092", "a2:9092"]
    );
    assert_eq!(c.flows.len(), 1);
    let f = c.flow("A", "B").unwrap();
    assert!(f.topics.should_replicate_topic("orders-eu"));
    assert!(f.topics.should_replicate_topic("payments"));
    assert!(!f.topics.should_replicate_topic("payments2"));
    assert!(f.groups.should_replicate_group("g"));
    assert!(!f.groups.should_replicate_group("console-consumer-1"));
    assert_eq!(f.offset_lag_max, 100);
    assert_eq!(f.emit_checkpoints_interval, Duration::from_secs(60));
    assert_eq!(f.emit_heartbeats_interval, Duration::from_secs(1));
    assert!(!f.sync_group_offsets);
    assert!(f.sync_topic_configs && f.sync_topic_acls && f.emit_offset_syncs);
    assert_eq!(f.refresh_topics_interval, Duration::from_secs(600));
    assert_eq!(f.replication_factor, 2);
    assert_eq!(f.checkpoints_topic_replication_factor, 3);
    assert_eq!(f.offset_storage_replication_factor, 3);
    assert_eq!(f.offset_storage_topic, "mm2-offsets.A.internal");
    assert_eq!(f.offset_storage_partitions, 25);
    assert_eq!(f.progress_connector, "MirrorSourceConnector");
    assert_eq!(f.offset_syncs_location, OffsetSyncsLocation::Source);
    assert_eq!(
        f.offset_syncs_topic(),
        ("mm2-offset-syncs.B.internal".to_owned(), "A")
    );
    assert_eq!(f.checkpoints_topic(), "A.checkpoints.internal");
    assert_eq!(f.isolation_level, IsolationLevel::ReadCommitted);
    assert_eq!(f.inflight_bytes, 32 * 1024 * 1024);
    assert_eq!(f.coalesce_bytes, 1024 * 1024);
    assert!(f.fetch_sessions);
    assert_eq!(f.tasks_max, 1);
    assert_eq!(f.policy.format_remote_topic("A", "orders"), "A.orders");
    // B->A is not enabled but emits heartbeats, as MM2 does.
    assert_eq!(c.heartbeat_only.len(), 1);
    assert_eq!(c.heartbeat_only[0].source, "B");
    assert_eq!(c.heartbeat_only[0].target, "A");
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
}

#[test]
fn flow_overrides_top_level() {
    let c = props(&format!(
        "{BASIC}offset.lag.max = 50\nA->B.offset.lag.max = 7\nsync.group.offsets.enabled=true\n\
         emit.checkpoints.interval.seconds=5\nreplication.factor=-1\n\
         replication.policy.class=IdentityReplicationPolicy\nA->B.strait.inflight.bytes=1024\n\
         strait.coalesce.bytes=0\nstrait.fetch.sessions=false\n\
         topics.blacklist=secret.*\nemit.heartbeats.enabled=false\n"
    ))
    .unwrap();
    let f = c.flow("A", "B").unwrap();
    assert_eq!(f.offset_lag_max, 7);
    assert!(f.sync_group_offsets);
    assert_eq!(f.emit_checkpoints_interval, Duration::from_secs(5));
    assert_eq!(f.replication_factor, -1);
    assert_eq!(f.policy.kind(), crate::policy::PolicyKind::Identity);
    assert_eq!(f.policy.topic_source("orders"), Some("A"));
    assert_eq!(f.inflight_bytes, 1024);
    assert_eq!(f.coalesce_bytes, 0, "merging off");
    assert!(!f.fetch_sessions);
    assert!(!f.topics.should_replicate_topic("secret-x"));
    assert!(c.heartbeat_only.is_empty());
    assert!(c
        .warnings
        .iter()
        .any(|w| w.key == "topics.blacklist" && w.message.contains("deprecated")));
}

#[test]
fn missing_bootstrap_names_the_key() {
    let err = props("clusters=A,B\nA.bootstrap.servers=a:9092\nA->B.enabled=true\n").unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("B.bootstrap.servers"), "{msg}");
    assert!(msg.contains("A->B.enabled"), "{msg}");
}

#[test]
fn errors_name_file_line_and_key() {
    let err = props(&format!("{BASIC}A->B.offset.lag.max = lots\n")).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("mm2.properties:7"), "{msg}");
    assert!(msg.contains("A->B.offset.lag.max"), "{msg}");

    let err = props(&format!("{BASIC}A->B.topics = (bad\n")).unwrap_err();
    assert!(err.to_string().contains("A->B.topics"));
    let err = props(&format!("{BASIC}sync.topic.acls.enabled = yes\n")).unwrap_err();
    assert!(err.to_string().contains("sync.topic.acls.enabled"));
    let err = props(&format!(
        "{BASIC}replication.policy.class = com.acme.MyPolicy\n"
    ))
    .unwrap_err();
    assert!(err.to_string().contains("replication.policy.class"));
    let err = props(&format!("{BASIC}A->C.enabled = true\n")).unwrap_err();
    assert!(err.to_string().contains("A->C.enabled"));
    let err = props(&format!("{BASIC}X->B.enabled = true\n")).unwrap_err();
    assert!(err.to_string().contains("unknown cluster `X`"));
    let err = props(&format!("{BASIC}A->B.replication.factor = 0\n")).unwrap_err();
    assert!(err.to_string().contains("replication factor"));
    let err = props(&format!("{BASIC}offset-syncs.topic.location = middle\n")).unwrap_err();
    assert!(err.to_string().contains("offset-syncs.topic.location"));
    let err = props(&format!("{BASIC}topic.filter.class = com.acme.F\n")).unwrap_err();
    assert!(err.to_string().contains("topic.filter.class"));
    let err = props("A.bootstrap.servers=a:1\n").unwrap_err();
    assert!(matches!(err, ConfigError::Missing { ref key, .. } if key == "clusters"));
    let err = props("clusters=A\nA.bootstrap.servers=nohost\n").unwrap_err();
    assert!(err.to_string().contains("host:port"));
    let err = props("a=\\u12\n").unwrap_err();
    assert!(matches!(err, ConfigError::Syntax { .. }));
}

#[test]
fn unknown_and_ignored_keys_warn() {
    let c = props(&format!(
        "{BASIC}frobnicate=1\nkey.converter=x\nA->B.wat=2\nA.flux=3\nA.topics=x\n"
    ))
    .unwrap();
    let keys: Vec<&str> = c.warnings.iter().map(|w| w.key.as_str()).collect();
    for k in [
        "frobnicate",
        "key.converter",
        "A->B.wat",
        "A.flux",
        "A.topics",
    ] {
        assert!(keys.contains(&k), "{k} not in {keys:?}");
    }
    let w = c.warnings.iter().find(|w| w.key == "frobnicate").unwrap();
    assert_eq!(w.origin, "mm2.properties:7");
}

#[test]
fn security_settings_and_redaction() {
    let text = "\
clusters = A, B
security.protocol = SASL_SSL
sasl.mechanism = SCRAM-SHA-512
A.bootstrap.servers = a:9093
A.sasl.jaas.config = org.apache.kafka.common.security.scram.ScramLoginModule required username=\"alice\" password=\"${env:A_PW}\";
A.ssl.truststore.location = /etc/ca.p12
A.ssl.truststore.password = ${file:/etc/mm2/secrets.properties:truststore}
A.consumer.isolation.level = read_uncommitted
B.bootstrap.servers = b:9092
B.security.protocol = PLAINTEXT
A->B.enabled = true
";
    let src = FakeSecrets::default()
        .with_env("A_PW", "hunter2")
        .with_file("/etc/mm2/secrets.properties", "truststore = tspw\n");
    let c = Config::from_properties_str(text, "mm2.properties", &src).unwrap();
    let a = &c.clusters["A"];
    assert_eq!(a.client.security_protocol, SecurityProtocol::SaslSsl);
    let sasl = a.client.sasl.as_ref().unwrap();
    assert_eq!(sasl.mechanism, SaslMechanism::ScramSha512);
    assert_eq!(sasl.username.as_deref(), Some("alice"));
    assert_eq!(sasl.password.as_ref().unwrap().expose(), "hunter2");
    assert_eq!(
        a.client.tls.truststore_password.as_ref().unwrap().expose(),
        "tspw"
    );
    assert_eq!(a.client.tls.endpoint_identification_algorithm, "https");
    assert_eq!(
        c.clusters["B"].client.security_protocol,
        SecurityProtocol::Plaintext
    );
    assert_eq!(
        c.flow("A", "B").unwrap().isolation_level,
        IsolationLevel::ReadUncommitted
    );
    let dbg = format!("{c:?}");
    assert!(!dbg.contains("hunter2"), "password leaked in Debug");
    assert!(!dbg.contains("tspw"), "truststore password leaked in Debug");

    // An unresolvable reference is an error naming the key.
    let err =
        Config::from_properties_str(text, "mm2.properties", &FakeSecrets::default()).unwrap_err();
    assert!(err.to_string().contains("A.sasl.jaas.config"), "{err}");
    // SASL PLAIN without credentials.
    let err = props("clusters=A\nA.bootstrap.servers=a:1\nA.security.protocol=SASL_PLAINTEXT\nA.sasl.mechanism=PLAIN\n")
        .unwrap_err();
    assert!(err.to_string().contains("A.sasl.jaas.config"));
}

#[test]
fn declared_config_providers() {
    let text = "\
config.providers = secrets
config.providers.secrets.class = org.apache.kafka.common.config.provider.FileConfigProvider
clusters = A, B
A.bootstrap.servers = ${secrets:/p.properties:a}
B.bootstrap.servers = ${file:/p.properties:b}
A->B.enabled = true
";
    let src = FakeSecrets::default().with_file("/p.properties", "a=a:1\nb=b:2\n");
    let c = Config::from_properties_str(text, "x", &src).unwrap();
    assert_eq!(c.clusters["A"].bootstrap_servers, vec!["a:1"]);
    assert_eq!(c.clusters["B"].bootstrap_servers, vec!["b:2"]);
}

#[test]
fn intervals_can_be_disabled_by_negative_values() {
    let c = props(&format!(
        "{BASIC}refresh.groups.interval.seconds=-1\nA->B.emit.checkpoints.enabled=false\n"
    ))
    .unwrap();
    let f = c.flow("A", "B").unwrap();
    assert!(!f.refresh_groups);
    assert!(!f.emit_checkpoints);
    assert!(props(&format!("{BASIC}emit.heartbeats.interval.seconds=0\n")).is_err());
}

#[test]
fn worker_settings_from_target_cluster_prefix() {
    let c = props(&format!(
        "{BASIC}offset.storage.replication.factor=1\nB.offset.storage.replication.factor=2\n"
    ))
    .unwrap();
    assert_eq!(
        c.flow("A", "B").unwrap().offset_storage_replication_factor,
        2
    );
}

/// `offset.storage.partitions` was ignored (always 25); it sizes the progress topic Strait
/// creates, from the top level or the target cluster's prefix, and a bad value is refused.
#[test]
fn offset_storage_partitions_is_honoured() {
    let c = props(&format!("{BASIC}B.offset.storage.partitions=5\n")).unwrap();
    let f = c.flow("A", "B").unwrap();
    assert_eq!(f.offset_storage_partitions, 5);
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    assert!(props(&format!("{BASIC}offset.storage.partitions=0\n")).is_err());
}

#[test]
fn dotted_aliases_use_longest_match() {
    let c = props("clusters = us, us.east\nus.bootstrap.servers=u:1\nus.east.bootstrap.servers=e:1\nus->us.east.enabled=true\n").unwrap();
    assert_eq!(c.clusters["us.east"].bootstrap_servers, vec!["e:1"]);
    assert!(c.flow("us", "us.east").is_some());
}

const STRIMZI: &str = r#"
apiVersion: kafka.strimzi.io/v1beta2
kind: KafkaMirrorMaker2
metadata:
  name: mm2
spec:
  version: 3.9.0
  replicas: 1
  connectCluster: target
  clusters:
    - alias: source
      bootstrapServers: src-kafka:9093
      tls:
        trustedCertificates:
          - secretName: src-ca
            certificate: ca.crt
      authentication:
        type: scram-sha-512
        username: mm2-user
        passwordSecret:
          secretName: mm2-user
          password: password
    - alias: target
      bootstrapServers: tgt-kafka:9092
      config:
        config.storage.replication.factor: 1
        offset.storage.replication.factor: 1
  mirrors:
    - sourceCluster: source
      targetCluster: target
      sourceConnector:
        tasksMax: 4
        config:
          replication.factor: 1
          offset-syncs.topic.replication.factor: 1
          sync.topic.acls.enabled: "false"
          replication.policy.separator: "_"
      checkpointConnector:
        config:
          checkpoints.topic.replication.factor: 1
          sync.group.offsets.enabled: true
      topicsPattern: "orders.*, payments"
      groupsPattern: ".*"
      topicsBlacklistPattern: "orders-internal"
"#;

fn strimzi_secrets() -> FakeSecrets {
    FakeSecrets::default()
        .with_file(
            "/etc/strait/secrets/src-ca/ca.crt",
            "-----BEGIN CERTIFICATE-----\nMII\n-----END CERTIFICATE-----\n",
        )
        .with_file("/etc/strait/secrets/mm2-user/password", "s3cret\n")
}

/// The Connect cluster's own `offset.storage.topic` wins over Strimzi's default.
#[test]
fn strimzi_offset_storage_topic_from_the_target_cluster() {
    let yaml = STRIMZI.replace(
        "        offset.storage.replication.factor: 1\n",
        "        offset.storage.replication.factor: 1\n        offset.storage.topic: my-offsets\n",
    );
    assert!(yaml.contains("my-offsets"));
    let c = Config::from_strimzi_yaml_str(&yaml, "mm2.yaml", &strimzi_secrets()).unwrap();
    assert_eq!(
        c.flow("source", "target").unwrap().offset_storage_topic,
        "my-offsets"
    );
}

/// Checkpoints (and group offset sync) and heartbeats run only where Strimzi deploys their
/// connector: without a `checkpointConnector`, `emit.checkpoints.enabled: true` in the source
/// connector's config turned checkpoints on (Strimzi would run none); now it is ignored with a
/// warning.
#[test]
fn strimzi_functions_need_their_connector() {
    let yaml = STRIMZI
        .replace(
            "          sync.topic.acls.enabled: \"false\"\n",
            "          sync.topic.acls.enabled: \"false\"\n          emit.checkpoints.enabled: true\n          emit.heartbeats.enabled: true\n",
        )
        .replace(
            "      checkpointConnector:\n        config:\n          checkpoints.topic.replication.factor: 1\n          sync.group.offsets.enabled: true\n",
            "",
        );
    assert!(
        yaml.contains("emit.checkpoints.enabled: true") && !yaml.contains("checkpointConnector")
    );
    let c = Config::from_strimzi_yaml_str(&yaml, "mm2.yaml", &strimzi_secrets()).unwrap();
    let f = c.flow("source", "target").unwrap();
    assert!(!f.emit_checkpoints && !f.sync_group_offsets && !f.emit_heartbeats);
    for key in ["emit.checkpoints.enabled", "emit.heartbeats.enabled"] {
        assert!(
            c.warnings.iter().any(|w| w.to_string().contains(key)),
            "{key}: {:?}",
            c.warnings
        );
    }
}

#[test]
fn strimzi_resource() {
    let c = Config::from_strimzi_yaml_str(STRIMZI, "mm2.yaml", &strimzi_secrets()).unwrap();
    let src = &c.clusters["source"];
    assert_eq!(src.bootstrap_servers, vec!["src-kafka:9093"]);
    assert_eq!(src.client.security_protocol, SecurityProtocol::SaslSsl);
    let sasl = src.client.sasl.as_ref().unwrap();
    assert_eq!(sasl.mechanism, SaslMechanism::ScramSha512);
    assert_eq!(sasl.username.as_deref(), Some("mm2-user"));
    assert_eq!(sasl.password.as_ref().unwrap().expose(), "s3cret");
    assert!(src
        .client
        .tls
        .truststore_certificates
        .as_deref()
        .unwrap()
        .starts_with("-----BEGIN CERTIFICATE-----"));
    assert_eq!(
        c.clusters["target"].client.security_protocol,
        SecurityProtocol::Plaintext
    );
    assert_eq!(c.flows.len(), 1);
    let f = c.flow("source", "target").unwrap();
    assert_eq!(f.tasks_max, 4);
    assert_eq!(f.replication_factor, 1);
    assert!(!f.sync_topic_acls);
    assert!(f.sync_group_offsets);
    assert!(f.emit_checkpoints);
    assert!(!f.emit_heartbeats); // no heartbeatConnector
    assert_eq!(f.offset_storage_replication_factor, 1);
    // Where and how Strimzi's MM2 keeps source progress (its Connect cluster's offsets topic,
    // keys of the connector `source->target.MirrorSourceConnector`).
    assert_eq!(f.offset_storage_topic, "mirrormaker2-cluster-offsets");
    assert_eq!(f.progress_connector, "source->target.MirrorSourceConnector");
    assert_eq!(
        f.policy.format_remote_topic("source", "orders"),
        "source_orders"
    );
    assert!(f.topics.should_replicate_topic("orders-eu"));
    assert!(!f.topics.should_replicate_topic("orders-internal"));
    assert!(c.heartbeat_only.is_empty());
    assert!(c
        .warnings
        .iter()
        .any(|w| w.key.contains("topicsBlacklistPattern")));
    assert!(!format!("{c:?}").contains("s3cret"));
}

#[test]
fn strimzi_secret_from_env_wins() {
    let src = strimzi_secrets().with_env("STRAIT_SECRET_MM2_USER_PASSWORD", "fromenv");
    let c = Config::from_strimzi_yaml_str(STRIMZI, "mm2.yaml", &src).unwrap();
    let sasl = c.clusters["source"].client.sasl.clone().unwrap();
    assert_eq!(sasl.password.unwrap().expose(), "fromenv");
}

#[test]
fn strimzi_errors_name_yaml_paths() {
    let err =
        Config::from_strimzi_yaml_str(STRIMZI, "mm2.yaml", &FakeSecrets::default()).unwrap_err();
    assert!(
        err.to_string()
            .contains("spec.clusters[0].tls.trustedCertificates[0]"),
        "{err}"
    );
    let bad = STRIMZI.replace("targetCluster: target", "targetCluster: nowhere");
    let err = Config::from_strimzi_yaml_str(&bad, "mm2.yaml", &strimzi_secrets()).unwrap_err();
    assert!(
        err.to_string().contains("spec.mirrors[0].targetCluster"),
        "{err}"
    );
    let bad = STRIMZI.replace("      bootstrapServers: tgt-kafka:9092\n", "");
    let err = Config::from_strimzi_yaml_str(&bad, "mm2.yaml", &strimzi_secrets()).unwrap_err();
    assert!(
        err.to_string()
            .contains("spec.clusters[1].bootstrapServers"),
        "{err}"
    );
    let bad = STRIMZI.replace("kind: KafkaMirrorMaker2", "kind: KafkaConnect");
    assert!(Config::from_strimzi_yaml_str(&bad, "mm2.yaml", &strimzi_secrets()).is_err());
    let bad = STRIMZI.replace("type: scram-sha-512", "type: kerberos");
    let err = Config::from_strimzi_yaml_str(&bad, "mm2.yaml", &strimzi_secrets()).unwrap_err();
    assert!(err.to_string().contains("authentication.type"), "{err}");
    assert!(Config::from_strimzi_yaml_str("spec: [", "mm2.yaml", &strimzi_secrets()).is_err());
}

#[test]
fn strimzi_tls_auth_and_cert_patterns() {
    let yaml = r#"
apiVersion: kafka.strimzi.io/v1beta2
kind: KafkaMirrorMaker2
spec:
  connectCluster: b
  clusters:
    - alias: a
      bootstrapServers: a:9093
      tls:
        trustedCertificates:
          - secretName: ca
            pattern: "*.crt"
      authentication:
        type: tls
        certificateAndKey:
          secretName: user
          certificate: user.crt
          key: user.key
    - alias: b
      bootstrapServers: b:9092
  mirrors:
    - sourceCluster: a
      targetCluster: b
      sourceConnector: {}
      heartbeatConnector: {}
"#;
    let src = FakeSecrets::default()
        .with_file("/etc/strait/secrets/ca/one.crt", "CERT1")
        .with_file("/etc/strait/secrets/ca/two.crt", "CERT2")
        .with_file("/etc/strait/secrets/ca/ignored.key", "NO")
        .with_file("/etc/strait/secrets/user/user.crt", "USERCERT")
        .with_file("/etc/strait/secrets/user/user.key", "USERKEY");
    let c = Config::from_strimzi_yaml_str(yaml, "mm2.yaml", &src).unwrap();
    let a = &c.clusters["a"].client;
    assert_eq!(a.security_protocol, SecurityProtocol::Ssl);
    assert_eq!(
        a.tls.truststore_certificates.as_deref(),
        Some("CERT1\nCERT2\n")
    );
    assert_eq!(
        a.tls.keystore_certificate_chain.as_deref(),
        Some("USERCERT")
    );
    assert_eq!(a.tls.keystore_key.as_ref().unwrap().expose(), "USERKEY");
    let f = c.flow("a", "b").unwrap();
    assert!(f.emit_heartbeats);
    assert!(!f.emit_checkpoints);
    assert!(!format!("{c:?}").contains("USERKEY"));
}

#[test]
fn format_detection_and_load() {
    use std::path::Path;
    assert_eq!(
        ConfigFormat::detect(Path::new("x.yaml"), ""),
        ConfigFormat::StrimziYaml
    );
    assert_eq!(
        ConfigFormat::detect(Path::new("mm2.properties"), "kind: x"),
        ConfigFormat::Properties
    );
    assert_eq!(
        ConfigFormat::detect(Path::new("mm2"), STRIMZI),
        ConfigFormat::StrimziYaml
    );
    assert_eq!(
        ConfigFormat::detect(Path::new("mm2"), BASIC),
        ConfigFormat::Properties
    );
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("mm2.properties");
    std::fs::write(&p, BASIC).unwrap();
    let c = Config::load_with(&p, &FakeSecrets::default()).unwrap();
    assert_eq!(c.flows.len(), 1);
    let err = Config::load(&dir.path().join("missing.properties")).unwrap_err();
    assert!(matches!(err, ConfigError::Io { .. }));
}

#[test]
fn request_timeout_is_a_client_setting() {
    let c = props(&format!("{BASIC}A.request.timeout.ms = 8000\n")).unwrap();
    assert_eq!(
        c.clusters["A"].client.request_timeout,
        Some(Duration::from_secs(8))
    );
    assert_eq!(c.clusters["B"].client.request_timeout, None);
    assert!(
        !c.warnings
            .iter()
            .any(|w| w.to_string().contains("request.timeout.ms")),
        "{:?}",
        c.warnings
    );
    let c = props(&format!("{BASIC}request.timeout.ms = 5000\n")).unwrap();
    assert_eq!(
        c.clusters["B"].client.request_timeout,
        Some(Duration::from_secs(5))
    );
    for bad in ["0", "-1", "soon", "99999999999"] {
        let e = props(&format!("{BASIC}A.request.timeout.ms = {bad}\n")).unwrap_err();
        assert!(e.to_string().contains("A.request.timeout.ms"), "{bad}: {e}");
    }
}

#[test]
fn scale_out_is_off_by_default_and_its_group_is_named_after_the_flows() {
    assert_eq!(props(BASIC).unwrap().group, None);
    let two = format!("{BASIC}B->A.enabled = true\nstrait.group.enabled = true\n");
    let g = props(&two).unwrap().group.expect("enabled");
    assert_eq!(g.id, "strait.A-B.B-A");
    assert_eq!(g.cluster, "A", "the first flow target by name");
    assert_eq!(g.session_timeout, Duration::from_secs(10));
    assert_eq!(g.heartbeat_interval, Duration::from_secs(1));
    assert_eq!(g.rebalance_timeout, Duration::from_secs(60));
    let c = props(&format!(
        "{BASIC}strait.group.enabled = true\nstrait.group.id = mirrors\nstrait.group.cluster = A\n\
         strait.group.session.timeout.ms = 6000\nstrait.group.heartbeat.interval.ms = 500\n"
    ))
    .unwrap();
    let g = c.group.expect("enabled");
    assert_eq!((g.id.as_str(), g.cluster.as_str()), ("mirrors", "A"));
    assert_eq!(g.heartbeat_interval, Duration::from_millis(500));
    assert!(
        c.warnings
            .iter()
            .all(|w| !w.key.starts_with("strait.group")),
        "known settings: {:?}",
        c.warnings
    );
}

#[test]
fn bad_scale_out_settings_are_refused() {
    for (extra, says) in [
        ("strait.group.cluster = C", "not a cluster alias"),
        ("strait.group.id = ", "must not be empty"),
        ("strait.group.session.timeout.ms = 100", "between"),
        (
            "strait.group.session.timeout.ms = 6000\nstrait.group.heartbeat.interval.ms = 2001",
            "at most a third",
        ),
        ("strait.group.enabled = yes", "true or false"),
    ] {
        // The last value of a key wins (`enabled = yes` replaces `enabled = true`).
        let text = format!("{BASIC}strait.group.enabled = true\n{extra}\n");
        let e = props(&text).expect_err(extra).to_string();
        assert!(e.contains(says), "{extra}: {e}");
    }
}

#[test]
fn exactly_once_mode_is_read_as_mm2_writes_it() {
    // MM2 takes it from the target cluster's prefix (a worker setting).
    let c = props(&format!("{BASIC}B.exactly.once.source.support = enabled\n")).unwrap();
    let f = c.flow("A", "B").unwrap();
    assert!(f.exactly_once);
    assert!(
        !c.warnings
            .iter()
            .any(|w| w.key.ends_with("exactly.once.source.support")),
        "{:?}",
        c.warnings
    );
    assert_eq!(
        FlowConfig::transactional_id(&f.transactional_id_stem("strait"), 0),
        "strait.A-B.0"
    );
    // As MM2's MirrorSourceConnector: exactly-once needs a read_committed source consumer.
    let c = props(&format!(
        "{BASIC}exactly.once.source.support = enabled\nA.consumer.isolation.level = read_uncommitted\n"
    ))
    .unwrap();
    assert!(
        c.warnings
            .iter()
            .any(|w| w.message.contains("aborted and open source transactions")),
        "{:?}",
        c.warnings
    );
    // The commit interval (the transaction's length in exactly-once mode).
    assert_eq!(f.commit_interval, Duration::from_secs(5));
    let c = props(&format!("{BASIC}strait.commit.interval.ms = 500\n")).unwrap();
    assert_eq!(
        c.flow("A", "B").unwrap().commit_interval,
        Duration::from_millis(500)
    );
    assert!(props(&format!("{BASIC}strait.commit.interval.ms = 10\n")).is_err());
    let c = props(&format!("{BASIC}exactly.once.source.support = preparing\n")).unwrap();
    assert!(!c.flow("A", "B").unwrap().exactly_once);
    assert!(props(&format!("{BASIC}exactly.once.source.support = yes\n")).is_err());
}
