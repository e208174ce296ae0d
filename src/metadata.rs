//! Instance discovery from EC2 instance metadata (IMDSv2 only).
//!
//! The [`InstanceMetadata`] trait is the seam: production uses [`Imds`], a thin adapter over
//! aws-config's IMDS client (which always fetches a session token first and never falls back to
//! IMDSv1); tests substitute tables. [`discover`] retries transport failures within a deadline so a
//! host whose metadata service is briefly unavailable at boot still converges, then fails with an
//! error that names instance metadata and the endpoint.

use std::future::Future;
use std::time::Duration;

use aws_config::imds::client::error::ImdsError;
use tokio::time::Instant;

/// Largest metadata value accepted; real identity values are tens of bytes.
const MAX_VALUE_LEN: usize = 1024;

/// Failure to read instance metadata.
#[derive(Debug, thiserror::Error)]
pub(crate) enum MetadataError {
    /// The metadata service could not be reached or answered with an error status.
    #[error("instance metadata at {endpoint}: GET {path} failed: {reason}")]
    Fetch {
        /// IMDS endpoint in use.
        endpoint: String,
        /// Metadata path, e.g. `placement/availability-zone-id`.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// A required value is absent (HTTP 404).
    #[error("instance metadata at {endpoint}: {path} is missing")]
    Missing {
        /// IMDS endpoint in use.
        endpoint: String,
        /// Metadata path.
        path: String,
    },
    /// A value is present but unusable.
    #[error("instance metadata at {endpoint}: {path} has an invalid value: {reason}")]
    Invalid {
        /// IMDS endpoint in use.
        endpoint: String,
        /// Metadata path.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Retries ran out.
    #[error("{last} (gave up after {attempts} attempts in {elapsed:?})")]
    GaveUp {
        /// The last error seen.
        last: Box<MetadataError>,
        /// Attempts made.
        attempts: u32,
        /// Time spent.
        elapsed: Duration,
    },
}

impl MetadataError {
    fn is_transient(&self) -> bool {
        matches!(self, MetadataError::Fetch { .. })
    }
}

/// Read access to instance metadata paths below `/latest/meta-data/`.
pub(crate) trait InstanceMetadata: Send + Sync {
    /// The value at `path`, `None` when the service answers 404.
    fn get(&self, path: &str)
        -> impl Future<Output = Result<Option<String>, MetadataError>> + Send;
    /// The endpoint, for error messages.
    fn endpoint(&self) -> String;
}

/// Who and where this host is.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub(crate) struct Identity {
    /// EC2 instance id.
    pub instance_id: String,
    /// Region, e.g. `us-east-1`.
    pub region: String,
    /// AZ name (differs per account), e.g. `us-east-1a`.
    pub az: String,
    /// AZ ID (the same in every account), e.g. `use1-az1`.
    pub az_id: String,
    /// Primary private IPv4 address.
    pub private_ip: String,
    /// VPC of the primary interface; the NLB's target groups live there.
    pub vpc_id: String,
}

/// Reads the identity, retrying transient failures until `deadline` has passed.
pub(crate) async fn discover<M: InstanceMetadata>(
    md: &M,
    within: Duration,
) -> Result<Identity, MetadataError> {
    let started = Instant::now();
    let mut attempts = 0;
    let mut backoff = Duration::from_millis(250);
    let mut last: Option<MetadataError> = None;
    loop {
        attempts += 1;
        let remaining = within.saturating_sub(started.elapsed());
        let error = match tokio::time::timeout(remaining, discover_once(md)).await {
            Ok(Ok(identity)) => return Ok(identity),
            Ok(Err(e)) if !e.is_transient() => return Err(e),
            Ok(Err(e)) => e,
            // Cut off by the deadline: the last complete failure says more than the cut.
            Err(_) => last.take().unwrap_or_else(|| MetadataError::Fetch {
                endpoint: md.endpoint(),
                path: "(identity)".to_string(),
                reason: format!("no complete answer within {within:?}"),
            }),
        };
        if started.elapsed() + backoff >= within {
            return Err(MetadataError::GaveUp {
                last: Box::new(error),
                attempts,
                elapsed: started.elapsed(),
            });
        }
        tracing::warn!(error = %error, attempt = attempts, "instance metadata unavailable; retrying");
        last = Some(error);
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

async fn discover_once<M: InstanceMetadata>(md: &M) -> Result<Identity, MetadataError> {
    let instance_id = required(md, "instance-id", |v| {
        v.starts_with("i-") && v[2..].chars().all(|c| c.is_ascii_hexdigit())
    })
    .await?;
    let region = match std::env::var("AWS_REGION").ok().filter(|r| !r.is_empty()) {
        Some(region) => region,
        None => required(md, "placement/region", is_slug).await?,
    };
    let az = required(md, "placement/availability-zone", is_slug).await?;
    let az_id = required(md, "placement/availability-zone-id", is_slug).await?;
    let private_ip = required(md, "local-ipv4", |v| {
        v.parse::<std::net::Ipv4Addr>().is_ok()
    })
    .await?;
    let mac = required(md, "mac", |v| {
        v.chars().all(|c| c.is_ascii_hexdigit() || c == ':')
    })
    .await?;
    let vpc_id = required(md, &format!("network/interfaces/macs/{mac}/vpc-id"), |v| {
        v.starts_with("vpc-") && is_slug(v)
    })
    .await?;
    Ok(Identity {
        instance_id,
        region,
        az,
        az_id,
        private_ip,
        vpc_id,
    })
}

fn is_slug(v: &str) -> bool {
    !v.is_empty() && v.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

async fn required<M: InstanceMetadata>(
    md: &M,
    path: &str,
    valid: impl Fn(&str) -> bool,
) -> Result<String, MetadataError> {
    let value = md.get(path).await?.ok_or_else(|| MetadataError::Missing {
        endpoint: md.endpoint(),
        path: path.to_string(),
    })?;
    let value = value.trim().to_string();
    if !valid(&value) {
        return Err(MetadataError::Invalid {
            endpoint: md.endpoint(),
            path: path.to_string(),
            reason: format!("{:?}", truncate(&value, 64)),
        });
    }
    Ok(value)
}

/// Where an instance tag was looked up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TagLookup {
    /// The tag's value from instance metadata.
    Found(String),
    /// Tags are exposed in metadata and this key is not among them.
    Absent,
    /// Instance metadata does not expose tags; ask EC2 instead.
    NotExposed,
}

/// Reads instance tag `key` from `tags/instance/<key>`, telling "absent" from "tags not exposed".
pub(crate) async fn instance_tag<M: InstanceMetadata>(
    md: &M,
    key: &str,
) -> Result<TagLookup, MetadataError> {
    let encoded: String = key
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b':' => {
                (b as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect();
    if let Some(value) = md.get(&format!("tags/instance/{encoded}")).await? {
        return Ok(TagLookup::Found(value));
    }
    // A 404 on the key is ambiguous: the listing answers 404 only when tags are not exposed at all.
    Ok(match md.get("tags/instance").await? {
        Some(_) => TagLookup::Absent,
        None => TagLookup::NotExposed,
    })
}

/// One short line for an IMDS client error: the HTTP status when there was one, else the
/// innermost cause (the SDK's own Display nests debug dumps of whole responses).
fn describe(e: &ImdsError) -> String {
    use aws_config::imds::client::error::TokenError;
    use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
    use aws_smithy_runtime_api::client::result::SdkError;
    let innermost = || {
        let mut cause: &dyn std::error::Error = e;
        while let Some(next) = cause.source() {
            cause = next;
        }
        truncate(&cause.to_string().replace(['\n', '\r'], " "), 160)
    };
    match e {
        ImdsError::ErrorResponse(r) => format!("HTTP {}", r.response().status().as_u16()),
        ImdsError::FailedToLoadToken(t) => {
            let status = std::error::Error::source(e)
                .and_then(|s| s.downcast_ref::<SdkError<TokenError, HttpResponse>>())
                .and_then(|s| s.raw_response())
                .map(|r| r.status().as_u16());
            match status {
                Some(code) if !(200..300).contains(&code) => {
                    format!("IMDSv2 token request answered HTTP {code}")
                }
                _ if t.is_dispatch_failure() => format!("cannot connect: {}", innermost()),
                _ => format!("IMDSv2 token request failed: {}", innermost()),
            }
        }
        ImdsError::IoError(_) => format!("cannot connect: {}", innermost()),
        _ => innermost(),
    }
}

fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

/// IMDSv2 through aws-config's client; honours `AWS_EC2_METADATA_SERVICE_ENDPOINT`.
#[derive(Debug, Clone)]
pub(crate) struct Imds {
    client: aws_config::imds::Client,
    endpoint: String,
}

impl Imds {
    /// A client with short per-attempt timeouts; [`discover`] adds the outer deadline.
    pub(crate) fn new() -> Self {
        let client = aws_config::imds::Client::builder()
            .max_attempts(2)
            .connect_timeout(Duration::from_secs(1))
            .read_timeout(Duration::from_secs(2))
            .operation_timeout(Duration::from_secs(5))
            .build();
        let endpoint = std::env::var("AWS_EC2_METADATA_SERVICE_ENDPOINT")
            .ok()
            .filter(|e| !e.is_empty())
            .unwrap_or_else(|| "http://169.254.169.254".to_string());
        Imds { client, endpoint }
    }
}

impl Default for Imds {
    fn default() -> Self {
        Self::new()
    }
}

impl InstanceMetadata for Imds {
    async fn get(&self, path: &str) -> Result<Option<String>, MetadataError> {
        let fail = |reason: String| MetadataError::Fetch {
            endpoint: self.endpoint.clone(),
            path: path.to_string(),
            reason,
        };
        match self.client.get(format!("/latest/meta-data/{path}")).await {
            Ok(value) => {
                let value: &str = value.as_ref();
                if value.len() > MAX_VALUE_LEN {
                    return Err(MetadataError::Invalid {
                        endpoint: self.endpoint.clone(),
                        path: path.to_string(),
                        reason: format!("{} bytes (limit {MAX_VALUE_LEN})", value.len()),
                    });
                }
                Ok(Some(value.to_string()))
            }
            Err(ImdsError::ErrorResponse(response))
                if response.response().status().as_u16() == 404 =>
            {
                Ok(None)
            }
            Err(e) => Err(fail(describe(&e))),
        }
    }

    fn endpoint(&self) -> String {
        self.endpoint.clone()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// Table-driven metadata: path → value; `fail_first` transient failures before answering.
    pub(crate) struct TableMetadata {
        pub values: HashMap<String, String>,
        pub fail_first: u32,
        pub calls: AtomicU32,
    }

    impl TableMetadata {
        pub(crate) fn host() -> Self {
            let values = [
                ("instance-id", "i-0abc"),
                ("placement/region", "us-east-1"),
                ("placement/availability-zone", "us-east-1b"),
                ("placement/availability-zone-id", "use1-az1"),
                ("local-ipv4", "10.0.1.10"),
                ("mac", "0e:00:00:00:00:01"),
                (
                    "network/interfaces/macs/0e:00:00:00:00:01/vpc-id",
                    "vpc-1234",
                ),
                ("tags/instance", "Name\nkafka:broker-id"),
                ("tags/instance/kafka:broker-id", "3"),
            ];
            TableMetadata {
                values: values
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                fail_first: 0,
                calls: AtomicU32::new(0),
            }
        }
    }

    impl InstanceMetadata for TableMetadata {
        async fn get(&self, path: &str) -> Result<Option<String>, MetadataError> {
            if self.calls.fetch_add(1, Ordering::SeqCst) < self.fail_first {
                return Err(MetadataError::Fetch {
                    endpoint: self.endpoint(),
                    path: path.into(),
                    reason: "connection refused".into(),
                });
            }
            Ok(self.values.get(path).cloned())
        }
        fn endpoint(&self) -> String {
            "http://table".into()
        }
    }

    #[tokio::test]
    async fn discovers_identity() {
        let id = discover(&TableMetadata::host(), Duration::from_secs(1))
            .await
            .unwrap();
        assert_eq!(id.instance_id, "i-0abc");
        assert_eq!(id.az_id, "use1-az1");
        assert_eq!(id.vpc_id, "vpc-1234");
    }

    #[tokio::test(start_paused = true)]
    async fn retries_transient_failures_then_gives_up_naming_the_endpoint() {
        let mut md = TableMetadata::host();
        md.fail_first = 2;
        assert!(discover(&md, Duration::from_secs(30)).await.is_ok());
        let mut md = TableMetadata::host();
        md.fail_first = u32::MAX;
        let err = discover(&md, Duration::from_secs(30))
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("instance metadata at http://table"), "{err}");
        assert!(err.contains("gave up"), "{err}");
    }

    #[tokio::test]
    async fn rejects_invalid_values_without_retrying() {
        let mut md = TableMetadata::host();
        md.values.insert(
            "placement/availability-zone-id".into(),
            "use1 az1; rm".into(),
        );
        let err = discover(&md, Duration::from_secs(30)).await.unwrap_err();
        assert!(matches!(err, MetadataError::Invalid { .. }), "{err}");
    }

    #[tokio::test]
    async fn tells_absent_tag_from_unexposed_tags() {
        let md = TableMetadata::host();
        assert_eq!(
            instance_tag(&md, "kafka:broker-id").await.unwrap(),
            TagLookup::Found("3".into())
        );
        assert_eq!(instance_tag(&md, "other").await.unwrap(), TagLookup::Absent);
        let mut md = TableMetadata::host();
        md.values.retain(|k, _| !k.starts_with("tags/"));
        assert_eq!(
            instance_tag(&md, "kafka:broker-id").await.unwrap(),
            TagLookup::NotExposed
        );
    }
}
