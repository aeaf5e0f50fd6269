//! Sample images: the fwtool tail write_sample_image produces, checked
//! against the on-disk format with a CRC computed here, bit by bit.

use std::path::Path;

use fwu_lab::{board, boards, release, sample_image_name, write_sample_image, SampleImage};

/// One block read back from an image's tail.
struct Block {
    crc: u32,
    block_type: u8,
    size: usize,
    covered_crc: u32,
}

/// zlib's CRC-32 without the final inversion, as fwtool writes it.
fn fwtool_crc(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFF_u32;
    for byte in data {
        crc ^= u32::from(*byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    crc
}

/// Reads the block whose trailer ends at `end`.
fn block(data: &[u8], end: usize) -> Block {
    let trailer = &data[end - 16..end];
    assert_eq!(&trailer[..4], b"FWx0");
    assert_eq!(&trailer[9..12], &[0, 0, 0]);
    Block {
        crc: u32::from_be_bytes(trailer[4..8].try_into().unwrap()),
        block_type: trailer[8],
        size: u32::from_be_bytes(trailer[12..16].try_into().unwrap()) as usize,
        covered_crc: fwtool_crc(&data[..end - 16]),
    }
}

fn write(dir: &Path, image: &SampleImage) -> Vec<u8> {
    let path = dir.join("image.bin");
    write_sample_image(&path, image).unwrap();
    std::fs::read(path).unwrap()
}

#[test]
fn the_crc_rule_matches_a_known_value() {
    // zlib.crc32(b"123456789") is 0xCBF43926; fwtool's is its inverse.
    assert_eq!(fwtool_crc(b"123456789"), 0xCBF4_3926 ^ 0xFFFF_FFFF);
}

#[test]
fn unsigned_images_end_in_a_metadata_block() {
    let dir = tempfile::tempdir().unwrap();
    let archer = board("tplink,archer-c7-v5").unwrap();
    let mut image = SampleImage::new(archer, &release("24.10.0").unwrap());
    image.size = 100_000;
    let data = write(dir.path(), &image);
    assert_eq!(data.len(), 100_000);
    assert_eq!(
        &data[..4],
        &[0x27, 0x05, 0x19, 0x56],
        "not a uImage payload"
    );

    let metadata = block(&data, data.len());
    assert_eq!(metadata.block_type, 1);
    assert_eq!(metadata.crc, metadata.covered_crc);
    let start = data.len() - metadata.size;
    assert_eq!(&data[start..start + 8], &[0; 8]);
    let json: serde_json::Value =
        serde_json::from_slice(&data[start + 8..data.len() - 16]).unwrap();
    assert_eq!(
        json["supported_devices"],
        serde_json::json!(["tplink,archer-c7-v5", "archer-c7-v5"])
    );
    assert_eq!(json["compat_version"], "1.0");
    assert_eq!(json["version"]["version"], "24.10.0");
    assert_eq!(json["version"]["revision"], "r28427-6df0e3d02a");
    assert_eq!(json["version"]["target"], "ath79/generic");
    assert_eq!(json["version"]["board"], "tplink_archer-c7-v5");
    assert!(json.get("compat_message").is_none());
}

#[test]
fn signed_images_put_a_signature_after_the_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let unifi = board("ubnt,unifi-ac-lite").unwrap();
    let mut image = SampleImage::new(unifi, &release("24.10.0").unwrap());
    image.signed = true;
    image.compat_version = "2.0".to_string();
    image.compat_message = Some("reset the configuration".to_string());
    let data = write(dir.path(), &image);

    let signature = block(&data, data.len());
    assert_eq!(signature.block_type, 0);
    assert_eq!(signature.crc, signature.covered_crc);
    let metadata = block(&data, data.len() - signature.size);
    assert_eq!(metadata.block_type, 1);
    assert_eq!(metadata.crc, metadata.covered_crc);
    let end = data.len() - signature.size;
    let json: serde_json::Value =
        serde_json::from_slice(&data[end - metadata.size + 8..end - 16]).unwrap();
    assert_eq!(json["compat_version"], "2.0");
    assert_eq!(json["compat_message"], "reset the configuration");
}

#[test]
fn x86_images_start_as_gzip_and_every_board_has_a_name() {
    let dir = tempfile::tempdir().unwrap();
    let generic = board("generic").unwrap();
    let data = write(
        dir.path(),
        &SampleImage::new(generic, &release("23.05.3").unwrap()),
    );
    assert_eq!(&data[..2], &[0x1f, 0x8b]);
    for board in boards() {
        let name = sample_image_name(board, &release("23.05.3").unwrap());
        assert!(name.starts_with("openwrt-23.05.3-"), "{name}");
    }
}

#[test]
fn images_of_different_releases_differ() {
    let dir = tempfile::tempdir().unwrap();
    let archer = board("tplink,archer-c7-v5").unwrap();
    let old = write(
        dir.path(),
        &SampleImage::new(archer, &release("23.05.3").unwrap()),
    );
    let new = write(
        dir.path(),
        &SampleImage::new(archer, &release("24.10.0").unwrap()),
    );
    assert_ne!(old[..1000], new[..1000]);
}
