//! Reading the columns of one row, in either engine, into domain types, with errors that name the column.

use std::fmt::Display;

use rei_core::money::Money;
use rei_core::time::Timestamp;
use sqlx::{ColumnIndex, Decode, Row, Type};

use crate::sql::id_from_bytes;

/// Why a stored row is not a domain value, or a domain value cannot become a row.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RowError {
    /// The driver could not read the column as the expected type.
    #[error("{table}.{column} cannot be read: {source}")]
    Decode {
        /// Which table.
        table: &'static str,
        /// Which column.
        column: &'static str,
        /// What the driver said.
        #[source]
        source: sqlx::Error,
    },
    /// The column holds (or would hold) a value the other side refuses.
    #[error("{table}.{column} is invalid: {problem}")]
    Invalid {
        /// Which table.
        table: &'static str,
        /// Which column.
        column: &'static str,
        /// What is wrong with it.
        problem: String,
    },
}

impl RowError {
    /// `table.column` holds (or would hold) a value the other side refuses, for the reason `problem`.
    pub(crate) fn invalid(table: &'static str, column: &'static str, problem: impl ToString) -> RowError {
        RowError::Invalid { table, column, problem: problem.to_string() }
    }
}

/// The column types the stores use (BIGINT/INTEGER, TEXT, BYTEA/BLOB), read by name from either engine's row.
/// The plain reads refuse NULL.
pub(crate) trait SqlRow {
    /// A non-null integer.
    fn int(&self, column: &str) -> Result<i64, sqlx::Error>;
    /// A nullable integer.
    fn int_or_null(&self, column: &str) -> Result<Option<i64>, sqlx::Error>;
    /// A non-null text.
    fn text(&self, column: &str) -> Result<String, sqlx::Error>;
    /// A nullable text.
    fn text_or_null(&self, column: &str) -> Result<Option<String>, sqlx::Error>;
    /// Non-null bytes.
    fn bytes(&self, column: &str) -> Result<Vec<u8>, sqlx::Error>;
}

impl<R> SqlRow for R
where
    R: Row,
    for<'a> &'a str: ColumnIndex<R>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> Vec<u8>: Decode<'r, R::Database> + Type<R::Database>,
{
    fn int(&self, column: &str) -> Result<i64, sqlx::Error> {
        self.try_get(column)
    }

    fn int_or_null(&self, column: &str) -> Result<Option<i64>, sqlx::Error> {
        self.try_get(column)
    }

    fn text(&self, column: &str) -> Result<String, sqlx::Error> {
        self.try_get(column)
    }

    fn text_or_null(&self, column: &str) -> Result<Option<String>, sqlx::Error> {
        self.try_get(column)
    }

    fn bytes(&self, column: &str) -> Result<Vec<u8>, sqlx::Error> {
        self.try_get(column)
    }
}

/// One row of `table`, read column by column into domain types; every error names `table.column`.
pub(crate) struct Fields<'r, R> {
    table: &'static str,
    row: &'r R,
}

impl<'r, R: SqlRow> Fields<'r, R> {
    /// Reads `row`, a row of `table`.
    pub(crate) fn new(table: &'static str, row: &'r R) -> Fields<'r, R> {
        Fields { table, row }
    }

    /// `column` holds a value the domain refuses, for the reason `problem`.
    pub(crate) fn invalid(&self, column: &'static str, problem: impl ToString) -> RowError {
        RowError::invalid(self.table, column, problem)
    }

    fn read<T>(&self, column: &'static str, read: Result<T, sqlx::Error>) -> Result<T, RowError> {
        read.map_err(|source| RowError::Decode { table: self.table, column, source })
    }

    /// A non-null integer.
    pub(crate) fn int(&self, column: &'static str) -> Result<i64, RowError> {
        self.read(column, self.row.int(column))
    }

    /// A nullable integer.
    pub(crate) fn int_or_null(&self, column: &'static str) -> Result<Option<i64>, RowError> {
        self.read(column, self.row.int_or_null(column))
    }

    /// A non-null text.
    pub(crate) fn text(&self, column: &'static str) -> Result<String, RowError> {
        self.read(column, self.row.text(column))
    }

    /// A non-null integer that must fit the unsigned type `T` (a count, an attempt number).
    pub(crate) fn unsigned<T: TryFrom<i64>>(&self, column: &'static str) -> Result<T, RowError> {
        let n = self.int(column)?;
        T::try_from(n).map_err(|_| {
            let problem = if n < 0 { "is negative" } else { "is too large" };
            self.invalid(column, format!("{n} {problem}"))
        })
    }

    /// An id stored as 16 big-endian bytes.
    pub(crate) fn id(&self, column: &'static str) -> Result<u128, RowError> {
        let bytes = self.read(column, self.row.bytes(column))?;
        id_from_bytes(&bytes).map_err(|e| self.invalid(column, e))
    }

    /// A time stored as Unix milliseconds.
    pub(crate) fn time(&self, column: &'static str) -> Result<Timestamp, RowError> {
        self.int(column).map(Timestamp::from_millis)
    }

    /// An amount stored as kopecks.
    pub(crate) fn money(&self, column: &'static str) -> Result<Money, RowError> {
        self.int(column).map(Money::from_kopecks)
    }

    /// A non-null text that `parse` turns into a domain value.
    pub(crate) fn parsed<T, E: Display>(
        &self,
        column: &'static str,
        parse: impl FnOnce(&str) -> Result<T, E>,
    ) -> Result<T, RowError> {
        let text = self.text(column)?;
        parse(&text).map_err(|e| self.invalid(column, e))
    }

    /// A nullable text that `parse` turns into a domain value when it is not NULL.
    pub(crate) fn parsed_or_null<T, E: Display>(
        &self,
        column: &'static str,
        parse: impl FnOnce(&str) -> Result<T, E>,
    ) -> Result<Option<T>, RowError> {
        let text = self.read(column, self.row.text_or_null(column))?;
        text.map(|t| parse(&t)).transpose().map_err(|e| self.invalid(column, e))
    }

    /// A text that is the stored name (`name`) of one of `all`.
    pub(crate) fn named<E: Copy>(
        &self,
        column: &'static str,
        all: impl IntoIterator<Item = E>,
        name: impl Fn(E) -> &'static str,
    ) -> Result<E, RowError> {
        let text = self.text(column)?;
        all.into_iter().find(|e| name(*e) == text).ok_or_else(|| self.invalid(column, format!("{text:?}")))
    }
}

