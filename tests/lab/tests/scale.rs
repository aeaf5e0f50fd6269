//! A lab of 200 devices starts well within a minute, costs little disk,
//! and every device answers.

mod support;

use std::time::{Duration, Instant};

use fwu_lab::DeviceSpec;
use support::{start, stdout, Client};

/// Returns the disk blocks (of 512 bytes) the files under `path` use.
fn disk_blocks(path: &std::path::Path) -> u64 {
    let output = std::process::Command::new("du")
        .arg("-s")
        .arg("--block-size=512")
        .arg(path)
        .output()
        .unwrap();
    stdout(&output)
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_devices_start_quickly_and_answer() {
    let client = Client::new();
    let boards = [
        "tplink,archer-c7-v5",
        "ubnt,unifi-ac-lite",
        "glinet,gl-ar300m-nand",
        "generic",
    ];
    let specs: Vec<DeviceSpec> = (0..200)
        .map(|i| DeviceSpec::new(&format!("ap{i:03}"), boards[i % boards.len()], "23.05.3"))
        .collect();
    let started = Instant::now();
    let (lab, dir) = start(&client, specs).await;
    let took = started.elapsed();
    println!("200 devices started in {took:?}");
    assert!(
        took < Duration::from_secs(40),
        "200 devices took {took:?} to start"
    );
    assert!(lab.devices().iter().all(|device| device.state().up));

    // Hard-linked base plus small per-device files: well under 100 MiB.
    let mib = disk_blocks(dir.path()) / 2048;
    println!("the lab uses {mib} MiB of disk");
    assert!(mib < 100, "the lab uses {mib} MiB of disk");

    for device in lab.devices().iter().step_by(25) {
        let board = client.run(device, "cat /tmp/sysinfo/board_name").await;
        assert_eq!(stdout(&board).trim(), device.board().name);
    }
    let stopping = Instant::now();
    lab.stop().await;
    println!("200 devices stopped in {:?}", stopping.elapsed());
}
