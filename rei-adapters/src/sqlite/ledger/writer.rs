//! The ledger's single writer: a thread of its own, on a connection of its own (rusqlite), that
//! group-commits the work sent to it.
//!
//! A writer that talks to SQLite through sqlx pays, per statement, a trip to sqlx's connection thread and back
//! to the async task; with one writer those trips are the critical path of every commit. This thread calls
//! SQLite directly, keeps every statement prepared, and keeps its page cache warm between batches (SQLite drops
//! a connection's cache whenever another connection wrote, so the writer never borrows pooled connections).
//!
//! What a batch does is unchanged: `BEGIN IMMEDIATE`, load the rows the batch touches into a [`WorkingSet`],
//! apply each command there, write what changed (postings before their transaction row, so the database's
//! sum-to-zero trigger checks each transaction), commit. Every schema constraint and trigger stays the last line
//! of defence: one that fires fails the batch, which is then retried command by command.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use rei_core::caps::Tranche;
use rei_core::ids::{HoldId, IdempotencyKey, PaymentId, ProviderId, TxId, UserId};
use rei_core::ledger::{
    Balance, Changes, Hold, HoldState, KeyRecord, LedgerCommand, LedgerError, NewTransaction, OpKind, PaymentRecord,
    Receipt, StoreError, SystemAccount, WorkingSet,
};
use rei_core::money::Money;
use rei_core::time::Timestamp;
use rusqlite::types::Value;
use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension, Row, TransactionBehavior, params_from_iter};
use sqlx::sqlite::SqlitePool;
use tokio::sync::{mpsc, oneshot};

use super::{
    BUSY_BACKOFF_FIRST, BUSY_RETRIES_MAX, HOLD_COLUMNS, KEY_COLUMNS, Outcome, Request, Work, account_columns, corrupt,
    op_kind, sql_count,
};
use crate::sql::retry::{Failure, Next, after_failure};
use crate::sql::{id_bytes, id_from_bytes};

/// The writer connection's page cache: 64 MiB (a negative `cache_size` counts KiB), so the pages at the hot ends
/// of the indexes stay in memory between batches.
const CACHE_SIZE_KIB: i64 = 65_536;
/// Prepared statements the writer keeps: every shape it uses (a multi-row INSERT has one per row count up to
/// [`ROWS_PER_INSERT`]) stays prepared.
const STATEMENTS_CACHED: usize = 256;
/// Rows per multi-row INSERT, far below SQLite's bound on bound parameters (13 columns × 32 rows = 416).
const ROWS_PER_INSERT: usize = 32;

/// A failure inside a database step, before it is mapped to the port's [`StoreError`].
#[derive(Debug, thiserror::Error)]
pub(super) enum WriteError {
    /// SQLite failed.
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
    /// A row does not decode into a domain value, or the writer's own bookkeeping failed.
    #[error(transparent)]
    Data(#[from] StoreError),
}

impl WriteError {
    fn code(&self) -> Option<ErrorCode> {
        match self {
            WriteError::Sqlite(rusqlite::Error::SqliteFailure(e, _)) => Some(e.code),
            _ => None,
        }
    }

    /// `true` when another connection holds the lock: waiting and retrying may help.
    fn is_busy(&self) -> bool {
        matches!(self.code(), Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked))
    }

    /// The port's error. A constraint or trigger that fires means the plan let through what the schema
    /// forbids, or the data is damaged: corruption, not unavailability.
    fn to_store(&self) -> StoreError {
        match self {
            WriteError::Data(e) => e.clone(),
            WriteError::Sqlite(e) if self.code() == Some(ErrorCode::ConstraintViolation) => {
                StoreError::Corrupt { message: e.to_string() }
            }
            WriteError::Sqlite(e) => StoreError::Unavailable { message: e.to_string() },
        }
    }
}

/// SQLite's `synchronous = FULL`: the WAL is synced on every commit.
const SYNCHRONOUS_FULL: i64 = 2;

/// How the writer opens its connection: the pool's database file and the pool connections' settings.
#[derive(Debug, Clone)]
pub(super) struct Settings {
    path: PathBuf,
    busy_timeout: Duration,
    synchronous: i64,
    wal_autocheckpoint: i64,
}

