//! The lock protocol against [`FakeNlb`] (AWS's CreateTargetGroup rules: idempotent for
//! identical settings, `DuplicateTargetGroupName` otherwise): races, a hash-colliding holder,
//! compare-and-delete, `failed`, legacy lock listeners. Virtual time: each test runs in
//! milliseconds.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use tokio::sync::watch;

use super::*;
use crate::config::Config;
use crate::fakes::FakeNlb;
use crate::kafka::{ClusterSnapshot, KafkaError, Liveness};
use crate::nlb::MAX_LISTENERS_PER_NLB;
use crate::restart::{Restarter, ServiceManager};

pub(in crate::restart) const CLUSTER: &str = "orders";

/// Kafka and the service are never touched by the lock protocol.
pub(in crate::restart) struct Untouched;

impl KafkaCluster for Untouched {
    async fn probe(&self) -> Liveness {
        unreachable!("the lock protocol does not talk to Kafka")
    }
    async fn snapshot(&self) -> Result<ClusterSnapshot, KafkaError> {
        unreachable!()
    }
    async fn advertised_listeners(&self, _: i32) -> Result<Option<String>, KafkaError> {
        unreachable!()
    }
    async fn set_advertised_listeners(&self, _: i32, _: &str) -> Result<(), KafkaError> {
        unreachable!()
    }
    async fn clear_dynamic_advertised_listeners(&self, _: i32) -> Result<bool, KafkaError> {
        unreachable!()
    }
}

impl ServiceManager for Untouched {
    async fn restart(&self) -> Result<(), RestartError> {
        unreachable!()
    }
}

pub(in crate::restart) struct World {
    pub(in crate::restart) nlb: FakeNlb,
    pub(in crate::restart) lb_arn: String,
    pub(in crate::restart) config: Config,
    held: watch::Sender<bool>,
    /// The agents' state directory (their lock notes).
    _state: tempfile::TempDir,
}

pub(in crate::restart) fn world() -> World {
    let nlb = FakeNlb::default();
    let lb_arn = nlb.with(|s| s.add_load_balancer("kafka", &["us-east-1a"]));
    let state = tempfile::tempdir().unwrap();
    let text = format!(
        "cluster = \"{CLUSTER}\"\n[listener]\nadvertised_host = \"h\"\n[nlb]\nload_balancer_arn = \"{lb_arn}\"\n\
         [restart]\nlease = \"30s\"\ncheck_interval = \"1s\"\ntimeout = \"20s\"\n\
         [daemon]\nstate_dir = \"{}\"\n",
        state.path().display()
    );
    let config = Config::parse(&text, Path::new("/test/agent.toml")).unwrap();
    World {
        nlb,
        lb_arn,
        config,
        held: watch::Sender::new(false),
        _state: state,
    }
}

