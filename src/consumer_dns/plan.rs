//! The pure planner of `consumer-dns`: from (endpoint DNS entries, AZ map, names) and the records
//! in the zone to the record changes. Nothing here performs I/O.
//!
//! * [`entries`] sorts an interface endpoint's DNS entries into the Regional one and one per AZ
//!   name (AWS: `vpce-<id>-<suffix>.<service>.<region>.vpce.amazonaws.com` and
//!   `vpce-<id>-<suffix>-<az-name>.…`);
//! * [`desired`] makes one CNAME per AZ ID of the Region (the zonal entry of the AZ with that ID
//!   in this account when the endpoint has a subnet there, else the Regional entry: cross-zone),
//!   plus the bootstrap host → the Regional entry;
//! * [`plan`] compares them with the zone's records: create, update or unchanged; a record of
//!   another type at a desired name is an error (a CNAME cannot share its name).

use std::collections::BTreeMap;

use serde::Serialize;

/// TTL of the records written (seconds).
pub(crate) const TTL: i64 = 60;

/// The only placeholder of `--host-template`.
pub(crate) const AZ_ID: &str = "{az_id}";

/// A VPC endpoint as DescribeVpcEndpoints shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Endpoint {
    /// `vpce-…`.
    pub id: String,
    /// `Interface`, `Gateway`, `GatewayLoadBalancer`, …
    pub kind: String,
    /// The endpoint's VPC.
    pub vpc_id: String,
    /// `com.amazonaws.vpce.<region>.vpce-svc-…`.
    pub service_name: String,
    /// `available`, `pendingAcceptance`, …
    pub state: String,
    /// `DnsEntries[].DnsName`, in AWS's order.
    pub dns_names: Vec<String>,
    /// `ServiceRegion`: the Region of the endpoint service (a cross-Region endpoint names
    /// another Region than its own; absent from older answers: the endpoint's own Region).
    pub service_region: Option<String>,
}

/// An Availability Zone of this account: its name (per account) and ID (the same everywhere).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Az {
    /// `us-east-1a`.
    pub name: String,
    /// `use1-az6`.
    pub id: String,
}

/// A hosted zone as GetHostedZone shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Zone {
    /// `Z…`, without `/hostedzone/`.
    pub id: String,
    /// `orders.example.internal.`
    pub name: String,
    /// `Config.PrivateZone`.
    pub private: bool,
    /// Associated VPCs: (VPC id, Region).
    pub vpcs: Vec<(String, String)>,
}

/// A resource record set as ListResourceRecordSets returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Record {
    /// As Route 53 returns it (`kafka-use1-az6.orders.example.internal.`).
    pub name: String,
    /// `CNAME`, `A`, …
    pub kind: String,
    /// TTL, absent for alias records.
    pub ttl: Option<i64>,
    /// `ResourceRecords[].Value`.
    pub values: Vec<String>,
    /// Weighted, latency, … records have one.
    pub set_identifier: Option<String>,
    /// An alias record's target DNS name.
    pub alias: Option<String>,
}

impl Record {
    /// The CNAME this command writes: `name.` → `value`, TTL [`TTL`].
    pub(crate) fn cname(name: &str, value: &str) -> Record {
        Record {
            name: format!("{}.", normalize(name)),
            kind: "CNAME".into(),
            ttl: Some(TTL),
            values: vec![value.to_string()],
            set_identifier: None,
            alias: None,
        }
    }

    fn describe(&self) -> String {
        match &self.alias {
            Some(target) => format!("{} alias {target}", self.kind),
            None => format!(
                "{} {} TTL {}",
                self.kind,
                self.values.join(","),
                self.ttl.map_or("-".into(), |t| t.to_string())
            ),
        }
    }
}

