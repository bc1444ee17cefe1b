//! Decoded records (Kafka `DefaultRecord`) and their lazy iterator.

use bytes::Bytes;

use super::varint::{read_varint, read_varlong, VarintError};
use super::RecordError;

/// Smallest encoded record: length, attributes, timestamp delta, offset delta, key length,
/// value length and header count, one byte each.
pub(crate) const MIN_RECORD_LEN: usize = 7;
/// Smallest encoded header: key length and value length.
const MIN_HEADER_LEN: usize = 2;

/// Limits applied while decoding records.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Largest decompressed records section accepted; larger is
    /// [`RecordError::DecompressedTooLarge`]. Default 64 MiB.
    pub max_decompressed_bytes: usize,
    /// Largest zstd window (log2 bytes) a frame may ask for; zstd allocates the window before
    /// producing output. Default 27 (128 MiB), zstd's own default maximum, which every level
    /// Kafka clients can configure stays within.
    pub max_zstd_window_log: u32,
}

impl DecodeLimits {
    /// Ratio of the derived decompression cap to `max.message.bytes`.
    pub const DECOMPRESSION_RATIO: usize = 64;
    /// Floor of the derived decompression cap.
    pub const MIN_DECOMPRESSED_BYTES: usize = 16 << 20;

    /// Limits for a topic or fetch bounded by `max_message_bytes` (compressed): the cap is
    /// `max(max_message_bytes * 64, 16 MiB)`. 64x leaves room for very repetitive payloads
    /// (JSON logs compress 10-20x) while bounding memory per batch.
    pub fn for_max_message_bytes(max_message_bytes: usize) -> DecodeLimits {
        DecodeLimits {
            max_decompressed_bytes: max_message_bytes
                .saturating_mul(Self::DECOMPRESSION_RATIO)
                .max(Self::MIN_DECOMPRESSED_BYTES),
            ..DecodeLimits::default()
        }
    }

    /// These limits with another decompression cap.
    pub fn with_max_decompressed_bytes(mut self, max: usize) -> DecodeLimits {
        self.max_decompressed_bytes = max;
        self
    }
}

impl Default for DecodeLimits {
    /// 64 MiB decompressed (what [`for_max_message_bytes`](Self::for_max_message_bytes) derives
    /// from Kafka's default `max.message.bytes` of 1 MiB), zstd window log 27.
    fn default() -> Self {
        DecodeLimits {
            max_decompressed_bytes: 64 << 20,
            max_zstd_window_log: 27,
        }
    }
}

/// One record of a batch. Offsets and timestamps are deltas from the batch's `baseOffset` and
/// `baseTimestamp`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// Record attributes (unused by Kafka so far, kept as found).
    pub attributes: i8,
    /// Timestamp minus the batch's `baseTimestamp`.
    pub timestamp_delta: i64,
    /// Offset minus the batch's `baseOffset`.
    pub offset_delta: i32,
    /// Key; `None` is a null key.
    pub key: Option<Bytes>,
    /// Value; `None` is a null value (a tombstone on compacted topics).
    pub value: Option<Bytes>,
    /// Headers in order.
    pub headers: Vec<RecordHeader>,
}

impl Record {
    /// Absolute timestamp given the batch's `baseTimestamp` (wrapping like Java's `long`).
    pub fn timestamp(&self, base_timestamp: i64) -> i64 {
        base_timestamp.wrapping_add(self.timestamp_delta)
    }

    /// Absolute offset given the batch's `baseOffset` (wrapping like Java's `long`).
    pub fn offset(&self, base_offset: i64) -> i64 {
        base_offset.wrapping_add(i64::from(self.offset_delta))
    }
}

/// A record header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordHeader {
    /// Key bytes; UTF-8 by contract, kept raw (see the module docs).
    pub key: Bytes,
    /// Value; `None` is a null value.
    pub value: Option<Bytes>,
}

impl RecordHeader {
    /// A header from a string key.
    pub fn new(key: &str, value: Option<&[u8]>) -> RecordHeader {
        RecordHeader {
            key: Bytes::copy_from_slice(key.as_bytes()),
            value: value.map(Bytes::copy_from_slice),
        }
    }

    /// The key as UTF-8.
    pub fn key_str(&self) -> Result<&str, std::str::Utf8Error> {
        std::str::from_utf8(&self.key)
    }
}

