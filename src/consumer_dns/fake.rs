//! An in-process [`ConsumerAws`] with AWS's rules, for fast tests of whole runs: DNS entries in
//! AWS's shape (Regional first, then one zonal entry per subnet AZ), AWS's error codes, UPSERT
//! keyed by (name, type, set identifier) with names stored with the trailing dot, a CNAME refused
//! next to another record of its name (`InvalidChangeBatch`), and changes `PENDING` for a number
//! of GetChange calls before `INSYNC`. Every call is logged by operation name.

use std::collections::BTreeMap;
use std::sync::Mutex;

use super::{AwsError, Az, Change, ConsumerAws, Endpoint, Record, Zone};

/// The fake account.
#[derive(Debug, Default)]
pub(crate) struct FakeAws {
    /// Endpoints by id.
    pub endpoints: BTreeMap<String, Endpoint>,
    /// The client Region's AZs.
    pub azs: Vec<Az>,
    /// Other Regions' AZs (DescribeAvailabilityZones there); a Region in neither fails.
    pub other_regions: BTreeMap<String, Vec<Az>>,
    /// The Regions DescribeAvailabilityZones was asked about, in order.
    pub az_regions: Mutex<Vec<String>>,
    /// Zones (and their records) by id.
    pub zones: Mutex<BTreeMap<String, (Zone, Vec<Record>)>>,
    /// GetChange answers PENDING this many times per change.
    pub pending_polls: u32,
    /// Change id → GetChange calls left before INSYNC.
    pub changes: Mutex<BTreeMap<String, u32>>,
    /// Operations called, in order.
    pub calls: Mutex<Vec<&'static str>>,
}

/// An interface endpoint in `vpc` with subnets in `az_names`, DNS entries as AWS makes them.
pub(crate) fn interface_endpoint(id: &str, vpc: &str, region: &str, az_names: &[&str]) -> Endpoint {
    let domain = format!("vpce-svc-0123456789abcdef0.{region}.vpce.amazonaws.com");
    let mut dns_names = vec![format!("{id}-mmzfdbs8.{domain}")];
    dns_names.extend(
        az_names
            .iter()
            .map(|az| format!("{id}-mmzfdbs8-{az}.{domain}")),
    );
    Endpoint {
        id: id.into(),
        kind: "Interface".into(),
        vpc_id: vpc.into(),
        service_name: format!("com.amazonaws.vpce.{region}.vpce-svc-0123456789abcdef0"),
        state: "available".into(),
        dns_names,
        service_region: Some(region.into()),
    }
}

/// us-east-1's first three AZs as moto (and the FACTS file) name them.
pub(crate) fn use1_azs() -> Vec<Az> {
    [
        ("us-east-1a", "use1-az6"),
        ("us-east-1b", "use1-az1"),
        ("us-east-1c", "use1-az2"),
    ]
    .iter()
    .map(|(name, id)| Az {
        name: (*name).into(),
        id: (*id).into(),
    })
    .collect()
}

fn error(operation: &'static str, resource: &str, code: &str, message: &str) -> AwsError {
    AwsError {
        operation,
        resource: resource.into(),
        code: code.into(),
        message: message.into(),
    }
}

impl FakeAws {
    /// Adds a zone with its SOA and NS records, as Route 53 creates them.
    pub(crate) fn add_zone(&self, id: &str, name: &str, private: bool, vpcs: &[(&str, &str)]) {
        let apex = |kind: &str, value: &str| Record {
            name: name.into(),
            kind: kind.into(),
            ttl: Some(900),
            values: vec![value.into()],
            set_identifier: None,
            alias: None,
        };
        let zone = Zone {
            id: id.into(),
            name: name.into(),
            private,
            vpcs: vpcs
                .iter()
                .map(|(v, r)| ((*v).into(), (*r).into()))
                .collect(),
        };
        let records = vec![
            apex("NS", "ns-1.awsdns-01.org."),
            apex("SOA", "ns-1.awsdns-01.org. x 1 7200 900 1209600 86400"),
        ];
        self.zones
            .lock()
            .unwrap()
            .insert(id.into(), (zone, records));
    }

    /// The records of zone `id` now.
    pub(crate) fn records_of(&self, id: &str) -> Vec<Record> {
        self.zones.lock().unwrap()[id].1.clone()
    }

