//! `strait sample`: sample data for the demo and a summary of what a cluster holds. Uses
//! Strait's own client only.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use protocol_client::admin::{Admin, CommittedOffset, NewTopic};
use protocol_client::cluster::{ClientConfig, Cluster};
use protocol_client::fetcher::{fetch_partition, FetcherConfig, IsolationLevel};
use protocol_client::producer::records::ProducerRecord;
use protocol_client::producer::{Producer, ProducerConfig};
use protocol_client::record::{split_batches, Compression, DecodeLimits, RecordHeader};
use protocol_client::ResponseError;

use crate::error::{Error, Result};

/// Creates `orders` (3 partitions, zstd) and `payments` (1 partition, lz4), writes `records`
/// records to each partition, and commits group `analytics` at the middle of each partition.
pub async fn produce(bootstrap: &str, records: usize) -> Result<()> {
    let cluster = Cluster::connect(ClientConfig::new(bootstrap))
        .await
        .map_err(Error::client(bootstrap))?;
    let admin = Admin::new(cluster.clone());
    for (topic, partitions) in [("orders", 3), ("payments", 1)] {
        for (_, r) in admin
            .create_topics(&[NewTopic {
                name: topic.into(),
                partitions,
                replication_factor: -1,
                configs: vec![],
            }])
            .await
            .map_err(Error::client(bootstrap))?
        {
            match r {
                Ok(()) => {}
                Err(e) if e.response_error() == Some(ResponseError::TopicAlreadyExists) => {}
                Err(e) => return Err(Error::client(bootstrap)(e)),
            }
        }
        crate::internal::wait_for_topic(&cluster, bootstrap, topic).await?;
    }
    let mut commits = Vec::new();
    for (topic, partitions, codec) in [
        ("orders", 3, Compression::Zstd),
        ("payments", 1, Compression::Lz4),
    ] {
        let producer = Producer::new(
            cluster.clone(),
            ProducerConfig {
                compression: codec,
                linger: Duration::from_millis(5),
                ..ProducerConfig::default()
            },
        )
        .await
        .map_err(Error::client(bootstrap))?;
        for p in 0..partitions {
            let mut acks = Vec::with_capacity(records);
            for i in 0..records {
                let rec = ProducerRecord {
                    topic: topic.into(),
                    partition: Some(p),
                    key: Some(Bytes::from(format!("customer-{}", i % 97))),
                    value: Some(Bytes::from(format!(
                        "{{\"{topic}\":{i},\"partition\":{p},\"amount\":{}}}",
                        (i * 37) % 1000
                    ))),
                    headers: vec![RecordHeader::new("source", Some(b"strait-sample"))],
                    timestamp: None,
                };
                acks.push(
                    producer
                        .send_nowait(rec)
                        .await
                        .map_err(Error::client(bootstrap))?,
                );
            }
            producer.flush_records().await;
            for a in acks {
                a.await
                    .map_err(|_| Error::Other("producer closed".into()))?
                    .map_err(Error::client(bootstrap))?;
            }
            commits.push(CommittedOffset {
                topic: topic.into(),
                partition: p,
                offset: (records / 2) as i64,
                leader_epoch: -1,
                metadata: Some("demo".into()),
            });
        }
        producer.close().await;
    }
    admin
        .commit_offsets("analytics", &commits)
        .await
        .map_err(Error::client(bootstrap))?;
    println!("produced {records} records to each of orders[0..3] (zstd) and payments[0] (lz4) on {bootstrap}");
    println!(
        "committed group analytics at offset {} of every partition",
        records / 2
    );
    Ok(())
}

