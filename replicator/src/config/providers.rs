//! Kafka config-provider references (`${provider:path:key}`, KIP-297) and secret lookup.
//!
//! Syntax (Kafka `ConfigTransformer`): `${provider:key}` or `${provider:path:key}`; the
//! path ends at the first `:` after the provider name, and the key may contain `:`.
//! Built-in providers resolve whether or not `config.providers` declares them:
//! - `file` (`FileConfigProvider`): `${file:/path/app.properties:key}` reads `key` from a
//!   Java properties file;
//! - `env` (`EnvVarConfigProvider`): `${env:VAR}` or `${env::VAR}` (empty path).
//!
//! Declared providers (`config.providers=a,b` + `config.providers.a.class=...`) may use
//! those classes under other names, `DirectoryConfigProvider` (`${dir:/path:file}` reads
//! the file's content) or Strimzi's `KubernetesSecretConfigProvider`
//! (`${secrets:namespace/name:key}`, resolved through [`secret_value`]). Any reference
//! that cannot be resolved is an error naming the setting.
//!
//! All access to the environment and files goes through [`SecretSource`], so tests
//! inject fakes.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};

use regex::Regex;

use super::properties;

/// Where secrets and referenced files come from.
pub trait SecretSource {
    /// An environment variable.
    fn env_var(&self, name: &str) -> Option<String>;
    /// A file's content as UTF-8.
    fn read_file(&self, path: &Path) -> io::Result<String>;
    /// File names in a directory.
    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>>;
}

/// The real process environment and file system.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemSecrets;

impl SecretSource for SystemSecrets {
    fn env_var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }

    fn read_file(&self, path: &Path) -> io::Result<String> {
        std::fs::read_to_string(path)
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(path)? {
            let entry = entry?;
            if entry.file_type()?.is_file() || entry.file_type()?.is_symlink() {
                names.push(entry.file_name().to_string_lossy().into_owned());
            }
        }
        names.sort();
        Ok(names)
    }
}

/// Default directory for secrets referenced by name (`STRAIT_SECRETS_DIR` overrides it).
pub const DEFAULT_SECRETS_DIR: &str = "/etc/strait/secrets";

/// Environment variable naming a secret key: `STRAIT_SECRET_<SECRET>_<KEY>`, upper-cased,
/// every character other than ASCII letters and digits replaced by `_`.
pub fn secret_env_var_name(secret_name: &str, key: &str) -> String {
    let norm = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_uppercase()
                } else {
                    '_'
                }
            })
            .collect()
    };
    format!("STRAIT_SECRET_{}_{}", norm(secret_name), norm(key))
}

/// The directory holding secret `secret_name`'s keys as files.
pub fn secret_dir(src: &dyn SecretSource, secret_name: &str) -> PathBuf {
    let base = src
        .env_var("STRAIT_SECRETS_DIR")
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| DEFAULT_SECRETS_DIR.to_owned());
    Path::new(&base).join(secret_name)
}

/// Looks up key `key` of secret `secret_name`: the environment variable
/// [`secret_env_var_name`] wins; otherwise the file `$STRAIT_SECRETS_DIR/<secret>/<key>`
/// (default directory [`DEFAULT_SECRETS_DIR`]), as a Kubernetes secret volume lays it out.
pub fn secret_value(
    src: &dyn SecretSource,
    secret_name: &str,
    key: &str,
) -> Result<String, String> {
    if secret_name.is_empty() || key.is_empty() || secret_name.contains('/') || key.contains('/') {
        return Err(format!("invalid secret reference `{secret_name}`/`{key}`"));
    }
    let env = secret_env_var_name(secret_name, key);
    if let Some(v) = src.env_var(&env) {
        return Ok(v);
    }
    let path = secret_dir(src, secret_name).join(key);
    src.read_file(&path).map_err(|e| {
        format!(
            "secret `{secret_name}` key `{key}` not found (no environment variable {env}; {}: {e})",
            path.display()
        )
    })
}

/// Kinds of config providers Strait implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ProviderKind {
    File,
    Env,
    Directory,
    KubernetesSecret,
}

impl ProviderKind {
    pub(crate) fn from_class(class: &str) -> Option<Self> {
        match class.trim() {
            "org.apache.kafka.common.config.provider.FileConfigProvider" => Some(Self::File),
            "org.apache.kafka.common.config.provider.EnvVarConfigProvider" => Some(Self::Env),
            "org.apache.kafka.common.config.provider.DirectoryConfigProvider" => {
                Some(Self::Directory)
            }
            "io.strimzi.kafka.KubernetesSecretConfigProvider" => Some(Self::KubernetesSecret),
            _ => None,
        }
    }
}

