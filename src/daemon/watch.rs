//! The `server.properties` watch: the directory watched (the file is replaced by rename),
//! events debounced into wake-ups, and the agent's own writes recognized by content.

use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::Watcher;
use tokio::sync::mpsc;

use super::DaemonError;

/// Why the loop woke up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Wake {
    Timer,
    FileChanged,
    Reload,
}

/// `server.properties`: its watcher and what it held after the last pass.
pub(super) struct PropertiesFile {
    pub(super) path: PathBuf,
    _watcher: notify::RecommendedWatcher,
    /// A change event leaving the file like this is the agent's own write (or a touch).
    last_written: Option<String>,
}

impl PropertiesFile {
    pub(super) fn watch(path: &Path, tx: &mpsc::Sender<Wake>) -> Result<Self, DaemonError> {
        Ok(PropertiesFile {
            path: path.to_path_buf(),
            _watcher: watch(path, tx.clone())?,
            last_written: None,
        })
    }

    /// Watches `path` instead when a reloaded config names another file.
    pub(super) fn follow(
        &mut self,
        path: &Path,
        tx: &mpsc::Sender<Wake>,
    ) -> Result<(), DaemonError> {
        if path != self.path {
            self._watcher = watch(path, tx.clone())?;
            self.path = path.to_path_buf();
        }
        Ok(())
    }

    pub(super) fn remember(&mut self) {
        self.last_written = std::fs::read_to_string(&self.path)
            .ok()
            .or(self.last_written.take());
    }

    pub(super) fn unchanged(&self) -> bool {
        let now = std::fs::read_to_string(&self.path).ok();
        now.is_some() && now == self.last_written
    }
}

/// Watches the directory (the file itself is replaced by rename, which ends a file watch) and
/// sends a debounced wake-up for events on `file`.
fn watch(file: &Path, tx: mpsc::Sender<Wake>) -> Result<notify::RecommendedWatcher, DaemonError> {
    let dir = file.parent().unwrap_or(Path::new("/")).to_path_buf();
    let name = file.file_name().map(|n| n.to_os_string());
    let (raw_tx, mut raw_rx) = mpsc::unbounded_channel::<()>();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event {
            let relevant = event
                .paths
                .iter()
                .any(|p| p.file_name().map(|n| n.to_os_string()) == name);
            if relevant && !matches!(event.kind, notify::EventKind::Access(_)) {
                let _ = raw_tx.send(());
            }
        }
    })
    .map_err(|source| DaemonError::Watch {
        path: dir.clone(),
        source,
    })?;
    watcher
        .watch(&dir, notify::RecursiveMode::NonRecursive)
        .map_err(|source| DaemonError::Watch {
            path: dir.clone(),
            source,
        })?;
    tokio::spawn(async move {
        while raw_rx.recv().await.is_some() {
            // Debounce: config management often writes in several steps.
            loop {
                match tokio::time::timeout(Duration::from_millis(300), raw_rx.recv()).await {
                    Ok(Some(())) => continue,
                    Ok(None) => return,
                    Err(_) => break,
                }
            }
            if tx.send(Wake::FileChanged).await.is_err() {
                return;
            }
        }
    });
    Ok(watcher)
}
