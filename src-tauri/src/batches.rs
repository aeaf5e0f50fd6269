//! Commands of the mass upgrade view: a dry run of a build over a
//! selection, starting the batch that plan describes, steering it (pause,
//! resume, cancel) and reading its counts. A running batch is spawned on
//! the async runtime with its cancellation token kept in the app's state,
//! and ends with a desktop notification that says how it ended. The
//! batch's report is shown or written as a web page.

use fwu_engine::batch::{self, Plan, Rollout, Selection, Summary};
use fwu_engine::catalogue::{Batch, BatchState, SysupgradeOptions, UpgradeOperation};
use serde::{Deserialize, Serialize};
use tauri::{Emitter, Manager, State};

use crate::error::{CommandError, CommandResult};
use crate::events::notify;
use crate::state::AppState;

/// The window event that carries a batch's counts whenever they change.
const BATCH_EVENT: &str = "batch-summary";

/// What the mass upgrade form gives: a build and a selection.
#[derive(Deserialize)]
pub(crate) struct BatchRequest {
    category: String,
    version: String,
    selection: Selection,
}

/// A batch with its counts and operations, for the live board.
#[derive(Serialize)]
pub(crate) struct BatchBoard {
    batch: Batch,
    summary: Summary,
    operations: Vec<UpgradeOperation>,
    /// Whether cancelling would still stop anything: some operation has
    /// not reached its verdict and has not started flashing.
    cancellable: bool,
}

/// Lists what a batch would do, touching nothing.
#[tauri::command]
pub(crate) async fn batch_dry_run(
    state: State<'_, AppState>,
    request: BatchRequest,
) -> CommandResult<Plan> {
    let catalogue = &state.engine.catalogue;
    batch::plan(
        catalogue,
        &request.category,
        &request.version,
        &request.selection,
    )
    .map_err(batch_error)
}

/// Records the batch of the plan and starts running it.
#[tauri::command]
pub(crate) async fn start_batch(
    state: State<'_, AppState>,
    request: BatchRequest,
    options: Vec<char>,
    rollout: Rollout,
) -> CommandResult<Batch> {
    let options = SysupgradeOptions::from_letters(&options)?;
    let (batch, _) = batch::start(
        &state.engine.catalogue,
        &request.category,
        &request.version,
        &request.selection,
        options,
        &rollout,
    )
    .map_err(batch_error)?;
    spawn_batch(&state, batch.id)?;
    Ok(batch)
}

/// Pauses a batch: nothing new starts; running operations finish.
#[tauri::command]
pub(crate) async fn pause_batch(state: State<'_, AppState>, id: i64) -> CommandResult<()> {
    batch::pause(&state.engine.catalogue, id).map_err(batch_error)
}

/// Resumes a paused batch in this process.
#[tauri::command]
pub(crate) async fn resume_batch(state: State<'_, AppState>, id: i64) -> CommandResult<()> {
    batch::resume(&state.engine.catalogue, id).map_err(batch_error)?;
    if !state.batches.contains(id) {
        spawn_batch(&state, id)?;
    }
    Ok(())
}

/// Cancels a batch: operations not yet flashing are cancelled.
#[tauri::command]
pub(crate) async fn cancel_batch(state: State<'_, AppState>, id: i64) -> CommandResult<()> {
    batch::cancel(&state.engine.catalogue, id).map_err(batch_error)
}

/// Every batch with its counts, newest first.
#[tauri::command]
pub(crate) async fn list_batches(state: State<'_, AppState>) -> CommandResult<Vec<Summary>> {
    let catalogue = &state.engine.catalogue;
    let mut summaries = Vec::new();
    for batch in catalogue.batches()? {
        summaries.push(batch::summary(catalogue, batch.id).map_err(batch_error)?);
    }
    summaries.sort_by_key(|summary| std::cmp::Reverse(summary.batch));
    Ok(summaries)
}

/// One batch with its counts and every operation, for the live board.
#[tauri::command]
pub(crate) async fn batch_board(state: State<'_, AppState>, id: i64) -> CommandResult<BatchBoard> {
    let catalogue = &state.engine.catalogue;
    let found = catalogue.batch(id)?;
    let operations = batch::operations(catalogue, id).map_err(batch_error)?;
    let cancellable = found.state != BatchState::Cancelled
        && found.state != BatchState::Finished
        && operations
            .iter()
            .any(|o| !o.status.is_final() && o.flashed_at.is_none());
    Ok(BatchBoard {
        batch: found,
        summary: batch::summary(catalogue, id).map_err(batch_error)?,
        operations,
        cancellable,
    })
}

/// The rows of a batch's report, for the report dialog.
#[tauri::command]
pub(crate) async fn batch_report(
    state: State<'_, AppState>,
    id: i64,
) -> CommandResult<Vec<batch::report::Row>> {
    batch::report::rows(&state.engine.catalogue, id).map_err(batch_error)
}

/// Writes a batch's report as a web page to `path`, for a customer.
#[tauri::command]
pub(crate) async fn save_batch_report(
    state: State<'_, AppState>,
    id: i64,
    path: String,
) -> CommandResult<String> {
    let page = batch::report::html(&state.engine.catalogue, id).map_err(batch_error)?;
    std::fs::write(&path, page).map_err(|error| {
        CommandError::new(format!(
            "writing the report of batch {id} to {path}: {error}"
        ))
    })?;
    tracing::info!(batch = id, path = %path, "batch report written");
    Ok(path)
}

/// Runs a batch in the background until it ends or pauses, then says so
/// in a notification.
pub(crate) fn spawn_batch(state: &AppState, id: i64) -> CommandResult<()> {
    let ctx = state.context()?;
    let cancel = state.batches.start(id);
    let app = state.app.clone();
    tauri::async_runtime::spawn(async move {
        let ended = batch::run(&ctx, id, cancel).await;
        let state = app.state::<AppState>();
        state.batches.end(id);
        let (summary, body) = match ended {
            Ok(summary) => {
                let _ = app.emit(BATCH_EVENT, &summary);
                let body = format!(
                    "{} of {} devices upgraded or already there, {} failed, {} aborted, \
                     {} cancelled",
                    summary.success + summary.not_needed,
                    summary.total,
                    summary.failed,
                    summary.aborted,
                    summary.cancelled
                );
                (format!("Batch {id} ended: {}", summary.status), body)
            }
            Err(error) => (format!("Batch {id} stopped"), error.to_string()),
        };
        tracing::info!(batch = id, "{summary}: {body}");
        notify(summary, body);
    });
    Ok(())
}

fn batch_error(error: batch::BatchError) -> CommandError {
    match error {
        batch::BatchError::Upgrade(error) => error.into(),
        other => CommandError::new(other.to_string()),
    }
}
