//! Upgrades that go as planned, and the preconditions that stop one before
//! anything is changed: `fwu upgrade` against lab devices, judged by its
//! exit status, its `--json` record and what the device shows afterwards.
//!
//! Every test has its own lab, data directory and keyring service, so the
//! tests run in parallel.

mod common;

use common::{
    archer, fixture, fixture_sha256, make_key, Bench, Login, ARCHER, ARCHER_24, LAB_PASSWORD,
    OPENWRT_23, OPENWRT_24, SERVICES, UNIFI, UNIFI_24,
};
use fwu_lab::DeviceSpec;

#[tokio::test]
async fn upgrade_to_24_10_then_the_same_image_is_not_needed() {
    let keys = tempfile::tempdir().expect("a temporary directory");
    let (key, public) = make_key(keys.path(), "id_ed25519");
    let mut spec = archer("ap1");
    // Only the key can log in, so the upgrade proves key-file logins.
    spec.password = None;
    spec.authorized_keys = vec![public];
    let bench = Bench::start(vec![spec]).await;
    let device = bench.device("ap1");

    let probe = bench.add_and_probe("ap1", "ap1", Login::Key(&key)).await;
    assert_eq!(probe["identity"]["board"], ARCHER);
    assert_eq!(probe["identity"]["os_identifier"], OPENWRT_23);
    let image = bench.import("WiFi", "24.10.0", &fixture(ARCHER_24)).await;
    let before = device.state();

    let upgrade = bench.upgrade("ap1", &["--build", "WiFi", "24.10.0"]).await;
    upgrade
        .expect("success", 0)
        .expect_line(&[&format!("connected to root@{}:22", device.address())])
        .expect_line(&["device reports board tplink,archer-c7-v5", OPENWRT_23])
        .expect_line(&["uploading 3150109 bytes"])
        .expect_line(&["checksum of the uploaded file matches"])
        .expect_line(&["the device accepts the image"])
        .expect_line(&["sysupgrade: Commencing upgrade"])
        .expect_line(&["sysupgrade commenced"]);
    assert!(
        upgrade
            .last_line()
            .starts_with("success: the device rebooted")
            && upgrade.last_line().ends_with(&format!("runs {OPENWRT_24}")),
        "{}",
        upgrade.last_line()
    );
    let record = &upgrade.record;
    assert_eq!(record["device"], "ap1");
    assert_eq!(record["image"], image);
    assert_eq!(record["status"], "success");
    assert_eq!(record["progress"], 100);
    assert!(record["id"].is_i64(), "{record:#}");
    assert!(upgrade.log().len() >= 10, "{record:#}");

    let after = device.state();
    assert_eq!(after.flash_count, 1);
    assert_eq!(after.release.os_identifier(), OPENWRT_24);
    assert_ne!(after.boot_id, before.boot_id);
    assert_eq!(after.running_services, SERVICES);
    let calls = &after.sysupgrade_calls;
    assert_eq!(calls.len(), 2, "{calls:?}");
    let remote = calls[1]
        .last()
        .expect("sysupgrade was given a file")
        .clone();
    assert!(remote.starts_with("/tmp/fwu-"), "{calls:?}");
    assert_eq!(calls[0], ["--test", remote.as_str()]);
    assert_eq!(calls[1], [remote.as_str()]);
    let sha256 = fixture_sha256(ARCHER_24);
    let checksum = bench.device_file("ap1", "/etc/openwisp/firmware_checksum");
    let checksum = std::fs::read_to_string(&checksum).expect("the checksum file was written");
    assert_eq!(checksum.trim(), sha256);

    let probe = bench.fwu(&["--json", "device", "probe", "ap1"]).await;
    let probe = probe.expect_code(0).json();
    assert_eq!(probe["identity"]["os_identifier"], OPENWRT_24);
    assert_eq!(probe["identity"]["version"], "24.10.0");
    assert_eq!(probe["identity"]["boot_id"], after.boot_id.as_str());
    assert_eq!(probe["identity"]["checksum"], sha256.as_str());
    assert_eq!(probe["device"]["os_identifier"], OPENWRT_24);

    let shown = bench.operation(upgrade.id()).await;
    shown.run.expect_code(0);
    assert_eq!(shown.record["status"], "success");
    assert_eq!(shown.record["device"], "ap1");
    assert_eq!(shown.record["image"], image);
    assert_eq!(shown.log(), upgrade.log());

    let again = bench.upgrade("ap1", &["--build", "WiFi", "24.10.0"]).await;
    again
        .expect("not-needed", 0)
        .expect_no_line("uploading")
        .expect_no_line("flashing:");
    assert!(
        again.last_line().starts_with("not needed"),
        "{}",
        again.last_line()
    );
    assert_ne!(again.id(), upgrade.id());
    let unchanged = device.state();
    assert_eq!(unchanged.flash_count, 1);
    assert_eq!(unchanged.sysupgrade_calls.len(), 2);
    assert_eq!(unchanged.boot_id, after.boot_id);

    bench.stop().await;
}

