//! Reading the blocks that OpenWrt's `fwtool` appends to an image, while the
//! image streams past once.
//!
//! A block ends with a 16-byte big-endian trailer: the magic `FWx0`, a crc32
//! of every byte of the file before the trailer, a type (1 metadata, 0
//! signature), three pad bytes and the block's size counting its own trailer.
//! A metadata block starts with an 8-byte header (version 0, flags) followed
//! by JSON; a signature block has no header. A signed image carries its
//! signature block after the metadata block, so the reader walks from the end
//! of the file towards its start and steps over signatures.
//!
//! [`Digest`] is fed the image in chunks of any size. It hashes everything
//! with sha256, keeps the last [`TAIL_LEN`] bytes aside, and runs the crc32
//! only over the bytes that have left that tail: the crc of "everything
//! before a trailer" is then the saved state plus a few kilobytes of tail,
//! for any trailer the walk meets.
//!
//! Speed: sha256 is the slow part of an import. The `sha2` crate (0.10)
//! detects the x86 SHA extensions at run time and uses them when present;
//! its `asm` feature would replace that path with slower generic assembly
//! and must stay off. crc32fast likewise picks its carry-less multiply
//! path at run time.

use sha2::{Digest as _, Sha256};
use thiserror::Error;

use super::metadata::{Metadata, MetadataError};

/// The trailer's magic number, "FWx0" in ASCII.
const MAGIC: u32 = 0x4657_7830;

/// Length of a trailer in bytes.
const TRAILER_LEN: usize = 16;

/// Length of the header at the start of a metadata block.
const HEADER_LEN: usize = 8;

/// The largest metadata block contents (header and JSON) OpenWrt accepts.
pub(crate) const METADATA_MAX: usize = 30 * 1024;

/// The largest signature block contents OpenWrt accepts.
pub(crate) const SIGNATURE_MAX: usize = 1024;

/// How many bytes from the end of an image are kept for the walk: room for a
/// full metadata block and many signature blocks. A chain of blocks that
/// reaches further back than this is refused rather than read twice.
pub(crate) const TAIL_LEN: usize = 64 * 1024;

/// Block type of a metadata block.
const TYPE_METADATA: u8 = 1;

/// Block type of a signature block.
const TYPE_SIGNATURE: u8 = 0;

/// What is wrong with the fwtool blocks at the end of an image.
///
/// Offsets count from the start of the file and name the byte just past the
/// block in question, which is how `fwtool` itself finds blocks.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum TailError {
    /// The trailer's crc32 does not match the bytes before it.
    #[error(
        "the {kind} block ending at byte {end} has crc32 {stored:08x} \
         but the bytes before its trailer give {computed:08x}"
    )]
    BadCrc {
        kind: BlockKind,
        end: u64,
        stored: u32,
        computed: u32,
    },

    /// The trailer's size is smaller than the trailer itself.
    #[error("the block ending at byte {end} claims {size} bytes, less than its own trailer")]
    SizeTooSmall { end: u64, size: u32 },

    /// The trailer's size reaches before the start of the file.
    #[error("the block ending at byte {end} claims {size} bytes, reaching before the file start")]
    SizePastStart { end: u64, size: u32 },

    /// A metadata block is larger than OpenWrt allows.
    #[error(
        "the metadata block ending at byte {end} holds {len} bytes, more than the \
         {METADATA_MAX} OpenWrt allows"
    )]
    MetadataTooLarge { end: u64, len: u64 },

    /// A metadata block is too short to hold its 8-byte header.
    #[error("the metadata block ending at byte {end} is too short for its header")]
    MetadataTooShort { end: u64 },

    /// A signature block is larger than OpenWrt allows.
    #[error(
        "the signature block ending at byte {end} holds {len} bytes, more than the \
         {SIGNATURE_MAX} OpenWrt allows"
    )]
    SignatureTooLarge { end: u64, len: u64 },

    /// A trailer names a block type that is neither metadata nor signature.
    #[error("the block ending at byte {end} has unknown type {kind}")]
    UnknownType { end: u64, kind: u8 },

    /// The metadata header names a format version other than 0.
    #[error("the metadata block ending at byte {end} has header version {version}, not 0")]
    HeaderVersion { end: u64, version: u32 },

    /// Signature blocks are present but no metadata block precedes them.
    #[error("the image is signed but has no metadata block before its signature")]
    SignatureWithoutMetadata,

    /// The chain of blocks reaches further back than the kept tail.
    #[error("the blocks at the end of the image reach back more than {TAIL_LEN} bytes")]
    ChainTooLong,

    /// The metadata JSON could not be read.
    #[error(transparent)]
    Metadata(#[from] MetadataError),
}

