//! The pure core of the certificate pre-flight: does the leaf certificate cover the names the
//! agent advertises, and is it valid now? No I/O: the keystore reader ([`super::keystore`])
//! hands over DER, the caller the names and the time.
//!
//! Name matching follows RFC 6125 section 6.4.3 as most TLS clients implement it: only the DNS
//! subject alternative names count (no fallback to the subject CN, which RFC 6125 deprecates
//! and Go clients refuse), compared without regard to ASCII case; a wildcard counts only as the
//! whole left-most label (`*.orders.example.internal`) and stands for exactly one label, so it
//! covers `kafka-use1-az1.orders.example.internal` but neither `orders.example.internal` nor
//! `a.b.orders.example.internal`. A partial wildcard (`kafka-*.example.internal`) is compared
//! literally, as clients that follow the CA/Browser Forum rules do; and a wildcard needs two
//! labels after it (`*.internal` covers nothing), as OpenSSL's `X509_check_host` wants.

use serde::Serialize;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::FromDer;

/// What the pre-flight needs from the leaf certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Leaf {
    /// Its DNS subject alternative names, as written.
    pub dns_names: Vec<String>,
    /// `notBefore`, Unix seconds.
    pub not_before: i64,
    /// `notAfter`, Unix seconds.
    pub not_after: i64,
}

/// How a certificate name covers a host name that may hold `{placeholder}`s (a template such
/// as `kafka-{az_id}.orders.example.internal` before the instance is known).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Coverage {
    /// Every rendering of the name is covered (a concrete name: it is covered).
    All,
    /// Some renderings are (a certificate listing each zonal name, checked against the
    /// template): each host's own name is checked by its pass.
    Some,
    /// None is.
    None,
}

/// The pre-flight's answer for one certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Every host is covered (templates possibly only in part: `partly`) and now is within the
    /// validity period.
    Valid {
        /// Templates covered for some renderings only.
        partly: Vec<String>,
    },
    /// `host` is not covered by any DNS name of the certificate.
    NotCovered {
        /// The first host not covered.
        host: String,
    },
    /// `notAfter` has passed.
    Expired,
    /// `notBefore` has not come yet.
    NotYetValid,
}

/// Parses the leaf (first) certificate of `chain` (DER, leaf first, as keystores hold it).
pub(crate) fn leaf(chain: &[Vec<u8>]) -> Result<Leaf, String> {
    let der = chain.first().ok_or("the keystore holds no certificate")?;
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(der)
        .map_err(|e| format!("its certificate cannot be parsed: {e}"))?;
    let mut dns_names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            if let GeneralName::DNSName(dns) = name {
                dns_names.push((*dns).to_string());
            }
        }
    }
    Ok(Leaf {
        dns_names,
        not_before: cert.validity().not_before.timestamp(),
        not_after: cert.validity().not_after.timestamp(),
    })
}

/// The verdict for `leaf` on `hosts` (concrete names or templates) at `now` (Unix seconds):
/// coverage first (the more useful message), then validity.
pub(crate) fn verdict(leaf: &Leaf, hosts: &[String], now: i64) -> Verdict {
    let mut partly = Vec::new();
    for host in hosts {
        let best = leaf.dns_names.iter().map(|name| coverage(name, host)).fold(
            Coverage::None,
            |best, c| match (best, c) {
                (Coverage::All, _) | (_, Coverage::All) => Coverage::All,
                (Coverage::Some, _) | (_, Coverage::Some) => Coverage::Some,
                _ => Coverage::None,
            },
        );
        match best {
            Coverage::All => {}
            Coverage::Some => partly.push(host.clone()),
            Coverage::None => return Verdict::NotCovered { host: host.clone() },
        }
    }
    if now > leaf.not_after {
        Verdict::Expired
    } else if now < leaf.not_before {
        Verdict::NotYetValid
    } else {
        Verdict::Valid { partly }
    }
}

/// Whether certificate name `name` covers `host`, a concrete name or a template whose
/// `{placeholder}`s stand for one or more letters, digits or hyphens.
pub(crate) fn coverage(name: &str, host: &str) -> Coverage {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let names: Vec<&str> = name.split('.').collect();
    let hosts: Vec<&str> = host.split('.').collect();
    if names.len() != hosts.len() || names.iter().any(|l| l.is_empty()) {
        return Coverage::None;
    }
    if names[0] == "*" && names.len() < 3 {
        // `*` or `*.internal`: OpenSSL (librdkafka's TLS) wants two labels after the wildcard.
        return Coverage::None;
    }
    let mut all = true;
    for (i, (n, h)) in names.iter().zip(&hosts).enumerate() {
        if i == 0 && *n == "*" {
            // One whole label, whatever it renders to.
            continue;
        }
        if n.contains('*') && i == 0 {
            // A partial wildcard: compared literally (never equal to a host label).
            return Coverage::None;
        }
        if !h.contains('{') {
            if n != h {
                return Coverage::None;
            }
        } else if glob(h.as_bytes(), n.as_bytes()) {
            all = false;
        } else {
            return Coverage::None;
        }
    }
    if all {
        Coverage::All
    } else {
        Coverage::Some
    }
}

/// Whether `label` (no dots) is one rendering of `template`, whose `{…}` placeholders each
/// stand for one or more letters, digits or hyphens.
fn glob(template: &[u8], label: &[u8]) -> bool {
    match template.first() {
        None => label.is_empty(),
        Some(b'{') => {
            let Some(close) = template.iter().position(|&c| c == b'}') else {
                return false;
            };
            let rest = &template[close + 1..];
            (1..=label.len())
                .take_while(|&n| label[n - 1].is_ascii_alphanumeric() || label[n - 1] == b'-')
                .any(|n| glob(rest, &label[n..]))
        }
        Some(&c) => label.first() == Some(&c) && glob(&template[1..], &label[1..]),
    }
}

/// Whole days from `now` to `not_after` (negative once expired).
pub(crate) fn days_left(leaf: &Leaf, now: i64) -> i64 {
    (leaf.not_after - now).div_euclid(86_400)
}
