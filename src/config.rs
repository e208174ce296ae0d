//! Agent configuration: the TOML file at `/etc/kplink/agent.toml` (public contract).
//!
//! Every key is snake_case; an unknown key is an error naming the key, the file and the line, so a
//! typo never silently falls back to a default on a production broker. [`Config::load`] parses and
//! validates everything that can be checked without AWS or instance metadata, which is exactly what
//! `kplink-agent check-config` runs.

use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// Default location of the configuration file.
pub const DEFAULT_PATH: &str = "/etc/kplink/agent.toml";

/// Placeholders accepted in `listener.advertised_host`.
pub const PLACEHOLDERS: &[&str] = &[
    "az_id",
    "az",
    "region",
    "broker_id",
    "instance_id",
    "cluster",
];

/// Why a configuration file was rejected. Each message is one line naming the file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config {path}: {source}")]
    Read {
        /// The config file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// TOML syntax error, unknown key or wrong type.
    #[error("invalid config {path}:{line}:{column}: {message}")]
    Parse {
        /// The config file.
        path: PathBuf,
        /// 1-based line of the offending item.
        line: usize,
        /// 1-based column of the offending item.
        column: usize,
        /// What is wrong, from the TOML parser.
        message: String,
    },
    /// A value parsed but is not acceptable.
    #[error("invalid config {path}: {key}: {reason}")]
    Invalid {
        /// The config file.
        path: PathBuf,
        /// Dotted key, e.g. `nlb.port_range`.
        key: &'static str,
        /// What is wrong.
        reason: String,
    },
}

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
}

/// `[daemon]`
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DaemonConfig {
    /// Time between reconcile passes (±10 % jitter).
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Address of the Prometheus `/metrics` and `/healthz` endpoint; empty disables it.
    pub metrics_listen: String,
    /// Where the daemon records its last pass for `status` (systemd's `STATE_DIRECTORY` wins).
    pub state_dir: PathBuf,
}

impl Default for DaemonConfig {
    fn default() -> Self {
        DaemonConfig {
            interval: Duration::from_secs(60),
            metrics_listen: "127.0.0.1:9721".to_string(),
            state_dir: PathBuf::from("/var/lib/kplink"),
        }
    }
}

/// `[broker]`
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct BrokerConfig {
    /// Explicit broker id; wins over every other source (which must still agree).
    pub id: Option<i32>,
    /// Instance tag holding the broker id.
    pub id_tag: String,
    /// Kafka's `server.properties`.
    pub server_properties: PathBuf,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            id: None,
            id_tag: "kafka:broker-id".to_string(),
            server_properties: PathBuf::from("/etc/kafka/server.properties"),
        }
    }
}

/// `[listener]`
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    /// Kafka listener name managed by the agent.
    #[serde(default = "default_listener_name")]
    pub name: String,
    /// Local port Kafka binds for the managed listener; NLB targets point at it.
    #[serde(default = "default_listener_port")]
    pub port: u16,
    /// Advertised host template, e.g. `kafka-{az_id}.orders.example.internal`.
    pub advertised_host: String,
    /// Security protocol mapped to the listener name if the file has no mapping for it yet.
    #[serde(default = "default_security_protocol")]
    pub security_protocol: String,
}

fn default_listener_name() -> String {
    "PRIVATELINK".to_string()
}
fn default_listener_port() -> u16 {
    9094
}
fn default_security_protocol() -> String {
    "SSL".to_string()
}

/// `[nlb]`
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NlbConfig {
    /// ARN of the Network Load Balancer behind the endpoint service.
    pub load_balancer_arn: String,
    /// Ports from which per-broker listeners are claimed, `"FIRST-LAST"`.
    #[serde(default = "default_port_range")]
    pub port_range: String,
    /// Port of the shared bootstrap listener.
    #[serde(default = "default_bootstrap_port")]
    pub bootstrap_port: u16,
}

