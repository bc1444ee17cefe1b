//! SCRAM-SHA-256 and SCRAM-SHA-512, client side (RFC 5802, RFC 7677), as Kafka's
//! `ScramSaslClient`, `ScramMessages` and `ScramFormatter` speak it.
//!
//! The exchange has two round trips:
//!
//! 1. client-first `n,,n=<saslname>,r=<client nonce>` (no authorization id, no channel binding,
//!    no extensions: Kafka's delegation-token extension `tokenauth=true` is not used);
//! 2. server-first `r=<client nonce + server nonce>,s=<base64 salt>,i=<iterations>`, answered
//!    with client-final `c=biws,r=<nonce>,p=<base64 ClientProof>`;
//! 3. server-final `v=<base64 ServerSignature>`, which the client verifies in constant time, or
//!    `e=<error>` (`invalid-proof`, `unknown-user`, …), a rejection. Some brokers (tansu) answer a
//!    wrong password with SaslAuthenticate error code 0 and `e=invalid-proof`, so this check is
//!    what makes a wrong password fail on the client.
//!
//! Key derivation (RFC 5802 §3): `SaltedPassword = Hi(password, salt, i)` (PBKDF2-HMAC),
//! `ClientKey = HMAC(SaltedPassword, "Client Key")`, `StoredKey = H(ClientKey)`,
//! `AuthMessage = client-first-bare "," server-first "," client-final-without-proof`,
//! `ClientProof = ClientKey XOR HMAC(StoredKey, AuthMessage)`,
//! `ServerSignature = HMAC(HMAC(SaltedPassword, "Server Key"), AuthMessage)`.
//!
//! Like Kafka, the username and password are used as UTF-8 without SASLprep. Like Kafka's
//! client, at least [`MIN_ITERATIONS`] (4096) are required: a man in the middle of a
//! SASL_PLAINTEXT connection must not be able to lower the count and make the captured proof
//! cheap to crack offline. At most [`MAX_ITERATIONS`] protects the client from a server that
//! would make it hash for minutes. Kafka brokers store 4096 to 16384 iterations (KIP-554).
//!
//! Secrets (password, salted password, keys, proofs) never appear in `Debug` output or errors.

use std::fmt;
use std::num::NonZeroU32;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use ring::rand::SecureRandom as _;
use ring::{digest, hmac, pbkdf2};

use super::{server_text, Mechanism, SaslError, ScramHash};
use crate::security::Secret;

/// The largest iteration count a server may ask for. PBKDF2 runs synchronously inside
/// [`Mechanism::step`]; at this bound that is a few seconds of CPU.
pub const MAX_ITERATIONS: u32 = 10_000_000;

/// The smallest iteration count accepted (Kafka's `ScramMechanism.minIterations`).
pub const MIN_ITERATIONS: u32 = 4096;

/// Longest server message accepted (the server nonce is echoed and hashed; real messages are
/// around a hundred bytes).
const MAX_SERVER_MESSAGE: usize = 16 * 1024;

/// Random bytes in a generated client nonce (encoded as 32 base64url characters).
const NONCE_BYTES: usize = 24;

impl ScramHash {
    /// The SASL mechanism name, as Kafka spells it (`SCRAM-SHA-256`, `SCRAM-SHA-512`).
    pub fn mechanism_name(self) -> &'static str {
        match self {
            ScramHash::Sha256 => "SCRAM-SHA-256",
            ScramHash::Sha512 => "SCRAM-SHA-512",
        }
    }

    fn pbkdf2(self) -> pbkdf2::Algorithm {
        match self {
            ScramHash::Sha256 => pbkdf2::PBKDF2_HMAC_SHA256,
            ScramHash::Sha512 => pbkdf2::PBKDF2_HMAC_SHA512,
        }
    }

    fn hmac(self) -> hmac::Algorithm {
        match self {
            ScramHash::Sha256 => hmac::HMAC_SHA256,
            ScramHash::Sha512 => hmac::HMAC_SHA512,
        }
    }

    fn digest(self) -> &'static digest::Algorithm {
        match self {
            ScramHash::Sha256 => &digest::SHA256,
            ScramHash::Sha512 => &digest::SHA512,
        }
    }
}

