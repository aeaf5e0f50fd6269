//! Devices, the sites they belong to, their tags, and their firmware.

use std::collections::HashMap;

use rusqlite::{params, OptionalExtension, Row, Transaction};
use serde::{Deserialize, Serialize};

use super::{duplicate, now, Catalogue, CatalogueError};

/// How a device is logged into. Secrets are named, not held: `credential`
/// is the vault entry with the password or the key's passphrase.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "kebab-case")]
pub enum DeviceAuth {
    Password {
        credential: String,
    },
    Key {
        key_file: String,
        credential: Option<String>,
    },
    Agent,
}

/// A router or access point the catalogue knows.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Device {
    pub id: i64,
    pub name: String,
    pub site: Option<String>,
    pub tags: Vec<String>,
    pub host: String,
    pub alternate_hosts: Vec<String>,
    pub port: u16,
    pub user: String,
    pub auth: DeviceAuth,
    /// The pinned host key, OpenSSH public key text.
    pub host_key: Option<String>,
    pub board: Option<String>,
    pub model: Option<String>,
    pub os_identifier: Option<String>,
    pub mac: Option<String>,
    pub boot_id: Option<String>,
    pub uptime: Option<u64>,
    pub last_seen: Option<String>,
    pub created_at: String,
}

impl Device {
    /// Every address the device may answer on, the main one first.
    pub fn addresses(&self) -> Vec<String> {
        let mut all = vec![self.host.clone()];
        all.extend(self.alternate_hosts.iter().cloned());
        all
    }
}

/// What a new device is made of.
#[derive(Clone, Debug)]
pub struct NewDevice {
    pub name: String,
    pub host: String,
    pub alternate_hosts: Vec<String>,
    pub port: u16,
    pub user: String,
    pub auth: DeviceAuth,
    pub site: Option<String>,
    pub tags: Vec<String>,
}

/// What a probe read from a device.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Probe {
    pub board: Option<String>,
    pub model: Option<String>,
    pub os_identifier: Option<String>,
    pub mac: Option<String>,
    pub boot_id: Option<String>,
    pub uptime: Option<u64>,
}

/// Which image a device runs (`installed`) or should run.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DeviceFirmware {
    pub device_id: i64,
    pub image_id: i64,
    pub installed: bool,
    pub updated_at: String,
}

const DEVICE_COLUMNS: &str = "d.id, d.name, s.name, d.host, d.port, d.user, d.auth, \
     d.credential, d.key_file, d.host_key, d.board, d.model, d.os_identifier, d.mac, d.boot_id, \
     d.uptime, d.last_seen, d.created_at";

impl Catalogue {
    /// Adds a device, creating its site and tags when they are new, in one
    /// transaction.
    pub fn add_device(&self, device: &NewDevice) -> Result<Device, CatalogueError> {
        validate(device)?;
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let id = insert_device(&tx, device, None)?;
        tx.commit()?;
        drop(conn);
        self.device_by_id(id)
    }

    /// The device called `name`.
    pub fn device(&self, name: &str) -> Result<Device, CatalogueError> {
        let id: Option<i64> = self
            .lock()
            .query_row("SELECT id FROM device WHERE name = ?1", [name], |row| {
                row.get(0)
            })
            .optional()?;
        match id {
            Some(id) => self.device_by_id(id),
            None => Err(CatalogueError::NotFound {
                kind: "device",
                name: name.to_string(),
            }),
        }
    }

    /// The device with this id.
    pub fn device_by_id(&self, id: i64) -> Result<Device, CatalogueError> {
        let conn = self.lock();
        let mut device = conn
            .query_row(
                &format!(
                    "SELECT {DEVICE_COLUMNS} FROM device d LEFT JOIN site s ON s.id = d.site_id
                     WHERE d.id = ?1"
                ),
                [id],
                device_from_row,
            )
            .optional()?
            .ok_or_else(|| CatalogueError::NotFound {
                kind: "device",
                name: id.to_string(),
            })?;
        fill_addresses_and_tags(&conn, &mut device)?;
        Ok(device)
    }

