//! The steady state within the account's API budget: what a converged daemon remembers of the
//! NLB between passes, and when it looks again.
//!
//! A full observation costs three ELBv2 reads (the listeners, this broker's group, the bootstrap
//! group). Made every minute by every broker, 300 brokers would need 15 reads per second, more
//! than the account's whole `Describe*` refill (10 per second, AWS "Request throttling for the
//! ELB API"), and every other tool in the account would be throttled for good. So once a pass
//! finds the broker converged, the daemon keeps that observation and checks the NLB with **one**
//! read, alternating between this broker's group and the bootstrap group, every
//! `cluster size / aws.steady_reads_per_second` seconds (never more often than
//! `daemon.interval`), with ±50 % jitter so hosts never synchronize. The whole cluster then
//! reads at `aws.steady_reads_per_second` (0.5 per second by default) whatever its size.
//!
//! One DescribeTargetHealth shows every drift that matters: this instance deregistered (it is
//! missing), draining, or its group no longer used by the NLB (its listener was deleted): ELBv2
//! reports the target `unused` with reason `Target.NotInUse` ("Target group is not configured to
//! receive traffic from the load balancer", TargetHealth API reference). Any of these, or a
//! failed read, drops the kept observation: the next pass observes in full and repairs. Local
//! drift (the file) is repaired at once on every pass (the daemon watches the file), and the
//! instance's lifecycle is read from instance metadata every pass; neither costs an AWS call.
//!
//! Stale claims (groups of brokers gone without `decommission`) cost one read per claim to count,
//! so one broker per cluster counts them, the *accountant*: the live instance with the lowest id
//! in the first NLB's bootstrap group, as each broker last saw it. It counts every
//! `max(10 min, cluster size / 0.1)` seconds: at most 0.1 reads per second for the cluster.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::nlb::{Target, TargetState};
use crate::plan::{Assessment, Observed};

/// Reads per second the stale-claims count may use, cluster-wide.
pub(crate) const STALE_COUNT_READS_PER_SECOND: f64 = 0.1;
/// The shortest time between two stale-claims counts.
pub(crate) const STALE_COUNT_MIN_EVERY: Duration = Duration::from_secs(600);

/// Which group a steady check reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Group {
    /// This broker's dedicated group.
    Dedicated,
    /// The bootstrap group of its NLB.
    Bootstrap,
}

/// The observation a converged pass made, kept for the next passes.
#[derive(Debug, Clone)]
pub(crate) struct Kept {
    /// The NLB holding the claim.
    pub shard: usize,
    /// Its listeners as the pass read them.
    pub assessment: Assessment,
    /// The dedicated group's targets.
    pub dedicated_targets: Vec<Target>,
    /// The bootstrap group's targets.
    pub bootstrap_targets: Vec<Target>,
    /// When the next steady check is due.
    pub next_check: Instant,
    /// Steady checks made so far (even: this broker's group next, odd: the bootstrap group).
    pub checks: u64,
}

impl Kept {
    /// What to read at the next check, and the group's ARN.
    pub(crate) fn next_read(&self) -> Option<(Group, String)> {
        let dedicated = self
            .assessment
            .claim
            .as_ref()
            .and_then(|l| l.target_group_arn.clone());
        let bootstrap = self
            .assessment
            .bootstrap
            .as_ref()
            .and_then(|l| l.target_group_arn.clone());
        match (self.checks % 2, dedicated, bootstrap) {
            (1, _, Some(b)) => Some((Group::Bootstrap, b)),
            (_, Some(d), _) => Some((Group::Dedicated, d)),
            (_, None, Some(b)) => Some((Group::Bootstrap, b)),
            (_, None, None) => None,
        }
    }
}

