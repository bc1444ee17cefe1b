//! Metrics: what a flow did, kept as plain state (time is passed in) and encoded on each
//! scrape in the Prometheus/OpenMetrics text format through `prometheus-client`.
//!
//! MM2's own metrics keep the names Strimzi's JMX-exporter rules give them, so existing
//! dashboards keep working (all gauges, as the exporter emits them):
//! - `kafka_connect_mirror_mirrorsourceconnector_{record_count, record_rate, byte_count,
//!   byte_rate, record_age_ms[_min|_max|_avg], replication_latency_ms[_min|_max|_avg]}`,
//!   labelled `source, target, topic` (the remote topic) `, partition`;
//! - `kafka_connect_mirror_mirrorcheckpointconnector_checkpoint_latency_ms[_min|_max|_avg]`,
//!   labelled `source, target, group, topic, partition`.
//!
//! Like MM2's `Sampled` stats (`metrics.sample.window.ms` 30 s, `metrics.num.samples` 2),
//! min/max/avg and rates cover the last one to two 30 s windows; the plain gauge is the latest
//! value. Strait forwards batches without decoding records, so per batch: counts come from the
//! batch header; `byte_count` counts the batch's record bytes as stored (compressed size when
//! compressed; keys and headers included), where MM2 counts value bytes; age and latency take
//! the batch's newest record timestamp (`max_timestamp`), one sample per batch, where MM2 takes
//! one per record.
//!
//! Strait's own: lag in records (source high watermark − next offset to mirror) and seconds
//! (how old the newest mirrored record is while there is lag, 0 when caught up), records lost
//! to source retention, stopped partitions, offset-sync and checkpoint freshness, in-flight
//! bytes against the budget, flow restarts and errors by kind, client retries by cluster,
//! operation and error (`strait_client_retries`), process CPU, RSS and open files.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

/// MM2's `metrics.sample.window.ms` default.
const WINDOW_MS: i64 = 30_000;

/// A flow whose loop has not turned for this long is wedged (`/healthz` fails).
pub const WEDGED_AFTER_MS: i64 = 300_000;

/// Every flow's metrics, and the clusters' client retries.
#[derive(Debug, Default)]
pub struct Metrics {
    flows: Mutex<Vec<Arc<FlowMetrics>>>,
    clusters: Mutex<Vec<(String, Arc<protocol_client::cluster::Cluster>)>>,
}

/// What the process itself uses, read by the caller (from `/proc`).
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessStats {
    /// User + system CPU seconds.
    pub cpu_seconds: f64,
    /// Resident set size.
    pub resident_bytes: u64,
    /// Open file descriptors.
    pub open_fds: u64,
    /// Start time, seconds since the epoch.
    pub start_time_seconds: f64,
}

/// Whether the process is alive and ready, with the reasons when not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    /// No flow is wedged.
    pub live: bool,
    /// Every flow is replicating (connected, resumed, assigned).
    pub ready: bool,
    /// One line per flow.
    pub detail: Vec<String>,
}

impl Metrics {
    /// No flows yet.
    pub fn new() -> Arc<Metrics> {
        Arc::new(Metrics::default())
    }

    /// The metrics of the flow `source->target`, created on first use (a restarted flow
    /// keeps counting into the same one).
    pub fn flow(&self, source: &str, target: &str) -> Arc<FlowMetrics> {
        let mut flows = lock(&self.flows);
        if let Some(f) = flows
            .iter()
            .find(|f| f.source == source && f.target == target)
        {
            return f.clone();
        }
        let f = Arc::new(FlowMetrics::new(source, target));
        flows.push(f.clone());
        f
    }

    /// Reports the retries of `cluster`'s clients as `strait_client_retries{cluster=alias}`.
    pub fn watch_cluster(&self, alias: &str, cluster: Arc<protocol_client::cluster::Cluster>) {
        let mut clusters = lock(&self.clusters);
        clusters.retain(|(a, _)| a != alias);
        clusters.push((alias.to_string(), cluster));
    }

