//! The listener edits: parsing `listeners`, `advertised.listeners` and
//! `listener.security.protocol.map` the way Kafka does, setting the managed listener
//! ([`apply_listener`]) and removing it ([`remove_listener`]), and the readers of those keys
//! (the advertised endpoint, the bound addresses, a missing keystore).

use super::edits::Edits;
use super::{
    EditError, EditReason, Entry, Properties, ADVERTISED_LISTENERS, CONTROLLER_LISTENER_NAMES,
    DEFAULT_PROTOCOL_MAP, INTER_BROKER_LISTENER_NAME, LISTENERS, PROTOCOL_MAP,
};

impl Properties {
    fn managed(&self) -> Result<Managed<'_>, EditError> {
        Ok(Managed {
            listeners: self.unique(LISTENERS)?,
            advertised: self.unique(ADVERTISED_LISTENERS)?,
            protocol_map: self.unique(PROTOCOL_MAP)?,
        })
    }

    /// Names in `controller.listener.names`, trimmed.
    fn controller_names(&self) -> Vec<String> {
        self.get(CONTROLLER_LISTENER_NAMES)
            .map(|v| csv(&v).map(str::to_string).collect())
            .unwrap_or_default()
    }
}

struct Managed<'a> {
    listeners: Option<&'a Entry>,
    advertised: Option<&'a Entry>,
    protocol_map: Option<&'a Entry>,
}

/// Kafka's `parseCsvList`: split on commas, trim, drop empty items.
fn csv(value: &str) -> impl Iterator<Item = &str> {
    value
        .split(',')
        .map(|s| s.trim_matches(|c: char| c.is_ascii_whitespace() || c == '\x0b'))
        .filter(|s| !s.is_empty())
}

/// One `NAME://host:port` entry of a listener list.
#[derive(Debug, Clone)]
struct Endpoint {
    name: String,
    /// As written, brackets included for IPv6.
    host: String,
    port: u16,
    /// The whole entry as written (trimmed), reused when the list is rewritten.
    text: String,
}

fn valid_listener_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// Kafka's endpoint regex allows `[0-9a-zA-Z\-%._:]*`, optionally in brackets.
fn valid_host(host: &str) -> bool {
    let inner = match host.strip_prefix('[') {
        Some(rest) => match rest.strip_suffix(']') {
            Some(inner) => inner,
            None => return false,
        },
        None => host,
    };
    inner
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '%' | '.' | '_' | ':'))
}

fn parse_endpoint(entry: &str) -> Result<Endpoint, &'static str> {
    let (name, rest) = entry.split_once("://").ok_or("missing \"://\"")?;
    if !valid_listener_name(name) {
        return Err("listener name must be letters, digits, '_', '-' or '.'");
    }
    let (host, port) = if rest.starts_with('[') {
        let close = rest
            .find("]:")
            .ok_or("bracketed host must be followed by \":port\"")?;
        (&rest[..=close], &rest[close + 2..])
    } else {
        rest.rsplit_once(':').ok_or("missing \":port\"")?
    };
    if !valid_host(host) {
        return Err("host has characters Kafka does not accept");
    }
    if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err("port is not a number");
    }
    let port = port.parse().map_err(|_| "port is not in 0-65535")?;
    Ok(Endpoint {
        name: name.to_string(),
        host: host.to_string(),
        port,
        text: entry.to_string(),
    })
}

fn parse_listener_list(key: &'static str, entry: &Entry) -> Result<Vec<Endpoint>, EditError> {
    let mut endpoints: Vec<Endpoint> = Vec::new();
    for item in csv(&entry.value) {
        let endpoint = parse_endpoint(item).map_err(|why| {
            EditError::at(
                entry.line,
                EditReason::MalformedListener {
                    key,
                    entry: item.to_string(),
                    why,
                },
            )
        })?;
        if endpoints
            .iter()
            .any(|e| e.name.eq_ignore_ascii_case(&endpoint.name))
        {
            return Err(EditError::at(
                entry.line,
                EditReason::DuplicateListener {
                    key,
                    name: endpoint.name,
                },
            ));
        }
        endpoints.push(endpoint);
    }
    if endpoints.is_empty() {
        return Err(EditError::at(entry.line, EditReason::EmptyList { key }));
    }
    Ok(endpoints)
}

/// Entries of `listener.security.protocol.map` as `(name, entry text)`.
fn parse_protocol_map(entry: &Entry) -> Result<Vec<(String, String)>, EditError> {
    csv(&entry.value)
        .map(|item| match item.split_once(':') {
            Some((name, protocol)) if !name.trim().is_empty() && !protocol.trim().is_empty() => {
                Ok((name.trim().to_string(), item.to_string()))
            }
            _ => Err(EditError::at(
                entry.line,
                EditReason::MalformedProtocolMap {
                    entry: item.to_string(),
                },
            )),
        })
        .collect()
}

/// What the agent wants for its managed listener.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ListenerEdit {
    /// Listener name, e.g. "PRIVATELINK"; compared case-insensitively, written as given.
    pub name: String,
    /// Port the broker binds: the `listeners` entry becomes `NAME://:port`.
    pub bind_port: u16,
    /// Host advertised to clients, e.g. "kafka-use1-az1.orders.example.internal".
    pub advertised_host: String,
    /// Port advertised to clients (the NLB listener port), e.g. 10003.
    pub advertised_port: u16,
    /// Security protocol, e.g. "SSL"; used only if the name has no mapping yet.
    pub security_protocol: String,
}

