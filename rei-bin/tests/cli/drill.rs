//! The backup drill: `rei backup` while `rei load` runs, `rei restore` into a fresh database, `verify` clean, and
//! every top-up acknowledged before the backup began present in the copy; on SQLite and on PostgreSQL. It prints
//! the drill's RPO (top-ups acknowledged after the backup began, which the copy cannot hold) and RTO (the
//! restore's time) so that the figures in docs/runbooks come from a run.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sqlx::Row as _;

fn now_ms() -> i64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock");
    i64::try_from(since.as_millis()).expect("ms")
}

fn load(database: Option<&str>, dir: &Path) -> Child {
    let mut command = Command::new(env!("CARGO_BIN_EXE_rei"));
    command
        .args(["load", "--users", "30", "--seconds", "12", "--workers", "1", "--think-ms", "150"])
        .args(["--provider-latency-ms", "50"])
        .arg("--dir")
        .arg(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(url) = database {
        command.args(["--database-url", url]);
    }
    command.spawn().expect("start rei load")
}

fn rei(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_rei")).args(args).output().expect("run rei");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// The payment ids of the top-ups credited at `url`, with when each was credited (nothing while the database
/// is not there yet).
async fn top_ups(url: &str) -> Vec<(String, i64)> {
    const QUERY: &str = "SELECT payment_id, at_ms FROM ledger_transactions WHERE kind = 'top_up'";
    if url.starts_with("postgres") {
        let Ok(pool) = sqlx::PgPool::connect(url).await else { return Vec::new() };
        let rows = sqlx::query(QUERY).fetch_all(&pool).await.unwrap_or_default();
        pool.close().await;
        rows.iter().map(|r| (r.get::<String, _>(0), r.get::<i64, _>(1))).collect()
    } else {
        let path = url.trim_start_matches("sqlite://");
        if !Path::new(path).exists() {
            return Vec::new();
        }
        let options = sqlx::sqlite::SqliteConnectOptions::new().filename(path).read_only(true);
        let Ok(pool) = sqlx::SqlitePool::connect_with(options).await else { return Vec::new() };
        let rows = sqlx::query(QUERY).fetch_all(&pool).await.unwrap_or_default();
        pool.close().await;
        rows.iter().map(|r| (r.get::<String, _>(0), r.get::<i64, _>(1))).collect()
    }
}

/// Waits until the database at `url` has at least `n` credited top-ups.
async fn wait_for_top_ups(url: &str, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while top_ups(url).await.len() < n {
        assert!(Instant::now() < deadline, "the load credited fewer than {n} top-ups in time");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// One drill: load on `live`, back up at the first 20 top-ups, restore into `fresh`, compare.
fn drill(live: &str, fresh: &str, dir: &Path) {
    let rt = super::runtime();
    let backups = dir.join("backups");
    let mut load = load(live.starts_with("postgres").then_some(live), &dir.join("run"));
    rt.block_on(wait_for_top_ups(live, 20));
    let began = now_ms();
    let started = Instant::now();
    let (ok, out) = rei(&["backup", "--database-url", live, "--to", backups.to_str().expect("path")]);
    assert!(ok, "{out}");
    let backup_took = started.elapsed();
    let status = load.wait().expect("the load");
    let mut log = String::new();
    if let Some(mut stdout) = load.stdout.take() {
        let _ = std::io::Read::read_to_string(&mut stdout, &mut log);
    }
    assert!(status.success(), "the load's own audit failed:\n{log}");

    let file = std::fs::read_dir(&backups)
        .expect("backups")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "sqlite" || x == "pgdump"))
        .expect("a backup file");
    let started = Instant::now();
    let (ok, out) = rei(&["restore", "--from", file.to_str().expect("path"), "--database-url", fresh]);
    let restore_took = started.elapsed();
    assert!(ok, "{out}");
    assert!(out.contains("verify: clean"), "{out}");
    let (ok, out) = rei(&["verify", "--database-url", fresh]);
    assert!(ok && out.contains("clean"), "{out}");

    let restored: std::collections::HashSet<String> = rt.block_on(top_ups(fresh)).into_iter().map(|(p, _)| p).collect();
    let live_top_ups = rt.block_on(top_ups(live));
    let before: Vec<&String> = live_top_ups.iter().filter(|(_, at)| *at < began).map(|(p, _)| p).collect();
    let lost: Vec<&String> = live_top_ups.iter().filter(|(p, _)| !restored.contains(p)).map(|(p, _)| p).collect();
    assert!(before.len() >= 20, "{} top-ups before the backup", before.len());
    for payment in &before {
        assert!(restored.contains(*payment), "top-up {payment}, acknowledged before the backup began, is missing");
    }
    assert!(restored.len() <= live_top_ups.len(), "the copy holds top-ups the live database does not");
    eprintln!(
        "drill on {}: backup {} ms, restore + verify {} ms (RTO), {} top-ups restored, {} acknowledged after the \
         backup began are not in it (RPO: the time since the backup)",
        if live.starts_with("postgres") { "postgres" } else { "sqlite" },
        backup_took.as_millis(),
        restore_took.as_millis(),
        restored.len(),
        lost.len()
    );
}

#[test]
fn a_backup_taken_under_load_restores_clean_with_every_acknowledged_top_up() {
    let dir = tempfile::tempdir().expect("dir");
    let live = format!("sqlite://{}", dir.path().join("run/rei.db").display());
    let fresh = format!("sqlite://{}", dir.path().join("restored.db").display());
    drill(&live, &fresh, dir.path());
    // A second restore into the same file is refused: nothing is overwritten.
    let file = std::fs::read_dir(dir.path().join("backups"))
        .expect("backups")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "sqlite"))
        .expect("file");
    let (ok, out) = rei(&["restore", "--from", file.to_str().expect("path"), "--database-url", &fresh]);
    assert!(!ok && out.contains("exists"), "{out}");
    // A damaged backup is refused before anything is written.
    let mut bytes = std::fs::read(&file).expect("read");
    bytes[100] ^= 0xff;
    std::fs::write(&file, bytes).expect("write");
    let other = format!("sqlite://{}", dir.path().join("other.db").display());
    let (ok, out) = rei(&["restore", "--from", file.to_str().expect("path"), "--database-url", &other]);
    assert!(!ok && out.contains("damaged"), "{out}");
    assert!(!dir.path().join("other.db").exists());
}

