//! The few things the engine asks of the operating system that differ
//! between platforms, kept in one place.

/// Whether a process with this id is running on this machine.
///
/// On Linux this reads /proc. Elsewhere it answers true, and orphaned
/// operations are found by their lease running out instead.
pub fn process_alive(pid: u32) -> bool {
    if pid == std::process::id() {
        return true;
    }
    #[cfg(target_os = "linux")]
    {
        std::path::Path::new("/proc").join(pid.to_string()).exists()
    }
    #[cfg(not(target_os = "linux"))]
    {
        // FIXME: without a liveness check an orphan waits for its lease
        // (30 s) before another process takes it over.
        true
    }
}

/// Asks the operating system to start writing `len` bytes of `file` from
/// `offset` to disk now, without waiting for them, so that the flush that
/// ends a copy finds little left to write.
///
/// On Linux this is `sync_file_range` with `SYNC_FILE_RANGE_WRITE`, which
/// guarantees nothing (the flush still does); elsewhere it does nothing.
pub fn start_writeback(file: &std::fs::File, offset: u64, len: u64) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: the descriptor is open for the call's length (borrowed
        // from `file`); the call only reads its arguments. A failure is of
        // no consequence: the flush that follows writes the data anyway.
        unsafe {
            libc::sync_file_range(
                file.as_raw_fd(),
                offset as libc::off64_t,
                len as libc::off64_t,
                libc::SYNC_FILE_RANGE_WRITE,
            );
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (file, offset, len);
    }
}

/// The application's identifier; the window's data directory is named
/// after it, so the CLI uses the same one by default.
pub const APP_IDENTIFIER: &str = "org.firmware-upgrader.app";

/// Where the catalogue, images, settings and logs live unless the user
/// says otherwise: the platform's per-user data directory (XDG on Linux,
/// Application Support on macOS, AppData\Roaming on Windows).
pub fn default_data_dir() -> Option<std::path::PathBuf> {
    dirs::data_dir().map(|dir| dir.join(APP_IDENTIFIER))
}
