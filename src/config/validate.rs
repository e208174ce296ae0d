//! What serde cannot check: each section's values and the checks across sections, one function
//! per section, each naming the dotted key it rejects.

use std::path::Path;
use std::time::Duration;

use super::error::one_line;
use super::{
    is_hostname, AwsConfig, BrokerConfig, Config, ConfigError, DaemonConfig, HostValues,
    ListenerConfig, NlbConfig, Placeholder, RestartConfig,
};

impl Config {
    /// Checks what serde cannot: one function per section, in file order, first problem wins.
    /// Checks across sections live with the key they report: `nlb.bootstrap_port` against
    /// `nlb.port_range` in [`validate_nlb`].
    pub(super) fn validate(&self, path: &Path) -> Result<(), ConfigError> {
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
        let rack = template.render(&probe_values(cluster));
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
    let host = listener.advertised_host.render(&probe_values(cluster));
    if !is_hostname(&host) {
        return Err(invalid(
            "listener.advertised_host",
            format!(
                "{:?} does not render to a valid DNS name (e.g. {host:?})",
                listener.advertised_host
            ),
        ));
    }
    if let Some(template) = &listener.bootstrap_host {
        let host = template.render(&probe_values(cluster));
        if !is_hostname(&host) {
            return Err(invalid(
                "listener.bootstrap_host",
                format!("{template:?} does not render to a valid DNS name (e.g. {host:?})"),
            ));
        }
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

/// `[nlb]` (its NLB list is checked as it is compiled, see `config::nlb`): `bootstrap_port`
/// against `port_range`, and `listener.advertised_host` against the number of NLBs (each NLB
/// has its own endpoint service, so its own names).
fn validate_nlb(nlb: &NlbConfig, listener: &ListenerConfig) -> Result<(), Invalid> {
    let count = nlb.arns.count();
    if count > 1 && !listener.advertised_host.uses(Placeholder::Shard) {
        return Err(invalid(
            "listener.advertised_host",
            format!(
                "{:?} has no {{shard}} placeholder, but nlb.load_balancer_arns lists {} NLBs: each NLB has its own endpoint service and so its own names (e.g. \"kafka-{{az_id}}-s{{shard}}.orders.example.internal\")",
                listener.advertised_host,
                count
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

#[cfg(test)]
mod tests {
    use crate::config::test_util::{parse, MINIMAL};

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
            (
                MINIMAL.replace("[listener]", "[listener]\nbootstrap_host = \"boot_strap..x\""),
                "listener.bootstrap_host: \"boot_strap..x\" does not render to a valid DNS name",
            ),
            (
                MINIMAL.replace("[listener]", "[listener]\nbootstrap_host = \"b.{zone}.x\""),
                "listener.bootstrap_host: unknown placeholder {zone}",
            ),
        ];
        for (text, needle) in cases {
            let err = parse(&text).unwrap_err().to_string();
            assert!(err.contains(needle), "{err:?} lacks {needle:?}");
        }
        let ok = MINIMAL.replace(
            "[listener]",
            "[listener]\nbootstrap_host = \"bootstrap.{cluster}.example.internal\"",
        );
        assert_eq!(
            parse(&ok)
                .unwrap()
                .listener
                .bootstrap_host
                .as_ref()
                .map(|t| t.as_str()),
            Some("bootstrap.{cluster}.example.internal")
        );
    }
}
