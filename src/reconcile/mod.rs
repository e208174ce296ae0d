//! One reconcile pass: observe everything, plan purely, act only on drift.
//!
//! A pass is level-triggered and safe to kill at any point: every step either completes a goal or
//! leaves state that the next pass recognizes and finishes (an adopted target group, a claim
//! without registrations, an unchanged file). The order matters where a crash could leak: the
//! dedicated target group is created before the listener that claims a port for it, and deleted
//! again if no port can be had.
//!
//! The pass itself, its preflight checks and its retries live here; the other steps in
//! submodules: `discover` (who this host is and what it wants on each NLB), `observe` (reading
//! the NLBs and the file, choosing the NLB of a new claim), `decommission`, and `effective`
//! (making the running broker use what a pass wrote).

mod certificate;
mod decommission;

#[cfg(test)]
pub(crate) use decommission::DecommissionStep;

mod discover;
mod effective;
mod observe;

use std::time::Instant;

use crate::checks;
use crate::ec2::InstanceTags;
use crate::execute::{Executed, Replan};
use crate::lifecycle::Lifecycle;
use crate::metadata::InstanceMetadata;
use crate::model::{Agent, Error, PassReport};
use crate::model::{Claim, Progress};
use crate::nlb::{LoadBalancer, NlbError};
use crate::plan::claim_candidates;
use crate::plan::Context;
use crate::plan::Observed;
use crate::plan::{self, ClaimOf, Step};
use crate::properties::PropertiesError;

impl<M: InstanceMetadata, L: LoadBalancer, T: InstanceTags> Agent<M, L, T> {
    /// Checks made before the pass changes anything on the NLB, each once per process: the NLB
    /// is enabled in this instance's AZ (else its targets here never receive traffic), and the
    /// bootstrap listener, if there is one, belongs to this cluster.
    async fn preflight(&self, ctx: &Context, observed: &Observed) -> Result<(), Error> {
        let d = ctx.shard(observed.shard);
        let lb_arn = &d.lb_arn;
        let az = &ctx.identity.az;
        let key = format!("az {lb_arn} {az}");
        if !self.checked.has(&key) {
            // One DescribeLoadBalancers for every configured NLB (a pass that moves on to
            // another NLB needs no second call); each NLB enabled here is remembered.
            let arns: Vec<String> = ctx.shards.iter().map(|s| s.lb_arn.clone()).collect();
            let all = self.lb.availability_zones(&arns).await?;
            for (arn, zones) in &all {
                if zones.iter().any(|z| z == az) {
                    self.checked.mark(format!("az {arn} {az}"));
                }
            }
            if !self.checked.has(&key) {
                let zones = all.get(lb_arn).cloned().unwrap_or_default();
                return Err(Error::AzNotEnabled {
                    lb_arn: lb_arn.clone(),
                    az_id: ctx.identity.az_id.clone(),
                    az: az.clone(),
                    enabled: zones.join(", "),
                });
            }
        }
        if let Some(tg) = observed
            .assessment
            .bootstrap
            .as_ref()
            .and_then(|l| l.target_group_arn.as_deref())
        {
            checks::bootstrap_owner(&self.lb, &self.checked, &self.config, d, tg).await?;
        }
        Ok(())
    }

    /// The steps a pass would take now (for `plan`; `pass` runs exactly these).
    pub(crate) fn plan(&self, ctx: &Context, observed: &Observed) -> Result<Vec<Step>, Error> {
        let candidates = claim_candidates(ctx, observed);
        plan::plan(ctx.shard(observed.shard), observed, &candidates).map_err(|e| {
            Error::Properties(PropertiesError::from_edit(
                &self.config.broker.server_properties,
                e,
            ))
        })
    }

    /// One full reconcile pass: observe, plan, check (when the plan changes the NLB), execute.
    /// A leaving instance is drained instead (see [`crate::plan::drain_steps`]).
    pub(crate) async fn pass(&self, ctx: &Context) -> Result<PassReport, Error> {
        self.pass_after(ctx, &Lifecycle::Staying).await
    }

