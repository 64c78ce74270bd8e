//! `rei chaos`: `rei load` while faults strike on a schedule, on a Redis server of its own (so that it can be
//! restarted and flushed) and the database given (PostgreSQL, whose connections it terminates; or SQLite):
//!
//! | when (share of the run) | fault |
//! |---|---|
//! | 10 % | SIGKILL worker 1; it restarts 5 s later (its jobs come back when their leases expire) |
//! | 25 % | Redis killed and restarted empty (no persistence): the queue is rebuilt from the store by `rei gc` |
//! | 35 % | FLUSHALL on Redis |
//! | 45 % | every PostgreSQL connection to the database terminated |
//! | 50 % – 60 % | the main image provider answers 500 to everything: its breaker opens, the reserve takes over; then it recovers and the breaker closes through its half-open probes |
//! | 85 % | SIGKILL worker 2, restarted at once |
//!
//! It passes only with no money error, every job ended, `verify` clean, the reserve serving while the main
//! provider failed, and the main provider serving again after it recovered.

use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rei::core::ids::ProviderId;
use rei::core::time::Timestamp;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};

use crate::load::harness::{Harness, HarnessOptions};
use crate::load::{LoadArgs, Schedule, now_ms};

/// What `rei chaos` was asked to do.
#[derive(clap::Args, Clone, Debug)]
pub(crate) struct ChaosArgs {
    /// Simulated users.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub(crate) users: u32,
    /// How long the load runs, in seconds (the faults are placed in proportion; at least 100, so that a breaker
    /// open for 30 s is seen to close again).
    #[arg(long, default_value_t = 150, value_parser = clap::value_parser!(u64).range(100..=86_400))]
    pub(crate) seconds: u64,
    /// postgres://… (default: a new SQLite file in the run's directory). Never read from DATABASE_URL.
    #[arg(long)]
    pub(crate) database_url: Option<String>,
    /// The Redis server binary started for the run's queue (it is killed, restarted and flushed).
    #[arg(long, default_value = "redis-server")]
    pub(crate) redis_server: PathBuf,
    /// Where the run's files go (default: a new temporary directory, kept when the run fails).
    #[arg(long)]
    pub(crate) dir: Option<PathBuf>,
    /// Print one JSON object as the last line.
    #[arg(long)]
    pub(crate) json: bool,
}

/// A Redis server this run owns.
struct OwnRedis {
    binary: PathBuf,
    port: u16,
    dir: PathBuf,
    child: Child,
}

impl OwnRedis {
    async fn start(binary: &Path, port: u16, dir: &Path) -> Result<OwnRedis> {
        let child = spawn_redis(binary, port, dir)?;
        let redis = OwnRedis { binary: binary.to_owned(), port, dir: dir.to_owned(), child };
        redis.wait_up().await?;
        Ok(redis)
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    async fn wait_up(&self) -> Result<()> {
        let until = Instant::now() + Duration::from_secs(10);
        while Instant::now() < until {
            if self.command(&["PING"]).await.is_ok_and(|r| r.starts_with("+PONG")) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!("redis-server did not answer on port {} within 10 s", self.port)
    }

    /// Kills the server and starts it again on the same port, empty.
    async fn restart(&mut self) -> Result<()> {
        self.child.start_kill().context("failed to kill redis-server")?;
        let _ = self.child.wait().await;
        self.child = spawn_redis(&self.binary, self.port, &self.dir)?;
        self.wait_up().await
    }

    /// One command in RESP; the first line of the answer.
    async fn command(&self, words: &[&str]) -> Result<String> {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await.context("Redis")?;
        let mut request = format!("*{}\r\n", words.len());
        for w in words {
            request.push_str(&format!("${}\r\n{w}\r\n", w.len()));
        }
        stream.write_all(request.as_bytes()).await.context("Redis")?;
        let mut buf = [0u8; 256];
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await.context("Redis")??;
        Ok(String::from_utf8_lossy(&buf[..n]).lines().next().unwrap_or("").to_owned())
    }

    async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }
}

fn spawn_redis(binary: &Path, port: u16, dir: &Path) -> Result<Child> {
    Command::new(binary)
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| {
            format!("failed to start {} (install Debian's redis-server, or pass --redis-server)", binary.display())
        })
}

/// The faults, in order.
struct Faults {
    redis: OwnRedis,
    database_url: Option<String>,
    /// When the main provider started and stopped failing.
    failing: Option<(Timestamp, Timestamp)>,
}

fn wall() -> Timestamp {
    Timestamp::from_millis(i64::try_from(now_ms()).unwrap_or(i64::MAX))
}

