//! Commands about the app itself: what the page needs to know when it
//! starts, and the first-paint figure the start-up benchmark reads.

use std::sync::atomic::{AtomicBool, Ordering};

use serde::Serialize;
use tauri::State;

use crate::error::CommandResult;
use crate::state::AppState;

/// Set once the first paint was reported, so later paints say nothing.
static FIRST_PAINT_REPORTED: AtomicBool = AtomicBool::new(false);

/// What the page reads when it starts.
#[derive(Serialize)]
pub(crate) struct AppInfo {
    version: &'static str,
    data_dir: String,
    /// Whether the catalogue holds no firmware and no device: the page
    /// then offers the guided tour.
    first_run: bool,
    /// The view to open first, from `FWU_START_VIEW` (for example
    /// `devices`); the fleet overview when unset.
    start_view: Option<String>,
}

/// Tells the page about the app and the catalogue it opened.
#[tauri::command]
pub(crate) async fn app_info(state: State<'_, AppState>) -> CommandResult<AppInfo> {
    let catalogue = &state.engine.catalogue;
    Ok(AppInfo {
        version: env!("CARGO_PKG_VERSION"),
        data_dir: state.engine.data_dir.display().to_string(),
        first_run: catalogue.categories()?.is_empty() && catalogue.devices()?.is_empty(),
        start_view: std::env::var("FWU_START_VIEW")
            .ok()
            .filter(|v| !v.is_empty()),
    })
}

/// Receives the page's word that the device list was first painted, with
/// how many rows it holds, and prints the time since the process started
/// on standard output. With `FWU_EXIT_AFTER_FIRST_PAINT=1` the app then
/// quits: that is how the start-up benchmark runs it.
#[tauri::command]
pub(crate) async fn first_painted(
    app: tauri::AppHandle,
    state: State<'_, AppState>,
    devices: usize,
) -> CommandResult<()> {
    if FIRST_PAINT_REPORTED.swap(true, Ordering::SeqCst) {
        return Ok(());
    }
    let elapsed = state.started.elapsed();
    println!(
        "first paint: device list of {devices} devices painted {} ms after start",
        elapsed.as_millis()
    );
    tracing::info!(
        devices,
        ms = elapsed.as_millis() as u64,
        "device list first painted"
    );
    if std::env::var("FWU_EXIT_AFTER_FIRST_PAINT").as_deref() == Ok("1") {
        app.exit(0);
    }
    Ok(())
}
