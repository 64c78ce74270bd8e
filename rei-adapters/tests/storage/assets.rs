//! The asset store on object_store: the port's conformance suite on a local directory and on object_store's
//! in-memory store (whose deletes, like S3's, succeed on a missing object), where files land, the size limit,
//! a broken directory, and (feature `s3`) that an S3 store is built from its configuration.
//!
//! No S3 server runs here, so the S3 backend is checked only up to the network: it is built, and calls to an
//! address where nothing listens fail as `Unavailable`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rei_adapters::assets::{AssetSetupError, ObjectAssetStore};
use rei_adapters::system::SystemClock;
use rei_core::generation::{AssetError, AssetKey, AssetStore};
use rei_core::testing::assets::asset_store_conformance;
use rei_core::time::{Clock, Timestamp};

const MAX_BYTES: u64 = 1 << 20;

fn key(text: &str) -> AssetKey {
    AssetKey::parse(text).expect("a valid key")
}

/// The conformance suite's cut with a real clock: the file system's and the in-memory store's times are the
/// operating system's, so time has to pass. The waits are well past the kernel's timestamp granularity (a
/// few milliseconds), on both sides of the cutoff. This is not waiting for another task, only for the clock.
async fn real_cut() -> Timestamp {
    tokio::time::sleep(Duration::from_millis(30)).await;
    let cutoff = SystemClock::new().now();
    tokio::time::sleep(Duration::from_millis(30)).await;
    cutoff
}

