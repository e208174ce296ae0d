//! The executor: carries out the steps [`crate::plan::plan`] computed, one small executor per step.
//!
//! A step is an instruction and the executor reads only the step (and what earlier steps of the
//! same plan established, such as the claim's listener). Each step returns an [`Outcome`]: done,
//! as executed (a claim says which port it got); unneeded, because a race made it so (another
//! host created the bootstrap listener first and it was joined, or the file on disk already says
//! what the step would write); or re-plan, with the reason. The only re-plan point is the pass
//! loop ([`crate::reconcile`]), as a controller runtime acts on the action its reconciler
//! returns: there are two reasons, an NLB that filled up under this host's claim (several NLBs)
//! and a claim that got another port than the plan's first candidate (another host took it
//! first), after which the file write is planned again from the claim made.
//!
//! Crash safety comes from the order and from idempotence: the dedicated group is created before
//! the listener that claims a port for it and deleted again when no port can be had; a group left
//! by a killed pass is adopted by the next one (CreateTargetGroup is idempotent).

use crate::checks;
use crate::ec2::InstanceTags;
use crate::metadata::InstanceMetadata;
use crate::model::{Agent, Claim, Error, Progress};
use crate::nlb::{ListenerClaim, LoadBalancer, NlbError, TargetGroupSpec, MAX_LISTENERS_PER_NLB};
use crate::plan::Context;
use crate::plan::{ClaimOf, Desired, GroupKind, ListenerKind, Observed, Step};
use crate::properties::{self, PropertiesError};
use crate::registry;

/// What running one step came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Done; the step as executed (a claim names the port it got).
    Done(Step),
    /// Not done, and nothing to retry in this pass: a race made it unnecessary, or it is best
    /// effort and failed (why, when the report should say).
    Skipped(Option<String>),
    /// Stop this plan: observe and plan again.
    Replan(Replan),
}

/// Why a plan stops before its end and the pass plans again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Replan {
    /// Another broker took NLB `shard`'s last port or listener slot during this pass (several
    /// NLBs only); the dedicated group this plan created was deleted again, and the next plan
    /// claims on another NLB.
    ShardFilled {
        /// The NLB's index.
        shard: usize,
        /// The NLB.
        lb_arn: String,
        /// What the claim ran into.
        why: String,
    },
    /// The claim got `claimed` instead of the plan's `planned` port (another host took it
    /// first) and the plan held no file write, as the file already advertised `planned`: the
    /// file's step is planned again for `claimed`, from the same observation (the NLB is not
    /// read again: right after CreateListener, ELBv2 may not list the new listener yet).
    ClaimMoved {
        /// The plan's first candidate.
        planned: u16,
        /// The port claimed.
        claimed: u16,
    },
}

impl std::fmt::Display for Replan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Replan::ShardFilled { shard, lb_arn, why } => write!(
                f,
                "shard {shard} ({lb_arn}) filled up during this pass ({why}); looked again"
            ),
            Replan::ClaimMoved { planned, claimed } => write!(
                f,
                "claimed port {claimed} instead of the planned {planned}; planned the file write again"
            ),
        }
    }
}

/// What running a plan came to: the steps done, as executed, and whether the plan stopped for
/// a re-plan.
#[derive(Debug)]
pub(crate) struct Executed {
    /// The steps done, in order.
    pub done: Vec<Step>,
    /// Why the plan stopped early, if it did.
    pub replan: Option<Replan>,
}

impl<M: InstanceMetadata, L: LoadBalancer, T: InstanceTags> Agent<M, L, T> {
    /// Runs `steps` in order until one asks for a re-plan. A claim that moved to another port
    /// than the plan's asks for one at the end when the plan held no file write (the file
    /// already advertised the planned port): the file must follow the claim.
    pub(crate) async fn execute(
        &self,
        ctx: &Context,
        observed: &Observed,
        steps: &[Step],
        progress: &mut Progress,
    ) -> Result<Executed, Error> {
        let mut replan = None;
        for step in steps {
            match self.execute_step(ctx, observed, step, progress).await? {
                Outcome::Done(executed) => progress.done.push(executed),
                Outcome::Skipped(why) => progress.races.extend(why),
                Outcome::Replan(why) => {
                    replan = Some(why);
                    break;
                }
            }
        }
        // The file follows the claim: a plan with a write writes the claimed port; one without
        // (the file already said the planned port) is planned again once the claim moved.
        let writes = steps
            .iter()
            .any(|s| matches!(s, Step::WriteProperties { .. }));
        if replan.is_none() && !writes {
            replan = moved_claim(&progress.done);
        }
        Ok(Executed {
            done: std::mem::take(&mut progress.done),
            replan,
        })
    }