impl World {
    pub(in crate::restart) fn agent<'a>(
        &'a self,
        nlb: &'a FakeNlb,
        holder: &str,
    ) -> Restarter<'a, FakeNlb, Untouched, Untouched> {
        Restarter {
            lb: nlb,
            kafka: &Untouched,
            service: &Untouched,
            config: &self.config,
            broker_id: holder.split('/').next().unwrap().parse().unwrap(),
            role: NodeRole::KraftBroker,
            rack: None,
            holder: holder.to_string(),
            vpc_id: "vpc-1".to_string(),
            nlb_targets: None,
            bound: Vec::new(),
            legacy_lock: None,
            lock_held: &self.held,
        }
    }

    /// The lock groups on the fake: (ARN, tags).
    fn lock_groups(&self) -> Vec<(String, BTreeMap<String, String>)> {
        let name = registry::lock_group_name(CLUSTER);
        self.nlb.with(|s| {
            s.groups
                .iter()
                .filter(|(_, g)| g.name == name)
                .map(|(arn, g)| (arn.clone(), g.tags.clone()))
                .collect()
        })
    }

    fn listener_count(&self) -> usize {
        self.nlb.with(|s| s.listeners.len())
    }

    /// A lock group as `holder` would create it, with the given lease; its ARN.
    fn put_group_lock(&self, holder: &str, expires: u64, phase: &str) -> String {
        let (port, health_check_port) = holder_ports(holder);
        let spec = ExactGroupSpec {
            name: registry::lock_group_name(CLUSTER),
            vpc_id: "vpc-1".to_string(),
            port,
            health_check_port,
            tags: lease(CLUSTER, holder, expires, phase),
        };
        match self.nlb.with(|s| s.create_exact(&spec)) {
            GroupCreate::Created(arn) => arn,
            GroupCreate::NameTaken => panic!("lock group exists"),
        }
    }

    /// A lock listener as release 0.1 left it on port 9999 (forwarding to some group).
    fn put_legacy_lock(&self, cluster: &str, holder: &str, expires: u64, phase: &str) -> String {
        let tg = self
            .nlb
            .with(|s| s.add_group("kp-orders-boot", "traffic-port", &[]));
        let tags = lease(cluster, holder, expires, phase);
        let tags: Vec<(&str, &str)> = tags.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        self.nlb
            .with(|s| s.add_listener(&self.lb_arn, 9999, &tg, &tags))
    }
}

