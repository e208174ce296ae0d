//! One reconcile pass: observe everything, plan purely, act only on drift.
//!
//! A pass is level-triggered and safe to kill at any point: every step either completes a goal or
//! leaves state that the next pass recognizes and finishes (an adopted target group, a claim
//! without registrations, an unchanged file). The order matters where a crash could leak: the
//! dedicated target group is created before the listener that claims a port for it, and deleted
//! again if no port can be had.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::broker_id::{self, Found, Source};
use crate::checks;
use crate::config::{render_host, Config, HostValues};
use crate::ec2::InstanceTags;
use crate::kafka::KafkaCluster;
use crate::lifecycle::{self, Lifecycle};
use crate::metadata::{self, Identity, InstanceMetadata, TagLookup};
use crate::model::{Agent, Error, PassReport};
use crate::model::{Claim, Progress};
use crate::nlb::{LoadBalancer, NlbError, MAX_LISTENERS_PER_NLB};
use crate::node::NodeRole;
use crate::plan::Context;
use crate::plan::Observed;
use crate::plan::{self, Desired, Step};
use crate::plan::{claim_candidates, claim_candidates_for};
use crate::properties::{self, ListenerEdit, PropertiesError};
use crate::registry;
use crate::restart::{Outcome, Restarter, ServiceManager};
use crate::steady;

/// One NLB as a pass read it.
#[derive(Debug)]
struct ShardView {
    /// Its index.
    index: usize,
    /// Its listeners, read for this broker.
    assessment: plan::Assessment,
    /// Why a new claim of this broker has no room on it (`None`: it has; see [`shard_room`]).
    no_room: Option<String>,
}

/// The NLBs read while looking for this broker's claim.
#[derive(Debug)]
struct Scan {
    /// The NLB holding the claim, if any.
    found: Option<ShardView>,
    /// The NLBs read without finding it, in reading order.
    looked: Vec<ShardView>,
    /// The NLB the file names.
    hint: Option<usize>,
    /// The port the file names.
    keep_port: Option<u16>,
}

impl Scan {
    /// The file's port decides which of several claims survives, on the NLB the file names (on
    /// any NLB when the file names none).
    fn keep_on(&self, index: usize) -> Option<u16> {
        (self.hint.is_none() || self.hint == Some(index))
            .then_some(self.keep_port)
            .flatten()
    }
}

/// Where a new claim goes (pure): the first NLB in the scan's order (the file's NLB, then this
/// broker's spread order, see [`registry::shard_order`]) with a free port and room under the
/// listener quota, with the NLBs passed over and why. With one NLB it is that one whatever its
/// state (the claim then fails naming the range or the quota, as before shards existed); with
/// several and none left, the pass fails before creating anything. A leaving instance claims
/// nothing: the NLB its file names will do.
fn choose_shard(
    ctx: &Context,
    scan: Scan,
    full: &[usize],
    leaving: bool,
) -> Result<(ShardView, Vec<(usize, String)>), Error> {
    let mut looked = scan.looked;
    if (ctx.shards.len() == 1 || leaving) && !looked.is_empty() {
        let pick = scan.hint.unwrap_or(0);
        let at = looked.iter().position(|v| v.index == pick).unwrap_or(0);
        return Ok((looked.swap_remove(at), Vec::new()));
    }
    // NLBs filled during this pass were not read again (see `Agent::scan`).
    let mut no_room: Vec<(usize, String)> = full
        .iter()
        .map(|i| {
            (
                *i,
                "filled up by other brokers during this pass".to_string(),
            )
        })
        .collect();
    for view in looked {
        match &view.no_room {
            Some(why) => no_room.push((view.index, why.clone())),
            None => return Ok((view, no_room)),
        }
    }
    no_room.sort();
    Err(Error::AllFull {
        count: ctx.shards.len(),
        max: MAX_LISTENERS_PER_NLB,
        details: no_room
            .iter()
            .map(|(i, why)| format!("shard {i} ({}): {why}", ctx.shard(*i).lb_arn))
            .collect::<Vec<_>>()
            .join("; "),
    })
}

