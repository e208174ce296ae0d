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
//! [`LoopState::after_pass`], and small functions here carry out its [`Effects`] (metrics, logs,
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

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::time::{Duration, Instant};

use notify::Watcher;
use rand::Rng;
use sd_notify::NotifyState;
use serde::Serialize;
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::mpsc;

use crate::config::{Config, ConfigError};
use crate::ec2::InstanceTags;
use crate::kafka::KafkaCluster;
use crate::lifecycle::Lifecycle;
use crate::metadata::InstanceMetadata;
use crate::metrics::Metrics;
use crate::model::{Agent, Error, PassReport};
use crate::nlb::LoadBalancer;
use crate::plan::Context;
use crate::restart::{Outcome, ServiceManager};
use crate::steady::StaleTurn;

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

/// Reads the last pass recorded by a daemon, if any.
pub fn read_last_pass(config: &Config) -> Option<LastPass> {
    let text = std::fs::read_to_string(config.state_dir().join(LAST_PASS_FILE)).ok()?;
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

/// Makes the running broker use what the pass wrote, per `restart.mode`, through the given Kafka
/// and service adapters (used by the daemon and by `run --once`).
pub async fn make_effective<M, L, T, K, S>(
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

/// `, N throttled AWS answer(s) ridden through` when the account's API budget pushed back.
fn throttled_note(throttled: u64) -> String {
    match throttled {
        0 => String::new(),
        n => format!(", {n} throttled AWS answer(s) ridden through"),
    }
}

/// The status line of a controller-only node.
const IDLE_STATUS: &str = "controller-only node: idle (nothing to wire)";

/// What the daemon remembers between passes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoopState {
    /// Failed passes in a row (the back-off).
    pub failures: u32,
    /// A pass succeeded since the start: changes after that are drift repairs.
    pub converged_once: bool,
    /// Kafka was looked at since the start.
    pub kafka_checked: bool,
    /// The running broker does not use the written listener yet, or could not be asked.
    pub restart_pending: bool,
    /// The idle line was logged since the node last was a broker.
    pub idle_logged: bool,
    /// When stale claims were last counted.
    pub stale_counted: Option<Instant>,
    /// Leaving as soon as a pass saw it, and from then on: the instance stays drained.
    pub lifecycle: Lifecycle,
}

/// A pass as [`LoopState::after_pass`] sees it.
#[derive(Debug, Clone, Copy)]
pub enum PassResult<'a> {
    /// A KRaft controller-only node, left alone.
    Idle,
    /// The NLB and the file are done; `kafka` is the Kafka step when it ran.
    Wired {
        /// What the pass did.
        pass: Wired,
        /// Whether the instance is leaving (then the pass drained it and Kafka was left alone).
        lifecycle: &'a Lifecycle,
        /// The Kafka step's outcome, or its error.
        kafka: Option<Result<&'a Outcome, &'a Error>>,
    },
    /// The pass failed before reaching Kafka.
    Failed(&'a Error),
}

/// What [`LoopState::after_pass`] needs of a successful pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wired {
    /// Broker id.
    pub broker_id: i32,
    /// The claimed port.
    pub port: u16,
    /// Index of the NLB holding the claim.
    pub shard: usize,
    /// Changes the pass made.
    pub changes: usize,
    /// Throttled AWS answers the pass rode through.
    pub throttled: u64,
}

impl Wired {
    /// The summary of a pass report.
    pub fn of(report: &PassReport) -> Self {
        Wired {
            broker_id: report.broker_id,
            port: report.port,
            shard: report.shard,
            changes: report.changes.len(),
            throttled: report.aws_throttled.values().sum(),
        }
    }
}

/// What the loop does after a pass, as decided by [`LoopState::after_pass`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Effects {
    /// The pass counts as successful (metrics, state file).
    pub ok: bool,
    /// The claimed port, when the pass wired the broker.
    pub port: Option<u16>,
    /// Index of the NLB holding the claim, when the pass wired the broker.
    pub shard: Option<usize>,
    /// Log the idle line (first idle pass after start or after being a broker).
    pub log_idle: bool,
    /// New value of `kplink_restart_pending`; `None` leaves it (an idle pass).
    pub restart_pending: Option<bool>,
    /// The Kafka step changed something worth a log line.
    pub kafka_changed: bool,
    /// The Kafka step restarted the broker.
    pub restarted: bool,
    /// Changes counted as drift repairs (none before the first convergence).
    pub drift_repairs: u64,
    /// Count stale claims now (first success, then every 10 minutes).
    pub count_stale_claims: bool,
    /// New value of `kplink_draining`; `None` leaves it.
    pub draining: Option<bool>,
    /// This pass is the first to see the instance leaving: count and log the drain.
    pub drain_started: bool,
    /// Forget the broker context: resolve identity and broker id again next pass.
    pub reset_context: bool,
    /// The STATUS= line, also the state file's summary.
    pub status: String,
}

