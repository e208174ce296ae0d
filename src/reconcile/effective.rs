//! Making the running broker use what a pass wrote: the pass's report handed to the
//! [`Restarter`] with the Kafka and service adapters.

use crate::ec2::InstanceTags;
use crate::kafka::KafkaCluster;
use crate::metadata::InstanceMetadata;
use crate::model::{Agent, Error, PassReport};
use crate::nlb::LoadBalancer;
use crate::plan::Context;
use crate::properties::{self, PropertiesError};
use crate::restart::{Outcome, Restarter, ServiceManager};

impl<M: InstanceMetadata, L: LoadBalancer, T: InstanceTags> Agent<M, L, T> {
    /// Makes the running broker use what the last pass wrote (see [`crate::restart`]).
    pub(crate) async fn make_effective<K: KafkaCluster, S: ServiceManager>(
        &self,
        ctx: &Context,
        report: &PassReport,
        kafka: &K,
        service: &S,
        lock_held: &tokio::sync::watch::Sender<bool>,
    ) -> Result<Outcome, Error> {
        let path = &self.config.broker.server_properties;
        let text = self.server_properties()?;
        let file = properties::Properties::parse(&text)
            .map_err(|e| PropertiesError::from_edit(path, e))?;
        let file_value = file.get("advertised.listeners").unwrap_or_default();
        let restarter = Restarter {
            lb: &self.lb,
            kafka,
            service,
            config: &self.config,
            broker_id: ctx.broker_id,
            role: crate::node::NodeRole::from_properties(&text)
                .map_err(|e| PropertiesError::from_edit(path, e))?,
            rack: ctx.shard(report.shard).rack.as_deref(),
            holder: format!("{}/{}", ctx.broker_id, ctx.identity.instance_id),
            vpc_id: ctx.identity.vpc_id.clone(),
            bound: properties::bound_addresses(&text, &self.config.listener.name),
            nlb_targets: Some(crate::restart::NlbTargets {
                instance_id: report.instance_id.clone(),
                groups: [&report.target_group_arn, &report.bootstrap_target_group_arn]
                    .into_iter()
                    .filter(|g| !g.is_empty())
                    .cloned()
                    .collect(),
            }),
            legacy_lock: report.lock_listener_arn.clone(),
            lock_held,
        };
        Ok(restarter
            .make_effective(&report.advertised, &file_value)
            .await?)
    }
}
