//! Categories, builds and images: what firmware the catalogue holds.

use rusqlite::{params, OptionalExtension, Row};
use serde::Serialize;

use super::{duplicate, now, Catalogue, CatalogueError};

/// A family of firmware, such as "WiFi" or "LoRa gateway".
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Category {
    pub id: i64,
    pub name: String,
    pub description: String,
    pub created_at: String,
}

/// A version of a category's firmware.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Build {
    pub id: i64,
    pub category_id: i64,
    pub category: String,
    pub version: String,
    /// What devices running this build report, such as
    /// `OpenWrt 23.05.3 r23809-234f1a2efa`.
    pub os_identifier: Option<String>,
    pub changelog: String,
    pub created_at: String,
}

/// One file of a build for one hardware type.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Image {
    pub id: i64,
    pub build_id: i64,
    /// The image type, such as `ath79-generic-tplink_archer-c7-v5-squashfs-sysupgrade.bin`.
    #[serde(rename = "type")]
    pub image_type: String,
    pub file_name: String,
    pub size: u64,
    pub sha256: String,
    pub boards: Vec<String>,
    /// The fwtool metadata as read from the file, when it had any.
    pub metadata: Option<serde_json::Value>,
    pub created_at: String,
}

/// What the catalogue records of an image whose file is already stored.
#[derive(Clone, Debug)]
pub struct NewImage {
    pub build_id: i64,
    pub image_type: String,
    pub file_name: String,
    pub size: u64,
    pub sha256: String,
    pub boards: Vec<String>,
    pub metadata: Option<serde_json::Value>,
}

const BUILD_COLUMNS: &str = "b.id, b.category_id, c.name, b.version, b.os_identifier, \
                             b.changelog, b.created_at";
const IMAGE_COLUMNS: &str =
    "id, build_id, type, file_name, size, sha256, boards, metadata, created_at";

impl Catalogue {
    /// Adds a category; its name must be new.
    pub fn add_category(&self, name: &str, description: &str) -> Result<Category, CatalogueError> {
        let name = non_empty("category name", name)?;
        let conn = self.lock();
        conn.execute(
            "INSERT INTO category (name, description, created_at) VALUES (?1, ?2, ?3)",
            params![name, description, now()],
        )
        .map_err(duplicate("category", name))?;
        let id = conn.last_insert_rowid();
        drop(conn);
        self.category_by_id(id)
    }

