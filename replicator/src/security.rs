//! A cluster's `security.protocol`, `ssl.*` and `sasl.*` settings (MM2 keys, or Strimzi's
//! `tls` / `authentication` already turned into them) → the wire client's TLS connector and
//! SASL credentials, checked once at startup.
//!
//! Kafka semantics kept: `ssl.endpoint.identification.algorithm=https` (the default) verifies
//! the broker's host name, empty turns that off (with a warning); `ssl.truststore.*` unset means
//! the system's CAs; a PEM truststore may be inline (`ssl.truststore.certificates`) or a file
//! (`ssl.truststore.location` with `ssl.truststore.type=PEM`); the client identity may be inline
//! (`ssl.keystore.certificate.chain` + `ssl.keystore.key`) or a PEM keystore file holding the
//! key and the chain. JKS and PKCS#12 stores are refused with the command that converts them.
//! SASL: `sasl.mechanism` SCRAM-SHA-256/512 and PLAIN take `username`/`password` from
//! `sasl.jaas.config`; OAUTHBEARER takes a static token (`oauth.access.token`, Strimzi's
//! `accessToken`), a token file (`sasl.oauthbearer.token.endpoint.url=file:…`), or builds an
//! unsecured JWT from `unsecuredLogin*` options, as Kafka's default login handler does.
//!
//! Nothing here prints a secret: errors name keys and files, never values.

use std::collections::BTreeMap;
use std::path::PathBuf;

use protocol_client::security::sasl::{SaslConfig, ScramHash, TokenSource};
use protocol_client::security::tls::{
    ClientIdentity, TlsConfig, TlsConnector, TlsVersion, TrustAnchors,
};
use protocol_client::security::Secret;
use tracing::warn;

use crate::config::{ClusterConfig, SaslMechanism};
use crate::error::{Error, Result};

/// TLS and SASL of one cluster, ready for the connection settings.
#[derive(Debug, Clone, Default)]
pub struct ClusterSecurity {
    /// The TLS connector, when the protocol uses TLS.
    pub tls: Option<TlsConnector>,
    /// SASL credentials, when the protocol uses SASL.
    pub sasl: Option<SaslConfig>,
}

/// Builds a cluster's TLS connector and SASL credentials, reading the files they name.
pub fn cluster_security(cluster: &ClusterConfig) -> Result<ClusterSecurity> {
    let alias = &cluster.alias;
    let protocol = cluster.client.security_protocol;
    let err = |m: String| Error::Other(format!("cluster {alias}: {m}"));
    let tls = if protocol.uses_tls() {
        let config = tls_config(cluster).map_err(err)?;
        if !config.verify_hostname {
            warn!(
                cluster = %alias,
                "{alias}.ssl.endpoint.identification.algorithm is empty: the broker's host name is NOT verified against its certificate"
            );
        }
        Some(
            config
                .build()
                .map_err(|e| err(format!("TLS settings ({alias}.ssl.*): {e}")))?,
        )
    } else {
        None
    };
    let sasl = if protocol.uses_sasl() {
        Some(sasl_config(cluster).map_err(err)?)
    } else {
        None
    };
    Ok(ClusterSecurity { tls, sasl })
}

/// One line describing a cluster's security without secrets (for `strait check` and logs).
pub fn describe(cluster: &ClusterConfig) -> String {
    let c = &cluster.client;
    let mut out = c.security_protocol.name().to_string();
    if let Some(s) = &c.sasl {
        out.push_str(&format!(", mechanism {}", mechanism_name(&s.mechanism)));
        if let Some(u) = &s.username {
            out.push_str(&format!(" as user `{u}`"));
        }
    }
    if c.security_protocol.uses_tls() {
        let t = &c.tls;
        let trust = if t.truststore_certificates.is_some() {
            "inline PEM".to_string()
        } else if let Some(loc) = &t.truststore_location {
            format!("file {loc}")
        } else {
            "system CAs".to_string()
        };
        out.push_str(&format!(", trust {trust}"));
        let identity = t.keystore_certificate_chain.is_some() || t.keystore_location.is_some();
        out.push_str(if identity {
            ", client certificate"
        } else {
            ", no client certificate"
        });
        if t.endpoint_identification_algorithm.trim().is_empty() {
            out.push_str(", host name NOT verified");
        }
    }
    out
}

fn mechanism_name(m: &SaslMechanism) -> String {
    match m {
        SaslMechanism::Plain => "PLAIN".into(),
        SaslMechanism::ScramSha256 => "SCRAM-SHA-256".into(),
        SaslMechanism::ScramSha512 => "SCRAM-SHA-512".into(),
        SaslMechanism::OAuthBearer => "OAUTHBEARER".into(),
        SaslMechanism::Gssapi => "GSSAPI".into(),
        SaslMechanism::Other(s) => s.clone(),
    }
}

