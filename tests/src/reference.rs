//! librdkafka as the independent reference client: it writes the test data Strait must carry
//! byte-for-byte, and it reads back what Strait (or our client) wrote.

use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

/// A record as the reference client saw it; equality is byte equality of every field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefRecord {
    pub offset: i64,
    pub timestamp: Option<i64>,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

/// A record to produce with the reference producer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outgoing {
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
    pub timestamp: Option<i64>,
}

impl Outgoing {
    /// A record with a key and a value.
    pub fn kv(key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> Outgoing {
        Outgoing {
            key: Some(key.into()),
            value: Some(value.into()),
            ..Outgoing::default()
        }
    }
}

/// Base client configuration for a bootstrap address, with short timeouts for tests.
pub fn base_config(bootstrap: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap)
        .set("log_level", "3")
        .set("socket.timeout.ms", "10000")
        .set("topic.metadata.refresh.interval.ms", "1000");
    c
}

/// Creates topics through librdkafka's admin client.
pub fn create_topic(bootstrap: &str, topic: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> = base_config(bootstrap)
        .create()
        .expect("create admin client");
    // A runtime of its own on a thread of its own: callable from sync and async tests alike.
    let res = std::thread::scope(|s| {
        s.spawn(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime")
                .block_on(admin.create_topics(
                    &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
                    &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
                ))
        })
        .join()
        .expect("admin thread")
    })
    .expect("create_topics request");
    for r in res {
        if let Err((name, err)) = r {
            panic!("create topic {name}: {err}");
        }
    }
}

/// Runs blocking reference-client work from inside a multi-threaded tokio test without
/// stalling the runtime (and directly outside one).
pub fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(_) => tokio::task::block_in_place(f),
        Err(_) => f(),
    }
}

/// Produces `records` to `topic`/`partition` and waits until all are acknowledged.
/// `extra` adds producer settings (e.g. `compression.codec`, `enable.idempotence`, `linger.ms`).
pub fn produce(
    bootstrap: &str,
    topic: &str,
    partition: i32,
    records: &[Outgoing],
    extra: &[(&str, &str)],
) {
    let mut cfg = base_config(bootstrap);
    cfg.set("linger.ms", "5").set("acks", "all");
    for (k, v) in extra {
        cfg.set(*k, *v);
    }
    let producer: ThreadedProducer<DefaultProducerContext> =
        cfg.create().expect("create reference producer");
    for r in records {
        let mut rec: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(topic).partition(partition);
        if let Some(k) = &r.key {
            rec = rec.key(k.as_slice());
        }
        if let Some(v) = &r.value {
            rec = rec.payload(v.as_slice());
        }
        if let Some(ts) = r.timestamp {
            rec = rec.timestamp(ts);
        }
        if !r.headers.is_empty() {
            let mut h = OwnedHeaders::new();
            for (k, v) in &r.headers {
                h = h.insert(Header {
                    key: k,
                    value: v.as_deref(),
                });
            }
            rec = rec.headers(h);
        }
        let mut rec = rec;
        loop {
            match producer.send(rec) {
                Ok(()) => break,
                Err((e, back)) => {
                    assert!(
                        matches!(
                            e.rdkafka_error_code(),
                            Some(rdkafka::types::RDKafkaErrorCode::QueueFull)
                        ),
                        "reference produce to {topic}: {e}"
                    );
                    std::thread::sleep(Duration::from_millis(5));
                    rec = back;
                }
            }
        }
    }
    producer
        .flush(Duration::from_secs(30))
        .expect("reference producer flush");
    assert_eq!(
        producer.in_flight_count(),
        0,
        "undelivered reference records"
    );
}

/// Reads `count` records of `topic`/`partition` starting at `from` (no consumer group),
/// failing the test after `timeout`.
pub fn consume(
    bootstrap: &str,
    topic: &str,
    partition: i32,
    from: i64,
    count: usize,
    timeout: Duration,
) -> Vec<RefRecord> {
    let consumer: BaseConsumer = base_config(bootstrap)
        .set("group.id", crate::unique("ref-reader"))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .create()
        .expect("create reference consumer");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Offset(from))
        .expect("tpl");
    consumer.assign(&tpl).expect("assign");
    let deadline = Instant::now() + timeout;
    let mut out = Vec::with_capacity(count);
    while out.len() < count {
        assert!(
            Instant::now() < deadline,
            "reference consumer read {} of {count} records from {topic}/{partition} before timing out",
            out.len()
        );
        match consumer.poll(Duration::from_millis(100)) {
            None => {}
            Some(Err(e)) => panic!("reference consume {topic}/{partition}: {e}"),
            Some(Ok(m)) => out.push(RefRecord {
                offset: m.offset(),
                timestamp: m.timestamp().to_millis(),
                key: m.key().map(<[u8]>::to_vec),
                value: m.payload().map(<[u8]>::to_vec),
                headers: m
                    .headers()
                    .map(|h| {
                        h.iter()
                            .map(|h| (h.key.to_string(), h.value.map(<[u8]>::to_vec)))
                            .collect()
                    })
                    .unwrap_or_default(),
            }),
        }
    }
    out
}
