//! Who this host is and what it wants: identity, broker id (from every place it may be
//! written), the node's role, and the desired shape on each NLB (the pass's [`Context`]).

use std::path::Path;

use crate::broker_id::{self, Found, Source};
use crate::compat;
use crate::config::{HostTemplate, HostValues};
use crate::ec2::InstanceTags;
use crate::metadata::{self, Identity, InstanceMetadata, TagLookup};
use crate::model::{Agent, Error};
use crate::nlb::LoadBalancer;
use crate::node::NodeRole;
use crate::plan::{Context, Desired};
use crate::properties::{self, ListenerEdit, PropertiesError};
use crate::registry;

impl<M: InstanceMetadata, L: LoadBalancer, T: InstanceTags> Agent<M, L, T> {
    /// Discovers identity and broker id and derives the desired NLB shape.
    pub(crate) async fn context(&self) -> Result<Context, Error> {
        let identity = metadata::discover(&self.metadata, self.metadata_timeout).await?;
        self.context_for(identity).await
    }

    /// Like [`Agent::context`] with an already discovered identity.
    pub(crate) async fn context_for(&self, identity: Identity) -> Result<Context, Error> {
        let (broker_id, source) = self.broker_id(&identity).await?;
        let render = |template: &HostTemplate, shard: usize| {
            let values = HostValues {
                az_id: &identity.az_id,
                az: &identity.az,
                region: &identity.region,
                broker_id,
                instance_id: &identity.instance_id,
                cluster: &self.config.cluster,
                shard,
            };
            template.render(&values)
        };
        let mut shards = Vec::new();
        for shard in self.config.nlb.load_balancers() {
            let advertised_host = render(&self.config.listener.advertised_host, shard.index);
            let rack = self
                .config
                .broker
                .rack
                .as_ref()
                .map(|template| render(template, shard.index));
            shards.push(self.desired(&identity, broker_id, shard, advertised_host, rack));
        }
        Ok(Context {
            identity,
            broker_id,
            broker_id_source: source.to_string(),
            shards,
        })
    }

    /// The desired shape on one NLB.
    fn desired(
        &self,
        identity: &Identity,
        broker_id: i32,
        shard: crate::config::Shard,
        advertised_host: String,
        rack: Option<String>,
    ) -> Desired {
        let cluster = &self.config.cluster;
        let lb_arn = shard.load_balancer_arn;
        Desired {
            shard: shard.index,
            broker_id,
            instance_id: identity.instance_id.clone(),
            target_port: self.config.listener.port,
            port_range: self.config.port_range(),
            bootstrap_port: self.config.nlb.bootstrap_port,
            lock_port: compat::legacy_lock_port(&self.config.restart, &self.config.nlb),
            dedicated_group: registry::dedicated_group_name(cluster, &lb_arn, broker_id),
            legacy_dedicated_group: compat::legacy_dedicated_group_name(cluster, broker_id),
            bootstrap_group: registry::bootstrap_group_name(cluster, &lb_arn),
            properties_path: self.config.broker.server_properties.clone(),
            idle_timeout: self.config.nlb.idle_timeout,
            listener: ListenerEdit {
                name: self.config.listener.name.clone(),
                bind_port: self.config.listener.port,
                advertised_host,
                advertised_port: 0,
                security_protocol: self.config.listener.security_protocol.to_string(),
            },
            rack,
            lb_arn,
        }
    }

    async fn broker_id(&self, identity: &Identity) -> Result<(i32, Source), Error> {
        let mut found = Vec::new();
        if let Some(id) = self.config.broker.id {
            found.push(Found {
                raw: id.to_string(),
                source: Source::Config(self.config_path.display().to_string()),
            });
        }
        let key = &self.config.broker.id_tag;
        match metadata::instance_tag(&self.metadata, key).await? {
            TagLookup::Found(raw) => found.push(Found {
                raw,
                source: Source::InstanceTag {
                    key: key.clone(),
                    via: "instance metadata",
                },
            }),
            TagLookup::Absent => {}
            TagLookup::NotExposed => {
                if let Some(raw) = self.tags.tag(&identity.instance_id, key).await? {
                    found.push(Found {
                        raw,
                        source: Source::InstanceTag {
                            key: key.clone(),
                            via: "EC2 DescribeTags",
                        },
                    });
                }
            }
        }
        let path = &self.config.broker.server_properties;
        let server = properties::Properties::parse(&self.server_properties()?)
            .map_err(|e| PropertiesError::from_edit(path, e))?;
        for k in ["broker.id", "node.id"] {
            if let Some(raw) = server.get(k) {
                found.push(Found {
                    raw,
                    source: Source::Properties {
                        path: path.display().to_string(),
                        key: k,
                    },
                });
            }
        }
        let dirs = server
            .get("log.dirs")
            .or_else(|| server.get("log.dir"))
            .unwrap_or_default();
        for dir in dirs.split(',').map(str::trim).filter(|d| !d.is_empty()) {
            let meta = Path::new(dir).join("meta.properties");
            if !meta.exists() {
                continue;
            }
            let props = properties::Properties::parse(&properties::read(&meta)?)
                .map_err(|e| PropertiesError::from_edit(&meta, e))?;
            for k in ["node.id", "broker.id"] {
                if let Some(raw) = props.get(k) {
                    found.push(Found {
                        raw,
                        source: Source::Properties {
                            path: meta.display().to_string(),
                            key: k,
                        },
                    });
                }
            }
        }
        let looked_at = format!(
            "broker.id in {}, instance tag {key}, broker.id/node.id in {}, meta.properties in log.dirs {:?}",
            self.config_path.display(),
            path.display(),
            dirs
        );
        Ok(broker_id::resolve(&found, &looked_at)?)
    }

    /// What kind of Kafka node this host is, from `server.properties` (see [`crate::node`]).
    pub(crate) fn node_role(&self) -> Result<NodeRole, Error> {
        let path = &self.config.broker.server_properties;
        Ok(NodeRole::from_properties(&self.server_properties()?)
            .map_err(|e| PropertiesError::from_edit(path, e))?)
    }
}
