//! MirrorMaker 2's internal record formats, byte for byte, plus Strait's own durable
//! offset-map records.
//!
//! MM2 writes its internal records with Kafka's `Struct`/`Schema` encoding
//! (`org.apache.kafka.common.protocol.types`): big-endian fixed-width integers and
//! `STRING` = int16 length + UTF-8 bytes (never null, at most 32767 bytes).
//!
//! | record | key | value | Java |
//! |---|---|---|---|
//! | [`OffsetSync`] | `topic` STRING, `partition` INT32 | `upstreamOffset` INT64, `offset` INT64 (no version) | `connect/mirror/.../OffsetSync.java` |
//! | [`Checkpoint`] | `group` STRING, `topic` STRING, `partition` INT32 | `version` INT16 = 0, `upstreamOffset` INT64, `offset` INT64, `metadata` STRING | `connect/mirror-client/.../Checkpoint.java` |
//! | [`Heartbeat`] | `sourceClusterAlias` STRING, `targetClusterAlias` STRING | `version` INT16 = 0, `timestamp` INT64 | `connect/mirror-client/.../Heartbeat.java` |
//!
//! Decoding follows what the Java deserializers do in production (JVM assertions off):
//! truncated input and negative string lengths are errors; bytes after the last field
//! are ignored (`Schema.read` does not check for them); a value's `version` header is read
//! and the v0 layout is applied to any non-negative version (`valueSchema(version)` only
//! `assert`s `version == 0`, and Kafka's schemas evolve by appending fields). A negative
//! version is rejected as [`FormatError::UnsupportedVersion`].
//!
//! Source progress ([`SourceProgressKey`], topic `mm2-offsets.<source>.internal`) is Kafka
//! Connect's offset storage written through `JsonConverter` with schemas disabled:
//! key `["MirrorSourceConnector",{"cluster":"A","partition":0,"topic":"t"}]`, value
//! `{"offset":N}` where N is the last replicated upstream offset (resume at N + 1;
//! `MirrorUtils.wrapPartition`/`wrapOffset`, `MirrorSourceTask.loadOffset`). The partition
//! map is a Java `HashMap`, whose iteration order for these three keys is `cluster`,
//! `partition`, `topic`; Jackson writes no whitespace. [`SourceProgressKey::encode`]
//! reproduces those bytes exactly; decoding accepts any field order and whitespace.
//!
//! [`OffsetMapRecord`] is Strait's own versioned format for the exact offset map (see
//! [`crate::offsets::OffsetMap`]), documented on the type.

use std::fmt;

use bytes::{BufMut, Bytes, BytesMut};

/// The connector name MM2's dedicated mode gives the source connector
/// (`MirrorMakerConfig.connectorBaseConfig`: `connectorClass.getSimpleName()`), which is
/// the Connect offset namespace in the source-progress key.
pub const MIRROR_SOURCE_CONNECTOR_NAME: &str = "MirrorSourceConnector";

/// The only MM2 value-format version that exists (`Checkpoint.VERSION`, `Heartbeat.VERSION`).
pub const MM2_RECORD_VERSION: i16 = 0;

/// Largest byte length of a Kafka `STRING` field (int16 length prefix).
pub const MAX_STRING_LEN: usize = i16::MAX as usize;

/// Decoding or encoding failure for an internal record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FormatError {
    /// The input ended before a field was complete.
    #[error("{record}: truncated reading `{field}`: need {needed} bytes, {remaining} remain")]
    Truncated {
        /// Record type and part, e.g. `Checkpoint key`.
        record: &'static str,
        /// Field being read.
        field: &'static str,
        /// Bytes the field needs.
        needed: usize,
        /// Bytes left in the input.
        remaining: usize,
    },
    /// A `STRING` length prefix was negative (null is not allowed for these fields).
    #[error("{record}: string `{field}` has negative length {length}")]
    NegativeLength {
        /// Record type and part.
        record: &'static str,
        /// Field being read.
        field: &'static str,
        /// The length read.
        length: i16,
    },
    /// A `STRING` field was not valid UTF-8.
    #[error("{record}: string `{field}` is not valid UTF-8")]
    InvalidUtf8 {
        /// Record type and part.
        record: &'static str,
        /// Field being read.
        field: &'static str,
    },
    /// A string is longer than a Kafka `STRING` can hold (32767 bytes).
    #[error("{record}: string `{field}` is {length} bytes; the format allows at most 32767")]
    StringTooLong {
        /// Record type and part.
        record: &'static str,
        /// Field being written.
        field: &'static str,
        /// Its byte length.
        length: usize,
    },
    /// The value carried a version this code cannot read.
    #[error("{record}: unsupported version {version}")]
    UnsupportedVersion {
        /// Record type and part.
        record: &'static str,
        /// Version read.
        version: i16,
    },
    /// A record that must have a value had none (a tombstone).
    #[error("{record}: missing value (tombstone)")]
    MissingValue {
        /// Record type.
        record: &'static str,
    },
    /// A JSON source-progress record did not have the expected shape.
    #[error("source progress {part}: {message}")]
    Json {
        /// `key` or `value`.
        part: &'static str,
        /// What was wrong.
        message: String,
    },
    /// A field held a value outside its allowed range.
    #[error("{record}: field `{field}` has invalid value {value}")]
    InvalidField {
        /// Record type and part.
        record: &'static str,
        /// Field.
        field: &'static str,
        /// The value, rendered.
        value: String,
    },
}

