//! The fleet inventory end to end: importing devices from a CSV file with
//! bad rows, a shared credential, discovering the lab's devices on their
//! loopback block, and probing a site with one device switched off.
//!
//! Tests drive the real `fwu` binary (build it first with `cargo build
//! --workspace --bins`, or set `FWU_BIN`) against a lab of their own, with
//! a data directory and keyring service of their own; password logins
//! need a Secret Service, so run them under `.ci/with-session`.
//!
//! Discovery here scans only addresses of the lab's own block in
//! 127.0.0.0/8, which the lab holds a lock on, and every scan has a time
//! limit the test checks.

mod common;

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use common::{archer, Bench, OPENWRT_23};
use fwu_lab::DeviceSpec;
use serde_json::Value;

/// The shared credential the lab's devices log in with.
const SHARED: &str = "site/lab/password";
/// The image of 23.05.3 for the Archer C7, from the fixtures.
const ARCHER_23: &str = "openwrt-23.05.3-ath79-generic-tplink_archer-c7-v5-squashfs-sysupgrade.bin";

/// Starts the devices and stores the shared password; the bench's short
/// connection time limit makes a switched-off device fail fast.
async fn start(specs: Vec<DeviceSpec>) -> Bench {
    let bench = Bench::start(specs).await;
    bench
        .fwu_with_input(
            &["credential", "set", SHARED, "--password-stdin"],
            Some("lab\n"),
        )
        .await
        .expect_code(0);
    bench
}

/// The lab's /24 block, as `a.b.c.0/24`, after checking that every device
/// is in it (the lab hands out addresses a block at a time).
fn block(bench: &Bench) -> String {
    let first = bench.lab().devices()[0].address().octets();
    for device in bench.lab().devices() {
        let octets = device.address().octets();
        assert_eq!(octets[..3], first[..3], "the lab's devices span two blocks");
        assert_eq!(octets[0], 127, "a lab device outside loopback");
    }
    format!("{}.{}.{}.0/24", first[0], first[1], first[2])
}

