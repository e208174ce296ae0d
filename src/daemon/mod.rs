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
//! The loop's memory between passes is a [`LoopState`] value; what a pass means for the next one
//! (back-off, whether Kafka must be looked at, drift, the status line, when stale claims are due,
//! whether the instance was seen leaving and stays drained) is decided by the pure
//! [`LoopState::after_pass`], and small functions here carry out its [`Effects`](state::Effects) (metrics, logs,
//! the state file, sd_notify).
//!
//! The daemon depends on [`crate::reconcile`], [`crate::restart`], the [`KafkaCluster`] and
//! [`ServiceManager`] traits and [`crate::metrics`]; the caller ([`crate::cli`]) builds the real
//! adapters and hands them in. The Kafka and service adapters come from a factory argument: built
//! when Kafka is first looked at, kept, and built again after a SIGHUP reload (which may change
//! `restart.bootstrap_servers`, `restart.kafka` or `restart.command`) or after building failed.
//!
//! systemd integration: READY=1 after the first pass (before any Kafka restart it triggers),
//! STATUS= after each pass, WATCHDOG=1 when
//! `WATCHDOG_USEC` is set. The daemon exits non-zero only when its own machinery breaks (metrics
//! address unusable, watcher or signal setup failing) so that systemd restarts it.
//!
//! The module's parts: `state` (the pure [`LoopState`] and what a pass means for the next one),
//! `machinery` (metrics and health serving, the watchdog, SIGHUP, READY/STATUS), `watch` (the
//! `server.properties` watch), `account` (logs, metrics, stale claims and the idle-timeout
//! sweep after a pass) and `last_pass` (the state file `status` reads).

mod account;
mod last_pass;
mod machinery;
mod state;
mod watch;

use std::future::Future;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use rand::Rng;
use sd_notify::NotifyState;

use crate::config::{Config, ConfigError};
use crate::ec2::InstanceTags;
use crate::kafka::KafkaCluster;
use crate::metadata::InstanceMetadata;
use crate::model::{Agent, Error, PassReport};
use crate::nlb::LoadBalancer;
use crate::plan::Context;
use crate::restart::{Outcome, ServiceManager};

pub(crate) use last_pass::{read_last_pass, LastPass};
pub(crate) use state::{LoopState, PassResult};

use machinery::Machinery;
use state::PassOutput;
use watch::Wake;

/// Why the daemon stopped with an error.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DaemonError {
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

/// Next wait: the interval with ±10 % jitter after success, else exponential back-off from 1 s
/// (with jitter), capped at the interval.
pub(crate) fn next_delay(
    interval: Duration,
    consecutive_failures: u32,
    rng: &mut impl Rng,
) -> Duration {
    let base = if consecutive_failures == 0 {
        interval
    } else {
        let exp = Duration::from_secs(1)
            .saturating_mul(1 << consecutive_failures.min(16).saturating_sub(1));
        exp.min(interval)
    };
    base.mul_f64(rng.gen_range(0.9..=1.1))
}

/// Makes the running broker use what the pass wrote, per `restart.mode`, through the given Kafka
/// and service adapters (used by the daemon and by `run --once`).
pub(crate) async fn make_effective<M, L, T, K, S>(
    agent: &Agent<M, L, T>,
    ctx: &Context,
    report: &PassReport,
    kafka: &K,
    service: &S,
    lock_held: &tokio::sync::watch::Sender<bool>,
) -> Result<Outcome, Error>
where
    M: InstanceMetadata,
    L: LoadBalancer,
    T: InstanceTags,
    K: KafkaCluster,
    S: ServiceManager,
{
    let outcome = agent
        .make_effective(ctx, report, kafka, service, lock_held)
        .await?;
    tracing::info!(outcome = ?outcome, "kafka listener state");
    Ok(outcome)
}

/// After a pass that changed the NLB, the next pass comes within about this long.
const VERIFY_AFTER_CHANGE: Duration = Duration::from_secs(5);

/// Whether a pass changed the NLB.
fn changed_the_nlb(output: &PassOutput) -> bool {
    matches!(output, Ok(Some((report, _))) if report.changes.iter().any(crate::plan::Step::touches_nlb))
}

/// Runs passes until `shutdown` completes. `adapters` builds the Kafka and service adapters for
/// a configuration (when Kafka is first looked at, and again after a reload); `reload` re-reads
/// the config file.
pub(crate) async fn run<M, L, T, K, S>(
    mut agent: Agent<M, L, T>,
    mut ctx: Option<Context>,
    adapters: impl Fn(&Config) -> Result<(K, S), Error>,
    reload: impl Fn() -> Result<Config, ConfigError>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), DaemonError>
