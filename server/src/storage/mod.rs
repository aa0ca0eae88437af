//! The content-addressed artifact store under the data directory.

use std::path::{Path, PathBuf};

use futures_util::{Stream, StreamExt};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

#[derive(Debug, Clone)]
pub struct Storage {
    root: PathBuf,
}

impl Storage {
    pub fn open(data_dir: &Path) -> std::io::Result<Self> {
        let root = data_dir.to_path_buf();
        std::fs::create_dir_all(root.join("artifact"))?;
        std::fs::create_dir_all(root.join("tmp"))?;
        std::fs::create_dir_all(root.join("uploads"))?;
        Ok(Storage { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `artifact/ab/cdef...` for `sha256:abcdef...`: two-level fan-out like Pulp's.
    pub fn key_for(sha256_hex: &str) -> String {
        format!("artifact/{}/{}", &sha256_hex[..2], &sha256_hex[2..])
    }

    pub fn path_of(&self, key: &str) -> PathBuf {
        self.root.join(key)
    }

    /// Bytes free on the file system holding the store.
    #[expect(unsafe_code, reason = "statvfs has no safe wrapper in std")]
    pub fn free_bytes(&self) -> Option<u64> {
        use std::os::unix::ffi::OsStrExt;
        let path = std::ffi::CString::new(self.root.as_os_str().as_bytes()).ok()?;
        let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
        // SAFETY: `path` is a valid NUL-terminated string and `stat` is a valid out-pointer.
        let rc = unsafe { libc::statvfs(path.as_ptr(), &mut stat) };
        (rc == 0).then(|| u64::from(stat.f_bavail) * u64::from(stat.f_frsize))
    }
}

/// A file that passed its digest check and now lives in the store.
#[derive(Debug, Clone)]
pub struct StoredFile {
    pub sha256: String,
    pub size: i64,
    pub key: String,
}

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("storage error: {0}")]
    Io(#[from] std::io::Error),
    #[error("download of {digest} failed: {reason}")]
    Source { digest: String, reason: String },
    #[error("digest mismatch for {expected}: the bytes hash to sha256:{actual}")]
    Digest { expected: String, actual: String },
    #[error("size mismatch for {digest}: expected {expected} bytes, got {actual}")]
    Size { digest: String, expected: i64, actual: i64 },
}

impl Storage {
    /// A fresh path for a download in progress, on the same file system as the store so the
    /// final move is an atomic rename.
    pub fn temp_path(&self) -> PathBuf {
        self.root.join("tmp").join(uuid::Uuid::new_v4().to_string())
    }

    /// Moves a verified file into its content address. If the store already holds it, the
    /// temp file is dropped: same digest, same bytes.
    pub fn commit(&self, temp: &Path, sha256_hex: &str) -> std::io::Result<String> {
        let key = Self::key_for(sha256_hex);
        let dest = self.path_of(&key);
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent)?;
        }
        if dest.exists() {
            std::fs::remove_file(temp)?;
        } else {
            std::fs::rename(temp, &dest)?;
        }
        Ok(key)
    }

    /// Streams `body` to a temp file while hashing it; if digest (`sha256:...`) and size
    /// match, moves it into the store. On any failure the temp file is removed.
    pub async fn ingest<S, E>(&self, body: S, digest: &str, size: Option<i64>) -> Result<StoredFile, IngestError>
    where
        S: Stream<Item = Result<bytes::Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let temp = self.temp_path();
        let result = self.write_verified(&temp, body, digest, size).await;
        match result {
            Ok((hex, written)) => {
                let key = self.commit(&temp, &hex)?;
                Ok(StoredFile { sha256: hex, size: written, key })
            }
            Err(e) => {
                let _ = tokio::fs::remove_file(&temp).await;
                Err(e)
            }
        }
    }

    async fn write_verified<S, E>(&self, temp: &Path, mut body: S, digest: &str, size: Option<i64>) -> Result<(String, i64), IngestError>
    where
        S: Stream<Item = Result<bytes::Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let mut file = tokio::fs::File::create(temp).await?;
        let mut hasher = Sha256::new();
        let mut written: i64 = 0;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| IngestError::Source { digest: digest.to_string(), reason: e.to_string() })?;
            hasher.update(&chunk);
            file.write_all(&chunk).await?;
            written += chunk.len() as i64;
        }
        file.flush().await?;
        file.sync_data().await?;
        let hex = format!("{:x}", hasher.finalize());
        if let Some(expected) = size {
            if expected != written {
                return Err(IngestError::Size { digest: digest.to_string(), expected, actual: written });
            }
        }
        if digest != format!("sha256:{hex}") {
            return Err(IngestError::Digest { expected: digest.to_string(), actual: hex });
        }
        Ok((hex, written))
    }
}

/// How much of a stored file is mapped at once when serving it.
pub const MAP_WINDOW: u64 = 4 * 1024 * 1024;

/// Maps `len` bytes at `offset` of a stored file read-only. Store files are never written again
/// once committed (they are renamed into place under their digest), which is what makes handing
/// out the mapping safe.
#[expect(unsafe_code, reason = "memory-mapping a file is unsafe in general; see the comment above")]
pub fn map_window(file: &std::fs::File, offset: u64, len: u64) -> std::io::Result<bytes::Bytes> {
    if len == 0 {
        return Ok(bytes::Bytes::new());
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
    Ok(bytes::Bytes::from_owner(map).slice(skip..))
}
