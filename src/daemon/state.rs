//! What the loop remembers between passes ([`LoopState`]) and the pure transition after a pass
//! ([`LoopState::after_pass`]): back-off, whether Kafka must be looked at, drift, the status
//! line, when stale claims are due, and whether the instance was seen leaving. Table-tested.

use std::time::{Duration, Instant};

use crate::lifecycle::Lifecycle;
use crate::model::{Error, PassReport};
use crate::restart::Outcome;

/// How often the daemon counts stale claims (one DescribeTargetHealth per claim).
const STALE_CHECK_EVERY: Duration = Duration::from_secs(600);

/// `, N throttled AWS answer(s) ridden through` when the account's API budget pushed back.
fn throttled_note(throttled: u64) -> String {
    match throttled {
        0 => String::new(),
        n => format!(", {n} throttled AWS answer(s) ridden through"),
    }
}

/// The status line of a controller-only node.
pub(super) const IDLE_STATUS: &str = "controller-only node: idle (nothing to wire)";

/// What the daemon remembers between passes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct LoopState {
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
pub(crate) enum PassResult<'a> {
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
pub(crate) struct Wired {
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
    pub(crate) fn of(report: &PassReport) -> Self {
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
pub(crate) struct Effects {
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
    pub(crate) fn check_kafka(&self) -> bool {
        !self.kafka_checked || self.restart_pending
    }

    /// The transition after a pass, at `now`: updates the state and says what to do.
    pub(crate) fn after_pass(&mut self, result: PassResult<'_>, now: Instant) -> Effects {
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
    pub(crate) fn stale_claims_counted(&mut self, at: Instant) {
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
pub(super) type PassOutput = Result<Option<(PassReport, Option<Result<Outcome, Error>>)>, Error>;

impl<'a> PassResult<'a> {
    pub(super) fn of(output: &'a PassOutput) -> Self {
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
pub(super) fn failure(output: &PassOutput) -> Option<&Error> {
    match output {
        Err(error) | Ok(Some((_, Some(Err(error))))) => Some(error),
        Ok(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let failed = Error::Certificate("no name".into());
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
    const FAILED: &str =
        "last pass failed (2x): no name (nothing was created, server.properties unchanged)";
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
