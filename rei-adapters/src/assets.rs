//! The asset store on `object_store` (feature `assets`): a local directory, the embedded default, or (feature
//! `s3`) an S3-compatible bucket.
//!
//! Keys map one to one onto object paths: an [`AssetKey`] is already a safe relative path, so no key can leave
//! the directory or the bucket's prefix. Writes to a directory are atomic (`object_store` writes a staging file
//! beside the target and renames it into place) and flushed to disk before `put` returns. Times are the
//! store's own: the file's modification time, or the object's `Last-Modified`.

use std::future::poll_fn;
use std::sync::Arc;

use async_trait::async_trait;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use rei_core::generation::{AssetError, AssetInfo, AssetKey, AssetStore};
use rei_core::time::Timestamp;

/// Why an asset store could not be set up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AssetSetupError {
    /// The directory could not be created or opened.
    #[error("cannot use {path} as the asset directory: {reason}")]
    Directory {
        /// The directory asked for.
        path: String,
        /// What the file system said.
        reason: String,
    },
    /// The bucket's configuration was refused.
    #[error("cannot configure the S3 asset store: {reason}")]
    S3 {
        /// What was wrong.
        reason: String,
    },
}

/// An [`AssetStore`] over any [`ObjectStore`], refusing bodies over `max_bytes`.
#[derive(Debug, Clone)]
pub struct ObjectAssetStore {
    store: Arc<dyn ObjectStore>,
    max_bytes: u64,
}

impl ObjectAssetStore {
    /// Assets in `store` (an embedder's own backend, or `object_store`'s in-memory store), at most `max_bytes`
    /// each. Keys are used as paths from the store's root.
    #[must_use]
    pub fn new(store: Arc<dyn ObjectStore>, max_bytes: u64) -> ObjectAssetStore {
        ObjectAssetStore { store, max_bytes }
    }

    /// Assets as files under `dir`, created if missing, at most `max_bytes` each. Each write is flushed to disk
    /// (file and directory) before `put` returns; deleting an asset also removes the directories it leaves empty.
    ///
    /// # Errors
    /// [`AssetSetupError::Directory`] when `dir` cannot be created or is not a directory.
    pub async fn local(dir: &std::path::Path, max_bytes: u64) -> Result<ObjectAssetStore, AssetSetupError> {
        let path = dir.to_path_buf();
        let error = |reason: String| AssetSetupError::Directory { path: dir.display().to_string(), reason };
        let open = move || -> Result<object_store::local::LocalFileSystem, String> {
            std::fs::create_dir_all(&path).map_err(|e| e.to_string())?;
            if !path.is_dir() {
                return Err("not a directory".to_owned());
            }
            let fs = object_store::local::LocalFileSystem::new_with_prefix(&path).map_err(|e| e.to_string())?;
            Ok(fs.with_automatic_cleanup(true).with_fsync(true))
        };
        // The directory is created off the async threads when there is a runtime to take it.
        let fs = match tokio::runtime::Handle::try_current() {
            Ok(runtime) => runtime.spawn_blocking(open).await.map_err(|e| error(e.to_string()))?,
            Err(_) => open(),
        }
        .map_err(error)?;
        Ok(ObjectAssetStore::new(Arc::new(fs), max_bytes))
    }

    /// Assets in an S3 bucket (or an S3-compatible service at `config.endpoint`), under `config.prefix`, at
    /// most `max_bytes` each. Nothing is sent until the first call.
    ///
    /// # Errors
    /// [`AssetSetupError::S3`] when the configuration is refused (a malformed endpoint or prefix).
    #[cfg(feature = "s3")]
    pub fn s3(config: S3Config, max_bytes: u64) -> Result<ObjectAssetStore, AssetSetupError> {
        s3::build(config).map(|store| ObjectAssetStore::new(store, max_bytes))
    }

    /// The object path of `key`. Every key is a valid path; the error is only a guard.
    fn path(key: &AssetKey) -> Result<ObjectPath, AssetError> {
        ObjectPath::parse(key.as_str())
            .map_err(|e| AssetError::Unavailable { reason: format!("asset key {key} is no object path: {e}") })
    }
}

