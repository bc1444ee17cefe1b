//! OAUTHBEARER, client side (RFC 7628), as Kafka's `OAuthBearerSaslClient` and
//! `OAuthBearerClientInitialResponse` speak it (KIP-255, extensions KIP-342).
//!
//! The client's only message is the GS2 header and key/value pairs separated by `\x01`:
//! `n,,\x01auth=Bearer <token>\x01<key>=<value>\x01…\x01`. The token must be an RFC 6750
//! `b64token`; extension keys are `[A-Za-z]+` other than the reserved `auth`, values are
//! `[\x21-\x7E \t\r\n]+` (Kafka's `OAuthBearerClientInitialResponse.validateExtensions`).
//!
//! The server answers an accepted token with an empty message. A rejected token gets an error
//! JSON (`{"status":"invalid_token",…}`, RFC 7628 §3.2.2), to which the client must reply with a
//! single `\x01` (§3.2.3); the server then fails the exchange (Kafka: a SaslAuthenticate error
//! code). If the connection layer calls [`Mechanism::step`] once more, the status becomes
//! [`SaslError::Rejected`].
//!
//! Tokens come from a [`TokenSource`]: a static value, a file read again at every
//! (re-)authentication (like Kafka's `FileTokenRetriever`), or an unsecured JWT (`alg: none`)
//! built from `unsecuredLogin*` JAAS options like Kafka's
//! `OAuthBearerUnsecuredLoginCallbackHandler`:
//!
//! - `unsecuredLoginStringClaim_<name>="value"`, `unsecuredLoginNumberClaim_<name>="1.5"`,
//!   `unsecuredLoginListClaim_<name>="|a|b"` (the first character is the delimiter);
//! - `unsecuredLoginPrincipalClaimName` (default `sub`), which must name a non-blank string
//!   claim; `unsecuredLoginScopeClaimName` (default `scope`), which must be a string or list
//!   claim if present;
//! - `unsecuredLoginLifetimeSeconds` (default 3600) for `exp`; `iat` is the authentication time
//!   (whole seconds; Kafka writes fractional seconds, which JWT's NumericDate also allows);
//! - `unsecuredLoginExtension_<name>` options become SASL extensions.
//!
//! List claims split on every delimiter, so `"|a||b|"` is `["a","","b",""]` (Kafka's splitter
//! drops and re-adds empty elements inconsistently). Claims are written in name order.

use std::collections::BTreeMap;
use std::fmt;
use std::fmt::Write as _;
use std::fs::File;
use std::io::Read as _;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

use super::{server_text, Mechanism, SaslError, TokenSource};
use crate::security::Secret;

const NAME: &str = "OAUTHBEARER";
const SEPARATOR: u8 = 0x01;
/// The largest token file read (Kafka brokers accept SASL messages up to 512 KiB by default,
/// `sasl.server.max.receive.size`).
const MAX_TOKEN_FILE: u64 = 512 * 1024;

const STRING_CLAIM: &str = "unsecuredLoginStringClaim_";
const NUMBER_CLAIM: &str = "unsecuredLoginNumberClaim_";
const LIST_CLAIM: &str = "unsecuredLoginListClaim_";
const EXTENSION: &str = "unsecuredLoginExtension_";
const PRINCIPAL_CLAIM_NAME: &str = "unsecuredLoginPrincipalClaimName";
const SCOPE_CLAIM_NAME: &str = "unsecuredLoginScopeClaimName";
const LIFETIME_SECONDS: &str = "unsecuredLoginLifetimeSeconds";

/// One client-side OAUTHBEARER exchange.
pub struct OAuthBearer {
    token: Secret,
    extensions: BTreeMap<String, String>,
    state: State,
}

#[derive(Debug)]
enum State {
    Start,
    Sent,
    /// The server sent an error JSON and the client answered `\x01`.
    ErrorAcknowledged {
        status: String,
    },
    Complete,
    Failed,
}

