//! Image types: which hardware an OpenWrt image file is for, told by its
//! file name.
//!
//! OpenWrt names an image `openwrt-<version>-<target>-<subtarget>-<device>-
//! <filesystem>-<kind>`; everything after `openwrt-<version>-` is the same
//! for every release of one device, and that suffix is the image type's
//! identity. Images with fwtool metadata say which boards they support;
//! legacy images (OpenWrt 19.07 and earlier, some vendor builds) do not, and
//! the table here supplies their boards. Users add their own types in the
//! settings; those win over the built-in ones.
//!
//! Boards are the names a device reports in `/tmp/sysinfo/board_name` and
//! `ubus call system board`, not the marketing model: the ath79 and later
//! targets report a device-tree name such as "tplink,archer-c7-v5", while the
//! old ar71xx target reported short names such as "archer-c7-v5". A type
//! lists both where a device moved from one to the other.

use serde::{Deserialize, Serialize};

/// One kind of image file: the file-name suffix that identifies it, a label
/// people read, and the boards that can run it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageType {
    /// The file-name suffix after `openwrt-<version>-`, such as
    /// "ath79-generic-tplink_archer-c7-v5-squashfs-sysupgrade.bin".
    pub name: String,
    /// A label such as "TP-Link Archer C7 v5 (ath79)".
    pub label: String,
    /// The board names of the devices that can run it.
    pub boards: Vec<String>,
}

