//! The JSON metadata OpenWrt's build writes into an image: which boards the
//! image supports, which release it is, and whether a device can keep its
//! configuration across the upgrade.
//!
//! Only the fields the product acts on are typed; the whole document is kept
//! as it was read so that the catalogue can store and show all of it.

use serde::Deserialize;
use thiserror::Error;

/// What is wrong with a metadata document.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum MetadataError {
    /// The bytes are not JSON at all.
    #[error("the metadata is not JSON: {0}")]
    NotJson(String),

    /// The JSON lacks a field the product needs, or has one of the wrong type.
    #[error("the metadata is not usable: {0}")]
    Invalid(String),
}

/// The metadata of an image, read from its fwtool metadata block.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Metadata {
    /// The board names the image may be flashed on, as devices report them
    /// (`/tmp/sysinfo/board_name`).
    pub supported_devices: Vec<String>,

    /// The board names OpenWrt checks instead of `supported_devices` when
    /// `compat_version` is not "1.0", if the image lists any.
    #[serde(default)]
    pub new_supported_devices: Option<Vec<String>>,

    /// The release the image installs.
    #[serde(default)]
    pub version: Release,

    /// The configuration compatibility version; "1.0" when absent, as
    /// OpenWrt assumes.
    #[serde(default = "default_compat_version")]
    pub compat_version: String,

    /// Why the configuration cannot be kept, when the image says.
    #[serde(default)]
    pub compat_message: Option<String>,

    /// The version of the metadata format itself.
    #[serde(default)]
    pub metadata_version: Option<String>,

    /// The whole document as read.
    #[serde(skip)]
    pub raw: serde_json::Value,
}

/// The `version` object of the metadata: the release an image installs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Release {
    /// The distribution, such as "OpenWrt".
    #[serde(default)]
    pub dist: String,
    /// The release number, such as "24.10.0".
    #[serde(default)]
    pub version: String,
    /// The source revision, such as "r28427-6df0e3d02a".
    #[serde(default)]
    pub revision: String,
    /// The target and subtarget, such as "ath79/generic".
    #[serde(default)]
    pub target: String,
    /// The build's name for the device, such as "tplink_archer-c7-v5".
    #[serde(default)]
    pub board: String,
}

/// How an image's `compat_version` relates to a device's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompatChange {
    /// The same version: the configuration can be kept.
    Same,
    /// The minor number differs: OpenWrt only upgrades without keeping the
    /// configuration (`sysupgrade -n`).
    Minor,
    /// The major number differs: the configuration format changed and the
    /// configuration cannot be kept.
    Major,
}

fn default_compat_version() -> String {
    "1.0".to_owned()
}

impl Metadata {
    /// Reads a metadata document from the JSON of a metadata block.
    pub fn from_json(json: &[u8]) -> Result<Metadata, MetadataError> {
        // Some tools pad the block with NUL bytes after the document.
        let end = json
            .iter()
            .rposition(|&byte| byte != 0)
            .map_or(0, |last| last + 1);
        let raw: serde_json::Value = serde_json::from_slice(&json[..end])
            .map_err(|err| MetadataError::NotJson(err.to_string()))?;
        let mut metadata =
            Metadata::deserialize(&raw).map_err(|err| MetadataError::Invalid(err.to_string()))?;
        metadata.raw = raw;
        Ok(metadata)
    }

    /// The OS identifier a device running this image reports, such as
    /// "OpenWrt 24.10.0 r28427-6df0e3d02a", or `None` when the metadata does
    /// not name the distribution, release and revision.
    pub fn os_identifier(&self) -> Option<String> {
        let Release {
            dist,
            version,
            revision,
            ..
        } = &self.version;
        if dist.is_empty() || version.is_empty() || revision.is_empty() {
            return None;
        }
        Some(format!("{dist} {version} {revision}"))
    }

    /// The board names OpenWrt's sysupgrade checks a device against.
    pub fn boards(&self) -> &[String] {
        match &self.new_supported_devices {
            Some(boards) if self.compat_version != "1.0" => boards,
            _ => &self.supported_devices,
        }
    }

    /// How this image's `compat_version` differs from the device's (OpenWrt
    /// keeps it in `system.@system[0].compat_version`, "1.0" when unset).
    pub fn compat_change(&self, device_compat: &str) -> CompatChange {
        let (image_major, image_minor) = split_compat(&self.compat_version);
        let (device_major, device_minor) = split_compat(device_compat);
        if image_major != device_major {
            CompatChange::Major
        } else if image_minor != device_minor {
            CompatChange::Minor
        } else {
            CompatChange::Same
        }
    }

    /// Whether the device must drop its configuration (`sysupgrade -n`) to
    /// take this image: any change of `compat_version`, major or minor.
    pub fn needs_config_reset(&self, device_compat: &str) -> bool {
        self.compat_change(device_compat) != CompatChange::Same
    }
}

