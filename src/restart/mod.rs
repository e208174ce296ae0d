//! Making Kafka use the written listener without costing availability.
//!
//! Decision, in order: nothing accepts a TCP connection on `restart.bootstrap_servers` → nothing
//! (Kafka reads the file when it starts); something accepts but does not answer → an error, the
//! change stays pending and is checked again (a broker in log recovery or a GC pause is running,
//! and would otherwise keep its old endpoint for good); it already advertises the desired endpoint
//! → nothing; a ZooKeeper-mode broker whose managed listener exists with another endpoint → a
//! per-broker dynamic `advertised.listeners` update, verified by comparing the whole value through
//! DescribeConfigs; otherwise (always under KRaft, which cannot change `advertised.listeners`
//! dynamically: see [`crate::node`]) → a rolling restart, one broker at a time cluster-wide.
//! Before a ZooKeeper-mode restart, a dynamic `advertised.listeners` override is removed so it
//! cannot shadow the file once the broker is back.
//!
//! **The cluster restart lock** is a target group, not a listener: it takes none of the NLB's
//! 50 listener slots (AWS quota "Listeners per Network Load Balancer: 50", Adjustable: No) and
//! no consumer can reach it through the endpoint service. One lock per cluster, whatever the
//! number of NLBs: its name depends on the cluster only
//! ([`crate::registry::lock_group_name`], e.g. `kp-orders-50be8b4c-lock`). It is made atomic by
//! AWS's own rule for CreateTargetGroup (ELBv2 API reference: "This operation is idempotent,
//! which means that it completes at most one time. If you attempt to create multiple target
//! groups with the same settings, each call succeeds"; the same name with other settings fails
//! with `DuplicateTargetGroupName`): the group's *creation settings encode the holder* (about 32
//! bits of a hash of `<broker id>/<instance id>` as its Port and HealthCheckPort, see
//! [`holder_ports`]; VpcId is the instance's VPC), and the lease is passed as Tags in the same
//! CreateTargetGroup call. So of agents racing to create it, one creates it and the others get
//! `DuplicateTargetGroupName`; the holder itself (after a crash: same holder string) gets its
//! group back. An identical create returns the existing group without touching its tags (AWS
//! documents no tag update on that path), so the creator confirms it holds the lock by reading
//! the `kplink:lock-holder` tag back, which also turns away a holder whose string hashes alike.
//! The tags say who holds it (`kplink:lock-holder`), until when (`kplink:lock-expires`, renewed
//! while held) and in which phase (`kplink:lock-phase`). An expired lock is broken by
//! DeleteTargetGroup of *the ARN that was read* (compare-and-delete: a group recreated since has
//! a new ARN and survives; a second breaker's delete finds nothing and its create loses),
//! except in phase `failed`, which never expires: a broker that did not come back keeps every
//! other broker from restarting until it recovers or a person steps in. Release is
//! DeleteTargetGroup. A phase value this agent does not know (see [`LockPhase::Unknown`])
//! expires like any phase but `failed`.
//!
//! **Migration from release 0.1**, whose lock was a listener on `restart.lock_port`
//! (default 9999): while such a *legacy lock listener* of this cluster exists it is the lock
//! ([`LockKind::LegacyListener`]): others wait for it, break it when expired (DeleteListener by
//! ARN), and its holder (an agent upgraded mid-restart) resumes and releases it as before. No
//! agent creates one again. An older agent does not see the group, so finish upgrading every
//! agent of a cluster before its next rolling restart; `restart.lock_port` is read only to find a
//! legacy listener, and otherwise ignored with a deprecation warning.
//!
//! Waiting agents add a `kplink:waiting-<broker id>` tag to the lock (at most one each, at most
//! [`MAX_WAITING_TAGS`] in all so the lock stays within ELBv2's 50 tags per resource, removed when
//! they stop waiting) so that a ZooKeeper-mode active controller that holds it can yield and
//! restart last; waiters poll less often as their number grows. Under KRaft the Metadata
//! controller id is a random broker (KIP-590), so nothing yields: with dedicated controllers
//! there is nothing to order, and combined-mode (`broker,controller`) restarts are not ordered
//! by quorum leadership (the agent does not send DescribeQuorum).
//!
//! Layout: [`decide()`] and the listener comparisons in `decide.rs`, the health gates
//! ([`gate()`], [`split_claims`], [`cluster_claims`]) in `gate.rs`, the lock protocol
//! ([`LockState`], [`LockPhase`], [`lock_action`], acquire/renew/release) in `lock.rs`, the
//! restart command ([`ServiceManager`], [`CommandService`]) in `command.rs`, the check that the
//! restarted broker is back ([`nlb_not_ready`] and the verify phase) in `verify.rs`; this file
//! holds the orchestration, [`Restarter::make_effective`].

