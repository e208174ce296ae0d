//! What a pass reads before it plans: the instance's lifecycle, `server.properties` (refused
//! before any NLB is touched when an edit would break it), the kept view of a converged broker,
//! and the NLBs, scanned for this broker's claim or, for a new claim, for the NLB with room.

use std::time::{Duration, Instant};

use crate::config::Config;
use crate::ec2::InstanceTags;
use crate::lifecycle::{self, Lifecycle};
use crate::metadata::InstanceMetadata;
use crate::model::{Agent, Error};
use crate::nlb::{LoadBalancer, MAX_LISTENERS_PER_NLB};
use crate::plan::claim_candidates_for;
use crate::plan::{self, Context, Observed};
use crate::properties::{self, PropertiesError};
use crate::registry;
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

/// `server.properties` as a pass reads it: read once, and checked before the NLB is touched.
struct FileRead {
    /// The file's text.
    text: String,
    /// Advertised endpoint of the managed listener.
    file_endpoint: Option<String>,
    /// `broker.rack`.
    file_rack: Option<String>,
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
    /// Whether this instance is leaving, from instance metadata (see [`crate::lifecycle`]).
    pub(crate) async fn lifecycle(&self) -> Result<Lifecycle, Error> {
        Ok(lifecycle::read(&self.metadata).await?)
    }

    /// Reads the instance's lifecycle, the NLB(s) and the file; changes nothing.
    pub(crate) async fn observe(&self, ctx: &Context) -> Result<Observed, Error> {
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
    pub(crate) async fn observe_excluding(
        &self,
        ctx: &Context,
        full: &[usize],
    ) -> Result<Observed, Error> {
        // First: a pass that cannot tell whether the instance is leaving stops here, before any
        // AWS call.
        let lifecycle = self.lifecycle().await?;
        let FileRead {
            text,
            file_endpoint,
            file_rack,
        } = self.read_file_checked(ctx)?;
        // Before any NLB call: a certificate that does not cover the names advertised.
        let certificate = match lifecycle.is_leaving() {
            false => Some(self.certificate_preflight(ctx, &text)?),
            true => None,
        };
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
                    certificate,
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
            certificate,
        })
    }

    /// Reads `server.properties` for a pass, refusing an edit Kafka would not start on (see
    /// [`FileRead`]).
    fn read_file_checked(&self, ctx: &Context) -> Result<FileRead, Error> {
        let path = &self.config.broker.server_properties;
        let text = self.server_properties()?.to_string();
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
        Ok(FileRead {
            text,
            file_endpoint,
            file_rack,
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
    pub(super) fn steady_interval(&self, cluster: usize) -> Duration {
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
}
