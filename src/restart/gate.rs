//! The health gates a rolling restart waits for, and the cluster's brokers as the NLB knows them.

use std::collections::{BTreeMap, BTreeSet};

use crate::config::Config;
use crate::kafka::{ClusterSnapshot, KafkaCluster};
use crate::nlb::{LoadBalancer, NlbError, Target, TargetState};

use super::{RestartError, Restarter, ServiceManager};

/// Whether a target stands for a broker that may come back: registered, and not `unused` with
/// reason `Target.InvalidState` (DescribeTargetHealth API reference, TargetHealth Reason: "The
/// target is in the stopped or terminated state").
pub fn is_live_target(t: &Target) -> bool {
    t.state == TargetState::Registered
        && !(t.health == "unused" && t.reason.as_deref() == Some("Target.InvalidState"))
}

/// The cluster's claims split by whether a broker is behind them: a claim whose dedicated group
/// has no live target ([`is_live_target`]) belongs to a broker removed without `decommission`
/// (a terminated instance: ELB deregisters it) or whose instance is stopped. Such a *stale*
/// claim is reported and left out of the "every broker registered" gate, which it would
/// otherwise block forever. Returns (live, stale).
pub fn split_claims(claims: &BTreeMap<i32, Vec<Target>>) -> (BTreeSet<i32>, BTreeSet<i32>) {
    claims.iter().fold(
        (BTreeSet::new(), BTreeSet::new()),
        |(mut live, mut stale), (id, targets)| {
            if targets.iter().any(is_live_target) {
                live.insert(*id);
            } else {
                stale.insert(*id);
            }
            (live, stale)
        },
    )
}

/// Result of one health observation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GateReport {
    /// Why a restart must not happen now (empty = healthy).
    pub blockers: Vec<String>,
    /// Partitions that can never pass (replication factor ≤ min.insync.replicas): reported only.
    pub notes: Vec<String>,
}

/// The health gates for restarting broker `me` (pure). `expected` are the cluster's brokers as
/// the NLB knows them (one claim each); every one must be registered in Kafka.
pub fn gate(snapshot: &ClusterSnapshot, me: i32, expected: &BTreeSet<i32>) -> GateReport {
    let mut r = GateReport::default();
    let live: BTreeSet<i32> = snapshot.brokers.iter().map(|b| b.id).collect();
    for missing in expected.difference(&live) {
        r.blockers
            .push(format!("broker {missing} is not registered"));
    }
    if !live.contains(&me) {
        r.blockers
            .push(format!("broker {me} (this one) is not registered"));
    }
    if !snapshot.unreadable_configs.is_empty() {
        r.notes.push(format!(
            "min.insync.replicas of {} topic(s) unknown ({}{}: TOPIC_AUTHORIZATION_FAILED, grant the admin principal DescribeConfigs): the gate still requires each of their partitions online and fully in sync, but cannot tell which would be unavailable for acks=all while broker {me} restarts",
            snapshot.unreadable_configs.len(),
            snapshot.unreadable_configs.iter().take(3).cloned().collect::<Vec<_>>().join(", "),
            if snapshot.unreadable_configs.len() > 3 { ", …" } else { "" }
        ));
    }
    for topic in &snapshot.topics {
        let min_isr = snapshot.min_insync_replicas(topic);
        let min_isr_known = !snapshot.unreadable_configs.contains(&topic.name);
        for p in &topic.partitions {
            let tp = format!("{}-{}", p.topic, p.partition);
            if p.leader < 0 {
                r.blockers.push(format!("{tp} is offline"));
                continue;
            }
            if p.isr.len() < p.replicas.len() {
                r.blockers.push(format!(
                    "{tp} is under-replicated (isr {:?} of {:?})",
                    p.isr, p.replicas
                ));
                continue;
            }
            if !p.isr.contains(&me) || !min_isr_known {
                continue;
            }
            // Every replica is in sync here (an under-replicated partition blocked above), so
            // with this broker gone the ISR holds RF - 1 replicas: below min.insync.replicas
            // exactly when RF <= min.insync.replicas, which no restart order can avoid.
            if p.replicas.len() as i32 <= min_isr {
                r.notes.push(format!(
                    "{tp} has replication factor {} <= min.insync.replicas {min_isr}: unavailable for acks=all while broker {me} restarts",
                    p.replicas.len()
                ));
            }
        }
    }
    r
}

