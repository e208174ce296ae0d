//! The listener rules Apache Kafka checks at start-up, as a pure validator of `server.properties`.
//!
//! **Why.** The agent edits `server.properties` and then restarts the broker. If the edited file
//! breaks one of Kafka's start-up rules, the broker refuses to start, and a rolling restart takes
//! brokers down one after the other. The motivating case:
//! `listeners=PLAINTEXT://:9092,EXTERNAL://:9094` plus the agent's `PRIVATELINK://:9094` makes
//! Kafka exit with `Each listener must have a different port`. So the agent computes the edited text, runs [`check`] on the file as it is and
//! on the edited text, and refuses the edit when [`introduced`] is not
//! empty. That happens before any AWS call, and the file stays unchanged. Violations the file
//! already has are only reported: the broker is running with them, or this Kafka release accepts
//! them (see "Versions" below).
//!
//! [`check`] reads values with the project's parser ([`Properties::get`], Java's last-wins) and
//! splits list values the way Kafka does. Each [`Violation`] gives a [`Rule`], the setting to
//! change, and a one-line message in Kafka's words that names only the entries involved. Because
//! the message names only those entries, a violation keeps the same message across an edit that
//! doesn't touch them, so [`introduced`] can compare before and after by equality.
//!
//! ## Sources (apache/kafka, read for this module)
//!
//! | tag | file, function | release / commit |
//! |---|---|---|
//! | `CoreUtils` | `core/src/main/scala/kafka/utils/CoreUtils.scala`: `listenerListToEndPoints` (its inner `validate`), `checkDuplicateListenerPorts` | tag `3.9.0-rc3` (dd5272687e8a); same text in trunk 1eb7644 (2024-10-25, 4.0.0-SNAPSHOT); KIP-797 since `3.6.0` (KAFKA-13299, 809966a9a06); before that, at `3.5.0` (c97b88d5db4d), one check for distinct ports |
//! | `SocketServerConfigs` | `server/src/main/java/org/apache/kafka/network/SocketServerConfigs.java`: `listenerListToEndPoints`, `URI_PARSE_REGEXP`, `LISTENER_SECURITY_PROTOCOL_MAP_DEFAULT` | trunk 1eb7644 (same regex in `3.5.0` `kafka/cluster/EndPoint.scala` `createEndPoint`); 4.x stored copy 116f7cdb (`listeners` and `advertised.listeners` are `LIST` with `ValidList.anyNonDuplicateValues`) |
//! | `KafkaConfig` | `core/src/main/scala/kafka/server/KafkaConfig.scala`: `validateValues`, `effectiveListenerSecurityProtocolMap`, `getInterBrokerListenerNameAndSecurityProtocol`, `getControlPlaneListenerNameAndSecurityProtocol`, `effectiveAdvertisedBrokerListeners`, `effectiveAdvertisedControllerListeners`, `controllerListenerNames`, `earlyStartListeners` | tag `3.9.0-rc3` and trunk 1eb7644; tag `3.8.0` (771b9576b00e) for the rules KIP-853 removed in 3.9; a stored 4.x trunk copy (no ZooKeeper branch) |
//! | `AbstractKafkaConfig` | `server/src/main/java/org/apache/kafka/server/config/AbstractKafkaConfig.java`: `listenerListToEndPoints`, `validate`, `effectiveListenerSecurityProtocolMap`, `interBrokerListenerNameAndSecurityProtocol` (4.x: the Java port of the `CoreUtils`/`KafkaConfig` code above, with the same rules and messages) | stored trunk copy 025293cb |
//! | `Csv` | `server-common/src/main/java/org/apache/kafka/server/util/Csv.java`: `parseCsvList`, `parseCsvMap` | trunk 1eb7644 |
//!
//! Kafka wraps most of these messages: `requirement failed: …` (Scala `require`), or `Error
//! creating broker listeners from '…': …` (4.x). The messages here use Kafka's sentence, then a
//! colon and the entries involved, instead of the whole list.
//!
//! ## ZooKeeper mode and KRaft
//!
//! The mode comes from `process.roles`, read with [`NodeRole::from_roles`]: no value means
//! ZooKeeper mode (Kafka 3.x only; Kafka 4 removed ZooKeeper, and in 4.x `process.roles` has no
//! default). Where the modes differ:
//! - The default protocol map (`effectiveListenerSecurityProtocolMap`): in KRaft, if the map is
//!   not in the file and no listener or controller listener is named `SSL`, `SASL_SSL` or
//!   `SASL_PLAINTEXT`, every controller listener name is mapped to `PLAINTEXT`. ZooKeeper mode has
//!   no such mapping.
//! - `controller.listener.names` must be empty in ZooKeeper mode, unless
//!   `zookeeper.metadata.migration.enable=true`, which requires it set. In KRaft it must be set,
//!   and a broker-only node must not list a controller listener in `listeners`. A node with the
//!   controller role must have every controller listener in `listeners`, and a controller-only
//!   node may have nothing else there.
//! - `control.plane.listener.name` is ZooKeeper-only: in KRaft, Kafka 3.x refuses it (4.x no
//!   longer has the setting and ignores it).
//! - Rules for the broker role (advertised listeners, `inter.broker.listener.name`) apply in
//!   ZooKeeper mode and to KRaft nodes whose roles include `broker`.
//!
//! ## Versions
//!
//! Some rules changed between releases:
//! - Before 3.6, no two listeners may share a port. Since 3.6 (KIP-797), exactly one IPv4 and one
//!   IPv6 listener may share one.
//! - Up to 3.8, a KRaft node with the broker role may not advertise a controller listener, and a
//!   controller-only node may not set `advertised.listeners`. 3.9 (KIP-853) allows both.
//! - Kafka 3.9.0 refuses a controller listener bound to `0.0.0.0` that isn't in
//!   `advertised.listeners` (KAFKA-18281, fixed by apache/kafka PR #18387, merged in January
//!   2025; taken here as fixed in 3.9.1 and 4.0).
//! - Kafka 4.x reads `listeners` as a `LIST` and refuses an empty item between commas. 3.x skipped
//!   empty items.
//!
//! [`check`] doesn't know the broker's release. So it reports a file when **any** release would
//! refuse it (the strictest reading); the messages of these version-dependent rules say which
//! releases refuse. Call [`check_for`] with a [`KafkaVersion`] to get one release's rules only.
//! For example, Kafka's own sample config for 4.0 (`config/kraft/server.properties` at trunk
//! 1eb7644) advertises `CONTROLLER://localhost:9093`.
//! [`check`] reports that (3.8 would refuse it) and `check_for` with 4.x doesn't. The agent never
//! adds such an entry, so [`introduced`] never blames an edit for it.
//!
//! ## Layout
//!
//! This file holds the types ([`Violation`], [`Rule`], [`KafkaVersion`]) and [`check_for`], which
//! parses the lists once and runs the rule families in a fixed order (the order of the
//! violations): `lists` parses listener lists and the protocol map the way Kafka does (syntax,
//! duplicate names and ports, a protocol for every name, `early.start.listeners`), `roles` checks
//! the rules of the node's mode and roles, `broker` what a broker advertises (the inter-broker
//! listener, advertised listeners, `0.0.0.0`).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::Serialize;

