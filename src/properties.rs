//! Byte-preserving editor for Kafka's `server.properties`, plus an atomic file writer.
//!
//! The agent adds one listener (the PrivateLink one) to a broker configuration that
//! operators and other tooling also own. A parse-and-serialise round trip would reorder
//! keys, drop comments and normalise escapes, turning a one-entry change into a diff no
//! operator can review. This module instead parses the text with the rules of
//! `java.util.Properties.load` (which Kafka uses), remembers where every entry sits in
//! the original bytes, and rewrites only the values of the three keys it manages:
//! `listeners`, `advertised.listeners` and `listener.security.protocol.map`. Every other
//! byte (comments, blank lines, other entries, order, line endings) is left as it was.
//!
//! Anything ambiguous (a managed key set twice, a listener entry that is not
//! `NAME://host:port`, a malformed `\uXXXX` escape) is an error, never a guess: a broker
//! that fails to restart because of the agent is worse than an agent that refuses.
//! Besides malformed text, [`apply_listener`] refuses when `listeners` is unset (Kafka's
//! implicit default should not be frozen) and when `listener.security.protocol.map` is
//! unset while `controller.listener.names` names a listener outside Kafka's default map
//! (on KRaft, writing the map would drop the implicit PLAINTEXT mapping Kafka gives
//! controller listeners while the key is unset).
//!
//! [`write_atomic`] replaces a file through a temp file, fsync and rename, keeping owner
//! and mode, so the broker never reads a half-written configuration.

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

pub(crate) const LISTENERS: &str = "listeners";
pub(crate) const ADVERTISED_LISTENERS: &str = "advertised.listeners";
pub(crate) const PROTOCOL_MAP: &str = "listener.security.protocol.map";
pub(crate) const CONTROLLER_LISTENER_NAMES: &str = "controller.listener.names";
pub(crate) const INTER_BROKER_LISTENER_NAME: &str = "inter.broker.listener.name";

/// Kafka's value of `listener.security.protocol.map` when the key is not set: each
/// `SecurityProtocol` maps to itself.
pub(crate) const DEFAULT_PROTOCOL_MAP: [&str; 4] =
    ["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"];

/// Why an edit of properties text was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EditReason {
    /// A `\u` escape not followed by four hex digits (Java's loader throws on it).
    #[error("malformed \\uxxxx escape")]
    MalformedEscape,
    /// A managed key is set more than once, so which value wins depends on the reader.
    #[error("key {key:?} appears twice (lines {first} and {second})")]
    DuplicateKey {
        /// The duplicated key.
        key: String,
        /// Line of the first occurrence.
        first: usize,
        /// Line of the second occurrence.
        second: usize,
    },
    /// `listeners` is absent; Kafka's implicit default is not something to freeze.
    #[error("listeners is not set; refusing to guess the broker's listeners")]
    ListenersNotSet,
    /// A listener list is set but holds no entries.
    #[error("{key} is empty")]
    EmptyList {
        /// The key with the empty value.
        key: &'static str,
    },
    /// An entry of a listener list is not `NAME://host:port`.
    #[error("{key}: entry {entry:?} is not NAME://host:port ({why})")]
    MalformedListener {
        /// The key holding the list.
        key: &'static str,
        /// The offending entry, trimmed.
        entry: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// The same listener name appears twice in one list.
    #[error("{key}: listener name {name:?} appears twice")]
    DuplicateListener {
        /// The key holding the list.
        key: &'static str,
        /// The repeated name.
        name: String,
    },
    /// An entry of `listener.security.protocol.map` is not `NAME:PROTOCOL`.
    #[error("listener.security.protocol.map: entry {entry:?} is not NAME:PROTOCOL")]
    MalformedProtocolMap {
        /// The offending entry, trimmed.
        entry: String,
    },
    /// Setting `listener.security.protocol.map` would drop the PLAINTEXT mapping that
    /// KRaft implies for controller listeners while the key is unset.
    #[error(
        "listener.security.protocol.map is not set and controller listener {name:?} relies on \
         Kafka's implicit mapping; refusing to write a map without it"
    )]
    ImplicitControllerMapping {
        /// The controller listener name.
        name: String,
    },
    /// Removing the listener would leave a list empty.
    #[error("removing {name:?} would leave {key} empty")]
    WouldEmpty {
        /// The key that would become empty.
        key: &'static str,
        /// The listener being removed.
        name: String,
    },
    /// The listener to remove carries inter-broker traffic.
    #[error("{name:?} is the inter.broker.listener.name; refusing to remove it")]
    InterBrokerListener {
        /// The listener being removed.
        name: String,
    },
    /// The requested edit itself is invalid (bad name, host or protocol).
    #[error("invalid listener edit: {0}")]
    InvalidEdit(String),
}

