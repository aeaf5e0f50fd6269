//! Tests of inspecting and storing whole image files: the shared fixtures
//! against their manifest, and damaged variants of them against the store.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::fwtool::tests::{fwtool_crc, push_metadata, push_raw_trailer, push_signature};
use super::*;

/// The shared fixtures folder: beside the clone, or where `FWU_FIXTURES`
/// says.
fn fixtures() -> PathBuf {
    let beside = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/fixtures"
    ));
    if beside.join("images").is_dir() {
        return beside.to_path_buf();
    }
    let from_env = std::env::var_os("FWU_FIXTURES")
        .expect("fixtures not found beside the clone and FWU_FIXTURES is not set");
    PathBuf::from(from_env)
}

fn manifest() -> serde_json::Map<String, serde_json::Value> {
    let text = fs::read_to_string(fixtures().join("images/manifest.json")).unwrap();
    let serde_json::Value::Object(entries) = serde_json::from_str(&text).unwrap() else {
        panic!("the manifest is not an object");
    };
    entries
}

/// Every path under `dir`, to see that a failed import changed nothing.
fn listing(dir: &Path) -> BTreeSet<PathBuf> {
    let mut found = BTreeSet::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(next) = pending.pop() {
        for entry in fs::read_dir(&next).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path.clone());
            }
            found.insert(path);
        }
    }
    found
}

/// A data directory that already holds something, as a real one would.
fn data_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("catalogue.sqlite"), b"not touched").unwrap();
    dir
}

#[test]
fn fixtures_match_their_manifest() {
    let entries = manifest();
    assert_eq!(entries.len(), 6, "the manifest lists six images");
    for (name, expected) in &entries {
        let path = fixtures().join("images").join(name);
        let inspection = inspect_file(&path, None).unwrap();

        assert_eq!(Some(inspection.size), expected["size"].as_u64(), "{name}");
        assert_eq!(
            Some(inspection.sha256.as_str()),
            expected["sha256"].as_str(),
            "{name}"
        );
        let signed = expected
            .get("signed")
            .and_then(|flag| flag.as_bool())
            .unwrap_or(false);
        assert_eq!(inspection.signed, signed, "{name}");

        let reset = expected
            .get("needs_config_reset")
            .and_then(|f| f.as_bool())
            .unwrap_or(false);
        match (&inspection.metadata, &expected["metadata"]) {
            (None, serde_json::Value::Null) => assert!(!reset, "{name}"),
            (Some(metadata), json) => {
                assert_eq!(&metadata.raw, json, "{name}");
                assert_eq!(metadata.needs_config_reset("1.0"), reset, "{name}");
                let boards: Vec<_> = json["supported_devices"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|board| board.as_str().unwrap())
                    .collect();
                assert_eq!(metadata.supported_devices, boards, "{name}");
            }
            (None, json) => panic!("{name}: no metadata read, manifest says {json}"),
        }
    }
}

#[test]
fn fixture_os_identifiers() {
    let path = fixtures()
        .join("images/openwrt-24.10.0-ath79-generic-tplink_archer-c7-v5-squashfs-sysupgrade.bin");
    let metadata = inspect_file(&path, None).unwrap().metadata.unwrap();
    assert_eq!(
        metadata.os_identifier().as_deref(),
        Some("OpenWrt 24.10.0 r28427-6df0e3d02a")
    );
    assert_eq!(metadata.compat_change("1.0"), CompatChange::Same);

    let path = fixtures()
        .join("images/openwrt-24.10.0-ath79-generic-ubnt_unifi-ac-lite-squashfs-sysupgrade.bin");
    let metadata = inspect_file(&path, None).unwrap().metadata.unwrap();
    assert_eq!(metadata.compat_change("1.0"), CompatChange::Major);
    assert_eq!(
        metadata.compat_message.as_deref(),
        Some("Config cannot be migrated: the switch driver changed, upgrade with -n")
    );
}

