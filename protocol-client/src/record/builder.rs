//! Building v2 record batches (Kafka `MemoryRecordsBuilder`).

use bytes::Bytes;

use super::batch::*;
use super::varint::{varint_len, varlong_len, write_varint, write_varlong};
use super::{
    Compression, RawRecord, Record, RecordBatch, RecordError, RecordHeader, TimestampType,
    BATCH_HEADER_LEN, COMPRESSION_CODEC_MASK, CONTROL_FLAG_MASK, LOG_OVERHEAD, MAGIC_V2,
    TIMESTAMP_TYPE_MASK, TRANSACTIONAL_FLAG_MASK,
};

/// Builds one v2 batch. Records are encoded as they are pushed; [`build`](Self::build)
/// compresses them as one block and writes the header and CRC.
///
/// Defaults: base offset 0, partition leader epoch -1, no producer (-1, -1, -1),
/// `CreateTime`, not transactional, `baseTimestamp` = the first record's timestamp,
/// `maxTimestamp` = the largest record timestamp.
#[derive(Debug)]
pub struct BatchBuilder {
    compression: Compression,
    base_offset: i64,
    partition_leader_epoch: i32,
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
    /// Attribute bits other than the codec.
    attributes: i16,
    base_timestamp: Option<i64>,
    max_timestamp_override: Option<i64>,
    max_timestamp: i64,
    /// `BATCH_HEADER_LEN` placeholder bytes, then the encoded records (uncompressed).
    buf: Vec<u8>,
    count: u64,
    /// Offset delta of the next [`push`](Self::push).
    next_offset_delta: i64,
    /// Largest key, value or header length above `i32::MAX` seen (such a batch cannot be built).
    oversized: Option<u64>,
}

impl BatchBuilder {
    /// A builder writing records compressed with `compression`.
    pub fn new(compression: Compression) -> Self {
        BatchBuilder {
            compression,
            base_offset: 0,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
            attributes: 0,
            base_timestamp: None,
            max_timestamp_override: None,
            max_timestamp: i64::MIN,
            buf: vec![0; BATCH_HEADER_LEN],
            count: 0,
            next_offset_delta: 0,
            oversized: None,
        }
    }

    /// A builder whose records' buffer has room for `bytes` (header included) from the start,
    /// taken from the buffer pool ([`crate::bufpool`]): a batch of known size is encoded
    /// without reallocating and without faulting in fresh pages.
    pub fn with_capacity(compression: Compression, bytes: usize) -> Self {
        let mut buf = crate::bufpool::GLOBAL.take(bytes.max(BATCH_HEADER_LEN));
        buf.resize(BATCH_HEADER_LEN, 0);
        BatchBuilder {
            buf,
            ..BatchBuilder::new(compression)
        }
    }

    /// Sets `baseOffset` (brokers overwrite it on append).
    pub fn base_offset(mut self, v: i64) -> Self {
        self.base_offset = v;
        self
    }

    /// Sets `producerId`, `producerEpoch` and `baseSequence`.
    pub fn producer(mut self, id: i64, epoch: i16, base_sequence: i32) -> Self {
        self.producer_id = id;
        self.producer_epoch = epoch;
        self.base_sequence = base_sequence;
        self
    }

    /// Sets the transactional bit.
    pub fn transactional(mut self, on: bool) -> Self {
        self.set_flag(TRANSACTIONAL_FLAG_MASK, on);
        self
    }

    /// Sets the control bit (transaction markers; see [`ControlType`](super::ControlType)).
    pub fn control(mut self, on: bool) -> Self {
        self.set_flag(CONTROL_FLAG_MASK, on);
        self
    }

    /// Sets the timestamp type bit.
    pub fn timestamp_type(mut self, t: TimestampType) -> Self {
        self.set_flag(TIMESTAMP_TYPE_MASK, t == TimestampType::LogAppendTime);
        self
    }

    /// Sets `partitionLeaderEpoch` (brokers overwrite it on append).
    pub fn partition_leader_epoch(mut self, v: i32) -> Self {
        self.partition_leader_epoch = v;
        self
    }

    /// Fixes `baseTimestamp` instead of taking the first record's timestamp. Must be called
    /// before the first push (it defines the deltas); later calls are ignored.
    pub fn base_timestamp(mut self, v: i64) -> Self {
        if self.count == 0 {
            self.base_timestamp = Some(v);
        }
        self
    }

    /// Writes `maxTimestamp` as given instead of the largest record timestamp (a
    /// `LogAppendTime` batch holds the append time there).
    pub fn max_timestamp(mut self, v: i64) -> Self {
        self.max_timestamp_override = Some(v);
        self
    }

    /// Takes every attribute bit except the codec from `attributes` (used when rebuilding a
    /// batch, to keep bits such as the delete horizon flag).
    pub(crate) fn raw_attributes(mut self, attributes: i16) -> Self {
        self.attributes = attributes & !COMPRESSION_CODEC_MASK;
        self
    }

