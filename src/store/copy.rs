//! `deskgate migrate-store`: a SQLite store copied into an empty PostgreSQL one, so a desk
//! moves without losing a ticket number, a deadline or a step already taken.
//!
//! Everything happens in one read transaction on the source (one consistent state) and one
//! write transaction on the target: the target is either the whole copy or as empty as it
//! was. Rows keep their ids; each table is read in rowid order and written in small
//! multi-row `INSERT`s (at most [`CHUNK_ROWS`] rows or [`CHUNK_BYTES`] of text and bytes, or
//! one row larger than that), so memory stays bounded whatever the size of the messages.
//! Columns are those of the SQLite table, each bound with the type of the PostgreSQL
//! column; a value that does not fit that type stops the copy, naming table, row and column.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::sql::{Kind, Param, Value, params};
use super::tx::Optional;
use super::{Dialect, Store, StoreError, Tx};

/// Every table with content, parents before children (foreign keys). `mailbox_owners` and
/// `instances` are not copied: they describe daemons running on a database, and those on
/// the new one register themselves.
pub const TABLES: [&str; 11] = [
    "mailbox_state",
    "tickets",
    "participants",
    "messages",
    "deadlines",
    "outbox",
    "events",
    "contacts",
    "quarantine",
    "oauth_grants",
    "steps",
];

/// Tables of the SQLite schema left behind on purpose (see [`TABLES`]), and SQLite's own.
const NOT_COPIED: [&str; 3] = ["mailbox_owners", "instances", "sqlite_sequence"];

/// Rows per `INSERT` at most (PostgreSQL takes up to 65,535 parameters a statement).
const CHUNK_ROWS: usize = 500;

/// Text and bytes per `INSERT` at most, unless a single row is larger.
const CHUNK_BYTES: usize = 4 << 20;

/// Why the copy did not happen.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// The target has rows already: nothing was copied.
    #[error("the target is not empty ({}); migrate-store fills an empty database only, and copied nothing", describe(.tables))]
    NotEmpty { tables: Vec<(String, u64)> },
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn describe(tables: &[(String, u64)]) -> String {
    tables
        .iter()
        .map(|(table, rows)| format!("{table}: {rows} row{}", if *rows == 1 { "" } else { "s" }))
        .collect::<Vec<_>>()
        .join(", ")
}

/// What was copied: each table in the order copied.
#[derive(Debug, Clone, Default)]
pub struct Copied {
    pub tables: Vec<TableCopied>,
}

#[derive(Debug, Clone)]
pub struct TableCopied {
    pub table: &'static str,
    pub rows: u64,
    /// Text and bytes copied (the size of the values, not of the table on disk).
    pub bytes: u64,
    pub elapsed: Duration,
}

impl Copied {
    pub fn rows(&self) -> u64 {
        self.tables.iter().map(|t| t.rows).sum()
    }

    pub fn bytes(&self) -> u64 {
        self.tables.iter().map(|t| t.bytes).sum()
    }

    /// Rows copied into `table`.
    pub fn of(&self, table: &str) -> Option<u64> {
        self.tables
            .iter()
            .find(|t| t.table == table)
            .map(|t| t.rows)
    }
}

/// Copies the SQLite store `from` into the PostgreSQL store `to`, which must have no row in
/// any table. `progress` is called with (table, rows copied, rows in the table) when a table
/// starts and after each chunk. Identity sequences continue after the largest id copied (or
/// used: SQLite's `AUTOINCREMENT` counter for tickets). Each table's row count is checked
/// against the source before the transaction commits.
pub fn copy_store(
    from: &Store,
    to: &Store,
    mut progress: impl FnMut(&str, u64, u64),
) -> Result<Copied, CopyError> {
    if from.dialect() != Dialect::Sqlite || to.dialect() != Dialect::Postgres {
        return Err(StoreError::Open {
            path: to.describe().into(),
            reason: "migrate-store copies a SQLite database into a PostgreSQL one".into(),
        }
        .into());
    }
    // The emptiness check runs in the write transaction, under the write lock, so nothing
    // can arrive between it and the copy; a target with rows ends that transaction having
    // written nothing.
    let copied = from.read_blocking(|src| {
        to.write_blocking(|dst| {
            let occupied = occupied(dst)?;
            if !occupied.is_empty() {
                return Ok(Err(occupied));
            }
            copy_all(src, dst, &mut progress).map(Ok)
        })
    })?;
    copied.map_err(|tables| CopyError::NotEmpty { tables })
}