mod command;
mod decide;
mod gate;
mod lock;
pub mod marker;
mod verify;

use std::collections::BTreeSet;
use std::time::Duration;

use rand::Rng;
use serde::Serialize;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::config::{Config, RestartMode};
use crate::kafka::{KafkaCluster, KafkaError, Liveness};
use crate::nlb::{LoadBalancer, NlbError};
use crate::node::NodeRole;

/// Seconds since the Unix epoch; defined in [`crate::clock`], re-exported for existing callers.
use crate::clock::unix_now;
pub use command::{CommandService, ServiceManager};
pub use decide::{decide, endpoint_of, same_listeners, Decision};
pub use gate::{
    cluster_claims, cluster_listing, gate, is_live_target, split_claims, ClusterClaim, GateReport,
};
pub use lock::{
    holder_ports, lock_action, read_cluster_lock, should_yield, wait_delay, LockAction, LockKind,
    LockPhase, LockState, MAX_WAITING_TAGS, TAG_LOCK_EXPIRES, TAG_LOCK_HOLDER, TAG_LOCK_PHASE,
    TAG_WAITING_PREFIX,
};
pub use verify::nlb_not_ready;

/// Why making the listener effective failed.
#[derive(Debug, thiserror::Error)]
pub enum RestartError {
    /// A Kafka admin call failed.
    #[error(transparent)]
    Kafka(#[from] KafkaError),
    /// Something accepts connections on the bootstrap servers but does not answer Kafka's
    /// Metadata request: the broker runs (or hangs) and cannot be checked; nothing is restarted.
    #[error("Kafka at {bootstrap} accepts connections but does not answer ({cause}); the change stays pending and nothing is restarted until it answers (log recovery? GC pause? restart.kafka security settings?)")]
    Unreachable {
        /// Bootstrap servers.
        bootstrap: String,
        /// Why the Metadata request failed.
        cause: String,
    },
    /// `run --once`: Kafka is starting, so whether it uses the new listener is not known yet.
    #[error("Kafka at {bootstrap} is starting ({how}; nothing accepts connections yet): the change stays pending; run again once it answers (the daemon looks again every pass)")]
    Starting {
        /// Bootstrap servers.
        bootstrap: String,
        /// Who says it runs.
        how: String,
    },
    /// An ELBv2 call of the lock failed.
    #[error(transparent)]
    Nlb(#[from] NlbError),
    /// The health gates did not pass within `restart.timeout`; nothing was restarted.
    #[error("not restarting broker {broker_id}: cluster not healthy for {checks} consecutive checks within {timeout:?}: {blockers}")]
    GatesNotMet {
        /// This broker.
        broker_id: i32,
        /// Required consecutive healthy checks.
        checks: u32,
        /// The timeout.
        timeout: Duration,
        /// Why, from the last observation.
        blockers: String,
    },
    /// The lock stayed with another broker for `restart.timeout`.
    #[error("not restarting broker {broker_id}: the cluster restart lock stayed with {holder} (phase {phase}) for {timeout:?}")]
    LockBusy {
        /// This broker.
        broker_id: i32,
        /// The holder.
        holder: String,
        /// Its phase.
        phase: LockPhase,
        /// The timeout.
        timeout: Duration,
    },
    /// The lock was taken away while held (it expired and another agent broke it).
    #[error("lost the cluster restart lock ({lock}) while {doing}")]
    LockLost {
        /// The lock: `target group NAME` (or a legacy listener), see [`LockState::resource`].
        lock: String,
        /// What the holder was doing.
        doing: &'static str,
    },
    /// The restart command failed.
    #[error("restart command {command:?} failed: {reason}")]
    Command {
        /// The command.
        command: Vec<String>,
        /// Exit status or spawn error.
        reason: String,
    },
    /// The broker did not come back healthy with the new endpoint in time; the lock is kept.
    #[error("broker {broker_id} did not come back within {timeout:?} after its restart ({why}); keeping the cluster restart lock so no other broker restarts")]
    NotRecovered {
        /// This broker.
        broker_id: i32,
        /// The timeout.
        timeout: Duration,
        /// What was still missing.
        why: String,
    },
}

/// What happened to a changed listener.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// Nothing answers on the bootstrap servers; Kafka reads the file when it starts.
    NotRunning,
    /// The broker already advertises the desired endpoint.
    AlreadyEffective,
    /// Nothing accepts connections yet, but Kafka's process runs (log recovery): whether it
    /// read the new file is not known; the change stays pending and is looked at again.
    Starting {
        /// Who says it runs (`kafka.service is activating`).
        how: String,
    },
    /// Applied as a per-broker dynamic config and verified.
    DynamicallyUpdated,
    /// Restarted under the cluster lock and verified.
    Restarted {
        /// Lock acquired to lock released.
        took_ms: u128,
    },
    /// `restart.mode = "never"`: the running broker still advertises something else.
    Pending {
        /// What the broker advertises now.
        current: Option<String>,
    },
}

/// One line about the outcome (`run --once`, the daemon's log).
impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::NotRunning => f.write_str("not running (nothing accepts connections on restart.bootstrap_servers); it reads the file when it starts"),
            Outcome::AlreadyEffective => f.write_str("already advertises this endpoint"),
            Outcome::Starting { how } => write!(
                f,
                "starting ({how}; nothing accepts connections yet): the change stays pending and is looked at again"
            ),
            Outcome::DynamicallyUpdated => {
                f.write_str("advertised.listeners updated dynamically (no restart)")
            }
            Outcome::Restarted { took_ms } => {
                write!(f, "restarted under the cluster lock ({took_ms} ms)")
            }
            Outcome::Pending { current } => write!(
                f,
                "restart pending (restart.mode = \"never\"); broker advertises {}",
                current.as_deref().unwrap_or("something else")
            ),
        }
    }
}

