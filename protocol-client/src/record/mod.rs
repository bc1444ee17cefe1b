//! Kafka record batches (magic v2): a zero-copy header view, in-place rewrite of the fields
//! Strait controls, record decoding with capped decompression, and a builder for rebuilding.
//!
//! Pure and sans-IO: bytes in, bytes out, no tokio.
//!
//! # Format
//!
//! The v2 layout is the one of Kafka's `DefaultRecordBatch` / `DefaultRecord`
//! (`clients/src/main/java/org/apache/kafka/common/record/`, KIP-98; protocol guide section
//! "Record Batch"), all integers big-endian:
//!
//! | offset | field | notes |
//! |---:|---|---|
//! | 0 | `baseOffset` i64 | outside the CRC; the broker assigns it on append |
//! | 8 | `batchLength` i32 | bytes after this field |
//! | 12 | `partitionLeaderEpoch` i32 | outside the CRC; the broker assigns it on append |
//! | 16 | `magic` i8 | 2 |
//! | 17 | `crc` u32 | CRC-32C of bytes 21..end |
//! | 21 | `attributes` i16 | bits 0-2 codec, 3 timestamp type, 4 transactional, 5 control, 6 delete horizon |
//! | 23 | `lastOffsetDelta` i32 | |
//! | 27 | `baseTimestamp` i64 | holds the delete horizon when bit 6 is set (KIP-534) |
//! | 35 | `maxTimestamp` i64 | |
//! | 43 | `producerId` i64 | |
//! | 51 | `producerEpoch` i16 | |
//! | 53 | `baseSequence` i32 | |
//! | 57 | `recordCount` i32 | |
//! | 61 | records | one compressed block when a codec is set |
//!
//! Each record is `length` varint, `attributes` i8, `timestampDelta` varlong, `offsetDelta`
//! varint, key (varint length, -1 = null), value (same), a varint header count and headers
//! (varint key length + UTF-8 key, varint value length (-1 = null) + value). Varints are
//! zigzag-encoded as in protobuf. A control batch holds one record whose key is
//! `version: i16, type: i16` (`ControlRecordType`: 0 = ABORT, 1 = COMMIT).
//!
//! # Decisions
//!
//! - **Legacy message sets (magic 0 and 1) are rejected** with [`RecordError::UnsupportedMagic`]
//!   naming the base offset; the caller adds the topic-partition. Brokers since 0.11 store
//!   topics written by v2 producers as v2 batches and only down-convert for old fetchers, so a
//!   client fetching with a modern `Fetch` version gets v2 batches unless the topic itself still
//!   holds messages written before the upgrade (`log.message.format.version` < 0.11), which
//!   Kafka 4 no longer supports.
//! - [`RecordBatch::parse`] checks structure only (magic, lengths, counts); it does **not**
//!   verify the CRC. Call [`RecordBatch::verify_crc`] (a hardware CRC-32C pass) where corruption
//!   must be caught.
//! - [`BatchMut::freeze`] updates the CRC **incrementally** from the changed header bytes (CRC is
//!   linear, so `crc(new) = crc(old) ^ crc(old ^ new)`): rewriting producer fields costs the same
//!   for a 1 KiB and a 1 MiB batch, and a batch whose CRC was already wrong stays wrong, so a
//!   rewrite never launders corruption. If no CRC-covered field changed value, the CRC is left
//!   untouched.
//! - **Snappy**: Java clients write the xerial framing (magic `82 53 4E 41 50 50 59 00`, version
//!   and compatible-version i32s, then blocks of i32 length + raw snappy block); librdkafka writes
//!   one raw snappy block. Both are decoded (the xerial magic cannot start a valid raw block: its
//!   first element would be a copy before any literal). Batches built here use the xerial
//!   framing with 32 KiB blocks, as Java's `SnappyOutputStream` does; Java and librdkafka read it.
//! - **LZ4** is the standard LZ4 frame format (Kafka's `KafkaLZ4BlockOutputStream` for v2);
//!   built batches use independent 64 KiB blocks without checksums, as Java writes.
//! - **Gzip** via flate2 (multi-member streams accepted), level 6 when building (Java's default).
//! - **Zstd** streaming decode, level 3 when building (Java's and librdkafka's default).
//! - **Decompression bombs**: every codec decodes through a reader capped at
//!   [`DecodeLimits::max_decompressed_bytes`] + 1 bytes; reading past the cap is
//!   [`RecordError::DecompressedTooLarge`]. Snappy block lengths are checked before allocating;
//!   zstd frames asking for a window above [`DecodeLimits::max_zstd_window_log`] are refused.
//! - Every varint length and count is checked against the bytes remaining before anything is
//!   allocated; `recordCount` is never used to reserve memory unless it fits the bytes.
//! - Header keys are kept as raw bytes (they should be UTF-8; Kafka's Java client decodes them
//!   leniently): a replicator must forward them unchanged, so they are not validated here.

