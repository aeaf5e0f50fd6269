//! Upgrades against devices that misbehave the ways real ones do: too
//! little memory, a link that breaks, a sysupgrade that fails or refuses,
//! a device that does not come back or comes back wrong, a host key that
//! changed, a password that is wrong.
//!
//! Each test arms one fault of the lab, runs `fwu upgrade` and checks the
//! verdict, the exit status, the log lines that explain it and what the
//! device went through.

mod common;

use common::{
    archer, fixture, openssh_fingerprint, Bench, Login, ARCHER_24, LAB_PASSWORD, OPENWRT_23,
    OPENWRT_24, SERVICES,
};
use fwu_lab::{DeviceSpec, DeviceState, Faults, Memory, Service};

/// The memory the 24.10.0 fixture (3150109 bytes) needs on the device.
const IMAGE_KIB: u64 = 3150109_u64.div_ceil(1024);

/// An Archer C7 on 23.05.3 showing `faults`.
fn faulty(faults: Faults) -> DeviceSpec {
    let mut spec = archer("ap1");
    spec.faults = faults;
    spec
}

/// Memory where the image fits only once the page cache is dropped and
/// every non-critical service is stopped.
fn tight_memory() -> Memory {
    Memory {
        total_kib: 65536,
        available_kib: 1000,
        cache_kib: 500,
    }
}

/// The upgrade every test here runs.
const UPGRADE: &[&str] = &["--build", "WiFi", "24.10.0", "--accept-new-host-key"];

/// Checks that nothing was flashed and the device runs as before.
fn assert_untouched(state: &DeviceState) {
    assert_eq!(state.flash_count, 0);
    assert_eq!(state.release.os_identifier(), OPENWRT_23);
    assert!(state.up);
}

#[tokio::test]
async fn a_failing_sysupgrade_test_aborts() {
    let bench = Bench::with_ap1(faulty(Faults {
        test_fails: true,
        ..Faults::default()
    }))
    .await;

    let upgrade = bench.upgrade("ap1", UPGRADE).await;
    upgrade
        .expect("aborted", 2)
        .expect_line(&["testing the image: sysupgrade --test '/tmp/fwu-"])
        .expect_line(&[
            "aborted: the device refused the image (sysupgrade --test)",
            "Image check 'platform_check_image' failed.",
        ])
        .expect_no_line("flashing:");
    let state = bench.device("ap1").state();
    assert_untouched(&state);
    assert_eq!(state.sysupgrade_calls.len(), 1);
    assert_eq!(state.sysupgrade_calls[0][0], "--test");

    bench.stop().await;
}

#[tokio::test]
async fn low_memory_stops_services_and_the_upgrade_succeeds() {
    let mut spec = archer("ap1");
    spec.memory = tight_memory();
    let bench = Bench::with_ap1(spec).await;

    let (upgrade, samples) = bench.upgrade_sampling("ap1", UPGRADE, "ap1").await;
    upgrade
        .expect("success", 0)
        .expect_line(&[
            "memory: only 1000 KiB available",
            &format!("needs {IMAGE_KIB} KiB"),
        ])
        .expect_line(&[
            "memory: stopped non-critical services (collectd, dnsmasq, odhcpd, uhttpd); \
             9692 KiB available",
        ]);
    // While the device waited for the flash every service was stopped and
    // the memory was there.
    assert!(
        samples.iter().any(|state| state.up
            && state.running_services.is_empty()
            && state.available_kib >= IMAGE_KIB),
        "the lab never saw the services stopped"
    );
    let state = bench.device("ap1").state();
    assert_eq!(state.flash_count, 1);
    assert_eq!(state.release.os_identifier(), OPENWRT_24);
    assert_eq!(state.running_services, SERVICES);

    bench.stop().await;
}

#[tokio::test]
async fn memory_still_too_low_aborts_and_starts_the_services_again() {
    let mut spec = archer("ap1");
    spec.memory = tight_memory();
    spec.services = vec![Service::new("uhttpd", 512), Service::new("collectd", 512)];
    let bench = Bench::with_ap1(spec).await;

    let (upgrade, samples) = bench.upgrade_sampling("ap1", UPGRADE, "ap1").await;
    upgrade
        .expect("aborted", 2)
        .expect_line(&["memory: stopped non-critical services (collectd, uhttpd); 2524 KiB"])
        .expect_line(&["started service collectd again"])
        .expect_line(&["started service uhttpd again"])
        .expect_line(&[
            "aborted: not enough memory for the image: 2524 KiB available",
            &format!("{IMAGE_KIB} KiB needed"),
        ])
        .expect_no_line("uploading");
    assert!(
        samples
            .iter()
            .any(|state| state.running_services.is_empty()),
        "the lab never saw the services stopped"
    );
    let state = bench.device("ap1").state();
    assert_untouched(&state);
    assert!(state.sysupgrade_calls.is_empty());
    assert_eq!(state.running_services, ["uhttpd", "collectd"]);

    bench.stop().await;
}

