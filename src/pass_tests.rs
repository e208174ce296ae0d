//! Whole passes on the in-process fakes ([`crate::fakes`]): the executor runs exactly the planned
//! steps, drift is repaired, races between hosts interleaved step by step resolve, a leaving
//! instance is drained, and decommission cleans up — in milliseconds, next to the moto/IMDS/tansu
//! end-to-end tests.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::Config;
use crate::execute::Outcome;
use crate::fakes::{FakeImds, FakeNlb, FakeTags};
use crate::lifecycle::{Lifecycle, SPOT_ACTION_PATH, TARGET_STATE_PATH};
use crate::model::{Agent, Error, Progress};
use crate::plan::Context;
use crate::plan::Step;
use crate::registry;

pub(crate) const PROPS: &str = "# managed by config management\n\
process.roles=broker\n\
listeners=PLAINTEXT://:9092\n\
advertised.listeners=PLAINTEXT://b.internal:9092\n\
listener.security.protocol.map=PLAINTEXT:PLAINTEXT\n";

pub(crate) const ZONES: [(&str, &str); 3] = [
    ("us-east-1a", "use1-az6"),
    ("us-east-1b", "use1-az1"),
    ("us-east-1c", "use1-az2"),
];

type TestAgent = Agent<FakeImds, FakeNlb, FakeTags>;

/// One NLB in three zones, and a directory for hosts' files.
struct Bench {
    nlb: FakeNlb,
    lb_arn: String,
    dir: tempfile::TempDir,
}

