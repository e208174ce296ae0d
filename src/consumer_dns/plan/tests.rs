//! Table tests of the pure planner.

use super::*;

const T: &str = "kafka-{az_id}.orders.example.internal";
const REGIONAL: &str = "vpce-0abc-mmzfdbs8.vpce-svc-1.us-east-1.vpce.amazonaws.com";

fn az(name: &str, id: &str) -> Az {
    Az {
        name: name.into(),
        id: id.into(),
    }
}

fn azs() -> Vec<Az> {
    vec![
        az("us-east-1a", "use1-az6"),
        az("us-east-1b", "use1-az1"),
        az("us-east-1c", "use1-az2"),
    ]
}

fn zonal(az: &str) -> String {
    format!("vpce-0abc-mmzfdbs8-{az}.vpce-svc-1.us-east-1.vpce.amazonaws.com")
}

fn endpoint(dns: &[&str]) -> Endpoint {
    Endpoint {
        id: "vpce-0abc".into(),
        kind: "Interface".into(),
        vpc_id: "vpc-1".into(),
        service_name: "com.amazonaws.vpce.us-east-1.vpce-svc-1".into(),
        state: "available".into(),
        dns_names: dns.iter().map(|s| s.to_string()).collect(),
        service_region: None,
    }
}

fn zone(private: bool, vpcs: &[(&str, &str)]) -> Zone {
    Zone {
        id: "Z1".into(),
        name: "orders.example.internal.".into(),
        private,
        vpcs: vpcs
            .iter()
            .map(|(v, r)| (v.to_string(), r.to_string()))
            .collect(),
    }
}

#[test]
fn entries_split_regional_and_zonal_whatever_the_order_and_case() {
    let a = zonal("us-east-1a");
    let b = zonal("us-east-1b");
    let upper = format!("{}.", b.to_uppercase());
    // (entries, Ok((Regional, [(AZ name, zonal)])) or Err(()): no Regional entry)
    type Want<'a> = Result<(&'a str, Vec<(&'a str, &'a String)>), ()>;
    let cases: Vec<(Vec<&str>, Want)> = vec![
        // AWS's order: Regional first.
        (
            vec![REGIONAL, &a, &b],
            Ok((REGIONAL, vec![("us-east-1a", &a), ("us-east-1b", &b)])),
        ),
        // Any order; trailing dot and case normalized.
        (
            vec![&a, &upper, REGIONAL],
            Ok((REGIONAL, vec![("us-east-1a", &a), ("us-east-1b", &b)])),
        ),
        // A service's private DNS name and an unknown AZ are skipped.
        (
            vec![
                "kafka.provider.example.com",
                REGIONAL,
                "vpce-0abc-mmzfdbs8-us-east-1z.vpce-svc-1.us-east-1.vpce.amazonaws.com",
            ],
            Ok((REGIONAL, vec![])),
        ),
        // moto's unpatched single entry is not AWS's shape: no Regional entry of this endpoint.
        (
            vec!["vpce-0abcd-x.com.amazonaws.vpce.us-east-1.vpce-svc-1"],
            Err(()),
        ),
        (vec![], Err(())),
        (vec![&a], Err(())),
    ];
    for (dns, want) in cases {
        let got = entries(&endpoint(&dns), &azs());
        match want {
            Ok((regional, zonal)) => {
                let got = got.unwrap_or_else(|e| panic!("{dns:?}: {e}"));
                assert_eq!(got.regional, regional, "{dns:?}");
                let want: BTreeMap<String, String> = zonal
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v.clone()))
                    .collect();
                assert_eq!(got.zonal, want, "{dns:?}");
            }
            Err(()) => {
                let e = got.expect_err(&format!("{dns:?}"));
                assert!(matches!(e, PlanError::NoRegionalEntry { .. }), "{e}");
                assert!(e.to_string().contains("vpce-0abc"), "{e}");
            }
        }
    }
}

