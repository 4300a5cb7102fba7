//! `database`: where the store is, SQLite or PostgreSQL.

use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where the store is: `database` in the configuration.
#[derive(Debug, Clone)]
pub enum Database {
    /// A SQLite file (the default).
    Sqlite(PathBuf),
    /// A PostgreSQL database shared by several instances.
    Postgres(PostgresTarget),
}

impl Database {
    /// The file, or the URL without its password: for messages and logs.
    pub fn display(&self) -> String {
        match self {
            Database::Sqlite(path) => path.display().to_string(),
            Database::Postgres(target) => target.display(),
        }
    }

    /// The SQLite file, if this is one.
    pub fn sqlite_path(&self) -> Option<&Path> {
        match self {
            Database::Sqlite(path) => Some(path),
            Database::Postgres(_) => None,
        }
    }
}

impl PartialEq for Database {
    fn eq(&self, other: &Database) -> bool {
        match (self, other) {
            (Database::Sqlite(a), Database::Sqlite(b)) => a == b,
            (Database::Postgres(a), Database::Postgres(b)) => {
                a.url == b.url && a.password == b.password
            }
            _ => false,
        }
    }
}

/// Where the PostgreSQL store is and how to log in.
#[derive(Clone)]
pub struct PostgresTarget {
    /// `postgres://user@host:port/db?sslmode=…` (a password in it works, but
    /// `database_password_file` keeps it out of the file others may read).
    pub url: String,
    /// From `database_password_file`.
    pub password: Option<String>,
    /// `instance`: the payload of this instance's notifications (it ignores its own).
    pub instance: String,
    /// TLS, checked against the configured roots (`ca_file`, else the public ones); used
    /// unless the URL says `sslmode=disable`.
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

impl std::fmt::Debug for PostgresTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresTarget")
            .field("url", &self.display())
            .field("password", &self.password.as_ref().map(|_| "…"))
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

impl PostgresTarget {
    /// The URL without its password, for messages.
    pub fn display(&self) -> String {
        match self.url.split_once("://") {
            Some((scheme, rest)) => match rest.split_once('@') {
                Some((user, host)) => {
                    let user = user.split(':').next().unwrap_or("");
                    format!("{scheme}://{user}@{host}")
                }
                None => self.url.clone(),
            },
            None => self.url.clone(),
        }
    }
}
