//! [`Elbv2`]: the [`LoadBalancer`] seam through the AWS SDK, one thin method per ELBv2 call.
//! The conversions between SDK types and the seam's are in `elbv2/convert.rs`.

use std::collections::BTreeMap;

use aws_sdk_elasticloadbalancingv2 as elbv2;
use elbv2::error::ProvideErrorMetadata;
use elbv2::types::{Action, ActionTypeEnum, ProtocolEnum, TargetHealthStateEnum, TargetTypeEnum};

mod attributes;
mod convert;

use super::*;
use convert::{descriptions, empty_response, group_info, sdk_tags};

/// ELBv2 through the AWS SDK.
#[derive(Debug, Clone)]
pub struct Elbv2 {
    client: elbv2::Client,
    calls: CallCounter,
}

impl Elbv2 {
    /// Wraps a configured client; `calls` receives one count per request sent.
    pub fn new(client: elbv2::Client, calls: CallCounter) -> Self {
        Elbv2 { client, calls }
    }

    async fn describe_target_group_by_name(&self, name: &str) -> Result<TargetGroupInfo, NlbError> {
        let out = self
            .calls
            .send("DescribeTargetGroups", || {
                self.client.describe_target_groups().names(name).send()
            })
            .await
            .map_err(|e| NlbError::from_sdk("DescribeTargetGroups", name, e))?;
        out.target_groups()
            .iter()
            .find_map(group_info)
            .ok_or_else(|| NlbError {
                operation: "DescribeTargetGroups",
                resource: name.to_string(),
                code: "TargetGroupNotFound".into(),
                message: "no target group of that name after CreateTargetGroup reported it exists"
                    .into(),
            })
    }
}

impl Elbv2 {
    /// One CreateTargetGroup of a TCP group of instance targets: the new group, or the existing
    /// one with identical settings (the call is idempotent, see its callers); `Ok(None)` when the
    /// name is taken by a group with other settings (`DuplicateTargetGroupName`).
    async fn create_tcp_group(
        &self,
        name: &str,
        vpc_id: &str,
        port: u16,
        health_check_port: String,
        tags: &[(String, String)],
    ) -> Result<Option<TargetGroupInfo>, NlbError> {
        let result = self
            .calls
            .send("CreateTargetGroup", || {
                self.client
                    .create_target_group()
                    .name(name)
                    .protocol(ProtocolEnum::Tcp)
                    .port(i32::from(port))
                    .vpc_id(vpc_id)
                    .target_type(TargetTypeEnum::Instance)
                    .health_check_protocol(ProtocolEnum::Tcp)
                    .health_check_port(health_check_port.clone())
                    .set_tags(Some(sdk_tags(tags)))
                    .send()
            })
            .await;
        match result {
            Ok(out) => out
                .target_groups()
                .iter()
                .find_map(group_info)
                .map(Some)
                .ok_or_else(|| {
                    empty_response("CreateTargetGroup", name, "no target group in the response")
                }),
            Err(e) if e.error.code() == Some("DuplicateTargetGroupName") => Ok(None),
            Err(e) => Err(NlbError::from_sdk("CreateTargetGroup", name, e)),
        }
    }

    /// Refuses to adopt a same-named group that this cluster did not create.
    /// A group with no tags at all is read again for up to [`UNTAGGED_PATIENCE`] first: right
    /// after another host's CreateTargetGroup its tags may not be visible yet (ELBv2 is
    /// eventually consistent).
    async fn verify_tags(&self, arn: &str, spec: &TargetGroupSpec) -> Result<(), NlbError> {
        let started = tokio::time::Instant::now();
        let mut attempt = 0;
        let tags = loop {
            let tags = self.tags(arn).await?.ok_or_else(|| NlbError {
                operation: "DescribeTags",
                resource: arn.to_string(),
                code: "TargetGroupNotFound".into(),
                message: format!(
                    "target group {} disappeared while its tags were read",
                    spec.name
                ),
            })?;
            if !tags.is_empty()
                || started.elapsed() >= UNTAGGED_PATIENCE
                || !self.calls.pause(attempt, started).await
            {
                break tags;
            }
            attempt += 1;
        };
        match spec.tags.iter().find(|(k, v)| tags.get(k) != Some(v)) {
            None => Ok(()),
            Some((k, v)) => Err(NlbError {
                operation: "CreateTargetGroup",
                resource: arn.to_string(),
                code: "DuplicateTargetGroupName".into(),
                message: format!(
                    "a target group named {} exists without tag {k}={v}; refusing to adopt it",
                    spec.name
                ),
            }),
        }
    }
}

