//! protocol-client under injected faults on librdkafka's mock cluster: retriable errors on
//! Produce, Fetch and Metadata are retried, a leader move and a broker going down and up are
//! followed without loss or duplicates, and non-retriable errors surface with context.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use protocol_client::cluster::{ClientConfig, Cluster};
use protocol_client::fetcher::{Fetcher, FetcherConfig, IsolationLevel};
use protocol_client::producer::records::ProducerRecord;
use protocol_client::producer::{Producer, ProducerConfig};
use protocol_client::record::{split_batches, DecodeLimits};
use protocol_client::retry::RetryPolicy;
use protocol_client::ResponseError;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use strait_tests::mock::MockKafka;
use strait_tests::reference;

async fn connect(mock: &MockKafka) -> Arc<Cluster> {
    let mut cfg = ClientConfig::new(mock.bootstrap());
    cfg.retry = RetryPolicy {
        min_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(200),
        max_elapsed: Duration::from_secs(30),
    };
    cfg.conn.request_timeout = Duration::from_secs(5);
    Cluster::connect(cfg).await.expect("connect to mock")
}

fn record(topic: &str, partition: i32, i: usize) -> ProducerRecord {
    ProducerRecord {
        topic: topic.to_string(),
        partition: Some(partition),
        key: Some(Bytes::from(format!("k{i}"))),
        value: Some(Bytes::from(format!("v{i}"))),
        headers: vec![],
        timestamp: Some(1_700_000_000_000 + i as i64),
    }
}

/// Values of a partition as the reference consumer sees them, in offset order.
fn reference_values(mock: &MockKafka, topic: &str, partition: i32, n: usize) -> Vec<String> {
    reference::blocking(|| {
        reference::consume(
            mock.bootstrap(),
            topic,
            partition,
            0,
            n,
            Duration::from_secs(30),
        )
    })
    .into_iter()
    .map(|r| String::from_utf8(r.value.unwrap()).unwrap())
    .collect()
}

