//! `plan`: what a pass would change, for people or as JSON, changing nothing.

use std::path::PathBuf;
use std::time::Duration;

use super::check::warnings;
use super::{agent, controller_only};
use crate::config::Config;
use crate::model::Error;
use crate::plan::{Context, Observed};

/// Prints the plan; `Ok(true)` when there is nothing to do.
pub(super) async fn plan(
    config: Config,
    path: PathBuf,
    metadata_timeout: Duration,
    json: bool,
) -> Result<bool, Error> {
    for w in warnings(&config) {
        eprintln!("warning: {w}");
    }
    if let Some(message) = controller_only(&config)? {
        if json {
            let doc = serde_json::json!({ "node_role": crate::node::NodeRole::KraftController, "changes_pending": false, "steps": [], "skipped": message });
            println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
        } else {
            println!("{message}");
        }
        return Ok(true);
    }
    let (agent, identity) = agent(config, path, metadata_timeout).await?;
    let ctx = agent.context_for(identity).await?;
    let observed = agent.observe(&ctx).await?;
    let steps = agent.plan(&ctx, &observed)?;
    if json {
        let doc = serde_json::json!({
            "broker_id": ctx.broker_id,
            "broker_id_source": ctx.broker_id_source,
            "instance_id": ctx.identity.instance_id,
            "az_id": ctx.identity.az_id,
            "claimed_port": observed.assessment.claim.as_ref().map(|l| l.port),
            "shard": observed.shard,
            "load_balancer_arn": ctx.shard(observed.shard).lb_arn,
            "full_load_balancers": observed.full.iter().map(|(i, why)| serde_json::json!({"shard": i, "load_balancer_arn": ctx.shard(*i).lb_arn, "why": why})).collect::<Vec<_>>(),
            "advertised_in_file": observed.file_endpoint,
            "changes_pending": !steps.is_empty(),
            "steps": steps,
            "restart_lock_listener": observed.assessment.lock.as_ref().map(|l| l.arn.clone()),
            "restart_lock_group": crate::registry::lock_group_name(&agent.config.cluster),
            "lifecycle": observed.lifecycle,
            "certificate": observed.certificate,
        });
        println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
    } else if steps.is_empty() {
        println!(
            "broker {} ({}): nothing to do; port {}{}",
            ctx.broker_id,
            ctx.identity.instance_id,
            observed
                .assessment
                .claim
                .as_ref()
                .map_or("?".to_string(), |l| l.port.to_string()),
            shard_note(&ctx, &observed)
        );
    } else {
        println!(
            "broker {} ({}): {} change(s) pending{}",
            ctx.broker_id,
            ctx.identity.instance_id,
            steps.len(),
            shard_note(&ctx, &observed)
        );
        for step in &steps {
            println!("  + {step}");
        }
    }
    if !json {
        print_notes(&observed);
    }
    Ok(steps.is_empty())
}

/// The notes under the plan for people: the certificate pre-flight's line, a leaving
/// instance, a legacy lock listener.
fn print_notes(observed: &Observed) {
    if let Some(line) = observed.certificate.as_ref().and_then(|c| c.line()) {
        println!("  {line}");
    }
    if let Some(why) = observed.lifecycle.leaving() {
        println!(
            "  note: this instance is leaving ({why}): a pass only takes it out of the bootstrap target group; its port, target group and server.properties stay"
        );
    }
    if let Some(l) = &observed.assessment.lock {
        println!(
            "  note: a legacy cluster restart lock listener (an older agent, release 0.1) is held on port {}; `kplink-agent status` shows by whom",
            l.port
        );
    }
}

/// ` on shard K (NLB ARN)` when several NLBs are configured, and which were full; `""` with one.
fn shard_note(ctx: &Context, observed: &Observed) -> String {
    if ctx.shards.len() == 1 {
        return String::new();
    }
    let d = ctx.shard(observed.shard);
    let mut note = format!(" on shard {} ({})", d.shard, d.lb_arn);
    for (i, why) in &observed.full {
        note.push_str(&format!("; shard {i} has no room: {why}"));
    }
    note
}
