//! The filesystem room: objects are files under the data directory. A new object is written to
//! a scratch file that only its writer holds and then hard-linked under its key; `link` never
//! replaces a file, so a stored file is never opened for writing again.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;

use super::backend::{Backend, ByteStream, ObjectInfo, ObjectWriter};
use super::scratch::{remove_tree, Scratch, ScratchFile};

#[derive(Debug)]
pub struct Filesystem {
    root: PathBuf,
    scratch: Arc<Scratch>,
}

impl Filesystem {
    pub fn open(root: &Path, scratch: Arc<Scratch>) -> std::io::Result<Self> {
        std::fs::create_dir_all(root.join("artifact"))?;
        std::fs::create_dir_all(root.join("uploads"))?;
        Ok(Filesystem { root: root.to_path_buf(), scratch })
    }

    fn path_of(&self, key: &str) -> PathBuf {
        self.root.join(key)
    }
}

/// Links a verified file under `dest`. If `dest` exists its file stays (same key, same bytes)
/// unless its size shows it is not what the key names; then the verified file takes its place
/// by an atomic rename (readers of the old one keep their open file). Artifact directories are
/// made as needed; an upload's directory is not: once it is gone the upload has ended.
fn link(temp: &Path, dest: &Path, size: u64, make_parent: bool) -> std::io::Result<()> {
    if make_parent {
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent)?;
        }
    }
    match std::fs::hard_link(temp, dest) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            if std::fs::metadata(dest)?.len() != size {
                tracing::warn!(path = %dest.display(), "a stored file had the wrong size; replaced by verified bytes");
                std::fs::rename(temp, dest)?;
            }
            Ok(())
        }
        Err(e) => Err(e),
    }
}

struct FileWriter {
    temp: ScratchFile,
    file: tokio::fs::File,
    dest: PathBuf,
    make_parent: bool,
    written: u64,
}

#[async_trait]
impl ObjectWriter for FileWriter {
    async fn write(&mut self, chunk: Bytes) -> std::io::Result<()> {
        self.written += chunk.len() as u64;
        self.file.write_all(&chunk).await
    }

    async fn commit(mut self: Box<Self>) -> std::io::Result<()> {
        self.file.flush().await?;
        self.file.sync_data().await?;
        let this = *self;
        tokio::task::spawn_blocking(move || {
            let done = link(this.temp.path(), &this.dest, this.written, this.make_parent);
            drop(this.temp);
            done
        })
        .await
        .map_err(std::io::Error::other)?
    }
}

