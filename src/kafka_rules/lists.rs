//! Listener lists and the protocol map, read the way Kafka reads them: splitting, the endpoint
//! regex, IP address checks, and the rules of the lists themselves (syntax, duplicate names,
//! duplicate ports, a protocol for every listener name, `early.start.listeners`).

use std::collections::BTreeMap;

use super::{
    before, since, Checker, Facts, Rule, CONTROLLER_LISTENER_NAMES, EARLY_START_LISTENERS,
    EARLY_START_SINCE, KAFKA_4, KIP_797, LISTENERS, PROTOCOLS, PROTOCOL_MAP,
};
use crate::properties::Properties;

/// One parsed entry of `listeners` or `advertised.listeners`.
#[derive(Debug, Clone)]
pub(super) struct Endpoint {
    /// As written (trimmed), for messages.
    pub(super) text: String,
    /// `ListenerName.normalised`: upper-cased.
    pub(super) name: String,
    /// Without brackets; `None` for an empty host (bind all interfaces, advertise the
    /// canonical host name).
    pub(super) host: Option<String>,
    pub(super) port: i64,
}

/// Java's `\s`, which Kafka's `\s*,\s*` split removes around commas.
fn is_java_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\x0b' | '\x0c' | '\r')
}

/// Java's `String.trim()`: every char up to U+0020.
pub(super) fn java_trim(s: &str) -> &str {
    s.trim_matches(|c: char| c <= ' ')
}

/// Items of a list value: Kafka trims the value and splits on `\s*,\s*`. Empty items are kept
/// as `""`: 3.x drops them (`Csv.parseCsvList`), 4.x keeps them (`ConfigDef` `LIST`).
pub(super) fn split_list(value: &str) -> Vec<&str> {
    let value = java_trim(value);
    if value.is_empty() {
        return Vec::new();
    }
    value
        .split(',')
        .map(|s| s.trim_matches(is_java_space))
        .collect()
}

/// `SocketServerConfigs.listenerListToEndPoints` for one entry: `URI_PARSE_REGEXP` must match the
/// whole entry. `(.*)` is greedy, so the name runs to the last `://`. The host chars include `:`,
/// so the port is what follows the last `:`. Brackets are optional and dropped.
fn parse_endpoint(entry: &str) -> Result<Endpoint, String> {
    let unparsable = || format!("Unable to parse {entry} to a broker endpoint");
    let at = entry.rfind("://").ok_or_else(unparsable)?;
    let name = &entry[..at];
    // `.` in a Java regex matches no line terminator.
    if name.contains(['\n', '\r', '\u{85}', '\u{2028}', '\u{2029}']) {
        return Err(unparsable());
    }
    let (host, port) = entry[at + 3..].rsplit_once(':').ok_or_else(unparsable)?;
    let digits = port.strip_prefix('-').unwrap_or(port);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(unparsable());
    }
    let host = host.strip_prefix('[').unwrap_or(host);
    let host = host.strip_suffix(']').unwrap_or(host);
    let host_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '%' | '.' | '_' | ':');
    if !host.chars().all(host_char) {
        return Err(unparsable());
    }
    let port = port.parse::<i32>().map_err(|_| {
        format!("Unable to parse {entry} to a broker endpoint: port {port} is not a 32-bit integer")
    })?;
    Ok(Endpoint {
        text: entry.to_string(),
        name: name.to_uppercase(),
        host: (!host.is_empty()).then(|| host.to_string()),
        port: port.into(),
    })
}

/// commons-validator `InetAddressValidator.isValidInet4Address`: four decimal octets, each at
/// most 255 and without a leading zero.
fn is_ipv4(host: &str) -> bool {
    let octets: Vec<&str> = host.split('.').collect();
    octets.len() == 4
        && octets.iter().all(|o| {
            (1..=3).contains(&o.len())
                && o.bytes().all(|b| b.is_ascii_digit())
                && !(o.len() > 1 && o.starts_with('0'))
                && o.parse::<u16>().is_ok_and(|n| n <= 255)
        })
}

