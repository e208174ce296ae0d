//! The pure planner: from (desired, observed) to the steps a pass takes.
//!
//! Nothing here performs I/O. [`assess`] reads the NLB's listeners into claims; [`plan`] turns
//! (desired, observed) into the ordered [`Step`]s of a pass, the file write included. The
//! executor ([`crate::execute`]) runs exactly these steps and the `plan` command prints them, so
//! what is shown is what a pass does, by construction; the only differences are races with other
//! hosts, which the executor resolves inside a step and reports.
//!
//! An instance that is leaving ([`crate::lifecycle`]) is *drained*: its plan has at most one step,
//! [`Step::LeaveBootstrap`]. It registers nothing, creates nothing, keeps its claim (a replacement
//! with the same broker id gets the port back) and never writes the file.
//!
//! Layout: reading the NLB ([`assess`], [`no_room`], [`plan_targets`]) in `assessment.rs`, who this
//! host is and the ports a claim tries ([`Context`], [`claim_candidates`]) in `context.rs`; this
//! file holds the desired and observed state and the steps ([`plan`], [`nlb_steps`]).

mod assessment;
mod context;

pub(crate) use assessment::{assess, no_room, plan_targets, Assessment};
pub(crate) use context::{claim_candidates, claim_candidates_for, Context};

use std::ops::RangeInclusive;
use std::path::PathBuf;

use serde::Serialize;

use crate::lifecycle::{LeaveReason, Lifecycle};
use crate::nlb::{Target, TargetState};
use crate::properties::{self, EditError, ListenerEdit};

/// What this broker should look like on the NLB.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Desired {
    /// Index of this NLB in the configured list (`{shard}`).
    pub shard: usize,
    /// The NLB this shape is on.
    pub lb_arn: String,
    /// Broker id.
    pub broker_id: i32,
    /// This instance.
    pub instance_id: String,
    /// Kafka's local port for the managed listener (target port).
    pub target_port: u16,
    /// Ports claimable for per-broker listeners.
    pub port_range: RangeInclusive<u16>,
    /// Port of the bootstrap listener.
    pub bootstrap_port: u16,
    /// Port of a legacy restart lock listener (older agents, release 0.1, made the lock a listener; see
    /// [`crate::compat::legacy_lock_port`]); `None`: none can exist.
    pub lock_port: Option<u16>,
    /// Name of this broker's dedicated target group.
    pub dedicated_group: String,
    /// Release 0.1's name for it (without the NLB), still recognized as this broker's claim.
    pub legacy_dedicated_group: String,
    /// Name of the cluster's bootstrap target group.
    pub bootstrap_group: String,
    /// `server.properties`.
    pub properties_path: PathBuf,
    /// The managed listener as the file must say it; `advertised_port` is filled in per port.
    pub listener: ListenerEdit,
    /// `broker.rack` as the file must say it (`None`: left alone).
    pub rack: Option<String>,
    /// `nlb.idle_timeout`: what a listener this agent creates is given (see [`crate::idle`]).
    pub idle_timeout: crate::idle::IdleTimeout,
}

impl Desired {
    /// The listener edit for a claim on `port`.
    pub(crate) fn edit_for(&self, port: u16) -> ListenerEdit {
        ListenerEdit {
            advertised_port: port,
            ..self.listener.clone()
        }
    }

    /// `host:port` advertised for a claim on `port`.
    pub(crate) fn endpoint(&self, port: u16) -> String {
        format!("{}:{port}", self.listener.advertised_host)
    }

    /// `text` as it must be for a claim on `port`: the listener, then `broker.rack`, in one
    /// write. `None`: it already is.
    pub(crate) fn edited_file(&self, text: &str, port: u16) -> Result<Option<String>, EditError> {
        let listener = properties::apply_listener(text, &self.edit_for(port))?;
        let Some(rack) = &self.rack else {
            return Ok(listener);
        };
        Ok(properties::apply_rack(listener.as_deref().unwrap_or(text), rack)?.or(listener))
    }

