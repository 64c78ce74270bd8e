//! [`SqliteLedger`]: the [`LedgerStore`] in one SQLite file.
//!
//! SQLite has one writer at a time, so the store has exactly one writer (a thread of its own, see `ledger/writer.rs`)
//! and group-commits: every `apply` sends its command over a bounded channel, and the writer takes the first waiting
//! command plus whatever else is already waiting (up to `batch_max`) and applies them in one `BEGIN IMMEDIATE`
//! transaction. While one batch commits, the next one fills up; nobody sleeps to make a batch bigger.
//!
//! Inside the transaction the writer loads the rows the batch touches into a
//! [`WorkingSet`](rei_core::ledger::WorkingSet) (the same code decides every command in every store), applies each
//! command, and writes back what changed: new transactions and their postings (seq assigned explicitly, postings before
//! their transaction row so the database's own sum-to-zero trigger checks each one), balances, holds, payments and
//! system deltas. Readers use other pool connections; WAL mode lets them read a consistent snapshot while the writer
//! writes.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use rei_core::guards::Reason;
use rei_core::ids::{HoldId, IdempotencyKey, PaymentId, ProviderId, TxId, UserId};
use rei_core::ledger::{
    Account, Applied, Balance, HISTORY_PAGE_MAX, HistoryEntry, Hold, HoldState, LedgerCommand, LedgerError,
    LedgerStore, OpKind, Posting, StoreError, SystemAccount, Transaction, VerifyReport, VerifyTally,
};
use rei_core::money::Money;
use rei_core::time::Timestamp;
use sqlx::Row;
use sqlx::sqlite::{SqliteConnection, SqlitePool, SqliteRow};
use tokio::sync::{OnceCell, mpsc, oneshot};

use crate::sql::{id_bytes, id_from_bytes};

/// The largest `batch_max` honoured: one SQLite transaction never carries more commands than this.
pub const BATCH_MAX_LIMIT: usize = 4_096;
/// The largest `queue_max` honoured.
pub const QUEUE_MAX_LIMIT: usize = 1 << 20;
/// The most rows [`LedgerStore::transactions`] and [`LedgerStore::holds_due`] return in one call.
pub const PAGE_MAX: usize = 100_000;
/// The most entries of each list in a [`VerifyReport`]: a ledger with more is broken either way.
pub const REPORT_ROWS_MAX: usize = 10_000;
/// How many times a batch is retried when the database is busy or locked, before every command of it fails
/// with [`StoreError::Unavailable`].
const BUSY_RETRIES_MAX: u32 = 5;
/// The first wait before retrying a busy batch; it doubles on each retry (5, 10, 20, 40, 80 ms).
const BUSY_BACKOFF_FIRST: Duration = Duration::from_millis(5);
/// SQLite's primary result code for a constraint (the driver reports extended codes; the low byte is the
/// primary one).
const SQLITE_CONSTRAINT: i64 = 19;

/// Options of [`SqliteLedger`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SqliteLedgerConfig {
    /// Most commands committed in one database transaction. Clamped to `1..=BATCH_MAX_LIMIT`.
    pub batch_max: usize,
    /// Most requests waiting for the writer; beyond it callers wait for room (back-pressure). Clamped to
    /// `1..=QUEUE_MAX_LIMIT`.
    pub queue_max: usize,
}

impl Default for SqliteLedgerConfig {
    /// 256 commands per transaction, 1,024 waiting requests.
    fn default() -> SqliteLedgerConfig {
        SqliteLedgerConfig { batch_max: 256, queue_max: 1_024 }
    }
}

mod writer;

/// The ledger in SQLite, with one group-committing writer thread.
///
/// The writer starts with the first write (it reads the pool's settings to open its own connection); a start
/// that fails fails that write with [`StoreError::Unavailable`], and the next write tries again. Dropping the
/// store closes the channel; the writer finishes the requests already queued and ends.
#[derive(Debug)]
pub struct SqliteLedger {
    pool: SqlitePool,
    /// The channel to the writer, once it started.
    requests: OnceCell<mpsc::Sender<Request>>,
    batch_max: usize,
    queue_max: usize,
}

/// One unit of work for the writer.
#[derive(Debug)]
enum Work {
    /// A money move.
    Apply(LedgerCommand),
    /// An overdraft change, done by the writer so that it is atomic with the balance it checks.
    Overdraft { user: UserId, limit: Money },
}

