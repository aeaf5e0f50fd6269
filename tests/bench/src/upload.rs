//! Figure 2, upload: one 30 MiB image to one lab device through the
//! engine's `SshConnector` and `Session::upload` (`cat > /tmp/x`), against
//! OpenSSH's `ssh host 'cat > /tmp/x' < image` and `scp -O` to the same
//! device. Each side pays for its connection, login and upload, as a user
//! running the command would. Lab devices have no scp, as on OpenWrt; for
//! this reference the host's `scp` is added to the benchmark's own lab.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context;
use fwu_engine::runtime;
use fwu_engine::transport::ssh::SshConnector;
use fwu_engine::transport::{Auth, Connector, Endpoint, HostKeyCheck, Target};
use fwu_lab::{Device, DeviceSpec, Lab, SampleImage};

use crate::openssh::OpenSsh;
use crate::report::{mib_per_second, Row, Table, Target as Goal};

/// The size of the image.
const SIZE: u64 = 30 << 20;
/// Runs of each method; the best counts. The machine is shared, so a
/// single run can be far off.
const RUNS: usize = 7;
/// Where every method writes on the device.
const REMOTE: &str = "/tmp/x";

/// What the upload figure learnt about the lab's link, for the fleet
/// figure's ideal.
pub struct Link {
    /// OpenSSH's upload rate to one device, bytes per second: with one
    /// stream both cores are busy (client and Dropbear), so it is also what
    /// the machine can move in all.
    pub bytes_per_second: f64,
    /// How long OpenSSH takes to connect, log in and run `true`.
    pub round_trip: Duration,
}

/// Measures the upload figure and adds its rows to `table`.
pub async fn run(table: &mut Table) -> anyhow::Result<Link> {
    println!("upload: a {} MiB image to one lab device", SIZE >> 20);
    let dir = tempfile::Builder::new()
        .prefix("fwu-bench-upload-")
        .tempdir()?;
    let openssh = OpenSsh::new(dir.path())?;
    let mut spec = DeviceSpec::new("bench-upload", "tplink,archer-c7-v5", "23.05.3");
    spec.authorized_keys = vec![openssh.public.clone()];
    let lab = Lab::start(&dir.path().join("lab"), vec![spec]).await?;
    let measured = measure(&lab, &openssh, dir.path()).await;
    lab.stop().await;
    let (ours, shared, ssh, scp, round_trip) = measured?;

    let rate = |took| mib_per_second(SIZE, took);
    table.add(Row {
        figure: "upload: engine (connect + upload)".to_string(),
        ours: rate(ours),
        reference: rate(ssh),
        reference_name: "ssh 'cat >'".to_string(),
        unit: "MiB/s",
        target: Goal::AtLeast(0.9),
    });
    table.add(Row {
        figure: "upload: engine on a runtime of a worker per core".to_string(),
        ours: rate(shared),
        reference: rate(ssh),
        reference_name: "ssh 'cat >'".to_string(),
        unit: "MiB/s",
        target: Goal::None,
    });
    match scp {
        Some(scp) => table.add(Row {
            figure: "upload: engine against scp".to_string(),
            ours: rate(ours),
            reference: rate(scp),
            reference_name: "scp -O".to_string(),
            unit: "MiB/s",
            target: Goal::None,
        }),
        None => println!("  upload: scp -O not measurable: the host has no /usr/bin/scp"),
    }
    Ok(Link {
        bytes_per_second: SIZE as f64 / ssh.as_secs_f64(),
        round_trip,
    })
}

