//! Agent configuration: the TOML file at `/etc/kplink/agent.toml` (public contract).
//!
//! Every key is snake_case; an unknown key is an error naming the key, the file and the line, so a
//! typo never silently falls back to a default on a production broker. [`Config::load`] parses and
//! validates everything that can be checked without AWS or instance metadata, which is exactly what
//! `kplink-agent check-config` runs.

use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};

use serde::Deserialize;

mod diagnostics;
mod error;
mod host;
mod nlb;
mod restart;
mod sections;
mod validate;
mod values;

use error::parse_error;
pub use error::ConfigError;
pub use host::{is_hostname, HostTemplate, HostValues, Placeholder, PLACEHOLDERS};
pub use nlb::{LoadBalancers, NlbConfig, Shard};
pub use restart::{RestartConfig, RestartMode, NLB_DEFAULT_HEALTHY_AFTER};
pub use sections::{AwsConfig, BrokerConfig, DaemonConfig, ListenerConfig};
pub use values::{
    parse_port_range, IdleTimeout, PortRange, SecurityProtocol, IDLE_MAX_SECONDS, IDLE_MIN_SECONDS,
};

/// Default location of the configuration file.
pub const DEFAULT_PATH: &str = "/etc/kplink/agent.toml";

/// Default `daemon.state_dir` (systemd's `StateDirectory=kplink`).
pub const DEFAULT_STATE_DIR: &str = "/var/lib/kplink";

/// Most NLBs in `nlb.load_balancer_arns`: DescribeLoadBalancers takes at most 20 ARNs per call
/// (ELBv2 API reference, DescribeLoadBalancers: "LoadBalancerArns ... Maximum of 20"), and 20
/// NLBs of 49 brokers each is far beyond any Kafka cluster.
pub const MAX_LOAD_BALANCERS: usize = 20;

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Cluster name, used in target group names and the `kplink:cluster` tag.
    pub cluster: String,
    /// How the broker id is found and where Kafka's config lives.
    #[serde(default)]
    pub broker: BrokerConfig,
    /// The Kafka listener managed by the agent.
    pub listener: ListenerConfig,
    /// The PrivateLink NLB.
    pub nlb: NlbConfig,
    /// How a changed advertised listener takes effect.
    #[serde(default)]
    pub restart: RestartConfig,
    /// The long-running agent (`kplink-agent run`).
    #[serde(default)]
    pub daemon: DaemonConfig,
    /// How the agent spends the account's AWS API budget.
    #[serde(default)]
    pub aws: AwsConfig,
}

impl Config {
    /// Reads, parses and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parses and validates config text; `path` is only used in error messages.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| parse_error(text, path, &e))?;
        config.validate(path)?;
        Ok(config)
    }

    /// The state directory: `daemon.state_dir`, or systemd's if the CLI applied it
    /// ([`Config::with_state_directory`]).
    pub fn state_dir(&self) -> PathBuf {
        self.daemon.state_dir.clone()
    }

    /// The config with systemd's `StateDirectory=` applied: `systemd` is the value of
    /// `STATE_DIRECTORY` as the unit passes it (colon-separated when it names several; the
    /// first wins), which takes the place of `daemon.state_dir`. The CLI reads the environment;
    /// the config never does, so a test or a library user decides.
    pub fn with_state_directory(mut self, systemd: Option<&std::ffi::OsStr>) -> Config {
        let first = systemd
            .map(|v| PathBuf::from(v.to_string_lossy().split(':').next().unwrap_or_default()))
            .filter(|p| !p.as_os_str().is_empty());
        if let Some(dir) = first {
            self.daemon.state_dir = dir;
        }
        self
    }

    /// The ports of `nlb.port_range`.
    pub fn port_range(&self) -> RangeInclusive<u16> {
        self.nlb.port_range.range()
    }
}

/// What the tests of every section start from: the smallest valid file, and how they parse it.
#[cfg(test)]
pub(crate) mod test_util {
    use super::*;

    pub(crate) const MINIMAL: &str = r#"
cluster = "orders"
[listener]
advertised_host = "kafka-{az_id}.orders.example.internal"
[nlb]
load_balancer_arn = "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/net/kafka/0123456789abcdef"
"#;