#[tokio::test]
async fn a_link_cut_during_the_upload_is_retried() {
    let bench = Bench::with_ap1(faulty(Faults {
        cut_link_after_bytes: Some(1_000_000),
        ..Faults::default()
    }))
    .await;

    let upgrade = bench.upgrade("ap1", UPGRADE).await;
    upgrade
        .expect("success", 0)
        .expect_line(&[
            "attempt 1 failed: the link broke during the upload, after",
            "of 3150109 bytes; retrying in",
        ])
        .expect_line(&["checksum of the uploaded file matches"]);
    assert_eq!(upgrade.record["attempts"], 2);
    let uploads = upgrade
        .log()
        .iter()
        .filter(|line| line.starts_with("uploading 3150109 bytes"))
        .count();
    assert_eq!(uploads, 2);
    let state = bench.device("ap1").state();
    assert_eq!(state.flash_count, 1);
    assert_eq!(state.release.os_identifier(), OPENWRT_24);

    bench.stop().await;
}

#[tokio::test]
async fn sysupgrade_exiting_nonzero_after_commencing_is_no_verdict() {
    let bench = Bench::with_ap1(faulty(Faults {
        exits_nonzero_after_commencing: true,
        ..Faults::default()
    }))
    .await;

    let upgrade = bench.upgrade("ap1", UPGRADE).await;
    upgrade
        .expect("success", 0)
        .expect_line(&["sysupgrade: Commencing upgrade"])
        .expect_line(&["sysupgrade commenced; the device is flashing"]);
    let state = bench.device("ap1").state();
    assert_eq!(state.flash_count, 1);
    assert_eq!(state.release.os_identifier(), OPENWRT_24);

    bench.stop().await;
}

#[tokio::test]
async fn sysupgrade_refusing_before_commencing_aborts_with_its_output() {
    let bench = Bench::with_ap1(faulty(Faults {
        refuses_before_commencing: true,
        ..Faults::default()
    }))
    .await;

    let upgrade = bench.upgrade("ap1", UPGRADE).await;
    upgrade
        .expect("aborted", 2)
        .expect_line(&["sysupgrade: Failed to create the configuration backup."])
        .expect_line(&[
            "aborted: sysupgrade refused before commencing (exit status 1)",
            "Failed to create the configuration backup.",
        ])
        .expect_no_line("commenced");
    let state = bench.device("ap1").state();
    assert_untouched(&state);
    assert_eq!(state.sysupgrade_calls.len(), 2);
    assert_eq!(state.running_services, SERVICES);

    bench.stop().await;
}

#[tokio::test]
async fn a_device_that_never_returns_fails_the_upgrade() {
    let bench = Bench::with_ap1(faulty(Faults {
        never_returns: true,
        ..Faults::default()
    }))
    .await;
    bench.set("openwrt.reconnect_attempts", "2").await;
    let device = bench.device("ap1");

    let upgrade = bench.upgrade("ap1", UPGRADE).await;
    upgrade
        .expect("failed", 3)
        .expect_line(&["sysupgrade commenced"])
        .expect_line(&["attempt 1 of 2: cannot reach"])
        .expect_line(&["attempt 2 of 2: cannot reach"]);
    assert_eq!(
        upgrade.last_line(),
        format!(
            "failed: the device did not come back after 2 attempts on {}, {}",
            device.address(),
            device.alternate_address()
        )
    );
    let state = device.state();
    assert_eq!(state.flash_count, 1);
    assert!(!state.up);

    bench.stop().await;
}

#[tokio::test]
async fn a_device_back_on_its_old_firmware_fails_the_upgrade() {
    let bench = Bench::with_ap1(faulty(Faults {
        returns_with_old_firmware: true,
        ..Faults::default()
    }))
    .await;
    let before = bench.device("ap1").state();

    let upgrade = bench.upgrade("ap1", UPGRADE).await;
    upgrade.expect("failed", 3);
    assert_eq!(
        upgrade.last_line(),
        format!(
            "failed: the device rebooted into the old firmware: it runs {OPENWRT_23}, not \
             {OPENWRT_24}"
        )
    );
    let state = bench.device("ap1").state();
    assert_eq!(state.flash_count, 1);
    assert_ne!(state.boot_id, before.boot_id);
    assert_eq!(state.release.os_identifier(), OPENWRT_23);
    assert!(
        !bench
            .device_file("ap1", "/etc/openwisp/firmware_checksum")
            .exists(),
        "a failed upgrade left the checksum file"
    );

    bench.stop().await;
}

