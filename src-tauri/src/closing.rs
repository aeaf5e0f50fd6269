//! Closing the window while work runs: the close is held back and the page
//! asks the user, saying what runs and what becomes of it (an operation
//! past the flash, and a batch, are carried on at the next start; one not
//! yet flashing is stopped with nothing changed). Only the user's yes
//! ([`close_anyway`]) lets the window close.

use std::sync::atomic::Ordering;

use serde::Serialize;
use tauri::{Emitter, Manager, State, WebviewWindow, Window, WindowEvent};

use crate::error::CommandResult;
use crate::state::AppState;

/// The window event that asks the page to confirm a close; its payload
/// is [`RunningWork`].
const CLOSE_EVENT: &str = "close-requested";

/// What this process runs right now.
#[derive(Clone, Debug, Default, Serialize)]
pub(crate) struct RunningWork {
    operations: Vec<RunningOperation>,
    /// Ids of the batches this process runs.
    batches: Vec<i64>,
}

/// A single upgrade operation this process runs.
#[derive(Clone, Debug, Serialize)]
struct RunningOperation {
    id: i64,
    device: String,
    /// Whether flashing has started: then it cannot stop halfway, and the
    /// next start takes it up at Reconnect.
    flashed: bool,
}

impl RunningWork {
    fn is_empty(&self) -> bool {
        self.operations.is_empty() && self.batches.is_empty()
    }
}

/// Holds back a close while work runs and asks the page instead. Called
/// for every event of the window.
pub(crate) fn on_window_event(window: &Window, event: &WindowEvent) {
    let WindowEvent::CloseRequested { api, .. } = event else {
        return;
    };
    let Some(state) = window.try_state::<AppState>() else {
        return;
    };
    if state.close_confirmed.load(Ordering::SeqCst) {
        return;
    }
    let work = running_work(&state);
    if work.is_empty() {
        return;
    }
    api.prevent_close();
    tracing::info!(
        operations = work.operations.len(),
        batches = work.batches.len(),
        "close held back: asking the user first"
    );
    if let Err(error) = window.emit(CLOSE_EVENT, &work) {
        // A page that cannot ask must not trap the user in the app.
        tracing::warn!("cannot ask about closing, closing anyway: {error}");
        state.close_confirmed.store(true, Ordering::SeqCst);
        let _ = window.close();
    }
}

/// What runs now, for the page's own questions.
#[tauri::command]
pub(crate) async fn running_work_now(state: State<'_, AppState>) -> CommandResult<RunningWork> {
    Ok(running_work(&state))
}

/// Closes the window after the user agreed to leave running work to the
/// next start.
#[tauri::command]
pub(crate) async fn close_anyway(
    state: State<'_, AppState>,
    window: WebviewWindow,
) -> CommandResult<()> {
    state.close_confirmed.store(true, Ordering::SeqCst);
    tracing::info!("closing with work running, at the user's word");
    Ok(window.close()?)
}

/// Asks the window to close, as its title bar's close button does: work
/// that runs holds it back and the page asks first.
#[tauri::command]
pub(crate) async fn quit(window: WebviewWindow) -> CommandResult<()> {
    Ok(window.close()?)
}

fn running_work(state: &AppState) -> RunningWork {
    let catalogue = &state.engine.catalogue;
    let ids = state.runs.ids();
    let mut operations = Vec::new();
    for id in ids {
        match catalogue.operation(id) {
            Ok(operation) if !operation.status.is_final() => operations.push(RunningOperation {
                id,
                device: operation.device,
                flashed: operation.flashed_at.is_some(),
            }),
            Ok(_) => {}
            Err(error) => tracing::warn!(operation = id, "cannot read the operation: {error}"),
        }
    }
    operations.sort_by_key(|operation| operation.id);
    let batches = state.batches.ids();
    RunningWork {
        operations,
        batches,
    }
}
