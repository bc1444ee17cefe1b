//! The TLS, mutual-TLS and SASL test servers — Apache Kafka's own `SSL`, `SASL_PLAINTEXT` and
//! `SASL_SSL` listeners (`strait_tests::kafka`, `strait_tests::secure`) — proven with
//! librdkafka, the independent reference client: every configuration that should connect
//! produces and reads back records byte for byte, every one that should not gets no metadata
//! within a short timeout, and what librdkafka reported is printed (`--nocapture`) and checked
//! where it names the cause. Raw-socket tests record what the broker does with the other
//! protocol's bytes and with SASL by hand (the facts are tabled in `tests/README.md`); tansu's
//! plaintext port is kept there as the one server that answers a ClientHello with silence.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use rdkafka::types::RDKafkaErrorCode;
use strait_tests::kafka::{KafkaCluster, KafkaListener, KafkaOptions};
use strait_tests::reference::{
    consume_with, create_topic_with, probe_metadata, produce_with, secure_config, Outgoing,
    RefProbe, RefProtocol, RefSecurity,
};
use strait_tests::secure::{
    certs, sasl_listener, tls_listener, ScramMechanism, ScramUser, ServerCert,
};
use strait_tests::unique;

/// How long a configuration that must fail is given to succeed anyway.
const FAIL_TIMEOUT: Duration = Duration::from_secs(6);
/// How long a configuration that must succeed may take.
const OK_TIMEOUT: Duration = Duration::from_secs(20);

const ALICE: (&str, &str) = ("alice", "alice-secret"); // SCRAM-SHA-256 only
const BOB: (&str, &str) = ("bob", "bob-secret-512"); // SCRAM-SHA-512 only
const PAT: (&str, &str) = ("pat", "pat-secret"); // PLAIN

/// A single-node Kafka cluster with `listeners` and this file's users (one storage template).
fn kafka(name: &str, listeners: Vec<KafkaListener>) -> KafkaCluster {
    let mut options = KafkaOptions::brokers(1)
        // Records carry fixed timestamps from 2023-24: Kafka's time retention (7 days by
        // default, first checked 30 s after start) would delete them mid-test.
        .property("log.retention.ms", "-1")
        .scram_user(ScramUser::new(ScramMechanism::Sha256, ALICE.0, ALICE.1))
        .scram_user(ScramUser::new(ScramMechanism::Sha512, BOB.0, BOB.1))
        .plain_user(PAT.0, PAT.1);
    for l in listeners {
        options = options.listener(l);
    }
    KafkaCluster::start_with(name, options)
}

/// The broker's INFO lines about refused connections ("Failed authentication with …"), each
/// once, without timestamps.
fn refusals(log: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for l in log.lines() {
        if let Some(i) = l.find("Failed authentication with") {
            let text = l[i..]
                .split_once("(channelId=")
                .map_or(l[i..].to_string(), |(a, b)| {
                    format!("{a}{}", b.split_once(") ").map_or("", |(_, t)| t))
                });
            if !out.contains(&text) {
                out.push(text);
            }
        }
    }
    out
}

/// A few records with keys, values, headers and timestamps (null key and value included).
fn records(tag: &str) -> Vec<Outgoing> {
    let mut v: Vec<Outgoing> = (0..3)
        .map(|i| Outgoing {
            key: Some(format!("{tag}-key-{i}").into_bytes()),
            value: Some(vec![i as u8, 0, 0xff, b'x', i as u8]),
            headers: vec![("h".to_string(), Some(format!("{tag}-{i}").into_bytes()))],
            timestamp: Some(1_700_000_000_000 + i64::from(i)),
        })
        .collect();
    v.push(Outgoing {
        key: None,
        value: None,
        headers: vec![("null".to_string(), None)],
        timestamp: Some(1_700_000_000_100),
    });
    v
}

/// Creates a topic, produces [`records`] and reads them back through `bootstrap` with
/// `security`; asserts every field is identical.
fn round_trip(case: &str, bootstrap: &str, security: &RefSecurity) {
    let started = Instant::now();
    let cfg = secure_config(bootstrap, security);
    let topic = unique("secure");
    create_topic_with(&cfg, &topic, 1);
    let sent = records(case);
    produce_with(&cfg, &topic, 0, &sent);
    let got = consume_with(&cfg, &topic, 0, 0, sent.len(), OK_TIMEOUT);
    for (i, (g, s)) in got.iter().zip(&sent).enumerate() {
        assert_eq!(g.offset, i as i64, "{case}: offset");
        assert_eq!(g.key, s.key, "{case}: key of record {i}");
        assert_eq!(g.value, s.value, "{case}: value of record {i}");
        assert_eq!(g.headers, s.headers, "{case}: headers of record {i}");
        assert_eq!(g.timestamp, s.timestamp, "{case}: timestamp of record {i}");
    }
    eprintln!(
        "CASE {case}: OK, {} records produced and read back identical in {:?}",
        got.len(),
        started.elapsed()
    );
}

/// A probe that must fail, with its configuration.
struct Negative<'a> {
    case: &'a str,
    bootstrap: String,
    security: RefSecurity,
}

