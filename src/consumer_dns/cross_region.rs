//! Cross-Region endpoints (pure, like [`super::plan`]).
//!
//! Since late 2024 AWS PrivateLink connects across Regions natively: the provider lists the
//! consumer's Region in the endpoint service's supported Regions (`SupportedRegions` of
//! CreateVpcEndpointServiceConfiguration, `AddSupportedRegions` of
//! ModifyVpcEndpointServiceConfiguration, EC2 API reference), and the consumer creates an
//! interface endpoint with `ServiceRegion` (CreateVpcEndpoint API reference), which
//! DescribeVpcEndpoints returns (`VpcEndpoint.ServiceRegion`, "the Region where the service is
//! hosted"). AWS PrivateLink guide, "Share your services through AWS PrivateLink"
//! (<https://docs.aws.amazon.com/vpc/latest/privatelink/privatelink-share-your-services.html#endpoint-service-cross-region>,
//! cross-Region access): the endpoint's DNS names then carry the service's Region,
//! `endpoint_id.endpoint_service_id.service_region.vpce.amazonaws.com`.

use super::plan::{host_for, normalize, Az, Desired, Endpoint, Entries, Role};

impl Endpoint {
    /// The Region of the endpoint service: `ServiceRegion`, else `region` (the endpoint's own).
    pub(crate) fn service_region<'a>(&'a self, region: &'a str) -> &'a str {
        self.service_region
            .as_deref()
            .filter(|r| !r.is_empty())
            .unwrap_or(region)
    }

    /// A cross-Region endpoint: its service is in another Region than `region`, the client's
    /// (AWS PrivateLink guide, "Share your services through AWS PrivateLink", cross-Region
    /// access: the provider lists the consumer's Region in the endpoint service's supported
    /// Regions, the consumer creates an interface endpoint with `ServiceRegion`; CreateVpcEndpoint
    /// API reference, `ServiceRegion`).
    pub(crate) fn is_cross_region(&self, region: &str) -> bool {
        self.service_region(region) != region
    }
}

/// A cross-Region endpoint's records: one CNAME per AZ ID of the provider's Region
/// (`provider_azs`, sorted by AZ ID), each to the Regional entry, then the bootstrap host.
///
/// Zonal entries cannot be used across Regions: AZ IDs belong to one Region (EC2 User Guide,
/// "AZ IDs for your AWS resources"), the endpoint's zonal entries are named after the consumer's
/// AZs, and the brokers advertise the provider's AZ IDs. Only the Regional entry leads to every
/// broker, and only through cross-zone load balancing on the provider's NLB: with it off, an NLB
/// node forwards only to targets in its own zone ("Cross-zone load balancing for target groups",
/// ELB Network Load Balancers guide), and a connection to a broker in another zone times out.
pub(crate) fn desired_cross_region(
    entries: &Entries,
    provider_azs: &[Az],
    template: &str,
    bootstrap: Option<&str>,
) -> Vec<Desired> {
    let mut ids: Vec<&str> = provider_azs.iter().map(|a| a.id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    let mut out: Vec<Desired> = ids
        .into_iter()
        .map(|id| Desired {
            name: host_for(template, id),
            value: entries.regional.clone(),
            role: Role::CrossRegion { az_id: id.into() },
        })
        .collect();
    out.extend(bootstrap.map(|host| Desired {
        name: normalize(host),
        value: entries.regional.clone(),
        role: Role::Bootstrap,
    }));
    out
}

/// The warning of a cross-Region endpoint (`region`: the client's).
pub(crate) fn cross_region_warning(endpoint: &Endpoint, region: &str) -> String {
    format!(
        "endpoint {} in {region} reaches an endpoint service in {} (cross-Region): zonal names cannot cross Regions, so every broker name points at its Regional name, which reaches all brokers only if the provider's NLB has cross-zone load balancing on (load_balancing.cross_zone.enabled=true); without it connections to brokers in other zones time out",
        endpoint.id,
        endpoint.service_region(region)
    )
}
