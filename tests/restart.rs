//! Making Kafka use the new listener: against a real Kafka-protocol broker (tansu), and the
//! cluster restart lock on the NLB (moto) with several agents at once.
//!
//! tansu always reports node id 111 and serves one broker per process, so the end-to-end tests use
//! one broker with id 111; the multi-agent lock tests drive the library's `Restarter` with a
//! scripted cluster view and a real restart command, against the real lock on moto.

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::*;
use kplink_agent::config::Config;
use kplink_agent::kafka::process::ProcessCheck;
use kplink_agent::kafka::{
    BrokerNode, ClusterSnapshot, KafkaCluster, KafkaError, Liveness, PartitionState, RdKafka,
    TopicState,
};
use kplink_agent::nlb::{CallCounter, Elbv2, ExactGroupSpec, GroupCreate, LoadBalancer};
use kplink_agent::node::NodeRole;
use kplink_agent::registry::lock_group_name;
use kplink_agent::restart::{
    holder_ports, CommandService, Outcome, RestartError, Restarter, TAG_LOCK_EXPIRES,
    TAG_LOCK_HOLDER, TAG_LOCK_PHASE,
};

const TANSU_ID: i64 = 111;

fn tansu_py() -> PathBuf {
    support("tansu.py")
}

struct Tansu {
    pidfile: PathBuf,
    port: u16,
}

impl Tansu {
    /// Started only if real Kafka would start on `properties` (tansu.py checks it).
    fn start(dir: &Path, properties: &Path, advertised: &str, port: u16) -> Tansu {
        let pidfile = dir.join("tansu.pid");
        let out = Command::new("python3")
            .arg(tansu_py())
            .args([
                "start",
                "--port",
                &port.to_string(),
                "--advertised",
                advertised,
                "--check-with",
                env!("CARGO_BIN_EXE_kplink-agent"),
                "--properties",
            ])
            .arg(properties)
            .arg("--pidfile")
            .arg(&pidfile)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "tansu start: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tansu { pidfile, port }
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        let _ = Command::new("python3")
            .arg(tansu_py())
            .args(["stop", "--pidfile"])
            .arg(&self.pidfile)
            .output();
    }
}

/// Restart windows logged by `tansu.py restart-from-properties`: (start ms, end ms).
fn windows(log: &Path) -> Vec<(u64, u64)> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let mut out = Vec::new();
    let mut start = None;
    for line in text.lines() {
        match line.split_once(' ') {
            Some(("start", t)) => start = t.trim().parse().ok(),
            Some(("end", t)) => {
                if let (Some(s), Ok(e)) = (start.take(), t.trim().parse()) {
                    out.push((s, e));
                }
            }
            _ => {}
        }
    }
    out
}

/// Stands in for the NLB: forwards connections on 127.0.0.1:`from` to 127.0.0.1:`to`, so the
/// advertised endpoint (`127.0.0.1:<claimed port>`) really reaches the broker.
fn forward(from: u16, to: u16) {
    let listener = std::net::TcpListener::bind(("127.0.0.1", from)).unwrap();
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let Ok(server) = std::net::TcpStream::connect(("127.0.0.1", to)) else {
                continue;
            };
            for (mut a, mut b) in [
                (client.try_clone().unwrap(), server.try_clone().unwrap()),
                (server, client),
            ] {
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut a, &mut b);
                    let _ = b.shutdown(std::net::Shutdown::Write);
                });
            }
        }
    });
}

/// A claim port known in advance (a one-port range) with the "NLB" forwarding it to tansu.
fn claim_port_forwarded_to(tansu_port: u16) -> u16 {
    let claim = free_port();
    forward(claim, tansu_port);
    claim
}

