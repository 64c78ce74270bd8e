//! The in-memory asset store and the conformance suite every [`AssetStore`] implementation must pass.
//!
//! The suite panics on the first broken contract, naming it. It takes a factory of empty stores and a `cut`
//! hook that lets time pass, so that it runs as well against a store stamped by a manual clock as against one
//! whose times come from a file system or an object store's server.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;

use crate::generation::{AssetError, AssetInfo, AssetKey, AssetStore};
use crate::time::{Clock, Timestamp};

/// Locks a mutex, taking the data even if another thread panicked while holding it: the map cannot be left
/// half-written by a panic.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One stored asset: its bytes and when they were written.
type Stored = (Vec<u8>, Timestamp);

/// An [`AssetStore`] in a map, stamped by a [`Clock`], with an optional size limit and a switch that makes every
/// call fail as [`AssetError::Unavailable`].
pub struct MemoryAssetStore {
    clock: Arc<dyn Clock>,
    max_bytes: Option<u64>,
    assets: Mutex<BTreeMap<AssetKey, Stored>>,
    unavailable: AtomicBool,
}

impl MemoryAssetStore {
    /// An empty store without a size limit, stamping writes with `clock`.
    #[must_use]
    pub fn new(clock: Arc<dyn Clock>) -> MemoryAssetStore {
        MemoryAssetStore {
            clock,
            max_bytes: None,
            assets: Mutex::new(BTreeMap::new()),
            unavailable: AtomicBool::new(false),
        }
    }

    /// The same store refusing bodies over `max_bytes` with [`AssetError::TooLarge`].
    #[must_use]
    pub fn with_max_bytes(self, max_bytes: u64) -> MemoryAssetStore {
        MemoryAssetStore { max_bytes: Some(max_bytes), ..self }
    }

    /// While `on`, every call fails as [`AssetError::Unavailable`] and changes nothing: a store that is down.
    pub fn set_unavailable(&self, on: bool) {
        self.unavailable.store(on, Ordering::SeqCst);
    }

    /// How many assets are stored.
    #[must_use]
    pub fn len(&self) -> usize {
        lock(&self.assets).len()
    }

    /// Whether nothing is stored.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        lock(&self.assets).is_empty()
    }

    /// The stored keys, in order.
    #[must_use]
    pub fn keys(&self) -> Vec<AssetKey> {
        lock(&self.assets).keys().cloned().collect()
    }

    fn check_available(&self) -> Result<(), AssetError> {
        if self.unavailable.load(Ordering::SeqCst) {
            Err(AssetError::Unavailable { reason: "injected fault: the memory asset store is down".to_owned() })
        } else {
            Ok(())
        }
    }
}

/// The size of `bytes` as the port counts it.
fn size_of(bytes: &[u8]) -> u64 {
    u64::try_from(bytes.len()).unwrap_or(u64::MAX)
}

#[async_trait]
impl AssetStore for MemoryAssetStore {
    async fn put(&self, key: &AssetKey, bytes: Vec<u8>) -> Result<AssetInfo, AssetError> {
        self.check_available()?;
        let size = size_of(&bytes);
        if let Some(max) = self.max_bytes.filter(|max| size > *max) {
            return Err(AssetError::TooLarge { size, max });
        }
        let modified_at = self.clock.now();
        lock(&self.assets).insert(key.clone(), (bytes, modified_at));
        Ok(AssetInfo { key: key.clone(), size, modified_at })
    }

    async fn get(&self, key: &AssetKey) -> Result<Option<Vec<u8>>, AssetError> {
        self.check_available()?;
        Ok(lock(&self.assets).get(key).map(|(bytes, _)| bytes.clone()))
    }

    async fn delete(&self, key: &AssetKey) -> Result<bool, AssetError> {
        self.check_available()?;
        Ok(lock(&self.assets).remove(key).is_some())
    }

    async fn list_older_than(&self, before: Timestamp, limit: usize) -> Result<Vec<AssetInfo>, AssetError> {
        self.check_available()?;
        let assets = lock(&self.assets);
        let old = assets.iter().filter(|(_, (_, at))| *at < before);
        let infos =
            old.map(|(key, (bytes, at))| AssetInfo { key: key.clone(), size: size_of(bytes), modified_at: *at });
        Ok(infos.take(limit).collect())
    }
}

/// A key from a literal of the suite.
fn key(text: &str) -> AssetKey {
    AssetKey::parse(text).unwrap_or_else(|_| panic!("the suite's key {text:?} must be valid"))
}