    /// Every device, by name. Addresses and tags are read in one query
    /// each, not one per device, so listing a large fleet stays quick.
    pub fn devices(&self) -> Result<Vec<Device>, CatalogueError> {
        let conn = self.lock();
        let mut stmt = conn.prepare(&format!(
            "SELECT {DEVICE_COLUMNS} FROM device d LEFT JOIN site s ON s.id = d.site_id
             ORDER BY d.name"
        ))?;
        let mut devices = stmt
            .query_map([], device_from_row)?
            .collect::<Result<Vec<_>, _>>()?;
        let mut addresses: HashMap<i64, Vec<String>> = HashMap::new();
        let mut stmt = conn.prepare(
            "SELECT device_id, address FROM device_address ORDER BY device_id, position",
        )?;
        for row in stmt.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))? {
            let (id, address) = row?;
            addresses.entry(id).or_default().push(address);
        }
        let mut tags: HashMap<i64, Vec<String>> = HashMap::new();
        let mut stmt = conn.prepare(
            "SELECT dt.device_id, t.name FROM device_tag dt JOIN tag t ON t.id = dt.tag_id
             ORDER BY dt.device_id, t.name",
        )?;
        for row in stmt.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))? {
            let (id, tag) = row?;
            tags.entry(id).or_default().push(tag);
        }
        for device in &mut devices {
            device.alternate_hosts = addresses.remove(&device.id).unwrap_or_default();
            device.tags = tags.remove(&device.id).unwrap_or_default();
        }
        Ok(devices)
    }

    /// Pins the host key a device presented, after the user accepted it.
    pub fn pin_host_key(&self, device_id: i64, host_key: &str) -> Result<(), CatalogueError> {
        self.lock().execute(
            "UPDATE device SET host_key = ?2 WHERE id = ?1",
            params![device_id, host_key],
        )?;
        Ok(())
    }

    /// Forgets a device's pinned host key, so that the next connection asks
    /// again. Used when the user knows the device was reinstalled.
    pub fn forget_host_key(&self, device_id: i64) -> Result<(), CatalogueError> {
        self.lock().execute(
            "UPDATE device SET host_key = NULL WHERE id = ?1",
            [device_id],
        )?;
        Ok(())
    }

    /// Records what a probe read and when; when the OS identifier matches
    /// a build with an image for the device's board, records that image as
    /// the device's firmware, in the same transaction.
    pub fn record_probe(&self, device_id: i64, probe: &Probe) -> Result<(), CatalogueError> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        tx.execute(
            "UPDATE device SET board = ?2, model = ?3, os_identifier = ?4,
                    mac = COALESCE(?5, mac), boot_id = ?6, uptime = ?7, last_seen = ?8
             WHERE id = ?1",
            params![
                device_id,
                probe.board,
                probe.model,
                probe.os_identifier,
                probe.mac,
                probe.boot_id,
                probe.uptime.map(|u| u as i64),
                now()
            ],
        )?;
        if let (Some(os), Some(board)) = (&probe.os_identifier, &probe.board) {
            if let Some(image_id) = image_for_os_and_board(&tx, os, board)? {
                write_device_firmware(&tx, device_id, image_id, true)?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Records which image a device runs (`installed`) or should run.
    pub fn set_device_firmware(
        &self,
        device_id: i64,
        image_id: i64,
        installed: bool,
    ) -> Result<(), CatalogueError> {
        let conn = self.lock();
        write_device_firmware(&conn, device_id, image_id, installed)
    }

    /// The image a device runs or should run, if known.
    pub fn device_firmware(
        &self,
        device_id: i64,
    ) -> Result<Option<DeviceFirmware>, CatalogueError> {
        let conn = self.lock();
        Ok(conn
            .query_row(
                "SELECT device_id, image_id, installed, updated_at FROM device_firmware
                 WHERE device_id = ?1",
                [device_id],
                |row| {
                    Ok(DeviceFirmware {
                        device_id: row.get(0)?,
                        image_id: row.get(1)?,
                        installed: row.get(2)?,
                        updated_at: row.get(3)?,
                    })
                },
            )
            .optional()?)
    }
}

/// The rules every device obeys, however it arrives: a name without
/// control characters, hosts that cannot smuggle shell syntax, a port, a
/// plain user name.
pub(super) fn validate(device: &NewDevice) -> Result<(), CatalogueError> {
    let invalid = |what: String| Err(CatalogueError::Invalid(what));
    if device.name.trim().is_empty() || device.name.chars().any(char::is_control) {
        return invalid(format!(
            "device name {:?} is empty or has control characters",
            device.name
        ));
    }
    for host in std::iter::once(&device.host).chain(&device.alternate_hosts) {
        // A leading dash would read as an option to any tool the host is
        // handed to (an `ssh` command line a user copies, a script).
        let plausible = !host.is_empty()
            && host.len() <= 253
            && !host.starts_with('-')
            && host.chars().any(|c| c.is_ascii_alphanumeric())
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

/// Inserts one checked device with its site, addresses and tags inside the
/// caller's transaction, optionally with its host key already pinned;
/// returns its id.
pub(super) fn insert_device(
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
        Some(site) => Some(ensure_named(tx, "site", site)?),
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
        let tag_id = ensure_named(tx, "tag", tag)?;
        tx.execute(
            "INSERT OR IGNORE INTO device_tag (device_id, tag_id) VALUES (?1, ?2)",
            params![id, tag_id],
        )?;
    }
    Ok(id)
}

/// Returns the id of the site or tag called `name`, adding it if new.
fn ensure_named(tx: &Transaction, table: &'static str, name: &str) -> Result<i64, CatalogueError> {
    if name.trim().is_empty() || name.chars().any(char::is_control) {
        return Err(CatalogueError::Invalid(format!(
            "{table} name {name:?} is empty or has control characters"
        )));
    }
    // `table` is one of two literals, never user input.
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

fn image_for_os_and_board(
    conn: &rusqlite::Connection,
    os_identifier: &str,
    board: &str,
) -> Result<Option<i64>, CatalogueError> {
    let mut stmt = conn.prepare(
        "SELECT i.id FROM image i JOIN build b ON b.id = i.build_id
         WHERE b.os_identifier = ?1
           AND EXISTS (SELECT 1 FROM json_each(i.boards) WHERE json_each.value = ?2)
         ORDER BY i.id LIMIT 1",
    )?;
    Ok(stmt
        .query_row(params![os_identifier, board], |row| row.get(0))
        .optional()?)
}

fn write_device_firmware(
    conn: &rusqlite::Connection,
    device_id: i64,
    image_id: i64,
    installed: bool,
) -> Result<(), CatalogueError> {
    conn.execute(
        "INSERT INTO device_firmware (device_id, image_id, installed, updated_at)
         VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (device_id) DO UPDATE SET image_id = excluded.image_id,
             installed = excluded.installed, updated_at = excluded.updated_at",
        params![device_id, image_id, installed, now()],
    )?;
    Ok(())
}

fn device_from_row(row: &Row) -> rusqlite::Result<Device> {
    let auth: String = row.get(6)?;
    let credential: Option<String> = row.get(7)?;
    let key_file: Option<String> = row.get(8)?;
    let auth = match auth.as_str() {
        "password" => DeviceAuth::Password {
            credential: credential.unwrap_or_default(),
        },
        "key" => DeviceAuth::Key {
            key_file: key_file.unwrap_or_default(),
            credential,
        },
        _ => DeviceAuth::Agent,
    };
    Ok(Device {
        id: row.get(0)?,
        name: row.get(1)?,
        site: row.get(2)?,
        tags: Vec::new(),
        host: row.get(3)?,
        alternate_hosts: Vec::new(),
        port: row.get(4)?,
        user: row.get(5)?,
        auth,
        host_key: row.get(9)?,
        board: row.get(10)?,
        model: row.get(11)?,
        os_identifier: row.get(12)?,
        mac: row.get(13)?,
        boot_id: row.get(14)?,
        uptime: row.get::<_, Option<i64>>(15)?.map(|u| u as u64),
        last_seen: row.get(16)?,
        created_at: row.get(17)?,
    })
}

fn fill_addresses_and_tags(
    conn: &rusqlite::Connection,
    device: &mut Device,
) -> Result<(), CatalogueError> {
    let mut stmt = conn.prepare_cached(
        "SELECT address FROM device_address WHERE device_id = ?1 ORDER BY position",
    )?;
    device.alternate_hosts = stmt
        .query_map([device.id], |row| row.get(0))?
        .collect::<Result<_, _>>()?;
    let mut stmt = conn.prepare_cached(
        "SELECT t.name FROM device_tag dt JOIN tag t ON t.id = dt.tag_id
         WHERE dt.device_id = ?1 ORDER BY t.name",
    )?;
    device.tags = stmt
        .query_map([device.id], |row| row.get(0))?
        .collect::<Result<_, _>>()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalogue::NewImage;

    fn new_device(name: &str) -> NewDevice {
        NewDevice {
            name: name.to_string(),
            host: "127.0.0.2".to_string(),
            alternate_hosts: vec!["127.0.0.3".to_string()],
            port: 22,
            user: "root".to_string(),
            auth: DeviceAuth::Password {
                credential: format!("device/{name}/password"),
            },
            site: Some("acme".to_string()),
            tags: vec!["floor-1".to_string(), "ap".to_string()],
        }
    }

    #[test]
    fn device_round_trips_with_site_tags_and_addresses() {
        let dir = tempfile::tempdir().unwrap();
        let catalogue = Catalogue::open_in(dir.path()).unwrap();
        let added = catalogue.add_device(&new_device("ap1")).unwrap();
        assert_eq!(added.site.as_deref(), Some("acme"));
        assert_eq!(added.tags, vec!["ap", "floor-1"]);
        assert_eq!(added.addresses(), vec!["127.0.0.2", "127.0.0.3"]);
        assert_eq!(catalogue.device("ap1").unwrap(), added);
        assert!(matches!(
            catalogue.add_device(&new_device("ap1")),
            Err(CatalogueError::Duplicate { .. })
        ));
    }

    #[test]
    fn hostile_hosts_and_users_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let catalogue = Catalogue::open_in(dir.path()).unwrap();
        for host in ["a;reboot", "$(id)", "a b", ""] {
            let mut device = new_device("x");
            device.host = host.to_string();
            assert!(catalogue.add_device(&device).is_err(), "{host}");
        }
        let mut device = new_device("x");
        device.user = "root'".to_string();
        assert!(catalogue.add_device(&device).is_err());
        assert!(catalogue.devices().unwrap().is_empty());
    }

    #[test]
    fn probe_records_firmware_when_os_identifier_matches() {
        let dir = tempfile::tempdir().unwrap();
        let catalogue = Catalogue::open_in(dir.path()).unwrap();
        catalogue.add_category("WiFi", "").unwrap();
        let os = "OpenWrt 23.05.3 r23809-234f1a2efa";
        let build = catalogue
            .add_build("WiFi", "23.05.3", Some(os), "")
            .unwrap();
        let image = catalogue
            .add_image(&NewImage {
                build_id: build.id,
                image_type: "c7.bin".to_string(),
                file_name: "c7.bin".to_string(),
                size: 1,
                sha256: "00".repeat(32),
                boards: vec!["tplink,archer-c7-v5".to_string()],
                metadata: None,
            })
            .unwrap();
        let device = catalogue.add_device(&new_device("ap1")).unwrap();
        let probe = Probe {
            board: Some("tplink,archer-c7-v5".to_string()),
            os_identifier: Some(os.to_string()),
            boot_id: Some("b1".to_string()),
            ..Probe::default()
        };
        catalogue.record_probe(device.id, &probe).unwrap();
        let firmware = catalogue.device_firmware(device.id).unwrap().unwrap();
        assert_eq!((firmware.image_id, firmware.installed), (image.id, true));
        assert!(catalogue.device("ap1").unwrap().last_seen.is_some());
    }
}
