//! `bench`: Firmware Upgrader measured against what users would otherwise
//! run, side by side, in one run on one lab (issue 5, `BENCHMARKS.md`).
//!
//! Each figure is measured in its own module: `import` (hashing and
//! storing an image against `openssl dgst` and `sha256sum`), `upload` (the
//! engine's SSH upload against OpenSSH's `ssh … 'cat >'` and `scp -O`),
//! `fleet` (`fwu batch start` over 200 lab devices against the ideal the
//! lab's timings imply and an `xargs -P` shell loop) and `catalogue`
//! (queries over 10,000 devices and 100,000 upgrade operations). Every row
//! prints ours, the reference and the ratio, and whether the target is met.
//!
//! Run it as root (the lab needs bubblewrap and loopback addresses):
//! `cargo run --release -p fwu-bench`. It is not part of `.ci/run`.

use std::path::PathBuf;
use std::time::Instant;

use clap::Parser;

mod catalogue;
mod fleet;
mod import;
mod openssh;
mod phases;
mod report;
mod upload;

use report::Table;

/// Measures Firmware Upgrader against OpenSSL, coreutils and OpenSSH.
#[derive(Parser)]
#[command(name = "bench", max_term_width = 100)]
struct Args {
    /// Figures to measure, comma separated: import, upload, fleet,
    /// catalogue (default: all).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// The `fwu` binary the fleet figure runs (default: `fwu` beside this
    /// program, that is the release build of the workspace).
    #[arg(long, env = "FWU_BIN")]
    fwu: Option<PathBuf>,
    /// Lab devices of the fleet figure.
    #[arg(long, default_value_t = 200)]
    devices: usize,
    /// Operations at once in the fleet figure.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Keep the fleet's folder (lab, catalogue, logs) for a post-mortem.
    #[arg(long)]
    keep: bool,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let wanted = |figure: &str| args.only.is_empty() || args.only.iter().any(|f| f == figure);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let started = Instant::now();
    let mut table = Table::default();
    println!("{}", report::machine());

    if wanted("import") {
        import::run(&mut table)?;
    }
    let mut link = None;
    if wanted("upload") || wanted("fleet") {
        link = Some(runtime.block_on(upload::run(&mut table))?);
    }
    if wanted("fleet") {
        let fwu = match &args.fwu {
            Some(path) => path.clone(),
            None => std::env::current_exe()?.with_file_name("fwu"),
        };
        anyhow::ensure!(
            fwu.is_file(),
            "{} is missing: build it with cargo build --release -p fwu-cli (or set FWU_BIN)",
            fwu.display()
        );
        let fleet = fleet::Fleet {
            fwu,
            devices: args.devices,
            concurrency: args.concurrency,
            keep: args.keep,
        };
        let link = link.expect("the upload figure measured the link");
        runtime.block_on(fleet.run(&link, &mut table))?;
    }
    if wanted("catalogue") {
        catalogue::run(&mut table)?;
    }

    println!("\n{table}");
    println!("benchmark took {:.0} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// A temporary directory in `/dev/shm` (RAM) where the machine has one,
/// else in the usual temporary directory.
pub(crate) fn ram_dir(prefix: &str) -> std::io::Result<tempfile::TempDir> {
    let shm = std::path::Path::new("/dev/shm");
    let mut builder = tempfile::Builder::new();
    builder.prefix(prefix);
    if shm.is_dir() {
        builder.tempdir_in(shm)
    } else {
        builder.tempdir()
    }
}
