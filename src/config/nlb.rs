//! `[nlb]`: its keys as written ([`RawNlb`]), compiled at load into [`NlbConfig`], whose list of
//! NLBs cannot be empty ([`LoadBalancers`]). The file names one NLB with `load_balancer_arn` or
//! several with `load_balancer_arns`; past the load, nothing asks which.

use serde::Deserialize;

use super::values::default_port_range;
use super::{IdleTimeout, PortRange, MAX_LOAD_BALANCERS};

/// `[nlb]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNlb {
    #[serde(default)]
    load_balancer_arn: Option<String>,
    #[serde(default)]
    load_balancer_arns: Option<Vec<String>>,
    #[serde(default = "default_port_range")]
    port_range: PortRange,
    #[serde(default = "default_bootstrap_port")]
    bootstrap_port: u16,
    #[serde(default)]
    idle_timeout: IdleTimeout,
}

fn default_bootstrap_port() -> u16 {
    10000
}

/// `[nlb]`, compiled.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(try_from = "RawNlb")]
pub struct NlbConfig {
    /// The NLBs behind the endpoint services: `nlb.load_balancer_arn` (one NLB) or
    /// `nlb.load_balancer_arns` (shards, in `{shard}` order: a new broker claims on NLB
    /// `broker id mod n` first, then the next ones round the list, see `registry::shard_order`).
    pub arns: LoadBalancers,
    /// Ports from which per-broker listeners are claimed, `"FIRST-LAST"`.
    pub port_range: PortRange,
    /// Port of the shared bootstrap listener.
    pub bootstrap_port: u16,
    /// The listeners' TCP idle timeout (`tcp.idle_timeout.seconds`): `"auto"` (default: the
    /// broker's `connections.max.idle.ms` plus a minute), `"off"`, or a duration (60 s-100 m).
    /// See [`crate::idle`].
    pub idle_timeout: IdleTimeout,
}

/// The configured NLBs, at least one, each a load balancer ARN, none twice, at most
/// [`MAX_LOAD_BALANCERS`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadBalancers {
    first: String,
    rest: Vec<String>,
}

impl LoadBalancers {
    /// The first NLB (the only one with `nlb.load_balancer_arn`).
    pub fn first(&self) -> &str {
        &self.first
    }

    /// How many NLBs (at least 1).
    pub fn count(&self) -> usize {
        1 + self.rest.len()
    }

    /// The NLBs in list order.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.first.as_str()).chain(self.rest.iter().map(String::as_str))
    }

    /// One NLB (tests set up agents on another NLB with it).
    #[cfg(test)]
    pub(crate) fn one(arn: &str) -> LoadBalancers {
        LoadBalancers {
            first: arn.to_string(),
            rest: Vec::new(),
        }
    }

    /// Checks the list under `key` (as `nlb.<key>: why` when refused).
    fn new(key: &str, arns: Vec<String>) -> Result<LoadBalancers, String> {
        let refuse = |why: String| format!("nlb.{key}: {why}");
        if arns.len() > MAX_LOAD_BALANCERS {
            return Err(refuse(format!(
                "{} NLBs; at most {MAX_LOAD_BALANCERS}",
                arns.len()
            )));
        }
        for (i, arn) in arns.iter().enumerate() {
            if !arn.starts_with("arn:") || !arn.contains(":loadbalancer/") {
                return Err(refuse(format!("{arn:?} is not a load balancer ARN")));
            }
            if arns[..i].contains(arn) {
                return Err(refuse(format!("{arn:?} is listed twice")));
            }
        }
        let mut arns = arns.into_iter();
        let first = arns
            .next()
            .ok_or_else(|| refuse("is empty: list at least one NLB ARN".into()))?;
        Ok(LoadBalancers {
            first,
            rest: arns.collect(),
        })
    }
}

impl TryFrom<RawNlb> for NlbConfig {
    type Error = String;

    fn try_from(raw: RawNlb) -> Result<NlbConfig, String> {
        let arns = match (raw.load_balancer_arn, raw.load_balancer_arns) {
            (Some(one), None) => LoadBalancers::new("load_balancer_arn", vec![one])?,
            (None, Some(many)) => LoadBalancers::new("load_balancer_arns", many)?,
            (Some(_), Some(_)) => return Err(
                "nlb.load_balancer_arns: set either nlb.load_balancer_arn (one NLB) or nlb.load_balancer_arns (several), not both".into(),
            ),
            // Worded as serde words a missing key: it is the one most files have.
            (None, None) => {
                return Err(
                    "missing field `load_balancer_arn` (or `load_balancer_arns` for several NLBs)"
                        .into(),
                )
            }
        };
        Ok(NlbConfig {
            arns,
            port_range: raw.port_range,
            bootstrap_port: raw.bootstrap_port,
            idle_timeout: raw.idle_timeout,
        })
    }
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
        self.arns.first().to_string()
    }

    /// The configured NLBs in list order, with their index.
    pub fn load_balancers(&self) -> Vec<Shard> {
        self.arns
            .iter()
            .enumerate()
            .map(|(index, arn)| Shard {
                index,
                load_balancer_arn: arn.to_string(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use crate::config::test_util::{parse, MINIMAL};

    #[test]
    fn one_or_several_load_balancers() {
        const A: &str = "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/net/a/1";
        const B: &str = "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/net/b/2";
        let one = parse(MINIMAL).unwrap();
        assert_eq!(one.nlb.load_balancers().len(), 1);
        assert_eq!(one.nlb.load_balancers()[0].index, 0);
        let sharded = |host: &str, arns: &str| {
            MINIMAL.replace("kafka-{az_id}.orders", host).replace(
                &format!("load_balancer_arn = {:?}", one.nlb.first_load_balancer()),
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

    /// A refusal names the key and the line of `[nlb]`.
    #[test]
    fn a_refused_list_names_its_key_and_line() {
        let text = MINIMAL.replace(
            "load_balancer_arn = \"arn",
            "load_balancer_arns = []\n# load_balancer_arn = \"arn",
        );
        let message = parse(&text).unwrap_err().to_string();
        assert!(
            message.contains("agent.toml:5:")
                && message.contains(": nlb.load_balancer_arns: is empty")
                && !message.contains("nlb: nlb."),
            "{message}"
        );
    }
}
