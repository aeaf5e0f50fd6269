//! Sample sysupgrade images in OpenWrt's on-disk format, for tests that need
//! an image of a given board and release (and of a given size).
//!
//! The tail is what fwtool appends: an 8-byte header (version 0, flags 0),
//! the metadata JSON and a 16-byte big-endian trailer ("FWx0", crc32, type,
//! three pad bytes, size), optionally followed by a signature block.

use std::io::Write;
use std::path::Path;

use serde::Serialize;

use crate::catalog::{Board, Release};

/// The magic number that opens every fwtool trailer, "FWx0".
const TRAILER_MAGIC: u32 = 0x4657_7830;
/// The block type of metadata.
const TYPE_METADATA: u8 = 1;
/// The block type of a signature.
const TYPE_SIGNATURE: u8 = 0;
/// The length of a trailer.
const TRAILER_LEN: usize = 16;
/// The length of the signature the sample images carry (a usign signature
/// is about this long).
const SIGNATURE_LEN: usize = 146;

/// What a sample image says about itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SampleImage {
    /// The boards in `supported_devices`.
    pub boards: Vec<String>,
    /// The release in the metadata's `version` object.
    pub release: Release,
    /// The metadata's `version.board` ("tplink_archer-c7-v5").
    pub board_label: String,
    /// The image's compat version.
    pub compat_version: String,
    /// Why the configuration cannot be kept, if it cannot.
    pub compat_message: Option<String>,
    /// The size of the whole file in bytes; a size too small for the
    /// metadata gives a file of just the metadata.
    pub size: u64,
    /// Whether a signature block follows the metadata.
    pub signed: bool,
}

impl SampleImage {
    /// Returns an unsigned 64 KiB image of `release` for `board`, listing the
    /// board's name and its legacy names, with compat version "1.0".
    pub fn new(board: &Board, release: &Release) -> SampleImage {
        let mut boards = vec![board.name.to_string()];
        boards.extend(board.legacy_names.iter().map(|name| name.to_string()));
        SampleImage {
            boards,
            release: release.for_target(board.target),
            board_label: board.image_label(),
            compat_version: "1.0".to_string(),
            compat_message: None,
            size: 64 * 1024,
            signed: false,
        }
    }
}

/// The metadata JSON, in the key order OpenWrt's build writes.
#[derive(Serialize)]
struct Metadata<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    compat_message: Option<&'a str>,
    metadata_version: &'a str,
    compat_version: &'a str,
    supported_devices: &'a [String],
    version: VersionMetadata<'a>,
}

/// The metadata's `version` object.
#[derive(Serialize)]
struct VersionMetadata<'a> {
    dist: &'a str,
    version: &'a str,
    revision: &'a str,
    target: &'a str,
    board: &'a str,
}

/// Writes a sample image to `path`.
pub fn write_sample_image(path: &Path, image: &SampleImage) -> std::io::Result<()> {
    let metadata = Metadata {
        compat_message: image.compat_message.as_deref(),
        metadata_version: "1.1",
        compat_version: &image.compat_version,
        supported_devices: &image.boards,
        version: VersionMetadata {
            dist: &image.release.dist,
            version: &image.release.version,
            revision: &image.release.revision,
            target: &image.release.target,
            board: &image.board_label,
        },
    };
    let mut json = serde_json::to_vec(&metadata).map_err(std::io::Error::other)?;
    json.push(b'\n');

    let metadata_len = 8 + json.len() + TRAILER_LEN;
    let signature_len = if image.signed {
        SIGNATURE_LEN + TRAILER_LEN
    } else {
        0
    };
    let tail_len = (metadata_len + signature_len) as u64;
    let payload_len = image.size.saturating_sub(tail_len) as usize;

    let mut data = payload(&image.release, &image.board_label, payload_len);
    data.reserve(metadata_len + signature_len);
    data.extend_from_slice(&[0; 8]);
    data.extend_from_slice(&json);
    append_trailer(&mut data, TYPE_METADATA, metadata_len);
    if image.signed {
        let signature = filler(image.release.revision.as_bytes(), SIGNATURE_LEN);
        data.extend_from_slice(&signature);
        append_trailer(&mut data, TYPE_SIGNATURE, SIGNATURE_LEN + TRAILER_LEN);
    }

    let mut file = std::fs::File::create(path)?;
    file.write_all(&data)?;
    file.sync_all()
}

/// Returns the OpenWrt-style file name of the sysupgrade image of `release`
/// for `board`, such as
/// "openwrt-23.05.3-ath79-generic-tplink_archer-c7-v5-squashfs-sysupgrade.bin".
pub fn sample_image_name(board: &Board, release: &Release) -> String {
    let target = board.target.replace('/', "-");
    if board.target.starts_with("x86") {
        format!(
            "openwrt-{}-{target}-{}-ext4-combined.img.gz",
            release.version, board.name
        )
    } else {
        format!(
            "openwrt-{}-{target}-{}-squashfs-sysupgrade.bin",
            release.version,
            board.image_label()
        )
    }
}

/// Appends a trailer whose CRC covers everything written so far.
fn append_trailer(data: &mut Vec<u8>, block_type: u8, block_len: usize) {
    // fwtool's CRC is zlib's without the final inversion.
    let crc = crc32fast::hash(data) ^ 0xFFFF_FFFF;
    data.extend_from_slice(&TRAILER_MAGIC.to_be_bytes());
    data.extend_from_slice(&crc.to_be_bytes());
    data.push(block_type);
    data.extend_from_slice(&[0; 3]);
    data.extend_from_slice(&(block_len as u32).to_be_bytes());
}

/// Returns a payload that starts the way a real image of the target starts
/// (a uImage header, or a gzip stream for x86) followed by filler that
/// differs per release and board, so that every sample has its own sha256.
fn payload(release: &Release, board_label: &str, len: usize) -> Vec<u8> {
    let seed = format!("{}/{}/{}", release.version, release.revision, board_label);
    let mut data = filler(seed.as_bytes(), len);
    let magic: &[u8] = if release.target.starts_with("x86") {
        &[0x1f, 0x8b, 0x08, 0x00]
    } else {
        &[0x27, 0x05, 0x19, 0x56]
    };
    let head = magic.len().min(len);
    data[..head].copy_from_slice(&magic[..head]);
    data
}

/// Returns `len` bytes of deterministic, incompressible-looking filler.
fn filler(seed: &[u8], len: usize) -> Vec<u8> {
    // xorshift64*, seeded from the seed text; quality is irrelevant here.
    let mut state = seed.iter().fold(0x9E37_79B9_7F4A_7C15_u64, |acc, byte| {
        (acc ^ u64::from(*byte)).wrapping_mul(0x100_0000_01B3)
    }) | 1;
    let mut data = Vec::with_capacity(len + 8);
    while data.len() < len {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        data.extend_from_slice(&state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    data.truncate(len);
    data
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{board, release};

    #[test]
    fn names_follow_openwrt() {
        let archer = board("tplink,archer-c7-v5").unwrap();
        let release = release("24.10.0").unwrap();
        assert_eq!(
            sample_image_name(archer, &release),
            "openwrt-24.10.0-ath79-generic-tplink_archer-c7-v5-squashfs-sysupgrade.bin"
        );
        assert_eq!(
            sample_image_name(board("generic").unwrap(), &release),
            "openwrt-24.10.0-x86-64-generic-ext4-combined.img.gz"
        );
    }

    #[test]
    fn filler_depends_on_the_seed() {
        assert_ne!(filler(b"a", 64), filler(b"b", 64));
        assert_eq!(filler(b"a", 13).len(), 13);
    }
}
