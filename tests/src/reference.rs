//! librdkafka as the independent reference client: it writes the test data Strait must carry
//! byte-for-byte, and it reads back what Strait (or our client) wrote.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{
    BaseProducer, BaseRecord, DefaultProducerContext, DeliveryResult, Producer, ProducerContext,
    ThreadedProducer,
};
use rdkafka::types::RDKafkaErrorCode;
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
    create_topic_with(&base_config(bootstrap), topic, partitions);
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
    for (k, v) in extra {
        cfg.set(*k, *v);
    }
    produce_with(&cfg, topic, partition, records);
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
    consume_with(
        &base_config(bootstrap),
        topic,
        partition,
        from,
        count,
        timeout,
    )
}

// ---------------------------------------------------------------------------------------------
// TLS and SASL (see `crate::secure` for the servers)
// ---------------------------------------------------------------------------------------------

/// librdkafka's `security.protocol`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RefProtocol {
    #[default]
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

impl RefProtocol {
    /// The `security.protocol` value.
    pub fn as_str(self) -> &'static str {
        match self {
            RefProtocol::Plaintext => "plaintext",
            RefProtocol::Ssl => "ssl",
            RefProtocol::SaslPlaintext => "sasl_plaintext",
            RefProtocol::SaslSsl => "sasl_ssl",
        }
    }
}

/// SASL credentials for the reference client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefSasl {
    /// `sasl.mechanism`, e.g. `SCRAM-SHA-256`.
    pub mechanism: String,
    pub username: String,
    pub password: String,
}

/// How the reference client secures its connections. `Default` is plaintext; TLS settings
/// apply to `Ssl` and `SaslSsl`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RefSecurity {
    pub protocol: RefProtocol,
    /// `ssl.ca.location` (librdkafka falls back to the system's CAs without it).
    pub ca: Option<PathBuf>,
    /// `ssl.certificate.location` (client certificate for mutual TLS).
    pub cert: Option<PathBuf>,
    /// `ssl.key.location`.
    pub key: Option<PathBuf>,
    /// `ssl.key.password`, for an encrypted `key`.
    pub key_password: Option<String>,
    /// `sasl.mechanism`, `sasl.username`, `sasl.password`.
    pub sasl: Option<RefSasl>,
    /// `ssl.endpoint.identification.algorithm=none` instead of `https` (no hostname check).
    pub skip_hostname_verification: bool,
}

impl RefSecurity {
    /// TLS trusting `ca`, with hostname verification.
    pub fn tls(ca: &Path) -> RefSecurity {
        RefSecurity {
            protocol: RefProtocol::Ssl,
            ca: Some(ca.to_path_buf()),
            ..RefSecurity::default()
        }
    }

    /// Adds a client certificate and key (mutual TLS).
    pub fn with_client_cert(mut self, cert: &Path, key: &Path) -> RefSecurity {
        self.cert = Some(cert.to_path_buf());
        self.key = Some(key.to_path_buf());
        self
    }

    /// Adds SASL credentials and switches to `SASL_PLAINTEXT` (or `SASL_SSL` when TLS is on).
    pub fn with_sasl(mut self, mechanism: &str, username: &str, password: &str) -> RefSecurity {
        self.protocol = match self.protocol {
            RefProtocol::Ssl | RefProtocol::SaslSsl => RefProtocol::SaslSsl,
            RefProtocol::Plaintext | RefProtocol::SaslPlaintext => RefProtocol::SaslPlaintext,
        };
        self.sasl = Some(RefSasl {
            mechanism: mechanism.to_string(),
            username: username.to_string(),
            password: password.to_string(),
        });
        self
    }
}

/// [`base_config`] plus the security settings.
pub fn secure_config(bootstrap: &str, security: &RefSecurity) -> ClientConfig {
    let mut c = base_config(bootstrap);
    c.set("security.protocol", security.protocol.as_str());
    let path = |p: &PathBuf| p.to_str().expect("UTF-8 path").to_string();
    if let Some(ca) = &security.ca {
        c.set("ssl.ca.location", path(ca));
    }
    if let Some(cert) = &security.cert {
        c.set("ssl.certificate.location", path(cert));
    }
    if let Some(key) = &security.key {
        c.set("ssl.key.location", path(key));
    }
    if let Some(pw) = &security.key_password {
        c.set("ssl.key.password", pw);
    }
    c.set(
        "ssl.endpoint.identification.algorithm",
        if security.skip_hostname_verification {
            "none"
        } else {
            "https"
        },
    );
    if let Some(s) = &security.sasl {
        c.set("sasl.mechanism", &s.mechanism)
            .set("sasl.username", &s.username)
            .set("sasl.password", &s.password);
    }
    c
}