/// The two kinds of fwtool block, named in errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockKind {
    /// A metadata block: header and JSON.
    Metadata,
    /// A signature block (ucert or usign data).
    Signature,
}

impl std::fmt::Display for BlockKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BlockKind::Metadata => "metadata",
            BlockKind::Signature => "signature",
        })
    }
}

/// What the blocks at the end of an image say.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Tail {
    /// The metadata, or `None` for a legacy image without any trailer.
    pub(crate) metadata: Option<Metadata>,
    /// Whether at least one signature block was stepped over.
    pub(crate) signed: bool,
}

/// The running state of one pass over an image: size, sha256, crc32 of the
/// bytes that left the tail, and the tail itself.
pub(crate) struct Digest {
    size: u64,
    sha256: Sha256,
    crc_before_tail: crc32fast::Hasher,
    tail: Vec<u8>,
}

impl Digest {
    /// Starts a pass over an empty image.
    pub(crate) fn new() -> Self {
        Digest {
            size: 0,
            sha256: Sha256::new(),
            crc_before_tail: crc32fast::Hasher::new(),
            tail: Vec::with_capacity(TAIL_LEN),
        }
    }

    /// The number of bytes fed so far.
    pub(crate) fn size(&self) -> u64 {
        self.size
    }

    /// Feeds the next bytes of the image.
    pub(crate) fn update(&mut self, data: &[u8]) {
        self.size += data.len() as u64;
        self.sha256.update(data);

        if data.len() >= TAIL_LEN {
            // The whole current tail and the chunk's head leave the window.
            let keep_from = data.len() - TAIL_LEN;
            self.crc_before_tail.update(&self.tail);
            self.crc_before_tail.update(&data[..keep_from]);
            self.tail.clear();
            self.tail.extend_from_slice(&data[keep_from..]);
            return;
        }

        let overflow = (self.tail.len() + data.len()).saturating_sub(TAIL_LEN);
        if overflow > 0 {
            self.crc_before_tail.update(&self.tail[..overflow]);
            self.tail.drain(..overflow);
        }
        self.tail.extend_from_slice(data);
    }

    /// Ends the pass: the image's sha256 as lower-case hex, and its blocks.
    pub(crate) fn finish(self) -> (String, Result<Tail, TailError>) {
        let sha256 = hex::encode(self.sha256.finalize());
        let tail_start = self.size - self.tail.len() as u64;
        let tail = read_blocks(&self.tail, tail_start, &self.crc_before_tail);
        (sha256, tail)
    }
}

/// One trailer, decoded.
struct Trailer {
    crc: u32,
    kind: u8,
    size: u32,
}

impl Trailer {
    /// Decodes the 16 bytes ending at `end`, or `None` without the magic.
    fn at(tail: &[u8], end: usize) -> Option<Trailer> {
        let bytes = &tail[end - TRAILER_LEN..end];
        let word = |at: usize| {
            u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
        };
        (word(0) == MAGIC).then(|| Trailer {
            crc: word(4),
            kind: bytes[8],
            size: word(12),
        })
    }
}

