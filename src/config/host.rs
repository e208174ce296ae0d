//! `listener.advertised_host` and `broker.rack` templates: their placeholders, how they render,
//! and what a host name may be.

/// Placeholders accepted in `listener.advertised_host`.
pub const PLACEHOLDERS: &[&str] = &[
    "az_id",
    "az",
    "region",
    "broker_id",
    "instance_id",
    "cluster",
    "shard",
];

/// Values substituted into `listener.advertised_host`.
#[derive(Debug, Clone)]
pub struct HostValues<'a> {
    /// `{az_id}`, e.g. `use1-az1`.
    pub az_id: &'a str,
    /// `{az}`, e.g. `us-east-1a`.
    pub az: &'a str,
    /// `{region}`.
    pub region: &'a str,
    /// `{broker_id}`.
    pub broker_id: i32,
    /// `{instance_id}`.
    pub instance_id: &'a str,
    /// `{cluster}`.
    pub cluster: &'a str,
    /// `{shard}`: index of the NLB holding the broker's claim in `nlb.load_balancer_arns`.
    pub shard: usize,
}

/// One `{placeholder}` of a template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placeholder {
    /// `{az_id}`
    AzId,
    /// `{az}`
    Az,
    /// `{region}`
    Region,
    /// `{broker_id}`
    BrokerId,
    /// `{instance_id}`
    InstanceId,
    /// `{cluster}`
    Cluster,
    /// `{shard}`
    Shard,
}

impl Placeholder {
    fn named(name: &str) -> Option<Placeholder> {
        Some(match name {
            "az_id" => Placeholder::AzId,
            "az" => Placeholder::Az,
            "region" => Placeholder::Region,
            "broker_id" => Placeholder::BrokerId,
            "instance_id" => Placeholder::InstanceId,
            "cluster" => Placeholder::Cluster,
            "shard" => Placeholder::Shard,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Value(Placeholder),
}

/// A host (or `broker.rack`) template, parsed when the configuration is loaded: rendering it
/// cannot fail, and an unknown or unterminated placeholder is refused at load with the line.
#[derive(Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(try_from = "String")]
pub struct HostTemplate {
    text: String,
    parts: Vec<Part>,
}

impl HostTemplate {
    /// Parses `template`; an unknown or unterminated placeholder, or a stray `}`, is an error.
    pub fn parse(template: &str) -> Result<HostTemplate, String> {
        let mut parts = Vec::new();
        let mut rest = template;
        while let Some(open) = rest.find(['{', '}']) {
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_string()));
            }
            if rest.as_bytes()[open] == b'}' {
                return Err(format!("unmatched '}}' in {template:?}"));
            }
            let after = &rest[open + 1..];
            let close = after
                .find('}')
                .ok_or_else(|| format!("unterminated placeholder in {template:?}"))?;
            let name = &after[..close];
            let placeholder = Placeholder::named(name).ok_or_else(|| {
                format!(
                    "unknown placeholder {{{name}}} in {template:?} (known: {})",
                    PLACEHOLDERS
                        .iter()
                        .map(|p| format!("{{{p}}}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })?;
            parts.push(Part::Value(placeholder));
            rest = &after[close + 1..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_string()));
        }
        Ok(HostTemplate {
            text: template.to_string(),
            parts,
        })
    }

    /// The template with `values` substituted.
    pub fn render(&self, values: &HostValues<'_>) -> String {
        let mut out = String::with_capacity(self.text.len() + 16);
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Value(Placeholder::AzId) => out.push_str(values.az_id),
                Part::Value(Placeholder::Az) => out.push_str(values.az),
                Part::Value(Placeholder::Region) => out.push_str(values.region),
                Part::Value(Placeholder::BrokerId) => out.push_str(&values.broker_id.to_string()),
                Part::Value(Placeholder::InstanceId) => out.push_str(values.instance_id),
                Part::Value(Placeholder::Cluster) => out.push_str(values.cluster),
                Part::Value(Placeholder::Shard) => out.push_str(&values.shard.to_string()),
            }
        }
        out
    }

    /// Whether the template uses `placeholder`.
    pub fn uses(&self, placeholder: Placeholder) -> bool {
        self.parts.contains(&Part::Value(placeholder))
    }

    /// The template as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl TryFrom<String> for HostTemplate {
    type Error = String;
    fn try_from(text: String) -> Result<HostTemplate, String> {
        HostTemplate::parse(&text)
    }
}

/// Shown as the text it was written as (messages quote templates with `{:?}`).
impl std::fmt::Debug for HostTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.text)
    }
}

impl std::fmt::Display for HostTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// RFC 1123 host name check (letters, digits, hyphens, dots; labels 1-63; total ≤ 253).
pub fn is_hostname(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_placeholder() {
        let values = HostValues {
            az_id: "use1-az1",
            az: "us-east-1b",
            region: "us-east-1",
            broker_id: 7,
            instance_id: "i-1",
            cluster: "orders",
            shard: 2,
        };
        assert_eq!(
            HostTemplate::parse(
                "{cluster}-{broker_id}.{az_id}.{az}.{region}.{instance_id}.s{shard}"
            )
            .unwrap()
            .render(&values),
            "orders-7.use1-az1.us-east-1b.us-east-1.i-1.s2"
        );
        assert!(HostTemplate::parse("a}b").is_err());
        assert!(HostTemplate::parse("a{b").is_err());
        assert!(HostTemplate::parse("a{zone}").is_err());
        let t = HostTemplate::parse("{broker_id}").unwrap();
        assert_eq!(t.render(&values), "7");
        assert!(t.uses(Placeholder::BrokerId) && !t.uses(Placeholder::Shard));
        assert_eq!(t.to_string(), "{broker_id}");
        assert_eq!(HostTemplate::parse("").unwrap().render(&values), "");
    }
}
