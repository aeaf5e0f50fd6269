//! The boards and releases the lab knows: what a simulated device can be and
//! which OpenWrt release it can run.
//!
//! The names follow OpenWrt's: a board is what `ubus call system board`
//! reports as `board_name`, a release is what `/etc/openwrt_release` says.

use serde::{Deserialize, Serialize};

/// An OpenWrt release as a device reports it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Release {
    /// The distribution, "OpenWrt".
    pub dist: String,
    /// The version, such as "23.05.3".
    pub version: String,
    /// The revision, such as "r23809-234f1a2efa".
    pub revision: String,
    /// The target, such as "ath79/generic".
    pub target: String,
}

impl Release {
    /// Returns the OS identifier the catalogue matches builds by, such as
    /// "OpenWrt 23.05.3 r23809-234f1a2efa".
    pub fn os_identifier(&self) -> String {
        format!("{} {} {}", self.dist, self.version, self.revision)
    }

    /// Returns this release built for another target.
    pub fn for_target(&self, target: &str) -> Release {
        Release {
            target: target.to_string(),
            ..self.clone()
        }
    }
}

/// A hardware type a lab device can simulate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Board {
    /// The board name, such as "tplink,archer-c7-v5".
    pub name: &'static str,
    /// The model, such as "TP-Link Archer C7 v5".
    pub model: &'static str,
    /// The OpenWrt target, such as "ath79/generic".
    pub target: &'static str,
    /// Names older releases used for this board.
    pub legacy_names: &'static [&'static str],
}

impl Board {
    /// Returns the board name as OpenWrt spells it in image file names and
    /// in the metadata's `version.board` ("tplink_archer-c7-v5").
    pub fn image_label(&self) -> String {
        self.name.replace(',', "_")
    }
}

static BOARDS: [Board; 4] = [
    Board {
        name: "tplink,archer-c7-v5",
        model: "TP-Link Archer C7 v5",
        target: "ath79/generic",
        legacy_names: &["archer-c7-v5"],
    },
    Board {
        name: "ubnt,unifi-ac-lite",
        model: "Ubiquiti UniFi AC Lite",
        target: "ath79/generic",
        legacy_names: &["ubnt-unifi"],
    },
    Board {
        name: "glinet,gl-ar300m-nand",
        model: "GL.iNet GL-AR300M (NAND)",
        target: "ath79/nand",
        legacy_names: &["gl-ar300m"],
    },
    Board {
        name: "generic",
        model: "QEMU Standard PC (i440FX + PIIX, 1996)",
        target: "x86/64",
        legacy_names: &[],
    },
];

/// Returns every board the lab can simulate.
pub fn boards() -> &'static [Board] {
    &BOARDS
}

/// Returns the board with this name, if the lab knows it.
pub fn board(name: &str) -> Option<&'static Board> {
    BOARDS.iter().find(|board| board.name == name)
}

/// A known release: version, revision and the kernel it ships.
struct KnownRelease {
    version: &'static str,
    revision: &'static str,
    kernel: &'static str,
}

static RELEASES: [KnownRelease; 3] = [
    KnownRelease {
        version: "22.03.6",
        revision: "r20265-f85a79bcb4",
        kernel: "5.10.201",
    },
    KnownRelease {
        version: "23.05.3",
        revision: "r23809-234f1a2efa",
        kernel: "5.15.150",
    },
    KnownRelease {
        version: "24.10.0",
        revision: "r28427-6df0e3d02a",
        kernel: "6.6.73",
    },
];

/// Returns a known OpenWrt release for the "ath79/generic" target, or none
/// for a version the lab does not know; use [`Release::for_target`] for
/// another target.
pub fn release(version: &str) -> Option<Release> {
    let known = RELEASES.iter().find(|known| known.version == version)?;
    Some(Release {
        dist: "OpenWrt".to_string(),
        version: known.version.to_string(),
        revision: known.revision.to_string(),
        target: "ath79/generic".to_string(),
    })
}

/// Returns the kernel version a device running this release reports.
pub(crate) fn kernel_version(release: &Release) -> &'static str {
    RELEASES
        .iter()
        .find(|known| known.version == release.version)
        .map_or("5.15.150", |known| known.kernel)
}

/// Returns the CPU description `ubus call system board` gives as `system`.
pub(crate) fn system_description(board: &Board) -> &'static str {
    match board.target {
        "x86/64" => "Intel(R) Celeron(R) CPU J1900 @ 1.99GHz",
        "ath79/nand" => "Qualcomm Atheros QCA9533 ver 2 rev 0",
        _ => "Qualcomm Atheros QCA956X ver 1 rev 0",
    }
}

/// Returns the package architecture of an OpenWrt target.
pub(crate) fn architecture(target: &str) -> &'static str {
    if target.starts_with("x86/64") {
        "x86_64"
    } else {
        "mips_24kc"
    }
}

/// Returns the root file system type a device of this board reports.
pub(crate) fn rootfs_type(board: &Board) -> &'static str {
    if board.target == "x86/64" {
        "ext4"
    } else {
        "squashfs"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_identifier_joins_dist_version_and_revision() {
        let release = release("23.05.3").unwrap();
        assert_eq!(release.os_identifier(), "OpenWrt 23.05.3 r23809-234f1a2efa");
    }

    #[test]
    fn unknown_versions_have_no_release() {
        assert_eq!(release("99.01.0"), None);
        assert_eq!(release("24.10.0").unwrap().revision, "r28427-6df0e3d02a");
    }

    #[test]
    fn boards_are_found_by_name() {
        assert_eq!(board("generic").unwrap().target, "x86/64");
        assert_eq!(
            board("tplink,archer-c7-v5").unwrap().image_label(),
            "tplink_archer-c7-v5"
        );
        assert!(board("linksys,wrt3200acm").is_none());
    }
}
