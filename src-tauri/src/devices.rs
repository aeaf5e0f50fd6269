//! Commands of the devices and device views: listing, adding and probing
//! devices, and the host key dialog (an unknown key is pinned only once
//! the user accepted the fingerprint the device showed).

use std::path::PathBuf;

use fwu_engine::actions::{Credential, DeviceInput};
use fwu_engine::catalogue::{Device, DeviceFirmware, Image, OperationFilter, UpgradeOperation};
use fwu_engine::transport::TransportError;
use fwu_engine::upgrade::{self, Probed, UpgradeError};
use serde::{Deserialize, Serialize};
use tauri::State;

use crate::error::{CommandError, CommandResult};
use crate::state::AppState;

/// One row of the devices table: only what the table shows, so that ten
/// thousand of them cross to the page quickly.
#[derive(Serialize)]
pub(crate) struct DeviceRow {
    name: String,
    site: Option<String>,
    tags: Vec<String>,
    host: String,
    board: Option<String>,
    model: Option<String>,
    os_identifier: Option<String>,
    last_seen: Option<String>,
}

/// A device with everything its view shows.
#[derive(Serialize)]
pub(crate) struct DeviceDetail {
    device: Device,
    /// The fingerprint of the pinned host key, if one is pinned.
    host_key_fingerprint: Option<String>,
    firmware: Option<DeviceFirmware>,
    /// The image the device runs or should run, if known.
    firmware_image: Option<Image>,
    /// Images whose boards include the device's board, newest build first.
    candidate_images: Vec<CandidateImage>,
    operations: Vec<UpgradeOperation>,
}

/// An image a device can be upgraded to, named by its build.
#[derive(Serialize)]
pub(crate) struct CandidateImage {
    category: String,
    version: String,
    image: Image,
}

/// How a new device logs in, as the add-device form says it.
#[derive(Deserialize)]
#[serde(tag = "method", rename_all = "kebab-case")]
pub(crate) enum LoginInput {
    Password {
        password: String,
    },
    SharedPassword {
        entry: String,
    },
    KeyFile {
        path: String,
        passphrase: Option<String>,
    },
    Agent,
}

/// A new device, as the add-device form gives it.
#[derive(Deserialize)]
pub(crate) struct NewDeviceInput {
    name: String,
    host: String,
    alternate_hosts: Vec<String>,
    port: u16,
    user: String,
    login: LoginInput,
    site: Option<String>,
    tags: Vec<String>,
}

/// Lists every device as a table row.
#[tauri::command]
pub(crate) async fn list_devices(state: State<'_, AppState>) -> CommandResult<Vec<DeviceRow>> {
    let devices = state.engine.catalogue.devices()?;
    Ok(devices
        .into_iter()
        .map(|device| DeviceRow {
            name: device.name,
            site: device.site,
            tags: device.tags,
            host: device.host,
            board: device.board,
            model: device.model,
            os_identifier: device.os_identifier,
            last_seen: device.last_seen,
        })
        .collect())
}

/// Reads one device with its firmware, candidate images and operations.
#[tauri::command]
pub(crate) async fn device_detail(
    state: State<'_, AppState>,
    name: String,
) -> CommandResult<DeviceDetail> {
    let catalogue = &state.engine.catalogue;
    let device = catalogue.device(&name)?;
    let host_key_fingerprint = match &device.host_key {
        Some(key) => Some(fwu_engine::transport::ssh::fingerprint(key)?),
        None => None,
    };
    let firmware = catalogue.device_firmware(device.id)?;
    let firmware_image = match &firmware {
        Some(firmware) => Some(catalogue.image(firmware.image_id)?),
        None => None,
    };
    let mut candidate_images = Vec::new();
    if let Some(board) = &device.board {
        for build in catalogue.builds(None)?.into_iter().rev() {
            for image in catalogue.images(build.id)? {
                if image.boards.contains(board) {
                    candidate_images.push(CandidateImage {
                        category: build.category.clone(),
                        version: build.version.clone(),
                        image,
                    });
                }
            }
        }
    }
    let operations = catalogue.operations(&OperationFilter {
        device_id: Some(device.id),
        limit: Some(50),
        ..Default::default()
    })?;
    Ok(DeviceDetail {
        device,
        host_key_fingerprint,
        firmware,
        firmware_image,
        candidate_images,
        operations,
    })
}

