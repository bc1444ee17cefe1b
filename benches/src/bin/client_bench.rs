//! Client bench (issue 3): Strait's `Producer` and `Fetcher` against librdkafka on one tansu
//! broker, in one run.
//!
//! For each record size (1 KiB and 100 B by default):
//! - **produce**: our high-level producer (`send_nowait`, linger 5 ms, 1 MB batches, acks=all,
//!   idempotent, no compression, at most 100 000 unacknowledged records) against librdkafka's
//!   `ThreadedProducer` with the same settings (`linger.ms=5`, `batch.size=1000000`,
//!   `acks=all`, `enable.idempotence=true`, its default 100 000-message queue). Each writes its
//!   own topic; record `i` goes to partition `i % partitions` for both.
//! - **fetch**: our `Fetcher` returning raw batches, our `Fetcher` plus decoding every record
//!   (what a consumer that looks at values pays), and librdkafka's `BaseConsumer`, each reading
//!   the topic our producer wrote from offset 0 to its end (read_committed, both defaults).
//!
//! Reported per row: MB/s and records/s of record values (1 MB = 10^6 bytes), and CPU seconds
//! per GB: this process's user+system time over the phase (`/proc/self/stat`), which includes
//! librdkafka's background threads and our tokio workers, and excludes the broker (another
//! process). Ratios are ours / librdkafka.
//!
//! Run: `cargo run --release -p strait-benches --bin client-bench -- [--records N] [--size 1024]`

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use protocol_client::cluster::Cluster;
use protocol_client::fetcher::{Fetcher, FetcherConfig};
use protocol_client::producer::records::ProducerRecord;
use protocol_client::producer::{Producer, ProducerConfig};
use protocol_client::record::{split_batches, DecodeLimits};
use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig as RdConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{
    BaseRecord, DeliveryResult, Producer as _, ProducerContext, ThreadedProducer,
};
use rdkafka::{Offset, TopicPartitionList};
use strait_benches::proc_stats::{Phase, PhaseResult};
use strait_benches::table::{num, ratio, Table};
use strait_benches::workload::ValuePool;
use strait_benches::{kafka, GB, MB};

