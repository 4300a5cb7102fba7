//! Store: the only module that speaks SQL.
//!
//! **Architecture Invariant:** every write happens inside [`Store::write`], one `BEGIN
//! IMMEDIATE` transaction on the single writer connection. An inbound message's facts, its
//! outbox rows, its events and the mailbox checkpoint are written by one call, so a crash
//! leaves either all of them or none.
//!
//! Two backends run the same [`Tx`] methods: SQLite (the default; WAL mode, so the CLI reads
//! while the daemon writes; the schema version is `PRAGMA user_version`) and PostgreSQL, for
//! several instances over one database ([`postgres`]). Migrations run on open and are
//! idempotent.

mod backup;
mod copy;

mod figures;
mod merge;
mod postgres;
mod schedule;
pub(crate) mod sql;
pub(crate) mod tx;
mod views;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::Timestamp;
use rusqlite::{Connection, OpenFlags, TransactionBehavior};

use crate::files;

pub use backup::backup;
pub use copy::{Copied, CopyError, TableCopied, copy_store};

pub use crate::config::{Database, PostgresTarget};
pub use figures::{Figures, OutboxNow, Tally};
pub use merge::Moved;
pub use postgres::listen;
pub use schedule::{NewStep, Paused, StepView, plan_key};
pub(crate) use tx::Dialect;
pub use tx::{
    Answered, Backlog, BacklogSummary, Checkpoint, ContactSeen, EarlierTicket, Event, InstanceView,
    Known, Met, MetDeadline, NewMessage, NewOutbox, NewQuarantine, NewTicket, OutboundSent,
    OutboxRow, Owner, QuarantineStatus, Quarantined, TicketTexts, Tx, content_key, dedupe_key,
    legacy_content_key,
};
pub use views::{
    ContactView, EventRecord, EventView, MessageView, OutboxView, QuarantineView, TicketView,
};

/// Schema migrations, applied in order; `user_version` counts how many have run.
const MIGRATIONS: [&str; 10] = [
    include_str!("schema_v1.sql"),
    include_str!("schema_v2.sql"),
    include_str!("schema_v3.sql"),
    include_str!("schema_v4.sql"),
    include_str!("schema_v5.sql"),
    include_str!("schema_v6.sql"),
    include_str!("schema_v7.sql"),
    include_str!("schema_v8.sql"),
    include_str!("schema_v9.sql"),
    include_str!("schema_v10.sql"),
];

/// Prepared statements each connection keeps (every statement the store runs, with room).
const STATEMENT_CACHE: usize = 256;

/// How long the CLI waits for a running daemon to finish creating or upgrading the schema.
const UPGRADE_WAIT: Duration = Duration::from_secs(5);

/// Why the store failed. Callers mostly log it and retry the whole unit of work later.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database {}: {reason}", path.display())]
    Open { path: PathBuf, reason: String },
    #[error("database {} has schema version {found}, newer than this deskgate knows ({known}); upgrade deskgate", path.display())]
    TooNew {
        path: PathBuf,
        found: i64,
        known: i64,
    },
    #[error("database {} has schema version {found}, older than this deskgate's ({known}); `deskgate run` upgrades it when it starts", path.display())]
    TooOld {
        path: PathBuf,
        found: i64,
        known: i64,
    },
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("postgresql: {}", postgres::describe(.0))]
    Postgres(#[from] ::postgres::Error),
    #[error("a row the store expected is missing")]
    NoRow,
    #[error(
        "mailbox {mailbox} is no longer fetched by this instance ({instance}): another took it over"
    )]
    NotOwner { mailbox: String, instance: String },
    #[error("stored data is inconsistent: {0}")]
    Corrupt(String),
    #[error("the database worker stopped: {0}")]
    Worker(String),
}

impl StoreError {
    /// A failure of the database itself (busy, locked, disk full, I/O), which the same work
    /// may overcome later; anything else is about the data and would fail again.
    pub fn is_transient(&self) -> bool {
        use rusqlite::ErrorCode::*;
        match self {
            StoreError::Sqlite(rusqlite::Error::SqliteFailure(e, _)) => matches!(
                e.code,
                DatabaseBusy
                    | DatabaseLocked
                    | DiskFull
                    | SystemIoFailure
                    | CannotOpen
                    | ReadOnly
                    | OutOfMemory
                    | FileLockingProtocolFailed
            ),
            StoreError::Postgres(e) => postgres::is_transient(e),
            // Nothing is wrong with the mail: it stays on the server for the new owner.
            StoreError::NotOwner { .. } => true,
            StoreError::Open { .. } | StoreError::TooNew { .. } | StoreError::TooOld { .. } => true,
            StoreError::Sqlite(_)
            | StoreError::Corrupt(_)
            | StoreError::Worker(_)
            | StoreError::NoRow => false,
        }
    }
}