/// Big-endian reader over a byte slice that checks every length against what remains.
struct Reader<'a> {
    buf: &'a [u8],
    record: &'static str,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8], record: &'static str) -> Self {
        Self { buf, record }
    }

    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], FormatError> {
        if self.buf.len() < n {
            return Err(FormatError::Truncated {
                record: self.record,
                field,
                needed: n,
                remaining: self.buf.len(),
            });
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    fn i8(&mut self, field: &'static str) -> Result<i8, FormatError> {
        let b = self.take(1, field)?;
        Ok(i8::from_be_bytes([b[0]]))
    }

    fn i16(&mut self, field: &'static str) -> Result<i16, FormatError> {
        let b = self.take(2, field)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }

    fn i32(&mut self, field: &'static str) -> Result<i32, FormatError> {
        let b = self.take(4, field)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn i64(&mut self, field: &'static str) -> Result<i64, FormatError> {
        let b = self.take(8, field)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(i64::from_be_bytes(a))
    }

    fn string(&mut self, field: &'static str) -> Result<String, FormatError> {
        let length = self.i16(field)?;
        if length < 0 {
            return Err(FormatError::NegativeLength {
                record: self.record,
                field,
                length,
            });
        }
        let bytes = self.take(length as usize, field)?;
        std::str::from_utf8(bytes)
            .map(str::to_owned)
            .map_err(|_| FormatError::InvalidUtf8 {
                record: self.record,
                field,
            })
    }

    /// Reads the value-format version header and rejects what cannot be read.
    fn version(&mut self) -> Result<i16, FormatError> {
        let version = self.i16("version")?;
        if version < 0 {
            return Err(FormatError::UnsupportedVersion {
                record: self.record,
                version,
            });
        }
        Ok(version)
    }
}

fn put_string(
    buf: &mut BytesMut,
    s: &str,
    record: &'static str,
    field: &'static str,
) -> Result<(), FormatError> {
    if s.len() > MAX_STRING_LEN {
        return Err(FormatError::StringTooLong {
            record,
            field,
            length: s.len(),
        });
    }
    buf.put_i16(s.len() as i16);
    buf.put_slice(s.as_bytes());
    Ok(())
}

/// One MM2 offset sync: the record at `upstream_offset` in the source partition is the
/// record at `downstream_offset` in the remote partition. Written to partition 0 of
/// `mm2-offset-syncs.<alias>.internal`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OffsetSync {
    /// Source (upstream) topic name.
    pub topic: String,
    /// Partition number (same upstream and downstream).
    pub partition: i32,
    /// Upstream offset.
    pub upstream_offset: i64,
    /// Downstream offset of the same record.
    pub downstream_offset: i64,
}

impl OffsetSync {
    const KEY: &'static str = "OffsetSync key";
    const VALUE: &'static str = "OffsetSync value";

    /// Key bytes: `topic` STRING, `partition` INT32.
    pub fn encode_key(&self) -> Result<Bytes, FormatError> {
        let mut buf = BytesMut::with_capacity(2 + self.topic.len() + 4);
        put_string(&mut buf, &self.topic, Self::KEY, "topic")?;
        buf.put_i32(self.partition);
        Ok(buf.freeze())
    }

    /// Value bytes: `upstreamOffset` INT64, `offset` INT64 (no version header).
    pub fn encode_value(&self) -> Bytes {
        let mut buf = BytesMut::with_capacity(16);
        buf.put_i64(self.upstream_offset);
        buf.put_i64(self.downstream_offset);
        buf.freeze()
    }

    /// Decodes a record as `OffsetSync.deserializeRecord` does.
    pub fn decode(key: &[u8], value: Option<&[u8]>) -> Result<Self, FormatError> {
        let mut k = Reader::new(key, Self::KEY);
        let topic = k.string("topic")?;
        let partition = k.i32("partition")?;
        let value = value.ok_or(FormatError::MissingValue {
            record: "OffsetSync",
        })?;
        let mut v = Reader::new(value, Self::VALUE);
        let upstream_offset = v.i64("upstreamOffset")?;
        let downstream_offset = v.i64("offset")?;
        Ok(Self {
            topic,
            partition,
            upstream_offset,
            downstream_offset,
        })
    }
}

/// One MM2 checkpoint: consumer group `consumer_group_id` committed `upstream_offset` on the
/// source; on the target it corresponds to `downstream_offset` in `topic` (the
/// **downstream**, renamed topic). Written to partition 0 of `<source>.checkpoints.internal`
/// on the target cluster.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Checkpoint {
    /// Consumer group id.
    pub consumer_group_id: String,
    /// Downstream (remote) topic name, e.g. `A.orders`.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// The group's committed offset on the source.
    pub upstream_offset: i64,
    /// The translated offset on the target.
    pub downstream_offset: i64,
    /// The commit metadata (Java's null is written as the empty string).
    pub metadata: String,
}

