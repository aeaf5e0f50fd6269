//! Reading a stored image for an upload.
//!
//! A `tokio::fs::File` hands every read to tokio's blocking thread pool.
//! In a batch, 32 uploads at once each refill their buffer that way, and
//! on a busy machine every refill waits for a pool thread to be woken: the
//! fleet benchmark measured uploads of 8 MiB slower by that wait. A stored
//! image is read over and over by a batch and sits in the page cache, where
//! a read of 64 KiB (the upload's read-ahead) takes microseconds, so
//! [`StoredImage`] reads it on the task that sends it. A read from a cold,
//! slow disk blocks that task's thread for as long as the disk takes, and
//! each operation has a thread of its own (`crate::runtime::on_own_thread`).

use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, ReadBuf};

/// A stored image opened for an upload.
pub struct StoredImage {
    file: File,
}

impl StoredImage {
    /// Opens the stored image at `path`.
    pub fn open(path: &Path) -> std::io::Result<StoredImage> {
        Ok(StoredImage {
            file: File::open(path)?,
        })
    }
}

impl AsyncRead for StoredImage {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let read = self.file.read(buf.initialize_unfilled())?;
        buf.advance(read);
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn reads_the_whole_file_then_ends() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("image.bin");
        let bytes: Vec<u8> = (0..700_000u32).map(|n| (n % 253) as u8).collect();
        std::fs::write(&path, &bytes).unwrap();
        let mut image = StoredImage::open(&path).unwrap();
        let mut read = Vec::new();
        image.read_to_end(&mut read).await.unwrap();
        assert_eq!(read, bytes);
        assert!(StoredImage::open(&dir.path().join("missing")).is_err());
    }
}