/// `InetAddressValidator.isValidInet6Address`, approximated with Rust's parser. It takes a
/// `%zone` suffix like commons-validator does.
fn is_ipv6(host: &str) -> bool {
    let address = match host.split_once('%') {
        Some((address, zone)) if !zone.is_empty() && !zone.contains(['%', '/']) => address,
        Some(_) => return false,
        None => host,
    };
    address.parse::<std::net::Ipv6Addr>().is_ok()
}

/// `InetAddressValidator.isValid`.
fn is_ip(host: &str) -> bool {
    is_ipv4(host) || is_ipv6(host)
}

/// The entries, joined for a message.
pub(super) fn entries(endpoints: &[&Endpoint]) -> String {
    endpoints
        .iter()
        .map(|e| e.text.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// `SecurityProtocol.forName`: case-insensitive.
fn security_protocol(name: &str) -> Option<&'static str> {
    PROTOCOLS
        .iter()
        .copied()
        .find(|p| p.eq_ignore_ascii_case(name))
}

/// `SSL`, `SASL_SSL` or `SASL_PLAINTEXT` (`KafkaConfig.effectiveListenerSecurityProtocolMap`'s
/// `isSslOrSasl`, case-sensitive).
fn is_ssl_or_sasl(name: &str) -> bool {
    matches!(name, "SSL" | "SASL_SSL" | "SASL_PLAINTEXT")
}

impl Checker {
    /// Parses a list (`CoreUtils.listenerListToEndPoints`), reports syntax and duplicate names,
    /// and returns the entries that parse.
    pub(super) fn endpoints(&mut self, key: &'static str, value: &str) -> Vec<Endpoint> {
        let mut parsed = Vec::new();
        let mut empty_item = false;
        for item in split_list(value) {
            if item.is_empty() {
                empty_item = true;
                continue;
            }
            match parse_endpoint(item) {
                Ok(e) => parsed.push(e),
                Err(message) => self.push(Rule::EndpointSyntax, key, message),
            }
        }
        // 4.x: `ConfigDef` LIST keeps empty items (`split(trimmed, -1)`); the 4.x trunk
        // `ValidList.anyNonDuplicateValues` refuses them, and without it the empty item fails
        // `URI_PARSE_REGEXP`. 3.x: `Csv.parseCsvList` drops them.
        if empty_item && since(self.kafka, KAFKA_4) {
            self.push(
                Rule::EndpointSyntax,
                key,
                format!(
                    "Configuration '{key}' values must not be empty: an empty item between commas \
                     (Kafka 4.x refuses it; 3.x skipped it)"
                ),
            );
        }
        // `validate`: "Each listener must have a different name" (both lists).
        let mut by_name: BTreeMap<&str, Vec<&Endpoint>> = BTreeMap::new();
        for e in &parsed {
            by_name.entry(e.name.as_str()).or_default().push(e);
        }
        for (name, group) in &by_name {
            if group.len() > 1 {
                self.push(
                    Rule::DuplicateName,
                    key,
                    format!(
                        "Each listener must have a different name: {} are all named {name}",
                        entries(group)
                    ),
                );
            }
        }
        parsed
    }

    /// `CoreUtils.listenerListToEndPoints` with `requireDistinctPorts` (`listeners` only).
    pub(super) fn ports(&mut self, listeners: &[Endpoint]) {
        for e in listeners {
            // `SocketServer` binds `new InetSocketAddress(host, port)`, which throws for these.
            if !(0..=65535).contains(&e.port) {
                self.push(
                    Rule::EndpointSyntax,
                    LISTENERS,
                    format!(
                        "{}: port {} is outside 0-65535, the broker cannot bind it",
                        e.text, e.port
                    ),
                );
            }
        }
        // "filter port 0 for unit tests"
        let mut by_port: BTreeMap<i64, Vec<&Endpoint>> = BTreeMap::new();
        for e in listeners.iter().filter(|e| e.port != 0) {
            by_port.entry(e.port).or_default().push(e);
        }
        for (port, group) in by_port {
            if group.len() < 2 {
                continue;
            }
            if let Some(message) = self.port_conflict(port, &group) {
                self.push(Rule::DuplicatePort, LISTENERS, message);
            }
        }
    }

    /// The message for listeners sharing `port`, if a release in scope refuses them.
    fn port_conflict(&self, port: i64, group: &[&Endpoint]) -> Option<String> {
        let listed = entries(group);
        // 3.6+ (`validate` after KIP-797): split by whether the host is an IP address.
        let (ip, other): (Vec<&Endpoint>, Vec<&Endpoint>) = group
            .iter()
            .partition(|e| e.host.as_deref().is_some_and(is_ip));
        let one_v4_one_v6 =
            |a: &str, b: &str| (is_ipv4(a) && is_ipv6(b)) || (is_ipv6(a) && is_ipv4(b));
        let kip_797 = if other.len() > 1 {
            // `checkDuplicateListenerPorts` on the hosts that are not IP addresses.
            Some("Each listener must have a different port")
        } else if ip.len() == 2 {
            let (a, b) = (ip[0].host.as_deref(), ip[1].host.as_deref());
            let pair = matches!((a, b), (Some(a), Some(b)) if one_v4_one_v6(a, b));
            (!pair || !other.is_empty()).then_some(
                "If you have two listeners on the same port then one needs to be IPv4 and the other IPv6",
            )
        } else {
            Some(
                "Each listener must have a different port unless exactly one listener has an IPv4 \
                 address and the other IPv6 address",
            )
        };
        match kip_797 {
            Some(message) if since(self.kafka, KIP_797) => {
                Some(format!("{message}: {listed} share port {port}"))
            }
            // Before 3.6 every duplicate is refused.
            Some(_) => Some(format!(
                "Each listener must have a different port: {listed} share port {port}"
            )),
            None if before(self.kafka, KIP_797) => Some(format!(
                "Each listener must have a different port: {listed} share port {port} (Kafka \
                 before 3.6 refuses this; 3.6+ accepts one IPv4 and one IPv6 listener on a port, \
                 KIP-797)"
            )),
            None => None,
        }
    }
}

/// The effective `listener.security.protocol.map`, keyed by upper-cased listener name
/// (`KafkaConfig.effectiveListenerSecurityProtocolMap`).
pub(super) fn protocol_map(
    c: &mut Checker,
    props: &Properties,
    kraft: bool,
    controller_names: &[String],
    listener_items: &[&str],
) -> BTreeMap<String, &'static str> {
    let mut map = BTreeMap::new();
    let Some(value) = props.get(PROTOCOL_MAP) else {
        for p in PROTOCOLS {
            map.insert(p.to_string(), p);
        }
        // KRaft, key not in the file (`originals.containsKey`), no SSL/SASL listener names:
        // controller listener names map to PLAINTEXT. The key is `new ListenerName(name)`, not
        // normalised, so a lower-case controller name gets no usable mapping (as in Kafka).
        let listener_name = |item: &&str| item.split(':').next().unwrap_or("").to_uppercase();
        let ssl_or_sasl = controller_names.iter().any(|n| is_ssl_or_sasl(n))
            || listener_items
                .iter()
                .any(|item| is_ssl_or_sasl(&listener_name(item)));
        if kraft && !ssl_or_sasl {
            for name in controller_names.iter().filter(|n| *n != "PLAINTEXT") {
                map.insert(name.clone(), "PLAINTEXT");
            }
        }
        return map;
    };
    // `Csv.parseCsvMap`: split on `\s*,\s*` (Java drops trailing empty items), each item at its
    // last ':'.
    let value = java_trim(&value);
    if value.is_empty() {
        return map;
    }
    let mut items: Vec<&str> = value
        .split(',')
        .map(|s| s.trim_matches(is_java_space))
        .collect();
    while items.last() == Some(&"") {
        items.pop();
    }
    for item in items {
        let Some((name, protocol)) = item.rsplit_once(':') else {
            c.push(
                Rule::ProtocolMapSyntax,
                PROTOCOL_MAP,
                format!(
                    "Error parsing configuration property '{PROTOCOL_MAP}': {item:?} is not \
                     NAME:PROTOCOL"
                ),
            );
            continue;
        };
        let protocol = java_trim(protocol);
        match security_protocol(protocol) {
            Some(p) => {
                map.insert(java_trim(name).to_uppercase(), p);
            }
            None => c.push(
                Rule::ProtocolMapSyntax,
                PROTOCOL_MAP,
                format!("Invalid security protocol `{protocol}` defined in {PROTOCOL_MAP}"),
            ),
        }
    }
    map
}
impl Checker {
    /// Every name in both lists needs a protocol (`listenerListToEndPoints`).
    pub(super) fn named_protocols(&mut self, f: &Facts<'_>) {
        for e in f.listeners.iter().chain(f.advertised.into_iter().flatten()) {
            if !f.map.contains_key(&e.name) {
                self.push(
                    Rule::NoSecurityProtocol,
                    PROTOCOL_MAP,
                    format!("No security protocol defined for listener {}", e.name),
                );
            }
        }
    }