/// The built-in table: name, label, boards.
const BUILTIN: &[(&str, &str, &[&str])] = &[
    // Ubiquiti UniFi AP. ar71xx called the board "unifi"; some tools and
    // OpenWISP setups spell it "ubnt-unifi"; ath79 names it "ubnt,unifi".
    // All three are listed so that a legacy image can be matched against a
    // device on either target.
    (
        "ar71xx-generic-ubnt-unifi-squashfs-sysupgrade.bin",
        "Ubiquiti UniFi AP (ar71xx, OpenWrt 19.07 and earlier)",
        &["ubnt,unifi", "ubnt-unifi", "unifi"],
    ),
    (
        "ath79-generic-ubnt_unifi-squashfs-sysupgrade.bin",
        "Ubiquiti UniFi AP (ath79)",
        &["ubnt,unifi"],
    ),
    (
        "ar71xx-generic-ubnt-unifiac-lite-squashfs-sysupgrade.bin",
        "Ubiquiti UniFi AC Lite (ar71xx, OpenWrt 19.07 and earlier)",
        &["ubnt,unifi-ac-lite", "unifiac-lite"],
    ),
    (
        "ath79-generic-ubnt_unifi-ac-lite-squashfs-sysupgrade.bin",
        "Ubiquiti UniFi AC Lite (ath79)",
        &["ubnt,unifi-ac-lite"],
    ),
    (
        "ath79-generic-ubnt_unifi-ac-lr-squashfs-sysupgrade.bin",
        "Ubiquiti UniFi AC LR (ath79)",
        &["ubnt,unifi-ac-lr"],
    ),
    (
        "ar71xx-generic-ubnt-unifiac-mesh-squashfs-sysupgrade.bin",
        "Ubiquiti UniFi AC Mesh (ar71xx, OpenWrt 19.07 and earlier)",
        &["ubnt,unifi-ac-mesh", "unifiac-lite"],
    ),
    (
        "ath79-generic-ubnt_unifi-ac-mesh-squashfs-sysupgrade.bin",
        "Ubiquiti UniFi AC Mesh (ath79)",
        &["ubnt,unifi-ac-mesh"],
    ),
    (
        "ar71xx-generic-ubnt-unifiac-pro-squashfs-sysupgrade.bin",
        "Ubiquiti UniFi AC Pro (ar71xx, OpenWrt 19.07 and earlier)",
        &["ubnt,unifi-ac-pro", "unifiac-pro"],
    ),
    (
        "ath79-generic-ubnt_unifi-ac-pro-squashfs-sysupgrade.bin",
        "Ubiquiti UniFi AC Pro (ath79)",
        &["ubnt,unifi-ac-pro"],
    ),
    (
        "ar71xx-generic-ubnt-uap-pro-squashfs-sysupgrade.bin",
        "Ubiquiti UniFi AP Pro (ar71xx, OpenWrt 19.07 and earlier)",
        &["ubnt,unifi-ap-pro", "uap-pro"],
    ),
    (
        "ath79-generic-ubnt_unifi-ap-pro-squashfs-sysupgrade.bin",
        "Ubiquiti UniFi AP Pro (ath79)",
        &["ubnt,unifi-ap-pro"],
    ),
    (
        "ath79-generic-ubnt_nanostation-m-xw-squashfs-sysupgrade.bin",
        "Ubiquiti NanoStation M XW (ath79)",
        &["ubnt,nanostation-m-xw"],
    ),
    (
        "ath79-generic-ubnt_nanostation-loco-m-xw-squashfs-sysupgrade.bin",
        "Ubiquiti NanoStation Loco M XW (ath79)",
        &["ubnt,nanostation-loco-m-xw"],
    ),
    // TP-Link Archer C7: ar71xx used "archer-c7" for v1 and v2.
    (
        "ar71xx-generic-archer-c7-v2-squashfs-sysupgrade.bin",
        "TP-Link Archer C7 v2 (ar71xx, OpenWrt 19.07 and earlier)",
        &["tplink,archer-c7-v2", "archer-c7"],
    ),
    (
        "ath79-generic-tplink_archer-c7-v2-squashfs-sysupgrade.bin",
        "TP-Link Archer C7 v2 (ath79)",
        &["tplink,archer-c7-v2", "archer-c7"],
    ),
    (
        "ar71xx-generic-archer-c7-v4-squashfs-sysupgrade.bin",
        "TP-Link Archer C7 v4 (ar71xx, OpenWrt 19.07 and earlier)",
        &["tplink,archer-c7-v4", "archer-c7-v4"],
    ),
    (
        "ath79-generic-tplink_archer-c7-v4-squashfs-sysupgrade.bin",
        "TP-Link Archer C7 v4 (ath79)",
        &["tplink,archer-c7-v4", "archer-c7-v4"],
    ),
    (
        "ar71xx-generic-archer-c7-v5-squashfs-sysupgrade.bin",
        "TP-Link Archer C7 v5 (ar71xx, OpenWrt 19.07 and earlier)",
        &["tplink,archer-c7-v5", "archer-c7-v5"],
    ),
    (
        "ath79-generic-tplink_archer-c7-v5-squashfs-sysupgrade.bin",
        "TP-Link Archer C7 v5 (ath79)",
        &["tplink,archer-c7-v5", "archer-c7-v5"],
    ),
    (
        "ar71xx-generic-tl-wdr4300-v1-squashfs-sysupgrade.bin",
        "TP-Link TL-WDR4300 v1 (ar71xx, OpenWrt 19.07 and earlier)",
        &["tplink,tl-wdr4300-v1", "tl-wdr4300"],
    ),
    (
        "ath79-generic-tplink_tl-wdr4300-v1-squashfs-sysupgrade.bin",
        "TP-Link TL-WDR4300 v1 (ath79)",
        &["tplink,tl-wdr4300-v1", "tl-wdr4300"],
    ),
    (
        "ath79-generic-tplink_cpe210-v2-squashfs-sysupgrade.bin",
        "TP-Link CPE210 v2 (ath79)",
        &["tplink,cpe210-v2"],
    ),
    (
        "ath79-generic-tplink_cpe210-v3-squashfs-sysupgrade.bin",
        "TP-Link CPE210 v3 (ath79)",
        &["tplink,cpe210-v3"],
    ),
    (
        "ath79-generic-tplink_cpe510-v3-squashfs-sysupgrade.bin",
        "TP-Link CPE510 v3 (ath79)",
        &["tplink,cpe510-v3"],
    ),
    (
        "ath79-nand-glinet_gl-ar300m-nand-squashfs-sysupgrade.bin",
        "GL.iNet GL-AR300M NAND (ath79)",
        &["glinet,gl-ar300m-nand", "gl-ar300m"],
    ),
    (
        "ramips-mt76x8-glinet_gl-mt300n-v2-squashfs-sysupgrade.bin",
        "GL.iNet GL-MT300N v2",
        &["glinet,gl-mt300n-v2", "gl-mt300n-v2"],
    ),
    (
        "mvebu-cortexa9-linksys_wrt1900acs-squashfs-sysupgrade.bin",
        "Linksys WRT1900ACS",
        &["linksys,wrt1900acs", "linksys,shelby"],
    ),
    (
        "mvebu-cortexa9-linksys_wrt3200acm-squashfs-sysupgrade.bin",
        "Linksys WRT3200ACM",
        &["linksys,wrt3200acm", "linksys,rango"],
    ),
    // x86 images run on any PC; OpenWrt's x86 builds name the board
    // "generic" in their metadata, and so does this table.
    (
        "x86-64-generic-ext4-combined.img.gz",
        "x86 64-bit PC, ext4, BIOS boot",
        &["generic"],
    ),
    (
        "x86-64-generic-ext4-combined-efi.img.gz",
        "x86 64-bit PC, ext4, EFI boot",
        &["generic"],
    ),
    (
        "x86-64-generic-squashfs-combined.img.gz",
        "x86 64-bit PC, squashfs, BIOS boot",
        &["generic"],
    ),
    (
        "x86-64-generic-squashfs-combined-efi.img.gz",
        "x86 64-bit PC, squashfs, EFI boot",
        &["generic"],
    ),
    (
        "x86-64-combined-squashfs.img.gz",
        "x86 64-bit PC, squashfs (OpenWrt 19.07 and earlier)",
        &["generic"],
    ),
    (
        "x86-64-combined-ext4.img.gz",
        "x86 64-bit PC, ext4 (OpenWrt 19.07 and earlier)",
        &["generic"],
    ),
];