/// An edit of properties text was refused; `line` is the 1-based physical line, if any.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{reason}", line_prefix(*.line))]
pub struct EditError {
    /// 1-based physical line the problem is on, when it is on one.
    pub line: Option<usize>,
    /// What is wrong.
    pub reason: EditReason,
}

fn line_prefix(line: Option<usize>) -> String {
    line.map(|n| format!("line {n}: ")).unwrap_or_default()
}

impl EditError {
    fn at(line: usize, reason: EditReason) -> Self {
        EditError {
            line: Some(line),
            reason,
        }
    }

    fn whole_file(reason: EditReason) -> Self {
        EditError { line: None, reason }
    }
}

/// Failure of a file-level operation; every variant names the path involved.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PropertiesError {
    /// The file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// File being read.
        path: PathBuf,
        /// Underlying error.
        #[source]
        source: io::Error,
    },
    /// The file is not UTF-8.
    #[error("cannot read {}: not valid UTF-8 at byte offset {offset}", path.display())]
    Decode {
        /// File being read.
        path: PathBuf,
        /// Offset of the first invalid byte.
        offset: usize,
    },
    /// The file's contents could not be edited safely.
    #[error("cannot edit {}: {source}", path.display())]
    Edit {
        /// File being edited.
        path: PathBuf,
        /// Why the edit was refused.
        #[source]
        source: EditError,
    },
    /// The existing file could not be inspected (stat or symlink resolution).
    #[error("cannot inspect {}: {source}", path.display())]
    Inspect {
        /// File being inspected.
        path: PathBuf,
        /// Underlying error.
        #[source]
        source: io::Error,
    },
    /// Atomically replacing the file failed at `step`; the file itself is untouched
    /// unless the failing step is the final directory fsync.
    #[error("cannot write {}: {step}: {source}", path.display())]
    Write {
        /// File being replaced (the target or the backup).
        path: PathBuf,
        /// Which step failed, e.g. "fsync temp file /etc/kafka/.server.properties.kplink-tmp.42".
        step: String,
        /// Underlying error.
        #[source]
        source: io::Error,
    },
}

