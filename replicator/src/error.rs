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

    /// Whether restarting the flow (after a pause) may get past the error.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Client { source, .. } if source.is_security() => false,
            Error::Client { source, .. } => {
                source.is_retriable()
                    || matches!(
                        source,
                        protocol_client::Error::RetriesExhausted { .. }
                            | protocol_client::Error::Producer(_)
                    )
            }
            Error::OffsetMap { .. } => true,
            _ => false,
        }
    }
}
