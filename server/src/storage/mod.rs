//! The content-addressed artifact store, the staged parts of uploads, and this process's
//! scratch files. Where the bytes live is a [`Backend`]: the filesystem under the data directory
//! (`fs.rs`, the embedded default) or an S3-compatible object store (`s3.rs`). Callers use
//! [`Storage`] and never know which.
//!
//! A stored object is written once: bytes go to a writer that only its request holds, are
//! verified, and only then become visible under their key. Nothing stored is opened for writing
//! again.

mod backend;
mod fs;
mod s3;
mod scratch;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{Stream, StreamExt, TryStreamExt};
use sha2::{Digest, Sha256, Sha512};
use tokio::io::AsyncWriteExt;

pub use backend::{is_unavailable, Backend, ByteStream, ObjectInfo};
pub use scratch::{remove_tree, Scratch, ScratchFile};

use crate::config::{StorageConfig, StorageKind};

#[derive(Debug, Clone)]
pub struct Storage {
    backend: Arc<dyn Backend>,
    scratch: Arc<Scratch>,
    tmp_root: std::path::PathBuf,
}

impl Storage {
    /// Opens the store `config` names, takes a scratch directory for this process under
    /// `data_dir/tmp` (on every backend) and removes what dead processes left in theirs.
    /// Nothing remote is contacted yet: [`Storage::check`] does that.
    pub fn open_with(data_dir: &Path, config: &StorageConfig) -> Result<Self, String> {
        let tmp_root = data_dir.join("tmp");
        let scratch = Arc::new(Scratch::create(&tmp_root).map_err(|e| e.to_string())?);
        let backend: Arc<dyn Backend> = match config.kind {
            StorageKind::Filesystem => Arc::new(fs::Filesystem::open(data_dir, scratch.clone()).map_err(|e| e.to_string())?),
            StorageKind::S3 => Arc::new(s3::S3::new(config)?),
        };
        let storage = Storage { backend, scratch, tmp_root };
        let freed = storage.sweep_scratch().map_err(|e| e.to_string())?;
        if freed > 0 {
            tracing::info!(bytes = freed, "removed scratch files left by stopped processes");
        }
        Ok(storage)
    }

    /// Proves the store can be written, read and cleaned up, naming the setting at fault.
    pub async fn check(&self) -> std::io::Result<()> {
        self.backend.check().await
    }

    /// `filesystem` or `s3`.
    pub fn kind(&self) -> &'static str {
        self.backend.kind()
    }

    /// Removes scratch files that no live process owns; returns the bytes freed.
    pub fn sweep_scratch(&self) -> std::io::Result<u64> {
        scratch::sweep(&self.tmp_root, &self.scratch)
    }

    /// `artifact/ab/cdef...` for `sha256:abcdef...`: two-level fan-out like Pulp's.
    pub fn key_for(sha256_hex: &str) -> String {
        format!("artifact/{}/{}", &sha256_hex[..2], &sha256_hex[2..])
    }

    /// A fresh scratch file of this process, removed when the guard is dropped.
    pub fn scratch_file(&self) -> ScratchFile {
        self.scratch.file()
    }

    /// Bytes free where artifacts are stored, where that is known.
    /// `(total, free)` bytes where artifacts are stored, when the backend can tell.
    pub fn space(&self) -> Option<(u64, u64)> {
        self.backend.space()
    }

    /// A stored object's bytes (or `range` of them), streamed.
    pub async fn read(&self, key: &str, range: Option<std::ops::Range<u64>>) -> std::io::Result<ByteStream> {
        self.backend.read(key, range).await
    }

    /// A URL that serves the object without us, valid for `expires`, if the backend has them.
    pub async fn presign(&self, key: &str, expires: Duration) -> std::io::Result<Option<String>> {
        self.backend.presign(key, expires).await
    }

    /// Removes an artifact's stored object (orphan cleanup, once no row names it); a key
    /// that holds nothing is no error.
    pub async fn remove_artifact(&self, key: &str) -> std::io::Result<()> {
        self.backend.delete(key).await
    }

    /// Stores a verified scratch file under its content address; returns the key.
    pub async fn commit(&self, temp: &Path, sha256_hex: &str, size: u64) -> std::io::Result<String> {
        let key = Self::key_for(sha256_hex);
        self.backend.put_file(temp, &key, size).await?;
        Ok(key)
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
    /// Streams `body` into the store while hashing it, refusing bytes past `size` when one is
    /// declared; the object becomes visible only if the digest (`sha256:` or `sha512:`) and size
    /// match. A `sha256:` digest names its key up front, so the bytes go straight to their
    /// place; for `sha512:` the key is known only at the end, so they pass through a scratch file.
    pub async fn ingest<S, E>(&self, body: S, digest: &str, size: Option<i64>) -> Result<StoredFile, IngestError>
    where
        S: Stream<Item = Result<bytes::Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        if let Some(hex) = digest.strip_prefix("sha256:").filter(|h| h.len() == 64) {
            let key = Self::key_for(hex);
            let mut writer = self.backend.create(&key, size.and_then(|s| u64::try_from(s).ok())).await?;
            let mut hasher = BlobHasher::for_digest(digest);
            let written = write_body(&mut *writer, body, digest, size, |chunk| hasher.update(chunk)).await?;
            let (hex, _) = verified(hasher, digest, size, written)?;
            writer.commit().await?;
            return Ok(StoredFile { sha256: hex, size: written, key });
        }
        let staged = self.stage_verified(body, digest, size).await?;
        Ok(self.commit_staged(staged).await?)
    }

    /// Writes `body` to a scratch file, checked against `digest` and `size`: for a digest that
    /// does not name the store's key (`sha512:`), which is known only once the bytes are read.
    pub async fn stage_verified<S, E>(&self, body: S, digest: &str, size: Option<i64>) -> Result<Staged, IngestError>
    where
        S: Stream<Item = Result<bytes::Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let temp = self.scratch_file();
        let mut file = LocalFile(tokio::fs::File::from_std(temp.create()?));
        let mut hasher = BlobHasher::for_digest(digest);
        let written = write_body(&mut file, body, digest, size, |chunk| hasher.update(chunk)).await?;
        file.0.sync_data().await?;
        let (sha256, _) = verified(hasher, digest, size, written)?;
        Ok(Staged { temp, sha256, size: written })
    }

    /// Moves verified bytes from their scratch file into the store.
    pub async fn commit_staged(&self, staged: Staged) -> std::io::Result<StoredFile> {
        let key = self.commit(staged.temp.path(), &staged.sha256, staged.size as u64).await?;
        Ok(StoredFile { sha256: staged.sha256, size: staged.size, key })
    }
}

