//! [`PgLedger`]: the ledger in PostgreSQL, group-committed.
//!
//! Concurrency: every batch runs in one READ COMMITTED transaction that locks the holds it names (sorted by
//! id), then the users it touches (sorted), then — for capped holds — the providers (sorted), and updates the
//! system accounts last (sorted). Every transaction takes its locks in that one order, so no two can wait on
//! each other in a cycle; the rows are read after they are locked, so there is no read-then-write race. New
//! holds and payments are plain INSERTs: a concurrent twin fails on the unique index and the batch is retried,
//! then sees the row. Serialization failures, deadlocks, unique violations and lost connections are retried a
//! bounded number of times; retrying is safe because every command carries its idempotency key.
//!
//! Group commit: [`LedgerStore::apply`] hands the command to one of `writers` tasks, each of which takes every
//! command already waiting (up to `batch_max`) and commits them together. Under load, batches grow by
//! themselves; alone, a command commits at once.
//!
//! The database checks each batch's postings once per statement (migration 0004): they must sum to zero per
//! transaction and belong to a transaction row written by the same database transaction. A row written inside a
//! savepoint carries the savepoint's transaction id and would be refused, so batches run at top level.
//!
//! Hot rows: every capture credits `revenue`, so one balance row per system account would serialize every
//! writer of every process on it. Each system account is kept in [`SYSTEM_SHARDS`] rows instead; a writer adds
//! its deltas to its own shard and a balance is the sum of the shards.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rei_core::caps::Tranche;
use rei_core::guards::Reason;
use rei_core::ids::{HoldId, IdempotencyKey, PaymentId, ProviderId, TxId, UserId};
use rei_core::ledger::{
    Account, Applied, BATCH_LEN_MAX, Balance, Changes, HISTORY_PAGE_MAX, HistoryEntry, Hold, HoldState, KeyRecord,
    LedgerCommand, LedgerError, LedgerStore, NewTransaction, OpKind, PaymentRecord, Posting, Receipt, StoreError,
    SystemAccount, Transaction, VerifyReport, VerifyTally, WorkingSet,
};
use rei_core::money::Money;
use rei_core::time::Timestamp;
use sqlx::postgres::{PgPool, PgRow};
use sqlx::{PgConnection, Row};
use tokio::sync::{Mutex, mpsc, oneshot};

use crate::sql::retry::{Failure, Next, after_failure};
use crate::sql::{id_bytes, id_from_bytes, store_error};

/// The first wait before a batch runs again.
const RETRY_WAIT_FIRST: Duration = Duration::from_millis(2);

/// How the store batches and retries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PgLedgerConfig {
    /// Most commands in one database transaction.
    pub batch_max: usize,
    /// Most commands waiting for a writer; `apply` waits for room beyond that.
    pub queue_max: usize,
    /// Writer tasks, each committing one batch at a time.
    pub writers: usize,
    /// Most times a batch is retried after a serialization failure, deadlock, unique violation or lost
    /// connection.
    pub retries_max: u32,
}

impl Default for PgLedgerConfig {
    fn default() -> Self {
        PgLedgerConfig { batch_max: 256, queue_max: 16_384, writers: 2, retries_max: 8 }
    }
}

type Reply = oneshot::Sender<Result<Applied, LedgerError>>;

/// Rows per system account (the migration seeds shards `0..SYSTEM_SHARDS`).
pub const SYSTEM_SHARDS: u16 = 16;

/// The most a system-account shard may hold either way: with every shard within it, the sum of an account's
/// shards fits in [`Money`], so a balance and `verify` can always add them. A command that would take its
/// writer's shard past it is refused with [`LedgerError::Overflow`].
pub const SHARD_BALANCE_MAX: i64 = i64::MAX / SYSTEM_SHARDS as i64;

/// The ledger in PostgreSQL.
#[derive(Debug, Clone)]
pub struct PgLedger {
    pool: PgPool,
    config: PgLedgerConfig,
    queue: mpsc::Sender<(LedgerCommand, Reply)>,
}

impl PgLedger {
    /// A store over a migrated pool, with its writer tasks spawned on the current tokio runtime. The writers
    /// stop when the last clone of the store is dropped.
    ///
    /// # Panics
    /// Outside a tokio runtime.
    #[must_use]
    pub fn new(pool: PgPool, config: PgLedgerConfig) -> PgLedger {
        let config = PgLedgerConfig {
            batch_max: config.batch_max.clamp(1, 10_000),
            queue_max: config.queue_max.clamp(1, 1_000_000),
            writers: config.writers.clamp(1, 64),
            retries_max: config.retries_max.min(100),
        };
        let (tx, rx) = mpsc::channel(config.queue_max);
        let rx = Arc::new(Mutex::new(rx));
        // Writers of different processes should land on different shards: start from a random one.
        let first = std::hash::BuildHasher::hash_one(&std::collections::hash_map::RandomState::new(), 0u8);
        for i in 0..config.writers {
            let offset = u64::try_from(i).unwrap_or(0);
            let shard = i16::try_from(first.wrapping_add(offset) % u64::from(SYSTEM_SHARDS)).unwrap_or(0);
            tokio::spawn(writer(pool.clone(), config, rx.clone(), shard));
        }
        PgLedger { pool, config, queue: tx }
    }

    /// A store that only reads, over `pool` (a streaming replica's): balances, holds, history, transactions and
    /// verify are read from it; every write is refused with [`StoreError`] (no writer task runs).
    #[must_use]
    pub fn reader(pool: PgPool) -> PgLedger {
        // The receiver is dropped at once: a write finds the queue closed.
        let (tx, _) = mpsc::channel(1);
        PgLedger { pool, config: PgLedgerConfig::default(), queue: tx }
    }

