//! Whole `consumer-dns` runs on the in-process fake: plan, apply, rerun, waiting, and every
//! refusal leaving the zone unchanged.

use std::time::Duration;

use super::fake::{interface_endpoint, use1_azs, FakeAws};
use super::*;

const VPC: &str = "vpc-1";
const E: &str = "vpce-0abc";

fn world(pending_polls: u32) -> FakeAws {
    let mut aws = FakeAws {
        azs: use1_azs(),
        pending_polls,
        ..FakeAws::default()
    };
    let e = interface_endpoint(E, VPC, "us-east-1", &["us-east-1a", "us-east-1b"]);
    aws.endpoints.insert(E.into(), e);
    let gw = Endpoint {
        id: "vpce-0gw".into(),
        kind: "Gateway".into(),
        dns_names: vec![],
        ..interface_endpoint("vpce-0gw", VPC, "us-east-1", &[])
    };
    aws.endpoints.insert(gw.id.clone(), gw);
    aws.add_zone(
        "Z1",
        "orders.example.internal.",
        true,
        &[(VPC, "us-east-1")],
    );
    aws.add_zone("ZPUB", "orders.example.com.", false, &[]);
    aws.add_zone(
        "ZOTHER",
        "orders.example.internal.",
        true,
        &[("vpc-2", "us-east-1")],
    );
    aws
}

fn request(apply: bool) -> Request {
    Request {
        endpoint: E.into(),
        zone_id: "/hostedzone/Z1".into(),
        host_template: "kafka-{az_id}.orders.example.internal".into(),
        bootstrap_host: Some("kafka.orders.example.internal".into()),
        bootstrap_port: 10000,
        apply,
        insync_timeout: Duration::from_secs(120),
        clients: clients::Options::default(),
    }
}

fn cnames(aws: &FakeAws) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = aws
        .records_of("Z1")
        .into_iter()
        .filter(|r| r.kind == "CNAME")
        .map(|r| {
            assert_eq!(r.ttl, Some(plan::TTL));
            (r.name, r.values.join(","))
        })
        .collect();
    out.sort();
    out
}

#[tokio::test(start_paused = true)]
async fn plan_then_apply_then_nothing_to_do() {
    let aws = world(3);
    let report = execute(&aws, "us-east-1", &request(false)).await.unwrap();
    assert!(report.changes_pending && report.applied.is_none());
    assert_eq!(report.records.len(), 4);
    assert_eq!(
        report.bootstrap_servers,
        "kafka.orders.example.internal:10000"
    );
    assert_eq!(report.warnings.len(), 1, "{:?}", report.warnings);
    assert_eq!(
        aws.count("ChangeResourceRecordSets"),
        0,
        "a plan changes nothing"
    );
    let text = render(&report);
    assert!(text.contains(": 4 change(s) pending\n"), "{text}");
    assert!(
        text.ends_with("bootstrap.servers=kafka.orders.example.internal:10000\n"),
        "{text}"
    );

    let report = execute(&aws, "us-east-1", &request(true)).await.unwrap();
    let applied = report.applied.clone().expect("applied");
    assert_eq!(applied.status, "INSYNC");
    assert_eq!(aws.count("ChangeResourceRecordSets"), 1, "one batch");
    assert_eq!(aws.count("GetChange"), 3, "polled until INSYNC");
    let domain = "vpce-svc-0123456789abcdef0.us-east-1.vpce.amazonaws.com";
    let regional = format!("{E}-mmzfdbs8.{domain}");
    assert_eq!(
        cnames(&aws),
        vec![
            (
                "kafka-use1-az1.orders.example.internal.".into(),
                format!("{E}-mmzfdbs8-us-east-1b.{domain}")
            ),
            (
                "kafka-use1-az2.orders.example.internal.".into(),
                regional.clone()
            ),
            (
                "kafka-use1-az6.orders.example.internal.".into(),
                format!("{E}-mmzfdbs8-us-east-1a.{domain}")
            ),
            ("kafka.orders.example.internal.".into(), regional),
        ]
    );
    assert!(render(&report).contains("applied 4 change(s), change C"));

    for apply in [false, true] {
        let again = execute(&aws, "us-east-1", &request(apply)).await.unwrap();
        assert!(!again.changes_pending && again.applied.is_none());
        assert!(render(&again).contains(": nothing to do\n"));
    }
    assert_eq!(aws.count("ChangeResourceRecordSets"), 1, "idempotent");
}