/// The target's tables that have rows, with their counts (`deskgate_schema` aside).
fn occupied(dst: &Tx<'_>) -> Result<Vec<(String, u64)>, StoreError> {
    let tables: Vec<String> = dst
        .prepare(
            "SELECT CAST(table_name AS TEXT) FROM information_schema.tables
             WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'
               AND table_name <> 'deskgate_schema'
             ORDER BY 1",
        )?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    let mut found = Vec::new();
    for table in tables {
        let rows = count(dst, &table)?;
        if rows > 0 {
            found.push((table, rows));
        }
    }
    Ok(found)
}

fn count(tx: &Tx<'_>, table: &str) -> Result<u64, StoreError> {
    tx.query_row(
        &format!("SELECT CAST(count(*) AS BIGINT) FROM {}", quote(table)),
        [],
        |r| r.get(0),
    )
}

fn copy_all(
    src: &Tx<'_>,
    dst: &Tx<'_>,
    progress: &mut impl FnMut(&str, u64, u64),
) -> Result<Copied, StoreError> {
    check_source_tables(src)?;
    let mut copied = Copied::default();
    let mut totals = Vec::new();
    for table in TABLES {
        totals.push(count(src, table)?);
    }
    for (table, total) in TABLES.into_iter().zip(totals.iter().copied()) {
        let started = Instant::now();
        progress(table, 0, total);
        let (rows, bytes) = copy_table(src, dst, table, total, progress)?;
        copied.tables.push(TableCopied {
            table,
            rows,
            bytes,
            elapsed: started.elapsed(),
        });
    }
    continue_sequences(src, dst)?;
    for (done, total) in copied.tables.iter().zip(totals) {
        let now = count(dst, done.table)?;
        if now != total || done.rows != total {
            return Err(StoreError::Corrupt(format!(
                "{}: {total} rows in the source, {} copied, {now} in the target; nothing was copied",
                done.table, done.rows
            )));
        }
    }
    Ok(copied)
}

/// Refuses a source with a table this deskgate does not know how to copy (a newer schema
/// would have failed to open; this guards [`TABLES`] against a migration added later).
fn check_source_tables(src: &Tx<'_>) -> Result<(), StoreError> {
    let tables: Vec<String> = src
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    match tables
        .iter()
        .find(|t| !TABLES.contains(&t.as_str()) && !NOT_COPIED.contains(&t.as_str()))
    {
        Some(unknown) => Err(StoreError::Corrupt(format!(
            "the source has a table `{unknown}` migrate-store does not copy"
        ))),
        None => Ok(()),
    }
}

/// One value of a row being copied, owned (the source row is gone once the next is read).
#[derive(Debug)]
enum Cell {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

impl Cell {
    fn param(&self, kind: Kind) -> Param<'_> {
        match self {
            Cell::Null => Param::Null(kind),
            Cell::Int(i) => Param::Int(*i),
            Cell::Real(f) => Param::Real(*f),
            Cell::Text(s) => Param::Text(s),
            Cell::Blob(b) => Param::Blob(b),
        }
    }

    fn size(&self) -> usize {
        match self {
            Cell::Text(s) => s.len(),
            Cell::Blob(b) => b.len(),
            Cell::Null | Cell::Int(_) | Cell::Real(_) => 8,
        }
    }

    /// `value` as the target column's `kind` takes it; `None` if it does not fit.
    fn of(value: Value<'_>, kind: Kind) -> Option<Cell> {
        Some(match (value, kind) {
            (Value::Null, _) => Cell::Null,
            (Value::Int(i), Kind::Int) => Cell::Int(i),
            (Value::Int(i), Kind::Real) => Cell::Real(i as f64),
            (Value::Real(f), Kind::Real) => Cell::Real(f),
            (Value::Text(s), Kind::Text) => Cell::Text(s.to_string()),
            (Value::Text(s), Kind::Blob) => Cell::Blob(s.as_bytes().to_vec()),
            (Value::Blob(b), Kind::Blob) => Cell::Blob(b.to_vec()),
            (Value::Blob(b), Kind::Text) => Cell::Text(std::str::from_utf8(b).ok()?.to_string()),
            _ => return None,
        })
    }
}

