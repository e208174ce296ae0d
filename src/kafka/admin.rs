//! [`RdKafka`]: the real [`KafkaCluster`] over librdkafka's admin client (the `rdkafka` crate),
//! and the helpers that turn its Metadata and DescribeConfigs answers into the seam's types.
//!
//! Separate from the seam (`kafka/mod.rs`), which says what the agent asks of Kafka; this file
//! says how librdkafka answers it. The calls the `rdkafka` crate does not wrap are in `ffi.rs`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, ConfigEntry, ConfigSource, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;
use rdkafka::metadata::Metadata;
use rdkafka::ClientConfig;

use super::{
    ffi, first_accepting, BrokerNode, ClusterSnapshot, KafkaCluster, KafkaError, Liveness,
    PartitionState, TopicState, DEFAULT_REQUEST_TIMEOUT, KAFKA_DEFAULT_MIN_INSYNC_REPLICAS,
};

/// Time [`KafkaCluster::probe`] gives the Metadata request once TCP connected.
const PROBE_METADATA_TIMEOUT: Duration = Duration::from_millis(1500);

/// [`KafkaCluster`] over librdkafka's admin client.
#[derive(Clone)]
pub struct RdKafka {
    admin: Arc<AdminClient<DefaultClientContext>>,
    bootstrap: String,
    timeout: Duration,
}