use crate::node::NodeRole;
use crate::properties::Properties;

use crate::properties::{
    ADVERTISED_LISTENERS, CONTROLLER_LISTENER_NAMES, DEFAULT_PROTOCOL_MAP as PROTOCOLS,
    INTER_BROKER_LISTENER_NAME, LISTENERS, PROTOCOL_MAP,
};

const PROCESS_ROLES: &str = "process.roles";
const INTER_BROKER_PROTOCOL: &str = "security.inter.broker.protocol";
const CONTROL_PLANE_LISTENER_NAME: &str = "control.plane.listener.name";
const EARLY_START_LISTENERS: &str = "early.start.listeners";
const MIGRATION_ENABLED: &str = "zookeeper.metadata.migration.enable";

/// `SocketServerConfigs.LISTENERS_DEFAULT`: what Kafka binds when `listeners` is absent.
const LISTENERS_DEFAULT: &str = "PLAINTEXT://:9092";

/// A Kafka release, for the rules that differ between releases.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub(crate) struct KafkaVersion {
    pub major: u16,
    pub minor: u16,
    pub patch: u16,
}

impl KafkaVersion {
    pub(crate) const fn new(major: u16, minor: u16, patch: u16) -> KafkaVersion {
        KafkaVersion {
            major,
            minor,
            patch,
        }
    }
}

