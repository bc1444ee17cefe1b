//! Group membership (protocol-client `group`) against librdkafka's mock cluster: two members of
//! one group split the partitions with the range assignor, a member that leaves hands its share
//! to the other, retriable FindCoordinator errors are retried, a coordinator move triggers a
//! rejoin, and member commits are read back by the admin API.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use protocol_client::admin::{Admin, CommittedOffset};
use protocol_client::cluster::{ClientConfig, Cluster, CoordinatorType};
use protocol_client::group::{
    Assignor, ConsumerAssignment, ConsumerSubscription, GroupConfig, GroupMember, RangeAssignor,
    CONSUMER_PROTOCOL_TYPE,
};
use protocol_client::ResponseError;
use rdkafka::mocking::MockCoordinator;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use strait_tests::mock::MockKafka;

const WAIT: Duration = Duration::from_secs(30);

async fn cluster(mock: &MockKafka) -> Arc<Cluster> {
    Cluster::connect(ClientConfig::new(mock.bootstrap()))
        .await
        .expect("connect to mock cluster")
}

fn config(group: &str, topic: &str) -> GroupConfig {
    GroupConfig {
        group_id: group.to_string(),
        protocol_type: CONSUMER_PROTOCOL_TYPE.to_string(),
        protocols: vec![(
            RangeAssignor::NAME.to_string(),
            ConsumerSubscription::new([topic])
                .encode()
                .expect("encode subscription"),
        )],
        session_timeout: Duration::from_secs(6),
        rebalance_timeout: Duration::from_secs(10),
        heartbeat_interval: Duration::from_millis(300),
        group_instance_id: None,
    }
}

/// The range assignor, slowed down. librdkafka's mock coordinator completes a generation as soon
/// as the leader's SyncGroup carries every assignment, and then answers a follower's SyncGroup
/// that arrives later with INVALID_REQUEST (a real coordinator hands the follower its stored
/// assignment). A leader that takes a moment to assign lets followers sync first, as they do with
/// librdkafka's own consumers.
struct SlowLeader(RangeAssignor);

impl Assignor for SlowLeader {
    fn assign(&self, protocol: &str, members: &[(String, Bytes)]) -> Vec<(String, Bytes)> {
        std::thread::sleep(Duration::from_millis(500));
        self.0.assign(protocol, members)
    }
}

fn owned(m: &GroupMember) -> BTreeSet<(String, i32)> {
    ConsumerAssignment::decode(m.assignment())
        .expect("decode assignment")
        .topic_partitions()
        .into_iter()
        .collect()
}

fn all(topic: &str, n: i32) -> BTreeSet<(String, i32)> {
    (0..n).map(|p| (topic.to_string(), p)).collect()
}

