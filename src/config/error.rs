//! Why a configuration file was rejected ([`ConfigError`]), and TOML and serde errors turned
//! into one line naming the file, line, column and dotted key.

use std::path::{Path, PathBuf};

/// Why a configuration file was rejected. Each message is one line naming the file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config {path}: {source}")]
    Read {
        /// The config file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// TOML syntax error, unknown key, wrong type or a value its type rejects (port range,
    /// security protocol, address).
    #[error("invalid config {path}:{line}:{column}: {message}")]
    Parse {
        /// The config file.
        path: PathBuf,
        /// 1-based line of the offending item.
        line: usize,
        /// 1-based column of the offending item.
        column: usize,
        /// What is wrong, from the TOML parser; starts with the dotted key (`nlb.port_range: `)
        /// when the error lies in a value or in a table (`nlb: missing field ...`).
        message: String,
    },
    /// A value parsed but is not acceptable.
    #[error("invalid config {path}: {key}: {reason}")]
    Invalid {
        /// The config file.
        path: PathBuf,
        /// Dotted key, e.g. `nlb.port_range`.
        key: &'static str,
        /// What is wrong.
        reason: String,
    },
}

/// A TOML or serde error as one line with file, line and column, naming the dotted key when the
/// error lies in a value or table (serde's message alone would not say which key).
pub(super) fn parse_error(text: &str, path: &Path, e: &toml::de::Error) -> ConfigError {
    let offset = e.span().map(|span| span.start);
    let (line, column) = offset.map_or((1, 1), |at| line_col(text, at));
    let message = e.message().trim();
    let message = match offset.and_then(|at| key_at(text, at)) {
        // A compiled section's refusal names its own key (`nlb.load_balancer_arns: …`).
        Some(key) if message.starts_with(&format!("{key}.")) => message.to_string(),
        Some(key) => format!("{key}: {message}"),
        None => message.to_string(),
    };
    ConfigError::Parse {
        path: path.to_path_buf(),
        line,
        column,
        message: one_line(&message),
    }
}

/// The dotted key of the innermost value or table whose span holds `offset` (`None` if the text
/// is not valid TOML or only the document as a whole holds it, e.g. an unknown top-level key).
fn key_at(text: &str, offset: usize) -> Option<String> {
    let doc = toml_edit::ImDocument::parse(text).ok()?;
    let mut path = Vec::new();
    find_key(doc.as_table(), offset, &mut path).then(|| path.join("."))
}

fn find_key(table: &dyn toml_edit::TableLike, offset: usize, path: &mut Vec<String>) -> bool {
    for (key, item) in table.iter() {
        path.push(key.to_string());
        let inner = item
            .as_table_like()
            .is_some_and(|t| find_key(t, offset, path));
        if inner || item.span().is_some_and(|span| span.contains(&offset)) {
            return true;
        }
        path.pop();
    }
    false
}

/// Error messages stay on one line whatever the offending value contains.
pub(super) fn one_line(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            let escaped: Vec<char> = if c.is_control() {
                c.escape_default().collect()
            } else {
                vec![c]
            };
            escaped
        })
        .collect()
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::test_util::{parse, parse_failure, MINIMAL};

    #[test]
    fn unknown_key_reports_its_line() {
        let text = "cluster = \"orders\"\n\n[broker]\nidtag = \"x\"\n";
        match parse(text).unwrap_err() {
            ConfigError::Parse { line, message, .. } => {
                assert_eq!(line, 4);
                assert!(message.contains("idtag"));
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn serde_errors_name_the_innermost_key() {
        // Dotted keys and inline tables name the same key as a [table] does.
        let dotted = MINIMAL.replace("[listener]", "daemon.metrics_listen = \"x\"\n[listener]");
        assert!(parse_failure(&dotted)
            .1
            .starts_with("daemon.metrics_listen: "));
        let inline = MINIMAL.replace("[listener]", "daemon = { interval = \"soon\" }\n[listener]");
        assert!(parse_failure(&inline).1.starts_with("daemon.interval: "));
        // A missing key names its table; an unknown top-level key is named by serde itself.
        let missing = MINIMAL.replace("load_balancer_arn", "#");
        let message = parse(&missing).unwrap_err().to_string();
        assert!(
            message.ends_with(
                "nlb: missing field `load_balancer_arn` (or `load_balancer_arns` for several NLBs)"
            ),
            "{message}"
        );
        let (_, message) = parse_failure("bogus = 1\n");
        assert!(message.starts_with("unknown field `bogus`"), "{message}");
        // Array elements name the array.
        let command = format!("{MINIMAL}[restart]\ncommand = [\"a\", 1]\n");
        assert!(parse_failure(&command).1.starts_with("restart.command: "));
    }
}
