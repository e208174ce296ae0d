//! In-process fakes of the side-effect traits, for fast tests of whole passes.
//!
//! [`FakeNlb`] implements [`LoadBalancer`] with AWS's documented ELBv2 rules, the same ones the
//! moto launcher in `tests/support` enforces: a second listener on a port fails
//! (`DuplicateListener`) unless its settings are identical (then the existing one is returned);
//! at most [`MAX_LISTENERS_PER_NLB`] listeners per load balancer (`TooManyListeners`); a target
//! group forwards for one load balancer only (`TargetGroupAssociationLimit`); CreateTargetGroup
//! is idempotent for identical settings (port, VPC, health check port: the existing group comes
//! back with its tags unchanged) and answers `DuplicateTargetGroupName` otherwise; at most 50
//! tags per resource (`TooManyTags`); a group a listener forwards to cannot be deleted
//! (`ResourceInUse`); a deleted resource has no tags (DescribeTags answers its NotFound code); a
//! target of a group no listener uses is `unused` (`Target.NotInUse`). The same rules are one
//! contract, [`crate::nlb::contract`], run on this fake and on the real adapter against moto.
//! It counts calls like the real adapter, and a test can run a closure right before the next
//! CreateListener or CreateTargetGroup, to play another host winning a race. [`FakeImds`] and [`FakeTags`] stand in for instance metadata and EC2.
//!
//! Hand-written rather than generated mocks: the point is AWS's *rules*, which no mocking crate
//! knows, and they must hold across many calls and two agents sharing one NLB.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use crate::ec2::{Ec2Error, InstanceTags};
use crate::metadata::{InstanceMetadata, MetadataError};
use crate::nlb::{
    CallCounter, ExactGroupSpec, GroupCreate, Listener, ListenerClaim, LoadBalancer, NlbError,
    Target, TargetGroupInfo, TargetGroupSpec, TargetState, MAX_LISTENERS_PER_NLB, TRAFFIC_PORT,
};

/// ELBv2's tag limit per resource.
const MAX_TAGS: usize = 50;

/// A listener held by the fake.
#[derive(Debug, Clone)]
pub(crate) struct FakeListener {
    /// Load balancer ARN.
    pub lb: String,
    /// Port.
    pub port: u16,
    /// Target group it forwards to.
    pub tg: String,
    /// Tags.
    pub tags: BTreeMap<String, String>,
    /// `tcp.idle_timeout.seconds` (AWS's default 350 until set).
    pub idle_timeout: u32,
}

/// A target group held by the fake.
#[derive(Debug, Clone)]
pub(crate) struct FakeGroup {
    /// Name.
    pub name: String,
    /// Default target port.
    pub port: u16,
    /// VPC.
    pub vpc_id: String,
    /// Health check port (`traffic-port` or a number).
    pub health_check_port: String,
    /// Tags.
    pub tags: BTreeMap<String, String>,
    /// Registered targets `(instance id, port)`.
    pub targets: Vec<(String, u16)>,
}

/// Everything the fake NLB(s) hold; tests read and change it directly.
#[derive(Debug, Default)]
pub(crate) struct NlbState {
    /// Load balancer ARN → enabled AZ names.
    pub load_balancers: BTreeMap<String, Vec<String>>,
    /// Listener ARN → listener.
    pub listeners: BTreeMap<String, FakeListener>,
    /// Target group ARN → group.
    pub groups: BTreeMap<String, FakeGroup>,
    next_id: u64,
}

