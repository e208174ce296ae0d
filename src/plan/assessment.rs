//! Reading the NLB for one broker: its listeners into an [`Assessment`] (this broker's claim,
//! the bootstrap listener, the ports others hold), whether a new claim fits ([`no_room`]), and
//! its target groups into the registrations to change ([`plan_targets`]).
//!
//! Separate from the step planning in `plan/mod.rs` because it is what the planner reads, not
//! what it decides: `assess` runs for every NLB a pass looks at, before any step is planned.

use std::collections::BTreeSet;

use serde::Serialize;

use super::Desired;
use crate::nlb::{target_group_name, Listener, Target, TargetState, MAX_LISTENERS_PER_NLB};

/// What the listeners say about this broker and the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub(crate) struct Assessment {
    /// The bootstrap listener, if present.
    pub bootstrap: Option<Listener>,
    /// A legacy restart lock listener (an older agent, release 0.1, holds the lock); the
    /// lock itself is a target group now, which no pass reads.
    pub lock: Option<Listener>,
    /// This broker's claim: the listener in range forwarding to its dedicated group.
    pub claim: Option<Listener>,
    /// Further listeners forwarding to the dedicated group (a race between an old and a new
    /// instance of the same broker); they are deleted so each broker has exactly one port.
    pub duplicate_claims: Vec<Listener>,
    /// Ports in range held by other listeners.
    pub occupied: BTreeSet<u16>,
    /// A listener on a port in range that this agent cannot interpret (no single forward target).
    pub foreign_in_range: usize,
}

/// Reads the NLB's listeners. `keep_port` (the port in `server.properties`) decides which claim
/// survives when there are several, so clients keep the address Kafka already advertises.
pub(crate) fn assess(
    desired: &Desired,
    listeners: &[Listener],
    keep_port: Option<u16>,
) -> Assessment {
    let mut a = Assessment::default();
    let mut claims: Vec<Listener> = Vec::new();
    for l in listeners {
        if l.port == desired.bootstrap_port {
            a.bootstrap = Some(l.clone());
            continue;
        }
        if Some(l.port) == desired.lock_port {
            a.lock = Some(l.clone());
            continue;
        }
        if !desired.port_range.contains(&l.port) {
            continue;
        }
        let group = l.target_group_arn.as_deref().and_then(target_group_name);
        if group
            .is_some_and(|g| g == desired.dedicated_group || g == desired.legacy_dedicated_group)
        {
            claims.push(l.clone());
        } else {
            if group.is_none() {
                a.foreign_in_range += 1;
            }
            a.occupied.insert(l.port);
        }
    }
    claims.sort_by_key(|l| (Some(l.port) != keep_port, l.port));
    let mut claims = claims.into_iter();
    a.claim = claims.next();
    a.duplicate_claims = claims.collect();
    a
}

/// Why a new claim cannot go on the NLB `assessment` describes (`None`: it can): no free port in
/// the range (`first_candidate` is `None`), or no room under the listener quota for the claim and,
/// where there is none yet, the bootstrap listener. Pure.
pub(crate) fn no_room(
    desired: &Desired,
    assessment: &Assessment,
    listener_count: usize,
    first_candidate: Option<u16>,
) -> Option<String> {
    if first_candidate.is_none() {
        return Some(format!(
            "no free port in nlb.port_range {}-{}",
            desired.port_range.start(),
            desired.port_range.end()
        ));
    }
    let needed = 1 + usize::from(assessment.bootstrap.is_none());
    (listener_count + needed > MAX_LISTENERS_PER_NLB).then(|| {
        format!("{listener_count} of {MAX_LISTENERS_PER_NLB} listeners used, {needed} needed")
    })
}

/// Target registrations to change in one group.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub(crate) struct TargetChanges {
    /// Register this instance.
    pub register_self: bool,
    /// Stale targets to deregister: `(instance id, port)`.
    pub deregister: Vec<(String, u16)>,
}

