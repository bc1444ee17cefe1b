//! Group membership through a broker's group coordinator, with a caller-defined protocol type.
//!
//! This is Kafka's classic group protocol (KIP-62 background heartbeats, KIP-345 static
//! membership, KIP-394 `MEMBER_ID_REQUIRED`, KIP-814 `skip_assignment`), the one Java's
//! `AbstractCoordinator` implements: FindCoordinator, then JoinGroup (the coordinator picks a
//! leader and one protocol all members support), then the leader computes every member's
//! assignment with an [`Assignor`] and hands it over in SyncGroup, and each member receives its
//! own. A background task heartbeats; when the coordinator answers that a rebalance is under way
//! (or the member was fenced, or the coordinator moved), [`GroupMember::rebalance_needed`]
//! resolves and the owner calls [`GroupMember::rejoin`].
//!
//! Strait instances use it to share work (protocol type of their own); the standard `consumer`
//! embedded protocol ([`ConsumerSubscription`], [`ConsumerAssignment`], `ConsumerProtocol.java`)
//! and a [`RangeAssignor`] are provided so a member can also sit in an ordinary consumer group.
//!
//! Each member talks to its coordinator over a connection of its own: JoinGroup blocks until the
//! rebalance completes (up to the rebalance timeout) and a broker answers one request per
//! connection at a time, so sharing the cluster's control connection would stall every other
//! control request to that broker. That connection's request timeout is raised to the rebalance
//! timeout plus 5 s, as Java's consumer does for JoinGroup.
//!
//! Versions: JoinGroup, SyncGroup, Heartbeat and LeaveGroup are used at most at their last
//! non-flexible versions (v5, v3, v3, v2), as librdkafka's consumer does. The newer versions add
//! the compact encoding and fields this client does not need (JoinGroup v8 reasons, v9 KIP-814
//! `skip_assignment`, SyncGroup v5 protocol echo, LeaveGroup v3 batches), and librdkafka's mock
//! cluster (2.12) advertises the flexible versions but misreads them. A broker that no longer
//! offers those versions gets the newest common one.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::messages::consumer_protocol_assignment::{
    ConsumerProtocolAssignment, TopicPartition as AssignedPartitions,
};
use kafka_protocol::messages::consumer_protocol_subscription::{
    ConsumerProtocolSubscription, TopicPartition as OwnedPartitions,
};
use kafka_protocol::messages::heartbeat_request::HeartbeatRequest;
use kafka_protocol::messages::join_group_request::{JoinGroupRequest, JoinGroupRequestProtocol};
use kafka_protocol::messages::leave_group_request::{LeaveGroupRequest, MemberIdentity};
use kafka_protocol::messages::sync_group_request::{SyncGroupRequest, SyncGroupRequestAssignment};
use kafka_protocol::messages::{ApiKey, GroupId, JoinGroupResponse, SyncGroupResponse, TopicName};
use kafka_protocol::protocol::{Encodable, HeaderVersion, Request, StrBytes};
use tokio::sync::watch;
use tracing::{debug, info};

use crate::admin::{check_offset_commit, offset_commit_request, who, CommittedOffset};
use crate::cluster::{BrokerInfo, Cluster, CoordinatorType};
use crate::codec::header::api_key_of;
use crate::codec::{decode_response, encode_request, BufChain, CodecError, Supported};
use crate::conn::{ConnConfig, ConnError, Connection};
use crate::error::{Error, ResponseError, Result};

/// Protocol type of ordinary Kafka consumer groups.
pub const CONSUMER_PROTOCOL_TYPE: &str = "consumer";

/// How many times one join may restart because the group moved on under it (a new member id,
/// another rebalance) before the last reason is returned to the caller.
const MAX_PROTOCOL_RESTARTS: usize = 16;

/// Settings of one group member.
#[derive(Clone, Debug)]
pub struct GroupConfig {
    /// Group id.
    pub group_id: String,
    /// Protocol type; every member of the group must use the same one.
    pub protocol_type: String,
    /// Supported protocols in order of preference: name and this member's metadata.
    pub protocols: Vec<(String, Bytes)>,
    /// The coordinator drops the member after this long without a heartbeat.
    pub session_timeout: Duration,
    /// How long the coordinator waits for members to rejoin during a rebalance.
    pub rebalance_timeout: Duration,
    /// Time between heartbeats (well below `session_timeout`, typically a third).
    pub heartbeat_interval: Duration,
    /// Static membership id (KIP-345), if any.
    pub group_instance_id: Option<String>,
}

/// Computes the assignments of a group; runs on the member the coordinator chose as leader.
pub trait Assignor: Send + Sync + 'static {
    /// Given the chosen `protocol` and every member's (id, metadata), returns each member's
    /// assignment. Members left out get an empty assignment.
    fn assign(&self, protocol: &str, members: &[(String, Bytes)]) -> Vec<(String, Bytes)>;
}

/// What the member's own connection to the coordinator and its settings are shared between the
/// owner and the heartbeat task.
#[derive(Debug)]
struct Session {
    cluster: Arc<Cluster>,
    config: GroupConfig,
    /// This member's protocols for the next join, when changed since `config`
    /// ([`GroupMember::set_protocols`]: cooperative members announce what they own).
    protocols: Mutex<Option<Vec<(String, Bytes)>>>,
    /// When the coordinator last confirmed this member (see [`GroupMember::confirmed`]).
    confirmed: watch::Sender<Option<Instant>>,
    conn_config: ConnConfig,
    conn: tokio::sync::Mutex<Option<(BrokerInfo, Arc<Connection>)>>,
}

impl Session {
    /// The coordinator and this member's connection to it.
    async fn coordinator(&self) -> Result<(BrokerInfo, Arc<Connection>)> {
        let group = &self.config.group_id;
        let coordinator = self
            .cluster
            .coordinator(CoordinatorType::Group, group)
            .await?;
        let mut slot = self.conn.lock().await;
        if let Some((b, c)) = slot.as_ref() {
            if *b == coordinator && !c.is_closed() {
                return Ok((b.clone(), c.clone()));
            }
        }
        let conn = match Connection::connect(&coordinator.addr(), &self.conn_config).await {
            Ok(c) => Arc::new(c),
            Err(e) => {
                self.cluster
                    .invalidate_coordinator(CoordinatorType::Group, group);
                return Err(e.into());
            }
        };
        *slot = Some((coordinator.clone(), conn.clone()));
        Ok((coordinator, conn))
    }

