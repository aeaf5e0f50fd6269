//! The files of one lab device on the host: its writable `/etc`, `/root`
//! and `/tmp`, and its state directory, which the device sees as
//! `/lab/state` and the lab reads from the host side.
//!
//! The state directory holds what the lab tells the device at every boot
//! (`boot.env`, `faults.env`, `services`, `boot_id`), what the device tells
//! the lab (`flash.request`, `sysupgrade_calls`, `stopped/`,
//! `cache_dropped`), the files bound over `/proc` and the host key.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::base::{BUSYBOX, DROPBEARKEY};
use crate::catalog::{self, Board, Release};
use crate::error::LabError;
use crate::spec::{Faults, Memory, Service};

/// Init scripts of services an upgrade must not stop; they do nothing.
const CRITICAL_SERVICES: &[&str] = &[
    "boot",
    "done",
    "dropbear",
    "firewall",
    "log",
    "network",
    "rpcd",
    "sysctl",
    "sysfixtime",
    "sysntpd",
    "system",
    "umount",
    "urandom_seed",
    "urngd",
];

/// The separator between the arguments of one recorded sysupgrade run.
const ARGUMENT_SEPARATOR: char = '\u{1f}';

/// The host paths of one device.
#[derive(Clone, Debug)]
pub(crate) struct DevicePaths {
    /// Bound at `/etc`.
    pub(crate) etc: PathBuf,
    /// Bound at `/root`.
    pub(crate) home: PathBuf,
    /// Bound at `/tmp` (and `/var` links to it, as on OpenWrt).
    pub(crate) tmp: PathBuf,
    /// Bound at `/lab/state`.
    pub(crate) state: PathBuf,
}

/// What a device is at one boot.
pub(crate) struct Boot<'a> {
    /// Its board.
    pub(crate) board: &'static Board,
    /// The release it runs.
    pub(crate) release: &'a Release,
    /// The compat version of that firmware.
    pub(crate) compat_version: &'a str,
    /// Its memory figures.
    pub(crate) memory: &'a Memory,
    /// Its non-critical services.
    pub(crate) services: &'a [Service],
    /// The boot id of this boot.
    pub(crate) boot_id: &'a str,
    /// When it booted, in seconds since the epoch.
    pub(crate) boot_time: u64,
}

/// What sysupgrade asked for when it commenced an upgrade.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct FlashRequest {
    /// False when `-n` was given.
    pub(crate) keep_config: bool,
    /// The image's release, when the image had metadata.
    pub(crate) release: Option<Release>,
    /// The image's compat version, when the image had metadata.
    pub(crate) compat_version: Option<String>,
}

impl DevicePaths {
    /// Returns the paths of device `name` under `devices`.
    pub(crate) fn new(devices: &Path, name: &str) -> DevicePaths {
        let root = devices.join(name);
        DevicePaths {
            etc: root.join("etc"),
            home: root.join("root"),
            tmp: root.join("tmp"),
            state: root.join("state"),
        }
    }

