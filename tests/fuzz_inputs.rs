//! Hostile input: instance metadata that misbehaves (through the IMDS test server's modes),
//! hostile broker-id tags, and property-based fuzzing of the config loader and the
//! `server.properties` editor (library calls, no processes).
//!
//! Contract checked: a clear one-line `error: …` naming what failed, a non-zero exit within
//! bounded time, `server.properties` untouched and nothing created on the NLB; the parsers never
//! panic and their errors are single lines.

use crate::common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use kplink_agent::config::Config;
use kplink_agent::properties::{self, ListenerEdit, Properties};
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, FileFailurePersistence};

// ---------------------------------------------------------------------------------------------
// hostile instance metadata and tags (processes against the test servers)
// ---------------------------------------------------------------------------------------------

/// Markers of a Rust `{:?}` dump of an SDK error, which no operator can act on.
const DEBUG_DUMP: [&str; 5] = [
    "{ source:",
    "SdkBody",
    "Extensions",
    "FailedToLoadToken(",
    "ServiceError(",
];

struct Case {
    label: String,
    patch: String,
    /// Substrings the error line must contain (besides "instance metadata at <endpoint>").
    must: Vec<&'static str>,
    /// Substrings that would make the message misleading.
    must_not: Vec<&'static str>,
    /// The pass may legitimately succeed (a slow but working service), if it does so in time.
    may_succeed: bool,
}

fn case(mode: &str, extra: &str, must: &[&'static str], must_not: &[&'static str]) -> Case {
    Case {
        label: format!("mode {mode}{extra}"),
        patch: format!("{{\"mode\": \"{mode}\"{extra}}}"),
        must: must.to_vec(),
        must_not: must_not.to_vec(),
        may_succeed: false,
    }
}

/// Runs the agent once and returns every way the result breaks the contract.
fn check_hostile(world: &World, host: &Host, c: &Case, needle: &str) -> Vec<String> {
    world.imds_patch(host, &c.patch);
    let started = Instant::now();
    let out = world
        .agent(host)
        .args(["run", "--once", "--metadata-timeout", "3s"])
        .output()
        .unwrap();
    let elapsed = started.elapsed();
    world.imds_patch(
        host,
        r#"{"mode": "ok", "slow_phase": "body", "tags": {"kafka:broker-id": "1", "Name": "orders-broker-1"}}"#,
    );
    let mut problems = Vec::new();
    if elapsed >= Duration::from_secs(15) {
        problems.push(format!("took {elapsed:?} with --metadata-timeout 3s"));
    }
    if out.status.success() && c.may_succeed {
        // A slow but working metadata service: fine if it finished in time. Undo the pass.
        return problems;
    }
    if out.status.code() != Some(1) {
        problems.push(format!("exit {:?}, want 1", out.status.code()));
    }
    let errors: Vec<&str> = std::str::from_utf8(&out.stderr)
        .unwrap_or("")
        .lines()
        .filter(|l| l.starts_with("error: "))
        .collect();
    match errors.as_slice() {
        [line] => {
            if !line.contains(needle) {
                problems.push(format!("does not name {needle:?}"));
            }
            for m in &c.must {
                if !line.contains(m) {
                    problems.push(format!("does not say {m:?}"));
                }
            }
            for m in c.must_not.iter().chain(DEBUG_DUMP.iter()) {
                if line.contains(m) {
                    problems.push(format!("contains {m:?}"));
                }
            }
            if line.len() > 400 {
                problems.push(format!("{} characters long", line.len()));
            }
        }
        _ => problems.push(format!("{} `error:` lines", errors.len())),
    }
    if host.read_properties() != SERVER_PROPERTIES {
        problems.push("server.properties changed".into());
    }
    let w = world.wiring();
    if !w.listeners.is_empty() || !w.groups.is_empty() {
        problems.push(format!(
            "created NLB resources: {:?} {:?}",
            w.listeners,
            w.groups.keys()
        ));
    }
    if !problems.is_empty() {
        problems.push(format!(
            "in {elapsed:.1?} printed: {}",
            errors.last().copied().unwrap_or(&stderr(&out))
        ));
    }
    problems
}

