//! The statements the daemon runs inside a transaction.
//! Split by aggregate: one file per kind of row, each with the [`Tx`] methods that read and
//! write it. They run unchanged on SQLite and PostgreSQL (see [`super::sql`]).

mod events;
mod hygiene;
mod instances;
mod mailboxes;
mod messages;
mod outbox;
mod tickets;

pub use events::*;
pub use hygiene::*;
pub use instances::*;
pub use mailboxes::*;
pub use messages::*;
pub use outbox::*;
pub use tickets::*;

use std::cell::RefCell;

use super::StoreError;
use super::postgres::Session;
use super::sql::{Param, Params, Row, to_postgres};

/// Which database runs the statements, for the few that must be written twice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

/// One open transaction. Obtained from [`super::Store::write`] or [`super::Store::read_blocking`].
pub struct Tx<'c> {
    conn: Conn<'c>,
}

enum Conn<'c> {
    Sqlite(&'c rusqlite::Transaction<'c>),
    Postgres(RefCell<&'c mut Session>),
}

/// A statement about to run ([`Tx::prepare`]), for queries with many rows.
pub(super) struct Statement<'t, 'c> {
    tx: &'t Tx<'c>,
    sql: &'t str,
}

impl Statement<'_, '_> {
    /// Every row of the statement, each mapped by `row`.
    pub(super) fn query_map<T>(
        &self,
        params: impl Params,
        row: impl FnMut(&Row<'_>) -> Result<T, StoreError>,
    ) -> Result<std::vec::IntoIter<Result<T, StoreError>>, StoreError> {
        Ok(self
            .tx
            .rows(self.sql, &params.to_params(), row)?
            .into_iter())
    }

    /// The first row, mapped by `row`; [`StoreError::NoRow`] if none.
    pub(super) fn query_row<T>(
        &self,
        params: impl Params,
        row: impl FnOnce(&Row<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.tx.query_row(self.sql, params, row)
    }

    /// Runs `each` on every row in turn, stopping at its first error.
    pub(super) fn for_each(
        &self,
        params: impl Params,
        mut each: impl FnMut(&Row<'_>) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        self.tx
            .rows(self.sql, &params.to_params(), |r| each(r))?
            .into_iter()
            .collect()
    }
}

impl<'c> Tx<'c> {
    pub(super) fn sqlite(tx: &'c rusqlite::Transaction<'c>) -> Tx<'c> {
        Tx {
            conn: Conn::Sqlite(tx),
        }
    }

    pub(super) fn postgres(session: &'c mut Session) -> Tx<'c> {
        Tx {
            conn: Conn::Postgres(RefCell::new(session)),
        }
    }

    pub fn dialect(&self) -> Dialect {
        match self.conn {
            Conn::Sqlite(_) => Dialect::Sqlite,
            Conn::Postgres(_) => Dialect::Postgres,
        }
    }

    /// `sqlite` or `postgres`, whichever this transaction's database speaks.
    pub(super) fn pick<'s>(&self, sqlite: &'s str, postgres: &'s str) -> &'s str {
        match self.dialect() {
            Dialect::Sqlite => sqlite,
            Dialect::Postgres => postgres,
        }
    }

    pub(super) fn prepare<'t>(&'t self, sql: &'t str) -> Result<Statement<'t, 'c>, StoreError> {
        Ok(Statement { tx: self, sql })
    }

    /// Runs `sql` with `params`; the number of rows changed. Each statement is prepared once
    /// per connection (the same ones run for every message).
    pub(super) fn execute(&self, sql: &str, params: impl Params) -> Result<usize, StoreError> {
        let params = params.to_params();
        match &self.conn {
            Conn::Sqlite(tx) => Ok(tx
                .prepare_cached(sql)?
                .execute(rusqlite::params_from_iter(params.iter()))?),
            Conn::Postgres(session) => session.borrow_mut().execute(&to_postgres(sql), &params),
        }
    }

    /// The first row of `sql` with `params`, mapped by `row`; [`StoreError::NoRow`] if none.
    pub(super) fn query_row<T>(
        &self,
        sql: &str,
        params: impl Params,
        row: impl FnOnce(&Row<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let params = params.to_params();
        match &self.conn {
            Conn::Sqlite(tx) => {
                let mut statement = tx.prepare_cached(sql)?;
                let mut rows = statement.query(rusqlite::params_from_iter(params.iter()))?;
                match rows.next()? {
                    Some(first) => row(&Row::Sqlite(first)),
                    None => Err(StoreError::NoRow),
                }
            }
            Conn::Postgres(session) => {
                let rows = session.borrow_mut().query(&to_postgres(sql), &params)?;
                match rows.first() {
                    Some(first) => row(&Row::Postgres(first)),
                    None => Err(StoreError::NoRow),
                }
            }
        }
    }

    fn rows<T>(
        &self,
        sql: &str,
        params: &[Param<'_>],
        mut row: impl FnMut(&Row<'_>) -> Result<T, StoreError>,
    ) -> Result<Vec<Result<T, StoreError>>, StoreError> {
        match &self.conn {
            Conn::Sqlite(tx) => {
                let mut statement = tx.prepare_cached(sql)?;
                let mut rows = statement.query(rusqlite::params_from_iter(params.iter()))?;
                let mut out = Vec::new();
                while let Some(next) = rows.next()? {
                    out.push(row(&Row::Sqlite(next)));
                }
                Ok(out)
            }
            Conn::Postgres(session) => {
                // Fetched first, so `row` may run statements of its own.
                let rows = session.borrow_mut().query(&to_postgres(sql), params)?;
                Ok(rows.iter().map(|r| row(&Row::Postgres(r))).collect())
            }
        }
    }

    /// Runs `each` on every row of `sql` in turn, stopping at its first error. SQLite hands
    /// the rows out one at a time and none is kept (a table of 25 MB messages is read with
    /// one in memory); PostgreSQL fetches them all first.
    pub(super) fn each_row(
        &self,
        sql: &str,
        params: impl Params,
        mut each: impl FnMut(&Row<'_>) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let params = params.to_params();
        match &self.conn {
            Conn::Sqlite(tx) => {
                let mut statement = tx.prepare_cached(sql)?;
                let mut rows = statement.query(rusqlite::params_from_iter(params.iter()))?;
                while let Some(next) = rows.next()? {
                    each(&Row::Sqlite(next))?;
                }
                Ok(())
            }
            Conn::Postgres(session) => {
                let rows = session.borrow_mut().query(&to_postgres(sql), &params)?;
                rows.iter().try_for_each(|r| each(&Row::Postgres(r)))
            }
        }
    }

    /// Runs statements without parameters (savepoints).
    fn batch(&self, sql: &str) -> Result<(), StoreError> {
        match &self.conn {
            Conn::Sqlite(tx) => Ok(tx.execute_batch(sql)?),
            Conn::Postgres(session) => session.borrow_mut().batch(sql),
        }
    }

    /// Writes `bytes` into the `raw` column of row `id` of `table`, inserted as
    /// [`super::sql::Raw`]: SQLite would otherwise copy a bound blob and build the whole row
    /// in memory, three copies of a 25 MB message at once. PostgreSQL got them bound.
    pub(super) fn fill_raw(&self, table: &str, id: i64, bytes: &[u8]) -> Result<(), StoreError> {
        use std::io::Write;
        match &self.conn {
            Conn::Sqlite(tx) => {
                let mut blob = tx.blob_open(rusqlite::MAIN_DB, table, "raw", id, false)?;
                blob.write_all(bytes)
                    .map_err(|e| StoreError::Corrupt(format!("writing {table} row {id}: {e}")))
            }
            Conn::Postgres(_) => Ok(()),
        }
    }

    /// Runs `work` under a savepoint: if it fails, its writes are undone and the rest of the
    /// transaction goes on (one scheduler item that fails does not take its batch with it).
    pub fn savepoint<T>(
        &self,
        work: impl FnOnce(&Tx<'c>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.batch("SAVEPOINT item")?;
        match work(self) {
            Ok(value) => {
                self.batch("RELEASE SAVEPOINT item")?;
                Ok(value)
            }
            Err(err) => {
                self.batch("ROLLBACK TO SAVEPOINT item; RELEASE SAVEPOINT item")?;
                Err(err)
            }
        }
    }
}

/// `.optional()` on a single-row result: no row is `None`, not an error.
pub(crate) trait Optional<T> {
    fn optional(self) -> Result<Option<T>, StoreError>;
}

impl<T> Optional<T> for Result<T, StoreError> {
    fn optional(self) -> Result<Option<T>, StoreError> {
        match self {
            Ok(value) => Ok(Some(value)),
            Err(StoreError::NoRow) => Ok(None),
            Err(err) => Err(err),
        }
    }
}