fn restart_config(
    world: &World,
    host: &Host,
    port: u16,
    log: &Path,
    pidfile: &Path,
    extra: &str,
) -> String {
    let command = [
        "python3".to_string(),
        tansu_py().display().to_string(),
        "restart-from-properties".into(),
        "--check-with".into(),
        env!("CARGO_BIN_EXE_kplink-agent").into(),
        "--properties".into(),
        host.properties().display().to_string(),
        "--listener-name".into(),
        "PRIVATELINK".into(),
        "--port".into(),
        port.to_string(),
        "--pidfile".into(),
        pidfile.display().to_string(),
        "--log".into(),
        log.display().to_string(),
    ];
    let command = command
        .iter()
        .map(|a| format!("{a:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    // The advertised host must resolve here: the admin client dials the advertised endpoint.
    let claim = claim_port_forwarded_to(port);
    let base = world
        .config_text(host, &format!("{claim}-{claim}"), "")
        .replace("kafka-{az_id}.orders.example.internal", "127.0.0.1");
    // Each host's own state directory: the agent's local note of the restart lock lives there.
    let state = host.dir.join("state");
    format!(
        "{base}\n[daemon]\nstate_dir = {:?}\n[restart]\nmode = \"rolling\"\ncommand = [{command}]\nbootstrap_servers = \"127.0.0.1:{port}\"\n\
         lease = \"30s\"\nhealthy_checks = 2\ncheck_interval = \"200ms\"\ntimeout = \"20s\"\n{extra}",
        state.display().to_string()
    )
}

fn tansu_world() -> World {
    let world = World::start(Options {
        hosts: 1,
        ..Options::default()
    });
    world.imds_patch(
        &world.hosts[0],
        &format!("{{\"tags\": {{\"kafka:broker-id\": \"{TANSU_ID}\"}}}}"),
    );
    world
}

/// Configures the host for a tansu broker on a fresh port (pidfile `tansu.pid` beside the
/// config, as [`Tansu::start`] uses); returns (port, restart log).
fn configure_tansu_host(world: &World, host: &Host) -> (u16, PathBuf) {
    let port = free_port();
    let log = host.dir.join("restarts.log");
    let pidfile = host.dir.join("tansu.pid");
    std::fs::write(
        host.config(),
        restart_config(world, host, port, &log, &pidfile, ""),
    )
    .unwrap();
    (port, log)
}

fn advertised(port: u16) -> Option<String> {
    block_on(async {
        let k = RdKafka::new(&format!("127.0.0.1:{port}"), &BTreeMap::new()).unwrap();
        k.advertised_listeners(TANSU_ID as i32).await.unwrap()
    })
}

#[test]
fn running_broker_is_restarted_once_and_advertises_the_new_endpoint() {
    let world = tansu_world();
    let host = &world.hosts[0];
    let (port, log) = configure_tansu_host(&world, host);
    let tansu = Tansu::start(
        &host.dir,
        &host.properties(),
        &format!("127.0.0.1:{port}"),
        port,
    );

    let out = world.run(host, &["run", "--once", "--json"]);
    assert_ok(&out);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["kafka"]["outcome"], "restarted", "{report}");
    let cycle = windows(&log);
    eprintln!(
        "restart cycle (lock taken to lock released): {} ms; restart command: {} ms",
        report["kafka"]["took_ms"],
        cycle.first().map_or(0, |(s, e)| e - s)
    );
    let want = format!("127.0.0.1:{}", report["port"]);
    // Observed through Kafka itself: the broker's metadata endpoint.
    assert_eq!(advertised(tansu.port).as_deref(), Some(want.as_str()));
    assert_eq!(windows(&log).len(), 1);
    // The lock is released (and was never a listener).
    let wiring = world.wiring();
    assert!(!wiring.groups.contains_key(&lock_group_name("orders")));
    assert_eq!(wiring.listeners.len(), 2, "bootstrap + claim: {wiring:?}");

    // A second pass: nothing to do, no restart.
    let out = world.run(host, &["run", "--once", "--json"]);
    assert_ok(&out);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["kafka"]["outcome"], "already_effective", "{report}");
    assert_eq!(windows(&log).len(), 1);

    let out = world.run(host, &["status", "--json"]);
    assert_ok(&out);
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["kafka_running"], true, "{status}");
    assert_eq!(status["advertised_in_broker"], want.as_str());
    assert_eq!(status["restart_pending"], false);
    assert!(status["lock_holder"].is_null());
    assert!(status["lock_arn"].is_null());
    assert_eq!(status["lock_group"], lock_group_name("orders").as_str());
    let out = world.run(host, &["status"]);
    assert!(
        stdout(&out).contains(&format!(
            "restart lock  free (target group {})",
            lock_group_name("orders")
        )),
        "{}",
        stdout(&out)
    );
}

#[test]
fn agent_before_first_kafka_start_never_restarts() {
    let world = tansu_world();
    let host = &world.hosts[0];
    let (port, log) = configure_tansu_host(&world, host);
    let out = world.run(host, &["run", "--once", "--json"]);
    assert_ok(&out);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["kafka"]["outcome"], "not_running", "{report}");
    // Kafka starts with the file as written.
    let wanted = format!("127.0.0.1:{}", report["port"]);
    let tansu = Tansu::start(&host.dir, &host.properties(), &wanted, port);
    let out = world.run(host, &["run", "--once", "--json"]);
    assert_ok(&out);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["kafka"]["outcome"], "already_effective", "{report}");
    assert!(windows(&log).is_empty());
    drop(tansu);
}

#[test]
fn unhealthy_cluster_is_never_restarted() {
    let world = World::start(Options {
        hosts: 2,
        ..Options::default()
    });
    let host = &world.hosts[0];
    world.imds_patch(
        host,
        &format!("{{\"tags\": {{\"kafka:broker-id\": \"{TANSU_ID}\"}}}}"),
    );
    // Broker 2 holds a claim on the NLB but is not registered in Kafka: a gate blocks.
    let other = &world.hosts[1];
    let x = free_port().min(65000);
    std::fs::write(
        other.config(),
        world.config_text(other, &format!("{x}-{x}"), ""),
    )
    .unwrap();
    assert_ok(&world.run(other, &["run", "--once"]));
    let port = free_port();
    let tansu = Tansu::start(
        &host.dir,
        &host.properties(),
        &format!("127.0.0.1:{port}"),
        port,
    );
    let log = host.dir.join("restarts.log");
    let config = restart_config(&world, host, port, &log, &tansu.pidfile, "")
        .replace("timeout = \"20s\"", "timeout = \"3s\"");
    // This broker's range also covers broker 2's claim, so the NLB knows both brokers.
    let start = config.find("port_range = \"").unwrap() + "port_range = \"".len();
    let end = start + config[start..].find('"').unwrap();
    let config = format!("{}{x}-{}{}", &config[..start], x + 50, &config[end..]);
    std::fs::write(host.config(), config).unwrap();
    let out = world.run(host, &["run", "--once"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("broker 2 is not registered"),
        "{}",
        stderr(&out)
    );
    assert!(windows(&log).is_empty(), "restarted an unhealthy cluster");
    assert!(
        !world
            .wiring()
            .groups
            .contains_key(&lock_group_name("orders")),
        "lock released after giving up"
    );
    assert_eq!(
        advertised(port).as_deref(),
        Some(format!("127.0.0.1:{port}").as_str())
    );
}

// ---------------------------------------------------------------------------------------------
// Several agents and the lock, with a scripted cluster view.

/// A healthy cluster of `ids`; broker `me` advertises `desired` once its restart ran.
struct ScriptedKafka {
    ids: Vec<i32>,
    me: i32,
    controller: i32,
    restarted: Arc<AtomicBool>,
    desired: String,
    /// The managed listener's endpoint before the change, if the broker has that listener.
    old: Option<String>,
    /// Whether a dynamic advertised.listeners update takes effect.
    dynamic_works: bool,
    /// The per-broker dynamic override, as a ZooKeeper-mode cluster would store it.
    dynamic: Arc<Mutex<Option<String>>>,
    /// Admin calls in order: `alter <value>`, `clear <had override>`.
    events: Arc<Mutex<Vec<String>>>,
    /// `broker.rack` the running broker reports (`None`: it reports none).
    rack: Option<String>,
}

impl KafkaCluster for ScriptedKafka {
    async fn probe(&self) -> Liveness {
        Liveness::Answering
    }
    async fn snapshot(&self) -> Result<ClusterSnapshot, KafkaError> {
        Ok(ClusterSnapshot {
            brokers: self
                .ids
                .iter()
                .map(|id| BrokerNode {
                    id: *id,
                    host: "h".into(),
                    port: 9092,
                })
                .collect(),
            controller_id: Some(self.controller),
            topics: vec![TopicState {
                name: "orders".into(),
                internal: false,
                min_insync_replicas: Some(2),
                partitions: vec![PartitionState {
                    topic: "orders".into(),
                    partition: 0,
                    leader: self.ids[0],
                    replicas: self.ids.clone(),
                    isr: self.ids.clone(),
                }],
            }],
            default_min_insync_replicas: 1,
            unreadable_configs: vec![],
        })
    }
    async fn advertised_listeners(&self, _broker_id: i32) -> Result<Option<String>, KafkaError> {
        if let Some(v) = self.dynamic.lock().unwrap().clone() {
            if self.dynamic_works {
                return Ok(Some(v));
            }
        }
        Ok(Some(if self.restarted.load(Ordering::SeqCst) {
            format!("INTERNAL://h:9092,PRIVATELINK://{}", self.desired)
        } else if let Some(old) = &self.old {
            format!("INTERNAL://h:9092,PRIVATELINK://{old}")
        } else {
            "INTERNAL://h:9092".to_string()
        }))
    }
    async fn set_advertised_listeners(&self, _: i32, value: &str) -> Result<(), KafkaError> {
        self.events.lock().unwrap().push(format!("alter {value}"));
        *self.dynamic.lock().unwrap() = Some(value.to_string());
        Ok(())
    }
    async fn broker_rack(&self, _: i32) -> Result<Option<String>, KafkaError> {
        Ok(self.rack.clone())
    }
    async fn clear_dynamic_advertised_listeners(&self, _: i32) -> Result<bool, KafkaError> {
        let had = self.dynamic.lock().unwrap().take().is_some();
        self.events.lock().unwrap().push(format!("clear {had}"));
        Ok(had)
    }
}

/// Logs its window and flips the scripted broker to the new endpoint.
struct LoggingService {
    inner: CommandService,
    restarted: Arc<AtomicBool>,
}

impl kplink_agent::restart::ServiceManager for LoggingService {
    async fn restart(&self) -> Result<(), RestartError> {
        self.inner.restart().await?;
        self.restarted.store(true, Ordering::SeqCst);
        Ok(())
    }
}

fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis()
}