#[cfg(feature = "s3")]
pub use s3::S3Config;

/// The port's error for a failed call: the store is down, refused us, or the disk failed.
fn unavailable(e: &object_store::Error) -> AssetError {
    AssetError::Unavailable { reason: e.to_string() }
}

/// An object's modification time as the port counts it: whole milliseconds, rounded down.
fn modified_at(meta: &object_store::ObjectMeta) -> Timestamp {
    Timestamp::from_millis(meta.last_modified.timestamp_millis())
}

/// The size of `bytes` as the port counts it.
fn size_of(bytes: &[u8]) -> u64 {
    u64::try_from(bytes.len()).unwrap_or(u64::MAX)
}

#[async_trait]
impl AssetStore for ObjectAssetStore {
    async fn put(&self, key: &AssetKey, bytes: Vec<u8>) -> Result<AssetInfo, AssetError> {
        let size = size_of(&bytes);
        if size > self.max_bytes {
            return Err(AssetError::TooLarge { size, max: self.max_bytes });
        }
        let path = Self::path(key)?;
        self.store.put(&path, PutPayload::from(bytes)).await.map_err(|e| unavailable(&e))?;
        // A put answers with no time; the store's own is what later listings compare.
        let meta = self.store.head(&path).await.map_err(|e| unavailable(&e))?;
        Ok(AssetInfo { key: key.clone(), size, modified_at: modified_at(&meta) })
    }

    async fn get(&self, key: &AssetKey) -> Result<Option<Vec<u8>>, AssetError> {
        let path = Self::path(key)?;
        let found = match self.store.get(&path).await {
            Ok(found) => found,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(unavailable(&e)),
        };
        // Only this store writes here, within the limit; anything larger was put there by hand and is not read
        // into memory.
        if found.meta.size > self.max_bytes {
            return Err(AssetError::TooLarge { size: found.meta.size, max: self.max_bytes });
        }
        match found.bytes().await {
            Ok(bytes) => Ok(Some(bytes.to_vec())),
            // Deleted between opening and reading.
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(unavailable(&e)),
        }
    }

    async fn delete(&self, key: &AssetKey) -> Result<bool, AssetError> {
        let path = Self::path(key)?;
        // S3 answers a delete of a missing object with success, so whether there was one is asked first.
        match self.store.head(&path).await {
            Ok(_) => {}
            Err(object_store::Error::NotFound { .. }) => return Ok(false),
            Err(e) => return Err(unavailable(&e)),
        }
        match self.store.delete(&path).await {
            Ok(()) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(unavailable(&e)),
        }
    }

    async fn list_older_than(&self, before: Timestamp, limit: usize) -> Result<Vec<AssetInfo>, AssetError> {
        let mut old = Vec::new();
        if limit == 0 {
            return Ok(old);
        }
        // The listing is walked from the start each time and stops at `limit`: what the sweep deleted is gone,
        // so the next call reaches further. Objects whose names are no asset keys (a staging file, something
        // put there by hand) are never listed, and so never deleted.
        // The listing is a boxed `dyn Stream`, whose `poll_next` needs no futures toolkit to call.
        let mut listing = self.store.list(None);
        while let Some(next) = poll_fn(|cx| listing.as_mut().poll_next(cx)).await {
            let meta = next.map_err(|e| unavailable(&e))?;
            let Ok(key) = AssetKey::parse(meta.location.as_ref()) else { continue };
            let at = modified_at(&meta);
            if at < before {
                old.push(AssetInfo { key, size: meta.size, modified_at: at });
                if old.len() >= limit {
                    break;
                }
            }
        }
        Ok(old)
    }
}

/// The S3 backend (feature `s3`).
#[cfg(feature = "s3")]
mod s3 {
    use std::fmt;
    use std::sync::Arc;
    use std::time::Duration;