impl Checkpoint {
    const KEY: &'static str = "Checkpoint key";
    const VALUE: &'static str = "Checkpoint value";

    /// Key bytes: `group` STRING, `topic` STRING, `partition` INT32.
    pub fn encode_key(&self) -> Result<Bytes, FormatError> {
        let mut buf =
            BytesMut::with_capacity(4 + self.consumer_group_id.len() + self.topic.len() + 4);
        put_string(&mut buf, &self.consumer_group_id, Self::KEY, "group")?;
        put_string(&mut buf, &self.topic, Self::KEY, "topic")?;
        buf.put_i32(self.partition);
        Ok(buf.freeze())
    }

    /// Value bytes: `version` INT16 = 0, `upstreamOffset` INT64, `offset` INT64, `metadata` STRING.
    pub fn encode_value(&self) -> Result<Bytes, FormatError> {
        let mut buf = BytesMut::with_capacity(2 + 16 + 2 + self.metadata.len());
        buf.put_i16(MM2_RECORD_VERSION);
        buf.put_i64(self.upstream_offset);
        buf.put_i64(self.downstream_offset);
        put_string(&mut buf, &self.metadata, Self::VALUE, "metadata")?;
        Ok(buf.freeze())
    }

    /// Decodes a key alone: (group, topic, partition), e.g. of a tombstone.
    pub fn decode_key(key: &[u8]) -> Result<(String, String, i32), FormatError> {
        let mut k = Reader::new(key, Self::KEY);
        Ok((k.string("group")?, k.string("topic")?, k.i32("partition")?))
    }

    /// Decodes a record as `Checkpoint.deserializeRecord` does.
    pub fn decode(key: &[u8], value: Option<&[u8]>) -> Result<Self, FormatError> {
        let value = value.ok_or(FormatError::MissingValue {
            record: "Checkpoint",
        })?;
        let mut v = Reader::new(value, Self::VALUE);
        v.version()?;
        let upstream_offset = v.i64("upstreamOffset")?;
        let downstream_offset = v.i64("offset")?;
        let metadata = v.string("metadata")?;
        let (consumer_group_id, topic, partition) = Self::decode_key(key)?;
        Ok(Self {
            consumer_group_id,
            topic,
            partition,
            upstream_offset,
            downstream_offset,
            metadata,
        })
    }
}

/// One MM2 heartbeat, written every `emit.heartbeats.interval.seconds` to partition 0 of
/// `heartbeats` on the target; `timestamp` (ms) is also the record timestamp.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Heartbeat {
    /// Alias of the cluster the emitter replicates from.
    pub source_cluster_alias: String,
    /// Alias of the cluster the heartbeat is written to.
    pub target_cluster_alias: String,
    /// Milliseconds since the epoch.
    pub timestamp: i64,
}

impl Heartbeat {
    const KEY: &'static str = "Heartbeat key";
    const VALUE: &'static str = "Heartbeat value";

    /// Key bytes: `sourceClusterAlias` STRING, `targetClusterAlias` STRING.
    pub fn encode_key(&self) -> Result<Bytes, FormatError> {
        let mut buf = BytesMut::with_capacity(
            4 + self.source_cluster_alias.len() + self.target_cluster_alias.len(),
        );
        put_string(
            &mut buf,
            &self.source_cluster_alias,
            Self::KEY,
            "sourceClusterAlias",
        )?;
        put_string(
            &mut buf,
            &self.target_cluster_alias,
            Self::KEY,
            "targetClusterAlias",
        )?;
        Ok(buf.freeze())
    }

