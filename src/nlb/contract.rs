//! ELBv2's rules the agent relies on, written once as a contract over the [`LoadBalancer`] seam.
//!
//! The same checks run on the in-process fake ([`crate::fakes::FakeNlb`], unit tests) and on the
//! real adapter ([`super::Elbv2`]) against the moto launcher (`tests/suite.rs`, `nlb_contract`),
//! so the fake and the launcher are held to one statement of AWS's rules instead of two that
//! could drift apart. Each rule cites where AWS documents it. Compiled for tests only (unit tests
//! and the `test-support` feature the integration suite turns on).
//!
//! Not here: DeleteTargetGroup's `ResourceInUse` for a group a listener forwards to. The adapter
//! rides it out for a while (ELBv2 answers it for a moment after the listener's deletion too:
//! eventual consistency), so through the seam it is a slow failure; the fake's unit tests and
//! the launcher's own rule checks (`tests/support/test_moto_rules.py`) hold it.

use super::{
    ExactGroupSpec, GroupCreate, ListenerClaim, LoadBalancer, NlbError, TargetGroupSpec,
    MAX_LISTENERS_PER_NLB,
};

/// Where the contract runs: two empty NLBs in one VPC, and a prefix for the names it creates.
#[derive(Debug, Clone)]
pub struct World {
    /// An NLB without listeners.
    pub lb_a: String,
    /// Another NLB without listeners, in the same VPC.
    pub lb_b: String,
    /// The VPC of both.
    pub vpc_id: String,
    /// Prefix of the target group names it creates (≤ 20 characters).
    pub prefix: String,
    /// A port range start with [`MAX_LISTENERS_PER_NLB`] + 1 free ports above it.
    pub base_port: u16,
    /// An instance in the VPC (registered into a group no listener uses).
    pub instance_id: String,
}

/// The rules checked, in order: the contract's size, so a run that checked nothing fails.
pub const RULES: &[&str] = &[
    "CreateTargetGroup is idempotent for identical settings",
    "CreateTargetGroup with other settings under a taken name is DuplicateTargetGroupName",
    "CreateListener on a taken port fails unless identical",
    "a target group forwards for one load balancer only",
    "the listener idle timeout is 60-6000 s and reads back",
    "a target in a group no listener uses is unused (Target.NotInUse)",
    "at most 50 tags per resource",
    "at most 50 listeners per NLB, and an identical repeat at the quota still succeeds",
    "a deleted resource has no tags",
    "the seam adopts a taken name only when tagged as ours and forwarding for no other NLB",
];

fn code(r: &Result<impl std::fmt::Debug, NlbError>) -> String {
    match r {
        Ok(v) => format!("success {v:?}"),
        Err(e) => e.code.clone(),
    }
}

/// One run of the contract: the seam, the world, and the broken rules so far.
struct Run<'a, L> {
    lb: &'a L,
    w: &'a World,
    out: Vec<String>,
}

