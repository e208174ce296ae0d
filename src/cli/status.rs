//! `status`: what AWS, Kafka and the daemon's last pass say about this broker ([`StatusView`]),
//! rendered for people or as JSON.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use super::{agent, controller_only, kafka_client, RealAgent};
use crate::config::Config;
use crate::daemon::LastPass;
use crate::kafka::{KafkaCluster, Liveness};
use crate::metadata;
use crate::model::Error;
use crate::node::NodeRole;
use crate::plan::{Context, Observed};
use crate::restart::{Decision, LockState};

pub(super) async fn status(
    config: Config,
    path: PathBuf,
    metadata_timeout: Duration,
    json: bool,
) -> Result<(), Error> {
    let last = crate::daemon::read_last_pass(&config);
    if let Some(message) = controller_only(&config)? {
        if json {
            let doc = serde_json::json!({ "node_role": crate::node::NodeRole::KraftController, "skipped": message, "last_pass": last });
            println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
        } else {
            println!("node          {message}");
        }
        return Ok(());
    }
    let (agent, identity) = agent(config, path, metadata_timeout).await?;
    let view = StatusView::gather(&agent, identity, last).await?;
    if json {
        let doc = view.json();
        println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
    } else {
        print!("{}", view.text());
    }
    Ok(())
}

/// Everything `status` shows.
struct StatusView {
    ctx: Context,
    observed: Observed,
    /// The plan's steps: pending changes (drift).
    changes_pending: Vec<String>,
    role: NodeRole,
    /// `host:port` the broker should advertise (once it has a claim).
    desired_endpoint: Option<String>,
    liveness: Liveness,
    /// What the running broker advertises for the managed listener.
    broker_endpoint: Option<String>,
    restart_pending: bool,
    stale_claims: BTreeSet<i32>,
    /// The cluster as clients reach it.
    clients: crate::connection::ClusterView,
    lock: Option<LockState>,
    /// Name of the cluster's restart lock target group.
    lock_group: String,
    last: Option<LastPass>,
    /// Endpoint services open to other Regions on NLBs without cross-zone load balancing.
    cross_region: Vec<String>,
}

impl StatusView {
    /// Asks AWS and Kafka.
    async fn gather(
        agent: &RealAgent,
        identity: metadata::Identity,
        last: Option<LastPass>,
    ) -> Result<StatusView, Error> {
        let ctx = agent.context_for(identity).await?;
        let observed = agent.observe(&ctx).await?;
        let steps = agent.plan(&ctx, &observed)?;
        let desired_endpoint = observed
            .assessment
            .claim
            .as_ref()
            .map(|l| ctx.shard(observed.shard).endpoint(l.port));
        let role = agent.node_role()?;
        let (liveness, in_broker) = kafka_state(&agent.config, ctx.broker_id).await;
        let listing = crate::restart::cluster_listing(&agent.lb, &agent.config).await?;
        let claims = listing
            .iter()
            .map(|c| (c.broker_id, c.targets.clone()))
            .collect();
        let (_, stale_claims) = crate::restart::split_claims(&claims);
        let clients = client_view(agent, &ctx.identity.region, &listing).await;
        let lb_arns: Vec<String> = ctx.shards.iter().map(|d| d.lb_arn.clone()).collect();
        let cross_region = cross_region_warnings(agent, &lb_arns, &ctx.identity.region).await;
        let listener = &agent.config.listener.name;
        let broker_endpoint = in_broker
            .as_deref()
            .and_then(|a| crate::restart::endpoint_of(a, listener));
        let restart_pending = desired_endpoint.as_deref().is_some_and(|desired| {
            let unreachable = matches!(
                liveness,
                Liveness::Unreachable { .. } | Liveness::Starting { .. }
            );
            let running = liveness == Liveness::Answering;
            let dynamic = role.dynamic_advertised_listeners();
            unreachable
                || matches!(
                    crate::restart::decide(
                        running,
                        in_broker.as_deref(),
                        listener,
                        desired,
                        dynamic
                    ),
                    Decision::DynamicUpdate | Decision::Restart
                )
        });
        let legacy = observed.assessment.lock.as_ref().map(|l| l.arn.as_str());
        let lock =
            crate::restart::read_cluster_lock(&agent.lb, &agent.config, legacy, false).await?;
        Ok(StatusView {
            changes_pending: steps.iter().map(ToString::to_string).collect(),
            ctx,
            observed,
            role,
            desired_endpoint,
            liveness,
            broker_endpoint,
            restart_pending,
            stale_claims,
            clients,
            lock,
            lock_group: crate::registry::lock_group_name(&agent.config.cluster),
            last,
            cross_region,
        })
    }