/// Reads [`Settings`] from a pooled connection, so the writer's connection behaves as the pool's do (same file,
/// busy timeout, durability and checkpoint interval).
///
/// # Errors
/// [`StoreError::Unavailable`] when the pool fails or the database is not a file (an in-memory database cannot
/// be shared with another connection).
pub(super) async fn settings(pool: &SqlitePool) -> Result<Settings, StoreError> {
    let unavailable = |e: sqlx::Error| StoreError::Unavailable { message: e.to_string() };
    let mut conn = pool.acquire().await.map_err(unavailable)?;
    let databases: Vec<(i64, String, String)> =
        sqlx::query_as("PRAGMA database_list").fetch_all(&mut *conn).await.map_err(unavailable)?;
    let path = databases.into_iter().find(|(_, name, _)| name == "main").map(|(_, _, file)| file).unwrap_or_default();
    if path.is_empty() {
        return Err(StoreError::Unavailable {
            message: "the SQLite ledger needs a database file; an in-memory database has no file its writer can open"
                .into(),
        });
    }
    let busy_timeout_ms: i64 =
        sqlx::query_scalar("PRAGMA busy_timeout").fetch_one(&mut *conn).await.map_err(unavailable)?;
    let synchronous: i64 = sqlx::query_scalar("PRAGMA synchronous").fetch_one(&mut *conn).await.map_err(unavailable)?;
    let wal_autocheckpoint: i64 =
        sqlx::query_scalar("PRAGMA wal_autocheckpoint").fetch_one(&mut *conn).await.map_err(unavailable)?;
    Ok(Settings {
        path: PathBuf::from(path),
        busy_timeout: Duration::from_millis(u64::try_from(busy_timeout_ms).unwrap_or(0)),
        synchronous,
        wal_autocheckpoint,
    })
}

/// Opens the writer's connection. Foreign keys are always on: the postings' reference to their transaction is
/// one of the schema's checks.
fn open(settings: &Settings) -> Result<Connection, WriteError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(&settings.path, flags)?;
    conn.busy_timeout(settings.busy_timeout)?;
    // Whatever the pool's setting, a money move is synced before it is acknowledged (see `sqlite::connect`).
    conn.pragma_update(None, "synchronous", SYNCHRONOUS_FULL.max(settings.synchronous))?;
    conn.pragma_update(None, "wal_autocheckpoint", settings.wal_autocheckpoint)?;
    conn.pragma_update(None, "foreign_keys", true)?;
    conn.pragma_update(None, "cache_size", -CACHE_SIZE_KIB)?;
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    conn.set_prepared_statement_cache_capacity(STATEMENTS_CACHED);
    Ok(conn)
}

/// Starts the writer thread on `inbox`; returns once its connection is open.
///
/// # Errors
/// [`StoreError::Unavailable`] when the thread cannot start or the connection cannot be opened.
pub(super) async fn start(
    settings: Settings,
    batch_max: usize,
    inbox: mpsc::Receiver<Request>,
) -> Result<(), StoreError> {
    let (ready, opened) = oneshot::channel();
    std::thread::Builder::new()
        .name("rei-ledger-writer".into())
        .spawn(move || match open(&settings) {
            Ok(conn) => {
                let _ = ready.send(Ok(()));
                Writer { conn, batch_max }.run(inbox);
            }
            Err(e) => {
                let _ = ready.send(Err(e.to_store()));
            }
        })
        .map_err(|e| StoreError::Unavailable { message: format!("cannot start the ledger writer: {e}") })?;
    opened.await.map_err(|_| super::writer_gone())?
}

/// The single writer: owns every write to the ledger tables of its database.
struct Writer {
    conn: Connection,
    batch_max: usize,
}

impl Writer {
    /// Serves requests until every sender is gone.
    fn run(mut self, mut inbox: mpsc::Receiver<Request>) {
        // A request that did not fit the last batch opens the next one.
        let mut carried: Option<Request> = None;
        loop {
            let first = match carried.take() {
                Some(r) => r,
                None => match inbox.blocking_recv() {
                    Some(r) => r,
                    None => return,
                },
            };
            let mut count = first.work.len();
            let mut batch = vec![first];
            // Take only what is already waiting: the batch grows while the previous one commits, never by waiting.
            while count < self.batch_max {
                match inbox.try_recv() {
                    Ok(r) if count.saturating_add(r.work.len()) > self.batch_max => {
                        carried = Some(r);
                        break;
                    }
                    Ok(r) => {
                        count = count.saturating_add(r.work.len());
                        batch.push(r);
                    }
                    Err(_) => break,
                }
            }
            self.serve(batch);
        }
    }

