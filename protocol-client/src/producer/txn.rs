//! Requests to a transactional id's transaction coordinator (KIP-98): InitProducerId,
//! AddPartitionsToTxn and EndTxn.
//!
//! Versions are those of a "transaction version 1" client (what the Java producer speaks when
//! the cluster has not finalised `transaction.version` 2, KIP-890): AddPartitionsToTxn ≤ v3
//! (v4+ is the brokers' batched form and marks the transaction as version 2), EndTxn ≤ v4 (v5
//! bumps the epoch at every commit), InitProducerId ≤ v5; the producer sends transactional
//! Produce requests at ≤ v11 (v12 adds partitions implicitly, a version-2 transaction).
//!
//! Errors: NOT_COORDINATOR and COORDINATOR_NOT_AVAILABLE look the coordinator up again;
//! COORDINATOR_LOAD_IN_PROGRESS and CONCURRENT_TRANSACTIONS (a fenced predecessor's abort
//! still being written) are retried; PRODUCER_FENCED and INVALID_PRODUCER_EPOCH mean another
//! producer took the transactional id ([`Error::Fenced`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::{
    AddPartitionsToTxnRequest, ApiKey, EndTxnRequest, InitProducerIdRequest, ProducerId, TopicName,
    TransactionalId,
};
use kafka_protocol::protocol::StrBytes;
use tracing::debug;

use crate::cluster::{Cluster, ConnKind, CoordinatorType};
use crate::conn::Connection;
use crate::error::{Error, ResponseError, Result};
use crate::retry::Backoff;

/// Highest Produce version for transactional batches (v12 is a version-2 transaction).
pub(super) const MAX_TXN_PRODUCE_VERSION: i16 = 11;

/// Whether `e` says another producer took the transactional id.
pub(super) fn is_fenced(e: &Error) -> bool {
    matches!(
        e.response_error(),
        Some(ResponseError::ProducerFenced | ResponseError::InvalidProducerEpoch)
    )
}

fn fenced(txn_id: &str, what: &str, e: &Error) -> Error {
    Error::Fenced {
        transactional_id: txn_id.to_string(),
        reason: format!("{what}: {e}"),
    }
}

/// The coordinator's connection, forgetting the coordinator when it cannot be reached.
async fn coordinator(cluster: &Cluster, txn_id: &str) -> Result<Arc<Connection>> {
    let broker = cluster
        .coordinator(CoordinatorType::Transaction, txn_id)
        .await?;
    match cluster.connection(&broker, ConnKind::Control).await {
        Ok(c) => Ok(c),
        Err(e) => {
            cluster.invalidate_coordinator(CoordinatorType::Transaction, txn_id);
            Err(e)
        }
    }
}

/// Runs `op` against the coordinator with the cluster's retry policy, looking the coordinator
/// up again after errors that say it moved.
async fn with_coordinator<T, F, Fut>(
    cluster: &Cluster,
    txn_id: &str,
    what: &str,
    mut op: F,
) -> Result<T>
where
    F: FnMut(Arc<Connection>) -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let mut backoff = Backoff::new(&cluster.config().retry, Instant::now());
    loop {
        let r = match coordinator(cluster, txn_id).await {
            Ok(conn) => op(conn).await,
            Err(e) => Err(e),
        };
        let e = match r {
            Ok(v) => return Ok(v),
            Err(e) if is_fenced(&e) => return Err(fenced(txn_id, what, &e)),
            Err(e) => e,
        };
        if e.needs_metadata_refresh() {
            cluster.invalidate_coordinator(CoordinatorType::Transaction, txn_id);
        }
        if !e.is_retriable() {
            return Err(e);
        }
        let Some(delay) = backoff.next_delay(Instant::now()) else {
            return Err(Error::RetriesExhausted {
                attempts: backoff.attempts(),
                elapsed: backoff.elapsed(Instant::now()),
                last: Box::new(e),
            });
        };
        debug!(what, transactional_id = txn_id, attempt = backoff.attempts(), ?delay, error = %e, "retrying");
        cluster.retries().note(what, &e);
        tokio::time::sleep(delay).await;
    }
}