/// `Ok` or a panic naming the call and the contract it was checking.
fn ok<T>(result: Result<T, AssetError>, what: &str) -> T {
    result.unwrap_or_else(|e| panic!("{what} must succeed: {e}"))
}

/// Every byte value, then a few more, so that no encoding or text conversion can go unnoticed.
fn binary_body() -> Vec<u8> {
    (0..=255u8).chain([0, 0xff, b'\r', b'\n', 0]).collect()
}

/// Checks every MUST of [`AssetStore`] on empty stores from `make`. Panics on the first broken one.
///
/// `cut` lets time pass and returns a cutoff: every asset written before the call MUST be stamped (by the store,
/// as [`AssetStore::list_older_than`] sees it) strictly before the cutoff, and every asset written after it at
/// or after the cutoff. With a manual clock, advance it and return the new time; with a real clock (a file
/// system's or a server's), sleep past the clock's granularity, take the time, and sleep again. A store that
/// reports whole seconds (S3's `Last-Modified` on a `HEAD`) needs a cutoff on a whole second, slept past.
pub async fn asset_store_conformance<F, Fut, C, CFut>(make: F, cut: C)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn AssetStore>>,
    C: Fn() -> CFut,
    CFut: Future<Output = Timestamp>,
{
    round_trips_exact_bytes(&*make().await).await;
    overwrite_replaces(&*make().await, &cut).await;
    missing_keys_and_delete(&*make().await).await;
    listing_by_age(&*make().await, &cut).await;
}

/// `get` after `put` returns exactly the bytes put: binary, empty, nested keys; `put` reports the size.
async fn round_trips_exact_bytes(s: &dyn AssetStore) {
    let binary = binary_body();
    let large: Vec<u8> = (0..100_000u32).map(|i| u8::try_from(i % 251).unwrap_or(0)).collect();
    let cases: [(&str, &[u8]); 5] = [
        ("a.bin", &binary),
        ("empty.bin", &[]),
        ("results/ab/c.png", b"\x89PNG\r\n\x1a\n nested"),
        ("inputs/2026/01/02/u_42-1.jpeg", b"deeply nested"),
        ("large.bin", &large),
    ];
    for (text, bytes) in cases {
        let k = key(text);
        let info = ok(s.put(&k, bytes.to_vec()).await, "put");
        assert_eq!((&info.key, info.size), (&k, size_of(bytes)), "put reports the key and size of {text}");
    }
    for (text, bytes) in cases {
        let got = ok(s.get(&key(text)).await, "get");
        assert_eq!(got.as_deref(), Some(bytes), "get returns exactly the bytes put under {text}");
    }
    // A key is a whole name, not a prefix: a key that only shares a beginning with a stored one is missing.
    assert_eq!(ok(s.get(&key("results/ab")).await, "get"), None, "a directory-like prefix of a key is no asset");
    assert_eq!(ok(s.get(&key("a.bi")).await, "get"), None, "a prefix of a key is no asset");
}

/// Writing a key again replaces its bytes and its write time.
async fn overwrite_replaces<C, CFut>(s: &dyn AssetStore, cut: &C)
where
    C: Fn() -> CFut,
    CFut: Future<Output = Timestamp>,
{
    let k = key("results/over.webp");
    let first = ok(s.put(&k, b"the first, longer body".to_vec()).await, "put");
    let cutoff = cut().await;
    let second = ok(s.put(&k, b"second".to_vec()).await, "second put");
    assert_eq!(second.size, 6, "a second put reports the new size");
    assert!(first.modified_at < cutoff && second.modified_at >= cutoff, "a second put is stamped anew");
    assert_eq!(ok(s.get(&k).await, "get").as_deref(), Some(&b"second"[..]), "a second put replaces the bytes");
    let listed = ok(s.list_older_than(cutoff, 10).await, "list");
    assert!(listed.is_empty(), "a rewritten asset is not older than its last write: {listed:?}");
    ok(s.put(&k, Vec::new()).await, "put of nothing");
    assert_eq!(ok(s.get(&k).await, "get"), Some(Vec::new()), "an asset can be replaced by an empty one");
}