#[async_trait]
impl Backend for Filesystem {
    fn kind(&self) -> &'static str {
        "filesystem"
    }

    /// Writes as a stored object is written: a scratch file, hard-linked into `artifact/`
    /// (then removed).
    async fn check(&self) -> std::io::Result<()> {
        let (scratch, dir) = (self.scratch.clone(), self.root.join("artifact"));
        tokio::task::spawn_blocking(move || {
            let cannot = |what: &Path, e: std::io::Error| std::io::Error::new(e.kind(), format!("cannot write to {}: {e}", what.display()));
            let temp = scratch.file();
            std::io::Write::write_all(&mut temp.create().map_err(|e| cannot(temp.path(), e))?, b"pulpish").map_err(|e| cannot(temp.path(), e))?;
            let probe = dir.join(format!(".probe-{}", uuid::Uuid::new_v4().simple()));
            std::fs::hard_link(temp.path(), &probe).map_err(|e| cannot(&dir, e))?;
            std::fs::remove_file(&probe)
        })
        .await
        .map_err(std::io::Error::other)?
    }

    async fn create(&self, key: &str, _size: Option<u64>) -> std::io::Result<Box<dyn ObjectWriter>> {
        let temp = self.scratch.file();
        let file = tokio::fs::File::from_std(temp.create()?);
        Ok(Box::new(FileWriter { temp, file, dest: self.path_of(key), make_parent: key.starts_with("artifact/"), written: 0 }))
    }

    async fn put_file(&self, path: &Path, key: &str, size: u64) -> std::io::Result<()> {
        let (path, dest) = (path.to_path_buf(), self.path_of(key));
        tokio::task::spawn_blocking(move || link(&path, &dest, size, true)).await.map_err(std::io::Error::other)?
    }

    async fn size(&self, key: &str) -> std::io::Result<Option<u64>> {
        match tokio::fs::metadata(self.path_of(key)).await {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Memory-mapped a window at a time: pages go from the page cache to the socket without
    /// being copied into a buffer of ours, and each window is unmapped once sent.
    async fn read(&self, key: &str, range: Option<Range<u64>>) -> std::io::Result<ByteStream> {
        let file = std::fs::File::open(self.path_of(key))?;
        let len = file.metadata()?.len();
        let Range { start, end } = range.unwrap_or(0..len);
        if end > len {
            // A file shorter than its record is damaged: never map past its end (that reads
            // zeros, or faults the process); the request fails instead.
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, format!("stored file {key} holds {len} bytes, fewer than {end}")));
        }
        let file = Arc::new(file);
        // Mapping does no I/O (pages fault in as they are sent), so it runs inline.
        let windows = futures_util::stream::iter((start..end).step_by(MAP_WINDOW as usize))
            .map(move |at| map_window(&file, at, (at + MAP_WINDOW).min(end) - at));
        Ok(Box::pin(windows))
    }

    async fn delete(&self, key: &str) -> std::io::Result<()> {
        match tokio::fs::remove_file(self.path_of(key)).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    async fn list(&self, prefix: &str) -> std::io::Result<Vec<ObjectInfo>> {
        let (root, prefix) = (self.root.clone(), prefix.to_string());
        tokio::task::spawn_blocking(move || {
            let mut found = Vec::new();
            let mut dirs = vec![root.join(&prefix)];
            while let Some(dir) = dirs.pop() {
                let Ok(entries) = std::fs::read_dir(&dir) else { continue };
                for e in entries.flatten() {
                    let Ok(meta) = e.metadata() else { continue };
                    if meta.is_dir() {
                        dirs.push(e.path());
                    } else if let Ok(rel) = e.path().strip_prefix(&root) {
                        let age = meta.modified().ok().and_then(|m| m.elapsed().ok()).unwrap_or_default();
                        found.push(ObjectInfo { key: rel.to_string_lossy().into_owned(), size: meta.len(), age });
                    }
                }
            }
            Ok(found)
        })
        .await
        .map_err(std::io::Error::other)?
    }

    async fn children(&self, prefix: &str) -> std::io::Result<Vec<String>> {
        let mut names = Vec::new();
        let mut entries = match tokio::fs::read_dir(self.path_of(prefix)).await {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(names),
            Err(e) => return Err(e),
        };
        while let Some(e) = entries.next_entry().await? {
            if let Some(name) = e.file_name().to_str() {
                names.push(name.to_string());
            }
        }
        Ok(names)
    }

    async fn make_dir(&self, prefix: &str) -> std::io::Result<()> {
        tokio::fs::create_dir_all(self.path_of(prefix)).await
    }

    async fn delete_prefix(&self, prefix: &str) -> std::io::Result<u64> {
        let path = self.path_of(prefix.trim_end_matches('/'));
        tokio::task::spawn_blocking(move || {
            if path.is_dir() {
                remove_tree(&path)
            } else {
                // An older version staged an upload as one file named by its id.
                let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
                let _ = std::fs::remove_file(&path);
                size
            }
        })
        .await
        .map_err(std::io::Error::other)
    }

    async fn presign(&self, _key: &str, _expires: Duration) -> std::io::Result<Option<String>> {
        Ok(None)
    }

    #[expect(unsafe_code, reason = "statvfs has no safe wrapper in std")]
    fn space(&self) -> Option<(u64, u64)> {
        use std::os::unix::ffi::OsStrExt;
        let path = std::ffi::CString::new(self.root.as_os_str().as_bytes()).ok()?;
        let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
        // SAFETY: `path` is a valid NUL-terminated string and `stat` is a valid out-pointer.
        let rc = unsafe { libc::statvfs(path.as_ptr(), &mut stat) };
        #[allow(clippy::useless_conversion, reason = "the field types differ between libc targets")]
        (rc == 0).then(|| (u64::from(stat.f_blocks) * u64::from(stat.f_frsize), u64::from(stat.f_bavail) * u64::from(stat.f_frsize)))
    }
}

/// How much of a stored file is mapped at once when serving it.
pub const MAP_WINDOW: u64 = 1024 * 1024;

/// Maps `len` bytes at `offset` of a stored file read-only. Store files are never written again
/// once committed (they are linked into place under their digest), which is what makes handing
/// out the mapping safe.
#[expect(unsafe_code, reason = "memory-mapping a file is unsafe in general; see the comment above")]
pub fn map_window(file: &std::fs::File, offset: u64, len: u64) -> std::io::Result<Bytes> {
    if len == 0 {
        return Ok(Bytes::new());
    }
    // mmap offsets must be page aligned: map from the page start, then slice.
    // SAFETY: sysconf has no preconditions.
    let page = (unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).max(4096) as u64;
    let aligned = offset - offset % page;
    let skip = (offset - aligned) as usize;
    // SAFETY: committed store files are immutable and only ever unlinked, which keeps the
    // mapped pages valid for as long as the mapping lives.
    let map = unsafe { memmap2::MmapOptions::new().offset(aligned).len(skip + len as usize).map(file)? };
    let _ = map.advise(memmap2::Advice::Sequential);
    Ok(Bytes::from_owner(map).slice(skip..))
}