/// InitProducerId for `txn_id`: fences every earlier producer of the id (its epoch is bumped;
/// an open transaction of it is aborted, CONCURRENT_TRANSACTIONS until the abort is written).
/// `current` is this producer's own id and epoch when it bumps itself after an abort (KIP-360).
pub(super) async fn init(
    cluster: &Cluster,
    txn_id: &str,
    timeout: Duration,
    current: Option<(i64, i16)>,
) -> Result<(i64, i16)> {
    let timeout_ms = timeout.as_millis().min(i32::MAX as u128) as i32;
    with_coordinator(cluster, txn_id, "InitProducerId", |conn| async move {
        let version = conn.version(ApiKey::InitProducerId)?.min(5);
        let (id, epoch) = match current {
            Some(c) if version >= 3 => c,
            _ => (-1, -1),
        };
        let req = InitProducerIdRequest::default()
            .with_transactional_id(Some(TransactionalId(StrBytes::from_string(
                txn_id.to_string(),
            ))))
            .with_transaction_timeout_ms(timeout_ms)
            .with_producer_id(ProducerId(id))
            .with_producer_epoch(epoch);
        let resp = conn.send_versioned(&req, version).await?;
        if let Some(e) = Error::broker(
            ApiKey::InitProducerId,
            conn.broker(),
            Some(format!("transactional id {txn_id}")),
            resp.error_code,
            None,
        ) {
            return Err(e);
        }
        Ok((resp.producer_id.0, resp.producer_epoch))
    })
    .await
}

/// AddPartitionsToTxn: `parts` join the open transaction (before the first batch to each).
pub(super) async fn add_partitions(
    cluster: &Cluster,
    txn_id: &str,
    (producer_id, epoch): (i64, i16),
    parts: &[(Arc<str>, i32)],
) -> Result<()> {
    let mut topics: Vec<AddPartitionsToTxnTopic> = Vec::new();
    for (t, p) in parts {
        match topics.iter_mut().find(|x| *x.name.0 == **t) {
            Some(x) => x.partitions.push(*p),
            None => topics.push(
                AddPartitionsToTxnTopic::default()
                    .with_name(TopicName(StrBytes::from_string(t.to_string())))
                    .with_partitions(vec![*p]),
            ),
        }
    }
    let topics = &topics;
    with_coordinator(cluster, txn_id, "AddPartitionsToTxn", |conn| async move {
        let version = conn.version(ApiKey::AddPartitionsToTxn)?.min(3);
        let req = AddPartitionsToTxnRequest::default()
            .with_v3_and_below_transactional_id(TransactionalId(StrBytes::from_string(
                txn_id.to_string(),
            )))
            .with_v3_and_below_producer_id(ProducerId(producer_id))
            .with_v3_and_below_producer_epoch(epoch)
            .with_v3_and_below_topics(topics.clone());
        let resp = conn.send_versioned(&req, version).await?;
        // One failing partition makes the others OPERATION_NOT_ATTEMPTED: the first real
        // error is the answer.
        let mut first: Option<Error> = None;
        for t in &resp.results_by_topic_v3_and_below {
            for p in &t.results_by_partition {
                if p.partition_error_code == ResponseError::OperationNotAttempted.code() {
                    continue;
                }
                if let Some(e) = Error::broker(
                    ApiKey::AddPartitionsToTxn,
                    conn.broker(),
                    Some(format!(
                        "transactional id {txn_id}, topic {} partition {}",
                        t.name.0, p.partition_index
                    )),
                    p.partition_error_code,
                    None,
                ) {
                    first.get_or_insert(e);
                }
            }
        }
        match first {
            Some(e) => Err(e),
            None => Ok(()),
        }
    })
    .await
}

/// EndTxn: commits (`commit`) or aborts the open transaction.
pub(super) async fn end(
    cluster: &Cluster,
    txn_id: &str,
    (producer_id, epoch): (i64, i16),
    commit: bool,
) -> Result<()> {
    let what = if commit {
        "EndTxn(commit)"
    } else {
        "EndTxn(abort)"
    };
    with_coordinator(cluster, txn_id, what, |conn| async move {
        let version = conn.version(ApiKey::EndTxn)?.min(4);
        let req = EndTxnRequest::default()
            .with_transactional_id(TransactionalId(StrBytes::from_string(txn_id.to_string())))
            .with_producer_id(ProducerId(producer_id))
            .with_producer_epoch(epoch)
            .with_committed(commit);
        let resp = conn.send_versioned(&req, version).await?;
        match Error::broker(
            ApiKey::EndTxn,
            conn.broker(),
            Some(format!("transactional id {txn_id}")),
            resp.error_code,
            None,
        ) {
            Some(e) => Err(e),
            None => Ok(()),
        }
    })
    .await
}