#[tokio::test(start_paused = true)]
async fn drift_is_repaired_and_only_the_changed_record_is_written() {
    let aws = world(0);
    execute(&aws, "us-east-1", &request(true)).await.unwrap();
    aws.put("Z1", {
        let mut r = Record::cname(
            "kafka-use1-az6.orders.example.internal",
            "elsewhere.example.com",
        );
        r.ttl = Some(300);
        r
    });
    // The fake keeps both (put bypasses UPSERT): drop the original to simulate an overwrite.
    {
        let mut zones = aws.zones.lock().unwrap();
        let records = &mut zones.get_mut("Z1").unwrap().1;
        let first = records
            .iter()
            .position(|r| r.name == "kafka-use1-az6.orders.example.internal.")
            .unwrap();
        records.remove(first);
    }
    let report = execute(&aws, "us-east-1", &request(false)).await.unwrap();
    let changed: Vec<&str> = report
        .records
        .iter()
        .filter(|p| p.is_change())
        .map(|p| p.record.name.as_str())
        .collect();
    assert_eq!(changed, ["kafka-use1-az6.orders.example.internal"]);
    assert!(render(&report).contains("~ kafka-use1-az6.orders.example.internal. CNAME"));
    execute(&aws, "us-east-1", &request(true)).await.unwrap();
    assert!(
        !execute(&aws, "us-east-1", &request(false))
            .await
            .unwrap()
            .changes_pending
    );
}

#[tokio::test(start_paused = true)]
async fn refusals_are_one_line_and_change_nothing() {
    type Edit = Box<dyn Fn(&mut Request)>;
    let cases: Vec<(&str, Edit, &str, u8)> = vec![
        ("unknown endpoint", Box::new(|r| r.endpoint = "vpce-0nope".into()), "DescribeVpcEndpoints vpce-0nope failed: InvalidVpcEndpointId.NotFound", 1),
        ("gateway endpoint", Box::new(|r| r.endpoint = "vpce-0gw".into()), "vpce-0gw is a Gateway endpoint", 1),
        ("unknown zone", Box::new(|r| r.zone_id = "ZNOPE".into()), "GetHostedZone ZNOPE failed: NoSuchHostedZone", 1),
        ("public zone", Box::new(|r| r.zone_id = "ZPUB".into()), "hosted zone ZPUB (orders.example.com.) is public", 1),
        ("another VPC's zone", Box::new(|r| r.zone_id = "ZOTHER".into()), "hosted zone ZOTHER (orders.example.internal.) is not associated with vpc-1 (us-east-1), the VPC of endpoint vpce-0abc", 1),
        ("a name outside the zone", Box::new(|r| r.bootstrap_host = Some("kafka.example.com".into())), "kafka.example.com is not in hosted zone Z1", 1),
        ("a placeholder left", Box::new(|r| r.host_template = "kafka-{az_id}.{shard}.orders.example.internal".into()), "write the shard's index", 64),
    ];
    for (what, edit, want, code) in cases {
        let aws = world(0);
        let mut req = request(true);
        edit(&mut req);
        let e = execute(&aws, "us-east-1", &req).await.expect_err(what);
        let text = e.to_string();
        assert!(text.contains(want), "{what}: {text}");
        assert!(!text.contains('\n'), "{what}: one line: {text}");
        assert_eq!(e.exit_code(), code, "{what}");
        assert_eq!(aws.count("ChangeResourceRecordSets"), 0, "{what}");
        assert!(cnames(&aws).is_empty(), "{what}");
    }
    // The zone of another Region's VPC with the same id is not ours either.
    let aws = world(0);
    let e = execute(&aws, "eu-west-1", &request(true))
        .await
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("not associated with vpc-1 (eu-west-1)"),
        "{e}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_conflicting_record_stops_the_whole_batch() {
    let aws = world(0);
    aws.put(
        "Z1",
        Record {
            kind: "A".into(),
            ..Record::cname("kafka-use1-az2.orders.example.internal", "10.0.0.9")
        },
    );
    let e = execute(&aws, "us-east-1", &request(true))
        .await
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("kafka-use1-az2.orders.example.internal already has A 10.0.0.9"),
        "{e}"
    );
    assert_eq!(aws.count("ChangeResourceRecordSets"), 0);
}

