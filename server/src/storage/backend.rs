//! The one interface every place that stores bytes goes through; a room per backend
//! (`fs.rs`, `s3.rs`) implements it. Keys are `/`-separated (`artifact/ab/cdef…`,
//! `uploads/<id>/<part>`), the same on every backend.

use std::ops::Range;
use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::stream::BoxStream;

pub type ByteStream = BoxStream<'static, std::io::Result<Bytes>>;

/// An object in a listing.
#[derive(Debug, Clone)]
pub struct ObjectInfo {
    pub key: String,
    pub size: u64,
    /// How long ago it was last written.
    pub age: Duration,
}

#[async_trait]
pub trait Backend: Send + Sync + std::fmt::Debug {
    /// `filesystem` or `s3`, as `status/` reports it.
    fn kind(&self) -> &'static str;

    /// Writes, reads and removes a probe object: fails with a message naming the setting at
    /// fault when the store cannot be used.
    async fn check(&self) -> std::io::Result<()>;

    /// Starts a new object at `key`, of `size` bytes if known. Nobody sees it before
    /// [`ObjectWriter::commit`]; a writer dropped before that leaves nothing behind.
    async fn create(&self, key: &str, size: Option<u64>) -> std::io::Result<Box<dyn ObjectWriter>>;

    /// Stores a finished, verified local file under `key`, unless `key` already holds an
    /// object of `size` bytes (same key, same content: it stays as it is).
    async fn put_file(&self, path: &Path, key: &str, size: u64) -> std::io::Result<()>;

    /// The size of the object at `key`, if there is one.
    async fn size(&self, key: &str) -> std::io::Result<Option<u64>>;

    /// The object's bytes, or those in `range`; the stream ends with an error if the store
    /// breaks off.
    async fn read(&self, key: &str, range: Option<Range<u64>>) -> std::io::Result<ByteStream>;

    async fn delete(&self, key: &str) -> std::io::Result<()>;

    /// Every object under `prefix` (which ends with `/`).
    async fn list(&self, prefix: &str) -> std::io::Result<Vec<ObjectInfo>>;

    /// The names directly under `prefix` (which ends with `/`): objects and "directories".
    async fn children(&self, prefix: &str) -> std::io::Result<Vec<String>>;

    /// Makes `prefix` a place objects can be created in, where the backend has such a thing.
    async fn make_dir(&self, _prefix: &str) -> std::io::Result<()> {
        Ok(())
    }

    /// Removes everything under `prefix` (which ends with `/`); returns the bytes freed.
    async fn delete_prefix(&self, prefix: &str) -> std::io::Result<u64>;

    /// A URL that lets anyone GET the object until it expires, where the backend has them.
    async fn presign(&self, key: &str, expires: Duration) -> std::io::Result<Option<String>>;

    /// `(total, free)` bytes where objects are stored; unknown for an object store.
    fn space(&self) -> Option<(u64, u64)>;
}

#[async_trait]
pub trait ObjectWriter: Send {
    async fn write(&mut self, chunk: Bytes) -> std::io::Result<()>;

    /// Makes the object visible under its key, durable. An artifact key that already holds
    /// the right number of bytes keeps them.
    async fn commit(self: Box<Self>) -> std::io::Result<()>;
}

/// An error of the store itself being unreachable or failing (as opposed to a missing key):
/// the registry answers 503 for it.
#[derive(Debug, thiserror::Error)]
#[error("the object store is unavailable: {0}")]
pub struct Unavailable(pub String);

pub fn unavailable(msg: impl Into<String>) -> std::io::Error {
    std::io::Error::other(Unavailable(msg.into()))
}

pub fn is_unavailable(e: &std::io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<Unavailable>())
}
