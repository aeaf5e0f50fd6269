//! Mass upgrades end to end: `fwu batch` over fleets of lab devices with
//! faults, a failure threshold that pauses a wave, and a batch killed at
//! random moments and resumed.
//!
//! Devices log in with a key made for the test, so that sixty devices do
//! not need sixty keyring entries; the bench and its helpers come from
//! `common`.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{make_key, Bench, Login, ARCHER};
use fwu_lab::{DeviceSpec, Faults, Memory, SampleImage};
use serde_json::Value;

/// The boards a mixed fleet is made of.
const BOARDS: [&str; 3] = [ARCHER, "ubnt,unifi-ac-lite", "glinet,gl-ar300m-nand"];
const RELEASES: [&str; 3] = ["22.03.6", "23.05.3", "24.10.0"];

/// Writes a sample image of every release for every board into `dir` and
/// imports them into builds `WiFi <release>`, so that probing tells each
/// device's firmware.
async fn import_all(bench: &Bench, boards: &[&str]) {
    for release in RELEASES {
        for board in boards {
            let board = fwu_lab::board(board).expect("a lab board");
            let wanted = fwu_lab::release(release).expect("a lab release");
            let image = SampleImage::new(board, &wanted);
            let path = bench.scratch(&fwu_lab::sample_image_name(board, &image.release));
            fwu_lab::write_sample_image(&path, &image).expect("a sample image");
            bench.import("WiFi", release, &path).await;
        }
    }
}

/// Adds every lab device of `names` with the key and pins its host key,
/// probing several at a time.
async fn add_fleet(bench: &Bench, names: &[String], key: &Path) {
    for name in names {
        bench.add_device(name, name, Login::Key(key)).await;
    }
    for chunk in names.chunks(12) {
        let mut running = Vec::new();
        for name in chunk {
            let args = ["device", "probe", name.as_str(), "--accept-new-host-key"];
            running.push((bench.spawn_fwu(&args), name));
        }
        for (child, name) in running {
            let args = ["device", "probe", name.as_str()];
            bench.wait_fwu(child, &args).await.expect_code(0);
        }
    }
}

fn names(count: usize) -> Vec<String> {
    (1..=count).map(|n| format!("ap{n:02}")).collect()
}

/// The batch's operations by device name: (status, log lines).
async fn verdicts(bench: &Bench, id: i64) -> BTreeMap<String, (String, Vec<String>)> {
    let shown = bench
        .fwu(&["--json", "batch", "show", &id.to_string()])
        .await;
    shown.expect_code(0);
    let shown = shown.json();
    let mut verdicts = BTreeMap::new();
    for row in shown["devices"].as_array().expect("device rows") {
        let device = row["device"].as_str().expect("a name").to_string();
        let status = row["status"].as_str().expect("a status").to_string();
        verdicts.insert(
            device,
            (status, vec![row["reason"].as_str().unwrap_or("").into()]),
        );
    }
    for operation in operations(bench, id).await {
        let device = operation["device"].as_str().expect("a name").to_string();
        let shown = bench
            .fwu(&["--json", "operation", "show", &operation["id"].to_string()])
            .await
            .json();
        let lines = shown["log"]
            .as_array()
            .expect("a log")
            .iter()
            .map(|l| l["line"].as_str().expect("a line").to_string())
            .collect();
        verdicts.get_mut(&device).expect("a row per operation").1 = lines;
    }
    verdicts
}

async fn operations(bench: &Bench, batch: i64) -> Vec<Value> {
    let listed = bench
        .fwu(&["--json", "operation", "list", "--limit", "1000"])
        .await
        .json();
    listed
        .as_array()
        .expect("a list")
        .iter()
        .filter(|o| o["batch_id"] == batch)
        .cloned()
        .collect()
}