    /// Forgets the coordinator after an error that says it moved or cannot be reached.
    fn forget_if_moved(&self, e: &Error) {
        if e.needs_metadata_refresh() {
            debug!(group = %self.config.group_id, error = %e, "forgetting group coordinator");
            self.cluster
                .invalidate_coordinator(CoordinatorType::Group, &self.config.group_id);
        }
    }

    fn group_id(&self) -> GroupId {
        GroupId(StrBytes::from_string(self.config.group_id.clone()))
    }

    fn instance_id(&self) -> Option<StrBytes> {
        self.config
            .group_instance_id
            .as_ref()
            .map(|s| StrBytes::from_string(s.clone()))
    }

    fn broker_error(&self, api: ApiKey, broker: &BrokerInfo, code: i16) -> Option<Error> {
        let e = Error::broker(
            api,
            who(broker),
            Some(format!("group {}", self.config.group_id)),
            code,
            None,
        )?;
        self.forget_if_moved(&e);
        Some(e)
    }
}

/// The state after a completed join.
#[derive(Debug, Clone)]
struct Generation {
    member_id: String,
    generation: i32,
    leader: String,
    protocol: String,
    assignment: Bytes,
    /// When the SyncGroup that completed the join was sent.
    confirmed_at: Instant,
}

enum Step {
    Done(Generation),
    /// Join again, with this member id.
    Restart {
        member_id: String,
        why: Error,
    },
}

/// Aborts the heartbeat task when dropped.
#[derive(Debug)]
struct HeartbeatTask(tokio::task::JoinHandle<()>);

impl Drop for HeartbeatTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A member of a group. Dropping it stops heartbeats without leaving (the coordinator removes it
/// after the session timeout); [`leave`](GroupMember::leave) leaves at once.
pub struct GroupMember {
    session: Arc<Session>,
    assignor: Arc<dyn Assignor>,
    state: Generation,
    rebalance: watch::Receiver<Option<Rejoin>>,
    _heartbeat: Option<HeartbeatTask>,
}

impl std::fmt::Debug for GroupMember {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupMember")
            .field("group", &self.session.config.group_id)
            .field("member_id", &self.state.member_id)
            .field("generation", &self.state.generation)
            .field("leader", &self.is_leader())
            .field("protocol", &self.state.protocol)
            .finish()
    }
}

impl GroupMember {
    /// Finds the coordinator, joins the group (running `assignor` if chosen as leader), receives
    /// this member's assignment and starts heartbeating.
    pub async fn join(
        cluster: Arc<Cluster>,
        config: GroupConfig,
        assignor: Arc<dyn Assignor>,
    ) -> Result<GroupMember> {
        validate(&config)?;
        let mut conn_config = cluster.config().conn.clone();
        conn_config.request_timeout = conn_config
            .request_timeout
            .max(config.rebalance_timeout + Duration::from_secs(5));
        let session = Arc::new(Session {
            cluster,
            config,
            protocols: Mutex::new(None),
            confirmed: watch::channel(None).0,
            conn_config,
            conn: tokio::sync::Mutex::new(None),
        });
        let state = join_group(&session, &*assignor, String::new()).await?;
        session.confirmed.send_replace(Some(state.confirmed_at));
        let (rebalance, heartbeat) = start_heartbeat(&session, &state);
        Ok(GroupMember {
            session,
            assignor,
            state,
            rebalance,
            _heartbeat: Some(heartbeat),
        })
    }

    /// This member's id.
    pub fn member_id(&self) -> &str {
        &self.state.member_id
    }

    /// The generation of the last completed join.
    pub fn generation(&self) -> i32 {
        self.state.generation
    }

    /// Whether this member computed the assignments of the current generation.
    pub fn is_leader(&self) -> bool {
        self.state.leader == self.state.member_id
    }

    /// The protocol the coordinator chose.
    pub fn protocol(&self) -> &str {
        &self.state.protocol
    }

    /// This member's assignment, in the chosen protocol's format.
    pub fn assignment(&self) -> &Bytes {
        &self.state.assignment
    }

    /// Resolves when the member must [`rejoin`](Self::rejoin): the coordinator said a rebalance
    /// is under way, or that this member's generation or id is no longer valid, or it moved, or
    /// heartbeats failed for a whole session timeout.
    pub async fn rebalance_needed(&self) {
        let mut rx = self.rebalance.clone();
        // An error means the heartbeat task is gone, which also calls for a rejoin.
        let _ = rx.wait_for(Option::is_some).await;
    }

    /// Why a rejoin is needed, once [`rebalance_needed`](Self::rebalance_needed) has resolved.
    pub fn rebalance_reason(&self) -> Option<String> {
        self.rebalance.borrow().as_ref().map(|r| r.reason.clone())
    }

    /// Whether the coordinator may no longer count this member in (its generation or id was
    /// refused, it was fenced, or no heartbeat got through for a whole session timeout), once
    /// [`rebalance_needed`](Self::rebalance_needed) has resolved. What it was assigned may then
    /// already belong to another member: a cooperative member stops it at once, without
    /// committing, and rejoins as new. Otherwise the group merely rebalances and the member
    /// keeps what it owns while it rejoins.
    pub fn membership_lost(&self) -> bool {
        self.rebalance.borrow().as_ref().is_some_and(|r| r.lost)
    }

    /// When the coordinator last confirmed this member: the send time of its last successful
    /// heartbeat, or of the SyncGroup that completed its last join (`None` before the first).
    /// The coordinator drops a member only a session timeout after it last heard from it,
    /// which is after this instant: until `confirmed + session_timeout` nobody else can have
    /// been given what this member was assigned. A member that was stopped or cut off sees an
    /// old instant when it wakes, before any heartbeat tells it whether it is still in.
    pub fn confirmed(&self) -> watch::Receiver<Option<Instant>> {
        self.session.confirmed.subscribe()
    }

    /// Replaces this member's protocols (names and metadata) for its next [`rejoin`]
    /// (Self::rejoin): a cooperative member announces what it owns now. The same rules as
    /// [`GroupConfig::protocols`] apply.
    pub fn set_protocols(&self, protocols: Vec<(String, Bytes)>) -> Result<()> {
        validate(&GroupConfig {
            protocols: protocols.clone(),
            ..self.session.config.clone()
        })?;
        *self
            .session
            .protocols
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(protocols);
        Ok(())
    }

