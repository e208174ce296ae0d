//! The rules a real deployment meets that a lenient emulator would hide: several NLBs and
//! clusters in one account, an NLB not enabled in an AZ, the 50-listener quota, groups left by
//! release 0.1, health checks on the traffic port, controller-only KRaft nodes, a broker that
//! accepts connections but does not answer, stale claims, and config warnings. Everything runs
//! against the strict test AWS (`tests/support/moto_launcher.py`, see `tests/emulator_rules.rs`).

use crate::common;

use std::collections::BTreeMap;

use aws_sdk_elasticloadbalancingv2 as elbv2;
use common::*;
use elbv2::types::{
    Action, ActionTypeEnum, LoadBalancerSchemeEnum, LoadBalancerTypeEnum, ProtocolEnum, Tag,
    TargetDescription, TargetTypeEnum,
};
use serde_json::Value;

fn world_json(world: &World) -> Value {
    serde_json::from_str(&std::fs::read_to_string(&world.world_file).unwrap()).unwrap()
}

fn vpc_id(world: &World) -> String {
    world_json(world)["vpc_id"].as_str().unwrap().to_string()
}

/// Subnet ids by AZ name.
fn subnets(world: &World) -> BTreeMap<String, String> {
    world_json(world)["subnets"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(az, s)| (az.clone(), s["subnet_id"].as_str().unwrap().to_string()))
        .collect()
}

/// Another internal NLB in the world's VPC, enabled in the given subnets.
fn create_nlb(world: &World, name: &str, subnet_ids: &[String]) -> String {
    block_on(async {
        world
            .elbv2
            .create_load_balancer()
            .name(name)
            .r#type(LoadBalancerTypeEnum::Network)
            .scheme(LoadBalancerSchemeEnum::Internal)
            .set_subnets(Some(subnet_ids.to_vec()))
            .send()
            .await
            .unwrap()
            .load_balancers()[0]
            .load_balancer_arn()
            .unwrap()
            .to_string()
    })
}

fn tag(k: &str, v: &str) -> Tag {
    Tag::builder().key(k).value(v).build()
}

/// A target group as someone else (or release 0.1) made it; its ARN.
fn create_group(world: &World, name: &str, tags: &[(&str, &str)], health_port: &str) -> String {
    block_on(async {
        let mut req = world
            .elbv2
            .create_target_group()
            .name(name)
            .protocol(ProtocolEnum::Tcp)
            .port(9094)
            .vpc_id(vpc_id(world))
            .target_type(TargetTypeEnum::Instance)
            .health_check_protocol(ProtocolEnum::Tcp)
            .health_check_port(health_port);
        for (k, v) in tags {
            req = req.tags(tag(k, v));
        }
        req.send().await.unwrap().target_groups()[0]
            .target_group_arn()
            .unwrap()
            .to_string()
    })
}

fn create_listener(world: &World, lb: &str, port: u16, tg: &str, tags: &[(&str, &str)]) {
    block_on(async {
        let mut req = world
            .elbv2
            .create_listener()
            .load_balancer_arn(lb)
            .protocol(ProtocolEnum::Tcp)
            .port(i32::from(port))
            .default_actions(
                Action::builder()
                    .r#type(ActionTypeEnum::Forward)
                    .target_group_arn(tg)
                    .build(),
            );
        for (k, v) in tags {
            req = req.tags(tag(k, v));
        }
        req.send().await.unwrap();
    });
}

fn health_check_port(world: &World, name: &str) -> String {
    block_on(async {
        world
            .elbv2
            .describe_target_groups()
            .names(name)
            .send()
            .await
            .unwrap()
            .target_groups()[0]
            .health_check_port()
            .unwrap_or_default()
            .to_string()
    })
}

fn write_config(host: &Host, text: &str) {
    std::fs::write(host.config(), text).unwrap();
}

fn error_line(out: &std::process::Output) -> String {
    stderr(out)
        .lines()
        .rfind(|l| l.starts_with("error: "))
        .unwrap_or_default()
        .to_string()
}