impl NlbState {
    fn next(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// Adds a load balancer enabled in `zones`; its ARN.
    pub(crate) fn add_load_balancer(&mut self, name: &str, zones: &[&str]) -> String {
        let arn = format!(
            "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/net/{name}/{:016x}",
            self.next()
        );
        self.load_balancers
            .insert(arn.clone(), zones.iter().map(|z| z.to_string()).collect());
        arn
    }

    /// Adds a target group directly (as another tool or an older release left it); its ARN.
    pub(crate) fn add_group(
        &mut self,
        name: &str,
        health_check_port: &str,
        tags: &[(&str, &str)],
    ) -> String {
        let arn = format!(
            "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/{name}/{:016x}",
            self.next()
        );
        self.groups.insert(
            arn.clone(),
            FakeGroup {
                name: name.to_string(),
                port: 9094,
                vpc_id: "vpc-1".to_string(),
                health_check_port: health_check_port.to_string(),
                tags: tags
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                targets: Vec::new(),
            },
        );
        arn
    }

    /// Adds a listener directly; its ARN. No rule is checked: tests set up any state.
    pub(crate) fn add_listener(
        &mut self,
        lb: &str,
        port: u16,
        tg: &str,
        tags: &[(&str, &str)],
    ) -> String {
        let arn = format!(
            "{}/{:016x}",
            lb.replace(":loadbalancer/", ":listener/"),
            self.next()
        );
        self.listeners.insert(
            arn.clone(),
            FakeListener {
                lb: lb.to_string(),
                port,
                tg: tg.to_string(),
                tags: tags
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                idle_timeout: crate::idle::AWS_DEFAULT_SECONDS,
            },
        );
        arn
    }

    /// The ARN of the group named `name`.
    pub(crate) fn group_arn(&self, name: &str) -> Option<String> {
        self.groups
            .iter()
            .find(|(_, g)| g.name == name)
            .map(|(arn, _)| arn.clone())
    }

    /// The port of the listener forwarding to the group named `name` on `lb`.
    pub(crate) fn port_of(&self, lb: &str, name: &str) -> Option<u16> {
        let tg = self.group_arn(name)?;
        self.listeners
            .values()
            .find(|l| l.lb == lb && l.tg == tg)
            .map(|l| l.port)
    }

    /// The listener on `port` of `lb`, if any: its ARN.
    pub(crate) fn listener_on(&self, lb: &str, port: u16) -> Option<String> {
        self.listeners
            .iter()
            .find(|(_, l)| l.lb == lb && l.port == port)
            .map(|(arn, _)| arn.clone())
    }

    /// Load balancers a group forwards for.
    fn lbs_of(&self, tg: &str) -> Vec<String> {
        let mut lbs: Vec<String> = self
            .listeners
            .values()
            .filter(|l| l.tg == tg)
            .map(|l| l.lb.clone())
            .collect();
        lbs.dedup();
        lbs
    }

    /// CreateTargetGroup of an [`ExactGroupSpec`] by AWS's rules: a new group; the existing one,
    /// tags unchanged, when its settings are identical; `NameTaken` otherwise.
    pub(crate) fn create_exact(&mut self, spec: &ExactGroupSpec) -> GroupCreate {
        let health_check_port = spec.health_check_port.to_string();
        if let Some(arn) = self.group_arn(&spec.name) {
            let g = &self.groups[&arn];
            let identical = g.port == spec.port
                && g.vpc_id == spec.vpc_id
                && g.health_check_port == health_check_port;
            return if identical {
                GroupCreate::Created(arn)
            } else {
                GroupCreate::NameTaken
            };
        }
        let arn = format!(
            "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/{}/{:016x}",
            spec.name,
            self.next()
        );
        self.groups.insert(
            arn.clone(),
            FakeGroup {
                name: spec.name.clone(),
                port: spec.port,
                vpc_id: spec.vpc_id.clone(),
                health_check_port,
                tags: spec.tags.iter().cloned().collect(),
                targets: Vec::new(),
            },
        );
        GroupCreate::Created(arn)
    }

    /// The tags of a group or listener, to change as another host would.
    pub(crate) fn tags_of(&mut self, arn: &str) -> Option<&mut BTreeMap<String, String>> {
        if let Some(l) = self.listeners.get_mut(arn) {
            return Some(&mut l.tags);
        }
        self.groups.get_mut(arn).map(|g| &mut g.tags)
    }
}

type Hook = Box<dyn FnOnce(&mut NlbState) + Send>;

/// An in-process NLB with AWS's rules (see the module doc). Clones share state.
#[derive(Clone, Default)]
pub(crate) struct FakeNlb {
    /// The state, shared by every clone (two agents on one NLB share one `FakeNlb`).
    pub state: Arc<Mutex<NlbState>>,
    /// Calls made through this handle, by operation.
    pub calls: CallCounter,
    before_create_listener: Arc<Mutex<Vec<Hook>>>,
    before_create_group: Arc<Mutex<Vec<Hook>>>,
    /// Errors the next calls of an operation answer (by operation name), oldest first.
    failures: Arc<Mutex<Vec<(&'static str, String)>>>,
}

impl std::fmt::Debug for FakeNlb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeNlb")
            .field("state", &self.state)
            .finish()
    }
}