    /// The pool.
    #[must_use]
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

async fn writer(
    pool: PgPool,
    config: PgLedgerConfig,
    rx: Arc<Mutex<mpsc::Receiver<(LedgerCommand, Reply)>>>,
    shard: i16,
) {
    loop {
        let mut batch = Vec::new();
        {
            let mut rx = rx.lock().await;
            let Some(first) = rx.recv().await else { return };
            batch.push(first);
            while batch.len() < config.batch_max {
                match rx.try_recv() {
                    Ok(next) => batch.push(next),
                    Err(_) => break,
                }
            }
        }
        let (cmds, replies): (Vec<LedgerCommand>, Vec<Reply>) = batch.into_iter().unzip();
        let results = match apply_with_retries(&pool, &cmds, config.retries_max, shard).await {
            Ok(results) => results,
            Err(e) => cmds.iter().map(|_| Err(LedgerError::Store(e.clone()))).collect(),
        };
        for (reply, result) in replies.into_iter().zip(results) {
            // A caller that gave up waiting dropped its receiver; its command's outcome stays in the ledger.
            let _ = reply.send(result);
        }
    }
}

/// Why a batch's database transaction failed.
#[derive(Debug)]
enum BatchError {
    /// The database or the connection failed.
    Sql(sqlx::Error),
    /// A system-account shard would pass [`SHARD_BALANCE_MAX`]; the statement wrote nothing.
    ShardBound,
}

impl From<sqlx::Error> for BatchError {
    fn from(e: sqlx::Error) -> Self {
        BatchError::Sql(e)
    }
}

impl BatchError {
    /// `true` after which the whole batch may simply run again: a serialization failure, a deadlock, a unique
    /// violation (a concurrent twin inserted the row first; the retry sees it), a lock timeout, a lost
    /// connection.
    fn retryable(&self) -> bool {
        match self {
            BatchError::Sql(sqlx::Error::Database(db)) => {
                matches!(db.code().as_deref(), Some("40001" | "40P01" | "23505" | "55P03"))
            }
            BatchError::Sql(e) => unreachable_server(e),
            BatchError::ShardBound => false,
        }
    }

    fn into_store_error(self) -> StoreError {
        match self {
            BatchError::Sql(e) => store_error(&e),
            BatchError::ShardBound => StoreError::Corrupt { message: "system account shard bound".into() },
        }
    }

    fn failure(&self) -> Failure {
        let unreachable = matches!(self, BatchError::Sql(e) if unreachable_server(e));
        Failure { retryable: self.retryable(), unreachable }
    }
}

/// The server could not be reached: splitting the batch cannot help.
fn unreachable_server(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Protocol(_))
}

/// Runs a batch under the ledgers' one retry and split policy ([`crate::sql::retry`]).
async fn apply_with_retries(
    pool: &PgPool,
    cmds: &[LedgerCommand],
    retries_max: u32,
    shard: i16,
) -> Result<Vec<Result<Applied, LedgerError>>, StoreError> {
    let mut attempt = 0;
    loop {
        // Taken transaction ids are looked for only when a run failed: a clash is rare, and the unique index
        // finds it first.
        let e = match run_batch(pool, cmds, shard, attempt > 0).await {
            Ok(results) => return Ok(results),
            Err(e) => e,
        };
        match after_failure(e.failure(), attempt, retries_max, cmds.len(), RETRY_WAIT_FIRST) {
            Next::Retry(wait) => {
                attempt += 1;
                tokio::time::sleep(wait).await;
            }
            Next::Split => return Ok(apply_each(pool, cmds, retries_max, shard).await),
            Next::Fail => {
                return match e {
                    BatchError::ShardBound => Ok(vec![Err(LedgerError::Overflow)]),
                    other => Err(other.into_store_error()),
                };
            }
        }
    }
}

/// Applies each command of a batch in a transaction of its own.
async fn apply_each(
    pool: &PgPool,
    cmds: &[LedgerCommand],
    retries_max: u32,
    shard: i16,
) -> Vec<Result<Applied, LedgerError>> {
    let mut results = Vec::with_capacity(cmds.len());
    for cmd in cmds {
        let one = Box::pin(apply_with_retries(pool, std::slice::from_ref(cmd), retries_max, shard)).await;
        results.push(match one {
            Ok(mut r) => r.pop().unwrap_or_else(|| Err(LedgerError::Store(lost()))),
            Err(e) => Err(LedgerError::Store(e)),
        });
    }
    results
}

fn lost() -> StoreError {
    StoreError::Corrupt { message: "a batch returned fewer results than commands".into() }
}

fn corrupt(what: impl std::fmt::Display) -> sqlx::Error {
    sqlx::Error::Decode(format!("ledger row: {what}").into())
}

fn kind_of(account: Account) -> (&'static str, Option<i64>) {
    match account {
        Account::Available(u) => ("available", Some(u.0)),
        Account::Held(u) => ("held", Some(u.0)),
        Account::System(a) => (a.as_str(), None),
    }
}

fn account_of(kind: &str, user: Option<i64>) -> Result<Account, sqlx::Error> {
    match (kind, user) {
        ("available", Some(u)) => Ok(Account::Available(UserId(u))),
        ("held", Some(u)) => Ok(Account::Held(UserId(u))),
        (other, None) => SystemAccount::parse(other).map(Account::System).ok_or_else(|| corrupt(other)),
        (other, Some(_)) => Err(corrupt(other)),
    }
}

fn hold_from_row(row: &PgRow) -> Result<Hold, sqlx::Error> {
    let state: String = row.try_get("state")?;
    let provider: Option<String> = row.try_get("provider")?;
    Ok(Hold {
        id: HoldId::from(id_from_bytes(row.try_get::<&[u8], _>("id")?).map_err(corrupt)?),
        user: UserId(row.try_get("user_id")?),
        provider: provider.map(|p| ProviderId::parse(&p).map_err(corrupt)).transpose()?,
        amount: Money::from_kopecks(row.try_get("amount")?),
        captured: Money::from_kopecks(row.try_get("captured")?),
        refunded: Money::from_kopecks(row.try_get("refunded")?),
        state: HoldState::from_str_opt(&state).ok_or_else(|| corrupt(&state))?,
        created_at: Timestamp::from_millis(row.try_get("created_ms")?),
        expires_at: Timestamp::from_millis(row.try_get("expires_ms")?),
        budgeted: row.try_get("budgeted")?,
    })
}

const HOLD_COLUMNS: &str = "id, user_id, provider, amount, captured, refunded, state, created_ms, expires_ms, budgeted";

