//! The bench every end-to-end upgrade test stands on: a lab of simulated
//! devices, a fresh data directory and keyring service, and the real `fwu`
//! binary driven as a user or a script would drive it.
//!
//! Tests speak to the product only through `fwu` (its exit status and its
//! `--json` records) and look at the devices only from the lab's side
//! ([`fwu_lab::Device::state`] and the device's files on the host), so what
//! they check is what a user would see and what really happened on the
//! device.
//!
//! `fwu` is not built by `cargo test -p fwu-e2e` (it belongs to another
//! package): build it first with `cargo build --workspace --bins`, or point
//! `FWU_BIN` at one. Password logins need a Secret Service; run the tests
//! under `.ci/with-session`.

// Each test file compiles this module on its own and uses only part of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use fwu_lab::{Device, DeviceSpec, DeviceState, Lab};
use serde_json::Value;
use tempfile::TempDir;
use tokio::io::AsyncWriteExt;
use tokio::process::{Child, Command};

/// The board of the TP-Link Archer C7 v5, the fixtures' main device.
pub const ARCHER: &str = "tplink,archer-c7-v5";
/// The board of the Ubiquiti UniFi AC Lite.
pub const UNIFI: &str = "ubnt,unifi-ac-lite";
/// The upgrade target for an Archer C7 running 23.05.3.
pub const ARCHER_24: &str =
    "openwrt-24.10.0-ath79-generic-tplink_archer-c7-v5-squashfs-sysupgrade.bin";
/// A 24.10.0 image for the UniFi AC Lite whose compat version is 2.0.
pub const UNIFI_24: &str =
    "openwrt-24.10.0-ath79-generic-ubnt_unifi-ac-lite-squashfs-sysupgrade.bin";
/// The OS identifier of 24.10.0, as devices running it report it.
pub const OPENWRT_24: &str = "OpenWrt 24.10.0 r28427-6df0e3d02a";
/// The OS identifier of 23.05.3.
pub const OPENWRT_23: &str = "OpenWrt 23.05.3 r23809-234f1a2efa";
/// The non-critical services a lab device runs unless its spec says
/// otherwise, in the order `state().running_services` lists them.
pub const SERVICES: [&str; 4] = ["uhttpd", "dnsmasq", "odhcpd", "collectd"];
/// The lab's root password.
pub const LAB_PASSWORD: &str = "lab";

/// The longest any one `fwu` run may take before the test fails: far above
/// what the short timings need, so that only a hang reaches it.
const FWU_TIME_LIMIT: Duration = Duration::from_secs(300);

/// Keeps keyring services of tests in one process apart.
static NEXT_SERVICE: AtomicU32 = AtomicU32::new(0);

/// The `fwu` binary: `FWU_BIN`, else the one beside this test's own
/// directory (`target/debug/fwu` for `target/debug/deps/upgrade-…`).
pub fn fwu_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("FWU_BIN").filter(|path| !path.is_empty()) {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "FWU_BIN is {}, which is no file; build it first: cargo build --workspace --bins",
            path.display()
        );
        return path;
    }
    let test_exe = std::env::current_exe().expect("the test knows its own path");
    let path = test_exe
        .parent()
        .and_then(Path::parent)
        .expect("the test executable lies in target/<profile>/deps")
        .join("fwu");
    assert!(
        path.is_file(),
        "{} is missing; build it first: cargo build --workspace --bins (or set FWU_BIN)",
        path.display()
    );
    path
}

/// A fixture image from `shared/fixtures/images`.
pub fn fixture(name: &str) -> PathBuf {
    let dir = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/fixtures/images"
    );
    let path = Path::new(dir).join(name);
    assert!(path.is_file(), "fixture {} is missing", path.display());
    path
}

/// The sha256 the fixtures' manifest gives for an image, read from the
/// manifest rather than computed, so that the product is checked against
/// a reference and not against itself.
pub fn fixture_sha256(name: &str) -> String {
    let manifest = std::fs::read_to_string(fixture("manifest.json")).expect("the manifest");
    let manifest: Value = serde_json::from_str(&manifest).expect("the manifest is JSON");
    manifest[name]["sha256"]
        .as_str()
        .unwrap_or_else(|| panic!("the manifest has no sha256 for {name}"))
        .to_string()
}

/// A spec for an Archer C7 running 23.05.3 that reboots in one second.
pub fn archer(name: &str) -> DeviceSpec {
    let mut spec = DeviceSpec::new(name, ARCHER, "23.05.3");
    spec.reboot_time = Duration::from_secs(1);
    spec
}