    /// Liveness and readiness at `now_ms`.
    pub fn health(&self, now_ms: i64) -> Health {
        let flows = lock(&self.flows).clone();
        let mut h = Health {
            live: true,
            ready: !flows.is_empty(),
            detail: Vec::new(),
        };
        for f in &flows {
            let running = f.running.load(Ordering::Acquire) == 1;
            let turned = f.loop_turned_ms.load(Ordering::Acquire);
            let wedged = running && turned > 0 && now_ms - turned > WEDGED_AFTER_MS;
            h.live &= !wedged;
            h.ready &= running && !wedged;
            h.detail.push(format!(
                "{}->{}: {}",
                f.source,
                f.target,
                match (running, wedged) {
                    (true, false) => "replicating",
                    (true, true) => "wedged (its loop has not turned in 300 s)",
                    (false, _) => "starting or restarting",
                }
            ));
        }
        h
    }

    /// The OpenMetrics text of everything at `now_ms`.
    pub fn encode(self: &Arc<Self>, now_ms: i64, process: Option<ProcessStats>) -> String {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(Snapshot {
            metrics: self.clone(),
            now_ms,
            process,
        }));
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
        out
    }
}

/// One flow's metrics.
#[derive(Debug)]
pub struct FlowMetrics {
    source: String,
    target: String,
    inner: Mutex<FlowInner>,
    running: AtomicI64,
    loop_turned_ms: AtomicI64,
    budget: Mutex<Option<(Arc<tokio::sync::Semaphore>, usize)>>,
}

#[derive(Debug, Default)]
struct FlowInner {
    /// By remote topic, then partition (looked up by `&str`: no allocation per batch).
    partitions: BTreeMap<String, BTreeMap<i32, PartitionStats>>,
    checkpoints: BTreeMap<(String, String, i32), Window>,
    last_offset_sync_ms: Option<i64>,
    last_checkpoint_ms: Option<i64>,
    stopped: std::collections::BTreeSet<(String, i32)>,
    restarts: u64,
    errors: BTreeMap<String, u64>,
}

#[derive(Debug, Default)]
struct PartitionStats {
    records: u64,
    bytes: u64,
    record_rate: Rate,
    byte_rate: Rate,
    age: Window,
    latency: Window,
    high_watermark: Option<i64>,
    next: Option<i64>,
    newest_mirrored_ms: Option<i64>,
    /// When the partition was last seen caught up (or first seen).
    caught_up_ms: Option<i64>,
    lost: u64,
}

impl PartitionStats {
    fn lag(&self) -> Option<i64> {
        Some((self.high_watermark? - self.next?).max(0))
    }

    fn note_lag(&mut self, now_ms: i64) {
        if self.caught_up_ms.is_none() || self.lag() == Some(0) {
            self.caught_up_ms = Some(now_ms);
        }
    }

    /// 0 when caught up; else how long the target has been behind: since the partition was
    /// last caught up, or the age of the newest record mirrored, whichever is shorter.
    fn lag_seconds(&self, now_ms: i64) -> Option<f64> {
        match self.lag()? {
            0 => Some(0.0),
            _ => {
                let since = match (self.caught_up_ms, self.newest_mirrored_ms) {
                    (Some(a), Some(b)) => a.max(b),
                    (a, b) => a.or(b)?,
                };
                Some((now_ms - since).max(0) as f64 / 1000.0)
            }
        }
    }
}

impl FlowMetrics {
    fn new(source: &str, target: &str) -> FlowMetrics {
        FlowMetrics {
            source: source.to_string(),
            target: target.to_string(),
            inner: Mutex::new(FlowInner::default()),
            running: AtomicI64::new(0),
            loop_turned_ms: AtomicI64::new(0),
            budget: Mutex::new(None),
        }
    }

