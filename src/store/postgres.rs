//! The PostgreSQL backend: one connection per [`super::Store`], reconnected when it breaks,
//! statements prepared once per connection, and the schema in `schema_pg_*.sql`.
//!
//! Write transactions take one transaction-scoped advisory lock ([`WRITE_LOCK`]) before
//! anything else: PostgreSQL's counterpart of SQLite's `BEGIN IMMEDIATE`. Writers of all
//! instances take turns as writers of one SQLite database do, so every read-then-write in
//! `tx/` keeps the meaning it has there. Reads run in a read-only snapshot and take no lock.
//! Every write transaction ends with a notification on [`CHANNEL`], delivered at its commit:
//! the other instances' senders and schedulers wake to what it queued ([`listen`]).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use postgres::{Client, NoTls};
use tokio_postgres::config::SslMode;

use super::StoreError;
use super::sql::{Kind, Param};
use crate::config::PostgresTarget;

/// The advisory lock every write transaction holds ("dg" "wr" in ASCII).
pub(super) const WRITE_LOCK: i64 = 0x6467_7772;
/// How long the server lets a transaction wait for its client before it ends the session.
/// Cut-off transactions queued on the write lock hold it in turn (one per cut-off instance,
/// plus any of its CLI), so two in a row still end within a mailbox lease's validity (10 s)
/// and do not hold a takeover up.
const IDLE_IN_TRANSACTION: Duration = Duration::from_secs(5);

/// Where write transactions announce their commits; the payload is the writer's instance.
pub const CHANNEL: &str = "deskgate";

/// The schema, one migration a file; `deskgate_schema.version` counts how many have run.
const MIGRATIONS: [&str; 1] = [include_str!("schema_pg_v1.sql")];

