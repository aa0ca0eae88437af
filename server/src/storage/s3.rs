//! The object-store room: an S3-compatible bucket through the `object_store` crate. New objects
//! are streamed in as multipart uploads (or, up to one part's size, one PUT), which the store
//! shows only once completed: a writer that is dropped or fails leaves no object behind (the store reclaims the orphaned parts of
//! an upload it never completed; see docs/operations.md). Objects are streamed out as they are
//! read; nothing is held whole in memory.

use std::ops::Range;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as ObjectPath;
use object_store::signer::Signer;
use object_store::{ClientOptions, GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig, WriteMultipart};
use tokio::io::AsyncReadExt;

use super::backend::{unavailable, Backend, ByteStream, ObjectInfo, ObjectWriter};
use crate::config::StorageConfig;

/// Multipart chunk: S3's smallest part size, or more for objects known to need more than
/// [`MAX_PARTS`] of them. With [`PARTS_IN_FLIGHT`] this bounds the memory of one upload into
/// the store. An object of unknown size (a pushed chunk, a monolithic push without a length)
/// can grow to `MAX_PARTS` × 5 MiB, about 48 GiB.
const PART_SIZE: usize = 5 * 1024 * 1024;
/// S3 allows 10,000 parts; some headroom for a size that was declared a little short.
const MAX_PARTS: u64 = 9_000;
/// The largest part: sizes come from manifests, which an upstream writes, so a huge declared
/// size must not buy huge buffers. Objects up to about 144 GiB fit.
const MAX_PART_SIZE: usize = 16 * 1024 * 1024;
const PARTS_IN_FLIGHT: usize = 2;

pub struct S3 {
    store: Arc<AmazonS3>,
    prefix: String,
    describe: String,
}

impl std::fmt::Debug for S3 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe)
    }
}

impl S3 {
    /// Builds the client from the settings; nothing is contacted yet ([`Backend::check`] does).
    pub fn new(config: &StorageConfig) -> Result<Self, String> {
        let bucket = config.s3_bucket.clone().filter(|b| !b.is_empty()).ok_or("--s3-bucket (PULPISH_S3_BUCKET) is required with --storage s3")?;
        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(&bucket)
            .with_region(&config.s3_region)
            .with_virtual_hosted_style_request(config.s3_virtual_hosted)
            // Fail over quickly when the store is down: the registry answers 503 and the client retries.
            .with_retry(RetryConfig { max_retries: 2, retry_timeout: Duration::from_secs(10), ..Default::default() })
            .with_client_options(
                ClientOptions::new()
                    .with_allow_http(true)
                    .with_connect_timeout(Duration::from_secs(5))
                    // Blob streams last as long as the client reads; connect and retry bound the rest.
                    .with_timeout_disabled(),
            );
        if let Some(endpoint) = config.s3_endpoint.as_deref().filter(|e| !e.is_empty()) {
            let url = url::Url::parse(endpoint).map_err(|e| format!("--s3-endpoint {endpoint:?} is not a URL ({e}): write it as http://HOST:PORT or https://HOST"))?;
            // `host:port` parses as a URL whose scheme is the host.
            if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
                return Err(format!("--s3-endpoint {endpoint:?} is not an http:// or https:// URL: write it as http://HOST:PORT or https://HOST"));
            }
            builder = builder.with_endpoint(endpoint);
        }
        match (&config.s3_access_key_id, &config.s3_secret_access_key) {
            (Some(id), Some(secret)) => builder = builder.with_access_key_id(id).with_secret_access_key(secret),
            (None, None) => {}
            _ => return Err("--s3-access-key-id and --s3-secret-access-key go together".into()),
        }
        let store = builder.build().map_err(|e| format!("the object store settings are invalid: {e}"))?;
        let prefix = config.s3_prefix.as_deref().unwrap_or("").trim_matches('/').to_string();
        // Keys are matched back to the prefix as written: one the store's path rules would
        // encode or normalise (`..`, `//`, `%`, non-ASCII, ...) could never be matched.
        if !prefix.is_empty() && ObjectPath::parse(&prefix).map_or(true, |p| p.as_ref() != prefix || ObjectPath::from(prefix.as_str()).as_ref() != prefix) {
            return Err(format!("--s3-prefix {:?} is not a plain key prefix: use letters, digits and '/', '-', '_', '.'", config.s3_prefix.as_deref().unwrap_or("")));
        }
        let describe = format!(
            "s3://{bucket}/{prefix} at {}",
            config.s3_endpoint.as_deref().unwrap_or("AWS")
        );
        Ok(S3 { store: Arc::new(store), prefix, describe })
    }

    fn path(&self, key: &str) -> ObjectPath {
        if self.prefix.is_empty() {
            ObjectPath::from(key)
        } else {
            ObjectPath::from(format!("{}/{key}", self.prefix))
        }
    }

    fn key_of(&self, path: &ObjectPath) -> String {
        let p = path.as_ref();
        if self.prefix.is_empty() {
            p.to_string()
        } else {
            p.strip_prefix(&self.prefix).unwrap_or(p).trim_start_matches('/').to_string()
        }
    }
}

