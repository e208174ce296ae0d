//! Agent configuration: the TOML file at `/etc/kplink/agent.toml` (public contract).
//!
//! Every key is snake_case; an unknown key is an error naming the key, the file and the line, so a
//! typo never silently falls back to a default on a production broker. [`Config::load`] parses and
//! validates everything that can be checked without AWS or instance metadata, which is exactly what
//! `kplink-agent check-config` runs.

use std::fmt;
use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::kafka::process::ProcessCheck;

/// Default location of the configuration file.
pub const DEFAULT_PATH: &str = "/etc/kplink/agent.toml";

/// Default `daemon.state_dir` (systemd's `StateDirectory=kplink`).
pub const DEFAULT_STATE_DIR: &str = "/var/lib/kplink";

/// Placeholders accepted in `listener.advertised_host`.
pub const PLACEHOLDERS: &[&str] = &[
    "az_id",
    "az",
    "region",
    "broker_id",
    "instance_id",
    "cluster",
    "shard",
];

/// Most NLBs in `nlb.load_balancer_arns`: DescribeLoadBalancers takes at most 20 ARNs per call
/// (ELBv2 API reference, DescribeLoadBalancers: "LoadBalancerArns ... Maximum of 20"), and 20
/// NLBs of 49 brokers each is far beyond any Kafka cluster.
pub const MAX_LOAD_BALANCERS: usize = 20;

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
    /// TOML syntax error, unknown key, wrong type or a value its type rejects (port range,
    /// security protocol, address).
    #[error("invalid config {path}:{line}:{column}: {message}")]
    Parse {
        /// The config file.
        path: PathBuf,
        /// 1-based line of the offending item.
        line: usize,
        /// 1-based column of the offending item.
        column: usize,
        /// What is wrong, from the TOML parser; starts with the dotted key (`nlb.port_range: `)
        /// when the error lies in a value or in a table (`nlb: missing field ...`).
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
    /// How the agent spends the account's AWS API budget.
    #[serde(default)]
    pub aws: AwsConfig,
}

/// `[aws]`: the account's API budget. AWS throttles the ELB API per account and Region with
/// token buckets shared by every caller (AWS "Request throttling for the ELB API": `Describe*`
/// 40 tokens refilled 10 per second), so the agent treats throttling as back-pressure and keeps
/// its steady state to a small share of the refill.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AwsConfig {
    /// How long one pass (`run --once`, a daemon pass, `decommission`) may keep retrying
    /// throttled, 5xx and lost answers before it fails. Default 5 minutes: a fleet booting at
    /// once is paced by RegisterTargets' bucket (20 tokens, 4 per second; two registrations per
    /// broker), so n brokers need about (2n − 20) / 4 seconds in all: 5 minutes covers about
    /// 600 brokers at once, and stays under systemd's start timeout for the unit (6 minutes).
    #[serde(with = "humantime_serde")]
    pub pass_deadline: Duration,
    /// ELBv2 reads per second the whole cluster's steady state may make (each broker checks its
    /// NLB wiring every `cluster size / this` seconds, never more often than `daemon.interval`,
    /// with ±50 % jitter). Default 0.5: 5 % of the account's 10 per second refill, for a cluster
    /// of any size.
    pub steady_reads_per_second: f64,
}

impl Default for AwsConfig {
    fn default() -> Self {
        AwsConfig {
            pass_deadline: Duration::from_secs(300),
            steady_reads_per_second: 0.5,
        }
    }
}

/// `[daemon]`
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DaemonConfig {
    /// Time between reconcile passes (±10 % jitter).
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Address of the Prometheus `/metrics` and `/healthz` endpoint; `""` in the file (`None`)
    /// disables it.
    #[serde(deserialize_with = "optional_address")]
    pub metrics_listen: Option<SocketAddr>,
    /// Where the daemon records its last pass for `status` (systemd's `STATE_DIRECTORY` wins).
    pub state_dir: PathBuf,
}