impl Bench {
    fn new() -> Bench {
        let nlb = FakeNlb::default();
        let zones: Vec<&str> = ZONES.iter().map(|z| z.0).collect();
        let lb_arn = nlb.with(|s| s.add_load_balancer("kafka", &zones));
        Bench {
            nlb,
            lb_arn,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// Broker `id` on its own host (instance `i-<id>`), zone by id, default config.
    fn host(&self, id: i32) -> TestAgent {
        self.host_with(id, &format!("i-{id:017x}"), "10001-10010", "")
    }

    fn host_with(&self, id: i32, instance: &str, range: &str, extra: &str) -> TestAgent {
        let dir = self.dir.path().join(instance);
        std::fs::create_dir_all(&dir).unwrap();
        let props = dir.join("server.properties");
        if !props.exists() {
            std::fs::write(&props, PROPS).unwrap();
        }
        let text = format!(
            "cluster = \"orders\"\n[broker]\nserver_properties = \"{}\"\n[listener]\n\
             advertised_host = \"kafka-{{az_id}}.orders.example.internal\"\n[nlb]\n\
             load_balancer_arn = \"{}\"\nport_range = \"{range}\"\n{extra}",
            props.display(),
            self.lb_arn
        );
        let config = Config::parse(&text, Path::new("/test/agent.toml")).unwrap();
        let (az, az_id) = ZONES[(id as usize) % 3];
        let nlb = self.nlb.another_host();
        Agent {
            config,
            config_path: PathBuf::from("/test/agent.toml"),
            metadata: FakeImds::host(instance, az, az_id, Some(id)),
            calls: nlb.calls.clone(),
            lb: nlb,
            tags: FakeTags::default(),
            metadata_timeout: Duration::from_secs(1),
            checked: Default::default(),
            file: Default::default(),
            steady: Default::default(),
        }
    }
}

fn props(agent: &TestAgent) -> String {
    std::fs::read_to_string(&agent.config.broker.server_properties).unwrap()
}

fn group(id: i32, b: &Bench) -> String {
    registry::dedicated_group_name("orders", &b.lb_arn, id)
}

/// Observe, plan, run every planned step; returns (planned, executed, progress). The executed
/// steps are shown as planned: a claim's `claimed` port is cleared (tests read it on the NLB).
async fn plan_and_execute(agent: &TestAgent) -> (Vec<Step>, Vec<Step>, Progress) {
    let ctx = agent.context().await.unwrap();
    let observed = agent.observe(&ctx).await.unwrap();
    let planned = agent.plan(&ctx, &observed).unwrap();
    let mut progress = Progress::from_observed(&observed);
    let executed = agent
        .execute(&ctx, &observed, &planned, &mut progress)
        .await
        .unwrap();
    assert_eq!(executed.replan, None, "no race here");
    (
        planned,
        executed.done.into_iter().map(as_planned).collect(),
        progress,
    )
}

/// `step` with the outcome fields only an executed step has cleared.
fn as_planned(mut step: Step) -> Step {
    if let Step::ClaimPort { claimed, .. } = &mut step {
        *claimed = None;
    }
    step
}

#[tokio::test]
async fn first_pass_then_steady_state() {
    let b = Bench::new();
    let a = b.host(3);
    let (planned, executed, progress) = plan_and_execute(&a).await;
    assert_eq!(executed, planned);
    assert!(progress.races.is_empty());
    let kinds: Vec<String> = planned.iter().map(ToString::to_string).collect();
    assert_eq!(kinds.len(), 8, "{kinds:#?}");
    assert!(kinds[0].starts_with("create bootstrap target group"));
    // Each listener this agent creates gets the idle timeout above Kafka's 10 minutes.
    assert!(kinds[1].contains("bootstrap listener's TCP idle timeout to 660 s"));
    assert!(
        kinds[3].contains("claim a port: try 10004 first"),
        "{kinds:?}"
    );
    assert!(kinds[4].contains("claim listener's TCP idle timeout to 660 s"));
    assert!(kinds[7].contains("-> kafka-use1-az6.orders.example.internal:10004"));
    assert_eq!(
        b.nlb.with(|s| s.port_of(&b.lb_arn, &group(3, &b))),
        Some(10004)
    );
    let idle: Vec<u32> = b
        .nlb
        .with(|s| s.listeners.values().map(|l| l.idle_timeout).collect());
    assert_eq!(idle, [660, 660], "bootstrap and claim");
    assert!(props(&a).contains("PRIVATELINK://kafka-use1-az6.orders.example.internal:10004"));
    // Steady state: nothing planned, nothing done, three reads.
    let before = a.calls.total();
    let report = a.pass(&a.context().await.unwrap()).await.unwrap();
    assert!(report.changes.is_empty(), "{:?}", report.changes);
    assert_eq!(a.calls.total() - before, 3, "{:?}", report.aws_calls);
}

/// For every case: what `plan` shows is what the pass does.
#[tokio::test]
async fn executed_steps_equal_planned_steps_in_every_case() {
    type Setup = fn(&Bench, &TestAgent);
    let cases: Vec<(&str, Setup)> = vec![
        ("empty NLB", |_, _| {}),
        ("bootstrap exists", |b, _| {
            let other = b.host(1);
            futures_block(async { other.pass(&other.context().await.unwrap()).await.unwrap() });
        }),
        ("claim exists but nothing registered, file empty", |b, a| {
            let tg = b.nlb.with(|s| {
                s.add_group(
                    &group(3, b),
                    "traffic-port",
                    &[("kplink:cluster", "orders")],
                )
            });
            b.nlb.with(|s| s.add_listener(&b.lb_arn, 10007, &tg, &[]));
            let _ = a;
        }),
        ("two claims: a duplicate is deleted", |b, _| {
            let tg = b.nlb.with(|s| {
                s.add_group(
                    &group(3, b),
                    "traffic-port",
                    &[("kplink:cluster", "orders")],
                )
            });
            b.nlb.with(|s| s.add_listener(&b.lb_arn, 10002, &tg, &[]));
            b.nlb.with(|s| s.add_listener(&b.lb_arn, 10008, &tg, &[]));
        }),
        ("replaced instance: the old one is deregistered", |b, a| {
            let old = b.host_with(3, "i-0000000000000dead", "10001-10010", "");
            futures_block(async { old.pass(&old.context().await.unwrap()).await.unwrap() });
            let _ = a;
        }),
        ("only the file drifted", |b, a| {
            futures_block(async { a.pass(&a.context().await.unwrap()).await.unwrap() });
            std::fs::write(&a.config.broker.server_properties, PROPS).unwrap();
            let _ = b;
        }),
        ("0.1 names and a fixed health check port", |b, _| {
            let cluster = [("kplink:cluster", "orders")];
            let boot = b
                .nlb
                .with(|s| s.add_group("kp-orders-boot", "9094", &cluster));
            let b3 = b
                .nlb
                .with(|s| s.add_group("kp-orders-b3", "9094", &cluster));
            b.nlb
                .with(|s| s.add_listener(&b.lb_arn, 10000, &boot, &cluster));
            b.nlb
                .with(|s| s.add_listener(&b.lb_arn, 10009, &b3, &cluster));
        }),
    ];
    for (name, setup) in cases {
        let b = Bench::new();
        let a = b.host(3);
        setup(&b, &a);
        let (planned, executed, progress) = plan_and_execute(&a).await;
        assert!(!planned.is_empty(), "{name}: nothing planned");
        assert_eq!(executed, planned, "{name}");
        assert!(progress.races.is_empty(), "{name}: {:?}", progress.races);
        // Converged: the next plan is empty.
        let (again, _, _) = plan_and_execute(&a).await;
        assert!(again.is_empty(), "{name}: still pending {again:?}");
        // Health checks probe the traffic port on every group now forwarding to this broker.
        b.nlb.with(|s| {
            for g in s
                .groups
                .values()
                .filter(|g| g.targets.iter().any(|t| t.1 == 9094))
            {
                assert_eq!(g.health_check_port, "traffic-port", "{name}: {}", g.name);
            }
        });
    }
}

/// Runs a future to completion from sync test setup code (a fresh runtime on another thread).
fn futures_block<F: std::future::Future + Send>(f: F) -> F::Output
where
    F::Output: Send,
{
    std::thread::scope(|s| {
        s.spawn(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(f)
        })
        .join()
        .unwrap()
    })
}

#[tokio::test]
async fn a_deleted_listener_is_restored_on_the_port_the_file_advertises() {
    let b = Bench::new();
    let a = b.host(3);
    let ctx = a.context().await.unwrap();
    // Broker 3 prefers 10004; the file says 10008 (say, from before a port range change).
    let first = a.pass(&ctx).await.unwrap();
    let arn = first.listener_arn.clone();
    b.nlb.with(|s| {
        let l = s.listeners.get_mut(&arn).unwrap();
        l.port = 10008;
    });
    let text = props(&a).replace(":10004", ":10008");
    std::fs::write(&a.config.broker.server_properties, &text).unwrap();
    // Drift: the listener is deleted.
    b.nlb.with(|s| s.listeners.remove(&arn));
    let (planned, executed, _) = plan_and_execute(&a).await;
    assert_eq!(executed, planned);
    assert!(
        planned
            .iter()
            .any(|s| s.to_string().contains("try 10008 first")),
        "{planned:?}"
    );
    assert!(!planned
        .iter()
        .any(|s| matches!(s, Step::WriteProperties { .. })));
    assert_eq!(
        b.nlb.with(|s| s.port_of(&b.lb_arn, &group(3, &b))),
        Some(10008)
    );
    assert_eq!(props(&a), text, "file untouched: clients keep the address");
}

/// Another host's claim on 10004 appears just before this agent's next CreateListener (the
/// bootstrap's, which runs first, so the claim finds 10004 taken).
fn another_host_takes_10004_first(b: &Bench) {
    let lb = b.lb_arn.clone();
    b.nlb.before_next_create_listener(move |s| {
        let tg = s.add_group(
            "kp-orders-x-b9",
            "traffic-port",
            &[("kplink:cluster", "orders")],
        );
        s.add_listener(&lb, 10004, &tg, &[]);
    });
}

#[tokio::test]
async fn another_host_taking_the_planned_port_is_resolved_and_reported() {
    let b = Bench::new();
    let a = b.host(3);
    let ctx = a.context().await.unwrap();
    let observed = a.observe(&ctx).await.unwrap();
    let planned = a.plan(&ctx, &observed).unwrap();
    // Between the plan and the claim, another host takes 10004.
    another_host_takes_10004_first(&b);
    let mut progress = Progress::from_observed(&observed);
    let executed = a
        .execute(&ctx, &observed, &planned, &mut progress)
        .await
        .unwrap();
    let port = b.nlb.with(|s| s.port_of(&b.lb_arn, &group(3, &b))).unwrap();
    assert_ne!(port, 10004);
    assert_eq!(progress.collisions, 1);
    assert!(
        progress
            .races
            .iter()
            .any(|r| r.contains(&format!("claimed {port}"))),
        "{:?}",
        progress.races
    );
    // The same steps; the claim names the port it got, and the file write bound to it
    // advertises that port, not the planned 10004. No re-plan.
    assert_eq!(executed.replan, None);
    assert_eq!(executed.done.len(), planned.len());
    for (e, p) in executed.done.iter().zip(&planned) {
        match (e, p) {
            (
                Step::WriteProperties {
                    to: te, port: pe, ..
                },
                Step::WriteProperties {
                    to: tp,
                    port: 10004,
                    ..
                },
            ) => {
                assert!(tp.ends_with(":10004") && te.ends_with(&format!(":{port}")));
                assert_eq!(*pe, port);
            }
            (Step::ClaimPort { claimed, .. }, _) => {
                assert_eq!(*claimed, Some(port));
                assert_eq!(&as_planned(e.clone()), p);
            }
            _ => assert_eq!(e, p),
        }
    }
    assert!(props(&a).contains(&format!(":{port}\n")));
}

/// A plan without a file write (the file already advertised its first candidate) whose claim
/// moves is planned again: the pass then writes the claimed port, and says so.
#[tokio::test]
async fn a_claim_moved_off_the_port_the_file_advertises_is_planned_again() {
    let b = Bench::new();
    let a = b.host(3);
    let ctx = a.context().await.unwrap();
    // Broker 3 prefers 10004, and the file already advertises it (written by hand, say).
    let text = ctx.shard(0).edited_file(PROPS, 10004).unwrap().unwrap();
    std::fs::write(&a.config.broker.server_properties, &text).unwrap();
    let observed = a.observe(&ctx).await.unwrap();
    let planned = a.plan(&ctx, &observed).unwrap();
    assert!(
        !planned
            .iter()
            .any(|s| matches!(s, Step::WriteProperties { .. })),
        "{planned:?}"
    );
    another_host_takes_10004_first(&b);
    let report = a.pass(&ctx).await.unwrap();
    assert_ne!(report.port, 10004);
    let writes: Vec<_> = report
        .changes
        .iter()
        .filter_map(|s| match s {
            Step::WriteProperties { port, .. } => Some(*port),
            _ => None,
        })
        .collect();
    assert_eq!(writes, vec![report.port], "{:?}", report.changes);
    assert!(
        report
            .races
            .iter()
            .any(|r| r.contains("planned the file write again")),
        "{:?}",
        report.races
    );
    // Planned again from the same observation: one claim, and the NLB read only by the
    // observation and after the refused port (ELBv2 may not list the new listener yet, so a
    // fresh observation could plan a second claim).
    let claims = report
        .changes
        .iter()
        .filter(|s| matches!(s, Step::ClaimPort { .. }))
        .count();
    assert_eq!(claims, 1, "{:?}", report.changes);
    assert_eq!(
        report.aws_calls.get("DescribeListeners"),
        Some(&2),
        "{:?}",
        report.aws_calls
    );
    assert!(props(&a).contains(&format!(":{}\n", report.port)));
}

/// Two agents booting at once, their steps interleaved one by one on one NLB.
#[tokio::test]
async fn two_agents_interleaved_step_by_step_converge_without_conflict() {
    let b = Bench::new();
    // Same preferred port: ids 1 and 11 in a 10-port range.
    let (x, y) = (b.host(1), b.host(11));
    let cx = x.context().await.unwrap();
    let cy = y.context().await.unwrap();
    let ox = x.observe(&cx).await.unwrap();
    let oy = y.observe(&cy).await.unwrap();
    let px = x.plan(&cx, &ox).unwrap();
    let py = y.plan(&cy, &oy).unwrap();
    assert_eq!(px.len(), py.len());
    let (mut gx, mut gy) = (Progress::from_observed(&ox), Progress::from_observed(&oy));
    let mut last = None;
    for (sx, sy) in px.iter().zip(&py) {
        x.execute_step(&cx, &ox, sx, &mut gx).await.unwrap();
        last = Some(y.execute_step(&cy, &oy, sy, &mut gy).await.unwrap());
    }
    let (port_x, port_y) = (gx.claim.unwrap().port, gy.claim.unwrap().port);
    assert_ne!(port_x, port_y);
    // y's plan ends with the write bound to its claim: it advertises the port y got.
    assert!(
        matches!(last, Some(Outcome::Done(Step::WriteProperties { port, .. })) if port == port_y),
        "{last:?}"
    );
    // Both "create" the bootstrap: AWS answers identical CreateTargetGroup and CreateListener
    // calls with the existing resources, so the second host simply gets the first one's.
    assert!(
        gy.races.iter().any(|r| r.contains("taken by other hosts")),
        "{:?}",
        gy.races
    );
    // One bootstrap group holding both; no orphan group.
    b.nlb.with(|s| {
        let boot = registry::bootstrap_group_name("orders", &b.lb_arn);
        assert_eq!(s.groups.values().filter(|g| g.name == boot).count(), 1);
        assert_eq!(s.groups[&s.group_arn(&boot).unwrap()].targets.len(), 2);
        let forwarded: Vec<&String> = s.listeners.values().map(|l| &l.tg).collect();
        assert!(
            s.groups.keys().all(|g| forwarded.contains(&g)),
            "orphan group"
        );
    });
    for (agent, port) in [(&x, port_x), (&y, port_y)] {
        assert!(props(agent).contains(&format!(":{port}\n")));
    }
}

#[tokio::test]
async fn the_listener_quota_and_a_missing_zone_leave_nothing_behind() {
    let b = Bench::new();
    // Zone: an NLB without broker 3's zone (us-east-1a).
    let two = b
        .nlb
        .with(|s| s.add_load_balancer("two", &["us-east-1b", "us-east-1c"]));
    let a = b.host(3);
    let mut a2 = b.host(3);
    a2.config.nlb.arns = crate::config::LoadBalancers::one(&two);
    let err = a2.pass(&a2.context().await.unwrap()).await.unwrap_err();
    assert!(matches!(err, Error::AzNotEnabled { .. }), "{err}");
    assert!(err.to_string().contains("use1-az6") && err.to_string().contains("us-east-1a"));
    assert!(b
        .nlb
        .with(|s| s.groups.is_empty() && s.listeners.is_empty()));
    assert_eq!(props(&a2), PROPS);
    // Quota: 50 listeners already (a bootstrap of ours and 49 of someone else's).
    let other = b.host(1);
    other.pass(&other.context().await.unwrap()).await.unwrap();
    let foreign = b.nlb.with(|s| s.add_group("someone", "traffic-port", &[]));
    b.nlb.with(|s| {
        for port in 0..48 {
            s.add_listener(&b.lb_arn, 20000 + port, &foreign, &[]);
        }
    });
    let ctx: Context = a.context().await.unwrap();
    let err = a.pass(&ctx).await.unwrap_err();
    assert!(matches!(err, Error::ListenerQuota { .. }), "{err}");
    assert!(err.to_string().contains("50 listeners"), "{err}");
    assert!(
        b.nlb.with(|s| s.group_arn(&group(3, &b)).is_none()),
        "group removed"
    );
    assert_eq!(props(&a), PROPS);
}

#[tokio::test]
async fn decommission_removes_everything_of_this_broker_and_is_idempotent() {
    let b = Bench::new();
    let (x, y) = (b.host(1), b.host(2));
    for a in [&x, &y] {
        a.pass(&a.context().await.unwrap()).await.unwrap();
    }
    let ctx = y.context().await.unwrap();
    // What --dry-run shows is what runs, and showing it changes nothing.
    let planned = y.decommission_plan(&ctx, false).await.unwrap();
    let shown: Vec<String> = planned.iter().map(ToString::to_string).collect();
    assert_eq!(shown.len(), 4, "{shown:#?}");
    assert!(
        shown[0].starts_with("deregister i-")
            && shown[0].contains("bootstrap target group of shard 0")
    );
    assert!(shown[1].starts_with("delete listener on port 100"));
    assert!(shown[2].starts_with(&format!("delete target group {}", group(2, &b))));
    assert!(shown[3].starts_with("remove listener PRIVATELINK from "));
    assert!(
        b.nlb.with(|s| s.group_arn(&group(2, &b)).is_some()),
        "dry run"
    );
    let done = y.decommission(&ctx, false).await.unwrap();
    let expected: Vec<String> = planned.iter().map(|s| s.done()).collect();
    assert_eq!(done, expected);
    b.nlb.with(|s| {
        assert!(s.group_arn(&group(2, &b)).is_none());
        assert!(
            s.port_of(&b.lb_arn, &group(1, &b)).is_some(),
            "broker 1 untouched"
        );
        let boot = s
            .group_arn(&registry::bootstrap_group_name("orders", &b.lb_arn))
            .unwrap();
        assert_eq!(s.groups[&boot].targets.len(), 1);
    });
    assert_eq!(props(&y), PROPS);
    assert!(y.decommission(&ctx, false).await.unwrap().is_empty());
}

#[tokio::test]
async fn broker_rack_is_written_with_the_listener_and_a_different_one_is_reported() {
    let b = Bench::new();
    let mut a = b.host(3);
    let path = a.config.broker.server_properties.clone();
    std::fs::write(&path, format!("{PROPS}broker.rack=rack-from-cm\n")).unwrap();
    // Unset: broker.rack is left alone.
    let (_, executed, _) = plan_and_execute(&a).await;
    assert!(props(&a).contains("broker.rack=rack-from-cm\n"));
    assert!(executed
        .iter()
        .all(|s| !s.to_string().contains("broker.rack")));
    // Set to the AZ ID: replaced, reported, in the same kind of write.
    a.config.broker.rack = Some(crate::config::HostTemplate::parse("{az_id}").unwrap());
    let (planned, executed, _) = plan_and_execute(&a).await;
    assert_eq!(executed, planned);
    assert_eq!(planned.len(), 1, "{planned:?}");
    assert_eq!(
        planned[0].to_string(),
        format!(
            "write {}: advertised kafka-use1-az6.orders.example.internal:10004 -> \
             kafka-use1-az6.orders.example.internal:10004; broker.rack rack-from-cm -> use1-az6",
            path.display()
        )
    );
    assert!(props(&a).contains("broker.rack=use1-az6\n"));
    let (again, _, _) = plan_and_execute(&a).await;
    assert!(again.is_empty(), "{again:?}");
}

/// Targets of the bootstrap group.
fn bootstrap_targets(b: &Bench) -> Vec<(String, u16)> {
    let name = registry::bootstrap_group_name("orders", &b.lb_arn);
    b.nlb
        .with(|s| s.groups[&s.group_arn(&name).unwrap()].targets.clone())
}

/// Broker `id`'s claim as the NLB holds it: (listener ARN, port, group ARN, group targets).
fn claim_of(b: &Bench, id: i32) -> (String, u16, String, Vec<(String, u16)>) {
    b.nlb.with(|s| {
        let tg = s.group_arn(&group(id, b)).unwrap();
        let (arn, l) = s.listeners.iter().find(|(_, l)| l.tg == tg).unwrap();
        (
            arn.clone(),
            l.port,
            tg.clone(),
            s.groups[&tg].targets.clone(),
        )
    })
}

#[tokio::test]
async fn a_leaving_instance_is_drained_and_keeps_its_claim_and_its_file() {
    let b = Bench::new();
    let (x, a) = (b.host(1), b.host(3));
    for h in [&x, &a] {
        h.pass(&h.context().await.unwrap()).await.unwrap();
    }
    let me = a.context().await.unwrap().identity.instance_id;
    let other = x.context().await.unwrap().identity.instance_id;
    let claim = claim_of(&b, 3);
    let path = a.config.broker.server_properties.clone();
    let (bytes, mtime) = (
        std::fs::read(&path).unwrap(),
        path.metadata().unwrap().modified().unwrap(),
    );
    a.metadata.set(
        SPOT_ACTION_PATH,
        Some(r#"{"action": "terminate", "time": "2024-05-01T12:00:00Z"}"#),
    );

    // `plan` shows the drain, the pass does exactly that.
    let before = a.calls.total();
    let (planned, executed, _) = plan_and_execute(&a).await;
    assert_eq!(
        planned,
        vec![Step::LeaveBootstrap {
            targets: vec![(me.clone(), 9094)],
            reason: "Spot interruption: terminate at 2024-05-01T12:00:00Z".into(),
        }]
    );
    assert_eq!(executed, planned);
    assert_eq!(bootstrap_targets(&b), vec![(other.clone(), 9094)]);
    assert_eq!(
        claim_of(&b, 3),
        claim,
        "listener, group and registration kept"
    );
    assert_eq!(std::fs::read(&path).unwrap(), bytes, "file unchanged");
    assert_eq!(
        path.metadata().unwrap().modified().unwrap(),
        mtime,
        "not rewritten"
    );
    // Three reads and the deregistration (plan_and_execute reads once more for its context).
    let calls = a.calls.snapshot();
    assert_eq!(calls.get("DeregisterTargets"), Some(&1), "{calls:?}");
    assert_eq!(
        calls.get("DescribeLoadBalancers"),
        Some(&1),
        "only the first pass's check"
    );
    assert_eq!(a.calls.total() - before, 4);

    // Later passes keep it drained and still leave the file alone, even after it drifted.
    std::fs::write(&path, PROPS).unwrap();
    let ctx = a.context().await.unwrap();
    let report = a.pass(&ctx).await.unwrap();
    assert!(report.changes.is_empty(), "{:?}", report.changes);
    assert!(report.lifecycle.is_leaving() && !report.properties_written);
    assert_eq!((report.port, &report.listener_arn), (claim.1, &claim.0));
    assert_eq!(props(&a), PROPS);
    assert_eq!(bootstrap_targets(&b), vec![(other.clone(), 9094)]);

    // Registered again behind its back: taken out again.
    let boot = report.bootstrap_target_group_arn.clone();
    b.nlb.with(|s| {
        s.groups
            .get_mut(&boot)
            .unwrap()
            .targets
            .push((me.clone(), 9094))
    });
    let report = a.pass(&ctx).await.unwrap();
    assert!(matches!(report.changes[..], [Step::LeaveBootstrap { .. }]));
    assert_eq!(bootstrap_targets(&b), vec![(other.clone(), 9094)]);

    // Metadata no longer says so: a pass of the same process stays drained.
    a.metadata.set(SPOT_ACTION_PATH, None);
    let report = a.pass_after(&ctx, &report.lifecycle).await.unwrap();
    assert!(report.changes.is_empty() && report.lifecycle.is_leaving());
    assert_eq!(bootstrap_targets(&b), vec![(other, 9094)]);
    assert_eq!(claim_of(&b, 3), claim);
    // Without that memory (a new process on a staying instance) it would be wired again.
    let observed = a.observe(&ctx).await.unwrap();
    assert_eq!(observed.lifecycle, Lifecycle::Staying);
    assert!(!a.plan(&ctx, &observed).unwrap().is_empty());
}

#[tokio::test]
async fn a_replacement_gets_the_drained_brokers_port_back() {
    let b = Bench::new();
    let old = b.host(3);
    old.pass(&old.context().await.unwrap()).await.unwrap();
    let (_, port, _, _) = claim_of(&b, 3);
    // Scale-in: Auto Scaling moves the instance to Terminated.
    old.metadata.set(TARGET_STATE_PATH, Some("Terminated"));
    let drained = old.pass(&old.context().await.unwrap()).await.unwrap();
    assert_eq!(drained.changes.len(), 1);
    assert!(bootstrap_targets(&b).is_empty());
    // ELB deregisters a terminated instance; its replacement (same broker id) comes up.
    let new = b.host_with(3, "i-0000000000000beef", "10001-10010", "");
    let report = new.pass(&new.context().await.unwrap()).await.unwrap();
    assert_eq!(report.port, port, "same port");
    assert_eq!(
        bootstrap_targets(&b),
        vec![("i-0000000000000beef".to_string(), 9094)]
    );
    assert_eq!(
        claim_of(&b, 3).3,
        vec![("i-0000000000000beef".to_string(), 9094)]
    );
    assert!(props(&new).contains(&format!(":{port}\n")));
}

#[tokio::test]
async fn an_instance_leaving_before_its_first_pass_claims_nothing() {
    let b = Bench::new();
    let a = b.host(3);
    a.metadata.set(TARGET_STATE_PATH, Some("Warmed:Stopped"));
    let ctx = a.context().await.unwrap();
    let observed = a.observe(&ctx).await.unwrap();
    assert!(a.plan(&ctx, &observed).unwrap().is_empty());
    let report = a.pass(&ctx).await.unwrap();
    assert!(report.changes.is_empty() && report.lifecycle.is_leaving());
    assert_eq!(report.port, 0);
    assert!(b
        .nlb
        .with(|s| s.groups.is_empty() && s.listeners.is_empty()));
    assert_eq!(props(&a), PROPS);
}

/// In a burst, most ports seen free when the NLB was read are gone by the claim: after one
/// refused port the agent reads the NLB again instead of trying each stale port in turn.
#[tokio::test]
async fn after_a_taken_port_the_nlb_is_read_again_instead_of_trying_stale_ports() {
    let b = Bench::new();
    let first = b.host(1);
    first.pass(&first.context().await.unwrap()).await.unwrap();
    let a = b.host(3);
    // Between broker 3's observation and its claim, other hosts take every port but 10009.
    let lb = b.lb_arn.clone();
    b.nlb.before_next_create_listener(move |s| {
        for port in 10001..=10010 {
            if port != 10009 && s.listener_on(&lb, port).is_none() {
                let tg = s.add_group(
                    &format!("kp-orders-x-b{port}"),
                    "traffic-port",
                    &[("kplink:cluster", "orders")],
                );
                s.add_listener(&lb, port, &tg, &[]);
            }
        }
    });
    let report = a.pass(&a.context().await.unwrap()).await.unwrap();
    assert_eq!(report.port, 10009);
    assert_eq!(report.claim_collisions, 1);
    // One refused CreateListener, one more read, then the free port.
    assert_eq!(
        report.aws_calls.get("CreateListener"),
        Some(&2),
        "{:?}",
        report.aws_calls
    );
    assert_eq!(
        report.aws_calls.get("DescribeListeners"),
        Some(&2),
        "{:?}",
        report.aws_calls
    );
}

/// Kafka refuses to start when two listeners share a port ("Each listener must have a different
/// port", `CoreUtils.listenerListToEndPoints`): a file whose `EXTERNAL` listener already binds
/// the managed listener's port 9094 is refused before any AWS call, naming the port and the
/// setting to change; the file stays as it is. A rule the file already breaks is left alone.
#[tokio::test]
async fn an_edit_kafka_would_refuse_to_start_on_is_refused_before_any_aws_call() {
    let b = Bench::new();
    let a = b.host(1);
    let clash = PROPS
        .replace(
            "listeners=PLAINTEXT://:9092\n",
            "listeners=PLAINTEXT://:9092,EXTERNAL://:9094\n",
        )
        .replace(
            "PLAINTEXT:PLAINTEXT\n",
            "PLAINTEXT:PLAINTEXT,EXTERNAL:SSL\n",
        );
    std::fs::write(&a.config.broker.server_properties, &clash).unwrap();
    let ctx = a.context().await.unwrap();
    let before = a.calls.total();
    let err = a.pass(&ctx).await.unwrap_err();
    assert!(matches!(err, Error::KafkaWouldRefuse { .. }), "{err}");
    let line = err.to_string();
    for needle in ["9094", "different port", "listener.port", "unchanged"] {
        assert!(line.contains(needle), "{needle}: {line}");
    }
    assert!(!line.contains('\n'), "{line}");
    assert_eq!(a.calls.total(), before, "an AWS call was made");
    assert_eq!(props(&a), clash);
    assert!(b
        .nlb
        .with(|s| s.groups.is_empty() && s.listeners.is_empty()));
    // Another port for the managed listener: accepted.
    let mut moved = b.host(1);
    moved.config.listener.port = 9095;
    moved.pass(&moved.context().await.unwrap()).await.unwrap();
    assert!(
        props(&moved).contains("PRIVATELINK://:9095"),
        "{}",
        props(&moved)
    );
}

/// The accountant's hourly sweep sets every listener of this cluster (claims and bootstrap,
/// e.g. made by an older agent with AWS's 350 s) to the idle timeout above Kafka's, and never
/// touches another cluster's listener on the same NLB.
#[tokio::test]
async fn the_idle_timeout_sweep_fixes_this_clusters_listeners_only() {
    let b = Bench::new();
    let a = b.host(3);
    a.pass(&a.context().await.unwrap()).await.unwrap();
    let foreign_tg = b.nlb.with(|s| {
        let name = registry::dedicated_group_name("billing", &b.lb_arn, 7);
        let tg = s.add_group(&name, "traffic-port", &[("kplink:cluster", "billing")]);
        s.add_listener(&b.lb_arn, 10007, &tg, &[("kplink:cluster", "billing")]);
        for l in s.listeners.values_mut() {
            l.idle_timeout = crate::idle::AWS_DEFAULT_SECONDS;
        }
        tg
    });
    let swept = crate::idle::sweep(&a.lb, &a.config, 660).await.unwrap();
    assert_eq!(swept.checked, 2, "bootstrap and claim: {swept:?}");
    assert_eq!(swept.changed.len(), 2);
    let idle: Vec<(u16, u32)> = b.nlb.with(|s| {
        s.listeners
            .values()
            .map(|l| (l.port, l.idle_timeout))
            .collect()
    });
    assert!(
        idle.contains(&(10000, 660)) && idle.contains(&(10007, 350)),
        "{idle:?} ({foreign_tg})"
    );
    assert_eq!(
        idle.iter().filter(|(_, s)| *s == 660).count(),
        2,
        "{idle:?}"
    );
    // Nothing to do the next time: one read per listener, no write.
    let again = crate::idle::sweep(&a.lb, &a.config, 660).await.unwrap();
    assert!(again.changed.is_empty());
}

/// A step is an instruction: the executor claims the ports the `ClaimPort` step lists, in its
/// order, and creates the groups it names; it computes none of them again.
#[tokio::test]
async fn the_executor_does_what_the_steps_say() {
    let b = Bench::new();
    let a = b.host(3);
    let ctx = a.context().await.unwrap();
    let observed = a.observe(&ctx).await.unwrap();
    let mut steps = a.plan(&ctx, &observed).unwrap();
    let planned_first = steps.iter().find_map(|s| match s {
        Step::ClaimPort { candidates, .. } => Some(candidates[0]),
        _ => None,
    });
    // Another port than the plan's first choice, and 10009 after it.
    let other = if planned_first == Some(10008) {
        10002
    } else {
        10008
    };
    for step in &mut steps {
        if let Step::ClaimPort {
            candidates,
            first_candidate,
            ..
        } = step
        {
            *candidates = vec![other, 10009];
            *first_candidate = other;
        }
    }
    let mut progress = Progress::from_observed(&observed);
    a.execute(&ctx, &observed, &steps, &mut progress)
        .await
        .unwrap();
    assert_eq!(progress.claim.as_ref().map(|c| c.port), Some(other));
    assert_eq!(
        b.nlb.with(|s| s.port_of(&b.lb_arn, &group(3, &b))),
        Some(other)
    );
    // Its port taken by another host first: the next in the step's list.
    let c = b.host(4);
    let ctx = c.context().await.unwrap();
    let observed = c.observe(&ctx).await.unwrap();
    let mut steps = c.plan(&ctx, &observed).unwrap();
    for step in &mut steps {
        if let Step::ClaimPort { candidates, .. } = step {
            *candidates = vec![10010, 10005];
        }
    }
    let tg = b
        .nlb
        .with(|s| s.add_group("kp-someone-else", "traffic-port", &[]));
    b.nlb.with(|s| s.add_listener(&b.lb_arn, 10010, &tg, &[]));
    let mut progress = Progress::from_observed(&observed);
    c.execute(&ctx, &observed, &steps, &mut progress)
        .await
        .unwrap();
    assert_eq!(progress.claim.as_ref().map(|cl| cl.port), Some(10005));
}

/// A PEM keystore (key and self-signed certificate for `names`) at `path`.
fn pem_keystore(path: &Path, names: &[&str]) {
    let key = rcgen::KeyPair::generate().unwrap();
    let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    let cert = rcgen::CertificateParams::new(names)
        .unwrap()
        .self_signed(&key)
        .unwrap();
    std::fs::write(path, format!("{}{}", key.serialize_pem(), cert.pem())).unwrap();
}

#[tokio::test]
async fn an_uncovered_certificate_stops_the_pass_before_any_nlb_call() {
    let b = Bench::new();
    let a = b.host(3);
    let keystore = b.dir.path().join("broker.pem");
    pem_keystore(&keystore, &["*.other.internal", "broker1.example.internal"]);
    let text = format!(
        "{}listener.name.privatelink.ssl.keystore.type=PEM\nlistener.name.privatelink.ssl.keystore.location={}\n",
        PROPS.replace("PLAINTEXT:PLAINTEXT", "PLAINTEXT:PLAINTEXT,PRIVATELINK:SSL"),
        keystore.display()
    );
    std::fs::write(&a.config.broker.server_properties, &text).unwrap();
    let ctx = a.context().await.unwrap();
    let before = a.calls.total();
    let err = a.pass(&ctx).await.unwrap_err();
    assert_eq!(err.kind(), "certificate");
    assert_eq!(
        err.to_string(),
        format!(
            "certificate check: {} (listener PRIVATELINK): does not cover kafka-use1-az6.orders.example.internal; it names *.other.internal, broker1.example.internal (nothing was created, server.properties unchanged)",
            keystore.display()
        )
    );
    assert_eq!(a.calls.total(), before, "no NLB call");
    assert_eq!(props(&a), text);
    // A wildcard over the zonal names: the pass goes on and reports the certificate.
    pem_keystore(&keystore, &["*.orders.example.internal"]);
    let report = a.pass(&ctx).await.unwrap();
    let Some(crate::tls::Outcome::Checked(c)) = &report.certificate else {
        panic!("{:?}", report.certificate);
    };
    assert_eq!(c.names, ["*.orders.example.internal"]);
    assert!(props(&a).contains("PRIVATELINK://kafka-use1-az6.orders.example.internal:"));
}

/// Kafka not running: it reads the file when it starts, so nothing is restarted.
struct KafkaDown;

impl crate::kafka::KafkaCluster for KafkaDown {
    async fn probe(&self) -> crate::kafka::Liveness {
        crate::kafka::Liveness::NotListening
    }
    async fn snapshot(&self) -> Result<crate::kafka::ClusterSnapshot, crate::kafka::KafkaError> {
        unreachable!("a stopped Kafka is never asked")
    }
    async fn advertised_listeners(
        &self,
        _: i32,
    ) -> Result<Option<String>, crate::kafka::KafkaError> {
        unreachable!("a stopped Kafka is never asked")
    }
    async fn set_advertised_listeners(
        &self,
        _: i32,
        _: &str,
    ) -> Result<(), crate::kafka::KafkaError> {
        unreachable!("a stopped Kafka is never asked")
    }
    async fn clear_dynamic_advertised_listeners(
        &self,
        _: i32,
    ) -> Result<bool, crate::kafka::KafkaError> {
        unreachable!("a stopped Kafka is never asked")
    }
}

impl crate::restart::ServiceManager for KafkaDown {
    async fn restart(&self) -> Result<(), crate::restart::RestartError> {
        unreachable!("a stopped Kafka is never restarted")
    }
}

/// Waits (real time: the daemon's file watcher is a real one) until `ok`, at most 5 s (on the
/// fakes each step takes milliseconds).
async fn eventually(what: &str, ok: impl Fn() -> bool) {
    let started = std::time::Instant::now();
    while !ok() {
        assert!(started.elapsed() < Duration::from_secs(5), "never: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The daemon loop itself, in process on the fakes (mini-redis's `tests/server.rs` style): its
/// first pass wires the broker and writes the file, a rewrite of the file by someone else wakes
/// it and is repaired, its last pass is recorded for `status`, and the injected shutdown stops
/// it cleanly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_wires_repairs_a_rewritten_file_and_stops_on_shutdown() {
    let b = Bench::new();
    let state = tempfile::tempdir().unwrap();
    let extra = format!(
        "[daemon]\nstate_dir = \"{}\"\nmetrics_listen = \"\"\n",
        state.path().display()
    );
    let a = b.host_with(3, "i-0000000000000d003", "10001-10010", &extra);
    let config = a.config.clone();
    let path = config.broker.server_properties.clone();
    let advertises = || {
        std::fs::read_to_string(&path)
            .unwrap()
            .contains("PRIVATELINK://kafka-use1-az6")
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let reloaded = config.clone();
    let daemon = crate::daemon::run(
        a,
        None,
        |_: &Config| Ok((KafkaDown, KafkaDown)),
        move || Ok(reloaded.clone()),
        async {
            let _ = stopped.await;
        },
    );
    let driver = async {
        eventually("the first pass writes the file", advertises).await;
        assert!(b
            .nlb
            .with(|s| s.port_of(&b.lb_arn, &group(3, &b)).is_some()));
        // Config management puts its own version back.
        std::fs::write(&path, PROPS).unwrap();
        // Repaired on the watcher's wake-up, well before the timer's next pass (2.5 s at the
        // earliest after a pass that changed the NLB).
        let rewritten = std::time::Instant::now();
        eventually("the rewritten file is repaired", advertises).await;
        assert!(
            rewritten.elapsed() < Duration::from_millis(2500),
            "repaired only after {:?}: the rewrite did not wake the loop",
            rewritten.elapsed()
        );
        eventually("the last pass is recorded", || {
            crate::daemon::read_last_pass(&config).is_some_and(|l| l.ok && l.port.is_some())
        })
        .await;
        stop.send(()).unwrap();
    };
    let (result, ()) = tokio::join!(daemon, driver);
    result.unwrap();
}

/// `decommission` also finds this broker's dedicated group when no listener forwards to it (a
/// pass killed before its claim): by this release's name, or release 0.1's name on the first
/// NLB unless another load balancer uses that group.
#[tokio::test]
async fn decommission_finds_a_group_left_without_its_claim() {
    let deleted_groups = |steps: &[crate::reconcile::DecommissionStep]| -> Vec<String> {
        steps
            .iter()
            .filter_map(|s| match s {
                crate::reconcile::DecommissionStep::DeleteTargetGroup { name, .. } => {
                    Some(name.clone())
                }
                _ => None,
            })
            .collect()
    };
    // This release's name.
    let b = Bench::new();
    let a = b.host(3);
    b.nlb
        .with(|s| s.add_group(&group(3, &b), "traffic-port", &[]));
    let ctx = a.context().await.unwrap();
    let steps = a.decommission_plan(&ctx, true).await.unwrap();
    assert_eq!(deleted_groups(&steps), vec![group(3, &b)]);

    // Release 0.1's name, on the first NLB, used by no other load balancer.
    let b = Bench::new();
    let a = b.host(3);
    let legacy = crate::compat::legacy_dedicated_group_name("orders", 3);
    b.nlb.with(|s| s.add_group(&legacy, "9094", &[]));
    let ctx = a.context().await.unwrap();
    let steps = a.decommission_plan(&ctx, true).await.unwrap();
    assert_eq!(deleted_groups(&steps), vec![legacy.clone()]);

    // ... but another load balancer forwards to it: not this broker's to delete.
    let other = b
        .nlb
        .with(|s| s.add_load_balancer("other", &["us-east-1a"]));
    b.nlb.with(|s| {
        let tg = s.group_arn(&legacy).unwrap();
        s.add_listener(&other, 10001, &tg, &[]);
    });
    let steps = a.decommission_plan(&ctx, true).await.unwrap();
    assert!(deleted_groups(&steps).is_empty(), "{steps:?}");
}

/// `server.properties` is read once per pass: the broker id, the observation and the write's
/// look for a change on disk share one read. After its own write the agent reads once more (a
/// replacement racing the write must not pass for it), then shares that read again. A rewrite on
/// disk (config management reverting the file) is read again and repaired.
#[tokio::test]
async fn a_pass_reads_server_properties_once() {
    let b = Bench::new();
    let a = b.host(3);
    let ctx = a.context().await.unwrap();
    assert_eq!(a.file.reads(), 1, "the broker id's read");
    let first = a.pass(&ctx).await.unwrap();
    assert!(first.properties_written);
    assert_eq!(a.file.reads(), 1, "unchanged since: no read");
    a.node_role().unwrap();
    a.node_role().unwrap();
    assert_eq!(a.file.reads(), 2, "one look after the agent's write");
    std::fs::write(&a.config.broker.server_properties, PROPS).unwrap();
    let again = a.pass(&ctx).await.unwrap();
    assert!(again.properties_written, "the reverted file is seen");
    assert_eq!(a.file.reads(), 3, "one read for the changed file");
    assert!(props(&a).contains(&format!(":{}\n", again.port)));
}
