//! [`QuoteStore`] in SQLite: one row per quote in `quotes`, written once and never changed.

use async_trait::async_trait;
use rei_core::billing::{QuoteRecord, QuoteStore};
use rei_core::ids::{ProductId, QuoteId, UserId};
use rei_core::ledger::StoreError;
use rei_core::money::Money;
use rei_core::pricing::Tier;
use rei_core::time::Timestamp;
use sqlx::sqlite::{SqlitePool, SqliteRow};
use sqlx::{Row, Sqlite};

use crate::sql::{id_bytes, id_from_bytes, store_error};

/// The most quotes one [`QuoteStore::purge_expired`] call deletes, whatever its `limit`: one statement stays
/// short and a caller loops until a call deletes fewer than it asked for.
pub const PURGE_BATCH_MAX: usize = 10_000;

const COLUMNS: &str = "id, user_id, product, units, tier, price, created_ms, expires_ms";

/// A [`QuoteStore`] over a SQLite pool; the schema comes from [`super::migrate`].
#[derive(Debug, Clone)]
pub struct SqliteQuoteStore {
    pool: SqlitePool,
}

impl SqliteQuoteStore {
    /// A store over `pool`, which must be migrated.
    #[must_use]
    pub fn new(pool: SqlitePool) -> SqliteQuoteStore {
        SqliteQuoteStore { pool }
    }
}

/// Why a stored row is not a quote, or a quote cannot become a row.
#[derive(Debug, thiserror::Error)]
enum RowError {
    /// The driver could not read the column as the expected type.
    #[error("quotes.{column} cannot be read: {source}")]
    Decode {
        /// Which column.
        column: &'static str,
        /// What the driver said.
        #[source]
        source: sqlx::Error,
    },
    /// The column holds (or would hold) a value the other side refuses.
    #[error("quotes.{column} is invalid: {problem}")]
    Invalid {
        /// Which column.
        column: &'static str,
        /// What is wrong with it.
        problem: String,
    },
}

impl From<RowError> for StoreError {
    fn from(e: RowError) -> StoreError {
        StoreError::Corrupt { message: e.to_string() }
    }
}

/// The stored name of a tier. Pinned here, not taken from `Display`, because the CHECK constraint of the
/// migration names these exact words.
const fn tier_name(t: Tier) -> &'static str {
    match t {
        Tier::Basic => "basic",
        Tier::Pro => "pro",
        Tier::Enterprise => "enterprise",
    }
}

fn column<'r, T>(row: &'r SqliteRow, column: &'static str) -> Result<T, RowError>
where
    T: sqlx::Decode<'r, Sqlite> + sqlx::Type<Sqlite>,
{
    row.try_get(column).map_err(|source| RowError::Decode { column, source })
}

fn invalid(column: &'static str, problem: impl ToString) -> RowError {
    RowError::Invalid { column, problem: problem.to_string() }
}

/// Rebuilds a quote from its row, checking every column.
fn quote_from_row(row: &SqliteRow) -> Result<QuoteRecord, RowError> {
    let id: Vec<u8> = column(row, "id")?;
    let product: String = column(row, "product")?;
    let units: i64 = column(row, "units")?;
    let tier: String = column(row, "tier")?;
    Ok(QuoteRecord {
        id: QuoteId::from(id_from_bytes(&id).map_err(|e| invalid("id", e))?),
        user: UserId(column(row, "user_id")?),
        product: ProductId::parse(&product).map_err(|e| invalid("product", e))?,
        units: u64::try_from(units).map_err(|_| invalid("units", format!("{units} is negative")))?,
        tier: Tier::ALL.into_iter().find(|t| tier_name(*t) == tier).ok_or_else(|| invalid("tier", &tier))?,
        price: Money::from_kopecks(column(row, "price")?),
        created_at: Timestamp::from_millis(column(row, "created_ms")?),
        expires_at: Timestamp::from_millis(column(row, "expires_ms")?),
    })
}

#[async_trait]
impl QuoteStore for SqliteQuoteStore {
    async fn put(&self, quote: QuoteRecord) -> Result<QuoteRecord, StoreError> {
        let units = i64::try_from(quote.units)
            .map_err(|_| invalid("units", format!("{} does not fit a BIGINT", quote.units)))?;
        sqlx::query(
            "INSERT INTO quotes (id, user_id, product, units, tier, price, created_ms, expires_ms) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT (id) DO NOTHING",
        )
        .bind(id_bytes(quote.id.as_u128()))
        .bind(quote.user.0)
        .bind(quote.product.as_str())
        .bind(units)
        .bind(tier_name(quote.tier))
        .bind(quote.price.kopecks())
        .bind(quote.created_at.as_millis())
        .bind(quote.expires_at.as_millis())
        .execute(&self.pool)
        .await
        .map_err(|e| store_error(&e))?;
        // A new statement sees the row whichever insert won; the first record is what stays.
        self.get(quote.id).await?.ok_or_else(|| StoreError::Unavailable {
            message: format!("quote {} missing right after its insert (purged at once?)", quote.id),
        })
    }

    async fn get(&self, id: QuoteId) -> Result<Option<QuoteRecord>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM quotes WHERE id = ?1");
        let row = sqlx::query(&sql)
            .bind(id_bytes(id.as_u128()))
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| store_error(&e))?;
        Ok(row.as_ref().map(quote_from_row).transpose()?)
    }

    async fn purge_expired(&self, before: Timestamp, limit: usize) -> Result<usize, StoreError> {
        let limit = i64::try_from(limit.min(PURGE_BATCH_MAX)).unwrap_or(0);
        if limit == 0 {
            return Ok(0);
        }
        // One statement under SQLite's single writer: two collectors never delete the same row twice.
        let done = sqlx::query(
            "DELETE FROM quotes WHERE id IN (SELECT id FROM quotes WHERE expires_ms <= ?1 \
             ORDER BY expires_ms, id LIMIT ?2)",
        )
        .bind(before.as_millis())
        .bind(limit)
        .execute(&self.pool)
        .await
        .map_err(|e| store_error(&e))?;
        usize::try_from(done.rows_affected())
            .map_err(|_| StoreError::Corrupt { message: format!("purge reported {} rows", done.rows_affected()) })
    }
}
