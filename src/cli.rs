//! Command line (public contract): `kplink-agent [-c|--config PATH] <command>`.
//!
//! Exit codes: `run --once` 0 when the broker is fully wired, 1 otherwise; `plan` 0 nothing to do,
//! 2 changes pending, 1 error; `check-config` 0 or 78 (EX_CONFIG); `check-properties` 0 Kafka would
//! start on the file, 1 it would refuse; `consumer-dns` (no config
//! file: [`crate::consumer_dns`]) as `plan`. Any other command exits 78 when the config file is
//! invalid; every command 64 (EX_USAGE) on a usage error.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use crate::config::Config;
use crate::daemon::LastPass;
use crate::kafka::{KafkaCluster, KafkaError, Liveness, RdKafka};
use crate::metadata::{self, Imds};
use crate::model::{Agent, Error, PassReport};
use crate::nlb::CallCounter;
use crate::node::NodeRole;
use crate::plan::{Context, Observed};
use crate::restart::{CommandService, Decision, LockState, RestartError};

// The clap definition lives in its own file: build.rs includes it to generate the man pages and
// shell completions.
mod args;
pub use args::{Cli, Command, ConsumerDnsArgs, LogFormat};

/// `--version`: the package version and the git commit it was built from (build.rs sets
/// `KPLINK_GIT_COMMIT`: `git rev-parse --short HEAD`, or "unknown" outside a git checkout).
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("KPLINK_GIT_COMMIT"),
    ")"
);

/// Exit codes, re-exported under their first names (see [`crate::exit`]).
pub use crate::exit::{
    CHANGES_PENDING as EXIT_CHANGES_PENDING, CONFIG as EXIT_CONFIG, USAGE as EXIT_USAGE,
};

/// Runs a parsed command line; returns the process exit code. Errors are printed as one line.
/// Each command is dispatched once; the configuration is loaded by the commands that need it
/// (`consumer-dns` runs in the consumer's account: no agent.toml, no instance metadata).
pub async fn run(cli: Cli) -> ExitCode {
    let Cli {
        config: path,
        command,
        ..
    } = cli;
    let load = || {
        Config::load(&path).map_err(|e| {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_CONFIG)
        })
    };
    let code = async {
        Ok::<_, ExitCode>(match command {
            Command::ConsumerDns(args) => {
                crate::consumer_dns::main(&consumer_dns_request(&args), args.json).await
            }
            Command::CheckProperties { path: Some(file) } => check_properties(&file),
            Command::CheckProperties { path: None } => {
                check_properties(&load()?.broker.server_properties)
            }
            Command::CheckConfig => {
                for w in warnings(&load()?) {
                    eprintln!("warning: {w}");
                }
                println!("config OK: {}", path.display());
                ExitCode::SUCCESS
            }
            Command::Run {
                once: false,
                metadata_timeout,
                ..
            } => exit_logged(
                daemon(load()?, path.clone(), metadata_timeout).await,
                "daemon stopped",
            ),
            Command::Run {
                once: true,
                json,
                metadata_timeout,
            } => exit_logged(
                run_once(load()?, path.clone(), metadata_timeout, json).await,
                "pass failed",
            ),
            Command::Status {
                json,
                metadata_timeout,
            } => exit(status(load()?, path.clone(), metadata_timeout, json).await),
            Command::Decommission { yes: false, .. } => {
                load()?;
                eprintln!(
                    "error: decommission deletes this broker's NLB listener and target group; rerun with --yes to confirm"
                );
                ExitCode::from(EXIT_USAGE)
            }
            Command::Decommission {
                yes: true,
                keep_config,
                metadata_timeout,
            } => exit(decommission(load()?, path.clone(), metadata_timeout, keep_config).await),
            Command::Plan {
                json,
                metadata_timeout,
            } => match plan(load()?, path.clone(), metadata_timeout, json).await {
                Ok(true) => ExitCode::SUCCESS,
                Ok(false) => ExitCode::from(EXIT_CHANGES_PENDING),
                Err(e) => exit(Err(e)),
            },
        })
    };
    code.await.unwrap_or_else(|code| code)
}