    /// Applies a batch of requests and answers each.
    fn serve(&mut self, batch: Vec<Request>) {
        let (work, replies): (Vec<Vec<Work>>, Vec<oneshot::Sender<Vec<Outcome>>>) =
            batch.into_iter().map(|r| (r.work, r.reply)).unzip();
        let counts: Vec<usize> = work.iter().map(Vec::len).collect();
        let work: Vec<Work> = work.into_iter().flatten().collect();
        let mut outcomes = self.commit_or_split(&work).into_iter();
        for (reply, count) in replies.into_iter().zip(counts) {
            // A caller that gave up waiting no longer needs its answer; its key makes a retry safe.
            let _ = reply.send(outcomes.by_ref().take(count).collect());
        }
    }

    /// Commits `work` in one transaction under the ledgers' one retry and split policy
    /// ([`crate::sql::retry`]): a busy or locked database is waited for and retried (and, past the retries,
    /// fails the whole batch, since another process holds it); any other failure of several items commits
    /// each item alone, so that one bad command cannot fail the others. The writer has a thread of its own, so
    /// waiting here holds up only the batch that waits.
    fn commit_or_split(&mut self, work: &[Work]) -> Vec<Outcome> {
        self.commit_probing(work, false)
    }

    /// [`Writer::commit_or_split`], looking for taken transaction ids when `probe_tx_ids` (a run that failed
    /// for another reason than a busy database runs again with it once before it splits: a clash is rare, and
    /// the unique index finds it first).
    fn commit_probing(&mut self, work: &[Work], probe_tx_ids: bool) -> Vec<Outcome> {
        let mut attempt = 0;
        loop {
            let e = match commit_once(&mut self.conn, work, probe_tx_ids) {
                Ok(outcomes) => return outcomes,
                Err(e) => e,
            };
            if !probe_tx_ids && !e.is_busy() {
                return self.commit_probing(work, true);
            }
            let failure = Failure { retryable: e.is_busy(), unreachable: e.is_busy() };
            match after_failure(failure, attempt, BUSY_RETRIES_MAX, work.len(), BUSY_BACKOFF_FIRST) {
                Next::Retry(wait) => {
                    attempt += 1;
                    std::thread::sleep(wait);
                }
                Next::Split => {
                    return work
                        .iter()
                        .flat_map(|item| self.commit_probing(std::slice::from_ref(item), true))
                        .collect();
                }
                Next::Fail => {
                    let e = e.to_store();
                    return work.iter().map(|_| Err(LedgerError::Store(e.clone()))).collect();
                }
            }
        }
    }
}

/// Loads, decides and writes `work` in one immediate transaction. On error nothing is written (the transaction
/// rolls back when dropped).
fn commit_once(conn: &mut Connection, work: &[Work], probe_tx_ids: bool) -> Result<Vec<Outcome>, WriteError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut ws = load(&tx, work, probe_tx_ids)?;
    let outcomes: Vec<Outcome> = work
        .iter()
        .map(|item| match item {
            Work::Apply(cmd) => ws.apply(cmd).map(Some),
            Work::Overdraft { user, limit } => ws.set_overdraft_limit(*user, *limit).map(|_| None),
        })
        .collect();
    write(&tx, ws.take_changes())?;
    tx.commit()?;
    Ok(outcomes)
}

