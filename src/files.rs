//! Files deskgate creates are private, whatever the umask: the database holds every
//! customer's mail, the reply keys' secret-derived tokens and the OAuth refresh tokens.
//!
//! **Architecture Invariant:** a directory deskgate creates is 0700 and a file it creates is
//! 0600 (SQLite gives the `-wal` and `-shm` files the database's own mode). An existing
//! database that others can read is tightened when it is opened for writing.

use std::fs::{DirBuilder, OpenOptions, Permissions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Creates `dir` and any missing parents as 0700 (existing ones are left alone: the
/// database may live in a directory the admin chose, such as `/var/lib`).
pub fn create_dir(dir: &Path) -> std::io::Result<()> {
    DirBuilder::new().recursive(true).mode(0o700).create(dir)
}

/// Makes sure the file at `path` exists and only its owner can read or write it.
pub fn create_private(path: &Path) -> std::io::Result<()> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)?;
    tighten(path)
}

/// Writes `bytes` to `path` (replacing it) as a file only its owner can read.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut file = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    tighten(path)?;
    file.write_all(bytes)
}

/// Takes group and world permissions off an existing file. A file of another user (shared on
/// purpose, e.g. with an MTA's pipe transport running as someone else) is left as its owner
/// made it: only the owner may change its mode, and `check-config` warns about it.
fn tighten(path: &Path) -> std::io::Result<()> {
    let mode = std::fs::metadata(path)?.permissions().mode() & 0o777;
    if mode & 0o077 == 0 {
        return Ok(());
    }
    match std::fs::set_permissions(path, Permissions::from_mode(mode & 0o700)) {
        Err(err) if err.kind() == std::io::ErrorKind::PermissionDenied => Ok(()),
        other => other,
    }
}

/// The database file and the `-wal`/`-shm` files SQLite keeps next to it.
pub fn database_files(database: &Path) -> [PathBuf; 3] {
    let with = |suffix: &str| {
        let mut name = database.as_os_str().to_owned();
        name.push(suffix);
        PathBuf::from(name)
    };
    [database.to_path_buf(), with("-wal"), with("-shm")]
}

/// Takes group and world permissions off the `-wal`/`-shm` files of `database` that exist.
pub fn tighten_database(database: &Path) -> std::io::Result<()> {
    for file in database_files(database).iter().filter(|f| f.exists()) {
        tighten(file)?;
    }
    Ok(())
}

/// The mode of `path` when group or others may read it; `None` when it is private or absent.
pub fn readable_by_others(path: &Path) -> Option<u32> {
    let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
    (mode & 0o044 != 0).then_some(mode)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn created_files_and_directories_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("a/b");
        create_dir(&state).unwrap();
        assert_eq!(mode(&state), 0o700);
        assert_eq!(mode(&dir.path().join("a")), 0o700);
        let db = state.join("x.db");
        create_private(&db).unwrap();
        assert_eq!(mode(&db), 0o600);
        assert_eq!(readable_by_others(&db), None);
        let page = state.join("report.html");
        write_private(&page, b"<p>").unwrap();
        assert_eq!(mode(&page), 0o600);
    }

    #[test]
    fn loose_files_are_found_and_tightened() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("x.db");
        let [_, wal, _] = database_files(&db);
        for file in [&db, &wal] {
            std::fs::write(file, b"").unwrap();
            std::fs::set_permissions(file, Permissions::from_mode(0o644)).unwrap();
        }
        assert_eq!(readable_by_others(&wal), Some(0o644));
        create_private(&db).unwrap();
        tighten_database(&db).unwrap();
        assert_eq!((mode(&db), mode(&wal)), (0o600, 0o600));
    }
}