#[tokio::test(start_paused = true)]
async fn waiting_for_insync_is_bounded() {
    let aws = world(u32::MAX);
    let mut req = request(true);
    req.insync_timeout = Duration::from_secs(30);
    let started = tokio::time::Instant::now();
    let e = execute(&aws, "us-east-1", &req).await.unwrap_err();
    let waited = started.elapsed();
    let text = e.to_string();
    assert!(
        text.contains("still PENDING after")
            && text.contains("hosted zone Z1")
            && text.contains("GetChange C"),
        "{text}"
    );
    assert_eq!(e.exit_code(), 1);
    assert!(
        waited >= Duration::from_secs(30) && waited < Duration::from_secs(31),
        "{waited:?}"
    );
    // Back-off: 0.25 s doubling to 5 s, so about a dozen polls in 30 s, not hundreds.
    let polls = aws.count("GetChange");
    assert!((6..=12).contains(&polls), "{polls} polls");
    // The records are written nonetheless; a rerun has nothing to do.
    assert!(
        !execute(&aws, "us-east-1", &request(false))
            .await
            .unwrap()
            .changes_pending
    );
}

#[test]
fn the_json_report_names_records_actions_and_roles() {
    let aws = world(0);
    let report =
        crate::consumer_dns::tests::block(execute(&aws, "us-east-1", &request(false))).unwrap();
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["changes_pending"], true);
    assert_eq!(
        json["bootstrap_servers"],
        "kafka.orders.example.internal:10000"
    );
    let first = &json["records"][0];
    assert_eq!(first["name"], "kafka-use1-az1.orders.example.internal");
    assert_eq!(first["role"], "zonal");
    assert_eq!(first["az_id"], "use1-az1");
    assert_eq!(first["az_name"], "us-east-1b");
    assert_eq!(first["action"], "create");
    assert_eq!(json["records"][1]["role"], "cross_zone");
    assert_eq!(json["records"][3]["role"], "bootstrap");
    assert_eq!(json["zone"]["id"], "Z1");
    assert_eq!(json["endpoint"]["vpc_id"], VPC);
}

fn block<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

#[tokio::test(start_paused = true)]
async fn shards_are_one_invocation_per_endpoint_and_leave_each_other_alone() {
    let mut aws = world(0);
    let shard2 = interface_endpoint("vpce-0def", VPC, "us-east-1", &["us-east-1c"]);
    aws.endpoints.insert(shard2.id.clone(), shard2);
    let shard = |n: u8, endpoint: &str| Request {
        endpoint: endpoint.into(),
        host_template: format!("kafka-{{az_id}}-s{n}.orders.example.internal"),
        bootstrap_host: Some(format!("kafka-s{n}.orders.example.internal")),
        ..request(true)
    };
    execute(&aws, "us-east-1", &shard(1, E)).await.unwrap();
    let one = cnames(&aws);
    let report = execute(&aws, "us-east-1", &shard(2, "vpce-0def"))
        .await
        .unwrap();
    assert_eq!(
        report.bootstrap_servers,
        "kafka-s2.orders.example.internal:10000"
    );
    let all = cnames(&aws);
    assert_eq!(all.len(), 8);
    assert!(
        one.iter().all(|r| all.contains(r)),
        "shard 1's records kept"
    );
    let shard2: Vec<_> = all.iter().filter(|(n, _)| n.contains("-s2.")).collect();
    assert_eq!(shard2.len(), 4);
    assert!(
        shard2.iter().all(|(_, v)| v.starts_with("vpce-0def-")),
        "{shard2:?}"
    );
    for (n, e) in [(1, E), (2, "vpce-0def")] {
        let plan = Request {
            apply: false,
            ..shard(n, e)
        };
        let again = execute(&aws, "us-east-1", &plan).await.unwrap();
        assert!(!again.changes_pending, "shard {n}");
    }
}

/// Two AZs of us-west-2 (the fake's own mapping).
fn usw2_azs() -> Vec<Az> {
    [("us-west-2a", "usw2-az1"), ("us-west-2b", "usw2-az2")]
        .iter()
        .map(|(name, id)| Az {
            name: (*name).into(),
            id: (*id).into(),
        })
        .collect()
}

/// A consumer in us-west-2 with an endpoint (subnets in 2a and 2b) to a service in us-east-1.
fn cross_region_world() -> FakeAws {
    let mut aws = FakeAws {
        azs: usw2_azs(),
        ..FakeAws::default()
    };
    aws.other_regions.insert("us-east-1".into(), use1_azs());
    // AWS names a cross-Region endpoint's entries after the service's Region.
    let e = interface_endpoint(E, VPC, "us-east-1", &["us-west-2a", "us-west-2b"]);
    aws.endpoints.insert(E.into(), e);
    aws.add_zone(
        "Z1",
        "orders.example.internal.",
        true,
        &[(VPC, "us-west-2")],
    );
    aws
}

