//! What follows a pass besides the state file: its log lines and metrics, and the accountant's
//! cluster-wide chores (counting stale claims, the listeners' idle-timeout sweep).

use std::path::Path;
use std::time::Instant;

use crate::metrics::Metrics;
use crate::model::Agent;
use crate::nlb::LoadBalancer;

use super::state::{failure, Effects, PassOutput, IDLE_STATUS};

/// Logs the pass and brings the metrics up to date, as `effects` says.
pub(super) fn account<M, L, T>(
    output: &PassOutput,
    effects: &Effects,
    agent: &Agent<M, L, T>,
    metrics: &Metrics,
    failures: u32,
    properties: &Path,
) {
    if let Ok(Some((report, _))) = output {
        if let Some(crate::tls::Outcome::Checked(c)) = &report.certificate {
            metrics.set_certificate_expiry(&c.listener, c.not_after);
        }
    }
    match output {
        Ok(None) => {
            if effects.log_idle {
                tracing::info!(file = %properties.display(), "{IDLE_STATUS}");
            }
            metrics.pass_idle();
            return;
        }
        Ok(Some((_, Some(Ok(outcome))))) => {
            if effects.restarted {
                metrics.restarted();
            }
            if effects.kafka_changed {
                tracing::info!(kafka = %outcome, "listener change handled");
            }
        }
        _ => {}
    }
    if let Some(pending) = effects.restart_pending {
        metrics.set_restart_pending(pending);
    }
    if let Some(draining) = effects.draining {
        metrics.set_draining(draining);
    }
    if effects.drain_started {
        metrics.drain_started();
        tracing::warn!(status = %effects.status, "instance leaving: drained from the bootstrap target group; the port and target group stay for a replacement, server.properties and Kafka are left alone");
    }
    metrics.sync_aws_calls(&agent.calls.snapshot());
    metrics.sync_aws_throttled(&agent.calls.throttled());
    if let Some(e) = failure(output) {
        metrics.pass_failed(e.kind(), &e.to_string());
        tracing::error!(error = %e, kind = e.kind(), consecutive_failures = failures, "pass failed");
    } else {
        if effects.drift_repairs > 0 {
            tracing::warn!(changes = effects.drift_repairs, "drift repaired");
        }
        metrics.pass_ok(effects.port.unwrap_or_default(), effects.drift_repairs);
        if let Some(shard) = effects.shard {
            let nlbs = agent.config.nlb.load_balancers();
            if let Some(nlb) = nlbs.get(shard) {
                metrics.set_claim(shard, &nlb.load_balancer_arn);
            }
        }
    }
}

/// The accountant's idle-timeout sweep (see [`crate::idle::sweep`]); a failure is a warning
/// (tried again at the next sweep).
pub(super) async fn sweep_idle_timeouts<M, L: LoadBalancer, T>(agent: &Agent<M, L, T>) {
    let text = agent
        .server_properties()
        .map(|t| t.to_string())
        .unwrap_or_default();
    let Some(want) = crate::idle::target(agent.config.nlb.idle_timeout, &text) else {
        return;
    };
    match crate::idle::sweep(&agent.lb, &agent.config, want).await {
        Ok(swept) => {
            for (arn, had) in &swept.changed {
                tracing::info!(
                    listener_arn = %arn,
                    had = ?had,
                    seconds = want,
                    "set the listener's TCP idle timeout above Kafka's connections.max.idle.ms"
                );
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot sweep the listeners' idle timeout (nlb.idle_timeout = \"off\" silences this)")
        }
    }
}

/// Counts stale claims into `kplink_stale_claims`; whether that worked.
pub(super) async fn count_stale_claims<M, L: LoadBalancer, T>(
    agent: &Agent<M, L, T>,
    metrics: &Metrics,
) -> bool {
    let now = Instant::now();
    match crate::restart::cluster_claims(&agent.lb, &agent.config).await {
        Ok(claims) => {
            agent.steady.stale_counted(now);
            let (_, stale) = crate::restart::split_claims(&claims);
            if !stale.is_empty() {
                tracing::warn!(stale = ?stale, "stale claims: target groups without a registered target (brokers removed without `decommission`?)");
            }
            metrics.set_stale_claims(stale.len());
            true
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot count stale claims");
            false
        }
    }
}
