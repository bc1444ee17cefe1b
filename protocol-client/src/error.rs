//! The client's top-level error, and the one place that classifies errors as retriable and as
//! calling for a metadata refresh (in the spirit of Kafka's `RetriableException` and
//! `InvalidMetadataException` hierarchies, and franz-go's `kerr` table).

use std::time::Duration;

pub use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::ApiKey;

use crate::codec::CodecError;
use crate::conn::ConnError;
use crate::record::RecordError;

/// Result alias of the client.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything the client can fail with, carrying the request's context.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Transport or connection-level failure.
    #[error(transparent)]
    Conn(#[from] ConnError),
    /// Bytes that could not be encoded or decoded.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// A record batch that could not be read or built.
    #[error(transparent)]
    Record(#[from] RecordError),
    /// The broker answered with an error code.
    #[error("{api:?} to {broker}{}: {error} (code {}){}", resource.as_deref().map(|r| format!(" for {r}")).unwrap_or_default(), error.code(), message.as_deref().map(|m| format!(": {m}")).unwrap_or_default())]
    Broker {
        /// API of the request.
        api: ApiKey,
        /// Broker that answered (id and address).
        broker: String,
        /// What the error is about, e.g. `topic orders partition 3` or `group g1`.
        resource: Option<String>,
        /// The Kafka error.
        error: ResponseError,
        /// The broker's error message, if it sent one.
        message: Option<String>,
    },
    /// Metadata does not (yet) know what is needed, e.g. a partition's leader.
    #[error("metadata: {0}")]
    Metadata(String),
    /// No bootstrap broker could be reached.
    #[error("no bootstrap broker reachable ({tried}): {last}")]
    NoBrokers {
        /// Addresses tried.
        tried: String,
        /// Last failure.
        last: String,
    },
    /// A retriable error persisted past the retry budget.
    #[error("gave up after {attempts} attempts in {elapsed:?}: {last}")]
    RetriesExhausted {
        /// Attempts made.
        attempts: u32,
        /// Time spent.
        elapsed: Duration,
        /// The last error.
        last: Box<Error>,
    },
    /// The caller asked for something impossible.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The producer was fenced or lost its idempotent state in a way it cannot repair.
    #[error("producer: {0}")]
    Producer(String),
    /// An earlier batch of this partition failed for good, so this one was not written
    /// (`ProducerConfig::stop_partition_on_failure`): the partition's log has no gap.
    #[error("topic {topic} partition {partition} stopped after an earlier batch failed: {reason}")]
    PartitionStopped {
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// The first failure.
        reason: String,
    },
    /// Another producer took this producer's transactional id (InitProducerId with the same id
    /// bumped its epoch): nothing more may be written under it. Never retriable.
    #[error("producer fenced: transactional id {transactional_id} belongs to a newer producer ({reason})")]
    Fenced {
        /// The transactional id.
        transactional_id: String,
        /// What was refused, and the broker's answer.
        reason: String,
    },
    /// The component was shut down.
    #[error("shut down")]
    Shutdown,
}

impl Error {
    /// A broker error with context.
    pub fn broker(
        api: ApiKey,
        broker: impl Into<String>,
        resource: Option<String>,
        code: i16,
        message: Option<String>,
    ) -> Option<Error> {
        ResponseError::try_from_code(code).map(|error| Error::Broker {
            api,
            broker: broker.into(),
            resource,
            error,
            message,
        })
    }

    /// The Kafka error code behind this error, if it came from a broker.
    pub fn response_error(&self) -> Option<ResponseError> {
        match self {
            Error::Broker { error, .. } => Some(*error),
            Error::RetriesExhausted { last, .. } => last.response_error(),
            _ => None,
        }
    }

    /// A short name of what went wrong, for counting (metrics labels): the broker's error
    /// code name (`NotLeaderOrFollower`), or the kind of client-side failure (`transport`,
    /// `request_timeout`, `tls`, `sasl`, `codec`, …).
    pub fn kind(&self) -> String {
        match self {
            Error::Conn(e) => e.kind().to_string(),
            Error::Broker { error, .. } => format!("{error:?}"),
            Error::RetriesExhausted { last, .. } => last.kind(),
            Error::Codec(_) => "codec".into(),
            Error::Record(_) => "record".into(),
            Error::Metadata(_) => "metadata".into(),
            Error::NoBrokers { .. } => "no_brokers".into(),
            Error::InvalidArgument(_) => "invalid_argument".into(),
            Error::Producer(_) => "producer".into(),
            Error::PartitionStopped { .. } => "partition_stopped".into(),
            Error::Fenced { .. } => "fenced".into(),
            Error::Shutdown => "shutdown".into(),
        }
    }

    /// Whether this is a TLS or SASL failure: a configuration problem that no retry fixes.
    pub fn is_security(&self) -> bool {
        match self {
            Error::Conn(e) => e.is_security(),
            Error::RetriesExhausted { last, .. } => last.is_security(),
            _ => false,
        }
    }

    /// A copy of a TLS or SASL failure ([`is_security`](Self::is_security)), to hand the same
    /// failure to several waiters; `None` for other errors.
    pub fn security_copy(&self) -> Option<Error> {
        match self {
            Error::Conn(e) => e.clone_security().map(Error::Conn),
            Error::RetriesExhausted { last, .. } => last.security_copy(),
            _ => None,
        }
    }

    /// Whether trying again (after backoff, and a metadata refresh if
    /// [`needs_metadata_refresh`](Self::needs_metadata_refresh)) may succeed.
    pub fn is_retriable(&self) -> bool {
        match self {
            Error::Conn(e) => e.is_transport(),
            Error::Broker { error, .. } => is_retriable_code(*error),
            Error::Metadata(_) => true,
            Error::NoBrokers { .. } => true,
            _ => false,
        }
    }

    /// Whether the cached metadata (leaders, coordinators) may be stale.
    pub fn needs_metadata_refresh(&self) -> bool {
        match self {
            Error::Conn(e) => e.is_transport(),
            Error::Broker { error, .. } => refreshes_metadata(*error),
            Error::Metadata(_) => true,
            _ => false,
        }
    }
}

/// Kafka's retriable flag, plus codes a replicating client treats as transient.
pub fn is_retriable_code(e: ResponseError) -> bool {
    use ResponseError as E;
    e.is_retriable()
        || matches!(
            e,
            E::BrokerNotAvailable | E::ThrottlingQuotaExceeded | E::ConcurrentTransactions
        )
}

/// Codes after which leader or coordinator locations must be looked up again.
pub fn refreshes_metadata(e: ResponseError) -> bool {
    use ResponseError as E;
    matches!(
        e,
        E::NotLeaderOrFollower
            | E::LeaderNotAvailable
            | E::UnknownTopicOrPartition
            | E::FencedLeaderEpoch
            | E::UnknownLeaderEpoch
            | E::NotCoordinator
            | E::CoordinatorNotAvailable
            | E::RequestTimedOut
            | E::NetworkException
            | E::BrokerNotAvailable
            | E::ReplicaNotAvailable
            | E::KafkaStorageError
            | E::PreferredLeaderNotAvailable
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn broker_err(code: i16) -> Error {
        Error::broker(
            ApiKey::Produce,
            "1@h:1",
            Some("topic t partition 0".into()),
            code,
            None,
        )
        .unwrap()
    }

    #[test]
    fn classification_table() {
        // NOT_LEADER_OR_FOLLOWER, LEADER_NOT_AVAILABLE, UNKNOWN_TOPIC_OR_PARTITION,
        // FENCED_LEADER_EPOCH, NOT_COORDINATOR, COORDINATOR_NOT_AVAILABLE, REQUEST_TIMED_OUT
        for code in [6, 5, 3, 74, 16, 15, 7] {
            let e = broker_err(code);
            assert!(e.is_retriable(), "{e}");
            assert!(e.needs_metadata_refresh(), "{e}");
        }
        // COORDINATOR_LOAD_IN_PROGRESS: retry, same coordinator
        assert!(broker_err(14).is_retriable() && !broker_err(14).needs_metadata_refresh());
        // TOPIC_AUTHORIZATION_FAILED, MESSAGE_TOO_LARGE, INVALID_RECORD: surface at once
        for code in [29, 10, 87] {
            let e = broker_err(code);
            assert!(!e.is_retriable() && !e.needs_metadata_refresh(), "{e}");
        }
        assert!(Error::broker(ApiKey::Fetch, "b", None, 0, None).is_none());
    }

    #[test]
    fn messages_carry_context() {
        let e = Error::broker(
            ApiKey::Produce,
            "1@127.0.0.1:9092",
            Some("topic orders partition 3".into()),
            29,
            Some("denied".into()),
        )
        .unwrap();
        let s = e.to_string();
        assert!(
            s.contains("Produce") && s.contains("1@127.0.0.1:9092"),
            "{s}"
        );
        assert!(
            s.contains("topic orders partition 3") && s.contains("code 29"),
            "{s}"
        );
        assert!(s.contains("denied"), "{s}");
    }
}