/// [`create_topic`] with a client configuration of its own (e.g. from [`secure_config`]).
pub fn create_topic_with(config: &ClientConfig, topic: &str, partitions: i32) {
    create_topic_full(config, topic, partitions, 1, &[]);
}

/// Creates a topic with `replication` replicas per partition and topic configs (e.g.
/// `min.insync.replicas`), for multi-broker clusters.
pub fn create_topic_replicated(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    replication: i32,
    configs: &[(&str, &str)],
) {
    create_topic_full(
        &base_config(bootstrap),
        topic,
        partitions,
        replication,
        configs,
    );
}

/// Creates `topic` with one partition per entry of `assignment`, each on the given broker ids
/// (the first is the preferred leader).
pub fn create_topic_assigned(
    bootstrap: &str,
    topic: &str,
    assignment: &[&[i32]],
    configs: &[(&str, &str)],
) {
    let mut new_topic = NewTopic::new(
        topic,
        assignment.len() as i32,
        TopicReplication::Variable(assignment),
    );
    for (k, v) in configs {
        new_topic = new_topic.set(k, v);
    }
    create_new_topic(&base_config(bootstrap), new_topic);
}

fn create_topic_full(
    config: &ClientConfig,
    topic: &str,
    partitions: i32,
    replication: i32,
    configs: &[(&str, &str)],
) {
    let mut new_topic = NewTopic::new(topic, partitions, TopicReplication::Fixed(replication));
    for (k, v) in configs {
        new_topic = new_topic.set(k, v);
    }
    create_new_topic(config, new_topic);
}