/// What the planner refuses, each naming the resource.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum PlanError {
    /// `--host-template` or `--bootstrap-host` is unusable (a usage error).
    #[error("{0}")]
    Usage(String),
    /// Not an interface endpoint.
    #[error("endpoint {endpoint} is a {kind} endpoint, not an Interface endpoint: consumer-dns needs the interface endpoint to the cluster's endpoint service")]
    NotInterface {
        /// The endpoint.
        endpoint: String,
        /// Its type.
        kind: String,
    },
    /// An endpoint on its way out (or never accepted): nothing to point names at.
    #[error("endpoint {endpoint} is {state}: its DNS names lead nowhere; create (or get accepted) an interface endpoint first")]
    Unusable {
        /// The endpoint.
        endpoint: String,
        /// `deleting`, `deleted`, `rejected`, `failed` or `expired`.
        state: String,
    },
    /// No Regional DNS entry.
    #[error("endpoint {endpoint} ({state}) has no Regional DNS entry of the form {endpoint}-<suffix>.<service>.<region>.vpce.amazonaws.com (DnsEntries: {entries})")]
    NoRegionalEntry {
        /// The endpoint.
        endpoint: String,
        /// Its state.
        state: String,
        /// What it has.
        entries: String,
    },
    /// A public zone.
    #[error("hosted zone {zone} ({name}) is public: consumer-dns writes only a private hosted zone associated with the endpoint's VPC {vpc}")]
    PublicZone {
        /// The zone.
        zone: String,
        /// Its name.
        name: String,
        /// The endpoint's VPC.
        vpc: String,
    },
    /// A private zone the endpoint's VPC does not use.
    #[error("hosted zone {zone} is not associated with {vpc}, the VPC of endpoint {endpoint} (associated: {associated}): associate it first (AssociateVPCWithHostedZone)")]
    NotAssociated {
        /// The zone and its name: `Z… (orders.example.internal.)`.
        zone: String,
        /// The endpoint's VPC and Region: `vpc-… (us-east-1)`.
        vpc: String,
        /// The endpoint.
        endpoint: String,
        /// The VPCs the zone is associated with.
        associated: String,
    },
    /// A name outside the zone.
    #[error("{host} is not in hosted zone {zone} ({name}): use a --host-template/--bootstrap-host under {name}")]
    OutsideZone {
        /// The name.
        host: String,
        /// The zone.
        zone: String,
        /// Its name.
        name: String,
    },
    /// Another record holds a desired name.
    #[error("{host} already has {existing} in hosted zone {zone}: a CNAME cannot share its name; delete that record or choose another name")]
    Conflict {
        /// The name.
        host: String,
        /// The record(s) there.
        existing: String,
        /// The zone.
        zone: String,
    },
}