    /// Value bytes: `version` INT16 = 0, `timestamp` INT64.
    pub fn encode_value(&self) -> Bytes {
        let mut buf = BytesMut::with_capacity(10);
        buf.put_i16(MM2_RECORD_VERSION);
        buf.put_i64(self.timestamp);
        buf.freeze()
    }

    /// Decodes a record as `Heartbeat.deserializeRecord` does.
    pub fn decode(key: &[u8], value: Option<&[u8]>) -> Result<Self, FormatError> {
        let value = value.ok_or(FormatError::MissingValue {
            record: "Heartbeat",
        })?;
        let mut v = Reader::new(value, Self::VALUE);
        v.version()?;
        let timestamp = v.i64("timestamp")?;
        let mut k = Reader::new(key, Self::KEY);
        let source_cluster_alias = k.string("sourceClusterAlias")?;
        let target_cluster_alias = k.string("targetClusterAlias")?;
        Ok(Self {
            source_cluster_alias,
            target_cluster_alias,
            timestamp,
        })
    }
}

/// Key of a Kafka Connect source-offset record for MM2's source connector
/// (`mm2-offsets.<source>.internal`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SourceProgressKey {
    /// Connect namespace: the connector name, [`MIRROR_SOURCE_CONNECTOR_NAME`] in dedicated mode.
    pub connector: String,
    /// Source cluster alias (`cluster`).
    pub cluster: String,
    /// Source topic (`topic`).
    pub topic: String,
    /// Source partition (`partition`).
    pub partition: i32,
}

impl SourceProgressKey {
    /// A key for MM2's dedicated-mode source connector.
    pub fn mirror_source(cluster: &str, topic: &str, partition: i32) -> Self {
        Self {
            connector: MIRROR_SOURCE_CONNECTOR_NAME.to_owned(),
            cluster: cluster.to_owned(),
            topic: topic.to_owned(),
            partition,
        }
    }

    /// The exact bytes Kafka's `JsonConverter` writes for this key.
    pub fn encode(&self) -> Bytes {
        let mut out = String::with_capacity(64 + self.topic.len() + self.cluster.len());
        out.push('[');
        push_json_string(&mut out, &self.connector);
        out.push_str(",{\"cluster\":");
        push_json_string(&mut out, &self.cluster);
        out.push_str(",\"partition\":");
        out.push_str(&self.partition.to_string());
        out.push_str(",\"topic\":");
        push_json_string(&mut out, &self.topic);
        out.push_str("}]");
        Bytes::from(out)
    }

    /// Parses a key in any field order; extra partition fields are ignored.
    pub fn decode(key: &[u8]) -> Result<Self, FormatError> {
        let err = |message: &str| FormatError::Json {
            part: "key",
            message: message.to_owned(),
        };
        let v: serde_json::Value = serde_json::from_slice(key).map_err(|e| FormatError::Json {
            part: "key",
            message: e.to_string(),
        })?;
        let arr = v.as_array().ok_or_else(|| err("not a JSON array"))?;
        if arr.len() != 2 {
            return Err(err("expected [namespace, partition]"));
        }
        let connector = arr[0]
            .as_str()
            .ok_or_else(|| err("namespace is not a string"))?
            .to_owned();
        let obj = arr[1]
            .as_object()
            .ok_or_else(|| err("partition is not a JSON object"))?;
        let cluster = obj
            .get("cluster")
            .and_then(|c| c.as_str())
            .ok_or_else(|| err("missing string `cluster`"))?
            .to_owned();
        let topic = obj
            .get("topic")
            .and_then(|c| c.as_str())
            .ok_or_else(|| err("missing string `topic`"))?
            .to_owned();
        let partition = obj
            .get("partition")
            .and_then(|c| c.as_i64())
            .ok_or_else(|| err("missing integer `partition`"))?;
        let partition = i32::try_from(partition)
            .ok()
            .filter(|p| *p >= 0)
            .ok_or_else(|| err("`partition` out of range"))?;
        Ok(Self {
            connector,
            cluster,
            topic,
            partition,
        })
    }
}

/// Value of a source-progress record: the last replicated upstream offset
/// (`{"offset":N}`); replication resumes at `N + 1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SourceProgress {
    /// Last upstream offset replicated.
    pub last_replicated_offset: i64,
}

impl SourceProgress {
    /// The exact bytes `JsonConverter` writes.
    pub fn encode(&self) -> Bytes {
        Bytes::from(format!("{{\"offset\":{}}}", self.last_replicated_offset))
    }

