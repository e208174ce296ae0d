//! Load balancer attributes `status` reads (DescribeLoadBalancerAttributes).

use super::Elbv2;
use crate::nlb::NlbError;

/// The NLB attribute of cross-zone load balancing ("Cross-zone load balancing for target
/// groups", ELB Network Load Balancers guide,
/// <https://docs.aws.amazon.com/elasticloadbalancing/latest/network/target-group-cross-zone.html>;
/// `load_balancing.cross_zone.enabled`, `false` by default on an NLB, LoadBalancerAttribute API
/// reference).
const CROSS_ZONE_ATTRIBUTE: &str = "load_balancing.cross_zone.enabled";

impl Elbv2 {
    /// Whether the NLB `arn` has cross-zone load balancing on (absent: AWS's default, off).
    pub async fn cross_zone_enabled(&self, arn: &str) -> Result<bool, NlbError> {
        let out = self
            .calls
            .send("DescribeLoadBalancerAttributes", || {
                self.client
                    .describe_load_balancer_attributes()
                    .load_balancer_arn(arn)
                    .send()
            })
            .await
            .map_err(|e| NlbError::from_sdk("DescribeLoadBalancerAttributes", arn, e))?;
        Ok(out
            .attributes()
            .iter()
            .find(|a| a.key() == Some(CROSS_ZONE_ATTRIBUTE))
            .and_then(|a| a.value())
            .is_some_and(|v| v.eq_ignore_ascii_case("true")))
    }
}