impl Faults {
    async fn terminate_connections(url: &str) -> Result<u64> {
        use sqlx::Connection as _;
        let mut conn = sqlx::PgConnection::connect(url).await.context("failed to connect to PostgreSQL")?;
        let (n,): (i64,) = sqlx::query_as(
            "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid()) t",
        )
        .fetch_one(&mut conn)
        .await
        .context("pg_terminate_backend")?;
        let _ = conn.close().await;
        Ok(u64::try_from(n).unwrap_or(0))
    }
}

impl Schedule for Faults {
    async fn run(&mut self, h: &mut Harness, started: Instant, deadline: Instant) -> Vec<String> {
        let total = deadline.saturating_duration_since(started);
        let at = |per_cent: u32| started + total * per_cent / 100;
        let mut log = Vec::new();
        let mut say = |line: String| {
            let line = format!("[{:>4} s] {line}", started.elapsed().as_secs());
            println!("  chaos {line}");
            log.push(line);
        };
        let sleep_until = |t: Instant| tokio::time::sleep_until(t.into());

        sleep_until(at(10)).await;
        match h.kill_worker(0).await {
            Ok(()) => say("SIGKILL worker-1".to_owned()),
            Err(e) => say(format!("could not kill worker-1: {e:#}")),
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
        match h.restart_worker(0) {
            Ok(()) => say("worker-1 restarted".to_owned()),
            Err(e) => say(format!("could not restart worker-1: {e:#}")),
        }

        sleep_until(at(25)).await;
        match self.redis.restart().await {
            Ok(()) => say("Redis killed and restarted empty".to_owned()),
            Err(e) => say(format!("Redis restart failed: {e:#}")),
        }

        sleep_until(at(35)).await;
        match self.redis.command(&["FLUSHALL"]).await {
            Ok(answer) => say(format!("FLUSHALL on Redis: {answer}")),
            Err(e) => say(format!("FLUSHALL failed: {e:#}")),
        }

        sleep_until(at(45)).await;
        match &self.database_url {
            Some(url) => match Faults::terminate_connections(url).await {
                Ok(n) => say(format!("terminated {n} PostgreSQL connections")),
                Err(e) => say(format!("could not terminate PostgreSQL connections: {e:#}")),
            },
            None => say("SQLite: no connections to terminate (skipped)".to_owned()),
        }

        sleep_until(at(50)).await;
        let before = h.main_mix.failure_per_mille();
        h.main_mix.set_failure_per_mille(1_000);
        // Outcomes drawn before the change are dropped, so that the change is felt from the next call.
        h.gemini.script().clear();
        let failing_from = wall();
        say("the main image provider answers 500 to everything".to_owned());
        sleep_until(at(60)).await;
        h.main_mix.set_failure_per_mille(before);
        h.gemini.script().clear();
        self.failing = Some((failing_from, wall()));
        say("the main image provider recovered".to_owned());

        sleep_until(at(85)).await;
        if let Some(last) = h.worker_count().checked_sub(1) {
            match h.kill_worker(last).await {
                Ok(()) => say(format!("SIGKILL worker-{}", last + 1)),
                Err(e) => say(format!("could not kill worker-{}: {e:#}", last + 1)),
            }
            match h.restart_worker(last) {
                Ok(()) => say(format!("worker-{} restarted", last + 1)),
                Err(e) => say(format!("could not restart worker-{}: {e:#}", last + 1)),
            }
        }
        sleep_until(deadline).await;
        log
    }
}

/// Attempts served by each provider in a window, from the attempt log.
async fn attempts(database_url: &str, since: Timestamp, until: Timestamp) -> Result<Vec<(ProviderId, u64, u64)>> {
    let engine = rei::Engine::builder().database_url(database_url).open().await.context("the database")?;
    let usage = engine.reports().providers(since, until).await.context("the provider report")?;
    engine.close().await;
    Ok(usage.into_iter().map(|u| (u.provider, u.successes, u.failures)).collect())
}

pub(crate) async fn run(args: ChaosArgs) -> Result<ExitCode> {
    let (dir, temp) = crate::load::run_dir(args.dir.as_ref())?;
    std::fs::create_dir_all(dir.join("redis")).context("the run's directory")?;
    let port = crate::load::harness::free_port()?;
    let redis = OwnRedis::start(&args.redis_server, port, &dir.join("redis")).await?;
    let load = LoadArgs {
        users: args.users,
        seconds: args.seconds,
        database_url: args.database_url.clone(),
        redis_url: Some(redis.url()),
        workers: 2,
        worker_concurrency: 64,
        provider_latency_ms: 300,
        provider_failure_per_mille: 10,
        think_ms: 500,
        cancel_per_mille: 80,
        double_tap_per_mille: 100,
        dir: Some(dir.clone()),
        json: args.json,
    };
    let options = HarnessOptions {
        dir: dir.clone(),
        database_url: args.database_url.clone(),
        redis_url: Some(redis.url()),
        workers: 2,
        worker_concurrency: 64,
        // Short leases and frequent gc passes, so that a killed worker's jobs come back within the run.
        lease_seconds: 15,
        gc_interval_seconds: 2,
    };
    println!("rei chaos: {} users for {} s, Redis of its own on port {port}", args.users, args.seconds);
    let mut faults = Faults { redis, database_url: args.database_url.clone(), failing: None };
    let outcome = crate::load::execute(&load, options, &mut faults).await;
    let failing = faults.failing;
    faults.redis.stop().await;
    let outcome = outcome?;
    outcome.print(args.users);

    // Failover and recovery, from the attempt log: who served while the main provider failed, and after.
    let mut findings = Vec::new();
    let mut routed = true;
    if let Some((from, to)) = failing {
        let database_url =
            args.database_url.clone().unwrap_or_else(|| format!("sqlite://{}", dir.join("rei.db").display()));
        let during = attempts(&database_url, from.plus(Duration::from_secs(5)), to).await?;
        // The breaker stays open 30 s after the last failure, then lets probes through.
        let after = attempts(&database_url, to.plus(Duration::from_secs(35)), wall()).await?;
        let served = |rows: &[(ProviderId, u64, u64)], name: &str| {
            rows.iter().filter(|(p, _, _)| p.as_str() == name).map(|(_, ok, _)| *ok).sum::<u64>()
        };
        let reserve_during = served(&during, crate::providers::RESERVE);
        let main_during = served(&during, "gemini");
        let main_after = served(&after, "gemini");
        findings.push(format!(
            "while the main provider failed: the reserve delivered {reserve_during}, the main one {main_during}"
        ));
        findings.push(format!("from 35 s after it recovered: the main provider delivered {main_after}"));
        if reserve_during == 0 {
            findings.push("✗ no failover: the reserve served nothing while the main provider failed".to_owned());
            routed = false;
        }
        if main_after == 0 {
            findings.push("✗ no recovery: the main provider served nothing after it recovered".to_owned());
            routed = false;
        }
    }
    println!();
    println!("what chaos did:");
    for line in &outcome.actions {
        println!("  {line}");
    }
    println!("what it found:");
    for line in &findings {
        println!("  {line}");
    }
    let passed = outcome.passed() && routed;
    println!("rei chaos: {}", if passed { "PASSED: no money error, every job ended, verify clean" } else { "FAILED" });
    if !passed && let Some(temp) = temp {
        println!("rei chaos: the run's files are kept in {}", temp.keep().display());
    }
    if args.json {
        let mut line = outcome.json(args.users);
        line["findings"] = serde_json::json!(findings);
        line["passed"] = serde_json::json!(passed);
        println!("{line}");
    }
    Ok(if passed { ExitCode::SUCCESS } else { ExitCode::from(2) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_runs_own_redis_restarts_empty_and_flushes() {
        // Proves what chaos does to Redis: a key set before a restart is gone after it (no persistence), and
        // FLUSHALL answers +OK; a missing redis-server binary is a clear error.
        let dir = tempfile::tempdir().expect("dir");
        let port = std::net::TcpListener::bind("127.0.0.1:0").expect("port").local_addr().expect("addr").port();
        let mut redis = OwnRedis::start(Path::new("redis-server"), port, dir.path()).await.expect("redis-server");
        assert_eq!(redis.command(&["SET", "k", "v"]).await.expect("set"), "+OK");
        assert_eq!(redis.command(&["EXISTS", "k"]).await.expect("exists"), ":1");
        redis.restart().await.expect("restart");
        assert_eq!(redis.command(&["EXISTS", "k"]).await.expect("exists"), ":0", "a restarted Redis is empty");
        assert_eq!(redis.command(&["SET", "k", "v"]).await.expect("set"), "+OK");
        assert_eq!(redis.command(&["FLUSHALL"]).await.expect("flush"), "+OK");
        assert_eq!(redis.command(&["EXISTS", "k"]).await.expect("exists"), ":0");
        redis.stop().await;
        let missing = OwnRedis::start(Path::new("/nonexistent/redis-server"), port, dir.path()).await;
        assert!(missing.err().is_some_and(|e| format!("{e:#}").contains("install Debian's redis-server")));
    }
}
