//! The running Kafka cluster: what the agent reads and changes after it rewrites `server.properties`.
//!
//! [`KafkaCluster`] is the seam between the restart logic and Kafka's admin protocol; [`RdKafka`] is
//! the thin real adapter over librdkafka (the `rdkafka` crate). It answers four questions: is a
//! broker answering on the bootstrap servers at all ([`KafkaCluster::probe`], fast when nothing
//! listens), what does the cluster look like ([`KafkaCluster::snapshot`]: brokers, controller,
//! partitions with leader/replicas/ISR and the `min.insync.replicas` that gate a rolling restart),
//! what does a broker advertise now, and can it be told to advertise something else without a
//! restart ([`KafkaCluster::set_advertised_listeners`], a per-broker dynamic config update).
//!
//! Every failure names the Kafka operation, the bootstrap servers and the broker or topic it was
//! about. Blocking librdkafka calls run on tokio's blocking pool.

use std::future::Future;
use std::time::Duration;

mod admin;
mod ffi;
pub mod process;

pub use admin::RdKafka;
use process::ProcessState;

/// Kafka's default `min.insync.replicas`, used when the broker does not report its own.
pub const KAFKA_DEFAULT_MIN_INSYNC_REPLICAS: i32 = 1;

/// How long [`RdKafka`] waits for one admin or metadata request unless told otherwise.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Time [`KafkaCluster::probe`] gives the TCP connect to the bootstrap servers.
const PROBE_CONNECT_TIMEOUT: Duration = Duration::from_millis(1000);

/// A broker as the cluster metadata lists it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BrokerNode {
    /// Broker (node) id.
    pub id: i32,
    /// Advertised host of the listener the client is connected through.
    pub host: String,
    /// Advertised port of that listener.
    pub port: u16,
}

/// One partition's replication state.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PartitionState {
    /// Topic name.
    pub topic: String,
    /// Partition index.
    pub partition: i32,
    /// Leader broker id, `-1` when the partition has no leader.
    pub leader: i32,
    /// Assigned replicas (broker ids).
    pub replicas: Vec<i32>,
    /// In-sync replicas (broker ids).
    pub isr: Vec<i32>,
}

/// A topic and its partitions.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TopicState {
    /// Topic name.
    pub name: String,
    /// Kafka-internal (`__consumer_offsets`, `__transaction_state`, any `__`-prefixed name):
    /// librdkafka's metadata does not carry the broker's flag, so the name decides.
    pub internal: bool,
    /// The topic's own `min.insync.replicas`; `None` when it inherits the broker default.
    pub min_insync_replicas: Option<i32>,
    /// Partitions, in the order the broker listed them.
    pub partitions: Vec<PartitionState>,
}

/// The cluster as one Metadata and one DescribeConfigs round trip saw it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ClusterSnapshot {
    /// Live brokers (Kafka lists only registered, unfenced brokers).
    pub brokers: Vec<BrokerNode>,
    /// Active controller, when the cluster names one.
    pub controller_id: Option<i32>,
    /// All topics, internal ones included.
    pub topics: Vec<TopicState>,
    /// The broker-level `min.insync.replicas` (Kafka's default 1 when the broker does not say).
    pub default_min_insync_replicas: i32,
    /// Topics whose configs the admin principal may not read (DescribeConfigs answered
    /// `TOPIC_AUTHORIZATION_FAILED`: no DescribeConfigs ACL): their `min.insync.replicas` is not
    /// known. Empty from [`KafkaCluster::partitions`], which reads no config.
    pub unreadable_configs: Vec<String>,
}

impl ClusterSnapshot {
    /// The `min.insync.replicas` in force for `topic`.
    pub fn min_insync_replicas(&self, topic: &TopicState) -> i32 {
        topic
            .min_insync_replicas
            .unwrap_or(self.default_min_insync_replicas)
    }

    /// The broker with this id, if it is live.
    pub fn broker(&self, id: i32) -> Option<&BrokerNode> {
        self.brokers.iter().find(|b| b.id == id)
    }
}