/// ELBv2's error code for a resource that does not exist, by the kind its ARN names.
fn not_found(arn: &str) -> &'static str {
    if arn.contains(":targetgroup/") {
        "TargetGroupNotFound"
    } else {
        "ListenerNotFound"
    }
}

fn error(operation: &'static str, resource: &str, code: &str, message: &str) -> NlbError {
    NlbError {
        operation,
        resource: resource.to_string(),
        code: code.to_string(),
        message: message.to_string(),
    }
}

impl FakeNlb {
    /// Another handle on the same NLB state with its own call counter (another host).
    pub(crate) fn another_host(&self) -> FakeNlb {
        FakeNlb {
            state: Arc::clone(&self.state),
            calls: CallCounter::default(),
            before_create_listener: Arc::clone(&self.before_create_listener),
            before_create_group: Arc::clone(&self.before_create_group),
            failures: Arc::clone(&self.failures),
        }
    }

    /// The next call of `operation` (any handle) fails with the ELBv2 error `code`, as when the
    /// resource went away between two calls or the account's API budget ran out.
    pub(crate) fn fail_next(&self, operation: &'static str, code: &str) {
        self.failures
            .lock()
            .unwrap()
            .push((operation, code.to_string()));
    }

    /// The error queued for this call of `operation` by [`FakeNlb::fail_next`], if any.
    fn injected(&self, operation: &'static str, resource: &str) -> Result<(), NlbError> {
        let mut failures = self.failures.lock().unwrap();
        match failures.iter().position(|(op, _)| *op == operation) {
            Some(i) => {
                let (_, code) = failures.remove(i);
                Err(error(operation, resource, &code, "injected by the test"))
            }
            None => Ok(()),
        }
    }

    /// Runs `f` on the state right before the next CreateTargetGroup of any handle is evaluated.
    pub(crate) fn before_next_create_target_group(
        &self,
        f: impl FnOnce(&mut NlbState) + Send + 'static,
    ) {
        self.before_create_group.lock().unwrap().push(Box::new(f));
    }

    /// Runs `f` on the state right before the next CreateListener of any handle is evaluated.
    pub(crate) fn before_next_create_listener(
        &self,
        f: impl FnOnce(&mut NlbState) + Send + 'static,
    ) {
        self.before_create_listener
            .lock()
            .unwrap()
            .push(Box::new(f));
    }

    /// Locks the state after running, and dropping, the hooks queued in `hooks`.
    fn state_after(&self, hooks: &Mutex<Vec<Hook>>) -> std::sync::MutexGuard<'_, NlbState> {
        let hooks: Vec<Hook> = std::mem::take(&mut *hooks.lock().unwrap());
        let mut s = self.state.lock().unwrap();
        for hook in hooks {
            hook(&mut s);
        }
        s
    }

    /// Locks the state.
    pub(crate) fn with<R>(&self, f: impl FnOnce(&mut NlbState) -> R) -> R {
        f(&mut self.state.lock().unwrap())
    }
}