/// Distributions whose file names start `<dist>-<version>-`.
const DISTRIBUTIONS: &[&str] = &["openwrt-", "lede-"];

/// All built-in image types.
pub fn builtin_types() -> Vec<ImageType> {
    BUILTIN.iter().map(|entry| from_entry(*entry)).collect()
}

fn from_entry((name, label, boards): (&str, &str, &[&str])) -> ImageType {
    ImageType {
        name: name.to_owned(),
        label: label.to_owned(),
        boards: boards.iter().map(|board| (*board).to_owned()).collect(),
    }
}

/// The type name a file name carries: the part after `openwrt-<version>-`
/// (or `openwrt-` alone for snapshots, which have no version), or the whole
/// file name when it does not follow OpenWrt's naming.
pub fn type_name_of(file_name: &str) -> &str {
    let Some(rest) = DISTRIBUTIONS
        .iter()
        .find_map(|dist| file_name.strip_prefix(dist))
    else {
        return file_name;
    };
    if !rest.starts_with(|c: char| c.is_ascii_digit()) {
        // A snapshot: "openwrt-ath79-generic-...".
        return rest;
    }
    let Some((_, mut rest)) = rest.split_once('-') else {
        return file_name;
    };
    // Release candidates: "openwrt-24.10.0-rc1-ath79-...".
    if let Some((tag, after)) = rest.split_once('-') {
        let is_rc = tag
            .strip_prefix("rc")
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
        if is_rc {
            rest = after;
        }
    }
    if rest.is_empty() {
        return file_name;
    }
    rest
}

/// Looks up an image type by its exact name, custom types first.
pub fn type_by_name(name: &str, custom: &[ImageType]) -> Option<ImageType> {
    if let Some(found) = custom.iter().find(|image_type| image_type.name == name) {
        return Some(found.clone());
    }
    BUILTIN
        .iter()
        .find(|(builtin, _, _)| *builtin == name)
        .map(|entry| from_entry(*entry))
}

