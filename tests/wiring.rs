//! Black-box tests of `kplink-agent run --once` / `plan` against moto and the IMDSv2 test server.

use crate::common;

use std::collections::BTreeSet;
use std::os::unix::fs::MetadataExt;

use common::*;

fn tag(k: &str, v: &str) -> aws_sdk_elasticloadbalancingv2::types::Tag {
    aws_sdk_elasticloadbalancingv2::types::Tag::builder()
        .key(k)
        .value(v)
        .build()
}

fn expected_advertised(host: &Host, port: u16) -> String {
    format!(
        "PRIVATELINK://kafka-{}.orders.example.internal:{port}",
        host.az_id
    )
}

fn assert_wired(world: &World, host: &Host) -> u16 {
    let w = world.wiring();
    let group = world.group(host.broker_id);
    let port = w
        .port_of(&group)
        .unwrap_or_else(|| panic!("no listener for {group}: {w:?}"));
    assert!((10001..=10049).contains(&port));
    let tg = &w.groups[&group];
    assert_eq!(
        tg.targets,
        BTreeSet::from([(host.instance_id.clone(), 9094)]),
        "{group}"
    );
    assert_eq!(tg.port, 9094);
    assert_eq!(
        tg.tags.get("kplink:cluster").map(String::as_str),
        Some("orders")
    );
    assert_eq!(
        tg.tags.get("kplink:broker-id"),
        Some(&host.broker_id.to_string())
    );
    let boot = w.group_on(10000);
    assert_eq!(boot.name, world.boot_group());
    assert!(
        boot.targets.contains(&(host.instance_id.clone(), 9094)),
        "{boot:?}"
    );
    let props = host.read_properties();
    let want = expected_advertised(host, port);
    assert!(
        props.contains(&format!("advertised.listeners=PLAINTEXT://:9092,{want}\n")),
        "{props}"
    );
    assert!(
        props.contains("listeners=PLAINTEXT://:9092,CONTROLLER://:9093,PRIVATELINK://:9094\n"),
        "{props}"
    );
    assert!(props.contains(
        "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,PRIVATELINK:SSL\n"
    ));
    port
}

#[test]
fn three_hosts_in_three_azs_get_wired_and_a_rerun_changes_nothing() {
    let world = World::start(Options::default());
    let azs: BTreeSet<&str> = world.hosts.iter().map(|h| h.az_id.as_str()).collect();
    assert_eq!(azs.len(), 3, "hosts spread over three AZ IDs");

    // Before the first pass, plan shows pending changes and changes nothing.
    let plan = world.run(&world.hosts[0], &["plan"]);
    assert_eq!(plan.status.code(), Some(2), "{}", stderr(&plan));
    assert!(stdout(&plan).contains("claim a port"), "{}", stdout(&plan));
    assert!(world.wiring().listeners.is_empty());
    assert_eq!(world.hosts[0].read_properties(), SERVER_PROPERTIES);

    let state_dir_writable = {
        let dir = std::path::Path::new(kplink_agent::config::DEFAULT_STATE_DIR);
        let probe = dir.join(format!(".wiring-probe-{}", std::process::id()));
        let ok = std::fs::create_dir_all(dir).is_ok() && std::fs::write(&probe, b"").is_ok();
        let _ = std::fs::remove_file(&probe);
        ok
    };
    let mut ports = BTreeSet::new();
    for host in &world.hosts {
        world.reset_calls();
        assert_ok(&world.run(host, &["run", "--once"]));
        // Counted at the server, by this host's access key.
        let calls = world.calls(Some(&host.access_key));
        let total: u64 = calls.values().sum();
        // Read the NLB, check it serves this AZ, (first) create the bootstrap group and
        // listener, create the dedicated group, claim, register twice; set the idle timeout of
        // each listener it created (ModifyListenerAttributes, a write). A joining broker reads
        // no bootstrap targets (it is in no group before its claim) and needs no tag look at a
        // bootstrap group under this cluster's own name.
        // (+1 where the lock note cannot be kept: see the steady state below.)
        let limit = if host.broker_id == 1 { 10 } else { 7 } + u64::from(!state_dir_writable);
        assert!(
            total <= limit,
            "broker {} made {total} calls: {calls:?}",
            host.broker_id
        );
        ports.insert(assert_wired(&world, host));
    }
    assert_eq!(ports.len(), 3);
    // The rest of the file is untouched and a backup of the original sits beside it.
    let backup = world.hosts[0].dir.join("server.properties.kplink.bak");
    assert_eq!(std::fs::read_to_string(backup).unwrap(), SERVER_PROPERTIES);
    assert!(world.hosts[0]
        .read_properties()
        .starts_with("# Kafka broker config managed by config management\n"));

    // Second pass: no AWS writes, no file write (mtime unchanged), plan says nothing to do.
    let mtimes: Vec<i64> = world
        .hosts
        .iter()
        .map(|h| std::fs::metadata(h.properties()).unwrap().mtime_nsec())
        .collect();
    world.reset_calls();
    for host in &world.hosts {
        let out = world.run(host, &["run", "--once", "--json"]);
        let reads = world.calls(Some(&host.access_key));
        // The pass: 3 reads. Checking Kafka afterwards looks for a restart lock of this holder
        // only when the host noted one (src/restart/marker.rs; none here), or when the state
        // directory (the default, /var/lib/kplink) cannot be written: a non-root test run.
        let lookups = u64::from(!state_dir_writable);
        assert_eq!(
            reads
                .get("elasticloadbalancing:DescribeTargetGroups")
                .copied()
                .unwrap_or(0),
            lookups,
            "steady state: {reads:?}"
        );
        assert_eq!(
            reads.values().sum::<u64>(),
            3 + lookups,
            "steady state: {reads:?}"
        );
        assert!(
            reads.keys().all(|op| op.contains(":Describe")),
            "steady state writes: {reads:?}"
        );
        assert_ok(&out);
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(report["changes"].as_array().unwrap().len(), 0, "{report}");
        assert_eq!(report["properties_written"], false);
        let plan = world.run(host, &["plan", "--json"]);
        assert_eq!(plan.status.code(), Some(0), "{}", stdout(&plan));
    }
    let calls = world.calls(None);
    let writes: Vec<_> = calls.keys().filter(|k| !k.contains(":Describe")).collect();
    assert!(writes.is_empty(), "second pass wrote: {calls:?}");
    for (host, before) in world.hosts.iter().zip(mtimes) {
        assert_eq!(
            std::fs::metadata(host.properties()).unwrap().mtime_nsec(),
            before
        );
    }
}