impl LoadBalancer for FakeNlb {
    async fn listeners(&self, lb_arn: &str) -> Result<Vec<Listener>, NlbError> {
        self.calls.record("DescribeListeners");
        let s = self.state.lock().unwrap();
        if !s.load_balancers.contains_key(lb_arn) {
            return Err(error(
                "DescribeListeners",
                lb_arn,
                "LoadBalancerNotFound",
                "no such load balancer",
            ));
        }
        let mut out: Vec<Listener> = s
            .listeners
            .iter()
            .filter(|(_, l)| l.lb == lb_arn)
            .map(|(arn, l)| Listener {
                arn: arn.clone(),
                port: l.port,
                target_group_arn: Some(l.tg.clone()),
            })
            .collect();
        out.sort_by_key(|l| l.port);
        Ok(out)
    }

    async fn targets(&self, tg_arn: &str) -> Result<Vec<Target>, NlbError> {
        self.calls.record("DescribeTargetHealth");
        let s = self.state.lock().unwrap();
        let g = s.groups.get(tg_arn).ok_or_else(|| {
            error(
                "DescribeTargetHealth",
                tg_arn,
                "TargetGroupNotFound",
                "no such group",
            )
        })?;
        // TargetHealth API reference: a target of a group no listener uses is `unused`
        // (`Target.NotInUse`); the fake's other targets are healthy at once.
        let in_use = s.listeners.values().any(|l| l.tg == tg_arn);
        let (health, reason) = match in_use {
            true => ("healthy", None),
            false => ("unused", Some("Target.NotInUse".to_string())),
        };
        Ok(g.targets
            .iter()
            .map(|(id, port)| Target {
                id: id.clone(),
                port: *port,
                state: TargetState::Registered,
                health: health.to_string(),
                reason: reason.clone(),
            })
            .collect())
    }

    async fn ensure_target_group(&self, spec: &TargetGroupSpec) -> Result<String, NlbError> {
        self.calls.record("CreateTargetGroup");
        let mut s = self.state.lock().unwrap();
        if spec.tags.len() > MAX_TAGS {
            return Err(error(
                "CreateTargetGroup",
                &spec.name,
                "TooManyTags",
                "more than 50 tags",
            ));
        }
        if let Some(arn) = s.group_arn(&spec.name) {
            let g = &s.groups[&arn];
            let identical = g.port == spec.port
                && g.vpc_id == spec.vpc_id
                && g.health_check_port == TRAFFIC_PORT;
            if identical && s.lbs_of(&arn).is_empty() {
                // AWS: same name and settings returns the existing group.
                return Ok(arn);
            }
            // The adapter's path for DuplicateTargetGroupName, and for the idempotent path when
            // the group already forwards for a load balancer: ours only if tagged so and free.
            if let Some((k, v)) = spec.tags.iter().find(|(k, v)| g.tags.get(k) != Some(v)) {
                return Err(error(
                    "CreateTargetGroup",
                    &arn,
                    "DuplicateTargetGroupName",
                    &format!(
                        "a target group named {} exists without tag {k}={v}; refusing to adopt it",
                        spec.name
                    ),
                ));
            }
            if s.lbs_of(&arn)
                .iter()
                .any(|lb| *lb != spec.load_balancer_arn)
            {
                return Err(error(
                    "CreateTargetGroup",
                    &arn,
                    "TargetGroupAssociationLimit",
                    "forwards for another load balancer",
                ));
            }
            return Ok(arn);
        }
        let arn = format!(
            "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/{}/{:016x}",
            spec.name,
            s.next()
        );
        s.groups.insert(
            arn.clone(),
            FakeGroup {
                name: spec.name.clone(),
                port: spec.port,
                vpc_id: spec.vpc_id.clone(),
                health_check_port: TRAFFIC_PORT.to_string(),
                tags: spec.tags.iter().cloned().collect(),
                targets: Vec::new(),
            },
        );
        Ok(arn)
    }