/// Times every method against the lab's one device: (ours, ours on the
/// benchmark's runtime, ssh, scp, ssh round trip).
///
/// Ours runs as the engine runs an operation (`upgrade::run_operation`): on a
/// thread of its own with a runtime of that one thread
/// (`runtime::on_own_thread`). The second figure
/// runs the same upload on the benchmark's runtime, one worker per core,
/// where russh's session task and the uploading task wake each other
/// across the two cores that Dropbear also needs; it shows what running
/// operations on their own threads gains.
async fn measure(
    lab: &Lab,
    openssh: &OpenSsh,
    dir: &Path,
) -> anyhow::Result<(Duration, Duration, Duration, Option<Duration>, Duration)> {
    let device = &lab.devices()[0];
    openssh.know(lab.devices())?;
    let image = dir.join("image.bin");
    let board = fwu_lab::board("tplink,archer-c7-v5").context("the lab knows the Archer C7")?;
    let release = fwu_lab::release("24.10.0").context("the lab knows 24.10.0")?;
    let mut sample = SampleImage::new(board, &release);
    sample.size = SIZE;
    fwu_lab::write_sample_image(&image, &sample)?;
    std::fs::read(&image)?;
    let landed = device_file(device, REMOTE);
    let host = device.address().to_string();

    let mut ours = Duration::MAX;
    let mut shared = Duration::MAX;
    let mut ssh = Duration::MAX;
    let mut scp = None;
    let can_scp = Path::new("/usr/bin/scp").is_file();
    if can_scp {
        lab.add_host_program(Path::new("/usr/bin/scp"))?;
    }
    let mut round_trip = Duration::MAX;
    // Methods take turns, so that a disturbance of the machine hits all.
    for _ in 0..RUNS {
        let (alone, key, path) = (device.clone(), openssh.key.clone(), image.clone());
        let upload = move || async move { engine_upload(&alone, &key, &path).await };
        ours = ours.min(runtime::on_own_thread("fwu-operation", upload).await??);
        check_landed(&landed, "the engine")?;
        std::fs::remove_file(&landed)?;
        shared = shared.min(engine_upload(device, &openssh.key, &image).await?);
        check_landed(&landed, "the engine on the benchmark's runtime")?;
        std::fs::remove_file(&landed)?;
        let started = Instant::now();
        let status = openssh
            .ssh(&host, &format!("cat > {REMOTE}"))
            .stdin(Stdio::from(std::fs::File::open(&image)?))
            .status()?;
        ssh = ssh.min(started.elapsed());
        anyhow::ensure!(status.success(), "ssh 'cat >' failed: {status}");
        check_landed(&landed, "ssh")?;

        if can_scp {
            std::fs::remove_file(&landed)?;
            let started = Instant::now();
            let status = openssh.scp(&image, &host, REMOTE).status()?;
            let took = started.elapsed();
            anyhow::ensure!(status.success(), "scp -O failed: {status}");
            check_landed(&landed, "scp")?;
            scp = Some(scp.unwrap_or(Duration::MAX).min(took));
        }
        std::fs::remove_file(&landed)?;

        let started = Instant::now();
        let status = openssh.ssh(&host, "true").status()?;
        round_trip = round_trip.min(started.elapsed());
        anyhow::ensure!(status.success(), "ssh true failed: {status}");
    }
    Ok((ours, shared, ssh, scp, round_trip))
}

/// Connects with the engine, uploads `image` with `cat >` and closes the
/// session; returns how long all of it took.
async fn engine_upload(device: &Device, key: &Path, image: &Path) -> anyhow::Result<Duration> {
    let target = Target {
        endpoint: Endpoint {
            host: device.address().to_string(),
            port: device.port(),
            user: device.user().to_string(),
        },
        auth: Auth::KeyFile {
            path: key.to_path_buf(),
            passphrase: None,
        },
        host_key: HostKeyCheck::Pinned(device.host_key()),
        connect_timeout: Duration::from_secs(10),
    };
    let connector = SshConnector::new();
    let mut file = fwu_engine::image::StoredImage::open(image)?;
    let started = Instant::now();
    let (mut session, _key) = connector.connect(&target).await?;
    let output = session
        .upload(&format!("cat > {REMOTE}"), &mut file, SIZE, &mut |_sent| {})
        .await?;
    session.close().await;
    let took = started.elapsed();
    anyhow::ensure!(output.success(), "the engine's upload failed: {output:?}");
    Ok(took)
}

/// Where a device's file lies on the host (its `/tmp` is bound from the
/// device's own folder, beside its state folder).
fn device_file(device: &Device, path: &str) -> PathBuf {
    let root = device.state_dir().parent().unwrap_or(Path::new("/"));
    root.join(path.trim_start_matches('/'))
}

/// Fails unless the whole image arrived.
fn check_landed(landed: &Path, by: &str) -> anyhow::Result<()> {
    let size = std::fs::metadata(landed)
        .with_context(|| format!("{by} left no {}", landed.display()))?
        .len();
    anyhow::ensure!(size == SIZE, "{by} wrote {size} of {SIZE} bytes");
    Ok(())
}
