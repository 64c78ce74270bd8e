//! `rei bench ledger`: hold -> capture cycles from N concurrent clients against a real database, and, on
//! PostgreSQL, pgbench's TPC-B-like workload on the same server with the same clients and duration, for the
//! ratio. A benchmark, not a test: it reports, it asserts nothing but a clean ledger.
//!
//! It never writes money into a real ledger: it runs in a scratch ledger it makes and removes itself. On
//! PostgreSQL that is a schema `rei_bench_<pid>_<ms>` in the database the URL names (so it measures that
//! server), and pgbench gets a database `rei_bench_pgbench_<pid>` beside it; on SQLite it is a file in a new
//! directory beside the named file (so it measures that disk). The named ledger is never opened for writing,
//! whatever it holds. A run killed before its end leaves the scratch behind, under those names.

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rei_core::caps::SpendCaps;
use rei_core::ids::{HoldId, IdempotencyKey, PaymentId, TxId, UserId};
use rei_core::ledger::{LedgerCommand, LedgerOp, LedgerStore};
use rei_core::money::Money;
use rei_core::time::Clock;

use rei::{Engine, EngineConfig, MigrateMode};

/// What to run.
pub(crate) struct LedgerBench {
    pub(crate) database_url: String,
    pub(crate) clients: u32,
    pub(crate) seconds: u64,
    pub(crate) warmup_seconds: u64,
    pub(crate) batch_max: usize,
    pub(crate) writers: usize,
    pub(crate) pgbench_scale: u32,
    pub(crate) json: bool,
}

/// What one run measured.
pub(crate) struct Figures {
    pub(crate) ops: u64,
    pub(crate) elapsed: Duration,
    pub(crate) latencies_us: Vec<u64>,
}

impl Figures {
    pub(crate) fn ops_per_sec(&self) -> u64 {
        let ms = u64::try_from(self.elapsed.as_millis()).unwrap_or(u64::MAX).max(1);
        self.ops.saturating_mul(1000) / ms
    }

    /// The latency at quantile `per_mille`/1000, in microseconds (nearest rank).
    pub(crate) fn quantile_us(&self, per_mille: u64) -> u64 {
        if self.latencies_us.is_empty() {
            return 0;
        }
        let n = self.latencies_us.len() as u64;
        let rank = (n * per_mille).div_ceil(1000).clamp(1, n);
        self.latencies_us[usize::try_from(rank - 1).unwrap_or(0)]
    }
}

/// Microseconds as milliseconds with three decimals, for output.
pub(crate) fn ms(us: u64) -> String {
    format!("{}.{:03}", us / 1000, us % 1000)
}

pub(crate) async fn run(b: LedgerBench) -> Result<()> {
    if b.clients == 0 || b.clients > 1024 {
        bail!("--clients must be 1 to 1024");
    }
    if b.seconds == 0 || b.seconds > 3600 {
        bail!("--seconds must be 1 to 3600");
    }
    let run_id = now().as_millis();
    let config = EngineConfig {
        migrate: MigrateMode::Apply,
        connections_max: b.clients.clamp(4, 32),
        ledger_batch_max: b.batch_max,
        ledger_writers: b.writers,
        ..crate::wiring::config()
    };
    match rei::adapters::sql::DatabaseUrl::parse(&b.database_url).context("failed to read --database-url")? {
        rei::adapters::sql::DatabaseUrl::Postgres(url) => {
            let schema = format!("rei_bench_{}_{run_id}", std::process::id());
            let config = EngineConfig { postgres_schema: Some(schema.clone()), ..config };
            let engine = crate::wiring::open(&url, config).await?;
            eprintln!("rei bench ledger: running in schema {schema}, dropped afterwards");
            let result = measure(&engine, &b, run_id).await;
            let dropped = match engine.database().postgres() {
                Some(pool) => rei::adapters::postgres::drop_schema(pool, &schema).await,
                None => Ok(()),
            };
            engine.close().await;
            let report = result?;
            dropped.with_context(|| format!("failed to drop the scratch schema {schema}"))?;
            report.print(&b);
            report.check()
        }
        rei::adapters::sql::DatabaseUrl::Sqlite(url) => {
            let scratch = scratch_beside(&url, ".rei-bench-")?;
            let file = scratch.path().join("bench.db");
            eprintln!("rei bench ledger: running in {}, removed afterwards", file.display());
            let engine = crate::wiring::open(&format!("sqlite://{}", file.display()), config).await?;
            let result = measure(&engine, &b, run_id).await;
            engine.close().await;
            // The ledger's writer thread closes its connection once the engine's stores are gone.
            drop(engine);
            let removed = scratch.close();
            let report = result?;
            removed.context("failed to remove the scratch directory")?;
            report.print(&b);
            report.check()
        }
    }
}

/// A new directory beside the SQLite file `url` names (or in the temp directory), removed when dropped: where a
/// benchmark keeps its scratch ledger, so that it measures that disk and never writes into the named file.
pub(crate) fn scratch_beside(url: &str, prefix: &str) -> Result<tempfile::TempDir> {
    let named = rei::adapters::sqlite::database_path(url).context("failed to read --database-url")?;
    let beside = match named.as_deref().and_then(std::path::Path::parent) {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        Some(_) => std::path::PathBuf::from("."),
        None => std::env::temp_dir(),
    };
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(&beside)
        .with_context(|| format!("failed to make a scratch directory in {}", beside.display()))
}

