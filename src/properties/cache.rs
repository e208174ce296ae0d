//! `server.properties` read once per pass: the file as last read, read again only when it
//! changed on disk.
//!
//! A pass looks at the file in several places (the node's role, the observation, the write that
//! must see a change config management made meanwhile, making Kafka use the result); each asks
//! this cache. A `stat` tells whether the file is still what was read (same device, inode, size,
//! and modification and change times to the nanosecond): config management replaces it by
//! rename (a new inode) or rewrites it (new times; the change time cannot be set back, unlike
//! the modification time with `cp -p` or `touch -d`), and either is read again. The `stat` comes
//! before the read, so a change racing the read leaves a fingerprint older than the text, and
//! the next look reads again rather than keeping a stale text. The agent's own write is kept
//! without a fingerprint (a replacement racing it must not pass for it), so the next look reads
//! once more. The daemon forgets the cache at the start of every pass ([`CachedFile::forget`]):
//! it spares reads within a pass, and never carries a text from one pass to the next.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::{read, PropertiesError};

/// What identifies one version of a file on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Fingerprint {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: i64,
    mtime_nsec: i64,
    ctime: i64,
    ctime_nsec: i64,
}

impl Fingerprint {
    fn of(path: &Path) -> Option<Fingerprint> {
        let m = std::fs::metadata(path).ok()?;
        Some(Fingerprint {
            dev: m.dev(),
            ino: m.ino(),
            len: m.len(),
            mtime: m.mtime(),
            mtime_nsec: m.mtime_nsec(),
            ctime: m.ctime(),
            ctime_nsec: m.ctime_nsec(),
        })
    }
}

#[derive(Debug, Default)]
struct Last {
    path: PathBuf,
    fingerprint: Option<Fingerprint>,
    text: Arc<str>,
    reads: u64,
}

/// The file as last read (cheap to share: the text is reference-counted).
#[derive(Debug, Default)]
pub struct CachedFile(Mutex<Last>);

impl CachedFile {
    /// The text of `path`: the one last read when the file is unchanged since, else read now.
    /// Errors are [`read`]'s, and a failed read forgets what was cached.
    pub fn read(&self, path: &Path) -> Result<Arc<str>, PropertiesError> {
        let now = Fingerprint::of(path);
        if let Ok(last) = self.0.lock() {
            if now.is_some() && last.fingerprint == now && last.path == path {
                return Ok(last.text.clone());
            }
        }
        if let Ok(mut last) = self.0.lock() {
            last.reads += 1;
        }
        let text: Arc<str> = match read(path) {
            Ok(text) => text.into(),
            Err(e) => {
                self.remember(path, None, "".into());
                return Err(e);
            }
        };
        self.remember(path, now, text.clone());
        Ok(text)
    }

    /// Records what the agent itself just wrote to `path`. Without a fingerprint: a `stat` now
    /// could already see a file that replaced the agent's, so the next look reads once more.
    pub fn wrote(&self, path: &Path, text: &str) {
        self.remember(path, None, text.into());
    }

    /// Forgets the text: the next look reads the file (the daemon calls it as each pass starts).
    pub fn forget(&self) {
        if let Ok(mut last) = self.0.lock() {
            last.fingerprint = None;
        }
    }

    /// How many times the file was actually read (what the tests of "read once" count).
    pub fn reads(&self) -> u64 {
        self.0.lock().map(|l| l.reads).unwrap_or(0)
    }

    fn remember(&self, path: &Path, fingerprint: Option<Fingerprint>, text: Arc<str>) {
        if let Ok(mut last) = self.0.lock() {
            last.path = path.to_path_buf();
            last.fingerprint = fingerprint;
            last.text = text;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_once_until_the_file_changes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("server.properties");
        std::fs::write(&path, "a=1\n").unwrap();
        let cache = CachedFile::default();
        assert_eq!(&*cache.read(&path).unwrap(), "a=1\n");
        assert_eq!(&*cache.read(&path).unwrap(), "a=1\n");
        assert_eq!(cache.reads(), 1, "the second look is the cached text");
        // Replaced by rename, same size: a new inode.
        let tmp = dir.path().join("tmp");
        std::fs::write(&tmp, "a=2\n").unwrap();
        std::fs::rename(&tmp, &path).unwrap();
        assert_eq!(&*cache.read(&path).unwrap(), "a=2\n");
        assert_eq!(cache.reads(), 2);
        // Rewritten in place: a new size or mtime.
        std::fs::write(&path, "a=33\n").unwrap();
        assert_eq!(&*cache.read(&path).unwrap(), "a=33\n");
        assert_eq!(cache.reads(), 3);
        // After the agent's own write the next look reads once more (another write may have
        // replaced it already), then the cache holds again.
        std::fs::write(&path, "b=4\n").unwrap();
        cache.wrote(&path, "b=4\n");
        std::fs::write(&path, "c=5\n").unwrap();
        assert_eq!(&*cache.read(&path).unwrap(), "c=5\n");
        assert_eq!(cache.reads(), 4);
        assert_eq!(&*cache.read(&path).unwrap(), "c=5\n");
        assert_eq!(cache.reads(), 4);
        // Forgotten: read again.
        cache.forget();
        assert_eq!(&*cache.read(&path).unwrap(), "c=5\n");
        assert_eq!(cache.reads(), 5);
        // The same size and the modification time set back (`cp -p`): the change time differs.
        let stamp = std::fs::metadata(&path).unwrap().modified().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&path, "c=6\n").unwrap();
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(stamp)
            .unwrap();
        assert_eq!(&*cache.read(&path).unwrap(), "c=6\n");
        assert_eq!(cache.reads(), 6);
        // Gone: the read's error, and nothing stale kept.
        std::fs::remove_file(&path).unwrap();
        assert!(cache.read(&path).is_err());
        std::fs::write(&path, "b=4\n").unwrap();
        assert_eq!(&*cache.read(&path).unwrap(), "b=4\n");
    }
}
