//! End-to-end tests of the desktop window: the real app under Xvfb, driven
//! over WebDriver, against simulated OpenWrt devices of the lab.
//!
//! They import an image, add a lab device, accept its host key, upgrade it
//! and watch progress and status change live; they run a dry run and a
//! batch over three devices; they check that a changed host key raises the
//! alarm and is never pinned. A notification daemon on the test's bus must
//! receive the notifications of an upgrade that ran longer than a minute
//! and of the batch's end. Screenshots of each view land in
//! `<target>/tmp/ui-screenshots/`.

mod harness;

use std::time::Duration;

use fwu_lab::{DeviceSpec, Lab};
use harness::{fixture, openssh_fingerprint, Desktop, Window};

const BOARD: &str = "tplink,archer-c7-v5";
const IMAGE: &str = "openwrt-24.10.0-ath79-generic-tplink_archer-c7-v5-squashfs-sysupgrade.bin";
const OPENWRT_24: &str = "OpenWrt 24.10.0 r28427-6df0e3d02a";

/// The window tests share one X display and bus at a time: two WebKit
/// windows at once only slow both down on a small machine.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Starts one Archer C7 on OpenWrt 23.05.3 with the lab's password.
async fn lab_with_one_device(desktop: &Desktop) -> Lab {
    Lab::start(
        &desktop.work.path().join("lab"),
        vec![DeviceSpec::new("ap1", BOARD, "23.05.3")],
    )
    .await
    .expect("the lab starts (needs root, bubblewrap and dropbear)")
}

/// Changes a setting through the settings view.
async fn set_setting(window: &Window, key: &str, value: &str) {
    let row = format!("tr[data-setting='{key}']");
    window.fill(&format!("{row} input"), value).await;
    window.click(&format!("{row} button")).await;
    let expected = format!("{key} saved.");
    window
        .wait_until(
            &format!("saving {key}"),
            Duration::from_secs(10),
            || async {
                let status = window.text("#status-line").await;
                if let Some(error) = window.error_line().await {
                    panic!("saving {key} = {value} failed: {error}");
                }
                (status == expected).then_some(())
            },
        )
        .await;
}

/// Adds category WiFi and build 24.10.0, then imports the image by path.
async fn import_image(window: &Window) {
    window.go("#/firmware", "firmware").await;
    window.fill("#category-name", "WiFi").await;
    window.click("#category-form button[type=submit]").await;
    window
        .wait_for("#build-category option[value='WiFi']")
        .await;
    window.fill("#build-version", "24.10.0").await;
    window.click("#build-form button[type=submit]").await;
    window
        .wait_for("#import-build:not([disabled]) option")
        .await;
    window
        .fill("#import-path", &fixture(IMAGE).display().to_string())
        .await;
    window.click("#import-submit").await;
    let cell = window.text("table.images td.file-name").await;
    assert_eq!(cell, IMAGE);
    let build = window.text("section.build .meta").await;
    assert!(
        build.contains(OPENWRT_24.split(' ').next().unwrap()),
        "{build}"
    );
    assert!(
        build.contains("r28427-6df0e3d02a"),
        "the build took the image's OS identifier: {build}"
    );
}

/// Adds the lab device with its password through the devices view.
async fn add_device(window: &Window, lab: &Lab) {
    let device = lab.device("ap1");
    window.go("#/devices", "devices").await;
    window.click("#add-device summary").await;
    window.fill("#device-name", "ap1").await;
    window
        .fill("#device-host", &device.address().to_string())
        .await;
    window
        .fill(
            "#device-alternates",
            &device.alternate_address().to_string(),
        )
        .await;
    window
        .fill(
            "#device-password",
            device.password().expect("lab devices have a password"),
        )
        .await;
    window.fill("#device-site", "lab").await;
    window.fill("#device-tags", "floor-1").await;
    window.click("#add-device-submit").await;
    window.wait_for("tr[data-device='ap1']").await;
}