/// One client-side SCRAM exchange (see the module docs).
pub struct Scram {
    hash: ScramHash,
    /// The username, already escaped as an RFC 5802 `saslname`.
    sasl_name: String,
    password: Secret,
    client_nonce: String,
    state: State,
}

enum State {
    /// `initial` not yet called.
    Start,
    /// Client-first sent; waiting for server-first.
    SentClientFirst { client_first_bare: String },
    /// Client-final sent; waiting for server-final.
    SentClientFinal {
        server_key: hmac::Key,
        auth_message: String,
    },
    /// Server signature verified.
    Complete,
    /// An error ended the exchange.
    Failed,
}

impl State {
    fn name(&self) -> &'static str {
        match self {
            State::Start => "start",
            State::SentClientFirst { .. } => "awaiting server-first",
            State::SentClientFinal { .. } => "awaiting server-final",
            State::Complete => "complete",
            State::Failed => "failed",
        }
    }
}

impl fmt::Debug for Scram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scram")
            .field("mechanism", &self.hash.mechanism_name())
            .field("sasl_name", &self.sasl_name)
            .field("password", &self.password)
            .field("state", &self.state.name())
            .finish_non_exhaustive()
    }
}

impl Scram {
    /// Starts an exchange with a fresh random client nonce.
    ///
    /// Fails with [`SaslError::Credentials`] if the username is empty or contains NUL, or if the
    /// system random number generator fails.
    pub fn new(hash: ScramHash, username: &str, password: Secret) -> Result<Scram, SaslError> {
        let mut bytes = [0u8; NONCE_BYTES];
        ring::rand::SystemRandom::new()
            .fill(&mut bytes)
            .map_err(|_| {
                SaslError::Credentials(
                    "cannot make a SCRAM nonce: the system random number generator failed".into(),
                )
            })?;
        Scram::with_nonce(hash, username, password, &URL_SAFE_NO_PAD.encode(bytes))
    }

    /// Starts an exchange with the given client nonce (for tests and test vectors; a real
    /// exchange needs an unpredictable nonce, which [`Scram::new`] makes).
    ///
    /// The nonce must be non-empty printable ASCII without `,` (RFC 5802 `printable`).
    pub fn with_nonce(
        hash: ScramHash,
        username: &str,
        password: Secret,
        client_nonce: &str,
    ) -> Result<Scram, SaslError> {
        if username.is_empty() {
            return Err(SaslError::Credentials("the SCRAM username is empty".into()));
        }
        if username.contains('\0') {
            return Err(SaslError::Credentials(
                "the SCRAM username contains a NUL character".into(),
            ));
        }
        if client_nonce.is_empty() || !client_nonce.bytes().all(is_printable) {
            return Err(SaslError::Credentials(
                "the SCRAM client nonce must be printable ASCII without ','".into(),
            ));
        }
        Ok(Scram {
            hash,
            sasl_name: escape_sasl_name(username),
            password,
            client_nonce: client_nonce.to_owned(),
            state: State::Start,
        })
    }

    fn protocol(&self, detail: impl Into<String>) -> SaslError {
        SaslError::Protocol {
            mechanism: self.hash.mechanism_name(),
            detail: detail.into(),
        }
    }

    /// Handles server-first; returns client-final and the state awaiting server-final.
    fn on_server_first(
        &self,
        client_first_bare: &str,
        server: &[u8],
    ) -> Result<(Vec<u8>, State), SaslError> {
        let server_first = self.parse_server_first(server)?;

        let client_final_without_proof = format!("c=biws,r={}", server_first.nonce);
        let auth_message = format!(
            "{client_first_bare},{},{client_final_without_proof}",
            server_first.raw
        );

        let mut salted_password = [0u8; digest::MAX_OUTPUT_LEN];
        let salted_password = &mut salted_password[..self.hash.digest().output_len()];
        pbkdf2::derive(
            self.hash.pbkdf2(),
            server_first.iterations,
            &server_first.salt,
            self.password.expose().as_bytes(),
            salted_password,
        );
        let salted_key = hmac::Key::new(self.hash.hmac(), salted_password);
        let client_key = hmac::sign(&salted_key, b"Client Key");
        let stored_key = digest::digest(self.hash.digest(), client_key.as_ref());
        let client_signature = hmac::sign(
            &hmac::Key::new(self.hash.hmac(), stored_key.as_ref()),
            auth_message.as_bytes(),
        );
        let proof: Vec<u8> = client_key
            .as_ref()
            .iter()
            .zip(client_signature.as_ref())
            .map(|(k, s)| k ^ s)
            .collect();
        let server_key = hmac::sign(&salted_key, b"Server Key");
        let server_key = hmac::Key::new(self.hash.hmac(), server_key.as_ref());
        salted_password.fill(0);

        let client_final = format!("{client_final_without_proof},p={}", STANDARD.encode(&proof));
        Ok((
            client_final.into_bytes(),
            State::SentClientFinal {
                server_key,
                auth_message,
            },
        ))
    }