impl std::fmt::Debug for RdKafka {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RdKafka")
            .field("bootstrap", &self.bootstrap)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl RdKafka {
    /// An admin client for `bootstrap_servers` (`host:port[,host:port…]`). `extra` holds
    /// librdkafka properties (`security.protocol`, `ssl.*`, `sasl.*`, …); they override this
    /// module's defaults. No connection is made until the first call.
    pub fn new(
        bootstrap_servers: &str,
        extra: &BTreeMap<String, String>,
    ) -> Result<Self, KafkaError> {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", bootstrap_servers)
            .set("client.id", "kplink-agent")
            // librdkafka backs off reconnects up to 10 s by default; after a broker restart the
            // agent polls for it and should see it within a second of it listening.
            .set("reconnect.backoff.max.ms", "1000")
            // A blackholed address (no RST) must not hold a call for librdkafka's default 30 s.
            .set("socket.connection.setup.timeout.ms", "5000");
        for (key, value) in extra {
            config.set(key, value);
        }
        let admin: AdminClient<DefaultClientContext> =
            config.create().map_err(|e| KafkaError::Client {
                bootstrap: bootstrap_servers.to_string(),
                message: e.to_string(),
            })?;
        Ok(RdKafka {
            admin: Arc::new(admin),
            bootstrap: bootstrap_servers.to_string(),
            timeout: DEFAULT_REQUEST_TIMEOUT,
        })
    }

    /// Sets how long one admin or metadata request may take (default 10 s).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The bootstrap servers this client was built with.
    pub fn bootstrap_servers(&self) -> &str {
        &self.bootstrap
    }

    fn admin_options(&self) -> AdminOptions {
        AdminOptions::new()
            .request_timeout(Some(self.timeout))
            .operation_timeout(Some(self.timeout))
    }

    fn metadata_error(&self, message: impl Into<String>) -> KafkaError {
        KafkaError::Metadata {
            bootstrap: self.bootstrap.clone(),
            message: message.into(),
        }
    }

    /// Metadata for all topics plus the controller id, off the async runtime.
    async fn metadata(&self, timeout: Duration) -> Result<(Metadata, Option<i32>), KafkaError> {
        let admin = Arc::clone(&self.admin);
        let joined = tokio::task::spawn_blocking(move || {
            let metadata = admin.inner().fetch_metadata(None, timeout)?;
            let controller = ffi::cached_controller_id(&admin);
            Ok::<_, rdkafka::error::KafkaError>((metadata, controller))
        })
        .await;
        match joined {
            Ok(Ok(found)) => Ok(found),
            Ok(Err(e)) => Err(self.metadata_error(e.to_string())),
            Err(e) => Err(self.metadata_error(format!("metadata task failed: {e}"))),
        }
    }

    async fn describe_broker(
        &self,
        broker_id: i32,
        keys: &[&str],
    ) -> Result<BTreeMap<String, ConfigEntry>, KafkaError> {
        let spec = [ResourceSpecifier::Broker(broker_id)];
        let err = |message: String| KafkaError::DescribeBrokerConfigs {
            bootstrap: self.bootstrap.clone(),
            broker_id,
            message,
        };
        let results = self
            .admin
            .describe_configs(&spec, &self.admin_options())
            .await
            .map_err(|e| err(e.to_string()))?;
        let mut found = BTreeMap::new();
        for result in results {
            let resource = result.map_err(|code| err(format!("{code:?}")))?;
            for entry in resource.entries {
                if keys.contains(&entry.name.as_str()) {
                    found.insert(entry.name.clone(), entry);
                }
            }
        }
        Ok(found)
    }

    async fn topic_min_insync(
        &self,
        topics: &[String],
        default: i32,
    ) -> Result<(BTreeMap<String, i32>, Vec<String>), KafkaError> {
        let mut overrides = BTreeMap::new();
        if topics.is_empty() {
            return Ok((overrides, Vec::new()));
        }
        let specs: Vec<ResourceSpecifier<'_>> = topics
            .iter()
            .map(|t| ResourceSpecifier::Topic(t.as_str()))
            .collect();
        let results = self
            .admin
            .describe_configs(&specs, &self.admin_options())
            .await
            .map_err(|e| KafkaError::DescribeTopicConfigs {
                bootstrap: self.bootstrap.clone(),
                topic: topics.join(","),
                message: e.to_string(),
            })?;
        let mut unreadable = Vec::new();
        for (topic, result) in topics.iter().zip(results) {
            let resource = match result {
                Ok(r) => r,
                // Kafka answers per resource (`KafkaApis.handleDescribeConfigsRequest`:
                // `TOPIC_AUTHORIZATION_FAILED` for a topic without DescribeConfigs for this
                // principal): the topic stays in the gate, its own min.insync unknown.
                Err(rdkafka::types::RDKafkaErrorCode::TopicAuthorizationFailed) => {
                    unreadable.push(topic.clone());
                    continue;
                }
                Err(code) => {
                    return Err(KafkaError::DescribeTopicConfigs {
                        bootstrap: self.bootstrap.clone(),
                        topic: topic.clone(),
                        message: format!("{code:?}"),
                    })
                }
            };
            if let Some(value) = topic_override(resource.get("min.insync.replicas"), default) {
                overrides.insert(topic.clone(), value);
            }
        }
        Ok((overrides, unreadable))
    }
}

/// The topics of a Metadata answer with their partition state; `overrides` are topics' own
/// `min.insync.replicas`. Kafka lists, in an all-topics Metadata answer, only the topics the
/// principal may DESCRIBE (`KafkaApis.handleTopicMetadataRequest` filters the others out
/// silently), so the gate sees only those.
fn topic_states(metadata: &Metadata, overrides: &BTreeMap<String, i32>) -> Vec<TopicState> {
    metadata
        .topics()
        .iter()
        .map(|t| TopicState {
            name: t.name().to_string(),
            internal: t.name().starts_with("__"),
            min_insync_replicas: overrides.get(t.name()).copied(),
            partitions: t
                .partitions()
                .iter()
                .map(|p| PartitionState {
                    topic: t.name().to_string(),
                    partition: p.id(),
                    leader: p.leader(),
                    replicas: p.replicas().to_vec(),
                    isr: p.isr().to_vec(),
                })
                .collect(),
        })
        .collect()
}

/// A topic's own `min.insync.replicas` from its DescribeConfigs entry.
///
/// Kafka reports every config of a topic with where its value comes from: `DYNAMIC_TOPIC_CONFIG`
/// is the topic's own, the broker-level sources mean inherited. tansu reports only the configs a
/// topic was created with, all with source `DEFAULT`; Kafka uses `DEFAULT` only when neither topic
/// nor broker set the key, where the value equals the broker default. So a `DEFAULT` value that
/// differs from the broker default is the topic's own.
fn topic_override(entry: Option<&ConfigEntry>, broker_default: i32) -> Option<i32> {
    let entry = entry?;
    let value: i32 = entry.value.as_deref()?.trim().parse().ok()?;
    match entry.source {
        ConfigSource::DynamicTopic => Some(value),
        ConfigSource::Default | ConfigSource::Unknown if value != broker_default => Some(value),
        _ => None,
    }
}

fn broker_nodes(metadata: &Metadata) -> Result<Vec<BrokerNode>, String> {
    metadata
        .brokers()
        .iter()
        .map(|b| {
            let port = u16::try_from(b.port())
                .map_err(|_| format!("broker {} reported port {}", b.id(), b.port()))?;
            Ok(BrokerNode {
                id: b.id(),
                host: b.host().to_string(),
                port,
            })
        })
        .collect()
}

/// `host:port` pairs of a librdkafka `bootstrap.servers` list (`[proto://]host:port,…`).
fn bootstrap_addresses(bootstrap: &str) -> Vec<String> {
    bootstrap
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.split_once("://").map_or(s, |(_, rest)| rest).to_string())
        .map(|s| {
            // librdkafka's default port when none is given.
            if s.ends_with(']') || !s.contains(':') {
                format!("{s}:9092")
            } else {
                s
            }
        })
        .collect()
}