impl fmt::Display for KafkaVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// `early.start.listeners` is checked since 3.3 (in `3.3.1`'s `KafkaConfig.scala`, not in
/// `3.2.0`'s).
const EARLY_START_SINCE: KafkaVersion = KafkaVersion::new(3, 3, 0);
/// KIP-797: an IPv4 and an IPv6 listener may share a port.
const KIP_797: KafkaVersion = KafkaVersion::new(3, 6, 0);
/// KIP-853: controller listeners may be advertised.
const KIP_853: KafkaVersion = KafkaVersion::new(3, 9, 0);
/// KAFKA-18281: implicit (non-advertised) controller listeners on 0.0.0.0 accepted again.
const KAFKA_18281: KafkaVersion = KafkaVersion::new(3, 9, 1);
/// ZooKeeper removed; list configs read strictly.
const KAFKA_4: KafkaVersion = KafkaVersion::new(4, 0, 0);

/// Some release at or after `since` is in scope (`None`: every release is).
fn since(kafka: Option<KafkaVersion>, since: KafkaVersion) -> bool {
    match kafka {
        None => true,
        Some(v) => v >= since,
    }
}

/// Some release before `until` is in scope.
fn before(kafka: Option<KafkaVersion>, until: KafkaVersion) -> bool {
    match kafka {
        None => true,
        Some(v) => v < until,
    }
}

/// Which start-up rule a [`Violation`] breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Rule {
    /// An entry of `listeners` or `advertised.listeners` doesn't match Kafka's
    /// `^(.*)://\[?([0-9a-zA-Z\-%._:]*)\]?:(-?[0-9]+)` (`SocketServerConfigs.listenerListToEndPoints`:
    /// "Unable to parse … to a broker endpoint"). Also: a port that isn't a 32-bit integer
    /// (`Integer.parseInt`), a `listeners` port outside 0-65535 (the socket server can't bind it),
    /// or an empty item between commas (Kafka 4.x).
    EndpointSyntax,
    /// An entry of `listener.security.protocol.map` has no `:` (`Csv.parseCsvMap`), or names a
    /// protocol that isn't a `SecurityProtocol` (`KafkaConfig.getSecurityProtocol`: "Invalid
    /// security protocol `…` defined in listener.security.protocol.map").
    ProtocolMapSyntax,
    /// Two entries of `listeners`, or two of `advertised.listeners`, have the same name after
    /// upper-casing (`CoreUtils.listenerListToEndPoints`: "Each listener must have a different
    /// name"). Both modes, every release.
    DuplicateName,
    /// Two `listeners` entries share a port (port 0 excepted). Since 3.6 the only exception is
    /// exactly one IPv4 and one IPv6 address host on that port (KIP-797). `advertised.listeners`
    /// may repeat ports (`requireDistinctPorts = false`).
    DuplicatePort,
    /// A listener name has no security protocol: not in the effective protocol map
    /// (`SocketServerConfigs.listenerListToEndPoints`: "No security protocol defined for listener
    /// …"). The same for the controller listener names of a KRaft broker-only node, for
    /// `inter.broker.listener.name`, and for `control.plane.listener.name`.
    NoSecurityProtocol,
    /// A broker listener in `advertised.listeners` isn't in `listeners` (`KafkaConfig.validateValues`,
    /// broker role and ZooKeeper mode: "advertised.listeners listener names must be equal to or a
    /// subset of the ones defined in listeners").
    AdvertisedNotInListeners,
    /// No broker listener is advertised (`validateAdvertisedBrokerListenersNonEmptyForBroker`).
    NoAdvertisedListener,
    /// An advertised endpoint uses `0.0.0.0` ("advertised.listeners cannot use the nonroutable
    /// meta-address 0.0.0.0").
    AdvertisedWildcard,
    /// `inter.broker.listener.name` (or the listener named after `security.inter.broker.protocol`)
    /// isn't advertised, both keys are set, or the protocol isn't a `SecurityProtocol`.
    InterBrokerListener,
    /// `controller.listener.names` doesn't fit the mode (see the module documentation).
    ControllerListenerNames,
    /// Up to 3.8: a KRaft node with the broker role advertises a controller listener
    /// (`validateAdvertisedListenersDoesNotContainControllerListenersForKRaftBroker`, `3.8.0`).
    ControllerAdvertised,
    /// `process.roles=controller` with a non-controller listener in `listeners`. Up to 3.8, also a
    /// controller-only node that sets `advertised.listeners`.
    ControllerOnlyListeners,
    /// `control.plane.listener.name` set in KRaft (3.x), not advertised, or equal to the
    /// inter-broker listener (ZooKeeper mode).
    ControlPlaneListener,
    /// `early.start.listeners` names a listener that isn't in `listeners` (since 3.3).
    EarlyStartListeners,
}