#[test]
fn twenty_hosts_booting_at_once_get_twenty_unique_ports() {
    let world = World::start(Options {
        hosts: 20,
        ..Options::default()
    });
    let children: Vec<_> = world
        .hosts
        .iter()
        .map(|h| world.agent(h).args(["run", "--once"]).spawn().unwrap())
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert_ok(&out);
    }
    let w = world.wiring();
    let ports: BTreeSet<u16> = world
        .hosts
        .iter()
        .map(|h| assert_wired(&world, h))
        .collect();
    assert_eq!(ports.len(), 20);
    assert_eq!(
        w.listeners.len(),
        21,
        "20 claims + bootstrap: {:?}",
        w.listeners
    );
    assert_eq!(w.group_on(10000).targets.len(), 20);
    // Exactly one bootstrap group and no orphaned groups.
    assert_eq!(w.groups.len(), 21, "{:?}", w.groups.keys());
}

#[test]
fn replacement_instance_keeps_the_port_and_drops_the_old_instance() {
    let mut world = World::start(Options::default());
    for host in &world.hosts {
        assert_ok(&world.run(host, &["run", "--once"]));
    }
    let old = &world.hosts[1];
    let old_instance = old.instance_id.clone();
    let old_port = world.wiring().port_of(&world.group(2)).unwrap();
    let idx = world.add_host(2);
    let new = &world.hosts[idx];
    assert_ne!(new.instance_id, old_instance);
    assert_ok(&world.run(new, &["run", "--once"]));
    let w = world.wiring();
    assert_eq!(w.port_of(&world.group(2)), Some(old_port));
    assert_eq!(
        w.groups[&world.group(2)].targets,
        BTreeSet::from([(new.instance_id.clone(), 9094)])
    );
    let boot = &w.group_on(10000).targets;
    assert!(!boot.iter().any(|(id, _)| *id == old_instance), "{boot:?}");
    assert!(boot.contains(&(new.instance_id.clone(), 9094)));
    assert_eq!(boot.len(), 3);
    assert!(new.read_properties().contains(&format!(":{old_port}\n")));
}

#[test]
fn tags_not_in_metadata_fall_back_to_ec2_describe_tags() {
    let world = World::start(Options {
        hosts: 1,
        no_metadata_tags: vec![1],
        ..Options::default()
    });
    let host = &world.hosts[0];
    assert_ok(&world.run(host, &["run", "--once"]));
    assert_wired(&world, host);
    assert_eq!(world.calls(None).get("ec2:DescribeTags"), Some(&1));
}

#[test]
fn crashed_pass_leftovers_are_adopted_not_duplicated() {
    let world = World::start(Options::default());
    let host = &world.hosts[0];
    // A pass killed right after CreateTargetGroup leaves the group without a listener.
    let vpc = {
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&world.world_file).unwrap()).unwrap();
        json["vpc_id"].as_str().unwrap().to_string()
    };
    block_on(async {
        world
            .elbv2
            .create_target_group()
            .name(world.group(1))
            .protocol(aws_sdk_elasticloadbalancingv2::types::ProtocolEnum::Tcp)
            .port(9094)
            .vpc_id(&vpc)
            .target_type(aws_sdk_elasticloadbalancingv2::types::TargetTypeEnum::Instance)
            .tags(tag("kplink:cluster", "orders"))
            .tags(tag("kplink:broker-id", "1"))
            .tags(tag("kplink:role", "broker"))
            .send()
            .await
            .unwrap();
    });
    assert_ok(&world.run(host, &["run", "--once"]));
    let w = world.wiring();
    assert_eq!(w.groups.len(), 2, "{:?}", w.groups.keys());
    assert!(w.port_of(&world.group(1)).is_some());
    // A deleted listener (drift) is restored, keeping the file consistent.
    let port = w.port_of(&world.group(1)).unwrap();
    delete_listener(&world, port);
    assert_ok(&world.run(host, &["run", "--once"]));
    let port = assert_wired(&world, host);
    assert!(host.read_properties().contains(&format!(":{port}\n")));
}