impl fmt::Debug for OAuthBearer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuthBearer")
            .field("token", &self.token)
            .field("extensions", &self.extensions.keys().collect::<Vec<_>>())
            .field("state", &self.state)
            .finish()
    }
}

impl OAuthBearer {
    /// Prepares an exchange with a token (surrounding whitespace is ignored) and SASL
    /// extensions.
    ///
    /// Fails with [`SaslError::Credentials`] if the token is not an RFC 6750 `b64token` or an
    /// extension name or value is invalid.
    pub fn new(
        token: &Secret,
        extensions: BTreeMap<String, String>,
    ) -> Result<OAuthBearer, SaslError> {
        OAuthBearer::build(token.expose(), "the OAUTHBEARER token", extensions)
    }

    /// Prepares an exchange with a token from `source`: a file is read now, an unsecured JWT is
    /// issued at `now`. Extensions from `unsecuredLoginExtension_*` options are added to
    /// `extensions` (the same name with another value is an error).
    pub fn from_source(
        source: &TokenSource,
        extensions: &BTreeMap<String, String>,
        now: SystemTime,
    ) -> Result<OAuthBearer, SaslError> {
        match source {
            TokenSource::Static(token) => OAuthBearer::new(token, extensions.clone()),
            TokenSource::File(path) => {
                let token = read_token_file(path)?;
                let what = format!("the OAUTHBEARER token in {}", path.display());
                OAuthBearer::build(token.expose(), &what, extensions.clone())
            }
            TokenSource::Unsecured(options) => {
                let token = unsecured_jwt(options, now)?;
                let mut all = extensions.clone();
                for (key, value) in options {
                    let Some(name) = key.strip_prefix(EXTENSION) else {
                        continue;
                    };
                    match all.get(name) {
                        Some(existing) if existing != value => {
                            return Err(SaslError::Credentials(format!(
                                "OAUTHBEARER extension {name:?} is given two different values"
                            )))
                        }
                        Some(_) => {}
                        None => {
                            all.insert(name.to_owned(), value.clone());
                        }
                    }
                }
                OAuthBearer::build(&token, "the unsecured OAUTHBEARER token", all)
            }
        }
    }

    fn build(
        token: &str,
        what: &str,
        extensions: BTreeMap<String, String>,
    ) -> Result<OAuthBearer, SaslError> {
        let token = token.trim();
        validate_b64token(token)
            .map_err(|detail| SaslError::Credentials(format!("{what} {detail}")))?;
        for (key, value) in &extensions {
            validate_extension(key, value)?;
        }
        Ok(OAuthBearer {
            token: Secret::new(token),
            extensions,
            state: State::Start,
        })
    }
}

impl Mechanism for OAuthBearer {
    fn name(&self) -> &'static str {
        NAME
    }

    fn initial(&mut self) -> Result<Vec<u8>, SaslError> {
        if !matches!(self.state, State::Start) {
            let detail = format!("initial message requested in state {:?}", self.state);
            self.state = State::Failed;
            return Err(SaslError::Protocol {
                mechanism: NAME,
                detail,
            });
        }
        let token = self.token.expose();
        let mut message = Vec::with_capacity(
            20 + token.len()
                + self
                    .extensions
                    .iter()
                    .map(|(k, v)| k.len() + v.len() + 2)
                    .sum::<usize>(),
        );
        message.extend_from_slice(b"n,,\x01auth=Bearer ");
        message.extend_from_slice(token.as_bytes());
        message.push(SEPARATOR);
        for (key, value) in &self.extensions {
            message.extend_from_slice(key.as_bytes());
            message.push(b'=');
            message.extend_from_slice(value.as_bytes());
            message.push(SEPARATOR);
        }
        message.push(SEPARATOR);
        self.state = State::Sent;
        Ok(message)
    }

    fn step(&mut self, server: &[u8]) -> Result<Option<Vec<u8>>, SaslError> {
        match std::mem::replace(&mut self.state, State::Failed) {
            State::Sent if server.is_empty() => {
                self.state = State::Complete;
                Ok(None)
            }
            State::Sent => {
                self.state = State::ErrorAcknowledged {
                    status: error_status(server),
                };
                Ok(Some(vec![SEPARATOR]))
            }
            State::ErrorAcknowledged { status } => Err(SaslError::Rejected { reason: status }),
            other => Err(SaslError::Protocol {
                mechanism: NAME,
                detail: format!("unexpected server message in state {other:?}"),
            }),
        }
    }
}

