//! Hostile input against the engine: broken and malicious image files,
//! absurd fwtool trailers, metadata and device output full of control
//! characters, hosts that look like options, a catalogue file of random
//! bytes. Each test pins down a finding of the bad-input review: nothing
//! panics, a refused import leaves no row and no file, and nothing a file
//! or a device says reaches a terminal as an escape sequence.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use fwu_engine::actions::{Engine, EngineError};
use fwu_engine::catalogue::{Catalogue, CatalogueError, DeviceAuth, NewDevice};
use fwu_engine::image::{self, ImageError};
use fwu_engine::upgrade::identity;
use fwu_engine::vault::Vault;

/// The default image size limit, 30 MiB.
const LIMIT: u64 = 30 << 20;

/// fwtool's trailer magic, "FWx0".
const MAGIC: u32 = 0x4657_7830;

/// fwtool's crc32: zlib's with every bit flipped.
fn fwtool_crc(data: &[u8]) -> u32 {
    crc32fast::hash(data) ^ 0xFFFF_FFFF
}

/// Appends a trailer with the given fields.
fn push_trailer(image: &mut Vec<u8>, crc: u32, kind: u8, size: u32) {
    image.extend_from_slice(&MAGIC.to_be_bytes());
    image.extend_from_slice(&crc.to_be_bytes());
    image.extend_from_slice(&[kind, 0, 0, 0]);
    image.extend_from_slice(&size.to_be_bytes());
}

/// A payload followed by a metadata block holding `json`.
fn image_with_metadata(json: &[u8]) -> Vec<u8> {
    let mut image: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    image.extend_from_slice(&[0; 8]);
    image.extend_from_slice(json);
    let crc = fwtool_crc(&image);
    push_trailer(&mut image, crc, 1, (8 + json.len() + 16) as u32);
    image
}

/// Every file of the data directory and its image store, as paths. The
/// store's folder itself may appear empty after a refusal.
fn contents(data_dir: &Path) -> Vec<String> {
    let mut names = Vec::new();
    for dir in [data_dir.to_path_buf(), data_dir.join("images")] {
        if let Ok(entries) = fs::read_dir(&dir) {
            for entry in entries {
                let path = entry.unwrap().path();
                if path.is_file() {
                    names.push(path.display().to_string());
                }
            }
        }
    }
    names.sort();
    names
}

/// An engine on a fresh data directory with the build `C 1`. The vault is
/// never contacted by imports.
fn engine(root: &Path) -> (Engine, PathBuf) {
    let data_dir = root.join("data");
    let engine = Engine::open(&data_dir, Vault::with_service("fwu-hostile-test")).unwrap();
    engine.catalogue.add_category("C", "").unwrap();
    engine.catalogue.add_build("C", "1", None, "").unwrap();
    (engine, data_dir)
}

/// Imports `bytes` as `name` and expects a refusal that leaves the data
/// directory as it was and the build without images.
fn assert_refused(engine: &Engine, data_dir: &Path, root: &Path, name: &str, bytes: &[u8]) {
    let file = root.join(name);
    fs::write(&file, bytes).unwrap();
    let before = contents(data_dir);
    let result = engine.import_image("C", "1", &file, Some("custom"));
    assert!(result.is_err(), "{name} was imported: {result:?}");
    assert_eq!(contents(data_dir), before, "{name} left files behind");
    let build = engine.catalogue.build("C", "1").unwrap();
    assert!(engine.catalogue.images(build.id).unwrap().is_empty());
}

#[test]
fn huge_sparse_file_is_refused_by_size_without_reading_it() {
    let root = tempfile::tempdir().unwrap();
    let file = root.path().join("huge-sysupgrade.bin");
    fs::File::create(&file).unwrap().set_len(40 << 30).unwrap();
    let started = Instant::now();
    let error = image::inspect_file(&file, Some(LIMIT)).unwrap_err();
    assert!(matches!(error, ImageError::TooLarge { .. }), "{error}");
    let (engine, data_dir) = engine(root.path());
    let before = contents(&data_dir);
    let error = engine.import_image("C", "1", &file, None).unwrap_err();
    assert!(matches!(
        error,
        EngineError::Image(ImageError::TooLarge { .. })
    ));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the file was read"
    );
    assert_eq!(contents(&data_dir), before);
}

