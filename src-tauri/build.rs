//! Build script of the window: lets Tauri read `tauri.conf.json`, embed the
//! page from `ui/`, and turn the capabilities into what the page may call.
//!
//! Every command of the app is listed here, so that each gets its own
//! `allow-…` permission; `capabilities/main.json` grants them one by one
//! and the page can invoke nothing else. Keep this list and the one in
//! `src/main.rs` the same.

const COMMANDS: &[&str] = &[
    "app_info",
    "first_painted",
    "firmware_catalogue",
    "add_category",
    "add_build",
    "import_images",
    "pick_image_files",
    "list_devices",
    "device_detail",
    "add_device",
    "probe_device",
    "accept_host_key",
    "forget_host_key",
    "start_upgrade",
    "cancel_operation",
    "operation_detail",
    "recent_operations",
    "list_settings",
    "set_setting",
    "unset_setting",
    "list_credentials",
    "set_credential",
    "list_host_keys",
    "batch_dry_run",
    "start_batch",
    "pause_batch",
    "resume_batch",
    "cancel_batch",
    "list_batches",
    "batch_board",
    "tour_status",
    "start_tour",
    "stop_tour",
    "resumed_work",
    "running_work_now",
    "close_anyway",
    "quit",
    "import_devices_csv",
    "export_devices_csv",
    "pick_csv_file",
    "pick_save_file",
    "discover_devices",
    "add_discovered",
    "probe_devices",
    "batch_report",
    "save_batch_report",
];

fn main() {
    let manifest = tauri_build::AppManifest::new().commands(COMMANDS);
    tauri_build::try_build(tauri_build::Attributes::new().app_manifest(manifest))
        .expect("the Tauri configuration and capabilities are valid");
}