where
    M: InstanceMetadata,
    L: LoadBalancer,
    T: InstanceTags,
    K: KafkaCluster,
    S: ServiceManager,
{
    let mut m = Machinery::start(&agent.config).await?;
    for w in agent.config.warnings() {
        tracing::warn!("{w}");
    }
    tokio::pin!(shutdown);
    let mut state = LoopState::default();
    let mut kafka: Option<(K, S)> = None;
    let lock_held = m.metrics.lock_held_sender();
    let mut wake = Wake::Timer;
    loop {
        if wake == Wake::Reload && m.reload(&mut agent, &reload)? {
            ctx = None;
            // Rebuilt from the new [restart] keys when Kafka is next looked at.
            kafka = None;
        }
        let output = tokio::select! {
            biased;
            () = &mut shutdown => break,
            // An interrupted restart is resumed on the next start: the lock says where it was.
            output = one_pass(&agent, &mut ctx, &state, &mut kafka, &adapters, &lock_held, &mut m) => output,
        };
        let effects = state.after_pass(PassResult::of(&output), Instant::now());
        m.finish_pass(&agent, &output, &effects, &mut state).await;
        if effects.reset_context {
            ctx = None;
        }
        let mut delay = next_delay(
            agent.config.daemon.interval,
            state.failures,
            &mut rand::thread_rng(),
        );
        if changed_the_nlb(&output) {
            // ELBv2 is eventually consistent: look at what this pass made again soon, in full,
            // and keep that view for the steady state (see `crate::steady`).
            delay = delay.min(VERIFY_AFTER_CHANGE.mul_f64(rand::thread_rng().gen_range(0.5..1.5)));
        }
        match m.next_wake(delay, shutdown.as_mut()).await {
            None => break,
            Some(w) => wake = w,
        }
        if wake == Wake::FileChanged {
            ctx = None;
        }
    }
    let _ = sd_notify::notify(&[NotifyState::Stopping]);
    Ok(())
}

/// A pass, then (when the file changed, a change is pending, or Kafka was never looked at)
/// making Kafka use it, with the adapters `adapters` built for the current configuration.
/// A leaving instance (now or in an earlier pass, per `state`) is drained and Kafka left alone.
async fn one_pass<M, L, T, K, S>(
    agent: &Agent<M, L, T>,
    ctx: &mut Option<Context>,
    state: &LoopState,
    kafka: &mut Option<(K, S)>,
    adapters: &impl Fn(&Config) -> Result<(K, S), Error>,
    lock_held: &tokio::sync::watch::Sender<bool>,
    m: &mut Machinery,
) -> PassOutput
where
    M: InstanceMetadata,
    L: LoadBalancer,
    T: InstanceTags,
    K: KafkaCluster,
    S: ServiceManager,
{
    // A pass reads server.properties once; no text is carried from one pass to the next.
    agent.file.forget();
    if agent.node_role()?.is_controller_only() {
        return Ok(None);
    }
    if ctx.is_none() {
        *ctx = Some(agent.context().await?);
    }
    let Some(c) = ctx.as_ref() else {
        unreachable!("context was just set")
    };
    let report = agent.pass_after(c, &state.lifecycle).await?;
    // The file as this pass left it, taken at once: a rewrite by someone else during what
    // follows (a rolling restart takes minutes, the accountant's reads seconds) is drift that
    // must wake the loop, not be mistaken for the agent's own write.
    m.file.remember();
    if report.lifecycle.is_leaving() || (!state.check_kafka() && !report.properties_written) {
        return Ok(Some((report, None)));
    }
    // READY=1 as soon as the NLB and the file are done, before any Kafka restart: systemd
    // holds kafka.service's start job behind ours (Before=kafka.service), so a restart
    // issued before READY would leave Kafka stopped until the start finished.
    m.readiness.announce(Some(&format!(
        "broker {} wired on port {}; checking Kafka",
        report.broker_id, report.port
    )));
    let built = match kafka.take() {
        Some(built) => Ok(built),
        None => adapters(&agent.config),
    };
    let effect = match built {
        Ok(built) => {
            let (k, s) = kafka.insert(built);
            make_effective(agent, c, &report, k, s, lock_held).await
        }
        Err(e) => Err(e),
    };
    Ok(Some((report, Some(effect))))
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
