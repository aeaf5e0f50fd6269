//! Devices by the hundred: adding a whole imported or discovered fleet in
//! one transaction, and the names of the vault entries the devices share.
//!
//! Callers: the inventory (CSV import, discovery) and the credential
//! commands. Adding is all or nothing, so an import that fails half way
//! leaves the catalogue as it was.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{Catalogue, CatalogueError, Device, NewDevice};

/// A vault entry that devices name, and how many of them do.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CredentialUse {
    /// The vault entry name, such as `site/acme/password`.
    pub entry: String,
    /// The devices that log in with it, by name.
    pub devices: Vec<String>,
}

impl Catalogue {
    /// Adds every device, creating their sites and tags when new, in one
    /// transaction: either all of them are added or none.
    pub fn add_devices(&self, devices: &[NewDevice]) -> Result<Vec<Device>, CatalogueError> {
        let pinned: Vec<(&NewDevice, Option<&str>)> =
            devices.iter().map(|device| (device, None)).collect();
        self.insert_devices(&pinned)
    }

    /// Like [`Catalogue::add_devices`], with each device's host key pinned
    /// at once (OpenSSH public key text), as discovery saw it.
    pub fn add_pinned_devices(
        &self,
        devices: &[(NewDevice, String)],
    ) -> Result<Vec<Device>, CatalogueError> {
        let pinned: Vec<(&NewDevice, Option<&str>)> = devices
            .iter()
            .map(|(device, key)| (device, Some(key.as_str())))
            .collect();
        self.insert_devices(&pinned)
    }

    /// Every vault entry a device names (its password or its key's
    /// passphrase), with the devices that use it, by entry name.
    pub fn credential_uses(&self) -> Result<Vec<CredentialUse>, CatalogueError> {
        let conn = self.lock();
        let mut stmt = conn.prepare(
            "SELECT credential, name FROM device WHERE credential IS NOT NULL
             ORDER BY credential, name",
        )?;
        let mut uses: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let rows = stmt.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?;
        for row in rows {
            let (entry, device): (String, String) = row?;
            uses.entry(entry).or_default().push(device);
        }
        Ok(uses
            .into_iter()
            .map(|(entry, devices)| CredentialUse { entry, devices })
            .collect())
    }

    fn insert_devices(
        &self,
        devices: &[(&NewDevice, Option<&str>)],
    ) -> Result<Vec<Device>, CatalogueError> {
        for (device, _) in devices {
            super::devices::validate(device)?;
        }
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let mut ids = Vec::with_capacity(devices.len());
        for (device, host_key) in devices {
            ids.push(super::devices::insert_device(&tx, device, *host_key)?);
        }
        tx.commit()?;
        drop(conn);
        ids.into_iter().map(|id| self.device_by_id(id)).collect()
    }
}