    fn set_flag(&mut self, mask: i16, on: bool) {
        if on {
            self.attributes |= mask;
        } else {
            self.attributes &= !mask;
        }
    }

    /// Appends a record at the next consecutive offset delta.
    pub fn push(
        &mut self,
        timestamp: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[RecordHeader],
    ) {
        let offset_delta = self.next_offset_delta;
        self.encode(0, timestamp, offset_delta, key, value, headers);
    }

    /// Appends `record` at the next consecutive offset delta, keeping its attributes and its
    /// absolute timestamp `base_timestamp + record.timestamp_delta` (pass the source batch's
    /// `baseTimestamp`). Its `offset_delta` is ignored.
    pub fn push_record(&mut self, base_timestamp: i64, record: &Record) {
        let offset_delta = self.next_offset_delta;
        self.push_full(base_timestamp, record, offset_delta);
    }

    /// Appends `record` keeping its `offset_delta`, which must be above the previous record's:
    /// this builds batches with offset gaps, as log compaction leaves them. Later
    /// [`push`](Self::push)es continue after it.
    pub fn push_record_with_offset_delta(
        &mut self,
        base_timestamp: i64,
        record: &Record,
    ) -> Result<(), RecordError> {
        let offset_delta = i64::from(record.offset_delta);
        if offset_delta < self.next_offset_delta {
            return Err(RecordError::OffsetDeltaNotIncreasing {
                previous: self.next_offset_delta - 1,
                offset_delta: record.offset_delta,
            });
        }
        self.push_full(base_timestamp, record, offset_delta);
        Ok(())
    }

    /// Appends a record located by [`Records::next_raw`](super::Records::next_raw) in `data`
    /// (that iterator's [`data`](super::Records::data)), renumbered as the next offset: its
    /// key, value and headers are copied as encoded. For varints in their shortest form (what
    /// Kafka's clients write) the result is byte for byte what
    /// [`push_record`](Self::push_record) writes for the decoded record; padded varints are
    /// kept as they came (the same records either way).
    pub fn push_raw(&mut self, base_timestamp: i64, raw: &RawRecord, data: &[u8]) {
        let timestamp = base_timestamp.wrapping_add(raw.timestamp_delta);
        let (timestamp_delta, offset_delta_i32) =
            self.count_record(timestamp, self.next_offset_delta);
        let rest = &data[raw.rest.clone()];
        let body_len = 1 + varlong_len(timestamp_delta) + varint_len(offset_delta_i32) + rest.len();
        let buf = &mut self.buf;
        buf.reserve(body_len + 5);
        write_varint(buf, len_i32(body_len));
        buf.push(raw.attributes as u8);
        write_varlong(buf, timestamp_delta);
        write_varint(buf, offset_delta_i32);
        buf.extend_from_slice(rest);
    }

    fn push_full(&mut self, base_timestamp: i64, record: &Record, offset_delta: i64) {
        self.encode(
            record.attributes,
            record.timestamp(base_timestamp),
            offset_delta,
            record.key.as_deref(),
            record.value.as_deref(),
            &record.headers,
        );
    }

    /// Counts a record of `timestamp` at `offset_delta` (timestamps, next offset, count) and
    /// returns the deltas to encode it with.
    fn count_record(&mut self, timestamp: i64, offset_delta: i64) -> (i64, i32) {
        let base_timestamp = *self.base_timestamp.get_or_insert(timestamp);
        self.max_timestamp = self.max_timestamp.max(timestamp);
        self.next_offset_delta = offset_delta.saturating_add(1);
        self.count += 1;
        // Deltas beyond i32 make build() fail; encode a placeholder meanwhile.
        (
            timestamp.wrapping_sub(base_timestamp),
            i32::try_from(offset_delta).unwrap_or(i32::MAX),
        )
    }

    fn encode(
        &mut self,
        attributes: i8,
        timestamp: i64,
        offset_delta: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[RecordHeader],
    ) {
        let (timestamp_delta, offset_delta_i32) = self.count_record(timestamp, offset_delta);

        for len in [
            key.map_or(0, <[u8]>::len),
            value.map_or(0, <[u8]>::len),
            headers.len(),
        ]
        .into_iter()
        .chain(
            headers
                .iter()
                .flat_map(|h| [h.key.len(), h.value.as_ref().map_or(0, Bytes::len)]),
        ) {
            if i32::try_from(len).is_err() {
                self.oversized = Some(self.oversized.unwrap_or(0).max(len as u64));
            }
        }
        let body_len = 1
            + varlong_len(timestamp_delta)
            + varint_len(offset_delta_i32)
            + nullable_len(key)
            + nullable_len(value)
            + varint_len(len_i32(headers.len()))
            + headers
                .iter()
                .map(|h| nullable_len(Some(&h.key)) + nullable_len(h.value.as_deref()))
                .sum::<usize>();
        let buf = &mut self.buf;
        buf.reserve(body_len + 5);
        write_varint(buf, len_i32(body_len));
        buf.push(attributes as u8);
        write_varlong(buf, timestamp_delta);
        write_varint(buf, offset_delta_i32);
        write_nullable(buf, key);
        write_nullable(buf, value);
        write_varint(buf, len_i32(headers.len()));
        for h in headers {
            write_nullable(buf, Some(&h.key));
            write_nullable(buf, h.value.as_deref());
        }
    }

