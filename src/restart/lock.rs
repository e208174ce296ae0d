//! The cluster restart lock (see the [module documentation](super)): its tags, the pure rules
//! ([`lock_action`], [`should_yield`], [`wait_delay`]) and the protocol on the NLB (read,
//! acquire, renew, release).

use std::collections::BTreeMap;
use std::time::Duration;

use rand::Rng;
use serde::Serialize;
use tokio::time::Instant;

use crate::clock::unix_now;
use crate::config::Config;
use crate::kafka::KafkaCluster;
use crate::nlb::{ExactGroupSpec, GroupCreate, LoadBalancer, NlbError};
use crate::node::NodeRole;
use crate::registry;

use super::{RestartError, Restarter, ServiceManager};

/// Tag naming the lock holder: `<broker id>/<instance id>`.
pub const TAG_LOCK_HOLDER: &str = "kplink:lock-holder";
/// Tag with the lease's expiry, Unix seconds.
pub const TAG_LOCK_EXPIRES: &str = "kplink:lock-expires";
/// Tag with the holder's phase: `gating`, `restarting`, `verifying` or `failed` (see [`LockPhase`]).
pub const TAG_LOCK_PHASE: &str = "kplink:lock-phase";
/// Prefix of the tags waiting agents add to the lock: `kplink:waiting-<broker id>` = Unix seconds.
pub const TAG_WAITING_PREFIX: &str = "kplink:waiting-";
/// Most waiting tags on the lock: ELBv2 allows 50 tags per resource ("Tags per resource: 50",
/// AddTags answers `TooManyTags`); the lease itself uses 4 (cluster, holder, expires, phase), and
/// one is kept spare. Further waiters wait untagged: the tags only tell an active controller that
/// someone waits, and one tag says that.
pub const MAX_WAITING_TAGS: usize = 45;

/// The lock holder's phase, as tag [`TAG_LOCK_PHASE`] holds it.
///
/// The tag values are a contract between agent versions (an upgraded agent must read a lock an
/// older one wrote, and the other way round during a rolling upgrade): exactly `gating`,
/// `restarting`, `verifying` and `failed`, compared case-sensitively as every version did.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum LockPhase {
    /// `gating`: the holder waits for the health gates; nothing was restarted yet.
    Gating,
    /// `restarting`: the restart command runs.
    Restarting,
    /// `verifying`: the broker restarted; waiting for it to come back with the new endpoint.
    Verifying,
    /// `failed`: the broker did not come back. This lock never expires, so no other broker
    /// restarts until this one recovers or a person deletes the lock.
    Failed,
    /// Any other value, kept verbatim (`""` when the tag is missing): a phase of a newer agent or
    /// a hand-edited tag. Treated like a phase that expires, never like [`LockPhase::Failed`]:
    /// other agents wait for the lease and then break the lock, so an unknown value cannot stop
    /// the cluster's restarts for good. The holder itself (same `holder` tag after a crash)
    /// treats it as past gating: it verifies its broker and releases, restarting nothing.
    /// This agent never writes it.
    Unknown(String),
}

impl LockPhase {
    /// The tag value.
    pub fn as_str(&self) -> &str {
        match self {
            LockPhase::Gating => "gating",
            LockPhase::Restarting => "restarting",
            LockPhase::Verifying => "verifying",
            LockPhase::Failed => "failed",
            LockPhase::Unknown(other) => other,
        }
    }

    /// Whether a lock in this phase can expire (and then be broken): all but `failed`.
    pub fn expires(&self) -> bool {
        *self != LockPhase::Failed
    }
}

impl From<&str> for LockPhase {
    /// Parses a tag value; never fails (see [`LockPhase::Unknown`]).
    fn from(value: &str) -> Self {
        match value {
            "gating" => LockPhase::Gating,
            "restarting" => LockPhase::Restarting,
            "verifying" => LockPhase::Verifying,
            "failed" => LockPhase::Failed,
            other => LockPhase::Unknown(other.to_string()),
        }
    }
}