fn lock_config(world: &World, lease: &str) -> Config {
    let text = format!(
        "{}\n[restart]\nlease = \"{lease}\"\nhealthy_checks = 2\ncheck_interval = \"100ms\"\ntimeout = \"60s\"\n",
        world.config_text(&world.hosts[0], "10001-10049", "")
    );
    Config::parse(&text, Path::new("/test/agent.toml")).unwrap()
}

fn restart_script(log: &Path, id: i32, secs: f32) -> Vec<String> {
    vec![
        "sh".into(),
        "-c".into(),
        format!(
            "echo \"start {id} $(date +%s%3N)\" >> {0}; sleep {secs}; echo \"end {id} $(date +%s%3N)\" >> {0}",
            log.display()
        ),
    ]
}

/// (id, start, end) windows from the shell restart script.
fn id_windows(log: &Path) -> Vec<(i32, u64, u64)> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let mut starts = BTreeMap::new();
    let mut out = Vec::new();
    for line in text.lines() {
        let parts: Vec<&str> = line.split(' ').collect();
        if let [kind, id, t] = parts[..] {
            let (id, t): (i32, u64) = (id.parse().unwrap(), t.parse().unwrap());
            if kind == "start" {
                starts.insert(id, t);
            } else if let Some(s) = starts.remove(&id) {
                out.push((id, s, t));
            }
        }
    }
    out.sort_by_key(|w| w.1);
    out
}

async fn restart_broker(
    world: &World,
    config: &Config,
    vpc_id: &str,
    id: i32,
    controller: i32,
    log: &Path,
) -> Result<Outcome, RestartError> {
    restart_broker_as(
        world,
        config,
        vpc_id,
        id,
        controller,
        log,
        NodeRole::ZooKeeperBroker,
    )
    .await
}

async fn restart_broker_as(
    world: &World,
    config: &Config,
    vpc_id: &str,
    id: i32,
    controller: i32,
    log: &Path,
    role: NodeRole,
) -> Result<Outcome, RestartError> {
    let events = Arc::new(Mutex::new(Vec::new()));
    change_listener(
        world,
        config,
        vpc_id,
        Change {
            id,
            controller,
            old: None,
            dynamic_works: false,
            restart_secs: 0.3,
            role,
            rack: None,
        },
        log,
        &events,
    )
    .await
}

/// One broker's listener change in a scripted cluster of brokers 1..=5.
struct Change<'a> {
    id: i32,
    controller: i32,
    /// The managed listener's current endpoint (the listener exists).
    old: Option<&'a str>,
    /// Whether a dynamic update takes effect.
    dynamic_works: bool,
    restart_secs: f32,
    role: NodeRole,
    /// (rack the broker runs with, rack configured).
    rack: Option<(&'a str, &'a str)>,
}