fn read_pem_file(key: &str, path: &str) -> std::result::Result<String, String> {
    // Binary stores (JKS, PKCS#12) are not UTF-8; read bytes so the type check can name them.
    std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .map_err(|e| format!("{key}={path}: cannot read: {e}"))
}

/// Refuses store types other than PEM, saying how to convert.
fn check_store_type(
    key: &str,
    store_type: Option<&str>,
    content: &str,
) -> std::result::Result<(), String> {
    let t = store_type.map(|t| t.trim().to_ascii_uppercase());
    let is_pem = content.contains("-----BEGIN ");
    match t.as_deref() {
        Some("PEM") if is_pem => Ok(()),
        Some("PEM") => Err(format!("{key}: type is PEM but the file holds no PEM block")),
        None | Some("JKS") | Some("PKCS12") if is_pem => Ok(()),
        Some(other) => Err(format!(
            "{key}: {other} stores are not supported; convert to PEM (e.g. `keytool -importkeystore -srckeystore store.jks -destkeystore store.p12 -deststoretype PKCS12` then `openssl pkcs12 -in store.p12 -out store.pem -nodes`) and set the type to PEM"
        )),
        None => Err(format!(
            "{key}: the file is not PEM (Kafka's default store type is JKS, which is not supported); convert it to PEM and set the type to PEM"
        )),
    }
}

/// The `-----BEGIN CERTIFICATE-----` blocks of a PEM text, nothing else.
fn certificate_blocks(pem: &str) -> String {
    let mut out = String::new();
    let mut inside = false;
    for line in pem.lines() {
        let l = line.trim();
        if l == "-----BEGIN CERTIFICATE-----" {
            inside = true;
        }
        if inside {
            out.push_str(l);
            out.push('\n');
        }
        if l == "-----END CERTIFICATE-----" {
            inside = false;
        }
    }
    out
}

fn tls_config(cluster: &ClusterConfig) -> std::result::Result<TlsConfig, String> {
    let alias = &cluster.alias;
    let t = &cluster.client.tls;
    let trust = if let Some(pem) = &t.truststore_certificates {
        TrustAnchors::Pem(pem.clone())
    } else if let Some(loc) = &t.truststore_location {
        let key = format!("{alias}.ssl.truststore.location");
        let pem = read_pem_file(&key, loc)?;
        check_store_type(&key, t.truststore_type.as_deref(), &pem)?;
        TrustAnchors::Pem(pem)
    } else {
        TrustAnchors::System
    };
    let identity = if let Some(chain) = &t.keystore_certificate_chain {
        let key = t.keystore_key.as_ref().ok_or_else(|| {
            format!(
                "{alias}.ssl.keystore.certificate.chain is set but {alias}.ssl.keystore.key is not"
            )
        })?;
        Some(ClientIdentity {
            certificate_chain: chain.clone(),
            private_key: key.clone(),
        })
    } else if t.keystore_key.is_some() {
        return Err(format!(
            "{alias}.ssl.keystore.key is set but {alias}.ssl.keystore.certificate.chain is not"
        ));
    } else if let Some(loc) = &t.keystore_location {
        let key = format!("{alias}.ssl.keystore.location");
        let pem = read_pem_file(&key, loc)?;
        check_store_type(&key, t.keystore_type.as_deref(), &pem)?;
        // A PEM keystore file holds the private key and the certificate chain: the chain is
        // its CERTIFICATE blocks only (the key must not travel in a non-secret field).
        Some(ClientIdentity {
            certificate_chain: certificate_blocks(&pem),
            private_key: Secret::new(pem),
        })
    } else {
        None
    };
    let verify_hostname = match t
        .endpoint_identification_algorithm
        .trim()
        .to_ascii_lowercase()
        .as_str()
    {
        "" => false,
        "https" => true,
        other => {
            return Err(format!(
                "{alias}.ssl.endpoint.identification.algorithm={other}: expected https or empty"
            ))
        }
    };
    let mut versions = Vec::new();
    for p in &t.enabled_protocols {
        match p.trim() {
            "TLSv1.2" => versions.push(TlsVersion::V1_2),
            "TLSv1.3" => versions.push(TlsVersion::V1_3),
            "TLSv1" | "TLSv1.1" | "SSLv3" => warn!(
                cluster = %alias,
                protocol = p.as_str(),
                "ssl.enabled.protocols: {p} is obsolete and not supported; ignored"
            ),
            other => {
                return Err(format!(
                    "{alias}.ssl.enabled.protocols: unknown protocol `{other}` (TLSv1.2, TLSv1.3)"
                ))
            }
        }
    }
    if !t.enabled_protocols.is_empty() && versions.is_empty() {
        return Err(format!(
            "{alias}.ssl.enabled.protocols names no supported version (TLSv1.2, TLSv1.3)"
        ));
    }
    Ok(TlsConfig {
        trust,
        identity,
        verify_hostname,
        versions,
        cipher_suites: t.cipher_suites.clone(),
    })
}

