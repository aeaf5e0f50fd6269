//! Firmware image files: reading their fwtool metadata, hashing them and
//! keeping them content-addressed in the data directory.
//!
//! Importing an image reads it once, in large chunks: the same pass counts
//! its size, computes its sha256, keeps its last bytes for the fwtool blocks
//! (see `fwtool.rs`) and copies it into a temporary file beside the store.
//! Only when everything checks out is the copy renamed to
//! `<data dir>/images/<sha256>`; on any error nothing is left behind.
//!
//! Which devices an image is for comes from its metadata, or, for legacy
//! images without metadata, from the image type table in `types.rs`.
//!
//! Callers: the catalogue records what [`store`] returns; the upgraders send
//! the file at [`stored_path`]; the CLI and the window call [`inspect_file`]
//! to show a file before importing it.

mod fwtool;
mod metadata;
mod reader;
mod types;

#[cfg(test)]
mod tests;

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread;
use std::time::Instant;

use thiserror::Error;

pub use fwtool::{BlockKind, TailError};
pub use metadata::{CompatChange, Metadata, MetadataError, Release};
pub use reader::StoredImage;
pub use types::{builtin_types, type_by_name, type_from_file_name, type_name_of, ImageType};

/// Size of the chunks an image is read in: large enough that hashing, not
/// system calls, sets the pace.
const CHUNK_LEN: usize = 1 << 20;

/// How many chunk buffers circulate between the reading thread and the
/// digest thread: enough that neither waits for the other on a steady pass.
const BUFFERS: usize = 4;

/// The folder of the data directory that holds stored images.
const STORE_DIR: &str = "images";

/// Prefix and suffix of the temporary files of imports under way, kept in
/// the data directory itself so that a failed import leaves the store
/// untouched and the final rename stays on one file system.
const PARTIAL_PREFIX: &str = ".import-";
const PARTIAL_SUFFIX: &str = ".part";

/// Why an image could not be inspected or stored.
#[derive(Debug, Error)]
pub enum ImageError {
    /// The image file could not be opened.
    #[error("could not open image {}: {cause}", file.display())]
    Open { file: PathBuf, cause: io::Error },

    /// Reading the image file failed part way.
    #[error("could not read image {}: {cause}", file.display())]
    Read { file: PathBuf, cause: io::Error },

    /// The image file has no bytes.
    #[error("image {} is empty", file.display())]
    Empty { file: PathBuf },

    /// The image file is larger than the configured size limit.
    #[error("image {} is larger than the size limit of {limit} bytes", file.display())]
    TooLarge { file: PathBuf, limit: u64 },

    /// The fwtool blocks at the end of the image are damaged or malformed.
    #[error("bad image {}: {fault}", file.display())]
    Blocks { file: PathBuf, fault: TailError },

    /// A legacy image whose file name matches no image type.
    #[error(
        "cannot tell which devices image {} is for: it has no metadata and its name \
         matches no image type; give its type",
        file.display()
    )]
    UnknownType { file: PathBuf },

    /// A legacy image was given a type that is not in the table.
    #[error(
        "image type {name} given for image {} is unknown, and the image has no \
         metadata to name its boards",
        file.display()
    )]
    UnknownTypeName { file: PathBuf, name: String },

    /// Writing the image into the store failed.
    #[error("could not store image {} as {}: {cause}", file.display(), path.display())]
    Store {
        file: PathBuf,
        path: PathBuf,
        cause: io::Error,
    },
}

/// What one pass over an image found.
#[derive(Debug, Clone, PartialEq)]
pub struct Inspection {
    /// The size in bytes.
    pub size: u64,
    /// The sha256, lower-case hex.
    pub sha256: String,
    /// The fwtool metadata, `None` for a legacy image.
    pub metadata: Option<Metadata>,
    /// Whether the image carries a signature block.
    pub signed: bool,
}

