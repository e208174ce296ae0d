//! Prometheus metrics and the `/metrics` + `/healthz` endpoint (public contract: metric names).
//!
//! | metric | type | meaning |
//! |---|---|---|
//! | `kplink_passes_total` | counter | reconcile passes finished |
//! | `kplink_pass_failures_total{kind}` | counter | failed passes by kind (`metadata`, `broker_id`, `aws`, `properties`, `port_range`, `kafka`, `restart`, `certificate`, `other`) |
//! | `kplink_aws_calls_total{operation}` | counter | AWS API calls by operation |
//! | `kplink_aws_throttled_total{operation}` | counter | throttled AWS answers by operation (the account's API budget; each was retried after a back-off) |
//! | `kplink_drift_repairs_total` | counter | changes made after the broker had converged once |
//! | `kplink_restarts_total` | counter | Kafka restarts triggered |
//! | `kplink_claimed_port` | gauge | the NLB port this broker holds (0 before the first claim) |
//! | `kplink_claim_info{shard,load_balancer_arn}` | gauge | 1 for the NLB holding this broker's claim (`shard`: its index in `nlb.load_balancer_arns`, 0 with one NLB) |
//! | `kplink_last_success_timestamp_seconds` | gauge | Unix time of the last successful pass |
//! | `kplink_restart_pending` | gauge | 1 while the running broker does not yet use the written listener |
//! | `kplink_lock_held` | gauge | 1 while this agent holds the cluster restart lock |
//! | `kplink_stale_claims` | gauge | claims of this cluster whose target group has no registered target |
//! | `kplink_draining` | gauge | 1 while this instance is leaving and drained from the bootstrap group |
//! | `kplink_drains_total` | counter | drains started (instance seen leaving: scale-in, Spot interruption) |
//! | `kplink_certificate_expiry_timestamp_seconds{listener}` | gauge | `notAfter` (Unix time) of the managed TLS listener's certificate, as the last pass's pre-flight read it (absent for a listener without TLS; see `crate::tls`) |

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::clock::unix_now;

type Labels = Vec<(String, String)>;

/// The agent's metrics; cheap to clone.
#[derive(Clone)]
pub(crate) struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    passes: Counter,
    failures: Family<Labels, Counter>,
    aws_calls: Family<Labels, Counter>,
    aws_throttled: Family<Labels, Counter>,
    drift_repairs: Counter,
    restarts: Counter,
    claimed_port: Gauge,
    claim_info: Family<Labels, Gauge>,
    last_success: Gauge,
    restart_pending: Gauge,
    lock_held: Gauge,
    stale_claims: Gauge,
    draining: Gauge,
    drains: Counter,
    certificate_expiry: Family<Labels, Gauge>,
    aws_seen: Mutex<BTreeMap<&'static str, u64>>,
    throttled_seen: Mutex<BTreeMap<&'static str, u64>>,
    last_ok_unix: AtomicI64,
    last_failure: Mutex<Option<String>>,
    health_window_secs: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new(Duration::from_secs(60))
    }
}

/// Registers every metric of `inner` under its public name (the names are a contract).
fn register_all(registry: &mut Registry, inner: &Inner) {
    registry.register(
        "kplink_passes",
        "Reconcile passes finished",
        inner.passes.clone(),
    );
    registry.register(
        "kplink_pass_failures",
        "Failed passes by kind",
        inner.failures.clone(),
    );
    registry.register(
        "kplink_aws_calls",
        "AWS API calls by operation",
        inner.aws_calls.clone(),
    );
    registry.register(
        "kplink_aws_throttled",
        "Throttled AWS answers by operation (the account's API budget), each retried after a back-off",
        inner.aws_throttled.clone(),
    );
    registry.register(
        "kplink_drift_repairs",
        "Changes made after the broker had converged",
        inner.drift_repairs.clone(),
    );
    registry.register(
        "kplink_restarts",
        "Kafka restarts triggered",
        inner.restarts.clone(),
    );
    registry.register(
        "kplink_claimed_port",
        "NLB port held by this broker",
        inner.claimed_port.clone(),
    );
    registry.register(
        "kplink_claim_info",
        "1 for the NLB holding this broker's claim (shard: its index in nlb.load_balancer_arns)",
        inner.claim_info.clone(),
    );
    registry.register(
        "kplink_last_success_timestamp_seconds",
        "Unix time of the last successful pass",
        inner.last_success.clone(),
    );
    registry.register(
        "kplink_restart_pending",
        "1 while the running broker does not use the written listener yet",
        inner.restart_pending.clone(),
    );
    registry.register(
        "kplink_lock_held",
        "1 while this agent holds the cluster restart lock",
        inner.lock_held.clone(),
    );
    registry.register(
        "kplink_stale_claims",
        "Claims of this cluster whose target group has no registered target (brokers removed without decommission)",
        inner.stale_claims.clone(),
    );
    registry.register(
        "kplink_draining",
        "1 while this instance is leaving (scale-in, Spot interruption) and drained from the bootstrap target group",
        inner.draining.clone(),
    );
    registry.register(
        "kplink_certificate_expiry_timestamp_seconds",
        "notAfter (Unix time) of the managed TLS listener's certificate, as the last pass's pre-flight read it",
        inner.certificate_expiry.clone(),
    );
    registry.register(
        "kplink_drains",
        "Drains started: this instance was seen leaving and taken out of the bootstrap target group",
        inner.drains.clone(),
    );
}

