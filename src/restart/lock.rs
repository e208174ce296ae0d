//! The cluster restart lock (see the [module documentation](super)): its tags, the pure rules
//! ([`lock_action`], [`should_yield`], [`wait_delay`]) and the protocol on the NLB (read,
//! acquire, renew, release).

use std::collections::BTreeMap;
use std::time::Duration;

use rand::Rng;
use serde::Serialize;
use tokio::time::Instant;

use crate::clock::unix_now;
use crate::kafka::KafkaCluster;
use crate::nlb::{ListenerClaim, LoadBalancer};
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

/// The lock as read from its listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockState {
    /// Lock listener ARN.
    pub arn: String,
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
    /// Reads the lock from its listener's tags.
    pub fn from_tags(arn: &str, tags: &BTreeMap<String, String>) -> LockState {
        LockState {
            arn: arn.to_string(),
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

/// What to do about the lock (pure).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockAction {
    /// No lock: create it.
    Acquire,
    /// It is ours (possibly from before a crash).
    Held,
    /// Someone else holds it.
    Wait,
    /// Expired: delete that listener by ARN, then try to acquire.
    Break,
}

/// Decides about the lock for holder `me` at `now`.
pub fn lock_action(lock: Option<&LockState>, me: &str, now: u64) -> LockAction {
    match lock {
        None => LockAction::Acquire,
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

impl<L: LoadBalancer, K: KafkaCluster, S: ServiceManager> Restarter<'_, L, K, S> {
    pub(super) async fn read_lock(&self) -> Result<Option<LockState>, RestartError> {
        let lb_arn = &self.config.nlb.first_load_balancer();
        let port = self.config.restart.lock_port;
        let Some(l) = self
            .lb
            .listeners(lb_arn)
            .await?
            .into_iter()
            .find(|l| l.port == port)
        else {
            return Ok(None);
        };
        let Some(tags) = self.lb.tags(&l.arn).await? else {
            return Ok(None);
        };
        // A listener on our lock port belongs to this cluster only if it says so: another
        // cluster sharing the NLB with the same lock_port would otherwise stop (or be stopped
        // by) every restart of this one.
        match registry::foreign_owner(&tags, &self.config.cluster) {
            None => Ok(Some(LockState::from_tags(&l.arn, &tags))),
            Some(owner) => Err(RestartError::LockPortForeign {
                port,
                owner,
                cluster: self.config.cluster.clone(),
            }),
        }
    }

    pub(super) async fn release_if_mine(&self) -> Result<(), RestartError> {
        if let Some(lock) = self.read_lock().await? {
            if lock.holder == self.holder {
                self.release(&lock).await?;
            }
        }
        Ok(())
    }

    pub(super) async fn release(&self, lock: &LockState) -> Result<(), RestartError> {
        self.lb.delete_listener(&lock.arn).await?;
        self.lock_held.send_replace(false);
        tracing::info!(
            port = self.config.restart.lock_port,
            "released the cluster restart lock"
        );
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
        let lost = RestartError::LockLost {
            port: self.config.restart.lock_port,
            doing,
        };
        match self.lb.tags(&lock.arn).await? {
            Some(tags) if tags.get(TAG_LOCK_HOLDER) == Some(&self.holder) => {}
            _ => {
                self.lock_held.send_replace(false);
                return Err(lost);
            }
        }
        self.lb
            .add_tags(&lock.arn, &self.lease_tags(&phase))
            .await?;
        Ok(())
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
                if !matches!(e.code.as_str(), "ListenerNotFound" | "LoadBalancerNotFound") {
                    tracing::warn!(error = %e, "could not remove this broker's waiting tag from the restart lock");
                }
            }
        }
        result
    }

    /// Creates the lock listener; `Some` when this call holds it now. An identical CreateListener
    /// returns the existing listener: only the holder tag says whether this call created it.
    async fn try_create(&self) -> Result<Option<LockState>, RestartError> {
        let rc = &self.config.restart;
        let tags = self.lease_tags(&LockPhase::Gating);
        let ListenerClaim::Claimed(arn) = self
            .lb
            .create_listener(
                &self.config.nlb.first_load_balancer(),
                rc.lock_port,
                &self.bootstrap_tg,
                &tags,
            )
            .await?
        else {
            return Ok(None);
        };
        match self.lb.tags(&arn).await? {
            Some(tags) if tags.get(TAG_LOCK_HOLDER) == Some(&self.holder) => {
                tracing::info!(port = rc.lock_port, "acquired the cluster restart lock");
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
                    if let Some(lock) = lock {
                        self.renew(&lock, LockPhase::Gating, "taking the lock")
                            .await?;
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
                        tracing::warn!(holder = %lock.holder, expired = lock.expires, "breaking an expired restart lock");
                        self.lb.delete_listener(&lock.arn).await?;
                    }
                    continue;
                }
                LockAction::Wait => {
                    if let Some(lock) = &lock {
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