/// Reads the rows `work` touches into a working set: key records of the batch's keys, holds by id, every hold
/// of a capped command's user and provider created within the last day (so the caps see real usage), the
/// balances of every user a command can touch, and payments.
fn load(conn: &Connection, work: &[Work], probe_tx_ids: bool) -> Result<WorkingSet, WriteError> {
    let mut ws = WorkingSet::new();
    let cmds: Vec<&LedgerCommand> = work
        .iter()
        .filter_map(|w| match w {
            Work::Apply(cmd) => Some(cmd),
            Work::Overdraft { .. } => None,
        })
        .collect();
    load_keys(conn, &cmds, &mut ws, probe_tx_ids)?;
    let hold_ids: BTreeSet<HoldId> = cmds.iter().filter_map(|c| c.op.hold()).collect();
    let mut by_id = conn.prepare_cached(&format!("SELECT {HOLD_COLUMNS} FROM ledger_holds WHERE id = ?1"))?;
    for id in hold_ids {
        if let Some(hold) = by_id.query_row([id_bytes(id.as_u128())], hold_from_row).optional()? {
            ws.load_hold(hold?);
        }
    }
    let mut users = batch_users(&ws, &cmds);
    users.extend(work.iter().filter_map(|w| match w {
        Work::Overdraft { user, .. } => Some(*user),
        Work::Apply(_) => None,
    }));
    load_caps(conn, &cmds, &mut ws)?;
    let mut balance = conn.prepare_cached(
        "SELECT user_id, available, held, overdraft_limit, active_holds FROM ledger_accounts WHERE user_id = ?1",
    )?;
    for user in users {
        if let Some(b) = balance.query_row([user.0], balance_from_row).optional()? {
            ws.load_balance(b);
        }
    }
    let payments: BTreeSet<&PaymentId> = cmds.iter().filter_map(|c| c.op.payment()).collect();
    let mut payment = conn.prepare_cached("SELECT id, user_id, amount, refunded FROM ledger_payments WHERE id = ?1")?;
    for id in payments {
        if let Some(p) = payment.query_row([id.as_str()], payment_from_row).optional()? {
            ws.load_payment(p?);
        }
    }
    Ok(ws)
}

/// Loads the key records of the batch's keys, with `probe_tx_ids` marks its transaction ids that are taken, and
/// loads the system balances (whole rows here, so the working set refuses a command that would overflow one).
fn load_keys(
    conn: &Connection,
    cmds: &[&LedgerCommand],
    ws: &mut WorkingSet,
    probe_tx_ids: bool,
) -> Result<(), WriteError> {
    let keys: BTreeSet<&str> = cmds.iter().map(|c| c.key.as_str()).collect();
    let mut by_key =
        conn.prepare_cached(&format!("SELECT {KEY_COLUMNS} FROM ledger_transactions WHERE idem_key = ?1"))?;
    for key in keys {
        if let Some((key, record)) = by_key.query_row([key], key_record_from_row).optional()? {
            ws.load_key(key?, record?);
        }
    }
    let mut tx_taken = conn.prepare_cached("SELECT 1 FROM ledger_transactions WHERE id = ?1")?;
    for cmd in cmds.iter().filter(|_| probe_tx_ids) {
        if tx_taken.query_row([id_bytes(cmd.tx.as_u128())], |_| Ok(())).optional()?.is_some() {
            ws.load_tx(cmd.tx);
        }
    }
    let mut system = conn.prepare_cached("SELECT account, balance FROM ledger_system_accounts")?;
    for row in system.query_map([], |row| Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?)))? {
        let (account, balance) = row?;
        let account =
            SystemAccount::parse(&account).ok_or_else(|| corrupt(format!("unknown system account {account:?}")))?;
        ws.load_system_balance(account, Money::from_kopecks(balance));
    }
    Ok(())
}

/// Every user a command of the batch touches: named by the command, or owning its hold (a hold placed by an
/// earlier command of the same batch included).
fn batch_users(ws: &WorkingSet, cmds: &[&LedgerCommand]) -> BTreeSet<UserId> {
    let placed: BTreeMap<HoldId, UserId> = cmds
        .iter()
        .filter_map(|c| match (c.op.hold(), c.op.user()) {
            (Some(h), Some(u)) if c.op.kind() == OpKind::Hold => Some((h, u)),
            _ => None,
        })
        .collect();
    cmds.iter()
        .filter_map(|cmd| {
            cmd.op.user().or_else(|| {
                let id = cmd.op.hold()?;
                ws.hold(id).map(|h| h.user).or_else(|| placed.get(&id).copied())
            })
        })
        .collect()
}

