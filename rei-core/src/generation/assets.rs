//! The [`AssetStore`] port: inputs and results, kept until retention ends.

use std::fmt;

use async_trait::async_trait;

use crate::time::Timestamp;

/// Longest asset key, in bytes.
pub const ASSET_KEY_LEN_MAX: usize = 256;

/// Where an asset lives in the store: `/`-separated segments of `A-Za-z0-9 _ - .`, none empty, none `.` or `..`,
/// at most [`ASSET_KEY_LEN_MAX`] bytes, so that a key is also a safe relative file path. The extension names the
/// media type ([`AssetKey::mime`]).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct AssetKey(String);

/// A key that breaks [`AssetKey`]'s rules.
#[derive(Clone, Copy, PartialEq, Eq, Debug, thiserror::Error)]
#[error("asset key must be 1 to {ASSET_KEY_LEN_MAX} bytes of /-separated A-Za-z0-9 _ - . segments, none . or ..")]
pub struct AssetKeyError;

impl AssetKey {
    /// Parses a key.
    ///
    /// # Errors
    /// [`AssetKeyError`].
    pub fn parse(text: &str) -> Result<AssetKey, AssetKeyError> {
        let segment_ok = |s: &str| {
            !s.is_empty()
                && s != "."
                && s != ".."
                && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        };
        if text.is_empty() || text.len() > ASSET_KEY_LEN_MAX || !text.split('/').all(segment_ok) {
            return Err(AssetKeyError);
        }
        Ok(AssetKey(text.to_owned()))
    }

    /// The key of a job's result: `results/<job>.<extension of mime>`.
    #[must_use]
    pub fn for_result(job: crate::ids::JobId, mime: &str) -> AssetKey {
        AssetKey(format!("results/{job}.{}", extension_of(mime)))
    }

    /// The key beside a result where the provider's own id of it is kept (`<result>.ref`: Kling's video id,
    /// which video-extend takes).
    #[must_use]
    pub fn provider_ref(&self) -> AssetKey {
        AssetKey(format!("{}.ref", self.0))
    }

    /// The text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The media type its extension names (`application/octet-stream` when none is known).
    #[must_use]
    pub fn mime(&self) -> &'static str {
        let ext = self.0.rsplit_once('.').map_or("", |(_, e)| e);
        match ext.to_ascii_lowercase().as_str() {
            "png" => "image/png",
            "jpg" | "jpeg" => "image/jpeg",
            "webp" => "image/webp",
            "gif" => "image/gif",
            "mp4" => "video/mp4",
            "mov" => "video/quicktime",
            "webm" => "video/webm",
            _ => "application/octet-stream",
        }
    }
}

/// The extension for a media type (`bin` when unknown).
fn extension_of(mime: &str) -> &'static str {
    match mime.split(';').next().unwrap_or("").trim().to_ascii_lowercase().as_str() {
        "image/png" => "png",
        "image/jpeg" | "image/jpg" => "jpg",
        "image/webp" => "webp",
        "image/gif" => "gif",
        "video/mp4" => "mp4",
        "video/quicktime" => "mov",
        "video/webm" => "webm",
        _ => "bin",
    }
}

#[cfg(feature = "serde")]
crate::serde_text::via_text!(AssetKey, AssetKey::parse);

impl fmt::Display for AssetKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What the store knows of one asset.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct AssetInfo {
    /// Its key.
    pub key: AssetKey,
    /// Its size in bytes.
    pub size: u64,
    /// When it was last written.
    pub modified_at: Timestamp,
}

/// Why an asset call failed.
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
pub enum AssetError {
    /// The asset is larger than the store accepts.
    #[error("asset of {size} bytes is over the limit of {max} bytes")]
    TooLarge {
        /// Its size.
        size: u64,
        /// The limit.
        max: u64,
    },
    /// The store could not be reached or failed; the call may be retried.
    #[error("asset store unavailable: {reason}")]
    Unavailable {
        /// What the adapter saw.
        reason: String,
    },
}

/// Where inputs and results live. Keys are the caller's; writing a key again replaces its bytes.
///
/// Contract: `get` after a `put` returns exactly the bytes put; `delete` of a missing key is `Ok(false)`;
/// `list_older_than` returns only assets last written strictly before `before`, at most `limit`, and every
/// such asset is eventually listed by repeated calls that delete what they were given.
#[async_trait]
pub trait AssetStore: Send + Sync {
    /// Stores `bytes` under `key`, replacing what was there.
    ///
    /// # Errors
    /// [`AssetError`].
    async fn put(&self, key: &AssetKey, bytes: Vec<u8>) -> Result<AssetInfo, AssetError>;

    /// The bytes under `key`, or `None`.
    ///
    /// # Errors
    /// [`AssetError::Unavailable`].
    async fn get(&self, key: &AssetKey) -> Result<Option<Vec<u8>>, AssetError>;

    /// Deletes `key`; `false` when there was nothing to delete.
    ///
    /// # Errors
    /// [`AssetError::Unavailable`].
    async fn delete(&self, key: &AssetKey) -> Result<bool, AssetError>;

    /// Up to `limit` assets last written before `before` (the garbage collector's retention sweep).
    ///
    /// # Errors
    /// [`AssetError::Unavailable`].
    async fn list_older_than(&self, before: Timestamp, limit: usize) -> Result<Vec<AssetInfo>, AssetError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_safe_relative_paths() {
        // Proves no key can climb out of the store's root or hide a separator.
        for good in ["a", "results/x.png", "inputs/2026/12/01/u_42-1.jpeg"] {
            assert!(AssetKey::parse(good).is_ok(), "{good}");
        }
        for bad in ["", "/abs", "a//b", "../up", "a/../b", "a/.", "trailing/", "sp ace", "back\\slash", "ü"] {
            assert!(AssetKey::parse(bad).is_err(), "{bad}");
        }
        assert!(AssetKey::parse(&"a".repeat(ASSET_KEY_LEN_MAX + 1)).is_err());
        let key = AssetKey::for_result(crate::ids::JobId::from(7), "image/PNG");
        assert_eq!((key.mime(), AssetKey::parse(key.as_str()).is_ok()), ("image/png", true));
        assert_eq!(AssetKey::for_result(crate::ids::JobId::from(7), "video/mp4").mime(), "video/mp4");
    }
}