    fn parse_server_first<'a>(&self, server: &'a [u8]) -> Result<ServerFirst<'a>, SaslError> {
        if server.len() > MAX_SERVER_MESSAGE {
            return Err(self.protocol(format!(
                "server-first message of {} bytes exceeds {MAX_SERVER_MESSAGE}",
                server.len()
            )));
        }
        let raw = std::str::from_utf8(server)
            .map_err(|_| self.protocol("server-first message is not UTF-8"))?;
        let mut attrs = raw.split(',');

        let nonce_attr = attrs.next().unwrap_or_default();
        if let Some(error) = nonce_attr.strip_prefix("e=") {
            return Err(SaslError::Rejected {
                reason: server_text(error.as_bytes()),
            });
        }
        if nonce_attr.starts_with("m=") {
            // RFC 5802 §5.1: a client that does not support a mandatory extension fails.
            return Err(
                self.protocol("server-first requires an unsupported mandatory extension (m=)")
            );
        }
        if raw.is_empty() {
            return Err(self.protocol("empty server-first message"));
        }
        let nonce = nonce_attr
            .strip_prefix("r=")
            .ok_or_else(|| self.protocol("server-first does not start with the nonce (r=)"))?;
        if nonce.is_empty() || !nonce.bytes().all(is_printable) {
            return Err(self.protocol("server nonce is empty or not printable ASCII"));
        }
        if !nonce.starts_with(&self.client_nonce) || nonce.len() == self.client_nonce.len() {
            return Err(self.protocol("server nonce does not extend the client nonce"));
        }

        let salt = attrs
            .next()
            .and_then(|a| a.strip_prefix("s="))
            .ok_or_else(|| self.protocol("server-first has no salt (s=) after the nonce"))?;
        let salt = STANDARD
            .decode(salt)
            .map_err(|_| self.protocol("server salt is not valid base64"))?;
        if salt.is_empty() {
            return Err(self.protocol("server salt is empty"));
        }

        let iterations = attrs
            .next()
            .and_then(|a| a.strip_prefix("i="))
            .ok_or_else(|| {
                self.protocol("server-first has no iteration count (i=) after the salt")
            })?;
        let iterations = parse_iterations(iterations).ok_or_else(|| {
            self.protocol(format!(
                "iteration count {:?} is not a number from {MIN_ITERATIONS} to {MAX_ITERATIONS}",
                server_text(iterations.as_bytes())
            ))
        })?;

        for extension in attrs {
            if !is_extension(extension) {
                return Err(self.protocol(format!(
                    "server-first has a malformed attribute {:?}",
                    server_text(extension.as_bytes())
                )));
            }
        }

        Ok(ServerFirst {
            raw,
            nonce,
            salt,
            iterations,
        })
    }

    /// Handles server-final: `e=` is a rejection, `v=` must match the expected signature.
    fn on_server_final(
        &self,
        server_key: &hmac::Key,
        auth_message: &str,
        server: &[u8],
    ) -> Result<(), SaslError> {
        if server.len() > MAX_SERVER_MESSAGE {
            return Err(self.protocol(format!(
                "server-final message of {} bytes exceeds {MAX_SERVER_MESSAGE}",
                server.len()
            )));
        }
        let raw = std::str::from_utf8(server)
            .map_err(|_| self.protocol("server-final message is not UTF-8"))?;
        let mut attrs = raw.split(',');
        let first = attrs.next().unwrap_or_default();
        if let Some(error) = first.strip_prefix("e=") {
            return Err(SaslError::Rejected {
                reason: server_text(error.as_bytes()),
            });
        }
        let Some(signature) = first.strip_prefix("v=") else {
            return Err(if raw.is_empty() {
                self.protocol("empty server-final message")
            } else {
                self.protocol("server-final starts with neither v= nor e=")
            });
        };
        for extension in attrs {
            if !is_extension(extension) {
                return Err(self.protocol(format!(
                    "server-final has a malformed attribute {:?}",
                    server_text(extension.as_bytes())
                )));
            }
        }
        let signature = STANDARD
            .decode(signature)
            .map_err(|_| self.protocol("server signature is not valid base64"))?;
        // Constant-time comparison with HMAC(ServerKey, AuthMessage).
        hmac::verify(server_key, auth_message.as_bytes(), &signature)
            .map_err(|_| SaslError::ServerSignature)
    }
}