/// Lower case, without the trailing dot: how names are compared.
pub(crate) fn normalize(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// Checks a DNS name made from the user's input (after substitution).
fn check_host(what: &str, host: &str) -> Result<(), PlanError> {
    let bad = |why: &str| Err(PlanError::Usage(format!("{what} {host:?}: {why}")));
    if host.contains('{') || host.contains('}') {
        return bad("only {az_id} is a placeholder; write the shard's index in ({shard} = 1: kafka-{az_id}-s1.…), one invocation per endpoint");
    }
    if host.len() > 253 || !host.contains('.') {
        return bad("not a fully qualified DNS name");
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if !host.trim_end_matches('.').split('.').all(label_ok) {
        return bad("labels are 1-63 letters, digits, '-' or '_'");
    }
    Ok(())
}

/// Validates `--host-template` (exactly one `{az_id}`) and `--bootstrap-host` (no placeholder,
/// not a zonal name) before any AWS call.
pub(crate) fn check_names(template: &str, bootstrap: Option<&str>) -> Result<(), PlanError> {
    if template.matches(AZ_ID).count() != 1 {
        return Err(PlanError::Usage(format!(
            "--host-template {template:?}: needs {AZ_ID} exactly once (the brokers advertise one name per AZ ID)"
        )));
    }
    check_host("--host-template", &host_for(template, "use1-az1"))?;
    if let Some(host) = bootstrap {
        check_host("--bootstrap-host", host)?;
    }
    Ok(())
}

/// The zonal broker name of `az_id`.
pub(crate) fn host_for(template: &str, az_id: &str) -> String {
    normalize(&template.replace(AZ_ID, az_id))
}

/// An endpoint must be an interface endpoint that is not deleted, rejected, failed or expired
/// (`pending`, `pendingAcceptance` and `partial` only draw a warning: see [`warnings`]).
pub(crate) fn check_endpoint(endpoint: &Endpoint) -> Result<(), PlanError> {
    if !endpoint.kind.eq_ignore_ascii_case("Interface") {
        return Err(PlanError::NotInterface {
            endpoint: endpoint.id.clone(),
            kind: endpoint.kind.clone(),
        });
    }
    const GONE: [&str; 5] = ["deleting", "deleted", "rejected", "failed", "expired"];
    if GONE.iter().any(|s| endpoint.state.eq_ignore_ascii_case(s)) {
        return Err(PlanError::Unusable {
            endpoint: endpoint.id.clone(),
            state: endpoint.state.clone(),
        });
    }
    Ok(())
}

/// The zone must be private and associated with the endpoint's VPC in its Region.
pub(crate) fn check_zone(zone: &Zone, endpoint: &Endpoint, region: &str) -> Result<(), PlanError> {
    if !zone.private {
        return Err(PlanError::PublicZone {
            zone: zone.id.clone(),
            name: zone.name.clone(),
            vpc: endpoint.vpc_id.clone(),
        });
    }
    let ours = |(vpc, r): &(String, String)| *vpc == endpoint.vpc_id && r == region;
    if zone.vpcs.iter().any(ours) {
        return Ok(());
    }
    let associated = match zone.vpcs.is_empty() {
        true => "none".to_string(),
        false => zone
            .vpcs
            .iter()
            .map(|(v, r)| format!("{v} ({r})"))
            .collect::<Vec<_>>()
            .join(", "),
    };
    Err(PlanError::NotAssociated {
        zone: format!("{} ({})", zone.id, zone.name),
        vpc: format!("{} ({region})", endpoint.vpc_id),
        endpoint: endpoint.id.clone(),
        associated,
    })
}

/// An endpoint's DNS entries by kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Entries {
    /// The Regional entry (all of the endpoint's AZs).
    pub regional: String,
    /// AZ name → the zonal entry.
    pub zonal: BTreeMap<String, String>,
}

/// Sorts the endpoint's own entries (`<endpoint id>-<suffix>[-<az name>].…`; others, such as a
/// service's private DNS name, are skipped) into Regional and zonal ones.
pub(crate) fn entries(endpoint: &Endpoint, azs: &[Az]) -> Result<Entries, PlanError> {
    let prefix = format!("{}-", endpoint.id.to_ascii_lowercase());
    let mut regional = None;
    let mut zonal = BTreeMap::new();
    for name in &endpoint.dns_names {
        let name = normalize(name);
        let label = name.split('.').next().unwrap_or_default();
        let Some(rest) = label.strip_prefix(&prefix) else {
            continue;
        };
        match rest.split_once('-') {
            None => regional = regional.or(Some(name.clone())),
            Some((_, az)) => {
                if azs.iter().any(|a| a.name == az) {
                    zonal.insert(az.to_string(), name.clone());
                }
            }
        }
    }
    let regional = regional.ok_or_else(|| PlanError::NoRegionalEntry {
        endpoint: endpoint.id.clone(),
        state: endpoint.state.clone(),
        entries: match endpoint.dns_names.is_empty() {
            true => "none".into(),
            false => endpoint.dns_names.join(", "),
        },
    })?;
    Ok(Entries { regional, zonal })
}

/// Why a record points where it does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "role")]
pub(crate) enum Role {
    /// The AZ's own zonal entry.
    Zonal {
        /// AZ ID.
        az_id: String,
        /// This account's name for it.
        az_name: String,
    },
    /// No endpoint subnet in the AZ: the Regional entry (needs cross-zone load balancing).
    CrossZone {
        /// AZ ID.
        az_id: String,
        /// This account's name for it.
        az_name: String,
    },
    /// A cross-Region endpoint: every AZ ID of the provider's Region points at the Regional
    /// entry (the endpoint's AZs are the consumer's, not the provider's; needs cross-zone load
    /// balancing on the provider's NLB).
    CrossRegion {
        /// AZ ID in the provider's Region.
        az_id: String,
    },
    /// `--bootstrap-host`: the Regional entry.
    Bootstrap,
}

/// A record this command wants: `name` CNAME `value`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Desired {
    /// Lower case, without the trailing dot.
    pub name: String,
    /// The endpoint DNS name.
    pub value: String,
    /// Why.
    #[serde(flatten)]
    pub role: Role,
}

/// One CNAME per AZ ID (sorted by AZ ID), then the bootstrap host.
pub(crate) fn desired(
    entries: &Entries,
    azs: &[Az],
    template: &str,
    bootstrap: Option<&str>,
) -> Vec<Desired> {
    let mut azs: Vec<&Az> = azs.iter().collect();
    azs.sort_by(|a, b| a.id.cmp(&b.id));
    let mut out: Vec<Desired> = azs
        .into_iter()
        .map(|az| {
            let (az_id, az_name) = (az.id.clone(), az.name.clone());
            let (value, role) = match entries.zonal.get(&az.name) {
                Some(zonal) => (zonal.clone(), Role::Zonal { az_id, az_name }),
                None => (entries.regional.clone(), Role::CrossZone { az_id, az_name }),
            };
            Desired {
                name: host_for(template, &az.id),
                value,
                role,
            }
        })
        .collect();
    if let Some(host) = bootstrap {
        out.push(Desired {
            name: normalize(host),
            value: entries.regional.clone(),
            role: Role::Bootstrap,
        });
    }
    out
}

