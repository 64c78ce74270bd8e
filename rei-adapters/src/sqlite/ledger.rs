//! [`SqliteLedger`]: the [`LedgerStore`] in one SQLite file.
//!
//! SQLite has one writer at a time, so the store has exactly one writer task and group-commits: every
//! `apply` sends its command over a bounded channel, and the writer takes the first waiting command plus
//! whatever else is already waiting (up to `batch_max`) and applies them in one `BEGIN IMMEDIATE` transaction.
//! While one batch commits, the next one fills up; nobody sleeps to make a batch bigger.
//!
//! Inside the transaction the writer loads the rows the batch touches into a [`WorkingSet`] (the same code
//! decides every command in every store), applies each command, and writes back what changed: new
//! transactions and their postings (seq assigned explicitly, postings before their transaction row so the
//! database's own sum-to-zero trigger checks each one), balances, holds, payments and system deltas.
//! Readers use other pool connections; WAL mode lets them read a consistent snapshot while the writer writes.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use async_trait::async_trait;
use rei_core::caps::DAY;
use rei_core::guards::Reason;
use rei_core::ids::{HoldId, IdempotencyKey, PaymentId, ProviderId, TxId, UserId};
use rei_core::ledger::{
    Account, AccountDrift, Applied, Balance, Changes, Hold, HoldState, KeyRecord, LedgerCommand, LedgerError,
    LedgerStore, OpKind, PaymentRecord, Posting, Receipt, StoreError, SystemAccount, Transaction, VerifyReport,
    WorkingSet,
};
use rei_core::money::Money;
use rei_core::time::Timestamp;
use sqlx::sqlite::{Sqlite, SqliteConnection, SqlitePool, SqliteRow};
use sqlx::{ConnectOptions, Connection, QueryBuilder, Row};
use tokio::sync::{mpsc, oneshot};

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
/// Rows per multi-row INSERT and values per IN list, far below SQLite's bound on bound parameters.
const ROWS_PER_STATEMENT: usize = 100;
/// SQLite's primary result codes the writer tells apart (the driver reports extended codes; the low byte is the
/// primary one).
const SQLITE_BUSY: i64 = 5;
const SQLITE_LOCKED: i64 = 6;
const SQLITE_CONSTRAINT: i64 = 19;
/// Prepared statements the writer connection keeps: every shape of its multi-row statements (one per row
/// count) stays prepared.
const WRITER_STATEMENTS_CACHED: usize = 1_024;
/// The writer connection's page cache: 64 MiB (a negative `cache_size` counts KiB), so the pages of the hot
/// index ends stay in memory between batches.
const WRITER_CACHE_SIZE_PRAGMA: &str = "-65536";

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

/// The ledger in SQLite, with one group-committing writer task.
///
/// Dropping the store closes the channel; the writer finishes the requests already queued and ends.
#[derive(Debug)]
pub struct SqliteLedger {
    pool: SqlitePool,
    requests: mpsc::Sender<Request>,
    batch_max: usize,
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

