//! Construction of the real AWS adapters.
//!
//! The region comes from instance metadata unless `AWS_REGION` is set, and is passed explicitly so
//! the SDK's own region chain never queries IMDS again (it retries for seconds and then silently
//! leaves the region empty). Endpoints follow the SDK's standard overrides (`AWS_ENDPOINT_URL`,
//! `AWS_ENDPOINT_URL_ELASTIC_LOAD_BALANCING_V2`, `AWS_ENDPOINT_URL_EC2`), credentials the standard chain.

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region};

use crate::ec2::Ec2Tags;
use crate::metadata::Identity;
use crate::nlb::{CallCounter, Elbv2};

/// SDK configuration for `identity`'s region with the agent's retry and timeout policy:
/// standard retries (exponential back-off with full jitter, throttling and 5xx are retryable,
/// bounded by a client-side retry quota so a struggling API is not stormed).
pub(crate) async fn sdk_config(identity: &Identity) -> aws_config::SdkConfig {
    with_policy(aws_config::defaults(BehaviorVersion::latest()))
        .region(Region::new(identity.region.clone()))
        .load()
        .await
}

/// SDK configuration with the Region from the standard chain (`AWS_REGION`, the profile, …),
/// with the same policy: for `consumer-dns`, which runs anywhere with the consumer's credentials.
pub(crate) async fn sdk_config_from_chain() -> aws_config::SdkConfig {
    with_policy(aws_config::defaults(BehaviorVersion::latest()))
        .load()
        .await
}

/// The agent's retry and timeout policy (see [`sdk_config`]).
fn with_policy(loader: aws_config::ConfigLoader) -> aws_config::ConfigLoader {
    loader
        .retry_config(
            RetryConfig::standard()
                .with_max_attempts(5)
                .with_initial_backoff(Duration::from_millis(200))
                .with_max_backoff(Duration::from_secs(5)),
        )
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(3))
                .operation_attempt_timeout(Duration::from_secs(10))
                .operation_timeout(Duration::from_secs(60))
                .build(),
        )
}

/// The ELBv2 and EC2 adapters sharing one call counter. Their SDK clients do not retry: every
/// call goes through [`CallCounter::send`], which retries throttled, 5xx and lost answers until
/// the pass deadline (see [`crate::backoff`] for why the SDK's bounded retry is not enough).
pub(crate) async fn adapters(identity: &Identity, calls: &CallCounter) -> (Elbv2, Ec2Tags) {
    let config = sdk_config(identity).await;
    let elbv2 = aws_sdk_elasticloadbalancingv2::config::Builder::from(&config)
        .retry_config(RetryConfig::disabled())
        .build();
    let ec2 = aws_sdk_ec2::config::Builder::from(&config)
        .retry_config(RetryConfig::disabled())
        .build();
    (
        Elbv2::new(
            aws_sdk_elasticloadbalancingv2::Client::from_conf(elbv2),
            calls.clone(),
        ),
        Ec2Tags::new(aws_sdk_ec2::Client::from_conf(ec2), calls.clone()),
    )
}
