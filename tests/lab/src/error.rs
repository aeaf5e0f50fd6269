//! The errors the lab reports when it cannot set up or run its devices.

use std::path::PathBuf;

/// Why a lab could not start or a lab file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// A program the lab runs is not installed.
    #[error("{program} not found: install {package}")]
    ProgramMissing {
        /// The program, such as "bwrap".
        program: &'static str,
        /// The Debian package that provides it.
        package: &'static str,
    },
    /// A spec names a board the lab does not know.
    #[error("unknown board {board} for device {device}")]
    UnknownBoard {
        /// The device's name.
        device: String,
        /// The board it asked for.
        board: String,
    },
    /// Two specs have the same name.
    #[error("two devices are named {0}")]
    DuplicateDevice(String),
    /// A spec's name cannot name a directory.
    #[error("device name {0:?} is not plain: use letters, digits, '-', '_' and '.'")]
    BadDeviceName(String),
    /// Not enough loopback addresses were free.
    #[error("no free loopback addresses for {0} devices")]
    NoFreeAddresses(usize),
    /// A file or directory could not be made or read.
    #[error("could not {action} {}: {source}", path.display())]
    Io {
        /// What was being done, such as "create".
        action: &'static str,
        /// On which path.
        path: PathBuf,
        /// The system's reason.
        source: std::io::Error,
    },
    /// A program the lab runs failed.
    #[error("{program} failed for {subject}: {detail}")]
    ProgramFailed {
        /// The program.
        program: &'static str,
        /// What it was run for (a device or a password).
        subject: String,
        /// Its error output or exit status.
        detail: String,
    },
    /// A device did not accept connections in time.
    #[error("device {device} did not come up: {detail}")]
    DeviceDidNotStart {
        /// The device's name.
        device: String,
        /// The last lines its console printed, or why it was not started.
        detail: String,
    },
    /// A manifest could not be parsed.
    #[error("could not parse the lab manifest {}: {source}", path.display())]
    Manifest {
        /// The manifest's path.
        path: PathBuf,
        /// The parser's reason.
        source: serde_json::Error,
    },
}

impl LabError {
    /// Returns a closure that wraps an I/O error on `path`.
    pub(crate) fn io(
        action: &'static str,
        path: &std::path::Path,
    ) -> impl FnOnce(std::io::Error) -> LabError {
        let path = path.to_path_buf();
        move |source| LabError::Io {
            action,
            path,
            source,
        }
    }
}