/// Loads what the batch's caps need ([`WorkingSet::cap_loads`]): the per-minute counters of the providers whose
/// budget a command checks or raises, the tranches of capped users and of budgeted holds the batch ends, and
/// the holds those tranches belong to. Every read is bounded by one day and goes through an index.
fn load_caps(conn: &Connection, cmds: &[&LedgerCommand], ws: &mut WorkingSet) -> Result<(), WriteError> {
    let loads = ws.cap_loads(cmds.iter().copied());
    if loads.is_empty() {
        return Ok(());
    }
    let floor = loads.floor.as_millis();
    let mut buckets = conn
        .prepare_cached("SELECT bucket_ms, amount FROM ledger_provider_spend WHERE provider = ?1 AND bucket_ms > ?2")?;
    for provider in &loads.providers {
        for row in buckets.query_map((provider.as_str(), floor), |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)))? {
            let (bucket, amount) = row?;
            ws.load_provider_bucket(provider.clone(), bucket, Money::from_kopecks(amount));
        }
    }
    let mut tranches: Vec<(HoldId, Tranche)> = Vec::new();
    let mut by_user = conn.prepare_cached(
        "SELECT hold_id, id, at_ms, amount FROM ledger_transactions \
         WHERE user_id = ?1 AND kind IN ('hold', 'raise') AND amount > 0 AND at_ms > ?2",
    )?;
    for user in &loads.users {
        for row in by_user.query_map((user.0, floor), tranche_from_row)? {
            tranches.push(row??);
        }
    }
    // An ending hold's tranches are found through its user's (one index serves both).
    let mut by_hold = conn.prepare_cached(
        "SELECT hold_id, id, at_ms, amount FROM ledger_transactions \
         WHERE user_id = ?1 AND hold_id = ?2 AND kind IN ('hold', 'raise') AND amount > 0 AND at_ms > ?3",
    )?;
    for hold in &loads.ending {
        let Some(user) = ws.hold(*hold).map(|h| h.user) else { continue };
        for row in by_hold.query_map((user.0, id_bytes(hold.as_u128()), floor), tranche_from_row)? {
            tranches.push(row??);
        }
    }
    // Not locked: the writer is the only one, and the batch's transaction is immediate.
    let mut hold_by_id = conn.prepare_cached(&format!("SELECT {HOLD_COLUMNS} FROM ledger_holds WHERE id = ?1"))?;
    for (hold, tranche) in tranches {
        if ws.hold(hold).is_none()
            && let Some(h) = hold_by_id.query_row([id_bytes(hold.as_u128())], hold_from_row).optional()?
        {
            ws.load_hold(h?);
        }
        ws.load_tranche(hold, tranche);
    }
    Ok(())
}

/// A tranche from `hold_id, id, at_ms, amount` of a hold or raise transaction.
fn tranche_from_row(row: &Row<'_>) -> rusqlite::Result<Decoded<(HoldId, Tranche)>> {
    let hold = hold_id_column(row, 0)?;
    let id: Vec<u8> = row.get(1)?;
    let at_ms: i64 = row.get(2)?;
    let amount: i64 = row.get(3)?;
    Ok((|| {
        let hold = hold?.ok_or_else(|| corrupt("a hold or raise transaction without a hold"))?;
        let tranche = Tranche {
            tx: TxId::from(id_from_bytes(&id)?),
            at: Timestamp::from_millis(at_ms),
            amount: Money::from_kopecks(amount),
        };
        Ok((hold, tranche))
    })())
}

/// Runs `INSERT INTO <head> VALUES (…), (…) <tail>` over `rows`, [`ROWS_PER_INSERT`] rows per statement, each
/// row `columns` values long. Each row count has its own prepared statement, kept in the connection's cache.
fn insert_rows(
    conn: &Connection,
    head: &str,
    tail: &str,
    columns: usize,
    rows: &[Vec<Value>],
) -> Result<(), WriteError> {
    for chunk in rows.chunks(ROWS_PER_INSERT) {
        let mut sql = String::with_capacity(head.len() + tail.len() + chunk.len() * (columns * 3 + 4) + 16);
        sql.push_str("INSERT INTO ");
        sql.push_str(head);
        sql.push_str(" VALUES ");
        for r in 0..chunk.len() {
            sql.push_str(if r == 0 { "(" } else { ", (" });
            for c in 0..columns {
                sql.push_str(if c == 0 { "?" } else { ", ?" });
            }
            sql.push(')');
        }
        sql.push_str(tail);
        if chunk.iter().any(|row| row.len() != columns) {
            return Err(corrupt("a row to insert has another number of columns").into());
        }
        conn.prepare_cached(&sql)?.execute(params_from_iter(chunk.iter().flatten()))?;
    }
    Ok(())
}

