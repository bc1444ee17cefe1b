//! Kafka client connection settings (security protocol, SASL, TLS) with secrets redacted
//! from `Debug` output.

use std::collections::BTreeMap;
use std::fmt;

/// A secret string: `Debug` and `Display` print `[redacted]` (the wire client's type, so secrets
/// pass from configuration to connections without being copied into plain strings).
pub use protocol_client::security::Secret;

/// Whether a setting name holds a secret (passwords, JAAS configs, keys, tokens, secrets).
pub fn is_sensitive_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    k.contains("password")
        || k.contains("jaas")
        || k.contains("secret")
        || k.contains("token")
        || k.contains("credential")
        || k.ends_with(".key")
        || k.ends_with("keystore.key")
}

/// A map of raw settings whose `Debug` output redacts sensitive values.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct RawSettings(pub BTreeMap<String, String>);

impl RawSettings {
    /// A value by key.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True if empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Entries in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

impl fmt::Debug for RawSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut m = f.debug_map();
        for (k, v) in &self.0 {
            if is_sensitive_key(k) {
                m.entry(k, &"[redacted]");
            } else {
                m.entry(k, v);
            }
        }
        m.finish()
    }
}

/// `security.protocol`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum SecurityProtocol {
    /// `PLAINTEXT` (Kafka's default).
    #[default]
    Plaintext,
    /// `SSL`.
    Ssl,
    /// `SASL_PLAINTEXT`.
    SaslPlaintext,
    /// `SASL_SSL`.
    SaslSsl,
}

impl SecurityProtocol {
    /// Parses a name, case-insensitively (`SecurityProtocol.forName`).
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_uppercase().as_str() {
            "PLAINTEXT" => Some(Self::Plaintext),
            "SSL" => Some(Self::Ssl),
            "SASL_PLAINTEXT" => Some(Self::SaslPlaintext),
            "SASL_SSL" => Some(Self::SaslSsl),
            _ => None,
        }
    }

    /// Kafka's name (`SASL_SSL`, …).
    pub fn name(self) -> &'static str {
        match self {
            Self::Plaintext => "PLAINTEXT",
            Self::Ssl => "SSL",
            Self::SaslPlaintext => "SASL_PLAINTEXT",
            Self::SaslSsl => "SASL_SSL",
        }
    }

    /// Uses TLS on the wire.
    pub fn uses_tls(self) -> bool {
        matches!(self, Self::Ssl | Self::SaslSsl)
    }

    /// Authenticates with SASL.
    pub fn uses_sasl(self) -> bool {
        matches!(self, Self::SaslPlaintext | Self::SaslSsl)
    }
}

/// `sasl.mechanism`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SaslMechanism {
    /// `PLAIN`.
    Plain,
    /// `SCRAM-SHA-256`.
    ScramSha256,
    /// `SCRAM-SHA-512`.
    ScramSha512,
    /// `OAUTHBEARER`.
    OAuthBearer,
    /// `GSSAPI` (Kerberos; Kafka's default mechanism).
    Gssapi,
    /// Anything else, verbatim.
    Other(String),
}

impl SaslMechanism {
    /// Parses a mechanism name (case-sensitive upper case in Kafka; accepted in any case).
    pub fn parse(s: &str) -> Self {
        match s.trim().to_ascii_uppercase().as_str() {
            "PLAIN" => Self::Plain,
            "SCRAM-SHA-256" => Self::ScramSha256,
            "SCRAM-SHA-512" => Self::ScramSha512,
            "OAUTHBEARER" => Self::OAuthBearer,
            "GSSAPI" => Self::Gssapi,
            _ => Self::Other(s.trim().to_owned()),
        }
    }
}

/// A parsed `sasl.jaas.config` (one login module, as Kafka requires).
#[derive(Clone, PartialEq, Eq)]
pub struct JaasConfig {
    /// Login module class, e.g. `org.apache.kafka.common.security.plain.PlainLoginModule`.
    pub login_module: String,
    /// `required`, `requisite`, `sufficient` or `optional`.
    pub control_flag: String,
    /// Module options (values are secret-bearing; `Debug` redacts all but `username`).
    pub options: BTreeMap<String, String>,
}

impl fmt::Debug for JaasConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let options: BTreeMap<&str, &str> = self
            .options
            .iter()
            .map(|(k, v)| {
                let shown = if k == "username" || k.ends_with("client.id") || k == "clientId" {
                    v.as_str()
                } else {
                    "[redacted]"
                };
                (k.as_str(), shown)
            })
            .collect();
        f.debug_struct("JaasConfig")
            .field("login_module", &self.login_module)
            .field("control_flag", &self.control_flag)
            .field("options", &options)
            .finish()
    }
}