    /// Joins again (keeping the member id when the coordinator still knows it) and takes the new
    /// assignment.
    pub async fn rejoin(&mut self) -> Result<()> {
        self._heartbeat = None;
        match join_group(&self.session, &*self.assignor, self.state.member_id.clone()).await {
            Ok(state) => {
                self.session
                    .confirmed
                    .send_replace(Some(state.confirmed_at));
                let (rebalance, heartbeat) = start_heartbeat(&self.session, &state);
                self.state = state;
                self.rebalance = rebalance;
                self._heartbeat = Some(heartbeat);
                Ok(())
            }
            Err(e) => {
                // No heartbeats now: the owner must rejoin again before relying on the old
                // assignment.
                // Not in the generation that formed meanwhile: what it owned may be handed out.
                let (_tx, rx) = watch::channel(Some(Rejoin {
                    reason: format!("rejoin failed: {e}"),
                    lost: true,
                }));
                self.rebalance = rx;
                Err(e)
            }
        }
    }

    /// Commits offsets as this member of the current generation (consumer-style commit).
    pub async fn commit_offsets(&self, offsets: &[CommittedOffset]) -> Result<()> {
        let session = &*self.session;
        let state = &self.state;
        session
            .cluster
            .retry("OffsetCommit (member)", || async {
                let (broker, conn) = session.coordinator().await?;
                let version = conn.version(ApiKey::OffsetCommit)?;
                let req = offset_commit_request(
                    version,
                    &session.config.group_id,
                    state.generation,
                    &state.member_id,
                    session.config.group_instance_id.as_deref(),
                    offsets,
                );
                let out = match conn.send_versioned(&req, version).await {
                    Ok(resp) => check_offset_commit(&resp, &who(&broker), &session.config.group_id),
                    Err(e) => Err(e.into()),
                };
                if let Err(e) = &out {
                    session.forget_if_moved(e);
                }
                out
            })
            .await
    }

    /// Leaves the group now (LeaveGroup), so the others rebalance without waiting for the session
    /// timeout. A static member (KIP-345) is removed by its instance id too.
    pub async fn leave(mut self) -> Result<()> {
        self._heartbeat = None;
        let session = &*self.session;
        let member_id = &self.state.member_id;
        session
            .cluster
            .retry("LeaveGroup", || async {
                let (broker, conn) = session.coordinator().await?;
                let version = group_version(&conn, ApiKey::LeaveGroup, 2)?;
                let mut req = LeaveGroupRequest::default().with_group_id(session.group_id());
                if version >= 3 {
                    req = req.with_members(vec![MemberIdentity::default()
                        .with_member_id(StrBytes::from_string(member_id.clone()))
                        .with_group_instance_id(session.instance_id())]);
                } else {
                    req = req.with_member_id(StrBytes::from_string(member_id.clone()));
                }
                let resp = match conn.send_versioned(&req, version).await {
                    Ok(r) => r,
                    Err(e) => {
                        let e = Error::from(e);
                        session.forget_if_moved(&e);
                        return Err(e);
                    }
                };
                let member_code = resp
                    .members
                    .iter()
                    .map(|m| m.error_code)
                    .find(|c| *c != 0)
                    .unwrap_or(0);
                for code in [resp.error_code, member_code] {
                    match session.broker_error(ApiKey::LeaveGroup, &broker, code) {
                        // Already gone: the coordinator expired or fenced us.
                        Some(e) if e.response_error() == Some(ResponseError::UnknownMemberId) => {}
                        Some(e) => return Err(e),
                        None => {}
                    }
                }
                Ok(())
            })
            .await?;
        info!(group = %session.config.group_id, member = %member_id, "left group");
        Ok(())
    }
}

fn validate(config: &GroupConfig) -> Result<()> {
    let bad = |m: String| {
        Err(Error::InvalidArgument(format!(
            "group {}: {m}",
            config.group_id
        )))
    };
    if config.group_id.is_empty() {
        return bad("empty group id".into());
    }
    if config.protocol_type.is_empty() {
        return bad("empty protocol type".into());
    }
    if config.protocols.is_empty() {
        return bad("no protocols".into());
    }
    let mut names = HashSet::new();
    if let Some((n, _)) = config
        .protocols
        .iter()
        .find(|(n, _)| !names.insert(n.as_str()))
    {
        return bad(format!("protocol {n} listed twice"));
    }
    let ms = |d: Duration| i32::try_from(d.as_millis()).ok();
    if ms(config.session_timeout).is_none() || ms(config.rebalance_timeout).is_none() {
        return bad("timeouts must fit in i32 milliseconds".into());
    }
    if config.heartbeat_interval.is_zero() || config.heartbeat_interval >= config.session_timeout {
        return bad(format!(
            "heartbeat interval {:?} must be positive and below the session timeout {:?}",
            config.heartbeat_interval, config.session_timeout
        ));
    }
    Ok(())
}

/// The highest version of `api` at or below `cap` that the broker offers; if it offers none that
/// old, the highest common version.
fn group_version(conn: &Connection, api: ApiKey, cap: i16) -> Result<i16> {
    let (min, max) = Supported::range(api);
    match conn.versions().pick_within(api, min, cap.min(max)) {
        Ok(v) => Ok(v),
        Err(_) => Ok(conn.version(api)?),
    }
}

fn millis(d: Duration) -> i32 {
    d.as_millis().min(i32::MAX as u128) as i32
}

/// Joins (JoinGroup + SyncGroup) until a generation is complete, inside the cluster's retry loop.
async fn join_group(
    session: &Session,
    assignor: &dyn Assignor,
    member_id: String,
) -> Result<Generation> {
    let member_id = Mutex::new(member_id);
    // A fixed name: it labels the retry counts (metrics), whose label values must not grow
    // with group ids.
    let state = session
        .cluster
        .retry("JoinGroup", || async {
            let mut last = None;
            for _ in 0..MAX_PROTOCOL_RESTARTS {
                let id = member_id.lock().unwrap_or_else(|p| p.into_inner()).clone();
                match join_round(session, assignor, id).await? {
                    Step::Done(g) => return Ok(g),
                    Step::Restart {
                        member_id: next,
                        why,
                    } => {
                        debug!(group = %session.config.group_id, reason = %why, "joining again");
                        *member_id.lock().unwrap_or_else(|p| p.into_inner()) = next;
                        last = Some(why);
                    }
                }
            }
            Err(last.unwrap_or_else(|| Error::InvalidArgument("no join attempt".into())))
        })
        .await?;
    info!(
        group = %session.config.group_id,
        member = %state.member_id,
        generation = state.generation,
        leader = state.leader == state.member_id,
        protocol = %state.protocol,
        "joined group"
    );
    Ok(state)
}

