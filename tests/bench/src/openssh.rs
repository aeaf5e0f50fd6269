//! OpenSSH as a user's script runs it against lab devices: key
//! authentication, batch mode, host keys checked against a known_hosts file
//! of our own, no user configuration. The upload and fleet references are
//! built on it.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context;
use fwu_lab::Device;

/// A key pair and a known_hosts file for reaching lab devices.
pub struct OpenSsh {
    /// The private key file; its public half is authorised on the devices.
    pub key: PathBuf,
    /// The public key line.
    pub public: String,
    /// The known_hosts file with every device's host key.
    pub known_hosts: PathBuf,
}

impl OpenSsh {
    /// Makes an ed25519 key without passphrase in `dir`, with `ssh-keygen`.
    pub fn new(dir: &Path) -> anyhow::Result<OpenSsh> {
        let key = dir.join("id_ed25519");
        let made = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "fwu-bench", "-f"])
            .arg(&key)
            .status()
            .context("ssh-keygen runs (install openssh-client)")?;
        anyhow::ensure!(made.success(), "ssh-keygen could not make a key");
        let public = std::fs::read_to_string(key.with_extension("pub"))?
            .trim()
            .to_string();
        Ok(OpenSsh {
            key,
            public,
            known_hosts: dir.join("known_hosts"),
        })
    }

    /// Writes the known_hosts file for `devices`, both of their addresses.
    pub fn know(&self, devices: &[Device]) -> anyhow::Result<()> {
        let mut text = String::new();
        for device in devices {
            let key = device.host_key();
            text.push_str(&format!(
                "{},{} {key}\n",
                device.address(),
                device.alternate_address()
            ));
        }
        std::fs::write(&self.known_hosts, text)?;
        Ok(())
    }

    /// The options every OpenSSH command takes, as `-o` pairs and flags.
    pub fn options(&self) -> Vec<String> {
        let mut options = vec!["-F".to_string(), "/dev/null".to_string()];
        options.push("-i".to_string());
        options.push(self.key.display().to_string());
        for option in [
            "BatchMode=yes".to_string(),
            "IdentitiesOnly=yes".to_string(),
            "StrictHostKeyChecking=yes".to_string(),
            format!("UserKnownHostsFile={}", self.known_hosts.display()),
            "ConnectTimeout=3".to_string(),
            "LogLevel=ERROR".to_string(),
        ] {
            options.push("-o".to_string());
            options.push(option);
        }
        options
    }

    /// `ssh OPTIONS root@HOST COMMAND`.
    pub fn ssh(&self, host: &str, command: &str) -> Command {
        let mut ssh = Command::new("ssh");
        ssh.args(self.options())
            .arg(format!("root@{host}"))
            .arg(command);
        ssh
    }

    /// `scp -O OPTIONS FILE root@HOST:TARGET`: the legacy scp protocol,
    /// which needs `scp` on the device rather than SFTP.
    pub fn scp(&self, file: &Path, host: &str, target: &str) -> Command {
        let mut scp = Command::new("scp");
        scp.arg("-O")
            .arg("-q")
            .args(self.options())
            .arg(file)
            .arg(format!("root@{host}:{target}"));
        scp
    }
}
