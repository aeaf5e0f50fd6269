//! Figure 3, fleet: the real `fwu batch start` (release build) over 200 lab
//! devices with 8 MiB images, a 5 s reboot and a concurrency of 32, against
//! the ideal the lab's timings imply and against a reference shell loop of
//! OpenSSH commands under `xargs -P 32`. Also the peak memory of the `fwu`
//! process, and how it changes when the images are 2 MiB instead of 8 MiB.
//!
//! One lab serves all four runs: `fwu` upgrades every device from
//! 23.05.3 to 24.10.0 (8 MiB), then to 22.03.6 (2 MiB), the shell loop
//! flashes 24.10.0 again, and a careful shell loop, one that also makes
//! `fwu`'s checks, flashes it once more. The catalogue is filled through the engine, as
//! `fwu device add` and a first probe would fill it, so that the timed
//! runs are the batches alone.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use fwu_engine::actions::Engine;
use fwu_engine::catalogue::{DeviceAuth, NewDevice, Probe};
use fwu_engine::settings::Settings;
use fwu_engine::vault::Vault;
use fwu_lab::{DeviceSpec, Lab, SampleImage};

use crate::openssh::OpenSsh;
use crate::phases::{self, Phases};
use crate::report::{Row, Table, Target};
use crate::upload::Link;

/// The board of every fleet device.
const BOARD: &str = "tplink,archer-c7-v5";
/// How long a device is down while it flashes and reboots.
const REBOOT: Duration = Duration::from_secs(5);
/// The reconnect delay and retry delay `fwu` is given, in seconds; the
/// shell loop waits the same.
const DELAY_SECONDS: u64 = 1;
/// The longest one run may take before the benchmark gives up on it.
const RUN_LIMIT: Duration = Duration::from_secs(300);
/// How many times the shell loop asks a device for its boot id after
/// flashing before it gives up.
const POLLS: u32 = 30;

/// The fleet figure's settings.
pub struct Fleet {
    /// The `fwu` binary to run.
    pub fwu: PathBuf,
    /// Lab devices.
    pub devices: usize,
    /// Operations at once.
    pub concurrency: usize,
    /// Whether to keep the fleet's folder when done.
    pub keep: bool,
}

/// One timed run of `fwu batch start`.
struct BatchRun {
    /// Where each device's time went.
    phases: Phases,
    /// From start to exit.
    wall: Duration,
    /// Peak resident memory of the `fwu` process, in KiB.
    peak_kib: u64,
    /// CPU time of the `fwu` process, user and system.
    cpu: Duration,
}

impl Fleet {
    /// Measures the fleet figure and adds its rows to `table`.
    pub async fn run(&self, link: &Link, table: &mut Table) -> anyhow::Result<()> {
        println!(
            "fleet: {} lab devices, reboot {} s, concurrency {}",
            self.devices,
            REBOOT.as_secs(),
            self.concurrency
        );
        let dir = tempfile::Builder::new()
            .prefix("fwu-bench-fleet-")
            .tempdir()?;
        let openssh = OpenSsh::new(dir.path())?;
        let specs = (1..=self.devices)
            .map(|n| {
                let mut spec = DeviceSpec::new(&format!("ap{n:03}"), BOARD, "23.05.3");
                spec.authorized_keys = vec![openssh.public.clone()];
                spec.reboot_time = REBOOT;
                spec
            })
            .collect();
        // The devices' files live in RAM where the machine has /dev/shm,
        // as a real device's /tmp does: on this machine's disk, the
        // uploads of 32 devices at once would be disk writes that every
        // fsync of our catalogue (on disk, as a user's is) waits behind,
        // a cost no real device puts on the machine running the tool.
        let lab_dir = crate::ram_dir("fwu-bench-lab-")?;
        let started = Instant::now();
        let lab = Lab::start(lab_dir.path(), specs).await?;
        println!(
            "  lab of {} devices up in {:.1} s",
            self.devices,
            started.elapsed().as_secs_f64()
        );
        let measured = self.measure(&lab, &openssh, dir.path(), link).await;
        lab.stop().await;
        if self.keep {
            println!("  kept {}", dir.keep().display());
        }
        for row in measured? {
            table.add(row);
        }
        Ok(())
    }

