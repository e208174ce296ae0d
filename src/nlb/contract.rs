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
];

fn code(r: &Result<impl std::fmt::Debug, NlbError>) -> String {
    match r {
        Ok(v) => format!("success {v:?}"),
        Err(e) => e.code.clone(),
    }
}

/// Runs every rule of [`RULES`] on `lb` in `w`; returns the broken ones, one line each naming
/// the rule, what AWS answers and what `lb` answered (empty: `lb` keeps AWS's rules). It cleans
/// up what it created when the rules hold.
pub async fn broken<L: LoadBalancer>(lb: &L, w: &World) -> Vec<String> {
    let mut out = Vec::new();
    let mut fail = |rule: usize, want: &str, got: String| {
        out.push(format!("{}: AWS answers {want}, got {got}", RULES[rule]));
    };
    let spec = |name: &str, lb_arn: &str| TargetGroupSpec {
        name: format!("{}-{name}", w.prefix),
        vpc_id: w.vpc_id.clone(),
        port: 9094,
        tags: vec![("kplink:contract".into(), w.prefix.clone())],
        load_balancer_arn: lb_arn.to_string(),
    };

    // ELBv2 API reference, CreateTargetGroup: "This operation is idempotent, which means that it
    // completes at most one time. If you attempt to create multiple target groups with the same
    // settings, each call succeeds."
    let g1 = match lb.ensure_target_group(&spec("g1", &w.lb_a)).await {
        Ok(arn) => arn,
        Err(e) => return vec![format!("{}: cannot create a group: {e}", RULES[0])],
    };
    let again = lb.ensure_target_group(&spec("g1", &w.lb_a)).await;
    if again.as_deref().ok() != Some(g1.as_str()) {
        fail(0, &format!("the same ARN {g1}"), code(&again));
    }
    let g2 = match lb.ensure_target_group(&spec("g2", &w.lb_a)).await {
        Ok(arn) => arn,
        Err(e) => return vec![format!("{}: cannot create a group: {e}", RULES[0])],
    };

    // Same page: "DuplicateTargetGroupName: A target group with the specified name already
    // exists" when the settings differ (here the health check port).
    let exact = |hc: u16| ExactGroupSpec {
        name: format!("{}-exact", w.prefix),
        vpc_id: w.vpc_id.clone(),
        port: 1,
        health_check_port: hc,
        tags: vec![],
    };
    let first = lb.create_exact_target_group(&exact(1001)).await;
    let repeat = lb.create_exact_target_group(&exact(1001)).await;
    let other = lb.create_exact_target_group(&exact(1002)).await;
    let exact_arn = match (&first, &repeat, &other) {
        (Ok(GroupCreate::Created(a)), Ok(GroupCreate::Created(b)), Ok(GroupCreate::NameTaken))
            if a == b =>
        {
            Some(a.clone())
        }
        _ => {
            fail(
                1,
                "Created(arn), Created(same arn), NameTaken",
                format!("{first:?}, {repeat:?}, {other:?}"),
            );
            None
        }
    };

    // CreateListener: "DuplicateListener: A listener with the specified port already exists";
    // identical settings are idempotent like CreateTargetGroup.
    let p = w.base_port;
    let l1 = lb.create_listener(&w.lb_a, p, &g1, &[]).await;
    let l1_again = lb.create_listener(&w.lb_a, p, &g1, &[]).await;
    let taken = lb.create_listener(&w.lb_a, p, &g2, &[]).await;
    let listener = match (&l1, &l1_again, &taken) {
        (
            Ok(ListenerClaim::Claimed(a)),
            Ok(ListenerClaim::Claimed(b)),
            Ok(ListenerClaim::PortTaken),
        ) if a == b => Some(a.clone()),
        _ => {
            fail(
                2,
                "Claimed(arn), Claimed(same arn), PortTaken",
                format!("{l1:?}, {l1_again:?}, {taken:?}"),
            );
            None
        }
    };

    // "TargetGroupAssociationLimit: You've reached the limit on the number of load balancers per
    // target group" (a target group of an NLB forwards for one load balancer).
    let shared = lb.create_listener(&w.lb_b, p, &g1, &[]).await;
    if code(&shared) != "TargetGroupAssociationLimit" {
        fail(3, "TargetGroupAssociationLimit", code(&shared));
    }

    // ListenerAttribute: tcp.idle_timeout.seconds, "The valid range is 60-6000 seconds".
    if let Some(l) = &listener {
        let set = lb.set_listener_idle_timeout(l, 661).await;
        let read = lb.listener_idle_timeout(l).await;
        let low = lb.set_listener_idle_timeout(l, 59).await;
        if set.is_err() || read.as_ref().ok() != Some(&Some(661)) || low.is_ok() {
            fail(
                4,
                "success, Some(661), ValidationError",
                format!("{}, {read:?}, {}", code(&set), code(&low)),
            );
        }
    }

    // TargetHealth: "unused: The target is not registered to a target group, the target group is
    // not used in a listener rule, ..." with reason Target.NotInUse.
    let reg = lb.register(&g2, &[(w.instance_id.clone(), 9094)]).await;
    let health = lb.targets(&g2).await;
    let unused = health.as_ref().is_ok_and(|t| {
        t.len() == 1 && t[0].health == "unused" && t[0].reason.as_deref() == Some("Target.NotInUse")
    });
    if reg.is_err() || !unused {
        fail(
            5,
            "unused / Target.NotInUse",
            format!("{}, {health:?}", code(&reg)),
        );
    }

    // Quotas for your Network Load Balancers / tagging: "Maximum number of tags per resource: 50".
    let tags: Vec<(String, String)> = (0..51).map(|i| (format!("k{i}"), "v".into())).collect();
    let many = lb
        .ensure_target_group(&TargetGroupSpec {
            tags: tags.clone(),
            ..spec("tags", &w.lb_a)
        })
        .await;
    if code(&many) != "TooManyTags" {
        fail(6, "TooManyTags", code(&many));
    }

    // Quotas for your Network Load Balancers: "Listeners per Network Load Balancer: 50"
    // (TooManyListeners), not adjustable. Listeners of one NLB may share a group.
    let mut filled = Vec::new();
    let mut at_quota = None;
    for i in 1..=MAX_LISTENERS_PER_NLB as u16 {
        match lb.create_listener(&w.lb_a, p + i, &g1, &[]).await {
            Ok(ListenerClaim::Claimed(a)) => filled.push(a),
            other => {
                at_quota = Some((i, code(&other)));
                break;
            }
        }
    }
    let repeat_at_quota = lb.create_listener(&w.lb_a, p, &g1, &[]).await;
    let quota_ok = filled.len() == MAX_LISTENERS_PER_NLB - 1
        && at_quota
            .as_ref()
            .is_some_and(|(i, c)| *i == MAX_LISTENERS_PER_NLB as u16 && c.contains("QuotaReached"))
        && matches!(repeat_at_quota, Ok(ListenerClaim::Claimed(_)));
    if !quota_ok {
        fail(
            7,
            "49 more listeners, QuotaReached for the 51st, Claimed for an identical repeat",
            format!(
                "{} more, then {at_quota:?}, repeat {}",
                filled.len(),
                code(&repeat_at_quota)
            ),
        );
    }

    // Clean up, then: DescribeTags of a deleted resource answers its NotFound error (the seam:
    // no tags).
    for l in filled.iter().chain(listener.iter()) {
        if let Err(e) = lb.delete_listener(l).await {
            out.push(format!("cleanup: {e}"));
        }
    }
    for g in [&g1, &g2].into_iter().chain(exact_arn.iter()) {
        if let Err(e) = lb.delete_target_group(g).await {
            out.push(format!("cleanup: {e}"));
        }
    }
    let gone = lb.tags(&g1).await;
    if !matches!(gone, Ok(None)) {
        out.push(format!(
            "{}: AWS answers TargetGroupNotFound (no tags), got {gone:?}",
            RULES[8]
        ));
    }
    out
}