/// What a run measured and found.
struct Report {
    engine: &'static str,
    clients: u32,
    figures: Figures,
    pgbench_tps: Option<u64>,
    verify: rei::core::ledger::VerifyReport,
}

impl Report {
    fn print(&self, b: &LedgerBench) {
        let figures = &self.figures;
        println!("engine       {}", self.engine);
        println!("clients      {}", self.clients);
        println!("ops          {} in {:?}", figures.ops, figures.elapsed);
        println!("ops/s        {}", figures.ops_per_sec());
        println!("p50          {} ms", ms(figures.quantile_us(500)));
        println!("p99          {} ms", ms(figures.quantile_us(990)));
        if let Some(tps) = self.pgbench_tps {
            println!("pgbench tps  {tps} (TPC-B-like, same clients and duration)");
            println!("ratio        {}x", ratio(figures.ops_per_sec(), tps));
        }
        println!(
            "verify       {} ({} transactions)",
            if self.verify.is_clean() { "clean" } else { "DRIFT" },
            self.verify.transactions
        );
        if b.json {
            println!(
                "{{\"engine\":\"{}\",\"clients\":{},\"seconds\":{},\"ops\":{},\"ops_per_sec\":{},\"p50_ms\":{},\"p99_ms\":{},\"pgbench_tps\":{},\"ratio\":{},\"verify_clean\":{}}}",
                self.engine,
                self.clients,
                b.seconds,
                figures.ops,
                figures.ops_per_sec(),
                ms(figures.quantile_us(500)),
                ms(figures.quantile_us(990)),
                self.pgbench_tps.map_or_else(|| "null".to_owned(), |t| t.to_string()),
                self.pgbench_tps.map_or_else(|| "null".to_owned(), |t| ratio(figures.ops_per_sec(), t)),
                self.verify.is_clean()
            );
        }
    }

    fn check(&self) -> Result<()> {
        if !self.verify.is_clean() {
            bail!("the ledger does not verify after the run: {:?}", self.verify);
        }
        Ok(())
    }
}

/// Funds the clients, warms up, measures, verifies, and on PostgreSQL runs pgbench.
async fn measure(engine: &Engine, b: &LedgerBench, run_id: i64) -> Result<Report> {
    let ledger = engine.ledger().clone();
    // Each client has its own user, funded far beyond what the run can capture.
    for c in 0..b.clients {
        let user = UserId(1_000_000_000 + i64::from(c));
        let payment = PaymentId::parse(&format!("bench-{run_id}-{c}"))?;
        let cmd = LedgerCommand {
            key: IdempotencyKey::derived("bench-topup", format!("{run_id}-{c}"))?,
            tx: TxId::from(bench_id(run_id, c, 0)),
            at: now(),
            op: LedgerOp::TopUp { user, amount: Money::from_rubles(1_000_000_000)?, payment },
        };
        ledger.apply(cmd).await.context("failed to fund a bench client")?;
    }

    // Warm up (caches, WAL files, tables past their first pages), then refresh the planner's statistics as
    // autovacuum would, so the measured run sees a database in its steady state.
    let name = engine.database().engine();
    eprintln!("rei bench ledger: warming up for {} s", b.warmup_seconds);
    drive(ledger.clone(), b.clients, Duration::from_secs(b.warmup_seconds), run_id, 0).await?;
    if let Some(pool) = engine.database().postgres() {
        rei::adapters::postgres::analyze_ledger(pool).await.context("failed to analyze the ledger tables")?;
    }
    eprintln!("rei bench ledger: {} clients, {} s, {name}, hold -> capture", b.clients, b.seconds);
    let figures = drive(ledger.clone(), b.clients, Duration::from_secs(b.seconds), run_id, 1).await?;
    let verify = ledger.verify().await.context("failed to verify after the run")?;
    let pgbench_tps = match engine.database().postgres() {
        Some(pool) => Some(pgbench(pool, b).await?),
        None => None,
    };
    Ok(Report { engine: name, clients: b.clients, figures, pgbench_tps, verify })
}

/// `a / b` with two decimals, integer arithmetic.
fn ratio(a: u64, b: u64) -> String {
    if b == 0 {
        return "null".to_owned();
    }
    let hundredths = a.saturating_mul(100) / b;
    format!("{}.{:02}", hundredths / 100, hundredths % 100)
}

fn now() -> rei_core::time::Timestamp {
    rei_adapters::system::SystemClock::new().now()
}

/// Unique ids per run, client and sequence number.
fn bench_id(run_id: i64, client: u32, seq: u64) -> u128 {
    (u128::from(run_id.unsigned_abs()) << 80) | (u128::from(client) << 48) | u128::from(seq)
}