    fn partition<'a>(
        inner: &'a mut MutexGuard<'_, FlowInner>,
        remote: &str,
        partition: i32,
    ) -> &'a mut PartitionStats {
        if !inner.partitions.contains_key(remote) {
            inner.partitions.insert(remote.to_string(), BTreeMap::new());
        }
        inner
            .partitions
            .get_mut(remote)
            .expect("inserted above")
            .entry(partition)
            .or_default()
    }

    /// The flow is replicating (`true`: a new run, whose stopped partitions are counted
    /// afresh) or starting, restarting or stopped (`false`).
    pub fn set_running(&self, running: bool) {
        if running {
            lock(&self.inner).stopped.clear();
        }
        self.running.store(i64::from(running), Ordering::Release);
    }

    /// The flow's loop turned at `now_ms` (liveness).
    pub fn loop_turned(&self, now_ms: i64) {
        self.loop_turned_ms.store(now_ms, Ordering::Release);
    }

    /// The run's in-flight budget: `total` bytes, of which `budget` has what is free.
    pub fn set_budget(&self, budget: Arc<tokio::sync::Semaphore>, total: usize) {
        *lock(&self.budget) = Some((budget, total));
    }

    /// A fetch answered for the partition: the source's high watermark.
    pub fn fetched(&self, remote: &str, partition: i32, high_watermark: i64, now_ms: i64) {
        let mut inner = lock(&self.inner);
        let p = Self::partition(&mut inner, remote, partition);
        if p.lag() == Some(0) {
            // Caught up at the last answer, and caught up since: a fetch session answers for a
            // partition as soon as its high watermark moves, and not at all before.
            p.caught_up_ms = Some(now_ms);
        }
        p.high_watermark = Some(high_watermark);
        p.note_lag(now_ms);
    }

    /// A source topic is no longer mirrored (deleted): its series go.
    pub fn forget_topic(&self, remote: &str) {
        lock(&self.inner).partitions.remove(remote);
    }

    /// A partition is no longer replicated by this process (handed to another): its series go.
    pub fn forget_partition(&self, remote: &str, partition: i32) {
        let mut inner = lock(&self.inner);
        if let Some(t) = inner.partitions.get_mut(remote) {
            t.remove(&partition);
            if t.is_empty() {
                inner.partitions.remove(remote);
            }
        }
    }

    /// A batch about to be forwarded, its newest record written at `max_timestamp`
    /// (`record-age-ms`: how old it is when Strait reads it).
    pub fn forwarding(&self, remote: &str, partition: i32, max_timestamp: i64, now_ms: i64) {
        if max_timestamp < 0 {
            return;
        }
        let mut inner = lock(&self.inner);
        Self::partition(&mut inner, remote, partition)
            .age
            .record((now_ms - max_timestamp) as f64, now_ms);
    }

    /// The target acknowledged a batch; the partition continues at `next`.
    pub fn acknowledged(&self, remote: &str, partition: i32, batch: Acked, next: i64, now_ms: i64) {
        let Acked {
            records,
            bytes,
            max_timestamp,
        } = batch;
        let mut inner = lock(&self.inner);
        let p = Self::partition(&mut inner, remote, partition);
        p.records += records;
        p.bytes += bytes;
        p.record_rate.record(records as f64, now_ms);
        p.byte_rate.record(bytes as f64, now_ms);
        if max_timestamp >= 0 {
            p.latency.record((now_ms - max_timestamp) as f64, now_ms);
            p.newest_mirrored_ms = Some(p.newest_mirrored_ms.unwrap_or(0).max(max_timestamp));
        }
        p.next = Some(next);
        p.note_lag(now_ms);
    }

    /// Nothing to forward up to `next` (markers, aborted records), or resumed there.
    pub fn advanced(&self, remote: &str, partition: i32, next: i64, now_ms: i64) {
        let mut inner = lock(&self.inner);
        let p = Self::partition(&mut inner, remote, partition);
        p.next = Some(next);
        p.note_lag(now_ms);
    }

    /// `lost` source records were deleted before they were mirrored.
    pub fn lost(&self, remote: &str, partition: i32, lost: u64) {
        let mut inner = lock(&self.inner);
        Self::partition(&mut inner, remote, partition).lost += lost;
    }

    /// A partition stopped (re-created topic, unreadable batch, truncated source).
    pub fn stopped(&self, topic: &str, partition: i32) {
        lock(&self.inner)
            .stopped
            .insert((topic.to_string(), partition));
    }

    /// The flow failed transiently and restarts.
    pub fn restarted(&self, kind: &str) {
        let mut inner = lock(&self.inner);
        inner.restarts += 1;
        *inner.errors.entry(kind.to_string()).or_default() += 1;
    }

    /// An error of `kind` that did not stop the flow (a failed commit, checkpoint round, ...).
    pub fn error(&self, kind: &str) {
        *lock(&self.inner)
            .errors
            .entry(kind.to_string())
            .or_default() += 1;
    }

    /// Offset syncs were written at `now_ms`.
    pub fn offset_syncs_written(&self, now_ms: i64) {
        lock(&self.inner).last_offset_sync_ms = Some(now_ms);
    }

    /// A checkpoint round over `groups` finished at `now_ms`; `written` checkpoints (group,
    /// remote topic, partition, created at) were acknowledged then (`checkpoint-latency-ms`:
    /// written − created). Groups no longer replicated lose their series.
    pub fn checkpoints_written(
        &self,
        groups: &[String],
        written: &[(String, String, i32, i64)],
        now_ms: i64,
    ) {
        let mut inner = lock(&self.inner);
        inner.last_checkpoint_ms = Some(now_ms);
        let current: std::collections::HashSet<&str> = groups.iter().map(String::as_str).collect();
        inner
            .checkpoints
            .retain(|(g, _, _), _| current.contains(g.as_str()));
        for (group, topic, partition, created) in written {
            inner
                .checkpoints
                .entry((group.clone(), topic.clone(), *partition))
                .or_default()
                .record((now_ms - created).max(0) as f64, now_ms);
        }
    }
}