/// RFC 6750 `b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
/// The error names the position, never the token.
fn validate_b64token(token: &str) -> Result<(), String> {
    if token.is_empty() {
        return Err("is empty".into());
    }
    let body = token.trim_end_matches('=');
    if body.is_empty() {
        return Err("is not an RFC 6750 b64token (only '=')".into());
    }
    let allowed = |b: u8| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b);
    match body.bytes().position(|b| !allowed(b)) {
        None => Ok(()),
        Some(at) => Err(format!(
            "is not an RFC 6750 b64token: the character at byte {at} is not allowed"
        )),
    }
}

/// Kafka's extension rules: name `[A-Za-z]+` and not `auth`, value `[\x21-\x7E \t\r\n]+`.
fn validate_extension(key: &str, value: &str) -> Result<(), SaslError> {
    if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphabetic()) {
        return Err(SaslError::Credentials(format!(
            "OAUTHBEARER extension name {key:?} is invalid: it must be ASCII letters only"
        )));
    }
    if key == "auth" {
        return Err(SaslError::Credentials(
            "OAUTHBEARER extension name \"auth\" is reserved".into(),
        ));
    }
    let allowed = |b: u8| (0x21..=0x7e).contains(&b) || b" \t\r\n".contains(&b);
    if value.is_empty() || !value.bytes().all(allowed) {
        return Err(SaslError::Credentials(format!(
            "OAUTHBEARER extension {key:?} has an invalid value: it must be non-empty printable \
             ASCII, space, tab, CR or LF"
        )));
    }
    Ok(())
}

/// Reads a token file; errors name the path, never the content.
fn read_token_file(path: &Path) -> Result<Secret, SaslError> {
    let fail = |why: String| {
        SaslError::Credentials(format!("OAUTHBEARER token file {}: {why}", path.display()))
    };
    let file = File::open(path).map_err(|e| fail(format!("cannot open: {e}")))?;
    let mut bytes = Vec::new();
    file.take(MAX_TOKEN_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| fail(format!("cannot read: {e}")))?;
    if bytes.len() as u64 > MAX_TOKEN_FILE {
        return Err(fail(format!("larger than {MAX_TOKEN_FILE} bytes")));
    }
    let text = String::from_utf8(bytes).map_err(|_| fail("not UTF-8".into()))?;
    let token = text.trim();
    if token.is_empty() {
        return Err(fail("empty".into()));
    }
    Ok(Secret::new(token))
}

/// The `status` of an RFC 7628 error JSON, or else the (sanitised, truncated) raw answer.
fn error_status(server: &[u8]) -> String {
    let text = String::from_utf8_lossy(server);
    match json_string_field(&text, "status") {
        Some(status) if !status.is_empty() => server_text(status.as_bytes()),
        _ => server_text(server),
    }
}

