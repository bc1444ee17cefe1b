//! Strimzi `KafkaMirrorMaker2` resources translated into MM2 settings.
//!
//! `v1beta2`: `spec.connectCluster`, `spec.clusters[]`, `spec.mirrors[]` with
//! `sourceCluster`/`targetCluster`. The `v1` layout (`spec.target`, `spec.mirrors[].source`)
//! is read too. Per cluster: `bootstrapServers`, `tls.trustedCertificates[]`
//! (`secretName` + `certificate` or a `pattern` glob over the secret's keys),
//! `authentication` (`tls`, `scram-sha-256`, `scram-sha-512`, `plain`, `oauth`) and
//! `config`. Per mirror: the three connectors' `config` maps (merged; the source
//! connector's values win), `sourceConnector.tasksMax`, and the topic/group patterns
//! (including the deprecated `*BlacklistPattern` names). A mirror without a source
//! connector does not replicate; without a heartbeat or checkpoint connector it emits no
//! heartbeats or checkpoints, as the operator would deploy nothing for them.

use std::collections::BTreeMap;

use serde_yaml::{Mapping, Value};

use super::build::Entry;
use super::client::JaasConfig;
use super::providers::{secret_dir, secret_value, SecretSource};
use super::{ConfigError, ConfigWarning};

struct Ctx<'a> {
    file: &'a str,
    src: &'a dyn SecretSource,
    entries: Vec<Entry>,
    warnings: Vec<ConfigWarning>,
}

impl Ctx<'_> {
    fn origin(&self, path: &str) -> String {
        format!("{}: {path}", self.file)
    }

    fn push(&mut self, key: String, value: String, path: &str, resolve: bool) {
        let origin = self.origin(path);
        self.entries.push(Entry {
            key,
            value,
            origin,
            resolve,
        });
    }

    fn warn(&mut self, path: &str, message: impl Into<String>) {
        self.warnings.push(ConfigWarning {
            origin: self.file.to_owned(),
            key: path.to_owned(),
            message: message.into(),
        });
    }

    fn invalid(&self, path: &str, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            origin: self.file.to_owned(),
            key: path.to_owned(),
            message: message.into(),
        }
    }

    fn missing(&self, path: &str, message: impl Into<String>) -> ConfigError {
        ConfigError::Missing {
            origin: self.file.to_owned(),
            key: path.to_owned(),
            message: message.into(),
        }
    }

    fn secret(
        &self,
        path: &str,
        secret_name: &str,
        key: &str,
        trim: bool,
    ) -> Result<String, ConfigError> {
        let mut v = secret_value(self.src, secret_name, key).map_err(|m| self.invalid(path, m))?;
        if trim {
            if v.ends_with("\r\n") {
                v.truncate(v.len() - 2);
            } else if v.ends_with('\n') {
                v.pop();
            }
        }
        Ok(v)
    }
}

fn field<'v>(map: &'v Mapping, name: &str) -> Option<&'v Value> {
    map.get(Value::String(name.to_owned()))
        .filter(|v| !v.is_null())
}

fn as_map<'v>(ctx: &Ctx<'_>, v: &'v Value, path: &str) -> Result<&'v Mapping, ConfigError> {
    v.as_mapping()
        .ok_or_else(|| ctx.invalid(path, "expected a mapping"))
}

fn str_field(
    ctx: &Ctx<'_>,
    map: &Mapping,
    name: &str,
    path: &str,
) -> Result<Option<String>, ConfigError> {
    match field(map, name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(Value::Bool(b)) => Ok(Some(b.to_string())),
        Some(_) => Err(ctx.invalid(&format!("{path}.{name}"), "expected a string")),
    }
}

fn required_str(
    ctx: &Ctx<'_>,
    map: &Mapping,
    name: &str,
    path: &str,
) -> Result<String, ConfigError> {
    str_field(ctx, map, name, path)?
        .ok_or_else(|| ctx.missing(&format!("{path}.{name}"), "required"))
}

fn scalar_to_string(ctx: &Ctx<'_>, v: &Value, path: &str) -> Result<String, ConfigError> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        Value::Sequence(items) => items
            .iter()
            .map(|i| scalar_to_string(ctx, i, path))
            .collect::<Result<Vec<_>, _>>()
            .map(|v| v.join(",")),
        _ => Err(ctx.invalid(path, "expected a scalar value")),
    }
}

