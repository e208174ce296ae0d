//! The listener rules Apache Kafka checks at start-up, as a pure validator of `server.properties`.
//!
//! **Why.** The agent edits `server.properties` and then restarts the broker. If the edited file
//! breaks one of Kafka's start-up rules, the broker refuses to start, and a rolling restart takes
//! brokers down one after the other. The motivating case:
//! `listeners=PLAINTEXT://:9092,EXTERNAL://:9094` plus the agent's `PRIVATELINK://:9094` makes
//! Kafka exit with `Each listener must have a different port`. So the agent computes the edited text, runs [`check`] on the file as it is and
//! on the edited text, and refuses the edit when [`introduced`] (or [`introduced_by`]) is not
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

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::Serialize;

use crate::node::NodeRole;
use crate::properties::{EditError, Properties};

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
pub struct KafkaVersion {
    pub major: u16,
    pub minor: u16,
    pub patch: u16,
}

impl KafkaVersion {
    pub const fn new(major: u16, minor: u16, patch: u16) -> KafkaVersion {
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
pub enum Rule {
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
pub struct Violation {
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
pub fn check(props: &Properties) -> Vec<Violation> {
    check_for(props, None)
}

/// The violations present in `after` but not in `before`: what an edit would create. Compares
/// rule, setting and message, which names only the entries involved. Violations that were already
/// there are left out.
pub fn introduced(before: &[Violation], after: &[Violation]) -> Vec<Violation> {
    after
        .iter()
        .filter(|v| !before.contains(v))
        .cloned()
        .collect()
}

/// [`introduced`] for two texts, checked with [`check`]. Errors only when a text doesn't parse
/// as Java properties (a malformed `\u` escape).
pub fn introduced_by(before: &str, after: &str) -> Result<Vec<Violation>, EditError> {
    let before = check(&Properties::parse(before)?);
    let after = check(&Properties::parse(after)?);
    Ok(introduced(&before, &after))
}

/// One parsed entry of `listeners` or `advertised.listeners`.
#[derive(Debug, Clone)]
struct Endpoint {
    /// As written (trimmed), for messages.
    text: String,
    /// `ListenerName.normalised`: upper-cased.
    name: String,
    /// Without brackets; `None` for an empty host (bind all interfaces, advertise the
    /// canonical host name).
    host: Option<String>,
    port: i64,
}

/// Java's `\s`, which Kafka's `\s*,\s*` split removes around commas.
fn is_java_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\x0b' | '\x0c' | '\r')
}

/// Java's `String.trim()`: every char up to U+0020.
fn java_trim(s: &str) -> &str {
    s.trim_matches(|c: char| c <= ' ')
}

/// Items of a list value: Kafka trims the value and splits on `\s*,\s*`. Empty items are kept
/// as `""`: 3.x drops them (`Csv.parseCsvList`), 4.x keeps them (`ConfigDef` `LIST`).
fn split_list(value: &str) -> Vec<&str> {
    let value = java_trim(value);
    if value.is_empty() {
        return Vec::new();
    }
    value
        .split(',')
        .map(|s| s.trim_matches(is_java_space))
        .collect()
}

/// `SocketServerConfigs.listenerListToEndPoints` for one entry: `URI_PARSE_REGEXP` must match the
/// whole entry. `(.*)` is greedy, so the name runs to the last `://`. The host chars include `:`,
/// so the port is what follows the last `:`. Brackets are optional and dropped.
fn parse_endpoint(entry: &str) -> Result<Endpoint, String> {
    let unparsable = || format!("Unable to parse {entry} to a broker endpoint");
    let at = entry.rfind("://").ok_or_else(unparsable)?;
    let name = &entry[..at];
    // `.` in a Java regex matches no line terminator.
    if name.contains(['\n', '\r', '\u{85}', '\u{2028}', '\u{2029}']) {
        return Err(unparsable());
    }
    let (host, port) = entry[at + 3..].rsplit_once(':').ok_or_else(unparsable)?;
    let digits = port.strip_prefix('-').unwrap_or(port);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(unparsable());
    }
    let host = host.strip_prefix('[').unwrap_or(host);
    let host = host.strip_suffix(']').unwrap_or(host);
    let host_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '%' | '.' | '_' | ':');
    if !host.chars().all(host_char) {
        return Err(unparsable());
    }
    let port = port.parse::<i32>().map_err(|_| {
        format!("Unable to parse {entry} to a broker endpoint: port {port} is not a 32-bit integer")
    })?;
    Ok(Endpoint {
        text: entry.to_string(),
        name: name.to_uppercase(),
        host: (!host.is_empty()).then(|| host.to_string()),
        port: port.into(),
    })
}

/// commons-validator `InetAddressValidator.isValidInet4Address`: four decimal octets, each at
/// most 255 and without a leading zero.
fn is_ipv4(host: &str) -> bool {
    let octets: Vec<&str> = host.split('.').collect();
    octets.len() == 4
        && octets.iter().all(|o| {
            (1..=3).contains(&o.len())
                && o.bytes().all(|b| b.is_ascii_digit())
                && !(o.len() > 1 && o.starts_with('0'))
                && o.parse::<u16>().is_ok_and(|n| n <= 255)
        })
}

/// `InetAddressValidator.isValidInet6Address`, approximated with Rust's parser. It takes a
/// `%zone` suffix like commons-validator does.
fn is_ipv6(host: &str) -> bool {
    let address = match host.split_once('%') {
        Some((address, zone)) if !zone.is_empty() && !zone.contains(['%', '/']) => address,
        Some(_) => return false,
        None => host,
    };
    address.parse::<std::net::Ipv6Addr>().is_ok()
}

/// `InetAddressValidator.isValid`.
fn is_ip(host: &str) -> bool {
    is_ipv4(host) || is_ipv6(host)
}

/// The entries, joined for a message.
fn entries(endpoints: &[&Endpoint]) -> String {
    endpoints
        .iter()
        .map(|e| e.text.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// `SecurityProtocol.forName`: case-insensitive.
fn security_protocol(name: &str) -> Option<&'static str> {
    PROTOCOLS
        .iter()
        .copied()
        .find(|p| p.eq_ignore_ascii_case(name))
}

/// `SSL`, `SASL_SSL` or `SASL_PLAINTEXT` (`KafkaConfig.effectiveListenerSecurityProtocolMap`'s
/// `isSslOrSasl`, case-sensitive).
fn is_ssl_or_sasl(name: &str) -> bool {
    matches!(name, "SSL" | "SASL_SSL" | "SASL_PLAINTEXT")
}

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

    /// Parses a list (`CoreUtils.listenerListToEndPoints`), reports syntax and duplicate names,
    /// and returns the entries that parse.
    fn endpoints(&mut self, key: &'static str, value: &str) -> Vec<Endpoint> {
        let mut parsed = Vec::new();
        let mut empty_item = false;
        for item in split_list(value) {
            if item.is_empty() {
                empty_item = true;
                continue;
            }
            match parse_endpoint(item) {
                Ok(e) => parsed.push(e),
                Err(message) => self.push(Rule::EndpointSyntax, key, message),
            }
        }
        // 4.x: `ConfigDef` LIST keeps empty items (`split(trimmed, -1)`); the 4.x trunk
        // `ValidList.anyNonDuplicateValues` refuses them, and without it the empty item fails
        // `URI_PARSE_REGEXP`. 3.x: `Csv.parseCsvList` drops them.
        if empty_item && since(self.kafka, KAFKA_4) {
            self.push(
                Rule::EndpointSyntax,
                key,
                format!(
                    "Configuration '{key}' values must not be empty: an empty item between commas \
                     (Kafka 4.x refuses it; 3.x skipped it)"
                ),
            );
        }
        // `validate`: "Each listener must have a different name" (both lists).
        let mut by_name: BTreeMap<&str, Vec<&Endpoint>> = BTreeMap::new();
        for e in &parsed {
            by_name.entry(e.name.as_str()).or_default().push(e);
        }
        for (name, group) in &by_name {
            if group.len() > 1 {
                self.push(
                    Rule::DuplicateName,
                    key,
                    format!(
                        "Each listener must have a different name: {} are all named {name}",
                        entries(group)
                    ),
                );
            }
        }
        parsed
    }

    /// `CoreUtils.listenerListToEndPoints` with `requireDistinctPorts` (`listeners` only).
    fn ports(&mut self, listeners: &[Endpoint]) {
        for e in listeners {
            // `SocketServer` binds `new InetSocketAddress(host, port)`, which throws for these.
            if !(0..=65535).contains(&e.port) {
                self.push(
                    Rule::EndpointSyntax,
                    LISTENERS,
                    format!(
                        "{}: port {} is outside 0-65535, the broker cannot bind it",
                        e.text, e.port
                    ),
                );
            }
        }
        // "filter port 0 for unit tests"
        let mut by_port: BTreeMap<i64, Vec<&Endpoint>> = BTreeMap::new();
        for e in listeners.iter().filter(|e| e.port != 0) {
            by_port.entry(e.port).or_default().push(e);
        }
        for (port, group) in by_port {
            if group.len() < 2 {
                continue;
            }
            if let Some(message) = self.port_conflict(port, &group) {
                self.push(Rule::DuplicatePort, LISTENERS, message);
            }
        }
    }

    /// The message for listeners sharing `port`, if a release in scope refuses them.
    fn port_conflict(&self, port: i64, group: &[&Endpoint]) -> Option<String> {
        let listed = entries(group);
        // 3.6+ (`validate` after KIP-797): split by whether the host is an IP address.
        let (ip, other): (Vec<&Endpoint>, Vec<&Endpoint>) = group
            .iter()
            .partition(|e| e.host.as_deref().is_some_and(is_ip));
        let one_v4_one_v6 =
            |a: &str, b: &str| (is_ipv4(a) && is_ipv6(b)) || (is_ipv6(a) && is_ipv4(b));
        let kip_797 = if other.len() > 1 {
            // `checkDuplicateListenerPorts` on the hosts that are not IP addresses.
            Some("Each listener must have a different port")
        } else if ip.len() == 2 {
            let (a, b) = (ip[0].host.as_deref(), ip[1].host.as_deref());
            let pair = matches!((a, b), (Some(a), Some(b)) if one_v4_one_v6(a, b));
            (!pair || !other.is_empty()).then_some(
                "If you have two listeners on the same port then one needs to be IPv4 and the other IPv6",
            )
        } else {
            Some(
                "Each listener must have a different port unless exactly one listener has an IPv4 \
                 address and the other IPv6 address",
            )
        };
        match kip_797 {
            Some(message) if since(self.kafka, KIP_797) => {
                Some(format!("{message}: {listed} share port {port}"))
            }
            // Before 3.6 every duplicate is refused.
            Some(_) => Some(format!(
                "Each listener must have a different port: {listed} share port {port}"
            )),
            None if before(self.kafka, KIP_797) => Some(format!(
                "Each listener must have a different port: {listed} share port {port} (Kafka \
                 before 3.6 refuses this; 3.6+ accepts one IPv4 and one IPv6 listener on a port, \
                 KIP-797)"
            )),
            None => None,
        }
    }
}

/// The effective `listener.security.protocol.map`, keyed by upper-cased listener name
/// (`KafkaConfig.effectiveListenerSecurityProtocolMap`).
fn protocol_map(
    c: &mut Checker,
    props: &Properties,
    kraft: bool,
    controller_names: &[String],
    listener_items: &[&str],
) -> BTreeMap<String, &'static str> {
    let mut map = BTreeMap::new();
    let Some(value) = props.get(PROTOCOL_MAP) else {
        for p in PROTOCOLS {
            map.insert(p.to_string(), p);
        }
        // KRaft, key not in the file (`originals.containsKey`), no SSL/SASL listener names:
        // controller listener names map to PLAINTEXT. The key is `new ListenerName(name)`, not
        // normalised, so a lower-case controller name gets no usable mapping (as in Kafka).
        let listener_name = |item: &&str| item.split(':').next().unwrap_or("").to_uppercase();
        let ssl_or_sasl = controller_names.iter().any(|n| is_ssl_or_sasl(n))
            || listener_items
                .iter()
                .any(|item| is_ssl_or_sasl(&listener_name(item)));
        if kraft && !ssl_or_sasl {
            for name in controller_names.iter().filter(|n| *n != "PLAINTEXT") {
                map.insert(name.clone(), "PLAINTEXT");
            }
        }
        return map;
    };
    // `Csv.parseCsvMap`: split on `\s*,\s*` (Java drops trailing empty items), each item at its
    // last ':'.
    let value = java_trim(&value);
    if value.is_empty() {
        return map;
    }
    let mut items: Vec<&str> = value
        .split(',')
        .map(|s| s.trim_matches(is_java_space))
        .collect();
    while items.last() == Some(&"") {
        items.pop();
    }
    for item in items {
        let Some((name, protocol)) = item.rsplit_once(':') else {
            c.push(
                Rule::ProtocolMapSyntax,
                PROTOCOL_MAP,
                format!(
                    "Error parsing configuration property '{PROTOCOL_MAP}': {item:?} is not \
                     NAME:PROTOCOL"
                ),
            );
            continue;
        };
        let protocol = java_trim(protocol);
        match security_protocol(protocol) {
            Some(p) => {
                map.insert(java_trim(name).to_uppercase(), p);
            }
            None => c.push(
                Rule::ProtocolMapSyntax,
                PROTOCOL_MAP,
                format!("Invalid security protocol `{protocol}` defined in {PROTOCOL_MAP}"),
            ),
        }
    }
    map
}

