//! `kplink-agent consumer-dns`: the consumer side of the PrivateLink path.
//!
//! Run once per consumer VPC (and per endpoint, one per shard) with the consumer account's
//! credentials. It reads the interface endpoint's DNS entries (DescribeVpcEndpoints) and this
//! account's AZ name → AZ ID map (DescribeAvailabilityZones: AZ names differ per account, AZ IDs
//! do not), then keeps one CNAME per AZ ID of the Region in a private hosted zone associated with
//! the endpoint's VPC, so that the zonal names the brokers advertise
//! (`kafka-use1-az6.orders.example.internal`) reach the endpoint in that AZ:
//!
//! | record (`--host-template kafka-{az_id}.orders.example.internal`) | value |
//! |---|---|
//! | `kafka-<az id>.orders.example.internal.` CNAME, TTL 60 | the endpoint's zonal entry `vpce-…-<suffix>-<az name>.vpce-svc-….<region>.vpce.amazonaws.com` when it has a subnet in that AZ, else its Regional entry `vpce-…-<suffix>.vpce-svc-….<region>.vpce.amazonaws.com` (warning: needs cross-zone load balancing on the provider's NLB) |
//! | `--bootstrap-host` (`kafka.orders.example.internal.`) CNAME, TTL 60 | the Regional entry |
//!
//! A cross-Region endpoint (its `ServiceRegion` is not the client's Region, see [`cross_region`])
//! gets one CNAME per AZ ID of the *provider's* Region, each to the Regional entry, with a
//! warning that the provider's NLB needs cross-zone load balancing on.
//!
//! Names are written in lower case with the trailing dot, one value each, no set identifier; the
//! values are the endpoint's DNS names exactly as DescribeVpcEndpoints returns them. Records it
//! does not want are never touched (nothing is deleted).
//!
//! Without `--apply` it prints the plan (exit 0 nothing to do, 2 changes pending); with `--apply`
//! it UPSERTs the changes in one ChangeResourceRecordSets batch and waits (GetChange, bounded by
//! `--insync-timeout`) until Route 53 reports them `INSYNC`. Either way it prints what the
//! clients should set ([`clients`]: `bootstrap.servers`, `connections.max.idle.ms`,
//! `client.rack` per AZ, `ssl.endpoint.identification.algorithm` with `--tls`). The decisions are in the pure [`plan`] module; [`ConsumerAws`] is the seam
//! to AWS ([`sdk::Sdk`] in production, an in-process fake in the unit tests).

use std::future::Future;
use std::time::Duration;

use serde::Serialize;

pub(crate) mod clients;
pub(crate) mod cross_region;
#[cfg(test)]
mod fake;
pub(crate) mod plan;
pub(crate) mod sdk;
#[cfg(test)]
mod tests;

pub(crate) use plan::{Az, Endpoint, PlanError, Planned, Record, Zone};

/// A failed AWS call: operation, resource, AWS's error code and message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{operation} {resource} failed: {code}: {message}")]
pub(crate) struct AwsError {
    /// `DescribeVpcEndpoints`, `GetHostedZone`, …
    pub operation: &'static str,
    /// The endpoint, zone or change.
    pub resource: String,
    /// AWS's error code (`InvalidVpcEndpointId.NotFound`, `NoSuchHostedZone`, …).
    pub code: String,
    /// AWS's message.
    pub message: String,
}

/// A Route 53 change batch and its status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Change {
    /// `C…`, without `/change/`.
    pub id: String,
    /// `PENDING` or `INSYNC`.
    pub status: String,
}

impl Change {
    /// Propagated to all Route 53 name servers of the zone.
    pub(crate) fn is_insync(&self) -> bool {
        self.status == "INSYNC"
    }
}

/// The AWS calls of `consumer-dns` (consumer account): EC2 and Route 53.
pub(crate) trait ConsumerAws: Send + Sync {
    /// DescribeVpcEndpoints of one endpoint.
    fn endpoint(&self, id: &str) -> impl Future<Output = Result<Endpoint, AwsError>> + Send;
    /// DescribeAvailabilityZones (zone type `availability-zone`) of `region`: the client's, or
    /// a cross-Region endpoint's service Region.
    fn availability_zones(
        &self,
        region: &str,
    ) -> impl Future<Output = Result<Vec<Az>, AwsError>> + Send;
    /// GetHostedZone.
    fn hosted_zone(&self, id: &str) -> impl Future<Output = Result<Zone, AwsError>> + Send;
    /// ListResourceRecordSets, every page.
    fn records(&self, zone_id: &str) -> impl Future<Output = Result<Vec<Record>, AwsError>> + Send;
    /// ChangeResourceRecordSets: one batch of UPSERTs.
    fn upsert(
        &self,
        zone_id: &str,
        records: &[Record],
        comment: &str,
    ) -> impl Future<Output = Result<Change, AwsError>> + Send;
    /// GetChange.
    fn change(&self, id: &str) -> impl Future<Output = Result<Change, AwsError>> + Send;
}