fn report(failures: Vec<(String, Vec<String>)>) {
    let failures: Vec<String> = failures
        .into_iter()
        .filter(|(_, p)| !p.is_empty())
        .map(|(label, p)| format!("- {label}:\n    {}", p.join("\n    ")))
        .collect();
    assert!(
        failures.is_empty(),
        "{} case(s) broke the contract:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn hostile_instance_metadata_fails_fast_with_a_clear_error_and_changes_nothing() {
    let world = World::start(Options {
        hosts: 1,
        ..Options::default()
    });
    let host = &world.hosts[0];
    let needle = format!("instance metadata at {}", host.imds);
    let mut slow_ok = case("slow", r#", "slow_ms": 2400"#, &[], &[]);
    slow_ok.may_succeed = true;
    let cases = [
        // The token PUT is refused: name the status, not a missing TTL header.
        case("token_401", "", &["401"], &["TTL header"]),
        case("get_401", "", &["401"], &[]),
        case("500", "", &["500"], &["TTL header"]),
        case("no_ttl_header", "", &["TTL"], &[]),
        case("oversized", "", &["instance-id"], &[]),
        case("non_utf8", "", &["instance-id", "UTF-8"], &[]),
        case("down", "", &[], &[]),
        case("slow", r#", "slow_ms": 10000"#, &[], &[]),
        case(
            "slow",
            r#", "slow_ms": 10000, "slow_phase": "headers""#,
            &[],
            &[],
        ),
        // Each answer takes 2.4 s: a pass may still succeed, but not take many times the timeout.
        slow_ok,
    ];
    // The slow case that may succeed comes last: a success wires the host.
    let failures = cases
        .iter()
        .map(|c| (c.label.clone(), check_hostile(&world, host, c, &needle)))
        .collect();
    report(failures);
}

#[test]
fn hostile_broker_id_tags_are_named_and_change_nothing() {
    let world = World::start(Options {
        hosts: 1,
        ..Options::default()
    });
    let host = &world.hosts[0];
    let mut failures = Vec::new();
    for bad in [
        "abc",
        "-3",
        "",
        "1e3",
        "99999999999",
        "2147483648",
        "0x10",
        "1.0",
        "٣",
    ] {
        let c = Case {
            label: format!("tag kafka:broker-id = {bad:?}"),
            patch: format!(
                "{{\"tags\": {{\"kafka:broker-id\": {}, \"Name\": \"x\"}}}}",
                serde_json::Value::String(bad.into())
            ),
            must: vec!["kafka:broker-id"],
            must_not: vec![],
            may_succeed: false,
        };
        // The error names the tag, not the metadata endpoint.
        let problems = check_hostile(&world, host, &c, "instance tag");
        failures.push((c.label, problems));
    }
    report(failures);
}

// ---------------------------------------------------------------------------------------------
// config loader fuzzing (library)
// ---------------------------------------------------------------------------------------------

const CONFIG_PATH: &str = "/x/agent.toml";

const GOOD_CONFIG: &str = r#"cluster = "orders"

[broker]
id_tag = "kafka:broker-id"
server_properties = "/etc/kafka/server.properties"

[listener]
name = "PRIVATELINK"
port = 9094
advertised_host = "kafka-{az_id}.orders.example.internal"
security_protocol = "SSL"

[nlb]
load_balancer_arn = "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/net/orders-nlb/0123456789abcdef"
port_range = "10001-10049"
bootstrap_port = 10000

[restart]
mode = "never"
"#;

fn proptest_config() -> ProptestConfig {
    ProptestConfig {
        cases: 2000,
        // Keep shrinking bounded; the suite must stay fast even when a case fails.
        max_shrink_iters: 2000,
        max_shrink_time: 20_000,
        failure_persistence: Some(Box::new(FileFailurePersistence::Off)),
        ..ProptestConfig::default()
    }
}

/// A TOML value, often hostile: control characters, placeholders, huge or negative numbers.
fn toml_value() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>().prop_map(|s| toml_string(&s)),
        "[ -~]{0,40}".prop_map(|s| toml_string(&s)),
        // Line breaks and other separators inside otherwise plausible values.
        "(\\{)?[a-z/_-]{0,6}[\n\r\u{2028}\u{85}\t][a-z/_-]{0,6}(\\})?"
            .prop_map(|s| toml_string(&s)),
        prop::sample::select(vec![
            "\"\"",
            "\"a\\nb\"",
            "\"a\\rb\"",
            "\"\\u0000\"",
            "\"10001-10049\"",
            "\"10049-10001\"",
            "\"0-65535\"",
            "\"10001 - 10049\"",
            "\"-1-5\"",
            "\"10001-\"",
            "\"99999-100000\"",
            "\"kafka-{az_id}.{zone}\"",
            "\"{\"",
            "\"}\"",
            "\"{{az_id}}\"",
            "\"{az_id\"",
            "\"-.example\"",
            "\"a..b\"",
            "\"relative/path\"",
            "\"/\"",
            "\"/etc/kafka/\\nx\"",
            "\"never\"",
            "\"always\"",
            "\"NEVER\"",
            "\"ne\\nver\"",
            "\"arn:\"",
            "\"arn:aws:elasticloadbalancing:x:loadbalancer/\"",
            "\"PLAIN TEXT\"",
            "\"SSL\\n\"",
            "0",
            "-1",
            "65535",
            "65536",
            "9223372036854775807",
            "-9223372036854775808",
            "1e3",
            "3.5",
            "nan",
            "inf",
            "true",
            "[]",
            "[1, \"a\"]",
            "{}",
            "{ a = 1 }",
            "'''x\ny'''",
            "\"\"\"\na\nb\"\"\"",
            "1979-05-27T07:32:00Z",
        ])
        .prop_map(str::to_string),
        any::<i64>().prop_map(|n| n.to_string()),
        "[\\PC\n\r\t\"\\\\]{0,30}",
    ]
}

fn toml_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\u{:04x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[derive(Debug, Clone)]
enum Mutation {
    SetValue(usize, String),
    Delete(usize),
    Duplicate(usize),
    Insert(usize, String),
    Swap(usize, usize),
    Bytes(usize, String),
}

fn config_key() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "cluster",
            "id",
            "id_tag",
            "server_properties",
            "name",
            "port",
            "advertised_host",
            "security_protocol",
            "load_balancer_arn",
            "port_range",
            "bootstrap_port",
            "mode",
            "interval",
            "metrics_listen",
            "advertized_host",
            "\"quoted key\"",
            "a.b",
        ])
        .prop_map(str::to_string),
        "[a-z_]{1,12}",
    ]
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let line = 0usize..32;
    prop_oneof![
        4 => (line.clone(), toml_value()).prop_map(|(i, v)| Mutation::SetValue(i, v)),
        1 => line.clone().prop_map(Mutation::Delete),
        1 => line.clone().prop_map(Mutation::Duplicate),
        2 => (line.clone(), prop_oneof![
            (config_key(), toml_value()).prop_map(|(k, v)| format!("{k} = {v}")),
            prop::sample::select(vec![
                "[broker]", "[listener]", "[nlb]", "[restart]", "[daemon]", "[[nlb]]", "[x]",
                "[nlb.extra]", "[", "]", "=", "# comment", "cluster", "broker = 1",
            ]).prop_map(str::to_string),
        ]).prop_map(|(i, l)| Mutation::Insert(i, l)),
        1 => (line.clone(), line.clone()).prop_map(|(a, b)| Mutation::Swap(a, b)),
        2 => (0usize..1000, "\\PC{0,3}|[\n\r\"'\\[\\]={}\\\\]").prop_map(|(i, s)| Mutation::Bytes(i, s)),
    ]
}