    /// Creates the directories and the files bound over `/proc`.
    pub(crate) fn create(&self) -> Result<(), LabError> {
        for dir in [&self.etc, &self.home, &self.tmp, &self.state] {
            if dir.exists() {
                std::fs::remove_dir_all(dir).map_err(LabError::io("remove", dir))?;
            }
            std::fs::create_dir_all(dir).map_err(LabError::io("create", dir))?;
        }
        {
            let path = self.state.join("meminfo");
            let c_path =
                std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).map_err(|_| {
                    LabError::io("name", &path)(std::io::ErrorKind::InvalidInput.into())
                })?;
            // SAFETY: c_path is a valid NUL-terminated string for the call.
            if unsafe { libc::mkfifo(c_path.as_ptr(), 0o644) } != 0 {
                return Err(LabError::io("make a FIFO at", &path)(
                    std::io::Error::last_os_error(),
                ));
            }
        }
        write(&self.state.join("sysupgrade_calls"), "")?;
        Ok(())
    }

    /// Returns the path of the device's Dropbear host key.
    pub(crate) fn host_key(&self) -> PathBuf {
        self.state.join("dropbear_ed25519_host_key")
    }

    /// Makes a new ed25519 host key and returns its OpenSSH public line.
    pub(crate) fn make_host_key(&self, device: &str) -> Result<String, LabError> {
        let path = self.host_key();
        if path.exists() {
            std::fs::remove_file(&path).map_err(LabError::io("remove", &path))?;
        }
        let made = Command::new(DROPBEARKEY.path)
            .args(["-t", "ed25519", "-f"])
            .arg(&path)
            .output()
            .map_err(LabError::io("run", Path::new(DROPBEARKEY.path)))?;
        if !made.status.success() {
            return Err(LabError::ProgramFailed {
                program: "dropbearkey",
                subject: device.to_string(),
                detail: String::from_utf8_lossy(&made.stderr).trim().to_string(),
            });
        }
        public_key(&path, device)
    }

    /// Writes the default `/etc` and `/root`, as after a fresh flash or an
    /// upgrade with `-n`.
    pub(crate) fn write_defaults(
        &self,
        password_hash: Option<&str>,
        authorized_keys: &[String],
        services: &[Service],
    ) -> Result<(), LabError> {
        for dir in [&self.etc, &self.home] {
            std::fs::remove_dir_all(dir).map_err(LabError::io("remove", dir))?;
            std::fs::create_dir_all(dir).map_err(LabError::io("create", dir))?;
        }
        set_mode(&self.home, 0o700)?;
        let etc = &self.etc;
        write(&etc.join("passwd"), "root:x:0:0:root:/root:/bin/ash\n")?;
        write(&etc.join("group"), "root:x:0:\n")?;
        write(&etc.join("shells"), "/bin/ash\n/bin/sh\n")?;
        write(
            &etc.join("nsswitch.conf"),
            "passwd: files\ngroup: files\nshadow: files\n",
        )?;
        write(&etc.join("hostname"), "OpenWrt\n")?;
        write(&etc.join("banner"), BANNER)?;
        let shadow = format!("root:{}:19800:0:99999:7:::\n", password_hash.unwrap_or("*"));
        write(&etc.join("shadow"), &shadow)?;
        set_mode(&etc.join("shadow"), 0o600)?;

        // OpenWrt keeps root's keys in /etc/dropbear; Debian's Dropbear reads
        // ~/.ssh, so the one points at the other.
        let dropbear = etc.join("dropbear");
        std::fs::create_dir_all(&dropbear).map_err(LabError::io("create", &dropbear))?;
        set_mode(&dropbear, 0o700)?;
        let keys: String = authorized_keys
            .iter()
            .map(|key| format!("{}\n", key.trim()))
            .collect();
        write(&dropbear.join("authorized_keys"), &keys)?;
        set_mode(&dropbear.join("authorized_keys"), 0o600)?;
        let ssh = self.home.join(".ssh");
        std::fs::create_dir_all(&ssh).map_err(LabError::io("create", &ssh))?;
        set_mode(&ssh, 0o700)?;
        let link = ssh.join("authorized_keys");
        std::os::unix::fs::symlink("/etc/dropbear/authorized_keys", &link)
            .map_err(LabError::io("link", &link))?;

        let init = etc.join("init.d");
        std::fs::create_dir_all(&init).map_err(LabError::io("create", &init))?;
        for name in CRITICAL_SERVICES {
            let script = format!(
                "#!/bin/sh\n# {name}: a service an upgrade must leave running.\n\
                 . /lib/lab/service.sh\nlab_critical_service {name} \"$1\"\n"
            );
            write_executable(&init.join(name), &script)?;
        }
        for service in services {
            let name = &service.name;
            let script = format!(
                "#!/bin/sh\n# {name}: a service that frees {} KiB when stopped.\n\
                 . /lib/lab/service.sh\nlab_service {name} \"$1\"\n",
                service.kib
            );
            write_executable(&init.join(name), &script)?;
        }
        Ok(())
    }

    /// Prepares the files of a boot: a cleared `/tmp` with the board's
    /// sysinfo, the release in `/etc/openwrt_release`, the boot id, fresh
    /// memory and service state.
    pub(crate) fn prepare_boot(&self, boot: &Boot) -> Result<(), LabError> {
        std::fs::remove_dir_all(&self.tmp).map_err(LabError::io("clear", &self.tmp))?;
        for dir in ["sysinfo", "run", "lock", "log"] {
            let path = self.tmp.join(dir);
            std::fs::create_dir_all(&path).map_err(LabError::io("create", &path))?;
        }
        set_mode(&self.tmp, 0o1777)?;
        write(
            &self.tmp.join("sysinfo/board_name"),
            &format!("{}\n", boot.board.name),
        )?;
        write(
            &self.tmp.join("sysinfo/model"),
            &format!("{}\n", boot.board.model),
        )?;

        let release = boot.release;
        let arch = catalog::architecture(&release.target);
        let openwrt_release = format!(
            "DISTRIB_ID='{}'\nDISTRIB_RELEASE='{}'\nDISTRIB_REVISION='{}'\n\
             DISTRIB_TARGET='{}'\nDISTRIB_ARCH='{arch}'\nDISTRIB_DESCRIPTION='{}'\n\
             DISTRIB_TAINTS=''\n",
            release.dist,
            release.version,
            release.revision,
            release.target,
            release.os_identifier(),
        );
        write(&self.etc.join("openwrt_release"), &openwrt_release)?;

        let env = [
            ("BOARD_NAME", boot.board.name.to_string()),
            ("MODEL", boot.board.model.to_string()),
            (
                "SYSTEM",
                catalog::system_description(boot.board).to_string(),
            ),
            ("ROOTFS_TYPE", catalog::rootfs_type(boot.board).to_string()),
            ("KERNEL", catalog::kernel_version(release).to_string()),
            ("DIST", release.dist.clone()),
            ("VERSION", release.version.clone()),
            ("REVISION", release.revision.clone()),
            ("TARGET", release.target.clone()),
            ("COMPAT_VERSION", boot.compat_version.to_string()),
            ("BOOT_TIME", boot.boot_time.to_string()),
            ("TOTAL_KIB", boot.memory.total_kib.to_string()),
            ("AVAILABLE_KIB", boot.memory.available_kib.to_string()),
            ("CACHE_KIB", boot.memory.cache_kib.to_string()),
        ];
        let env: String = env
            .iter()
            .map(|(key, value)| format!("{key}={}\n", shell_quote(value)))
            .collect();
        write(&self.state.join("boot.env"), &env)?;
        let services: String = boot
            .services
            .iter()
            .map(|service| format!("{} {}\n", service.name, service.kib))
            .collect();
        write(&self.state.join("services"), &services)?;
        write(&self.state.join("boot_id"), &format!("{}\n", boot.boot_id))?;
        write(&self.state.join("drop_caches"), "")?;

        let stopped = self.state.join("stopped");
        if stopped.exists() {
            std::fs::remove_dir_all(&stopped).map_err(LabError::io("clear", &stopped))?;
        }
        std::fs::create_dir_all(&stopped).map_err(LabError::io("create", &stopped))?;
        let dropped = self.state.join("cache_dropped");
        if dropped.exists() {
            std::fs::remove_file(&dropped).map_err(LabError::io("remove", &dropped))?;
        }
        let request = self.state.join("flash.request");
        if request.exists() {
            std::fs::remove_file(&request).map_err(LabError::io("remove", &request))?;
        }
        Ok(())
    }

    /// Tells the device's scripts which sysupgrade faults to show.
    pub(crate) fn write_faults(&self, faults: &Faults) -> Result<(), LabError> {
        let flag = |on: bool| if on { 1 } else { 0 };
        let env = format!(
            "TEST_FAILS={}\nEXITS_NONZERO={}\nREFUSES={}\n",
            flag(faults.test_fails),
            flag(faults.exits_nonzero_after_commencing),
            flag(faults.refuses_before_commencing),
        );
        write(&self.state.join("faults.env"), &env)
    }

    /// Takes the flash request sysupgrade left, if it left one.
    pub(crate) fn take_flash_request(&self) -> Option<FlashRequest> {
        let path = self.state.join("flash.request");
        let text = std::fs::read_to_string(&path).ok()?;
        if let Err(error) = std::fs::remove_file(&path) {
            tracing::warn!(path = %path.display(), %error, "could not remove a flash request");
        }
        Some(parse_flash_request(&text))
    }

    /// Returns the arguments of every sysupgrade run, oldest first.
    pub(crate) fn sysupgrade_calls(&self) -> Vec<Vec<String>> {
        let text = std::fs::read_to_string(self.state.join("sysupgrade_calls")).unwrap_or_default();
        text.lines()
            .map(|line| {
                line.split_terminator(ARGUMENT_SEPARATOR)
                    .map(str::to_string)
                    .collect()
            })
            .collect()
    }

    /// Returns MemAvailable in KiB and the services that run, computed the
    /// way the device's own scripts compute them.
    pub(crate) fn memory_state(&self, memory: &Memory, services: &[Service]) -> (u64, Vec<String>) {
        let stopped = |name: &str| self.state.join("stopped").join(name).exists();
        let mut available = memory.available_kib;
        // A write the device has not looked at yet counts already, as it
        // does for the device's own readers.
        let pending_drop = std::fs::metadata(self.state.join("drop_caches"))
            .map(|metadata| metadata.len() > 0)
            .unwrap_or(false);
        if pending_drop || self.state.join("cache_dropped").exists() {
            available += memory.cache_kib;
        }
        let mut running = Vec::new();
        for service in services {
            if stopped(&service.name) {
                available += service.kib;
            } else {
                running.push(service.name.clone());
            }
        }
        (available, running)
    }
}

