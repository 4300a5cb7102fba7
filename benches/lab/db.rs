//! The stores the benchmark measures deskgate on, and its reads of them: SQLite (a file in the
//! setup directory, read-only connections while the daemon writes) or PostgreSQL (a database
//! on the run's private server, read over TLS as the daemon connects).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::postgres::Postgres;

/// Where the measured daemons keep their state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// One daemon, a SQLite file on the lab's tmpfs.
    Sqlite,
    /// This many daemons (instances `desk-a`, `desk-b`) on one fresh PostgreSQL database,
    /// sharing the mailbox (lease) and the outbox (claims).
    Postgres { instances: usize },
}

impl Backend {
    /// How the report names the store.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "SQLite",
            Backend::Postgres { instances: 1 } => "PostgreSQL, one instance",
            Backend::Postgres { .. } => "PostgreSQL, two instances on one database and mailbox",
        }
    }

    pub fn instances(self) -> usize {
        match self {
            Backend::Sqlite => 1,
            Backend::Postgres { instances } => instances,
        }
    }
}

/// A connection to a measured daemon's store, for counting what it has committed.
pub enum Db {
    /// The file; opened read-only for each query, as another process would.
    Sqlite(PathBuf),
    Postgres(tokio_postgres::Client),
}

impl Db {
    /// The database `url` on `pg` (TLS verified against the server's certificate, its
    /// password).
    pub async fn postgres(pg: &Postgres, url: &str) -> Db {
        let mut config: tokio_postgres::Config = url.parse().expect("a PostgreSQL URL");
        config.password(pg.password());
        let tls = tokio_postgres_rustls::MakeRustlsConnect::new(pg.tls_config());
        let (client, connection) = config
            .connect(tls)
            .await
            .unwrap_or_else(|e| panic!("connect to {url}: {e}"));
        tokio::spawn(connection);
        Db::Postgres(client)
    }

    /// The first `K` columns of the first row of `sql`, as integers (NULL as 0).
    async fn try_ints<const K: usize>(&self, sql: &str) -> Result<[i64; K], String> {
        let mut out = [0; K];
        match self {
            Db::Sqlite(path) => {
                let conn = rusqlite::Connection::open_with_flags(
                    path,
                    rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
                )
                .map_err(|e| e.to_string())?;
                conn.query_row(sql, [], |r| {
                    for (i, v) in out.iter_mut().enumerate() {
                        *v = r.get::<_, Option<i64>>(i)?.unwrap_or(0);
                    }
                    Ok(())
                })
                .map_err(|e| e.to_string())?;
            }
            Db::Postgres(client) => {
                let row = client
                    .query_one(sql, &[])
                    .await
                    .map_err(|e| e.to_string())?;
                for (i, v) in out.iter_mut().enumerate() {
                    *v = row
                        .try_get::<_, Option<i64>>(i)
                        .map_err(|e| e.to_string())?
                        .unwrap_or(0);
                }
            }
        }
        Ok(out)
    }

    /// [`Db::try_ints`] that panics on an error.
    pub async fn ints<const K: usize>(&self, sql: &str) -> [i64; K] {
        self.try_ints(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// Runs statements that return nothing.
    pub async fn execute(&self, sql: &str) {
        match self {
            Db::Sqlite(path) => rusqlite::Connection::open(path)
                .and_then(|conn| conn.execute_batch(sql))
                .unwrap_or_else(|e| panic!("{sql}: {e}")),
            Db::Postgres(client) => client
                .batch_execute(sql)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}")),
        }
    }

    /// Polls every 20 ms until `sql` counts `n`; panics after `limit`. A store not created
    /// yet counts 0.
    pub async fn wait_count(&self, sql: &str, n: usize, limit: Duration) {
        let started = Instant::now();
        let mut last = 0;
        loop {
            if let Ok([count]) = self.try_ints(sql).await {
                last = count as usize;
                if last >= n {
                    return;
                }
            }
            assert!(
                started.elapsed() < limit,
                "{sql}: {last} of {n} after {limit:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// What the report says about the server: version, storage, durability settings.
pub async fn describe(pg: &Postgres, db: &Db) -> String {
    let Db::Postgres(client) = db else {
        return String::new();
    };
    let mut settings = Vec::new();
    for name in [
        "server_version",
        "fsync",
        "synchronous_commit",
        "full_page_writes",
        "shared_buffers",
    ] {
        let row = client
            .query_one(&format!("SHOW {name}"), &[])
            .await
            .unwrap_or_else(|e| panic!("SHOW {name}: {e}"));
        settings.push((name, row.get::<_, String>(0)));
    }
    let value = |name: &str| {
        settings
            .iter()
            .find(|(n, _)| *n == name)
            .map_or("?", |(_, v)| v.as_str())
    };
    let storage = std::process::Command::new("stat")
        .args(["-f", "-c", "%T"])
        .arg(&pg.dir)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    format!(
        "PostgreSQL {} (a private server of tests/lab/postgres.sh, its defaults: data in {} \
         ({storage}), fsync = {}, synchronous_commit = {}, full_page_writes = {}, \
         shared_buffers = {}; deskgate connects over TLS on 127.0.0.1).",
        value("server_version"),
        pg.dir.display(),
        value("fsync"),
        value("synchronous_commit"),
        value("full_page_writes"),
        value("shared_buffers"),
    )
}
