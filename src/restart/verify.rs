//! After the restart: has the broker come back? Registered again, advertising the desired
//! endpoint, every partition in sync, and `healthy` in its NLB target groups
//! ([`Restarter`]'s verify phase, and [`nlb_not_ready`], its pure reading of target health).
//!
//! Separate from the orchestration in `mod.rs` because it is the one phase that runs after
//! Kafka was touched, and the one that resumes an interrupted restart; it only reads, renews
//! the lock and releases it.

use std::time::Duration;

use tokio::time::Instant;

use crate::kafka::KafkaCluster;
use crate::nlb::{LoadBalancer, Target};

use super::{endpoint_of, LockPhase, LockState, Outcome, RestartError, Restarter, ServiceManager};

/// Why the NLB does not send this broker traffic yet, from each group's DescribeTargetHealth
/// (pure): `None` when the instance is `healthy` in every group. AWS ("Health checks for Network
/// Load Balancer target groups"): only `healthy` targets get new connections (a group whose
/// targets are all unhealthy fails open, but a restarted broker must not count on that).
pub fn nlb_not_ready(instance_id: &str, groups: &[(String, Vec<Target>)]) -> Option<String> {
    let missing: Vec<String> = groups
        .iter()
        .filter_map(|(group, targets)| {
            let name = crate::nlb::target_group_name(group).unwrap_or(group);
            match targets.iter().find(|t| t.id == instance_id) {
                Some(t) if t.health == "healthy" => None,
                Some(t) => Some(format!(
                    "{name}: {}{}",
                    t.health,
                    t.reason
                        .as_deref()
                        .map(|r| format!(" ({r})"))
                        .unwrap_or_default()
                )),
                None => Some(format!("{name}: not registered")),
            }
        })
        .collect();
    (!missing.is_empty()).then(|| {
        format!(
            "the NLB does not mark {instance_id} healthy yet ({})",
            missing.join(", ")
        )
    })
}

impl<L: LoadBalancer, K: KafkaCluster, S: ServiceManager> Restarter<'_, L, K, S> {
    /// Kafka is back: does the NLB send it traffic? Asked at most every `check_interval` (two
    /// DescribeTargetHealth calls; a real NLB takes `HealthCheckIntervalSeconds` ×
    /// `HealthyThresholdCount`, 30 s × 5 by default, to mark a restarted broker healthy), the
    /// last answer kept in between. An AWS error is a reason to wait, not to give up.
    async fn nlb_health(
        &self,
        next: &mut Instant,
        last: &mut Option<Option<String>>,
    ) -> Option<String> {
        let targets = self.nlb_targets.as_ref()?;
        if Instant::now() < *next {
            if let Some(answer) = last {
                return answer.clone();
            }
        }
        *next = Instant::now() + self.config.restart.check_interval;
        let mut groups = Vec::with_capacity(targets.groups.len());
        for group in &targets.groups {
            match self.lb.targets(group).await {
                Ok(t) => groups.push((group.clone(), t)),
                Err(e) => {
                    let why = format!("NLB target health unknown: {e}");
                    *last = Some(Some(why.clone()));
                    return Some(why);
                }
            }
        }
        let answer = nlb_not_ready(&targets.instance_id, &groups);
        if let Some(why) = &answer {
            tracing::info!(why = %why, "broker is back in Kafka; waiting for the NLB's health checks");
        }
        *last = Some(answer.clone());
        answer
    }

    /// After a restart: registered again, advertising `desired`, no under-replicated partition,
    /// and `healthy` in its NLB target groups.
    pub(super) async fn verify_and_release(
        &self,
        lock: &LockState,
        desired: &str,
        started: Instant,
    ) -> Result<Outcome, RestartError> {
        let rc = &self.config.restart;
        self.renew(lock, LockPhase::Verifying, "verifying the restart")
            .await?;
        let deadline = Instant::now() + rc.timeout;
        let name = &self.config.listener.name;
        let mut why;
        let mut next_nlb_check = Instant::now();
        let mut nlb_why = None;
        loop {
            // Partition state only: no topic config is needed here, and at 10,000 partitions a
            // DescribeConfigs of every topic every 2 s would cost more than the whole check.
            why = match self.kafka.partitions().await {
                Err(e) => e.to_string(),
                Ok(s) if s.broker(self.broker_id).is_none() => "not registered yet".to_string(),
                Ok(s) => {
                    let urp = s
                        .topics
                        .iter()
                        .flat_map(|t| &t.partitions)
                        .filter(|p| p.isr.len() < p.replicas.len() || p.leader < 0)
                        .count();
                    let advertised = self
                        .kafka
                        .advertised_listeners(self.broker_id)
                        .await
                        .ok()
                        .flatten();
                    let endpoint = advertised.as_deref().and_then(|a| endpoint_of(a, name));
                    if endpoint.as_deref() != Some(desired) {
                        format!(
                            "advertises {} instead of {desired}",
                            endpoint.as_deref().unwrap_or("nothing")
                        )
                    } else if urp > 0 {
                        format!("{urp} partition(s) not in sync")
                    } else if let Some(why) =
                        self.nlb_health(&mut next_nlb_check, &mut nlb_why).await
                    {
                        why
                    } else {
                        self.release(lock).await?;
                        tracing::info!(
                            broker_id = self.broker_id,
                            advertised = desired,
                            "broker is back with the new endpoint"
                        );
                        return Ok(Outcome::Restarted {
                            took_ms: started.elapsed().as_millis(),
                        });
                    }
                }
            };
            if Instant::now() >= deadline {
                // Never cascade: keep the lock, marked failed, so no other broker restarts.
                let _ = self
                    .renew(lock, LockPhase::Failed, "giving up on the restart")
                    .await;
                return Err(RestartError::NotRecovered {
                    broker_id: self.broker_id,
                    timeout: rc.timeout,
                    why,
                });
            }
            tokio::time::sleep(rc.check_interval.min(Duration::from_secs(2))).await;
            self.renew(lock, LockPhase::Verifying, "verifying the restart")
                .await?;
        }
    }
}

