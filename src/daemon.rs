//! The long-running agent: `kplink-agent run`.
//!
//! A reconcile pass at start, then every `daemon.interval` (±10 % jitter), at once when
//! `server.properties` changes on disk (debounced; the agent's own writes are recognized by
//! content and ignored), and on SIGHUP (the config is reloaded first; an invalid new config is
//! logged and the old one kept). Failed passes are retried with jittered exponential back-off.
//! Shutdown is an injected future: it is raced against the running pass, which can only be
//! interrupted at an await point (an AWS call), never inside the synchronous atomic file write,
//! and the next start completes whatever the interrupted pass began.
//!
//! systemd integration: READY=1 after the first pass (before any Kafka restart it triggers),
//! STATUS= after each pass, WATCHDOG=1 when
//! `WATCHDOG_USEC` is set. The daemon exits non-zero only when its own machinery breaks (metrics
//! address unusable, watcher or signal setup failing) so that systemd restarts it.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::Watcher;
use rand::Rng;
use sd_notify::NotifyState;
use serde::Serialize;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;

use crate::config::Config;
use crate::ec2::InstanceTags;
use crate::metadata::InstanceMetadata;
use crate::metrics::Metrics;
use crate::nlb::LoadBalancer;
use crate::reconcile::{Agent, Context, Error, PassReport};
use crate::restart::Outcome;

/// Why the daemon stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The metrics address could not be bound.
    #[error("cannot listen for metrics on {addr}: {source}")]
    MetricsListen {
        /// Configured address.
        addr: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file watcher could not be set up.
    #[error("cannot watch {path}: {source}")]
    Watch {
        /// Watched directory.
        path: PathBuf,
        /// The notify error.
        source: notify::Error,
    },
    /// A signal handler could not be installed.
    #[error("cannot install the {signal} handler: {source}")]
    Signal {
        /// Signal name.
        signal: &'static str,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// What `status` reads about the last pass (written to `<state_dir>/last-pass.json`).
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct LastPass {
    /// Unix time the pass finished.
    pub finished_unix: u64,
    /// Whether it succeeded.
    pub ok: bool,
    /// One-line summary or error.
    pub summary: String,
    /// Claimed port, when known.
    pub port: Option<u16>,
}

/// How often the daemon counts stale claims (one DescribeTargetHealth per claim).
const STALE_CHECK_EVERY: Duration = Duration::from_secs(600);

/// Name of the state file inside the state directory.
pub const LAST_PASS_FILE: &str = "last-pass.json";

/// The state directory: systemd's `STATE_DIRECTORY` if set, else `daemon.state_dir`.
pub fn state_dir(config: &Config) -> PathBuf {
    std::env::var_os("STATE_DIRECTORY")
        .map(|v| PathBuf::from(v.to_string_lossy().split(':').next().unwrap_or_default()))
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| config.daemon.state_dir.clone())
}

/// Reads the last pass recorded by a daemon, if any.
pub fn read_last_pass(config: &Config) -> Option<LastPass> {
    let text = std::fs::read_to_string(state_dir(config).join(LAST_PASS_FILE)).ok()?;
    serde_json::from_str(&text).ok()
}

fn record_last_pass(dir: &Path, last: &LastPass) {
    let write = || -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        let tmp = dir.join(format!(".{LAST_PASS_FILE}.tmp"));
        std::fs::write(&tmp, serde_json::to_vec_pretty(last).unwrap_or_default())?;
        std::fs::rename(&tmp, dir.join(LAST_PASS_FILE))
    };
    if let Err(e) = write() {
        tracing::warn!(dir = %dir.display(), error = %e, "cannot record the last pass for `status`");
    }
}

/// Why the loop woke up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wake {
    Timer,
    FileChanged,
    Reload,
}

/// Next wait: the interval with ±10 % jitter after success, else exponential back-off from 1 s
/// (with jitter), capped at the interval.
pub fn next_delay(interval: Duration, consecutive_failures: u32, rng: &mut impl Rng) -> Duration {
    let base = if consecutive_failures == 0 {
        interval
    } else {
        let exp = Duration::from_secs(1)
            .saturating_mul(1 << consecutive_failures.min(16).saturating_sub(1));
        exp.min(interval)
    };
    base.mul_f64(rng.gen_range(0.9..=1.1))
}

