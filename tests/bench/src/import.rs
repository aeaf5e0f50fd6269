//! Figure 1, import: reading a 30 MiB image once for its size, sha256 and
//! fwtool metadata (`image::inspect_file`), and storing it
//! (`image::store`), against `openssl dgst -sha256` (the machine's limit
//! where the CPU has SHA extensions) and coreutils `sha256sum` of the same
//! file. Best of several runs, with the file in the page cache.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Context;
use fwu_engine::image;
use fwu_lab::SampleImage;

use crate::report::{best_of, mib_per_second, Row, Table, Target};

/// The size of the image: the design's default size limit.
const SIZE: u64 = 30 << 20;
/// Runs of each tool; the best counts.
const RUNS: usize = 7;

/// Measures the import figure and adds its rows to `table`.
pub fn run(table: &mut Table) -> anyhow::Result<()> {
    println!("import: a {} MiB image", SIZE >> 20);
    let dir = tempfile::Builder::new()
        .prefix("fwu-bench-import-")
        .tempdir()?;
    let file = dir
        .path()
        .join("openwrt-24.10.0-ath79-generic-tplink_archer-c7-v5-squashfs-sysupgrade.bin");
    let board = fwu_lab::board("tplink,archer-c7-v5").context("the lab knows the Archer C7")?;
    let release = fwu_lab::release("24.10.0").context("the lab knows 24.10.0")?;
    let mut sample = SampleImage::new(board, &release);
    sample.size = SIZE;
    fwu_lab::write_sample_image(&file, &sample)?;
    // Warm the page cache: every tool then reads from memory.
    std::fs::read(&file)?;

    let openssl = best_of(RUNS, || {
        time_tool(Command::new("openssl").args(["dgst", "-sha256"]).arg(&file))
    })?;
    let sha256sum = best_of(RUNS, || time_tool(Command::new("sha256sum").arg(&file)))?;
    let inspect = best_of(RUNS, || -> anyhow::Result<Duration> {
        let started = Instant::now();
        let inspection = image::inspect_file(&file, None)?;
        let took = started.elapsed();
        anyhow::ensure!(
            inspection.metadata.is_some(),
            "the sample image lost its metadata"
        );
        Ok(took)
    })?;
    let store = best_of(RUNS, || time_store(&file, dir.path()))?;
    // The same into memory, where the flush costs nothing: what is left is
    // the engine's own work.
    let shm = Path::new("/dev/shm");
    let store_in_memory = if shm.is_dir() {
        Some(best_of(RUNS, || time_store(&file, shm))?)
    } else {
        None
    };
    // What the tools spend starting, measured on an empty file: the rest is
    // their hashing alone.
    let empty = dir.path().join("empty");
    std::fs::write(&empty, b"")?;
    let openssl_start = best_of(RUNS, || {
        time_tool(
            Command::new("openssl")
                .args(["dgst", "-sha256"])
                .arg(&empty),
        )
    })?;

    let rate = |took| mib_per_second(SIZE, took);
    for (figure, ours) in [
        ("import: inspect (sha256 + metadata)", inspect),
        ("import: store (copy + sha256 + fsync)", store),
    ] {
        table.add(Row {
            figure: figure.to_string(),
            ours: rate(ours),
            reference: rate(openssl),
            reference_name: "openssl dgst -sha256".to_string(),
            unit: "MiB/s",
            target: Target::AtLeast(0.9),
        });
    }
    if let Some(took) = store_in_memory {
        table.add(Row {
            figure: "import: store into /dev/shm (no disk flush)".to_string(),
            ours: rate(took),
            reference: rate(openssl),
            reference_name: "openssl dgst -sha256".to_string(),
            unit: "MiB/s",
            target: Target::None,
        });
    }
    table.add(Row {
        figure: "import: inspect against openssl's hashing alone".to_string(),
        ours: rate(inspect),
        reference: rate(openssl.saturating_sub(openssl_start)),
        reference_name: "openssl dgst -sha256 less its start-up".to_string(),
        unit: "MiB/s",
        target: Target::None,
    });
    table.add(Row {
        figure: "import: inspect against coreutils".to_string(),
        ours: rate(inspect),
        reference: rate(sha256sum),
        reference_name: "sha256sum".to_string(),
        unit: "MiB/s",
        target: Target::None,
    });
    Ok(())
}

/// Stores `file` into a fresh data directory under `under` and returns
/// how long it took: a store that already held the image would still copy
/// and hash it, but skip the rename.
fn time_store(file: &Path, under: &Path) -> anyhow::Result<Duration> {
    let data = tempfile::Builder::new()
        .prefix("fwu-bench-store-")
        .tempdir_in(under)?;
    let started = Instant::now();
    image::store(data.path(), file, None, None, &[])?;
    Ok(started.elapsed())
}

/// Runs a hashing tool to its end and returns how long it took.
fn time_tool(command: &mut Command) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let output = command.output().context("a hashing tool runs")?;
    let took = started.elapsed();
    anyhow::ensure!(
        output.status.success(),
        "{command:?} failed: {}",
        output.status
    );
    Ok(took)
}
