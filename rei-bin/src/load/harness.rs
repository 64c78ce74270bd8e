//! What `rei load` runs against: local fakes of Telegram, YooKassa and two Gemini accounts in this process, and
//! `rei serve`, `rei gc` and `rei worker` as child processes of this very binary, on one database (and Redis,
//! when given), each with its own log under the run's directory.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rei_adapters::fakes::gemini::{FakeGemini, FakeGeminiConfig, GeminiOutcome};
use rei_adapters::fakes::telegram::FakeTelegram;
use rei_adapters::fakes::yookassa::FakeYooKassa;
use tokio::process::{Child, Command};

/// The load's bot token (the fake takes only it).
pub(crate) const TOKEN: &str = "424242:load-token";
/// The webhook's secret.
pub(crate) const WEBHOOK_SECRET: &str = "load-webhook-secret";
const SHOP: &str = "load-shop";
const SHOP_SECRET: &str = "load-shop-secret";
const GEMINI_KEY: &str = "load-gemini-key";
const RESERVE_KEY: &str = "load-gemini-reserve-key";
/// Outcomes kept queued in each fake provider's script.
const SCRIPT_AHEAD: usize = 128;

/// How the fake providers answer: a latency (each call takes it, ±50 %) and a share of 500s, per mille. Either
/// can change while the load runs.
#[derive(Debug)]
pub(crate) struct ProviderMix {
    latency_ms: AtomicU64,
    failure_per_mille: AtomicU64,
}

impl ProviderMix {
    pub(crate) fn new(latency_ms: u64, failure_per_mille: u64) -> ProviderMix {
        ProviderMix { latency_ms: AtomicU64::new(latency_ms), failure_per_mille: AtomicU64::new(failure_per_mille) }
    }

    pub(crate) fn set_failure_per_mille(&self, per_mille: u64) {
        self.failure_per_mille.store(per_mille.min(1_000), Ordering::Relaxed);
    }

    pub(crate) fn failure_per_mille(&self) -> u64 {
        self.failure_per_mille.load(Ordering::Relaxed)
    }

    fn next(&self, rng: &mut Rng) -> GeminiOutcome {
        if rng.below(1_000) < self.failure_per_mille.load(Ordering::Relaxed) {
            return GeminiOutcome::ServerError;
        }
        let latency = self.latency_ms.load(Ordering::Relaxed);
        if latency == 0 {
            return GeminiOutcome::Success;
        }
        let jitter = rng.below(latency.saturating_add(1));
        GeminiOutcome::Slow(Duration::from_millis(latency / 2 + jitter))
    }
}

/// A small deterministic generator (SplitMix64): the load needs spread, not secrecy.
#[derive(Clone, Debug)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`0` when `n` is 0).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_u64() % n }
    }
}

/// How to set the run up.
#[derive(Clone, Debug)]
pub(crate) struct HarnessOptions {
    pub(crate) dir: PathBuf,
    pub(crate) database_url: Option<String>,
    pub(crate) redis_url: Option<String>,
    pub(crate) workers: u32,
    pub(crate) worker_concurrency: u32,
    pub(crate) lease_seconds: u64,
    pub(crate) gc_interval_seconds: u64,
}

/// The fakes, the processes, and how to reach them.
pub(crate) struct Harness {
    pub(crate) telegram: FakeTelegram,
    pub(crate) yookassa: Arc<FakeYooKassa>,
    pub(crate) gemini: FakeGemini,
    pub(crate) reserve: FakeGemini,
    pub(crate) main_mix: Arc<ProviderMix>,
    pub(crate) addr: SocketAddr,
    pub(crate) database_url: String,
    pub(crate) redis_url: Option<String>,
    pub(crate) dir: PathBuf,
    exe: PathBuf,
    env: Vec<(String, String)>,
    serve: Child,
    gc: Child,
    workers: Vec<Option<Child>>,
    worker_restarts: Vec<u32>,
    filler: tokio::task::JoinHandle<()>,
}

/// A free port on the loopback interface (bound, then let go).
pub(crate) fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("failed to find a free port")?;
    Ok(listener.local_addr().context("failed to read the port")?.port())
}

