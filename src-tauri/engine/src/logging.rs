//! Diagnostics: `tracing` into a daily-rotated log file in the data
//! directory, for developers and bug reports. An operation's own log, the
//! one users read, lives in the catalogue instead.

use std::path::Path;

use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::{fmt, EnvFilter};

/// Log files kept before the oldest is removed.
const KEPT_FILES: usize = 7;

/// Starts writing diagnostics to `<data_dir>/logs/fwu.log.<date>`. The
/// filter comes from `FWU_LOG` (as `RUST_LOG` would), `info` by default.
/// Keep the guard alive for as long as the process logs.
pub fn init(data_dir: &Path) -> Option<WorkerGuard> {
    let logs = data_dir.join("logs");
    std::fs::create_dir_all(&logs).ok()?;
    let appender = tracing_appender::rolling::Builder::new()
        .rotation(tracing_appender::rolling::Rotation::DAILY)
        .filename_prefix("fwu.log")
        .max_log_files(KEPT_FILES)
        .build(&logs)
        .ok()?;
    let (writer, guard) = tracing_appender::non_blocking(appender);
    let filter = EnvFilter::try_from_env("FWU_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let installed = fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(false)
        .try_init()
        .is_ok();
    installed.then_some(guard)
}
