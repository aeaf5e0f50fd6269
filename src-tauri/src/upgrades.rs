//! Commands that run and read upgrade operations. A run is spawned on the
//! async runtime and reports through engine events; its cancellation token
//! stays in the app's state until the verdict. Work a previous process
//! left unfinished is taken up by `recovery.rs`.

use std::time::{Duration, Instant};

use fwu_engine::catalogue::{LogLine, OperationFilter, SysupgradeOptions, UpgradeOperation};
use fwu_engine::upgrade::{self, UpgradeRequest};
use serde::Serialize;
use tauri::{Emitter, Manager, State};
use tokio_util::sync::CancellationToken;

use crate::error::{CommandError, CommandResult};
use crate::events::{notify, RUN_ERROR_EVENT};
use crate::state::AppState;

/// A run longer than this ends with a desktop notification: the user has
/// likely turned to something else meanwhile.
const NOTIFY_AFTER: Duration = Duration::from_secs(60);

/// An operation with its log.
#[derive(Serialize)]
pub(crate) struct OperationDetail {
    operation: UpgradeOperation,
    log: Vec<LogLine>,
}

/// The payload of [`RUN_ERROR_EVENT`].
#[derive(Clone, Serialize)]
struct RunError {
    operation: i64,
    message: String,
}

/// Starts upgrading a device to an image and returns the new operation at
/// once; progress arrives as events. A device whose host key is not pinned
/// yet is probed first, so that the user confirms its fingerprint before
/// any upgrade touches it.
#[tauri::command]
pub(crate) async fn start_upgrade(
    state: State<'_, AppState>,
    device: String,
    image_id: i64,
    options: Vec<char>,
    force: bool,
) -> CommandResult<UpgradeOperation> {
    if state.engine.catalogue.device(&device)?.host_key.is_none() {
        crate::devices::probe_or_ask(&state, &device).await?;
    }
    let ctx = state.context()?;
    let request = UpgradeRequest {
        device,
        image_id,
        options: SysupgradeOptions::from_letters(&options)?,
        force,
        batch_id: None,
    };
    let operation = upgrade::start_operation(&ctx, &request)?;
    let cancel = state.runs.start(operation.id);

    spawn_run(state.app.clone(), ctx, operation.id, request.device, cancel);
    Ok(operation)
}

/// Asks an operation to stop; possible only until flashing starts.
#[tauri::command]
pub(crate) async fn cancel_operation(state: State<'_, AppState>, id: i64) -> CommandResult<()> {
    let catalogue = &state.engine.catalogue;
    if !catalogue.request_cancel(id)? {
        let operation = catalogue.operation(id)?;
        let why = if operation.status.is_final() {
            format!("it already ended ({})", operation.status)
        } else {
            "flashing has started".to_string()
        };
        return Err(CommandError::new(format!(
            "operation {id} cannot be cancelled: {why}"
        )));
    }
    state.runs.cancel(id);
    Ok(())
}

/// Reads one operation with its log.
#[tauri::command]
pub(crate) async fn operation_detail(
    state: State<'_, AppState>,
    id: i64,
) -> CommandResult<OperationDetail> {
    let catalogue = &state.engine.catalogue;
    Ok(OperationDetail {
        operation: catalogue.operation(id)?,
        log: catalogue.operation_log(id)?,
    })
}

/// The newest operations of every device, for the fleet overview.
#[tauri::command]
pub(crate) async fn recent_operations(
    state: State<'_, AppState>,
    limit: u32,
) -> CommandResult<Vec<UpgradeOperation>> {
    Ok(state.engine.catalogue.operations(&OperationFilter {
        limit: Some(limit),
        ..Default::default()
    })?)
}

/// Runs an operation to its verdict in the background; a long run ends
/// with a desktop notification, and a run the engine refused with a window
/// event, since no status event will come.
pub(crate) fn spawn_run(
    app: tauri::AppHandle,
    ctx: fwu_engine::upgrade::Context,
    id: i64,
    device: String,
    cancel: CancellationToken,
) {
    tauri::async_runtime::spawn(async move {
        let started = Instant::now();
        let verdict = upgrade::run_operation(&ctx, id, false, cancel).await;
        let state = app.state::<AppState>();
        state.runs.end(id);
        match verdict {
            Ok(status) => {
                tracing::info!(operation = id, device = %device, "upgrade ended: {status}");
                if started.elapsed() >= NOTIFY_AFTER {
                    notify(
                        format!("Upgrade of {device} ended: {status}"),
                        last_log_line(&state, id),
                    );
                }
            }
            Err(error) => {
                let message = error.to_string();
                tracing::warn!(operation = id, device = %device, "upgrade did not run: {message}");
                let _ = app.emit(
                    RUN_ERROR_EVENT,
                    RunError {
                        operation: id,
                        message,
                    },
                );
            }
        }
    });
}

/// The operation's last log line, which says how it ended.
fn last_log_line(state: &AppState, id: i64) -> String {
    state
        .engine
        .catalogue
        .operation_log(id)
        .ok()
        .and_then(|log| log.last().map(|line| line.line.clone()))
        .unwrap_or_default()
}
