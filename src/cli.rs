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
use crate::metadata::{self, Imds};
use crate::nlb::CallCounter;
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
            println!("config OK: {}", cli.config.display());
            ExitCode::SUCCESS
        }
        Command::Run {
            once,
            json,
            metadata_timeout,
        } => {
            if !once {
                eprintln!("error: the daemon mode is not available yet; use `run --once` (e.g. from a timer)");
                return ExitCode::from(EXIT_USAGE);
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
    let (agent, identity) = agent(config, path, metadata_timeout).await?;
    let ctx = agent.context_for(identity).await?;
    let report = agent.pass(&ctx).await?;
    tracing::info!(
        broker_id = report.broker_id,
        port = report.port,
        listener_arn = %report.listener_arn,
        target_group_arn = %report.target_group_arn,
        changes = report.changes.len(),
        "pass complete"
    );
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        );
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
    }
    Ok(())
}

/// Prints the plan; `Ok(true)` when there is nothing to do.
async fn plan(
    config: Config,
    path: PathBuf,
    metadata_timeout: Duration,
    json: bool,
) -> Result<bool, Error> {
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
    Ok(steps.is_empty())
}
