//! The pass's certificate pre-flight (see [`crate::tls`]): on a TLS listener, the keystore's
//! certificate must cover every name this broker advertises (one per NLB) and the bootstrap
//! name, and be valid now; checked every pass before any NLB call, so a certificate renewed or
//! replaced on disk is seen at once.

use crate::config::HostValues;
use crate::ec2::InstanceTags;
use crate::metadata::InstanceMetadata;
use crate::model::{Agent, Error};
use crate::nlb::LoadBalancer;
use crate::plan::Context;
use crate::properties::{Properties, PropertiesError};
use crate::tls;

impl<M: InstanceMetadata, L: LoadBalancer, T: InstanceTags> Agent<M, L, T> {
    /// Checks the certificate of the managed listener in `text` (`server.properties` as read)
    /// against this broker's names; its warnings are logged once per process (an expiry
    /// warning once a day: its text names the days left).
    pub(super) fn certificate_preflight(
        &self,
        ctx: &Context,
        text: &str,
    ) -> Result<tls::Outcome, Error> {
        let path = &self.config.broker.server_properties;
        let props = Properties::parse(text).map_err(|e| PropertiesError::from_edit(path, e))?;
        let outcome = tls::preflight(&tls::Request {
            properties: &props,
            listener: &self.config.listener.name,
            default_protocol: self.config.listener.security_protocol.as_str(),
            hosts: self.certificate_hosts(ctx),
            now: crate::clock::unix_now() as i64,
        })
        .map_err(Error::Certificate)?;
        for warning in outcome.warnings() {
            let key = format!("certificate {warning}");
            if !self.checked.has(&key) {
                tracing::warn!("{warning}");
                self.checked.mark(key);
            }
        }
        Ok(outcome)
    }

    /// The names clients dial: the advertised host on each NLB, then `listener.bootstrap_host`
    /// rendered for each NLB; each once.
    fn certificate_hosts(&self, ctx: &Context) -> Vec<String> {
        let mut hosts: Vec<String> = Vec::new();
        let mut add = |host: String| {
            if !hosts.contains(&host) {
                hosts.push(host);
            }
        };
        for d in &ctx.shards {
            add(d.listener.advertised_host.clone());
        }
        if let Some(template) = &self.config.listener.bootstrap_host {
            for d in &ctx.shards {
                let values = HostValues {
                    az_id: &ctx.identity.az_id,
                    az: &ctx.identity.az,
                    region: &ctx.identity.region,
                    broker_id: ctx.broker_id,
                    instance_id: &ctx.identity.instance_id,
                    cluster: &self.config.cluster,
                    shard: d.shard,
                };
                add(template.render(&values));
            }
        }
        hosts
    }
}
