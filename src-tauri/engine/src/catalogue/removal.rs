//! Removing mistakes: an image imported into the wrong build, a build or a
//! category typed wrong, a device added twice.
//!
//! The catalogue is also a record of what was done to every device, so a
//! removal never takes history with it: an image some upgrade operation
//! used, a build a batch upgraded to, a device with upgrade operations or
//! batches all stay, and the refusal says why. Whatever goes, goes in one
//! transaction. Files and keyring entries are the caller's to tidy up once
//! the rows are gone (the stored image file only when no other image row
//! names its sha256; see [`Catalogue::image_file_in_use`]).
//!
//! Callers: the CLI's `remove` subcommands.

use rusqlite::{params, Transaction};

use super::{Build, Catalogue, CatalogueError, Category, Device, Image};

/// Why something was not removed.
#[derive(Debug, thiserror::Error)]
pub enum RemovalError {
    /// Upgrade operations refer to the image; their record needs it.
    #[error(
        "image {image} is used by upgrade operations {}; it stays for the record",
        join(operations)
    )]
    ImageInUse { image: i64, operations: Vec<i64> },
    /// The build still has images, which would be left without a build.
    #[error("build {build} still has images {}; remove those first", join(images))]
    BuildHasImages { build: String, images: Vec<i64> },
    /// Batches upgraded (or meant to upgrade) devices to the build.
    #[error(
        "build {build} is used by batches {}; it stays for the record",
        join(batches)
    )]
    BuildInBatches { build: String, batches: Vec<i64> },
    /// The category still has builds.
    #[error("category {category} still has builds {}; remove those first", versions.join(", "))]
    CategoryHasBuilds {
        category: String,
        versions: Vec<String>,
    },
    /// The device has upgrade operations, which are its history.
    #[error(
        "device {device} has {count} upgrade operation{}; its history stays",
        if *count == 1 { "" } else { "s" }
    )]
    DeviceHasOperations { device: String, count: usize },
    /// Batches left the device out, and their reports name it.
    #[error("device {device} is in batches {}; its history stays", join(batches))]
    DeviceInBatches { device: String, batches: Vec<i64> },
    #[error(transparent)]
    Catalogue(#[from] CatalogueError),
}

impl From<rusqlite::Error> for RemovalError {
    fn from(error: rusqlite::Error) -> RemovalError {
        RemovalError::Catalogue(CatalogueError::Sql(error))
    }
}

/// What removing an image took with it.
#[derive(Clone, Debug, PartialEq)]
pub struct RemovedImage {
    /// The image as it was.
    pub image: Image,
    /// How many devices' firmware records named the image. They were only
    /// ever read from a probe (an upgrade would have kept the image), so
    /// the next probe writes them again if a build still matches.
    pub device_firmware_dropped: usize,
}

impl Catalogue {
    /// Removes an image no upgrade operation used, with the device firmware
    /// records that named it.
    pub fn remove_image(&self, id: i64) -> Result<RemovedImage, RemovalError> {
        let image = self.image(id)?;
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let operations = ids(
            &tx,
            "SELECT id FROM upgrade_operation WHERE image_id = ?1 ORDER BY id",
            id,
        )?;
        if !operations.is_empty() {
            return Err(RemovalError::ImageInUse {
                image: id,
                operations,
            });
        }
        let device_firmware_dropped =
            tx.execute("DELETE FROM device_firmware WHERE image_id = ?1", [id])?;
        gone(
            tx.execute("DELETE FROM image WHERE id = ?1", [id])?,
            "image",
            id,
        )?;
        tx.commit()?;
        tracing::info!(image = id, sha256 = %image.sha256, "image removed");
        Ok(RemovedImage {
            image,
            device_firmware_dropped,
        })
    }

    /// Removes a build that has no images and no batches.
    pub fn remove_build(&self, category: &str, version: &str) -> Result<Build, RemovalError> {
        let build = self.build(category, version)?;
        let name = format!("{} {}", build.category, build.version);
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let images = ids(
            &tx,
            "SELECT id FROM image WHERE build_id = ?1 ORDER BY id",
            build.id,
        )?;
        if !images.is_empty() {
            return Err(RemovalError::BuildHasImages {
                build: name,
                images,
            });
        }
        let batches = ids(
            &tx,
            "SELECT id FROM batch WHERE build_id = ?1 ORDER BY id",
            build.id,
        )?;
        if !batches.is_empty() {
            return Err(RemovalError::BuildInBatches {
                build: name,
                batches,
            });
        }
        gone(
            tx.execute("DELETE FROM build WHERE id = ?1", [build.id])?,
            "build",
            &name,
        )?;
        tx.commit()?;
        tracing::info!(build = %name, "build removed");
        Ok(build)
    }