#[tokio::test(start_paused = true)]
async fn a_cross_region_endpoint_points_every_provider_az_id_at_the_regional_entry() {
    let aws = cross_region_world();
    let report = execute(&aws, "us-west-2", &request(true)).await.unwrap();
    assert!(report.cross_region);
    assert_eq!(
        (report.region.as_str(), report.service_region.as_str()),
        ("us-west-2", "us-east-1")
    );
    assert_eq!(
        *aws.az_regions.lock().unwrap(),
        ["us-east-1"],
        "the provider's AZ IDs, from its Region"
    );
    let regional = format!("{E}-mmzfdbs8.vpce-svc-0123456789abcdef0.us-east-1.vpce.amazonaws.com");
    let name = |id: &str| format!("kafka-{id}.orders.example.internal.");
    assert_eq!(
        cnames(&aws),
        vec![
            (name("use1-az1"), regional.clone()),
            (name("use1-az2"), regional.clone()),
            (name("use1-az6"), regional.clone()),
            ("kafka.orders.example.internal.".into(), regional.clone()),
        ]
    );
    let roles: Vec<&plan::Role> = report.records.iter().map(|p| &p.record.role).collect();
    assert!(
        roles[..3]
            .iter()
            .all(|r| matches!(r, plan::Role::CrossRegion { .. })),
        "{roles:?}"
    );
    assert_eq!(report.warnings.len(), 1, "{:?}", report.warnings);
    let w = &report.warnings[0];
    assert!(
        w.contains("in us-west-2 reaches an endpoint service in us-east-1 (cross-Region)")
            && w.contains("cross-zone load balancing on"),
        "{w}"
    );
    assert!(report.client_settings.client_rack.is_empty());
    let text = render(&report);
    assert!(
        text.contains("(create; use1-az6: provider's Region, Regional (cross-Region))"),
        "{text}"
    );
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["cross_region"], true);
    assert_eq!(json["records"][0]["role"], "cross_region");
    assert_eq!(json["records"][0]["az_id"], "use1-az1");
}

#[tokio::test(start_paused = true)]
async fn a_same_region_endpoint_reads_only_its_own_region() {
    let aws = world(0);
    let report = execute(&aws, "us-east-1", &request(false)).await.unwrap();
    assert!(!report.cross_region);
    assert_eq!(report.service_region, "us-east-1");
    assert_eq!(*aws.az_regions.lock().unwrap(), ["us-east-1"]);
}

#[tokio::test(start_paused = true)]
async fn the_report_carries_client_settings_for_the_vpc() {
    let aws = world(0);
    let report = execute(&aws, "us-east-1", &request(false)).await.unwrap();
    let s = &report.client_settings;
    assert_eq!(
        s.properties["bootstrap.servers"], report.bootstrap_servers,
        "the same bootstrap.servers"
    );
    assert_eq!(s.properties["connections.max.idle.ms"], "300000");
    assert!(!s
        .properties
        .contains_key("ssl.endpoint.identification.algorithm"));
    let racks: Vec<(&str, &str)> = s
        .client_rack
        .iter()
        .map(|r| (r.az_name.as_str(), r.client_rack.as_str()))
        .collect();
    assert_eq!(
        racks,
        [
            ("us-east-1a", "use1-az6"),
            ("us-east-1b", "use1-az1"),
            ("us-east-1c", "use1-az2")
        ]
    );
    let text = render(&report);
    let tail: Vec<&str> = text.lines().rev().take(4).collect();
    assert_eq!(
        tail[0], "bootstrap.servers=kafka.orders.example.internal:10000",
        "still the last line: {text}"
    );
    assert!(text.contains("client settings:\n  connections.max.idle.ms=300000\n  client.rack=use1-az6   (clients in us-east-1a)\n"), "{text}");

    let tls = Request {
        clients: clients::Options {
            tls: true,
            nlb_idle_timeout: 660,
        },
        ..request(false)
    };
    let report = execute(&aws, "us-east-1", &tls).await.unwrap();
    let p = &report.client_settings.properties;
    assert_eq!(p["ssl.endpoint.identification.algorithm"], "https");
    assert_eq!(p["connections.max.idle.ms"], "540000");

    let bad = Request {
        clients: clients::Options {
            tls: false,
            nlb_idle_timeout: 30,
        },
        ..request(true)
    };
    let e = execute(&aws, "us-east-1", &bad).await.unwrap_err();
    assert_eq!(e.exit_code(), crate::exit::USAGE, "{e}");
    assert_eq!(
        aws.count("DescribeVpcEndpoints"),
        2,
        "no AWS call for a usage error"
    );
}