impl std::fmt::Display for LockPhase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// As the tag value (`kplink-agent status --json` shows `lock_phase` so).
impl Serialize for LockPhase {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// What the lock is on AWS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LockKind {
    /// The lock target group (see the [module documentation](super)).
    Group,
    /// A lock listener made by an older agent (release 0.1): honoured (waited for, broken when expired,
    /// resumed and released by its holder) until it is gone, never created.
    LegacyListener,
}

/// The lock as read from its tags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockState {
    /// ARN of the lock target group (or of a legacy lock listener, see [`LockState::kind`]).
    pub arn: String,
    /// Group or legacy listener.
    pub kind: LockKind,
    /// `<broker id>/<instance id>`.
    pub holder: String,
    /// Expiry, Unix seconds.
    pub expires: u64,
    /// Phase (`""` when the tag is missing: [`LockPhase::Unknown`]).
    pub phase: LockPhase,
    /// Waiting brokers → since (Unix seconds).
    pub waiting: BTreeMap<i32, u64>,
}

impl LockState {
    /// Reads the lock from its tags (a [`LockKind::Group`]; callers set a legacy listener's kind).
    pub fn from_tags(arn: &str, tags: &BTreeMap<String, String>) -> LockState {
        LockState {
            arn: arn.to_string(),
            kind: LockKind::Group,
            holder: tags.get(TAG_LOCK_HOLDER).cloned().unwrap_or_default(),
            expires: tags
                .get(TAG_LOCK_EXPIRES)
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
            phase: LockPhase::from(tags.get(TAG_LOCK_PHASE).map_or("", String::as_str)),
            waiting: tags
                .iter()
                .filter_map(|(k, v)| {
                    Some((
                        k.strip_prefix(TAG_WAITING_PREFIX)?.parse().ok()?,
                        v.parse().ok()?,
                    ))
                })
                .collect(),
        }
    }
}

impl LockState {
    /// The lock in messages and logs: `target group NAME`, or `legacy listener ARN`.
    pub fn resource(&self) -> String {
        match self.kind {
            LockKind::Group => format!(
                "target group {}",
                crate::nlb::target_group_name(&self.arn).unwrap_or(&self.arn)
            ),
            LockKind::LegacyListener => format!("legacy listener {}", self.arn),
        }
    }
}

/// What to do about the lock (pure).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockAction {
    /// No lock: create it.
    Acquire,
    /// It is ours (possibly from before a crash).
    Held,
    /// Someone else holds it.
    Wait,
    /// Expired: delete that lock by ARN, then try to acquire.
    Break,
    /// No lease tags yet (see [`LockState::untagged`]): a fresh lease, waited for; broken only
    /// once it stayed untagged for a whole lease.
    Settling,
}

impl LockState {
    /// No lease tags at all: the group was just created and its tags are not visible yet (ELBv2
    /// is eventually consistent: DescribeTags right after CreateTargetGroup can miss the tags the
    /// create applied). A fresh lease, never an expired one.
    pub fn untagged(&self) -> bool {
        self.kind == LockKind::Group && self.holder.is_empty() && self.expires == 0
    }
}

/// Decides about the lock for holder `me` at `now`.
pub fn lock_action(lock: Option<&LockState>, me: &str, now: u64) -> LockAction {
    match lock {
        None => LockAction::Acquire,
        Some(l) if l.untagged() => LockAction::Settling,
        Some(l) if l.holder == me => LockAction::Held,
        Some(l) if !l.phase.expires() => LockAction::Wait,
        Some(l) if l.expires <= now => LockAction::Break,
        Some(_) => LockAction::Wait,
    }
}