    async fn create_exact_target_group(
        &self,
        spec: &ExactGroupSpec,
    ) -> Result<GroupCreate, NlbError> {
        self.calls.record("CreateTargetGroup");
        let mut s = self.state_after(&self.before_create_group);
        Ok(s.create_exact(spec))
    }

    async fn create_listener(
        &self,
        lb_arn: &str,
        port: u16,
        tg_arn: &str,
        tags: &[(String, String)],
    ) -> Result<ListenerClaim, NlbError> {
        self.calls.record("CreateListener");
        let mut s = self.state_after(&self.before_create_listener);
        let resource = format!("{lb_arn} port {port}");
        if !s.load_balancers.contains_key(lb_arn) {
            return Err(error(
                "CreateListener",
                &resource,
                "LoadBalancerNotFound",
                "no such load balancer",
            ));
        }
        if let Some(arn) = s.listener_on(lb_arn, port) {
            return Ok(if s.listeners[&arn].tg == tg_arn {
                ListenerClaim::Claimed(arn)
            } else {
                ListenerClaim::PortTaken
            });
        }
        if s.listeners.values().filter(|l| l.lb == lb_arn).count() >= MAX_LISTENERS_PER_NLB {
            return Ok(ListenerClaim::QuotaReached);
        }
        if !s.groups.contains_key(tg_arn) {
            return Err(error(
                "CreateListener",
                &resource,
                "TargetGroupNotFound",
                "no such group",
            ));
        }
        if s.lbs_of(tg_arn).iter().any(|lb| lb != lb_arn) {
            return Err(error(
                "CreateListener",
                &resource,
                "TargetGroupAssociationLimit",
                "forwards for another load balancer",
            ));
        }
        if tags.len() > MAX_TAGS {
            return Err(error(
                "CreateListener",
                &resource,
                "TooManyTags",
                "more than 50 tags",
            ));
        }
        let arn = format!(
            "{}/{:016x}",
            lb_arn.replace(":loadbalancer/", ":listener/"),
            s.next()
        );
        s.listeners.insert(
            arn.clone(),
            FakeListener {
                lb: lb_arn.to_string(),
                port,
                tg: tg_arn.to_string(),
                tags: tags.iter().cloned().collect(),
                idle_timeout: crate::idle::AWS_DEFAULT_SECONDS,
            },
        );
        Ok(ListenerClaim::Claimed(arn))
    }

    async fn register(&self, tg_arn: &str, targets: &[(String, u16)]) -> Result<(), NlbError> {
        self.calls.record("RegisterTargets");
        let mut s = self.state.lock().unwrap();
        let g = s.groups.get_mut(tg_arn).ok_or_else(|| {
            error(
                "RegisterTargets",
                tg_arn,
                "TargetGroupNotFound",
                "no such group",
            )
        })?;
        for t in targets {
            if !g.targets.contains(t) {
                g.targets.push(t.clone());
            }
        }
        Ok(())
    }

    async fn deregister(&self, tg_arn: &str, targets: &[(String, u16)]) -> Result<(), NlbError> {
        self.calls.record("DeregisterTargets");
        let mut s = self.state.lock().unwrap();
        if let Some(g) = s.groups.get_mut(tg_arn) {
            g.targets.retain(|t| !targets.contains(t));
        }
        Ok(())
    }

    async fn tags(&self, arn: &str) -> Result<Option<BTreeMap<String, String>>, NlbError> {
        self.calls.record("DescribeTags");
        Ok(self.state.lock().unwrap().tags_of(arn).map(|t| t.clone()))
    }

    async fn add_tags(&self, arn: &str, tags: &[(String, String)]) -> Result<(), NlbError> {
        self.calls.record("AddTags");
        self.injected("AddTags", arn)?;
        let mut s = self.state.lock().unwrap();
        let current = s
            .tags_of(arn)
            .ok_or_else(|| error("AddTags", arn, not_found(arn), "no such resource"))?;
        let mut next = current.clone();
        next.extend(tags.iter().cloned());
        if next.len() > MAX_TAGS {
            return Err(error("AddTags", arn, "TooManyTags", "more than 50 tags"));
        }
        *current = next;
        Ok(())
    }