#[test]
fn one_record_per_az_id_zonal_where_the_endpoint_has_a_subnet_else_regional() {
    let e = endpoint(&[REGIONAL, &zonal("us-east-1a"), &zonal("us-east-1b")]);
    let entries = entries(&e, &azs()).unwrap();
    let got = desired(&entries, &azs(), T, Some("Kafka.Orders.example.internal."));
    let rows: Vec<(&str, &str, &str)> = got
        .iter()
        .map(|d| {
            let role = match &d.role {
                Role::Zonal { .. } => "zonal",
                Role::CrossZone { .. } => "cross-zone",
                Role::CrossRegion { .. } => "cross-region",
                Role::Bootstrap => "bootstrap",
            };
            (d.name.as_str(), d.value.as_str(), role)
        })
        .collect();
    let (a, b) = (zonal("us-east-1a"), zonal("us-east-1b"));
    assert_eq!(
        rows,
        vec![
            // Sorted by AZ ID; us-east-1a is use1-az6 in this account.
            (
                "kafka-use1-az1.orders.example.internal",
                b.as_str(),
                "zonal"
            ),
            (
                "kafka-use1-az2.orders.example.internal",
                REGIONAL,
                "cross-zone"
            ),
            (
                "kafka-use1-az6.orders.example.internal",
                a.as_str(),
                "zonal"
            ),
            ("kafka.orders.example.internal", REGIONAL, "bootstrap"),
        ]
    );
    assert_eq!(
        bootstrap_servers(&got, 10000),
        "kafka.orders.example.internal:10000"
    );
    let no_boot = desired(&entries, &azs(), T, None);
    assert_eq!(
        bootstrap_servers(&no_boot, 9000),
        "kafka-use1-az1.orders.example.internal:9000,kafka-use1-az6.orders.example.internal:9000"
    );
    let w = warnings(&e, &plan(&got, &[], "Z1").unwrap());
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].contains("use1-az2 (us-east-1c in this account)")
            && w[0].contains("cross-zone load balancing"),
        "{w:?}"
    );
}

#[test]
fn another_account_maps_the_same_az_ids_to_other_names() {
    // The endpoint has subnets in "us-east-1a" and "us-east-1b" of an account where those are
    // use1-az1 and use1-az2: the zonal names follow the AZ IDs, not the names.
    let other = vec![
        az("us-east-1a", "use1-az1"),
        az("us-east-1b", "use1-az2"),
        az("us-east-1c", "use1-az6"),
    ];
    let e = endpoint(&[REGIONAL, &zonal("us-east-1a"), &zonal("us-east-1b")]);
    let got = desired(&entries(&e, &other).unwrap(), &other, T, None);
    let pairs: Vec<(String, String)> = got
        .iter()
        .map(|d| (d.name.clone(), d.value.clone()))
        .collect();
    assert_eq!(
        pairs,
        vec![
            (
                "kafka-use1-az1.orders.example.internal".into(),
                zonal("us-east-1a")
            ),
            (
                "kafka-use1-az2.orders.example.internal".into(),
                zonal("us-east-1b")
            ),
            (
                "kafka-use1-az6.orders.example.internal".into(),
                REGIONAL.to_string()
            ),
        ]
    );
}

fn cname(name: &str, value: &str, ttl: i64) -> Record {
    Record {
        name: name.into(),
        kind: "CNAME".into(),
        ttl: Some(ttl),
        values: vec![value.into()],
        set_identifier: None,
        alias: None,
    }
}

#[test]
fn plan_compares_with_the_zone() {
    let d = Desired {
        name: "kafka-use1-az6.orders.example.internal".into(),
        value: zonal("us-east-1a"),
        role: Role::Bootstrap,
    };
    let n = "kafka-use1-az6.orders.example.internal.";
    let v = zonal("us-east-1a");
    let other_type = |kind: &str| Record {
        kind: kind.into(),
        ..cname(n, "10.0.0.1", 60)
    };
    type Want = Result<&'static str, &'static str>;
    let cases: Vec<(&str, Vec<Record>, Want)> = vec![
        ("empty zone", vec![], Ok("create")),
        ("same", vec![cname(n, &v, 60)], Ok("unchanged")),
        (
            "same, other case and a trailing dot on the value",
            vec![cname(
                &n.to_uppercase(),
                &format!("{}.", v.to_uppercase()),
                60,
            )],
            Ok("unchanged"),
        ),
        ("other TTL", vec![cname(n, &v, 300)], Ok("update")),
        ("other value", vec![cname(n, REGIONAL, 60)], Ok("update")),
        (
            "alias CNAME",
            vec![Record {
                alias: Some(v.clone()),
                ttl: None,
                values: vec![],
                ..cname(n, "", 0)
            }],
            Ok("update"),
        ),
        (
            "a record of another name only",
            vec![cname("kafka.orders.example.internal.", &v, 60)],
            Ok("create"),
        ),
        (
            "an A record",
            vec![other_type("A")],
            Err("A 10.0.0.1 TTL 60"),
        ),
        ("a TXT record", vec![other_type("TXT")], Err("TXT")),
        (
            "a weighted CNAME",
            vec![Record {
                set_identifier: Some("w1".into()),
                ..cname(n, &v, 60)
            }],
            Err("CNAME"),
        ),
    ];
    for (what, observed, want) in cases {
        let got = plan(std::slice::from_ref(&d), &observed, "Z1");
        match (want, got) {
            (Ok(action), Ok(p)) => {
                let got = match &p[0].action {
                    Action::Create => "create",
                    Action::Update { .. } => "update",
                    Action::Unchanged => "unchanged",
                };
                assert_eq!(got, action, "{what}");
                assert_eq!(p[0].is_change(), action != "unchanged", "{what}");
            }
            (Err(existing), Err(e)) => {
                let text = e.to_string();
                assert!(
                    text.contains(existing)
                        && text.contains("Z1")
                        && text.contains(n.trim_end_matches('.')),
                    "{what}: {text}"
                );
            }
            (want, got) => panic!("{what}: want {want:?}, got {got:?}"),
        }
    }
}

