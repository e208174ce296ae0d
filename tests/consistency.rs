//! ELBv2 is eventually consistent, and moto is not: the launcher's lag (`/_kplink/lag`, see
//! `tests/support/moto_launcher.py`) makes it answer as AWS can right after a change. Each test
//! shows a pass that would fail against that lag without its handling.

use crate::common;

use common::*;

fn lag(world: &World, seconds: f64) {
    http_json_body(
        "POST",
        &format!("{}/_kplink/lag", world.moto.url),
        &format!(r#"{{"seconds": {seconds}}}"#),
    );
}

/// Right after DeleteListener, DeleteTargetGroup of its group answers `ResourceInUse` for a
/// while (terraform-provider-aws retries exactly this): `decommission` rides through it within
/// the pass deadline and leaves nothing behind.
#[test]
fn decommission_right_after_deleting_the_listener_waits_out_resource_in_use() {
    let world = World::start(Options {
        hosts: 2,
        ..Options::default()
    });
    for h in &world.hosts {
        assert_ok(&world.run(h, &["run", "--once"]));
    }
    lag(&world, 2.0);
    let out = world.run(&world.hosts[1], &["decommission", "--yes"]);
    assert_ok(&out);
    let state = http_json("GET", &format!("{}/_kplink/calls", world.moto.url));
    let w = world.wiring();
    assert!(
        !w.groups.contains_key(&world.group(2)),
        "broker 2's group was left behind: {:?} ({state})",
        w.groups.keys()
    );
    assert!(w.port_of(&world.group(1)).is_some(), "broker 1 untouched");
    // The lag was there to be ridden through: the first DeleteTargetGroup was answered
    // ResourceInUse, a later one succeeded (the server counts every request).
    let calls = world.calls(Some(&world.hosts[1].access_key));
    assert!(
        calls
            .get("elasticloadbalancing:DeleteTargetGroup")
            .copied()
            .unwrap_or(0)
            >= 2,
        "{calls:?}"
    );
}

/// Brokers booting together while new listeners take a moment to show in DescribeListeners.
#[test]
fn new_brokers_join_while_their_listeners_are_not_yet_listed() {
    let world = World::start(Options {
        hosts: 3,
        ..Options::default()
    });
    // Every new listener stays out of DescribeListeners for 2 s: the first broker's bootstrap
    // listener is invisible to the next ones, which still converge (their CreateListener on the
    // bootstrap port is the same listener, idempotent) and claim distinct ports.
    lag(&world, 2.0);
    let hosts: Vec<&Host> = world.hosts.iter().collect();
    for out in boot_at_once(&world, &hosts) {
        assert_ok(&out);
    }
    http_json("DELETE", &format!("{}/_kplink/lag", world.moto.url));
    let w = world.wiring();
    assert_eq!(w.listeners.len(), 4, "{:?}", w.listeners);
    assert_eq!(w.groups.len(), 4, "{:?}", w.groups.keys());
    assert_eq!(w.group_on(10000).targets.len(), 3);
}