/// An image kept in the store.
#[derive(Debug, Clone, PartialEq)]
pub struct Stored {
    /// What the import read from the file.
    pub inspection: Inspection,
    /// Where the store keeps it: `<data dir>/images/<sha256>`.
    pub path: PathBuf,
    /// The file name it was imported from.
    pub file_name: String,
    /// Its image type: from the table when it is there, else named after the
    /// file (or the type the user gave) and labelled from the metadata.
    pub image_type: ImageType,
    /// The boards it supports: from its metadata when it has any, else from
    /// its image type.
    pub boards: Vec<String>,
}

/// How much of a copy into the store is written before its writing to disk
/// is started.
const WRITEBACK_EVERY: u64 = 4 << 20;

/// Where the store keeps the image with this sha256.
pub fn stored_path(data_dir: &Path, sha256: &str) -> PathBuf {
    data_dir.join(STORE_DIR).join(sha256)
}

/// Reads an image once and says what it is, without storing it.
///
/// `limit` is the size limit in bytes (`None`: no limit); a larger file is
/// refused as soon as the pass crosses the limit.
pub fn inspect_file(path: &Path, limit: Option<u64>) -> Result<Inspection, ImageError> {
    let mut source = open(path, limit)?;
    read_once(path, &mut source, limit, |_| Ok(()))
}

/// Imports an image into the store of `data_dir`.
///
/// The image is read once and copied as it is read; it is kept as
/// `<data dir>/images/<sha256>`, reusing a copy already there. The image
/// type is `type_name` if given, else found from the file name among the
/// `custom` types and then the built-in ones. `data_dir` must exist; on any
/// error it is left as it was.
pub fn store(
    data_dir: &Path,
    source: &Path,
    limit: Option<u64>,
    type_name: Option<&str>,
    custom: &[ImageType],
) -> Result<Stored, ImageError> {
    let started = Instant::now();
    let mut reader = open(source, limit)?;
    let file_name = source.file_name().map_or_else(
        || source.display().to_string(),
        |name| name.to_string_lossy().into(),
    );

    let partial = Partial::create(data_dir, source)?;
    // The copy goes to disk while the rest is read and hashed: the flush
    // at the end then waits for the last few MiB, not the whole image.
    let mut written = 0;
    let mut flushed = 0;
    let inspection = read_once(source, &mut reader, limit, |chunk| {
        let mut file = partial.file();
        file.write_all(chunk)
            .map_err(|cause| partial.error(cause))?;
        written += chunk.len() as u64;
        if written - flushed >= WRITEBACK_EVERY {
            crate::platform::start_writeback(file, flushed, written - flushed);
            flushed = written;
        }
        Ok(())
    })?;
    let (image_type, boards) = resolve_type(
        source,
        &file_name,
        inspection.metadata.as_ref(),
        type_name,
        custom,
    )?;
    let path = partial.keep(&inspection)?;

    let seconds = started.elapsed().as_secs_f64();
    tracing::info!(
        image = %source.display(),
        sha256 = %inspection.sha256,
        size = inspection.size,
        image_type = %image_type.name,
        mib_per_second = inspection.size as f64 / (1 << 20) as f64 / seconds.max(1e-9),
        "stored image",
    );
    Ok(Stored {
        inspection,
        path,
        file_name,
        image_type,
        boards,
    })
}