    /// The `broker.rack` change a write makes to a file whose rack is `file_rack`, if any.
    pub(crate) fn rack_change(&self, file_rack: Option<&str>) -> Option<RackChange> {
        let to = self.rack.as_deref()?;
        (file_rack != Some(to)).then(|| RackChange {
            from: file_rack.map(str::to_string),
            to: to.to_string(),
        })
    }
}

/// A `broker.rack` change (KIP-36 rack awareness; consumers fetch from the closest replica with
/// `client.rack`, KIP-392).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct RackChange {
    /// The rack in the file before (`None`: unset).
    pub from: Option<String>,
    /// The rack written.
    pub to: String,
}

/// Everything a pass looks at (read by `Agent::observe`).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Observed {
    /// The NLB (index into [`Context::shards`]) the claim is on, or the one a
    /// new claim goes to: the first in order with a free port and room under the listener quota.
    pub shard: usize,
    /// NLBs read by this observation that had no room for a new claim (index, why).
    pub full: Vec<(usize, String)>,
    /// Listener-derived claims.
    pub assessment: Assessment,
    /// Targets of the dedicated group (empty if it has no claim yet).
    pub dedicated_targets: Vec<Target>,
    /// Targets of the bootstrap group (empty if there is no bootstrap listener yet).
    pub bootstrap_targets: Vec<Target>,
    /// Advertised endpoint of the managed listener in `server.properties` now.
    pub file_endpoint: Option<String>,
    /// `broker.rack` in `server.properties` now.
    pub file_rack: Option<String>,
    /// `server.properties` as read by this observation.
    #[serde(skip)]
    pub properties_text: String,
    /// Whether this instance is leaving (scale-in, Spot interruption): then it is drained.
    pub lifecycle: Lifecycle,
    /// The certificate pre-flight's result (`None` for a leaving instance, which advertises
    /// nothing new).
    pub certificate: Option<crate::tls::Outcome>,
}

impl Observed {
    /// The port `server.properties` advertises for the managed listener, if any.
    pub(crate) fn file_port(&self) -> Option<u16> {
        endpoint_port(self.file_endpoint.as_deref())
    }
}

/// The port of a `host:port` endpoint.
pub(crate) fn endpoint_port(endpoint: Option<&str>) -> Option<u16> {
    endpoint
        .and_then(|e| e.rsplit_once(':'))
        .and_then(|(_, p)| p.parse().ok())
}

/// Which claim's port a file write advertises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ClaimOf {
    /// The claim the observation found: its port is known and fixed.
    Observed,
    /// The claim this plan's ClaimPort step makes: the write advertises the port it gets (the
    /// plan shows its first candidate).
    ThisPass,
}

/// Which of this broker's target groups on its NLB a step acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum GroupKind {
    /// The group only this broker is in, forwarded to by its claim listener.
    Dedicated,
    /// The cluster's group on this NLB, forwarded to by the bootstrap listener.
    Bootstrap,
}

impl std::fmt::Display for GroupKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            GroupKind::Dedicated => "dedicated",
            GroupKind::Bootstrap => "bootstrap",
        })
    }
}

/// Which listener a step acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum ListenerKind {
    /// This broker's claim listener (its own port).
    Claim,
    /// The cluster's bootstrap listener on this NLB.
    Bootstrap,
}

impl std::fmt::Display for ListenerKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ListenerKind::Claim => "claim",
            ListenerKind::Bootstrap => "bootstrap",
        })
    }
}

