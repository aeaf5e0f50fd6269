//! Commands of the devices view that handle many devices at once: CSV
//! import and export, discovery on an address range, and probing a whole
//! selection. Each is a thin adapter over `fwu_engine::inventory`, like
//! `fwu device import|export|discover|probe`.
//!
//! A scan is kept in the app's state ([`LastScan`]) and devices are added
//! from it by address: the host keys pinned are the ones the scan saw, so
//! the page can choose devices but never hand the shell a key to pin.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use fwu_engine::inventory::csv::{self, ImportOptions, ImportReport};
use fwu_engine::inventory::discover::{
    self, AddOptions, Addition, AddressRange, DiscoverOptions, Discovery, Login,
};
use fwu_engine::inventory::probe::{self, ProbeOptions, ProbeOutcome, Selection};
use fwu_engine::inventory::InventoryError;
use fwu_engine::transport::ssh::SshConnector;
use serde::{Deserialize, Serialize};
use tauri::{Emitter, State, WebviewWindow};

use crate::error::{CommandError, CommandResult};
use crate::state::AppState;

/// The window event that carries one device's probe as it ends.
const PROBE_EVENT: &str = "probe-outcome";

/// The longest scan the view starts: discovery is for a site's subnet,
/// not for sweeping networks.
const MAX_SCAN: Duration = Duration::from_secs(600);

/// A scan and how it logged in, until the user adds from it.
pub(crate) struct LastScan {
    discovery: Discovery,
    login: Login,
    user: String,
}

/// What an export wrote.
#[derive(Serialize)]
pub(crate) struct ExportReport {
    path: String,
    devices: usize,
    /// Values that were changed so that a spreadsheet would not run them.
    warnings: Vec<String>,
}

/// How discovered devices log in, as the discovery form says it.
#[derive(Deserialize)]
#[serde(tag = "method", rename_all = "kebab-case")]
pub(crate) enum LoginInput {
    SharedPassword { entry: String },
    KeyFile { path: String },
    Agent,
}

/// A scan, as the discovery form gives it.
#[derive(Deserialize)]
pub(crate) struct DiscoverRequest {
    range: String,
    port: u16,
    user: String,
    login: LoginInput,
    /// The whole scan's time limit in seconds.
    time_limit: f64,
}

/// Imports the devices of a CSV file. Every refused row comes back with
/// its line number; with `strict`, one refused row imports nothing.
#[tauri::command]
pub(crate) async fn import_devices_csv(
    state: State<'_, AppState>,
    path: String,
    strict: bool,
) -> CommandResult<ImportReport> {
    let options = ImportOptions {
        strict,
        dry_run: false,
    };
    csv::import_file(&state.engine.catalogue, &PathBuf::from(path), options)
        .map_err(CommandError::from)
}

/// Writes every device to a CSV file that imports again unchanged.
#[tauri::command]
pub(crate) async fn export_devices_csv(
    state: State<'_, AppState>,
    path: String,
) -> CommandResult<ExportReport> {
    let catalogue = &state.engine.catalogue;
    let written = |source| InventoryError::Write {
        path: path.clone(),
        source,
    };
    let mut text = Vec::new();
    let warnings = csv::export(catalogue, &mut text)?;
    std::fs::write(&path, &text).map_err(written)?;
    Ok(ExportReport {
        devices: catalogue.devices()?.len(),
        path,
        warnings,
    })
}

/// Asks the user for a CSV file to import; `None` when the dialog was
/// closed.
#[tauri::command]
pub(crate) async fn pick_csv_file(window: WebviewWindow) -> CommandResult<Option<String>> {
    // rfd waits for GTK's main loop, which is the window's thread.
    let file = tauri::async_runtime::spawn_blocking(move || {
        rfd::FileDialog::new()
            .set_title("Import devices from a CSV file")
            .add_filter("CSV files", &["csv", "txt"])
            .add_filter("All files", &["*"])
            .set_parent(&window)
            .pick_file()
    })
    .await
    .map_err(|error| CommandError::new(format!("the file dialog failed: {error}")))?;
    Ok(file.map(|path| path.display().to_string()))
}

/// Asks the user where to save a file; `None` when the dialog was closed.
/// `kind` is `csv` or `html` and chooses the filter and the title.
#[tauri::command]
pub(crate) async fn pick_save_file(
    window: WebviewWindow,
    kind: String,
    suggested: String,
) -> CommandResult<Option<String>> {
    let (title, filter, extensions): (&str, &str, &[&str]) = match kind.as_str() {
        "csv" => ("Export devices", "CSV files", &["csv"]),
        "html" => ("Save the batch report", "Web pages", &["html", "htm"]),
        other => {
            return Err(CommandError::new(format!(
                "no save dialog for files of kind {other:?}"
            )))
        }
    };
    let file = tauri::async_runtime::spawn_blocking(move || {
        rfd::FileDialog::new()
            .set_title(title)
            .add_filter(filter, extensions)
            .set_file_name(suggested)
            .set_parent(&window)
            .save_file()
    })
    .await
    .map_err(|error| CommandError::new(format!("the file dialog failed: {error}")))?;
    Ok(file.map(|path| path.display().to_string()))
}