fn lease(cluster: &str, holder: &str, expires: u64, phase: &str) -> Vec<(String, String)> {
    [
        (registry::TAG_CLUSTER, cluster),
        (TAG_LOCK_HOLDER, holder),
        (TAG_LOCK_EXPIRES, &expires.to_string()),
        (TAG_LOCK_PHASE, phase),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

fn soon() -> Instant {
    Instant::now() + Duration::from_secs(5)
}

#[tokio::test(start_paused = true)]
async fn two_agents_racing_exactly_one_holds() {
    let w = world();
    let (nlb_a, nlb_b) = (w.nlb.clone(), w.nlb.another_host());
    let a = w.agent(&nlb_a, "1/i-a");
    // Both saw no lock; B's CreateTargetGroup lands right before A's.
    let b_spec = {
        let b = w.agent(&nlb_b, "2/i-b");
        let (port, health_check_port) = holder_ports(&b.holder);
        ExactGroupSpec {
            name: registry::lock_group_name(CLUSTER),
            vpc_id: b.vpc_id.clone(),
            port,
            health_check_port,
            tags: b.lease_tags(&LockPhase::Gating),
        }
    };
    w.nlb.before_next_create_target_group(move |s| {
        assert!(matches!(s.create_exact(&b_spec), GroupCreate::Created(_)));
    });
    match a.acquire(soon()).await {
        Err(RestartError::LockBusy { holder, phase, .. }) => {
            assert_eq!((holder.as_str(), phase), ("2/i-b", LockPhase::Gating));
        }
        other => panic!("A must not hold the lock: {other:?}"),
    }
    let groups = w.lock_groups();
    assert_eq!(groups.len(), 1, "{groups:?}");
    assert_eq!(groups[0].1[TAG_LOCK_HOLDER], "2/i-b");
    // A's CreateTargetGroup was answered DuplicateTargetGroupName, not with B's group.
    assert_eq!(nlb_a.calls.snapshot().get("CreateTargetGroup"), Some(&1));
    // B holds it: its own create (same settings) gives its group back.
    let b = w.agent(&nlb_b, "2/i-b");
    let lock = b.acquire(soon()).await.unwrap();
    assert_eq!(lock.arn, groups[0].0);
    assert_eq!(w.listener_count(), 0, "the lock takes no listener");
}

#[tokio::test(start_paused = true)]
async fn many_agents_acquire_one_at_a_time() {
    let w = world();
    let hosts: Vec<FakeNlb> = (0..6).map(|_| w.nlb.another_host()).collect();
    let mut holders = Vec::new();
    for round in 0..6 {
        let agents: Vec<_> = hosts
            .iter()
            .enumerate()
            .filter(|(i, _)| !holders.contains(i))
            .map(|(i, nlb)| (i, w.agent(nlb, &format!("{i}/i-{i}"))))
            .collect();
        let mut winners = Vec::new();
        for (i, agent) in &agents {
            if let Ok(Some(_)) = agent.try_create().await {
                winners.push(*i);
            }
        }
        assert_eq!(winners.len(), 1, "round {round}: {winners:?}");
        let (arn, tags) = w.lock_groups().pop().unwrap();
        assert_eq!(
            tags[TAG_LOCK_HOLDER],
            format!("{}/i-{}", winners[0], winners[0])
        );
        w.agent(&hosts[winners[0]], &tags[TAG_LOCK_HOLDER])
            .release(&LockState::from_tags(&arn, &tags))
            .await
            .unwrap();
        holders.push(winners[0]);
    }
}

/// Two holder strings whose lock group settings are the same (a birthday search: ~2^16 tries).
fn colliding_holders() -> (String, String) {
    let mut seen: HashMap<(u16, u16), String> = HashMap::new();
    for i in 0u32.. {
        let holder = format!("{}/i-{i:08x}", i % 1000);
        if let Some(other) = seen.insert(holder_ports(&holder), holder.clone()) {
            return (other, holder);
        }
    }
    unreachable!()
}

#[tokio::test(start_paused = true)]
async fn a_hash_colliding_holder_still_cannot_acquire() {
    let (first, second) = colliding_holders();
    assert_ne!(first, second);
    assert_eq!(holder_ports(&first), holder_ports(&second));
    let w = world();
    let (nlb_a, nlb_b) = (w.nlb.clone(), w.nlb.another_host());
    let a = w.agent(&nlb_a, &first);
    let held = a.acquire(soon()).await.unwrap();
    let before = w.lock_groups();
    // The colliding holder's CreateTargetGroup succeeds (identical settings: AWS returns the
    // existing group, tags untouched) ...
    let b = w.agent(&nlb_b, &second);
    let (port, health_check_port) = holder_ports(&second);
    let spec = ExactGroupSpec {
        name: registry::lock_group_name(CLUSTER),
        vpc_id: "vpc-1".into(),
        port,
        health_check_port,
        tags: b.lease_tags(&LockPhase::Gating),
    };
    assert_eq!(
        nlb_b.create_exact_target_group(&spec).await.unwrap(),
        GroupCreate::Created(held.arn.clone())
    );
    // ... but the holder tag turns it away, and nothing about A's lock changed.
    assert_eq!(b.try_create().await.unwrap(), None);
    assert_eq!(w.lock_groups(), before);
    assert_eq!(before[0].1[TAG_LOCK_HOLDER], first);
    // Breaking in via the timeout path does not work either: it waits.
    let waited = b.acquire(Instant::now() + Duration::from_secs(3)).await;
    assert!(
        matches!(waited, Err(RestartError::LockBusy { .. })),
        "{waited:?}"
    );
    assert_eq!(w.lock_groups()[0].1[TAG_LOCK_HOLDER], first);
}

#[tokio::test(start_paused = true)]
async fn breaking_an_expired_lease_by_arn_spares_a_newer_lock() {
    let w = world();
    let old = w.put_group_lock("7/i-dead", 1, "gating");
    let a = w.agent(&w.nlb, "1/i-a");
    let seen = a.read_lock().await.unwrap().unwrap();
    assert_eq!(
        (seen.arn.as_str(), seen.kind),
        (old.as_str(), LockKind::Group)
    );
    assert_eq!(
        lock_action(Some(&seen), &a.holder, unix_now()),
        LockAction::Break
    );
    // Before A deletes it, another agent broke it and took a new lock under the same name.
    w.nlb.with(|s| s.groups.remove(&old));
    let newer = w.put_group_lock("2/i-b", unix_now() + 30, "gating");
    assert_ne!(newer, old);
    a.delete_lock(&seen).await.unwrap();
    let groups = w.lock_groups();
    assert_eq!(groups.len(), 1);
    assert_eq!(
        (groups[0].0.as_str(), groups[0].1[TAG_LOCK_HOLDER].as_str()),
        (newer.as_str(), "2/i-b")
    );
    // And the renewal of a holder whose lock was broken finds it lost (by ARN), not the newer one.
    let dead = w.agent(&w.nlb, "7/i-dead");
    let lost = dead.renew(&seen, LockPhase::Verifying, "verifying").await;
    assert!(
        matches!(&lost, Err(RestartError::LockLost { lock, .. }) if lock.starts_with("target group kp-orders-")),
        "{lost:?}"
    );
    assert_eq!(w.lock_groups()[0].1[TAG_LOCK_HOLDER], "2/i-b");
}

#[tokio::test(start_paused = true)]
async fn an_expired_lock_is_broken_and_taken() {
    let w = world();
    w.put_group_lock("7/i-dead", 1, "restarting");
    let a = w.agent(&w.nlb, "1/i-a");
    let lock = a.acquire(soon()).await.unwrap();
    assert_eq!(lock.holder, "1/i-a");
    let groups = w.lock_groups();
    assert_eq!(groups.len(), 1);
    assert_eq!(groups[0].1[TAG_LOCK_HOLDER], "1/i-a");
    assert!(*w.held.borrow());
    a.release(&lock).await.unwrap();
    assert!(w.lock_groups().is_empty());
    assert!(!*w.held.borrow());
}

#[tokio::test(start_paused = true)]
async fn failed_never_expires() {
    let w = world();
    let stuck = w.put_group_lock("7/i-stuck", 1, "failed");
    let legacy = world();
    legacy.put_legacy_lock(CLUSTER, "7/i-stuck", 1, "failed");
    for (w, arn_kind) in [(&w, LockKind::Group), (&legacy, LockKind::LegacyListener)] {
        let a = w.agent(&w.nlb, "1/i-a");
        match a.acquire(Instant::now() + Duration::from_secs(60)).await {
            Err(RestartError::LockBusy { holder, phase, .. }) => {
                assert_eq!((holder.as_str(), phase), ("7/i-stuck", LockPhase::Failed));
            }
            other => panic!("{arn_kind:?}: {other:?}"),
        }
        let lock = a.read_lock().await.unwrap().unwrap();
        assert_eq!((lock.holder.as_str(), lock.kind), ("7/i-stuck", arn_kind));
        // Its waiting tag is gone again.
        assert!(lock.waiting.is_empty(), "{:?}", lock.waiting);
    }
    assert_eq!(w.lock_groups()[0].0, stuck);
}

#[tokio::test(start_paused = true)]
async fn a_legacy_lock_listener_is_honoured_and_never_created() {
    let w = world();
    let listener = w.put_legacy_lock(CLUSTER, "2/i-old", unix_now() + 30, "restarting");
    let a = w.agent(&w.nlb, "1/i-a");
    let busy = a.acquire(Instant::now() + Duration::from_secs(10)).await;
    assert!(
        matches!(&busy, Err(RestartError::LockBusy { holder, .. }) if holder == "2/i-old"),
        "{busy:?}"
    );
    assert!(
        w.lock_groups().is_empty(),
        "no group while a legacy lock is held"
    );
    assert_eq!(w.listener_count(), 1);
    // Its holder, upgraded mid-restart, finds it (the pass saw it) and releases it.
    let mut holder = w.agent(&w.nlb, "2/i-old");
    holder.legacy_lock = Some(listener.clone());
    let own = holder.own_lock().await.unwrap().unwrap();
    assert_eq!(
        (own.arn.as_str(), own.kind),
        (listener.as_str(), LockKind::LegacyListener)
    );
    holder.release(&own).await.unwrap();
    assert_eq!(w.listener_count(), 0);
    // From then on the lock is the group; no listener is ever created for it.
    let lock = a.acquire(soon()).await.unwrap();
    assert_eq!(lock.kind, LockKind::Group);
    assert_eq!(w.listener_count(), 0);
}

#[tokio::test(start_paused = true)]
async fn another_clusters_legacy_lock_listener_is_not_this_clusters_lock() {
    let w = world();
    w.put_legacy_lock("payments", "1/i-pay", unix_now() + 600, "gating");
    let a = w.agent(&w.nlb, "1/i-a");
    let lock = a.acquire(soon()).await.unwrap();
    assert_eq!(
        (lock.kind, lock.holder.as_str()),
        (LockKind::Group, "1/i-a")
    );
    assert_eq!(
        w.listener_count(),
        1,
        "the other cluster's listener is left alone"
    );
}

#[tokio::test(start_paused = true)]
async fn the_lock_counts_against_no_listener_quota() {
    let w = world();
    // An NLB at its 50 listeners: the lock still works.
    let tg = w
        .nlb
        .with(|s| s.add_group("kp-orders-a2cd-boot", "traffic-port", &[]));
    for port in 0..MAX_LISTENERS_PER_NLB as u16 {
        w.nlb
            .with(|s| s.add_listener(&w.lb_arn, 10000 + port, &tg, &[]));
    }
    let a = w.agent(&w.nlb, "1/i-a");
    let lock = a.acquire(soon()).await.unwrap();
    a.renew(&lock, LockPhase::Restarting, "restarting")
        .await
        .unwrap();
    assert_eq!(w.listener_count(), MAX_LISTENERS_PER_NLB);
    let (port, health_check_port) = holder_ports("1/i-a");
    let group = w.nlb.with(|s| s.groups[&lock.arn].clone());
    assert_eq!(
        (group.port, group.health_check_port, group.vpc_id.as_str()),
        (port, health_check_port.to_string(), "vpc-1")
    );
    assert_eq!(group.tags[TAG_LOCK_PHASE], "restarting");
    assert_eq!(group.tags[registry::TAG_CLUSTER], CLUSTER);
}

#[test]
fn holder_ports_are_stable_and_valid() {
    // Pinned: the settings of a lock group an agent created must be the same after its upgrade.
    assert_eq!(
        holder_ports("1/i-0123456789abcdef0"),
        holder_ports("1/i-0123456789abcdef0")
    );
    assert_eq!(holder_ports("3/i-0abc"), (24855, 48631));
    for i in 0..10_000 {
        let (p, h) = holder_ports(&format!("{i}/i-{i}"));
        assert!(p >= 1 && h >= 1);
    }
    assert_ne!(holder_ports("1/i-a"), holder_ports("2/i-b"));
}

/// The rule the lock is built on, as the fake (and the moto launcher, see
/// `tests/support/test_moto_rules.py`) applies it: other settings under the name →
/// `DuplicateTargetGroupName` (`NameTaken`); identical settings → the existing group, its tags
/// unchanged.
#[tokio::test]
async fn create_target_group_is_idempotent_only_for_identical_settings() {
    let w = world();
    let arn = w.put_group_lock("1/i-a", 100, "gating");
    let spec = |holder: &str, vpc: &str| {
        let (port, health_check_port) = holder_ports(holder);
        ExactGroupSpec {
            name: registry::lock_group_name(CLUSTER),
            vpc_id: vpc.to_string(),
            port,
            health_check_port,
            tags: lease(CLUSTER, holder, 999, "failed"),
        }
    };
    let (p, h) = holder_ports("1/i-a");
    for other in [
        ExactGroupSpec {
            port: p % 65535 + 1,
            ..spec("1/i-a", "vpc-1")
        },
        ExactGroupSpec {
            health_check_port: h % 65535 + 1,
            ..spec("1/i-a", "vpc-1")
        },
        spec("1/i-a", "vpc-2"),
        spec("2/i-b", "vpc-1"),
    ] {
        assert_eq!(
            w.nlb.create_exact_target_group(&other).await.unwrap(),
            GroupCreate::NameTaken,
            "{other:?}"
        );
    }
    assert_eq!(
        w.nlb
            .create_exact_target_group(&spec("1/i-a", "vpc-1"))
            .await
            .unwrap(),
        GroupCreate::Created(arn.clone())
    );
    let tags = w.nlb.tags(&arn).await.unwrap().unwrap();
    assert_eq!(
        (
            tags[TAG_LOCK_EXPIRES].as_str(),
            tags[TAG_LOCK_PHASE].as_str()
        ),
        ("100", "gating")
    );
    assert_eq!(w.lock_groups().len(), 1);
}

/// The local note: a check of Kafka looks the lock up on AWS only when this host may hold it
/// (it took the lock and has not released it, e.g. it crashed mid-restart).
#[tokio::test(start_paused = true)]
async fn the_lock_is_looked_up_only_when_this_host_noted_it() {
    let w = world();
    let nlb = w.nlb.another_host();
    let a = w.agent(&nlb, "1/i-a");
    // Never took it: no AWS call.
    assert!(a.own_lock().await.unwrap().is_none());
    assert_eq!(nlb.calls.total(), 0);
    let lock = a.acquire(soon()).await.unwrap();
    // "Crash": a new process of the same holder finds its lock through the note.
    let again = w.agent(&nlb, "1/i-a");
    let before = nlb.calls.total();
    assert_eq!(
        again.own_lock().await.unwrap().map(|l| l.arn),
        Some(lock.arn.clone())
    );
    assert!(nlb.calls.total() > before);
    // Released: the note is gone, and so is the lookup.
    again.release(&lock).await.unwrap();
    let before = nlb.calls.total();
    assert!(again.own_lock().await.unwrap().is_none());
    assert_eq!(nlb.calls.total(), before);
    // A lock broken by someone else: the stale note is dropped at the next look.
    let lock = a.acquire(soon()).await.unwrap();
    nlb.with(|s| s.groups.remove(&lock.arn));
    assert!(a.own_lock().await.unwrap().is_none());
    let before = nlb.calls.total();
    assert!(a.own_lock().await.unwrap().is_none());
    assert_eq!(nlb.calls.total(), before, "stale note dropped");
}

/// A host resuming after a crash (its lock note set: it may have held the lock) finds another
/// host's lock, in its restarting phase: it is not taken for its own (nothing is verified or
/// released for it), the lock stays that host's, and this host waits for it.
#[tokio::test(start_paused = true)]
async fn a_host_resuming_after_a_crash_waits_when_another_host_holds_the_lock() {
    let w = world();
    let nlb = w.nlb.another_host();
    let arn = w.put_group_lock("2/i-b", unix_now() + 600, "restarting");
    let a = w.agent(&nlb, "1/i-a");
    a.marker().set();
    assert!(a.own_lock().await.unwrap().is_none());
    let err = a.acquire(soon()).await.unwrap_err();
    assert!(
        matches!(&err, RestartError::LockBusy { holder, .. } if holder == "2/i-b"),
        "{err}"
    );
    let groups = w.lock_groups();
    assert_eq!(groups.len(), 1, "{groups:?}");
    assert_eq!(groups[0].0, arn);
    assert_eq!(groups[0].1[TAG_LOCK_HOLDER], "2/i-b");
    assert_eq!(groups[0].1[TAG_LOCK_PHASE], "restarting");
}

/// A lock group whose create left no tags visible yet (or made by hand), its ARN.
fn put_untagged_lock(w: &World) -> String {
    let (port, health_check_port) = holder_ports("9/i-other");
    let spec = ExactGroupSpec {
        name: registry::lock_group_name(CLUSTER),
        vpc_id: "vpc-1".to_string(),
        port,
        health_check_port,
        tags: Vec::new(),
    };
    match w.nlb.with(|s| s.create_exact(&spec)) {
        GroupCreate::Created(arn) => arn,
        GroupCreate::NameTaken => panic!("lock group exists"),
    }
}

/// Only a group with neither a holder nor an expiry is "untagged" (tags lagging behind the
/// create); one with either tag is a lease to honour or break by its expiry.
#[test]
fn untagged_means_neither_holder_nor_expiry() {
    let tags = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let state = |pairs: &[(&str, &str)]| LockState::from_tags("arn:tg", &tags(pairs));
    assert!(state(&[]).untagged());
    assert!(state(&[(registry::TAG_CLUSTER, CLUSTER)]).untagged());
    assert!(!state(&[(TAG_LOCK_HOLDER, "2/i-b")]).untagged());
    assert!(!state(&[(TAG_LOCK_EXPIRES, "1700000000")]).untagged());
    let mut legacy = state(&[]);
    legacy.kind = LockKind::LegacyListener;
    assert!(!legacy.untagged(), "a legacy listener is never settling");
}

/// An untagged lock group is waited for, not broken, while it is younger than a lease (its
/// creator's tags may still be on their way); the waiter gives up at its deadline.
#[tokio::test(start_paused = true)]
async fn an_untagged_lock_is_waited_for_within_a_lease() {
    let w = world();
    let arn = put_untagged_lock(&w);
    let a = w.agent(&w.nlb, "1/i-a");
    // The deadline (20 s) comes before a whole lease (30 s) has passed.
    let err = a
        .acquire(Instant::now() + Duration::from_secs(20))
        .await
        .unwrap_err();
    assert!(matches!(err, RestartError::LockBusy { .. }), "{err}");
    let groups = w.lock_groups();
    assert_eq!(groups.len(), 1, "{groups:?}");
    assert_eq!(groups[0].0, arn, "not broken");
    assert!(!*w.held.borrow());
}

/// ... and broken once it stayed untagged for a whole lease; then taken.
#[tokio::test(start_paused = true)]
async fn an_untagged_lock_is_broken_after_a_whole_lease() {
    let w = world();
    let arn = put_untagged_lock(&w);
    let a = w.agent(&w.nlb, "1/i-a");
    let lock = a
        .acquire(Instant::now() + Duration::from_secs(120))
        .await
        .unwrap();
    assert_ne!(lock.arn, arn);
    let groups = w.lock_groups();
    assert_eq!(groups.len(), 1, "{groups:?}");
    assert_eq!(groups[0].1[TAG_LOCK_HOLDER], "1/i-a");
}

/// A check of Kafka never lists listeners to find its own lock: the pass already did and tells
/// it about a legacy lock listener it saw (an AWS read saved per check, fleet-wide).
#[tokio::test(start_paused = true)]
async fn own_lock_never_lists_listeners() {
    let w = world();
    w.put_legacy_lock(CLUSTER, "1/i-a", unix_now() + 600, "restarting");
    let nlb = w.nlb.another_host();
    let a = w.agent(&nlb, "1/i-a");
    a.marker().set();
    assert!(a.own_lock().await.unwrap().is_none());
    assert_eq!(nlb.calls.snapshot().get("DescribeListeners"), None);
}

/// Renewing checks the holder tag first: a lock that now names another holder is lost, and
/// its tags are left as they are (never overwritten with this holder's lease).
#[tokio::test(start_paused = true)]
async fn renewing_a_lock_that_names_another_holder_fails_and_leaves_it() {
    let w = world();
    let a = w.agent(&w.nlb, "1/i-a");
    let lock = a.acquire(soon()).await.unwrap();
    w.nlb.with(|s| {
        s.tags_of(&lock.arn)
            .unwrap()
            .insert(TAG_LOCK_HOLDER.to_string(), "2/i-b".to_string());
    });
    let err = a
        .renew(&lock, LockPhase::Restarting, "restarting")
        .await
        .unwrap_err();
    assert!(matches!(err, RestartError::LockLost { .. }), "{err}");
    assert!(!*w.held.borrow());
    let tags = &w.lock_groups()[0].1;
    assert_eq!(tags[TAG_LOCK_HOLDER], "2/i-b");
    assert_eq!(tags[TAG_LOCK_PHASE], "gating");
}

/// A lock deleted between the holder check and the lease update is lost; any other failure
/// (throttling) is an error to retry, and the lock is still held.
#[tokio::test(start_paused = true)]
async fn a_renewal_failing_is_a_lost_lock_only_when_the_lock_is_gone() {
    let w = world();
    let a = w.agent(&w.nlb, "1/i-a");
    let lock = a.acquire(soon()).await.unwrap();
    w.nlb.fail_next("AddTags", "Throttling");
    let err = a
        .renew(&lock, LockPhase::Restarting, "restarting")
        .await
        .unwrap_err();
    assert!(
        matches!(&err, RestartError::Nlb(e) if e.code == "Throttling"),
        "{err}"
    );
    assert!(*w.held.borrow(), "throttled, not lost");
    w.nlb.fail_next("AddTags", "TargetGroupNotFound");
    let err = a
        .renew(&lock, LockPhase::Restarting, "restarting")
        .await
        .unwrap_err();
    assert!(matches!(err, RestartError::LockLost { .. }), "{err}");
    assert!(!*w.held.borrow());
}

/// The waiting tags on the (one) lock group.
fn waiting_tags(w: &World) -> Vec<String> {
    w.lock_groups()[0]
        .1
        .keys()
        .filter(|k| k.starts_with(TAG_WAITING_PREFIX))
        .cloned()
        .collect()
}

/// A waiter puts its waiting tag on the holder's lock (so the holder yields between restarts)
/// and removes it when it stops waiting.
#[tokio::test(start_paused = true)]
async fn a_waiter_tags_the_lock_and_removes_its_tag_when_done() {
    let w = world();
    w.put_group_lock("2/i-b", unix_now() + 600, "restarting");
    let nlb = w.nlb.another_host();
    let a = w.agent(&nlb, "1/i-a");
    let err = a.acquire(soon()).await.unwrap_err();
    assert!(matches!(err, RestartError::LockBusy { .. }), "{err}");
    assert!(nlb.calls.snapshot().get("AddTags").copied().unwrap_or(0) >= 1);
    assert_eq!(nlb.calls.snapshot().get("RemoveTags"), Some(&1));
    assert!(waiting_tags(&w).is_empty());
}

/// With [`MAX_WAITING_TAGS`] others waiting, a new waiter puts no tag (the lock's 50-tag
/// quota); one already among them refreshes its own.
#[tokio::test(start_paused = true)]
async fn waiting_tags_stop_at_the_quota_but_a_listed_waiter_refreshes() {
    let w = world();
    let arn = w.put_group_lock("2/i-b", unix_now() + 600, "restarting");
    let others: Vec<(String, String)> = (100..100 + MAX_WAITING_TAGS as i32)
        .map(|id| (format!("{TAG_WAITING_PREFIX}{id}"), "1".to_string()))
        .collect();
    w.nlb.with(|s| s.tags_of(&arn).unwrap().extend(others));
    let nlb = w.nlb.another_host();
    let a = w.agent(&nlb, "1/i-a");
    assert!(a.acquire(soon()).await.is_err());
    assert_eq!(nlb.calls.snapshot().get("AddTags"), None, "no room");
    assert_eq!(waiting_tags(&w).len(), MAX_WAITING_TAGS);
    // Broker 100 is one of the waiters: it refreshes its tag.
    let nlb = w.nlb.another_host();
    let listed = w.agent(&nlb, "100/i-c");
    assert!(listed.acquire(soon()).await.is_err());
    assert!(nlb.calls.snapshot().get("AddTags").copied().unwrap_or(0) >= 1);
}
