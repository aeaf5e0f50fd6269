//! End-to-end tests of the window's flows beyond one upgrade: the tools of
//! the devices view for many devices (CSV import and export, discovery on
//! an address range, probing by tag), the guided tour followed to a
//! successful upgrade, and a batch whose window is closed mid-flash: the
//! close asks first, and the next start carries the batch on to its end,
//! whose report is then saved. Screenshots go to the same directory as
//! the other window tests'.

mod harness;

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use fwu_engine::actions::{Credential, DeviceInput, Engine};
use fwu_engine::events::Discard;
use fwu_engine::settings::Settings;
use fwu_lab::{DeviceSpec, Lab};
use harness::{fixture, openssh_fingerprint, Desktop, Window};

const BOARD: &str = "tplink,archer-c7-v5";
const IMAGE: &str = "openwrt-24.10.0-ath79-generic-tplink_archer-c7-v5-squashfs-sysupgrade.bin";
const OPENWRT_24: &str = "OpenWrt 24.10.0 r28427-6df0e3d02a";

/// One window at a time on this small machine (see `window.rs`).
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Makes an ed25519 key pair without passphrase; returns the private key's
/// path and the public key's text.
fn key_pair(dir: &Path) -> (PathBuf, String) {
    let key = dir.join("test_ed25519");
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "fwu-test", "-f"])
        .arg(&key)
        .status()
        .expect("ssh-keygen runs (install openssh-client)");
    assert!(status.success(), "ssh-keygen failed");
    let public = std::fs::read_to_string(key.with_extension("pub")).expect("public key");
    (key, public)
}

/// Starts lab devices on 23.05.3 that accept `public_key`.
async fn lab(desktop: &Desktop, names: &[&str], public_key: &str) -> Lab {
    let specs = names
        .iter()
        .map(|name| {
            let mut spec = DeviceSpec::new(name, BOARD, "23.05.3");
            spec.authorized_keys = vec![public_key.to_string()];
            spec
        })
        .collect();
    Lab::start(&desktop.work.path().join("lab"), specs)
        .await
        .expect("the lab starts (needs root, bubblewrap and dropbear)")
}

/// The text of an element right now, read in the page in one step, so that
/// a view repainting itself cannot leave a stale element in between.
async fn text_now(window: &Window, css: &str) -> Option<String> {
    let script = format!(
        "const found = document.querySelector({}); return found ? found.textContent : null;",
        serde_json::json!(css)
    );
    window.script(&script).await.as_str().map(str::to_string)
}

/// How many elements match right now.
async fn count_now(window: &Window, css: &str) -> u64 {
    let script = format!(
        "return document.querySelectorAll({}).length;",
        serde_json::json!(css)
    );
    window.script(&script).await.as_u64().unwrap_or(0)
}

/// Waits until the status line says something containing `text`, failing
/// at once on an error.
async fn status_says(window: &Window, what: &str, text: &str, limit: Duration) -> String {
    window
        .wait_until(what, limit, || async {
            if let Some(error) = window.error_line().await {
                panic!("{what}: the window shows an error: {error}");
            }
            let status = window.text("#status-line").await;
            status.contains(text).then_some(status)
        })
        .await
}