    /// Runs both batches and the shell loop on the started lab; returns
    /// the figure's rows.
    async fn measure(
        &self,
        lab: &Lab,
        openssh: &OpenSsh,
        dir: &Path,
        link: &Link,
    ) -> anyhow::Result<Vec<Row>> {
        openssh.know(lab.devices())?;
        let data_dir = dir.join("data");
        let big = sample(dir, "24.10.0", 8 << 20)?;
        let small = sample(dir, "22.03.6", 2 << 20)?;
        fill_catalogue(
            &data_dir,
            lab,
            &openssh.key,
            &[("24.10.0", &big), ("22.03.6", &small)],
        )?;

        let eight = self.batch(&data_dir, "24.10.0").await?;
        check_flashed(lab, 1, "24.10.0")?;
        println!(
            "  fwu, 8 MiB images: {:.1} s, peak {} MiB, {:.1} s of CPU",
            eight.wall.as_secs_f64(),
            eight.peak_kib >> 10,
            eight.cpu.as_secs_f64()
        );
        let two = self.batch(&data_dir, "22.03.6").await?;
        check_flashed(lab, 2, "22.03.6")?;
        println!(
            "  fwu, 2 MiB images: {:.1} s, peak {} MiB, {:.1} s of CPU",
            two.wall.as_secs_f64(),
            two.peak_kib >> 10,
            two.cpu.as_secs_f64()
        );
        let (shell, shell_cpu, shell_phases) =
            self.shell_loop(lab, openssh, dir, &big, false).await?;
        check_flashed(lab, 3, "24.10.0")?;
        println!(
            "  shell loop, 8 MiB images: {:.1} s, {:.1} s of CPU (ssh clients and shells)",
            shell.as_secs_f64(),
            shell_cpu.as_secs_f64()
        );
        let (careful, careful_cpu, _) = self.shell_loop(lab, openssh, dir, &big, true).await?;
        check_flashed(lab, 4, "24.10.0")?;
        println!(
            "  careful shell loop (fwu's checks too), 8 MiB images: {:.1} s, {:.1} s of CPU",
            careful.as_secs_f64(),
            careful_cpu.as_secs_f64()
        );
        phases::print(
            &eight.phases,
            &shell_phases,
            (eight.wall.as_secs_f64(), shell.as_secs_f64()),
            self.concurrency,
        );

        let ideal = self.ideal(link, 8 << 20);
        println!(
            "  ideal: {} waves x ({} x 8 MiB at {:.0} MiB/s + {} s reboot + {:.2} s \
             reconnect) = {:.1} s",
            self.waves(),
            self.concurrency.min(self.devices),
            link.bytes_per_second / f64::from(1 << 20),
            REBOOT.as_secs(),
            link.round_trip.as_secs_f64(),
            ideal.as_secs_f64()
        );
        let bound = self.lower_bound(link, 8 << 20);
        println!(
            "  lower bound: the larger of the link's work ({} x 8 MiB at {:.0} MiB/s) and \
             {} devices in a row on one slot, each alone on the link = {:.1} s",
            self.devices,
            link.bytes_per_second / f64::from(1 << 20),
            self.waves(),
            bound.as_secs_f64()
        );
        let seconds = |took: Duration| took.as_secs_f64();
        let mib = |kib: u64| kib as f64 / 1024.0;
        let in_flight = self.concurrency.min(self.devices);
        Ok(vec![
            Row {
                figure: format!("fleet: {} devices, 8 MiB, wall time", self.devices),
                ours: seconds(eight.wall),
                reference: seconds(ideal),
                reference_name: "ideal".to_string(),
                unit: "s",
                target: Target::AtMost(1.15),
            },
            Row {
                figure: format!("fleet: {} devices, 8 MiB, wall time", self.devices),
                ours: seconds(eight.wall),
                reference: seconds(shell),
                reference_name: format!("ssh shell loop, xargs -P {}", self.concurrency),
                unit: "s",
                target: Target::AtMost(1.0),
            },
            Row {
                figure: format!("fleet: {} devices, 8 MiB, wall time", self.devices),
                ours: seconds(eight.wall),
                reference: seconds(careful),
                reference_name: "shell loop with fwu's checks".to_string(),
                unit: "s",
                target: Target::None,
            },
            Row {
                figure: format!("fleet: {} devices, 8 MiB, wall time", self.devices),
                ours: seconds(eight.wall),
                reference: seconds(bound),
                reference_name: "lower bound".to_string(),
                unit: "s",
                target: Target::None,
            },
            Row {
                figure: "fleet: peak memory of fwu, 8 MiB".to_string(),
                ours: mib(eight.peak_kib),
                reference: 150.0,
                reference_name: "the limit".to_string(),
                unit: "MiB",
                target: Target::AtMost(1.0),
            },
            Row {
                // Were images held in memory per device, 8 MiB images
                // would cost 6 MiB more than 2 MiB ones for every device
                // in flight. What they
                // add must stay under a tenth of that. (A plain ratio of
                // the two peaks moves with how many uploads overlap,
                // which grows with the image's length while every upload
                // holds the same few buffers; it is printed below.)
                figure: "fleet: memory 8 MiB images add over 2 MiB".to_string(),
                ours: mib(eight.peak_kib) - mib(two.peak_kib),
                reference: (in_flight * 6) as f64,
                reference_name: format!("{in_flight} images of 6 MiB more held in memory"),
                unit: "MiB",
                target: Target::AtMost(0.1),
            },
            Row {
                figure: "fleet: peak memory, 8 MiB images against 2 MiB".to_string(),
                ours: mib(eight.peak_kib),
                reference: mib(two.peak_kib),
                reference_name: "fwu with 2 MiB images".to_string(),
                unit: "MiB",
                target: Target::None,
            },
        ])
    }

