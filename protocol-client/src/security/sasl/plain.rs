//! PLAIN, client side (RFC 4616), as Kafka clients send it (the JDK `PlainClient` behind Kafka's
//! `PlainLoginModule`; the broker side is Kafka's `PlainSaslServer`).
//!
//! One message: `[authzid] NUL authcid NUL passwd`, with an empty authorization id, so
//! `\0username\0password`. The broker answers an accepted login with an empty SASL message (and
//! a rejected one with a SaslAuthenticate error code, which the connection layer reports). The
//! password travels in the clear: use PLAIN over TLS only.

use std::fmt;

use super::{server_text, Mechanism, SaslError};
use crate::security::Secret;

const NAME: &str = "PLAIN";

/// One client-side PLAIN exchange.
pub struct Plain {
    username: String,
    password: Secret,
    state: State,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Start,
    Sent,
    Complete,
    Failed,
}

impl fmt::Debug for Plain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Plain")
            .field("username", &self.username)
            .field("password", &self.password)
            .field("state", &self.state)
            .finish()
    }
}

impl Plain {
    /// Prepares a PLAIN exchange.
    ///
    /// Fails with [`SaslError::Credentials`] if the username is empty or either value contains a
    /// NUL character (the field separator).
    pub fn new(username: &str, password: Secret) -> Result<Plain, SaslError> {
        if username.is_empty() {
            return Err(SaslError::Credentials("the PLAIN username is empty".into()));
        }
        if username.contains('\0') {
            return Err(SaslError::Credentials(
                "the PLAIN username contains a NUL character".into(),
            ));
        }
        if password.expose().contains('\0') {
            return Err(SaslError::Credentials(
                "the PLAIN password contains a NUL character".into(),
            ));
        }
        Ok(Plain {
            username: username.to_owned(),
            password,
            state: State::Start,
        })
    }
}

impl Mechanism for Plain {
    fn name(&self) -> &'static str {
        NAME
    }

    fn initial(&mut self) -> Result<Vec<u8>, SaslError> {
        if self.state != State::Start {
            let state = self.state;
            self.state = State::Failed;
            return Err(SaslError::Protocol {
                mechanism: NAME,
                detail: format!("initial message requested in state {state:?}"),
            });
        }
        let password = self.password.expose();
        let mut message = Vec::with_capacity(2 + self.username.len() + password.len());
        message.push(0);
        message.extend_from_slice(self.username.as_bytes());
        message.push(0);
        message.extend_from_slice(password.as_bytes());
        self.state = State::Sent;
        Ok(message)
    }

    fn step(&mut self, server: &[u8]) -> Result<Option<Vec<u8>>, SaslError> {
        let state = std::mem::replace(&mut self.state, State::Failed);
        let detail = match state {
            State::Sent if server.is_empty() => {
                self.state = State::Complete;
                return Ok(None);
            }
            State::Sent => format!(
                "expected an empty answer, got {} bytes: {:?}",
                server.len(),
                server_text(server)
            ),
            other => format!("unexpected server message in state {other:?}"),
        };
        Err(SaslError::Protocol {
            mechanism: NAME,
            detail,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initial_message_bytes() {
        let mut plain = Plain::new("alice", Secret::new("pa55,w=rd")).unwrap();
        assert_eq!(plain.name(), "PLAIN");
        assert_eq!(plain.initial().unwrap(), b"\0alice\0pa55,w=rd".to_vec());
        assert_eq!(plain.step(b"").unwrap(), None);
        assert!(matches!(plain.step(b""), Err(SaslError::Protocol { .. })));
    }

    #[test]
    fn utf8_credentials_are_sent_as_utf8() {
        let mut plain = Plain::new("j\u{fc}rgen", Secret::new("\u{20ac}")).unwrap();
        assert_eq!(
            plain.initial().unwrap(),
            b"\0j\xc3\xbcrgen\0\xe2\x82\xac".to_vec()
        );
    }

    #[test]
    fn non_empty_answer_is_a_protocol_error() {
        let mut plain = Plain::new("alice", Secret::new("pw")).unwrap();
        plain.initial().unwrap();
        let err = plain.step(b"\xffsurprise").unwrap_err();
        match &err {
            SaslError::Protocol { mechanism, detail } => {
                assert_eq!(*mechanism, "PLAIN");
                assert!(detail.contains("9 bytes"), "{detail}");
            }
            other => panic!("{other:?}"),
        }
        assert!(plain.step(b"").is_err(), "a failed exchange stays failed");
    }

    #[test]
    fn misuse_and_bad_credentials() {
        let mut plain = Plain::new("alice", Secret::new("pw")).unwrap();
        assert!(matches!(plain.step(b""), Err(SaslError::Protocol { .. })));
        let mut plain = Plain::new("alice", Secret::new("pw")).unwrap();
        plain.initial().unwrap();
        assert!(matches!(plain.initial(), Err(SaslError::Protocol { .. })));
        for (user, password) in [("", "pw"), ("a\0", "pw"), ("a", "p\0w")] {
            assert!(matches!(
                Plain::new(user, Secret::new(password)),
                Err(SaslError::Credentials(_))
            ));
        }
    }

    #[test]
    fn debug_never_shows_the_password() {
        let mut plain = Plain::new("alice", Secret::new("hunter2-secret")).unwrap();
        let before = format!("{plain:?}");
        plain.initial().unwrap();
        let during = format!("{plain:?}");
        assert!(during.contains("Sent"), "{during}");
        let err = plain.step(b"x").unwrap_err();
        for text in [
            before,
            during,
            format!("{plain:?}"),
            format!("{err} {err:?}"),
        ] {
            assert!(!text.contains("hunter2"), "{text}");
        }
    }

    proptest::proptest! {
        #[test]
        fn only_an_empty_answer_completes(
            input in proptest::collection::vec(proptest::num::u8::ANY, 0..300),
        ) {
            let mut plain = Plain::new("alice", Secret::new("pw")).unwrap();
            plain.initial().unwrap();
            let result = plain.step(&input);
            proptest::prop_assert_eq!(result.is_ok(), input.is_empty());
        }
    }
}
