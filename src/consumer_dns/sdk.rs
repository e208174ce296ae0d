//! [`ConsumerAws`] over the AWS SDK: EC2 (DescribeVpcEndpoints, DescribeAvailabilityZones) and
//! Route 53 (GetHostedZone, ListResourceRecordSets, ChangeResourceRecordSets, GetChange), with the
//! consumer account's credentials and Region from the standard chain and the agent's retry and
//! timeout policy ([`crate::aws::sdk_config_from_chain`]). Endpoints follow the SDK's overrides
//! (`AWS_ENDPOINT_URL`, `AWS_ENDPOINT_URL_EC2`, `AWS_ENDPOINT_URL_ROUTE_53`). Thin: every decision
//! is in [`super::plan`].

use aws_sdk_ec2 as ec2;
use aws_sdk_route53 as route53;
use aws_smithy_types::error::display::DisplayErrorContext;
use ec2::error::ProvideErrorMetadata;
use route53::types::{
    Change as R53Change, ChangeAction, ChangeBatch, ResourceRecord, ResourceRecordSet, RrType,
};

use super::{AwsError, Az, Change, ConsumerAws, Endpoint, Record, Zone};

/// The EC2 and Route 53 clients of the consumer account.
#[derive(Debug, Clone)]
pub(crate) struct Sdk {
    ec2: ec2::Client,
    route53: route53::Client,
    config: aws_config::SdkConfig,
}

impl Sdk {
    /// Clients from the standard chain, and its Region (`None`: the chain has no Region).
    pub(crate) async fn from_env() -> Option<(Sdk, String)> {
        let config = crate::aws::sdk_config_from_chain().await;
        let region = config.region()?.to_string();
        Some((
            Sdk {
                ec2: ec2::Client::new(&config),
                route53: route53::Client::new(&config),
                config: config.clone(),
            },
            region,
        ))
    }
}

