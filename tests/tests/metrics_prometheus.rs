//! Strait's `/metrics`, `/healthz` and `/readyz` on Apache Kafka, scraped by a real Prometheus
//! (Debian's `prometheus` package, installed by `scripts/install-deps.sh`): PromQL sees MM2's
//! metric names with the record counts mirrored, and a lag that rises while the target is down
//! and falls to 0 once Strait catches up. Then `strait status` reads the same from the clusters
//! while Strait is stopped.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use strait_tests::http::{get, percent_encode};
use strait_tests::kafka::start_clusters;
use strait_tests::reference::{self, Outgoing};
use strait_tests::strait::{mm2_properties, strait_command, StraitProcess};
use strait_tests::tansu::free_port;

/// A Prometheus server scraping `target` every second; killed on drop.
struct Prometheus {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    fn start(target: &str) -> Option<Prometheus> {
        let binary = ["prometheus", "/usr/bin/prometheus"]
            .into_iter()
            .find(|b| Command::new(b).arg("--version").output().is_ok())?;
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
                 scrape_configs:\n  - job_name: strait\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .unwrap();
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
        let child = Command::new(binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start prometheus");
        let p = Prometheus {
            child,
            port,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while get(port, "/-/ready").map(|r| r.0) != Some(200) {
            assert!(
                Instant::now() < deadline,
                "prometheus not ready:\n{}",
                p.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        Some(p)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// The value of an instant PromQL query that returns one sample, if it returns one.
    fn query(&self, promql: &str) -> Option<f64> {
        let encoded = percent_encode(promql);
        let (code, body) = get(self.port, &format!("/api/v1/query?query={encoded}"))?;
        assert_eq!(code, 200, "query {promql}: {body}");
        // {"status":"success","data":{"resultType":"vector","result":[{"metric":{...},"value":[t,"v"]}]}}
        let value = body.split("\"value\":[").nth(1)?;
        let v = value.split('"').nth(1)?;
        v.parse().ok()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_query(
    p: &Prometheus,
    strait: &mut StraitProcess,
    promql: &str,
    within: Duration,
    ok: impl Fn(f64) -> bool,
) -> f64 {
    let deadline = Instant::now() + within;
    let mut last = None;
    loop {
        last = p.query(promql).or(last);
        if let Some(v) = last.filter(|v| ok(*v)) {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "`{promql}` = {last:?} after {within:?}\nprometheus log:\n{}\nstrait log:\n{}",
            p.log(),
            strait.log()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn numbered(prefix: &str, n: usize) -> Vec<Outgoing> {
    (0..n)
        .map(|i| Outgoing::kv(format!("k{i}"), format!("{prefix}{i}")))
        .collect()
}

#[test]
fn prometheus_scrapes_mm2_metrics_and_lag() {
    let mut clusters = start_clusters("metrics", 2);
    let (a, b) = (clusters[0].bootstrap(), clusters[1].bootstrap());
    reference::create_topic(&a, "m", 2);
    for p in 0..2 {
        reference::produce(&a, "m", p, &numbered("x", 500), &[]);
    }
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    // Topics are refreshed every 2 s (`mm2_properties`): a refresh waits for the target (it
    // creates remote topics), and the lag below must still rise while the target is down.
    // Before topic maintenance left the fetch loop, the first refresh after the target
    // stopped held the loop, and the lag stayed at 0.
    let config = mm2_properties(&a, &b, &format!("strait.metrics.listen = 127.0.0.1:{port}"));
    let mut strait = StraitProcess::start(&config, dir.path());

    // The probes, straight.
    let deadline = Instant::now() + Duration::from_secs(60);
    while get(port, "/readyz").map(|r| r.0) != Some(200) {
        assert!(
            Instant::now() < deadline,
            "never ready: {:?}\n{}",
            get(port, "/readyz"),
            strait.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(get(port, "/healthz").map(|r| r.0), Some(200));
    assert_eq!(get(port, "/nope").map(|r| r.0), Some(404));

    let Some(prom) = Prometheus::start(&format!("127.0.0.1:{port}")) else {
        eprintln!("SKIPPED prometheus_scrapes_mm2_metrics_and_lag: no `prometheus` binary (scripts/install-deps.sh installs Debian's)");
        return;
    };
    let count = r#"sum(kafka_connect_mirror_mirrorsourceconnector_record_count{source="A",target="B",topic="A.m"})"#;
    let lag = r#"max(strait_partition_lag_records{source="A",target="B",topic="A.m"})"#;
    wait_query(
        &prom,
        &mut strait,
        r#"up{job="strait"}"#,
        Duration::from_secs(30),
        |v| v == 1.0,
    );
    wait_query(&prom, &mut strait, count, Duration::from_secs(60), |v| {
        v == 1000.0
    });
    wait_query(&prom, &mut strait, lag, Duration::from_secs(30), |v| {
        v == 0.0
    });
    for name in [
        "kafka_connect_mirror_mirrorsourceconnector_replication_latency_ms_max",
        "kafka_connect_mirror_mirrorsourceconnector_record_age_ms",
        "kafka_connect_mirror_mirrorsourceconnector_byte_count",
        "process_resident_memory_bytes",
        "strait_inflight_budget_bytes",
    ] {
        let v = wait_query(
            &prom,
            &mut strait,
            &format!("max({name})"),
            Duration::from_secs(10),
            |v| v >= 0.0,
        );
        eprintln!("{name} = {v}");
    }

    // The target goes down while the source grows: the lag rises and /healthz stays up.
    let t = Instant::now();
    clusters[1].stop_broker(0);
    // Long enough for a topic refresh (every 2 s) to start waiting for the target.
    std::thread::sleep(Duration::from_secs(5));
    for p in 0..2 {
        reference::produce(&a, "m", p, &numbered("y", 500), &[]);
    }
    let high = wait_query(&prom, &mut strait, lag, Duration::from_secs(30), |v| {
        v > 0.0
    });
    eprintln!(
        "lag {high} records {:?} after the target stopped (5 s before the source grew)",
        t.elapsed()
    );
    assert_eq!(get(port, "/healthz").map(|r| r.0), Some(200));
    clusters[1].restart_broker(0);
    wait_query(&prom, &mut strait, lag, Duration::from_secs(120), |v| {
        v == 0.0
    });
    let total = wait_query(&prom, &mut strait, count, Duration::from_secs(60), |v| {
        v >= 2000.0
    });
    assert_eq!(total, 2000.0, "every record counted once");
    eprintln!("caught up {:?} after the target stopped", t.elapsed());
    // The clients' retries while the broker was away are counted, by cluster and operation.
    let retries = r#"sum(strait_client_retries_total{cluster="B"})"#;
    let n = wait_query(&prom, &mut strait, retries, Duration::from_secs(30), |v| {
        v > 0.0
    });
    eprintln!("{n} requests to B retried while its broker was down");
    reference::commit_offsets(&a, "g-status", &[("m", 0, 700)]);
    let cps = r#"max(kafka_connect_mirror_mirrorcheckpointconnector_checkpoint_latency_ms_max{group="g-status"})"#;
    wait_query(&prom, &mut strait, cps, Duration::from_secs(30), |v| {
        v >= 0.0
    });
    let status = strait.terminate(Duration::from_secs(30)).expect("exits");
    assert!(status.success(), "{}", strait.log());

    // `strait status` reads the same from the clusters while Strait is stopped.
    let config_path = dir.path().join("mm2.properties");
    let (code, out) = strait_command(
        &["status", "--config", config_path.to_str().unwrap()],
        &[],
        Duration::from_secs(60),
    );
    assert!(code.is_some_and(|c| c.success()), "{out}");
    eprintln!("strait status:\n{out}");
    // m/0, m/1 and heartbeats/0 (written on A for the pair B->A). A heartbeat written just
    // before the stop may have come after the flow's last fetch: heartbeats/0 may lag by one,
    // the data partitions may not.
    let heartbeat_lag: i64 = out
        .lines()
        .find(|l| l.starts_with("  heartbeats/0\t"))
        .and_then(|l| l.split('\t').nth(5))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no heartbeats/0 line with a lag:\n{out}"));
    assert!(
        heartbeat_lag <= 1,
        "heartbeats/0 lags by {heartbeat_lag}:\n{out}"
    );
    assert!(
        out.contains(&format!(
            "flow A->B: 3 partitions, lag {heartbeat_lag} records\n"
        )),
        "{out}"
    );
    for p in 0..2 {
        assert!(
            out.contains(&format!("  m/{p}\tA.m\t0\t1000\t1000\t0\t")),
            "m/{p}:\n{out}"
        );
    }
    assert!(out.contains("  g-status\tA.m/0\t700\t700\t"), "{out}");
}
