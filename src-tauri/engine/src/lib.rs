//! The engine of Firmware Upgrader: everything the product does, with no
//! window and no command line attached.
//!
//! The catalogue keeps categories, builds, images, devices and upgrade
//! operations in SQLite; `image` reads and stores firmware files; `transport`
//! reaches devices (SSH through russh); `upgrade` runs one upgrade operation
//! through the stages of an upgrader; `vault` keeps secrets in the OS
//! keyring. The Tauri shell and the `fwu` CLI are thin adapters over this
//! crate and nothing here knows about either of them.

pub mod actions;
pub mod batch;
pub mod catalogue;
pub mod events;
pub mod image;
pub mod inventory;
pub mod logging;
pub mod platform;
pub mod runtime;
pub mod settings;
pub mod transport;
pub mod upgrade;
pub mod vault;