#[tokio::test(flavor = "multi_thread")]
async fn csv_import_and_export_discovery_and_probing_by_tag() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let desktop = Desktop::start();
    let (key, public_key) = key_pair(desktop.work.path());
    let lab = lab(&desktop, &["ap1", "ap2"], &public_key).await;
    let data_dir = desktop.work.path().join("data-dir");
    let window = Window::open(&desktop, &data_dir).await;
    window.go("#/devices", "devices").await;

    // Line 3 names no host, line 4 repeats a name: both refused. Nothing
    // here is ever connected to (these devices are not probed).
    let csv = desktop.work.path().join("fleet.csv");
    std::fs::write(
        &csv,
        "name,host,site,tags\n\
         office-1,127.255.254.1,acme,office\n\
         office-2,,acme,office\n\
         office-1,127.255.254.3,acme,office\n\
         office-4,127.255.254.4,acme,office\n",
    )
    .expect("CSV written");
    window.click("#csv-import summary").await;
    window
        .fill("#csv-import-path", &csv.display().to_string())
        .await;
    window.click("#csv-import-strict").await;
    window.click("#csv-import-submit").await;
    let verdict = window
        .wait_until("the strict import", Duration::from_secs(10), || async {
            let verdict = window.text("#csv-import-verdict").await;
            (!verdict.is_empty()).then_some(verdict)
        })
        .await;
    assert!(
        verdict.starts_with("Imported nothing: 2 row(s) refused"),
        "{verdict}"
    );
    let lines = window
        .script(
            "return [...document.querySelectorAll('#csv-refused tr[data-line]')] \
             .map((row) => Number(row.dataset.line));",
        )
        .await;
    assert_eq!(lines, serde_json::json!([3, 4]));
    assert_eq!(
        window.text("#device-count").await,
        "0 of 0 devices",
        "a strict import with refused rows adds nothing"
    );
    window.screenshot("devices-csv-refused").await;

    window.click("#csv-import-strict").await;
    window.click("#csv-import-submit").await;
    window
        .wait_until("the import", Duration::from_secs(10), || async {
            let verdict = window.text("#csv-import-verdict").await;
            verdict.starts_with("Imported 2 device(s)").then_some(())
        })
        .await;
    window.wait_for("tr[data-device='office-4']").await;

    let exported = desktop.work.path().join("export.csv");
    window.click("#csv-export summary").await;
    window
        .fill("#csv-export-path", &exported.display().to_string())
        .await;
    window.click("#csv-export-submit").await;
    // The export runs after the click returns: wait for its verdict.
    let said = window
        .wait_until("the export", Duration::from_secs(10), || async {
            let said = window.text("#csv-export-result").await;
            (!said.is_empty()).then_some(said)
        })
        .await;
    assert!(said.starts_with("Exported 2 device(s)"), "{said}");
    let text = std::fs::read_to_string(&exported).expect("the export was written");
    assert!(text.starts_with("name,host,"), "{text}");
    assert!(
        text.contains("office-1,127.255.254.1") && text.contains("office-4,127.255.254.4"),
        "{text}"
    );

    // Discovery over the lab's addresses, logging in with the key.
    let addresses: Vec<Ipv4Addr> = ["ap1", "ap2"]
        .iter()
        .map(|name| lab.device(name).address())
        .collect();
    let first = addresses.iter().min().expect("two addresses");
    let last = addresses.iter().max().expect("two addresses");
    window.click("#discover summary").await;
    window
        .fill("#discover-range", &format!("{first}-{last}"))
        .await;
    window
        .client
        .execute(
            "const login = document.querySelector('#discover-login'); \
             login.value = 'key-file'; login.dispatchEvent(new Event('change'));",
            Vec::new(),
        )
        .await
        .expect("the login is chosen");
    window
        .fill("#discover-key-file", &key.display().to_string())
        .await;
    window.fill("#discover-limit", "20").await;
    window.click("#discover-submit").await;
    status_says(
        &window,
        "the scan",
        "OpenWrt device(s)",
        Duration::from_secs(40),
    )
    .await;
    for name in ["ap1", "ap2"] {
        let device = lab.device(name);
        let row = window
            .text(&format!(
                "#discover-found tr[data-address='{}']",
                device.address()
            ))
            .await;
        assert!(row.contains(BOARD), "{row}");
        assert!(row.contains("OpenWrt 23.05.3"), "{row}");
        let fingerprint = openssh_fingerprint(&device.host_key());
        assert!(
            row.contains(&fingerprint),
            "the scan shows {fingerprint}: {row}"
        );
    }
    // Only the two primary addresses: a device also answers on its
    // alternate address, which may lie in the range.
    let primaries: Vec<String> = addresses.iter().map(ToString::to_string).collect();
    window
        .client
        .execute(
            "for (const box of document.querySelectorAll('input[name=discover-add]')) \
             box.checked = arguments[0].includes(box.value);",
            vec![serde_json::json!(primaries)],
        )
        .await
        .expect("the devices are chosen");
    window.fill("#discover-tags", "found").await;
    window.screenshot("devices-discovery").await;
    window.click("#discover-add").await;
    status_says(
        &window,
        "adding",
        "2 discovered device(s) added",
        Duration::from_secs(10),
    )
    .await;
    // The list is read again after the message.
    window
        .wait_until("the list to grow", Duration::from_secs(10), || async {
            let count = window.text("#device-count").await;
            (count == "4 of 4 devices").then_some(())
        })
        .await;

    window.click("#probe-many summary").await;
    window
        .client
        .execute(
            "const scope = document.querySelector('#probe-scope'); \
             scope.value = 'tag'; scope.dispatchEvent(new Event('change'));",
            Vec::new(),
        )
        .await
        .expect("the scope is chosen");
    window.fill("#probe-name", "found").await;
    window.click("#probe-submit").await;
    let verdict = window
        .wait_until("the probes", Duration::from_secs(60), || async {
            let verdict = window.text("#probe-verdict").await;
            verdict.starts_with("Probed").then_some(verdict)
        })
        .await;
    assert_eq!(
        verdict,
        "Probed 2 device(s): 2 answered, 0 offline, 0 failed otherwise."
    );
    let lines = window
        .script(
            "return [...document.querySelectorAll('#probe-lines li')].map((l) => l.textContent);",
        )
        .await;
    let lines: Vec<String> = serde_json::from_value(lines).expect("probe lines");
    assert_eq!(lines.len(), 2, "one line per device: {lines:?}");
    for line in &lines {
        assert!(line.contains(": ok, board tplink,archer-c7-v5"), "{line}");
    }
    window.screenshot("devices-probe-many").await;

    window.close().await;
    lab.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_guided_tour_leads_to_a_successful_upgrade() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let desktop = Desktop::start();
    let data_dir = desktop.work.path().join("data-dir");
    let window = Window::open(&desktop, &data_dir).await;

    window.click("#tour-start").await;
    window.wait_for("tr[data-device='tour-ap1']").await;
    window.screenshot("tour-devices").await;
    window.click("tr[data-device='tour-ap1'] button").await;
    window.wait_for("#host-key-dialog[open]").await;
    window.click("#host-key-accept").await;
    status_says(
        &window,
        "the probe",
        "running OpenWrt 23.05.3",
        Duration::from_secs(30),
    )
    .await;

    window.click("tr[data-device='tour-ap1'] a").await;
    let image = window
        .text("main[data-view='device'] #upgrade-image option")
        .await;
    assert!(image.starts_with("WiFi 24.10.0"), "{image}");
    window.click("#upgrade-start").await;
    window.wait_for("#operation-progress").await;
    let status = window
        .wait_until("the tour's upgrade", Duration::from_secs(120), || async {
            let status = text_now(&window, "#operation-status").await?;
            matches!(status.as_str(), "success" | "failed" | "aborted").then_some(status)
        })
        .await;
    let log = text_now(&window, "#operation-log").await;
    assert_eq!(status, "success", "{log:?}");
    // The view reads the device again after the verdict.
    window
        .wait_until("the new firmware", Duration::from_secs(10), || async {
            let firmware = text_now(&window, "#device-details dd[data-term='Firmware']").await?;
            firmware.starts_with("OpenWrt 24.10.0").then_some(())
        })
        .await;
    window.screenshot("tour-upgraded").await;

    window.go("#/overview", "overview").await;
    window.click("#tour-stop").await;
    // Stopping reloads the page; a catalogue that is no longer empty
    // offers the tour no more.
    window
        .wait_until("the tour to stop", Duration::from_secs(20), || async {
            let gone = window
                .script_now("return document.querySelector('#tour') === null;")
                .await;
            (gone == Some(serde_json::Value::Bool(true))).then_some(())
        })
        .await;
    window.close().await;
}

