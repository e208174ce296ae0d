//! Command line (public contract): `kplink-agent [-c|--config PATH] <command>`.
//!
//! Exit codes: `run --once` 0 when the broker is fully wired, 1 otherwise; `plan` 0 nothing to do,
//! 2 changes pending, 1 error; `check-config` 0 or 78 (EX_CONFIG). Any command exits 78 when the
//! config file is invalid and 64 (EX_USAGE) on a usage error.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

use crate::config::{self, Config};
use crate::kafka::KafkaCluster;
use crate::metadata::{self, Imds};
use crate::nlb::CallCounter;
use crate::nlb::LoadBalancer;
use crate::reconcile::{Agent, Error};

/// Exit code for an invalid configuration (sysexits EX_CONFIG).
pub const EXIT_CONFIG: u8 = 78;
/// Exit code for a usage error (sysexits EX_USAGE).
pub const EXIT_USAGE: u8 = 64;
/// `plan`: changes are pending.
pub const EXIT_CHANGES_PENDING: u8 = 2;

/// Wires this Kafka broker into the cluster's AWS PrivateLink NLB.
#[derive(Debug, Parser)]
#[command(name = "kplink-agent", version, about)]
pub struct Cli {
    /// Configuration file.
    #[arg(short, long, global = true, default_value = config::DEFAULT_PATH, env = "KPLINK_CONFIG")]
    pub config: PathBuf,
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Reconcile: with --once a single pass.
    Run {
        /// Run one pass and exit: 0 when the broker is fully wired, 1 otherwise.
        #[arg(long)]
        once: bool,
        /// Print the pass report as JSON on stdout.
        #[arg(long)]
        json: bool,
        /// How long to wait for instance metadata before giving up.
        #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
        metadata_timeout: Duration,
    },
    /// Show what a pass would change, changing nothing: exit 0 nothing to do, 2 changes pending, 1 error.
    Plan {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
        /// How long to wait for instance metadata before giving up.
        #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
        metadata_timeout: Duration,
    },
    /// Validate the configuration file without touching AWS: exit 0 or 78.
    CheckConfig,
    /// Show identity, claim, target health, the advertised listener and the last pass.
    Status {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
        /// How long to wait for instance metadata before giving up.
        #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
        metadata_timeout: Duration,
    },
    /// Remove this broker from the NLB and its listener from server.properties.
    Decommission {
        /// Required: confirms that clients will lose this broker's port.
        #[arg(long)]
        yes: bool,
        /// Leave server.properties as it is.
        #[arg(long)]
        keep_config: bool,
        /// How long to wait for instance metadata before giving up.
        #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
        metadata_timeout: Duration,
    },
}