    /// Every category, by name.
    pub fn categories(&self) -> Result<Vec<Category>, CatalogueError> {
        let conn = self.lock();
        let mut stmt =
            conn.prepare("SELECT id, name, description, created_at FROM category ORDER BY name")?;
        let rows = stmt.query_map([], category_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The category called `name`.
    pub fn category(&self, name: &str) -> Result<Category, CatalogueError> {
        let conn = self.lock();
        conn.query_row(
            "SELECT id, name, description, created_at FROM category WHERE name = ?1",
            [name],
            category_from_row,
        )
        .optional()?
        .ok_or_else(|| CatalogueError::NotFound {
            kind: "category",
            name: name.to_string(),
        })
    }

    fn category_by_id(&self, id: i64) -> Result<Category, CatalogueError> {
        let conn = self.lock();
        Ok(conn.query_row(
            "SELECT id, name, description, created_at FROM category WHERE id = ?1",
            [id],
            category_from_row,
        )?)
    }

    /// Adds a build of `category`; the version must be new in the category.
    pub fn add_build(
        &self,
        category: &str,
        version: &str,
        os_identifier: Option<&str>,
        changelog: &str,
    ) -> Result<Build, CatalogueError> {
        let version = non_empty("build version", version)?;
        let category = self.category(category)?;
        let conn = self.lock();
        conn.execute(
            "INSERT INTO build (category_id, version, os_identifier, changelog, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![category.id, version, os_identifier, changelog, now()],
        )
        .map_err(duplicate("build", &format!("{} {version}", category.name)))?;
        let id = conn.last_insert_rowid();
        drop(conn);
        self.build_by_id(id)
    }

    /// Fills a build's OS identifier when it has none yet, as read from an
    /// image's metadata.
    pub fn fill_build_os_identifier(
        &self,
        build_id: i64,
        os_identifier: &str,
    ) -> Result<(), CatalogueError> {
        self.lock().execute(
            "UPDATE build SET os_identifier = ?2 WHERE id = ?1 AND os_identifier IS NULL",
            params![build_id, os_identifier],
        )?;
        Ok(())
    }

    /// The build `version` of `category`.
    pub fn build(&self, category: &str, version: &str) -> Result<Build, CatalogueError> {
        let conn = self.lock();
        conn.query_row(
            &format!(
                "SELECT {BUILD_COLUMNS} FROM build b JOIN category c ON c.id = b.category_id
                 WHERE c.name = ?1 AND b.version = ?2"
            ),
            [category, version],
            build_from_row,
        )
        .optional()?
        .ok_or_else(|| CatalogueError::NotFound {
            kind: "build",
            name: format!("{category} {version}"),
        })
    }

    /// The build with this id.
    pub fn build_by_id(&self, id: i64) -> Result<Build, CatalogueError> {
        let conn = self.lock();
        conn.query_row(
            &format!(
                "SELECT {BUILD_COLUMNS} FROM build b JOIN category c ON c.id = b.category_id
                 WHERE b.id = ?1"
            ),
            [id],
            build_from_row,
        )
        .optional()?
        .ok_or_else(|| CatalogueError::NotFound {
            kind: "build",
            name: id.to_string(),
        })
    }

    /// Every build, newest first, optionally of one category.
    pub fn builds(&self, category: Option<&str>) -> Result<Vec<Build>, CatalogueError> {
        let conn = self.lock();
        let mut stmt = conn.prepare(&format!(
            "SELECT {BUILD_COLUMNS} FROM build b JOIN category c ON c.id = b.category_id
             WHERE ?1 IS NULL OR c.name = ?1 ORDER BY b.created_at DESC, b.id DESC"
        ))?;
        let rows = stmt.query_map([category], build_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The builds whose OS identifier is `os_identifier`.
    pub fn builds_with_os_identifier(
        &self,
        os_identifier: &str,
    ) -> Result<Vec<Build>, CatalogueError> {
        let conn = self.lock();
        let mut stmt = conn.prepare(&format!(
            "SELECT {BUILD_COLUMNS} FROM build b JOIN category c ON c.id = b.category_id
             WHERE b.os_identifier = ?1 ORDER BY b.id"
        ))?;
        let rows = stmt.query_map([os_identifier], build_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Records an image whose file is already in the store. At most one
    /// image per build and type.
    pub fn add_image(&self, image: &NewImage) -> Result<Image, CatalogueError> {
        // The type names the image in every list and error; the boards are
        // printed and compared with what devices report. Neither may carry
        // terminal escapes or line breaks from a hostile file or argument.
        non_empty("image type", &image.image_type)?;
        if let Some(board) = image
            .boards
            .iter()
            .find(|b| b.chars().any(char::is_control))
        {
            return Err(CatalogueError::Invalid(format!(
                "image {}: board name {board:?} contains control characters",
                image.file_name.escape_debug()
            )));
        }
        let boards = serde_json::to_string(&image.boards).expect("a list of strings serialises");
        let metadata = image.metadata.as_ref().map(|m| m.to_string());
        let conn = self.lock();
        conn.execute(
            "INSERT INTO image (build_id, type, file_name, size, sha256, boards, metadata,
                                created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                image.build_id,
                image.image_type,
                image.file_name,
                image.size as i64,
                image.sha256,
                boards,
                metadata,
                now()
            ],
        )
        .map_err(duplicate("image of type", &image.image_type))?;
        let id = conn.last_insert_rowid();
        drop(conn);
        self.image(id)
    }

    /// The image with this id.
    pub fn image(&self, id: i64) -> Result<Image, CatalogueError> {
        let conn = self.lock();
        let image = conn
            .query_row(
                &format!("SELECT {IMAGE_COLUMNS} FROM image WHERE id = ?1"),
                [id],
                image_from_row,
            )
            .optional()?
            .ok_or_else(|| CatalogueError::NotFound {
                kind: "image",
                name: id.to_string(),
            })?;
        image
    }

    /// The images of a build.
    pub fn images(&self, build_id: i64) -> Result<Vec<Image>, CatalogueError> {
        let conn = self.lock();
        let mut stmt = conn.prepare(&format!(
            "SELECT {IMAGE_COLUMNS} FROM image WHERE build_id = ?1 ORDER BY type"
        ))?;
        let rows = stmt.query_map([build_id], image_from_row)?;
        rows.map(|row| row?).collect()
    }

    /// Whether any image still refers to the stored file `sha256`.
    pub fn image_file_in_use(&self, sha256: &str) -> Result<bool, CatalogueError> {
        let conn = self.lock();
        Ok(conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM image WHERE sha256 = ?1)",
            [sha256],
            |row| row.get(0),
        )?)
    }
}

fn non_empty<'a>(what: &str, value: &'a str) -> Result<&'a str, CatalogueError> {
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return Err(CatalogueError::Invalid(format!("{what} is empty")));
    }
    if trimmed.chars().any(char::is_control) {
        return Err(CatalogueError::Invalid(format!(
            "{what} contains control characters"
        )));
    }
    Ok(trimmed)
}