/// One JoinGroup, the leader's assignment, and one SyncGroup.
async fn join_round(session: &Session, assignor: &dyn Assignor, member_id: String) -> Result<Step> {
    let cfg = &session.config;
    let (broker, conn) = session.coordinator().await?;
    let version = group_version(&conn, ApiKey::JoinGroup, 5)?;
    if cfg.group_instance_id.is_some() && version < 5 {
        return Err(Error::InvalidArgument(format!(
            "group {}: static membership needs JoinGroup v5, broker {} offers v{version}",
            cfg.group_id,
            who(&broker)
        )));
    }
    let mut req = JoinGroupRequest::default()
        .with_group_id(session.group_id())
        .with_session_timeout_ms(millis(cfg.session_timeout))
        .with_member_id(StrBytes::from_string(member_id.clone()))
        .with_protocol_type(StrBytes::from_string(cfg.protocol_type.clone()))
        .with_protocols(
            session
                .protocols
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .as_ref()
                .unwrap_or(&cfg.protocols)
                .iter()
                .map(|(name, metadata)| {
                    JoinGroupRequestProtocol::default()
                        .with_name(StrBytes::from_string(name.clone()))
                        .with_metadata(metadata.clone())
                })
                .collect(),
        );
    if version >= 1 {
        req = req.with_rebalance_timeout_ms(millis(cfg.rebalance_timeout));
    }
    if version >= 5 {
        req = req.with_group_instance_id(session.instance_id());
    }
    debug!(group = %cfg.group_id, coordinator = %who(&broker), version, member = %member_id, "JoinGroup");
    let resp = match send_tolerant(session, &conn, &req, version).await {
        Ok(r) => r,
        Err(e) => {
            session.forget_if_moved(&e);
            return Err(e);
        }
    };
    if let Some(e) = session.broker_error(ApiKey::JoinGroup, &broker, resp.error_code) {
        return match e.response_error() {
            // KIP-394: the coordinator hands out an id and wants it back in a second JoinGroup.
            Some(ResponseError::MemberIdRequired) => Ok(Step::Restart {
                member_id: resp.member_id.to_string(),
                why: e,
            }),
            // Our id expired: join as a new member.
            Some(ResponseError::UnknownMemberId) if !member_id.is_empty() => Ok(Step::Restart {
                member_id: String::new(),
                why: e,
            }),
            _ => Err(e),
        };
    }
    let joined_id = resp.member_id.to_string();
    let protocol = resp
        .protocol_name
        .as_ref()
        .map(|p| p.to_string())
        .unwrap_or_default();
    let assignments = if resp.leader == resp.member_id && !resp.skip_assignment {
        leader_assignments(cfg, assignor, &protocol, &resp)?
    } else {
        Vec::new()
    };
    let sync_version = group_version(&conn, ApiKey::SyncGroup, 3)?;
    let mut sync = SyncGroupRequest::default()
        .with_group_id(session.group_id())
        .with_generation_id(resp.generation_id)
        .with_member_id(resp.member_id.clone())
        .with_assignments(assignments);
    if sync_version >= 3 {
        sync = sync.with_group_instance_id(session.instance_id());
    }
    if sync_version >= 5 {
        sync = sync
            .with_protocol_type(Some(StrBytes::from_string(cfg.protocol_type.clone())))
            .with_protocol_name(resp.protocol_name.clone());
    }
    debug!(
        group = %cfg.group_id,
        member = %joined_id,
        generation = resp.generation_id,
        leader = resp.leader == resp.member_id,
        "SyncGroup"
    );
    let sync_sent = Instant::now();
    let synced = match send_tolerant(session, &conn, &sync, sync_version).await {
        Ok(r) => r,
        Err(e) => {
            session.forget_if_moved(&e);
            return Err(e);
        }
    };
    if let Some(e) = session.broker_error(ApiKey::SyncGroup, &broker, synced.error_code) {
        return match e.response_error() {
            Some(ResponseError::RebalanceInProgress | ResponseError::IllegalGeneration) => {
                Ok(Step::Restart {
                    member_id: joined_id,
                    why: e,
                })
            }
            Some(ResponseError::UnknownMemberId) => Ok(Step::Restart {
                member_id: String::new(),
                why: e,
            }),
            _ => Err(e),
        };
    }
    Ok(Step::Done(Generation {
        member_id: joined_id,
        generation: resp.generation_id,
        leader: resp.leader.to_string(),
        protocol,
        assignment: synced.assignment,
        confirmed_at: sync_sent,
    }))
}

/// A group response type whose error answers may be read leniently (see [`send_tolerant`]).
trait TolerantAnswer: Default {
    /// Whether `version` has a throttle time before the error code.
    fn has_throttle(version: i16) -> bool;
    /// The answer for an error code (and the member id, where the answer carries one).
    fn from_error(code: i16, member_id: Option<String>) -> Self;
    /// Whether the member id follows the error code (after generation, protocol and leader).
    const CARRIES_MEMBER_ID: bool;
}

impl TolerantAnswer for JoinGroupResponse {
    fn has_throttle(version: i16) -> bool {
        version >= 2
    }
    fn from_error(code: i16, member_id: Option<String>) -> Self {
        JoinGroupResponse::default()
            .with_error_code(code)
            .with_member_id(StrBytes::from_string(member_id.unwrap_or_default()))
    }
    const CARRIES_MEMBER_ID: bool = true;
}

impl TolerantAnswer for SyncGroupResponse {
    fn has_throttle(version: i16) -> bool {
        version >= 1
    }
    fn from_error(code: i16, _member_id: Option<String>) -> Self {
        SyncGroupResponse::default().with_error_code(code)
    }
    const CARRIES_MEMBER_ID: bool = false;
}