/// An error text as stored: [`ErrorText::new`] cuts silently, so a stored text it would cut was not written by
/// this adapter and is refused.
pub(crate) fn stored_error_text(text: &str) -> Result<rei_core::jobs::ErrorText, &'static str> {
    match text.len() {
        n if n > rei_core::jobs::ErrorText::LEN_MAX => Err("too long"),
        _ => Ok(rei_core::jobs::ErrorText::new(text)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A row of named integer, text or NULL columns; any other read fails as the driver's would.
    struct FakeRow(Vec<(&'static str, Option<Result<i64, &'static str>>)>);

    impl FakeRow {
        fn cell(&self, column: &str) -> Result<&Option<Result<i64, &'static str>>, sqlx::Error> {
            let found = self.0.iter().find(|(name, _)| *name == column);
            found.map(|(_, cell)| cell).ok_or_else(|| sqlx::Error::ColumnNotFound(column.to_owned()))
        }

        fn mismatch(column: &str) -> sqlx::Error {
            sqlx::Error::Protocol(format!("{column} has another type"))
        }
    }

    impl SqlRow for FakeRow {
        fn int(&self, column: &str) -> Result<i64, sqlx::Error> {
            self.int_or_null(column)?.ok_or_else(|| FakeRow::mismatch(column))
        }

        fn int_or_null(&self, column: &str) -> Result<Option<i64>, sqlx::Error> {
            match self.cell(column)? {
                Some(Ok(n)) => Ok(Some(*n)),
                Some(Err(_)) => Err(FakeRow::mismatch(column)),
                None => Ok(None),
            }
        }

        fn text(&self, column: &str) -> Result<String, sqlx::Error> {
            self.text_or_null(column)?.ok_or_else(|| FakeRow::mismatch(column))
        }

        fn text_or_null(&self, column: &str) -> Result<Option<String>, sqlx::Error> {
            match self.cell(column)? {
                Some(Err(text)) => Ok(Some((*text).to_owned())),
                Some(Ok(_)) => Err(FakeRow::mismatch(column)),
                None => Ok(None),
            }
        }

        fn bytes(&self, column: &str) -> Result<Vec<u8>, sqlx::Error> {
            Err(FakeRow::mismatch(column))
        }
    }

    #[test]
    fn columns_become_domain_values_and_bad_ones_name_their_column() {
        // Proves good columns read as domain values, and a NULL, an out-of-range count or an unknown stored name
        // is an error that names `table.column`, never a panic.
        let row = FakeRow(vec![
            ("n", Some(Ok(7))),
            ("neg", Some(Ok(-1))),
            ("big", Some(Ok(i64::MAX))),
            ("state", Some(Err("queued"))),
            ("odd", Some(Err("bogus"))),
            ("gone", None),
        ]);
        let f = Fields::new("t", &row);
        let names = ["queued", "running"];
        let message = |e: RowError| e.to_string();
        assert_eq!(f.unsigned::<u32>("n").ok(), Some(7));
        assert_eq!(f.named("state", names, |s| s).ok(), Some("queued"));
        assert_eq!(f.int_or_null("gone").ok(), Some(None));
        assert_eq!(
            f.unsigned::<u64>("neg").map_err(message).err().as_deref(),
            Some("t.neg is invalid: -1 is negative")
        );
        assert!(f.unsigned::<u32>("big").map_err(message).is_err_and(|m| m.ends_with("is too large")));
        assert_eq!(f.named("odd", names, |s| s).map_err(message).err().as_deref(), Some("t.odd is invalid: \"bogus\""));
        assert!(f.int("gone").map_err(message).is_err_and(|m| m.starts_with("t.gone cannot be read")));
        assert!(f.parsed_or_null("gone", |s| s.parse::<i64>()).is_ok_and(|v| v.is_none()));
    }
}
