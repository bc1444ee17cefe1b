//! The membership task of `strait run` with `strait.group.enabled`: joins the group, keeps the
//! units of work current, executes the [`Driver`]'s actions on the flows and rejoins when told.
//!
//! A flow is steered through its [`Seat`], which outlives the flow's runs (a flow that fails
//! transiently is restarted by `run`): what the process owns of the flow, where ownership changes
//! go, where releases come back, and whether the process leads the flow.
//!
//! | action | partitions | flow leader unit |
//! |---|---|---|
//! | start | given to the flow (resumed from the stored map and the remote tail) | leadership on |
//! | release | taken from the flow (drained, committed), reported when done | leadership off, reported once no leader round runs |
//! | abandon (membership lost) | taken from the flow, never reported | leadership off |
//!
//! A run of a flow that ends (a failure) had its producer aborted before its successor starts,
//! so partitions it was releasing are reported released then ([`Seat::detach`]): nothing it
//! appended can land later, and the next owner matches the remote tail.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use protocol_client::cluster::Cluster;
use protocol_client::group::{GroupConfig, GroupMember};
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

use super::assign::{MemberAssignment, Unit};
use super::driver::{Action, Driver};
use super::member::{claim_after, StraitAssignor, UnitsView};
use super::wire::{decode_assignment, encode_claim, Claim, PROTOCOL, PROTOCOL_TYPE};
use crate::config::{FlowConfig, GroupSettings};
use crate::error::{Error, Result};
use crate::flow::{selected_topics, Leadership, OwnershipChange, Released};

type Key = (String, i32);

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// What steers one flow in a scale-out process (see the module docs).
#[derive(Debug)]
pub struct Seat {
    flow: String,
    inner: Mutex<SeatState>,
    /// `Some(epoch)` while this process leads the flow (a new epoch each time it gains it).
    leader: watch::Sender<Option<u64>>,
    leader_epochs: std::sync::atomic::AtomicU64,
    work: Arc<tokio::sync::Mutex<()>>,
    /// Whether a run of the flow is attached.
    running: watch::Sender<bool>,
    /// Bumped when the flow's run must end at once, its producer aborted (membership lost).
    restart: watch::Sender<u64>,
    /// The last restart whose run has ended with its producer aborted.
    restarted: watch::Sender<u64>,
    /// Where released units go (the membership task).
    released: mpsc::UnboundedSender<BTreeSet<Unit>>,
    /// This member's slot in the current generation (`None` before the first assignment and
    /// after the membership was lost). In exactly-once mode the flow's data producer writes
    /// under the slot's transactional id.
    slot: watch::Sender<Option<u32>>,
    /// Exactly-once mode: where the flow's transactional ids live, and their stem.
    transactional: std::sync::OnceLock<Transactional>,
}

/// A flow's transactional ids (exactly-once mode): `<stem>.<slot>` on `target`.
#[derive(Debug, Clone)]
pub struct Transactional {
    /// The flow's target cluster (its transaction coordinators).
    pub target: Arc<protocol_client::cluster::Cluster>,
    /// [`FlowConfig::transactional_id_stem`].
    pub stem: String,
    /// The target cluster's alias (for errors).
    pub alias: String,
}

#[derive(Debug, Default)]
struct SeatState {
    owned: BTreeSet<Key>,
    /// Taken away and not yet reported released.
    pending: BTreeSet<Key>,
    /// The current run's change channel.
    changes: Option<mpsc::UnboundedSender<OwnershipChange>>,
}

impl Seat {
    fn new(flow: String, released: mpsc::UnboundedSender<BTreeSet<Unit>>) -> Arc<Seat> {
        Arc::new(Seat {
            flow,
            inner: Mutex::default(),
            leader: watch::channel(None).0,
            leader_epochs: std::sync::atomic::AtomicU64::new(0),
            work: Arc::default(),
            running: watch::channel(false).0,
            restart: watch::channel(0).0,
            restarted: watch::channel(0).0,
            released,
            slot: watch::channel(None).0,
            transactional: std::sync::OnceLock::new(),
        })
    }

    /// Exactly-once mode: the flow writes under transactional ids of `transactional`; a
    /// departed member's units are started only after its slot's id is fenced.
    pub fn set_transactional(&self, transactional: Transactional) {
        let _ = self.transactional.set(transactional);
    }

