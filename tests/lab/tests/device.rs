//! A plain lab device seen through the system OpenSSH client: login, the
//! OpenWrt identity files, ubus, memory, services and uploads.

mod support;

use fwu_lab::{DeviceSpec, Memory};
use support::{all_output, start, stdout, Client};

/// Returns the spec of an Archer C7 on 23.05.3 with known memory figures.
fn archer() -> DeviceSpec {
    let mut spec = DeviceSpec::new("archer", "tplink,archer-c7-v5", "23.05.3");
    spec.memory = Memory {
        total_kib: 131072,
        available_kib: 20000,
        cache_kib: 5000,
    };
    spec
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_looks_like_openwrt() {
    let client = Client::new();
    let (lab, _dir) = start(&client, vec![archer()]).await;
    let device = lab.device("archer");
    assert_eq!((device.port(), device.user()), (22, "root"));
    assert_ne!(device.address(), std::net::Ipv4Addr::LOCALHOST);

    let board = client.run(device, "ubus call system board").await;
    assert!(board.status.success(), "{}", all_output(&board));
    let board: serde_json::Value = serde_json::from_str(&stdout(&board)).unwrap();
    assert_eq!(board["board_name"], "tplink,archer-c7-v5");
    assert_eq!(board["model"], "TP-Link Archer C7 v5");
    assert_eq!(board["hostname"], "OpenWrt");
    assert_eq!(board["kernel"], "5.15.150");
    assert_eq!(board["release"]["distribution"], "OpenWrt");
    assert_eq!(board["release"]["version"], "23.05.3");
    assert_eq!(board["release"]["revision"], "r23809-234f1a2efa");
    assert_eq!(board["release"]["target"], "ath79/generic");
    assert_eq!(
        board["release"]["description"],
        "OpenWrt 23.05.3 r23809-234f1a2efa"
    );

    let files = client
        .run(
            device,
            "cat /etc/openwrt_release; cat /tmp/sysinfo/board_name /tmp/sysinfo/model",
        )
        .await;
    let files = stdout(&files);
    assert!(files.contains("DISTRIB_ID='OpenWrt'\n"), "{files}");
    assert!(files.contains("DISTRIB_RELEASE='23.05.3'\n"), "{files}");
    assert!(
        files.contains("DISTRIB_REVISION='r23809-234f1a2efa'\n"),
        "{files}"
    );
    assert!(
        files.contains("DISTRIB_TARGET='ath79/generic'\n"),
        "{files}"
    );
    assert!(files.contains("DISTRIB_DESCRIPTION='OpenWrt 23.05.3 r23809-234f1a2efa'\n"));
    assert!(
        files.ends_with("tplink,archer-c7-v5\nTP-Link Archer C7 v5\n"),
        "{files}"
    );

    let boot_id = client
        .run(device, "cat /proc/sys/kernel/random/boot_id")
        .await;
    assert_eq!(stdout(&boot_id).trim(), device.state().boot_id);

    // No sftp-server and no scp, as on stock OpenWrt.
    let tools = client
        .run(device, "which scp sftp-server; ls /usr/libexec")
        .await;
    assert_eq!(stdout(&tools), "");
    lab.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn system_info_counts_uptime_from_the_device_boot() {
    let client = Client::new();
    let (lab, _dir) = start(&client, vec![archer()]).await;
    let device = lab.device("archer");
    let info = client.run(device, "ubus call system info").await;
    let info: serde_json::Value = serde_json::from_str(&stdout(&info)).unwrap();
    let uptime = info["uptime"].as_u64().unwrap();
    assert!(uptime < 30, "uptime {uptime} is not the device's own");
    assert_eq!(info["memory"]["total"], 131072 * 1024);
    assert_eq!(info["memory"]["available"], 20000 * 1024);
    lab.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_caches_and_stopping_services_free_memory() {
    let client = Client::new();
    let (lab, _dir) = start(&client, vec![archer()]).await;
    let device = lab.device("archer");
    let available = |text: &str| -> u64 {
        let line = text
            .lines()
            .find(|line| line.starts_with("MemAvailable:"))
            .unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    };

    let before = client.run(device, "cat /proc/meminfo").await;
    assert_eq!(available(&stdout(&before)), 20000);
    assert!(stdout(&before).starts_with("MemTotal:         131072 kB\n"));

    // The cache is freed once, and the figures change within the command.
    let dropped = client
        .run(
            device,
            "sync; echo 3 > /proc/sys/vm/drop_caches; cat /proc/meminfo",
        )
        .await;
    assert_eq!(
        available(&stdout(&dropped)),
        25000,
        "{}",
        all_output(&dropped)
    );
    let again = client
        .run(
            device,
            "echo 3 > /proc/sys/vm/drop_caches; cat /proc/meminfo",
        )
        .await;
    assert_eq!(available(&stdout(&again)), 25000);
    assert_eq!(device.state().available_kib, 25000);

    let stopped = client
        .run(
            device,
            "/etc/init.d/uhttpd stop; /etc/init.d/uhttpd running; echo $?; cat /proc/meminfo",
        )
        .await;
    assert!(
        stdout(&stopped).starts_with("1\n"),
        "{}",
        all_output(&stopped)
    );
    assert_eq!(available(&stdout(&stopped)), 25000 + 2560);
    let state = device.state();
    assert_eq!(state.available_kib, 25000 + 2560);
    assert_eq!(state.running_services, ["dnsmasq", "odhcpd", "collectd"]);

    // Critical services accept every action and keep running.
    let critical = client
        .run(
            device,
            "/etc/init.d/dropbear stop && /etc/init.d/network running && echo fine",
        )
        .await;
    assert_eq!(stdout(&critical), "fine\n");

    let started = client
        .run(
            device,
            "/etc/init.d/uhttpd start; grep MemAvailable /proc/meminfo",
        )
        .await;
    assert_eq!(available(&stdout(&started)), 25000);
    lab.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_stream_over_cat_and_hash_with_busybox() {
    let client = Client::new();
    let (lab, dir) = start(&client, vec![archer()]).await;
    let device = lab.device("archer");
    let file = dir.path().join("upload.bin");
    let data: Vec<u8> = (0..3_000_000_u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    std::fs::write(&file, &data).unwrap();
    let expected = sha256_hex(&file);

    let upload = client.upload(device, &file, "/tmp/upload.bin").await;
    assert!(upload.status.success(), "{}", all_output(&upload));
    let hashed = client.run(device, "sha256sum /tmp/upload.bin").await;
    assert_eq!(stdout(&hashed), format!("{expected}  /tmp/upload.bin\n"));
    lab.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn root_logs_in_with_the_password_of_the_spec_only() {
    let client = Client::new();
    let mut keys_only = DeviceSpec::new("keys-only", "generic", "24.10.0");
    keys_only.password = None;
    let (lab, _dir) = start(&client, vec![archer(), keys_only]).await;
    let archer = lab.device("archer");
    assert_eq!(archer.password(), Some("lab"));

    let right = client
        .run_with_password(archer.address(), "lab", "id -u")
        .await;
    assert_eq!(stdout(&right), "0\n", "{}", all_output(&right));
    let wrong = client
        .run_with_password(archer.address(), "wrong", "id -u")
        .await;
    assert_eq!(wrong.status.code(), Some(255), "{}", all_output(&wrong));

    let keys_only = lab.device("keys-only");
    assert_eq!(keys_only.password(), None);
    let refused = client
        .run_with_password(keys_only.address(), "lab", "id -u")
        .await;
    assert_eq!(refused.status.code(), Some(255), "{}", all_output(&refused));
    assert!(client.run(keys_only, "true").await.status.success());
    lab.stop().await;
}

/// Hashes a file with the host's sha256sum, independently of the device.
fn sha256_hex(path: &std::path::Path) -> String {
    let output = std::process::Command::new("sha256sum")
        .arg(path)
        .output()
        .unwrap();
    String::from_utf8(output.stdout)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}
