//! What a lab device is asked to be: its identity, login, memory, services,
//! reboot time and the faults it should show.

use std::time::Duration;

use crate::catalog::{board, release, Release};

/// Faults a device shows; the default is a device with no fault.
///
/// Device faults (`test_fails`, `exits_nonzero_after_commencing`,
/// `refuses_before_commencing`) apply to the next `sysupgrade` run. Reboot
/// faults apply to the next reboot. Link faults (`cut_link_after_bytes`,
/// `bandwidth_bytes_per_second`) are carried out by a relay in front of the
/// device: their figures may change at any time, but whether a relay runs at
/// all is decided at boot, so arming a link fault on a device that booted
/// without one takes effect after its next reboot (power it off and on).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Faults {
    /// Cuts the first connection whose client-to-device bytes pass this
    /// many, once; the fault then disarms itself.
    pub cut_link_after_bytes: Option<u64>,
    /// Caps the rate of the link in each direction.
    pub bandwidth_bytes_per_second: Option<u64>,
    /// After flashing, the device stays down until it is powered on.
    pub never_returns: bool,
    /// After flashing, the device reboots (new boot id) but keeps its old
    /// release.
    pub returns_with_old_firmware: bool,
    /// After flashing, the device listens on its alternate address only.
    pub returns_on_alternate_address: bool,
    /// `sysupgrade --test` (and the check before flashing) fails.
    pub test_fails: bool,
    /// sysupgrade prints "Commencing upgrade", exits 1 and flashes anyway.
    pub exits_nonzero_after_commencing: bool,
    /// sysupgrade (not `--test`) prints an error and exits 1 before
    /// commencing; nothing is flashed.
    pub refuses_before_commencing: bool,
    /// Every reboot gives the device a new host key.
    pub host_key_changes_on_reboot: bool,
}

impl Faults {
    /// Tells whether these faults need a relay in front of the device.
    pub(crate) fn need_relay(&self) -> bool {
        self.cut_link_after_bytes.is_some() || self.bandwidth_bytes_per_second.is_some()
    }
}

/// The memory figures of a device, in KiB.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Memory {
    /// MemTotal.
    pub total_kib: u64,
    /// MemAvailable at boot, with every service running and the page cache
    /// not yet dropped.
    pub available_kib: u64,
    /// Page cache that `sync; echo 3 > /proc/sys/vm/drop_caches` frees once
    /// per boot; until then the lab does not count it as available.
    pub cache_kib: u64,
}

impl Default for Memory {
    fn default() -> Memory {
        Memory {
            total_kib: 128 * 1024,
            available_kib: 96 * 1024,
            cache_kib: 12 * 1024,
        }
    }
}

/// A non-critical `/etc/init.d` service and the memory stopping it frees.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Service {
    /// The name of the init script.
    pub name: String,
    /// KiB that become available while the service is stopped.
    pub kib: u64,
}

impl Service {
    /// Returns a service with this name and memory.
    pub fn new(name: &str, kib: u64) -> Service {
        Service {
            name: name.to_string(),
            kib,
        }
    }
}

/// Everything the lab needs to bring up one device.
#[derive(Clone, Debug)]
pub struct DeviceSpec {
    /// The device's name, unique in its lab.
    pub name: String,
    /// The board name, one of [`crate::boards`].
    pub board: String,
    /// The release it runs at the first boot.
    pub release: Release,
    /// The compat version of its firmware, "1.0" by default.
    pub compat_version: String,
    /// The root password; none disables password logins.
    pub password: Option<String>,
    /// OpenSSH public key lines allowed to log in as root.
    pub authorized_keys: Vec<String>,
    /// Its memory figures.
    pub memory: Memory,
    /// Its non-critical services.
    pub services: Vec<Service>,
    /// How long it stays down while "flashing" or rebooting.
    pub reboot_time: Duration,
    /// The faults it shows.
    pub faults: Faults,
}

impl DeviceSpec {
    /// Returns a spec with sensible defaults: password "lab", 128 MiB of
    /// memory of which 96 MiB available, the services uhttpd, dnsmasq,
    /// odhcpd and collectd, a reboot of 2 s and no fault. The release is
    /// `version` built for the board's target.
    ///
    /// # Panics
    ///
    /// Panics if the lab knows no release `version`; a lab test asking for
    /// one is a mistake in that test.
    pub fn new(name: &str, board_name: &str, version: &str) -> DeviceSpec {
        let known = release(version)
            .unwrap_or_else(|| panic!("the lab knows no OpenWrt release {version}"));
        let release = match board(board_name) {
            Some(board) => known.for_target(board.target),
            None => known,
        };
        DeviceSpec {
            name: name.to_string(),
            board: board_name.to_string(),
            release,
            compat_version: "1.0".to_string(),
            password: Some("lab".to_string()),
            authorized_keys: Vec::new(),
            memory: Memory::default(),
            services: vec![
                Service::new("uhttpd", 2560),
                Service::new("dnsmasq", 1536),
                Service::new("odhcpd", 1024),
                Service::new("collectd", 3072),
            ],
            reboot_time: Duration::from_secs(2),
            faults: Faults::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_spec_runs_the_release_for_its_board_target() {
        let spec = DeviceSpec::new("ap1", "generic", "23.05.3");
        assert_eq!(spec.release.target, "x86/64");
        assert_eq!(spec.password.as_deref(), Some("lab"));
        assert_eq!(spec.memory.total_kib, 131072);
    }

    #[test]
    fn only_link_faults_need_a_relay() {
        let mut faults = Faults {
            never_returns: true,
            ..Faults::default()
        };
        assert!(!faults.need_relay());
        faults.bandwidth_bytes_per_second = Some(1000);
        assert!(faults.need_relay());
    }
}
