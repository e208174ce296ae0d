//! `kplink-agent consumer-dns` against moto (`tests/support/moto_launcher.py`, whose
//! `moto_privatelink.py` gives interface endpoints AWS's DNS entries and Route 53 changes AWS's
//! PENDING → INSYNC), with a consumer seeded by `tests/support/consumer_world.py`: a VPC with
//! endpoint subnets in two AZs, an interface endpoint to an endpoint service, a gateway endpoint,
//! a private zone associated with the VPC, a public zone and another VPC's private zone.
//! Observations go straight to moto through the SDK, never through the agent.

use crate::common;

use std::process::{Command, Output};

use aws_sdk_ec2 as ec2;
use aws_sdk_route53 as route53;
use common::{assert_ok, block_on, http_json, start_server, stderr, stdout, support, Server, BIN};
use serde_json::Value;

const TEMPLATE: &str = "kafka-{az_id}.orders.example.internal";
const BOOTSTRAP: &str = "kafka.orders.example.internal";

struct Consumer {
    moto: Server,
    world: Value,
}

impl Consumer {
    /// A moto of its own and a consumer in `region` with endpoint subnets in `azs`.
    fn start(region: &str, azs: &str) -> Consumer {
        Consumer::start_with(region, azs, &[])
    }

    /// As [`Consumer::start`], with more `consumer_world.py seed` arguments.
    fn start_with(region: &str, azs: &str, extra: &[&str]) -> Consumer {
        let moto = start_server("moto_launcher.py", &["--port", "0"]);
        let out = Command::new("python3")
            .arg(support("consumer_world.py"))
            .args([
                "seed", "--moto", &moto.url, "--region", region, "--azs", azs,
            ])
            .args(extra)
            .output()
            .expect("run consumer_world.py");
        assert!(out.status.success(), "consumer_world.py: {}", stderr(&out));
        let world = serde_json::from_slice(&out.stdout).expect("consumer world JSON");
        Consumer { moto, world }
    }

    fn get(&self, key: &str) -> String {
        self.world[key]
            .as_str()
            .unwrap_or_else(|| panic!("{key}"))
            .to_string()
    }

    fn region(&self) -> String {
        self.get("region")
    }

    /// `kplink-agent consumer-dns --endpoint E --zone-id Z --host-template T` plus `args`.
    fn run(&self, endpoint: &str, zone: &str, args: &[&str]) -> Output {
        Command::new(BIN)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("AWS_ENDPOINT_URL", &self.moto.url)
            .env("AWS_ACCESS_KEY_ID", "AKIACONSUMERAGENT01")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_REGION", self.region())
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("KPLINK_LOG", "warn")
            .env("NO_COLOR", "1")
            .args(["consumer-dns", "--endpoint", endpoint, "--zone-id", zone])
            .args(["--host-template", TEMPLATE])
            .args(args)
            .output()
            .expect("run kplink-agent consumer-dns")
    }

    fn run_ours(&self, args: &[&str]) -> Output {
        self.run(&self.get("endpoint_id"), &self.get("zone_id"), args)
    }

    fn route53(&self) -> route53::Client {
        let creds = route53::config::Credentials::new("testing", "testing", None, None, "test");
        let conf = route53::Config::builder()
            .behavior_version(route53::config::BehaviorVersion::latest())
            .region(route53::config::Region::new(self.region()))
            .credentials_provider(creds)
            .endpoint_url(&self.moto.url)
            .build();
        route53::Client::from_conf(conf)
    }

    fn ec2(&self) -> ec2::Client {
        let creds = ec2::config::Credentials::new("testing", "testing", None, None, "test");
        let conf = ec2::Config::builder()
            .behavior_version(ec2::config::BehaviorVersion::latest())
            .region(ec2::config::Region::new(self.region()))
            .credentials_provider(creds)
            .endpoint_url(&self.moto.url)
            .build();
        ec2::Client::from_conf(conf)
    }