/// One line for a failed call.
fn aws_error<E>(operation: &'static str, resource: &str, e: E) -> AwsError
where
    E: ProvideErrorMetadata + std::error::Error,
{
    AwsError {
        operation,
        resource: resource.to_string(),
        code: e.code().unwrap_or("Unknown").to_string(),
        message: e
            .message()
            .map(str::to_string)
            .unwrap_or_else(|| DisplayErrorContext(&e).to_string()),
    }
}

/// `Z…` from `/hostedzone/Z…`; `C…` from `/change/C…`.
fn bare_id(id: &str) -> String {
    id.rsplit('/').next().unwrap_or(id).to_string()
}

fn change_of(info: Option<&route53::types::ChangeInfo>) -> Change {
    Change {
        id: info.map(|c| bare_id(c.id())).unwrap_or_default(),
        status: info
            .map(|c| c.status().as_str().to_string())
            .unwrap_or_default(),
    }
}

fn record_of(r: &ResourceRecordSet) -> Record {
    Record {
        name: r.name().to_string(),
        kind: r.r#type().as_str().to_string(),
        ttl: r.ttl(),
        values: r
            .resource_records()
            .iter()
            .map(|v| v.value().to_string())
            .collect(),
        set_identifier: r.set_identifier().map(str::to_string),
        alias: r.alias_target().map(|a| a.dns_name().to_string()),
    }
}

fn record_set(r: &Record) -> Result<ResourceRecordSet, route53::error::BuildError> {
    let mut set = ResourceRecordSet::builder()
        .name(&r.name)
        .r#type(RrType::from(r.kind.as_str()));
    if let Some(ttl) = r.ttl {
        set = set.ttl(ttl);
    }
    for v in &r.values {
        set = set.resource_records(ResourceRecord::builder().value(v).build()?);
    }
    set.build()
}

fn batch(records: &[Record], comment: &str) -> Result<ChangeBatch, route53::error::BuildError> {
    let mut batch = ChangeBatch::builder().comment(comment);
    for r in records {
        batch = batch.changes(
            R53Change::builder()
                .action(ChangeAction::Upsert)
                .resource_record_set(record_set(r)?)
                .build()?,
        );
    }
    batch.build()
}

impl ConsumerAws for Sdk {
    async fn endpoint(&self, id: &str) -> Result<Endpoint, AwsError> {
        let out = self
            .ec2
            .describe_vpc_endpoints()
            .vpc_endpoint_ids(id)
            .send()
            .await
            .map_err(|e| aws_error("DescribeVpcEndpoints", id, e))?;
        let e = out
            .vpc_endpoints()
            .iter()
            .find(|e| e.vpc_endpoint_id() == Some(id))
            .ok_or_else(|| AwsError {
                operation: "DescribeVpcEndpoints",
                resource: id.to_string(),
                code: "InvalidVpcEndpointId.NotFound".into(),
                message: format!("no endpoint {id} in the answer"),
            })?;
        Ok(Endpoint {
            id: id.to_string(),
            kind: e
                .vpc_endpoint_type()
                .map(|t| t.as_str().to_string())
                .unwrap_or_default(),
            vpc_id: e.vpc_id().unwrap_or_default().to_string(),
            service_name: e.service_name().unwrap_or_default().to_string(),
            state: e
                .state()
                .map(|s| s.as_str().to_string())
                .unwrap_or_default(),
            dns_names: e
                .dns_entries()
                .iter()
                .filter_map(|d| d.dns_name().map(str::to_string))
                .collect(),
            service_region: e.service_region().map(str::to_string),
        })
    }

    async fn availability_zones(&self, region: &str) -> Result<Vec<Az>, AwsError> {
        // An EC2 client answers for its own Region: another Region's AZs need a client for that
        // Region (same credentials, retry policy and endpoint overrides).
        let own = self.config.region().is_some_and(|r| r.as_ref() == region);
        let client = match own {
            true => self.ec2.clone(),
            false => ec2::Client::from_conf(
                ec2::config::Builder::from(&self.config)
                    .region(ec2::config::Region::new(region.to_string()))
                    .build(),
            ),
        };
        let out = client
            .describe_availability_zones()
            .filters(
                ec2::types::Filter::builder()
                    .name("zone-type")
                    .values("availability-zone")
                    .build(),
            )
            .send()
            .await
            .map_err(|e| aws_error("DescribeAvailabilityZones", region, e))?;
        Ok(out
            .availability_zones()
            .iter()
            .filter_map(|z| {
                Some(Az {
                    name: z.zone_name()?.to_string(),
                    id: z.zone_id()?.to_string(),
                })
            })
            .collect())
    }

    async fn hosted_zone(&self, id: &str) -> Result<Zone, AwsError> {
        let out = self
            .route53
            .get_hosted_zone()
            .id(id)
            .send()
            .await
            .map_err(|e| aws_error("GetHostedZone", id, e))?;
        let zone = out.hosted_zone();
        Ok(Zone {
            id: zone.map_or_else(|| bare_id(id), |z| bare_id(z.id())),
            name: zone.map(|z| z.name().to_string()).unwrap_or_default(),
            private: zone
                .and_then(|z| z.config())
                .is_some_and(|c| c.private_zone()),
            vpcs: out
                .vpcs()
                .iter()
                .map(|v| {
                    (
                        v.vpc_id().unwrap_or_default().to_string(),
                        v.vpc_region()
                            .map(|r| r.as_str().to_string())
                            .unwrap_or_default(),
                    )
                })
                .collect(),
        })
    }

    async fn records(&self, zone_id: &str) -> Result<Vec<Record>, AwsError> {
        let mut out = Vec::new();
        let mut next: Option<(String, RrType, Option<String>)> = None;
        loop {
            let mut call = self
                .route53
                .list_resource_record_sets()
                .hosted_zone_id(zone_id);
            if let Some((name, kind, identifier)) = next.take() {
                call = call
                    .start_record_name(name)
                    .start_record_type(kind)
                    .set_start_record_identifier(identifier);
            }
            let page = call
                .send()
                .await
                .map_err(|e| aws_error("ListResourceRecordSets", zone_id, e))?;
            out.extend(page.resource_record_sets().iter().map(record_of));
            match (
                page.is_truncated(),
                page.next_record_name(),
                page.next_record_type(),
            ) {
                (true, Some(name), Some(kind)) => {
                    let identifier = page.next_record_identifier().map(str::to_string);
                    next = Some((name.to_string(), kind.clone(), identifier));
                }
                _ => return Ok(out),
            }
        }
    }

    async fn upsert(
        &self,
        zone_id: &str,
        records: &[Record],
        comment: &str,
    ) -> Result<Change, AwsError> {
        let batch = batch(records, comment).map_err(|e| AwsError {
            operation: "ChangeResourceRecordSets",
            resource: zone_id.to_string(),
            code: "BuildError".into(),
            message: e.to_string(),
        })?;
        let out = self
            .route53
            .change_resource_record_sets()
            .hosted_zone_id(zone_id)
            .change_batch(batch)
            .send()
            .await
            .map_err(|e| aws_error("ChangeResourceRecordSets", zone_id, e))?;
        Ok(change_of(out.change_info()))
    }

    async fn change(&self, id: &str) -> Result<Change, AwsError> {
        let out = self
            .route53
            .get_change()
            .id(id)
            .send()
            .await
            .map_err(|e| aws_error("GetChange", id, e))?;
        Ok(change_of(out.change_info()))
    }
}
