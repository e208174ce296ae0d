//! The sections of `agent.toml` that are plain settings: `[aws]`, `[daemon]`, `[broker]`,
//! `[listener]` and `[nlb]` (with its shards), and their defaults.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use super::values::default_port_range;
use super::{IdleTimeout, PortRange, SecurityProtocol, DEFAULT_STATE_DIR};

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
    pub rack: Option<String>,
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
    pub advertised_host: String,
    /// Security protocol mapped to the listener name if the file has no mapping for it yet.
    #[serde(default)]
    pub security_protocol: SecurityProtocol,
    /// The name clients bootstrap from (e.g. `bootstrap.orders.example.internal`; same
    /// placeholders as `advertised_host`), if any: on a TLS listener the certificate pre-flight
    /// checks that the broker certificate covers it too (see [`crate::tls`]).
    #[serde(default)]
    pub bootstrap_host: Option<String>,
}

fn default_listener_name() -> String {
    "PRIVATELINK".to_string()
}
fn default_listener_port() -> u16 {
    9094
}

/// `[nlb]`
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NlbConfig {
    /// ARN of the Network Load Balancer behind the endpoint service (one NLB). Exactly one of
    /// this and `load_balancer_arns` is set; use [`NlbConfig::load_balancers`].
    #[serde(default)]
    pub load_balancer_arn: Option<String>,
    /// ARNs of the NLBs (shards), in `{shard}` order: a new broker claims on NLB `broker id mod n`
    /// first, then the next ones round the list (see `registry::shard_order`).
    #[serde(default)]
    pub load_balancer_arns: Option<Vec<String>>,
    /// Ports from which per-broker listeners are claimed, `"FIRST-LAST"`.
    #[serde(default = "default_port_range")]
    pub port_range: PortRange,
    /// Port of the shared bootstrap listener.
    #[serde(default = "default_bootstrap_port")]
    pub bootstrap_port: u16,
    /// The listeners' TCP idle timeout (`tcp.idle_timeout.seconds`): `"auto"` (default: the
    /// broker's `connections.max.idle.ms` plus a minute), `"off"`, or a duration (60 s-100 m).
    /// See [`crate::idle`].
    #[serde(default)]
    pub idle_timeout: IdleTimeout,
}

/// One NLB of the cluster: its 0-based index in the configured list (`{shard}`) and its ARN.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Shard {
    /// Index in `nlb.load_balancer_arns` (0 with `nlb.load_balancer_arn`).
    pub index: usize,
    /// The NLB.
    pub load_balancer_arn: String,
}

impl NlbConfig {
    /// The first configured NLB (the only one with `load_balancer_arn`).
    pub fn first_load_balancer(&self) -> String {
        self.load_balancers()
            .into_iter()
            .next()
            .map(|s| s.load_balancer_arn)
            .unwrap_or_default()
    }

    /// The configured NLBs in list order (one with `load_balancer_arn`); validation makes sure
    /// there is at least one.
    pub fn load_balancers(&self) -> Vec<Shard> {
        let arns: Vec<&String> = match (&self.load_balancer_arn, &self.load_balancer_arns) {
            (Some(one), None) => vec![one],
            (None, Some(many)) => many.iter().collect(),
            (Some(one), Some(_)) => vec![one],
            (None, None) => Vec::new(),
        };
        arns.into_iter()
            .enumerate()
            .map(|(index, arn)| Shard {
                index,
                load_balancer_arn: arn.clone(),
            })
            .collect()
    }
}

fn default_bootstrap_port() -> u16 {
    10000
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

    #[test]
    fn one_or_several_load_balancers() {
        const A: &str = "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/net/a/1";
        const B: &str = "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/net/b/2";
        let one = parse(MINIMAL).unwrap();
        assert_eq!(one.nlb.load_balancers().len(), 1);
        assert_eq!(one.nlb.load_balancers()[0].index, 0);
        let sharded = |host: &str, arns: &str| {
            MINIMAL.replace("kafka-{az_id}.orders", host).replace(
                &format!(
                    "load_balancer_arn = {:?}",
                    one.nlb.load_balancer_arn.clone().unwrap()
                ),
                &format!("load_balancer_arns = {arns}"),
            )
        };
        let c = parse(&sharded(
            "kafka-{az_id}-s{shard}.orders",
            &format!("[{A:?}, {B:?}]"),
        ))
        .unwrap();
        let shards = c.nlb.load_balancers();
        assert_eq!(
            shards
                .iter()
                .map(|s| (s.index, s.load_balancer_arn.as_str()))
                .collect::<Vec<_>>(),
            [(0, A), (1, B)]
        );
        // A one-element list needs no {shard}; {shard} with one NLB renders 0.
        assert!(parse(&sharded("kafka-{az_id}.orders", &format!("[{A:?}]"))).is_ok());
        let err = |text: &str| parse(text).unwrap_err().to_string();
        for (text, expected) in [
            (
                sharded("kafka-{az_id}.orders", &format!("[{A:?}, {B:?}]")),
                "listener.advertised_host: \"kafka-{az_id}.orders.example.internal\" has no {shard} placeholder, but nlb.load_balancer_arns lists 2 NLBs",
            ),
            (
                sharded("kafka-{az_id}-s{shard}.orders", "[]"),
                "nlb.load_balancer_arns: is empty",
            ),
            (
                sharded("kafka-{az_id}-s{shard}.orders", &format!("[{A:?}, {A:?}]")),
                "is listed twice",
            ),
            (
                sharded("kafka-{az_id}-s{shard}.orders", "[\"kafka\"]"),
                "nlb.load_balancer_arns: \"kafka\" is not a load balancer ARN",
            ),
            (
                MINIMAL.replace("[nlb]", &format!("[nlb]\nload_balancer_arns = [{B:?}]")),
                "set either nlb.load_balancer_arn (one NLB) or nlb.load_balancer_arns",
            ),
        ] {
            let message = err(&text);
            assert!(message.contains(expected), "{message}");
        }
    }
}
