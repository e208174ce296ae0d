//! One reconcile pass: observe everything, plan purely, act only on drift.
//!
//! A pass is level-triggered and safe to kill at any point: every step either completes a goal or
//! leaves state that the next pass recognizes and finishes (an adopted target group, a claim
//! without registrations, an unchanged file). The order matters where a crash could leak: the
//! dedicated target group is created before the listener that claims a port for it, and deleted
//! again if no port can be had.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::broker_id::{self, BrokerIdError, Found, Source};
use crate::config::{render_host, Config, HostValues};
use crate::ec2::{Ec2Error, InstanceTags};
use crate::execute::{claim_candidates, Progress};
use crate::kafka::KafkaCluster;
use crate::lifecycle::{self, Lifecycle};
use crate::metadata::{self, Identity, InstanceMetadata, MetadataError, TagLookup};
use crate::nlb::{CallCounter, LoadBalancer, NlbError, TRAFFIC_PORT};
use crate::node::NodeRole;
pub use crate::plan::Observed;
use crate::plan::{self, Desired, Step};
use crate::properties::{self, ListenerEdit, PropertiesError};
use crate::registry;
use crate::restart::{Outcome, Restarter, ServiceManager};

/// Why a pass failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Instance metadata could not be read.
    #[error(transparent)]
    Metadata(#[from] MetadataError),
    /// The broker id is missing, invalid or contested.
    #[error(transparent)]
    BrokerId(#[from] BrokerIdError),
    /// An ELBv2 call failed.
    #[error(transparent)]
    Nlb(#[from] NlbError),
    /// EC2 DescribeTags failed.
    #[error(transparent)]
    Ec2(#[from] Ec2Error),
    /// `server.properties` or a `meta.properties` could not be read, edited or written.
    #[error(transparent)]
    Properties(#[from] PropertiesError),
    /// The advertised host template could not be rendered.
    #[error("listener.advertised_host: {0}")]
    AdvertisedHost(String),
    /// Every port in the range is held by another listener.
    #[error("no free port in nlb.port_range {range} on {lb_arn} ({tried} tried); removed target group {group} again")]
    RangeExhausted {
        /// The configured range.
        range: String,
        /// The NLB.
        lb_arn: String,
        /// Ports attempted in this pass.
        tried: usize,
        /// The dedicated target group that was cleaned up.
        group: String,
    },
    /// Making Kafka use the new listener failed.
    #[error(transparent)]
    Restart(#[from] crate::restart::RestartError),
    /// The listener on the bootstrap port does not forward to a single target group.
    #[error("listener {arn} on bootstrap port {port} does not forward to a single target group; fix or remove it")]
    BootstrapUnusable {
        /// Listener ARN.
        arn: String,
        /// Its port.
        port: u16,
    },
    /// The listener on the bootstrap port belongs to another cluster (or to nobody the agent
    /// knows): joining it would send this cluster's clients to another cluster's brokers.
    #[error("the listener on nlb.bootstrap_port {port} of {lb_arn} forwards to target group {group}, which belongs to {owner}, not to cluster {cluster}; give this cluster its own bootstrap_port (nothing was changed)")]
    BootstrapForeign {
        /// The port.
        port: u16,
        /// The NLB.
        lb_arn: String,
        /// The listener's target group.
        group: String,
        /// Who owns it: `cluster X`, or a note that it has no cluster tag.
        owner: String,
        /// This cluster.
        cluster: String,
    },
    /// The NLB is not enabled in this instance's Availability Zone: its targets here would never
    /// receive traffic.
    #[error("{lb_arn} is not enabled in this instance's Availability Zone {az_id} ({az}); it is enabled in [{enabled}]. Add a subnet in {az} to the NLB (nothing was created, server.properties unchanged)")]
    AzNotEnabled {
        /// The NLB.
        lb_arn: String,
        /// AZ ID.
        az_id: String,
        /// AZ name.
        az: String,
        /// The zones the NLB is enabled in.
        enabled: String,
    },
    /// CreateListener answered `TooManyListeners`.
    #[error("{lb_arn} already has {max} listeners, AWS's quota per Network Load Balancer (not adjustable): cannot create the listener on port {port}; removed target group {group} again (nothing left behind)")]
    ListenerQuota {
        /// The NLB.
        lb_arn: String,
        /// The port that could not be taken.
        port: u16,
        /// The target group that was cleaned up.
        group: String,
        /// The quota.
        max: usize,
    },
}

impl Error {
    /// Failure kind, the `kind` label of `kplink_pass_failures_total`.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Metadata(_) => "metadata",
            Error::BrokerId(_) | Error::AdvertisedHost(_) => "broker_id",
            Error::Nlb(_)
            | Error::Ec2(_)
            | Error::BootstrapUnusable { .. }
            | Error::BootstrapForeign { .. }
            | Error::AzNotEnabled { .. } => "aws",
            Error::Properties(_) => "properties",
            Error::RangeExhausted { .. } | Error::ListenerQuota { .. } => "port_range",
            Error::Restart(
                crate::restart::RestartError::Kafka(_)
                | crate::restart::RestartError::Unreachable { .. },
            ) => "kafka",
            Error::Restart(_) => "restart",
        }
    }
}

/// Who this host is, resolved once per pass.
#[derive(Debug, Clone, Serialize)]
pub struct Context {
    /// Instance identity.
    pub identity: Identity,
    /// Broker id.
    pub broker_id: i32,
    /// Where the broker id came from.
    pub broker_id_source: String,
    /// Rendered advertised host.
    pub advertised_host: String,
    /// Desired NLB shape.
    pub desired: Desired,
}

/// What a pass did.
#[derive(Debug, Clone, Serialize)]
pub struct PassReport {
    /// Broker id.
    pub broker_id: i32,
    /// Instance id.
    pub instance_id: String,
    /// AZ ID.
    pub az_id: String,
    /// The claimed port.
    pub port: u16,
    /// Advertised endpoint, `host:port`.
    pub advertised: String,
    /// The claiming listener.
    pub listener_arn: String,
    /// The dedicated target group.
    pub target_group_arn: String,
    /// The bootstrap target group.
    pub bootstrap_target_group_arn: String,
    /// A legacy restart lock listener (on the port of
    /// [`crate::config::RestartConfig::legacy_lock_port`], left by an older agent, release 0.1)
    /// as the pass saw it; `None` almost always: the lock is a target group now, which the pass
    /// does not read.
    pub lock_listener_arn: Option<String>,
    /// Whether this instance is leaving; if so the pass drained it (out of the bootstrap group,
    /// claim and file kept) and Kafka is left alone.
    pub lifecycle: Lifecycle,
    /// Changes made, in order: the planned steps as executed.
    pub changes: Vec<Step>,
    /// How races with other hosts were resolved during the pass (see [`crate::execute`]).
    pub races: Vec<String>,
    /// Ports that another host took first during this pass.
    pub claim_collisions: u32,
    /// Whether `server.properties` was rewritten.
    pub properties_written: bool,
    /// AWS calls of this pass, by operation.
    pub aws_calls: std::collections::BTreeMap<&'static str, u64>,
    /// Wall time of the pass.
    pub elapsed_ms: u128,
}

impl PassReport {
    /// Logs the pass with the structured fields operators filter on (journald: `BROKER_ID`, …).
    pub fn log(&self) {
        tracing::info!(
            broker_id = self.broker_id,
            port = self.port,
            listener_arn = %self.listener_arn,
            target_group_arn = %self.target_group_arn,
            changes = self.changes.len(),
            aws_calls = self.aws_calls.values().sum::<u64>(),
            draining = self.lifecycle.is_leaving(),
            "pass complete"
        );
    }
}

/// The agent's side-effect ports and configuration.
pub struct Agent<M, L, T> {
    /// Validated configuration.
    pub config: Config,
    /// Where it was loaded from (for messages).
    pub config_path: PathBuf,
    /// Instance metadata.
    pub metadata: M,
    /// The load balancer.
    pub lb: L,
    /// EC2 tag fallback.
    pub tags: T,
    /// AWS call counter shared with the adapters.
    pub calls: CallCounter,
    /// Bound on waiting for instance metadata.
    pub metadata_timeout: Duration,
    /// Checks that passed once in this process and need not be repeated every pass.
    pub checked: Checked,
}

/// Once-per-process checks that passed (AZ coverage, bootstrap ownership, health check port),
/// keyed by what they were about, so the steady state stays at three reads per pass.
#[derive(Debug, Default)]
pub struct Checked(Mutex<BTreeSet<String>>);

impl Checked {
    fn has(&self, key: &str) -> bool {
        self.0.lock().map(|s| s.contains(key)).unwrap_or(false)
    }
    fn mark(&self, key: String) {
        if let Ok(mut s) = self.0.lock() {
            s.insert(key);
        }
    }
}

impl<M: InstanceMetadata, L: LoadBalancer, T: InstanceTags> Agent<M, L, T> {
    /// Discovers identity and broker id and derives the desired NLB shape.
    pub async fn context(&self) -> Result<Context, Error> {
        let identity = metadata::discover(&self.metadata, self.metadata_timeout).await?;
        self.context_for(identity).await
    }

    /// Like [`Agent::context`] with an already discovered identity.
    pub async fn context_for(&self, identity: Identity) -> Result<Context, Error> {
        let (broker_id, source) = self.broker_id(&identity).await?;
        let values = HostValues {
            az_id: &identity.az_id,
            az: &identity.az,
            region: &identity.region,
            broker_id,
            instance_id: &identity.instance_id,
            cluster: &self.config.cluster,
        };
        let advertised_host = render_host(&self.config.listener.advertised_host, &values)
            .map_err(Error::AdvertisedHost)?;
        let rack = match &self.config.broker.rack {
            Some(template) => Some(
                render_host(template, &values)
                    .map_err(|e| Error::AdvertisedHost(format!("broker.rack: {e}")))?,
            ),
            None => None,
        };
        let desired = Desired {
            broker_id,
            instance_id: identity.instance_id.clone(),
            target_port: self.config.listener.port,
            port_range: self.config.port_range(),
            bootstrap_port: self.config.nlb.bootstrap_port,
            lock_port: self.config.restart.legacy_lock_port(&self.config.nlb),
            dedicated_group: registry::dedicated_group_name(
                &self.config.cluster,
                &self.config.nlb.load_balancer_arn,
                broker_id,
            ),
            legacy_dedicated_group: registry::legacy_dedicated_group_name(
                &self.config.cluster,
                broker_id,
            ),
            bootstrap_group: registry::bootstrap_group_name(
                &self.config.cluster,
                &self.config.nlb.load_balancer_arn,
            ),
            properties_path: self.config.broker.server_properties.clone(),
            listener: ListenerEdit {
                name: self.config.listener.name.clone(),
                bind_port: self.config.listener.port,
                advertised_host: advertised_host.clone(),
                advertised_port: 0,
                security_protocol: self.config.listener.security_protocol.to_string(),
            },
            rack,
        };
        Ok(Context {
            identity,
            broker_id,
            broker_id_source: source.to_string(),
            advertised_host,
            desired,
        })
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
        let server = properties::Properties::parse(&properties::read(path)?)
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
    pub fn node_role(&self) -> Result<NodeRole, Error> {
        let path = &self.config.broker.server_properties;
        Ok(NodeRole::from_properties(&properties::read(path)?)
            .map_err(|e| PropertiesError::from_edit(path, e))?)
    }

    /// Checks made before the pass changes anything on the NLB, each once per process: the NLB
    /// is enabled in this instance's AZ (else its targets here never receive traffic), and the
    /// bootstrap listener, if there is one, belongs to this cluster.
    async fn preflight(&self, ctx: &Context, observed: &Observed) -> Result<(), Error> {
        let lb_arn = &self.config.nlb.load_balancer_arn;
        let az = &ctx.identity.az;
        let key = format!("az {lb_arn} {az}");
        if !self.checked.has(&key) {
            // Same account as the instance, so ELBv2's zone names are metadata's zone names.
            let zones = self.lb.availability_zones(lb_arn).await?;
            if !zones.iter().any(|z| z == az) {
                return Err(Error::AzNotEnabled {
                    lb_arn: lb_arn.clone(),
                    az_id: ctx.identity.az_id.clone(),
                    az: az.clone(),
                    enabled: zones.join(", "),
                });
            }
            self.checked.mark(key);
        }
        if let Some(tg) = observed
            .assessment
            .bootstrap
            .as_ref()
            .and_then(|l| l.target_group_arn.as_deref())
        {
            self.check_bootstrap_owner(tg).await?;
        }
        Ok(())
    }

    /// The bootstrap listener belongs to this cluster only if its group carries this cluster's
    /// tag (the agent tags every group it creates).
    pub(crate) async fn check_bootstrap_owner(&self, tg: &str) -> Result<(), Error> {
        let key = format!("owner {tg}");
        if self.checked.has(&key) {
            return Ok(());
        }
        let tags = self.lb.tags(tg).await?.unwrap_or_default();
        let cluster = &self.config.cluster;
        match registry::foreign_owner(&tags, cluster) {
            None => {
                self.checked.mark(key);
                Ok(())
            }
            Some(owner) => Err(Error::BootstrapForeign {
                port: self.config.nlb.bootstrap_port,
                lb_arn: self.config.nlb.load_balancer_arn.clone(),
                group: crate::nlb::target_group_name(tg).unwrap_or(tg).to_string(),
                owner,
                cluster: cluster.clone(),
            }),
        }
    }

    /// Before registering into a group this pass did not create: its health check probes the
    /// traffic port (groups made by 0.1 probe a fixed port, wrong once `listener.port` changes or
    /// brokers of one bootstrap group use different ports).
    pub(crate) async fn ensure_traffic_port(&self, tg: &str) -> Result<(), Error> {
        let key = format!("health {tg}");
        if self.checked.has(&key) {
            return Ok(());
        }
        let info = self.lb.target_group_info(&[tg.to_string()]).await?;
        if info.iter().any(|i| i.health_check_port != TRAFFIC_PORT) {
            self.lb.health_check_traffic_port(tg).await?;
            tracing::info!(
                target_group = tg,
                "health check now probes the traffic port"
            );
        }
        self.checked.mark(key);
        Ok(())
    }

    /// Whether this instance is leaving, from instance metadata (see [`crate::lifecycle`]).
    pub async fn lifecycle(&self) -> Result<Lifecycle, Error> {
        Ok(lifecycle::read(&self.metadata).await?)
    }

    /// Reads the instance's lifecycle, the NLB and the file; changes nothing.
    pub async fn observe(&self, ctx: &Context) -> Result<Observed, Error> {
        let lb_arn = &self.config.nlb.load_balancer_arn;
        let path = &self.config.broker.server_properties;
        // First: a pass that cannot tell whether the instance is leaving stops here, before any
        // AWS call.
        let lifecycle = self.lifecycle().await?;
        let text = properties::read(path)?;
        let file_endpoint = properties::advertised_endpoint(&text, &self.config.listener.name)
            .map_err(|e| PropertiesError::from_edit(path, e))?;
        let file_rack = properties::Properties::parse(&text)
            .map_err(|e| PropertiesError::from_edit(path, e))?
            .get(properties::BROKER_RACK);
        // Refuse before touching the NLB: a file that cannot be edited safely must not leave a
        // claimed port behind that no broker advertises.
        ctx.desired
            .edited_file(&text, *ctx.desired.port_range.start())
            .map_err(|e| PropertiesError::from_edit(path, e))?;
        let keep_port = plan::endpoint_port(file_endpoint.as_deref());
        let listeners = self.lb.listeners(lb_arn).await?;
        let assessment = plan::assess(&ctx.desired, &listeners, keep_port);
        let dedicated_targets = match assessment
            .claim
            .as_ref()
            .and_then(|l| l.target_group_arn.as_deref())
        {
            Some(tg) => self.lb.targets(tg).await?,
            None => Vec::new(),
        };
        let bootstrap_targets = match assessment
            .bootstrap
            .as_ref()
            .and_then(|l| l.target_group_arn.as_deref())
        {
            Some(tg) => self.lb.targets(tg).await?,
            None => Vec::new(),
        };
        Ok(Observed {
            assessment,
            dedicated_targets,
            bootstrap_targets,
            file_endpoint,
            file_rack,
            properties_text: text,
            lifecycle,
        })
    }

    /// The steps a pass would take now (for `plan`; `pass` runs exactly these).
    pub fn plan(&self, ctx: &Context, observed: &Observed) -> Result<Vec<Step>, Error> {
        let first = claim_candidates(ctx, observed).first().copied();
        plan::plan(&ctx.desired, observed, first).map_err(|e| {
            Error::Properties(PropertiesError::from_edit(
                &self.config.broker.server_properties,
                e,
            ))
        })
    }

    /// One full reconcile pass: observe, plan, check (when the plan changes the NLB), execute.
    /// A leaving instance is drained instead (see [`crate::plan::drain_steps`]).
    pub async fn pass(&self, ctx: &Context) -> Result<PassReport, Error> {
        self.pass_after(ctx, &Lifecycle::Staying).await
    }

    /// [`Agent::pass`] in a process whose earlier passes saw `earlier`: an instance once seen
    /// leaving stays drained even if metadata now says otherwise ([`Lifecycle::after`]).
    pub async fn pass_after(
        &self,
        ctx: &Context,
        earlier: &Lifecycle,
    ) -> Result<PassReport, Error> {
        let started = Instant::now();
        let calls_before = self.calls.snapshot();
        let mut observed = self.observe(ctx).await?;
        observed.lifecycle = std::mem::take(&mut observed.lifecycle).after(earlier);
        let leaving = observed.lifecycle.is_leaving();
        let steps = self.plan(ctx, &observed)?;
        // A drain only takes this instance out of a group it is in: no check can make that wrong.
        if !leaving && steps.iter().any(Step::touches_nlb) {
            self.preflight(ctx, &observed).await?;
        }
        let mut progress = Progress::from_observed(&observed);
        let changes = self.execute(ctx, &observed, &steps, &mut progress).await?;
        let claim = match progress.claim.clone() {
            Some(claim) => claim,
            // Leaving before it ever claimed a port: nothing to keep.
            None if leaving => crate::execute::Claim {
                port: 0,
                listener_arn: String::new(),
                target_group_arn: String::new(),
            },
            None => {
                return Err(Error::Nlb(NlbError {
                    operation: "CreateListener",
                    resource: self.config.nlb.load_balancer_arn.clone(),
                    code: "NoClaim".into(),
                    message: "the pass ended without a claim".into(),
                }))
            }
        };
        let after = self.calls.snapshot();
        let aws_calls = after
            .into_iter()
            .filter_map(|(op, n)| {
                let delta = n - calls_before.get(op).copied().unwrap_or(0);
                (delta > 0).then_some((op, delta))
            })
            .collect();
        Ok(PassReport {
            broker_id: ctx.broker_id,
            instance_id: ctx.identity.instance_id.clone(),
            az_id: ctx.identity.az_id.clone(),
            port: claim.port,
            advertised: ctx.desired.endpoint(claim.port),
            listener_arn: claim.listener_arn,
            target_group_arn: claim.target_group_arn,
            bootstrap_target_group_arn: progress.bootstrap_tg.unwrap_or_default(),
            lock_listener_arn: observed.assessment.lock.as_ref().map(|l| l.arn.clone()),
            lifecycle: observed.lifecycle,
            changes,
            races: progress.races,
            claim_collisions: progress.collisions,
            properties_written: progress.properties_written,
            aws_calls,
            elapsed_ms: started.elapsed().as_millis(),
        })
    }

    /// Removes this broker from the NLB (bootstrap membership, its listener(s), its dedicated
    /// group) and, unless `keep_config`, its listener from `server.properties`. Idempotent:
    /// a second run finds nothing to do. Returns what was done.
    pub async fn decommission(
        &self,
        ctx: &Context,
        keep_config: bool,
    ) -> Result<Vec<String>, Error> {
        let lb_arn = &self.config.nlb.load_balancer_arn;
        let d = &ctx.desired;
        let mut done = Vec::new();
        let listeners = self.lb.listeners(lb_arn).await?;
        let a = plan::assess(d, &listeners, None);
        let dedicated_tg = match a.claim.as_ref().and_then(|l| l.target_group_arn.clone()) {
            Some(arn) => Some(arn),
            None => self.unclaimed_dedicated_group(d).await?,
        };
        // Clients stop being routed here first: leave the bootstrap group.
        if let Some(boot) = a
            .bootstrap
            .as_ref()
            .and_then(|l| l.target_group_arn.as_deref())
        {
            done.extend(
                self.leave_bootstrap(d, boot, dedicated_tg.as_deref())
                    .await?,
            );
        }
        for l in a.claim.iter().chain(a.duplicate_claims.iter()) {
            self.lb.delete_listener(&l.arn).await?;
            done.push(format!("deleted listener on port {} ({})", l.port, l.arn));
        }
        if let Some(tg) = dedicated_tg {
            self.lb.delete_target_group(&tg).await?;
            let name = crate::nlb::target_group_name(&tg).unwrap_or(&d.dedicated_group);
            done.push(format!("deleted target group {name} ({tg})"));
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

    /// This broker's dedicated group when no listener forwards to it (a pass killed before its
    /// claim): by this release's name, else by 0.1's name if no other load balancer uses it.
    async fn unclaimed_dedicated_group(&self, d: &Desired) -> Result<Option<String>, Error> {
        if let Some(arn) = self.lb.find_target_group(&d.dedicated_group).await? {
            return Ok(Some(arn));
        }
        let lb_arn = &self.config.nlb.load_balancer_arn;
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

    /// Makes the running broker use what the last pass wrote (see [`crate::restart`]).
    pub async fn make_effective<K: KafkaCluster, S: ServiceManager>(
        &self,
        ctx: &Context,
        report: &PassReport,
        kafka: &K,
        service: &S,
        lock_held: &tokio::sync::watch::Sender<bool>,
    ) -> Result<Outcome, Error> {
        let path = &self.config.broker.server_properties;
        let file = properties::Properties::parse(&properties::read(path)?)
            .map_err(|e| PropertiesError::from_edit(path, e))?;
        let file_value = file.get("advertised.listeners").unwrap_or_default();
        let restarter = Restarter {
            lb: &self.lb,
            kafka,
            service,
            config: &self.config,
            broker_id: ctx.broker_id,
            role: self.node_role()?,
            rack: ctx.desired.rack.as_deref(),
            holder: format!("{}/{}", ctx.broker_id, ctx.identity.instance_id),
            vpc_id: ctx.identity.vpc_id.clone(),
            legacy_lock: report.lock_listener_arn.clone(),
            lock_held,
        };
        Ok(restarter
            .make_effective(&report.advertised, &file_value)
            .await?)
    }
}