impl Default for DaemonConfig {
    fn default() -> Self {
        DaemonConfig {
            interval: Duration::from_secs(60),
            metrics_listen: Some(SocketAddr::from(([127, 0, 0, 1], 9721))),
            state_dir: PathBuf::from(DEFAULT_STATE_DIR),
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
    /// `broker.rack` to write (same placeholders as `listener.advertised_host`, e.g.
    /// `"{az_id}"`); unset: `broker.rack` is left alone.
    pub rack: Option<String>,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            id: None,
            id_tag: "kafka:broker-id".to_string(),
            server_properties: PathBuf::from("/etc/kafka/server.properties"),
            rack: None,
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
    #[serde(default)]
    pub security_protocol: SecurityProtocol,
}

fn default_listener_name() -> String {
    "PRIVATELINK".to_string()
}
fn default_listener_port() -> u16 {
    9094
}

/// `[nlb]`
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NlbConfig {
    /// ARN of the Network Load Balancer behind the endpoint service (one NLB). Exactly one of
    /// this and `load_balancer_arns` is set; use [`NlbConfig::load_balancers`].
    #[serde(default)]
    pub load_balancer_arn: Option<String>,
    /// ARNs of the NLBs (shards), in `{shard}` order: a new broker claims on NLB `broker id mod n`
    /// first, then the next ones round the list (see `registry::shard_order`).
    #[serde(default)]
    pub load_balancer_arns: Option<Vec<String>>,
    /// Ports from which per-broker listeners are claimed, `"FIRST-LAST"`.
    #[serde(default = "default_port_range")]
    pub port_range: PortRange,
    /// Port of the shared bootstrap listener.
    #[serde(default = "default_bootstrap_port")]
    pub bootstrap_port: u16,
    /// The listeners' TCP idle timeout (`tcp.idle_timeout.seconds`): `"auto"` (default: the
    /// broker's `connections.max.idle.ms` plus a minute), `"off"`, or a duration (60 s-100 m).
    /// See [`crate::idle`].
    #[serde(default)]
    pub idle_timeout: IdleTimeout,
}

/// One NLB of the cluster: its 0-based index in the configured list (`{shard}`) and its ARN.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Shard {
    /// Index in `nlb.load_balancer_arns` (0 with `nlb.load_balancer_arn`).
    pub index: usize,
    /// The NLB.
    pub load_balancer_arn: String,
}

impl NlbConfig {
    /// The first configured NLB (the only one with `load_balancer_arn`).
    pub fn first_load_balancer(&self) -> String {
        self.load_balancers()
            .into_iter()
            .next()
            .map(|s| s.load_balancer_arn)
            .unwrap_or_default()
    }

    /// The configured NLBs in list order (one with `load_balancer_arn`); validation makes sure
    /// there is at least one.
    pub fn load_balancers(&self) -> Vec<Shard> {
        let arns: Vec<&String> = match (&self.load_balancer_arn, &self.load_balancer_arns) {
            (Some(one), None) => vec![one],
            (None, Some(many)) => many.iter().collect(),
            (Some(one), Some(_)) => vec![one],
            (None, None) => Vec::new(),
        };
        arns.into_iter()
            .enumerate()
            .map(|(index, arn)| Shard {
                index,
                load_balancer_arn: arn.clone(),
            })
            .collect()
    }
}

fn default_port_range() -> PortRange {
    PortRange {
        start: 10001,
        end: 10049,
    }
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
    /// Deprecated and ignored (a warning says so): the restart lock is a target group now, not a
    /// listener. Until every agent runs this release, the port where older agents put their lock
    /// listener (default [`LEGACY_LOCK_PORT`]; see [`RestartConfig::legacy_lock_port`]).
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

/// Where older agents (release 0.1) put the restart lock listener when `restart.lock_port` was unset.
pub const LEGACY_LOCK_PORT: u16 = 9999;

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

    /// The port on which an older agent may hold a lock *listener* (`restart.lock_port`, else
    /// [`LEGACY_LOCK_PORT`]); `None` when that port is `nlb.bootstrap_port` or in
    /// `nlb.port_range`, where older agents refused to put it.
    pub fn legacy_lock_port(&self, nlb: &NlbConfig) -> Option<u16> {
        let port = self.lock_port.unwrap_or(LEGACY_LOCK_PORT);
        (port != 0 && port != nlb.bootstrap_port && !nlb.port_range.contains(port)).then_some(port)
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

/// `nlb.port_range`: an inclusive, non-empty range of ports `1..=65535`, written `"FIRST-LAST"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct PortRange {
    start: u16,
    end: u16,
}

impl PortRange {
    /// The ports, first to last.
    pub fn range(&self) -> RangeInclusive<u16> {
        self.start..=self.end
    }

    /// Whether `port` lies in the range.
    pub fn contains(&self, port: u16) -> bool {
        self.range().contains(&port)
    }

    /// How many ports the range holds (at least 1).
    pub fn len(&self) -> usize {
        usize::from(self.end - self.start) + 1
    }

    /// Always false: a range holds at least one port.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// First port.
    pub fn start(&self) -> u16 {
        self.start
    }

    /// Last port.
    pub fn end(&self) -> u16 {
        self.end
    }
}

impl FromStr for PortRange {
    type Err = String;

    /// Parses `"FIRST-LAST"` (blanks around each port allowed).
    fn from_str(text: &str) -> Result<Self, String> {
        let (first, last) = text
            .split_once('-')
            .ok_or_else(|| format!("{text:?} is not of the form FIRST-LAST"))?;
        let parse = |s: &str| -> Result<u16, String> {
            match s.trim().parse::<u16>() {
                Ok(0) | Err(_) => Err(format!("{s:?} in {text:?} is not a port (1-65535)")),
                Ok(p) => Ok(p),
            }
        };
        let (start, end) = (parse(first)?, parse(last)?);
        if start > end {
            return Err(format!("{text:?} is empty (first port above last)"));
        }
        Ok(PortRange { start, end })
    }
}

impl TryFrom<String> for PortRange {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        text.parse()
    }
}

impl fmt::Display for PortRange {
    /// `FIRST-LAST`, e.g. `10001-10049`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.start, self.end)
    }
}