fn category_from_row(row: &Row) -> rusqlite::Result<Category> {
    Ok(Category {
        id: row.get(0)?,
        name: row.get(1)?,
        description: row.get(2)?,
        created_at: row.get(3)?,
    })
}

fn build_from_row(row: &Row) -> rusqlite::Result<Build> {
    Ok(Build {
        id: row.get(0)?,
        category_id: row.get(1)?,
        category: row.get(2)?,
        version: row.get(3)?,
        os_identifier: row.get(4)?,
        changelog: row.get(5)?,
        created_at: row.get(6)?,
    })
}

/// Reads an image row; the outer result is SQLite's, the inner one the
/// catalogue's own JSON columns.
fn image_from_row(row: &Row) -> rusqlite::Result<Result<Image, CatalogueError>> {
    let boards: String = row.get(6)?;
    let metadata: Option<String> = row.get(7)?;
    let boards = match serde_json::from_str(&boards) {
        Ok(boards) => boards,
        Err(source) => {
            return Ok(Err(CatalogueError::Json {
                what: "image boards",
                source,
            }))
        }
    };
    let metadata = match metadata.map(|m| serde_json::from_str(&m)).transpose() {
        Ok(metadata) => metadata,
        Err(source) => {
            return Ok(Err(CatalogueError::Json {
                what: "image metadata",
                source,
            }))
        }
    };
    Ok(Ok(Image {
        id: row.get(0)?,
        build_id: row.get(1)?,
        image_type: row.get(2)?,
        file_name: row.get(3)?,
        size: row.get::<_, i64>(4)? as u64,
        sha256: row.get(5)?,
        boards,
        metadata,
        created_at: row.get(8)?,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalogue() -> (tempfile::TempDir, Catalogue) {
        let dir = tempfile::tempdir().unwrap();
        let catalogue = Catalogue::open_in(dir.path()).unwrap();
        (dir, catalogue)
    }

    fn new_image(build_id: i64, image_type: &str) -> NewImage {
        NewImage {
            build_id,
            image_type: image_type.to_string(),
            file_name: format!("openwrt-{image_type}"),
            size: 3,
            sha256: "ab".repeat(32),
            boards: vec!["tplink,archer-c7-v5".to_string()],
            metadata: Some(serde_json::json!({"compat_version": "1.0"})),
        }
    }

    #[test]
    fn duplicate_names_are_refused() {
        let (_dir, catalogue) = catalogue();
        catalogue.add_category("WiFi", "").unwrap();
        let error = catalogue.add_category("WiFi", "").unwrap_err();
        assert_eq!(error.to_string(), "category \"WiFi\" already exists");
        catalogue.add_build("WiFi", "1.0", None, "").unwrap();
        let error = catalogue.add_build("WiFi", "1.0", None, "").unwrap_err();
        assert_eq!(error.to_string(), "build \"WiFi 1.0\" already exists");
    }

    #[test]
    fn empty_and_control_names_are_refused() {
        let (_dir, catalogue) = catalogue();
        assert!(catalogue.add_category("  ", "").is_err());
        assert!(catalogue.add_category("a\nb", "").is_err());
    }

    #[test]
    fn one_image_per_build_and_type() {
        let (_dir, catalogue) = catalogue();
        catalogue.add_category("WiFi", "").unwrap();
        let build = catalogue.add_build("WiFi", "24.10.0", None, "").unwrap();
        let image = catalogue.add_image(&new_image(build.id, "c7.bin")).unwrap();
        assert_eq!(image.boards, vec!["tplink,archer-c7-v5"]);
        assert!(catalogue.add_image(&new_image(build.id, "c7.bin")).is_err());
        catalogue
            .add_image(&new_image(build.id, "other.bin"))
            .unwrap();
        assert_eq!(catalogue.images(build.id).unwrap().len(), 2);
        assert!(catalogue.image_file_in_use(&"ab".repeat(32)).unwrap());
    }

    #[test]
    fn os_identifier_is_filled_once() {
        let (_dir, catalogue) = catalogue();
        catalogue.add_category("WiFi", "").unwrap();
        let build = catalogue.add_build("WiFi", "24.10.0", None, "").unwrap();
        catalogue
            .fill_build_os_identifier(build.id, "OpenWrt 24.10.0 r1")
            .unwrap();
        catalogue
            .fill_build_os_identifier(build.id, "OpenWrt other")
            .unwrap();
        let found = catalogue
            .builds_with_os_identifier("OpenWrt 24.10.0 r1")
            .unwrap();
        assert_eq!(found[0].id, build.id);
    }
}
