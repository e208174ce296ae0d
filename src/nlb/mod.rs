//! The Network Load Balancer: the agent's only shared state.
//!
//! [`LoadBalancer`] is the seam between the reconcile logic and ELBv2; [`Elbv2`] (`nlb/elbv2.rs`)
//! is the thin real adapter. Every call is counted by operation (see [`CallCounter`]) so passes can report what they
//! cost, and every failure names the operation, the ARN or id it was about, and AWS's error code.
//! Throttling and 5xx answers are retried with jitter by the SDK's standard retry policy before an
//! error reaches this module.

use std::collections::BTreeMap;
use std::future::Future;

#[cfg(any(test, feature = "test-support"))]
pub mod contract;
mod elbv2;
pub use elbv2::Elbv2;

/// A failed ELBv2 call.
#[derive(Debug, thiserror::Error)]
#[error("{operation} on {resource} failed: {code}: {message}")]
pub struct NlbError {
    /// ELBv2 operation, e.g. `CreateListener`.
    pub operation: &'static str,
    /// The ARN, name or port the call was about.
    pub resource: String,
    /// AWS's error code (e.g. `LoadBalancerNotFound`), or `Unknown` for transport failures.
    pub code: String,
    /// The SDK's full error context.
    pub message: String,
}

/// A listener of the load balancer.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Listener {
    /// Listener ARN.
    pub arn: String,
    /// Port it listens on.
    pub port: u16,
    /// Target group of its default forward action, if it forwards to exactly one.
    pub target_group_arn: Option<String>,
}

/// Health of a registered target as ELBv2 reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TargetState {
    /// Registered and in service or on its way (initial, healthy, unhealthy, unused, unavailable).
    Registered,
    /// Being deregistered.
    Draining,
}

/// A registered instance target.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Target {
    /// Instance id.
    pub id: String,
    /// Port traffic is sent to.
    pub port: u16,
    /// Registration state.
    pub state: TargetState,
    /// ELBv2's health state, e.g. `healthy`.
    pub health: String,
    /// ELBv2's reason code for that state, e.g. `Target.NotInUse` (TargetHealth API reference).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// What a target group is created with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetGroupSpec {
    /// Name (≤ 32 characters).
    pub name: String,
    /// VPC of the targets.
    pub vpc_id: String,
    /// Port targets listen on by default. Health checks probe each target's own port
    /// (`traffic-port`), so a changed `listener.port` or a bootstrap group with mixed ports is
    /// checked where traffic goes.
    pub port: u16,
    /// Tags applied at creation; an existing group of that name must carry all of them.
    pub tags: Vec<(String, String)>,
    /// The load balancer the group is for: an existing group attached to another one is refused
    /// (a target group forwards for one load balancer only).
    pub load_balancer_arn: String,
}

/// How long a target group without any tag is read again before it is taken as untagged: tags
/// applied by CreateTargetGroup can take a few seconds to show in DescribeTags.
pub const UNTAGGED_PATIENCE: std::time::Duration = std::time::Duration::from_secs(30);

/// ELBv2's health check port value meaning "the port each target receives traffic on".
pub const TRAFFIC_PORT: &str = "traffic-port";

/// A target group as DescribeTargetGroups reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetGroupInfo {
    /// ARN.
    pub arn: String,
    /// Load balancers it forwards for (at most one, by ELBv2's rules).
    pub load_balancer_arns: Vec<String>,
    /// Health check port: `traffic-port` or a number.
    pub health_check_port: String,
}

/// A target group created with exactly these settings, never adopted under other ones: the
/// restart lock (see [`crate::restart`]), whose settings encode its holder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExactGroupSpec {
    /// Name (≤ 32 characters).
    pub name: String,
    /// VPC.
    pub vpc_id: String,
    /// Port (1–65535).
    pub port: u16,
    /// Health check port (1–65535), a number rather than `traffic-port`.
    pub health_check_port: u16,
    /// Tags applied at creation (an idempotent create leaves the existing group's tags alone).
    pub tags: Vec<(String, String)>,
}

/// Result of CreateTargetGroup with [`ExactGroupSpec`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupCreate {
    /// A group of that name and these settings exists now (created, or it existed: AWS returns
    /// it); its ARN. Its tags say who created it.
    Created(String),
    /// A group of that name exists with other settings (`DuplicateTargetGroupName`).
    NameTaken,
}

/// Result of trying to put a listener on a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenerClaim {
    /// The listener exists now (created, or an identical one existed); its ARN.
    Claimed(String),
    /// Another listener already holds the port.
    PortTaken,
    /// The load balancer has its maximum number of listeners (`TooManyListeners`; 50 per NLB,
    /// not adjustable: AWS "Quotas for your Network Load Balancers").
    QuotaReached,
}

/// Listeners per Network Load Balancer (AWS quota page: "Listeners per Network Load Balancer:
/// 50", Adjustable: No).
pub const MAX_LISTENERS_PER_NLB: usize = 50;