#[test]
fn the_same_cluster_on_a_second_nlb_gets_its_own_groups() {
    let world = World::start(Options {
        hosts: 2,
        ..Options::default()
    });
    assert_ok(&world.run(&world.hosts[0], &["run", "--once"]));
    // Blue/green: the same cluster name on a second NLB in the same account.
    let green = create_nlb(
        &world,
        "orders-green",
        &subnets(&world).into_values().collect::<Vec<_>>(),
    );
    let host = &world.hosts[1];
    write_config(
        host,
        &world
            .config_text(host, "10001-10049", "")
            .replace(&world.lb_arn, &green),
    );
    let out = world.run(host, &["run", "--once"]);
    assert_ok(&out);
    let blue = world.wiring();
    let green_wiring = block_on(wiring(&world.elbv2, &green));
    let green_boot = kplink_agent::registry::bootstrap_group_name("orders", &green);
    let green_b2 = kplink_agent::registry::dedicated_group_name("orders", &green, 2);
    assert_eq!(green_wiring.group_on(10000).name, green_boot);
    assert!(
        green_wiring.port_of(&green_b2).is_some(),
        "{green_wiring:?}"
    );
    // Nothing of the first NLB moved or was shared.
    assert_eq!(blue.group_on(10000).name, world.boot_group());
    assert!(blue.port_of(&world.group(1)).is_some());
    assert_ne!(blue.group_on(10000).arn, green_wiring.group_on(10000).arn);
}

