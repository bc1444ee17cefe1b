//! The client side of SASL reading what the broker sends: the sans-IO mechanisms
//! (`protocol_client::security::sasl`: `Scram` SHA-256/512 server-first and server-final
//! parsing, signature check and state machine; `Plain`; `OAuthBearer` with its error-JSON
//! `status` extraction) driven through `Mechanism::initial` / `Mechanism::step` with fuzzed
//! server messages, and the Kafka envelopes around them (`codec::decode_response` for
//! SaslHandshake v1 and SaslAuthenticate v0..=2, whose `auth_bytes` are then stepped).
//!
//! Input layout: byte 0 chooses the mechanism (bits 0-1: SCRAM-SHA-256, SCRAM-SHA-512, PLAIN,
//! OAUTHBEARER) and the mode (bits 2-3):
//! - 0 or 3, raw: the rest is up to four server messages, each `u16` BE length + bytes (an
//!   incomplete last message is what remains), given to `step` in order;
//! - 1, wrapped: the same messages are SaslAuthenticate response bodies (version
//!   `(byte 0 >> 4) % 3`); a message that does not decode or carries an error code ends the
//!   exchange, as in the connection layer; the whole rest is also decoded as a SaslHandshake
//!   v1 response;
//! - 2, structured (SCRAM only; others read it as raw): a valid server-first is built from
//!   the input (salt, 4096 + n iterations, server nonce, extensions), then a server-final that
//!   is the correct signature, with an extension, an `e=` error, a corrupted or truncated
//!   signature, or raw bytes.
//!
//! The client uses user `user`, password `pencil` and the RFC 7677 client nonce, so the RFC's
//! exchange is a valid input. Server-first messages asking for more than 16384 iterations (but
//! not more than the accepted maximum) are skipped: PBKDF2 would make the fuzzer crawl.
//!
//! Asserts: no panic. State machine: nothing but an error follows a failure or completion;
//! SCRAM answers server-first with client-final and completes only on server-final; PLAIN
//! completes exactly on an empty answer; OAUTHBEARER completes on an empty answer, else
//! acknowledges with `\x01` and then reports the rejection. Errors are bounded and never carry
//! raw control characters (server text is escaped and cut; a rejection reason is at most 200
//! characters plus `…`); `Debug` never shows the password. SCRAM against an independent
//! RFC 5802 reference (ring): a server-first is accepted exactly when it follows the grammar
//! the module documents, the client-final (nonce and proof) is what the reference computes,
//! and the exchange completes exactly when server-final carries the reference's server
//! signature.
#![no_main]

use std::collections::BTreeMap;
use std::num::NonZeroU32;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use bytes::Bytes;
use kafka_protocol::messages::{SaslAuthenticateRequest, SaslHandshakeRequest};
use libfuzzer_sys::fuzz_target;
use protocol_client::codec::decode_response;
use protocol_client::security::sasl::{
    Mechanism, OAuthBearer, Plain, SaslError, Scram, ScramHash, SCRAM_MAX_ITERATIONS,
    SCRAM_MIN_ITERATIONS,
};
use protocol_client::security::Secret;
use ring::{digest, hmac, pbkdf2};

const USER: &str = "user";
const PASSWORD: &str = "pencil";
const NONCE: &str = "rOprNGfwEbeRWgbNEkqO";
const TOKEN: &str = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJhbGljZSJ9.";
/// Iterations above this (up to the accepted maximum) are skipped.
const FUZZ_MAX_ITERATIONS: u64 = 16384;
/// `MAX_SERVER_TEXT` (200) plus the `…` marking a cut.
const MAX_REASON_CHARS: usize = 201;
/// Longest server message the client accepts (`MAX_SERVER_MESSAGE`).
const MAX_SERVER_MESSAGE: usize = 16 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Scram(ScramHash),
    Plain,
    OAuthBearer,
}

fn check_error(e: &SaslError) {
    let text = e.to_string();
    assert!(
        text.chars().count() <= 1024,
        "error of {} chars",
        text.len()
    );
    assert!(
        !text.chars().any(char::is_control),
        "control character in {text:?}"
    );
    if let SaslError::Rejected { reason } = e {
        assert!(reason.chars().count() <= MAX_REASON_CHARS, "{reason:?}");
    }
}

// ---- RFC 5802 reference -------------------------------------------------------------------

struct ServerFirst {
    nonce: String,
    salt: Vec<u8>,
    iterations: u32,
}

fn printable(b: u8) -> bool {
    (0x21..=0x7e).contains(&b) && b != b','
}

fn extension(a: &str) -> bool {
    let b = a.as_bytes();
    b.len() >= 2 && b[0].is_ascii_alphabetic() && b[1] == b'='
}