/// Carries a broker's change into the scripted cluster; admin calls land in `events`.
async fn change_listener(
    world: &World,
    config: &Config,
    vpc_id: &str,
    change: Change<'_>,
    log: &Path,
    events: &Arc<Mutex<Vec<String>>>,
) -> Result<Outcome, RestartError> {
    let Change {
        id,
        controller,
        old,
        dynamic_works,
        restart_secs,
        role,
        rack,
    } = change;
    let lb = Elbv2::new(world.elbv2.clone(), CallCounter::default());
    let restarted = Arc::new(AtomicBool::new(false));
    let desired = format!("kafka-b{id}.example:1000{id}");
    let kafka = ScriptedKafka {
        ids: (1..=5).collect(),
        me: id,
        controller,
        restarted: restarted.clone(),
        desired: desired.clone(),
        old: old.map(str::to_string),
        dynamic_works,
        dynamic: Arc::new(Mutex::new(None)),
        events: events.clone(),
        rack: rack.map(|(have, _)| have.to_string()),
    };
    assert_eq!(kafka.me, id);
    let service = LoggingService {
        inner: CommandService {
            command: restart_script(log, id, restart_secs),
            timeout: Duration::from_secs(30),
            process: ProcessCheck::None,
        },
        restarted,
    };
    let lock_held = tokio::sync::watch::Sender::new(false);
    let mut lock_seen = lock_held.subscribe();
    let r = Restarter {
        lb: &lb,
        kafka: &kafka,
        service: &service,
        config,
        broker_id: id,
        role,
        rack: rack.map(|(_, want)| want),
        holder: format!("{id}/i-{id}"),
        vpc_id: vpc_id.to_string(),
        nlb_targets: None,
        bound: Vec::new(),
        legacy_lock: None,
        lock_held: &lock_held,
    };
    let result = r
        .make_effective(
            &desired,
            &format!("INTERNAL://h:9092,PRIVATELINK://{desired}"),
        )
        .await;
    if let Ok(Outcome::Restarted { .. }) = &result {
        events.lock().unwrap().push("restarted".into());
        // Taken and released: the caller's channel saw it, and shows it free again.
        assert!(lock_seen.has_changed().unwrap(), "lock_held never changed");
        assert!(
            !*lock_seen.borrow_and_update(),
            "lock_held still set after the release"
        );
    }
    result
}

/// A world wired by one agent; the VPC id (of the lock target group).
fn wired_world() -> (World, String) {
    let world = World::start(Options {
        hosts: 1,
        ..Options::default()
    });
    assert_ok(&world.run(&world.hosts[0], &["run", "--once"]));
    let vpc = world.vpc_id();
    (world, vpc)
}

/// (listeners on the NLB, whether the lock group exists), as ELBv2 says now.
async fn nlb_state(lb: &Elbv2, world: &World) -> (usize, bool) {
    let listeners = lb.listeners(&world.lb_arn).await.unwrap().len();
    let lock = lb
        .find_target_group(&lock_group_name("orders"))
        .await
        .unwrap();
    (listeners, lock.is_some())
}

#[test]
fn five_agents_at_once_restart_one_at_a_time() {
    let (world, tg) = wired_world();
    let config = lock_config(&world, "30s");
    let log = world.dir.path().join("windows.log");
    let lb = Elbv2::new(world.elbv2.clone(), CallCounter::default());
    let (before, _) = block_on(nlb_state(&lb, &world));
    let done = AtomicBool::new(false);
    // Sample the NLB while the agents take turns: the lock is held most of the time.
    let (outcomes, samples) = block_on(async {
        let agents = async {
            let tasks = (1..=5).map(|id| restart_broker(&world, &config, &tg, id, 99, &log));
            let outcomes = futures_join_all(tasks).await;
            done.store(true, Ordering::SeqCst);
            outcomes
        };
        let sampler = async {
            let mut samples = Vec::new();
            while !done.load(Ordering::SeqCst) {
                samples.push(nlb_state(&lb, &world).await);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            samples
        };
        tokio::join!(agents, sampler)
    });
    for o in &outcomes {
        assert!(matches!(o, Ok(Outcome::Restarted { .. })), "{o:?}");
    }
    let w = id_windows(&log);
    assert_eq!(w.len(), 5, "{w:?}");
    assert_eq!(w.iter().map(|x| x.0).collect::<BTreeSet<_>>().len(), 5);
    for pair in w.windows(2) {
        assert!(pair[0].2 <= pair[1].1, "restart windows overlap: {pair:?}");
    }
    // The lock takes no listener: the count never moved, before, while held, after.
    let held = samples.iter().filter(|(_, lock)| *lock).count();
    assert!(
        held >= 5,
        "sampled the lock held only {held} times: {samples:?}"
    );
    assert!(
        samples.iter().all(|(listeners, _)| *listeners == before),
        "listener count changed during the rolling restart (before: {before}): {samples:?}"
    );
    assert_eq!(block_on(nlb_state(&lb, &world)), (before, false), "after");
    eprintln!(
        "listeners before/during/after: {before}/{:?}/{before}; {} samples, {held} with the lock held",
        samples.iter().map(|s| s.0).collect::<BTreeSet<_>>(),
        samples.len()
    );
}

#[test]
fn dead_holder_is_replaced_after_the_lease_and_the_controller_goes_last() {
    let (world, tg) = wired_world();
    // A holder that died mid-gating, its lease running out in 3-4 s (whole seconds).
    let expires = kplink_agent::clock::unix_now() + 4;
    create_lock(&world, &tg, "7/i-dead", &expires.to_string(), "gating");
    let config = lock_config(&world, "10s");
    let log = world.dir.path().join("windows.log");
    let started = now_ms();
    // Broker 1 is the controller; broker 2 also waits: 2 must restart before 1.
    let outcomes = block_on(async {
        let a = restart_broker(&world, &config, &tg, 1, 1, &log);
        let b = async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            restart_broker(&world, &config, &tg, 2, 1, &log).await
        };
        tokio::join!(a, b)
    });
    assert_both_restarted(&outcomes);
    let w = id_windows(&log);
    assert_eq!(
        w.iter().map(|x| x.0).collect::<Vec<_>>(),
        vec![2, 1],
        "controller last: {w:?}"
    );
    assert!(
        u128::from(w[0].1) >= started + 2900,
        "the dead holder's lock was respected until it expired: {w:?}"
    );
}