/// A failed Kafka call.
#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    /// The librdkafka client could not be created (bad property, bad value).
    #[error("creating a Kafka admin client for {bootstrap} failed: {message}")]
    Client {
        /// Bootstrap servers.
        bootstrap: String,
        /// librdkafka's reason.
        message: String,
    },
    /// Metadata request failed or answered something unusable.
    #[error("Metadata from {bootstrap} failed: {message}")]
    Metadata {
        /// Bootstrap servers.
        bootstrap: String,
        /// librdkafka's reason.
        message: String,
    },
    /// DescribeConfigs of a broker failed.
    #[error("DescribeConfigs of broker {broker_id} via {bootstrap} failed: {message}")]
    DescribeBrokerConfigs {
        /// Bootstrap servers.
        bootstrap: String,
        /// Broker whose configs were asked for.
        broker_id: i32,
        /// librdkafka's or the broker's reason.
        message: String,
    },
    /// DescribeConfigs of a topic failed.
    #[error("DescribeConfigs of topic {topic} via {bootstrap} failed: {message}")]
    DescribeTopicConfigs {
        /// Bootstrap servers.
        bootstrap: String,
        /// Topic whose configs were asked for.
        topic: String,
        /// librdkafka's or the broker's reason.
        message: String,
    },
    /// IncrementalAlterConfigs of `advertised.listeners` failed.
    #[error(
        "IncrementalAlterConfigs of advertised.listeners on broker {broker_id} via {bootstrap} \
         failed: {message}"
    )]
    AlterAdvertisedListeners {
        /// Bootstrap servers.
        bootstrap: String,
        /// Broker being changed.
        broker_id: i32,
        /// librdkafka's or the broker's reason.
        message: String,
    },
}

/// Whether a broker answers on the bootstrap servers.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Liveness {
    /// Nothing accepts a TCP connection: Kafka is not running and reads the file when it starts.
    NotListening,
    /// Something accepts connections and answers Kafka's Metadata request.
    Answering,
    /// Nothing accepts a TCP connection, but Kafka's process runs (the service manager says
    /// so, see [`process`]): it is starting (log recovery) or stopping. Not "not running": a
    /// restart stays pending and is looked at again.
    Starting {
        /// Who says it runs (`kafka.service is activating`).
        how: String,
    },
    /// Something accepts connections but does not answer (log recovery, a GC pause, an admin
    /// client misconfigured for SSL/SASL): a running broker the agent cannot see. Never treated
    /// as "not running", which would leave the broker on its old endpoint for good.
    Unreachable {
        /// The bootstrap servers.
        bootstrap: String,
        /// Why the Metadata request failed.
        cause: String,
    },
}

/// The Kafka operations the agent needs.
pub trait KafkaCluster: Send + Sync {
    /// Whether anything answers Kafka protocol on the bootstrap servers: a TCP connect (1 s per
    /// bootstrap address; refused within milliseconds), then a Metadata request (1.5 s).
    fn probe(&self) -> impl Future<Output = Liveness> + Send;

    /// Brokers, controller, topics with partition state, and `min.insync.replicas`.
    fn snapshot(&self) -> impl Future<Output = Result<ClusterSnapshot, KafkaError>> + Send;

    /// Brokers, controller and topics with partition state, without any config (`min.insync`
    /// left to the broker default): one Metadata request, for polls that need only partition
    /// state (is the restarted broker back and in sync). The default reads a whole snapshot.
    fn partitions(&self) -> impl Future<Output = Result<ClusterSnapshot, KafkaError>> + Send {
        self.snapshot()
    }

    /// The broker's current advertised listeners as the broker reports them: the
    /// `advertised.listeners` value from DescribeConfigs of the broker
    /// (`NAME://host:port,...`). A broker that does not report the key (tansu) is the
    /// single-listener case: the answer is then its Metadata endpoint as `host:port`, with no
    /// `NAME://`. `None` when the broker is not in the cluster metadata.
    fn advertised_listeners(
        &self,
        broker_id: i32,
    ) -> impl Future<Output = Result<Option<String>, KafkaError>> + Send;

    /// Per-broker dynamic update of `advertised.listeners` (IncrementalAlterConfigs, SET, on the
    /// BROKER resource). Kafka accepts it only for listener names the broker already has; a
    /// broker may also accept it and change nothing (tansu does), so callers confirm the effect
    /// with [`KafkaCluster::advertised_listeners`] or the Metadata endpoint.
    fn set_advertised_listeners(
        &self,
        broker_id: i32,
        value: &str,
    ) -> impl Future<Output = Result<(), KafkaError>> + Send;

    /// The broker's `broker.rack` as it runs with it (DescribeConfigs), `None` when it reports
    /// none. The default answers `None`: a cluster view that cannot tell (tansu reports no broker
    /// configs) never triggers a rack restart.
    fn broker_rack(
        &self,
        broker_id: i32,
    ) -> impl Future<Output = Result<Option<String>, KafkaError>> + Send {
        let _ = broker_id;
        async { Ok(None) }
    }