/// Makes an ed25519 key pair without passphrase with OpenSSH's
/// `ssh-keygen`; returns the private key's path and the public key line.
pub fn make_key(dir: &Path, name: &str) -> (PathBuf, String) {
    let path = dir.join(name);
    let made = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "fwu-e2e", "-f"])
        .arg(&path)
        .status()
        .expect("ssh-keygen runs (install openssh-client)");
    assert!(made.success(), "ssh-keygen could not make a key");
    let public = std::fs::read_to_string(path.with_extension("pub")).expect("the public key");
    (path, public.trim().to_string())
}

/// The fingerprint OpenSSH's `ssh-keygen -l` gives a public key line.
pub fn openssh_fingerprint(dir: &Path, public_key: &str) -> String {
    let file = dir.join("fingerprint-input.pub");
    std::fs::write(&file, format!("{public_key}\n")).expect("write a public key");
    let listed = std::process::Command::new("ssh-keygen")
        .arg("-lf")
        .arg(&file)
        .output()
        .expect("ssh-keygen runs");
    assert!(listed.status.success(), "ssh-keygen -l failed");
    String::from_utf8(listed.stdout)
        .expect("utf-8")
        .split_whitespace()
        .nth(1)
        .expect("a fingerprint field")
        .to_string()
}

/// How a device logs in.
pub enum Login<'a> {
    /// A password, given on standard input; it goes to the keyring.
    Password(&'a str),
    /// A private key file.
    Key(&'a Path),
}

/// One finished run of `fwu`.
#[derive(Debug)]
pub struct Run {
    /// The exit status; none when a signal ended it.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Standard output as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|error| {
            panic!("fwu printed no JSON ({error}):\n{self}");
        })
    }

    /// Panics, showing the run, unless it exited with `code`.
    pub fn expect_code(&self, code: i32) -> &Run {
        assert_eq!(self.code, Some(code), "unexpected exit status:\n{self}");
        self
    }
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit status {:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// The record `fwu --json upgrade` (or `operation show`) printed, with the
/// exit status: what a script sees of an upgrade operation.
#[derive(Debug)]
pub struct Verdict {
    pub run: Run,
    pub record: Value,
}

impl Verdict {
    /// Reads the record a finished `fwu --json upgrade` printed.
    pub fn from_run(run: Run) -> Verdict {
        let record = run.json();
        Verdict { run, record }
    }

    /// The operation's id.
    pub fn id(&self) -> i64 {
        self.record["id"].as_i64().expect("the record has an id")
    }

    /// The operation's status.
    pub fn status(&self) -> &str {
        self.record["status"]
            .as_str()
            .expect("the record has a status")
    }

    /// The operation's log lines, oldest first.
    pub fn log(&self) -> Vec<&str> {
        self.record["log"]
            .as_array()
            .expect("the record has a log")
            .iter()
            .map(|entry| entry["line"].as_str().expect("a log line has its text"))
            .collect()
    }

    /// The operation's log as one text, for messages.
    fn log_text(&self) -> String {
        self.log().join("\n")
    }

    /// Panics, showing the log, unless the operation ended with `status`
    /// and `fwu` with exit status `code`.
    pub fn expect(&self, status: &str, code: i32) -> &Verdict {
        assert_eq!(
            (self.status(), self.run.code),
            (status, Some(code)),
            "unexpected verdict; the log:\n{}\n--- stderr\n{}",
            self.log_text(),
            self.run.stderr
        );
        self
    }

    /// Panics unless a log line contains every one of `parts`.
    pub fn expect_line(&self, parts: &[&str]) -> &Verdict {
        let found = self
            .log()
            .iter()
            .any(|line| parts.iter().all(|part| line.contains(part)));
        assert!(
            found,
            "no log line contains all of {parts:?}; the log:\n{}",
            self.log_text()
        );
        self
    }

    /// Panics if a log line contains `part`.
    pub fn expect_no_line(&self, part: &str) -> &Verdict {
        let found = self.log().into_iter().find(|line| line.contains(part));
        assert!(
            found.is_none(),
            "a log line contains {part:?}: {found:?}; the log:\n{}",
            self.log_text()
        );
        self
    }

    /// The last log line: the one that explains the verdict.
    pub fn last_line(&self) -> &str {
        self.log().last().copied().unwrap_or("")
    }
}

/// A lab, a data directory and a keyring service of one test. Dropping it
/// without [`Bench::stop`] (a failed test) still ends the lab's sandboxes.
pub struct Bench {
    lab: Lab,
    dir: TempDir,
    data_dir: PathBuf,
    keyring_service: String,
}

impl Bench {
    /// Starts the lab's devices and prepares an empty catalogue with short
    /// timings: a lab device reboots in a second or two, and a test must
    /// not wait the design's minutes.
    pub async fn start(specs: Vec<DeviceSpec>) -> Bench {
        let dir = tempfile::Builder::new()
            .prefix("fwu-e2e-")
            .tempdir()
            .expect("a temporary directory");
        let lab = Lab::start(&dir.path().join("lab"), specs)
            .await
            .unwrap_or_else(|error| panic!("the lab does not start: {error}"));
        let keyring_service = format!(
            "fwu-test-{}-{}",
            std::process::id(),
            NEXT_SERVICE.fetch_add(1, Ordering::Relaxed)
        );
        let bench = Bench {
            lab,
            data_dir: dir.path().join("data"),
            dir,
            keyring_service,
        };
        for (key, value) in [
            ("openwrt.reconnect_delay", "1"),
            ("openwrt.retry_delay", "1"),
            ("retry.backoff", "1"),
            ("retry.backoff_cap", "2"),
            ("ssh.connect_timeout", "10"),
        ] {
            bench.set(key, value).await;
        }
        bench
    }

    /// The lab of this test.
    pub fn lab(&self) -> &Lab {
        &self.lab
    }

    /// The lab device called `name`.
    pub fn device(&self, name: &str) -> &Device {
        self.lab.device(name)
    }

    /// A path in the test's own directory, outside the lab's and the data
    /// directory.
    pub fn scratch(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Where a device's file lies on the host. Only `/etc`, `/root` and
    /// `/tmp` are the device's own; `/tmp` is emptied at every boot.
    pub fn device_file(&self, device: &str, path: &str) -> PathBuf {
        let root = self
            .device(device)
            .state_dir()
            .parent()
            .expect("a device's state directory lies in its own directory")
            .to_path_buf();
        let relative = path
            .strip_prefix('/')
            .unwrap_or_else(|| panic!("{path} is not absolute"));
        assert!(
            ["etc/", "root/", "tmp/"]
                .iter()
                .any(|top| relative.starts_with(top)),
            "{path} is not one of the device's own files"
        );
        root.join(relative)
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(fwu_bin());
        command
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(args)
            .env("FWU_KEYRING_SERVICE", &self.keyring_service)
            .env_remove("FWU_DATA_DIR")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        command
    }

    /// Runs `fwu ARGS` to its end.
    pub async fn fwu(&self, args: &[&str]) -> Run {
        self.fwu_with_input(args, None).await
    }

    /// Runs `fwu ARGS` with `input` on standard input.
    pub async fn fwu_with_input(&self, args: &[&str], input: Option<&str>) -> Run {
        let mut command = self.command(args);
        command.stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
        let mut child = command.spawn().expect("fwu starts");
        if let Some(input) = input {
            let mut stdin = child.stdin.take().expect("a piped standard input");
            stdin
                .write_all(input.as_bytes())
                .await
                .expect("fwu reads its input");
        }
        finish(child, args).await
    }

    /// Starts `fwu ARGS` and leaves it running.
    pub fn spawn_fwu(&self, args: &[&str]) -> Child {
        self.command(args)
            .stdin(Stdio::null())
            .spawn()
            .expect("fwu starts")
    }

    /// Waits for a started `fwu` to end.
    pub async fn wait_fwu(&self, child: Child, args: &[&str]) -> Run {
        finish(child, args).await
    }

    /// Changes a setting, checking that `fwu` took it.
    pub async fn set(&self, key: &str, value: &str) {
        self.fwu(&["settings", "set", key, value])
            .await
            .expect_code(0);
    }

    /// Adds the category (if new) and the build (if new) and imports an
    /// image file into the build; returns the image's id.
    pub async fn import(&self, category: &str, version: &str, file: &Path) -> i64 {
        let categories = self.fwu(&["--json", "category", "list"]).await.json();
        let known = |list: &Value, field: &str, value: &str| {
            list.as_array()
                .expect("a list")
                .iter()
                .any(|item| item[field] == value)
        };
        if !known(&categories, "name", category) {
            self.fwu(&["category", "add", category])
                .await
                .expect_code(0);
        }
        let builds = self
            .fwu(&["--json", "build", "list", category])
            .await
            .json();
        if !known(&builds, "version", version) {
            self.fwu(&["build", "add", category, version])
                .await
                .expect_code(0);
        }
        let file = file.to_str().expect("a UTF-8 path");
        let image = self
            .fwu(&["--json", "image", "import", category, version, file])
            .await;
        image.expect_code(0);
        image.json()["id"].as_i64().expect("an image id")
    }

    /// Adds lab device `lab_name` to the catalogue as `name`, on its main
    /// address and its alternate one.
    pub async fn add_device(&self, name: &str, lab_name: &str, login: Login<'_>) {
        let device = self.device(lab_name);
        let host = device.address().to_string();
        let alternate = device.alternate_address().to_string();
        let mut args = vec![
            "device",
            "add",
            name,
            "--host",
            &host,
            "--alt-host",
            &alternate,
        ];
        let key_path;
        let input = match login {
            Login::Password(password) => {
                args.push("--password-stdin");
                Some(format!("{password}\n"))
            }
            Login::Key(path) => {
                key_path = path.to_str().expect("a UTF-8 path").to_string();
                args.extend(["--key", key_path.as_str()]);
                None
            }
        };
        let run = self.fwu_with_input(&args, input.as_deref()).await;
        assert_eq!(
            run.code,
            Some(0),
            "adding device {name} failed (password logins need a Secret Service: run the \
             tests under .ci/with-session):\n{run}"
        );
    }

    /// Adds the device and pins its host key with a first probe, as a
    /// user does after checking the fingerprint; returns the probe record.
    pub async fn add_and_probe(&self, name: &str, lab_name: &str, login: Login<'_>) -> Value {
        self.add_device(name, lab_name, login).await;
        let probe = self
            .fwu(&["--json", "device", "probe", name, "--accept-new-host-key"])
            .await;
        probe.expect_code(0);
        probe.json()
    }

    /// Runs `fwu --json upgrade DEVICE ARGS` to its verdict.
    pub async fn upgrade(&self, device: &str, args: &[&str]) -> Verdict {
        let mut all = vec!["--json", "upgrade", device];
        all.extend_from_slice(args);
        Verdict::from_run(self.fwu(&all).await)
    }

    /// Runs the upgrade while sampling lab device `lab_name` every 50 ms;
    /// returns the verdict and what the samples saw, so that a test can
    /// tell what happened on the device while the operation ran.
    pub async fn upgrade_sampling(
        &self,
        device: &str,
        args: &[&str],
        lab_name: &str,
    ) -> (Verdict, Vec<DeviceState>) {
        let mut all = vec!["--json", "upgrade", device];
        all.extend_from_slice(args);
        let upgrade = finish(self.spawn_fwu(&all), &all);
        tokio::pin!(upgrade);
        let lab_device = self.device(lab_name);
        let mut samples = Vec::new();
        loop {
            tokio::select! {
                run = &mut upgrade => return (Verdict::from_run(run), samples),
                _ = tokio::time::sleep(Duration::from_millis(50)) => {
                    samples.push(lab_device.state());
                }
            }
        }
    }

    /// `fwu --json operation show ID`.
    pub async fn operation(&self, id: i64) -> Verdict {
        let id = id.to_string();
        Verdict::from_run(self.fwu(&["--json", "operation", "show", &id]).await)
    }

    /// Polls `fwu --json operation list` until an operation satisfies
    /// `ready`, for at most `limit`; returns that operation.
    pub async fn wait_for_operation(
        &self,
        limit: Duration,
        ready: impl Fn(&Value) -> bool,
    ) -> Value {
        let started = Instant::now();
        let mut last = Value::Null;
        while started.elapsed() < limit {
            let run = self.fwu(&["--json", "operation", "list"]).await;
            if run.code == Some(0) {
                last = run.json();
                let found = last
                    .as_array()
                    .and_then(|all| all.iter().find(|operation| ready(operation)));
                if let Some(operation) = found {
                    return operation.clone();
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("no operation got there within {limit:?}; the last listing:\n{last:#}");
    }

    /// Starts the device of `spec` as ap1, adds it with its password and
    /// imports the 24.10.0 image for it.
    pub async fn with_ap1(spec: DeviceSpec) -> Bench {
        let bench = Bench::start(vec![spec]).await;
        bench
            .add_device("ap1", "ap1", Login::Password(LAB_PASSWORD))
            .await;
        bench.import("WiFi", "24.10.0", &fixture(ARCHER_24)).await;
        bench
    }

    /// Stops the lab and removes the test's files.
    pub async fn stop(self) {
        self.lab.stop().await;
    }
}

/// Waits for `fwu` to end, within [`FWU_TIME_LIMIT`].
async fn finish(child: Child, args: &[&str]) -> Run {
    let output = tokio::time::timeout(FWU_TIME_LIMIT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("fwu {args:?} did not end within {FWU_TIME_LIMIT:?}"))
        .expect("fwu's output can be read");
    Run {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}