/// `listener.security_protocol`: Kafka's name for the listener's protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(try_from = "String")]
pub enum SecurityProtocol {
    /// `PLAINTEXT`
    Plaintext,
    /// `SSL` (the default)
    #[default]
    Ssl,
    /// `SASL_PLAINTEXT`
    SaslPlaintext,
    /// `SASL_SSL`
    SaslSsl,
}

impl SecurityProtocol {
    /// Every protocol, in the order error messages list them.
    pub const ALL: [SecurityProtocol; 4] = [
        SecurityProtocol::Plaintext,
        SecurityProtocol::Ssl,
        SecurityProtocol::SaslPlaintext,
        SecurityProtocol::SaslSsl,
    ];

    /// The name Kafka and the config file use, e.g. `SASL_SSL`.
    pub fn as_str(&self) -> &'static str {
        match self {
            SecurityProtocol::Plaintext => "PLAINTEXT",
            SecurityProtocol::Ssl => "SSL",
            SecurityProtocol::SaslPlaintext => "SASL_PLAINTEXT",
            SecurityProtocol::SaslSsl => "SASL_SSL",
        }
    }
}

impl FromStr for SecurityProtocol {
    type Err = String;

    /// Exactly one of the names [`SecurityProtocol::as_str`] gives (case matters, as in Kafka).
    fn from_str(text: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|p| p.as_str() == text)
            .ok_or_else(|| {
                let names: Vec<&str> = Self::ALL.iter().map(|p| p.as_str()).collect();
                format!("{text:?} is not one of {}", names.join(", "))
            })
    }
}

impl TryFrom<String> for SecurityProtocol {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        text.parse()
    }
}

impl fmt::Display for SecurityProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `daemon.metrics_listen`: `""` is `None`, anything else must be a socket address.
fn optional_address<'de, D: Deserializer<'de>>(de: D) -> Result<Option<SocketAddr>, D::Error> {
    let text = String::deserialize(de)?;
    if text.is_empty() {
        return Ok(None);
    }
    text.parse().map(Some).map_err(|_| {
        serde::de::Error::custom(format!("{text:?} is not an address like 127.0.0.1:9721"))
    })
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

    /// Checks what serde cannot: one function per section, in file order, first problem wins.
    /// Checks across sections live with the key they report: `nlb.bootstrap_port` against
    /// `nlb.port_range` in [`validate_nlb`].
    fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        validate_cluster(&self.cluster)
            .and_then(|()| validate_broker(&self.broker, &self.cluster))
            .and_then(|()| validate_listener(&self.listener, &self.cluster))
            .and_then(|()| validate_nlb(&self.nlb, &self.listener))
            .and_then(|()| validate_restart(&self.restart))
            .and_then(|()| validate_daemon(&self.daemon))
            .and_then(|()| validate_aws(&self.aws))
            .map_err(|Invalid { key, reason }| ConfigError::Invalid {
                path: path.to_path_buf(),
                key,
                reason: one_line(&reason),
            })
    }

    /// Valid but risky settings, one line each (printed by `check-config`, `plan` and at daemon
    /// start).
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        let range = self.nlb.port_range;
        let claims = range.len();
        // The bootstrap is a listener too (the restart lock is not: a target group).
        let needed = claims + 1;
        let max = crate::nlb::MAX_LISTENERS_PER_NLB;
        if needed > max {
            out.push(format!(
                "nlb.port_range {range} ({claims} ports) + bootstrap listener = {needed} listeners, more than the {max} AWS allows per Network Load Balancer (not adjustable): at most {} brokers can claim a port; use a range of {} ports or fewer",
                max - 1,
                max - 1
            ));
        }
        if let Some(port) = self.restart.lock_port {
            out.push(format!(
                "restart.lock_port = {port} is deprecated and ignored: the restart lock is the target group {} now, not a listener; remove the key (a lock listener an older agent left on port {port} is still honoured until released)",
                crate::registry::lock_group_name(&self.cluster)
            ));
        }
        // AWS ("Health checks for Network Load Balancer target groups"): a TCP target group's
        // defaults, HealthCheckIntervalSeconds 30 and HealthyThresholdCount 5.
        if self.restart.mode == RestartMode::Rolling
            && self.restart.timeout < NLB_DEFAULT_HEALTHY_AFTER + Duration::from_secs(60)
        {
            out.push(format!(
                "restart.timeout = {} is short: after a restart the agent waits for Kafka and then for the NLB to mark the broker healthy, which takes {} with the target group's default health checks (30 s interval x 5); a broker not back within the timeout keeps the cluster restart lock failed",
                humantime::format_duration(self.restart.timeout),
                humantime::format_duration(NLB_DEFAULT_HEALTHY_AFTER)
            ));
        }
        out
    }

    /// The state directory: systemd's `STATE_DIRECTORY` if set (its first entry), else
    /// `daemon.state_dir`.
    pub fn state_dir(&self) -> PathBuf {
        std::env::var_os("STATE_DIRECTORY")
            .map(|v| PathBuf::from(v.to_string_lossy().split(':').next().unwrap_or_default()))
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or_else(|| self.daemon.state_dir.clone())
    }

    /// The ports of `nlb.port_range`.
    pub fn port_range(&self) -> RangeInclusive<u16> {
        self.nlb.port_range.range()
    }
}

