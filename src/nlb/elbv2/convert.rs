//! The conversions between the AWS SDK's ELBv2 types and those of the seam ([`crate::nlb`]): an
//! SDK failure as an [`NlbError`], a described target group as a [`TargetGroupInfo`], our tags
//! and targets as the SDK's request types.
//!
//! Separate from the calls in `elbv2.rs`: these helpers know the SDK's types but make no
//! request, so that file keeps to the calls.

use aws_sdk_elasticloadbalancingv2 as elbv2;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use elbv2::error::ProvideErrorMetadata;
use elbv2::types::{Tag, TargetDescription};

use crate::backoff::Attempted;
use crate::nlb::{NlbError, TargetGroupInfo};

impl NlbError {
    pub(super) fn from_sdk<E>(
        operation: &'static str,
        resource: impl Into<String>,
        attempted: Attempted<elbv2::error::SdkError<E, HttpResponse>>,
    ) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        let code = attempted.code().to_string();
        let message = attempted.message();
        NlbError {
            operation,
            resource: resource.into(),
            code,
            message,
        }
    }
}

pub(super) fn group_info(tg: &elbv2::types::TargetGroup) -> Option<TargetGroupInfo> {
    Some(TargetGroupInfo {
        arn: tg.target_group_arn()?.to_string(),
        load_balancer_arns: tg.load_balancer_arns().to_vec(),
        health_check_port: tg.health_check_port().unwrap_or_default().to_string(),
    })
}

/// Our `(key, value)` tags as the SDK's.
pub(super) fn sdk_tags(tags: &[(String, String)]) -> Vec<Tag> {
    tags.iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect()
}

/// A success answer without what it must contain.
pub(super) fn empty_response(
    operation: &'static str,
    resource: impl Into<String>,
    what: &str,
) -> NlbError {
    NlbError {
        operation,
        resource: resource.into(),
        code: "EmptyResponse".into(),
        message: what.to_string(),
    }
}

pub(super) fn descriptions(targets: &[(String, u16)]) -> Vec<TargetDescription> {
    targets
        .iter()
        .map(|(id, port)| {
            TargetDescription::builder()
                .id(id)
                .port(i32::from(*port))
                .build()
        })
        .collect()
}