#[test]
fn fixtures_are_stored_by_sha256() {
    let dir = data_dir();
    for (name, expected) in manifest() {
        let source = fixtures().join("images").join(&name);
        let stored = store(dir.path(), &source, Some(30 << 20), None, &[]).unwrap();

        let sha256 = expected["sha256"].as_str().unwrap();
        assert_eq!(stored.path, stored_path(dir.path(), sha256));
        assert_eq!(fs::read(&stored.path).unwrap(), fs::read(&source).unwrap());
        assert_eq!(stored.file_name, name);
        assert_eq!(stored.image_type.name, type_name_of(&name));

        let boards = match &expected["metadata"] {
            serde_json::Value::Null => type_from_file_name(&name, &[]).unwrap().boards,
            json => serde_json::from_value(json["supported_devices"].clone()).unwrap(),
        };
        assert_eq!(stored.boards, boards, "{name}");
    }

    // Only the store folder was added, and no temporary file remains.
    let mut expected = BTreeSet::from([
        dir.path().join("catalogue.sqlite"),
        dir.path().join("images"),
    ]);
    for entry in manifest().values() {
        expected.insert(stored_path(dir.path(), entry["sha256"].as_str().unwrap()));
    }
    assert_eq!(listing(dir.path()), expected);
}

#[test]
fn legacy_fixture_gets_boards_from_the_type_table() {
    let dir = data_dir();
    let source = fixtures()
        .join("images/openwrt-19.07.10-ar71xx-generic-ubnt-unifi-squashfs-sysupgrade.bin");
    let stored = store(dir.path(), &source, None, None, &[]).unwrap();
    assert_eq!(stored.inspection.metadata, None);
    assert_eq!(
        stored.image_type.name,
        "ar71xx-generic-ubnt-unifi-squashfs-sysupgrade.bin"
    );
    assert!(stored.boards.contains(&"ubnt,unifi".to_owned()));
    assert!(stored.boards.contains(&"ubnt-unifi".to_owned()));
}

#[test]
fn storing_twice_reuses_the_copy() {
    let dir = data_dir();
    let source = fixtures()
        .join("images/openwrt-24.10.0-ath79-nand-glinet_gl-ar300m-nand-squashfs-sysupgrade.bin");
    let first = store(dir.path(), &source, None, None, &[]).unwrap();
    let before = listing(dir.path());
    let second = store(dir.path(), &source, None, None, &[]).unwrap();
    assert_eq!(first, second);
    assert_eq!(listing(dir.path()), before);
}

#[test]
fn truncated_stored_copy_is_replaced() {
    let dir = data_dir();
    let source = fixtures().join("images/openwrt-23.05.3-x86-64-generic-ext4-combined.img.gz");
    let stored = store(dir.path(), &source, None, None, &[]).unwrap();
    fs::write(&stored.path, b"half").unwrap();
    store(dir.path(), &source, None, None, &[]).unwrap();
    assert_eq!(fs::read(&stored.path).unwrap(), fs::read(&source).unwrap());
}

#[test]
fn given_type_overrides_the_file_name() {
    let dir = data_dir();
    let source = dir.path().join("legacy.bin");
    fs::write(&source, vec![0x27; 5000]).unwrap();

    let result = store(dir.path(), &source, None, None, &[]);
    assert!(
        matches!(result, Err(ImageError::UnknownType { .. })),
        "{result:?}"
    );
    let result = store(dir.path(), &source, None, Some("no-such-type.bin"), &[]);
    assert!(
        matches!(result, Err(ImageError::UnknownTypeName { .. })),
        "{result:?}"
    );

    let name = "ath79-generic-tplink_archer-c7-v5-squashfs-sysupgrade.bin";
    let stored = store(dir.path(), &source, None, Some(name), &[]).unwrap();
    assert_eq!(stored.image_type.name, name);
    assert_eq!(stored.boards, ["tplink,archer-c7-v5", "archer-c7-v5"]);
}

