//! Several NLBs (`nlb.load_balancer_arns`) end to end against the strict moto launcher (50
//! listeners per NLB, one load balancer per target group, idempotent CreateTargetGroup): 3 NLBs,
//! 110 brokers booting at once, then filled to 147, a rerun that changes nothing and a 148th that
//! fails cleanly.

use crate::common;

use std::collections::{BTreeMap, BTreeSet};

use common::*;
use serde_json::Value;

const TEMPLATE: &str = "kafka-{az_id}-s{shard}.orders.example.internal";

/// Two more NLBs in the same subnets as the world's: returns all three ARNs, in list order.
fn three_nlbs(world: &World) -> Vec<String> {
    let mut arns = vec![world.lb_arn.clone()];
    arns.extend(more_nlbs(world, &["orders-nlb-b", "orders-nlb-c"]));
    arns
}

fn sharded_config(world: &World, host: &Host, arns: &[String]) -> String {
    world
        .config_text(host, "10001-10049", "")
        .replace("kafka-{az_id}.orders.example.internal", TEMPLATE)
        .replace(
            &format!("load_balancer_arn = \"{}\"", world.lb_arn),
            &format!(
                "load_balancer_arns = [{}]",
                arns.iter()
                    .map(|a| format!("{a:?}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )
}

/// What every NLB looks like: per NLB, port → target group name.
fn listeners_by_nlb(world: &World, arns: &[String]) -> Vec<BTreeMap<u16, String>> {
    arns.iter()
        .map(|arn| block_on(wiring(&world.elbv2, arn)).listeners)
        .collect()
}

#[test]
fn three_nlbs_hold_147_brokers_booting_at_once_and_the_148th_fails_cleanly() {
    let world = World::start(Options {
        hosts: 148,
        ..Options::default()
    });
    let arns = three_nlbs(&world);
    for h in &world.hosts {
        std::fs::write(h.config(), sharded_config(&world, h, &arns)).unwrap();
    }
    // 110 at once, then the next 37 at once.
    let mut reports: BTreeMap<i64, Value> = BTreeMap::new();
    for batch in [&world.hosts[..110], &world.hosts[110..147]] {
        let hosts: Vec<&Host> = batch.iter().collect();
        for (h, out) in hosts.iter().zip(boot_at_once(&world, &hosts)) {
            assert_ok(&out);
            reports.insert(h.broker_id, serde_json::from_slice(&out.stdout).unwrap());
        }
    }
    let nlbs = listeners_by_nlb(&world, &arns);
    let all = block_on(wiring(&world.elbv2, &world.lb_arn));
    // Unique (NLB, port) per broker; each NLB at its quota exactly: bootstrap + 49 claims.
    let mut seen = BTreeSet::new();
    for (h, r) in world.hosts[..147].iter().zip(reports.values()) {
        let shard = r["shard"].as_u64().unwrap() as usize;
        let port = r["port"].as_u64().unwrap() as u16;
        assert_eq!(r["load_balancer_arn"], arns[shard]);
        assert!(
            seen.insert((shard, port)),
            "({shard}, {port}) claimed twice"
        );
        let group = kplink_agent::registry::dedicated_group_name(
            "orders",
            &arns[shard],
            h.broker_id as i32,
        );
        assert_eq!(
            nlbs[shard].get(&port),
            Some(&group),
            "broker {}",
            h.broker_id
        );
        // The file advertises its own NLB's shard and port.
        let expected = format!(
            "PRIVATELINK://kafka-{}-s{shard}.orders.example.internal:{port}",
            h.az_id
        );
        assert!(
            h.read_properties().contains(&expected),
            "broker {}: {}",
            h.broker_id,
            h.read_properties()
        );
    }
    for (i, listeners) in nlbs.iter().enumerate() {
        assert_eq!(listeners.len(), 50, "NLB {i}: {listeners:?}");
        // Its own bootstrap group, holding exactly its own brokers.
        let boot = kplink_agent::registry::bootstrap_group_name("orders", &arns[i]);
        assert_eq!(listeners.get(&10000), Some(&boot));
        let members: BTreeSet<String> = all.groups[&boot]
            .targets
            .iter()
            .map(|t| t.0.clone())
            .collect();
        let mine: BTreeSet<String> = world.hosts[..147]
            .iter()
            .zip(reports.values())
            .filter(|(_, r)| r["shard"] == i)
            .map(|(h, _)| h.instance_id.clone())
            .collect();
        assert_eq!(mine.len(), 49);
        assert_eq!(members, mine, "bootstrap group of NLB {i}");
    }
    // No group without a listener (every attempt that lost a race cleaned up).
    let forwarded: BTreeSet<&String> = nlbs.iter().flat_map(|l| l.values()).collect();
    let orphans: Vec<&String> = all
        .groups
        .keys()
        .filter(|g| !forwarded.contains(g))
        .collect();
    assert!(orphans.is_empty(), "orphan groups {orphans:?}");

    // A rerun of all changes nothing: no write call at all.
    world.reset_calls();
    let hosts: Vec<&Host> = world.hosts[..147].iter().collect();
    for out in boot_at_once(&world, &hosts) {
        assert_ok(&out);
        let r: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(r["changes"], serde_json::json!([]), "{r}");
    }
    let writes: Vec<(String, u64)> = world
        .calls(None)
        .into_iter()
        .filter(|(k, _)| !k.contains(":Describe"))
        .collect();
    assert!(writes.is_empty(), "rerun wrote: {writes:?}");

    // `plan` and `status` name the shard and the NLB of a broker on the third NLB.
    let (host, _) = world.hosts[..147]
        .iter()
        .zip(reports.values())
        .find(|(_, r)| r["shard"] == 2)
        .unwrap();
    for args in [&["plan", "--json"][..], &["status", "--json"]] {
        let out = world.run(host, args);
        let doc: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
            panic!("{args:?}: {}", stderr(&out));
        });
        assert_eq!(
            (&doc["shard"], &doc["load_balancer_arn"]),
            (&Value::from(2), &Value::from(arns[2].as_str())),
            "{args:?}: {doc}"
        );
    }
    let text = stdout(&world.run(host, &["status"]));
    assert!(
        text.contains(&format!("shard 2 of 3: {}", arns[2])),
        "{text}"
    );

    // The 148th: all three full. One error naming them and the quota; nothing left behind.
    let last = &world.hosts[147];
    let out = world.run(last, &["run", "--once"]);
    assert_ne!(out.status.code(), Some(0));
    let line = last_error_line(&out).unwrap_or_else(|| stderr(&out));
    assert!(
        line.contains("all 3 NLBs in nlb.load_balancer_arns are full"),
        "{line}"
    );
    assert!(line.contains("at most 50 listeners"), "{line}");
    assert_eq!(last.read_properties(), SERVER_PROPERTIES);
    let after = block_on(wiring(&world.elbv2, &world.lb_arn));
    assert_eq!(
        after.groups.len(),
        all.groups.len(),
        "a group was left behind"
    );
}

/// The account's API budget: AWS's ELB token buckets (AWS "Request throttling for the ELB API";
/// enforced by the launcher, scaled to half so the test takes seconds, not a minute) in front of
/// 30 brokers over 3 NLBs booting at once. Every first run converges and exits 0, riding through
/// the throttled answers the emulated account gives; the claims spread by broker id (one NLB
/// read per broker, no collision); nothing is left behind.
#[test]
fn thirty_brokers_booting_at_once_ride_through_a_throttled_account() {
    let world = World::start(Options {
        hosts: 30,
        ..Options::default()
    });
    let arns = three_nlbs(&world);
    for h in &world.hosts {
        std::fs::write(h.config(), sharded_config(&world, h, &arns)).unwrap();
    }
    let throttle = format!("{}/_kplink/throttle", world.moto.url);
    http_json_body("POST", &throttle, r#"{"scale": 0.5}"#);
    let hosts: Vec<&Host> = world.hosts.iter().collect();
    let outs = boot_at_once(&world, &hosts);
    let account = http_json("GET", &throttle);
    http_json("DELETE", &throttle);
    let pushed_back = account["throttled"]["total"].as_u64().unwrap_or(0);
    assert!(
        pushed_back > 0,
        "the emulated account never throttled: this test proves nothing ({account})"
    );
    let mut reports = Vec::new();
    for out in &outs {
        assert_ok(out);
        reports.push(serde_json::from_slice::<Value>(&out.stdout).unwrap());
    }
    // The agents saw the same push-back and say so.
    let sum = |r: &Value, key: &str| -> u64 {
        r[key]
            .as_object()
            .map(|m| m.values().filter_map(Value::as_u64).sum())
            .unwrap_or(0)
    };
    let reported: u64 = reports.iter().map(|r| sum(r, "aws_throttled")).sum();
    assert!(reported > 0, "no agent reported a throttled answer");
    assert!(reported <= pushed_back, "{reported} > {pushed_back}");
    let nlbs = listeners_by_nlb(&world, &arns);
    let mut seen = BTreeSet::new();
    for (h, r) in world.hosts.iter().zip(&reports) {
        let shard = r["shard"].as_u64().unwrap() as usize;
        let port = r["port"].as_u64().unwrap() as u16;
        // Spread by broker id: its NLB is id mod 3, its port its turn there; it read that NLB
        // only and nobody collided.
        assert_eq!(shard, (h.broker_id % 3) as usize, "broker {}", h.broker_id);
        assert_eq!(
            port,
            10001 + (h.broker_id / 3) as u16,
            "broker {}",
            h.broker_id
        );
        assert_eq!(r["claim_collisions"], 0, "broker {}: {r}", h.broker_id);
        assert_eq!(
            r["aws_calls"]["DescribeListeners"], 1,
            "broker {}: {r}",
            h.broker_id
        );
        assert!(seen.insert((shard, port)));
        let group = kplink_agent::registry::dedicated_group_name(
            "orders",
            &arns[shard],
            h.broker_id as i32,
        );
        assert_eq!(nlbs[shard].get(&port), Some(&group));
        assert!(h
            .read_properties()
            .contains(&format!("-s{shard}.orders.example.internal:{port}\n")));
    }
    // Nothing left behind: a dedicated group per broker and a bootstrap group per NLB, no more.
    let groups = block_on(wiring(&world.elbv2, &world.lb_arn)).groups;
    assert_eq!(groups.len(), 30 + 3, "{:?}", groups.keys());
    for (i, listeners) in nlbs.iter().enumerate() {
        assert_eq!(listeners.len(), 10 + 1, "NLB {i}: {listeners:?}");
    }
}