/// Sends a JoinGroup or SyncGroup request and decodes the answer strictly; if that fails and the
/// answer is a non-flexible *error* answer with nulls where the schema forbids them (librdkafka's
/// mock cluster writes null names and assignments in its error answers, which librdkafka's
/// client reads as empty), the error code (and member id) are read from it leniently. A success
/// answer must always decode strictly.
async fn send_tolerant<R>(
    session: &Session,
    conn: &Connection,
    req: &R,
    version: i16,
) -> Result<R::Response>
where
    R: Request,
    R::Response: TolerantAnswer,
{
    let api = api_key_of::<R>();
    let client_id = session.conn_config.client_id.as_str();
    let raw = conn
        .roundtrip(api, |corr| {
            encode_request(corr, client_id, version, req).map(BufChain::from)
        })
        .await?;
    match decode_response::<R>(raw.clone(), version) {
        Ok(resp) => Ok(resp),
        Err(strict) => {
            let flexible = <R::Response as HeaderVersion>::header_version(version) >= 1;
            let lenient = (!flexible)
                .then(|| lenient_error_answer::<R::Response>(raw, version))
                .flatten();
            match lenient {
                Some(resp) => {
                    debug!(?api, version, error = %strict, "read a malformed error answer leniently");
                    Ok(resp)
                }
                None => Err(Error::Conn(ConnError::Codec {
                    broker: conn.broker().to_string(),
                    source: strict,
                })),
            }
        }
    }
}

/// The error code (and member id) of a non-flexible error answer, reading null strings as
/// absent; `None` unless the error code is non-zero.
fn lenient_error_answer<T: TolerantAnswer>(raw: Bytes, version: i16) -> Option<T> {
    let mut r = Reader::new(raw, ApiKey::JoinGroup, "error answer");
    if T::has_throttle(version) {
        r.i32("throttle").ok()?;
    }
    r.need(2, "error code").ok()?;
    let code = r.buf.get_i16();
    if code == 0 {
        return None;
    }
    let mut member_id = None;
    if T::CARRIES_MEMBER_ID {
        // generation id, protocol name, leader, member id
        if r.i32("generation").is_ok()
            && r.nullable_string("protocol").is_ok()
            && r.nullable_string("leader").is_ok()
        {
            member_id = r.nullable_string("member id").ok().flatten();
        }
    }
    Some(T::from_error(code, member_id))
}

/// Runs the assignor over the members the coordinator reported and checks its answer.
fn leader_assignments(
    cfg: &GroupConfig,
    assignor: &dyn Assignor,
    protocol: &str,
    resp: &JoinGroupResponse,
) -> Result<Vec<SyncGroupRequestAssignment>> {
    let members: Vec<(String, Bytes)> = resp
        .members
        .iter()
        .map(|m| (m.member_id.to_string(), m.metadata.clone()))
        .collect();
    let known: HashSet<&str> = members.iter().map(|(id, _)| id.as_str()).collect();
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(members.len());
    for (id, assignment) in assignor.assign(protocol, &members) {
        if !known.contains(id.as_str()) || !seen.insert(id.clone()) {
            return Err(Error::InvalidArgument(format!(
                "group {}: the assignor returned {} member {id}, which is not one of the {} members",
                cfg.group_id,
                if known.contains(id.as_str()) { "a second assignment for" } else { "unknown" },
                members.len()
            )));
        }
        out.push(
            SyncGroupRequestAssignment::default()
                .with_member_id(StrBytes::from_string(id))
                .with_assignment(assignment),
        );
    }
    Ok(out)
}

/// Why a member must rejoin.
#[derive(Clone, Debug)]
struct Rejoin {
    reason: String,
    /// The coordinator may have dropped the member ([`GroupMember::membership_lost`]).
    lost: bool,
}

/// Errors saying the coordinator no longer counts this member in.
fn membership_gone(e: ResponseError) -> bool {
    matches!(
        e,
        ResponseError::IllegalGeneration
            | ResponseError::UnknownMemberId
            | ResponseError::FencedInstanceId
    )
}

fn start_heartbeat(
    session: &Arc<Session>,
    state: &Generation,
) -> (watch::Receiver<Option<Rejoin>>, HeartbeatTask) {
    let (tx, rx) = watch::channel(None);
    let task = tokio::spawn(heartbeat_loop(
        session.clone(),
        state.member_id.clone(),
        state.generation,
        tx,
    ));
    (rx, HeartbeatTask(task))
}

/// Heartbeats every `heartbeat_interval` until the coordinator asks for a rejoin, reporting the
/// reason through `tx`.
async fn heartbeat_loop(
    session: Arc<Session>,
    member_id: String,
    generation: i32,
    tx: watch::Sender<Option<Rejoin>>,
) {
    let cfg = &session.config;
    let mut failing_since: Option<Instant> = None;
    // When the last heartbeat got through: a member that could not heartbeat for a session
    // timeout (a network cut, or a process stopped and woken) may have been dropped.
    let mut last_ok = Instant::now();
    loop {
        tokio::time::sleep(cfg.heartbeat_interval).await;
        let sent = Instant::now();
        let outcome = heartbeat_once(&session, &member_id, generation).await;
        let (reason, lost) = match outcome {
            Ok(()) => {
                failing_since = None;
                last_ok = sent;
                session.confirmed.send_replace(Some(sent));
                continue;
            }
            Err(e) => match e.response_error() {
                Some(code) if membership_gone(code) => (e.to_string(), true),
                Some(
                    ResponseError::RebalanceInProgress
                    | ResponseError::NotCoordinator
                    | ResponseError::CoordinatorNotAvailable,
                ) => (e.to_string(), last_ok.elapsed() >= cfg.session_timeout),
                _ if e.is_retriable() => {
                    let since = *failing_since.get_or_insert_with(Instant::now);
                    if since.elapsed() < cfg.session_timeout {
                        debug!(group = %cfg.group_id, error = %e, "heartbeat failed, will retry");
                        continue;
                    }
                    (
                        format!("no successful heartbeat for the session timeout: {e}"),
                        true,
                    )
                }
                _ => (format!("heartbeat failed: {e}"), true),
            },
        };
        info!(group = %cfg.group_id, member = %member_id, generation, %reason, lost, "rejoin needed");
        let _ = tx.send(Some(Rejoin { reason, lost }));
        return;
    }
}

