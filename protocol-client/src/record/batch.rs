//! Zero-copy view of one v2 record batch, and in-place rewrite of its header.

use bytes::{Bytes, BytesMut};

use super::records::{DecodeLimits, Records, MIN_RECORD_LEN};
use super::{
    BatchBuilder, Compression, ControlType, RecordError, TimestampType, BATCH_HEADER_LEN,
    COMPRESSION_CODEC_MASK, CONTROL_FLAG_MASK, LOG_OVERHEAD, MAGIC_V2, TIMESTAMP_TYPE_MASK,
    TRANSACTIONAL_FLAG_MASK,
};

// Field positions (Kafka `DefaultRecordBatch`).
pub(crate) const BASE_OFFSET_AT: usize = 0;
pub(crate) const LENGTH_AT: usize = 8;
pub(crate) const PARTITION_LEADER_EPOCH_AT: usize = 12;
pub(crate) const MAGIC_AT: usize = 16;
pub(crate) const CRC_AT: usize = 17;
pub(crate) const ATTRIBUTES_AT: usize = 21;
pub(crate) const LAST_OFFSET_DELTA_AT: usize = 23;
pub(crate) const BASE_TIMESTAMP_AT: usize = 27;
pub(crate) const MAX_TIMESTAMP_AT: usize = 35;
pub(crate) const PRODUCER_ID_AT: usize = 43;
pub(crate) const PRODUCER_EPOCH_AT: usize = 51;
pub(crate) const BASE_SEQUENCE_AT: usize = 53;
pub(crate) const RECORD_COUNT_AT: usize = 57;

/// Decompression cap when reading a control record.
const CONTROL_DECODE_LIMIT: usize = 1 << 20;

/// `batchLength` of a batch with no record bytes.
pub(crate) const MIN_BATCH_LENGTH: i32 = (BATCH_HEADER_LEN - LOG_OVERHEAD) as i32;

/// CRC-covered header bytes (`attributes` through `recordCount`).
const COVERED_HEADER: std::ops::Range<usize> = ATTRIBUTES_AT..BATCH_HEADER_LEN;
const COVERED_HEADER_LEN: usize = BATCH_HEADER_LEN - ATTRIBUTES_AT;

fn read_array<const N: usize>(b: &[u8], at: usize) -> [u8; N] {
    let mut a = [0u8; N];
    a.copy_from_slice(&b[at..at + N]);
    a
}
pub(crate) fn read_i64(b: &[u8], at: usize) -> i64 {
    i64::from_be_bytes(read_array(b, at))
}
pub(crate) fn read_i32(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes(read_array(b, at))
}
pub(crate) fn read_u32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(read_array(b, at))
}
pub(crate) fn read_i16(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes(read_array(b, at))
}

/// One complete, structurally valid v2 record batch, backed by the [`Bytes`] it was parsed from
/// (no copy).
///
/// Getters read the header in place. The invariants checked by [`RecordBatch::parse`] hold for
/// every value of this type.
#[derive(Clone, Debug)]
pub struct RecordBatch {
    bytes: Bytes,
}

impl RecordBatch {
    /// Parses exactly one complete batch.
    ///
    /// Validates magic == 2, that `batchLength` covers at least the header and matches
    /// `bytes.len()`, `recordCount >= 0`, `lastOffsetDelta >= 0`, and for uncompressed batches
    /// that `recordCount` records can fit the bytes. Does **not** verify the CRC.
    pub fn parse(bytes: Bytes) -> Result<RecordBatch, RecordError> {
        check_prefix(&bytes, 0)?;
        let base_offset = read_i64(&bytes, BASE_OFFSET_AT);
        let batch_length = read_i32(&bytes, LENGTH_AT);
        let total = LOG_OVERHEAD as u64 + batch_length as u64; // batch_length >= 49 here
        if (bytes.len() as u64) < total {
            return Err(RecordError::Truncated {
                what: "record batch",
                position: 0,
                needed: total as usize,
                available: bytes.len(),
                base_offset: Some(base_offset),
            });
        }
        if bytes.len() as u64 > total {
            return Err(RecordError::BadLength {
                batch_length,
                reason: "fewer bytes than given (trailing data after the batch)",
                base_offset,
                position: 0,
            });
        }
        let batch = RecordBatch { bytes };
        batch.check_header()?;
        Ok(batch)
    }

