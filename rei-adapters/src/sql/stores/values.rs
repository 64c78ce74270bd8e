//! The parameters a domain value binds as, in the column types the stores use, bound to either engine's query.

use std::borrow::Cow;

use sqlx::query::Query;
use sqlx::{Database, Encode, Type};

use crate::sql::id_bytes;

/// One bound parameter: BIGINT/INTEGER, TEXT or BYTEA/BLOB, the first two nullable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Value<'a> {
    /// An integer or NULL.
    Int(Option<i64>),
    /// A text or NULL.
    Text(Option<Cow<'a, str>>),
    /// Bytes.
    Bytes(Vec<u8>),
}

impl Value<'_> {
    /// An id, as 16 big-endian bytes.
    pub(crate) fn id(id: u128) -> Value<'static> {
        Value::Bytes(id_bytes(id))
    }
}

impl From<i64> for Value<'_> {
    fn from(n: i64) -> Self {
        Value::Int(Some(n))
    }
}

impl From<Option<i64>> for Value<'_> {
    fn from(n: Option<i64>) -> Self {
        Value::Int(n)
    }
}

impl<'a> From<&'a str> for Value<'a> {
    fn from(text: &'a str) -> Self {
        Value::Text(Some(Cow::Borrowed(text)))
    }
}

impl<'a> From<Option<&'a str>> for Value<'a> {
    fn from(text: Option<&'a str>) -> Self {
        Value::Text(text.map(Cow::Borrowed))
    }
}

impl From<String> for Value<'_> {
    fn from(text: String) -> Self {
        Value::Text(Some(Cow::Owned(text)))
    }
}

impl From<Option<String>> for Value<'_> {
    fn from(text: Option<String>) -> Self {
        Value::Text(text.map(Cow::Owned))
    }
}

/// Binding [`Value`]s to a query of either engine.
pub(crate) trait BindValues<'q> {
    /// Binds `values` in order, after whatever is bound already.
    #[must_use]
    fn bind_values(self, values: impl IntoIterator<Item = Value<'q>>) -> Self;
}

impl<'q, DB> BindValues<'q> for Query<'q, DB, DB::Arguments<'q>>
where
    DB: Database,
    Option<i64>: Encode<'q, DB> + Type<DB>,
    Option<Cow<'q, str>>: Encode<'q, DB> + Type<DB>,
    Vec<u8>: Encode<'q, DB> + Type<DB>,
{
    fn bind_values(self, values: impl IntoIterator<Item = Value<'q>>) -> Self {
        values.into_iter().fold(self, |query, value| match value {
            Value::Int(n) => query.bind(n),
            Value::Text(text) => query.bind(text),
            Value::Bytes(bytes) => query.bind(bytes),
        })
    }
}

/// `limit` clamped to `max`, as a SQL `LIMIT` (0 when it does not fit, which asks for nothing).
pub(crate) fn sql_limit(limit: usize, max: usize) -> i64 {
    i64::try_from(limit.min(max)).unwrap_or(0)
}