/// Sixty devices on three boards and two releases, three already up to
/// date, with faults on some; one batch with a first wave. Every device
/// ends as its faults predict, the counts agree, and a device that was
/// offline at the start is upgraded by a later retry.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fleet_of_sixty_ends_as_the_faults_predict() {
    let keys = tempfile::tempdir().unwrap();
    let (key, public) = make_key(keys.path(), "fleet");
    let names = names(60);
    let mut specs = Vec::new();
    for (index, name) in names.iter().enumerate() {
        let board = BOARDS[index % 3];
        let release = match index {
            57.. => "24.10.0",
            _ if index % 2 == 0 => "22.03.6",
            _ => "23.05.3",
        };
        let mut spec = DeviceSpec::new(name, board, release);
        spec.authorized_keys = vec![public.clone()];
        spec.reboot_time = Duration::from_secs(1);
        let mut faults = Faults::default();
        match name.as_str() {
            "ap21" | "ap22" => faults.never_returns = true,
            "ap23" | "ap24" => faults.returns_with_old_firmware = true,
            "ap25" | "ap26" => faults.cut_link_after_bytes = Some(20 * 1024),
            "ap29" | "ap30" => {
                spec.memory = Memory {
                    available_kib: 16,
                    cache_kib: 0,
                    ..spec.memory
                }
            }
            _ => {}
        }
        spec.faults = faults;
        specs.push(spec);
    }
    let bench = Bench::start(specs).await;
    bench.set("openwrt.reconnect_attempts", "3").await;
    import_all(&bench, &BOARDS).await;
    add_fleet(&bench, &names, &key).await;

    let dry = bench
        .fwu(&["--json", "batch", "dry-run", "WiFi", "24.10.0"])
        .await;
    dry.expect_code(0);
    let dry = dry.json();
    let planned: Vec<&str> = dry["upgrades"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["device"].as_str().unwrap())
        .collect();
    assert_eq!(planned.len(), 57);
    let skipped: Vec<&str> = dry["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["device"].as_str().unwrap())
        .collect();
    assert_eq!(skipped, vec!["ap58", "ap59", "ap60"]);

    // Two devices are off when the batch starts and come back later.
    bench.device("ap27").power_off().await;
    bench.device("ap28").power_off().await;
    let args = [
        "--json",
        "batch",
        "start",
        "WiFi",
        "24.10.0",
        "--concurrency",
        "12",
        "--wave",
        "10",
    ];
    let batch = bench.spawn_fwu(&args);
    // They come back once the batch has tried each and put it off.
    for name in ["ap27", "ap28"] {
        wait_for_log_line(&bench, name, "the batch retries", Duration::from_secs(90)).await;
    }
    bench.device("ap27").power_on().await;
    bench.device("ap28").power_on().await;
    let run = bench.wait_fwu(batch, &args).await;
    assert_eq!(run.code, Some(3), "some devices fail:\n{run}");
    let summary = run.json();
    assert_eq!(summary["status"], "failed");
    assert_eq!(summary["total"], 57);
    assert_eq!(summary["success"], 53);
    assert_eq!(summary["failed"], 4);
    assert_eq!(summary["skipped"], 3);
    let id = summary["batch"].as_i64().unwrap();

    let verdicts = verdicts(&bench, id).await;
    let operated: Vec<&str> = verdicts
        .iter()
        .filter(|(_, (status, _))| status != "skipped")
        .map(|(name, _)| name.as_str())
        .collect();
    assert_eq!(
        operated, planned,
        "the run selected what the dry run listed"
    );
    for (name, (status, log)) in &verdicts {
        let expected = match name.as_str() {
            "ap21" | "ap22" | "ap23" | "ap24" => "failed",
            "ap58" | "ap59" | "ap60" => "skipped",
            _ => "success",
        };
        assert_eq!(status, expected, "{name}: {log:#?}");
        let all = log.join("\n");
        match name.as_str() {
            "ap21" | "ap22" => assert!(all.contains("did not come back"), "{name}: {all}"),
            "ap23" | "ap24" => assert!(all.contains("old firmware"), "{name}: {all}"),
            "ap25" | "ap26" => assert!(all.contains("the link broke"), "{name}: {all}"),
            "ap27" | "ap28" => assert!(all.contains("the batch retries"), "{name}: {all}"),
            "ap29" | "ap30" => assert!(all.contains("stopped non-critical"), "{name}: {all}"),
            _ => {}
        }
        let state = bench.device(name).state();
        let flashes = match expected {
            "skipped" => 0,
            _ => 1,
        };
        assert_eq!(
            state.flash_count, flashes,
            "{name} flashed {} times",
            state.flash_count
        );
    }

    // Starts are spaced out (`batch.start_spacing`, 100 ms by default): the ten
    // operations of the first wave do not all connect at once.
    let connects = first_connects(&bench, id).await;
    let wave = connects[9] - connects[0];
    assert!(
        wave >= time::Duration::milliseconds(600),
        "the first wave's ten connects came within {wave}"
    );

    let id = id.to_string();
    let csv = bench
        .fwu(&["batch", "report", &id, "--format", "csv"])
        .await;
    csv.expect_code(0);
    let lines: Vec<&str> = csv.stdout.lines().collect();
    assert_eq!(
        lines.len(),
        61,
        "a header and a row per device:\n{}",
        csv.stdout
    );
    assert!(lines[0].starts_with("device,site,firmware_before,firmware_after,status"));
    let ap21 = lines.iter().find(|l| l.starts_with("ap21,")).unwrap();
    assert!(
        ap21.contains(",failed,") && ap21.contains("did not come back"),
        "{ap21}"
    );
    let ap01 = lines.iter().find(|l| l.starts_with("ap01,")).unwrap();
    assert!(
        ap01.contains("OpenWrt 22.03.6") && ap01.contains("OpenWrt 24.10.0"),
        "{ap01}"
    );
    let html = bench
        .fwu(&["batch", "report", &id, "--format", "html"])
        .await;
    html.expect_code(0);
    assert!(html.stdout.contains("<svg") && html.stdout.contains("failed 4"));
    for external in ["src=", "href=", "<link", "<script"] {
        assert!(
            !html.stdout.contains(external),
            "the report loads {external}"
        );
    }
    bench.stop().await;
}