/// Lazy iterator over the records of a batch, from [`RecordBatch::records`](super::RecordBatch::records).
///
/// Yields exactly `recordCount` records, then an error if bytes remain
/// ([`RecordError::TrailingBytes`]); after any error it is finished.
#[derive(Debug)]
pub struct Records {
    data: Bytes,
    position: usize,
    index: i32,
    count: i32,
    base_offset: i64,
    done: bool,
}

impl Records {
    pub(crate) fn new(data: Bytes, count: i32, base_offset: i64) -> Records {
        Records {
            data,
            position: 0,
            index: 0,
            count,
            base_offset,
            done: false,
        }
    }

    /// The (decompressed) records section being iterated.
    pub fn data(&self) -> &Bytes {
        &self.data
    }

    fn invalid(&self, reason: &'static str, position: usize) -> RecordError {
        RecordError::InvalidRecord {
            reason,
            index: self.index,
            position,
            base_offset: self.base_offset,
        }
    }

    fn varint_error(&self, e: VarintError, position: usize, what: &'static str) -> RecordError {
        match e {
            VarintError::Overflow => RecordError::VarintOverflow {
                position,
                base_offset: self.base_offset,
            },
            VarintError::Truncated => self.invalid(what, position),
        }
    }

    /// Where the record at `position` ends, and where its fields start (after its length).
    fn record_bounds(&self) -> Result<(usize, usize), RecordError> {
        let start = self.position;
        let mut pos = start;
        let len = read_varint(&self.data, &mut pos)
            .map_err(|e| self.varint_error(e, start, "truncated record length"))?;
        let len =
            usize::try_from(len).map_err(|_| self.invalid("negative record length", start))?;
        let body_start = pos;
        if len > self.data.len() - body_start {
            return Err(self.invalid("record length exceeds the remaining bytes", start));
        }
        Ok((body_start + len, body_start))
    }

    /// Attributes, timestamp delta and offset delta.
    fn deltas(&self, body: &[u8], pos: &mut usize) -> Result<(u8, i64, i32), RecordError> {
        let Some(&attributes) = body.get(*pos) else {
            return Err(self.invalid("record too short for its attributes", *pos));
        };
        *pos += 1;
        let at = *pos;
        let timestamp_delta = read_varlong(body, pos)
            .map_err(|e| self.varint_error(e, at, "record ended inside timestampDelta"))?;
        let at = *pos;
        let offset_delta = read_varint(body, pos)
            .map_err(|e| self.varint_error(e, at, "record ended inside offsetDelta"))?;
        Ok((attributes, timestamp_delta, offset_delta))
    }

    fn header_count(&self, body: &[u8], pos: &mut usize, end: usize) -> Result<usize, RecordError> {
        let at = *pos;
        let header_count = read_varint(body, pos)
            .map_err(|e| self.varint_error(e, at, "record ended inside the header count"))?;
        let header_count =
            usize::try_from(header_count).map_err(|_| self.invalid("negative header count", at))?;
        if header_count > (end - *pos) / MIN_HEADER_LEN {
            return Err(self.invalid("header count exceeds the record's bytes", at));
        }
        Ok(header_count)
    }

    fn next_record(&mut self) -> Result<Record, RecordError> {
        // Parse within the record's own bytes, so nothing can run into the next record.
        let (end, mut pos) = self.record_bounds()?;
        let body = &self.data[..end];
        let (attributes, timestamp_delta, offset_delta) = self.deltas(body, &mut pos)?;
        let key = self.read_nullable_bytes(body, &mut pos, "key")?;
        let value = self.read_nullable_bytes(body, &mut pos, "value")?;
        let header_count = self.header_count(body, &mut pos, end)?;
        let mut headers = Vec::with_capacity(header_count);
        for _ in 0..header_count {
            let at = pos;
            let key = self
                .read_nullable_bytes(body, &mut pos, "header key")?
                .ok_or_else(|| self.invalid("null header key", at))?;
            let value = self.read_nullable_bytes(body, &mut pos, "header value")?;
            headers.push(RecordHeader { key, value });
        }
        if pos != end {
            return Err(self.invalid(
                "record length does not match its fields (bytes left over)",
                pos,
            ));
        }
        self.position = end;
        Ok(Record {
            attributes: attributes as i8,
            timestamp_delta,
            offset_delta,
            key,
            value,
            headers,
        })
    }

    /// Reads a varint length (-1 = null) and that many bytes, as a slice of `data`.
    fn read_nullable_bytes(
        &self,
        body: &[u8],
        pos: &mut usize,
        what: &'static str,
    ) -> Result<Option<Bytes>, RecordError> {
        Ok(self
            .nullable_range(body, pos, what)?
            .map(|r| self.data.slice(r)))
    }