    /// The transactional id of the flow's data producer in `slot`, in exactly-once mode.
    pub fn transactional_id(&self, slot: u32) -> Option<String> {
        self.transactional
            .get()
            .map(|t| FlowConfig::transactional_id(&t.stem, slot))
    }

    /// This member's slot (see [`Seat::slot`] field docs).
    pub fn slot(&self) -> watch::Receiver<Option<u32>> {
        self.slot.subscribe()
    }

    fn set_slot(&self, slot: Option<u32>) {
        self.slot.send_if_modified(|s| {
            let changed = *s != slot;
            *s = slot;
            changed
        });
    }

    /// For a new run of the flow: what it owns now, where changes arrive and where it reports
    /// releases.
    pub fn attach(
        self: &Arc<Self>,
    ) -> (
        BTreeSet<Key>,
        mpsc::UnboundedReceiver<OwnershipChange>,
        Released,
    ) {
        let (tx, rx) = mpsc::unbounded_channel();
        let (rel_tx, mut rel_rx) = mpsc::unbounded_channel::<BTreeSet<Key>>();
        let seat = self.clone();
        tokio::spawn(async move {
            while let Some(keys) = rel_rx.recv().await {
                seat.report(keys);
            }
        });
        let mut st = lock(&self.inner);
        st.changes = Some(tx);
        self.running.send_replace(true);
        (st.owned.clone(), rx, rel_tx)
    }

    /// The run ended and its producer was aborted: partitions it was releasing are released.
    pub fn detach(&self) {
        let pending = {
            let mut st = lock(&self.inner);
            st.changes = None;
            st.pending.clone()
        };
        self.running.send_replace(false);
        self.report(pending);
    }

    /// Leadership of the flow, for [`crate::flow::Flow::with_leadership`], under `lease`.
    pub fn leadership(&self, lease: protocol_client::producer::SendGate) -> Leadership {
        Leadership {
            leader: self.leader.subscribe(),
            work: self.work.clone(),
            lease: Some(lease),
        }
    }

    /// The flow's run for restart `epoch` (a value of [`Seat::restarts`]) has ended and its
    /// producer is aborted: nothing it held can be sent any more.
    pub fn restarted(&self, epoch: u64) {
        self.restarted.send_modify(|e| *e = (*e).max(epoch));
    }

    /// Resolves once no run holds what restart `epoch` abandoned: the run then was told and
    /// ended, or none was attached.
    async fn quiet(&self, epoch: u64) {
        let (mut running, mut restarted) = (self.running.subscribe(), self.restarted.subscribe());
        loop {
            if !*running.borrow_and_update() || *restarted.borrow_and_update() >= epoch {
                return;
            }
            tokio::select! {
                _ = running.changed() => {}
                _ = restarted.changed() => {}
            }
        }
    }

    /// Changes when the flow's current run must end at once (the membership was lost): its
    /// producer is aborted, so nothing it holds is sent, and a new run starts with what the
    /// process owns then.
    pub fn restarts(&self) -> watch::Receiver<u64> {
        self.restart.subscribe()
    }

    /// `Some(epoch)` while this process leads the flow.
    pub fn leader(&self) -> watch::Receiver<Option<u64>> {
        self.leader.subscribe()
    }

    fn report(&self, keys: BTreeSet<Key>) {
        let keys: BTreeSet<Key> = {
            let mut st = lock(&self.inner);
            keys.into_iter().filter(|k| st.pending.remove(k)).collect()
        };
        if keys.is_empty() {
            return;
        }
        let units = keys
            .into_iter()
            .map(|(topic, partition)| Unit::Partition {
                flow: self.flow.clone(),
                topic,
                partition,
            })
            .collect();
        let _ = self.released.send(units);
    }

    fn give(&self, keys: BTreeSet<Key>) {
        let mut st = lock(&self.inner);
        st.owned.extend(keys.iter().cloned());
        if let Some(tx) = &st.changes {
            let _ = tx.send(OwnershipChange {
                give: keys,
                take: BTreeSet::new(),
            });
        }
    }

