//! Writing an edit back into properties text without touching any other byte: values of
//! existing entries replaced in place, new keys appended (escaped the way Java's loader reads
//! them back), and `broker.rack` set that way.

use super::{EditError, Entry, Properties};

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
pub(super) struct Edits<'a> {
    text: &'a str,
    eol: &'static str,
    replacements: Vec<(usize, usize, String)>,
    appends: Vec<(&'static str, String)>,
}

impl<'a> Edits<'a> {
    pub(super) fn new(text: &'a str, props: &Properties) -> Self {
        Edits {
            text,
            eol: props.eol,
            replacements: Vec::new(),
            appends: Vec::new(),
        }
    }

    pub(super) fn set_value(&mut self, entry: &Entry, value: &str) {
        let mut written = String::new();
        if entry.needs_separator {
            written.push('=');
        }
        written.push_str(&escape_value(value));
        self.replacements
            .push((entry.value_start, entry.value_end, written));
    }

    pub(super) fn append(&mut self, key: &'static str, value: String) {
        self.appends.push((key, value));
    }

    pub(super) fn render(mut self) -> Result<Option<String>, EditError> {
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

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn escape_value_round_trips() {
        for v in [" lead", "=x", ":x", "a\\b", "t\tn\nr\rf\x0c", "é🎉", "#!=:"] {
            let text = format!("k={}", escape_value(v));
            assert_eq!(
                Properties::parse(&text).unwrap().get("k").as_deref(),
                Some(v),
                "{text:?}"
            );
            // Kafka reads the file as ISO-8859-1: what the agent writes is plain ASCII.
            assert!(escape_value(v).is_ascii(), "{v:?}");
        }
        assert_eq!(escape_value("é\x01~"), "\\u00E9\\u0001~");
    }
}
