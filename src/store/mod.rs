//! Store: the only module that speaks SQL.
//!
//! **Architecture Invariant:** every write happens inside [`Store::write`], one `BEGIN
//! IMMEDIATE` transaction on the single writer connection. An inbound message's facts, its
//! outbox rows, its events and the mailbox checkpoint are written by one call, so a crash
//! leaves either all of them or none.
//!
//! SQLite runs in WAL mode, so the CLI reads while the daemon writes. The schema version is
//! `PRAGMA user_version`; migrations run on open and are idempotent. A PostgreSQL store would
//! implement the same [`Tx`] methods.

mod backup;
mod figures;
mod merge;
mod schedule;
mod tx;
mod views;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::Timestamp;
use rusqlite::{Connection, OpenFlags, TransactionBehavior};

use crate::files;

pub use backup::backup;
pub use figures::{Figures, OutboxNow, Tally};
pub use merge::Moved;
pub use schedule::{NewStep, Paused, StepView, plan_key};
pub use tx::{
    Answered, Backlog, BacklogSummary, Checkpoint, ContactSeen, EarlierTicket, Event, Known, Met,
    MetDeadline, NewMessage, NewOutbox, NewQuarantine, NewTicket, OutboundSent, OutboxRow,
    QuarantineStatus, Quarantined, TicketTexts, Tx, content_key, dedupe_key, legacy_content_key,
};
pub use views::{
    ContactView, EventRecord, EventView, MessageView, OutboxView, QuarantineView, TicketView,
};

/// Schema migrations, applied in order; `user_version` counts how many have run.
const MIGRATIONS: [&str; 9] = [
    include_str!("schema_v1.sql"),
    include_str!("schema_v2.sql"),
    include_str!("schema_v3.sql"),
    include_str!("schema_v4.sql"),
    include_str!("schema_v5.sql"),
    include_str!("schema_v6.sql"),
    include_str!("schema_v7.sql"),
    include_str!("schema_v8.sql"),
    include_str!("schema_v9.sql"),
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
            StoreError::Open { .. } | StoreError::TooNew { .. } | StoreError::TooOld { .. } => true,
            StoreError::Sqlite(_) | StoreError::Corrupt(_) | StoreError::Worker(_) => false,
        }
    }
}

/// A handle on the database: cheap to clone, one writer connection behind a mutex.
#[derive(Clone)]
pub struct Store {
    /// A std mutex, not tokio's: it is only taken inside `spawn_blocking`, never across `.await`.
    conn: Arc<Mutex<Connection>>,
}

impl Store {
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
        Ok(Store {
            conn: Arc::new(Mutex::new(conn)),
        })
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
        Ok(Store {
            conn: Arc::new(Mutex::new(conn)),
        })
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
        self.transaction(TransactionBehavior::Immediate, work)
    }

    /// Runs read-only `work` in one deferred transaction, so it sees one consistent snapshot.
    pub fn read_blocking<T>(
        &self,
        work: impl FnOnce(&Tx<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.transaction(TransactionBehavior::Deferred, work)
    }

    fn transaction<T>(
        &self,
        behavior: TransactionBehavior,
        work: impl FnOnce(&Tx<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        // A panic inside `work` poisons the mutex, but the transaction was rolled back when
        // it unwound, so the connection is as good as before: keep using it.
        let mut conn = self
            .conn
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let transaction = conn.transaction_with_behavior(behavior)?;
        let result = work(&Tx::new(&transaction))?;
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

pub(crate) fn from_ms(ms: i64) -> Timestamp {
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