#[cfg(test)]
mod nlb_health_tests {
    use super::*;
    use crate::nlb::TargetState;

    const BOOT: &str = "arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/kp-orders-boot/1";
    const MINE: &str = "arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/kp-orders-b7/2";

    fn target(id: &str, health: &str, reason: Option<&str>) -> Target {
        Target {
            id: id.into(),
            port: 9094,
            state: TargetState::Registered,
            health: health.into(),
            reason: reason.map(String::from),
        }
    }

    #[test]
    fn a_restarted_broker_is_ready_only_when_healthy_in_every_group() {
        let groups = |mine: Vec<Target>, boot: Vec<Target>| {
            vec![(MINE.to_string(), mine), (BOOT.to_string(), boot)]
        };
        let healthy = || target("i-1", "healthy", None);
        assert_eq!(
            nlb_not_ready(
                "i-1",
                &groups(
                    vec![healthy()],
                    vec![target("i-2", "unhealthy", None), healthy()]
                )
            ),
            None
        );
        assert_eq!(
            nlb_not_ready(
                "i-1",
                &groups(
                    vec![target("i-1", "initial", Some("Elb.InitialHealthChecking"))],
                    vec![healthy()]
                )
            )
            .as_deref(),
            Some("the NLB does not mark i-1 healthy yet (kp-orders-b7: initial (Elb.InitialHealthChecking))")
        );
        assert_eq!(
            nlb_not_ready(
                "i-1",
                &groups(vec![healthy()], vec![target("i-2", "healthy", None)])
            )
            .as_deref(),
            Some("the NLB does not mark i-1 healthy yet (kp-orders-boot: not registered)")
        );
        let both = nlb_not_ready(
            "i-1",
            &groups(
                vec![target(
                    "i-1",
                    "unhealthy",
                    Some("Target.FailedHealthChecks"),
                )],
                vec![target("i-1", "draining", None)],
            ),
        )
        .unwrap();
        assert!(
            both.contains("kp-orders-b7: unhealthy (Target.FailedHealthChecks)")
                && both.contains("kp-orders-boot: draining"),
            "{both}"
        );
        assert_eq!(nlb_not_ready("i-1", &[]), None);
    }
}
