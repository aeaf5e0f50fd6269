//! The table the benchmark prints: for every figure, ours, the reference,
//! their ratio and whether the target is met; and a line naming the
//! machine, since every figure depends on it.

use std::fmt;
use std::time::Duration;

/// Which way a ratio must go to meet its target.
#[derive(Clone, Copy, Debug)]
pub enum Target {
    /// ours ÷ reference must be at least this (throughputs).
    AtLeast(f64),
    /// ours ÷ reference must be at most this (times, memory).
    AtMost(f64),
    /// No target: the row explains another.
    None,
}

/// One measured figure.
#[derive(Clone, Debug)]
pub struct Row {
    /// What was measured, in the catalogue's words.
    pub figure: String,
    /// Our figure, with its unit.
    pub ours: f64,
    /// The reference's figure, in the same unit.
    pub reference: f64,
    /// What the reference is.
    pub reference_name: String,
    /// The unit of both figures.
    pub unit: &'static str,
    /// The target for ours ÷ reference.
    pub target: Target,
}

impl Row {
    /// Ours divided by the reference.
    pub fn ratio(&self) -> f64 {
        self.ours / self.reference
    }

    /// Whether the target is met; none when the row has no target.
    pub fn met(&self) -> Option<bool> {
        let ratio = self.ratio();
        match self.target {
            Target::AtLeast(limit) => Some(ratio >= limit),
            Target::AtMost(limit) => Some(ratio <= limit),
            Target::None => None,
        }
    }
}

/// Every row measured so far, printed as they come and as a table at the
/// end.
#[derive(Default)]
pub struct Table {
    rows: Vec<Row>,
}

impl Table {
    /// Adds a row and prints it at once, so that a long run shows progress.
    pub fn add(&mut self, row: Row) {
        println!("  {}", line(&row));
        self.rows.push(row);
    }
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "| figure | ours | reference | ratio | target | met |")?;
        writeln!(f, "| --- | --- | --- | --- | --- | --- |")?;
        for row in &self.rows {
            let target = match row.target {
                Target::AtLeast(limit) => format!(">= {limit:.2}"),
                Target::AtMost(limit) => format!("<= {limit:.2}"),
                Target::None => "-".to_string(),
            };
            let met = match row.met() {
                Some(true) => "yes",
                Some(false) => "NO",
                None => "-",
            };
            writeln!(
                f,
                "| {} | {} {} | {} {} ({}) | {:.2} | {} | {} |",
                row.figure,
                number(row.ours),
                row.unit,
                number(row.reference),
                row.unit,
                row.reference_name,
                row.ratio(),
                target,
                met
            )?;
        }
        Ok(())
    }
}

/// One row as a line of progress.
fn line(row: &Row) -> String {
    let verdict = match row.met() {
        Some(true) => " (target met)",
        Some(false) => " (TARGET MISSED)",
        None => "",
    };
    format!(
        "{}: ours {} {}, {} {} {}, ratio {:.2}{verdict}",
        row.figure,
        number(row.ours),
        row.unit,
        row.reference_name,
        number(row.reference),
        row.unit,
        row.ratio()
    )
}

/// A figure with as many decimals as its size deserves.
fn number(value: f64) -> String {
    if value >= 100.0 {
        format!("{value:.0}")
    } else if value >= 10.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.2}")
    }
}

/// Bytes per second as MiB/s.
pub fn mib_per_second(bytes: u64, took: Duration) -> f64 {
    bytes as f64 / (1 << 20) as f64 / took.as_secs_f64().max(1e-9)
}

/// The machine the figures were taken on: CPU model, cores, memory,
/// whether the CPU has SHA extensions, and the kernel.
pub fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|line| line.strip_prefix("model name"))
        .and_then(|rest| rest.split_once(':'))
        .map_or("unknown CPU", |(_, name)| name.trim())
        .to_string();
    let sha = cpuinfo.split_whitespace().any(|flag| flag == "sha_ni");
    let memory = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix("MemTotal:"))
        .and_then(|rest| rest.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0, |kib| kib >> 20);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!(
        "machine: {model}, {} cores, {memory} GiB, SHA extensions {}, Linux {}",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        if sha { "yes" } else { "no" },
        kernel.trim()
    )
}

/// Runs `measure` `runs` times and returns the shortest time: the figure
/// least disturbed by the rest of the machine.
pub fn best_of<E>(
    runs: usize,
    mut measure: impl FnMut() -> Result<Duration, E>,
) -> Result<Duration, E> {
    let mut best = Duration::MAX;
    for _ in 0..runs {
        best = best.min(measure()?);
    }
    Ok(best)
}
