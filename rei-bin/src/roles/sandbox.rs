//! `rei sandbox`: the main job on the embedded default with no account anywhere. It starts local fakes of the
//! Telegram Bot API, YooKassa, Gemini (a main and a reserve account) and Kling, the real engine on a SQLite file,
//! the real worker, bot and HTTP server, plays a scenario of users through the webhook, and prints what happened.
//! It exits 0 only when the ledger verifies and every job ended.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use rei_bot::sandbox::{ScenarioOptions, Stack, StackOptions, play};

/// What `rei sandbox` was asked to do.
#[derive(clap::Args, Clone, Debug)]
pub(crate) struct SandboxArgs {
    /// Simulated users (at least 2).
    #[arg(long, default_value_t = 6, value_parser = clap::value_parser!(u32).range(2..=500))]
    pub(crate) users: u32,
    /// Generations ordered (at least 4).
    #[arg(long, default_value_t = 12, value_parser = clap::value_parser!(u32).range(4..=5_000))]
    pub(crate) jobs: u32,
    /// Where the database and assets go (default: a new temporary directory, removed afterwards).
    #[arg(long)]
    pub(crate) dir: Option<PathBuf>,
    /// The longest wait for the jobs and the broadcast, in seconds.
    #[arg(long, default_value_t = 180)]
    pub(crate) deadline_seconds: u64,
    /// After the scenario, keep serving (the operator console on what it left) until Ctrl-C.
    #[arg(long)]
    pub(crate) keep: bool,
}

pub(crate) async fn run(args: SandboxArgs) -> Result<ExitCode> {
    let temp = match &args.dir {
        Some(_) => None,
        None => Some(tempfile::tempdir().context("failed to make a temporary directory")?),
    };
    let dir = args.dir.clone().or_else(|| temp.as_ref().map(|t| t.path().to_owned())).context("no directory")?;
    println!(
        "rei sandbox: everything local in {} (SQLite, assets, fake Telegram, YooKassa, Gemini ×2, Kling)",
        dir.display()
    );
    let stack = Stack::start(StackOptions::new(&dir)).await.map_err(anyhow::Error::msg)?;
    println!("rei sandbox: the bot's webhook and API on http://{}", stack.addr);
    let options =
        ScenarioOptions { users: args.users, jobs: args.jobs, deadline: Duration::from_secs(args.deadline_seconds) };
    let summary = play(&stack, options, |line| println!("{line}")).await;
    if args.keep {
        if let Ok(summary) = &summary {
            println!();
            print!("{}", summary.render());
        }
        println!("rei sandbox: the operator console, signed in as the admin: {}", stack.console_link());
        println!("rei sandbox: serving until Ctrl-C");
        super::gc::shutdown().await;
    }
    let report = stack.stop().await;
    let summary = summary.map_err(anyhow::Error::msg).context("the scenario stopped")?;
    if !args.keep {
        println!();
        print!("{}", summary.render());
    }
    println!(
        "Worker: {} succeeded, {} retried, {} failed, {} unknown",
        report.succeeded, report.retried, report.failed, report.unknown
    );
    if summary.ok() {
        println!("rei sandbox: OK");
        Ok(ExitCode::SUCCESS)
    } else {
        println!("rei sandbox: FAILED: the ledger does not verify or jobs did not end");
        Ok(ExitCode::from(2))
    }
}