impl JaasConfig {
    /// Parses `Module flag key="value" key2=value2;` (Kafka's `JaasConfig`, which tokenizes
    /// with `StreamTokenizer`: quoted values may contain escaped quotes and backslashes).
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut tokens = JaasTokens::new(text);
        let login_module = match tokens.next()? {
            Some(Token::Word(w)) => w,
            _ => return Err("expected a login module class name".into()),
        };
        let control_flag = match tokens.next()? {
            Some(Token::Word(w))
                if matches!(
                    w.to_ascii_lowercase().as_str(),
                    "required" | "requisite" | "sufficient" | "optional"
                ) =>
            {
                w.to_ascii_lowercase()
            }
            _ => {
                return Err(
                    "expected a control flag (required, requisite, sufficient, optional)".into(),
                )
            }
        };
        let mut options = BTreeMap::new();
        loop {
            match tokens.next()? {
                Some(Token::Semicolon) => break,
                Some(Token::Word(name)) => {
                    if tokens.next()? != Some(Token::Equals) {
                        return Err(format!("expected `=` after option `{name}`"));
                    }
                    match tokens.next()? {
                        Some(Token::Word(v)) | Some(Token::Quoted(v)) => {
                            options.insert(name, v);
                        }
                        _ => return Err(format!("expected a value for option `{name}`")),
                    }
                }
                None => return Err("missing terminating `;`".into()),
                Some(_) => return Err("unexpected token in options".into()),
            }
        }
        if tokens.next()?.is_some() {
            return Err("only one login module is allowed".into());
        }
        Ok(Self {
            login_module,
            control_flag,
            options,
        })
    }

    /// Renders a JAAS config string with quoted, escaped option values.
    pub fn render(login_module: &str, options: &[(&str, &str)]) -> String {
        let mut out = format!("{login_module} required");
        for (k, v) in options {
            out.push(' ');
            out.push_str(k);
            out.push_str("=\"");
            for c in v.chars() {
                if c == '"' || c == '\\' {
                    out.push('\\');
                }
                out.push(c);
            }
            out.push('"');
        }
        out.push(';');
        out
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Token {
    Word(String),
    Quoted(String),
    Equals,
    Semicolon,
}

struct JaasTokens<'a> {
    chars: std::iter::Peekable<std::str::Chars<'a>>,
}

impl<'a> JaasTokens<'a> {
    fn new(s: &'a str) -> Self {
        Self {
            chars: s.chars().peekable(),
        }
    }

    fn next(&mut self) -> Result<Option<Token>, String> {
        while self.chars.peek().is_some_and(|c| c.is_whitespace()) {
            self.chars.next();
        }
        let Some(c) = self.chars.next() else {
            return Ok(None);
        };
        match c {
            '=' => Ok(Some(Token::Equals)),
            ';' => Ok(Some(Token::Semicolon)),
            '"' => {
                let mut s = String::new();
                loop {
                    match self.chars.next() {
                        None => return Err("unterminated quoted value".into()),
                        Some('"') => return Ok(Some(Token::Quoted(s))),
                        Some('\\') => match self.chars.next() {
                            Some('n') => s.push('\n'),
                            Some('t') => s.push('\t'),
                            Some('r') => s.push('\r'),
                            Some(other) => s.push(other),
                            None => return Err("unterminated quoted value".into()),
                        },
                        Some(other) => s.push(other),
                    }
                }
            }
            c => {
                let mut s = String::from(c);
                while let Some(&n) = self.chars.peek() {
                    if n.is_whitespace() || n == '=' || n == ';' || n == '"' {
                        break;
                    }
                    s.push(n);
                    self.chars.next();
                }
                Ok(Some(Token::Word(s)))
            }
        }
    }
}

/// SASL settings of a cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaslSettings {
    /// Mechanism.
    pub mechanism: SaslMechanism,
    /// The parsed JAAS config, if given.
    pub jaas: Option<JaasConfig>,
    /// `username` from a PLAIN or SCRAM JAAS config.
    pub username: Option<String>,
    /// `password` from a PLAIN or SCRAM JAAS config.
    pub password: Option<Secret>,
}