    /// Puts a record in behind the command's back.
    pub(crate) fn put(&self, zone: &str, record: Record) {
        self.zones
            .lock()
            .unwrap()
            .get_mut(zone)
            .unwrap()
            .1
            .push(record);
    }

    /// How often `operation` was called.
    pub(crate) fn count(&self, operation: &str) -> usize {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .filter(|c| **c == operation)
            .count()
    }

    fn log(&self, operation: &'static str) {
        self.calls.lock().unwrap().push(operation);
    }
}

impl ConsumerAws for FakeAws {
    async fn endpoint(&self, id: &str) -> Result<Endpoint, AwsError> {
        self.log("DescribeVpcEndpoints");
        self.endpoints.get(id).cloned().ok_or_else(|| {
            let message = format!("The VpcEndPoint ID '{id}' does not exist");
            error(
                "DescribeVpcEndpoints",
                id,
                "InvalidVpcEndpointId.NotFound",
                &message,
            )
        })
    }

    async fn availability_zones(&self, region: &str) -> Result<Vec<Az>, AwsError> {
        self.log("DescribeAvailabilityZones");
        self.az_regions.lock().unwrap().push(region.into());
        let own = self.azs.first().is_none_or(|a| a.name.starts_with(region));
        match (own, self.other_regions.get(region)) {
            (_, Some(azs)) => Ok(azs.clone()),
            (true, None) => Ok(self.azs.clone()),
            (false, None) => Err(error(
                "DescribeAvailabilityZones",
                region,
                "AuthFailure",
                "AWS was not able to validate the provided access credentials",
            )),
        }
    }

    async fn hosted_zone(&self, id: &str) -> Result<Zone, AwsError> {
        self.log("GetHostedZone");
        let id = id.trim_start_matches("/hostedzone/");
        let zones = self.zones.lock().unwrap();
        zones.get(id).map(|(z, _)| z.clone()).ok_or_else(|| {
            let message = format!("No hosted zone found with ID: {id}");
            error("GetHostedZone", id, "NoSuchHostedZone", &message)
        })
    }

    async fn records(&self, zone_id: &str) -> Result<Vec<Record>, AwsError> {
        self.log("ListResourceRecordSets");
        let zones = self.zones.lock().unwrap();
        let zone = zones.get(zone_id).ok_or_else(|| {
            error(
                "ListResourceRecordSets",
                zone_id,
                "NoSuchHostedZone",
                "no zone",
            )
        })?;
        Ok(zone.1.clone())
    }

    async fn upsert(
        &self,
        zone_id: &str,
        records: &[Record],
        _comment: &str,
    ) -> Result<Change, AwsError> {
        self.log("ChangeResourceRecordSets");
        let op = "ChangeResourceRecordSets";
        let mut zones = self.zones.lock().unwrap();
        let (_, have) = zones
            .get_mut(zone_id)
            .ok_or_else(|| error(op, zone_id, "NoSuchHostedZone", "no zone"))?;
        let mut next = have.clone();
        for r in records {
            let key = |x: &Record| {
                (
                    x.name.to_ascii_lowercase(),
                    x.kind.clone(),
                    x.set_identifier.clone(),
                )
            };
            let name = r.name.to_ascii_lowercase();
            let clash = next
                .iter()
                .any(|x| x.name.to_ascii_lowercase() == name && x.kind != r.kind);
            if clash || !r.name.ends_with('.') {
                let message = format!(
                    "RRSet of type {} with DNS name {} is not permitted",
                    r.kind, r.name
                );
                return Err(error(op, zone_id, "InvalidChangeBatch", &message));
            }
            next.retain(|x| key(x) != key(r));
            next.push(r.clone());
        }
        *have = next;
        let mut changes = self.changes.lock().unwrap();
        let id = format!("C{:013}", changes.len() + 1);
        changes.insert(id.clone(), self.pending_polls);
        let status = if self.pending_polls == 0 {
            "INSYNC"
        } else {
            "PENDING"
        };
        Ok(Change {
            id,
            status: status.into(),
        })
    }

    async fn change(&self, id: &str) -> Result<Change, AwsError> {
        self.log("GetChange");
        let mut changes = self.changes.lock().unwrap();
        let left = changes
            .get_mut(id)
            .ok_or_else(|| error("GetChange", id, "NoSuchChange", "no such change"))?;
        *left = left.saturating_sub(1);
        let status = if *left == 0 { "INSYNC" } else { "PENDING" };
        Ok(Change {
            id: id.into(),
            status: status.into(),
        })
    }
}