fn default_port_range() -> String {
    "10001-10049".to_string()
}
fn default_bootstrap_port() -> u16 {
    10000
}

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
    /// NLB port of the cluster restart lock listener (never used by clients).
    pub lock_port: u16,
    /// Extra librdkafka properties for the admin client (e.g. `security.protocol`).
    pub kafka: std::collections::BTreeMap<String, String>,
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
            lock_port: 9999,
            kafka: std::collections::BTreeMap::new(),
        }
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
        let config: Config = toml::from_str(text).map_err(|e| {
            let (line, column) = e
                .span()
                .map(|span| line_col(text, span.start))
                .unwrap_or((1, 1));
            ConfigError::Parse {
                path: path.to_path_buf(),
                line,
                column,
                message: one_line(e.message().trim()),
            }
        })?;
        config.validate(path)?;
        Ok(config)
    }

    fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let invalid = |key: &'static str, reason: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            key,
            reason: one_line(&reason),
        };
        if self.cluster.is_empty()
            || self.cluster.len() > 64
            || !self
                .cluster
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(invalid(
                "cluster",
                format!(
                    "{:?} must be 1-64 characters of letters, digits, '-', '_' or '.'",
                    self.cluster
                ),
            ));
        }
        if let Some(id) = self.broker.id {
            if id < 0 {
                return Err(invalid("broker.id", format!("{id} is negative")));
            }
        }
        if self.broker.id_tag.is_empty() || self.broker.id_tag.contains('/') {
            return Err(invalid(
                "broker.id_tag",
                format!("{:?} is not a usable tag key", self.broker.id_tag),
            ));
        }
        if !self.broker.server_properties.is_absolute() {
            return Err(invalid(
                "broker.server_properties",
                format!(
                    "{} is not an absolute path",
                    self.broker.server_properties.display()
                ),
            ));
        }
        if self.listener.name.is_empty()
            || !self
                .listener
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(invalid(
                "listener.name",
                format!(
                    "{:?} is not a valid Kafka listener name",
                    self.listener.name
                ),
            ));
        }
        if self.listener.port == 0 {
            return Err(invalid("listener.port", "0 is not a port".to_string()));
        }
        let protocols = ["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"];
        if !protocols.contains(&self.listener.security_protocol.as_str()) {
            return Err(invalid(
                "listener.security_protocol",
                format!(
                    "{:?} is not one of {}",
                    self.listener.security_protocol,
                    protocols.join(", ")
                ),
            ));
        }
        let probe = HostValues {
            az_id: "use1-az1",
            az: "us-east-1a",
            region: "us-east-1",
            broker_id: 1,
            instance_id: "i-0123456789abcdef0",
            cluster: &self.cluster,
        };
        let host = render_host(&self.listener.advertised_host, &probe)
            .map_err(|reason| invalid("listener.advertised_host", reason))?;
        if !is_hostname(&host) {
            return Err(invalid(
                "listener.advertised_host",
                format!(
                    "{:?} does not render to a valid DNS name (e.g. {host:?})",
                    self.listener.advertised_host
                ),
            ));
        }
        if !self.nlb.load_balancer_arn.starts_with("arn:")
            || !self.nlb.load_balancer_arn.contains(":loadbalancer/")
        {
            return Err(invalid(
                "nlb.load_balancer_arn",
                format!(
                    "{:?} is not a load balancer ARN",
                    self.nlb.load_balancer_arn
                ),
            ));
        }
        let range = parse_port_range(&self.nlb.port_range)
            .map_err(|reason| invalid("nlb.port_range", reason))?;
        if self.nlb.bootstrap_port == 0 {
            return Err(invalid("nlb.bootstrap_port", "0 is not a port".to_string()));
        }
        if range.contains(&self.nlb.bootstrap_port) {
            return Err(invalid(
                "nlb.bootstrap_port",
                format!(
                    "{} lies inside nlb.port_range {}",
                    self.nlb.bootstrap_port, self.nlb.port_range
                ),
            ));
        }
        if self.restart.command.is_empty() {
            return Err(invalid("restart.command", "is empty".to_string()));
        }
        if self.restart.healthy_checks == 0 {
            return Err(invalid(
                "restart.healthy_checks",
                "must be at least 1".to_string(),
            ));
        }
        if self.restart.lease < Duration::from_secs(10) {
            return Err(invalid(
                "restart.lease",
                format!("{:?} is shorter than 10s", self.restart.lease),
            ));
        }
        if self.restart.lock_port == 0
            || self.restart.lock_port == self.nlb.bootstrap_port
            || range.contains(&self.restart.lock_port)
        {
            return Err(invalid(
                "restart.lock_port",
                format!(
                    "{} must be a port outside nlb.port_range and other than nlb.bootstrap_port",
                    self.restart.lock_port
                ),
            ));
        }
        if self.daemon.interval < Duration::from_secs(1) {
            return Err(invalid(
                "daemon.interval",
                format!("{:?} is shorter than 1s", self.daemon.interval),
            ));
        }
        if !self.daemon.metrics_listen.is_empty()
            && self
                .daemon
                .metrics_listen
                .parse::<std::net::SocketAddr>()
                .is_err()
        {
            return Err(invalid(
                "daemon.metrics_listen",
                format!(
                    "{:?} is not an address like 127.0.0.1:9721",
                    self.daemon.metrics_listen
                ),
            ));
        }
        Ok(())
    }

    /// Valid but risky settings, one line each (printed by `check-config`, `plan` and at daemon
    /// start).
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        let range = self.port_range();
        let claims = usize::from(*range.end() - *range.start()) + 1;
        // Bootstrap and the restart lock are listeners too (the lock only while held).
        let needed = claims + 2;
        let max = crate::nlb::MAX_LISTENERS_PER_NLB;
        if needed > max {
            out.push(format!(
                "nlb.port_range {} ({claims} ports) + bootstrap listener + restart lock listener = {needed} listeners, more than the {max} AWS allows per Network Load Balancer (not adjustable): at most {} brokers can claim a port; use a range of {} ports or fewer",
                self.nlb.port_range,
                max - 2,
                max - 2
            ));
        }
        out
    }

    /// The validated port range (validation guarantees it parses).
    pub fn port_range(&self) -> RangeInclusive<u16> {
        // Config::parse validated the range; the fallback is the documented default.
        parse_port_range(&self.nlb.port_range).unwrap_or(10001..=10049)
    }
}

