//! The decision table: what to do about a running broker whose managed listener changed, and
//! how `advertised.listeners` values are compared (pure).

use std::collections::BTreeSet;

/// The endpoint (`host:port`) the broker advertises for listener `name`. A value without any
/// `NAME://` is a single-listener broker's metadata endpoint (see [`KafkaCluster::advertised_listeners`](crate::kafka::KafkaCluster::advertised_listeners)).
pub fn endpoint_of(advertised: &str, name: &str) -> Option<String> {
    if !advertised.contains("://") {
        return Some(advertised.trim().to_string()).filter(|e| !e.is_empty());
    }
    advertised.split(',').find_map(|entry| {
        let (n, rest) = entry.trim().split_once("://")?;
        n.eq_ignore_ascii_case(name).then(|| rest.to_string())
    })
}

/// What to do about a running broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Not running: nothing.
    NotRunning,
    /// Already advertising the desired endpoint: nothing.
    Effective,
    /// The listener exists with another endpoint: try a dynamic update first.
    DynamicUpdate,
    /// Anything else: rolling restart.
    Restart,
}

/// The decision table (pure). `dynamic_allowed`: the broker can take `advertised.listeners` as a
/// dynamic config ([`NodeRole::dynamic_advertised_listeners`](crate::node::NodeRole::dynamic_advertised_listeners): ZooKeeper mode only).
pub fn decide(
    running: bool,
    broker_advertised: Option<&str>,
    name: &str,
    desired: &str,
    dynamic_allowed: bool,
) -> Decision {
    if !running {
        return Decision::NotRunning;
    }
    let Some(advertised) = broker_advertised else {
        return Decision::Restart;
    };
    match endpoint_of(advertised, name) {
        Some(current) if current == desired => Decision::Effective,
        // Only a real multi-listener answer proves the listener exists under that name.
        Some(_) if advertised.contains("://") && dynamic_allowed => Decision::DynamicUpdate,
        _ => Decision::Restart,
    }
}

/// Whether two `advertised.listeners` values name the same endpoints (listener names compared
/// case-insensitively, order and spacing ignored): how a dynamic update is verified, on the
/// whole value, since it replaces every listener's advertised address at once.
pub fn same_listeners(a: &str, b: &str) -> bool {
    fn entries(v: &str) -> BTreeSet<(String, String)> {
        v.split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .map(|e| match e.split_once("://") {
                Some((name, rest)) => (name.trim().to_ascii_uppercase(), rest.trim().to_string()),
                None => (String::new(), e.to_string()),
            })
            .collect()
    }
    entries(a) == entries(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decision_table() {
        let d = "kafka-use1-az1.x:10003";
        let cases: &[(bool, Option<&str>, Decision)] = &[
            (false, None, Decision::NotRunning),
            (
                true,
                Some("PLAINTEXT://:9092,PRIVATELINK://kafka-use1-az1.x:10003"),
                Decision::Effective,
            ),
            (
                true,
                Some("PLAINTEXT://:9092,privatelink://kafka-use1-az1.x:10003"),
                Decision::Effective,
            ),
            (
                true,
                Some("PLAINTEXT://:9092,PRIVATELINK://kafka-use1-az1.x:10009"),
                Decision::DynamicUpdate,
            ),
            (true, Some("PLAINTEXT://:9092"), Decision::Restart),
            (true, None, Decision::Restart),
            // Single-listener brokers (metadata endpoint only): equal → nothing, else restart.
            (true, Some("kafka-use1-az1.x:10003"), Decision::Effective),
            (true, Some("127.0.0.1:9092"), Decision::Restart),
        ];
        for (running, adv, want) in cases {
            assert_eq!(
                decide(*running, *adv, "PRIVATELINK", d, true),
                *want,
                "{running} {adv:?}"
            );
            // KRaft: never a dynamic update; what would have been one is a restart.
            let kraft = if *want == Decision::DynamicUpdate {
                Decision::Restart
            } else {
                *want
            };
            assert_eq!(
                decide(*running, *adv, "PRIVATELINK", d, false),
                kraft,
                "kraft {running} {adv:?}"
            );
        }
    }

    #[test]
    fn whole_advertised_value_comparison() {
        let file = "INTERNAL://b1.internal:9092,PRIVATELINK://kafka-use1-az1.x:10003";
        assert!(same_listeners(file, file));
        assert!(same_listeners(
            " privatelink://kafka-use1-az1.x:10003 , INTERNAL://b1.internal:9092",
            file
        ));
        // The managed endpoint matches but another listener differs: not the same value.
        assert!(!same_listeners(
            "INTERNAL://old.internal:9092,PRIVATELINK://kafka-use1-az1.x:10003",
            file
        ));
        assert!(!same_listeners(
            "PRIVATELINK://kafka-use1-az1.x:10003",
            file
        ));
    }

    #[test]
    fn endpoints() {
        assert_eq!(
            endpoint_of("A://h:1,PRIVATELINK://x:2", "privatelink").as_deref(),
            Some("x:2")
        );
        assert_eq!(endpoint_of("A://h:1", "PRIVATELINK"), None);
        assert_eq!(endpoint_of("h:9", "PRIVATELINK").as_deref(), Some("h:9"));
    }
}
