//! `fwu batch`: mass upgrades of a build over a selection of devices, from
//! the dry run to the report.
//!
//! `start` and `resume` run the batch in the foreground with a live board
//! (redrawn on a terminal; elsewhere, only the lines that changed);
//! the batch lives in the catalogue, so `watch`, `pause` and `cancel` work
//! from another terminal, and a batch whose process ended is carried on by
//! `resume`. Exit status of `start`, `resume` and `watch`: 0 every device
//! upgraded or already there, 3 some device failed or was aborted,
//! 4 cancelled, 5 paused.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Subcommand};
use fwu_engine::batch::{self, Plan, Rollout, Selection, Summary};
use fwu_engine::catalogue::{Catalogue, SysupgradeOptions};
use fwu_engine::events::Discard;
use tokio_util::sync::CancellationToken;

use crate::output;
use crate::output::say;
use crate::{Failure, Globals};

#[derive(Subcommand)]
pub enum BatchCommand {
    /// List every device a batch would upgrade, with its image, and every
    /// device it would leave out, with the reason.
    DryRun(SelectArgs),
    /// Start a batch and run it in the foreground with a live board.
    Start(StartArgs),
    /// List the batches.
    List,
    /// Show a batch: counts, every device, the devices left out, its log.
    Show { id: i64 },
    /// Stop starting new operations; running ones finish.
    Pause { id: i64 },
    /// Carry a paused or interrupted batch on, in the foreground.
    Resume { id: i64 },
    /// Cancel everything not yet flashing; flashing devices reach a verdict.
    Cancel { id: i64 },
    /// Show a batch's live board until it ends or pauses.
    Watch { id: i64 },
    /// Write a report for a customer; with --json, its rows as JSON.
    Report {
        id: i64,
        #[arg(long, value_parser = ["csv", "html"], default_value = "html")]
        format: String,
        /// Write to this file instead of standard output.
        #[arg(long)]
        output: Option<PathBuf>,
    },
}

#[derive(Args)]
pub struct SelectArgs {
    category: String,
    version: String,
    /// Only devices of this site.
    #[arg(long)]
    site: Option<String>,
    /// Only devices with at least one of these tags (repeatable).
    #[arg(long = "tag")]
    tags: Vec<String>,
    /// These devices (repeatable); with --site or --tag they are added.
    #[arg(long = "device")]
    devices: Vec<String>,
    /// Include devices whose firmware the catalogue does not know, when
    /// their board has an image in the build.
    #[arg(long)]
    firmwareless: bool,
}

#[derive(Args)]
pub struct StartArgs {
    #[command(flatten)]
    select: SelectArgs,
    /// Operations at once (default: the `concurrency` setting).
    #[arg(long)]
    concurrency: Option<usize>,
    /// Size of the first wave; the rest waits for it.
    #[arg(long)]
    wave: Option<usize>,
    /// Pause when this percentage of finished operations failed.
    #[arg(long, value_name = "PERCENT")]
    max_failures: Option<u8>,
    /// Give up on devices not upgraded by then: an RFC 3339 time or a
    /// duration from now such as 90m, 2h, 1d.
    #[arg(long, value_name = "TIME")]
    deadline: Option<String>,
    /// A sysupgrade option letter: c o n u p k F (repeatable).
    #[arg(long = "sysupgrade-option", value_name = "LETTER")]
    sysupgrade_options: Vec<char>,
    /// Record the batch and return at once, without running it; run it
    /// later with `fwu batch resume ID`.
    #[arg(long)]
    no_run: bool,
}

impl SelectArgs {
    fn selection(&self) -> Selection {
        Selection {
            site: self.site.clone(),
            tags: self.tags.clone(),
            devices: self.devices.clone(),
            firmwareless: self.firmwareless,
        }
    }
}

