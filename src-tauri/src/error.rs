//! The one error type every command returns to the page: the engine's own
//! words, plus a short kind the page can branch on (a host key that is
//! unknown or changed needs a dialog, not just a message).

use fwu_engine::actions::EngineError;
use fwu_engine::transport::TransportError;
use fwu_engine::upgrade::UpgradeError;
use serde::Serialize;

/// A failed command, as the page receives it.
#[derive(Debug, Serialize, thiserror::Error)]
#[error("{message}")]
pub(crate) struct CommandError {
    /// What failed, in the engine's words.
    message: String,
    /// `host-key-unknown`, `host-key-changed` or `error`.
    kind: &'static str,
    /// The fingerprint the device presented, for host key errors.
    #[serde(skip_serializing_if = "Option::is_none")]
    fingerprint: Option<String>,
}

/// What commands return.
pub(crate) type CommandResult<T> = Result<T, CommandError>;

impl CommandError {
    /// An error in the shell's own words, for requests the engine never saw.
    pub(crate) fn new(message: impl Into<String>) -> CommandError {
        CommandError {
            message: message.into(),
            kind: "error",
            fingerprint: None,
        }
    }
}

impl From<TransportError> for CommandError {
    fn from(error: TransportError) -> CommandError {
        let (kind, fingerprint) = match &error {
            TransportError::HostKeyUnknown { fingerprint, .. } => {
                ("host-key-unknown", Some(fingerprint.clone()))
            }
            TransportError::HostKeyChanged { presented, .. } => {
                ("host-key-changed", Some(presented.clone()))
            }
            _ => ("error", None),
        };
        CommandError {
            message: error.to_string(),
            kind,
            fingerprint,
        }
    }
}

impl From<UpgradeError> for CommandError {
    fn from(error: UpgradeError) -> CommandError {
        match error {
            UpgradeError::Transport(error) => error.into(),
            other => CommandError::new(other.to_string()),
        }
    }
}

impl From<EngineError> for CommandError {
    fn from(error: EngineError) -> CommandError {
        match error {
            EngineError::Upgrade(error) => error.into(),
            other => CommandError::new(other.to_string()),
        }
    }
}

/// Engine errors that carry no host key pass through their message alone.
macro_rules! plain_errors {
    ($($error:ty),* $(,)?) => {
        $(
            impl From<$error> for CommandError {
                fn from(error: $error) -> CommandError {
                    CommandError::new(error.to_string())
                }
            }
        )*
    };
}

plain_errors!(
    fwu_engine::catalogue::CatalogueError,
    fwu_engine::settings::SettingsError,
    fwu_engine::vault::VaultError,
    fwu_engine::image::ImageError,
    fwu_engine::inventory::InventoryError,
    fwu_lab::LabError,
    tauri::Error,
    std::io::Error,
);
