//! The `strait` command: `run`, `check` and `translate` (see `strait --help`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use protocol_client::admin::Admin;
use replicator::config::Config;
use replicator::flow::Flow;
use replicator::run::{aliases, run, writers, Clusters};
use tokio::sync::watch;

/// The static (musl) build allocates through mimalloc: musl's own malloc cost ~19 % more CPU
/// per GB in the end-to-end bench (benches/README.md).
#[cfg(target_env = "musl")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(
    name = "strait",
    version,
    about = "MirrorMaker 2 compatible Kafka replicator: zero-copy forwarding, exact offset translation"
)]
struct Cli {
    /// Log format on stderr: `text` (colours only on a terminal) or `json` (one object per
    /// line, for log shippers). Also `STRAIT_LOG_FORMAT`.
    #[arg(long, global = true, value_name = "FORMAT")]
    log_format: Option<LogFormat>,
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run every enabled flow until SIGINT/SIGTERM.
    Run {
        /// mm2.properties or Strimzi KafkaMirrorMaker2 YAML.
        #[arg(long, short)]
        config: PathBuf,
        /// Serve /metrics (Prometheus), /healthz and /readyz here, e.g. 0.0.0.0:9464
        /// (overrides `strait.metrics.listen`; off unless one of them is given).
        #[arg(long, value_name = "ADDR")]
        metrics_listen: Option<std::net::SocketAddr>,
    },
    /// Validate the configuration, connect to every cluster, print what would be replicated.
    Check {
        /// mm2.properties or Strimzi KafkaMirrorMaker2 YAML.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Translate a group's offsets from the checkpoints (MM2's RemoteClusterUtils.translateOffsets),
    /// saying of each whether Strait's exact offset map confirms it ("exact") or it only has
    /// MM2's guarantee, never ahead but possibly behind ("conservative").
    Translate {
        /// mm2.properties or Strimzi KafkaMirrorMaker2 YAML.
        #[arg(long, short)]
        config: PathBuf,
        /// Source cluster alias (where the group committed).
        #[arg(long)]
        source: String,
        /// Target cluster alias (where the checkpoints are).
        #[arg(long)]
        target: String,
        /// Consumer group.
        #[arg(long)]
        group: String,
        /// Print JSON: [{"topic":…,"partition":…,"offset":…,"basis":"exact"|"conservative"}].
        #[arg(long)]
        json: bool,
    },
    /// How far each flow is: per partition the source's range, what is mirrored, the lag and the
    /// last offset sync; per group the latest checkpoint and its age. Read from the clusters, so
    /// it works while Strait runs elsewhere or is stopped.
    Status {
        /// mm2.properties or Strimzi KafkaMirrorMaker2 YAML.
        #[arg(long, short)]
        config: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Sample data for trying Strait out (the README demo).
    Sample {
        #[command(subcommand)]
        action: SampleAction,
    },
}

#[derive(Subcommand, Debug)]
enum SampleAction {
    /// Create `orders` and `payments`, write records, commit group `analytics` halfway.
    Produce {
        /// Cluster to write to.
        #[arg(long)]
        bootstrap: String,
        /// Records per partition.
        #[arg(long, default_value_t = 10_000)]
        records: usize,
    },
    /// Print every topic's partitions, end offsets and first record.
    Summary {
        /// Cluster to read.
        #[arg(long)]
        bootstrap: String,
    },
}

fn init_logging(format: Option<LogFormat>) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("STRAIT_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let format = format.unwrap_or_else(|| match std::env::var("STRAIT_LOG_FORMAT").as_deref() {
        Ok("json") => LogFormat::Json,
        _ => LogFormat::Text,
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().with_current_span(false).init(),
        // Colour codes only on a terminal: a log file or a collector gets plain text.
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
    }
}

fn load(path: &std::path::Path) -> anyhow::Result<Config> {
    Config::load(path).map_err(|e| anyhow::anyhow!("{e}"))
}

/// glibc gives each thread that finds the allocator busy an arena of its own and keeps what
/// it frees there: with many partitions that held ~20 MiB more than two arenas do (74 against
/// 64 MiB peak at 1000 partitions, same throughput; benches/README.md). The arena limit can
/// only be set before the process starts, so `strait` sets `MALLOC_ARENA_MAX=2` and replaces
/// itself (same process id, arguments and environment otherwise) unless the variable is set
/// already. Nothing happens on other C libraries (the static musl build) or if the re-exec
/// fails (Strait then runs as it is).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn limit_malloc_arenas() {
    use std::os::unix::process::CommandExt;
    if std::env::var_os("MALLOC_ARENA_MAX").is_some() {
        return;
    }
    let mut args = std::env::args_os();
    let Some(arg0) = args.next() else { return };
    let err = std::process::Command::new("/proc/self/exe")
        .arg0(arg0)
        .args(args)
        .env("MALLOC_ARENA_MAX", "2")
        .exec();
    // Only reached when the exec failed.
    eprintln!("strait: could not re-exec with MALLOC_ARENA_MAX=2 ({err}); continuing");
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn limit_malloc_arenas() {}

fn main() -> ExitCode {
    limit_malloc_arenas();
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let result = rt.block_on(async move {
        match cli.command {
            Command::Run {
                config,
                metrics_listen,
            } => cmd_run(config, metrics_listen).await,
            Command::Check { config } => cmd_check(config).await,
            Command::Translate {
                config,
                source,
                target,
                group,
                json,
            } => cmd_translate(config, source, target, group, json).await,
            Command::Status { config, json } => cmd_status(config, json).await,
            Command::Sample {
                action: SampleAction::Produce { bootstrap, records },
            } => replicator::sample::produce(&bootstrap, records)
                .await
                .map_err(Into::into),
            Command::Sample {
                action: SampleAction::Summary { bootstrap },
            } => replicator::sample::summary(&bootstrap)
                .await
                .map_err(Into::into),
        }
    });
    rt.shutdown_timeout(Duration::from_secs(1));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Error messages already embed their cause's text (`cluster A: <cause>`): print a
            // cause of the chain only when it adds something.
            let mut msg = e.to_string();
            for cause in e.chain().skip(1) {
                let c = cause.to_string();
                if !msg.contains(&c) {
                    msg.push_str(": ");
                    msg.push_str(&c);
                }
            }
            eprintln!("strait: {msg}");
            ExitCode::FAILURE
        }
    }
}