impl<L: LoadBalancer> Run<'_, L> {
    fn fail(&mut self, rule: usize, want: &str, got: String) {
        self.out
            .push(format!("{}: AWS answers {want}, got {got}", RULES[rule]));
    }

    fn spec(&self, name: &str, lb_arn: &str) -> TargetGroupSpec {
        TargetGroupSpec {
            name: format!("{}-{name}", self.w.prefix),
            vpc_id: self.w.vpc_id.clone(),
            port: 9094,
            tags: vec![("kplink:contract".into(), self.w.prefix.clone())],
            load_balancer_arn: lb_arn.to_string(),
        }
    }

    /// Two groups for NLB A (`g1` created twice); `None` when groups cannot be created at all.
    async fn groups(&mut self) -> Option<(String, String)> {
        // ELBv2 API reference, CreateTargetGroup: "This operation is idempotent, which means that
        // it completes at most one time. If you attempt to create multiple target groups with the
        // same settings, each call succeeds."
        let lb_a = self.w.lb_a.clone();
        let g1 = self.lb.ensure_target_group(&self.spec("g1", &lb_a)).await;
        let again = self.lb.ensure_target_group(&self.spec("g1", &lb_a)).await;
        let g2 = self.lb.ensure_target_group(&self.spec("g2", &lb_a)).await;
        let (Ok(g1), Ok(g2)) = (g1, g2) else {
            self.fail(0, "two new groups", "an error".into());
            return None;
        };
        if again.as_deref().ok() != Some(g1.as_str()) {
            self.fail(0, &format!("the same ARN {g1}"), code(&again));
        }
        Some((g1, g2))
    }

    /// The restart lock's exact group; its ARN when the rule holds.
    async fn exact_group(&mut self) -> Option<String> {
        // Same page: "DuplicateTargetGroupName: A target group with the specified name already
        // exists" when the settings differ (here the health check port).
        let exact = |hc: u16| ExactGroupSpec {
            name: format!("{}-exact", self.w.prefix),
            vpc_id: self.w.vpc_id.clone(),
            port: 1,
            health_check_port: hc,
            tags: vec![],
        };
        let first = self.lb.create_exact_target_group(&exact(1001)).await;
        let repeat = self.lb.create_exact_target_group(&exact(1001)).await;
        let other = self.lb.create_exact_target_group(&exact(1002)).await;
        match (&first, &repeat, &other) {
            (
                Ok(GroupCreate::Created(a)),
                Ok(GroupCreate::Created(b)),
                Ok(GroupCreate::NameTaken),
            ) if a == b => Some(a.clone()),
            _ => {
                let got = format!("{first:?}, {repeat:?}, {other:?}");
                self.fail(1, "Created(arn), Created(same arn), NameTaken", got);
                None
            }
        }
    }

    /// A listener on NLB A forwarding to `g1`; its ARN when the rules hold.
    async fn listener(&mut self, g1: &str, g2: &str) -> Option<String> {
        // CreateListener: "DuplicateListener: A listener with the specified port already
        // exists"; identical settings are idempotent like CreateTargetGroup.
        let (lb, w, p) = (self.lb, self.w, self.w.base_port);
        let l1 = lb.create_listener(&w.lb_a, p, g1, &[]).await;
        let l1_again = lb.create_listener(&w.lb_a, p, g1, &[]).await;
        let taken = lb.create_listener(&w.lb_a, p, g2, &[]).await;
        let listener = match (&l1, &l1_again, &taken) {
            (
                Ok(ListenerClaim::Claimed(a)),
                Ok(ListenerClaim::Claimed(b)),
                Ok(ListenerClaim::PortTaken),
            ) if a == b => Some(a.clone()),
            _ => {
                let got = format!("{l1:?}, {l1_again:?}, {taken:?}");
                self.fail(2, "Claimed(arn), Claimed(same arn), PortTaken", got);
                None
            }
        };
        // "TargetGroupAssociationLimit: You've reached the limit on the number of load balancers
        // per target group" (a target group of an NLB forwards for one load balancer).
        let shared = lb.create_listener(&w.lb_b, p, g1, &[]).await;
        if code(&shared) != "TargetGroupAssociationLimit" {
            self.fail(3, "TargetGroupAssociationLimit", code(&shared));
        }
        listener
    }

    /// The seam's own rule on top of AWS's (the adapter's `ensure_target_group`, which the fake
    /// must mirror): a group under the name asked for but with other settings (a killed pass of
    /// an older release, say) is adopted only when it carries the spec's tags and forwards for
    /// no other load balancer. `g1` forwards for NLB A (see [`Run::listener`]), `g2` for none.
    async fn adoption(&mut self, g2: &str) {
        let other_port = |mut spec: TargetGroupSpec| {
            spec.port = 9095;
            spec
        };
        let lb_a = self.w.lb_a.clone();
        let lb_b = self.w.lb_b.clone();
        let ours = self
            .lb
            .ensure_target_group(&other_port(self.spec("g2", &lb_a)))
            .await;
        if ours.as_deref().ok() != Some(g2) {
            self.fail(9, &format!("the same ARN {g2} (adopted)"), code(&ours));
        }
        let mut foreign = other_port(self.spec("g2", &lb_a));
        foreign.tags = vec![("kplink:contract".into(), "someone-else".into())];
        let foreign = self.lb.ensure_target_group(&foreign).await;
        if code(&foreign) != "DuplicateTargetGroupName" {
            self.fail(9, "DuplicateTargetGroupName (not ours)", code(&foreign));
        }
        let elsewhere = self
            .lb
            .ensure_target_group(&other_port(self.spec("g1", &lb_b)))
            .await;
        if code(&elsewhere) != "TargetGroupAssociationLimit" {
            self.fail(
                9,
                "TargetGroupAssociationLimit (forwards for NLB A)",
                code(&elsewhere),
            );
        }
    }

    /// The listener's idle timeout, a target of an unused group, and the tag limit.
    async fn attributes(&mut self, listener: Option<&str>, g2: &str) {
        let lb = self.lb;
        // ListenerAttribute: tcp.idle_timeout.seconds, "The valid range is 60-6000 seconds".
        if let Some(l) = listener {
            let set = lb.set_listener_idle_timeout(l, 661).await;
            let read = lb.listener_idle_timeout(l).await;
            let low = lb.set_listener_idle_timeout(l, 59).await;
            if set.is_err() || read.as_ref().ok() != Some(&Some(661)) || low.is_ok() {
                let got = format!("{}, {read:?}, {}", code(&set), code(&low));
                self.fail(4, "success, Some(661), ValidationError", got);
            }
        }
        // TargetHealth: "unused: The target is not registered to a target group, the target
        // group is not used in a listener rule, ..." with reason Target.NotInUse.
        let reg = lb.register(g2, &[(self.w.instance_id.clone(), 9094)]).await;
        let health = lb.targets(g2).await;
        let unused = health.as_ref().is_ok_and(|t| {
            t.len() == 1
                && t[0].health == "unused"
                && t[0].reason.as_deref() == Some("Target.NotInUse")
        });
        if reg.is_err() || !unused {
            let got = format!("{}, {health:?}", code(&reg));
            self.fail(5, "unused / Target.NotInUse", got);
        }
        // Tagging: "Maximum number of tags per resource: 50".
        let tags: Vec<(String, String)> = (0..51).map(|i| (format!("k{i}"), "v".into())).collect();
        let many = TargetGroupSpec {
            tags,
            ..self.spec("tags", &self.w.lb_a)
        };
        let many = lb.ensure_target_group(&many).await;
        if code(&many) != "TooManyTags" {
            self.fail(6, "TooManyTags", code(&many));
        }
    }

    /// Fills NLB A to the listener quota; the listeners it created.
    async fn quota(&mut self, g1: &str) -> Vec<String> {
        // Quotas for your Network Load Balancers: "Listeners per Network Load Balancer: 50"
        // (TooManyListeners), not adjustable. Listeners of one NLB may share a group.
        let (lb, w, p) = (self.lb, self.w, self.w.base_port);
        let mut filled = Vec::new();
        let mut at_quota = None;
        for i in 1..=MAX_LISTENERS_PER_NLB as u16 {
            match lb.create_listener(&w.lb_a, p + i, g1, &[]).await {
                Ok(ListenerClaim::Claimed(a)) => filled.push(a),
                other => {
                    at_quota = Some((i, code(&other)));
                    break;
                }
            }
        }
        let repeat = lb.create_listener(&w.lb_a, p, g1, &[]).await;
        let ok = filled.len() == MAX_LISTENERS_PER_NLB - 1
            && at_quota.as_ref().is_some_and(|(i, c)| {
                *i == MAX_LISTENERS_PER_NLB as u16 && c.contains("QuotaReached")
            })
            && matches!(repeat, Ok(ListenerClaim::Claimed(_)));
        if !ok {
            let got = format!(
                "{} more, then {at_quota:?}, repeat {}",
                filled.len(),
                code(&repeat)
            );
            let want =
                "49 more listeners, QuotaReached for the 51st, Claimed for an identical repeat";
            self.fail(7, want, got);
        }
        filled
    }

    /// Deletes what the run created; then a deleted group has no tags.
    async fn clean_up(&mut self, listeners: &[String], groups: &[String]) {
        for l in listeners {
            if let Err(e) = self.lb.delete_listener(l).await {
                self.out.push(format!("cleanup: {e}"));
            }
        }
        for g in groups {
            if let Err(e) = self.lb.delete_target_group(g).await {
                self.out.push(format!("cleanup: {e}"));
            }
        }
        // DescribeTags of a deleted resource answers its NotFound error (the seam: no tags).
        if let Some(g) = groups.first() {
            let gone = self.lb.tags(g).await;
            if !matches!(gone, Ok(None)) {
                self.fail(8, "TargetGroupNotFound (no tags)", format!("{gone:?}"));
            }
        }
    }
}

/// Runs every rule of [`RULES`] on `lb` in `w`; returns the broken ones, one line each naming
/// the rule, what AWS answers and what `lb` answered (empty: `lb` keeps AWS's rules). It cleans
/// up what it created.
pub async fn broken<L: LoadBalancer>(lb: &L, w: &World) -> Vec<String> {
    let mut run = Run {
        lb,
        w,
        out: Vec::new(),
    };
    let Some((g1, g2)) = run.groups().await else {
        return run.out;
    };
    let exact = run.exact_group().await;
    let listener = run.listener(&g1, &g2).await;
    if listener.is_some() {
        run.adoption(&g2).await;
    }
    run.attributes(listener.as_deref(), &g2).await;
    let mut listeners = run.quota(&g1).await;
    listeners.extend(listener);
    let mut groups = vec![g1, g2];
    groups.extend(exact);
    run.clean_up(&listeners, &groups).await;
    run.out
}
