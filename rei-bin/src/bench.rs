//! `rei bench ledger`: hold -> capture cycles from N concurrent clients against a real database, and, on
//! PostgreSQL, pgbench's TPC-B-like workload on the same server with the same clients and duration, for the
//! ratio. A benchmark, not a test: it reports, it asserts nothing but a clean ledger.

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rei_core::caps::SpendCaps;
use rei_core::ids::{HoldId, IdempotencyKey, PaymentId, TxId, UserId};
use rei_core::ledger::{LedgerCommand, LedgerOp, LedgerStore};
use rei_core::money::Money;
use rei_core::time::Clock;

use crate::wiring::Database;

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
    pub(crate) migrate_on_start: crate::wiring::MigrateOnStart,
}

/// What one run measured.
struct Figures {
    ops: u64,
    elapsed: Duration,
    latencies_us: Vec<u64>,
}

impl Figures {
    fn ops_per_sec(&self) -> u64 {
        let ms = u64::try_from(self.elapsed.as_millis()).unwrap_or(u64::MAX).max(1);
        self.ops.saturating_mul(1000) / ms
    }

    /// The latency at quantile `per_mille`/1000, in microseconds (nearest rank).
    fn quantile_us(&self, per_mille: u64) -> u64 {
        if self.latencies_us.is_empty() {
            return 0;
        }
        let n = self.latencies_us.len() as u64;
        let rank = (n * per_mille).div_ceil(1000).clamp(1, n);
        self.latencies_us[usize::try_from(rank - 1).unwrap_or(0)]
    }
}

/// Microseconds as milliseconds with three decimals, for output.
fn ms(us: u64) -> String {
    format!("{}.{:03}", us / 1000, us % 1000)
}

pub(crate) async fn run(b: LedgerBench) -> Result<()> {
    if b.clients == 0 || b.clients > 1024 {
        bail!("--clients must be 1 to 1024");
    }
    if b.seconds == 0 || b.seconds > 3600 {
        bail!("--seconds must be 1 to 3600");
    }
    let connections = b.clients.clamp(4, 32);
    let db = Database::open(&b.database_url, connections).await?;
    db.ready_schema(b.migrate_on_start).await?;
    let ledger = db.ledger(b.batch_max, b.writers)?;
    let run_id = rei_adapters::system::SystemClock::new().now().as_millis();

    // Each client has its own user, funded far beyond what the run can capture.
    for c in 0..b.clients {
        let user = UserId(1_000_000_000 + i64::from(c));
        let payment = PaymentId::parse(&format!("bench-{run_id}-{c}"))?;
        let cmd = LedgerCommand {
            key: IdempotencyKey::derived("bench-topup", format!("{run_id}-{c}")),
            tx: TxId::from(bench_id(run_id, c, 0)),
            at: now(),
            op: LedgerOp::TopUp { user, amount: Money::from_rubles(1_000_000_000)?, payment },
        };
        ledger.apply(cmd).await.context("failed to fund a bench client")?;
    }

    // Warm up (caches, WAL files, tables past their first pages), then refresh the planner's statistics as
    // autovacuum would, so the measured run sees a database in its steady state.
    eprintln!("rei bench ledger: warming up for {} s", b.warmup_seconds);
    drive(ledger.clone(), b.clients, Duration::from_secs(b.warmup_seconds), run_id, 0).await?;
    if let Some(pool) = db.postgres() {
        rei_adapters::postgres::analyze_ledger(pool).await.context("failed to analyze the ledger tables")?;
    }
    eprintln!("rei bench ledger: {} clients, {} s, {}, hold -> capture", b.clients, b.seconds, db.engine());
    let figures = drive(ledger.clone(), b.clients, Duration::from_secs(b.seconds), run_id, 1).await?;
    let report = ledger.verify().await.context("failed to verify after the run")?;

    let pgbench_tps = match db.postgres() {
        Some(pool) => Some(pgbench(pool, &b).await?),
        None => None,
    };

    println!("engine       {}", db.engine());
    println!("clients      {}", b.clients);
    println!("ops          {} in {:?}", figures.ops, figures.elapsed);
    println!("ops/s        {}", figures.ops_per_sec());
    println!("p50          {} ms", ms(figures.quantile_us(500)));
    println!("p99          {} ms", ms(figures.quantile_us(990)));
    if let Some(tps) = pgbench_tps {
        println!("pgbench tps  {tps} (TPC-B-like, same clients and duration)");
        println!("ratio        {}x", ratio(figures.ops_per_sec(), tps));
    }
    println!(
        "verify       {} ({} transactions)",
        if report.is_clean() { "clean" } else { "DRIFT" },
        report.transactions
    );
    if b.json {
        println!(
            "{{\"engine\":\"{}\",\"clients\":{},\"seconds\":{},\"ops\":{},\"ops_per_sec\":{},\"p50_ms\":{},\"p99_ms\":{},\"pgbench_tps\":{},\"ratio\":{},\"verify_clean\":{}}}",
            db.engine(),
            b.clients,
            b.seconds,
            figures.ops,
            figures.ops_per_sec(),
            ms(figures.quantile_us(500)),
            ms(figures.quantile_us(990)),
            pgbench_tps.map_or_else(|| "null".to_owned(), |t| t.to_string()),
            pgbench_tps.map_or_else(|| "null".to_owned(), |t| ratio(figures.ops_per_sec(), t)),
            report.is_clean()
        );
    }
    if !report.is_clean() {
        bail!("the ledger does not verify after the run: {report:?}");
    }
    Ok(())
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
                        key: IdempotencyKey::derived("bench-h", hold),
                        tx: TxId::from(bench_id(run_id, c, seq + 1)),
                        at,
                        op,
                    };
                    ledger.apply(cmd).await?;
                    latencies.push(u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX));
                    let t = Instant::now();
                    let cmd = LedgerCommand {
                        key: IdempotencyKey::derived("bench-c", hold),
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

/// Runs pgbench's TPC-B-like workload in its own database on the same server and returns its tps.
async fn pgbench(pool: &rei_adapters::sqlx_pools::PgPool, b: &LedgerBench) -> Result<u64> {
    let db = "rei_bench_pgbench";
    rei_adapters::postgres::recreate_database(pool, db).await.context("failed to create the pgbench database")?;
    let url = with_database(&b.database_url, db);
    eprintln!("pgbench: initialising scale {} ...", b.pgbench_scale);
    let init = Command::new("pgbench")
        .args(["-i", "-q", "-s", &b.pgbench_scale.to_string(), &url])
        .output()
        .context("failed to run pgbench (is it installed? Debian: postgresql-client)")?;
    if !init.status.success() {
        bail!("pgbench -i failed: {}", String::from_utf8_lossy(&init.stderr));
    }
    eprintln!("pgbench: {} clients for {} s ...", b.clients, b.seconds);
    let out = Command::new("pgbench")
        .args(["-c", &b.clients.to_string(), "-j", "2", "-T", &b.seconds.to_string(), "-M", "prepared", "-n", &url])
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