/// A handle on the database: cheap to clone, one connection behind a mutex.
#[derive(Clone)]
pub struct Store {
    backend: Arc<Backend>,
}

enum Backend {
    /// A std mutex, not tokio's: it is only taken inside `spawn_blocking`, never across `.await`.
    Sqlite(Mutex<Connection>),
    Postgres(Box<postgres::Postgres>),
}

impl Store {
    /// Opens (creating or upgrading if needed) the configured database.
    pub fn connect(database: &Database) -> Result<Store, StoreError> {
        match database {
            Database::Sqlite(path) => Store::open(path),
            Database::Postgres(target) => Store::postgres(target, true),
        }
    }

    /// Opens the configured database to read (the CLI while the daemon runs): SQLite
    /// read-only; PostgreSQL without upgrading its schema.
    pub fn connect_read_only(database: &Database) -> Result<Store, StoreError> {
        match database {
            Database::Sqlite(path) => Store::open_read_only(path),
            Database::Postgres(target) => Store::postgres(target, false),
        }
    }

    /// Connects on a thread of its own: the `postgres` client runs a small runtime of its
    /// own, which must not start inside the daemon's.
    fn postgres(target: &PostgresTarget, migrate: bool) -> Result<Store, StoreError> {
        let target = target.clone();
        let backend = std::thread::spawn(move || postgres::Postgres::open(&target, migrate))
            .join()
            .map_err(|_| StoreError::Worker("connecting to PostgreSQL panicked".into()))??;
        Ok(Store {
            backend: Arc::new(Backend::Postgres(Box::new(backend))),
        })
    }

    pub fn dialect(&self) -> Dialect {
        match *self.backend {
            Backend::Sqlite(_) => Dialect::Sqlite,
            Backend::Postgres(_) => Dialect::Postgres,
        }
    }

    /// The database, for messages.
    pub fn describe(&self) -> String {
        match &*self.backend {
            Backend::Sqlite(conn) => conn
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .path()
                .unwrap_or("")
                .to_string(),
            Backend::Postgres(pg) => pg.target().display(),
        }
    }