/// Runs the negative probes in parallel (each takes [`FAIL_TIMEOUT`]) and asserts none got
/// metadata; returns each probe for checks on what librdkafka reported.
fn expect_failures(cases: Vec<Negative<'_>>) -> Vec<(String, RefProbe)> {
    let probes: Vec<(String, RefProbe)> = std::thread::scope(|s| {
        let handles: Vec<_> = cases
            .iter()
            .map(|c| {
                s.spawn(move || {
                    let cfg = secure_config(&c.bootstrap, &c.security);
                    (c.case.to_string(), probe_metadata(&cfg, FAIL_TIMEOUT))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("probe thread"))
            .collect()
    });
    for (case, p) in &probes {
        eprintln!("CASE {case}: {}", p.summary());
    }
    for (case, p) in &probes {
        assert!(!p.succeeded(), "{case}: must not connect: {}", p.summary());
    }
    probes
}

fn probe<'a>(probes: &'a [(String, RefProbe)], case: &str) -> &'a RefProbe {
    &probes
        .iter()
        .find(|(c, _)| c == case)
        .unwrap_or_else(|| panic!("no probe {case}"))
        .1
}

/// Asserts a probe got metadata naming `advertised` as the only broker.
fn expect_success(case: &str, bootstrap: &str, security: &RefSecurity, advertised: &str) {
    let p = probe_metadata(&secure_config(bootstrap, security), OK_TIMEOUT);
    eprintln!("CASE {case}: {}", p.summary());
    assert_eq!(
        p.result.as_ref().ok(),
        Some(&vec![advertised.to_string()]),
        "{case}: {}",
        p.summary()
    );
}

fn tls(ca: &Path) -> RefSecurity {
    RefSecurity::tls(ca)
}

#[test]
fn tls_server_certificate_checks() {
    let c = certs();
    let kafka = kafka(
        "tls",
        vec![
            tls_listener("SSL", ServerCert::Good, false),
            tls_listener("SSL_WRONG_HOST", ServerCert::WrongHost, false),
            tls_listener("SSL_EXPIRED", ServerCert::Expired, false),
        ],
    );
    let good = kafka.bootstrap_for_listener("SSL");
    let wrong_host = kafka.bootstrap_for_listener("SSL_WRONG_HOST");
    let expired = kafka.bootstrap_for_listener("SSL_EXPIRED");
    // Each listener advertises itself: clients follow the metadata back to it.
    expect_success("tls-advertised", &good, &tls(&c.ca), &good);
    round_trip("tls-right-ca", &good, &tls(&c.ca));
    let no_hostname_check = RefSecurity {
        skip_hostname_verification: true,
        ..tls(&c.ca)
    };
    round_trip(
        "tls-wrong-host-identification-none",
        &wrong_host,
        &no_hostname_check,
    );
    let probes = expect_failures(vec![
        Negative {
            case: "tls-other-ca",
            bootstrap: good.clone(),
            security: tls(&c.other_ca),
        },
        Negative {
            case: "tls-system-cas",
            bootstrap: good.clone(),
            security: RefSecurity {
                protocol: RefProtocol::Ssl,
                ..RefSecurity::default()
            },
        },
        Negative {
            case: "tls-wrong-host",
            bootstrap: wrong_host.clone(),
            security: tls(&c.ca),
        },
        Negative {
            case: "tls-expired",
            bootstrap: expired.clone(),
            security: tls(&c.ca),
        },
        Negative {
            case: "tls-expired-identification-none",
            bootstrap: expired.clone(),
            security: no_hostname_check.clone(),
        },
        Negative {
            case: "tls-client-to-plaintext-listener",
            bootstrap: kafka.bootstrap(),
            security: tls(&c.ca),
        },
        Negative {
            case: "plaintext-client-to-tls-listener",
            bootstrap: good.clone(),
            security: RefSecurity::default(),
        },
    ]);
    // Every certificate failure looks the same to librdkafka: an SSL error "certificate verify
    // failed" during the handshake (it does not say why; `certificates_are_what_they_claim`
    // checks the why with openssl, and the wrong host passes without the hostname check).
    for case in [
        "tls-other-ca",
        "tls-system-cas",
        "tls-wrong-host",
        "tls-expired",
        "tls-expired-identification-none",
    ] {
        let p = probe(&probes, case);
        assert!(
            p.reported(RDKafkaErrorCode::SSL)
                && p.mentions("SSL handshake failed")
                && p.mentions("certificate verify failed"),
            "{case}: expected an SSL error 'certificate verify failed': {}",
            p.summary()
        );
    }
    // Kafka hangs up on a ClientHello at once (a 369 MB frame size); librdkafka guesses right.
    let p = probe(&probes, "tls-client-to-plaintext-listener");
    assert!(
        p.reported(RDKafkaErrorCode::BrokerTransportFailure)
            && p.mentions("connecting to a PLAINTEXT broker listener?"),
        "{}",
        p.summary()
    );
    // Kafka answers plaintext bytes with a TLS alert and closes: librdkafka reports only that
    // all brokers are down.
    let p = probe(&probes, "plaintext-client-to-tls-listener");
    assert!(
        p.errors
            .iter()
            .all(|(code, _)| *code == Some(RDKafkaErrorCode::AllBrokersDown)),
        "{}",
        p.summary()
    );
    let log = kafka.log(0);
    for l in refusals(&log) {
        eprintln!("KAFKA tls: {l}");
    }
}

#[test]
fn mutual_tls() {
    let c = certs();
    let kafka = kafka(
        "mtls",
        vec![tls_listener("SSL_MTLS", ServerCert::Good, true)],
    );
    let b = kafka.bootstrap_for_listener("SSL_MTLS");
    let with_client = tls(&c.ca).with_client_cert(&c.client_cert, &c.client_key);
    round_trip("mtls-client-cert", &b, &with_client);
    let encrypted = RefSecurity {
        key: Some(c.client_key_encrypted.clone()),
        key_password: Some(c.client_key_password.clone()),
        ..with_client.clone()
    };
    expect_success("mtls-encrypted-key-with-password", &b, &encrypted, &b);
    // librdkafka refuses an encrypted key without its password when the client is created.
    let no_password = RefSecurity {
        key_password: None,
        ..encrypted.clone()
    };
    let p = probe_metadata(&secure_config(&b, &no_password), FAIL_TIMEOUT);
    eprintln!("CASE mtls-encrypted-key-without-password: {}", p.summary());
    assert!(
        matches!(p.result, Err(rdkafka::error::KafkaError::ClientCreation(_))),
        "an encrypted key without its password must be refused: {}",
        p.summary()
    );
    let probes = expect_failures(vec![
        Negative {
            case: "mtls-no-client-cert",
            bootstrap: b.clone(),
            security: tls(&c.ca),
        },
        Negative {
            case: "mtls-other-ca-client-cert",
            bootstrap: b.clone(),
            security: tls(&c.ca).with_client_cert(&c.other_client_cert, &c.other_client_key),
        },
    ]);
    // librdkafka presents no certificate in either case (OpenSSL sends none the server's
    // list of acceptable CAs does not name), and Java's TLS 1.3 server answers with alert 42
    // bad_certificate, which librdkafka sees on its first read (ApiVersions) as a transport
    // failure. (Our client, rustls, does send the other CA's certificate: alert 46.)
    for (case, p) in &probes {
        assert!(
            p.reported(RDKafkaErrorCode::BrokerTransportFailure)
                && p.mentions("alert bad certificate: SSL alert number 42"),
            "{case}: expected alert 42 bad_certificate: {}",
            p.summary()
        );
    }
    let log = kafka.log(0);
    let refused = refusals(&log);
    for l in &refused {
        eprintln!("KAFKA mtls: {l}");
    }
    assert!(
        refused.iter().any(|l| l.contains("SSL handshake failed")),
        "Kafka must have logged the refused handshakes:\n{log}"
    );
}

fn scram(mechanism: ScramMechanism, user: &str, password: &str) -> RefSecurity {
    RefSecurity::default().with_sasl(mechanism.name(), user, password)
}

#[test]
fn sasl_over_plaintext() {
    let kafka = kafka(
        "sasl",
        vec![
            sasl_listener("SASL_PLAINTEXT", None),
            sasl_listener("SASL_SCRAM_ONLY", None)
                .sasl_mechanisms(&["SCRAM-SHA-512", "SCRAM-SHA-256"]),
        ],
    );
    let b = kafka.bootstrap_for_listener("SASL_PLAINTEXT");
    round_trip(
        "scram-sha-256",
        &b,
        &scram(ScramMechanism::Sha256, ALICE.0, ALICE.1),
    );
    round_trip(
        "scram-sha-512",
        &b,
        &scram(ScramMechanism::Sha512, BOB.0, BOB.1),
    );
    round_trip(
        "plain",
        &b,
        &RefSecurity::default().with_sasl("PLAIN", PAT.0, PAT.1),
    );
    let probes = expect_failures(vec![
        Negative {
            case: "scram-wrong-password",
            bootstrap: b.clone(),
            security: scram(ScramMechanism::Sha256, ALICE.0, "not-alice-secret"),
        },
        Negative {
            case: "scram-unknown-user",
            bootstrap: b.clone(),
            security: scram(ScramMechanism::Sha512, "mallory", BOB.1),
        },
        Negative {
            case: "scram-mechanism-without-credentials",
            bootstrap: b.clone(),
            security: scram(ScramMechanism::Sha512, ALICE.0, ALICE.1),
        },
        Negative {
            case: "plain-wrong-password",
            bootstrap: b.clone(),
            security: RefSecurity::default().with_sasl("PLAIN", PAT.0, "not-pat-secret"),
        },
        Negative {
            case: "mechanism-not-enabled",
            bootstrap: kafka.bootstrap_for_listener("SASL_SCRAM_ONLY"),
            security: RefSecurity::default().with_sasl("PLAIN", PAT.0, PAT.1),
        },
        Negative {
            case: "plaintext-client-to-sasl-listener",
            bootstrap: b.clone(),
            security: RefSecurity::default(),
        },
        Negative {
            case: "sasl-client-to-plaintext-listener",
            bootstrap: kafka.bootstrap(),
            security: scram(ScramMechanism::Sha256, ALICE.0, ALICE.1),
        },
    ]);
    for case in [
        "scram-wrong-password",
        "scram-unknown-user",
        "scram-mechanism-without-credentials",
        "plain-wrong-password",
        "mechanism-not-enabled",
    ] {
        let p = probe(&probes, case);
        assert!(
            p.reported(RDKafkaErrorCode::Authentication),
            "{case}: expected an authentication error: {}",
            p.summary()
        );
    }
    // Kafka's one message for every SCRAM refusal, whatever the cause.
    for case in [
        "scram-wrong-password",
        "scram-unknown-user",
        "scram-mechanism-without-credentials",
    ] {
        let p = probe(&probes, case);
        assert!(
            p.mentions("Authentication failed during authentication due to invalid credentials"),
            "{case}: {}",
            p.summary()
        );
    }
    let p = probe(&probes, "plain-wrong-password");
    assert!(
        p.mentions("Invalid username or password"),
        "{}",
        p.summary()
    );
    let p = probe(&probes, "mechanism-not-enabled");
    assert!(
        p.mentions("Unsupported SASL mechanism")
            && p.mentions("supported mechanisms: SCRAM-SHA-512,SCRAM-SHA-256"),
        "{}",
        p.summary()
    );
    // ILLEGAL_SASL_STATE from a listener without SASL.
    let p = probe(&probes, "sasl-client-to-plaintext-listener");
    assert!(
        p.reported(RDKafkaErrorCode::Authentication)
            && p.mentions("Request not valid in current SASL state"),
        "{}",
        p.summary()
    );
    // Kafka closes the connection at the first request that is not ApiVersions or
    // SaslHandshake: librdkafka reports that all brokers are down, and, when its next send
    // races the close, a transport failure ("Send failed: Broken pipe", seen in CI); never an
    // authentication error.
    let p = probe(&probes, "plaintext-client-to-sasl-listener");
    assert!(
        p.errors.iter().all(|(code, _)| matches!(
            code,
            Some(RDKafkaErrorCode::AllBrokersDown | RDKafkaErrorCode::BrokerTransportFailure)
        )),
        "{}",
        p.summary()
    );
}

#[test]
fn sasl_over_tls() {
    let c = certs();
    let kafka = kafka(
        "sasl-ssl",
        vec![sasl_listener("SASL_SSL", Some((ServerCert::Good, false)))],
    );
    let b = kafka.bootstrap_for_listener("SASL_SSL");
    let ok = tls(&c.ca).with_sasl(ScramMechanism::Sha512.name(), BOB.0, BOB.1);
    assert_eq!(ok.protocol, RefProtocol::SaslSsl);
    round_trip("sasl-ssl-scram-sha-512", &b, &ok);
    round_trip(
        "sasl-ssl-plain",
        &b,
        &tls(&c.ca).with_sasl("PLAIN", PAT.0, PAT.1),
    );
    let probes = expect_failures(vec![
        Negative {
            case: "sasl-ssl-wrong-password",
            bootstrap: b.clone(),
            security: tls(&c.ca).with_sasl(ScramMechanism::Sha512.name(), BOB.0, "wrong"),
        },
        Negative {
            case: "sasl-ssl-other-ca",
            bootstrap: b.clone(),
            security: tls(&c.other_ca).with_sasl(ScramMechanism::Sha512.name(), BOB.0, BOB.1),
        },
        Negative {
            case: "ssl-client-without-sasl-to-sasl-ssl",
            bootstrap: b.clone(),
            security: tls(&c.ca),
        },
    ]);
    assert!(probe(&probes, "sasl-ssl-wrong-password").reported(RDKafkaErrorCode::Authentication));
    assert!(probe(&probes, "sasl-ssl-other-ca").reported(RDKafkaErrorCode::SSL));
    // The broker closes the connection of a client that skips SASL: librdkafka reports the
    // brokers down, and, when the close races its next send, also a transport failure ("SSL
    // transport error: Broken pipe", seen in CI). Never an authentication or TLS error.
    let p = probe(&probes, "ssl-client-without-sasl-to-sasl-ssl");
    assert!(
        p.errors.iter().all(|(code, _)| matches!(
            code,
            Some(RDKafkaErrorCode::AllBrokersDown | RDKafkaErrorCode::BrokerTransportFailure)
        )),
        "{}",
        p.summary()
    );
}

// ---------------------------------------------------------------------------------------------
// Raw sockets: what each server does with the other protocol's bytes.
// ---------------------------------------------------------------------------------------------

/// A minimal, well-formed TLS 1.2 ClientHello (RFC 5246 §7.4.1.2) offering ECDHE-ECDSA and
/// ECDHE-RSA AES-GCM suites, as any TLS client's first flight looks on the wire.
fn client_hello() -> Vec<u8> {
    let mut body = vec![3, 3]; // client_version TLS 1.2
    body.extend_from_slice(&[0x5a; 32]); // random
    body.push(0); // empty session id
    let suites = [0xc0, 0x2b, 0xc0, 0x2f, 0xc0, 0x2c, 0xc0, 0x30];
    body.extend_from_slice(&(suites.len() as u16).to_be_bytes());
    body.extend_from_slice(&suites);
    body.extend_from_slice(&[1, 0]); // compression: null
    let ext: &[u8] = &[
        0, 10, 0, 6, 0, 4, 0, 0x1d, 0, 0x17, // supported_groups: x25519, secp256r1
        0, 11, 0, 2, 1, 0, // ec_point_formats: uncompressed
        0, 13, 0, 8, 0, 6, 4, 3, 8, 4, 4, 1, // signature_algorithms
        0xff, 1, 0, 1, 0, // renegotiation_info (empty)
    ];
    body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
    body.extend_from_slice(ext);
    let mut hs = vec![1]; // client_hello
    hs.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    hs.extend_from_slice(&body);
    let mut record = vec![0x16, 3, 1]; // handshake record, TLS 1.0 record version
    record.extend_from_slice(&(hs.len() as u16).to_be_bytes());
    record.extend_from_slice(&hs);
    record
}

/// ApiVersions v0 request, correlation id 7 (a Kafka client's first bytes).
fn api_versions_request() -> Vec<u8> {
    let body: &[u8] = &[0, 18, 0, 0, 0, 0, 0, 7, 0, 5, b'p', b'r', b'o', b'b', b'e'];
    let mut req = (body.len() as i32).to_be_bytes().to_vec();
    req.extend_from_slice(body);
    req
}

/// How a server answered bytes sent on a fresh connection.
#[derive(Debug)]
struct RawAnswer {
    bytes: Vec<u8>,
    /// `"eof"`, `"reset"`, `"open"` (nothing more within the wait) or another error kind.
    end: String,
    after: Duration,
}

/// Sends `bytes` and reads until the server closes or `wait` passes.
fn raw_exchange(addr: SocketAddr, bytes: &[u8], wait: Duration) -> RawAnswer {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).expect("connect");
    s.write_all(bytes).expect("send");
    let started = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let end = loop {
        let left = wait.saturating_sub(started.elapsed());
        if left.is_zero() {
            break "open".to_string();
        }
        s.set_read_timeout(Some(left)).expect("timeout");
        match s.read(&mut buf) {
            Ok(0) => break "eof".to_string(),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                break "open".to_string()
            }
            Err(e) if e.kind() == ErrorKind::ConnectionReset => break "reset".to_string(),
            Err(e) => break format!("{:?}", e.kind()),
        }
    };
    RawAnswer {
        bytes: got,
        end,
        after: started.elapsed(),
    }
}