fn text(s: &str) -> Value {
    Value::Text(s.to_owned())
}

fn blob_id(id: u128) -> Value {
    Value::Blob(id_bytes(id))
}

fn opt<T>(v: Option<T>, f: impl FnOnce(T) -> Value) -> Value {
    v.map_or(Value::Null, f)
}

/// Writes a batch's changes: postings then transaction rows (so the balance trigger checks each transaction),
/// then balances, holds, payments and system deltas.
fn write(conn: &Connection, changes: Changes) -> Result<(), WriteError> {
    let Changes { transactions, balances, holds, payments, system_deltas, provider_spend } = changes;
    write_transactions(conn, &transactions)?;
    write_balances(conn, &balances)?;
    write_holds(conn, &holds)?;
    write_payments(conn, &payments)?;
    write_system(conn, &system_deltas, &provider_spend)
}

/// Writes the transactions and their postings, postings first.
fn write_transactions(conn: &Connection, transactions: &[NewTransaction]) -> Result<(), WriteError> {
    if transactions.is_empty() {
        return Ok(());
    }
    {
        let max: i64 = conn
            .prepare_cached("SELECT COALESCE(MAX(seq), 0) FROM ledger_transactions")?
            .query_row([], |row| row.get(0))?;
        let first_seq = max.checked_add(1).ok_or_else(|| corrupt("transaction seq overflow"))?;
        let mut postings = Vec::new();
        let mut rows = Vec::with_capacity(transactions.len());
        for (offset, t) in transactions.iter().enumerate() {
            let seq = first_seq.checked_add(sql_count(offset)).ok_or_else(|| corrupt("transaction seq overflow"))?;
            for (idx, p) in t.tx.postings.iter().enumerate() {
                let (account, user) = account_columns(p.account);
                postings.push(vec![
                    Value::Integer(seq),
                    Value::Integer(sql_count(idx)),
                    text(account),
                    opt(user, Value::Integer),
                    Value::Integer(p.amount.kopecks()),
                ]);
            }
            let r = &t.key.receipt;
            rows.push(vec![
                Value::Integer(seq),
                blob_id(t.tx.id.as_u128()),
                text(t.tx.key.as_str()),
                text(&t.key.fingerprint),
                text(t.tx.kind.as_str()),
                Value::Integer(t.tx.user.0),
                opt(t.tx.hold, |h| blob_id(h.as_u128())),
                opt(t.tx.payment.as_ref(), |p| text(p.as_str())),
                opt(t.tx.actor, |a| Value::Integer(a.0)),
                opt(t.tx.reason.as_ref(), |r| text(r.as_str())),
                Value::Integer(r.amount.kopecks()),
                Value::Integer(r.released.kopecks()),
                Value::Integer(t.tx.at.as_millis()),
            ]);
        }
        // Every posting of the batch goes in before any transaction row: the balance trigger on each row then
        // sums postings that are all present, and the postings-before-their-transaction trigger holds.
        insert_rows(conn, "ledger_postings (tx_seq, idx, account, user_id, amount)", "", 5, &postings)?;
        insert_rows(
            conn,
            "ledger_transactions (seq, id, idem_key, fingerprint, kind, user_id, hold_id, payment_id, actor, reason, \
             amount, released, at_ms)",
            "",
            13,
            &rows,
        )?;
    }
    Ok(())
}