    fn check_header(&self) -> Result<(), RecordError> {
        let base_offset = self.base_offset();
        let count = self.record_count();
        if count < 0 {
            return Err(RecordError::NegativeCount { count, base_offset });
        }
        let last_offset_delta = self.last_offset_delta();
        if last_offset_delta < 0 {
            return Err(RecordError::InvalidHeader {
                field: "lastOffsetDelta",
                value: i64::from(last_offset_delta),
                base_offset,
            });
        }
        if self.attributes() & COMPRESSION_CODEC_MASK == 0 {
            let available = self.bytes.len() - BATCH_HEADER_LEN;
            if count as usize > available / MIN_RECORD_LEN {
                return Err(RecordError::CountExceedsBytes {
                    count,
                    available,
                    base_offset,
                });
            }
        }
        Ok(())
    }

    /// `baseOffset`: offset of the first record (as assigned by the broker on append).
    pub fn base_offset(&self) -> i64 {
        read_i64(&self.bytes, BASE_OFFSET_AT)
    }
    /// `batchLength`: bytes after the length field.
    pub fn batch_length(&self) -> i32 {
        read_i32(&self.bytes, LENGTH_AT)
    }
    /// `partitionLeaderEpoch`.
    pub fn partition_leader_epoch(&self) -> i32 {
        read_i32(&self.bytes, PARTITION_LEADER_EPOCH_AT)
    }
    /// `magic` (always 2).
    pub fn magic(&self) -> i8 {
        self.bytes[MAGIC_AT] as i8
    }
    /// Stored `crc`.
    pub fn crc(&self) -> u32 {
        read_u32(&self.bytes, CRC_AT)
    }
    /// Raw `attributes`.
    pub fn attributes(&self) -> i16 {
        read_i16(&self.bytes, ATTRIBUTES_AT)
    }
    /// Compression codec; [`RecordError::UnknownCodec`] for ids 5-7.
    pub fn compression(&self) -> Result<Compression, RecordError> {
        let attributes = self.attributes();
        Compression::from_attributes(attributes).ok_or(RecordError::UnknownCodec {
            codec: (attributes & COMPRESSION_CODEC_MASK) as u8,
            base_offset: self.base_offset(),
        })
    }
    /// Timestamp type (attribute bit 3).
    pub fn timestamp_type(&self) -> TimestampType {
        if self.attributes() & TIMESTAMP_TYPE_MASK != 0 {
            TimestampType::LogAppendTime
        } else {
            TimestampType::CreateTime
        }
    }
    /// Transactional bit (attribute bit 4).
    pub fn is_transactional(&self) -> bool {
        self.attributes() & TRANSACTIONAL_FLAG_MASK != 0
    }
    /// Control bit (attribute bit 5): a transaction marker or another control record.
    pub fn is_control(&self) -> bool {
        self.attributes() & CONTROL_FLAG_MASK != 0
    }
    /// Whether `baseTimestamp` holds the delete horizon (attribute bit 6, KIP-534).
    pub fn has_delete_horizon(&self) -> bool {
        self.attributes() & super::DELETE_HORIZON_FLAG_MASK != 0
    }
    /// `lastOffsetDelta` (>= 0).
    pub fn last_offset_delta(&self) -> i32 {
        read_i32(&self.bytes, LAST_OFFSET_DELTA_AT)
    }
    /// `baseTimestamp`.
    pub fn base_timestamp(&self) -> i64 {
        read_i64(&self.bytes, BASE_TIMESTAMP_AT)
    }
    /// `maxTimestamp`.
    pub fn max_timestamp(&self) -> i64 {
        read_i64(&self.bytes, MAX_TIMESTAMP_AT)
    }
    /// A record's timestamp as Kafka reads it (`DefaultRecordBatch`): the batch's
    /// `maxTimestamp` in a `LogAppendTime` batch (the append time), `baseTimestamp` + the
    /// record's delta otherwise. A broker rebuilding a batch writes this value.
    pub fn timestamp_of(&self, record: &super::Record) -> i64 {
        match self.timestamp_type() {
            TimestampType::LogAppendTime => self.max_timestamp(),
            TimestampType::CreateTime => record.timestamp(self.base_timestamp()),
        }
    }
    /// `producerId` (-1 when none).
    pub fn producer_id(&self) -> i64 {
        read_i64(&self.bytes, PRODUCER_ID_AT)
    }
    /// `producerEpoch` (-1 when none).
    pub fn producer_epoch(&self) -> i16 {
        read_i16(&self.bytes, PRODUCER_EPOCH_AT)
    }
    /// `baseSequence` (-1 when none).
    pub fn base_sequence(&self) -> i32 {
        read_i32(&self.bytes, BASE_SEQUENCE_AT)
    }
    /// `recordCount` (>= 0).
    pub fn record_count(&self) -> i32 {
        read_i32(&self.bytes, RECORD_COUNT_AT)
    }
    /// Offset of the last record: `baseOffset + lastOffsetDelta` (wrapping, never panics).
    pub fn last_offset(&self) -> i64 {
        self.base_offset()
            .wrapping_add(i64::from(self.last_offset_delta()))
    }
    /// Offset after this batch: `last_offset() + 1` (wrapping, never panics).
    pub fn next_offset(&self) -> i64 {
        self.last_offset().wrapping_add(1)
    }
    /// Total bytes, including the 12-byte `baseOffset`/`batchLength` prefix.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }
    /// Always false: a batch has at least its header. Present for clippy's `len_without_is_empty`.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
    /// The records section as stored (compressed when a codec is set).
    pub fn records_bytes(&self) -> Bytes {
        self.bytes.slice(BATCH_HEADER_LEN..)
    }
    /// CRC-32C computed over `attributes..end` (what [`crc`](Self::crc) should be).
    pub fn compute_crc(&self) -> u32 {
        crc32c::crc32c(&self.bytes[ATTRIBUTES_AT..])
    }
    /// Checks the stored CRC against the bytes.
    pub fn verify_crc(&self) -> Result<(), RecordError> {
        let expected = self.crc();
        let actual = self.compute_crc();
        if expected == actual {
            Ok(())
        } else {
            Err(RecordError::CrcMismatch {
                expected,
                actual,
                base_offset: self.base_offset(),
            })
        }
    }
    /// The batch bytes.
    pub fn as_bytes(&self) -> &Bytes {
        &self.bytes
    }
    /// The batch bytes.
    pub fn into_bytes(self) -> Bytes {
        self.bytes
    }