    async fn remove_tags(&self, arn: &str, keys: &[String]) -> Result<(), NlbError> {
        self.calls.record("RemoveTags");
        let mut s = self.state.lock().unwrap();
        let current = s
            .tags_of(arn)
            .ok_or_else(|| error("RemoveTags", arn, not_found(arn), "no such resource"))?;
        current.retain(|k, _| !keys.contains(k));
        Ok(())
    }

    async fn find_target_group(&self, name: &str) -> Result<Option<String>, NlbError> {
        self.calls.record("DescribeTargetGroups");
        Ok(self.state.lock().unwrap().group_arn(name))
    }

    async fn delete_listener(&self, arn: &str) -> Result<(), NlbError> {
        self.calls.record("DeleteListener");
        self.state.lock().unwrap().listeners.remove(arn);
        Ok(())
    }

    async fn delete_target_group(&self, arn: &str) -> Result<(), NlbError> {
        self.calls.record("DeleteTargetGroup");
        let mut s = self.state.lock().unwrap();
        if s.listeners.values().any(|l| l.tg == arn) {
            return Err(error(
                "DeleteTargetGroup",
                arn,
                "ResourceInUse",
                "a listener forwards to it",
            ));
        }
        s.groups.remove(arn);
        Ok(())
    }

    async fn availability_zones(
        &self,
        lb_arns: &[String],
    ) -> Result<BTreeMap<String, Vec<String>>, NlbError> {
        self.calls.record("DescribeLoadBalancers");
        let s = self.state.lock().unwrap();
        lb_arns
            .iter()
            .map(|arn| {
                let zones = s.load_balancers.get(arn).cloned().ok_or_else(|| {
                    error(
                        "DescribeLoadBalancers",
                        arn,
                        "LoadBalancerNotFound",
                        "no such load balancer",
                    )
                })?;
                Ok((arn.clone(), zones))
            })
            .collect()
    }

    async fn target_group_info(&self, arns: &[String]) -> Result<Vec<TargetGroupInfo>, NlbError> {
        self.calls.record("DescribeTargetGroups");
        let s = self.state.lock().unwrap();
        Ok(arns
            .iter()
            .filter_map(|arn| {
                let g = s.groups.get(arn)?;
                Some(TargetGroupInfo {
                    arn: arn.clone(),
                    load_balancer_arns: s.lbs_of(arn),
                    health_check_port: g.health_check_port.clone(),
                })
            })
            .collect())
    }

    async fn listener_idle_timeout(&self, arn: &str) -> Result<Option<u32>, NlbError> {
        self.calls.record("DescribeListenerAttributes");
        match self.state.lock().unwrap().listeners.get(arn) {
            Some(l) => Ok(Some(l.idle_timeout)),
            None => Err(error(
                "DescribeListenerAttributes",
                arn,
                "ListenerNotFound",
                "One or more listeners not found",
            )),
        }
    }

    async fn set_listener_idle_timeout(&self, arn: &str, seconds: u32) -> Result<(), NlbError> {
        self.calls.record("ModifyListenerAttributes");
        // AWS's range (ListenerAttribute API reference), as the launcher enforces it.
        if !(crate::idle::MIN_SECONDS..=crate::idle::MAX_SECONDS).contains(&seconds) {
            return Err(error(
                "ModifyListenerAttributes",
                arn,
                "ValidationError",
                "tcp.idle_timeout.seconds must be between 60 and 6000",
            ));
        }
        match self.state.lock().unwrap().listeners.get_mut(arn) {
            Some(l) => {
                l.idle_timeout = seconds;
                Ok(())
            }
            None => Err(error(
                "ModifyListenerAttributes",
                arn,
                "ListenerNotFound",
                "One or more listeners not found",
            )),
        }
    }

