//! The sans-IO Kafka codec: no sockets, no tokio, no clocks.
//!
//! - [`frame`]: the 4-byte length-prefixed framing of every Kafka request and response, with the
//!   maximum size checked before anything is allocated.
//! - [`header`]: request header v1/v2 and response header v0/v1, chosen per API version
//!   (KIP-482 flexible versions), and the encoding of whole requests.
//! - [`versions`]: ApiVersions negotiation (KIP-35/KIP-511): the highest version both sides speak.
//! - [`produce`]: a Produce request encoder that leaves record batches where they are, producing
//!   a chain of buffers for vectored writes (kafka-protocol's encoder copies records).
//! - [`chain`]: that chain of `Bytes`, a [`bytes::Buf`] with vectored chunks.
//!
//! Message bodies are encoded and decoded by the `kafka-protocol` crate.

pub mod chain;
pub mod frame;
pub mod header;
pub mod produce;
pub mod versions;

use kafka_protocol::messages::ApiKey;

pub use chain::BufChain;
pub use frame::{decode_frame, DEFAULT_MAX_FRAME_BYTES};
pub use header::{decode_response, encode_request, ResponseFrame};
pub use versions::{ApiVersionTable, Supported};

/// Errors of the codec layer: what was wrong with the bytes, never an I/O error.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// A frame announced a negative size.
    #[error("frame length {0} is negative")]
    NegativeFrameLength(i32),
    /// A frame announced more bytes than the configured maximum.
    #[error("frame length {len} exceeds the maximum of {max} bytes")]
    FrameTooLarge {
        /// Announced length.
        len: usize,
        /// Configured maximum.
        max: usize,
    },
    /// A response ended before its header.
    #[error("response frame of {0} bytes is too short for a response header")]
    ShortResponse(usize),
    /// kafka-protocol could not encode a message.
    #[error("encoding {api:?} v{version}: {message}")]
    Encode {
        /// API.
        api: ApiKey,
        /// Version.
        version: i16,
        /// What failed.
        message: String,
    },
    /// kafka-protocol could not decode a message.
    #[error("decoding {api:?} v{version} response: {message}")]
    Decode {
        /// API.
        api: ApiKey,
        /// Version.
        version: i16,
        /// What failed.
        message: String,
    },
    /// A response carried bytes after the message.
    #[error("{api:?} v{version} response has {extra} unread trailing bytes")]
    TrailingBytes {
        /// API.
        api: ApiKey,
        /// Version.
        version: i16,
        /// Unread bytes.
        extra: usize,
    },
    /// A string or array is too long for the wire format.
    #[error("{what} of {len} does not fit the wire format")]
    TooLong {
        /// Which field.
        what: &'static str,
        /// Its length.
        len: usize,
    },
    /// The broker supports no version of an API this client can speak.
    #[error("broker supports {api:?} versions {broker_min}..={broker_max}, this client {client_min}..={client_max}")]
    NoCommonVersion {
        /// API.
        api: ApiKey,
        /// Broker's lowest.
        broker_min: i16,
        /// Broker's highest.
        broker_max: i16,
        /// Ours lowest.
        client_min: i16,
        /// Ours highest.
        client_max: i16,
    },
    /// The broker does not offer the API at all.
    #[error("broker does not support {0:?}")]
    UnsupportedApi(ApiKey),
}