    /// Abandons `keys` (the membership was lost: another member may own them already): they
    /// are not released gracefully (a release waits for appends, which must not be sent now)
    /// but dropped with the whole run, which restarts without them.
    /// Returns the restart epoch to wait for ([`Seat::quiet`]).
    fn abandon(&self, keys: BTreeSet<Key>) -> u64 {
        {
            let mut st = lock(&self.inner);
            for k in &keys {
                st.owned.remove(k);
                st.pending.remove(k);
            }
        }
        self.restart.send_modify(|n| *n += 1);
        *self.restart.borrow()
    }

    /// Takes `keys` away, to be released gracefully and reported.
    fn take(&self, keys: BTreeSet<Key>) {
        let idle = {
            let mut st = lock(&self.inner);
            for k in &keys {
                st.owned.remove(k);
            }
            st.pending.extend(keys.iter().cloned());
            match &st.changes {
                Some(tx) => {
                    let _ = tx.send(OwnershipChange {
                        give: BTreeSet::new(),
                        take: keys,
                    });
                    None
                }
                // No run now: nothing to drain.
                None => Some(keys),
            }
        };
        if let Some(keys) = idle {
            self.report(keys);
        }
    }

    fn set_leader(&self, on: bool) {
        if on {
            if self.leader.borrow().is_none() {
                let epoch = self
                    .leader_epochs
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                    + 1;
                self.leader.send_replace(Some(epoch));
            }
        } else {
            self.leader.send_replace(None);
        }
    }
}

/// The seats of every flow and the membership task's end of their reports.
#[derive(Debug)]
pub struct Seats {
    /// By flow name (`A->B`).
    pub seats: BTreeMap<String, Arc<Seat>>,
    released: mpsc::UnboundedReceiver<BTreeSet<Unit>>,
    lease: watch::Sender<Option<std::time::Instant>>,
}

impl Seats {
    /// A seat for every flow.
    pub fn new(flows: &[FlowConfig]) -> Seats {
        let (tx, rx) = mpsc::unbounded_channel();
        let seats = flows
            .iter()
            .map(|f| {
                let name = f.name();
                (name.clone(), Seat::new(name, tx.clone()))
            })
            .collect();
        Seats {
            seats,
            released: rx,
            lease: watch::channel(None).0,
        }
    }

    /// The membership lease the flows' data producers send under
    /// ([`protocol_client::producer::ProducerConfig::send_gate`]): until the coordinator's
    /// last confirmation plus [`LEASE_SHARE`] of the session timeout. The coordinator drops a
    /// member no sooner than a whole session after that confirmation, so appends stop well
    /// before another member can be given the partitions, and the margin covers requests
    /// already on their way.
    pub fn lease(&self) -> protocol_client::producer::SendGate {
        self.lease.subscribe()
    }
}

/// The share of the session timeout a confirmation of membership leases appends for.
pub const LEASE_SHARE: f64 = 0.6;

fn unit_flow(u: &Unit) -> &str {
    match u {
        Unit::FlowLeader { flow } | Unit::Partition { flow, .. } => flow,
    }
}

/// A flow's source, to list its units.
#[derive(Debug, Clone)]
pub struct FlowSource {
    /// The flow's settings.
    pub config: FlowConfig,
    /// Its source cluster.
    pub source: Arc<Cluster>,
}

/// Every unit of the flows: a leader unit per flow and every selected source partition, or
/// `None` if a source could not be read.
async fn list_units(flows: &[FlowSource]) -> Option<BTreeMap<Unit, u64>> {
    let mut out = BTreeMap::new();
    for f in flows {
        let name = f.config.name();
        out.insert(Unit::FlowLeader { flow: name.clone() }, 1);
        match f.source.refresh_all_topics().await {
            Ok(md) => {
                for (topic, n) in selected_topics(&f.config, &md) {
                    for partition in 0..n {
                        out.insert(
                            Unit::Partition {
                                flow: name.clone(),
                                topic: topic.clone(),
                                partition,
                            },
                            1,
                        );
                    }
                }
            }
            Err(e) => {
                warn!(flow = %name, error = %e, "cannot list the source's topics; trying again");
                return None;
            }
        }
    }
    Some(out)
}