    /// Parses a value; a tombstone or `null` offset yields `None`, as `MirrorUtils.unwrapOffset`
    /// treats them as "no position" (-1).
    pub fn decode(value: Option<&[u8]>) -> Result<Option<Self>, FormatError> {
        let Some(value) = value else { return Ok(None) };
        let err = |message: &str| FormatError::Json {
            part: "value",
            message: message.to_owned(),
        };
        let v: serde_json::Value =
            serde_json::from_slice(value).map_err(|e| FormatError::Json {
                part: "value",
                message: e.to_string(),
            })?;
        if v.is_null() {
            return Ok(None);
        }
        let obj = v.as_object().ok_or_else(|| err("not a JSON object"))?;
        match obj.get("offset") {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(o) => {
                let offset = o
                    .as_i64()
                    .ok_or_else(|| err("`offset` is not an integer"))?;
                Ok(Some(Self {
                    last_replicated_offset: offset,
                }))
            }
        }
    }

    /// The upstream offset to resume fetching from.
    pub fn resume_offset(&self) -> i64 {
        self.last_replicated_offset.saturating_add(1)
    }
}

fn push_json_string(out: &mut String, s: &str) {
    // serde_json escapes exactly like Jackson for strings: `"`, `\`, and control characters
    // (short forms for \b \t \n \f \r, \u00XX otherwise); everything else verbatim.
    match serde_json::to_string(s) {
        Ok(quoted) => out.push_str(&quoted),
        // Serializing a &str cannot fail; keep a correct fallback regardless.
        Err(_) => {
            out.push('"');
            for c in s.chars() {
                match c {
                    '"' => out.push_str("\\\""),
                    '\\' => out.push_str("\\\\"),
                    c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
                    c => out.push(c),
                }
            }
            out.push('"');
        }
    }
}

/// Strait's durable offset-map records (one compacted topic per flow, Strait's own).
///
/// Format version 0, big-endian, Kafka `STRING` encoding for names:
///
/// | record | key | value |
/// |---|---|---|
/// | head | `version` INT16 = 0, `kind` INT8 = 0, `topic` STRING, `partition` INT32 | `version` INT16 = 0, `start` INT64, `frontier` INT64, `downstream_end` INT64 (-1 = unknown) |
/// | run | `version` INT16 = 0, `kind` INT8 = 1, `topic` STRING, `partition` INT32, `upstream_start` INT64 | `version` INT16 = 0, `downstream_start` INT64, `count` INT64 |
///
/// A run record whose value is absent (a tombstone) deletes that run. Keys are unique per
/// run so compaction keeps every live run; the growing last run rewrites its own key.
/// `start`/`frontier` are upstream offsets: the map is authoritative for
/// `start <= U <= frontier`. Topic and partition are the **source** partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OffsetMapRecord {
    /// The partition's bounds.
    Head {
        /// Source topic.
        topic: String,
        /// Source partition.
        partition: i32,
        /// Lowest upstream offset the map covers.
        start: i64,
        /// Next upstream offset to process.
        frontier: i64,
        /// Downstream offset the next forwarded record will get, if known.
        downstream_end: Option<i64>,
    },
    /// One run of records with a constant `downstream - upstream`.
    Run {
        /// Source topic.
        topic: String,
        /// Source partition.
        partition: i32,
        /// First upstream offset of the run.
        upstream_start: i64,
        /// Its downstream offset.
        downstream_start: i64,
        /// Number of records (upstream and downstream both contiguous).
        count: i64,
    },
    /// Deletes the run starting at `upstream_start`.
    RunTombstone {
        /// Source topic.
        topic: String,
        /// Source partition.
        partition: i32,
        /// First upstream offset of the deleted run.
        upstream_start: i64,
    },
}

/// Version of [`OffsetMapRecord`] this code writes.
pub const OFFSET_MAP_FORMAT_VERSION: i16 = 0;
const KIND_HEAD: i8 = 0;
const KIND_RUN: i8 = 1;

impl OffsetMapRecord {
    const KEY: &'static str = "OffsetMap key";
    const VALUE: &'static str = "OffsetMap value";

    /// Source topic and partition the record belongs to.
    pub fn topic_partition(&self) -> (&str, i32) {
        match self {
            Self::Head {
                topic, partition, ..
            }
            | Self::Run {
                topic, partition, ..
            }
            | Self::RunTombstone {
                topic, partition, ..
            } => (topic, *partition),
        }
    }

    /// Key bytes.
    pub fn encode_key(&self) -> Result<Bytes, FormatError> {
        let (topic, partition) = self.topic_partition();
        let mut buf = BytesMut::with_capacity(2 + 1 + 2 + topic.len() + 4 + 8);
        buf.put_i16(OFFSET_MAP_FORMAT_VERSION);
        match self {
            Self::Head { .. } => {
                buf.put_i8(KIND_HEAD);
                put_string(&mut buf, topic, Self::KEY, "topic")?;
                buf.put_i32(partition);
            }
            Self::Run { upstream_start, .. } | Self::RunTombstone { upstream_start, .. } => {
                buf.put_i8(KIND_RUN);
                put_string(&mut buf, topic, Self::KEY, "topic")?;
                buf.put_i32(partition);
                buf.put_i64(*upstream_start);
            }
        }
        Ok(buf.freeze())
    }

