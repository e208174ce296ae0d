//! The rules that depend on the node's mode and roles (`KafkaConfig.validateValues`):
//! `controller.listener.names` in ZooKeeper mode and on KRaft nodes, what a controller-only node
//! may list, the controller listeners a KRaft broker may advertise up to 3.8, and
//! `control.plane.listener.name` in KRaft.

use super::lists::{entries, java_trim, Endpoint};
use super::{
    before, Checker, Facts, Rule, ADVERTISED_LISTENERS, CONTROLLER_LISTENER_NAMES,
    CONTROL_PLANE_LISTENER_NAME, KAFKA_4, KIP_853, LISTENERS, MIGRATION_ENABLED, PROCESS_ROLES,
    PROTOCOL_MAP,
};
use crate::node::NodeRole;
use crate::properties::Properties;

impl Checker {
    /// Mode-specific rules (`validateValues`).
    pub(super) fn mode_rules(&mut self, props: &Properties, f: &Facts<'_>) {
        match f.role {
            NodeRole::ZooKeeperBroker => self.zookeeper_broker(props, f),
            NodeRole::KraftBroker => self.kraft_broker(f),
            NodeRole::KraftCombined | NodeRole::KraftController => {}
        }
        self.controller_role(f);
        self.controller_only(f);
        self.kraft_before_3_9_and_4(props, f);
    }

    /// ZooKeeper mode: `controller.listener.names` only with the migration enabled.
    fn zookeeper_broker(&mut self, props: &Properties, f: &Facts<'_>) {
        let migration = props
            .get(MIGRATION_ENABLED)
            .is_some_and(|v| java_trim(&v).eq_ignore_ascii_case("true"));
        if migration && f.controller_names.is_empty() {
            self.push(
                Rule::ControllerListenerNames,
                CONTROLLER_LISTENER_NAMES,
                format!(
                    "{CONTROLLER_LISTENER_NAMES} must not be empty when running in ZooKeeper \
                     migration mode: []"
                ),
            );
        } else if !migration && !f.controller_names.is_empty() {
            self.push(
                Rule::ControllerListenerNames,
                CONTROLLER_LISTENER_NAMES,
                format!(
                    "{CONTROLLER_LISTENER_NAMES} must be empty when not running in KRaft \
                     mode: [{}]",
                    f.controller_names.join(", ")
                ),
            );
        }
    }

    /// A KRaft broker-only node: controller listeners named, not bound, and mapped.
    fn kraft_broker(&mut self, f: &Facts<'_>) {
        if f.controller_names.is_empty() {
            self.push(
                Rule::ControllerListenerNames,
                CONTROLLER_LISTENER_NAMES,
                format!(
                    "{CONTROLLER_LISTENER_NAMES} must contain at least one value when running \
                     KRaft with just the broker role"
                ),
            );
        }
        let in_listeners: Vec<&Endpoint> = f
            .listeners
            .iter()
            .filter(|e| f.is_controller(&e.name))
            .collect();
        if !in_listeners.is_empty() {
            self.push(
                Rule::ControllerListenerNames,
                LISTENERS,
                format!(
                    "{CONTROLLER_LISTENER_NAMES} must not contain a value appearing in the \
                     '{LISTENERS}' configuration when running KRaft with just the broker \
                     role: {}",
                    entries(&in_listeners)
                ),
            );
        }
        for name in f.controller_names {
            let normalised = name.to_uppercase();
            if !f.map.contains_key(&normalised) {
                self.push(
                    Rule::NoSecurityProtocol,
                    PROTOCOL_MAP,
                    format!(
                        "Controller listener with name {normalised} defined in \
                         {CONTROLLER_LISTENER_NAMES} not found in {PROTOCOL_MAP}"
                    ),
                );
            }
        }
    }

    /// A node with the controller role binds every controller listener.
    fn controller_role(&mut self, f: &Facts<'_>) {
        let controller_role = matches!(f.role, NodeRole::KraftCombined | NodeRole::KraftController);
        if controller_role {
            if f.controller_names.is_empty() {
                self.push(
                    Rule::ControllerListenerNames,
                    CONTROLLER_LISTENER_NAMES,
                    format!(
                        "{CONTROLLER_LISTENER_NAMES} must contain at least one value appearing in the \
                         '{LISTENERS}' configuration when running the KRaft controller role"
                    ),
                );
            }
            for name in f
                .controller_names
                .iter()
                .filter(|n| !f.listener_names.contains(n.as_str()))
            {
                self.push(
                    Rule::ControllerListenerNames,
                    LISTENERS,
                    format!(
                        "{CONTROLLER_LISTENER_NAMES} must only contain values appearing in the \
                         '{LISTENERS}' configuration when running the KRaft controller role: {name} \
                         is not in {LISTENERS}"
                    ),
                );
            }
        }
    }

    /// `process.roles=controller`: only controller listeners, and (up to 3.8) nothing advertised.
    fn controller_only(&mut self, f: &Facts<'_>) {
        if f.role == NodeRole::KraftController {
            let others: Vec<&Endpoint> = f
                .listeners
                .iter()
                .filter(|e| !f.is_controller(&e.name))
                .collect();
            if !others.is_empty() {
                self.push(
                    Rule::ControllerOnlyListeners,
                    LISTENERS,
                    format!(
                        "The {LISTENERS} config must only contain KRaft controller listeners from \
                         {CONTROLLER_LISTENER_NAMES} when {PROCESS_ROLES}=controller: {}",
                        entries(&others)
                    ),
                );
            }
            if f.advertised.is_some() && before(self.kafka, KIP_853) {
                self.push(
                    Rule::ControllerOnlyListeners,
                    ADVERTISED_LISTENERS,
                    format!(
                        "The {ADVERTISED_LISTENERS} config must be empty when \
                         {PROCESS_ROLES}=controller (Kafka 3.8 and earlier; 3.9+ accept it, KIP-853)"
                    ),
                );
            }
        }
    }

    /// KRaft rules of older releases: advertised controller listeners up to 3.8,
    /// `control.plane.listener.name` in 3.x.
    fn kraft_before_3_9_and_4(&mut self, props: &Properties, f: &Facts<'_>) {
        if f.kraft && f.broker_role && before(self.kafka, KIP_853) {
            // 3.8: `effectiveAdvertisedListeners` is the explicit list (or `listeners` minus the
            // controller listeners), and must not name a controller listener.
            let advertised_controllers: Vec<&Endpoint> = f
                .advertised
                .into_iter()
                .flatten()
                .filter(|e| f.is_controller(&e.name))
                .collect();
            if !advertised_controllers.is_empty() {
                self.push(
                    Rule::ControllerAdvertised,
                    ADVERTISED_LISTENERS,
                    format!(
                        "The {ADVERTISED_LISTENERS} config must not contain KRaft controller \
                         listeners from {CONTROLLER_LISTENER_NAMES} when {PROCESS_ROLES} contains the \
                         broker role (Kafka 3.8 and earlier; 3.9+ accept them, KIP-853): {}",
                        entries(&advertised_controllers)
                    ),
                );
            }
        }
        if f.kraft
            && before(self.kafka, KAFKA_4)
            && props.get(CONTROL_PLANE_LISTENER_NAME).is_some()
        {
            self.push(
                Rule::ControlPlaneListener,
                CONTROL_PLANE_LISTENER_NAME,
                format!("{CONTROL_PLANE_LISTENER_NAME} is not supported in KRaft mode."),
            );
        }
    }
}