    /// Decompresses the records if needed (capped by `limits`) and returns a lazy iterator over
    /// them. Keys, values and headers are slices of the batch (uncompressed) or of the single
    /// decompressed buffer.
    pub fn records(&self, limits: &DecodeLimits) -> Result<Records, RecordError> {
        let codec = self.compression()?;
        let base_offset = self.base_offset();
        let count = self.record_count();
        let data = super::compression::decompress(
            codec,
            self.bytes.slice(BATCH_HEADER_LEN..),
            limits,
            base_offset,
        )?;
        if count as usize > data.len() / MIN_RECORD_LEN {
            return Err(RecordError::CountExceedsBytes {
                count,
                available: data.len(),
                base_offset,
            });
        }
        Ok(Records::new(data, count, base_offset))
    }

    /// For control batches, the type of the control record; `Ok(None)` for data batches and for
    /// control batches left empty by compaction.
    pub fn control_type(&self) -> Result<Option<ControlType>, RecordError> {
        if !self.is_control() {
            return Ok(None);
        }
        // A control record is a few bytes: 1 MiB is ample and bounds a hostile batch.
        let limits = DecodeLimits::default().with_max_decompressed_bytes(CONTROL_DECODE_LIMIT);
        let mut records = self.records(&limits)?;
        let Some(record) = records.next().transpose()? else {
            return Ok(None);
        };
        let base_offset = self.base_offset();
        let invalid = |reason| RecordError::InvalidRecord {
            reason,
            index: 0,
            position: 0,
            base_offset,
        };
        let key = record
            .key
            .ok_or_else(|| invalid("control record has a null key"))?;
        if key.len() < 4 {
            return Err(invalid("control record key shorter than 4 bytes"));
        }
        let version = read_i16(&key, 0);
        if version < 0 {
            return Err(invalid("negative control record key version"));
        }
        Ok(Some(ControlType::from_type_id(read_i16(&key, 2))))
    }