fn apply_mutations(base: &str, muts: &[Mutation]) -> String {
    let mut lines: Vec<String> = base.lines().map(str::to_string).collect();
    for m in muts {
        let n = lines.len().max(1);
        match m {
            Mutation::SetValue(i, v) => {
                if let Some(l) = lines.get_mut(i % n) {
                    if let Some((k, _)) = l.split_once('=') {
                        *l = format!("{}= {v}", k);
                    }
                }
            }
            Mutation::Delete(i) => {
                if !lines.is_empty() {
                    lines.remove(i % n);
                }
            }
            Mutation::Duplicate(i) => {
                if let Some(l) = lines.get(i % n).cloned() {
                    lines.insert(i % n, l);
                }
            }
            Mutation::Insert(i, l) => lines.insert(i % (lines.len() + 1), l.clone()),
            Mutation::Swap(a, b) => {
                if !lines.is_empty() {
                    lines.swap(a % n, b % n);
                }
            }
            Mutation::Bytes(i, s) => {
                let mut text = lines.join("\n");
                let mut at = i % (text.len() + 1);
                while !text.is_char_boundary(at) {
                    at -= 1;
                }
                text.insert_str(at, s);
                lines = text.lines().map(str::to_string).collect();
            }
        }
    }
    lines.join("\n") + "\n"
}