/// Whether a steady read of a group confirms the kept observation (pure): this instance is in
/// it on its port, registered and used by the NLB, and, in its own group, alone.
pub(crate) fn confirms(targets: &[Target], instance_id: &str, port: u16, group: Group) -> bool {
    let is_self = |t: &Target| t.id == instance_id && t.port == port;
    let in_service = |t: &Target| {
        t.state == TargetState::Registered
            && !(t.health == "unused" && t.reason.as_deref() == Some("Target.NotInUse"))
    };
    let me = targets.iter().any(|t| is_self(t) && in_service(t));
    let strangers = group == Group::Dedicated
        && targets
            .iter()
            .any(|t| !is_self(t) && t.state == TargetState::Registered);
    me && !strangers
}

/// The cluster's size as one NLB shows it (pure): the claims in its port range, this broker's
/// included, times the number of NLBs (new claims are spread evenly over them).
pub(crate) fn cluster_size(assessment: &Assessment, shards: usize) -> usize {
    let here = assessment.occupied.len() + usize::from(assessment.claim.is_some());
    here.max(1) * shards.max(1)
}

/// Time to the next steady check (pure): the cluster spends `reads_per_second` in all, one read
/// per check, never more often than `min`; `jitter` is uniform in [0.5, 1.5].
pub(crate) fn check_interval(
    min: Duration,
    cluster: usize,
    reads_per_second: f64,
    jitter: f64,
) -> Duration {
    let budget = Duration::from_secs_f64(cluster as f64 / reads_per_second.max(1e-3));
    budget.max(min).mul_f64(jitter)
}

/// Time between two stale-claims counts by the accountant (pure).
pub(crate) fn stale_count_every(cluster: usize) -> Duration {
    Duration::from_secs_f64(cluster as f64 / STALE_COUNT_READS_PER_SECOND)
        .max(STALE_COUNT_MIN_EVERY)
}

/// Whether `instance_id` is the cluster's accountant (pure): on the first NLB, and the live
/// instance with the lowest id among its bootstrap group's targets (registered, not `unused`:
/// a stopped or terminated instance can stay listed as `unused`, reason `Target.InvalidState`).
pub(crate) fn accountant(shard: usize, instance_id: &str, bootstrap: &[Target]) -> bool {
    shard == 0
        && bootstrap
            .iter()
            .filter(|t| t.state == TargetState::Registered && t.health != "unused")
            .map(|t| t.id.as_str())
            .min()
            == Some(instance_id)
}

/// Whether this broker counts the cluster's stale claims now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StaleTurn {
    /// It is the accountant and a count is due.
    Mine,
    /// Another broker counts, or this one counted recently.
    NotMine,
    /// Not known yet: no converged view of the bootstrap group so far.
    Unknown,
}

#[derive(Debug, Default)]
struct Inner {
    kept: Option<Kept>,
    /// `None` until a bootstrap group was seen.
    accountant: Option<bool>,
    cluster: usize,
    last_count: Option<Instant>,
    last_sweep: Option<Instant>,
}

/// What the daemon keeps of the NLB between passes (see the module documentation).
#[derive(Debug, Default)]
pub(crate) struct Steady(Mutex<Inner>);

impl Steady {
    fn with<R>(&self, f: impl FnOnce(&mut Inner) -> R) -> Option<R> {
        self.0.lock().ok().map(|mut i| f(&mut i))
    }

    /// The kept observation, if any.
    pub(crate) fn kept(&self) -> Option<Kept> {
        self.with(|i| i.kept.clone()).flatten()
    }

    /// Forgets the kept observation: the next pass observes in full.
    pub(crate) fn forget(&self) {
        self.with(|i| i.kept = None);
    }

    /// Keeps `kept` (a converged pass, or a confirmed check), and what it says of the cluster.
    pub(crate) fn keep(&self, kept: Kept, instance_id: &str, shards: usize) {
        self.with(|i| {
            i.cluster = cluster_size(&kept.assessment, shards);
            if !kept.bootstrap_targets.is_empty() {
                i.accountant = Some(accountant(kept.shard, instance_id, &kept.bootstrap_targets));
            }
            i.kept = Some(kept);
        });
    }

