//! Upgrades interrupted from outside: cancelled before the flash (from a
//! second `fwu` or with Ctrl-C), and `fwu` killed (before the flash, or
//! while the device reboots) and then run again.
//!
//! A cancellation must leave the device as it was, stopped services
//! running again; a killed run must be taken over by the next, which
//! undoes what the dead one did before the flash and never flashes twice.

mod common;

use std::time::Duration;

use common::{archer, Bench, Login, Verdict, LAB_PASSWORD, OPENWRT_24, SERVICES};
use fwu_lab::{DeviceSpec, Memory};
use serde_json::Value;

/// How long an operation may take to reach the stage a test waits for.
const STAGE_WAIT: Duration = Duration::from_secs(30);

/// A device with so little memory that the upgrade stops its services,
/// behind a link slow enough (64 KiB/s, some 48 s for the image) that the
/// upload is still running when the test cancels it.
fn slow_tight_device() -> DeviceSpec {
    let mut spec = archer("ap1");
    spec.memory = Memory {
        total_kib: 65536,
        available_kib: 1000,
        cache_kib: 500,
    };
    spec.faults.bandwidth_bytes_per_second = Some(64 * 1024);
    spec
}

/// The command line of every upgrade here; image 1 is the only one.
const UPGRADE: [&str; 6] = [
    "--json",
    "upgrade",
    "ap1",
    "--image",
    "1",
    "--accept-new-host-key",
];

/// Whether an operation is uploading and has sent something.
fn uploading(operation: &Value) -> bool {
    operation["stage"] == "upload" && operation["progress"].as_u64() > Some(20)
}

/// Checks what a cancellation before the flash must leave behind.
fn assert_cancelled(bench: &Bench, cancelled: &Verdict) {
    cancelled
        .expect("cancelled", 4)
        .expect_line(&["started service collectd again"])
        .expect_line(&["started service uhttpd again"])
        .expect_no_line("flashing:");
    assert_eq!(
        cancelled.last_line(),
        "cancelled before flashing; nothing was flashed"
    );
    let state = bench.device("ap1").state();
    assert_eq!(state.running_services, SERVICES);
    assert!(
        state.sysupgrade_calls.is_empty(),
        "{:?}",
        state.sysupgrade_calls
    );
    assert_eq!(state.flash_count, 0);
    let partial = format!("/tmp/fwu-{}.bin", cancelled.id());
    assert!(
        !bench.device_file("ap1", &partial).exists(),
        "the partial upload {partial} was left on the device"
    );
}

#[tokio::test]
async fn cancelling_from_another_process_before_the_flash() {
    let bench = Bench::with_ap1(slow_tight_device()).await;
    let args = UPGRADE;
    let upgrade = bench.spawn_fwu(&args);

    let operation = bench.wait_for_operation(STAGE_WAIT, uploading).await;
    assert!(
        bench.device("ap1").state().running_services.is_empty(),
        "the services were not stopped for the upload"
    );
    let id = operation["id"].as_i64().expect("an id").to_string();
    let cancel = bench.fwu(&["operation", "cancel", &id]).await;
    cancel.expect_code(0);
    assert_eq!(
        cancel.stdout.trim(),
        format!("operation {id}: cancellation requested; its process stops it")
    );

    let cancelled = Verdict::from_run(bench.wait_fwu(upgrade, &args).await);
    assert_cancelled(&bench, &cancelled);
    let shown = bench.operation(cancelled.id()).await;
    assert_eq!(shown.record["status"], "cancelled");
    assert_eq!(shown.record["cancel_requested"], true);

    bench.stop().await;
}

#[tokio::test]
async fn ctrl_c_before_the_flash_cancels() {
    let bench = Bench::with_ap1(slow_tight_device()).await;
    let args = UPGRADE;
    let upgrade = bench.spawn_fwu(&args);
    let pid = upgrade.id().expect("fwu runs") as libc::pid_t;

    bench.wait_for_operation(STAGE_WAIT, uploading).await;
    // SAFETY: kill has no memory effects; the pid is our child, not yet
    // reaped, since `upgrade` still owns it.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);

    let run = bench.wait_fwu(upgrade, &args).await;
    assert!(
        run.stderr.contains("cancelling operation"),
        "fwu did not acknowledge Ctrl-C:\n{run}"
    );
    assert_cancelled(&bench, &Verdict::from_run(run));

    bench.stop().await;
}

