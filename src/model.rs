//! The pass's model: who this host is ([`crate::plan::Context`] lives with the planner), why a
//! pass failed ([`Error`]), what the executed steps have established ([`Progress`], [`Claim`]),
//! what a pass did ([`PassReport`]) and the agent's side-effect seams ([`Agent`]).
//!
//! A leaf of the pass: [`crate::reconcile`] (observe, check, run) and [`crate::execute`] (carry
//! out the steps) both build on it, and it on neither.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use serde::Serialize;

use crate::broker_id::BrokerIdError;
use crate::config::Config;
use crate::ec2::Ec2Error;
use crate::lifecycle::Lifecycle;
use crate::metadata::MetadataError;
use crate::nlb::{CallCounter, NlbError, Target};
use crate::plan::{Observed, Step};
use crate::properties::PropertiesError;
use crate::steady::Steady;

/// Why a pass failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    /// Instance metadata could not be read.
    #[error(transparent)]
    Metadata(#[from] MetadataError),
    /// The broker id is missing, invalid or contested.
    #[error(transparent)]
    BrokerId(#[from] BrokerIdError),
    /// An ELBv2 call failed.
    #[error(transparent)]
    Nlb(#[from] NlbError),
    /// EC2 DescribeTags failed.
    #[error(transparent)]
    Ec2(#[from] Ec2Error),
    /// `server.properties` or a `meta.properties` could not be read, edited or written.
    #[error(transparent)]
    Properties(#[from] PropertiesError),
    /// Every port in the range is held by another listener.
    #[error("no free port in nlb.port_range {range} on {lb_arn} ({tried} tried); removed target group {group} again")]
    RangeExhausted {
        /// The configured range.
        range: String,
        /// The NLB.
        lb_arn: String,
        /// Ports attempted in this pass.
        tried: usize,
        /// The dedicated target group that was cleaned up.
        group: String,
    },
    /// Making Kafka use the new listener failed.
    #[error(transparent)]
    Restart(#[from] crate::restart::RestartError),
    /// The listener on the bootstrap port does not forward to a single target group.
    #[error("listener {arn} on bootstrap port {port} does not forward to a single target group; fix or remove it")]
    BootstrapUnusable {
        /// Listener ARN.
        arn: String,
        /// Its port.
        port: u16,
    },
    /// The listener on the bootstrap port belongs to another cluster (or to nobody the agent
    /// knows): joining it would send this cluster's clients to another cluster's brokers.
    #[error("the listener on nlb.bootstrap_port {port} of {lb_arn} forwards to target group {group}, which belongs to {owner}, not to cluster {cluster}; give this cluster its own bootstrap_port (nothing was changed)")]
    BootstrapForeign {
        /// The port.
        port: u16,
        /// The NLB.
        lb_arn: String,
        /// The listener's target group.
        group: String,
        /// Who owns it: `cluster X`, or a note that it has no cluster tag.
        owner: String,
        /// This cluster.
        cluster: String,
    },
    /// The NLB is not enabled in this instance's Availability Zone: its targets here would never
    /// receive traffic.
    #[error("{lb_arn} is not enabled in this instance's Availability Zone {az_id} ({az}); it is enabled in [{enabled}]. Add a subnet in {az} to the NLB (nothing was created, server.properties unchanged)")]
    AzNotEnabled {
        /// The NLB.
        lb_arn: String,
        /// AZ ID.
        az_id: String,
        /// AZ name.
        az: String,
        /// The zones the NLB is enabled in.
        enabled: String,
    },
    /// Every configured NLB is full (several NLBs; with one, the range or quota error says it).
    #[error("all {count} NLBs in nlb.load_balancer_arns are full: {details}. Each NLB holds at most {max} listeners, AWS's quota per Network Load Balancer (not adjustable), one of them the bootstrap; add an NLB to nlb.load_balancer_arns (nothing was created, server.properties unchanged)")]
    AllFull {
        /// Number of NLBs.
        count: usize,
        /// The quota.
        max: usize,
        /// Per NLB: why it has no room.
        details: String,
    },
    /// The edit the agent would make breaks a listener rule Kafka checks at start-up: real Kafka
    /// would refuse to start on the file (see [`crate::kafka_rules`]).
    #[error("{path}: Kafka would refuse to start after the agent's edit: {violation}; {hint} (nothing was created, server.properties unchanged)")]
    KafkaWouldRefuse {
        /// `server.properties`.
        path: String,
        /// The first rule the edit would break, in Kafka's words.
        violation: crate::kafka_rules::Violation,
        /// Which agent setting to change.
        hint: String,
    },
    /// The managed listener is TLS and its certificate does not cover a name the agent
    /// advertises, is not valid now, or its keystore cannot be read (see [`crate::tls`]).
    #[error("{0} (nothing was created, server.properties unchanged)")]
    Certificate(String),
    /// CreateListener answered `TooManyListeners`.
    #[error("{lb_arn} already has {max} listeners, AWS's quota per Network Load Balancer (not adjustable): cannot create the listener on port {port}; removed target group {group} again (nothing left behind)")]
    ListenerQuota {
        /// The NLB.
        lb_arn: String,
        /// The port that could not be taken.
        port: u16,
        /// The target group that was cleaned up.
        group: String,
        /// The quota.
        max: usize,
    },
}

impl Error {
    /// Failure kind, the `kind` label of `kplink_pass_failures_total`.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Error::Metadata(_) => "metadata",
            Error::BrokerId(_) => "broker_id",
            Error::Nlb(_)
            | Error::Ec2(_)
            | Error::BootstrapUnusable { .. }
            | Error::BootstrapForeign { .. }
            | Error::AzNotEnabled { .. } => "aws",
            Error::Properties(_) | Error::KafkaWouldRefuse { .. } => "properties",
            Error::Certificate(_) => "certificate",
            Error::RangeExhausted { .. } | Error::ListenerQuota { .. } | Error::AllFull { .. } => {
                "port_range"
            }
            Error::Restart(
                crate::restart::RestartError::Kafka(_)
                | crate::restart::RestartError::Unreachable { .. }
                | crate::restart::RestartError::Starting { .. },
            ) => "kafka",
            Error::Restart(_) => "restart",
        }
    }
}

/// This broker's claim as it stands during a pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Claim {
    /// The claimed port.
    pub port: u16,
    /// The claiming listener.
    pub listener_arn: String,
    /// The dedicated target group it forwards to.
    pub target_group_arn: String,
}

/// What the executed steps have established so far (starts from the observation).
#[derive(Debug, Clone, Default)]
pub(crate) struct Progress {
    /// The bootstrap group, once it exists.
    pub bootstrap_tg: Option<String>,
    /// The bootstrap listener, when this pass created it.
    pub bootstrap_created: Option<String>,
    /// Its targets (re-read when another host's bootstrap was joined).
    pub bootstrap_targets: Vec<Target>,
    /// A dedicated group created for a claim not made yet.
    pub pending_group: Option<String>,
    /// The claim, once it exists.
    pub claim: Option<Claim>,
    /// Groups this pass created or adopted (their health check is already right).
    pub ensured: Vec<String>,
    /// Ports another host took first during this pass.
    pub collisions: u32,
    /// How races with other hosts were resolved, one line each.
    pub races: Vec<String>,
    /// Whether `server.properties` was rewritten.
    pub properties_written: bool,
    /// The steps executed so far, as executed.
    pub done: Vec<Step>,
}

impl Progress {
    /// The starting point: what was observed.
    pub(crate) fn from_observed(observed: &Observed) -> Progress {
        let a = &observed.assessment;
        Progress {
            bootstrap_tg: a
                .bootstrap
                .as_ref()
                .and_then(|l| l.target_group_arn.clone()),
            bootstrap_targets: observed.bootstrap_targets.clone(),
            claim: a.claim.as_ref().map(|l| Claim {
                port: l.port,
                listener_arn: l.arn.clone(),
                target_group_arn: l.target_group_arn.clone().unwrap_or_default(),
            }),
            ..Progress::default()
        }
    }
}

/// What a pass did.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct PassReport {
    /// Broker id.
    pub broker_id: i32,
    /// Instance id.
    pub instance_id: String,
    /// AZ ID.
    pub az_id: String,
    /// The claimed port.
    pub port: u16,
    /// Index of the NLB holding the claim in the configured list (`{shard}`).
    pub shard: usize,
    /// The NLB holding the claim.
    pub load_balancer_arn: String,
    /// Advertised endpoint, `host:port`.
    pub advertised: String,
    /// The claiming listener.
    pub listener_arn: String,
    /// The dedicated target group.
    pub target_group_arn: String,
    /// The bootstrap target group.
    pub bootstrap_target_group_arn: String,
    /// A legacy restart lock listener (on the port of
    /// [`crate::compat::legacy_lock_port`], left by an older agent, release 0.1)
    /// as the pass saw it; `None` almost always: the lock is a target group now, which the pass
    /// does not read.
    pub lock_listener_arn: Option<String>,
    /// Whether this instance is leaving; if so the pass drained it (out of the bootstrap group,
    /// claim and file kept) and Kafka is left alone.
    pub lifecycle: Lifecycle,
    /// The certificate pre-flight's result (see [`crate::tls`]).
    pub certificate: Option<crate::tls::Outcome>,
    /// Changes made, in order: the planned steps as executed.
    pub changes: Vec<Step>,
    /// How races with other hosts were resolved during the pass (see [`crate::execute`]).
    pub races: Vec<String>,
    /// Ports that another host took first during this pass.
    pub claim_collisions: u32,
    /// Whether `server.properties` was rewritten.
    pub properties_written: bool,
    /// AWS calls of this pass, by operation.
    pub aws_calls: std::collections::BTreeMap<&'static str, u64>,
    /// Throttled answers this pass rode through, by operation (the account's API budget was
    /// exhausted for a moment: back-off, not failure).
    pub aws_throttled: std::collections::BTreeMap<&'static str, u64>,
    /// Wall time of the pass.
    pub elapsed_ms: u128,
}

impl PassReport {
    /// Logs the pass with the structured fields operators filter on (journald: `BROKER_ID`, …).
    pub(crate) fn log(&self) {
        tracing::info!(
            broker_id = self.broker_id,
            port = self.port,
            shard = self.shard,
            load_balancer_arn = %self.load_balancer_arn,
            listener_arn = %self.listener_arn,
            target_group_arn = %self.target_group_arn,
            changes = self.changes.len(),
            aws_calls = self.aws_calls.values().sum::<u64>(),
            aws_throttled = self.aws_throttled.values().sum::<u64>(),
            draining = self.lifecycle.is_leaving(),
            "pass complete"
        );
    }
}

/// The agent's side-effect ports and configuration.
pub(crate) struct Agent<M, L, T> {
    /// Validated configuration.
    pub config: Config,
    /// Where it was loaded from (for messages).
    pub config_path: PathBuf,
    /// Instance metadata.
    pub metadata: M,
    /// The load balancer.
    pub lb: L,
    /// EC2 tag fallback.
    pub tags: T,
    /// AWS call counter shared with the adapters.
    pub calls: CallCounter,
    /// Bound on waiting for instance metadata.
    pub metadata_timeout: Duration,
    /// Checks that passed once in this process and need not be repeated every pass.
    pub checked: Checked,
    /// The converged observation the daemon keeps between passes (see [`crate::steady`]).
    pub steady: Steady,
    /// `server.properties` as last read: read again only when it changed on disk.
    pub file: crate::properties::CachedFile,
}

impl<M, L, T> Agent<M, L, T> {
    /// `server.properties` now: the text last read if the file is unchanged on disk since.
    pub(crate) fn server_properties(
        &self,
    ) -> Result<std::sync::Arc<str>, crate::properties::PropertiesError> {
        self.file.read(&self.config.broker.server_properties)
    }
}

/// Once-per-process checks that passed (AZ coverage, bootstrap ownership, health check port),
/// keyed by what they were about, so the steady state stays at three reads per pass.
#[derive(Debug, Default)]
pub(crate) struct Checked(Mutex<BTreeSet<String>>);

impl Checked {
    pub(crate) fn has(&self, key: &str) -> bool {
        self.0.lock().map(|s| s.contains(key)).unwrap_or(false)
    }
    pub(crate) fn mark(&self, key: String) {
        if let Ok(mut s) = self.0.lock() {
            s.insert(key);
        }
    }
}