#[test]
fn a_postgres_backup_taken_under_load_restores_clean_with_every_acknowledged_top_up() {
    let admin = super::pg_url();
    let stamp = now_ms();
    let (live_db, fresh_db) = (format!("rei_drill_live_{stamp}"), format!("rei_drill_fresh_{stamp}"));
    let rt = super::runtime();
    rt.block_on(async {
        let pool = sqlx::PgPool::connect(&admin).await.expect("admin");
        for db in [&live_db, &fresh_db] {
            sqlx::query(&format!("CREATE DATABASE {db}")).execute(&pool).await.expect("create database");
        }
        pool.close().await;
    });
    let dir = tempfile::tempdir().expect("dir");
    let live = super::with_database(&admin, &live_db);
    let fresh = super::with_database(&admin, &fresh_db);
    drill(&live, &fresh, dir.path());
    // A restore into a database that holds REI's tables is refused.
    let file = std::fs::read_dir(dir.path().join("backups"))
        .expect("backups")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "pgdump"))
        .expect("file");
    let (ok, out) = rei(&["restore", "--from", file.to_str().expect("path"), "--database-url", &fresh]);
    assert!(!ok && out.contains("already holds"), "{out}");
    rt.block_on(async {
        let pool = sqlx::PgPool::connect(&admin).await.expect("admin");
        for db in [&live_db, &fresh_db] {
            let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)")).execute(&pool).await;
        }
        pool.close().await;
    });
}