/// Errors of the command, each one line.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    /// An AWS call failed.
    #[error(transparent)]
    Aws(#[from] AwsError),
    /// The planner refused.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// Route 53 did not report INSYNC in time.
    #[error("ChangeResourceRecordSets {change} in hosted zone {zone}: still {status} after {waited:?} (--insync-timeout); the records are written, Route 53 has not confirmed propagation: GetChange {change} later")]
    NotInsync {
        /// The change.
        change: String,
        /// The zone.
        zone: String,
        /// Its last status.
        status: String,
        /// How long it waited.
        waited: Duration,
    },
    /// No Region in the standard chain.
    #[error("no AWS Region: set AWS_REGION (or a profile's region) to the Region of endpoint {0}")]
    NoRegion(String),
}

impl Error {
    /// The exit code: 64 for a usage error, else 1.
    pub(crate) fn exit_code(&self) -> u8 {
        match self {
            Error::Plan(PlanError::Usage(_)) => crate::exit::USAGE,
            _ => 1,
        }
    }
}

/// What to do, from the command line.
#[derive(Debug, Clone)]
pub(crate) struct Request {
    /// `--endpoint`.
    pub endpoint: String,
    /// `--zone-id` (`Z…` or `/hostedzone/Z…`).
    pub zone_id: String,
    /// `--host-template`.
    pub host_template: String,
    /// `--bootstrap-host`.
    pub bootstrap_host: Option<String>,
    /// `--bootstrap-port`.
    pub bootstrap_port: u16,
    /// `--apply`.
    pub apply: bool,
    /// `--insync-timeout`.
    pub insync_timeout: Duration,
    /// `--tls`, `--nlb-idle-timeout`: for the client settings.
    pub clients: clients::Options,
}

/// The applied change batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Applied {
    /// The change batch id.
    pub change_id: String,
    /// `INSYNC`.
    pub status: String,
    /// How long GetChange was polled.
    pub waited_ms: u64,
}

/// The outcome (`--json` prints it).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Report {
    /// The endpoint.
    pub endpoint: Endpoint,
    /// The zone.
    pub zone: Zone,
    /// The Region of the client and the endpoint.
    pub region: String,
    /// The Region of the endpoint service (`region` unless cross-Region).
    pub service_region: String,
    /// The endpoint reaches a service in another Region: every name points at its Regional
    /// entry.
    pub cross_region: bool,
    /// Every desired record and its action, before `--apply`.
    pub records: Vec<Planned>,
    /// Whether the zone had to change.
    pub changes_pending: bool,
    /// The batch written by `--apply`.
    pub applied: Option<Applied>,
    /// Cross-zone records, an endpoint that is not available.
    pub warnings: Vec<String>,
    /// For the clients' `bootstrap.servers`.
    pub bootstrap_servers: String,
    /// What clients in the VPC should set (`bootstrap.servers` among them).
    pub client_settings: clients::ClientSettings,
}

/// Reads, plans and (with `apply`) writes. No change is made unless every check passed.
pub(crate) async fn execute<A: ConsumerAws>(
    aws: &A,
    region: &str,
    req: &Request,
) -> Result<Report, Error> {
    check_request(req)?;
    let endpoint = aws.endpoint(&req.endpoint).await?;
    plan::check_endpoint(&endpoint)?;
    let zone = aws.hosted_zone(&req.zone_id).await?;
    plan::check_zone(&zone, &endpoint, region)?;
    let cross_region = endpoint.is_cross_region(region);
    let service_region = endpoint.service_region(region).to_string();
    // The brokers' names carry the AZ IDs of the provider's Region. Same Region: this account's
    // AZ map (names differ per account, IDs do not). Cross-Region: DescribeAvailabilityZones in
    // the service's Region, with a client for that Region (an EC2 client answers for its own
    // Region only; AZ IDs are the same in every account, EC2 User Guide, "AZ IDs for your AWS
    // resources"), rather than a list built in: Regions gain AZs.
    let azs = aws.availability_zones(&service_region).await?;
    let entries = plan::entries(&endpoint, &azs)?;
    let (template, bootstrap) = (&req.host_template, req.bootstrap_host.as_deref());
    let desired = match cross_region {
        true => cross_region::desired_cross_region(&entries, &azs, template, bootstrap),
        false => plan::desired(&entries, &azs, template, bootstrap),
    };
    plan::check_in_zone(&desired, &zone)?;
    let observed = aws.records(&zone.id).await?;
    let records = plan::plan(&desired, &observed, &zone.id)?;
    let changes_pending = records.iter().any(Planned::is_change);
    let applied = match (req.apply, changes_pending) {
        (true, true) => Some(apply(aws, &zone, &endpoint, &records, req.insync_timeout).await?),
        _ => None,
    };
    let mut warnings = plan::warnings(&endpoint, &records);
    if cross_region {
        warnings.push(cross_region::cross_region_warning(&endpoint, region));
    }
    let bootstrap_servers = plan::bootstrap_servers(&desired, req.bootstrap_port);
    Ok(Report {
        warnings,
        client_settings: clients::settings(&bootstrap_servers, &azs, cross_region, &req.clients),
        bootstrap_servers,
        endpoint,
        zone,
        region: region.to_string(),
        service_region,
        cross_region,
        records,
        changes_pending,
        applied,
    })
}