/// Whether the lock holder, being the active controller, gives the lock to a waiter so that it
/// restarts last (pure). Only where Metadata names the active controller (ZooKeeper mode): in
/// KRaft the id is a random live broker (KIP-590) and yielding to it would order nothing.
pub fn should_yield(
    role: NodeRole,
    controller_id: Option<i32>,
    me: i32,
    waiting: &BTreeMap<i32, u64>,
    now: u64,
    lease: Duration,
) -> bool {
    role.metadata_names_controller()
        && controller_id == Some(me)
        && waiting
            .iter()
            .any(|(id, since)| *id != me && now.saturating_sub(*since) < lease.as_secs())
}

/// Pause between two looks at a held lock: `check_interval` with jitter, longer as more agents
/// wait (each waiter polls the NLB; 100 brokers polling every 10 s would eat ELBv2's API budget).
pub fn wait_delay(check_interval: Duration, waiters: usize, jitter: f64) -> Duration {
    let crowd = 1.0 + (waiters as f64 / 10.0).min(5.0);
    check_interval.mul_f64(crowd * jitter)
}

/// The lock group's creation settings for `holder`, `(Port, HealthCheckPort)`, each 1–65535:
/// about 32 bits of a stable hash of the holder string. CreateTargetGroup under the lock's name
/// succeeds only with the settings the group was created with, so only its holder gets it back;
/// a holder whose string hashes alike (about one pair in 2^32) gets it back too, and the
/// `kplink:lock-holder` tag read after the create then says it is not its lock.
pub fn holder_ports(holder: &str) -> (u16, u16) {
    const PORTS: u64 = 65535;
    let h = registry::fnv1a(holder.as_bytes());
    // Both values are below 65535, so the casts cannot truncate.
    let port = (h % PORTS) as u16 + 1;
    let health_check_port = ((h / PORTS) % PORTS) as u16 + 1;
    (port, health_check_port)
}

/// Reads the cluster's restart lock: the lock target group if it exists, else a legacy lock
/// listener of this cluster (an older agent, release 0.1): the one at `legacy_listener` when the caller
/// knows it (a pass saw it), else looked up on the legacy port when `look_for_legacy`.
pub async fn read_cluster_lock(
    lb: &impl LoadBalancer,
    config: &Config,
    legacy_listener: Option<&str>,
    look_for_legacy: bool,
) -> Result<Option<LockState>, NlbError> {
    let name = registry::lock_group_name(&config.cluster);
    if let Some(arn) = lb.find_target_group(&name).await? {
        // Gone between the two calls (released or broken): no lock (the caller looks again).
        if let Some(tags) = lb.tags(&arn).await? {
            if let Some(owner) = registry::foreign_owner(&tags, &config.cluster) {
                // Two cluster names hashing alike (or a hand-made group): one lock for both is
                // still safe; their restarts only wait for each other.
                tracing::warn!(group = %name, owner = %owner, "the restart lock target group is tagged for another cluster; sharing it");
            }
            return Ok(Some(LockState::from_tags(&arn, &tags)));
        }
    }
    let legacy = match legacy_listener {
        Some(arn) => Some(arn.to_string()),
        None if look_for_legacy => crate::compat::legacy_lock_listener(lb, config).await?,
        None => None,
    };
    let Some(arn) = legacy else {
        return Ok(None);
    };
    let Some(tags) = lb.tags(&arn).await? else {
        return Ok(None);
    };
    // Another cluster's lock listener on that port is its own business: this cluster's lock is
    // never a listener again.
    if registry::foreign_owner(&tags, &config.cluster).is_some() {
        return Ok(None);
    }
    let mut lock = LockState::from_tags(&arn, &tags);
    lock.kind = LockKind::LegacyListener;
    Ok(Some(lock))
}