fn balance_from_row(row: &PgRow) -> Result<Balance, sqlx::Error> {
    Ok(Balance {
        user: UserId(row.try_get("user_id")?),
        available: Money::from_kopecks(row.try_get("available")?),
        held: Money::from_kopecks(row.try_get("held")?),
        overdraft_limit: Money::from_kopecks(row.try_get("overdraft_limit")?),
        active_holds: u32::try_from(row.try_get::<i64, _>("active_holds")?).map_err(corrupt)?,
    })
}

fn receipt_from_row(row: &PgRow) -> Result<Receipt, sqlx::Error> {
    let kind: String = row.try_get("kind")?;
    let hold: Option<Vec<u8>> = row.try_get("hold_id")?;
    Ok(Receipt {
        tx: TxId::from(id_from_bytes(row.try_get::<&[u8], _>("id")?).map_err(corrupt)?),
        kind: OpKind::parse(&kind).ok_or_else(|| corrupt(&kind))?,
        user: UserId(row.try_get("user_id")?),
        hold: hold.map(|h| id_from_bytes(&h).map(HoldId::from)).transpose().map_err(corrupt)?,
        amount: Money::from_kopecks(row.try_get("amount")?),
        released: Money::from_kopecks(row.try_get("released")?),
        at: Timestamp::from_millis(row.try_get("at_ms")?),
    })
}

/// Runs one batch in one transaction: lock, load, decide in a working set, write, commit.
async fn run_batch(
    pool: &PgPool,
    cmds: &[LedgerCommand],
    shard: i16,
    probe_tx_ids: bool,
) -> Result<Vec<Result<Applied, LedgerError>>, BatchError> {
    let mut tx = pool.begin().await?;
    let mut ws = WorkingSet::new();
    lock_holds(&mut tx, cmds, &mut ws).await?;
    let mut users: BTreeSet<i64> = cmds.iter().filter_map(|c| c.op.user()).map(|u| u.0).collect();
    users.extend(ws.holds().map(|h| h.user.0));
    lock_users(&mut tx, &users, &mut ws).await?;
    lock_payments(&mut tx, cmds, &mut ws).await?;
    // Keys are read only now, after the rows are locked: a concurrent twin of a command (same key, so same
    // user) held the user's row until it committed, so its key row is visible to this statement, and the
    // twin replays instead of being refused against balances the first one already changed.
    load_keys(&mut tx, cmds, &mut ws, probe_tx_ids).await?;
    load_cap_windows(&mut tx, cmds, &mut ws).await?;

    let results: Vec<Result<Applied, LedgerError>> = cmds.iter().map(|cmd| ws.apply(cmd)).collect();
    let changes = ws.take_changes();
    if !changes.is_empty() {
        write_changes(&mut tx, &changes, shard).await?;
    }
    tx.commit().await?;
    Ok(results)
}

/// Locks the holds the batch names, in id order, and loads them.
async fn lock_holds(tx: &mut PgConnection, cmds: &[LedgerCommand], ws: &mut WorkingSet) -> Result<(), sqlx::Error> {
    let hold_ids: BTreeSet<u128> = cmds.iter().filter_map(|c| c.op.hold()).map(HoldId::as_u128).collect();
    if hold_ids.is_empty() {
        return Ok(());
    }
    let ids: Vec<Vec<u8>> = hold_ids.iter().map(|id| id_bytes(*id)).collect();
    let sql = format!("SELECT {HOLD_COLUMNS} FROM ledger_holds WHERE id = ANY($1) ORDER BY id FOR UPDATE");
    for row in sqlx::query(&sql).bind(&ids).fetch_all(&mut *tx).await? {
        ws.load_hold(hold_from_row(&row)?);
    }
    Ok(())
}

/// Locks the payments the batch names, in id order, and loads them.
async fn lock_payments(tx: &mut PgConnection, cmds: &[LedgerCommand], ws: &mut WorkingSet) -> Result<(), sqlx::Error> {
    let payments: Vec<&str> = cmds.iter().filter_map(|c| c.op.payment()).map(PaymentId::as_str).collect();
    if payments.is_empty() {
        return Ok(());
    }
    let rows = sqlx::query(
        "SELECT id, user_id, amount, refunded FROM ledger_payments WHERE id = ANY($1) ORDER BY id FOR UPDATE",
    )
    .bind(&payments)
    .fetch_all(&mut *tx)
    .await?;
    for row in rows {
        let id: String = row.try_get("id")?;
        ws.load_payment(PaymentRecord {
            id: PaymentId::parse(&id).map_err(corrupt)?,
            user: UserId(row.try_get("user_id")?),
            amount: Money::from_kopecks(row.try_get("amount")?),
            refunded: Money::from_kopecks(row.try_get("refunded")?),
        });
    }
    Ok(())
}

/// Loads the key records of the batch's keys and, with `probe_tx_ids`, marks the batch's transaction ids that
/// are taken.
async fn load_keys(
    tx: &mut PgConnection,
    cmds: &[LedgerCommand],
    ws: &mut WorkingSet,
    probe_tx_ids: bool,
) -> Result<(), sqlx::Error> {
    let keys: Vec<&str> = cmds.iter().map(|c| c.key.as_str()).collect();
    let ids: Vec<Vec<u8>> =
        if probe_tx_ids { cmds.iter().map(|c| id_bytes(c.tx.as_u128())).collect() } else { Vec::new() };
    let rows = sqlx::query(
        "SELECT idem_key, fingerprint, id, kind, user_id, hold_id, amount, released, at_ms \
         FROM ledger_transactions WHERE idem_key = ANY($1) \
         UNION SELECT idem_key, fingerprint, id, kind, user_id, hold_id, amount, released, at_ms \
         FROM ledger_transactions WHERE id = ANY($2)",
    )
    .bind(&keys)
    .bind(&ids)
    .fetch_all(&mut *tx)
    .await?;
    for row in &rows {
        let key: String = row.try_get("idem_key")?;
        let key = IdempotencyKey::parse(&key).map_err(corrupt)?;
        let receipt = receipt_from_row(row)?;
        ws.load_tx(receipt.tx);
        ws.load_key(key, KeyRecord { fingerprint: row.try_get("fingerprint")?, receipt });
    }
    Ok(())
}