#[test]
fn a_failed_lock_is_never_broken() {
    let (world, tg) = wired_world();
    create_lock(&world, &tg, "7/i-stuck", "1", "failed");
    let mut config = lock_config(&world, "10s");
    config.restart.timeout = Duration::from_secs(2);
    let log = world.dir.path().join("windows.log");
    let outcome = block_on(restart_broker(&world, &config, &tg, 1, 99, &log));
    match outcome {
        Err(RestartError::LockBusy { holder, phase, .. }) => {
            assert_eq!((holder.as_str(), phase.as_str()), ("7/i-stuck", "failed"));
        }
        other => panic!("{other:?}"),
    }
    assert!(id_windows(&log).is_empty());
    // The waiter put one tag on the lock while waiting and took it away when it gave up.
    let lock_arn = block_on(async {
        let lb = Elbv2::new(world.elbv2.clone(), CallCounter::default());
        let lock = lb
            .find_target_group(&lock_group_name("orders"))
            .await
            .unwrap()
            .expect("the failed lock is still there");
        lb.tags(&lock).await.unwrap().unwrap()
    });
    assert!(
        !lock_arn.keys().any(|k| k.starts_with("kplink:waiting-")),
        "{lock_arn:?}"
    );
    assert_eq!(lock_arn["kplink:lock-holder"], "7/i-stuck");
}

/// A lock listener of release 0.1 on port 9999 (forwarding to the bootstrap group, as it did).
fn create_legacy_lock(world: &World, cluster: &str, holder: &str, expires: &str, phase: &str) {
    let bootstrap = world.wiring().group_on(10000).arn.clone();
    block_on(async {
        let lb = Elbv2::new(world.elbv2.clone(), CallCounter::default());
        let tags = vec![
            ("kplink:cluster".to_string(), cluster.to_string()),
            (TAG_LOCK_HOLDER.to_string(), holder.to_string()),
            (TAG_LOCK_EXPIRES.to_string(), expires.to_string()),
            (TAG_LOCK_PHASE.to_string(), phase.to_string()),
        ];
        lb.create_listener(&world.lb_arn, 9999, &bootstrap, &tags)
            .await
            .unwrap();
    });
}

#[test]
fn another_clusters_legacy_lock_listener_is_left_alone() {
    let (world, vpc) = wired_world();
    // A second cluster on the NLB, still on release 0.1, holds its lock listener on 9999.
    create_legacy_lock(&world, "payments", "1/i-pay", "9999999999", "gating");
    let config = lock_config(&world, "10s");
    let log = world.dir.path().join("windows.log");
    let outcome = block_on(restart_broker(&world, &config, &vpc, 1, 99, &log));
    assert!(
        matches!(outcome, Ok(Outcome::Restarted { .. })),
        "{outcome:?}"
    );
    assert_eq!(id_windows(&log).len(), 1);
    assert!(
        world.wiring().listeners.contains_key(&9999),
        "the other cluster's listener is not ours to touch"
    );
}

#[test]
fn an_older_agents_lock_listener_is_honoured_until_it_expires() {
    let (world, vpc) = wired_world();
    // An agent of release 0.1 died holding its lock listener; its lease ends in 3-4 s.
    let expires = kplink_agent::clock::unix_now() + 4;
    create_legacy_lock(
        &world,
        "orders",
        "7/i-old",
        &expires.to_string(),
        "restarting",
    );
    let before = world.wiring().listeners.len();
    let config = lock_config(&world, "10s");
    let log = world.dir.path().join("windows.log");
    let started = now_ms();
    let outcome = block_on(restart_broker(&world, &config, &vpc, 1, 99, &log));
    assert!(
        matches!(outcome, Ok(Outcome::Restarted { .. })),
        "{outcome:?}"
    );
    let w = id_windows(&log);
    assert!(
        u128::from(w[0].1) >= started + 2900,
        "restarted while the legacy lock was held: {w:?}"
    );
    // Broken (DeleteListener by ARN) and replaced by the group, which is released: one
    // listener fewer, none created.
    let wiring = world.wiring();
    assert!(!wiring.listeners.contains_key(&9999));
    assert_eq!(wiring.listeners.len(), before - 1);
    assert!(!wiring.groups.contains_key(&lock_group_name("orders")));
}

/// Minimal join_all so the test needs no extra crate.
async fn futures_join_all<F: std::future::Future>(futs: impl Iterator<Item = F>) -> Vec<F::Output> {
    let handles: Vec<_> = futs.map(Box::pin).collect();
    let mut pending = handles;
    let mut out: Vec<Option<F::Output>> = (0..pending.len()).map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut all = true;
        for (i, f) in pending.iter_mut().enumerate() {
            if out[i].is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => out[i] = Some(v),
                    std::task::Poll::Pending => all = false,
                }
            }
        }
        if all {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    out.into_iter().map(|o| o.expect("ready")).collect()
}

/// An agent killed after running the restart command finds its lock ("restarting") on the next
/// start and only verifies and releases: the lock group, and a release-0.1 lock listener left by
/// the agent it was upgraded from.
#[test]
fn an_agent_killed_mid_restart_resumes_and_releases_its_own_lock() {
    for legacy in [false, true] {
        let world = tansu_world();
        let host = &world.hosts[0];
        let (port, log) = configure_tansu_host(&world, host);
        // The pass before the kill: wired, Kafka not up yet.
        let out = world.run(host, &["run", "--once", "--json"]);
        assert_ok(&out);
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        // Killed after running the restart command: its lock says "restarting"; Kafka came back.
        let holder = format!("{TANSU_ID}/{}", host.instance_id);
        if legacy {
            create_legacy_lock(&world, "orders", &holder, "9999999999", "restarting");
        } else {
            create_lock(&world, &world.vpc_id(), &holder, "9999999999", "restarting");
            // What the killed agent left beside it: its local note, written before the create
            // (src/restart/marker.rs). Without the note the agent does not look for the lock.
            let state = host.dir.join("state");
            std::fs::create_dir_all(&state).unwrap();
            let note = format!(
                "restart-lock.{TANSU_ID}-{}",
                host.instance_id.replace('/', "-")
            );
            std::fs::write(state.join(note), b"").unwrap();
        }
        let _tansu = Tansu::start(
            &host.dir,
            &host.properties(),
            &format!("127.0.0.1:{}", report["port"]),
            port,
        );
        let out = world.run(host, &["run", "--once", "--json"]);
        assert_ok(&out);
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(
            report["kafka"]["outcome"], "restarted",
            "legacy {legacy}: {report}"
        );
        assert!(windows(&log).is_empty(), "resumed without restarting again");
        let wiring = world.wiring();
        assert!(
            !wiring.groups.contains_key(&lock_group_name("orders"))
                && !wiring.listeners.contains_key(&9999),
            "legacy {legacy}: its own lock released: {wiring:?}"
        );
    }
}

