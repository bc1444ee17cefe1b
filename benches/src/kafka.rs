//! Small Kafka helpers over `protocol-client` for the benches: connect, create a topic and wait
//! for its leaders, and read every partition's high watermark in one Fetch request per leader,
//! cheap enough to poll while a replicator runs.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kafka_protocol::messages::list_offsets_request::{
    ListOffsetsPartition, ListOffsetsRequest, ListOffsetsTopic,
};
use kafka_protocol::messages::{BrokerId, TopicName};
use kafka_protocol::protocol::StrBytes;
use protocol_client::admin::{Admin, NewTopic};
use protocol_client::cluster::{BrokerInfo, ClientConfig, Cluster, ConnKind};
use protocol_client::fetcher::{
    fetch_once, FetchPosition, FetcherConfig, IsolationLevel, OffsetReset,
};
use protocol_client::{Error, ResponseError, Result};

/// Connects to a cluster.
pub async fn connect(bootstrap: &str) -> Result<Arc<Cluster>> {
    let mut cfg = ClientConfig::new(bootstrap);
    cfg.conn.client_id = "strait-bench".into();
    Cluster::connect(cfg).await
}

/// Creates `topic` (replication factor 1, `configs` set) unless it exists, then waits until
/// every partition has a leader.
pub async fn create_topic(
    cluster: &Arc<Cluster>,
    topic: &str,
    partitions: i32,
    configs: &[(&str, &str)],
) -> Result<()> {
    let admin = Admin::new(cluster.clone());
    let res = admin
        .create_topics(&[NewTopic {
            name: topic.to_string(),
            partitions,
            replication_factor: 1,
            configs: configs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }])
        .await?;
    for (_, r) in res {
        match r {
            Ok(()) => {}
            Err(e) if e.response_error() == Some(ResponseError::TopicAlreadyExists) => {}
            Err(e) => return Err(e),
        }
    }
    cluster.track_topics([topic]);
    // Thousands of partitions take a broker tens of seconds to create.
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let md = cluster.refresh_metadata().await?;
        if let Some(t) = md.topics.get(topic) {
            if t.partitions.len() == partitions as usize
                && t.partitions.iter().all(|p| p.leader >= 0)
            {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            return Err(Error::Metadata(format!(
                "topic {topic} has no leaders for all {partitions} partitions in time"
            )));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// High watermarks of partitions `0..partitions` of `topic`.
///
/// ListOffsets alone cannot tell: tansu 0.6 answers `timestamp = -1` (latest) with the base
/// offset of the last batch rather than the log end offset. And tansu answers a Fetch with
/// `min_bytes = 0` with no partitions at all, and ignores `partition_max_bytes`. So this asks
/// ListOffsets for where the last batch starts, then Fetches from there (or from the last known
/// high watermark, if further): each answer holds at most the last batch of each partition and
/// carries the high watermark. One request of each kind per leader. `known` holds the previous
/// answer (or is empty) and is updated in place.
pub async fn high_watermarks(
    cluster: &Cluster,
    topic: &str,
    partitions: i32,
    known: &mut Vec<i64>,
) -> Result<()> {
    end_offsets(cluster, topic, partitions, known, false).await
}

/// [`high_watermarks`], or with `committed` the last stable offsets (what `read_committed`
/// consumers can read up to: the first offset of the oldest open transaction, else the high
/// watermark).
pub async fn end_offsets(
    cluster: &Cluster,
    topic: &str,
    partitions: i32,
    known: &mut Vec<i64>,
    committed: bool,
) -> Result<()> {
    known.resize(partitions as usize, 0);
    let last_batches = last_batch_offsets(cluster, topic, partitions).await?;
    let config = FetcherConfig {
        max_wait: Duration::from_millis(10),
        min_bytes: 1,
        max_bytes: 1,
        partition_max_bytes: 1,
        isolation: if committed {
            IsolationLevel::ReadCommitted
        } else {
            IsolationLevel::ReadUncommitted
        },
        reset: OffsetReset::Error,
        sessions: false,
    };
    let mut by_leader: HashMap<i32, (BrokerInfo, Vec<FetchPosition>)> = HashMap::new();
    let md = cluster.metadata();
    for p in 0..partitions {
        let leader = cluster.leader(topic, p).await?;
        let epoch = md.partition(topic, p).map_or(-1, |i| i.leader_epoch);
        by_leader
            .entry(leader.id)
            .or_insert_with(|| (leader, Vec::new()))
            .1
            .push(FetchPosition {
                topic: Arc::from(topic),
                partition: p,
                offset: known[p as usize].max(last_batches[p as usize]),
                leader_epoch: epoch,
            });
    }
    for (_, (broker, positions)) in by_leader {
        for fp in fetch_once(cluster, &broker, &config, &positions).await? {
            if fp.error.is_none() && (0..partitions).contains(&fp.partition) {
                let k = &mut known[fp.partition as usize];
                let end = if committed && fp.last_stable_offset >= 0 {
                    fp.last_stable_offset
                } else {
                    fp.high_watermark
                };
                *k = (*k).max(end);
            }
        }
    }
    Ok(())
}

/// What ListOffsets(latest) answers for partitions `0..partitions` (the log end offset on
/// Kafka, the last batch's base offset on tansu 0.6), one request per leader. A partition whose
/// answer is an error counts as 0.
pub async fn last_batch_offsets(
    cluster: &Cluster,
    topic: &str,
    partitions: i32,
) -> Result<Vec<i64>> {
    let mut by_leader: HashMap<i32, (BrokerInfo, Vec<i32>)> = HashMap::new();
    for p in 0..partitions {
        let leader = cluster.leader(topic, p).await?;
        by_leader
            .entry(leader.id)
            .or_insert_with(|| (leader, Vec::new()))
            .1
            .push(p);
    }
    let mut out = vec![0i64; partitions as usize];
    for (_, (broker, parts)) in by_leader {
        let req = ListOffsetsRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_isolation_level(0)
            .with_topics(vec![ListOffsetsTopic::default()
                .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                .with_partitions(
                    parts
                        .iter()
                        .map(|&p| {
                            ListOffsetsPartition::default()
                                .with_partition_index(p)
                                .with_current_leader_epoch(-1)
                                .with_timestamp(-1)
                        })
                        .collect(),
                )]);
        let resp = cluster.send_to(&broker, ConnKind::Control, &req).await?;
        for t in resp.topics {
            for p in t.partitions {
                if p.error_code == 0 && (0..partitions).contains(&p.partition_index) {
                    out[p.partition_index as usize] = p.offset.max(0);
                }
            }
        }
    }
    Ok(out)
}

/// Records in `topic` (sum of its high watermarks; topics written without transactions and
/// never truncated start at offset 0).
pub async fn total_records(cluster: &Cluster, topic: &str, partitions: i32) -> Result<i64> {
    let mut known = Vec::new();
    high_watermarks(cluster, topic, partitions, &mut known).await?;
    Ok(known.iter().sum())
}

/// Queues `rec` on a librdkafka producer, waiting while its queue is full (the baselines keep
/// the queue full on purpose); any other error is returned with `what` as context.
pub fn rdkafka_send<C: rdkafka::producer::ProducerContext<DeliveryOpaque = ()> + 'static>(
    producer: &rdkafka::producer::ThreadedProducer<C>,
    mut rec: rdkafka::producer::BaseRecord<'_, [u8], [u8]>,
    what: &str,
) -> std::result::Result<(), String> {
    loop {
        match producer.send(rec) {
            Ok(()) => return Ok(()),
            Err((e, back))
                if e.rdkafka_error_code() == Some(rdkafka::types::RDKafkaErrorCode::QueueFull) =>
            {
                std::thread::sleep(Duration::from_micros(200));
                rec = back;
            }
            Err((e, _)) => return Err(format!("{what}: {e}")),
        }
    }
}