async fn produce_range(
    producer: &Producer,
    topic: &str,
    partition: i32,
    range: std::ops::Range<usize>,
) -> Vec<i64> {
    let mut pending = Vec::new();
    for i in range {
        pending.push(
            producer
                .send_nowait(record(topic, partition, i))
                .await
                .expect("queue"),
        );
    }
    producer.flush_records().await;
    let mut offsets = Vec::new();
    for p in pending {
        offsets.push(p.await.expect("ack").expect("produced").offset);
    }
    offsets
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retriable_errors_on_produce_fetch_and_metadata_are_retried() {
    strait_tests::init_tracing();
    let mock = MockKafka::start(3);
    mock.create_topic("retry", 2);
    let cluster = connect(&mock).await;
    let producer = Producer::new(cluster.clone(), ProducerConfig::default())
        .await
        .unwrap();
    let c = mock.cluster();
    c.request_errors(
        RDKafkaApiKey::Produce,
        &[
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS,
        ],
    );
    c.request_errors(
        RDKafkaApiKey::Metadata,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR__TRANSPORT],
    );
    let offsets = produce_range(&producer, "retry", 0, 0..100).await;
    assert_eq!(
        offsets,
        (0..100).collect::<Vec<i64>>(),
        "every record once, in order"
    );
    let want: Vec<String> = (0..100).map(|i| format!("v{i}")).collect();
    assert_eq!(reference_values(&mock, "retry", 0, 100), want);

    c.request_errors(
        RDKafkaApiKey::Fetch,
        &[
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__TRANSPORT,
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART,
        ],
    );
    let mut fetcher = Fetcher::new(
        cluster.clone(),
        FetcherConfig {
            max_wait: Duration::from_millis(50),
            isolation: IsolationLevel::ReadUncommitted,
            ..FetcherConfig::default()
        },
    );
    fetcher.assign("retry", 0, 0);
    let mut got = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while got.len() < 100 {
        assert!(
            std::time::Instant::now() < deadline,
            "fetched only {}",
            got.len()
        );
        for p in fetcher.poll().await.expect("poll survives injected errors") {
            for b in split_batches(p.records) {
                let b = b.unwrap();
                for r in b.records(&DecodeLimits::default()).unwrap() {
                    let r = r.unwrap();
                    if r.offset(b.base_offset()) >= p.fetch_offset {
                        got.push(String::from_utf8(r.value.unwrap().to_vec()).unwrap());
                    }
                }
            }
        }
    }
    assert_eq!(got, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_move_is_followed_without_loss_or_duplicates() {
    strait_tests::init_tracing();
    let mock = MockKafka::start(3);
    mock.create_topic("moves", 1);
    let cluster = connect(&mock).await;
    let producer = Producer::new(cluster.clone(), ProducerConfig::default())
        .await
        .unwrap();
    let mut offsets = produce_range(&producer, "moves", 0, 0..50).await;
    let first_leader = cluster.leader("moves", 0).await.unwrap().id;
    let next_leader = if first_leader == 1 { 2 } else { 1 };
    mock.cluster()
        .partition_leader("moves", 0, Some(next_leader))
        .unwrap();
    offsets.extend(produce_range(&producer, "moves", 0, 50..100).await);
    assert_eq!(
        cluster.leader("moves", 0).await.unwrap().id,
        next_leader,
        "leader move followed"
    );
    assert_eq!(offsets, (0..100).collect::<Vec<i64>>());
    let want: Vec<String> = (0..100).map(|i| format!("v{i}")).collect();
    assert_eq!(
        reference_values(&mock, "moves", 0, 100),
        want,
        "no loss, no duplicates"
    );
}

/// The leader goes down while records are in flight and comes back: every record is written
/// once, in order. (librdkafka's mock mis-stores appends when a leader *move* is followed by
/// that broker bouncing — base offset left at 0, high watermark stuck — so the two faults are
/// tested separately.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_going_down_and_up_loses_and_duplicates_nothing() {
    strait_tests::init_tracing();
    let mock = MockKafka::start(3);
    mock.create_topic("bounce", 1);
    let cluster = connect(&mock).await;
    let producer = Producer::new(cluster.clone(), ProducerConfig::default())
        .await
        .unwrap();
    let mut offsets = produce_range(&producer, "bounce", 0, 0..20).await;
    let leader = cluster.leader("bounce", 0).await.unwrap().id;
    let mut pending = Vec::new();
    for i in 20..200 {
        pending.push(producer.send_nowait(record("bounce", 0, i)).await.unwrap());
        if i == 60 {
            mock.cluster().broker_down(leader).unwrap();
            tokio::time::sleep(Duration::from_millis(300)).await;
            mock.cluster().broker_up(leader).unwrap();
        }
    }
    producer.flush_records().await;
    for p in pending {
        offsets.push(
            p.await
                .unwrap()
                .expect("produced across broker down/up")
                .offset,
        );
    }
    assert_eq!(offsets, (0..200).collect::<Vec<i64>>());
    let want: Vec<String> = (0..200).map(|i| format!("v{i}")).collect();
    assert_eq!(
        reference_values(&mock, "bounce", 0, 200),
        want,
        "no loss, no duplicates"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_retriable_errors_surface_at_once_with_context() {
    strait_tests::init_tracing();
    let mock = MockKafka::start(1);
    mock.create_topic("denied", 1);
    let cluster = connect(&mock).await;
    let producer = Producer::new(cluster.clone(), ProducerConfig::default())
        .await
        .unwrap();
    mock.cluster().request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED],
    );
    let started = std::time::Instant::now();
    let err = producer.send(record("denied", 0, 0)).await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "not retried for long"
    );
    assert_eq!(
        err.response_error(),
        Some(ResponseError::TopicAuthorizationFailed),
        "{err}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("topic denied partition 0") && msg.contains("Produce"),
        "{msg}"
    );
    // The producer recovers (new epoch) and the next record is written.
    let ok = producer
        .send(record("denied", 0, 1))
        .await
        .expect("later record succeeds");
    assert_eq!(ok.offset, 0);
}

/// OUT_OF_ORDER_SEQUENCE_NUMBER / UNKNOWN_PRODUCER_ID not explained by an earlier failure: the
/// producer bumps its epoch, renumbers, and every record is still written once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequence_errors_bump_the_epoch_and_lose_nothing() {
    strait_tests::init_tracing();
    let mock = MockKafka::start(1);
    mock.create_topic("seq", 1);
    let cluster = connect(&mock).await;
    let producer = Producer::new(cluster.clone(), ProducerConfig::default())
        .await
        .unwrap();
    let mut offsets = produce_range(&producer, "seq", 0, 0..10).await;
    let before = producer.producer_id_and_epoch();
    for code in [
        RDKafkaRespErr::RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER,
        RDKafkaRespErr::RD_KAFKA_RESP_ERR_UNKNOWN_PRODUCER_ID,
    ] {
        mock.cluster()
            .request_errors(RDKafkaApiKey::Produce, &[code]);
        let n = offsets.len();
        offsets.extend(produce_range(&producer, "seq", 0, n..n + 10).await);
    }
    let after = producer.producer_id_and_epoch();
    assert_ne!(before, after, "epoch bumped (or a new producer id)");
    assert_eq!(offsets, (0..30).collect::<Vec<i64>>());
    let want: Vec<String> = (0..30).map(|i| format!("v{i}")).collect();
    assert_eq!(reference_values(&mock, "seq", 0, 30), want);
}