impl PropertiesError {
    /// Attaches the file's path to a refusal from the pure editor.
    pub fn from_edit(path: &Path, source: EditError) -> Self {
        PropertiesError::Edit {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// One physical line: `start..content_end` is its text, `content_end..end` its terminator.
#[derive(Debug, Clone, Copy)]
struct PhysLine {
    start: usize,
    content_end: usize,
    end: usize,
}

/// One key/value entry (a logical line) and where it sits in the text.
#[derive(Debug, Clone)]
struct Entry {
    key: String,
    value: String,
    /// 1-based number of its first physical line.
    line: usize,
    /// First byte of its first physical line (including leading whitespace).
    // Whole-entry spans are only needed by the tests' byte-preservation checks.
    #[cfg_attr(not(test), allow(dead_code))]
    start: usize,
    /// Where the value is written: just after the separator (or key, if there is none).
    value_start: usize,
    /// Content end of its last physical line: the value's bytes end here.
    value_end: usize,
    /// End of its last physical line, terminator included.
    #[cfg_attr(not(test), allow(dead_code))]
    end: usize,
    /// The entry is a bare key with no separator, so writing a value must add one.
    needs_separator: bool,
}

/// Parsed view of a properties text; keeps spans so edits can preserve every other byte.
#[derive(Debug, Clone)]
pub struct Properties {
    entries: Vec<Entry>,
    /// Line ending for appended lines: CRLF if the first line ends with CRLF, else LF.
    eol: &'static str,
    /// The text ends inside a continuation (odd backslashes on the last line), so text
    /// appended after one line ending would join the last entry.
    dangling_continuation: bool,
}

fn is_java_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\x0c')
}

fn physical_lines(text: &str) -> Vec<PhysLine> {
    let bytes = text.as_bytes();
    let mut lines = Vec::new();
    let (mut start, mut i) = (0, 0);
    while i < bytes.len() {
        let end = match bytes[i] {
            b'\n' => i + 1,
            b'\r' if bytes.get(i + 1) == Some(&b'\n') => i + 2,
            b'\r' => i + 1,
            _ => {
                i += 1;
                continue;
            }
        };
        lines.push(PhysLine {
            start,
            content_end: i,
            end,
        });
        start = end;
        i = end;
    }
    if start < bytes.len() {
        lines.push(PhysLine {
            start,
            content_end: bytes.len(),
            end: bytes.len(),
        });
    }
    lines
}

/// Java's `loadConvert`: resolves escapes. `Err` carries the byte offset of a bad `\u`.
fn unescape(chars: &[(char, usize)]) -> Result<String, usize> {
    // Collected as UTF-16 because `\uXXXX` escapes are UTF-16 code units and a
    // surrogate pair may be written as two escapes.
    let mut units: Vec<u16> = Vec::with_capacity(chars.len());
    let mut i = 0;
    while i < chars.len() {
        let (c, offset) = chars[i];
        i += 1;
        if c != '\\' {
            let mut buf = [0u16; 2];
            units.extend_from_slice(c.encode_utf16(&mut buf));
            continue;
        }
        // A lone trailing backslash cannot survive line reading; drop it like Java.
        let Some(&(escaped, _)) = chars.get(i) else {
            break;
        };
        i += 1;
        let resolved = match escaped {
            'u' => {
                let digits = chars.get(i..i + 4).ok_or(offset)?;
                let mut unit: u16 = 0;
                for &(d, _) in digits {
                    // to_digit(16) < 16, so the cast and the shift cannot overflow.
                    unit = (unit << 4) | d.to_digit(16).ok_or(offset)? as u16;
                }
                i += 4;
                units.push(unit);
                continue;
            }
            't' => '\t',
            'n' => '\n',
            'r' => '\r',
            'f' => '\x0c',
            other => other,
        };
        let mut buf = [0u16; 2];
        units.extend_from_slice(resolved.encode_utf16(&mut buf));
    }
    // Java strings may hold unpaired surrogates; Rust strings cannot. Such a key or
    // value is never a managed one, and lossy decoding is deterministic, so comparisons
    // between two parses stay exact.
    Ok(String::from_utf16_lossy(&units))
}

/// The logical line starting at `first_char` on physical line `*i`: each char with its byte
/// offset in `text`, continuation backslashes removed. Leaves `*i` on its last physical line;
/// the flag says whether the file ended in a continuation.
fn logical_line(
    text: &str,
    lines: &[PhysLine],
    i: &mut usize,
    first_char: usize,
) -> (Vec<(char, usize)>, bool) {
    let mut chars: Vec<(char, usize)> = Vec::new();
    let mut segment_start = first_char;
    loop {
        let segment = &text[segment_start..lines[*i].content_end];
        chars.extend(segment.char_indices().map(|(o, c)| (c, segment_start + o)));
        let backslashes = segment.bytes().rev().take_while(|&b| b == b'\\').count();
        if backslashes % 2 == 0 {
            return (chars, false);
        }
        chars.pop();
        if *i + 1 == lines.len() {
            return (chars, true);
        }
        *i += 1;
        let next = lines[*i];
        let next_content = &text[next.start..next.content_end];
        segment_start = next.content_end - next_content.trim_start_matches(is_java_space).len();
        // A continuation onto a blank line ends the logical line (Java does the same); the
        // loop sees an empty segment and stops.
    }
}

/// Java's `load0` split: the key ends at the first unescaped '=', ':' or whitespace; the value
/// starts after the whitespace and at most one separator that follow. Returns (key length,
/// value start), in chars.
fn split_key_value(chars: &[(char, usize)]) -> (usize, usize) {
    let n = chars.len();
    let (mut key_len, mut value_start, mut has_sep, mut escaped) = (0, n, false, false);
    while key_len < n {
        let c = chars[key_len].0;
        if !escaped && (c == '=' || c == ':') {
            value_start = key_len + 1;
            has_sep = true;
            break;
        }
        if !escaped && is_java_space(c) {
            value_start = key_len + 1;
            break;
        }
        escaped = c == '\\' && !escaped;
        key_len += 1;
    }
    while value_start < n {
        let c = chars[value_start].0;
        if !is_java_space(c) {
            if !has_sep && (c == '=' || c == ':') {
                has_sep = true;
            } else {
                break;
            }
        }
        value_start += 1;
    }
    (key_len, value_start)
}

impl Properties {
    /// Parses `text` with `java.util.Properties.load` semantics.
    ///
    /// Fails only on a malformed `\uXXXX` escape, which Java rejects too.
    pub fn parse(text: &str) -> Result<Properties, EditError> {
        let lines = physical_lines(text);
        let line_of = |offset: usize| lines.partition_point(|l| l.end <= offset) + 1;
        let mut entries = Vec::new();
        let mut dangling_continuation = false;
        let mut i = 0;
        while i < lines.len() {
            let first = i;
            let line = lines[i];
            let content = &text[line.start..line.content_end];
            let body = content.trim_start_matches(is_java_space);
            if body.is_empty() || body.starts_with('#') || body.starts_with('!') {
                i += 1;
                continue;
            }
            let first_char = line.content_end - body.len();
            let (chars, dangling) = logical_line(text, &lines, &mut i, first_char);
            dangling_continuation |= dangling;
            let last = lines[i];
            i += 1;
            let (key_len, value_start) = split_key_value(&chars);
            let bad_escape =
                |offset: usize| EditError::at(line_of(offset), EditReason::MalformedEscape);
            let key = unescape(&chars[..key_len]).map_err(bad_escape)?;
            let value = unescape(&chars[value_start..]).map_err(bad_escape)?;
            // The value is rewritten right after the last key/separator char, which
            // drops any continuation between separator and value.
            let value_raw_start = match value_start.checked_sub(1).map(|k| chars[k]) {
                Some((c, offset)) => offset + c.len_utf8(),
                None => first_char,
            };
            entries.push(Entry {
                key,
                value,
                line: first + 1,
                start: line.start,
                value_start: value_raw_start,
                value_end: last.content_end,
                end: last.end,
                needs_separator: value_start == key_len,
            });
        }
        let eol = match lines.first() {
            Some(l) if &text[l.content_end..l.end] == "\r\n" => "\r\n",
            _ => "\n",
        };
        Ok(Properties {
            entries,
            eol,
            dangling_continuation,
        })
    }

    /// Unescaped value of the LAST occurrence of key (Java's last-wins), or None.
    pub fn get(&self, key: &str) -> Option<String> {
        self.entries
            .iter()
            .rev()
            .find(|e| e.key == key)
            .map(|e| e.value.clone())
    }

    /// The only entry for `key`, or an error naming both lines if it appears twice.
    fn unique(&self, key: &str) -> Result<Option<&Entry>, EditError> {
        let mut found = self.entries.iter().filter(|e| e.key == key);
        let first = found.next();
        if let (Some(first), Some(second)) = (first, found.next()) {
            return Err(EditError::at(
                second.line,
                EditReason::DuplicateKey {
                    key: key.to_string(),
                    first: first.line,
                    second: second.line,
                },
            ));
        }
        Ok(first)
    }

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

/// Escapes a value the way Java's `store` would need it to load back identically.
fn escape_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for (i, c) in value.chars().enumerate() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\x0c' => out.push_str("\\f"),
            // Leading whitespace would be taken as part of the separator, and a leading
            // '=' or ':' too when the separator is only whitespace.
            ' ' | '=' | ':' if i == 0 => {
                out.push('\\');
                out.push(c);
            }
            // Kafka loads server.properties as ISO-8859-1, so anything beyond printable
            // ASCII is written as \uXXXX, which reads back the same in any encoding.
            c if c.is_ascii() && !c.is_ascii_control() => out.push(c),
            c => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    out.push_str(&format!("\\u{unit:04X}"));
                }
            }
        }
    }
    out
}