    /// Every record of `zone` as (name, type, TTL, values), as Route 53 returns them.
    fn records(&self, zone: &str) -> Vec<(String, String, Option<i64>, Vec<String>)> {
        let client = self.route53();
        let mut records = Vec::new();
        let mut next: Option<(String, route53::types::RrType)> = None;
        loop {
            let mut call = client.list_resource_record_sets().hosted_zone_id(zone);
            if let Some((name, kind)) = next.take() {
                call = call.start_record_name(name).start_record_type(kind);
            }
            let out = block_on(call.send()).unwrap();
            records.extend(out.resource_record_sets().iter().map(|r| {
                let values = r.resource_records().iter().map(|v| v.value().to_string());
                let kind = r.r#type().as_str().to_string();
                (r.name().to_string(), kind, r.ttl(), values.collect())
            }));
            if !out.is_truncated() {
                return records;
            }
            let name = out.next_record_name().unwrap().to_string();
            next = Some((name, out.next_record_type().unwrap().clone()));
        }
    }

    fn cnames(&self, zone: &str) -> Vec<(String, String, Option<i64>, Vec<String>)> {
        let mut out: Vec<_> = self
            .records(zone)
            .into_iter()
            .filter(|r| r.1 == "CNAME")
            .collect();
        out.sort();
        out
    }

    /// Server-side count of `service:Action` calls made with the agent's key.
    fn calls(&self, op: &str) -> u64 {
        let json = http_json(
            "GET",
            &format!("{}/_kplink/calls?by=access_key", self.moto.url),
        );
        json["AKIACONSUMERAGENT01"][op].as_u64().unwrap_or(0)
    }

    /// The endpoint's DNS entries: (Regional, AZ name → zonal).
    fn entries(&self) -> (String, std::collections::BTreeMap<String, String>) {
        let names: Vec<String> = self.world["dns_entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect();
        let zonal = names[1..]
            .iter()
            .map(|n| {
                let label = n.split('.').next().unwrap();
                let az = label
                    .splitn(3, '-')
                    .nth(2)
                    .unwrap()
                    .split_once('-')
                    .unwrap()
                    .1;
                (az.to_string(), n.clone())
            })
            .collect();
        (names[0].clone(), zonal)
    }
}

/// UPSERTs one record behind the agent's back; returns the change (id, status).
fn put_record(c: &Consumer, name: &str, kind: &str, ttl: i64, value: &str) -> (String, String) {
    put_records(c, &[(name.to_string(), kind, ttl, value.to_string())])
}

/// UPSERTs records (name, type, TTL, value) in one batch; returns the change (id, status).
fn put_records(c: &Consumer, records: &[(String, &str, i64, String)]) -> (String, String) {
    use route53::types::{Change, ChangeAction, ChangeBatch, ResourceRecord, ResourceRecordSet};
    let mut batch = ChangeBatch::builder();
    for (name, kind, ttl, value) in records {
        let set = ResourceRecordSet::builder()
            .name(name)
            .r#type((*kind).into())
            .ttl(*ttl)
            .resource_records(ResourceRecord::builder().value(value).build().unwrap())
            .build()
            .unwrap();
        let change = Change::builder()
            .action(ChangeAction::Upsert)
            .resource_record_set(set);
        batch = batch.changes(change.build().unwrap());
    }
    let batch = batch.build().unwrap();
    let call = c.route53().change_resource_record_sets();
    let out = block_on(
        call.hosted_zone_id(c.get("zone_id"))
            .change_batch(batch)
            .send(),
    )
    .unwrap();
    let info = out.change_info().unwrap();
    (info.id().to_string(), info.status().as_str().to_string())
}

fn cname(name: &str, value: &str) -> (String, String, Option<i64>, Vec<String>) {
    (
        name.to_string(),
        "CNAME".into(),
        Some(60),
        vec![value.to_string()],
    )
}

/// The records `--apply` writes for an endpoint with subnets in eu-west-1a and 1b, exactly as
/// Route 53 returns them. moto's eu-west-1: a = euw1-az3, b = euw1-az1, c = euw1-az2.
fn expected_eu_west_1(c: &Consumer) -> Vec<(String, String, Option<i64>, Vec<String>)> {
    let (regional, zonal) = c.entries();
    vec![
        cname(
            "kafka-euw1-az1.orders.example.internal.",
            &zonal["eu-west-1b"],
        ),
        cname("kafka-euw1-az2.orders.example.internal.", &regional),
        cname(
            "kafka-euw1-az3.orders.example.internal.",
            &zonal["eu-west-1a"],
        ),
        cname("kafka.orders.example.internal.", &regional),
    ]
}

/// The text plan of a fresh eu-west-1 consumer: 4 creates, one cross-zone warning.
fn assert_first_plan(c: &Consumer, plan: &Output) {
    let (regional, zonal) = c.entries();
    assert_eq!(
        plan.status.code(),
        Some(2),
        "{}\n{}",
        stdout(plan),
        stderr(plan)
    );
    let text = stdout(plan);
    assert!(text.contains(": 4 change(s) pending\n"), "{text}");
    for line in [
        format!("  + kafka-euw1-az1.orders.example.internal. CNAME {} (create; euw1-az1 = eu-west-1b: zonal)\n", zonal["eu-west-1b"]),
        format!("  + kafka-euw1-az2.orders.example.internal. CNAME {regional} (create; euw1-az2 = eu-west-1c: no endpoint subnet, Regional (cross-zone))\n"),
        format!("  + kafka-euw1-az3.orders.example.internal. CNAME {} (create; euw1-az3 = eu-west-1a: zonal)\n", zonal["eu-west-1a"]),
        format!("  + kafka.orders.example.internal. CNAME {regional} (create; bootstrap: Regional)\n"),
    ] {
        assert!(text.contains(&line), "missing {line:?} in:\n{text}");
    }
    assert!(
        text.ends_with("bootstrap.servers=kafka.orders.example.internal:10000\n"),
        "{text}"
    );
    let warnings: Vec<String> = stderr(plan).lines().map(str::to_string).collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].starts_with("warning: ")
            && warnings[0].contains("no subnet in euw1-az2 (eu-west-1c in this account)")
            && warnings[0].contains("cross-zone load balancing"),
        "{warnings:?}"
    );
}

