//! `deskgate backup FILE`: a consistent copy of the database while the daemon runs, with
//! SQLite's online backup API.
//!
//! The copy is made page by page from a read-only connection (WAL: the daemon keeps
//! writing meanwhile; a write between two steps makes SQLite start the copy again, so
//! the result is always one committed state). It is written to `FILE.partial`, checked
//! (`PRAGMA quick_check`) and renamed to FILE, so FILE is either complete or absent.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, OpenFlags};

use super::StoreError;

/// Pages copied per step: small enough to show progress, large enough to finish before the
/// daemon's next write on a busy desk.
const PAGES_PER_STEP: std::ffi::c_int = 1024;

/// Copies the database at `source` to `dest` (which must not exist). `progress` is called
/// after each step with (pages copied, pages in all). Returns the number of pages.
pub fn backup(source: &Path, dest: &Path, progress: impl Fn(u64, u64)) -> Result<u64, StoreError> {
    let open_err = |path: &Path, reason: String| StoreError::Open {
        path: path.to_path_buf(),
        reason,
    };
    if dest.exists() {
        return Err(open_err(dest, "exists already; name a new file".into()));
    }
    let from = Connection::open_with_flags(source, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|e| open_err(source, e.to_string()))?;
    from.busy_timeout(Duration::from_secs(10))?;
    let partial = partial_path(dest);
    let _ = std::fs::remove_file(&partial);
    // A copy of every customer's mail and the OAuth tokens: private, as the database is.
    crate::files::create_private(&partial).map_err(|e| open_err(&partial, e.to_string()))?;
    let mut to = Connection::open(&partial).map_err(|e| open_err(&partial, e.to_string()))?;
    let pages = copy(&from, &mut to, progress)?;
    let check: String = to.query_row("PRAGMA quick_check", [], |r| r.get(0))?;
    drop(to);
    if check != "ok" {
        let _ = std::fs::remove_file(&partial);
        return Err(StoreError::Corrupt(format!(
            "the copy fails its check: {check}"
        )));
    }
    std::fs::rename(&partial, dest).map_err(|e| open_err(dest, e.to_string()))?;
    Ok(pages)
}

fn copy(
    from: &Connection,
    to: &mut Connection,
    progress: impl Fn(u64, u64),
) -> Result<u64, StoreError> {
    let backup = Backup::new(from, to)?;
    loop {
        let step = backup.step(PAGES_PER_STEP)?;
        let p = backup.progress();
        let total = u64::try_from(p.pagecount).unwrap_or(0);
        let left = u64::try_from(p.remaining).unwrap_or(0);
        progress(total.saturating_sub(left), total);
        match step {
            StepResult::Done => return Ok(total),
            StepResult::More => {}
            // Busy or locked: the daemon holds a lock for a moment; wait, as its busy
            // timeout would.
            _ => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

fn partial_path(dest: &Path) -> PathBuf {
    let mut name = dest.as_os_str().to_os_string();
    name.push(".partial");
    PathBuf::from(name)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::store::Store;

    #[test]
    fn the_copy_is_a_working_database_and_an_existing_file_is_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        let source = dir.path().join("deskgate.db");
        let store = Store::open(&source).expect("store");
        store
            .write_blocking(|tx| {
                tx.record(
                    &crate::store::Event {
                        detail: "before the backup".into(),
                        ..crate::store::Event::new(crate::catalog::EventKind::SmtpTransportFailed)
                    },
                    jiff::Timestamp::now(),
                )
            })
            .expect("event");
        let dest = dir.path().join("copy.db");
        let seen = std::cell::Cell::new(0);
        let pages = backup(&source, &dest, |done, _| seen.set(done)).expect("backup");
        assert!(pages > 0 && seen.get() == pages);
        let copy = Store::open_read_only(&dest).expect("the copy opens");
        let events = copy
            .read_blocking(|tx| tx.events("smtp.", 10))
            .expect("read");
        assert_eq!(events.len(), 1);
        assert!(!partial_path(&dest).exists());
        let mode = std::fs::metadata(&dest).expect("copy").permissions().mode() & 0o777;
        assert_eq!(
            mode, 0o600,
            "a copy of the database is as private as the database"
        );
        let again = backup(&source, &dest, |_, _| {}).unwrap_err();
        assert!(again.to_string().contains("exists already"), "{again}");
    }
}