/// A `config` map as (key, value, path) triples.
fn config_map(
    ctx: &Ctx<'_>,
    v: Option<&Value>,
    path: &str,
) -> Result<Vec<(String, String, String)>, ConfigError> {
    let Some(v) = v else { return Ok(Vec::new()) };
    let map = as_map(ctx, v, path)?;
    let mut out = Vec::new();
    for (k, val) in map {
        let Some(k) = k.as_str() else {
            return Err(ctx.invalid(path, "config keys must be strings"));
        };
        let p = format!("{path}.{k}");
        if val.is_null() {
            continue;
        }
        out.push((k.to_owned(), scalar_to_string(ctx, val, &p)?, p));
    }
    Ok(out)
}

fn glob_match(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    let (mut pi, mut ni, mut star, mut mark) = (0usize, 0usize, None::<usize>, 0usize);
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ni;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ni = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

fn cluster_entries(
    ctx: &mut Ctx<'_>,
    alias: &str,
    spec: &Mapping,
    path: &str,
) -> Result<(), ConfigError> {
    let bootstrap = required_str(ctx, spec, "bootstrapServers", path)?;
    ctx.push(
        format!("{alias}.bootstrap.servers"),
        bootstrap,
        &format!("{path}.bootstrapServers"),
        true,
    );
    let tls = field(spec, "tls").is_some();
    if let Some(t) = field(spec, "tls") {
        let tpath = format!("{path}.tls");
        let t = as_map(ctx, t, &tpath)?;
        if let Some(certs) = field(t, "trustedCertificates") {
            let cpath = format!("{tpath}.trustedCertificates");
            let certs = certs
                .as_sequence()
                .ok_or_else(|| ctx.invalid(&cpath, "expected a list"))?;
            let mut pem = String::new();
            for (i, c) in certs.iter().enumerate() {
                let ipath = format!("{cpath}[{i}]");
                let c = as_map(ctx, c, &ipath)?;
                let secret = required_str(ctx, c, "secretName", &ipath)?;
                let keys = match (
                    str_field(ctx, c, "certificate", &ipath)?,
                    str_field(ctx, c, "pattern", &ipath)?,
                ) {
                    (Some(cert), _) => vec![cert],
                    (None, Some(pattern)) => {
                        let dir = secret_dir(ctx.src, &secret);
                        let names = ctx.src.list_dir(&dir).map_err(|e| {
                            ctx.invalid(&ipath, format!("cannot list {}: {e}", dir.display()))
                        })?;
                        let matched: Vec<String> = names
                            .into_iter()
                            .filter(|n| glob_match(&pattern, n))
                            .collect();
                        if matched.is_empty() {
                            return Err(ctx.invalid(
                                &ipath,
                                format!("no key of secret `{secret}` matches `{pattern}`"),
                            ));
                        }
                        matched
                    }
                    (None, None) => {
                        return Err(ctx.missing(
                            &format!("{ipath}.certificate"),
                            "certificate or pattern is required",
                        ))
                    }
                };
                for key in keys {
                    let cert = ctx.secret(&ipath, &secret, &key, false)?;
                    pem.push_str(cert.trim_end());
                    pem.push('\n');
                }
            }
            if !pem.is_empty() {
                ctx.push(
                    format!("{alias}.ssl.truststore.type"),
                    "PEM".into(),
                    &cpath,
                    false,
                );
                ctx.push(
                    format!("{alias}.ssl.truststore.certificates"),
                    pem,
                    &cpath,
                    false,
                );
            }
        }
    }
    let mut sasl = false;
    if let Some(a) = field(spec, "authentication") {
        let apath = format!("{path}.authentication");
        let a = as_map(ctx, a, &apath)?;
        let kind = required_str(ctx, a, "type", &apath)?;
        match kind.as_str() {
            "tls" => {
                let kpath = format!("{apath}.certificateAndKey");
                let ck = field(a, "certificateAndKey")
                    .ok_or_else(|| ctx.missing(&kpath, "required for tls authentication"))?;
                let ck = as_map(ctx, ck, &kpath)?;
                let secret = required_str(ctx, ck, "secretName", &kpath)?;
                let cert_key = required_str(ctx, ck, "certificate", &kpath)?;
                let key_key = required_str(ctx, ck, "key", &kpath)?;
                let cert = ctx.secret(&kpath, &secret, &cert_key, false)?;
                let key = ctx.secret(&kpath, &secret, &key_key, false)?;
                ctx.push(format!("{alias}.ssl.keystore.type"), "PEM".into(), &kpath, false);
                ctx.push(format!("{alias}.ssl.keystore.certificate.chain"), cert, &kpath, false);
                ctx.push(format!("{alias}.ssl.keystore.key"), key, &kpath, false);
            }
            "scram-sha-256" | "scram-sha-512" | "plain" => {
                let username = required_str(ctx, a, "username", &apath)?;
                let ppath = format!("{apath}.passwordSecret");
                let ps = field(a, "passwordSecret")
                    .ok_or_else(|| ctx.missing(&ppath, "required"))?;
                let ps = as_map(ctx, ps, &ppath)?;
                let secret = required_str(ctx, ps, "secretName", &ppath)?;
                let key = required_str(ctx, ps, "password", &ppath)?;
                let password = ctx.secret(&ppath, &secret, &key, true)?;
                let (mechanism, module) = match kind.as_str() {
                    "plain" => ("PLAIN", "org.apache.kafka.common.security.plain.PlainLoginModule"),
                    "scram-sha-256" => ("SCRAM-SHA-256", "org.apache.kafka.common.security.scram.ScramLoginModule"),
                    _ => ("SCRAM-SHA-512", "org.apache.kafka.common.security.scram.ScramLoginModule"),
                };
                ctx.push(format!("{alias}.sasl.mechanism"), mechanism.into(), &apath, false);
                ctx.push(
                    format!("{alias}.sasl.jaas.config"),
                    JaasConfig::render(module, &[("username", &username), ("password", &password)]),
                    &apath,
                    false,
                );
                sasl = true;
            }
            "oauth" => {
                let mut options: Vec<(String, String)> = Vec::new();
                for (yaml, opt) in [
                    ("clientId", "oauth.client.id"),
                    ("tokenEndpointUri", "oauth.token.endpoint.uri"),
                    ("scope", "oauth.scope"),
                    ("audience", "oauth.audience"),
                ] {
                    if let Some(v) = str_field(ctx, a, yaml, &apath)? {
                        options.push((opt.into(), v));
                    }
                }
                for (yaml, opt) in [
                    ("clientSecret", "oauth.client.secret"),
                    ("accessToken", "oauth.access.token"),
                    ("refreshToken", "oauth.refresh.token"),
                ] {
                    if let Some(v) = field(a, yaml) {
                        let spath = format!("{apath}.{yaml}");
                        let m = as_map(ctx, v, &spath)?;
                        let secret = required_str(ctx, m, "secretName", &spath)?;
                        let key = required_str(ctx, m, "key", &spath)?;
                        options.push((opt.into(), ctx.secret(&spath, &secret, &key, true)?));
                    }
                }
                if let Some(uri) = options.iter().find(|(k, _)| k == "oauth.token.endpoint.uri") {
                    let uri = uri.1.clone();
                    ctx.push(format!("{alias}.sasl.oauthbearer.token.endpoint.url"), uri, &apath, false);
                }
                let opts: Vec<(&str, &str)> =
                    options.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                ctx.push(format!("{alias}.sasl.mechanism"), "OAUTHBEARER".into(), &apath, false);
                ctx.push(
                    format!("{alias}.sasl.jaas.config"),
                    JaasConfig::render(
                        "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule",
                        &opts,
                    ),
                    &apath,
                    false,
                );
                sasl = true;
            }
            other => {
                return Err(ctx.invalid(
                    &format!("{apath}.type"),
                    format!("unsupported authentication type `{other}` (tls, scram-sha-256, scram-sha-512, plain, oauth)"),
                ))
            }
        }
    }
    let protocol = match (tls, sasl) {
        (false, false) => "PLAINTEXT",
        (true, false) => "SSL",
        (false, true) => "SASL_PLAINTEXT",
        (true, true) => "SASL_SSL",
    };
    let config = config_map(ctx, field(spec, "config"), &format!("{path}.config"))?;
    if !config.iter().any(|(k, _, _)| k == "security.protocol") {
        ctx.push(
            format!("{alias}.security.protocol"),
            protocol.into(),
            path,
            false,
        );
    }
    for (k, v, p) in config {
        ctx.push(format!("{alias}.{k}"), v, &p, true);
    }
    Ok(())
}

pub(crate) fn to_entries(
    text: &str,
    file: &str,
    src: &dyn SecretSource,
) -> Result<(Vec<Entry>, Vec<ConfigWarning>), ConfigError> {
    let doc: Value = serde_yaml::from_str(text).map_err(|e| ConfigError::Syntax {
        origin: file.to_owned(),
        message: e.to_string(),
    })?;
    let mut ctx = Ctx {
        file,
        src,
        entries: Vec::new(),
        warnings: Vec::new(),
    };
    let root = as_map(&ctx, &doc, "(document)")?;
    match str_field(&ctx, root, "kind", "")? {
        Some(k) if k == "KafkaMirrorMaker2" => {}
        Some(k) => {
            return Err(ctx.invalid("kind", format!("expected KafkaMirrorMaker2, got `{k}`")))
        }
        None => return Err(ctx.missing("kind", "expected `kind: KafkaMirrorMaker2`")),
    }
    match str_field(&ctx, root, "apiVersion", "")?.as_deref() {
        Some("kafka.strimzi.io/v1beta2" | "kafka.strimzi.io/v1") => {}
        Some(other) => ctx.warn(
            "apiVersion",
            format!("`{other}` not recognised; reading it as v1beta2"),
        ),
        None => ctx.warn("apiVersion", "missing; reading the resource as v1beta2"),
    }
    let spec = field(root, "spec").ok_or_else(|| ctx.missing("spec", "required"))?;
    let spec = as_map(&ctx, spec, "spec")?;

    // Clusters by alias, with their paths.
    let mut clusters: Vec<(String, Mapping, String)> = Vec::new();
    if let Some(list) = field(spec, "clusters") {
        let seq = list
            .as_sequence()
            .ok_or_else(|| ctx.invalid("spec.clusters", "expected a list"))?;
        for (i, c) in seq.iter().enumerate() {
            let path = format!("spec.clusters[{i}]");
            let m = as_map(&ctx, c, &path)?.clone();
            let alias = required_str(&ctx, &m, "alias", &path)?;
            if clusters.iter().any(|(a, _, _)| *a == alias) {
                return Err(ctx.invalid(
                    &format!("{path}.alias"),
                    format!("duplicate alias `{alias}`"),
                ));
            }
            clusters.push((alias, m, path));
        }
    }
    let mut target_alias = str_field(&ctx, spec, "connectCluster", "spec")?;
    if let Some(t) = field(spec, "target") {
        let m = as_map(&ctx, t, "spec.target")?.clone();
        let alias = required_str(&ctx, &m, "alias", "spec.target")?;
        if let Some(topic) = str_field(&ctx, &m, "offsetStorageTopic", "spec.target")? {
            ctx.push(
                format!("{alias}.offset.storage.topic"),
                topic,
                "spec.target.offsetStorageTopic",
                true,
            );
        }
        if !clusters.iter().any(|(a, _, _)| *a == alias) {
            clusters.push((alias.clone(), m, "spec.target".into()));
        }
        target_alias = Some(alias);
    }
    let mirrors = field(spec, "mirrors")
        .ok_or_else(|| ctx.missing("spec.mirrors", "at least one mirror is required"))?;
    let mirrors = mirrors
        .as_sequence()
        .ok_or_else(|| ctx.invalid("spec.mirrors", "expected a list"))?
        .clone();
    for (i, m) in mirrors.iter().enumerate() {
        let path = format!("spec.mirrors[{i}]");
        let m = as_map(&ctx, m, &path)?;
        if let Some(s) = field(m, "source") {
            let spath = format!("{path}.source");
            let sm = as_map(&ctx, s, &spath)?.clone();
            let alias = required_str(&ctx, &sm, "alias", &spath)?;
            if !clusters.iter().any(|(a, _, _)| *a == alias) {
                clusters.push((alias, sm, spath));
            }
        }
    }
    if clusters.is_empty() {
        return Err(ctx.missing("spec.clusters", "no clusters defined"));
    }
    let aliases: Vec<&str> = clusters.iter().map(|(a, _, _)| a.as_str()).collect();
    ctx.push("clusters".into(), aliases.join(","), "spec.clusters", false);
    if let Some(t) = &target_alias {
        if !aliases.contains(&t.as_str()) {
            return Err(ctx.invalid(
                "spec.connectCluster",
                format!("`{t}` is not in spec.clusters"),
            ));
        }
    }
    // Only the listed mirrors run: no heartbeats for other pairs.
    ctx.push(
        "emit.heartbeats.enabled".into(),
        "false".into(),
        "spec.mirrors",
        false,
    );
    for (alias, m, path) in &clusters {
        cluster_entries(&mut ctx, alias, m, path)?;
    }
    // Strimzi's Connect cluster (on the target) keeps source progress in its own offsets topic
    // (`KafkaMirrorMaker2Configuration` defaults), not MM2 dedicated mode's
    // `mm2-offsets.<source>.internal`: read and write it there, so a hand-over either way finds
    // the other's progress.
    if let Some(t) = &target_alias {
        let key = format!("{t}.offset.storage.topic");
        if !ctx.entries.iter().any(|e| e.key == key) {
            ctx.push(
                key,
                STRIMZI_OFFSET_STORAGE_TOPIC.into(),
                "spec.connectCluster",
                false,
            );
        }
    }

    for (i, m) in mirrors.iter().enumerate() {
        let path = format!("spec.mirrors[{i}]");
        let m = as_map(&ctx, m, &path)?;
        let source = match str_field(&ctx, m, "sourceCluster", &path)? {
            Some(s) => s,
            None => match field(m, "source").and_then(|s| s.as_mapping()) {
                Some(sm) => required_str(&ctx, sm, "alias", &format!("{path}.source"))?,
                None => return Err(ctx.missing(&format!("{path}.sourceCluster"), "required")),
            },
        };
        let target = match str_field(&ctx, m, "targetCluster", &path)? {
            Some(t) => t,
            None => target_alias
                .clone()
                .ok_or_else(|| ctx.missing(&format!("{path}.targetCluster"), "required"))?,
        };
        for (alias, p) in [(&source, "sourceCluster"), (&target, "targetCluster")] {
            if !aliases.contains(&alias.as_str()) {
                return Err(ctx.invalid(
                    &format!("{path}.{p}"),
                    format!(
                        "`{alias}` is not a cluster alias (clusters: {})",
                        aliases.join(", ")
                    ),
                ));
            }
        }
        if target_alias.as_deref().is_some_and(|t| t != target) {
            ctx.warn(
                &format!("{path}.targetCluster"),
                "differs from spec.connectCluster; Strait replicates into the named target anyway",
            );
        }
        let prefix = format!("{source}->{target}.");
        let mut settings: BTreeMap<String, (String, String)> = BTreeMap::new();
        let put = |ctx: &mut Ctx<'_>,
                   settings: &mut BTreeMap<String, (String, String)>,
                   k: String,
                   v: String,
                   p: String| {
            if let Some((old, old_path)) = settings.get(&k) {
                if *old != v {
                    ctx.warn(
                        &p,
                        format!("`{k}` also set to `{old}` at {old_path}; using `{v}`"),
                    );
                }
            }
            settings.insert(k, (v, p));
        };
        let mut present = BTreeMap::new();
        for name in [
            "heartbeatConnector",
            "checkpointConnector",
            "sourceConnector",
        ] {
            let Some(c) = field(m, name) else { continue };
            let cpath = format!("{path}.{name}");
            let c = as_map(&ctx, c, &cpath)?;
            let paused = field(c, "pause").and_then(Value::as_bool) == Some(true)
                || matches!(
                    str_field(&ctx, c, "state", &cpath)?.as_deref(),
                    Some("paused" | "stopped")
                );
            present.insert(name, !paused);
            if paused {
                ctx.warn(
                    &cpath,
                    "connector is paused or stopped; its function is disabled",
                );
            }
            for (k, v, p) in config_map(&ctx, field(c, "config"), &format!("{cpath}.config"))? {
                put(&mut ctx, &mut settings, k, v, p);
            }
            if name == "sourceConnector" {
                if let Some(t) = str_field(&ctx, c, "tasksMax", &cpath)? {
                    put(
                        &mut ctx,
                        &mut settings,
                        "tasks.max".into(),
                        t,
                        format!("{cpath}.tasksMax"),
                    );
                }
            }
        }
        for (yaml, key) in [("topicsPattern", "topics"), ("groupsPattern", "groups")] {
            if let Some(v) = str_field(&ctx, m, yaml, &path)? {
                put(
                    &mut ctx,
                    &mut settings,
                    key.into(),
                    v,
                    format!("{path}.{yaml}"),
                );
            }
        }
        for (new, old, key) in [
            (
                "topicsExcludePattern",
                "topicsBlacklistPattern",
                "topics.exclude",
            ),
            (
                "groupsExcludePattern",
                "groupsBlacklistPattern",
                "groups.exclude",
            ),
        ] {
            let n = str_field(&ctx, m, new, &path)?;
            let o = str_field(&ctx, m, old, &path)?;
            if o.is_some() {
                ctx.warn(&format!("{path}.{old}"), format!("deprecated; use {new}"));
            }
            if let Some((v, which)) = n.map(|v| (v, new)).or(o.map(|v| (v, old))) {
                put(
                    &mut ctx,
                    &mut settings,
                    key.into(),
                    v,
                    format!("{path}.{which}"),
                );
            }
        }
        let source_on = present.get("sourceConnector").copied().unwrap_or(false);
        if !present.contains_key("sourceConnector") {
            ctx.warn(&path, "no sourceConnector: this mirror replicates nothing");
        }
        let mut default = |k: &str, v: bool| {
            settings
                .entry(k.to_owned())
                .or_insert_with(|| (v.to_string(), path.clone()));
        };
        default("enabled", source_on);
        let heartbeats = present.get("heartbeatConnector").copied().unwrap_or(false);
        default("emit.heartbeats.enabled", heartbeats);
        let checkpoints = present.get("checkpointConnector").copied().unwrap_or(false);
        default("emit.checkpoints.enabled", checkpoints);
        default("sync.group.offsets.enabled", false);
        // What a connector does happens only where Strimzi deploys that connector (present and
        // running), whatever another connector's config says.
        for (on, connector, keys) in [
            (
                heartbeats,
                "heartbeatConnector",
                &["emit.heartbeats.enabled"][..],
            ),
            (
                checkpoints,
                "checkpointConnector",
                &["emit.checkpoints.enabled", "sync.group.offsets.enabled"][..],
            ),
        ] {
            if on {
                continue;
            }
            for key in keys {
                if let Some((v, p)) = settings.get(*key) {
                    if v.trim().eq_ignore_ascii_case("true") {
                        ctx.warn(
                            p,
                            format!("`{key}` ignored: Strimzi runs no (running) {connector} for this mirror"),
                        );
                    }
                }
                settings.insert((*key).into(), ("false".into(), path.clone()));
            }
        }
        if !source_on {
            settings.insert("enabled".into(), ("false".into(), path.clone()));
        }
        // Strimzi names the connector `<source>-><target>.MirrorSourceConnector`, and Connect
        // keys its source offsets by connector name.
        settings.insert(
            "strait.progress.connector".into(),
            (format!("{prefix}MirrorSourceConnector"), path.clone()),
        );
        for (k, (v, p)) in settings {
            ctx.push(format!("{prefix}{k}"), v, &p, true);
        }
    }
    Ok((ctx.entries, ctx.warnings))
}

/// Strimzi's default `offset.storage.topic` for a `KafkaMirrorMaker2` Connect cluster.
const STRIMZI_OFFSET_STORAGE_TOPIC: &str = "mirrormaker2-cluster-offsets";

#[cfg(test)]
mod tests {
    use super::glob_match;

    #[test]
    fn globs() {
        assert!(glob_match("*.crt", "ca.crt"));
        assert!(!glob_match("*.crt", "ca.key"));
        assert!(glob_match("ca?.pem", "ca1.pem"));
        assert!(glob_match("*", "x"));
        assert!(glob_match("a*b*c", "aXXbYYc"));
        assert!(!glob_match("a*b*c", "aXXbYY"));
    }
}