/// Computes registrations: the dedicated group holds exactly this instance on the target port; the
/// bootstrap group holds this instance, and loses targets that were stale in the dedicated group
/// (a replaced instance of this broker). Other brokers' bootstrap targets are never touched.
pub(crate) fn plan_targets(
    desired: &Desired,
    dedicated: &[Target],
    bootstrap: &[Target],
) -> (TargetChanges, TargetChanges) {
    let is_self = |t: &Target| t.id == desired.instance_id && t.port == desired.target_port;
    let active = |t: &&Target| t.state == TargetState::Registered;
    let stale: Vec<(String, u16)> = dedicated
        .iter()
        .filter(active)
        .filter(|t| !is_self(t))
        .map(|t| (t.id.clone(), t.port))
        .collect();
    let dedicated_changes = TargetChanges {
        register_self: !dedicated.iter().filter(active).any(is_self),
        deregister: stale.clone(),
    };
    let bootstrap_changes = TargetChanges {
        register_self: !bootstrap.iter().filter(active).any(is_self),
        deregister: bootstrap
            .iter()
            .filter(active)
            .filter(|t| {
                !is_self(t)
                    && stale
                        .iter()
                        .any(|(id, port)| *id == t.id && *port == t.port)
            })
            .map(|t| (t.id.clone(), t.port))
            .collect(),
    };
    (dedicated_changes, bootstrap_changes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::tests::{desired, listener, target};

    #[test]
    fn assess_table() {
        let d = desired();
        // Empty NLB.
        let a = assess(&d, &[], None);
        assert!(a.bootstrap.is_none() && a.claim.is_none() && a.occupied.is_empty());
        // Others' claims occupy ports; ours is found; ports outside the range are ignored.
        let ls = [
            listener(10000, Some("kp-orders-5c1e-boot")),
            listener(10001, Some("kp-orders-5c1e-b1")),
            listener(10004, Some("kp-orders-5c1e-b3")),
            listener(10005, None),
            listener(443, Some("other")),
        ];
        let a = assess(&d, &ls, None);
        assert_eq!(a.bootstrap.as_ref().map(|l| l.port), Some(10000));
        assert_eq!(a.claim.as_ref().map(|l| l.port), Some(10004));
        assert_eq!(a.occupied, BTreeSet::from([10001, 10005]));
        assert_eq!(a.foreign_in_range, 1);
        // A 0.1 claim (name without the NLB) is still this broker's; another NLB's group is not.
        let ls = [
            listener(10006, Some("kp-orders-b3")),
            listener(10007, Some("kp-orders-77aa-b3")),
        ];
        let a = assess(&d, &ls, None);
        assert_eq!(a.claim.as_ref().map(|l| l.port), Some(10006));
        assert_eq!(a.occupied, BTreeSet::from([10007]));
        // Two claims: the one in server.properties survives, else the lowest.
        let ls = [
            listener(10002, Some("kp-orders-5c1e-b3")),
            listener(10007, Some("kp-orders-5c1e-b3")),
        ];
        let a = assess(&d, &ls, Some(10007));
        assert_eq!(a.claim.as_ref().map(|l| l.port), Some(10007));
        assert_eq!(
            a.duplicate_claims
                .iter()
                .map(|l| l.port)
                .collect::<Vec<_>>(),
            vec![10002]
        );
        let a = assess(&d, &ls, None);
        assert_eq!(a.claim.as_ref().map(|l| l.port), Some(10002));
    }

    #[test]
    fn target_table() {
        let d = desired();
        let none: (TargetChanges, TargetChanges) = Default::default();
        let reg_both = (
            TargetChanges {
                register_self: true,
                deregister: vec![],
            },
            TargetChanges {
                register_self: true,
                deregister: vec![],
            },
        );
        // Converged.
        assert_eq!(
            plan_targets(
                &d,
                &[target("i-new", 9094)],
                &[target("i-new", 9094), target("i-b1", 9094)]
            ),
            none
        );
        // Fresh.
        assert_eq!(plan_targets(&d, &[], &[]), reg_both);
        // Replacement: the old instance leaves both groups; other brokers stay in bootstrap.
        let (ded, boot) = plan_targets(
            &d,
            &[target("i-old", 9094)],
            &[target("i-old", 9094), target("i-b1", 9094)],
        );
        assert!(ded.register_self && boot.register_self);
        assert_eq!(ded.deregister, vec![("i-old".to_string(), 9094)]);
        assert_eq!(boot.deregister, vec![("i-old".to_string(), 9094)]);
        // Same instance on a wrong port is stale too.
        let (ded, _) = plan_targets(&d, &[target("i-new", 9092)], &[]);
        assert_eq!(ded.deregister, vec![("i-new".to_string(), 9092)]);
        // Draining self is registered again; draining others are left alone.
        let mut draining = target("i-new", 9094);
        draining.state = TargetState::Draining;
        let mut old = target("i-old", 9094);
        old.state = TargetState::Draining;
        let (ded, _) = plan_targets(&d, &[draining, old], &[target("i-new", 9094)]);
        assert!(ded.register_self && ded.deregister.is_empty());
    }
}