    /// Makes the batch editable in place. No copy when the bytes are uniquely owned
    /// ([`Bytes::try_into_mut`]); a copy otherwise (for example while other batches of the same
    /// fetch response still share the buffer).
    pub fn into_mut(self) -> BatchMut {
        let buf = match self.bytes.try_into_mut() {
            Ok(buf) => buf,
            Err(shared) => BytesMut::from(&shared[..]),
        };
        let original = read_array(&buf, ATTRIBUTES_AT);
        BatchMut {
            buf,
            original,
            dirty: false,
        }
    }

    /// Zero-copy rewrite of the producer id, epoch, base sequence and transactional bit: a
    /// patched copy of the 61-byte header (CRC updated incrementally from the changed bytes, as
    /// [`BatchMut::freeze`] does, so it costs the same for any batch size) and the records as a
    /// slice of this batch, never copied. The copy also carries base offset 0 and partition
    /// leader epoch -1, as a producer sends them (both outside the CRC): Apache Kafka 4
    /// refuses a client batch whose base offset is not 0 (`InvalidRecordException` from
    /// `LogValidator`), and a fetched batch carries its source offset there. When nothing
    /// changes, both parts are slices of this batch.
    ///
    /// The delete-horizon bit (KIP-534, set by a source broker's log cleaner) is cleared: a
    /// producer never sends it, and a target broker keeps it, so its cleaner would drop the
    /// batch's tombstones at its next clean instead of `delete.retention.ms` after they reached
    /// the target. Record timestamps are `baseTimestamp + delta` either way.
    pub fn split_with_producer(
        &self,
        producer_id: i64,
        producer_epoch: i16,
        base_sequence: i32,
        transactional: bool,
    ) -> [Bytes; 2] {
        self.split_for_produce(
            producer_id,
            producer_epoch,
            base_sequence,
            transactional,
            false,
        )
    }