fn validate_edit(edit: &ListenerEdit) -> Result<(), EditError> {
    let invalid = |msg: String| Err(EditError::whole_file(EditReason::InvalidEdit(msg)));
    if !valid_listener_name(&edit.name) {
        return invalid(format!(
            "listener name {:?} must be letters, digits, '_', '-' or '.'",
            edit.name
        ));
    }
    if edit.advertised_host.is_empty() || !valid_host(&edit.advertised_host) {
        return invalid(format!(
            "advertised host {:?} is not a hostname or address",
            edit.advertised_host
        ));
    }
    if edit.security_protocol.is_empty()
        || !edit
            .security_protocol
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        return invalid(format!(
            "security protocol {:?} must be letters, digits or '_'",
            edit.security_protocol
        ));
    }
    Ok(())
}

/// The list with `name`'s entry set to `wanted`, or None if it already matches.
fn upsert(list: &[Endpoint], name: &str, host: &str, port: u16) -> Option<Vec<String>> {
    let mut items: Vec<String> = list.iter().map(|e| e.text.clone()).collect();
    let wanted = format!("{name}://{host}:{port}");
    match list.iter().position(|e| e.name.eq_ignore_ascii_case(name)) {
        Some(i) if list[i].host == host && list[i].port == port => return None,
        Some(i) => items[i] = wanted,
        None => items.push(wanted),
    }
    Some(items)
}

/// Returns Ok(None) when the text already satisfies `edit` (nothing to write), Ok(Some(new_text)) otherwise.
///
/// Sets `listeners`, `advertised.listeners` and `listener.security.protocol.map` so
/// that the broker binds `edit.name` on `edit.bind_port` and advertises it as
/// `advertised_host:advertised_port`, changing nothing else in the text. See the
/// module documentation for the refusals.
pub fn apply_listener(text: &str, edit: &ListenerEdit) -> Result<Option<String>, EditError> {
    validate_edit(edit)?;
    let props = Properties::parse(text)?;
    let managed = props.managed()?;
    let controllers = props.controller_names();
    let mut edits = Edits::new(text, &props);

    let listeners_entry = managed
        .listeners
        .ok_or_else(|| EditError::whole_file(EditReason::ListenersNotSet))?;
    let listeners = parse_listener_list(LISTENERS, listeners_entry)?;
    if let Some(items) = upsert(&listeners, &edit.name, "", edit.bind_port) {
        edits.set_value(listeners_entry, &items.join(","));
    }
    edit_advertised(
        &mut edits,
        managed.advertised,
        &listeners,
        &controllers,
        edit,
    )?;
    edit_protocol_map(&mut edits, managed.protocol_map, &controllers, edit)?;
    edits.render()
}

/// `advertised.listeners` with the managed listener's endpoint.
fn edit_advertised(
    edits: &mut Edits<'_>,
    entry: Option<&Entry>,
    listeners: &[Endpoint],
    controllers: &[String],
    edit: &ListenerEdit,
) -> Result<(), EditError> {
    let ours = format!(
        "{}://{}:{}",
        edit.name, edit.advertised_host, edit.advertised_port
    );
    if let Some(entry) = entry {
        let advertised = parse_listener_list(ADVERTISED_LISTENERS, entry)?;
        let wanted = upsert(
            &advertised,
            &edit.name,
            &edit.advertised_host,
            edit.advertised_port,
        );
        if let Some(items) = wanted {
            edits.set_value(entry, &items.join(","));
        }
        return Ok(());
    }
    // Kafka advertises `listeners` minus the controller listeners by default; writing the key
    // must keep advertising those.
    let is_controller = |name: &str| controllers.iter().any(|c| c.eq_ignore_ascii_case(name));
    let mut items = Vec::new();
    let mut placed = false;
    for endpoint in listeners {
        if endpoint.name.eq_ignore_ascii_case(&edit.name) {
            items.push(ours.clone());
            placed = true;
        } else if is_controller(&endpoint.name) {
            continue;
        } else if matches!(endpoint.host.as_str(), "0.0.0.0" | "::" | "[::]") {
            // Empty host makes Kafka advertise the canonical hostname, which is what it does
            // for a wildcard bind when the key is unset.
            items.push(format!("{}://:{}", endpoint.name, endpoint.port));
        } else {
            items.push(endpoint.text.clone());
        }
    }
    if !placed {
        items.push(ours);
    }
    edits.append(ADVERTISED_LISTENERS, items.join(","));
    Ok(())
}

/// `listener.security.protocol.map` with a mapping for the managed listener if it has none.
fn edit_protocol_map(
    edits: &mut Edits<'_>,
    entry: Option<&Entry>,
    controllers: &[String],
    edit: &ListenerEdit,
) -> Result<(), EditError> {
    let mapping = format!("{}:{}", edit.name, edit.security_protocol);
    let is_default = |n: &str| {
        DEFAULT_PROTOCOL_MAP
            .iter()
            .any(|d| d.eq_ignore_ascii_case(n))
    };
    match entry {
        Some(entry) => {
            let map = parse_protocol_map(entry)?;
            if !map.iter().any(|(n, _)| n.eq_ignore_ascii_case(&edit.name)) {
                let mut items: Vec<String> = map.into_iter().map(|(_, text)| text).collect();
                items.push(mapping);
                edits.set_value(entry, &items.join(","));
            }
        }
        None if is_default(&edit.name) => {}
        None => {
            if let Some(name) = controllers.iter().find(|c| !is_default(c)) {
                return Err(EditError::whole_file(
                    EditReason::ImplicitControllerMapping { name: name.clone() },
                ));
            }
            let mut items: Vec<String> = DEFAULT_PROTOCOL_MAP
                .iter()
                .map(|p| format!("{p}:{p}"))
                .collect();
            items.push(mapping);
            edits.append(PROTOCOL_MAP, items.join(","));
        }
    }
    Ok(())
}

