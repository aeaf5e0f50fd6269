//! The fleet inventory: devices by the dozen rather than one at a time.
//!
//! [`csv`] imports and exports devices as a spreadsheet file;
//! [`discover`] finds OpenWrt devices on an address range; [`probe`] reads
//! many devices at once; [`credentials`] keeps the passwords that many
//! devices share. Callers: the CLI and the Tauri shell, through these
//! functions only; the catalogue's side is `catalogue::bulk`.

use crate::catalogue::CatalogueError;
use crate::settings::SettingsError;
use crate::vault::VaultError;

pub mod credentials;
pub mod csv;
pub mod discover;
pub mod probe;

/// Why an inventory request failed as a whole. Problems with single rows
/// or single devices are not errors: they are reported beside the others'
/// results.
#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("writing {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error("CSV file: {0}")]
    BadFile(String),
    #[error("address range {range:?}: {reason}")]
    BadRange { range: String, reason: String },
    #[error("credential entry {entry:?}: {reason}")]
    BadCredential { entry: String, reason: String },
    #[error(transparent)]
    Catalogue(#[from] CatalogueError),
    #[error(transparent)]
    Vault(#[from] VaultError),
    #[error(transparent)]
    Settings(#[from] SettingsError),
}