/// Lists the units every `refresh` (retrying a failed listing within seconds) and publishes
/// them. A unit missing from one listing is dropped only when the next one misses it too (one
/// lagging broker can leave a topic out of its answer), as the flow's own topic refresh does.
async fn units_loop(
    flows: Vec<FlowSource>,
    refresh: Duration,
    out: watch::Sender<Option<BTreeMap<Unit, u64>>>,
) {
    let mut missed_once: BTreeSet<Unit> = BTreeSet::new();
    loop {
        let Some(listed) = list_units(&flows).await else {
            tokio::time::sleep(Duration::from_secs(2).min(refresh)).await;
            continue;
        };
        let last = out.borrow().clone().unwrap_or_default();
        let now;
        (now, missed_once) = merge_listing(&last, listed, &missed_once);
        out.send_if_modified(|v| {
            let changed = v.as_ref().is_none_or(|v| v.keys().ne(now.keys()));
            if changed {
                *v = Some(now);
            }
            changed
        });
        let again = if missed_once.is_empty() {
            refresh
        } else {
            refresh.min(Duration::from_secs(5))
        };
        tokio::time::sleep(again).await;
    }
}

/// The units after a listing: what was listed, plus what the last listing had and this one
/// misses for the first time (kept once: one lagging broker can leave a topic out). Returns
/// them and the units missed this time.
fn merge_listing(
    last: &BTreeMap<Unit, u64>,
    mut listed: BTreeMap<Unit, u64>,
    missed_once: &BTreeSet<Unit>,
) -> (BTreeMap<Unit, u64>, BTreeSet<Unit>) {
    let missing: BTreeSet<Unit> = last
        .keys()
        .filter(|u| !listed.contains_key(*u))
        .cloned()
        .collect();
    for u in &missing {
        if !missed_once.contains(u) {
            listed.insert(u.clone(), last[u]);
        }
    }
    (listed, missing)
}

/// How a membership task runs.
#[derive(Debug, Clone)]
pub struct Membership {
    /// Group settings.
    pub settings: GroupSettings,
    /// The cluster whose coordinator is used.
    pub cluster: Arc<Cluster>,
    /// The flows.
    pub flows: Vec<FlowSource>,
    /// How often the units are listed again (new topics, more partitions).
    pub refresh: Duration,
    /// What this process calls itself in its claims (host and pid).
    pub process: String,
}

/// The lease the data producers send under, following the coordinator's confirmations of
/// this member, and suspended (no lease) while a lost membership's runs are being ended.
struct Lease {
    tx: watch::Sender<Option<std::time::Instant>>,
    suspended: Arc<std::sync::atomic::AtomicBool>,
}

impl Lease {
    fn suspend(&self) {
        self.suspended
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.tx.send_replace(None);
    }