/// The columns of `table` in the source, each with the kind of the target's column.
fn columns(src: &Tx<'_>, dst: &Tx<'_>, table: &str) -> Result<Vec<(String, Kind)>, StoreError> {
    let names: Vec<String> = src
        .prepare("SELECT name FROM pragma_table_info(?1) ORDER BY cid")?
        .query_map([table], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    let mut target = HashMap::new();
    dst.each_row(
        "SELECT CAST(column_name AS TEXT), CAST(data_type AS TEXT) FROM information_schema.columns
         WHERE table_schema = current_schema() AND table_name = ?1",
        [table],
        |r| {
            target.insert(r.get::<_, String>(0)?, r.get::<_, String>(1)?);
            Ok(())
        },
    )?;
    if target.is_empty() {
        return Err(StoreError::Corrupt(format!(
            "the target has no table {table}"
        )));
    }
    names
        .into_iter()
        .map(|name| {
            let kind = match target.get(&name).map(String::as_str) {
                Some("bigint" | "integer" | "smallint") => Kind::Int,
                Some("double precision" | "real" | "numeric") => Kind::Real,
                Some("text" | "character varying" | "character") => Kind::Text,
                Some("bytea") => Kind::Blob,
                Some(other) => {
                    return Err(StoreError::Corrupt(format!(
                        "{table}.{name} has type {other} in the target, which migrate-store does not write"
                    )));
                }
                None => {
                    return Err(StoreError::Corrupt(format!(
                        "the target's table {table} has no column {name}"
                    )));
                }
            };
            Ok((name, kind))
        })
        .collect()
}

/// Copies one table in chunks; (rows, bytes) copied.
fn copy_table(
    src: &Tx<'_>,
    dst: &Tx<'_>,
    table: &'static str,
    total: u64,
    progress: &mut impl FnMut(&str, u64, u64),
) -> Result<(u64, u64), StoreError> {
    let columns = columns(src, dst, table)?;
    let names: Vec<String> = columns.iter().map(|(name, _)| quote(name)).collect();
    let kinds: Vec<Kind> = columns.iter().map(|(_, kind)| *kind).collect();
    let select = format!(
        "SELECT rowid, {} FROM {} ORDER BY rowid",
        names.join(", "),
        quote(table)
    );
    let max_rows = CHUNK_ROWS.min(65_535 / columns.len().max(1));
    let mut chunk = Chunk {
        table,
        columns: names.join(", "),
        kinds,
        rows: Vec::new(),
        bytes: 0,
        statements: HashMap::new(),
    };
    let (mut rows, mut bytes) = (0u64, 0u64);
    src.each_row(&select, [], |r| {
        let rowid: i64 = r.get(0)?;
        let mut cells = Vec::with_capacity(columns.len());
        for (i, (name, kind)) in columns.iter().enumerate() {
            let value = r.value(i + 1)?;
            let cell = Cell::of(value, *kind).ok_or_else(|| {
                StoreError::Corrupt(format!(
                    "{table} row {rowid}: column {name} holds {}, which does not fit the target's column",
                    describe_value(value)
                ))
            })?;
            cells.push(cell);
        }
        chunk.push(cells);
        if chunk.rows.len() >= max_rows || chunk.bytes >= CHUNK_BYTES {
            let (n, b) = chunk.flush(dst)?;
            rows += n;
            bytes += b;
            progress(table, rows, total);
        }
        Ok(())
    })?;
    if !chunk.rows.is_empty() {
        let (n, b) = chunk.flush(dst)?;
        rows += n;
        bytes += b;
        progress(table, rows, total);
    }
    Ok((rows, bytes))
}

fn describe_value(value: Value<'_>) -> &'static str {
    match value {
        Value::Null => "NULL",
        Value::Int(_) => "an integer",
        Value::Real(_) => "a real number",
        Value::Text(_) => "text",
        Value::Blob(_) => "bytes that are not UTF-8",
    }
}

/// Rows read and not yet written.
struct Chunk {
    table: &'static str,
    columns: String,
    kinds: Vec<Kind>,
    rows: Vec<Vec<Cell>>,
    bytes: usize,
    /// The `INSERT` for a number of rows.
    statements: HashMap<usize, String>,
}

impl Chunk {
    fn push(&mut self, cells: Vec<Cell>) {
        self.bytes += cells.iter().map(Cell::size).sum::<usize>();
        self.rows.push(cells);
    }

    /// Writes the rows held in one `INSERT`; (rows, bytes) written.
    fn flush(&mut self, dst: &Tx<'_>) -> Result<(u64, u64), StoreError> {
        let n = self.rows.len();
        let width = self.kinds.len();
        let sql = self.statements.entry(n).or_insert_with(|| {
            let tuples: Vec<String> = (0..n)
                .map(|row| {
                    let marks: Vec<String> = (1..=width)
                        .map(|col| format!("?{}", row * width + col))
                        .collect();
                    format!("({})", marks.join(", "))
                })
                .collect();
            format!(
                "INSERT INTO {} ({}) VALUES {}",
                quote(self.table),
                self.columns,
                tuples.join(", ")
            )
        });
        let params: Vec<Param<'_>> = self
            .rows
            .iter()
            .flat_map(|row| row.iter().zip(&self.kinds).map(|(c, k)| c.param(*k)))
            .collect();
        let written = dst.execute(sql, params.as_slice())?;
        if written != n {
            return Err(StoreError::Corrupt(format!(
                "{}: {n} rows inserted, {written} written",
                self.table
            )));
        }
        let bytes = self.bytes as u64;
        self.rows.clear();
        self.bytes = 0;
        Ok((n as u64, bytes))
    }
}

/// Moves each identity sequence of the target past the largest id copied, and past SQLite's
/// `AUTOINCREMENT` counter where there is one (a number once given is never given again).
fn continue_sequences(src: &Tx<'_>, dst: &Tx<'_>) -> Result<(), StoreError> {
    let identities: Vec<(String, String)> = dst
        .prepare(
            "SELECT CAST(table_name AS TEXT), CAST(column_name AS TEXT)
             FROM information_schema.columns
             WHERE table_schema = current_schema() AND is_identity = 'YES'
             ORDER BY 1",
        )?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    let has_sequence_table: bool = src.query_row(
        "SELECT count(*) > 0 FROM sqlite_master WHERE name = 'sqlite_sequence'",
        [],
        |r| r.get(0),
    )?;
    for (table, column) in identities {
        if !TABLES.contains(&table.as_str()) {
            continue;
        }
        let largest: Option<i64> = src.query_row(
            &format!("SELECT max({}) FROM {}", quote(&column), quote(&table)),
            [],
            |r| r.get(0),
        )?;
        let counter: Option<i64> = if has_sequence_table {
            src.query_row(
                "SELECT seq FROM sqlite_sequence WHERE name = ?1",
                [table.as_str()],
                |r| r.get(0),
            )
            .optional()?
        } else {
            None
        };
        let Some(last) = largest.max(counter).filter(|n| *n > 0) else {
            continue;
        };
        dst.query_row(
            "SELECT setval(pg_get_serial_sequence(?1, ?2), ?3, true)",
            params![table, column, last],
            |r| r.get::<_, i64>(0),
        )?;
    }
    Ok(())
}

/// `name` as an SQL identifier.
fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every table of the SQLite schema is copied or left behind on purpose.
    #[test]
    fn every_sqlite_table_is_accounted_for() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(&dir.path().join("deskgate.db")).expect("store");
        store
            .read_blocking(check_source_tables)
            .expect("every table known");
        let tables: Vec<String> = store
            .read_blocking(|tx| {
                tx.prepare("SELECT name FROM sqlite_master WHERE type = 'table'")?
                    .query_map([], |r| r.get(0))?
                    .collect()
            })
            .expect("tables");
        for table in TABLES {
            assert!(tables.iter().any(|t| t == table), "{table} in the schema");
        }
    }

    #[test]
    fn values_take_the_target_columns_type() {
        let null = Cell::of(Value::Null, Kind::Text).expect("NULL fits");
        assert!(matches!(null.param(Kind::Text), Param::Null(Kind::Text)));
        assert!(matches!(
            Cell::of(Value::Int(3), Kind::Real),
            Some(Cell::Real(3.0))
        ));
        assert!(matches!(
            Cell::of(Value::Blob(b"ok"), Kind::Text),
            Some(Cell::Text(ref s)) if s == "ok"
        ));
        assert!(Cell::of(Value::Blob(&[0xff]), Kind::Text).is_none());
        assert!(Cell::of(Value::Text("7"), Kind::Int).is_none());
    }
}