#[test]
fn plans_applies_and_then_has_nothing_to_do() {
    let c = Consumer::start("eu-west-1", "eu-west-1a,eu-west-1b");
    let zone = c.get("zone_id");
    let (regional, zonal) = c.entries();
    // AWS's shape (moto_privatelink.py): Regional first, then one entry per subnet AZ.
    assert!(
        regional.starts_with(&format!("{}-", c.get("endpoint_id"))),
        "{regional}"
    );
    assert!(
        regional.ends_with(".eu-west-1.vpce.amazonaws.com"),
        "{regional}"
    );
    assert_eq!(
        zonal.keys().collect::<Vec<_>>(),
        ["eu-west-1a", "eu-west-1b"]
    );
    let before = c.records(&zone);

    assert_first_plan(&c, &c.run_ours(&["--bootstrap-host", BOOTSTRAP]));
    assert_eq!(c.records(&zone), before, "a plan changes nothing");
    assert_eq!(c.calls("route53:ChangeResourceRecordSets"), 0);

    let apply = c.run_ours(&["--bootstrap-host", BOOTSTRAP, "--apply"]);
    assert_ok(&apply);
    let text = stdout(&apply);
    assert!(
        text.contains(": applied 4 change(s), change C") && text.contains(" INSYNC after "),
        "{text}"
    );
    assert!(
        text.ends_with("bootstrap.servers=kafka.orders.example.internal:10000\n"),
        "{text}"
    );
    // Byte for byte, as Route 53 returns them.
    assert_eq!(c.cnames(&zone), expected_eu_west_1(&c));
    assert_eq!(c.calls("route53:ChangeResourceRecordSets"), 1, "one batch");
    let polls = c.calls("route53:GetChange");
    assert!(
        polls >= 1,
        "waited for INSYNC (the launcher answers PENDING first)"
    );

    for args in [
        &["--bootstrap-host", BOOTSTRAP][..],
        &["--bootstrap-host", BOOTSTRAP, "--apply"],
    ] {
        let again = c.run_ours(args);
        assert_ok(&again);
        assert!(
            stdout(&again).contains(": nothing to do\n"),
            "{}",
            stdout(&again)
        );
    }
    assert_eq!(c.calls("route53:ChangeResourceRecordSets"), 1, "idempotent");
    assert_eq!(c.calls("route53:GetChange"), polls, "nothing to wait for");
}

