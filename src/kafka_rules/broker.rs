//! The rules about what a broker advertises: the inter-broker listener
//! (`getInterBrokerListenerNameAndSecurityProtocol`), at least one advertised broker listener, all
//! of them in `listeners`, `control.plane.listener.name` in ZooKeeper mode, and no `0.0.0.0`
//! advertised.

use super::{
    before, since, Checker, Facts, Rule, ADVERTISED_LISTENERS, CONTROLLER_LISTENER_NAMES,
    CONTROL_PLANE_LISTENER_NAME, INTER_BROKER_LISTENER_NAME, INTER_BROKER_PROTOCOL, KAFKA_18281,
    KIP_853, LISTENERS, PROTOCOLS, PROTOCOL_MAP,
};
use std::collections::BTreeSet;

use super::lists::{entries, java_trim, Endpoint};
use crate::properties::Properties;

/// The inter-broker listener, as Kafka resolves it.
pub(super) struct InterBroker {
    /// `inter.broker.listener.name` is set.
    explicit: bool,
    /// The listener's upper-cased name, when there is one.
    name: Option<String>,
}

impl Checker {
    /// inter.broker.listener.name / security.inter.broker.protocol
    /// (`getInterBrokerListenerNameAndSecurityProtocol`; evaluated for every role).
    pub(super) fn inter_broker(&mut self, props: &Properties, f: &Facts<'_>) -> InterBroker {
        let explicit_inter_broker = props
            .get(INTER_BROKER_LISTENER_NAME)
            .map(|v| java_trim(&v).to_uppercase());
        let protocol_value = props.get(INTER_BROKER_PROTOCOL);
        if let Some(value) = &protocol_value {
            // `ConfigDef.ValidString.in(SecurityProtocol names)`: exact match.
            if !PROTOCOLS.contains(&java_trim(value)) {
                self.push(
                    Rule::InterBrokerListener,
                    INTER_BROKER_PROTOCOL,
                    format!(
                        "Invalid value {} for configuration {INTER_BROKER_PROTOCOL}: String must be \
                         one of: {}",
                        java_trim(value),
                        PROTOCOLS.join(", ")
                    ),
                );
            }
        }
        let inter_broker: Option<String> = match (&explicit_inter_broker, &protocol_value) {
            (Some(_), Some(_)) => {
                self.push(
                    Rule::InterBrokerListener,
                    INTER_BROKER_PROTOCOL,
                    format!(
                        "Only one of {INTER_BROKER_LISTENER_NAME} and {INTER_BROKER_PROTOCOL} should \
                         be set."
                    ),
                );
                None
            }
            (Some(name), None) => {
                if !f.map.contains_key(name) {
                    self.push(
                        Rule::NoSecurityProtocol,
                        PROTOCOL_MAP,
                        format!(
                            "Listener with name {name} defined in {INTER_BROKER_LISTENER_NAME} not \
                             found in {PROTOCOL_MAP}."
                        ),
                    );
                }
                Some(name.clone())
            }
            // `ListenerName.forSecurityProtocol`: the listener named after the protocol.
            // An invalid value was reported above; Kafka stops there.
            (None, Some(value)) => PROTOCOLS
                .iter()
                .find(|p| **p == java_trim(value))
                .map(|p| p.to_string()),
            (None, None) => Some("PLAINTEXT".to_string()),
        };
        InterBroker {
            explicit: explicit_inter_broker.is_some(),
            name: inter_broker,
        }
    }

    /// Every broker (ZooKeeper mode, KRaft with the broker role).
    pub(super) fn broker_rules(&mut self, props: &Properties, f: &Facts<'_>, inter: &InterBroker) {
        if !f.broker_role {
            return;
        }
        if f.broker_advertised.is_empty() {
            let mut message = if since(self.kafka, KIP_853) {
                "There must be at least one broker advertised listener.".to_string()
            } else {
                "There must be at least one advertised listener.".to_string()
            };
            if f.kraft {
                message.push_str(&format!(
                    " Perhaps all listeners appear in {CONTROLLER_LISTENER_NAMES}?"
                ));
            }
            self.push(Rule::NoAdvertisedListener, f.advertised_key, message);
        } else if let Some(name) = &inter.name {
            if !f.broker_advertised.iter().any(|e| &e.name == name) {
                let why = if inter.explicit {
                    String::new()
                } else {
                    format!(
                        " ({INTER_BROKER_LISTENER_NAME} is not set, so it is the listener named \
                         after {INTER_BROKER_PROTOCOL})"
                    )
                };
                self.push(
                    Rule::InterBrokerListener,
                    INTER_BROKER_LISTENER_NAME,
                    format!(
                        "{INTER_BROKER_LISTENER_NAME} must be a listener name defined in \
                         {ADVERTISED_LISTENERS}: {name} is not advertised{why}"
                    ),
                );
            }
        }
        for e in &f.broker_advertised {
            if !f.listener_names.contains(e.name.as_str()) {
                self.push(
                    Rule::AdvertisedNotInListeners,
                    ADVERTISED_LISTENERS,
                    format!(
                        "{ADVERTISED_LISTENERS} listener names must be equal to or a subset of \
                         the ones defined in {LISTENERS}: {} ({}) is not in {LISTENERS}",
                        e.name, e.text
                    ),
                );
            }
        }
        // control.plane.listener.name: ZooKeeper mode only (KRaft refuses it above).
        if !f.kraft {
            self.zookeeper_control_plane(props, f, inter);
        }
    }