/// What `consumer-dns` was asked to do: its own request type, so [`crate::consumer_dns`] knows
/// nothing of the command line.
fn consumer_dns_request(a: &ConsumerDnsArgs) -> crate::consumer_dns::Request {
    crate::consumer_dns::Request {
        endpoint: a.endpoint.clone(),
        zone_id: a.zone_id.clone(),
        host_template: a.host_template.clone(),
        bootstrap_host: a.bootstrap_host.clone(),
        bootstrap_port: a.bootstrap_port,
        apply: a.apply,
        insync_timeout: a.insync_timeout,
    }
}

/// `check-properties`: 0 when Kafka would start on the file's listener settings; 1 with one line
/// per violation (or the read or parse error) on stderr.
fn check_properties(path: &std::path::Path) -> ExitCode {
    let parsed = crate::properties::read(path).and_then(|text| {
        crate::properties::Properties::parse(&text)
            .map_err(|e| crate::properties::PropertiesError::from_edit(path, e))
    });
    let props = match parsed {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let violations = crate::kafka_rules::check(&props);
    if violations.is_empty() {
        println!(
            "Kafka would accept the listener settings of {}",
            path.display()
        );
        return ExitCode::SUCCESS;
    }
    for v in &violations {
        eprintln!(
            "error: {}: Kafka would refuse to start: {v}",
            path.display()
        );
    }
    ExitCode::FAILURE
}

/// 0, or 1 with the error on stderr.
fn exit(result: Result<(), impl std::fmt::Display>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// [`exit`], logging the error as `what` first.
fn exit_logged(result: Result<(), impl std::fmt::Display>, what: &str) -> ExitCode {
    if let Err(e) = &result {
        tracing::error!(error = %e, "{what}");
    }
    exit(result)
}

/// Config warnings plus what `server.properties` says about the managed listener's TLS (when
/// the file can be read; `check-config` needs neither AWS nor the file).
fn warnings(config: &Config) -> Vec<String> {
    let mut out = config.warnings();
    let path = &config.broker.server_properties;
    if let Ok(text) = std::fs::read_to_string(path) {
        if let Ok(Some(w)) = crate::properties::missing_keystore(
            &text,
            &config.listener.name,
            config.listener.security_protocol.as_str(),
        ) {
            out.push(format!("{}: {w}", path.display()));
        }
    }
    out
}

/// `Some(message)` when this host is a KRaft controller-only node, which the agent leaves alone:
/// Kafka refuses a controller with a non-controller listener, and clients never reach it.
fn controller_only(config: &Config) -> Result<Option<String>, Error> {
    let path = &config.broker.server_properties;
    let text = crate::properties::read(path)?;
    let role = crate::node::NodeRole::from_properties(&text)
        .map_err(|e| crate::properties::PropertiesError::from_edit(path, e))?;
    Ok(role.is_controller_only().then(|| {
        format!(
            "controller-only node (process.roles without broker in {}): nothing to wire, nothing changed",
            path.display()
        )
    }))
}

/// The agent over the real adapters.
type RealAgent = Agent<Imds, crate::nlb::Elbv2, crate::ec2::Ec2Tags>;

/// Discovers the instance and builds the AWS adapters, once per command.
async fn agent(
    config: Config,
    config_path: PathBuf,
    metadata_timeout: Duration,
) -> Result<(RealAgent, metadata::Identity), Error> {
    let md = Imds::new();
    let identity = metadata::discover(&md, metadata_timeout).await?;
    let calls = CallCounter::default();
    let (lb, tags) = crate::aws::adapters(&identity, &calls).await;
    Ok((
        Agent {
            config,
            config_path,
            metadata: md,
            lb,
            tags,
            calls,
            metadata_timeout,
            checked: Default::default(),
            steady: Default::default(),
        },
        identity,
    ))
}

/// An admin client for `restart.bootstrap_servers` with the `restart.kafka` settings.
fn kafka_client(config: &Config) -> Result<RdKafka, KafkaError> {
    RdKafka::new(&config.restart.bootstrap_servers, &config.restart.kafka)
}

/// The real Kafka and service adapters for `config`: one admin client and the restart command.
/// `run --once` builds them once; the daemon through this factory, again after a reload.
fn kafka_adapters(config: &Config) -> Result<(RdKafka, CommandService), Error> {
    let kafka = kafka_client(config).map_err(RestartError::from)?;
    let service = CommandService {
        command: config.restart.command.clone(),
        timeout: config.restart.timeout,
        process: config.restart.process_check(),
    };
    Ok((kafka, service))
}

async fn run_once(
    config: Config,
    path: PathBuf,
    metadata_timeout: Duration,
    json: bool,
) -> Result<(), Error> {
    if let Some(message) = controller_only(&config)? {
        if json {
            let doc = serde_json::json!({ "node_role": crate::node::NodeRole::KraftController, "skipped": message });
            println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
        } else {
            println!("{message}");
        }
        return Ok(());
    }
    let (agent, identity) = agent(config, path, metadata_timeout).await?;
    let ctx = agent.context_for(identity).await?;
    let report = agent.pass(&ctx).await?;
    report.log();
    if report.lifecycle.is_leaving() {
        print_drained(&report, json);
        return Ok(());
    }
    let lock_held = tokio::sync::watch::Sender::new(false); // no metrics in `run --once`
    let outcome = match kafka_adapters(&agent.config) {
        Ok((kafka, service)) => {
            crate::daemon::make_effective(&agent, &ctx, &report, &kafka, &service, &lock_held).await
        }
        Err(e) => Err(e),
    };
    if json {
        let mut doc = serde_json::to_value(&report).unwrap_or_default();
        doc["kafka"] = match &outcome {
            Ok(o) => serde_json::to_value(o).unwrap_or_default(),
            Err(e) => serde_json::json!({ "outcome": "error", "error": e.to_string() }),
        };
        println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
    } else {
        println!(
            "broker {} ({} in {}) wired: {} -> port {} ({} change(s), {} AWS call(s), {} ms)",
            report.broker_id,
            report.instance_id,
            report.az_id,
            report.advertised,
            report.port,
            report.changes.len(),
            report.aws_calls.values().sum::<u64>(),
            report.elapsed_ms
        );
        for step in &report.changes {
            println!("  changed: {step}");
        }
        print_throttled(&report);
        if let Ok(o) = &outcome {
            println!("  kafka: {o}");
        }
    }
    match outcome? {
        // Not fully wired: whether the starting broker read the new file is not known yet.
        crate::restart::Outcome::Starting { how } => Err(RestartError::Starting {
            bootstrap: agent.config.restart.bootstrap_servers.clone(),
            how,
        }
        .into()),
        _ => Ok(()),
    }
}

/// The throttled answers a pass rode through, if any.
fn print_throttled(report: &PassReport) {
    let n: u64 = report.aws_throttled.values().sum();
    if n > 0 {
        let ops: Vec<String> = report
            .aws_throttled
            .iter()
            .map(|(op, n)| format!("{op} {n}"))
            .collect();
        println!(
            "  throttled: {n} answer(s), retried after back-off ({}): the account's AWS API budget was busy",
            ops.join(", ")
        );
    }
}

/// `run --once` on a leaving instance: what the drain did and what it kept. Kafka is left alone.
fn print_drained(report: &PassReport, json: bool) {
    let why = report
        .lifecycle
        .leaving()
        .map(ToString::to_string)
        .unwrap_or_default();
    if json {
        let mut doc = serde_json::to_value(report).unwrap_or_default();
        doc["kafka"] =
            serde_json::json!({ "outcome": "skipped", "why": format!("instance leaving: {why}") });
        println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
        return;
    }
    println!(
        "broker {} ({} in {}) drained: instance leaving ({why}) ({} change(s), {} AWS call(s), {} ms)",
        report.broker_id,
        report.instance_id,
        report.az_id,
        report.changes.len(),
        report.aws_calls.values().sum::<u64>(),
        report.elapsed_ms
    );
    for step in &report.changes {
        println!("  changed: {step}");
    }
    if report.changes.is_empty() {
        println!("  already out of the bootstrap target group");
    }
    match report.port {
        0 => println!("  kept: no port was claimed"),
        port => println!(
            "  kept: port {port} (listener and target group, for a replacement with broker id {})",
            report.broker_id
        ),
    }
    println!("  server.properties unchanged; Kafka not restarted");
}

/// Prints the plan; `Ok(true)` when there is nothing to do.
async fn plan(
    config: Config,
    path: PathBuf,
    metadata_timeout: Duration,
    json: bool,
) -> Result<bool, Error> {
    for w in warnings(&config) {
        eprintln!("warning: {w}");
    }
    if let Some(message) = controller_only(&config)? {
        if json {
            let doc = serde_json::json!({ "node_role": crate::node::NodeRole::KraftController, "changes_pending": false, "steps": [], "skipped": message });
            println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
        } else {
            println!("{message}");
        }
        return Ok(true);
    }
    let (agent, identity) = agent(config, path, metadata_timeout).await?;
    let ctx = agent.context_for(identity).await?;
    let observed = agent.observe(&ctx).await?;
    let steps = agent.plan(&ctx, &observed)?;
    if json {
        let doc = serde_json::json!({
            "broker_id": ctx.broker_id,
            "broker_id_source": ctx.broker_id_source,
            "instance_id": ctx.identity.instance_id,
            "az_id": ctx.identity.az_id,
            "claimed_port": observed.assessment.claim.as_ref().map(|l| l.port),
            "shard": observed.shard,
            "load_balancer_arn": ctx.shard(observed.shard).lb_arn,
            "full_load_balancers": observed.full.iter().map(|(i, why)| serde_json::json!({"shard": i, "load_balancer_arn": ctx.shard(*i).lb_arn, "why": why})).collect::<Vec<_>>(),
            "advertised_in_file": observed.file_endpoint,
            "changes_pending": !steps.is_empty(),
            "steps": steps,
            "restart_lock_listener": observed.assessment.lock.as_ref().map(|l| l.arn.clone()),
            "restart_lock_group": crate::registry::lock_group_name(&agent.config.cluster),
            "lifecycle": observed.lifecycle,
        });
        println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
    } else if steps.is_empty() {
        println!(
            "broker {} ({}): nothing to do; port {}{}",
            ctx.broker_id,
            ctx.identity.instance_id,
            observed
                .assessment
                .claim
                .as_ref()
                .map_or("?".to_string(), |l| l.port.to_string()),
            shard_note(&ctx, &observed)
        );
    } else {
        println!(
            "broker {} ({}): {} change(s) pending{}",
            ctx.broker_id,
            ctx.identity.instance_id,
            steps.len(),
            shard_note(&ctx, &observed)
        );
        for step in &steps {
            println!("  + {step}");
        }
    }
    if let (false, Some(why)) = (json, observed.lifecycle.leaving()) {
        println!(
            "  note: this instance is leaving ({why}): a pass only takes it out of the bootstrap target group; its port, target group and server.properties stay"
        );
    }
    if let (false, Some(l)) = (json, &observed.assessment.lock) {
        println!(
            "  note: a legacy cluster restart lock listener (an older agent, release 0.1) is held on port {}; `kplink-agent status` shows by whom",
            l.port
        );
    }
    Ok(steps.is_empty())
}

/// ` on shard K (NLB ARN)` when several NLBs are configured, and which were full; `""` with one.
fn shard_note(ctx: &Context, observed: &Observed) -> String {
    if ctx.shards.len() == 1 {
        return String::new();
    }
    let d = ctx.shard(observed.shard);
    let mut note = format!(" on shard {} ({})", d.shard, d.lb_arn);
    for (i, why) in &observed.full {
        note.push_str(&format!("; shard {i} has no room: {why}"));
    }
    note
}

/// Errors of the daemon command: setup or the daemon's own machinery.
#[derive(Debug, thiserror::Error)]
enum DaemonCommandError {
    #[error(transparent)]
    Setup(#[from] Error),
    #[error(transparent)]
    Daemon(#[from] crate::daemon::DaemonError),
}

async fn daemon(
    config: Config,
    path: PathBuf,
    metadata_timeout: Duration,
) -> Result<(), DaemonCommandError> {
    let (agent, identity) = agent(config, path.clone(), metadata_timeout).await?;
    let ctx = match agent.context_for(identity).await {
        Ok(ctx) => Some(ctx),
        Err(e) => {
            // Retried by the loop with back-off; the host may still be getting its tags.
            tracing::warn!(error = %e, "cannot resolve the broker yet");
            None
        }
    };
    crate::daemon::run(
        agent,
        ctx,
        kafka_adapters,
        move || Config::load(&path),
        shutdown_signal(),
    )
    .await?;
    Ok(())
}

/// Completes on SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "no SIGTERM handler; stopping on SIGINT only");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
    tracing::info!("shutting down");
}

async fn status(
    config: Config,
    path: PathBuf,
    metadata_timeout: Duration,
    json: bool,
) -> Result<(), Error> {
    let last = crate::daemon::read_last_pass(&config);
    if let Some(message) = controller_only(&config)? {
        if json {
            let doc = serde_json::json!({ "node_role": crate::node::NodeRole::KraftController, "skipped": message, "last_pass": last });
            println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
        } else {
            println!("node          {message}");
        }
        return Ok(());
    }
    let (agent, identity) = agent(config, path, metadata_timeout).await?;
    let view = StatusView::gather(&agent, identity, last).await?;
    if json {
        let doc = view.json();
        println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
    } else {
        print!("{}", view.text());
    }
    Ok(())
}

/// Everything `status` shows.
struct StatusView {
    ctx: Context,
    observed: Observed,
    /// The plan's steps: pending changes (drift).
    changes_pending: Vec<String>,
    role: NodeRole,
    /// `host:port` the broker should advertise (once it has a claim).
    desired_endpoint: Option<String>,
    liveness: Liveness,
    /// What the running broker advertises for the managed listener.
    broker_endpoint: Option<String>,
    restart_pending: bool,
    stale_claims: BTreeSet<i32>,
    /// The cluster as clients reach it.
    clients: crate::connection::ClusterView,
    lock: Option<LockState>,
    /// Name of the cluster's restart lock target group.
    lock_group: String,
    last: Option<LastPass>,
}

impl StatusView {
    /// Asks AWS and Kafka.
    async fn gather(
        agent: &RealAgent,
        identity: metadata::Identity,
        last: Option<LastPass>,
    ) -> Result<StatusView, Error> {
        let ctx = agent.context_for(identity).await?;
        let observed = agent.observe(&ctx).await?;
        let steps = agent.plan(&ctx, &observed)?;
        let desired_endpoint = observed
            .assessment
            .claim
            .as_ref()
            .map(|l| ctx.shard(observed.shard).endpoint(l.port));
        let role = agent.node_role()?;
        let (liveness, in_broker) = kafka_state(&agent.config, ctx.broker_id).await;
        let listing = crate::restart::cluster_listing(&agent.lb, &agent.config).await?;
        let claims = listing
            .iter()
            .map(|c| (c.broker_id, c.targets.clone()))
            .collect();
        let (_, stale_claims) = crate::restart::split_claims(&claims);
        let clients = client_view(agent, &ctx.identity.region, &listing).await;
        let listener = &agent.config.listener.name;
        let broker_endpoint = in_broker
            .as_deref()
            .and_then(|a| crate::restart::endpoint_of(a, listener));
        let restart_pending = desired_endpoint.as_deref().is_some_and(|desired| {
            let unreachable = matches!(
                liveness,
                Liveness::Unreachable { .. } | Liveness::Starting { .. }
            );
            let running = liveness == Liveness::Answering;
            let dynamic = role.dynamic_advertised_listeners();
            unreachable
                || matches!(
                    crate::restart::decide(
                        running,
                        in_broker.as_deref(),
                        listener,
                        desired,
                        dynamic
                    ),
                    Decision::DynamicUpdate | Decision::Restart
                )
        });
        let legacy = observed.assessment.lock.as_ref().map(|l| l.arn.as_str());
        let lock =
            crate::restart::read_cluster_lock(&agent.lb, &agent.config, legacy, false).await?;
        Ok(StatusView {
            changes_pending: steps.iter().map(ToString::to_string).collect(),
            ctx,
            observed,
            role,
            desired_endpoint,
            liveness,
            broker_endpoint,
            restart_pending,
            stale_claims,
            clients,
            lock,
            lock_group: crate::registry::lock_group_name(&agent.config.cluster),
            last,
        })
    }

    fn running(&self) -> bool {
        self.liveness == Liveness::Answering
    }

    /// `status --json`.
    fn json(&self) -> serde_json::Value {
        let (ctx, observed) = (&self.ctx, &self.observed);
        let claim = observed.assessment.claim.as_ref();
        let lock = self.lock.as_ref();
        serde_json::json!({
            "identity": ctx.identity,
            "broker_id": ctx.broker_id,
            "broker_id_source": ctx.broker_id_source,
            "claimed_port": claim.map(|l| l.port),
            "shard": observed.shard,
            "load_balancer_arn": ctx.shard(observed.shard).lb_arn,
            "listener_arn": claim.map(|l| l.arn.clone()),
            "target_group_arn": claim.and_then(|l| l.target_group_arn.clone()),
            "bootstrap_target_group_arn": observed.assessment.bootstrap.as_ref().and_then(|l| l.target_group_arn.clone()),
            "dedicated_targets": observed.dedicated_targets,
            "bootstrap_targets": observed.bootstrap_targets.iter().filter(|t| t.id == ctx.identity.instance_id).collect::<Vec<_>>(),
            "advertised_in_file": observed.file_endpoint,
            "advertised_desired": self.desired_endpoint,
            "node_role": self.role,
            "kafka_running": self.running(),
            "kafka": self.liveness,
            "stale_claims": self.stale_claims,
            "clients": self.clients,
            "advertised_in_broker": self.broker_endpoint,
            "restart_pending": self.restart_pending,
            "lock_holder": lock.map(|l| l.holder.clone()),
            "lock_phase": lock.map(|l| l.phase.clone()),
            "lock_expires_unix": lock.map(|l| l.expires),
            "lock_group": self.lock_group,
            "lock_arn": lock.map(|l| l.arn.clone()),
            "lock_kind": lock.map(|l| l.kind),
            "changes_pending": self.changes_pending,
            "lifecycle": observed.lifecycle,
            "draining": observed.lifecycle.is_leaving(),
            "last_pass": self.last,
        })
    }

    /// `status` for people: one `label  value` line per fact.
    fn text(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = self
            .write_identity(&mut out)
            .and_then(|()| self.write_kafka(&mut out))
            .and_then(|()| self.write_state(&mut out));
        out.push_str(&self.clients.text());
        out
    }

    fn write_identity(&self, out: &mut String) -> std::fmt::Result {
        let (ctx, observed) = (&self.ctx, &self.observed);
        let id = &ctx.identity;
        writeln!(
            out,
            "instance      {} ({} / {}, {}, {})",
            id.instance_id, id.az, id.az_id, id.private_ip, id.vpc_id
        )?;
        writeln!(
            out,
            "broker id     {} (from {})",
            ctx.broker_id, ctx.broker_id_source
        )?;
        writeln!(out, "node          {}", self.role)?;
        let d = ctx.shard(observed.shard);
        let shards = ctx.shards.len();
        match &observed.assessment.claim {
            Some(_) => writeln!(
                out,
                "nlb           shard {} of {shards}: {}",
                d.shard, d.lb_arn
            )?,
            None => writeln!(
                out,
                "nlb           shard {} of {shards} (a new claim goes here): {}",
                d.shard, d.lb_arn
            )?,
        }
        match &observed.assessment.claim {
            Some(l) => {
                writeln!(out, "claimed port  {}", l.port)?;
                writeln!(out, "listener      {}", l.arn)?;
                let group = l.target_group_arn.as_deref().unwrap_or("?");
                writeln!(out, "target group  {group}")?;
            }
            None => writeln!(out, "claimed port  none")?,
        }
        for t in &observed.dedicated_targets {
            let (id, port, health, state) = (&t.id, t.port, &t.health, &t.state);
            writeln!(out, "target        {id}:{port} {health} ({state:?})")?;
        }
        writeln!(
            out,
            "advertised    file: {}   desired: {}",
            observed.file_endpoint.as_deref().unwrap_or("(none)"),
            self.desired_endpoint.as_deref().unwrap_or("(no claim yet)")
        )
    }

    fn write_kafka(&self, out: &mut String) -> std::fmt::Result {
        let kafka = if self.running() {
            format!(
                "running, advertises {}{}",
                self.broker_endpoint.as_deref().unwrap_or("(unknown)"),
                if self.restart_pending {
                    " - restart pending"
                } else {
                    ""
                }
            )
        } else {
            match &self.liveness {
                Liveness::Unreachable { bootstrap, cause } => format!(
                    "UNREACHABLE: {bootstrap} accepts connections but does not answer ({cause}) - restart pending"
                ),
                Liveness::Starting { how } => format!(
                    "STARTING: {how}, nothing accepts connections yet - restart pending until it answers"
                ),
                _ => "not running".to_string(),
            }
        };
        writeln!(out, "kafka         {kafka}")?;
        if !self.stale_claims.is_empty() {
            writeln!(
                out,
                "stale claims  brokers {} (a claim whose target group has no registered target: removed without `decommission`?); left out of the restart health gate",
                self.stale_claims
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            )?;
        }
        Ok(())
    }

    fn write_state(&self, out: &mut String) -> std::fmt::Result {
        let observed = &self.observed;
        if let Some(why) = observed.lifecycle.leaving() {
            let me = &self.ctx.identity.instance_id;
            let registered = observed
                .bootstrap_targets
                .iter()
                .any(|t| t.id == *me && t.state == crate::nlb::TargetState::Registered);
            let drained = match registered {
                true => "not yet out of the bootstrap target group (the next pass drains it)",
                false => "DRAINED: out of the bootstrap target group; port and target group kept for a replacement",
            };
            writeln!(out, "lifecycle     LEAVING ({why}): {drained}")?;
        } else {
            writeln!(
                out,
                "lifecycle     staying (no scale-in or Spot interruption pending)"
            )?;
        }
        match &self.lock {
            Some(l) => writeln!(
                out,
                "restart lock  held by {} (phase {}, expires unix {}; {})",
                l.holder,
                l.phase,
                l.expires,
                l.resource()
            )?,
            None => writeln!(out, "restart lock  free (target group {})", self.lock_group)?,
        }
        match &self.last {
            Some(p) => writeln!(
                out,
                "last pass     {} ({}, unix {})",
                p.summary,
                if p.ok { "ok" } else { "FAILED" },
                p.finished_unix
            )?,
            None => writeln!(out, "last pass     none recorded (is the daemon running?)")?,
        }
        if self.changes_pending.is_empty() {
            writeln!(out, "drift         none")?;
        }
        for s in &self.changes_pending {
            writeln!(out, "drift         {s}")?;
        }
        Ok(())
    }
}

/// The cluster as clients reach it (see [`crate::connection`]). What EC2 does not tell (no
/// permission, say) leaves AZ and name unknown with a note; `status` never fails for it.
async fn client_view(
    agent: &RealAgent,
    region: &str,
    listing: &[crate::restart::ClusterClaim],
) -> crate::connection::ClusterView {
    let mut notes = Vec::new();
    let instances: Vec<String> = listing
        .iter()
        .flat_map(|c| c.targets.iter().map(|t| t.id.clone()))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let zones = agent
        .tags
        .instance_zones(&instances)
        .await
        .unwrap_or_else(|e| {
            notes.push(format!("AZ and name unknown: {e}"));
            Default::default()
        });
    let zone_ids = match zones.is_empty() {
        true => Default::default(),
        false => agent.tags.zone_ids().await.unwrap_or_else(|e| {
            notes.push(format!("AZ IDs unknown: {e}"));
            Default::default()
        }),
    };
    crate::connection::ClusterView {
        bootstrap_port: agent.config.nlb.bootstrap_port,
        brokers: crate::connection::rows(&agent.config, region, listing, &zones, &zone_ids),
        notes,
    }
}

/// Whether Kafka answers and, if so, what this broker advertises.
async fn kafka_state(config: &Config, broker_id: i32) -> (Liveness, Option<String>) {
    match kafka_client(config) {
        Ok(k) => {
            let bound = crate::properties::read(&config.broker.server_properties)
                .map(|text| crate::properties::bound_addresses(&text, &config.listener.name))
                .unwrap_or_default();
            let process = config.restart.process_check();
            let liveness = crate::kafka::liveness(
                &k,
                &config.restart.bootstrap_servers,
                &bound,
                crate::kafka::process::KafkaProcess::state(&process),
            )
            .await;
            let advertised = if liveness == Liveness::Answering {
                k.advertised_listeners(broker_id).await.ok().flatten()
            } else {
                None
            };
            (liveness, advertised)
        }
        Err(e) => (
            Liveness::Unreachable {
                bootstrap: config.restart.bootstrap_servers.clone(),
                cause: e.to_string(),
            },
            None,
        ),
    }
}

async fn decommission(
    config: Config,
    path: PathBuf,
    metadata_timeout: Duration,
    keep_config: bool,
) -> Result<(), Error> {
    if let Some(message) = controller_only(&config)? {
        println!("{message}");
        return Ok(());
    }
    let (agent, identity) = agent(config, path, metadata_timeout).await?;
    let ctx = agent.context_for(identity).await?;
    let mut done = agent.decommission(&ctx, keep_config).await?;
    // ZooKeeper mode: a dynamic advertised.listeners override would keep advertising the removed
    // listener after the next start (and Kafka refuses an advertised listener it does not have).
    if !keep_config && agent.node_role()?.dynamic_advertised_listeners() {
        let rc = &agent.config.restart;
        let kafka = kafka_client(&agent.config).map_err(RestartError::from)?;
        match kafka.probe().await {
            crate::kafka::Liveness::Answering => {
                if kafka
                    .clear_dynamic_advertised_listeners(ctx.broker_id)
                    .await
                    .map_err(crate::restart::RestartError::from)?
                {
                    done.push(format!(
                        "removed the dynamic advertised.listeners override of broker {}",
                        ctx.broker_id
                    ));
                }
            }
            other => eprintln!(
                "warning: Kafka is not answering on {} ({other:?}): a dynamic advertised.listeners override of broker {} (ZooKeeper mode) could not be checked; once it runs: kafka-configs.sh --bootstrap-server … --entity-type brokers --entity-name {} --alter --delete-config advertised.listeners",
                rc.bootstrap_servers, ctx.broker_id, ctx.broker_id
            ),
        }
    }
    if done.is_empty() {
        println!(
            "broker {}: nothing to remove (already decommissioned)",
            ctx.broker_id
        );
    } else {
        println!("broker {} decommissioned:", ctx.broker_id);
        for d in done {
            println!("  {d}");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn clap_definition_is_consistent() {
        super::Cli::command().debug_assert();
    }

    #[test]
    fn default_config_path_is_the_config_modules() {
        assert_eq!(
            super::args::DEFAULT_CONFIG_PATH,
            crate::config::DEFAULT_PATH
        );
    }

    #[test]
    fn version_names_the_commit() {
        let version = super::Cli::command().render_version();
        assert!(
            version.starts_with(&format!("kplink-agent {} (", env!("CARGO_PKG_VERSION"))),
            "{version}"
        );
    }
}