/// Carries one change into the running broker.
pub struct Restarter<'a, L, K, S> {
    /// The NLB (lock and broker registry).
    pub lb: &'a L,
    /// The cluster.
    pub kafka: &'a K,
    /// The Kafka service.
    pub service: &'a S,
    /// Configuration.
    pub config: &'a Config,
    /// This broker.
    pub broker_id: i32,
    /// What kind of Kafka node it is (decides dynamic updates and controller ordering).
    pub role: NodeRole,
    /// This broker's NLB targets: after a restart it is done only when the NLB marks it
    /// `healthy` in each of these groups (its dedicated group and its NLB's bootstrap group).
    /// `None`: not checked (a caller without a claim).
    pub nlb_targets: Option<NlbTargets>,
    /// Where the broker binds (`host:port` from `listeners`, the managed listener left out, see
    /// [`crate::properties::bound_addresses`]): probed when nothing accepts on
    /// `restart.bootstrap_servers`, so a broker binding a specific address is not "not running".
    pub bound: Vec<String>,
    /// The `broker.rack` the file now says, if `broker.rack` is configured: a running broker
    /// reporting another rack is restarted like a changed listener.
    pub rack: Option<&'a str>,
    /// `<broker id>/<instance id>`.
    pub holder: String,
    /// VPC of this instance: the lock target group's `VpcId` (instance metadata, no AWS call;
    /// the same for every restart of this holder, as its settings must be).
    pub vpc_id: String,
    /// A legacy lock listener (an older agent, release 0.1) the reconcile pass just saw on the legacy
    /// lock port, if any: checked for this holder's interrupted restart without another
    /// DescribeListeners.
    pub legacy_lock: Option<String>,
    /// Whether this agent holds the cluster restart lock: set to `true` when it takes (or
    /// resumes) the lock, `false` when it releases or loses it. A lock kept after a failed
    /// restart stays `true`. The caller owns the channel and reads it (the daemon feeds the
    /// `kplink_lock_held` metric from it, see [`crate::metrics::Metrics::lock_held_sender`]).
    pub lock_held: &'a watch::Sender<bool>,
}

/// A broker's registrations on its NLB.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NlbTargets {
    /// The registered instance.
    pub instance_id: String,
    /// Target group ARNs it must be healthy in.
    pub groups: Vec<String>,
}

/// How gating ended while holding the lock.
enum Gated {
    /// Healthy: restart now.
    Healthy,
    /// The lock was given to a waiter: acquire again.
    Yielded,
}