/// Runs passes until `shutdown` completes. `reload` re-reads the config file.
pub async fn run<M, L, T>(
    mut agent: Agent<M, L, T>,
    mut ctx: Option<Context>,
    reload: impl Fn() -> Result<Config, crate::config::ConfigError>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), DaemonError>
where
    M: InstanceMetadata,
    L: LoadBalancer,
    T: InstanceTags,
{
    let metrics = Metrics::new(agent.config.daemon.interval);
    let metrics_task = if agent.config.daemon.metrics_listen.is_none() {
        None
    } else {
        let addr = agent
            .config
            .daemon
            .metrics_listen
            .map_or_else(String::new, |a| a.to_string());
        let (listener, local) = crate::metrics::bind(&addr)
            .await
            .map_err(|source| DaemonError::MetricsListen { addr, source })?;
        tracing::info!(address = %local, "serving /metrics and /healthz");
        Some(tokio::spawn(crate::metrics::serve(
            listener,
            metrics.clone(),
        )))
    };
    let _metrics_guard = AbortOnDrop(metrics_task);
    let _watchdog_guard = AbortOnDrop(sd_notify::watchdog_enabled().map(|period| {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period / 3);
            loop {
                tick.tick().await;
                let _ = sd_notify::notify(&[NotifyState::Watchdog]);
            }
        })
    }));

    let (wake_tx, mut wake_rx) = mpsc::channel::<Wake>(4);
    let mut properties = agent.config.broker.server_properties.clone();
    let mut watcher = watch(&properties, wake_tx.clone())?;
    let mut hangup = signal(SignalKind::hangup()).map_err(|source| DaemonError::Signal {
        signal: "SIGHUP",
        source,
    })?;
    let state = state_dir(&agent.config);

    tokio::pin!(shutdown);
    let mut failures = 0u32;
    let mut converged_once = false;
    let ready = std::sync::atomic::AtomicBool::new(false);
    let mut last_written: Option<String> = None;
    let mut kafka_checked = false;
    let mut restart_pending = false;
    let mut wake = Wake::Timer;
    let mut idle_logged = false;
    let mut stale_checked: Option<std::time::Instant> = None;
    for w in agent.config.warnings() {
        tracing::warn!("{w}");
    }
    loop {
        if wake == Wake::Reload {
            match reload() {
                Ok(new) => {
                    tracing::info!("configuration reloaded");
                    if new.broker.server_properties != properties {
                        properties = new.broker.server_properties.clone();
                        watcher = watch(&properties, wake_tx.clone())?;
                    }
                    agent.config = new;
                    ctx = None;
                }
                Err(e) => {
                    tracing::error!(error = %e, "new configuration rejected; keeping the old one")
                }
            }
        }
        let check_kafka = !kafka_checked || restart_pending;
        let on_lock = |held: bool| metrics.set_lock_held(held);
        // READY=1 as soon as the NLB and the file are done, before any Kafka restart: systemd
        // holds kafka.service's start job behind ours (Before=kafka.service), so a restart
        // issued before READY would leave Kafka stopped until the start finished.
        let ready_now = |report: Option<&PassReport>| {
            if !ready.swap(true, std::sync::atomic::Ordering::SeqCst) {
                let status = report.map(|r| {
                    format!(
                        "broker {} wired on port {}; checking Kafka",
                        r.broker_id, r.port
                    )
                });
                let mut states = vec![NotifyState::Ready];
                if let Some(status) = &status {
                    states.push(NotifyState::Status(status));
                }
                let _ = sd_notify::notify(&states);
            }
        };
        let outcome = tokio::select! {
            biased;
            () = &mut shutdown => break,
            // An interrupted restart is resumed on the next start: the lock says where it was.
            outcome = one_pass(&agent, &mut ctx, check_kafka, &on_lock, &ready_now) => outcome,
        };
        let outcome = match outcome {
            Ok(None) => {
                // Controller-only node: idle, but keep looking (the file may make it a broker).
                let status = "controller-only node: idle (nothing to wire)";
                if !idle_logged {
                    tracing::info!(file = %properties.display(), "{status}");
                    idle_logged = true;
                }
                failures = 0;
                metrics.pass_idle();
                ready_now(None);
                let _ = sd_notify::notify(&[NotifyState::Status(status)]);
                record_last_pass(
                    &state,
                    &LastPass {
                        finished_unix: crate::restart::unix_now(),
                        ok: true,
                        summary: status.to_string(),
                        port: None,
                    },
                );
                last_written = std::fs::read_to_string(&properties).ok().or(last_written);
                Err(None)
            }
            Ok(Some(pass)) => Ok(pass),
            Err(e) => Err(Some(e)),
        };
        let outcome = match outcome {
            Err(None) => None,
            Ok(pass) => Some(Ok(pass)),
            Err(Some(e)) => Some(Err(e)),
        };
        let outcome = match outcome {
            None => None,
            Some(Ok((report, effect))) => Some({
                idle_logged = false;
                kafka_checked = true;
                match effect {
                    None => Ok(report),
                    Some(Ok(o)) => {
                        restart_pending = matches!(o, Outcome::Pending { .. });
                        if matches!(o, Outcome::Restarted { .. }) {
                            metrics.restarted();
                        }
                        if !matches!(o, Outcome::NotRunning | Outcome::AlreadyEffective) {
                            tracing::info!(kafka = %crate::cli::describe_outcome(&o), "listener change handled");
                        }
                        Ok(report)
                    }
                    Some(Err(e)) => {
                        restart_pending = true;
                        Err(e)
                    }
                }
            }),
            Some(Err(e)) => Some(Err(e)),
        };
        if let Some(outcome) = outcome {
            metrics.set_restart_pending(restart_pending);
            metrics.sync_aws_calls(&agent.calls.snapshot());
            let status = match &outcome {
                Ok(report) => {
                    failures = 0;
                    let repairs = if converged_once {
                        report.changes.len() as u64
                    } else {
                        0
                    };
                    if repairs > 0 {
                        tracing::warn!(changes = repairs, "drift repaired");
                    }
                    converged_once = true;
                    metrics.pass_ok(report.port, repairs);
                    // Stale claims cost one read per claim: first pass, then every 10 minutes.
                    if stale_checked.map_or(true, |t| t.elapsed() >= STALE_CHECK_EVERY) {
                        match crate::restart::cluster_claims(&agent.lb, &agent.config).await {
                            Ok(claims) => {
                                let (_, stale) = crate::restart::split_claims(&claims);
                                if !stale.is_empty() {
                                    tracing::warn!(stale = ?stale, "stale claims: target groups without a registered target (brokers removed without `decommission`?)");
                                }
                                metrics.set_stale_claims(stale.len());
                                stale_checked = Some(std::time::Instant::now());
                            }
                            Err(e) => tracing::warn!(error = %e, "cannot count stale claims"),
                        }
                    }
                    report.log();
                    format!(
                        "broker {} wired on port {} ({} change(s) last pass)",
                        report.broker_id,
                        report.port,
                        report.changes.len()
                    )
                }
                Err(e) => {
                    failures += 1;
                    metrics.pass_failed(e.kind(), &e.to_string());
                    tracing::error!(error = %e, kind = e.kind(), consecutive_failures = failures, "pass failed");
                    ctx = None;
                    format!("last pass failed ({failures}x): {e}")
                }
            };
            last_written = std::fs::read_to_string(&properties).ok().or(last_written);
            record_last_pass(
                &state,
                &LastPass {
                    finished_unix: crate::restart::unix_now(),
                    ok: outcome.is_ok(),
                    summary: status.clone(),
                    port: outcome.as_ref().ok().map(|r| r.port),
                },
            );
            ready_now(None);
            let _ = sd_notify::notify(&[NotifyState::Status(&status)]);
        }

        let delay = next_delay(
            agent.config.daemon.interval,
            failures,
            &mut rand::thread_rng(),
        );
        let sleep = tokio::time::sleep(delay);
        tokio::pin!(sleep);
        wake = loop {
            tokio::select! {
                biased;
                () = &mut shutdown => {
                    let _ = sd_notify::notify(&[NotifyState::Stopping]);
                    drop(watcher);
                    return Ok(());
                }
                _ = hangup.recv() => break Wake::Reload,
                Some(w) = wake_rx.recv() => {
                    // Our own write (or a touch without change) is not drift.
                    let now = std::fs::read_to_string(&properties).ok();
                    if w == Wake::FileChanged && now.is_some() && now == last_written {
                        continue;
                    }
                    tracing::info!(file = %properties.display(), "server.properties changed on disk");
                    ctx = None;
                    break w;
                }
                () = &mut sleep => break Wake::Timer,
            }
        };
    }
    let _ = sd_notify::notify(&[NotifyState::Stopping]);
    drop(watcher);
    Ok(())
}