/// The ELBv2 operations the agent needs.
pub trait LoadBalancer: Send + Sync {
    /// All listeners of the load balancer.
    fn listeners(
        &self,
        lb_arn: &str,
    ) -> impl Future<Output = Result<Vec<Listener>, NlbError>> + Send;
    /// Targets registered in a target group.
    fn targets(&self, tg_arn: &str) -> impl Future<Output = Result<Vec<Target>, NlbError>> + Send;
    /// Creates the target group, or returns the ARN of the existing one of that name.
    fn ensure_target_group(
        &self,
        spec: &TargetGroupSpec,
    ) -> impl Future<Output = Result<String, NlbError>> + Send;
    /// CreateTargetGroup with exactly `spec`'s settings; atomic per name (see [`GroupCreate`]).
    fn create_exact_target_group(
        &self,
        spec: &ExactGroupSpec,
    ) -> impl Future<Output = Result<GroupCreate, NlbError>> + Send;
    /// Creates a TCP listener on `port` forwarding to `tg_arn`; atomic per port.
    fn create_listener(
        &self,
        lb_arn: &str,
        port: u16,
        tg_arn: &str,
        tags: &[(String, String)],
    ) -> impl Future<Output = Result<ListenerClaim, NlbError>> + Send;
    /// Registers instance targets.
    fn register(
        &self,
        tg_arn: &str,
        targets: &[(String, u16)],
    ) -> impl Future<Output = Result<(), NlbError>> + Send;
    /// Deregisters instance targets.
    fn deregister(
        &self,
        tg_arn: &str,
        targets: &[(String, u16)],
    ) -> impl Future<Output = Result<(), NlbError>> + Send;
    /// Tags of a resource; `None` when the resource no longer exists.
    fn tags(
        &self,
        arn: &str,
    ) -> impl Future<Output = Result<Option<BTreeMap<String, String>>, NlbError>> + Send;
    /// Adds or overwrites tags.
    fn add_tags(
        &self,
        arn: &str,
        tags: &[(String, String)],
    ) -> impl Future<Output = Result<(), NlbError>> + Send;
    /// Removes tag keys.
    fn remove_tags(
        &self,
        arn: &str,
        keys: &[String],
    ) -> impl Future<Output = Result<(), NlbError>> + Send;
    /// ARN of the target group named `name`, if it exists.
    fn find_target_group(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Option<String>, NlbError>> + Send;
    /// Deletes a listener.
    fn delete_listener(&self, arn: &str) -> impl Future<Output = Result<(), NlbError>> + Send;
    /// Deletes a target group.
    fn delete_target_group(&self, arn: &str) -> impl Future<Output = Result<(), NlbError>> + Send;
    /// Names of the Availability Zones each load balancer is enabled in, in one
    /// DescribeLoadBalancers (at most 20 ARNs; ELBv2 reports zone names, which are this
    /// account's names like instance metadata's). Fails when any of them does not exist.
    fn availability_zones(
        &self,
        lb_arns: &[String],
    ) -> impl Future<Output = Result<BTreeMap<String, Vec<String>>, NlbError>> + Send;
    /// Describes target groups by ARN.
    fn target_group_info(
        &self,
        arns: &[String],
    ) -> impl Future<Output = Result<Vec<TargetGroupInfo>, NlbError>> + Send;
    /// Points the group's health check at each target's traffic port (ModifyTargetGroup).
    fn health_check_traffic_port(
        &self,
        arn: &str,
    ) -> impl Future<Output = Result<(), NlbError>> + Send;
    /// The listener's `tcp.idle_timeout.seconds` (DescribeListenerAttributes); `None` when
    /// AWS reports none (see [`crate::idle`]).
    fn listener_idle_timeout(
        &self,
        arn: &str,
    ) -> impl Future<Output = Result<Option<u32>, NlbError>> + Send;
    /// Sets the listener's `tcp.idle_timeout.seconds` (ModifyListenerAttributes).
    fn set_listener_idle_timeout(
        &self,
        arn: &str,
        seconds: u32,
    ) -> impl Future<Output = Result<(), NlbError>> + Send;
}

/// The NLB listener attribute holding its TCP idle timeout (ListenerAttribute API reference;
/// see [`crate::idle`]).
pub const IDLE_TIMEOUT_ATTRIBUTE: &str = "tcp.idle_timeout.seconds";

pub use crate::backoff::CallCounter;

/// Name of a target group from its ARN (`…:targetgroup/NAME/ID`), a documented, stable format.
pub fn target_group_name(arn: &str) -> Option<&str> {
    let resource = arn.split(':').nth(5)?;
    let mut parts = resource.split('/');
    match (parts.next(), parts.next(), parts.next()) {
        (Some("targetgroup"), Some(name), Some(_)) => Some(name),
        _ => None,
    }
}

/// `id:port, id:port` for messages.
pub fn target_list(targets: &[(String, u16)]) -> String {
    targets
        .iter()
        .map(|(id, port)| format!("{id}:{port}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_group_name_from_arn() {
        assert_eq!(
            target_group_name("arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/kp-orders-b3/73e2d6bc24d8a067"),
            Some("kp-orders-b3")
        );
        assert_eq!(
            target_group_name(
                "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/net/x/1"
            ),
            None
        );
        assert_eq!(target_group_name("nonsense"), None);
    }
}