impl LoadBalancer for Elbv2 {
    async fn listeners(&self, lb_arn: &str) -> Result<Vec<Listener>, NlbError> {
        let mut listeners = Vec::new();
        let mut marker = None;
        loop {
            let out = self
                .calls
                .send("DescribeListeners", || {
                    self.client
                        .describe_listeners()
                        .load_balancer_arn(lb_arn)
                        .set_marker(marker.clone())
                        .send()
                })
                .await
                .map_err(|e| NlbError::from_sdk("DescribeListeners", lb_arn, e))?;
            for l in out.listeners() {
                let (Some(arn), Some(port)) = (l.listener_arn(), l.port()) else {
                    continue;
                };
                let forward: Vec<&Action> = l
                    .default_actions()
                    .iter()
                    .filter(|a| a.r#type() == Some(&ActionTypeEnum::Forward))
                    .collect();
                let target_group_arn = match forward.as_slice() {
                    [action] => action.target_group_arn().map(str::to_string).or_else(|| {
                        let groups = action.forward_config()?.target_groups();
                        match groups {
                            [only] => only.target_group_arn().map(str::to_string),
                            _ => None,
                        }
                    }),
                    _ => None,
                };
                listeners.push(Listener {
                    arn: arn.to_string(),
                    port: u16::try_from(port).unwrap_or(0),
                    target_group_arn,
                });
            }
            marker = out.next_marker().map(str::to_string);
            if marker.is_none() {
                return Ok(listeners);
            }
        }
    }

    async fn targets(&self, tg_arn: &str) -> Result<Vec<Target>, NlbError> {
        let out = self
            .calls
            .send("DescribeTargetHealth", || {
                self.client
                    .describe_target_health()
                    .target_group_arn(tg_arn)
                    .send()
            })
            .await
            .map_err(|e| NlbError::from_sdk("DescribeTargetHealth", tg_arn, e))?;
        Ok(out
            .target_health_descriptions()
            .iter()
            .filter_map(|d| {
                let target = d.target()?;
                let health = d.target_health().and_then(|h| h.state());
                Some(Target {
                    id: target.id()?.to_string(),
                    port: target
                        .port()
                        .and_then(|p| u16::try_from(p).ok())
                        .unwrap_or(0),
                    state: if health == Some(&TargetHealthStateEnum::Draining) {
                        TargetState::Draining
                    } else {
                        TargetState::Registered
                    },
                    health: health.map(|h| h.as_str().to_string()).unwrap_or_default(),
                    reason: d
                        .target_health()
                        .and_then(|h| h.reason())
                        .map(|r| r.as_str().to_string()),
                })
            })
            .collect())
    }

    async fn ensure_target_group(&self, spec: &TargetGroupSpec) -> Result<String, NlbError> {
        let created = self
            .create_tcp_group(
                &spec.name,
                &spec.vpc_id,
                spec.port,
                TRAFFIC_PORT.to_string(),
                &spec.tags,
            )
            .await?;
        // CreateTargetGroup is idempotent: AWS returns an existing group of that name and the
        // same settings with no error (ELBv2 API reference, CreateTargetGroup: "If you attempt to
        // create multiple target groups with the same settings, each call succeeds"). Names are
        // per cluster and NLB (see `registry`), so such a group is this agent's own, e.g. from a
        // pass killed before its listener. Other settings under that name (a 0.1 group with a
        // numeric health check port, or someone else's) answer DuplicateTargetGroupName: that
        // group is used only if it carries our tags and forwards for no other load balancer.
        // (A group attached elsewhere can never be used anyway: CreateListener then answers
        // TargetGroupAssociationLimit, see `create_listener`.)
        //
        // The idempotent path is checked the same way when the answer shows the group already
        // forwarding for a load balancer: then it certainly existed before this call and may be
        // someone else's. A group that forwards for nothing is either new (its tags are ours by
        // construction) or left by a pass of this broker killed before its listener; reading its
        // tags every time would cost every booting broker one more call of the account's budget
        // (and right after a create the tags may not be visible yet: ELBv2 is eventually
        // consistent), for a group no traffic uses.
        let info = match created {
            Some(info) if info.load_balancer_arns.is_empty() => return Ok(info.arn),
            Some(info) => info,
            None => self.describe_target_group_by_name(&spec.name).await?,
        };
        self.verify_tags(&info.arn, spec).await?;
        if let Some(other) = info
            .load_balancer_arns
            .iter()
            .find(|lb| **lb != spec.load_balancer_arn)
        {
            return Err(NlbError {
                operation: "CreateTargetGroup",
                resource: info.arn,
                code: "TargetGroupAssociationLimit".into(),
                message: format!(
                    "target group {} already forwards for load balancer {other}; a target group serves one load balancer, so it cannot be used on {}",
                    spec.name, spec.load_balancer_arn
                ),
            });
        }
        Ok(info.arn)
    }

    async fn create_exact_target_group(
        &self,
        spec: &ExactGroupSpec,
    ) -> Result<GroupCreate, NlbError> {
        // ELBv2 API reference, CreateTargetGroup: "This operation is idempotent, which means that
        // it completes at most one time. If you attempt to create multiple target groups with the
        // same settings, each call succeeds." The same name with other settings fails with
        // DuplicateTargetGroupName. So a call succeeds for whoever's settings the group has, and
        // AWS documents no tag update on that path: the caller reads the tags to learn whose it is.
        let created = self
            .create_tcp_group(
                &spec.name,
                &spec.vpc_id,
                spec.port,
                spec.health_check_port.to_string(),
                &spec.tags,
            )
            .await?;
        Ok(created.map_or(GroupCreate::NameTaken, |i| GroupCreate::Created(i.arn)))
    }

    async fn create_listener(
        &self,
        lb_arn: &str,
        port: u16,
        tg_arn: &str,
        tags: &[(String, String)],
    ) -> Result<ListenerClaim, NlbError> {
        let tags = sdk_tags(tags);
        let action = Action::builder()
            .r#type(ActionTypeEnum::Forward)
            .target_group_arn(tg_arn)
            .build();
        // Retried after a lost answer too: CreateListener is idempotent (ELBv2 API reference:
        // "If you attempt to create multiple listeners with the same settings, each call
        // succeeds"), so a repeat of a listener that was made returns it.
        let result = self
            .calls
            .send("CreateListener", || {
                self.client
                    .create_listener()
                    .load_balancer_arn(lb_arn)
                    .protocol(ProtocolEnum::Tcp)
                    .port(i32::from(port))
                    .default_actions(action.clone())
                    .set_tags(Some(tags.clone()))
                    .send()
            })
            .await;
        match result {
            Ok(out) => out
                .listeners()
                .iter()
                .find_map(|l| l.listener_arn().map(str::to_string))
                .map(ListenerClaim::Claimed)
                .ok_or_else(|| {
                    let resource = format!("{lb_arn} port {port}");
                    empty_response("CreateListener", resource, "no listener in the response")
                }),
            Err(e) if e.error.code() == Some("DuplicateListener") => Ok(ListenerClaim::PortTaken),
            Err(e) if e.error.code() == Some("TooManyListeners") => Ok(ListenerClaim::QuotaReached),
            // AWS: a target group forwards for one load balancer only.
            Err(e) if e.error.code() == Some("TargetGroupAssociationLimit") => Err(NlbError {
                operation: "CreateListener",
                resource: format!("{lb_arn} port {port}"),
                code: "TargetGroupAssociationLimit".into(),
                message: format!(
                    "target group {tg_arn} already forwards for another load balancer and cannot be used here; it is not this NLB's (remove or rename it)"
                ),
            }),
            Err(e) => Err(NlbError::from_sdk(
                "CreateListener",
                format!("{lb_arn} port {port}"),
                e,
            )),
        }
    }

    async fn register(&self, tg_arn: &str, targets: &[(String, u16)]) -> Result<(), NlbError> {
        self.calls
            .send("RegisterTargets", || {
                self.client
                    .register_targets()
                    .target_group_arn(tg_arn)
                    .set_targets(Some(descriptions(targets)))
                    .send()
            })
            .await
            .map_err(|e| {
                NlbError::from_sdk(
                    "RegisterTargets",
                    format!("{tg_arn} ({})", target_list(targets)),
                    e,
                )
            })?;
        Ok(())
    }

    async fn deregister(&self, tg_arn: &str, targets: &[(String, u16)]) -> Result<(), NlbError> {
        let result = self
            .calls
            .send("DeregisterTargets", || {
                self.client
                    .deregister_targets()
                    .target_group_arn(tg_arn)
                    .set_targets(Some(descriptions(targets)))
                    .send()
            })
            .await;
        match result {
            Ok(_) => Ok(()),
            // Already gone (another pass or an operator got there first): the goal holds.
            Err(e) if e.error.code() == Some("InvalidTarget") => Ok(()),
            Err(e) => Err(NlbError::from_sdk(
                "DeregisterTargets",
                format!("{tg_arn} ({})", target_list(targets)),
                e,
            )),
        }
    }

    async fn tags(&self, arn: &str) -> Result<Option<BTreeMap<String, String>>, NlbError> {
        match self
            .calls
            .send("DescribeTags", || {
                self.client.describe_tags().resource_arns(arn).send()
            })
            .await
        {
            Ok(out) => Ok(Some(
                out.tag_descriptions()
                    .iter()
                    .flat_map(|d| d.tags())
                    .filter_map(|t| {
                        Some((
                            t.key()?.to_string(),
                            t.value().unwrap_or_default().to_string(),
                        ))
                    })
                    .collect(),
            )),
            Err(e)
                if matches!(
                    e.error.code(),
                    Some("ListenerNotFound" | "TargetGroupNotFound")
                ) =>
            {
                Ok(None)
            }
            Err(e) => Err(NlbError::from_sdk("DescribeTags", arn, e)),
        }
    }

    async fn add_tags(&self, arn: &str, tags: &[(String, String)]) -> Result<(), NlbError> {
        let tags = sdk_tags(tags);
        self.calls
            .send("AddTags", || {
                self.client
                    .add_tags()
                    .resource_arns(arn)
                    .set_tags(Some(tags.clone()))
                    .send()
            })
            .await
            .map_err(|e| NlbError::from_sdk("AddTags", arn, e))?;
        Ok(())
    }

    async fn remove_tags(&self, arn: &str, keys: &[String]) -> Result<(), NlbError> {
        self.calls
            .send("RemoveTags", || {
                self.client
                    .remove_tags()
                    .resource_arns(arn)
                    .set_tag_keys(Some(keys.to_vec()))
                    .send()
            })
            .await
            .map_err(|e| NlbError::from_sdk("RemoveTags", arn, e))?;
        Ok(())
    }

    async fn find_target_group(&self, name: &str) -> Result<Option<String>, NlbError> {
        match self.describe_target_group_by_name(name).await {
            Ok(info) => Ok(Some(info.arn)),
            Err(e) if e.code == "TargetGroupNotFound" => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn delete_listener(&self, arn: &str) -> Result<(), NlbError> {
        match self
            .calls
            .send("DeleteListener", || {
                self.client.delete_listener().listener_arn(arn).send()
            })
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.error.code() == Some("ListenerNotFound") => Ok(()),
            Err(e) => Err(NlbError::from_sdk("DeleteListener", arn, e)),
        }
    }

    async fn availability_zones(
        &self,
        lb_arns: &[String],
    ) -> Result<BTreeMap<String, Vec<String>>, NlbError> {
        let out = self
            .calls
            .send("DescribeLoadBalancers", || {
                self.client
                    .describe_load_balancers()
                    .set_load_balancer_arns(Some(lb_arns.to_vec()))
                    .send()
            })
            .await
            .map_err(|e| NlbError::from_sdk("DescribeLoadBalancers", lb_arns.join(","), e))?;
        Ok(out
            .load_balancers()
            .iter()
            .filter_map(|lb| {
                let zones = lb
                    .availability_zones()
                    .iter()
                    .filter_map(|az| az.zone_name().map(str::to_string))
                    .collect();
                Some((lb.load_balancer_arn()?.to_string(), zones))
            })
            .collect())
    }

    async fn target_group_info(&self, arns: &[String]) -> Result<Vec<TargetGroupInfo>, NlbError> {
        let out = self
            .calls
            .send("DescribeTargetGroups", || {
                self.client
                    .describe_target_groups()
                    .set_target_group_arns(Some(arns.to_vec()))
                    .send()
            })
            .await
            .map_err(|e| NlbError::from_sdk("DescribeTargetGroups", arns.join(","), e))?;
        Ok(out.target_groups().iter().filter_map(group_info).collect())
    }

    async fn listener_idle_timeout(&self, arn: &str) -> Result<Option<u32>, NlbError> {
        let out = self
            .calls
            .send("DescribeListenerAttributes", || {
                self.client
                    .describe_listener_attributes()
                    .listener_arn(arn)
                    .send()
            })
            .await
            .map_err(|e| NlbError::from_sdk("DescribeListenerAttributes", arn, e))?;
        Ok(out
            .attributes()
            .iter()
            .find(|a| a.key() == Some(IDLE_TIMEOUT_ATTRIBUTE))
            .and_then(|a| a.value())
            .and_then(|v| v.parse().ok()))
    }

    async fn set_listener_idle_timeout(&self, arn: &str, seconds: u32) -> Result<(), NlbError> {
        let attribute = aws_sdk_elasticloadbalancingv2::types::ListenerAttribute::builder()
            .key(IDLE_TIMEOUT_ATTRIBUTE)
            .value(seconds.to_string())
            .build();
        self.calls
            .send("ModifyListenerAttributes", || {
                self.client
                    .modify_listener_attributes()
                    .listener_arn(arn)
                    .attributes(attribute.clone())
                    .send()
            })
            .await
            .map_err(|e| NlbError::from_sdk("ModifyListenerAttributes", arn, e))?;
        Ok(())
    }

    async fn health_check_traffic_port(&self, arn: &str) -> Result<(), NlbError> {
        self.calls
            .send("ModifyTargetGroup", || {
                self.client
                    .modify_target_group()
                    .target_group_arn(arn)
                    .health_check_port(TRAFFIC_PORT)
                    .send()
            })
            .await
            .map_err(|e| NlbError::from_sdk("ModifyTargetGroup", arn, e))?;
        Ok(())
    }

    async fn delete_target_group(&self, arn: &str) -> Result<(), NlbError> {
        match self
            .calls
            .send("DeleteTargetGroup", || {
                self.client
                    .delete_target_group()
                    .target_group_arn(arn)
                    .send()
            })
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.error.code() == Some("TargetGroupNotFound") => Ok(()),
            Err(e) => Err(NlbError::from_sdk("DeleteTargetGroup", arn, e)),
        }
    }
}
