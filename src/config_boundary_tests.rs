//! Config validation at its boundaries: each limit's last accepted and first refused value, and
//! each character class of a name accepted and refused. Written for the mutants cargo-mutants
//! found no test noticed (README "Mutation testing"): an off-by-one in a limit, an `||` read as
//! `&&`, a check that always passes.

use std::path::Path;

use crate::config::{is_hostname, Config, ConfigError, PortRange};

fn with(section: &str, lines: &str) -> String {
    let arn = "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/net/kafka/0123456789abcdef";
    let mut text = String::from("cluster = \"orders\"\n");
    let mut wrote = |name: &str, body: &str| {
        text.push_str(&format!("[{name}]\n{body}\n"));
    };
    let listener = "advertised_host = \"kafka-{az_id}.orders.example.internal\"";
    let nlb = format!("load_balancer_arn = \"{arn}\"");
    match section {
        "listener" => wrote("listener", &format!("{listener}\n{lines}")),
        _ => wrote("listener", listener),
    }
    match section {
        "nlb" => wrote("nlb", lines),
        _ => wrote("nlb", &nlb),
    }
    if !matches!(section, "listener" | "nlb" | "") {
        wrote(section, lines);
    }
    text
}

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, Path::new("/etc/kplink/agent.toml"))
}

/// The error line names `key`.
fn refused(section: &str, lines: &str, key: &str) {
    match parse(&with(section, lines)) {
        Ok(_) => panic!("[{section}] {lines} was accepted"),
        Err(e) => assert!(e.to_string().contains(key), "{lines}: {e}"),
    }
}

fn accepted(section: &str, lines: &str) -> Config {
    parse(&with(section, lines)).unwrap_or_else(|e| panic!("[{section}] {lines}: {e}"))
}

#[test]
fn a_cluster_name_is_1_to_64_characters_of_a_small_alphabet() {
    let named = |name: &str| parse(&with("", "").replace("\"orders\"", &format!("{name:?}")));
    assert!(named(&"a".repeat(64)).is_ok());
    assert!(named(&"a".repeat(65)).is_err());
    assert!(named("").is_err());
    assert!(named("or/ders").is_err());
    assert!(named("or-d_e.rs").is_ok());
}

#[test]
fn the_rack_renders_to_one_word() {
    accepted("broker", "rack = \"{az_id}\"");
    refused("broker", "rack = \"\"", "broker.rack");
    refused("broker", "rack = \"rack {az_id}\"", "broker.rack");
    refused("broker", "rack = \"rack\\u0007\"", "broker.rack");
}

#[test]
fn broker_id_zero_is_a_broker_id() {
    assert_eq!(accepted("broker", "id = 0").broker.id, Some(0));
    refused("broker", "id = -1", "broker.id");
}

#[test]
fn the_broker_id_tag_is_a_usable_tag_key() {
    refused("broker", "id_tag = \"\"", "broker.id_tag");
    refused("broker", "id_tag = \"kafka/id\"", "broker.id_tag");
    accepted("broker", "id_tag = \"kafka:id\"");
}

#[test]
fn a_listener_name_is_letters_digits_underscores_and_hyphens() {
    assert_eq!(
        accepted("listener", "name = \"PRIVATE_LINK-2\"")
            .listener
            .name,
        "PRIVATE_LINK-2"
    );
    accepted("listener", "name = \"PL\"");
    refused("listener", "name = \"\"", "listener.name");
    refused("listener", "name = \"PRIVATE LINK\"", "listener.name");
    refused("listener", "name = \"PL.2\"", "listener.name");
}

#[test]
fn twenty_nlbs_are_allowed_twenty_one_are_not() {
    let arns = |n: usize| {
        let list: Vec<String> = (0..n)
            .map(|i| {
                format!("\"arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/net/k{i}/0123456789abcdef\"")
            })
            .collect();
        format!("load_balancer_arns = [{}]", list.join(", "))
    };
    let sharded = |n: usize| {
        with("nlb", &arns(n)).replace(
            "kafka-{az_id}.orders.example.internal",
            "kafka-{az_id}-s{shard}.orders.example.internal",
        )
    };
    assert_eq!(parse(&sharded(20)).unwrap().nlb.load_balancers().len(), 20);
    let e = parse(&sharded(21)).unwrap_err().to_string();
    assert!(e.contains("21 NLBs; at most 20"), "{e}");
}

#[test]
fn duration_limits_accept_their_minimum() {
    assert_eq!(
        accepted("restart", "lease = \"10s\"")
            .restart
            .lease
            .as_secs(),
        10
    );
    refused("restart", "lease = \"9s\"", "restart.lease");
    assert_eq!(
        accepted("daemon", "interval = \"1s\"")
            .daemon
            .interval
            .as_secs(),
        1
    );
    refused("daemon", "interval = \"999ms\"", "daemon.interval");
    let aws = accepted("aws", "pass_deadline = \"10s\"");
    assert_eq!(aws.aws.pass_deadline.as_secs(), 10);
    refused("aws", "pass_deadline = \"9s\"", "aws.pass_deadline");
}

#[test]
fn a_restart_timeout_of_three_and_a_half_minutes_draws_no_warning() {
    let warned = |t: &str| {
        accepted("restart", &format!("timeout = \"{t}\""))
            .warnings()
            .iter()
            .any(|w| w.contains("restart.timeout"))
    };
    assert!(!warned("210s"));
    assert!(warned("209s"));
}

#[test]
fn a_port_range_is_never_empty() {
    let r: PortRange = "10001-10001".parse().unwrap();
    assert_eq!(r.len(), 1);
    assert!(!r.is_empty());
}

#[test]
fn host_names_follow_rfc_1123() {
    let label63 = "a".repeat(63);
    assert!(is_hostname(&format!("{label63}.example")));
    assert!(!is_hostname(&format!("{label63}a.example")));
    // 253 characters in all, no more.
    let long = format!("{}.{}.{}.{}", label63, label63, label63, "a".repeat(61));
    assert_eq!(long.len(), 253);
    assert!(is_hostname(&long));
    assert!(!is_hostname(&format!("{long}a")));
    assert!(!is_hostname(""));
    assert!(!is_hostname("a..b"));
    assert!(!is_hostname("-a.b"));
    assert!(!is_hostname("a-.b"));
    assert!(!is_hostname("a_b.c"));
    assert!(is_hostname("kafka-use1-az1.orders.example.internal"));
}