/// What one acknowledged batch held.
#[derive(Debug, Clone, Copy)]
pub struct Acked {
    /// Records.
    pub records: u64,
    /// Bytes of the batch's records as stored.
    pub bytes: u64,
    /// Timestamp of its newest record (-1: none).
    pub max_timestamp: i64,
}

/// MM2's `Sampled` stat over two 30 s windows: the latest value, and min/max/avg of the
/// samples in the windows that have not expired.
#[derive(Debug, Default, Clone)]
struct Window {
    last: Option<f64>,
    samples: [Sample; 2],
    current: usize,
}

#[derive(Debug, Default, Clone, Copy)]
struct Sample {
    start_ms: i64,
    count: u64,
    sum: f64,
    min: f64,
    max: f64,
}

impl Window {
    fn record(&mut self, value: f64, now_ms: i64) {
        self.last = Some(value);
        let cur = &mut self.samples[self.current];
        if cur.count > 0 && now_ms - cur.start_ms >= WINDOW_MS {
            self.current = 1 - self.current;
            self.samples[self.current] = Sample::default();
        }
        let s = &mut self.samples[self.current];
        if s.count == 0 {
            *s = Sample {
                start_ms: now_ms,
                count: 0,
                sum: 0.0,
                min: value,
                max: value,
            };
        }
        s.count += 1;
        s.sum += value;
        s.min = s.min.min(value);
        s.max = s.max.max(value);
    }

    fn live(&self, now_ms: i64) -> impl Iterator<Item = &Sample> + '_ {
        self.samples
            .iter()
            .filter(move |s| s.count > 0 && now_ms - s.start_ms < 2 * WINDOW_MS)
    }

    /// (min, max, avg) of the live samples; NaN when there are none (as MM2 reports).
    fn stats(&self, now_ms: i64) -> (f64, f64, f64) {
        let (mut min, mut max, mut sum, mut n) = (f64::INFINITY, f64::NEG_INFINITY, 0.0, 0u64);
        for s in self.live(now_ms) {
            min = min.min(s.min);
            max = max.max(s.max);
            sum += s.sum;
            n += s.count;
        }
        if n == 0 {
            (f64::NAN, f64::NAN, f64::NAN)
        } else {
            (min, max, sum / n as f64)
        }
    }
}

