//! Helpers the lab's tests share: a lab in a temporary directory and the
//! system OpenSSH client, with its own key and known-hosts file.

#![allow(dead_code)] // Each test file uses its own share of these helpers.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use fwu_lab::{Device, DeviceSpec, Lab};
use tokio::io::AsyncWriteExt;

/// How long any single ssh run may take.
const SSH_TIMEOUT: Duration = Duration::from_secs(30);

/// An OpenSSH client with a key of its own.
pub struct Client {
    dir: tempfile::TempDir,
}

impl Client {
    /// Makes a client and its ed25519 key.
    pub fn new() -> Client {
        let dir = tempfile::tempdir().unwrap();
        let status = std::process::Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(dir.path().join("id"))
            .status()
            .unwrap();
        assert!(status.success(), "ssh-keygen failed");
        Client { dir }
    }

    /// Returns the public key line to put in a spec's authorized keys.
    pub fn public_key(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("id.pub"))
            .unwrap()
            .trim()
            .to_string()
    }

    /// Returns the path of the known-hosts file.
    pub fn known_hosts(&self) -> PathBuf {
        self.dir.path().join("known_hosts")
    }

    /// Pins `device`'s current host key for both of its addresses.
    pub fn trust(&self, device: &Device) {
        let mut lines = std::fs::read_to_string(self.known_hosts()).unwrap_or_default();
        for address in [device.address(), device.alternate_address()] {
            lines.push_str(&format!("{address} {}\n", device.host_key()));
        }
        std::fs::write(self.known_hosts(), lines).unwrap();
    }

    /// Runs `command` on the device at its usual address.
    pub async fn run(&self, device: &Device, command: &str) -> Output {
        self.run_at(device.address(), command, None).await
    }

    /// Runs `command` at `address`, feeding it `input`.
    pub async fn run_at(&self, address: Ipv4Addr, command: &str, input: Option<&[u8]>) -> Output {
        let mut child = tokio::process::Command::new("ssh")
            .args(self.options())
            .arg(format!("root@{address}"))
            .arg(command)
            .stdin(if input.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        if let Some(input) = input {
            let mut stdin = child.stdin.take().unwrap();
            // A cut link makes this write fail; the exit status says so.
            let _ = stdin.write_all(input).await;
            drop(stdin);
        }
        tokio::time::timeout(SSH_TIMEOUT, child.wait_with_output())
            .await
            .expect("ssh took too long")
            .unwrap()
    }

    /// Uploads `file` to `remote` on the device with `cat >`.
    pub async fn upload(&self, device: &Device, file: &Path, remote: &str) -> Output {
        let data = std::fs::read(file).unwrap();
        self.run_at(device.address(), &format!("cat > {remote}"), Some(&data))
            .await
    }

    /// Runs `command` at `address` logging in with `password` only (given
    /// to ssh through SSH_ASKPASS, as no terminal is there to type it).
    pub async fn run_with_password(
        &self,
        address: Ipv4Addr,
        password: &str,
        command: &str,
    ) -> Output {
        let askpass = self.dir.path().join("askpass");
        std::fs::write(
            &askpass,
            format!("#!/bin/sh\nprintf '%s\\n' '{password}'\n"),
        )
        .unwrap();
        std::fs::set_permissions(
            &askpass,
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        )
        .unwrap();
        let options: Vec<String> = self
            .options()
            .into_iter()
            .map(|option| {
                if option == "BatchMode=yes" {
                    "BatchMode=no".to_string()
                } else {
                    option
                }
            })
            .collect();
        let child = tokio::process::Command::new("ssh")
            .args(options)
            .args([
                "-o",
                "PreferredAuthentications=password,keyboard-interactive",
            ])
            .args(["-o", "NumberOfPasswordPrompts=1"])
            .arg(format!("root@{address}"))
            .arg(command)
            .env("SSH_ASKPASS", &askpass)
            .env("SSH_ASKPASS_REQUIRE", "force")
            .env("DISPLAY", ":0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        tokio::time::timeout(SSH_TIMEOUT, child.wait_with_output())
            .await
            .expect("ssh took too long")
            .unwrap()
    }

    /// Returns the ssh options: batch mode, this client's key only, its own
    /// known-hosts file with strict checking.
    fn options(&self) -> Vec<String> {
        let known_hosts = self.known_hosts();
        vec![
            "-F".into(),
            "/dev/null".into(),
            "-i".into(),
            self.dir.path().join("id").display().to_string(),
            "-o".into(),
            "BatchMode=yes".into(),
            "-o".into(),
            "IdentitiesOnly=yes".into(),
            "-o".into(),
            format!("UserKnownHostsFile={}", known_hosts.display()),
            "-o".into(),
            "StrictHostKeyChecking=yes".into(),
            "-o".into(),
            "ConnectTimeout=5".into(),
            "-o".into(),
            "LogLevel=ERROR".into(),
        ]
    }
}

/// Returns the text of an output's stdout.
pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Returns the text of an output's stderr and stdout together.
pub fn all_output(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Starts a lab of `specs` in a temporary directory, every device
/// accepting `client`'s key, and pins their host keys.
pub async fn start(client: &Client, mut specs: Vec<DeviceSpec>) -> (Lab, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    for spec in &mut specs {
        spec.authorized_keys.push(client.public_key());
    }
    let lab = Lab::start(dir.path(), specs).await.unwrap();
    for device in lab.devices() {
        client.trust(device);
    }
    (lab, dir)
}

/// Returns the path of a shared fixture image.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/fixtures/images")
        .join(name)
}
