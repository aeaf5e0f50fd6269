//! Engine events forwarded to the page as Tauri events, and the desktop
//! notifications that say how a long run ended.
//!
//! The page listens to [`OPERATION_EVENT`]; each payload is the engine's
//! [`Event`] as JSON (`kind` is `progress`, `log`, `upload` or `status`).

use fwu_engine::events::{Event, EventSink};
use tauri::{AppHandle, Emitter};

/// The name of the window event that carries engine events.
pub(crate) const OPERATION_EVENT: &str = "operation-event";

/// The name of the window event that says a run ended without a verdict
/// (the engine refused to run it); the payload is `{operation, message}`.
pub(crate) const RUN_ERROR_EVENT: &str = "operation-run-error";

/// Forwards engine events to every window of the app.
pub(crate) struct WindowSink {
    app: AppHandle,
}

impl WindowSink {
    /// A sink that emits on `app`.
    pub(crate) fn new(app: AppHandle) -> WindowSink {
        WindowSink { app }
    }
}

impl EventSink for WindowSink {
    fn emit(&self, event: Event) {
        // A window that is gone cannot show the event; the catalogue keeps
        // the record, so nothing is lost.
        if let Err(error) = self.app.emit(OPERATION_EVENT, &event) {
            tracing::debug!("not forwarding an engine event: the window refused it: {error}");
        }
    }
}

/// Shows a desktop notification without blocking the caller: the D-Bus
/// call to the notification daemon runs on a blocking thread.
pub(crate) fn notify(summary: String, body: String) {
    tauri::async_runtime::spawn_blocking(move || {
        let shown = notify_rust::Notification::new()
            .appname("Firmware Upgrader")
            .summary(&summary)
            .body(&body)
            .show();
        if let Err(error) = shown {
            tracing::warn!("cannot show the notification {summary:?}: {error}");
        }
    });
}
