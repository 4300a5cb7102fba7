//! The statements the daemon runs inside a transaction.
//! Split by aggregate: one file per kind of row, each with the [`Tx`] methods that read and
//! write it.

mod events;
mod hygiene;
mod mailboxes;
mod messages;
mod outbox;
mod tickets;

pub use events::*;
pub use hygiene::*;
pub use mailboxes::*;
pub use messages::*;
pub use outbox::*;
pub use tickets::*;

use rusqlite::{CachedStatement, Params, Row, Transaction};

use super::StoreError;

/// One open transaction. Obtained from [`super::Store::write`] or [`super::Store::read_blocking`].
pub struct Tx<'c> {
    tx: &'c Transaction<'c>,
}

impl<'c> Tx<'c> {
    pub(super) fn new(tx: &'c Transaction<'c>) -> Tx<'c> {
        Tx { tx }
    }

    pub(super) fn conn(&self) -> &Transaction<'c> {
        self.tx
    }

    /// `sql` prepared once per connection: the same statements run for every message, so
    /// each is taken from the connection's statement cache rather than compiled again.
    pub(super) fn prepare(&self, sql: &str) -> rusqlite::Result<CachedStatement<'_>> {
        self.tx.prepare_cached(sql)
    }

    /// Runs `sql` (from the statement cache) with `params`; the number of rows changed.
    pub(super) fn execute(&self, sql: &str, params: impl Params) -> rusqlite::Result<usize> {
        self.prepare(sql)?.execute(params)
    }

    /// The first row of `sql` (from the statement cache) with `params`, mapped by `row`.
    pub(super) fn query_row<T>(
        &self,
        sql: &str,
        params: impl Params,
        row: impl FnOnce(&Row<'_>) -> rusqlite::Result<T>,
    ) -> rusqlite::Result<T> {
        self.prepare(sql)?.query_row(params, row)
    }

    /// Runs `work` under a savepoint: if it fails, its writes are undone and the rest of the
    /// transaction goes on (one scheduler item that fails does not take its batch with it).
    pub fn savepoint<T>(
        &self,
        work: impl FnOnce(&Tx<'c>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.tx.execute_batch("SAVEPOINT item")?;
        match work(self) {
            Ok(value) => {
                self.tx.execute_batch("RELEASE item")?;
                Ok(value)
            }
            Err(err) => {
                self.tx.execute_batch("ROLLBACK TO item; RELEASE item")?;
                Err(err)
            }
        }
    }
}