/// Every claim of this cluster on its NLBs (broker id → targets of its dedicated group): one
/// DescribeListeners per NLB plus one DescribeTargetHealth per claim, so only for restarts and
/// `status`.
pub async fn cluster_claims<L: LoadBalancer>(
    lb: &L,
    config: &Config,
) -> Result<BTreeMap<i32, Vec<Target>>, NlbError> {
    Ok(cluster_listing(lb, config)
        .await?
        .into_iter()
        .map(|c| (c.broker_id, c.targets))
        .collect())
}

/// One claim of the cluster as the NLBs show it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ClusterClaim {
    /// The broker.
    pub broker_id: i32,
    /// Index of its NLB in the configured list.
    pub shard: usize,
    /// Its NLB.
    pub load_balancer_arn: String,
    /// Its NLB port.
    pub port: u16,
    /// Targets of its dedicated group.
    pub targets: Vec<Target>,
}

/// Every claim of this cluster on its NLBs, by broker id (a broker claimed twice, on two NLBs,
/// appears once: the first NLB's claim).
pub async fn cluster_listing<L: LoadBalancer>(
    lb: &L,
    config: &Config,
) -> Result<Vec<ClusterClaim>, NlbError> {
    let range = config.port_range();
    let mut claims: BTreeMap<i32, ClusterClaim> = BTreeMap::new();
    for shard in config.nlb.load_balancers() {
        let lb_arn = &shard.load_balancer_arn;
        for l in lb.listeners(lb_arn).await? {
            if !range.contains(&l.port) {
                continue;
            }
            let Some(tg) = l.target_group_arn.as_deref() else {
                continue;
            };
            let Some(id) = crate::nlb::target_group_name(tg).and_then(|name| {
                crate::compat::broker_id_from_group(&config.cluster, lb_arn, name)
            }) else {
                continue;
            };
            if claims.contains_key(&id) {
                continue;
            }
            let targets = lb.targets(tg).await?;
            claims.insert(
                id,
                ClusterClaim {
                    broker_id: id,
                    shard: shard.index,
                    load_balancer_arn: lb_arn.clone(),
                    port: l.port,
                    targets,
                },
            );
        }
    }
    Ok(claims.into_values().collect())
}

