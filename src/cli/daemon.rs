//! `run` without `--once`: the long-running agent over the real adapters until SIGTERM or
//! SIGINT.

use std::path::PathBuf;
use std::time::Duration;

use super::{agent, kafka_adapters};
use crate::config::Config;
use crate::model::Error;

/// Errors of the daemon command: setup or the daemon's own machinery.
#[derive(Debug, thiserror::Error)]
pub(super) enum DaemonCommandError {
    #[error(transparent)]
    Setup(#[from] Error),
    #[error(transparent)]
    Daemon(#[from] crate::daemon::DaemonError),
}

pub(super) async fn daemon(
    config: Config,
    path: PathBuf,
    metadata_timeout: Duration,
) -> Result<(), DaemonCommandError> {
    let (agent, identity) = agent(config, path.clone(), metadata_timeout).await?;
    let ctx = match agent.context_for(identity).await {
        Ok(ctx) => Some(ctx),
        Err(e) => {
            // Retried by the loop with back-off; the host may still be getting its tags.
            tracing::warn!(error = %e, "cannot resolve the broker yet");
            None
        }
    };
    crate::daemon::run(
        agent,
        ctx,
        kafka_adapters,
        move || super::load_config(&path),
        shutdown_signal(),
    )
    .await?;
    Ok(())
}

/// Completes on SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "no SIGTERM handler; stopping on SIGINT only");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
    tracing::info!("shutting down");
}