    /// How many rounds of `concurrency` devices the fleet takes.
    fn waves(&self) -> usize {
        self.devices.div_ceil(self.concurrency.max(1))
    }

    /// The shortest wall time the lab allows: every wave uploads its images
    /// at the link's rate (the machine's two cores are the link, shared by
    /// the wave's streams), then waits out the reboot, then needs one SSH
    /// round trip to see the device back.
    fn ideal(&self, link: &Link, image: u64) -> Duration {
        let wave = self.concurrency.min(self.devices) as f64;
        let upload = wave * image as f64 / link.bytes_per_second;
        let per_wave = upload + REBOOT.as_secs_f64() + link.round_trip.as_secs_f64();
        Duration::from_secs_f64(self.waves() as f64 * per_wave)
    }

    /// A bound no schedule can beat, stricter than [`Fleet::ideal`]: the
    /// link must carry every image, and some slot must take
    /// ⌈devices / concurrency⌉ devices one after the other, each at best
    /// alone on the link, then rebooting, then answering.
    fn lower_bound(&self, link: &Link, image: u64) -> Duration {
        let link_work = self.devices as f64 * image as f64 / link.bytes_per_second;
        let one = image as f64 / link.bytes_per_second
            + REBOOT.as_secs_f64()
            + link.round_trip.as_secs_f64();
        Duration::from_secs_f64(link_work.max(self.waves() as f64 * one))
    }