/// Adds a device; a password goes to the OS keyring, never the catalogue.
#[tauri::command]
pub(crate) async fn add_device(
    state: State<'_, AppState>,
    device: NewDeviceInput,
) -> CommandResult<Device> {
    let credential = match device.login {
        LoginInput::Password { password } => Credential::Password(password),
        LoginInput::SharedPassword { entry } => Credential::SharedPassword(entry),
        LoginInput::KeyFile { path, passphrase } => Credential::KeyFile {
            path: std::path::absolute(PathBuf::from(path))?,
            passphrase: passphrase.filter(|text| !text.is_empty()),
        },
        LoginInput::Agent => Credential::Agent,
    };
    let engine = state.engine.clone();
    let input = DeviceInput {
        name: device.name,
        host: device.host,
        alternate_hosts: device.alternate_hosts,
        port: device.port,
        user: device.user,
        credential,
        site: device.site.filter(|site| !site.trim().is_empty()),
        tags: device.tags,
    };
    // The keyring is reached over D-Bus; that blocks.
    tauri::async_runtime::spawn_blocking(move || engine.add_device(input))
        .await
        .map_err(|error| CommandError::new(format!("adding the device stopped: {error}")))?
        .map_err(CommandError::from)
}

/// Connects to a device and records what it says about itself. A host
/// key seen for the first time is not pinned: the error carries its
/// fingerprint, and [`accept_host_key`] pins it once the user agrees.
#[tauri::command]
pub(crate) async fn probe_device(
    state: State<'_, AppState>,
    name: String,
) -> CommandResult<Probed> {
    probe_or_ask(&state, &name).await
}

/// Pins the host key the device presented at the last probe, if its
/// fingerprint is the one the user was shown, then probes again.
#[tauri::command]
pub(crate) async fn accept_host_key(
    state: State<'_, AppState>,
    name: String,
    fingerprint: String,
) -> CommandResult<Probed> {
    let key = state
        .unconfirmed_keys
        .lock()
        .expect("host key list poisoned")
        .remove(&name);
    let Some(key) = key else {
        return Err(CommandError::new(format!(
            "no host key of device {name} is waiting for confirmation; probe it again"
        )));
    };
    if key.fingerprint != fingerprint {
        return Err(CommandError::new(format!(
            "device {name} presented {}, not the accepted {fingerprint}; nothing was pinned",
            key.fingerprint
        )));
    }
    let device = state.engine.catalogue.device(&name)?;
    if device.host_key.is_some() {
        return Err(CommandError::new(format!(
            "device {name} already has a pinned host key; forget it first in the settings"
        )));
    }
    state
        .engine
        .catalogue
        .pin_host_key(device.id, &key.openssh)?;
    tracing::info!(device = %name, fingerprint = %key.fingerprint, "host key pinned by the user");
    // The pinned key is now checked like any other: if the device changed
    // its key in between, this probe refuses it.
    Ok(upgrade::probe_device(&state.context()?, &name, false).await?)
}

/// Forgets a device's pinned host key, after the device was reinstalled on
/// purpose; the next connection asks the user again.
#[tauri::command]
pub(crate) async fn forget_host_key(state: State<'_, AppState>, name: String) -> CommandResult<()> {
    let device = state.engine.catalogue.device(&name)?;
    state.engine.catalogue.forget_host_key(device.id)?;
    tracing::info!(device = %name, "pinned host key forgotten by the user");
    Ok(())
}

/// Probes a device with unknown keys refused, keeping a refused key for
/// the user's decision.
pub(crate) async fn probe_or_ask(state: &AppState, name: &str) -> CommandResult<Probed> {
    let ctx = state.context()?;
    match upgrade::probe_device(&ctx, name, false).await {
        Ok(probed) => Ok(probed),
        Err(UpgradeError::Transport(TransportError::HostKeyUnknown {
            endpoint,
            fingerprint,
            key,
        })) => {
            state
                .unconfirmed_keys
                .lock()
                .expect("host key list poisoned")
                .insert(name.to_string(), key.clone());
            Err(TransportError::HostKeyUnknown {
                endpoint,
                fingerprint,
                key,
            }
            .into())
        }
        Err(error) => Err(error.into()),
    }
}