/// Fills a catalogue for three lab devices the way the CLI would: the
/// build with its image, the devices with the test's key, each probed so
/// that its host key is pinned and its board known.
async fn catalogue_for(data_dir: &Path, lab: &Lab, key: &Path, names: &[&str]) {
    std::fs::create_dir_all(data_dir).expect("data directory");
    let engine = Engine::open(
        data_dir,
        fwu_engine::vault::Vault::with_service("fwu-window-test"),
    )
    .expect("the engine opens");
    engine.catalogue.add_category("WiFi", "").expect("category");
    engine
        .catalogue
        .add_build("WiFi", "24.10.0", None, "")
        .expect("build");
    engine
        .import_image("WiFi", "24.10.0", &fixture(IMAGE), None)
        .expect("image");
    let ctx = engine.context(Arc::new(Discard)).expect("a context");
    for name in names {
        let device = lab.device(name);
        engine
            .add_device(DeviceInput {
                name: name.to_string(),
                host: device.address().to_string(),
                alternate_hosts: Vec::new(),
                port: device.port(),
                user: device.user().to_string(),
                credential: Credential::KeyFile {
                    path: key.to_path_buf(),
                    passphrase: None,
                },
                site: Some("lab".to_string()),
                tags: vec!["wave".to_string()],
            })
            .expect("device added");
        fwu_engine::upgrade::probe_device(&ctx, name, true)
            .await
            .expect("the device answers its probe");
    }
    // Long enough to close the window while every device is rebooting.
    Settings::set(data_dir, "openwrt.reconnect_delay", "20").expect("setting");
    Settings::set(data_dir, "openwrt.retry_delay", "1").expect("setting");
}

