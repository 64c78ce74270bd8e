//! Where the worker keeps inputs and results, and where `rei gc` sweeps: a local directory by default, an
//! S3-compatible bucket when one is named.

use std::path::Path;

use anyhow::{Context, Result, bail};
use rei::adapters::assets::{ObjectAssetStore, S3Config};

/// An S3-compatible bucket instead of the local directory.
#[derive(clap::Args, Clone, Debug)]
pub(crate) struct S3Args {
    /// Keep assets in this S3 bucket instead of a local directory.
    #[arg(long, env = "REI_S3_BUCKET")]
    pub(crate) s3_bucket: Option<String>,
    /// The bucket's region.
    #[arg(long, env = "REI_S3_REGION", default_value = "us-east-1")]
    pub(crate) s3_region: String,
    /// An S3-compatible service's URL (MinIO, Yandex Object Storage, ...); absent for AWS itself.
    #[arg(long, env = "REI_S3_ENDPOINT")]
    pub(crate) s3_endpoint: Option<String>,
    /// A folder in the bucket for every asset.
    #[arg(long, env = "REI_S3_PREFIX")]
    pub(crate) s3_prefix: Option<String>,
    /// Allow a plain http:// endpoint (a service on the same network).
    #[arg(long, env = "REI_S3_ALLOW_HTTP")]
    pub(crate) s3_allow_http: bool,
    /// The access key's id.
    #[arg(long, env = "AWS_ACCESS_KEY_ID", hide_env_values = true)]
    pub(crate) s3_access_key_id: Option<String>,
    /// The access key's secret.
    #[arg(long, env = "AWS_SECRET_ACCESS_KEY", hide_env_values = true)]
    pub(crate) s3_secret_access_key: Option<String>,
}

impl S3Args {
    /// `true` when a bucket is named.
    pub(crate) fn is_set(&self) -> bool {
        self.s3_bucket.is_some()
    }
}

/// The bucket when one is named, else the directory `dir`; assets over `max_bytes` are refused.
///
/// # Errors
/// A bucket without credentials, or a store that cannot be opened.
pub(crate) async fn open(dir: &Path, s3: &S3Args, max_bytes: u64) -> Result<ObjectAssetStore> {
    let Some(bucket) = &s3.s3_bucket else {
        return ObjectAssetStore::local(dir, max_bytes)
            .await
            .with_context(|| format!("failed to open the asset directory {}", dir.display()));
    };
    let (Some(key), Some(secret)) = (&s3.s3_access_key_id, &s3.s3_secret_access_key) else {
        bail!("REI_S3_BUCKET needs AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY");
    };
    let config = S3Config {
        bucket: bucket.clone(),
        region: s3.s3_region.clone(),
        endpoint: s3.s3_endpoint.clone(),
        access_key_id: key.clone(),
        secret_access_key: secret.clone(),
        allow_http: s3.s3_allow_http,
        prefix: s3.s3_prefix.clone(),
    };
    ObjectAssetStore::s3(config, max_bytes).with_context(|| format!("failed to set up the bucket {bucket}"))
}
