//! `[restart]`: how a changed advertised listener takes effect, and how the agent tells whether
//! Kafka's process runs.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::kafka::process::ProcessCheck;

/// `[restart]`
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RestartConfig {
    /// What to do when the running broker must pick up a changed listener.
    pub mode: RestartMode,
    /// Restarts Kafka (systemd stops it with SIGTERM: a controlled shutdown).
    pub command: Vec<String>,
    /// The broker's internal listener, for admin and metadata requests.
    pub bootstrap_servers: String,
    /// Lease of the cluster restart lock; renewed while held, expires if the holder dies.
    #[serde(with = "humantime_serde")]
    pub lease: Duration,
    /// Consecutive healthy observations required before a restart.
    pub healthy_checks: u32,
    /// Time between health observations.
    #[serde(with = "humantime_serde")]
    pub check_interval: Duration,
    /// Per phase: waiting for the lock and health, waiting for the broker to return.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Deprecated and ignored (a warning says so): the restart lock is a target group now, not a
    /// listener. Until every agent runs this release, the port where older agents put their lock
    /// listener (default [`crate::compat::LEGACY_LOCK_PORT`]; see [`crate::compat::legacy_lock_port`]).
    pub lock_port: Option<u16>,
    /// Extra librdkafka properties for the admin client (e.g. `security.protocol`).
    pub kafka: std::collections::BTreeMap<String, String>,
    /// The systemd unit running Kafka, asked whether Kafka's process runs when nothing accepts
    /// connections (a broker recovering its logs is starting, not stopped). Default: the unit
    /// of `restart.command` when it is `systemctl restart|try-restart UNIT`, else
    /// `kafka.service`. See [`RestartConfig::process_check`].
    pub kafka_unit: Option<String>,
    /// Instead of the unit: a pid file naming Kafka's process (for hosts without systemd).
    pub kafka_pid_file: Option<PathBuf>,
}

impl Default for RestartConfig {
    fn default() -> Self {
        RestartConfig {
            mode: RestartMode::Rolling,
            command: ["systemctl", "restart", "kafka.service"]
                .map(String::from)
                .to_vec(),
            bootstrap_servers: "127.0.0.1:9092".to_string(),
            lease: Duration::from_secs(600),
            healthy_checks: 3,
            check_interval: Duration::from_secs(10),
            timeout: Duration::from_secs(900),
            lock_port: None,
            kafka: std::collections::BTreeMap::new(),
            kafka_unit: None,
            kafka_pid_file: None,
        }
    }
}

/// How long a real NLB takes to mark a (re-)registered target healthy with a TCP target group's
/// default health checks: HealthCheckIntervalSeconds 30 × HealthyThresholdCount 5.
pub const NLB_DEFAULT_HEALTHY_AFTER: Duration = Duration::from_secs(150);

impl RestartConfig {
    /// How to tell whether Kafka's process runs: `kafka_pid_file` if set, else the systemd unit
    /// `kafka_unit`, else the unit `command` restarts (`systemctl [options] restart|try-restart
    /// UNIT`), else `kafka.service`.
    pub fn process_check(&self) -> ProcessCheck {
        if let Some(path) = &self.kafka_pid_file {
            return ProcessCheck::PidFile(path.clone());
        }
        if let Some(unit) = &self.kafka_unit {
            return ProcessCheck::Unit(unit.clone());
        }
        let restarted = match self.command.split_first() {
            Some((program, args)) if program.rsplit('/').next() == Some("systemctl") => {
                let words: Vec<&str> = args
                    .iter()
                    .map(String::as_str)
                    .filter(|a| !a.starts_with('-'))
                    .collect();
                match words.as_slice() {
                    ["restart" | "try-restart", unit] => Some(unit.to_string()),
                    _ => None,
                }
            }
            _ => None,
        };
        ProcessCheck::Unit(restarted.unwrap_or_else(|| "kafka.service".to_string()))
    }
}

/// `restart.mode`
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum RestartMode {
    /// Make the running broker use the listener: dynamic update when possible, else a
    /// cluster-wide, health-gated rolling restart.
    #[default]
    Rolling,
    /// Write `server.properties` only and report the pending change; the next Kafka start
    /// picks it up.
    Never,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn restart(command: &[&str], unit: Option<&str>, pid: Option<&str>) -> RestartConfig {
        RestartConfig {
            command: command.iter().map(|s| s.to_string()).collect(),
            kafka_unit: unit.map(String::from),
            kafka_pid_file: pid.map(PathBuf::from),
            ..RestartConfig::default()
        }
    }

    #[test]
    fn the_process_check_follows_the_restart_command_unless_told() {
        let unit = |u: &str| ProcessCheck::Unit(u.to_string());
        for (command, want) in [
            (
                &["systemctl", "restart", "kafka.service"][..],
                unit("kafka.service"),
            ),
            (
                &[
                    "/usr/bin/systemctl",
                    "--no-block",
                    "restart",
                    "confluent-server",
                ],
                unit("confluent-server"),
            ),
            (
                &["systemctl", "try-restart", "kafka@a.service"],
                unit("kafka@a.service"),
            ),
            (&["/opt/kafka/bin/restart.sh"], unit("kafka.service")),
            // Only systemctl names a unit: another program's "restart X" does not.
            (
                &["/opt/kafka/bin/ctl", "restart", "broker"],
                unit("kafka.service"),
            ),
            (&["systemctl", "restart", "a", "b"], unit("kafka.service")),
        ] {
            assert_eq!(
                restart(command, None, None).process_check(),
                want,
                "{command:?}"
            );
        }
        assert_eq!(
            restart(
                &["systemctl", "restart", "x"],
                Some("kafka-broker.service"),
                None
            )
            .process_check(),
            unit("kafka-broker.service")
        );
        assert_eq!(
            restart(&["systemctl", "restart", "x"], None, Some("/run/kafka.pid")).process_check(),
            ProcessCheck::PidFile(PathBuf::from("/run/kafka.pid"))
        );
    }
}
