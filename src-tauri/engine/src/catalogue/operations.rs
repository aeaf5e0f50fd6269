//! Upgrade operations: one attempt to put one image on one device, with its
//! status, stage, progress and append-only log.
//!
//! Each state change is one transaction together with the log line that
//! explains it, so the log and the status never disagree after a crash.

use std::str::FromStr;

use rusqlite::{params, OptionalExtension, Row};
use serde::{Deserialize, Serialize};

use super::{now, Catalogue, CatalogueError};

/// Where an upgrade operation stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// Waiting for its turn or for a retry.
    Pending,
    InProgress,
    Success,
    /// The device already ran this image.
    NotNeeded,
    /// Something went wrong after flashing.
    Failed,
    /// A precondition failed; nothing on the device was changed.
    Aborted,
    Cancelled,
}

impl Status {
    /// The catalogue's word for this status.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::InProgress => "in-progress",
            Status::Success => "success",
            Status::NotNeeded => "not-needed",
            Status::Failed => "failed",
            Status::Aborted => "aborted",
            Status::Cancelled => "cancelled",
        }
    }

    /// Whether the operation has reached its verdict.
    pub fn is_final(self) -> bool {
        !matches!(self, Status::Pending | Status::InProgress)
    }
}

impl FromStr for Status {
    type Err = CatalogueError;

    fn from_str(text: &str) -> Result<Status, CatalogueError> {
        Ok(match text {
            "pending" => Status::Pending,
            "in-progress" => Status::InProgress,
            "success" => Status::Success,
            "not-needed" => Status::NotNeeded,
            "failed" => Status::Failed,
            "aborted" => Status::Aborted,
            "cancelled" => Status::Cancelled,
            other => return Err(CatalogueError::Invalid(format!("unknown status {other:?}"))),
        })
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The stages of an upgrade, in the order they run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Stage {
    Queued,
    Connect,
    Identify,
    Checksum,
    Room,
    Upload,
    Test,
    Flash,
    Reconnect,
    Verify,
    Done,
}

impl Stage {
    /// The catalogue's word for this stage.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Queued => "queued",
            Stage::Connect => "connect",
            Stage::Identify => "identify",
            Stage::Checksum => "checksum",
            Stage::Room => "room",
            Stage::Upload => "upload",
            Stage::Test => "test",
            Stage::Flash => "flash",
            Stage::Reconnect => "reconnect",
            Stage::Verify => "verify",
            Stage::Done => "done",
        }
    }
}

impl FromStr for Stage {
    type Err = CatalogueError;

    fn from_str(text: &str) -> Result<Stage, CatalogueError> {
        const ALL: [Stage; 11] = [
            Stage::Queued,
            Stage::Connect,
            Stage::Identify,
            Stage::Checksum,
            Stage::Room,
            Stage::Upload,
            Stage::Test,
            Stage::Flash,
            Stage::Reconnect,
            Stage::Verify,
            Stage::Done,
        ];
        ALL.into_iter()
            .find(|stage| stage.as_str() == text)
            .ok_or_else(|| CatalogueError::Invalid(format!("unknown stage {text:?}")))
    }
}

/// The options sysupgrade is run with, one field per letter.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SysupgradeOptions {
    /// `-c`: keep every changed file in /etc.
    pub keep_changed: bool,
    /// `-o`: keep every overwritten file in /etc.
    pub keep_overwritten: bool,
    /// `-n`: do not keep the configuration.
    pub no_config: bool,
    /// `-u`: leave out files that equal those in /rom.
    pub skip_unchanged: bool,
    /// `-p`: do not restore the partition table.
    pub no_partition_table: bool,
    /// `-k`: keep the list of installed packages.
    pub keep_packages: bool,
    /// `-F`: flash even when the image checks fail.
    pub force: bool,
}