/// A value that parsed but is not acceptable: its dotted key and why ([`Config::validate`] adds
/// the file).
struct Invalid {
    key: &'static str,
    reason: String,
}

fn invalid(key: &'static str, reason: impl Into<String>) -> Invalid {
    Invalid {
        key,
        reason: reason.into(),
    }
}

/// `cluster`
fn validate_cluster(cluster: &str) -> Result<(), Invalid> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if cluster.is_empty() || cluster.len() > 64 || !cluster.chars().all(allowed) {
        return Err(invalid(
            "cluster",
            format!("{cluster:?} must be 1-64 characters of letters, digits, '-', '_' or '.'"),
        ));
    }
    Ok(())
}

/// `[broker]`
fn validate_broker(broker: &BrokerConfig, cluster: &str) -> Result<(), Invalid> {
    if let Some(template) = &broker.rack {
        let rack = render_host(template, &probe_values(cluster))
            .map_err(|reason| invalid("broker.rack", reason))?;
        // Kafka takes any string; keep it one printable token so the file stays one line.
        if rack.is_empty() || rack.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid(
                "broker.rack",
                format!("{template:?} must render to one word without spaces (e.g. \"{{az_id}}\")"),
            ));
        }
    }
    if let Some(id) = broker.id {
        if id < 0 {
            return Err(invalid("broker.id", format!("{id} is negative")));
        }
    }
    if broker.id_tag.is_empty() || broker.id_tag.contains('/') {
        return Err(invalid(
            "broker.id_tag",
            format!("{:?} is not a usable tag key", broker.id_tag),
        ));
    }
    if !broker.server_properties.is_absolute() {
        return Err(invalid(
            "broker.server_properties",
            format!(
                "{} is not an absolute path",
                broker.server_properties.display()
            ),
        ));
    }
    Ok(())
}

/// `[listener]`; `cluster` fills the `{cluster}` placeholder of the probe rendering.
fn validate_listener(listener: &ListenerConfig, cluster: &str) -> Result<(), Invalid> {
    if listener.name.is_empty()
        || !listener
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(invalid(
            "listener.name",
            format!("{:?} is not a valid Kafka listener name", listener.name),
        ));
    }
    if listener.port == 0 {
        return Err(invalid("listener.port", "0 is not a port"));
    }
    let host = render_host(&listener.advertised_host, &probe_values(cluster))
        .map_err(|reason| invalid("listener.advertised_host", reason))?;
    if !is_hostname(&host) {
        return Err(invalid(
            "listener.advertised_host",
            format!(
                "{:?} does not render to a valid DNS name (e.g. {host:?})",
                listener.advertised_host
            ),
        ));
    }
    Ok(())
}

/// Sample values to check that templates render.
fn probe_values(cluster: &str) -> HostValues<'_> {
    HostValues {
        az_id: "use1-az1",
        az: "us-east-1a",
        region: "us-east-1",
        broker_id: 1,
        instance_id: "i-0123456789abcdef0",
        cluster,
        shard: 0,
    }
}

/// `[nlb]`, including `bootstrap_port` against `port_range`, and `listener.advertised_host`
/// against the number of NLBs (each NLB has its own endpoint service, so its own names).
fn validate_nlb(nlb: &NlbConfig, listener: &ListenerConfig) -> Result<(), Invalid> {
    let (key, arns): (&'static str, Vec<&String>) =
        match (&nlb.load_balancer_arn, &nlb.load_balancer_arns) {
            (Some(one), None) => ("nlb.load_balancer_arn", vec![one]),
            (None, Some(many)) => ("nlb.load_balancer_arns", many.iter().collect()),
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "nlb.load_balancer_arns",
                    "set either nlb.load_balancer_arn (one NLB) or nlb.load_balancer_arns (several), not both",
                ))
            }
            // Worded as serde words a missing key: it is the one most files have.
            (None, None) => {
                return Err(invalid(
                    "nlb",
                    "missing field `load_balancer_arn` (or `load_balancer_arns` for several NLBs)",
                ))
            }
        };
    if arns.is_empty() {
        return Err(invalid(key, "is empty: list at least one NLB ARN"));
    }
    if arns.len() > MAX_LOAD_BALANCERS {
        return Err(invalid(
            key,
            format!("{} NLBs; at most {MAX_LOAD_BALANCERS}", arns.len()),
        ));
    }
    for (i, arn) in arns.iter().enumerate() {
        if !arn.starts_with("arn:") || !arn.contains(":loadbalancer/") {
            return Err(invalid(key, format!("{arn:?} is not a load balancer ARN")));
        }
        if arns[..i].contains(arn) {
            return Err(invalid(key, format!("{arn:?} is listed twice")));
        }
    }
    if arns.len() > 1 && !listener.advertised_host.contains("{shard}") {
        return Err(invalid(
            "listener.advertised_host",
            format!(
                "{:?} has no {{shard}} placeholder, but nlb.load_balancer_arns lists {} NLBs: each NLB has its own endpoint service and so its own names (e.g. \"kafka-{{az_id}}-s{{shard}}.orders.example.internal\")",
                listener.advertised_host,
                arns.len()
            ),
        ));
    }
    if nlb.bootstrap_port == 0 {
        return Err(invalid("nlb.bootstrap_port", "0 is not a port"));
    }
    if nlb.port_range.contains(nlb.bootstrap_port) {
        return Err(invalid(
            "nlb.bootstrap_port",
            format!(
                "{} lies inside nlb.port_range {}",
                nlb.bootstrap_port, nlb.port_range
            ),
        ));
    }
    Ok(())
}