/// Values substituted into `listener.advertised_host`.
#[derive(Debug, Clone)]
pub struct HostValues<'a> {
    /// `{az_id}`, e.g. `use1-az1`.
    pub az_id: &'a str,
    /// `{az}`, e.g. `us-east-1a`.
    pub az: &'a str,
    /// `{region}`.
    pub region: &'a str,
    /// `{broker_id}`.
    pub broker_id: i32,
    /// `{instance_id}`.
    pub instance_id: &'a str,
    /// `{cluster}`.
    pub cluster: &'a str,
}

/// Substitutes `{placeholder}`s; an unknown or unterminated placeholder is an error.
pub fn render_host(template: &str, values: &HostValues<'_>) -> Result<String, String> {
    let mut out = String::with_capacity(template.len() + 16);
    let mut rest = template;
    while let Some(open) = rest.find(['{', '}']) {
        out.push_str(&rest[..open]);
        if rest.as_bytes()[open] == b'}' {
            return Err(format!("unmatched '}}' in {template:?}"));
        }
        let after = &rest[open + 1..];
        let close = after
            .find('}')
            .ok_or_else(|| format!("unterminated placeholder in {template:?}"))?;
        let name = &after[..close];
        match name {
            "az_id" => out.push_str(values.az_id),
            "az" => out.push_str(values.az),
            "region" => out.push_str(values.region),
            "broker_id" => out.push_str(&values.broker_id.to_string()),
            "instance_id" => out.push_str(values.instance_id),
            "cluster" => out.push_str(values.cluster),
            other => {
                return Err(format!(
                    "unknown placeholder {{{other}}} in {template:?} (known: {})",
                    PLACEHOLDERS
                        .iter()
                        .map(|p| format!("{{{p}}}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            }
        }
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// RFC 1123 host name check (letters, digits, hyphens, dots; labels 1-63; total ≤ 253).
pub fn is_hostname(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

/// Parses `"FIRST-LAST"` into an inclusive, non-empty port range.
pub fn parse_port_range(text: &str) -> Result<RangeInclusive<u16>, String> {
    let (first, last) = text
        .split_once('-')
        .ok_or_else(|| format!("{text:?} is not of the form FIRST-LAST"))?;
    let parse = |s: &str| -> Result<u16, String> {
        match s.trim().parse::<u16>() {
            Ok(0) | Err(_) => Err(format!("{s:?} in {text:?} is not a port (1-65535)")),
            Ok(p) => Ok(p),
        }
    };
    let (first, last) = (parse(first)?, parse(last)?);
    if first > last {
        return Err(format!("{text:?} is empty (first port above last)"));
    }
    Ok(first..=last)
}

/// Error messages stay on one line whatever the offending value contains.
fn one_line(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            let escaped: Vec<char> = if c.is_control() {
                c.escape_default().collect()
            } else {
                vec![c]
            };
            escaped
        })
        .collect()
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
cluster = "orders"
[listener]
advertised_host = "kafka-{az_id}.orders.example.internal"
[nlb]
load_balancer_arn = "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/net/kafka/0123456789abcdef"
"#;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("/etc/kplink/agent.toml"))
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
        assert_eq!(c.listener.security_protocol, "SSL");
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
        assert_eq!(c.restart.check_interval, Duration::from_secs(10));
        assert_eq!(c.restart.timeout, Duration::from_secs(900));
        assert_eq!(c.daemon.interval, Duration::from_secs(60));
        assert_eq!(c.daemon.metrics_listen, "127.0.0.1:9721");
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
        let shipped = include_str!("../packaging/agent.toml");
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

    #[test]
    fn unknown_key_reports_its_line() {
        let text = "cluster = \"orders\"\n\n[broker]\nidtag = \"x\"\n";
        match parse(text).unwrap_err() {
            ConfigError::Parse { line, message, .. } => {
                assert_eq!(line, 4);
                assert!(message.contains("idtag"));
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn renders_every_placeholder() {
        let values = HostValues {
            az_id: "use1-az1",
            az: "us-east-1b",
            region: "us-east-1",
            broker_id: 7,
            instance_id: "i-1",
            cluster: "orders",
        };
        assert_eq!(
            render_host(
                "{cluster}-{broker_id}.{az_id}.{az}.{region}.{instance_id}",
                &values
            )
            .unwrap(),
            "orders-7.use1-az1.us-east-1b.us-east-1.i-1"
        );
        assert!(render_host("a}b", &values).is_err());
    }
}