    pub(crate) fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("/etc/kplink/agent.toml"))
    }

    /// The line and message of a config that must fail while deserializing.
    pub(super) fn parse_failure(text: &str) -> (usize, String) {
        match parse(text).unwrap_err() {
            ConfigError::Parse { line, message, .. } => (line, message),
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    use crate::config::test_util::{parse, MINIMAL};
    use crate::kafka::process::ProcessCheck;

    /// systemd's `STATE_DIRECTORY` (its first entry) takes the place of `daemon.state_dir`;
    /// unset or empty, the configured one stays.
    #[test]
    fn systemds_state_directory_wins_when_given() {
        let config = parse(&format!("{MINIMAL}[daemon]\nstate_dir = \"/srv/kplink\"\n")).unwrap();
        let with = |v: Option<&str>| {
            config
                .clone()
                .with_state_directory(v.map(std::ffi::OsStr::new))
                .state_dir()
        };
        assert_eq!(with(None), Path::new("/srv/kplink"));
        assert_eq!(with(Some("")), Path::new("/srv/kplink"));
        assert_eq!(
            with(Some("/var/lib/kplink-agent")),
            Path::new("/var/lib/kplink-agent")
        );
        assert_eq!(
            with(Some("/var/lib/kplink-agent:/var/lib/other")),
            Path::new("/var/lib/kplink-agent")
        );
    }

    #[test]
    fn minimal_config_gets_documented_defaults() {
        let c = parse(MINIMAL).unwrap();
        assert_eq!(c.broker.id_tag, "kafka:broker-id");
        assert_eq!(
            c.broker.server_properties,
            PathBuf::from("/etc/kafka/server.properties")
        );
        assert_eq!(c.listener.name, "PRIVATELINK");
        assert_eq!(c.listener.port, 9094);
        assert_eq!(c.listener.security_protocol, SecurityProtocol::Ssl);
        assert_eq!(c.nlb.bootstrap_port, 10000);
        assert_eq!(c.port_range(), 10001..=10049);
        assert_eq!(c.restart.mode, RestartMode::Rolling);
        assert_eq!(
            c.restart.command,
            vec!["systemctl", "restart", "kafka.service"]
        );
        assert_eq!(c.restart.bootstrap_servers, "127.0.0.1:9092");
        assert_eq!(c.restart.lease, Duration::from_secs(600));
        assert_eq!(c.restart.healthy_checks, 3);
        assert_eq!(
            c.restart.process_check(),
            ProcessCheck::Unit("kafka.service".into())
        );
        assert_eq!(c.restart.check_interval, Duration::from_secs(10));
        assert_eq!(c.restart.timeout, Duration::from_secs(900));
        assert_eq!(c.daemon.interval, Duration::from_secs(60));
        assert_eq!(c.aws.pass_deadline, Duration::from_secs(300));
        assert_eq!(c.aws.steady_reads_per_second, 0.5);
        assert_eq!(
            c.daemon.metrics_listen,
            Some("127.0.0.1:9721".parse().unwrap())
        );
    }

    #[test]
    fn errors_name_file_key_and_line() {
        let cases: &[(&str, &str)] = &[
            ("cluster = \"orders\"\nbogus = 1\n", "unknown field `bogus`"),
            (
                &MINIMAL.replace("[nlb]", "[nlb]\nport_rnge = \"1-2\""),
                "port_rnge",
            ),
            (
                &MINIMAL.replace("{az_id}", "{zone}"),
                "unknown placeholder {zone}",
            ),
            (
                &MINIMAL.replace("{az_id}", "{az_id"),
                "unterminated placeholder",
            ),
            (
                &MINIMAL.replace("[nlb]", "[nlb]\nport_range = \"10049-10001\""),
                "nlb.port_range",
            ),
            (
                &MINIMAL.replace("[nlb]", "[nlb]\nport_range = \"9990-10010\""),
                "inside nlb.port_range",
            ),
            (
                &MINIMAL.replace("cluster = \"orders\"", "cluster = \"\""),
                "cluster",
            ),
            (
                &MINIMAL.replace("[listener]", "[listener]\nsecurity_protocol = \"TLS\""),
                "security_protocol",
            ),
            (
                &MINIMAL.replace("[listener]", "[broker]\nid = -1\n[listener]"),
                "negative",
            ),
            (
                &MINIMAL.replace("arn:aws:elasticloadbalancing", "nope"),
                "load_balancer_arn",
            ),
            (
                &MINIMAL.replace("[listener]", "[restart]\nmode = \"sometimes\"\n[listener]"),
                "sometimes",
            ),
            (
                &format!("{MINIMAL}[daemon]\ninterval = \"soon\"\n"),
                "expected a duration",
            ),
            (
                &format!("{MINIMAL}[daemon]\ninterval = \"10ms\"\n"),
                "daemon.interval",
            ),
            (
                &format!("{MINIMAL}[daemon]\nmetrics_listen = \"localhost\"\n"),
                "daemon.metrics_listen",
            ),
            (
                &format!("{MINIMAL}[aws]\npass_deadline = \"2s\"\n"),
                "aws.pass_deadline",
            ),
            (
                &format!("{MINIMAL}[aws]\nsteady_reads_per_second = 0\n"),
                "aws.steady_reads_per_second",
            ),
            (
                &format!("{MINIMAL}[aws]\nsteady_reads_per_second = 11.0\n"),
                "aws.steady_reads_per_second",
            ),
            (&format!("{MINIMAL}[aws]\nretries = 3\n"), "retries"),
        ];
        for (text, needle) in cases {
            let err = parse(text).unwrap_err().to_string();
            assert!(err.contains(needle), "{err:?} lacks {needle:?}");
            assert!(
                err.contains("/etc/kplink/agent.toml"),
                "{err:?} lacks the path"
            );
            assert!(!err.contains('\n'), "{err:?} is not one line");
        }
    }

    #[test]
    fn shipped_example_is_unconfigured_until_the_required_keys_are_set() {
        let shipped = include_str!("../../packaging/agent.toml");
        assert!(
            parse(shipped).is_err(),
            "the package must not start an unconfigured agent"
        );
        let filled = shipped
            .replace("# cluster = ", "cluster = ")
            .replace("# advertised_host = ", "advertised_host = ")
            .replace("# load_balancer_arn = ", "load_balancer_arn = ");
        let c = parse(&filled).unwrap();
        assert_eq!(c.cluster, "orders");
        assert_eq!(c.broker, BrokerConfig::default());
        assert_eq!(c.restart, RestartConfig::default());
        assert_eq!(c.daemon, DaemonConfig::default());
    }
}
