//! Batches: mass upgrades of a build over a selection of devices.
//!
//! A batch row keeps what the user asked for (selection, options, rollout)
//! and its state as the user steers it (running, paused, cancelled,
//! finished). Its counts and rates are never stored: they are derived from
//! its upgrade operations, so they cannot disagree with them.

use std::str::FromStr;

use rusqlite::{params, OptionalExtension, Row};
use serde::{Deserialize, Serialize};

use super::operations::{insert_operation, LogLine, NewOperation, SysupgradeOptions};
use super::{now, Catalogue, CatalogueError};

/// Where a batch stands as the user steers it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BatchState {
    Running,
    /// No new operation starts until it is resumed.
    Paused,
    /// Nothing not yet flashing starts or goes on.
    Cancelled,
    /// Every operation has its verdict.
    Finished,
}

impl BatchState {
    /// The catalogue's word for this state.
    pub fn as_str(self) -> &'static str {
        match self {
            BatchState::Running => "running",
            BatchState::Paused => "paused",
            BatchState::Cancelled => "cancelled",
            BatchState::Finished => "finished",
        }
    }
}

impl FromStr for BatchState {
    type Err = CatalogueError;

    fn from_str(text: &str) -> Result<BatchState, CatalogueError> {
        Ok(match text {
            "running" => BatchState::Running,
            "paused" => BatchState::Paused,
            "cancelled" => BatchState::Cancelled,
            "finished" => BatchState::Finished,
            other => {
                return Err(CatalogueError::Invalid(format!(
                    "unknown batch state {other:?}"
                )))
            }
        })
    }
}

/// A mass upgrade as the catalogue keeps it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Batch {
    pub id: i64,
    pub build_id: i64,
    pub category: String,
    pub version: String,
    /// Which devices were asked for, as the batch module wrote it.
    pub selection: serde_json::Value,
    pub options: SysupgradeOptions,
    /// Concurrency, waves, failure threshold and deadline, as the batch
    /// module wrote them.
    pub rollout: serde_json::Value,
    pub state: BatchState,
    pub pause_reason: Option<String>,
    pub runner_pid: Option<u32>,
    pub lease_until: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    pub finished_at: Option<String>,
}

/// A device a batch leaves out, and why.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Skip {
    pub device_id: i64,
    pub device: String,
    pub reason: String,
}

/// What a new batch is made of: the plan a dry run showed.
#[derive(Clone, Debug)]
pub struct NewBatch {
    pub build_id: i64,
    pub selection: serde_json::Value,
    pub options: SysupgradeOptions,
    pub rollout: serde_json::Value,
    /// (device, image) for every device to upgrade, in rollout order.
    pub upgrades: Vec<(i64, i64)>,
    /// (device, reason) for every selected device left out.
    pub skipped: Vec<(i64, String)>,
}

const BATCH_COLUMNS: &str = "b.id, b.build_id, c.name, bu.version, b.selection, b.options, \
     b.rollout, b.state, b.pause_reason, b.runner_pid, b.lease_until, b.created_at, \
     b.updated_at, b.finished_at";