/// Parses the `key=value` lines sysupgrade writes.
fn parse_flash_request(text: &str) -> FlashRequest {
    let value = |key: &str| {
        text.lines()
            .filter_map(|line| line.split_once('='))
            .find(|(found, _)| *found == key)
            .map(|(_, value)| value.trim().to_string())
            .unwrap_or_default()
    };
    let has_metadata = value("metadata") == "1" && !value("version").is_empty();
    FlashRequest {
        keep_config: value("keep_config") != "0",
        release: has_metadata.then(|| Release {
            dist: value("dist"),
            version: value("version"),
            revision: value("revision"),
            target: value("target"),
        }),
        compat_version: has_metadata.then(|| value("compat_version")),
    }
}

/// Returns the hash of a root password for `/etc/shadow`, made by BusyBox.
pub(crate) fn password_hash(password: &str) -> Result<String, LabError> {
    let output = Command::new(BUSYBOX.path)
        .args(["mkpasswd", "-m", "sha512", password])
        .output()
        .map_err(LabError::io("run", Path::new(BUSYBOX.path)))?;
    let hash = String::from_utf8_lossy(&output.stdout).trim().to_string();
    if !output.status.success() || !hash.starts_with('$') {
        return Err(LabError::ProgramFailed {
            program: "busybox mkpasswd",
            subject: "a device password".to_string(),
            detail: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        });
    }
    Ok(hash)
}