/// A lock group as another (or an earlier) agent `holder` left it: created with the settings
/// that encode its holder and the lease as tags, exactly as the agent does.
fn create_lock(world: &World, vpc: &str, holder: &str, expires: &str, phase: &str) {
    block_on(async {
        let lb = Elbv2::new(world.elbv2.clone(), CallCounter::default());
        let (port, health_check_port) = holder_ports(holder);
        let spec = ExactGroupSpec {
            name: lock_group_name("orders"),
            vpc_id: vpc.to_string(),
            port,
            health_check_port,
            tags: vec![
                ("kplink:cluster".to_string(), "orders".to_string()),
                (TAG_LOCK_HOLDER.to_string(), holder.to_string()),
                (TAG_LOCK_EXPIRES.to_string(), expires.to_string()),
                (TAG_LOCK_PHASE.to_string(), phase.to_string()),
            ],
        };
        let created = lb.create_exact_target_group(&spec).await.unwrap();
        assert!(matches!(created, GroupCreate::Created(_)), "{created:?}");
    });
}

#[test]
fn an_existing_listener_is_updated_dynamically_without_a_restart() {
    let (world, tg) = wired_world();
    let config = lock_config(&world, "30s");
    let log = world.dir.path().join("windows.log");
    let zk = |id, dynamic_works| Change {
        id,
        controller: 99,
        old: Some("old.example:10009"),
        dynamic_works,
        restart_secs: 0.3,
        role: NodeRole::ZooKeeperBroker,
        rack: None,
    };
    let events = Arc::new(Mutex::new(Vec::new()));
    let outcome = block_on(change_listener(
        &world,
        &config,
        &tg,
        zk(1, true),
        &log,
        &events,
    ));
    assert_eq!(outcome.unwrap(), Outcome::DynamicallyUpdated);
    assert!(id_windows(&log).is_empty(), "no restart");
    assert!(
        !world
            .wiring()
            .groups
            .contains_key(&lock_group_name("orders")),
        "no lock taken"
    );
    // The whole value was sent: every listener's advertised address, as in the file.
    assert_eq!(
        *events.lock().unwrap(),
        vec!["alter INTERNAL://h:9092,PRIVATELINK://kafka-b1.example:10001"]
    );
    // Accepted but without effect (as tansu does): verified, found wanting, restarted instead,
    // and the override it left removed *before* the restart so it cannot shadow the file.
    let events = Arc::new(Mutex::new(Vec::new()));
    let outcome = block_on(change_listener(
        &world,
        &config,
        &tg,
        zk(2, false),
        &log,
        &events,
    ));
    assert!(
        matches!(outcome, Ok(Outcome::Restarted { .. })),
        "{outcome:?}"
    );
    assert_eq!(id_windows(&log).len(), 1);
    assert_eq!(
        *events.lock().unwrap(),
        vec![
            "alter INTERNAL://h:9092,PRIVATELINK://kafka-b2.example:10002",
            "clear true",
            "restarted"
        ]
    );
}

/// KRaft cannot change advertised.listeners dynamically (apache/kafka PR #18390, KAFKA-13835):
/// no AlterConfigs of any kind is sent, the change goes straight to the rolling restart.
#[test]
fn kraft_brokers_are_never_altered_dynamically() {
    let (world, tg) = wired_world();
    let config = lock_config(&world, "30s");
    let log = world.dir.path().join("windows.log");
    for (id, role) in [(1, NodeRole::KraftBroker), (2, NodeRole::KraftCombined)] {
        let events = Arc::new(Mutex::new(Vec::new()));
        let change = Change {
            id,
            controller: 99,
            old: Some("old.example:10009"),
            dynamic_works: true,
            restart_secs: 0.3,
            role,
            rack: None,
        };
        let outcome = block_on(change_listener(&world, &config, &tg, change, &log, &events));
        assert!(
            matches!(outcome, Ok(Outcome::Restarted { .. })),
            "{role:?}: {outcome:?}"
        );
        assert_eq!(*events.lock().unwrap(), vec!["restarted"], "{role:?}");
    }
    assert_eq!(id_windows(&log).len(), 2);
}

/// In KRaft the Metadata controller id is a random live broker (KIP-590): a broker named
/// controller there does not yield the lock; in ZooKeeper mode it does and restarts last.
#[test]
fn only_a_zookeeper_controller_restarts_last() {
    for (role, order) in [
        (NodeRole::ZooKeeperBroker, vec![2, 1]),
        (NodeRole::KraftCombined, vec![1, 2]),
    ] {
        let (world, tg) = wired_world();
        let mut config = lock_config(&world, "30s");
        // Broker 1 gates for ~1.5 s: long enough for broker 2 to start waiting.
        config.restart.healthy_checks = 15;
        let log = world.dir.path().join("windows.log");
        let outcomes = block_on(async {
            let a = restart_broker_as(&world, &config, &tg, 1, 1, &log, role);
            let b = async {
                tokio::time::sleep(Duration::from_millis(300)).await;
                restart_broker_as(&world, &config, &tg, 2, 1, &log, role).await
            };
            tokio::join!(a, b)
        });
        assert_both_restarted(&outcomes);
        let w = id_windows(&log);
        assert_eq!(
            w.iter().map(|x| x.0).collect::<Vec<_>>(),
            order,
            "{role:?}: {w:?}"
        );
    }
}