    /// [`split_with_producer`](Self::split_with_producer), optionally also clearing the
    /// LogAppendTime bit: a `LogAppendTime` topic refuses a produced batch that carries it
    /// (`INVALID_TIMESTAMP`, "Producer should not set timestamp type to LogAppendTime") and
    /// stamps its own time once it is cleared.
    pub fn split_for_produce(
        &self,
        producer_id: i64,
        producer_epoch: i16,
        base_sequence: i32,
        transactional: bool,
        clear_log_append_time: bool,
    ) -> [Bytes; 2] {
        let all = &self.bytes;
        let mut head = [0u8; BATCH_HEADER_LEN];
        head.copy_from_slice(&all[..BATCH_HEADER_LEN]);
        head[BASE_OFFSET_AT..BASE_OFFSET_AT + 8].copy_from_slice(&0i64.to_be_bytes());
        head[PARTITION_LEADER_EPOCH_AT..PARTITION_LEADER_EPOCH_AT + 4]
            .copy_from_slice(&(-1i32).to_be_bytes());
        let attributes = read_i16(&head, ATTRIBUTES_AT) & !super::DELETE_HORIZON_FLAG_MASK;
        let attributes = if transactional {
            attributes | TRANSACTIONAL_FLAG_MASK
        } else {
            attributes & !TRANSACTIONAL_FLAG_MASK
        };
        let attributes = if clear_log_append_time {
            attributes & !TIMESTAMP_TYPE_MASK
        } else {
            attributes
        };
        head[ATTRIBUTES_AT..ATTRIBUTES_AT + 2].copy_from_slice(&attributes.to_be_bytes());
        head[PRODUCER_ID_AT..PRODUCER_ID_AT + 8].copy_from_slice(&producer_id.to_be_bytes());
        head[PRODUCER_EPOCH_AT..PRODUCER_EPOCH_AT + 2]
            .copy_from_slice(&producer_epoch.to_be_bytes());
        head[BASE_SEQUENCE_AT..BASE_SEQUENCE_AT + 4].copy_from_slice(&base_sequence.to_be_bytes());
        let mut delta = [0u8; COVERED_HEADER_LEN];
        let mut changed = false;
        for ((d, new), old) in delta
            .iter_mut()
            .zip(&head[COVERED_HEADER])
            .zip(&all[COVERED_HEADER])
        {
            *d = new ^ old;
            changed |= *d != 0;
        }
        if !changed && head[..ATTRIBUTES_AT] == all[..ATTRIBUTES_AT] {
            return [all.slice(..BATCH_HEADER_LEN), all.slice(BATCH_HEADER_LEN..)];
        }
        if changed {
            let crc = read_u32(&head, CRC_AT) ^ crc_of_xor_delta(&delta, all.len() - ATTRIBUTES_AT);
            head[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
        }
        [Bytes::copy_from_slice(&head), all.slice(BATCH_HEADER_LEN..)]
    }

    /// Whether offsets inside the batch are not `0..recordCount`: `lastOffsetDelta + 1 !=
    /// recordCount` (checked without decoding), or an inner `offsetDelta` out of sequence
    /// (decodes the records). Brokers reject such batches from clients (Kafka `LogValidator`),
    /// so a replicator renumbers them with [`renumbered`](Self::renumbered).
    pub fn has_offset_gaps(&self, limits: &DecodeLimits) -> Result<bool, RecordError> {
        let count = self.record_count();
        if i64::from(self.last_offset_delta()) + 1 != i64::from(count) {
            return Ok(true);
        }
        for (expected, record) in (0..count).zip(self.records(limits)?) {
            if record?.offset_delta != expected {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Rebuilds the batch with consecutive offset deltas `0..n` (for batches from compacted
    /// topics), keeping the codec, base offset, partition leader epoch, producer fields,
    /// attributes, `baseTimestamp`, `maxTimestamp` and each record's timestamp, key, value and
    /// headers. [`RecordError::EmptyBatch`] when the batch has no records.
    pub fn renumbered(&self, limits: &DecodeLimits) -> Result<RecordBatch, RecordError> {
        let mut builder = BatchBuilder::new(self.compression()?)
            .base_offset(self.base_offset())
            .partition_leader_epoch(self.partition_leader_epoch())
            .producer(
                self.producer_id(),
                self.producer_epoch(),
                self.base_sequence(),
            )
            .raw_attributes(self.attributes())
            .base_timestamp(self.base_timestamp())
            .max_timestamp(self.max_timestamp());
        let base_timestamp = self.base_timestamp();
        for record in self.records(limits)? {
            builder.push_record(base_timestamp, &record?);
        }
        builder.build().map_err(|e| match e {
            RecordError::EmptyBatch { .. } => RecordError::EmptyBatch {
                base_offset: Some(self.base_offset()),
            },
            other => other,
        })
    }

    /// Wraps bytes produced by the builder (already valid).
    pub(crate) fn from_built(bytes: Bytes) -> RecordBatch {
        debug_assert!(RecordBatch::parse(bytes.clone()).is_ok());
        RecordBatch { bytes }
    }
}

/// Checks the 17-byte prefix of a batch starting at `position` of `bytes` (for errors): magic,
/// and that `batchLength` covers at least the v2 header.
pub(crate) fn check_prefix(bytes: &[u8], position: usize) -> Result<(), RecordError> {
    let base_offset = (bytes.len() >= 8).then(|| read_i64(bytes, BASE_OFFSET_AT));
    if bytes.len() <= MAGIC_AT {
        return Err(RecordError::Truncated {
            what: "record batch header",
            position,
            needed: BATCH_HEADER_LEN,
            available: bytes.len(),
            base_offset,
        });
    }
    let base_offset = read_i64(bytes, BASE_OFFSET_AT);
    let magic = bytes[MAGIC_AT] as i8;
    if magic != MAGIC_V2 {
        return Err(RecordError::UnsupportedMagic { magic, base_offset });
    }
    let batch_length = read_i32(bytes, LENGTH_AT);
    if batch_length < MIN_BATCH_LENGTH {
        return Err(RecordError::BadLength {
            batch_length,
            reason: "smaller than the v2 batch header",
            base_offset,
            position,
        });
    }
    Ok(())
}

/// A batch being edited in place: the bytes plus a snapshot of the CRC-covered header, so that
/// [`freeze`](Self::freeze) knows whether (and how) the CRC must change.
#[derive(Debug)]
pub struct BatchMut {
    buf: BytesMut,
    /// `attributes..recordCount` as they were when the CRC was last valid for the body.
    original: [u8; COVERED_HEADER_LEN],
    /// A CRC-covered field was written (maybe with its old value).
    dirty: bool,
}

impl BatchMut {
    /// Sets `baseOffset` (outside the CRC: no recompute).
    pub fn set_base_offset(&mut self, v: i64) {
        self.buf[BASE_OFFSET_AT..BASE_OFFSET_AT + 8].copy_from_slice(&v.to_be_bytes());
    }

    /// Sets `partitionLeaderEpoch` (outside the CRC: no recompute).
    pub fn set_partition_leader_epoch(&mut self, v: i32) {
        self.buf[PARTITION_LEADER_EPOCH_AT..PARTITION_LEADER_EPOCH_AT + 4]
            .copy_from_slice(&v.to_be_bytes());
    }

    /// Sets `producerId`, `producerEpoch` and `baseSequence` (CRC-covered). Use `(-1, -1, -1)`
    /// for a batch without idempotence.
    pub fn set_producer(&mut self, producer_id: i64, producer_epoch: i16, base_sequence: i32) {
        self.write_covered(PRODUCER_ID_AT, &producer_id.to_be_bytes());
        self.write_covered(PRODUCER_EPOCH_AT, &producer_epoch.to_be_bytes());
        self.write_covered(BASE_SEQUENCE_AT, &base_sequence.to_be_bytes());
    }

    /// Sets or clears the transactional attribute bit (CRC-covered).
    pub fn set_transactional(&mut self, on: bool) {
        let attributes = read_i16(&self.buf, ATTRIBUTES_AT);
        let attributes = if on {
            attributes | TRANSACTIONAL_FLAG_MASK
        } else {
            attributes & !TRANSACTIONAL_FLAG_MASK
        };
        self.write_covered(ATTRIBUTES_AT, &attributes.to_be_bytes());
    }

    fn write_covered(&mut self, at: usize, value: &[u8]) {
        let field = &mut self.buf[at..at + value.len()];
        if field != value {
            field.copy_from_slice(value);
            self.dirty = true;
        }
    }

    /// Finishes editing. The CRC is updated only if a CRC-covered header byte actually differs
    /// from before; the update is incremental (see the module docs), so a batch whose CRC was
    /// valid stays valid and one whose CRC was wrong stays wrong.
    pub fn freeze(mut self) -> RecordBatch {
        if self.dirty {
            let mut delta = [0u8; COVERED_HEADER_LEN];
            let mut changed = false;
            for ((d, new), old) in delta
                .iter_mut()
                .zip(&self.buf[COVERED_HEADER])
                .zip(&self.original)
            {
                *d = new ^ old;
                changed |= *d != 0;
            }
            if changed {
                let covered_len = self.buf.len() - ATTRIBUTES_AT;
                let crc = read_u32(&self.buf, CRC_AT) ^ crc_of_xor_delta(&delta, covered_len);
                self.buf[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
            }
        }
        RecordBatch {
            bytes: self.buf.freeze(),
        }
    }
}

/// `crc(A) ^ crc(B)` for two messages of `total_len` bytes that differ only in their first
/// `delta.len()` bytes by `delta` (`A ^ B` = `delta` followed by zeros).
///
/// CRC-32C (with its init and final xor) is affine: `crc(A ^ B) = crc(A) ^ crc(B) ^ crc(0^n)`,
/// so `crc(A) ^ crc(B) = crc(D) ^ crc(0^n)` with `D = delta ‖ 0^(n-k)`. Appending `m` zero bytes
/// maps the register linearly (multiplication by `x^(8m)` modulo the polynomial), and that part
/// cancels between `D` and `0^n` except for the prefix difference.
fn crc_of_xor_delta(delta: &[u8], total_len: usize) -> u32 {
    const ZEROS: [u8; COVERED_HEADER_LEN] = [0; COVERED_HEADER_LEN];
    let prefix_diff = crc32c::crc32c(delta) ^ crc32c::crc32c(&ZEROS[..delta.len()]);
    crc_shift(prefix_diff, total_len - delta.len())
}

/// Reflected CRC-32C polynomial.
const POLY: u32 = 0x82f6_3b78;

/// `a * b mod P` in the reflected bit order used by CRC-32C (zlib's `multmodp`).
const fn multmodp(a: u32, mut b: u32) -> u32 {
    let mut m: u32 = 1 << 31;
    let mut p: u32 = 0;
    while m != 0 {
        if a & m != 0 {
            p ^= b;
        }
        b = if b & 1 != 0 { (b >> 1) ^ POLY } else { b >> 1 };
        m >>= 1;
    }
    p
}

/// `X2N[k] = x^(2^k) mod P`.
const X2N: [u32; 32] = {
    let mut table = [0u32; 32];
    let mut p: u32 = 1 << 30; // x^1
    table[0] = p;
    let mut n = 1;
    while n < 32 {
        p = multmodp(p, p);
        table[n] = p;
        n += 1;
    }
    table
};

/// The register after feeding `zero_bytes` zero bytes, without init/final xor: `crc * x^(8n)`.
fn crc_shift(crc: u32, zero_bytes: usize) -> u32 {
    let mut p: u32 = 1 << 31; // x^0
    let mut n = zero_bytes as u64;
    let mut k = 3; // 2^3 bits per byte
    while n != 0 {
        if n & 1 != 0 {
            p = multmodp(X2N[k & 31], p);
        }
        n >>= 1;
        k += 1;
    }
    multmodp(p, crc)
}

#[cfg(test)]
mod crc_tests {
    use super::*;

    #[test]
    fn shift_matches_appending_zeros() {
        // crc32c(data ‖ 0^n) = crc_shift(crc32c(data) ^ crc32c(0^?)...) is awkward; check the
        // linear part directly: crc(A) ^ crc(B) for equal-length A, B equals the shifted
        // prefix difference.
        for n in [0usize, 1, 7, 40, 1000, 65_537] {
            let mut a = vec![0u8; 40 + n];
            let mut b = vec![0u8; 40 + n];
            for (i, x) in a.iter_mut().enumerate() {
                *x = (i * 31 + 7) as u8;
            }
            b.copy_from_slice(&a);
            b[0] ^= 0x5a;
            b[39] ^= 0x01;
            b[17] ^= 0xff;
            let mut delta = [0u8; 40];
            for i in 0..40 {
                delta[i] = a[i] ^ b[i];
            }
            assert_eq!(
                crc32c::crc32c(&a) ^ crc32c::crc32c(&b),
                crc_of_xor_delta(&delta, 40 + n),
                "n = {n}"
            );
        }
    }
}