    /// Removes a per-broker dynamic `advertised.listeners` override (IncrementalAlterConfigs
    /// DELETE), so that the value in `server.properties` is the one the broker uses after its next
    /// start: a dynamic override (stored by ZooKeeper-mode clusters) would otherwise shadow the
    /// file. Returns whether there was one. ZooKeeper mode only: never called for KRaft.
    fn clear_dynamic_advertised_listeners(
        &self,
        broker_id: i32,
    ) -> impl Future<Output = Result<bool, KafkaError>> + Send;
}

/// The first of `addresses` that accepts a TCP connection.
async fn first_accepting(addresses: &[String]) -> Option<&String> {
    for address in addresses {
        let connect = tokio::net::TcpStream::connect(address.as_str());
        if let Ok(Ok(_)) = tokio::time::timeout(PROBE_CONNECT_TIMEOUT, connect).await {
            return Some(address);
        }
    }
    None
}

/// Whether the broker runs, as far as can be told: [`KafkaCluster::probe`] on the bootstrap
/// servers; when nothing accepts there, the addresses the broker binds (`bound`, from
/// `listeners`: see [`crate::properties::bound_addresses`]) and what the service manager says
/// of its process (`process`, asked only then). See [`without_bootstrap`].
pub async fn liveness<K: KafkaCluster, F: Future<Output = ProcessState>>(
    kafka: &K,
    bootstrap: &str,
    bound: &[String],
    process: F,
) -> Liveness {
    match kafka.probe().await {
        Liveness::NotListening => {}
        other => return other,
    }
    let listening = first_accepting(bound).await.cloned();
    without_bootstrap(bootstrap, listening, process.await)
}

/// What "nothing accepts on the bootstrap servers" means (pure): something accepting on an
/// address the broker binds (`listening`) is a running broker the bootstrap servers miss
/// (`listeners` binds a specific address): unreachable, with the fix; else a process the service
/// manager says runs is starting; else (stopped, or nothing to ask) not running.
pub fn without_bootstrap(
    bootstrap: &str,
    listening: Option<String>,
    process: ProcessState,
) -> Liveness {
    if let Some(address) = listening {
        return Liveness::Unreachable {
            bootstrap: bootstrap.to_string(),
            cause: format!(
                "nothing accepts connections there, but the broker listens on {address} (listeners in server.properties): set restart.bootstrap_servers to an address it binds"
            ),
        };
    }
    match process {
        ProcessState::Running { how } => Liveness::Starting { how },
        ProcessState::Stopped { .. } | ProcessState::Unknown { .. } => Liveness::NotListening,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_on_the_bootstrap_servers_is_read_with_the_process_and_the_bound_addresses() {
        let running = || ProcessState::Running {
            how: "kafka.service is activating".into(),
        };
        let stopped = || ProcessState::Stopped {
            how: "kafka.service is inactive".into(),
        };
        let unknown = || ProcessState::Unknown { why: "no".into() };
        assert_eq!(
            without_bootstrap("127.0.0.1:9092", None, running()),
            Liveness::Starting {
                how: "kafka.service is activating".into()
            }
        );
        assert_eq!(
            without_bootstrap("127.0.0.1:9092", None, stopped()),
            Liveness::NotListening
        );
        assert_eq!(
            without_bootstrap("127.0.0.1:9092", None, unknown()),
            Liveness::NotListening
        );
        // Something accepts where the broker binds: running, whatever the process check says.
        for process in [running(), stopped(), unknown()] {
            match without_bootstrap("127.0.0.1:9092", Some("10.0.0.5:9092".into()), process) {
                Liveness::Unreachable { bootstrap, cause } => {
                    assert_eq!(bootstrap, "127.0.0.1:9092");
                    assert!(cause.contains("listens on 10.0.0.5:9092"), "{cause}");
                    assert!(cause.contains("restart.bootstrap_servers"), "{cause}");
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn snapshot_min_insync_falls_back_to_the_broker_default() {
        let topic = |min| TopicState {
            name: "t".to_string(),
            internal: false,
            min_insync_replicas: min,
            partitions: vec![],
        };
        let snapshot = ClusterSnapshot {
            brokers: vec![],
            controller_id: None,
            topics: vec![],
            default_min_insync_replicas: 2,
            unreadable_configs: vec![],
        };
        assert_eq!(snapshot.min_insync_replicas(&topic(None)), 2);
        assert_eq!(snapshot.min_insync_replicas(&topic(Some(3))), 3);
    }
}