fn sasl_config(cluster: &ClusterConfig) -> std::result::Result<SaslConfig, String> {
    let alias = &cluster.alias;
    let s = cluster.client.sasl.as_ref().ok_or_else(|| {
        format!("{alias}.security.protocol uses SASL but no SASL settings were read")
    })?;
    let credentials = || -> std::result::Result<(String, Secret), String> {
        match (&s.username, &s.password) {
            (Some(u), Some(p)) => Ok((u.clone(), p.clone())),
            _ => Err(format!(
                "{alias}.sasl.jaas.config must give username and password for {}",
                mechanism_name(&s.mechanism)
            )),
        }
    };
    match &s.mechanism {
        SaslMechanism::ScramSha256 | SaslMechanism::ScramSha512 => {
            let (username, password) = credentials()?;
            let hash = if s.mechanism == SaslMechanism::ScramSha256 {
                ScramHash::Sha256
            } else {
                ScramHash::Sha512
            };
            Ok(SaslConfig::Scram {
                hash,
                username,
                password,
            })
        }
        SaslMechanism::Plain => {
            let (username, password) = credentials()?;
            Ok(SaslConfig::Plain { username, password })
        }
        SaslMechanism::OAuthBearer => oauth_config(cluster),
        other => Err(format!(
            "{alias}.sasl.mechanism={}: not supported (SCRAM-SHA-256, SCRAM-SHA-512, PLAIN, OAUTHBEARER)",
            mechanism_name(other)
        )),
    }
}

