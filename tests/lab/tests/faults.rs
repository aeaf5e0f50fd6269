//! Faults on the network (a relay cutting or slowing the link) and on
//! reboot (never returning, old firmware, another address, a new host key),
//! plus the power switch.

mod support;

use std::time::{Duration, Instant};

use fwu_lab::{release, DeviceSpec, Faults};
use support::{all_output, fixture, start, stdout, Client};

const ARCHER_24: &str = "openwrt-24.10.0-ath79-generic-tplink_archer-c7-v5-squashfs-sysupgrade.bin";
const DOWN: Duration = Duration::from_secs(10);
const BACK: Duration = Duration::from_secs(20);

fn spec(name: &str, faults: Faults) -> DeviceSpec {
    let mut spec = DeviceSpec::new(name, "tplink,archer-c7-v5", "23.05.3");
    spec.reboot_time = Duration::from_millis(500);
    spec.faults = faults;
    spec
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_link_breaks_one_upload_then_disarms() {
    let client = Client::new();
    let faults = Faults {
        cut_link_after_bytes: Some(200_000),
        ..Faults::default()
    };
    let (lab, _dir) = start(&client, vec![spec("archer", faults)]).await;
    let device = lab.device("archer");
    let image = fixture(ARCHER_24);

    let cut = client.upload(device, &image, "/tmp/firmware.bin").await;
    assert!(
        !cut.status.success(),
        "the upload went through: {}",
        all_output(&cut)
    );
    assert_eq!(device.faults().cut_link_after_bytes, None);

    let whole = client.upload(device, &image, "/tmp/firmware.bin").await;
    assert!(whole.status.success(), "{}", all_output(&whole));
    let size = client.run(device, "wc -c < /tmp/firmware.bin").await;
    assert_eq!(stdout(&size).trim(), "3150109");
    lab.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bandwidth_cap_slows_uploads() {
    let client = Client::new();
    let faults = Faults {
        bandwidth_bytes_per_second: Some(1_000_000),
        ..Faults::default()
    };
    let (lab, dir) = start(&client, vec![spec("archer", faults)]).await;
    let device = lab.device("archer");
    let file = dir.path().join("two-megabytes.bin");
    std::fs::write(&file, vec![7_u8; 2_000_000]).unwrap();
    let started = Instant::now();
    let upload = client.upload(device, &file, "/tmp/slow.bin").await;
    let took = started.elapsed();
    assert!(upload.status.success(), "{}", all_output(&upload));
    assert!(
        took >= Duration::from_millis(1500),
        "2 MB at 1 MB/s took {took:?}"
    );
    lab.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_that_never_returns_stays_down_until_powered_on() {
    let client = Client::new();
    let faults = Faults {
        never_returns: true,
        ..Faults::default()
    };
    let (lab, _dir) = start(&client, vec![spec("archer", faults)]).await;
    let device = lab.device("archer");
    client
        .upload(device, &fixture(ARCHER_24), "/tmp/firmware.bin")
        .await;
    client.run(device, "sysupgrade /tmp/firmware.bin").await;
    assert!(device.wait_until_down(DOWN).await);
    assert!(!device.wait_until_up(Duration::from_secs(3)).await);
    let state = device.state();
    assert_eq!(
        (state.up, state.listening_on, state.flash_count),
        (false, None, 1)
    );

    device.power_on().await;
    assert!(device.state().up);
    assert_eq!(device.state().release, release("24.10.0").unwrap());
    lab.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_can_return_with_its_old_firmware() {
    let client = Client::new();
    let faults = Faults {
        returns_with_old_firmware: true,
        ..Faults::default()
    };
    let (lab, _dir) = start(&client, vec![spec("archer", faults)]).await;
    let device = lab.device("archer");
    let before = device.state();
    client
        .upload(device, &fixture(ARCHER_24), "/tmp/firmware.bin")
        .await;
    let boot = device.state().boot_id;
    client.run(device, "sysupgrade /tmp/firmware.bin").await;
    assert!(device.wait_until_rebooted(&boot, DOWN + BACK).await);
    let after = device.state();
    assert_ne!(after.boot_id, before.boot_id);
    assert_eq!(after.release, before.release);
    let release = client
        .run(device, "grep DISTRIB_RELEASE /etc/openwrt_release")
        .await;
    assert_eq!(stdout(&release), "DISTRIB_RELEASE='23.05.3'\n");
    lab.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_can_return_on_its_alternate_address() {
    let client = Client::new();
    let faults = Faults {
        returns_on_alternate_address: true,
        ..Faults::default()
    };
    let (lab, _dir) = start(&client, vec![spec("archer", faults)]).await;
    let device = lab.device("archer");
    client
        .upload(device, &fixture(ARCHER_24), "/tmp/firmware.bin")
        .await;
    let boot = device.state().boot_id;
    client.run(device, "sysupgrade /tmp/firmware.bin").await;
    assert!(device.wait_until_rebooted(&boot, DOWN + BACK).await);
    assert_eq!(
        device.state().listening_on,
        Some(device.alternate_address())
    );

    let usual = client.run(device, "true").await;
    assert_eq!(
        usual.status.code(),
        Some(255),
        "the usual address still answers"
    );
    let alternate = client
        .run_at(device.alternate_address(), "ubus call system board", None)
        .await;
    assert!(
        stdout(&alternate).contains("24.10.0"),
        "{}",
        all_output(&alternate)
    );
    lab.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_keys_change_on_request_and_on_reboot_when_asked() {
    let client = Client::new();
    let (lab, _dir) = start(&client, vec![spec("archer", Faults::default())]).await;
    let device = lab.device("archer");
    let first = device.host_key();
    assert!(first.starts_with("ssh-ed25519 AAAA"), "{first}");

    // Kept across a power cycle.
    device.power_off().await;
    assert!(!device.state().up);
    device.power_on().await;
    assert_eq!(device.host_key(), first);
    assert!(client.run(device, "true").await.status.success());

    device.change_host_key().await;
    let second = device.host_key();
    assert_ne!(second, first);
    let refused = client.run(device, "true").await;
    assert_eq!(
        refused.status.code(),
        Some(255),
        "a changed key was accepted"
    );

    device.set_faults(Faults {
        host_key_changes_on_reboot: true,
        ..Faults::default()
    });
    device.power_off().await;
    device.power_on().await;
    assert_ne!(device.host_key(), second);
    lab.stop().await;
}
