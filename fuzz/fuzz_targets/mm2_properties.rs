//! MM2 dedicated-mode configuration: the Java `.properties` reader
//! (`replicator::config::properties::parse`: natural and continuation lines, comments,
//! separators, `\uXXXX` and other escapes) and `Config::from_properties_str` on the same text,
//! i.e. config provider references (`${env:..}`, `${file:path:key}`, declared
//! `config.providers` with the File, EnvVar, Directory and Kubernetes-secret classes) and the
//! whole validation into `Config` (clusters, client/SASL/JAAS/TLS settings, flows, the filters'
//! regexes, replication policy, intervals, Strait's own settings, warnings).
//! `ConfigFormat::detect` is also called.
//!
//! Input: the bytes as text (UTF-8, lossily). References resolve through an in-memory
//! `SecretSource` with a few fixed environment variables and files: nothing reads the real
//! environment or file system, whatever path or variable the input names.
//!
//! `Config` is only built when `clusters` names at most 4 aliases (counting each `${` as
//! possibly more): with n aliases MM2 (and Strait) consider n·(n-1) flows, each compiling its
//! filters, so a long alias list is slow by design, not a bug.
//!
//! Asserts: no panic. Parser: lines come in order with line numbers inside the text, and the
//! pairs written back in Java's `Properties.store` escaping (one `key=value` line each) parse
//! to the same pairs. Config: a syntax error is exactly the parser's error, at its line;
//! a successful config is consistent (flows join two distinct configured clusters with
//! bootstrap servers, heartbeat-only pairs are not flows, the bounded Strait settings are in
//! range). The text with every `\n` turned into `\r\n` (or `\r`) parses to the same lines
//! (Java accepts all three line ends; line numbers do not change), so to the same config.
#![no_main]

use std::collections::BTreeSet;
use std::io;
use std::path::Path;

use libfuzzer_sys::fuzz_target;
use replicator::config::properties::{self, PropertyLine};
use replicator::config::{Config, ConfigError, ConfigFormat, SecretSource};
use replicator::filter::parse_list;

/// Fixed, in-memory secrets: no environment or file system access.
struct FakeSecrets;

impl SecretSource for FakeSecrets {
    fn env_var(&self, name: &str) -> Option<String> {
        let v = match name {
            "A_PW" => "hunter2",
            "B_BOOTSTRAP" => "b1:9092,b2:9092",
            "TOPICS" => "orders.*",
            "STRAIT_SECRET_MM2_USER_PASSWORD" => "s3cret",
            _ => return None,
        };
        Some(v.to_owned())
    }

    fn read_file(&self, path: &Path) -> io::Result<String> {
        let v = match path.to_str() {
            Some("/etc/mm2/secrets.properties") => {
                "truststore = tspw\nuser=bob\npass=p\\:w\nbootstrap=a1:9092\n"
            }
            Some("/run/secrets/pw") => "dirpw",
            Some("/etc/strait/secrets/mm2-user/password") => "s3cret\n",
            _ => return Err(io::Error::new(io::ErrorKind::NotFound, "not found")),
        };
        Ok(v.to_owned())
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        match path.to_str() {
            Some("/run/secrets") => Ok(vec!["pw".into()]),
            Some("/etc/strait/secrets/mm2-user") => Ok(vec!["password".into()]),
            _ => Err(io::Error::new(io::ErrorKind::NotFound, "no such directory")),
        }
    }
}

const ORIGIN: &str = "mm2.properties";
/// Most aliases for which `Config` is built.
const MAX_ALIASES: usize = 4;

/// Writes a key or value as `java.util.Properties.store` does (controls as `\uXXXX`, other
/// characters as they are).
fn escape(s: &str, is_key: bool, out: &mut String) {
    for (i, c) in s.chars().enumerate() {
        match c {
            '\\' => out.push_str("\\\\"),
            ' ' if is_key || i == 0 => out.push_str("\\ "),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\u{c}' => out.push_str("\\f"),
            '=' | ':' | '#' | '!' => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_ascii_control() => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push(c),
        }
    }
}

