//! [`QuoteStore`](rei_core::billing::QuoteStore) over either engine: one row per quote in `quotes`, written
//! once and never changed.

use rei_core::billing::QuoteRecord;
use rei_core::ids::{ProductId, QuoteId, UserId};
use rei_core::ledger::StoreError;
use rei_core::pricing::Tier;
use rei_core::time::Timestamp;

use super::engine::Engine;
use super::fields::{Fields, RowError, SqlRow};
use super::values::{Value, sql_limit};
use crate::sql::store_error;

const TABLE: &str = "quotes";

/// The columns of `quotes`, in the order [`quote_values`] lists them.
const COLUMNS: &str = "id, user_id, product, units, tier, price, created_ms, expires_ms";

/// The statements of the quote store in one engine's dialect. Values are bound in the order each field says.
pub(crate) struct QuoteSql {
    /// Inserts a row from [`quote_values`] unless its id exists, returning the row inserted ([`COLUMNS`]).
    pub(crate) insert: &'static str,
    /// After `SELECT {columns} FROM quotes`: the quote whose id is the 1st value.
    pub(crate) by_id: &'static str,
    /// Deletes quotes that expire at or before the 1st value, earliest first, at most the 2nd value.
    pub(crate) purge: &'static str,
}

impl From<RowError> for StoreError {
    fn from(e: RowError) -> StoreError {
        StoreError::Corrupt { message: e.to_string() }
    }
}

/// The port's error for a failed statement.
fn db_error(e: sqlx::Error) -> StoreError {
    store_error(&e)
}

/// The stored name of a tier. Pinned here, not taken from `Display`, because the CHECK constraints of the
/// migrations name these exact words.
const fn tier_name(t: Tier) -> &'static str {
    match t {
        Tier::Basic => "basic",
        Tier::Pro => "pro",
        Tier::Enterprise => "enterprise",
    }
}

/// Rebuilds a quote from its row, checking every column.
fn quote_from_row<R: SqlRow>(row: &R) -> Result<QuoteRecord, RowError> {
    let f = Fields::new(TABLE, row);
    Ok(QuoteRecord {
        id: QuoteId::from(f.id("id")?),
        user: UserId(f.int("user_id")?),
        product: f.parsed("product", ProductId::parse)?,
        units: f.unsigned("units")?,
        tier: f.named("tier", Tier::ALL, tier_name)?,
        price: f.money("price")?,
        created_at: f.time("created_ms")?,
        expires_at: f.time("expires_ms")?,
    })
}

/// Every column of `quote`, in [`COLUMNS`] order.
///
/// # Errors
/// [`RowError::Invalid`] when the units do not fit a BIGINT.
fn quote_values(quote: &QuoteRecord) -> Result<[Value<'_>; 8], RowError> {
    let units = i64::try_from(quote.units)
        .map_err(|_| RowError::invalid(TABLE, "units", format!("{} does not fit a BIGINT", quote.units)))?;
    Ok([
        Value::id(quote.id.as_u128()),
        quote.user.0.into(),
        quote.product.as_str().into(),
        units.into(),
        tier_name(quote.tier).into(),
        quote.price.kopecks().into(),
        quote.created_at.as_millis().into(),
        quote.expires_at.as_millis().into(),
    ])
}

/// [`QuoteStore::put`](rei_core::billing::QuoteStore::put).
pub(crate) async fn put<E: Engine>(db: &E, sql: &QuoteSql, quote: QuoteRecord) -> Result<QuoteRecord, StoreError> {
    let inserted = db.fetch_optional(sql.insert, quote_values(&quote)?.into()).await.map_err(db_error)?;
    if let Some(row) = inserted {
        return Ok(quote_from_row(&row)?);
    }
    // The id existed: a new statement sees the row whichever insert won; the first record is what stays.
    get(db, sql, quote.id).await?.ok_or_else(|| StoreError::Unavailable {
        message: format!("quote {} missing right after its insert (purged at once?)", quote.id),
    })
}

/// [`QuoteStore::get`](rei_core::billing::QuoteStore::get).
pub(crate) async fn get<E: Engine>(db: &E, sql: &QuoteSql, id: QuoteId) -> Result<Option<QuoteRecord>, StoreError> {
    let select = format!("SELECT {COLUMNS} FROM quotes {}", sql.by_id);
    let row = db.fetch_optional(&select, vec![Value::id(id.as_u128())]).await.map_err(db_error)?;
    Ok(row.as_ref().map(quote_from_row).transpose()?)
}

/// [`QuoteStore::purge_expired`](rei_core::billing::QuoteStore::purge_expired), deleting at most `batch_max`.
pub(crate) async fn purge_expired<E: Engine>(
    db: &E,
    sql: &QuoteSql,
    before: Timestamp,
    limit: usize,
    batch_max: usize,
) -> Result<usize, StoreError> {
    let limit = sql_limit(limit, batch_max);
    if limit == 0 {
        return Ok(0);
    }
    let deleted = db.execute(sql.purge, vec![before.as_millis().into(), limit.into()]).await.map_err(db_error)?;
    usize::try_from(deleted).map_err(|_| StoreError::Corrupt { message: format!("purge reported {deleted} rows") })
}