impl SysupgradeOptions {
    /// Reads options from their letters (`c o n u p k F`), refusing unknown
    /// letters and `-n` together with `-c` or `-o`.
    pub fn from_letters(letters: &[char]) -> Result<SysupgradeOptions, CatalogueError> {
        let mut options = SysupgradeOptions::default();
        for letter in letters {
            match letter {
                'c' => options.keep_changed = true,
                'o' => options.keep_overwritten = true,
                'n' => options.no_config = true,
                'u' => options.skip_unchanged = true,
                'p' => options.no_partition_table = true,
                'k' => options.keep_packages = true,
                'F' => options.force = true,
                other => {
                    return Err(CatalogueError::Invalid(format!(
                        "unknown sysupgrade option -{other}; known: -c -o -n -u -p -k -F"
                    )))
                }
            }
        }
        if options.no_config && (options.keep_changed || options.keep_overwritten) {
            return Err(CatalogueError::Invalid(
                "sysupgrade option -n (do not keep the configuration) excludes -c and -o"
                    .to_string(),
            ));
        }
        Ok(options)
    }

    /// The command-line flags, in a fixed order.
    pub fn flags(&self) -> Vec<&'static str> {
        let mut flags = Vec::new();
        let pairs = [
            (self.keep_changed, "-c"),
            (self.keep_overwritten, "-o"),
            (self.no_config, "-n"),
            (self.skip_unchanged, "-u"),
            (self.no_partition_table, "-p"),
            (self.keep_packages, "-k"),
            (self.force, "-F"),
        ];
        for (on, flag) in pairs {
            if on {
                flags.push(flag);
            }
        }
        flags
    }
}

/// One line of an operation's log.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LogLine {
    pub at: String,
    pub line: String,
}

/// One attempt to put one image on one device.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct UpgradeOperation {
    pub id: i64,
    pub device_id: i64,
    pub device: String,
    pub image_id: i64,
    pub batch_id: Option<i64>,
    pub status: Status,
    pub stage: Stage,
    pub progress: u8,
    pub attempts: u32,
    pub options: SysupgradeOptions,
    /// Whether the user chose to flash even if the board does not match.
    pub force: bool,
    pub cancel_requested: bool,
    /// When sysupgrade was started; from then on the operation can no
    /// longer be cancelled and recovery resumes at Reconnect.
    pub flashed_at: Option<String>,
    pub boot_id_before: Option<String>,
    pub next_attempt_at: Option<String>,
    pub runner_pid: Option<u32>,
    pub lease_until: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    pub finished_at: Option<String>,
    /// What the device ran when the operation was created.
    pub firmware_before: Option<String>,
}

/// What a new upgrade operation is made of.
#[derive(Clone, Debug)]
pub struct NewOperation {
    pub device_id: i64,
    pub image_id: i64,
    pub batch_id: Option<i64>,
    pub options: SysupgradeOptions,
    pub force: bool,
}

/// Which operations a listing returns.
#[derive(Clone, Debug, Default)]
pub struct OperationFilter {
    pub device_id: Option<i64>,
    pub batch_id: Option<i64>,
    pub status: Option<Status>,
    pub limit: Option<u32>,
}

const OPERATION_COLUMNS: &str = "o.id, o.device_id, d.name, o.image_id, o.batch_id, o.status, \
     o.stage, o.progress, o.attempts, o.options, o.force, o.cancel_requested, o.flashed_at, \
     o.boot_id_before, o.next_attempt_at, o.runner_pid, o.lease_until, o.created_at, \
     o.updated_at, o.finished_at, o.firmware_before";

