//! Figure 4, catalogue: 10,000 devices and 100,000 upgrade operations,
//! inserted through the engine's `Catalogue` API (timed on their own), then
//! the queries the window and `fwu` make: listing devices, filtering
//! operations by device and by status, and opening the device page of a
//! device with 1,000 operations, and what one pass of a batch's scheduler
//! reads from a batch of 10,000 operations. Each must take under 50 ms.
//!
//! The catalogue lives in `/dev/shm` where there is one: filling it takes
//! 100,000 transactions (a batch's operations are recorded in one, but each
//! verdict is its own), and on a disk every commit waits for a flush. The
//! queries read from the page cache either way.

use std::time::{Duration, Instant};

use fwu_engine::batch;
use fwu_engine::catalogue::{
    Catalogue, DeviceAuth, NewBatch, NewDevice, NewImage, OperationFilter, Probe, Status,
    SysupgradeOptions,
};

use crate::report::{Row, Table, Target};

/// Devices in the catalogue.
const DEVICES: usize = 10_000;
/// Batches over every device: each gives every device one operation.
const ROUNDS: usize = 10;
/// Operations of the one busy device, whose page is opened.
const BUSY_OPERATIONS: usize = 1_000;
/// Log lines of each operation of the busy device, about what an upgrade
/// writes.
const BUSY_LOG_LINES: usize = 12;
/// Runs of each query; the best counts, and the worst is printed.
const RUNS: usize = 5;
/// The longest a query may take.
const LIMIT: Duration = Duration::from_millis(50);

/// A timed query; it returns how many rows it read.
type Query<'a> = Box<dyn Fn() -> anyhow::Result<usize> + 'a>;

/// Measures the catalogue figure and adds its rows to `table`.
pub fn run(table: &mut Table) -> anyhow::Result<()> {
    println!(
        "catalogue: {DEVICES} devices, {} upgrade operations",
        DEVICES * ROUNDS + BUSY_OPERATIONS - ROUNDS
    );
    let dir = crate::ram_dir("fwu-bench-catalogue-")?;
    let catalogue = Catalogue::open_in(dir.path())?;
    let (busy, big_batch) = fill(&catalogue)?;

    let queries: Vec<(&str, Query)> = vec![
        ("list devices", Box::new(|| Ok(catalogue.devices()?.len()))),
        (
            "operations of one device",
            Box::new(|| {
                let filter = OperationFilter {
                    device_id: Some(busy),
                    ..OperationFilter::default()
                };
                Ok(catalogue.operations(&filter)?.len())
            }),
        ),
        (
            "failed operations",
            Box::new(|| {
                let filter = OperationFilter {
                    status: Some(Status::Failed),
                    ..OperationFilter::default()
                };
                Ok(catalogue.operations(&filter)?.len())
            }),
        ),
        (
            "failed operations of one device",
            Box::new(|| {
                let filter = OperationFilter {
                    device_id: Some(busy),
                    status: Some(Status::Failed),
                    ..OperationFilter::default()
                };
                Ok(catalogue.operations(&filter)?.len())
            }),
        ),
        (
            "latest 50 operations",
            Box::new(|| {
                let filter = OperationFilter {
                    limit: Some(50),
                    ..OperationFilter::default()
                };
                Ok(catalogue.operations(&filter)?.len())
            }),
        ),
        (
            "unfinished operations",
            Box::new(|| Ok(catalogue.unfinished_operations()?.len())),
        ),
        (
            "device page (as the window opens it)",
            Box::new(|| device_page(&catalogue, "busy")),
        ),
        (
            "device history: 1,000 operations and their logs",
            Box::new(|| device_history(&catalogue, busy)),
        ),
        (
            "scheduler pass over a batch of 10,000 operations",
            Box::new(|| scheduler_pass(&catalogue, big_batch)),
        ),
    ];
    for (name, query) in queries {
        let mut best = Duration::MAX;
        let mut worst = Duration::ZERO;
        let mut rows = 0;
        for _ in 0..RUNS {
            let started = Instant::now();
            rows = query()?;
            let took = started.elapsed();
            best = best.min(took);
            worst = worst.max(took);
        }
        println!(
            "  {name}: {rows} rows, best {:.1} ms, worst {:.1} ms",
            best.as_secs_f64() * 1e3,
            worst.as_secs_f64() * 1e3
        );
        table.add(Row {
            figure: format!("catalogue: {name}"),
            ours: best.as_secs_f64() * 1e3,
            reference: LIMIT.as_secs_f64() * 1e3,
            reference_name: "the limit".to_string(),
            unit: "ms",
            target: Target::AtMost(1.0),
        });
    }
    Ok(())
}

/// What one pass of the batch scheduler reads
/// (`batch::scheduler::schedule`) when it starts an operation: the batch,
/// then its operations twice, before and after the start. A pass runs after
/// each operation ends and every 100 ms while starts are held back; one that
/// starts nothing reads the operations once. Returns the operations of one
/// read.
fn scheduler_pass(catalogue: &Catalogue, batch_id: i64) -> anyhow::Result<usize> {
    catalogue.batch(batch_id)?;
    batch::operations(catalogue, batch_id)?;
    Ok(batch::operations(catalogue, batch_id)?.len())
}

