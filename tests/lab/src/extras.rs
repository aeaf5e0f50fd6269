//! Host programs added to a running lab, for benchmarks that compare the
//! product with a tool stock OpenWrt lacks (OpenSSH's `scp` as a reference
//! upload). Nothing here changes what a lab is by default: a program is
//! only there once a caller asks for it.

use std::path::{Path, PathBuf};

use crate::error::LabError;
use crate::lab::Lab;

/// The folder of the lab's shared base, as `Lab::start` builds it.
const BASE: &str = "base";

impl Lab {
    /// Copies the host program at `program` into `/usr/bin` of every device
    /// of this lab, with any shared library it needs that the devices lack;
    /// returns the path the devices see. Devices that are up see it at
    /// once: their base is bound from the host.
    pub fn add_host_program(&self, program: &Path) -> Result<PathBuf, LabError> {
        let base = self.dir().join(BASE);
        let name = program.file_name().ok_or_else(|| LabError::ProgramFailed {
            program: "lab",
            subject: program.display().to_string(),
            detail: "the path names no program".to_string(),
        })?;
        for library in crate::base::shared_libraries(program)? {
            let relative = library.strip_prefix("/").unwrap_or(&library);
            let target = base.join(relative);
            if target.exists() {
                continue;
            }
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent).map_err(LabError::io("create", parent))?;
            }
            std::fs::copy(&library, &target).map_err(LabError::io("copy", &library))?;
        }
        let target = base.join("usr/bin").join(name);
        std::fs::copy(program, &target).map_err(LabError::io("copy", program))?;
        tracing::info!(program = %program.display(), "added a host program to the lab");
        Ok(Path::new("/usr/bin").join(name))
    }
}
