//! What a Kafka client in the consumer's VPC should set, beyond `bootstrap.servers` (pure).
//! `consumer-dns` prints it after the records and carries it in `--json` as `client_settings`.
//!
//! * `connections.max.idle.ms` below the NLB's TCP idle timeout. An NLB drops an idle TCP flow
//!   after 350 s by default, silently; a listener's `tcp.idle_timeout.seconds` attribute changes
//!   it (AWS, "Update the TCP idle timeout for your Network Load Balancer listener": 60-6000 s;
//!   the agent's idle.rs). Kafka clients close
//!   idle connections after 9 minutes by default (`connections.max.idle.ms` = 540000, Kafka
//!   producer/consumer configs), longer than 350 s: the client would reuse a connection the NLB
//!   has already forgotten. The consumer cannot read the provider's listener attributes (another
//!   account), so it assumes AWS's default, 350 s, unless told otherwise (`--nlb-idle-timeout`;
//!   the agent on the provider side raises it to the broker's `connections.max.idle.ms` plus a
//!   minute, 660 s, by default: see README "Idle connections"). The value printed is that timeout
//!   less a margin of 50 s (a sixth for short timeouts), capped at Kafka's own default.
//! * `client.rack` per AZ of the client: its AZ ID. Fetch-from-follower (KIP-392) picks the
//!   replica whose `broker.rack` equals the consumer's `client.rack`; the agent writes
//!   `broker.rack` as the broker's AZ ID when `[broker] rack = "{az_id}"` is set, and AZ IDs,
//!   unlike AZ names, are the same in every account (EC2 User Guide, "AZ IDs for your AWS
//!   resources"). It is harmless otherwise (a rack no broker has, or no
//!   `replica.selector.class` on the brokers: consumers fetch from the leader). Not printed for
//!   a cross-Region endpoint: the consumer's AZ IDs are no broker's rack.
//! * `ssl.endpoint.identification.algorithm=https` with `--tls` (the listener uses TLS: the
//!   consumer cannot see the provider's listener, so it says so). Clients check the brokers'
//!   certificates against the names they dial, the zonal names and the bootstrap host of these
//!   records, never the endpoint's `vpce-…` names behind the CNAMEs: the certificates must carry
//!   them (a wildcard `*.orders.example.internal` does). It is Kafka's default since 2.0
//!   (KIP-294) and printed so that nobody turns it off to get past a name mismatch.

use std::collections::BTreeMap;

use serde::Serialize;

use super::plan::Az;

/// AWS's default NLB TCP idle timeout (seconds).
pub(crate) const NLB_DEFAULT_IDLE_TIMEOUT: u64 = 350;

/// The range of `tcp.idle_timeout.seconds`.
pub(crate) const NLB_IDLE_TIMEOUT_RANGE: std::ops::RangeInclusive<u64> = 60..=6000;

/// Kafka clients' default `connections.max.idle.ms` (9 minutes).
pub(crate) const KAFKA_CLIENT_DEFAULT_IDLE_MS: u64 = 540_000;

/// What the command line says about the provider's side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Options {
    /// `--tls`: the brokers' PrivateLink listener uses TLS.
    pub tls: bool,
    /// `--nlb-idle-timeout` (seconds).
    pub nlb_idle_timeout: u64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            tls: false,
            nlb_idle_timeout: NLB_DEFAULT_IDLE_TIMEOUT,
        }
    }
}

/// `client.rack` for clients in one AZ of the consumer's account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Rack {
    /// This account's AZ name (`us-east-1b`).
    pub az_name: String,
    /// Its AZ ID (`use1-az1`).
    pub az_id: String,
    /// The value: the AZ ID.
    pub client_rack: String,
}

/// The client settings (`--json`: `client_settings`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct ClientSettings {
    /// Kafka client properties for every client in the VPC.
    pub properties: BTreeMap<String, String>,
    /// `client.rack` by the client's AZ (empty for a cross-Region endpoint).
    pub client_rack: Vec<Rack>,
    /// Why each setting is there.
    pub notes: Vec<String>,
}

/// `connections.max.idle.ms` for an NLB idle timeout of `idle_seconds`.
pub(crate) fn max_idle_ms(idle_seconds: u64) -> u64 {
    let margin = (idle_seconds / 6).min(50);
    (idle_seconds.saturating_sub(margin) * 1000).min(KAFKA_CLIENT_DEFAULT_IDLE_MS)
}

/// Checks `--nlb-idle-timeout` (a usage error outside the NLB's range).
pub(crate) fn check(options: &Options) -> Result<(), String> {
    match NLB_IDLE_TIMEOUT_RANGE.contains(&options.nlb_idle_timeout) {
        true => Ok(()),
        false => Err(format!(
            "--nlb-idle-timeout {}: an NLB listener's TCP idle timeout is 60-6000 seconds (350 by default)",
            options.nlb_idle_timeout
        )),
    }
}

