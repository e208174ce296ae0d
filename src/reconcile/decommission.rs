//! `decommission`: this broker taken off the NLBs (bootstrap membership, listeners, dedicated
//! group) and, unless asked to keep it, its listener out of `server.properties`.

use crate::ec2::InstanceTags;
use crate::metadata::InstanceMetadata;
use crate::model::{Agent, Error};
use crate::nlb::LoadBalancer;
use crate::plan::{self, Context, Desired};
use crate::properties::{self, PropertiesError};

impl<M: InstanceMetadata, L: LoadBalancer, T: InstanceTags> Agent<M, L, T> {
    /// Removes this broker from the NLB that holds its claim, whichever it is (bootstrap
    /// membership, its listener(s), its dedicated group) and, unless `keep_config`, its listener
    /// from `server.properties`. Idempotent: a second run finds nothing to do. Returns what was
    /// done.
    pub async fn decommission(
        &self,
        ctx: &Context,
        keep_config: bool,
    ) -> Result<Vec<String>, Error> {
        let _deadline = self.calls.begin_pass(self.config.aws.pass_deadline);
        let mut done = Vec::new();
        for d in &ctx.shards {
            done.extend(self.decommission_on(d).await?);
        }
        if !keep_config {
            let path = &self.config.broker.server_properties;
            let text = properties::read(path)?;
            if let Some(new_text) = properties::remove_listener(&text, &self.config.listener.name)
                .map_err(|e| PropertiesError::from_edit(path, e))?
            {
                properties::write_atomic(path, &new_text, Some(&properties::backup_path(path)))?;
                done.push(format!(
                    "removed listener {} from {}",
                    self.config.listener.name,
                    path.display()
                ));
            }
        }
        Ok(done)
    }

    /// [`Agent::decommission`] on one NLB.
    async fn decommission_on(&self, d: &Desired) -> Result<Vec<String>, Error> {
        let mut done = Vec::new();
        let listeners = self.lb.listeners(&d.lb_arn).await?;
        let a = plan::assess(d, &listeners, None);
        let dedicated_tg = match a.claim.as_ref().and_then(|l| l.target_group_arn.clone()) {
            Some(arn) => Some(arn),
            None => self.unclaimed_dedicated_group(d).await?,
        };
        let Some(dedicated_tg) = dedicated_tg else {
            // Nothing of this broker on this NLB (it may be a member of another NLB's
            // bootstrap group only through its own claim there).
            return Ok(done);
        };
        // Clients stop being routed here first: leave the bootstrap group.
        if let Some(boot) = a
            .bootstrap
            .as_ref()
            .and_then(|l| l.target_group_arn.as_deref())
        {
            done.extend(self.leave_bootstrap(d, boot, Some(&dedicated_tg)).await?);
        }
        for l in a.claim.iter().chain(a.duplicate_claims.iter()) {
            self.lb.delete_listener(&l.arn).await?;
            done.push(format!(
                "deleted listener on port {} of shard {} ({})",
                l.port, d.shard, l.arn
            ));
        }
        self.lb.delete_target_group(&dedicated_tg).await?;
        let name = crate::nlb::target_group_name(&dedicated_tg).unwrap_or(&d.dedicated_group);
        done.push(format!("deleted target group {name} ({dedicated_tg})"));
        Ok(done)
    }

    /// This broker's dedicated group when no listener forwards to it (a pass killed before its
    /// claim): by this release's name, else by 0.1's name if no other load balancer uses it.
    async fn unclaimed_dedicated_group(&self, d: &Desired) -> Result<Option<String>, Error> {
        if let Some(arn) = self.lb.find_target_group(&d.dedicated_group).await? {
            return Ok(Some(arn));
        }
        // 0.1 knew one NLB only: its name is looked for on the first.
        if d.shard != 0 {
            return Ok(None);
        }
        let lb_arn = &d.lb_arn;
        let Some(arn) = self.lb.find_target_group(&d.legacy_dedicated_group).await? else {
            return Ok(None);
        };
        let info = self
            .lb
            .target_group_info(std::slice::from_ref(&arn))
            .await?;
        Ok(info
            .iter()
            .all(|i| i.load_balancer_arns.iter().all(|l| l == lb_arn))
            .then_some(arn))
    }

    /// Deregisters this instance, and any replaced instance of this broker still found in the
    /// dedicated group, from the bootstrap group `boot`.
    async fn leave_bootstrap(
        &self,
        d: &Desired,
        boot: &str,
        dedicated_tg: Option<&str>,
    ) -> Result<Option<String>, Error> {
        let mut mine: Vec<(String, u16)> = vec![(d.instance_id.clone(), d.target_port)];
        if let Some(tg) = dedicated_tg {
            mine.extend(
                self.lb
                    .targets(tg)
                    .await?
                    .into_iter()
                    .map(|t| (t.id, t.port)),
            );
        }
        let present: Vec<(String, u16)> = self
            .lb
            .targets(boot)
            .await?
            .into_iter()
            .map(|t| (t.id, t.port))
            .filter(|t| mine.contains(t))
            .collect();
        if present.is_empty() {
            return Ok(None);
        }
        self.lb.deregister(boot, &present).await?;
        Ok(Some(format!(
            "deregistered {} from the bootstrap target group",
            crate::nlb::target_list(&present)
        )))
    }
}