#[test]
fn metadata_image_with_an_unknown_name_is_named_after_its_file() {
    let dir = data_dir();
    let mut image = vec![1; 1000];
    push_metadata(
        &mut image,
        br#"{"supported_devices":["acme,gw"],"version":{"board":"acme_gw","target":"x/y"}}"#,
    );
    let source = dir.path().join("openwrt-1.0.0-x-y-acme_gw-sysupgrade.bin");
    fs::write(&source, &image).unwrap();
    let stored = store(dir.path(), &source, None, None, &[]).unwrap();
    assert_eq!(stored.image_type.name, "x-y-acme_gw-sysupgrade.bin");
    assert_eq!(stored.image_type.label, "acme_gw (x/y)");
    assert_eq!(stored.boards, ["acme,gw"]);
}

/// A valid signed image built from the archer fixture's metadata.
fn signed_image() -> Vec<u8> {
    let mut image = vec![0x11; 300_000];
    push_metadata(
        &mut image,
        br#"{"supported_devices":["tplink,archer-c7-v5"],"compat_version":"1.0"}"#,
    );
    push_signature(&mut image, &[0x42; 600]);
    image
}

/// Writes `image` beside the data directory and imports it, checking that
/// the data directory is unchanged afterwards.
fn store_refused(image: &[u8], limit: Option<u64>) -> ImageError {
    let outside = tempfile::tempdir().unwrap();
    let source = outside
        .path()
        .join("openwrt-24.10.0-ath79-generic-bad-sysupgrade.bin");
    fs::write(&source, image).unwrap();

    let dir = data_dir();
    // A store folder with an image in it already, which must stay as it is.
    fs::create_dir(dir.path().join("images")).unwrap();
    fs::write(stored_path(dir.path(), "00"), b"older image").unwrap();
    let before = listing(dir.path());

    let error = store(dir.path(), &source, limit, None, &[]).unwrap_err();
    assert_eq!(listing(dir.path()), before, "{error}");
    assert_eq!(
        fs::read(stored_path(dir.path(), "00")).unwrap(),
        b"older image"
    );

    let message = error.to_string();
    let file = source.display().to_string();
    assert!(message.contains(&file), "{message}");
    assert!(message.starts_with(|c: char| c.is_lowercase()), "{message}");
    assert!(!message.ends_with('.'), "{message}");
    error
}

fn fault(error: ImageError) -> TailError {
    match error {
        ImageError::Blocks { fault, .. } => fault,
        other => panic!("expected a block fault, got {other:?}"),
    }
}

#[test]
fn signed_image_is_accepted() {
    let dir = data_dir();
    let source = dir
        .path()
        .join("openwrt-24.10.0-ath79-generic-tplink_archer-c7-v5-squashfs-sysupgrade.bin");
    fs::write(&source, signed_image()).unwrap();
    let stored = store(dir.path(), &source, None, None, &[]).unwrap();
    assert!(stored.inspection.signed);
}

#[test]
fn empty_file_is_refused() {
    assert!(matches!(store_refused(&[], None), ImageError::Empty { .. }));
}

#[test]
fn file_over_the_limit_is_refused() {
    let image = signed_image();
    let limit = image.len() as u64 - 1;
    let error = store_refused(&image, Some(limit));
    assert!(
        matches!(error, ImageError::TooLarge { limit: l, .. } if l == limit),
        "{error}"
    );
    // Exactly at the limit is fine.
    let dir = data_dir();
    let source = dir.path().join("at-limit.bin");
    fs::write(&source, &image).unwrap();
    let inspection = inspect_file(&source, Some(image.len() as u64)).unwrap();
    assert_eq!(inspection.size, image.len() as u64);
}