impl<L: LoadBalancer, K: KafkaCluster, S: ServiceManager> Restarter<'_, L, K, S> {
    /// The lock as it is now (group, else a legacy listener on the legacy port).
    pub(super) async fn read_lock(&self) -> Result<Option<LockState>, RestartError> {
        Ok(read_cluster_lock(self.lb, self.config, None, true).await?)
    }

    /// The lock if this agent holds it (from before a crash, or a gating phase cut short): the
    /// group, else the legacy listener the pass saw. No DescribeListeners: the pass just did it.
    /// Looked up only when this host noted that it may hold it (see [`super::marker`]), so a
    /// check of Kafka costs no AWS call in the steady state.
    pub(super) async fn own_lock(&self) -> Result<Option<LockState>, RestartError> {
        let marker = self.marker();
        if self.legacy_lock.is_none() && !marker.may_hold() {
            return Ok(None);
        }
        let lock =
            read_cluster_lock(self.lb, self.config, self.legacy_lock.as_deref(), false).await?;
        let own = lock.filter(|l| l.holder == self.holder);
        if own.is_none() {
            marker.clear();
        }
        Ok(own)
    }

    /// This holder's local note of the lock, in the agent's state directory.
    pub(super) fn marker(&self) -> super::marker::LockMarker {
        super::marker::LockMarker::new(&self.config.state_dir(), &self.holder)
    }

    /// Deletes the lock *by the ARN that was read*: a lock recreated since has another ARN and
    /// survives (DeleteTargetGroup and DeleteListener of a resource that is gone succeed as
    /// no-ops in the adapter: `TargetGroupNotFound`/`ListenerNotFound` mean the goal holds).
    async fn delete_lock(&self, lock: &LockState) -> Result<(), RestartError> {
        match lock.kind {
            // ELBv2 API reference, DeleteTargetGroup: "Deletes the specified target group. You
            // can delete a target group if it is not referenced by any actions." The lock group
            // never is.
            LockKind::Group => self.lb.delete_target_group(&lock.arn).await?,
            LockKind::LegacyListener => self.lb.delete_listener(&lock.arn).await?,
        }
        Ok(())
    }

    pub(super) async fn release(&self, lock: &LockState) -> Result<(), RestartError> {
        self.delete_lock(lock).await?;
        self.marker().clear();
        self.lock_held.send_replace(false);
        tracing::info!(lock = %lock.resource(), "released the cluster restart lock");
        Ok(())
    }

    fn lease_tags(&self, phase: &LockPhase) -> Vec<(String, String)> {
        vec![
            (
                registry::TAG_CLUSTER.to_string(),
                self.config.cluster.clone(),
            ),
            (TAG_LOCK_HOLDER.to_string(), self.holder.clone()),
            (
                TAG_LOCK_EXPIRES.to_string(),
                (unix_now() + self.config.restart.lease.as_secs()).to_string(),
            ),
            (TAG_LOCK_PHASE.to_string(), phase.as_str().to_string()),
        ]
    }

    /// Renews the lease and sets the phase; fails if the lock is no longer ours.
    pub(super) async fn renew(
        &self,
        lock: &LockState,
        phase: LockPhase,
        doing: &'static str,
    ) -> Result<(), RestartError> {
        let lost = || {
            self.lock_held.send_replace(false);
            RestartError::LockLost {
                lock: lock.resource(),
                doing,
            }
        };
        // By ARN: a lock broken and recreated by another agent has another ARN, so this one's
        // tags are gone (None) and never the new holder's.
        match self.lb.tags(&lock.arn).await? {
            Some(tags) if tags.get(TAG_LOCK_HOLDER) == Some(&self.holder) => {}
            _ => return Err(lost()),
        }
        match self.lb.add_tags(&lock.arn, &self.lease_tags(&phase)).await {
            Ok(()) => Ok(()),
            // Deleted between the two calls.
            Err(e) if matches!(e.code.as_str(), "TargetGroupNotFound" | "ListenerNotFound") => {
                Err(lost())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Waits for the lock; returns it held by us (phase `gating`). A waiting tag this call put on
    /// someone else's lock is removed again whatever the result.
    pub(super) async fn acquire(&self, deadline: Instant) -> Result<LockState, RestartError> {
        let mut tagged: Option<String> = None;
        let result = self.acquire_inner(deadline, &mut tagged).await;
        if let Some(arn) = tagged {
            let key = format!("{TAG_WAITING_PREFIX}{}", self.broker_id);
            // The lock may be gone (released: its tags went with it); that is fine.
            if let Err(e) = self.lb.remove_tags(&arn, &[key]).await {
                if !matches!(
                    e.code.as_str(),
                    "TargetGroupNotFound" | "ListenerNotFound" | "LoadBalancerNotFound"
                ) {
                    tracing::warn!(error = %e, "could not remove this broker's waiting tag from the restart lock");
                }
            }
        }
        result
    }

    /// Creates the lock group with settings that encode this holder ([`holder_ports`]) and the
    /// lease as its tags, in one CreateTargetGroup; `Some` when this call holds it now. A
    /// competitor's create answers `DuplicateTargetGroupName`; an identical create returns the
    /// existing group, tags unchanged: only the holder tag says whether it is ours.
    async fn try_create(&self) -> Result<Option<LockState>, RestartError> {
        let (port, health_check_port) = holder_ports(&self.holder);
        let spec = ExactGroupSpec {
            name: registry::lock_group_name(&self.config.cluster),
            vpc_id: self.vpc_id.clone(),
            port,
            health_check_port,
            tags: self.lease_tags(&LockPhase::Gating),
        };
        // Noted before it exists: a crash right after the create still finds it.
        self.marker().set();
        let GroupCreate::Created(arn) = self.lb.create_exact_target_group(&spec).await? else {
            return Ok(None);
        };
        match self.lb.tags(&arn).await? {
            Some(tags) if tags.get(TAG_LOCK_HOLDER) == Some(&self.holder) => {
                tracing::info!(lock = %format!("target group {}", spec.name), "acquired the cluster restart lock");
                self.lock_held.send_replace(true);
                Ok(Some(LockState::from_tags(&arn, &tags)))
            }
            _ => Ok(None),
        }
    }

    /// Puts (or refreshes) this broker's one waiting tag on someone else's lock, unless
    /// [`MAX_WAITING_TAGS`] others already wait (ELBv2 allows 50 tags per resource). Tags are per
    /// key, so waiters never overwrite each other.
    async fn tag_waiting(&self, lock: &LockState, tagged: &mut Option<String>) {
        let mine = lock.waiting.contains_key(&self.broker_id);
        if !mine && lock.waiting.len() >= MAX_WAITING_TAGS {
            return;
        }
        let key = format!("{TAG_WAITING_PREFIX}{}", self.broker_id);
        if self
            .lb
            .add_tags(&lock.arn, &[(key, unix_now().to_string())])
            .await
            .is_ok()
        {
            *tagged = Some(lock.arn.clone());
        }
    }

    async fn acquire_inner(
        &self,
        deadline: Instant,
        tagged: &mut Option<String>,
    ) -> Result<LockState, RestartError> {
        let rc = &self.config.restart;
        let mut last_seen = None;
        let mut untagged_since: Option<Instant> = None;
        loop {
            let mut waiters = 0;
            if Instant::now() >= deadline {
                // Never saw a holder (lost every race to create or break it): no holder, no phase.
                let (holder, phase) =
                    last_seen.unwrap_or_else(|| (String::new(), LockPhase::Unknown(String::new())));
                return Err(RestartError::LockBusy {
                    broker_id: self.broker_id,
                    holder,
                    phase,
                    timeout: rc.timeout,
                });
            }
            let lock = self.read_lock().await?;
            match lock_action(lock.as_ref(), &self.holder, unix_now()) {
                LockAction::Held => {
                    // Ours from before (a legacy listener included: used until released).
                    if let Some(lock) = lock {
                        self.renew(&lock, LockPhase::Gating, "taking the lock")
                            .await?;
                        self.marker().set();
                        self.lock_held.send_replace(true);
                        return Ok(lock);
                    }
                }
                LockAction::Acquire => {
                    if let Some(lock) = self.try_create().await? {
                        return Ok(lock);
                    }
                    // Lost the race: look again after a short, jittered pause.
                    tokio::time::sleep(
                        rc.check_interval
                            .mul_f64(rand::thread_rng().gen_range(0.1..0.5)),
                    )
                    .await;
                    continue;
                }
                LockAction::Break => {
                    if let Some(lock) = &lock {
                        tracing::warn!(holder = %lock.holder, expired = lock.expires, lock = %lock.resource(), "breaking an expired restart lock");
                        self.delete_lock(lock).await?;
                    }
                    continue;
                }
                LockAction::Settling => {
                    if let Some(lock) = &lock {
                        // Tags lagging behind a create settle in seconds; a group that stays
                        // untagged for a whole lease was made by hand or half-deleted.
                        let since = *untagged_since.get_or_insert_with(Instant::now);
                        if since.elapsed() >= rc.lease {
                            tracing::warn!(lock = %lock.resource(), lease = ?rc.lease, "breaking a restart lock that carried no lease tags for a whole lease");
                            self.delete_lock(lock).await?;
                            untagged_since = None;
                            continue;
                        }
                    }
                }
                LockAction::Wait => {
                    if let Some(lock) = &lock {
                        untagged_since = None;
                        waiters = lock.waiting.len();
                        self.tag_waiting(lock, tagged).await;
                        last_seen = Some((lock.holder.clone(), lock.phase.clone()));
                    }
                }
            }
            let jitter = rand::thread_rng().gen_range(0.5..1.5);
            tokio::time::sleep(wait_delay(rc.check_interval, waiters, jitter)).await;
        }
    }
}

#[cfg(test)]
#[path = "lock_tests.rs"]
pub(super) mod fake_tests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_zookeeper_controller_yields() {
        let lease = Duration::from_secs(600);
        let waiting = BTreeMap::from([(2, 1000), (1, 1000)]);
        let zk = NodeRole::ZooKeeperBroker;
        assert!(should_yield(zk, Some(1), 1, &waiting, 1100, lease));
        // Not the controller, or nobody else waiting, or the waiter's tag is stale.
        assert!(!should_yield(zk, Some(2), 1, &waiting, 1100, lease));
        assert!(!should_yield(
            zk,
            Some(1),
            1,
            &BTreeMap::from([(1, 1000)]),
            1100,
            lease
        ));
        assert!(!should_yield(zk, Some(1), 1, &waiting, 1000 + 600, lease));
        // KRaft: Metadata's controller id is a random live broker (KIP-590): never yield.
        for role in [NodeRole::KraftBroker, NodeRole::KraftCombined] {
            assert!(!should_yield(role, Some(1), 1, &waiting, 1100, lease));
        }
    }

    #[test]
    fn waiters_back_off_as_they_grow() {
        let base = Duration::from_secs(10);
        assert_eq!(wait_delay(base, 0, 1.0), base);
        assert_eq!(wait_delay(base, 10, 1.0), Duration::from_secs(20));
        assert_eq!(wait_delay(base, 45, 1.0), Duration::from_secs(55));
        assert_eq!(
            wait_delay(base, 500, 1.0),
            Duration::from_secs(60),
            "capped"
        );
        assert!(wait_delay(base, 20, 0.5) < wait_delay(base, 20, 1.5));
        // The cap keeps the lock within ELBv2's 50 tags: 4 lease tags + waiters + 1 spare.
        assert_eq!(MAX_WAITING_TAGS + 4 + 1, 50);
    }

    #[test]
    fn lock_table() {
        let lock = |holder: &str, expires: u64, phase: &str| LockState {
            arn: "arn:l".into(),
            kind: LockKind::Group,
            holder: holder.into(),
            expires,
            phase: LockPhase::from(phase),
            waiting: BTreeMap::new(),
        };
        assert_eq!(lock_action(None, "1/i-a", 100), LockAction::Acquire);
        assert_eq!(
            lock_action(Some(&lock("1/i-a", 50, "verifying")), "1/i-a", 100),
            LockAction::Held
        );
        assert_eq!(
            lock_action(Some(&lock("2/i-b", 150, "gating")), "1/i-a", 100),
            LockAction::Wait
        );
        assert_eq!(
            lock_action(Some(&lock("2/i-b", 100, "gating")), "1/i-a", 100),
            LockAction::Break
        );
        assert_eq!(
            lock_action(Some(&lock("2/i-b", 10, "failed")), "1/i-a", 100),
            LockAction::Wait
        );
        // Just created, tags not visible yet: a fresh lease, not an expired one.
        assert_eq!(
            lock_action(Some(&lock("", 0, "")), "1/i-a", 100),
            LockAction::Settling
        );
        assert!(LockState::from_tags("arn:x", &BTreeMap::new()).untagged());
        let tags: BTreeMap<String, String> = [
            (TAG_LOCK_HOLDER, "2/i-b"),
            (TAG_LOCK_EXPIRES, "123"),
            (TAG_LOCK_PHASE, "gating"),
            ("kplink:waiting-3", "99"),
            ("kplink:waiting-x", "1"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let l = LockState::from_tags("arn:x", &tags);
        assert_eq!(
            (l.holder.as_str(), l.expires, &l.phase),
            ("2/i-b", 123, &LockPhase::Gating)
        );
        assert_eq!(l.waiting, BTreeMap::from([(3, 99)]));
    }

    #[test]
    fn lock_phase_tag_values_are_the_public_contract() {
        // Exactly the values every agent version wrote and reads: they live on AWS.
        let known = [
            ("gating", LockPhase::Gating),
            ("restarting", LockPhase::Restarting),
            ("verifying", LockPhase::Verifying),
            ("failed", LockPhase::Failed),
        ];
        for (tag, phase) in &known {
            assert_eq!(LockPhase::from(*tag), *phase);
            assert_eq!(phase.as_str(), *tag);
            assert_eq!(phase.to_string(), *tag);
            assert_eq!(serde_json::to_value(phase).unwrap(), serde_json::json!(tag));
            assert_eq!(phase.expires(), *tag != "failed", "{tag}");
        }
        // Foreign values are kept verbatim and expire; case matters, as it always did.
        for foreign in ["draining", "FAILED", "Failed", " failed", ""] {
            let phase = LockPhase::from(foreign);
            assert_eq!(phase, LockPhase::Unknown(foreign.to_string()));
            assert_eq!(phase.as_str(), foreign);
            assert!(phase.expires(), "{foreign:?}");
        }
    }

    #[test]
    fn a_lock_in_an_unknown_phase_expires() {
        let tags = |phase: Option<&str>| -> BTreeMap<String, String> {
            let mut t = BTreeMap::from([
                (TAG_LOCK_HOLDER.to_string(), "2/i-b".to_string()),
                (TAG_LOCK_EXPIRES.to_string(), "100".to_string()),
            ]);
            if let Some(p) = phase {
                t.insert(TAG_LOCK_PHASE.to_string(), p.to_string());
            }
            t
        };
        for phase in [Some("draining"), Some(""), None] {
            let l = LockState::from_tags("arn:x", &tags(phase));
            assert_eq!(l.phase, LockPhase::Unknown(phase.unwrap_or("").to_string()));
            assert_eq!(lock_action(Some(&l), "1/i-a", 99), LockAction::Wait);
            assert_eq!(lock_action(Some(&l), "1/i-a", 100), LockAction::Break);
            assert_eq!(lock_action(Some(&l), "2/i-b", 100), LockAction::Held);
        }
        let failed = LockState::from_tags("arn:x", &tags(Some("failed")));
        assert_eq!(
            lock_action(Some(&failed), "1/i-a", u64::MAX),
            LockAction::Wait
        );
    }
}