impl<L: LoadBalancer, K: KafkaCluster, S: ServiceManager> Restarter<'_, L, K, S> {
    /// The cluster's brokers as the NLB knows them (one claim listener each), without stale
    /// claims (see [`split_claims`]), which are logged.
    pub(super) async fn expected_brokers(&self) -> Result<BTreeSet<i32>, RestartError> {
        let claims = cluster_claims(self.lb, self.config).await?;
        let (live, stale) = split_claims(&claims);
        if !stale.is_empty() {
            tracing::warn!(stale = ?stale, "claims whose target group has no registered target (brokers removed without `decommission`?) are left out of the health gate; decommission them or delete their listeners");
        }
        Ok(live)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kafka::{BrokerNode, PartitionState, TopicState};
    use crate::registry;

    fn broker(id: i32) -> BrokerNode {
        BrokerNode {
            id,
            host: format!("b{id}"),
            port: 9092,
        }
    }
    fn part(topic: &str, p: i32, leader: i32, replicas: &[i32], isr: &[i32]) -> PartitionState {
        PartitionState {
            topic: topic.into(),
            partition: p,
            leader,
            replicas: replicas.to_vec(),
            isr: isr.to_vec(),
        }
    }
    fn snapshot(
        brokers: &[i32],
        topics: Vec<(&str, Option<i32>, Vec<PartitionState>)>,
    ) -> ClusterSnapshot {
        ClusterSnapshot {
            brokers: brokers.iter().map(|b| broker(*b)).collect(),
            controller_id: Some(1),
            topics: topics
                .into_iter()
                .map(|(name, min, partitions)| TopicState {
                    name: name.into(),
                    internal: name.starts_with("__"),
                    min_insync_replicas: min,
                    partitions,
                })
                .collect(),
            default_min_insync_replicas: 1,
            unreadable_configs: vec![],
        }
    }

    #[test]
    fn stale_claims_leave_the_gate() {
        let t = |state| Target {
            id: "i-1".into(),
            port: 9094,
            state,
            health: "unhealthy".into(),
            reason: None,
        };
        let claims = BTreeMap::from([
            (1, vec![t(TargetState::Registered)]),
            // Terminated without decommission: ELB deregistered it.
            (2, vec![]),
            (3, vec![t(TargetState::Draining)]),
            // Registered but down (unhealthy) still counts: that broker must come back first.
            (
                4,
                vec![t(TargetState::Draining), t(TargetState::Registered)],
            ),
        ]);
        let mut claims = claims;
        // A stopped (or terminated, still listed) instance: unused / Target.InvalidState.
        claims.insert(
            5,
            vec![Target {
                health: "unused".into(),
                reason: Some("Target.InvalidState".into()),
                ..t(TargetState::Registered)
            }],
        );
        // unused for another reason (the group's listener is gone for a moment): still live.
        claims.insert(
            6,
            vec![Target {
                health: "unused".into(),
                reason: Some("Target.NotInUse".into()),
                ..t(TargetState::Registered)
            }],
        );
        let (live, stale) = split_claims(&claims);
        assert_eq!(live, BTreeSet::from([1, 4, 6]));
        assert_eq!(stale, BTreeSet::from([2, 3, 5]));
        claims.remove(&5);
        claims.remove(&6);
        let (live, _) = split_claims(&claims);
        // The gate then only waits for live brokers.
        let snap = snapshot(&[1, 4], vec![]);
        assert!(gate(&snap, 1, &live).blockers.is_empty());
        assert!(!gate(&snap, 1, &claims.keys().copied().collect())
            .blockers
            .is_empty());
    }

    /// A principal without DescribeConfigs on a topic (TOPIC_AUTHORIZATION_FAILED): the topic
    /// still gates on its partitions (offline, under-replicated block), a note says what is not
    /// known, and no replication-factor note is made up from the broker default.
    #[test]
    fn unreadable_topic_configs_still_gate_on_partition_state() {
        let all: BTreeSet<i32> = [1, 2, 3].into();
        let mut snap = snapshot(
            &[1, 2, 3],
            vec![
                ("secret", None, vec![part("secret", 0, 1, &[1, 2], &[1, 2])]),
                ("open", Some(2), vec![part("open", 0, 1, &[1, 2], &[1, 2])]),
            ],
        );
        snap.unreadable_configs = vec!["secret".into()];
        let r = gate(&snap, 1, &all);
        assert!(r.blockers.is_empty(), "{r:?}");
        assert_eq!(r.notes.len(), 2, "{r:?}");
        assert!(r.notes[0].starts_with("min.insync.replicas of 1 topic(s) unknown (secret:"));
        assert!(
            r.notes[1].starts_with("open-0 has replication factor 2"),
            "{r:?}"
        );
        snap.topics[0].partitions[0].isr = vec![1];
        let r = gate(&snap, 1, &all);
        assert_eq!(
            r.blockers,
            ["secret-0 is under-replicated (isr [1] of [1, 2])"]
        );
        // Replication factor 1 on this broker: with the topic's config unknown, no note is
        // made up from the broker default (1); with it known, the note is made.
        snap.topics[0].partitions = vec![part("secret", 0, 1, &[1], &[1])];
        let r = gate(&snap, 1, &all);
        assert_eq!(r.notes.len(), 2, "{r:?}");
        snap.unreadable_configs.clear();
        let r = gate(&snap, 1, &all);
        assert_eq!(r.notes.len(), 2, "{r:?}");
        assert!(
            r.notes[0].starts_with("secret-0 has replication factor 1"),
            "{r:?}"
        );
        assert!(r.notes[1].starts_with("open-0"), "{r:?}");
    }

    /// Notes are about partitions this broker is in the ISR of: another broker's
    /// replication-factor-1 partition is not this restart's concern.
    #[test]
    fn only_partitions_with_this_broker_in_the_isr_are_noted() {
        let all: BTreeSet<i32> = [1, 2].into();
        let snap = snapshot(
            &[1, 2],
            vec![(
                "t",
                None,
                vec![part("t", 0, 2, &[2], &[2]), part("t", 1, 1, &[1], &[1])],
            )],
        );
        let r = gate(&snap, 1, &all);
        assert!(r.blockers.is_empty(), "{r:?}");
        assert_eq!(r.notes.len(), 1, "{r:?}");
        assert!(
            r.notes[0].starts_with("t-1 has replication factor 1"),
            "{r:?}"
        );
    }

    /// Broker id 0 is a broker like any other (`broker.id=0` is common): a partition it leads is
    /// online; only a negative leader (-1, none) is offline.
    #[test]
    fn a_partition_led_by_broker_0_is_online() {
        let all: BTreeSet<i32> = [0, 1, 2].into();
        let snap = snapshot(
            &[0, 1, 2],
            vec![("t", Some(1), vec![part("t", 0, 0, &[0, 1, 2], &[0, 1, 2])])],
        );
        assert!(gate(&snap, 1, &all).blockers.is_empty());
        let mut offline = snap.clone();
        offline.topics[0].partitions[0].leader = -1;
        assert_eq!(gate(&offline, 1, &all).blockers, ["t-0 is offline"]);
    }

    #[test]
    fn gate_table() {
        let all: BTreeSet<i32> = [1, 2, 3].into();
        type Case = (
            ClusterSnapshot,
            BTreeSet<i32>,
            &'static [&'static str],
            usize,
        );
        let cases: Vec<Case> = vec![
            // Healthy 3-broker cluster, RF 3, min.insync 2.
            (
                snapshot(
                    &[1, 2, 3],
                    vec![("t", Some(2), vec![part("t", 0, 1, &[1, 2, 3], &[1, 2, 3])])],
                ),
                all.clone(),
                &[],
                0,
            ),
            // A broker the NLB knows is missing from Kafka.
            (
                snapshot(&[1, 3], vec![]),
                all.clone(),
                &["broker 2 is not registered"],
                0,
            ),
            // Under-replicated anywhere blocks.
            (
                snapshot(
                    &[1, 2, 3],
                    vec![("t", Some(1), vec![part("t", 0, 2, &[2, 3], &[2])])],
                ),
                all.clone(),
                &["t-0 is under-replicated"],
                0,
            ),
            // Offline partition blocks.
            (
                snapshot(
                    &[1, 2, 3],
                    vec![("t", None, vec![part("t", 1, -1, &[2], &[])])],
                ),
                all.clone(),
                &["t-1 is offline"],
                0,
            ),
            // min.insync boundary: isr 3, min 2 → 3-1 = 2 ≥ 2 passes (equal)...
            (
                snapshot(
                    &[1, 2, 3],
                    vec![("t", Some(2), vec![part("t", 0, 1, &[1, 2, 3], &[1, 2, 3])])],
                ),
                all.clone(),
                &[],
                0,
            ),
            // ...RF 4 with isr 3 is URP; use RF 3, min 3 → RF ≤ min: a note, not a blocker.
            (
                snapshot(
                    &[1, 2, 3],
                    vec![("t", Some(3), vec![part("t", 0, 1, &[1, 2, 3], &[1, 2, 3])])],
                ),
                all.clone(),
                &[],
                1,
            ),
            // One above: RF 4, isr 4, min 4 → note (RF ≤ min); RF 4, isr 4, min 3 → 3 ≥ 3 ok.
            (
                snapshot(
                    &[1, 2, 3, 4],
                    vec![(
                        "t",
                        Some(3),
                        vec![part("t", 0, 1, &[1, 2, 3, 4], &[1, 2, 3, 4])],
                    )],
                ),
                all.clone(),
                &[],
                0,
            ),
            // Internal topics count, broker default applies: __consumer_offsets RF 2, default min 1 → ok.
            (
                snapshot(
                    &[1, 2, 3],
                    vec![(
                        "__consumer_offsets",
                        None,
                        vec![part("__consumer_offsets", 0, 1, &[1, 2], &[1, 2])],
                    )],
                ),
                all.clone(),
                &[],
                0,
            ),
            // Partitions without this broker in the ISR do not matter for the min.insync gate.
            (
                snapshot(
                    &[1, 2, 3],
                    vec![("t", Some(2), vec![part("t", 0, 2, &[2, 3], &[2, 3])])],
                ),
                all.clone(),
                &[],
                1,
            ),
        ];
        for (i, (snap, expected, needles, notes)) in cases.into_iter().enumerate() {
            let r = gate(&snap, 1, &expected);
            assert_eq!(r.blockers.len(), needles.len(), "case {i}: {r:?}");
            for n in needles {
                assert!(
                    r.blockers.iter().any(|b| b.contains(n)),
                    "case {i}: {r:?} lacks {n}"
                );
            }
            if i != 8 {
                assert_eq!(r.notes.len(), notes, "case {i}: {r:?}");
            }
        }
        // min.insync one above what the ISR allows: isr 2 of RF 3 is URP, so take RF 2, min 2 (note)
        // and RF 3, isr 3, min 3 (note); a real blocker: RF 3, isr 3, min 3 is RF ≤ min. Blocker case:
        // RF 4 with isr 4 and min 4 is RF ≤ min; RF 5, isr 5, min 5 likewise; so build isr-min by hand:
        let mut s = snapshot(
            &[1, 2, 3],
            vec![(
                "t",
                Some(3),
                vec![part("t", 0, 1, &[1, 2, 3, 4], &[1, 2, 3, 4])],
            )],
        );
        s.brokers.push(broker(4));
        let r = gate(&s, 1, &all);
        assert!(r.blockers.is_empty(), "isr 4 - 1 = 3 >= 3: {r:?}");
        let mut s = snapshot(
            &[1, 2, 3],
            vec![(
                "t",
                Some(4),
                vec![part("t", 0, 1, &[1, 2, 3, 4, 5], &[1, 2, 3, 4, 5])],
            )],
        );
        s.topics[0].partitions[0].isr = vec![1, 2, 3, 4, 5];
        s.topics[0].min_insync_replicas = Some(5);
        let r = gate(&s, 1, &all);
        assert!(
            r.blockers.is_empty() && r.notes.len() == 1,
            "RF 5 <= min 5 is a note: {r:?}"
        );
    }

    /// The claims the gate expects, read from the NLB: one per broker (its first NLB's claim),
    /// only listeners in the port range forwarding to this cluster's dedicated groups; a claim
    /// whose group has no target is stale and left out of the gate.
    #[tokio::test(start_paused = true)]
    async fn the_gate_expects_the_live_claims_the_nlb_shows() {
        use crate::restart::lock::fake_tests::{world, Untouched, CLUSTER};
        let w = world();
        let lb = w.lb_arn.clone();
        let range = w.config.port_range();
        let (first, last) = (*range.start(), *range.end());
        let group = |id: i32| registry::dedicated_group_name(CLUSTER, &lb, id);
        w.nlb.with(|s| {
            let claim = |s: &mut crate::fakes::NlbState, id: i32, port: u16, target: bool| {
                let tg = s.group_arn(&group(id)).unwrap_or_else(|| {
                    s.add_group(
                        &group(id),
                        "traffic-port",
                        &[(registry::TAG_CLUSTER, CLUSTER)],
                    )
                });
                if target {
                    s.groups.get_mut(&tg).unwrap().targets = vec![(format!("i-{id}"), 9094)];
                }
                s.add_listener(&lb, port, &tg, &[]);
            };
            claim(s, 1, first, true);
            claim(s, 2, first + 1, false);
            claim(s, 5, first + 3, true);
            // Broker 1 claimed twice: its first claim (lowest port) is the one shown.
            claim(s, 1, last, true);
            // Outside the range: the bootstrap listener's port, say; not a claim.
            claim(s, 3, first - 1, true);
            // Another cluster's group in the range: not this cluster's claim.
            let other = s.add_group(
                &registry::dedicated_group_name("payments", &lb, 4),
                "traffic-port",
                &[(registry::TAG_CLUSTER, "payments")],
            );
            s.add_listener(&lb, first + 2, &other, &[]);
        });
        let listing = cluster_listing(&w.nlb, &w.config).await.unwrap();
        let shown: Vec<(i32, u16, usize)> = listing
            .iter()
            .map(|c| (c.broker_id, c.port, c.targets.len()))
            .collect();
        assert_eq!(
            shown,
            vec![(1, first, 1), (2, first + 1, 0), (5, first + 3, 1)]
        );
        assert!(listing
            .iter()
            .all(|c| c.load_balancer_arn == lb && c.shard == 0));
        let claims = cluster_claims(&w.nlb, &w.config).await.unwrap();
        assert_eq!(claims.keys().copied().collect::<Vec<_>>(), vec![1, 2, 5]);
        assert_eq!(claims[&1][0].id, "i-1");
        let agent: crate::restart::Restarter<'_, _, Untouched, Untouched> =
            w.agent(&w.nlb, "1/i-1");
        assert_eq!(
            agent.expected_brokers().await.unwrap(),
            BTreeSet::from([1, 5])
        );
    }
}