fn check_parsed(text: &str, lines: &[PropertyLine]) {
    let natural = text.split(['\n', '\r']).count();
    let mut last = 0;
    for l in lines {
        assert!(
            l.line > last && l.line <= natural,
            "line {} after {last}",
            l.line
        );
        last = l.line;
    }
    let mut written = String::new();
    for l in lines {
        escape(&l.key, true, &mut written);
        written.push('=');
        escape(&l.value, false, &mut written);
        written.push('\n');
    }
    let again = properties::parse(&written).expect("written pairs parse");
    assert_eq!(again.len(), lines.len(), "{written:?}");
    for (i, (a, b)) in again.iter().zip(lines).enumerate() {
        assert_eq!(
            (&a.key, &a.value, a.line),
            (&b.key, &b.value, i + 1),
            "{written:?}"
        );
    }
}

fn check_config(text: &str) {
    match Config::from_properties_str(text, ORIGIN, &FakeSecrets) {
        Ok(config) => {
            check(&config);
            let _ = format!("{config:?}");
        }
        Err(ConfigError::Syntax { .. }) => panic!("the parser accepted the text"),
        Err(e) => {
            let _ = e.to_string();
        }
    }
}

fn check(config: &Config) {
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
        assert!(f.inflight_bytes >= 1);
        assert!(f.coalesce_bytes <= 64 * 1024 * 1024);
        assert!((1..=1 << 24).contains(&f.offset_map_max_runs));
        assert!(f.tasks_max >= 1);
        assert!(f.offset_storage_partitions >= 1);
        assert!(f.offset_lag_max >= 0);
        let _ = f.offset_syncs_topic();
        let _ = f.checkpoints_topic();
        let _ = f.topics.should_replicate_topic("orders");
        let _ = f.groups.should_replicate_group("analytics");
        let _ = f.policy.format_remote_topic(&f.source, "orders");
    }
    for h in &config.heartbeat_only {
        assert_ne!(h.source, h.target);
        assert!(config.clusters.contains_key(&h.source));
        assert!(config.clusters.contains_key(&h.target));
        assert!(
            !pairs.contains(&(h.source.clone(), h.target.clone())),
            "a pair is both a flow and heartbeat-only"
        );
    }
    for (alias, c) in &config.clusters {
        assert_eq!(alias, &c.alias);
        assert!(!alias.is_empty() && !alias.contains("->"));
        for s in &c.bootstrap_servers {
            assert!(s.rsplit_once(':').is_some(), "{s}");
        }
    }
    for w in &config.warnings {
        let _ = w.to_string();
    }
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = ConfigFormat::detect(Path::new("mm2"), &text);
    let lines = match properties::parse(&text) {
        Ok(lines) => lines,
        Err(e) => {
            assert!(e.line >= 1 && e.line <= text.split(['\n', '\r']).count());
            match Config::from_properties_str(&text, ORIGIN, &FakeSecrets) {
                Err(ConfigError::Syntax { origin, message }) => {
                    assert_eq!(origin, format!("{ORIGIN}:{}", e.line));
                    assert_eq!(message, e.message);
                }
                other => panic!("the parser failed, the config did not: {other:?}"),
            }
            return;
        }
    };
    check_parsed(&text, &lines);
    // `Config` sees nothing but these lines: the same lines, the same config.
    if !text.contains('\r') && text.contains('\n') {
        let other_ends = if data.len() % 2 == 0 { "\r\n" } else { "\r" };
        let converted = text.replace('\n', other_ends);
        assert_eq!(
            properties::parse(&converted).as_ref(),
            Ok(&lines),
            "line ends changed the result ({other_ends:?})"
        );
    }
    if let Some(clusters) = lines.iter().rev().find(|l| l.key == "clusters") {
        let aliases = parse_list(&clusters.value).len() + clusters.value.matches("${").count();
        if aliases > MAX_ALIASES {
            return;
        }
    }
    check_config(&text);
});