mod batch;
mod builder;
mod compression;
mod error;
mod records;
mod split;
mod varint;

#[cfg(test)]
mod tests;

pub use batch::{BatchMut, RecordBatch};
pub use builder::BatchBuilder;
pub use error::{CodecError, RecordError};
pub use records::{DecodeLimits, RawRecord, Record, RecordHeader, Records};
pub use split::{split_batches, BatchSplitter};

use std::fmt;
use std::str::FromStr;

/// Size of the v2 batch header, up to and including `recordCount`.
pub const BATCH_HEADER_LEN: usize = 61;

/// Bytes before the part counted by `batchLength` (`baseOffset` and `batchLength`).
pub const LOG_OVERHEAD: usize = 12;

/// The only supported record batch magic.
pub const MAGIC_V2: i8 = 2;

/// Mask of the compression codec in `attributes`.
pub const COMPRESSION_CODEC_MASK: i16 = 0x07;
/// `attributes` bit set when timestamps are `LogAppendTime`.
pub const TIMESTAMP_TYPE_MASK: i16 = 0x08;
/// `attributes` bit set for transactional batches.
pub const TRANSACTIONAL_FLAG_MASK: i16 = 0x10;
/// `attributes` bit set for control batches (transaction markers).
pub const CONTROL_FLAG_MASK: i16 = 0x20;
/// `attributes` bit set when `baseTimestamp` holds the delete horizon (KIP-534).
pub const DELETE_HORIZON_FLAG_MASK: i16 = 0x40;

/// Compression codec of a batch (attribute bits 0-2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Compression {
    /// 0: uncompressed.
    None,
    /// 1: gzip.
    Gzip,
    /// 2: snappy.
    Snappy,
    /// 3: LZ4 frame.
    Lz4,
    /// 4: zstd.
    Zstd,
}

impl Compression {
    /// All codecs, in id order.
    pub const ALL: [Compression; 5] = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];

    /// The codec of batch `attributes`, or `None` for the unassigned ids 5-7.
    pub fn from_attributes(attributes: i16) -> Option<Compression> {
        Compression::from_id((attributes & COMPRESSION_CODEC_MASK) as u8)
    }

    /// The codec with Kafka id `id` (0-4).
    pub fn from_id(id: u8) -> Option<Compression> {
        Some(match id {
            0 => Compression::None,
            1 => Compression::Gzip,
            2 => Compression::Snappy,
            3 => Compression::Lz4,
            4 => Compression::Zstd,
            _ => return None,
        })
    }

    /// Kafka's id of the codec (attribute bits 0-2).
    pub fn id(self) -> u8 {
        match self {
            Compression::None => 0,
            Compression::Gzip => 1,
            Compression::Snappy => 2,
            Compression::Lz4 => 3,
            Compression::Zstd => 4,
        }
    }

    /// The codec's bits in `attributes`.
    pub fn attribute_bits(self) -> i16 {
        i16::from(self.id())
    }

    /// Kafka's name (`compression.type`).
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Error of [`Compression::from_str`]: the name is not a Kafka codec.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown compression type {0:?} (expected none, gzip, snappy, lz4 or zstd)")]
pub struct UnknownCompression(pub String);

impl FromStr for Compression {
    type Err = UnknownCompression;

    /// Parses Kafka's `compression.type` names (case-insensitive).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Compression::ALL
            .into_iter()
            .find(|c| c.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| UnknownCompression(s.to_owned()))
    }
}

/// Timestamp type of a batch (attribute bit 3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TimestampType {
    /// Timestamps set by the producer.
    CreateTime,
    /// Timestamps set by the broker on append; `maxTimestamp` holds the append time.
    LogAppendTime,
}

/// Type of a control record (`ControlRecordType` in Kafka).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ControlType {
    /// Transaction abort marker (type 0).
    Abort,
    /// Transaction commit marker (type 1).
    Commit,
    /// Any other type (KRaft uses 2 and up in internal topics).
    Unknown(i16),
}

impl ControlType {
    /// From the `type` field of a control record key.
    pub fn from_type_id(id: i16) -> ControlType {
        match id {
            0 => ControlType::Abort,
            1 => ControlType::Commit,
            other => ControlType::Unknown(other),
        }
    }

    /// The `type` field of a control record key.
    pub fn type_id(self) -> i16 {
        match self {
            ControlType::Abort => 0,
            ControlType::Commit => 1,
            ControlType::Unknown(id) => id,
        }
    }
}