/// A position past the end is reset by the policy (earliest) instead of failing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_range_positions_are_reported_and_past_the_end_is_not_reset() {
    let mock = MockKafka::start(1);
    mock.create_topic("range", 1);
    let cluster = connect(&mock).await;
    let producer = Producer::new(cluster.clone(), ProducerConfig::default())
        .await
        .unwrap();
    produce_range(&producer, "range", 0, 0..10).await;
    let mut fetcher = Fetcher::new(
        cluster.clone(),
        FetcherConfig {
            max_wait: Duration::from_millis(50),
            isolation: IsolationLevel::ReadUncommitted,
            ..FetcherConfig::default()
        },
    );
    // Past the end of the log (a re-created topic, a truncated log): reported, paused, never
    // silently reset to the beginning (that would re-replicate the whole partition).
    fetcher.assign("range", 0, 1000);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let reports = loop {
        assert!(
            std::time::Instant::now() < deadline,
            "no out-of-range report"
        );
        let got = fetcher
            .poll()
            .await
            .expect("out of range is not an error with Earliest");
        assert!(
            got.iter().all(|p| p.records.is_empty()),
            "nothing fetched past the end"
        );
        let r = fetcher.take_out_of_range();
        if !r.is_empty() {
            break r;
        }
    };
    assert_eq!(reports.len(), 1, "{reports:?}");
    let r = &reports[0];
    assert_eq!(
        (
            &*r.topic,
            r.partition,
            r.fetch_offset,
            r.log_start_offset,
            r.high_watermark,
            r.reset_to,
            r.kind
        ),
        (
            "range",
            0,
            1000,
            0,
            10,
            None,
            protocol_client::fetcher::OutOfRangeKind::AboveLogEnd
        )
    );
    assert!(fetcher.is_paused("range", 0));
    assert_eq!(fetcher.position("range", 0), Some(1000));
    // The caller decides: here, read from the start again.
    fetcher.seek("range", 0, 0);
    fetcher.resume("range", 0);
    let mut first = None;
    while first.is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "position {:?}",
            fetcher.position("range", 0)
        );
        for p in fetcher.poll().await.expect("poll") {
            if let Some(b) = split_batches(p.records).next() {
                first = Some(b.unwrap().base_offset());
            }
        }
    }
    assert_eq!(first, Some(0));
    // With the Error policy it surfaces with context.
    let mut strict = Fetcher::new(
        cluster.clone(),
        FetcherConfig {
            max_wait: Duration::from_millis(50),
            reset: protocol_client::fetcher::OffsetReset::Error,
            ..FetcherConfig::default()
        },
    );
    strict.assign("range", 0, 1000);
    let err = strict.poll().await.unwrap_err();
    assert_eq!(
        err.response_error(),
        Some(ResponseError::OffsetOutOfRange),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("topic range partition 0 offset 1000"),
        "{err}"
    );
}

/// Every batch of `topic`/`partition` in log order: (first record's value, producer id, epoch,
/// base sequence), read raw with protocol-client's fetcher.
async fn stored_batches(
    cluster: &Arc<Cluster>,
    topic: &str,
    partition: i32,
) -> Vec<(String, i64, i16, i32)> {
    let mut fetcher = Fetcher::new(
        cluster.clone(),
        FetcherConfig {
            max_wait: Duration::from_millis(50),
            isolation: IsolationLevel::ReadUncommitted,
            ..FetcherConfig::default()
        },
    );
    fetcher.assign(topic, partition, 0);
    let mut out = Vec::new();
    let mut next = 0;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        assert!(std::time::Instant::now() < deadline, "read only {out:?}");
        let mut end = None;
        for p in fetcher.poll().await.expect("fetch") {
            end = Some(p.high_watermark);
            for b in split_batches(p.records) {
                let b = b.unwrap();
                if b.base_offset() < next {
                    continue;
                }
                next = b.next_offset();
                let first = b.records(&DecodeLimits::default()).unwrap().next();
                let value = String::from_utf8(first.unwrap().unwrap().value.unwrap().to_vec());
                out.push((
                    value.unwrap(),
                    b.producer_id(),
                    b.producer_epoch(),
                    b.base_sequence(),
                ));
            }
        }
        if end.is_some_and(|end| next >= end && end > 0) {
            return out;
        }
    }
}