impl LoopState {
    /// Whether the next pass must look at Kafka: nothing known yet (first pass, or every pass
    /// so far failed before Kafka), or a change is pending (including Kafka errors).
    pub fn check_kafka(&self) -> bool {
        !self.kafka_checked || self.restart_pending
    }

    /// The transition after a pass, at `now`: updates the state and says what to do.
    pub fn after_pass(&mut self, result: PassResult<'_>, now: Instant) -> Effects {
        match result {
            PassResult::Idle => self.idle(),
            PassResult::Failed(error) => self.failed(error),
            PassResult::Wired {
                pass,
                lifecycle,
                kafka,
            } => {
                self.idle_logged = false;
                self.kafka_checked = true;
                let drain_started = lifecycle.is_leaving() && !self.lifecycle.is_leaving();
                self.lifecycle = lifecycle.clone().after(&self.lifecycle);
                if self.lifecycle.is_leaving() {
                    return self.drained(pass, drain_started, now);
                }
                match kafka {
                    None => self.wired(pass, None, now),
                    Some(Ok(outcome)) => {
                        self.restart_pending =
                            matches!(outcome, Outcome::Pending { .. } | Outcome::Starting { .. });
                        self.wired(pass, Some(outcome), now)
                    }
                    Some(Err(error)) => {
                        self.restart_pending = true;
                        self.failed(error)
                    }
                }
            }
        }
    }

    /// Stale claims were counted at `at`.
    pub fn stale_claims_counted(&mut self, at: Instant) {
        self.stale_counted = Some(at);
    }

    fn idle(&mut self) -> Effects {
        self.failures = 0;
        Effects {
            ok: true,
            log_idle: !std::mem::replace(&mut self.idle_logged, true),
            status: IDLE_STATUS.to_string(),
            ..Effects::default()
        }
    }

    fn failed(&mut self, error: &Error) -> Effects {
        self.failures = self.failures.saturating_add(1);
        Effects {
            restart_pending: Some(self.restart_pending),
            reset_context: true,
            status: format!("last pass failed ({}x): {error}", self.failures),
            ..Effects::default()
        }
    }

    fn wired(&mut self, pass: Wired, kafka: Option<&Outcome>, now: Instant) -> Effects {
        self.failures = 0;
        let drift_repairs = if self.converged_once {
            pass.changes as u64
        } else {
            0
        };
        self.converged_once = true;
        Effects {
            ok: true,
            port: Some(pass.port),
            shard: Some(pass.shard),
            restart_pending: Some(self.restart_pending),
            kafka_changed: kafka
                .is_some_and(|o| !matches!(o, Outcome::NotRunning | Outcome::AlreadyEffective)),
            restarted: matches!(kafka, Some(Outcome::Restarted { .. })),
            drift_repairs,
            // Stale claims cost one read per claim: first pass, then every 10 minutes.
            count_stale_claims: self.stale_counted.map_or(true, |t| {
                now.saturating_duration_since(t) >= STALE_CHECK_EVERY
            }),
            draining: Some(false),
            status: format!(
                "broker {} wired on port {} ({} change(s) last pass{})",
                pass.broker_id,
                pass.port,
                pass.changes,
                throttled_note(pass.throttled)
            ),
            ..Effects::default()
        }
    }

    /// A pass of a leaving instance: it drained it (out of the bootstrap group; claim, file and
    /// Kafka left alone). The drain itself is no drift repair; undoing someone's re-registration
    /// later is.
    fn drained(&mut self, pass: Wired, drain_started: bool, now: Instant) -> Effects {
        let mut effects = self.wired(pass, None, now);
        if drain_started {
            effects.drift_repairs = 0;
        }
        let kept = match pass.port {
            0 => "no port claimed".to_string(),
            port => format!("port {port} kept for a replacement"),
        };
        let why = self
            .lifecycle
            .leaving()
            .map(ToString::to_string)
            .unwrap_or_default();
        Effects {
            draining: Some(true),
            drain_started,
            status: format!(
                "broker {} draining (instance leaving: {why}): out of the bootstrap target group, {kept} ({} change(s) last pass)",
                pass.broker_id, pass.changes
            ),
            ..effects
        }
    }
}