/// The server-first grammar of the module docs: `r=<client nonce + more>,s=<base64, not
/// empty>,i=<4096..=10000000>` then extensions.
fn reference_server_first(text: &str) -> Option<ServerFirst> {
    let mut attrs = text.split(',');
    let nonce = attrs.next()?.strip_prefix("r=")?;
    if !nonce.bytes().all(printable) || !nonce.starts_with(NONCE) || nonce.len() == NONCE.len() {
        return None;
    }
    let salt = STANDARD.decode(attrs.next()?.strip_prefix("s=")?).ok()?;
    if salt.is_empty() {
        return None;
    }
    let i = attrs.next()?.strip_prefix("i=")?;
    if i.is_empty() || i.len() > 10 || !i.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let iterations: u64 = i.parse().ok()?;
    if !(u64::from(SCRAM_MIN_ITERATIONS)..=u64::from(SCRAM_MAX_ITERATIONS)).contains(&iterations) {
        return None;
    }
    if !attrs.all(extension) {
        return None;
    }
    Some(ServerFirst {
        nonce: nonce.to_owned(),
        salt,
        iterations: iterations as u32,
    })
}

/// Whether a server-first message asks for an iteration count that is accepted but slow.
fn too_slow(message: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(message) else {
        return false;
    };
    let Some(i) = text.split(',').nth(2).and_then(|a| a.strip_prefix("i=")) else {
        return false;
    };
    if i.is_empty() || i.len() > 10 || !i.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    let n: u64 = i.parse().unwrap_or(u64::MAX);
    n > FUZZ_MAX_ITERATIONS && n <= u64::from(SCRAM_MAX_ITERATIONS)
}

/// (client-final, server signature) for `server_first`.
fn reference_exchange(hash: ScramHash, server_first: &str, sf: &ServerFirst) -> (String, Vec<u8>) {
    let (p, h, d) = match hash {
        ScramHash::Sha256 => (
            pbkdf2::PBKDF2_HMAC_SHA256,
            hmac::HMAC_SHA256,
            &digest::SHA256,
        ),
        ScramHash::Sha512 => (
            pbkdf2::PBKDF2_HMAC_SHA512,
            hmac::HMAC_SHA512,
            &digest::SHA512,
        ),
    };
    let mut salted = vec![0u8; d.output_len()];
    pbkdf2::derive(
        p,
        NonZeroU32::new(sf.iterations).unwrap(),
        &sf.salt,
        PASSWORD.as_bytes(),
        &mut salted,
    );
    let key = hmac::Key::new(h, &salted);
    let client_key = hmac::sign(&key, b"Client Key");
    let stored_key = digest::digest(d, client_key.as_ref());
    let without_proof = format!("c=biws,r={}", sf.nonce);
    let auth_message = format!("n={USER},r={NONCE},{server_first},{without_proof}");
    let client_signature = hmac::sign(
        &hmac::Key::new(h, stored_key.as_ref()),
        auth_message.as_bytes(),
    );
    let proof: Vec<u8> = client_key
        .as_ref()
        .iter()
        .zip(client_signature.as_ref())
        .map(|(a, b)| a ^ b)
        .collect();
    let server_key = hmac::sign(&key, b"Server Key");
    let signature = hmac::sign(
        &hmac::Key::new(h, server_key.as_ref()),
        auth_message.as_bytes(),
    );
    (
        format!("{without_proof},p={}", STANDARD.encode(proof)),
        signature.as_ref().to_vec(),
    )
}

/// Whether server-final `message` carries `signature` (`v=<base64>` then extensions).
fn final_verifies(message: &[u8], signature: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(message) else {
        return false;
    };
    let mut attrs = text.split(',');
    let Some(v) = attrs.next().and_then(|a| a.strip_prefix("v=")) else {
        return false;
    };
    attrs.all(extension) && STANDARD.decode(v).is_ok_and(|s| s == signature)
}

// ---- driving a mechanism ------------------------------------------------------------------

struct Driver {
    kind: Kind,
    mechanism: Box<dyn Mechanism>,
    steps: usize,
    /// Ended by an error or completion.
    ended: bool,
    /// SCRAM: what the reference expects of server-final.
    signature: Option<Vec<u8>>,
}