/// Why NLB `index`, as `assessment` and its `listener_count` describe it, has no room for a new
/// claim of this broker (`None`: it has). Pure.
fn shard_room(
    ctx: &Context,
    index: usize,
    assessment: &plan::Assessment,
    listener_count: usize,
    keep: Option<u16>,
) -> Option<String> {
    let first = claim_candidates_for(ctx, index, assessment, keep)
        .first()
        .copied();
    plan::no_room(ctx.shard(index), assessment, listener_count, first)
}

/// Which agent setting resolves a rule the agent's edit would break.
fn kafka_rule_hint(v: &crate::kafka_rules::Violation, config: &Config) -> String {
    use crate::kafka_rules::Rule;
    match v.rule {
        Rule::DuplicatePort => format!(
            "give the managed listener a free port: listener.port (now {}) in the agent's config",
            config.listener.port
        ),
        Rule::DuplicateName => format!(
            "give the managed listener a name of its own: listener.name (now {})",
            config.listener.name
        ),
        Rule::NoSecurityProtocol | Rule::ProtocolMapSyntax => format!(
            "map the managed listener in listener.security.protocol.map, or set listener.security_protocol (now {})",
            config.listener.security_protocol
        ),
        _ => format!("fix {} in server.properties first", v.setting),
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
        let render = |template: &str, shard: usize| {
            let values = HostValues {
                az_id: &identity.az_id,
                az: &identity.az,
                region: &identity.region,
                broker_id,
                instance_id: &identity.instance_id,
                cluster: &self.config.cluster,
                shard,
            };
            render_host(template, &values)
        };
        let mut shards = Vec::new();
        for shard in self.config.nlb.load_balancers() {
            let advertised_host = render(&self.config.listener.advertised_host, shard.index)
                .map_err(Error::AdvertisedHost)?;
            let rack = match &self.config.broker.rack {
                Some(template) => Some(
                    render(template, shard.index)
                        .map_err(|e| Error::AdvertisedHost(format!("broker.rack: {e}")))?,
                ),
                None => None,
            };
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
            lock_port: self.config.restart.legacy_lock_port(&self.config.nlb),
            dedicated_group: registry::dedicated_group_name(cluster, &lb_arn, broker_id),
            legacy_dedicated_group: registry::legacy_dedicated_group_name(cluster, broker_id),
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

    /// Whether this instance is leaving, from instance metadata (see [`crate::lifecycle`]).
    pub async fn lifecycle(&self) -> Result<Lifecycle, Error> {
        Ok(lifecycle::read(&self.metadata).await?)
    }

    /// Reads the instance's lifecycle, the NLB(s) and the file; changes nothing.
    pub async fn observe(&self, ctx: &Context) -> Result<Observed, Error> {
        self.observe_excluding(ctx, &[]).await
    }

    /// [`Agent::observe`], with NLBs that filled up earlier in this pass (`full`) not chosen for
    /// a new claim.
    ///
    /// Which NLB: the claim's, wherever it is (a claim is stable: found on any configured NLB, it
    /// stays there). The NLB the file names is read first, so a broker with a claim reads one
    /// NLB; a new claim goes to the first NLB of this broker's order with a free port and room
    /// under the listener quota (see `Agent::scan` for which NLBs are read). A converged daemon
    /// reads the NLB far less often: see [`crate::steady`].
    pub async fn observe_excluding(
        &self,
        ctx: &Context,
        full: &[usize],
    ) -> Result<Observed, Error> {
        let path = &self.config.broker.server_properties;
        // First: a pass that cannot tell whether the instance is leaving stops here, before any
        // AWS call.
        let lifecycle = self.lifecycle().await?;
        let text = properties::read(path)?;
        let file_endpoint = properties::advertised_endpoint(&text, &self.config.listener.name)
            .map_err(|e| PropertiesError::from_edit(path, e))?;
        let server = properties::Properties::parse(&text)
            .map_err(|e| PropertiesError::from_edit(path, e))?;
        let file_rack = server.get(properties::BROKER_RACK);
        // Refuse before touching the NLB: a file that cannot be edited safely (or that Kafka
        // would refuse to start on once edited) must not leave a claimed port behind that no
        // broker advertises.
        let broken = self.kafka_rules_already_broken(&server);
        for d in &ctx.shards {
            let edited = d
                .edited_file(&text, *d.port_range.start())
                .map_err(|e| PropertiesError::from_edit(path, e))?;
            if let Some(edited) = edited {
                self.refuse_kafka_rule_breaks(&broken, &edited)?;
            }
        }
        if full.is_empty() && !lifecycle.is_leaving() {
            if let Some(kept) = self.steady_view(ctx).await? {
                return Ok(Observed {
                    shard: kept.shard,
                    full: Vec::new(),
                    assessment: kept.assessment,
                    dedicated_targets: kept.dedicated_targets,
                    bootstrap_targets: kept.bootstrap_targets,
                    file_endpoint,
                    file_rack,
                    properties_text: text,
                    lifecycle,
                });
            }
        }
        let scan = self
            .scan(ctx, file_endpoint.as_deref(), full, lifecycle.is_leaving())
            .await?;
        let (view, no_room) = match scan.found {
            Some(claimed) => (claimed, Vec::new()),
            None => choose_shard(ctx, scan, full, lifecycle.is_leaving())?,
        };
        let assessment = view.assessment;
        let dedicated_targets = match assessment
            .claim
            .as_ref()
            .and_then(|l| l.target_group_arn.as_deref())
        {
            Some(tg) => self.lb.targets(tg).await?,
            None => Vec::new(),
        };
        // Without a claim this instance has no reason to be in the bootstrap group (it joins it
        // after claiming), so a new broker does not read it: registering is idempotent anyway.
        // A leaving instance reads it to leave it.
        let bootstrap_tg = assessment
            .bootstrap
            .as_ref()
            .and_then(|l| l.target_group_arn.as_deref());
        let bootstrap_targets = match bootstrap_tg {
            Some(tg) if assessment.claim.is_some() || lifecycle.is_leaving() => {
                self.lb.targets(tg).await?
            }
            _ => Vec::new(),
        };
        Ok(Observed {
            shard: view.index,
            full: no_room,
            assessment,
            dedicated_targets,
            bootstrap_targets,
            file_endpoint,
            file_rack,
            properties_text: text,
            lifecycle,
        })
    }

    /// The listener rules Kafka checks at start-up that the file already breaks: reported (once
    /// per process), left alone (the broker runs with them, or its Kafka release accepts them).
    fn kafka_rules_already_broken(
        &self,
        server: &properties::Properties,
    ) -> Vec<crate::kafka_rules::Violation> {
        let path = &self.config.broker.server_properties;
        let broken = crate::kafka_rules::check(server);
        for v in &broken {
            let key = format!("kafka rule {v}");
            if !self.checked.has(&key) {
                tracing::warn!(file = %path.display(), "{v} (already in the file: real Kafka may refuse to start on it; the agent leaves it alone)");
                self.checked.mark(key);
            }
        }
        broken
    }

    /// Refuses an edit that would break a listener rule Kafka checks at start-up (a broker that
    /// does not start, taken down for good by the rolling restart); `broken` are the rules the
    /// file breaks already.
    fn refuse_kafka_rule_breaks(
        &self,
        broken: &[crate::kafka_rules::Violation],
        edited: &str,
    ) -> Result<(), Error> {
        let path = &self.config.broker.server_properties;
        let after = crate::kafka_rules::check(
            &properties::Properties::parse(edited)
                .map_err(|e| PropertiesError::from_edit(path, e))?,
        );
        match crate::kafka_rules::introduced(broken, &after)
            .into_iter()
            .next()
        {
            None => Ok(()),
            Some(violation) => Err(Error::KafkaWouldRefuse {
                path: path.display().to_string(),
                hint: kafka_rule_hint(&violation, &self.config),
                violation,
            }),
        }
    }

    /// The kept observation of a converged broker (see [`crate::steady`]), checked with one read
    /// when the check is due; `None` when there is none or the check found drift (then it is
    /// forgotten and the caller observes in full).
    async fn steady_view(&self, ctx: &Context) -> Result<Option<steady::Kept>, Error> {
        let Some(mut kept) = self.steady.kept() else {
            return Ok(None);
        };
        if kept.shard >= ctx.shards.len() {
            self.steady.forget();
            return Ok(None);
        }
        if Instant::now() < kept.next_check {
            return Ok(Some(kept));
        }
        let d = ctx.shard(kept.shard);
        let Some((group, arn)) = kept.next_read() else {
            self.steady.forget();
            return Ok(None);
        };
        // A failed read fails the pass, which forgets the kept view (`pass_after`).
        let targets = self.lb.targets(&arn).await?;
        if !steady::confirms(&targets, &d.instance_id, d.target_port, group) {
            tracing::info!(target_group = %arn, "steady check: the NLB changed; observing in full");
            self.steady.forget();
            return Ok(None);
        }
        match group {
            steady::Group::Dedicated => kept.dedicated_targets = targets,
            steady::Group::Bootstrap => kept.bootstrap_targets = targets,
        }
        kept.checks += 1;
        kept.next_check = Instant::now() + self.steady_interval(self.steady.cluster().max(1));
        self.steady
            .keep(kept.clone(), &ctx.identity.instance_id, ctx.shards.len());
        Ok(Some(kept))
    }

    /// Time to the next steady check for a cluster of `cluster` brokers, jittered.
    fn steady_interval(&self, cluster: usize) -> Duration {
        use rand::Rng;
        steady::check_interval(
            self.config.daemon.interval,
            cluster,
            self.config.aws.steady_reads_per_second,
            rand::thread_rng().gen_range(0.5..1.5),
        )
    }

    /// Reads the NLBs until one holds this broker's claim, or, for a new broker (a file without
    /// endpoint) with several NLBs, until one has room for a new claim: first the one the file's
    /// endpoint names, then this broker's spread order ([`registry::shard_order`]). A new claim
    /// goes to the first NLB of that order with room, so a replacement of a broker (same id,
    /// same order) finds the claim it inherits no later than that NLB (unless a broker left an
    /// earlier NLB of its order since: then it claims there and the old claim shows as stale),
    /// and a booting broker reads one NLB, not all of them. NLBs in `full` (this pass just failed to claim there: it holds no claim
    /// of this broker) are not read again. A leaving broker reads every NLB until it finds its
    /// claim (it claims nothing, so room is no reason to stop).
    async fn scan(
        &self,
        ctx: &Context,
        file_endpoint: Option<&str>,
        full: &[usize],
        leaving: bool,
    ) -> Result<Scan, Error> {
        let hint = ctx.shard_of_endpoint(file_endpoint);
        let keep_port = plan::endpoint_port(file_endpoint);
        let mut scan = Scan {
            found: None,
            looked: Vec::new(),
            hint,
            keep_port,
        };
        let order = hint
            .into_iter()
            .chain(
                registry::shard_order(ctx.broker_id, ctx.shards.len()).filter(|i| Some(*i) != hint),
            )
            .filter(|i| !full.contains(i));
        // A file that names no endpoint yet: a new broker, or a replacement instance, which finds
        // its claim on its first NLB in this order with room (that is where it was made), so
        // reading further could find nothing. A file that names an endpoint the claim is not
        // behind (another host template, a claim deleted by hand) reads every NLB: the claim
        // may be anywhere.
        let stop_at_room = ctx.shards.len() > 1 && !leaving && file_endpoint.is_none();
        for index in order {
            let d = ctx.shard(index);
            let listeners = self.lb.listeners(&d.lb_arn).await?;
            let assessment = plan::assess(d, &listeners, scan.keep_on(index));
            // The file's port is a candidate on the NLB the file names only, as in
            // `claim_candidates`.
            let keep = (hint == Some(index)).then_some(keep_port).flatten();
            let no_room = shard_room(ctx, index, &assessment, listeners.len(), keep);
            let view = ShardView {
                index,
                assessment,
                no_room,
            };
            if view.assessment.claim.is_some() {
                scan.found = Some(view);
                break;
            }
            let room = stop_at_room && view.no_room.is_none();
            scan.looked.push(view);
            if room {
                break;
            }
        }
        Ok(scan)
    }

    /// The steps a pass would take now (for `plan`; `pass` runs exactly these).
    pub fn plan(&self, ctx: &Context, observed: &Observed) -> Result<Vec<Step>, Error> {
        let first = claim_candidates(ctx, observed).first().copied();
        plan::plan(ctx.shard(observed.shard), observed, first).map_err(|e| {
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
            changes,
            races: progress.races,
            claim_collisions: progress.collisions,
            properties_written: progress.properties_written,
            aws_calls,
            aws_throttled,
            elapsed_ms: started.elapsed().as_millis(),
        })
    }

    /// Observe, plan, check, execute; once more per NLB that other brokers fill up meanwhile
    /// (an attempt fails with `ShardFilled` only when another host took the chosen NLB's last
    /// port or listener slot; the next attempt observes again without that NLB). Returns the
    /// final observation and progress, and every change made, in order.
    async fn attempts(
        &self,
        ctx: &Context,
        earlier: &Lifecycle,
    ) -> Result<(Observed, Progress, Vec<Step>), Error> {
        let mut filled = Vec::new();
        let mut changes = Vec::new();
        let mut races = Vec::new();
        let mut collisions = 0;
        loop {
            let mut observed = self.observe_excluding(ctx, &filled).await?;
            observed.lifecycle = std::mem::take(&mut observed.lifecycle).after(earlier);
            let steps = self.plan(ctx, &observed)?;
            // A drain only takes this instance out of a group it is in: no check can make that
            // wrong.
            if !observed.lifecycle.is_leaving() && steps.iter().any(Step::touches_nlb) {
                self.preflight(ctx, &observed).await?;
            }
            let mut progress = Progress::from_observed(&observed);
            match self.execute(ctx, &observed, &steps, &mut progress).await {
                Ok(done) => {
                    changes.extend(done);
                    races.append(&mut progress.races);
                    progress.races = races;
                    progress.collisions += collisions;
                    return Ok((observed, progress, changes));
                }
                Err(Error::ShardFilled { shard, lb_arn, why }) => {
                    // What the attempt did before the claim stays done (a bootstrap listener
                    // it created belongs on that NLB anyway); its dedicated group was removed.
                    changes.extend(
                        std::mem::take(&mut progress.done)
                            .into_iter()
                            .filter(|s| !matches!(s, Step::CreateDedicatedGroup { .. })),
                    );
                    races.append(&mut progress.races);
                    races.push(format!(
                        "shard {shard} ({lb_arn}) filled up during this pass ({why}); looked again"
                    ));
                    filled.push(shard);
                    collisions += progress.collisions;
                }
                Err(e) => return Err(e),
            }
        }
    }

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
        let text = properties::read(path)?;
        let file = properties::Properties::parse(&text)
            .map_err(|e| PropertiesError::from_edit(path, e))?;
        let file_value = file.get("advertised.listeners").unwrap_or_default();
        let restarter = Restarter {
            lb: &self.lb,
            kafka,
            service,
            config: &self.config,
            broker_id: ctx.broker_id,
            role: self.node_role()?,
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