/// The settings for clients of `bootstrap_servers` in the consumer's AZs `azs`.
pub(crate) fn settings(
    bootstrap_servers: &str,
    azs: &[Az],
    cross_region: bool,
    options: &Options,
) -> ClientSettings {
    let idle = options.nlb_idle_timeout;
    let mut properties = BTreeMap::from([
        (
            "bootstrap.servers".to_string(),
            bootstrap_servers.to_string(),
        ),
        (
            "connections.max.idle.ms".to_string(),
            max_idle_ms(idle).to_string(),
        ),
    ]);
    let mut notes = vec![format!(
        "connections.max.idle.ms: below the NLB's TCP idle timeout of {idle} s ({}), so clients close idle connections before the NLB forgets them",
        match idle == NLB_DEFAULT_IDLE_TIMEOUT {
            true => "AWS's default; --nlb-idle-timeout if the provider raised it",
            false => "--nlb-idle-timeout",
        }
    )];
    if options.tls {
        properties.insert(
            "ssl.endpoint.identification.algorithm".into(),
            "https".into(),
        );
        notes.push("ssl.endpoint.identification.algorithm=https: the brokers' certificates must name the broker and bootstrap names above (not the vpce-… names behind them)".into());
    }
    let mut client_rack: Vec<Rack> = match cross_region {
        true => Vec::new(),
        false => azs
            .iter()
            .map(|az| Rack {
                az_name: az.name.clone(),
                az_id: az.id.clone(),
                client_rack: az.id.clone(),
            })
            .collect(),
    };
    client_rack.sort_by(|a, b| a.az_name.cmp(&b.az_name));
    notes.push(match cross_region {
        true => "client.rack: not set across Regions (this Region's AZ IDs are no broker's rack)".into(),
        false => "client.rack: the AZ ID of the client's AZ; fetch-from-follower (KIP-392) needs the brokers' broker.rack to be their AZ ID ([broker] rack = \"{az_id}\") and replica.selector.class=org.apache.kafka.common.replica.RackAwareReplicaSelector".into(),
    });
    ClientSettings {
        properties,
        client_rack,
        notes,
    }
}

/// The text form: `  key=value` lines, then one `client.rack` line per AZ.
pub(crate) fn render(settings: &ClientSettings) -> String {
    let mut out = String::from("client settings:\n");
    for (k, v) in &settings.properties {
        if k != "bootstrap.servers" {
            out.push_str(&format!("  {k}={v}\n"));
        }
    }
    for r in &settings.client_rack {
        out.push_str(&format!(
            "  client.rack={}   (clients in {})\n",
            r.client_rack, r.az_name
        ));
    }
    for n in &settings.notes {
        out.push_str(&format!("  # {n}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_timeout_table() {
        for (idle, want) in [
            (350, 300_000),
            (60, 50_000),
            (120, 100_000),
            (300, 250_000),
            (400, 350_000),
            (660, 540_000),
            (6000, 540_000),
        ] {
            assert_eq!(max_idle_ms(idle), want, "{idle} s");
            assert!(want < idle * 1000, "{idle} s: below the NLB's timeout");
        }
    }

    #[test]
    fn idle_timeout_flag_is_checked() {
        let o = |s| Options {
            tls: false,
            nlb_idle_timeout: s,
        };
        assert!(check(&o(60)).is_ok() && check(&o(6000)).is_ok() && check(&o(350)).is_ok());
        for bad in [0, 59, 6001] {
            let e = check(&o(bad)).unwrap_err();
            assert!(e.starts_with(&format!("--nlb-idle-timeout {bad}: ")), "{e}");
        }
    }

    fn azs() -> Vec<Az> {
        [("us-east-1b", "use1-az1"), ("us-east-1a", "use1-az6")]
            .iter()
            .map(|(n, i)| Az {
                name: (*n).into(),
                id: (*i).into(),
            })
            .collect()
    }

    #[test]
    fn same_region_plaintext_and_tls() {
        let s = settings("b:10000", &azs(), false, &Options::default());
        assert_eq!(
            s.properties,
            BTreeMap::from([
                ("bootstrap.servers".into(), "b:10000".into()),
                ("connections.max.idle.ms".into(), "300000".into()),
            ])
        );
        let racks: Vec<(&str, &str)> = s
            .client_rack
            .iter()
            .map(|r| (r.az_name.as_str(), r.client_rack.as_str()))
            .collect();
        assert_eq!(
            racks,
            [("us-east-1a", "use1-az6"), ("us-east-1b", "use1-az1")]
        );
        let text = render(&s);
        assert!(
            text.contains("  connections.max.idle.ms=300000\n"),
            "{text}"
        );
        assert!(text.contains("  client.rack=use1-az6   (clients in us-east-1a)\n"));
        assert!(!text.contains("ssl.endpoint"), "{text}");

        let tls = Options {
            tls: true,
            nlb_idle_timeout: 660,
        };
        let s = settings("b:10000", &azs(), false, &tls);
        assert_eq!(
            s.properties["ssl.endpoint.identification.algorithm"],
            "https"
        );
        assert_eq!(s.properties["connections.max.idle.ms"], "540000");
        assert!(render(&s).contains("  ssl.endpoint.identification.algorithm=https\n"));
    }

    #[test]
    fn cross_region_has_no_client_rack() {
        let s = settings("b:10000", &azs(), true, &Options::default());
        assert!(s.client_rack.is_empty());
        assert!(s.notes.iter().any(|n| n.contains("not set across Regions")));
        assert!(!render(&s).contains("client.rack="));
    }
}
