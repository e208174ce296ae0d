//! The file side of the editor: reading `server.properties` as UTF-8, applying an edit to a
//! file, and replacing a file atomically (temp file, fsync, rename, owner and mode kept), with
//! [`PropertiesError`] naming the path of every failure.

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::{apply_listener, remove_listener, EditError, ListenerEdit};

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
    use crate::properties::advertised_endpoint;

    fn edit() -> ListenerEdit {
        ListenerEdit {
            name: "PRIVATELINK".into(),
            bind_port: 9094,
            advertised_host: "kafka-use1-az1.orders.example.internal".into(),
            advertised_port: 10003,
            security_protocol: "SSL".into(),
        }
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
        // Nothing left to remove: no write at all (same inode, same bytes).
        let (inode, bytes) = (fs::metadata(&path).unwrap().ino(), fs::read(&path).unwrap());
        assert!(!remove_listener_from_file(&path, "PRIVATELINK", None).unwrap());
        assert_eq!(fs::metadata(&path).unwrap().ino(), inode);
        assert_eq!(fs::read(&path).unwrap(), bytes);

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

    /// A write that fails after its temp file exists (here the rename) removes the temp file.
    #[test]
    fn a_failed_rename_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let like = dir.path().join("server.properties");
        fs::write(&like, "a=1\n").unwrap();
        // A non-empty directory where the file should go: rename(2) refuses to replace it.
        let dest = dir.path().join("taken");
        fs::create_dir(&dest).unwrap();
        fs::write(dest.join("inside"), "x").unwrap();
        let err = replace_file(&dest, b"a=2\n", &fs::metadata(&like).unwrap()).unwrap_err();
        assert!(err.to_string().contains("rename temp file"), "{err}");
        assert!(no_temp_files(dir.path()));
    }

    /// A leftover temp path of this pid that cannot be removed stops the write, named as such.
    #[test]
    fn a_stale_temp_path_that_cannot_go_stops_the_write() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("server.properties");
        fs::write(&path, "a=1\n").unwrap();
        let stale = dir.path().join(format!(
            ".server.properties.kplink-tmp.{}",
            std::process::id()
        ));
        fs::create_dir(&stale).unwrap();
        fs::write(stale.join("inside"), "x").unwrap();
        let err = write_atomic(&path, "a=2\n", None).unwrap_err();
        assert!(err.to_string().contains("remove stale temp file"), "{err}");
        assert_eq!(fs::read_to_string(&path).unwrap(), "a=1\n");
    }

    /// The new file keeps the old one's owner and group (Kafka's user must still read it),
    /// each on its own. Needs root to hand files to another user; skipped otherwise.
    #[test]
    fn the_new_file_keeps_the_owner_and_the_group() {
        let me = fs::metadata("/proc/self").unwrap();
        if me.uid() != 0 {
            eprintln!("skipped: needs root to chown");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("server.properties");
        for (uid, gid) in [(4321, me.gid()), (me.uid(), 4321), (4321, 4322)] {
            fs::write(&path, "a=1\n").unwrap();
            std::os::unix::fs::chown(&path, Some(uid), Some(gid)).unwrap();
            write_atomic(&path, "a=2\n", None).unwrap();
            let m = fs::metadata(&path).unwrap();
            assert_eq!((m.uid(), m.gid()), (uid, gid));
            fs::remove_file(&path).unwrap();
        }
    }
}