/// Probes ap1 from the devices table; returns the fingerprint the host key
/// dialog showed, after accepting it.
async fn probe_and_accept(window: &Window) -> String {
    window.click("tr[data-device='ap1'] button").await;
    window.wait_for("#host-key-dialog[open]").await;
    let shown = window.text("#host-key-fingerprint").await;
    window.click("#host-key-accept").await;
    window
        .wait_until("the probe to finish", Duration::from_secs(30), || async {
            if let Some(error) = window.error_line().await {
                panic!("the probe failed: {error}");
            }
            let status = window.text("#status-line").await;
            status.contains("running OpenWrt 23.05.3").then_some(())
        })
        .await;
    shown
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upgrade_runs_live_in_the_window_and_ends_with_a_notification() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let desktop = Desktop::start();
    let lab = lab_with_one_device(&desktop).await;
    let data_dir = desktop.work.path().join("data-dir");
    let window = Window::open(&desktop, &data_dir).await;

    // First run: an empty catalogue offers the guided tour.
    window.wait_for("#tour-start").await;
    window.screenshot("overview-first-run").await;

    // A simulated device reboots in seconds; waiting a minute after the
    // flash makes this upgrade long enough to end with a notification.
    window.go("#/settings", "settings").await;
    set_setting(&window, "openwrt.reconnect_delay", "61").await;
    set_setting(&window, "openwrt.retry_delay", "1").await;
    set_setting(&window, "retry.backoff", "2").await;

    import_image(&window).await;
    window.screenshot("firmware").await;
    add_device(&window, &lab).await;
    let shown = probe_and_accept(&window).await;
    assert_eq!(shown, openssh_fingerprint(&lab.device("ap1").host_key()));
    window.screenshot("devices").await;

    window.click("tr[data-device='ap1'] a").await;
    window
        .wait_for("main[data-view='device'] #upgrade-image option")
        .await;
    // A mark on the page that a reload would wipe out.
    window.script("window.fwuTestMark = 'still here';").await;
    window.click("#upgrade-start").await;
    window.wait_for("#operation-progress").await;

    let seen = std::sync::Mutex::new(Vec::new());
    let status = window
        .wait_until("the upgrade to end", Duration::from_secs(300), || {
            let (seen, window) = (&seen, &window);
            async move {
                let progress = window
                    .script(
                        "const p = document.querySelector('#operation-progress'); \
                     const s = document.querySelector('#operation-status'); \
                     return [p ? p.value : -1, s ? s.textContent : ''];",
                    )
                    .await;
                let value = progress[0].as_f64().unwrap_or(-1.0) as i64;
                let status = progress[1].as_str().unwrap_or("").to_string();
                let mut seen = seen.lock().expect("progress list");
                if seen.last() != Some(&value) {
                    seen.push(value);
                }
                // The verdict may arrive a moment before the last progress
                // figure is shown; a success must end at 100.
                let done = match status.as_str() {
                    "success" => value == 100,
                    "failed" | "aborted" | "cancelled" => true,
                    _ => false,
                };
                done.then_some((status, value))
            }
        })
        .await;
    window.screenshot("device-after-upgrade").await;
    let log = window.text("#operation-log").await;
    assert_eq!(status, ("success".to_string(), 100), "log:\n{log}");
    let seen = seen.into_inner().expect("progress list");
    assert!(
        seen.iter().any(|&value| value > 0 && value < 100),
        "progress moved live through intermediate values, saw {seen:?}"
    );
    assert_eq!(
        window.script("return window.fwuTestMark;").await,
        "still here"
    );
    let cancel = window
        .client
        .find(fantoccini::Locator::Css("#operation-cancel"))
        .await;
    assert!(
        cancel.is_err(),
        "cancel is not offered once the operation ended"
    );
    // The view reads the device again 300 ms after the verdict.
    window
        .wait_until("the new firmware", Duration::from_secs(10), || async {
            let firmware = window
                .text("#device-details dd[data-term='Firmware']")
                .await;
            (firmware == OPENWRT_24).then_some(())
        })
        .await;
    assert_eq!(
        lab.device("ap1").state().release.os_identifier(),
        OPENWRT_24
    );

    let notification = window
        .wait_until("the notification", Duration::from_secs(20), || async {
            desktop
                .notifications()
                .into_iter()
                .find(|(summary, _)| summary.starts_with("Upgrade of ap1"))
        })
        .await;
    assert_eq!(notification.0, "Upgrade of ap1 ended: success");
    assert!(!notification.1.is_empty(), "the body says how it ended");

    window.go("#/overview", "overview").await;
    let chart = window.text("#firmware-chart").await;
    assert!(chart.contains(OPENWRT_24), "{chart}");
    window.screenshot("overview").await;
    window.go("#/settings", "settings").await;
    let keys = window.text("#host-keys-table").await;
    assert!(keys.contains(&shown), "{keys}");
    window.screenshot("settings").await;

    window.close().await;
    lab.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_changed_host_key_raises_the_alarm_and_is_never_pinned() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let desktop = Desktop::start();
    let lab = lab_with_one_device(&desktop).await;
    let data_dir = desktop.work.path().join("data-dir");
    let window = Window::open(&desktop, &data_dir).await;

    add_device(&window, &lab).await;
    let pinned = probe_and_accept(&window).await;
    lab.device("ap1").change_host_key().await;
    let presented = openssh_fingerprint(&lab.device("ap1").host_key());
    assert_ne!(pinned, presented);

    window.click("tr[data-device='ap1'] button").await;
    window.wait_for("#host-key-alarm[open]").await;
    let alarm = window.text("#host-key-alarm-text").await;
    assert!(alarm.contains("has changed"), "{alarm}");
    assert!(
        alarm.contains(&presented),
        "the alarm names the key presented: {alarm}"
    );
    window.screenshot("host-key-alarm").await;
    // The alarm offers no way to accept the key: closing is all there is.
    let buttons =
        window.script("return document.querySelectorAll('#host-key-alarm button').length;");
    assert_eq!(buttons.await, 1);
    window.click("#host-key-alarm-close").await;

    window.go("#/settings", "settings").await;
    let keys = window.text("#host-keys-table").await;
    assert!(keys.contains(&pinned), "the first key stays pinned: {keys}");
    assert!(
        !keys.contains(&presented),
        "the changed key was not pinned: {keys}"
    );

    window.close().await;
    lab.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_over_three_devices_runs_after_a_dry_run_and_a_confirmation() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let desktop = Desktop::start();
    let specs = ["ap1", "ap2", "ap3"]
        .iter()
        .map(|name| DeviceSpec::new(name, BOARD, "23.05.3"))
        .collect();
    let lab = Lab::start(&desktop.work.path().join("lab"), specs)
        .await
        .expect("the lab starts (needs root, bubblewrap and dropbear)");
    let data_dir = desktop.work.path().join("data-dir");
    let window = Window::open(&desktop, &data_dir).await;
    window.go("#/settings", "settings").await;
    set_setting(&window, "openwrt.reconnect_delay", "3").await;
    set_setting(&window, "openwrt.retry_delay", "1").await;
    import_image(&window).await;

    // Each device is added with its password and probed, its host key
    // accepted, so that the catalogue knows its board and firmware.
    for name in ["ap1", "ap2", "ap3"] {
        let device = lab.device(name);
        window.go("#/devices", "devices").await;
        window.click("#add-device summary").await;
        window.fill("#device-name", name).await;
        window
            .fill("#device-host", &device.address().to_string())
            .await;
        window
            .fill("#device-password", device.password().expect("a password"))
            .await;
        window.fill("#device-tags", "batch-test").await;
        window.click("#add-device-submit").await;
        window.wait_for(&format!("tr[data-device='{name}']")).await;
        window
            .click(&format!("tr[data-device='{name}'] button"))
            .await;
        window.wait_for("#host-key-dialog[open]").await;
        window.click("#host-key-accept").await;
        window
            .wait_until("the probe", Duration::from_secs(30), || async {
                let status = window.text("#status-line").await;
                status.starts_with(&format!("{name}: board")).then_some(())
            })
            .await;
    }

    window.go("#/batch", "batch").await;
    window.fill("#batch-tags", "batch-test").await;
    window.click("#batch-firmwareless").await;
    window.click("#batch-dry-run").await;
    let planned = window.text("#batch-planned tbody").await;
    for name in ["ap1", "ap2", "ap3"] {
        assert!(
            planned.contains(name),
            "the dry run lists {name}: {planned}"
        );
    }
    window.screenshot("mass-upgrade-dry-run").await;
    window.click("#batch-start").await;
    window.wait_for("#confirm-dialog[open]").await;
    assert_eq!(window.text("#confirm-yes").await, "Upgrade 3 devices");
    window.click("#confirm-yes").await;
    window.wait_for("#batch-board").await;
    let status = window
        .wait_until("the batch to end", Duration::from_secs(240), || async {
            let status = window.text("#batch-status").await;
            (status != "running").then_some(status)
        })
        .await;
    window.screenshot("mass-upgrade-board").await;
    assert_eq!(status, "success", "{}", window.text("#batch-summary").await);
    for name in ["ap1", "ap2", "ap3"] {
        assert_eq!(lab.device(name).state().release.os_identifier(), OPENWRT_24);
    }
    let notification = window
        .wait_until(
            "the batch notification",
            Duration::from_secs(20),
            || async {
                desktop
                    .notifications()
                    .into_iter()
                    .find(|(summary, _)| summary.starts_with("Batch"))
            },
        )
        .await;
    assert!(
        notification.0.ends_with("ended: success"),
        "{notification:?}"
    );
    assert!(
        notification.1.starts_with("3 of 3 devices upgraded"),
        "{notification:?}"
    );

    window.close().await;
    lab.stop().await;
}
