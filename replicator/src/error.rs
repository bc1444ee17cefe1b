//! The replicator runtime's error: one enum for the layer, wrapping the client's errors with the
//! flow and partition they happened in.

use crate::config::ConfigError;
use crate::formats::FormatError;
use crate::offsets::OffsetMapError;

/// Result alias.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can stop a flow or a command.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad configuration.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The Kafka client failed (after its own retries).
    #[error("cluster {cluster}: {source}")]
    Client {
        /// Cluster alias.
        cluster: String,
        /// Cause.
        source: protocol_client::Error,
    },
    /// A record batch could not be read or rebuilt.
    #[error("{context}: {source}")]
    Record {
        /// Topic-partition and offset.
        context: String,
        /// Cause.
        source: protocol_client::record::RecordError,
    },
    /// An internal-topic record is malformed.
    #[error("{context}: {source}")]
    Format {
        /// Topic and offset.
        context: String,
        /// Cause.
        source: FormatError,
    },
    /// The offset map was fed inconsistent positions.
    #[error("offset map of {context}: {source}")]
    OffsetMap {
        /// Topic-partition.
        context: String,
        /// Cause.
        source: OffsetMapError,
    },
    /// The target refused (or never acknowledged) a forwarded batch: the partition stops
    /// before it, so the remote partition has no gap.
    #[error("cluster {cluster}: appending {topic}/{partition} offsets {first}..{next} to {remote}: {source}")]
    Append {
        /// Target cluster alias.
        cluster: String,
        /// Source topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// Remote topic.
        remote: String,
        /// First source offset of the batch.
        first: i64,
        /// Source offset after the batch.
        next: i64,
        /// Cause.
        source: Box<protocol_client::Error>,
    },
    /// A failure with what it interrupted.
    #[error("{context}: {source}")]
    Context {
        /// What was going on.
        context: String,
        /// Cause.
        source: Box<Error>,
    },
    /// A feature the configuration asks for that this build cannot provide.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// Anything else, with its context.
    #[error("{0}")]
    Other(String),
}

impl Error {
    /// A client error in the named cluster.
    pub fn client(cluster: &str) -> impl FnOnce(protocol_client::Error) -> Error + '_ {
        move |source| Error::Client {
            cluster: cluster.to_string(),
            source,
        }
    }

    /// The same error, saying what it interrupted.
    pub fn context(self, context: impl Into<String>) -> Error {
        Error::Context {
            context: context.into(),
            source: Box::new(self),
        }
    }

    /// A short name of the error's kind (a metrics label): `client`, `append`, `offset_map`, ...
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Config(_) => "config",
            Error::Client { .. } => "client",
            Error::Record { .. } => "record",
            Error::Format { .. } => "format",
            Error::OffsetMap { .. } => "offset_map",
            Error::Append { .. } => "append",
            Error::Context { source, .. } => source.kind(),
            Error::Unsupported(_) => "unsupported",
            Error::Other(_) => "other",
        }
    }

    /// Whether this is a TLS or SASL failure: a configuration problem that no retry or restart
    /// fixes (an expired certificate, a rotated password).
    pub fn is_security(&self) -> bool {
        match self {
            Error::Client { source, .. } => source.is_security(),
            Error::Append { source, .. } => source.is_security(),
            Error::Context { source, .. } => source.is_security(),
            _ => false,
        }
    }

    /// Whether restarting the flow (after a pause) may get past the error.
    ///
    /// A batch the target refused with a non-retriable error (invalid timestamp, too large,
    /// authorization) is not: the flow stops and says so. One that timed out or met a
    /// retriable error until the delivery timeout is.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Client { source, .. } => client_error_is_transient(source),
            Error::Append { source, .. } => client_error_is_transient(source),
            Error::Context { source, .. } => source.is_transient(),
            Error::OffsetMap { .. } => true,
            _ => false,
        }
    }
}

impl Error {
    /// Whether another producer took this run's transactional id (exactly-once mode): a
    /// zombie's run, or a second process with the same transactional ids.
    pub fn is_fenced(&self) -> bool {
        match self {
            Error::Client { source, .. } => {
                matches!(source, protocol_client::Error::Fenced { .. })
            }
            Error::Append { source, .. } => {
                matches!(**source, protocol_client::Error::Fenced { .. })
            }
            Error::Context { source, .. } => source.is_fenced(),
            _ => false,
        }
    }
}

fn client_error_is_transient(source: &protocol_client::Error) -> bool {
    if source.is_security() {
        return false;
    }
    source.is_retriable()
        || matches!(
            source,
            protocol_client::Error::RetriesExhausted { .. }
                | protocol_client::Error::Producer(_)
                | protocol_client::Error::Shutdown
        )
}