impl PostgresTarget {
    fn config(&self) -> Result<tokio_postgres::Config, StoreError> {
        let mut config: tokio_postgres::Config = self
            .url
            .parse()
            .map_err(|e| self.open_err(format!("not a PostgreSQL URL: {e}")))?;
        if let Some(password) = &self.password {
            config.password(password);
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        // A server that vanishes without closing the connection (a partition, a host gone)
        // is noticed within about 25 s when idle, and 20 s after a request goes unacknowledged,
        // instead of the kernel's 2 h and 15 min.
        config.keepalives_idle(Duration::from_secs(10));
        config.keepalives_interval(Duration::from_secs(5));
        config.keepalives_retries(3);
        if config.get_tcp_user_timeout().is_none() {
            config.tcp_user_timeout(Duration::from_secs(20));
        }
        config.application_name("deskgate");
        Ok(config)
    }

    fn open_err(&self, reason: impl std::fmt::Display) -> StoreError {
        StoreError::Open {
            path: PathBuf::from(self.display()),
            reason: reason.to_string(),
        }
    }

    pub(super) fn connect(&self) -> Result<Session, StoreError> {
        let config = postgres::Config::from(self.config()?);
        let mut client = match (&self.tls, config.get_ssl_mode()) {
            (_, SslMode::Disable) | (None, _) => config.connect(NoTls),
            (Some(tls), _) => config.connect(tokio_postgres_rustls::MakeRustlsConnect::new(
                (**tls).clone(),
            )),
        }
        .map_err(|e| self.open_err(e))?;
        // An instance cut off in the middle of a write transaction holds WRITE_LOCK, and with
        // it every other instance's writes, until the server ends its session: the server
        // does so once the transaction has waited IDLE_IN_TRANSACTION for its client.
        client
            .batch_execute(&format!(
                "SET idle_in_transaction_session_timeout = {}",
                IDLE_IN_TRANSACTION.as_millis()
            ))
            .map_err(|e| self.open_err(e))?;
        Ok(Session {
            client,
            statements: HashMap::new(),
            instance: self.instance.clone(),
        })
    }
}

/// Listens on [`CHANNEL`] and calls `woken` for every commit of another instance, and once
/// after connecting (commits may have been missed meanwhile); returns when the connection
/// fails. Runs in the daemon's runtime (tokio-postgres, not the blocking client).
pub async fn listen(target: &PostgresTarget, woken: impl Fn()) -> Result<(), StoreError> {
    let config = target.config()?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let (client, driver) = match (&target.tls, config.get_ssl_mode()) {
        (_, SslMode::Disable) | (None, _) => {
            let (client, connection) = config.connect(NoTls).await?;
            (client, tokio::spawn(forward(connection, tx)))
        }
        (Some(tls), _) => {
            let tls = tokio_postgres_rustls::MakeRustlsConnect::new((**tls).clone());
            let (client, connection) = config.connect(tls).await?;
            (client, tokio::spawn(forward(connection, tx)))
        }
    };
    client.batch_execute(&format!("LISTEN {CHANNEL}")).await?;
    woken();
    while let Some(payload) = rx.recv().await {
        if payload != target.instance {
            woken();
        }
    }
    drop(client);
    match driver.await {
        Ok(Ok(())) => Err(StoreError::Worker(
            "the notification connection closed".into(),
        )),
        Ok(Err(err)) => Err(err.into()),
        Err(err) => Err(StoreError::Worker(err.to_string())),
    }
}

/// One connection and the statements prepared on it.
pub struct Session {
    client: Client,
    statements: HashMap<(String, Vec<Kind>), postgres::Statement>,
    /// The payload of this connection's commit notifications.
    instance: String,
}

impl Session {
    fn statement(
        &mut self,
        sql: &str,
        params: &[Param<'_>],
    ) -> Result<postgres::Statement, StoreError> {
        let kinds: Vec<Kind> = params.iter().map(Param::kind).collect();
        let key = (sql.to_string(), kinds);
        if let Some(statement) = self.statements.get(&key) {
            return Ok(statement.clone());
        }
        let types: Vec<_> = key.1.iter().map(|k| k.postgres_type()).collect();
        let statement = self.client.prepare_typed(sql, &types)?;
        self.statements.insert(key, statement.clone());
        Ok(statement)
    }

    fn bind<'p>(params: &'p [Param<'_>]) -> Vec<&'p (dyn postgres::types::ToSql + Sync)> {
        params
            .iter()
            .map(|p| p as &(dyn postgres::types::ToSql + Sync))
            .collect()
    }

    pub(super) fn execute(&mut self, sql: &str, params: &[Param<'_>]) -> Result<usize, StoreError> {
        let statement = self.statement(sql, params)?;
        let n = self.client.execute(&statement, &Self::bind(params))?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }

    pub(super) fn query(
        &mut self,
        sql: &str,
        params: &[Param<'_>],
    ) -> Result<Vec<postgres::Row>, StoreError> {
        let statement = self.statement(sql, params)?;
        Ok(self.client.query(&statement, &Self::bind(params))?)
    }

    pub(super) fn batch(&mut self, sql: &str) -> Result<(), StoreError> {
        Ok(self.client.batch_execute(sql)?)
    }

    fn is_closed(&self) -> bool {
        self.client.is_closed()
    }
}

/// The PostgreSQL side of a [`super::Store`]: a connection made when first needed and made
/// again after it broke.
pub(super) struct Postgres {
    target: PostgresTarget,
    /// Write transactions, one at a time.
    writer: Mutex<Option<Session>>,
    /// Read transactions, so that a read (`/healthz`, the sender's next due row) does not wait
    /// for a batch's commit.
    reader: Mutex<Option<Session>>,
}

impl Postgres {
    /// Connects and brings the schema up to date (`migrate`), or checks it is (`!migrate`).
    /// The connection that checked the schema is kept for what this store does most: writes
    /// (`migrate`) or reads; the other is made when first needed.
    pub(super) fn open(target: &PostgresTarget, migrate: bool) -> Result<Postgres, StoreError> {
        let mut session = target.connect()?;
        let (writer, reader) = if migrate {
            migrate_schema(&mut session, target)?;
            (Some(session), None)
        } else {
            check_schema(&mut session, target)?;
            (None, Some(session))
        };
        Ok(Postgres {
            target: target.clone(),
            writer: Mutex::new(writer),
            reader: Mutex::new(reader),
        })
    }

    pub(super) fn target(&self) -> &PostgresTarget {
        &self.target
    }

    /// Runs `work` in one transaction: a write transaction holds [`WRITE_LOCK`]; a read sees
    /// one snapshot. A broken connection is dropped, so the next call connects again.
    pub(super) fn transaction<T>(
        &self,
        write: bool,
        work: impl FnOnce(&super::Tx<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let slot = if write { &self.writer } else { &self.reader };
        let mut guard = slot
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if guard.as_ref().is_none_or(Session::is_closed) {
            *guard = None;
            *guard = Some(self.target.connect()?);
        }
        let Some(session) = guard.as_mut() else {
            return Err(StoreError::Worker("no PostgreSQL connection".into()));
        };
        let result = run(session, write, work);
        if let Err(err) = &result
            && (session.is_closed() || err.is_transient())
        {
            *guard = None;
        }
        result
    }
}

/// Drives a listening connection, passing each notification's payload on.
async fn forward<S, T>(
    mut connection: tokio_postgres::Connection<S, T>,
    payloads: tokio::sync::mpsc::UnboundedSender<String>,
) -> Result<(), tokio_postgres::Error>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use futures_util::StreamExt;
    let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
    while let Some(message) = messages.next().await {
        if let tokio_postgres::AsyncMessage::Notification(n) = message? {
            let _ = payloads.send(n.payload().to_string());
        }
    }
    Ok(())
}

impl Drop for Postgres {
    /// Closing a connection blocks on the client's own runtime, which must not start inside
    /// another: the daemon drops its store on a runtime thread, so it is closed on a thread
    /// of its own (as [`super::Store::connect`] opens it).
    fn drop(&mut self) {
        let sessions: Vec<Session> = [&mut self.writer, &mut self.reader]
            .into_iter()
            .filter_map(|slot| {
                slot.get_mut()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .take()
            })
            .collect();
        if !sessions.is_empty() && tokio::runtime::Handle::try_current().is_ok() {
            let _ = std::thread::spawn(move || drop(sessions)).join();
        }
    }
}

fn run<T>(
    session: &mut Session,
    write: bool,
    work: impl FnOnce(&super::Tx<'_>) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    if write {
        session.batch(&format!(
            "BEGIN; SELECT pg_advisory_xact_lock({WRITE_LOCK})"
        ))?;
    } else {
        session.batch("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")?;
    }
    let result = work(&super::Tx::postgres(session));
    match result {
        Ok(value) => {
            if write {
                let instance = session.instance.clone();
                session.execute(
                    &format!("SELECT pg_notify('{CHANNEL}', $1)"),
                    &[Param::Text(&instance)],
                )?;
            }
            session.batch("COMMIT")?;
            Ok(value)
        }
        Err(err) => {
            // A failed ROLLBACK means the connection is gone; the caller drops it.
            let _ = session.batch("ROLLBACK");
            Err(err)
        }
    }
}

fn schema_version(session: &mut Session) -> Result<i64, StoreError> {
    let rows = session.query(
        "SELECT CAST(count(*) AS BIGINT) FROM information_schema.tables
         WHERE table_schema = current_schema() AND table_name = 'deskgate_schema'",
        &[],
    )?;
    let exists = rows.first().map(|r| r.get::<_, i64>(0)).unwrap_or(0) > 0;
    if !exists {
        return Ok(0);
    }
    let rows = session.query("SELECT version FROM deskgate_schema", &[])?;
    Ok(rows.first().map(|r| r.get::<_, i64>(0)).unwrap_or(0))
}

/// Applies every pending migration in one transaction, under a lock, so instances starting
/// together upgrade once.
fn migrate_schema(session: &mut Session, target: &PostgresTarget) -> Result<(), StoreError> {
    session.batch(&format!(
        "BEGIN; SELECT pg_advisory_xact_lock({WRITE_LOCK})"
    ))?;
    let result = (|| {
        let version = schema_version(session)?;
        let known = MIGRATIONS.len() as i64;
        if version > known {
            return Err(StoreError::TooNew {
                path: PathBuf::from(target.display()),
                found: version,
                known,
            });
        }
        for sql in MIGRATIONS
            .iter()
            .skip(usize::try_from(version).unwrap_or(0))
        {
            session.batch(sql)?;
        }
        if version < known {
            session.execute(
                "UPDATE deskgate_schema SET version = $1",
                &[Param::Int(known)],
            )?;
        }
        Ok(())
    })();
    match result {
        Ok(()) => session.batch("COMMIT"),
        Err(err) => {
            let _ = session.batch("ROLLBACK");
            Err(err)
        }
    }
}

fn check_schema(session: &mut Session, target: &PostgresTarget) -> Result<(), StoreError> {
    let found = schema_version(session)?;
    let known = MIGRATIONS.len() as i64;
    let path = PathBuf::from(target.display());
    match found.cmp(&known) {
        std::cmp::Ordering::Greater => Err(StoreError::TooNew { path, found, known }),
        std::cmp::Ordering::Less => Err(StoreError::TooOld { path, found, known }),
        std::cmp::Ordering::Equal => Ok(()),
    }
}

/// What went wrong, for messages: the server's own words and SQLSTATE (the error's `Display`
/// says only "db error"), or what ended the connection.
pub(super) fn describe(err: &postgres::Error) -> String {
    if let Some(db) = err.as_db_error() {
        let mut text = format!("{} ({})", db.message(), db.code().code());
        if let Some(detail) = db.detail() {
            text.push_str(": ");
            text.push_str(detail);
        }
        return text;
    }
    match std::error::Error::source(err) {
        Some(source) => format!("{err}: {source}"),
        None => err.to_string(),
    }
}

/// Whether a PostgreSQL error is about the database's state (gone, restarting, out of room,
/// a standby) rather than the data: the same work may succeed later.
pub(super) fn is_transient(err: &postgres::Error) -> bool {
    let Some(code) = err.code() else {
        // No SQLSTATE: the connection failed or closed.
        return true;
    };
    let code = code.code();
    code.starts_with("08")
        || code.starts_with("53")
        || code.starts_with("57P")
        || matches!(
            code,
            "40001" | "40P01" | "25006" | "55P03" | "58000" | "58030"
        )
}
