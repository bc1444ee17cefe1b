//! Running a whole configuration: connect the clusters, run every enabled flow (restarting a
//! flow after a transient failure: it resumes exactly from its stored state), emit heartbeats
//! for every pair MM2 would, and stop cleanly when told to.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use protocol_client::cluster::{ClientConfig, Cluster};
use protocol_client::producer::{Producer, ProducerConfig, SendGate};
use tokio::sync::watch;
use tracing::{error, info, warn};

use crate::config::{ClusterConfig, Config, FlowConfig};
use crate::error::{Error, Result};
use crate::flow::Flow;
use crate::heartbeat::heartbeat_loop;
use crate::metrics::Metrics;
use crate::scale::runner::{run_membership, FlowSource, Membership, Seats};

/// Client settings for a cluster, with its TLS connector and SASL credentials (files named by
/// the settings are read here; problems are reported with the cluster's alias).
pub fn client_config(cluster: &ClusterConfig) -> Result<ClientConfig> {
    let security = crate::security::cluster_security(cluster)?;
    let mut cfg = ClientConfig::new(&cluster.bootstrap_servers.join(","));
    cfg.conn.client_id = cluster
        .client
        .client_id
        .clone()
        .unwrap_or_else(|| format!("strait-{}", cluster.alias));
    if let Some(t) = cluster.client.request_timeout {
        cfg.conn.request_timeout = t;
    }
    cfg.conn.tls = security.tls;
    cfg.conn.sasl = security.sasl;
    Ok(cfg)
}

/// Connected clusters and their producers, by alias.
#[derive(Debug, Default)]
pub struct Clusters {
    /// Clusters.
    pub clusters: BTreeMap<String, Arc<Cluster>>,
    /// One idempotent producer per cluster written to.
    pub producers: BTreeMap<String, Producer>,
}

impl Clusters {
    /// Connects to every alias in `aliases`, with a producer for those also in `writers`
    /// (making one asks the cluster for a producer id, which a principal that may only read
    /// is refused).
    pub async fn connect(
        config: &Config,
        aliases: &BTreeSet<String>,
        writers: &BTreeSet<String>,
    ) -> Result<Clusters> {
        let mut out = Clusters::default();
        for alias in aliases {
            let cc = config
                .clusters
                .get(alias)
                .ok_or_else(|| Error::Other(format!("unknown cluster alias {alias}")))?;
            let cluster = Cluster::connect(client_config(cc)?)
                .await
                .map_err(Error::client(alias))?;
            if writers.contains(alias) {
                let producer = Producer::new(
                    cluster.clone(),
                    ProducerConfig {
                        linger: Duration::from_millis(2),
                        ..ProducerConfig::default()
                    },
                )
                .await
                .map_err(Error::client(alias))?;
                out.producers.insert(alias.clone(), producer);
            }
            out.clusters.insert(alias.clone(), cluster);
        }
        Ok(out)
    }
}

/// The producer a flow forwards batches with: idempotent, and a partition stops at its first
/// batch that fails for good, so the remote partition never gets a gap. A scale-out member
/// sends only under its membership lease (`gate`).
///
/// Exactly-once mode (`transactional_id`): the producer is transactional; starting it fences
/// every earlier producer of the id (a previous run, a zombie) and aborts what it left open.
pub async fn data_producer(
    target: &Arc<Cluster>,
    alias: &str,
    gate: Option<SendGate>,
    transactional_id: Option<String>,
) -> Result<Producer> {
    Producer::new(
        target.clone(),
        ProducerConfig {
            linger: Duration::from_millis(2),
            stop_partition_on_failure: true,
            send_gate: gate,
            transactional_id,
            ..ProducerConfig::default()
        },
    )
    .await
    .map_err(Error::client(alias))
}

/// A scale-out member's slot, once it has one and its membership lease holds: a run of a
/// member that stalled past its session (its lease ran out, its slot maybe another's by now)
/// does not take the slot's transactional id, which would fence the slot's new holder, before
/// the membership task has learnt whether it is still in the group.
async fn leased_slot(seat: &crate::scale::runner::Seat, mut lease: SendGate) -> u32 {
    let mut slot = seat.slot();
    loop {
        let current = *slot.borrow_and_update();
        let until = *lease.borrow_and_update();
        let leased = until.is_some_and(|u| std::time::Instant::now() < u);
        match current {
            Some(s) if leased => return s,
            _ => {}
        }
        // A closed channel never changes again (the stop ends the wait instead).
        tokio::select! {
            Ok(()) = slot.changed() => {}
            Ok(()) = lease.changed() => {}
            else => std::future::pending::<()>().await,
        }
    }
}