/// A first wave whose failures pass the threshold pauses the batch: nothing
/// more starts until it is resumed, and resuming carries the rest through.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failing_wave_pauses_the_batch_until_resumed() {
    let keys = tempfile::tempdir().unwrap();
    let (key, public) = make_key(keys.path(), "wave");
    let names = names(6);
    let specs = names
        .iter()
        .map(|name| {
            let mut spec = DeviceSpec::new(name, ARCHER, "23.05.3");
            spec.authorized_keys = vec![public.clone()];
            spec.reboot_time = Duration::from_secs(1);
            spec.faults.never_returns = matches!(name.as_str(), "ap01" | "ap02");
            spec
        })
        .collect();
    let bench = Bench::start(specs).await;
    bench.set("openwrt.reconnect_attempts", "2").await;
    bench.set("batch.start_spacing", "400").await;
    import_all(&bench, &[ARCHER]).await;
    add_fleet(&bench, &names, &key).await;

    let started = bench
        .fwu(&[
            "--json",
            "batch",
            "start",
            "WiFi",
            "24.10.0",
            "--wave",
            "2",
            "--max-failures",
            "50",
            "--concurrency",
            "4",
        ])
        .await;
    assert_eq!(started.code, Some(5), "the batch pauses:\n{started}");
    let summary = started.json();
    assert_eq!(summary["status"], "paused");
    assert_eq!(
        (summary["failed"].as_u64(), summary["pending"].as_u64()),
        (Some(2), Some(4))
    );
    assert!(summary["pause_reason"]
        .as_str()
        .unwrap()
        .contains("more than the 50% allowed"));
    let connects = first_connects(&bench, summary["batch"].as_i64().unwrap()).await;
    assert_eq!(connects.len(), 2, "only the first wave started");
    assert!(
        connects[1] - connects[0] >= time::Duration::milliseconds(250),
        "the set spacing of 400 ms was kept: {connects:?}"
    );
    for name in &names[2..] {
        assert!(
            bench.device(name).state().sysupgrade_calls.is_empty(),
            "{name} was touched"
        );
    }

    let id = summary["batch"].to_string();
    let resumed = bench.fwu(&["--json", "batch", "resume", &id]).await;
    assert_eq!(
        resumed.code,
        Some(3),
        "two devices failed before:\n{resumed}"
    );
    let summary = resumed.json();
    assert_eq!(
        (summary["success"].as_u64(), summary["failed"].as_u64()),
        (Some(4), Some(2))
    );
    bench.stop().await;
}

/// Picks `count` moments between `low` and `high` milliseconds from the
/// clock: the kill points of one run, printed so that a failure can be
/// replayed by reading them off the log.
fn kill_points(count: usize, low: u64, high: u64) -> Vec<u64> {
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    (0..count)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            low + seed % (high - low)
        })
        .collect()
}