fn create_new_topic(config: &ClientConfig, new_topic: NewTopic<'_>) {
    let admin: AdminClient<DefaultClientContext> = config.create().expect("create admin client");
    // A runtime of its own on a thread of its own: callable from sync and async tests alike.
    let res = std::thread::scope(|s| {
        s.spawn(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime")
                .block_on(admin.create_topics(
                    &[new_topic],
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

/// [`produce`] with a client configuration of its own (e.g. from [`secure_config`]).
pub fn produce_with(config: &ClientConfig, topic: &str, partition: i32, records: &[Outgoing]) {
    let mut cfg = config.clone();
    for (k, v) in [("linger.ms", "5"), ("acks", "all")] {
        if cfg.get(k).is_none() {
            cfg.set(k, v);
        }
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

/// [`consume`] with a client configuration of its own (e.g. from [`secure_config`]).
pub fn consume_with(
    config: &ClientConfig,
    topic: &str,
    partition: i32,
    from: i64,
    count: usize,
    timeout: Duration,
) -> Vec<RefRecord> {
    let consumer: BaseConsumer = config
        .clone()
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
            Some(Ok(m)) => out.push(ref_record(&m)),
        }
    }
    out
}

/// What a test compares of a consumed record.
fn ref_record(m: &rdkafka::message::BorrowedMessage<'_>) -> RefRecord {
    RefRecord {
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
    }
}

/// A client context that records librdkafka's global errors and error-level log lines.
#[derive(Debug, Default)]
struct RecordingContext {
    errors: Mutex<Vec<(Option<RDKafkaErrorCode>, String)>>,
    logs: Mutex<Vec<String>>,
}

impl ClientContext for RecordingContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        if (level as i32) <= (RDKafkaLogLevel::Warning as i32) {
            let line = format!("{fac}: {}", without_timing(log_message));
            let mut logs = self.logs.lock().unwrap_or_else(|e| e.into_inner());
            if !logs.contains(&line) {
                logs.push(line);
            }
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        let entry = (
            error.rdkafka_error_code(),
            format!("{error}: {}", without_timing(reason)),
        );
        let mut errors = self.errors.lock().unwrap_or_else(|e| e.into_inner());
        if !errors.contains(&entry) {
            errors.push(entry);
        }
    }
}

/// librdkafka's message without its trailing "(after 3ms in state …, N identical error(s)
/// suppressed)", so repeats of one failure are recorded once.
fn without_timing(message: &str) -> &str {
    match message.rfind(" (after ") {
        Some(i) if message.ends_with(')') => &message[..i],
        _ => message,
    }
}

impl ProducerContext for RecordingContext {
    type DeliveryOpaque = ();
    fn delivery(&self, _: &DeliveryResult<'_>, _: ()) {}
}

/// What the reference client reported when asked for cluster metadata.
#[derive(Debug)]
pub struct RefProbe {
    /// The brokers (`host:port`) of the metadata, or the last error of the metadata request.
    pub result: Result<Vec<String>, KafkaError>,
    /// librdkafka's global errors (error code and text), first occurrence of each, in order.
    pub errors: Vec<(Option<RDKafkaErrorCode>, String)>,
    /// librdkafka's error-level log lines, first occurrence of each, in order.
    pub logs: Vec<String>,
    /// How long until the metadata arrived or the probe gave up.
    pub elapsed: Duration,
}

impl RefProbe {
    /// Whether metadata was fetched.
    pub fn succeeded(&self) -> bool {
        self.result.is_ok()
    }

    /// Whether librdkafka reported a global error with `code`.
    pub fn reported(&self, code: RDKafkaErrorCode) -> bool {
        self.errors.iter().any(|(c, _)| *c == Some(code))
    }

    /// Whether any error or log line contains `text` (case-insensitive).
    pub fn mentions(&self, text: &str) -> bool {
        let text = text.to_lowercase();
        self.errors
            .iter()
            .map(|(_, e)| e)
            .chain(&self.logs)
            .any(|l| l.to_lowercase().contains(&text))
    }

    /// A one-paragraph account for test output.
    pub fn summary(&self) -> String {
        let mut s = match &self.result {
            Ok(brokers) => format!("metadata OK in {:?}: brokers {brokers:?}", self.elapsed),
            Err(e) => format!("no metadata within {:?}: {e}", self.elapsed),
        };
        for (code, e) in &self.errors {
            s.push_str(&format!("\n  error {code:?}: {e}"));
        }
        // Log lines that only repeat a reported error are left out.
        for l in &self.logs {
            let text = l.rsplit_once("]: ").map_or(l.as_str(), |(_, t)| t);
            if !self.errors.iter().any(|(_, e)| e.ends_with(text)) {
                s.push_str(&format!("\n  log: {l}"));
            }
        }
        s
    }
}

/// Asks for cluster metadata with `config` until it arrives or `timeout` passes, recording what
/// librdkafka reports on the way (it retries failed connections internally, so a failure is
/// "no metadata within the timeout" plus the errors it reported). A configuration librdkafka
/// refuses is reported as the client-creation error.
pub fn probe_metadata(config: &ClientConfig, timeout: Duration) -> RefProbe {
    let start = Instant::now();
    // An unusable setting (e.g. an encrypted key without its password) fails here.
    let producer: BaseProducer<RecordingContext> =
        match config.create_with_context(RecordingContext::default()) {
            Ok(p) => p,
            Err(e) => {
                return RefProbe {
                    result: Err(e),
                    errors: Vec::new(),
                    logs: Vec::new(),
                    elapsed: start.elapsed(),
                }
            }
        };
    let deadline = start + timeout;
    let result = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let attempt = producer
            .client()
            .fetch_metadata(None, left.min(Duration::from_millis(500)));
        match attempt {
            Ok(md) => {
                break Ok(md
                    .brokers()
                    .iter()
                    .map(|b| format!("{}:{}", b.host(), b.port()))
                    .collect())
            }
            Err(e) if Instant::now() >= deadline => break Err(e),
            // Serves the queued error callbacks (one event per loop of `poll`).
            Err(_) => producer.poll(Duration::from_millis(20)),
        }
    };
    let elapsed = start.elapsed();
    producer.poll(Duration::from_millis(50));
    let ctx = producer.context();
    let errors = ctx.errors.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let logs = ctx.logs.lock().unwrap_or_else(|e| e.into_inner()).clone();
    RefProbe {
        result,
        errors,
        logs,
        elapsed,
    }
}

// ---------------------------------------------------------------------------------------------
// Offsets and topic settings (what a test checks or arranges on a real broker)
// ---------------------------------------------------------------------------------------------

/// Runs an admin future on a runtime of its own on a thread of its own (callable from sync and
/// async tests alike).
fn admin_call<T: Send>(f: impl std::future::Future<Output = T> + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime")
                .block_on(f)
        })
        .join()
        .expect("admin thread")
    })
}

/// Creates a topic with topic-level configs (e.g. `message.timestamp.before.max.ms`).
pub fn create_topic_with_configs(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    configs: &[(&str, &str)],
) {
    let admin: AdminClient<DefaultClientContext> =
        base_config(bootstrap).create().expect("admin client");
    let mut nt = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    for (k, v) in configs {
        nt = nt.set(k, v);
    }
    let res = admin_call(admin.create_topics(
        &[nt],
        &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
    ))
    .expect("create_topics request");
    for r in res {
        if let Err((name, err)) = r {
            panic!("create topic {name}: {err}");
        }
    }
}

/// The partition's log start offset and high watermark, as librdkafka reports them.
pub fn watermarks(bootstrap: &str, topic: &str, partition: i32) -> (i64, i64) {
    try_watermarks(bootstrap, topic, partition)
        .unwrap_or_else(|e| panic!("watermarks of {topic}/{partition}: {e}"))
}

/// [`watermarks`], or librdkafka's error (e.g. the topic does not exist yet).
pub fn try_watermarks(
    bootstrap: &str,
    topic: &str,
    partition: i32,
) -> Result<(i64, i64), rdkafka::error::KafkaError> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let c: BaseConsumer = base_config(bootstrap).create().expect("consumer");
    c.fetch_watermarks(topic, partition, Duration::from_secs(10))
}

