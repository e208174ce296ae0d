//! Reliability: convergence under injected AWS faults, and after `kill -9` at many points of a
//! first convergence. Black-box, against moto (through our launcher) and the IMDSv2 test server.
//!
//! The two tests take turns (a lock) so that one's ten concurrent agents do not skew the other's
//! kill timing on a small CI machine.

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::*;

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs `run --once --json` on every host at the same moment; returns the outputs in host order.
fn boot_all_at_once(world: &World) -> Vec<Output> {
    boot_at_once(world, &world.hosts.iter().collect::<Vec<_>>())
}

/// Server-side calls per host (all operations).
fn calls_per_host(world: &World) -> Vec<u64> {
    world
        .hosts
        .iter()
        .map(|h| world.calls(Some(&h.access_key)).values().sum())
        .collect()
}

fn mean(v: &[u64]) -> f64 {
    v.iter().sum::<u64>() as f64 / v.len() as f64
}

/// Every broker forwarded from exactly one listener, no kp-* group without a listener, the
/// bootstrap group holds every host, and each `server.properties` advertises its own port.
fn assert_converged(world: &World) {
    let w = world.wiring();
    let forwarded: BTreeSet<&String> = w.listeners.values().collect();
    let orphans: Vec<&String> = w
        .groups
        .keys()
        .filter(|g| g.starts_with("kp-") && !forwarded.contains(g))
        .collect();
    assert!(orphans.is_empty(), "orphaned target groups: {orphans:?}");
    for host in &world.hosts {
        let group = world.group(host.broker_id);
        let ports: Vec<u16> = w
            .listeners
            .iter()
            .filter(|(_, g)| **g == group)
            .map(|(p, _)| *p)
            .collect();
        assert_eq!(ports.len(), 1, "{group} forwarded from {ports:?}");
        assert_eq!(
            w.groups[&group].targets,
            BTreeSet::from([(host.instance_id.clone(), 9094)]),
            "{group}"
        );
        assert_eq!(
            host.read_properties(),
            expected_properties(&host.az_id, ports[0]),
            "{}",
            host.name
        );
    }
    assert_eq!(
        w.listeners.len(),
        world.hosts.len() + 1,
        "claims + bootstrap: {:?}",
        w.listeners
    );
    let boot = w.group_on(10000);
    assert_eq!(boot.name, world.boot_group());
    let want: BTreeSet<(String, u16)> = world
        .hosts
        .iter()
        .map(|h| (h.instance_id.clone(), 9094))
        .collect();
    assert_eq!(boot.targets, want, "bootstrap targets");
}

#[test]
fn ten_hosts_booting_at_once_converge_under_ten_percent_faults() {
    let _serial = serial();
    let started = Instant::now();

    // Baseline without faults.
    let clean = World::start(Options {
        hosts: 10,
        ..Options::default()
    });
    for out in boot_all_at_once(&clean) {
        assert_ok(&out);
    }
    assert_converged(&clean);
    let clean_calls = calls_per_host(&clean);
    drop(clean);

    // 10 % of AWS calls fail: throttling, 500, 503, dropped connections, 20 ms latency.
    let world = World::start(Options {
        hosts: 10,
        ..Options::default()
    });
    world.set_faults(
        r#"{"rate": 0.1, "kinds": ["throttle", "500", "503", "drop", "latency"],
            "latency_ms": 20, "seed": 20240101}"#,
    );
    let mut outputs = boot_all_at_once(&world);
    // A pass rides through throttled, 5xx and lost answers until its deadline (see
    // `src/backoff.rs`), so none should fail; one that did would be rerun, as systemd restarts it.
    let mut reruns = 0;
    let mut failures = Vec::new();
    for (host, out) in world.hosts.iter().zip(outputs.iter_mut()) {
        let mut runs = 1;
        while !out.status.success() && runs < 3 {
            failures.push(format!(
                "{}: {}",
                host.name,
                last_error_line(out).unwrap_or_else(|| stderr(out))
            ));
            *out = world.run(host, &["run", "--once", "--json"]);
            runs += 1;
            reruns += 1;
        }
        assert_ok(out);
    }
    let injected = world.faults_injected();
    world.clear_faults();
    let faulted_calls = calls_per_host(&world);

    eprintln!(
        "calls per host without faults: {clean_calls:?} (mean {:.1}); with 10 % faults: \
         {faulted_calls:?} (mean {:.1}); faults injected: {injected:?}; reruns: {reruns} \
         {failures:?}; {:.1} s",
        mean(&clean_calls),
        mean(&faulted_calls),
        started.elapsed().as_secs_f64()
    );
    assert!(
        injected.values().sum::<u64>() >= 3,
        "too few faults injected to mean anything: {injected:?}"
    );
    assert_eq!(
        reruns, 0,
        "first runs failed under transient faults: {failures:?}"
    );
    assert_converged(&world);
    assert!(
        mean(&faulted_calls) <= 3.0 * mean(&clean_calls),
        "retry storm: {faulted_calls:?} vs {clean_calls:?} without faults"
    );
    for out in &outputs {
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert!(report["port"].as_u64().is_some(), "{report}");
    }
}