fn hex(b: &[u8]) -> String {
    b.iter()
        .take(16)
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn raw_bytes_on_the_wrong_port() {
    let kafka = kafka("raw", vec![tls_listener("SSL", ServerCert::Good, false)]);
    let plain: SocketAddr = kafka.bootstrap().parse().expect("address");
    let tls_addr: SocketAddr = kafka
        .bootstrap_for_listener("SSL")
        .parse()
        .expect("address");
    let hello = client_hello();
    // The record header 16 03 01 00 read as a Kafka frame size: 0x16030100 = 369 295 616
    // bytes, more than socket.request.max.bytes (100 MiB).
    let size = i32::from_be_bytes([hello[0], hello[1], hello[2], hello[3]]);
    let a = raw_exchange(plain, &hello, Duration::from_secs(3));
    eprintln!(
        "RAW TLS ClientHello -> Kafka PLAINTEXT listener: {} bytes [{}], then {} after {:?} (frame size read: {size})",
        a.bytes.len(),
        hex(&a.bytes),
        a.end,
        a.after
    );
    assert!(a.bytes.is_empty() && a.end == "eof", "{a:?}");
    assert!(a.after < Duration::from_secs(1), "{a:?}");
    assert!(
        strait_tests::tansu::api_versions_ok(plain),
        "Kafka still serves other connections"
    );

    // tansu (the PyPI build) instead waits for the rest of that "request": no byte, and the
    // connection stays open. A TLS client needs its own handshake timeout for such a server.
    let tansu = strait_tests::tansu::TansuBroker::start("raw");
    let a = raw_exchange(tansu.addr(), &hello, Duration::from_secs(3));
    eprintln!(
        "RAW TLS ClientHello -> tansu plain port: {} bytes [{}], then {} after {:?}",
        a.bytes.len(),
        hex(&a.bytes),
        a.end,
        a.after
    );
    assert!(a.bytes.is_empty() && a.end == "open", "{a:?}");
    assert!(
        strait_tests::tansu::api_versions_ok(tansu.addr()),
        "tansu still serves other connections"
    );

    // Kafka's TLS listener: the first bytes are not a TLS record; Java's TLS engine answers
    // with a fatal alert record (internal_error, 80) and Kafka closes the connection.
    let a = raw_exchange(tls_addr, &api_versions_request(), Duration::from_secs(3));
    eprintln!(
        "RAW Kafka ApiVersions -> Kafka SSL listener: {} bytes [{}], then {} after {:?}",
        a.bytes.len(),
        hex(&a.bytes),
        a.end,
        a.after
    );
    assert_eq!(a.bytes, [0x15, 3, 3, 0, 2, 2, 80], "{a:?}");
    assert!(a.end == "eof" || a.end == "reset", "{a:?}");
    assert!(a.after < Duration::from_secs(1), "{a:?}");
    // Control: the same ClientHello on the TLS port is answered with a TLS 1.2 handshake record
    // (ServerHello …), so the hello above is well formed.
    let a = raw_exchange(tls_addr, &hello, Duration::from_millis(500));
    eprintln!(
        "RAW TLS ClientHello -> Kafka SSL listener: {} bytes [{}], then {}",
        a.bytes.len(),
        hex(&a.bytes),
        a.end
    );
    assert_eq!(a.bytes.get(..3), Some(&[0x16, 3, 3][..]), "{a:?}");
    assert_eq!(a.bytes.get(5), Some(&2), "ServerHello: {a:?}");
}

/// Runs `openssl args…`; returns whether it succeeded and its stdout and stderr.
fn openssl(args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new("openssl")
        .args(args)
        .output()
        .expect("run openssl");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn path(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

/// The fixtures are wrong in exactly the way their names say (openssl's own verifier), so the
/// librdkafka failures above have the causes the tests claim.
#[test]
fn certificates_are_what_they_claim() {
    let c = certs();
    let verify = |ca: &Path, extra: &[&str], cert: &Path| {
        let mut args = vec!["verify", "-CAfile", path(ca)];
        args.extend_from_slice(extra);
        args.push(path(cert));
        openssl(&args)
    };
    let ip = ["-verify_ip", "127.0.0.1"];
    let host = ["-verify_hostname", "localhost"];
    let server = ["-purpose", "sslserver"];
    let client = ["-purpose", "sslclient"];
    for extra in [&ip[..], &host[..], &server[..]] {
        let (ok, out) = verify(&c.ca, extra, &c.server_cert);
        assert!(ok, "server cert {extra:?}: {out}");
    }
    let (ok, out) = verify(&c.ca, &client, &c.client_cert);
    assert!(ok, "client cert: {out}");
    let (ok, out) = verify(&c.other_ca, &client, &c.other_client_cert);
    assert!(ok, "other client cert under its own CA: {out}");

    let (ok, out) = verify(&c.ca, &client, &c.other_client_cert);
    assert!(
        !ok && out.contains("unable to get local issuer certificate"),
        "{out}"
    );
    let (ok, out) = verify(&c.other_ca, &server, &c.server_cert);
    assert!(
        !ok && out.contains("unable to get local issuer certificate"),
        "{out}"
    );
    // Wrong host: a valid chain, only the names are wrong.
    let (ok, out) = verify(&c.ca, &server, &c.wrong_host_cert);
    assert!(ok, "wrong-host chain: {out}");
    let (ok, out) = verify(&c.ca, &ip, &c.wrong_host_cert);
    assert!(!ok && out.contains("IP address mismatch"), "{out}");
    let (ok, out) = verify(&c.ca, &host, &c.wrong_host_cert);
    assert!(!ok && out.contains("hostname mismatch"), "{out}");
    // Expired: right names and CA, validity ended in 2021.
    let (ok, out) = verify(&c.ca, &ip, &c.expired_cert);
    assert!(!ok && out.contains("certificate has expired"), "{out}");
    let (_, out) = openssl(&["x509", "-noout", "-enddate", "-in", path(&c.expired_cert)]);
    assert!(out.contains("2021"), "{out}");

    // Keys: unencrypted PKCS#8 except the encrypted one, which opens only with its password
    // and is the client certificate's key.
    for key in [
        &c.ca_key,
        &c.server_key,
        &c.client_key,
        &c.other_client_key,
        &c.wrong_host_key,
        &c.expired_key,
    ] {
        assert!(
            c.pem(key).starts_with("-----BEGIN PRIVATE KEY-----"),
            "{}",
            key.display()
        );
    }
    assert!(c
        .pem(&c.client_key_encrypted)
        .starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----"));
    let pass = format!("pass:{}", c.client_key_password);
    let enc = path(&c.client_key_encrypted);
    let (ok, from_encrypted) = openssl(&["pkey", "-in", enc, "-passin", &pass, "-pubout"]);
    assert!(ok, "{from_encrypted}");
    let (ok, out) = openssl(&["pkey", "-in", enc, "-passin", "pass:wrong", "-pubout"]);
    assert!(!ok, "wrong password accepted: {out}");
    let (ok, from_cert) = openssl(&["x509", "-in", path(&c.client_cert), "-noout", "-pubkey"]);
    assert!(ok, "{from_cert}");
    assert_eq!(
        from_encrypted, from_cert,
        "encrypted key is the client cert's key"
    );
    assert!(c.pem(&c.ca).starts_with("-----BEGIN CERTIFICATE-----"));
}

// ---------------------------------------------------------------------------------------------
// SASL on the wire, by hand (KIP-43 SaslHandshake v1, KIP-152 SaslAuthenticate v0).
// ---------------------------------------------------------------------------------------------

/// A request frame: size, api key, version, correlation id, client id `raw`, body.
fn frame(api_key: i16, version: i16, correlation: i32, body: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&api_key.to_be_bytes());
    f.extend_from_slice(&version.to_be_bytes());
    f.extend_from_slice(&correlation.to_be_bytes());
    f.extend_from_slice(&3i16.to_be_bytes());
    f.extend_from_slice(b"raw");
    f.extend_from_slice(body);
    let mut out = (f.len() as i32).to_be_bytes().to_vec();
    out.extend_from_slice(&f);
    out
}

fn kafka_string(s: &str) -> Vec<u8> {
    let mut b = (s.len() as i16).to_be_bytes().to_vec();
    b.extend_from_slice(s.as_bytes());
    b
}

/// Sends one request and reads one response body (after the correlation id), or says how the
/// connection ended.
fn exchange(s: &mut TcpStream, request: &[u8]) -> Result<Vec<u8>, String> {
    s.write_all(request)
        .map_err(|e| format!("send: {:?}", e.kind()))?;
    let mut size = [0u8; 4];
    s.read_exact(&mut size).map_err(|e| match e.kind() {
        ErrorKind::UnexpectedEof => "closed (EOF)".to_string(),
        ErrorKind::WouldBlock | ErrorKind::TimedOut => "no answer (timeout)".to_string(),
        k => format!("{k:?}"),
    })?;
    let size = i32::from_be_bytes(size);
    if !(4..=1 << 20).contains(&size) {
        return Err(format!("bad response size {size}"));
    }
    let mut body = vec![0u8; size as usize];
    s.read_exact(&mut body)
        .map_err(|e| format!("read body: {:?}", e.kind()))?;
    Ok(body.split_off(4))
}

/// A cursor over a response body.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> &[u8] {
        assert!(self.0.len() >= n, "response too short");
        let (h, t) = self.0.split_at(n);
        self.0 = t;
        h
    }
    fn i16(&mut self) -> i16 {
        i16::from_be_bytes(self.take(2).try_into().expect("2 bytes"))
    }
    fn i32(&mut self) -> i32 {
        i32::from_be_bytes(self.take(4).try_into().expect("4 bytes"))
    }
    fn string(&mut self) -> Option<String> {
        let n = self.i16();
        (n >= 0).then(|| String::from_utf8_lossy(self.take(n as usize)).into_owned())
    }
    fn bytes(&mut self) -> Vec<u8> {
        let n = self.i32();
        if n < 0 {
            Vec::new()
        } else {
            self.take(n as usize).to_vec()
        }
    }
}

/// SaslHandshake v1 for `mechanism`: (error code, enabled mechanisms).
fn sasl_handshake(s: &mut TcpStream, mechanism: &str) -> Result<(i16, Vec<String>), String> {
    let body = exchange(s, &frame(17, 1, 1, &kafka_string(mechanism)))?;
    let mut r = Reader(&body);
    let error = r.i16();
    let n = r.i32();
    let mechanisms = (0..n).filter_map(|_| r.string()).collect();
    Ok((error, mechanisms))
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(3)))
        .expect("timeout");
    s
}