/// Locks the users' rows in id order, creating the missing ones first, and loads them.
async fn lock_users(tx: &mut PgConnection, users: &BTreeSet<i64>, ws: &mut WorkingSet) -> Result<(), sqlx::Error> {
    if users.is_empty() {
        return Ok(());
    }
    let ids: Vec<i64> = users.iter().copied().collect();
    const LOCK: &str = "SELECT user_id, available, held, overdraft_limit, active_holds FROM ledger_accounts \
                        WHERE user_id = ANY($1) ORDER BY user_id FOR UPDATE";
    let mut rows = sqlx::query(LOCK).bind(&ids).fetch_all(&mut *tx).await?;
    if rows.len() < ids.len() {
        sqlx::query("INSERT INTO ledger_accounts (user_id) SELECT * FROM UNNEST($1::BIGINT[]) ON CONFLICT DO NOTHING")
            .bind(&ids)
            .execute(&mut *tx)
            .await?;
        rows = sqlx::query(LOCK).bind(&ids).fetch_all(&mut *tx).await?;
    }
    for row in rows {
        ws.load_balance(balance_from_row(&row)?);
    }
    Ok(())
}

/// Loads what the batch's caps need ([`WorkingSet::cap_loads`]): locks the providers whose budget a command
/// checks or raises (sorted) and reads their per-minute counters, then the tranches of capped users and of
/// budgeted holds the batch ends, and the holds those tranches belong to. Every read is bounded by one day and
/// goes through an index.
async fn load_cap_windows(
    tx: &mut PgConnection,
    cmds: &[LedgerCommand],
    ws: &mut WorkingSet,
) -> Result<(), sqlx::Error> {
    let loads = ws.cap_loads(cmds);
    if loads.is_empty() {
        return Ok(());
    }
    let floor = loads.floor.as_millis();
    let providers: Vec<&str> = loads.providers.iter().map(ProviderId::as_str).collect();
    if !providers.is_empty() {
        sqlx::query(
            "INSERT INTO ledger_provider_locks (provider) SELECT * FROM UNNEST($1::TEXT[]) ON CONFLICT DO NOTHING",
        )
        .bind(&providers)
        .execute(&mut *tx)
        .await?;
        sqlx::query("SELECT provider FROM ledger_provider_locks WHERE provider = ANY($1) ORDER BY provider FOR UPDATE")
            .bind(&providers)
            .fetch_all(&mut *tx)
            .await?;
        let rows = sqlx::query(
            "SELECT provider, bucket_ms, amount FROM ledger_provider_spend WHERE provider = ANY($1) AND bucket_ms > $2",
        )
        .bind(&providers)
        .bind(floor)
        .fetch_all(&mut *tx)
        .await?;
        for row in rows {
            let provider: String = row.try_get("provider")?;
            let provider = ProviderId::parse(&provider).map_err(corrupt)?;
            ws.load_provider_bucket(provider, row.try_get("bucket_ms")?, Money::from_kopecks(row.try_get("amount")?));
        }
    }
    let users: Vec<i64> = loads.users.iter().map(|u| u.0).collect();
    // An ending hold's tranches are found through its user's (one index serves both).
    let ending: Vec<Vec<u8>> = loads.ending.iter().map(|h| id_bytes(h.as_u128())).collect();
    let owners: Vec<i64> = loads.ending.iter().filter_map(|h| ws.hold(*h)).map(|h| h.user.0).collect();
    let rows = sqlx::query(
        "SELECT hold_id, id, at_ms, amount FROM ledger_transactions \
         WHERE user_id = ANY($1) AND kind IN ('hold', 'raise') AND amount > 0 AND at_ms > $4 \
         UNION SELECT hold_id, id, at_ms, amount FROM ledger_transactions \
         WHERE user_id = ANY($2) AND hold_id = ANY($3) AND kind IN ('hold', 'raise') AND amount > 0 AND at_ms > $4",
    )
    .bind(&users)
    .bind(&owners)
    .bind(&ending)
    .bind(floor)
    .fetch_all(&mut *tx)
    .await?;
    let mut missing = BTreeSet::new();
    for row in rows {
        let hold = HoldId::from(id_from_bytes(row.try_get::<&[u8], _>("hold_id")?).map_err(corrupt)?);
        let tranche = Tranche {
            tx: TxId::from(id_from_bytes(row.try_get::<&[u8], _>("id")?).map_err(corrupt)?),
            at: Timestamp::from_millis(row.try_get("at_ms")?),
            amount: Money::from_kopecks(row.try_get("amount")?),
        };
        ws.load_tranche(hold, tranche);
        if ws.hold(hold).is_none() {
            missing.insert(hold.as_u128());
        }
    }
    if !missing.is_empty() {
        // Not locked: every change of these holds also locks their user, whose row this batch holds.
        let ids: Vec<Vec<u8>> = missing.iter().map(|id| id_bytes(*id)).collect();
        let sql = format!("SELECT {HOLD_COLUMNS} FROM ledger_holds WHERE id = ANY($1)");
        for row in sqlx::query(&sql).bind(&ids).fetch_all(&mut *tx).await? {
            ws.load_hold(hold_from_row(&row)?);
        }
    }
    Ok(())
}