    /// Removes a category that has no builds.
    pub fn remove_category(&self, name: &str) -> Result<Category, RemovalError> {
        let category = self.category(name)?;
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let versions = {
            let mut stmt =
                tx.prepare("SELECT version FROM build WHERE category_id = ?1 ORDER BY version")?;
            let rows = stmt.query_map([category.id], |row| row.get(0))?;
            rows.collect::<Result<Vec<String>, _>>()?
        };
        if !versions.is_empty() {
            return Err(RemovalError::CategoryHasBuilds {
                category: category.name,
                versions,
            });
        }
        gone(
            tx.execute("DELETE FROM category WHERE id = ?1", [category.id])?,
            "category",
            &category.name,
        )?;
        tx.commit()?;
        tracing::info!(category = %category.name, "category removed");
        Ok(category)
    }

    /// Removes a device that has no upgrade operations and is in no batch,
    /// with its addresses, tags and device firmware. Its vault entries are
    /// the caller's to delete: the catalogue holds no secret.
    pub fn remove_device(&self, name: &str) -> Result<Device, RemovalError> {
        let device = self.device(name)?;
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let count: usize = tx.query_row(
            "SELECT COUNT(*) FROM upgrade_operation WHERE device_id = ?1",
            [device.id],
            |row| row.get(0),
        )?;
        if count > 0 {
            return Err(RemovalError::DeviceHasOperations {
                device: device.name,
                count,
            });
        }
        let batches = ids(
            &tx,
            "SELECT DISTINCT batch_id FROM batch_skip WHERE device_id = ?1 ORDER BY batch_id",
            device.id,
        )?;
        if !batches.is_empty() {
            return Err(RemovalError::DeviceInBatches {
                device: device.name,
                batches,
            });
        }
        // The schema cascades these, but saying so here keeps the removal
        // correct on a connection opened without foreign keys.
        for table in ["device_address", "device_tag", "device_firmware"] {
            tx.execute(
                &format!("DELETE FROM {table} WHERE device_id = ?1"),
                [device.id],
            )?;
        }
        gone(
            tx.execute("DELETE FROM device WHERE id = ?1", params![device.id])?,
            "device",
            &device.name,
        )?;
        tx.commit()?;
        tracing::info!(device = %device.name, "device removed");
        Ok(device)
    }
}

/// The ids a query with one id parameter returns.
fn ids(tx: &Transaction, sql: &str, id: i64) -> Result<Vec<i64>, RemovalError> {
    let mut stmt = tx.prepare(sql)?;
    let rows = stmt.query_map([id], |row| row.get(0))?;
    Ok(rows.collect::<Result<Vec<i64>, _>>()?)
}

/// Turns a delete that found no row into "not found": another process
/// removed the thing between the lookup and the transaction.
fn gone(deleted: usize, kind: &'static str, name: impl ToString) -> Result<(), RemovalError> {
    if deleted == 0 {
        return Err(CatalogueError::NotFound {
            kind,
            name: name.to_string(),
        }
        .into());
    }
    Ok(())
}

