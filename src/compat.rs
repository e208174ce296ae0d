//! Release 0.1 compatibility, in one module so that it can be deleted in one go once no cluster
//! runs a 0.1 agent or holds its resources. Everything 0.1 left behind that this release still
//! recognizes is here:
//!
//! - **The restart lock listener.** 0.1 held the cluster's restart lock as a *listener* on
//!   `restart.lock_port` (default [`LEGACY_LOCK_PORT`]) of the first NLB; this release holds it
//!   as a target group. While such a listener of this cluster exists it is the lock (waited for,
//!   or used until released when it is ours), so a mixed fleet never restarts two brokers at once.
//! - **Dedicated group names without the NLB** (`kp-orders-b3`): 0.1 knew one NLB, so its names
//!   do not carry the NLB's hash. A claim forwarding to one is still this broker's claim, and
//!   `decommission` removes one no other NLB uses.
//!
//! The deprecation warning for the `restart.lock_port` key stays with the configuration's other
//! warnings ([`crate::config`]); removing this module leaves that key ignored, as documented.
//! Nothing here depends on the restart or pass machinery: they call in. Deleting the module
//! means deleting its plugs too, each named after it: `Desired::lock_port` and
//! `Desired::legacy_dedicated_group` (the planner's view), `Assessment::lock` and
//! `PassReport::lock_listener_arn` (a seen lock listener), `LockKind::LegacyListener` and
//! `read_cluster_lock`'s legacy arguments (the restart lock), and
//! `unclaimed_dedicated_group`'s second half (`decommission`).

use crate::config::{Config, NlbConfig, RestartConfig};
use crate::nlb::{LoadBalancer, NlbError};
use crate::registry;

/// Where 0.1 agents put the restart lock listener when `restart.lock_port` was unset.
pub(crate) const LEGACY_LOCK_PORT: u16 = 9999;

/// The port on which a 0.1 agent may hold a lock *listener* (`restart.lock_port`, else
/// [`LEGACY_LOCK_PORT`]); `None` when that port is `nlb.bootstrap_port` or in `nlb.port_range`,
/// where 0.1 refused to put it.
pub(crate) fn legacy_lock_port(restart: &RestartConfig, nlb: &NlbConfig) -> Option<u16> {
    let port = restart.lock_port.unwrap_or(LEGACY_LOCK_PORT);
    (port != 0 && port != nlb.bootstrap_port && !nlb.port_range.contains(port)).then_some(port)
}

/// The ARN of the listener on the legacy lock port of the first NLB, if any (whose it is, the
/// caller reads from its tags).
pub(crate) async fn legacy_lock_listener(
    lb: &impl LoadBalancer,
    config: &Config,
) -> Result<Option<String>, NlbError> {
    let Some(port) = legacy_lock_port(&config.restart, &config.nlb) else {
        return Ok(None);
    };
    Ok(lb
        .listeners(&config.nlb.first_load_balancer())
        .await?
        .into_iter()
        .find(|l| l.port == port)
        .map(|l| l.arn))
}

/// 0.1's name of the dedicated group (`kp-orders-b3`), recognized on the NLB holding it.
pub(crate) fn legacy_dedicated_group_name(cluster: &str, broker_id: i32) -> String {
    format!(
        "{}{}-b{broker_id}",
        registry::PREFIX,
        registry::cluster_slug(cluster)
    )
}

/// The broker id whose dedicated group on `lb_arn` is `name`, under this release's name
/// ([`registry::broker_id_from_group`]) or 0.1's.
pub(crate) fn broker_id_from_group(cluster: &str, lb_arn: &str, name: &str) -> Option<i32> {
    registry::broker_id_from_group(cluster, lb_arn, name).or_else(|| {
        let prefix = format!("{}{}-b", registry::PREFIX, registry::cluster_slug(cluster));
        let id = name.strip_prefix(&prefix)?.parse::<i32>().ok()?;
        (id >= 0 && legacy_dedicated_group_name(cluster, id) == name).then_some(id)
    })
}

/// This broker's group under 0.1's name `legacy_name`, if it exists and no load balancer but
/// `lb_arn` (the first NLB, the only one 0.1 knew) uses it: a group another NLB forwards to is
/// not this broker's to delete.
pub(crate) async fn unshared_legacy_group(
    lb: &impl LoadBalancer,
    legacy_name: &str,
    lb_arn: &str,
) -> Result<Option<String>, NlbError> {
    let Some(arn) = lb.find_target_group(legacy_name).await? else {
        return Ok(None);
    };
    let info = lb.target_group_info(std::slice::from_ref(&arn)).await?;
    Ok(info
        .iter()
        .all(|i| i.load_balancer_arns.iter().all(|l| l == lb_arn))
        .then_some(arn))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::{bootstrap_group_name, dedicated_group_name, MAX_TARGET_GROUP_NAME};

    const LB: &str = "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/net/kafka/50dc6c495c0c9188";

    #[test]
    fn the_lock_listener_port_is_the_key_else_its_old_default_never_a_claim_port() {
        let nlb = crate::config::test_util::parse(crate::config::test_util::MINIMAL)
            .unwrap()
            .nlb;
        let with = |port| RestartConfig {
            lock_port: port,
            ..RestartConfig::default()
        };
        assert_eq!(legacy_lock_port(&with(None), &nlb), Some(LEGACY_LOCK_PORT));
        assert_eq!(legacy_lock_port(&with(Some(9000)), &nlb), Some(9000));
        // Never a claim or the bootstrap port (0.1 refused those), nor 0.
        assert_eq!(legacy_lock_port(&with(Some(10000)), &nlb), None);
        assert_eq!(legacy_lock_port(&with(Some(10049)), &nlb), None);
        assert_eq!(legacy_lock_port(&with(Some(0)), &nlb), None);
    }

    #[test]
    fn names_without_the_nlb() {
        let cases: &[(&str, i32, &str)] = &[
            ("orders", 3, "kp-orders-b3"),
            ("Orders", 3, "kp-orders-b3"),
            (
                "payments-prod-eu",
                2147483647,
                "kp-payments-prod-eu-b2147483647",
            ),
        ];
        for (cluster, id, dedicated) in cases {
            assert_eq!(legacy_dedicated_group_name(cluster, *id), *dedicated);
            assert_eq!(broker_id_from_group(cluster, LB, dedicated), Some(*id));
        }
        for cluster in [
            "a.very_long.cluster-name-that-goes-on",
            "x__y",
            "-lead",
            "trail-",
            "é",
        ] {
            let name = legacy_dedicated_group_name(cluster, i32::MAX);
            assert!(name.len() <= MAX_TARGET_GROUP_NAME, "{name}");
            assert!(!name.contains("--"), "{name}");
            assert!(
                name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'),
                "{name}"
            );
            assert_eq!(broker_id_from_group(cluster, LB, &name), Some(i32::MAX));
        }
        // This release's names are still recognized; others are not.
        let current = dedicated_group_name("orders", LB, 7);
        assert_eq!(broker_id_from_group("orders", LB, &current), Some(7));
        for other in [
            bootstrap_group_name("orders", LB),
            "kp-orders-b-1".to_string(),
            "kp-orders-bx".to_string(),
            "kp-orders-b03".to_string(),
            "kp-other-b3".to_string(),
        ] {
            assert_eq!(broker_id_from_group("orders", LB, &other), None, "{other}");
        }
    }
}