    async fn health_check_traffic_port(&self, arn: &str) -> Result<(), NlbError> {
        self.calls.record("ModifyTargetGroup");
        if let Some(g) = self.state.lock().unwrap().groups.get_mut(arn) {
            g.health_check_port = TRAFFIC_PORT.to_string();
        }
        Ok(())
    }
}

/// Instance metadata from a table of paths (`instance-id`, `placement/…`, `tags/instance/…`).
#[derive(Debug, Clone, Default)]
pub(crate) struct FakeImds {
    /// Path → value; a missing path answers 404.
    pub values: Arc<Mutex<BTreeMap<String, String>>>,
}

impl FakeImds {
    /// A host in `az` (`us-east-1a`) / `az_id` with `broker_id` in the `kafka:broker-id` tag.
    pub(crate) fn host(
        instance_id: &str,
        az: &str,
        az_id: &str,
        broker_id: Option<i32>,
    ) -> FakeImds {
        let mut v: BTreeMap<String, String> = [
            ("instance-id", instance_id),
            ("placement/region", "us-east-1"),
            ("placement/availability-zone", az),
            ("placement/availability-zone-id", az_id),
            ("local-ipv4", "10.0.1.10"),
            ("mac", "0e:00:00:00:00:01"),
            ("network/interfaces/macs/0e:00:00:00:00:01/vpc-id", "vpc-1"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        v.insert("tags/instance".into(), "Name".into());
        if let Some(id) = broker_id {
            v.insert("tags/instance/kafka:broker-id".into(), id.to_string());
        }
        FakeImds {
            values: Arc::new(Mutex::new(v)),
        }
    }
}

impl FakeImds {
    /// Sets `path` to `value`, or makes it answer 404 (`None`).
    pub(crate) fn set(&self, path: &str, value: Option<&str>) {
        let mut values = self.values.lock().unwrap();
        match value {
            Some(v) => values.insert(path.to_string(), v.to_string()),
            None => values.remove(path),
        };
    }
}

impl InstanceMetadata for FakeImds {
    async fn get(&self, path: &str) -> Result<Option<String>, MetadataError> {
        Ok(self.values.lock().unwrap().get(path).cloned())
    }
    fn endpoint(&self) -> String {
        "fake-imds".to_string()
    }
}

/// EC2 tags from a table: `(instance id, key)` → value.
#[derive(Debug, Clone, Default)]
pub(crate) struct FakeTags(pub BTreeMap<(String, String), String>);

impl InstanceTags for FakeTags {
    async fn tag(&self, instance_id: &str, key: &str) -> Result<Option<String>, Ec2Error> {
        Ok(self
            .0
            .get(&(instance_id.to_string(), key.to_string()))
            .cloned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nlb::contract;

    #[tokio::test]
    async fn the_fake_keeps_the_elbv2_rules_contract() {
        let nlb = FakeNlb::default();
        let (lb_a, lb_b) = nlb.with(|s| {
            (
                s.add_load_balancer("a", &["us-east-1a"]),
                s.add_load_balancer("b", &["us-east-1a"]),
            )
        });
        let world = contract::World {
            lb_a,
            lb_b,
            vpc_id: "vpc-0fake".into(),
            prefix: "kp-contract".into(),
            base_port: 20000,
            instance_id: "i-0fake".into(),
        };
        let broken = contract::broken(&nlb, &world).await;
        assert!(
            broken.is_empty(),
            "the fake breaks AWS's rules:\n{}",
            broken.join("\n")
        );
        // Every rule ran: the contract created and cleaned up its listeners and groups.
        assert!(
            nlb.calls
                .snapshot()
                .get("CreateListener")
                .copied()
                .unwrap_or(0)
                >= 52
        );
        nlb.with(|s| assert!(s.listeners.is_empty() && s.groups.is_empty(), "{s:?}"));
    }
}
