//! Putting a file in place in a folder: written under a temporary name in its final
//! directory, fsynced, then renamed, so no reader ever sees a partial file; the directory is
//! fsynced after the rename, so the game is on disk before it is marked done.

use std::fs::{self, DirBuilder, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

use anyhow::{Context, Result};

pub(super) static TMP_SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Writes `bytes` to a temporary file beside `path`, fsyncs it and renames it into place.
/// Creates the directories (mode 0755); the file gets mode 0644.
pub(super) fn place_file(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .with_context(|| format!("{} has no parent directory", path.display()))?;
    let name = path
        .file_name()
        .with_context(|| format!("{} has no file name", path.display()))?;
    let name = name
        .to_str()
        .with_context(|| format!("{} is not a UTF-8 name", path.display()))?;
    // Unique per process and call: two threads may write the same game (a duplicate record).
    let seq = TMP_SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = dir.join(format!(".{name}.{}-{seq}.tmp", std::process::id()));
    let written = write_synced(&tmp, bytes).or_else(|e| {
        // The directories are made on the first write into an OUTPUT_DIR only. Another thread
        // may have just made them (its first write failed too): then simply try again.
        if !dir.is_dir() {
            DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            // A new table directory is an entry of its parent: sync that too.
            if let Some(parent) = dir.parent() {
                sync_dir(parent)?;
            }
        }
        write_synced(&tmp, bytes).map_err(|again| again.context(e))
    });
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    fs::rename(&tmp, path).map_err(|e| {
        let _ = fs::remove_file(&tmp);
        anyhow::Error::new(e).context(format!("cannot rename into {}", path.display()))
    })?;
    // The rename lives in the directory: until the directory is synced, a host crash can undo
    // it while Redis already says the game is done.
    sync_dir(dir)
}

/// The final file name inside a temporary name `.<final>.<pid>-<seq>.tmp` ([`place_file`]'s),
/// so a writer's leftover temporaries can be told by the final name they were for.
pub fn final_name_of_temporary(name: &str) -> Option<&str> {
    let inner = name.strip_prefix('.')?.strip_suffix(".tmp")?;
    let (final_name, _) = inner.rsplit_once('.')?;
    Some(final_name)
}

/// fsyncs a directory, so the entries made or renamed in it survive a host crash.
pub(super) fn sync_dir(dir: &Path) -> Result<()> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("cannot sync directory {}", dir.display()))
}

pub(super) fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o644)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))
}