    /// Runs one step.
    pub(crate) async fn execute_step(
        &self,
        ctx: &Context,
        observed: &Observed,
        step: &Step,
        progress: &mut Progress,
    ) -> Result<Outcome, Error> {
        let d = ctx.shard(observed.shard);
        match step {
            Step::CreateBootstrap { group, port } => {
                self.create_bootstrap(ctx, d, group, *port, progress)
                    .await?;
            }
            Step::CreateDedicatedGroup { group } => {
                self.create_dedicated_group(ctx, d, group, progress).await?;
            }
            Step::ClaimPort { candidates, .. } => {
                return self.claim_port(ctx, d, step, candidates, progress).await;
            }
            Step::DeleteDuplicateListener { arn, .. } => self.lb.delete_listener(arn).await?,
            Step::Register {
                group,
                instance_id,
                port,
            } => {
                self.register(d, *group, (instance_id, *port), progress)
                    .await?;
            }
            Step::Deregister { group, targets } => {
                let tg = self.group_arn(*group, progress)?;
                self.lb.deregister(&tg, targets).await?;
            }
            Step::SetIdleTimeout { listener, seconds } => {
                return Ok(self.set_idle_timeout(*listener, *seconds, progress).await);
            }
            Step::LeaveBootstrap { targets, .. } => {
                let tg = self.group_arn(GroupKind::Bootstrap, progress)?;
                self.lb.deregister(&tg, targets).await?;
            }
            Step::WriteProperties { port, claim, .. } => {
                return self
                    .write_properties(ctx, observed, (*port, *claim), progress)
                    .await;
            }
        }
        Ok(Outcome::Done(step.clone()))
    }

    /// Sets the idle timeout of the listener this pass created. Best effort: a refusal (an IAM
    /// policy from before this permission, say) is a warning and a line in the report, never a
    /// failed pass; the accountant's sweep tries again later (see [`crate::idle`]). Skipped
    /// when another host created the bootstrap listener (its creator sets it).
    async fn set_idle_timeout(
        &self,
        listener: ListenerKind,
        seconds: u32,
        progress: &mut Progress,
    ) -> Outcome {
        let arn = match listener {
            ListenerKind::Bootstrap => progress.bootstrap_created.clone(),
            ListenerKind::Claim => progress.claim.as_ref().map(|c| c.listener_arn.clone()),
        };
        // Another host created the bootstrap listener and sets it (the join is reported).
        let Some(arn) = arn else {
            return Outcome::Skipped(None);
        };
        match self.lb.set_listener_idle_timeout(&arn, seconds).await {
            Ok(()) => Outcome::Done(Step::SetIdleTimeout { listener, seconds }),
            Err(e) => {
                tracing::warn!(error = %e, "cannot set the listener's idle timeout; NLB default 350 s stays (nlb.idle_timeout = \"off\" silences this)");
                Outcome::Skipped(Some(format!(
                    "idle timeout of the {listener} listener not set: {e}"
                )))
            }
        }
    }

    fn cluster_tags(&self, role: &str, broker_id: Option<i32>) -> Vec<(String, String)> {
        let mut tags = vec![(
            registry::TAG_CLUSTER.to_string(),
            self.config.cluster.clone(),
        )];
        if let Some(id) = broker_id {
            tags.push((registry::TAG_BROKER_ID.into(), id.to_string()));
        }
        tags.push((registry::TAG_ROLE.into(), role.into()));
        tags
    }

    fn spec(
        &self,
        ctx: &Context,
        d: &Desired,
        name: &str,
        tags: &[(String, String)],
    ) -> TargetGroupSpec {
        TargetGroupSpec {
            name: name.to_string(),
            vpc_id: ctx.identity.vpc_id.clone(),
            port: d.target_port,
            tags: tags.to_vec(),
            load_balancer_arn: d.lb_arn.clone(),
        }
    }

