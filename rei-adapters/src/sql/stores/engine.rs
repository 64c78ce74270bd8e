//! What the shared store code asks of an engine: run one statement with bound [`Value`]s on its pool, or
//! several in one transaction ([`EngineTx`]).

use async_trait::async_trait;

use super::fields::SqlRow;
use super::values::{BindValues, Value};

/// A pool that runs one statement at a time, in autocommit, with [`Value`]s bound to its placeholders in order;
/// or several in a [`transaction`](Engine::transaction).
#[async_trait]
pub(crate) trait Engine: Sync {
    /// The engine's row.
    type Row: SqlRow + Send;

    /// The engine's transaction.
    type Tx: EngineTx<Row = Self::Row>;

    /// Runs `sql` and returns how many rows it changed.
    async fn execute<'q>(&self, sql: &'q str, values: Vec<Value<'q>>) -> Result<u64, sqlx::Error>;

    /// Runs `sql` and returns its first row, if any.
    async fn fetch_optional<'q>(&self, sql: &'q str, values: Vec<Value<'q>>) -> Result<Option<Self::Row>, sqlx::Error>;

    /// Runs `sql` and returns all its rows (the statement must bound them with a `LIMIT`).
    async fn fetch_all<'q>(&self, sql: &'q str, values: Vec<Value<'q>>) -> Result<Vec<Self::Row>, sqlx::Error>;

    /// A transaction on one of the pool's connections, opened with `begin` (`BEGIN`, or SQLite's
    /// `BEGIN IMMEDIATE`, which takes the write lock before anything is read). Dropped without
    /// [`EngineTx::commit`], it rolls back.
    async fn transaction(&self, begin: &'static str) -> Result<Self::Tx, sqlx::Error>;
}

/// Statements on one connection inside a transaction, as [`Engine`]'s are on the pool.
#[async_trait]
pub(crate) trait EngineTx: Send {
    /// The engine's row.
    type Row: SqlRow + Send;

    /// Runs `sql` and returns how many rows it changed.
    async fn execute<'q>(&mut self, sql: &'q str, values: Vec<Value<'q>>) -> Result<u64, sqlx::Error>;

    /// Runs `sql` and returns its first row, if any.
    async fn fetch_optional<'q>(
        &mut self,
        sql: &'q str,
        values: Vec<Value<'q>>,
    ) -> Result<Option<Self::Row>, sqlx::Error>;

    /// Commits.
    async fn commit(self) -> Result<(), sqlx::Error>;
}

/// Implements [`Engine`] for a driver's pool: the bodies are the same for both drivers, only the types differ,
/// and a generic impl would need the driver's executor bounds spelled out.
macro_rules! pool_engine {
    ($pool:ty, $row:ty, $db:ty) => {
        #[async_trait]
        impl Engine for $pool {
            type Row = $row;
            type Tx = sqlx::Transaction<'static, $db>;

            async fn execute<'q>(&self, sql: &'q str, values: Vec<Value<'q>>) -> Result<u64, sqlx::Error> {
                let done = sqlx::query(sql).bind_values(values).execute(self).await?;
                Ok(done.rows_affected())
            }

            async fn fetch_optional<'q>(
                &self,
                sql: &'q str,
                values: Vec<Value<'q>>,
            ) -> Result<Option<$row>, sqlx::Error> {
                sqlx::query(sql).bind_values(values).fetch_optional(self).await
            }

            async fn fetch_all<'q>(&self, sql: &'q str, values: Vec<Value<'q>>) -> Result<Vec<$row>, sqlx::Error> {
                sqlx::query(sql).bind_values(values).fetch_all(self).await
            }

            async fn transaction(&self, begin: &'static str) -> Result<Self::Tx, sqlx::Error> {
                self.begin_with(begin).await
            }
        }

        #[async_trait]
        impl EngineTx for sqlx::Transaction<'static, $db> {
            type Row = $row;

            async fn execute<'q>(&mut self, sql: &'q str, values: Vec<Value<'q>>) -> Result<u64, sqlx::Error> {
                let done = sqlx::query(sql).bind_values(values).execute(&mut **self).await?;
                Ok(done.rows_affected())
            }

            async fn fetch_optional<'q>(
                &mut self,
                sql: &'q str,
                values: Vec<Value<'q>>,
            ) -> Result<Option<$row>, sqlx::Error> {
                sqlx::query(sql).bind_values(values).fetch_optional(&mut **self).await
            }

            async fn commit(self) -> Result<(), sqlx::Error> {
                sqlx::Transaction::commit(self).await
            }
        }
    };
}

#[cfg(feature = "postgres")]
pool_engine!(sqlx::postgres::PgPool, sqlx::postgres::PgRow, sqlx::postgres::Postgres);
#[cfg(feature = "sqlite")]
pool_engine!(sqlx::sqlite::SqlitePool, sqlx::sqlite::SqliteRow, sqlx::sqlite::Sqlite);

/// Defines a store struct `$store` that holds a `$pool` (which must be migrated), with `new`: the part every
/// engine's store shares before its port's impl.
macro_rules! pool_store {
    ($store:ident, $pool:ty, $doc:expr) => {
        #[doc = $doc]
        #[derive(Debug, Clone)]
        pub struct $store {
            pool: $pool,
        }

        impl $store {
            /// A store over `pool`, which must be migrated.
            #[must_use]
            pub fn new(pool: $pool) -> $store {
                $store { pool }
            }
        }
    };
}
pub(crate) use pool_store;