async fn heartbeat_once(session: &Session, member_id: &str, generation: i32) -> Result<()> {
    let (broker, conn) = session.coordinator().await?;
    let version = group_version(&conn, ApiKey::Heartbeat, 3)?;
    let mut req = HeartbeatRequest::default()
        .with_group_id(session.group_id())
        .with_generation_id(generation)
        .with_member_id(StrBytes::from_string(member_id.to_string()));
    if version >= 3 {
        req = req.with_group_instance_id(session.instance_id());
    }
    let resp = match conn.send_versioned(&req, version).await {
        Ok(r) => r,
        Err(e) => {
            let e = Error::from(e);
            session.forget_if_moved(&e);
            return Err(e);
        }
    };
    match session.broker_error(ApiKey::Heartbeat, &broker, resp.error_code) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

// ---------------------------------------------------------------------------------------------
// The "consumer" embedded protocol (Java `ConsumerProtocol`, KIP-429 owned partitions, KIP-792
// generation, KIP-881 rack): a 2-byte version, then the message at that version.

/// The version this client writes for subscriptions and assignments.
const CONSUMER_PROTOCOL_VERSION: i16 = 3;

/// A member's subscription (JoinGroup metadata of the `consumer` protocol type).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConsumerSubscription {
    /// Subscribed topics.
    pub topics: Vec<String>,
    /// Assignor-specific data.
    pub user_data: Option<Bytes>,
    /// Partitions owned before this rebalance (v1+).
    pub owned_partitions: Vec<(String, Vec<i32>)>,
    /// Generation of the owned partitions, -1 if none (v2+).
    pub generation_id: i32,
    /// Rack (v3+).
    pub rack_id: Option<String>,
}

/// A member's assignment (SyncGroup assignment of the `consumer` protocol type).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConsumerAssignment {
    /// Assigned partitions by topic.
    pub partitions: Vec<(String, Vec<i32>)>,
    /// Assignor-specific data.
    pub user_data: Option<Bytes>,
}

fn encode_versioned<M: Encodable>(m: &M, version: i16, api: ApiKey) -> Result<Bytes> {
    let mut buf = BytesMut::new();
    buf.extend_from_slice(&version.to_be_bytes());
    m.encode(&mut buf, version).map_err(|e| {
        Error::Codec(CodecError::Encode {
            api,
            version,
            message: e.to_string(),
        })
    })?;
    Ok(buf.freeze())
}

impl ConsumerSubscription {
    /// A subscription to `topics` with nothing owned.
    pub fn new<I: IntoIterator<Item = S>, S: Into<String>>(topics: I) -> ConsumerSubscription {
        ConsumerSubscription {
            topics: topics.into_iter().map(Into::into).collect(),
            generation_id: -1,
            ..ConsumerSubscription::default()
        }
    }

    /// The wire form (version 3).
    pub fn encode(&self) -> Result<Bytes> {
        let m = ConsumerProtocolSubscription::default()
            .with_topics(
                self.topics
                    .iter()
                    .map(|t| StrBytes::from_string(t.clone()))
                    .collect(),
            )
            .with_user_data(self.user_data.clone())
            .with_owned_partitions(
                self.owned_partitions
                    .iter()
                    .map(|(t, ps)| {
                        OwnedPartitions::default()
                            .with_topic(TopicName(StrBytes::from_string(t.clone())))
                            .with_partitions(ps.clone())
                    })
                    .collect(),
            )
            .with_generation_id(self.generation_id)
            .with_rack_id(
                self.rack_id
                    .as_ref()
                    .map(|r| StrBytes::from_string(r.clone())),
            );
        encode_versioned(&m, CONSUMER_PROTOCOL_VERSION, ApiKey::JoinGroup)
    }

    /// Reads any version; fields a version lacks take their defaults, and newer versions are read
    /// as the newest known one (later versions only append fields).
    pub fn decode(bytes: &Bytes) -> Result<ConsumerSubscription> {
        let mut r = Reader::new(bytes.clone(), ApiKey::JoinGroup, "consumer subscription");
        let version = r.version()?;
        let mut out = ConsumerSubscription {
            generation_id: -1,
            ..ConsumerSubscription::default()
        };
        let n = r.count(2, "topics")?;
        out.topics.reserve(n);
        for _ in 0..n {
            out.topics.push(r.string("topic")?);
        }
        out.user_data = r.nullable_bytes("user data")?;
        if version >= 1 {
            out.owned_partitions = r.topic_partitions("owned partitions")?;
        }
        if version >= 2 {
            out.generation_id = r.i32("generation id")?;
        }
        if version >= 3 {
            out.rack_id = r.nullable_string("rack id")?;
        }
        Ok(out)
    }
}

impl ConsumerAssignment {
    /// The wire form (version 3).
    pub fn encode(&self) -> Result<Bytes> {
        let m = ConsumerProtocolAssignment::default()
            .with_assigned_partitions(
                self.partitions
                    .iter()
                    .map(|(t, ps)| {
                        AssignedPartitions::default()
                            .with_topic(TopicName(StrBytes::from_string(t.clone())))
                            .with_partitions(ps.clone())
                    })
                    .collect(),
            )
            .with_user_data(self.user_data.clone());
        encode_versioned(&m, CONSUMER_PROTOCOL_VERSION, ApiKey::SyncGroup)
    }

    /// Reads any version. An empty buffer is an empty assignment (what the coordinator hands a
    /// member the leader assigned nothing).
    pub fn decode(bytes: &Bytes) -> Result<ConsumerAssignment> {
        if bytes.is_empty() {
            return Ok(ConsumerAssignment::default());
        }
        let mut r = Reader::new(bytes.clone(), ApiKey::SyncGroup, "consumer assignment");
        r.version()?;
        let partitions = r.topic_partitions("assigned partitions")?;
        let user_data = r.nullable_bytes("user data")?;
        Ok(ConsumerAssignment {
            partitions,
            user_data,
        })
    }

    /// The assigned (topic, partition) pairs, sorted.
    pub fn topic_partitions(&self) -> Vec<(String, i32)> {
        let mut out: Vec<(String, i32)> = self
            .partitions
            .iter()
            .flat_map(|(t, ps)| ps.iter().map(move |p| (t.clone(), *p)))
            .collect();
        out.sort();
        out
    }
}

/// A bounds-checked reader for the embedded protocol: every length and count is checked against
/// the bytes left before anything is allocated (the data comes from other group members).
struct Reader {
    buf: Bytes,
    api: ApiKey,
    what: &'static str,
    version: i16,
}

impl Reader {
    fn new(buf: Bytes, api: ApiKey, what: &'static str) -> Reader {
        Reader {
            buf,
            api,
            what,
            version: 0,
        }
    }

