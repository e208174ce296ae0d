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

/// Substitutes `{placeholder}`s; an unknown or unterminated placeholder is an error.
pub fn render_host(template: &str, values: &HostValues<'_>) -> Result<String, String> {
    let mut out = String::with_capacity(template.len() + 16);
    let mut rest = template;
    while let Some(open) = rest.find(['{', '}']) {
        out.push_str(&rest[..open]);
        if rest.as_bytes()[open] == b'}' {
            return Err(format!("unmatched '}}' in {template:?}"));
        }
        let after = &rest[open + 1..];
        let close = after
            .find('}')
            .ok_or_else(|| format!("unterminated placeholder in {template:?}"))?;
        let name = &after[..close];
        match name {
            "az_id" => out.push_str(values.az_id),
            "az" => out.push_str(values.az),
            "region" => out.push_str(values.region),
            "broker_id" => out.push_str(&values.broker_id.to_string()),
            "instance_id" => out.push_str(values.instance_id),
            "cluster" => out.push_str(values.cluster),
            "shard" => out.push_str(&values.shard.to_string()),
            other => {
                return Err(format!(
                    "unknown placeholder {{{other}}} in {template:?} (known: {})",
                    PLACEHOLDERS
                        .iter()
                        .map(|p| format!("{{{p}}}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            }
        }
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    Ok(out)
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
            render_host(
                "{cluster}-{broker_id}.{az_id}.{az}.{region}.{instance_id}.s{shard}",
                &values
            )
            .unwrap(),
            "orders-7.use1-az1.us-east-1b.us-east-1.i-1.s2"
        );
        assert!(render_host("a}b", &values).is_err());
    }
}