/// Verified bytes in a scratch file (removed when dropped), with their sha256 hex and size.
pub struct Staged {
    temp: ScratchFile,
    pub sha256: String,
    pub size: i64,
}

fn verified(hasher: BlobHasher, digest: &str, size: Option<i64>, written: i64) -> Result<(String, String), IngestError> {
    let (hex, actual) = hasher.finish();
    if let Some(expected) = size {
        if expected != written {
            return Err(IngestError::Size { digest: digest.to_string(), expected, actual: written });
        }
    }
    if digest != actual {
        return Err(IngestError::Digest { expected: digest.to_string(), actual });
    }
    Ok((hex, actual))
}

/// A scratch file as a write target of [`write_body`].
struct LocalFile(tokio::fs::File);

#[async_trait::async_trait]
impl backend::ObjectWriter for LocalFile {
    async fn write(&mut self, chunk: bytes::Bytes) -> std::io::Result<()> {
        self.0.write_all(&chunk).await
    }

    async fn commit(mut self: Box<Self>) -> std::io::Result<()> {
        self.0.flush().await
    }
}

/// Writes `body` to `out`, showing each chunk to `seen` first; refuses a byte past `limit` (an
/// upstream that lies must not fill the store). Returns the bytes written. `what` names the
/// body in errors.
async fn write_body<S, E>(out: &mut dyn backend::ObjectWriter, mut body: S, what: &str, limit: Option<i64>, mut seen: impl FnMut(&[u8])) -> Result<i64, IngestError>
where
    S: Stream<Item = Result<bytes::Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let mut written: i64 = 0;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| IngestError::Source { digest: what.to_string(), reason: e.to_string() })?;
        written += chunk.len() as i64;
        if let Some(expected) = limit.filter(|l| written > *l) {
            return Err(IngestError::Size { digest: what.to_string(), expected, actual: written });
        }
        seen(&chunk);
        out.write(chunk).await?;
    }
    Ok(written)
}

/// Upload staging: one object per request under `uploads/<upload id>/`, visible only once
/// its request's body is complete. The database says which parts count and in which order.
impl Storage {
    fn upload_prefix(upload_id: &str) -> String {
        format!("uploads/{upload_id}/")
    }

    /// On the filesystem, the upload's directory: parts of an upload whose directory is gone
    /// (it ended) fail to land. The object store needs nothing.
    pub async fn create_upload(&self, upload_id: &str) -> std::io::Result<()> {
        self.backend.make_dir(&Self::upload_prefix(upload_id)).await
    }

    /// Writes `body` as a new part of the upload; returns its key and size. A body that breaks
    /// off leaves nothing behind.
    pub async fn stage_part<S, E>(&self, upload_id: &str, body: S) -> Result<(String, u64), IngestError>
    where
        S: Stream<Item = Result<bytes::Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let key = format!("{}{}", Self::upload_prefix(upload_id), uuid::Uuid::new_v4());
        let mut writer = self.backend.create(&key, None).await?;
        let size = write_body(&mut *writer, body, &format!("upload {upload_id}"), None, |_| {}).await? as u64;
        writer.commit().await?;
        Ok((key, size))
    }

    /// The parts' bytes in order, as one stream.
    pub fn read_parts(&self, keys: Vec<String>) -> impl Stream<Item = std::io::Result<bytes::Bytes>> + Unpin {
        let backend = self.backend.clone();
        Box::pin(
            futures_util::stream::iter(keys)
                .then(move |key| {
                    let backend = backend.clone();
                    async move { backend.read(&key, None).await }
                })
                .try_flatten(),
        )
    }

    pub async fn remove_key(&self, key: &str) {
        if let Err(e) = self.backend.delete(key).await {
            tracing::warn!(key, error = %e, "could not remove a staged part; the sweep will");
        }
    }

    /// Removes an upload's staged bytes; returns how many there were.
    pub async fn remove_upload(&self, upload_id: &str) -> u64 {
        self.backend.delete_prefix(&Self::upload_prefix(upload_id)).await.unwrap_or_else(|e| {
            tracing::warn!(upload_id, error = %e, "could not remove an upload's staged parts; the sweep will");
            0
        })
    }

    /// Upload ids with staged bytes.
    pub async fn staged_uploads(&self) -> std::io::Result<Vec<String>> {
        self.backend.children("uploads/").await
    }

    /// The staged parts of an upload: key, how long ago it was written, size.
    pub async fn staged_parts(&self, upload_id: &str) -> std::io::Result<Vec<ObjectInfo>> {
        self.backend.list(&Self::upload_prefix(upload_id)).await
    }
}