/// Each call to the store but a byte stream gets this long to answer: the client's own timeout
/// is off (it would cut long blob streams), and a store that accepts connections but never
/// answers must not hang requests.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

async fn within<T>(call: impl std::future::Future<Output = T>) -> std::io::Result<T> {
    tokio::time::timeout(ANSWER_TIMEOUT, call)
        .await
        .map_err(|_| unavailable(format!("the object store did not answer within {} s", ANSWER_TIMEOUT.as_secs())))
}

/// The multipart chunk for an object of `size` bytes, if known.
fn part_size_for(size: Option<u64>) -> usize {
    size.map_or(PART_SIZE, |s| usize::try_from(s.div_ceil(MAX_PARTS)).unwrap_or(usize::MAX).clamp(PART_SIZE, MAX_PART_SIZE))
}

/// Missing objects are `NotFound`; everything else the store says is the store failing.
fn io(e: object_store::Error) -> std::io::Error {
    match e {
        object_store::Error::NotFound { .. } => std::io::Error::new(std::io::ErrorKind::NotFound, e.to_string()),
        other => unavailable(other.to_string()),
    }
}

/// A new object. Bytes are held until more than a part's worth has arrived; only then does a
/// multipart upload start. An object that ends smaller is stored with one plain PUT: fewer round
/// trips for the many small objects (configs, chunks), and the only way to store an empty one
/// (stores refuse an empty part).
struct S3Writer {
    store: Arc<AmazonS3>,
    path: ObjectPath,
    /// An artifact key: if it already holds the right number of bytes, they stay.
    content_addressed: bool,
    /// Bytes not handed to a multipart upload yet.
    held: Vec<Bytes>,
    /// Started once `held` passes a part's size; `None` again once committed.
    upload: Option<WriteMultipart>,
    part_size: usize,
    written: u64,
}

impl S3Writer {
    fn held_len(&self) -> usize {
        self.held.iter().map(Bytes::len).sum()
    }
}

#[async_trait]
impl ObjectWriter for S3Writer {
    async fn write(&mut self, chunk: Bytes) -> std::io::Result<()> {
        self.written += chunk.len() as u64;
        self.held.push(chunk);
        if self.upload.is_none() {
            if self.held_len() <= PART_SIZE {
                return Ok(());
            }
            let upload = within(self.store.put_multipart(&self.path)).await?.map_err(io)?;
            self.upload = Some(WriteMultipart::new_with_chunk_size(upload, self.part_size));
        }
        let upload = self.upload.as_mut().expect("started above");
        for chunk in std::mem::take(&mut self.held) {
            within(upload.wait_for_capacity(PARTS_IN_FLIGHT)).await?.map_err(io)?;
            upload.put(chunk);
        }
        Ok(())
    }

    async fn commit(mut self: Box<Self>) -> std::io::Result<()> {
        if self.content_addressed {
            if let Ok(Ok(meta)) = within(self.store.head(&self.path)).await {
                if meta.size == self.written {
                    // Stored once: the object stays as it is (Drop aborts an upload we started).
                    return Ok(());
                }
            }
        }
        match self.upload.take() {
            // `write` hands every held byte to an upload once it has started.
            Some(upload) => {
                within(upload.finish()).await?.map_err(io)?;
            }
            None => {
                let payload: PutPayload = std::mem::take(&mut self.held).into_iter().collect();
                within(self.store.put(&self.path, payload)).await?.map_err(io)?;
            }
        }
        Ok(())
    }
}

impl Drop for S3Writer {
    fn drop(&mut self) {
        if let Some(upload) = self.upload.take() {
            // Not committed: abort the multipart upload so its parts are freed at once.
            if let Ok(handle) = tokio::runtime::Handle::try_current() {
                handle.spawn(async move {
                    let _ = upload.abort().await;
                });
            }
        }
    }
}