/// `[restart]`. `lock_port` is deprecated: any port is accepted (a warning, never an error).
fn validate_restart(restart: &RestartConfig) -> Result<(), Invalid> {
    if restart.command.is_empty() {
        return Err(invalid("restart.command", "is empty"));
    }
    if restart.healthy_checks == 0 {
        return Err(invalid("restart.healthy_checks", "must be at least 1"));
    }
    if restart.lease < Duration::from_secs(10) {
        return Err(invalid(
            "restart.lease",
            format!("{:?} is shorter than 10s", restart.lease),
        ));
    }
    if restart.kafka_unit.is_some() && restart.kafka_pid_file.is_some() {
        return Err(invalid(
            "restart.kafka_pid_file",
            "set restart.kafka_unit or restart.kafka_pid_file, not both",
        ));
    }
    if restart
        .kafka_unit
        .as_deref()
        .is_some_and(|u| u.trim().is_empty())
    {
        return Err(invalid("restart.kafka_unit", "is empty"));
    }
    Ok(())
}

/// `[daemon]` (serde already checked `metrics_listen`).
fn validate_daemon(daemon: &DaemonConfig) -> Result<(), Invalid> {
    if daemon.interval < Duration::from_secs(1) {
        return Err(invalid(
            "daemon.interval",
            format!("{:?} is shorter than 1s", daemon.interval),
        ));
    }
    Ok(())
}

/// `[aws]`
fn validate_aws(aws: &AwsConfig) -> Result<(), Invalid> {
    if aws.pass_deadline < Duration::from_secs(10) {
        return Err(invalid(
            "aws.pass_deadline",
            format!(
                "{:?} is shorter than 10s: a throttled pass could not even wait out one back-off",
                aws.pass_deadline
            ),
        ));
    }
    if !(aws.steady_reads_per_second > 0.0 && aws.steady_reads_per_second <= 10.0) {
        return Err(invalid(
            "aws.steady_reads_per_second",
            format!(
                "{} must be above 0 and at most 10 (the account's whole Describe* refill per second)",
                aws.steady_reads_per_second
            ),
        ));
    }
    Ok(())
}

/// A TOML or serde error as one line with file, line and column, naming the dotted key when the
/// error lies in a value or table (serde's message alone would not say which key).
fn parse_error(text: &str, path: &Path, e: &toml::de::Error) -> ConfigError {
    let offset = e.span().map(|span| span.start);
    let (line, column) = offset.map_or((1, 1), |at| line_col(text, at));
    let message = e.message().trim();
    let message = match offset.and_then(|at| key_at(text, at)) {
        Some(key) => format!("{key}: {message}"),
        None => message.to_string(),
    };
    ConfigError::Parse {
        path: path.to_path_buf(),
        line,
        column,
        message: one_line(&message),
    }
}

/// The dotted key of the innermost value or table whose span holds `offset` (`None` if the text
/// is not valid TOML or only the document as a whole holds it, e.g. an unknown top-level key).
fn key_at(text: &str, offset: usize) -> Option<String> {
    let doc = toml_edit::ImDocument::parse(text).ok()?;
    let mut path = Vec::new();
    find_key(doc.as_table(), offset, &mut path).then(|| path.join("."))
}