    /// Reads a varint length (-1 = null) and steps over that many bytes: their range in `data`.
    fn nullable_range(
        &self,
        body: &[u8],
        pos: &mut usize,
        what: &'static str,
    ) -> Result<Option<std::ops::Range<usize>>, RecordError> {
        let at = *pos;
        let len = read_varint(body, pos).map_err(|e| {
            self.varint_error(
                e,
                at,
                match what {
                    "key" => "record ended inside the key length",
                    "value" => "record ended inside the value length",
                    "header key" => "record ended inside a header key length",
                    _ => "record ended inside a header value length",
                },
            )
        })?;
        if len == -1 {
            return Ok(None);
        }
        let len = usize::try_from(len).map_err(|_| {
            self.invalid(
                match what {
                    "key" => "key length below -1",
                    "value" => "value length below -1",
                    "header key" => "negative header key length",
                    _ => "header value length below -1",
                },
                at,
            )
        })?;
        if len > body.len() - *pos {
            return Err(self.invalid(
                match what {
                    "key" => "key longer than the record",
                    "value" => "value longer than the record",
                    "header key" => "header key longer than the record",
                    _ => "header value longer than the record",
                },
                at,
            ));
        }
        let range = *pos..*pos + len;
        *pos += len;
        Ok(Some(range))
    }

    /// The next record without decoding it into a [`Record`]: its attributes, deltas and the
    /// range of its encoded key, value and headers in [`data`](Self::data), which are checked
    /// exactly as [`Iterator::next`] checks them (and give the same errors) but not sliced. For
    /// copying records into another batch ([`BatchBuilder::push_raw`](super::BatchBuilder::push_raw))
    /// without a reference count per field. Same end as the iterator: `None` after
    /// `recordCount` records, after a [`RecordError::TrailingBytes`] or any other error.
    pub fn next_raw(&mut self) -> Option<Result<RawRecord, RecordError>> {
        self.step(Self::next_raw_record)
    }

    /// One step of either iteration: `read` the next record, or end after `recordCount`
    /// records (with [`RecordError::TrailingBytes`] if bytes are left) or after an error.
    fn step<T>(
        &mut self,
        read: impl FnOnce(&mut Self) -> Result<T, RecordError>,
    ) -> Option<Result<T, RecordError>> {
        if self.done {
            return None;
        }
        if self.index >= self.count {
            self.done = true;
            let trailing = self.data.len() - self.position;
            return (trailing != 0).then_some(Err(RecordError::TrailingBytes {
                trailing,
                count: self.count,
                base_offset: self.base_offset,
            }));
        }
        match read(self) {
            Ok(record) => {
                self.index += 1;
                Some(Ok(record))
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }

    fn next_raw_record(&mut self) -> Result<RawRecord, RecordError> {
        let (end, mut pos) = self.record_bounds()?;
        let body = &self.data[..end];
        let (attributes, timestamp_delta, offset_delta) = self.deltas(body, &mut pos)?;
        let rest = pos;
        self.nullable_range(body, &mut pos, "key")?;
        self.nullable_range(body, &mut pos, "value")?;
        let header_count = self.header_count(body, &mut pos, end)?;
        for _ in 0..header_count {
            let at = pos;
            self.nullable_range(body, &mut pos, "header key")?
                .ok_or_else(|| self.invalid("null header key", at))?;
            self.nullable_range(body, &mut pos, "header value")?;
        }
        if pos != end {
            return Err(self.invalid(
                "record length does not match its fields (bytes left over)",
                pos,
            ));
        }
        self.position = end;
        Ok(RawRecord {
            attributes: attributes as i8,
            timestamp_delta,
            offset_delta,
            rest: rest..end,
        })
    }
}

/// A record located but not decoded, from [`Records::next_raw`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawRecord {
    /// Record attributes (unused by Kafka today).
    pub attributes: i8,
    /// Timestamp relative to the batch's base timestamp.
    pub timestamp_delta: i64,
    /// Offset relative to the batch's base offset.
    pub offset_delta: i32,
    /// The encoded key, value and headers (their length varints included), as a range of
    /// [`Records::data`].
    pub rest: std::ops::Range<usize>,
}

impl Iterator for Records {
    type Item = Result<Record, RecordError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.step(Self::next_record)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        if self.done {
            (0, Some(0))
        } else {
            // +1 for a possible trailing-bytes error.
            (0, Some((self.count - self.index) as usize + 1))
        }
    }
}

impl std::iter::FusedIterator for Records {}
