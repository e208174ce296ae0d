//! Command line (public contract): `kplink-agent [-c|--config PATH] <command>`.
//!
//! Exit codes: `run --once` 0 when the broker is fully wired, 1 otherwise; `plan` 0 nothing to do,
//! 2 changes pending, 1 error; `check-config` 0, 1 certificate refused (see [`crate::tls`]), or 78
//! (EX_CONFIG); `check-properties` 0 Kafka would start on the file, 1 it would refuse;
//! `consumer-dns` (no config file: [`crate::consumer_dns`]) as `plan`. Any other command exits 78 when the config file is
//! invalid; every command 64 (EX_USAGE) on a usage error.
//!
//! Only this module writes to stdout (what it prints is a contract); everything else logs.
#![allow(clippy::print_stdout)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use crate::config::Config;
use crate::kafka::{KafkaError, RdKafka};
use crate::metadata::{self, Imds};
use crate::model::{Agent, Error};
use crate::nlb::CallCounter;
use crate::restart::{CommandService, RestartError};

// The clap definition lives in its own file: build.rs includes it to generate the man pages and
// shell completions.
mod args;
pub use args::{Cli, Command, ConsumerDnsArgs, LogFormat};

mod check;
mod consumer_dns;
mod daemon;
mod decommission;
mod once;
mod plan;
mod status;

use check::{check_config, check_properties};
use daemon::daemon;
use decommission::{decommission, decommission_plan};
use once::run_once;
use plan::plan;
use status::status;

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
        load_config(&path).map_err(|e| {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_CONFIG)
        })
    };
    let code = async {
        Ok::<_, ExitCode>(match command {
            Command::ConsumerDns(args) => {
                consumer_dns::main(&consumer_dns_request(&args), args.json).await
            }
            Command::CheckProperties { path: Some(file) } => check_properties(&file),
            Command::CheckProperties { path: None } => {
                check_properties(&load()?.broker.server_properties)
            }
            Command::CheckConfig => check_config(&load()?, &path),
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
            Command::Decommission {
                dry_run: true,
                keep_config,
                metadata_timeout,
                ..
            } => {
                match decommission_plan(load()?, path.clone(), metadata_timeout, keep_config).await
                {
                    Ok(true) => ExitCode::SUCCESS,
                    Ok(false) => ExitCode::from(EXIT_CHANGES_PENDING),
                    Err(e) => exit(Err(e)),
                }
            }
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
                ..
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
        clients: crate::consumer_dns::clients::Options {
            tls: a.tls,
            nlb_idle_timeout: a.nlb_idle_timeout,
        },
    }
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
            file: Default::default(),
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

/// Loads the config at `path` with systemd's `STATE_DIRECTORY` (set by the unit's
/// `StateDirectory=`) applied: the one place the agent reads it.
pub(crate) fn load_config(path: &std::path::Path) -> Result<Config, crate::config::ConfigError> {
    Ok(Config::load(path)?.with_state_directory(std::env::var_os("STATE_DIRECTORY").as_deref()))
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