impl Harness {
    /// Starts the fakes, migrates the database, and starts `rei serve`, `rei gc` and the workers; returns when
    /// the server answers ready.
    pub(crate) async fn start(options: &HarnessOptions, mix: (u64, u64)) -> Result<Harness> {
        std::fs::create_dir_all(options.dir.join("logs")).context("failed to make the run's directory")?;
        let telegram = FakeTelegram::start(TOKEN).await.context("the fake Telegram")?;
        let yookassa = Arc::new(FakeYooKassa::start(SHOP, SHOP_SECRET).await.context("the fake YooKassa")?);
        // Payment ids differ from every earlier run's on the same database.
        yookassa.set_id_base(super::now_ms().saturating_mul(16));
        let gemini_config = |key: &str| FakeGeminiConfig { api_key: key.to_owned(), thoughts: false };
        let gemini = FakeGemini::start(gemini_config(GEMINI_KEY)).await.context("the fake Gemini")?;
        let reserve = FakeGemini::start(gemini_config(RESERVE_KEY)).await.context("the reserve fake Gemini")?;
        let main_mix = Arc::new(ProviderMix::new(mix.0, mix.1));
        let reserve_mix = Arc::new(ProviderMix::new(mix.0, mix.1));
        let filler = {
            let scripts = [(gemini.script(), main_mix.clone()), (reserve.script(), reserve_mix.clone())];
            tokio::spawn(async move {
                let mut rng = Rng::new(super::now_ms());
                loop {
                    for (script, mix) in &scripts {
                        while script.pending() < SCRIPT_AHEAD {
                            script.push(mix.next(&mut rng));
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            })
        };

        let database_url = match &options.database_url {
            Some(url) => url.clone(),
            None => format!("sqlite://{}", options.dir.join("rei.db").display()),
        };
        let config = options.dir.join("rei.toml");
        std::fs::write(&config, settings()?).context("failed to write the load's settings file")?;
        let port = free_port()?;
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let exe = std::env::current_exe().context("failed to find this binary")?;
        let mut env: Vec<(String, String)> = vec![
            ("DATABASE_URL".into(), database_url.clone()),
            ("REI_CONFIG".into(), config.display().to_string()),
            ("REI_ASSETS_DIR".into(), options.dir.join("assets").display().to_string()),
            ("BOT_TOKEN".into(), TOKEN.into()),
            ("BOT_USERNAME".into(), "rei_load_bot".into()),
            ("TELEGRAM_API_URL".into(), telegram.base_url()),
            // The fake Telegram has no send limits; Telegram's own pacing is not REI's time.
            ("TELEGRAM_SENDS_PER_SECOND".into(), "100000".into()),
            ("TELEGRAM_CHAT_SENDS_PER_SECOND".into(), "100".into()),
            ("REI_LOG".into(), "warn".into()),
            ("REI_DB_CONNECTIONS".into(), "24".into()),
        ];
        if let Some(redis) = &options.redis_url {
            env.push(("REDIS_URL".into(), redis.clone()));
        }
        if let Ok(path) = std::env::var("PATH") {
            env.push(("PATH".into(), path));
        }
        let harness_env = env.clone();

        let migrate = Command::new(&exe)
            .arg("migrate")
            .env_clear()
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .output()
            .await
            .context("failed to run rei migrate")?;
        if !migrate.status.success() {
            bail!("rei migrate failed: {}", String::from_utf8_lossy(&migrate.stderr).trim());
        }

        let serve_env = [
            ("REI_LISTEN".to_owned(), addr.to_string()),
            ("TELEGRAM_WEBHOOK_SECRET".to_owned(), WEBHOOK_SECRET.to_owned()),
            ("YOOKASSA_SHOP_ID".to_owned(), SHOP.to_owned()),
            ("YOOKASSA_SECRET_KEY".to_owned(), SHOP_SECRET.to_owned()),
            ("YOOKASSA_BASE_URL".to_owned(), yookassa.base_url()),
            ("REI_WEBHOOK_ALLOWLIST".to_owned(), "127.0.0.1/32".to_owned()),
            ("CONSOLE_SECRET".to_owned(), format!("load-console-secret-{:032x}", super::now_ms())),
        ];
        let serve = spawn(&exe, "serve", &[], &env, &serve_env, &options.dir.join("logs/serve.log"))?;
        let gc = spawn(
            &exe,
            "gc",
            &["--interval-seconds", &options.gc_interval_seconds.to_string()],
            &env,
            &[],
            &options.dir.join("logs/gc.log"),
        )?;
        let mut harness = Harness {
            telegram,
            yookassa,
            gemini,
            reserve,
            main_mix,
            addr,
            database_url,
            redis_url: options.redis_url.clone(),
            dir: options.dir.clone(),
            exe,
            env: harness_env,
            serve,
            gc,
            workers: Vec::new(),
            worker_restarts: Vec::new(),
            filler,
        };
        harness.env.extend([
            ("NANO_BANANA_API_KEY".to_owned(), GEMINI_KEY.to_owned()),
            ("GEMINI_BASE_URL".to_owned(), harness.gemini.base_url()),
            ("GEMINI_RESERVE_API_KEY".to_owned(), RESERVE_KEY.to_owned()),
            ("GEMINI_RESERVE_BASE_URL".to_owned(), harness.reserve.base_url()),
            ("REI_WORKER_CONCURRENCY".to_owned(), options.worker_concurrency.to_string()),
            ("REI_WORKER_IDLE_POLL_MS".to_owned(), "20".to_owned()),
            ("REI_LEASE_SECONDS".to_owned(), options.lease_seconds.to_string()),
            ("REI_PROVIDER_TIMEOUT_SECONDS".to_owned(), "30".to_owned()),
        ]);
        for n in 0..options.workers {
            let child = harness.spawn_worker(n as usize)?;
            harness.workers.push(Some(child));
            harness.worker_restarts.push(0);
        }
        harness.wait_ready(Duration::from_secs(60)).await?;
        Ok(harness)
    }

    fn spawn_worker(&self, n: usize) -> Result<Child> {
        let name = [("REI_WORKER_NAME".to_owned(), format!("load-worker-{}", n + 1))];
        spawn(&self.exe, "worker", &[], &self.env, &name, &self.dir.join(format!("logs/worker-{}.log", n + 1)))
    }

    /// Waits for `/health/ready`; fails naming the server's log when it exits or does not get ready.
    pub(crate) async fn wait_ready(&mut self, within: Duration) -> Result<()> {
        let client = reqwest::Client::builder().timeout(Duration::from_secs(2)).build().context("HTTP client")?;
        let until = Instant::now() + within;
        loop {
            if let Some(status) = self.serve.try_wait().context("rei serve")? {
                bail!("rei serve exited ({status}): see {}", self.dir.join("logs/serve.log").display());
            }
            let ready = client.get(format!("http://{}/health/ready", self.addr)).send().await;
            if ready.is_ok_and(|r| r.status().is_success()) {
                return Ok(());
            }
            if Instant::now() > until {
                bail!("rei serve was not ready within {within:?}: see {}", self.dir.join("logs/serve.log").display());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The number of workers started.
    pub(crate) fn worker_count(&self) -> usize {
        self.workers.len()
    }

    /// SIGKILLs worker `n` (its leases are left to expire).
    pub(crate) async fn kill_worker(&mut self, n: usize) -> Result<()> {
        if let Some(mut child) = self.workers.get_mut(n).and_then(Option::take) {
            child.start_kill().context("failed to kill the worker")?;
            let _ = child.wait().await;
        }
        Ok(())
    }

    /// Starts worker `n` again (after [`Harness::kill_worker`]).
    pub(crate) fn restart_worker(&mut self, n: usize) -> Result<()> {
        if self.workers.get(n).is_some_and(Option::is_none) {
            let child = self.spawn_worker(n)?;
            self.workers[n] = Some(child);
            self.worker_restarts[n] += 1;
        }
        Ok(())
    }

    /// Processes that exited by themselves (not killed by the run): their names.
    pub(crate) fn exited(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        if matches!(self.serve.try_wait(), Ok(Some(_))) {
            out.push("serve".to_owned());
        }
        if matches!(self.gc.try_wait(), Ok(Some(_))) {
            out.push("gc".to_owned());
        }
        for (n, worker) in self.workers.iter_mut().enumerate() {
            if let Some(child) = worker
                && matches!(child.try_wait(), Ok(Some(_)))
            {
                out.push(format!("worker-{}", n + 1));
            }
        }
        out
    }

    /// CPU time each process has used so far (user + system, from `/proc`; empty where it cannot be read):
    /// this process (the users and the fakes) first.
    pub(crate) fn cpu(&self) -> Vec<(String, Duration)> {
        let mut out = Vec::new();
        let mut add = |name: String, pid: Option<u32>| {
            let path = pid.map_or_else(|| "/proc/self/stat".to_owned(), |p| format!("/proc/{p}/stat"));
            if let Some(cpu) = std::fs::read_to_string(path).ok().as_deref().and_then(cpu_of_stat) {
                out.push((name, cpu));
            }
        };
        add("load (users + fakes)".to_owned(), None);
        add("serve".to_owned(), self.serve.id());
        add("gc".to_owned(), self.gc.id());
        for (n, worker) in self.workers.iter().enumerate() {
            add(format!("worker-{}", n + 1), worker.as_ref().and_then(Child::id));
        }
        out
    }

    /// Stops every process with SIGTERM (workers first, letting their jobs finish), then the fakes.
    pub(crate) async fn stop(mut self) {
        for worker in self.workers.iter_mut().flatten() {
            terminate(worker).await;
        }
        terminate(&mut self.gc).await;
        terminate(&mut self.serve).await;
        self.filler.abort();
        self.telegram.stop().await;
        if let Ok(yookassa) = Arc::try_unwrap(self.yookassa) {
            yookassa.stop().await;
        }
        self.gemini.stop().await;
        self.reserve.stop().await;
    }
}

/// utime + stime of a `/proc/PID/stat` line, at the usual 100 ticks a second.
fn cpu_of_stat(stat: &str) -> Option<Duration> {
    // The command name is in parentheses and may hold spaces: count fields after its closing one.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

/// SIGTERM, then SIGKILL after 40 s.
async fn terminate(child: &mut Child) {
    if let Some(pid) = child.id() {
        let _ = std::process::Command::new("kill").arg("-TERM").arg(pid.to_string()).status();
        if tokio::time::timeout(Duration::from_secs(40), child.wait()).await.is_ok() {
            return;
        }
    }
    let _ = child.start_kill();
    let _ = child.wait().await;
}

fn spawn(
    exe: &Path,
    role: &str,
    args: &[&str],
    env: &[(String, String)],
    extra: &[(String, String)],
    log: &Path,
) -> Result<Child> {
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("failed to open {}", log.display()))?;
    let err = out.try_clone().context("the log file")?;
    Command::new(exe)
        .arg(role)
        .args(args)
        .env_clear()
        .envs(env.iter().chain(extra).map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("failed to start rei {role}"))
}

/// The shipped settings with the per-user update limit raised: a simulated user sends about one update a
/// second, above the shipped 20 a minute that keeps a real user from flooding the bot.
fn settings() -> Result<String> {
    let shipped = crate::settings::SHIPPED;
    let raised = shipped
        .replace("updates_per_minute = 20", "updates_per_minute = 6000")
        .replace("update_burst = 10", "update_burst = 100");
    if raised == shipped {
        bail!("the shipped settings no longer carry bot.updates_per_minute = 20; update rei load");
    }
    Ok(raised)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_load_settings_are_valid_and_raise_the_user_limit() {
        let text = settings().expect("settings");
        assert!(text.contains("updates_per_minute = 6000"));
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("rei.toml");
        std::fs::write(&path, &text).expect("write");
        let parsed = crate::settings::Settings::load(Some(&path)).expect("the load's settings parse");
        assert_eq!(parsed.bot.updates_per_minute, 6000);
    }

    #[test]
    fn cpu_is_read_from_a_stat_line_whose_name_has_spaces() {
        let line = "4242 (rei worker) S 1 2 3 4 5 6 7 8 9 10 250 125 0 0 20 0 1 0";
        assert_eq!(cpu_of_stat(line), Some(Duration::from_millis(3_750)));
        assert_eq!(cpu_of_stat("garbage"), None);
        assert_eq!(cpu_of_stat("1 (x)"), None, "a line cut after the name");
        assert!(cpu_of_stat(&std::fs::read_to_string("/proc/self/stat").expect("stat")).is_some());
    }

    #[test]
    fn the_mix_fails_about_as_often_as_asked() {
        let mix = ProviderMix::new(100, 250);
        let mut rng = Rng::new(7);
        let failures = (0..10_000).filter(|_| mix.next(&mut rng) == GeminiOutcome::ServerError).count();
        assert!((2_200..2_800).contains(&failures), "{failures} failures of 10000 at 25 %");
        mix.set_failure_per_mille(0);
        assert!((0..1_000).all(|_| matches!(mix.next(&mut rng), GeminiOutcome::Slow(d) if d >= Duration::from_millis(50) && d <= Duration::from_millis(150))));
    }
}
