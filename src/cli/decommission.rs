//! `decommission`: removes this broker's NLB listener and target group (and, in ZooKeeper mode,
//! its dynamic advertised.listeners override); `--dry-run` prints the steps instead.

use std::path::PathBuf;
use std::time::Duration;

use super::{agent, controller_only, kafka_client};
use crate::config::Config;
use crate::kafka::KafkaCluster;
use crate::model::Error;
use crate::restart::RestartError;

pub(super) async fn decommission(
    config: Config,
    path: PathBuf,
    metadata_timeout: Duration,
    keep_config: bool,
) -> Result<(), Error> {
    if let Some(message) = controller_only(&config)? {
        println!("{message}");
        return Ok(());
    }
    let (agent, identity) = agent(config, path, metadata_timeout).await?;
    let ctx = agent.context_for(identity).await?;
    let mut done = agent.decommission(&ctx, keep_config).await?;
    // ZooKeeper mode: a dynamic advertised.listeners override would keep advertising the removed
    // listener after the next start (and Kafka refuses an advertised listener it does not have).
    if !keep_config && agent.node_role()?.dynamic_advertised_listeners() {
        let rc = &agent.config.restart;
        let kafka = kafka_client(&agent.config).map_err(RestartError::from)?;
        match kafka.probe().await {
            crate::kafka::Liveness::Answering => {
                if kafka
                    .clear_dynamic_advertised_listeners(ctx.broker_id)
                    .await
                    .map_err(crate::restart::RestartError::from)?
                {
                    done.push(format!(
                        "removed the dynamic advertised.listeners override of broker {}",
                        ctx.broker_id
                    ));
                }
            }
            other => eprintln!(
                "warning: Kafka is not answering on {} ({other:?}): a dynamic advertised.listeners override of broker {} (ZooKeeper mode) could not be checked; once it runs: kafka-configs.sh --bootstrap-server … --entity-type brokers --entity-name {} --alter --delete-config advertised.listeners",
                rc.bootstrap_servers, ctx.broker_id, ctx.broker_id
            ),
        }
    }
    if done.is_empty() {
        println!(
            "broker {}: nothing to remove (already decommissioned)",
            ctx.broker_id
        );
    } else {
        println!("broker {} decommissioned:", ctx.broker_id);
        for d in done {
            println!("  {d}");
        }
    }
    Ok(())
}

/// `decommission --dry-run`: prints the planned steps; true when there is nothing to remove.
pub(super) async fn decommission_plan(
    config: Config,
    path: PathBuf,
    metadata_timeout: Duration,
    keep_config: bool,
) -> Result<bool, Error> {
    if let Some(message) = controller_only(&config)? {
        println!("{message}");
        return Ok(true);
    }
    let (agent, identity) = agent(config, path, metadata_timeout).await?;
    let ctx = agent.context_for(identity).await?;
    let steps = agent.decommission_plan(&ctx, keep_config).await?;
    if steps.is_empty() {
        println!(
            "broker {}: nothing to remove (already decommissioned)",
            ctx.broker_id
        );
        return Ok(true);
    }
    println!(
        "broker {}: decommission --yes would (nothing changed now):",
        ctx.broker_id
    );
    for step in &steps {
        println!("  {step}");
    }
    if !keep_config && agent.node_role()?.dynamic_advertised_listeners() {
        println!("  and remove a dynamic advertised.listeners override of broker {} if Kafka has one (ZooKeeper mode)", ctx.broker_id);
    }
    Ok(false)
}