    /// Creates the bootstrap group `group` and its listener on `port`; joins another host's if
    /// it came first.
    async fn create_bootstrap(
        &self,
        ctx: &Context,
        d: &Desired,
        group: &str,
        port: u16,
        progress: &mut Progress,
    ) -> Result<(), Error> {
        let lb_arn = &d.lb_arn;
        let tags = self.cluster_tags("bootstrap", None);
        let tg = self
            .lb
            .ensure_target_group(&self.spec(ctx, d, group, &tags))
            .await?;
        progress.ensured.push(tg.clone());
        match self.lb.create_listener(lb_arn, port, &tg, &tags).await? {
            ListenerClaim::Claimed(listener) => {
                progress.bootstrap_tg = Some(tg);
                progress.bootstrap_created = Some(listener);
            }
            ListenerClaim::QuotaReached => {
                self.lb.delete_target_group(&tg).await?;
                return Err(Error::ListenerQuota {
                    lb_arn: lb_arn.clone(),
                    port,
                    group: group.to_string(),
                    max: MAX_LISTENERS_PER_NLB,
                });
            }
            ListenerClaim::PortTaken => {
                // Another host created it between our read and now: ours is unused; theirs
                // must be this cluster's to be joined.
                self.lb.delete_target_group(&tg).await?;
                let l = self.winning_bootstrap(d, port).await?;
                let theirs = l.target_group_arn.clone().ok_or(Error::BootstrapUnusable {
                    arn: l.arn.clone(),
                    port: l.port,
                })?;
                checks::bootstrap_owner(&self.lb, &self.checked, &self.config, d, &theirs).await?;
                progress.bootstrap_targets = self.lb.targets(&theirs).await?;
                progress.races.push(format!(
                    "another host created the bootstrap listener on port {port} first; joined it"
                ));
                progress.bootstrap_tg = Some(theirs);
            }
        }
        Ok(())
    }

    /// The listener another host just created on the bootstrap port. ELBv2 is eventually
    /// consistent: the winner's listener can be missing from DescribeListeners for a moment after
    /// CreateListener answered us `DuplicateListener`, so it is read again with back-off until it
    /// shows or the pass deadline comes.
    async fn winning_bootstrap(
        &self,
        d: &Desired,
        port: u16,
    ) -> Result<crate::nlb::Listener, Error> {
        let lb_arn = &d.lb_arn;
        let started = tokio::time::Instant::now();
        let mut attempt = 0;
        loop {
            let found = self
                .lb
                .listeners(lb_arn)
                .await?
                .into_iter()
                .find(|l| l.port == port);
            if let Some(l) = found {
                return Ok(l);
            }
            if !self.calls.pause(attempt, started).await {
                return Err(Error::Nlb(NlbError {
                    operation: "CreateListener",
                    resource: format!("{lb_arn} port {port}"),
                    code: "DuplicateListener".into(),
                    message: format!(
                        "port reported taken but no listener showed on it in {} read(s) until the pass deadline",
                        attempt + 1
                    ),
                }));
            }
            attempt += 1;
        }
    }

    /// Creates (or adopts, after a killed pass) the dedicated group `group` a claim will
    /// forward to.
    async fn create_dedicated_group(
        &self,
        ctx: &Context,
        d: &Desired,
        group: &str,
        progress: &mut Progress,
    ) -> Result<String, Error> {
        let tags = self.cluster_tags("broker", Some(ctx.broker_id));
        let tg = self
            .lb
            .ensure_target_group(&self.spec(ctx, d, group, &tags))
            .await?;
        progress.ensured.push(tg.clone());
        progress.pending_group = Some(tg.clone());
        Ok(tg)
    }