#[tokio::test(flavor = "multi_thread")]
async fn closing_mid_batch_asks_and_the_next_start_carries_the_batch_on() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let desktop = Desktop::start();
    let (key, public_key) = key_pair(desktop.work.path());
    let names = ["ap1", "ap2", "ap3"];
    let lab = lab(&desktop, &names, &public_key).await;
    let data_dir = desktop.work.path().join("data-dir");
    catalogue_for(&data_dir, &lab, &key, &names).await;
    let window = Window::open(&desktop, &data_dir).await;

    window.go("#/batch", "batch").await;
    let label = window.text("label[for='batch-option-c']").await;
    assert_eq!(label, "Keep every changed file in /etc (-c)");
    window.fill("#batch-tags", "wave").await;
    // No build of the catalogue is 23.05.3, so their firmware is unknown.
    window.click("#batch-firmwareless").await;
    window.click("#batch-dry-run").await;
    window.wait_for("#batch-planned tbody tr").await;
    window.click("#batch-start").await;
    window.wait_for("#confirm-dialog[open]").await;
    window.click("#confirm-yes").await;
    window.wait_for("#batch-board").await;
    window.wait_for("#batch-pause").await;
    window.wait_for("#batch-cancel").await;

    // Every device flashed and waits for its reboot: the board shows it
    // without any reload, and nothing can be cancelled any more.
    window
        .wait_until("every device to flash", Duration::from_secs(60), || async {
            let stages = window
                .script(
                    "return [...document.querySelectorAll('#batch-board .stage')] \
                         .map((cell) => cell.textContent);",
                )
                .await;
            let stages: Vec<String> = serde_json::from_value(stages).unwrap_or_default();
            (stages.len() == 3 && stages.iter().all(|s| s == "reconnect")).then_some(())
        })
        .await;
    window
        .wait_until("cancel to go", Duration::from_secs(5), || async {
            let gone = window
                .script("return document.querySelector('#batch-cancel') === null;")
                .await;
            (gone == serde_json::Value::Bool(true)).then_some(())
        })
        .await;
    window.screenshot("mass-upgrade-flashing").await;

    // Closing asks and says what becomes of the batch; "no" keeps it.
    window.click("#quit").await;
    window.wait_for("#confirm-dialog[open]").await;
    let question = window.text("#confirm-text").await;
    assert!(
        question.contains("is running") && question.contains("resumed at the next start"),
        "{question}"
    );
    window.screenshot("close-while-flashing").await;
    window.click("#confirm-no").await;
    status_says(
        &window,
        "staying open",
        "The window stays open",
        Duration::from_secs(5),
    )
    .await;
    window.click("#quit").await;
    window.wait_for("#confirm-dialog[open]").await;
    window.click_to_quit("#confirm-yes").await;
    // The batch's runner is the app's process: wait for it to be gone.
    let runner = fwu_engine::catalogue::Catalogue::open_in(&data_dir)
        .expect("the catalogue opens")
        .batch(1)
        .expect("batch 1")
        .runner_pid
        .expect("the app runs batch 1");
    window
        .wait_until("the app to exit", Duration::from_secs(30), || async {
            (!Path::new(&format!("/proc/{runner}")).exists()).then_some(())
        })
        .await;
    window.close().await;

    // The next start finds the batch without a process and carries it on.
    let window = Window::open(&desktop, &data_dir).await;
    let resumed = window.text("#resumed-list li[data-kind='batch']").await;
    assert!(resumed.contains("carries on here"), "{resumed}");
    window.screenshot("resumed-at-start").await;
    window.click("#resumed-list li[data-kind='batch'] a").await;
    window.wait_for("#batch-board").await;
    let status = window
        .wait_until("the batch to end", Duration::from_secs(90), || async {
            let status = text_now(&window, "#batch-status").await?;
            (status != "running").then_some(status)
        })
        .await;
    let summary = text_now(&window, "#batch-summary").await;
    assert_eq!(status, "success", "{summary:?}");
    for name in names {
        assert_eq!(lab.device(name).state().release.os_identifier(), OPENWRT_24);
    }
    let cancel = window
        .script("return document.querySelector('#batch-cancel') === null;")
        .await;
    assert_eq!(cancel, true, "a finished batch offers no cancel");

    window.click("#batch-report").await;
    window.wait_for("#report-dialog[open]").await;
    assert_eq!(count_now(&window, "#report-table tbody tr").await, 3);
    window.screenshot("batch-report").await;
    let report = desktop.work.path().join("report.html");
    window
        .fill("#report-path", &report.display().to_string())
        .await;
    window.click("#report-save").await;
    let said = window
        .wait_until("the report", Duration::from_secs(10), || async {
            let said = window.text("#report-message").await;
            (!said.is_empty()).then_some(said)
        })
        .await;
    assert!(said.starts_with("Report written"), "{said}");
    let page = std::fs::read_to_string(&report).expect("the report was written");
    assert!(page.contains("Firmware upgrade: WiFi 24.10.0"), "{page}");

    window.close().await;
    lab.stop().await;
}