/// Every file under `dir`, as paths relative to it with `/` separators.
fn files_under(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).expect("read dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                let rel = path.strip_prefix(root).expect("under the root");
                out.push(rel.components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/"));
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// Whether `dir` holds anything at all, directories included.
fn is_empty_dir(dir: &Path) -> bool {
    std::fs::read_dir(dir).expect("read dir").next().is_none()
}

fn unavailable<T: std::fmt::Debug>(r: &Result<T, AssetError>) -> bool {
    matches!(r, Err(AssetError::Unavailable { .. }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_directory_passes_the_conformance_suite() {
    // Proves the directory store keeps every MUST of the port, with the file system's own modification times.
    let root = tempfile::tempdir().expect("temp dir");
    let next = AtomicU64::new(0);
    let make = || {
        let dir: PathBuf = root.path().join(next.fetch_add(1, Ordering::SeqCst).to_string());
        async move { Arc::new(ObjectAssetStore::local(&dir, MAX_BYTES).await.expect("local store")) as Arc<dyn AssetStore> }
    };
    asset_store_conformance(make, real_cut).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn object_stores_whose_delete_always_succeeds_pass_the_conformance_suite() {
    // Proves the adapter over a store that, like S3, answers a delete of a missing object with success still
    // reports Ok(false) for it, and keeps the rest of the contract.
    let make = || async {
        let memory = Arc::new(object_store::memory::InMemory::new());
        Arc::new(ObjectAssetStore::new(memory, MAX_BYTES)) as Arc<dyn AssetStore>
    };
    asset_store_conformance(make, real_cut).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prefix_keeps_the_assets_in_their_folder_and_the_rest_out_of_reach() {
    // Proves the layout the S3 backend uses: under a prefix, an asset is the object at prefix/key, and objects
    // beside the prefix are neither read, listed nor deleted.
    use object_store::ObjectStoreExt;
    use object_store::path::Path as ObjectPath;
    let bucket = Arc::new(object_store::memory::InMemory::new());
    let other = ObjectPath::parse("other/results/x.png").expect("path");
    bucket.put(&other, b"not ours".to_vec().into()).await.expect("put");
    let prefixed = object_store::prefix::PrefixStore::new(Arc::clone(&bucket), "rei/assets");
    let store = ObjectAssetStore::new(Arc::new(prefixed), MAX_BYTES);

    store.put(&key("results/x.png"), b"ours".to_vec()).await.expect("put");
    let ours = bucket.get(&ObjectPath::parse("rei/assets/results/x.png").expect("path")).await.expect("get");
    assert_eq!(ours.bytes().await.expect("bytes").as_ref(), b"ours");
    let listed = store.list_older_than(Timestamp::from_millis(i64::MAX), 10).await.expect("list");
    assert_eq!(listed.iter().map(|i| i.key.as_str()).collect::<Vec<_>>(), vec!["results/x.png"]);
    assert_eq!(store.delete(&key("results/x.png")).await, Ok(true));
    assert_eq!(store.get(&key("results/x.png")).await, Ok(None));
    assert!(bucket.head(&other).await.is_ok(), "the object beside the prefix is untouched");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_asset_is_the_file_at_its_key_under_the_directory_and_nothing_else() {
    // Proves a key names a file under the root at that relative path, that a write leaves no staging file, that
    // a delete tidies the directories it empties, and that no key can name anything outside the root.
    let root = tempfile::tempdir().expect("temp dir");
    let dir = root.path().join("assets");
    let store = ObjectAssetStore::local(&dir, MAX_BYTES).await.expect("local store");
    for escape in ["../escape.png", "/etc/passwd", "a/../../b", "./a", "a\\..\\b", "results/../../x"] {
        assert!(AssetKey::parse(escape).is_err(), "{escape} is no key");
    }

    let info = store.put(&key("results/ab/c.png"), b"png bytes".to_vec()).await.expect("put");
    store.put(&key("results/ab/c.png"), b"png bytes, again".to_vec()).await.expect("put again");
    store.put(&key("top.bin"), vec![0, 1, 2]).await.expect("put");
    assert_eq!(info.size, 9);
    assert_eq!(files_under(&dir), vec!["results/ab/c.png".to_owned(), "top.bin".to_owned()], "no staging files");
    assert_eq!(std::fs::read(dir.join("results/ab/c.png")).expect("file"), b"png bytes, again");
    assert_eq!(files_under(root.path()).len(), 2, "nothing was written beside the directory");

    assert_eq!(store.delete(&key("results/ab/c.png")).await, Ok(true));
    assert!(!dir.join("results").exists(), "a delete removes the directories it leaves empty");
    assert_eq!(store.delete(&key("top.bin")).await, Ok(true));
    assert!(dir.is_dir() && is_empty_dir(&dir), "the root itself stays");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_that_are_no_assets_are_never_listed_for_the_sweep() {
    // Proves that what the store did not write (a name that is no key, an interrupted write's staging file) is
    // neither listed nor, therefore, deleted by the retention sweep.
    let root = tempfile::tempdir().expect("temp dir");
    let store = ObjectAssetStore::local(root.path(), MAX_BYTES).await.expect("local store");
    std::fs::create_dir_all(root.path().join("results")).expect("mkdir");
    for foreign in ["notes with spaces.txt", "results/x.png#17", "results/ünï.png"] {
        std::fs::write(root.path().join(foreign), b"not ours").expect("write");
    }
    store.put(&key("results/ours.png"), b"ours".to_vec()).await.expect("put");
    let later = Timestamp::from_millis(i64::MAX);
    let listed: Vec<String> =
        store.list_older_than(later, 100).await.expect("list").into_iter().map(|i| i.key.to_string()).collect();
    assert_eq!(listed, vec!["results/ours.png".to_owned()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_over_the_limit_is_refused_and_writes_nothing() {
    // Proves max_bytes: exactly the limit is stored, one byte more is TooLarge and leaves the old file, and a
    // file over the limit put there by hand is refused on read rather than loaded.
    let root = tempfile::tempdir().expect("temp dir");
    let store = ObjectAssetStore::local(root.path(), 4).await.expect("local store");
    let k = key("results/x.png");
    assert_eq!(store.put(&k, vec![1; 4]).await.map(|i| i.size), Ok(4));
    assert_eq!(store.put(&k, vec![2; 5]).await, Err(AssetError::TooLarge { size: 5, max: 4 }));
    assert_eq!(store.put(&key("y.png"), vec![2; 5]).await, Err(AssetError::TooLarge { size: 5, max: 4 }));
    assert_eq!(store.get(&k).await, Ok(Some(vec![1; 4])), "a refused put leaves the old bytes");
    assert_eq!(files_under(root.path()), vec!["results/x.png".to_owned()]);

    std::fs::write(root.path().join("big.bin"), vec![0; 10]).expect("write");
    assert_eq!(store.get(&key("big.bin")).await, Err(AssetError::TooLarge { size: 10, max: 4 }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_directory_fails_as_unavailable_without_a_panic() {
    // Proves that a root that is not a directory is refused at setup, and that a root replaced by a file under
    // a running store makes every call fail as Unavailable (the sweep may also find nothing) instead of panicking.
    let root = tempfile::tempdir().expect("temp dir");
    let file = root.path().join("a-file");
    std::fs::write(&file, b"x").expect("write");
    let refused = ObjectAssetStore::local(&file, MAX_BYTES).await;
    assert!(matches!(refused, Err(AssetSetupError::Directory { .. })), "{refused:?}");
    let under_file = ObjectAssetStore::local(&file.join("sub"), MAX_BYTES).await;
    assert!(matches!(under_file, Err(AssetSetupError::Directory { .. })), "{under_file:?}");

    let dir = root.path().join("store");
    let store = ObjectAssetStore::local(&dir, MAX_BYTES).await.expect("local store");
    let k = key("results/x.png");
    store.put(&k, b"x".to_vec()).await.expect("put");
    std::fs::remove_dir_all(&dir).expect("remove");
    std::fs::write(&dir, b"the directory is now a file").expect("write");

    let put = store.put(&key("results/y.png"), b"y".to_vec()).await;
    assert!(unavailable(&put), "{put:?}");
    let get = store.get(&k).await;
    assert!(unavailable(&get), "{get:?}");
    let delete = store.delete(&k).await;
    assert!(unavailable(&delete), "{delete:?}");
    let list = store.list_older_than(Timestamp::from_millis(i64::MAX), 10).await;
    assert!(unavailable(&list) || list.as_ref().is_ok_and(Vec::is_empty), "{list:?}");
    assert_eq!(std::fs::read(&dir).expect("file"), b"the directory is now a file", "nothing was written");
}

#[cfg(feature = "s3")]
mod s3 {
    use rei_adapters::assets::S3Config;

    use super::*;

    fn config(endpoint: &str) -> S3Config {
        S3Config {
            bucket: "rei-assets".to_owned(),
            region: "us-east-1".to_owned(),
            endpoint: Some(endpoint.to_owned()),
            access_key_id: "AKIDEXAMPLE".to_owned(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".to_owned(),
            allow_http: true,
            prefix: Some("rei/assets".to_owned()),
        }
    }

    /// A local port with nothing listening on it.
    fn closed_port() -> u16 {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    }

    #[test]
    fn an_s3_store_is_built_from_its_configuration() {
        // Proves an S3-compatible store is built from a configuration with an endpoint and a prefix, without
        // a runtime or a network, that the secret never shows in its Debug text, and that a bad prefix or an
        // empty bucket is refused at setup.
        let c = config("http://127.0.0.1:9000");
        assert!(!format!("{c:?}").contains(&c.secret_access_key), "the secret is redacted");
        assert!(ObjectAssetStore::s3(c.clone(), MAX_BYTES).is_ok());
        assert!(ObjectAssetStore::s3(S3Config { prefix: None, endpoint: None, ..c.clone() }, MAX_BYTES).is_ok());
        let bad_prefix = ObjectAssetStore::s3(S3Config { prefix: Some("a//b".to_owned()), ..c.clone() }, MAX_BYTES);
        assert!(matches!(bad_prefix, Err(AssetSetupError::S3 { .. })), "{bad_prefix:?}");
        let no_bucket = ObjectAssetStore::s3(S3Config { bucket: String::new(), ..c }, MAX_BYTES);
        assert!(matches!(no_bucket, Err(AssetSetupError::S3 { .. })), "{no_bucket:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_s3_store_that_cannot_be_reached_fails_as_unavailable() {
        // Proves that with nothing listening at the endpoint every call ends, after its bounded retries, as
        // Unavailable rather than a panic or a hang; and that the size limit is checked before any request.
        let port = closed_port();
        let store = ObjectAssetStore::s3(config(&format!("http://127.0.0.1:{port}")), 4).expect("s3 store");
        let k = key("results/x.png");
        assert_eq!(store.put(&k, vec![0; 5]).await, Err(AssetError::TooLarge { size: 5, max: 4 }));
        let calls = async {
            let put = store.put(&k, b"x".to_vec()).await;
            assert!(unavailable(&put), "{put:?}");
            let get = store.get(&k).await;
            assert!(unavailable(&get), "{get:?}");
            let delete = store.delete(&k).await;
            assert!(unavailable(&delete), "{delete:?}");
            let list = store.list_older_than(Timestamp::from_millis(i64::MAX), 10).await;
            assert!(unavailable(&list), "{list:?}");
        };
        tokio::time::timeout(Duration::from_secs(60), calls).await.expect("the retries are bounded");
    }
}