/// A missing key reads as `None` and deletes as `false`; a delete removes the asset and only it.
async fn missing_keys_and_delete(s: &dyn AssetStore) {
    let missing = key("results/none.png");
    assert_eq!(ok(s.get(&missing).await, "get of a missing key"), None, "a missing key reads as None");
    assert!(!ok(s.delete(&missing).await, "delete of a missing key"), "deleting a missing key is Ok(false)");
    assert!(!ok(s.delete(&key("no/such/dir/x.png")).await, "delete"), "a missing nested key deletes as false");

    let (a, b) = (key("results/d/a.png"), key("results/d/b.png"));
    ok(s.put(&a, b"a".to_vec()).await, "put");
    ok(s.put(&b, b"b".to_vec()).await, "put");
    assert!(ok(s.delete(&a).await, "delete"), "deleting a stored key is Ok(true)");
    assert_eq!(ok(s.get(&a).await, "get"), None, "a deleted key reads as None");
    assert!(!ok(s.delete(&a).await, "delete again"), "deleting twice is Ok(false) the second time");
    assert_eq!(ok(s.get(&b).await, "get").as_deref(), Some(&b"b"[..]), "a delete leaves its neighbours");
    ok(s.put(&a, b"again".to_vec()).await, "put after delete");
    assert_eq!(ok(s.get(&a).await, "get").as_deref(), Some(&b"again"[..]), "a deleted key can be written again");
}