#[test]
fn absurd_trailers_are_refused_and_leave_nothing() {
    let root = tempfile::tempdir().unwrap();
    let (engine, data_dir) = engine(root.path());
    let payload: Vec<u8> = (0..50_000u32).map(|i| (i % 13) as u8).collect();
    let cases: Vec<(&str, u8, u32)> = vec![
        ("size-max.bin", 1, u32::MAX),
        ("size-zero.bin", 1, 0),
        ("size-trailer-only.bin", 1, 16),
        ("signature-too-big.bin", 0, 5000),
        ("unknown-type.bin", 7, 100),
    ];
    for (name, kind, size) in cases {
        let mut bytes = payload.clone();
        let crc = fwtool_crc(&bytes);
        push_trailer(&mut bytes, crc, kind, size);
        assert_refused(&engine, &data_dir, root.path(), name, &bytes);
    }
    // A chain of thousands of signatures reaches past the kept tail.
    let mut chain = image_with_metadata(br#"{"supported_devices":["a,b"]}"#);
    for _ in 0..5000 {
        chain.push(b'S');
        let crc = fwtool_crc(&chain);
        push_trailer(&mut chain, crc, 0, 17);
    }
    assert_refused(&engine, &data_dir, root.path(), "chain.bin", &chain);
    // Signatures with nothing under them.
    let mut unsigned = payload.clone();
    for _ in 0..3000 {
        let crc = fwtool_crc(&unsigned);
        push_trailer(&mut unsigned, crc, 0, 16);
    }
    assert_refused(&engine, &data_dir, root.path(), "no-meta.bin", &unsigned);
    assert_refused(&engine, &data_dir, root.path(), "empty.bin", b"");
}

#[test]
fn hostile_metadata_is_refused_and_leaves_nothing() {
    let root = tempfile::tempdir().unwrap();
    let (engine, data_dir) = engine(root.path());
    let deep = format!(
        r#"{{"supported_devices":["a"],"x":{}1{}}}"#,
        r#"{"a":"#.repeat(3000),
        "}".repeat(3000)
    );
    let documents: Vec<(&str, Vec<u8>)> = vec![
        ("deep.bin", deep.into_bytes()),
        ("not-json.bin", b"\xff\xfe{".to_vec()),
        (
            "raw-nul.bin",
            b"{\"supported_devices\":[\"a\0b\"]}".to_vec(),
        ),
        ("wrong-type.bin", br#"{"supported_devices":"a,b"}"#.to_vec()),
        (
            "wrong-item.bin",
            br#"{"supported_devices":[1,{}]}"#.to_vec(),
        ),
        // Parsed fine, but boards with escapes must not reach the catalogue.
        (
            "escape-board.bin",
            br#"{"supported_devices":["acme\u001b]0;owned\u0007,router"]}"#.to_vec(),
        ),
        (
            "nul-board.bin",
            br#"{"supported_devices":["a\u0000b"]}"#.to_vec(),
        ),
        ("only-nul.bin", vec![0; 64]),
    ];
    for (name, json) in documents {
        assert_refused(
            &engine,
            &data_dir,
            root.path(),
            name,
            &image_with_metadata(&json),
        );
    }
}

#[test]
fn image_type_must_be_a_plain_name() {
    let root = tempfile::tempdir().unwrap();
    let (engine, data_dir) = engine(root.path());
    let file = root.path().join("fine.bin");
    fs::write(
        &file,
        image_with_metadata(br#"{"supported_devices":["a,b"]}"#),
    )
    .unwrap();
    for type_name in ["", "  ", "x\ny", "red\u{1b}[31m"] {
        let before = contents(&data_dir);
        let result = engine.import_image("C", "1", &file, Some(type_name));
        assert!(
            matches!(
                result,
                Err(EngineError::Catalogue(CatalogueError::Invalid(_)))
            ),
            "type {type_name:?}: {result:?}"
        );
        assert_eq!(
            contents(&data_dir),
            before,
            "type {type_name:?} left a file"
        );
    }
    // Metacharacters in a file name are only text: the import works.
    let odd = root.path().join("$(touch x) 'q\" -rf.bin");
    fs::copy(&file, &odd).unwrap();
    let image = engine.import_image("C", "1", &odd, Some("odd")).unwrap();
    assert_eq!(image.file_name, "$(touch x) 'q\" -rf.bin");
}

#[test]
fn the_same_file_twice_in_one_build_keeps_the_first_and_its_file() {
    let root = tempfile::tempdir().unwrap();
    let (engine, data_dir) = engine(root.path());
    let file = root.path().join("twice.bin");
    fs::write(
        &file,
        image_with_metadata(br#"{"supported_devices":["a,b"]}"#),
    )
    .unwrap();
    let first = engine.import_image("C", "1", &file, Some("t")).unwrap();
    let again = engine.import_image("C", "1", &file, Some("t"));
    assert!(matches!(
        again,
        Err(EngineError::Catalogue(CatalogueError::Duplicate { .. }))
    ));
    assert!(image::stored_path(&data_dir, &first.sha256).is_file());
}

#[test]
fn hosts_that_look_like_options_are_refused() {
    let root = tempfile::tempdir().unwrap();
    let catalogue = Catalogue::open_in(root.path()).unwrap();
    for host in [
        "-oProxyCommand",
        "-",
        "...",
        "a;reboot",
        "$(x)",
        "[::1]",
        "",
    ] {
        let device = NewDevice {
            name: "d".into(),
            host: host.into(),
            alternate_hosts: vec![],
            port: 22,
            user: "root".into(),
            auth: DeviceAuth::Agent,
            site: None,
            tags: vec![],
        };
        let result = catalogue.add_device(&device);
        assert!(
            matches!(result, Err(CatalogueError::Invalid(_))),
            "host {host:?}: {result:?}"
        );
    }
}

#[test]
fn device_output_cannot_carry_escapes_or_megabytes() {
    let huge = "9".repeat(2_000_000);
    let output = format!(
        "#fwu:board\n{{\"board_name\":\"acme\\u001b[2J\",\"model\":\"<b>\\u0000\"}}\n\
         #fwu:info\n#fwu:board_name\n#fwu:model\n#fwu:release\n\
         DISTRIB_ID='Open$(reboot)Wrt'\nDISTRIB_RELEASE='{huge}'\n\
         DISTRIB_REVISION='r1;id'\nDISTRIB_DESCRIPTION='\u{1b}]0;owned\u{7}<script>'\n\
         #fwu:boot_id\nb\u{1b}[0m\n#fwu:uptime\n#fwu:checksum\n#fwu:mac\n#fwu:end\n"
    );
    let identity = identity::parse(&output);
    let values = [
        &identity.board,
        &identity.model,
        &identity.os_identifier,
        &identity.version,
        &identity.revision,
        &identity.boot_id,
    ];
    for value in values {
        let value = value.as_deref().expect("every value is present");
        assert!(!value.chars().any(char::is_control), "{value:?}");
        assert!(value.chars().count() <= 256, "{} chars", value.len());
    }
    // Shell syntax is kept as text: it is never run, only compared.
    assert_eq!(identity.revision.as_deref(), Some("r1;id"));
}

#[test]
fn random_bytes_as_catalogue_are_an_error_not_a_panic() {
    let root = tempfile::tempdir().unwrap();
    let mut noise = Vec::with_capacity(100_000);
    let mut state: u32 = 0x1234_5678;
    for _ in 0..100_000 {
        // xorshift: any bytes will do, the same ones every run.
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        noise.push(state as u8);
    }
    fs::write(root.path().join("catalogue.sqlite"), &noise).unwrap();
    let error = Catalogue::open_in(root.path()).err().expect("refused");
    assert!(matches!(error, CatalogueError::Open { .. }), "{error}");
    assert!(
        Engine::open(root.path(), Vault::with_service("fwu-hostile-test")).is_err(),
        "the engine opened a catalogue of random bytes"
    );
}