/// Killing `fwu` at random moments of a running batch and resuming it:
/// no device is flashed twice, none is left without a verdict, and the
/// catalogue passes SQLite's integrity check.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killed_batch_resumes_without_flashing_twice() {
    let keys = tempfile::tempdir().unwrap();
    let (key, public) = make_key(keys.path(), "kill");
    let names = names(10);
    let specs = names
        .iter()
        .map(|name| {
            let mut spec = DeviceSpec::new(name, ARCHER, "23.05.3");
            spec.authorized_keys = vec![public.clone()];
            spec.reboot_time = Duration::from_secs(2);
            spec
        })
        .collect();
    let bench = Bench::start(specs).await;
    bench.set("openwrt.reconnect_delay", "2").await;
    import_all(&bench, &[ARCHER]).await;
    add_fleet(&bench, &names, &key).await;

    let started = bench
        .fwu(&[
            "--json",
            "batch",
            "start",
            "WiFi",
            "24.10.0",
            "--concurrency",
            "3",
            "--no-run",
        ])
        .await;
    started.expect_code(0);
    let id = started.json()["batch"].to_string();

    let points = kill_points(5, 300, 3500);
    eprintln!("kill points (ms after each start): {points:?}");
    let args = ["--json", "batch", "resume", id.as_str()];
    for point in &points {
        let child = bench.spawn_fwu(&args);
        tokio::time::sleep(Duration::from_millis(*point)).await;
        let pid = child.id().expect("fwu is running") as i32;
        // SAFETY: kill has no memory effects; the pid is our own child's.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        let run = bench.wait_fwu(child, &args).await;
        assert_eq!(
            run.code, None,
            "fwu died by the signal, not on its own:\n{run}"
        );
    }
    let started = Instant::now();
    let finished = bench.fwu(&args).await;
    eprintln!("final resume took {:?}", started.elapsed());
    let summary = finished.json();
    assert_eq!(summary["state"], "finished", "{finished}");
    assert_eq!(
        (summary["pending"].as_u64(), summary["in_progress"].as_u64()),
        (Some(0), Some(0))
    );

    // A kill can land between the flash mark and sysupgrade starting (or
    // before sysupgrade commenced, which ends it with the session, as on a
    // real device). Such a device was never flashed and its verdict says
    // so; every device that was flashed was flashed once and succeeded.
    let id: i64 = id.parse().unwrap();
    let verdicts = verdicts(&bench, id).await;
    for name in &names {
        let state = bench.device(name).state();
        let (status, log) = &verdicts[name];
        match state.flash_count {
            1 => {
                assert_eq!(status, "success", "{name}: {log:#?}");
                assert_eq!(state.release.version, "24.10.0", "{name}");
            }
            0 => {
                assert_eq!(status, "failed", "{name}: {log:#?}");
                let last = log.last().map(String::as_str).unwrap_or("");
                assert!(
                    last.contains("never rebooted"),
                    "{name} ({points:?}): {log:#?}"
                );
                eprintln!("{name} was caught by a kill before sysupgrade commenced");
            }
            more => panic!("{name} was flashed {more} times (kill points {points:?})"),
        }
    }
    let upgraded = verdicts.values().filter(|(s, _)| s == "success").count();
    assert!(
        upgraded >= 5,
        "kill points {points:?}: only {upgraded} devices upgraded"
    );
    let catalogue = fwu_engine::catalogue::Catalogue::open(&catalogue_path(&bench)).unwrap();
    assert_eq!(catalogue.integrity_check().unwrap(), vec!["ok".to_string()]);
    bench.stop().await;
}

/// When each operation of the batch first connected, earliest first.
async fn first_connects(bench: &Bench, batch: i64) -> Vec<time::OffsetDateTime> {
    let catalogue = fwu_engine::catalogue::Catalogue::open(&catalogue_path(bench)).unwrap();
    let mut connects: Vec<time::OffsetDateTime> = operations(bench, batch)
        .await
        .iter()
        .filter_map(|operation| {
            let log = catalogue
                .operation_log(operation["id"].as_i64().expect("an id"))
                .unwrap();
            let first = log.iter().find(|l| l.line.starts_with("connecting to"))?;
            fwu_engine::catalogue::parse_time(&first.at)
        })
        .collect();
    connects.sort();
    connects
}

/// Waits until a log line of one of `name`'s operations contains `text`.
async fn wait_for_log_line(bench: &Bench, name: &str, text: &str, limit: Duration) {
    let deadline = std::time::Instant::now() + limit;
    loop {
        // The catalogue file appears with the batch's first write.
        if let Ok(catalogue) = fwu_engine::catalogue::Catalogue::open(&catalogue_path(bench)) {
            if let Ok(device) = catalogue.device(name) {
                let filter = fwu_engine::catalogue::OperationFilter {
                    device_id: Some(device.id),
                    ..Default::default()
                };
                let said = catalogue
                    .operations(&filter)
                    .unwrap_or_default()
                    .iter()
                    .flat_map(|operation| catalogue.operation_log(operation.id).unwrap_or_default())
                    .any(|line| line.line.contains(text));
                if said {
                    return;
                }
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{name}: no log line with {text:?} within {} s",
            limit.as_secs()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn catalogue_path(bench: &Bench) -> PathBuf {
    bench.scratch("data").join("catalogue.sqlite")
}