/// Finds `"key" : "value"` in JSON text and returns the value with simple escapes resolved.
/// Tolerant and minimal: no JSON parser, no allocation beyond the (bounded) value.
fn json_string_field(text: &str, key: &str) -> Option<String> {
    const MAX_CHARS: usize = 256;
    let needle = format!("\"{key}\"");
    let mut search = text;
    loop {
        let at = search.find(&needle)?;
        search = &search[at + needle.len()..];
        let Some(rest) = search.trim_start().strip_prefix(':') else {
            continue;
        };
        let rest = rest.trim_start().strip_prefix('"')?;
        let mut value = String::new();
        let mut chars = rest.chars();
        while let Some(c) = chars.next() {
            let c = match c {
                '"' => return Some(value),
                '\\' => match chars.next()? {
                    'n' => '\n',
                    't' => '\t',
                    'r' => '\r',
                    'b' => '\u{8}',
                    'f' => '\u{c}',
                    'u' => {
                        let hex: String = chars.by_ref().take(4).collect();
                        u32::from_str_radix(&hex, 16)
                            .ok()
                            .and_then(char::from_u32)
                            .unwrap_or(char::REPLACEMENT_CHARACTER)
                    }
                    other => other,
                },
                c => c,
            };
            value.push(c);
            if value.chars().count() >= MAX_CHARS {
                return Some(value);
            }
        }
        return Some(value);
    }
}

/// A JSON string literal for `s`, with RFC 8259 escaping.
fn json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

enum Claim {
    String(String),
    Number(f64),
    List(Vec<String>),
}

