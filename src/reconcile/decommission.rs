//! `decommission`: this broker taken off the NLBs (bootstrap membership, listeners, dedicated
//! group) and, unless asked to keep it, its listener out of `server.properties` — as planned
//! steps: observed once ([`Agent::decommission_plan`]), shown by `decommission --dry-run`,
//! executed as shown ([`Agent::decommission`]).

use serde::Serialize;

use crate::ec2::InstanceTags;
use crate::metadata::InstanceMetadata;
use crate::model::{Agent, Error};
use crate::nlb::{Listener, LoadBalancer};
use crate::plan::{self, Context, Desired};
use crate::properties::{self, PropertiesError};

/// One change `decommission` makes, in execution order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub(crate) enum DecommissionStep {
    /// Clients stop being routed here first: out of the bootstrap group of NLB `shard`
    /// (this instance, and any replaced instance of this broker still in its dedicated group).
    LeaveBootstrap {
        /// Index of the NLB.
        shard: usize,
        /// The bootstrap target group.
        group_arn: String,
        /// The registrations to remove: `(instance id, port)`.
        targets: Vec<(String, u16)>,
    },
    /// Delete a claim listener (the claim, or a duplicate of it).
    DeleteListener {
        /// Index of the NLB.
        shard: usize,
        /// Its port.
        port: u16,
        /// Its ARN.
        arn: String,
    },
    /// Delete the dedicated target group.
    DeleteTargetGroup {
        /// Its name.
        name: String,
        /// Its ARN.
        arn: String,
    },
    /// Remove the managed listener from `server.properties`.
    RemoveListener {
        /// The listener's name.
        listener: String,
        /// The file.
        path: String,
    },
}

impl DecommissionStep {
    /// What the step did, in the words `decommission` has always printed.
    pub(crate) fn done(&self) -> String {
        match self {
            DecommissionStep::LeaveBootstrap { targets, .. } => format!(
                "deregistered {} from the bootstrap target group",
                crate::nlb::target_list(targets)
            ),
            DecommissionStep::DeleteListener { shard, port, arn } => {
                format!("deleted listener on port {port} of shard {shard} ({arn})")
            }
            DecommissionStep::DeleteTargetGroup { name, arn } => {
                format!("deleted target group {name} ({arn})")
            }
            DecommissionStep::RemoveListener { listener, path } => {
                format!("removed listener {listener} from {path}")
            }
        }
    }
}

impl std::fmt::Display for DecommissionStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecommissionStep::LeaveBootstrap { shard, targets, .. } => write!(
                f,
                "deregister {} from the bootstrap target group of shard {shard}",
                crate::nlb::target_list(targets)
            ),
            DecommissionStep::DeleteListener { shard, port, arn } => {
                write!(f, "delete listener on port {port} of shard {shard} ({arn})")
            }
            DecommissionStep::DeleteTargetGroup { name, arn } => {
                write!(f, "delete target group {name} ({arn})")
            }
            DecommissionStep::RemoveListener { listener, path } => {
                write!(f, "remove listener {listener} from {path}")
            }
        }
    }
}

/// What one NLB holds of this broker, as observed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ShardHoldings {
    /// Its claim listener and any duplicates.
    pub claims: Vec<Listener>,
    /// Its dedicated group (`None`: nothing of this broker on this NLB).
    pub dedicated_group: Option<String>,
    /// The targets of the dedicated group.
    pub dedicated_targets: Vec<(String, u16)>,
    /// The bootstrap group and its targets, if the NLB has one.
    pub bootstrap: Option<(String, Vec<(String, u16)>)>,
}

/// The steps that take this broker off NLB `d` (pure). Nothing when it holds no dedicated group
/// there: a broker is in an NLB's bootstrap group only through its claim on that NLB.
pub(crate) fn shard_steps(d: &Desired, held: &ShardHoldings) -> Vec<DecommissionStep> {
    let Some(dedicated) = &held.dedicated_group else {
        return Vec::new();
    };
    let mut steps = Vec::new();
    if let Some((boot, targets)) = &held.bootstrap {
        let mut mine: Vec<(String, u16)> = vec![(d.instance_id.clone(), d.target_port)];
        mine.extend(held.dedicated_targets.iter().cloned());
        let present: Vec<(String, u16)> = targets
            .iter()
            .filter(|t| mine.contains(t))
            .cloned()
            .collect();
        if !present.is_empty() {
            steps.push(DecommissionStep::LeaveBootstrap {
                shard: d.shard,
                group_arn: boot.clone(),
                targets: present,
            });
        }
    }
    for l in &held.claims {
        steps.push(DecommissionStep::DeleteListener {
            shard: d.shard,
            port: l.port,
            arn: l.arn.clone(),
        });
    }
    let name = crate::nlb::target_group_name(dedicated).unwrap_or(&d.dedicated_group);
    steps.push(DecommissionStep::DeleteTargetGroup {
        name: name.to_string(),
        arn: dedicated.clone(),
    });
    steps
}

impl<M: InstanceMetadata, L: LoadBalancer, T: InstanceTags> Agent<M, L, T> {
    /// The steps that remove this broker from the NLBs that hold it (bootstrap membership, its
    /// listener(s), its dedicated group) and, unless `keep_config`, its listener from
    /// `server.properties`. Empty once decommissioned.
    pub(crate) async fn decommission_plan(
        &self,
        ctx: &Context,
        keep_config: bool,
    ) -> Result<Vec<DecommissionStep>, Error> {
        let mut steps = Vec::new();
        for d in &ctx.shards {
            steps.extend(shard_steps(d, &self.holdings(d).await?));
        }
        if !keep_config {
            let path = &self.config.broker.server_properties;
            let text = properties::read(path)?;
            if properties::remove_listener(&text, &self.config.listener.name)
                .map_err(|e| PropertiesError::from_edit(path, e))?
                .is_some()
            {
                steps.push(DecommissionStep::RemoveListener {
                    listener: self.config.listener.name.clone(),
                    path: path.display().to_string(),
                });
            }
        }
        Ok(steps)
    }

