//! Living within the account's AWS API budget: every AWS call of the agent goes through
//! [`CallCounter::send`], which counts it and rides through throttling, 5xx answers and lost
//! answers with full-jitter exponential back-off until the pass deadline.
//!
//! Why by hand and not the SDK's retry: AWS throttles the ELB API per account and Region with
//! token buckets shared by everything in the account (AWS "Request throttling for the ELB API":
//! non-mutating `Describe*` 40 tokens refilled 10 per second). A fleet booting at once drains
//! them for minutes, so a throttled answer is back-pressure, not failure: the retry must last as
//! long as the pass may (`aws.pass_deadline`), not a fixed number of attempts, and the SDK's
//! standard retry gives up after `max_attempts` and also stops retrying once its client-side
//! retry quota is spent (500 tokens, 5 per throttled retry). The loop here is a few lines, shares
//! one deadline across the pass's calls, and counts each throttled answer by operation for the
//! pass report, `status` and `kplink_aws_throttled_total{operation}`; the SDK clients are built
//! with their own retries off (see [`crate::aws`]).
//!
//! The back-off is "full jitter" (AWS Builders' Library, "Timeouts, retries, and backoff with
//! jitter"; the ELB throttling page points there): sleep a uniform random time in
//! `[0, min(cap, base × 2^attempt)]`, which spreads a burst of hosts evenly over the refill.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::display::DisplayErrorContext;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use rand::Rng;
// tokio's clock, so that tests with paused time drive the deadline as they drive the sleeps.
use tokio::time::Instant;

/// First back-off step (the random sleep is within `[0, BASE × 2^attempt]`).
pub(crate) const BASE: Duration = Duration::from_millis(200);
/// Longest single back-off, as the AWS SDKs' standard retry mode caps it (20 s): every waiting
/// host still retries at least every 20 s, so a fleet booting at once keeps the tightest bucket
/// (RegisterTargets, 4 per second) busy, and fewer attempts are wasted on throttled answers than
/// with a shorter cap (see README, Performance, for the measured effect).
pub(crate) const CAP: Duration = Duration::from_secs(20);
/// Without a pass deadline (one-off calls, e.g. `status`), how long one call may keep retrying.
pub(crate) const UNBOUNDED_CALL_LIMIT: Duration = Duration::from_secs(60);
/// Below this much time left before the deadline, no further try is made: a last try needs
/// the time of one round trip, and waits shorter than this would only spin.
pub(crate) const LAST_TRY_FLOOR: Duration = Duration::from_millis(100);

/// Why an AWS answer may be retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Retry {
    /// The account's API budget is exhausted for now (`Throttling`, `RequestLimitExceeded`, …).
    Throttled,
    /// A 5xx, a lost or timed-out answer, or a documented eventual-consistency answer.
    Transient,
    /// Anything else: the answer stands.
    No,
}

/// Wire codes AWS services use for "slow down" (ELBv2: `Throttling`, the ELB throttling page
/// says `ThrottlingException`; EC2: `RequestLimitExceeded`; others as the SDKs' standard retry
/// classifier lists them).
const THROTTLING_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottledException",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "RequestThrottled",
    "SlowDown",
    "PriorRequestNotComplete",
    "BandwidthLimitExceeded",
    "EC2ThrottledException",
];

/// Answers that mean "not yet" on one operation because ELBv2 is eventually consistent: right
/// after DeleteListener, DeleteTargetGroup of its group can answer `ResourceInUse` for a while
/// (terraform-provider-aws retries exactly this on delete).
fn lagging(operation: &str, code: &str) -> bool {
    operation == "DeleteTargetGroup" && code == "ResourceInUse"
}

/// Classifies an answer of `operation` (pure).
pub(crate) fn classify(operation: &str, code: Option<&str>, http_status: Option<u16>) -> Retry {
    match (code, http_status) {
        (Some(c), _) if THROTTLING_CODES.contains(&c) => Retry::Throttled,
        (Some(c), _) if lagging(operation, c) => Retry::Transient,
        (_, Some(429)) => Retry::Throttled,
        (_, Some(s)) if s >= 500 => Retry::Transient,
        _ => Retry::No,
    }
}

/// How an SDK error should be treated.
pub(crate) fn classify_sdk<E: ProvideErrorMetadata>(
    operation: &str,
    err: &SdkError<E, HttpResponse>,
) -> Retry {
    match err {
        // Lost, timed out or garbled answers: the request may or may not have happened; every
        // operation the agent sends is idempotent (ELBv2 documents CreateTargetGroup and
        // CreateListener as idempotent; registering, tagging and deleting are by nature).
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            Retry::Transient
        }
        SdkError::ServiceError(ctx) => classify(
            operation,
            ctx.err().code(),
            Some(ctx.raw().status().as_u16()),
        ),
        _ => Retry::No,
    }
}