/// A SaslAuthenticate answer: error code, error message, auth bytes as text.
type AuthAnswer = (i16, Option<String>, String);

/// One SaslAuthenticate v0 round.
fn sasl_authenticate(s: &mut TcpStream, auth: &[u8]) -> Result<AuthAnswer, String> {
    let mut body = (auth.len() as i32).to_be_bytes().to_vec();
    body.extend_from_slice(auth);
    let resp = exchange(s, &frame(36, 0, 2, &body))?;
    let mut r = Reader(&resp);
    let (error, message, bytes) = (r.i16(), r.string(), r.bytes());
    Ok((error, message, String::from_utf8_lossy(&bytes).into_owned()))
}

/// What one SCRAM exchange with a made-up proof (RFC 5802 §5) got, step by step.
#[derive(Debug)]
struct ScramAttempt {
    /// SaslHandshake v1: error code and enabled mechanisms.
    handshake: (i16, Vec<String>),
    /// The answer to the client-first message: error code, error message, auth bytes.
    first: AuthAnswer,
    /// The answer to the client-final message, if the exchange got that far.
    last: Option<Result<AuthAnswer, String>>,
    /// What a Metadata request on the same connection then got.
    metadata_after: String,
}

/// SCRAM-SHA-256 as `user` with a proof of 32 zero bytes.
fn scram_with_bogus_proof(addr: SocketAddr, user: &str) -> ScramAttempt {
    const NONCE: &str = "fyko+d2lbbFgONRv9qkxdawL";
    let mut s = connect(addr);
    let handshake = sasl_handshake(&mut s, "SCRAM-SHA-256").expect("handshake");
    let first = format!("n,,n={user},r={NONCE}");
    let first = sasl_authenticate(&mut s, first.as_bytes()).expect("client-first");
    let last = (first.0 == 0).then(|| {
        let nonce = first
            .2
            .split(',')
            .find_map(|f| f.strip_prefix("r="))
            .unwrap_or_else(|| panic!("no nonce in {:?}", first.2));
        // c=biws is base64("n,,"); the proof is 32 zero bytes.
        let last = format!("c=biws,r={nonce},p=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=");
        sasl_authenticate(&mut s, last.as_bytes())
    });
    let metadata_after = match exchange(&mut s, &frame(3, 1, 3, &0i32.to_be_bytes())) {
        Ok(b) => format!("answered, {} bytes [{}]", b.len(), hex(&b)),
        Err(e) => e,
    };
    ScramAttempt {
        handshake,
        first,
        last,
        metadata_after,
    }
}
/// What Kafka's SASL listener does on the wire: what it answers before authentication, which
/// mechanisms it lists, how it refuses a mechanism, an unknown user and a wrong proof, and that
/// a failed exchange ends the connection. Also what tansu without `--authentication` answers to
/// SaslHandshake (our client recognises it).
#[test]
fn sasl_on_the_wire() {
    let kafka = kafka(
        "sasl-wire",
        vec![
            sasl_listener("SASL_PLAINTEXT", None),
            sasl_listener("SASL_SCRAM_ONLY", None).sasl_mechanisms(&["SCRAM-SHA-256"]),
        ],
    );
    let addr: SocketAddr = kafka
        .bootstrap_for_listener("SASL_PLAINTEXT")
        .parse()
        .expect("address");
    assert!(
        strait_tests::tansu::api_versions_ok(addr),
        "ApiVersions is answered before authentication"
    );

    // Metadata v1 (no topics) before authenticating, first or after ApiVersions: the connection
    // is closed without an answer.
    let mut s = connect(addr);
    let md = exchange(&mut s, &frame(3, 1, 9, &0i32.to_be_bytes()));
    eprintln!("WIRE Metadata before SASL: {md:?}");
    assert_eq!(md, Err("closed (EOF)".to_string()));
    let mut s = connect(addr);
    exchange(&mut s, &api_versions_request()).expect("ApiVersions");
    let md = exchange(&mut s, &frame(3, 1, 9, &0i32.to_be_bytes()));
    eprintln!("WIRE Metadata after ApiVersions, before SASL: {md:?}");
    assert_eq!(md, Err("closed (EOF)".to_string()));

    // SaslHandshake lists every enabled mechanism; one that is not enabled gets
    // UNSUPPORTED_SASL_MECHANISM (33) with that list, then the connection is closed.
    let enabled = vec![
        "SCRAM-SHA-256".to_string(),
        "SCRAM-SHA-512".to_string(),
        "PLAIN".to_string(),
    ];
    for (mechanism, code) in [
        ("SCRAM-SHA-256", 0),
        ("SCRAM-SHA-512", 0),
        ("PLAIN", 0),
        ("GSSAPI", 33),
        ("OAUTHBEARER", 33),
    ] {
        let mut s = connect(addr);
        let got = sasl_handshake(&mut s, mechanism);
        eprintln!("WIRE SaslHandshake v1 {mechanism}: {got:?}");
        let (error, mut listed) = got.expect("an answer");
        assert_eq!(error, code, "{mechanism}");
        listed.sort();
        let mut want = enabled.clone();
        want.sort();
        assert_eq!(listed, want, "{mechanism}");
        if code != 0 {
            let after = exchange(&mut s, &frame(18, 0, 5, &[]));
            eprintln!("WIRE then ApiVersions: {after:?}");
            assert_eq!(after, Err("closed (EOF)".to_string()));
        }
    }
    let scram_only: SocketAddr = kafka
        .bootstrap_for_listener("SASL_SCRAM_ONLY")
        .parse()
        .expect("address");
    let got = sasl_handshake(&mut connect(scram_only), "PLAIN");
    eprintln!("WIRE SaslHandshake v1 PLAIN on a SCRAM-SHA-256 listener: {got:?}");
    assert_eq!(got, Ok((33, vec!["SCRAM-SHA-256".to_string()])));

    // Unknown user: refused at the client-first message. Wrong proof: a normal server-first
    // message (Kafka's default 4096 iterations), then refused at the client-final message.
    // Both with SASL_AUTHENTICATION_FAILED (58) and the same message, and the connection is
    // closed after it.
    let refusal = "Authentication failed during authentication due to invalid credentials with SASL mechanism SCRAM-SHA-256";
    let unknown = scram_with_bogus_proof(addr, "mallory");
    eprintln!("WIRE SCRAM unknown user: {unknown:?}");
    assert_eq!(unknown.handshake.0, 0);
    assert_eq!(
        (unknown.first.0, unknown.first.1.as_deref()),
        (58, Some(refusal))
    );
    assert!(unknown.last.is_none());
    assert_eq!(unknown.metadata_after, "closed (EOF)");
    let wrong = scram_with_bogus_proof(addr, ALICE.0);
    eprintln!("WIRE SCRAM wrong proof: {wrong:?}");
    assert_eq!(wrong.first.0, 0, "{wrong:?}");
    assert!(
        wrong.first.2.starts_with("r=fyko+d2lbbFgONRv9qkxdawL")
            && wrong.first.2.contains(",s=")
            && wrong.first.2.ends_with(",i=4096"),
        "{wrong:?}"
    );
    let last = wrong
        .last
        .clone()
        .expect("client-final sent")
        .expect("answered");
    assert_eq!(
        (last.0, last.1.as_deref()),
        (58, Some(refusal)),
        "{wrong:?}"
    );
    assert_eq!(wrong.metadata_after, "closed (EOF)");

    // SaslHandshake on Kafka's PLAINTEXT listener: ILLEGAL_SASL_STATE (34), no mechanisms.
    let plain: SocketAddr = kafka.bootstrap().parse().expect("address");
    let got = sasl_handshake(&mut connect(plain), "SCRAM-SHA-256");
    eprintln!("WIRE SaslHandshake v1 on the PLAINTEXT listener: {got:?}");
    assert_eq!(got, Ok((34, vec![])));

    // tansu (PyPI, no --authentication) answers UNSUPPORTED_SASL_MECHANISM while listing the
    // very mechanism asked for.
    let tansu = strait_tests::tansu::TansuBroker::start("sasl-wire");
    let got = sasl_handshake(&mut connect(tansu.addr()), "SCRAM-SHA-256");
    eprintln!("WIRE SaslHandshake v1 on tansu without authentication: {got:?}");
    assert_eq!(got, Ok((33, vec!["SCRAM-SHA-256".to_string()])));
}