    fn err(&self, message: String) -> Error {
        Error::Codec(CodecError::Decode {
            api: self.api,
            version: self.version,
            message: format!("{}: {message}", self.what),
        })
    }

    fn need(&self, n: usize, field: &str) -> Result<()> {
        if self.buf.remaining() < n {
            return Err(self.err(format!(
                "{field} needs {n} bytes, {} left",
                self.buf.remaining()
            )));
        }
        Ok(())
    }

    fn version(&mut self) -> Result<i16> {
        self.need(2, "version")?;
        let v = self.buf.get_i16();
        self.version = v;
        if v < 0 {
            return Err(self.err(format!("negative version {v}")));
        }
        Ok(v)
    }

    fn i32(&mut self, field: &str) -> Result<i32> {
        self.need(4, field)?;
        Ok(self.buf.get_i32())
    }

    /// An array count, checked against the bytes left at `min_size` bytes per element.
    fn count(&mut self, min_size: usize, field: &str) -> Result<usize> {
        let n = self.i32(field)?;
        let n = usize::try_from(n).map_err(|_| self.err(format!("{field}: negative count {n}")))?;
        if n.saturating_mul(min_size) > self.buf.remaining() {
            return Err(self.err(format!(
                "{field}: {n} elements cannot fit in {} bytes",
                self.buf.remaining()
            )));
        }
        Ok(n)
    }

    fn nullable_string(&mut self, field: &str) -> Result<Option<String>> {
        self.need(2, field)?;
        let len = self.buf.get_i16();
        if len < 0 {
            return Ok(None);
        }
        let len = len as usize;
        self.need(len, field)?;
        let raw = self.buf.split_to(len);
        String::from_utf8(raw.to_vec())
            .map(Some)
            .map_err(|_| self.err(format!("{field} is not UTF-8")))
    }

    fn string(&mut self, field: &str) -> Result<String> {
        self.nullable_string(field)?
            .ok_or_else(|| self.err(format!("{field} is null")))
    }

    fn nullable_bytes(&mut self, field: &str) -> Result<Option<Bytes>> {
        let len = self.i32(field)?;
        if len < 0 {
            return Ok(None);
        }
        let len = len as usize;
        self.need(len, field)?;
        Ok(Some(self.buf.split_to(len)))
    }

    fn topic_partitions(&mut self, field: &str) -> Result<Vec<(String, Vec<i32>)>> {
        // Each element: a string (2+ bytes) and a count (4 bytes).
        let n = self.count(6, field)?;
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            let topic = self.string(field)?;
            let m = self.count(4, field)?;
            let mut ps = Vec::with_capacity(m);
            for _ in 0..m {
                ps.push(self.buf.get_i32());
            }
            out.push((topic, ps));
        }
        Ok(out)
    }
}

/// Kafka's range assignor (`RangeAssignor.java`) over topics whose partition counts the leader
/// knows: for each topic, the members subscribed to it, sorted by member id, take consecutive
/// ranges; the first `partitions % members` get one extra. Protocol name `range`.
#[derive(Clone, Debug, Default)]
pub struct RangeAssignor {
    partitions: BTreeMap<String, i32>,
}

impl RangeAssignor {
    /// Protocol name.
    pub const NAME: &'static str = "range";

    /// An assignor for these (topic, partition count) pairs.
    pub fn new<I: IntoIterator<Item = (S, i32)>, S: Into<String>>(topics: I) -> RangeAssignor {
        RangeAssignor {
            partitions: topics
                .into_iter()
                .map(|(t, n)| (t.into(), n.max(0)))
                .collect(),
        }
    }

    /// The assignment of every member, by member id, from decoded subscriptions.
    pub fn assign_subscriptions(
        &self,
        members: &[(String, ConsumerSubscription)],
    ) -> BTreeMap<String, ConsumerAssignment> {
        let mut out: BTreeMap<String, ConsumerAssignment> = members
            .iter()
            .map(|(id, _)| (id.clone(), ConsumerAssignment::default()))
            .collect();
        for (topic, &count) in &self.partitions {
            let mut subscribers: Vec<&str> = members
                .iter()
                .filter(|(_, s)| s.topics.iter().any(|t| t == topic))
                .map(|(id, _)| id.as_str())
                .collect();
            subscribers.sort_unstable();
            subscribers.dedup();
            if subscribers.is_empty() {
                continue;
            }
            let n = subscribers.len() as i32;
            let (per, extra) = (count / n, count % n);
            let mut next = 0;
            for (i, id) in subscribers.into_iter().enumerate() {
                let take = per + i32::from((i as i32) < extra);
                if take > 0 {
                    if let Some(a) = out.get_mut(id) {
                        a.partitions
                            .push((topic.clone(), (next..next + take).collect()));
                    }
                }
                next += take;
            }
        }
        out
    }
}