    /// Number of records pushed.
    pub fn len(&self) -> usize {
        self.count as usize
    }

    /// No record pushed yet.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Size of the batch if built uncompressed (an upper bound for compressed batches, apart
    /// from incompressible data's few bytes of framing).
    pub fn estimated_size(&self) -> usize {
        self.buf.len()
    }

    /// Encodes the batch: compresses the records, writes the header and the CRC-32C.
    /// [`RecordError::EmptyBatch`] if no record was pushed.
    pub fn build(self) -> Result<RecordBatch, RecordError> {
        if self.count == 0 {
            return Err(RecordError::EmptyBatch { base_offset: None });
        }
        if let Some(value) = self.oversized {
            return Err(RecordError::BatchTooLarge {
                what: "key, value or header length",
                value,
            });
        }
        let record_count = i32::try_from(self.count).map_err(|_| RecordError::BatchTooLarge {
            what: "recordCount",
            value: self.count,
        })?;
        let last_offset_delta =
            i32::try_from(self.next_offset_delta - 1).map_err(|_| RecordError::BatchTooLarge {
                what: "lastOffsetDelta",
                value: (self.next_offset_delta - 1) as u64,
            })?;
        let mut buf = if self.compression == Compression::None {
            self.buf
        } else {
            let records = &self.buf[BATCH_HEADER_LEN..];
            let mut out = Vec::with_capacity(BATCH_HEADER_LEN + records.len() / 2 + 64);
            out.resize(BATCH_HEADER_LEN, 0);
            super::compression::compress(self.compression, records, &mut out)?;
            out
        };
        let batch_length =
            i32::try_from(buf.len() - LOG_OVERHEAD).map_err(|_| RecordError::BatchTooLarge {
                what: "batchLength",
                value: (buf.len() - LOG_OVERHEAD) as u64,
            })?;
        let base_timestamp = self.base_timestamp.unwrap_or(-1);
        let max_timestamp = self.max_timestamp_override.unwrap_or(self.max_timestamp);
        let attributes = self.attributes | self.compression.attribute_bits();

        let h = &mut buf[..BATCH_HEADER_LEN];
        h[BASE_OFFSET_AT..][..8].copy_from_slice(&self.base_offset.to_be_bytes());
        h[LENGTH_AT..][..4].copy_from_slice(&batch_length.to_be_bytes());
        h[PARTITION_LEADER_EPOCH_AT..][..4]
            .copy_from_slice(&self.partition_leader_epoch.to_be_bytes());
        h[MAGIC_AT] = MAGIC_V2 as u8;
        h[ATTRIBUTES_AT..][..2].copy_from_slice(&attributes.to_be_bytes());
        h[LAST_OFFSET_DELTA_AT..][..4].copy_from_slice(&last_offset_delta.to_be_bytes());
        h[BASE_TIMESTAMP_AT..][..8].copy_from_slice(&base_timestamp.to_be_bytes());
        h[MAX_TIMESTAMP_AT..][..8].copy_from_slice(&max_timestamp.to_be_bytes());
        h[PRODUCER_ID_AT..][..8].copy_from_slice(&self.producer_id.to_be_bytes());
        h[PRODUCER_EPOCH_AT..][..2].copy_from_slice(&self.producer_epoch.to_be_bytes());
        h[BASE_SEQUENCE_AT..][..4].copy_from_slice(&self.base_sequence.to_be_bytes());
        h[RECORD_COUNT_AT..][..4].copy_from_slice(&record_count.to_be_bytes());
        let crc = crc32c::crc32c(&buf[ATTRIBUTES_AT..]);
        buf[CRC_AT..][..4].copy_from_slice(&crc.to_be_bytes());
        Ok(RecordBatch::from_built(crate::bufpool::GLOBAL.freeze(buf)))
    }
}

/// Lengths above i32::MAX cannot be encoded; they saturate, and the batch then fails to build
/// or parse (a single record that large exceeds any broker limit anyway).
fn len_i32(len: usize) -> i32 {
    i32::try_from(len).unwrap_or(i32::MAX)
}

fn nullable_len(bytes: Option<&[u8]>) -> usize {
    match bytes {
        None => varint_len(-1),
        Some(b) => varint_len(len_i32(b.len())) + b.len(),
    }
}

fn write_nullable(buf: &mut Vec<u8>, bytes: Option<&[u8]>) {
    match bytes {
        None => write_varint(buf, -1),
        Some(b) => {
            write_varint(buf, len_i32(b.len()));
            buf.extend_from_slice(b);
        }
    }
}