impl Driver {
    fn new(kind: Kind) -> Driver {
        let secret = Secret::new(PASSWORD);
        let mut mechanism: Box<dyn Mechanism> = match kind {
            Kind::Scram(hash) => Box::new(Scram::with_nonce(hash, USER, secret, NONCE).unwrap()),
            Kind::Plain => Box::new(Plain::new(USER, secret).unwrap()),
            Kind::OAuthBearer => {
                Box::new(OAuthBearer::new(&Secret::new(TOKEN), BTreeMap::new()).unwrap())
            }
        };
        let initial = mechanism.initial().expect("the first message");
        let expected = match kind {
            Kind::Scram(_) => format!("n,,n={USER},r={NONCE}").into_bytes(),
            Kind::Plain => format!("\0{USER}\0{PASSWORD}").into_bytes(),
            Kind::OAuthBearer => format!("n,,\x01auth=Bearer {TOKEN}\x01\x01").into_bytes(),
        };
        assert_eq!(initial, expected);
        assert!(mechanism.initial().is_err(), "a second initial message");
        // The second `initial` failed the exchange: start again.
        let mut mechanism: Box<dyn Mechanism> = match kind {
            Kind::Scram(hash) => {
                Box::new(Scram::with_nonce(hash, USER, Secret::new(PASSWORD), NONCE).unwrap())
            }
            Kind::Plain => Box::new(Plain::new(USER, Secret::new(PASSWORD)).unwrap()),
            Kind::OAuthBearer => {
                Box::new(OAuthBearer::new(&Secret::new(TOKEN), BTreeMap::new()).unwrap())
            }
        };
        mechanism.initial().unwrap();
        Driver {
            kind,
            mechanism,
            steps: 0,
            ended: false,
            signature: None,
        }
    }

    /// Steps one server message; `false` when the input is skipped (too many iterations).
    fn step(&mut self, message: &[u8]) -> bool {
        if matches!(self.kind, Kind::Scram(_)) && self.steps == 0 && too_slow(message) {
            return false;
        }
        let result = self.mechanism.step(message);
        let step = self.steps;
        self.steps += 1;
        if self.ended {
            let e = result.expect_err("a step after the end must fail");
            check_error(&e);
            return true;
        }
        if let Err(e) = &result {
            check_error(e);
        }
        assert!(
            !format!("{:?}", self.mechanism).contains(PASSWORD),
            "the password in Debug output"
        );
        match self.kind {
            Kind::Scram(hash) => self.check_scram(hash, step, message, &result),
            Kind::Plain => match &result {
                Ok(None) => assert!(step == 0 && message.is_empty()),
                Ok(Some(m)) => panic!("PLAIN answered {m:?}"),
                Err(_) => assert!(step > 0 || !message.is_empty()),
            },
            Kind::OAuthBearer => match (step, &result) {
                (0, Ok(None)) => assert!(message.is_empty()),
                (0, Ok(Some(m))) => assert!(!message.is_empty() && m == &[0x01]),
                (1, Err(SaslError::Rejected { reason })) => assert!(!reason.is_empty()),
                other => panic!("OAUTHBEARER: {other:?}"),
            },
        }
        match result {
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => self.ended = true,
        }
        true
    }

    fn check_scram(
        &mut self,
        hash: ScramHash,
        step: usize,
        message: &[u8],
        result: &Result<Option<Vec<u8>>, SaslError>,
    ) {
        match step {
            0 => {
                let text = std::str::from_utf8(message).ok();
                let reference = text
                    .filter(|_| message.len() <= MAX_SERVER_MESSAGE)
                    .and_then(reference_server_first);
                match (result, reference) {
                    (Ok(Some(client_final)), Some(sf)) => {
                        let (expected, signature) = reference_exchange(hash, text.unwrap(), &sf);
                        assert_eq!(
                            std::str::from_utf8(client_final).unwrap(),
                            expected,
                            "client-final differs from the reference"
                        );
                        self.signature = Some(signature);
                    }
                    (Err(SaslError::Rejected { .. }), None) => {
                        assert!(message.starts_with(b"e="));
                    }
                    (Err(_), None) => {}
                    (Ok(Some(_)), None) => panic!("accepted a server-first the grammar refuses"),
                    (Err(e), Some(_)) => panic!("refused a valid server-first: {e}"),
                    (Ok(None), _) => panic!("completed on server-first"),
                }
            }
            1 => {
                let signature = self.signature.as_ref().expect("server-first was accepted");
                let verifies =
                    message.len() <= MAX_SERVER_MESSAGE && final_verifies(message, signature);
                match result {
                    Ok(None) => assert!(verifies, "completed without the server signature"),
                    Ok(Some(m)) => panic!("SCRAM answered server-final with {m:?}"),
                    Err(SaslError::ServerSignature) => {
                        assert!(!verifies);
                        assert!(message.starts_with(b"v="));
                    }
                    Err(SaslError::Rejected { .. }) => assert!(message.starts_with(b"e=")),
                    Err(e) => assert!(!verifies, "refused the right signature: {e}"),
                }
            }
            _ => unreachable!("the exchange ended at server-final"),
        }
    }
}