    /// Claims a port for the pending group: the step's candidates in order, moving on when
    /// another host took one first. No port (or the listener quota): the group is deleted again;
    /// with several NLBs the pass then plans again for the next NLB with room
    /// ([`Replan::ShardFilled`]).
    async fn claim_port(
        &self,
        ctx: &Context,
        d: &Desired,
        step: &Step,
        candidates: &[u16],
        progress: &mut Progress,
    ) -> Result<Outcome, Error> {
        // The plan puts CreateDedicatedGroup first; a caller running ClaimPort alone gets one.
        let tg = match progress.pending_group.clone() {
            Some(tg) => tg,
            None => {
                self.create_dedicated_group(ctx, d, &d.dedicated_group, progress)
                    .await?
            }
        };
        let tags = self.cluster_tags("broker", Some(ctx.broker_id));
        let search = self
            .search_ports(d, candidates, &tg, &tags, progress)
            .await?;
        let (port, arn) = match search {
            Ok(claimed) => claimed,
            Err(why) => {
                // Leave nothing behind: the group exists only to be forwarded to.
                self.lb.delete_target_group(&tg).await?;
                progress.pending_group = None;
                return self.no_port(ctx, d, why);
            }
        };
        if progress.collisions > 0 {
            progress.races.push(format!(
                "{} port(s) taken by other hosts first; claimed {port}",
                progress.collisions
            ));
        }
        progress.pending_group = None;
        progress.claim = Some(Claim {
            port,
            listener_arn: arn,
            target_group_arn: tg,
        });
        let mut executed = step.clone();
        if let Step::ClaimPort { claimed, .. } = &mut executed {
            *claimed = Some(port);
        }
        Ok(Outcome::Done(executed))
    }

    /// Tries ports on NLB `d`, the plan's `candidates` first, until one is claimed, the quota
    /// is reached or no port is free. After a port turns out taken, the NLB is read again: in a
    /// burst of hosts most ports seen free at the observation are gone, and one
    /// DescribeListeners tells which are really free (and whether the quota leaves room) where
    /// trying each stale port would cost one refused CreateListener apiece. Each port is tried
    /// at most once.
    async fn search_ports(
        &self,
        d: &Desired,
        candidates: &[u16],
        tg: &str,
        tags: &[(String, String)],
        progress: &mut Progress,
    ) -> Result<Result<(u16, String), NoPort>, Error> {
        let mut candidates = candidates.to_vec();
        let mut tried = std::collections::BTreeSet::new();
        while let Some(port) = candidates.iter().copied().find(|p| !tried.contains(p)) {
            tried.insert(port);
            match self.lb.create_listener(&d.lb_arn, port, tg, tags).await? {
                ListenerClaim::Claimed(arn) => return Ok(Ok((port, arn))),
                ListenerClaim::QuotaReached => return Ok(Err(NoPort::Quota { port })),
                ListenerClaim::PortTaken => {
                    progress.collisions += 1;
                    tracing::info!(port, "port taken by another host; reading the NLB again");
                    let listeners = self.lb.listeners(&d.lb_arn).await?;
                    if listeners.len() >= MAX_LISTENERS_PER_NLB {
                        return Ok(Err(NoPort::Quota { port }));
                    }
                    // The step's order stays; only ports now seen taken drop out.
                    let fresh = crate::plan::assess(d, &listeners, None);
                    candidates.retain(|p| !fresh.occupied.contains(p));
                }
            }
        }
        Ok(Err(NoPort::AllTaken { tried: tried.len() }))
    }

    /// A claim that found no port on NLB `d`: with several NLBs the pass plans again for the
    /// next with room ([`Replan::ShardFilled`]); with one, an error naming the quota or the range.
    fn no_port(&self, ctx: &Context, d: &Desired, why: NoPort) -> Result<Outcome, Error> {
        let lb_arn = d.lb_arn.clone();
        if ctx.shards.len() > 1 {
            let why = match why {
                NoPort::Quota { port } => {
                    format!("TooManyListeners on port {port}: {MAX_LISTENERS_PER_NLB} listeners")
                }
                NoPort::AllTaken { tried } => {
                    format!("no free port in nlb.port_range ({tried} tried)")
                }
            };
            return Ok(Outcome::Replan(Replan::ShardFilled {
                shard: d.shard,
                lb_arn,
                why,
            }));
        }
        Err(match why {
            NoPort::Quota { port } => Error::ListenerQuota {
                lb_arn,
                port,
                group: d.dedicated_group.clone(),
                max: MAX_LISTENERS_PER_NLB,
            },
            NoPort::AllTaken { tried } => Error::RangeExhausted {
                range: self.config.nlb.port_range.to_string(),
                lb_arn,
                tried,
                group: d.dedicated_group.clone(),
            },
        })
    }