impl Mechanism for Scram {
    fn name(&self) -> &'static str {
        self.hash.mechanism_name()
    }

    fn initial(&mut self) -> Result<Vec<u8>, SaslError> {
        if !matches!(self.state, State::Start) {
            let detail = format!("initial message requested in state {}", self.state.name());
            self.state = State::Failed;
            return Err(self.protocol(detail));
        }
        let client_first_bare = format!("n={},r={}", self.sasl_name, self.client_nonce);
        let message = format!("n,,{client_first_bare}").into_bytes();
        self.state = State::SentClientFirst { client_first_bare };
        Ok(message)
    }

    fn step(&mut self, server: &[u8]) -> Result<Option<Vec<u8>>, SaslError> {
        match std::mem::replace(&mut self.state, State::Failed) {
            State::SentClientFirst { client_first_bare } => {
                let (client_final, next) = self.on_server_first(&client_first_bare, server)?;
                self.state = next;
                Ok(Some(client_final))
            }
            State::SentClientFinal {
                server_key,
                auth_message,
            } => {
                self.on_server_final(&server_key, &auth_message, server)?;
                self.state = State::Complete;
                Ok(None)
            }
            other => Err(self.protocol(format!(
                "unexpected server message in state {}",
                other.name()
            ))),
        }
    }
}

struct ServerFirst<'a> {
    /// The message as received: it is part of AuthMessage verbatim (RFC 5802 §3).
    raw: &'a str,
    nonce: &'a str,
    salt: Vec<u8>,
    iterations: NonZeroU32,
}

/// Escapes a username as an RFC 5802 `saslname`: `=` → `=3D`, `,` → `=2C`.
fn escape_sasl_name(username: &str) -> String {
    let mut out = String::with_capacity(username.len());
    for c in username.chars() {
        match c {
            '=' => out.push_str("=3D"),
            ',' => out.push_str("=2C"),
            c => out.push(c),
        }
    }
    out
}

/// RFC 5802 `printable`: %x21-2B / %x2D-7E (visible ASCII except `,`).
fn is_printable(b: u8) -> bool {
    (0x21..=0x7e).contains(&b) && b != b','
}

/// An RFC 5802 extension attribute: one ASCII letter, `=`, a value.
fn is_extension(attr: &str) -> bool {
    let bytes = attr.as_bytes();
    bytes.len() >= 2 && bytes[0].is_ascii_alphabetic() && bytes[1] == b'='
}

