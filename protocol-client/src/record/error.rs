//! Errors of the record-batch layer.

use super::Compression;

/// Boxed error from a compression library, kept as the `source` of [`RecordError`].
pub type CodecError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything that can be wrong with record-batch bytes, or with a batch being built.
///
/// Each variant names the field or structure that was wrong and where: the batch's
/// `base_offset` (so the caller only has to add the topic-partition) and, for record-level
/// problems, the byte `position` inside the records section (after decompression) and the
/// index of the record.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// Fewer bytes than the structure needs.
    #[error("truncated {what} at byte {position} (batch base offset {base_offset:?}): need {needed} bytes, {available} available")]
    Truncated {
        /// The structure being read.
        what: &'static str,
        /// Byte position where it starts.
        position: usize,
        /// Bytes needed.
        needed: usize,
        /// Bytes available.
        available: usize,
        /// Base offset of the batch, when it could be read.
        base_offset: Option<i64>,
    },
    /// `batchLength` is impossible (below the v2 header size, above a configured maximum, or
    /// not matching the bytes given to [`RecordBatch::parse`](super::RecordBatch::parse)).
    #[error("bad batchLength {batch_length} for batch at base offset {base_offset} (byte {position}): {reason}")]
    BadLength {
        /// The declared `batchLength`.
        batch_length: i32,
        /// Why it is wrong.
        reason: &'static str,
        /// Base offset of the batch.
        base_offset: i64,
        /// Byte position of the batch in the input.
        position: usize,
    },
    /// Not a v2 record batch: legacy message sets (magic 0 or 1) and unknown magics are rejected.
    #[error("unsupported record batch magic {magic} at base offset {base_offset} (only magic 2 record batches are supported)")]
    UnsupportedMagic {
        /// The magic byte found.
        magic: i8,
        /// Base offset of the batch (or legacy message).
        base_offset: i64,
    },
    /// The stored CRC-32C does not match the bytes.
    #[error("CRC-32C mismatch in batch at base offset {base_offset}: stored {expected:#010x}, computed {actual:#010x}")]
    CrcMismatch {
        /// CRC stored in the batch header.
        expected: u32,
        /// CRC computed over `attributes..end`.
        actual: u32,
        /// Base offset of the batch.
        base_offset: i64,
    },
    /// `recordCount` is negative.
    #[error("negative recordCount {count} in batch at base offset {base_offset}")]
    NegativeCount {
        /// The declared count.
        count: i32,
        /// Base offset of the batch.
        base_offset: i64,
    },
    /// `recordCount` cannot fit in the records bytes (each record takes at least 7 bytes).
    #[error("recordCount {count} in batch at base offset {base_offset} cannot fit in {available} record bytes")]
    CountExceedsBytes {
        /// The declared count.
        count: i32,
        /// Bytes of (decompressed) records.
        available: usize,
        /// Base offset of the batch.
        base_offset: i64,
    },
    /// A header field holds an impossible value.
    #[error("invalid {field} {value} in batch at base offset {base_offset}")]
    InvalidHeader {
        /// Name of the field, as in Kafka's `DefaultRecordBatch`.
        field: &'static str,
        /// The value found.
        value: i64,
        /// Base offset of the batch.
        base_offset: i64,
    },
    /// A varint or varlong is longer than 5 (resp. 10) bytes or does not fit its type.
    #[error(
        "varint overflow at byte {position} of the records of batch at base offset {base_offset}"
    )]
    VarintOverflow {
        /// Byte position in the records section (after decompression).
        position: usize,
        /// Base offset of the batch.
        base_offset: i64,
    },
    /// Compression codec bits 5, 6 or 7.
    #[error("unknown compression codec {codec} in batch at base offset {base_offset}")]
    UnknownCodec {
        /// The value of attribute bits 0-2.
        codec: u8,
        /// Base offset of the batch.
        base_offset: i64,
    },
    /// Decompressed records exceed [`DecodeLimits::max_decompressed_bytes`](super::DecodeLimits).
    #[error("{codec} records of batch at base offset {base_offset} decompress to more than {limit} bytes")]
    DecompressedTooLarge {
        /// The codec.
        codec: Compression,
        /// The limit that was exceeded.
        limit: usize,
        /// Base offset of the batch.
        base_offset: i64,
    },
    /// The compressed records are corrupt.
    #[error("cannot decompress {codec} records of batch at base offset {base_offset}: {source}")]
    Decompress {
        /// The codec.
        codec: Compression,
        /// Base offset of the batch.
        base_offset: i64,
        /// The compression library's error.
        #[source]
        source: CodecError,
    },
    /// Compressing records failed while building a batch.
    #[error("cannot compress records with {codec}: {source}")]
    Compress {
        /// The codec.
        codec: Compression,
        /// The compression library's error.
        #[source]
        source: CodecError,
    },
    /// A record inside the batch is malformed.
    #[error(
        "invalid record {index} at byte {position} of batch at base offset {base_offset}: {reason}"
    )]
    InvalidRecord {
        /// What is wrong.
        reason: &'static str,
        /// Index of the record in the batch.
        index: i32,
        /// Byte position in the records section (after decompression).
        position: usize,
        /// Base offset of the batch.
        base_offset: i64,
    },
    /// The records section holds bytes after the declared `recordCount` records.
    #[error(
        "{trailing} bytes after the {count} records declared by batch at base offset {base_offset}"
    )]
    TrailingBytes {
        /// Unread bytes.
        trailing: usize,
        /// Declared record count.
        count: i32,
        /// Base offset of the batch.
        base_offset: i64,
    },
    /// A builder with no records, or renumbering a batch that has none.
    #[error("record batch has no records{}", base_offset.map(|o| format!(" (base offset {o})")).unwrap_or_default())]
    EmptyBatch {
        /// Base offset of the batch, when renumbering one.
        base_offset: Option<i64>,
    },
    /// The batch being built does not fit the `i32` length and count fields.
    #[error("record batch too large: {what} {value} exceeds i32::MAX")]
    BatchTooLarge {
        /// `batchLength` or `recordCount`.
        what: &'static str,
        /// The value.
        value: u64,
    },
    /// [`BatchBuilder::push_record_with_offset_delta`](super::BatchBuilder::push_record_with_offset_delta)
    /// got an offset delta not above the previous one.
    #[error("offset delta {offset_delta} is not above the previous record's ({previous})")]
    OffsetDeltaNotIncreasing {
        /// The previous record's offset delta (-1 before the first record).
        previous: i64,
        /// The offset delta given.
        offset_delta: i32,
    },
}