    /// Value bytes; `None` for a tombstone.
    pub fn encode_value(&self) -> Option<Bytes> {
        let mut buf = BytesMut::with_capacity(26);
        buf.put_i16(OFFSET_MAP_FORMAT_VERSION);
        match self {
            Self::Head {
                start,
                frontier,
                downstream_end,
                ..
            } => {
                buf.put_i64(*start);
                buf.put_i64(*frontier);
                buf.put_i64(downstream_end.unwrap_or(-1));
            }
            Self::Run {
                downstream_start,
                count,
                ..
            } => {
                buf.put_i64(*downstream_start);
                buf.put_i64(*count);
            }
            Self::RunTombstone { .. } => return None,
        }
        Some(buf.freeze())
    }

    fn value_reader(value: &[u8]) -> Result<Reader<'_>, FormatError> {
        let mut v = Reader::new(value, Self::VALUE);
        let version = v.i16("version")?;
        if version != OFFSET_MAP_FORMAT_VERSION {
            return Err(FormatError::UnsupportedVersion {
                record: Self::VALUE,
                version,
            });
        }
        Ok(v)
    }

    /// The source partition a key names, when at least that much of it reads (version 0, any
    /// kind): which partition's map an undecodable record belongs to.
    pub fn key_partition(key: &[u8]) -> Option<(String, i32)> {
        let mut k = Reader::new(key, Self::KEY);
        if k.i16("version").ok()? != OFFSET_MAP_FORMAT_VERSION {
            return None;
        }
        k.i8("kind").ok()?;
        let topic = k.string("topic").ok()?;
        let partition = k.i32("partition").ok()?;
        Some((topic, partition))
    }

    /// Decodes a record. Versions other than 0 are rejected: this is Strait's own format and
    /// a newer writer must not be misread by an older reader.
    pub fn decode(key: &[u8], value: Option<&[u8]>) -> Result<Self, FormatError> {
        let mut k = Reader::new(key, Self::KEY);
        let version = k.i16("version")?;
        if version != OFFSET_MAP_FORMAT_VERSION {
            return Err(FormatError::UnsupportedVersion {
                record: Self::KEY,
                version,
            });
        }
        let kind = k.i8("kind")?;
        let topic = k.string("topic")?;
        let partition = k.i32("partition")?;
        match kind {
            KIND_HEAD => {
                let value = value.ok_or(FormatError::MissingValue {
                    record: "OffsetMap head",
                })?;
                let mut v = Self::value_reader(value)?;
                let start = v.i64("start")?;
                let frontier = v.i64("frontier")?;
                let end = v.i64("downstream_end")?;
                Ok(Self::Head {
                    topic,
                    partition,
                    start,
                    frontier,
                    downstream_end: (end >= 0).then_some(end),
                })
            }
            KIND_RUN => {
                let upstream_start = k.i64("upstream_start")?;
                match value {
                    None => Ok(Self::RunTombstone {
                        topic,
                        partition,
                        upstream_start,
                    }),
                    Some(value) => {
                        let mut v = Self::value_reader(value)?;
                        let downstream_start = v.i64("downstream_start")?;
                        let count = v.i64("count")?;
                        if count <= 0 {
                            return Err(FormatError::InvalidField {
                                record: Self::VALUE,
                                field: "count",
                                value: count.to_string(),
                            });
                        }
                        Ok(Self::Run {
                            topic,
                            partition,
                            upstream_start,
                            downstream_start,
                            count,
                        })
                    }
                }
            }
            other => Err(FormatError::InvalidField {
                record: Self::KEY,
                field: "kind",
                value: other.to_string(),
            }),
        }
    }
}

impl fmt::Display for OffsetSync {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "OffsetSync{{{}-{}, {}=={}}}",
            self.topic, self.partition, self.upstream_offset, self.downstream_offset
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    fn golden_checkpoint() -> Checkpoint {
        Checkpoint {
            consumer_group_id: "analytics".into(),
            topic: "orders".into(),
            partition: 7,
            upstream_offset: 1000,
            downstream_offset: 742,
            metadata: String::new(),
        }
    }

    #[test]
    fn heartbeat_golden() {
        let hb = Heartbeat {
            source_cluster_alias: "us-east".into(),
            target_cluster_alias: "eu-west".into(),
            timestamp: 100,
        };
        let key = hb.encode_key().unwrap();
        let value = hb.encode_value();
        assert_eq!(hex(&key), "000775732d65617374000765752d77657374");
        assert_eq!(hex(&value), "00000000000000000064");
        assert_eq!(Heartbeat::decode(&key, Some(&value)).unwrap(), hb);
    }

