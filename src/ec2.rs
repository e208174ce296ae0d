//! EC2 instance tags, the fallback when instance metadata does not expose tags.
//!
//! Only used when `tags/instance` answers 404 (instance metadata tags disabled), so a host with
//! tags in metadata never needs the `ec2:DescribeTags` permission.

use std::future::Future;

use aws_sdk_ec2 as ec2;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use ec2::error::ProvideErrorMetadata;
use ec2::types::Filter;

use crate::backoff::Attempted;
use crate::nlb::CallCounter;

/// A failed EC2 call.
#[derive(Debug, thiserror::Error)]
#[error("DescribeTags for {instance_id} tag {key} failed: {code}: {message}")]
pub(crate) struct Ec2Error {
    /// The instance.
    pub instance_id: String,
    /// The tag key.
    pub key: String,
    /// AWS's error code.
    pub code: String,
    /// Details.
    pub message: String,
}

/// `status`'s one-line error for a failed EC2 call: the operation, AWS's code and message.
fn failed<E>(operation: &str, a: &Attempted<ec2::error::SdkError<E, HttpResponse>>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    format!("{operation} failed: {}: {}", a.code(), a.message())
}

/// Reads one tag of an instance.
pub(crate) trait InstanceTags: Send + Sync {
    /// The tag's value, `None` when the instance has no such tag.
    fn tag(
        &self,
        instance_id: &str,
        key: &str,
    ) -> impl Future<Output = Result<Option<String>, Ec2Error>> + Send;
}

/// EC2 DescribeTags through the AWS SDK.
#[derive(Debug, Clone)]
pub(crate) struct Ec2Tags {
    client: ec2::Client,
    calls: CallCounter,
}

impl Ec2Tags {
    /// Wraps a configured client.
    pub(crate) fn new(client: ec2::Client, calls: CallCounter) -> Self {
        Ec2Tags { client, calls }
    }
}

impl InstanceTags for Ec2Tags {
    async fn tag(&self, instance_id: &str, key: &str) -> Result<Option<String>, Ec2Error> {
        let out = self
            .calls
            .send("DescribeTags", || {
                self.client
                    .describe_tags()
                    .filters(
                        Filter::builder()
                            .name("resource-id")
                            .values(instance_id)
                            .build(),
                    )
                    .filters(Filter::builder().name("key").values(key).build())
                    .send()
            })
            .await
            .map_err(|a| Ec2Error {
                instance_id: instance_id.to_string(),
                key: key.to_string(),
                code: a.code().to_string(),
                message: a.message(),
            })?;
        Ok(out
            .tags()
            .iter()
            .find(|t| t.key() == Some(key) && t.resource_id() == Some(instance_id))
            .and_then(|t| t.value().map(str::to_string)))
    }
}

impl Ec2Tags {
    /// AZ name of each instance (EC2 DescribeInstances; `status` only). The error is one line
    /// naming the call and AWS's code.
    pub(crate) async fn instance_zones(
        &self,
        instance_ids: &[String],
    ) -> Result<std::collections::BTreeMap<String, String>, String> {
        let mut out = std::collections::BTreeMap::new();
        if instance_ids.is_empty() {
            return Ok(out);
        }
        // By filter, not by `InstanceIds`: DescribeInstances with an id that no longer exists
        // fails as a whole (`InvalidInstanceID.NotFound`, EC2 API reference), so one purged
        // broker would blank every other broker's zone; a filter simply matches nothing for it.
        // Chunks of 200 values (EC2 limits the values of one filter).
        for chunk in instance_ids.chunks(200) {
            let mut token: Option<String> = None;
            loop {
                let page = self
                    .calls
                    .send("DescribeInstances", || {
                        self.client
                            .describe_instances()
                            .filters(
                                Filter::builder()
                                    .name("instance-id")
                                    .set_values(Some(chunk.to_vec()))
                                    .build(),
                            )
                            .set_next_token(token.clone())
                            .send()
                    })
                    .await
                    .map_err(|a| failed("DescribeInstances", &a))?;
                for instance in page.reservations().iter().flat_map(|r| r.instances()) {
                    if let (Some(id), Some(az)) = (
                        instance.instance_id(),
                        instance.placement().and_then(|p| p.availability_zone()),
                    ) {
                        out.insert(id.to_string(), az.to_string());
                    }
                }
                token = page.next_token().map(str::to_string);
                if token.is_none() {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// This account's AZ name → AZ ID map (EC2 DescribeAvailabilityZones; `status` only).
    pub(crate) async fn zone_ids(
        &self,
    ) -> Result<std::collections::BTreeMap<String, String>, String> {
        let out = self
            .calls
            .send("DescribeAvailabilityZones", || {
                self.client.describe_availability_zones().send()
            })
            .await
            .map_err(|a| failed("DescribeAvailabilityZones", &a))?;
        Ok(out
            .availability_zones()
            .iter()
            .filter_map(|z| Some((z.zone_name()?.to_string(), z.zone_id()?.to_string())))
            .collect())
    }
}

impl Ec2Tags {
    /// The Regions other than `region` each NLB's endpoint service accepts consumers from (EC2
    /// DescribeVpcEndpointServiceConfigurations, `SupportedRegions[].Region`; cross-Region
    /// PrivateLink, AWS PrivateLink guide, "Share your services through AWS PrivateLink",
    /// <https://docs.aws.amazon.com/vpc/latest/privatelink/privatelink-share-your-services.html#endpoint-service-cross-region>).
    /// Keyed by NLB ARN, only NLBs of `lb_arns` whose service has such a Region; `status` only.
    pub(crate) async fn other_service_regions(
        &self,
        lb_arns: &[String],
        region: &str,
    ) -> Result<std::collections::BTreeMap<String, Vec<String>>, String> {
        let mut out = std::collections::BTreeMap::new();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .calls
                .send("DescribeVpcEndpointServiceConfigurations", || {
                    self.client
                        .describe_vpc_endpoint_service_configurations()
                        .set_next_token(token.clone())
                        .send()
                })
                .await
                .map_err(|a| failed("DescribeVpcEndpointServiceConfigurations", &a))?;
            for svc in page.service_configurations() {
                let others: Vec<String> = svc
                    .supported_regions()
                    .iter()
                    .filter_map(|r| r.region())
                    .filter(|r| *r != region)
                    .map(str::to_string)
                    .collect();
                for arn in svc.network_load_balancer_arns() {
                    if !others.is_empty() && lb_arns.contains(arn) {
                        out.insert(arn.clone(), others.clone());
                    }
                }
            }
            token = page.next_token().map(str::to_string);
            if token.is_none() {
                return Ok(out);
            }
        }
    }
}