fn find_key(table: &dyn toml_edit::TableLike, offset: usize, path: &mut Vec<String>) -> bool {
    for (key, item) in table.iter() {
        path.push(key.to_string());
        let inner = item
            .as_table_like()
            .is_some_and(|t| find_key(t, offset, path));
        if inner || item.span().is_some_and(|span| span.contains(&offset)) {
            return true;
        }
        path.pop();
    }
    false
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
    /// `{shard}`: index of the NLB holding the broker's claim in `nlb.load_balancer_arns`.
    pub shard: usize,
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
            "shard" => out.push_str(&values.shard.to_string()),
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

/// Parses `"FIRST-LAST"` into an inclusive, non-empty port range (see [`PortRange`]).
pub fn parse_port_range(text: &str) -> Result<RangeInclusive<u16>, String> {
    text.parse::<PortRange>().map(|range| range.range())
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

/// An NLB listener's idle timeout range (ListenerAttribute API reference: "The valid range is 60-6000 seconds").
pub const IDLE_MIN_SECONDS: u32 = 60;
/// See [`IDLE_MIN_SECONDS`].
pub const IDLE_MAX_SECONDS: u32 = 6000;
/// `nlb.idle_timeout` (what it does: [`crate::idle`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IdleTimeout {
    /// The broker's `connections.max.idle.ms` plus [`crate::idle::MARGIN`], within AWS's range.
    #[default]
    Auto,
    /// Leave the listeners' idle timeout alone.
    Off,
    /// This many seconds (validated within AWS's range).
    Seconds(u32),
}

impl<'de> Deserialize<'de> for IdleTimeout {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        match text.trim() {
            "auto" => Ok(IdleTimeout::Auto),
            "off" => Ok(IdleTimeout::Off),
            other => {
                let duration = humantime::parse_duration(other).map_err(|e| {
                    serde::de::Error::custom(format!(
                        "{other:?}: \"auto\", \"off\" or a duration like \"15m\" ({e})"
                    ))
                })?;
                let secs = duration.as_secs();
                if duration.subsec_nanos() != 0
                    || !(u64::from(IDLE_MIN_SECONDS)..=u64::from(IDLE_MAX_SECONDS)).contains(&secs)
                {
                    return Err(serde::de::Error::custom(format!(
                        "{other:?}: an NLB listener's idle timeout is whole seconds from {IDLE_MIN_SECONDS} to {IDLE_MAX_SECONDS} (AWS ListenerAttribute tcp.idle_timeout.seconds)"
                    )));
                }
                Ok(IdleTimeout::Seconds(secs as u32))
            }
        }
    }
}