    /// `true` when another connection holds the lock: waiting and retrying may help.
    fn is_busy(&self) -> bool {
        matches!(self, SqlError::Driver(sqlx::Error::PoolTimedOut))
            || matches!(self.primary_code(), Some(SQLITE_BUSY | SQLITE_LOCKED))
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
    /// A store on `pool` (migrated with [`crate::sqlite::migrate`]), and its writer task.
    ///
    /// # Panics
    /// When called outside a tokio runtime: the writer task is spawned on the current one.
    #[must_use]
    pub fn new(pool: SqlitePool, config: SqliteLedgerConfig) -> SqliteLedger {
        let batch_max = config.batch_max.clamp(1, BATCH_MAX_LIMIT);
        let (requests, inbox) = mpsc::channel(config.queue_max.clamp(1, QUEUE_MAX_LIMIT));
        let writer = Writer { pool: pool.clone(), batch_max, conn: None };
        tokio::spawn(writer.run(inbox));
        SqliteLedger { pool, requests, batch_max }
    }

    /// Sends work to the writer and waits for its outcomes.
    async fn submit(&self, work: Vec<Work>) -> Result<Vec<Outcome>, StoreError> {
        let count = work.len();
        let (reply, outcomes) = oneshot::channel();
        self.requests.send(Request { work, reply }).await.map_err(|_| writer_gone())?;
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
        let row = sqlx::query("SELECT available, held, overdraft_limit FROM ledger_accounts WHERE user_id = ?1")
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
        let mut postings: BTreeMap<i64, Vec<Posting>> = BTreeMap::new();
        for row in &posting_rows {
            let seq: i64 = row.try_get("tx_seq").map_err(SqlError::from)?;
            let account = account_from_row(row)?;
            let amount = Money::from_kopecks(row.try_get("amount").map_err(SqlError::from)?);
            postings.entry(seq).or_default().push(Posting { account, amount });
        }
        rows.iter()
            .map(|row| {
                let seq: i64 = row.try_get("seq").map_err(SqlError::from)?;
                Ok(transaction_from_row(row, postings.remove(&seq).unwrap_or_default())?)
            })
            .collect()
    }

    async fn verify(&self) -> Result<VerifyReport, StoreError> {
        // One read transaction, so every figure comes from the same snapshot.
        let mut tx = self.pool.begin().await.map_err(SqlError::from)?;
        let report = verify_in(&mut tx).await;
        tx.commit().await.map_err(SqlError::from)?;
        Ok(report?)
    }
}

/// The body of [`LedgerStore::verify`], inside a read transaction.
async fn verify_in(conn: &mut SqliteConnection) -> Result<VerifyReport, SqlError> {
    let rows_max = sql_count(REPORT_ROWS_MAX);
    let transactions: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM ledger_transactions").fetch_one(&mut *conn).await?;
    let drift_rows = sqlx::query("SELECT account, user_id, cached, recomputed FROM ledger_drift LIMIT ?1")
        .bind(rows_max)
        .fetch_all(&mut *conn)
        .await?;
    let mut drifts = Vec::with_capacity(drift_rows.len());
    for row in &drift_rows {
        drifts.push(AccountDrift {
            account: account_from_row(row)?,
            cached: Money::from_kopecks(row.try_get("cached")?),
            recomputed: Money::from_kopecks(row.try_get("recomputed")?),
        });
    }
    drifts.sort_by_key(|d| d.account);
    let unbalanced: Vec<Vec<u8>> = sqlx::query_scalar(
        "SELECT id FROM ledger_transactions WHERE seq IN \
         (SELECT tx_seq FROM ledger_postings GROUP BY tx_seq HAVING SUM(amount) <> 0) ORDER BY seq LIMIT ?1",
    )
    .bind(rows_max)
    .fetch_all(&mut *conn)
    .await?;
    let below_floor: Vec<i64> = sqlx::query_scalar(
        "SELECT user_id FROM ledger_accounts WHERE available < -overdraft_limit OR held < 0 ORDER BY user_id LIMIT ?1",
    )
    .bind(rows_max)
    .fetch_all(&mut *conn)
    .await?;
    let total: i64 = sqlx::query_scalar(
        "SELECT (SELECT COALESCE(SUM(available), 0) + COALESCE(SUM(held), 0) FROM ledger_accounts) \
              + (SELECT COALESCE(SUM(balance), 0) FROM ledger_system_accounts)",
    )
    .fetch_one(&mut *conn)
    .await?;
    Ok(VerifyReport {
        transactions: u64::try_from(transactions).map_err(|_| corrupt("negative transaction count"))?,
        drifts,
        unbalanced: unbalanced.iter().map(|b| id_from_bytes(b).map(TxId::from)).collect::<Result<_, _>>()?,
        below_floor: below_floor.into_iter().map(UserId).collect(),
        total: Money::from_kopecks(total),
    })
}

/// The single writer: owns every write to the ledger tables of its database.
///
/// It writes through a connection of its own rather than one borrowed from the pool: SQLite drops a
/// connection's page cache whenever another connection wrote since its last transaction, so a writer that hops
/// between pooled connections re-reads every page it touches on almost every batch.
struct Writer {
    pool: SqlitePool,
    batch_max: usize,
    /// The writer's connection, opened on first use and dropped after a failure that is not the database's
    /// answer to a statement (so the next batch starts on a fresh one).
    conn: Option<SqliteConnection>,
}

impl Writer {
    /// Serves requests until every sender is gone.
    async fn run(mut self, mut inbox: mpsc::Receiver<Request>) {
        // A request that did not fit the last batch opens the next one.
        let mut carried: Option<Request> = None;
        loop {
            let first = match carried.take() {
                Some(r) => r,
                None => match inbox.recv().await {
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
            self.serve(batch).await;
        }
    }

    /// Applies a batch of requests and answers each.
    async fn serve(&mut self, batch: Vec<Request>) {
        let (work, replies): (Vec<Vec<Work>>, Vec<oneshot::Sender<Vec<Outcome>>>) =
            batch.into_iter().map(|r| (r.work, r.reply)).unzip();
        let counts: Vec<usize> = work.iter().map(Vec::len).collect();
        let work: Vec<Work> = work.into_iter().flatten().collect();
        let mut outcomes = self.commit_or_split(&work).await.into_iter();
        for (reply, count) in replies.into_iter().zip(counts) {
            // A caller that gave up waiting no longer needs its answer; its key makes a retry safe.
            let _ = reply.send(outcomes.by_ref().take(count).collect());
        }
    }

    /// Commits `work` in one transaction; when that fails for a reason other than a busy database and there is
    /// more than one item, commits each item alone so that one bad command cannot fail the others.
    async fn commit_or_split(&mut self, work: &[Work]) -> Vec<Outcome> {
        match self.commit_retrying(work).await {
            Ok(outcomes) => outcomes,
            Err(e) if work.len() > 1 && !e.is_busy() => {
                let mut outcomes = Vec::with_capacity(work.len());
                for item in work {
                    match self.commit_retrying(std::slice::from_ref(item)).await {
                        Ok(mut one) => {
                            outcomes.push(one.pop().unwrap_or_else(|| Err(corrupt("no outcome for a command").into())));
                        }
                        Err(e) => outcomes.push(Err(LedgerError::Store(e.to_store()))),
                    }
                }
                outcomes
            }
            Err(e) => {
                let e = e.to_store();
                work.iter().map(|_| Err(LedgerError::Store(e.clone()))).collect()
            }
        }
    }

    /// [`Writer::commit_once`], retried with a doubling backoff while the database is busy or locked.
    async fn commit_retrying(&mut self, work: &[Work]) -> Result<Vec<Outcome>, SqlError> {
        let mut backoff = BUSY_BACKOFF_FIRST;
        let mut retries = 0;
        loop {
            match self.commit_once(work).await {
                Err(e) if e.is_busy() && retries < BUSY_RETRIES_MAX => {
                    retries += 1;
                    tokio::time::sleep(backoff).await;
                    backoff = backoff.saturating_mul(2);
                }
                result => return result,
            }
        }
    }

    /// The writer's connection, opened with the pool's options plus a larger page cache.
    async fn connection(&mut self) -> Result<&mut SqliteConnection, SqlError> {
        let conn = match self.conn.take() {
            Some(conn) => conn,
            None => {
                let options = (*self.pool.connect_options())
                    .clone()
                    .pragma("cache_size", WRITER_CACHE_SIZE_PRAGMA)
                    .pragma("temp_store", "memory")
                    .statement_cache_capacity(WRITER_STATEMENTS_CACHED);
                options.connect().await?
            }
        };
        Ok(self.conn.insert(conn))
    }

    /// Loads, decides and writes `work` in one immediate transaction. On error nothing is written (the
    /// transaction rolls back when dropped).
    async fn commit_once(&mut self, work: &[Work]) -> Result<Vec<Outcome>, SqlError> {
        let conn = self.connection().await?;
        let result = commit_on(conn, work).await;
        if let Err(SqlError::Driver(e)) = &result {
            if !matches!(e, sqlx::Error::Database(_)) {
                self.conn = None;
            }
        }
        result
    }
}

/// The body of [`Writer::commit_once`] on the writer's connection.
async fn commit_on(conn: &mut SqliteConnection, work: &[Work]) -> Result<Vec<Outcome>, SqlError> {
    let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
    let mut ws = load(&mut tx, work).await?;
    let outcomes: Vec<Outcome> = work
        .iter()
        .map(|item| match item {
            Work::Apply(cmd) => ws.apply(cmd).map(Some),
            Work::Overdraft { user, limit } => ws.set_overdraft_limit(*user, *limit).map(|_| None),
        })
        .collect();
    write(&mut tx, ws.take_changes()).await?;
    tx.commit().await?;
    Ok(outcomes)
}

/// The hold columns, in the order [`hold_from_row`] reads them by name.
const HOLD_COLUMNS: &str = "id, user_id, provider, amount, captured, refunded, state, created_ms, expires_ms";

/// The transaction columns a key record needs.
const KEY_COLUMNS: &str = "idem_key, fingerprint, id, kind, user_id, hold_id, amount, released, at_ms";

/// `(?, ?, …)` with `n` placeholders.
fn in_list(n: usize) -> String {
    let mut s = String::with_capacity(n.saturating_mul(3).saturating_add(2));
    s.push('(');
    for i in 0..n {
        if i > 0 {
            s.push_str(", ");
        }
        s.push('?');
    }
    s.push(')');
    s
}

/// A count as SQLite's integer.
fn sql_count(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Reads the rows `work` touches into a working set: key records of the batch's keys, holds by id, every hold
/// of a capped command's user and provider created within the last day (so the caps see real usage), the
/// balances of every user a command can touch, and payments.
async fn load(conn: &mut SqliteConnection, work: &[Work]) -> Result<WorkingSet, SqlError> {
    let mut ws = WorkingSet::new();
    let cmds: Vec<&LedgerCommand> = work
        .iter()
        .filter_map(|w| match w {
            Work::Apply(cmd) => Some(cmd),
            Work::Overdraft { .. } => None,
        })
        .collect();

    let keys: Vec<String> =
        cmds.iter().map(|c| c.key.as_str().to_owned()).collect::<BTreeSet<_>>().into_iter().collect();
    for chunk in keys.chunks(ROWS_PER_STATEMENT) {
        let sql = format!("SELECT {KEY_COLUMNS} FROM ledger_transactions WHERE idem_key IN {}", in_list(chunk.len()));
        let mut q = sqlx::query(&sql);
        for k in chunk {
            q = q.bind(k.as_str());
        }
        for row in q.fetch_all(&mut *conn).await? {
            let (key, record) = key_record_from_row(&row)?;
            ws.load_key(key, record);
        }
    }

    let hold_ids: Vec<HoldId> = cmds.iter().filter_map(|c| c.op.hold()).collect::<BTreeSet<_>>().into_iter().collect();
    for chunk in hold_ids.chunks(ROWS_PER_STATEMENT) {
        let sql = format!("SELECT {HOLD_COLUMNS} FROM ledger_holds WHERE id IN {}", in_list(chunk.len()));
        let mut q = sqlx::query(&sql);
        for id in chunk {
            q = q.bind(id_bytes(id.as_u128()));
        }
        for row in q.fetch_all(&mut *conn).await? {
            ws.load_hold(hold_from_row(&row)?);
        }
    }

    // Who a hold-based command touches when its hold is created earlier in this same batch.
    let batch_holds: BTreeMap<HoldId, (UserId, Option<ProviderId>)> = cmds
        .iter()
        .filter_map(|c| match (c.op.hold(), c.op.user()) {
            (Some(h), Some(u)) if c.op.kind() == OpKind::Hold => Some((h, (u, c.op.provider().cloned()))),
            _ => None,
        })
        .collect();
    let owner = |ws: &WorkingSet, cmd: &LedgerCommand| -> Option<(UserId, Option<ProviderId>)> {
        if let Some(user) = cmd.op.user() {
            return Some((user, cmd.op.provider().cloned()));
        }
        let id = cmd.op.hold()?;
        match ws.hold(id) {
            Some(h) => Some((h.user, h.provider.clone())),
            None => batch_holds.get(&id).cloned(),
        }
    };

    let mut users: BTreeSet<UserId> = BTreeSet::new();
    let mut cap_users: BTreeMap<UserId, Timestamp> = BTreeMap::new();
    let mut cap_providers: BTreeMap<ProviderId, Timestamp> = BTreeMap::new();
    for cmd in &cmds {
        let Some((user, provider)) = owner(&ws, cmd) else { continue };
        users.insert(user);
        if cmd.op.caps().is_some() {
            let since = cmd.at.minus(DAY);
            let e = cap_users.entry(user).or_insert(since);
            *e = (*e).min(since);
            if let Some(p) = provider {
                let e = cap_providers.entry(p).or_insert(since);
                *e = (*e).min(since);
            }
        }
    }
    users.extend(work.iter().filter_map(|w| match w {
        Work::Overdraft { user, .. } => Some(*user),
        Work::Apply(_) => None,
    }));

    let user_window = format!("SELECT {HOLD_COLUMNS} FROM ledger_holds WHERE user_id = ?1 AND created_ms >= ?2");
    for (user, since) in &cap_users {
        let rows = sqlx::query(&user_window).bind(user.0).bind(since.as_millis()).fetch_all(&mut *conn).await?;
        for row in &rows {
            ws.load_hold(hold_from_row(row)?);
        }
    }
    let provider_window = format!("SELECT {HOLD_COLUMNS} FROM ledger_holds WHERE provider = ?1 AND created_ms >= ?2");
    for (provider, since) in &cap_providers {
        let rows =
            sqlx::query(&provider_window).bind(provider.as_str()).bind(since.as_millis()).fetch_all(&mut *conn).await?;
        for row in &rows {
            ws.load_hold(hold_from_row(row)?);
        }
    }

    let users: Vec<UserId> = users.into_iter().collect();
    for chunk in users.chunks(ROWS_PER_STATEMENT) {
        let sql = format!(
            "SELECT user_id, available, held, overdraft_limit FROM ledger_accounts WHERE user_id IN {}",
            in_list(chunk.len())
        );
        let mut q = sqlx::query(&sql);
        for u in chunk {
            q = q.bind(u.0);
        }
        for row in q.fetch_all(&mut *conn).await? {
            let user = UserId(row.try_get("user_id")?);
            ws.load_balance(balance_from_row(user, &row)?);
        }
    }

    let payments: Vec<String> = cmds
        .iter()
        .filter_map(|c| c.op.payment())
        .map(|p| p.as_str().to_owned())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    for chunk in payments.chunks(ROWS_PER_STATEMENT) {
        let sql =
            format!("SELECT id, user_id, amount, refunded FROM ledger_payments WHERE id IN {}", in_list(chunk.len()));
        let mut q = sqlx::query(&sql);
        for p in chunk {
            q = q.bind(p.as_str());
        }
        for row in q.fetch_all(&mut *conn).await? {
            ws.load_payment(payment_from_row(&row)?);
        }
    }
    Ok(ws)
}

/// One posting row to insert.
struct PostingRow {
    seq: i64,
    idx: i64,
    account: &'static str,
    user: Option<i64>,
    amount: i64,
}

/// Writes a batch's changes: postings then transaction rows (so the balance trigger checks each transaction),
/// then balances, holds, payments and system deltas.
async fn write(conn: &mut SqliteConnection, changes: Changes) -> Result<(), SqlError> {
    let Changes { transactions, balances, holds, payments, system_deltas } = changes;
    if !transactions.is_empty() {
        let max: i64 =
            sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) FROM ledger_transactions").fetch_one(&mut *conn).await?;
        let mut seq = max;
        for chunk in transactions.chunks(ROWS_PER_STATEMENT / 4) {
            let first_seq = seq.checked_add(1).ok_or_else(|| corrupt("transaction seq overflow"))?;
            let mut postings = Vec::new();
            for (offset, t) in chunk.iter().enumerate() {
                let s = first_seq.saturating_add(sql_count(offset));
                for (idx, p) in t.tx.postings.iter().enumerate() {
                    let (account, user) = account_columns(p.account);
                    postings.push(PostingRow {
                        seq: s,
                        idx: sql_count(idx),
                        account,
                        user,
                        amount: p.amount.kopecks(),
                    });
                }
            }
            for rows in postings.chunks(ROWS_PER_STATEMENT) {
                let mut qb: QueryBuilder<Sqlite> =
                    QueryBuilder::new("INSERT INTO ledger_postings (tx_seq, idx, account, user_id, amount) ");
                qb.push_values(rows, |mut b, r| {
                    b.push_bind(r.seq).push_bind(r.idx).push_bind(r.account).push_bind(r.user).push_bind(r.amount);
                });
                qb.build().execute(&mut *conn).await?;
            }
            let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new(
                "INSERT INTO ledger_transactions (seq, id, idem_key, fingerprint, kind, user_id, hold_id, payment_id, \
                 actor, reason, amount, released, at_ms) ",
            );
            qb.push_values(chunk.iter().enumerate(), |mut b, (offset, t)| {
                let r = &t.key.receipt;
                b.push_bind(first_seq.saturating_add(sql_count(offset)))
                    .push_bind(id_bytes(t.tx.id.as_u128()))
                    .push_bind(t.tx.key.as_str().to_owned())
                    .push_bind(t.key.fingerprint.clone())
                    .push_bind(t.tx.kind.as_str())
                    .push_bind(t.tx.user.0)
                    .push_bind(t.tx.hold.map(|h| id_bytes(h.as_u128())))
                    .push_bind(t.tx.payment.as_ref().map(|p| p.as_str().to_owned()))
                    .push_bind(t.tx.actor.map(|a| a.0))
                    .push_bind(t.tx.reason.as_ref().map(|r| r.as_str().to_owned()))
                    .push_bind(r.amount.kopecks())
                    .push_bind(r.released.kopecks())
                    .push_bind(t.tx.at.as_millis());
            });
            qb.build().execute(&mut *conn).await?;
            seq = first_seq.saturating_add(sql_count(chunk.len())).saturating_sub(1);
        }
    }

    for chunk in balances.chunks(ROWS_PER_STATEMENT) {
        let mut qb: QueryBuilder<Sqlite> =
            QueryBuilder::new("INSERT INTO ledger_accounts (user_id, available, held, overdraft_limit) ");
        qb.push_values(chunk, |mut b, bal| {
            b.push_bind(bal.user.0)
                .push_bind(bal.available.kopecks())
                .push_bind(bal.held.kopecks())
                .push_bind(bal.overdraft_limit.kopecks());
        });
        qb.push(
            " ON CONFLICT (user_id) DO UPDATE SET available = excluded.available, held = excluded.held, \
             overdraft_limit = excluded.overdraft_limit",
        );
        qb.build().execute(&mut *conn).await?;
    }

    for chunk in holds.chunks(ROWS_PER_STATEMENT) {
        let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new(format!("INSERT INTO ledger_holds ({HOLD_COLUMNS}) "));
        qb.push_values(chunk, |mut b, (h, _)| {
            b.push_bind(id_bytes(h.id.as_u128()))
                .push_bind(h.user.0)
                .push_bind(h.provider.as_ref().map(|p| p.as_str().to_owned()))
                .push_bind(h.amount.kopecks())
                .push_bind(h.captured.kopecks())
                .push_bind(h.refunded.kopecks())
                .push_bind(h.state.as_str())
                .push_bind(h.created_at.as_millis())
                .push_bind(h.expires_at.as_millis());
        });
        // Who a hold belongs to, its provider and when it was placed never change.
        qb.push(
            " ON CONFLICT (id) DO UPDATE SET amount = excluded.amount, captured = excluded.captured, \
             refunded = excluded.refunded, state = excluded.state, expires_ms = excluded.expires_ms",
        );
        qb.build().execute(&mut *conn).await?;
    }

    for chunk in payments.chunks(ROWS_PER_STATEMENT) {
        let mut qb: QueryBuilder<Sqlite> =
            QueryBuilder::new("INSERT INTO ledger_payments (id, user_id, amount, refunded) ");
        qb.push_values(chunk, |mut b, (p, _)| {
            b.push_bind(p.id.as_str().to_owned())
                .push_bind(p.user.0)
                .push_bind(p.amount.kopecks())
                .push_bind(p.refunded.kopecks());
        });
        qb.push(" ON CONFLICT (id) DO UPDATE SET refunded = excluded.refunded");
        qb.build().execute(&mut *conn).await?;
    }

    for (account, delta) in system_deltas {
        if delta.is_zero() {
            continue;
        }
        let done = sqlx::query("UPDATE ledger_system_accounts SET balance = balance + ?1 WHERE account = ?2")
            .bind(delta.kopecks())
            .bind(account.as_str())
            .execute(&mut *conn)
            .await?;
        if done.rows_affected() != 1 {
            return Err(corrupt(format!("system account {} is missing", account.as_str())).into());
        }
    }
    Ok(())
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

fn key_record_from_row(row: &SqliteRow) -> Result<(IdempotencyKey, KeyRecord), SqlError> {
    let key: String = row.try_get("idem_key")?;
    let key = IdempotencyKey::parse(&key).map_err(|e| corrupt(format!("stored key: {e}")))?;
    let id: Vec<u8> = row.try_get("id")?;
    let kind: String = row.try_get("kind")?;
    let receipt = Receipt {
        tx: TxId::from(id_from_bytes(&id)?),
        kind: op_kind(&kind)?,
        user: UserId(row.try_get("user_id")?),
        hold: hold_id_column(row)?,
        amount: Money::from_kopecks(row.try_get("amount")?),
        released: Money::from_kopecks(row.try_get("released")?),
        at: Timestamp::from_millis(row.try_get("at_ms")?),
    };
    Ok((key, KeyRecord { fingerprint: row.try_get("fingerprint")?, receipt }))
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
    })
}

fn payment_from_row(row: &SqliteRow) -> Result<PaymentRecord, SqlError> {
    let id: String = row.try_get("id")?;
    Ok(PaymentRecord {
        id: PaymentId::parse(&id).map_err(|e| corrupt(format!("stored payment id: {e}")))?,
        user: UserId(row.try_get("user_id")?),
        amount: Money::from_kopecks(row.try_get("amount")?),
        refunded: Money::from_kopecks(row.try_get("refunded")?),
    })
}
