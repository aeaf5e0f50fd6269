//! The device's sysupgrade: image checks against the board and the compat
//! version, `--test`, a full flash with its reboot, and the faults that
//! change what sysupgrade does.

mod support;

use std::time::Duration;

use fwu_lab::{
    board, release, sample_image_name, write_sample_image, DeviceSpec, Faults, SampleImage,
};
use support::{all_output, fixture, start, stdout, Client};

const ARCHER_24: &str = "openwrt-24.10.0-ath79-generic-tplink_archer-c7-v5-squashfs-sysupgrade.bin";
const UNIFI_24: &str = "openwrt-24.10.0-ath79-generic-ubnt_unifi-ac-lite-squashfs-sysupgrade.bin";
const GLINET_SIGNED: &str =
    "openwrt-24.10.0-ath79-nand-glinet_gl-ar300m-nand-squashfs-sysupgrade.bin";
const LEGACY: &str = "openwrt-19.07.10-ar71xx-generic-ubnt-unifi-squashfs-sysupgrade.bin";

/// How long a device may take to go down after sysupgrade commences.
const DOWN: Duration = Duration::from_secs(10);
/// How long a device may take to come back (reboot time is 1 s here).
const BACK: Duration = Duration::from_secs(20);

fn spec(name: &str, board: &str) -> DeviceSpec {
    let mut spec = DeviceSpec::new(name, board, "23.05.3");
    spec.reboot_time = Duration::from_secs(1);
    spec
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_mode_accepts_the_right_board_and_refuses_another() {
    let client = Client::new();
    let (lab, _dir) = start(&client, vec![spec("archer", "tplink,archer-c7-v5")]).await;
    let device = lab.device("archer");
    client
        .upload(device, &fixture(ARCHER_24), "/tmp/right.bin")
        .await;
    client
        .upload(device, &fixture(UNIFI_24), "/tmp/wrong.bin")
        .await;

    let right = client.run(device, "sysupgrade --test /tmp/right.bin").await;
    assert!(right.status.success(), "{}", all_output(&right));
    let right_short = client.run(device, "sysupgrade -T /tmp/right.bin").await;
    assert!(right_short.status.success());

    let wrong = client.run(device, "sysupgrade --test /tmp/wrong.bin").await;
    assert_eq!(wrong.status.code(), Some(1));
    let text = all_output(&wrong);
    assert!(
        text.contains("Device tplink,archer-c7-v5 not supported by this image"),
        "{text}"
    );
    assert!(text.contains("Image check failed."), "{text}");

    let state = device.state();
    assert_eq!(state.flash_count, 0);
    assert_eq!(
        state.sysupgrade_calls,
        [
            vec!["--test", "/tmp/right.bin"],
            vec!["-T", "/tmp/right.bin"],
            vec!["--test", "/tmp/wrong.bin"]
        ]
    );
    lab.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flashing_reboots_into_the_new_release_keeping_etc() {
    let client = Client::new();
    let (lab, _dir) = start(&client, vec![spec("archer", "tplink,archer-c7-v5")]).await;
    let device = lab.device("archer");
    let before = device.state();
    client
        .upload(device, &fixture(ARCHER_24), "/tmp/firmware.bin")
        .await;
    client
        .run(
            device,
            "mkdir -p /etc/openwisp; echo kept > /etc/openwisp/mark",
        )
        .await;

    let boot = device.state().boot_id;
    let flash = client.run(device, "sysupgrade -v /tmp/firmware.bin").await;
    let text = all_output(&flash);
    assert!(
        text.contains("Commencing upgrade. Closing all shell sessions."),
        "{text}"
    );
    assert!(device.wait_until_rebooted(&boot, DOWN + BACK).await);

    let after = device.state();
    assert_ne!(after.boot_id, before.boot_id);
    assert_eq!(after.flash_count, 1);
    assert_eq!(after.release, release("24.10.0").unwrap());
    let board = client
        .run(
            device,
            "ubus call system board; cat /etc/openwisp/mark; ls /tmp",
        )
        .await;
    let text = stdout(&board);
    assert!(text.contains("\"version\": \"24.10.0\""), "{text}");
    assert!(text.contains("\"kernel\": \"6.6.73\""), "{text}");
    assert!(text.contains("kept\n"), "/etc was not kept: {text}");
    assert!(
        !text.contains("firmware.bin"),
        "/tmp was not cleared: {text}"
    );
    let boot_id = client
        .run(device, "cat /proc/sys/kernel/random/boot_id")
        .await;
    assert_eq!(stdout(&boot_id).trim(), after.boot_id);
    lab.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incompatible_config_needs_n_and_n_resets_etc() {
    let client = Client::new();
    let (lab, _dir) = start(&client, vec![spec("unifi", "ubnt,unifi-ac-lite")]).await;
    let device = lab.device("unifi");
    client
        .upload(device, &fixture(UNIFI_24), "/tmp/firmware.bin")
        .await;
    client.run(device, "echo mine > /etc/mark").await;

    for command in [
        "sysupgrade --test /tmp/firmware.bin",
        "sysupgrade -F /tmp/firmware.bin",
    ] {
        let refused = client.run(device, command).await;
        assert_eq!(refused.status.code(), Some(1), "{command}");
        let text = all_output(&refused);
        assert!(
            text.contains("the config is incompatible to the new image (1.0->2.0)"),
            "{text}"
        );
        assert!(
            text.contains("Config cannot be migrated: the switch driver changed"),
            "{text}"
        );
    }
    let with_n = client
        .run(device, "sysupgrade -n --test /tmp/firmware.bin")
        .await;
    assert!(with_n.status.success(), "{}", all_output(&with_n));
    assert_eq!(device.state().flash_count, 0);

    let boot = device.state().boot_id;
    client.run(device, "sysupgrade -n /tmp/firmware.bin").await;
    assert!(device.wait_until_rebooted(&boot, DOWN + BACK).await);
    let state = device.state();
    assert_eq!(
        (state.flash_count, state.compat_version.as_str()),
        (1, "2.0")
    );
    // The configuration is back to defaults, and the lab's key still works.
    let mark = client.run(device, "cat /etc/mark").await;
    assert_eq!(mark.status.code(), Some(1), "{}", all_output(&mark));
    lab.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn images_without_metadata_need_force() {
    let client = Client::new();
    let (lab, _dir) = start(&client, vec![spec("unifi", "ubnt,unifi-ac-lite")]).await;
    let device = lab.device("unifi");
    client
        .upload(device, &fixture(LEGACY), "/tmp/legacy.bin")
        .await;
    let refused = client
        .run(device, "sysupgrade --test /tmp/legacy.bin")
        .await;
    assert_eq!(refused.status.code(), Some(1));
    let text = all_output(&refused);
    assert!(text.contains("Image metadata not present"), "{text}");
    assert!(text.contains("Use sysupgrade -F"), "{text}");

    let forced = client
        .run(device, "sysupgrade -F --test /tmp/legacy.bin")
        .await;
    assert!(forced.status.success(), "{}", all_output(&forced));
    let boot = device.state().boot_id;
    client.run(device, "sysupgrade -F -n /tmp/legacy.bin").await;
    assert!(device.wait_until_rebooted(&boot, DOWN + BACK).await);
    // FIXME: a flash without metadata leaves the release unknown (see the
    // lab's apply_flash); this asserts what the lab does today.
    assert_eq!(device.state().release.version, "unknown");
    lab.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_and_sample_images_are_read_from_their_tail() {
    let client = Client::new();
    let (lab, dir) = start(&client, vec![spec("glinet", "glinet,gl-ar300m-nand")]).await;
    let device = lab.device("glinet");
    client
        .upload(device, &fixture(GLINET_SIGNED), "/tmp/signed.bin")
        .await;
    let signed = client
        .run(device, "sysupgrade --test /tmp/signed.bin")
        .await;
    assert!(signed.status.success(), "{}", all_output(&signed));

    let glinet = board("glinet,gl-ar300m-nand").unwrap();
    let mut image = SampleImage::new(glinet, &release("24.10.0").unwrap());
    image.signed = true;
    image.size = 200_000;
    let path = dir.path().join(sample_image_name(glinet, &image.release));
    write_sample_image(&path, &image).unwrap();
    client.upload(device, &path, "/tmp/sample.bin").await;
    let sample = client
        .run(device, "sysupgrade --test /tmp/sample.bin")
        .await;
    assert!(sample.status.success(), "{}", all_output(&sample));

    let archer = board("tplink,archer-c7-v5").unwrap();
    let other = SampleImage::new(archer, &release("24.10.0").unwrap());
    write_sample_image(&path, &other).unwrap();
    client.upload(device, &path, "/tmp/other.bin").await;
    let refused = client.run(device, "sysupgrade --test /tmp/other.bin").await;
    assert_eq!(refused.status.code(), Some(1), "{}", all_output(&refused));
    lab.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sysupgrade_faults_change_what_it_prints_and_does() {
    let client = Client::new();
    let (lab, _dir) = start(&client, vec![spec("archer", "tplink,archer-c7-v5")]).await;
    let device = lab.device("archer");
    client
        .upload(device, &fixture(ARCHER_24), "/tmp/firmware.bin")
        .await;

    device.set_faults(Faults {
        test_fails: true,
        ..Faults::default()
    });
    let failed = client
        .run(device, "sysupgrade --test /tmp/firmware.bin")
        .await;
    assert_eq!(failed.status.code(), Some(1));
    assert!(all_output(&failed).contains("Image check 'platform_check_image' failed."));

    device.set_faults(Faults {
        refuses_before_commencing: true,
        ..Faults::default()
    });
    let tested = client
        .run(device, "sysupgrade --test /tmp/firmware.bin")
        .await;
    assert!(tested.status.success());
    let refused = client.run(device, "sysupgrade /tmp/firmware.bin").await;
    assert_eq!(refused.status.code(), Some(1));
    let text = all_output(&refused);
    assert!(!text.contains("Commencing"), "{text}");
    assert!(device.state().up);
    assert_eq!(device.state().flash_count, 0);

    device.set_faults(Faults {
        exits_nonzero_after_commencing: true,
        ..Faults::default()
    });
    let boot = device.state().boot_id;
    let nonzero = client.run(device, "sysupgrade /tmp/firmware.bin").await;
    assert_eq!(nonzero.status.code(), Some(1));
    assert!(all_output(&nonzero).contains("Commencing upgrade"));
    assert!(device.wait_until_rebooted(&boot, DOWN + BACK).await);
    assert_eq!(device.state().flash_count, 1);
    assert_eq!(device.state().release.version, "24.10.0");
    lab.stop().await;
}