/// Scans an address range for OpenWrt devices, logging in with the given
/// credential to identify them. Host keys seen for the first time are
/// read, not trusted: they are shown with their fingerprints and pinned
/// only for the devices the user then adds.
#[tauri::command]
pub(crate) async fn discover_devices(
    state: State<'_, AppState>,
    request: DiscoverRequest,
) -> CommandResult<Discovery> {
    let range = AddressRange::parse(request.range.trim())?;
    let time_limit = Duration::try_from_secs_f64(request.time_limit)
        .ok()
        .filter(|limit| !limit.is_zero() && *limit <= MAX_SCAN)
        .ok_or_else(|| {
            CommandError::new(format!(
                "time limit {} s: give a number of seconds from 1 to {}",
                request.time_limit,
                MAX_SCAN.as_secs()
            ))
        })?;
    let login = match request.login {
        LoginInput::SharedPassword { entry } => Login::SharedPassword(entry.trim().to_string()),
        LoginInput::KeyFile { path } => {
            Login::KeyFile(std::path::absolute(PathBuf::from(path.trim()))?)
        }
        LoginInput::Agent => Login::Agent,
    };
    let engine = &state.engine;
    let options = DiscoverOptions {
        port: request.port,
        user: request.user.clone(),
        login_timeout: engine.settings()?.ssh_connect_timeout(),
        time_limit,
        accept_new_host_key: true,
        ..DiscoverOptions::default()
    };
    let auth = login.resolve(&engine.vault).await?;
    let discovery = discover::discover(&range, &options, auth, Arc::new(SshConnector::new())).await;
    *state.discovery.lock().expect("scan poisoned") = Some(LastScan {
        discovery: discovery.clone(),
        login,
        user: request.user,
    });
    Ok(discovery)
}

/// Adds the devices of the last scan found at `addresses`, pinning the
/// host keys the scan saw, with a site and tags.
#[tauri::command]
pub(crate) async fn add_discovered(
    state: State<'_, AppState>,
    addresses: Vec<String>,
    site: Option<String>,
    tags: Vec<String>,
) -> CommandResult<Vec<Addition>> {
    let scan = state.discovery.lock().expect("scan poisoned");
    let Some(scan) = scan.as_ref() else {
        return Err(CommandError::new(
            "no scan to add devices from: discover an address range first",
        ));
    };
    let mut chosen = scan.discovery.clone();
    chosen
        .devices
        .retain(|found| addresses.contains(&found.address));
    if chosen.devices.len() != addresses.len() {
        return Err(CommandError::new(
            "some chosen addresses are not OpenWrt devices of the last scan; scan again",
        ));
    }
    let options = AddOptions {
        site: site.filter(|site| !site.trim().is_empty()),
        tags,
    };
    discover::add_found(
        &state.engine.catalogue,
        &chosen,
        &scan.login,
        &scan.user,
        &options,
    )
    .map_err(CommandError::from)
}

/// Probes every device of a site, of a tag, or all of them, a bounded
/// number at a time. Each device's outcome is also sent as a window event
/// as soon as it ends, so the page shows one line per device as they come.
/// Unknown host keys are not pinned here: those devices are probed one at
/// a time, where the user sees the fingerprint.
#[tauri::command]
pub(crate) async fn probe_devices(
    state: State<'_, AppState>,
    site: Option<String>,
    tag: Option<String>,
) -> CommandResult<Vec<ProbeOutcome>> {
    let selection = Selection {
        site: site.filter(|site| !site.is_empty()),
        tag: tag.filter(|tag| !tag.is_empty()),
    };
    let devices = probe::select(&state.engine.catalogue, &selection)?;
    if devices.is_empty() {
        return Err(CommandError::new("no device matches the selection"));
    }
    let options = ProbeOptions {
        concurrency: state.engine.settings()?.concurrency(),
        accept_new_host_key: false,
    };
    let ctx = state.context()?;
    let app = state.app.clone();
    Ok(probe::probe_many(&ctx, devices, options, |outcome| {
        if let Err(error) = app.emit(PROBE_EVENT, outcome) {
            tracing::debug!(device = %outcome.device, "not forwarding a probe: {error}");
        }
    })
    .await)
}
