//! A local note that this host may hold the cluster restart lock, so that a check of Kafka does
//! not look the lock up on AWS every time.
//!
//! Why: a holder that crashed mid-restart must find its lock again (to verify its broker and
//! release it; a `failed` lock never expires), but the lock is a target group that no pass reads,
//! so finding it costs a DescribeTargetGroups. The note is written *before* the lock is created
//! and removed once it is released or found gone, so "no note" means "no lock of this holder".
//! Where notes cannot be kept (the state directory is not writable), every check looks the lock
//! up, as without this file. A replacement instance has another holder string, so a lost disk
//! loses nothing: its predecessor's lock was never its own.

use std::path::{Path, PathBuf};

/// The note for one holder in the agent's state directory.
#[derive(Debug, Clone)]
pub struct LockMarker {
    dir: PathBuf,
    path: PathBuf,
}

impl LockMarker {
    /// The note for `holder` (`<broker id>/<instance id>`) in `dir`.
    pub fn new(dir: &Path, holder: &str) -> LockMarker {
        let name: String = holder
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        LockMarker {
            dir: dir.to_path_buf(),
            path: dir.join(format!("restart-lock.{name}")),
        }
    }

    /// Whether the lock must be looked up: the note is there, or notes cannot be kept.
    pub fn may_hold(&self) -> bool {
        self.path.exists() || !self.writable()
    }

    /// Notes that the lock is about to be taken. A failure is logged, not fatal: the directory
    /// is then not writable, and [`LockMarker::may_hold`] says so from then on.
    pub fn set(&self) {
        let write = || -> std::io::Result<()> {
            std::fs::create_dir_all(&self.dir)?;
            std::fs::write(&self.path, b"")
        };
        if let Err(e) = write() {
            tracing::warn!(file = %self.path.display(), error = %e, "cannot note the restart lock locally; every check of Kafka will look it up on AWS");
        }
    }

    /// The lock is released or gone.
    pub fn clear(&self) {
        match std::fs::remove_file(&self.path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(file = %self.path.display(), error = %e, "cannot remove the local restart lock note")
            }
        }
    }

    /// Whether a note can be written here (creates the directory; writes and removes a probe).
    fn writable(&self) -> bool {
        let probe = self.dir.join(format!(".probe-{}", std::process::id()));
        let ok = std::fs::create_dir_all(&self.dir).is_ok() && std::fs::write(&probe, b"").is_ok();
        let _ = std::fs::remove_file(&probe);
        ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_then_clear_and_an_unwritable_directory_always_looks() {
        let dir = tempfile::tempdir().unwrap();
        let m = LockMarker::new(dir.path(), "3/i-0abc");
        assert!(!m.may_hold());
        m.set();
        assert!(m.may_hold());
        assert!(dir.path().join("restart-lock.3-i-0abc").exists());
        m.clear();
        assert!(!m.may_hold());
        m.clear();
        // A state "directory" that is a file: nothing can be noted, so always look.
        let file = dir.path().join("not-a-dir");
        std::fs::write(&file, b"").unwrap();
        let m = LockMarker::new(&file, "3/i-0abc");
        m.set();
        assert!(m.may_hold());
    }
}
