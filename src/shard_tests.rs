//! Whole passes over several NLBs (`nlb.load_balancer_arns`) on the in-process fakes: fill
//! order, stable claims, one bootstrap group per NLB, a race for an NLB's last port, the
//! all-full error, the steady state reading one NLB, decommission from any NLB, and moving from
//! `load_balancer_arn` to `load_balancer_arns`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::Config;
use crate::fakes::{FakeImds, FakeNlb, FakeTags};
use crate::reconcile::{Agent, Error};
use crate::registry;

use crate::pass_tests::{PROPS, ZONES};

type TestAgent = Agent<FakeImds, FakeNlb, FakeTags>;

/// Three NLBs in three zones, a 3-port range on each: 9 brokers fit.
struct Shards {
    nlb: FakeNlb,
    lbs: Vec<String>,
    dir: tempfile::TempDir,
}

impl Shards {
    fn new() -> Shards {
        let nlb = FakeNlb::default();
        let zones: Vec<&str> = ZONES.iter().map(|z| z.0).collect();
        let lbs = ["kafka-a", "kafka-b", "kafka-c"]
            .iter()
            .map(|name| nlb.with(|s| s.add_load_balancer(name, &zones)))
            .collect();
        Shards {
            nlb,
            lbs,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn nlb_key(&self) -> String {
        format!(
            "load_balancer_arns = [{}]",
            self.lbs
                .iter()
                .map(|l| format!("{l:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    }

    fn host(&self, id: i32) -> TestAgent {
        self.host_with(
            id,
            "kafka-{az_id}-s{shard}.orders.example.internal",
            &self.nlb_key(),
        )
    }

    fn host_with(&self, id: i32, template: &str, nlb_key: &str) -> TestAgent {
        let instance = format!("i-{id:017x}");
        let dir = self.dir.path().join(&instance);
        std::fs::create_dir_all(&dir).unwrap();
        let props = dir.join("server.properties");
        if !props.exists() {
            std::fs::write(&props, PROPS).unwrap();
        }
        let text = format!(
            "cluster = \"orders\"\n[broker]\nserver_properties = \"{}\"\n[listener]\n\
             advertised_host = \"{template}\"\n[nlb]\n{nlb_key}\nport_range = \"10001-10003\"\n",
            props.display(),
        );
        let config = Config::parse(&text, Path::new("/test/agent.toml")).unwrap();
        let (az, az_id) = ZONES[(id as usize) % 3];
        let nlb = self.nlb.another_host();
        Agent {
            config,
            config_path: PathBuf::from("/test/agent.toml"),
            metadata: FakeImds::host(&instance, az, az_id, Some(id)),
            calls: nlb.calls.clone(),
            lb: nlb,
            tags: FakeTags::default(),
            metadata_timeout: Duration::from_secs(1),
            checked: Default::default(),
        }
    }

    /// (NLB index, port) of broker `id`'s claim, looked up on every NLB.
    fn claim_of(&self, id: i32) -> Option<(usize, u16)> {
        self.lbs.iter().enumerate().find_map(|(i, lb)| {
            let name = registry::dedicated_group_name("orders", lb, id);
            self.nlb.with(|s| s.port_of(lb, &name)).map(|p| (i, p))
        })
    }

    /// Instance ids registered in NLB `i`'s bootstrap group.
    fn bootstrap_members(&self, i: usize) -> Vec<String> {
        let name = registry::bootstrap_group_name("orders", &self.lbs[i]);
        self.nlb.with(|s| {
            let mut ids: Vec<String> = s
                .group_arn(&name)
                .map(|arn| s.groups[&arn].targets.iter().map(|t| t.0.clone()).collect())
                .unwrap_or_default();
            ids.sort();
            ids
        })
    }
}

fn props(agent: &TestAgent) -> String {
    std::fs::read_to_string(&agent.config.broker.server_properties).unwrap()
}

async fn pass(agent: &TestAgent) -> Result<crate::reconcile::PassReport, Error> {
    agent.pass(&agent.context().await?).await
}

#[tokio::test]
async fn brokers_fill_the_nlbs_in_order_and_the_tenth_fails_cleanly() {
    let b = Shards::new();
    for id in 1..=9 {
        let a = b.host(id);
        let report = pass(&a).await.unwrap();
        let shard = usize::try_from(id - 1).unwrap() / 3;
        assert_eq!(
            (report.shard, &report.load_balancer_arn),
            (shard, &b.lbs[shard])
        );
        assert_eq!(b.claim_of(id), Some((shard, report.port)));
        let az_id = ZONES[(id as usize) % 3].1;
        let expected = format!(
            "kafka-{az_id}-s{shard}.orders.example.internal:{}",
            report.port
        );
        assert_eq!(report.advertised, expected);
        assert!(
            props(&a).contains(&format!("PRIVATELINK://{expected}\n")),
            "{}",
            props(&a)
        );
    }
    // Each NLB: its own bootstrap group holding exactly its own brokers.
    for i in 0..3 {
        let mut expected: Vec<String> = (1..=9)
            .filter(|id| b.claim_of(*id).unwrap().0 == i)
            .map(|id| format!("i-{id:017x}"))
            .collect();
        expected.sort();
        assert_eq!(b.bootstrap_members(i), expected, "shard {i}");
        assert_eq!(expected.len(), 3);
    }
    // The tenth: every NLB full. One error naming them all and the quota; nothing left behind.
    let groups_before = b.nlb.with(|s| s.groups.len());
    let tenth = b.host(10);
    let err = pass(&tenth).await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, Error::AllFull { count: 3, .. }), "{text}");
    assert!(
        text.starts_with("all 3 NLBs in nlb.load_balancer_arns are full"),
        "{text}"
    );
    assert!(text.contains("at most 50 listeners"), "{text}");
    for lb in &b.lbs {
        assert!(text.contains(lb.as_str()), "{text}");
    }
    assert_eq!(b.nlb.with(|s| s.groups.len()), groups_before);
    assert_eq!(props(&tenth), PROPS);
}

#[tokio::test]
async fn a_claim_stays_on_its_nlb_and_the_steady_state_reads_that_nlb_only() {
    let b = Shards::new();
    for id in 1..=7 {
        pass(&b.host(id)).await.unwrap();
    }
    assert_eq!(b.claim_of(7).map(|c| c.0), Some(2));
    // Broker 2 leaves NLB 0 (decommissioned): a port is free there, but broker 7 stays.
    let two = b.host(2);
    let done = two
        .decommission(&two.context().await.unwrap(), false)
        .await
        .unwrap();
    assert!(done.iter().any(|d| d.contains("of shard 0")), "{done:?}");
    let seven = b.host(7);
    let before = seven.calls.total();
    let report = pass(&seven).await.unwrap();
    assert!(report.changes.is_empty(), "{:?}", report.changes);
    assert_eq!(report.shard, 2);
    // The file names NLB 2: one DescribeListeners (of NLB 2) and two target reads.
    assert_eq!(seven.calls.total() - before, 3, "{:?}", report.aws_calls);
    assert_eq!(report.aws_calls.get("DescribeListeners"), Some(&1));
    // A replacement of broker 7 with an empty file finds the claim on NLB 2 (reading all).
    std::fs::write(&seven.config.broker.server_properties, PROPS).unwrap();
    let report = pass(&seven).await.unwrap();
    assert_eq!((report.shard, Some((2, report.port))), (2, b.claim_of(7)));
    // A new broker takes the freed port on NLB 0, the first with room.
    let eight = b.host(8);
    assert_eq!(pass(&eight).await.unwrap().shard, 0);
}

#[tokio::test]
async fn losing_an_nlbs_last_port_to_another_host_moves_the_claim_to_the_next() {
    let b = Shards::new();
    for id in [1, 2] {
        pass(&b.host(id)).await.unwrap();
    }
    // NLB 0 has one port left. Between broker 3's observation and its claim, another host
    // takes it (and NLB 0's listener quota is no issue: the port is what is gone).
    let lb0 = b.lbs[0].clone();
    let free = (10001..=10003)
        .find(|p| b.nlb.with(|s| s.listener_on(&lb0, *p)).is_none())
        .unwrap();
    b.nlb.before_next_create_listener(move |s| {
        let tg = s.add_group(
            "kp-orders-x-b99",
            "traffic-port",
            &[("kplink:cluster", "orders")],
        );
        s.add_listener(&lb0, free, &tg, &[]);
    });
    let three = b.host(3);
    let report = pass(&three).await.unwrap();
    assert_eq!(report.shard, 1);
    assert!(
        report
            .races
            .iter()
            .any(|r| r.contains("shard 0") && r.contains("filled up")),
        "{:?}",
        report.races
    );
    assert_eq!(b.claim_of(3).map(|c| c.0), Some(1));
    // Nothing left on NLB 0 for broker 3; its file names NLB 1.
    let on_zero = registry::dedicated_group_name("orders", &b.lbs[0], 3);
    assert!(b.nlb.with(|s| s.group_arn(&on_zero)).is_none());
    assert!(props(&three).contains("-s1.orders.example.internal:"));
    assert_eq!(b.bootstrap_members(1), vec![format!("i-{:017x}", 3)]);
}

#[tokio::test]
async fn an_nlb_at_the_listener_quota_is_skipped() {
    let b = Shards::new();
    pass(&b.host(1)).await.unwrap();
    // NLB 0 now holds 2 listeners; 48 more of someone else's fill its quota of 50.
    let foreign = b.nlb.with(|s| s.add_group("someone", "traffic-port", &[]));
    let lb0 = b.lbs[0].clone();
    b.nlb.with(|s| {
        for port in 0..48 {
            s.add_listener(&lb0, 20000 + port, &foreign, &[]);
        }
    });
    let two = b.host(2);
    let report = pass(&two).await.unwrap();
    assert_eq!(report.shard, 1, "{:?}", report.changes);
    // `plan` says why NLB 0 was skipped.
    let ctx = two.context().await.unwrap();
    std::fs::write(&two.config.broker.server_properties, PROPS).unwrap();
    let observed = two.observe(&ctx).await.unwrap();
    assert_eq!(observed.shard, 1, "stable claim");
}

#[tokio::test]
async fn moving_to_load_balancer_arns_keeps_every_claim_and_file() {
    let b = Shards::new();
    let one_key = format!("load_balancer_arn = {:?}", b.lbs[0]);
    let one = |id| b.host_with(id, "kafka-{az_id}.orders.example.internal", &one_key);
    for id in 1..=2 {
        pass(&one(id)).await.unwrap();
    }
    let files: Vec<String> = (1..=2).map(|id| props(&one(id))).collect();
    // The same NLB as a one-element list: no change at all, no write.
    let list_key = format!("load_balancer_arns = [{:?}]", b.lbs[0]);
    for id in 1..=2 {
        let a = b.host_with(id, "kafka-{az_id}.orders.example.internal", &list_key);
        let report = pass(&a).await.unwrap();
        assert!(report.changes.is_empty(), "{:?}", report.changes);
        assert_eq!(props(&a), files[id as usize - 1]);
        assert!(report.aws_calls.keys().all(|op| op.starts_with("Describe")));
    }
    // Then more NLBs (with {shard}): every claim stays on NLB 0, same port and group; only the
    // advertised name follows the new template.
    let ports: Vec<_> = (1..=2).map(|id| b.claim_of(id)).collect();
    for id in 1..=2 {
        let report = pass(&b.host(id)).await.unwrap();
        assert_eq!(report.shard, 0);
        assert!(
            report.changes.iter().all(|s| !s.touches_nlb()),
            "{:?}",
            report.changes
        );
    }
    assert_eq!((1..=2).map(|id| b.claim_of(id)).collect::<Vec<_>>(), ports);
}
