//! The client-facing view of the cluster as the NLBs show it, for `status`: the bootstrap port and,
//! per broker, its AZ ID, the name it advertises, its NLB (shard) and port, and its target health.
//! An operator hands this to a consuming team.
//!
//! The NLBs give broker id, NLB, port and the registered instance; EC2 gives the instance's AZ
//! (DescribeInstances) and the account's AZ name → AZ ID map (DescribeAvailabilityZones); the name
//! is then rendered from `listener.advertised_host` exactly as that broker's agent renders it
//! (every broker of a cluster runs the same agent configuration). [`rows`] is pure.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::config::{Config, HostValues};
use crate::nlb::TargetState;
use crate::restart::ClusterClaim;

/// One broker as clients reach it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct BrokerEndpoint {
    /// Broker id.
    pub broker_id: i32,
    /// AZ ID of its instance (`None`: not known, see [`ClusterView::notes`]).
    pub az_id: Option<String>,
    /// `host:port` it advertises (`None` when its AZ is not known).
    pub advertised: Option<String>,
    /// Index of its NLB in the configured list.
    pub shard: usize,
    /// Its NLB.
    pub load_balancer_arn: String,
    /// Its NLB port.
    pub port: u16,
    /// Its instance (the registered target), if any.
    pub instance_id: Option<String>,
    /// Target health as the NLB reports it (`healthy`, `unhealthy`, `initial`, …; `none` when
    /// nothing is registered).
    pub health: String,
}

/// What `status` prints as "clients".
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct ClusterView {
    /// Port of every NLB's bootstrap listener.
    pub bootstrap_port: u16,
    /// The brokers, by id.
    pub brokers: Vec<BrokerEndpoint>,
    /// What could not be found out (e.g. EC2 read permission missing), one line each.
    pub notes: Vec<String>,
}

/// The rows from the claims, each target instance's AZ name (`zones`: instance id → AZ name) and
/// the account's AZ name → AZ ID map (pure).
pub(crate) fn rows(
    config: &Config,
    region: &str,
    claims: &[ClusterClaim],
    zones: &BTreeMap<String, String>,
    zone_ids: &BTreeMap<String, String>,
) -> Vec<BrokerEndpoint> {
    claims
        .iter()
        .map(|c| {
            let target = c
                .targets
                .iter()
                .find(|t| t.state == TargetState::Registered)
                .or_else(|| c.targets.first());
            let instance_id = target.map(|t| t.id.clone());
            let az = instance_id.as_ref().and_then(|i| zones.get(i));
            let az_id = az.and_then(|a| zone_ids.get(a)).cloned();
            let advertised = match (&instance_id, az, &az_id) {
                (Some(instance_id), Some(az), Some(az_id)) => {
                    Some(config.listener.advertised_host.render(&HostValues {
                        az_id,
                        az,
                        region,
                        broker_id: c.broker_id,
                        instance_id,
                        cluster: &config.cluster,
                        shard: c.shard,
                    }))
                    .map(|host| format!("{host}:{}", c.port))
                }
                _ => None,
            };
            BrokerEndpoint {
                broker_id: c.broker_id,
                az_id,
                advertised,
                shard: c.shard,
                load_balancer_arn: c.load_balancer_arn.clone(),
                port: c.port,
                instance_id,
                health: target.map_or_else(|| "none".to_string(), |t| t.health.clone()),
            }
        })
        .collect()
}

impl ClusterView {
    /// `status` text: a header and one line per broker.
    pub(crate) fn text(&self) -> String {
        let mut out = format!(
            "clients       bootstrap port {} on every NLB; brokers:\n",
            self.bootstrap_port
        );
        for b in &self.brokers {
            out.push_str(&format!(
                "  broker {:<5} {:<10} {:<55} shard {} port {} {}\n",
                b.broker_id,
                b.az_id.as_deref().unwrap_or("?"),
                b.advertised.as_deref().unwrap_or("?"),
                b.shard,
                b.port,
                b.health
            ));
        }
        for n in &self.notes {
            out.push_str(&format!("  note: {n}\n"));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nlb::Target;
    use std::path::Path;

    #[test]
    fn rows_render_each_brokers_name_from_its_zone_and_shard() {
        let config = Config::parse(
            "cluster = \"orders\"\n[listener]\nadvertised_host = \"kafka-{az_id}-s{shard}.orders.example.internal\"\n\
             [nlb]\nload_balancer_arns = [\"arn:aws:elasticloadbalancing:us-east-1:1:loadbalancer/net/a/1\", \"arn:aws:elasticloadbalancing:us-east-1:1:loadbalancer/net/b/2\"]\n",
            Path::new("/t.toml"),
        )
        .unwrap();
        let target = |id: &str, state, health: &str| Target {
            id: id.into(),
            port: 9094,
            state,
            health: health.into(),
            reason: None,
        };
        let claim = |broker_id, shard, port, targets| ClusterClaim {
            broker_id,
            shard,
            load_balancer_arn: format!("nlb-{shard}"),
            port,
            targets,
        };
        let claims = [
            claim(
                1,
                0,
                10003,
                vec![target("i-1", TargetState::Registered, "healthy")],
            ),
            claim(
                2,
                1,
                10001,
                vec![
                    target("i-old", TargetState::Draining, "draining"),
                    target("i-2", TargetState::Registered, "unhealthy"),
                ],
            ),
            claim(3, 1, 10002, vec![]),
            claim(
                4,
                0,
                10004,
                vec![target("i-4", TargetState::Registered, "healthy")],
            ),
        ];
        let zones = BTreeMap::from([
            ("i-1".to_string(), "us-east-1b".to_string()),
            ("i-2".to_string(), "us-east-1a".to_string()),
        ]);
        let ids = BTreeMap::from([
            ("us-east-1a".to_string(), "use1-az6".to_string()),
            ("us-east-1b".to_string(), "use1-az1".to_string()),
        ]);
        let r = rows(&config, "us-east-1", &claims, &zones, &ids);
        assert_eq!(
            r[0].advertised.as_deref(),
            Some("kafka-use1-az1-s0.orders.example.internal:10003")
        );
        assert_eq!(
            (
                r[1].advertised.as_deref(),
                r[1].instance_id.as_deref(),
                r[1].health.as_str()
            ),
            (
                Some("kafka-use1-az6-s1.orders.example.internal:10001"),
                Some("i-2"),
                "unhealthy"
            )
        );
        assert_eq!(
            (r[2].instance_id.as_deref(), r[2].health.as_str()),
            (None, "none")
        );
        // An instance EC2 did not describe: no AZ, no name, the rest still shown.
        assert_eq!((r[3].az_id.as_deref(), r[3].port), (None, 10004));
        let view = ClusterView {
            bootstrap_port: 10000,
            brokers: r,
            notes: vec![],
        };
        let text = view.text();
        assert!(
            text.starts_with("clients       bootstrap port 10000"),
            "{text}"
        );
        assert!(
            text.contains("kafka-use1-az6-s1.orders.example.internal:10001"),
            "{text}"
        );
    }
}