#[test]
fn truncated_trailer_is_refused() {
    // The last byte of the signature trailer is missing: the bytes at the end
    // are no trailer, so the image reads as legacy, and its name matches no
    // image type.
    let mut image = signed_image();
    image.pop();
    assert!(matches!(
        store_refused(&image, None),
        ImageError::UnknownType { .. }
    ));

    // Cut inside the metadata block's trailer, leaving a magic-less tail.
    let mut image = vec![0x11; 1000];
    push_metadata(&mut image, br#"{"supported_devices":["a"]}"#);
    image.truncate(image.len() - 3);
    assert!(matches!(
        store_refused(&image, None),
        ImageError::UnknownType { .. }
    ));
}

#[test]
fn wrong_crc_is_refused() {
    let mut image = signed_image();
    image[1234] ^= 1;
    let fault = fault(store_refused(&image, None));
    assert!(
        matches!(
            fault,
            TailError::BadCrc {
                kind: BlockKind::Signature,
                ..
            }
        ),
        "{fault}"
    );
}

#[test]
fn absurd_size_is_refused() {
    let mut image = vec![0x11; 1000];
    let crc = fwtool_crc(&image);
    push_raw_trailer(&mut image, crc, 1, 0x7fff_ffff);
    let fault = fault(store_refused(&image, None));
    assert_eq!(
        fault,
        TailError::SizePastStart {
            end: 1016,
            size: 0x7fff_ffff
        }
    );
}

#[test]
fn size_before_the_file_start_is_refused() {
    let mut image = vec![0x11; 40];
    let crc = fwtool_crc(&image);
    push_raw_trailer(&mut image, crc, 1, 57);
    let fault = fault(store_refused(&image, None));
    assert_eq!(fault, TailError::SizePastStart { end: 56, size: 57 });
}

#[test]
fn size_below_a_trailer_is_refused() {
    let mut image = vec![0x11; 40];
    let crc = fwtool_crc(&image);
    push_raw_trailer(&mut image, crc, 1, 8);
    let fault = fault(store_refused(&image, None));
    assert_eq!(fault, TailError::SizeTooSmall { end: 56, size: 8 });
}

#[test]
fn non_json_metadata_is_refused() {
    let mut image = vec![0x11; 1000];
    push_metadata(&mut image, b"\x89PNG not json");
    let fault = fault(store_refused(&image, None));
    assert!(
        matches!(fault, TailError::Metadata(MetadataError::NotJson(_))),
        "{fault}"
    );
}

#[test]
fn metadata_without_boards_is_refused() {
    let mut image = vec![0x11; 1000];
    push_metadata(&mut image, br#"{"version":{"dist":"OpenWrt"}}"#);
    let fault = fault(store_refused(&image, None));
    assert!(
        matches!(fault, TailError::Metadata(MetadataError::Invalid(_))),
        "{fault}"
    );
}

#[test]
fn oversized_signature_is_refused() {
    let mut image = vec![0x11; 1000];
    push_metadata(&mut image, br#"{"supported_devices":["a"]}"#);
    push_signature(&mut image, &[0x42; 1025]);
    let fault = fault(store_refused(&image, None));
    assert!(
        matches!(fault, TailError::SignatureTooLarge { len: 1025, .. }),
        "{fault}"
    );
}

#[test]
fn oversized_metadata_is_refused() {
    let mut json = br#"{"supported_devices":["a"],"pad":""#.to_vec();
    json.resize(31 * 1024, b'x');
    json.extend_from_slice(br#""}"#);
    let mut image = vec![0x11; 1000];
    push_metadata(&mut image, &json);
    let fault = fault(store_refused(&image, None));
    assert!(
        matches!(fault, TailError::MetadataTooLarge { .. }),
        "{fault}"
    );
}

#[test]
fn missing_source_is_refused() {
    let dir = data_dir();
    let before = listing(dir.path());
    let error = store(dir.path(), &dir.path().join("absent.bin"), None, None, &[]).unwrap_err();
    assert!(matches!(error, ImageError::Open { .. }), "{error}");
    assert_eq!(listing(dir.path()), before);
}

#[test]
fn old_partial_imports_are_removed() {
    let dir = data_dir();
    let stale = dir.path().join(".import-stale.part");
    let fresh = dir.path().join(".import-fresh.part");
    fs::write(&stale, b"x").unwrap();
    fs::write(&fresh, b"x").unwrap();
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(7200);
    File::options()
        .write(true)
        .open(&stale)
        .unwrap()
        .set_modified(old)
        .unwrap();

    assert_eq!(remove_partial_imports(dir.path()).unwrap(), 1);
    assert!(!stale.exists());
    assert!(fresh.exists());
    assert!(dir.path().join("catalogue.sqlite").exists());
}