/// Walks the blocks from the end of `tail` towards its start.
///
/// `tail` holds the last bytes of the image, starting at file offset
/// `tail_start`; `crc_before_tail` has seen every byte before it.
pub(crate) fn read_blocks(
    tail: &[u8],
    tail_start: u64,
    crc_before_tail: &crc32fast::Hasher,
) -> Result<Tail, TailError> {
    let mut end = tail.len();
    let mut signed = false;

    loop {
        let file_end = tail_start + end as u64;

        if end < TRAILER_LEN {
            // Bytes before the kept tail may hold the rest of a trailer.
            if tail_start > 0 {
                return Err(TailError::ChainTooLong);
            }
            return no_more_blocks(signed);
        }
        let Some(trailer) = Trailer::at(tail, end) else {
            return no_more_blocks(signed);
        };

        let kind = check_size(&trailer, file_end)?;
        let size = trailer.size as usize;
        if size > end {
            return Err(TailError::ChainTooLong);
        }

        let computed = crc_of_prefix(crc_before_tail, &tail[..end - TRAILER_LEN]);
        if computed != trailer.crc {
            return Err(TailError::BadCrc {
                kind,
                end: file_end,
                stored: trailer.crc,
                computed,
            });
        }

        let start = end - size;
        if kind == BlockKind::Signature {
            tracing::trace!(end = file_end, size, "stepping over a signature block");
            signed = true;
            end = start;
            continue;
        }

        let header = &tail[start..start + HEADER_LEN];
        let version = u32::from_be_bytes([header[0], header[1], header[2], header[3]]);
        if version != 0 {
            return Err(TailError::HeaderVersion {
                end: file_end,
                version,
            });
        }
        let json = &tail[start + HEADER_LEN..end - TRAILER_LEN];
        let metadata = Metadata::from_json(json)?;
        return Ok(Tail {
            metadata: Some(metadata),
            signed,
        });
    }
}

/// The walk met bytes that are not a trailer.
fn no_more_blocks(signed: bool) -> Result<Tail, TailError> {
    if signed {
        return Err(TailError::SignatureWithoutMetadata);
    }
    Ok(Tail {
        metadata: None,
        signed: false,
    })
}

/// Checks a trailer's size against its type's limits and the file start.
fn check_size(trailer: &Trailer, file_end: u64) -> Result<BlockKind, TailError> {
    let size = trailer.size;
    if (size as usize) < TRAILER_LEN {
        return Err(TailError::SizeTooSmall {
            end: file_end,
            size,
        });
    }
    if u64::from(size) > file_end {
        return Err(TailError::SizePastStart {
            end: file_end,
            size,
        });
    }
    let len = u64::from(size) - TRAILER_LEN as u64;
    match trailer.kind {
        TYPE_METADATA if len > METADATA_MAX as u64 => {
            Err(TailError::MetadataTooLarge { end: file_end, len })
        }
        TYPE_METADATA if len < HEADER_LEN as u64 => {
            Err(TailError::MetadataTooShort { end: file_end })
        }
        TYPE_METADATA => Ok(BlockKind::Metadata),
        TYPE_SIGNATURE if len > SIGNATURE_MAX as u64 => {
            Err(TailError::SignatureTooLarge { end: file_end, len })
        }
        TYPE_SIGNATURE => Ok(BlockKind::Signature),
        kind => Err(TailError::UnknownType {
            end: file_end,
            kind,
        }),
    }
}

/// The fwtool crc32 of the whole file up to the end of `rest`.
///
/// fwtool seeds with all ones and never inverts at the end, which is the
/// usual (zlib) crc32 with every bit flipped.
fn crc_of_prefix(crc_before_tail: &crc32fast::Hasher, rest: &[u8]) -> u32 {
    let mut hasher = crc_before_tail.clone();
    hasher.update(rest);
    hasher.finalize() ^ 0xFFFF_FFFF
}

#[cfg(test)]
pub(crate) mod tests {
    //! Builds images block by block and checks what the walk says of them.

