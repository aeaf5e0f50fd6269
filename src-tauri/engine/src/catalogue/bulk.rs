//! Devices by the hundred: adding a whole imported or discovered fleet in
//! one transaction, and the names of the vault entries the devices share.
//!
//! Callers: the inventory (CSV import, discovery) and the credential
//! commands. Adding is all or nothing, so an import that fails half way
//! leaves the catalogue as it was.

use std::collections::BTreeMap;

use rusqlite::{params, Transaction};
use serde::Serialize;

use super::{duplicate, now, Catalogue, CatalogueError, Device, DeviceAuth, NewDevice};

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
            check(device)?;
        }
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let mut ids = Vec::with_capacity(devices.len());
        for (device, host_key) in devices {
            ids.push(insert(&tx, device, *host_key)?);
        }
        tx.commit()?;
        drop(conn);
        ids.into_iter().map(|id| self.device_by_id(id)).collect()
    }
}

/// Inserts one device with its addresses and tags; returns its id.
fn insert(
    tx: &Transaction,
    device: &NewDevice,
    host_key: Option<&str>,
) -> Result<i64, CatalogueError> {
    let (auth, credential, key_file) = match &device.auth {
        DeviceAuth::Password { credential } => ("password", Some(credential.as_str()), None),
        DeviceAuth::Key {
            key_file,
            credential,
        } => ("key", credential.as_deref(), Some(key_file.as_str())),
        DeviceAuth::Agent => ("agent", None, None),
    };
    let site_id = match &device.site {
        Some(site) => Some(named(tx, "site", site)?),
        None => None,
    };
    tx.execute(
        "INSERT INTO device (name, site_id, host, port, user, auth, credential, key_file,
                             host_key, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        params![
            device.name,
            site_id,
            device.host,
            device.port,
            device.user,
            auth,
            credential,
            key_file,
            host_key,
            now()
        ],
    )
    .map_err(duplicate("device", &device.name))?;
    let id = tx.last_insert_rowid();
    for (position, address) in device.alternate_hosts.iter().enumerate() {
        tx.execute(
            "INSERT INTO device_address (device_id, position, address) VALUES (?1, ?2, ?3)",
            params![id, position as i64, address],
        )?;
    }
    for tag in &device.tags {
        let tag_id = named(tx, "tag", tag)?;
        tx.execute(
            "INSERT OR IGNORE INTO device_tag (device_id, tag_id) VALUES (?1, ?2)",
            params![id, tag_id],
        )?;
    }
    Ok(id)
}

/// The id of the site or tag called `name`, added if new. `table` is one
/// of two literals, never user input.
fn named(tx: &Transaction, table: &'static str, name: &str) -> Result<i64, CatalogueError> {
    if name.trim().is_empty() || name.chars().any(char::is_control) {
        return Err(CatalogueError::Invalid(format!(
            "{table} name {name:?} is empty or has control characters"
        )));
    }
    tx.execute(
        &format!("INSERT OR IGNORE INTO {table} (name) VALUES (?1)"),
        [name],
    )?;
    Ok(tx.query_row(
        &format!("SELECT id FROM {table} WHERE name = ?1"),
        [name],
        |row| row.get(0),
    )?)
}

/// The same rules a single added device obeys: a name without control
/// characters, hosts that cannot smuggle shell syntax, a port, a plain
/// user name.
// FIXME: this repeats the private check in `devices.rs` because that file
// is not ours to change; if the two drift apart, a device refused by
// `fwu device add` could still arrive through an import.
fn check(device: &NewDevice) -> Result<(), CatalogueError> {
    let invalid = |what: String| Err(CatalogueError::Invalid(what));
    if device.name.trim().is_empty() || device.name.chars().any(char::is_control) {
        return invalid(format!(
            "device name {:?} is empty or has control characters",
            device.name
        ));
    }
    for host in std::iter::once(&device.host).chain(&device.alternate_hosts) {
        let plausible = !host.is_empty()
            && host.len() <= 253
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '_'));
        if !plausible {
            return invalid(format!(
                "device {}: {host:?} is not a host name or address",
                device.name
            ));
        }
    }
    if device.port == 0 {
        return invalid(format!("device {}: port 0 is not a port", device.name));
    }
    let user_ok = !device.user.is_empty()
        && device
            .user
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
    if !user_ok {
        return invalid(format!(
            "device {}: {:?} is not a user name",
            device.name, device.user
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new_device(name: &str, credential: &str) -> NewDevice {
        NewDevice {
            name: name.to_string(),
            host: "127.0.0.2".to_string(),
            alternate_hosts: vec!["127.0.0.3".to_string()],
            port: 22,
            user: "root".to_string(),
            auth: DeviceAuth::Password {
                credential: credential.to_string(),
            },
            site: Some("acme".to_string()),
            tags: vec!["ap".to_string()],
        }
    }

    #[test]
    fn many_devices_arrive_together() {
        let dir = tempfile::tempdir().unwrap();
        let catalogue = Catalogue::open_in(dir.path()).unwrap();
        let shared = "site/acme/password";
        let added = catalogue
            .add_devices(&[new_device("ap1", shared), new_device("ap2", shared)])
            .unwrap();
        assert_eq!(added.len(), 2);
        assert_eq!(added[1].alternate_hosts, vec!["127.0.0.3"]);
        assert_eq!(catalogue.devices().unwrap().len(), 2);
        assert_eq!(
            catalogue.credential_uses().unwrap(),
            vec![CredentialUse {
                entry: shared.to_string(),
                devices: vec!["ap1".to_string(), "ap2".to_string()],
            }]
        );
    }

    #[test]
    fn one_bad_device_adds_none() {
        let dir = tempfile::tempdir().unwrap();
        let catalogue = Catalogue::open_in(dir.path()).unwrap();
        catalogue.add_device(&new_device("ap2", "x")).unwrap();
        let result = catalogue.add_devices(&[new_device("ap1", "x"), new_device("ap2", "x")]);
        assert!(matches!(result, Err(CatalogueError::Duplicate { .. })));
        let mut hostile = new_device("ap3", "x");
        hostile.host = "$(reboot)".to_string();
        assert!(catalogue.add_devices(&[hostile]).is_err());
        let names: Vec<String> = catalogue
            .devices()
            .unwrap()
            .into_iter()
            .map(|d| d.name)
            .collect();
        assert_eq!(names, vec!["ap2"]);
    }

    #[test]
    fn pinned_devices_keep_their_host_key() {
        let dir = tempfile::tempdir().unwrap();
        let catalogue = Catalogue::open_in(dir.path()).unwrap();
        let key = "ssh-ed25519 \
            AAAAC3NzaC1lZDI1NTE5AAAAIPqMCaYZfVtWKv0y5GI2TJ4ib3eTSfIGZ7gJNGMMJFOq";
        let added = catalogue
            .add_pinned_devices(&[(new_device("ap1", "x"), key.to_string())])
            .unwrap();
        assert_eq!(added[0].host_key.as_deref(), Some(key));
    }
}