/// Writes a batch's changes in one statement (one round trip): data-modifying CTEs insert the transactions
/// and, joined on their ids, the postings (all of a transaction's postings in one INSERT, so the balanced-check
/// trigger sees each transaction whole), upsert the locked balance rows, insert new holds and payments (a
/// concurrent twin fails on the primary key and the batch is retried), upsert changed ones through their
/// primary keys, and add the system deltas.
const WRITE_CHANGES: &str = "\
WITH t AS (
    INSERT INTO ledger_transactions
        (id, idem_key, fingerprint, kind, user_id, hold_id, payment_id, actor, reason, amount, released, at_ms)
    SELECT * FROM UNNEST($1::BYTEA[], $2::TEXT[], $3::TEXT[], $4::TEXT[], $5::BIGINT[], $6::BYTEA[], $7::TEXT[],
                         $8::BIGINT[], $9::TEXT[], $10::BIGINT[], $11::BIGINT[], $12::BIGINT[])
    RETURNING seq, id
), p AS (
    INSERT INTO ledger_postings (tx_seq, idx, account, user_id, amount)
    SELECT t.seq, v.idx, v.account, v.user_id, v.amount
    FROM UNNEST($13::BYTEA[], $14::SMALLINT[], $15::TEXT[], $16::BIGINT[], $17::BIGINT[])
         AS v(tx_id, idx, account, user_id, amount)
    JOIN t ON t.id = v.tx_id
    RETURNING 1
), a AS (
    INSERT INTO ledger_accounts (user_id, available, held, overdraft_limit, active_holds)
    SELECT * FROM UNNEST($18::BIGINT[], $19::BIGINT[], $20::BIGINT[], $21::BIGINT[], $45::BIGINT[])
    ON CONFLICT (user_id) DO UPDATE SET available = EXCLUDED.available, held = EXCLUDED.held,
        overdraft_limit = EXCLUDED.overdraft_limit, active_holds = EXCLUDED.active_holds
    RETURNING 1
), hn AS (
    INSERT INTO ledger_holds
        (id, user_id, provider, amount, captured, refunded, state, created_ms, expires_ms, budgeted)
    SELECT v.id, v.user_id, v.provider, v.amount, v.captured, v.refunded, v.state, v.created_ms, v.expires_ms,
           v.budgeted
    FROM UNNEST($22::BYTEA[], $23::BIGINT[], $24::TEXT[], $25::BIGINT[], $26::BIGINT[], $27::BIGINT[], $28::TEXT[],
                $29::BIGINT[], $30::BIGINT[], $31::BOOLEAN[], $32::BOOLEAN[])
         AS v(id, user_id, provider, amount, captured, refunded, state, created_ms, expires_ms, is_new, budgeted)
    WHERE v.is_new
    RETURNING 1
), hu AS (
    INSERT INTO ledger_holds (id, user_id, provider, amount, captured, refunded, state, created_ms, expires_ms)
    SELECT v.id, v.user_id, v.provider, v.amount, v.captured, v.refunded, v.state, v.created_ms, v.expires_ms
    FROM UNNEST($22::BYTEA[], $23::BIGINT[], $24::TEXT[], $25::BIGINT[], $26::BIGINT[], $27::BIGINT[], $28::TEXT[],
                $29::BIGINT[], $30::BIGINT[], $31::BOOLEAN[])
         AS v(id, user_id, provider, amount, captured, refunded, state, created_ms, expires_ms, is_new)
    WHERE NOT v.is_new
    ON CONFLICT (id) DO UPDATE SET amount = EXCLUDED.amount, captured = EXCLUDED.captured,
        refunded = EXCLUDED.refunded, state = EXCLUDED.state, expires_ms = EXCLUDED.expires_ms
    RETURNING 1
), pn AS (
    INSERT INTO ledger_payments (id, user_id, amount, refunded)
    SELECT v.id, v.user_id, v.amount, v.refunded
    FROM UNNEST($33::TEXT[], $34::BIGINT[], $35::BIGINT[], $36::BIGINT[], $37::BOOLEAN[])
         AS v(id, user_id, amount, refunded, is_new)
    WHERE v.is_new
    RETURNING 1
), pu AS (
    INSERT INTO ledger_payments (id, user_id, amount, refunded)
    SELECT v.id, v.user_id, v.amount, v.refunded
    FROM UNNEST($33::TEXT[], $34::BIGINT[], $35::BIGINT[], $36::BIGINT[], $37::BOOLEAN[])
         AS v(id, user_id, amount, refunded, is_new)
    WHERE NOT v.is_new
    ON CONFLICT (id) DO UPDATE SET refunded = EXCLUDED.refunded
    RETURNING 1
), s AS (
    UPDATE ledger_system_accounts sa SET balance = sa.balance + v.delta
    FROM UNNEST($38::TEXT[], $39::BIGINT[]) AS v(account, delta)
    WHERE sa.account = v.account AND sa.shard = $40
      AND sa.balance::NUMERIC + v.delta BETWEEN -$41::BIGINT AND $41::BIGINT
    RETURNING 1
), psi AS (
    INSERT INTO ledger_provider_spend (provider, bucket_ms, amount)
    SELECT * FROM UNNEST($42::TEXT[], $43::BIGINT[], $44::BIGINT[]) AS v(provider, bucket_ms, delta)
    WHERE v.delta > 0
    ON CONFLICT (provider, bucket_ms) DO UPDATE SET amount = ledger_provider_spend.amount + EXCLUDED.amount
    RETURNING 1
), psu AS (
    UPDATE ledger_provider_spend ps SET amount = ps.amount + v.delta
    FROM UNNEST($42::TEXT[], $43::BIGINT[], $44::BIGINT[]) AS v(provider, bucket_ms, delta)
    WHERE v.delta < 0 AND ps.provider = v.provider AND ps.bucket_ms = v.bucket_ms
    RETURNING 1
)
SELECT (SELECT COUNT(*) FROM t), (SELECT COUNT(*) FROM p), (SELECT COUNT(*) FROM a),
       (SELECT COUNT(*) FROM hn) + (SELECT COUNT(*) FROM hu), (SELECT COUNT(*) FROM pn) + (SELECT COUNT(*) FROM pu),
       (SELECT COUNT(*) FROM s), (SELECT COUNT(*) FROM psi) + (SELECT COUNT(*) FROM psu)";

/// The counts [`WRITE_CHANGES`] returns: transactions, postings, balances, holds, payments, system shards and
/// provider counters written.
type WriteCounts = (i64, i64, i64, i64, i64, i64, i64);
type WriteQuery<'q> = sqlx::query::QueryAs<'q, sqlx::Postgres, WriteCounts, sqlx::postgres::PgArguments>;