/// One start-up rule the file breaks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Violation {
    pub rule: Rule,
    /// The key to change, e.g. `listeners`.
    pub setting: &'static str,
    /// One line in the spirit of Kafka's message, naming the listeners and ports involved.
    pub message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.setting, self.message)
    }
}

/// The rules every release in scope checks ([`check_for`] with `None`): a violation means that at
/// least one release in scope refuses to start on this file.
pub(crate) fn check(props: &Properties) -> Vec<Violation> {
    check_for(props, None)
}

/// The violations present in `after` but not in `before`: what an edit would create. Compares
/// rule, setting and message, which names only the entries involved. Violations that were already
/// there are left out.
pub(crate) fn introduced(before: &[Violation], after: &[Violation]) -> Vec<Violation> {
    after
        .iter()
        .filter(|v| !before.contains(v))
        .cloned()
        .collect()
}

/// [`introduced`] for two texts, checked with [`check`] (the tests' shorthand). Errors only when
/// a text doesn't parse as Java properties (a malformed `\u` escape).
#[cfg(test)]
pub(crate) fn introduced_by(
    before: &str,
    after: &str,
) -> Result<Vec<Violation>, crate::properties::EditError> {
    let before = check(&Properties::parse(before)?);
    let after = check(&Properties::parse(after)?);
    Ok(introduced(&before, &after))
}

mod broker;
mod lists;
mod roles;

use lists::{protocol_map, split_list, Endpoint};

struct Checker {
    kafka: Option<KafkaVersion>,
    out: Vec<Violation>,
}

impl Checker {
    fn push(&mut self, rule: Rule, setting: &'static str, message: String) {
        let v = Violation {
            rule,
            setting,
            message,
        };
        if !self.out.contains(&v) {
            self.out.push(v);
        }
    }
}

/// What the rule families read, parsed once by [`check_for`].
struct Facts<'a> {
    role: NodeRole,
    kraft: bool,
    /// ZooKeeper mode, or KRaft with the broker role.
    broker_role: bool,
    controller_names: &'a [String],
    listeners: &'a [Endpoint],
    listener_names: BTreeSet<&'a str>,
    /// The effective `listener.security.protocol.map`.
    map: &'a BTreeMap<String, &'static str>,
    /// `advertised.listeners` as written, when set.
    advertised: Option<&'a [Endpoint]>,
    broker_advertised: Vec<&'a Endpoint>,
    /// The key the broker's advertised listeners come from.
    advertised_key: &'static str,
}