/// A pass, then (when the file changed, a change is pending, or on the first pass) making Kafka
/// use it. The second result is `None` when Kafka was not looked at. `Ok(None)`: a KRaft
/// controller-only node, left alone.
async fn one_pass<M, L, T>(
    agent: &Agent<M, L, T>,
    ctx: &mut Option<Context>,
    check_kafka: bool,
    on_lock: &(dyn Fn(bool) + Send + Sync),
    before_kafka: &(dyn Fn(Option<&PassReport>) + Send + Sync),
) -> Result<Option<(PassReport, Option<Result<Outcome, Error>>)>, Error>
where
    M: InstanceMetadata,
    L: LoadBalancer,
    T: InstanceTags,
{
    if agent.node_role()?.is_controller_only() {
        return Ok(None);
    }
    if ctx.is_none() {
        *ctx = Some(agent.context().await?);
    }
    let Some(c) = ctx.as_ref() else {
        unreachable!("context was just set")
    };
    let report = agent.pass(c).await?;
    let effect = if check_kafka || report.properties_written {
        before_kafka(Some(&report));
        Some(crate::cli::effect(agent, c, &report, on_lock).await)
    } else {
        None
    };
    Ok(Some((report, effect)))
}

struct AbortOnDrop(Option<tokio::task::JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(task) = self.0.take() {
            task.abort();
        }
    }
}