async fn write_changes(tx: &mut PgConnection, changes: &Changes, shard: i16) -> Result<(), BatchError> {
    let (q, postings) = bind_transactions(sqlx::query_as(WRITE_CHANGES), &changes.transactions)?;
    let q = bind_balances(q, &changes.balances);
    let q = bind_holds(q, &changes.holds);
    let q = bind_payments(q, &changes.payments);
    let (s_accounts, s_deltas): (Vec<&str>, Vec<i64>) =
        changes.system_deltas.iter().filter(|(_, d)| !d.is_zero()).map(|(a, d)| (a.as_str(), d.kopecks())).unzip();
    let systems = s_accounts.len();
    let q = q.bind(s_accounts).bind(s_deltas).bind(shard).bind(SHARD_BALANCE_MAX);
    let (q, counters) = bind_provider_spend(q, changes);
    let q = q.bind(changes.balances.iter().map(|b| i64::from(b.active_holds)).collect::<Vec<_>>());
    let counts: WriteCounts = q.fetch_one(&mut *tx).await?;
    let expected = (
        count(changes.transactions.len()),
        count(postings),
        count(changes.balances.len()),
        count(changes.holds.len()),
        count(changes.payments.len()),
        count(systems),
        count(counters),
    );
    if counts.5 != expected.5 && counts.0 == expected.0 {
        return Err(BatchError::ShardBound);
    }
    if counts != expected {
        return Err(corrupt(format!("wrote {counts:?} rows where {expected:?} were due")).into());
    }
    Ok(())
}

/// Binds `$1`–`$17`: the transactions and their postings. Returns the number of postings.
fn bind_transactions<'q>(q: WriteQuery<'q>, txs: &'q [NewTransaction]) -> Result<(WriteQuery<'q>, usize), sqlx::Error> {
    let tx_ids: Vec<Vec<u8>> = txs.iter().map(|t| id_bytes(t.tx.id.as_u128())).collect();
    let (mut p_tx, mut p_idx, mut p_acc, mut p_user, mut p_amount) = (vec![], vec![], vec![], vec![], vec![]);
    for (t, id) in txs.iter().zip(&tx_ids) {
        for (i, posting) in t.tx.postings.iter().enumerate() {
            let (acc, user) = kind_of(posting.account);
            p_tx.push(id.clone());
            p_idx.push(i16::try_from(i).map_err(corrupt)?);
            p_acc.push(acc);
            p_user.push(user);
            p_amount.push(posting.amount.kopecks());
        }
    }
    let postings = p_amount.len();
    let q = q
        .bind(tx_ids)
        .bind(txs.iter().map(|t| t.tx.key.as_str()).collect::<Vec<_>>())
        .bind(txs.iter().map(|t| t.key.fingerprint.as_str()).collect::<Vec<_>>())
        .bind(txs.iter().map(|t| t.tx.kind.as_str()).collect::<Vec<_>>())
        .bind(txs.iter().map(|t| t.tx.user.0).collect::<Vec<_>>())
        .bind(txs.iter().map(|t| t.tx.hold.map(|h| id_bytes(h.as_u128()))).collect::<Vec<_>>())
        .bind(txs.iter().map(|t| t.tx.payment.as_ref().map(PaymentId::as_str)).collect::<Vec<_>>())
        .bind(txs.iter().map(|t| t.tx.actor.map(|a| a.0)).collect::<Vec<_>>())
        .bind(txs.iter().map(|t| t.tx.reason.as_ref().map(Reason::as_str)).collect::<Vec<_>>())
        .bind(txs.iter().map(|t| t.key.receipt.amount.kopecks()).collect::<Vec<_>>())
        .bind(txs.iter().map(|t| t.key.receipt.released.kopecks()).collect::<Vec<_>>())
        .bind(txs.iter().map(|t| t.tx.at.as_millis()).collect::<Vec<_>>())
        .bind(p_tx)
        .bind(p_idx)
        .bind(p_acc)
        .bind(p_user)
        .bind(p_amount);
    Ok((q, postings))
}

/// Binds `$18`–`$21`: the balances as they now stand.
fn bind_balances<'q>(q: WriteQuery<'q>, b: &'q [Balance]) -> WriteQuery<'q> {
    q.bind(b.iter().map(|x| x.user.0).collect::<Vec<_>>())
        .bind(b.iter().map(|x| x.available.kopecks()).collect::<Vec<_>>())
        .bind(b.iter().map(|x| x.held.kopecks()).collect::<Vec<_>>())
        .bind(b.iter().map(|x| x.overdraft_limit.kopecks()).collect::<Vec<_>>())
}

/// Binds `$22`–`$32`: the holds as they now stand, each with whether it is new.
fn bind_holds<'q>(q: WriteQuery<'q>, h: &'q [(Hold, bool)]) -> WriteQuery<'q> {
    q.bind(h.iter().map(|(x, _)| id_bytes(x.id.as_u128())).collect::<Vec<_>>())
        .bind(h.iter().map(|(x, _)| x.user.0).collect::<Vec<_>>())
        .bind(h.iter().map(|(x, _)| x.provider.as_ref().map(ProviderId::as_str)).collect::<Vec<_>>())
        .bind(h.iter().map(|(x, _)| x.amount.kopecks()).collect::<Vec<_>>())
        .bind(h.iter().map(|(x, _)| x.captured.kopecks()).collect::<Vec<_>>())
        .bind(h.iter().map(|(x, _)| x.refunded.kopecks()).collect::<Vec<_>>())
        .bind(h.iter().map(|(x, _)| x.state.as_str()).collect::<Vec<_>>())
        .bind(h.iter().map(|(x, _)| x.created_at.as_millis()).collect::<Vec<_>>())
        .bind(h.iter().map(|(x, _)| x.expires_at.as_millis()).collect::<Vec<_>>())
        .bind(h.iter().map(|(_, is_new)| *is_new).collect::<Vec<_>>())
        .bind(h.iter().map(|(x, _)| x.budgeted).collect::<Vec<_>>())
}

/// Binds `$33`–`$37`: the payments as they now stand, each with whether it is new.
fn bind_payments<'q>(q: WriteQuery<'q>, pay: &'q [(PaymentRecord, bool)]) -> WriteQuery<'q> {
    q.bind(pay.iter().map(|(x, _)| x.id.as_str()).collect::<Vec<_>>())
        .bind(pay.iter().map(|(x, _)| x.user.0).collect::<Vec<_>>())
        .bind(pay.iter().map(|(x, _)| x.amount.kopecks()).collect::<Vec<_>>())
        .bind(pay.iter().map(|(x, _)| x.refunded.kopecks()).collect::<Vec<_>>())
        .bind(pay.iter().map(|(_, is_new)| *is_new).collect::<Vec<_>>())
}