/// Exactly-once mode, a run ended without committing (membership lost): its open
/// transaction is aborted now rather than when another member fences it or it times out. A
/// member that stalled past its session finds it fenced already; that refusal is logged.
async fn abort_open_transaction(data: &Producer, flow: &str) {
    let Some(id) = data.transactional_id() else {
        return;
    };
    match tokio::time::timeout(Duration::from_secs(10), data.abort_transaction()).await {
        Ok(Ok(())) => info!(flow, transactional_id = %id, "aborted the run's open transaction"),
        Ok(Err(e)) if matches!(e, protocol_client::Error::Fenced { .. }) => {
            warn!(flow, transactional_id = %id, error = %e, "fenced: another member took over this member's transactional id; nothing more of this run is written")
        }
        Ok(Err(e)) => {
            warn!(flow, transactional_id = %id, error = %e, "aborting the run's open transaction failed; it is aborted when the id is fenced or the transaction times out")
        }
        Err(_) => {
            warn!(flow, transactional_id = %id, "aborting the run's open transaction timed out; it is aborted when the id is fenced or the transaction times out")
        }
    }
}

/// Every alias the configuration talks to.
pub fn aliases(config: &Config) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for f in &config.flows {
        out.insert(f.source.clone());
        out.insert(f.target.clone());
    }
    for h in &config.heartbeat_only {
        out.insert(h.target.clone());
    }
    if let Some(g) = &config.group {
        out.insert(g.cluster.clone());
    }
    out
}

/// Every alias the configuration writes to: flow targets, heartbeat targets, and where a
/// flow's offset syncs go (a source is written to only for those).
pub fn writers(config: &Config) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for f in &config.flows {
        out.insert(f.target.clone());
        if f.emit_offset_syncs {
            out.insert(f.offset_syncs_topic().1.to_string());
        }
    }
    for h in &config.heartbeat_only {
        out.insert(h.target.clone());
    }
    out
}

/// Runs `job` while `leader` is true (stopping it when leadership goes, starting it again when
/// it comes back) until `stop`.
async fn while_leading<F, Fut>(
    mut leader: watch::Receiver<Option<u64>>,
    mut stop: watch::Receiver<bool>,
    job: F,
) -> Result<()>
where
    F: Fn(watch::Receiver<bool>) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    loop {
        tokio::select! {
            r = leader.wait_for(Option::is_some) => if r.is_err() { return Ok(()) },
            _ = stop.wait_for(|s| *s) => return Ok(()),
        }
        let (job_stop, rx) = watch::channel(false);
        let running = job(rx);
        tokio::pin!(running);
        tokio::select! {
            r = &mut running => return r,
            _ = leader.wait_for(Option::is_none) => {}
            _ = stop.wait_for(|s| *s) => {}
        }
        let _ = job_stop.send(true);
        running.await?;
        if *stop.borrow() {
            return Ok(());
        }
    }
}

/// `<host>-<pid>`: how this process names itself to the group's other members.
fn process_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "unknown-host".into());
    format!("{host}-{}", std::process::id())
}