#[tokio::test]
async fn an_image_for_another_board_is_refused_before_uploading() {
    let bench = Bench::start(vec![archer("ap1")]).await;
    bench
        .add_device("ap1", "ap1", Login::Password(LAB_PASSWORD))
        .await;
    bench.import("WiFi", "24.10.0", &fixture(ARCHER_24)).await;
    let unifi = bench.import("WiFi", "24.10.0", &fixture(UNIFI_24)).await;

    let upgrade = bench
        .upgrade(
            "ap1",
            &["--image", &unifi.to_string(), "--accept-new-host-key"],
        )
        .await;
    upgrade
        .expect("aborted", 2)
        .expect_line(&[
            "aborted: the image is for boards [ubnt,unifi-ac-lite]",
            "the device is tplink,archer-c7-v5",
            "nothing was uploaded",
        ])
        .expect_no_line("uploading");
    let state = bench.device("ap1").state();
    assert_eq!(state.sysupgrade_calls, Vec::<Vec<String>>::new());
    assert_eq!(state.flash_count, 0);
    assert_eq!(state.release.os_identifier(), OPENWRT_23);

    bench.stop().await;
}

#[tokio::test]
async fn an_image_needing_a_config_reset_takes_sysupgrade_n() {
    let mut spec = DeviceSpec::new("ap1", UNIFI, "23.05.3");
    spec.reboot_time = std::time::Duration::from_secs(1);
    let bench = Bench::start(vec![spec]).await;
    bench
        .add_device("ap1", "ap1", Login::Password(LAB_PASSWORD))
        .await;
    bench.import("WiFi", "24.10.0", &fixture(UNIFI_24)).await;
    let device = bench.device("ap1");

    let keeping = bench
        .upgrade(
            "ap1",
            &["--build", "WiFi", "24.10.0", "--accept-new-host-key"],
        )
        .await;
    keeping
        .expect("aborted", 2)
        .expect_line(&[
            "aborted: the image's compat version 2.0 differs from the device's 1.0",
            "Config cannot be migrated: the switch driver changed, upgrade with -n",
        ])
        .expect_no_line("flashing:");
    let state = device.state();
    assert_eq!(state.flash_count, 0);
    assert!(
        state
            .sysupgrade_calls
            .iter()
            .all(|call| call[0] == "--test"),
        "{:?}",
        state.sysupgrade_calls
    );

    let resetting = bench
        .upgrade(
            "ap1",
            &["--build", "WiFi", "24.10.0", "--sysupgrade-option", "n"],
        )
        .await;
    resetting
        .expect("success", 0)
        .expect_line(&["flashing with `sysupgrade -n '/tmp/fwu-"]);
    let state = device.state();
    assert_eq!(state.flash_count, 1);
    assert_eq!(state.release.os_identifier(), OPENWRT_24);
    assert_eq!(state.compat_version, "2.0");
    let flash = state.sysupgrade_calls.last().expect("sysupgrade ran");
    assert_eq!(flash[0], "-n", "{flash:?}");

    bench.stop().await;
}

#[tokio::test]
async fn shell_metacharacters_stay_plain_text() {
    let bench = Bench::start(vec![archer("ap1")]).await;
    // Each would leave a file in /root if any shell ran it; /root survives
    // the reboot, so the files would still be there afterwards.
    let name = "ap1; touch /root/pwned-semicolon $(touch /root/pwned-subst) \
                `touch /root/pwned-tick` 'quote\" && touch /root/pwned-and";
    let version = "24.10.0$(touch /root/pwned-version);'\"`id`";
    bench
        .add_device(name, "ap1", Login::Password(LAB_PASSWORD))
        .await;
    let image = bench.import("WiFi", version, &fixture(ARCHER_24)).await;

    let upgrade = bench
        .upgrade(name, &["--build", "WiFi", version, "--accept-new-host-key"])
        .await;
    upgrade
        .expect("success", 0)
        .expect_line(&[&format!("for device {name}")]);
    assert_eq!(upgrade.record["device"], name);
    assert_eq!(upgrade.record["image"], image);

    let devices = bench.fwu(&["device", "list"]).await;
    devices.expect_code(0);
    assert!(devices
        .stdout
        .lines()
        .any(|line| line.starts_with(&format!("{name}\t"))));
    let shown = bench.fwu(&["--json", "device", "show", name]).await;
    assert_eq!(shown.expect_code(0).json()["name"], name);
    let builds = bench.fwu(&["--json", "build", "list", "WiFi"]).await;
    assert_eq!(builds.expect_code(0).json()[0]["version"], version);
    let operations = bench.fwu(&["operation", "list"]).await;
    assert!(
        operations.expect_code(0).stdout.contains(name),
        "{operations}"
    );

    let state = bench.device("ap1").state();
    assert_eq!(state.flash_count, 1);
    for call in &state.sysupgrade_calls {
        let file = call.last().expect("sysupgrade was given a file");
        assert!(
            file.starts_with("/tmp/fwu-") && file.ends_with(".bin") && !file.contains(' '),
            "{call:?}"
        );
    }
    let root = bench.device_file("ap1", "/root/.");
    let left: Vec<_> = std::fs::read_dir(&root)
        .expect("the device's /root")
        .map(|entry| entry.expect("an entry").file_name())
        .filter(|file| file.to_string_lossy().starts_with("pwned"))
        .collect();
    assert!(
        left.is_empty(),
        "a remote shell ran text from the catalogue: {left:?}"
    );

    bench.stop().await;
}

