//! Internal topics: creating them (compacted) and reading them to the end.
//!
//! Strait keeps its state where MM2 keeps it — offset syncs, checkpoints, heartbeats and
//! source progress, in MM2's formats — plus its own compacted offset-map topic
//! `strait-offset-map.<source>.internal` on the target (exact runs, see
//! [`crate::formats::OffsetMapRecord`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use protocol_client::admin::{Admin, NewTopic};
use protocol_client::cluster::Cluster;
use protocol_client::fetcher::{fetch_partition, FetcherConfig, IsolationLevel};
use protocol_client::record::{split_batches, DecodeLimits};
use protocol_client::ResponseError;
use tracing::info;

use crate::error::{Error, Result};

/// Partitions Kafka Connect gives its offsets topic (`offset.storage.partitions`).
pub const OFFSET_STORAGE_PARTITIONS: i32 = 25;

/// Name of Strait's offset-map topic for a source cluster.
pub fn offset_map_topic(source_alias: &str) -> String {
    format!("strait-offset-map.{source_alias}.internal")
}

/// Creates `topic` as a compacted topic unless it exists.
pub async fn ensure_compacted_topic(
    admin: &Admin,
    alias: &str,
    topic: &str,
    partitions: i32,
    replication_factor: i16,
) -> Result<()> {
    let md = admin.cluster().metadata();
    if md.topics.contains_key(topic) {
        return Ok(());
    }
    let res = admin
        .create_topics(&[NewTopic {
            name: topic.to_string(),
            partitions,
            replication_factor,
            configs: vec![("cleanup.policy".into(), "compact".into())],
        }])
        .await
        .map_err(Error::client(alias))?;
    for (name, r) in res {
        match r {
            Ok(()) => info!(cluster = alias, topic = %name, partitions, "created internal topic"),
            Err(e) if e.response_error() == Some(ResponseError::TopicAlreadyExists) => {}
            Err(e) => return Err(Error::client(alias)(e)),
        }
    }
    admin.cluster().track_topics([topic]);
    wait_for_topic(admin.cluster(), alias, topic).await
}

/// Waits until metadata shows every partition of `topic` with a leader.
pub async fn wait_for_topic(cluster: &Arc<Cluster>, alias: &str, topic: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    cluster.track_topics([topic]);
    loop {
        let md = cluster
            .refresh_metadata()
            .await
            .map_err(Error::client(alias))?;
        if let Some(t) = md.topics.get(topic) {
            if !t.partitions.is_empty() && t.partitions.iter().all(|p| p.leader >= 0) {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            return Err(Error::Other(format!(
                "cluster {alias}: topic {topic} has no leaders 30 s after creation"
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One record read back from a topic.
#[derive(Debug, Clone)]
pub struct StoredRecord {
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// Key.
    pub key: Option<Bytes>,
    /// Value (`None` = tombstone).
    pub value: Option<Bytes>,
}

/// Reads every record of every partition of `topic` up to its current end, in offset order
/// per partition. A missing topic reads as empty.
pub async fn read_to_end(
    cluster: &Arc<Cluster>,
    alias: &str,
    topic: &str,
) -> Result<Vec<StoredRecord>> {
    cluster.track_topics([topic]);
    let md = cluster
        .refresh_metadata()
        .await
        .map_err(Error::client(alias))?;
    let Some(info) = md.topics.get(topic) else {
        return Ok(Vec::new());
    };
    let config = FetcherConfig {
        max_wait: Duration::from_millis(10),
        isolation: IsolationLevel::ReadUncommitted,
        ..FetcherConfig::default()
    };
    let limits = DecodeLimits::default();
    let mut out = Vec::new();
    for p in &info.partitions {
        let mut position = 0i64;
        let mut end: Option<i64> = None;
        loop {
            let fp = fetch_partition(cluster, topic, p.partition, position, &config)
                .await
                .map_err(Error::client(alias))?;
            match fp.error {
                None => {}
                Some(ResponseError::OffsetOutOfRange)
                    if position == 0 && fp.log_start_offset > 0 =>
                {
                    position = fp.log_start_offset;
                    continue;
                }
                Some(e) => {
                    return Err(Error::Other(format!(
                        "cluster {alias}: reading {topic}/{}: {e}",
                        p.partition
                    )))
                }
            }
            let hw = *end.get_or_insert(fp.high_watermark);
            if position >= hw {
                break;
            }
            if position < fp.log_start_offset {
                position = fp.log_start_offset;
            }
            let mut advanced = false;
            for batch in split_batches(fp.records) {
                let batch = batch.map_err(|source| Error::Record {
                    context: format!("{alias}:{topic}/{}", p.partition),
                    source,
                })?;
                if batch.next_offset() <= position {
                    continue;
                }
                advanced = true;
                if !batch.is_control() {
                    let records = batch.records(&limits).map_err(|source| Error::Record {
                        context: format!(
                            "{alias}:{topic}/{} at {}",
                            p.partition,
                            batch.base_offset()
                        ),
                        source,
                    })?;
                    for r in records {
                        let r = r.map_err(|source| Error::Record {
                            context: format!("{alias}:{topic}/{}", p.partition),
                            source,
                        })?;
                        let offset = r.offset(batch.base_offset());
                        if offset >= position && offset < hw {
                            out.push(StoredRecord {
                                partition: p.partition,
                                offset,
                                key: r.key,
                                value: r.value,
                            });
                        }
                    }
                }
                position = batch.next_offset();
            }
            if !advanced {
                break;
            }
        }
    }
    Ok(out)
}