impl Metrics {
    /// Registers every metric; `/healthz` fails once no pass succeeded for three intervals.
    pub(crate) fn new(interval: Duration) -> Self {
        let mut registry = Registry::default();
        let inner = Inner {
            passes: Counter::default(),
            failures: Family::default(),
            aws_calls: Family::default(),
            aws_throttled: Family::default(),
            drift_repairs: Counter::default(),
            restarts: Counter::default(),
            claimed_port: Gauge::default(),
            claim_info: Family::default(),
            last_success: Gauge::default(),
            restart_pending: Gauge::default(),
            lock_held: Gauge::default(),
            stale_claims: Gauge::default(),
            draining: Gauge::default(),
            drains: Counter::default(),
            certificate_expiry: Family::default(),
            aws_seen: Mutex::new(BTreeMap::new()),
            throttled_seen: Mutex::new(BTreeMap::new()),
            last_ok_unix: AtomicI64::new(0),
            last_failure: Mutex::new(None),
            health_window_secs: AtomicU64::new(interval.as_secs().max(1) * 3 + 60),
            registry: Registry::default(),
        };
        register_all(&mut registry, &inner);
        Metrics {
            inner: Arc::new(Inner { registry, ..inner }),
        }
    }

    /// A successful pass.
    pub(crate) fn pass_ok(&self, port: u16, drift_repairs: u64) {
        let now = unix_now() as i64;
        self.inner.passes.inc();
        self.inner.claimed_port.set(i64::from(port));
        self.inner.last_success.set(now);
        self.inner.last_ok_unix.store(now, Ordering::Relaxed);
        self.inner.drift_repairs.inc_by(drift_repairs);
        if let Ok(mut f) = self.inner.last_failure.lock() {
            *f = None;
        }
    }

    /// The managed listener's certificate expires at `not_after` (Unix seconds): one
    /// `kplink_certificate_expiry_timestamp_seconds` series, replacing any earlier one.
    pub(crate) fn set_certificate_expiry(&self, listener: &str, not_after: i64) {
        let labels = vec![("listener".to_string(), listener.to_string())];
        self.inner.certificate_expiry.clear();
        self.inner
            .certificate_expiry
            .get_or_create(&labels)
            .set(not_after);
    }

    /// The NLB holding the claim: one `kplink_claim_info` series, replacing any earlier one.
    pub(crate) fn set_claim(&self, shard: usize, load_balancer_arn: &str) {
        let labels = vec![
            ("shard".to_string(), shard.to_string()),
            (
                "load_balancer_arn".to_string(),
                load_balancer_arn.to_string(),
            ),
        ];
        if self.inner.claim_info.get(&labels).is_none() {
            self.inner.claim_info.clear();
        }
        self.inner.claim_info.get_or_create(&labels).set(1);
    }

    /// A pass of a controller-only node: nothing to wire, healthy, no claimed port.
    pub(crate) fn pass_idle(&self) {
        let now = unix_now() as i64;
        self.inner.passes.inc();
        self.inner.claimed_port.set(0);
        self.inner.last_success.set(now);
        self.inner.last_ok_unix.store(now, Ordering::Relaxed);
        if let Ok(mut f) = self.inner.last_failure.lock() {
            *f = None;
        }
    }