    /// Opens (creating if needed) the database at `path` and migrates it.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let open_err = |reason: String| StoreError::Open {
            path: path.to_path_buf(),
            reason,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            files::create_dir(dir)
                .map_err(|e| open_err(format!("cannot create directory {}: {e}", dir.display())))?;
        }
        // Created 0600 before SQLite opens it (SQLite would use 0644 minus the umask), so
        // the -wal and -shm files SQLite creates next to it get the same mode.
        files::create_private(path)
            .and_then(|()| files::tighten_database(path))
            .map_err(|e| open_err(format!("cannot make it private (0600): {e}")))?;
        let mut conn = Connection::open(path).map_err(|e| open_err(e.to_string()))?;
        conn.busy_timeout(Duration::from_secs(10))?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(open_err(format!("cannot switch to WAL mode (got {mode})")));
        }
        conn.execute_batch("PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;")?;
        migrate(&mut conn, path)?;
        Ok(Store::sqlite(conn))
    }

    /// Opens an existing database for reading only (the CLI while the daemon runs).
    pub fn open_read_only(path: &Path) -> Result<Store, StoreError> {
        if !path.exists() {
            return Err(StoreError::Open {
                path: path.to_path_buf(),
                reason: "no such file; has `deskgate run` started with this configuration yet?"
                    .into(),
            });
        }
        let conn =
            Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(|e| {
                StoreError::Open {
                    path: path.to_path_buf(),
                    reason: e.to_string(),
                }
            })?;
        conn.busy_timeout(Duration::from_secs(10))?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        let known = MIGRATIONS.len() as i64;
        // A daemon creating or upgrading the database takes milliseconds; wait that out, and
        // explain a database no daemon has upgraded yet.
        let mut waited = Duration::ZERO;
        loop {
            let found: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
            if found > known {
                return Err(StoreError::TooNew {
                    path: path.to_path_buf(),
                    found,
                    known,
                });
            }
            if found == known {
                break;
            }
            if waited >= UPGRADE_WAIT {
                return Err(StoreError::TooOld {
                    path: path.to_path_buf(),
                    found,
                    known,
                });
            }
            std::thread::sleep(Duration::from_millis(50));
            waited += Duration::from_millis(50);
        }
        Ok(Store::sqlite(conn))
    }

    fn sqlite(conn: Connection) -> Store {
        Store {
            backend: Arc::new(Backend::Sqlite(Mutex::new(conn))),
        }
    }

    /// Runs `work` in one write transaction (`BEGIN IMMEDIATE`) on a blocking thread; commits
    /// if it returns `Ok`.
    pub async fn write<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Tx<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        self.on_blocking_thread(move |store| store.write_blocking(work))
            .await
    }

    /// [`Store::read_blocking`] from async code.
    pub async fn read<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Tx<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        self.on_blocking_thread(move |store| store.read_blocking(work))
            .await
    }

    /// [`Store::write`] for callers that are not async (the CLI, tests).
    pub fn write_blocking<T>(
        &self,
        work: impl FnOnce(&Tx<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.transaction(true, work)
    }

    /// Runs read-only `work` in one deferred transaction, so it sees one consistent snapshot.
    pub fn read_blocking<T>(
        &self,
        work: impl FnOnce(&Tx<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.transaction(false, work)
    }

    fn transaction<T>(
        &self,
        write: bool,
        work: impl FnOnce(&Tx<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let conn = match &*self.backend {
            Backend::Sqlite(conn) => conn,
            Backend::Postgres(pg) => return pg.transaction(write, work),
        };
        let behavior = if write {
            TransactionBehavior::Immediate
        } else {
            TransactionBehavior::Deferred
        };
        // A panic inside `work` poisons the mutex, but the transaction was rolled back when
        // it unwound, so the connection is as good as before: keep using it.
        let mut conn = conn
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let transaction = conn.transaction_with_behavior(behavior)?;
        let result = work(&Tx::sqlite(&transaction))?;
        transaction.commit()?;
        Ok(result)
    }

    async fn on_blocking_thread<T: Send + 'static>(
        &self,
        job: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let store = self.clone();
        tokio::task::spawn_blocking(move || job(&store))
            .await
            .map_err(|e| StoreError::Worker(e.to_string()))?
    }
}

/// Applies every pending migration in ONE transaction: readers (the CLI) and a crash see the
/// old schema or the new one, never a half-upgraded database.
fn migrate(conn: &mut Connection, path: &Path) -> Result<(), StoreError> {
    let transaction = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let version: i64 = transaction.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let known = MIGRATIONS.len() as i64;
    if version > known {
        return Err(StoreError::TooNew {
            path: path.to_path_buf(),
            found: version,
            known,
        });
    }
    if version == known {
        return Ok(());
    }
    for sql in MIGRATIONS.iter().skip(version as usize) {
        transaction.execute_batch(sql)?;
    }
    transaction.pragma_update(None, "user_version", known)?;
    transaction.commit()?;
    Ok(())
}

/// Milliseconds since the epoch, as stored.
pub(crate) fn to_ms(at: Timestamp) -> i64 {
    at.as_millisecond()
}

pub fn from_ms(ms: i64) -> Timestamp {
    Timestamp::from_millisecond(ms).unwrap_or(Timestamp::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 17: what the environment does to the database pauses the work (fetch leaves
    /// the message on the server); what the data does quarantines it.
    #[test]
    fn environment_failures_are_transient_and_data_failures_are_not() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("deskgate.db");
        drop(Store::open(&path).expect("create"));
        let read_only = Store::open_read_only(&path).expect("open read-only");
        let write = |store: &Store| {
            store.write_blocking(|tx| {
                tx.record(
                    &Event::new(crate::catalog::EventKind::SmtpTransportFailed),
                    Timestamp::now(),
                )
            })
        };
        let readonly = write(&read_only).expect_err("a read-only database refuses");
        assert!(readonly.is_transient(), "{readonly}");
        let full = StoreError::Sqlite(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_FULL),
            None,
        ));
        assert!(full.is_transient(), "{full}");
        let io = StoreError::Sqlite(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_IOERR_WRITE),
            None,
        ));
        assert!(io.is_transient(), "{io}");
        let corrupt = StoreError::Corrupt("a deadline without its ticket".into());
        assert!(!corrupt.is_transient());
        let unreadable = StoreError::Sqlite(rusqlite::Error::InvalidColumnType(
            0,
            "due_at".into(),
            rusqlite::types::Type::Text,
        ));
        assert!(!unreadable.is_transient());
    }
}