/// Writes the balances as they now stand.
fn write_balances(conn: &Connection, balances: &[Balance]) -> Result<(), WriteError> {
    let rows: Vec<Vec<Value>> = balances
        .iter()
        .map(|b| {
            vec![
                Value::Integer(b.user.0),
                Value::Integer(b.available.kopecks()),
                Value::Integer(b.held.kopecks()),
                Value::Integer(b.overdraft_limit.kopecks()),
                Value::Integer(i64::from(b.active_holds)),
            ]
        })
        .collect();
    insert_rows(
        conn,
        "ledger_accounts (user_id, available, held, overdraft_limit, active_holds)",
        " ON CONFLICT (user_id) DO UPDATE SET available = excluded.available, held = excluded.held, \
         overdraft_limit = excluded.overdraft_limit, active_holds = excluded.active_holds",
        5,
        &rows,
    )
}

/// Writes the holds as they now stand.
fn write_holds(conn: &Connection, holds: &[(Hold, bool)]) -> Result<(), WriteError> {
    let rows: Vec<Vec<Value>> = holds
        .iter()
        .map(|(h, _)| {
            vec![
                blob_id(h.id.as_u128()),
                Value::Integer(h.user.0),
                opt(h.provider.as_ref(), |p| text(p.as_str())),
                Value::Integer(h.amount.kopecks()),
                Value::Integer(h.captured.kopecks()),
                Value::Integer(h.refunded.kopecks()),
                text(h.state.as_str()),
                Value::Integer(h.created_at.as_millis()),
                Value::Integer(h.expires_at.as_millis()),
                Value::Integer(i64::from(h.budgeted)),
            ]
        })
        .collect();
    // Who a hold belongs to, its provider and when it was placed never change.
    insert_rows(
        conn,
        &format!("ledger_holds ({HOLD_COLUMNS})"),
        " ON CONFLICT (id) DO UPDATE SET amount = excluded.amount, captured = excluded.captured, \
         refunded = excluded.refunded, state = excluded.state, expires_ms = excluded.expires_ms",
        10,
        &rows,
    )
}

/// Writes the payments as they now stand.
fn write_payments(conn: &Connection, payments: &[(PaymentRecord, bool)]) -> Result<(), WriteError> {
    let rows: Vec<Vec<Value>> = payments
        .iter()
        .map(|(p, _)| {
            vec![
                text(p.id.as_str()),
                Value::Integer(p.user.0),
                Value::Integer(p.amount.kopecks()),
                Value::Integer(p.refunded.kopecks()),
            ]
        })
        .collect();
    insert_rows(
        conn,
        "ledger_payments (id, user_id, amount, refunded)",
        " ON CONFLICT (id) DO UPDATE SET refunded = excluded.refunded",
        4,
        &rows,
    )
}

/// Adds the system deltas and the provider budget counters' changes.
fn write_system(
    conn: &Connection,
    system_deltas: &BTreeMap<SystemAccount, Money>,
    provider_spend: &BTreeMap<(ProviderId, i64), Money>,
) -> Result<(), WriteError> {
    let mut system =
        conn.prepare_cached("UPDATE ledger_system_accounts SET balance = balance + ?1 WHERE account = ?2")?;
    for (account, delta) in system_deltas.iter().map(|(a, d)| (*a, *d)) {
        if delta.is_zero() {
            continue;
        }
        if system.execute((delta.kopecks(), account.as_str()))? != 1 {
            return Err(corrupt(format!("system account {} is missing", account.as_str())).into());
        }
    }
    // A counter goes up by an upsert and down by an update: the CHECK on the amount applies to the row an
    // upsert proposes, so a decrease must never be proposed as a new row.
    let mut up = conn.prepare_cached(
        "INSERT INTO ledger_provider_spend (provider, bucket_ms, amount) VALUES (?1, ?2, ?3) \
         ON CONFLICT (provider, bucket_ms) DO UPDATE SET amount = amount + excluded.amount",
    )?;
    let mut down = conn.prepare_cached(
        "UPDATE ledger_provider_spend SET amount = amount + ?3 WHERE provider = ?1 AND bucket_ms = ?2",
    )?;
    for ((provider, bucket), delta) in provider_spend {
        let args = (provider.as_str(), *bucket, delta.kopecks());
        if delta.is_positive() {
            up.execute(args)?;
        } else if delta.is_negative() && down.execute(args)? != 1 {
            return Err(corrupt(format!("provider {} has no spend counter at {bucket}", provider.as_str())).into());
        }
    }
    Ok(())
}