    /// Renewed again by the next confirmation (not by an earlier one).
    fn resume(&self) {
        self.suspended
            .store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

/// The membership was lost (or found lost): no lease until every run that held the abandoned
/// units has ended with its producer aborted, so nothing they held can go out under the lease
/// of the next join.
async fn lose(driver: &mut Driver, seats: &Seats, lease: &Lease) {
    lease.suspend();
    let done = execute(seats, driver.lost());
    // The slot goes with the membership: a run starting now waits for the next one (after
    // the restarts above, so a run ending on either sees their epoch).
    for seat in seats.seats.values() {
        seat.set_slot(None);
    }
    for (seat, epoch, leading) in done.abandoned {
        seat.quiet(epoch).await;
        if leading {
            // A leader round in progress ends before anyone else's can start here.
            let _ = seat.work.lock().await;
        }
    }
    lease.resume();
}

/// Resolves once no flow has a run attached.
async fn all_quiet(seats: &Seats) {
    for seat in seats.seats.values() {
        let mut running = seat.running.subscribe();
        let _ = running.wait_for(|r| !*r).await;
    }
}

/// Runs the membership until `stop`: then, still a member (heartbeating and rejoining, so its
/// lease holds and nobody else takes its partitions), waits for the flows to stop (they drain
/// and commit), and leaves the group so the others take over at once.
pub async fn run_membership(
    m: Membership,
    mut seats: Seats,
    stop: watch::Receiver<bool>,
) -> Result<()> {
    let view = UnitsView::default();
    let mut released_rx = std::mem::replace(&mut seats.released, mpsc::unbounded_channel().1);
    let (units_tx, mut units_rx) = watch::channel(None);
    let _units_task = AbortOnDrop(tokio::spawn(units_loop(
        m.flows.clone(),
        m.refresh.max(Duration::from_secs(1)),
        units_tx,
    )));
    // The first listing, before anything is assigned.
    let first = tokio::select! {
        r = units_rx.wait_for(Option::is_some) => r.ok().and_then(|u| u.clone()),
        _ = stopped(&stop) => return Ok(()),
    };
    let mut units = first.unwrap_or_default();
    view.set(units.clone());
    let assignor = Arc::new(StraitAssignor::new(view.clone()));
    let group = m.settings.id.clone();
    let config = |protocols: Vec<(String, Bytes)>| GroupConfig {
        group_id: group.clone(),
        protocol_type: PROTOCOL_TYPE.to_string(),
        protocols,
        session_timeout: m.settings.session_timeout,
        rebalance_timeout: m.settings.rebalance_timeout,
        heartbeat_interval: m.settings.heartbeat_interval,
        group_instance_id: None,
    };
    let fresh = || {
        let mut c = Claim::default();
        c.claim.generation = -1;
        c.process = m.process.clone();
        vec![(PROTOCOL.to_string(), Bytes::from(encode_claim(&c)))]
    };
    let mut driver = Driver::new();
    let mut delay = Duration::from_millis(500);
    // Joined, or stopped while joining.
    let mut member = loop {
        let join = GroupMember::join(m.cluster.clone(), config(fresh()), assignor.clone());
        let r = tokio::select! {
            r = join => r,
            _ = stopped(&stop) => return Ok(()),
        };
        match r {
            Ok(member) => break member,
            Err(e) if e.is_retriable() => {
                warn!(group = %group, error = %e, ?delay, "cannot join the group; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(10));
            }
            Err(e) => {
                return Err(Error::client(&m.settings.cluster)(e).context("joining the group"))
            }
        }
    };
    // The lease follows the coordinator's confirmations of this member.
    let lease = Lease {
        tx: seats.lease.clone(),
        suspended: Arc::default(),
    };
    let mut confirmed = member.confirmed();
    let (lease_tx, suspended) = (lease.tx.clone(), lease.suspended.clone());
    let lease_len = m.settings.session_timeout.mul_f64(LEASE_SHARE);
    let _lease_task = AbortOnDrop(tokio::spawn(async move {
        loop {
            let at = *confirmed.borrow_and_update();
            if !suspended.load(std::sync::atomic::Ordering::SeqCst) {
                lease_tx.send_replace(at.map(|t| t + lease_len));
            }
            if confirmed.changed().await.is_err() {
                return;
            }
        }
    }));
    let mut stopping = false;
    loop {
        let assignment = match decode_assignment(member.assignment()) {
            Ok((a, _)) => {
                for seat in seats.seats.values() {
                    seat.set_slot(Some(a.slot));
                }
                a
            }
            Err(e) => {
                warn!(group = %group, error = %e, "unreadable assignment: this member runs nothing in this generation");
                MemberAssignment::default()
            }
        };
        info!(
            group = %group,
            member = %member.member_id(),
            generation = member.generation(),
            leader = member.is_leader(),
            slot = assignment.slot,
            units = assignment.units.len(),
            "joined the group's generation"
        );
        let actions = driver.assigned(member.generation(), assignment);
        fence_departed(&seats, &actions, &stop).await?;
        let mut rejoin = execute(&seats, actions).rejoin;
        while !rejoin {
            tokio::select! {
                _ = stopped(&stop), if !stopping => stopping = true,
                _ = all_quiet(&seats), if stopping => {
                    leave(member, &group).await;
                    return Ok(());
                }
                _ = member.rebalance_needed() => {
                    if member.membership_lost() {
                        warn!(group = %group, reason = ?member.rebalance_reason(), "membership lost: everything this member ran is stopped without waiting; rejoining as new");
                        lose(&mut driver, &seats, &lease).await;
                    }
                    rejoin = true;
                }
                Some(released) = released_rx.recv() => {
                    let actions = driver.released(&released);
                    fence_departed(&seats, &actions, &stop).await?;
                    rejoin = execute(&seats, actions).rejoin;
                }
                Ok(()) = units_rx.changed() => {
                    let now = units_rx.borrow_and_update().clone().unwrap_or_default();
                    info!(group = %group, before = units.len(), now = now.len(), "the units of work changed");
                    units = now;
                    view.set(units.clone());
                    // The leader's rejoin starts a rebalance that hands them out.
                    rejoin = member.is_leader();
                }
            }
        }
        // Rejoin, announcing what this member still runs (cooperative: it keeps running it).
        loop {
            let mut claim = claim_after(
                driver.generation(),
                &driver.assignment().cloned().unwrap_or_default(),
                driver.owned(),
                // Every unit weighs the same (balance by count). Loads measured by each unit's
                // owner oscillate: a partition just handed over reports nothing on its new
                // owner, so the other member looks overloaded and the next generation moves it
                // back (a rebalance storm, seen on Apache Kafka). Throughput-aware balancing
                // needs loads every member measures alike (the source's rates).
                &BTreeMap::new(),
                &m.process,
            );
            if driver.generation() < 0 {
                claim.claim.slot = None;
            }
            let protocols = vec![(PROTOCOL.to_string(), Bytes::from(encode_claim(&claim)))];
            if let Err(e) = member.set_protocols(protocols) {
                return Err(Error::client(&m.settings.cluster)(e).context("the group claim"));
            }
            let before = member.member_id().to_string();
            let r = tokio::select! {
                r = member.rejoin() => Some(r),
                _ = stopped(&stop), if !stopping => None,
            };
            let Some(r) = r else {
                // Stopping mid-rebalance: the flows stop with their last commit (under the
                // lease they still hold), then the member leaves.
                all_quiet(&seats).await;
                leave(member, &group).await;
                return Ok(());
            };
            match r {
                Ok(()) if member.member_id() == before || driver.generation() < 0 => break,
                Ok(()) => {
                    // The coordinator had dropped this member: what it claimed may have been
                    // given to another meanwhile. It stops everything and joins as new.
                    warn!(group = %group, before = %before, now = %member.member_id(), "rejoined under a new member id: the old membership was lost; stopping everything and joining as new");
                    lose(&mut driver, &seats, &lease).await;
                }
                Err(e) if e.is_security() => {
                    // Refused (TLS, SASL): no later attempt gets past it, and with nothing
                    // running nothing else would meet it.
                    lose(&mut driver, &seats, &lease).await;
                    return Err(
                        Error::client(&m.settings.cluster)(e).context("rejoining the group")
                    );
                }
                Err(e) => {
                    warn!(group = %group, error = %e, "rejoin failed: everything this member ran is stopped; joining again");
                    lose(&mut driver, &seats, &lease).await;
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }
}

/// Leaves the group (the others take over at once instead of after the session timeout).
async fn leave(member: GroupMember, group: &str) {
    if let Err(e) = member.leave().await {
        warn!(group = %group, error = %e, "leaving the group failed; the others take over after the session timeout");
    }
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Resolves once `stop` is true.
async fn stopped(stop: &watch::Receiver<bool>) {
    let mut stop = stop.clone();
    let _ = stop.wait_for(|s| *s).await;
}

/// What carrying out actions left to do.
#[derive(Default)]
struct Executed {
    /// A rejoin is due.
    rejoin: bool,
    /// Seats whose run must end (with the restart epoch to wait for), and whether the flow's
    /// leadership was abandoned too.
    abandoned: Vec<(Arc<Seat>, u64, bool)>,
}

/// Before a departed member's units start here: in exactly-once mode, every slot the
/// assignment names is fenced for each flow of those units (InitProducerId of the slot's
/// transactional id: a zombie holding it can neither append nor commit any more, and its open
/// transaction is aborted before the remote tail is read). Without exactly-once mode the
/// departed member's appends stopped with its membership lease. Retried until done or
/// stopped: the units must not start unfenced. A refusal (TLS, SASL) is returned.
async fn fence_departed(
    seats: &Seats,
    actions: &[Action],
    stop: &watch::Receiver<bool>,
) -> Result<()> {
    for action in actions {
        let Action::Start { fence, units } = action else {
            continue;
        };
        if fence.is_empty() {
            continue;
        }
        let flows: BTreeSet<&str> = units.iter().map(unit_flow).collect();
        for flow in flows {
            let Some(seat) = seats.seats.get(flow) else {
                continue;
            };
            let Some(t) = seat.transactional.get() else {
                info!(flow, slots = ?fence, "taking over a departed member's units (its appends stopped with its membership lease)");
                continue;
            };
            for slot in fence {
                let id = FlowConfig::transactional_id(&t.stem, *slot);
                let mut delay = Duration::from_millis(200);
                loop {
                    match protocol_client::producer::fence_transactional_id(
                        &t.target,
                        &id,
                        FENCE_TRANSACTION_TIMEOUT,
                    )
                    .await
                    {
                        Ok(_) => {
                            info!(flow, slot, transactional_id = %id, "fenced a departed member's transactional id before taking over its units");
                            break;
                        }
                        Err(e) if *stop.borrow() => {
                            warn!(flow, slot, transactional_id = %id, error = %e, "fencing failed while stopping");
                            break;
                        }
                        Err(e) if e.is_security() => {
                            return Err(Error::client(&t.alias)(e)
                                .context(format!("fencing transactional id {id}")));
                        }
                        Err(e) => {
                            // Retried without end: the units must not start unfenced (an
                            // authorization error stops every transactional run here anyway).
                            warn!(flow, slot, transactional_id = %id, error = %e, ?delay, "fencing a departed member's transactional id failed; retrying before taking over its units");
                            tokio::time::sleep(delay).await;
                            delay = (delay * 2).min(Duration::from_secs(10));
                        }
                    }
                }
            }
        }
    }
    Ok(())
}

/// The transaction timeout given with a fencing InitProducerId (no transaction follows).
const FENCE_TRANSACTION_TIMEOUT: Duration = Duration::from_secs(60);

/// Carries out the driver's actions.
fn execute(seats: &Seats, actions: Vec<Action>) -> Executed {
    let mut out = Executed::default();
    for action in actions {
        match action {
            Action::Rejoin => out.rejoin = true,
            Action::Start { fence: _, units } => {
                // A departed member's units: fenced already (`fence_departed`).
                for (seat, keys, leads) in by_flow(seats, units) {
                    if !keys.is_empty() {
                        info!(flow = %seat.flow, partitions = keys.len(), "partitions given");
                        seat.give(keys);
                    }
                    if leads {
                        info!(flow = %seat.flow, "leading the flow");
                        seat.set_leader(true);
                    }
                }
            }
            Action::Release(units) => {
                // Units of flows this process does not run were never started: released now.
                let foreign: BTreeSet<Unit> = units
                    .iter()
                    .filter(|u| !seats.seats.contains_key(unit_flow(u)))
                    .cloned()
                    .collect();
                if let Some(seat) = seats.seats.values().next() {
                    if !foreign.is_empty() {
                        let _ = seat.released.send(foreign);
                    }
                }
                for (seat, keys, leads) in by_flow(seats, units) {
                    if !keys.is_empty() {
                        info!(flow = %seat.flow, partitions = keys.len(), "releasing partitions");
                        seat.take(keys);
                    }
                    if leads {
                        seat.set_leader(false);
                        let seat = seat.clone();
                        tokio::spawn(async move {
                            // No round of leader work runs once this is held.
                            let _ = seat.work.lock().await;
                            info!(flow = %seat.flow, "flow leadership released");
                            let _ = seat.released.send(BTreeSet::from([Unit::FlowLeader {
                                flow: seat.flow.clone(),
                            }]));
                        });
                    }
                }
            }
            Action::Abandon(units) => {
                for (seat, keys, leads) in by_flow(seats, units) {
                    if leads {
                        seat.set_leader(false);
                    }
                    let epoch = if keys.is_empty() {
                        0
                    } else {
                        warn!(flow = %seat.flow, partitions = keys.len(), "abandoning partitions: the flow's run ends now, its unsent appends dropped");
                        seat.abandon(keys)
                    };
                    out.abandoned.push((seat, epoch, leads));
                }
            }
        }
    }
    out
}

/// Units grouped by flow: the flow's seat, its partitions, whether its leader unit is among
/// them. Units of flows this process does not run are left out (a member of a newer
/// configuration): they are logged.
fn by_flow(seats: &Seats, units: BTreeSet<Unit>) -> Vec<(Arc<Seat>, BTreeSet<Key>, bool)> {
    let mut out: BTreeMap<String, (BTreeSet<Key>, bool)> = BTreeMap::new();
    for u in units {
        let flow = unit_flow(&u).to_string();
        if !seats.seats.contains_key(&flow) {
            warn!(%flow, "assigned work of a flow this process does not run (configurations differ between members?)");
            continue;
        }
        let e = out.entry(flow).or_default();
        match u {
            Unit::FlowLeader { .. } => e.1 = true,
            Unit::Partition {
                topic, partition, ..
            } => {
                e.0.insert((topic, partition));
            }
        }
    }
    out.into_iter()
        .map(|(flow, (keys, leads))| (seats.seats[&flow].clone(), keys, leads))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(p: i32) -> Key {
        ("t".to_string(), p)
    }

    fn unit(p: i32) -> Unit {
        Unit::Partition {
            flow: "A->B".into(),
            topic: "t".into(),
            partition: p,
        }
    }

    #[test]
    fn a_unit_is_dropped_only_when_two_listings_in_a_row_miss_it() {
        let listing =
            |ps: &[i32]| -> BTreeMap<Unit, u64> { ps.iter().map(|p| (unit(*p), 1)).collect() };
        let (units, missed) =
            merge_listing(&BTreeMap::new(), listing(&[0, 1, 2]), &BTreeSet::new());
        assert_eq!(units, listing(&[0, 1, 2]));
        // One answer leaves 2 out: kept.
        let (units, missed) = merge_listing(&units, listing(&[0, 1]), &missed);
        assert_eq!(units, listing(&[0, 1, 2]));
        // It is back: nothing is pending any more.
        let (units, missed) = merge_listing(&units, listing(&[0, 1, 2]), &missed);
        assert!(missed.is_empty());
        // Missing twice in a row: dropped.
        let (units, missed) = merge_listing(&units, listing(&[0, 2]), &missed);
        assert_eq!(units, listing(&[0, 1, 2]));
        let (units, _) = merge_listing(&units, listing(&[0, 2]), &missed);
        assert_eq!(units, listing(&[0, 2]));
    }

    #[tokio::test]
    async fn a_seat_forwards_changes_to_the_running_flow_and_reports_each_release_once() {
        let (tx, mut released) = mpsc::unbounded_channel();
        let seat = Seat::new("A->B".into(), tx);
        // No run attached: a given partition waits for the run; a taken one is free at once.
        seat.give(BTreeSet::from([key(0), key(1), key(2)]));
        seat.take(BTreeSet::from([key(2)]));
        assert_eq!(released.recv().await, Some(BTreeSet::from([unit(2)])));
        let (owned, mut changes, flow_released) = seat.attach();
        assert_eq!(owned, BTreeSet::from([key(0), key(1)]));
        // Attached: changes go to the run, in order.
        seat.take(BTreeSet::from([key(0), key(1)]));
        seat.give(BTreeSet::from([key(3)]));
        assert_eq!(
            changes.recv().await.unwrap().take,
            BTreeSet::from([key(0), key(1)])
        );
        assert_eq!(changes.recv().await.unwrap().give, BTreeSet::from([key(3)]));
        // The run reports 0 released; it fails before releasing 1: detaching frees 1 (its
        // producer is aborted), and a late report of 0 or 1 is not sent again.
        flow_released.send(BTreeSet::from([key(0)])).unwrap();
        assert_eq!(released.recv().await, Some(BTreeSet::from([unit(0)])));
        seat.detach();
        assert_eq!(released.recv().await, Some(BTreeSet::from([unit(1)])));
        flow_released
            .send(BTreeSet::from([key(0), key(1)]))
            .unwrap();
        // Abandoned partitions end the run (a restart) and are never reported.
        let (owned, _changes, _rel) = seat.attach();
        assert_eq!(owned, BTreeSet::from([key(3)]));
        let restarts = seat.restarts();
        seat.abandon(BTreeSet::from([key(3)]));
        assert!(restarts.has_changed().unwrap(), "the run is told to end");
        seat.detach();
        assert!(seat.attach().0.is_empty(), "the next run owns nothing");
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            released.try_recv().is_err(),
            "nothing reported twice or abandoned"
        );
    }
}
