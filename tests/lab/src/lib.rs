//! The device lab: simulated OpenWrt devices, each a real Dropbear server in
//! a bubblewrap sandbox with a BusyBox userland on its own loopback address.
//!
//! A [`Lab`] starts devices from [`DeviceSpec`]s and supervises them: each
//! answers `ubus`, has its own `/proc/meminfo` and boot id, and runs a
//! `sysupgrade` that checks images like OpenWrt's, flashes, "reboots" and
//! comes back running the flashed release. [`Faults`] make devices misbehave
//! the ways real ones do. [`write_sample_image`] makes images to flash.
//!
//! ```no_run
//! # async fn example() -> Result<(), fwu_lab::LabError> {
//! use fwu_lab::{DeviceSpec, Faults, Lab};
//!
//! let dir = std::path::Path::new("/tmp/my-lab");
//! let mut spec = DeviceSpec::new("ap1", "tplink,archer-c7-v5", "23.05.3");
//! spec.faults = Faults { returns_with_old_firmware: true, ..Faults::default() };
//! let lab = Lab::start(dir, vec![spec]).await?;
//! let ap1 = lab.device("ap1");
//! println!("ssh root@{} (password {:?})", ap1.address(), ap1.password());
//! // ... upgrade it, then look at what happened:
//! let state = ap1.state();
//! println!("flashed {} times, runs {}", state.flash_count, state.release.os_identifier());
//! lab.stop().await;
//! # Ok(())
//! # }
//! ```
//!
//! The lab never depends on the engine: it is the world the engine is tested
//! against, and users start it through the CLI to rehearse.

mod address;
mod base;
mod catalog;
mod device;
mod error;
mod extras;
mod files;
mod image;
mod lab;
mod manifest;
mod relay;
mod spec;

pub use catalog::{board, boards, release, Board, Release};
pub use device::{Device, DeviceState};
pub use error::LabError;
pub use image::{sample_image_name, write_sample_image, SampleImage};
pub use lab::Lab;
pub use manifest::{Manifest, ManifestDevice};
pub use spec::{DeviceSpec, Faults, Memory, Service};