/// Removes the managed listener (from listeners, advertised.listeners; and from listener.security.protocol.map
/// only if no remaining listener uses it). Ok(None) if nothing to remove.
///
/// "Uses it" means the name is still in `controller.listener.names`. Refuses to empty
/// `listeners` or `advertised.listeners` and to remove the inter-broker listener; a
/// mapping whose removal would empty the map is left in place.
pub fn remove_listener(text: &str, name: &str) -> Result<Option<String>, EditError> {
    let props = Properties::parse(text)?;
    let managed = props.managed()?;
    let matches = |n: &str| n.eq_ignore_ascii_case(name);
    let mut edits = Edits::new(text, &props);

    for (key, entry) in [
        (LISTENERS, managed.listeners),
        (ADVERTISED_LISTENERS, managed.advertised),
    ] {
        let Some(entry) = entry else { continue };
        let list = parse_listener_list(key, entry)?;
        if !list.iter().any(|e| matches(&e.name)) {
            continue;
        }
        if let Some(inter) = props.get(INTER_BROKER_LISTENER_NAME) {
            if matches(inter.trim()) {
                return Err(EditError::whole_file(EditReason::InterBrokerListener {
                    name: name.to_string(),
                }));
            }
        }
        let rest: Vec<&str> = list
            .iter()
            .filter(|e| !matches(&e.name))
            .map(|e| e.text.as_str())
            .collect();
        if rest.is_empty() {
            return Err(EditError::at(
                entry.line,
                EditReason::WouldEmpty {
                    key,
                    name: name.to_string(),
                },
            ));
        }
        edits.set_value(entry, &rest.join(","));
    }

    if let Some(entry) = managed.protocol_map {
        let map = parse_protocol_map(entry)?;
        let still_used = props.controller_names().iter().any(|c| matches(c));
        if map.iter().any(|(n, _)| matches(n)) && !still_used {
            let rest: Vec<&str> = map
                .iter()
                .filter(|(n, _)| !matches(n))
                .map(|(_, text)| text.as_str())
                .collect();
            if !rest.is_empty() {
                edits.set_value(entry, &rest.join(","));
            }
        }
    }
    edits.render()
}

/// The advertised endpoint "host:port" currently in the file for listener `name`, if any.
///
/// Only `advertised.listeners` is consulted; IPv6 hosts keep their brackets.
pub fn advertised_endpoint(text: &str, name: &str) -> Result<Option<String>, EditError> {
    let props = Properties::parse(text)?;
    let Some(entry) = props.managed()?.advertised else {
        return Ok(None);
    };
    Ok(parse_listener_list(ADVERTISED_LISTENERS, entry)?
        .into_iter()
        .find(|e| e.name.eq_ignore_ascii_case(name))
        .map(|e| format!("{}:{}", e.host, e.port)))
}

/// Where the running broker accepts TCP connections, from `listeners` (Kafka's default
/// `PLAINTEXT://:9092` when absent): `host:port` per listener but `except` (the managed listener,
/// which the running broker may not have yet), a wildcard or empty host (bind all) as the
/// loopback address of its family (`127.0.0.1`, `[::1]`), which reaches a wildcard bind. A
/// malformed list answers no address: probing is best effort (the file's rules are checked
/// elsewhere).
pub fn bound_addresses(text: &str, except: &str) -> Vec<String> {
    let Ok(props) = Properties::parse(text) else {
        return Vec::new();
    };
    let endpoints = match props.managed() {
        Ok(Managed {
            listeners: Some(entry),
            ..
        }) => parse_listener_list(LISTENERS, entry).unwrap_or_default(),
        Ok(_) => parse_endpoint("PLAINTEXT://:9092").into_iter().collect(),
        Err(_) => Vec::new(),
    };
    endpoints
        .into_iter()
        .filter(|e| !e.name.eq_ignore_ascii_case(except))
        .map(|e| {
            let host = match e.host.as_str() {
                "" | "0.0.0.0" => "127.0.0.1",
                "::" | "[::]" => "[::1]",
                host => host,
            };
            format!("{host}:{}", e.port)
        })
        .collect()
}

/// The security protocol of listener `name`: its entry in `listener.security.protocol.map`,
/// else `default_protocol` (what the agent maps it to), upper-cased.
pub fn listener_protocol(props: &Properties, name: &str, default_protocol: &str) -> String {
    props
        .get("listener.security.protocol.map")
        .and_then(|map| {
            csv(&map).find_map(|entry| {
                let (n, p) = entry.split_once(':')?;
                n.trim()
                    .eq_ignore_ascii_case(name)
                    .then(|| p.trim().to_ascii_uppercase())
            })
        })
        .unwrap_or_else(|| default_protocol.to_ascii_uppercase())
}

/// Whether `protocol` (as [`listener_protocol`] gives it) serves TLS: `SSL` or `SASL_SSL`.
pub fn is_tls(protocol: &str) -> bool {
    protocol == "SSL" || protocol == "SASL_SSL"
}