/// A pass and, when it ran, its Kafka step. `Ok(None)`: a controller-only node, left alone.
type PassOutput = Result<Option<(PassReport, Option<Result<Outcome, Error>>)>, Error>;

impl<'a> PassResult<'a> {
    fn of(output: &'a PassOutput) -> Self {
        match output {
            Ok(None) => PassResult::Idle,
            Ok(Some((report, kafka))) => PassResult::Wired {
                pass: Wired::of(report),
                lifecycle: &report.lifecycle,
                kafka: kafka.as_ref().map(Result::as_ref),
            },
            Err(error) => PassResult::Failed(error),
        }
    }
}

/// The error that failed the pass, before or in the Kafka step.
fn failure(output: &PassOutput) -> Option<&Error> {
    match output {
        Err(error) | Ok(Some((_, Some(Err(error))))) => Some(error),
        Ok(_) => None,
    }
}

/// READY=1, sent once: just before the first pass looks at Kafka, else after the first pass.
#[derive(Debug, Default)]
struct Readiness(bool);

impl Readiness {
    fn announce(&mut self, status: Option<&str>) {
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

/// `server.properties`: its watcher and what it held after the last pass.
struct PropertiesFile {
    path: PathBuf,
    _watcher: notify::RecommendedWatcher,
    /// A change event leaving the file like this is the agent's own write (or a touch).
    last_written: Option<String>,
}

impl PropertiesFile {
    fn watch(path: &Path, tx: &mpsc::Sender<Wake>) -> Result<Self, DaemonError> {
        Ok(PropertiesFile {
            path: path.to_path_buf(),
            _watcher: watch(path, tx.clone())?,
            last_written: None,
        })
    }

    /// Watches `path` instead when a reloaded config names another file.
    fn follow(&mut self, path: &Path, tx: &mpsc::Sender<Wake>) -> Result<(), DaemonError> {
        if path != self.path {
            self._watcher = watch(path, tx.clone())?;
            self.path = path.to_path_buf();
        }
        Ok(())
    }

    fn remember(&mut self) {
        self.last_written = std::fs::read_to_string(&self.path)
            .ok()
            .or(self.last_written.take());
    }

    fn unchanged(&self) -> bool {
        let now = std::fs::read_to_string(&self.path).ok();
        now.is_some() && now == self.last_written
    }
}

/// Runs passes until `shutdown` completes. `adapters` builds the Kafka and service adapters for
/// a configuration (when Kafka is first looked at, and again after a reload); `reload` re-reads
/// the config file.
pub async fn run<M, L, T, K, S>(
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
        let readiness = &mut m.readiness;
        let output = tokio::select! {
            biased;
            () = &mut shutdown => break,
            // An interrupted restart is resumed on the next start: the lock says where it was.
            output = one_pass(&agent, &mut ctx, &state, &mut kafka, &adapters, &lock_held, readiness) => output,
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

/// The daemon's own machinery: metrics, the `/metrics` endpoint, the watchdog, the file watch,
/// SIGHUP, the state file and READY.
struct Machinery {
    metrics: Metrics,
    _metrics_server: AbortOnDrop,
    _watchdog: AbortOnDrop,
    wake_tx: mpsc::Sender<Wake>,
    wake_rx: mpsc::Receiver<Wake>,
    file: PropertiesFile,
    hangup: Signal,
    state_dir: PathBuf,
    readiness: Readiness,
}

impl Machinery {
    async fn start(config: &Config) -> Result<Self, DaemonError> {
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
    fn reload<M, L, T>(
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
    async fn finish_pass<M, L: LoadBalancer, T>(
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
        self.file.remember();
        publish(effects, &self.state_dir, &mut self.readiness);
    }

    /// Waits for the next reason to run a pass: the timer, SIGHUP, or a change of the file that
    /// is not the agent's own write. `None`: shut down.
    async fn next_wake<F: Future<Output = ()>>(
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
    readiness: &mut Readiness,
) -> PassOutput
where
    M: InstanceMetadata,
    L: LoadBalancer,
    T: InstanceTags,
    K: KafkaCluster,
    S: ServiceManager,
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
    let report = agent.pass_after(c, &state.lifecycle).await?;
    if report.lifecycle.is_leaving() || (!state.check_kafka() && !report.properties_written) {
        return Ok(Some((report, None)));
    }
    // READY=1 as soon as the NLB and the file are done, before any Kafka restart: systemd
    // holds kafka.service's start job behind ours (Before=kafka.service), so a restart
    // issued before READY would leave Kafka stopped until the start finished.
    readiness.announce(Some(&format!(
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

/// Logs the pass and brings the metrics up to date, as `effects` says.
fn account<M, L, T>(
    output: &PassOutput,
    effects: &Effects,
    agent: &Agent<M, L, T>,
    metrics: &Metrics,
    failures: u32,
    properties: &Path,
) {
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
async fn sweep_idle_timeouts<M, L: LoadBalancer, T>(agent: &Agent<M, L, T>) {
    let text = crate::properties::read(&agent.config.broker.server_properties).unwrap_or_default();
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
async fn count_stale_claims<M, L: LoadBalancer, T>(
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
    fn the_status_line_says_when_the_api_budget_pushed_back() {
        let mut state = LoopState::default();
        let pass = Wired {
            broker_id: 7,
            port: 10004,
            shard: 0,
            changes: 4,
            throttled: 12,
        };
        let result = PassResult::Wired {
            pass,
            lifecycle: &Lifecycle::Staying,
            kafka: None,
        };
        let effects = state.after_pass(result, Instant::now());
        assert_eq!(
            effects.status,
            "broker 7 wired on port 10004 (4 change(s) last pass, 12 throttled AWS answer(s) ridden through)"
        );
    }

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

    /// One pass of a table row.
    #[derive(Debug, Clone)]
    enum In {
        Idle,
        /// Wired with this many changes; the Kafka step's outcome when it ran.
        Wired(usize, Option<Outcome>),
        /// Wired, but the Kafka step failed (unreachable broker).
        KafkaError,
        /// Failed before Kafka.
        Failed,
        /// Wired with this many changes, metadata saying the instance is leaving (or not).
        Lifecycle(usize, bool),
    }

    fn unreachable_kafka() -> Error {
        Error::Restart(crate::restart::RestartError::Unreachable {
            bootstrap: "127.0.0.1:9092".into(),
            cause: "timed out".into(),
        })
    }

    fn pass(state: &mut LoopState, input: &In, now: Instant) -> Effects {
        let wired = |changes| Wired {
            broker_id: 7,
            port: 9001,
            shard: 0,
            changes,
            throttled: 0,
        };
        let kafka_error = unreachable_kafka();
        let failed = Error::AdvertisedHost("no tag".into());
        let staying = Lifecycle::Staying;
        let leaving = crate::lifecycle::decide(Some("Terminated"), None);
        let result = match input {
            In::Idle => PassResult::Idle,
            In::Wired(changes, kafka) => PassResult::Wired {
                pass: wired(*changes),
                lifecycle: &staying,
                kafka: kafka.as_ref().map(Ok),
            },
            In::KafkaError => PassResult::Wired {
                pass: wired(0),
                lifecycle: &staying,
                kafka: Some(Err(&kafka_error)),
            },
            In::Failed => PassResult::Failed(&failed),
            In::Lifecycle(changes, is_leaving) => PassResult::Wired {
                pass: wired(*changes),
                lifecycle: if *is_leaving { &leaving } else { &staying },
                kafka: None,
            },
        };
        state.after_pass(result, now)
    }

    /// A row: passes from a fresh state, then the last pass's effects and the state after it.
    struct Row {
        name: &'static str,
        passes: Vec<In>,
        ok: bool,
        failures: u32,
        check_kafka: bool,
        restart_pending: Option<bool>,
        drift_repairs: u64,
        log_idle: bool,
        status: &'static str,
    }

    const WIRED: &str = "broker 7 wired on port 9001 (3 change(s) last pass)";
    const UNCHANGED: &str = "broker 7 wired on port 9001 (0 change(s) last pass)";
    const FAILED: &str = "last pass failed (2x): listener.advertised_host: no tag";
    const KAFKA_FAILED: &str = "last pass failed (1x): Kafka at 127.0.0.1:9092 accepts connections but does not answer (timed out); the change stays pending and nothing is restarted until it answers (log recovery? GC pause? restart.kafka security settings?)";

    #[rustfmt::skip]
    fn rows() -> Vec<Row> {
        use In::*;
        use Outcome::*;
        let pending = || Pending { current: None };
        let row = |name, passes, (ok, failures, check_kafka), restart_pending, (drift_repairs, log_idle), status| Row {
            name, passes, ok, failures, check_kafka, restart_pending, drift_repairs, log_idle, status,
        };
        // name, passes, (ok, failures, check Kafka next), restart_pending gauge, (drift, log idle), status
        vec![
            row("first success", vec![Wired(3, Some(AlreadyEffective))], (true, 0, false), Some(false), (0, false), WIRED),
            row("failures count up", vec![Failed, Failed], (false, 2, true), Some(false), (0, false), FAILED),
            row("success resets failures", vec![Failed, Wired(0, Some(NotRunning))], (true, 0, false), Some(false), (0, false), UNCHANGED),
            row("restart pending: checked again", vec![Wired(0, Some(pending()))], (true, 0, true), Some(true), (0, false), UNCHANGED),
            row("pending, then updated", vec![Wired(0, Some(pending())), Wired(0, Some(DynamicallyUpdated))], (true, 0, false), Some(false), (0, false), UNCHANGED),
            row("unreachable Kafka: checked again", vec![KafkaError], (false, 1, true), Some(true), (0, false), KAFKA_FAILED),
            row("unreachable Kafka: every pass", vec![Wired(0, Some(AlreadyEffective)), KafkaError, Failed], (false, 2, true), Some(true), (0, false), FAILED),
            row("not running: not checked again", vec![Wired(0, Some(NotRunning)), Wired(0, None)], (true, 0, false), Some(false), (0, false), UNCHANGED),
            row("not running, file written", vec![Wired(0, Some(NotRunning)), Wired(3, Some(NotRunning))], (true, 0, false), Some(false), (3, false), WIRED),
            row("first passes fail before Kafka", vec![Failed, Failed, Wired(3, None)], (true, 0, false), Some(false), (0, false), WIRED),
            row("idle", vec![Idle], (true, 0, true), None, (0, true), IDLE_STATUS),
            row("idle logged once", vec![Idle, Idle], (true, 0, true), None, (0, false), IDLE_STATUS),
            row("idle again after being a broker", vec![Idle, Wired(3, Some(AlreadyEffective)), Idle], (true, 0, false), None, (0, true), IDLE_STATUS),
            row("idle resets failures", vec![Failed, Idle], (true, 0, true), None, (0, true), IDLE_STATUS),
            row("no drift before convergence", vec![Failed, Wired(3, Some(AlreadyEffective))], (true, 0, false), Some(false), (0, false), WIRED),
            row("drift after convergence", vec![Wired(1, Some(AlreadyEffective)), Wired(3, None)], (true, 0, false), Some(false), (3, false), WIRED),
            row("drift after a failure", vec![Wired(0, Some(AlreadyEffective)), Failed, Wired(3, None)], (true, 0, false), Some(false), (3, false), WIRED),
        ]
    }

    #[test]
    fn after_pass_table() {
        let now = Instant::now();
        for row in rows() {
            let mut state = LoopState::default();
            let mut last = Effects::default();
            for input in &row.passes {
                last = pass(&mut state, input, now);
            }
            let name = row.name;
            assert_eq!(last.ok, row.ok, "{name}: ok");
            assert_eq!(state.failures, row.failures, "{name}: failures");
            assert_eq!(state.check_kafka(), row.check_kafka, "{name}: check_kafka");
            assert_eq!(
                last.restart_pending, row.restart_pending,
                "{name}: restart_pending"
            );
            assert_eq!(last.drift_repairs, row.drift_repairs, "{name}: drift");
            assert_eq!(last.log_idle, row.log_idle, "{name}: log_idle");
            assert_eq!(last.status, row.status, "{name}: status");
            assert_eq!(last.reset_context, !row.ok, "{name}: reset_context");
            assert_eq!(
                last.port,
                (row.ok && row.status != IDLE_STATUS).then_some(9001),
                "{name}: port"
            );
        }
    }

    #[test]
    fn a_drain_is_counted_once_and_stays() {
        let now = Instant::now();
        let mut state = LoopState::default();
        const DRAINING: &str = "broker 7 draining (instance leaving: Auto Scaling target lifecycle state Terminated): out of the bootstrap target group, port 9001 kept for a replacement";
        let e = pass(
            &mut state,
            &In::Wired(3, Some(Outcome::AlreadyEffective)),
            now,
        );
        assert_eq!((e.draining, e.drain_started), (Some(false), false));
        // The first pass that sees it leaving starts the drain; that is no drift repair.
        let e = pass(&mut state, &In::Lifecycle(1, true), now);
        assert_eq!((e.draining, e.drain_started), (Some(true), true));
        assert_eq!(e.status, format!("{DRAINING} (1 change(s) last pass)"));
        assert_eq!(e.drift_repairs, 0);
        assert!(e.ok && state.lifecycle.is_leaving());
        // Later passes: still draining, not counted again; undoing a re-registration is a repair.
        let e = pass(&mut state, &In::Lifecycle(1, true), now);
        assert_eq!(
            (e.draining, e.drain_started, e.drift_repairs),
            (Some(true), false, 1)
        );
        // Metadata now says staying: the instance stays drained.
        let e = pass(&mut state, &In::Lifecycle(0, false), now);
        assert_eq!((e.draining, e.drain_started), (Some(true), false));
        assert_eq!(e.status, format!("{DRAINING} (0 change(s) last pass)"));
        // A failed pass leaves the gauge and the memory alone.
        let e = pass(&mut state, &In::Failed, now);
        assert_eq!(e.draining, None);
        assert!(state.lifecycle.is_leaving());
        // Leaving before any claim.
        let mut fresh = LoopState::default();
        let e = fresh.after_pass(
            PassResult::Wired {
                pass: Wired {
                    broker_id: 7,
                    port: 0,
                    shard: 0,
                    changes: 0,
                    throttled: 0,
                },
                lifecycle: &crate::lifecycle::decide(None, Some("{}")),
                kafka: None,
            },
            now,
        );
        assert!(e.status.contains("no port claimed"), "{}", e.status);
        assert!(e.drain_started);
    }

    #[test]
    fn after_pass_kafka_outcomes() {
        let now = Instant::now();
        let cases = [
            (Outcome::NotRunning, false, false),
            (Outcome::AlreadyEffective, false, false),
            (Outcome::DynamicallyUpdated, true, false),
            (Outcome::Restarted { took_ms: 5 }, true, true),
            (Outcome::Pending { current: None }, true, false),
        ];
        for (outcome, changed, restarted) in cases {
            let e = pass(
                &mut LoopState::default(),
                &In::Wired(0, Some(outcome.clone())),
                now,
            );
            assert_eq!(
                (e.kafka_changed, e.restarted),
                (changed, restarted),
                "{outcome:?}"
            );
        }
        let e = pass(&mut LoopState::default(), &In::KafkaError, now);
        assert_eq!((e.kafka_changed, e.restarted), (false, false));
    }

    #[test]
    fn stale_claims_are_counted_first_then_every_ten_minutes() {
        let t0 = Instant::now();
        let mut state = LoopState::default();
        let ok = In::Wired(0, None);
        assert!(!pass(&mut state, &In::Failed, t0).count_stale_claims);
        assert!(!pass(&mut state, &In::Idle, t0).count_stale_claims);
        assert!(pass(&mut state, &ok, t0).count_stale_claims);
        // Counting failed: due again at once.
        assert!(pass(&mut state, &ok, t0).count_stale_claims);
        state.stale_claims_counted(t0);
        assert!(!pass(&mut state, &ok, t0 + Duration::from_secs(599)).count_stale_claims);
        assert!(pass(&mut state, &ok, t0 + STALE_CHECK_EVERY).count_stale_claims);
        assert!(!pass(&mut state, &In::KafkaError, t0 + STALE_CHECK_EVERY).count_stale_claims);
    }

    #[test]
    fn outcomes_read_as_before() {
        assert_eq!(
            Outcome::Pending {
                current: Some("h:1".into())
            }
            .to_string(),
            "restart pending (restart.mode = \"never\"); broker advertises h:1"
        );
        assert_eq!(
            Outcome::Restarted { took_ms: 12 }.to_string(),
            "restarted under the cluster lock (12 ms)"
        );
    }
}