async fn any_accepts_tcp(addresses: &[String]) -> bool {
    first_accepting(addresses).await.is_some()
}

impl KafkaCluster for RdKafka {
    async fn probe(&self) -> Liveness {
        // librdkafka retries refused connections until its request times out, so a dead broker
        // would cost the whole Metadata timeout; a refused TCP connect answers in microseconds.
        let addresses = bootstrap_addresses(&self.bootstrap);
        if !any_accepts_tcp(&addresses).await {
            return Liveness::NotListening;
        }
        match self.metadata(PROBE_METADATA_TIMEOUT).await {
            Ok(_) => Liveness::Answering,
            Err(e) => Liveness::Unreachable {
                bootstrap: self.bootstrap.clone(),
                cause: match e {
                    KafkaError::Metadata { message, .. } => message,
                    other => other.to_string(),
                },
            },
        }
    }

    async fn snapshot(&self) -> Result<ClusterSnapshot, KafkaError> {
        let (metadata, controller_id) = self.metadata(self.timeout).await?;
        let brokers = broker_nodes(&metadata).map_err(|m| self.metadata_error(m))?;
        let config_broker = controller_id
            .filter(|id| brokers.iter().any(|b| b.id == *id))
            .or_else(|| brokers.iter().map(|b| b.id).min())
            .ok_or_else(|| self.metadata_error("no brokers in metadata"))?;
        let broker_configs = self
            .describe_broker(config_broker, &["min.insync.replicas"])
            .await?;
        let default_min_insync_replicas = broker_configs
            .get("min.insync.replicas")
            .and_then(|e| e.value.as_deref())
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(KAFKA_DEFAULT_MIN_INSYNC_REPLICAS);

        let names: Vec<String> = metadata
            .topics()
            .iter()
            .map(|t| t.name().to_string())
            .collect();
        let (overrides, unreadable_configs) = self
            .topic_min_insync(&names, default_min_insync_replicas)
            .await?;
        Ok(ClusterSnapshot {
            brokers,
            controller_id,
            topics: topic_states(&metadata, &overrides),
            default_min_insync_replicas,
            unreadable_configs,
        })
    }

    async fn partitions(&self) -> Result<ClusterSnapshot, KafkaError> {
        let (metadata, controller_id) = self.metadata(self.timeout).await?;
        let brokers = broker_nodes(&metadata).map_err(|m| self.metadata_error(m))?;
        Ok(ClusterSnapshot {
            brokers,
            controller_id,
            topics: topic_states(&metadata, &BTreeMap::new()),
            default_min_insync_replicas: KAFKA_DEFAULT_MIN_INSYNC_REPLICAS,
            unreadable_configs: Vec::new(),
        })
    }

