//! The certificate pre-flight (issue 17): before the agent advertises a name on a TLS listener
//! (`SSL` or `SASL_SSL`), the listener's keystore must hold a certificate that covers it and is
//! valid now. A broker certificate that does not cover the zonal name breaks every TLS client
//! after the rolling restart, so a pass refuses before any NLB call or file write.
//!
//! [`check`] is the pure core (leaf certificate, names, now → [`check::Verdict`]);
//! [`keystore`] reads the keystore as Kafka would (JKS through [`jks`], PKCS12, PEM); this
//! module ties them to `server.properties` and words the one-line results.

pub(crate) mod check;
pub(crate) mod jks;
pub(crate) mod keystore;

use serde::Serialize;

use crate::properties::{is_tls, listener_protocol, Properties};
use check::Verdict;
use keystore::{Read, Settings};

/// Days before `notAfter` from which the agent warns.
pub(crate) const WARN_DAYS: i64 = 30;

/// What to check: the managed listener in a `server.properties` text, and its names.
#[derive(Debug, Clone)]
pub(crate) struct Request<'a> {
    /// `server.properties` as read.
    pub properties: &'a Properties,
    /// The managed listener's name (`listener.name`).
    pub listener: &'a str,
    /// Its protocol when the file maps none (`listener.security_protocol`).
    pub default_protocol: &'a str,
    /// The names clients dial: advertised hosts, the bootstrap name; concrete, or templates
    /// with `{placeholder}`s (`check-config`, which does not know the instance).
    pub hosts: Vec<String>,
    /// Unix seconds.
    pub now: i64,
}

/// A certificate that passed: what `check-config`, `plan` and `status` show, and the metric.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Summary {
    /// The keystore file, or `ssl.keystore.certificate.chain`.
    pub keystore: String,
    /// The listener.
    pub listener: String,
    /// The DNS names the certificate has.
    pub names: Vec<String>,
    /// The hosts checked.
    pub hosts: Vec<String>,
    /// Templates only some renderings of which are covered (see [`check::Coverage::Some`]).
    pub partly: Vec<String>,
    /// `notAfter`, Unix seconds.
    pub not_after: i64,
    /// Whole days left.
    pub days_left: i64,
}

/// The pre-flight's result when it does not refuse.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "result")]
pub(crate) enum Outcome {
    /// The listener is not TLS (or has no keystore: `missing_keystore` warns): nothing to check.
    NotTls,
    /// The certificate could not be checked; the warning says why.
    Unchecked {
        /// One line.
        warning: String,
    },
    /// Checked and good.
    Checked(Summary),
}

/// Runs the pre-flight. `Err` is the refusal, one line without the `error: ` prefix: a
/// certificate that does not cover a host or is not valid now, a missing keystore file, a
/// wrong password.
pub(crate) fn preflight(req: &Request<'_>) -> Result<Outcome, String> {
    let protocol = listener_protocol(req.properties, req.listener, req.default_protocol);
    if !is_tls(&protocol) {
        return Ok(Outcome::NotTls);
    }
    let Some(settings) = Settings::of(req.properties, req.listener) else {
        return Ok(Outcome::NotTls);
    };
    let at = format!(
        "certificate check: {} (listener {})",
        settings.source(),
        req.listener
    );
    let chain = match keystore::read(&settings).map_err(|e| format!("{at}: {e}"))? {
        Read::Chain(chain) => chain,
        Read::Unchecked(why) => {
            return Ok(Outcome::Unchecked {
                warning: format!("{at}: cannot check the certificate: {why}"),
            })
        }
    };
    let leaf = check::leaf(&chain).map_err(|e| format!("{at}: {e}"))?;
    let names = if leaf.dns_names.is_empty() {
        "no DNS name (no subject alternative name)".to_string()
    } else {
        leaf.dns_names.join(", ")
    };
    match check::verdict(&leaf, &req.hosts, req.now) {
        Verdict::NotCovered { host } => {
            Err(format!("{at}: does not cover {host}; it names {names}"))
        }
        Verdict::Expired => Err(format!(
            "{at}: expired on {} (notAfter); it names {names}",
            date(leaf.not_after)
        )),
        Verdict::NotYetValid => Err(format!(
            "{at}: not valid before {} (notBefore); it names {names}",
            date(leaf.not_before)
        )),
        Verdict::Valid { partly } => Ok(Outcome::Checked(Summary {
            keystore: settings.source(),
            listener: req.listener.to_string(),
            days_left: check::days_left(&leaf, req.now),
            names: leaf.dns_names,
            hosts: req.hosts.clone(),
            partly,
            not_after: leaf.not_after,
        })),
    }
}

impl Summary {
    /// One line: what is covered, until when.
    pub(crate) fn line(&self) -> String {
        format!(
            "certificate {} (listener {}): names {}; covers {}; expires {} ({} days left)",
            self.keystore,
            self.listener,
            self.names.join(", "),
            self.hosts.join(", "),
            date(self.not_after),
            self.days_left
        )
    }

    /// The warnings this certificate deserves: expiry within [`WARN_DAYS`], templates only
    /// partly covered.
    pub(crate) fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.days_left < WARN_DAYS {
            out.push(format!(
                "certificate {} (listener {}) expires {} ({} days left): renew it before then, or every TLS client fails",
                self.keystore,
                self.listener,
                date(self.not_after),
                self.days_left
            ));
        }
        for host in &self.partly {
            out.push(format!(
                "certificate {} (listener {}) covers only some names {host} renders to ({}); each broker's pass checks its own (a wildcard covers them all)",
                self.keystore,
                self.listener,
                self.names.join(", ")
            ));
        }
        out
    }
}

impl Outcome {
    /// The line `check-config`, `plan` and `status` print, if any.
    pub(crate) fn line(&self) -> Option<String> {
        match self {
            Outcome::NotTls => None,
            Outcome::Unchecked { warning } => Some(warning.clone()),
            Outcome::Checked(s) => Some(s.line()),
        }
    }

    /// The warnings to log: an unchecked certificate, one close to expiry.
    pub(crate) fn warnings(&self) -> Vec<String> {
        match self {
            Outcome::NotTls => Vec::new(),
            Outcome::Unchecked { warning } => vec![warning.clone()],
            Outcome::Checked(s) => s.warnings(),
        }
    }
}

/// `YYYY-MM-DD` (UTC) of Unix seconds `t`.
pub(crate) fn date(t: i64) -> String {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(t.max(0) as u64);
    humantime::format_rfc3339_seconds(at).to_string()[..10].to_string()
}

#[cfg(test)]
mod tests;