#[tokio::test]
async fn a_device_back_on_its_alternate_address_is_found() {
    let bench = Bench::with_ap1(faulty(Faults {
        returns_on_alternate_address: true,
        ..Faults::default()
    }))
    .await;
    let device = bench.device("ap1");

    let upgrade = bench.upgrade("ap1", UPGRADE).await;
    upgrade.expect("success", 0).expect_line(&[&format!(
        "the device answered on its alternate address {}",
        device.alternate_address()
    )]);
    let state = device.state();
    assert_eq!(state.listening_on, Some(device.alternate_address()));
    assert_eq!(state.flash_count, 1);
    assert_eq!(state.release.os_identifier(), OPENWRT_24);

    bench.stop().await;
}

#[tokio::test]
async fn a_changed_host_key_is_refused_naming_both_fingerprints() {
    let bench = Bench::start(vec![archer("ap1")]).await;
    let probe = bench
        .add_and_probe("ap1", "ap1", Login::Password(LAB_PASSWORD))
        .await;
    bench.import("WiFi", "24.10.0", &fixture(ARCHER_24)).await;
    let device = bench.device("ap1");
    let pinned = probe["host_key_fingerprint"]
        .as_str()
        .expect("a fingerprint");
    assert_eq!(
        pinned,
        openssh_fingerprint(&bench.scratch(""), &device.host_key())
    );

    device.change_host_key().await;
    let presented = openssh_fingerprint(&bench.scratch(""), &device.host_key());
    assert_ne!(pinned, presented);

    let probe = bench.fwu(&["device", "probe", "ap1"]).await;
    probe.expect_code(1);
    assert!(
        probe.stderr.contains("has changed")
            && probe.stderr.contains(&format!("pinned {pinned}"))
            && probe.stderr.contains(&format!("presented {presented}")),
        "{probe}"
    );
    // Consenting to new keys does not override a pinned one.
    let upgrade = bench.upgrade("ap1", UPGRADE).await;
    upgrade.expect("aborted", 2).expect_line(&[
        "aborted: host key of",
        &format!("pinned {pinned}, presented {presented}"),
    ]);
    assert_untouched(&device.state());
    assert!(device.state().sysupgrade_calls.is_empty());

    bench.stop().await;
}

#[tokio::test]
async fn a_wrong_password_is_a_clear_error() {
    let bench = Bench::start(vec![archer("ap1")]).await;
    bench
        .add_device("ap1", "ap1", Login::Password("not-the-password"))
        .await;
    bench.import("WiFi", "24.10.0", &fixture(ARCHER_24)).await;
    let device = bench.device("ap1");

    let probe = bench
        .fwu(&["device", "probe", "ap1", "--accept-new-host-key"])
        .await;
    probe.expect_code(1);
    let refused = format!(
        "{}:22 refused our credentials for user root",
        device.address()
    );
    assert!(probe.stderr.contains(&refused), "{probe}");

    let upgrade = bench
        .upgrade("ap1", &["--image", "1", "--accept-new-host-key"])
        .await;
    upgrade
        .expect("aborted", 2)
        .expect_line(&["aborted:", &refused]);
    assert_untouched(&device.state());
    assert!(device.state().sysupgrade_calls.is_empty());

    bench.stop().await;
}

#[tokio::test]
async fn an_unknown_host_key_needs_consent() {
    let bench = Bench::with_ap1(archer("ap1")).await;
    let device = bench.device("ap1");
    let presented = openssh_fingerprint(&bench.scratch(""), &device.host_key());

    let upgrade = bench.upgrade("ap1", &["--image", "1"]).await;
    upgrade.expect("aborted", 2).expect_line(&[
        "aborted: host key of",
        &format!("is unknown ({presented}); accept it explicitly to pin it"),
    ]);
    let shown = bench.fwu(&["--json", "device", "show", "ap1"]).await;
    assert_eq!(
        shown.expect_code(0).json()["host_key"],
        serde_json::Value::Null
    );
    assert_untouched(&device.state());
    assert!(device.state().sysupgrade_calls.is_empty());

    bench.stop().await;
}

#[tokio::test]
async fn a_device_back_with_another_host_key_fails_the_upgrade() {
    let bench = Bench::with_ap1(faulty(Faults {
        host_key_changes_on_reboot: true,
        ..Faults::default()
    }))
    .await;
    let device = bench.device("ap1");
    let pinned = openssh_fingerprint(&bench.scratch(""), &device.host_key());

    let upgrade = bench.upgrade("ap1", UPGRADE).await;
    upgrade.expect("failed", 3);
    let presented = openssh_fingerprint(&bench.scratch(""), &device.host_key());
    assert_ne!(pinned, presented);
    assert!(
        upgrade
            .last_line()
            .starts_with("failed: the device came back with another host key")
            && upgrade
                .last_line()
                .contains(&format!("pinned {pinned}, presented {presented}")),
        "{}",
        upgrade.last_line()
    );
    // The device did flash; only who it is now is in doubt.
    assert_eq!(device.state().flash_count, 1);

    bench.stop().await;
}