/// The sleep before retry number `attempt` (0-based): full jitter.
pub(crate) fn full_jitter(attempt: u32, rng: &mut impl Rng) -> Duration {
    let ceiling = BASE
        .saturating_mul(1u32.checked_shl(attempt.min(16)).unwrap_or(u32::MAX))
        .min(CAP);
    ceiling.mul_f64(rng.gen::<f64>())
}

/// A failed call after its retries: the last answer and what happened before it.
#[derive(Debug)]
pub struct Attempted<E> {
    /// The last error.
    pub error: E,
    /// How many answers were throttled before it gave up (0: the error was not retryable).
    pub throttled: u32,
    /// Whether it stopped because the pass deadline (or the one-off call limit) came.
    pub deadline: bool,
}

impl<E> Attempted<E> {
    /// What to add to the error's message: `""` for an error that was not retried.
    pub fn note(&self) -> String {
        match (self.deadline, self.throttled) {
            (false, _) => String::new(),
            (true, 0) => " (retried until the pass deadline, aws.pass_deadline)".to_string(),
            (true, n) => format!(
                " (throttled {n} times; retried until the pass deadline, aws.pass_deadline: the account's AWS API budget is exhausted by other callers or a fleet booting at once)"
            ),
        }
    }
}

impl<E> Attempted<SdkError<E, HttpResponse>>
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    /// AWS's error code, or `Unknown` for a transport failure.
    pub fn code(&self) -> &str {
        self.error.code().unwrap_or("Unknown")
    }

    /// AWS's message (else the SDK's full error context), then [`Attempted::note`]: the message
    /// part of the adapters' one-line errors.
    pub fn message(&self) -> String {
        let message = match self.error.message() {
            Some(m) => m.to_string(),
            None => DisplayErrorContext(&self.error).to_string(),
        };
        message + &self.note()
    }
}

#[derive(Debug, Default)]
struct Ledger {
    calls: BTreeMap<&'static str, u64>,
    throttled: BTreeMap<&'static str, u64>,
    deadline: Option<Instant>,
}

/// AWS calls made, by operation, with the throttled answers they met, and the deadline of the
/// running pass. Shared by the adapters and the agent (cheap clones).
#[derive(Debug, Default, Clone)]
pub struct CallCounter(Arc<Mutex<Ledger>>);

impl CallCounter {
    fn with<R>(&self, f: impl FnOnce(&mut Ledger) -> R) -> Option<R> {
        self.0.lock().ok().map(|mut l| f(&mut l))
    }