#[test]
fn the_lease_is_renewed_while_a_slow_restart_runs() {
    let (world, tg) = wired_world();
    // A 10 s lease and a 13 s restart: without renewal the waiting agent would break the lock.
    let config = lock_config(&world, "10s");
    let log = world.dir.path().join("windows.log");
    let outcomes = block_on(async {
        let events = Arc::new(Mutex::new(Vec::new()));
        let change = Change {
            id: 1,
            controller: 99,
            old: None,
            dynamic_works: false,
            restart_secs: 13.0,
            role: NodeRole::ZooKeeperBroker,
            rack: None,
        };
        let slow = change_listener(&world, &config, &tg, change, &log, &events);
        let waiting = async {
            tokio::time::sleep(Duration::from_millis(500)).await;
            restart_broker(&world, &config, &tg, 2, 99, &log).await
        };
        tokio::join!(slow, waiting)
    });
    assert_both_restarted(&outcomes);
    let w = id_windows(&log);
    assert_eq!(
        w.iter().map(|x| x.0).collect::<Vec<_>>(),
        vec![1, 2],
        "{w:?}"
    );
    assert!(w[0].2 <= w[1].1, "restart windows overlap: {w:?}");
}

type Outcomes = (Result<Outcome, RestartError>, Result<Outcome, RestartError>);

fn assert_both_restarted(outcomes: &Outcomes) {
    for o in [&outcomes.0, &outcomes.1] {
        assert!(matches!(o, Ok(Outcome::Restarted { .. })), "{outcomes:?}");
    }
}

/// `broker.rack` is a static broker config: a running broker on another rack is restarted even
/// when its endpoint is already right (tansu reports no broker configs, hence the scripted view).
#[test]
fn a_running_broker_on_another_rack_is_restarted() {
    let (world, tg) = wired_world();
    let config = lock_config(&world, "30s");
    let log = world.dir.path().join("windows.log");
    let desired = "kafka-b1.example:10001";
    for (rack, restarts) in [(("use1-az6", "use1-az6"), 0), (("use1-az2", "use1-az6"), 1)] {
        let events = Arc::new(Mutex::new(Vec::new()));
        let change = Change {
            id: 1,
            controller: 99,
            old: Some(desired),
            dynamic_works: true,
            restart_secs: 0.3,
            role: NodeRole::ZooKeeperBroker,
            rack: Some(rack),
        };
        let outcome = block_on(change_listener(&world, &config, &tg, change, &log, &events));
        let restarted = matches!(outcome, Ok(Outcome::Restarted { .. }));
        assert_eq!(usize::from(restarted), restarts, "{rack:?}: {outcome:?}");
        if restarts == 0 {
            assert_eq!(outcome.unwrap(), Outcome::AlreadyEffective);
        }
        // Never a dynamic update for a rack: it is read-only.
        assert!(!events
            .lock()
            .unwrap()
            .iter()
            .any(|e| e.starts_with("alter")));
    }
    assert_eq!(id_windows(&log).len(), 1);
}

/// Start-up is not absence: nothing accepts on the bootstrap servers, but Kafka's process runs
/// (here a pid file names a live process, as `restart.kafka_pid_file`): a broker recovering its
/// logs. `run --once` reports it starting and exits 1 (not fully wired: whether it read the new
/// file is not known); nothing is restarted, the restart stays pending, and once the broker
/// answers the next pass restarts it onto the new endpoint. Read as "not running" (the old
/// behaviour), the change would be dropped and the broker would keep its old endpoint.
#[test]
fn a_starting_broker_keeps_the_restart_pending_until_it_answers() {
    let world = tansu_world();
    let host = &world.hosts[0];
    let port = free_port();
    let log = host.dir.join("restarts.log");
    let pidfile = host.dir.join("tansu.pid");
    let kafka_pid = host.dir.join("kafka.pid");
    std::fs::write(
        host.config(),
        restart_config(
            &world,
            host,
            port,
            &log,
            &pidfile,
            &format!("kafka_pid_file = {:?}\n", kafka_pid.display().to_string()),
        ),
    )
    .unwrap();
    let mut starting = Command::new("sleep").arg("120").spawn().unwrap();
    std::fs::write(&kafka_pid, format!("{}\n", starting.id())).unwrap();

    let out = world.run(host, &["run", "--once", "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["kafka"]["outcome"], "starting", "{report}");
    let how = report["kafka"]["how"].as_str().unwrap();
    assert!(how.contains(&starting.id().to_string()), "{how}");
    assert!(
        stderr(&out).contains("is starting") && stderr(&out).contains("stays pending"),
        "{}",
        stderr(&out)
    );
    assert!(windows(&log).is_empty(), "nothing restarted");
    let status = world.run(host, &["status", "--json"]);
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(status["kafka"]["state"], "starting", "{status}");
    assert_eq!(status["restart_pending"], true, "{status}");

    // The broker opens its port, still on its old endpoint: the pending change is carried out.
    let tansu = Tansu::start(
        &host.dir,
        &host.properties(),
        &format!("127.0.0.1:{port}"),
        port,
    );
    let out = world.run(host, &["run", "--once", "--json"]);
    assert_ok(&out);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["kafka"]["outcome"], "restarted", "{report}");
    assert_eq!(windows(&log).len(), 1);
    let want = format!("127.0.0.1:{}", report["port"]);
    assert_eq!(advertised(tansu.port).as_deref(), Some(want.as_str()));

    // Kafka's process gone and its port closed: not running (it reads the file when it starts).
    drop(tansu);
    starting.kill().unwrap();
    starting.wait().unwrap();
    let out = world.run(host, &["run", "--once", "--json"]);
    assert_ok(&out);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["kafka"]["outcome"], "not_running", "{report}");
}

