//! The daemon (`kplink-agent run`): drift repair, file watcher, SIGHUP, metrics, SIGTERM; and the
//! operations commands `status` and `decommission`.

use crate::common;

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::*;

struct Daemon {
    child: Child,
    metrics: u16,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_daemon(world: &World, host: &Host, interval: &str) -> Daemon {
    start_daemon_with(world, host, interval, "")
}

/// A daemon with `extra` config sections (before `[daemon]`), after its first pass.
fn start_daemon_with(world: &World, host: &Host, interval: &str, extra: &str) -> Daemon {
    let metrics = free_port();
    let config = format!(
        "{}\n{extra}\n[daemon]\ninterval = \"{interval}\"\nmetrics_listen = \"127.0.0.1:{metrics}\"\nstate_dir = \"{}\"\n",
        world.config_text(host, "10001-10049", ""),
        host.dir.join("state").display()
    );
    std::fs::write(host.config(), config).unwrap();
    let child = world
        .agent(host)
        .arg("run")
        .env("KPLINK_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let d = Daemon { child, metrics };
    wait_until("first pass", Duration::from_secs(30), || {
        metric(d.metrics, "kplink_passes_total").unwrap_or(0.0) >= 1.0
    });
    d
}

fn sigterm(d: &mut Daemon) -> (Option<i32>, Duration) {
    let started = Instant::now();
    unsafe_kill(d.child.id(), "TERM");
    let status = loop {
        if let Some(s) = d.child.try_wait().unwrap() {
            break s;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no exit within 10 s of SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    (status.code(), started.elapsed())
}

fn unsafe_kill(pid: u32, signal: &str) {
    let ok = std::process::Command::new("kill")
        .args([format!("-{signal}"), pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -{signal} {pid}");
}

fn deregister(world: &World, group: &str, instance: &str) {
    let arn = world.wiring().groups[group].arn.clone();
    block_on(async {
        let target = aws_sdk_elasticloadbalancingv2::types::TargetDescription::builder()
            .id(instance)
            .port(9094)
            .build();
        world
            .elbv2
            .deregister_targets()
            .target_group_arn(arn)
            .targets(target)
            .send()
            .await
            .unwrap();
    });
}

#[test]
fn daemon_repairs_nlb_drift_within_one_interval_and_stops_cleanly() {
    let world = World::start(Options {
        hosts: 1,
        ..Options::default()
    });
    let host = &world.hosts[0];
    let mut d = start_daemon(&world, host, "2s");
    let port = world.wiring().port_of(&world.group(1)).expect("claimed");
    assert_eq!(
        metric(d.metrics, "kplink_claimed_port"),
        Some(f64::from(port))
    );
    assert_eq!(http_get(d.metrics, "/healthz").map(|(s, _)| s), Some(200));

    delete_listener(&world, port);
    deregister(&world, &world.boot_group(), &host.instance_id);
    let took = wait_until(
        "listener and registration restored",
        Duration::from_secs(8),
        || {
            let w = world.wiring();
            w.port_of(&world.group(1)).is_some()
                && w.group_on(10000)
                    .targets
                    .contains(&(host.instance_id.clone(), 9094))
        },
    );
    // One interval is 2 s ± 10 %; allow for the pass itself.
    assert!(took < Duration::from_secs(5), "{took:?}");
    let new_port = world.wiring().port_of(&world.group(1)).unwrap();
    assert!(host.read_properties().contains(&format!(":{new_port}\n")));
    assert!(metric(d.metrics, "kplink_drift_repairs_total").unwrap() >= 2.0);
    assert!(
        metric(
            d.metrics,
            "kplink_aws_calls_total{operation=\"CreateListener\"}"
        )
        .unwrap()
            >= 2.0
    );

    let (code, took) = sigterm(&mut d);
    assert_eq!(code, Some(0));
    assert!(took < Duration::from_secs(10));
}

#[test]
fn daemon_restores_an_overwritten_file_through_the_watcher_and_reloads_on_sighup() {
    let world = World::start(Options {
        hosts: 1,
        ..Options::default()
    });
    let host = &world.hosts[0];
    // A long interval: only the watcher or SIGHUP can explain a quick pass.
    let mut d = start_daemon(&world, host, "5m");
    let wired = host.read_properties();
    assert_ne!(wired, SERVER_PROPERTIES);
    // The agent's own write must not count as a change.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(metric(d.metrics, "kplink_passes_total"), Some(1.0));

    // Config management puts its version back.
    std::fs::write(host.properties(), SERVER_PROPERTIES).unwrap();
    let took = wait_until("file restored", Duration::from_secs(10), || {
        host.read_properties() == wired
    });
    assert!(took < Duration::from_secs(5), "{took:?}");
    wait_until(
        "the repairing pass to finish",
        Duration::from_secs(5),
        || metric(d.metrics, "kplink_passes_total") == Some(2.0),
    );
    // Exactly one pass: its own write did not trigger another.
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(metric(d.metrics, "kplink_passes_total"), Some(2.0));

    // SIGHUP with a broken config: logged, old config kept, still serving.
    let good = std::fs::read_to_string(host.config()).unwrap();
    std::fs::write(host.config(), "cluster = [").unwrap();
    unsafe_kill(d.child.id(), "HUP");
    wait_until("pass after SIGHUP", Duration::from_secs(10), || {
        metric(d.metrics, "kplink_passes_total").unwrap_or(0.0) >= 3.0
    });
    assert!(
        d.child.try_wait().unwrap().is_none(),
        "daemon died on a bad config"
    );
    std::fs::write(host.config(), &good).unwrap();
    // SIGHUP makes a pass at once: NLB drift repaired without waiting for the 5 min interval.
    let port = world.wiring().port_of(&world.group(1)).unwrap();
    delete_listener(&world, port);
    unsafe_kill(d.child.id(), "HUP");
    wait_until(
        "listener restored after SIGHUP",
        Duration::from_secs(10),
        || world.wiring().port_of(&world.group(1)).is_some(),
    );

    // status reads the daemon's last pass and the live state.
    let out = world.run(host, &["status", "--json"]);
    assert_ok(&out);
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["broker_id"], 1);
    assert_eq!(
        status["claimed_port"],
        world.wiring().port_of(&world.group(1)).unwrap()
    );
    assert_eq!(status["last_pass"]["ok"], true);
    assert_eq!(
        status["dedicated_targets"][0]["id"],
        host.instance_id.as_str()
    );

    let (code, _) = sigterm(&mut d);
    assert_eq!(code, Some(0));
}

#[test]
fn decommission_requires_yes_is_complete_and_idempotent() {
    let world = World::start(Options::default());
    for host in &world.hosts {
        assert_ok(&world.run(host, &["run", "--once"]));
    }
    let host = &world.hosts[1];
    let out = world.run(host, &["decommission"]);
    assert_eq!(out.status.code(), Some(64));
    assert!(world.wiring().port_of(&world.group(2)).is_some());

    // --dry-run: the steps, in order, exit 2, nothing changed.
    let before = (
        world.wiring().port_of(&world.group(2)),
        host.read_properties(),
    );
    let dry = world.run(host, &["decommission", "--dry-run"]);
    assert_eq!(dry.status.code(), Some(2), "{}", stdout(&dry));
    let shown: Vec<String> = stdout(&dry)
        .lines()
        .skip(1)
        .map(|l| l.trim().to_string())
        .collect();
    assert_eq!(shown.len(), 4, "{shown:#?}");
    assert!(shown[0].starts_with(&format!("deregister {}:", host.instance_id)));
    assert!(shown[1].starts_with("delete listener on port "));
    assert!(shown[2].starts_with(&format!("delete target group {}", world.group(2))));
    assert!(shown[3].starts_with("remove listener PRIVATELINK from "));
    assert_eq!(
        (
            world.wiring().port_of(&world.group(2)),
            host.read_properties()
        ),
        before
    );

    let out = world.run(host, &["decommission", "--yes"]);
    assert_ok(&out);
    // It did what the dry run showed, in that order.
    let done: Vec<String> = stdout(&out)
        .lines()
        .skip(1)
        .map(|l| l.trim().to_string())
        .collect();
    assert_eq!(done.len(), 4, "{done:#?}");
    assert!(done[0].starts_with(&format!("deregistered {}:", host.instance_id)));
    assert!(done[2].starts_with(&format!("deleted target group {}", world.group(2))));
    let w = world.wiring();
    assert!(w.port_of(&world.group(2)).is_none());
    assert!(!w.groups.contains_key(&world.group(2)));
    let boot = &w.group_on(10000).targets;
    assert!(!boot.iter().any(|(id, _)| *id == host.instance_id));
    assert_eq!(boot.len(), 2, "the other brokers stay");
    assert!(w.port_of(&world.group(1)).is_some() && w.port_of(&world.group(3)).is_some());
    assert_eq!(
        host.read_properties(),
        SERVER_PROPERTIES.to_string(),
        "managed listener removed"
    );

    let again = world.run(host, &["decommission", "--yes"]);
    assert_ok(&again);
    assert!(
        stdout(&again).contains("nothing to remove"),
        "{}",
        stdout(&again)
    );

    // --keep-config leaves the file alone.
    let other = &world.hosts[2];
    let before = other.read_properties();
    assert_ok(&world.run(other, &["decommission", "--yes", "--keep-config"]));
    assert_eq!(other.read_properties(), before);
    assert!(world.wiring().port_of(&world.group(3)).is_none());
}

#[test]
fn a_controller_only_node_idles_and_becomes_a_broker_when_its_file_says_so() {
    let world = World::start(Options {
        hosts: 1,
        ..Options::default()
    });
    let host = &world.hosts[0];
    let controller = controller_only_properties();
    std::fs::write(host.properties(), &controller).unwrap();
    let d = start_daemon(&world, host, "1s");
    // Idle passes: healthy, nothing on the NLB, the file untouched.
    wait_until("idle passes", Duration::from_secs(10), || {
        metric(d.metrics, "kplink_passes_total").unwrap_or(0.0) >= 3.0
    });
    assert_eq!(http_get(d.metrics, "/healthz").map(|r| r.0), Some(200));
    assert!(world.wiring().listeners.is_empty());
    assert_eq!(host.read_properties(), controller);
    let state = std::fs::read_to_string(host.dir.join("state/last-pass.json")).unwrap();
    assert!(state.contains("controller-only node"), "{state}");
    // The same host made a broker (same image everywhere): it wires itself.
    std::fs::write(host.properties(), SERVER_PROPERTIES).unwrap();
    wait_until("wired as a broker", Duration::from_secs(15), || {
        world.wiring().port_of(&world.group(1)).is_some()
    });
}

#[test]
fn the_daemon_counts_stale_claims() {
    let world = World::start(Options {
        hosts: 2,
        ..Options::default()
    });
    assert_ok(&world.run(&world.hosts[1], &["run", "--once"]));
    // Broker 2's instance is terminated without decommission: ELB deregistered it from its
    // groups (its own and the bootstrap group).
    deregister(&world, &world.group(2), &world.hosts[1].instance_id);
    deregister(&world, &world.boot_group(), &world.hosts[1].instance_id);
    // Broker 1 claims in its first pass, verifies that in full a few seconds later (ELBv2 is
    // eventually consistent), sees itself the only live broker of the bootstrap group: it is the
    // cluster's accountant and counts the stale claim.
    let d = start_daemon(&world, &world.hosts[0], "60s");
    wait_until("stale claims counted", Duration::from_secs(20), || {
        metric(d.metrics, "kplink_stale_claims") == Some(1.0)
    });
}

/// A broker that accepts connections but does not answer is looked at again on every pass (the
/// change stays pending), never written off as "not running".
#[test]
fn the_daemon_keeps_checking_an_unreachable_broker() {
    let world = World::start(Options {
        hosts: 1,
        ..Options::default()
    });
    let host = &world.hosts[0];
    let address = silent_listener();
    let restart = format!("[restart]\nbootstrap_servers = \"{address}\"\n");
    let d = start_daemon_with(&world, host, "1s", &restart);
    let failures = "kplink_pass_failures_total{kind=\"kafka\"}";
    wait_until(
        "three failed looks at Kafka",
        Duration::from_secs(40),
        || metric(d.metrics, failures).unwrap_or(0.0) >= 3.0,
    );
    assert_eq!(metric(d.metrics, "kplink_restart_pending"), Some(1.0));
    assert_eq!(metric(d.metrics, "kplink_restarts_total"), Some(0.0));
    // The NLB and the file were done regardless.
    assert!(world.wiring().port_of(&world.group(1)).is_some());
}

/// The steady state within the account's API budget: once converged (and verified in full after
/// its change), the daemon checks the NLB with one DescribeTargetHealth per check, alternating
/// between its own group and the bootstrap group, and nothing else; a deleted listener (the
/// group then reports the target `unused`, `Target.NotInUse`) and a deregistration from the
/// bootstrap group are each caught by such a check and repaired.
#[test]
fn a_steady_daemon_reads_one_group_per_check_and_still_repairs_drift() {
    let world = World::start(Options {
        hosts: 1,
        ..Options::default()
    });
    let host = &world.hosts[0];
    // One broker: a check every max(1 s, 1 / 0.5 s) = 2 s, ±50 %.
    let d = start_daemon(&world, host, "1s");
    wait_until("steady", Duration::from_secs(20), || {
        metric(d.metrics, "kplink_passes_total").unwrap_or(0.0) >= 8.0
    });
    world.reset_calls();
    std::thread::sleep(Duration::from_secs(12));
    let calls = world.calls(Some(&host.access_key));
    let elbv2 = |op: &str| {
        calls
            .get(&format!("elasticloadbalancing:{op}"))
            .copied()
            .unwrap_or(0)
    };
    let total: u64 = calls.values().sum();
    // 12 s at one check per 1–3 s: 4 to 12 reads, all DescribeTargetHealth.
    assert_eq!(elbv2("DescribeTargetHealth"), total, "{calls:?}");
    assert!(
        (4..=13).contains(&total),
        "{total} reads in 12 s: {calls:?}"
    );

    let port = world.wiring().port_of(&world.group(1)).expect("claimed");
    delete_listener(&world, port);
    wait_until("listener restored", Duration::from_secs(15), || {
        world.wiring().port_of(&world.group(1)).is_some()
    });
    deregister(&world, &world.boot_group(), &host.instance_id);
    wait_until(
        "bootstrap registration restored",
        Duration::from_secs(15),
        || {
            world
                .wiring()
                .group_on(10000)
                .targets
                .contains(&(host.instance_id.clone(), 9094))
        },
    );
    let new_port = world.wiring().port_of(&world.group(1)).unwrap();
    assert!(host.read_properties().contains(&format!(":{new_port}\n")));
    assert!(metric(d.metrics, "kplink_drift_repairs_total").unwrap() >= 2.0);
}
