//! `rei bench http`: quote -> confirm -> capture through the real `/v1` API over loopback HTTP/1.1 keep-alive,
//! against the same server's no-op route (`/health/live`) in the same run: the no-op rate is what this stack
//! (client, sockets, axum, the middleware) can do on this machine, and the money rate is reported as a share of
//! it. A benchmark, not a test: it reports, and asserts nothing but a clean ledger.
//!
//! The server and the client run in this process (the client's cost is in both rates alike). Like `bench
//! ledger`, it runs in a scratch ledger it makes and removes: a schema on PostgreSQL, a file beside the named one
//! on SQLite.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rei::core::access::Scope;
use rei::core::ids::{PaymentId, UserId};
use rei::core::money::Money;
use rei::{Engine, EngineConfig, MigrateMode};
use serde_json::{Value, json};

use crate::bench::{Figures, ms};

/// What `rei bench http` was asked to do.
#[derive(clap::Args, Clone, Debug)]
pub(crate) struct HttpBench {
    /// postgres://… (the server and database to run in) or sqlite://path (the directory to run in).
    #[arg(long, env = "DATABASE_URL")]
    pub(crate) database_url: String,
    /// Concurrent keep-alive connections.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=4_096))]
    pub(crate) connections: u32,
    /// How long each workload runs.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3_600))]
    pub(crate) seconds: u64,
    /// Print one JSON object as the last line.
    #[arg(long)]
    pub(crate) json: bool,
}

/// One workload's figures: the answered requests (as `ops`) and the failed ones.
struct Run {
    figures: Figures,
    errors: u64,
}

pub(crate) async fn run(b: HttpBench) -> Result<()> {
    let run_id = rei::core::time::Clock::now(&rei::adapters::system::SystemClock::new()).as_millis();
    let config = EngineConfig {
        migrate: MigrateMode::Apply,
        connections_max: b.connections.clamp(4, 32),
        ..crate::wiring::config()
    };
    match rei::adapters::sql::DatabaseUrl::parse(&b.database_url).context("failed to read --database-url")? {
        rei::adapters::sql::DatabaseUrl::Postgres(url) => {
            let schema = format!("rei_bench_http_{}_{run_id}", std::process::id());
            let config = EngineConfig { postgres_schema: Some(schema.clone()), ..config };
            let engine = Arc::new(crate::wiring::open(&url, config).await?);
            eprintln!("rei bench http: running in schema {schema}, dropped afterwards");
            let result = measure(&engine, &b).await;
            if let Some(pool) = engine.database().postgres() {
                rei::adapters::postgres::drop_schema(pool, &schema)
                    .await
                    .context("failed to drop the scratch schema")?;
            }
            engine.close().await;
            result
        }
        rei::adapters::sql::DatabaseUrl::Sqlite(url) => {
            let scratch = crate::bench::scratch_beside(&url, ".rei-bench-http-")?;
            let file = scratch.path().join("bench.db");
            eprintln!("rei bench http: running in {}, removed afterwards", file.display());
            let engine = Arc::new(crate::wiring::open(&format!("sqlite://{}", file.display()), config).await?);
            let result = measure(&engine, &b).await;
            engine.close().await;
            drop(engine);
            scratch.close().context("failed to remove the scratch directory")?;
            result
        }
    }
}