/// A broker whose `listeners` bind a specific address does not accept on 127.0.0.1: it is
/// running, not "not running". The agent probes the addresses the file binds, and says which
/// setting to fix; nothing is restarted.
#[test]
fn a_broker_bound_to_a_specific_address_is_not_read_as_stopped() {
    let world = tansu_world();
    let host = &world.hosts[0];
    let (port, log) = configure_tansu_host(&world, host);
    let bind = "127.0.0.3";
    let properties = kplink_agent_properties_binding(bind, port);
    std::fs::write(host.properties(), &properties).unwrap();
    let pidfile = host.dir.join("tansu.pid");
    let out = Command::new("python3")
        .arg(tansu_py())
        .args(["start", "--port", &port.to_string(), "--host", bind])
        .args(["--advertised", &format!("{bind}:{port}")])
        .args([
            "--check-with",
            env!("CARGO_BIN_EXE_kplink-agent"),
            "--properties",
        ])
        .arg(host.properties())
        .arg("--pidfile")
        .arg(&pidfile)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let _tansu = Tansu { pidfile, port };

    let out = world.run(host, &["run", "--once"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(
        err.contains(&format!("listens on {bind}:{port}"))
            && err.contains("restart.bootstrap_servers"),
        "{err}"
    );
    assert!(windows(&log).is_empty(), "nothing restarted");
}

/// KRaft combined mode binding every listener to `bind`.
fn kplink_agent_properties_binding(bind: &str, port: u16) -> String {
    let controller = free_port();
    format!(
        "process.roles=broker,controller\nnode.id=111\ncontroller.listener.names=CONTROLLER\n\
         controller.quorum.voters=111@{bind}:{controller}\n\
         listeners=PLAINTEXT://{bind}:{port},CONTROLLER://{bind}:{controller}\n\
         advertised.listeners=PLAINTEXT://{bind}:{port}\n\
         listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT\n"
    )
}

/// The NLB's own health is part of the restart: a real NLB marks a (re-)registered target
/// `healthy` only after HealthyThresholdCount health checks HealthCheckIntervalSeconds apart
/// (30 s × 5 by default). The launcher emulates that, time-compressed (scale 0.08: 2.4 s × 5),
/// probing the instance's mapped address (the broker's tansu). The broker is done, and the
/// cluster restart lock released, only once it is `healthy` in its own group and in the
/// bootstrap group: the next broker never restarts while clients cannot reach this one through
/// the NLB.
#[test]
fn the_lock_is_released_only_when_the_nlb_marks_the_restarted_broker_healthy() {
    let world = tansu_world();
    let host = &world.hosts[0];
    let (port, log) = configure_tansu_host(&world, host);
    let _tansu = Tansu::start(
        &host.dir,
        &host.properties(),
        &format!("127.0.0.1:{port}"),
        port,
    );
    // 12 s to healthy, well past the restart command's 5 s: without the NLB gate the agent
    // returns while the target is still `initial`.
    let scale = 0.08;
    let health = format!("{}/_kplink/target-health", world.moto.url);
    http_json_body(
        "POST",
        &health,
        &format!(
            "{{\"scale\": {scale}, \"addresses\": {{\"{}\": \"127.0.0.1:{port}\"}}}}",
            host.instance_id
        ),
    );

    let out = world.run(host, &["run", "--once", "--json"]);
    let returned = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert_ok(&out);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["kafka"]["outcome"], "restarted", "{report}");
    assert_eq!(windows(&log).len(), 1);
    // Both groups of this broker marked it healthy before the agent returned (lock released).
    let status = http_json("GET", &health);
    let mine: Vec<&serde_json::Value> = status["targets"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["id"] == host.instance_id.as_str())
        .collect();
    let groups: BTreeSet<&str> = mine
        .iter()
        .map(|t| {
            let arn = t["target_group_arn"].as_str().unwrap();
            arn.split('/').nth(1).unwrap()
        })
        .collect();
    assert_eq!(
        groups,
        BTreeSet::from([world.group(TANSU_ID).as_str(), world.boot_group().as_str()]),
        "{status}"
    );
    for t in &mine {
        assert_eq!(t["state"], "healthy", "{status}");
        assert!(t["healthy_since"].as_f64().unwrap() <= returned, "{status}");
    }
    // Registered by this pass: 5 checks × 2.4 s before healthy, all inside the restart.
    let took = report["kafka"]["took_ms"].as_u64().unwrap();
    assert!(
        took as f64 >= 5.0 * 30_000.0 * scale * 0.9,
        "took {took} ms"
    );
    assert!(!world
        .wiring()
        .groups
        .contains_key(&lock_group_name("orders")));
    http_json("DELETE", &health);
}

/// A broker back in Kafka that the NLB never marks healthy (its traffic port closed: here the
/// instance maps to a port nothing listens on) did not come back for clients: after
/// `restart.timeout` the lock is kept in phase `failed` and the error names the NLB's state.
#[test]
fn a_broker_the_nlb_never_marks_healthy_keeps_the_lock_failed() {
    let world = tansu_world();
    let host = &world.hosts[0];
    let port = free_port();
    let log = host.dir.join("restarts.log");
    let pidfile = host.dir.join("tansu.pid");
    let config = restart_config(&world, host, port, &log, &pidfile, "")
        .replace("timeout = \"20s\"", "timeout = \"8s\"");
    std::fs::write(host.config(), config).unwrap();
    let _tansu = Tansu::start(
        &host.dir,
        &host.properties(),
        &format!("127.0.0.1:{port}"),
        port,
    );
    let health = format!("{}/_kplink/target-health", world.moto.url);
    http_json_body(
        "POST",
        &health,
        &format!(
            "{{\"scale\": 0.01, \"addresses\": {{\"{}\": \"127.0.0.1:{}\"}}}}",
            host.instance_id,
            free_port()
        ),
    );
    let out = world.run(host, &["run", "--once"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(
        err.contains("did not come back")
            && err.contains("the NLB does not mark")
            && err.contains("unhealthy (Target.FailedHealthChecks)"),
        "{err}"
    );
    let wiring = world.wiring();
    let lock = wiring
        .groups
        .get(&lock_group_name("orders"))
        .expect("lock kept");
    assert_eq!(
        lock.tags.get(TAG_LOCK_PHASE).map(String::as_str),
        Some("failed"),
        "{lock:?}"
    );
    http_json("DELETE", &health);
}