    /// A failed pass of `kind`.
    pub(crate) fn pass_failed(&self, kind: &str, error: &str) {
        self.inner.passes.inc();
        self.inner
            .failures
            .get_or_create(&vec![("kind".to_string(), kind.to_string())])
            .inc();
        if let Ok(mut f) = self.inner.last_failure.lock() {
            *f = Some(error.to_string());
        }
    }

    /// Brings `kplink_aws_calls_total` up to the adapters' running totals.
    pub(crate) fn sync_aws_calls(&self, totals: &BTreeMap<&'static str, u64>) {
        sync_counters(&self.inner.aws_seen, &self.inner.aws_calls, totals);
    }

    /// Brings `kplink_aws_throttled_total` up to the adapters' running totals.
    pub(crate) fn sync_aws_throttled(&self, totals: &BTreeMap<&'static str, u64>) {
        sync_counters(
            &self.inner.throttled_seen,
            &self.inner.aws_throttled,
            totals,
        );
    }

    /// A Kafka restart was triggered.
    pub(crate) fn restarted(&self) {
        self.inner.restarts.inc();
    }

    /// Whether a restart is pending.
    pub(crate) fn set_restart_pending(&self, pending: bool) {
        self.inner.restart_pending.set(i64::from(pending));
    }

    /// Number of stale claims last seen.
    pub(crate) fn set_stale_claims(&self, n: usize) {
        self.inner
            .stale_claims
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// Whether this instance is drained because it is leaving.
    pub(crate) fn set_draining(&self, draining: bool) {
        self.inner.draining.set(i64::from(draining));
    }

    /// A drain started.
    pub(crate) fn drain_started(&self) {
        self.inner.drains.inc();
    }

    /// Whether the restart lock is held.
    pub(crate) fn set_lock_held(&self, held: bool) {
        self.inner.lock_held.set(i64::from(held));
    }

    /// A lock-held channel for [`crate::restart::Restarter::lock_held`]: a task sets
    /// `kplink_lock_held` to every value sent until the sender is dropped. Needs a tokio runtime.
    pub(crate) fn lock_held_sender(&self) -> tokio::sync::watch::Sender<bool> {
        let (sender, mut held) = tokio::sync::watch::channel(false);
        let metrics = self.clone();
        tokio::spawn(async move {
            // `changed` reports a last value sent just before the sender went away, then fails.
            while held.changed().await.is_ok() {
                metrics.set_lock_held(*held.borrow_and_update());
            }
        });
        sender
    }

    /// Prometheus text exposition.
    pub(crate) fn render(&self) -> String {
        let mut out = String::new();
        // Encoding into a String cannot fail.
        let _ = encode(&mut out, &self.inner.registry);
        out
    }

    /// `Ok` when a pass succeeded recently, else why not.
    pub(crate) fn health(&self) -> Result<(), String> {
        let last = self.inner.last_ok_unix.load(Ordering::Relaxed);
        let window = self.inner.health_window_secs.load(Ordering::Relaxed) as i64;
        let failure = self.inner.last_failure.lock().ok().and_then(|f| f.clone());
        if last == 0 {
            return Err(failure.unwrap_or_else(|| "no successful pass yet".to_string()));
        }
        let age = unix_now() as i64 - last;
        if age > window {
            return Err(format!(
                "last successful pass {age}s ago: {}",
                failure.unwrap_or_default()
            ));
        }
        Ok(())
    }
}

/// Serves `/metrics` and `/healthz` on a bound listener until the task is dropped.
pub(crate) async fn serve(listener: tokio::net::TcpListener, metrics: Metrics) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let metrics = metrics.clone();
                async move { Ok::<_, Infallible>(respond(&metrics, req.uri().path())) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Binds the metrics address.
pub(crate) async fn bind(addr: &str) -> std::io::Result<(tokio::net::TcpListener, SocketAddr)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    Ok((listener, local))
}

fn respond(metrics: &Metrics, path: &str) -> Response<Full<Bytes>> {
    let (status, content_type, body) = match path {
        "/metrics" => (
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            metrics.render(),
        ),
        "/healthz" => match metrics.health() {
            Ok(()) => (StatusCode::OK, "text/plain", "ok\n".to_string()),
            Err(why) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain",
                format!("unhealthy: {why}\n"),
            ),
        },
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found\n".to_string(),
        ),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    if let Ok(v) = hyper::header::HeaderValue::from_str(content_type) {
        response
            .headers_mut()
            .insert(hyper::header::CONTENT_TYPE, v);
    }
    response
}