/// One change a pass makes, in execution order. A step is an instruction: it holds what the
/// executor needs (the ports a claim tries, in order; which group or listener), so what `plan`
/// prints is what `run` does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub(crate) enum Step {
    /// Create the bootstrap target group and its listener (whoever comes first wins).
    CreateBootstrap {
        /// Target group name.
        group: String,
        /// Listener port.
        port: u16,
    },
    /// Create (or adopt) the dedicated target group.
    CreateDedicatedGroup {
        /// Target group name.
        group: String,
    },
    /// Claim a port with a new listener: the candidates in order (see
    /// [`crate::registry::candidates`]); a port another host takes first moves the claim on.
    ClaimPort {
        /// First candidate.
        first_candidate: u16,
        /// Free ports in range.
        free_ports: usize,
        /// The ports to try, in order (`first_candidate` first).
        candidates: Vec<u16>,
        /// The port claimed: `None` in a plan, set in the executed step.
        #[serde(skip_serializing_if = "Option::is_none")]
        claimed: Option<u16>,
    },
    /// Delete a duplicate claim.
    DeleteDuplicateListener {
        /// Its port.
        port: u16,
        /// Its ARN.
        arn: String,
    },
    /// Register this instance in a group.
    Register {
        /// Which group.
        group: GroupKind,
        /// Instance id.
        instance_id: String,
        /// Port.
        port: u16,
    },
    /// Deregister stale targets from a group.
    Deregister {
        /// Which group.
        group: GroupKind,
        /// The targets.
        targets: Vec<(String, u16)>,
    },
    /// Drain: take this instance out of the bootstrap target group because it is leaving. Its
    /// claim, dedicated group and file stay.
    LeaveBootstrap {
        /// Its registrations in the bootstrap group: `(instance id, port)`.
        targets: Vec<(String, u16)>,
        /// Why it is leaving.
        reason: String,
    },
    /// Set the TCP idle timeout of a listener this pass created (see [`crate::idle`]): the
    /// claim's or the bootstrap listener (when this agent won its creation).
    SetIdleTimeout {
        /// Which listener.
        listener: ListenerKind,
        /// `tcp.idle_timeout.seconds`.
        seconds: u32,
    },
    /// Rewrite `server.properties`.
    WriteProperties {
        /// The file.
        path: String,
        /// Advertised endpoint in the file now.
        from: Option<String>,
        /// Advertised endpoint after the write.
        to: String,
        /// The NLB port `to` names; in a plan whose claim is `ThisPass`, its first candidate,
        /// and in the executed step the port the claim got.
        port: u16,
        /// Which claim's port the write advertises.
        claim: ClaimOf,
        /// The `broker.rack` change the same write makes, if `broker.rack` is configured and
        /// differs (a different rack already in the file is replaced and reported here).
        #[serde(skip_serializing_if = "Option::is_none")]
        rack: Option<RackChange>,
    },
}

impl Step {
    /// Whether the step changes the NLB (everything but the file write).
    pub(crate) fn touches_nlb(&self) -> bool {
        !matches!(self, Step::WriteProperties { .. })
    }
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Step::CreateBootstrap { group, port } => {
                write!(
                    f,
                    "create bootstrap target group {group} and listener on port {port}"
                )
            }
            Step::CreateDedicatedGroup { group } => {
                write!(f, "create dedicated target group {group}")
            }
            Step::ClaimPort {
                first_candidate,
                free_ports,
                claimed,
                ..
            } => {
                write!(
                    f,
                    "claim a port: try {first_candidate} first ({free_ports} free in range)"
                )?;
                match claimed {
                    Some(port) => write!(f, "; claimed {port}"),
                    None => Ok(()),
                }
            }
            Step::DeleteDuplicateListener { port, arn } => {
                write!(f, "delete duplicate claim on port {port} ({arn})")
            }
            Step::Register {
                group,
                instance_id,
                port,
            } => write!(
                f,
                "register {instance_id}:{port} in the {group} target group"
            ),
            Step::Deregister { group, targets } => write!(
                f,
                "deregister stale {} from the {group} target group",
                target_list(targets)
            ),
            Step::SetIdleTimeout { listener, seconds } => write!(
                f,
                "set the {listener} listener's TCP idle timeout to {seconds} s (above Kafka's connections.max.idle.ms)"
            ),
            Step::LeaveBootstrap { targets, reason } => write!(
                f,
                "leave the bootstrap target group: deregister {} (instance leaving: {reason})",
                target_list(targets)
            ),
            Step::WriteProperties {
                path,
                from,
                to,
                rack,
                ..
            } => {
                write!(
                    f,
                    "write {path}: advertised {} -> {to}",
                    from.as_deref().unwrap_or("(none)")
                )?;
                match rack {
                    Some(r) => write!(
                        f,
                        "; broker.rack {} -> {}",
                        r.from.as_deref().unwrap_or("(none)"),
                        r.to
                    ),
                    None => Ok(()),
                }
            }
        }
    }
}

