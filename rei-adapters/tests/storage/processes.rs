//! The hold storm and the bank from several OS processes at once, on SQLite and on PostgreSQL: each process
//! opens its own store (its own pool, and on SQLite its own writer thread) on the same database, as separate
//! `rei` processes of one deployment would.
//!
//! A child process is this test binary started again on [`child_process_entry`] with `REI_CHILD` set: it runs
//! its share of the work and prints its outcome counts on one line for the parent to add up.

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use rei_adapters::postgres::ledger::{PgLedger, PgLedgerConfig};
use rei_adapters::sqlite::ledger::{SqliteLedger, SqliteLedgerConfig};
use rei_core::ledger::LedgerStore;
use sqlx::postgres::PgConnectOptions;

use crate::support;
use crate::workloads::{self, Outcomes};

const PROCESSES: u32 = 3;
const STORM_PER_PROCESS: u128 = 200;
const BANK_WRITERS: u128 = 2;
const BANK_OPS: u64 = 150;
const BANK_USERS: u64 = 20;
/// Copies of each command one child sends at once in the repeats run.
const REPEAT_COPIES: u128 = 8;

/// Where a child finds the database: a SQLite URL, or a PostgreSQL URL and schema.
#[derive(Clone)]
enum Target {
    Sqlite(String),
    Postgres { url: String, schema: String },
}

impl Target {
    fn env(&self) -> String {
        match self {
            Target::Sqlite(url) => format!("sqlite|{url}"),
            Target::Postgres { url, schema } => format!("postgres|{url}|{schema}"),
        }
    }

    fn parse(text: &str) -> Target {
        let parts: Vec<&str> = text.split('|').collect();
        match parts.as_slice() {
            ["sqlite", url] => Target::Sqlite((*url).to_owned()),
            ["postgres", url, schema] => Target::Postgres { url: (*url).to_owned(), schema: (*schema).to_owned() },
            _ => panic!("bad REI_CHILD_TARGET {text:?}"),
        }
    }

    async fn open(&self) -> Arc<dyn LedgerStore> {
        match self {
            Target::Sqlite(url) => {
                let pool = rei_adapters::sqlite::connect(url, Duration::from_secs(10)).await.expect("sqlite pool");
                Arc::new(SqliteLedger::new(pool, SqliteLedgerConfig { batch_max: 256, queue_max: 4_096 }))
            }
            Target::Postgres { url, schema } => {
                let options: PgConnectOptions = url.parse().expect("url");
                let options = options.options([("search_path", schema.as_str())]);
                let pool =
                    rei_adapters::postgres::connect_with(options, 8, Duration::from_secs(10)).await.expect("pool");
                Arc::new(PgLedger::new(pool, PgLedgerConfig::default()))
            }
        }
    }
}

#[test]
fn child_process_entry() {
    // Not a check of its own: the entry point of the child processes of the tests below, which assert on what
    // the children print. Started without REI_CHILD (as part of the suite), it has nothing to do.
    let Ok(role) = std::env::var("REI_CHILD") else { return };
    let target = Target::parse(&std::env::var("REI_CHILD_TARGET").expect("REI_CHILD_TARGET"));
    let (work, index) = role.split_once(':').expect("work:index");
    let index: u128 = index.parse().expect("child index");
    let outcomes = support::runtime().block_on(async {
        let store = target.open().await;
        match work {
            "storm" => {
                let first = 10 + index * STORM_PER_PROCESS;
                workloads::storm(store, first..first + STORM_PER_PROCESS).await
            }
            "repeats" => workloads::repeats(store, REPEAT_COPIES, 10_000_000 * (index + 1)).await,
            "bank" => {
                let writers: Vec<_> = (0..BANK_WRITERS)
                    .map(|w| {
                        let writer = 1 + index * BANK_WRITERS + w;
                        tokio::spawn(workloads::bank_writer(Arc::clone(&store), writer, BANK_OPS, BANK_USERS))
                    })
                    .collect();
                let mut all = Outcomes::default();
                for w in writers {
                    all.merge(&w.await.expect("bank writer"));
                }
                all
            }
            other => panic!("unknown child work {other:?}"),
        }
    });
    println!("REI-OUTCOMES {}", outcomes.to_line());
}

/// Runs `work` in [`PROCESSES`] child processes at once and adds up their outcomes.
fn run_children(work: &str, target: &Target) -> Outcomes {
    let exe = std::env::current_exe().expect("this test binary");
    let children: Vec<_> = (0..PROCESSES)
        .map(|i| {
            Command::new(&exe)
                .args(["--exact", "processes::child_process_entry", "--nocapture", "--test-threads=1"])
                .env("REI_CHILD", format!("{work}:{i}"))
                .env("REI_CHILD_TARGET", target.env())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("start a child process")
        })
        .collect();
    let mut all = Outcomes::default();
    for child in children {
        let out = child.wait_with_output().expect("child output");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "a child failed: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
        let line = stdout
            .lines()
            .find_map(|l| l.split_once("REI-OUTCOMES ").map(|(_, counts)| counts))
            .unwrap_or_else(|| panic!("a child printed no outcomes: {stdout}"));
        all.merge(&Outcomes::from_line(line));
    }
    all
}