/// Resolves `${...}` references.
pub(crate) struct Resolver<'a> {
    providers: HashMap<String, Option<ProviderKind>>,
    src: &'a dyn SecretSource,
    file_cache: HashMap<PathBuf, HashMap<String, String>>,
    pattern: Regex,
}

impl<'a> Resolver<'a> {
    /// `declared`: provider name → class (None when `config.providers.<name>.class` is missing
    /// or names an unsupported class).
    pub(crate) fn new(
        declared: HashMap<String, Option<ProviderKind>>,
        src: &'a dyn SecretSource,
    ) -> Self {
        let mut providers = declared;
        providers
            .entry("file".to_owned())
            .or_insert(Some(ProviderKind::File));
        providers
            .entry("env".to_owned())
            .or_insert(Some(ProviderKind::Env));
        Self {
            providers,
            src,
            file_cache: HashMap::new(),
            pattern: Regex::new(r"\$\{([^}]*?):(?:([^}]*?):)?([^}]*?)\}")
                .expect("provider reference pattern compiles"),
        }
    }

    /// Replaces every reference in `value`; the error message says which one failed.
    pub(crate) fn resolve(&mut self, value: &str) -> Result<String, String> {
        if !value.contains("${") {
            return Ok(value.to_owned());
        }
        let mut out = String::with_capacity(value.len());
        let mut last = 0;
        let matches: Vec<_> = self
            .pattern
            .captures_iter(value)
            .map(|c| {
                let whole = c.get(0).expect("group 0 always matches");
                (
                    whole.start(),
                    whole.end(),
                    c.get(1).map_or("", |m| m.as_str()).to_owned(),
                    c.get(2).map(|m| m.as_str().to_owned()),
                    c.get(3).map_or("", |m| m.as_str()).to_owned(),
                )
            })
            .collect();
        for (start, end, provider, path, key) in matches {
            out.push_str(&value[last..start]);
            out.push_str(&self.lookup(&provider, path.as_deref(), &key)?);
            last = end;
        }
        out.push_str(&value[last..]);
        Ok(out)
    }

    fn lookup(&mut self, provider: &str, path: Option<&str>, key: &str) -> Result<String, String> {
        let reference = match path {
            Some(p) => format!("${{{provider}:{p}:{key}}}"),
            None => format!("${{{provider}:{key}}}"),
        };
        let kind = match self.providers.get(provider) {
            Some(Some(kind)) => *kind,
            Some(None) => {
                return Err(format!(
                    "{reference}: config provider `{provider}` has no supported class (supported: FileConfigProvider, EnvVarConfigProvider, DirectoryConfigProvider, KubernetesSecretConfigProvider)"
                ))
            }
            None => {
                return Err(format!(
                    "{reference}: unknown config provider `{provider}` (declare it in config.providers)"
                ))
            }
        };
        match kind {
            ProviderKind::Env => {
                if path.is_some_and(|p| !p.is_empty()) {
                    return Err(format!(
                        "{reference}: the env provider takes no path; use ${{{provider}:{key}}}"
                    ));
                }
                self.src
                    .env_var(key)
                    .ok_or_else(|| format!("{reference}: environment variable `{key}` is not set"))
            }
            ProviderKind::File => {
                let Some(path) = path.filter(|p| !p.is_empty()) else {
                    return Err(format!("{reference}: the file provider needs a path"));
                };
                let path = PathBuf::from(path);
                if !self.file_cache.contains_key(&path) {
                    let text = self
                        .src
                        .read_file(&path)
                        .map_err(|e| format!("{reference}: cannot read {}: {e}", path.display()))?;
                    let parsed = properties::parse(&text).map_err(|e| {
                        format!("{reference}: {}:{}: {}", path.display(), e.line, e.message)
                    })?;
                    let map = parsed.into_iter().map(|p| (p.key, p.value)).collect();
                    self.file_cache.insert(path.clone(), map);
                }
                self.file_cache[&path]
                    .get(key)
                    .cloned()
                    .ok_or_else(|| format!("{reference}: no key `{key}` in {}", path.display()))
            }
            ProviderKind::Directory => {
                let Some(dir) = path.filter(|p| !p.is_empty()) else {
                    return Err(format!("{reference}: the directory provider needs a path"));
                };
                if key.contains('/') || key == ".." {
                    return Err(format!("{reference}: invalid file name `{key}`"));
                }
                let file = Path::new(dir).join(key);
                self.src
                    .read_file(&file)
                    .map_err(|e| format!("{reference}: cannot read {}: {e}", file.display()))
            }
            ProviderKind::KubernetesSecret => {
                let Some(path) = path.filter(|p| !p.is_empty()) else {
                    return Err(format!(
                        "{reference}: expected ${{{provider}:namespace/name:key}}"
                    ));
                };
                let name = path.rsplit('/').next().unwrap_or(path);
                secret_value(self.src, name, key).map_err(|e| format!("{reference}: {e}"))
            }
        }
    }
}