#[derive(Parser, Debug)]
#[command(
    name = "client-bench",
    about = "Strait's producer and fetcher vs librdkafka on tansu"
)]
struct Args {
    /// Records per row (default: 200 000 for values of 512 B and more, else 1 000 000).
    #[arg(long)]
    records: Option<usize>,
    /// Value size in bytes; repeat for several (default: 1024 and 100).
    #[arg(long)]
    size: Vec<usize>,
    /// Partitions of each topic.
    #[arg(long, default_value_t = 4)]
    partitions: i32,
    /// Use this broker instead of starting tansu.
    #[arg(long)]
    bootstrap: Option<String>,
    /// Extra librdkafka setting `key=value` for its producer and consumer (repeatable), e.g.
    /// `--rdkafka fetch.wait.max.ms=100`.
    #[arg(long, value_name = "KEY=VALUE")]
    rdkafka: Vec<String>,
    /// Most records queued but not yet acknowledged (both producers).
    #[arg(long, default_value_t = 100_000)]
    window: usize,
    /// Listener security, for both clients: `plaintext`, `tls` (Apache Kafka's SSL listener) or
    /// `sasl-ssl` (SCRAM-SHA-512 over TLS). Ignored with `--bootstrap`.
    #[arg(long, value_enum, default_value = "plaintext")]
    security: Security,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Security {
    Plaintext,
    Tls,
    SaslSsl,
}

/// The broker the bench started, kept alive for the run.
#[derive(Debug)]
#[allow(dead_code)] // held for its Drop
enum Broker {
    Plain(strait_tests::tansu::TansuBroker),
    Secure(strait_tests::secure::SecureBroker),
}

/// One measured row.
#[derive(Debug, Clone, Copy)]
struct Measured {
    records: u64,
    value_bytes: u64,
    phase: PhaseResult,
}

impl Measured {
    fn mb_s(&self) -> f64 {
        self.value_bytes as f64 / MB / self.phase.secs
    }
    fn rec_s(&self) -> f64 {
        self.records as f64 / self.phase.secs
    }
    fn cpu_per_gb(&self) -> f64 {
        self.phase.cpu_secs / (self.value_bytes as f64 / GB)
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn main() -> Result<(), BoxError> {
    let args = Args::parse();
    let sizes = if args.size.is_empty() {
        vec![1024, 100]
    } else {
        args.size.clone()
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    use strait_tests::secure::{certs, ScramMechanism, ScramUser, SecureBroker, ServerCert};
    let mut args = args;
    let mut ours = protocol_client::cluster::ClientConfig::new("");
    let (broker, bootstrap) = match (&args.bootstrap, args.security) {
        (Some(b), _) => (None, b.clone()),
        (None, Security::Plaintext) => {
            let b = strait_tests::tansu::TansuBroker::start("client-bench");
            let addr = b.bootstrap();
            (Some(Broker::Plain(b)), addr)
        }
        (None, sec) => {
            let c = certs();
            let b = if sec == Security::Tls {
                SecureBroker::tls("client-bench", ServerCert::Good, false)
            } else {
                let users = [ScramUser::new(ScramMechanism::Sha512, "bench", "bench-pw")];
                SecureBroker::sasl("client-bench", &users, Some((ServerCert::Good, false)))
                    .ok_or("no SASL broker")?
            };
            let tls = protocol_client::security::tls::TlsConfig {
                trust: protocol_client::security::tls::TrustAnchors::Pem(c.pem(&c.ca)),
                ..Default::default()
            };
            ours.conn.tls = Some(tls.build()?);
            let ca = c.ca.display().to_string();
            args.rdkafka.push(format!("ssl.ca.location={ca}"));
            if sec == Security::SaslSsl {
                ours.conn.sasl = Some(protocol_client::security::sasl::SaslConfig::Scram {
                    hash: protocol_client::security::sasl::ScramHash::Sha512,
                    username: "bench".into(),
                    password: protocol_client::security::Secret::new("bench-pw"),
                });
                args.rdkafka.extend([
                    "security.protocol=SASL_SSL".to_string(),
                    "sasl.mechanism=SCRAM-SHA-512".into(),
                    "sasl.username=bench".into(),
                    "sasl.password=bench-pw".into(),
                ]);
            } else {
                args.rdkafka.push("security.protocol=SSL".into());
            }
            let addr = b.bootstrap();
            (Some(Broker::Secure(b)), addr)
        }
    };
    ours.bootstrap_servers = vec![bootstrap.clone()];
    ours.conn.client_id = "strait-bench".into();
    eprintln!(
        "client-bench: broker {bootstrap} ({:?}), {} partitions, load {}",
        args.security,
        args.partitions,
        load_average()
    );
    let cluster = rt.block_on(protocol_client::cluster::Cluster::connect(ours))?;
    for size in sizes {
        let n = args
            .records
            .unwrap_or(if size >= 512 { 200_000 } else { 1_000_000 });
        let pool = ValuePool::new(size, 4096);
        let run = format!("{size}-{}", std::process::id());
        let ours_topic = format!("cb-ours-{run}");
        let rdk_topic = format!("cb-rdk-{run}");
        rt.block_on(async {
            kafka::create_topic(&cluster, &ours_topic, args.partitions, &[]).await?;
            kafka::create_topic(&cluster, &rdk_topic, args.partitions, &[]).await
        })?;

        eprintln!("[{size} B] produce: ours");
        let ours_p = rt.block_on(produce_ours(
            &cluster,
            &ours_topic,
            n,
            args.partitions,
            args.window,
            &pool,
        ))?;
        eprintln!("[{size} B] produce: librdkafka");
        let rdk_p = produce_rdkafka(
            &bootstrap,
            &rdk_topic,
            n,
            args.partitions,
            &pool,
            &args.rdkafka,
        )?;
        for topic in [&ours_topic, &rdk_topic] {
            let total = rt.block_on(kafka::total_records(&cluster, topic, args.partitions))?;
            if total != n as i64 {
                return Err(format!("{topic} holds {total} records, expected {n}").into());
            }
        }

        eprintln!("[{size} B] fetch: ours (raw batches)");
        let ours_raw = rt.block_on(fetch_ours(
            &cluster,
            &ours_topic,
            n,
            args.partitions,
            false,
            size,
        ))?;
        eprintln!("[{size} B] fetch: ours (decoding records)");
        let ours_dec = rt.block_on(fetch_ours(
            &cluster,
            &ours_topic,
            n,
            args.partitions,
            true,
            size,
        ))?;
        eprintln!("[{size} B] fetch: librdkafka BaseConsumer");
        let rdk_f = consume_rdkafka(&bootstrap, &ours_topic, n, args.partitions, &args.rdkafka)?;

        let mut t = Table::new([
            "phase",
            "client",
            "MB/s",
            "records/s",
            "CPU s/GB",
            "MB/s ours/rdk",
            "CPU/GB ours/rdk",
        ]);
        let mut add = |phase: &str, client: &str, m: &Measured, base: &Measured| {
            t.row([
                phase.to_string(),
                client.to_string(),
                num(m.mb_s(), 1),
                num(m.rec_s(), 0),
                num(m.cpu_per_gb(), 2),
                ratio(m.mb_s(), base.mb_s()),
                ratio(m.cpu_per_gb(), base.cpu_per_gb()),
            ])
        };
        add("produce", "strait Producer", &ours_p, &rdk_p);
        add("produce", "librdkafka", &rdk_p, &rdk_p);
        add("fetch", "strait Fetcher (raw)", &ours_raw, &rdk_f);
        add("fetch", "strait Fetcher + decode", &ours_dec, &rdk_f);
        add("fetch", "librdkafka BaseConsumer", &rdk_f, &rdk_f);
        let section = format!(
            "\n### {size} B values, {n} records, {} partitions\n\n{}",
            args.partitions,
            t.render()
        );
        println!("{section}");
    }
    eprintln!("client-bench: done, load {}", load_average());
    drop(broker);
    Ok(())
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

async fn produce_ours(
    cluster: &Arc<Cluster>,
    topic: &str,
    n: usize,
    partitions: i32,
    window: usize,
    pool: &ValuePool,
) -> Result<Measured, BoxError> {
    let producer = Producer::new(
        cluster.clone(),
        ProducerConfig {
            linger: Duration::from_millis(5),
            batch_bytes: 1_000_000,
            ..ProducerConfig::default()
        },
    )
    .await?;
    let phase = Phase::start(None)?;
    let mut pending = VecDeque::with_capacity(window + 1);
    let mut failed = 0u64;
    let mut first_error = None;
    let mut check = |r: Result<protocol_client::Result<_>, _>| match r {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => {
            failed += 1;
            first_error.get_or_insert_with(|| format!("{e}"));
        }
        Err(_) => {
            failed += 1;
            first_error.get_or_insert_with(|| "acknowledgement dropped".to_string());
        }
    };
    for i in 0..n {
        let rx = producer
            .send_nowait(ProducerRecord {
                topic: topic.to_string(),
                partition: Some(i as i32 % partitions),
                key: None,
                value: Some(pool.get(i).clone()),
                headers: Vec::new(),
                timestamp: None,
            })
            .await?;
        pending.push_back(rx);
        if pending.len() > window {
            let front = pending.pop_front().expect("non-empty");
            check(front.await);
        }
    }
    producer.flush_records().await;
    for rx in pending {
        check(rx.await);
    }
    let phase = phase.finish()?;
    producer.close().await;
    if failed > 0 {
        return Err(format!(
            "our producer failed {failed} records: {}",
            first_error.unwrap_or_default()
        )
        .into());
    }
    Ok(Measured {
        records: n as u64,
        value_bytes: (n * pool.size()) as u64,
        phase,
    })
}

/// Counts librdkafka delivery failures.
#[derive(Default)]
struct DeliveryCounter {
    failed: AtomicU64,
    first_error: Mutex<Option<String>>,
}

impl ClientContext for DeliveryCounter {}

impl ProducerContext for DeliveryCounter {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = result {
            self.failed.fetch_add(1, Ordering::Relaxed);
            self.first_error
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get_or_insert_with(|| e.to_string());
        }
    }
}

fn rd_base(bootstrap: &str, extra: &[String]) -> RdConfig {
    let mut c = RdConfig::new();
    c.set("bootstrap.servers", bootstrap)
        .set("log_level", "3")
        .set("client.id", "strait-bench-librdkafka");
    for kv in extra {
        if let Some((k, v)) = kv.split_once('=') {
            c.set(k.trim(), v.trim());
        }
    }
    c
}

fn produce_rdkafka(
    bootstrap: &str,
    topic: &str,
    n: usize,
    partitions: i32,
    pool: &ValuePool,
    extra: &[String],
) -> Result<Measured, BoxError> {
    let mut cfg = RdConfig::new();
    cfg.set("acks", "all")
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .set("batch.size", "1000000")
        .set("compression.codec", "none");
    for (k, v) in rd_base(bootstrap, extra).config_map().iter() {
        cfg.set(*k, *v);
    }
    let producer: ThreadedProducer<DeliveryCounter> =
        cfg.create_with_context(DeliveryCounter::default())?;
    let phase = Phase::start(None)?;
    for i in 0..n {
        let rec: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(topic)
            .partition(i as i32 % partitions)
            .payload(&pool.get(i)[..]);
        kafka::rdkafka_send(&producer, rec, "librdkafka produce")?;
    }
    producer.flush(Duration::from_secs(120))?;
    let phase = phase.finish()?;
    let ctx = producer.context();
    let failed = ctx.failed.load(Ordering::Relaxed);
    if failed > 0 || producer.in_flight_count() != 0 {
        return Err(format!(
            "librdkafka failed {failed} records ({} in flight): {}",
            producer.in_flight_count(),
            ctx.first_error
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone()
                .unwrap_or_default()
        )
        .into());
    }
    Ok(Measured {
        records: n as u64,
        value_bytes: (n * pool.size()) as u64,
        phase,
    })
}

async fn fetch_ours(
    cluster: &Arc<Cluster>,
    topic: &str,
    n: usize,
    partitions: i32,
    decode: bool,
    value_size: usize,
) -> Result<Measured, BoxError> {
    let limits = DecodeLimits::default();
    let mut fetcher = Fetcher::new(cluster.clone(), FetcherConfig::default());
    for p in 0..partitions {
        fetcher.assign(topic, p, 0);
    }
    let deadline = Instant::now() + Duration::from_secs(300);
    let phase = Phase::start(None)?;
    let mut records = 0u64;
    let mut value_bytes = 0u64;
    loop {
        let position: i64 = (0..partitions)
            .map(|p| fetcher.position(topic, p).unwrap_or(0))
            .sum();
        if position >= n as i64 {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!("our fetcher reached {position} of {n} records in 300 s").into());
        }
        for fp in fetcher.poll().await? {
            for batch in split_batches(fp.records) {
                let batch = batch?;
                if batch.next_offset() <= fp.fetch_offset {
                    continue;
                }
                if decode {
                    for r in batch.records(&limits)? {
                        let r = r?;
                        records += 1;
                        value_bytes += r.value.map_or(0, |v| v.len() as u64);
                    }
                } else {
                    records += batch.record_count() as u64;
                }
            }
        }
    }
    let phase = phase.finish()?;
    if records != n as u64 {
        return Err(format!("our fetcher returned {records} records, expected {n}").into());
    }
    if !decode {
        // Raw batches are not opened: count the values that were written.
        value_bytes = records * value_size as u64;
    }
    Ok(Measured {
        records,
        value_bytes,
        phase,
    })
}

fn consume_rdkafka(
    bootstrap: &str,
    topic: &str,
    n: usize,
    partitions: i32,
    extra: &[String],
) -> Result<Measured, BoxError> {
    let consumer: BaseConsumer = rd_base(bootstrap, extra)
        .set("group.id", format!("strait-bench-{}", std::process::id()))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .create()?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)?;
    }
    let deadline = Instant::now() + Duration::from_secs(300);
    let phase = Phase::start(None)?;
    consumer.assign(&tpl)?;
    let mut records = 0u64;
    let mut value_bytes = 0u64;
    while records < n as u64 {
        if Instant::now() > deadline {
            return Err(format!("librdkafka read {records} of {n} records in 300 s").into());
        }
        match consumer.poll(Duration::from_millis(100)) {
            None => {}
            Some(Err(e)) => return Err(format!("librdkafka consume: {e}").into()),
            Some(Ok(m)) => {
                records += 1;
                value_bytes += m.payload().map_or(0, |v| v.len() as u64);
            }
        }
    }
    let phase = phase.finish()?;
    Ok(Measured {
        records,
        value_bytes,
        phase,
    })
}
