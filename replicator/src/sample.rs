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
    let mut topics: Vec<_> = md.topics.values().collect();
    topics.sort_by(|a, b| a.name.cmp(&b.name));
    println!("cluster {bootstrap}:");
    for t in topics {
        for p in &t.partitions {
            let (end, first) = first_record(&cluster, &t.name, p.partition).await?;
            println!(
                "  {:<40} partition {:>2}: {:>7} records  first: {}",
                t.name, p.partition, end, first
            );
        }
    }
    Ok(())
}

async fn first_record(
    cluster: &Arc<Cluster>,
    topic: &str,
    partition: i32,
) -> Result<(i64, String)> {
    let config = FetcherConfig {
        max_wait: Duration::from_millis(10),
        isolation: IsolationLevel::ReadUncommitted,
        partition_max_bytes: 64 * 1024,
        ..FetcherConfig::default()
    };
    let fp = fetch_partition(cluster, topic, partition, 0, &config)
        .await
        .map_err(Error::client("summary"))?;
    for b in split_batches(fp.records).flatten() {
        if b.is_control() {
            continue;
        }
        if let Ok(mut recs) = b.records(&DecodeLimits::default()) {
            if let Some(Ok(r)) = recs.next() {
                let show = |v: &Option<Bytes>| {
                    v.as_ref()
                        .map(|v| {
                            String::from_utf8_lossy(v)
                                .chars()
                                .take(60)
                                .collect::<String>()
                        })
                        .unwrap_or_else(|| "null".into())
                };
                return Ok((
                    fp.high_watermark,
                    format!("key={} value={}", show(&r.key), show(&r.value)),
                ));
            }
        }
    }
    Ok((fp.high_watermark, "-".into()))
}
