//! `strait status`: how far each flow is, computed from the clusters alone (like
//! `kafka-consumer-groups --describe`), so it works while Strait runs elsewhere or is stopped.
//!
//! Per source partition: the source's log start and end, how far it is mirrored (the larger of
//! Strait's offset-map frontier and MM2's progress, as a resume would pick), the lag, and the
//! last offset sync. Per group: the latest checkpoint and its age.

use std::collections::BTreeMap;
use std::sync::Arc;

use protocol_client::cluster::Cluster;
use protocol_client::fetcher::{join_all, list_offset, IsolationLevel, OffsetSpec};
use serde::Serialize;

use crate::config::FlowConfig;
use crate::error::{Error, Result};
use crate::flow::selected_topics;
use crate::formats::Checkpoint;
use crate::internal::{read_offset_maps, read_offset_syncs, read_progress, read_to_end};

/// One source partition.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PartitionStatus {
    /// Source topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Remote topic on the target.
    pub remote_topic: String,
    /// Source log start offset (`None`: ListOffsets failed).
    pub log_start: Option<i64>,
    /// Source high watermark (`None`: ListOffsets failed).
    pub end: Option<i64>,
    /// Next source offset to mirror (everything below is on the target), if known.
    pub mirrored: Option<i64>,
    /// `end - mirrored` (0 at least), if known.
    pub lag: Option<i64>,
    /// The last offset sync (upstream, downstream), if any.
    pub last_sync: Option<(i64, i64)>,
}

/// A group's latest checkpoint for one remote partition.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct GroupStatus {
    /// Consumer group.
    pub group: String,
    /// Topic on the target.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// The group's committed offset on the source.
    pub upstream: i64,
    /// Where it continues on the target.
    pub downstream: i64,
    /// Milliseconds since the checkpoint was written.
    pub age_ms: i64,
}

/// One flow.
#[derive(Debug, Clone, Serialize)]
pub struct FlowStatus {
    /// Source alias.
    pub source: String,
    /// Target alias.
    pub target: String,
    /// Per source partition.
    pub partitions: Vec<PartitionStatus>,
    /// Per group and remote partition.
    pub groups: Vec<GroupStatus>,
}

/// Reads the status of flow `fc` from its clusters (`syncs`: the cluster holding its offset
/// syncs) at `now_ms`.
pub async fn flow_status(
    fc: &FlowConfig,
    source: &Arc<Cluster>,
    target: &Arc<Cluster>,
    syncs: &Arc<Cluster>,
    now_ms: i64,
) -> Result<FlowStatus> {
    let md = source
        .refresh_all_topics()
        .await
        .map_err(Error::client(&fc.source))?;
    let topics = selected_topics(fc, &md);
    let keys: Vec<(String, i32)> = topics
        .iter()
        .flat_map(|(t, n)| (0..*n).map(move |p| (t.clone(), p)))
        .collect();
    let ranges = join_all(keys.iter().map(|(t, p)| async move {
        let start = list_offset(
            source,
            t,
            *p,
            OffsetSpec::Earliest,
            IsolationLevel::ReadUncommitted,
        );
        let end = list_offset(
            source,
            t,
            *p,
            OffsetSpec::Latest,
            IsolationLevel::ReadUncommitted,
        );
        let (start, end) = tokio::join!(start, end);
        Ok::<_, protocol_client::Error>((start?.offset, end?.offset))
    }))
    .await;

    let maps = read_offset_maps(target, &fc.target, &fc.source, fc.offset_map_max_runs).await?;
    let progress = read_progress(target, fc).await?;
    let (sync_topic, sync_alias) = fc.offset_syncs_topic();
    let mut last_sync: BTreeMap<(String, i32), (i64, i64)> = BTreeMap::new();
    for s in read_offset_syncs(syncs, sync_alias, &sync_topic).await? {
        last_sync.insert(
            (s.topic, s.partition),
            (s.upstream_offset, s.downstream_offset),
        );
    }

    let mut partitions = Vec::with_capacity(keys.len());
    for ((topic, partition), range) in keys.into_iter().zip(ranges) {
        // One partition the source cannot answer for (no leader) does not hide the others.
        let (log_start, end) = match range {
            Ok((start, end)) => (Some(start), Some(end)),
            Err(_) => (None, None),
        };
        let key = (topic.clone(), partition);
        let frontier = maps
            .get(&key)
            .and_then(|m| m.as_ref().ok())
            .and_then(|m| m.frontier());
        let mirrored = match (frontier, progress.get(&key).copied()) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        partitions.push(PartitionStatus {
            remote_topic: fc.policy.format_remote_topic(&fc.source, &topic),
            log_start,
            end,
            lag: end.zip(mirrored).map(|(end, m)| (end - m).max(0)),
            mirrored,
            last_sync: last_sync.get(&key).copied(),
            topic,
            partition,
        });
    }

    let mut latest: BTreeMap<(String, String, i32), (Checkpoint, i64)> = BTreeMap::new();
    if fc.emit_checkpoints {
        for r in read_to_end(target, &fc.target, &fc.checkpoints_topic()).await? {
            let Some(k) = r.key else { continue };
            match (r.value, Checkpoint::decode_key(&k)) {
                (Some(v), _) => {
                    if let Ok(cp) = Checkpoint::decode(&k, Some(&v)) {
                        latest.insert(
                            (cp.consumer_group_id.clone(), cp.topic.clone(), cp.partition),
                            (cp, r.timestamp),
                        );
                    }
                }
                // A tombstone deletes the group's checkpoint for that partition.
                (None, Ok(key)) => {
                    latest.remove(&key);
                }
                (None, Err(_)) => {}
            }
        }
    }
    let groups = latest
        .into_values()
        .map(|(cp, written)| GroupStatus {
            group: cp.consumer_group_id,
            topic: cp.topic,
            partition: cp.partition,
            upstream: cp.upstream_offset,
            downstream: cp.downstream_offset,
            age_ms: (now_ms - written).max(0),
        })
        .collect();
    Ok(FlowStatus {
        source: fc.source.clone(),
        target: fc.target.clone(),
        partitions,
        groups,
    })
}