/// As written in the configuration (`"auto"`, `"off"`, `"900s"`).
impl serde::Serialize for IdleTimeout {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl fmt::Display for IdleTimeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IdleTimeout::Auto => f.write_str("auto"),
            IdleTimeout::Off => f.write_str("off"),
            IdleTimeout::Seconds(s) => write!(f, "{s}s"),
        }
    }
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

    /// The line and message of a config that must fail while deserializing.
    fn parse_failure(text: &str) -> (usize, String) {
        match parse(text).unwrap_err() {
            ConfigError::Parse { line, message, .. } => (line, message),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn port_range_parses_displays_and_round_trips() {
        let r: PortRange = "10001-10049".parse().unwrap();
        assert_eq!((r.start(), r.end(), r.len()), (10001, 10049, 49));
        assert_eq!(r.range(), 10001..=10049);
        assert!(r.contains(10001) && r.contains(10049));
        assert!(!r.contains(10000) && !r.contains(10050));
        assert_eq!(r.to_string(), "10001-10049");
        assert_eq!(r.to_string().parse::<PortRange>().unwrap(), r);
        let one: PortRange = " 7 - 7 ".parse().unwrap();
        assert_eq!((one.to_string(), one.len()), ("7-7".to_string(), 1));
        assert_eq!(
            "1-65535".parse::<PortRange>().unwrap().len(),
            usize::from(u16::MAX)
        );
        assert_eq!(parse_port_range("10001-10049").unwrap(), 10001..=10049);
    }

    #[test]
    fn port_range_rejects_bad_text_with_todays_messages() {
        let cases = [
            ("10001", "\"10001\" is not of the form FIRST-LAST"),
            ("", "\"\" is not of the form FIRST-LAST"),
            ("0-5", "\"0\" in \"0-5\" is not a port (1-65535)"),
            (
                "1-65536",
                "\"65536\" in \"1-65536\" is not a port (1-65535)",
            ),
            ("-1-5", "\"\" in \"-1-5\" is not a port (1-65535)"),
            ("10001-", "\"\" in \"10001-\" is not a port (1-65535)"),
            ("a-b", "\"a\" in \"a-b\" is not a port (1-65535)"),
            (
                "10049-10001",
                "\"10049-10001\" is empty (first port above last)",
            ),
        ];
        for (text, want) in cases {
            assert_eq!(text.parse::<PortRange>().unwrap_err(), want, "{text:?}");
            assert_eq!(parse_port_range(text).unwrap_err(), want, "{text:?}");
        }
        let config = MINIMAL.replace("[nlb]", "[nlb]\nport_range = \"10049-10001\"");
        let (line, message) = parse_failure(&config);
        assert_eq!(line, 6);
        assert_eq!(
            message,
            "nlb.port_range: \"10049-10001\" is empty (first port above last)"
        );
        let (_, message) = parse_failure(&MINIMAL.replace("[nlb]", "[nlb]\nport_range = 10001"));
        assert!(
            message.starts_with("nlb.port_range: invalid type"),
            "{message}"
        );
    }

    #[test]
    fn security_protocol_accepts_exactly_kafkas_names() {
        for p in SecurityProtocol::ALL {
            assert_eq!(p.as_str().parse::<SecurityProtocol>().unwrap(), p);
            assert_eq!(p.to_string(), p.as_str());
            let config = MINIMAL.replace(
                "[listener]",
                &format!("[listener]\nsecurity_protocol = \"{p}\""),
            );
            assert_eq!(parse(&config).unwrap().listener.security_protocol, p);
        }
        let names: Vec<_> = SecurityProtocol::ALL.map(|p| p.as_str()).into();
        assert_eq!(names, ["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]);
        assert_eq!(SecurityProtocol::default(), SecurityProtocol::Ssl);
        for bad in ["TLS", "ssl", "SSL ", "SASL-SSL", ""] {
            assert_eq!(
                bad.parse::<SecurityProtocol>().unwrap_err(),
                format!("{bad:?} is not one of PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL")
            );
        }
        let config = MINIMAL.replace("[listener]", "[listener]\nsecurity_protocol = \"TLS\"");
        let (line, message) = parse_failure(&config);
        assert_eq!(line, 4);
        assert_eq!(
            message,
            "listener.security_protocol: \"TLS\" is not one of PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL"
        );
    }

    #[test]
    fn metrics_listen_empty_disables_and_anything_else_must_be_an_address() {
        let with = |value: &str| format!("{MINIMAL}[daemon]\nmetrics_listen = {value}\n");
        assert_eq!(parse(&with("\"\"")).unwrap().daemon.metrics_listen, None);
        assert_eq!(
            parse(&with("\"127.0.0.1:9721\""))
                .unwrap()
                .daemon
                .metrics_listen,
            Some(SocketAddr::from(([127, 0, 0, 1], 9721)))
        );
        assert_eq!(
            parse(&with("\"[::1]:9000\""))
                .unwrap()
                .daemon
                .metrics_listen
                .map(|a| a.to_string()),
            Some("[::1]:9000".to_string())
        );
        let text = with("\"nonsense\"");
        let err = parse(&text).unwrap_err().to_string();
        assert_eq!(
            err,
            "invalid config /etc/kplink/agent.toml:8:18: daemon.metrics_listen: \"nonsense\" is not an address like 127.0.0.1:9721"
        );
        let (line, message) = parse_failure(&with("9721"));
        assert_eq!(line, 8);
        assert!(
            message.starts_with("daemon.metrics_listen: invalid type"),
            "{message}"
        );
    }

    #[test]
    fn serde_errors_name_the_innermost_key() {
        // Dotted keys and inline tables name the same key as a [table] does.
        let dotted = MINIMAL.replace("[listener]", "daemon.metrics_listen = \"x\"\n[listener]");
        assert!(parse_failure(&dotted)
            .1
            .starts_with("daemon.metrics_listen: "));
        let inline = MINIMAL.replace("[listener]", "daemon = { interval = \"soon\" }\n[listener]");
        assert!(parse_failure(&inline).1.starts_with("daemon.interval: "));
        // A missing key names its table; an unknown top-level key is named by serde itself.
        let missing = MINIMAL.replace("load_balancer_arn", "#");
        let message = parse(&missing).unwrap_err().to_string();
        assert!(
            message.ends_with(
                "nlb: missing field `load_balancer_arn` (or `load_balancer_arns` for several NLBs)"
            ),
            "{message}"
        );
        let (_, message) = parse_failure("bogus = 1\n");
        assert!(message.starts_with("unknown field `bogus`"), "{message}");
        // Array elements name the array.
        let command = format!("{MINIMAL}[restart]\ncommand = [\"a\", 1]\n");
        assert!(parse_failure(&command).1.starts_with("restart.command: "));
    }

    #[test]
    fn each_section_is_validated_and_cross_checks_name_their_key() {
        let cases = [
            (
                MINIMAL.replace("[listener]", "[listener]\nport = 0"),
                "listener.port",
            ),
            (
                MINIMAL.replace("[nlb]", "[nlb]\nbootstrap_port = 10001"),
                "nlb.bootstrap_port: 10001 lies inside nlb.port_range 10001-10049",
            ),
            (
                format!("{MINIMAL}[restart]\ncommand = []\n"),
                "restart.command: is empty",
            ),
            (
                format!("{MINIMAL}[restart]\nhealthy_checks = 0\n"),
                "restart.healthy_checks: must be at least 1",
            ),
            (
                format!("{MINIMAL}[restart]\nlease = \"9s\"\n"),
                "restart.lease: 9s is shorter than 10s",
            ),
            (
                format!("{MINIMAL}[restart]\nkafka_unit = \"k.service\"\nkafka_pid_file = \"/run/k.pid\"\n"),
                "restart.kafka_pid_file: set restart.kafka_unit or restart.kafka_pid_file, not both",
            ),
            (
                format!("{MINIMAL}[restart]\nkafka_unit = \" \"\n"),
                "restart.kafka_unit: is empty",
            ),
            (
                MINIMAL.replace(
                    "[listener]",
                    "[broker]\nserver_properties = \"x\"\n[listener]",
                ),
                "broker.server_properties: x is not an absolute path",
            ),
        ];
        for (text, needle) in cases {
            let err = parse(&text).unwrap_err().to_string();
            assert!(err.contains(needle), "{err:?} lacks {needle:?}");
        }
    }

    #[test]
    fn warnings_count_the_typed_range() {
        let with =
            |range: &str| MINIMAL.replace("[nlb]", &format!("[nlb]\nport_range = {range:?}"));
        // 49 claims + bootstrap = 50 listeners, the most an NLB allows (the lock is no listener).
        assert!(parse(&with("20001-20049")).unwrap().warnings().is_empty());
        let warnings = parse(&with(" 20001 - 20050")).unwrap().warnings();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0]
                .starts_with("nlb.port_range 20001-20050 (50 ports) + bootstrap listener = 51"),
            "{warnings:?}"
        );
    }

    #[test]
    fn one_or_several_load_balancers() {
        const A: &str = "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/net/a/1";
        const B: &str = "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/net/b/2";
        let one = parse(MINIMAL).unwrap();
        assert_eq!(one.nlb.load_balancers().len(), 1);
        assert_eq!(one.nlb.load_balancers()[0].index, 0);
        let sharded = |host: &str, arns: &str| {
            MINIMAL.replace("kafka-{az_id}.orders", host).replace(
                &format!(
                    "load_balancer_arn = {:?}",
                    one.nlb.load_balancer_arn.clone().unwrap()
                ),
                &format!("load_balancer_arns = {arns}"),
            )
        };
        let c = parse(&sharded(
            "kafka-{az_id}-s{shard}.orders",
            &format!("[{A:?}, {B:?}]"),
        ))
        .unwrap();
        let shards = c.nlb.load_balancers();
        assert_eq!(
            shards
                .iter()
                .map(|s| (s.index, s.load_balancer_arn.as_str()))
                .collect::<Vec<_>>(),
            [(0, A), (1, B)]
        );
        // A one-element list needs no {shard}; {shard} with one NLB renders 0.
        assert!(parse(&sharded("kafka-{az_id}.orders", &format!("[{A:?}]"))).is_ok());
        let err = |text: &str| parse(text).unwrap_err().to_string();
        for (text, expected) in [
            (
                sharded("kafka-{az_id}.orders", &format!("[{A:?}, {B:?}]")),
                "listener.advertised_host: \"kafka-{az_id}.orders.example.internal\" has no {shard} placeholder, but nlb.load_balancer_arns lists 2 NLBs",
            ),
            (
                sharded("kafka-{az_id}-s{shard}.orders", "[]"),
                "nlb.load_balancer_arns: is empty",
            ),
            (
                sharded("kafka-{az_id}-s{shard}.orders", &format!("[{A:?}, {A:?}]")),
                "is listed twice",
            ),
            (
                sharded("kafka-{az_id}-s{shard}.orders", "[\"kafka\"]"),
                "nlb.load_balancer_arns: \"kafka\" is not a load balancer ARN",
            ),
            (
                MINIMAL.replace("[nlb]", &format!("[nlb]\nload_balancer_arns = [{B:?}]")),
                "set either nlb.load_balancer_arn (one NLB) or nlb.load_balancer_arns",
            ),
        ] {
            let message = err(&text);
            assert!(message.contains(expected), "{message}");
        }
    }

    #[test]
    fn lock_port_is_accepted_with_a_deprecation_warning() {
        // Users' files have it, anywhere an older release allowed it or not: never an error.
        for port in [9999, 10000, 10049, 0] {
            let config = parse(&format!("{MINIMAL}[restart]\nlock_port = {port}\n")).unwrap();
            let warnings = config.warnings();
            assert_eq!(warnings.len(), 1, "{warnings:?}");
            assert!(
                warnings[0].starts_with(&format!(
                    "restart.lock_port = {port} is deprecated and ignored: the restart lock is the target group kp-"
                )),
                "{warnings:?}"
            );
        }
        let nlb = parse(MINIMAL).unwrap().nlb;
        let with = |port| RestartConfig {
            lock_port: port,
            ..RestartConfig::default()
        };
        // Where an older agent's lock listener may be: the key, else its old default.
        assert_eq!(with(None).legacy_lock_port(&nlb), Some(LEGACY_LOCK_PORT));
        assert_eq!(with(Some(9000)).legacy_lock_port(&nlb), Some(9000));
        // Never a claim or the bootstrap port (older agents refused those).
        assert_eq!(with(Some(10000)).legacy_lock_port(&nlb), None);
        assert_eq!(with(Some(10049)).legacy_lock_port(&nlb), None);
        assert!(parse(MINIMAL).unwrap().warnings().is_empty());
        let short = parse(&format!("{MINIMAL}[restart]\ntimeout = \"2m\"\n")).unwrap();
        assert_eq!(short.warnings().len(), 1, "{:?}", short.warnings());
        assert!(short.warnings()[0].starts_with("restart.timeout = 2m is short"));
        assert!(short.warnings()[0].contains("2m 30s"));
        let never = parse(&format!(
            "{MINIMAL}[restart]\ntimeout = \"2m\"\nmode = \"never\"\n"
        ))
        .unwrap();
        assert!(never.warnings().is_empty());
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
            shard: 2,
        };
        assert_eq!(
            render_host(
                "{cluster}-{broker_id}.{az_id}.{az}.{region}.{instance_id}.s{shard}",
                &values
            )
            .unwrap(),
            "orders-7.use1-az1.us-east-1b.us-east-1.i-1.s2"
        );
        assert!(render_host("a}b", &values).is_err());
    }
}

#[cfg(test)]
mod process_check_tests {
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