async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, f)
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish within {WAIT:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_members_split_partitions_and_the_survivor_takes_all_after_a_leave() {
    strait_tests::init_tracing();
    let mock = MockKafka::start(3);
    let topic = strait_tests::unique("grp-topic");
    let group = strait_tests::unique("grp");
    mock.create_topic(&topic, 6);
    let assignor: Arc<dyn Assignor> =
        Arc::new(SlowLeader(RangeAssignor::new([(topic.clone(), 6)])));

    let mut a = within(
        "first join",
        GroupMember::join(
            cluster(&mock).await,
            config(&group, &topic),
            assignor.clone(),
        ),
    )
    .await
    .expect("first member joins");
    assert!(a.is_leader(), "the only member leads");
    assert_eq!(a.protocol(), RangeAssignor::NAME);
    assert_eq!(
        owned(&a),
        all(&topic, 6),
        "alone, the first member owns everything"
    );
    let first_generation = a.generation();

    // The second member's JoinGroup completes only once the first rejoins, which it does when
    // its heartbeat reports the rebalance. The second member runs on a task of its own, as it
    // would in another process.
    let c2 = cluster(&mock).await;
    let joining = tokio::spawn(GroupMember::join(
        c2,
        config(&group, &topic),
        assignor.clone(),
    ));
    within("first member's rejoin", async {
        a.rebalance_needed().await;
        assert!(a.rebalance_reason().is_some());
        a.rejoin().await
    })
    .await
    .expect("first member rejoins");
    let mut b = within("second join", joining)
        .await
        .expect("join task")
        .expect("second member joins");

    assert_eq!(
        a.generation(),
        b.generation(),
        "both in the same generation"
    );
    assert!(a.generation() > first_generation);
    assert_ne!(a.member_id(), b.member_id());
    assert_eq!(
        [a.is_leader(), b.is_leader()]
            .iter()
            .filter(|l| **l)
            .count(),
        1,
        "exactly one leader"
    );
    let (pa, pb) = (owned(&a), owned(&b));
    assert_eq!(
        (pa.len(), pb.len()),
        (3, 3),
        "range split of 6 over 2: {pa:?} {pb:?}"
    );
    assert!(pa.is_disjoint(&pb), "{pa:?} {pb:?}");
    assert_eq!(
        pa.union(&pb).cloned().collect::<BTreeSet<_>>(),
        all(&topic, 6)
    );

    let before_leave = b.generation();
    within("leave", a.leave())
        .await
        .expect("first member leaves");
    within("rebalance after leave", b.rebalance_needed()).await;
    within("rejoin after leave", b.rejoin())
        .await
        .expect("survivor rejoins");
    assert!(b.generation() > before_leave);
    assert!(b.is_leader());
    assert_eq!(
        owned(&b),
        all(&topic, 6),
        "the survivor takes every partition"
    );
    within("final leave", b.leave()).await.expect("leave");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retriable_find_coordinator_errors_are_retried() {
    strait_tests::init_tracing();
    let mock = MockKafka::start(3);
    let topic = strait_tests::unique("fc-topic");
    let group = strait_tests::unique("fc-grp");
    mock.create_topic(&topic, 6);
    let c = cluster(&mock).await;

    mock.cluster().request_errors(
        RDKafkaApiKey::FindCoordinator,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE; 3],
    );
    // The injection is live: one unretried lookup sees the first error. (The mock writes a null
    // host into its error answers, which the schema forbids, so the client cannot read the code
    // and reports a retriable metadata error instead.)
    let err = c
        .coordinator(CoordinatorType::Group, &group)
        .await
        .expect_err("the injected error reaches a single FindCoordinator");
    assert!(err.is_retriable() && err.needs_metadata_refresh(), "{err}");
    assert!(
        err.response_error() == Some(ResponseError::CoordinatorNotAvailable)
            || err.to_string().contains("FindCoordinator"),
        "{err}"
    );
    // ...and the join retries through the remaining two.
    let started = std::time::Instant::now();
    let m = within(
        "join through FindCoordinator errors",
        GroupMember::join(
            c,
            config(&group, &topic),
            Arc::new(RangeAssignor::new([(topic.clone(), 6)])),
        ),
    )
    .await
    .expect("join succeeds after retrying FindCoordinator");
    assert!(
        started.elapsed() >= Duration::from_millis(50),
        "backed off between attempts"
    );
    assert_eq!(owned(&m), all(&topic, 6));
    m.leave().await.expect("leave");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coordinator_move_triggers_a_rejoin() {
    strait_tests::init_tracing();
    let mock = MockKafka::start(3);
    let topic = strait_tests::unique("mv-topic");
    let group = strait_tests::unique("mv-grp");
    mock.create_topic(&topic, 4);
    let c = cluster(&mock).await;
    let mut m = within(
        "join",
        GroupMember::join(
            c.clone(),
            config(&group, &topic),
            Arc::new(RangeAssignor::new([(topic.clone(), 4)])),
        ),
    )
    .await
    .expect("join");
    let old = c
        .coordinator(CoordinatorType::Group, &group)
        .await
        .expect("coordinator")
        .id;
    let new = if old == 1 { 2 } else { 1 };
    mock.cluster()
        .coordinator(MockCoordinator::Group(group.clone()), new)
        .expect("move coordinator");
    within("rebalance after coordinator move", m.rebalance_needed()).await;
    let reason = m.rebalance_reason().expect("reason");
    assert!(reason.contains("NotCoordinator"), "{reason}");
    within("rejoin at the new coordinator", m.rejoin())
        .await
        .expect("rejoin");
    assert_eq!(
        c.coordinator(CoordinatorType::Group, &group)
            .await
            .expect("coordinator")
            .id,
        new
    );
    assert_eq!(owned(&m), all(&topic, 4));
    m.leave().await.expect("leave");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn member_commits_are_read_back_by_the_admin_api() {
    strait_tests::init_tracing();
    let mock = MockKafka::start(2);
    let topic = strait_tests::unique("oc-topic");
    let group = strait_tests::unique("oc-grp");
    mock.create_topic(&topic, 3);
    let c = cluster(&mock).await;
    let m = within(
        "join",
        GroupMember::join(
            c.clone(),
            config(&group, &topic),
            Arc::new(RangeAssignor::new([(topic.clone(), 3)])),
        ),
    )
    .await
    .expect("join");
    let offsets: Vec<CommittedOffset> = (0..3)
        .map(|p| CommittedOffset {
            topic: topic.clone(),
            partition: p,
            offset: 10 * i64::from(p) + 5,
            leader_epoch: -1,
            metadata: Some(format!("md-{p}")),
        })
        .collect();
    m.commit_offsets(&offsets).await.expect("member commit");
    let admin = Admin::new(c);
    // Named partitions only: the mock echoes a null topic list back for "all partitions".
    let asked: Vec<(String, i32)> = (0..4).map(|p| (topic.clone(), p)).collect();
    let got = admin
        .fetch_offsets(&group, Some(&asked))
        .await
        .expect("fetch");
    assert_eq!(
        got.iter()
            .map(|o| (o.partition, o.offset))
            .collect::<Vec<_>>(),
        vec![(0, 5), (1, 15), (2, 25)],
        "partition 3 does not exist and nothing is committed there: left out"
    );
    assert_eq!(got[1].metadata.as_deref(), Some("md-1"));
    let one = admin
        .fetch_offsets(&group, Some(&[(topic.clone(), 2)]))
        .await
        .expect("fetch one");
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].offset, 25);

    // An admin-style commit (generation -1) is refused while the group has a live member.
    let refused = admin
        .commit_offsets(&group, &offsets[..1])
        .await
        .expect_err("admin commit into an active group");
    assert!(
        matches!(
            refused.response_error(),
            Some(ResponseError::UnknownMemberId | ResponseError::IllegalGeneration)
        ),
        "{refused}"
    );
    m.leave().await.expect("leave");
}

async fn a_member_joins_a_real_broker_and_the_admin_api_sees_it(kind: strait_tests::BrokerKind) {
    strait_tests::init_tracing();
    let b = strait_tests::start_one(kind, "group-real");
    let topic = strait_tests::unique("tg-topic");
    let group = strait_tests::unique("tg-grp");
    let bs = b.bootstrap();
    strait_tests::reference::blocking(|| strait_tests::reference::create_topic(&bs, &topic, 4));
    let c = Cluster::connect(ClientConfig::new(&bs))
        .await
        .expect("connect");
    // A real coordinator (KIP-394) answers the first JoinGroup with MEMBER_ID_REQUIRED.
    let m = within(
        "join on a real broker",
        GroupMember::join(
            c.clone(),
            config(&group, &topic),
            Arc::new(RangeAssignor::new([(topic.clone(), 4)])),
        ),
    )
    .await
    .expect("join");
    assert!(m.is_leader());
    assert!(!m.member_id().is_empty());
    assert_eq!(owned(&m), all(&topic, 4));
    let admin = Admin::new(c.clone());
    let described = admin
        .describe_groups(std::slice::from_ref(&group))
        .await
        .expect("describe");
    let d = &described[0];
    assert_eq!(
        (d.state.as_str(), d.protocol_type.as_str()),
        ("Stable", CONSUMER_PROTOCOL_TYPE)
    );
    assert_eq!(
        d.members
            .iter()
            .map(|x| x.member_id.as_str())
            .collect::<Vec<_>>(),
        vec![m.member_id()]
    );
    let listed = admin.list_groups().await.expect("list groups");
    if !listed.iter().any(|g| g.group_id == group) {
        strait_tests::record_skip(
            module_path!(),
            &format!(
                "tansu 0.6 ListGroups does not list the group {group} while it has a member \
                 (it answered {} groups)",
                listed.len()
            ),
        );
    }
    // Heartbeats keep the member in past a whole session timeout, and nothing asks for a rejoin.
    assert!(
        tokio::time::timeout(
            config(&group, &topic).session_timeout + Duration::from_secs(1),
            m.rebalance_needed()
        )
        .await
        .is_err(),
        "no rebalance without a reason: {:?}",
        m.rebalance_reason()
    );
    let still = admin
        .describe_groups(std::slice::from_ref(&group))
        .await
        .expect("describe again");
    assert_eq!(
        still[0]
            .members
            .iter()
            .map(|x| x.member_id.as_str())
            .collect::<Vec<_>>(),
        vec![m.member_id()],
        "the member outlived its session timeout: {still:?}"
    );
    m.leave().await.expect("leave");
}

strait_tests::on_both_brokers!(a_member_joins_a_real_broker_and_the_admin_api_sees_it);

/// Strait's own group protocol (`replicator::scale`) on Apache Kafka's group coordinator: a
/// second member makes the first revoke its surplus in one generation and receive it in the
/// next (cooperative: the first never stops what it keeps), and a member that dies (no leave,
/// no heartbeats) has its units handed to the survivor after the session timeout, marked to be
/// fenced, with the dead member's slot in the fence set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strait_members_hand_over_cooperatively_and_fence_a_dead_members_slot() {
    use replicator::scale::assign::{MemberAssignment, Unit};
    use replicator::scale::member::{claim_after, StraitAssignor, UnitsView};
    use replicator::scale::wire::{
        decode_assignment, encode_claim, Claim, PROTOCOL, PROTOCOL_TYPE,
    };
    use std::collections::BTreeMap;

    strait_tests::init_tracing();
    let b = strait_tests::start_one(strait_tests::BrokerKind::Kafka, "group-strait");
    let c = Cluster::connect(ClientConfig::new(&b.bootstrap()))
        .await
        .expect("connect");
    let mut units: BTreeMap<Unit, u64> = (0..12)
        .map(|p| {
            (
                Unit::Partition {
                    flow: "A->B".into(),
                    topic: "orders".into(),
                    partition: p,
                },
                1,
            )
        })
        .collect();
    units.insert(
        Unit::FlowLeader {
            flow: "A->B".into(),
        },
        1,
    );
    let view = UnitsView::default();
    view.set(units.clone());
    let group = strait_tests::unique("strait-grp");
    let fresh = |who: &str| {
        let mut c = Claim::default();
        c.claim.generation = -1;
        c.process = who.into();
        vec![(PROTOCOL.to_string(), Bytes::from(encode_claim(&c)))]
    };
    let config = |who: &str| GroupConfig {
        group_id: group.clone(),
        protocol_type: PROTOCOL_TYPE.to_string(),
        protocols: fresh(who),
        session_timeout: Duration::from_secs(6),
        rebalance_timeout: Duration::from_secs(10),
        heartbeat_interval: Duration::from_millis(500),
        group_instance_id: None,
    };
    let assignment = |m: &GroupMember| -> MemberAssignment {
        decode_assignment(m.assignment()).expect("assignment").0
    };
    // Announce what the member runs now and join the next generation.
    async fn rejoin(m: &mut GroupMember, a: &MemberAssignment, owned: BTreeSet<Unit>) {
        let claim = claim_after(m.generation(), a, owned, &BTreeMap::new(), "test");
        m.set_protocols(vec![(
            PROTOCOL.to_string(),
            Bytes::from(encode_claim(&claim)),
        )])
        .expect("protocols");
        within("rejoin", m.rejoin()).await.expect("rejoin");
    }
    let assignor = Arc::new(StraitAssignor::new(view.clone()));
    let mut m1 = within(
        "first join",
        GroupMember::join(c.clone(), config("m1"), assignor.clone()),
    )
    .await
    .expect("join");
    let a1 = assignment(&m1);
    assert_eq!(a1.units.len(), 13, "the only member runs everything");
    assert_eq!(
        a1.fenced_units, a1.units,
        "nothing was owned: all resumed after fencing"
    );

    // A second member: its join completes only when the first rejoins.
    let (c2, cfg2, asg2) = (c.clone(), config("m2"), assignor.clone());
    let join2 = tokio::spawn(async move { GroupMember::join(c2, cfg2, asg2).await });
    within("rebalance noticed", m1.rebalance_needed()).await;
    rejoin(&mut m1, &a1, a1.units.clone()).await;
    let mut m2 = within("second join", join2).await.unwrap().expect("join");
    let (g2a, g2b) = (assignment(&m1), assignment(&m2));
    assert!(
        g2b.units.is_empty(),
        "nothing moves in the revoking generation: {g2b:?}"
    );
    assert!(g2a.units.is_subset(&a1.units));
    let revoked: BTreeSet<Unit> = a1.units.difference(&g2a.units).cloned().collect();
    assert_eq!(revoked.len(), 6, "13 units over 2 members: 6 move");
    assert_ne!(g2a.slot, g2b.slot);

    // The first member released them (drained, committed) and rejoins; the second follows.
    let rejoin1 = async {
        rejoin(&mut m1, &g2a, g2a.units.clone()).await;
    };
    let rejoin2 = async {
        within("m2 told to rejoin", m2.rebalance_needed()).await;
        rejoin(&mut m2, &g2b, BTreeSet::new()).await;
    };
    tokio::join!(rejoin1, rejoin2);
    let (g3a, g3b) = (assignment(&m1), assignment(&m2));
    assert_eq!(g3a.units, g2a.units, "the first member kept what it kept");
    assert_eq!(g3b.units, revoked, "the second received what was revoked");
    assert!(
        g3b.fence.is_empty(),
        "both slots are held: nothing to fence"
    );

    // The second member dies: no leave, no heartbeats.
    let dead_slot = g3b.slot;
    drop(m2);
    let t0 = std::time::Instant::now();
    within("the death noticed", m1.rebalance_needed()).await;
    rejoin(&mut m1, &g3a, g3a.units.clone()).await;
    let g4 = assignment(&m1);
    eprintln!(
        "took over a dead member's units {:?} after its death",
        t0.elapsed()
    );
    assert_eq!(g4.units.len(), 13, "the survivor runs everything");
    assert_eq!(
        g4.fenced_units, revoked,
        "the dead member's units, after fencing"
    );
    assert!(g4.fence.contains(&dead_slot), "its slot is fenced: {g4:?}");
    m1.leave().await.expect("leave");
}
