//! What kind of Kafka node this host runs, read from `server.properties` (pure).
//!
//! The agent must behave differently for each:
//! - **ZooKeeper mode** (no `process.roles`): `advertised.listeners` is a per-broker dynamic
//!   config (KIP-226), so a changed endpoint can be applied without a restart. The Metadata
//!   response's controller id is the active controller, so the rolling restart can leave it last.
//! - **KRaft** (`process.roles` set; the only mode since Kafka 4.0): `advertised.listeners` cannot
//!   be changed dynamically (apache/kafka PR #18390 made it read-only in 4.0, and KRaft never
//!   applied it; KAFKA-13835: no dynamic listener add/remove), so every change needs a restart and
//!   the agent never sends AlterConfigs/IncrementalAlterConfigs. The Metadata controller id is a
//!   random live broker (KIP-590), not the quorum leader, so it says nothing about ordering.
//! - **KRaft controller-only** (`process.roles` without `broker`): Kafka refuses to start a
//!   controller with a listener that is not a controller listener, and clients never talk to it.
//!   The agent leaves such a node entirely alone, so one image can run on every node.

use serde::Serialize;

use crate::properties::{EditError, Properties};

/// The Kafka node's mode and roles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeRole {
    /// A broker of a ZooKeeper-mode cluster (no `process.roles`).
    ZooKeeperBroker,
    /// A KRaft broker (`process.roles=broker`).
    KraftBroker,
    /// A KRaft node that is broker and controller (`process.roles=broker,controller`).
    KraftCombined,
    /// A KRaft controller that is not a broker (`process.roles=controller`): left alone.
    KraftController,
}

impl NodeRole {
    /// Reads the role from `server.properties` text.
    pub fn from_properties(text: &str) -> Result<NodeRole, EditError> {
        Ok(Self::from_roles(
            Properties::parse(text)?.get("process.roles").as_deref(),
        ))
    }

    /// The role for a `process.roles` value (`None`: the key is absent).
    pub fn from_roles(roles: Option<&str>) -> NodeRole {
        let Some(roles) = roles.filter(|r| !r.trim().is_empty()) else {
            return NodeRole::ZooKeeperBroker;
        };
        let has = |role: &str| {
            roles
                .split(',')
                .any(|r| r.trim().eq_ignore_ascii_case(role))
        };
        match (has("broker"), has("controller")) {
            (true, true) => NodeRole::KraftCombined,
            (true, false) => NodeRole::KraftBroker,
            // `process.roles=controller`, or a value Kafka itself would reject: never a broker.
            (false, _) => NodeRole::KraftController,
        }
    }

    /// KRaft (any role).
    pub fn is_kraft(self) -> bool {
        !matches!(self, NodeRole::ZooKeeperBroker)
    }

    /// A node clients never reach: nothing to wire.
    pub fn is_controller_only(self) -> bool {
        matches!(self, NodeRole::KraftController)
    }

    /// Whether the broker can take `advertised.listeners` as a dynamic config (ZooKeeper only).
    pub fn dynamic_advertised_listeners(self) -> bool {
        matches!(self, NodeRole::ZooKeeperBroker)
    }

    /// Whether the Metadata response's controller id names the active controller (ZooKeeper
    /// only; in KRaft it is a random live broker, KIP-590).
    pub fn metadata_names_controller(self) -> bool {
        matches!(self, NodeRole::ZooKeeperBroker)
    }
}

impl std::fmt::Display for NodeRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            NodeRole::ZooKeeperBroker => "ZooKeeper-mode broker",
            NodeRole::KraftBroker => "KRaft broker",
            NodeRole::KraftCombined => "KRaft broker and controller (combined mode)",
            NodeRole::KraftController => "controller-only node",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_table() {
        let cases: &[(&str, NodeRole)] = &[
            ("broker.id=1\n", NodeRole::ZooKeeperBroker),
            ("process.roles=\n", NodeRole::ZooKeeperBroker),
            ("process.roles=broker\n", NodeRole::KraftBroker),
            (
                "process.roles = broker, controller\n",
                NodeRole::KraftCombined,
            ),
            ("process.roles=controller,broker\n", NodeRole::KraftCombined),
            ("process.roles=CONTROLLER\n", NodeRole::KraftController),
            ("process.roles=controller\n", NodeRole::KraftController),
            // Continuation lines are one value (Java properties).
            (
                "process.roles=controller,\\\n  broker\n",
                NodeRole::KraftCombined,
            ),
            ("#process.roles=controller\n", NodeRole::ZooKeeperBroker),
        ];
        for (text, want) in cases {
            assert_eq!(NodeRole::from_properties(text).unwrap(), *want, "{text:?}");
        }
        assert!(NodeRole::KraftController.is_controller_only());
        assert!(!NodeRole::KraftCombined.is_controller_only());
        assert!(NodeRole::ZooKeeperBroker.dynamic_advertised_listeners());
        for r in [
            NodeRole::KraftBroker,
            NodeRole::KraftCombined,
            NodeRole::KraftController,
        ] {
            assert!(r.is_kraft() && !r.dynamic_advertised_listeners());
            assert!(!r.metadata_names_controller());
        }
    }
}
