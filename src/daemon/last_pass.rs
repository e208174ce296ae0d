//! The state file `status` reads: `<state_dir>/last-pass.json`, written after every pass.

use std::path::Path;

use serde::Serialize;

use crate::config::Config;

/// What `status` reads about the last pass (written to `<state_dir>/last-pass.json`).
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub(crate) struct LastPass {
    /// Unix time the pass finished.
    pub finished_unix: u64,
    /// Whether it succeeded.
    pub ok: bool,
    /// One-line summary or error.
    pub summary: String,
    /// Claimed port, when known.
    pub port: Option<u16>,
}

/// Name of the state file inside the state directory.
pub(crate) const LAST_PASS_FILE: &str = "last-pass.json";

/// Reads the last pass recorded by a daemon, if any.
pub(crate) fn read_last_pass(config: &Config) -> Option<LastPass> {
    let text = std::fs::read_to_string(config.state_dir().join(LAST_PASS_FILE)).ok()?;
    serde_json::from_str(&text).ok()
}

pub(super) fn record_last_pass(dir: &Path, last: &LastPass) {
    let write = || -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        let tmp = dir.join(format!(".{LAST_PASS_FILE}.tmp"));
        std::fs::write(&tmp, serde_json::to_vec_pretty(last).unwrap_or_default())?;
        std::fs::rename(&tmp, dir.join(LAST_PASS_FILE))
    };
    if let Err(e) = write() {
        tracing::warn!(dir = %dir.display(), error = %e, "cannot record the last pass for `status`");
    }
}
