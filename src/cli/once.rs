//! `run --once`: one pass, then making Kafka use the listener, and what it did, for people or
//! as JSON (a leaving instance only drains).

use std::path::PathBuf;
use std::time::Duration;

use super::{agent, controller_only, kafka_adapters};
use crate::config::Config;
use crate::model::{Error, PassReport};
use crate::restart::RestartError;

pub(super) async fn run_once(
    config: Config,
    path: PathBuf,
    metadata_timeout: Duration,
    json: bool,
) -> Result<(), Error> {
    if let Some(message) = controller_only(&config)? {
        if json {
            let doc = serde_json::json!({ "node_role": crate::node::NodeRole::KraftController, "skipped": message });
            println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
        } else {
            println!("{message}");
        }
        return Ok(());
    }
    let (agent, identity) = agent(config, path, metadata_timeout).await?;
    let ctx = agent.context_for(identity).await?;
    let report = agent.pass(&ctx).await?;
    report.log();
    if report.lifecycle.is_leaving() {
        print_drained(&report, json);
        return Ok(());
    }
    let lock_held = tokio::sync::watch::Sender::new(false); // no metrics in `run --once`
    let outcome = match kafka_adapters(&agent.config) {
        Ok((kafka, service)) => {
            crate::daemon::make_effective(&agent, &ctx, &report, &kafka, &service, &lock_held).await
        }
        Err(e) => Err(e),
    };
    if json {
        let mut doc = serde_json::to_value(&report).unwrap_or_default();
        doc["kafka"] = match &outcome {
            Ok(o) => serde_json::to_value(o).unwrap_or_default(),
            Err(e) => serde_json::json!({ "outcome": "error", "error": e.to_string() }),
        };
        println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
    } else {
        println!(
            "broker {} ({} in {}) wired: {} -> port {} ({} change(s), {} AWS call(s), {} ms)",
            report.broker_id,
            report.instance_id,
            report.az_id,
            report.advertised,
            report.port,
            report.changes.len(),
            report.aws_calls.values().sum::<u64>(),
            report.elapsed_ms
        );
        for step in &report.changes {
            println!("  changed: {step}");
        }
        print_throttled(&report);
        if let Ok(o) = &outcome {
            println!("  kafka: {o}");
        }
    }
    match outcome? {
        // Not fully wired: whether the starting broker read the new file is not known yet.
        crate::restart::Outcome::Starting { how } => Err(RestartError::Starting {
            bootstrap: agent.config.restart.bootstrap_servers.clone(),
            how,
        }
        .into()),
        _ => Ok(()),
    }
}

/// The throttled answers a pass rode through, if any.
fn print_throttled(report: &PassReport) {
    let n: u64 = report.aws_throttled.values().sum();
    if n > 0 {
        let ops: Vec<String> = report
            .aws_throttled
            .iter()
            .map(|(op, n)| format!("{op} {n}"))
            .collect();
        println!(
            "  throttled: {n} answer(s), retried after back-off ({}): the account's AWS API budget was busy",
            ops.join(", ")
        );
    }
}

/// `run --once` on a leaving instance: what the drain did and what it kept. Kafka is left alone.
fn print_drained(report: &PassReport, json: bool) {
    let why = report
        .lifecycle
        .leaving()
        .map(ToString::to_string)
        .unwrap_or_default();
    if json {
        let mut doc = serde_json::to_value(report).unwrap_or_default();
        doc["kafka"] =
            serde_json::json!({ "outcome": "skipped", "why": format!("instance leaving: {why}") });
        println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
        return;
    }
    println!(
        "broker {} ({} in {}) drained: instance leaving ({why}) ({} change(s), {} AWS call(s), {} ms)",
        report.broker_id,
        report.instance_id,
        report.az_id,
        report.changes.len(),
        report.aws_calls.values().sum::<u64>(),
        report.elapsed_ms
    );
    for step in &report.changes {
        println!("  changed: {step}");
    }
    if report.changes.is_empty() {
        println!("  already out of the bootstrap target group");
    }
    match report.port {
        0 => println!("  kept: no port was claimed"),
        port => println!(
            "  kept: port {port} (listener and target group, for a replacement with broker id {})",
            report.broker_id
        ),
    }
    println!("  server.properties unchanged; Kafka not restarted");
}