/// Deletes the records of `topic`/`partition` before `before` (DeleteRecords: the log start
/// moves as retention would move it). Returns the new log start.
pub fn delete_records(bootstrap: &str, topic: &str, partition: i32, before: i64) -> i64 {
    let admin: AdminClient<DefaultClientContext> =
        base_config(bootstrap).create().expect("admin client");
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, rdkafka::Offset::Offset(before))
        .expect("partition offset");
    let res = admin_call(admin.delete_records(
        &tpl,
        &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
    ))
    .unwrap_or_else(|e| panic!("delete records of {topic}/{partition}: {e}"));
    let e = res
        .find_partition(topic, partition)
        .unwrap_or_else(|| panic!("no result for {topic}/{partition}"));
    if let Err(err) = e.error() {
        panic!("delete records of {topic}/{partition}: {err}");
    }
    match e.offset() {
        rdkafka::Offset::Offset(o) => o,
        other => panic!("delete records of {topic}/{partition}: low watermark {other:?}"),
    }
}

/// Every record of `topic`/`partition` from its log start to its high watermark (offsets with
/// gaps after compaction are what the consumer sees).
pub fn consume_until_end(bootstrap: &str, topic: &str, partition: i32) -> Vec<RefRecord> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let (low, high) = watermarks(bootstrap, topic, partition);
    let consumer: BaseConsumer = base_config(bootstrap)
        .set("group.id", crate::unique("ref-reader"))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .create()
        .expect("create reference consumer");
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, rdkafka::Offset::Offset(low))
        .expect("tpl");
    consumer.assign(&tpl).expect("assign");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut out = Vec::new();
    while out.last().map_or(low, |r: &RefRecord| r.offset + 1) < high {
        assert!(
            std::time::Instant::now() < deadline,
            "read {topic}/{partition} up to {:?} of {high}",
            out.last().map(|r: &RefRecord| r.offset)
        );
        match consumer.poll(Duration::from_millis(100)) {
            None => {}
            Some(Err(e)) => panic!("reference consume {topic}/{partition}: {e}"),
            Some(Ok(m)) => out.push(ref_record(&m)),
        }
    }
    out
}

/// Commits `offsets` (topic, partition, offset) for `group` with librdkafka, retrying while the
/// broker answers with a retriable error: a freshly started Apache Kafka answers
/// NOT_COORDINATOR / COORDINATOR_NOT_AVAILABLE until `__consumer_offsets` is ready.
pub fn commit_offsets(bootstrap: &str, group: &str, offsets: &[(&str, i32, i64)]) {
    use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
    let consumer: BaseConsumer = base_config(bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("session.timeout.ms", "6000")
        .create()
        .expect("consumer");
    let mut tpl = rdkafka::TopicPartitionList::new();
    for (t, p, o) in offsets {
        tpl.add_partition_offset(t, *p, rdkafka::Offset::Offset(*o))
            .expect("tpl");
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        match consumer.commit(&tpl, CommitMode::Sync) {
            Ok(()) => return,
            Err(e) if std::time::Instant::now() < deadline => {
                eprintln!("commit for {group} failed ({e}); retrying");
                std::thread::sleep(Duration::from_millis(500));
            }
            Err(e) => panic!("commit group offsets of {group}: {e}"),
        }
    }
}

/// Every committed record of `topic`/`partition` (`isolation.level=read_committed`: aborted
/// records and transaction markers left out) from its log start to its end, read until
/// librdkafka reports the partition's end (the last stable offset: call it once no
/// transaction is open). Fails the test after `timeout`.
pub fn consume_committed(
    bootstrap: &str,
    topic: &str,
    partition: i32,
    timeout: Duration,
) -> Vec<RefRecord> {
    let consumer: BaseConsumer = base_config(bootstrap)
        .set("group.id", crate::unique("ref-reader"))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("isolation.level", "read_committed")
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("create reference consumer");
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, rdkafka::Offset::Beginning)
        .expect("tpl");
    consumer.assign(&tpl).expect("assign");
    let deadline = std::time::Instant::now() + timeout;
    let mut out = Vec::new();
    loop {
        assert!(
            std::time::Instant::now() < deadline,
            "read_committed {topic}/{partition}: {} records and no end within {timeout:?}",
            out.len()
        );
        match consumer.poll(Duration::from_millis(100)) {
            None => {}
            Some(Err(KafkaError::PartitionEOF(_))) => return out,
            Some(Err(e)) => panic!("reference consume {topic}/{partition}: {e}"),
            Some(Ok(m)) => out.push(ref_record(&m)),
        }
    }
}
