//! Commands of the settings view: every setting with its description and
//! value, credentials in the OS keyring, and pinned host keys.
//!
//! Settings live in the data directory's `settings.json`, which `fwu`
//! shares. The window reads what the file holds through
//! tauri-plugin-store, but every change goes through the engine's
//! [`Settings::set`], which validates the value and replaces the file
//! atomically. The store is closed after each read: a store left open
//! would be written back, stale, when the app exits, undoing changes `fwu`
//! made meanwhile.

use std::collections::BTreeMap;

use fwu_engine::catalogue::DeviceAuth;
use fwu_engine::settings::{Settings, FILE_NAME};
use serde::Serialize;
use serde_json::Value;
use tauri::State;
use tauri_plugin_store::StoreBuilder;

use crate::error::{CommandError, CommandResult};
use crate::state::AppState;

/// One setting as the settings view shows it.
#[derive(Serialize)]
pub(crate) struct SettingRow {
    key: &'static str,
    description: &'static str,
    /// The value in force: the file's, or the default.
    value: Value,
    /// Whether the file sets it (otherwise the default applies).
    stored: bool,
}

/// A keyring entry some device logs in with.
#[derive(Serialize)]
pub(crate) struct CredentialRow {
    entry: String,
    devices: Vec<String>,
    /// Whether the keyring holds a secret under the entry.
    present: bool,
}

/// A device's pinned host key.
#[derive(Serialize)]
pub(crate) struct HostKeyRow {
    device: String,
    host: String,
    algorithm: String,
    fingerprint: String,
}

/// Lists every setting with its description and value.
#[tauri::command]
pub(crate) async fn list_settings(
    app: tauri::AppHandle,
    state: State<'_, AppState>,
) -> CommandResult<Vec<SettingRow>> {
    let stored = stored_settings(&app, &state.engine.data_dir)?;
    let settings = state.engine.settings()?;
    Settings::keys()
        .map(|key| {
            Ok(SettingRow {
                key: key.name,
                description: key.description,
                value: settings.get(key.name)?,
                stored: stored.contains_key(key.name),
            })
        })
        .collect()
}

/// Changes one setting; `value` is JSON text as `fwu settings set` takes.
#[tauri::command]
pub(crate) async fn set_setting(
    state: State<'_, AppState>,
    key: String,
    value: String,
) -> CommandResult<()> {
    Ok(Settings::set(&state.engine.data_dir, &key, &value)?)
}

/// Forgets one setting, so that its default applies again.
#[tauri::command]
pub(crate) async fn unset_setting(state: State<'_, AppState>, key: String) -> CommandResult<()> {
    Ok(Settings::unset(&state.engine.data_dir, &key)?)
}

/// Lists the keyring entries devices log in with, and whether each holds
/// a secret.
#[tauri::command]
pub(crate) async fn list_credentials(
    state: State<'_, AppState>,
) -> CommandResult<Vec<CredentialRow>> {
    let mut entries: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for device in state.engine.catalogue.devices()? {
        let entry = match device.auth {
            DeviceAuth::Password { credential } => Some(credential),
            DeviceAuth::Key { credential, .. } => credential,
            DeviceAuth::Agent => None,
        };
        if let Some(entry) = entry {
            entries.entry(entry).or_default().push(device.name);
        }
    }
    let vault = state.engine.vault.clone();
    tauri::async_runtime::spawn_blocking(move || {
        entries
            .into_iter()
            .map(|(entry, devices)| {
                Ok(CredentialRow {
                    present: vault.exists(&entry)?,
                    entry,
                    devices,
                })
            })
            .collect()
    })
    .await
    .map_err(|error| CommandError::new(format!("reading the keyring stopped: {error}")))?
}

/// Stores a secret in the OS keyring under `entry`, replacing any there.
#[tauri::command]
pub(crate) async fn set_credential(
    state: State<'_, AppState>,
    entry: String,
    secret: String,
) -> CommandResult<()> {
    if entry.trim().is_empty() || secret.is_empty() {
        return Err(CommandError::new(
            "a credential needs an entry name and a secret",
        ));
    }
    let vault = state.engine.vault.clone();
    tauri::async_runtime::spawn_blocking(move || vault.set(&entry, &secret))
        .await
        .map_err(|error| CommandError::new(format!("writing the keyring stopped: {error}")))??;
    Ok(())
}

/// Lists every pinned host key with its fingerprint.
#[tauri::command]
pub(crate) async fn list_host_keys(state: State<'_, AppState>) -> CommandResult<Vec<HostKeyRow>> {
    let mut rows = Vec::new();
    for device in state.engine.catalogue.devices()? {
        let Some(key) = device.host_key else {
            continue;
        };
        rows.push(HostKeyRow {
            fingerprint: fwu_engine::transport::ssh::fingerprint(&key)?,
            algorithm: key.split_whitespace().next().unwrap_or("").to_string(),
            device: device.name,
            host: device.host,
        });
    }
    Ok(rows)
}

/// What the settings file in `data_dir` holds, read through the store
/// plugin.
pub(crate) fn stored_settings(
    app: &tauri::AppHandle,
    data_dir: &std::path::Path,
) -> CommandResult<BTreeMap<String, Value>> {
    let path = data_dir.join(FILE_NAME);
    let store = StoreBuilder::new(app, path)
        .disable_auto_save()
        .build()
        .map_err(|error| CommandError::new(format!("cannot read the settings store: {error}")))?;
    // Reading again drops nothing the file no longer holds, so a store
    // kept from an earlier read would show stale keys: start afresh.
    let entries = store.entries().into_iter().collect();
    store.close_resource();
    Ok(entries)
}