#[test]
fn a_bootstrap_port_owned_by_another_cluster_is_refused() {
    let world = World::start(Options {
        hosts: 2,
        ..Options::default()
    });
    assert_ok(&world.run(&world.hosts[0], &["run", "--once"]));
    let before = world.wiring();
    // A second cluster configured with the same bootstrap_port on the same NLB.
    let host = &world.hosts[1];
    write_config(
        host,
        &world
            .config_text(host, "10101-10140", "")
            .replace("cluster = \"orders\"", "cluster = \"payments\""),
    );
    let out = world.run(host, &["run", "--once"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let line = error_line(&out);
    assert!(
        line.contains("bootstrap_port 10000")
            && line.contains("cluster orders")
            && line.contains("not to cluster payments"),
        "{line}"
    );
    // Nothing created, nobody joined the other cluster's bootstrap group, file untouched.
    let after = world.wiring();
    assert_eq!(before.listeners, after.listeners);
    assert_eq!(
        before.groups.keys().collect::<Vec<_>>(),
        after.groups.keys().collect::<Vec<_>>()
    );
    assert_eq!(host.read_properties(), SERVER_PROPERTIES);
}

#[test]
fn an_nlb_not_enabled_in_this_az_is_refused_before_anything_is_created() {
    let world = World::start(Options {
        hosts: 1,
        ..Options::default()
    });
    let host = &world.hosts[0];
    let others: Vec<String> = subnets(&world)
        .into_iter()
        .filter(|(az, _)| *az != host.az)
        .map(|(_, s)| s)
        .collect();
    assert_eq!(others.len(), 2);
    let lb = create_nlb(&world, "orders-two-zones", &others);
    write_config(
        host,
        &world
            .config_text(host, "10001-10049", "")
            .replace(&world.lb_arn, &lb),
    );
    let out = world.run(host, &["run", "--once"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let line = error_line(&out);
    assert!(
        line.contains(&host.az_id) && line.contains(&host.az) && line.contains(&lb),
        "{line}"
    );
    let w = block_on(wiring(&world.elbv2, &lb));
    assert!(w.listeners.is_empty(), "{w:?}");
    assert!(
        !w.groups.keys().any(|g| g.starts_with("kp-")),
        "{:?}",
        w.groups.keys()
    );
    assert_eq!(host.read_properties(), SERVER_PROPERTIES);
    // plan reports the same without changing anything either.
    let plan = world.run(host, &["plan"]);
    assert_eq!(plan.status.code(), Some(2), "{}", stderr(&plan));
}

#[test]
fn the_listener_quota_leaves_nothing_behind_and_names_the_quota() {
    let world = World::start(Options {
        hosts: 2,
        ..Options::default()
    });
    assert_ok(&world.run(&world.hosts[0], &["run", "--once"]));
    // Someone else's listeners fill the NLB to AWS's 50.
    let foreign = create_group(&world, "someone-else", &[], "traffic-port");
    let used = world.wiring().listeners.len();
    for port in 0..(50 - used) as u16 {
        create_listener(&world, &world.lb_arn, 20000 + port, &foreign, &[]);
    }
    let host = &world.hosts[1];
    let out = world.run(host, &["run", "--once"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let line = error_line(&out);
    assert!(
        line.contains("50 listeners") && line.contains("not adjustable"),
        "{line}"
    );
    let w = world.wiring();
    assert_eq!(w.listeners.len(), 50);
    assert!(
        !w.groups.contains_key(&world.group(2)),
        "the group made for the claim was removed: {:?}",
        w.groups.keys()
    );
    assert_eq!(host.read_properties(), SERVER_PROPERTIES);
}

#[test]
fn release_0_1_groups_keep_their_ports_and_get_traffic_port_health_checks() {
    let world = World::start(Options {
        hosts: 1,
        ..Options::default()
    });
    let host = &world.hosts[0];
    // What 0.1 left: names without the NLB, health checks on a fixed port.
    let cluster = [("kplink:cluster", "orders")];
    let boot = create_group(
        &world,
        "kp-orders-boot",
        &[cluster[0], ("kplink:role", "bootstrap")],
        "9094",
    );
    let b1 = create_group(
        &world,
        "kp-orders-b1",
        &[
            cluster[0],
            ("kplink:broker-id", "1"),
            ("kplink:role", "broker"),
        ],
        "9094",
    );
    create_listener(&world, &world.lb_arn, 10000, &boot, &cluster);
    create_listener(&world, &world.lb_arn, 10007, &b1, &cluster);
    assert_ok(&world.run(host, &["run", "--once"]));
    let w = world.wiring();
    assert_eq!(w.port_of("kp-orders-b1"), Some(10007), "{w:?}");
    assert_eq!(w.listeners.len(), 2, "no second claim: {w:?}");
    assert!(!w.groups.contains_key(&world.group(1)));
    assert!(
        host.read_properties().contains(&format!(
            "kafka-{}.orders.example.internal:10007\n",
            host.az_id
        )),
        "{}",
        host.read_properties()
    );
    for name in ["kp-orders-b1", "kp-orders-boot"] {
        assert_eq!(health_check_port(&world, name), "traffic-port", "{name}");
    }
}

#[test]
fn new_groups_health_check_the_traffic_port() {
    let world = World::start(Options {
        hosts: 1,
        ..Options::default()
    });
    assert_ok(&world.run(&world.hosts[0], &["run", "--once"]));
    for name in [world.group(1), world.boot_group()] {
        assert_eq!(health_check_port(&world, &name), "traffic-port", "{name}");
    }
}

#[test]
fn a_controller_only_node_is_left_alone() {
    let world = World::start(Options {
        hosts: 1,
        ..Options::default()
    });
    let host = &world.hosts[0];
    let props = controller_only_properties();
    std::fs::write(host.properties(), &props).unwrap();
    for args in [&["run", "--once"][..], &["plan"], &["status"]] {
        let out = world.run(host, args);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", stderr(&out));
        assert!(
            stdout(&out).contains("controller-only node"),
            "{args:?}: {}",
            stdout(&out)
        );
    }
    assert!(world.wiring().listeners.is_empty());
    assert!(!world.wiring().groups.keys().any(|g| g.starts_with("kp-")));
    assert_eq!(host.read_properties(), props);
    let calls = world.calls(Some(&host.access_key));
    assert!(
        calls
            .keys()
            .all(|k| !k.starts_with("elasticloadbalancing:")),
        "{calls:?}"
    );
}

#[test]
fn a_broker_that_accepts_but_does_not_answer_is_an_error_not_stopped() {
    let world = World::start(Options {
        hosts: 1,
        ..Options::default()
    });
    let host = &world.hosts[0];
    let address = silent_listener();
    write_config(
        host,
        &format!(
            "{}\n[restart]\nbootstrap_servers = \"{address}\"\n",
            world.config_text(host, "10001-10049", "")
        ),
    );
    let out = world.run(host, &["run", "--once", "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let line = error_line(&out);
    assert!(
        line.contains(&address) && line.contains("does not answer"),
        "{line}"
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["kafka"]["outcome"], "error", "{report}");
    // The wiring and the file are done; only making Kafka use it is pending.
    assert_eq!(report["properties_written"], true);
    let status = world.run(host, &["status", "--json"]);
    assert_ok(&status);
    let doc: Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(doc["kafka"]["state"], "unreachable", "{doc}");
    assert_eq!(doc["restart_pending"], true, "{doc}");
}

#[test]
fn stale_claims_are_reported() {
    let world = World::start(Options {
        hosts: 2,
        ..Options::default()
    });
    for host in &world.hosts {
        assert_ok(&world.run(host, &["run", "--once"]));
    }
    // Broker 2's instance is terminated: ELB deregisters it from its groups.
    let gone = &world.hosts[1];
    let tg = world.wiring().groups[&world.group(2)].arn.clone();
    block_on(async {
        world
            .elbv2
            .deregister_targets()
            .target_group_arn(&tg)
            .targets(
                TargetDescription::builder()
                    .id(&gone.instance_id)
                    .port(9094)
                    .build(),
            )
            .send()
            .await
            .unwrap();
    });
    let out = world.run(&world.hosts[0], &["status", "--json"]);
    assert_ok(&out);
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["stale_claims"], serde_json::json!([2]), "{doc}");
    let out = world.run(&world.hosts[0], &["status"]);
    assert!(
        stdout(&out).contains("stale claims  brokers 2"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn check_config_warns_about_the_listener_quota_and_a_missing_keystore() {
    let world = World::start(Options {
        hosts: 1,
        ..Options::default()
    });
    let host = &world.hosts[0];
    // 50 claims + bootstrap = 51 > 50; SSL listener without a keystore; a deprecated
    // restart.lock_port (accepted: users' files have it).
    let text = world.config_text(host, "10001-10050", "");
    write_config(host, &format!("{text}\n[restart]\nlock_port = 9999\n"));
    let out = world.run(host, &["check-config"]);
    assert_ok(&out);
    let err = stderr(&out);
    assert!(
        err.contains("51 listeners") && err.contains("50 AWS allows"),
        "{err}"
    );
    assert!(
        err.contains("is SSL") && err.contains("ssl.keystore.location"),
        "{err}"
    );
    assert!(
        err.contains("restart.lock_port = 9999 is deprecated and ignored"),
        "{err}"
    );
    // The default range (49 claims + bootstrap = 50: the lock takes no listener) and a
    // keystore whose certificate covers the zonal names (the pre-flight reads it): no warning.
    write_config(host, &world.config_text(host, "10001-10049", ""));
    let keystore = host.dir.join("ks.p12");
    std::fs::write(
        &keystore,
        crate::tls::pkcs12(&["*.orders.example.internal"], "pw"),
    )
    .unwrap();
    std::fs::write(
        host.properties(),
        format!(
            "{SERVER_PROPERTIES}listener.name.privatelink.ssl.keystore.location={}\n\
             listener.name.privatelink.ssl.keystore.type=PKCS12\n\
             listener.name.privatelink.ssl.keystore.password=pw\n",
            keystore.display()
        ),
    )
    .unwrap();
    let out = world.run(host, &["check-config"]);
    assert_ok(&out);
    assert!(!stderr(&out).contains("warning"), "{}", stderr(&out));
}

/// CreateTargetGroup's idempotent path (AWS returns an existing group of the same name and
/// settings, with no error) is checked as the `DuplicateTargetGroupName` path is: a group under
/// this broker's name, with identical settings but not this cluster's tags, already forwarding
/// for a listener, is refused, not adopted: no listener, no registration, the file unchanged.
#[test]
fn an_identical_group_in_use_without_this_clusters_tags_is_not_adopted() {
    let world = World::start(Options {
        hosts: 1,
        ..Options::default()
    });
    let host = &world.hosts[0];
    let name = world.group(1);
    let theirs = create_group(&world, &name, &[("team", "payments")], "traffic-port");
    create_listener(&world, &world.lb_arn, 20000, &theirs, &[]);
    let before = world.wiring();
    let out = world.run(host, &["run", "--once"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let line = error_line(&out);
    assert!(
        line.contains(&name) && line.contains("without tag kplink:cluster=orders"),
        "{line}"
    );
    let after = world.wiring();
    let in_range: Vec<u16> = after
        .listeners
        .keys()
        .copied()
        .filter(|p| (10001..=10049).contains(p))
        .collect();
    assert!(in_range.is_empty(), "claimed {in_range:?}");
    assert!(
        after.groups[&name].targets.is_empty(),
        "registered into someone else's group"
    );
    assert_eq!(host.read_properties(), SERVER_PROPERTIES);
    assert!(
        after.listeners.len() <= before.listeners.len() + 1,
        "only the bootstrap may exist"
    );
}