    /// Keeps a converged pass's observation; the first steady check comes after one interval.
    pub(crate) fn keep_observed(
        &self,
        observed: &Observed,
        instance_id: &str,
        shards: usize,
        interval: impl FnOnce(usize) -> Duration,
    ) {
        let cluster = cluster_size(&observed.assessment, shards);
        let kept = Kept {
            shard: observed.shard,
            assessment: observed.assessment.clone(),
            dedicated_targets: observed.dedicated_targets.clone(),
            bootstrap_targets: observed.bootstrap_targets.clone(),
            next_check: Instant::now() + interval(cluster),
            checks: 0,
        };
        self.keep(kept, instance_id, shards);
    }

    /// The cluster size last estimated (0 before the first converged pass).
    pub(crate) fn cluster(&self) -> usize {
        self.with(|i| i.cluster).unwrap_or(0)
    }

    /// Whether this broker counts stale claims now, at `now`.
    pub(crate) fn stale_turn(&self, now: Instant) -> StaleTurn {
        self.with(|i| {
            let due = i.last_count.map_or(true, |t| {
                now.duration_since(t) >= stale_count_every(i.cluster)
            });
            match i.accountant {
                None => StaleTurn::Unknown,
                Some(true) if due => StaleTurn::Mine,
                Some(_) => StaleTurn::NotMine,
            }
        })
        .unwrap_or(StaleTurn::Unknown)
    }

    /// Stale claims were counted at `at`.
    pub(crate) fn stale_counted(&self, at: Instant) {
        self.with(|i| i.last_count = Some(at));
    }

    /// Whether this broker sweeps the cluster's listeners' idle timeout now (the accountant,
    /// every [`crate::idle::SWEEP_EVERY`]).
    pub(crate) fn sweep_turn(&self, now: Instant) -> StaleTurn {
        self.with(|i| {
            let due = i
                .last_sweep
                .map_or(true, |t| now.duration_since(t) >= crate::idle::SWEEP_EVERY);
            match i.accountant {
                None => StaleTurn::Unknown,
                Some(true) if due => StaleTurn::Mine,
                Some(_) => StaleTurn::NotMine,
            }
        })
        .unwrap_or(StaleTurn::Unknown)
    }