#[test]
fn a_record_changed_behind_its_back_is_planned_as_an_update_and_repaired() {
    let c = Consumer::start("eu-west-1", "eu-west-1a,eu-west-1b");
    // 320 records listed before ours (Route 53 lists by reversed name: "…orders.fill-…" sorts
    // before "…orders.kafka-…"), so ours are on the second page of ListResourceRecordSets.
    let fill: Vec<_> = (0..320)
        .map(|i| {
            (
                format!("fill-{i:03}.orders.example.internal"),
                "TXT",
                60,
                format!("\"{i}\""),
            )
        })
        .collect();
    put_records(&c, &fill);
    assert_ok(&c.run_ours(&["--bootstrap-host", BOOTSTRAP, "--apply"]));
    let rerun = c.run_ours(&["--bootstrap-host", BOOTSTRAP]);
    assert_ok(&rerun);
    assert!(
        stdout(&rerun).contains(": nothing to do\n"),
        "pages read: {}",
        stdout(&rerun)
    );
    let name = "kafka-euw1-az3.orders.example.internal.";
    put_record(&c, name, "CNAME", 300, "elsewhere.example.com");
    let drift = c.run_ours(&["--bootstrap-host", BOOTSTRAP, "--json"]);
    assert_eq!(drift.status.code(), Some(2), "{}", stderr(&drift));
    let json: Value = serde_json::from_slice(&drift.stdout).unwrap();
    let changed: Vec<&Value> = json["records"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["action"] != "unchanged")
        .collect();
    assert_eq!(changed.len(), 1, "{json}");
    assert_eq!(changed[0]["name"], name.trim_end_matches('.'));
    assert_eq!(changed[0]["action"], "update");
    assert_eq!(changed[0]["from"], "CNAME elsewhere.example.com TTL 300");
    assert_eq!(json["changes_pending"], true);
    assert_ok(&c.run_ours(&["--bootstrap-host", BOOTSTRAP, "--apply"]));
    assert_eq!(c.cnames(&c.get("zone_id")), expected_eu_west_1(&c));
}