/// Prints every topic with its partitions' end offsets and first record.
pub async fn summary(bootstrap: &str) -> Result<()> {
    let cluster = Cluster::connect(ClientConfig::new(bootstrap))
        .await
        .map_err(Error::client(bootstrap))?;
    let md = cluster
        .refresh_all_topics()
        .await
        .map_err(Error::client(bootstrap))?;
    let mut topics: Vec<_> = md.topics.values().filter(|t| !t.is_internal).collect();
    topics.sort_by(|a, b| a.name.cmp(&b.name));
    println!("cluster {bootstrap}:");
    for t in topics {
        if let Some(kind) = Mm2Topic::of(&t.name) {
            let records = crate::internal::read_to_end(&cluster, bootstrap, &t.name).await?;
            println!(
                "  {:<40} {:>7} records ({})",
                t.name,
                records.len(),
                kind.describe()
            );
            for line in kind.decode_latest(&records, 8) {
                println!("      {line}");
            }
            continue;
        }
        let mut empty = 0;
        for p in &t.partitions {
            let (count, first) = first_record(&cluster, &t.name, p.partition).await?;
            if count == 0 {
                empty += 1;
                continue;
            }
            println!(
                "  {:<40} partition {:>2}: {:>7} records  first: {}",
                t.name, p.partition, count, first
            );
        }
        if empty == t.partitions.len() {
            println!("  {:<40} (empty)", t.name);
        }
    }
    Ok(())
}

/// MM2's internal topics (and Strait's offset map), shown decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mm2Topic {
    Checkpoints,
    Heartbeats,
    OffsetSyncs,
    Progress,
    OffsetMap,
    ConnectInternal,
}

impl Mm2Topic {
    fn of(name: &str) -> Option<Mm2Topic> {
        let last = name.rsplit('.').next().unwrap_or(name);
        if name.ends_with(".checkpoints.internal") {
            Some(Mm2Topic::Checkpoints)
        } else if last == "heartbeats" {
            Some(Mm2Topic::Heartbeats)
        } else if name.starts_with("mm2-offset-syncs.") {
            Some(Mm2Topic::OffsetSyncs)
        } else if name.starts_with("mm2-offsets.") {
            Some(Mm2Topic::Progress)
        } else if name.starts_with("mm2-offset-map.") || name.starts_with("strait-offset-map.") {
            Some(Mm2Topic::OffsetMap)
        } else if name.starts_with("mm2-configs.") || name.starts_with("mm2-status.") {
            Some(Mm2Topic::ConnectInternal)
        } else {
            None
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Mm2Topic::Checkpoints => {
                "MM2 checkpoints: group, remote topic/partition, upstream -> downstream"
            }
            Mm2Topic::Heartbeats => "MM2 heartbeats",
            Mm2Topic::OffsetSyncs => "MM2 offset syncs: topic/partition, upstream -> downstream",
            Mm2Topic::Progress => "MM2 source progress: next offset per source partition",
            Mm2Topic::OffsetMap => "Strait's exact offset map",
            Mm2Topic::ConnectInternal => "Kafka Connect internal",
        }
    }

