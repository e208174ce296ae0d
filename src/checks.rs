//! Checks a pass makes on the NLB before it relies on something it did not create, each once
//! per process ([`Checked`]): they take the seams they need, not the agent.

use crate::config::Config;
use crate::model::{Checked, Error};
use crate::nlb::{LoadBalancer, TRAFFIC_PORT};
use crate::plan::Desired;
use crate::registry;

/// The bootstrap listener belongs to this cluster only if its group carries this cluster's
/// tag (the agent tags every group it creates). A group under this cluster's own bootstrap
/// name for this NLB needs no look at its tags: target group names are unique per account
/// and Region (ELBv2 API reference, CreateTargetGroup: "This name must be unique per region
/// per account"), the name hashes the cluster and the NLB (see [`crate::registry`]), and
/// `ensure_target_group` adopts a group of that name on the same grounds. That saves a
/// joining broker one call.
pub(crate) async fn bootstrap_owner<L: LoadBalancer>(
    lb: &L,
    checked: &Checked,
    config: &Config,
    d: &Desired,
    tg: &str,
) -> Result<(), Error> {
    let key = format!("owner {tg}");
    if checked.has(&key) || crate::nlb::target_group_name(tg) == Some(d.bootstrap_group.as_str()) {
        return Ok(());
    }
    let tags = lb.tags(tg).await?.unwrap_or_default();
    let cluster = &config.cluster;
    match registry::foreign_owner(&tags, cluster) {
        None => {
            checked.mark(key);
            Ok(())
        }
        Some(owner) => Err(Error::BootstrapForeign {
            port: config.nlb.bootstrap_port,
            lb_arn: d.lb_arn.clone(),
            group: crate::nlb::target_group_name(tg).unwrap_or(tg).to_string(),
            owner,
            cluster: cluster.clone(),
        }),
    }
}

/// Before registering into a group this pass did not create: its health check probes the
/// traffic port (groups made by 0.1 probe a fixed port, wrong once `listener.port` changes or
/// brokers of one bootstrap group use different ports).
pub(crate) async fn traffic_port<L: LoadBalancer>(
    lb: &L,
    checked: &Checked,
    tg: &str,
) -> Result<(), Error> {
    let key = format!("health {tg}");
    if checked.has(&key) {
        return Ok(());
    }
    let info = lb.target_group_info(&[tg.to_string()]).await?;
    if info.iter().any(|i| i.health_check_port != TRAFFIC_PORT) {
        lb.health_check_traffic_port(tg).await?;
        tracing::info!(
            target_group = tg,
            "health check now probes the traffic port"
        );
    }
    checked.mark(key);
    Ok(())
}
