//! Broker id resolution: which Kafka broker this host is.
//!
//! Sources, in order of precedence: `broker.id` in the agent config, the instance tag
//! (`broker.id_tag`), `broker.id`/`node.id` in `server.properties`, and `meta.properties` in the
//! log directories. The first one found wins, but every source that has a value must agree: a host
//! whose tag says 3 while its disks say 5 is misassembled, and wiring it would steal broker 3's
//! port. Resolution is a pure function over the collected [`Found`] values.

use std::fmt;

/// Where a broker id value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Source {
    /// `broker.id` in the agent config file.
    Config(String),
    /// An instance tag (through metadata or EC2 DescribeTags).
    InstanceTag {
        /// Tag key.
        key: String,
        /// `instance metadata` or `EC2 DescribeTags`.
        via: &'static str,
    },
    /// A key in a properties file (`server.properties` or a `meta.properties`).
    Properties {
        /// The file.
        path: String,
        /// The key, `broker.id` or `node.id`.
        key: &'static str,
    },
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Config(path) => write!(f, "broker.id in {path}"),
            Source::InstanceTag { key, via } => write!(f, "instance tag {key} ({via})"),
            Source::Properties { path, key } => write!(f, "{key} in {path}"),
        }
    }
}

/// A raw value found in one source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Found {
    /// The value as written (validated by [`resolve`]).
    pub raw: String,
    /// Where it was found.
    pub source: Source,
}

/// Why no single broker id could be determined.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum BrokerIdError {
    /// No source had a value.
    #[error("no broker id found (looked at: {looked_at})")]
    NotFound {
        /// Human list of the sources consulted.
        looked_at: String,
    },
    /// A value is not a non-negative 32-bit integer.
    #[error("{origin} is {raw:?}, which is not a broker id (a non-negative integer)")]
    NotANumber {
        /// Offending value.
        raw: String,
        /// Where it was.
        origin: Source,
    },
    /// Two sources disagree.
    #[error(
        "broker id sources disagree: {first_source} says {first}, {other_source} says {other}"
    )]
    Conflict {
        /// The winning value.
        first: i32,
        /// Its source.
        first_source: Source,
        /// The disagreeing value.
        other: i32,
        /// Its source.
        other_source: Source,
    },
}

/// Picks the broker id from values in precedence order, requiring all of them to agree.
pub(crate) fn resolve(found: &[Found], looked_at: &str) -> Result<(i32, Source), BrokerIdError> {
    let mut winner: Option<(i32, &Source)> = None;
    for f in found {
        let value = f
            .raw
            .trim()
            .parse::<i32>()
            .ok()
            .filter(|v| *v >= 0)
            .ok_or_else(|| BrokerIdError::NotANumber {
                raw: f.raw.chars().take(64).collect(),
                origin: f.source.clone(),
            })?;
        match winner {
            None => winner = Some((value, &f.source)),
            Some((first, first_source)) if first != value => {
                return Err(BrokerIdError::Conflict {
                    first,
                    first_source: first_source.clone(),
                    other: value,
                    other_source: f.source.clone(),
                })
            }
            Some(_) => {}
        }
    }
    winner
        .map(|(v, s)| (v, s.clone()))
        .ok_or_else(|| BrokerIdError::NotFound {
            looked_at: looked_at.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(raw: &str) -> Found {
        Found {
            raw: raw.into(),
            source: Source::InstanceTag {
                key: "kafka:broker-id".into(),
                via: "instance metadata",
            },
        }
    }
    fn props(raw: &str, key: &'static str) -> Found {
        Found {
            raw: raw.into(),
            source: Source::Properties {
                path: "/etc/kafka/server.properties".into(),
                key,
            },
        }
    }
    fn config(raw: &str) -> Found {
        Found {
            raw: raw.into(),
            source: Source::Config("/etc/kplink/agent.toml".into()),
        }
    }

    #[test]
    fn resolution_table() {
        type Case = (Vec<Found>, Result<i32, &'static str>);
        let cases: Vec<Case> = vec![
            (vec![tag("3")], Ok(3)),
            (vec![config("3"), tag("3"), props("3", "node.id")], Ok(3)),
            (vec![props(" 7 ", "broker.id")], Ok(7)),
            (vec![tag("0")], Ok(0)),
            (vec![], Err("no broker id found")),
            (vec![tag("three")], Err("not a broker id")),
            (vec![tag("-1")], Err("not a broker id")),
            (vec![tag("99999999999")], Err("not a broker id")),
            (
                vec![config("3"), tag("4")],
                Err("broker.id in /etc/kplink/agent.toml says 3, instance tag kafka:broker-id (instance metadata) says 4"),
            ),
            (
                vec![tag("3"), props("3", "broker.id"), props("5", "node.id")],
                Err("node.id in /etc/kafka/server.properties says 5"),
            ),
        ];
        for (found, expected) in cases {
            match (resolve(&found, "config, tag"), expected) {
                (Ok((id, _)), Ok(want)) => assert_eq!(id, want, "{found:?}"),
                (Err(e), Err(needle)) => {
                    assert!(e.to_string().contains(needle), "{e} lacks {needle}")
                }
                (got, want) => panic!("{found:?}: got {got:?}, want {want:?}"),
            }
        }
    }
}
