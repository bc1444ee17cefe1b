//! Self-tests of the test harness: real tansu clusters are independent, the reference client
//! round-trips data through them, and the mock cluster really injects faults.

use std::time::Duration;

use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use rdkafka::types::{RDKafkaApiKey, RDKafkaErrorCode, RDKafkaRespErr};
use strait_tests::mock::MockKafka;
use strait_tests::reference::{self, Outgoing};
use strait_tests::tansu::{api_versions_ok, start_clusters, TansuBroker};

#[test]
fn two_tansu_clusters_are_independent() {
    let clusters = start_clusters("harness", 2);
    assert_ne!(clusters[0].cluster_id(), clusters[1].cluster_id());
    assert_ne!(clusters[0].addr(), clusters[1].addr());
    let topic = strait_tests::unique("independent");
    for (i, c) in clusters.iter().enumerate() {
        reference::create_topic(&c.bootstrap(), &topic, 1);
        let recs: Vec<_> = (0..3)
            .map(|n| Outgoing::kv(format!("k{n}"), format!("cluster{i}-v{n}")))
            .collect();
        reference::produce(&c.bootstrap(), &topic, 0, &recs, &[]);
    }
    for (i, c) in clusters.iter().enumerate() {
        let got = reference::consume(&c.bootstrap(), &topic, 0, 0, 3, Duration::from_secs(20));
        let values: Vec<_> = got.iter().map(|r| r.value.clone().unwrap()).collect();
        let want: Vec<_> = (0..3)
            .map(|n| format!("cluster{i}-v{n}").into_bytes())
            .collect();
        assert_eq!(values, want, "cluster {i} holds only its own records");
        assert_eq!(
            got.iter().map(|r| r.offset).collect::<Vec<_>>(),
            vec![0, 1, 2]
        );
    }
}

#[test]
fn killed_broker_stops_answering() {
    let mut b = TansuBroker::start("harness-kill");
    assert!(api_versions_ok(b.addr()));
    b.kill();
    assert!(!api_versions_ok(b.addr()));
}

#[test]
fn mock_cluster_injects_a_non_retriable_produce_error() {
    let mock = MockKafka::start(1);
    mock.create_topic("faulty", 1);
    mock.cluster().request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED],
    );
    let (tx, rx) = std::sync::mpsc::channel();
    let ctx = Delivery(std::sync::Mutex::new(tx));
    let producer: ThreadedProducer<Delivery> = reference::base_config(mock.bootstrap())
        .set("message.send.max.retries", "0")
        .create_with_context(ctx)
        .expect("producer");
    producer
        .send(
            BaseRecord::<[u8], [u8]>::to("faulty")
                .partition(0)
                .payload(b"x"),
        )
        .map_err(|(e, _)| e)
        .expect("enqueue");
    producer.flush(Duration::from_secs(10)).ok();
    let first = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("delivery report");
    assert_eq!(first, Some(RDKafkaErrorCode::TopicAuthorizationFailed));
}

struct Delivery(std::sync::Mutex<std::sync::mpsc::Sender<Option<RDKafkaErrorCode>>>);
impl rdkafka::ClientContext for Delivery {}
impl rdkafka::producer::ProducerContext for Delivery {
    type DeliveryOpaque = ();
    fn delivery(&self, r: &rdkafka::message::DeliveryResult<'_>, _: ()) {
        let code = r.as_ref().err().and_then(|(e, _)| e.rdkafka_error_code());
        let _ = self.0.lock().unwrap().send(code);
    }
}