#[test]
fn names_are_checked_before_any_call() {
    let ok = [
        (T, None),
        (
            "kafka-{az_id}-s1.orders.example.internal",
            Some("kafka-s1.orders.example.internal"),
        ),
        (
            "{az_id}.orders.example.internal.",
            Some("bootstrap.orders.example.internal."),
        ),
    ];
    // The longest name DNS allows (253 characters) passes; one more does not.
    let longest = format!(
        "{}.{}.{}.{}.example.internal",
        "a".repeat(59),
        "b".repeat(59),
        "c".repeat(59),
        "d".repeat(56)
    );
    assert_eq!(longest.len(), 253);
    let too_long = format!("e{longest}");
    let ok = ok.into_iter().chain([
        (T, Some(longest.as_str())),
        // '_' is allowed in a label (private zones hold such names).
        (T, Some("boot_strap.orders.example.internal")),
    ]);
    for (t, b) in ok {
        check_names(t, b).unwrap_or_else(|e| panic!("{t} {b:?}: {e}"));
    }
    for (b, why) in [
        (too_long.as_str(), "fully qualified"),
        ("boot}.orders.example.internal", "write the shard's index"),
        ("{boot.orders.example.internal", "write the shard's index"),
    ] {
        let e = check_names(T, Some(b)).expect_err(b);
        assert!(e.to_string().contains(why), "{b}: {e}");
    }
    let bad = [
        (
            "kafka.orders.example.internal",
            None,
            "{az_id} exactly once",
        ),
        (
            "kafka-{az_id}-{az_id}.orders.example.internal",
            None,
            "exactly once",
        ),
        (
            "kafka-{az_id}.{shard}.orders.example.internal",
            None,
            "write the shard's index",
        ),
        ("kafka-{az}.orders.example.internal", None, "exactly once"),
        ("kafka-{az_id}", None, "fully qualified"),
        ("kafka-{az_id}..example.internal", None, "labels"),
        ("kafka_{az_id}!.example.internal", None, "labels"),
        (
            T,
            Some("kafka-{az_id}.orders.example.internal"),
            "write the shard's index",
        ),
        (T, Some("localhost"), "fully qualified"),
    ];
    for (t, b, why) in bad {
        let e = check_names(t, b).expect_err(t);
        assert!(matches!(e, PlanError::Usage(_)), "{t}: {e}");
        assert!(e.to_string().contains(why), "{t} {b:?}: {e}");
    }
}

#[test]
fn endpoints_must_be_usable_interface_endpoints() {
    let e = endpoint(&[REGIONAL]);
    check_endpoint(&e).unwrap();
    let gw = Endpoint {
        kind: "Gateway".into(),
        ..e.clone()
    };
    let text = check_endpoint(&gw).unwrap_err().to_string();
    assert!(text.contains("vpce-0abc is a Gateway endpoint"), "{text}");
    for (state, ok) in [
        ("available", true),
        ("pendingAcceptance", true),
        ("pending", true),
        ("deleted", false),
        ("rejected", false),
        ("Failed", false),
        ("expired", false),
        ("deleting", false),
    ] {
        let e = Endpoint {
            state: state.into(),
            ..e.clone()
        };
        match check_endpoint(&e) {
            Ok(()) => assert!(ok, "{state}"),
            Err(err) => {
                assert!(!ok, "{state}: {err}");
                assert!(
                    err.to_string()
                        .starts_with(&format!("endpoint vpce-0abc is {state}:")),
                    "{err}"
                );
            }
        }
    }
}

#[test]
fn zones_must_be_private_and_associated_with_the_endpoint_s_vpc() {
    let e = endpoint(&[REGIONAL]);
    check_zone(
        &zone(true, &[("vpc-9", "us-east-1"), ("vpc-1", "us-east-1")]),
        &e,
        "us-east-1",
    )
    .unwrap();
    let cases = [
        (zone(false, &[]), "is public"),
        (
            zone(true, &[("vpc-9", "us-east-1")]),
            "associated: vpc-9 (us-east-1)",
        ),
        (
            zone(true, &[("vpc-1", "eu-west-1")]),
            "not associated with vpc-1 (us-east-1)",
        ),
        (zone(true, &[]), "associated: none"),
    ];
    for (z, want) in cases {
        let text = check_zone(&z, &e, "us-east-1").unwrap_err().to_string();
        assert!(text.contains(want) && text.contains("Z1"), "{want}: {text}");
    }
}