    fn running(&self) -> bool {
        self.liveness == Liveness::Answering
    }

    /// `status --json`.
    fn json(&self) -> serde_json::Value {
        let (ctx, observed) = (&self.ctx, &self.observed);
        let claim = observed.assessment.claim.as_ref();
        let lock = self.lock.as_ref();
        serde_json::json!({
            "identity": ctx.identity,
            "broker_id": ctx.broker_id,
            "broker_id_source": ctx.broker_id_source,
            "claimed_port": claim.map(|l| l.port),
            "shard": observed.shard,
            "load_balancer_arn": ctx.shard(observed.shard).lb_arn,
            "listener_arn": claim.map(|l| l.arn.clone()),
            "target_group_arn": claim.and_then(|l| l.target_group_arn.clone()),
            "bootstrap_target_group_arn": observed.assessment.bootstrap.as_ref().and_then(|l| l.target_group_arn.clone()),
            "dedicated_targets": observed.dedicated_targets,
            "bootstrap_targets": observed.bootstrap_targets.iter().filter(|t| t.id == ctx.identity.instance_id).collect::<Vec<_>>(),
            "advertised_in_file": observed.file_endpoint,
            "advertised_desired": self.desired_endpoint,
            "node_role": self.role,
            "kafka_running": self.running(),
            "kafka": self.liveness,
            "stale_claims": self.stale_claims,
            "clients": self.clients,
            "advertised_in_broker": self.broker_endpoint,
            "restart_pending": self.restart_pending,
            "lock_holder": lock.map(|l| l.holder.clone()),
            "lock_phase": lock.map(|l| l.phase.clone()),
            "lock_expires_unix": lock.map(|l| l.expires),
            "lock_group": self.lock_group,
            "lock_arn": lock.map(|l| l.arn.clone()),
            "lock_kind": lock.map(|l| l.kind),
            "changes_pending": self.changes_pending,
            "lifecycle": observed.lifecycle,
            "draining": observed.lifecycle.is_leaving(),
            "certificate": observed.certificate,
            "last_pass": self.last,
            "cross_region_warnings": self.cross_region,
        })
    }

    /// `status` for people: one `label  value` line per fact.
    fn text(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = self
            .write_identity(&mut out)
            .and_then(|()| self.write_kafka(&mut out))
            .and_then(|()| self.write_state(&mut out));
        for w in &self.cross_region {
            out.push_str(&format!("cross-region  WARNING: {w}\n"));
        }
        out.push_str(&self.clients.text());
        out
    }

    fn write_identity(&self, out: &mut String) -> std::fmt::Result {
        let (ctx, observed) = (&self.ctx, &self.observed);
        let id = &ctx.identity;
        writeln!(
            out,
            "instance      {} ({} / {}, {}, {})",
            id.instance_id, id.az, id.az_id, id.private_ip, id.vpc_id
        )?;
        writeln!(
            out,
            "broker id     {} (from {})",
            ctx.broker_id, ctx.broker_id_source
        )?;
        writeln!(out, "node          {}", self.role)?;
        let d = ctx.shard(observed.shard);
        let shards = ctx.shards.len();
        match &observed.assessment.claim {
            Some(_) => writeln!(
                out,
                "nlb           shard {} of {shards}: {}",
                d.shard, d.lb_arn
            )?,
            None => writeln!(
                out,
                "nlb           shard {} of {shards} (a new claim goes here): {}",
                d.shard, d.lb_arn
            )?,
        }
        match &observed.assessment.claim {
            Some(l) => {
                writeln!(out, "claimed port  {}", l.port)?;
                writeln!(out, "listener      {}", l.arn)?;
                let group = l.target_group_arn.as_deref().unwrap_or("?");
                writeln!(out, "target group  {group}")?;
            }
            None => writeln!(out, "claimed port  none")?,
        }
        for t in &observed.dedicated_targets {
            let (id, port, health, state) = (&t.id, t.port, &t.health, &t.state);
            writeln!(out, "target        {id}:{port} {health} ({state:?})")?;
        }
        writeln!(
            out,
            "advertised    file: {}   desired: {}",
            observed.file_endpoint.as_deref().unwrap_or("(none)"),
            self.desired_endpoint.as_deref().unwrap_or("(no claim yet)")
        )?;
        match observed.certificate.as_ref().and_then(|c| c.line()) {
            Some(line) => writeln!(out, "certificate   {line}"),
            None => Ok(()),
        }
    }