/// Creates a topic with librdkafka's admin client; the broker's error code if it refuses.
fn try_create_topic(config: &rdkafka::ClientConfig, topic: &str) -> Result<(), RDKafkaErrorCode> {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    let admin: AdminClient<DefaultClientContext> = config.create().expect("admin client");
    let new_topic = NewTopic::new(topic, 1, TopicReplication::Fixed(1));
    let res = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(admin.create_topics(
            &[new_topic],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
        ))
        .expect("CreateTopics request");
    match res.into_iter().next().expect("one result") {
        Ok(_) => Ok(()),
        Err((_, code)) => Err(code),
    }
}

/// `KafkaOptions::authorizer`: the `StandardAuthorizer` is on, a SASL user without ACLs may not
/// create a topic, a super user may, and PLAINTEXT clients (the harness's, `ANONYMOUS`) are
/// super users. What ACL tests build on.
#[test]
fn authorizer_option() {
    let kafka = KafkaCluster::start_with(
        "acl",
        KafkaOptions::brokers(1)
            .scram_user(ScramUser::new(ScramMechanism::Sha256, ALICE.0, ALICE.1))
            .scram_user(ScramUser::new(ScramMechanism::Sha512, BOB.0, BOB.1))
            .plain_user(PAT.0, PAT.1)
            .listener(sasl_listener("SASL_PLAINTEXT", None))
            .authorizer(&["User:bob"]),
    );
    let b = kafka.bootstrap_for_listener("SASL_PLAINTEXT");
    let alice = secure_config(&b, &scram(ScramMechanism::Sha256, ALICE.0, ALICE.1));
    let got = try_create_topic(&alice, &unique("acl-alice"));
    eprintln!("ACL alice (no ACLs) CreateTopics: {got:?}");
    assert_eq!(got, Err(RDKafkaErrorCode::TopicAuthorizationFailed));
    let pat = secure_config(&b, &RefSecurity::default().with_sasl("PLAIN", PAT.0, PAT.1));
    assert_eq!(
        try_create_topic(&pat, &unique("acl-pat")),
        Err(RDKafkaErrorCode::TopicAuthorizationFailed)
    );
    let bob = secure_config(&b, &scram(ScramMechanism::Sha512, BOB.0, BOB.1));
    assert_eq!(try_create_topic(&bob, &unique("acl-bob")), Ok(()));
    let anonymous = secure_config(&kafka.bootstrap(), &RefSecurity::default());
    assert_eq!(try_create_topic(&anonymous, &unique("acl-anon")), Ok(()));
}