    fn group_arn(&self, group: GroupKind, progress: &Progress) -> Result<String, Error> {
        let arn = match group {
            GroupKind::Bootstrap => progress.bootstrap_tg.clone(),
            GroupKind::Dedicated => progress.claim.as_ref().map(|c| c.target_group_arn.clone()),
        };
        arn.ok_or_else(|| {
            Error::Nlb(NlbError {
                operation: "RegisterTargets",
                resource: format!("the {group} target group"),
                code: "TargetGroupNotFound".into(),
                message: "the plan registers into a group this pass did not establish".into(),
            })
        })
    }

    /// Registers `target` (this instance) in `group`; first points a group this release did not
    /// create at the traffic port for health checks.
    async fn register(
        &self,
        d: &Desired,
        group: GroupKind,
        (instance_id, port): (&str, u16),
        progress: &Progress,
    ) -> Result<(), Error> {
        let tg = self.group_arn(group, progress)?;
        // Groups under this release's names were created with `traffic-port`; only 0.1's (and
        // adopted ones) may probe a fixed port.
        let current = crate::nlb::target_group_name(&tg)
            .is_some_and(|n| n == d.dedicated_group || n == d.bootstrap_group);
        if !progress.ensured.contains(&tg) && !current {
            checks::traffic_port(&self.lb, &self.checked, &tg).await?;
        }
        self.lb
            .register(&tg, &[(instance_id.to_string(), port)])
            .await?;
        Ok(())
    }

    /// Writes the claim's endpoint into the file as it is on disk now (config management may
    /// have rewritten it since the observation: this read is the one that detects it). The port
    /// is the observed claim's, as planned, or the one this pass's claim got.
    async fn write_properties(
        &self,
        ctx: &Context,
        observed: &Observed,
        (planned, claim): (u16, ClaimOf),
        progress: &mut Progress,
    ) -> Result<Outcome, Error> {
        let port = match (claim, progress.claim.as_ref()) {
            (ClaimOf::ThisPass, Some(c)) => c.port,
            (ClaimOf::Observed, Some(c)) if c.port == planned => planned,
            _ => {
                return Err(Error::Nlb(NlbError {
                    operation: "CreateListener",
                    resource: format!("port {planned}"),
                    code: "NoClaim".into(),
                    message: "the plan writes the file for a claim this pass does not hold".into(),
                }))
            }
        };
        let d = ctx.shard(observed.shard);
        let path = &d.properties_path;
        let text = self.server_properties()?;
        let edit_error = |e| PropertiesError::from_edit(path, e);
        let Some(new_text) = d.edited_file(&text, port).map_err(edit_error)? else {
            return Ok(Outcome::Skipped(Some(
                "server.properties changed on disk and already says this".into(),
            )));
        };
        let file_rack = properties::Properties::parse(&text)
            .map_err(edit_error)?
            .get(properties::BROKER_RACK);
        properties::write_atomic(path, &new_text, Some(&properties::backup_path(path)))?;
        self.file.wrote(path, &new_text);
        progress.properties_written = true;
        Ok(Outcome::Done(Step::WriteProperties {
            path: path.display().to_string(),
            from: observed.file_endpoint.clone(),
            to: d.endpoint(port),
            port,
            claim,
            rack: d.rack_change(file_rack.as_deref()),
        }))
    }
}

/// A claim made on another port than its step's first candidate: the file must follow it, so
/// the pass plans again (the next plan writes the claimed port, or nothing if the file says it).
fn moved_claim(done: &[Step]) -> Option<Replan> {
    done.iter().find_map(|s| match s {
        Step::ClaimPort {
            first_candidate,
            claimed: Some(claimed),
            ..
        } if claimed != first_candidate => Some(Replan::ClaimMoved {
            planned: *first_candidate,
            claimed: *claimed,
        }),
        _ => None,
    })
}

/// Why a claim found no port on an NLB.
#[derive(Debug)]
enum NoPort {
    /// The NLB is at the listener quota (seen when claiming `port`).
    Quota {
        /// The port being claimed.
        port: u16,
    },
    /// Every port tried was taken and none is left free.
    AllTaken {
        /// Ports tried.
        tried: usize,
    },
}
