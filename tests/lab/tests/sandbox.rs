//! The sandbox's promises: a device cannot change the host, no sandbox
//! outlives its lab, labs never share addresses, and the manifest tells
//! how to reach a lab.

mod support;

use std::time::{Duration, Instant};

use fwu_lab::{DeviceSpec, Lab, LabError, Manifest};
use support::{all_output, start, stdout, Client};

/// Returns the pids of host processes whose command line mentions `text`.
fn processes_mentioning(text: &str) -> Vec<u32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        if String::from_utf8_lossy(&cmdline).contains(text) {
            pids.push(pid);
        }
    }
    pids
}

/// Waits until no process mentions `text`; tells whether that happened.
async fn all_gone(text: &str) -> bool {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(5) {
        if processes_mentioning(text).is_empty() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// Returns the host's network interfaces and whether each is up.
fn host_interfaces() -> Vec<(String, String)> {
    let mut interfaces: Vec<(String, String)> = std::fs::read_dir("/sys/class/net")
        .unwrap()
        .flatten()
        .map(|entry| {
            let flags = std::fs::read_to_string(entry.path().join("flags")).unwrap_or_default();
            (entry.file_name().to_string_lossy().into_owned(), flags)
        })
        .collect();
    interfaces.sort();
    interfaces
}

/// Returns the host's hostname.
fn host_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_cannot_change_the_host() {
    let client = Client::new();
    let (lab, _dir) = start(&client, vec![DeviceSpec::new("ap", "generic", "23.05.3")]).await;
    let device = lab.device("ap");
    let hostname = host_hostname();
    let links = host_interfaces();

    let attempts = [
        "hostname changed",
        "ip link set lo down",
        "ip link add lab0 type dummy",
        "ip addr add 127.99.0.1/8 dev lo",
        "echo 1 > /proc/sys/net/ipv4/ip_forward",
        "mount -t tmpfs none /tmp",
        "umount /etc",
        "touch /bin/new",
        "echo x > /lib/lab/common.sh",
    ];
    for attempt in attempts {
        let output = client.run(device, attempt).await;
        assert!(
            !output.status.success(),
            "{attempt} worked: {}",
            all_output(&output)
        );
    }
    assert_eq!(host_hostname(), hostname);
    assert_eq!(host_interfaces(), links);
    let inside = client.run(device, "hostname").await;
    assert_eq!(stdout(&inside), "OpenWrt\n");
    // The device sees only its own processes.
    let processes = client.run(device, "ps | wc -l").await;
    let count: usize = stdout(&processes).trim().parse().unwrap();
    assert!(count < 12, "the device sees {count} lines of processes");
    lab.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_outlives_stop_or_drop() {
    let client = Client::new();
    let specs = vec![
        DeviceSpec::new("one", "generic", "23.05.3"),
        DeviceSpec::new("two", "tplink,archer-c7-v5", "22.03.6"),
    ];
    let (lab, dir) = start(&client, specs).await;
    let marker = dir.path().display().to_string();
    let address = lab.device("two").address().to_string();
    // Dropbear (its -p argument) and bubblewrap both name the lab's places.
    assert!(!processes_mentioning(&format!("{address}:22")).is_empty());
    assert!(processes_mentioning(&marker).len() >= 2);
    lab.stop().await;
    assert!(all_gone(&marker).await, "sandboxes outlived stop");
    assert!(all_gone(&format!("{address}:22")).await);

    let (lab, dir) = start(
        &client,
        vec![DeviceSpec::new("three", "generic", "23.05.3")],
    )
    .await;
    let marker = dir.path().display().to_string();
    assert!(!processes_mentioning(&marker).is_empty());
    drop(lab);
    assert!(all_gone(&marker).await, "sandboxes outlived drop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_labs_never_share_addresses() {
    let client = Client::new();
    let specs = || {
        (0..3)
            .map(|i| DeviceSpec::new(&format!("ap{i}"), "generic", "24.10.0"))
            .collect::<Vec<_>>()
    };
    let ((first, _a), (second, _b)) =
        tokio::join!(start(&client, specs()), start(&client, specs()));
    let mut addresses = Vec::new();
    for device in first.devices().iter().chain(second.devices()) {
        addresses.push(device.address());
        addresses.push(device.alternate_address());
    }
    let count = addresses.len();
    addresses.sort();
    addresses.dedup();
    assert_eq!(addresses.len(), count);
    for device in second.devices() {
        assert!(client.run(device, "true").await.status.success());
    }
    first.stop().await;
    second.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_manifest_reads_back() {
    let client = Client::new();
    let mut spec = DeviceSpec::new("ap", "ubnt,unifi-ac-lite", "23.05.3");
    spec.password = Some("s3cret".to_string());
    let (lab, dir) = start(&client, vec![spec]).await;
    let path = dir.path().join("lab.json");
    lab.write_manifest(&path).unwrap();
    let manifest = Manifest::read(&path).unwrap();
    assert_eq!(manifest, lab.manifest());
    let device = &manifest.devices[0];
    assert_eq!(device.name, "ap");
    assert_eq!(device.address, lab.device("ap").address());
    assert_eq!((device.port, device.user.as_str()), (22, "root"));
    assert_eq!(device.password.as_deref(), Some("s3cret"));
    assert_eq!(device.host_key, lab.device("ap").host_key());
    assert_eq!(
        device.release.os_identifier(),
        "OpenWrt 23.05.3 r23809-234f1a2efa"
    );
    lab.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_specs_are_refused_with_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let unknown = Lab::start(
        dir.path(),
        vec![DeviceSpec::new("ap", "linksys,wrt", "23.05.3")],
    )
    .await;
    let error = unknown.err().unwrap();
    assert!(matches!(error, LabError::UnknownBoard { .. }));
    assert_eq!(error.to_string(), "unknown board linksys,wrt for device ap");

    let twice = vec![
        DeviceSpec::new("ap", "generic", "23.05.3"),
        DeviceSpec::new("ap", "generic", "23.05.3"),
    ];
    let error = Lab::start(dir.path(), twice).await.err().unwrap();
    assert_eq!(error.to_string(), "two devices are named ap");

    let error = Lab::start(
        dir.path(),
        vec![DeviceSpec::new("../ap", "generic", "23.05.3")],
    )
    .await
    .err()
    .unwrap();
    assert!(matches!(error, LabError::BadDeviceName(_)));
}