    use super::*;
    use proptest::prelude::*;

    /// The fwtool crc32 of `data`.
    pub(crate) fn fwtool_crc(data: &[u8]) -> u32 {
        crc32fast::hash(data) ^ 0xFFFF_FFFF
    }

    /// Appends a trailer of `kind` for a block of `len` content bytes, with
    /// the crc fwtool would write.
    pub(crate) fn push_trailer(image: &mut Vec<u8>, kind: u8, len: usize) {
        let crc = fwtool_crc(image);
        push_raw_trailer(image, crc, kind, (len + TRAILER_LEN) as u32);
    }

    /// Appends a trailer with the given fields, right or wrong.
    pub(crate) fn push_raw_trailer(image: &mut Vec<u8>, crc: u32, kind: u8, size: u32) {
        image.extend_from_slice(&MAGIC.to_be_bytes());
        image.extend_from_slice(&crc.to_be_bytes());
        image.extend_from_slice(&[kind, 0, 0, 0]);
        image.extend_from_slice(&size.to_be_bytes());
    }

    /// Appends a metadata block holding `json`.
    pub(crate) fn push_metadata(image: &mut Vec<u8>, json: &[u8]) {
        image.extend_from_slice(&[0; HEADER_LEN]);
        image.extend_from_slice(json);
        push_trailer(image, TYPE_METADATA, HEADER_LEN + json.len());
    }

    /// Appends a signature block holding `signature`.
    pub(crate) fn push_signature(image: &mut Vec<u8>, signature: &[u8]) {
        image.extend_from_slice(signature);
        push_trailer(image, TYPE_SIGNATURE, signature.len());
    }

    /// Runs a whole image through a [`Digest`] in chunks of `chunk` bytes.
    fn digest(image: &[u8], chunk: usize) -> (String, Result<Tail, TailError>) {
        let mut digest = Digest::new();
        for part in image.chunks(chunk.max(1)) {
            digest.update(part);
        }
        digest.finish()
    }