/// Why Kafka would refuse to start listener `name` for lack of a keystore, if it would: the
/// listener's protocol (its entry in `listener.security.protocol.map`, else `default_protocol`,
/// what the agent maps it to) is SSL or SASL_SSL and neither `listener.name.<name>.ssl.keystore.*`
/// nor a broker-wide `ssl.keystore.*` (a JKS/PKCS12 location or a PEM chain) is set.
pub fn missing_keystore(
    text: &str,
    name: &str,
    default_protocol: &str,
) -> Result<Option<String>, EditError> {
    let props = Properties::parse(text)?;
    let protocol = listener_protocol(&props, name, default_protocol);
    if !is_tls(&protocol) {
        return Ok(None);
    }
    let prefix = format!("listener.name.{}.", name.to_ascii_lowercase());
    let has = |key: &str| {
        [format!("{prefix}{key}"), key.to_string()]
            .iter()
            .any(|k| props.get(k).is_some_and(|v| !v.trim().is_empty()))
    };
    if has("ssl.keystore.location") || has("ssl.keystore.certificate.chain") {
        return Ok(None);
    }
    Ok(Some(format!(
        "listener {name} is {protocol} but neither {prefix}ssl.keystore.location nor ssl.keystore.location is set: Kafka would refuse to start; its certificate must cover every zonal name (or *.<domain>) and the bootstrap name"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::properties::physical_lines;

    #[test]
    fn bound_addresses_are_where_a_running_broker_accepts() {
        assert_eq!(
            bound_addresses(
                "listeners=PLAINTEXT://:9092,CONTROLLER://0.0.0.0:9093,INTERNAL://10.0.0.5:9095,\\\n  V6://[::]:9096,PRIVATELINK://:9094\n",
                "privatelink"
            ),
            ["127.0.0.1:9092", "127.0.0.1:9093", "10.0.0.5:9095", "[::1]:9096"]
        );
        // Kafka's default when `listeners` is absent.
        assert_eq!(
            bound_addresses("broker.id=1\n", "PRIVATELINK"),
            ["127.0.0.1:9092"]
        );
        // Best effort: a malformed list probes nothing more.
        assert!(bound_addresses("listeners=nonsense\n", "PRIVATELINK").is_empty());
    }

    use proptest::prelude::*;

    const ADV: &str = "PRIVATELINK://kafka-use1-az1.orders.example.internal:10003";
    const DEFAULT_MAP: &str =
        "PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL";

    fn edit() -> ListenerEdit {
        ListenerEdit {
            name: "PRIVATELINK".into(),
            bind_port: 9094,
            advertised_host: "kafka-use1-az1.orders.example.internal".into(),
            advertised_port: 10003,
            security_protocol: "SSL".into(),
        }
    }

    /// Applies `edit()`, checks idempotence, returns the new text.
    fn apply(text: &str) -> String {
        let out = apply_listener(text, &edit())
            .expect("apply")
            .expect("a change");
        assert_eq!(
            apply_listener(&out, &edit()),
            Ok(None),
            "not idempotent:\n{out}"
        );
        out
    }

    fn reason(text: &str) -> EditReason {
        apply_listener(text, &edit())
            .expect_err("must be refused")
            .reason
    }

    #[test]
    fn simple_file() {
        let text = "broker.id=1\nlisteners=PLAINTEXT://:9092\nadvertised.listeners=PLAINTEXT://b1:9092\nlistener.security.protocol.map=PLAINTEXT:PLAINTEXT\nlog.dirs=/data\n";
        assert_eq!(
            apply(text),
            format!("broker.id=1\nlisteners=PLAINTEXT://:9092,PRIVATELINK://:9094\nadvertised.listeners=PLAINTEXT://b1:9092,{ADV}\nlistener.security.protocol.map=PLAINTEXT:PLAINTEXT,PRIVATELINK:SSL\nlog.dirs=/data\n")
        );
    }

    #[test]
    fn colon_and_space_separators_are_kept() {
        let text = "listeners : PLAINTEXT://:9092\nadvertised.listeners\tPLAINTEXT://b1:9092\nlistener.security.protocol.map:PLAINTEXT:PLAINTEXT\n";
        assert_eq!(
            apply(text),
            format!("listeners : PLAINTEXT://:9092,PRIVATELINK://:9094\nadvertised.listeners\t{}\nlistener.security.protocol.map:PLAINTEXT:PLAINTEXT,PRIVATELINK:SSL\n", format_args!("PLAINTEXT://b1:9092,{ADV}"))
        );
    }

    #[test]
    fn continuation_lines_collapse_to_one_line() {
        let text = "listeners = PLAINTEXT://:9092, \\\n     SSL://:9093\r\n# after\nadvertised.listeners=\\\n  PLAINTEXT://b1:9092\nlistener.security.protocol.map=PLAINTEXT:PLAINTEXT,SSL:SSL\n";
        assert_eq!(
            apply(text),
            format!("listeners = PLAINTEXT://:9092,SSL://:9093,PRIVATELINK://:9094\r\n# after\nadvertised.listeners=PLAINTEXT://b1:9092,{ADV}\nlistener.security.protocol.map=PLAINTEXT:PLAINTEXT,SSL:SSL,PRIVATELINK:SSL\n")
        );
    }

    #[test]
    fn escaped_values_compare_unescaped() {
        let text = format!(
            "listeners=PLAINTEXT\\://:9092,PRIVATELINK\\u003a//:9094\nadvertised.listeners={}\nlistener.security.protocol.map=PRIVATELINK\\:SSL\n",
            ADV.replace("//", "\\/\\/")
        );
        assert_eq!(apply_listener(&text, &edit()), Ok(None));
        // A changed list is rewritten unescaped (no escapes are needed).
        let text = "listeners=PLAINTEXT\\://:9092\nadvertised.listeners=PLAINTEXT://b1:9092\nlistener.security.protocol.map=PLAINTEXT:PLAINTEXT\n";
        assert!(apply(text).starts_with("listeners=PLAINTEXT://:9092,PRIVATELINK://:9094\n"));
    }

    #[test]
    fn crlf_file_and_missing_final_newline() {
        let text = "# c\r\nlisteners=PLAINTEXT://:9092\r\nadvertised.listeners=PLAINTEXT://b1:9092";
        assert_eq!(
            apply(text),
            format!("# c\r\nlisteners=PLAINTEXT://:9092,PRIVATELINK://:9094\r\nadvertised.listeners=PLAINTEXT://b1:9092,{ADV}\r\nlistener.security.protocol.map={DEFAULT_MAP},PRIVATELINK:SSL\r\n")
        );
        let text = "listeners=PLAINTEXT://:9092\nnum.io.threads=8";
        assert_eq!(
            apply(text),
            format!("listeners=PLAINTEXT://:9092,PRIVATELINK://:9094\nnum.io.threads=8\nadvertised.listeners=PLAINTEXT://:9092,{ADV}\nlistener.security.protocol.map={DEFAULT_MAP},PRIVATELINK:SSL\n")
        );
    }

    #[test]
    fn dangling_continuation_at_end_is_closed_by_a_blank_line() {
        for (text, blank) in [
            (
                "listeners=PLAINTEXT://:9092,PRIVATELINK://:9094\nx=a\\",
                "\n\n",
            ),
            (
                "listeners=PLAINTEXT://:9092,PRIVATELINK://:9094\nx=a\\\r",
                "\r\n",
            ),
        ] {
            let out = apply(text);
            assert!(
                out.starts_with(&format!("{text}{blank}advertised.listeners=")),
                "{out:?}"
            );
            let p = Properties::parse(&out).unwrap();
            assert_eq!(p.get("x").as_deref(), Some("a"));
            assert!(p.get(ADVERTISED_LISTENERS).is_some());
        }
    }

    #[test]
    fn missing_advertised_listeners_is_derived_from_listeners() {
        let map = "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,PRIVATELINK:SSL\n";
        let text = format!("listeners=PLAINTEXT://0.0.0.0:9092,CONTROLLER://:9093,INTERNAL://10.0.0.5:9095\ncontroller.listener.names=CONTROLLER\n{map}");
        assert_eq!(
            apply(&text),
            format!("listeners=PLAINTEXT://0.0.0.0:9092,CONTROLLER://:9093,INTERNAL://10.0.0.5:9095,PRIVATELINK://:9094\ncontroller.listener.names=CONTROLLER\n{map}advertised.listeners=PLAINTEXT://:9092,INTERNAL://10.0.0.5:9095,{ADV}\n")
        );
        // Without controller.listener.names every listener is advertised; the old
        // PRIVATELINK entry is replaced in place.
        let text = format!(
            "listeners=PRIVATELINK://[::]:9000,PLAINTEXT://[::]:9092,CONTROLLER://:9093\n{map}"
        );
        assert_eq!(
            apply(&text),
            format!("listeners=PRIVATELINK://:9094,PLAINTEXT://[::]:9092,CONTROLLER://:9093\n{map}advertised.listeners={ADV},PLAINTEXT://:9092,CONTROLLER://:9093\n")
        );
    }

    #[test]
    fn missing_protocol_map_gets_kafka_default_plus_ours() {
        let text = format!("listeners=SSL://:9093\nadvertised.listeners=SSL://b1:9093,{ADV}\n");
        assert_eq!(
            apply(&text),
            format!("listeners=SSL://:9093,PRIVATELINK://:9094\nadvertised.listeners=SSL://b1:9093,{ADV}\nlistener.security.protocol.map={DEFAULT_MAP},PRIVATELINK:SSL\n")
        );
        // A name Kafka's default map already covers needs no map at all.
        let mut ssl = edit();
        ssl.name = "ssl".into();
        let out = apply_listener("listeners=PLAINTEXT://:9092\n", &ssl)
            .unwrap()
            .unwrap();
        assert_eq!(
            out,
            "listeners=PLAINTEXT://:9092,ssl://:9094\nadvertised.listeners=PLAINTEXT://:9092,ssl://kafka-use1-az1.orders.example.internal:10003\n"
        );
    }

    #[test]
    fn existing_mapping_and_matching_entries_are_kept() {
        let text = "listeners=PLAINTEXT://:9092,privatelink://:9094\nadvertised.listeners=PLAINTEXT://b1:9092,PRIVATELINK://old.example:10001\nlistener.security.protocol.map=PLAINTEXT:PLAINTEXT, PRIVATELINK:SASL_SSL\n";
        assert_eq!(
            apply(text),
            format!("listeners=PLAINTEXT://:9092,privatelink://:9094\nadvertised.listeners=PLAINTEXT://b1:9092,{ADV}\nlistener.security.protocol.map=PLAINTEXT:PLAINTEXT, PRIVATELINK:SASL_SSL\n")
        );
    }

    #[test]
    fn older_entries_are_replaced_in_place() {
        let text = "listeners = PLAINTEXT://:9092 , PRIVATELINK://0.0.0.0:9000 , SSL://:9093\nadvertised.listeners=PRIVATELINK://old:1,PLAINTEXT://b1:9092\nlistener.security.protocol.map=PLAINTEXT:PLAINTEXT,PRIVATELINK:SSL,SSL:SSL\n";
        assert_eq!(
            apply(text),
            format!("listeners = PLAINTEXT://:9092,PRIVATELINK://:9094,SSL://:9093\nadvertised.listeners={ADV},PLAINTEXT://b1:9092\nlistener.security.protocol.map=PLAINTEXT:PLAINTEXT,PRIVATELINK:SSL,SSL:SSL\n")
        );
    }

    #[test]
    fn ipv6_and_empty_hosts_are_valid() {
        let text = "listeners=PLAINTEXT://[::1]:9092,SSL://:9093,INTERNAL://:::9095\nlistener.security.protocol.map=PLAINTEXT:PLAINTEXT,SSL:SSL,INTERNAL:SSL\n";
        let out = apply(text);
        assert!(
            out.contains(&format!(
                "advertised.listeners=PLAINTEXT://[::1]:9092,SSL://:9093,INTERNAL://:9095,{ADV}\n"
            )),
            "{out}"
        );
        assert_eq!(
            advertised_endpoint(&out, "plaintext").unwrap().as_deref(),
            Some("[::1]:9092")
        );
    }

    #[test]
    fn unsafe_files_are_refused() {
        let err = apply_listener(
            "a=1\nlisteners=PLAINTEXT://:9092\n\nlisteners=SSL://:9093\n",
            &edit(),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "line 4: key \"listeners\" appears twice (lines 2 and 4)"
        );
        assert!(matches!(
            reason("listeners=PLAINTEXT://:9092\nlistener.security.protocol.map=A:B\nlistener.security.protocol.map=C:D\n"),
            EditReason::DuplicateKey { .. }
        ));
        let err = apply_listener(
            "listeners=PLAINTEXT://:9092\n# fine \\uZZ\nother=\\u12G4\n",
            &edit(),
        )
        .unwrap_err();
        assert_eq!(err, EditError::at(3, EditReason::MalformedEscape));
        assert_eq!(
            reason("listeners=PLAINTEXT://:9092\nx=\\u12"),
            EditReason::MalformedEscape
        );
        assert_eq!(reason("num.io.threads=8\n"), EditReason::ListenersNotSet);
        assert_eq!(
            apply_listener("a=b\n", &edit()).unwrap_err().to_string(),
            "listeners is not set; refusing to guess the broker's listeners"
        );
        assert_eq!(
            reason("listeners=\n"),
            EditReason::EmptyList { key: LISTENERS }
        );
        assert_eq!(
            reason("listeners= , \n"),
            EditReason::EmptyList { key: LISTENERS }
        );
        for bad in [
            "listeners=PLAINTEXT:9092\n",
            "listeners=PLAINTEXT://host:port\n",
            "listeners=PLAINTEXT://host\n",
            "listeners=PLAINTEXT://host:70000\n",
            "listeners=://:9092\n",
            "listeners=PLAINTEXT://[::1:9092\n",
            "listeners=PLAINTEXT://:9092\nadvertised.listeners=PLAINTEXT://b1:-1\n",
        ] {
            assert!(
                matches!(reason(bad), EditReason::MalformedListener { .. }),
                "{bad:?} accepted"
            );
        }
        assert!(matches!(
            reason("listeners=PLAINTEXT://:9092,plaintext://:9093\n"),
            EditReason::DuplicateListener { .. }
        ));
        assert!(matches!(
            reason("listeners=PLAINTEXT://:9092\nlistener.security.protocol.map=PLAINTEXT\n"),
            EditReason::MalformedProtocolMap { .. }
        ));
        assert_eq!(
            reason("listeners=PLAINTEXT://:9092\ncontroller.listener.names=CONTROLLER\n"),
            EditReason::ImplicitControllerMapping {
                name: "CONTROLLER".into()
            }
        );
        let mut bad = edit();
        bad.advertised_host = "bad host".into();
        assert!(matches!(
            apply_listener("listeners=PLAINTEXT://:9092\n", &bad)
                .unwrap_err()
                .reason,
            EditReason::InvalidEdit(_)
        ));
    }

    #[test]
    fn bare_key_gets_a_separator() {
        // A key with no separator and no value is an empty list: refused.
        assert_eq!(
            reason("listeners\n"),
            EditReason::EmptyList { key: LISTENERS }
        );
        let entry = &Properties::parse("k\n").unwrap().entries[0];
        let mut edits = Edits::new("k\n", &Properties::parse("k\n").unwrap());
        edits.set_value(entry, " v");
        assert_eq!(edits.render().unwrap().as_deref(), Some("k=\\ v\n"));
    }

    #[test]
    fn remove_listener_undoes_apply() {
        let text = "# broker\nlisteners=PLAINTEXT://:9092\nlistener.security.protocol.map=PLAINTEXT:PLAINTEXT\n";
        let applied = apply(text);
        let removed = remove_listener(&applied, "privatelink").unwrap().unwrap();
        assert_eq!(
            removed,
            "# broker\nlisteners=PLAINTEXT://:9092\nlistener.security.protocol.map=PLAINTEXT:PLAINTEXT\nadvertised.listeners=PLAINTEXT://:9092\n"
        );
        assert_eq!(remove_listener(&removed, "PRIVATELINK"), Ok(None));
        assert_eq!(remove_listener("a=b\n", "PRIVATELINK"), Ok(None));
    }

    #[test]
    fn remove_listener_keeps_what_is_still_needed() {
        // Mapping kept for a controller listener name; map never emptied.
        let text = "listeners=PLAINTEXT://:9092,PRIVATELINK://:9094\ncontroller.listener.names=PRIVATELINK\nlistener.security.protocol.map=PRIVATELINK:SSL,PLAINTEXT:PLAINTEXT\n";
        assert_eq!(
            remove_listener(text, "PRIVATELINK").unwrap().unwrap(),
            "listeners=PLAINTEXT://:9092\ncontroller.listener.names=PRIVATELINK\nlistener.security.protocol.map=PRIVATELINK:SSL,PLAINTEXT:PLAINTEXT\n"
        );
        let text = "listeners=PLAINTEXT://:9092,PRIVATELINK://:9094\nlistener.security.protocol.map=PRIVATELINK:SSL\n";
        assert_eq!(
            remove_listener(text, "PRIVATELINK").unwrap().unwrap(),
            "listeners=PLAINTEXT://:9092\nlistener.security.protocol.map=PRIVATELINK:SSL\n"
        );
        assert!(matches!(
            remove_listener("listeners=PRIVATELINK://:9094\n", "PRIVATELINK")
                .unwrap_err()
                .reason,
            EditReason::WouldEmpty { key: LISTENERS, .. }
        ));
        assert!(matches!(
            remove_listener(
                &format!(
                    "listeners=PLAINTEXT://:9092,PRIVATELINK://:9094\nadvertised.listeners={ADV}\n"
                ),
                "PRIVATELINK"
            )
            .unwrap_err()
            .reason,
            EditReason::WouldEmpty {
                key: ADVERTISED_LISTENERS,
                ..
            }
        ));
        assert!(matches!(
            remove_listener("listeners=PLAINTEXT://:9092,PRIVATELINK://:9094\ninter.broker.listener.name=PRIVATELINK\n", "PRIVATELINK").unwrap_err().reason,
            EditReason::InterBrokerListener { .. }
        ));
    }

    #[test]
    fn advertised_endpoint_reads_the_advertised_entry() {
        let text = format!(
            "listeners=PLAINTEXT://:9092\nadvertised.listeners=PLAINTEXT://b1:9092, {ADV}\n"
        );
        assert_eq!(
            advertised_endpoint(&text, "privatelink")
                .unwrap()
                .as_deref(),
            Some("kafka-use1-az1.orders.example.internal:10003")
        );
        assert_eq!(advertised_endpoint(&text, "SSL"), Ok(None));
        assert_eq!(
            advertised_endpoint("listeners=PLAINTEXT://:9092\n", "PLAINTEXT"),
            Ok(None)
        );
        assert!(advertised_endpoint("advertised.listeners=x\n", "PLAINTEXT").is_err());
    }

    #[test]
    fn unicode_comments_and_values_are_preserved() {
        let text = "# Überwachung — 監視 🎉\n! ñ\nlisteners=PLAINTEXT://:9092\nowner=Zoë\\u00e9\r\nlistener.security.protocol.map=PLAINTEXT:PLAINTEXT\n";
        let out = apply(text);
        assert!(out.starts_with("# Überwachung — 監視 🎉\n! ñ\nlisteners=PLAINTEXT://:9092,PRIVATELINK://:9094\nowner=Zoë\\u00e9\r\n"));
    }

    // ---- property tests ----

    fn managed_key(key: &str) -> bool {
        matches!(key, LISTENERS | ADVERTISED_LISTENERS | PROTOCOL_MAP)
    }

    /// `text` with every managed entry's span removed.
    fn without_managed(text: &str) -> String {
        let props = Properties::parse(text).unwrap();
        let mut out = String::new();
        let mut pos = 0;
        for e in props.entries.iter().filter(|e| managed_key(&e.key)) {
            out.push_str(&text[pos..e.start]);
            pos = e.end;
        }
        out.push_str(&text[pos..]);
        out
    }

    fn token() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-zA-Z0-9._/-]{1,6}",
            prop::sample::select(vec![
                "é",
                "日本",
                "🎉",
                "=",
                ":",
                "#",
                "!",
                " ",
                "\\t",
                "\\u00e9",
                "\\\\",
                "\\=",
                "\\ ",
                "\\:",
                "\\uD83C\\uDF89",
                "\\n",
                "\\#",
            ])
            .prop_map(String::from),
        ]
    }

    fn value() -> impl Strategy<Value = String> {
        prop::collection::vec(token(), 0..5).prop_map(|t| t.concat())
    }

    fn key() -> impl Strategy<Value = String> {
        prop_oneof![
            "x\\.[a-z]{1,5}(\\.[a-z]{1,3})?",
            Just("x.k\\ sp".to_string()),
            Just("x.ké".to_string()),
        ]
    }

    fn sep() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec!["=", " = ", ":", " : ", " ", "\t", "  =  ", "=\t"])
    }

    fn lead() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec!["", "", " ", "\t"])
    }

    /// Unrelated fragments, as physical lines without endings. Each is self-contained:
    /// none ends inside a continuation.
    fn fragment() -> impl Strategy<Value = Vec<String>> {
        prop_oneof![
            (
                prop::sample::select(vec!["#", "!", "  #", "\t!"]),
                "[ -~éü監]{0,12}"
            )
                .prop_map(|(m, t)| vec![format!("{m}{t}")]),
            prop::sample::select(vec!["", "  ", "\t", "\x0c"]).prop_map(|b| vec![b.to_string()]),
            (lead(), key(), sep(), value()).prop_map(|(l, k, s, v)| vec![format!("{l}{k}{s}{v}")]),
            (
                key(),
                sep(),
                value(),
                lead(),
                prop::collection::vec(token(), 1..4)
            )
                .prop_map(|(k, s, v1, l, v2)| vec![
                    format!("{k}{s}{v1}\\"),
                    format!("{l}{}", v2.concat())
                ]),
        ]
    }

    fn listeners_fragment() -> impl Strategy<Value = Vec<String>> {
        prop::sample::select(vec![
            vec!["listeners=PLAINTEXT://:9092"],
            vec!["listeners = PLAINTEXT://:9092"],
            vec!["  listeners PLAINTEXT://:9092"],
            vec!["listeners:PLAINTEXT://:9092,PRIVATELINK://:9000"],
            vec!["listeners=PLAINTEXT://:9092,\\", "   SSL://:9093"],
            vec!["listeners=PLAINTEXT://:9092,PRIVATELINK\\://:9094"],
        ])
        .prop_map(|v| v.into_iter().map(String::from).collect())
    }

    fn advertised_fragment() -> impl Strategy<Value = Option<Vec<String>>> {
        prop::option::of(
            prop::sample::select(vec![
                vec!["advertised.listeners=PLAINTEXT://b1:9092"],
                vec!["advertised.listeners : PRIVATELINK://old:1, PLAINTEXT://b1:9092"],
                vec!["advertised.listeners=\\", "  PLAINTEXT://b1:9092"],
                vec!["advertised.listeners=PLAINTEXT://b1:9092,PRIVATELINK://kafka-use1-az1.orders.example.internal:10003"],
            ])
            .prop_map(|v| v.into_iter().map(String::from).collect()),
        )
    }

    fn map_fragment() -> impl Strategy<Value = Option<Vec<String>>> {
        prop::option::of(
            prop::sample::select(vec![
                vec!["listener.security.protocol.map=PLAINTEXT:PLAINTEXT,SSL:SSL"],
                vec!["listener.security.protocol.map PLAINTEXT:PLAINTEXT,PRIVATELINK:SASL_SSL"],
                vec![
                    "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,\\",
                    "\tSSL:SSL",
                ],
            ])
            .prop_map(|v| v.into_iter().map(String::from).collect()),
        )
    }

    prop_compose! {
        /// A whole file: unrelated fragments with the managed ones inserted at random
        /// places, mixed line endings, optionally a dangling tail and no final newline.
        fn file()(
            mut fragments in prop::collection::vec(fragment(), 0..12),
            listeners in listeners_fragment(),
            advertised in advertised_fragment(),
            map in map_fragment(),
            positions in prop::collection::vec(any::<prop::sample::Index>(), 3),
            endings in prop::collection::vec(prop::sample::select(vec!["\n", "\r\n", "\r"]), 40),
            dangling_tail in any::<bool>(),
            final_newline in any::<bool>(),
        ) -> String {
            for (fragment, at) in [Some(listeners), advertised, map].into_iter().zip(&positions) {
                if let Some(fragment) = fragment {
                    let i = at.index(fragments.len() + 1);
                    fragments.insert(i, fragment);
                }
            }
            if dangling_tail {
                fragments.push(vec!["x.tail=end\\".to_string()]);
            }
            let mut text = String::new();
            for (i, line) in fragments.concat().iter().enumerate() {
                text.push_str(line);
                text.push_str(endings[i % endings.len()]);
            }
            if !final_newline {
                let trimmed = text.trim_end_matches(['\r', '\n']).len();
                // Remove one ending only (a blank last line keeps its predecessor's).
                let cut = if text.ends_with("\r\n") { 2 } else { 1 };
                text.truncate((text.len() - cut).max(trimmed));
            }
            text
        }
    }

    fn ends_cleanly(text: &str) -> bool {
        (text.ends_with('\n') || text.ends_with('\r'))
            && !Properties::parse(text).unwrap().dangling_continuation
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn apply_preserves_everything_else(text in file()) {
            let out = match apply_listener(&text, &edit()).unwrap() {
                Some(out) => out,
                None => text.clone(),
            };
            // (a) Unrelated bytes identical and in order; the only addition allowed is
            // line endings closing an unterminated or dangling last line.
            let before = without_managed(&text);
            let after = without_managed(&out);
            prop_assert!(after.starts_with(&before), "before {:?}\nafter {:?}", before, after);
            let extra = &after[before.len()..];
            prop_assert!(extra.len() <= 4 && extra.chars().all(|c| c == '\r' || c == '\n'), "extra {:?}", extra);
            if ends_cleanly(&text) {
                prop_assert_eq!(extra, "");
            }
            // (b) Idempotent.
            prop_assert_eq!(apply_listener(&out, &edit()).unwrap(), None);
            // (c) Managed keys have the wanted values; unrelated keys are unchanged.
            let old = Properties::parse(&text).unwrap();
            let new = Properties::parse(&out).unwrap();
            let listeners = new.get(LISTENERS).unwrap();
            let listeners: Vec<&str> = csv(&listeners).collect();
            prop_assert!(listeners.contains(&"PRIVATELINK://:9094"));
            prop_assert!(listeners.contains(&"PLAINTEXT://:9092"));
            let advertised = new.get(ADVERTISED_LISTENERS).unwrap();
            prop_assert!(csv(&advertised).any(|e| e == ADV));
            let map = new.get(PROTOCOL_MAP).unwrap();
            prop_assert!(csv(&map).any(|e| e == "PRIVATELINK:SSL" || e == "PRIVATELINK:SASL_SSL"));
            let unrelated = |p: &Properties| -> Vec<(String, Option<String>)> {
                let mut keys: Vec<String> = p.entries.iter().map(|e| e.key.clone()).filter(|k| !managed_key(k)).collect();
                keys.sort();
                keys.dedup();
                keys.into_iter().map(|k| { let v = p.get(&k); (k, v) }).collect()
            };
            prop_assert_eq!(unrelated(&old), unrelated(&new));
        }

        #[test]
        fn duplicated_managed_key_is_refused(
            text in file(),
            key in prop::sample::select(vec![LISTENERS, ADVERTISED_LISTENERS, PROTOCOL_MAP]),
            sep in sep(),
            at in any::<prop::sample::Index>(),
        ) {
            let mut text = text;
            if !ends_cleanly(&text) {
                text.push_str("\n\n");
            }
            // Insert at a line boundary: after the i-th line ending of a clean file.
            let boundaries: Vec<usize> = std::iter::once(0)
                .chain(physical_lines(&text).iter().map(|l| l.end))
                .collect();
            let mut pos = boundaries[at.index(boundaries.len())];
            // Never split a continuation: move forward to the start of an entry or line
            // that is not a continuation target.
            let props = Properties::parse(&text).unwrap();
            if let Some(e) = props.entries.iter().find(|e| e.start < pos && pos < e.end) {
                pos = e.end;
            }
            let value = if key == PROTOCOL_MAP { "PLAINTEXT:PLAINTEXT" } else { "PLAINTEXT://:9092" };
            text.insert_str(pos, &format!("{key}{sep}{value}\n"));
            let props = Properties::parse(&text).unwrap();
            let count = props.entries.iter().filter(|e| e.key == key).count();
            let result = apply_listener(&text, &edit());
            if count > 1 {
                prop_assert!(matches!(result, Err(EditError { reason: EditReason::DuplicateKey { .. }, .. })), "{:?}", result);
                prop_assert!(remove_listener(&text, "PRIVATELINK").is_err());
            }
            prop_assert!(count >= 1);
        }
    }
}