    /// [`Agent::pass`] in a process whose earlier passes saw `earlier`: an instance once seen
    /// leaving stays drained even if metadata now says otherwise ([`Lifecycle::after`]).
    pub(crate) async fn pass_after(
        &self,
        ctx: &Context,
        earlier: &Lifecycle,
    ) -> Result<PassReport, Error> {
        let started = Instant::now();
        let _deadline = self.calls.begin_pass(self.config.aws.pass_deadline);
        let calls_before = self.calls.snapshot();
        let throttled_before = self.calls.throttled();
        let (observed, progress, changes) = match self.attempts(ctx, earlier).await {
            Ok(done) => done,
            Err(e) => {
                self.steady.forget();
                return Err(e);
            }
        };
        let leaving = observed.lifecycle.is_leaving();
        if leaving || changes.iter().any(Step::touches_nlb) {
            // What was observed is not what is there now: the next pass looks in full.
            self.steady.forget();
        } else if self.steady.kept().is_none() && progress.claim.is_some() {
            self.steady.keep_observed(
                &observed,
                &ctx.identity.instance_id,
                ctx.shards.len(),
                |cluster| self.steady_interval(cluster),
            );
        }
        let d = ctx.shard(observed.shard);
        let claim = match progress.claim.clone() {
            Some(claim) => claim,
            // Leaving before it ever claimed a port: nothing to keep.
            None if leaving => Claim {
                port: 0,
                listener_arn: String::new(),
                target_group_arn: String::new(),
            },
            None => {
                return Err(Error::Nlb(NlbError {
                    operation: "CreateListener",
                    resource: d.lb_arn.clone(),
                    code: "NoClaim".into(),
                    message: "the pass ended without a claim".into(),
                }))
            }
        };
        let aws_calls = crate::backoff::since(&calls_before, self.calls.snapshot());
        let aws_throttled = crate::backoff::since(&throttled_before, self.calls.throttled());
        Ok(PassReport {
            broker_id: ctx.broker_id,
            instance_id: ctx.identity.instance_id.clone(),
            az_id: ctx.identity.az_id.clone(),
            port: claim.port,
            shard: d.shard,
            load_balancer_arn: d.lb_arn.clone(),
            advertised: d.endpoint(claim.port),
            listener_arn: claim.listener_arn,
            target_group_arn: claim.target_group_arn,
            bootstrap_target_group_arn: progress.bootstrap_tg.unwrap_or_default(),
            lock_listener_arn: observed.assessment.lock.as_ref().map(|l| l.arn.clone()),
            lifecycle: observed.lifecycle,
            certificate: observed.certificate,
            changes,
            races: progress.races,
            claim_collisions: progress.collisions,
            properties_written: progress.properties_written,
            aws_calls,
            aws_throttled,
            elapsed_ms: started.elapsed().as_millis(),
        })
    }

    /// Observe, plan, check, execute, and again whenever the executor asks for a re-plan (see
    /// [`Replan`]): the one re-plan point of a pass. An NLB that filled up under this host's
    /// claim is left out of the next observation; a claim that moved gets its file write planned
    /// from the claim made. Returns the final observation and progress, and every change made,
    /// in order.
    async fn attempts(
        &self,
        ctx: &Context,
        earlier: &Lifecycle,
    ) -> Result<(Observed, Progress, Vec<Step>), Error> {
        let mut filled = Vec::new();
        let mut changes = Vec::new();
        let mut races = Vec::new();
        let mut collisions = 0;
        // Each NLB can fill up once; a moved claim ends the loop.
        for _ in 0..ctx.shards.len() + 1 {
            let mut observed = self.observe_excluding(ctx, &filled).await?;
            observed.lifecycle = std::mem::take(&mut observed.lifecycle).after(earlier);
            let steps = self.plan(ctx, &observed)?;
            // A drain only takes this instance out of a group it is in: no check can make that
            // wrong.
            if !observed.lifecycle.is_leaving() && steps.iter().any(Step::touches_nlb) {
                self.preflight(ctx, &observed).await?;
            }
            let mut progress = Progress::from_observed(&observed);
            let mut executed = self.execute(ctx, &observed, &steps, &mut progress).await?;
            if let Some(Replan::ClaimMoved { claimed, .. }) = executed.replan {
                progress
                    .races
                    .extend(executed.replan.as_ref().map(Replan::to_string));
                executed = self
                    .file_again(ctx, &observed, claimed, executed, &mut progress)
                    .await?;
            }
            races.append(&mut progress.races);
            collisions += progress.collisions;
            let Some(replan) = executed.replan else {
                changes.extend(executed.done);
                progress.races = races;
                progress.collisions = collisions;
                return Ok((observed, progress, changes));
            };
            races.push(replan.to_string());
            match replan {
                Replan::ShardFilled { shard, .. } => {
                    // What the plan did before the claim stays done (a bootstrap listener it
                    // created belongs on that NLB anyway); its dedicated group was deleted again.
                    changes.extend(
                        executed
                            .done
                            .into_iter()
                            .filter(|s| !matches!(s, Step::CreateDedicatedGroup { .. })),
                    );
                    filled.push(shard);
                }
                // Handled above: the file's step was planned and run again.
                Replan::ClaimMoved { .. } => changes.extend(executed.done),
            }
        }
        Err(Error::Nlb(NlbError {
            operation: "CreateListener",
            resource: ctx.shard(0).lb_arn.clone(),
            code: "NoClaim".into(),
            message: format!(
                "the pass planned {} times without settling (races: {})",
                ctx.shards.len() + 1,
                races.join("; ")
            ),
        }))
    }

    /// After a claim moved ([`Replan::ClaimMoved`]): the file's step planned again, purely, from
    /// the same observation and the port claimed, and run with the same progress. The NLB is not
    /// read again: ELBv2 is eventually consistent, and right after CreateListener its
    /// DescribeListeners may not list the new listener yet, so a fresh observation could plan a
    /// second claim. Returns the first plan's steps followed by the write, if one was needed.
    async fn file_again(
        &self,
        ctx: &Context,
        observed: &Observed,
        claimed: u16,
        first: Executed,
        progress: &mut Progress,
    ) -> Result<Executed, Error> {
        let d = ctx.shard(observed.shard);
        let step = plan::file_step(d, observed, claimed, ClaimOf::ThisPass)
            .map_err(|e| Error::Properties(PropertiesError::from_edit(&d.properties_path, e)))?;
        let again = self
            .execute(ctx, observed, &Vec::from_iter(step), progress)
            .await?;
        let mut done = first.done;
        done.extend(again.done);
        Ok(Executed {
            done,
            replan: again.replan,
        })
    }
}