async fn cmd_run(
    path: PathBuf,
    metrics_listen: Option<std::net::SocketAddr>,
) -> anyhow::Result<()> {
    let mut config = load(&path)?;
    if metrics_listen.is_some() {
        config.metrics_listen = metrics_listen;
    }
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut runner = tokio::spawn(run(config, stop_rx));
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    tokio::select! {
        r = &mut runner => return r.context("runner panicked")?.map_err(Into::into),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: stopping"),
        _ = sigterm.recv() => tracing::info!("SIGTERM: stopping"),
    }
    let _ = stop_tx.send(true);
    match tokio::time::timeout(Duration::from_secs(20), runner).await {
        Ok(r) => r.context("runner panicked")?.map_err(Into::into),
        Err(_) => bail!("did not stop within 20 s"),
    }
}

async fn cmd_check(path: PathBuf) -> anyhow::Result<()> {
    let config = load(&path)?;
    for w in &config.warnings {
        println!("warning: {w}");
    }
    println!(
        "config: {} cluster(s), {} enabled flow(s)",
        config.clusters.len(),
        config.flows.len()
    );
    for alias in aliases(&config) {
        if let Some(c) = config.clusters.get(&alias) {
            println!(
                "cluster {alias}: {} via {}",
                replicator::security::describe(c),
                c.bootstrap_servers.join(",")
            );
        }
    }
    let clusters = Clusters::connect(&config, &aliases(&config), &writers(&config)).await?;
    let mut problems = 0;
    for (alias, cluster) in &clusters.clusters {
        match Admin::new(cluster.clone()).describe_cluster().await {
            Ok(d) => println!(
                "cluster {alias}: reachable, id {}, {} broker(s)",
                d.cluster_id.as_deref().unwrap_or("?"),
                d.brokers.len()
            ),
            Err(e) => {
                problems += 1;
                println!("cluster {alias}: ERROR {e}");
            }
        }
    }
    for fc in &config.flows {
        let flow = Flow::new(
            fc.clone(),
            clusters.clusters[&fc.source].clone(),
            clusters.clusters[&fc.target].clone(),
            clusters.producers[&fc.target].clone(),
            clusters.producers[&fc.target].clone(),
        );
        println!("flow {}:", flow.name());
        match flow.select_topics().await {
            Ok(topics) => {
                for (t, p) in &topics {
                    println!("  topic {t} -> {} ({p} partitions)", flow.remote_topic(t));
                }
                if topics.is_empty() {
                    println!("  no source topic matches");
                }
            }
            Err(e) => {
                problems += 1;
                println!("  ERROR listing topics: {e}");
            }
        }
        match Admin::new(clusters.clusters[&fc.source].clone())
            .list_groups()
            .await
        {
            Ok(groups) => {
                for g in groups
                    .iter()
                    .filter(|g| fc.groups.should_replicate_group(&g.group_id))
                {
                    println!("  group {}", g.group_id);
                }
            }
            Err(e) => println!("  groups: cannot list ({e})"),
        }
    }
    if problems > 0 {
        bail!("{problems} problem(s) found");
    }
    Ok(())
}

