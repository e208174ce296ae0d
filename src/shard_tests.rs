//! Whole passes over several NLBs (`nlb.load_balancer_arns`) on the in-process fakes: claims
//! spread by broker id, stable claims, one bootstrap group per NLB, a race for an NLB's last port, the
//! all-full error, the steady state reading one NLB, decommission from any NLB, and moving from
//! `load_balancer_arn` to `load_balancer_arns`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::Config;
use crate::fakes::{FakeImds, FakeNlb, FakeTags};
use crate::model::{Agent, Error};
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
            file: Default::default(),
            steady: Default::default(),
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

async fn pass(agent: &TestAgent) -> Result<crate::model::PassReport, Error> {
    agent.pass(&agent.context().await?).await
}

#[tokio::test]
async fn brokers_spread_over_the_nlbs_by_id_and_the_tenth_fails_cleanly() {
    let b = Shards::new();
    for id in 1..=9 {
        let a = b.host(id);
        let report = pass(&a).await.unwrap();
        // Broker id mod 3: a fleet booting at once splits over the NLBs, each reading one.
        let shard = usize::try_from(id).unwrap() % 3;
        assert_eq!(
            (report.shard, &report.load_balancer_arn),
            (shard, &b.lbs[shard])
        );
        assert_eq!(report.aws_calls.get("DescribeListeners"), Some(&1));
        // Its turn on that NLB picks its port: no two brokers try the same one.
        assert_eq!(report.port, 10001 + u16::try_from((id / 3) % 3).unwrap());
        assert_eq!(report.claim_collisions, 0);
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
    for id in 1..=9 {
        pass(&b.host(id)).await.unwrap();
    }
    assert_eq!(b.claim_of(7).map(|c| c.0), Some(1));
    // Broker 3 leaves NLB 0 (decommissioned): a port is free there, but broker 7 stays.
    let three = b.host(3);
    let done = three
        .decommission(&three.context().await.unwrap(), false)
        .await
        .unwrap();
    assert!(done.iter().any(|d| d.contains("of shard 0")), "{done:?}");
    let seven = b.host(7);
    let before = seven.calls.total();
    let report = pass(&seven).await.unwrap();
    assert!(report.changes.is_empty(), "{:?}", report.changes);
    assert_eq!(report.shard, 1);
    // The file names NLB 1: one DescribeListeners (of NLB 1) and two target reads.
    assert_eq!(seven.calls.total() - before, 3, "{:?}", report.aws_calls);
    assert_eq!(report.aws_calls.get("DescribeListeners"), Some(&1));
    // A replacement of broker 7 with an empty file finds the claim on NLB 1, its first NLB.
    std::fs::write(&seven.config.broker.server_properties, PROPS).unwrap();
    let replacement = b.host(7);
    let report = pass(&replacement).await.unwrap();
    assert_eq!((report.shard, Some((1, report.port))), (1, b.claim_of(7)));
    assert_eq!(report.aws_calls.get("DescribeListeners"), Some(&1));
    // A new broker 10 (order: NLB 1, 2, 0) passes the full NLBs 1 and 2 and takes the port
    // freed on NLB 0; its replacement looks in the same order and finds it there.
    let ten = b.host(10);
    assert_eq!(pass(&ten).await.unwrap().shard, 0);
    std::fs::write(&ten.config.broker.server_properties, PROPS).unwrap();
    let report = pass(&b.host(10)).await.unwrap();
    assert_eq!(report.shard, 0);
    assert!(
        report.changes.iter().all(|s| !s.touches_nlb()),
        "{:?}",
        report.changes
    );
    assert_eq!(report.aws_calls.get("DescribeListeners"), Some(&3));
}

#[tokio::test]
async fn an_nlb_at_the_listener_quota_is_skipped() {
    let b = Shards::new();
    pass(&b.host(3)).await.unwrap();
    // NLB 0 now holds 2 listeners; 48 more of someone else's fill its quota of 50.
    let foreign = b.nlb.with(|s| s.add_group("someone", "traffic-port", &[]));
    let lb0 = b.lbs[0].clone();
    b.nlb.with(|s| {
        for port in 0..48 {
            s.add_listener(&lb0, 20000 + port, &foreign, &[]);
        }
    });
    // Broker 6's first NLB is 0: it is skipped for the next in its order.
    let six = b.host(6);
    let report = pass(&six).await.unwrap();
    assert_eq!(report.shard, 1, "{:?}", report.changes);
    // `plan` says why NLB 0 was skipped.
    let six = b.host(6);
    let ctx = six.context().await.unwrap();
    std::fs::write(&six.config.broker.server_properties, PROPS).unwrap();
    let observed = six.observe(&ctx).await.unwrap();
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

/// The quota pre-check, not the race path: an NLB's last listener slots are counted before any
/// CreateListener, the bootstrap listener a fresh NLB still needs included. NLB 0 holds 48
/// listeners of someone else's and no bootstrap yet: its first broker needs two slots (bootstrap
/// and claim), which is exactly 50; the next one finds it full and goes to the next NLB of its
/// order without a single refused CreateListener.
#[tokio::test]
async fn an_nlbs_last_slots_are_counted_before_claiming_bootstrap_included() {
    let b = Shards::new();
    let foreign = b.nlb.with(|s| s.add_group("someone", "traffic-port", &[]));
    let lb0 = b.lbs[0].clone();
    b.nlb.with(|s| {
        for port in 0..48 {
            s.add_listener(&lb0, 20000 + port, &foreign, &[]);
        }
    });
    // Broker 3's first NLB is 0: 48 + bootstrap + claim = 50 fits.
    let three = b.host(3);
    let report = pass(&three).await.unwrap();
    assert_eq!(report.shard, 0, "{:?}", report.changes);
    assert_eq!(
        b.nlb
            .with(|s| s.listeners.values().filter(|l| l.lb == lb0).count()),
        50
    );
    // Broker 6's first NLB is 0 too: full now, so NLB 1, with no CreateListener tried on 0.
    let six = b.host(6);
    let report = pass(&six).await.unwrap();
    assert_eq!(report.shard, 1, "{:?}", report.changes);
    assert_eq!(report.claim_collisions, 0);
    assert_eq!(
        report.aws_calls.get("CreateListener"),
        Some(&2),
        "{:?}",
        report.aws_calls
    );
    assert!(report.races.is_empty(), "{:?}", report.races);
    // One slot fewer: with 49 of someone else's and no bootstrap, a first broker does not fit
    // either (49 + bootstrap + claim = 51), and none of its calls goes to that NLB's listeners.
    let c = Shards::new();
    let foreign = c.nlb.with(|s| s.add_group("someone", "traffic-port", &[]));
    let lb0 = c.lbs[0].clone();
    c.nlb.with(|s| {
        for port in 0..49 {
            s.add_listener(&lb0, 20000 + port, &foreign, &[]);
        }
    });
    let report = pass(&c.host(3)).await.unwrap();
    assert_eq!(report.shard, 1);
    assert_eq!(report.claim_collisions, 0);
    assert_eq!(
        c.nlb
            .with(|s| s.listeners.values().filter(|l| l.lb == lb0).count()),
        49,
        "nothing created on the full NLB"
    );
}
