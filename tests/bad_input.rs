//! Bad input gets a clear one-line error naming what and where, a non-zero exit, no half-written
//! file and no leaked NLB resource.

use crate::common;

use std::time::{Duration, Instant};

use common::*;

fn error_line(out: &std::process::Output) -> String {
    let err = stderr(out);
    err.lines()
        .rfind(|l| l.starts_with("error: "))
        .unwrap_or_else(|| panic!("no error line in {err:?}"))
        .to_string()
}

fn assert_nothing_created(world: &World) {
    let w = world.wiring();
    assert!(w.listeners.is_empty(), "{:?}", w.listeners);
    assert!(w.groups.is_empty(), "{:?}", w.groups.keys());
}

#[test]
fn broken_config_exits_78_naming_file_and_key() {
    let world = World::start(Options {
        hosts: 1,
        ..Options::default()
    });
    let host = &world.hosts[0];
    let good = std::fs::read_to_string(host.config()).unwrap();
    let cases = [
        (
            good.replace("[listener]", "[listener]\nadvertized_host = \"x\""),
            "advertized_host",
        ),
        (
            good.replace("{az_id}", "{zone}"),
            "unknown placeholder {zone}",
        ),
        (
            good.replace("port_range = \"10001-10049\"", "port_range = \"10001\""),
            "nlb.port_range",
        ),
        ("cluster = [\n".to_string(), "invalid config"),
    ];
    for (text, needle) in cases {
        std::fs::write(host.config(), &text).unwrap();
        for args in [&["check-config"][..], &["run", "--once"][..], &["plan"][..]] {
            let out = world.run(host, args);
            assert_eq!(out.status.code(), Some(78), "{args:?}: {}", stderr(&out));
            let line = error_line(&out);
            assert!(
                line.contains(needle) && line.contains(&host.config().display().to_string()),
                "{line}"
            );
        }
    }
    std::fs::write(host.config(), &good).unwrap();
    let out = world.run(host, &["check-config"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_nothing_created(&world);
}

#[test]
fn unsafe_server_properties_is_left_untouched_and_nothing_is_created() {
    let world = World::start(Options {
        hosts: 1,
        ..Options::default()
    });
    let host = &world.hosts[0];
    let cases = [
        format!("{SERVER_PROPERTIES}listeners=PLAINTEXT://:9092\n"),
        SERVER_PROPERTIES.replace("num.partitions=3", "num.partitions=\\u00zz"),
        SERVER_PROPERTIES.replace(
            "listeners=PLAINTEXT://:9092,CONTROLLER://:9093",
            "listeners=PLAINTEXT:9092",
        ),
    ];
    for text in cases {
        std::fs::write(host.properties(), &text).unwrap();
        let out = world.run(host, &["run", "--once"]);
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        let line = error_line(&out);
        assert!(
            line.contains(&host.properties().display().to_string()),
            "{line}"
        );
        assert_eq!(host.read_properties(), text);
        assert!(!host.dir.join("server.properties.kplink.bak").exists());
        assert_nothing_created(&world);
    }
    // Files real Kafka would refuse after the agent's edit: the managed listener's port 9094 is
    // already bound by another listener (a common EXTERNAL layout; KRaft combined mode with its
    // controller there). "Each listener must have a different port"
    // (`CoreUtils.listenerListToEndPoints`): refused before any AWS call.
    let clashes = [
        SERVER_PROPERTIES
            .replace(
                "listeners=PLAINTEXT://:9092,CONTROLLER://:9093",
                "listeners=PLAINTEXT://:9092,CONTROLLER://:9093,EXTERNAL://:9094",
            )
            .replace(
                "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
                "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,EXTERNAL:SSL",
            ),
        SERVER_PROPERTIES.replace("CONTROLLER://:9093", "CONTROLLER://:9094"),
    ];
    for text in clashes {
        std::fs::write(host.properties(), &text).unwrap();
        let out = world.run(host, &["run", "--once"]);
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        let line = error_line(&out);
        for needle in ["Kafka would refuse to start", "9094", "listener.port"] {
            assert!(line.contains(needle), "{needle}: {line}");
        }
        assert_eq!(host.read_properties(), text);
        assert_nothing_created(&world);
    }
    std::fs::remove_file(host.properties()).unwrap();
    let out = world.run(host, &["run", "--once"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        error_line(&out).contains("server.properties"),
        "{}",
        error_line(&out)
    );
    assert_nothing_created(&world);
}

#[test]
fn metadata_down_fails_in_bounded_time_naming_the_endpoint() {
    let world = World::start(Options {
        hosts: 1,
        ..Options::default()
    });
    let host = &world.hosts[0];
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let started = Instant::now();
    let out = world
        .agent(host)
        .env("AWS_EC2_METADATA_SERVICE_ENDPOINT", &closed)
        .args(["run", "--once", "--metadata-timeout", "3s"])
        .output()
        .unwrap();
    let elapsed = started.elapsed();
    assert_eq!(out.status.code(), Some(1));
    let line = error_line(&out);
    assert!(
        line.contains(&format!("instance metadata at {closed}")),
        "{line}"
    );
    assert!(elapsed < Duration::from_secs(15), "{elapsed:?}");
    assert_eq!(host.read_properties(), SERVER_PROPERTIES);
    assert_nothing_created(&world);
}

#[test]
fn broker_id_problems_are_named_and_change_nothing() {
    let world = World::start(Options {
        hosts: 1,
        ..Options::default()
    });
    let host = &world.hosts[0];
    let good = std::fs::read_to_string(host.config()).unwrap();
    // Config says 5, the tag says 1.
    std::fs::write(
        host.config(),
        world.config_text(host, "10001-10049", "id = 5\n"),
    )
    .unwrap();
    let out = world.run(host, &["run", "--once"]);
    assert_eq!(out.status.code(), Some(1));
    let line = error_line(&out);
    assert!(
        line.contains("says 5")
            && line.contains("instance tag kafka:broker-id")
            && line.contains("says 1"),
        "{line}"
    );
    std::fs::write(host.config(), &good).unwrap();
    // A tag that is not a number, then a negative one.
    for bad in ["three", "-2"] {
        world.imds_patch(
            host,
            &format!("{{\"tags\": {{\"kafka:broker-id\": \"{bad}\"}}}}"),
        );
        let out = world.run(host, &["run", "--once"]);
        assert_eq!(out.status.code(), Some(1));
        assert!(
            error_line(&out).contains("not a broker id"),
            "{}",
            error_line(&out)
        );
    }
    // No source at all.
    world.imds_patch(host, "{\"tags\": {\"Name\": \"x\"}}");
    let out = world.run(host, &["run", "--once"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        error_line(&out).contains("no broker id found"),
        "{}",
        error_line(&out)
    );
    // server.properties and meta.properties disagree.
    let logs = host.dir.join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    std::fs::write(logs.join("meta.properties"), "version=1\nnode.id=4\n").unwrap();
    let props = SERVER_PROPERTIES.replace("/nonexistent/kafka-logs", &logs.display().to_string())
        + "node.id=7\n";
    std::fs::write(host.properties(), &props).unwrap();
    let out = world.run(host, &["run", "--once"]);
    assert_eq!(out.status.code(), Some(1));
    let line = error_line(&out);
    assert!(
        line.contains("says 7") && line.contains("meta.properties") && line.contains("says 4"),
        "{line}"
    );
    assert_eq!(host.read_properties(), props);
    assert_nothing_created(&world);
    // meta.properties alone is enough.
    std::fs::write(logs.join("meta.properties"), "version=1\nnode.id=7\n").unwrap();
    assert_ok(&world.run(host, &["run", "--once"]));
    assert!(world.wiring().port_of(&world.group(7)).is_some());
}

#[test]
fn exhausted_port_range_is_named_and_leaves_no_orphan() {
    let world = World::start(Options::default());
    for host in &world.hosts {
        std::fs::write(host.config(), world.config_text(host, "10001-10002", "")).unwrap();
    }
    assert_ok(&world.run(&world.hosts[0], &["run", "--once"]));
    assert_ok(&world.run(&world.hosts[1], &["run", "--once"]));
    let out = world.run(&world.hosts[2], &["run", "--once"]);
    assert_eq!(out.status.code(), Some(1));
    let line = error_line(&out);
    assert!(
        line.contains("no free port in nlb.port_range 10001-10002"),
        "{line}"
    );
    let w = world.wiring();
    assert_eq!(
        w.groups.len(),
        3,
        "only two dedicated groups and the bootstrap: {:?}",
        w.groups.keys()
    );
    assert!(!w.groups.contains_key(&world.group(3)));
    assert_eq!(world.hosts[2].read_properties(), SERVER_PROPERTIES);
}

#[test]
fn unknown_load_balancer_is_named() {
    let world = World::start(Options {
        hosts: 1,
        ..Options::default()
    });
    let host = &world.hosts[0];
    let missing = "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/net/nope/0000000000000000";
    let text = std::fs::read_to_string(host.config())
        .unwrap()
        .replace(&world.lb_arn, missing);
    std::fs::write(host.config(), text).unwrap();
    let out = world.run(host, &["run", "--once"]);
    assert_eq!(out.status.code(), Some(1));
    let line = error_line(&out);
    assert!(
        line.contains("DescribeListeners")
            && line.contains(missing)
            && line.contains("LoadBalancerNotFound"),
        "{line}"
    );
    assert_eq!(host.read_properties(), SERVER_PROPERTIES);
}

#[test]
fn throttling_and_5xx_are_retried_until_converged() {
    let world = World::start(Options::default());
    // Seeded: random.Random(1) draws 0.134 first, so the very first AWS call is faulted and
    // the assertion below cannot fail by chance (unseeded, ~1 % of runs drew no fault).
    http_json_body(
        "POST",
        &format!("{}/_kplink/faults", world.moto.url),
        r#"{"rate": 0.15, "kinds": ["throttle", "500", "503"], "seed": 1}"#,
    );
    for host in &world.hosts {
        assert_ok(&world.run(host, &["run", "--once"]));
    }
    let faults = http_json("GET", &format!("{}/_kplink/calls", world.moto.url));
    http_json("DELETE", &format!("{}/_kplink/faults", world.moto.url));
    let injected: u64 = faults["_faults"]
        .as_object()
        .map_or(0, |m| m.values().filter_map(|v| v.as_u64()).sum());
    assert!(injected > 0, "no faults were injected: {faults}");
    let w = world.wiring();
    assert_eq!(w.listeners.len(), 4, "{:?}", w.listeners);
    assert_eq!(w.groups.len(), 4, "{:?}", w.groups.keys());
    assert_eq!(w.group_on(10000).targets.len(), 3);
}

/// Throttling is back-pressure until the pass deadline, and only the deadline fails the pass:
/// with the account's `Describe*` bucket empty for good, `run --once` keeps backing off for
/// `aws.pass_deadline` (10 s here; the last try is at the deadline, not one back-off before it),
/// then exits 1 with one line naming the call, how often it was throttled and the setting;
/// nothing created, the file unchanged.
#[test]
fn throttling_past_the_pass_deadline_fails_the_pass_cleanly() {
    let world = World::start(Options {
        hosts: 1,
        ..Options::default()
    });
    let host = &world.hosts[0];
    let config = world.config_text(host, "10001-10049", "") + "\n[aws]\npass_deadline = \"10s\"\n";
    std::fs::write(host.config(), config).unwrap();
    let throttle = format!("{}/_kplink/throttle", world.moto.url);
    http_json_body(
        "POST",
        &throttle,
        r#"{"buckets": {"elbv2_describe": {"capacity": 0, "refill_per_s": 0}}}"#,
    );
    let started = Instant::now();
    let out = world.run(host, &["run", "--once"]);
    let took = started.elapsed();
    let account = http_json("GET", &throttle);
    http_json("DELETE", &throttle);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let line = error_line(&out);
    for needle in [
        "DescribeListeners",
        "Throttling",
        "throttled",
        "aws.pass_deadline",
    ] {
        assert!(line.contains(needle), "{needle}: {line}");
    }
    assert!(
        account["throttled"]["total"].as_u64().unwrap_or(0) >= 3,
        "it gave up instead of backing off: {account}"
    );
    assert!(
        took >= Duration::from_secs(9) && took < Duration::from_secs(60),
        "{took:?}"
    );
    assert_eq!(host.read_properties(), SERVER_PROPERTIES);
    assert_nothing_created(&world);
}
