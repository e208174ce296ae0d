//! Instance lifecycle end to end (moto, the IMDSv2 test server, the real binary): a Spot
//! interruption notice or an Auto Scaling target lifecycle state of `Terminated` drains the
//! instance from the bootstrap target group; its claim and `server.properties` stay, and a
//! replacement with the same broker id gets the port back.

use crate::common;

use std::process::{Child, Stdio};
use std::time::Duration;

use common::*;

const SPOT_TERMINATE: &str =
    r#"{"spot_instance_action": {"action": "terminate", "time": "2024-05-01T12:00:00Z"}}"#;

fn in_bootstrap(world: &World, instance: &str) -> bool {
    world
        .wiring()
        .group_on(10000)
        .targets
        .iter()
        .any(|(id, _)| id == instance)
}

/// Broker `id`'s claim: (port, its group's targets).
fn claim(world: &World, id: i64) -> (u16, std::collections::BTreeSet<(String, u16)>) {
    let w = world.wiring();
    let port = w.port_of(&world.group(id)).expect("claimed");
    (port, w.groups[&world.group(id)].targets.clone())
}

#[test]
fn run_once_on_a_spot_interruption_drains_and_keeps_the_port_for_a_replacement() {
    let mut world = World::start(Options {
        hosts: 2,
        ..Options::default()
    });
    for host in &world.hosts {
        assert_ok(&world.run(host, &["run", "--once"]));
    }
    let host = &world.hosts[0];
    let other = world.hosts[1].instance_id.clone();
    let before = claim(&world, 1);
    let file = std::fs::read(host.properties()).unwrap();
    assert!(in_bootstrap(&world, &host.instance_id));

    world.imds_patch(host, SPOT_TERMINATE);
    // `plan` shows the drain and changes nothing.
    let out = world.run(host, &["plan"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains(&format!(
            "leave the bootstrap target group: deregister {}:9094",
            host.instance_id
        )),
        "{text}"
    );
    assert!(text.contains("Spot interruption: terminate"), "{text}");
    assert!(in_bootstrap(&world, &host.instance_id));

    let out = world.run(host, &["run", "--once"]);
    assert_ok(&out);
    let text = stdout(&out);
    assert!(text.contains("drained"), "{text}");
    assert!(
        text.contains("Spot interruption: terminate at 2024-05-01T12:00:00Z"),
        "{text}"
    );
    assert!(!in_bootstrap(&world, &host.instance_id), "{text}");
    assert!(in_bootstrap(&world, &other), "the other broker stays");
    assert_eq!(
        claim(&world, 1),
        before,
        "listener, group and registration kept"
    );
    assert_eq!(
        std::fs::read(host.properties()).unwrap(),
        file,
        "file unchanged"
    );

    // Again: stays drained, nothing to do; `plan` agrees; `status` says so.
    let out = world.run(host, &["run", "--once", "--json"]);
    assert_ok(&out);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["changes"], serde_json::json!([]));
    assert_eq!(report["lifecycle"]["state"], "leaving");
    assert_eq!(report["lifecycle"]["reason"]["action"], "terminate");
    assert_eq!(report["kafka"]["outcome"], "skipped");
    assert!(!in_bootstrap(&world, &host.instance_id));
    assert_eq!(world.run(host, &["plan"]).status.code(), Some(0));
    let out = world.run(host, &["status", "--json"]);
    assert_ok(&out);
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["draining"], true);
    assert_eq!(status["claimed_port"], before.0);
    let out = world.run(host, &["status"]);
    assert!(
        stdout(&out).contains("lifecycle     LEAVING (Spot interruption: terminate"),
        "{}",
        stdout(&out)
    );
    assert_eq!(std::fs::read(host.properties()).unwrap(), file);

    // The instance is gone (ELB deregisters terminated instances); a replacement for broker 1
    // claims the same port and joins the bootstrap group.
    let old = host.instance_id.clone();
    let i = world.add_host(1);
    let new = &world.hosts[i];
    assert_ok(&world.run(new, &["run", "--once"]));
    let (port, targets) = claim(&world, 1);
    assert_eq!(port, before.0, "same port");
    assert!(
        targets.iter().all(|(id, _)| *id == new.instance_id),
        "{targets:?}"
    );
    assert!(in_bootstrap(&world, &new.instance_id) && !in_bootstrap(&world, &old));
    assert!(new.read_properties().contains(&format!(":{port}\n")));
}

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_daemon_drains_within_one_interval_of_a_terminated_target_state_and_stays_drained() {
    let world = World::start(Options {
        hosts: 1,
        ..Options::default()
    });
    let host = &world.hosts[0];
    let metrics = free_port();
    let config = format!(
        "{}\n[daemon]\ninterval = \"2s\"\nmetrics_listen = \"127.0.0.1:{metrics}\"\nstate_dir = \"{}\"\n",
        world.config_text(host, "10001-10049", ""),
        host.dir.join("state").display()
    );
    std::fs::write(host.config(), config).unwrap();
    world.imds_patch(host, r#"{"target_lifecycle_state": "InService"}"#);
    let _d = Daemon(
        world
            .agent(host)
            .arg("run")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let passes = || metric(metrics, "kplink_passes_total").unwrap_or(0.0);
    wait_until("wired", Duration::from_secs(30), || {
        passes() >= 1.0 && in_bootstrap(&world, &host.instance_id)
    });
    assert_eq!(metric(metrics, "kplink_draining"), Some(0.0));
    assert_eq!(metric(metrics, "kplink_drains_total"), Some(0.0));
    let before = claim(&world, 1);
    let file = std::fs::read(host.properties()).unwrap();

    // Scale-in: Auto Scaling moves the instance to Terminated (a lifecycle hook holds it there).
    world.imds_patch(host, r#"{"target_lifecycle_state": "Terminated"}"#);
    let took = wait_until("drained", Duration::from_secs(10), || {
        !in_bootstrap(&world, &host.instance_id)
    });
    // One interval is 2 s ± 10 %; allow for the pass itself.
    assert!(took < Duration::from_secs(5), "{took:?}");
    wait_until("the drain counted", Duration::from_secs(5), || {
        metric(metrics, "kplink_draining") == Some(1.0)
    });
    assert_eq!(metric(metrics, "kplink_drains_total"), Some(1.0));
    assert_eq!(claim(&world, 1), before);
    assert_eq!(std::fs::read(host.properties()).unwrap(), file);
    let state = std::fs::read_to_string(host.dir.join("state/last-pass.json")).unwrap();
    assert!(
        state.contains(
            "draining (instance leaving: Auto Scaling target lifecycle state Terminated)"
        ),
        "{state}"
    );

    // Later passes keep it drained, even when metadata stops saying so.
    let seen = passes();
    wait_until("two more passes", Duration::from_secs(10), || {
        passes() >= seen + 2.0
    });
    world.imds_patch(host, r#"{"target_lifecycle_state": null}"#);
    let seen = passes();
    wait_until("two passes after that", Duration::from_secs(10), || {
        passes() >= seen + 2.0
    });
    assert!(!in_bootstrap(&world, &host.instance_id));
    assert_eq!(metric(metrics, "kplink_draining"), Some(1.0));
    assert_eq!(metric(metrics, "kplink_drains_total"), Some(1.0));
    assert_eq!(claim(&world, 1), before);
    assert_eq!(std::fs::read(host.properties()).unwrap(), file);
}