async fn drive(
    ledger: Arc<dyn LedgerStore>,
    clients: u32,
    length: Duration,
    run_id: i64,
    phase: u64,
) -> Result<Figures> {
    let started = Instant::now();
    let deadline = started + length;
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let ledger = ledger.clone();
            tokio::spawn(async move {
                let user = UserId(1_000_000_000 + i64::from(c));
                let mut latencies = Vec::with_capacity(4096);
                // Each phase uses its own id range, so the measured run never collides with the warm-up.
                let mut seq = 1 + (phase << 40);
                while Instant::now() < deadline {
                    let hold = HoldId::from(bench_id(run_id, c, seq));
                    let at = now();
                    let op = LedgerOp::Hold {
                        user,
                        hold,
                        amount: Money::from_kopecks(100),
                        provider: None,
                        expires_at: at.plus(Duration::from_secs(600)),
                        caps: SpendCaps::NONE,
                    };
                    let t = Instant::now();
                    let cmd = LedgerCommand {
                        key: IdempotencyKey::derived("bench-h", hold)?,
                        tx: TxId::from(bench_id(run_id, c, seq + 1)),
                        at,
                        op,
                    };
                    ledger.apply(cmd).await?;
                    latencies.push(u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX));
                    let t = Instant::now();
                    let cmd = LedgerCommand {
                        key: IdempotencyKey::derived("bench-c", hold)?,
                        tx: TxId::from(bench_id(run_id, c, seq + 2)),
                        at: now(),
                        op: LedgerOp::Capture { hold, amount: Money::from_kopecks(100) },
                    };
                    ledger.apply(cmd).await?;
                    latencies.push(u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX));
                    seq += 3;
                }
                Ok::<_, rei_core::ledger::LedgerError>(latencies)
            })
        })
        .collect();
    let mut latencies_us = Vec::new();
    for t in tasks {
        latencies_us.extend(t.await.context("a bench client panicked")?.context("a bench operation failed")?);
    }
    let elapsed = started.elapsed();
    latencies_us.sort_unstable();
    Ok(Figures { ops: latencies_us.len() as u64, elapsed, latencies_us })
}

/// Runs pgbench's TPC-B-like workload in a database of its own on the same server, drops that database, and
/// returns its tps.
async fn pgbench(pool: &rei::adapters::sqlx_pools::PgPool, b: &LedgerBench) -> Result<u64> {
    let db = format!("rei_bench_pgbench_{}", std::process::id());
    rei::adapters::postgres::recreate_database(pool, &db).await.context("failed to create the pgbench database")?;
    let tps = run_pgbench(&with_database(&b.database_url, &db), b);
    let dropped = rei::adapters::postgres::drop_database(pool, &db).await;
    let tps = tps?;
    dropped.with_context(|| format!("failed to drop the pgbench database {db}"))?;
    Ok(tps)
}

fn run_pgbench(url: &str, b: &LedgerBench) -> Result<u64> {
    eprintln!("pgbench: initialising scale {} ...", b.pgbench_scale);
    let init = Command::new("pgbench")
        .args(["-i", "-q", "-s", &b.pgbench_scale.to_string(), url])
        .output()
        .context("failed to run pgbench (is it installed? Debian: postgresql-client)")?;
    if !init.status.success() {
        bail!("pgbench -i failed: {}", String::from_utf8_lossy(&init.stderr));
    }
    eprintln!("pgbench: {} clients for {} s ...", b.clients, b.seconds);
    let out = Command::new("pgbench")
        .args(["-c", &b.clients.to_string(), "-j", "2", "-T", &b.seconds.to_string(), "-M", "prepared", "-n", url])
        .output()
        .context("failed to run pgbench")?;
    if !out.status.success() {
        bail!("pgbench failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().find(|l| l.starts_with("tps = ")).context("pgbench printed no tps line")?;
    let number = line.trim_start_matches("tps = ").split([' ', '.']).next().unwrap_or_default();
    number.parse::<u64>().with_context(|| format!("failed to read pgbench's tps from {line:?}"))
}

/// The same URL with another database name.
fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let base = match base[scheme_end..].find('/') {
        Some(i) => &base[..scheme_end + i],
        None => base,
    };
    match query {
        Some(q) => format!("{base}/{db}?{q}"),
        None => format!("{base}/{db}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_names_are_swapped_in_urls() {
        // Proves the pgbench URL keeps host, user and options and changes only the database.
        assert_eq!(with_database("postgres://rei@127.0.0.1:5432/app", "x"), "postgres://rei@127.0.0.1:5432/x");
        assert_eq!(with_database("postgres://h/app?sslmode=disable", "x"), "postgres://h/x?sslmode=disable");
        assert_eq!(with_database("postgres://h", "x"), "postgres://h/x");
    }

    #[test]
    fn quantiles_use_the_nearest_rank() {
        // Proves p50 and p99 pick the right sample.
        let f = Figures { ops: 100, elapsed: Duration::from_secs(1), latencies_us: (1..=100).collect() };
        assert_eq!((f.quantile_us(500), f.quantile_us(990)), (50, 99));
        assert_eq!(f.ops_per_sec(), 100);
        assert_eq!(ratio(1000, 300), "3.33");
    }
}