/// The rules of the releases in scope: `None` means every release this module models (3.x
/// ZooKeeper mode or KRaft, as the file says, and 4.x), and reports a file when any of them would
/// refuse it. `Some(v)` means release `v` only.
pub fn check_for(props: &Properties, kafka: Option<KafkaVersion>) -> Vec<Violation> {
    let mut c = Checker {
        kafka,
        out: Vec::new(),
    };
    let role = NodeRole::from_roles(props.get(PROCESS_ROLES).as_deref());
    let kraft = role.is_kraft();
    let broker_role = matches!(
        role,
        NodeRole::ZooKeeperBroker | NodeRole::KraftBroker | NodeRole::KraftCombined
    );
    let controller_role = matches!(role, NodeRole::KraftCombined | NodeRole::KraftController);

    // `KafkaConfig.controllerListenerNames`: items of the trimmed value. 3.x splits on "," without
    // trimming items, 4.x trims them; empty items are dropped here. Compared case-sensitively
    // with the upper-cased listener names, as Kafka's `contains(listenerName.value())` does.
    let controller_names: Vec<String> = props
        .get(CONTROLLER_LISTENER_NAMES)
        .map(|v| {
            split_list(&v)
                .into_iter()
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    let is_controller = |name: &str| controller_names.iter().any(|n| n == name);

    // listeners (default `PLAINTEXT://:9092`)
    let listeners_value = props
        .get(LISTENERS)
        .unwrap_or_else(|| LISTENERS_DEFAULT.to_string());
    let listeners = c.endpoints(LISTENERS, &listeners_value);
    c.ports(&listeners);
    let listener_names: BTreeSet<&str> = listeners.iter().map(|e| e.name.as_str()).collect();

    // listener.security.protocol.map
    let listener_items = split_list(&listeners_value);
    let map = protocol_map(&mut c, props, kraft, &controller_names, &listener_items);

    // advertised.listeners: when absent, `listeners` (`KafkaConfig.advertisedListeners`).
    let advertised = props
        .get(ADVERTISED_LISTENERS)
        .map(|v| c.endpoints(ADVERTISED_LISTENERS, &v));

    // Every name in both lists needs a protocol (`listenerListToEndPoints`).
    for e in listeners.iter().chain(advertised.iter().flatten()) {
        if !map.contains_key(&e.name) {
            c.push(
                Rule::NoSecurityProtocol,
                PROTOCOL_MAP,
                format!("No security protocol defined for listener {}", e.name),
            );
        }
    }

    // `effectiveAdvertisedBrokerListeners` (3.9+): the advertised list minus controller listeners.
    let effective_advertised: &[Endpoint] = advertised.as_deref().unwrap_or(&listeners);
    let broker_advertised: Vec<&Endpoint> = effective_advertised
        .iter()
        .filter(|e| !is_controller(&e.name))
        .collect();
    let advertised_key = if advertised.is_some() {
        ADVERTISED_LISTENERS
    } else {
        LISTENERS
    };

    // inter.broker.listener.name / security.inter.broker.protocol
    // (`getInterBrokerListenerNameAndSecurityProtocol`; evaluated for every role).
    let explicit_inter_broker = props
        .get(INTER_BROKER_LISTENER_NAME)
        .map(|v| java_trim(&v).to_uppercase());
    let protocol_value = props.get(INTER_BROKER_PROTOCOL);
    if let Some(value) = &protocol_value {
        // `ConfigDef.ValidString.in(SecurityProtocol names)`: exact match.
        if !PROTOCOLS.contains(&java_trim(value)) {
            c.push(
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
            c.push(
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
            if !map.contains_key(name) {
                c.push(
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

    // Mode-specific rules (`validateValues`).
    match role {
        NodeRole::ZooKeeperBroker => {
            let migration = props
                .get(MIGRATION_ENABLED)
                .is_some_and(|v| java_trim(&v).eq_ignore_ascii_case("true"));
            if migration && controller_names.is_empty() {
                c.push(
                    Rule::ControllerListenerNames,
                    CONTROLLER_LISTENER_NAMES,
                    format!(
                        "{CONTROLLER_LISTENER_NAMES} must not be empty when running in ZooKeeper \
                         migration mode: []"
                    ),
                );
            } else if !migration && !controller_names.is_empty() {
                c.push(
                    Rule::ControllerListenerNames,
                    CONTROLLER_LISTENER_NAMES,
                    format!(
                        "{CONTROLLER_LISTENER_NAMES} must be empty when not running in KRaft \
                         mode: [{}]",
                        controller_names.join(", ")
                    ),
                );
            }
        }
        NodeRole::KraftBroker => {
            if controller_names.is_empty() {
                c.push(
                    Rule::ControllerListenerNames,
                    CONTROLLER_LISTENER_NAMES,
                    format!(
                        "{CONTROLLER_LISTENER_NAMES} must contain at least one value when running \
                         KRaft with just the broker role"
                    ),
                );
            }
            let in_listeners: Vec<&Endpoint> = listeners
                .iter()
                .filter(|e| is_controller(&e.name))
                .collect();
            if !in_listeners.is_empty() {
                c.push(
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
            for name in &controller_names {
                let normalised = name.to_uppercase();
                if !map.contains_key(&normalised) {
                    c.push(
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
        NodeRole::KraftCombined | NodeRole::KraftController => {}
    }
    if controller_role {
        if controller_names.is_empty() {
            c.push(
                Rule::ControllerListenerNames,
                CONTROLLER_LISTENER_NAMES,
                format!(
                    "{CONTROLLER_LISTENER_NAMES} must contain at least one value appearing in the \
                     '{LISTENERS}' configuration when running the KRaft controller role"
                ),
            );
        }
        for name in controller_names
            .iter()
            .filter(|n| !listener_names.contains(n.as_str()))
        {
            c.push(
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
    if role == NodeRole::KraftController {
        let others: Vec<&Endpoint> = listeners
            .iter()
            .filter(|e| !is_controller(&e.name))
            .collect();
        if !others.is_empty() {
            c.push(
                Rule::ControllerOnlyListeners,
                LISTENERS,
                format!(
                    "The {LISTENERS} config must only contain KRaft controller listeners from \
                     {CONTROLLER_LISTENER_NAMES} when {PROCESS_ROLES}=controller: {}",
                    entries(&others)
                ),
            );
        }
        if advertised.is_some() && before(kafka, KIP_853) {
            c.push(
                Rule::ControllerOnlyListeners,
                ADVERTISED_LISTENERS,
                format!(
                    "The {ADVERTISED_LISTENERS} config must be empty when \
                     {PROCESS_ROLES}=controller (Kafka 3.8 and earlier; 3.9+ accept it, KIP-853)"
                ),
            );
        }
    }
    if kraft && broker_role && before(kafka, KIP_853) {
        // 3.8: `effectiveAdvertisedListeners` is the explicit list (or `listeners` minus the
        // controller listeners), and must not name a controller listener.
        let advertised_controllers: Vec<&Endpoint> = advertised
            .iter()
            .flatten()
            .filter(|e| is_controller(&e.name))
            .collect();
        if !advertised_controllers.is_empty() {
            c.push(
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
    if kraft && before(kafka, KAFKA_4) && props.get(CONTROL_PLANE_LISTENER_NAME).is_some() {
        c.push(
            Rule::ControlPlaneListener,
            CONTROL_PLANE_LISTENER_NAME,
            format!("{CONTROL_PLANE_LISTENER_NAME} is not supported in KRaft mode."),
        );
    }

    // Every broker (ZooKeeper mode, KRaft with the broker role).
    if broker_role {
        if broker_advertised.is_empty() {
            let mut message = if since(kafka, KIP_853) {
                "There must be at least one broker advertised listener.".to_string()
            } else {
                "There must be at least one advertised listener.".to_string()
            };
            if kraft {
                message.push_str(&format!(
                    " Perhaps all listeners appear in {CONTROLLER_LISTENER_NAMES}?"
                ));
            }
            c.push(Rule::NoAdvertisedListener, advertised_key, message);
        } else if let Some(name) = &inter_broker {
            if !broker_advertised.iter().any(|e| &e.name == name) {
                let why = if explicit_inter_broker.is_some() {
                    String::new()
                } else {
                    format!(
                        " ({INTER_BROKER_LISTENER_NAME} is not set, so it is the listener named \
                         after {INTER_BROKER_PROTOCOL})"
                    )
                };
                c.push(
                    Rule::InterBrokerListener,
                    INTER_BROKER_LISTENER_NAME,
                    format!(
                        "{INTER_BROKER_LISTENER_NAME} must be a listener name defined in \
                         {ADVERTISED_LISTENERS}: {name} is not advertised{why}"
                    ),
                );
            }
        }
        for e in &broker_advertised {
            if !listener_names.contains(e.name.as_str()) {
                c.push(
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
        if !kraft {
            if let Some(value) = props.get(CONTROL_PLANE_LISTENER_NAME) {
                let name = java_trim(&value).to_uppercase();
                if !map.contains_key(&name) {
                    c.push(
                        Rule::NoSecurityProtocol,
                        PROTOCOL_MAP,
                        format!(
                            "Listener with {name} defined in {CONTROL_PLANE_LISTENER_NAME} not \
                             found in {PROTOCOL_MAP}."
                        ),
                    );
                }
                if !broker_advertised.iter().any(|e| e.name == name) {
                    c.push(
                        Rule::ControlPlaneListener,
                        CONTROL_PLANE_LISTENER_NAME,
                        format!(
                            "{CONTROL_PLANE_LISTENER_NAME} must be a listener name defined in \
                             {ADVERTISED_LISTENERS}: {name} is not advertised"
                        ),
                    );
                }
                if inter_broker.as_deref() == Some(name.as_str()) {
                    c.push(
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
    }

    // 0.0.0.0 is never advertised (`validateValues`, every mode).
    let wildcard = |e: &&Endpoint| e.host.as_deref() == Some("0.0.0.0");
    match &advertised {
        Some(list) => {
            let bad: Vec<&Endpoint> = list.iter().filter(wildcard).collect();
            if !bad.is_empty() {
                c.push(
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
            let bad: Vec<&Endpoint> = broker_advertised.iter().copied().filter(wildcard).collect();
            if !bad.is_empty() {
                c.push(
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
    if since(kafka, KIP_853) && before(kafka, KAFKA_18281) {
        let advertised_names: BTreeSet<&str> = advertised
            .iter()
            .flatten()
            .map(|e| e.name.as_str())
            .collect();
        let bad: Vec<&Endpoint> = listeners
            .iter()
            .filter(|e| is_controller(&e.name) && !advertised_names.contains(e.name.as_str()))
            .filter(wildcard)
            .collect();
        if !bad.is_empty() {
            c.push(
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

    // early.start.listeners (`KafkaConfig.earlyStartListeners`, since 3.3): names as written
    // (`new ListenerName(str)`, not upper-cased) must be among the listener names.
    if since(kafka, EARLY_START_SINCE) {
        if let Some(value) = props.get(EARLY_START_LISTENERS) {
            for name in java_trim(&value)
                .split(',')
                .map(java_trim)
                .filter(|s| !s.is_empty())
            {
                if !listener_names.contains(name) {
                    c.push(
                        Rule::EarlyStartListeners,
                        EARLY_START_LISTENERS,
                        format!(
                            "{EARLY_START_LISTENERS} contains listener {name}, but this is not \
                             contained in {LISTENERS} or {CONTROLLER_LISTENER_NAMES}"
                        ),
                    );
                }
            }
        }
    }

    c.out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::properties::{apply_listener, ListenerEdit};

    const V3_5: Option<KafkaVersion> = Some(KafkaVersion::new(3, 5, 2));
    const V3_6: Option<KafkaVersion> = Some(KafkaVersion::new(3, 6, 0));
    const V3_8: Option<KafkaVersion> = Some(KafkaVersion::new(3, 8, 1));
    const V3_9_0: Option<KafkaVersion> = Some(KafkaVersion::new(3, 9, 0));
    const V3_9_1: Option<KafkaVersion> = Some(KafkaVersion::new(3, 9, 1));
    const V4_1: Option<KafkaVersion> = Some(KafkaVersion::new(4, 1, 0));
    const ANY: Option<KafkaVersion> = None;

    /// `SERVER_PROPERTIES` of tests/common/mod.rs (KRaft combined mode), as it is.
    const SERVER_PROPERTIES: &str = "# Kafka broker config managed by config management\n\
        process.roles=broker,controller\n\
        controller.listener.names=CONTROLLER\n\
        listeners=PLAINTEXT://:9092,CONTROLLER://:9093\n\
        advertised.listeners=PLAINTEXT://:9092\n\
        listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT\n\
        \n\
        # storage\n\
        log.dirs=/nonexistent/kafka-logs\n\
        num.partitions=3\n";

    /// The same after the agent's edit.
    const SERVER_PROPERTIES_EDITED: &str = "# Kafka broker config managed by config management\n\
        process.roles=broker,controller\n\
        controller.listener.names=CONTROLLER\n\
        listeners=PLAINTEXT://:9092,CONTROLLER://:9093,PRIVATELINK://:9094\n\
        advertised.listeners=PLAINTEXT://:9092,PRIVATELINK://kafka-use1-az1.orders.example.internal:10003\n\
        listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,PRIVATELINK:SSL\n\
        \n\
        # storage\n\
        log.dirs=/nonexistent/kafka-logs\n\
        num.partitions=3\n";

    /// `PROPS` of src/pass_tests.rs (KRaft broker-only), as it is. It has no
    /// `controller.listener.names`, which real Kafka requires of a broker-only node.
    const PASS_PROPS: &str = "# managed by config management\n\
        process.roles=broker\n\
        listeners=PLAINTEXT://:9092\n\
        advertised.listeners=PLAINTEXT://b.internal:9092\n\
        listener.security.protocol.map=PLAINTEXT:PLAINTEXT\n";

    const PASS_PROPS_EDITED: &str = "# managed by config management\n\
        process.roles=broker\n\
        listeners=PLAINTEXT://:9092,PRIVATELINK://:9094\n\
        advertised.listeners=PLAINTEXT://b.internal:9092,PRIVATELINK://kafka-use1-az1.orders.example.internal:10003\n\
        listener.security.protocol.map=PLAINTEXT:PLAINTEXT,PRIVATELINK:SSL\n";

    /// The listener lines of Kafka's sample `config/kraft/server.properties` at trunk 1eb7644
    /// (4.0.0-SNAPSHOT): combined mode, advertising its controller listener (KIP-853).
    const KAFKA_4_SAMPLE: &str = "process.roles=broker,controller\n\
        node.id=1\n\
        controller.quorum.voters=1@localhost:9093\n\
        listeners=PLAINTEXT://:9092,CONTROLLER://:9093\n\
        inter.broker.listener.name=PLAINTEXT\n\
        advertised.listeners=PLAINTEXT://localhost:9092,CONTROLLER://localhost:9093\n\
        controller.listener.names=CONTROLLER\n\
        listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL\n";

    /// A ZooKeeper-mode broker (no `process.roles`) after the edit.
    const ZOOKEEPER_EDITED: &str = "broker.id=7\n\
        zookeeper.connect=zk1:2181,zk2:2181/kafka\n\
        listeners=PLAINTEXT://:9092,PRIVATELINK://:9094\n\
        advertised.listeners=PLAINTEXT://b7.internal:9092,PRIVATELINK://kafka-use1-az1.orders.example.internal:10003\n\
        listener.security.protocol.map=PLAINTEXT:PLAINTEXT,PRIVATELINK:SSL\n";

    fn edit() -> ListenerEdit {
        ListenerEdit {
            name: "PRIVATELINK".into(),
            bind_port: 9094,
            advertised_host: "kafka-use1-az1.orders.example.internal".into(),
            advertised_port: 10003,
            security_protocol: "SSL".into(),
        }
    }

    fn run(text: &str, kafka: Option<KafkaVersion>) -> Vec<Violation> {
        check_for(&Properties::parse(text).unwrap(), kafka)
    }

    fn rules(violations: &[Violation]) -> Vec<(Rule, &'static str)> {
        violations.iter().map(|v| (v.rule, v.setting)).collect()
    }

    struct Case {
        name: &'static str,
        text: &'static str,
        kafka: Option<KafkaVersion>,
        want: &'static [(Rule, &'static str)],
        /// Substrings of the messages, in order of the violations.
        says: &'static [&'static str],
    }

    const ZK: &str = "broker.id=1\nzookeeper.connect=zk:2181\n";

    fn cases() -> Vec<Case> {
        use Rule::*;
        vec![
            // --- the project's own files ---
            Case {
                name: "SERVER_PROPERTIES (combined) before the edit",
                text: SERVER_PROPERTIES,
                kafka: ANY,
                want: &[],
                says: &[],
            },
            Case {
                name: "SERVER_PROPERTIES (combined) after the edit",
                text: SERVER_PROPERTIES_EDITED,
                kafka: ANY,
                want: &[],
                says: &[],
            },
            Case {
                name: "pass_tests PROPS: broker-only without controller.listener.names",
                text: PASS_PROPS_EDITED,
                kafka: ANY,
                want: &[(ControllerListenerNames, CONTROLLER_LISTENER_NAMES)],
                says: &["must contain at least one value when running KRaft with just the broker role"],
            },
            Case {
                name: "ZooKeeper mode with broker.id, after the edit",
                text: ZOOKEEPER_EDITED,
                kafka: ANY,
                want: &[],
                says: &[],
            },
            Case {
                name: "listeners absent: Kafka binds PLAINTEXT://:9092",
                text: ZK,
                kafka: ANY,
                want: &[],
                says: &[],
            },
            // --- rule 1: ports ---
            Case {
                name: "motivating example: EXTERNAL and PRIVATELINK on 9094 (ZooKeeper)",
                text: "broker.id=1\n\
                    listeners=PLAINTEXT://:9092,EXTERNAL://:9094,PRIVATELINK://:9094\n\
                    advertised.listeners=PLAINTEXT://b1:9092,EXTERNAL://e1:9094,PRIVATELINK://kafka-use1-az1.orders.example.internal:10003\n\
                    listener.security.protocol.map=PLAINTEXT:PLAINTEXT,EXTERNAL:SSL,PRIVATELINK:SSL\n",
                kafka: ANY,
                want: &[(DuplicatePort, LISTENERS)],
                says: &["Each listener must have a different port: EXTERNAL://:9094, PRIVATELINK://:9094 share port 9094"],
            },
            Case {
                name: "KRaft combined: CONTROLLER on 9094 collides with PRIVATELINK",
                text: "process.roles=broker,controller\nnode.id=1\n\
                    controller.listener.names=CONTROLLER\n\
                    listeners=PLAINTEXT://:9092,CONTROLLER://:9094,PRIVATELINK://:9094\n\
                    advertised.listeners=PLAINTEXT://b1:9092,PRIVATELINK://p:10003\n\
                    listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,PRIVATELINK:SSL\n",
                kafka: V3_9_1,
                want: &[(DuplicatePort, LISTENERS)],
                says: &["CONTROLLER://:9094, PRIVATELINK://:9094 share port 9094"],
            },
            Case {
                name: "KIP-797: one IPv4 and one IPv6 listener share a port (3.6+)",
                text: "broker.id=1\nlisteners=PLAINTEXT://127.0.0.1:9092,SSL://[::1]:9092\n\
                    advertised.listeners=PLAINTEXT://b1:9092,SSL://b1:9093\n",
                kafka: V3_6,
                want: &[],
                says: &[],
            },
            Case {
                name: "KIP-797 pair on 3.5: refused",
                text: "broker.id=1\nlisteners=PLAINTEXT://127.0.0.1:9092,SSL://[::1]:9092\n\
                    advertised.listeners=PLAINTEXT://b1:9092,SSL://b1:9093\n",
                kafka: V3_5,
                want: &[(DuplicatePort, LISTENERS)],
                says: &["Each listener must have a different port"],
            },
            Case {
                name: "KIP-797 pair, release unknown: reported with the releases that refuse it",
                text: "broker.id=1\nlisteners=PLAINTEXT://127.0.0.1:9092,SSL://[::1]:9092\n\
                    advertised.listeners=PLAINTEXT://b1:9092,SSL://b1:9093\n",
                kafka: ANY,
                want: &[(DuplicatePort, LISTENERS)],
                says: &["Kafka before 3.6 refuses this"],
            },
            Case {
                name: "three listeners on one port: refused even with KIP-797",
                text: "broker.id=1\n\
                    listeners=PLAINTEXT://127.0.0.1:9092,SSL://[::1]:9092,SASL_SSL://10.0.0.1:9092\n\
                    advertised.listeners=PLAINTEXT://b1:9092\n",
                kafka: V3_9_1,
                want: &[(DuplicatePort, LISTENERS)],
                says: &["unless exactly one listener has an IPv4 address and the other IPv6 address"],
            },
            Case {
                name: "two IPv4 listeners on one port",
                text: "broker.id=1\nlisteners=PLAINTEXT://127.0.0.1:9092,SSL://10.0.0.1:9092\n\
                    advertised.listeners=PLAINTEXT://b1:9092\n",
                kafka: V4_1,
                want: &[(DuplicatePort, LISTENERS)],
                says: &["one needs to be IPv4 and the other IPv6"],
            },
            Case {
                name: "IPv4 + IPv6 + a wildcard listener on one port",
                text: "broker.id=1\n\
                    listeners=PLAINTEXT://127.0.0.1:9092,SSL://[::1]:9092,SASL_SSL://:9092\n\
                    advertised.listeners=PLAINTEXT://b1:9092\n",
                kafka: V3_9_1,
                want: &[(DuplicatePort, LISTENERS)],
                says: &["one needs to be IPv4 and the other IPv6"],
            },
            Case {
                name: "an IP and a host name on one port",
                text: "broker.id=1\nlisteners=PLAINTEXT://127.0.0.1:9092,SSL://b1.internal:9092\n\
                    advertised.listeners=PLAINTEXT://b1:9092\n",
                kafka: V3_9_1,
                want: &[(DuplicatePort, LISTENERS)],
                says: &["unless exactly one listener has an IPv4 address"],
            },
            Case {
                name: "port 0 may repeat",
                text: "broker.id=1\nlisteners=PLAINTEXT://:0,SSL://:0\n",
                kafka: ANY,
                want: &[],
                says: &[],
            },
            Case {
                name: "advertised.listeners may repeat a port",
                text: "broker.id=1\nlisteners=PLAINTEXT://:9092,SSL://:9093\n\
                    advertised.listeners=PLAINTEXT://lb:9092,SSL://lb2:9092\n",
                kafka: ANY,
                want: &[],
                says: &[],
            },
            // --- rule 1: names ---
            Case {
                name: "listener names differ only by case",
                text: "broker.id=1\nlisteners=PLAINTEXT://:9092,plaintext://:9093\n",
                kafka: ANY,
                want: &[(DuplicateName, LISTENERS)],
                says: &["PLAINTEXT://:9092, plaintext://:9093 are all named PLAINTEXT"],
            },
            Case {
                name: "advertised.listeners names twice",
                text: "broker.id=1\nlisteners=PLAINTEXT://:9092\n\
                    advertised.listeners=PLAINTEXT://a:9092,PLAINTEXT://b:9092\n",
                kafka: ANY,
                want: &[(DuplicateName, ADVERTISED_LISTENERS)],
                says: &["Each listener must have a different name"],
            },
            // --- parsing ---
            Case {
                name: "spaces around commas, IPv6 brackets, host names",
                text: "broker.id=1\nlisteners = PLAINTEXT://[::1]:9092 ,  SSL://b1.internal:9093 , SASL_SSL://:9094\n\
                    advertised.listeners=PLAINTEXT://[2001:db8::1]:9092, SSL://b1.internal:9093,SASL_SSL://b1:9094\n",
                kafka: ANY,
                want: &[],
                says: &[],
            },
            Case {
                name: "an entry Kafka cannot parse",
                text: "broker.id=1\nlisteners=PLAINTEXT://:9092,SSL//:9093,SASL_SSL://h:port\n",
                kafka: ANY,
                want: &[(EndpointSyntax, LISTENERS), (EndpointSyntax, LISTENERS)],
                says: &["Unable to parse SSL//:9093 to a broker endpoint", "Unable to parse SASL_SSL://h:port"],
            },
            Case {
                name: "a port the broker cannot bind",
                text: "broker.id=1\nlisteners=PLAINTEXT://:9092,SSL://:70000\n",
                kafka: ANY,
                want: &[(EndpointSyntax, LISTENERS)],
                says: &["port 70000 is outside 0-65535"],
            },
            Case {
                name: "an empty item between commas: 3.x skips it",
                text: "broker.id=1\nlisteners=PLAINTEXT://:9092,,SSL://:9093\n",
                kafka: V3_9_1,
                want: &[],
                says: &[],
            },
            Case {
                name: "an empty item between commas: 4.x refuses it",
                text: "process.roles=broker\ncontroller.listener.names=CONTROLLER\n\
                    listeners=PLAINTEXT://:9092,,SSL://:9093\n\
                    listener.security.protocol.map=PLAINTEXT:PLAINTEXT,SSL:SSL,CONTROLLER:SSL\n",
                kafka: V4_1,
                want: &[(EndpointSyntax, LISTENERS)],
                says: &["Configuration 'listeners' values must not be empty"],
            },
            // --- rule 2: security protocols ---
            Case {
                name: "map absent: a listener named after a protocol has one",
                text: "broker.id=1\nlisteners=PLAINTEXT://:9092,SSL://:9093\n",
                kafka: ANY,
                want: &[],
                says: &[],
            },
            Case {
                name: "map absent: PRIVATELINK has none",
                text: "broker.id=1\nlisteners=PLAINTEXT://:9092,PRIVATELINK://:9094\n\
                    advertised.listeners=PLAINTEXT://b:9092,PRIVATELINK://p:10003\n",
                kafka: ANY,
                want: &[(NoSecurityProtocol, PROTOCOL_MAP)],
                says: &["No security protocol defined for listener PRIVATELINK"],
            },
            Case {
                name: "explicit map without PLAINTEXT",
                text: "broker.id=1\nlisteners=PLAINTEXT://:9092,PRIVATELINK://:9094\n\
                    listener.security.protocol.map=PRIVATELINK:SSL\n\
                    inter.broker.listener.name=PRIVATELINK\n",
                kafka: ANY,
                want: &[(NoSecurityProtocol, PROTOCOL_MAP)],
                says: &["No security protocol defined for listener PLAINTEXT"],
            },
            Case {
                name: "map entry without a protocol, and an unknown protocol",
                text: "broker.id=1\nlisteners=PLAINTEXT://:9092,PRIVATELINK://:9094,EXTERNAL://:9095\n\
                    listener.security.protocol.map=PLAINTEXT:PLAINTEXT,PRIVATELINK,EXTERNAL:TLS\n",
                kafka: ANY,
                want: &[
                    (ProtocolMapSyntax, PROTOCOL_MAP),
                    (ProtocolMapSyntax, PROTOCOL_MAP),
                    (NoSecurityProtocol, PROTOCOL_MAP),
                    (NoSecurityProtocol, PROTOCOL_MAP),
                ],
                says: &[
                    "\"PRIVATELINK\" is not NAME:PROTOCOL",
                    "Invalid security protocol `TLS` defined in listener.security.protocol.map",
                    "No security protocol defined for listener PRIVATELINK",
                    "No security protocol defined for listener EXTERNAL",
                ],
            },
            Case {
                name: "protocol names are case-insensitive in the map",
                text: "broker.id=1\nlisteners=PLAINTEXT://:9092,privatelink://:9094\n\
                    listener.security.protocol.map=plaintext:plaintext, PrivateLink : ssl\n",
                kafka: ANY,
                want: &[],
                says: &[],
            },
            // --- rule 3: advertised.listeners ---
            Case {
                name: "advertised but not bound",
                text: "broker.id=1\nlisteners=PLAINTEXT://:9092\n\
                    advertised.listeners=PLAINTEXT://b:9092,PRIVATELINK://p:10003\n\
                    listener.security.protocol.map=PLAINTEXT:PLAINTEXT,PRIVATELINK:SSL\n",
                kafka: ANY,
                want: &[(AdvertisedNotInListeners, ADVERTISED_LISTENERS)],
                says: &["PRIVATELINK (PRIVATELINK://p:10003) is not in listeners"],
            },
            Case {
                name: "bound but not advertised is fine",
                text: "broker.id=1\nlisteners=PLAINTEXT://:9092,SSL://:9093\n\
                    advertised.listeners=PLAINTEXT://b:9092\n",
                kafka: ANY,
                want: &[],
                says: &[],
            },
            Case {
                name: "advertised.listeners set but empty",
                text: "broker.id=1\nlisteners=PLAINTEXT://:9092\nadvertised.listeners=\n",
                kafka: V3_9_1,
                want: &[(NoAdvertisedListener, ADVERTISED_LISTENERS)],
                says: &["There must be at least one broker advertised listener."],
            },
            Case {
                name: "0.0.0.0 advertised because advertised.listeners is absent",
                text: "broker.id=1\nlisteners=PLAINTEXT://0.0.0.0:9092\n",
                kafka: ANY,
                want: &[(AdvertisedWildcard, ADVERTISED_LISTENERS)],
                says: &["nonroutable meta-address 0.0.0.0"],
            },
            Case {
                name: "0.0.0.0 bound, a name advertised",
                text: "broker.id=1\nlisteners=PLAINTEXT://0.0.0.0:9092\n\
                    advertised.listeners=PLAINTEXT://b:9092\n",
                kafka: ANY,
                want: &[],
                says: &[],
            },
            // --- rule 4: inter-broker listener ---
            Case {
                name: "inter.broker.listener.name not advertised",
                text: "broker.id=1\nlisteners=INTERNAL://:9092,EXTERNAL://:9093\n\
                    advertised.listeners=EXTERNAL://e:9093\n\
                    listener.security.protocol.map=INTERNAL:PLAINTEXT,EXTERNAL:SSL\n\
                    inter.broker.listener.name=INTERNAL\n",
                kafka: ANY,
                want: &[(InterBrokerListener, INTER_BROKER_LISTENER_NAME)],
                says: &["inter.broker.listener.name must be a listener name defined in advertised.listeners: INTERNAL is not advertised"],
            },
            Case {
                name: "inter.broker.listener.name unset: the PLAINTEXT listener must exist",
                text: "broker.id=1\nlisteners=INTERNAL://:9092,EXTERNAL://:9093\n\
                    listener.security.protocol.map=INTERNAL:PLAINTEXT,EXTERNAL:SSL\n",
                kafka: ANY,
                want: &[(InterBrokerListener, INTER_BROKER_LISTENER_NAME)],
                says: &["PLAINTEXT is not advertised (inter.broker.listener.name is not set"],
            },
            Case {
                name: "inter.broker.listener.name set and advertised",
                text: "broker.id=1\nlisteners=INTERNAL://:9092,EXTERNAL://:9093\n\
                    listener.security.protocol.map=INTERNAL:PLAINTEXT,EXTERNAL:SSL\n\
                    inter.broker.listener.name=INTERNAL\n",
                kafka: ANY,
                want: &[],
                says: &[],
            },
            Case {
                name: "security.inter.broker.protocol names the listener",
                text: "broker.id=1\nlisteners=SSL://:9093\nsecurity.inter.broker.protocol=SSL\n",
                kafka: ANY,
                want: &[],
                says: &[],
            },
            Case {
                name: "both inter-broker keys set",
                text: "broker.id=1\nlisteners=INTERNAL://:9092\n\
                    listener.security.protocol.map=INTERNAL:PLAINTEXT\n\
                    inter.broker.listener.name=INTERNAL\nsecurity.inter.broker.protocol=PLAINTEXT\n",
                kafka: ANY,
                want: &[(InterBrokerListener, INTER_BROKER_PROTOCOL)],
                says: &["Only one of inter.broker.listener.name and security.inter.broker.protocol should be set."],
            },
            Case {
                name: "inter.broker.listener.name without a protocol",
                text: "broker.id=1\nlisteners=PLAINTEXT://:9092\ninter.broker.listener.name=REPLICATION\n",
                kafka: ANY,
                want: &[
                    (NoSecurityProtocol, PROTOCOL_MAP),
                    (InterBrokerListener, INTER_BROKER_LISTENER_NAME),
                ],
                says: &["Listener with name REPLICATION defined in inter.broker.listener.name not found in listener.security.protocol.map."],
            },
            // --- rule 5: KRaft ---
            Case {
                name: "KRaft broker-only with a controller listener in listeners",
                text: "process.roles=broker\ncontroller.listener.names=CONTROLLER\n\
                    listeners=PLAINTEXT://:9092,CONTROLLER://:9093\n\
                    advertised.listeners=PLAINTEXT://b:9092\n",
                kafka: ANY,
                want: &[(ControllerListenerNames, LISTENERS)],
                says: &["must not contain a value appearing in the 'listeners' configuration when running KRaft with just the broker role: CONTROLLER://:9093"],
            },
            Case {
                name: "KRaft broker-only, map absent: CONTROLLER gets PLAINTEXT implicitly",
                text: "process.roles=broker\ncontroller.listener.names=CONTROLLER\n\
                    listeners=PLAINTEXT://:9092\n",
                kafka: ANY,
                want: &[],
                says: &[],
            },
            Case {
                name: "KRaft broker-only, map absent, an SSL listener: no implicit mapping",
                text: "process.roles=broker\ncontroller.listener.names=CONTROLLER\n\
                    listeners=PLAINTEXT://:9092,SSL://:9093\n",
                kafka: ANY,
                want: &[(NoSecurityProtocol, PROTOCOL_MAP)],
                says: &["Controller listener with name CONTROLLER defined in controller.listener.names not found in listener.security.protocol.map"],
            },
            Case {
                name: "KRaft broker-only: an explicit map written without CONTROLLER",
                text: "process.roles=broker\ncontroller.listener.names=CONTROLLER\n\
                    listeners=PLAINTEXT://:9092,PRIVATELINK://:9094\n\
                    listener.security.protocol.map=PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL,PRIVATELINK:SSL\n",
                kafka: ANY,
                want: &[(NoSecurityProtocol, PROTOCOL_MAP)],
                says: &["Controller listener with name CONTROLLER"],
            },
            Case {
                name: "ZooKeeper mode with controller.listener.names",
                text: "broker.id=1\ncontroller.listener.names=CONTROLLER\nlisteners=PLAINTEXT://:9092\n",
                kafka: ANY,
                want: &[(ControllerListenerNames, CONTROLLER_LISTENER_NAMES)],
                says: &["controller.listener.names must be empty when not running in KRaft mode: [CONTROLLER]"],
            },
            Case {
                name: "ZooKeeper migration requires controller.listener.names",
                text: "broker.id=1\nzookeeper.metadata.migration.enable=true\nlisteners=PLAINTEXT://:9092\n",
                kafka: ANY,
                want: &[(ControllerListenerNames, CONTROLLER_LISTENER_NAMES)],
                says: &["must not be empty when running in ZooKeeper migration mode"],
            },
            Case {
                name: "KRaft combined: the controller listener is not in listeners",
                text: "process.roles=broker,controller\ncontroller.listener.names=CONTROLLER\n\
                    listeners=PLAINTEXT://:9092,PRIVATELINK://:9094\n\
                    listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,PRIVATELINK:SSL\n\
                    advertised.listeners=PLAINTEXT://b:9092,PRIVATELINK://p:10003\n",
                kafka: ANY,
                want: &[(ControllerListenerNames, LISTENERS)],
                says: &["CONTROLLER is not in listeners"],
            },
            Case {
                name: "KRaft combined without controller.listener.names",
                text: "process.roles=broker,controller\nlisteners=PLAINTEXT://:9092\n",
                kafka: ANY,
                want: &[(ControllerListenerNames, CONTROLLER_LISTENER_NAMES)],
                says: &["must contain at least one value appearing in the 'listeners' configuration when running the KRaft controller role"],
            },
            Case {
                name: "controller-only node with a PRIVATELINK listener",
                text: "process.roles=controller\ncontroller.listener.names=CONTROLLER\n\
                    listeners=CONTROLLER://:9093,PRIVATELINK://:9094\n\
                    listener.security.protocol.map=CONTROLLER:PLAINTEXT,PRIVATELINK:SSL\n",
                kafka: ANY,
                want: &[(ControllerOnlyListeners, LISTENERS)],
                says: &["must only contain KRaft controller listeners from controller.listener.names when process.roles=controller: PRIVATELINK://:9094"],
            },
            Case {
                name: "controller-only node advertising its listener: 3.8 refuses",
                text: "process.roles=controller\ncontroller.listener.names=CONTROLLER\n\
                    listeners=CONTROLLER://:9093\nadvertised.listeners=CONTROLLER://c1:9093\n",
                kafka: V3_8,
                want: &[(ControllerOnlyListeners, ADVERTISED_LISTENERS)],
                says: &["The advertised.listeners config must be empty when process.roles=controller"],
            },
            Case {
                name: "controller-only node advertising its listener: 3.9 accepts (KIP-853)",
                text: "process.roles=controller\ncontroller.listener.names=CONTROLLER\n\
                    listeners=CONTROLLER://:9093\nadvertised.listeners=CONTROLLER://c1:9093\n",
                kafka: V3_9_1,
                want: &[],
                says: &[],
            },
            Case {
                name: "combined node advertising its controller listener: 3.8 refuses",
                text: "process.roles=broker,controller\ncontroller.listener.names=CONTROLLER\n\
                    listeners=PLAINTEXT://:9092,CONTROLLER://:9093\n\
                    advertised.listeners=PLAINTEXT://b:9092,CONTROLLER://c:9093\n",
                kafka: V3_8,
                want: &[(ControllerAdvertised, ADVERTISED_LISTENERS)],
                says: &["must not contain KRaft controller listeners from controller.listener.names when process.roles contains the broker role"],
            },
            Case {
                name: "combined node advertising its controller listener: 3.9 accepts (KIP-853)",
                text: "process.roles=broker,controller\ncontroller.listener.names=CONTROLLER\n\
                    listeners=PLAINTEXT://:9092,CONTROLLER://:9093\n\
                    advertised.listeners=PLAINTEXT://b:9092,CONTROLLER://c:9093\n",
                kafka: V3_9_1,
                want: &[],
                says: &[],
            },
            Case {
                name: "combined node advertising its controller listener: unknown release",
                text: "process.roles=broker,controller\ncontroller.listener.names=CONTROLLER\n\
                    listeners=PLAINTEXT://:9092,CONTROLLER://:9093\n\
                    advertised.listeners=PLAINTEXT://b:9092,CONTROLLER://c:9093\n",
                kafka: ANY,
                want: &[(ControllerAdvertised, ADVERTISED_LISTENERS)],
                says: &["Kafka 3.8 and earlier"],
            },
            Case {
                name: "only the controller listener is bound on a combined node",
                text: "process.roles=broker,controller\ncontroller.listener.names=CONTROLLER\n\
                    listeners=CONTROLLER://:9093\n",
                kafka: V4_1,
                want: &[(NoAdvertisedListener, LISTENERS)],
                says: &["There must be at least one broker advertised listener. Perhaps all listeners appear in controller.listener.names?"],
            },
            Case {
                name: "combined, CONTROLLER on 0.0.0.0 not advertised: 3.9.0 refuses",
                text: "process.roles=broker,controller\ncontroller.listener.names=CONTROLLER\n\
                    listeners=PLAINTEXT://:9092,CONTROLLER://0.0.0.0:9093\n\
                    advertised.listeners=PLAINTEXT://b:9092\n",
                kafka: V3_9_0,
                want: &[(AdvertisedWildcard, ADVERTISED_LISTENERS)],
                says: &["CONTROLLER://0.0.0.0:9093 (a controller listener that is not advertised; Kafka 3.9.0 only"],
            },
            Case {
                name: "combined, CONTROLLER on 0.0.0.0 not advertised: 3.9.1 accepts",
                text: "process.roles=broker,controller\ncontroller.listener.names=CONTROLLER\n\
                    listeners=PLAINTEXT://:9092,CONTROLLER://0.0.0.0:9093\n\
                    advertised.listeners=PLAINTEXT://b:9092\n",
                kafka: V3_9_1,
                want: &[],
                says: &[],
            },
            Case {
                name: "Kafka's 4.0 sample config advertises CONTROLLER: 4.x accepts it",
                text: KAFKA_4_SAMPLE,
                kafka: V4_1,
                want: &[],
                says: &[],
            },
            Case {
                name: "Kafka's 4.0 sample config, release unknown: 3.8 would refuse it",
                text: KAFKA_4_SAMPLE,
                kafka: ANY,
                want: &[(ControllerAdvertised, ADVERTISED_LISTENERS)],
                says: &["CONTROLLER://localhost:9093"],
            },
            Case {
                name: "control.plane.listener.name in KRaft (3.x)",
                text: "process.roles=broker\ncontroller.listener.names=CONTROLLER\n\
                    listeners=PLAINTEXT://:9092,CP://:9095\ncontrol.plane.listener.name=CP\n\
                    listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CP:PLAINTEXT,CONTROLLER:PLAINTEXT\n",
                kafka: V3_8,
                want: &[(ControlPlaneListener, CONTROL_PLANE_LISTENER_NAME)],
                says: &["control.plane.listener.name is not supported in KRaft mode."],
            },
            Case {
                name: "control.plane.listener.name equal to the inter-broker listener (ZooKeeper)",
                text: "broker.id=1\nlisteners=PLAINTEXT://:9092\ncontrol.plane.listener.name=PLAINTEXT\n",
                kafka: ANY,
                want: &[(ControlPlaneListener, CONTROL_PLANE_LISTENER_NAME)],
                says: &["should have a different value from the inter broker listener name"],
            },
            Case {
                name: "early.start.listeners names a listener that is gone",
                text: "broker.id=1\nlisteners=PLAINTEXT://:9092\nearly.start.listeners=PRIVATELINK\n",
                kafka: ANY,
                want: &[(EarlyStartListeners, EARLY_START_LISTENERS)],
                says: &["early.start.listeners contains listener PRIVATELINK, but this is not contained in listeners or controller.listener.names"],
            },
            Case {
                name: "early.start.listeners names a bound listener",
                text: "broker.id=1\nlisteners=PLAINTEXT://:9092\nearly.start.listeners=PLAINTEXT\n",
                kafka: ANY,
                want: &[],
                says: &[],
            },
        ]
    }

    #[test]
    fn rules_table() {
        for case in cases() {
            let got = run(case.text, case.kafka);
            assert_eq!(rules(&got), case.want, "{}: got {:#?}", case.name, got);
            for (v, says) in got.iter().zip(case.says) {
                assert!(
                    v.message.contains(says),
                    "{}: {:?} should contain {:?}",
                    case.name,
                    v.message,
                    says
                );
            }
            for v in &got {
                assert!(!v.message.contains('\n'), "{}: one line: {v}", case.name);
            }
        }
    }

    #[test]
    fn the_agents_edit_of_the_projects_files_introduces_nothing() {
        for text in [
            SERVER_PROPERTIES,
            PASS_PROPS,
            ZOOKEEPER_EDITED,
            KAFKA_4_SAMPLE,
        ] {
            let after = apply_listener(text, &edit())
                .unwrap()
                .unwrap_or(text.to_string());
            assert_eq!(introduced_by(text, &after).unwrap(), [], "{after}");
        }
        // The hand-written texts are what the editor writes.
        assert_eq!(
            apply_listener(SERVER_PROPERTIES, &edit()).unwrap().unwrap(),
            SERVER_PROPERTIES_EDITED
        );
        assert_eq!(
            apply_listener(PASS_PROPS, &edit()).unwrap().unwrap(),
            PASS_PROPS_EDITED
        );
        // PROPS already lacks controller.listener.names: reported, not introduced.
        let before = run(PASS_PROPS, ANY);
        assert_eq!(
            rules(&before),
            [(Rule::ControllerListenerNames, CONTROLLER_LISTENER_NAMES)]
        );
        assert_eq!(introduced(&before, &run(PASS_PROPS_EDITED, ANY)), []);
    }

    #[test]
    fn the_motivating_edit_is_refused() {
        let before = "broker.id=1\n\
            listeners=PLAINTEXT://:9092,EXTERNAL://:9094\n\
            advertised.listeners=PLAINTEXT://b1:9092,EXTERNAL://e1.example.com:9094\n\
            listener.security.protocol.map=PLAINTEXT:PLAINTEXT,EXTERNAL:SSL\n";
        assert_eq!(run(before, ANY), []);
        let after = apply_listener(before, &edit()).unwrap().unwrap();
        assert!(
            after.contains("listeners=PLAINTEXT://:9092,EXTERNAL://:9094,PRIVATELINK://:9094\n")
        );
        let new = introduced_by(before, &after).unwrap();
        assert_eq!(rules(&new), [(Rule::DuplicatePort, LISTENERS)]);
        assert_eq!(
            new[0].to_string(),
            "listeners: Each listener must have a different port: EXTERNAL://:9094, \
             PRIVATELINK://:9094 share port 9094"
        );
        // The same on every release.
        for kafka in [V3_5, V3_6, V3_9_1, V4_1] {
            let props = Properties::parse(&after).unwrap();
            assert_eq!(
                rules(&check_for(&props, kafka)),
                [(Rule::DuplicatePort, LISTENERS)]
            );
        }
    }

    #[test]
    fn violations_already_there_are_not_introduced() {
        // A duplicate advertised name exists before; the edit adds a port clash.
        let before = "broker.id=1\nlisteners=PLAINTEXT://:9092,EXTERNAL://:9094\n\
            advertised.listeners=PLAINTEXT://a:9092,PLAINTEXT://b:9092,EXTERNAL://e:9094\n\
            listener.security.protocol.map=PLAINTEXT:PLAINTEXT,EXTERNAL:SSL\n";
        let after = "broker.id=1\nlisteners=PLAINTEXT://:9092,EXTERNAL://:9094,PRIVATELINK://:9094\n\
            advertised.listeners=PLAINTEXT://a:9092,PLAINTEXT://b:9092,EXTERNAL://e:9094,PRIVATELINK://p:10003\n\
            listener.security.protocol.map=PLAINTEXT:PLAINTEXT,EXTERNAL:SSL,PRIVATELINK:SSL\n";
        let (b, a) = (run(before, ANY), run(after, ANY));
        assert_eq!(rules(&b), [(Rule::DuplicateName, ADVERTISED_LISTENERS)]);
        assert_eq!(a.len(), 2);
        assert_eq!(
            rules(&introduced(&b, &a)),
            [(Rule::DuplicatePort, LISTENERS)]
        );
        // Nothing is introduced by an unchanged file.
        assert_eq!(introduced(&a, &a), []);
    }

    #[test]
    fn endpoint_parsing_follows_kafkas_regex() {
        let ok: &[(&str, &str, Option<&str>, i64)] = &[
            ("PLAINTEXT://:9092", "PLAINTEXT", None, 9092),
            (
                "privatelink://host.example:10003",
                "PRIVATELINK",
                Some("host.example"),
                10003,
            ),
            ("SSL://[::1]:9093", "SSL", Some("::1"), 9093),
            ("SSL://::1:9093", "SSL", Some("::1"), 9093),
            (
                "SSL://[fe80::1%eth0]:9093",
                "SSL",
                Some("fe80::1%eth0"),
                9093,
            ),
            ("A://0.0.0.0:0", "A", Some("0.0.0.0"), 0),
            ("A://h:-1", "A", Some("h"), -1),
        ];
        for (entry, name, host, port) in ok {
            let e = parse_endpoint(entry).unwrap();
            assert_eq!(
                (e.name.as_str(), e.host.as_deref(), e.port),
                (*name, *host, *port)
            );
        }
        for bad in [
            "PLAINTEXT:9092",
            "A://h",
            "A://h:",
            "A://h/x:1",
            "A://h:1x",
            "A://h:99999999999",
        ] {
            assert!(parse_endpoint(bad).is_err(), "{bad}");
        }
        assert_eq!(split_list(" A://:1 ,B://:2,\t"), ["A://:1", "B://:2", ""]);
        assert!(split_list("  ").is_empty());
    }

    #[test]
    fn ip_addresses_like_commons_validator() {
        for v4 in ["127.0.0.1", "0.0.0.0", "255.255.255.255", "10.0.0.1"] {
            assert!(is_ipv4(v4) && !is_ipv6(v4), "{v4}");
        }
        for not_v4 in ["256.0.0.1", "01.2.3.4", "1.2.3", "a.b.c.d", "1.2.3.4.5", ""] {
            assert!(!is_ipv4(not_v4), "{not_v4}");
        }
        for v6 in [
            "::1",
            "::",
            "2001:db8::1",
            "fe80::1%eth0",
            "::ffff:10.0.0.1",
        ] {
            assert!(is_ipv6(v6) && !is_ipv4(v6), "{v6}");
        }
        for not_ip in ["localhost", "b1.internal", "fe80::1%", ":::"] {
            assert!(!is_ip(not_ip), "{not_ip}");
        }
    }

    #[test]
    fn messages_name_the_setting_and_serialize() {
        let v = &run("broker.id=1\nlisteners=A://:1,B://:1\nlistener.security.protocol.map=A:SSL,B:SSL\ninter.broker.listener.name=A\n", ANY)[0];
        let json = serde_json::to_value(v).unwrap();
        assert_eq!(json["rule"], "duplicate_port");
        assert_eq!(json["setting"], "listeners");
        assert_eq!(KafkaVersion::new(3, 9, 1).to_string(), "3.9.1");
    }
}