    #[test]
    fn checkpoint_golden() {
        let cp = golden_checkpoint();
        let key = cp.encode_key().unwrap();
        let value = cp.encode_value().unwrap();
        assert_eq!(hex(&key), "0009616e616c797469637300066f726465727300000007");
        assert_eq!(hex(&value), "000000000000000003e800000000000002e60000");
        assert_eq!(Checkpoint::decode(&key, Some(&value)).unwrap(), cp);
    }

    #[test]
    fn offset_sync_golden() {
        let sync = OffsetSync {
            topic: "orders".into(),
            partition: 7,
            upstream_offset: 1000,
            downstream_offset: 742,
        };
        assert_eq!(hex(&sync.encode_key().unwrap()), "00066f726465727300000007");
        assert_eq!(
            hex(&sync.encode_value()),
            "00000000000003e800000000000002e6"
        );
        // The worked example from MM2-REFERENCE §1.
        let ex = OffsetSync {
            topic: "t1".into(),
            partition: 2,
            upstream_offset: 100,
            downstream_offset: 50,
        };
        assert_eq!(hex(&ex.encode_key().unwrap()), "0002743100000002");
        assert_eq!(hex(&ex.encode_value()), "00000000000000640000000000000032");
        let k = ex.encode_key().unwrap();
        let v = ex.encode_value();
        assert_eq!(OffsetSync::decode(&k, Some(&v)).unwrap(), ex);
    }

    #[test]
    fn truncated_inputs_are_rejected_at_every_length() {
        let cp = golden_checkpoint();
        let key = cp.encode_key().unwrap();
        let value = cp.encode_value().unwrap();
        for cut in 0..key.len() {
            assert!(matches!(
                Checkpoint::decode(&key[..cut], Some(&value)),
                Err(FormatError::Truncated { .. })
            ));
        }
        for cut in 0..value.len() {
            assert!(matches!(
                Checkpoint::decode(&key, Some(&value[..cut])),
                Err(FormatError::Truncated { .. })
            ));
        }
        let sync = OffsetSync {
            topic: "t".into(),
            partition: 0,
            upstream_offset: 1,
            downstream_offset: 2,
        };
        let (k, v) = (sync.encode_key().unwrap(), sync.encode_value());
        for cut in 0..v.len() {
            assert!(OffsetSync::decode(&k, Some(&v[..cut])).is_err());
        }
        let hb = Heartbeat {
            source_cluster_alias: "a".into(),
            target_cluster_alias: "b".into(),
            timestamp: 5,
        };
        let (k, v) = (hb.encode_key().unwrap(), hb.encode_value());
        for cut in 0..k.len() {
            assert!(Heartbeat::decode(&k[..cut], Some(&v)).is_err());
        }
    }

    #[test]
    fn version_and_string_checks() {
        let cp = golden_checkpoint();
        let key = cp.encode_key().unwrap();
        let mut value = cp.encode_value().unwrap().to_vec();
        value[0] = 0xff; // version -1..
        value[1] = 0xff;
        assert_eq!(
            Checkpoint::decode(&key, Some(&value)),
            Err(FormatError::UnsupportedVersion {
                record: "Checkpoint value",
                version: -1
            })
        );
        // A newer version is read with the v0 layout, trailing bytes ignored (Java does the same).
        let mut newer = cp.encode_value().unwrap().to_vec();
        newer[1] = 1;
        newer.extend_from_slice(&[1, 2, 3]);
        assert_eq!(Checkpoint::decode(&key, Some(&newer)).unwrap(), cp);
        // Negative string length.
        assert!(matches!(
            OffsetSync::decode(&[0xff, 0xfe, 0, 0, 0, 0], Some(&[0; 16])),
            Err(FormatError::NegativeLength { length: -2, .. })
        ));
        // Invalid UTF-8.
        assert!(matches!(
            OffsetSync::decode(&[0, 1, 0xff, 0, 0, 0, 0], Some(&[0; 16])),
            Err(FormatError::InvalidUtf8 { .. })
        ));
        // Tombstone.
        assert!(matches!(
            Heartbeat::decode(&[0, 0, 0, 0], None),
            Err(FormatError::MissingValue { .. })
        ));
        // Too long to encode.
        let long = Checkpoint {
            consumer_group_id: "g".repeat(MAX_STRING_LEN + 1),
            ..golden_checkpoint()
        };
        assert!(matches!(
            long.encode_key(),
            Err(FormatError::StringTooLong { .. })
        ));
    }

