//! Where a device's time goes in the fleet figure, for `fwu` and for the
//! shell loop side by side: the mean time of each phase of one device's
//! upgrade, from the operation logs of the catalogue for `fwu` and from
//! the times the loop's script prints for the loop. A figure that misses
//! its target is explained from here before anything is changed.

use std::collections::HashMap;
use std::path::Path;

use anyhow::Context;
use fwu_engine::catalogue::{parse_time, Catalogue, OperationFilter};

/// The phases, in the order a device goes through them.
pub const NAMES: [&str; 4] = [
    "connect to uploaded",
    "uploaded to flash command",
    "flash command to session end",
    "session end to verdict",
];

/// When one device reached each phase's start, and its end, in seconds
/// since the epoch.
#[derive(Clone, Debug, Default)]
struct Marks {
    start: Option<f64>,
    uploaded: Option<f64>,
    flashing: Option<f64>,
    flashed: Option<f64>,
    done: Option<f64>,
}

impl Marks {
    /// The four phase lengths and the whole, or `None` when a mark is
    /// missing (the device was retried or failed).
    fn lengths(&self) -> Option<[f64; 5]> {
        let start = self.start?;
        let uploaded = self.uploaded?;
        let flashing = self.flashing?;
        let flashed = self.flashed?;
        let done = self.done?;
        Some([
            uploaded - start,
            flashing - uploaded,
            flashed - flashing,
            done - flashed,
            done - start,
        ])
    }
}

/// The mean phase lengths of one tool's run.
#[derive(Clone, Debug)]
pub struct Phases {
    /// The four phases, then a device's whole time, in seconds.
    pub mean: [f64; 5],
    /// The sum of every device's whole time, in seconds.
    pub busy: f64,
    /// Devices whose every mark was found.
    pub devices: usize,
}

impl Phases {
    fn from_marks(marks: impl Iterator<Item = Marks>) -> anyhow::Result<Phases> {
        let lengths: Vec<[f64; 5]> = marks.filter_map(|m| m.lengths()).collect();
        anyhow::ensure!(!lengths.is_empty(), "no device has every phase mark");
        let mut mean = [0.0; 5];
        for one in &lengths {
            for (sum, length) in mean.iter_mut().zip(one) {
                *sum += length;
            }
        }
        let busy = mean[4];
        for sum in &mut mean {
            *sum /= lengths.len() as f64;
        }
        Ok(Phases {
            mean,
            busy,
            devices: lengths.len(),
        })
    }

    /// The share of the slots' time no device used: the run's wall time
    /// times the concurrency, less every device's whole time.
    pub fn idle_share(&self, wall: f64, concurrency: usize) -> f64 {
        let slots = wall * concurrency as f64;
        ((slots - self.busy) / slots).max(0.0)
    }
}

/// The phases of the newest batch in the catalogue of `data_dir`, from its
/// operations' logs: "connecting to", "uploaded", "flashing with", the
/// line after sysupgrade's session ended ("waiting"), and the verdict.
pub fn of_batch(data_dir: &Path) -> anyhow::Result<Phases> {
    let catalogue = Catalogue::open_in(data_dir)?;
    let all = catalogue.operations(&OperationFilter::default())?;
    let batch = all
        .iter()
        .filter_map(|o| o.batch_id)
        .max()
        .context("the catalogue has no batch")?;
    let mut marks = Vec::new();
    for operation in all.iter().filter(|o| o.batch_id == Some(batch)) {
        let mut mark = Marks::default();
        for line in catalogue.operation_log(operation.id)? {
            let at = parse_time(&line.at).map(unix_seconds);
            let text = line.line.as_str();
            if text.starts_with("connecting to") && mark.start.is_none() {
                mark.start = at;
            } else if text.starts_with("uploaded ") {
                mark.uploaded = at;
            } else if text.starts_with("flashing with") {
                mark.flashing = at;
            } else if text.starts_with("waiting ") {
                mark.flashed = at;
            }
        }
        mark.done = operation
            .finished_at
            .as_deref()
            .and_then(parse_time)
            .map(unix_seconds);
        marks.push(mark);
    }
    Phases::from_marks(marks.into_iter())
}

/// The phases of the shell loop from its output, where the script prints
/// `HOST MARK SECONDS` at each mark (see `SHELL_LOOP` in `fleet.rs`).
pub fn of_shell_loop(output: &str) -> anyhow::Result<Phases> {
    let mut marks: HashMap<&str, Marks> = HashMap::new();
    for line in output.lines() {
        let mut words = line.split_whitespace();
        let (Some(host), Some(mark), Some(at), None) =
            (words.next(), words.next(), words.next(), words.next())
        else {
            continue;
        };
        let Ok(at) = at.parse::<f64>() else {
            continue;
        };
        let entry = marks.entry(host).or_default();
        match mark {
            "start" => entry.start = Some(at),
            "uploaded" => entry.uploaded = Some(at),
            "flashing" => entry.flashing = Some(at),
            "flashed" => entry.flashed = Some(at),
            "back" => entry.done = Some(at),
            _ => {}
        }
    }
    Phases::from_marks(marks.into_values())
}

fn unix_seconds(at: time::OffsetDateTime) -> f64 {
    at.unix_timestamp_nanos() as f64 / 1e9
}

/// Prints both tools' phases side by side.
pub fn print(ours: &Phases, loop_: &Phases, wall: (f64, f64), concurrency: usize) {
    println!(
        "  where a device's time goes (mean of {} and {} devices):",
        ours.devices, loop_.devices
    );
    println!("    {:<32} {:>8} {:>8}", "phase", "fwu", "loop");
    for (i, name) in NAMES.iter().enumerate() {
        println!(
            "    {:<32} {:>7.2}s {:>7.2}s",
            name, ours.mean[i], loop_.mean[i]
        );
    }
    println!(
        "    {:<32} {:>7.2}s {:>7.2}s",
        "one device, whole", ours.mean[4], loop_.mean[4]
    );
    println!(
        "    {:<32} {:>7.1}% {:>7.1}%",
        "slots idle",
        100.0 * ours.idle_share(wall.0, concurrency),
        100.0 * loop_.idle_share(wall.1, concurrency)
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_loop_marks_make_phases() {
        let output = "a start 10.0\na uploaded 11.0\na flashing 11.5\na flashed 13.0\n\
                      a back 19.0\na upgraded\nb start 10.0\nb uploaded 12.0\n";
        let phases = of_shell_loop(output).unwrap();
        assert_eq!(phases.devices, 1, "b has no verdict and is left out");
        assert_eq!(phases.mean, [1.0, 0.5, 1.5, 6.0, 9.0]);
        assert!((phases.idle_share(10.0, 1) - 0.1).abs() < 1e-9);
    }
}
