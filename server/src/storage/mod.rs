//! The content-addressed artifact store under the data directory, the staged parts of uploads,
//! and this process's scratch files.
//!
//! A file in the store is written once: bytes go to a scratch file that only its writer holds,
//! are verified, and are then hard-linked under their digest (`link` never replaces an existing
//! file, and nobody else has the scratch file open for writing). Store paths are never opened for
//! writing.

mod scratch;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures_util::{Stream, StreamExt};
use sha2::{Digest, Sha256, Sha512};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub use scratch::{remove_tree, Scratch, ScratchFile};

#[derive(Debug, Clone)]
pub struct Storage {
    root: PathBuf,
    scratch: Arc<Scratch>,
}

impl Storage {
    /// Opens the store, takes a scratch directory for this process and removes what dead
    /// processes left in theirs.
    pub fn open(data_dir: &Path) -> std::io::Result<Self> {
        let root = data_dir.to_path_buf();
        std::fs::create_dir_all(root.join("artifact"))?;
        std::fs::create_dir_all(root.join("uploads"))?;
        let scratch = Arc::new(Scratch::create(&root.join("tmp"))?);
        let storage = Storage { root, scratch };
        let freed = storage.sweep_scratch()?;
        if freed > 0 {
            tracing::info!(bytes = freed, "removed scratch files left by stopped processes");
        }
        Ok(storage)
    }

    /// Removes scratch files that no live process owns; returns the bytes freed.
    pub fn sweep_scratch(&self) -> std::io::Result<u64> {
        scratch::sweep(&self.root.join("tmp"), &self.scratch)
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

    /// A fresh scratch file of this process, removed when the guard is dropped.
    pub fn scratch_file(&self) -> ScratchFile {
        self.scratch.file()
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
    #[error("digest mismatch for {expected}: the bytes hash to {actual}")]
    Digest { expected: String, actual: String },
    #[error("size mismatch for {digest}: expected {expected} bytes, got {actual}")]
    Size { digest: String, expected: i64, actual: i64 },
}

/// sha256 (the store's key) and, for `sha512:` digests, sha512 alongside.
pub struct BlobHasher {
    sha256: Sha256,
    sha512: Option<Sha512>,
}

impl BlobHasher {
    pub fn for_digest(digest: &str) -> Self {
        BlobHasher { sha256: Sha256::new(), sha512: digest.starts_with("sha512:").then(Sha512::new) }
    }

    pub fn update(&mut self, bytes: &[u8]) {
        self.sha256.update(bytes);
        if let Some(h) = self.sha512.as_mut() {
            h.update(bytes);
        }
    }

    /// (sha256 hex, the digest in the algorithm asked for).
    pub fn finish(self) -> (String, String) {
        let hex = format!("{:x}", self.sha256.finalize());
        let digest = match self.sha512 {
            Some(h) => format!("sha512:{:x}", h.finalize()),
            None => format!("sha256:{hex}"),
        };
        (hex, digest)
    }
}

impl Storage {
    /// Links a verified scratch file under its content address. `link` never replaces a file:
    /// if the store already holds the digest, its file stays (same digest, same bytes) unless
    /// its size shows it is not what the digest names, in which case the verified file takes its
    /// place by an atomic rename (readers of the old one keep their open file).
    pub fn commit(&self, temp: &Path, sha256_hex: &str, size: u64) -> std::io::Result<String> {
        let key = Self::key_for(sha256_hex);
        let dest = self.path_of(&key);
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent)?;
        }
        match std::fs::hard_link(temp, &dest) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                if std::fs::metadata(&dest)?.len() != size {
                    tracing::warn!(key = %key, "a stored file had the wrong size; replaced by verified bytes");
                    std::fs::rename(temp, &dest)?;
                }
            }
            Err(e) => return Err(e),
        }
        Ok(key)
    }

    /// Streams `body` to a scratch file while hashing it, refusing bytes past `size` when one
    /// is declared; if the digest (`sha256:` or `sha512:`) and size match, links it into the
    /// store. The scratch file is removed in every case, including cancellation.
    pub async fn ingest<S, E>(&self, body: S, digest: &str, size: Option<i64>) -> Result<StoredFile, IngestError>
    where
        S: Stream<Item = Result<bytes::Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let temp = self.scratch_file();
        let (hex, written) = write_verified(temp.path(), body, digest, size).await?;
        let key = self.commit(temp.path(), &hex, written as u64)?;
        Ok(StoredFile { sha256: hex, size: written, key })
    }
}

async fn write_verified<S, E>(temp: &Path, body: S, digest: &str, size: Option<i64>) -> Result<(String, i64), IngestError>
where
    S: Stream<Item = Result<bytes::Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let mut hasher = BlobHasher::for_digest(digest);
    // Stop at the declared size: an upstream that lies must not fill the disk.
    let written = write_body(temp, body, digest, size, |chunk| hasher.update(chunk)).await?;
    let (hex, actual) = hasher.finish();
    if let Some(expected) = size {
        if expected != written {
            return Err(IngestError::Size { digest: digest.to_string(), expected, actual: written });
        }
    }
    if digest != actual {
        return Err(IngestError::Digest { expected: digest.to_string(), actual });
    }
    Ok((hex, written))
}

