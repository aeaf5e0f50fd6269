//! A lab: a set of simulated devices started together, supervised together
//! and stopped together. No sandbox outlives its lab.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::{oneshot, Semaphore};
use tokio::task::JoinHandle;

use crate::address;
use crate::base;
use crate::catalog;
use crate::device::{self, Device, Plan};
use crate::error::LabError;
use crate::files::{self, DevicePaths};
use crate::manifest::{Manifest, ManifestDevice};
use crate::spec::DeviceSpec;

/// How many devices boot at once when a lab starts.
const PARALLEL_BOOTS: usize = 16;

/// Running lab devices.
pub struct Lab {
    dir: PathBuf,
    devices: Vec<Device>,
    supervisors: Vec<JoinHandle<()>>,
    // Held for the lab's life: they keep its addresses from other labs.
    _address_locks: Vec<File>,
}

impl Lab {
    /// Starts a device for every spec, with their files under `dir`, and
    /// returns once all of them accept SSH connections.
    pub async fn start(dir: &Path, specs: Vec<DeviceSpec>) -> Result<Lab, LabError> {
        base::check_programs()?;
        let boards = check_specs(&specs)?;
        std::fs::create_dir_all(dir).map_err(LabError::io("create", dir))?;
        let base_dir = dir.join("base");
        let base = tokio::task::spawn_blocking(move || base::build(&base_dir))
            .await
            .expect("building the lab's base panicked")?;
        let claim = address::claim(specs.len() * 2)?;
        let hashes = password_hashes(&specs).await?;

        let devices_dir = dir.join("devices");
        let mut making = tokio::task::JoinSet::new();
        for (index, (spec, board)) in specs.into_iter().zip(boards).enumerate() {
            let plan = Plan {
                board,
                address: claim.addresses[2 * index],
                alternate: claim.addresses[2 * index + 1],
                paths: DevicePaths::new(&devices_dir, &spec.name),
                base: base.clone(),
                password_hash: spec
                    .password
                    .as_ref()
                    .map(|password| hashes[password].clone()),
                spec,
            };
            making.spawn_blocking(move || (index, device::make(plan)));
        }
        let mut made = Vec::new();
        while let Some(joined) = making.join_next().await {
            let (index, result) = joined.expect("making a lab device panicked");
            made.push((index, result?));
        }
        made.sort_by_key(|(index, _)| *index);

        let boots = Arc::new(Semaphore::new(PARALLEL_BOOTS));
        let mut lab = Lab {
            dir: dir.to_path_buf(),
            devices: Vec::with_capacity(made.len()),
            supervisors: Vec::with_capacity(made.len()),
            _address_locks: claim.locks,
        };
        let mut first_boots = Vec::with_capacity(made.len());
        for (_, made) in made {
            let (sender, receiver) = oneshot::channel();
            lab.devices.push(made.device.clone());
            lab.supervisors.push(made.supervise(boots.clone(), sender));
            first_boots.push(receiver);
        }
        for (first_boot, device) in first_boots.into_iter().zip(&lab.devices) {
            let booted = first_boot.await.unwrap_or_else(|_| {
                Err(LabError::DeviceDidNotStart {
                    device: device.name().to_string(),
                    detail: "its supervisor ended".to_string(),
                })
            });
            if let Err(error) = booted {
                lab.stop().await;
                return Err(error);
            }
        }
        tracing::info!(devices = lab.devices.len(), dir = %lab.dir.display(), "lab started");
        Ok(lab)
    }

    /// Returns the devices, in the order of their specs.
    pub fn devices(&self) -> &[Device] {
        &self.devices
    }

    /// Returns the device named `name`.
    ///
    /// # Panics
    ///
    /// Panics if the lab has no such device: asking for one is a mistake in
    /// the test. Use [`Lab::find`] when it may be absent.
    pub fn device(&self, name: &str) -> &Device {
        self.find(name)
            .unwrap_or_else(|| panic!("the lab has no device named {name}"))
    }

    /// Returns the device named `name`, if there is one.
    pub fn find(&self, name: &str) -> Option<&Device> {
        self.devices.iter().find(|device| device.name() == name)
    }

    /// Returns the directory holding the lab's files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Returns how to reach every device now.
    pub fn manifest(&self) -> Manifest {
        let devices = self
            .devices
            .iter()
            .map(|device| ManifestDevice {
                name: device.name().to_string(),
                address: device.address(),
                alternate_address: device.alternate_address(),
                port: device.port(),
                user: device.user().to_string(),
                password: device.password().map(str::to_string),
                host_key: device.host_key(),
                board: device.board().name.to_string(),
                release: device.state().release,
            })
            .collect();
        Manifest { devices }
    }

    /// Writes [`Lab::manifest`] as JSON to `path`.
    pub fn write_manifest(&self, path: &Path) -> std::io::Result<()> {
        self.manifest().write(path)
    }

    /// Stops every device and waits until all their sandboxes are gone.
    pub async fn stop(mut self) {
        let mut stopping = tokio::task::JoinSet::new();
        for device in self.devices.clone() {
            stopping.spawn(async move { device.stop().await });
        }
        while stopping.join_next().await.is_some() {}
        for supervisor in std::mem::take(&mut self.supervisors) {
            let _ = supervisor.await;
        }
        tracing::info!(dir = %self.dir.display(), "lab stopped");
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // A lab dropped without stop (a failed test) still takes its
        // sandboxes with it: killing bubblewrap ends the sandbox's whole
        // PID namespace (--die-with-parent).
        for device in &self.devices {
            if let Some(pid) = device.sandbox_pid() {
                // SAFETY: kill has no memory effects; the pid is a child of
                // this process that the supervisor has not yet reaped.
                unsafe {
                    libc::kill(pid as libc::pid_t, libc::SIGKILL);
                }
            }
        }
        for supervisor in &self.supervisors {
            supervisor.abort();
        }
    }
}

/// Checks names and boards; returns each spec's board.
fn check_specs(specs: &[DeviceSpec]) -> Result<Vec<&'static catalog::Board>, LabError> {
    let mut names = HashSet::new();
    let mut boards = Vec::with_capacity(specs.len());
    for spec in specs {
        let name = spec.name.as_str();
        let plain = !name.is_empty()
            && name != "."
            && name != ".."
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        if !plain {
            return Err(LabError::BadDeviceName(spec.name.clone()));
        }
        if !names.insert(name) {
            return Err(LabError::DuplicateDevice(spec.name.clone()));
        }
        let board = catalog::board(&spec.board).ok_or_else(|| LabError::UnknownBoard {
            device: spec.name.clone(),
            board: spec.board.clone(),
        })?;
        boards.push(board);
    }
    Ok(boards)
}

/// Hashes every distinct password once.
async fn password_hashes(specs: &[DeviceSpec]) -> Result<HashMap<String, String>, LabError> {
    let passwords: HashSet<String> = specs
        .iter()
        .filter_map(|spec| spec.password.clone())
        .collect();
    tokio::task::spawn_blocking(move || {
        passwords
            .into_iter()
            .map(|password| files::password_hash(&password).map(|hash| (password, hash)))
            .collect()
    })
    .await
    .expect("hashing lab passwords panicked")
}