    fn write_kafka(&self, out: &mut String) -> std::fmt::Result {
        let kafka = if self.running() {
            format!(
                "running, advertises {}{}",
                self.broker_endpoint.as_deref().unwrap_or("(unknown)"),
                if self.restart_pending {
                    " - restart pending"
                } else {
                    ""
                }
            )
        } else {
            match &self.liveness {
                Liveness::Unreachable { bootstrap, cause } => format!(
                    "UNREACHABLE: {bootstrap} accepts connections but does not answer ({cause}) - restart pending"
                ),
                Liveness::Starting { how } => format!(
                    "STARTING: {how}, nothing accepts connections yet - restart pending until it answers"
                ),
                _ => "not running".to_string(),
            }
        };
        writeln!(out, "kafka         {kafka}")?;
        if !self.stale_claims.is_empty() {
            writeln!(
                out,
                "stale claims  brokers {} (a claim whose target group has no registered target: removed without `decommission`?); left out of the restart health gate",
                self.stale_claims
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            )?;
        }
        Ok(())
    }

    fn write_state(&self, out: &mut String) -> std::fmt::Result {
        let observed = &self.observed;
        if let Some(why) = observed.lifecycle.leaving() {
            let me = &self.ctx.identity.instance_id;
            let registered = observed
                .bootstrap_targets
                .iter()
                .any(|t| t.id == *me && t.state == crate::nlb::TargetState::Registered);
            let drained = match registered {
                true => "not yet out of the bootstrap target group (the next pass drains it)",
                false => "DRAINED: out of the bootstrap target group; port and target group kept for a replacement",
            };
            writeln!(out, "lifecycle     LEAVING ({why}): {drained}")?;
        } else {
            writeln!(
                out,
                "lifecycle     staying (no scale-in or Spot interruption pending)"
            )?;
        }
        match &self.lock {
            Some(l) => writeln!(
                out,
                "restart lock  held by {} (phase {}, expires unix {}; {})",
                l.holder,
                l.phase,
                l.expires,
                l.resource()
            )?,
            None => writeln!(out, "restart lock  free (target group {})", self.lock_group)?,
        }
        match &self.last {
            Some(p) => writeln!(
                out,
                "last pass     {} ({}, unix {})",
                p.summary,
                if p.ok { "ok" } else { "FAILED" },
                p.finished_unix
            )?,
            None => writeln!(out, "last pass     none recorded (is the daemon running?)")?,
        }
        if self.changes_pending.is_empty() {
            writeln!(out, "drift         none")?;
        }
        for s in &self.changes_pending {
            writeln!(out, "drift         {s}")?;
        }
        Ok(())
    }
}

