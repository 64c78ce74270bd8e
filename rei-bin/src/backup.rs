//! `rei backup` and `rei restore`.
//!
//! - SQLite: SQLite's online backup API copies the database in one step under a read transaction, so the copy is
//!   one consistent moment of it while the bot keeps writing (WAL readers do not block writers).
//! - PostgreSQL: `pg_dump --format=custom` (one snapshot of the whole database), restored by `pg_restore` in one
//!   transaction into an empty database.
//!
//! A backup is a file `rei-<engine>-<UTC time>.{sqlite,pgdump}` and a manifest beside it (`.json`: engine, time,
//! seconds taken, bytes, SHA-256). `--to` takes a directory or `s3://bucket/prefix` (an S3-compatible bucket, with
//! the asset store's REI_S3_* and AWS_* settings). `rei restore` checks the SHA-256 first, refuses a target that
//! already holds REI's tables, restores, and runs `verify`: it exits 2 unless the restored ledger is clean.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rei::adapters::sql::redact;
use sha2::{Digest, Sha256};

/// What `rei backup` was asked to do.
#[derive(clap::Args, Clone, Debug)]
pub(crate) struct BackupArgs {
    /// postgres://… or sqlite://path: the database to back up.
    #[arg(long, env = "DATABASE_URL")]
    pub(crate) database_url: String,
    /// A directory, or s3://bucket/prefix.
    #[arg(long)]
    pub(crate) to: String,
    /// The bucket's settings, for `--to s3://…`.
    #[command(flatten)]
    pub(crate) s3: crate::assets::S3Args,
}

/// What `rei restore` was asked to do.
#[derive(clap::Args, Clone, Debug)]
pub(crate) struct RestoreArgs {
    /// The backup file (`rei-….sqlite` or `rei-….pgdump`; its `.json` manifest beside it is checked).
    #[arg(long)]
    pub(crate) from: PathBuf,
    /// postgres://… (an existing, empty database) or sqlite://path (a file that does not exist yet).
    #[arg(long, env = "DATABASE_URL")]
    pub(crate) database_url: String,
}

/// The manifest written beside each backup.
#[derive(serde::Serialize, serde::Deserialize, Debug)]
struct Manifest {
    engine: String,
    file: String,
    started_at: String,
    seconds: String,
    bytes: u64,
    sha256: String,
}

enum Target {
    Dir(PathBuf),
    S3 { bucket: String, prefix: String },
}

fn target(to: &str) -> Result<Target> {
    match to.strip_prefix("s3://") {
        Some(rest) => {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                bail!("--to s3://… needs a bucket: s3://bucket/prefix");
            }
            Ok(Target::S3 { bucket: bucket.to_owned(), prefix: prefix.trim_matches('/').to_owned() })
        }
        None => Ok(Target::Dir(PathBuf::from(to))),
    }
}

/// The file a `sqlite:` URL names (parsed as the engine parses it); `None` for another scheme.
fn sqlite_path(url: &str) -> Result<Option<PathBuf>> {
    if !url.starts_with("sqlite:") {
        return Ok(None);
    }
    match rei::adapters::sqlite::database_path(url) {
        Ok(Some(path)) => Ok(Some(path)),
        Ok(None) => bail!("{url}: an in-memory database has nothing to back up or restore into"),
        Err(e) => bail!("{url}: not a SQLite URL: {e}"),
    }
}