/// Removes the temporary files that imports cut short by a crash left in
/// `data_dir`, if they are older than an hour (younger ones may belong to an
/// import under way in another instance). Returns how many were removed.
pub fn remove_partial_imports(data_dir: &Path) -> io::Result<usize> {
    let cutoff = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    let mut removed = 0;
    for entry in fs::read_dir(data_dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if !name.starts_with(PARTIAL_PREFIX) || !name.ends_with(PARTIAL_SUFFIX) {
            continue;
        }
        let modified = entry.metadata()?.modified()?;
        if modified < cutoff {
            tracing::info!(file = %entry.path().display(), "removing a partial image import");
            fs::remove_file(entry.path())?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// Opens an image, refusing at once one whose size is already over `limit`.
fn open(path: &Path, limit: Option<u64>) -> Result<File, ImageError> {
    let file = File::open(path).map_err(|cause| ImageError::Open {
        file: path.into(),
        cause,
    })?;
    let len = file
        .metadata()
        .map_err(|cause| ImageError::Read {
            file: path.into(),
            cause,
        })?
        .len();
    if let Some(limit) = limit.filter(|&limit| len > limit) {
        return Err(ImageError::TooLarge {
            file: path.into(),
            limit,
        });
    }
    Ok(file)
}

/// The single pass over an image.
///
/// This thread reads chunks, checks the size limit and hands each chunk to
/// `copy`; a second thread runs the digest over the same chunks. On two
/// cores the pass then takes about as long as sha256 alone, which is the
/// slowest part, instead of the sum of reading, hashing and writing.
fn read_once(
    path: &Path,
    source: &mut File,
    limit: Option<u64>,
    mut copy: impl FnMut(&[u8]) -> Result<(), ImageError>,
) -> Result<Inspection, ImageError> {
    let (to_digest, chunks) = mpsc::sync_channel::<(Vec<u8>, usize)>(BUFFERS);
    let (to_reader, free) = mpsc::sync_channel::<Vec<u8>>(BUFFERS);
    for _ in 0..BUFFERS {
        // Zeroed allocations are mapped lazily: small images touch little.
        let _ = to_reader.send(vec![0; CHUNK_LEN]);
    }

    let (streamed, digest) = thread::scope(|scope| {
        let digester = scope.spawn(move || {
            let mut digest = fwtool::Digest::new();
            for (buffer, len) in chunks {
                digest.update(&buffer[..len]);
                // The reader may have stopped early; then nobody wants it.
                let _ = to_reader.send(buffer);
            }
            digest
        });
        let streamed = stream(path, source, limit, &mut copy, &to_digest, &free);
        drop(to_digest);
        let digest = digester
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        (streamed, digest)
    });
    streamed?;

    let size = digest.size();
    if size == 0 {
        return Err(ImageError::Empty { file: path.into() });
    }
    let (sha256, tail) = digest.finish();
    let tail = tail.map_err(|fault| ImageError::Blocks {
        file: path.into(),
        fault,
    })?;
    Ok(Inspection {
        size,
        sha256,
        metadata: tail.metadata,
        signed: tail.signed,
    })
}

/// The reading side of [`read_once`]: fills free buffers from `source`,
/// copies them and passes them on to the digest, in order.
fn stream(
    path: &Path,
    source: &mut File,
    limit: Option<u64>,
    copy: &mut impl FnMut(&[u8]) -> Result<(), ImageError>,
    to_digest: &mpsc::SyncSender<(Vec<u8>, usize)>,
    free: &mpsc::Receiver<Vec<u8>>,
) -> Result<(), ImageError> {
    let mut size: u64 = 0;
    // Fails only when the digest thread is gone, which means it panicked:
    // stop, and let the join report it.
    while let Ok(mut buffer) = free.recv() {
        let len = match read_chunk(source, &mut buffer) {
            Ok(0) => return Ok(()),
            Ok(len) => len,
            Err(cause) => {
                return Err(ImageError::Read {
                    file: path.into(),
                    cause,
                })
            }
        };
        size += len as u64;
        // The file may have grown since it was opened: check as it streams.
        if let Some(limit) = limit.filter(|&limit| size > limit) {
            return Err(ImageError::TooLarge {
                file: path.into(),
                limit,
            });
        }
        copy(&buffer[..len])?;
        if to_digest.send((buffer, len)).is_err() {
            break;
        }
    }
    Ok(())
}

/// Reads the next bytes of `source` into `buffer`, as many as one read gives.
fn read_chunk(source: &mut File, buffer: &mut [u8]) -> io::Result<usize> {
    loop {
        match source.read(buffer) {
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            result => return result,
        }
    }
}

/// Decides an imported image's type and boards.
fn resolve_type(
    source: &Path,
    file_name: &str,
    metadata: Option<&Metadata>,
    type_name: Option<&str>,
    custom: &[ImageType],
) -> Result<(ImageType, Vec<String>), ImageError> {
    let found = match type_name {
        Some(name) => type_by_name(name, custom),
        None => type_from_file_name(file_name, custom),
    };
    match (metadata, found) {
        (Some(metadata), Some(image_type)) => Ok((image_type, metadata.boards().to_vec())),
        (Some(metadata), None) => {
            let name = type_name
                .unwrap_or_else(|| type_name_of(file_name))
                .to_owned();
            let release = &metadata.version;
            let label = if release.board.is_empty() || release.target.is_empty() {
                name.clone()
            } else {
                format!("{} ({})", release.board, release.target)
            };
            let boards = metadata.boards().to_vec();
            Ok((
                ImageType {
                    name,
                    label,
                    boards: boards.clone(),
                },
                boards,
            ))
        }
        (None, Some(image_type)) => {
            let boards = image_type.boards.clone();
            Ok((image_type, boards))
        }
        (None, None) => Err(match type_name {
            Some(name) => ImageError::UnknownTypeName {
                file: source.into(),
                name: name.into(),
            },
            None => ImageError::UnknownType {
                file: source.into(),
            },
        }),
    }
}

/// The temporary copy of an import under way; removed when dropped unless
/// [`Partial::keep`] moved it into the store.
struct Partial {
    source: PathBuf,
    data_dir: PathBuf,
    path: PathBuf,
    file: Option<File>,
}

impl Partial {
    /// Creates a new, uniquely named temporary file in `data_dir`.
    fn create(data_dir: &Path, source: &Path) -> Result<Partial, ImageError> {
        let name = format!("{PARTIAL_PREFIX}{}{PARTIAL_SUFFIX}", uuid::Uuid::new_v4());
        let path = data_dir.join(name);
        let file = File::options()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|cause| ImageError::Store {
                file: source.into(),
                path: path.clone(),
                cause,
            })?;
        Ok(Partial {
            source: source.into(),
            data_dir: data_dir.into(),
            path,
            file: Some(file),
        })
    }

    /// The open temporary file.
    fn file(&self) -> &File {
        self.file
            .as_ref()
            .expect("the temporary file stays open until kept")
    }

    /// A store error on the temporary file.
    fn error(&self, cause: io::Error) -> ImageError {
        ImageError::Store {
            file: self.source.clone(),
            path: self.path.clone(),
            cause,
        }
    }

    /// Moves the copy to its place in the store, or drops it when the store
    /// already holds a complete copy of the same image.
    fn keep(mut self, inspection: &Inspection) -> Result<PathBuf, ImageError> {
        let file = self.file.take().expect("an import is kept once");
        // The catalogue will point at this file: it must survive a crash.
        file.sync_data().map_err(|cause| self.error(cause))?;
        drop(file);

        let store_dir = self.data_dir.join(STORE_DIR);
        let target = stored_path(&self.data_dir, &inspection.sha256);
        let store_error = |cause| ImageError::Store {
            file: self.source.clone(),
            path: target.clone(),
            cause,
        };
        fs::create_dir_all(&store_dir).map_err(store_error)?;

        let existing = fs::metadata(&target).ok().filter(|found| found.is_file());
        if existing.is_some_and(|found| found.len() == inspection.size) {
            tracing::debug!(image = %target.display(), "the store already holds this image");
            return Ok(target);
        }
        fs::rename(&self.path, &target).map_err(store_error)?;
        sync_dir(&store_dir);
        Ok(target)
    }
}

impl Drop for Partial {
    fn drop(&mut self) {
        drop(self.file.take());
        match fs::remove_file(&self.path) {
            Ok(()) => {}
            // Kept: the rename moved it away.
            Err(err) if err.kind() == io::ErrorKind::NotFound => {}
            Err(err) => tracing::warn!(
                file = %self.path.display(),
                "could not remove a partial image import: {err}",
            ),
        }
    }
}

/// Makes a rename in `dir` durable where the platform allows it.
fn sync_dir(dir: &Path) {
    #[cfg(unix)]
    if let Err(err) = File::open(dir).and_then(|dir| dir.sync_all()) {
        tracing::warn!(dir = %dir.display(), "could not sync the image store: {err}");
    }
    #[cfg(not(unix))]
    let _ = dir;
}