    /// early.start.listeners (`KafkaConfig.earlyStartListeners`, since 3.3).
    pub(super) fn early_start_listeners(&mut self, props: &Properties, f: &Facts<'_>) {
        // early.start.listeners (`KafkaConfig.earlyStartListeners`, since 3.3): names as written
        // (`new ListenerName(str)`, not upper-cased) must be among the listener names.
        if since(self.kafka, EARLY_START_SINCE) {
            if let Some(value) = props.get(EARLY_START_LISTENERS) {
                for name in java_trim(&value)
                    .split(',')
                    .map(java_trim)
                    .filter(|s| !s.is_empty())
                {
                    if !f.listener_names.contains(name) {
                        self.push(
                            Rule::EarlyStartListeners,
                            EARLY_START_LISTENERS,
                            format!(
                                "{EARLY_START_LISTENERS} contains listener {name}, but this is not \
                                 contained in {LISTENERS} or {CONTROLLER_LISTENER_NAMES}"
                            ),
                        );
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_parsing_follows_kafkas_regex() {
        let ok: &[(&str, &str, Option<&str>, i64)] = &[
            ("PLAINTEXT://:9092", "PLAINTEXT", None, 9092),
            (
                "privatelink://host.example:10003",
                "PRIVATELINK",
                Some("host.example"),
                10003,
            ),
            ("SSL://[::1]:9093", "SSL", Some("::1"), 9093),
            ("SSL://::1:9093", "SSL", Some("::1"), 9093),
            (
                "SSL://[fe80::1%eth0]:9093",
                "SSL",
                Some("fe80::1%eth0"),
                9093,
            ),
            ("A://0.0.0.0:0", "A", Some("0.0.0.0"), 0),
            ("A://h:-1", "A", Some("h"), -1),
        ];
        for (entry, name, host, port) in ok {
            let e = parse_endpoint(entry).unwrap();
            assert_eq!(
                (e.name.as_str(), e.host.as_deref(), e.port),
                (*name, *host, *port)
            );
        }
        for bad in [
            "PLAINTEXT:9092",
            "A://h",
            "A://h:",
            "A://h/x:1",
            "A://h:1x",
            "A://h:99999999999",
        ] {
            assert!(parse_endpoint(bad).is_err(), "{bad}");
        }
        assert_eq!(split_list(" A://:1 ,B://:2,\t"), ["A://:1", "B://:2", ""]);
        assert!(split_list("  ").is_empty());
    }

    #[test]
    fn ip_addresses_like_commons_validator() {
        for v4 in ["127.0.0.1", "0.0.0.0", "255.255.255.255", "10.0.0.1"] {
            assert!(is_ipv4(v4) && !is_ipv6(v4), "{v4}");
        }
        for not_v4 in ["256.0.0.1", "01.2.3.4", "1.2.3", "a.b.c.d", "1.2.3.4.5", ""] {
            assert!(!is_ipv4(not_v4), "{not_v4}");
        }
        for v6 in [
            "::1",
            "::",
            "2001:db8::1",
            "fe80::1%eth0",
            "::ffff:10.0.0.1",
        ] {
            assert!(is_ipv6(v6) && !is_ipv4(v6), "{v6}");
        }
        for not_ip in ["localhost", "b1.internal", "fe80::1%", ":::"] {
            assert!(!is_ip(not_ip), "{not_ip}");
        }
    }
}