fn sha256_of(path: &Path) -> Result<(String, u64)> {
    use std::io::Read;
    let mut file = std::fs::File::open(path).with_context(|| format!("failed to read {}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut bytes = 0u64;
    loop {
        let n = file.read(&mut buf).context("failed to read the backup")?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        bytes += n as u64;
    }
    let hex: String = hasher.finalize().iter().map(|b| format!("{b:02x}")).collect();
    Ok((hex, bytes))
}

/// Copies the SQLite database at `source` into a new file `dest` with the online backup API, in one step.
fn sqlite_backup(source: &Path, dest: &Path) -> Result<()> {
    use rusqlite::{Connection, OpenFlags};
    if !source.exists() {
        bail!("{} does not exist", source.display());
    }
    let src = Connection::open_with_flags(source, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .with_context(|| format!("failed to open {}", source.display()))?;
    src.busy_timeout(Duration::from_secs(30)).context("busy timeout")?;
    let mut dst = Connection::open(dest).with_context(|| format!("failed to create {}", dest.display()))?;
    {
        let backup = rusqlite::backup::Backup::new(&src, &mut dst).context("failed to start the backup")?;
        // All pages in one step: one read transaction, so one consistent moment of the database.
        loop {
            match backup.step(-1).context("the backup failed")? {
                rusqlite::backup::StepResult::Done => break,
                rusqlite::backup::StepResult::More => {}
                rusqlite::backup::StepResult::Busy | rusqlite::backup::StepResult::Locked => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                _ => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }
    // A backup taken from a WAL database is a WAL database; the copy is made self-contained.
    dst.pragma_update(None, "journal_mode", "DELETE").context("the backup's journal mode")?;
    let check: String = dst.query_row("PRAGMA integrity_check", [], |r| r.get(0)).context("integrity_check")?;
    if check != "ok" {
        bail!("the backup does not pass integrity_check: {check}");
    }
    Ok(())
}

fn run_tool(program: &str, args: &[&str]) -> Result<()> {
    let out = std::process::Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("failed to run {program} (Debian's postgresql-client has it)"))?;
    if !out.status.success() {
        bail!("{program} failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

fn utc_stamp() -> String {
    let now = jiff::Timestamp::now();
    now.strftime("%Y%m%dT%H%M%SZ").to_string()
}

pub(crate) async fn backup(args: BackupArgs) -> Result<ExitCode> {
    let target = target(&args.to)?;
    let staging = tempfile::Builder::new().prefix("rei-backup-").tempdir().context("a temporary directory")?;
    let stamp = utc_stamp();
    let started = Instant::now();
    let (engine, file) = if let Some(source) = sqlite_path(&args.database_url)? {
        let name = format!("rei-sqlite-{stamp}.sqlite");
        let dest = match &target {
            Target::Dir(dir) => dir.join(format!(".{name}.partial")),
            Target::S3 { .. } => staging.path().join(&name),
        };
        if let Target::Dir(dir) = &target {
            std::fs::create_dir_all(dir).with_context(|| format!("failed to make {}", dir.display()))?;
        }
        let d = dest.clone();
        tokio::task::spawn_blocking(move || sqlite_backup(&source, &d)).await.context("the backup task")??;
        ("sqlite", (name, dest))
    } else if args.database_url.starts_with("postgres") {
        let name = format!("rei-postgres-{stamp}.pgdump");
        if let Target::Dir(dir) = &target {
            std::fs::create_dir_all(dir).with_context(|| format!("failed to make {}", dir.display()))?;
        }
        let dest = match &target {
            Target::Dir(dir) => dir.join(format!(".{name}.partial")),
            Target::S3 { .. } => staging.path().join(&name),
        };
        let url = args.database_url.clone();
        let d = dest.display().to_string();
        tokio::task::spawn_blocking(move || {
            run_tool("pg_dump", &["--format=custom", "--no-owner", "--no-privileges", "--file", &d, &url])
        })
        .await
        .context("the backup task")??;
        ("postgres", (name, dest))
    } else {
        bail!("{}: expected postgres://… or sqlite://path", redact(&args.database_url));
    };
    let (name, made) = file;
    let (sha256, bytes) = sha256_of(&made)?;
    let taken = started.elapsed();
    let manifest = Manifest {
        engine: engine.to_owned(),
        file: name.clone(),
        started_at: stamp,
        seconds: format!("{}.{:03}", taken.as_secs(), taken.subsec_millis()),
        bytes,
        sha256,
    };
    let manifest_json = serde_json::to_string_pretty(&manifest).context("the manifest")?;
    let manifest_name = format!("{name}.json");
    let place = match &target {
        Target::Dir(dir) => {
            let final_path = dir.join(&name);
            std::fs::File::open(&made).and_then(|f| f.sync_all()).context("failed to flush the backup")?;
            std::fs::rename(&made, &final_path).context("failed to put the backup in place")?;
            std::fs::write(dir.join(&manifest_name), &manifest_json).context("failed to write the manifest")?;
            final_path.display().to_string()
        }
        Target::S3 { bucket, prefix } => {
            upload(&args.s3, bucket, prefix, &name, &made, &manifest_name, manifest_json.as_bytes()).await?
        }
    };
    println!(
        "rei backup: {engine} database {} → {place} ({bytes} bytes in {} s, sha256 {})",
        redact(&args.database_url),
        manifest.seconds,
        &manifest.sha256[..16]
    );
    Ok(ExitCode::SUCCESS)
}

async fn upload(
    s3: &crate::assets::S3Args,
    bucket: &str,
    prefix: &str,
    name: &str,
    file: &Path,
    manifest_name: &str,
    manifest: &[u8],
) -> Result<String> {
    use object_store::ObjectStoreExt as _;
    use object_store::aws::AmazonS3Builder;
    use tokio::io::AsyncWriteExt as _;
    let (Some(key), Some(secret)) = (&s3.s3_access_key_id, &s3.s3_secret_access_key) else {
        bail!("--to s3://… needs AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY");
    };
    let mut builder = AmazonS3Builder::new()
        .with_bucket_name(bucket)
        .with_region(&s3.s3_region)
        .with_access_key_id(key)
        .with_secret_access_key(secret)
        .with_allow_http(s3.s3_allow_http);
    if let Some(endpoint) = &s3.s3_endpoint {
        builder = builder.with_endpoint(endpoint).with_virtual_hosted_style_request(false);
    }
    let store: std::sync::Arc<dyn object_store::ObjectStore> =
        std::sync::Arc::new(builder.build().context("the bucket's settings")?);
    let path = |n: &str| {
        let full = if prefix.is_empty() { n.to_owned() } else { format!("{prefix}/{n}") };
        object_store::path::Path::from(full)
    };
    // Large files go up in parts; a small one in one PUT.
    let mut writer = object_store::buffered::BufWriter::new(store.clone(), path(name));
    let mut source = tokio::fs::File::open(file).await.context("the backup file")?;
    tokio::io::copy(&mut source, &mut writer).await.with_context(|| format!("failed to upload to s3://{bucket}"))?;
    writer.shutdown().await.with_context(|| format!("failed to upload to s3://{bucket}"))?;
    store
        .put(&path(manifest_name), object_store::PutPayload::from(manifest.to_vec()))
        .await
        .with_context(|| format!("failed to upload the manifest to s3://{bucket}"))?;
    Ok(format!("s3://{bucket}/{}", path(name)))
}

pub(crate) async fn restore(args: RestoreArgs) -> Result<ExitCode> {
    let started = Instant::now();
    let from = &args.from;
    let manifest_path = PathBuf::from(format!("{}.json", from.display()));
    let manifest: Manifest = serde_json::from_str(
        &std::fs::read_to_string(&manifest_path)
            .with_context(|| format!("failed to read the manifest {}", manifest_path.display()))?,
    )
    .context("the manifest is not one rei backup wrote")?;
    let (sha256, bytes) = sha256_of(from)?;
    if sha256 != manifest.sha256 || bytes != manifest.bytes {
        bail!("{} does not match its manifest (sha256 or size differ): the file is damaged", from.display());
    }
    if let Some(dest) = sqlite_path(&args.database_url)? {
        if manifest.engine != "sqlite" {
            bail!("this is a {} backup; restore it into a {} database", manifest.engine, manifest.engine);
        }
        if dest.exists() {
            bail!("{} exists: restore into a new file (move the old one away first)", dest.display());
        }
        let partial = PathBuf::from(format!("{}.partial", dest.display()));
        std::fs::copy(from, &partial).context("failed to copy the backup")?;
        std::fs::File::open(&partial).and_then(|f| f.sync_all()).context("failed to flush the copy")?;
        std::fs::rename(&partial, &dest).context("failed to put the database in place")?;
    } else if args.database_url.starts_with("postgres") {
        if manifest.engine != "postgres" {
            bail!("this is a {} backup; restore it into a {} database", manifest.engine, manifest.engine);
        }
        if has_rei_tables(&args.database_url).await? {
            bail!("{} already holds REI's tables: restore into an empty database", redact(&args.database_url));
        }
        let url = args.database_url.clone();
        let file = from.display().to_string();
        tokio::task::spawn_blocking(move || {
            run_tool(
                "pg_restore",
                &["--no-owner", "--no-privileges", "--single-transaction", "--exit-on-error", "--dbname", &url, &file],
            )
        })
        .await
        .context("the restore task")??;
    } else {
        bail!("{}: expected postgres://… or sqlite://path", redact(&args.database_url));
    }
    let config =
        rei::EngineConfig { migrate: rei::MigrateMode::Check, create_if_missing: false, ..crate::wiring::config() };
    let engine = crate::wiring::open(&args.database_url, config).await?;
    let report = engine.billing().verify().await.context("verify")?;
    engine.close().await;
    let took = started.elapsed();
    println!(
        "rei restore: {} ({}) → {} in {}.{:03} s; verify: {} ({} transactions)",
        from.display(),
        manifest.started_at,
        redact(&args.database_url),
        took.as_secs(),
        took.subsec_millis(),
        if report.is_clean() { "clean" } else { "DRIFT" },
        report.transactions
    );
    Ok(if report.is_clean() { ExitCode::SUCCESS } else { ExitCode::from(2) })
}

async fn has_rei_tables(url: &str) -> Result<bool> {
    use sqlx::Connection as _;
    let mut conn =
        sqlx::PgConnection::connect(url).await.with_context(|| format!("failed to connect to {}", redact(url)))?;
    let (n,): (i64,) = sqlx::query_as(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = current_schema() \
         AND table_name IN ('ledger_transactions', 'jobs', 'rei_migrations')",
    )
    .fetch_one(&mut conn)
    .await
    .context("failed to look at the target database")?;
    let _ = conn.close().await;
    Ok(n > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_and_paths_are_read() {
        assert!(matches!(target("/var/backups").expect("dir"), Target::Dir(p) if p == Path::new("/var/backups")));
        assert!(
            matches!(target("s3://b/p/q/").expect("s3"), Target::S3 { bucket, prefix } if bucket == "b" && prefix == "p/q")
        );
        assert!(target("s3:///x").is_err());
        assert_eq!(sqlite_path("sqlite:///tmp/a.db?mode=rwc").expect("url"), Some(PathBuf::from("/tmp/a.db")));
        assert_eq!(sqlite_path("postgres://h/db").expect("url"), None);
        assert!(sqlite_path("sqlite::memory:").is_err());
    }
}