/// What the window's device page reads: the device, its firmware and that
/// image, the images of its board, its 50 latest operations and the log of
/// the newest. Returns how many operations it read.
fn device_page(catalogue: &Catalogue, name: &str) -> anyhow::Result<usize> {
    let device = catalogue.device(name)?;
    if let Some(firmware) = catalogue.device_firmware(device.id)? {
        catalogue.image(firmware.image_id)?;
    }
    if let Some(board) = &device.board {
        for build in catalogue.builds(None)? {
            let images = catalogue.images(build.id)?;
            std::hint::black_box(images.iter().filter(|i| i.boards.contains(board)).count());
        }
    }
    let operations = catalogue.operations(&OperationFilter {
        device_id: Some(device.id),
        limit: Some(50),
        ..OperationFilter::default()
    })?;
    if let Some(newest) = operations.first() {
        catalogue.operation_log(newest.id)?;
    }
    Ok(operations.len())
}

/// Every operation of a device with every log line: the whole history a
/// report or an export reads. Returns the count of log lines.
fn device_history(catalogue: &Catalogue, device_id: i64) -> anyhow::Result<usize> {
    let operations = catalogue.operations(&OperationFilter {
        device_id: Some(device_id),
        ..OperationFilter::default()
    })?;
    let mut lines = 0;
    for operation in &operations {
        lines += catalogue.operation_log(operation.id)?.len();
    }
    Ok(lines)
}

/// Fills the catalogue; returns the busy device's id and that of a batch
/// over every device.
fn fill(catalogue: &Catalogue) -> anyhow::Result<(i64, i64)> {
    catalogue.add_category("WiFi", "")?;
    let build = catalogue.add_build(
        "WiFi",
        "24.10.0",
        Some("OpenWrt 24.10.0 r28427-6df0e3d02a"),
        "",
    )?;
    let image = catalogue.add_image(&NewImage {
        build_id: build.id,
        image_type: "tplink_archer-c7-v5-squashfs-sysupgrade".to_string(),
        file_name: "openwrt-24.10.0-ath79-generic-tplink_archer-c7-v5-squashfs-sysupgrade.bin"
            .to_string(),
        size: 8 << 20,
        sha256: "0".repeat(64),
        boards: vec!["tplink,archer-c7-v5".to_string()],
        metadata: None,
    })?;

    let started = Instant::now();
    let mut new = vec![new_device("busy", 0)];
    new.extend((1..DEVICES).map(|n| new_device(&format!("ap{n:05}"), n)));
    let devices = catalogue.add_devices(&new)?;
    let took = started.elapsed();
    println!(
        "  inserted {DEVICES} devices in one transaction: {:.2} s",
        took.as_secs_f64()
    );
    let started = Instant::now();
    for device in devices.iter().step_by(3) {
        catalogue.record_probe(
            device.id,
            &Probe {
                board: Some("tplink,archer-c7-v5".to_string()),
                model: Some("TP-Link Archer C7 v5".to_string()),
                os_identifier: Some("OpenWrt 23.05.3 r23809-234f1a2efa".to_string()),
                mac: None,
                boot_id: None,
                uptime: Some(100),
            },
        )?;
    }
    println!(
        "  recorded {} probes, one transaction each: {:.2} s",
        devices.len().div_ceil(3),
        started.elapsed().as_secs_f64()
    );
    let busy = devices[0].id;

    let started = Instant::now();
    let mut verdicts = 0;
    let everyone: Vec<(i64, i64)> = devices.iter().map(|d| (d.id, image.id)).collect();
    let mut big_batch = 0;
    for _ in 0..ROUNDS {
        big_batch = record_batch(catalogue, build.id, everyone.clone())?;
        verdicts += settle(catalogue, big_batch, None)?;
    }
    for _ in ROUNDS..BUSY_OPERATIONS {
        let batch = record_batch(catalogue, build.id, vec![(busy, image.id)])?;
        verdicts += settle(catalogue, batch, Some(BUSY_LOG_LINES))?;
    }
    println!(
        "  recorded {verdicts} upgrade operations (batches of {DEVICES} in one transaction, \
         one transaction per verdict): {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok((busy, big_batch))
}

/// A device of the big catalogue, spread over sites and tags.
fn new_device(name: &str, index: usize) -> NewDevice {
    NewDevice {
        name: name.to_string(),
        host: format!(
            "10.{}.{}.{}",
            index / 65536 % 256,
            index / 256 % 256,
            index % 256
        ),
        alternate_hosts: Vec::new(),
        port: 22,
        user: "root".to_string(),
        auth: DeviceAuth::Agent,
        site: Some(format!("site-{:02}", index % 40)),
        tags: vec![format!("floor-{}", index % 7), "ap".to_string()],
    }
}

/// Records a batch of `upgrades`; returns its id.
fn record_batch(
    catalogue: &Catalogue,
    build_id: i64,
    upgrades: Vec<(i64, i64)>,
) -> anyhow::Result<i64> {
    let new = NewBatch {
        build_id,
        selection: serde_json::json!({}),
        options: SysupgradeOptions::default(),
        rollout: serde_json::json!({}),
        upgrades,
        skipped: Vec::new(),
    };
    Ok(catalogue.add_batch(&new, "benchmark batch")?.id)
}

/// Gives every operation of a batch a verdict, mostly success, with
/// `extra_lines` log lines before it; returns how many it settled.
fn settle(catalogue: &Catalogue, batch: i64, extra_lines: Option<usize>) -> anyhow::Result<usize> {
    let operations = batch::operations(catalogue, batch)?;
    for operation in &operations {
        for line in 0..extra_lines.unwrap_or(0) {
            catalogue.append_log(operation.id, &format!("stage {line} of the upgrade"))?;
        }
        let status = match operation.id % 50 {
            0 => Status::Failed,
            1 => Status::Aborted,
            _ => Status::Success,
        };
        catalogue.finish_operation(operation.id, status, "benchmark verdict")?;
    }
    Ok(operations.len())
}
