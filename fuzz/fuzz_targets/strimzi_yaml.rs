//! Strimzi `KafkaMirrorMaker2` resources: `Config::from_strimzi_yaml_str`, i.e. the YAML parse
//! (serde_yaml), the translation of `spec.clusters` / `spec.target` / `spec.mirrors[]` (v1beta2
//! and v1 layouts: TLS trusted certificates by name or glob pattern, `tls`, `scram-sha-*`,
//! `plain` and `oauth` authentication with secrets, connector configs, patterns, paused
//! connectors) into MM2 settings, and the same validation as `mm2.properties`.
//!
//! Input: the bytes as text (UTF-8, lossily). Secrets and certificate directories come from an
//! in-memory `SecretSource` (a few fixed secrets under `/etc/strait/secrets`): nothing reads
//! the real environment or file system, whatever secret the input names.
//!
//! Resources with more than 8 `spec.mirrors` are skipped (read once more with serde_yaml to
//! count them): each mirror is a flow that compiles its filters, so many are slow by design.
//!
//! Asserts: no panic; a successful config is consistent: flows join two distinct configured
//! clusters that have bootstrap servers, no heartbeat-only pairs (Strimzi runs only the listed
//! mirrors), every flow keys its source progress by Strimzi's connector name
//! `<source>-><target>.MirrorSourceConnector`.
#![no_main]

use std::collections::BTreeSet;
use std::io;
use std::path::Path;

use libfuzzer_sys::fuzz_target;
use replicator::config::{Config, SecretSource};
use serde_yaml::Value;

/// Most mirrors (flows) a resource may list.
const MAX_MIRRORS: usize = 8;

/// Fixed, in-memory secrets: no environment or file system access.
struct FakeSecrets;

const CERT: &str = "-----BEGIN CERTIFICATE-----\nMII\n-----END CERTIFICATE-----\n";

impl SecretSource for FakeSecrets {
    fn env_var(&self, name: &str) -> Option<String> {
        let v = match name {
            "STRAIT_SECRET_MM2_USER_PASSWORD" => "fromenv",
            "A_PW" => "hunter2",
            _ => return None,
        };
        Some(v.to_owned())
    }

    fn read_file(&self, path: &Path) -> io::Result<String> {
        let v = match path.to_str() {
            Some("/etc/strait/secrets/src-ca/ca.crt") => CERT,
            Some("/etc/strait/secrets/ca/one.crt") => "CERT1",
            Some("/etc/strait/secrets/ca/two.crt") => "CERT2",
            Some("/etc/strait/secrets/ca/ignored.key") => "NO",
            Some("/etc/strait/secrets/user/user.crt") => "USERCERT",
            Some("/etc/strait/secrets/user/user.key") => "USERKEY",
            Some("/etc/strait/secrets/oauth/secret") => "client-secret\r\n",
            Some("/etc/strait/secrets/oauth/token") => "tok.en",
            _ => return Err(io::Error::new(io::ErrorKind::NotFound, "not found")),
        };
        Ok(v.to_owned())
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        let names: &[&str] = match path.to_str() {
            Some("/etc/strait/secrets/src-ca") => &["ca.crt"],
            Some("/etc/strait/secrets/ca") => &["ignored.key", "one.crt", "two.crt"],
            Some("/etc/strait/secrets/user") => &["user.crt", "user.key"],
            Some("/etc/strait/secrets/oauth") => &["secret", "token"],
            _ => return Err(io::Error::new(io::ErrorKind::NotFound, "no such directory")),
        };
        Ok(names.iter().map(|n| (*n).to_owned()).collect())
    }
}

fn outcome(text: &str) {
    match Config::from_strimzi_yaml_str(text, "mm2.yaml", &FakeSecrets) {
        Ok(config) => {
            check(&config);
            let _ = format!("{config:?}");
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
}

fn check(config: &Config) {
    assert!(
        config.heartbeat_only.is_empty(),
        "{:?}",
        config.heartbeat_only
    );
    let mut pairs = BTreeSet::new();
    for f in &config.flows {
        assert_ne!(f.source, f.target);
        assert!(config.clusters.contains_key(&f.source), "{}", f.source);
        assert!(config.clusters.contains_key(&f.target), "{}", f.target);
        assert!(!config.clusters[&f.source].bootstrap_servers.is_empty());
        assert!(!config.clusters[&f.target].bootstrap_servers.is_empty());
        assert!(
            pairs.insert((f.source.clone(), f.target.clone())),
            "flow twice"
        );
        let name = format!("{}->{}.MirrorSourceConnector", f.source, f.target);
        // The value is resolved like any other: an alias holding `${` may be a reference.
        if !name.contains("${") {
            assert_eq!(f.progress_connector, name);
        }
        let _ = f.offset_syncs_topic();
        let _ = f.checkpoints_topic();
        let _ = f.topics.should_replicate_topic("orders");
        let _ = f.groups.should_replicate_group("analytics");
    }
    for (alias, c) in &config.clusters {
        assert_eq!(alias, &c.alias);
        assert!(!alias.is_empty() && !alias.contains("->"));
    }
    for w in &config.warnings {
        let _ = w.to_string();
    }
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(doc) = serde_yaml::from_str::<Value>(&text) {
        let mirrors = doc
            .get("spec")
            .and_then(|s| s.get("mirrors"))
            .and_then(Value::as_sequence)
            .map_or(0, Vec::len);
        if mirrors > MAX_MIRRORS {
            return;
        }
    }
    outcome(&text);
});
