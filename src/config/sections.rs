//! The sections of `agent.toml` that are plain settings: `[aws]`, `[daemon]`, `[broker]`,
//! `[listener]`, and their defaults (`[nlb]` is compiled from its keys in `config::nlb`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use super::{HostTemplate, SecurityProtocol, DEFAULT_STATE_DIR};

/// `[aws]`: the account's API budget. AWS throttles the ELB API per account and Region with
/// token buckets shared by every caller (AWS "Request throttling for the ELB API": `Describe*`
/// 40 tokens refilled 10 per second), so the agent treats throttling as back-pressure and keeps
/// its steady state to a small share of the refill.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AwsConfig {
    /// How long one pass (`run --once`, a daemon pass, `decommission`) may keep retrying
    /// throttled, 5xx and lost answers before it fails. Default 5 minutes: a fleet booting at
    /// once is paced by RegisterTargets' bucket (20 tokens, 4 per second; two registrations per
    /// broker), so n brokers need about (2n − 20) / 4 seconds in all: 5 minutes covers about
    /// 600 brokers at once, and stays under systemd's start timeout for the unit (6 minutes).
    #[serde(with = "humantime_serde")]
    pub pass_deadline: Duration,
    /// ELBv2 reads per second the whole cluster's steady state may make (each broker checks its
    /// NLB wiring every `cluster size / this` seconds, never more often than `daemon.interval`,
    /// with ±50 % jitter). Default 0.5: 5 % of the account's 10 per second refill, for a cluster
    /// of any size.
    pub steady_reads_per_second: f64,
}

impl Default for AwsConfig {
    fn default() -> Self {
        AwsConfig {
            pass_deadline: Duration::from_secs(300),
            steady_reads_per_second: 0.5,
        }
    }
}

/// `[daemon]`
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DaemonConfig {
    /// Time between reconcile passes (±10 % jitter).
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Address of the Prometheus `/metrics` and `/healthz` endpoint; `""` in the file (`None`)
    /// disables it.
    #[serde(deserialize_with = "optional_address")]
    pub metrics_listen: Option<SocketAddr>,
    /// Where the daemon records its last pass for `status` (systemd's `STATE_DIRECTORY` wins).
    pub state_dir: PathBuf,
}

impl Default for DaemonConfig {
    fn default() -> Self {
        DaemonConfig {
            interval: Duration::from_secs(60),
            metrics_listen: Some(SocketAddr::from(([127, 0, 0, 1], 9721))),
            state_dir: PathBuf::from(DEFAULT_STATE_DIR),
        }
    }
}

/// `[broker]`
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct BrokerConfig {
    /// Explicit broker id; wins over every other source (which must still agree).
    pub id: Option<i32>,
    /// Instance tag holding the broker id.
    pub id_tag: String,
    /// Kafka's `server.properties`.
    pub server_properties: PathBuf,
    /// `broker.rack` to write (same placeholders as `listener.advertised_host`, e.g.
    /// `"{az_id}"`); unset: `broker.rack` is left alone.
    pub rack: Option<HostTemplate>,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            id: None,
            id_tag: "kafka:broker-id".to_string(),
            server_properties: PathBuf::from("/etc/kafka/server.properties"),
            rack: None,
        }
    }
}

/// `[listener]`
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    /// Kafka listener name managed by the agent.
    #[serde(default = "default_listener_name")]
    pub name: String,
    /// Local port Kafka binds for the managed listener; NLB targets point at it.
    #[serde(default = "default_listener_port")]
    pub port: u16,
    /// Advertised host template, e.g. `kafka-{az_id}.orders.example.internal`.
    pub advertised_host: HostTemplate,
    /// Security protocol mapped to the listener name if the file has no mapping for it yet.
    #[serde(default)]
    pub security_protocol: SecurityProtocol,
    /// The name clients bootstrap from (e.g. `bootstrap.orders.example.internal`; same
    /// placeholders as `advertised_host`), if any: on a TLS listener the certificate pre-flight
    /// checks that the broker certificate covers it too (see [`crate::tls`]).
    #[serde(default)]
    pub bootstrap_host: Option<HostTemplate>,
}

fn default_listener_name() -> String {
    "PRIVATELINK".to_string()
}
fn default_listener_port() -> u16 {
    9094
}

/// `daemon.metrics_listen`: `""` is `None`, anything else must be a socket address.
fn optional_address<'de, D: Deserializer<'de>>(de: D) -> Result<Option<SocketAddr>, D::Error> {
    let text = String::deserialize(de)?;
    if text.is_empty() {
        return Ok(None);
    }
    text.parse().map(Some).map_err(|_| {
        serde::de::Error::custom(format!("{text:?} is not an address like 127.0.0.1:9721"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::test_util::{parse, parse_failure, MINIMAL};

    #[test]
    fn metrics_listen_empty_disables_and_anything_else_must_be_an_address() {
        let with = |value: &str| format!("{MINIMAL}[daemon]\nmetrics_listen = {value}\n");
        assert_eq!(parse(&with("\"\"")).unwrap().daemon.metrics_listen, None);
        assert_eq!(
            parse(&with("\"127.0.0.1:9721\""))
                .unwrap()
                .daemon
                .metrics_listen,
            Some(SocketAddr::from(([127, 0, 0, 1], 9721)))
        );
        assert_eq!(
            parse(&with("\"[::1]:9000\""))
                .unwrap()
                .daemon
                .metrics_listen
                .map(|a| a.to_string()),
            Some("[::1]:9000".to_string())
        );
        let text = with("\"nonsense\"");
        let err = parse(&text).unwrap_err().to_string();
        assert_eq!(
            err,
            "invalid config /etc/kplink/agent.toml:8:18: daemon.metrics_listen: \"nonsense\" is not an address like 127.0.0.1:9721"
        );
        let (line, message) = parse_failure(&with("9721"));
        assert_eq!(line, 8);
        assert!(
            message.starts_with("daemon.metrics_listen: invalid type"),
            "{message}"
        );
    }
}