fn parse_iterations(text: &str) -> Option<NonZeroU32> {
    if text.is_empty() || text.len() > 10 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u32 = text.parse().ok()?;
    if !(MIN_ITERATIONS..=MAX_ITERATIONS).contains(&n) {
        return None;
    }
    NonZeroU32::new(n)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    const RFC7677_NONCE: &str = "rOprNGfwEbeRWgbNEkqO";
    const RFC7677_SERVER_FIRST: &str =
        "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";

    fn rfc7677() -> Scram {
        Scram::with_nonce(
            ScramHash::Sha256,
            "user",
            Secret::new("pencil"),
            RFC7677_NONCE,
        )
        .unwrap()
    }

    fn protocol_detail(err: SaslError) -> String {
        match err {
            SaslError::Protocol { mechanism, detail } => {
                assert!(mechanism.starts_with("SCRAM-SHA-"));
                detail
            }
            other => panic!("expected a protocol error, got {other:?}"),
        }
    }

    #[test]
    fn rfc7677_sha256_test_vector() {
        let mut scram = rfc7677();
        assert_eq!(scram.name(), "SCRAM-SHA-256");
        assert_eq!(
            scram.initial().unwrap(),
            b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO".to_vec()
        );
        let client_final = scram
            .step(RFC7677_SERVER_FIRST.as_bytes())
            .unwrap()
            .unwrap();
        assert_eq!(
            String::from_utf8(client_final).unwrap(),
            "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
             p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
        );
        assert_eq!(
            scram
                .step(b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")
                .unwrap(),
            None
        );
        // Nothing may follow completion.
        assert!(protocol_detail(scram.step(b"").unwrap_err()).contains("complete"));
    }

    #[test]
    fn rfc7677_wrong_server_signature() {
        let mut scram = rfc7677();
        scram.initial().unwrap();
        scram.step(RFC7677_SERVER_FIRST.as_bytes()).unwrap();
        // First character of the real signature changed.
        assert_eq!(
            scram.step(b"v=7rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="),
            Err(SaslError::ServerSignature)
        );
        // The failed exchange cannot continue.
        assert!(protocol_detail(scram.step(b"v=").unwrap_err()).contains("failed"));
    }

    #[test]
    fn truncated_server_signature_does_not_verify() {
        let mut scram = rfc7677();
        scram.initial().unwrap();
        scram.step(RFC7677_SERVER_FIRST.as_bytes()).unwrap();
        assert_eq!(
            scram.step(b"v=6rriTRBi23WpRR/wtup+mA=="),
            Err(SaslError::ServerSignature)
        );
    }

    /// A minimal SCRAM server computed from RFC 5802 §3, independent of the client's state.
    pub(crate) struct TestServer {
        hash: ScramHash,
        salt: Vec<u8>,
        iterations: u32,
        stored_key: Vec<u8>,
        server_key: Vec<u8>,
        server_nonce: String,
    }

    impl TestServer {
        pub(crate) fn new(hash: ScramHash, password: &str, iterations: u32) -> TestServer {
            let salt = b"strait-test-salt".to_vec();
            let mut salted = vec![0u8; hash.digest().output_len()];
            pbkdf2::derive(
                hash.pbkdf2(),
                NonZeroU32::new(iterations).unwrap(),
                &salt,
                password.as_bytes(),
                &mut salted,
            );
            let key = hmac::Key::new(hash.hmac(), &salted);
            let client_key = hmac::sign(&key, b"Client Key");
            let stored_key = digest::digest(hash.digest(), client_key.as_ref())
                .as_ref()
                .to_vec();
            let server_key = hmac::sign(&key, b"Server Key").as_ref().to_vec();
            TestServer {
                hash,
                salt,
                iterations,
                stored_key,
                server_key,
                server_nonce: "Srv%nonce-42".into(),
            }
        }

        /// Returns (server-first, client-first-bare) for a client-first message.
        pub(crate) fn first(&self, client_first: &[u8]) -> (String, String) {
            let client_first = std::str::from_utf8(client_first).unwrap();
            let bare = client_first.strip_prefix("n,,").unwrap().to_owned();
            let client_nonce = bare.split(",r=").nth(1).unwrap();
            let server_first = format!(
                "r={client_nonce}{},s={},i={}",
                self.server_nonce,
                STANDARD.encode(&self.salt),
                self.iterations
            );
            (server_first, bare)
        }

        /// Checks the client proof; returns the server-final `v=` message.
        pub(crate) fn last(
            &self,
            bare: &str,
            server_first: &str,
            client_final: &[u8],
        ) -> Result<String, ()> {
            let client_final = std::str::from_utf8(client_final).unwrap();
            let (without_proof, proof) = client_final.rsplit_once(",p=").unwrap();
            let auth_message = format!("{bare},{server_first},{without_proof}");
            let signature = hmac::sign(
                &hmac::Key::new(self.hash.hmac(), &self.stored_key),
                auth_message.as_bytes(),
            );
            let proof = STANDARD.decode(proof).unwrap();
            let client_key: Vec<u8> = proof
                .iter()
                .zip(signature.as_ref())
                .map(|(p, s)| p ^ s)
                .collect();
            if digest::digest(self.hash.digest(), &client_key).as_ref() != self.stored_key {
                return Err(());
            }
            let server_signature = hmac::sign(
                &hmac::Key::new(self.hash.hmac(), &self.server_key),
                auth_message.as_bytes(),
            );
            Ok(format!("v={}", STANDARD.encode(server_signature.as_ref())))
        }
    }

    /// Runs a client to the point where it has sent client-final; returns the client, and the
    /// server's final answer (or `Err` if the server rejects the proof).
    fn exchange(
        hash: ScramHash,
        username: &str,
        client_password: &str,
        server_password: &str,
    ) -> (Scram, Result<String, ()>) {
        let server = TestServer::new(hash, server_password, 4096);
        let mut client = Scram::new(hash, username, Secret::new(client_password)).unwrap();
        let client_first = client.initial().unwrap();
        let (server_first, bare) = server.first(&client_first);
        let client_final = client.step(server_first.as_bytes()).unwrap().unwrap();
        let answer = server.last(&bare, &server_first, &client_final);
        (client, answer)
    }

    #[test]
    fn sha512_round_trip() {
        let (mut client, answer) =
            exchange(ScramHash::Sha512, "alice", "s3cret-pa55", "s3cret-pa55");
        assert_eq!(client.name(), "SCRAM-SHA-512");
        let server_final = answer.expect("the server accepts the client's proof");
        assert_eq!(client.step(server_final.as_bytes()).unwrap(), None);
    }

    #[test]
    fn sha512_proof_depends_on_the_password() {
        let (_, answer) = exchange(ScramHash::Sha512, "alice", "wrong", "s3cret-pa55");
        assert!(
            answer.is_err(),
            "the server must reject a proof from another password"
        );
    }

    #[test]
    fn sha512_server_with_other_credentials_fails_signature() {
        // A server that accepts anything but does not know the password: it signs with keys
        // derived from another password.
        let server = TestServer::new(ScramHash::Sha512, "not-the-password", 4096);
        let mut client =
            Scram::new(ScramHash::Sha512, "alice", Secret::new("s3cret-pa55")).unwrap();
        let (server_first, bare) = server.first(&client.initial().unwrap());
        let client_final = client.step(server_first.as_bytes()).unwrap().unwrap();
        let auth_message = format!(
            "{bare},{server_first},{}",
            std::str::from_utf8(&client_final)
                .unwrap()
                .rsplit_once(",p=")
                .unwrap()
                .0
        );
        let forged = hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA512, &server.server_key),
            auth_message.as_bytes(),
        );
        let forged = format!("v={}", STANDARD.encode(forged.as_ref()));
        assert_eq!(
            client.step(forged.as_bytes()),
            Err(SaslError::ServerSignature)
        );
    }

    fn after_server_first() -> Scram {
        let mut client = rfc7677();
        client.initial().unwrap();
        client.step(RFC7677_SERVER_FIRST.as_bytes()).unwrap();
        client
    }

    #[test]
    fn server_final_error_is_a_rejection() {
        for reason in ["invalid-proof", "unknown-user", "other-error"] {
            let mut client = after_server_first();
            let message = format!("e={reason}");
            assert_eq!(
                client.step(message.as_bytes()),
                Err(SaslError::Rejected {
                    reason: reason.into()
                })
            );
        }
        // Extensions after the error are ignored.
        let mut client = after_server_first();
        assert_eq!(
            client.step(b"e=invalid-proof,x=y"),
            Err(SaslError::Rejected {
                reason: "invalid-proof".into()
            })
        );
    }

    #[test]
    fn malformed_server_final_is_a_protocol_error() {
        let cases: &[&[u8]] = &[
            b"",
            b"x=abc",
            b"v=not base64!",
            b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=,bad",
            b"\xff\xfe",
            b"V=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=",
        ];
        for case in cases {
            let mut client = after_server_first();
            protocol_detail(client.step(case).unwrap_err());
        }
        let mut client = after_server_first();
        let huge = vec![b'v'; MAX_SERVER_MESSAGE + 1];
        assert!(protocol_detail(client.step(&huge).unwrap_err()).contains("exceeds"));
        // A valid signature followed by an extension verifies.
        let mut client = after_server_first();
        assert_eq!(
            client
                .step(b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=,x=1")
                .unwrap(),
            None
        );
    }

    fn server_first_error(server_first: &[u8]) -> SaslError {
        let mut client = rfc7677();
        client.initial().unwrap();
        client.step(server_first).unwrap_err()
    }

    #[test]
    fn server_first_nonce_must_extend_the_client_nonce() {
        for bad in [
            "r=XOprNGfwEbeRWgbNEkqO%hvY,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
            "r=rOprNGfwEbeRWgbNEkq,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
            "r=rOprNGfwEbeRWgbNEkqO,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
        ] {
            let detail = protocol_detail(server_first_error(bad.as_bytes()));
            assert!(detail.contains("nonce"), "{detail}");
        }
        let detail = protocol_detail(server_first_error(
            "r=rOprNGfwEbeRWgbNEkqO\u{e9},s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096".as_bytes(),
        ));
        assert!(detail.contains("printable"), "{detail}");
    }

    #[test]
    fn malformed_server_first_is_a_protocol_error() {
        let n = "r=rOprNGfwEbeRWgbNEkqO%hvY";
        let cases = [
            String::new(),
            "garbage".into(),
            n.to_owned(),
            format!("{n},s=W22ZaJ0SNY7soEsUEjb6gQ=="),
            format!("{n},i=4096,s=W22ZaJ0SNY7soEsUEjb6gQ=="),
            format!("{n},s=W22ZaJ0SNY7soEsUEjb6gQ=,i=4096"),
            format!("{n},s=!!!!,i=4096"),
            format!("{n},s=,i=4096"),
            format!("{n},s=W22ZaJ0SNY7soEsUEjb6gQ==,i=0"),
            format!("{n},s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4095"),
            format!("{n},s=W22ZaJ0SNY7soEsUEjb6gQ==,i=-1"),
            format!("{n},s=W22ZaJ0SNY7soEsUEjb6gQ==,i="),
            format!("{n},s=W22ZaJ0SNY7soEsUEjb6gQ==,i=+4096"),
            format!("{n},s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096x"),
            format!("{n},s=W22ZaJ0SNY7soEsUEjb6gQ==,i={}", MAX_ITERATIONS + 1),
            format!("{n},s=W22ZaJ0SNY7soEsUEjb6gQ==,i=99999999999999999999"),
            format!("{n},s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,"),
            format!("{n},s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,junk"),
            format!("m=ext,{n},s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"),
        ];
        for case in &cases {
            let err = server_first_error(case.as_bytes());
            assert!(
                matches!(err, SaslError::Protocol { .. }),
                "{case:?} gave {err:?}"
            );
        }
        protocol_detail(server_first_error(b"\xc3\x28,s=,i=1"));
        let huge = vec![b'r'; MAX_SERVER_MESSAGE + 1];
        assert!(protocol_detail(server_first_error(&huge)).contains("exceeds"));
    }

    #[test]
    fn server_first_extensions_and_small_iteration_counts_are_accepted() {
        let mut client = rfc7677();
        client.initial().unwrap();
        let reply = client
            .step(b"r=rOprNGfwEbeRWgbNEkqO%x,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,q=whatever")
            .unwrap()
            .unwrap();
        assert!(reply.starts_with(b"c=biws,r=rOprNGfwEbeRWgbNEkqO%x,p="));
    }

    #[test]
    fn server_first_error_attribute_is_a_rejection() {
        assert_eq!(
            server_first_error(b"e=unknown-user"),
            SaslError::Rejected {
                reason: "unknown-user".into()
            }
        );
    }

    #[test]
    fn username_is_escaped() {
        let mut client =
            Scram::with_nonce(ScramHash::Sha256, "a=b,c", Secret::new("pw"), "abc").unwrap();
        assert_eq!(client.initial().unwrap(), b"n,,n=a=3Db=2Cc,r=abc".to_vec());
        let mut client =
            Scram::with_nonce(ScramHash::Sha256, "=,", Secret::new("pw"), "abc").unwrap();
        assert_eq!(client.initial().unwrap(), b"n,,n==3D=2C,r=abc".to_vec());
        assert_eq!(escape_sasl_name("=2C"), "=3D2C");
    }

    #[test]
    fn bad_local_inputs_are_credentials_errors() {
        for (user, nonce) in [
            ("", "abc"),
            ("a\0b", "abc"),
            ("u", ""),
            ("u", "a,b"),
            ("u", "a b"),
        ] {
            let err =
                Scram::with_nonce(ScramHash::Sha256, user, Secret::new("pw"), nonce).unwrap_err();
            assert!(matches!(err, SaslError::Credentials(_)), "{err:?}");
        }
    }

    #[test]
    fn generated_nonces_are_printable_and_distinct() {
        let a = Scram::new(ScramHash::Sha256, "u", Secret::new("pw")).unwrap();
        let b = Scram::new(ScramHash::Sha256, "u", Secret::new("pw")).unwrap();
        assert_eq!(a.client_nonce.len(), 32);
        assert!(a.client_nonce.bytes().all(is_printable));
        assert_ne!(a.client_nonce, b.client_nonce);
    }

    #[test]
    fn misuse_of_the_state_machine_is_a_protocol_error() {
        let mut client = rfc7677();
        protocol_detail(client.step(RFC7677_SERVER_FIRST.as_bytes()).unwrap_err());
        let mut client = rfc7677();
        client.initial().unwrap();
        protocol_detail(client.initial().unwrap_err());
    }

    #[test]
    fn debug_and_errors_never_show_secrets() {
        let password = "pencil";
        let mut client = rfc7677();
        let mut seen = vec![format!("{client:?}")];
        client.initial().unwrap();
        seen.push(format!("{client:?}"));
        let client_final = client
            .step(RFC7677_SERVER_FIRST.as_bytes())
            .unwrap()
            .unwrap();
        let debug = format!("{client:?}");
        assert!(debug.contains("awaiting server-final"), "{debug}");
        seen.push(debug);
        let proof = std::str::from_utf8(&client_final)
            .unwrap()
            .rsplit_once(",p=")
            .unwrap()
            .1
            .to_owned();
        let err = client.step(b"v=AAAA").unwrap_err();
        seen.push(format!("{err:?} {err}"));
        seen.push(format!("{client:?}"));
        for text in seen {
            assert!(!text.contains(password), "{text}");
            assert!(!text.contains(&proof), "{text}");
            assert!(!text.contains(RFC7677_NONCE), "{text}");
        }
    }

    /// After a server-first with one iteration (cheap to reach in loops).
    fn cheaply_after_server_first() -> Scram {
        let mut client = rfc7677();
        client.initial().unwrap();
        client
            .step(b"r=rOprNGfwEbeRWgbNEkqO+srv,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096")
            .unwrap();
        client
    }

    #[test]
    fn arbitrary_server_bytes_never_panic() {
        // A deterministic spread of inputs around the grammar's edges.
        let pieces: &[&[u8]] = &[
            b"",
            b",",
            b"r=",
            b"s=",
            b"i=",
            b"e=",
            b"v=",
            b"m=",
            b"=",
            b"\0",
            b"\xff",
            b"rOprNGfwEbeRWgbNEkqO",
            b"W22ZaJ0SNY7soEsUEjb6gQ==",
            b"4096",
            b"4294967296",
        ];
        for a in pieces {
            for b in pieces {
                for c in pieces {
                    let input = [*a, *b, *c].concat();
                    let mut client = rfc7677();
                    client.initial().unwrap();
                    let _ = client.step(&input);
                    let _ = client.step(&input);
                    let mut client = cheaply_after_server_first();
                    assert!(client.step(&input).is_err(), "{input:?}");
                }
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn any_server_first_is_handled(input in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            let mut client = rfc7677();
            client.initial().unwrap();
            let _ = client.step(&input);
        }

        #[test]
        fn any_server_final_other_than_the_signature_fails(
            input in proptest::collection::vec(proptest::num::u8::ANY, 0..300),
        ) {
            let mut client = cheaply_after_server_first();
            proptest::prop_assert!(client.step(&input).is_err());
        }

        #[test]
        fn sasl_names_unescape_to_the_username(username in "(=|,|=2C|=3D|[a-z]|\\PC){1,12}") {
            let escaped = escape_sasl_name(&username);
            proptest::prop_assert!(!escaped.contains(','));
            // Kafka's ScramFormatter.username(): =2C then =3D.
            let unescaped = escaped.replace("=2C", ",").replace("=3D", "=");
            proptest::prop_assert_eq!(unescaped, username);
        }
    }
}
