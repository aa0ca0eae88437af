//! Files being written: each process owns one scratch directory `tmp/<instance>/`, held by an
//! advisory lock for as long as the process lives, and every file in it by a [`ScratchFile`]
//! guard that removes it when dropped. Whatever a killed process left behind sits in a scratch
//! directory whose lock nobody holds, and the next sweep (by any process) removes it whole.

use std::fs::File;
use std::path::{Path, PathBuf};

/// This process's scratch directory and the lock that says it is alive.
#[derive(Debug)]
pub struct Scratch {
    dir: PathBuf,
    _lock: File,
}

impl Scratch {
    pub fn create(tmp_root: &Path) -> std::io::Result<Scratch> {
        std::fs::create_dir_all(tmp_root)?;
        let instance = uuid::Uuid::new_v4().to_string();
        let lock = File::create(tmp_root.join(format!("{instance}.lock")))?;
        lock.try_lock().map_err(|e| std::io::Error::other(format!("cannot lock the scratch directory: {e}")))?;
        let dir = tmp_root.join(&instance);
        std::fs::create_dir_all(&dir)?;
        Ok(Scratch { dir, _lock: lock })
    }

    /// A fresh path for a file this process is about to write.
    pub fn file(&self) -> ScratchFile {
        ScratchFile { path: self.dir.join(uuid::Uuid::new_v4().to_string()) }
    }
}

/// Removes what dead processes left under `tmp_root`: scratch directories whose lock is free,
/// and loose files of older versions. Returns the bytes freed.
pub fn sweep(tmp_root: &Path, own: &Scratch) -> std::io::Result<u64> {
    let mut freed = 0;
    for entry in std::fs::read_dir(tmp_root)? {
        let entry = entry?;
        let path = entry.path();
        if path == own.dir || path.extension().is_some_and(|e| e == "lock") {
            continue;
        }
        let lock_path = path.with_extension("lock");
        if entry.file_type()?.is_dir() {
            let Ok(lock) = File::options().write(true).open(&lock_path) else {
                // A directory without a lock file: left by an older version or half made.
                freed += remove_tree(&path);
                continue;
            };
            if lock.try_lock().is_ok() {
                freed += remove_tree(&path);
                let _ = std::fs::remove_file(&lock_path);
            }
        } else {
            freed += entry.metadata().map(|m| m.len()).unwrap_or(0);
            let _ = std::fs::remove_file(&path);
        }
    }
    // Lock files whose directory is gone and whose owner is dead.
    for entry in std::fs::read_dir(tmp_root)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "lock") && !path.with_extension("").exists() {
            if let Ok(lock) = File::options().write(true).open(&path) {
                if lock.try_lock().is_ok() {
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
    }
    Ok(freed)
}

/// Removes a directory tree, returning the bytes of the files in it.
pub fn remove_tree(path: &Path) -> u64 {
    let mut bytes = 0;
    if let Ok(entries) = std::fs::read_dir(path) {
        for e in entries.flatten() {
            let p = e.path();
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                bytes += remove_tree(&p);
            } else {
                bytes += e.metadata().map(|m| m.len()).unwrap_or(0);
                let _ = std::fs::remove_file(&p);
            }
        }
    }
    let _ = std::fs::remove_dir(path);
    bytes
}

/// A file in the scratch directory, removed when this guard is dropped: on success (after the
/// file was linked into the store), on failure, and when the future that owns it is cancelled.
#[derive(Debug)]
pub struct ScratchFile {
    path: PathBuf,
}

impl ScratchFile {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Creates the file, here and now. A `tokio::fs` open runs on the blocking pool and finishes
    /// even when the future awaiting it is dropped, which would create the file after this
    /// guard had already removed the path: a file nobody owns.
    pub fn create(&self) -> std::io::Result<File> {
        File::options().write(true).create_new(true).open(&self.path)
    }
}

impl Drop for ScratchFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