/// Splits "2.1" into ("2", "1"); a missing minor number counts as "0", so
/// that "2" and "2.0" are the same version.
fn split_compat(compat: &str) -> (&str, &str) {
    let compat = compat.trim();
    match compat.split_once('.') {
        Some((major, minor)) => (major, if minor.is_empty() { "0" } else { minor }),
        None => (compat, "0"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Metadata {
        Metadata::from_json(json.as_bytes()).unwrap()
    }

    #[test]
    fn fields_are_read() {
        let metadata = parse(
            r#"{"supported_devices":["ubnt,unifi-ac-lite"],"compat_version":"2.0",
            "compat_message":"reset needed","metadata_version":"1.1",
            "version":{"dist":"OpenWrt","version":"24.10.0","revision":"r28427-6df0e3d02a",
            "target":"ath79/generic","board":"ubnt_unifi-ac-lite"}}"#,
        );
        assert_eq!(metadata.supported_devices, ["ubnt,unifi-ac-lite"]);
        assert_eq!(metadata.compat_version, "2.0");
        assert_eq!(metadata.compat_message.as_deref(), Some("reset needed"));
        assert_eq!(metadata.metadata_version.as_deref(), Some("1.1"));
        assert_eq!(metadata.version.target, "ath79/generic");
        assert_eq!(metadata.version.board, "ubnt_unifi-ac-lite");
        assert_eq!(
            metadata.os_identifier().as_deref(),
            Some("OpenWrt 24.10.0 r28427-6df0e3d02a")
        );
        assert_eq!(metadata.raw["version"]["version"], "24.10.0");
    }

    #[test]
    fn compat_version_defaults_to_one() {
        let metadata = parse(r#"{"supported_devices":[]}"#);
        assert_eq!(metadata.compat_version, "1.0");
        assert!(!metadata.needs_config_reset("1.0"));
        assert_eq!(metadata.os_identifier(), None);
    }

    #[test]
    fn compat_changes() {
        let cases = [
            ("1.0", "1.0", CompatChange::Same),
            ("1.0", "1", CompatChange::Same),
            ("1.1", "1.0", CompatChange::Minor),
            ("2.0", "1.0", CompatChange::Major),
            ("1.0", "2.0", CompatChange::Major),
            ("2.0", "2.0", CompatChange::Same),
        ];
        for (image, device, expected) in cases {
            let metadata = parse(&format!(
                r#"{{"supported_devices":["a"],"compat_version":"{image}"}}"#
            ));
            assert_eq!(
                metadata.compat_change(device),
                expected,
                "{image} on {device}"
            );
            assert_eq!(
                metadata.needs_config_reset(device),
                expected != CompatChange::Same
            );
        }
    }

    #[test]
    fn new_supported_devices_apply_after_a_compat_change() {
        let metadata = parse(
            r#"{"supported_devices":["old"],"new_supported_devices":["new"],
            "compat_version":"1.1"}"#,
        );
        assert_eq!(metadata.boards(), ["new"]);
        let metadata = parse(r#"{"supported_devices":["old"],"new_supported_devices":["new"]}"#);
        assert_eq!(metadata.boards(), ["old"]);
    }

    #[test]
    fn trailing_nul_padding_is_ignored() {
        let metadata = Metadata::from_json(b"{\"supported_devices\":[\"a\"]}\n\0\0\0").unwrap();
        assert_eq!(metadata.supported_devices, ["a"]);
    }

    #[test]
    fn shell_metacharacters_are_plain_text() {
        let board = r#"a;reboot $(rm -rf /) `id` 'x' \"y\" | & > < * ? ~ #"#;
        let json = serde_json::json!({
            "supported_devices": [board],
            "compat_message": "$(halt); echo pwned",
            "version": {"dist": "Open`Wrt`", "version": "1 && 2", "revision": "r1'\"",
                        "target": "t", "board": "b"}
        });
        let metadata = Metadata::from_json(json.to_string().as_bytes()).unwrap();
        assert_eq!(metadata.supported_devices, [board]);
        assert_eq!(
            metadata.compat_message.as_deref(),
            Some("$(halt); echo pwned")
        );
        assert_eq!(
            metadata.os_identifier().as_deref(),
            Some("Open`Wrt` 1 && 2 r1'\"")
        );
        assert_eq!(metadata.raw, json);
    }

    #[test]
    fn bad_documents_are_refused() {
        let not_json: [&[u8]; 4] = [b"", b"{", b"supported_devices", b"\xff\xfe"];
        for json in not_json {
            let result = Metadata::from_json(json);
            assert!(
                matches!(result, Err(MetadataError::NotJson(_))),
                "{json:?}: {result:?}"
            );
        }
        let invalid = [
            r#"{}"#,
            r#"[]"#,
            r#""text""#,
            r#"{"supported_devices":"a"}"#,
            r#"{"supported_devices":[1]}"#,
            r#"{"supported_devices":[],"compat_version":2.0}"#,
        ];
        for json in invalid {
            let result = Metadata::from_json(json.as_bytes());
            assert!(
                matches!(result, Err(MetadataError::Invalid(_))),
                "{json}: {result:?}"
            );
        }
    }
}