/// `status` shows the cluster as clients reach it: per broker its AZ ID, the name it advertises,
/// its NLB port and target health, as the NLB and EC2 say (not read from any broker's file).
#[test]
fn status_shows_every_brokers_client_endpoint() {
    let world = World::start(Options::default());
    for host in &world.hosts {
        assert_ok(&world.run(host, &["run", "--once"]));
    }
    let w = world.wiring();
    let out = world.run(&world.hosts[0], &["status", "--json"]);
    assert_ok(&out);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let clients = &doc["clients"];
    assert_eq!(clients["bootstrap_port"], 10000);
    let brokers = clients["brokers"].as_array().unwrap();
    assert_eq!(brokers.len(), world.hosts.len(), "{clients}");
    for (host, b) in world.hosts.iter().zip(brokers) {
        let port = w.port_of(&world.group(host.broker_id)).unwrap();
        assert_eq!(b["broker_id"], host.broker_id);
        assert_eq!(b["az_id"], host.az_id.as_str());
        assert_eq!(b["port"], port);
        assert_eq!(b["instance_id"], host.instance_id.as_str());
        assert_eq!(b["health"], "healthy");
        // What the broker itself advertises, byte for byte.
        let advertised = b["advertised"].as_str().unwrap();
        assert!(
            host.read_properties()
                .contains(&format!("PRIVATELINK://{advertised}\n")),
            "{advertised} not in {}",
            host.read_properties()
        );
    }
    let text = stdout(&world.run(&world.hosts[0], &["status"]));
    assert!(
        text.contains("clients       bootstrap port 10000"),
        "{text}"
    );
    let first = brokers[0]["advertised"].as_str().unwrap();
    assert!(text.contains(first), "{text}");
}

/// Each port → `tcp.idle_timeout.seconds` of the world's NLB's listeners, as AWS reports them.
fn idle_timeouts(world: &World) -> std::collections::BTreeMap<u16, String> {
    block_on(async {
        let listeners = world
            .elbv2
            .describe_listeners()
            .load_balancer_arn(&world.lb_arn)
            .send()
            .await
            .unwrap();
        let mut out = std::collections::BTreeMap::new();
        for l in listeners.listeners() {
            let attrs = world
                .elbv2
                .describe_listener_attributes()
                .listener_arn(l.listener_arn().unwrap())
                .send()
                .await
                .unwrap();
            let idle = attrs
                .attributes()
                .iter()
                .find(|a| a.key() == Some("tcp.idle_timeout.seconds"))
                .and_then(|a| a.value())
                .unwrap_or("?")
                .to_string();
            out.insert(l.port().unwrap() as u16, idle);
        }
        out
    })
}

/// An NLB drops TCP flows idle for 350 s (its default) without telling either end, before
/// Kafka's own 10-minute `connections.max.idle.ms`: the agent gives the listeners it creates an
/// idle timeout a minute above the broker's, read from `server.properties`; `"off"` leaves
/// AWS's default.
#[test]
fn listeners_get_an_idle_timeout_above_kafkas() {
    let world = World::start(Options {
        hosts: 2,
        ..Options::default()
    });
    let (a, b) = (&world.hosts[0], &world.hosts[1]);
    let text = std::fs::read_to_string(a.properties()).unwrap();
    std::fs::write(
        a.properties(),
        format!("{text}connections.max.idle.ms=900000\n"),
    )
    .unwrap();
    assert_ok(&world.run(a, &["run", "--once"]));
    let port_a = assert_wired(&world, a);
    let idle = idle_timeouts(&world);
    assert_eq!(
        idle.get(&10000).map(String::as_str),
        Some("960"),
        "{idle:?}"
    );
    assert_eq!(
        idle.get(&port_a).map(String::as_str),
        Some("960"),
        "{idle:?}"
    );

    // "off": the new claim keeps AWS's 350 s.
    let config = std::fs::read_to_string(b.config()).unwrap();
    std::fs::write(
        b.config(),
        config.replace("[nlb]\n", "[nlb]\nidle_timeout = \"off\"\n"),
    )
    .unwrap();
    assert_ok(&world.run(b, &["run", "--once"]));
    let port_b = assert_wired(&world, b);
    let idle = idle_timeouts(&world);
    assert_eq!(
        idle.get(&port_b).map(String::as_str),
        Some("350"),
        "{idle:?}"
    );
}