    /// The latest record per key, decoded, at most `max` lines (then a count of the rest).
    fn decode_latest(self, records: &[crate::internal::StoredRecord], max: usize) -> Vec<String> {
        use crate::formats::{
            Checkpoint, Heartbeat, OffsetMapRecord, OffsetSync, SourceProgress, SourceProgressKey,
        };
        let mut latest: std::collections::BTreeMap<Vec<u8>, &crate::internal::StoredRecord> =
            std::collections::BTreeMap::new();
        for r in records {
            let key = r.key.as_deref().unwrap_or_default().to_vec();
            if r.value.is_none() {
                latest.remove(&key);
            } else {
                latest.insert(key, r);
            }
        }
        let mut lines: Vec<String> = Vec::new();
        if self == Mm2Topic::Heartbeats {
            // One line per pair: how many, and the newest.
            let mut pairs: std::collections::BTreeMap<(String, String), (usize, i64)> =
                std::collections::BTreeMap::new();
            for r in records {
                if let Ok(h) =
                    Heartbeat::decode(r.key.as_deref().unwrap_or_default(), r.value.as_deref())
                {
                    let e = pairs
                        .entry((h.source_cluster_alias, h.target_cluster_alias))
                        .or_insert((0, 0));
                    e.0 += 1;
                    e.1 = e.1.max(h.timestamp);
                }
            }
            for ((s, t), (n, ts)) in pairs {
                lines.push(format!("{s} -> {t}: {n} heartbeats, newest at {ts} ms"));
            }
            return lines;
        }
        for r in latest.values() {
            let key = r.key.as_deref().unwrap_or_default();
            let value = r.value.as_deref();
            let line = match self {
                Mm2Topic::Checkpoints => Checkpoint::decode(key, value)
                    .map(|c| {
                        format!(
                            "group {:<12} {}/{}: {} -> {}",
                            c.consumer_group_id,
                            c.topic,
                            c.partition,
                            c.upstream_offset,
                            c.downstream_offset
                        )
                    })
                    .map_err(|e| e.to_string()),
                Mm2Topic::OffsetSyncs => OffsetSync::decode(key, value)
                    .map(|s| {
                        format!(
                            "{}/{}: {} -> {}",
                            s.topic, s.partition, s.upstream_offset, s.downstream_offset
                        )
                    })
                    .map_err(|e| e.to_string()),
                Mm2Topic::Progress => match (
                    SourceProgressKey::decode(key),
                    SourceProgress::decode(value),
                ) {
                    (Ok(k), Ok(Some(p))) => Ok(format!(
                        "{} {}/{}/{}: next {}",
                        k.connector,
                        k.cluster,
                        k.topic,
                        k.partition,
                        p.resume_offset()
                    )),
                    (Ok(_), Ok(None)) => continue,
                    (Err(e), _) | (_, Err(e)) => Err(e.to_string()),
                },
                Mm2Topic::OffsetMap => OffsetMapRecord::decode(key, value)
                    .map(|m| format!("{m:?}"))
                    .map_err(|e| e.to_string()),
                Mm2Topic::ConnectInternal | Mm2Topic::Heartbeats => Ok(format!(
                    "key={} value={}",
                    printable(Some(key)),
                    printable(value)
                )),
            };
            lines.push(
                line.unwrap_or_else(|e| format!("undecodable record at offset {}: {e}", r.offset)),
            );
        }
        if lines.len() > max {
            let rest = lines.len() - max;
            lines.truncate(max);
            lines.push(format!("... and {rest} more"));
        }
        lines
    }
}

/// Text for a key or value: UTF-8 shown as is (control characters escaped), anything else as
/// hex; at most 60 characters.
fn printable(v: Option<&[u8]>) -> String {
    let Some(v) = v else {
        return "null".into();
    };
    let text: String = match std::str::from_utf8(v) {
        Ok(s) => s
            .chars()
            .flat_map(|c| {
                let escaped: Vec<char> = if c.is_control() {
                    c.escape_default().collect()
                } else {
                    vec![c]
                };
                escaped
            })
            .collect(),
        Err(_) => v.iter().map(|b| format!("{b:02x}")).collect(),
    };
    if text.chars().count() > 60 {
        format!("{}…", text.chars().take(60).collect::<String>())
    } else {
        text
    }
}

async fn first_record(
    cluster: &Arc<Cluster>,
    topic: &str,
    partition: i32,
) -> Result<(i64, String)> {
    use protocol_client::fetcher::{list_offset, OffsetSpec};
    let config = FetcherConfig {
        max_wait: Duration::from_millis(10),
        isolation: IsolationLevel::ReadUncommitted,
        partition_max_bytes: 64 * 1024,
        ..FetcherConfig::default()
    };
    let start = list_offset(
        cluster,
        topic,
        partition,
        OffsetSpec::Earliest,
        IsolationLevel::ReadUncommitted,
    )
    .await
    .map_err(Error::client("summary"))?
    .offset;
    let fp = fetch_partition(cluster, topic, partition, start, &config)
        .await
        .map_err(Error::client("summary"))?;
    let count = (fp.high_watermark - start).max(0);
    for b in split_batches(fp.records).flatten() {
        if b.is_control() {
            continue;
        }
        if let Ok(mut recs) = b.records(&DecodeLimits::default()) {
            if let Some(Ok(r)) = recs.next() {
                return Ok((
                    count,
                    format!(
                        "key={} value={}",
                        printable(r.key.as_deref()),
                        printable(r.value.as_deref())
                    ),
                ));
            }
        }
    }
    Ok((count, "-".into()))
}