/// A Produce the broker wrote but whose answer the producer never got: librdkafka's mock
/// appends at once and holds the answer for the broker's round-trip time, longer than the
/// client's request timeout. The producer retries. The mock does not deduplicate an idempotent
/// producer without a transactional id (`rd_kafka_mock_validate_records` checks sequences for
/// transactional producers only), so each attempt lands in its log; Apache Kafka writes an
/// attempt with the producer id, epoch and sequence of one it has once and answers the
/// original offset. So: every attempt must carry its first attempt's producer id, epoch and
/// sequence — on a plain retry, and when another partition bumps the epoch meanwhile
/// (OUT_OF_ORDER_SEQUENCE_NUMBER on it while the answer is outstanding): renumbering the lost
/// write under the new epoch would make Kafka write it twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_whose_answer_was_lost_is_retried_under_its_sequence_even_across_an_epoch_bump() {
    strait_tests::init_tracing();
    let mock = MockKafka::start(2);
    mock.create_topic("lost", 2);
    mock.cluster().partition_leader("lost", 0, Some(1)).unwrap();
    mock.cluster().partition_leader("lost", 1, Some(2)).unwrap();
    let mut cfg = ClientConfig::new(mock.bootstrap());
    cfg.retry = RetryPolicy {
        min_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(200),
        max_elapsed: Duration::from_secs(30),
    };
    cfg.conn.request_timeout = Duration::from_secs(1);
    let cluster = Cluster::connect(cfg).await.expect("connect to mock");
    let producer = Producer::new(cluster.clone(), ProducerConfig::default())
        .await
        .unwrap();
    produce_range(&producer, "lost", 0, 0..1).await;
    produce_range(&producer, "lost", 1, 0..1).await;
    let slow = Duration::from_millis(1500);

    // 1. Written, answer lost, retried; no sequence error anywhere.
    let first_identity = producer.producer_id_and_epoch();
    mock.cluster().broker_round_trip_time(2, slow).unwrap();
    let lost = producer.send_nowait(record("lost", 1, 1)).await.unwrap();
    // The first attempt times out after 1 s and is retried (and written again by the mock).
    tokio::time::sleep(Duration::from_millis(1200)).await;
    mock.cluster()
        .broker_round_trip_time(2, Duration::ZERO)
        .unwrap();
    lost.await.unwrap().expect("v1 acknowledged in the end");
    assert_eq!(producer.producer_id_and_epoch(), first_identity, "no bump");

    // 2. Written, answer lost, while partition 0 (on broker 1) gets OUT_OF_ORDER_SEQUENCE_NUMBER
    //    for its next batch and the producer bumps its epoch for it.
    mock.cluster().broker_round_trip_time(2, slow).unwrap();
    let lost = producer.send_nowait(record("lost", 1, 2)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    mock.cluster().request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER],
    );
    let gap = producer.send_nowait(record("lost", 0, 1)).await.unwrap();
    // The InitProducerId for the new epoch may have to wait out broker 2's delay.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while producer.producer_id_and_epoch() == first_identity {
        assert!(std::time::Instant::now() < deadline, "no epoch bump");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // At least one more attempt of the lost write goes out after the bump.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    mock.cluster()
        .broker_round_trip_time(2, Duration::ZERO)
        .unwrap();
    lost.await.unwrap().expect("v2 acknowledged in the end");
    gap.await.unwrap().expect("partition 0 recovers");

    let log = stored_batches(&cluster, "lost", 1).await;
    for v in ["v1", "v2"] {
        let copies: Vec<_> = log.iter().filter(|b| b.0 == v).collect();
        assert!(
            copies.len() >= 2,
            "the mock wrote {v} and at least one retry: {log:?}"
        );
        assert!(
            copies
                .iter()
                .all(|c| (c.1, c.2, c.3) == (copies[0].1, copies[0].2, copies[0].3)),
            "every attempt of {v} under its first producer id, epoch and sequence: {log:?}"
        );
    }
    assert_eq!(log[0].0, "v0");
    assert_eq!(
        (log[0].1, log[0].2),
        first_identity,
        "partition 1 kept its producer identity"
    );
}