    #[test]
    fn source_progress_exact_json() {
        let key = SourceProgressKey::mirror_source("A", "t", 0);
        assert_eq!(
            &key.encode()[..],
            br#"["MirrorSourceConnector",{"cluster":"A","partition":0,"topic":"t"}]"#
        );
        assert_eq!(SourceProgressKey::decode(&key.encode()).unwrap(), key);
        let reordered =
            br#" [ "MirrorSourceConnector" , { "topic" : "t", "partition": 0, "cluster": "A" } ] "#;
        assert_eq!(SourceProgressKey::decode(reordered).unwrap(), key);
        let value = SourceProgress {
            last_replicated_offset: 41,
        };
        assert_eq!(&value.encode()[..], br#"{"offset":41}"#);
        assert_eq!(
            SourceProgress::decode(Some(&value.encode())).unwrap(),
            Some(value)
        );
        assert_eq!(value.resume_offset(), 42);
        assert_eq!(SourceProgress::decode(None).unwrap(), None);
        assert_eq!(SourceProgress::decode(Some(b"null")).unwrap(), None);
        assert_eq!(
            SourceProgress::decode(Some(b"{\"offset\":null}")).unwrap(),
            None
        );
        assert!(SourceProgress::decode(Some(b"{\"offset\":\"x\"}")).is_err());
        assert!(SourceProgressKey::decode(b"[\"x\"]").is_err());
        assert!(
            SourceProgressKey::decode(br#"["x",{"cluster":"A","partition":-1,"topic":"t"}]"#)
                .is_err()
        );
        let escaped = SourceProgressKey::mirror_source("A\"", "t\n", 3);
        assert_eq!(
            &escaped.encode()[..],
            br#"["MirrorSourceConnector",{"cluster":"A\"","partition":3,"topic":"t\n"}]"#
        );
        assert_eq!(
            SourceProgressKey::decode(&escaped.encode()).unwrap(),
            escaped
        );
    }

    #[test]
    fn offset_map_records_round_trip_and_reject_bad_versions() {
        let records = [
            OffsetMapRecord::Head {
                topic: "t".into(),
                partition: 1,
                start: 0,
                frontier: 10,
                downstream_end: Some(7),
            },
            OffsetMapRecord::Head {
                topic: "t".into(),
                partition: 1,
                start: 5,
                frontier: 5,
                downstream_end: None,
            },
            OffsetMapRecord::Run {
                topic: "t".into(),
                partition: 1,
                upstream_start: 3,
                downstream_start: 1,
                count: 4,
            },
            OffsetMapRecord::RunTombstone {
                topic: "t".into(),
                partition: 1,
                upstream_start: 3,
            },
        ];
        for r in &records {
            let k = r.encode_key().unwrap();
            let v = r.encode_value();
            assert_eq!(&OffsetMapRecord::decode(&k, v.as_deref()).unwrap(), r);
        }
        let k = records[2].encode_key().unwrap();
        let mut v = records[2].encode_value().unwrap().to_vec();
        v[1] = 1;
        assert!(matches!(
            OffsetMapRecord::decode(&k, Some(&v)),
            Err(FormatError::UnsupportedVersion { .. })
        ));
        let mut k2 = k.to_vec();
        k2[2] = 9;
        assert!(matches!(
            OffsetMapRecord::decode(&k2, Some(&records[2].encode_value().unwrap())),
            Err(FormatError::InvalidField { field: "kind", .. })
        ));
    }

    proptest! {
        #[test]
        fn checkpoint_round_trip(group in ".{0,40}", topic in "[a-zA-Z0-9._-]{1,40}",
                                 partition in any::<i32>(), up in any::<i64>(), down in any::<i64>(),
                                 metadata in ".{0,20}") {
            let cp = Checkpoint { consumer_group_id: group, topic, partition,
                                  upstream_offset: up, downstream_offset: down, metadata };
            let k = cp.encode_key().unwrap();
            let v = cp.encode_value().unwrap();
            prop_assert_eq!(Checkpoint::decode(&k, Some(&v)).unwrap(), cp);
        }

        #[test]
        fn decoders_never_panic(key in proptest::collection::vec(any::<u8>(), 0..64),
                                value in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = OffsetSync::decode(&key, Some(&value));
            let _ = Checkpoint::decode(&key, Some(&value));
            let _ = Heartbeat::decode(&key, Some(&value));
            let _ = OffsetMapRecord::decode(&key, Some(&value));
            let _ = OffsetMapRecord::decode(&key, None);
            let _ = SourceProgressKey::decode(&key);
            let _ = SourceProgress::decode(Some(&value));
        }
    }
}
