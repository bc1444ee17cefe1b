//! librdkafka's mock cluster: a second, in-process Kafka implementation with fault injection
//! (request errors per API, broker down/up, leader moves, round-trip delays).
//!
//! Limits (see `tests/README.md`): no admin APIs, no SASL, keeps only ~5 MiB per partition.

use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, DefaultProducerContext, Producer};
use rdkafka::ClientConfig;

/// A mock cluster owned by a librdkafka client handle created with `test.mock.num.brokers`.
///
/// The group coordinator's initial rebalance delay is set to 0 so group tests are fast.
pub struct MockKafka {
    handle: BaseProducer,
    bootstrap: String,
}

impl std::fmt::Debug for MockKafka {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockKafka")
            .field("bootstrap", &self.bootstrap)
            .finish()
    }
}

impl MockKafka {
    /// Starts a mock cluster of `brokers` brokers.
    pub fn start(brokers: i32) -> MockKafka {
        let handle: BaseProducer = ClientConfig::new()
            .set("test.mock.num.brokers", brokers.to_string())
            .set("log_level", "3")
            .create()
            .expect("create librdkafka mock cluster");
        let bootstrap = handle
            .client()
            .mock_cluster()
            .expect("client was created with test.mock.num.brokers")
            .bootstrap_servers();
        let mock = MockKafka { handle, bootstrap };
        mock.set_group_initial_rebalance_delay_ms(0);
        mock
    }

    /// The mock brokers' `host:port` list.
    pub fn bootstrap(&self) -> &str {
        &self.bootstrap
    }

    /// The fault-injection API (request errors, broker down/up, leaders, round-trip times).
    pub fn cluster(&self) -> MockCluster<'_, DefaultProducerContext> {
        self.handle
            .client()
            .mock_cluster()
            .expect("client was created with test.mock.num.brokers")
    }

    /// Sets the group coordinator's initial rebalance delay (librdkafka's default is 3 s).
    #[allow(unsafe_code)]
    pub fn set_group_initial_rebalance_delay_ms(&self, delay_ms: i32) {
        let rk = self.handle.client().native_ptr();
        // SAFETY: `rk` is a live librdkafka handle owned by `self.handle`, created with
        // `test.mock.num.brokers`, so it owns a mock cluster for its whole life; the function
        // only stores an integer in that cluster's defaults. The rdkafka crate has no safe
        // wrapper for it (its `MockCluster` keeps the raw pointer private).
        unsafe {
            let mc = rdkafka::bindings::rd_kafka_handle_mock_cluster(rk);
            assert!(!mc.is_null(), "librdkafka handle has no mock cluster");
            rdkafka::bindings::rd_kafka_mock_group_initial_rebalance_delay_ms(mc, delay_ms);
        }
    }

    /// Creates a topic on the mock (it has no CreateTopics API of its own).
    pub fn create_topic(&self, topic: &str, partitions: i32) {
        self.cluster()
            .create_topic(topic, partitions, 1)
            .expect("mock create_topic");
    }
}