async fn sqlite_target(name: &str) -> (Target, Arc<dyn LedgerStore>) {
    let path = support::test_db_path(name);
    let url = format!("sqlite://{}", path.display());
    let pool = rei_adapters::sqlite::connect(&url, Duration::from_secs(10)).await.expect("pool");
    rei_adapters::sqlite::migrate(&pool).await.expect("migrate");
    let store: Arc<dyn LedgerStore> = Arc::new(SqliteLedger::new(pool, SqliteLedgerConfig::default()));
    (Target::Sqlite(url), store)
}

async fn pg_target() -> (Target, Arc<dyn LedgerStore>) {
    let (pool, schema) = support::pg_pool_in_schema(4).await;
    let store: Arc<dyn LedgerStore> = Arc::new(PgLedger::new(pool, PgLedgerConfig::default()));
    (Target::Postgres { url: support::pg_admin_url(), schema }, store)
}

async fn storm_from_processes(target: Target, store: Arc<dyn LedgerStore>) {
    workloads::fund_storm(&*store).await;
    let target2 = target.clone();
    let outcomes = tokio::task::spawn_blocking(move || run_children("storm", &target2)).await.expect("children");
    workloads::assert_storm(&outcomes, u64::from(PROCESSES) * 200);
    let b = store.balance(rei_core::ids::UserId(workloads::STORM_USER)).await.expect("balance");
    assert_eq!((b.available.kopecks(), b.held.kopecks()), (0, 10_000), "exactly the balance is held");
    let report = store.verify().await.expect("verify");
    assert!(report.is_clean(), "{report:?}");
}

async fn bank_from_processes(target: Target, store: Arc<dyn LedgerStore>) {
    let target2 = target.clone();
    let outcomes = tokio::task::spawn_blocking(move || run_children("bank", &target2)).await.expect("children");
    workloads::assert_bank(&outcomes);
    let report = store.verify().await.expect("verify");
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.transactions, workloads::applied(&outcomes), "every applied move is one transaction");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_from_several_processes_never_overdraws_sqlite() {
    // Proves 600 holds of 1.00 on 100.00 from three processes, each with its own SQLite writer on one file,
    // place exactly 100 and refuse the rest for funds, and nothing else happens.
    let (target, store) = sqlite_target("processes-storm").await;
    storm_from_processes(target, store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_from_several_processes_never_overdraws_postgres() {
    // Proves 600 holds of 1.00 on 100.00 from three processes on one PostgreSQL schema place exactly 100 and
    // refuse the rest for funds, and nothing else happens.
    let (target, store) = pg_target().await;
    storm_from_processes(target, store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bank_from_several_processes_conserves_money_sqlite() {
    // Proves three processes moving money over 20 shared users on one SQLite file apply every kind of move,
    // refuse only holds short of funds, and leave a ledger that verifies with one transaction per move.
    let (target, store) = sqlite_target("processes-bank").await;
    bank_from_processes(target, store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bank_from_several_processes_conserves_money_postgres() {
    // Proves three processes moving money over 20 shared users on one PostgreSQL schema apply every kind of
    // move, refuse only holds short of funds, and leave a ledger that verifies with one transaction per move.
    let (target, store) = pg_target().await;
    bank_from_processes(target, store).await;
}

async fn repeats_from_processes(target: Target, store: Arc<dyn LedgerStore>) {
    let target2 = target.clone();
    let outcomes = tokio::task::spawn_blocking(move || run_children("repeats", &target2)).await.expect("children");
    workloads::assert_repeats(&outcomes, u64::from(PROCESSES) * u64::try_from(REPEAT_COPIES).unwrap_or(0));
    let b = store.balance(rei_core::ids::UserId(workloads::REPEATS_USER)).await.expect("balance");
    assert_eq!((b.available.kopecks(), b.held.kopecks()), (0, 0), "every move once: 10 + 5 - 15");
    let report = store.verify().await.expect("verify");
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.transactions, 8, "eight commands, eight transactions");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeats_from_several_processes_replay_sqlite() {
    // Proves the same commands sent at once by 24 callers in three processes on one SQLite file apply once
    // each, and every other caller gets the first receipt as a replay, never an error.
    let (target, store) = sqlite_target("processes-repeats").await;
    repeats_from_processes(target, store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeats_from_several_processes_replay_postgres() {
    // Proves the same commands sent at once by 24 callers in three processes on one PostgreSQL schema apply
    // once each, and every other caller gets the first receipt as a replay, never an error.
    let (target, store) = pg_target().await;
    repeats_from_processes(target, store).await;
}