    async fn advertised_listeners(&self, broker_id: i32) -> Result<Option<String>, KafkaError> {
        // Metadata first: DescribeConfigs of a broker that is not in the cluster would wait for
        // it until the request timeout.
        let (metadata, _) = self.metadata(self.timeout).await?;
        let brokers = broker_nodes(&metadata).map_err(|m| self.metadata_error(m))?;
        let Some(node) = brokers.into_iter().find(|b| b.id == broker_id) else {
            return Ok(None);
        };
        let configs = self
            .describe_broker(broker_id, &["advertised.listeners"])
            .await?;
        let reported = configs
            .get("advertised.listeners")
            .and_then(|e| e.value.clone())
            .filter(|v| !v.trim().is_empty());
        Ok(Some(
            reported.unwrap_or_else(|| format!("{}:{}", node.host, node.port)),
        ))
    }

    async fn set_advertised_listeners(
        &self,
        broker_id: i32,
        value: &str,
    ) -> Result<(), KafkaError> {
        let admin = Arc::clone(&self.admin);
        let value = value.to_string();
        let timeout = self.timeout;
        let err = |message: String| KafkaError::AlterAdvertisedListeners {
            bootstrap: self.bootstrap.clone(),
            broker_id,
            message,
        };
        tokio::task::spawn_blocking(move || {
            ffi::incremental_alter_broker_config(
                &admin,
                broker_id,
                "advertised.listeners",
                Some(&value),
                timeout,
            )
        })
        .await
        .map_err(|e| err(format!("alter task failed: {e}")))?
        .map_err(err)
    }

    async fn broker_rack(&self, broker_id: i32) -> Result<Option<String>, KafkaError> {
        let configs = self.describe_broker(broker_id, &["broker.rack"]).await?;
        Ok(configs
            .get("broker.rack")
            .and_then(|e| e.value.clone())
            .filter(|v| !v.trim().is_empty()))
    }

    async fn clear_dynamic_advertised_listeners(&self, broker_id: i32) -> Result<bool, KafkaError> {
        let configs = self
            .describe_broker(broker_id, &["advertised.listeners"])
            .await?;
        let dynamic = configs
            .get("advertised.listeners")
            .is_some_and(|e| e.source == ConfigSource::DynamicBroker);
        if !dynamic {
            return Ok(false);
        }
        let admin = Arc::clone(&self.admin);
        let timeout = self.timeout;
        let err = |message: String| KafkaError::AlterAdvertisedListeners {
            bootstrap: self.bootstrap.clone(),
            broker_id,
            message: format!("removing the dynamic override: {message}"),
        };
        tokio::task::spawn_blocking(move || {
            ffi::incremental_alter_broker_config(
                &admin,
                broker_id,
                "advertised.listeners",
                None,
                timeout,
            )
        })
        .await
        .map_err(|e| err(format!("alter task failed: {e}")))?
        .map_err(err)?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(value: &str, source: ConfigSource) -> ConfigEntry {
        ConfigEntry {
            name: "min.insync.replicas".to_string(),
            value: Some(value.to_string()),
            source,
            is_read_only: false,
            is_default: false,
            is_sensitive: false,
        }
    }

    #[test]
    fn topic_override_follows_the_config_source() {
        let cases = [
            (Some(entry("2", ConfigSource::DynamicTopic)), 1, Some(2)),
            (Some(entry("1", ConfigSource::DynamicTopic)), 1, Some(1)),
            (Some(entry("2", ConfigSource::StaticBroker)), 2, None),
            (Some(entry("3", ConfigSource::DynamicBroker)), 3, None),
            (
                Some(entry("2", ConfigSource::DynamicDefaultBroker)),
                2,
                None,
            ),
            // Kafka: neither topic nor broker set it.
            (Some(entry("1", ConfigSource::Default)), 1, None),
            // tansu: the topic was created with it.
            (Some(entry("2", ConfigSource::Default)), 1, Some(2)),
            (Some(entry(" 3 ", ConfigSource::Unknown)), 1, Some(3)),
            (Some(entry("x", ConfigSource::DynamicTopic)), 1, None),
            (None, 1, None),
        ];
        for (entry, default, want) in cases {
            assert_eq!(topic_override(entry.as_ref(), default), want, "{entry:?}");
        }
    }

    #[test]
    fn bootstrap_addresses_accept_librdkafka_forms() {
        assert_eq!(
            bootstrap_addresses("a:1, PLAINTEXT://b:2,c,[::1]:9093,,"),
            ["a:1", "b:2", "c:9092", "[::1]:9093"]
        );
    }
}
