//! Value types parsed from one string of `agent.toml`: `nlb.port_range` ([`PortRange`]),
//! `listener.security_protocol` ([`SecurityProtocol`]) and `nlb.idle_timeout` ([`IdleTimeout`]).

use std::fmt;
use std::ops::RangeInclusive;
use std::str::FromStr;

use serde::{Deserialize, Deserializer};

/// `nlb.port_range`: an inclusive, non-empty range of ports `1..=65535`, written `"FIRST-LAST"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct PortRange {
    start: u16,
    end: u16,
}

impl PortRange {
    /// The ports, first to last.
    pub fn range(&self) -> RangeInclusive<u16> {
        self.start..=self.end
    }

    /// Whether `port` lies in the range.
    pub fn contains(&self, port: u16) -> bool {
        self.range().contains(&port)
    }

    /// How many ports the range holds (at least 1).
    pub fn len(&self) -> usize {
        usize::from(self.end - self.start) + 1
    }

    /// Always false: a range holds at least one port.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// First port.
    pub fn start(&self) -> u16 {
        self.start
    }

    /// Last port.
    pub fn end(&self) -> u16 {
        self.end
    }
}

/// `nlb.port_range` when the file has none.
pub(super) fn default_port_range() -> PortRange {
    PortRange {
        start: 10001,
        end: 10049,
    }
}

impl FromStr for PortRange {
    type Err = String;

    /// Parses `"FIRST-LAST"` (blanks around each port allowed).
    fn from_str(text: &str) -> Result<Self, String> {
        let (first, last) = text
            .split_once('-')
            .ok_or_else(|| format!("{text:?} is not of the form FIRST-LAST"))?;
        let parse = |s: &str| -> Result<u16, String> {
            match s.trim().parse::<u16>() {
                Ok(0) | Err(_) => Err(format!("{s:?} in {text:?} is not a port (1-65535)")),
                Ok(p) => Ok(p),
            }
        };
        let (start, end) = (parse(first)?, parse(last)?);
        if start > end {
            return Err(format!("{text:?} is empty (first port above last)"));
        }
        Ok(PortRange { start, end })
    }
}

impl TryFrom<String> for PortRange {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        text.parse()
    }
}

impl fmt::Display for PortRange {
    /// `FIRST-LAST`, e.g. `10001-10049`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.start, self.end)
    }
}

/// `listener.security_protocol`: Kafka's name for the listener's protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(try_from = "String")]
pub enum SecurityProtocol {
    /// `PLAINTEXT`
    Plaintext,
    /// `SSL` (the default)
    #[default]
    Ssl,
    /// `SASL_PLAINTEXT`
    SaslPlaintext,
    /// `SASL_SSL`
    SaslSsl,
}

impl SecurityProtocol {
    /// Every protocol, in the order error messages list them.
    pub const ALL: [SecurityProtocol; 4] = [
        SecurityProtocol::Plaintext,
        SecurityProtocol::Ssl,
        SecurityProtocol::SaslPlaintext,
        SecurityProtocol::SaslSsl,
    ];

    /// The name Kafka and the config file use, e.g. `SASL_SSL`.
    pub fn as_str(&self) -> &'static str {
        match self {
            SecurityProtocol::Plaintext => "PLAINTEXT",
            SecurityProtocol::Ssl => "SSL",
            SecurityProtocol::SaslPlaintext => "SASL_PLAINTEXT",
            SecurityProtocol::SaslSsl => "SASL_SSL",
        }
    }
}

impl FromStr for SecurityProtocol {
    type Err = String;

    /// Exactly one of the names [`SecurityProtocol::as_str`] gives (case matters, as in Kafka).
    fn from_str(text: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|p| p.as_str() == text)
            .ok_or_else(|| {
                let names: Vec<&str> = Self::ALL.iter().map(|p| p.as_str()).collect();
                format!("{text:?} is not one of {}", names.join(", "))
            })
    }
}

impl TryFrom<String> for SecurityProtocol {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        text.parse()
    }
}

impl fmt::Display for SecurityProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Parses `"FIRST-LAST"` into an inclusive, non-empty port range (see [`PortRange`]).
pub fn parse_port_range(text: &str) -> Result<RangeInclusive<u16>, String> {
    text.parse::<PortRange>().map(|range| range.range())
}

/// An NLB listener's idle timeout range (ListenerAttribute API reference: "The valid range is 60-6000 seconds").
pub const IDLE_MIN_SECONDS: u32 = 60;
/// See [`IDLE_MIN_SECONDS`].
pub const IDLE_MAX_SECONDS: u32 = 6000;
/// `nlb.idle_timeout` (what it does: [`crate::idle`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IdleTimeout {
    /// The broker's `connections.max.idle.ms` plus [`crate::idle::MARGIN`], within AWS's range.
    #[default]
    Auto,
    /// Leave the listeners' idle timeout alone.
    Off,
    /// This many seconds (validated within AWS's range).
    Seconds(u32),
}

