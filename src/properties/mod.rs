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
//!
//! Split by job: this file holds the parser (the [`Properties`] view with every entry's span)
//! and the refusals of the pure editor ([`EditError`]); `edits` writes values back in place and
//! appends keys (and sets `broker.rack`); `listeners` holds the listener edits (parsing
//! `NAME://host:port` lists, [`apply_listener`], [`remove_listener`] and the readers of the
//! listener keys); `file` reads the file and replaces it atomically ([`PropertiesError`]);
//! `cache` keeps the file as last read, so a pass reads it once ([`CachedFile`]).

mod cache;
mod edits;
mod file;
mod listeners;

#[cfg(test)]
mod edge_tests;

pub use cache::CachedFile;
pub use edits::{apply_rack, BROKER_RACK};
pub use file::{
    apply_listener_to_file, backup_path, read, remove_listener_from_file, write_atomic,
    PropertiesError,
};
pub use listeners::{
    advertised_endpoint, apply_listener, bound_addresses, is_tls, listener_protocol,
    missing_keystore, remove_listener, ListenerEdit,
};

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
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
