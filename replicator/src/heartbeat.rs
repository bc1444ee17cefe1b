//! Heartbeats (MM2 `MirrorHeartbeatConnector`): every `emit.heartbeats.interval.seconds` a
//! `Heartbeat(source, target, now)` record goes to the `heartbeats` topic of the target cluster
//! (partition 0, record timestamp = heartbeat timestamp). Replicating a cluster's `heartbeats`
//! topic onward (as `A.heartbeats`) is how MM2 tools learn upstream clusters and hops.

use std::time::Duration;

use protocol_client::admin::Admin;
use protocol_client::producer::Producer;
use tokio::sync::watch;
use tracing::{debug, warn};

use crate::error::{Error, Result};
use crate::flow::internal_record;
use crate::formats::Heartbeat;
use crate::internal::ensure_compacted_topic;

/// Emits heartbeats for the pair until `stop`.
pub async fn heartbeat_loop(
    producer: Producer,
    source: String,
    target: String,
    topic: String,
    interval: Duration,
    replication_factor: i16,
    mut stop: watch::Receiver<bool>,
) -> Result<()> {
    let admin = Admin::new(producer.cluster().clone());
    ensure_compacted_topic(&admin, &target, &topic, 1, replication_factor).await?;
    let mut tick = tokio::time::interval(interval.max(Duration::from_millis(10)));
    loop {
        // Stop first: no heartbeat is written once the stop is asked for (the flows stop
        // fetching then, and would leave it behind).
        tokio::select! {
            biased;
            _ = stop.changed() => return Ok(()),
            _ = tick.tick() => {}
        }
        if *stop.borrow() {
            return Ok(());
        }
        let now = crate::flow::now_ms();
        let hb = Heartbeat {
            source_cluster_alias: source.clone(),
            target_cluster_alias: target.clone(),
            timestamp: now,
        };
        let key = hb.encode_key().map_err(|source| Error::Format {
            context: topic.clone(),
            source,
        })?;
        let rec = internal_record(&topic, Some(0), key, Some(hb.encode_value()), now);
        match producer.send(rec).await {
            Ok(md) => debug!(%source, %target, offset = md.offset, "heartbeat"),
            // A refusal (TLS, SASL) stops the process, as it stops the flows: no later
            // heartbeat can get past it.
            Err(e) if e.is_security() => return Err(Error::client(&target)(e)),
            Err(e) => warn!(%source, %target, error = %e, "heartbeat failed"),
        }
    }
}