pub async fn run(command: BatchCommand, globals: &Globals) -> Result<ExitCode, Failure> {
    let engine = globals.engine()?;
    let catalogue = &engine.catalogue;
    match command {
        BatchCommand::DryRun(args) => {
            let plan = batch::plan(catalogue, &args.category, &args.version, &args.selection())?;
            output::record(globals.json, &plan, human_plan)
        }
        BatchCommand::Start(args) => {
            let settings = engine.settings()?;
            let rollout = Rollout {
                concurrency: args.concurrency.unwrap_or_else(|| settings.concurrency()),
                first_wave: args.wave,
                max_failures_percent: args.max_failures,
                deadline: args.deadline.as_deref().map(parse_deadline).transpose()?,
            };
            let options = SysupgradeOptions::from_letters(&args.sysupgrade_options)?;
            let (started, plan) = batch::start(
                catalogue,
                &args.select.category,
                &args.select.version,
                &args.select.selection(),
                options,
                &rollout,
            )?;
            if !globals.json {
                say!("{}", human_plan(&plan));
                say!("\nbatch {} started", started.id);
            }
            if args.no_run {
                if globals.json {
                    output::json(&batch::summary(catalogue, started.id)?)?;
                }
                return Ok(ExitCode::SUCCESS);
            }
            run_in_foreground(&engine, started.id, globals).await
        }
        BatchCommand::List => {
            let mut summaries = Vec::new();
            for found in catalogue.batches()? {
                summaries.push((found.clone(), batch::summary(catalogue, found.id)?));
            }
            let records: Vec<_> = summaries.iter().map(|(_, s)| s).collect();
            output::record(globals.json, &records, |_| {
                output::table(
                    &["id", "build", "status", "done", "created_at"],
                    summaries.iter().map(|(b, s)| {
                        vec![
                            b.id.to_string(),
                            format!("{} {}", b.category, b.version),
                            s.status.clone(),
                            format!("{}/{}", s.finished(), s.total),
                            b.created_at.clone(),
                        ]
                    }),
                )
            })
        }
        BatchCommand::Show { id } => {
            let summary = batch::summary(catalogue, id)?;
            if globals.json {
                let record = serde_json::json!({
                    "summary": summary,
                    "batch": catalogue.batch(id)?,
                    "devices": batch::report::rows(catalogue, id)?,
                    "log": catalogue.batch_log(id)?,
                });
                output::json(&record)?;
            } else {
                say!("{}", board(catalogue, id)?);
                for skip in catalogue.batch_skips(id)? {
                    say!("left out {}: {}", skip.device, skip.reason);
                }
                for line in catalogue.batch_log(id)? {
                    say!("{} {}", line.at, line.line);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        BatchCommand::Pause { id } => {
            batch::pause(catalogue, id)?;
            say!("batch {id} paused: running operations finish, nothing new starts");
            Ok(ExitCode::SUCCESS)
        }
        BatchCommand::Resume { id } => {
            batch::resume(catalogue, id)?;
            run_in_foreground(&engine, id, globals).await
        }
        BatchCommand::Cancel { id } => {
            batch::cancel(catalogue, id)?;
            say!("batch {id} cancelled: devices already flashing still reach a verdict");
            Ok(ExitCode::SUCCESS)
        }
        BatchCommand::Watch { id } => {
            let mut board = Board::default();
            loop {
                let summary = batch::summary(catalogue, id)?;
                board.draw(catalogue, id)?;
                if summary.status != "running" {
                    return finish(globals, &summary);
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
        BatchCommand::Report { id, format, output } => {
            let text = if globals.json {
                let rows = batch::report::rows(catalogue, id)?;
                format!("{}\n", serde_json::to_string_pretty(&rows)?)
            } else {
                match format.as_str() {
                    "csv" => batch::report::csv(catalogue, id)?,
                    _ => batch::report::html(catalogue, id)?,
                }
            };
            match output {
                Some(path) => {
                    std::fs::write(&path, text)?;
                    say!("wrote {}", path.display());
                }
                None => print!("{text}"),
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Runs a batch with a live board. The first Ctrl-C pauses it (running
/// operations finish); the second leaves at once, and `resume` carries on.
async fn run_in_foreground(
    engine: &fwu_engine::actions::Engine,
    id: i64,
    globals: &Globals,
) -> Result<ExitCode, Failure> {
    let ctx = engine.context(Arc::new(Discard))?;
    let stop = CancellationToken::new();
    let scheduler = {
        let ctx = ctx.clone();
        tokio::spawn(async move { batch::run(&ctx, id, CancellationToken::new()).await })
    };
    let watcher = {
        let catalogue = ctx.catalogue.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!(
                    "fwu: pausing batch {id}: running operations finish; Ctrl-C again to leave \
                     now (`fwu batch resume {id}` carries on)"
                );
                let _ = batch::pause(&catalogue, id);
                stop.cancel();
            }
            if tokio::signal::ctrl_c().await.is_ok() {
                std::process::exit(1);
            }
        })
    };
    let quiet = globals.json;
    let board = Arc::new(std::sync::Mutex::new(Board::default()));
    let drawing = {
        let catalogue = ctx.catalogue.clone();
        let board = board.clone();
        tokio::spawn(async move {
            loop {
                if !quiet {
                    let _ = lock(&board).draw(&catalogue, id);
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        })
    };
    let result = scheduler.await?;
    drawing.abort();
    watcher.abort();
    let summary = result?;
    if !quiet {
        lock(&board).draw(&ctx.catalogue, id)?;
    }
    finish(globals, &summary)
}

fn finish(globals: &Globals, summary: &Summary) -> Result<ExitCode, Failure> {
    if globals.json {
        output::json(summary)?;
    } else {
        say!(
            "batch {}: {} ({} upgraded, {} not needed, {} failed, {} aborted, {} cancelled, \
             {} left out){}",
            summary.batch,
            summary.status,
            summary.success,
            summary.not_needed,
            summary.failed,
            summary.aborted,
            summary.cancelled,
            summary.skipped,
            summary
                .pause_reason
                .as_deref()
                .map(|r| format!("; paused: {r}"))
                .unwrap_or_default()
        );
    }
    Ok(ExitCode::from(match summary.status.as_str() {
        "success" => 0,
        "cancelled" => 4,
        "paused" => 5,
        _ => 3,
    }))
}

/// The live board of a batch as last drawn, so that where standard output
/// is no terminal (a log file, CI) only what changed is printed again.
#[derive(Default)]
struct Board {
    /// Each operation's line as last printed, by operation id.
    lines: HashMap<i64, String>,
    totals: Option<String>,
}

impl Board {
    /// Draws the board: on a terminal the whole screen anew; elsewhere the
    /// title once, then the device lines and the totals line that changed
    /// since the last draw.
    fn draw(&mut self, catalogue: &Catalogue, id: i64) -> Result<(), Failure> {
        let lines = board_lines(catalogue, id)?;
        if std::io::stdout().is_terminal() {
            say!("\x1b[H\x1b[2J{}", lines.text());
            return Ok(());
        }
        if self.totals.is_none() {
            say!("{}", lines.title);
        }
        for (operation, line) in lines.devices {
            if self.lines.get(&operation) != Some(&line) {
                say!("{line}");
                self.lines.insert(operation, line);
            }
        }
        if self.totals.as_ref() != Some(&lines.totals) {
            say!("{}", lines.totals);
            self.totals = Some(lines.totals);
        }
        Ok(())
    }
}

/// Takes the board's lock; a draw that panicked leaves nothing half done
/// that matters, so a poisoned lock is usable.
fn lock(board: &std::sync::Mutex<Board>) -> std::sync::MutexGuard<'_, Board> {
    board
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The board's lines: a title, one line per operation, the totals.
struct BoardLines {
    title: String,
    /// (operation id, line), in rollout order.
    devices: Vec<(i64, String)>,
    totals: String,
}

impl BoardLines {
    fn text(&self) -> String {
        let mut text = format!("{}\n", self.title);
        for (_, line) in &self.devices {
            text.push_str(line);
            text.push('\n');
        }
        text.push_str(&self.totals);
        text
    }
}

/// One line per device with stage, progress and status, then the totals.
fn board(catalogue: &Catalogue, id: i64) -> Result<String, Failure> {
    Ok(board_lines(catalogue, id)?.text())
}

fn board_lines(catalogue: &Catalogue, id: i64) -> Result<BoardLines, Failure> {
    let summary = batch::summary(catalogue, id)?;
    let found = catalogue.batch(id)?;
    let title = format!("batch {id}: {} {}", found.category, found.version);
    let devices = batch::operations(catalogue, id)?
        .into_iter()
        .map(|operation| {
            let line = format!(
                "{:<20} {:<10} {:>3}% {}",
                operation.device,
                operation.stage.as_str(),
                operation.progress,
                operation.status
            );
            (operation.id, line)
        })
        .collect();
    let totals = format!(
        "{}: {}/{} done, {} running, {} waiting, {} upgraded, {} not needed, {} failed, \
         {} aborted, {} cancelled, {} left out, {}% success",
        summary.status,
        summary.finished(),
        summary.total,
        summary.in_progress,
        summary.pending,
        summary.success,
        summary.not_needed,
        summary.failed,
        summary.aborted,
        summary.cancelled,
        summary.skipped,
        summary.success_rate
    );
    Ok(BoardLines {
        title,
        devices,
        totals,
    })
}

fn human_plan(plan: &Plan) -> String {
    let mut text = format!(
        "{} {}: {} devices to upgrade, {} left out\n",
        plan.build.category,
        plan.build.version,
        plan.upgrades.len(),
        plan.skipped.len()
    );
    for planned in &plan.upgrades {
        text.push_str(&format!(
            "upgrade  {:<20} {:<24} image {} ({}), runs {}\n",
            planned.device,
            planned.board,
            planned.image_id,
            planned.image_type,
            planned.running.as_deref().unwrap_or("unknown firmware")
        ));
    }
    for skipped in &plan.skipped {
        text.push_str(&format!(
            "skip     {:<20} {}\n",
            skipped.device, skipped.reason
        ));
    }
    text.trim_end().to_string()
}

/// Reads a deadline: an RFC 3339 time, or a duration from now (`90m`,
/// `2h`, `1d`, `45s`).
fn parse_deadline(text: &str) -> Result<String, Failure> {
    if let Some(at) = fwu_engine::catalogue::parse_time(text) {
        return Ok(fwu_engine::catalogue::format_time(at));
    }
    let (number, unit) = text.split_at(text.len().saturating_sub(1));
    let seconds_per = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => 0,
    };
    let count: i64 = number.parse().unwrap_or(-1);
    if seconds_per == 0 || count <= 0 {
        anyhow::bail!(
            "deadline {text:?} is neither an RFC 3339 time nor a duration such as 90m, 2h, 1d"
        );
    }
    let at = time::OffsetDateTime::now_utc() + time::Duration::seconds(count * seconds_per);
    Ok(fwu_engine::catalogue::format_time(at))
}
