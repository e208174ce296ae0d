//! Idle connections: the NLB's TCP idle timeout above Kafka's.
//!
//! An NLB tracks every TCP flow and drops one idle for longer than its listener's
//! `tcp.idle_timeout.seconds` (AWS, "Update the TCP idle timeout for your Network Load Balancer
//! listener": default 350 s, 60-6000 s, set with ModifyListenerAttributes; a TLS listener's is
//! fixed at 350 s), silently: neither end gets a FIN or RST until it sends again. Kafka closes
//! idle connections itself, cleanly, after `connections.max.idle.ms`: 10 minutes on the broker
//! (`SocketServerConfigs.CONNECTIONS_MAX_IDLE_MS_DEFAULT` = 600000), 9 on clients
//! (`CommonClientConfigs`, 540000). With the NLB's 350 s in between, a consumer idle for six
//! minutes finds its connection dead on its next request (a timeout, then a reconnect).
//!
//! So the agent sets its listeners' idle timeout *above* the broker's
//! `connections.max.idle.ms`, read from `server.properties` ([`target`], pure): Kafka's own
//! cleanup always comes first. `nlb.idle_timeout` chooses: `"auto"` (that, plus a minute),
//! a fixed duration, or `"off"` (leave the listeners alone, e.g. without the IAM permission).
//!
//! When: right after this agent creates a listener (its claim, or the bootstrap listener when
//! it wins that race), as a planned step; and, for drift and listeners made by older agents,
//! in an hourly sweep by the cluster's accountant ([`sweep`]; one DescribeListeners per NLB
//! and one DescribeListenerAttributes per listener of the cluster).

use std::collections::BTreeMap;
use std::time::Duration;

use crate::config::Config;
pub(crate) use crate::config::{
    IdleTimeout, IDLE_MAX_SECONDS as MAX_SECONDS, IDLE_MIN_SECONDS as MIN_SECONDS,
};
use crate::nlb::{LoadBalancer, NlbError};
use crate::properties::Properties;
use crate::registry;

/// AWS's default for a listener nobody changed (what the fake NLB starts a listener with).
#[cfg(test)]
pub(crate) const AWS_DEFAULT_SECONDS: u32 = 350;
/// Kafka's broker default `connections.max.idle.ms` (10 minutes).
pub(crate) const KAFKA_DEFAULT_IDLE_MS: u64 = 600_000;
/// How far above Kafka's idle timeout `"auto"` puts the NLB's.
pub(crate) const MARGIN: Duration = Duration::from_secs(60);
/// How often the accountant sweeps the cluster's listeners.
pub(crate) const SWEEP_EVERY: Duration = Duration::from_secs(3600);

/// The idle timeout the listeners should have, in seconds (pure): `None` with `"off"`. `"auto"`:
/// the file's `connections.max.idle.ms` (Kafka's default when absent or not a number) plus
/// [`MARGIN`], rounded up to whole seconds and kept within AWS's 60-6000 s.
pub(crate) fn target(setting: IdleTimeout, properties: &str) -> Option<u32> {
    match setting {
        IdleTimeout::Off => None,
        IdleTimeout::Seconds(s) => Some(s),
        IdleTimeout::Auto => {
            let kafka_ms = Properties::parse(properties)
                .ok()
                .and_then(|p| p.get("connections.max.idle.ms"))
                .and_then(|v| v.trim().parse::<u64>().ok())
                .unwrap_or(KAFKA_DEFAULT_IDLE_MS);
            let secs = kafka_ms.div_ceil(1000) + MARGIN.as_secs();
            Some(secs.clamp(u64::from(MIN_SECONDS), u64::from(MAX_SECONDS)) as u32)
        }
    }
}

/// What a sweep did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Swept {
    /// Listeners of the cluster looked at.
    pub checked: usize,
    /// Listener ARN → the idle timeout it had, for each one set.
    pub changed: BTreeMap<String, Option<u32>>,
}

/// The accountant's sweep: every listener of this cluster on its NLBs (claims in
/// `nlb.port_range` forwarding to this cluster's dedicated groups, and the bootstrap listener
/// forwarding to its bootstrap group) gets idle timeout `want`. Another cluster's listeners are
/// never touched.
pub(crate) async fn sweep<L: LoadBalancer>(
    lb: &L,
    config: &Config,
    want: u32,
) -> Result<Swept, NlbError> {
    let range = config.port_range();
    let mut out = Swept::default();
    for shard in config.nlb.load_balancers() {
        let lb_arn = &shard.load_balancer_arn;
        let boot = registry::bootstrap_group_name(&config.cluster, lb_arn);
        for l in lb.listeners(lb_arn).await? {
            let Some(group) = l
                .target_group_arn
                .as_deref()
                .and_then(crate::nlb::target_group_name)
            else {
                continue;
            };
            let ours = if l.port == config.nlb.bootstrap_port {
                group == boot
            } else {
                range.contains(&l.port)
                    && crate::compat::broker_id_from_group(&config.cluster, lb_arn, group).is_some()
            };
            if !ours {
                continue;
            }
            out.checked += 1;
            let have = lb.listener_idle_timeout(&l.arn).await?;
            if have != Some(want) {
                lb.set_listener_idle_timeout(&l.arn, want).await?;
                out.changed.insert(l.arn.clone(), have);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize)]
    struct Wrap {
        t: IdleTimeout,
    }

    fn parse(v: &str) -> Result<IdleTimeout, String> {
        toml::from_str::<Wrap>(&format!("t = {v:?}"))
            .map(|w| w.t)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn the_setting_parses_auto_off_or_seconds_within_aws_range() {
        assert_eq!(parse("auto"), Ok(IdleTimeout::Auto));
        assert_eq!(parse("off"), Ok(IdleTimeout::Off));
        assert_eq!(parse("15m"), Ok(IdleTimeout::Seconds(900)));
        assert_eq!(parse("60s"), Ok(IdleTimeout::Seconds(60)));
        assert_eq!(parse("100m"), Ok(IdleTimeout::Seconds(6000)));
        for bad in ["59s", "101m", "90500ms", "soon"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        assert!(parse("59s").unwrap_err().contains("60 to 6000"));
    }

    #[test]
    fn auto_is_a_minute_above_the_brokers_idle_timeout() {
        // Kafka's default, 10 minutes: 660 s.
        assert_eq!(target(IdleTimeout::Auto, "broker.id=1\n"), Some(660));
        assert_eq!(
            target(IdleTimeout::Auto, "connections.max.idle.ms=900000\n"),
            Some(960)
        );
        // Rounded up to whole seconds.
        assert_eq!(
            target(IdleTimeout::Auto, "connections.max.idle.ms=100001\n"),
            Some(161)
        );
        // Within AWS's range.
        assert_eq!(
            target(IdleTimeout::Auto, "connections.max.idle.ms=1000\n"),
            Some(61)
        );
        assert_eq!(
            target(IdleTimeout::Auto, "connections.max.idle.ms=86400000\n"),
            Some(6000)
        );
        assert_eq!(
            target(IdleTimeout::Auto, "connections.max.idle.ms=soon\n"),
            Some(660)
        );
        assert_eq!(target(IdleTimeout::Off, ""), None);
        assert_eq!(target(IdleTimeout::Seconds(900), ""), Some(900));
    }
}