#[test]
fn us_east_1_maps_az_names_to_moto_s_az_ids() {
    let c = Consumer::start("us-east-1", "us-east-1a,us-east-1b,us-east-1c");
    let out = c.run_ours(&["--json", "--bootstrap-port", "10100"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    let (regional, zonal) = c.entries();
    let rows: Vec<(String, String, String)> = json["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let s = |k: &str| r[k].as_str().unwrap_or_default().to_string();
            (s("name"), s("role"), s("value"))
        })
        .collect();
    let row = |id: &str, role: &str, value: &str| {
        (
            format!("kafka-{id}.orders.example.internal"),
            role.to_string(),
            value.to_string(),
        )
    };
    // The FACTS file's mapping (us-east-1a = use1-az6, 1b = use1-az1, 1c = use1-az2); moto, like
    // AWS, has six AZs in us-east-1: one record per AZ ID, the three without a subnet cross-zone.
    assert_eq!(
        rows,
        vec![
            row("use1-az1", "zonal", &zonal["us-east-1b"]),
            row("use1-az2", "zonal", &zonal["us-east-1c"]),
            row("use1-az3", "cross_zone", &regional),
            row("use1-az4", "cross_zone", &regional),
            row("use1-az5", "cross_zone", &regional),
            row("use1-az6", "zonal", &zonal["us-east-1a"]),
        ]
    );
    // No --bootstrap-host: the zonal names with a subnet, each reaching the bootstrap listener.
    assert_eq!(
        json["bootstrap_servers"],
        "kafka-use1-az1.orders.example.internal:10100,kafka-use1-az2.orders.example.internal:10100,kafka-use1-az6.orders.example.internal:10100"
    );
    assert_eq!(json["warnings"].as_array().unwrap().len(), 3);
    assert_eq!(stderr(&out).lines().count(), 3, "{}", stderr(&out));
}

#[test]
fn refusals_are_one_line_exit_1_and_change_nothing() {
    let c = Consumer::start("eu-west-1", "eu-west-1a,eu-west-1b");
    let (endpoint, zone) = (c.get("endpoint_id"), c.get("zone_id"));
    let zones = [
        zone.clone(),
        c.get("public_zone_id"),
        c.get("other_zone_id"),
    ];
    let before: Vec<_> = zones.iter().map(|z| c.records(z)).collect();
    let gateway = c.get("gateway_endpoint_id");
    let (public, other) = (c.get("public_zone_id"), c.get("other_zone_id"));
    let vpc = c.get("vpc_id");
    let cases = [
        ("vpce-0123456789abcdef0", zone.as_str(), "error: DescribeVpcEndpoints vpce-0123456789abcdef0 failed: InvalidVpcEndpointId.NotFound: ".to_string()),
        (gateway.as_str(), zone.as_str(), format!("error: endpoint {gateway} is a Gateway endpoint, not an Interface endpoint")),
        (endpoint.as_str(), "ZNOSUCHZONE", "error: GetHostedZone ZNOSUCHZONE failed: NoSuchHostedZone: ".to_string()),
        (endpoint.as_str(), public.as_str(), format!("error: hosted zone {public} (orders.example.com.) is public")),
        (endpoint.as_str(), other.as_str(), format!("error: hosted zone {other} (orders.example.internal.) is not associated with {vpc} (eu-west-1), the VPC of endpoint {endpoint} (associated: {} (eu-west-1))", c.get("other_vpc_id"))),
    ];
    for (e, z, want) in &cases {
        for apply in [false, true] {
            let args: &[&str] = if apply { &["--apply"] } else { &[] };
            let out = c.run(e, z, args);
            assert_eq!(
                out.status.code(),
                Some(1),
                "{e} {z}: {}\n{}",
                stdout(&out),
                stderr(&out)
            );
            let err = stderr(&out);
            assert_eq!(err.lines().count(), 1, "one line: {err}");
            assert!(err.starts_with(want.as_str()), "want {want:?}, got {err:?}");
            assert!(stdout(&out).is_empty(), "{}", stdout(&out));
        }
    }
    let after: Vec<_> = zones.iter().map(|z| c.records(z)).collect();
    assert_eq!(after, before);
    // The counter sees Route 53's REST calls (so the zero below is not vacuous).
    assert_eq!(
        c.calls("route53:GetHostedZone"),
        6,
        "the three zone cases, with and without --apply"
    );
    assert_eq!(c.calls("route53:ChangeResourceRecordSets"), 0);

    // A usage error: no AWS call at all, exit 64.
    let out = c.run(
        &endpoint,
        &zone,
        &[
            "--bootstrap-host",
            "kafka-{az_id}.{shard}.orders.example.internal",
        ],
    );
    assert_eq!(out.status.code(), Some(64), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("one invocation per endpoint"),
        "{}",
        stderr(&out)
    );
}

impl Consumer {
    /// DescribeVpcEndpoints of `id`: its DNS names (asserting one hosted zone id for all).
    fn dns_names(&self, id: &str) -> Vec<String> {
        let out = block_on(
            self.ec2()
                .describe_vpc_endpoints()
                .vpc_endpoint_ids(id)
                .send(),
        )
        .unwrap();
        let e = &out.vpc_endpoints()[0];
        let zones: Vec<&str> = e
            .dns_entries()
            .iter()
            .map(|d| d.hosted_zone_id().unwrap())
            .collect();
        assert!(
            zones.windows(2).all(|w| w[0] == w[1]),
            "one hosted zone id: {zones:?}"
        );
        e.dns_entries()
            .iter()
            .map(|d| d.dns_name().unwrap().to_string())
            .collect()
    }
}

#[test]
fn the_launcher_gives_interface_endpoints_aws_dns_entries() {
    let c = Consumer::start("us-east-1", "us-east-1a,us-east-1b");
    let endpoint = c.get("endpoint_id");
    let names = c.dns_names(&endpoint);
    let service = c.get("service_name");
    let svc = service
        .strip_prefix("com.amazonaws.vpce.us-east-1.")
        .unwrap();
    assert!(svc.starts_with("vpce-svc-"), "{service}");
    let label = names[0].split('.').next().unwrap();
    let suffix = label
        .strip_prefix(&format!("{endpoint}-"))
        .unwrap()
        .to_string();
    let domain = format!("{svc}.us-east-1.vpce.amazonaws.com");
    assert_eq!(
        names,
        [
            format!("{endpoint}-{suffix}.{domain}"),
            format!("{endpoint}-{suffix}-us-east-1a.{domain}"),
            format!("{endpoint}-{suffix}-us-east-1b.{domain}"),
        ]
    );
    // A subnet added in a third AZ adds its zonal entry (the suffix stays).
    let ec2 = c.ec2();
    let subnet = ec2
        .create_subnet()
        .vpc_id(c.get("vpc_id"))
        .cidr_block("10.20.9.0/24");
    let subnet = block_on(subnet.availability_zone("us-east-1c").send()).unwrap();
    let subnet = subnet.subnet().unwrap().subnet_id().unwrap().to_string();
    let modify = ec2.modify_vpc_endpoint().vpc_endpoint_id(&endpoint);
    block_on(modify.add_subnet_ids(subnet).send()).unwrap();
    let names = c.dns_names(&endpoint);
    assert_eq!(names.len(), 4);
    assert_eq!(names[3], format!("{endpoint}-{suffix}-us-east-1c.{domain}"));
    // Gateway endpoints have none.
    assert!(c.dns_names(&c.get("gateway_endpoint_id")).is_empty());
}

#[test]
fn the_launcher_reports_route53_changes_pending_then_insync() {
    let c = Consumer::start("us-east-1", "us-east-1a");
    let r53 = c.route53();
    let (id, status) = put_record(&c, "x.orders.example.internal", "TXT", 60, "\"x\"");
    assert_eq!(status, "PENDING");
    assert!(id.starts_with("/change/C"), "{id}");
    let status = || {
        let out = block_on(r53.get_change().id(&id).send()).unwrap();
        out.change_info().unwrap().status().as_str().to_string()
    };
    // INSYNC after 0.3 s by default ($KPLINK_MOTO_ROUTE53_INSYNC_SECONDS).
    assert_eq!(status(), "PENDING");
    std::thread::sleep(std::time::Duration::from_millis(400));
    assert_eq!(status(), "INSYNC");
    let (other, _) = put_record(&c, "y.orders.example.internal", "TXT", 60, "\"y\"");
    assert_ne!(other, id, "each batch has its own change id");
    let err = block_on(r53.get_change().id("C0000000000000").send()).unwrap_err();
    let code = route53::error::ProvideErrorMetadata::code(&err);
    assert_eq!(code, Some("NoSuchChange"));
}

#[test]
fn a_consumer_in_another_region_points_every_provider_az_id_at_the_regional_entry() {
    // The cluster in us-east-1, its endpoint service supporting us-west-2; the consumer's
    // endpoint in us-west-2 names ServiceRegion us-east-1 (moto_privatelink.py item 3).
    let c = Consumer::start_with(
        "us-west-2",
        "us-west-2a,us-west-2b",
        &["--service-region", "us-east-1"],
    );
    assert_eq!(c.get("service_region"), "us-east-1");
    let (regional, _) = c.entries();
    assert!(
        regional.ends_with(".us-east-1.vpce.amazonaws.com"),
        "AWS names it after the service's Region: {regional}"
    );
    let plan = c.run_ours(&["--bootstrap-host", BOOTSTRAP, "--json"]);
    assert_eq!(plan.status.code(), Some(2), "{}", stderr(&plan));
    let json: Value = serde_json::from_slice(&plan.stdout).unwrap();
    assert_eq!(json["region"], "us-west-2");
    assert_eq!(json["service_region"], "us-east-1");
    assert_eq!(json["cross_region"], true);
    let rows: Vec<(String, String, String)> = json["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let s = |k: &str| r[k].as_str().unwrap_or_default().to_string();
            (s("name"), s("role"), s("value"))
        })
        .collect();
    // us-east-1's six AZ IDs (DescribeAvailabilityZones in us-east-1), none of us-west-2's.
    let mut want: Vec<(String, String, String)> = (1..=6)
        .map(|i| {
            let name = format!("kafka-use1-az{i}.orders.example.internal");
            (name, "cross_region".to_string(), regional.clone())
        })
        .collect();
    want.push((BOOTSTRAP.into(), "bootstrap".into(), regional.clone()));
    assert_eq!(rows, want);
    let warnings = json["warnings"].as_array().unwrap();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    let w = warnings[0].as_str().unwrap();
    assert!(
        w.contains("reaches an endpoint service in us-east-1 (cross-Region)")
            && w.contains("cross-zone load balancing on"),
        "{w}"
    );
    assert_eq!(stderr(&plan).lines().count(), 1, "{}", stderr(&plan));
    assert_eq!(
        json["client_settings"]["client_rack"],
        serde_json::json!([])
    );

    assert_ok(&c.run_ours(&["--bootstrap-host", BOOTSTRAP, "--apply"]));
    let zone = c.get("zone_id");
    let written: Vec<_> = c.cnames(&zone).into_iter().map(|r| (r.0, r.3)).collect();
    assert_eq!(written.len(), 7, "{written:?}");
    assert!(
        written.iter().all(|(_, v)| *v == [regional.clone()]),
        "{written:?}"
    );
    let again = c.run_ours(&["--bootstrap-host", BOOTSTRAP]);
    assert_ok(&again);
    assert!(
        stdout(&again).contains(": nothing to do\n"),
        "{}",
        stdout(&again)
    );
}