/// `list_older_than` gives only assets written strictly before the cutoff, at most `limit`, and repeated
/// list-and-delete drains every old asset while keeping the new ones.
async fn listing_by_age<C, CFut>(s: &dyn AssetStore, cut: &C)
where
    C: Fn() -> CFut,
    CFut: Future<Output = Timestamp>,
{
    assert!(ok(s.list_older_than(Timestamp::from_millis(i64::MAX), 10).await, "list").is_empty(), "empty store");

    let old_keys = ["results/old1.png", "results/ab/old2.png", "inputs/2026/old3.jpg", "old4.bin", "old5.mp4"];
    let mut old: BTreeMap<AssetKey, AssetInfo> = BTreeMap::new();
    for (i, text) in old_keys.iter().enumerate() {
        let info = ok(s.put(&key(text), vec![b'o'; i + 1]).await, "put");
        old.insert(info.key.clone(), info);
    }
    let cutoff = cut().await;
    let new_keys = ["results/new1.png", "results/ab/new2.png", "new3.bin"];
    let mut new: BTreeMap<AssetKey, AssetInfo> = BTreeMap::new();
    for text in new_keys {
        let info = ok(s.put(&key(text), b"new".to_vec()).await, "put");
        new.insert(info.key.clone(), info);
    }
    for info in old.values() {
        assert!(info.modified_at < cutoff, "the cut hook must stamp earlier writes before the cutoff: {info:?}");
    }
    for info in new.values() {
        assert!(info.modified_at >= cutoff, "the cut hook must stamp later writes at or after it: {info:?}");
    }

    // Everything old, nothing new, with the sizes written.
    let listed = ok(s.list_older_than(cutoff, 100).await, "list");
    let listed_keys: BTreeSet<AssetKey> = listed.iter().map(|i| i.key.clone()).collect();
    let old_set: BTreeSet<AssetKey> = old.keys().cloned().collect();
    assert_eq!(listed_keys, old_set, "exactly the assets written before the cutoff are listed");
    assert_eq!(listed.len(), old.len(), "each asset is listed once");
    for info in &listed {
        assert!(info.modified_at < cutoff, "a listed asset was written before the cutoff: {info:?}");
        assert_eq!(Some(info.size), old.get(&info.key).map(|i| i.size), "a listed asset has its size");
    }

    // Strictly before: an asset is not older than its own write time.
    let newest_old = old.values().map(|i| i.modified_at).max().unwrap_or(Timestamp::EPOCH);
    let at_newest = ok(s.list_older_than(newest_old, 100).await, "list");
    assert!(at_newest.iter().all(|i| i.modified_at < newest_old), "strictly before the cutoff: {at_newest:?}");
    assert!(at_newest.len() < old.len(), "the newest old asset is not older than its own time: {at_newest:?}");
    assert!(ok(s.list_older_than(Timestamp::EPOCH, 100).await, "list").is_empty(), "nothing is older than 1970");

    // The limit bounds every answer.
    assert!(ok(s.list_older_than(cutoff, 0).await, "list").is_empty(), "a limit of 0 lists nothing");
    let two = ok(s.list_older_than(cutoff, 2).await, "list");
    assert_eq!(two.len(), 2, "the limit is respected when more are old: {two:?}");
    assert!(two.iter().all(|i| old.contains_key(&i.key)), "a limited answer lists only old assets: {two:?}");

    // The retention sweep: list a page, delete it, again, until nothing old is left.
    let mut drained: BTreeSet<AssetKey> = BTreeSet::new();
    for _ in 0..=old.len() {
        let page = ok(s.list_older_than(cutoff, 2).await, "list");
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 2, "the limit is respected while draining: {page:?}");
        for info in page {
            assert!(old.contains_key(&info.key), "only old assets are swept: {info:?}");
            assert!(ok(s.delete(&info.key).await, "delete"), "a listed asset exists until deleted: {info:?}");
            assert!(drained.insert(info.key.clone()), "a deleted asset is not listed again: {info:?}");
        }
    }
    assert_eq!(drained, old_set, "repeated list-and-delete sweeps every old asset");
    assert!(ok(s.list_older_than(cutoff, 100).await, "list").is_empty(), "nothing old is left");
    for k in old.keys() {
        assert_eq!(ok(s.get(k).await, "get"), None, "a swept asset is gone: {k}");
    }
    for k in new.keys() {
        assert_eq!(ok(s.get(k).await, "get").as_deref(), Some(&b"new"[..]), "a new asset survives the sweep: {k}");
    }
    let later = ok(s.list_older_than(Timestamp::from_millis(i64::MAX), 100).await, "list");
    let later_keys: BTreeSet<AssetKey> = later.into_iter().map(|i| i.key).collect();
    assert_eq!(later_keys, new.keys().cloned().collect(), "with a later cutoff the new assets are old too");
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::testing::clock::ManualClock;

    fn clock() -> Arc<ManualClock> {
        Arc::new(ManualClock::new(Timestamp::from_millis(1_800_000_000_000)))
    }

    #[tokio::test]
    async fn memory_store_passes_the_conformance_suite() {
        // Proves the in-memory asset store keeps every MUST of its port.
        let c = clock();
        let cut = {
            let c = c.clone();
            move || {
                let c = c.clone();
                async move {
                    c.advance(Duration::from_secs(1));
                    c.now()
                }
            }
        };
        let make = || {
            let c: Arc<dyn Clock> = c.clone();
            async move { Arc::new(MemoryAssetStore::new(c)) as Arc<dyn AssetStore> }
        };
        asset_store_conformance(make, cut).await;
    }

    #[tokio::test]
    async fn over_the_limit_is_refused_and_stores_nothing() {
        // Proves the size limit: a body of max bytes is kept, one byte more is TooLarge and leaves no asset.
        let s = MemoryAssetStore::new(clock()).with_max_bytes(4);
        let k = key("results/x.png");
        assert_eq!(s.put(&k, vec![1; 4]).await.map(|i| i.size), Ok(4));
        assert_eq!(s.put(&k, vec![2; 5]).await, Err(AssetError::TooLarge { size: 5, max: 4 }));
        assert_eq!(s.get(&k).await, Ok(Some(vec![1; 4])), "a refused put leaves the old bytes");
        assert_eq!(s.put(&key("y.bin"), vec![0; 5]).await, Err(AssetError::TooLarge { size: 5, max: 4 }));
        assert_eq!(s.keys(), vec![k]);
    }

    fn down<T>(r: &Result<T, AssetError>) -> bool {
        matches!(r, Err(AssetError::Unavailable { .. }))
    }

    #[tokio::test]
    async fn a_store_that_is_down_fails_every_call_and_changes_nothing() {
        // Proves the fault switch: every call is Unavailable while it is on, and the contents survive it.
        let s = MemoryAssetStore::new(clock());
        let k = key("a.png");
        assert!(s.put(&k, b"kept".to_vec()).await.is_ok());
        s.set_unavailable(true);
        assert!(down(&s.put(&k, b"lost".to_vec()).await));
        assert!(down(&s.put(&key("b.png"), b"lost".to_vec()).await));
        assert!(down(&s.get(&k).await));
        assert!(down(&s.delete(&k).await));
        assert!(down(&s.list_older_than(Timestamp::from_millis(i64::MAX), 10).await));
        s.set_unavailable(false);
        assert_eq!(s.get(&k).await, Ok(Some(b"kept".to_vec())), "nothing changed while the store was down");
        assert_eq!((s.len(), s.is_empty()), (1, false));
    }
}