    /// A small valid metadata document.
    const JSON: &[u8] = br#"{"supported_devices":["acme,router"],"version":{"dist":"OpenWrt",
        "version":"24.10.0","revision":"r1-abc","target":"ath79/generic","board":"acme"}}"#;

    fn payload(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 % 251) as u8).collect()
    }

    #[test]
    fn image_without_trailer_is_legacy() {
        let (_, tail) = digest(&payload(100_000), 4096);
        assert_eq!(
            tail,
            Ok(Tail {
                metadata: None,
                signed: false
            })
        );
    }

    #[test]
    fn tiny_images_are_legacy() {
        for len in 0..TRAILER_LEN {
            let (_, tail) = digest(&payload(len), 3);
            assert_eq!(
                tail,
                Ok(Tail {
                    metadata: None,
                    signed: false
                }),
                "length {len}"
            );
        }
    }

    #[test]
    fn metadata_is_found_whatever_the_chunk_size() {
        let mut image = payload(200_000);
        push_metadata(&mut image, JSON);
        for chunk in [
            1,
            15,
            16,
            17,
            4096,
            TAIL_LEN - 1,
            TAIL_LEN,
            TAIL_LEN + 1,
            1 << 20,
        ] {
            let (sha, tail) = digest(&image, chunk);
            assert_eq!(sha, hex::encode(Sha256::digest(&image)));
            let tail = tail.unwrap();
            assert!(!tail.signed);
            assert_eq!(tail.metadata.unwrap().supported_devices, ["acme,router"]);
        }
    }

    #[test]
    fn metadata_block_can_be_the_whole_file() {
        let mut image = Vec::new();
        push_metadata(&mut image, JSON);
        let (_, tail) = digest(&image, 5);
        assert!(tail.unwrap().metadata.is_some());
    }

    #[test]
    fn signature_is_stepped_over() {
        let mut image = payload(1000);
        push_metadata(&mut image, JSON);
        push_signature(&mut image, &[0x5a; SIGNATURE_MAX]);
        let tail = digest(&image, 100).1.unwrap();
        assert!(tail.signed);
        assert!(tail.metadata.is_some());
    }

    #[test]
    fn largest_metadata_with_signature_fits_the_tail() {
        let mut json = br#"{"supported_devices":["a"],"pad":""#.to_vec();
        json.resize(METADATA_MAX - HEADER_LEN - 2, b'x');
        json.extend_from_slice(br#""}"#);
        let mut image = payload(2 * TAIL_LEN);
        push_metadata(&mut image, &json);
        push_signature(&mut image, &[1; SIGNATURE_MAX]);
        let tail = digest(&image, 1 << 20).1.unwrap();
        assert!(tail.signed);
        assert_eq!(tail.metadata.unwrap().supported_devices, ["a"]);
    }

    #[test]
    fn wrong_crc_is_refused() {
        let mut image = payload(5000);
        image.extend_from_slice(&[0; HEADER_LEN]);
        image.extend_from_slice(JSON);
        let good = fwtool_crc(&image);
        let size = (HEADER_LEN + JSON.len() + TRAILER_LEN) as u32;
        push_raw_trailer(&mut image, good ^ 1, TYPE_METADATA, size);
        let end = image.len() as u64;
        assert_eq!(
            digest(&image, 777).1,
            Err(TailError::BadCrc {
                kind: BlockKind::Metadata,
                end,
                stored: good ^ 1,
                computed: good
            })
        );
    }

    #[test]
    fn signature_crc_is_checked_too() {
        let mut image = payload(5000);
        push_metadata(&mut image, JSON);
        image.extend_from_slice(b"sig");
        push_raw_trailer(&mut image, 0, TYPE_SIGNATURE, 3 + TRAILER_LEN as u32);
        let result = digest(&image, 777).1;
        assert!(
            matches!(
                result,
                Err(TailError::BadCrc {
                    kind: BlockKind::Signature,
                    ..
                })
            ),
            "{result:?}"
        );
    }

    #[test]
    fn corrupted_payload_breaks_the_crc() {
        let mut image = payload(300_000);
        push_metadata(&mut image, JSON);
        image[10] ^= 0x80;
        let result = digest(&image, 65_536).1;
        assert!(
            matches!(result, Err(TailError::BadCrc { .. })),
            "{result:?}"
        );
    }

    #[test]
    fn size_smaller_than_a_trailer_is_refused() {
        for size in [0, 1, 15] {
            let mut image = payload(100);
            let crc = fwtool_crc(&image);
            push_raw_trailer(&mut image, crc, TYPE_METADATA, size);
            assert_eq!(
                digest(&image, 64).1,
                Err(TailError::SizeTooSmall { end: 116, size })
            );
        }
    }

    #[test]
    fn size_before_the_file_start_is_refused() {
        let mut image = payload(100);
        let crc = fwtool_crc(&image);
        push_raw_trailer(&mut image, crc, TYPE_METADATA, 117);
        assert_eq!(
            digest(&image, 64).1,
            Err(TailError::SizePastStart {
                end: 116,
                size: 117
            })
        );
    }

    #[test]
    fn absurd_size_is_refused() {
        let mut image = payload(100_000);
        let crc = fwtool_crc(&image);
        push_raw_trailer(&mut image, crc, TYPE_METADATA, u32::MAX);
        let end = image.len() as u64;
        assert_eq!(
            digest(&image, 4096).1,
            Err(TailError::SizePastStart {
                end,
                size: u32::MAX
            })
        );
    }

    #[test]
    fn oversized_metadata_is_refused() {
        let mut image = payload(100_000);
        let len = METADATA_MAX + 1;
        image.extend(std::iter::repeat_n(b' ', len));
        push_trailer(&mut image, TYPE_METADATA, len);
        let end = image.len() as u64;
        assert_eq!(
            digest(&image, 4096).1,
            Err(TailError::MetadataTooLarge {
                end,
                len: len as u64
            })
        );
    }

    #[test]
    fn oversized_signature_is_refused() {
        let mut image = payload(10_000);
        push_metadata(&mut image, JSON);
        push_signature(&mut image, &[7; SIGNATURE_MAX + 1]);
        let end = image.len() as u64;
        assert_eq!(
            digest(&image, 4096).1,
            Err(TailError::SignatureTooLarge {
                end,
                len: SIGNATURE_MAX as u64 + 1
            })
        );
    }

    #[test]
    fn metadata_shorter_than_its_header_is_refused() {
        let mut image = payload(100);
        image.extend_from_slice(&[0; 4]);
        push_trailer(&mut image, TYPE_METADATA, 4);
        assert_eq!(
            digest(&image, 64).1,
            Err(TailError::MetadataTooShort { end: 120 })
        );
    }

    #[test]
    fn unknown_block_type_is_refused() {
        let mut image = payload(100);
        push_trailer(&mut image, 7, 0);
        assert_eq!(
            digest(&image, 64).1,
            Err(TailError::UnknownType { end: 116, kind: 7 })
        );
    }

    #[test]
    fn unknown_header_version_is_refused() {
        let mut image = payload(100);
        image.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0]);
        image.extend_from_slice(JSON);
        push_trailer(&mut image, TYPE_METADATA, HEADER_LEN + JSON.len());
        let end = image.len() as u64;
        assert_eq!(
            digest(&image, 64).1,
            Err(TailError::HeaderVersion { end, version: 1 })
        );
    }

    #[test]
    fn signature_alone_is_refused() {
        let mut image = payload(1000);
        push_signature(&mut image, b"signature");
        assert_eq!(
            digest(&image, 64).1,
            Err(TailError::SignatureWithoutMetadata)
        );
    }

    #[test]
    fn chain_beyond_the_tail_is_refused() {
        let mut image = payload(10);
        push_metadata(&mut image, JSON);
        for _ in 0..(TAIL_LEN / SIGNATURE_MAX + 1) {
            push_signature(&mut image, &[3; SIGNATURE_MAX]);
        }
        assert_eq!(digest(&image, 4096).1, Err(TailError::ChainTooLong));
    }

    #[test]
    fn non_json_metadata_is_refused() {
        let mut image = payload(100);
        push_metadata(&mut image, b"supported_devices: [a]");
        let result = digest(&image, 64).1;
        assert!(
            matches!(result, Err(TailError::Metadata(MetadataError::NotJson(_)))),
            "{result:?}"
        );
    }

    /// A trailer with the right magic and random fields, placed after random
    /// bytes or after a valid metadata block.
    fn arbitrary_image() -> impl Strategy<Value = Vec<u8>> {
        (
            proptest::collection::vec(any::<u8>(), 0..3000),
            any::<bool>(),
            any::<u32>(),
            prop_oneof![Just(0u8), Just(1u8), any::<u8>()],
            prop_oneof![0u32..40, 0u32..4000, any::<u32>()],
            any::<bool>(),
        )
            .prop_map(|(mut image, with_metadata, crc, kind, size, right_crc)| {
                if with_metadata {
                    push_metadata(&mut image, JSON);
                }
                let crc = if right_crc { fwtool_crc(&image) } else { crc };
                push_raw_trailer(&mut image, crc, kind, size);
                image
            })
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(
            image in proptest::collection::vec(any::<u8>(), 0..5000),
            chunk in 1usize..300,
        ) {
            let (sha, _) = digest(&image, chunk);
            prop_assert_eq!(sha, hex::encode(Sha256::digest(&image)));
        }

        #[test]
        fn arbitrary_trailers_never_panic(image in arbitrary_image(), chunk in 1usize..5000) {
            let whole = digest(&image, image.len().max(1)).1;
            let chunked = digest(&image, chunk).1;
            prop_assert_eq!(whole, chunked);
        }
    }
}