#[test]
fn it_prints_the_client_settings_for_the_vpc() {
    let c = Consumer::start("eu-west-1", "eu-west-1a,eu-west-1b");
    let text = c.run_ours(&["--bootstrap-host", BOOTSTRAP]);
    let out = stdout(&text);
    for line in [
        "client settings:\n",
        "  connections.max.idle.ms=300000\n",
        "  client.rack=euw1-az3   (clients in eu-west-1a)\n",
        "  client.rack=euw1-az1   (clients in eu-west-1b)\n",
        "  client.rack=euw1-az2   (clients in eu-west-1c)\n",
    ] {
        assert!(out.contains(line), "missing {line:?} in:\n{out}");
    }
    assert!(
        !out.contains("ssl.endpoint.identification.algorithm"),
        "{out}"
    );
    assert!(
        out.ends_with("bootstrap.servers=kafka.orders.example.internal:10000\n"),
        "{out}"
    );

    let json = c.run_ours(&[
        "--bootstrap-host",
        BOOTSTRAP,
        "--json",
        "--tls",
        "--nlb-idle-timeout",
        "660",
    ]);
    let json: Value = serde_json::from_slice(&json.stdout).unwrap();
    let settings = &json["client_settings"];
    assert_eq!(
        settings["properties"],
        serde_json::json!({
            "bootstrap.servers": "kafka.orders.example.internal:10000",
            "connections.max.idle.ms": "540000",
            "ssl.endpoint.identification.algorithm": "https",
        })
    );
    assert_eq!(
        json["bootstrap_servers"],
        settings["properties"]["bootstrap.servers"]
    );
    assert_eq!(settings["client_rack"][0]["az_name"], "eu-west-1a");
    assert_eq!(settings["client_rack"][0]["client_rack"], "euw1-az3");
    assert_eq!(json["cross_region"], false);

    let bad = c.run_ours(&["--nlb-idle-timeout", "30"]);
    assert_eq!(bad.status.code(), Some(64), "{}", stderr(&bad));
    assert_eq!(stderr(&bad).lines().count(), 1, "{}", stderr(&bad));
    assert!(
        stderr(&bad).starts_with("error: --nlb-idle-timeout 30: "),
        "{}",
        stderr(&bad)
    );
}
