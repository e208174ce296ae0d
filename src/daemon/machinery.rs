//! The daemon's own machinery: metrics and the `/metrics` and `/healthz` endpoint, the
//! watchdog, SIGHUP and the file watch as wake-ups, READY=1 and STATUS=, and carrying out a
//! pass's [`Effects`].

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::time::{Duration, Instant};

use sd_notify::NotifyState;
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::mpsc;

use crate::config::{Config, ConfigError};
use crate::metrics::Metrics;
use crate::model::Agent;
use crate::nlb::LoadBalancer;
use crate::steady::StaleTurn;

use super::account::{account, count_stale_claims, sweep_idle_timeouts};
use super::last_pass::{record_last_pass, LastPass};
use super::state::{Effects, LoopState, PassOutput};
use super::watch::{PropertiesFile, Wake};
use super::DaemonError;

/// READY=1, sent once: just before the first pass looks at Kafka, else after the first pass.
#[derive(Debug, Default)]
pub(super) struct Readiness(bool);

impl Readiness {
    pub(super) fn announce(&mut self, status: Option<&str>) {
        if std::mem::replace(&mut self.0, true) {
            return;
        }
        let mut states = vec![NotifyState::Ready];
        if let Some(status) = status {
            states.push(NotifyState::Status(status));
        }
        let _ = sd_notify::notify(&states);
    }
}

/// The daemon's own machinery: metrics, the `/metrics` endpoint, the watchdog, the file watch,
/// SIGHUP, the state file and READY.
pub(super) struct Machinery {
    pub(super) metrics: Metrics,
    _metrics_server: AbortOnDrop,
    _watchdog: AbortOnDrop,
    wake_tx: mpsc::Sender<Wake>,
    wake_rx: mpsc::Receiver<Wake>,
    pub(super) file: PropertiesFile,
    hangup: Signal,
    state_dir: PathBuf,
    pub(super) readiness: Readiness,
}

impl Machinery {
    pub(super) async fn start(config: &Config) -> Result<Self, DaemonError> {
        let metrics = Metrics::new(config.daemon.interval);
        let metrics_server = serve_metrics(config, &metrics).await?;
        let watchdog = watchdog();
        let (wake_tx, wake_rx) = mpsc::channel::<Wake>(4);
        let file = PropertiesFile::watch(&config.broker.server_properties, &wake_tx)?;
        let hangup = signal(SignalKind::hangup()).map_err(|source| DaemonError::Signal {
            signal: "SIGHUP",
            source,
        })?;
        Ok(Machinery {
            metrics,
            _metrics_server: metrics_server,
            _watchdog: watchdog,
            wake_tx,
            wake_rx,
            file,
            hangup,
            state_dir: config.state_dir(),
            readiness: Readiness::default(),
        })
    }

    /// SIGHUP: re-reads the config. `Ok(true)` when the new one was taken.
    pub(super) fn reload<M, L, T>(
        &mut self,
        agent: &mut Agent<M, L, T>,
        reload: &impl Fn() -> Result<Config, ConfigError>,
    ) -> Result<bool, DaemonError> {
        match reload() {
            Ok(new) => {
                tracing::info!("configuration reloaded");
                self.file
                    .follow(&new.broker.server_properties, &self.wake_tx)?;
                agent.config = new;
                agent.steady.forget();
                Ok(true)
            }
            Err(e) => {
                tracing::error!(error = %e, "new configuration rejected; keeping the old one");
                Ok(false)
            }
        }
    }

    /// Carries out `effects`: logs, metrics, stale claims, the state file, sd_notify.
    pub(super) async fn finish_pass<M, L: LoadBalancer, T>(
        &mut self,
        agent: &Agent<M, L, T>,
        output: &PassOutput,
        effects: &Effects,
        state: &mut LoopState,
    ) {
        let metrics = &self.metrics;
        account(
            output,
            effects,
            agent,
            metrics,
            state.failures,
            &self.file.path,
        );
        // One broker per cluster counts (the accountant, see `crate::steady`): a count costs
        // one read per claim of the cluster.
        if effects.count_stale_claims {
            let now = Instant::now();
            // Counted, or another broker's turn: look again in 10 minutes. Not known yet (no
            // converged view of the bootstrap group) or a failed count: at the next pass.
            let done = match agent.steady.stale_turn(now) {
                StaleTurn::Mine => count_stale_claims(agent, metrics).await,
                StaleTurn::NotMine => true,
                StaleTurn::Unknown => false,
            };
            if done {
                state.stale_claims_counted(now);
            }
        }
        // The accountant also keeps the cluster's listeners' idle timeout above Kafka's (see
        // `crate::idle`): hourly, one read per listener.
        if effects.ok {
            let now = Instant::now();
            if agent.steady.sweep_turn(now) == StaleTurn::Mine {
                sweep_idle_timeouts(agent).await;
                agent.steady.swept(now);
            }
        }
        if let (true, Ok(Some((report, _)))) = (effects.ok, output) {
            report.log();
        }
        publish(effects, &self.state_dir, &mut self.readiness);
    }

    /// Waits for the next reason to run a pass: the timer, SIGHUP, or a change of the file that
    /// is not the agent's own write. `None`: shut down.
    pub(super) async fn next_wake<F: Future<Output = ()>>(
        &mut self,
        delay: Duration,
        mut shutdown: Pin<&mut F>,
    ) -> Option<Wake> {
        let sleep = tokio::time::sleep(delay);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                biased;
                () = &mut shutdown => return None,
                _ = self.hangup.recv() => return Some(Wake::Reload),
                Some(w) = self.wake_rx.recv() => {
                    // Our own write (or a touch without change) is not drift.
                    if w == Wake::FileChanged && self.file.unchanged() {
                        continue;
                    }
                    tracing::info!(file = %self.file.path.display(), "server.properties changed on disk");
                    return Some(w);
                }
                () = &mut sleep => return Some(Wake::Timer),
            }
        }
    }
}

/// Serves `/metrics` and `/healthz` when `daemon.metrics_listen` is set.
async fn serve_metrics(config: &Config, metrics: &Metrics) -> Result<AbortOnDrop, DaemonError> {
    let Some(addr) = config.daemon.metrics_listen else {
        return Ok(AbortOnDrop(None));
    };
    let addr = addr.to_string();
    let (listener, local) = crate::metrics::bind(&addr)
        .await
        .map_err(|source| DaemonError::MetricsListen { addr, source })?;
    tracing::info!(address = %local, "serving /metrics and /healthz");
    let server = crate::metrics::serve(listener, metrics.clone());
    Ok(AbortOnDrop(Some(tokio::spawn(server))))
}

/// WATCHDOG=1 at a third of systemd's `WATCHDOG_USEC`, when set.
fn watchdog() -> AbortOnDrop {
    AbortOnDrop(sd_notify::watchdog_enabled().map(|period| {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period / 3);
            loop {
                tick.tick().await;
                let _ = sd_notify::notify(&[NotifyState::Watchdog]);
            }
        })
    }))
}

/// Records the pass for `status` and tells systemd (READY=1 once, then STATUS=).
fn publish(effects: &Effects, state_dir: &Path, readiness: &mut Readiness) {
    record_last_pass(
        state_dir,
        &LastPass {
            finished_unix: crate::clock::unix_now(),
            ok: effects.ok,
            summary: effects.status.clone(),
            port: effects.port,
        },
    );
    readiness.announce(None);
    let _ = sd_notify::notify(&[NotifyState::Status(&effects.status)]);
}

struct AbortOnDrop(Option<tokio::task::JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(task) = self.0.take() {
            task.abort();
        }
    }
}