    /// Plans ([`Agent::decommission_plan`]) and runs the steps in order. Idempotent: a second
    /// run finds nothing to do. Returns what was done, a line per step.
    pub(crate) async fn decommission(
        &self,
        ctx: &Context,
        keep_config: bool,
    ) -> Result<Vec<String>, Error> {
        let _deadline = self.calls.begin_pass(self.config.aws.pass_deadline);
        let mut done = Vec::new();
        for step in self.decommission_plan(ctx, keep_config).await? {
            if self.decommission_step(&step).await? {
                done.push(step.done());
            }
        }
        Ok(done)
    }

    /// Runs one step; false when the file no longer needed the edit (changed on disk since).
    async fn decommission_step(&self, step: &DecommissionStep) -> Result<bool, Error> {
        match step {
            DecommissionStep::LeaveBootstrap {
                group_arn, targets, ..
            } => self.lb.deregister(group_arn, targets).await?,
            DecommissionStep::DeleteListener { arn, .. } => self.lb.delete_listener(arn).await?,
            DecommissionStep::DeleteTargetGroup { arn, .. } => {
                self.lb.delete_target_group(arn).await?;
            }
            DecommissionStep::RemoveListener { listener, .. } => {
                // Read again: config management may have rewritten the file since the plan.
                let path = &self.config.broker.server_properties;
                let backup = properties::backup_path(path);
                return Ok(properties::remove_listener_from_file(
                    path,
                    listener,
                    Some(&backup),
                )?);
            }
        }
        Ok(true)
    }

    /// What NLB `d` holds of this broker.
    async fn holdings(&self, d: &Desired) -> Result<ShardHoldings, Error> {
        let listeners = self.lb.listeners(&d.lb_arn).await?;
        let a = plan::assess(d, &listeners, None);
        let dedicated_group = match a.claim.as_ref().and_then(|l| l.target_group_arn.clone()) {
            Some(arn) => Some(arn),
            None => self.unclaimed_dedicated_group(d).await?,
        };
        let Some(dedicated) = dedicated_group else {
            return Ok(ShardHoldings::default());
        };
        let pairs = |targets: Vec<crate::nlb::Target>| {
            targets
                .into_iter()
                .map(|t| (t.id, t.port))
                .collect::<Vec<_>>()
        };
        let mut held = ShardHoldings {
            claims: a
                .claim
                .iter()
                .chain(a.duplicate_claims.iter())
                .cloned()
                .collect(),
            ..ShardHoldings::default()
        };
        // The dedicated group's targets matter only for leaving a bootstrap group: read them
        // only then (an AWS read saved).
        if let Some(boot) = a
            .bootstrap
            .as_ref()
            .and_then(|l| l.target_group_arn.clone())
        {
            let targets = pairs(self.lb.targets(&boot).await?);
            held.dedicated_targets = pairs(self.lb.targets(&dedicated).await?);
            held.bootstrap = Some((boot, targets));
        }
        held.dedicated_group = Some(dedicated);
        Ok(held)
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
        Ok(
            crate::compat::unshared_legacy_group(&self.lb, &d.legacy_dedicated_group, &d.lb_arn)
                .await?,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listener(port: u16) -> Listener {
        Listener {
            arn: format!("arn:listener/{port}"),
            port,
            target_group_arn: Some("arn:tg/kp-orders-5c1e-b3".into()),
        }
    }

    /// The steps for one NLB: out of the bootstrap group only where registered (this instance
    /// and any instance its dedicated group still holds, never another broker's), then every
    /// claim listener, then the dedicated group; nothing without a dedicated group.
    #[test]
    fn shard_steps_table() {
        let d = crate::plan::tests::desired();
        let me = (d.instance_id.clone(), d.target_port);
        let old = ("i-replaced".to_string(), 9094);
        let other = ("i-other".to_string(), 9094);
        assert!(shard_steps(&d, &ShardHoldings::default()).is_empty());
        let held = ShardHoldings {
            claims: vec![listener(10004), listener(10007)],
            dedicated_group: Some(
                "arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/kp-orders-5c1e-b3/ab".into(),
            ),
            dedicated_targets: vec![old.clone()],
            bootstrap: Some(("arn:boot".into(), vec![me.clone(), old.clone(), other])),
        };
        let steps = shard_steps(&d, &held);
        assert_eq!(
            steps,
            vec![
                DecommissionStep::LeaveBootstrap {
                    shard: 0,
                    group_arn: "arn:boot".into(),
                    targets: vec![me, old],
                },
                DecommissionStep::DeleteListener {
                    shard: 0,
                    port: 10004,
                    arn: "arn:listener/10004".into()
                },
                DecommissionStep::DeleteListener {
                    shard: 0,
                    port: 10007,
                    arn: "arn:listener/10007".into()
                },
                DecommissionStep::DeleteTargetGroup {
                    name: "kp-orders-5c1e-b3".into(),
                    arn:
                        "arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/kp-orders-5c1e-b3/ab"
                            .into(),
                },
            ]
        );
        // Not registered in the bootstrap group (drained already): no deregistration.
        let drained = ShardHoldings {
            bootstrap: Some(("arn:boot".into(), vec![("i-other".into(), 9094)])),
            ..held
        };
        assert!(!shard_steps(&d, &drained)
            .iter()
            .any(|s| matches!(s, DecommissionStep::LeaveBootstrap { .. })));
    }
}