/// Binds `$42`–`$44`: the changes of the provider budget counters. Returns how many.
fn bind_provider_spend<'q>(q: WriteQuery<'q>, changes: &'q Changes) -> (WriteQuery<'q>, usize) {
    let spend: Vec<(&str, i64, i64)> = changes
        .provider_spend
        .iter()
        .filter(|(_, d)| !d.is_zero())
        .map(|((p, bucket), d)| (p.as_str(), *bucket, d.kopecks()))
        .collect();
    let n = spend.len();
    let q = q
        .bind(spend.iter().map(|x| x.0).collect::<Vec<_>>())
        .bind(spend.iter().map(|x| x.1).collect::<Vec<_>>())
        .bind(spend.iter().map(|x| x.2).collect::<Vec<_>>());
    (q, n)
}

fn count(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[async_trait]
impl LedgerStore for PgLedger {
    async fn apply_batch(&self, cmds: Vec<LedgerCommand>) -> Result<Vec<Result<Applied, LedgerError>>, StoreError> {
        if cmds.is_empty() {
            return Ok(Vec::new());
        }
        if cmds.len() > BATCH_LEN_MAX {
            return Err(StoreError::BatchTooLarge { len: cmds.len(), max: BATCH_LEN_MAX });
        }
        // One database transaction for the whole batch, as the port's contract says: an outer error means
        // that none of it applied.
        apply_with_retries(&self.pool, &cmds, self.config.retries_max, 0).await
    }

    async fn apply(&self, cmd: LedgerCommand) -> Result<Applied, LedgerError> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send((cmd, reply))
            .await
            .map_err(|_| StoreError::Unavailable { message: "the ledger writers stopped".into() })?;
        answer.await.map_err(|_| StoreError::Unavailable { message: "the ledger writer dropped the command".into() })?
    }

    async fn balance(&self, user: UserId) -> Result<Balance, StoreError> {
        let row = sqlx::query(
            "SELECT user_id, available, held, overdraft_limit, active_holds FROM ledger_accounts WHERE user_id = $1",
        )
        .bind(user.0)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| store_error(&e))?;
        match row {
            Some(row) => balance_from_row(&row).map_err(|e| store_error(&e)),
            None => Ok(Balance::empty(user)),
        }
    }

    async fn system_balance(&self, account: SystemAccount) -> Result<Money, StoreError> {
        let balance: Option<i64> =
            sqlx::query_scalar("SELECT SUM(balance)::BIGINT FROM ledger_system_accounts WHERE account = $1")
                .bind(account.as_str())
                .fetch_one(&self.pool)
                .await
                .map_err(|e| store_error(&e))?;
        Ok(Money::from_kopecks(balance.unwrap_or(0)))
    }

    async fn hold(&self, id: HoldId) -> Result<Option<Hold>, StoreError> {
        let sql = format!("SELECT {HOLD_COLUMNS} FROM ledger_holds WHERE id = $1");
        let row = sqlx::query(&sql)
            .bind(id_bytes(id.as_u128()))
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| store_error(&e))?;
        row.map(|r| hold_from_row(&r)).transpose().map_err(|e| store_error(&e))
    }

    async fn holds_due(&self, now: Timestamp, limit: usize) -> Result<Vec<HoldId>, StoreError> {
        let ids: Vec<Vec<u8>> = sqlx::query_scalar(
            "SELECT id FROM ledger_holds WHERE state = 'active' AND expires_ms <= $1 ORDER BY expires_ms, id LIMIT $2",
        )
        .bind(now.as_millis())
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await
        .map_err(|e| store_error(&e))?;
        ids.iter().map(|b| id_from_bytes(b).map(HoldId::from)).collect()
    }

    async fn set_overdraft_limit(&self, user: UserId, limit: Money) -> Result<(), LedgerError> {
        let run = async {
            let mut tx = self.pool.begin().await?;
            let mut ws = WorkingSet::new();
            lock_users(&mut tx, &BTreeSet::from([user.0]), &mut ws).await?;
            let outcome = ws.set_overdraft_limit(user, limit);
            if outcome.is_ok() {
                sqlx::query("UPDATE ledger_accounts SET overdraft_limit = $2 WHERE user_id = $1")
                    .bind(user.0)
                    .bind(limit.kopecks())
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok::<_, sqlx::Error>(outcome.map(|_| ()))
        };
        run.await.map_err(|e| LedgerError::Store(store_error(&e)))?
    }

    async fn transactions(&self, offset: u64, limit: usize) -> Result<Vec<Transaction>, StoreError> {
        let run = async {
            let mut tx = self.pool.begin().await?;
            sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY").execute(&mut *tx).await?;
            let rows = sqlx::query(
                "SELECT seq, id, idem_key, kind, user_id, hold_id, payment_id, actor, reason, at_ms \
                 FROM ledger_transactions ORDER BY seq OFFSET $1 LIMIT $2",
            )
            .bind(i64::try_from(offset).unwrap_or(i64::MAX))
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(&mut *tx)
            .await?;
            let txs = with_postings(&mut tx, &rows).await?;
            tx.commit().await?;
            Ok::<_, sqlx::Error>(txs.into_iter().map(|(_, t)| t).collect())
        };
        run.await.map_err(|e| store_error(&e))
    }

    async fn history(&self, user: UserId, before: Option<u64>, limit: usize) -> Result<Vec<HistoryEntry>, StoreError> {
        let limit = limit.min(HISTORY_PAGE_MAX);
        if limit == 0 {
            return Ok(Vec::new());
        }
        let before = before.map_or(i64::MAX, |b| i64::try_from(b).unwrap_or(i64::MAX));
        let run = async {
            let mut tx = self.pool.begin().await?;
            sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY").execute(&mut *tx).await?;
            let rows = sqlx::query(
                "SELECT seq, id, idem_key, kind, user_id, hold_id, payment_id, actor, reason, at_ms \
                 FROM ledger_transactions WHERE user_id = $1 AND seq < $2 ORDER BY seq DESC LIMIT $3",
            )
            .bind(user.0)
            .bind(before)
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(&mut *tx)
            .await?;
            let txs = with_postings(&mut tx, &rows).await?;
            tx.commit().await?;
            Ok::<_, sqlx::Error>(
                txs.into_iter()
                    .map(|(seq, transaction)| HistoryEntry { position: u64::try_from(seq).unwrap_or(0), transaction })
                    .collect(),
            )
        };
        run.await.map_err(|e| store_error(&e))
    }

    async fn verify(&self) -> Result<VerifyReport, StoreError> {
        let run = async {
            let mut tx = self.pool.begin().await?;
            sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY").execute(&mut *tx).await?;
            let tally = verify_in(&mut tx).await?;
            tx.commit().await?;
            Ok::<_, sqlx::Error>(tally.finish())
        };
        run.await.map_err(|e| store_error(&e))
    }
}