    use object_store::aws::AmazonS3Builder;
    use object_store::path::Path as ObjectPath;
    use object_store::prefix::PrefixStore;
    use object_store::{BackoffConfig, ClientOptions, ObjectStore, RetryConfig};

    use super::AssetSetupError;

    /// Longest one request may take, from connect to the last byte of the answer.
    const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
    /// Longest a TCP connect may take.
    const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
    /// Longest an idle pooled connection is kept.
    const POOL_IDLE: Duration = Duration::from_secs(90);
    /// How many times a failed request is retried (server errors, throttling, broken connections).
    const RETRIES_MAX: usize = 3;
    /// Longest time from a request's first try after which it is not retried again.
    const RETRY_TIMEOUT: Duration = Duration::from_secs(120);
    /// The first wait between tries, doubled each time up to [`BACKOFF_MAX`].
    const BACKOFF_INITIAL: Duration = Duration::from_millis(100);
    /// The longest wait between tries.
    const BACKOFF_MAX: Duration = Duration::from_secs(5);

    /// Where the bucket is and how to sign in.
    #[derive(Clone, PartialEq, Eq)]
    pub struct S3Config {
        /// The bucket's name.
        pub bucket: String,
        /// Its region (`us-east-1`, or what the S3-compatible service expects).
        pub region: String,
        /// The service's URL for S3-compatible services (`http://127.0.0.1:9000`); `None` for AWS itself.
        /// Requests are path-style (`{endpoint}/{bucket}/{key}`).
        pub endpoint: Option<String>,
        /// The access key's id.
        pub access_key_id: String,
        /// The access key's secret; never printed.
        pub secret_access_key: String,
        /// Whether a plain `http://` endpoint is allowed (a local service); otherwise only HTTPS.
        pub allow_http: bool,
        /// A folder in the bucket that holds every asset (`rei/assets`), or `None` for the bucket's root.
        pub prefix: Option<String>,
    }

    impl fmt::Debug for S3Config {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("S3Config")
                .field("bucket", &self.bucket)
                .field("region", &self.region)
                .field("endpoint", &self.endpoint)
                .field("access_key_id", &self.access_key_id)
                .field("secret_access_key", &"<redacted>")
                .field("allow_http", &self.allow_http)
                .field("prefix", &self.prefix)
                .finish()
        }
    }

    /// The bucket as an object store, every limit set here rather than left to the library.
    pub(super) fn build(config: S3Config) -> Result<Arc<dyn ObjectStore>, AssetSetupError> {
        let refused = |reason: String| AssetSetupError::S3 { reason };
        if config.bucket.is_empty() {
            return Err(refused("the bucket's name is empty".to_owned()));
        }
        let prefix = match config.prefix.as_deref().map(ObjectPath::parse) {
            None => None,
            Some(Ok(p)) if p.as_ref().is_empty() => None,
            Some(Ok(p)) => Some(p),
            Some(Err(e)) => return Err(refused(format!("prefix: {e}"))),
        };
        let client = ClientOptions::new()
            .with_timeout(REQUEST_TIMEOUT)
            .with_connect_timeout(CONNECT_TIMEOUT)
            .with_pool_idle_timeout(POOL_IDLE)
            .with_allow_http(config.allow_http);
        let retry = RetryConfig {
            backoff: BackoffConfig { init_backoff: BACKOFF_INITIAL, max_backoff: BACKOFF_MAX, base: 2.0 },
            max_retries: RETRIES_MAX,
            retry_timeout: RETRY_TIMEOUT,
        };
        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(config.bucket)
            .with_region(config.region)
            .with_access_key_id(config.access_key_id)
            .with_secret_access_key(config.secret_access_key)
            .with_virtual_hosted_style_request(false)
            .with_client_options(client)
            .with_retry(retry);
        if let Some(endpoint) = config.endpoint {
            builder = builder.with_endpoint(endpoint);
        }
        let bucket = builder.build().map_err(|e| refused(e.to_string()))?;
        Ok(match prefix {
            Some(prefix) => Arc::new(PrefixStore::new(bucket, prefix)),
            None => Arc::new(bucket),
        })
    }
}
