//! The high-level producer API: `send(record)` → the offset it was written at.
//!
//! Records are gathered per partition into a [`BatchBuilder`] until the batch reaches
//! [`ProducerConfig::batch_bytes`](super::ProducerConfig::batch_bytes) or has waited
//! [`ProducerConfig::linger`](super::ProducerConfig::linger), compressed with
//! [`ProducerConfig::compression`](super::ProducerConfig::compression), and appended through the
//! raw path (same ordering and idempotence). Without an explicit partition, keyed records go to
//! `murmur2(key) % partitions` (Kafka's default partitioner, so keys land where Java clients put
//! them) and unkeyed records round-robin.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;

use bytes::Bytes;
use tokio::sync::oneshot;

use super::{ProduceAck, Producer};
use crate::error::{Error, Result};
use crate::record::{BatchBuilder, RecordHeader};

/// A record to send.
#[derive(Clone, Debug, Default)]
pub struct ProducerRecord {
    /// Topic.
    pub topic: String,
    /// Partition; chosen from the key when `None`.
    pub partition: Option<i32>,
    /// Key.
    pub key: Option<Bytes>,
    /// Value (`None` is a tombstone).
    pub value: Option<Bytes>,
    /// Headers.
    pub headers: Vec<RecordHeader>,
    /// Create time in ms; now when `None`.
    pub timestamp: Option<i64>,
}

/// Where a record was written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordMetadata {
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// The record's timestamp (the broker's when the topic uses `LogAppendTime`).
    pub timestamp: i64,
}

struct OpenBatch {
    id: u64,
    builder: BatchBuilder,
    waiters: Vec<(oneshot::Sender<Result<RecordMetadata>>, i64)>,
}

/// Per-producer accumulator state.
#[derive(Default)]
pub(crate) struct Accumulator {
    open: Mutex<HashMap<(String, i32), OpenBatch>>,
    next_id: std::sync::atomic::AtomicU64,
    round_robin: AtomicU32,
}

impl std::fmt::Debug for Accumulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Accumulator").finish_non_exhaustive()
    }
}

impl Producer {
    fn accumulator(&self) -> &Accumulator {
        &self.inner.acc
    }

    /// Sends one record and waits until it is acknowledged.
    pub async fn send(&self, record: ProducerRecord) -> Result<RecordMetadata> {
        let rx = self.send_nowait(record).await?;
        rx.await.unwrap_or(Err(Error::Shutdown))
    }

    /// Queues one record (choosing its partition, which may need metadata) and returns a
    /// receiver for its acknowledgement. Records queued one after another to a partition are
    /// written in that order.
    pub async fn send_nowait(
        &self,
        record: ProducerRecord,
    ) -> Result<oneshot::Receiver<Result<RecordMetadata>>> {
        let acc = self.accumulator();
        let partition = match record.partition {
            Some(p) => p,
            None => {
                let n = self.partition_count(&record.topic).await?;
                match &record.key {
                    Some(k) => (murmur2(k) & 0x7fff_ffff) as i32 % n,
                    None => (acc.round_robin.fetch_add(1, Ordering::Relaxed) % n as u32) as i32,
                }
            }
        };
        let timestamp = record.timestamp.unwrap_or_else(now_ms);
        let (tx, rx) = oneshot::channel();
        let config = &self.inner.config;
        let key = (record.topic.clone(), partition);
        let (full, linger_id) = {
            let mut open = acc.open.lock().unwrap_or_else(|p| p.into_inner());
            let batch = open.entry(key.clone()).or_insert_with(|| OpenBatch {
                id: acc.next_id.fetch_add(1, Ordering::Relaxed),
                builder: BatchBuilder::new(config.compression),
                waiters: Vec::new(),
            });
            let first = batch.waiters.is_empty();
            batch.builder.push(
                timestamp,
                record.key.as_deref(),
                record.value.as_deref(),
                &record.headers,
            );
            batch.waiters.push((tx, timestamp));
            let full = batch.builder.estimated_size() >= config.batch_bytes;
            let id = batch.id;
            let full = if full { open.remove(&key) } else { None };
            (full, if first { Some(id) } else { None })
        };
        if let Some(batch) = full {
            self.close_batch(&key, batch);
        } else if let Some(id) = linger_id {
            let me = self.clone();
            let linger = config.linger;
            tokio::spawn(async move {
                tokio::time::sleep(linger).await;
                let acc = me.accumulator();
                let batch = {
                    let mut open = acc.open.lock().unwrap_or_else(|p| p.into_inner());
                    match open.get(&key) {
                        Some(b) if b.id == id => open.remove(&key),
                        _ => None,
                    }
                };
                if let Some(batch) = batch {
                    me.close_batch(&key, batch);
                }
            });
        }
        Ok(rx)
    }