    /// Counts one call.
    pub fn record(&self, operation: &'static str) {
        self.with(|l| *l.calls.entry(operation).or_default() += 1);
    }
    /// A copy of the counts so far.
    pub fn snapshot(&self) -> BTreeMap<&'static str, u64> {
        self.with(|l| l.calls.clone()).unwrap_or_default()
    }
    /// Total calls so far.
    pub fn total(&self) -> u64 {
        self.snapshot().values().sum()
    }
    /// Throttled answers so far, by operation.
    pub fn throttled(&self) -> BTreeMap<&'static str, u64> {
        self.with(|l| l.throttled.clone()).unwrap_or_default()
    }

    /// Starts a pass that may take `budget`: calls retry throttled and transient answers until
    /// then, never after. The deadline holds until the returned scope is dropped; calls outside
    /// a pass retry for at most [`UNBOUNDED_CALL_LIMIT`] each.
    #[must_use = "the deadline ends when the scope is dropped"]
    pub fn begin_pass(&self, budget: Duration) -> PassScope {
        self.with(|l| l.deadline = Some(Instant::now() + budget));
        PassScope(self.clone())
    }

    /// The end of the running pass, or, outside a pass, [`UNBOUNDED_CALL_LIMIT`] after
    /// `call_started`.
    fn end(&self, call_started: Instant) -> Instant {
        self.with(|l| l.deadline)
            .flatten()
            .unwrap_or(call_started + UNBOUNDED_CALL_LIMIT)
    }

    /// Whether a sleep of `delay` from now ends before the deadline (or, without one, before
    /// `UNBOUNDED_CALL_LIMIT` after `call_started`).
    fn may_wait(&self, delay: Duration, call_started: Instant) -> bool {
        Instant::now() + delay < self.end(call_started)
    }

    /// How long to wait before the next try, given the back-off's `delay`: the delay itself,
    /// or only the time left when the delay would end past the deadline, so that the last try
    /// is made at the deadline instead of giving up one whole back-off early (with a 20 s cap, a
    /// 10 s deadline could otherwise end after 2 s). `None` once less than [`LAST_TRY_FLOOR`]
    /// is left: give up.
    fn wait_before_retry(&self, delay: Duration, call_started: Instant) -> Option<Duration> {
        // The floor first: a short back-off that still fits must not buy one more try either.
        let left = self
            .end(call_started)
            .saturating_duration_since(Instant::now());
        if left < LAST_TRY_FLOOR {
            return None;
        }
        Some(if self.may_wait(delay, call_started) {
            delay
        } else {
            left
        })
    }

    /// Sleeps before attempt `attempt` of something that is not an AWS error, such as a read
    /// that does not yet show what ELBv2 just answered (eventual consistency). `false`: the
    /// deadline has come, give up.
    pub async fn pause(&self, attempt: u32, since: Instant) -> bool {
        let delay = full_jitter(attempt, &mut rand::thread_rng());
        match self.wait_before_retry(delay, since) {
            Some(wait) => {
                tokio::time::sleep(wait).await;
                true
            }
            None => false,
        }
    }

    /// Sends one AWS operation: counts it, then retries throttled and transient answers with
    /// full-jitter back-off until the deadline. `attempt` builds and sends the request.
    pub async fn send<T, E, F, Fut>(
        &self,
        operation: &'static str,
        mut attempt: F,
    ) -> Result<T, Attempted<SdkError<E, HttpResponse>>>
    where
        E: ProvideErrorMetadata,
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, SdkError<E, HttpResponse>>>,
    {
        self.record(operation);
        let started = Instant::now();
        let mut throttled = 0;
        let mut n = 0;
        loop {
            let error = match attempt().await {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            let kind = classify_sdk(operation, &error);
            match kind {
                Retry::No => {
                    return Err(Attempted {
                        error,
                        throttled,
                        deadline: false,
                    })
                }
                Retry::Throttled => {
                    throttled += 1;
                    self.with(|l| *l.throttled.entry(operation).or_default() += 1);
                }
                Retry::Transient => {
                    tracing::debug!(operation, "transient AWS answer; backing off");
                }
            }
            let delay = full_jitter(n, &mut rand::thread_rng());
            let Some(wait) = self.wait_before_retry(delay, started) else {
                return Err(Attempted {
                    error,
                    throttled,
                    deadline: true,
                });
            };
            if kind == Retry::Throttled && throttled % 10 == 1 {
                tracing::info!(
                    operation,
                    throttled,
                    "AWS throttled the call (account API budget); backing off"
                );
            }
            tokio::time::sleep(wait).await;
            n += 1;
        }
    }
}

/// The deadline of a running pass; dropping it ends the pass (see [`CallCounter::begin_pass`]).
#[derive(Debug)]
pub struct PassScope(CallCounter);

impl Drop for PassScope {
    fn drop(&mut self) {
        self.0.with(|l| l.deadline = None);
    }
}