impl Catalogue {
    /// Creates a pending operation. A device with an unfinished operation
    /// gets no second one.
    pub fn add_operation(
        &self,
        new: &NewOperation,
        first_line: &str,
    ) -> Result<UpgradeOperation, CatalogueError> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let id = insert_operation(&tx, new, first_line)?;
        tx.commit()?;
        drop(conn);
        self.operation(id)
    }

    /// The operation with this id.
    pub fn operation(&self, id: i64) -> Result<UpgradeOperation, CatalogueError> {
        let conn = self.lock();
        conn.query_row(
            &format!(
                "SELECT {OPERATION_COLUMNS} FROM upgrade_operation o
                 JOIN device d ON d.id = o.device_id WHERE o.id = ?1"
            ),
            [id],
            operation_from_row,
        )
        .optional()?
        .ok_or_else(|| CatalogueError::NotFound {
            kind: "upgrade operation",
            name: id.to_string(),
        })?
    }

    /// Operations, newest first.
    pub fn operations(
        &self,
        filter: &OperationFilter,
    ) -> Result<Vec<UpgradeOperation>, CatalogueError> {
        // Only the filters that are set become conditions, so that SQLite
        // answers from the device, batch or status index: written as
        // `(?1 IS NULL OR o.device_id = ?1)` they made it scan every
        // operation (17 ms for one device among 100,000 operations).
        let mut conditions = Vec::new();
        let mut values: Vec<rusqlite::types::Value> = Vec::new();
        let mut condition = |column: &str, value: rusqlite::types::Value| {
            values.push(value);
            conditions.push(format!("o.{column} = ?{}", values.len()));
        };
        if let Some(device_id) = filter.device_id {
            condition("device_id", device_id.into());
        }
        if let Some(batch_id) = filter.batch_id {
            condition("batch_id", batch_id.into());
        }
        if let Some(status) = filter.status {
            condition("status", status.as_str().to_string().into());
        }
        let filters = if conditions.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", conditions.join(" AND "))
        };
        values.push(filter.limit.map(i64::from).unwrap_or(-1).into());
        let limit = values.len();
        let conn = self.lock();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {OPERATION_COLUMNS} FROM upgrade_operation o
             JOIN device d ON d.id = o.device_id
             {filters}
             ORDER BY o.id DESC LIMIT ?{limit}"
        ))?;
        let rows = stmt.query_map(rusqlite::params_from_iter(values), operation_from_row)?;
        rows.map(|row| row?).collect()
    }

    /// Operations not yet at a verdict, oldest first.
    pub fn unfinished_operations(&self) -> Result<Vec<UpgradeOperation>, CatalogueError> {
        // Filtered in SQL through the status index: reading every operation
        // to keep the few unfinished ones took 200 ms with 100,000 in the
        // catalogue, on every dry run and batch start.
        let conn = self.lock();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {OPERATION_COLUMNS} FROM upgrade_operation o
             JOIN device d ON d.id = o.device_id
             WHERE o.status IN ('pending', 'in-progress')
             ORDER BY o.id"
        ))?;
        let rows = stmt.query_map([], operation_from_row)?;
        rows.map(|row| row?).collect()
    }

    /// The operation's log, oldest line first.
    pub fn operation_log(&self, id: i64) -> Result<Vec<LogLine>, CatalogueError> {
        let conn = self.lock();
        let mut stmt = conn.prepare_cached(
            "SELECT at, line FROM operation_log WHERE operation_id = ?1 ORDER BY id",
        )?;
        let rows = stmt.query_map([id], |row| {
            Ok(LogLine {
                at: row.get(0)?,
                line: row.get(1)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Appends a line to the operation's log.
    pub fn append_log(&self, id: i64, line: &str) -> Result<LogLine, CatalogueError> {
        let at = now();
        self.lock().execute(
            "INSERT INTO operation_log (operation_id, at, line) VALUES (?1, ?2, ?3)",
            params![id, at, line],
        )?;
        Ok(LogLine {
            at,
            line: line.to_string(),
        })
    }

    /// Takes an operation for this process: in progress, one more attempt,
    /// held until `lease_until` unless renewed. The claim only succeeds if
    /// the runner is still the one the caller saw (`seen_runner`), so two
    /// processes that both found an orphan cannot both take it.
    pub fn claim_operation(
        &self,
        id: i64,
        pid: u32,
        lease_until: &str,
        seen_runner: Option<u32>,
    ) -> Result<bool, CatalogueError> {
        let changed = self.lock().execute(
            "UPDATE upgrade_operation SET status = 'in-progress', attempts = attempts + 1,
                 runner_pid = ?2, lease_until = ?3, next_attempt_at = NULL, updated_at = ?4
             WHERE id = ?1 AND runner_pid IS ?5
               AND status IN ('pending', 'in-progress')",
            params![id, pid, lease_until, now(), seen_runner],
        )?;
        Ok(changed == 1)
    }

    /// Keeps this process's hold on a running operation.
    pub fn renew_lease(&self, id: i64, lease_until: &str) -> Result<(), CatalogueError> {
        self.lock().execute(
            "UPDATE upgrade_operation SET lease_until = ?2 WHERE id = ?1",
            params![id, lease_until],
        )?;
        Ok(())
    }

    /// Moves an operation to a stage and progress.
    pub fn set_stage(&self, id: i64, stage: Stage, progress: u8) -> Result<(), CatalogueError> {
        self.lock().execute(
            "UPDATE upgrade_operation SET stage = ?2, progress = ?3, updated_at = ?4
             WHERE id = ?1",
            params![id, stage.as_str(), progress.min(100), now()],
        )?;
        Ok(())
    }

    /// Records, before sysupgrade is started, that flashing begins: from
    /// this commit on the operation is never cancelled nor flashed again.
    pub fn mark_flashing(
        &self,
        id: i64,
        boot_id_before: Option<&str>,
        line: &str,
    ) -> Result<(), CatalogueError> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let at = now();
        tx.execute(
            "UPDATE upgrade_operation SET stage = 'flash', progress = 65, flashed_at = ?2,
                 boot_id_before = ?3, updated_at = ?2
             WHERE id = ?1",
            params![id, at, boot_id_before],
        )?;
        tx.execute(
            "INSERT INTO operation_log (operation_id, at, line) VALUES (?1, ?2, ?3)",
            params![id, at, line],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Puts an operation back to `pending` until `next_attempt_at`.
    pub fn schedule_retry(
        &self,
        id: i64,
        next_attempt_at: &str,
        line: &str,
    ) -> Result<(), CatalogueError> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let at = now();
        tx.execute(
            "UPDATE upgrade_operation SET status = 'pending', stage = 'queued', progress = 0,
                 next_attempt_at = ?2, updated_at = ?3
             WHERE id = ?1",
            params![id, next_attempt_at, at],
        )?;
        tx.execute(
            "INSERT INTO operation_log (operation_id, at, line) VALUES (?1, ?2, ?3)",
            params![id, at, line],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Gives an operation its verdict with the line that explains it. On
    /// success the image becomes the device's installed firmware in the same
    /// transaction.
    pub fn finish_operation(
        &self,
        id: i64,
        status: Status,
        line: &str,
    ) -> Result<(), CatalogueError> {
        debug_assert!(status.is_final());
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let at = now();
        let progress_clause = if status == Status::Success || status == Status::NotNeeded {
            ", progress = 100, stage = 'done'"
        } else {
            ""
        };
        tx.execute(
            &format!(
                "UPDATE upgrade_operation SET status = ?2, finished_at = ?3, updated_at = ?3,
                     runner_pid = NULL, lease_until = NULL, next_attempt_at = NULL
                     {progress_clause}
                 WHERE id = ?1"
            ),
            params![id, status.as_str(), at],
        )?;
        tx.execute(
            "INSERT INTO operation_log (operation_id, at, line) VALUES (?1, ?2, ?3)",
            params![id, at, line],
        )?;
        if matches!(status, Status::Success | Status::NotNeeded) {
            tx.execute(
                "INSERT INTO device_firmware (device_id, image_id, installed, updated_at)
                 SELECT device_id, image_id, 1, ?2 FROM upgrade_operation WHERE id = ?1
                 ON CONFLICT (device_id) DO UPDATE SET image_id = excluded.image_id,
                     installed = 1, updated_at = excluded.updated_at",
                params![id, at],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Asks for an operation to be cancelled. Returns false when it is past
    /// the point where cancelling is possible (flashing started) or already
    /// finished.
    pub fn request_cancel(&self, id: i64) -> Result<bool, CatalogueError> {
        let changed = self.lock().execute(
            "UPDATE upgrade_operation SET cancel_requested = 1, updated_at = ?2
             WHERE id = ?1 AND flashed_at IS NULL AND status IN ('pending', 'in-progress')",
            params![id, now()],
        )?;
        Ok(changed == 1)
    }
}

/// Inserts a pending operation and its first log line inside the caller's
/// transaction, refusing a second unfinished operation for one device.
pub(super) fn insert_operation(
    tx: &rusqlite::Transaction,
    new: &NewOperation,
    first_line: &str,
) -> Result<i64, CatalogueError> {
    let options = serde_json::to_string(&new.options).expect("options serialise");
    let at = now();
    let inserted = tx.execute(
        "INSERT INTO upgrade_operation (device_id, image_id, batch_id, status, stage,
             progress, options, force, created_at, updated_at, firmware_before)
         VALUES (?1, ?2, ?3, 'pending', 'queued', 0, ?4, ?5, ?6, ?6,
                 (SELECT os_identifier FROM device WHERE id = ?1))",
        params![
            new.device_id,
            new.image_id,
            new.batch_id,
            options,
            new.force,
            at
        ],
    );
    if let Err(rusqlite::Error::SqliteFailure(e, _)) = &inserted {
        if e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE {
            let active: i64 = tx.query_row(
                "SELECT id FROM upgrade_operation
                 WHERE device_id = ?1 AND status IN ('pending', 'in-progress')",
                [new.device_id],
                |row| row.get(0),
            )?;
            return Err(CatalogueError::Invalid(format!(
                "the device already has unfinished upgrade operation {active}"
            )));
        }
    }
    inserted?;
    let id = tx.last_insert_rowid();
    tx.execute(
        "INSERT INTO operation_log (operation_id, at, line) VALUES (?1, ?2, ?3)",
        params![id, at, first_line],
    )?;
    Ok(id)
}

fn operation_from_row(row: &Row) -> rusqlite::Result<Result<UpgradeOperation, CatalogueError>> {
    let status: String = row.get(5)?;
    let stage: String = row.get(6)?;
    let options: String = row.get(9)?;
    let parsed = (|| {
        let status = status.parse()?;
        let stage = stage.parse()?;
        let options = serde_json::from_str(&options).map_err(|source| CatalogueError::Json {
            what: "sysupgrade options",
            source,
        })?;
        Ok::<_, CatalogueError>((status, stage, options))
    })();
    let (status, stage, options) = match parsed {
        Ok(parsed) => parsed,
        Err(error) => return Ok(Err(error)),
    };
    Ok(Ok(UpgradeOperation {
        id: row.get(0)?,
        device_id: row.get(1)?,
        device: row.get(2)?,
        image_id: row.get(3)?,
        batch_id: row.get(4)?,
        status,
        stage,
        progress: row.get(7)?,
        attempts: row.get(8)?,
        options,
        force: row.get(10)?,
        cancel_requested: row.get(11)?,
        flashed_at: row.get(12)?,
        boot_id_before: row.get(13)?,
        next_attempt_at: row.get(14)?,
        runner_pid: row.get(15)?,
        lease_until: row.get(16)?,
        created_at: row.get(17)?,
        updated_at: row.get(18)?,
        finished_at: row.get(19)?,
        firmware_before: row.get(20)?,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalogue::{DeviceAuth, NewDevice, NewImage};

    fn setup() -> (tempfile::TempDir, Catalogue, NewOperation) {
        let dir = tempfile::tempdir().unwrap();
        let catalogue = Catalogue::open_in(dir.path()).unwrap();
        catalogue.add_category("WiFi", "").unwrap();
        let build = catalogue.add_build("WiFi", "24.10.0", None, "").unwrap();
        let image = catalogue
            .add_image(&NewImage {
                build_id: build.id,
                image_type: "c7.bin".to_string(),
                file_name: "c7.bin".to_string(),
                size: 1,
                sha256: "00".repeat(32),
                boards: vec![],
                metadata: None,
            })
            .unwrap();
        let device = catalogue
            .add_device(&NewDevice {
                name: "ap1".to_string(),
                host: "127.0.0.2".to_string(),
                alternate_hosts: vec![],
                port: 22,
                user: "root".to_string(),
                auth: DeviceAuth::Agent,
                site: None,
                tags: vec![],
            })
            .unwrap();
        let new = NewOperation {
            device_id: device.id,
            image_id: image.id,
            batch_id: None,
            options: SysupgradeOptions::default(),
            force: false,
        };
        (dir, catalogue, new)
    }

    #[test]
    fn options_from_letters() {
        let options = SysupgradeOptions::from_letters(&['c', 'k', 'F']).unwrap();
        assert_eq!(options.flags(), vec!["-c", "-k", "-F"]);
        assert!(SysupgradeOptions::from_letters(&['n', 'c']).is_err());
        assert!(SysupgradeOptions::from_letters(&['n', 'o']).is_err());
        assert!(SysupgradeOptions::from_letters(&['x']).is_err());
        assert_eq!(
            SysupgradeOptions::from_letters(&['n']).unwrap().flags(),
            vec!["-n"]
        );
    }

    #[test]
    fn one_unfinished_operation_per_device() {
        let (_dir, catalogue, new) = setup();
        let first = catalogue.add_operation(&new, "queued").unwrap();
        let error = catalogue.add_operation(&new, "queued").unwrap_err();
        assert!(error.to_string().contains(&first.id.to_string()));
        catalogue
            .finish_operation(first.id, Status::Aborted, "board differs")
            .unwrap();
        catalogue.add_operation(&new, "queued").unwrap();
    }

    #[test]
    fn log_is_append_only() {
        let (_dir, catalogue, new) = setup();
        let operation = catalogue.add_operation(&new, "queued").unwrap();
        catalogue.append_log(operation.id, "connecting").unwrap();
        let lines: Vec<_> = catalogue
            .operation_log(operation.id)
            .unwrap()
            .into_iter()
            .map(|l| l.line)
            .collect();
        assert_eq!(lines, vec!["queued", "connecting"]);
        let conn = catalogue.lock();
        assert!(conn
            .execute("UPDATE operation_log SET line = 'x'", [])
            .is_err());
        assert!(conn.execute("DELETE FROM operation_log", []).is_err());
    }

    #[test]
    fn cancel_is_refused_once_flashing() {
        let (_dir, catalogue, new) = setup();
        let operation = catalogue.add_operation(&new, "queued").unwrap();
        assert!(catalogue
            .claim_operation(operation.id, 1, &now(), None)
            .unwrap());
        assert!(!catalogue
            .claim_operation(operation.id, 2, &now(), None)
            .unwrap());
        catalogue
            .mark_flashing(operation.id, Some("b1"), "flashing")
            .unwrap();
        assert!(!catalogue.request_cancel(operation.id).unwrap());
        let found = catalogue.operation(operation.id).unwrap();
        assert_eq!(
            (found.status, found.stage, found.attempts),
            (Status::InProgress, Stage::Flash, 1)
        );
    }

    #[test]
    fn success_records_device_firmware() {
        let (_dir, catalogue, new) = setup();
        let operation = catalogue.add_operation(&new, "queued").unwrap();
        catalogue
            .finish_operation(operation.id, Status::Success, "done")
            .unwrap();
        let firmware = catalogue.device_firmware(new.device_id).unwrap().unwrap();
        assert!(firmware.installed);
        let found = catalogue.operation(operation.id).unwrap();
        assert_eq!((found.progress, found.stage), (100, Stage::Done));
    }
}
