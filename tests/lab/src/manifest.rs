//! The lab manifest: how to reach every device of a running lab, as JSON, so
//! that a CLI which started a lab can tell its user (or another program)
//! where the devices are.

use std::net::Ipv4Addr;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::catalog::Release;
use crate::error::LabError;

/// Every device of a lab, as written by [`crate::Lab::write_manifest`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The devices, in the order the lab was given them.
    pub devices: Vec<ManifestDevice>,
}

/// How to reach one device, and what it was at the time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestDevice {
    /// The device's name.
    pub name: String,
    /// The address it normally listens on.
    pub address: Ipv4Addr,
    /// The address it listens on after the alternate-address fault.
    pub alternate_address: Ipv4Addr,
    /// The SSH port.
    pub port: u16,
    /// The user to log in as.
    pub user: String,
    /// Root's password, if password logins are allowed.
    pub password: Option<String>,
    /// The host key, an OpenSSH public key line.
    pub host_key: String,
    /// The board name.
    pub board: String,
    /// The release it ran when the manifest was written.
    pub release: Release,
}

impl Manifest {
    /// Reads a manifest written by a lab.
    pub fn read(path: &Path) -> Result<Manifest, LabError> {
        let text = std::fs::read_to_string(path).map_err(LabError::io("read", path))?;
        serde_json::from_str(&text).map_err(|source| LabError::Manifest {
            path: path.to_path_buf(),
            source,
        })
    }

    /// Writes the manifest as pretty JSON.
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        let json = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        std::fs::write(path, json + "\n")
    }
}