/// Pending changes to a text: value replacements of existing entries, appended keys.
struct Edits<'a> {
    text: &'a str,
    eol: &'static str,
    replacements: Vec<(usize, usize, String)>,
    appends: Vec<(&'static str, String)>,
}

impl<'a> Edits<'a> {
    fn new(text: &'a str, props: &Properties) -> Self {
        Edits {
            text,
            eol: props.eol,
            replacements: Vec::new(),
            appends: Vec::new(),
        }
    }

    fn set_value(&mut self, entry: &Entry, value: &str) {
        let mut written = String::new();
        if entry.needs_separator {
            written.push('=');
        }
        written.push_str(&escape_value(value));
        self.replacements
            .push((entry.value_start, entry.value_end, written));
    }

    fn append(&mut self, key: &'static str, value: String) {
        self.appends.push((key, value));
    }

    fn render(mut self) -> Result<Option<String>, EditError> {
        if self.replacements.is_empty() && self.appends.is_empty() {
            return Ok(None);
        }
        self.replacements.sort_by_key(|r| r.0);
        let mut out = String::with_capacity(self.text.len() + 256);
        let mut pos = 0;
        for (start, end, value) in &self.replacements {
            out.push_str(&self.text[pos..*start]);
            out.push_str(value);
            pos = *end;
        }
        out.push_str(&self.text[pos..]);
        if self.appends.is_empty() {
            return Ok(Some(out));
        }
        let dangling = Properties::parse(&out)?.dangling_continuation;
        if !out.is_empty() && !out.ends_with('\n') && !out.ends_with('\r') {
            out.push_str(self.eol);
        }
        if dangling {
            // The last line ends in a continuation backslash: a blank line ends that
            // entry, else our first key would be read as part of its value. After a
            // lone CR, a lone LF would merge into one CRLF ending instead.
            out.push_str(if out.ends_with('\r') && self.eol == "\n" {
                "\r\n"
            } else {
                self.eol
            });
        }
        for (key, value) in &self.appends {
            out.push_str(key);
            out.push('=');
            out.push_str(&escape_value(value));
            out.push_str(self.eol);
        }
        Ok(Some(out))
    }
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

/// Key of the broker's rack (Kafka's `broker.rack`).
pub const BROKER_RACK: &str = "broker.rack";

/// Sets `broker.rack` to `rack` (the existing entry's value in place, else a new line at the
/// end), changing nothing else; `Ok(None)` when it already says so. Refuses a file where the key
/// appears twice, as for the listener keys.
pub fn apply_rack(text: &str, rack: &str) -> Result<Option<String>, EditError> {
    let props = Properties::parse(text)?;
    let mut edits = Edits::new(text, &props);
    match props.unique(BROKER_RACK)? {
        Some(entry) if entry.value == rack => return Ok(None),
        Some(entry) => edits.set_value(entry, rack),
        None => edits.append(BROKER_RACK, rack.to_string()),
    }
    edits.render()
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
    let protocol = props
        .get("listener.security.protocol.map")
        .and_then(|map| {
            csv(&map).find_map(|entry| {
                let (n, p) = entry.split_once(':')?;
                n.trim()
                    .eq_ignore_ascii_case(name)
                    .then(|| p.trim().to_ascii_uppercase())
            })
        })
        .unwrap_or_else(|| default_protocol.to_ascii_uppercase());
    if protocol != "SSL" && protocol != "SASL_SSL" {
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

/// Reads a file as UTF-8 (error names path).
pub fn read(path: &Path) -> Result<String, PropertiesError> {
    let bytes = fs::read(path).map_err(|source| PropertiesError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    String::from_utf8(bytes).map_err(|e| PropertiesError::Decode {
        path: path.to_path_buf(),
        offset: e.utf8_error().valid_up_to(),
    })
}

/// Reads `path`, applies [`apply_listener`] and writes the result with [`write_atomic`].
///
/// Returns whether the file was changed.
pub fn apply_listener_to_file(
    path: &Path,
    edit: &ListenerEdit,
    backup: Option<&Path>,
) -> Result<bool, PropertiesError> {
    let text = read(path)?;
    let edited = apply_listener(&text, edit).map_err(|source| PropertiesError::Edit {
        path: path.to_path_buf(),
        source,
    })?;
    match edited {
        Some(new_text) => write_atomic(path, &new_text, backup).map(|()| true),
        None => Ok(false),
    }
}

/// Reads `path`, applies [`remove_listener`] and writes the result with [`write_atomic`].
///
/// Returns whether the file was changed.
pub fn remove_listener_from_file(
    path: &Path,
    name: &str,
    backup: Option<&Path>,
) -> Result<bool, PropertiesError> {
    let text = read(path)?;
    let edited = remove_listener(&text, name).map_err(|source| PropertiesError::Edit {
        path: path.to_path_buf(),
        source,
    })?;
    match edited {
        Some(new_text) => write_atomic(path, &new_text, backup).map(|()| true),
        None => Ok(false),
    }
}

/// Atomic replace: write temp file in the same directory (name like `.server.properties.kplink-tmp.<pid>`),
/// write_all + fsync, set the same mode and owner/group as the existing file,
/// rename over the target, fsync the directory.
/// Before that, if `backup` is Some(backup_path), atomically write the PREVIOUS content to backup_path the same way.
/// On any failure, remove the temp file; the target is never half-written.
///
/// The target must exist. A symlinked target is resolved, so the link stays a link and
/// the file it points to is replaced. The backup gets the target's owner and mode,
/// since it holds the same (possibly secret) content.
pub fn write_atomic(
    path: &Path,
    new_contents: &str,
    backup: Option<&Path>,
) -> Result<(), PropertiesError> {
    let inspect_err = |source| PropertiesError::Inspect {
        path: path.to_path_buf(),
        source,
    };
    let link = fs::symlink_metadata(path).map_err(inspect_err)?;
    let target = if link.file_type().is_symlink() {
        fs::canonicalize(path).map_err(inspect_err)?
    } else {
        path.to_path_buf()
    };
    let meta = fs::metadata(&target).map_err(inspect_err)?;
    if let Some(backup) = backup {
        let previous = fs::read(&target).map_err(|source| PropertiesError::Read {
            path: target.clone(),
            source,
        })?;
        replace_file(backup, &previous, &meta)?;
    }
    replace_file(&target, new_contents.as_bytes(), &meta)?;
    tracing::debug!(path = %target.display(), bytes = new_contents.len(), "replaced file atomically");
    Ok(())
}

/// Default backup path beside the file: `<file>.kplink.bak`.
pub fn backup_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(".kplink.bak");
    PathBuf::from(name)
}

/// Removes temp files of `file_name` left by runs killed mid-write (kill -9 runs no destructor):
/// `.<file>.kplink-tmp.<pid>` whose process no longer exists. A live writer's file is left alone.
/// Best effort: a file that cannot be listed or removed is left for the next write.
fn remove_dead_temp_files(dir: &Path, file_name: &std::ffi::OsStr) {
    let prefix = format!(".{}.kplink-tmp.", file_name.to_string_lossy());
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(&prefix))
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// Removes the temp file when dropped unless it was renamed into place.
struct TempFile {
    path: PathBuf,
    renamed: bool,
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if self.renamed {
            return;
        }
        if let Err(e) = fs::remove_file(&self.path) {
            if e.kind() != io::ErrorKind::NotFound {
                tracing::warn!(path = %self.path.display(), error = %e, "cannot remove temp file");
            }
        }
    }
}

fn replace_file(dest: &Path, contents: &[u8], like: &fs::Metadata) -> Result<(), PropertiesError> {
    let fail = |step: String| {
        move |source: io::Error| PropertiesError::Write {
            path: dest.to_path_buf(),
            step,
            source,
        }
    };
    let file_name = dest.file_name().ok_or_else(|| {
        fail("resolve file name".into())(io::Error::new(
            io::ErrorKind::InvalidInput,
            "path has no file name",
        ))
    })?;
    let dir = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut tmp_name = OsString::from(".");
    tmp_name.push(file_name);
    tmp_name.push(format!(".kplink-tmp.{}", std::process::id()));
    let tmp_path = dir.join(tmp_name);
    let shown = tmp_path.display();
    remove_dead_temp_files(dir, file_name);

    // A temp file left by a crashed run that had the same pid would block create_new.
    match fs::remove_file(&tmp_path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            return Err(fail(format!("remove stale temp file {shown}"))(e))
        }
        _ => {}
    }
    // 0600 until the final mode is set, so secrets in the file are never exposed.
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp_path)
        .map_err(fail(format!("create temp file {shown}")))?;
    let mut tmp = TempFile {
        path: tmp_path.clone(),
        renamed: false,
    };
    file.write_all(contents)
        .map_err(fail(format!("write temp file {shown}")))?;
    let created = file
        .metadata()
        .map_err(fail(format!("stat temp file {shown}")))?;
    // Skipped when already right, so a non-root agent does not need CAP_CHOWN.
    if created.uid() != like.uid() || created.gid() != like.gid() {
        std::os::unix::fs::fchown(&file, Some(like.uid()), Some(like.gid()))
            .map_err(fail(format!("chown temp file {shown}")))?;
    }
    // After fchown, which may clear set-id bits.
    file.set_permissions(Permissions::from_mode(like.mode() & 0o7777))
        .map_err(fail(format!("chmod temp file {shown}")))?;
    file.sync_all()
        .map_err(fail(format!("fsync temp file {shown}")))?;
    drop(file);
    fs::rename(&tmp_path, dest).map_err(fail(format!("rename temp file {shown}")))?;
    tmp.renamed = true;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(fail(format!("fsync directory {}", dir.display())))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn temp_files_of_killed_writers_are_removed_and_live_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("server.properties");
        std::fs::write(&path, "a=1\n").unwrap();
        // pid 0 never names a user process; our parent is alive.
        let dead = dir.path().join(".server.properties.kplink-tmp.0");
        let live = dir.path().join(format!(
            ".server.properties.kplink-tmp.{}",
            std::os::unix::process::parent_id()
        ));
        let other = dir.path().join(".other.kplink-tmp.0");
        for f in [&dead, &live, &other] {
            std::fs::write(f, "x").unwrap();
        }
        write_atomic(&path, "a=2\n", None).unwrap();
        assert!(!dead.exists(), "a killed writer's temp file is removed");
        assert!(
            live.exists() && other.exists(),
            "a live writer's and another file's stay"
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "a=2\n");
    }

    #[test]
    fn rack_is_set_in_place_or_appended_and_nothing_else_moves() {
        let text = "# top\nbroker.rack = use1-az2\nlisteners=PLAINTEXT://:9092\n";
        assert_eq!(
            apply_rack(text, "use1-az6").unwrap().unwrap(),
            "# top\nbroker.rack = use1-az6\nlisteners=PLAINTEXT://:9092\n"
        );
        assert_eq!(apply_rack(text, "use1-az2").unwrap(), None);
        let bare = "listeners=PLAINTEXT://:9092";
        assert_eq!(
            apply_rack(bare, "use1-az1").unwrap().unwrap(),
            "listeners=PLAINTEXT://:9092\nbroker.rack=use1-az1\n"
        );
        let twice = "broker.rack=a\nbroker.rack=b\n";
        assert!(apply_rack(twice, "c").is_err());
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
    fn java_parsing_semantics() {
        let text =
            "a\\\n   b = c\n  # comment \\\nd:e\\\n\nf\n\\u0041\\tx\\ y=\\u00e9\\\\\ng=h\\\n";
        let p = Properties::parse(text).unwrap();
        assert_eq!(p.get("ab").as_deref(), Some("c"));
        assert_eq!(p.get("d").as_deref(), Some("e"));
        assert_eq!(p.get("f").as_deref(), Some(""));
        assert_eq!(p.get("A\tx y").as_deref(), Some("é\\"));
        assert_eq!(p.get("g").as_deref(), Some("h"));
        assert!(p.dangling_continuation);
        let p = Properties::parse("k  =  =v\r\nk2 :v2\rk3\tv3 \\\n   x").unwrap();
        assert_eq!(p.get("k").as_deref(), Some("=v"));
        assert_eq!(p.get("k2").as_deref(), Some("v2"));
        assert_eq!(p.get("k3").as_deref(), Some("v3 x"));
        assert_eq!(p.eol, "\r\n");
        assert_eq!(
            Properties::parse("a=\\uD83C\\uDF89")
                .unwrap()
                .get("a")
                .as_deref(),
            Some("🎉")
        );
        assert_eq!(
            Properties::parse("a=1\na=2\n").unwrap().get("a").as_deref(),
            Some("2")
        );
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

    #[test]
    fn escape_value_round_trips() {
        for v in [" lead", "=x", ":x", "a\\b", "t\tn\nr\rf\x0c", "é🎉", "#!=:"] {
            let text = format!("k={}", escape_value(v));
            assert_eq!(
                Properties::parse(&text).unwrap().get("k").as_deref(),
                Some(v),
                "{text:?}"
            );
        }
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

    // ---- write_atomic ----

    fn no_temp_files(dir: &Path) -> bool {
        fs::read_dir(dir).unwrap().all(|e| {
            !e.unwrap()
                .file_name()
                .to_string_lossy()
                .contains("kplink-tmp")
        })
    }

    #[test]
    fn write_atomic_replaces_and_backs_up() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("server.properties");
        fs::write(&path, "old=1\n").unwrap();
        fs::set_permissions(&path, Permissions::from_mode(0o640)).unwrap();
        let backup = backup_path(&path);
        assert_eq!(backup, dir.path().join("server.properties.kplink.bak"));

        write_atomic(&path, "new=2\n", Some(&backup)).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "new=2\n");
        assert_eq!(fs::read_to_string(&backup).unwrap(), "old=1\n");
        for p in [&path, &backup] {
            assert_eq!(
                fs::metadata(p).unwrap().mode() & 0o7777,
                0o640,
                "{}",
                p.display()
            );
        }
        assert!(no_temp_files(dir.path()));

        // Without a backup the old backup stays as it was.
        write_atomic(&path, "newer=3\n", None).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "newer=3\n");
        assert_eq!(fs::read_to_string(&backup).unwrap(), "old=1\n");
        assert!(no_temp_files(dir.path()));
    }

    #[test]
    fn write_atomic_through_symlink_keeps_the_link() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real.properties");
        let link = dir.path().join("server.properties");
        fs::write(&real, "a=1\n").unwrap();
        std::os::unix::fs::symlink(&real, &link).unwrap();
        write_atomic(&link, "a=2\n", None).unwrap();
        assert!(fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(fs::read_to_string(&real).unwrap(), "a=2\n");
    }

    #[test]
    fn write_atomic_failure_leaves_target_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("server.properties");
        fs::write(&path, "old=1\n").unwrap();
        let bad_backup = dir
            .path()
            .join("missing-dir")
            .join("server.properties.kplink.bak");
        let err = write_atomic(&path, "new=2\n", Some(&bad_backup)).unwrap_err();
        assert!(matches!(err, PropertiesError::Write { .. }), "{err:?}");
        assert!(
            err.to_string().starts_with(&format!(
                "cannot write {}: create temp file",
                bad_backup.display()
            )),
            "{err}"
        );
        assert_eq!(fs::read_to_string(&path).unwrap(), "old=1\n");
        assert!(no_temp_files(dir.path()));

        let missing = dir.path().join("missing-dir").join("server.properties");
        let err = write_atomic(&missing, "new=2\n", None).unwrap_err();
        assert!(
            err.to_string().contains(&missing.display().to_string()),
            "{err}"
        );
    }

    #[test]
    fn read_names_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("server.properties");
        fs::write(&path, b"ok=1\nbad=\xff\n").unwrap();
        let err = read(&path).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "cannot read {}: not valid UTF-8 at byte offset 9",
                path.display()
            )
        );
        let err = read(&dir.path().join("nope")).unwrap_err();
        assert!(err.to_string().starts_with("cannot read "), "{err}");
    }

    #[test]
    fn file_level_apply_and_remove() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("server.properties");
        let original =
            "listeners=PLAINTEXT://:9092\nlistener.security.protocol.map=PLAINTEXT:PLAINTEXT\n";
        fs::write(&path, original).unwrap();
        let backup = backup_path(&path);
        assert!(apply_listener_to_file(&path, &edit(), Some(&backup)).unwrap());
        assert!(!apply_listener_to_file(&path, &edit(), Some(&backup)).unwrap());
        assert_eq!(fs::read_to_string(&backup).unwrap(), original);
        assert_eq!(
            advertised_endpoint(&read(&path).unwrap(), "PRIVATELINK")
                .unwrap()
                .as_deref(),
            Some("kafka-use1-az1.orders.example.internal:10003")
        );
        assert!(remove_listener_from_file(&path, "PRIVATELINK", None).unwrap());

        fs::write(&path, "a=1\nlisteners=A://:1\nlisteners=B://:2\n").unwrap();
        let err = apply_listener_to_file(&path, &edit(), None).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "cannot edit {}: line 3: key \"listeners\" appears twice (lines 2 and 3)",
                path.display()
            )
        );
    }
}