#[tokio::test]
async fn killed_while_the_device_reboots_then_run_again() {
    let bench = Bench::with_ap1(archer("ap1")).await;
    // Long enough to kill fwu while it waits, short enough for a test.
    bench.set("openwrt.reconnect_delay", "10").await;
    let device = bench.device("ap1");
    let before = device.state();
    let args = UPGRADE;
    let mut first = bench.spawn_fwu(&args);

    let operation = bench
        .wait_for_operation(STAGE_WAIT, |operation| operation["stage"] == "reconnect")
        .await;
    assert!(operation["flashed_at"].is_string(), "{operation:#}");
    let id = operation["id"].as_i64().expect("an id");
    let late = bench.fwu(&["operation", "cancel", &id.to_string()]).await;
    late.expect_code(1);
    assert!(
        late.stderr.contains(&format!(
            "operation {id} cannot be cancelled: flashing has started"
        )),
        "{late}"
    );
    // SIGKILL: nothing of fwu gets to run afterwards.
    first.kill().await.expect("fwu can be killed");
    let orphan = bench.operation(id).await;
    assert_eq!(orphan.record["status"], "in-progress");
    assert_eq!(device.state().flash_count, 1);

    let again = bench.upgrade("ap1", &args[3..]).await;
    again
        .expect("success", 0)
        .expect_line(&["taken over: the process that ran this operation ended"])
        .expect_line(&["resuming after the flash"]);
    assert_eq!(again.id(), id, "the run again made a new operation");
    let flashes = again
        .log()
        .iter()
        .filter(|line| line.starts_with("flashing with `sysupgrade"))
        .count();
    assert_eq!(flashes, 1);
    let state = device.state();
    assert_eq!(state.flash_count, 1);
    assert_eq!(state.sysupgrade_calls.len(), 2);
    assert_eq!(state.release.os_identifier(), OPENWRT_24);
    assert_ne!(state.boot_id, before.boot_id);
    let list = bench.fwu(&["--json", "operation", "list"]).await.json();
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list:#}");

    bench.stop().await;
}

#[tokio::test]
async fn killed_before_the_flash_then_run_again_restores_the_device() {
    let mut spec = slow_tight_device();
    spec.memory.available_kib = 100;
    spec.memory.cache_kib = 50;
    spec.faults.bandwidth_bytes_per_second = Some(32 * 1024);
    let bench = Bench::start(vec![spec]).await;
    bench
        .add_device("ap1", "ap1", Login::Password(LAB_PASSWORD))
        .await;
    // A small image, so that the run again uploads it in no time.
    let board = fwu_lab::board(common::ARCHER).expect("a lab board");
    let release = fwu_lab::release("24.10.0").expect("a lab release");
    let mut image = fwu_lab::SampleImage::new(board, &release);
    image.size = 256 * 1024;
    let path = bench.scratch(&fwu_lab::sample_image_name(board, &image.release));
    fwu_lab::write_sample_image(&path, &image).expect("a sample image");
    bench.import("WiFi", "24.10.0", &path).await;
    let device = bench.device("ap1");

    let mut first = bench.spawn_fwu(&UPGRADE);
    let operation = bench.wait_for_operation(STAGE_WAIT, uploading).await;
    assert!(device.state().running_services.is_empty());
    first.kill().await.expect("fwu can be killed");

    // The run again finds the link fast and the image refused, so it ends
    // before the flash: it must undo what the killed run did as well.
    device.set_faults(fwu_lab::Faults {
        test_fails: true,
        ..fwu_lab::Faults::default()
    });
    let again = bench.upgrade("ap1", &UPGRADE[3..]).await;
    again
        .expect("aborted", 2)
        .expect_line(&["taken over: the process that ran this operation ended"])
        .expect_line(&[
            "services an earlier run of this operation stopped are still stopped \
             (collectd, dnsmasq, odhcpd, uhttpd)",
        ])
        .expect_line(&["started service uhttpd again"]);
    assert_eq!(again.id(), operation["id"].as_i64().expect("an id"));
    let state = device.state();
    assert_eq!(state.flash_count, 0);
    assert_eq!(
        state.running_services,
        SERVICES,
        "services the killed run stopped stay stopped; the log:\n{}",
        again.log().join("\n")
    );
    for left in ["/tmp/fwu-1.bin", "/tmp/fwu-1.bin.stopped"] {
        assert!(!bench.device_file("ap1", left).exists(), "{left} was left");
    }

    bench.stop().await;
}