fn config_text() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => prop::collection::vec(mutation(), 1..5).prop_map(|m| apply_mutations(GOOD_CONFIG, &m)),
        1 => any::<String>(),
        1 => "[\\[\\]a-z_=\" .{}\n0-9-]{0,200}",
    ]
}

fn check_config(text: &str) -> Result<(), TestCaseError> {
    if let Err(e) = Config::parse(text, Path::new(CONFIG_PATH)) {
        let msg = e.to_string();
        prop_assert!(
            !msg.contains('\n') && !msg.contains('\r'),
            "error is not one line: {msg:?}"
        );
        prop_assert!(
            msg.contains(CONFIG_PATH),
            "error does not name the file: {msg:?}"
        );
    }
    Ok(())
}

#[test]
fn the_base_config_for_fuzzing_is_valid() {
    Config::parse(GOOD_CONFIG, Path::new(CONFIG_PATH)).expect("GOOD_CONFIG parses");
}

/// Values with line breaks that once made multi-line errors; all reported at once.
#[test]
fn config_errors_about_values_with_line_breaks_stay_one_line() {
    let cases = [
        ("server_properties", r#""relative\npath""#),
        ("server_properties", r#""a\r""#),
        ("mode", r#""ne\rver""#),
        ("mode", r#""ne\nver""#),
        ("advertised_host", r#""{zo\nne}""#),
        ("advertised_host", r#""a\nb""#),
        ("port_range", r#""10001\n-10049x""#),
        ("load_balancer_arn", r#""x\ny""#),
        ("id_tag", r#""a/\nb""#),
        ("cluster", r#""a\r\nb""#),
    ];
    let mut bad = Vec::new();
    for (key, value) in cases {
        let text: String = GOOD_CONFIG
            .lines()
            .map(|l| {
                if l.starts_with(&format!("{key} =")) {
                    format!("{key} = {value}\n")
                } else {
                    format!("{l}\n")
                }
            })
            .collect();
        if let Err(TestCaseError::Fail(why)) = check_config(&text) {
            bad.push(format!("{key} = {value}: {why}"));
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

proptest! {
    #![proptest_config(proptest_config())]

    #[test]
    fn config_parse_never_panics_and_errors_are_one_line_naming_the_file(text in config_text()) {
        check_config(&text)?;
    }
}

// ---------------------------------------------------------------------------------------------
// server.properties editor fuzzing (library)
// ---------------------------------------------------------------------------------------------

fn listener_entry() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => (
            prop::sample::select(vec!["PLAINTEXT", "SSL", "CONTROLLER", "PRIVATELINK", "privatelink", "A-B", "", "X Y"]),
            prop::sample::select(vec!["", "localhost", "10.0.0.1", "[::1]", "::1", "kafka-use1-az1.x", "a b", "h:1"]),
            prop_oneof![Just("9092".to_string()), Just("".to_string()), Just("65536".to_string()), "[0-9]{1,6}", "-1"],
        ).prop_map(|(n, h, p)| format!("{n}://{h}:{p}")),
        1 => "[\\PC]{0,12}",
        1 => prop::sample::select(vec!["PLAINTEXT:9092", "://:", ":", "PLAINTEXT://", "PLAINTEXT://:9092/x", " PLAINTEXT://:9092 "]).prop_map(str::to_string),
    ]
}

fn properties_value() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::collection::vec(listener_entry(), 0..4).prop_map(|v| v.join(",")),
        1 => prop::collection::vec(
            ("[A-Z_]{0,10}", prop::sample::select(vec!["PLAINTEXT", "SSL", "SASL_SSL", "", "x"])),
            0..4
        ).prop_map(|v| v.into_iter().map(|(a, b)| format!("{a}:{b}")).collect::<Vec<_>>().join(",")),
        1 => prop::sample::select(vec![
            "\\u00zz", "\\u0041", "\\u", "\\", "a\\\n  b", "a\\\r\n b", "x\\n y", "\\\\", "\\t", "\\:\\=",
        ]).prop_map(str::to_string),
        1 => "[\\PC]{0,20}",
    ]
}

fn properties_line() -> impl Strategy<Value = String> {
    let key = prop_oneof![
        6 => prop::sample::select(vec![
            "listeners", "advertised.listeners", "listener.security.protocol.map",
            "controller.listener.names", "inter.broker.listener.name", "process.roles",
            "broker.id", "node.id", "log.dirs", "LISTENERS", "listeners\\u0020", "listen\\\ners",
        ]).prop_map(str::to_string),
        1 => "[a-z.]{1,12}",
    ];
    prop_oneof![
        8 => (
            key,
            prop::sample::select(vec!["=", ":", " ", " = ", "\t", "  :  ", "=="]),
            properties_value(),
        ).prop_map(|(k, s, v)| format!("{k}{s}{v}")),
        1 => prop::sample::select(vec!["", "# comment", "! bang", "   ", "\\", "=", ":x", "\u{feff}listeners=PLAINTEXT://:9092"]).prop_map(str::to_string),
    ]
}

fn properties_text() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => (
            prop::collection::vec(properties_line(), 0..10),
            prop::sample::select(vec!["\n", "\r\n", "\r"]),
            any::<bool>(),
        ).prop_map(|(lines, eol, trailing)| {
            let mut t = lines.join(eol);
            if trailing { t.push_str(eol); }
            t
        }),
        1 => any::<String>(),
        1 => (0usize..400, "\\PC{0,4}|[\n\r\\\\=:,]").prop_map(|(i, s)| {
            let mut t = SERVER_PROPERTIES.to_string();
            let mut at = i % (t.len() + 1);
            while !t.is_char_boundary(at) { at -= 1; }
            t.insert_str(at, &s);
            t
        }),
    ]
}

fn listener_edit() -> impl Strategy<Value = ListenerEdit> {
    (
        prop_oneof![
            6 => Just("PRIVATELINK".to_string()),
            1 => prop::sample::select(vec!["privatelink", "PLAINTEXT", "CONTROLLER", "", "A B", "X,Y", "x://"]).prop_map(str::to_string),
            1 => "\\PC{0,8}",
        ],
        prop_oneof![4 => Just(9094u16), 1 => any::<u16>()],
        prop_oneof![
            6 => Just("kafka-use1-az1.orders.example.internal".to_string()),
            1 => prop::sample::select(vec!["", "10.0.0.1", "::1", "[::1]", "a b", "h,x", "h:1", "-h"]).prop_map(str::to_string),
            1 => "\\PC{0,12}",
        ],
        prop_oneof![4 => Just(10003u16), 1 => any::<u16>()],
        prop_oneof![
            6 => Just("SSL".to_string()),
            1 => prop::sample::select(vec!["PLAINTEXT", "", "S S", "x:y"]).prop_map(str::to_string),
        ],
    )
        .prop_map(|(name, bind_port, advertised_host, advertised_port, security_protocol)| ListenerEdit {
            name,
            bind_port,
            advertised_host,
            advertised_port,
            security_protocol,
        })
}

proptest! {
    #![proptest_config(proptest_config())]

    #[test]
    fn properties_parse_never_panics(text in properties_text()) {
        let _ = Properties::parse(&text);
    }

    #[test]
    fn apply_listener_never_panics_and_is_idempotent(text in properties_text(), edit in listener_edit()) {
        match properties::apply_listener(&text, &edit) {
            Err(e) => {
                let msg = e.to_string();
                prop_assert!(!msg.contains('\n') && !msg.contains('\r'), "error is not one line: {msg:?}");
            }
            Ok(None) => {
                let got = properties::advertised_endpoint(&text, &edit.name);
                prop_assert!(got.is_ok(), "Ok(None) but advertised_endpoint fails: {got:?}");
            }
            Ok(Some(new)) => {
                prop_assert!(Properties::parse(&new).is_ok(), "output does not parse: {new:?}");
                let again = properties::apply_listener(&new, &edit);
                prop_assert_eq!(&again, &Ok(None), "second edit of {:?} is not a no-op", new);
                let endpoint = properties::advertised_endpoint(&new, &edit.name);
                prop_assert!(
                    matches!(&endpoint, Ok(Some(e)) if e.ends_with(&format!(":{}", edit.advertised_port))),
                    "advertised endpoint after the edit: {endpoint:?} in {new:?}"
                );
            }
        }
    }
}