/// Runs until `stop` turns true, then finishes in-flight work and returns. If a flow or
/// heartbeat task fails for good, every other task is stopped too and the error is returned.
pub async fn run(config: Config, external_stop: watch::Receiver<bool>) -> Result<()> {
    for w in &config.warnings {
        warn!("{w}");
    }
    if config.flows.is_empty() {
        warn!("no enabled flow (set A->B.enabled = true); only heartbeats will be emitted");
    }
    // Idle fetch responses and merged batches are kept for reuse up to half of what the flows'
    // budgets let be in flight at once: their pages are not faulted in again, and a run whose
    // in-flight data sits at its budget (a slow target) does not hold as much again idle.
    let budgets: u64 = config.flows.iter().map(|f| f.inflight_bytes / 2).sum();
    protocol_client::bufpool::GLOBAL.set_limit(budgets.min(usize::MAX as u64) as usize);
    let clusters = Clusters::connect(&config, &aliases(&config), &writers(&config)).await?;
    // Tasks watch an internal stop signal: the caller's, or a fatal error of any task.
    let (stop_tx, stop) = watch::channel(false);
    let mut external = external_stop;
    let forward_tx = stop_tx.clone();
    let forwarder = tokio::spawn(async move {
        while !*external.borrow() {
            if external.changed().await.is_err() {
                return;
            }
        }
        let _ = forward_tx.send(true);
    });
    let metrics = Metrics::new();
    for (alias, cluster) in &clusters.clusters {
        metrics.watch_cluster(alias, cluster.clone());
    }
    let mut tasks = tokio::task::JoinSet::new();
    // Scale-out: the group decides what this process runs; every flow is steered by its seat.
    let mut lease = None;
    let seats = match &config.group {
        Some(settings) => {
            let seats = Seats::new(&config.flows);
            for f in config.flows.iter().filter(|f| f.exactly_once) {
                seats.seats[&f.name()].set_transactional(crate::scale::runner::Transactional {
                    target: clusters.clusters[&f.target].clone(),
                    stem: f.transactional_id_stem(&settings.id),
                    alias: f.target.clone(),
                });
            }
            let steering = seats.seats.clone();
            lease = Some(seats.lease());
            let membership = Membership {
                settings: settings.clone(),
                cluster: clusters.clusters[&settings.cluster].clone(),
                flows: config
                    .flows
                    .iter()
                    .map(|f| FlowSource {
                        config: f.clone(),
                        source: clusters.clusters[&f.source].clone(),
                    })
                    .collect(),
                refresh: config
                    .flows
                    .iter()
                    .filter(|f| f.refresh_topics)
                    .map(|f| f.refresh_topics_interval)
                    .min()
                    .unwrap_or(Duration::from_secs(600)),
                process: process_name(),
            };
            info!(group = %settings.id, cluster = %settings.cluster, "scale-out: sharing the work with the group's other members");
            tasks.spawn(run_membership(membership, seats, stop.clone()));
            Some(steering)
        }
        None => None,
    };
    if let Some(addr) = config.metrics_listen {
        let server = crate::serve::bind(addr, metrics.clone(), stop.clone()).await?;
        tasks.spawn(async move {
            server.await;
            Ok(())
        });
    }
    for flow_config in &config.flows {
        let fc = flow_config.clone();
        let source = clusters.clusters[&fc.source].clone();
        let target = clusters.clusters[&fc.target].clone();
        let producer = clusters.producers[&fc.target].clone();
        // Without offset syncs the sync producer is never used (and the source may have none).
        let (_, sync_alias) = fc.offset_syncs_topic();
        let sync_alias = if fc.emit_offset_syncs {
            sync_alias
        } else {
            fc.target.as_str()
        };
        let sync_producer = clusters.producers[sync_alias].clone();
        let flow_stop = stop.clone();
        let flow_metrics = metrics.flow(&fc.source, &fc.target);
        let seat = seats.as_ref().map(|s| s[&fc.name()].clone());
        let flow_seat = seat.clone();
        let gate = lease.clone();
        let drain_limit = config.group.as_ref().map(|g| g.session_timeout * 2);
        tasks.spawn(async move {
            let seat = flow_seat;
            let stop = flow_stop;
            let mut delay = Duration::from_secs(1);
            loop {
                if *stop.borrow() {
                    // Stopped between runs (after a failure): none starts, nothing is resumed
                    // that the group may already have handed to another member.
                    return Ok(());
                }
                // Exactly-once mode: the run's transactional id. A scale-out member's comes
                // from its slot, known once the group assigned it one; a single process is
                // slot 0.
                let slot = match (&seat, &gate, fc.exactly_once) {
                    (Some(seat), Some(gate), true) => {
                        let got = tokio::select! {
                            s = leased_slot(seat, gate.clone()) => Some(s),
                            _ = async { let mut s = stop.clone(); let _ = s.wait_for(|s| *s).await; } => None,
                        };
                        match got {
                            Some(s) => Some(s),
                            None => return Ok(()),
                        }
                    }
                    (_, _, true) => Some(0),
                    (_, _, false) => None,
                };
                let transactional_id = slot.map(|s| match &seat {
                    Some(seat) => seat.transactional_id(s).expect("exactly-once seat"),
                    None => FlowConfig::transactional_id(&fc.transactional_id_stem("strait"), s),
                });
                // A producer per run of the flow: aborted when the run ends, so nothing the run
                // appended can still land while its successor matches the remote tail.
                let data = match data_producer(&target, &fc.target, gate.clone(), transactional_id.clone()).await {
                    Ok(p) => p,
                    Err(e) if e.is_transient() && !*stop.borrow() => {
                        warn!(flow = %fc.name(), error = %e, ?delay, "cannot start the flow's producer; retrying");
                        tokio::time::sleep(delay).await;
                        delay = (delay * 2).min(Duration::from_secs(30));
                        continue;
                    }
                    Err(e) => return Err(e),
                };
                let mut flow = Flow::new(fc.clone(), source.clone(), target.clone(), producer.clone(), sync_producer.clone())
                    .with_data_producer(data.clone())
                    .with_metrics(flow_metrics.clone());
                // Scale-out: a lost membership ends the run at once (its unsent appends dropped
                // with its producer); it then starts again with what the process owns. Watched
                // from before the run takes what it owns, so no abandon falls in between.
                let mut restarts = seat.as_ref().map(|s| {
                    let mut r = s.restarts();
                    r.borrow_and_update();
                    r
                });
                if let (Some(seat), Some(gate)) = (&seat, &gate) {
                    let (owned, changes, released) = seat.attach();
                    flow = flow
                        .with_ownership(owned, changes, released)
                        .with_leadership(seat.leadership(gate.clone()));
                }
                let flow = Arc::new(flow);
                let name = flow.name();
                let started = tokio::time::Instant::now();
                let (run_stop, run_stop_rx) = watch::channel(*stop.borrow());
                let run = flow.clone().run(run_stop_rx);
                tokio::pin!(run);
                let mut stop_seen = stop.clone();
                // Exactly-once scale-out: the slot is the run's transactional id; a new one
                // (the membership was lost and joined again) ends the run.
                let mut slot_watch = match (&seat, slot) {
                    (Some(seat), Some(_)) => Some(seat.slot()),
                    _ => None,
                };
                let mut abandoned = None;
                let mut stopping_since = None;
                let outcome = loop {
                    let stopping = *run_stop.borrow();
                    // A stopping member's appends can wait on a lease that is not renewed (the
                    // group rebalancing as members stop): after this long they are dropped
                    // (safe: the next owner matches the remote tail) so the stop finishes.
                    let drain_bound = async {
                        match (stopping_since, drain_limit) {
                            (Some(t), Some(limit)) => tokio::time::sleep_until(t + limit).await,
                            _ => std::future::pending::<()>().await,
                        }
                    };
                    tokio::select! {
                        outcome = &mut run => break outcome,
                        _ = async { let _ = stop_seen.wait_for(|s| *s).await; }, if !stopping => {
                            stopping_since = Some(tokio::time::Instant::now());
                            let _ = run_stop.send(true);
                        }
                        _ = drain_bound => {
                            warn!(flow = %name, "the stop's drain did not finish: dropping what was not sent");
                            stopping_since = None;
                            data.abort().await;
                        }
                        epoch = async {
                            match restarts.as_mut() {
                                Some(r) => {
                                    let _ = r.changed().await;
                                    *r.borrow_and_update()
                                }
                                None => std::future::pending::<u64>().await,
                            }
                        }, if abandoned.is_none() => {
                            warn!(flow = %name, "membership lost: ending the flow's run now, dropping what it has not sent");
                            flow.abandon();
                            data.abort().await;
                            abandoned = Some(epoch);
                            let _ = run_stop.send(true);
                        }
                        _ = async {
                            match slot_watch.as_mut() {
                                Some(w) => { let _ = w.wait_for(|s| *s != slot).await; }
                                None => std::future::pending::<()>().await,
                            }
                        }, if abandoned.is_none() && slot_watch.is_some() => {
                            // Only after the membership was lost, which abandoned what the run
                            // owned: it ends without committing, and the next run writes
                            // under the new slot's id.
                            warn!(flow = %name, "this member's slot changed: ending the run, whose transactional id is no longer this member's");
                            flow.abandon();
                            data.abort().await;
                            abandoned = Some(restarts.as_mut().map_or(0, |r| *r.borrow_and_update()));
                            slot_watch = None;
                            let _ = run_stop.send(true);
                        }
                    }
                };
                if started.elapsed() >= Duration::from_secs(60) {
                    // A run that lasted is not part of a quick series of failures.
                    delay = Duration::from_secs(1);
                }
                data.abort().await;
                if abandoned.is_some() || outcome.is_err() {
                    // Exactly-once: what the run left open is aborted before anything else
                    // resumes its partitions here.
                    abort_open_transaction(&data, &name).await;
                }
                if let Some(seat) = &seat {
                    // Nothing this run appended can land now: what it was releasing is free.
                    seat.detach();
                    if let Some(epoch) = abandoned {
                        seat.restarted(epoch);
                    }
                }
                if abandoned.is_some() {
                    if let Err(e) = &outcome {
                        info!(flow = %name, error = %e, "the abandoned run ended");
                    }
                    continue;
                }
                match outcome {
                    Ok(()) => {
                        info!(flow = %name, "stopped");
                        return Ok(());
                    }
                    Err(e) if (e.is_transient() || e.is_fenced()) && !*stop.borrow() => {
                        if e.is_fenced() && seat.is_none() {
                            // The coordinator aborted a transaction that outlived its timeout
                            // (bumping the id's epoch), or a second process runs these flows:
                            // then the two fence each other at every restart, never writing
                            // anything twice.
                            error!(flow = %name, transactional_id = ?transactional_id, error = %e, "fenced: this flow's transactional id was taken over (a transaction that timed out, or a second Strait running these flows without strait.group.enabled); starting again from what is committed");
                        } else if e.is_fenced() {
                            // Scale-out: a member took over this member's units (it stalled
                            // past its session); the group tells what it runs now.
                            warn!(flow = %name, transactional_id = ?transactional_id, error = %e, "fenced: the run's transactional id was taken over; starting again with what this member owns now");
                        }
                        flow_metrics.restarted(e.kind());
                        warn!(flow = %name, error = %e, ?delay, "flow failed; restarting from its stored position");
                        tokio::time::sleep(delay).await;
                        delay = (delay * 2).min(Duration::from_secs(30));
                    }
                    Err(e) => {
                        error!(flow = %name, error = %e, "flow failed");
                        return Err(e);
                    }
                }
            }
        });
        let fc = flow_config;
        if fc.emit_heartbeats {
            let producer = clusters.producers[&fc.target].clone();
            let (source, target) = (fc.source.clone(), fc.target.clone());
            let topic = fc.policy.heartbeats_topic().to_string();
            let (interval, rf) = (
                fc.emit_heartbeats_interval,
                fc.heartbeats_topic_replication_factor,
            );
            let beat = move |stop| {
                heartbeat_loop(
                    producer.clone(),
                    source.clone(),
                    target.clone(),
                    topic.clone(),
                    interval,
                    rf,
                    stop,
                )
            };
            match &seat {
                // Scale-out: only the flow's leader emits them.
                Some(seat) => tasks.spawn(while_leading(seat.leader(), stop.clone(), beat)),
                None => tasks.spawn(beat(stop.clone())),
            };
        }
    }
    for h in &config.heartbeat_only {
        tasks.spawn(heartbeat_loop(
            clusters.producers[&h.target].clone(),
            h.source.clone(),
            h.target.clone(),
            "heartbeats".to_string(),
            h.interval,
            h.replication_factor,
            stop.clone(),
        ));
    }
    let mut first_err = None;
    while let Some(joined) = tasks.join_next().await {
        let failed = match joined {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e),
            Err(e) => Some(Error::Other(format!("task panicked: {e}"))),
        };
        if let Some(e) = failed {
            if first_err.is_none() {
                error!(error = %e, "stopping every flow");
                let _ = stop_tx.send(true);
                first_err = Some(e);
            }
        }
    }
    forwarder.abort();
    for p in clusters.producers.values() {
        p.close().await;
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