impl<'a> Facts<'a> {
    fn new(
        role: NodeRole,
        controller_names: &'a [String],
        listeners: &'a [Endpoint],
        map: &'a BTreeMap<String, &'static str>,
        advertised: Option<&'a [Endpoint]>,
    ) -> Facts<'a> {
        let broker_role = matches!(
            role,
            NodeRole::ZooKeeperBroker | NodeRole::KraftBroker | NodeRole::KraftCombined
        );
        let is_controller = |name: &str| controller_names.iter().any(|n| n == name);
        let listener_names: BTreeSet<&str> = listeners.iter().map(|e| e.name.as_str()).collect();
        // `effectiveAdvertisedBrokerListeners` (3.9+): the advertised list minus controller listeners.
        let effective_advertised: &[Endpoint] = advertised.unwrap_or(listeners);
        let broker_advertised: Vec<&Endpoint> = effective_advertised
            .iter()
            .filter(|e| !is_controller(&e.name))
            .collect();
        let advertised_key = if advertised.is_some() {
            ADVERTISED_LISTENERS
        } else {
            LISTENERS
        };
        Facts {
            role,
            kraft: role.is_kraft(),
            broker_role,
            controller_names,
            listeners,
            listener_names,
            map,
            advertised,
            broker_advertised,
            advertised_key,
        }
    }

    /// The name is in `controller.listener.names` (case-sensitive, as in Kafka).
    fn is_controller(&self, name: &str) -> bool {
        self.controller_names.iter().any(|n| n == name)
    }
}

/// `KafkaConfig.controllerListenerNames`.
fn controller_names(props: &Properties) -> Vec<String> {
    // `KafkaConfig.controllerListenerNames`: items of the trimmed value. 3.x splits on "," without
    // trimming items, 4.x trims them; empty items are dropped here. Compared case-sensitively
    // with the upper-cased listener names, as Kafka's `contains(listenerName.value())` does.
    props
        .get(CONTROLLER_LISTENER_NAMES)
        .map(|v| {
            split_list(&v)
                .into_iter()
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// The rules of the releases in scope: `None` means every release this module models (3.x
/// ZooKeeper mode or KRaft, as the file says, and 4.x), and reports a file when any of them would
/// refuse it. `Some(v)` means release `v` only.
///
/// The rule families run in a fixed order, which is the order of the violations.
pub(crate) fn check_for(props: &Properties, kafka: Option<KafkaVersion>) -> Vec<Violation> {
    let mut c = Checker {
        kafka,
        out: Vec::new(),
    };
    let role = NodeRole::from_roles(props.get(PROCESS_ROLES).as_deref());
    let controller_names = controller_names(props);

    // listeners (default `PLAINTEXT://:9092`)
    let listeners_value = props
        .get(LISTENERS)
        .unwrap_or_else(|| LISTENERS_DEFAULT.to_string());
    let listeners = c.endpoints(LISTENERS, &listeners_value);
    c.ports(&listeners);

    // listener.security.protocol.map
    let listener_items = split_list(&listeners_value);
    let map = protocol_map(
        &mut c,
        props,
        role.is_kraft(),
        &controller_names,
        &listener_items,
    );

    // advertised.listeners: when absent, `listeners` (`KafkaConfig.advertisedListeners`).
    let advertised = props
        .get(ADVERTISED_LISTENERS)
        .map(|v| c.endpoints(ADVERTISED_LISTENERS, &v));

    let f = Facts::new(
        role,
        &controller_names,
        &listeners,
        &map,
        advertised.as_deref(),
    );
    c.named_protocols(&f);
    let inter_broker = c.inter_broker(props, &f);
    c.mode_rules(props, &f);
    c.broker_rules(props, &f, &inter_broker);
    c.wildcard_rules(&f);
    c.early_start_listeners(props, &f);
    c.out
}

#[cfg(test)]
mod tests;