/// Per operation, how much `after` grew over `before` (operations that did not grow are left out).
pub(crate) fn since(
    before: &BTreeMap<&'static str, u64>,
    after: BTreeMap<&'static str, u64>,
) -> BTreeMap<&'static str, u64> {
    after
        .into_iter()
        .filter_map(|(op, n)| {
            let delta = n.saturating_sub(before.get(op).copied().unwrap_or(0));
            (delta > 0).then_some((op, delta))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    #[test]
    fn classification() {
        let rows: &[(&str, Option<&str>, Option<u16>, Retry)] = &[
            (
                "DescribeListeners",
                Some("Throttling"),
                Some(400),
                Retry::Throttled,
            ),
            (
                "DescribeListeners",
                Some("ThrottlingException"),
                Some(400),
                Retry::Throttled,
            ),
            (
                "DescribeTags",
                Some("RequestLimitExceeded"),
                Some(503),
                Retry::Throttled,
            ),
            (
                "CreateListener",
                Some("InternalFailure"),
                Some(500),
                Retry::Transient,
            ),
            (
                "CreateListener",
                Some("ServiceUnavailable"),
                Some(503),
                Retry::Transient,
            ),
            ("CreateListener", None, Some(429), Retry::Throttled),
            (
                "DeleteTargetGroup",
                Some("ResourceInUse"),
                Some(400),
                Retry::Transient,
            ),
            // Only DeleteTargetGroup lags behind DeleteListener; elsewhere it is an answer.
            (
                "DeleteListener",
                Some("ResourceInUse"),
                Some(400),
                Retry::No,
            ),
            (
                "CreateListener",
                Some("DuplicateListener"),
                Some(400),
                Retry::No,
            ),
            (
                "CreateListener",
                Some("TooManyListeners"),
                Some(400),
                Retry::No,
            ),
            ("DescribeTags", Some("AccessDenied"), Some(403), Retry::No),
        ];
        for (op, code, status, want) in rows {
            assert_eq!(
                classify(op, *code, *status),
                *want,
                "{op} {code:?} {status:?}"
            );
        }
    }

    #[test]
    fn full_jitter_stays_under_the_growing_ceiling_and_the_cap() {
        let mut rng = StdRng::seed_from_u64(7);
        for attempt in 0..40 {
            let ceiling = (BASE * 2u32.pow(attempt.min(16))).min(CAP);
            let mut max = Duration::ZERO;
            for _ in 0..200 {
                let d = full_jitter(attempt, &mut rng);
                assert!(d <= ceiling, "attempt {attempt}: {d:?} > {ceiling:?}");
                max = max.max(d);
            }
            // Full jitter uses the whole range, not a band near the ceiling.
            assert!(max > ceiling / 2, "attempt {attempt}: max {max:?}");
        }
        let low: Vec<_> = (0..200).map(|_| full_jitter(30, &mut rng)).collect();
        assert!(
            low.iter().any(|d| *d < CAP / 4),
            "full jitter reaches near zero"
        );
    }

    #[test]
    fn the_deadline_bounds_waiting() {
        let calls = CallCounter::default();
        let now = Instant::now();
        assert!(calls.may_wait(Duration::from_secs(1), now));
        assert!(!calls.may_wait(UNBOUNDED_CALL_LIMIT, now));
        let scope = calls.begin_pass(Duration::from_secs(2));
        assert!(calls.may_wait(Duration::from_secs(1), now));
        assert!(!calls.may_wait(Duration::from_secs(3), now));
        drop(scope);
        assert!(calls.may_wait(Duration::from_secs(3), now));
    }

    fn throttled() -> SdkError<aws_smithy_types::error::ErrorMetadata, HttpResponse> {
        let code = aws_smithy_types::error::ErrorMetadata::builder()
            .code("Throttling")
            .build();
        let status = aws_smithy_runtime_api::http::StatusCode::try_from(400).unwrap();
        let raw = HttpResponse::new(status, aws_smithy_types::body::SdkBody::empty());
        SdkError::service_error(code, raw)
    }

    /// A throttled call retries until the pass deadline itself, not until the first back-off
    /// that would end past it: with the 20 s cap, a 10 s pass gave up after 2 s one run in five.
    #[tokio::test(start_paused = true)]
    async fn a_throttled_call_retries_until_the_deadline() {
        for seed_run in 0..20 {
            let calls = CallCounter::default();
            let _scope = calls.begin_pass(Duration::from_secs(10));
            let started = Instant::now();
            let tries = std::cell::Cell::new(0u32);
            let got: Result<(), _> = calls
                .send("DescribeListeners", || {
                    tries.set(tries.get() + 1);
                    async { Err(throttled()) }
                })
                .await;
            let took = started.elapsed();
            let err = got.expect_err("always throttled");
            assert!(err.deadline, "run {seed_run}");
            assert_eq!(err.throttled, tries.get(), "run {seed_run}");
            assert!(
                took >= Duration::from_secs(10) - LAST_TRY_FLOOR && took <= Duration::from_secs(10),
                "run {seed_run}: gave up after {took:?} of 10 s"
            );
            assert_eq!(
                calls.throttled()["DescribeListeners"],
                u64::from(tries.get())
            );
        }
    }

    /// Near the deadline the wait shrinks to what is left, and under the floor there is none.
    #[tokio::test(start_paused = true)]
    async fn the_last_wait_is_clamped_to_the_deadline() {
        let calls = CallCounter::default();
        let now = Instant::now();
        let _scope = calls.begin_pass(Duration::from_secs(3));
        let wait = |d| calls.wait_before_retry(d, now);
        assert_eq!(wait(Duration::from_secs(1)), Some(Duration::from_secs(1)));
        assert_eq!(wait(Duration::from_secs(20)), Some(Duration::from_secs(3)));
        tokio::time::advance(Duration::from_secs(3) - LAST_TRY_FLOOR).await;
        assert_eq!(wait(Duration::from_secs(20)), Some(LAST_TRY_FLOOR));
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(wait(Duration::from_secs(20)), None);
        assert!(!calls.pause(5, now).await, "pause gives up as send does");
    }

    #[test]
    fn notes_say_why_it_gave_up() {
        let quiet = Attempted {
            error: (),
            throttled: 0,
            deadline: false,
        };
        assert_eq!(quiet.note(), "");
        let budget = Attempted {
            error: (),
            throttled: 12,
            deadline: true,
        };
        assert!(budget.note().contains("throttled 12 times"));
        assert!(budget.note().contains("aws.pass_deadline"));
    }
}
