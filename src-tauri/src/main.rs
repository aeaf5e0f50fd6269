//! Firmware Upgrader's desktop window: a Tauri shell over the engine.
//!
//! The page in `ui/` reaches the machine only through the commands listed
//! here, each a few lines over `fwu_engine` in the file named after its
//! domain; engine events reach the page as window events (`events.rs`).
//! The data directory is `FWU_DATA_DIR`, else the platform's (the same one
//! `fwu` uses, and the two may run at the same time).

// No console window next to the app on Windows release builds.
#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]

use std::io::Write;
use std::time::Instant;

use tauri::Manager;

mod app;
mod batches;
mod closing;
mod devices;
mod error;
mod events;
mod firmware;
mod inventory;
mod lab;
mod recovery;
mod settings;
mod state;
mod upgrades;

/// What `firmware-upgrader --help` prints.
const USAGE: &str = "\
firmware-upgrader: upgrade OpenWrt devices over SSH, in a desktop window

Usage: firmware-upgrader [--help | --version]

The data directory is FWU_DATA_DIR, else the platform's (shared with `fwu`).
Without a display, use the command line instead: fwu --help";

fn main() {
    let started = Instant::now();
    match std::env::args().nth(1).as_deref() {
        // A reader that went away (`| head -1`) is no reason to panic.
        Some("--help" | "-h") => {
            let _ = writeln!(std::io::stdout(), "{USAGE}");
            return;
        }
        Some("--version" | "-V") => {
            let version = env!("CARGO_PKG_VERSION");
            let _ = writeln!(std::io::stdout(), "firmware-upgrader {version}");
            return;
        }
        Some(other) => {
            eprintln!("firmware-upgrader: unknown argument {other:?}\n\n{USAGE}");
            std::process::exit(2);
        }
        None => {}
    }
    if no_display() {
        eprintln!(
            "firmware-upgrader: no display to open the window on (DISPLAY and \
             WAYLAND_DISPLAY are unset); use the command line instead: fwu --help"
        );
        std::process::exit(1);
    }
    let Some(data_dir) = std::env::var_os("FWU_DATA_DIR")
        .filter(|dir| !dir.is_empty())
        .map(std::path::PathBuf::from)
        .or_else(fwu_engine::platform::default_data_dir)
    else {
        eprintln!("firmware-upgrader: no data directory: set FWU_DATA_DIR");
        std::process::exit(1);
    };
    let _log = fwu_engine::logging::init(&data_dir);
    let runtime = fwu_engine::runtime::build().expect("the async runtime starts");
    tauri::async_runtime::set(runtime.handle().clone());

    let result = tauri::Builder::default()
        .plugin(tauri_plugin_store::Builder::default().build())
        .setup(move |app| {
            let state = state::AppState::open(app.handle().clone(), data_dir, started)?;
            app.manage(state);
            recovery::resume_orphans(app.handle());
            Ok(())
        })
        .on_window_event(closing::on_window_event)
        .invoke_handler(tauri::generate_handler![
            app::app_info,
            app::first_painted,
            recovery::resumed_work,
            closing::running_work_now,
            closing::close_anyway,
            closing::quit,
            firmware::firmware_catalogue,
            firmware::add_category,
            firmware::add_build,
            firmware::import_images,
            firmware::pick_image_files,
            devices::list_devices,
            devices::device_detail,
            devices::add_device,
            devices::probe_device,
            devices::accept_host_key,
            devices::forget_host_key,
            inventory::import_devices_csv,
            inventory::export_devices_csv,
            inventory::pick_csv_file,
            inventory::pick_save_file,
            inventory::discover_devices,
            inventory::add_discovered,
            inventory::probe_devices,
            upgrades::start_upgrade,
            upgrades::cancel_operation,
            upgrades::operation_detail,
            upgrades::recent_operations,
            settings::list_settings,
            settings::set_setting,
            settings::unset_setting,
            settings::list_credentials,
            settings::set_credential,
            settings::list_host_keys,
            batches::batch_dry_run,
            batches::start_batch,
            batches::pause_batch,
            batches::resume_batch,
            batches::cancel_batch,
            batches::list_batches,
            batches::batch_board,
            batches::batch_report,
            batches::save_batch_report,
            lab::tour_status,
            lab::start_tour,
            lab::stop_tour,
        ])
        .run(tauri::generate_context!());
    if let Err(error) = result {
        eprintln!("firmware-upgrader: the window failed: {error}");
        std::process::exit(1);
    }
}

/// Whether there is no display to open a window on. Only Linux and the BSDs
/// need one named in the environment; macOS and Windows always have one.
fn no_display() -> bool {
    if cfg!(any(target_os = "macos", target_os = "windows")) {
        return false;
    }
    let unset = |name: &str| std::env::var_os(name).is_none_or(|value| value.is_empty());
    unset("DISPLAY") && unset("WAYLAND_DISPLAY")
}