/// The checks of the command line made before any AWS call (usage errors).
pub(crate) fn check_request(req: &Request) -> Result<(), PlanError> {
    plan::check_names(&req.host_template, req.bootstrap_host.as_deref())?;
    clients::check(&req.clients).map_err(PlanError::Usage)
}

/// UPSERTs the changed records in one batch and polls GetChange until INSYNC or `timeout`.
async fn apply<A: ConsumerAws>(
    aws: &A,
    zone: &Zone,
    endpoint: &Endpoint,
    records: &[Planned],
    timeout: Duration,
) -> Result<Applied, Error> {
    let upserts: Vec<Record> = records
        .iter()
        .filter(|p| p.is_change())
        .map(|p| Record::cname(&p.record.name, &p.record.value))
        .collect();
    let comment = format!("kplink-agent consumer-dns {}", endpoint.id);
    let started = tokio::time::Instant::now();
    let mut change = aws.upsert(&zone.id, &upserts, &comment).await?;
    let mut delay = Duration::from_millis(250);
    while !change.is_insync() {
        let waited = started.elapsed();
        if waited >= timeout {
            return Err(Error::NotInsync {
                change: change.id,
                zone: zone.id.clone(),
                status: change.status,
                waited,
            });
        }
        tokio::time::sleep(delay.min(timeout - waited)).await;
        delay = (delay * 2).min(Duration::from_secs(5));
        change = aws.change(&change.id).await?;
    }
    Ok(Applied {
        change_id: change.id,
        status: change.status,
        waited_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    })
}

/// The text form of a report (stdout); warnings go to stderr separately.
pub(crate) fn render(report: &Report) -> String {
    let mut out = String::new();
    let pending = report.records.iter().filter(|p| p.is_change()).count();
    let head = format!(
        "endpoint {} ({}) -> hosted zone {} ({})",
        report.endpoint.id, report.endpoint.vpc_id, report.zone.id, report.zone.name
    );
    out.push_str(&match (pending, &report.applied) {
        (0, _) => format!("{head}: nothing to do\n"),
        (n, Some(a)) => format!(
            "{head}: applied {n} change(s), change {} {} after {} ms\n",
            a.change_id, a.status, a.waited_ms
        ),
        (n, None) => format!("{head}: {n} change(s) pending\n"),
    });
    for p in &report.records {
        let (mark, what) = match &p.action {
            plan::Action::Create => ("+", "create".to_string()),
            plan::Action::Update { from } => ("~", format!("update, was {from}")),
            plan::Action::Unchanged => ("=", "unchanged".to_string()),
        };
        let role = match &p.record.role {
            plan::Role::Zonal { az_id, az_name } => format!("{az_id} = {az_name}: zonal"),
            plan::Role::CrossZone { az_id, az_name } => {
                format!("{az_id} = {az_name}: no endpoint subnet, Regional (cross-zone)")
            }
            plan::Role::CrossRegion { az_id } => {
                format!("{az_id}: provider's Region, Regional (cross-Region)")
            }
            plan::Role::Bootstrap => "bootstrap: Regional".to_string(),
        };
        out.push_str(&format!(
            "  {mark} {}. CNAME {} ({what}; {role})\n",
            p.record.name, p.record.value
        ));
    }
    out.push_str(&clients::render(&report.client_settings));
    out.push_str(&format!("bootstrap.servers={}\n", report.bootstrap_servers));
    out
}

/// `consumer-dns` against AWS: checks `req`, builds the SDK clients from the standard chain and
/// runs it (printing is the CLI's, see `cli::consumer_dns`).
pub(crate) async fn run(req: &Request) -> Result<Report, Error> {
    check_request(req)?;
    match sdk::Sdk::from_env().await {
        Some((aws, region)) => execute(&aws, &region, req).await,
        None => Err(Error::NoRegion(req.endpoint.clone())),
    }
}
