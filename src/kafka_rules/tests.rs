//! The rules table (each rule's cases run through `check_for` at every release the rule
//! depends on), the agent's own edits checked against the project's sample files, and the
//! shape of a violation.

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
    assert!(after.contains("listeners=PLAINTEXT://:9092,EXTERNAL://:9094,PRIVATELINK://:9094\n"));
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
fn messages_name_the_setting_and_serialize() {
    let v = &run("broker.id=1\nlisteners=A://:1,B://:1\nlistener.security.protocol.map=A:SSL,B:SSL\ninter.broker.listener.name=A\n", ANY)[0];
    let json = serde_json::to_value(v).unwrap();
    assert_eq!(json["rule"], "duplicate_port");
    assert_eq!(json["setting"], "listeners");
    assert_eq!(KafkaVersion::new(3, 9, 1).to_string(), "3.9.1");
}