/// A [`SecretSource`] backed by maps, for tests.
#[cfg(test)]
#[derive(Debug, Default, Clone)]
pub(crate) struct FakeSecrets {
    pub(crate) env: HashMap<String, String>,
    pub(crate) files: HashMap<PathBuf, String>,
}

#[cfg(test)]
impl FakeSecrets {
    pub(crate) fn with_env(mut self, k: &str, v: &str) -> Self {
        self.env.insert(k.to_owned(), v.to_owned());
        self
    }

    pub(crate) fn with_file(mut self, p: &str, v: &str) -> Self {
        self.files.insert(PathBuf::from(p), v.to_owned());
        self
    }
}

#[cfg(test)]
impl SecretSource for FakeSecrets {
    fn env_var(&self, name: &str) -> Option<String> {
        self.env.get(name).cloned()
    }

    fn read_file(&self, path: &Path) -> io::Result<String> {
        self.files
            .get(path)
            .cloned()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "not found"))
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        let mut names: Vec<String> = self
            .files
            .keys()
            .filter(|p| p.parent() == Some(path))
            .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect();
        if names.is_empty() {
            return Err(io::Error::new(io::ErrorKind::NotFound, "no such directory"));
        }
        names.sort();
        Ok(names)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_providers() {
        let src = FakeSecrets::default()
            .with_env("PW", "s3cret")
            .with_file("/etc/creds.properties", "user = bob\npass=p:w\n");
        let mut r = Resolver::new(HashMap::new(), &src);
        assert_eq!(r.resolve("x${env:PW}y").unwrap(), "xs3crety");
        assert_eq!(r.resolve("${env::PW}").unwrap(), "s3cret");
        assert_eq!(
            r.resolve("${file:/etc/creds.properties:user}/${file:/etc/creds.properties:pass}")
                .unwrap(),
            "bob/p:w"
        );
        assert_eq!(r.resolve("no refs $ {x}").unwrap(), "no refs $ {x}");
        assert!(r.resolve("${env:MISSING}").unwrap_err().contains("MISSING"));
        assert!(r.resolve("${vault:a:b}").unwrap_err().contains("vault"));
        assert!(r.resolve("${file:/nope:a}").is_err());
        assert!(r.resolve("${file:/etc/creds.properties:nokey}").is_err());
        assert!(r.resolve("${env:/p:PW}").is_err());
    }

    #[test]
    fn declared_providers() {
        let src = FakeSecrets::default()
            .with_file("/run/secrets/pw", "dirpw")
            .with_env("STRAIT_SECRET_MY_SECRET_PASSWORD", "k8s");
        let mut declared = HashMap::new();
        declared.insert("dir".to_owned(), Some(ProviderKind::Directory));
        declared.insert("secrets".to_owned(), Some(ProviderKind::KubernetesSecret));
        declared.insert("bad".to_owned(), None);
        let mut r = Resolver::new(declared, &src);
        assert_eq!(r.resolve("${dir:/run/secrets:pw}").unwrap(), "dirpw");
        assert_eq!(
            r.resolve("${secrets:ns/my-secret:password}").unwrap(),
            "k8s"
        );
        assert!(r
            .resolve("${bad:x}")
            .unwrap_err()
            .contains("no supported class"));
    }

    #[test]
    fn secret_lookup_env_wins_then_file() {
        assert_eq!(
            secret_env_var_name("my-cluster.user", "user.password"),
            "STRAIT_SECRET_MY_CLUSTER_USER_USER_PASSWORD"
        );
        let src = FakeSecrets::default()
            .with_file("/etc/strait/secrets/s/password", "fromfile")
            .with_file("/custom/t/password", "custom");
        assert_eq!(secret_value(&src, "s", "password").unwrap(), "fromfile");
        let src = src.with_env("STRAIT_SECRET_S_PASSWORD", "fromenv");
        assert_eq!(secret_value(&src, "s", "password").unwrap(), "fromenv");
        let src = src.with_env("STRAIT_SECRETS_DIR", "/custom");
        assert_eq!(secret_value(&src, "t", "password").unwrap(), "custom");
        assert!(secret_value(&src, "missing", "password").is_err());
        assert!(secret_value(&src, "../x", "password").is_err());
    }
}