    /// Closes every open batch now: records queued with `send_nowait` go out without waiting
    /// for the linger time (their receivers then tell when each is acknowledged).
    pub fn send_open_batches(&self) {
        let acc = self.accumulator();
        let batches: Vec<_> = acc
            .open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain()
            .collect();
        for (key, batch) in batches {
            self.close_batch(&key, batch);
        }
    }

    /// Closes every open batch now (records queued with `send_nowait` go out without waiting
    /// for the linger time), then waits for all acknowledgements.
    pub async fn flush_records(&self) {
        self.send_open_batches();
        self.flush().await;
    }

    fn close_batch(&self, key: &(String, i32), batch: OpenBatch) {
        let OpenBatch {
            builder, waiters, ..
        } = batch;
        let partition = key.1;
        match builder.build() {
            Err(e) => {
                let msg = e.to_string();
                for (tx, _) in waiters {
                    let _ = tx.send(Err(Error::Producer(format!("building batch: {msg}"))));
                }
            }
            Ok(batch) => {
                let log_append =
                    batch.timestamp_type() == crate::record::TimestampType::LogAppendTime;
                let ack = self.append(&key.0, partition, batch);
                tokio::spawn(async move {
                    let result: Result<ProduceAck> = ack.await;
                    match result {
                        Ok(ack) => {
                            for (i, (tx, ts)) in waiters.into_iter().enumerate() {
                                let timestamp = if log_append || ack.log_append_time >= 0 {
                                    ack.log_append_time
                                } else {
                                    ts
                                };
                                let _ = tx.send(Ok(RecordMetadata {
                                    partition,
                                    offset: ack.base_offset + i as i64,
                                    timestamp,
                                }));
                            }
                        }
                        Err(e) => {
                            let msg = e.to_string();
                            let mut first = Some(e);
                            for (tx, _) in waiters {
                                let err =
                                    first.take().unwrap_or_else(|| Error::Producer(msg.clone()));
                                let _ = tx.send(Err(err));
                            }
                        }
                    }
                });
            }
        }
    }

    async fn partition_count(&self, topic: &str) -> Result<i32> {
        let cluster = self.cluster();
        for attempt in 0..2 {
            if let Some(t) = cluster.metadata().topics.get(topic) {
                if !t.partitions.is_empty() {
                    return Ok(t.partitions.len() as i32);
                }
            }
            if attempt == 0 {
                cluster.track_topics([topic]);
                cluster.refresh_metadata().await?;
            }
        }
        Err(Error::Metadata(format!(
            "topic {topic} has no known partitions"
        )))
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Kafka's murmur2 (as in `org.apache.kafka.common.utils.Utils.murmur2`).
pub fn murmur2(data: &[u8]) -> u32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let len = data.len();
    let mut h: u32 = SEED ^ (len as u32);
    let chunks = data.chunks_exact(4);
    let tail = chunks.remainder();
    for c in chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    match tail.len() {
        3 => {
            h ^= u32::from(tail[2]) << 16;
            h ^= u32::from(tail[1]) << 8;
            h ^= u32::from(tail[0]);
            h = h.wrapping_mul(M);
        }
        2 => {
            h ^= u32::from(tail[1]) << 8;
            h ^= u32::from(tail[0]);
            h = h.wrapping_mul(M);
        }
        1 => {
            h ^= u32::from(tail[0]);
            h = h.wrapping_mul(M);
        }
        _ => {}
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur2_matches_kafka_partitioner_vectors() {
        // Partition of key "a".."d" etc. as Kafka's Java client computes them:
        // Utils.toPositive(Utils.murmur2(key)) for these inputs (from Kafka's UtilsTest).
        let cases: &[(&[u8], i32)] = &[
            (b"21", -973932308),
            (b"foobar", -790332482),
            (b"a-little-bit-long-string", -985981536),
            (b"a-little-bit-longer-string", -1486304829),
            (
                b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58897971,
            ),
            (b"abc", 479470107),
        ];
        for (key, want) in cases {
            assert_eq!(
                murmur2(key) as i32,
                *want,
                "key {:?}",
                String::from_utf8_lossy(key)
            );
        }
    }
}