/// Every desired name must be in the zone (the apex itself is refused by [`plan`]: it holds SOA
/// and NS records) and appear once (`--bootstrap-host` is not one of the zonal names).
pub(crate) fn check_in_zone(desired: &[Desired], zone: &Zone) -> Result<(), PlanError> {
    let apex = normalize(&zone.name);
    for (i, d) in desired.iter().enumerate() {
        if desired[..i].iter().any(|e| e.name == d.name) {
            return Err(PlanError::Usage(format!(
                "--bootstrap-host {:?} is also the zonal name of an AZ ID: choose a name without an AZ ID",
                d.name
            )));
        }
        if d.name != apex && !d.name.ends_with(&format!(".{apex}")) {
            return Err(PlanError::OutsideZone {
                host: d.name.clone(),
                zone: zone.id.clone(),
                name: zone.name.clone(),
            });
        }
    }
    Ok(())
}

/// What to do with one record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "action")]
pub(crate) enum Action {
    /// Not in the zone yet.
    Create,
    /// In the zone with another value or TTL (`from`: what it was).
    Update {
        /// The record before.
        from: String,
    },
    /// Already as desired.
    Unchanged,
}

/// A desired record and what it takes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Planned {
    /// The record.
    #[serde(flatten)]
    pub record: Desired,
    /// What it takes.
    #[serde(flatten)]
    pub action: Action,
}

impl Planned {
    /// Whether the zone has to change for it.
    pub(crate) fn is_change(&self) -> bool {
        self.action != Action::Unchanged
    }
}

/// Compares desired with observed records, by normalized name.
pub(crate) fn plan(
    desired: &[Desired],
    observed: &[Record],
    zone_id: &str,
) -> Result<Vec<Planned>, PlanError> {
    desired
        .iter()
        .map(|d| {
            let here: Vec<&Record> = observed
                .iter()
                .filter(|r| normalize(&r.name) == d.name)
                .collect();
            let others: Vec<&&Record> = here
                .iter()
                .filter(|r| r.kind != "CNAME" || r.set_identifier.is_some())
                .collect();
            if !others.is_empty() {
                return Err(PlanError::Conflict {
                    host: d.name.clone(),
                    existing: others
                        .iter()
                        .map(|r| r.describe())
                        .collect::<Vec<_>>()
                        .join("; "),
                    zone: zone_id.to_string(),
                });
            }
            let want = Record::cname(&d.name, &d.value);
            let action = match here.first() {
                None => Action::Create,
                Some(r) if same_cname(r, &want) => Action::Unchanged,
                Some(r) => Action::Update { from: r.describe() },
            };
            Ok(Planned {
                record: d.clone(),
                action,
            })
        })
        .collect()
}

fn same_cname(have: &Record, want: &Record) -> bool {
    let values = |r: &Record| r.values.iter().map(|v| normalize(v)).collect::<Vec<_>>();
    have.alias.is_none() && have.ttl == want.ttl && values(have) == values(want)
}

/// `bootstrap.servers` for clients: `--bootstrap-host:port`, else the zonal names that have an
/// endpoint subnet in their AZ (each reaches the bootstrap listener), comma-separated.
pub(crate) fn bootstrap_servers(desired: &[Desired], port: u16) -> String {
    let pick = |f: fn(&Role) -> bool| -> Vec<String> {
        desired
            .iter()
            .filter(|d| f(&d.role))
            .map(|d| format!("{}:{port}", d.name))
            .collect()
    };
    let mut servers = pick(|r| *r == Role::Bootstrap);
    if servers.is_empty() {
        servers = pick(|r| matches!(r, Role::Zonal { .. }));
    }
    if servers.is_empty() {
        servers = pick(|_| true);
    }
    servers.join(",")
}

/// Warnings about the plan: cross-zone records and an endpoint that is not `available`.
pub(crate) fn warnings(endpoint: &Endpoint, planned: &[Planned]) -> Vec<String> {
    let mut out = Vec::new();
    if endpoint.state != "available" {
        out.push(format!(
            "endpoint {} is {}: its names resolve, but connections fail until it is available (pendingAcceptance: the provider has to accept it)",
            endpoint.id, endpoint.state
        ));
    }
    for p in planned {
        if let Role::CrossZone { az_id, az_name } = &p.record.role {
            out.push(format!(
                "endpoint {} has no subnet in {az_id} ({az_name} in this account): {} points at its Regional name and reaches the brokers in {az_id} only if the provider's NLB has cross-zone load balancing on; add an endpoint subnet in {az_name} to keep that traffic in its zone",
                endpoint.id, p.record.name
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests;