/// Runs a parsed command line; returns the process exit code. Errors are printed as one line.
pub async fn run(cli: Cli) -> ExitCode {
    let config = match Config::load(&cli.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    match cli.command {
        Command::CheckConfig => {
            for w in warnings(&config) {
                eprintln!("warning: {w}");
            }
            println!("config OK: {}", cli.config.display());
            ExitCode::SUCCESS
        }
        Command::Run {
            once,
            json,
            metadata_timeout,
        } => {
            if !once {
                return match daemon(config, cli.config, metadata_timeout).await {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(e) => {
                        tracing::error!(error = %e, "daemon stopped");
                        eprintln!("error: {e}");
                        ExitCode::FAILURE
                    }
                };
            }
            match run_once(config, cli.config, metadata_timeout, json).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(error = %e, "pass failed");
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Status {
            json,
            metadata_timeout,
        } => match status(config, cli.config, metadata_timeout, json).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Decommission {
            yes,
            keep_config,
            metadata_timeout,
        } => {
            if !yes {
                eprintln!(
                    "error: decommission deletes this broker's NLB listener and target group; rerun with --yes to confirm"
                );
                return ExitCode::from(EXIT_USAGE);
            }
            match decommission(config, cli.config, metadata_timeout, keep_config).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Plan {
            json,
            metadata_timeout,
        } => match plan(config, cli.config, metadata_timeout, json).await {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::from(EXIT_CHANGES_PENDING),
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
    }
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

async fn agent(
    config: Config,
    config_path: PathBuf,
    metadata_timeout: Duration,
) -> Result<
    (
        Agent<Imds, crate::nlb::Elbv2, crate::ec2::Ec2Tags>,
        metadata::Identity,
    ),
    Error,
> {
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
        },
        identity,
    ))
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
    let outcome = effect(&agent, &ctx, &report, &|_| {}).await;
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
        if let Ok(o) = &outcome {
            println!("  kafka: {}", describe_outcome(o));
        }
    }
    outcome.map(|_| ())
}

/// Makes the running broker use what the pass wrote, per `restart.mode`.
pub async fn effect<M, L, T>(
    agent: &Agent<M, L, T>,
    ctx: &crate::reconcile::Context,
    report: &crate::reconcile::PassReport,
    on_lock: &(dyn Fn(bool) + Send + Sync),
) -> Result<crate::restart::Outcome, Error>
where
    M: crate::metadata::InstanceMetadata,
    L: crate::nlb::LoadBalancer,
    T: crate::ec2::InstanceTags,
{
    let rc = &agent.config.restart;
    let kafka = crate::kafka::RdKafka::new(&rc.bootstrap_servers, &rc.kafka)
        .map_err(crate::restart::RestartError::from)?;
    let service = crate::restart::CommandService {
        command: rc.command.clone(),
        timeout: rc.timeout,
    };
    let outcome = agent
        .make_effective(ctx, report, &kafka, &service, on_lock)
        .await?;
    tracing::info!(outcome = ?outcome, "kafka listener state");
    Ok(outcome)
}

/// One line about a restart outcome.
pub fn describe_outcome(o: &crate::restart::Outcome) -> String {
    use crate::restart::Outcome;
    match o {
        Outcome::NotRunning => {
            "not running (nothing accepts connections on restart.bootstrap_servers); it reads the file when it starts".to_string()
        }
        Outcome::AlreadyEffective => "already advertises this endpoint".to_string(),
        Outcome::DynamicallyUpdated => {
            "advertised.listeners updated dynamically (no restart)".to_string()
        }
        Outcome::Restarted { took_ms } => {
            format!("restarted under the cluster lock ({took_ms} ms)")
        }
        Outcome::Pending { current } => format!(
            "restart pending (restart.mode = \"never\"); broker advertises {}",
            current.as_deref().unwrap_or("something else")
        ),
    }
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
            "advertised_in_file": observed.file_endpoint,
            "changes_pending": !steps.is_empty(),
            "steps": steps,
            "restart_lock_listener": observed.assessment.lock.as_ref().map(|l| l.arn.clone()),
        });
        println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
    } else if steps.is_empty() {
        println!(
            "broker {} ({}): nothing to do; port {}",
            ctx.broker_id,
            ctx.identity.instance_id,
            observed
                .assessment
                .claim
                .as_ref()
                .map_or("?".to_string(), |l| l.port.to_string())
        );
    } else {
        println!(
            "broker {} ({}): {} change(s) pending",
            ctx.broker_id,
            ctx.identity.instance_id,
            steps.len()
        );
        for step in &steps {
            println!("  + {step}");
        }
    }
    if !json && observed.assessment.lock.is_some() {
        println!(
            "  note: the cluster restart lock is held (listener on port {}); `kplink-agent status` shows by whom",
            agent.config.restart.lock_port
        );
    }
    Ok(steps.is_empty())
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
    let reload_path = path.clone();
    crate::daemon::run(
        agent,
        ctx,
        move || Config::load(&reload_path),
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
    let ctx = agent.context_for(identity).await?;
    let observed = agent.observe(&ctx).await?;
    let steps = agent.plan(&ctx, &observed)?;
    let claim = observed.assessment.claim.as_ref();
    let desired_endpoint = claim.map(|l| format!("{}:{}", ctx.advertised_host, l.port));
    let rc = &agent.config.restart;
    let role = agent.node_role()?;
    let liveness = match crate::kafka::RdKafka::new(&rc.bootstrap_servers, &rc.kafka) {
        Ok(k) => {
            let l = k.probe().await;
            let adv = if l == crate::kafka::Liveness::Answering {
                k.advertised_listeners(ctx.broker_id).await.ok().flatten()
            } else {
                None
            };
            (l, adv)
        }
        Err(e) => (
            crate::kafka::Liveness::Unreachable {
                bootstrap: rc.bootstrap_servers.clone(),
                cause: e.to_string(),
            },
            None,
        ),
    };
    let (liveness, in_broker) = liveness;
    let running = liveness == crate::kafka::Liveness::Answering;
    let unreachable = matches!(liveness, crate::kafka::Liveness::Unreachable { .. });
    let claims = crate::restart::cluster_claims(&agent.lb, &agent.config).await?;
    let (_, stale_claims) = crate::restart::split_claims(&claims);
    let broker_endpoint = in_broker
        .as_deref()
        .and_then(|a| crate::restart::endpoint_of(a, &agent.config.listener.name));
    let restart_pending = match &desired_endpoint {
        Some(d) => {
            unreachable
                || matches!(
                    crate::restart::decide(
                        running,
                        in_broker.as_deref(),
                        &agent.config.listener.name,
                        d,
                        role.dynamic_advertised_listeners(),
                    ),
                    crate::restart::Decision::DynamicUpdate | crate::restart::Decision::Restart
                )
        }
        None => false,
    };
    let lock = match &observed.assessment.lock {
        Some(l) => agent
            .lb
            .tags(&l.arn)
            .await?
            .map(|tags| crate::restart::LockState::from_tags(&l.arn, &tags)),
        None => None,
    };
    let doc = serde_json::json!({
        "identity": ctx.identity,
        "broker_id": ctx.broker_id,
        "broker_id_source": ctx.broker_id_source,
        "claimed_port": claim.map(|l| l.port),
        "listener_arn": claim.map(|l| l.arn.clone()),
        "target_group_arn": claim.and_then(|l| l.target_group_arn.clone()),
        "bootstrap_target_group_arn": observed.assessment.bootstrap.as_ref().and_then(|l| l.target_group_arn.clone()),
        "dedicated_targets": observed.dedicated_targets,
        "bootstrap_targets": observed.bootstrap_targets.iter().filter(|t| t.id == ctx.identity.instance_id).collect::<Vec<_>>(),
        "advertised_in_file": observed.file_endpoint,
        "advertised_desired": desired_endpoint,
        "node_role": role,
        "kafka_running": running,
        "kafka": liveness,
        "stale_claims": stale_claims,
        "advertised_in_broker": broker_endpoint,
        "restart_pending": restart_pending,
        "lock_holder": lock.as_ref().map(|l| l.holder.clone()),
        "lock_phase": lock.as_ref().map(|l| l.phase.clone()),
        "lock_expires_unix": lock.as_ref().map(|l| l.expires),
        "changes_pending": steps.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "last_pass": last,
    });
    if json {
        println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
        return Ok(());
    }
    let id = &ctx.identity;
    println!(
        "instance      {} ({} / {}, {}, {})",
        id.instance_id, id.az, id.az_id, id.private_ip, id.vpc_id
    );
    println!(
        "broker id     {} (from {})",
        ctx.broker_id, ctx.broker_id_source
    );
    println!("node          {role}");
    match claim {
        Some(l) => {
            println!("claimed port  {}", l.port);
            println!("listener      {}", l.arn);
            println!(
                "target group  {}",
                l.target_group_arn.as_deref().unwrap_or("?")
            );
        }
        None => println!("claimed port  none"),
    }
    for t in &observed.dedicated_targets {
        println!(
            "target        {}:{} {} ({:?})",
            t.id, t.port, t.health, t.state
        );
    }
    println!(
        "advertised    file: {}   desired: {}",
        observed.file_endpoint.as_deref().unwrap_or("(none)"),
        desired_endpoint.as_deref().unwrap_or("(no claim yet)")
    );
    println!(
        "kafka         {}",
        if running {
            format!(
                "running, advertises {}{}",
                broker_endpoint.as_deref().unwrap_or("(unknown)"),
                if restart_pending {
                    " - restart pending"
                } else {
                    ""
                }
            )
        } else {
            match &liveness {
                crate::kafka::Liveness::Unreachable { bootstrap, cause } => format!(
                    "UNREACHABLE: {bootstrap} accepts connections but does not answer ({cause}) - restart pending"
                ),
                _ => "not running".to_string(),
            }
        }
    );
    if !stale_claims.is_empty() {
        println!(
            "stale claims  brokers {} (a claim whose target group has no registered target: removed without `decommission`?); left out of the restart health gate",
            stale_claims
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    match &lock {
        Some(l) => println!(
            "restart lock  held by {} (phase {}, expires unix {})",
            l.holder, l.phase, l.expires
        ),
        None => println!("restart lock  free"),
    }
    match &last {
        Some(p) => println!(
            "last pass     {} ({}, unix {})",
            p.summary,
            if p.ok { "ok" } else { "FAILED" },
            p.finished_unix
        ),
        None => println!("last pass     none recorded (is the daemon running?)"),
    }
    if steps.is_empty() {
        println!("drift         none");
    } else {
        for s in steps {
            println!("drift         {s}");
        }
    }
    Ok(())
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
        let kafka = crate::kafka::RdKafka::new(&rc.bootstrap_servers, &rc.kafka)
            .map_err(crate::restart::RestartError::from)?;
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