async fn cmd_status(path: PathBuf, json: bool) -> anyhow::Result<()> {
    let config = load(&path)?;
    // Read only: no producers.
    let clusters = Clusters::connect(
        &config,
        &aliases(&config),
        &std::collections::BTreeSet::new(),
    )
    .await?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let mut flows = Vec::new();
    for fc in &config.flows {
        let c = |alias: &str| clusters.clusters[alias].clone();
        let (_, sync_alias) = fc.offset_syncs_topic();
        flows.push(
            replicator::status::flow_status(
                fc,
                &c(&fc.source),
                &c(&fc.target),
                &c(sync_alias),
                now,
            )
            .await?,
        );
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&flows)?);
    } else {
        print!("{}", replicator::status::render(&flows));
    }
    Ok(())
}

async fn cmd_translate(
    path: PathBuf,
    source: String,
    target: String,
    group: String,
    json: bool,
) -> anyhow::Result<()> {
    use replicator::translate::{classify, latest_checkpoints, needs_reverse};
    let config = load(&path)?;
    let default_policy = replicator::policy::ReplicationPolicy::default_policy();
    let (topic, policy, max_runs) = match config.flow(&source, &target) {
        Some(f) => (f.checkpoints_topic(), &f.policy, f.offset_map_max_runs),
        None => (
            default_policy.checkpoints_topic(&source),
            &default_policy,
            replicator::offsets::DEFAULT_MAX_RUNS,
        ),
    };
    let mut only = std::collections::BTreeSet::new();
    only.insert(target.clone());
    // Read only: no producer (a principal that may only read the target can translate).
    let clusters = Clusters::connect(&config, &only, &std::collections::BTreeSet::new()).await?;
    let target_cluster = &clusters.clusters[&target];
    let records = replicator::internal::read_to_end(target_cluster, &target, &topic).await?;
    let latest = latest_checkpoints(
        records
            .into_iter()
            .filter_map(|r| Some((r.key?.to_vec(), r.value?.to_vec()))),
        &group,
    );
    // Which answers Strait's exact maps confirm: the flow's own (on the target) and, for
    // failback checkpoints, the reverse flow's (on the source; read only if needed and
    // reachable).
    let forward = match replicator::internal::read_offset_maps(
        target_cluster,
        &target,
        &source,
        max_runs,
    )
    .await
    {
        Ok(maps) => maps,
        Err(e) => {
            eprintln!("note: could not read Strait's offset maps on {target} ({e}); every answer is shown as conservative");
            Default::default()
        }
    };
    let mut reverse = None;
    if needs_reverse(&latest, policy, &source) {
        let mut only = std::collections::BTreeSet::new();
        only.insert(source.clone());
        let read = async {
            let c = Clusters::connect(&config, &only, &std::collections::BTreeSet::new()).await?;
            replicator::internal::read_offset_maps(&c.clusters[&source], &source, &target, max_runs)
                .await
        };
        match read.await {
            Ok(maps) => reverse = Some(maps),
            Err(e) => eprintln!(
                "note: could not read the reverse flow's offset maps on {source} ({e}); failback checkpoints are shown as conservative"
            ),
        }
    }
    let rows = classify(&latest, &forward, reverse.as_ref(), policy, &source);
    if json {
        let rows: Vec<_> = rows
            .iter()
            .map(|r| {
                serde_json::json!({"topic": r.topic, "partition": r.partition, "offset": r.offset, "basis": r.basis.as_str()})
            })
            .collect();
        println!("{}", serde_json::Value::Array(rows));
    } else {
        for r in &rows {
            println!(
                "{}\t{}\t{}\t{}",
                r.topic,
                r.partition,
                r.offset,
                r.basis.as_str()
            );
        }
    }
    Ok(())
}