/// Finds the image type of a file name: the custom types first, then the
/// built-in ones; in each, an exact match of [`type_name_of`] first, then
/// the longest type name the file name ends with (after a '-'), which
/// covers other distributions' prefixes such as "immortalwrt-24.10.0-".
pub fn type_from_file_name(file_name: &str, custom: &[ImageType]) -> Option<ImageType> {
    let name = type_name_of(file_name);
    let ends_with = |type_name: &str| {
        file_name
            .strip_suffix(type_name)
            .is_some_and(|head| head.ends_with('-'))
    };

    if let Some(found) = custom.iter().find(|image_type| image_type.name == name) {
        return Some(found.clone());
    }
    if let Some(found) = custom
        .iter()
        .filter(|image_type| !image_type.name.is_empty() && ends_with(&image_type.name))
        .max_by_key(|image_type| image_type.name.len())
    {
        return Some(found.clone());
    }
    if let Some(entry) = BUILTIN.iter().find(|(builtin, _, _)| *builtin == name) {
        return Some(from_entry(*entry));
    }
    BUILTIN
        .iter()
        .filter(|(builtin, _, _)| ends_with(builtin))
        .max_by_key(|(builtin, _, _)| builtin.len())
        .map(|entry| from_entry(*entry))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_names_of_file_names() {
        let cases = [
            (
                "openwrt-19.07.10-ar71xx-generic-ubnt-unifi-squashfs-sysupgrade.bin",
                "ar71xx-generic-ubnt-unifi-squashfs-sysupgrade.bin",
            ),
            (
                "openwrt-24.10.0-rc1-ath79-generic-tplink_archer-c7-v5-squashfs-sysupgrade.bin",
                "ath79-generic-tplink_archer-c7-v5-squashfs-sysupgrade.bin",
            ),
            (
                "openwrt-ath79-generic-tplink_archer-c7-v5-squashfs-sysupgrade.bin",
                "ath79-generic-tplink_archer-c7-v5-squashfs-sysupgrade.bin",
            ),
            (
                "lede-17.01.4-ar71xx-generic-archer-c7-v2-squashfs-sysupgrade.bin",
                "ar71xx-generic-archer-c7-v2-squashfs-sysupgrade.bin",
            ),
            ("firmware.bin", "firmware.bin"),
            ("openwrt-1.0", "openwrt-1.0"),
            ("openwrt-1.0-", "openwrt-1.0-"),
        ];
        for (file_name, expected) in cases {
            assert_eq!(type_name_of(file_name), expected, "{file_name}");
        }
    }

    #[test]
    fn legacy_unifi_image_has_its_boards() {
        let found = type_from_file_name(
            "openwrt-19.07.10-ar71xx-generic-ubnt-unifi-squashfs-sysupgrade.bin",
            &[],
        )
        .unwrap();
        assert_eq!(
            found.name,
            "ar71xx-generic-ubnt-unifi-squashfs-sysupgrade.bin"
        );
        assert!(found.boards.contains(&"ubnt,unifi".to_owned()));
        assert!(found.boards.contains(&"ubnt-unifi".to_owned()));
    }

    #[test]
    fn every_fixture_type_is_known() {
        let names = [
            "openwrt-23.05.3-ath79-generic-tplink_archer-c7-v5-squashfs-sysupgrade.bin",
            "openwrt-24.10.0-ath79-generic-ubnt_unifi-ac-lite-squashfs-sysupgrade.bin",
            "openwrt-23.05.3-x86-64-generic-ext4-combined.img.gz",
            "openwrt-24.10.0-ath79-nand-glinet_gl-ar300m-nand-squashfs-sysupgrade.bin",
        ];
        for file_name in names {
            let found = type_from_file_name(file_name, &[]);
            assert_eq!(
                found.map(|t| t.name),
                Some(type_name_of(file_name).to_owned())
            );
        }
    }

    #[test]
    fn other_distributions_match_by_suffix() {
        let found = type_from_file_name(
            "immortalwrt-24.10.0-ath79-generic-ubnt_unifi-ac-lite-squashfs-sysupgrade.bin",
            &[],
        );
        assert_eq!(found.unwrap().boards, ["ubnt,unifi-ac-lite"]);
        assert_eq!(
            type_from_file_name("xubnt_unifi-ac-lite-squashfs-sysupgrade.bin", &[]),
            None
        );
    }

    #[test]
    fn custom_types_win() {
        let custom = ImageType {
            name: "ar71xx-generic-ubnt-unifi-squashfs-sysupgrade.bin".to_owned(),
            label: "Our UniFi fleet".to_owned(),
            boards: vec!["acme,unifi".to_owned()],
        };
        let file_name = "openwrt-19.07.10-ar71xx-generic-ubnt-unifi-squashfs-sysupgrade.bin";
        let found = type_from_file_name(file_name, std::slice::from_ref(&custom));
        assert_eq!(found.as_ref(), Some(&custom));
        let by_name = type_by_name(&custom.name, std::slice::from_ref(&custom));
        assert_eq!(by_name.as_ref(), Some(&custom));
    }

    #[test]
    fn custom_types_extend_the_table() {
        let custom = ImageType {
            name: "acme-lora-gw-sysupgrade.bin".to_owned(),
            label: "ACME LoRa gateway".to_owned(),
            boards: vec!["acme,lora-gw".to_owned()],
        };
        let file_name = "openwrt-1.2.3-acme-lora-gw-sysupgrade.bin";
        let found = type_from_file_name(file_name, std::slice::from_ref(&custom));
        assert_eq!(found, Some(custom));
        assert_eq!(
            type_from_file_name("openwrt-1.2.3-acme-lora-gw-sysupgrade.bin", &[]),
            None
        );
    }

    #[test]
    fn builtin_names_are_unique_and_complete() {
        let types = builtin_types();
        for (index, image_type) in types.iter().enumerate() {
            assert!(!image_type.boards.is_empty(), "{}", image_type.name);
            assert!(!image_type.label.is_empty(), "{}", image_type.name);
            let duplicate = types[index + 1..]
                .iter()
                .any(|other| other.name == image_type.name);
            assert!(!duplicate, "{} is listed twice", image_type.name);
        }
    }
}