    /// `control.plane.listener.name` of a ZooKeeper-mode broker: mapped, advertised, and not the
    /// inter-broker listener.
    fn zookeeper_control_plane(&mut self, props: &Properties, f: &Facts<'_>, inter: &InterBroker) {
        if let Some(value) = props.get(CONTROL_PLANE_LISTENER_NAME) {
            let name = java_trim(&value).to_uppercase();
            if !f.map.contains_key(&name) {
                self.push(
                    Rule::NoSecurityProtocol,
                    PROTOCOL_MAP,
                    format!(
                        "Listener with {name} defined in {CONTROL_PLANE_LISTENER_NAME} not \
                         found in {PROTOCOL_MAP}."
                    ),
                );
            }
            if !f.broker_advertised.iter().any(|e| e.name == name) {
                self.push(
                    Rule::ControlPlaneListener,
                    CONTROL_PLANE_LISTENER_NAME,
                    format!(
                        "{CONTROL_PLANE_LISTENER_NAME} must be a listener name defined in \
                         {ADVERTISED_LISTENERS}: {name} is not advertised"
                    ),
                );
            }
            if inter.name.as_deref() == Some(name.as_str()) {
                self.push(
                    Rule::ControlPlaneListener,
                    CONTROL_PLANE_LISTENER_NAME,
                    format!(
                        "{CONTROL_PLANE_LISTENER_NAME}, when defined, should have a different \
                         value from the inter broker listener name. Currently they both have \
                         the value {name}"
                    ),
                );
            }
        }
    }

    /// No `0.0.0.0` advertised, explicitly or through `listeners` (and, in 3.9.0, through a
    /// controller listener that is not advertised).
    pub(super) fn wildcard_rules(&mut self, f: &Facts<'_>) {
        // 0.0.0.0 is never advertised (`validateValues`, every mode).
        let wildcard = |e: &&Endpoint| e.host.as_deref() == Some("0.0.0.0");
        match f.advertised {
            Some(list) => {
                let bad: Vec<&Endpoint> = list.iter().filter(wildcard).collect();
                if !bad.is_empty() {
                    self.push(
                        Rule::AdvertisedWildcard,
                        ADVERTISED_LISTENERS,
                        format!(
                            "{ADVERTISED_LISTENERS} cannot use the nonroutable meta-address 0.0.0.0. \
                             Use a routable IP address: {}",
                            entries(&bad)
                        ),
                    );
                }
            }
            None => {
                let bad: Vec<&Endpoint> = f
                    .broker_advertised
                    .iter()
                    .copied()
                    .filter(wildcard)
                    .collect();
                if !bad.is_empty() {
                    self.push(
                        Rule::AdvertisedWildcard,
                        ADVERTISED_LISTENERS,
                        format!(
                            "{ADVERTISED_LISTENERS} cannot use the nonroutable meta-address 0.0.0.0. \
                             Use a routable IP address: {} ({ADVERTISED_LISTENERS} is not set, so \
                             {LISTENERS} is advertised)",
                            entries(&bad)
                        ),
                    );
                }
            }
        }
        // 3.9.0 only: `effectiveAdvertisedControllerListeners` falls back to the `listeners` entry of
        // a controller listener that isn't advertised, and 0.0.0.0 there is refused too. KAFKA-18281
        // (apache/kafka PR #18387) turns that host into an empty one.
        if since(self.kafka, KIP_853) && before(self.kafka, KAFKA_18281) {
            let advertised_names: BTreeSet<&str> = f
                .advertised
                .into_iter()
                .flatten()
                .map(|e| e.name.as_str())
                .collect();
            let bad: Vec<&Endpoint> = f
                .listeners
                .iter()
                .filter(|e| f.is_controller(&e.name) && !advertised_names.contains(e.name.as_str()))
                .filter(wildcard)
                .collect();
            if !bad.is_empty() {
                self.push(
                    Rule::AdvertisedWildcard,
                    ADVERTISED_LISTENERS,
                    format!(
                        "{ADVERTISED_LISTENERS} cannot use the nonroutable meta-address 0.0.0.0. Use \
                         a routable IP address: {} (a controller listener that is not advertised; \
                         Kafka 3.9.0 only, KAFKA-18281)",
                        entries(&bad)
                    ),
                );
            }
        }
    }
}