/// The cluster as clients reach it (see [`crate::connection`]). What EC2 does not tell (no
/// permission, say) leaves AZ and name unknown with a note; `status` never fails for it.
async fn client_view(
    agent: &RealAgent,
    region: &str,
    listing: &[crate::restart::ClusterClaim],
) -> crate::connection::ClusterView {
    let mut notes = Vec::new();
    let instances: Vec<String> = listing
        .iter()
        .flat_map(|c| c.targets.iter().map(|t| t.id.clone()))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let zones = agent
        .tags
        .instance_zones(&instances)
        .await
        .unwrap_or_else(|e| {
            notes.push(format!("AZ and name unknown: {e}"));
            Default::default()
        });
    let zone_ids = match zones.is_empty() {
        true => Default::default(),
        false => agent.tags.zone_ids().await.unwrap_or_else(|e| {
            notes.push(format!("AZ IDs unknown: {e}"));
            Default::default()
        }),
    };
    crate::connection::ClusterView {
        bootstrap_port: agent.config.nlb.bootstrap_port,
        brokers: crate::connection::rows(&agent.config, region, listing, &zones, &zone_ids),
        notes,
    }
}

/// The warning for an NLB whose endpoint service accepts consumers from `regions` (other
/// Regions) while cross-zone load balancing is off (`None` when it is on). A consumer in another
/// Region has no zonal entry in the provider's AZs (AZ IDs belong to one Region) and reaches the
/// brokers only through the endpoint's regional name; with cross-zone off an NLB node forwards
/// only to targets in its own zone ("Cross-zone load balancing for target groups", ELB Network
/// Load Balancers guide), so connections to brokers in the other zones time out.
fn cross_region_warning(lb_arn: &str, regions: &[String], cross_zone: bool) -> Option<String> {
    (!cross_zone).then(|| {
        format!(
            "the endpoint service of {lb_arn} accepts consumers from {} but the NLB has cross-zone load balancing off: their connections to brokers outside the zone of the NLB node they reach time out; set load_balancing.cross_zone.enabled=true (provider stack: CrossZoneLoadBalancing=true)",
            regions.join(", ")
        )
    })
}

/// [`cross_region_warning`] for each of `lb_arns` (EC2 DescribeVpcEndpointServiceConfigurations,
/// then DescribeLoadBalancerAttributes only for NLBs open to other Regions). What AWS does not
/// tell (no permission, say) becomes a note: `status` never fails for it.
async fn cross_region_warnings(agent: &RealAgent, lb_arns: &[String], region: &str) -> Vec<String> {
    let open = match agent.tags.other_service_regions(lb_arns, region).await {
        Ok(open) => open,
        Err(e) => return vec![format!("not checked (endpoint services unknown: {e})")],
    };
    let mut out = Vec::new();
    for (arn, regions) in &open {
        match agent.lb.cross_zone_enabled(arn).await {
            Ok(on) => out.extend(cross_region_warning(arn, regions, on)),
            Err(e) => out.push(format!("not checked for {arn} (cross-zone unknown: {e})")),
        }
    }
    out
}

/// Whether Kafka answers and, if so, what this broker advertises.
async fn kafka_state(config: &Config, broker_id: i32) -> (Liveness, Option<String>) {
    match kafka_client(config) {
        Ok(k) => {
            let bound = crate::properties::read(&config.broker.server_properties)
                .map(|text| crate::properties::bound_addresses(&text, &config.listener.name))
                .unwrap_or_default();
            let process = config.restart.process_check();
            let liveness = crate::kafka::liveness(
                &k,
                &config.restart.bootstrap_servers,
                &bound,
                crate::kafka::process::KafkaProcess::state(&process),
            )
            .await;
            let advertised = if liveness == Liveness::Answering {
                k.advertised_listeners(broker_id).await.ok().flatten()
            } else {
                None
            };
            (liveness, advertised)
        }
        Err(e) => (
            Liveness::Unreachable {
                bootstrap: config.restart.bootstrap_servers.clone(),
                cause: e.to_string(),
            },
            None,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::cross_region_warning;

    #[test]
    fn cross_region_needs_cross_zone() {
        let regions = ["us-west-2".to_string(), "eu-west-1".to_string()];
        assert_eq!(cross_region_warning("arn:nlb", &regions, true), None);
        let w = cross_region_warning("arn:nlb", &regions, false).unwrap();
        assert!(
            w.starts_with("the endpoint service of arn:nlb accepts consumers from us-west-2, eu-west-1 but the NLB has cross-zone load balancing off"),
            "{w}"
        );
        assert!(w.contains("CrossZoneLoadBalancing=true"), "{w}");
    }
}