/// Watches the directory (the file itself is replaced by rename, which ends a file watch) and
/// sends a debounced wake-up for events on `file`.
fn watch(file: &Path, tx: mpsc::Sender<Wake>) -> Result<notify::RecommendedWatcher, DaemonError> {
    let dir = file.parent().unwrap_or(Path::new("/")).to_path_buf();
    let name = file.file_name().map(|n| n.to_os_string());
    let (raw_tx, mut raw_rx) = mpsc::unbounded_channel::<()>();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event {
            let relevant = event
                .paths
                .iter()
                .any(|p| p.file_name().map(|n| n.to_os_string()) == name);
            if relevant && !matches!(event.kind, notify::EventKind::Access(_)) {
                let _ = raw_tx.send(());
            }
        }
    })
    .map_err(|source| DaemonError::Watch {
        path: dir.clone(),
        source,
    })?;
    watcher
        .watch(&dir, notify::RecursiveMode::NonRecursive)
        .map_err(|source| DaemonError::Watch {
            path: dir.clone(),
            source,
        })?;
    tokio::spawn(async move {
        while raw_rx.recv().await.is_some() {
            // Debounce: config management often writes in several steps.
            loop {
                match tokio::time::timeout(Duration::from_millis(300), raw_rx.recv()).await {
                    Ok(Some(())) => continue,
                    Ok(None) => return,
                    Err(_) => break,
                }
            }
            if tx.send(Wake::FileChanged).await.is_err() {
                return;
            }
        }
    });
    Ok(watcher)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    #[test]
    fn delays_jitter_and_back_off() {
        let mut rng = StdRng::seed_from_u64(1);
        let interval = Duration::from_secs(60);
        for _ in 0..100 {
            let d = next_delay(interval, 0, &mut rng);
            assert!(
                d >= Duration::from_secs(54) && d <= Duration::from_secs(66),
                "{d:?}"
            );
        }
        let d1 = next_delay(interval, 1, &mut rng);
        assert!(d1 >= Duration::from_millis(900) && d1 <= Duration::from_millis(1100));
        let d4 = next_delay(interval, 4, &mut rng);
        assert!(d4 >= Duration::from_millis(7200) && d4 <= Duration::from_millis(8800));
        let d20 = next_delay(interval, 20, &mut rng);
        assert!(d20 <= Duration::from_secs(66));
    }
}