fn oauth_config(cluster: &ClusterConfig) -> std::result::Result<SaslConfig, String> {
    let alias = &cluster.alias;
    let options: BTreeMap<String, String> = cluster
        .client
        .sasl
        .as_ref()
        .and_then(|s| s.jaas.as_ref())
        .map(|j| j.options.clone())
        .unwrap_or_default();
    let mut extensions = BTreeMap::new();
    for (k, v) in &options {
        let name = k
            .strip_prefix("unsecuredLoginExtension_")
            .or_else(|| k.strip_prefix("extension_"));
        if let Some(name) = name {
            extensions.insert(name.to_string(), v.clone());
        }
    }
    let endpoint = cluster
        .client
        .raw
        .get("sasl.oauthbearer.token.endpoint.url")
        .map(str::trim)
        .filter(|s| !s.is_empty());
    let token = if let Some(t) = options.get("oauth.access.token") {
        TokenSource::Static(Secret::new(t.clone()))
    } else if let Some(url) = endpoint {
        match url.strip_prefix("file:") {
            Some(path) => {
                // file:/p, file:///p and file://localhost/p all name /p.
                let path = path
                    .strip_prefix("//localhost")
                    .or_else(|| path.strip_prefix("//"))
                    .unwrap_or(path);
                TokenSource::File(PathBuf::from(path))
            }
            None => {
                return Err(format!(
                    "{alias}.sasl.oauthbearer.token.endpoint.url={url}: fetching tokens from an HTTP token endpoint is not supported; write the token to a file (refreshed by a sidecar) and use file:/path/to/token"
                ))
            }
        }
    } else {
        let unsecured: BTreeMap<String, String> = options
            .iter()
            .filter(|(k, _)| {
                k.starts_with("unsecuredLogin") && !k.starts_with("unsecuredLoginExtension_")
            })
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if unsecured.is_empty() {
            return Err(format!(
                "{alias}: OAUTHBEARER needs a token: oauth.access.token in sasl.jaas.config (Strimzi accessToken), {alias}.sasl.oauthbearer.token.endpoint.url=file:/path, or unsecuredLoginStringClaim_sub for an unsecured JWT"
            ));
        }
        TokenSource::Unsecured(unsecured)
    };
    Ok(SaslConfig::OAuthBearer { token, extensions })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn cluster(props: &str) -> ClusterConfig {
        let text = format!(
            "clusters = A, B\nA.bootstrap.servers = 127.0.0.1:1\nB.bootstrap.servers = 127.0.0.1:2\n{props}"
        );
        let cfg =
            Config::from_properties_str(&text, "mm2.properties", &crate::config::SystemSecrets)
                .expect("config parses");
        cfg.clusters["A"].clone()
    }

    #[test]
    fn scram_from_jaas() {
        let c = cluster(
            "A.security.protocol = SASL_PLAINTEXT\nA.sasl.mechanism = SCRAM-SHA-512\nA.sasl.jaas.config = org.apache.kafka.common.security.scram.ScramLoginModule required username=\"alice\" password=\"hunter2\";\n",
        );
        let sec = cluster_security(&c).unwrap();
        assert!(sec.tls.is_none());
        match sec.sasl.unwrap() {
            SaslConfig::Scram {
                hash,
                username,
                password,
            } => {
                assert_eq!(hash, ScramHash::Sha512);
                assert_eq!(username, "alice");
                assert_eq!(password.expose(), "hunter2");
            }
            other => panic!("{other:?}"),
        }
        let d = describe(&c);
        assert!(
            d.contains("SCRAM-SHA-512") && d.contains("alice") && !d.contains("hunter2"),
            "{d}"
        );
    }

    #[test]
    fn unsupported_mechanisms_and_stores_are_named() {
        let c = cluster("A.security.protocol = SASL_PLAINTEXT\nA.sasl.mechanism = GSSAPI\n");
        let e = cluster_security(&c).unwrap_err().to_string();
        assert!(e.contains("cluster A") && e.contains("GSSAPI"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let jks = dir.path().join("ts.jks");
        std::fs::write(&jks, [0xfe, 0xed, 0xfe, 0xed, 0, 0, 0, 2]).unwrap();
        let c = cluster(&format!(
            "A.security.protocol = SSL\nA.ssl.truststore.location = {}\nA.ssl.truststore.password = changeit\n",
            jks.display()
        ));
        let e = cluster_security(&c).unwrap_err().to_string();
        assert!(
            e.contains("JKS") && e.contains("PEM") && !e.contains("changeit"),
            "{e}"
        );
        let c = cluster("A.security.protocol = SSL\nA.ssl.truststore.location = /nonexistent/ca.pem\nA.ssl.truststore.type = PEM\n");
        let e = cluster_security(&c).unwrap_err().to_string();
        assert!(e.contains("/nonexistent/ca.pem"), "{e}");
        let c =
            cluster("A.security.protocol = SSL\nA.ssl.endpoint.identification.algorithm = ldap\n");
        assert!(cluster_security(&c).is_err());
    }

    #[test]
    fn pem_keystore_chain_holds_no_key() {
        let pem = "-----BEGIN PRIVATE KEY-----\nS2VZ\n-----END PRIVATE KEY-----\n-----BEGIN CERTIFICATE-----\nQ0VSVA==\n-----END CERTIFICATE-----\n";
        assert_eq!(
            certificate_blocks(pem),
            "-----BEGIN CERTIFICATE-----\nQ0VSVA==\n-----END CERTIFICATE-----\n"
        );
    }

    #[test]
    fn oauth_token_sources() {
        let c = cluster("A.security.protocol = SASL_SSL\nA.sasl.mechanism = OAUTHBEARER\nA.sasl.jaas.config = org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required unsecuredLoginStringClaim_sub=\"alice\" unsecuredLoginExtension_traceId=\"123\";\nA.ssl.endpoint.identification.algorithm=\n");
        match sasl_config(&c).unwrap() {
            SaslConfig::OAuthBearer { token, extensions } => {
                assert!(
                    matches!(token, TokenSource::Unsecured(m) if m["unsecuredLoginStringClaim_sub"] == "alice")
                );
                assert_eq!(extensions["traceId"], "123");
            }
            other => panic!("{other:?}"),
        }
        let c = cluster("A.security.protocol = SASL_PLAINTEXT\nA.sasl.mechanism = OAUTHBEARER\nA.sasl.jaas.config = org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required;\nA.sasl.oauthbearer.token.endpoint.url = file:///run/token\n");
        assert!(matches!(
            sasl_config(&c).unwrap(),
            SaslConfig::OAuthBearer { token: TokenSource::File(p), .. } if p == std::path::Path::new("/run/token")
        ));
        let c = cluster("A.security.protocol = SASL_PLAINTEXT\nA.sasl.mechanism = OAUTHBEARER\nA.sasl.jaas.config = org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required;\nA.sasl.oauthbearer.token.endpoint.url = https://idp/token\n");
        assert!(sasl_config(&c).unwrap_err().contains("HTTP token endpoint"));
    }
}