fn strings(value: &Value, key: &str) -> BTreeSet<String> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {value}"))
        .iter()
        .map(|item| item[key].as_str().unwrap_or_default().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn discovery_finds_exactly_the_lab_devices_and_adds_them() {
    let mut unifi = DeviceSpec::new("unifi", "ubnt,unifi-ac-lite", "23.05.3");
    unifi.reboot_time = Duration::from_secs(1);
    let bench = start(vec![archer("c7-a"), archer("c7-b"), unifi]).await;
    let block = block(&bench);
    let expected: BTreeSet<String> = bench
        .lab()
        .devices()
        .iter()
        .map(|device| device.address().to_string())
        .collect();
    let limit = 30;

    // Without consent to unknown host keys, nothing is sent but the
    // handshake: the devices show up unidentified, with their keys'
    // fingerprints, and nothing may be added.
    let started = Instant::now();
    let run = bench
        .fwu(&[
            "--json",
            "device",
            "discover",
            &block,
            "--credential",
            SHARED,
            "--time-limit",
            "30",
        ])
        .await;
    run.expect_code(0);
    assert!(started.elapsed() < Duration::from_secs(limit + 10), "{run}");
    let scan = run.json();
    assert_eq!(scan["complete"], true, "{run}");
    assert_eq!(scan["total"], 254);
    assert_eq!(scan["devices"].as_array().unwrap().len(), 0, "{run}");
    assert_eq!(strings(&scan["others"], "address"), expected, "{run}");
    for other in scan["others"].as_array().unwrap() {
        let device = bench
            .lab()
            .devices()
            .iter()
            .find(|d| d.address().to_string() == other["address"].as_str().unwrap())
            .unwrap();
        let fingerprint = fwu_engine::transport::ssh::fingerprint(&device.host_key()).unwrap();
        assert_eq!(other["host_key_fingerprint"], fingerprint.as_str());
    }

    // With consent it logs in with the shared password, identifies and
    // adds every device, pinning the key it saw.
    let started = Instant::now();
    let run = bench
        .fwu(&[
            "--json",
            "device",
            "discover",
            &block,
            "--credential",
            SHARED,
            "--accept-new-host-key",
            "--time-limit",
            "30",
            "--add",
            "--site",
            "lab",
            "--tag",
            "found",
        ])
        .await;
    run.expect_code(0);
    assert!(started.elapsed() < Duration::from_secs(limit + 10), "{run}");
    let scan = run.json();
    assert_eq!(scan["complete"], true, "{run}");
    assert_eq!(strings(&scan["devices"], "address"), expected, "{run}");
    assert!(scan["others"].as_array().unwrap().is_empty(), "{run}");
    for found in scan["devices"].as_array().unwrap() {
        assert_eq!(found["identity"]["os_identifier"], OPENWRT_23, "{found}");
    }
    let added = scan["added"].as_array().unwrap();
    assert!(added.iter().all(|a| a["device"].is_string()), "{run}");

    let listed = bench.fwu(&["--json", "device", "list"]).await.json();
    assert_eq!(strings(&listed, "host"), expected);
    let boards = strings(&listed, "board");
    let wanted: BTreeSet<String> = ["tplink,archer-c7-v5", "ubnt,unifi-ac-lite"]
        .map(String::from)
        .into();
    assert_eq!(boards, wanted);
    for device in listed.as_array().unwrap() {
        assert_eq!(device["site"], "lab");
        assert_eq!(device["tags"][0], "found");
        assert_eq!(device["auth"]["credential"], SHARED);
        let lab_device = bench
            .lab()
            .devices()
            .iter()
            .find(|d| d.address().to_string() == device["host"].as_str().unwrap())
            .unwrap();
        // The catalogue pins the key without its comment.
        let lab_key: Vec<String> = lab_device
            .host_key()
            .split_whitespace()
            .take(2)
            .map(String::from)
            .collect();
        assert_eq!(device["host_key"], lab_key.join(" "), "{device}");
        let name = device["name"].as_str().unwrap();
        assert!(name.ends_with(&lab_device.address().to_string()), "{name}");
    }

    // A second scan adds nothing twice.
    let again = bench
        .fwu(&[
            "--json",
            "device",
            "discover",
            &block,
            "--credential",
            SHARED,
            "--accept-new-host-key",
            "--time-limit",
            "30",
            "--add",
        ])
        .await;
    again.expect_code(0);
    let added = again.json()["added"].clone();
    assert!(
        added.as_array().unwrap().iter().all(|a| a["skipped"]
            .as_str()
            .unwrap()
            .contains("already in the catalogue")),
        "{again}"
    );
    bench.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn discovery_stops_at_its_time_limit() {
    let bench = start(vec![archer("c7")]).await;
    // A server of the test's own on a free address of the lab's block:
    // it accepts connections and never says a word, so the handshake
    // there waits until the scan's time limit ends it.
    let device = bench.lab().devices()[0].address().octets();
    let mut silent = None;
    for last in (200..=254).rev() {
        let address = Ipv4Addr::new(device[0], device[1], device[2], last);
        if let Ok(listener) = tokio::net::TcpListener::bind((address, 22)).await {
            silent = Some((address, listener));
            break;
        }
    }
    let (silent_address, listener) = silent.expect("a free address in the lab's block");
    let accepting = tokio::spawn(async move {
        let mut held = Vec::new();
        // Bounded: the scan opens at most two connections here.
        for _ in 0..8 {
            match listener.accept().await {
                Ok((stream, _)) => held.push(stream),
                Err(_) => break,
            }
        }
        held
    });
    bench
        .fwu(&["settings", "set", "ssh.connect_timeout", "60"])
        .await
        .expect_code(0);
    let range = format!("{}-{}", bench.lab().devices()[0].address(), silent_address);

    let started = Instant::now();
    let run = bench
        .fwu(&[
            "--json",
            "device",
            "discover",
            &range,
            "--credential",
            SHARED,
            "--accept-new-host-key",
            "--time-limit",
            "3",
        ])
        .await;
    let elapsed = started.elapsed();
    run.expect_code(0);
    let scan = run.json();
    assert_eq!(scan["complete"], false, "{run}");
    // The limit is 3 s; stopping the probes still running adds a little.
    assert!(scan["elapsed_ms"].as_u64().unwrap() < 8_000, "{run}");
    assert!(elapsed < Duration::from_secs(15), "took {elapsed:?}");
    assert!(
        scan["scanned"].as_u64().unwrap() < scan["total"].as_u64().unwrap(),
        "{run}"
    );
    let silent_text = silent_address.to_string();
    let reported = strings(&scan["devices"], "address");
    assert!(!reported.contains(&silent_text), "{run}");
    accepting.abort();
    bench.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn import_with_bad_rows_then_probe_a_site_with_one_device_off() {
    let bench = start(vec![archer("ap1"), archer("ap2"), archer("ap3")]).await;
    let row = |name: &str| {
        let device = bench.lab().device(name);
        format!(
            "{name},{},{},22,root,lab,ap;floor-1,{SHARED},",
            device.address(),
            device.alternate_address()
        )
    };
    let mut csv = format!(
        "name,host,alternate_hosts,port,user,site,tags,credential,key_file\n{}\n{}\n{}\n",
        row("ap1"),
        row("ap2"),
        row("ap3")
    )
    .into_bytes();
    csv.extend_from_slice(b"evil,=cmd|' /C calc'!A0,,22,root,lab,,,\n");
    csv.extend_from_slice(b"ap1,127.0.0.9,,22,root,lab,,,\n");
    csv.extend_from_slice(b"latin,127.0.0.9,,22,root,caf\xe9,,,\n");
    csv.extend_from_slice(b"port,127.0.0.9,,70000,root,lab,,,\n");
    let file = bench.scratch("fleet.csv");
    std::fs::write(&file, &csv).unwrap();
    let file = file.to_str().unwrap();

    // Strict: one bad row and nothing changes.
    let strict = bench
        .fwu(&["--json", "device", "import", file, "--strict"])
        .await;
    strict.expect_code(1);
    assert_eq!(strict.json()["imported"], false);
    let listed = bench.fwu(&["--json", "device", "list"]).await.json();
    assert!(listed.as_array().unwrap().is_empty(), "{listed}");

    let run = bench.fwu(&["--json", "device", "import", file]).await;
    run.expect_code(1);
    let report = run.json();
    assert_eq!(report["imported"], true);
    assert_eq!(report["devices"], serde_json::json!(["ap1", "ap2", "ap3"]));
    let refused: Vec<(u64, String)> = report["refused"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["line"].as_u64().unwrap(),
                r["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(refused.len(), 4, "{run}");
    assert_eq!(refused[0].0, 5);
    assert!(refused[0].1.contains("formula"), "{run}");
    assert_eq!(
        refused[1],
        (6, "duplicate name ap1 (first on line 2)".to_string())
    );
    assert_eq!(refused[2], (7, "not UTF-8 text".to_string()));
    assert_eq!(refused[3].0, 8);
    assert!(refused[3].1.contains("bad port"), "{run}");

    let credentials = bench.fwu(&["--json", "credential", "list"]).await;
    let credentials = credentials.json();
    assert_eq!(credentials[0]["entry"], SHARED);
    assert_eq!(credentials[0]["stored"], true);
    assert_eq!(credentials[0]["devices"].as_array().unwrap().len(), 3);
    let delete = bench.fwu(&["credential", "delete", SHARED]).await;
    delete.expect_code(1);
    assert!(
        delete.stderr.contains("still used by 3 device(s)"),
        "{delete}"
    );

    // The build the devices run, so that probing records their firmware.
    bench.fwu(&["category", "add", "WiFi"]).await.expect_code(0);
    bench
        .fwu(&["build", "add", "WiFi", "23.05.3"])
        .await
        .expect_code(0);
    let fixture = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/fixtures/images/"
    );
    let image = bench
        .fwu(&[
            "--json",
            "image",
            "import",
            "WiFi",
            "23.05.3",
            &format!("{fixture}{ARCHER_23}"),
        ])
        .await;
    image.expect_code(0);
    let image_id = image.json()["id"].as_i64().expect("an image id");

    bench.lab().device("ap2").power_off().await;
    let started = Instant::now();
    let run = bench
        .fwu(&[
            "--json",
            "device",
            "probe",
            "--site",
            "lab",
            "--concurrency",
            "2",
            "--accept-new-host-key",
        ])
        .await;
    // Two addresses of three seconds each, and the others' probes.
    assert!(started.elapsed() < Duration::from_secs(40), "{run}");
    run.expect_code(1);
    let outcomes = run.json();
    let names: BTreeSet<String> = ["ap1", "ap2", "ap3"].map(String::from).into();
    assert_eq!(strings(&outcomes, "device"), names, "{run}");
    for outcome in outcomes.as_array().unwrap() {
        if outcome["device"] == "ap2" {
            assert_eq!(
                (&outcome["ok"], &outcome["offline"]),
                (&false.into(), &true.into())
            );
            assert!(
                outcome["error"].as_str().unwrap().contains("reach"),
                "{outcome}"
            );
        } else {
            assert_eq!(outcome["ok"], true, "{outcome}");
            assert_eq!(outcome["os_identifier"], OPENWRT_23);
            assert_eq!(
                outcome["device_firmware"]["image_id"], image_id,
                "{outcome}"
            );
            assert_eq!(outcome["device_firmware"]["installed"], true);
        }
    }

    // The single-device form still works, and the device is back.
    bench.lab().device("ap2").power_on().await;
    let one = bench
        .fwu(&["--json", "device", "probe", "ap2", "--accept-new-host-key"])
        .await;
    one.expect_code(0);
    assert_eq!(one.json()["identity"]["os_identifier"], OPENWRT_23);

    // Export writes every device in the columns import reads.
    let exported = bench.fwu(&["device", "export"]).await;
    exported.expect_code(0);
    let lines: Vec<&str> = exported.stdout.lines().collect();
    assert_eq!(
        lines[0],
        "name,host,alternate_hosts,port,user,site,tags,credential,key_file"
    );
    assert_eq!(lines.len(), 4, "{exported}");
    assert!(lines[1].starts_with(&format!("ap1,{}", bench.lab().device("ap1").address())));
    bench.stop().await;
}