impl Catalogue {
    /// Creates a batch with an operation for every planned device, in one
    /// transaction: either the whole plan is recorded or nothing is.
    pub fn add_batch(&self, new: &NewBatch, first_line: &str) -> Result<Batch, CatalogueError> {
        let json = |value: &serde_json::Value| value.to_string();
        let options = serde_json::to_string(&new.options).expect("options serialise");
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let at = now();
        tx.execute(
            "INSERT INTO batch (build_id, selection, options, rollout, state, created_at,
                                updated_at)
             VALUES (?1, ?2, ?3, ?4, 'running', ?5, ?5)",
            params![
                new.build_id,
                json(&new.selection),
                options,
                json(&new.rollout),
                at
            ],
        )?;
        let id = tx.last_insert_rowid();
        tx.execute(
            "INSERT INTO batch_log (batch_id, at, line) VALUES (?1, ?2, ?3)",
            params![id, at, first_line],
        )?;
        for (device_id, image_id) in &new.upgrades {
            let operation = NewOperation {
                device_id: *device_id,
                image_id: *image_id,
                batch_id: Some(id),
                options: new.options,
                force: false,
            };
            insert_operation(&tx, &operation, &format!("queued by batch {id}"))?;
        }
        for (device_id, reason) in &new.skipped {
            tx.execute(
                "INSERT INTO batch_skip (batch_id, device_id, reason) VALUES (?1, ?2, ?3)",
                params![id, device_id, reason],
            )?;
        }
        tx.commit()?;
        drop(conn);
        self.batch(id)
    }

    /// The batch with this id.
    pub fn batch(&self, id: i64) -> Result<Batch, CatalogueError> {
        let conn = self.lock();
        conn.query_row(
            &format!(
                "SELECT {BATCH_COLUMNS} FROM batch b JOIN build bu ON bu.id = b.build_id
                 JOIN category c ON c.id = bu.category_id WHERE b.id = ?1"
            ),
            [id],
            batch_from_row,
        )
        .optional()?
        .ok_or_else(|| CatalogueError::NotFound {
            kind: "batch",
            name: id.to_string(),
        })?
    }

    /// Every batch, newest first.
    pub fn batches(&self) -> Result<Vec<Batch>, CatalogueError> {
        let conn = self.lock();
        let mut stmt = conn.prepare(&format!(
            "SELECT {BATCH_COLUMNS} FROM batch b JOIN build bu ON bu.id = b.build_id
             JOIN category c ON c.id = bu.category_id ORDER BY b.id DESC"
        ))?;
        let rows = stmt.query_map([], batch_from_row)?;
        rows.map(|row| row?).collect()
    }

    /// The devices a batch left out, and why.
    pub fn batch_skips(&self, id: i64) -> Result<Vec<Skip>, CatalogueError> {
        let conn = self.lock();
        let mut stmt = conn.prepare(
            "SELECT s.device_id, d.name, s.reason FROM batch_skip s
             JOIN device d ON d.id = s.device_id WHERE s.batch_id = ?1 ORDER BY d.name",
        )?;
        let rows = stmt.query_map([id], |row| {
            Ok(Skip {
                device_id: row.get(0)?,
                device: row.get(1)?,
                reason: row.get(2)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Moves a batch to a state, with the line that explains it.
    pub fn set_batch_state(
        &self,
        id: i64,
        state: BatchState,
        pause_reason: Option<&str>,
        line: &str,
    ) -> Result<(), CatalogueError> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let at = now();
        let finished_at = (state == BatchState::Finished).then(|| at.clone());
        tx.execute(
            "UPDATE batch SET state = ?2, pause_reason = ?3, updated_at = ?4,
                 finished_at = COALESCE(?5, finished_at)
             WHERE id = ?1",
            params![id, state.as_str(), pause_reason, at, finished_at],
        )?;
        tx.execute(
            "INSERT INTO batch_log (batch_id, at, line) VALUES (?1, ?2, ?3)",
            params![id, at, line],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Appends a line to the batch's log.
    pub fn append_batch_log(&self, id: i64, line: &str) -> Result<(), CatalogueError> {
        self.lock().execute(
            "INSERT INTO batch_log (batch_id, at, line) VALUES (?1, ?2, ?3)",
            params![id, now(), line],
        )?;
        Ok(())
    }

    /// The batch's log, oldest line first.
    pub fn batch_log(&self, id: i64) -> Result<Vec<LogLine>, CatalogueError> {
        let conn = self.lock();
        let mut stmt =
            conn.prepare("SELECT at, line FROM batch_log WHERE batch_id = ?1 ORDER BY id")?;
        let rows = stmt.query_map([id], |row| {
            Ok(LogLine {
                at: row.get(0)?,
                line: row.get(1)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Takes a batch for this process, if the runner is still the one the
    /// caller saw.
    pub fn claim_batch(
        &self,
        id: i64,
        pid: u32,
        lease_until: &str,
        seen_runner: Option<u32>,
    ) -> Result<bool, CatalogueError> {
        let changed = self.lock().execute(
            "UPDATE batch SET runner_pid = ?2, lease_until = ?3 WHERE id = ?1 AND runner_pid IS ?4",
            params![id, pid, lease_until, seen_runner],
        )?;
        Ok(changed == 1)
    }

    /// Keeps this process's hold on a batch; `None` lets it go.
    pub fn renew_batch_lease(
        &self,
        id: i64,
        lease_until: Option<&str>,
    ) -> Result<(), CatalogueError> {
        let pid_clause = if lease_until.is_none() {
            ", runner_pid = NULL"
        } else {
            ""
        };
        self.lock().execute(
            &format!("UPDATE batch SET lease_until = ?2 {pid_clause} WHERE id = ?1"),
            params![id, lease_until],
        )?;
        Ok(())
    }
}

fn batch_from_row(row: &Row) -> rusqlite::Result<Result<Batch, CatalogueError>> {
    let json = |index: usize, what: &'static str| -> rusqlite::Result<_> {
        let text: String = row.get(index)?;
        Ok(serde_json::from_str::<serde_json::Value>(&text)
            .map_err(|source| CatalogueError::Json { what, source }))
    };
    let selection = json(4, "batch selection")?;
    let options: String = row.get(5)?;
    let rollout = json(6, "batch rollout")?;
    let state: String = row.get(7)?;
    let parsed = (|| {
        Ok::<_, CatalogueError>((
            selection?,
            serde_json::from_str(&options).map_err(|source| CatalogueError::Json {
                what: "batch options",
                source,
            })?,
            rollout?,
            state.parse()?,
        ))
    })();
    let (selection, options, rollout, state) = match parsed {
        Ok(parsed) => parsed,
        Err(error) => return Ok(Err(error)),
    };
    Ok(Ok(Batch {
        id: row.get(0)?,
        build_id: row.get(1)?,
        category: row.get(2)?,
        version: row.get(3)?,
        selection,
        options,
        rollout,
        state,
        pause_reason: row.get(8)?,
        runner_pid: row.get(9)?,
        lease_until: row.get(10)?,
        created_at: row.get(11)?,
        updated_at: row.get(12)?,
        finished_at: row.get(13)?,
    }))
}
