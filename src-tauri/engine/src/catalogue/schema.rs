//! The catalogue's schema as numbered migrations.
//!
//! Migration N brings a catalogue from `user_version` N-1 to N. A migration
//! is never edited once released: a change to the schema is a new entry at
//! the end of [`MIGRATIONS`]. Each one runs in its own transaction together
//! with the bump of `user_version`, so a catalogue is never half migrated.

use rusqlite::Connection;

use super::CatalogueError;

/// Every migration, in order; index 0 is migration 1.
const MIGRATIONS: &[&str] = &[
    // 1: firmware, devices, upgrade operations and their logs.
    r#"
    CREATE TABLE category (
        id          INTEGER PRIMARY KEY,
        name        TEXT NOT NULL UNIQUE,
        description TEXT NOT NULL DEFAULT '',
        created_at  TEXT NOT NULL
    );
    CREATE TABLE build (
        id            INTEGER PRIMARY KEY,
        category_id   INTEGER NOT NULL REFERENCES category(id),
        version       TEXT NOT NULL,
        os_identifier TEXT,
        changelog     TEXT NOT NULL DEFAULT '',
        created_at    TEXT NOT NULL,
        UNIQUE (category_id, version)
    );
    CREATE INDEX build_os_identifier ON build(os_identifier);
    CREATE TABLE image (
        id          INTEGER PRIMARY KEY,
        build_id    INTEGER NOT NULL REFERENCES build(id),
        type        TEXT NOT NULL,
        file_name   TEXT NOT NULL,
        size        INTEGER NOT NULL,
        sha256      TEXT NOT NULL,
        boards      TEXT NOT NULL,
        metadata    TEXT,
        created_at  TEXT NOT NULL,
        UNIQUE (build_id, type)
    );
    CREATE TABLE site (
        id   INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE
    );
    CREATE TABLE tag (
        id   INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE
    );
    CREATE TABLE device (
        id            INTEGER PRIMARY KEY,
        name          TEXT NOT NULL UNIQUE,
        site_id       INTEGER REFERENCES site(id),
        host          TEXT NOT NULL,
        port          INTEGER NOT NULL DEFAULT 22,
        user          TEXT NOT NULL DEFAULT 'root',
        auth          TEXT NOT NULL CHECK (auth IN ('password', 'key', 'agent')),
        credential    TEXT,
        key_file      TEXT,
        host_key      TEXT,
        board         TEXT,
        model         TEXT,
        os_identifier TEXT,
        mac           TEXT,
        boot_id       TEXT,
        uptime        INTEGER,
        last_seen     TEXT,
        created_at    TEXT NOT NULL
    );
    CREATE INDEX device_site ON device(site_id);
    CREATE TABLE device_address (
        device_id INTEGER NOT NULL REFERENCES device(id) ON DELETE CASCADE,
        position  INTEGER NOT NULL,
        address   TEXT NOT NULL,
        PRIMARY KEY (device_id, position)
    );
    CREATE TABLE device_tag (
        device_id INTEGER NOT NULL REFERENCES device(id) ON DELETE CASCADE,
        tag_id    INTEGER NOT NULL REFERENCES tag(id),
        PRIMARY KEY (device_id, tag_id)
    );
    CREATE TABLE device_firmware (
        device_id  INTEGER PRIMARY KEY REFERENCES device(id) ON DELETE CASCADE,
        image_id   INTEGER NOT NULL REFERENCES image(id),
        installed  INTEGER NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE TABLE upgrade_operation (
        id              INTEGER PRIMARY KEY,
        device_id       INTEGER NOT NULL REFERENCES device(id),
        image_id        INTEGER NOT NULL REFERENCES image(id),
        batch_id        INTEGER,
        status          TEXT NOT NULL CHECK (status IN ('pending', 'in-progress',
                            'success', 'not-needed', 'failed', 'aborted', 'cancelled')),
        stage           TEXT NOT NULL,
        progress        INTEGER NOT NULL DEFAULT 0 CHECK (progress BETWEEN 0 AND 100),
        attempts        INTEGER NOT NULL DEFAULT 0,
        options         TEXT NOT NULL,
        force           INTEGER NOT NULL DEFAULT 0,
        cancel_requested INTEGER NOT NULL DEFAULT 0,
        flashed_at      TEXT,
        boot_id_before  TEXT,
        next_attempt_at TEXT,
        runner_pid      INTEGER,
        lease_until     TEXT,
        created_at      TEXT NOT NULL,
        updated_at      TEXT NOT NULL,
        finished_at     TEXT
    );
    CREATE INDEX upgrade_operation_device ON upgrade_operation(device_id);
    CREATE INDEX upgrade_operation_status ON upgrade_operation(status);
    -- A device is never in two unfinished operations at once.
    CREATE UNIQUE INDEX upgrade_operation_one_active ON upgrade_operation(device_id)
        WHERE status IN ('pending', 'in-progress');
    CREATE TABLE operation_log (
        id           INTEGER PRIMARY KEY,
        operation_id INTEGER NOT NULL REFERENCES upgrade_operation(id),
        at           TEXT NOT NULL,
        line         TEXT NOT NULL
    );
    CREATE INDEX operation_log_operation ON operation_log(operation_id, id);
    CREATE TRIGGER operation_log_no_update BEFORE UPDATE ON operation_log
    BEGIN SELECT RAISE(ABORT, 'the operation log is append-only'); END;
    CREATE TRIGGER operation_log_no_delete BEFORE DELETE ON operation_log
    BEGIN SELECT RAISE(ABORT, 'the operation log is append-only'); END;
    "#,
    // 2: batches (mass upgrades) and the firmware a device ran before an
    // operation, for reports.
    r#"
    CREATE TABLE batch (
        id           INTEGER PRIMARY KEY,
        build_id     INTEGER NOT NULL REFERENCES build(id),
        selection    TEXT NOT NULL,
        options      TEXT NOT NULL,
        rollout      TEXT NOT NULL,
        state        TEXT NOT NULL
                         CHECK (state IN ('running', 'paused', 'cancelled', 'finished')),
        pause_reason TEXT,
        runner_pid   INTEGER,
        lease_until  TEXT,
        created_at   TEXT NOT NULL,
        updated_at   TEXT NOT NULL,
        finished_at  TEXT
    );
    CREATE TABLE batch_skip (
        batch_id  INTEGER NOT NULL REFERENCES batch(id),
        device_id INTEGER NOT NULL REFERENCES device(id),
        reason    TEXT NOT NULL,
        PRIMARY KEY (batch_id, device_id)
    );
    CREATE TABLE batch_log (
        id       INTEGER PRIMARY KEY,
        batch_id INTEGER NOT NULL REFERENCES batch(id),
        at       TEXT NOT NULL,
        line     TEXT NOT NULL
    );
    CREATE INDEX batch_log_batch ON batch_log(batch_id, id);
    CREATE TRIGGER batch_log_no_update BEFORE UPDATE ON batch_log
    BEGIN SELECT RAISE(ABORT, 'the batch log is append-only'); END;
    CREATE TRIGGER batch_log_no_delete BEFORE DELETE ON batch_log
    BEGIN SELECT RAISE(ABORT, 'the batch log is append-only'); END;
    ALTER TABLE upgrade_operation ADD COLUMN firmware_before TEXT;
    CREATE INDEX upgrade_operation_batch ON upgrade_operation(batch_id);
    "#,
];

/// The schema version this build of the engine writes.
pub(crate) const CURRENT: u32 = MIGRATIONS.len() as u32;

/// Brings the catalogue up to [`CURRENT`], one migration per transaction.
pub(crate) fn migrate(conn: &mut Connection) -> Result<(), CatalogueError> {
    let found: u32 = conn.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    if found > CURRENT {
        return Err(CatalogueError::TooNew {
            found,
            supported: CURRENT,
        });
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        let number = index + 1;
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", number)?;
        tx.commit()?;
        tracing::info!(migration = number, "catalogue migrated");
    }
    Ok(())
}
