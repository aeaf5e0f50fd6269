//! The catalogue: categories, builds, images, sites, tags, devices, device
//! firmware and upgrade operations, kept in one SQLite file in the data
//! directory.
//!
//! The file is opened in WAL mode with foreign keys on and full synchronous
//! writes, so it survives the process being killed at any point and can be
//! shared by the window and `fwu` at the same time. Writes that belong
//! together run in one transaction. Secrets never enter it: devices name
//! vault entries instead.
//!
//! Callers: the upgrade runner, the CLI and the Tauri shell. This module
//! depends on nothing else of the engine but the image types it stores.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use rusqlite::{Connection, OpenFlags};

mod batches;
pub mod bulk;
mod devices;
mod firmware;
mod operations;
pub mod removal;
mod schema;

pub use batches::{Batch, BatchState, NewBatch, Skip};
pub use devices::{Device, DeviceAuth, DeviceFirmware, NewDevice, Probe};
pub use firmware::{Build, Category, Image, NewImage};
pub use operations::{
    LogLine, NewOperation, OperationFilter, Stage, Status, SysupgradeOptions, UpgradeOperation,
};

/// Why a catalogue call failed.
#[derive(Debug, thiserror::Error)]
pub enum CatalogueError {
    #[error("catalogue {path}: {source}")]
    Open {
        path: String,
        source: rusqlite::Error,
    },
    #[error(
        "catalogue was written by a newer version (schema {found}, this one knows {supported})"
    )]
    TooNew { found: u32, supported: u32 },
    #[error("{kind} {name:?} already exists")]
    Duplicate { kind: &'static str, name: String },
    #[error("no {kind} {name:?}")]
    NotFound { kind: &'static str, name: String },
    #[error("{0}")]
    Invalid(String),
    #[error("catalogue: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("catalogue holds malformed JSON in {what}: {source}")]
    Json {
        what: &'static str,
        source: serde_json::Error,
    },
}

/// The catalogue, shareable between tasks. Calls are short and take the
/// connection in turn.
#[derive(Clone)]
pub struct Catalogue {
    conn: Arc<Mutex<Connection>>,
    path: PathBuf,
}

impl Catalogue {
    /// Opens (creating if needed) the catalogue at `path` and brings its
    /// schema up to date.
    pub fn open(path: &Path) -> Result<Catalogue, CatalogueError> {
        let open_error = |source| CatalogueError::Open {
            path: path.display().to_string(),
            source,
        };
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let mut conn = Connection::open_with_flags(path, flags).map_err(open_error)?;
        configure(&conn).map_err(open_error)?;
        schema::migrate(&mut conn)?;
        Ok(Catalogue {
            conn: Arc::new(Mutex::new(conn)),
            path: path.to_path_buf(),
        })
    }

    /// Opens the catalogue file of a data directory, `<dir>/catalogue.sqlite`.
    pub fn open_in(data_dir: &Path) -> Result<Catalogue, CatalogueError> {
        Catalogue::open(&data_dir.join("catalogue.sqlite"))
    }

    /// The file this catalogue lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs SQLite's own consistency check and returns its verdict lines
    /// (`["ok"]` when the file is sound).
    pub fn integrity_check(&self) -> Result<Vec<String>, CatalogueError> {
        let conn = self.lock();
        let mut stmt = conn.prepare("PRAGMA integrity_check")?;
        let lines = stmt
            .query_map([], |row| row.get(0))?
            .collect::<Result<Vec<String>, _>>()?;
        Ok(lines)
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves SQLite itself consistent
        // (transactions roll back on drop), so a poisoned lock is usable.
        self.conn
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn configure(conn: &Connection) -> rusqlite::Result<()> {
    // The window and `fwu` may write at the same time: wait for the other
    // writer rather than fail.
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    Ok(())
}

/// The current time as the catalogue writes it: RFC 3339, UTC, with
/// milliseconds, so that text order is time order.
pub fn now() -> String {
    format_time(time::OffsetDateTime::now_utc())
}

/// Formats a time the way the catalogue stores it.
pub fn format_time(at: time::OffsetDateTime) -> String {
    let at = at.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second(),
        at.millisecond()
    )
}

/// Reads a time the catalogue stored.
pub fn parse_time(text: &str) -> Option<time::OffsetDateTime> {
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()
}

/// Maps SQLite's unique-constraint failure to [`CatalogueError::Duplicate`].
fn duplicate(kind: &'static str, name: &str) -> impl FnOnce(rusqlite::Error) -> CatalogueError {
    let name = name.to_string();
    move |error| match error {
        rusqlite::Error::SqliteFailure(e, _)
            if e.code == rusqlite::ErrorCode::ConstraintViolation
                && e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE =>
        {
            CatalogueError::Duplicate { kind, name }
        }
        other => CatalogueError::Sql(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reopening_keeps_schema_and_data() {
        let dir = tempfile::tempdir().unwrap();
        let catalogue = Catalogue::open_in(dir.path()).unwrap();
        catalogue.add_category("WiFi", "").unwrap();
        drop(catalogue);
        let catalogue = Catalogue::open_in(dir.path()).unwrap();
        assert_eq!(catalogue.categories().unwrap()[0].name, "WiFi");
        assert_eq!(catalogue.integrity_check().unwrap(), vec!["ok".to_string()]);
    }

    #[test]
    fn newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.sqlite");
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
        drop(conn);
        let error = Catalogue::open(&path).err().unwrap();
        assert!(matches!(error, CatalogueError::TooNew { found: 99, .. }));
    }

    #[test]
    fn times_sort_as_text() {
        let a = format_time(time::macros::datetime!(2026-01-02 03:04:05.006 UTC));
        assert_eq!(a, "2026-01-02T03:04:05.006Z");
        assert_eq!(parse_time(&a).unwrap().millisecond(), 6);
    }
}