impl<L: LoadBalancer, K: KafkaCluster, S: ServiceManager> Restarter<'_, L, K, S> {
    /// Makes the broker advertise `desired` (`host:port`) for the managed listener; `file_value`
    /// is `advertised.listeners` as written to `server.properties` (the dynamic value, if used).
    pub async fn make_effective(
        &self,
        desired: &str,
        file_value: &str,
    ) -> Result<Outcome, RestartError> {
        // One read of the lock per call: a lock of ours from before a crash is resumed (past
        // gating) or released (still gating, nothing left to do).
        let own = self.own_lock().await?;
        if let Some(outcome) = self.resume_interrupted(own.as_ref(), desired).await? {
            return Ok(outcome);
        }
        let name = &self.config.listener.name;
        let liveness = crate::kafka::liveness(
            self.kafka,
            &self.config.restart.bootstrap_servers,
            &self.bound,
            self.service.state(),
        )
        .await;
        let running = match liveness {
            Liveness::NotListening => false,
            Liveness::Answering => true,
            Liveness::Starting { how } => {
                tracing::info!(how = %how, "Kafka is starting: the change stays pending and is looked at again");
                return Ok(Outcome::Starting { how });
            }
            Liveness::Unreachable { bootstrap, cause } => {
                return Err(RestartError::Unreachable { bootstrap, cause })
            }
        };
        let (current, rack_differs) = if running {
            (
                self.kafka.advertised_listeners(self.broker_id).await?,
                self.rack_differs().await?,
            )
        } else {
            (None, false)
        };
        let dynamic_allowed = self.role.dynamic_advertised_listeners() && !rack_differs;
        let decision = match decide(running, current.as_deref(), name, desired, dynamic_allowed) {
            // `broker.rack` is a static broker config (read-only in both modes): a restart.
            Decision::Effective if rack_differs => Decision::Restart,
            d => d,
        };
        match decision {
            Decision::NotRunning => return Ok(Outcome::NotRunning),
            Decision::Effective => {
                // Release a lock we still hold from a gating phase cut short.
                if let Some(lock) = &own {
                    self.release(lock).await?;
                }
                return Ok(Outcome::AlreadyEffective);
            }
            _ if self.config.restart.mode == RestartMode::Never => {
                return Ok(Outcome::Pending {
                    current: current.as_deref().and_then(|a| endpoint_of(a, name)),
                })
            }
            Decision::DynamicUpdate => {
                if self.dynamic_update(desired, file_value).await? {
                    return Ok(Outcome::DynamicallyUpdated);
                }
            }
            Decision::Restart => {}
        }
        self.rolling_restart(desired).await
    }

    /// A lock of ours from before a crash, past gating (restarting, verifying, failed, or a
    /// phase this agent does not know), means Kafka may have been restarted: verify it and
    /// release; nothing restarts again.
    async fn resume_interrupted(
        &self,
        own: Option<&LockState>,
        desired: &str,
    ) -> Result<Option<Outcome>, RestartError> {
        let Some(lock) = own.filter(|l| l.phase != LockPhase::Gating) else {
            return Ok(None);
        };
        tracing::warn!(phase = %lock.phase, lock = %lock.resource(), "resuming an interrupted restart");
        self.lock_held.send_replace(true);
        Ok(Some(
            self.verify_and_release(lock, desired, Instant::now())
                .await?,
        ))
    }

    /// Whether the running broker's `broker.rack` differs from the configured one (`false` when
    /// no rack is configured or the broker does not report one).
    async fn rack_differs(&self) -> Result<bool, RestartError> {
        let Some(want) = self.rack else {
            return Ok(false);
        };
        Ok(self
            .kafka
            .broker_rack(self.broker_id)
            .await?
            .is_some_and(|have| have != want))
    }

    /// ZooKeeper mode: the per-broker dynamic update, verified on the whole value (it replaces
    /// every listener's address). `false`: not taken; restart instead.
    async fn dynamic_update(&self, desired: &str, file_value: &str) -> Result<bool, RestartError> {
        if let Err(e) = self
            .kafka
            .set_advertised_listeners(self.broker_id, file_value)
            .await
        {
            tracing::warn!(error = %e, "dynamic update rejected; restarting instead");
            return Ok(false);
        }
        let now = self.kafka.advertised_listeners(self.broker_id).await?;
        if now
            .as_deref()
            .is_some_and(|v| same_listeners(v, file_value))
        {
            tracing::info!(
                broker_id = self.broker_id,
                advertised = desired,
                "applied advertised.listeners dynamically"
            );
            return Ok(true);
        }
        tracing::warn!(
            "broker accepted the dynamic update but does not advertise it; restarting instead"
        );
        Ok(false)
    }

    async fn rolling_restart(&self, desired: &str) -> Result<Outcome, RestartError> {
        let started = Instant::now();
        let deadline = started + self.config.restart.timeout;
        let expected = self.expected_brokers().await?;
        let lock = loop {
            let lock = self.acquire(deadline).await?;
            match self.gate_until_healthy(&lock, &expected, deadline).await? {
                Gated::Healthy => break lock,
                Gated::Yielded => continue,
            }
        };
        // ZooKeeper mode: a dynamic override (from an earlier dynamic update) is stored in
        // ZooKeeper and would win over the file once the broker is back.
        if self.role.dynamic_advertised_listeners() {
            match self
                .kafka
                .clear_dynamic_advertised_listeners(self.broker_id)
                .await
            {
                Ok(true) => tracing::info!(
                    broker_id = self.broker_id,
                    "removed the dynamic advertised.listeners override before the restart"
                ),
                Ok(false) => {}
                Err(e) => {
                    self.release(&lock).await?;
                    return Err(e.into());
                }
            }
        }
        let command_result = self.run_restart_command(&lock).await?;
        // A failed command may still have restarted Kafka: what counts is whether the broker
        // comes back. If it does not, the lock stays (phase failed) and no other broker restarts.
        if let Err(e) = &command_result {
            tracing::error!(error = %e, "restart command failed; verifying the broker anyway");
        }
        let verified = self.verify_and_release(&lock, desired, started).await;
        match (verified, command_result) {
            (Ok(outcome), _) => Ok(outcome),
            (Err(e), Ok(())) => Err(e),
            (Err(_), Err(command)) => Err(command),
        }
    }

    /// Holding the lock: waits for `healthy_checks` consecutive healthy observations, or yields
    /// the lock (ZooKeeper-mode active controller with others waiting), or gives up at the
    /// deadline (lock released, nothing restarted).
    async fn gate_until_healthy(
        &self,
        lock: &LockState,
        expected: &BTreeSet<i32>,
        deadline: Instant,
    ) -> Result<Gated, RestartError> {
        let rc = &self.config.restart;
        let mut healthy = 0;
        let mut last = GateReport::default();
        while healthy < rc.healthy_checks {
            if Instant::now() >= deadline {
                self.release(lock).await?;
                return Err(RestartError::GatesNotMet {
                    broker_id: self.broker_id,
                    checks: rc.healthy_checks,
                    timeout: rc.timeout,
                    blockers: last.blockers.join("; "),
                });
            }
            let snapshot = self.kafka.snapshot().await?;
            last = gate(&snapshot, self.broker_id, expected);
            for note in &last.notes {
                tracing::warn!(note = %note, "partition cannot stay available during the restart");
            }
            if self.yields_to_waiters(snapshot.controller_id).await? {
                tracing::info!(
                    "this broker is the active controller and others wait: yielding the lock"
                );
                self.release(lock).await?;
                let pause = rc
                    .check_interval
                    .mul_f64(rand::thread_rng().gen_range(2.0..3.0));
                tokio::time::sleep(pause).await;
                return Ok(Gated::Yielded);
            }
            if last.blockers.is_empty() {
                healthy += 1;
            } else {
                healthy = 0;
                tracing::info!(blockers = %last.blockers.join("; "), "waiting for the cluster to be healthy");
            }
            self.renew(lock, LockPhase::Gating, "waiting for health")
                .await?;
            if healthy < rc.healthy_checks {
                tokio::time::sleep(rc.check_interval).await;
            }
        }
        Ok(Gated::Healthy)
    }

    /// Whether this broker, as the ZooKeeper-mode active controller, gives the lock to waiters.
    async fn yields_to_waiters(&self, controller_id: Option<i32>) -> Result<bool, RestartError> {
        if !self.role.metadata_names_controller() || controller_id != Some(self.broker_id) {
            return Ok(false);
        }
        let current = self.read_lock().await?;
        Ok(current.as_ref().is_some_and(|l| {
            should_yield(
                self.role,
                controller_id,
                self.broker_id,
                &l.waiting,
                unix_now(),
                self.config.restart.lease,
            )
        }))
    }

    /// Runs the restart command, renewing the lease while it runs (a slow controlled shutdown
    /// may outlast the lease). The outer error: the lock was lost; the inner: the command failed.
    async fn run_restart_command(
        &self,
        lock: &LockState,
    ) -> Result<Result<(), RestartError>, RestartError> {
        let rc = &self.config.restart;
        self.renew(lock, LockPhase::Restarting, "starting the restart")
            .await?;
        tracing::warn!(broker_id = self.broker_id, command = ?rc.command, "restarting Kafka");
        let restart = self.service.restart();
        tokio::pin!(restart);
        loop {
            tokio::select! {
                result = &mut restart => return Ok(result),
                () = tokio::time::sleep(rc.lease / 3) => {
                    self.renew(lock, LockPhase::Restarting, "restarting Kafka").await?;
                }
            }
        }
    }
}