/// `id:port, id:port`.
fn target_list(targets: &[(String, u16)]) -> String {
    targets
        .iter()
        .map(|(id, port)| format!("{id}:{port}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The steps of a pass, in execution order: the NLB steps, then the file write when the file does
/// not yet advertise the claim (the observed claim's port, else the first port a new claim tries;
/// such a write is bound to the claim and advertises the port it gets, see [`ClaimOf`]).
/// `candidates` are the ports a new claim tries, in order, from [`crate::registry::candidates`]
/// (empty: the range is full). A leaving instance gets [`drain_steps`] instead.
pub(crate) fn plan(
    desired: &Desired,
    observed: &Observed,
    candidates: &[u16],
) -> Result<Vec<Step>, EditError> {
    let first_candidate = candidates.first().copied();
    if let Some(reason) = observed.lifecycle.leaving() {
        return Ok(drain_steps(desired, &observed.bootstrap_targets, reason));
    }
    let mut steps = nlb_steps(
        desired,
        &observed.assessment,
        &observed.dedicated_targets,
        &observed.bootstrap_targets,
        candidates,
    );
    if let Some(seconds) = crate::idle::target(desired.idle_timeout, &observed.properties_text) {
        steps = with_idle_timeouts(steps, seconds);
    }
    let port = match (&observed.assessment.claim, first_candidate) {
        (Some(l), _) => Some((l.port, ClaimOf::Observed)),
        (None, Some(first)) => Some((first, ClaimOf::ThisPass)),
        (None, None) => None,
    };
    if let Some((port, claim)) = port {
        steps.extend(file_step(desired, observed, port, claim)?);
    }
    Ok(steps)
}

/// The file write that makes the observed file advertise `port`, if it does not already (pure).
/// [`plan`]'s last step, and the whole re-plan after a claim moved (see
/// [`crate::execute::Replan::ClaimMoved`]).
pub(crate) fn file_step(
    desired: &Desired,
    observed: &Observed,
    port: u16,
    claim: ClaimOf,
) -> Result<Option<Step>, EditError> {
    let edited = desired.edited_file(&observed.properties_text, port)?;
    Ok(edited.map(|_| Step::WriteProperties {
        path: desired.properties_path.display().to_string(),
        from: observed.file_endpoint.clone(),
        to: desired.endpoint(port),
        port,
        claim,
        rack: desired.rack_change(observed.file_rack.as_deref()),
    }))
}

/// A listener's idle timeout is set right after the step that creates it (pure).
fn with_idle_timeouts(steps: Vec<Step>, seconds: u32) -> Vec<Step> {
    let mut out = Vec::with_capacity(steps.len() + 2);
    for step in steps {
        let listener = match &step {
            Step::CreateBootstrap { .. } => Some(ListenerKind::Bootstrap),
            Step::ClaimPort { .. } => Some(ListenerKind::Claim),
            _ => None,
        };
        out.push(step);
        if let Some(listener) = listener {
            out.push(Step::SetIdleTimeout { listener, seconds });
        }
    }
    out
}

/// The steps of a leaving instance: out of the bootstrap group (every registration of this
/// instance, whatever its port), nothing else. Empty once drained.
pub(crate) fn drain_steps(
    desired: &Desired,
    bootstrap: &[Target],
    reason: &LeaveReason,
) -> Vec<Step> {
    let targets: Vec<(String, u16)> = bootstrap
        .iter()
        .filter(|t| t.state == TargetState::Registered && t.id == desired.instance_id)
        .map(|t| (t.id.clone(), t.port))
        .collect();
    if targets.is_empty() {
        return Vec::new();
    }
    vec![Step::LeaveBootstrap {
        targets,
        reason: reason.to_string(),
    }]
}

/// Turns an assessment and observed targets into NLB steps. `candidates` are the ports a new
/// claim tries, in order (from [`crate::registry::candidates`]), empty when the range is full.
pub(crate) fn nlb_steps(
    desired: &Desired,
    assessment: &Assessment,
    dedicated_targets: &[Target],
    bootstrap_targets: &[Target],
    candidates: &[u16],
) -> Vec<Step> {
    let mut steps = Vec::new();
    if assessment.bootstrap.is_none() {
        steps.push(Step::CreateBootstrap {
            group: desired.bootstrap_group.clone(),
            port: desired.bootstrap_port,
        });
    }
    if assessment.claim.is_none() {
        steps.push(Step::CreateDedicatedGroup {
            group: desired.dedicated_group.clone(),
        });
        steps.push(Step::ClaimPort {
            first_candidate: candidates.first().copied().unwrap_or(0),
            free_ports: desired.port_range.clone().count() - assessment.occupied.len(),
            candidates: candidates.to_vec(),
            claimed: None,
        });
    }
    for dup in &assessment.duplicate_claims {
        steps.push(Step::DeleteDuplicateListener {
            port: dup.port,
            arn: dup.arn.clone(),
        });
    }
    let (dedicated, bootstrap) = plan_targets(desired, dedicated_targets, bootstrap_targets);
    for (name, changes) in [
        (GroupKind::Dedicated, dedicated),
        (GroupKind::Bootstrap, bootstrap),
    ] {
        if !changes.deregister.is_empty() {
            steps.push(Step::Deregister {
                group: name,
                targets: changes.deregister,
            });
        }
        if changes.register_self {
            steps.push(Step::Register {
                group: name,
                instance_id: desired.instance_id.clone(),
                port: desired.target_port,
            });
        }
    }
    steps
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::nlb::Listener;

    pub(crate) fn desired() -> Desired {
        Desired {
            shard: 0,
            lb_arn: "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/net/kafka/1"
                .into(),
            broker_id: 3,
            instance_id: "i-new".into(),
            target_port: 9094,
            port_range: 10001..=10010,
            bootstrap_port: 10000,
            lock_port: Some(9999),
            dedicated_group: "kp-orders-5c1e-b3".into(),
            legacy_dedicated_group: "kp-orders-b3".into(),
            bootstrap_group: "kp-orders-5c1e-boot".into(),
            properties_path: "/etc/kafka/server.properties".into(),
            listener: ListenerEdit {
                name: "PRIVATELINK".into(),
                bind_port: 9094,
                advertised_host: "kafka-use1-az1.x".into(),
                advertised_port: 0,
                security_protocol: "SSL".into(),
            },
            rack: None,
            idle_timeout: crate::idle::IdleTimeout::Off,
        }
    }
    fn tg(name: &str) -> String {
        format!("arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/{name}/0123")
    }
    pub(super) fn listener(port: u16, group: Option<&str>) -> Listener {
        Listener {
            arn: format!("arn:listener/{port}"),
            port,
            target_group_arn: group.map(tg),
        }
    }
    pub(super) fn target(id: &str, port: u16) -> Target {
        Target {
            id: id.into(),
            port,
            state: TargetState::Registered,
            health: "healthy".into(),
            reason: None,
        }
    }

    #[test]
    fn a_leaving_instance_only_leaves_the_bootstrap_group() {
        let d = desired();
        let reason = crate::lifecycle::LeaveReason::AutoScaling {
            target_state: "Terminated".into(),
        };
        let mut draining = target("i-new", 9094);
        draining.state = TargetState::Draining;
        // (bootstrap targets, deregistered)
        type Targets = Vec<(String, u16)>;
        let rows: Vec<(Vec<Target>, Targets)> = vec![
            (vec![], vec![]),
            (vec![target("i-b1", 9094)], vec![]),
            (vec![draining], vec![]),
            (
                vec![target("i-b1", 9094), target("i-new", 9094)],
                vec![("i-new".into(), 9094)],
            ),
            // Every registration of this instance, on any port.
            (
                vec![target("i-new", 9092), target("i-new", 9094)],
                vec![("i-new".into(), 9092), ("i-new".into(), 9094)],
            ),
        ];
        for (bootstrap, deregistered) in rows {
            let steps = drain_steps(&d, &bootstrap, &reason);
            let expected: Vec<Step> = if deregistered.is_empty() {
                vec![]
            } else {
                vec![Step::LeaveBootstrap {
                    targets: deregistered,
                    reason: "Auto Scaling target lifecycle state Terminated".into(),
                }]
            };
            assert_eq!(steps, expected, "{bootstrap:?}");
        }
        // Whole plan: an empty NLB, no claim, a file to write: a leaving instance does none of it.
        let observed = Observed {
            shard: 0,
            full: Vec::new(),
            assessment: assess(&d, &[], None),
            dedicated_targets: vec![],
            bootstrap_targets: vec![],
            file_endpoint: None,
            file_rack: None,
            properties_text: "listeners=PLAINTEXT://:9092\n".into(),
            lifecycle: crate::lifecycle::Lifecycle::Leaving { reason },
            certificate: None,
        };
        assert_eq!(plan(&d, &observed, &[10004]).unwrap(), vec![]);
        let step = &drain_steps(
            &d,
            &[target("i-new", 9094)],
            observed.lifecycle.leaving().unwrap(),
        )[0];
        assert_eq!(
            step.to_string(),
            "leave the bootstrap target group: deregister i-new:9094 (instance leaving: Auto Scaling target lifecycle state Terminated)"
        );
        assert!(step.touches_nlb());
    }

    #[test]
    fn steps_for_first_broker_and_steady_state() {
        let d = desired();
        let a = assess(&d, &[], None);
        let steps = nlb_steps(&d, &a, &[], &[], &[10004, 10007]);
        let kinds: Vec<String> = steps.iter().map(|s| s.to_string()).collect();
        assert_eq!(
            kinds,
            vec![
                "create bootstrap target group kp-orders-5c1e-boot and listener on port 10000",
                "create dedicated target group kp-orders-5c1e-b3",
                "claim a port: try 10004 first (10 free in range)",
                "register i-new:9094 in the dedicated target group",
                "register i-new:9094 in the bootstrap target group",
            ]
        );
        let ls = [
            listener(10000, Some("kp-orders-5c1e-boot")),
            listener(10004, Some("kp-orders-5c1e-b3")),
        ];
        let a = assess(&d, &ls, Some(10004));
        assert!(nlb_steps(
            &d,
            &a,
            &[target("i-new", 9094)],
            &[target("i-new", 9094)],
            &[]
        )
        .is_empty());
    }

    /// The claim step counts the ports still free: the range less the ports other brokers hold.
    #[test]
    fn the_claim_step_counts_the_ports_left() {
        let d = desired();
        let ls = [
            listener(10000, Some("kp-orders-5c1e-boot")),
            listener(10001, Some("kp-orders-5c1e-b1")),
            listener(10002, Some("kp-orders-5c1e-b2")),
        ];
        let a = assess(&d, &ls, None);
        let steps = nlb_steps(&d, &a, &[], &[], &[10004, 10007]);
        assert!(
            steps.iter().any(|s| matches!(
                s,
                Step::ClaimPort {
                    free_ports: 8,
                    first_candidate: 10004,
                    ..
                }
            )),
            "{steps:?}"
        );
    }
}
