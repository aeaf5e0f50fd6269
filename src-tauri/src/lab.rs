//! The guided tour: with an empty catalogue the window offers simulated
//! OpenWrt devices (the device lab, Linux only) and a sample image, so that
//! anyone can walk through import, probe, host key and upgrade in a couple
//! of minutes without a router.
//!
//! Starting the tour fills the catalogue (category "WiFi", build 24.10.0
//! with a real-format image, three devices of site "tour") and shortens
//! the waits around a reboot, since a simulated device is back in seconds.
//! Stopping it ends the devices and puts those settings back.

use std::path::{Path, PathBuf};

use fwu_engine::actions::{Credential, DeviceInput};
use fwu_engine::settings::Settings;
use fwu_lab::{DeviceSpec, Lab};
use serde::Serialize;
use serde_json::Value;
use tauri::State;

use crate::error::{CommandError, CommandResult};
use crate::state::AppState;

/// The board every tour device has; the sample image is made for it.
const BOARD: &str = "tplink,archer-c7-v5";

/// The devices of the tour.
const DEVICES: [&str; 3] = ["tour-ap1", "tour-ap2", "tour-ap3"];

/// Settings the tour shortens, with the value it gives them.
const QUICK_SETTINGS: [(&str, &str); 3] = [
    ("openwrt.reconnect_delay", "3"),
    ("openwrt.retry_delay", "1"),
    ("retry.backoff", "2"),
];

/// A running tour: its lab and the settings to put back.
pub(crate) struct Tour {
    lab: Lab,
    /// Each shortened setting with the value the file held before, if any.
    replaced: Vec<(&'static str, Option<Value>)>,
}

/// What the page shows about the tour.
#[derive(Serialize)]
pub(crate) struct TourStatus {
    running: bool,
    /// Whether this platform can run the lab at all.
    supported: bool,
    devices: Vec<String>,
}

/// Tells whether the tour runs and whether it could.
#[tauri::command]
pub(crate) async fn tour_status(state: State<'_, AppState>) -> CommandResult<TourStatus> {
    let tour = state.tour.lock().await;
    Ok(TourStatus {
        running: tour.is_some(),
        supported: cfg!(target_os = "linux"),
        devices: match &*tour {
            Some(tour) => tour
                .lab
                .devices()
                .iter()
                .map(|d| d.name().to_string())
                .collect(),
            None => Vec::new(),
        },
    })
}

/// Starts the tour's devices and fills the empty catalogue for it.
#[tauri::command]
pub(crate) async fn start_tour(state: State<'_, AppState>) -> CommandResult<TourStatus> {
    let mut tour = state.tour.lock().await;
    if tour.is_some() {
        return Err(CommandError::new("the guided tour is already running"));
    }
    let catalogue = &state.engine.catalogue;
    if !catalogue.categories()?.is_empty() || !catalogue.devices()?.is_empty() {
        return Err(CommandError::new(
            "the guided tour needs an empty catalogue; this one already holds firmware or devices",
        ));
    }
    let work = state.engine.data_dir.join("tour");
    std::fs::create_dir_all(&work)?;
    let key = make_key(&work).await?;
    let public_key = std::fs::read_to_string(key.with_extension("pub"))?;
    let specs = DEVICES
        .iter()
        .map(|name| {
            let mut spec = DeviceSpec::new(name, BOARD, "23.05.3");
            spec.authorized_keys = vec![public_key.clone()];
            spec
        })
        .collect();
    let lab = Lab::start(&work.join("lab"), specs).await?;

    // Whatever fails from here on, the devices must not outlive the tour.
    match fill_catalogue(&state, &work, &key, &lab).await {
        Ok(replaced) => {
            *tour = Some(Tour { lab, replaced });
        }
        Err(error) => {
            lab.stop().await;
            return Err(error);
        }
    }
    tracing::info!(
        "guided tour started with {} simulated devices",
        DEVICES.len()
    );
    Ok(TourStatus {
        running: true,
        supported: true,
        devices: DEVICES.iter().map(|name| name.to_string()).collect(),
    })
}

/// Ends the tour's devices and puts back the settings it shortened. The
/// catalogue keeps what the tour added, so its operations can be read.
#[tauri::command]
pub(crate) async fn stop_tour(state: State<'_, AppState>) -> CommandResult<()> {
    let Some(tour) = state.tour.lock().await.take() else {
        return Err(CommandError::new("the guided tour is not running"));
    };
    tour.lab.stop().await;
    restore_settings(&state.engine.data_dir, &tour.replaced)?;
    tracing::info!("guided tour stopped");
    Ok(())
}

/// Imports the sample image and adds the devices; returns the settings it
/// replaced.
async fn fill_catalogue(
    state: &AppState,
    work: &Path,
    key: &Path,
    lab: &Lab,
) -> CommandResult<Vec<(&'static str, Option<Value>)>> {
    let board = fwu_lab::board(BOARD).expect("the lab knows its own board");
    let target = fwu_lab::release("24.10.0").expect("the lab knows 24.10.0");
    let sample = fwu_lab::SampleImage::new(board, &target);
    let image_path = work.join(fwu_lab::sample_image_name(board, &sample.release));
    fwu_lab::write_sample_image(&image_path, &sample)?;

    let engine = &state.engine;
    let replaced = shorten_settings(&state.app, &engine.data_dir)?;
    engine
        .catalogue
        .add_category("WiFi", "Access points and routers")?;
    engine
        .catalogue
        .add_build("WiFi", "24.10.0", None, "The guided tour's sample build.")?;
    engine.import_image("WiFi", "24.10.0", &image_path, None)?;
    for device in lab.devices() {
        engine.add_device(DeviceInput {
            name: device.name().to_string(),
            host: device.address().to_string(),
            alternate_hosts: vec![device.alternate_address().to_string()],
            port: device.port(),
            user: device.user().to_string(),
            credential: Credential::KeyFile {
                path: key.to_path_buf(),
                passphrase: None,
            },
            site: Some("tour".to_string()),
            tags: vec!["lab".to_string()],
        })?;
    }
    Ok(replaced)
}

/// Shortens the waits around a reboot; returns what the file held before.
fn shorten_settings(
    app: &tauri::AppHandle,
    data_dir: &Path,
) -> CommandResult<Vec<(&'static str, Option<Value>)>> {
    let before = crate::settings::stored_settings(app, data_dir)?;
    let mut replaced = Vec::new();
    for (key, value) in QUICK_SETTINGS {
        replaced.push((key, before.get(key).cloned()));
        Settings::set(data_dir, key, value)?;
    }
    Ok(replaced)
}

/// Puts back what [`shorten_settings`] replaced.
fn restore_settings(
    data_dir: &Path,
    replaced: &[(&'static str, Option<Value>)],
) -> CommandResult<()> {
    for (key, value) in replaced {
        match value {
            Some(value) => Settings::set(data_dir, key, &value.to_string())?,
            None => Settings::unset(data_dir, key)?,
        }
    }
    Ok(())
}

/// Makes the tour's ed25519 key pair with OpenSSH's ssh-keygen, so that
/// the tour needs no keyring.
async fn make_key(work: &Path) -> CommandResult<PathBuf> {
    let key = work.join("tour_ed25519");
    if key.exists() {
        return Ok(key);
    }
    let status = tokio::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "fwu-tour", "-f"])
        .arg(&key)
        .status()
        .await
        .map_err(|error| {
            CommandError::new(format!(
                "cannot run ssh-keygen (install openssh-client): {error}"
            ))
        })?;
    if !status.success() {
        return Err(CommandError::new(format!("ssh-keygen failed ({status})")));
    }
    Ok(key)
}