    /// The listeners were swept at `at`.
    pub(crate) fn swept(&self, at: Instant) {
        self.with(|i| i.last_sweep = Some(at));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nlb::Listener;

    fn t(id: &str, port: u16, state: TargetState, health: &str, reason: Option<&str>) -> Target {
        Target {
            id: id.into(),
            port,
            state,
            health: health.into(),
            reason: reason.map(str::to_string),
        }
    }

    #[test]
    fn a_check_confirms_only_a_registered_used_self() {
        use TargetState::{Draining, Registered};
        let ok = t("i-a", 9094, Registered, "healthy", None);
        let rows: Vec<(Vec<Target>, Group, bool, &str)> = vec![
            (
                vec![ok.clone()],
                Group::Dedicated,
                true,
                "registered and healthy",
            ),
            (
                vec![t(
                    "i-a",
                    9094,
                    Registered,
                    "initial",
                    Some("Elb.RegistrationInProgress"),
                )],
                Group::Dedicated,
                true,
                "still registering",
            ),
            (vec![], Group::Dedicated, false, "deregistered"),
            (
                vec![t("i-a", 9094, Draining, "draining", None)],
                Group::Dedicated,
                false,
                "draining",
            ),
            (
                vec![t(
                    "i-a",
                    9094,
                    Registered,
                    "unused",
                    Some("Target.NotInUse"),
                )],
                Group::Dedicated,
                false,
                "its listener was deleted",
            ),
            (
                vec![t("i-a", 9095, Registered, "healthy", None)],
                Group::Dedicated,
                false,
                "another port",
            ),
            (
                vec![
                    ok.clone(),
                    t(
                        "i-old",
                        9094,
                        Registered,
                        "unused",
                        Some("Target.InvalidState"),
                    ),
                ],
                Group::Dedicated,
                false,
                "a replaced instance to deregister",
            ),
            (
                vec![ok.clone(), t("i-b", 9094, Registered, "healthy", None)],
                Group::Bootstrap,
                true,
                "other brokers in the bootstrap group",
            ),
        ];
        for (targets, group, want, why) in rows {
            assert_eq!(confirms(&targets, "i-a", 9094, group), want, "{why}");
        }
    }

    #[test]
    fn checks_alternate_between_the_groups() {
        let listener = |arn: &str| Listener {
            arn: "l".into(),
            port: 1,
            target_group_arn: Some(arn.into()),
        };
        let mut kept = Kept {
            shard: 0,
            assessment: Assessment {
                claim: Some(listener("tg-mine")),
                bootstrap: Some(listener("tg-boot")),
                ..Assessment::default()
            },
            dedicated_targets: vec![],
            bootstrap_targets: vec![],
            next_check: Instant::now(),
            checks: 0,
        };
        assert_eq!(kept.next_read(), Some((Group::Dedicated, "tg-mine".into())));
        kept.checks = 1;
        assert_eq!(kept.next_read(), Some((Group::Bootstrap, "tg-boot".into())));
        kept.assessment.bootstrap = None;
        assert_eq!(kept.next_read(), Some((Group::Dedicated, "tg-mine".into())));
    }

    #[test]
    fn three_hundred_brokers_read_at_most_once_a_second() {
        let occupied = (10001..10043).collect();
        let a = Assessment {
            occupied,
            claim: Some(Listener {
                arn: "l".into(),
                port: 10043,
                target_group_arn: None,
            }),
            ..Assessment::default()
        };
        // 43 claims on this NLB, 7 NLBs: about 300 brokers.
        let n = cluster_size(&a, 7);
        assert_eq!(n, 301);
        let min = Duration::from_secs(60);
        // Mean interval (jitter averages to 1): 602 s, so the fleet reads 301 / 602 = 0.5/s.
        let mean = check_interval(min, n, 0.5, 1.0);
        assert_eq!(mean, Duration::from_secs(602));
        let fleet_rate = n as f64 / mean.as_secs_f64();
        assert!(fleet_rate <= 0.5 + 1e-9, "{fleet_rate}");
        // Jitter spreads hosts over [0.5, 1.5] of it.
        assert_eq!(check_interval(min, n, 0.5, 0.5), Duration::from_secs(301));
        // A small cluster is bounded by daemon.interval.
        assert_eq!(check_interval(min, 3, 0.5, 1.0), min);
        // The accountant's count (one read per claim) adds at most 0.1/s.
        let every = stale_count_every(n);
        assert!((n as f64 + 7.0) / every.as_secs_f64() <= 0.11);
        assert_eq!(stale_count_every(3), STALE_COUNT_MIN_EVERY);
    }

    #[test]
    fn the_accountant_is_the_lowest_live_instance_on_the_first_nlb() {
        use TargetState::{Draining, Registered};
        let boot = vec![
            t(
                "i-0dead",
                9094,
                Registered,
                "unused",
                Some("Target.InvalidState"),
            ),
            t("i-1", 9094, Registered, "healthy", None),
            t("i-2", 9094, Registered, "healthy", None),
            t("i-0leaving", 9094, Draining, "draining", None),
        ];
        assert!(accountant(0, "i-1", &boot));
        assert!(!accountant(0, "i-2", &boot));
        assert!(!accountant(1, "i-1", &boot), "only on the first NLB");
        let s = Steady::default();
        assert!(
            s.stale_turn(Instant::now()) == StaleTurn::Unknown,
            "nobody counts before knowing"
        );
    }
}