/// The transactions of `rows` (`seq, id, idem_key, kind, user_id, hold_id, payment_id, actor, reason, at_ms`),
/// in the rows' order, with their postings read in the same database transaction.
async fn with_postings(
    tx: &mut sqlx::PgConnection,
    rows: &[sqlx::postgres::PgRow],
) -> Result<Vec<(i64, Transaction)>, sqlx::Error> {
    let seqs: Vec<i64> = rows.iter().map(|r| r.try_get("seq")).collect::<Result<_, _>>()?;
    let mut postings: BTreeMap<i64, Vec<Posting>> = BTreeMap::new();
    let prow = sqlx::query(
        "SELECT tx_seq, account, user_id, amount FROM ledger_postings WHERE tx_seq = ANY($1) ORDER BY tx_seq, idx",
    )
    .bind(&seqs)
    .fetch_all(&mut *tx)
    .await?;
    for p in prow {
        let account: String = p.try_get("account")?;
        postings.entry(p.try_get("tx_seq")?).or_default().push(Posting {
            account: account_of(&account, p.try_get("user_id")?)?,
            amount: Money::from_kopecks(p.try_get("amount")?),
        });
    }
    rows.iter()
        .map(|r| {
            let seq: i64 = r.try_get("seq")?;
            let kind: String = r.try_get("kind")?;
            let key: String = r.try_get("idem_key")?;
            let hold: Option<Vec<u8>> = r.try_get("hold_id")?;
            let payment: Option<String> = r.try_get("payment_id")?;
            let reason: Option<String> = r.try_get("reason")?;
            let actor: Option<i64> = r.try_get("actor")?;
            let transaction = Transaction {
                id: TxId::from(id_from_bytes(r.try_get::<&[u8], _>("id")?).map_err(corrupt)?),
                key: IdempotencyKey::parse(&key).map_err(corrupt)?,
                kind: OpKind::parse(&kind).ok_or_else(|| corrupt(&kind))?,
                user: UserId(r.try_get("user_id")?),
                hold: hold.map(|h| id_from_bytes(&h).map(HoldId::from)).transpose().map_err(corrupt)?,
                payment: payment.map(|p| PaymentId::parse(&p)).transpose().map_err(corrupt)?,
                actor: actor.map(UserId),
                reason: reason.map(|r| Reason::parse(&r)).transpose().map_err(corrupt)?,
                at: Timestamp::from_millis(r.try_get("at_ms")?),
                postings: postings.remove(&seq).unwrap_or_default(),
            };
            Ok((seq, transaction))
        })
        .collect()
}

/// An exact sum the database sent as text.
fn exact(text: &str) -> Result<i128, sqlx::Error> {
    text.parse::<i128>().map_err(|_| corrupt(format!("sum {text:?}")))
}

/// Reads verify's figures inside one snapshot: the database aggregates (exactly, in NUMERIC), the shared
/// [`VerifyTally`] decides.
async fn verify_in(tx: &mut PgConnection) -> Result<VerifyTally, sqlx::Error> {
    let mut tally = VerifyTally::new();
    let drifts = sqlx::query("SELECT account, user_id, cached::TEXT, recomputed::TEXT FROM ledger_verify()")
        .fetch_all(&mut *tx)
        .await?;
    for row in drifts {
        let account: String = row.try_get(0)?;
        let cached: String = row.try_get(2)?;
        let recomputed: String = row.try_get(3)?;
        tally.account(account_of(&account, row.try_get(1)?)?, exact(&cached)?, exact(&recomputed)?);
    }
    // Only transactions that may break a rule are read; the rest are counted.
    let suspects = sqlx::query(
        "SELECT t.id, t.kind, t.amount, COUNT(p.tx_seq), COALESCE(SUM(p.amount), 0)::TEXT \
         FROM ledger_transactions t LEFT JOIN ledger_postings p ON p.tx_seq = t.seq \
         GROUP BY t.seq HAVING COALESCE(SUM(p.amount), 0) <> 0 OR COUNT(p.tx_seq) = 0 ORDER BY t.seq",
    )
    .fetch_all(&mut *tx)
    .await?;
    let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM ledger_transactions").fetch_one(&mut *tx).await?;
    let suspect_count = u64::try_from(suspects.len()).unwrap_or(u64::MAX);
    tally.balanced_transactions(u64::try_from(count).unwrap_or(0).saturating_sub(suspect_count));
    for row in suspects {
        let kind: String = row.try_get(1)?;
        let postings: i64 = row.try_get(3)?;
        let sum: String = row.try_get(4)?;
        tally.transaction(
            TxId::from(id_from_bytes(row.try_get::<&[u8], _>(0)?).map_err(corrupt)?),
            OpKind::parse(&kind).ok_or_else(|| corrupt(&kind))?,
            Money::from_kopecks(row.try_get(2)?),
            u64::try_from(postings).unwrap_or(0),
            exact(&sum)?,
        );
    }
    let below = sqlx::query(
        "SELECT user_id, available, held, overdraft_limit, active_holds FROM ledger_accounts \
         WHERE available < -overdraft_limit OR held < 0 ORDER BY user_id",
    )
    .fetch_all(&mut *tx)
    .await?;
    for row in below {
        tally.user(&balance_from_row(&row)?);
    }
    let total: String = sqlx::query_scalar(
        "SELECT ((SELECT COALESCE(SUM(available::NUMERIC + held), 0) FROM ledger_accounts) \
                 + (SELECT COALESCE(SUM(balance), 0) FROM ledger_system_accounts))::TEXT",
    )
    .fetch_one(&mut *tx)
    .await?;
    tally.add_to_total(exact(&total)?);
    Ok(tally)
}