async fn measure(engine: &Arc<Engine>, b: &HttpBench) -> Result<()> {
    let key = rei_http::auth::make_key("bench", &[Scope::Admin], 1_000_000_000, engine.clock().now())?;
    engine.api_keys().create(&key.record).await.context("failed to store the bench key")?;
    for c in 0..b.connections {
        let user = UserId(i64::from(c) + 1);
        let payment = PaymentId::parse(&format!("bench-{c}")).context("payment id")?;
        engine.billing().top_up(user, Money::from_kopecks(1_000_000_000), payment).await.context("top up")?;
    }
    let state = Arc::new(rei_http::HttpState::new(engine.clone(), rei_http::HttpConfig::default()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.context("bind")?;
    let base = format!("http://{}", listener.local_addr().context("address")?);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(rei_http::serve(listener, rei_http::router(state), async {
        let _ = stopped.await;
    }));
    let client = reqwest::Client::builder()
        .http1_only()
        .pool_max_idle_per_host(usize::try_from(b.connections).unwrap_or(256))
        .timeout(Duration::from_secs(30))
        .build()
        .context("client")?;
    let duration = Duration::from_secs(b.seconds);
    eprintln!("no-op: GET /health/live from {} connections for {} s ...", b.connections, b.seconds);
    let noop = drive(&client, &base, &key.token, b.connections, duration, Workload::Noop).await;
    eprintln!("money: quote -> confirm -> capture from {} connections for {} s ...", b.connections, b.seconds);
    let money = drive(&client, &base, &key.token, b.connections, duration, Workload::Money).await;
    let _ = stop.send(());
    let _ = server.await;
    let report = engine.billing().verify().await.context("verify")?;
    let (noop_rps, money_rps) = (noop.figures.ops_per_sec(), money.figures.ops_per_sec());
    let share = money_rps.saturating_mul(1000) / noop_rps.max(1);
    println!("engine        {}", engine.database().engine());
    println!("connections   {}", b.connections);
    println!(
        "no-op         {noop_rps} req/s  p50 {} ms  p99 {} ms  errors {}",
        ms(noop.figures.quantile_us(500)),
        ms(noop.figures.quantile_us(990)),
        noop.errors
    );
    println!(
        "money         {money_rps} req/s  p50 {} ms  p99 {} ms  errors {}  ({} cycles/s)",
        ms(money.figures.quantile_us(500)),
        ms(money.figures.quantile_us(990)),
        money.errors,
        money_rps / 3
    );
    println!("money/no-op   {}.{}%", share / 10, share % 10);
    println!("verify        {}", if report.is_clean() { "clean" } else { "DRIFT" });
    if b.json {
        let line = json!({
            "engine": engine.database().engine(),
            "connections": b.connections,
            "seconds": b.seconds,
            "money_rps": money_rps,
            "noop_rps": noop_rps,
            "money_share": format!("{}.{:03}", share / 1000, share % 1000),
            "p50_ms": ms(money.figures.quantile_us(500)),
            "p99_ms": ms(money.figures.quantile_us(990)),
            "noop_p99_ms": ms(noop.figures.quantile_us(990)),
            "errors": money.errors + noop.errors,
            "verify_clean": report.is_clean(),
        });
        println!("{line}");
    }
    if !report.is_clean() {
        bail!("the ledger does not verify after the run: {report:?}");
    }
    Ok(())
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Workload {
    Noop,
    Money,
}

async fn drive(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    connections: u32,
    duration: Duration,
    workload: Workload,
) -> Run {
    let done = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let tasks: Vec<_> = (0..connections)
        .map(|c| {
            let (client, base, token, done) = (client.clone(), base.to_owned(), token.to_owned(), done.clone());
            tokio::spawn(async move {
                let mut f =
                    Run { figures: Figures { ops: 0, elapsed: Duration::ZERO, latencies_us: Vec::new() }, errors: 0 };
                let mut n = 0u64;
                while !done.load(Ordering::Relaxed) {
                    n += 1;
                    match workload {
                        Workload::Noop => {
                            let t = Instant::now();
                            let ok = client
                                .get(format!("{base}/health/live"))
                                .send()
                                .await
                                .is_ok_and(|r| r.status().is_success());
                            record(&mut f, t, ok);
                        }
                        Workload::Money => cycle(&client, &base, &token, i64::from(c) + 1, n, &mut f).await,
                    }
                }
                f
            })
        })
        .collect();
    tokio::time::sleep(duration).await;
    done.store(true, Ordering::Relaxed);
    let elapsed = started.elapsed();
    let mut all = Run { figures: Figures { ops: 0, elapsed, latencies_us: Vec::new() }, errors: 0 };
    for t in tasks {
        if let Ok(f) = t.await {
            all.figures.ops += f.figures.ops;
            all.errors += f.errors;
            all.figures.latencies_us.extend(f.figures.latencies_us);
        }
    }
    all.figures.latencies_us.sort_unstable();
    all
}

fn record(f: &mut Run, started: Instant, ok: bool) {
    f.figures.latencies_us.push(u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX));
    if ok {
        f.figures.ops += 1;
    } else {
        f.errors += 1;
    }
}

async fn post(client: &reqwest::Client, url: String, token: &str, key: String, body: &Value) -> Option<Value> {
    let r = client.post(url).bearer_auth(token).header("Idempotency-Key", key).json(body).send().await.ok()?;
    if !r.status().is_success() {
        return None;
    }
    r.json().await.ok()
}

async fn cycle(client: &reqwest::Client, base: &str, token: &str, user: i64, n: u64, f: &mut Run) {
    let t = Instant::now();
    let body = json!({"user_id": user, "product": "image.nano-banana"});
    let quote = post(client, format!("{base}/v1/quotes"), token, format!("q-{user}-{n}"), &body).await;
    record(f, t, quote.is_some());
    let Some(id) = quote.as_ref().and_then(|q| q["id"].as_str()) else { return };
    let price = quote.as_ref().and_then(|q| q["price"].as_str()).unwrap_or("0.00").to_owned();
    let t = Instant::now();
    let path = format!("{base}/v1/quotes/{id}/confirm");
    let held = post(client, path, token, format!("c-{user}-{n}"), &json!({"user_id": user})).await;
    record(f, t, held.is_some());
    let Some(hold) = held.as_ref().and_then(|h| h["hold_id"].as_str()) else { return };
    let t = Instant::now();
    let path = format!("{base}/v1/holds/{hold}/capture");
    let captured = post(client, path, token, format!("k-{user}-{n}"), &json!({"amount": price})).await;
    record(f, t, captured.is_some());
}