/// Builds Kafka's unsecured JWT `base64url(header).base64url(claims).` (empty signature).
fn unsecured_jwt(options: &BTreeMap<String, String>, now: SystemTime) -> Result<String, SaslError> {
    let config =
        |msg: String| SaslError::Credentials(format!("unsecured OAUTHBEARER token: {msg}"));
    let name_option = |option: &str, default: &'static str| -> String {
        match options.get(option).map(|v| v.trim()) {
            Some(v) if !v.is_empty() => v.to_owned(),
            _ => default.to_owned(),
        }
    };
    let principal_claim = name_option(PRINCIPAL_CLAIM_NAME, "sub");
    let scope_claim = name_option(SCOPE_CLAIM_NAME, "scope");
    let lifetime: u64 = match options.get(LIFETIME_SECONDS) {
        None => 3600,
        Some(text) => text.trim().parse().ok().filter(|&n| n > 0).ok_or_else(|| {
            config(format!(
                "{LIFETIME_SECONDS} {text:?} is not a positive whole number of seconds"
            ))
        })?,
    };
    let iat = now
        .duration_since(UNIX_EPOCH)
        .map_err(|_| config("the system clock is before 1970".into()))?
        .as_secs();
    let exp = iat
        .checked_add(lifetime)
        .ok_or_else(|| config(format!("{LIFETIME_SECONDS} is too large")))?;

    let mut claims: BTreeMap<&str, Claim> = BTreeMap::new();
    for (key, value) in options {
        let (name, claim) = if let Some(name) = key.strip_prefix(STRING_CLAIM) {
            (name, Claim::String(value.clone()))
        } else if let Some(name) = key.strip_prefix(NUMBER_CLAIM) {
            let number: f64 = value
                .trim()
                .parse()
                .ok()
                .filter(|n: &f64| n.is_finite())
                .ok_or_else(|| config(format!("number claim {name:?} is not a finite number")))?;
            (name, Claim::Number(number))
        } else if let Some(name) = key.strip_prefix(LIST_CLAIM) {
            let mut chars = value.chars();
            let list = match chars.next() {
                Some(delimiter) if !chars.as_str().is_empty() => {
                    chars.as_str().split(delimiter).map(str::to_owned).collect()
                }
                _ => Vec::new(),
            };
            (name, Claim::List(list))
        } else {
            continue;
        };
        if name.is_empty() {
            // Like Kafka, an option naming no claim is ignored.
            continue;
        }
        if name == "iat" || name == "exp" {
            return Err(config(format!(
                "the {name:?} claim is computed and cannot be set"
            )));
        }
        if claims.insert(name, claim).is_some() {
            return Err(config(format!("claim {name:?} is defined more than once")));
        }
    }
    match claims.get(principal_claim.as_str()) {
        Some(Claim::String(v)) if !v.trim().is_empty() => {}
        Some(_) => {
            return Err(config(format!(
                "the principal claim {principal_claim:?} must be a non-blank string claim \
                 ({STRING_CLAIM}{principal_claim})"
            )))
        }
        None => {
            return Err(config(format!(
                "no principal: set {STRING_CLAIM}{principal_claim}"
            )))
        }
    }
    if let Some(Claim::Number(_)) = claims.get(scope_claim.as_str()) {
        return Err(config(format!(
            "the scope claim {scope_claim:?} must be a string or a list"
        )));
    }

    let mut payload = format!("{{\"exp\":{exp},\"iat\":{iat}");
    for (name, claim) in &claims {
        payload.push(',');
        json_string(&mut payload, name);
        payload.push(':');
        match claim {
            Claim::String(s) => json_string(&mut payload, s),
            Claim::Number(n) => {
                let _ = write!(payload, "{n}");
            }
            Claim::List(items) => {
                payload.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        payload.push(',');
                    }
                    json_string(&mut payload, item);
                }
                payload.push(']');
            }
        }
    }
    payload.push('}');
    Ok(format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#),
        URL_SAFE_NO_PAD.encode(payload.as_bytes())
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn exts(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn credentials(err: SaslError) -> String {
        match err {
            SaslError::Credentials(detail) => detail,
            other => panic!("expected a credentials error, got {other:?}"),
        }
    }

    #[test]
    fn initial_message_static_token() {
        let mut m = OAuthBearer::new(&Secret::new("abc.DEF-_~+/=="), BTreeMap::new()).unwrap();
        assert_eq!(m.name(), "OAUTHBEARER");
        assert_eq!(
            m.initial().unwrap(),
            b"n,,\x01auth=Bearer abc.DEF-_~+/==\x01\x01".to_vec()
        );
        assert_eq!(m.step(b"").unwrap(), None);
        assert!(matches!(m.step(b""), Err(SaslError::Protocol { .. })));
    }

    #[test]
    fn initial_message_with_extensions_in_name_order() {
        let mut m = OAuthBearer::new(
            &Secret::new(" tok \n"),
            exts(&[("traceId", "123"), ("logicalCluster", "lkc-1 x")]),
        )
        .unwrap();
        assert_eq!(
            m.initial().unwrap(),
            b"n,,\x01auth=Bearer tok\x01logicalCluster=lkc-1 x\x01traceId=123\x01\x01".to_vec()
        );
    }

    #[test]
    fn invalid_tokens_and_extensions() {
        for token in ["", "   ", "a b", "tok\u{e9}", "===", "a=b", "a,b"] {
            let detail =
                credentials(OAuthBearer::new(&Secret::new(token), BTreeMap::new()).unwrap_err());
            assert!(detail.contains("OAUTHBEARER token"), "{detail}");
        }
        let detail =
            credentials(OAuthBearer::new(&Secret::new("sec ret"), BTreeMap::new()).unwrap_err());
        assert!(
            !detail.contains("sec"),
            "the token must not be echoed: {detail}"
        );
        for (k, v) in [
            ("auth", "x"),
            ("", "x"),
            ("a1", "x"),
            ("a_b", "x"),
            ("ok", ""),
            ("ok", "\u{1}"),
            ("ok", "caf\u{e9}"),
        ] {
            credentials(OAuthBearer::new(&Secret::new("t"), exts(&[(k, v)])).unwrap_err());
        }
        OAuthBearer::new(&Secret::new("t"), exts(&[("ok", "a b\t\r\n~!")])).unwrap();
    }

    #[test]
    fn server_error_json_is_acknowledged_then_rejected() {
        let mut m = OAuthBearer::new(&Secret::new("tok"), BTreeMap::new()).unwrap();
        m.initial().unwrap();
        let answer = m
            .step(br#"{ "status" : "invalid_token", "scope":"a b", "openid-configuration":"https://x/y"}"#)
            .unwrap();
        assert_eq!(answer, Some(vec![0x01]));
        assert_eq!(
            m.step(b""),
            Err(SaslError::Rejected {
                reason: "invalid_token".into()
            })
        );
        assert!(matches!(m.step(b""), Err(SaslError::Protocol { .. })));
    }

    #[test]
    fn error_status_extraction_is_tolerant() {
        assert_eq!(error_status(br#"{"status":"a\"b\\c\u0041"}"#), "a\"b\\cA");
        assert_eq!(
            error_status(br#"{"scope":"status","status": "insufficient_scope"}"#),
            "insufficient_scope"
        );
        // No status: the raw text, truncated to 200 characters.
        assert_eq!(error_status(b"not json"), "not json");
        let long = vec![b'x'; 10_000];
        assert!(error_status(&long).chars().count() <= 201);
        let long_status = format!("{{\"status\":\"{}\"}}", "y".repeat(10_000));
        assert!(error_status(long_status.as_bytes()).chars().count() <= 201);
        // Control characters never reach an error message raw.
        assert!(!error_status(b"{\"status\":\"a\\nb\x1b\"}").contains(['\n', '\x1b']));
        for input in [
            &b""[..],
            b"\xff\xfe",
            b"\"status\"",
            b"\"status\":",
            b"\"status\":\"",
            b"\"status\":\"\\",
            b"\"status\":\"\\u12",
            b"\"status\":\"\\uZZZZ\"",
        ] {
            let _ = error_status(input);
        }
    }

    fn decode_jwt(token: &str) -> (String, String) {
        let mut parts = token.split('.');
        let header = URL_SAFE_NO_PAD.decode(parts.next().unwrap()).unwrap();
        let payload = URL_SAFE_NO_PAD.decode(parts.next().unwrap()).unwrap();
        assert_eq!(parts.next(), Some(""), "empty signature");
        assert_eq!(parts.next(), None);
        (
            String::from_utf8(header).unwrap(),
            String::from_utf8(payload).unwrap(),
        )
    }

    const NOW: u64 = 1_700_000_000;

    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(NOW * 1000 + 789)
    }

    #[test]
    fn unsecured_jwt_matches_kafka_layout() {
        let options = exts(&[
            ("unsecuredLoginStringClaim_sub", "al\"ice\\"),
            ("unsecuredLoginListClaim_scope", "|read|write"),
            ("unsecuredLoginNumberClaim_level", " 2.5 "),
            ("unsecuredLoginNumberClaim_n", "3"),
            ("unsecuredLoginLifetimeSeconds", "60"),
            ("unsecuredLoginStringClaim_", "ignored"),
            ("unsecuredLoginOther", "ignored"),
        ]);
        let token = unsecured_jwt(&options, now()).unwrap();
        assert!(token.ends_with('.'));
        validate_b64token(&token).unwrap();
        let (header, payload) = decode_jwt(&token);
        assert_eq!(header, r#"{"alg":"none"}"#);
        assert_eq!(
            payload,
            format!(
                r#"{{"exp":{},"iat":{NOW},"level":2.5,"n":3,"scope":["read","write"],"sub":"al\"ice\\"}}"#,
                NOW + 60
            )
        );
    }

    #[test]
    fn unsecured_jwt_defaults_and_custom_principal() {
        let token =
            unsecured_jwt(&exts(&[("unsecuredLoginStringClaim_sub", "bob")]), now()).unwrap();
        assert_eq!(
            decode_jwt(&token).1,
            format!(r#"{{"exp":{},"iat":{NOW},"sub":"bob"}}"#, NOW + 3600)
        );
        let options = exts(&[
            ("unsecuredLoginPrincipalClaimName", " user "),
            ("unsecuredLoginStringClaim_user", "carol"),
            ("unsecuredLoginListClaim_groups", ",a,,b,"),
            ("unsecuredLoginListClaim_none", ","),
            ("unsecuredLoginStringClaim_ctl", "x\ny\u{1}"),
        ]);
        let token = unsecured_jwt(&options, now()).unwrap();
        assert_eq!(
            decode_jwt(&token).1,
            format!(
                r#"{{"exp":{},"iat":{NOW},"ctl":"x\ny\u0001","groups":["a","","b",""],"none":[],"user":"carol"}}"#,
                NOW + 3600
            )
        );
    }

    #[test]
    fn unsecured_jwt_errors() {
        let cases: &[&[(&str, &str)]] = &[
            &[],
            &[("unsecuredLoginStringClaim_sub", "  ")],
            &[("unsecuredLoginNumberClaim_sub", "1")],
            &[("unsecuredLoginStringClaim_name", "x")],
            &[
                ("unsecuredLoginStringClaim_sub", "a"),
                ("unsecuredLoginStringClaim_iat", "1"),
            ],
            &[
                ("unsecuredLoginStringClaim_sub", "a"),
                ("unsecuredLoginNumberClaim_exp", "1"),
            ],
            &[
                ("unsecuredLoginStringClaim_sub", "a"),
                ("unsecuredLoginNumberClaim_x", "NaN"),
            ],
            &[
                ("unsecuredLoginStringClaim_sub", "a"),
                ("unsecuredLoginNumberClaim_x", "1e999"),
            ],
            &[
                ("unsecuredLoginStringClaim_sub", "a"),
                ("unsecuredLoginNumberClaim_x", "one"),
            ],
            &[
                ("unsecuredLoginStringClaim_sub", "a"),
                ("unsecuredLoginNumberClaim_scope", "1"),
            ],
            &[
                ("unsecuredLoginStringClaim_sub", "a"),
                ("unsecuredLoginLifetimeSeconds", "0"),
            ],
            &[
                ("unsecuredLoginStringClaim_sub", "a"),
                ("unsecuredLoginLifetimeSeconds", "-5"),
            ],
            &[
                ("unsecuredLoginStringClaim_sub", "a"),
                ("unsecuredLoginLifetimeSeconds", "1h"),
            ],
            &[
                ("unsecuredLoginStringClaim_sub", "a"),
                ("unsecuredLoginLifetimeSeconds", "18446744073709551615"),
            ],
            &[
                ("unsecuredLoginStringClaim_sub", "a"),
                ("unsecuredLoginListClaim_sub", "|b"),
            ],
        ];
        for case in cases {
            let detail = credentials(unsecured_jwt(&exts(case), now()).unwrap_err());
            assert!(
                detail.starts_with("unsecured OAUTHBEARER token"),
                "{detail}"
            );
        }
        let before_epoch = UNIX_EPOCH - Duration::from_secs(1);
        credentials(
            unsecured_jwt(
                &exts(&[("unsecuredLoginStringClaim_sub", "a")]),
                before_epoch,
            )
            .unwrap_err(),
        );
    }

    #[test]
    fn unsecured_source_sends_token_and_option_extensions() {
        let source = TokenSource::Unsecured(exts(&[
            ("unsecuredLoginStringClaim_sub", "alice"),
            ("unsecuredLoginExtension_traceId", "42"),
        ]));
        let mut m = OAuthBearer::from_source(&source, &exts(&[("zone", "eu")]), now()).unwrap();
        let message = m.initial().unwrap();
        let text = String::from_utf8(message).unwrap();
        let token =
            unsecured_jwt(&exts(&[("unsecuredLoginStringClaim_sub", "alice")]), now()).unwrap();
        assert_eq!(
            text,
            format!("n,,\x01auth=Bearer {token}\x01traceId=42\x01zone=eu\x01\x01")
        );
        // The same extension given twice with different values is ambiguous.
        credentials(
            OAuthBearer::from_source(&source, &exts(&[("traceId", "43")]), now()).unwrap_err(),
        );
        OAuthBearer::from_source(&source, &exts(&[("traceId", "42")]), now()).unwrap();
        // Invalid extension names from options are rejected too.
        let bad = TokenSource::Unsecured(exts(&[
            ("unsecuredLoginStringClaim_sub", "alice"),
            ("unsecuredLoginExtension_auth", "x"),
        ]));
        credentials(OAuthBearer::from_source(&bad, &BTreeMap::new(), now()).unwrap_err());
    }

    struct TempFile(std::path::PathBuf);

    impl TempFile {
        fn new(tag: &str) -> TempFile {
            let path = std::env::temp_dir().join(format!(
                "strait-oauth-{tag}-{}-{:?}",
                std::process::id(),
                std::thread::current().id()
            ));
            TempFile(path)
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    #[test]
    fn file_source_is_read_at_every_start() {
        let file = TempFile::new("reread");
        let source = TokenSource::File(file.0.clone());
        let initial = |source: &TokenSource| {
            OAuthBearer::from_source(source, &BTreeMap::new(), now()).and_then(|mut m| m.initial())
        };

        let detail = credentials(initial(&source).unwrap_err());
        assert!(detail.contains(&file.0.display().to_string()), "{detail}");

        std::fs::write(&file.0, "first-token\n").unwrap();
        assert_eq!(
            initial(&source).unwrap(),
            b"n,,\x01auth=Bearer first-token\x01\x01".to_vec()
        );
        std::fs::write(&file.0, "  second.token  ").unwrap();
        assert_eq!(
            initial(&source).unwrap(),
            b"n,,\x01auth=Bearer second.token\x01\x01".to_vec()
        );

        for (content, expect) in [
            (&b" \n\t"[..], "empty"),
            (b"\xff\xfe", "not UTF-8"),
            (b"secret token", "b64token"),
        ] {
            std::fs::write(&file.0, content).unwrap();
            let detail = credentials(initial(&source).unwrap_err());
            assert!(detail.contains(expect), "{detail}");
            assert!(detail.contains(&file.0.display().to_string()), "{detail}");
            assert!(!detail.contains("secret"), "{detail}");
        }
        std::fs::write(&file.0, vec![b'a'; MAX_TOKEN_FILE as usize + 1]).unwrap();
        assert!(credentials(initial(&source).unwrap_err()).contains("larger than"));
    }

    #[test]
    fn debug_never_shows_the_token() {
        let mut m = OAuthBearer::new(
            &Secret::new("tok-SECRET-value"),
            exts(&[("traceId", "extvalue")]),
        )
        .unwrap();
        let mut seen = vec![format!("{m:?}")];
        m.initial().unwrap();
        seen.push(format!("{m:?}"));
        m.step(br#"{"status":"invalid_token"}"#).unwrap();
        let debug = format!("{m:?}");
        assert!(
            debug.contains("invalid_token") && debug.contains("traceId"),
            "{debug}"
        );
        seen.push(debug);
        for text in seen {
            assert!(!text.contains("SECRET"), "{text}");
            assert!(!text.contains("extvalue"), "{text}");
        }
    }

    #[test]
    fn misuse_is_a_protocol_error() {
        let mut m = OAuthBearer::new(&Secret::new("t"), BTreeMap::new()).unwrap();
        assert!(matches!(m.step(b""), Err(SaslError::Protocol { .. })));
        let mut m = OAuthBearer::new(&Secret::new("t"), BTreeMap::new()).unwrap();
        m.initial().unwrap();
        assert!(matches!(m.initial(), Err(SaslError::Protocol { .. })));
    }

    proptest::proptest! {
        #[test]
        fn any_error_answer_is_acknowledged_then_rejected(
            input in proptest::collection::vec(proptest::num::u8::ANY, 1..2000),
        ) {
            let mut m = OAuthBearer::new(&Secret::new("tok"), BTreeMap::new()).unwrap();
            m.initial().unwrap();
            proptest::prop_assert_eq!(m.step(&input).unwrap(), Some(vec![0x01]));
            match m.step(b"") {
                Err(SaslError::Rejected { reason }) => {
                    proptest::prop_assert!(reason.chars().count() <= 201);
                    proptest::prop_assert!(!reason.chars().any(char::is_control));
                }
                other => proptest::prop_assert!(false, "{:?}", other),
            }
        }
    }
}