/// Raises each `{operation}` counter of `family` to the running total in `totals`.
fn sync_counters(
    seen: &Mutex<BTreeMap<&'static str, u64>>,
    family: &Family<Labels, Counter>,
    totals: &BTreeMap<&'static str, u64>,
) {
    let Ok(mut seen) = seen.lock() else {
        return;
    };
    for (op, n) in totals {
        let before = seen.insert(op, *n).unwrap_or(0);
        if *n > before {
            family
                .get_or_create(&vec![("operation".to_string(), op.to_string())])
                .inc_by(n - before);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_contract_names() {
        let m = Metrics::new(Duration::from_secs(60));
        assert!(m.health().is_err());
        m.sync_aws_calls(&BTreeMap::from([("DescribeListeners", 2)]));
        m.sync_aws_calls(&BTreeMap::from([
            ("DescribeListeners", 5),
            ("CreateListener", 1),
        ]));
        m.sync_aws_throttled(&BTreeMap::from([("RegisterTargets", 3)]));
        m.sync_aws_throttled(&BTreeMap::from([("RegisterTargets", 7)]));
        m.pass_failed("aws", "throttled");
        m.pass_ok(10004, 2);
        m.set_claim(
            0,
            "arn:aws:elasticloadbalancing:us-east-1:1:loadbalancer/net/a/1",
        );
        m.set_claim(
            1,
            "arn:aws:elasticloadbalancing:us-east-1:1:loadbalancer/net/b/2",
        );
        m.set_lock_held(true);
        m.set_draining(true);
        m.drain_started();
        m.set_certificate_expiry("PRIVATELINK", 1_800_000_000);
        let text = m.render();
        for needle in [
            "kplink_passes_total 2",
            "kplink_pass_failures_total{kind=\"aws\"} 1",
            "kplink_aws_calls_total{operation=\"DescribeListeners\"} 5",
            "kplink_aws_calls_total{operation=\"CreateListener\"} 1",
            "kplink_aws_throttled_total{operation=\"RegisterTargets\"} 7",
            "kplink_drift_repairs_total 2",
            "kplink_restarts_total 0",
            "kplink_claimed_port 10004",
            "kplink_claim_info{shard=\"1\",load_balancer_arn=\"arn:aws:elasticloadbalancing:us-east-1:1:loadbalancer/net/b/2\"} 1",
            "kplink_last_success_timestamp_seconds ",
            "kplink_restart_pending 0",
            "kplink_lock_held 1",
            "kplink_draining 1",
            "kplink_drains_total 1",
            "kplink_certificate_expiry_timestamp_seconds{listener=\"PRIVATELINK\"} 1800000000",
        ] {
            assert!(text.contains(needle), "{needle} missing in\n{text}");
        }
        assert!(
            !text.contains("net/a/1"),
            "the old claim's series is gone:\n{text}"
        );
        assert!(m.health().is_ok());
    }

    #[tokio::test]
    async fn lock_held_follows_the_sender() {
        let m = Metrics::new(Duration::from_secs(60));
        let held = |m: &Metrics| {
            m.render()
                .lines()
                .find_map(|l| l.strip_prefix("kplink_lock_held "))
                .map(str::to_string)
        };
        let settle = || tokio::time::sleep(Duration::from_millis(50));
        let lock_held = m.lock_held_sender();
        lock_held.send_replace(true);
        settle().await;
        assert_eq!(held(&m).as_deref(), Some("1"));
        // The last value before the sender goes away still arrives.
        lock_held.send_replace(false);
        drop(lock_held);
        settle().await;
        assert_eq!(held(&m).as_deref(), Some("0"));
        // A new sender starts from the gauge as it is: only changes are forwarded.
        m.set_lock_held(true);
        let next = m.lock_held_sender();
        settle().await;
        assert_eq!(held(&m).as_deref(), Some("1"));
        drop(next);
    }
}