/// What the writer says about one [`Work`]: the receipt of a money move, nothing for an overdraft change.
type Outcome = Result<Option<Applied>, LedgerError>;

/// Work sent to the writer, with where to send the outcomes (one per work item, in order).
#[derive(Debug)]
struct Request {
    work: Vec<Work>,
    reply: oneshot::Sender<Vec<Outcome>>,
}

/// A failure inside a database step, before it is mapped to the port's [`StoreError`].
#[derive(Debug, thiserror::Error)]
enum SqlError {
    /// The driver or the database failed.
    #[error(transparent)]
    Driver(#[from] sqlx::Error),
    /// A row does not decode into a domain value.
    #[error(transparent)]
    Data(#[from] StoreError),
}

impl SqlError {
    /// The SQLite primary result code, when the database reported one.
    fn primary_code(&self) -> Option<i64> {
        match self {
            SqlError::Driver(sqlx::Error::Database(db)) => {
                db.code().and_then(|c| c.parse::<i64>().ok()).map(|c| c & 0xff)
            }
            _ => None,
        }
    }

    /// The port's error. A constraint or trigger that fires means the plan let through what the schema
    /// forbids, or the data is damaged: corruption, not unavailability.
    fn to_store(&self) -> StoreError {
        match self {
            SqlError::Data(e) => e.clone(),
            SqlError::Driver(sqlx::Error::Database(db)) if self.primary_code() == Some(SQLITE_CONSTRAINT) => {
                StoreError::Corrupt { message: db.message().to_owned() }
            }
            SqlError::Driver(e) => StoreError::Unavailable { message: e.to_string() },
        }
    }
}

impl From<SqlError> for StoreError {
    fn from(e: SqlError) -> StoreError {
        e.to_store()
    }
}

fn writer_gone() -> StoreError {
    StoreError::Unavailable { message: "the ledger writer has stopped".into() }
}

fn corrupt(message: impl Into<String>) -> StoreError {
    StoreError::Corrupt { message: message.into() }
}

impl SqliteLedger {
    /// A store on `pool` (a database file, migrated with [`crate::sqlite::migrate`]).
    #[must_use]
    pub fn new(pool: SqlitePool, config: SqliteLedgerConfig) -> SqliteLedger {
        SqliteLedger {
            pool,
            requests: OnceCell::new(),
            batch_max: config.batch_max.clamp(1, BATCH_MAX_LIMIT),
            queue_max: config.queue_max.clamp(1, QUEUE_MAX_LIMIT),
        }
    }

    /// The channel to the writer, starting the writer first if it has not started.
    async fn requests(&self) -> Result<&mpsc::Sender<Request>, StoreError> {
        self.requests
            .get_or_try_init(|| async {
                let settings = writer::settings(&self.pool).await?;
                let (requests, inbox) = mpsc::channel(self.queue_max);
                writer::start(settings, self.batch_max, inbox).await?;
                Ok(requests)
            })
            .await
    }

    /// Sends work to the writer and waits for its outcomes.
    async fn submit(&self, work: Vec<Work>) -> Result<Vec<Outcome>, StoreError> {
        let count = work.len();
        let (reply, outcomes) = oneshot::channel();
        self.requests().await?.send(Request { work, reply }).await.map_err(|_| writer_gone())?;
        let outcomes = outcomes.await.map_err(|_| writer_gone())?;
        if outcomes.len() != count {
            return Err(corrupt("the ledger writer returned another number of outcomes"));
        }
        Ok(outcomes)
    }
}

/// A money move's outcome as the port returns it.
fn applied(outcome: Outcome) -> Result<Applied, LedgerError> {
    match outcome {
        Ok(Some(a)) => Ok(a),
        Ok(None) => Err(corrupt("the ledger writer returned no receipt for a command").into()),
        Err(e) => Err(e),
    }
}

#[async_trait]
impl LedgerStore for SqliteLedger {
    async fn apply_batch(&self, cmds: Vec<LedgerCommand>) -> Result<Vec<Result<Applied, LedgerError>>, StoreError> {
        let mut results = Vec::with_capacity(cmds.len());
        let mut rest = cmds.into_iter();
        // A batch larger than the writer's is sent in chunks, in order, each awaited before the next, so later
        // commands still see the effects of earlier ones.
        loop {
            let chunk: Vec<Work> = rest.by_ref().take(self.batch_max).map(Work::Apply).collect();
            if chunk.is_empty() {
                return Ok(results);
            }
            let count = chunk.len();
            match self.submit(chunk).await {
                Ok(outcomes) => results.extend(outcomes.into_iter().map(applied)),
                // Nothing applied yet: the whole batch failed.
                Err(e) if results.is_empty() => return Err(e),
                // Earlier chunks committed, so the failure belongs to these commands alone.
                Err(e) => results.extend((0..count).map(|_| Err(LedgerError::Store(e.clone())))),
            }
        }
    }

    async fn apply(&self, cmd: LedgerCommand) -> Result<Applied, LedgerError> {
        let mut outcomes = self.submit(vec![Work::Apply(cmd)]).await?;
        match outcomes.pop() {
            Some(outcome) => applied(outcome),
            None => Err(corrupt("the ledger writer returned no outcome").into()),
        }
    }

    async fn balance(&self, user: UserId) -> Result<Balance, StoreError> {
        let row = sqlx::query(
            "SELECT available, held, overdraft_limit, active_holds FROM ledger_accounts WHERE user_id = ?1",
        )
        .bind(user.0)
        .fetch_optional(&self.pool)
        .await
        .map_err(SqlError::from)?;
        match row {
            Some(row) => Ok(balance_from_row(user, &row)?),
            None => Ok(Balance::empty(user)),
        }
    }

    async fn system_balance(&self, account: SystemAccount) -> Result<Money, StoreError> {
        let balance: Option<i64> = sqlx::query_scalar("SELECT balance FROM ledger_system_accounts WHERE account = ?1")
            .bind(account.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(SqlError::from)?;
        balance
            .map(Money::from_kopecks)
            .ok_or_else(|| corrupt(format!("system account {} is missing", account.as_str())))
    }

    async fn hold(&self, id: HoldId) -> Result<Option<Hold>, StoreError> {
        let row = sqlx::query(&format!("SELECT {HOLD_COLUMNS} FROM ledger_holds WHERE id = ?1"))
            .bind(id_bytes(id.as_u128()))
            .fetch_optional(&self.pool)
            .await
            .map_err(SqlError::from)?;
        Ok(row.as_ref().map(hold_from_row).transpose()?)
    }

    async fn holds_due(&self, now: Timestamp, limit: usize) -> Result<Vec<HoldId>, StoreError> {
        let ids: Vec<Vec<u8>> = sqlx::query_scalar(
            "SELECT id FROM ledger_holds WHERE state = 'active' AND expires_ms <= ?1 ORDER BY expires_ms, id LIMIT ?2",
        )
        .bind(now.as_millis())
        .bind(sql_count(limit.min(PAGE_MAX)))
        .fetch_all(&self.pool)
        .await
        .map_err(SqlError::from)?;
        ids.iter().map(|b| id_from_bytes(b).map(HoldId::from)).collect()
    }

    async fn set_overdraft_limit(&self, user: UserId, limit: Money) -> Result<(), LedgerError> {
        let mut outcomes = self.submit(vec![Work::Overdraft { user, limit }]).await?;
        match outcomes.pop() {
            Some(Ok(None)) => Ok(()),
            Some(Ok(Some(_))) => Err(corrupt("the ledger writer returned a receipt for an overdraft change").into()),
            Some(Err(e)) => Err(e),
            None => Err(corrupt("the ledger writer returned no outcome").into()),
        }
    }

    async fn transactions(&self, offset: u64, limit: usize) -> Result<Vec<Transaction>, StoreError> {
        let limit = limit.min(PAGE_MAX);
        if limit == 0 {
            return Ok(Vec::new());
        }
        // One read transaction: the page and its postings come from the same snapshot.
        let mut tx = self.pool.begin().await.map_err(SqlError::from)?;
        let rows = sqlx::query(
            "SELECT seq, id, idem_key, kind, user_id, hold_id, payment_id, actor, reason, at_ms \
             FROM ledger_transactions ORDER BY seq LIMIT ?1 OFFSET ?2",
        )
        .bind(sql_count(limit))
        .bind(i64::try_from(offset).unwrap_or(i64::MAX))
        .fetch_all(&mut *tx)
        .await
        .map_err(SqlError::from)?;
        let (Some(first), Some(last)) = (rows.first(), rows.last()) else { return Ok(Vec::new()) };
        let first: i64 = first.try_get("seq").map_err(SqlError::from)?;
        let last: i64 = last.try_get("seq").map_err(SqlError::from)?;
        let posting_rows = sqlx::query(
            "SELECT tx_seq, account, user_id, amount FROM ledger_postings \
             WHERE tx_seq BETWEEN ?1 AND ?2 ORDER BY tx_seq, idx",
        )
        .bind(first)
        .bind(last)
        .fetch_all(&mut *tx)
        .await
        .map_err(SqlError::from)?;
        tx.commit().await.map_err(SqlError::from)?;
        Ok(with_postings(&rows, &posting_rows)?.into_iter().map(|(_, t)| t).collect())
    }

    async fn history(&self, user: UserId, before: Option<u64>, limit: usize) -> Result<Vec<HistoryEntry>, StoreError> {
        let limit = limit.min(HISTORY_PAGE_MAX);
        if limit == 0 {
            return Ok(Vec::new());
        }
        let before = before.map_or(i64::MAX, |b| i64::try_from(b).unwrap_or(i64::MAX));
        // One read transaction: the page and its postings come from the same snapshot.
        let mut tx = self.pool.begin().await.map_err(SqlError::from)?;
        let rows = sqlx::query(
            "SELECT seq, id, idem_key, kind, user_id, hold_id, payment_id, actor, reason, at_ms \
             FROM ledger_transactions WHERE user_id = ?1 AND seq < ?2 ORDER BY seq DESC LIMIT ?3",
        )
        .bind(user.0)
        .bind(before)
        .bind(sql_count(limit))
        .fetch_all(&mut *tx)
        .await
        .map_err(SqlError::from)?;
        let Some(last) = rows.last() else { return Ok(Vec::new()) };
        let oldest: i64 = last.try_get("seq").map_err(SqlError::from)?;
        let posting_rows = sqlx::query(
            "SELECT p.tx_seq, p.account, p.user_id, p.amount FROM ledger_postings p \
             JOIN ledger_transactions t ON t.seq = p.tx_seq \
             WHERE t.user_id = ?1 AND t.seq >= ?2 AND t.seq < ?3 ORDER BY p.tx_seq, p.idx",
        )
        .bind(user.0)
        .bind(oldest)
        .bind(before)
        .fetch_all(&mut *tx)
        .await
        .map_err(SqlError::from)?;
        tx.commit().await.map_err(SqlError::from)?;
        Ok(with_postings(&rows, &posting_rows)?
            .into_iter()
            .map(|(seq, transaction)| HistoryEntry { position: u64::try_from(seq).unwrap_or(0), transaction })
            .collect())
    }

    async fn verify(&self) -> Result<VerifyReport, StoreError> {
        // One read transaction, so every figure comes from the same snapshot.
        let mut tx = self.pool.begin().await.map_err(SqlError::from)?;
        let report = verify_in(&mut tx).await;
        tx.commit().await.map_err(SqlError::from)?;
        Ok(report?)
    }
}

/// Transactions read per page by [`verify_in`].
const VERIFY_PAGE: i64 = 4_096;

/// The body of [`LedgerStore::verify`], inside a read transaction. SQLite's `SUM` fails on an intermediate
/// overflow that a legal ledger can reach (credits and debits of one account summed in another order than they
/// happened), so the postings are streamed, page by page in commit order, and summed exactly by the shared
/// [`VerifyTally`].
async fn verify_in(conn: &mut SqliteConnection) -> Result<VerifyReport, SqlError> {
    let mut tally = VerifyTally::new();
    let last: i64 =
        sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) FROM ledger_transactions").fetch_one(&mut *conn).await?;
    let mut from = 0i64;
    while from < last {
        let to = from.saturating_add(VERIFY_PAGE);
        let rows = sqlx::query(
            "SELECT t.seq, t.id, t.kind, t.amount, p.account, p.user_id, p.amount AS posted \
             FROM ledger_transactions t LEFT JOIN ledger_postings p ON p.tx_seq = t.seq \
             WHERE t.seq > ?1 AND t.seq <= ?2 ORDER BY t.seq, p.idx",
        )
        .bind(from)
        .bind(to)
        .fetch_all(&mut *conn)
        .await?;
        tally_transactions(&mut tally, &rows)?;
        from = to;
    }
    let accounts = sqlx::query(
        "SELECT user_id, available, held, overdraft_limit, active_holds FROM ledger_accounts ORDER BY user_id",
    )
    .fetch_all(&mut *conn)
    .await?;
    for row in &accounts {
        let b = balance_from_row(UserId(row.try_get("user_id")?), row)?;
        tally.user(&b);
        tally.cached(Account::Available(b.user), b.available);
        tally.cached(Account::Held(b.user), b.held);
    }
    for row in sqlx::query("SELECT account, balance FROM ledger_system_accounts").fetch_all(&mut *conn).await? {
        let name: String = row.try_get("account")?;
        let account = SystemAccount::parse(&name).ok_or_else(|| corrupt(format!("unknown system account {name:?}")))?;
        tally.cached(Account::System(account), Money::from_kopecks(row.try_get("balance")?));
    }
    let mut report = tally.finish();
    report.drifts.truncate(REPORT_ROWS_MAX);
    report.unbalanced.truncate(REPORT_ROWS_MAX);
    report.below_floor.truncate(REPORT_ROWS_MAX);
    Ok(report)
}

/// Feeds one page of transactions joined with their postings (in seq order) to the tally.
fn tally_transactions(tally: &mut VerifyTally, rows: &[SqliteRow]) -> Result<(), SqlError> {
    let mut current: Option<(i64, TxId, OpKind, Money, u64, i128)> = None;
    let flush = |tally: &mut VerifyTally, done: Option<(i64, TxId, OpKind, Money, u64, i128)>| {
        if let Some((_, id, kind, amount, postings, sum)) = done {
            tally.transaction(id, kind, amount, postings, sum);
        }
    };
    for row in rows {
        let seq: i64 = row.try_get("seq")?;
        if current.as_ref().is_none_or(|c| c.0 != seq) {
            flush(tally, current.take());
            let id: Vec<u8> = row.try_get("id")?;
            let kind: String = row.try_get("kind")?;
            let amount = Money::from_kopecks(row.try_get("amount")?);
            current = Some((seq, TxId::from(id_from_bytes(&id)?), op_kind(&kind)?, amount, 0, 0));
        }
        let posted: Option<i64> = row.try_get("posted")?;
        if let (Some(posted), Some(c)) = (posted, current.as_mut()) {
            let account = account_from_row(row)?;
            tally.posting(account, Money::from_kopecks(posted));
            c.4 += 1;
            c.5 += i128::from(posted);
        }
    }
    flush(tally, current.take());
    Ok(())
}

/// The hold columns, in the order [`hold_from_row`] reads them by name.
const HOLD_COLUMNS: &str = "id, user_id, provider, amount, captured, refunded, state, created_ms, expires_ms, budgeted";

/// The transaction columns a key record needs.
const KEY_COLUMNS: &str = "idem_key, fingerprint, id, kind, user_id, hold_id, amount, released, at_ms";

/// A count as SQLite's integer.
fn sql_count(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The `account` and `user_id` columns of a posting.
fn account_columns(account: Account) -> (&'static str, Option<i64>) {
    match account {
        Account::Available(u) => ("available", Some(u.0)),
        Account::Held(u) => ("held", Some(u.0)),
        Account::System(s) => (s.as_str(), None),
    }
}

/// Reads the `account` and `user_id` columns back.
fn account_from_row(row: &SqliteRow) -> Result<Account, SqlError> {
    let name: String = row.try_get("account")?;
    let user: Option<i64> = row.try_get("user_id")?;
    let account = match (name.as_str(), user) {
        ("available", Some(u)) => Account::Available(UserId(u)),
        ("held", Some(u)) => Account::Held(UserId(u)),
        (other, None) => SystemAccount::ALL
            .into_iter()
            .find(|s| s.as_str() == other)
            .map(Account::System)
            .ok_or_else(|| corrupt(format!("unknown ledger account {other:?}")))?,
        (other, Some(_)) => return Err(corrupt(format!("ledger account {other:?} with a user")).into()),
    };
    Ok(account)
}

fn op_kind(name: &str) -> Result<OpKind, StoreError> {
    [
        OpKind::TopUp,
        OpKind::Hold,
        OpKind::Raise,
        OpKind::Capture,
        OpKind::Release,
        OpKind::Expire,
        OpKind::Refund,
        OpKind::RefundToCard,
        OpKind::Adjust,
    ]
    .into_iter()
    .find(|k| k.as_str() == name)
    .ok_or_else(|| corrupt(format!("unknown transaction kind {name:?}")))
}

fn hold_id_column(row: &SqliteRow) -> Result<Option<HoldId>, SqlError> {
    let bytes: Option<Vec<u8>> = row.try_get("hold_id")?;
    Ok(bytes.map(|b| id_from_bytes(&b).map(HoldId::from)).transpose()?)
}

/// The transactions of `rows` with their postings from `posting_rows` (`tx_seq, account, user_id, amount`), in
/// the rows' order, each with its `seq`.
fn with_postings(rows: &[SqliteRow], posting_rows: &[SqliteRow]) -> Result<Vec<(i64, Transaction)>, SqlError> {
    let mut postings: BTreeMap<i64, Vec<Posting>> = BTreeMap::new();
    for row in posting_rows {
        let seq: i64 = row.try_get("tx_seq")?;
        let account = account_from_row(row)?;
        let amount = Money::from_kopecks(row.try_get("amount")?);
        postings.entry(seq).or_default().push(Posting { account, amount });
    }
    rows.iter()
        .map(|row| {
            let seq: i64 = row.try_get("seq")?;
            Ok((seq, transaction_from_row(row, postings.remove(&seq).unwrap_or_default())?))
        })
        .collect()
}

fn transaction_from_row(row: &SqliteRow, postings: Vec<Posting>) -> Result<Transaction, SqlError> {
    let id: Vec<u8> = row.try_get("id")?;
    let key: String = row.try_get("idem_key")?;
    let kind: String = row.try_get("kind")?;
    let payment: Option<String> = row.try_get("payment_id")?;
    let actor: Option<i64> = row.try_get("actor")?;
    let reason: Option<String> = row.try_get("reason")?;
    Ok(Transaction {
        id: TxId::from(id_from_bytes(&id)?),
        key: IdempotencyKey::parse(&key).map_err(|e| corrupt(format!("stored key: {e}")))?,
        kind: op_kind(&kind)?,
        user: UserId(row.try_get("user_id")?),
        hold: hold_id_column(row)?,
        payment: payment
            .map(|p| PaymentId::parse(&p).map_err(|e| corrupt(format!("stored payment id: {e}"))))
            .transpose()?,
        actor: actor.map(UserId),
        reason: reason.map(|r| Reason::parse(&r).map_err(|e| corrupt(format!("stored reason: {e}")))).transpose()?,
        at: Timestamp::from_millis(row.try_get("at_ms")?),
        postings,
    })
}

fn balance_from_row(user: UserId, row: &SqliteRow) -> Result<Balance, SqlError> {
    Ok(Balance {
        user,
        available: Money::from_kopecks(row.try_get("available")?),
        held: Money::from_kopecks(row.try_get("held")?),
        overdraft_limit: Money::from_kopecks(row.try_get("overdraft_limit")?),
        active_holds: u32::try_from(row.try_get::<i64, _>("active_holds")?).unwrap_or(u32::MAX),
    })
}

fn hold_from_row(row: &SqliteRow) -> Result<Hold, SqlError> {
    let id: Vec<u8> = row.try_get("id")?;
    let provider: Option<String> = row.try_get("provider")?;
    let state: String = row.try_get("state")?;
    Ok(Hold {
        id: HoldId::from(id_from_bytes(&id)?),
        user: UserId(row.try_get("user_id")?),
        provider: provider
            .map(|p| ProviderId::parse(&p).map_err(|e| corrupt(format!("stored provider: {e}"))))
            .transpose()?,
        amount: Money::from_kopecks(row.try_get("amount")?),
        captured: Money::from_kopecks(row.try_get("captured")?),
        refunded: Money::from_kopecks(row.try_get("refunded")?),
        state: HoldState::from_str_opt(&state).ok_or_else(|| corrupt(format!("unknown hold state {state:?}")))?,
        created_at: Timestamp::from_millis(row.try_get("created_ms")?),
        expires_at: Timestamp::from_millis(row.try_get("expires_ms")?),
        budgeted: row.try_get::<i64, _>("budgeted")? != 0,
    })
}
