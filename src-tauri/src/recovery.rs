//! Carrying on, at start, the work a process that ended left unfinished:
//! the app closed while a device was flashing, a crash, or `fwu` killed
//! mid-batch. It does what `fwu operation resume` and `fwu batch resume`
//! do, without being asked, and remembers what it took up so that the
//! page can say so ([`resumed_work`]).
//!
//! A single operation interrupted before flashing is aborted by the
//! engine (nothing changed on the device); one interrupted after flashing
//! is run again from Reconnect, since only verification can tell how it
//! ended. A batch whose scheduler is gone is run again by `batch::run`,
//! which settles its own operations the same way.

use fwu_engine::batch;
use fwu_engine::catalogue::{Batch, BatchState, Catalogue};
use fwu_engine::upgrade::{self, is_orphaned};
use serde::Serialize;
use tauri::{AppHandle, Manager, State};

use crate::error::CommandResult;
use crate::state::AppState;

/// One piece of work taken up at start, as the page lists it.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Resumed {
    /// `batch` or `operation`.
    kind: &'static str,
    id: i64,
    /// What it is and what happens now, in a sentence.
    description: String,
}

/// What was taken up when this process started.
#[tauri::command]
pub(crate) async fn resumed_work(state: State<'_, AppState>) -> CommandResult<Vec<Resumed>> {
    Ok(state.resumed.lock().expect("resumed list poisoned").clone())
}

/// Finds unfinished work whose process is gone and carries it on in this
/// process. Failures are logged: the app must open even when recovery
/// cannot run, and `fwu` can still resume by hand.
pub(crate) fn resume_orphans(app: &AppHandle) {
    let state = app.state::<AppState>();
    let ctx = match state.context() {
        Ok(ctx) => ctx,
        Err(error) => {
            tracing::warn!("cannot look for unfinished work: {error}");
            return;
        }
    };
    let mut resumed = Vec::new();

    match upgrade::recover_orphans(&ctx) {
        Ok(orphans) => {
            // Operations of a batch are the batch scheduler's to settle.
            for operation in orphans.into_iter().filter(|o| o.batch_id.is_none()) {
                tracing::info!(
                    operation = operation.id,
                    device = %operation.device,
                    "resuming an operation left after flashing"
                );
                let _ = ctx.catalogue.append_log(
                    operation.id,
                    "taken over: the process that ran this operation ended before its verdict",
                );
                let cancel = state.runs.start(operation.id);
                resumed.push(Resumed {
                    kind: "operation",
                    id: operation.id,
                    description: format!(
                        "Upgrade operation {} of device {} was left after flashing; it \
                         carries on at Reconnect to learn how the flash ended.",
                        operation.id, operation.device
                    ),
                });
                crate::upgrades::spawn_run(
                    app.clone(),
                    ctx.clone(),
                    operation.id,
                    operation.device,
                    cancel,
                );
            }
        }
        Err(error) => tracing::warn!("cannot look for unfinished operations: {error}"),
    }

    match orphaned_batches(&ctx.catalogue) {
        Ok(batches) => {
            for (found, why) in batches {
                // For a running batch this only notes the take-over in its
                // log; a cancelled or paused one keeps its state, and its run
                // only settles the devices already flashed.
                if let Err(error) = batch::resume(&ctx.catalogue, found.id) {
                    tracing::warn!(batch = found.id, "cannot take up the batch: {error}");
                    continue;
                }
                if let Err(error) = crate::batches::spawn_batch(&state, found.id) {
                    tracing::warn!(batch = found.id, "cannot run the batch: {error}");
                    continue;
                }
                tracing::info!(batch = found.id, "resumed a batch whose process ended");
                resumed.push(Resumed {
                    kind: "batch",
                    id: found.id,
                    description: format!(
                        "Batch {} ({} {}) {why}; it carries on here.",
                        found.id, found.category, found.version
                    ),
                });
            }
        }
        Err(error) => tracing::warn!("cannot look for unfinished batches: {error}"),
    }
    state
        .resumed
        .lock()
        .expect("resumed list poisoned")
        .extend(resumed);
}

/// Batches that need a scheduler and have none: running with operations
/// left, or cancelled or paused with a device flashed by a process that
/// is gone, each with why it is taken up.
fn orphaned_batches(catalogue: &Catalogue) -> Result<Vec<(Batch, String)>, batch::BatchError> {
    let mut found = Vec::new();
    for candidate in catalogue.batches()? {
        if !scheduler_gone(&candidate) {
            continue;
        }
        let operations = batch::operations(catalogue, candidate.id)?;
        let unfinished = operations.iter().filter(|o| !o.status.is_final()).count();
        let flashed_orphans = operations
            .iter()
            .filter(|o| o.flashed_at.is_some() && is_orphaned(o))
            .count();
        let why = match candidate.state {
            BatchState::Running if unfinished > 0 => {
                format!("was running with {unfinished} device(s) left when its process ended")
            }
            BatchState::Cancelled | BatchState::Paused if flashed_orphans > 0 => format!(
                "is {} but {flashed_orphans} device(s) flashed without a verdict",
                candidate.state.as_str()
            ),
            _ => continue,
        };
        found.push((candidate, why));
    }
    Ok(found)
}

/// Whether no live process holds the batch: none ever did, its process
/// died, or its lease ran out.
fn scheduler_gone(found: &Batch) -> bool {
    let Some(pid) = found.runner_pid else {
        return true;
    };
    if pid == std::process::id() {
        return false;
    }
    let lease_over = found
        .lease_until
        .as_deref()
        .and_then(fwu_engine::catalogue::parse_time)
        .is_none_or(|until| until < time::OffsetDateTime::now_utc());
    lease_over || !fwu_engine::platform::process_alive(pid)
}
