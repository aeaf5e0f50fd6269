//! The read-only base every device of a lab shares: BusyBox and its applet
//! links, Dropbear with the shared libraries it needs, and the lab's own
//! scripts (`/sbin/sysupgrade`, `/bin/ubus`, `/lib/lab/*`).
//!
//! It is built once per lab and bound read-only into every sandbox, so a
//! device costs only its own small writable directories.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::LabError;

/// A host program the lab runs.
pub(crate) struct Program {
    /// Where it is installed.
    pub(crate) path: &'static str,
    /// Its name, for errors.
    name: &'static str,
    /// The Debian package that provides it.
    package: &'static str,
}

/// Bubblewrap, the sandbox of every device.
pub(crate) const BWRAP: Program = Program {
    path: "/usr/bin/bwrap",
    name: "bwrap",
    package: "bubblewrap",
};
/// Dropbear, the SSH server of every device.
pub(crate) const DROPBEAR: Program = Program {
    path: "/usr/sbin/dropbear",
    name: "dropbear",
    package: "dropbear-bin",
};
/// dropbearkey, which makes host keys.
pub(crate) const DROPBEARKEY: Program = Program {
    path: "/usr/bin/dropbearkey",
    name: "dropbearkey",
    package: "dropbear-bin",
};
/// BusyBox, the userland of every device.
pub(crate) const BUSYBOX: Program = Program {
    path: "/bin/busybox",
    name: "busybox",
    package: "busybox-static",
};

/// Applets the base leaves out: OpenWrt has no scp, and the lab's own
/// scripts stand where these names would clash.
const LEFT_OUT: &[&str] = &["busybox", "ubus", "sysupgrade"];

/// The lab's scripts and where they go in the base.
const SCRIPTS: &[(&str, &str)] = &[
    ("lib/lab/common.sh", include_str!("scripts/common.sh")),
    ("lib/lab/service.sh", include_str!("scripts/service.sh")),
    ("lib/lab/init", include_str!("scripts/init.sh")),
    ("bin/ubus", include_str!("scripts/ubus.sh")),
    ("sbin/sysupgrade", include_str!("scripts/sysupgrade.sh")),
];

/// The top-level directories of the base, each bound read-only at the same
/// place in every sandbox.
pub(crate) const TOP_DIRECTORIES: &[&str] = &["bin", "sbin", "usr", "lib", "lib64"];

/// Fails with a clear error if a program the lab runs is missing.
pub(crate) fn check_programs() -> Result<(), LabError> {
    for program in [BWRAP, DROPBEAR, DROPBEARKEY, BUSYBOX] {
        if !Path::new(program.path).exists() {
            return Err(LabError::ProgramMissing {
                program: program.name,
                package: program.package,
            });
        }
    }
    Ok(())
}

/// Builds the base in `dir` (emptied first) and returns its path.
pub(crate) fn build(dir: &Path) -> Result<PathBuf, LabError> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(LabError::io("remove", dir))?;
    }
    for top in TOP_DIRECTORIES {
        let path = dir.join(top);
        std::fs::create_dir_all(&path).map_err(LabError::io("create", &path))?;
    }
    for sub in ["usr/sbin", "usr/bin", "lib/lab"] {
        let path = dir.join(sub);
        std::fs::create_dir_all(&path).map_err(LabError::io("create", &path))?;
    }

    install(Path::new(BUSYBOX.path), &dir.join("bin/busybox"))?;
    for applet in busybox_applets()? {
        if LEFT_OUT.contains(&applet.as_str()) {
            continue;
        }
        let link = dir.join("bin").join(&applet);
        std::os::unix::fs::symlink("busybox", &link).map_err(LabError::io("link", &link))?;
    }

    install(Path::new(DROPBEAR.path), &dir.join("usr/sbin/dropbear"))?;
    for library in shared_libraries(Path::new(DROPBEAR.path))? {
        let relative = library.strip_prefix("/").unwrap_or(&library);
        let target = dir.join(relative);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(LabError::io("create", parent))?;
        }
        install(&library, &target)?;
    }

    for (relative, text) in SCRIPTS {
        let path = dir.join(relative);
        std::fs::write(&path, text).map_err(LabError::io("write", &path))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
            .map_err(LabError::io("make executable", &path))?;
    }
    tracing::debug!(base = %dir.display(), "built the lab's shared base");
    Ok(dir.to_path_buf())
}

/// Hard-links `from` to `to` when both are on one file system (no disk
/// used), else copies it.
fn install(from: &Path, to: &Path) -> Result<(), LabError> {
    let real = std::fs::canonicalize(from).map_err(LabError::io("resolve", from))?;
    if std::fs::hard_link(&real, to).is_ok() {
        return Ok(());
    }
    std::fs::copy(&real, to).map_err(LabError::io("copy", from))?;
    Ok(())
}

/// Returns the names of BusyBox's applets.
fn busybox_applets() -> Result<Vec<String>, LabError> {
    let output = Command::new(BUSYBOX.path)
        .arg("--list")
        .output()
        .map_err(LabError::io("run", Path::new(BUSYBOX.path)))?;
    if !output.status.success() {
        return Err(LabError::ProgramFailed {
            program: "busybox",
            subject: "the applet list".to_string(),
            detail: output.status.to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::trim)
        .filter(|name| !name.is_empty() && !name.contains('/'))
        .map(str::to_string)
        .collect())
}

/// Returns the shared libraries `ldd` lists for `program`, the dynamic
/// loader included.
pub(crate) fn shared_libraries(program: &Path) -> Result<Vec<PathBuf>, LabError> {
    let output = Command::new("ldd")
        .arg(program)
        .output()
        .map_err(LabError::io("run ldd on", program))?;
    if !output.status.success() {
        return Err(LabError::ProgramFailed {
            program: "ldd",
            subject: program.display().to_string(),
            detail: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout)
        .split_whitespace()
        .filter(|word| word.starts_with('/'))
        .map(PathBuf::from)
        .collect())
}