    /// Runs `fwu batch start WiFi VERSION` and waits for its end, taking its
    /// peak resident memory from the kernel's accounting of the child.
    async fn batch(&self, data_dir: &Path, version: &str) -> anyhow::Result<BatchRun> {
        let concurrency = self.concurrency.to_string();
        let mut command = Command::new(&self.fwu);
        command
            .arg("--data-dir")
            .arg(data_dir)
            .args([
                "--json",
                "batch",
                "start",
                "WiFi",
                version,
                "--firmwareless",
            ])
            .args(["--concurrency", &concurrency])
            .env("FWU_KEYRING_SERVICE", "fwu-bench")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let fwu = self.fwu.clone();
        let ran = tokio::task::spawn_blocking(move || wait_with_rusage(command, RUN_LIMIT))
            .await
            .expect("waiting for fwu panicked")
            .with_context(|| format!("running {}", fwu.display()))?;
        anyhow::ensure!(
            ran.code == Some(0),
            "fwu batch start {version} ended with {:?}:\n{}\n{}",
            ran.code,
            ran.stdout,
            ran.stderr
        );
        let summary: serde_json::Value = serde_json::from_str(&ran.stdout)
            .with_context(|| format!("fwu printed no JSON summary: {}", ran.stdout))?;
        anyhow::ensure!(
            summary["success"] == self.devices,
            "not every device was upgraded to {version}: {summary}"
        );
        Ok(BatchRun {
            phases: phases::of_batch(data_dir)?,
            wall: ran.wall,
            peak_kib: ran.peak_kib,
            cpu: ran.cpu,
        })
    }

    /// The reference: a shell script per device, 32 at a time with
    /// `xargs -P`, doing what an admin's loop does with OpenSSH. Returns
    /// its wall time, the CPU time of all its processes and where each
    /// device's time went.
    async fn shell_loop(
        &self,
        lab: &Lab,
        openssh: &OpenSsh,
        dir: &Path,
        image: &Path,
        careful: bool,
    ) -> anyhow::Result<(Duration, Duration, Phases)> {
        let script = dir.join("upgrade-one.sh");
        std::fs::write(&script, SHELL_LOOP)?;
        let hosts: String = lab
            .devices()
            .iter()
            .map(|device| format!("{}\n", device.address()))
            .collect();
        let hosts_file = dir.join("hosts");
        std::fs::write(&hosts_file, hosts)?;
        let sha256 = fwu_engine::image::inspect_file(image, None)?.sha256;
        let mut command = Command::new("xargs");
        command
            .args(["-P", &self.concurrency.to_string(), "-n", "1", "sh"])
            .arg(&script)
            .stdin(Stdio::from(std::fs::File::open(&hosts_file)?))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env("SSH_OPTIONS", shell_words(&openssh.options()))
            .env("IMAGE", image)
            .env("SHA256", &sha256)
            .env("BOARD", BOARD)
            .env("CAREFUL", if careful { "1" } else { "0" })
            .env("DELAY", DELAY_SECONDS.to_string())
            .env("POLLS", POLLS.to_string());
        let ran = tokio::task::spawn_blocking(move || wait_with_rusage(command, RUN_LIMIT))
            .await
            .expect("waiting for the shell loop panicked")?;
        let upgraded = ran
            .stdout
            .lines()
            .filter(|line| line.ends_with(" upgraded"))
            .count();
        anyhow::ensure!(
            upgraded == self.devices,
            "the shell loop upgraded {upgraded} of {} devices:\n{}\n{}",
            self.devices,
            ran.stdout,
            ran.stderr
        );
        Ok((ran.wall, ran.cpu, phases::of_shell_loop(&ran.stdout)?))
    }
}