#[test]
fn names_must_be_in_the_zone_once() {
    let entries = entries(&endpoint(&[REGIONAL]), &azs()).unwrap();
    let z = zone(true, &[("vpc-1", "us-east-1")]);
    check_in_zone(
        &desired(&entries, &azs(), T, Some("kafka.orders.example.internal")),
        &z,
    )
    .unwrap();
    let outside = desired(&entries, &azs(), "kafka-{az_id}.example.com", None);
    let text = check_in_zone(&outside, &z).unwrap_err().to_string();
    assert!(
        text.contains("kafka-use1-az1.example.com is not in hosted zone Z1"),
        "{text}"
    );
    let twice = desired(
        &entries,
        &azs(),
        T,
        Some("kafka-use1-az6.orders.example.internal"),
    );
    let e = check_in_zone(&twice, &z).unwrap_err();
    assert!(matches!(e, PlanError::Usage(_)), "{e}");
    // The apex holds SOA and NS: a CNAME there is a conflict.
    let apex = desired(&entries, &azs(), T, Some("orders.example.internal"));
    check_in_zone(&apex, &z).unwrap();
    let soa = Record {
        kind: "SOA".into(),
        ..cname("orders.example.internal.", "ns", 900)
    };
    assert!(matches!(
        plan(&apex, &[soa], "Z1"),
        Err(PlanError::Conflict { .. })
    ));
}

#[test]
fn a_pending_endpoint_is_warned_about() {
    let e = Endpoint {
        state: "pendingAcceptance".into(),
        ..endpoint(&[REGIONAL])
    };
    let w = warnings(&e, &[]);
    assert_eq!(w.len(), 1);
    assert!(w[0].contains("pendingAcceptance"), "{w:?}");
}

#[test]
fn the_service_region_decides_cross_region() {
    use crate::consumer_dns::cross_region::desired_cross_region;
    let with = |r: Option<&str>| Endpoint {
        service_region: r.map(str::to_string),
        ..endpoint(&[REGIONAL])
    };
    for (service_region, client, cross) in [
        (None, "us-east-1", false),
        (Some(""), "us-east-1", false),
        (Some("us-east-1"), "us-east-1", false),
        (Some("us-east-1"), "us-west-2", true),
        (Some("eu-west-1"), "us-east-1", true),
    ] {
        let e = with(service_region);
        assert_eq!(
            e.is_cross_region(client),
            cross,
            "{service_region:?} from {client}"
        );
        let want = service_region.filter(|r| !r.is_empty()).unwrap_or(client);
        assert_eq!(e.service_region(client), want);
    }
    // Every AZ ID of the provider's Region, once, sorted, to the Regional entry; zonal entries
    // (named after the consumer's AZs) are never used.
    let e = endpoint(&[REGIONAL, &zonal("us-east-1a")]);
    let mut provider = azs();
    provider.push(provider[0].clone());
    let got = desired_cross_region(
        &entries(&e, &azs()).unwrap(),
        &provider,
        T,
        Some("kafka.orders.example.internal"),
    );
    let rows: Vec<(&str, &str, &Role)> = got
        .iter()
        .map(|d| (d.name.as_str(), d.value.as_str(), &d.role))
        .collect();
    let cr = |id: &str| Role::CrossRegion { az_id: id.into() };
    let (r1, r2, r6) = (cr("use1-az1"), cr("use1-az2"), cr("use1-az6"));
    assert_eq!(
        rows,
        vec![
            ("kafka-use1-az1.orders.example.internal", REGIONAL, &r1),
            ("kafka-use1-az2.orders.example.internal", REGIONAL, &r2),
            ("kafka-use1-az6.orders.example.internal", REGIONAL, &r6),
            ("kafka.orders.example.internal", REGIONAL, &Role::Bootstrap),
        ]
    );
    assert_eq!(
        bootstrap_servers(&got[..3], 10000),
        "kafka-use1-az1.orders.example.internal:10000,kafka-use1-az2.orders.example.internal:10000,kafka-use1-az6.orders.example.internal:10000",
        "no bootstrap host: every name (each leads to the Regional entry)"
    );
    // No cross-zone warnings: one cross-Region warning instead (mod.rs adds it).
    assert!(warnings(&e, &plan(&got, &[], "Z1").unwrap()).is_empty());
}
