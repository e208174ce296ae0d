//! The ELBv2 rules contract (`kplink_agent::nlb::contract`) on the real adapter, `Elbv2`,
//! against the moto launcher: the same checks the unit tests run on the in-process fake, so the
//! fake, the launcher and the adapter's reading of AWS's answers are held to one statement of
//! AWS's rules.

use crate::common;

use common::*;
use kplink_agent::nlb::{contract, CallCounter, Elbv2};

#[test]
fn the_real_adapter_on_the_launcher_keeps_the_elbv2_rules_contract() {
    let world = World::start(Options {
        hosts: 1,
        ..Options::default()
    });
    let lb_b = more_nlbs(&world, &["orders-nlb-contract"]).remove(0);
    let calls = CallCounter::default();
    let lb = Elbv2::new(world.elbv2.clone(), calls.clone());
    let w = contract::World {
        lb_a: world.lb_arn.clone(),
        lb_b,
        vpc_id: world.vpc_id(),
        prefix: "kp-contract".into(),
        base_port: 20000,
        instance_id: world.hosts[0].instance_id.clone(),
    };
    let broken = block_on(contract::broken(&lb, &w));
    assert!(
        broken.is_empty(),
        "the adapter on the launcher breaks AWS's rules:\n{}",
        broken.join("\n")
    );
    // The rules ran (a contract that stopped early would create few listeners) and cleaned up.
    let created = calls.snapshot().get("CreateListener").copied().unwrap_or(0);
    assert!(created >= 52, "{created} CreateListener calls");
    assert!(wiring_of(&world).groups.is_empty());
}

fn wiring_of(world: &World) -> Wiring {
    block_on(wiring(&world.elbv2, &world.lb_arn))
}