/// A row decoded into a domain value: the outer error is SQLite's, the inner one a value that does not decode.
type Decoded<T> = Result<T, StoreError>;

fn hold_id_column(row: &Row<'_>, idx: usize) -> rusqlite::Result<Decoded<Option<HoldId>>> {
    let bytes: Option<Vec<u8>> = row.get(idx)?;
    Ok(bytes.map(|b| id_from_bytes(&b).map(HoldId::from)).transpose())
}

/// A key record from the [`KEY_COLUMNS`] columns.
fn key_record_from_row(row: &Row<'_>) -> rusqlite::Result<(Decoded<IdempotencyKey>, Decoded<KeyRecord>)> {
    let key: String = row.get(0)?;
    let fingerprint: String = row.get(1)?;
    let id: Vec<u8> = row.get(2)?;
    let kind: String = row.get(3)?;
    let user: i64 = row.get(4)?;
    let hold = hold_id_column(row, 5)?;
    let amount: i64 = row.get(6)?;
    let released: i64 = row.get(7)?;
    let at_ms: i64 = row.get(8)?;
    let key = IdempotencyKey::parse(&key).map_err(|e| corrupt(format!("stored key: {e}")));
    let record = (|| {
        Ok(KeyRecord {
            fingerprint,
            receipt: Receipt {
                tx: TxId::from(id_from_bytes(&id)?),
                kind: op_kind(&kind)?,
                user: UserId(user),
                hold: hold?,
                amount: Money::from_kopecks(amount),
                released: Money::from_kopecks(released),
                at: Timestamp::from_millis(at_ms),
            },
        })
    })();
    Ok((key, record))
}

/// A hold from the [`HOLD_COLUMNS`] columns.
fn hold_from_row(row: &Row<'_>) -> rusqlite::Result<Decoded<Hold>> {
    let id: Vec<u8> = row.get(0)?;
    let user: i64 = row.get(1)?;
    let provider: Option<String> = row.get(2)?;
    let amount: i64 = row.get(3)?;
    let captured: i64 = row.get(4)?;
    let refunded: i64 = row.get(5)?;
    let state: String = row.get(6)?;
    let created_ms: i64 = row.get(7)?;
    let expires_ms: i64 = row.get(8)?;
    let budgeted: i64 = row.get(9)?;
    Ok((|| {
        Ok(Hold {
            id: HoldId::from(id_from_bytes(&id)?),
            user: UserId(user),
            provider: provider
                .map(|p| ProviderId::parse(&p).map_err(|e| corrupt(format!("stored provider: {e}"))))
                .transpose()?,
            amount: Money::from_kopecks(amount),
            captured: Money::from_kopecks(captured),
            refunded: Money::from_kopecks(refunded),
            state: HoldState::from_str_opt(&state).ok_or_else(|| corrupt(format!("unknown hold state {state:?}")))?,
            created_at: Timestamp::from_millis(created_ms),
            expires_at: Timestamp::from_millis(expires_ms),
            budgeted: budgeted != 0,
        })
    })())
}

/// A balance from `user_id, available, held, overdraft_limit, active_holds`.
fn balance_from_row(row: &Row<'_>) -> rusqlite::Result<Balance> {
    Ok(Balance {
        user: UserId(row.get(0)?),
        available: Money::from_kopecks(row.get(1)?),
        held: Money::from_kopecks(row.get(2)?),
        overdraft_limit: Money::from_kopecks(row.get(3)?),
        active_holds: u32::try_from(row.get::<_, i64>(4)?).unwrap_or(u32::MAX),
    })
}

/// A payment from `id, user_id, amount, refunded`.
fn payment_from_row(row: &Row<'_>) -> rusqlite::Result<Decoded<PaymentRecord>> {
    let id: String = row.get(0)?;
    let user: i64 = row.get(1)?;
    let amount: i64 = row.get(2)?;
    let refunded: i64 = row.get(3)?;
    Ok(PaymentId::parse(&id).map_err(|e| corrupt(format!("stored payment id: {e}"))).map(|id| PaymentRecord {
        id,
        user: UserId(user),
        amount: Money::from_kopecks(amount),
        refunded: Money::from_kopecks(refunded),
    }))
}