fn messages(mut rest: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    while out.len() < 4 {
        let [a, b, tail @ ..] = rest else {
            break;
        };
        let n = usize::from(u16::from_be_bytes([*a, *b])).min(tail.len());
        let (m, tail) = tail.split_at(n);
        out.push(m);
        rest = tail;
    }
    out
}

fn raw(kind: Kind, rest: &[u8]) {
    let mut driver = Driver::new(kind);
    for m in messages(rest) {
        if !driver.step(m) {
            return;
        }
    }
}

fn wrapped(kind: Kind, version: i16, rest: &[u8]) {
    let _ = decode_response::<SaslHandshakeRequest>(Bytes::copy_from_slice(rest), 1);
    let mut driver = Driver::new(kind);
    for m in messages(rest) {
        let Ok(resp) =
            decode_response::<SaslAuthenticateRequest>(Bytes::copy_from_slice(m), version)
        else {
            return;
        };
        if resp.error_code != 0 {
            return;
        }
        if !driver.step(&resp.auth_bytes) {
            return;
        }
    }
}

/// Printable nonce/extension characters from arbitrary bytes.
fn printable_from(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| {
            let c = 0x21 + b % 94;
            char::from(if c == b',' { b'-' } else { c })
        })
        .collect()
}

fn take<'a>(rest: &mut &'a [u8], n: usize) -> &'a [u8] {
    let (a, b) = rest.split_at(n.min(rest.len()));
    *rest = b;
    a
}

fn structured(hash: ScramHash, mut rest: &[u8]) {
    let salt_len = 1 + usize::from(*take(&mut rest, 1).first().unwrap_or(&15) % 32);
    let mut salt = take(&mut rest, salt_len).to_vec();
    if salt.is_empty() {
        salt.push(0);
    }
    let iterations = 4096 + u32::from(*take(&mut rest, 1).first().unwrap_or(&0));
    let nonce_len = 1 + usize::from(*take(&mut rest, 1).first().unwrap_or(&0) % 48);
    let server_nonce = printable_from(take(&mut rest, nonce_len));
    let server_nonce = if server_nonce.is_empty() {
        "x".to_owned()
    } else {
        server_nonce
    };
    let mut server_first = format!(
        "r={NONCE}{server_nonce},s={},i={iterations}",
        STANDARD.encode(&salt)
    );
    let extensions = *take(&mut rest, 1).first().unwrap_or(&0) % 3;
    for _ in 0..extensions {
        let len = usize::from(*take(&mut rest, 1).first().unwrap_or(&0) % 8);
        server_first.push_str(",x=");
        server_first.push_str(&printable_from(take(&mut rest, len)));
    }
    let mut driver = Driver::new(Kind::Scram(hash));
    assert!(driver.step(server_first.as_bytes()));
    let signature = driver
        .signature
        .clone()
        .expect("a built server-first is accepted");
    let mode = *take(&mut rest, 1).first().unwrap_or(&0) % 6;
    let v = STANDARD.encode(&signature);
    let server_final: Vec<u8> = match mode {
        0 => format!("v={v}").into_bytes(),
        1 => format!("v={v},x=ext").into_bytes(),
        2 => [b"e=".as_slice(), rest].concat(),
        3 => rest.to_vec(),
        4 => {
            let mut bad = signature.clone();
            let at = rest.first().map_or(0, |b| usize::from(*b)) % bad.len();
            bad[at] ^= 1 << (rest.get(1).map_or(0, |b| b % 8));
            format!("v={}", STANDARD.encode(&bad)).into_bytes()
        }
        _ => {
            let keep = rest.first().map_or(0, |b| usize::from(*b)) % signature.len();
            format!("v={}", STANDARD.encode(&signature[..keep])).into_bytes()
        }
    };
    let completes = mode <= 1;
    assert!(driver.step(&server_final));
    if completes {
        assert!(driver.ended);
        assert!(
            driver.mechanism.step(b"").is_err(),
            "nothing after completion"
        );
    }
    if mode >= 4 {
        assert!(driver.ended);
    }
    // One more message after the end.
    driver.step(rest);
}

fuzz_target!(|data: &[u8]| {
    let [selector, rest @ ..] = data else {
        return;
    };
    let kind = match selector & 3 {
        0 => Kind::Scram(ScramHash::Sha256),
        1 => Kind::Scram(ScramHash::Sha512),
        2 => Kind::Plain,
        _ => Kind::OAuthBearer,
    };
    match ((selector >> 2) & 3, kind) {
        (1, _) => wrapped(kind, i16::from((selector >> 4) % 3), rest),
        (2, Kind::Scram(hash)) => structured(hash, rest),
        _ => raw(kind, rest),
    }
});