/// What one device goes through in the reference loop: upload with
/// `cat >`, compare the sha256, note the boot id, sysupgrade, wait, then
/// poll until the boot id changes. Each step is its own SSH connection, as
/// in the scripts people write. The `mark` lines (one `date` each, a
/// millisecond or so) give the phases [`phases::of_shell_loop`] reads.
///
/// With `CAREFUL=1` it also makes the checks the design asks of every
/// upgrade and `fwu` makes: the board and the free memory before the
/// upload (one command, as `fwu` reads them), `sysupgrade --test` before
/// the flash, and the checksum file written once the device is back. That
/// loop is not a target: it shows what the plain loop's speed costs.
const SHELL_LOOP: &str = r#"#!/bin/sh
# One device of the reference loop; the address is $1.
host=$1
s() { eval "ssh $SSH_OPTIONS root@$host \"\$@\""; }
mark() { echo "$host $1 $(date +%s.%N)"; }
mark start
if [ "$CAREFUL" = 1 ]; then
	s 'ubus call system board; cat /proc/meminfo' | grep -q "$BOARD" || { echo "$host wrong board"; exit 1; }
fi
s 'cat > /tmp/firmware.bin' < "$IMAGE" || { echo "$host upload failed"; exit 1; }
mark uploaded
set -- $(s 'sha256sum /tmp/firmware.bin; cat /proc/sys/kernel/random/boot_id')
[ "$1" = "$SHA256" ] || { echo "$host checksum mismatch"; exit 1; }
boot=$3
if [ "$CAREFUL" = 1 ]; then
	s 'sysupgrade --test /tmp/firmware.bin' > /dev/null 2>&1 || { echo "$host image refused"; exit 1; }
fi
mark flashing
s 'sysupgrade /tmp/firmware.bin' > /dev/null 2>&1
mark flashed
sleep "$DELAY"
tries=0
while [ "$tries" -lt "$POLLS" ]; do
	now=$(s 'cat /proc/sys/kernel/random/boot_id' 2> /dev/null)
	if [ -n "$now" ] && [ "$now" != "$boot" ]; then
		if [ "$CAREFUL" = 1 ]; then
			s "mkdir -p /etc/openwisp && echo $SHA256 > /etc/openwisp/firmware_checksum"
		fi
		mark back
		echo "$host upgraded"
		exit 0
	fi
	tries=$((tries + 1))
	sleep "$DELAY"
done
echo "$host did not come back"
exit 1
"#;