/// TLS settings of a cluster (`ssl.*`); PEM material inline, stores by path.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TlsSettings {
    /// `ssl.truststore.type`.
    pub truststore_type: Option<String>,
    /// `ssl.truststore.location`.
    pub truststore_location: Option<String>,
    /// `ssl.truststore.password`.
    pub truststore_password: Option<Secret>,
    /// `ssl.truststore.certificates` (PEM).
    pub truststore_certificates: Option<String>,
    /// `ssl.keystore.type`.
    pub keystore_type: Option<String>,
    /// `ssl.keystore.location`.
    pub keystore_location: Option<String>,
    /// `ssl.keystore.password`.
    pub keystore_password: Option<Secret>,
    /// `ssl.key.password`.
    pub key_password: Option<Secret>,
    /// `ssl.keystore.certificate.chain` (PEM).
    pub keystore_certificate_chain: Option<String>,
    /// `ssl.keystore.key` (PEM private key).
    pub keystore_key: Option<Secret>,
    /// `ssl.endpoint.identification.algorithm`: `https` (default) verifies the host name;
    /// empty disables that check.
    pub endpoint_identification_algorithm: String,
    /// `ssl.protocol`.
    pub protocol: Option<String>,
    /// `ssl.enabled.protocols`.
    pub enabled_protocols: Vec<String>,
    /// `ssl.cipher.suites`.
    pub cipher_suites: Vec<String>,
}

/// Connection settings of one cluster.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClientSettings {
    /// `security.protocol`.
    pub security_protocol: SecurityProtocol,
    /// SASL settings when the protocol uses SASL.
    pub sasl: Option<SaslSettings>,
    /// TLS settings (meaningful when the protocol uses TLS).
    pub tls: TlsSettings,
    /// `client.id`.
    pub client_id: Option<String>,
    /// `request.timeout.ms`: a request unanswered this long fails and its connection is closed
    /// (the client's default, 30 s, when unset).
    pub request_timeout: Option<std::time::Duration>,
    /// Every cluster-level client setting as given (redacted in `Debug`).
    pub raw: RawSettings,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jaas_parsing() {
        let j = JaasConfig::parse(
            r#"org.apache.kafka.common.security.scram.ScramLoginModule required username="alice" password="p\"w;d";"#,
        )
        .unwrap();
        assert_eq!(
            j.login_module,
            "org.apache.kafka.common.security.scram.ScramLoginModule"
        );
        assert_eq!(j.control_flag, "required");
        assert_eq!(j.options["username"], "alice");
        assert_eq!(j.options["password"], "p\"w;d");
        let dbg = format!("{j:?}");
        assert!(dbg.contains("alice") && !dbg.contains("p\\\"w"));
        let bare = JaasConfig::parse("M optional a=b c = \"d\" ;").unwrap();
        assert_eq!(bare.options["a"], "b");
        assert_eq!(bare.options["c"], "d");
        assert!(JaasConfig::parse("M required a=b").is_err());
        assert!(JaasConfig::parse("M bogus;").is_err());
        assert!(JaasConfig::parse("M required; N required;").is_err());
        let rendered = JaasConfig::render("M", &[("username", "u"), ("password", "a\"b\\c")]);
        let back = JaasConfig::parse(&rendered).unwrap();
        assert_eq!(back.options["password"], "a\"b\\c");
    }

    #[test]
    fn redaction() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?} {s}"), "[redacted] [redacted]");
        let mut m = BTreeMap::new();
        m.insert(
            "sasl.jaas.config".to_owned(),
            "x password=hunter2".to_owned(),
        );
        m.insert("ssl.keystore.key".to_owned(), "-----BEGIN".to_owned());
        m.insert("ssl.truststore.password".to_owned(), "pw".to_owned());
        m.insert("client.id".to_owned(), "visible".to_owned());
        let dbg = format!("{:?}", RawSettings(m));
        assert!(!dbg.contains("hunter2") && !dbg.contains("BEGIN") && !dbg.contains("\"pw\""));
        assert!(dbg.contains("visible"));
    }

    #[test]
    fn protocol_and_mechanism_names() {
        assert_eq!(
            SecurityProtocol::parse("sasl_ssl"),
            Some(SecurityProtocol::SaslSsl)
        );
        assert_eq!(SecurityProtocol::parse("TLS"), None);
        assert_eq!(
            SaslMechanism::parse("SCRAM-SHA-512"),
            SaslMechanism::ScramSha512
        );
        assert_eq!(
            SaslMechanism::parse("AWS_MSK_IAM"),
            SaslMechanism::Other("AWS_MSK_IAM".into())
        );
    }
}