/// Writes `body` to a new file at `path` (never an existing one), showing each chunk to `seen`
/// first, and makes it durable; refuses a byte past `limit`. Returns the bytes written. `what`
/// names the body in errors.
async fn write_body<S, E>(path: &Path, mut body: S, what: &str, limit: Option<i64>, mut seen: impl FnMut(&[u8])) -> Result<i64, IngestError>
where
    S: Stream<Item = Result<bytes::Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let mut file = tokio::fs::File::options().write(true).create_new(true).open(path).await?;
    let mut written: i64 = 0;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| IngestError::Source { digest: what.to_string(), reason: e.to_string() })?;
        written += chunk.len() as i64;
        if let Some(expected) = limit.filter(|l| written > *l) {
            return Err(IngestError::Size { digest: what.to_string(), expected, actual: written });
        }
        seen(&chunk);
        file.write_all(&chunk).await?;
    }
    file.flush().await?;
    file.sync_data().await?;
    Ok(written)
}

/// Upload staging: one file per request under `uploads/<upload id>/`, written in scratch first
/// and moved in whole, so a part is complete before anyone can see it.
impl Storage {
    fn upload_dir(&self, upload_id: &str) -> PathBuf {
        self.root.join("uploads").join(upload_id)
    }

    pub fn create_upload(&self, upload_id: &str) -> std::io::Result<()> {
        std::fs::create_dir_all(self.upload_dir(upload_id))
    }

    /// Writes `body` as a new part of the upload; returns its key and size. A body that breaks
    /// off leaves nothing behind.
    pub async fn stage_part<S, E>(&self, upload_id: &str, body: S) -> Result<(String, u64), IngestError>
    where
        S: Stream<Item = Result<bytes::Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let temp = self.scratch_file();
        let size = write_body(temp.path(), body, &format!("upload {upload_id}"), None, |_| {}).await? as u64;
        let key = format!("uploads/{upload_id}/{}", uuid::Uuid::new_v4());
        // The upload's directory is gone once the upload ended: then so is this part.
        tokio::fs::rename(temp.path(), self.path_of(&key)).await?;
        Ok((key, size))
    }

    /// The parts' bytes in order, as one stream.
    pub fn read_parts(&self, keys: Vec<String>) -> impl Stream<Item = std::io::Result<bytes::Bytes>> + Unpin {
        let paths: Vec<PathBuf> = keys.iter().map(|k| self.path_of(k)).collect();
        Box::pin(futures_util::stream::try_unfold((paths.into_iter(), None::<tokio::fs::File>), |(mut paths, mut file)| async move {
            loop {
                if file.is_none() {
                    match paths.next() {
                        Some(p) => file = Some(tokio::fs::File::open(&p).await?),
                        None => return Ok(None),
                    }
                }
                let mut buf = vec![0u8; 1024 * 1024];
                let n = file.as_mut().expect("opened above").read(&mut buf).await?;
                if n == 0 {
                    file = None;
                    continue;
                }
                buf.truncate(n);
                return Ok(Some((bytes::Bytes::from(buf), (paths, file))));
            }
        }))
    }

    pub fn remove_key(&self, key: &str) {
        let _ = std::fs::remove_file(self.path_of(key));
    }

    /// Removes an upload's staged bytes (and an older version's single staging file).
    pub fn remove_upload(&self, upload_id: &str) -> u64 {
        let dir = self.upload_dir(upload_id);
        if dir.is_dir() {
            remove_tree(&dir)
        } else {
            let size = std::fs::metadata(&dir).map(|m| m.len()).unwrap_or(0);
            let _ = std::fs::remove_file(&dir);
            size
        }
    }

    /// Upload ids with bytes on disk.
    pub fn staged_uploads(&self) -> std::io::Result<Vec<String>> {
        let mut ids = Vec::new();
        for entry in std::fs::read_dir(self.root.join("uploads"))? {
            if let Some(name) = entry?.file_name().to_str() {
                ids.push(name.to_string());
            }
        }
        Ok(ids)
    }

    /// The staged part files of an upload: key, how long ago it was last written, size.
    pub fn staged_parts(&self, upload_id: &str) -> Vec<(String, std::time::Duration, u64)> {
        let Ok(entries) = std::fs::read_dir(self.upload_dir(upload_id)) else { return vec![] };
        entries
            .flatten()
            .filter_map(|e| {
                let meta = e.metadata().ok()?;
                let age = meta.modified().ok()?.elapsed().unwrap_or_default();
                Some((format!("uploads/{upload_id}/{}", e.file_name().to_str()?), age, meta.len()))
            })
            .collect()
    }
}

/// How much of a stored file is mapped at once when serving it.
pub const MAP_WINDOW: u64 = 1024 * 1024;

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