// ---------------------------------------------------------------------------------------------
// kill -9 at many points of a first convergence
// ---------------------------------------------------------------------------------------------

/// One simulated first convergence: its own cluster on the shared NLB (own bootstrap port and
/// port range), so every point starts from an empty cluster, bootstrap creation included.
struct Point {
    cluster: String,
    lb_arn: String,
    bootstrap: u16,
    dir: PathBuf,
}

impl Point {
    fn new(world: &World, k: usize) -> Point {
        let cluster = format!("c{k}");
        let bootstrap = 12000 + 20 * k as u16;
        let dir = world.dir.path().join(format!("point-{k}"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("server.properties"), SERVER_PROPERTIES).unwrap();
        let config = format!(
            "cluster = \"{cluster}\"\n\n[broker]\nserver_properties = \"{}\"\n\n[listener]\n\
             advertised_host = \"kafka-{{az_id}}.orders.example.internal\"\n\n[nlb]\n\
             load_balancer_arn = \"{}\"\nport_range = \"{}-{}\"\nbootstrap_port = {bootstrap}\n",
            dir.join("server.properties").display(),
            world.lb_arn,
            bootstrap + 1,
            bootstrap + 9,
        );
        std::fs::write(dir.join("agent.toml"), config).unwrap();
        Point {
            cluster,
            lb_arn: world.lb_arn.clone(),
            bootstrap,
            dir,
        }
    }

    fn config(&self) -> PathBuf {
        self.dir.join("agent.toml")
    }

    fn properties(&self) -> PathBuf {
        self.dir.join("server.properties")
    }

    fn group(&self, broker_id: i64) -> String {
        let id = i32::try_from(broker_id).unwrap();
        kplink_agent::registry::dedicated_group_name(&self.cluster, &self.lb_arn, id)
    }

    fn boot_group(&self) -> String {
        kplink_agent::registry::bootstrap_group_name(&self.cluster, &self.lb_arn)
    }
}

/// When to kill the agent.
#[derive(Debug, Clone, Copy)]
enum KillAt {
    /// This long after spawning.
    Time(Duration),
    /// As soon as the server has seen this many calls (that call is still in flight).
    CallSent(u64),
    /// This long after the server has seen this many calls (its answer is back).
    AfterCall(u64, Duration),
}

fn run_until_killed(world: &World, host: &Host, config: &Path, at: KillAt) -> (u64, bool) {
    world.reset_calls();
    let mut child = world
        .agent_with_config(host, config)
        .args(["run", "--once"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let deadline = started + Duration::from_secs(20);
    let wait_for_calls = |n: u64| {
        while world.calls_total_fast(&host.access_key) < n && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
        }
    };
    match at {
        KillAt::Time(d) => std::thread::sleep(d),
        KillAt::CallSent(n) => wait_for_calls(n),
        KillAt::AfterCall(n, d) => {
            wait_for_calls(n);
            std::thread::sleep(d);
        }
    }
    let finished_first = child.try_wait().unwrap().is_some();
    let _ = child.kill(); // SIGKILL
    let _ = child.wait();
    let at_kill = world.calls_total_fast(&host.access_key);
    (at_kill, finished_first)
}

#[test]
fn kill_9_at_any_point_of_a_first_convergence_is_repaired_by_the_next_run() {
    let _serial = serial();
    let started = Instant::now();
    let world = World::start(Options {
        hosts: 1,
        ..Options::default()
    });
    let host = &world.hosts[0];
    // Every AWS call takes >= 100 ms, so the pass lasts about a second.
    const LATENCY: &str = r#"{"rate": 1.0, "kinds": ["latency"], "latency_ms": 100, "services": ["elasticloadbalancing", "ec2"]}"#;

    // Control: the same first convergence, uncrashed.
    let control = Point::new(&world, 0);
    world.set_faults(LATENCY);
    world.reset_calls();
    let t0 = Instant::now();
    let out = world
        .agent_with_config(host, &control.config())
        .args(["run", "--once", "--json"])
        .output()
        .unwrap();
    let pass = t0.elapsed();
    assert_ok(&out);
    let calls = world.calls(Some(&host.access_key));
    let pass_calls: u64 = calls.values().sum();
    let writes = calls.keys().filter(|k| !k.contains(":Describe")).count();
    assert!(writes >= 3, "a first convergence writes: {calls:?}");
    let w = world.wiring();
    let control_port = w.port_of(&control.group(host.broker_id)).unwrap();
    let control_text = std::fs::read_to_string(control.properties()).unwrap();
    assert_eq!(control_text, expected_properties(&host.az_id, control_port));
    eprintln!("control pass: {pass:?}, {pass_calls} calls: {calls:?}");

    // Kill points: evenly spaced in time over the whole pass, plus just after each call was
    // sent (in flight; the server still completes it) and just after each call's answer.
    let timed = 12u32;
    let step = (pass + Duration::from_millis(100)) / timed;
    let mut points: Vec<KillAt> = (0..timed).map(|k| KillAt::Time(step * k)).collect();
    for n in 1..=pass_calls {
        points.push(KillAt::CallSent(n));
        points.push(KillAt::AfterCall(n, Duration::from_millis(130)));
    }
    assert!(points.len() >= 20);

    let mut at_kill = BTreeMap::new();
    for (i, at) in points.iter().enumerate() {
        let k = i + 1;
        let point = Point::new(&world, k);
        world.set_faults(LATENCY);
        let (n, finished) = run_until_killed(&world, host, &point.config(), *at);
        at_kill.insert(k, (n, *at, finished));
        // Let calls still in flight at the dead agent's server land, then repair without faults.
        std::thread::sleep(Duration::from_millis(250));
        world.clear_faults();
        let out = world
            .agent_with_config(host, &point.config())
            .args(["run", "--once"])
            .output()
            .unwrap();
        let ctx = format!("point {k} (kill at {at:?}, after {n} calls)");
        assert!(
            out.status.success(),
            "{ctx}: rerun failed: {}",
            stderr(&out)
        );

        let w = world.wiring();
        let group = point.group(host.broker_id);
        let ports: Vec<u16> = w
            .listeners
            .iter()
            .filter(|(_, g)| **g == group)
            .map(|(p, _)| *p)
            .collect();
        assert_eq!(ports.len(), 1, "{ctx}: {group} forwarded from {ports:?}");
        assert!(
            (point.bootstrap + 1..=point.bootstrap + 9).contains(&ports[0]),
            "{ctx}: {ports:?}"
        );
        assert_eq!(
            w.listeners.get(&point.bootstrap),
            Some(&point.boot_group()),
            "{ctx}"
        );
        let me = (host.instance_id.clone(), 9094);
        assert_eq!(
            w.groups[&group].targets,
            BTreeSet::from([me.clone()]),
            "{ctx}"
        );
        assert!(w.groups[&point.boot_group()].targets.contains(&me), "{ctx}");
        let forwarded: BTreeSet<&String> = w.listeners.values().collect();
        let orphans: Vec<&String> = w
            .groups
            .keys()
            .filter(|g| g.starts_with("kp-") && !forwarded.contains(g))
            .collect();
        assert!(orphans.is_empty(), "{ctx}: orphaned groups {orphans:?}");
        assert_eq!(
            std::fs::read_to_string(point.properties()).unwrap(),
            expected_properties(&host.az_id, ports[0]),
            "{ctx}"
        );
        let backup = point.dir.join("server.properties.kplink.bak");
        if backup.exists() {
            assert_eq!(
                std::fs::read_to_string(&backup).unwrap(),
                SERVER_PROPERTIES,
                "{ctx}: backup"
            );
        }
        let stray: Vec<String> = std::fs::read_dir(&point.dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| {
                ![
                    "agent.toml",
                    "server.properties",
                    "server.properties.kplink.bak",
                ]
                .contains(&n.as_str())
            })
            .collect();
        assert!(stray.is_empty(), "{ctx}: files left behind: {stray:?}");
        // Every point is a cluster on the one NLB: free its listeners so the next points stay
        // within AWS's 50 listeners per NLB (the test launcher enforces the quota).
        for port in point.bootstrap..=point.bootstrap + 9 {
            if w.listeners.contains_key(&port) {
                delete_listener(&world, port);
            }
        }
        for name in [group, point.boot_group()] {
            let arn = w.groups[&name].arn.clone();
            block_on(async {
                world
                    .elbv2
                    .delete_target_group()
                    .target_group_arn(arn)
                    .send()
                    .await
                    .unwrap()
            });
        }
    }
    world.clear_faults();

    let distinct: BTreeSet<u64> = at_kill.values().map(|(n, _, _)| *n).collect();
    eprintln!(
        "{} kill points in {:.1} s; calls at kill: {:?}",
        at_kill.len(),
        started.elapsed().as_secs_f64(),
        at_kill
            .iter()
            .map(|(k, (n, _, fin))| format!("{k}:{n}{}", if *fin { "(done)" } else { "" }))
            .collect::<Vec<_>>()
    );
    assert!(
        distinct.len() >= 8,
        "kills did not spread over the pass: {distinct:?}"
    );
    // A kill landed while each call of the pass was in flight, the writes included.
    let want: BTreeSet<u64> = (0..=pass_calls).collect();
    assert!(
        want.is_subset(&distinct),
        "no kill after call(s) {:?}; seen {distinct:?}",
        want.difference(&distinct).collect::<Vec<_>>()
    );
}