/// Reads the OpenSSH public line ("ssh-ed25519 AAAA...") of a host key.
fn public_key(path: &Path, device: &str) -> Result<String, LabError> {
    let output = Command::new(DROPBEARKEY.path)
        .arg("-y")
        .arg("-f")
        .arg(path)
        .output()
        .map_err(LabError::io("run", Path::new(DROPBEARKEY.path)))?;
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .find(|line| line.starts_with("ssh-"))
        .map(|line| {
            line.split_whitespace()
                .take(2)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .ok_or_else(|| LabError::ProgramFailed {
            program: "dropbearkey",
            subject: device.to_string(),
            detail: "printed no public key".to_string(),
        })
}

/// Quotes a value for a shell file the device sources.
fn shell_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', "'\\''"))
}

/// Writes a file.
fn write(path: &Path, text: &str) -> Result<(), LabError> {
    std::fs::write(path, text).map_err(LabError::io("write", path))
}

/// Writes an executable file.
fn write_executable(path: &Path, text: &str) -> Result<(), LabError> {
    write(path, text)?;
    set_mode(path, 0o755)
}

/// Sets the permission bits of a path.
fn set_mode(path: &Path, mode: u32) -> Result<(), LabError> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(LabError::io("set the mode of", path))
}

/// The login banner.
const BANNER: &str = "\
 -----------------------------------------------------
  OpenWrt, simulated by the Firmware Upgrader lab
 -----------------------------------------------------
";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flash_requests_with_metadata_carry_the_release() {
        let request = parse_flash_request(
            "keep_config=0\nmetadata=1\ndist=OpenWrt\nversion=24.10.0\n\
             revision=r28427-6df0e3d02a\ntarget=ath79/generic\ncompat_version=2.0\n",
        );
        assert!(!request.keep_config);
        assert_eq!(request.release.unwrap().version, "24.10.0");
        assert_eq!(request.compat_version.as_deref(), Some("2.0"));
    }

    #[test]
    fn flash_requests_without_metadata_have_no_release() {
        let request = parse_flash_request("keep_config=1\nmetadata=0\ndist=\nversion=\n");
        assert!(request.keep_config);
        assert_eq!(request.release, None);
    }

    #[test]
    fn shell_quoting_survives_quotes() {
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
    }
}