impl Assignor for RangeAssignor {
    fn assign(&self, _protocol: &str, members: &[(String, Bytes)]) -> Vec<(String, Bytes)> {
        let decoded: Vec<(String, ConsumerSubscription)> = members
            .iter()
            .map(|(id, metadata)| {
                let sub = ConsumerSubscription::decode(metadata).unwrap_or_else(|e| {
                    info!(member = %id, error = %e, "unreadable subscription; assigning nothing");
                    ConsumerSubscription::default()
                });
                (id.clone(), sub)
            })
            .collect();
        self.assign_subscriptions(&decoded)
            .into_iter()
            .filter_map(|(id, a)| match a.encode() {
                Ok(b) => Some((id, b)),
                Err(e) => {
                    info!(member = %id, error = %e, "could not encode assignment");
                    None
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::protocol::Decodable;

    #[test]
    fn subscription_round_trips_and_matches_kafka_protocol() {
        let s = ConsumerSubscription {
            topics: vec!["a".into(), "b".into()],
            user_data: Some(Bytes::from_static(b"ud")),
            owned_partitions: vec![("a".into(), vec![0, 2])],
            generation_id: 7,
            rack_id: Some("r1".into()),
        };
        let wire = s.encode().unwrap();
        assert_eq!(&wire[..2], &[0, 3]);
        assert_eq!(ConsumerSubscription::decode(&wire).unwrap(), s);
        // The same bytes through kafka-protocol's own decoder.
        let mut body = wire.slice(2..);
        let m = ConsumerProtocolSubscription::decode(&mut body, 3).unwrap();
        assert_eq!(m.topics.len(), 2);
        assert_eq!(m.generation_id, 7);
    }

    #[test]
    fn older_and_newer_subscription_versions() {
        // v0 as librdkafka and old Java clients write it: topics and user data only.
        let m = ConsumerProtocolSubscription::default()
            .with_topics(vec![StrBytes::from_static_str("t")])
            .with_user_data(None);
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&0i16.to_be_bytes());
        m.encode(&mut buf, 0).unwrap();
        let s = ConsumerSubscription::decode(&buf.freeze()).unwrap();
        assert_eq!(s.topics, vec!["t".to_string()]);
        assert_eq!(s.generation_id, -1);
        assert!(s.owned_partitions.is_empty());
        // A future version with appended fields reads as v3.
        let mut wire = BytesMut::from(&ConsumerSubscription::new(["x"]).encode().unwrap()[..]);
        wire[1] = 9;
        wire.extend_from_slice(b"future");
        assert_eq!(
            ConsumerSubscription::decode(&wire.freeze()).unwrap().topics,
            vec!["x".to_string()]
        );
    }

    #[test]
    fn hostile_lengths_are_rejected_before_allocating() {
        // version 0, topic count i32::MAX, nothing else.
        let mut b = BytesMut::new();
        b.extend_from_slice(&0i16.to_be_bytes());
        b.extend_from_slice(&i32::MAX.to_be_bytes());
        assert!(ConsumerSubscription::decode(&b.clone().freeze()).is_err());
        // assignment: one topic "t" claiming a billion partitions.
        let mut a = BytesMut::new();
        a.extend_from_slice(&3i16.to_be_bytes());
        a.extend_from_slice(&1i32.to_be_bytes());
        a.extend_from_slice(&1i16.to_be_bytes());
        a.extend_from_slice(b"t");
        a.extend_from_slice(&1_000_000_000i32.to_be_bytes());
        let e = ConsumerAssignment::decode(&a.freeze()).unwrap_err();
        assert!(e.to_string().contains("cannot fit"), "{e}");
        for bad in [&[0u8][..], &[0xff, 0xff][..], &[0, 0, 0, 0, 0, 1, 0][..]] {
            assert!(ConsumerSubscription::decode(&Bytes::copy_from_slice(bad)).is_err());
        }
        // Truncations of a valid subscription never panic and never succeed wrongly.
        let wire = ConsumerSubscription {
            topics: vec!["abc".into()],
            user_data: Some(Bytes::from_static(b"xyz")),
            owned_partitions: vec![("abc".into(), vec![1])],
            generation_id: 2,
            rack_id: None,
        }
        .encode()
        .unwrap();
        for cut in 0..wire.len() {
            assert!(
                ConsumerSubscription::decode(&wire.slice(..cut)).is_err(),
                "cut {cut}"
            );
        }
    }

    #[test]
    fn assignment_round_trips() {
        let a = ConsumerAssignment {
            partitions: vec![("t".into(), vec![3, 4, 5]), ("u".into(), vec![0])],
            user_data: None,
        };
        let wire = a.encode().unwrap();
        assert_eq!(ConsumerAssignment::decode(&wire).unwrap(), a);
        assert_eq!(
            a.topic_partitions(),
            vec![
                ("t".into(), 3),
                ("t".into(), 4),
                ("t".into(), 5),
                ("u".into(), 0)
            ]
        );
        assert_eq!(
            ConsumerAssignment::decode(&Bytes::new()).unwrap(),
            ConsumerAssignment::default()
        );
    }

    #[test]
    fn range_assignor_matches_kafka() {
        let r = RangeAssignor::new([("t1", 7), ("t2", 2)]);
        let members = vec![
            ("c".to_string(), ConsumerSubscription::new(["t1", "t2"])),
            ("a".to_string(), ConsumerSubscription::new(["t1"])),
            (
                "b".to_string(),
                ConsumerSubscription::new(["t1", "t2", "unknown"]),
            ),
        ];
        let out = r.assign_subscriptions(&members);
        // t1: 7 over a,b,c → 3,2,2; t2: 2 over b,c → 1,1.
        assert_eq!(out["a"].partitions, vec![("t1".to_string(), vec![0, 1, 2])]);
        assert_eq!(
            out["b"].partitions,
            vec![("t1".to_string(), vec![3, 4]), ("t2".to_string(), vec![0])]
        );
        assert_eq!(
            out["c"].partitions,
            vec![("t1".to_string(), vec![5, 6]), ("t2".to_string(), vec![1])]
        );
        // Through the Assignor trait, with wire bytes and an unreadable member.
        let wire: Vec<(String, Bytes)> = vec![
            (
                "m1".into(),
                ConsumerSubscription::new(["t2"]).encode().unwrap(),
            ),
            ("m2".into(), Bytes::from_static(&[0, 0, 0x7f])),
        ];
        let got: BTreeMap<String, ConsumerAssignment> = r
            .assign(RangeAssignor::NAME, &wire)
            .into_iter()
            .map(|(id, b)| (id, ConsumerAssignment::decode(&b).unwrap()))
            .collect();
        assert_eq!(got["m1"].partitions, vec![("t2".to_string(), vec![0, 1])]);
        assert!(got["m2"].partitions.is_empty());
    }

    #[test]
    fn config_validation() {
        let ok = GroupConfig {
            group_id: "g".into(),
            protocol_type: "strait".into(),
            protocols: vec![("p".into(), Bytes::new())],
            session_timeout: Duration::from_secs(10),
            rebalance_timeout: Duration::from_secs(10),
            heartbeat_interval: Duration::from_secs(3),
            group_instance_id: None,
        };
        assert!(validate(&ok).is_ok());
        for bad in [
            GroupConfig {
                group_id: String::new(),
                ..ok.clone()
            },
            GroupConfig {
                protocols: vec![],
                ..ok.clone()
            },
            GroupConfig {
                protocols: vec![("p".into(), Bytes::new()), ("p".into(), Bytes::new())],
                ..ok.clone()
            },
            GroupConfig {
                heartbeat_interval: Duration::from_secs(10),
                ..ok.clone()
            },
            GroupConfig {
                session_timeout: Duration::from_secs(u64::MAX / 2),
                ..ok.clone()
            },
        ] {
            assert!(
                matches!(validate(&bad), Err(Error::InvalidArgument(_))),
                "{bad:?}"
            );
        }
    }
}
