//! `fwu lab`: simulated OpenWrt devices on this machine, for trying the
//! product, training and rehearsing a rollout without touching a router.
//!
//! `lab up` starts a background process (`lab serve`) that supervises the
//! devices and writes a manifest saying how to reach them; `lab down` ends
//! it. The lab needs bubblewrap and Dropbear and runs on Linux only.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};
use fwu_lab::{DeviceSpec, Lab, Manifest};

use crate::output::say;
use crate::{Failure, Globals};

const MANIFEST: &str = "manifest.json";
const PID_FILE: &str = "lab.pid";
const LOG_FILE: &str = "lab.log";
/// How long `lab up` waits for the devices to answer.
const START_LIMIT: Duration = Duration::from_secs(120);

#[derive(Subcommand)]
pub enum LabCommand {
    /// Start simulated devices in the background and print how to reach them.
    Up(UpArgs),
    /// Stop the lab's devices.
    Down {
        /// The lab's directory (default: `lab` in the data directory).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Print how to reach the running lab's devices.
    Status {
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Run the lab in the foreground until stopped (what `up` starts).
    #[command(hide = true)]
    Serve(UpArgs),
}

#[derive(Args, Clone)]
pub struct UpArgs {
    /// How many devices.
    #[arg(long, default_value_t = 3)]
    devices: usize,
    /// The board every device has.
    #[arg(long, default_value = "tplink,archer-c7-v5")]
    board: String,
    /// The OpenWrt release they run at first.
    #[arg(long, default_value = "23.05.3")]
    release: String,
    /// The lab's directory (default: `lab` in the data directory).
    #[arg(long)]
    dir: Option<PathBuf>,
}

pub async fn run(command: LabCommand, globals: &Globals) -> Result<ExitCode, Failure> {
    let default_dir = globals.data_dir.join("lab");
    match command {
        LabCommand::Up(args) => {
            let dir = args.dir.clone().unwrap_or(default_dir);
            up(&args, &dir, globals).await
        }
        LabCommand::Serve(args) => {
            let dir = args.dir.clone().unwrap_or(default_dir);
            serve(&args, &dir).await
        }
        LabCommand::Down { dir } => down(&dir.unwrap_or(default_dir)).await,
        LabCommand::Status { dir } => {
            let dir = dir.unwrap_or(default_dir);
            if running_pid(&dir).is_none() {
                anyhow::bail!("no lab is running in {}", dir.display());
            }
            let manifest = Manifest::read(&dir.join(MANIFEST))?;
            print_manifest(&manifest, &dir, globals.json)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The device specs for `args`, checked before anything starts.
pub fn specs(args: &UpArgs) -> Result<Vec<DeviceSpec>, Failure> {
    if fwu_lab::board(&args.board).is_none() {
        let known: Vec<_> = fwu_lab::boards().iter().map(|b| b.name).collect();
        anyhow::bail!(
            "the lab knows no board {}; known: {}",
            args.board,
            known.join(", ")
        );
    }
    if fwu_lab::release(&args.release).is_none() {
        anyhow::bail!(
            "the lab knows no OpenWrt release {}; known: 22.03.6, 23.05.3, 24.10.0",
            args.release
        );
    }
    if args.devices == 0 || args.devices > 1000 {
        anyhow::bail!("--devices must be between 1 and 1000");
    }
    Ok((1..=args.devices)
        .map(|n| DeviceSpec::new(&format!("ap{n}"), &args.board, &args.release))
        .collect())
}

async fn up(args: &UpArgs, dir: &Path, globals: &Globals) -> Result<ExitCode, Failure> {
    specs(args)?;
    if let Some(pid) = running_pid(dir) {
        anyhow::bail!(
            "a lab (process {pid}) is already running in {}; `fwu lab down` stops it",
            dir.display()
        );
    }
    std::fs::create_dir_all(dir)?;
    let _ = std::fs::remove_file(dir.join(MANIFEST));
    let log = std::fs::File::create(dir.join(LOG_FILE))?;
    let mut command = std::process::Command::new(std::env::current_exe()?);
    command
        .arg("--data-dir")
        .arg(&globals.data_dir)
        .args(["lab", "serve", "--devices", &args.devices.to_string()])
        .args(["--board", &args.board, "--release", &args.release])
        .arg("--dir")
        .arg(dir)
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    detach(&mut command);
    let mut child = command.spawn()?;
    std::fs::write(dir.join(PID_FILE), child.id().to_string())?;

    let started = std::time::Instant::now();
    while !dir.join(MANIFEST).exists() {
        if let Some(status) = child.try_wait()? {
            let log = std::fs::read_to_string(dir.join(LOG_FILE)).unwrap_or_default();
            anyhow::bail!("the lab did not start ({status}): {}", log.trim());
        }
        if started.elapsed() > START_LIMIT {
            let _ = child.kill();
            anyhow::bail!("the lab did not start within {} s", START_LIMIT.as_secs());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let manifest = Manifest::read(&dir.join(MANIFEST))?;
    print_manifest(&manifest, dir, globals.json)?;
    Ok(ExitCode::SUCCESS)
}

async fn serve(args: &UpArgs, dir: &Path) -> Result<ExitCode, Failure> {
    let specs = specs(args)?;
    let lab = Lab::start(dir, specs).await?;
    write_sample_images(args, dir)?;
    let partial = dir.join(format!("{MANIFEST}.part"));
    lab.write_manifest(&partial)?;
    std::fs::rename(&partial, dir.join(MANIFEST))?;
    eprintln!("lab: {} devices up", lab.devices().len());

    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = terminate.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    lab.stop().await;
    let _ = std::fs::remove_file(dir.join(MANIFEST));
    let _ = std::fs::remove_file(dir.join(PID_FILE));
    eprintln!("lab: stopped");
    Ok(ExitCode::SUCCESS)
}

async fn down(dir: &Path) -> Result<ExitCode, Failure> {
    let Some(pid) = running_pid(dir) else {
        let _ = std::fs::remove_file(dir.join(PID_FILE));
        say!("no lab is running in {}", dir.display());
        return Ok(ExitCode::SUCCESS);
    };
    // SAFETY: kill has no memory effects; the pid is the lab's own.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    for _ in 0..150 {
        if running_pid(dir).is_none() {
            say!("lab stopped");
            return Ok(ExitCode::SUCCESS);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    anyhow::bail!("the lab (process {pid}) did not stop within 30 s")
}

/// Writes an image of every known release for the lab's board, so that
/// people can try upgrades without downloading anything.
fn write_sample_images(args: &UpArgs, dir: &Path) -> Result<Vec<PathBuf>, Failure> {
    let board = fwu_lab::board(&args.board).expect("checked by specs");
    let images = dir.join("images");
    std::fs::create_dir_all(&images)?;
    let mut written = Vec::new();
    for version in ["22.03.6", "23.05.3", "24.10.0"] {
        let release = fwu_lab::release(version).expect("a known release");
        let image = fwu_lab::SampleImage::new(board, &release);
        let path = images.join(fwu_lab::sample_image_name(board, &image.release));
        fwu_lab::write_sample_image(&path, &image)?;
        written.push(path);
    }
    Ok(written)
}

/// The pid of the lab serving `dir`, if it still runs.
fn running_pid(dir: &Path) -> Option<u32> {
    let pid: u32 = std::fs::read_to_string(dir.join(PID_FILE))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let alive = Path::new("/proc").join(pid.to_string()).exists();
    alive.then_some(pid)
}

/// Starts the lab in its own session, so that it outlives `lab up` and a
/// Ctrl-C at the terminal does not reach it.
fn detach(command: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: setsid is async-signal-safe and touches no memory.
    unsafe {
        command.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
}

fn print_manifest(manifest: &Manifest, dir: &Path, json: bool) -> Result<(), Failure> {
    if json {
        return crate::output::json(manifest);
    }
    say!("name\taddress\talternate\tuser\tpassword\tboard\trelease");
    for d in &manifest.devices {
        say!(
            "{}\t{}\t{}\t{}\t{}\t{}\t{}",
            d.name,
            d.address,
            d.alternate_address,
            d.user,
            d.password.as_deref().unwrap_or("-"),
            d.board,
            d.release.os_identifier()
        );
    }
    say!("\nsample images: {}", dir.join("images").display());
    if let Some(first) = manifest.devices.first() {
        say!(
            "try: echo {} | fwu device add {} --host {} --alt-host {} --password-stdin",
            first.password.as_deref().unwrap_or("lab"),
            first.name,
            first.address,
            first.alternate_address
        );
    }
    Ok(())
}