#[async_trait]
impl Backend for S3 {
    fn kind(&self) -> &'static str {
        "s3"
    }

    async fn check(&self) -> std::io::Result<()> {
        let probe = self.path(&format!("probe/{}", uuid::Uuid::new_v4()));
        let explain = |e: object_store::Error| {
            let text = e.to_string();
            let what = if text.contains("NoSuchBucket") {
                "the bucket does not exist (--s3-bucket)"
            } else if ["InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "Forbidden", "403"].iter().any(|m| text.contains(m)) {
                "the store refused the credentials (--s3-access-key-id, --s3-secret-access-key)"
            } else if ["error sending request", "connect", "Connection refused", "dns"].iter().any(|m| text.contains(m)) {
                "the endpoint cannot be reached (--s3-endpoint)"
            } else {
                "the store refused a test write"
            };
            std::io::Error::other(format!("object store {self:?}: {what}: {text}"))
        };
        let silent = |e: std::io::Error| std::io::Error::other(format!("object store {self:?}: {e} (--s3-endpoint)"));
        within(self.store.put(&probe, Bytes::from_static(b"pulpish").into())).await.map_err(silent)?.map_err(explain)?;
        let back = within(async { self.store.get(&probe).await?.bytes().await }).await.map_err(silent)?.map_err(explain)?;
        within(self.store.delete(&probe)).await.map_err(silent)?.map_err(explain)?;
        if back.as_ref() != b"pulpish" {
            return Err(std::io::Error::other(format!("object store {self:?}: a test object read back different bytes")));
        }
        Ok(())
    }

    async fn create(&self, key: &str, size: Option<u64>) -> std::io::Result<Box<dyn ObjectWriter>> {
        let part_size = part_size_for(size);
        Ok(Box::new(S3Writer {
            part_size,
            store: self.store.clone(),
            path: self.path(key),
            content_addressed: key.starts_with("artifact/"),
            held: Vec::new(),
            upload: None,
            written: 0,
        }))
    }

    async fn put_file(&self, path: &Path, key: &str, size: u64) -> std::io::Result<()> {
        if self.size(key).await? == Some(size) {
            return Ok(());
        }
        let mut file = tokio::fs::File::open(path).await?;
        let mut writer = self.create(key, Some(size)).await?;
        loop {
            let mut buf = vec![0u8; 1024 * 1024];
            let n = file.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            buf.truncate(n);
            writer.write(Bytes::from(buf)).await?;
        }
        writer.commit().await
    }

    async fn size(&self, key: &str) -> std::io::Result<Option<u64>> {
        match within(self.store.head(&self.path(key))).await? {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(io(e)),
        }
    }

    async fn read(&self, key: &str, range: Option<Range<u64>>) -> std::io::Result<ByteStream> {
        let options = GetOptions { range: range.filter(|r| !r.is_empty()).map(GetRange::Bounded), ..Default::default() };
        let got = within(self.store.get_opts(&self.path(key), options)).await?.map_err(io)?;
        Ok(Box::pin(got.into_stream().map_err(io)))
    }

    async fn delete(&self, key: &str) -> std::io::Result<()> {
        match within(self.store.delete(&self.path(key))).await? {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(io(e)),
        }
    }

    async fn list(&self, prefix: &str) -> std::io::Result<Vec<ObjectInfo>> {
        let objects: Vec<_> = within(self.store.list(Some(&self.path(prefix.trim_end_matches('/')))).try_collect()).await?.map_err(io)?;
        let now = chrono::Utc::now();
        Ok(objects
            .into_iter()
            .map(|m| ObjectInfo { key: self.key_of(&m.location), size: m.size, age: (now - m.last_modified).to_std().unwrap_or_default() })
            .collect())
    }

    async fn children(&self, prefix: &str) -> std::io::Result<Vec<String>> {
        let listing = within(self.store.list_with_delimiter(Some(&self.path(prefix.trim_end_matches('/'))))).await?.map_err(io)?;
        let name = |p: &ObjectPath| p.filename().map(str::to_string);
        Ok(listing.common_prefixes.iter().filter_map(name).chain(listing.objects.iter().filter_map(|m| name(&m.location))).collect())
    }

    async fn delete_prefix(&self, prefix: &str) -> std::io::Result<u64> {
        let objects = self.list(prefix).await?;
        let freed = objects.iter().map(|o| o.size).sum();
        let paths: Vec<_> = objects.iter().map(|o| Ok(self.path(&o.key))).collect();
        let paths = futures_util::stream::iter(paths).boxed();
        within(self.store.delete_stream(paths).try_collect::<Vec<_>>()).await?.map_err(io)?;
        Ok(freed)
    }

    async fn presign(&self, key: &str, expires: Duration) -> std::io::Result<Option<String>> {
        let url = self.store.signed_url(http::Method::GET, &self.path(key), expires).await.map_err(io)?;
        Ok(Some(url.to_string()))
    }

    fn space(&self) -> Option<(u64, u64)> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_grow_for_large_objects_within_bounds() {
        assert_eq!(part_size_for(None), PART_SIZE);
        assert_eq!(part_size_for(Some(0)), PART_SIZE);
        assert_eq!(part_size_for(Some(40 << 30)), PART_SIZE, "40 GiB fits in 9,000 parts of 5 MiB");
        let big = 100u64 << 30;
        let part = part_size_for(Some(big)) as u64;
        assert!(part > PART_SIZE as u64 && big.div_ceil(part) <= MAX_PARTS, "100 GiB: {part}-byte parts");
        assert_eq!(part_size_for(Some(u64::MAX)), MAX_PART_SIZE, "a declared size buys no more than the largest part");
    }
}