/// Quotes words for `sh`.
fn shell_words(words: &[String]) -> String {
    words
        .iter()
        .map(|word| format!("'{}'", word.replace('\'', r"'\''")))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Writes a sample image of `version` for the fleet's board, `size` bytes.
fn sample(dir: &Path, version: &str, size: u64) -> anyhow::Result<PathBuf> {
    let board = fwu_lab::board(BOARD).context("the lab knows the fleet's board")?;
    let release = fwu_lab::release(version).context("the lab knows the release")?;
    let mut image = SampleImage::new(board, &release);
    image.size = size;
    let path = dir.join(fwu_lab::sample_image_name(board, &image.release));
    fwu_lab::write_sample_image(&path, &image)?;
    Ok(path)
}

/// Fills the catalogue as a user would with `fwu`: the builds and their
/// images, every device with the key and its pinned host key, and what a
/// first probe reads (board and release); the settings get the short
/// delays of a lab.
fn fill_catalogue(
    data_dir: &Path,
    lab: &Lab,
    key: &Path,
    images: &[(&str, &Path)],
) -> anyhow::Result<()> {
    let engine = Engine::open(data_dir, Vault::with_service("fwu-bench"))?;
    engine.catalogue.add_category("WiFi", "")?;
    for (version, image) in images {
        engine.catalogue.add_build("WiFi", version, None, "")?;
        engine.import_image("WiFi", version, image, None)?;
    }
    let devices: Vec<(NewDevice, String)> = lab
        .devices()
        .iter()
        .map(|device| {
            let new = NewDevice {
                name: device.name().to_string(),
                host: device.address().to_string(),
                alternate_hosts: vec![device.alternate_address().to_string()],
                port: device.port(),
                user: device.user().to_string(),
                auth: DeviceAuth::Key {
                    key_file: key.display().to_string(),
                    credential: None,
                },
                site: None,
                tags: Vec::new(),
            };
            (new, device.host_key())
        })
        .collect();
    let added = engine.catalogue.add_pinned_devices(&devices)?;
    for (device, lab_device) in added.iter().zip(lab.devices()) {
        let state = lab_device.state();
        let probe = Probe {
            board: Some(BOARD.to_string()),
            model: Some("TP-Link Archer C7 v5".to_string()),
            os_identifier: Some(state.release.os_identifier()),
            mac: None,
            boot_id: Some(state.boot_id),
            uptime: Some(1),
        };
        engine.catalogue.record_probe(device.id, &probe)?;
    }
    let delay = DELAY_SECONDS.to_string();
    for (key, value) in [
        ("openwrt.reconnect_delay", delay.as_str()),
        ("openwrt.retry_delay", delay.as_str()),
        ("retry.backoff", "1"),
        ("retry.backoff_cap", "2"),
        ("ssh.connect_timeout", "5"),
    ] {
        Settings::set(data_dir, key, value)?;
    }
    Ok(())
}

/// Fails unless every lab device has flashed `count` times and runs
/// `version`: what happened on the devices, not what a tool says.
fn check_flashed(lab: &Lab, count: u32, version: &str) -> anyhow::Result<()> {
    for device in lab.devices() {
        let state = device.state();
        anyhow::ensure!(
            state.flash_count == count && state.release.version == version,
            "{} flashed {} times and runs {}, not {count} times and {version}",
            device.name(),
            state.flash_count,
            state.release.version
        );
    }
    Ok(())
}

/// How a child process ended.
struct Ran {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    wall: Duration,
    /// Its peak resident set, in KiB.
    peak_kib: u64,
    /// CPU time, user and system, of it and the children it waited for.
    cpu: Duration,
}

/// Runs `command`, reading its output, and reaps it with `wait4` to get
/// its peak memory; kills it if it runs past `limit`.
fn wait_with_rusage(mut command: Command, limit: Duration) -> anyhow::Result<Ran> {
    use std::io::Read;

    let started = Instant::now();
    let mut child = command.spawn()?;
    let pid = child.id() as libc::pid_t;
    let mut stdout = child.stdout.take().context("a piped standard output")?;
    let mut stderr = child.stderr.take().context("a piped standard error")?;
    let out = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let err = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let mut status = 0;
    let mut high_water_kib = 0;
    // SAFETY: rusage is plain data the kernel fills in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: pid is our own child, not yet reaped; status and usage
        // are valid for writing.
        let reaped = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
        if reaped == pid {
            break;
        }
        anyhow::ensure!(
            reaped == 0,
            "wait4 failed: {}",
            std::io::Error::last_os_error()
        );
        if started.elapsed() > limit {
            let _ = child.kill();
            anyhow::bail!("{command:?} ran past {limit:?} and was killed");
        }
        high_water_kib = high_water_kib.max(high_water(pid).unwrap_or(0));
        std::thread::sleep(Duration::from_millis(20));
    }
    let wall = started.elapsed();
    let code = libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
    Ok(Ran {
        code,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
        wall,
        // ru_maxrss is no good here: Linux starts a child's at the RSS of
        // the process it was forked from, this benchmark, which is larger
        // than fwu's own after the import figure. The kernel's high-water
        // mark of fwu's own memory, read while it runs, is fwu's alone; it
        // misses at most the last 20 ms.
        peak_kib: if high_water_kib > 0 {
            high_water_kib
        } else {
            usage.ru_maxrss as u64
        },
        cpu: cpu_time(&usage),
    })
}

/// The peak resident memory of a running process (`VmHWM`), in KiB.
fn high_water(pid: libc::pid_t) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// User and system time of an rusage.
fn cpu_time(usage: &libc::rusage) -> Duration {
    let time = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    time(usage.ru_utime) + time(usage.ru_stime)
}
