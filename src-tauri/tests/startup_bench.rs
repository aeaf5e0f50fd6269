//! The start-up benchmark: how long the window takes from a cold start to
//! a painted device list of 10,000 devices. It prints the figure the app
//! reports (milliseconds since its process started, taken when the page
//! says the list's first frame was painted) and checks only that the list
//! held every device: timing depends on the machine, so it is not asserted.
//! The target is under 1.5 s.

mod harness;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use fwu_engine::catalogue::{Catalogue, DeviceAuth, NewDevice};
use harness::Desktop;

const DEVICES: usize = 10_000;

/// Fills a catalogue with a fleet spread over sites, tags and addresses.
fn fleet(data_dir: &std::path::Path) {
    std::fs::create_dir_all(data_dir).expect("the data directory");
    let catalogue = Catalogue::open_in(data_dir).expect("the catalogue opens");
    let devices: Vec<NewDevice> = (0..DEVICES)
        .map(|index| NewDevice {
            name: format!("ap-{index:05}"),
            host: format!("192.0.2.{}", index % 250 + 1),
            alternate_hosts: Vec::new(),
            port: 22,
            user: "root".to_string(),
            auth: DeviceAuth::Agent,
            site: Some(format!("site-{}", index % 40)),
            tags: vec![format!("floor-{}", index % 12)],
        })
        .collect();
    catalogue.add_devices(&devices).expect("the fleet is added");
}

/// Starts the app on the devices view and returns what it printed at the
/// first paint.
fn first_paint(desktop: &Desktop, data_dir: &std::path::Path) -> String {
    let started = Instant::now();
    let mut app = desktop
        .command(env!("CARGO_BIN_EXE_firmware-upgrader"))
        .env("FWU_DATA_DIR", data_dir)
        .env("FWU_START_VIEW", "devices")
        .env("FWU_EXIT_AFTER_FIRST_PAINT", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the app starts");
    let stdout = app.stdout.take().expect("the app's output");
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.starts_with("first paint:") {
                let _ = sender.send(line);
                break;
            }
        }
    });
    let line = receiver.recv_timeout(Duration::from_secs(60));
    let _ = app.kill();
    let _ = app.wait();
    let line = line.expect("the app reported painting the device list within 60 s");
    println!(
        "{line} (process launch to report: {} ms)",
        started.elapsed().as_millis()
    );
    line
}

#[test]
fn cold_start_to_a_painted_list_of_10000_devices() {
    let desktop = Desktop::start();
    let data_dir = desktop.work.path().join("fleet");
    fleet(&data_dir);
    for run in ["cold", "warm"] {
        print!("{run} start: ");
        let line = first_paint(&desktop, &data_dir);
        assert!(line.contains(&format!("of {DEVICES} devices")), "{line}");
    }
}