impl<'de> Deserialize<'de> for IdleTimeout {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        match text.trim() {
            "auto" => Ok(IdleTimeout::Auto),
            "off" => Ok(IdleTimeout::Off),
            other => {
                let duration = humantime::parse_duration(other).map_err(|e| {
                    serde::de::Error::custom(format!(
                        "{other:?}: \"auto\", \"off\" or a duration like \"15m\" ({e})"
                    ))
                })?;
                let secs = duration.as_secs();
                if duration.subsec_nanos() != 0
                    || !(u64::from(IDLE_MIN_SECONDS)..=u64::from(IDLE_MAX_SECONDS)).contains(&secs)
                {
                    return Err(serde::de::Error::custom(format!(
                        "{other:?}: an NLB listener's idle timeout is whole seconds from {IDLE_MIN_SECONDS} to {IDLE_MAX_SECONDS} (AWS ListenerAttribute tcp.idle_timeout.seconds)"
                    )));
                }
                Ok(IdleTimeout::Seconds(secs as u32))
            }
        }
    }
}

/// As written in the configuration (`"auto"`, `"off"`, `"900s"`).
impl serde::Serialize for IdleTimeout {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl fmt::Display for IdleTimeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IdleTimeout::Auto => f.write_str("auto"),
            IdleTimeout::Off => f.write_str("off"),
            IdleTimeout::Seconds(s) => write!(f, "{s}s"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::test_util::{parse, parse_failure, MINIMAL};

    #[test]
    fn port_range_parses_displays_and_round_trips() {
        let r: PortRange = "10001-10049".parse().unwrap();
        assert_eq!((r.start(), r.end(), r.len()), (10001, 10049, 49));
        assert_eq!(r.range(), 10001..=10049);
        assert!(r.contains(10001) && r.contains(10049));
        assert!(!r.contains(10000) && !r.contains(10050));
        assert_eq!(r.to_string(), "10001-10049");
        assert_eq!(r.to_string().parse::<PortRange>().unwrap(), r);
        let one: PortRange = " 7 - 7 ".parse().unwrap();
        assert_eq!((one.to_string(), one.len()), ("7-7".to_string(), 1));
        assert_eq!(
            "1-65535".parse::<PortRange>().unwrap().len(),
            usize::from(u16::MAX)
        );
        assert_eq!(parse_port_range("10001-10049").unwrap(), 10001..=10049);
    }

    #[test]
    fn port_range_rejects_bad_text_with_todays_messages() {
        let cases = [
            ("10001", "\"10001\" is not of the form FIRST-LAST"),
            ("", "\"\" is not of the form FIRST-LAST"),
            ("0-5", "\"0\" in \"0-5\" is not a port (1-65535)"),
            (
                "1-65536",
                "\"65536\" in \"1-65536\" is not a port (1-65535)",
            ),
            ("-1-5", "\"\" in \"-1-5\" is not a port (1-65535)"),
            ("10001-", "\"\" in \"10001-\" is not a port (1-65535)"),
            ("a-b", "\"a\" in \"a-b\" is not a port (1-65535)"),
            (
                "10049-10001",
                "\"10049-10001\" is empty (first port above last)",
            ),
        ];
        for (text, want) in cases {
            assert_eq!(text.parse::<PortRange>().unwrap_err(), want, "{text:?}");
            assert_eq!(parse_port_range(text).unwrap_err(), want, "{text:?}");
        }
        let config = MINIMAL.replace("[nlb]", "[nlb]\nport_range = \"10049-10001\"");
        let (line, message) = parse_failure(&config);
        assert_eq!(line, 6);
        assert_eq!(
            message,
            "nlb.port_range: \"10049-10001\" is empty (first port above last)"
        );
        let (_, message) = parse_failure(&MINIMAL.replace("[nlb]", "[nlb]\nport_range = 10001"));
        assert!(
            message.starts_with("nlb.port_range: invalid type"),
            "{message}"
        );
    }

    #[test]
    fn security_protocol_accepts_exactly_kafkas_names() {
        for p in SecurityProtocol::ALL {
            assert_eq!(p.as_str().parse::<SecurityProtocol>().unwrap(), p);
            assert_eq!(p.to_string(), p.as_str());
            let config = MINIMAL.replace(
                "[listener]",
                &format!("[listener]\nsecurity_protocol = \"{p}\""),
            );
            assert_eq!(parse(&config).unwrap().listener.security_protocol, p);
        }
        let names: Vec<_> = SecurityProtocol::ALL.map(|p| p.as_str()).into();
        assert_eq!(names, ["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]);
        assert_eq!(SecurityProtocol::default(), SecurityProtocol::Ssl);
        for bad in ["TLS", "ssl", "SSL ", "SASL-SSL", ""] {
            assert_eq!(
                bad.parse::<SecurityProtocol>().unwrap_err(),
                format!("{bad:?} is not one of PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL")
            );
        }
        let config = MINIMAL.replace("[listener]", "[listener]\nsecurity_protocol = \"TLS\"");
        let (line, message) = parse_failure(&config);
        assert_eq!(line, 4);
        assert_eq!(
            message,
            "listener.security_protocol: \"TLS\" is not one of PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL"
        );
    }
}