/// The human form: a table per flow.
pub fn render(flows: &[FlowStatus]) -> String {
    let mut out = String::new();
    let opt = |v: Option<i64>| v.map_or("-".to_string(), |v| v.to_string());
    for f in flows {
        let lag: i64 = f.partitions.iter().filter_map(|p| p.lag).sum();
        let unknown = f.partitions.iter().filter(|p| p.lag.is_none()).count();
        out.push_str(&format!(
            "flow {}->{}: {} partitions, lag {lag} records{}\n",
            f.source,
            f.target,
            f.partitions.len(),
            if unknown > 0 {
                format!(" ({unknown} never mirrored)")
            } else {
                String::new()
            }
        ));
        out.push_str("  PARTITION\tREMOTE\tLOG-START\tEND\tMIRRORED\tLAG\tLAST-SYNC\n");
        for p in &f.partitions {
            out.push_str(&format!(
                "  {}/{}\t{}\t{}\t{}\t{}\t{}\t{}\n",
                p.topic,
                p.partition,
                p.remote_topic,
                opt(p.log_start),
                opt(p.end),
                opt(p.mirrored),
                opt(p.lag),
                p.last_sync
                    .map_or("-".to_string(), |(u, d)| format!("{u}->{d}"))
            ));
        }
        if !f.groups.is_empty() {
            out.push_str("  GROUP\tPARTITION\tUPSTREAM\tDOWNSTREAM\tCHECKPOINT-AGE\n");
            for g in &f.groups {
                out.push_str(&format!(
                    "  {}\t{}/{}\t{}\t{}\t{:.1}s\n",
                    g.group,
                    g.topic,
                    g.partition,
                    g.upstream,
                    g.downstream,
                    g.age_ms as f64 / 1000.0
                ));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_a_table() {
        let f = FlowStatus {
            source: "A".into(),
            target: "B".into(),
            partitions: vec![
                PartitionStatus {
                    topic: "orders".into(),
                    partition: 0,
                    remote_topic: "A.orders".into(),
                    log_start: Some(0),
                    end: Some(120),
                    mirrored: Some(100),
                    lag: Some(20),
                    last_sync: Some((99, 99)),
                },
                PartitionStatus {
                    topic: "orders".into(),
                    partition: 1,
                    remote_topic: "A.orders".into(),
                    log_start: Some(5),
                    end: Some(5),
                    mirrored: None,
                    lag: None,
                    last_sync: None,
                },
            ],
            groups: vec![GroupStatus {
                group: "g".into(),
                topic: "A.orders".into(),
                partition: 0,
                upstream: 90,
                downstream: 90,
                age_ms: 1500,
            }],
        };
        let text = render(&[f]);
        assert!(
            text.starts_with("flow A->B: 2 partitions, lag 20 records (1 never mirrored)\n"),
            "{text}"
        );
        assert!(
            text.contains("  orders/0\tA.orders\t0\t120\t100\t20\t99->99\n"),
            "{text}"
        );
        assert!(
            text.contains("  orders/1\tA.orders\t5\t5\t-\t-\t-\n"),
            "{text}"
        );
        assert!(text.contains("  g\tA.orders/0\t90\t90\t1.5s\n"), "{text}");
    }
}