#[tokio::test]
async fn settings_round_trip_and_keep_the_design_defaults() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let data_dir = dir.path().join("data");
    let fwu = |args: &[&str]| {
        let output = std::process::Command::new(common::fwu_bin())
            .arg("--data-dir")
            .arg(&data_dir)
            .args(args)
            .output()
            .expect("fwu runs");
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).trim().to_string(),
            String::from_utf8_lossy(&output.stderr).trim().to_string(),
        )
    };
    let defaults = [
        ("retry.max_retries", "4"),
        ("retry.backoff", "60"),
        ("retry.backoff_cap", "600"),
        ("retry.jitter", "true"),
        ("openwrt.reconnect_delay", "120"),
        ("openwrt.retry_delay", "20"),
        ("openwrt.reconnect_attempts", "15"),
        ("openwrt.upgrade_timeout", "90"),
        ("image.size_limit", "31457280"),
    ];
    for (key, value) in defaults {
        assert_eq!(
            fwu(&["settings", "get", key]),
            (Some(0), value.into(), String::new())
        );
    }

    let set = fwu(&["settings", "set", "openwrt.reconnect_delay", "7"]);
    assert_eq!(set.0, Some(0), "{set:?}");
    assert_eq!(set.1, "openwrt.reconnect_delay = 7");
    assert_eq!(fwu(&["settings", "get", "openwrt.reconnect_delay"]).1, "7");
    let (code, listed, _) = fwu(&["--json", "settings", "list"]);
    assert_eq!(code, Some(0));
    let listed: serde_json::Value = serde_json::from_str(&listed).expect("JSON");
    assert_eq!(listed["openwrt.reconnect_delay"], 7);
    assert_eq!(listed["retry.max_retries"], 4);

    let (code, _, error) = fwu(&["settings", "set", "openwrt.reconnect_delay", "soon"]);
    assert_eq!(code, Some(1));
    assert!(
        error.contains("openwrt.reconnect_delay") && error.contains("\"soon\""),
        "{error}"
    );
    assert_eq!(fwu(&["settings", "get", "openwrt.reconnect_delay"]).1, "7");

    assert_eq!(
        fwu(&["settings", "unset", "openwrt.reconnect_delay"]).0,
        Some(0)
    );
    assert_eq!(
        fwu(&["settings", "get", "openwrt.reconnect_delay"]).1,
        "120"
    );
}

#[tokio::test]
async fn an_upgrade_that_cannot_start_exits_1_and_says_why() {
    let bench = Bench::start(Vec::new()).await;

    let run = bench
        .fwu(&["--json", "upgrade", "ap9", "--image", "1"])
        .await;
    run.expect_code(1);
    assert_eq!(run.stdout, "");
    assert_eq!(run.stderr.trim(), "fwu: no device \"ap9\"");

    // Nothing connects to it: the build is missing before that.
    let key = bench.scratch("id_ed25519");
    let key = key.to_str().expect("a UTF-8 path");
    let missing = bench
        .fwu(&["device", "add", "ap9", "--host", "127.0.0.1", "--key", key])
        .await;
    missing.expect_code(1);
    assert!(missing.stderr.contains("does not exist"), "{missing}");
    std::fs::write(key, "the key is never read: nothing connects").unwrap();
    bench
        .fwu(&["device", "add", "ap9", "--host", "127.0.0.1", "--key", key])
        .await
        .expect_code(0);
    let run = bench
        .fwu(&["upgrade", "ap9", "--build", "WiFi", "9.9"])
        .await;
    run.expect_code(1);
    assert_eq!(run.stderr.trim(), "fwu: no build \"WiFi 9.9\"");
    let listed = bench.fwu(&["--json", "operation", "list"]).await;
    assert_eq!(listed.expect_code(0).json(), serde_json::json!([]));

    bench.stop().await;
}