fn join(ids: &[i64]) -> String {
    ids.iter()
        .map(i64::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalogue::{DeviceAuth, NewBatch, NewDevice, NewImage, NewOperation, Probe};

    struct Fixture {
        _dir: tempfile::TempDir,
        catalogue: Catalogue,
        build: Build,
        image: Image,
        device: Device,
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let catalogue = Catalogue::open_in(dir.path()).unwrap();
        catalogue.add_category("WiFi", "").unwrap();
        let build = catalogue
            .add_build("WiFi", "24.10.0", Some("OpenWrt 24.10.0 r1"), "")
            .unwrap();
        let image = catalogue
            .add_image(&NewImage {
                build_id: build.id,
                image_type: "c7.bin".to_string(),
                file_name: "openwrt-c7.bin".to_string(),
                size: 3,
                sha256: "ab".repeat(32),
                boards: vec!["tplink,archer-c7-v5".to_string()],
                metadata: None,
            })
            .unwrap();
        let device = catalogue
            .add_device(&NewDevice {
                name: "ap1".to_string(),
                host: "127.0.0.2".to_string(),
                alternate_hosts: vec!["127.0.0.3".to_string()],
                port: 22,
                user: "root".to_string(),
                auth: DeviceAuth::Password {
                    credential: "device/ap1/password".to_string(),
                },
                site: Some("acme".to_string()),
                tags: vec!["lab".to_string()],
            })
            .unwrap();
        Fixture {
            _dir: dir,
            catalogue,
            build,
            image,
            device,
        }
    }

    fn operate(f: &Fixture) -> i64 {
        let new = NewOperation {
            device_id: f.device.id,
            image_id: f.image.id,
            batch_id: None,
            options: Default::default(),
            force: false,
        };
        f.catalogue.add_operation(&new, "queued").unwrap().id
    }

    #[test]
    fn an_image_an_operation_used_stays() {
        let f = fixture();
        let operation = operate(&f);
        let error = f.catalogue.remove_image(f.image.id).unwrap_err();
        assert_eq!(
            error.to_string(),
            format!(
                "image {} is used by upgrade operations {operation}; it stays for the record",
                f.image.id
            )
        );
        assert!(f.catalogue.image(f.image.id).is_ok());
    }

    #[test]
    fn an_unused_image_goes_with_its_device_firmware() {
        let f = fixture();
        let probe = Probe {
            board: Some("tplink,archer-c7-v5".to_string()),
            os_identifier: Some("OpenWrt 24.10.0 r1".to_string()),
            ..Default::default()
        };
        f.catalogue.record_probe(f.device.id, &probe).unwrap();
        let removed = f.catalogue.remove_image(f.image.id).unwrap();
        assert_eq!(removed.image.sha256, "ab".repeat(32));
        assert_eq!(removed.device_firmware_dropped, 1);
        assert!(f.catalogue.image(f.image.id).is_err());
        assert!(!f.catalogue.image_file_in_use(&"ab".repeat(32)).unwrap());
        assert_eq!(f.catalogue.device_firmware(f.device.id).unwrap(), None);
    }

    #[test]
    fn a_build_with_images_or_batches_stays() {
        let f = fixture();
        let error = f.catalogue.remove_build("WiFi", "24.10.0").unwrap_err();
        assert_eq!(
            error.to_string(),
            format!(
                "build WiFi 24.10.0 still has images {}; remove those first",
                f.image.id
            )
        );

        f.catalogue.remove_image(f.image.id).unwrap();
        let batch = f
            .catalogue
            .add_batch(
                &NewBatch {
                    build_id: f.build.id,
                    selection: serde_json::json!({}),
                    options: Default::default(),
                    rollout: serde_json::json!({}),
                    upgrades: vec![],
                    skipped: vec![(f.device.id, "no image for its board".to_string())],
                },
                "started",
            )
            .unwrap();
        let error = f.catalogue.remove_build("WiFi", "24.10.0").unwrap_err();
        assert_eq!(
            error.to_string(),
            format!(
                "build WiFi 24.10.0 is used by batches {}; it stays for the record",
                batch.id
            )
        );
        let error = f.catalogue.remove_device("ap1").unwrap_err();
        assert_eq!(
            error.to_string(),
            format!("device ap1 is in batches {}; its history stays", batch.id)
        );
    }

    #[test]
    fn a_category_goes_once_its_builds_are_gone() {
        let f = fixture();
        let error = f.catalogue.remove_category("WiFi").unwrap_err();
        assert_eq!(
            error.to_string(),
            "category WiFi still has builds 24.10.0; remove those first"
        );
        f.catalogue.remove_image(f.image.id).unwrap();
        f.catalogue.remove_build("WiFi", "24.10.0").unwrap();
        f.catalogue.remove_category("WiFi").unwrap();
        assert!(f.catalogue.categories().unwrap().is_empty());
        let error = f.catalogue.remove_category("WiFi").unwrap_err();
        assert_eq!(error.to_string(), "no category \"WiFi\"");
    }

    #[test]
    fn a_device_with_operations_keeps_its_history() {
        let f = fixture();
        operate(&f);
        let error = f.catalogue.remove_device("ap1").unwrap_err();
        assert_eq!(
            error.to_string(),
            "device ap1 has 1 upgrade operation; its history stays"
        );
        assert!(f.catalogue.device("ap1").is_ok());
    }

    #[test]
    fn a_device_goes_with_its_addresses_tags_and_firmware() {
        let f = fixture();
        f.catalogue
            .set_device_firmware(f.device.id, f.image.id, true)
            .unwrap();
        let removed = f.catalogue.remove_device("ap1").unwrap();
        assert_eq!(removed.alternate_hosts, vec!["127.0.0.3"]);
        assert!(f.catalogue.device("ap1").is_err());
        assert_eq!(f.catalogue.device_firmware(f.device.id).unwrap(), None);
        let conn = f.catalogue.lock();
        let left: i64 = conn
            .query_row(
                "SELECT (SELECT COUNT(*) FROM device_address)
                      + (SELECT COUNT(*) FROM device_tag)",
                [],
                |row| row.get(0),
            )
            .unwrap();
        assert_eq!(left, 0);
        drop(conn);
        // Its firmware record no longer holds the image in the catalogue.
        assert!(f.catalogue.remove_image(f.image.id).is_ok());
    }
}