/// Kafka's `Rate`: the sum over the live windows divided by the time they cover.
#[derive(Debug, Default, Clone)]
struct Rate(Window);

impl Rate {
    fn record(&mut self, value: f64, now_ms: i64) {
        self.0.record(value, now_ms);
    }

    /// Per second.
    fn per_second(&self, now_ms: i64) -> f64 {
        let mut oldest = now_ms;
        let mut sum = 0.0;
        for s in self.0.live(now_ms) {
            oldest = oldest.min(s.start_ms);
            sum += s.sum;
        }
        // Kafka counts at least (samples - 1) full windows once it has them; a young rate
        // covers at least one second.
        let elapsed_ms = (now_ms - oldest).max(1000);
        sum * 1000.0 / elapsed_ms as f64
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The state at one scrape, encoded by `prometheus-client`.
#[derive(Debug)]
struct Snapshot {
    metrics: Arc<Metrics>,
    now_ms: i64,
    process: Option<ProcessStats>,
}

type Labels = Vec<(&'static str, String)>;

/// One family: name, help, type, and its series.
struct Family {
    name: &'static str,
    help: &'static str,
    counter: bool,
    series: Vec<(Labels, f64)>,
}

impl Family {
    fn gauge(name: &'static str, help: &'static str) -> Family {
        Family {
            name,
            help,
            counter: false,
            series: Vec::new(),
        }
    }

    fn counter(name: &'static str, help: &'static str) -> Family {
        Family {
            counter: true,
            ..Family::gauge(name, help)
        }
    }

    fn encode(&self, encoder: &mut DescriptorEncoder<'_>) -> std::fmt::Result {
        let kind = if self.counter {
            MetricType::Counter
        } else {
            MetricType::Gauge
        };
        let mut metric = encoder.encode_descriptor(self.name, self.help, None, kind)?;
        for (labels, value) in &self.series {
            let series = metric.encode_family(labels)?;
            if self.counter {
                ConstCounter::new(*value).encode(series)?;
            } else {
                ConstGauge::new(*value).encode(series)?;
            }
        }
        Ok(())
    }
}

impl Collector for Snapshot {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> std::fmt::Result {
        let now = self.now_ms;
        let flows = lock(&self.metrics.flows).clone();
        let mut fams: Vec<Family> = vec![
            Family::gauge(
                "kafka_connect_mirror_mirrorsourceconnector_record_count",
                "Records replicated (acknowledged by the target), as MM2's record-count.",
            ),
            Family::gauge(
                "kafka_connect_mirror_mirrorsourceconnector_record_rate",
                "Records replicated per second over the last 30-60 s.",
            ),
            Family::gauge(
                "kafka_connect_mirror_mirrorsourceconnector_byte_count",
                "Record bytes replicated, as stored in the batches (MM2 counts value bytes).",
            ),
            Family::gauge(
                "kafka_connect_mirror_mirrorsourceconnector_byte_rate",
                "Record bytes replicated per second over the last 30-60 s.",
            ),
            Family::gauge(
                "kafka_connect_mirror_mirrorsourceconnector_record_age_ms",
                "Age of the newest record of the latest batch read from the source.",
            ),
            Family::gauge(
                "kafka_connect_mirror_mirrorsourceconnector_record_age_ms_min",
                "Minimum record age over the last 30-60 s.",
            ),
            Family::gauge(
                "kafka_connect_mirror_mirrorsourceconnector_record_age_ms_max",
                "Maximum record age over the last 30-60 s.",
            ),
            Family::gauge(
                "kafka_connect_mirror_mirrorsourceconnector_record_age_ms_avg",
                "Average record age over the last 30-60 s.",
            ),
            Family::gauge(
                "kafka_connect_mirror_mirrorsourceconnector_replication_latency_ms",
                "Acknowledgement time minus record timestamp, latest batch.",
            ),
            Family::gauge(
                "kafka_connect_mirror_mirrorsourceconnector_replication_latency_ms_min",
                "Minimum replication latency over the last 30-60 s.",
            ),
            Family::gauge(
                "kafka_connect_mirror_mirrorsourceconnector_replication_latency_ms_max",
                "Maximum replication latency over the last 30-60 s.",
            ),
            Family::gauge(
                "kafka_connect_mirror_mirrorsourceconnector_replication_latency_ms_avg",
                "Average replication latency over the last 30-60 s.",
            ),
            Family::gauge(
                "strait_partition_lag_records",
                "Source high watermark minus the next offset to mirror.",
            ),
            Family::gauge(
                "strait_partition_lag_seconds",
                "While there is lag, how old the newest mirrored record is; 0 when caught up.",
            ),
            Family::counter(
                "strait_partition_lost_records",
                "Source records deleted (retention, DeleteRecords) before they were mirrored.",
            ),
        ];
        let mut cps = vec![
            Family::gauge(
                "kafka_connect_mirror_mirrorcheckpointconnector_checkpoint_latency_ms",
                "Time from creating a checkpoint to its acknowledgement, latest.",
            ),
            Family::gauge(
                "kafka_connect_mirror_mirrorcheckpointconnector_checkpoint_latency_ms_min",
                "Minimum checkpoint latency over the last 30-60 s.",
            ),
            Family::gauge(
                "kafka_connect_mirror_mirrorcheckpointconnector_checkpoint_latency_ms_max",
                "Maximum checkpoint latency over the last 30-60 s.",
            ),
            Family::gauge(
                "kafka_connect_mirror_mirrorcheckpointconnector_checkpoint_latency_ms_avg",
                "Average checkpoint latency over the last 30-60 s.",
            ),
        ];
        let mut per_flow = vec![
            Family::gauge(
                "strait_flow_running",
                "1 while the flow replicates, 0 while it starts or restarts.",
            ),
            Family::gauge("strait_partitions", "Source partitions the flow has seen."),
            Family::gauge(
                "strait_partitions_stopped",
                "Partitions stopped during this run (the exit status reports them).",
            ),
            Family::gauge(
                "strait_offset_sync_last_timestamp_seconds",
                "When offset syncs were last written.",
            ),
            Family::gauge(
                "strait_checkpoint_last_timestamp_seconds",
                "When the last checkpoint round finished.",
            ),
            Family::gauge(
                "strait_inflight_bytes",
                "Bytes fetched and not yet acknowledged by the target.",
            ),
            Family::gauge(
                "strait_inflight_budget_bytes",
                "The in-flight budget (strait.inflight.bytes).",
            ),
            Family::counter(
                "strait_flow_restarts",
                "Times the flow restarted after a transient failure.",
            ),
        ];
        let mut errors = Family::counter(
            "strait_errors",
            "Errors by kind that did not stop the process.",
        );
        for f in &flows {
            let flow: Labels = vec![("source", f.source.clone()), ("target", f.target.clone())];
            let inner = lock(&f.inner);
            let partitions = inner
                .partitions
                .iter()
                .flat_map(|(t, ps)| ps.iter().map(move |(p, s)| ((t, p), s)));
            for ((topic, partition), p) in partitions {
                let mut l = flow.clone();
                l.push(("topic", topic.clone()));
                l.push(("partition", partition.to_string()));
                let (amin, amax, aavg) = p.age.stats(now);
                let (lmin, lmax, lavg) = p.latency.stats(now);
                let lag = p.lag();
                let lag_seconds = p.lag_seconds(now);
                let values = [
                    Some(p.records as f64),
                    Some(p.record_rate.per_second(now)),
                    Some(p.bytes as f64),
                    Some(p.byte_rate.per_second(now)),
                    Some(p.age.last.unwrap_or(f64::NAN)),
                    Some(amin),
                    Some(amax),
                    Some(aavg),
                    Some(p.latency.last.unwrap_or(f64::NAN)),
                    Some(lmin),
                    Some(lmax),
                    Some(lavg),
                    lag.map(|l| l as f64),
                    lag_seconds,
                    Some(p.lost as f64),
                ];
                for (fam, v) in fams.iter_mut().zip(values) {
                    if let Some(v) = v {
                        fam.series.push((l.clone(), v));
                    }
                }
            }
            for ((group, topic, partition), w) in &inner.checkpoints {
                let mut l = flow.clone();
                l.push(("group", group.clone()));
                l.push(("topic", topic.clone()));
                l.push(("partition", partition.to_string()));
                let (min, max, avg) = w.stats(now);
                for (fam, v) in cps
                    .iter_mut()
                    .zip([w.last.unwrap_or(f64::NAN), min, max, avg])
                {
                    fam.series.push((l.clone(), v));
                }
            }
            let secs = |ms: Option<i64>| ms.map(|m| m as f64 / 1000.0);
            let (inflight, budget) = match &*lock(&f.budget) {
                Some((free, total)) => (
                    Some(total.saturating_sub(free.available_permits()) as f64),
                    Some(*total as f64),
                ),
                None => (None, None),
            };
            let values = [
                Some(f.running.load(Ordering::Acquire) as f64),
                Some(inner.partitions.values().map(BTreeMap::len).sum::<usize>() as f64),
                Some(inner.stopped.len() as f64),
                secs(inner.last_offset_sync_ms),
                secs(inner.last_checkpoint_ms),
                inflight,
                budget,
                Some(inner.restarts as f64),
            ];
            for (fam, v) in per_flow.iter_mut().zip(values) {
                if let Some(v) = v {
                    fam.series.push((flow.clone(), v));
                }
            }
            for (kind, n) in &inner.errors {
                let mut l = flow.clone();
                l.push(("kind", kind.clone()));
                errors.series.push((l, *n as f64));
            }
        }
        let mut retries = Family::counter(
            "strait_client_retries",
            "Retries by the wire client of a cluster, by operation and error (the broker's error \
             code name, or a client-side kind such as connect or request_timeout): one per \
             retried call for admin and metadata calls, one per partition for Produce and Fetch.",
        );
        for (alias, cluster) in lock(&self.metrics.clusters).iter() {
            for (operation, error, n) in cluster.retries().snapshot() {
                let labels: Labels = vec![
                    ("cluster", alias.clone()),
                    ("operation", operation),
                    ("error", error),
                ];
                retries.series.push((labels, n as f64));
            }
        }
        for fam in fams
            .iter()
            .chain(&cps)
            .chain(&per_flow)
            .chain([&errors, &retries])
        {
            fam.encode(&mut encoder)?;
        }
        if let Some(p) = self.process {
            let mut process = [
                Family::counter(
                    "process_cpu_seconds",
                    "User and system CPU time spent in seconds.",
                ),
                Family::gauge(
                    "process_resident_memory_bytes",
                    "Resident memory size in bytes.",
                ),
                Family::gauge("process_open_fds", "Number of open file descriptors."),
                Family::gauge(
                    "process_start_time_seconds",
                    "Start time of the process since the epoch in seconds.",
                ),
            ];
            let values = [
                p.cpu_seconds,
                p.resident_bytes as f64,
                p.open_fds as f64,
                p.start_time_seconds,
            ];
            for (fam, v) in process.iter_mut().zip(values) {
                fam.series.push((Vec::new(), v));
                fam.encode(&mut encoder)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SOURCE: &str = "kafka_connect_mirror_mirrorsourceconnector_";

    fn line<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
        text.lines().find(|l| l.starts_with(prefix))
    }

    #[test]
    fn mm2_names_lag_and_windows() {
        let m = Metrics::new();
        let f = m.flow("A", "B");
        f.set_running(true);
        f.fetched("A.t", 0, 100, 1_000);
        f.forwarding("A.t", 0, 1_000, 1_500);
        let acked = |records, bytes, max_timestamp| Acked {
            records,
            bytes,
            max_timestamp,
        };
        f.acknowledged("A.t", 0, acked(10, 640, 1_000), 10, 1_600);
        f.acknowledged("A.t", 0, acked(30, 1920, 1_100), 40, 2_000);
        let text = m.encode(2_000, None);
        let labels = r#"{source="A",target="B",topic="A.t",partition="0"}"#;
        let has = |text: &str, prefix: String| line(text, &prefix).is_some();
        assert_eq!(
            line(&text, &format!("{SOURCE}record_count{labels}")),
            Some(format!("{SOURCE}record_count{labels} 40.0").as_str())
        );
        assert!(
            has(&text, format!("{SOURCE}byte_count{labels} 2560")),
            "{text}"
        );
        assert!(has(
            &text,
            format!("{SOURCE}replication_latency_ms_max{labels} 900")
        ));
        assert!(has(
            &text,
            format!("{SOURCE}replication_latency_ms_min{labels} 600")
        ));
        assert!(has(&text, format!("{SOURCE}record_age_ms{labels} 500")));
        assert!(has(
            &text,
            format!("strait_partition_lag_records{labels} 60")
        ));
        // Lag in seconds: behind since the newest mirrored record (1.1 s), 0.9 s ago.
        assert!(has(
            &text,
            format!("strait_partition_lag_seconds{labels} 0.9")
        ));
        assert!(has(
            &text,
            "# TYPE strait_partition_lost_records counter".into()
        ));
        // Old samples expire from min/max/avg; the count stays.
        let later = m.encode(200_000, None);
        assert!(
            has(
                &later,
                format!("{SOURCE}replication_latency_ms_max{labels} NaN")
            ),
            "{later}"
        );
        assert!(has(&later, format!("{SOURCE}record_count{labels} 40")));
        // Caught up: lag 0 in both.
        f.fetched("A.t", 0, 40, 2_500);
        let caught_up = m.encode(3_000, None);
        assert!(has(
            &caught_up,
            format!("strait_partition_lag_records{labels} 0")
        ));
        assert!(has(
            &caught_up,
            format!("strait_partition_lag_seconds{labels} 0")
        ));
        // Idle for an hour with no answer for the partition at all (a fetch session leaves
        // out partitions where nothing changed), then a record arrives: behind since the answer
        // that brought it (until then it was caught up), not since the last answer an hour ago.
        f.fetched("A.t", 0, 41, 3_600_000);
        let woke = m.encode(3_601_000, None);
        assert!(
            has(&woke, format!("strait_partition_lag_seconds{labels} 1")),
            "{woke}"
        );
        // A stopped partition counts once per run.
        f.stopped("t", 0);
        f.stopped("t", 0);
        assert!(has(
            &m.encode(0, None),
            r#"strait_partitions_stopped{source="A",target="B"} 1"#.into()
        ));
        // Deleted topics lose their series.
        f.forget_topic("A.t");
        assert!(!has(
            &m.encode(3_601_000, None),
            format!("{SOURCE}record_count{labels}")
        ));
    }

    #[test]
    fn health_follows_the_flows() {
        let m = Metrics::new();
        assert!(!m.health(0).ready, "no flow yet");
        let f = m.flow("A", "B");
        assert!(m.health(0).live);
        assert!(!m.health(0).ready);
        f.set_running(true);
        f.loop_turned(1_000);
        assert!(m.health(2_000).ready);
        let wedged = m.health(1_000 + WEDGED_AFTER_MS + 1);
        assert!(!wedged.live && !wedged.ready, "{wedged:?}");
        // The same flow again (a restart) is the same metrics.
        assert!(Arc::ptr_eq(&f, &m.flow("A", "B")));
    }

    #[test]
    fn rates_cover_the_live_windows() {
        let mut r = Rate::default();
        r.record(100.0, 0);
        r.record(100.0, 10_000);
        assert!((r.per_second(20_000) - 10.0).abs() < 1e-9);
        assert_eq!(r.per_second(200_000), 0.0);
    }
}