/// A fake S3 bucket on loopback: `PUT /{bucket}/{key}` keeps the body (a signed request is required: an
/// `Authorization` header with AWS's SigV4 scheme and the access key), `GET` answers it back.
async fn fake_s3() -> (String, std::sync::Arc<std::sync::Mutex<std::collections::BTreeMap<String, Vec<u8>>>>) {
    use axum::body::Bytes;
    use axum::extract::{Path as UrlPath, State};
    use axum::http::{HeaderMap, StatusCode};
    type Objects = std::sync::Arc<std::sync::Mutex<std::collections::BTreeMap<String, Vec<u8>>>>;
    async fn put(
        State(objects): State<Objects>,
        UrlPath(key): UrlPath<String>,
        headers: HeaderMap,
        body: Bytes,
    ) -> (StatusCode, HeaderMap) {
        let signed = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("AWS4-HMAC-SHA256 Credential=drill-key/"));
        if !signed {
            return (StatusCode::FORBIDDEN, HeaderMap::new());
        }
        objects.lock().expect("objects").insert(key, body.to_vec());
        let mut answer = HeaderMap::new();
        answer.insert("etag", "\"drill\"".parse().expect("etag"));
        (StatusCode::OK, answer)
    }
    let objects: Objects = std::sync::Arc::default();
    let app = axum::Router::new().route("/{*key}", axum::routing::put(put)).with_state(objects.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}"), objects)
}

#[test]
fn a_backup_goes_to_an_s3_bucket_with_its_manifest() {
    // Proves `rei backup --to s3://bucket/prefix` uploads the file and its manifest, signed, to an S3-compatible
    // endpoint, and that the uploaded file is the database (its SHA-256 is the manifest's).
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("rt");
    let (endpoint, objects) = rt.block_on(fake_s3());
    let dir = tempfile::tempdir().expect("dir");
    let url = format!("sqlite://{}", dir.path().join("rei.db").display());
    let (ok, out) = rei(&["migrate", "--database-url", &url]);
    assert!(ok, "{out}");
    let out = Command::new(env!("CARGO_BIN_EXE_rei"))
        .args(["backup", "--database-url", &url, "--to", "s3://drill-bucket/nightly"])
        .env("REI_S3_ENDPOINT", &endpoint)
        .env("REI_S3_ALLOW_HTTP", "true")
        .env("AWS_ACCESS_KEY_ID", "drill-key")
        .env("AWS_SECRET_ACCESS_KEY", "drill-secret")
        .output()
        .expect("run rei backup");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{text}");
    assert!(text.contains("s3://drill-bucket/nightly/rei-sqlite-"), "{text}");
    let objects = objects.lock().expect("objects").clone();
    let file = objects.iter().find(|(k, _)| k.ends_with(".sqlite")).expect("the backup was uploaded");
    let manifest = objects.iter().find(|(k, _)| k.ends_with(".sqlite.json")).expect("the manifest was uploaded");
    assert!(file.0.starts_with("drill-bucket/nightly/"), "{}", file.0);
    let manifest: serde_json::Value = serde_json::from_slice(manifest.1).expect("manifest json");
    assert_eq!(manifest["bytes"].as_u64(), Some(file.1.len() as u64));
    assert!(file.1.starts_with(b"SQLite format 3"), "the upload is a SQLite database");
    // Without credentials nothing is sent and the error says what to set.
    let (ok, out) = rei(&["backup", "--database-url", &url, "--to", "s3://drill-bucket"]);
    assert!(!ok && out.contains("AWS_ACCESS_KEY_ID"), "{out}");
}

#[test]
fn rei_load_ends_with_its_json_line_and_a_clean_audit() {
    // Proves `rei load --json`'s last line is one object with the fields scripts read, from a real short run.
    let dir = tempfile::tempdir().expect("dir");
    let out = Command::new(env!("CARGO_BIN_EXE_rei"))
        .args(["load", "--users", "8", "--seconds", "4", "--workers", "1", "--think-ms", "100", "--json"])
        .args(["--provider-latency-ms", "20"])
        .arg("--dir")
        .arg(dir.path())
        .output()
        .expect("run rei load");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    let last: serde_json::Value = serde_json::from_str(text.lines().last().expect("a last line")).expect("json");
    for field in ["updates_per_sec", "generations_per_sec", "p99_ms", "money_errors"] {
        assert!(last[field].is_number(), "{field} in {last}");
    }
    assert_eq!(last["money_errors"], 0, "{last}");
    assert_eq!(last["jobs_not_ended"], 0, "{last}");
    assert!(last["updates"].as_u64().is_some_and(|n| n > 8), "{last}");
    assert!(text.contains("money audit   8 users, 0 money errors"), "{text}");
}
