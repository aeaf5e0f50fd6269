//! Printing: records as JSON or as lines for people, and the live view of
//! a running upgrade operation (a progress bar on a terminal, plain lines
//! elsewhere).

use std::io::IsTerminal;
use std::process::ExitCode;

use fwu_engine::catalogue::Status;
use fwu_engine::events::{Event, EventSink};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use crate::Failure;

/// Prints a record as pretty JSON on standard output.
pub fn json<T: Serialize>(record: &T) -> Result<(), Failure> {
    print_line(&serde_json::to_string_pretty(record)?)
}

/// Prints a line on standard output like `println!`, but a reader that
/// went away (`fwu ... | head -1`) is no error: `println!` would panic.
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::output::say_line(&format!($($arg)*))
    };
}
pub(crate) use say;

/// What [`say!`] calls: the line is written, or dropped when standard
/// output is closed; the command goes on either way.
pub fn say_line(text: &str) {
    let _ = print_line(text);
}

/// Prints one line on standard output. A reader that went away (`fwu ...
/// | head -1`) is no error: `println!` would panic there.
fn print_line(text: &str) -> Result<(), Failure> {
    use std::io::Write;
    match writeln!(std::io::stdout().lock(), "{text}") {
        Err(error) if error.kind() != std::io::ErrorKind::BrokenPipe => Err(error.into()),
        _ => Ok(()),
    }
}

/// Prints a record as JSON with `--json`, else the lines `human` gives;
/// no lines (an empty listing) print nothing, not a blank line.
pub fn record<T: Serialize>(
    as_json: bool,
    record: &T,
    human: impl FnOnce(&T) -> String,
) -> Result<ExitCode, Failure> {
    if as_json {
        json(record)?;
    } else {
        let text = human(record);
        if !text.is_empty() {
            print_line(&text)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A listing as tab-separated lines under a header line naming the
/// columns (as the JSON fields are named); empty when there are no rows,
/// so that an empty listing prints nothing.
pub fn table(header: &[&str], rows: impl IntoIterator<Item = Vec<String>>) -> String {
    let rows: Vec<String> = rows.into_iter().map(|row| row.join("\t")).collect();
    if rows.is_empty() {
        return String::new();
    }
    let mut text = header.join("\t");
    for row in rows {
        text.push('\n');
        text.push_str(&row);
    }
    text
}

/// A record as `key: value` lines, for people.
pub fn fields(pairs: &[(&str, String)]) -> String {
    pairs
        .iter()
        .map(|(key, value)| format!("{key}: {value}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// An optional value as a field shows it: `-` when there is none.
pub fn or_dash<T: ToString>(value: Option<T>) -> String {
    value.map_or_else(|| "-".to_string(), |v| v.to_string())
}

/// An error and its causes on one line, as `fwu: ...` prints them.
pub fn error_chain(error: &Failure) -> String {
    let mut text = error.to_string();
    for cause in error.chain().skip(1) {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
    }
    text
}

/// The exit status for an operation's verdict.
pub fn exit_code(status: Status) -> ExitCode {
    ExitCode::from(match status {
        Status::Success | Status::NotNeeded => 0,
        Status::Aborted => 2,
        Status::Failed => 3,
        Status::Cancelled => 4,
        Status::Pending | Status::InProgress => 1,
    })
}

/// Shows a running operation on standard error: its log lines as they
/// come and, on a terminal, a progress bar with stage and upload rate.
pub struct Live {
    bar: Option<ProgressBar>,
}

impl Live {
    /// A live view; the bar only where standard error is a terminal.
    pub fn new() -> Live {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(100);
            bar.set_style(
                ProgressStyle::with_template("{bar:40.cyan/blue} {pos:>3}% {msg}")
                    .expect("the template is valid")
                    .progress_chars("=> "),
            );
            bar
        });
        Live { bar }
    }

    /// Removes the bar once the operation ended.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }

    fn line(&self, text: &str) {
        match &self.bar {
            Some(bar) => bar.println(text),
            None => eprintln!("{text}"),
        }
    }
}

impl EventSink for Live {
    fn emit(&self, event: Event) {
        match event {
            Event::Log { line, .. } => {
                let at = time::OffsetDateTime::now_utc();
                self.line(&format!(
                    "{:02}:{:02}:{:02} {line}",
                    at.hour(),
                    at.minute(),
                    at.second()
                ));
            }
            Event::Progress {
                stage, progress, ..
            } => {
                if let Some(bar) = &self.bar {
                    bar.set_position(u64::from(progress));
                    if stage != "upload" {
                        bar.set_message(stage);
                    }
                }
            }
            Event::Upload {
                sent,
                total,
                bytes_per_second,
                ..
            } => {
                if let Some(bar) = &self.bar {
                    bar.set_message(format!(
                        "upload {:.1}/{:.1} MiB at {:.1} MiB/s",
                        sent as f64 / 1_048_576.0,
                        total as f64 / 1_048_576.0,
                        bytes_per_second as f64 / 1_048_576.0
                    ));
                }
            }
            Event::Status { .. } | Event::Batch { .. } => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_has_a_header_unless_it_is_empty() {
        let header = ["id", "type"];
        assert_eq!(table(&header, Vec::<Vec<String>>::new()), "");
        let rows = vec![vec!["1".to_string(), "c7.bin".to_string()]];
        assert_eq!(table(&header, rows), "id\ttype\n1\tc7.bin");
    }

    #[test]
    fn fields_are_key_value_lines() {
        let text = fields(&[("name", "ap1".to_string()), ("site", or_dash(None::<&str>))]);
        assert_eq!(text, "name: ap1\nsite: -");
    }
}
