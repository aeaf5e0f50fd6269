//! `fwu upgrade` and `fwu operation`: running upgrade operations and
//! reading their records.

use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Subcommand};
use fwu_engine::catalogue::{
    LogLine, OperationFilter, Status, SysupgradeOptions, UpgradeOperation,
};
use fwu_engine::events::Discard;
use fwu_engine::upgrade::{self, UpgradeRequest};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::hints;
use crate::output::say;
use crate::output::{self, Live};
use crate::{Failure, Globals};

#[derive(Args)]
pub struct UpgradeArgs {
    /// The device to upgrade.
    device: String,
    /// The build to install: the image for the device's board is chosen.
    #[arg(long, num_args = 2, value_names = ["CATEGORY", "VERSION"],
          required_unless_present = "image", conflicts_with = "image")]
    build: Option<Vec<String>>,
    /// The image to install, by id.
    #[arg(long)]
    image: Option<i64>,
    /// A sysupgrade option letter: c o n u p k F (repeatable).
    #[arg(long = "sysupgrade-option", value_name = "LETTER")]
    sysupgrade_options: Vec<char>,
    /// Flash even if the image does not list the device's board.
    #[arg(long)]
    force: bool,
    /// Pin the host key the device presents if none is pinned yet.
    #[arg(long)]
    accept_new_host_key: bool,
}

#[derive(Subcommand)]
pub enum OperationCommand {
    /// List upgrade operations, newest first.
    List {
        #[arg(long)]
        device: Option<String>,
        #[arg(long)]
        status: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Show one operation with its log.
    Show { id: i64 },
    /// Cancel an operation; possible until flashing starts.
    Cancel { id: i64 },
    /// Run an operation left unfinished by a process that ended.
    Resume {
        id: i64,
        #[arg(long)]
        accept_new_host_key: bool,
    },
}

/// An operation with its log, as `--json` prints it.
#[derive(Serialize)]
struct OperationRecord {
    #[serde(flatten)]
    operation: UpgradeOperation,
    image: i64,
    log: Vec<LogLine>,
}

pub async fn upgrade(args: UpgradeArgs, globals: &Globals) -> Result<ExitCode, Failure> {
    let engine = globals.engine()?;
    let live = Arc::new(Live::new());
    let ctx = engine.context(live.clone())?;
    let options = SysupgradeOptions::from_letters(&args.sysupgrade_options)?;
    let image_id = match (args.image, &args.build) {
        (Some(id), _) => id,
        (None, Some(build)) => {
            choose_image(
                &ctx,
                &args.device,
                &build[0],
                &build[1],
                args.accept_new_host_key,
            )
            .await?
        }
        (None, None) => anyhow::bail!("give --build CATEGORY VERSION or --image ID"),
    };
    let operation = upgrade::start_operation(
        &ctx,
        &UpgradeRequest {
            device: args.device,
            image_id,
            options,
            force: args.force,
            batch_id: None,
        },
    )?;
    let status = run_in_foreground(&ctx, operation.id, args.accept_new_host_key).await?;
    live.finish();
    finish(globals, &ctx, operation.id, status)
}

pub async fn operation(command: OperationCommand, globals: &Globals) -> Result<ExitCode, Failure> {
    let engine = globals.engine()?;
    match command {
        OperationCommand::List {
            device,
            status,
            limit,
        } => {
            let device_id = match device {
                Some(name) => Some(engine.catalogue.device(&name)?.id),
                None => None,
            };
            let status = status.map(|s| s.parse::<Status>()).transpose()?;
            let operations = engine.catalogue.operations(&OperationFilter {
                device_id,
                status,
                limit: Some(limit),
                ..Default::default()
            })?;
            output::record(globals.json, &operations, |all| {
                output::table(
                    &["id", "device", "status", "stage", "progress", "created_at"],
                    all.iter().map(|o| {
                        vec![
                            o.id.to_string(),
                            o.device.clone(),
                            o.status.to_string(),
                            o.stage.as_str().to_string(),
                            format!("{}%", o.progress),
                            o.created_at.clone(),
                        ]
                    }),
                )
            })
        }
        OperationCommand::Show { id } => {
            let record = operation_record(&engine.catalogue, id)?;
            output::record(globals.json, &record, human_operation)
        }
        OperationCommand::Cancel { id } => {
            let catalogue = &engine.catalogue;
            if !catalogue.request_cancel(id)? {
                let operation = catalogue.operation(id)?;
                anyhow::bail!(
                    "operation {id} cannot be cancelled: {}",
                    if operation.status.is_final() {
                        format!("it already ended ({})", operation.status)
                    } else {
                        "flashing has started".to_string()
                    }
                );
            }
            let operation = catalogue.operation(id)?;
            if upgrade::is_orphaned(&operation) {
                // Nobody runs it, so nobody else will record the verdict.
                catalogue.finish_operation(
                    id,
                    Status::Cancelled,
                    "cancelled while no process ran it; nothing was flashed",
                )?;
                say!("operation {id} cancelled");
            } else {
                say!("operation {id}: cancellation requested; its process stops it");
            }
            Ok(ExitCode::SUCCESS)
        }
        OperationCommand::Resume {
            id,
            accept_new_host_key,
        } => {
            let live = Arc::new(Live::new());
            let ctx = engine.context(live.clone())?;
            let operation = ctx.catalogue.operation(id)?;
            if !operation.status.is_final() && !upgrade::is_orphaned(&operation) {
                anyhow::bail!(
                    "operation {id} is being run by process {}",
                    operation.runner_pid.unwrap_or_default()
                );
            }
            ctx.catalogue.append_log(
                id,
                "taken over: the process that ran this operation ended before its verdict",
            )?;
            let status = run_in_foreground(&ctx, id, accept_new_host_key).await?;
            live.finish();
            finish(globals, &ctx, id, status)
        }
    }
}

/// Picks the build's image for the device's board, probing the device
/// first when its board is not known yet.
async fn choose_image(
    ctx: &fwu_engine::upgrade::Context,
    device: &str,
    category: &str,
    version: &str,
    accept_new_host_key: bool,
) -> Result<i64, Failure> {
    let build = ctx.catalogue.build(category, version)?;
    let mut board = ctx.catalogue.device(device)?.board;
    if board.is_none() {
        let quiet = fwu_engine::upgrade::Context {
            events: Arc::new(Discard),
            ..ctx.clone()
        };
        board = upgrade::probe_device(&quiet, device, accept_new_host_key)
            .await?
            .identity
            .board;
    }
    let Some(board) = board else {
        anyhow::bail!("cannot tell the board of device {device}; give the image with --image");
    };
    let images = ctx.catalogue.images(build.id)?;
    images
        .iter()
        .find(|image| image.boards.contains(&board))
        .map(|image| image.id)
        .ok_or_else(|| {
            anyhow::anyhow!(
                "build {category} {version} has no image for board {board} of device {device}"
            )
        })
}

/// Runs an operation, turning the first Ctrl-C into a cancellation (which
/// only takes effect before flashing) and the second into leaving at once.
async fn run_in_foreground(
    ctx: &fwu_engine::upgrade::Context,
    id: i64,
    accept_new_host_key: bool,
) -> Result<Status, Failure> {
    let cancel = CancellationToken::new();
    let watcher = {
        let cancel = cancel.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!(
                    "fwu: cancelling operation {id} (possible only until flashing starts); \
                     press Ctrl-C again to leave it running unattended"
                );
                cancel.cancel();
            }
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!("fwu: left operation {id}; `fwu operation resume {id}` takes it up");
                std::process::exit(1);
            }
        })
    };
    let status = upgrade::run_operation(ctx, id, accept_new_host_key, cancel).await;
    watcher.abort();
    Ok(status?)
}

fn finish(
    globals: &Globals,
    ctx: &fwu_engine::upgrade::Context,
    id: i64,
    status: Status,
) -> Result<ExitCode, Failure> {
    let record = operation_record(&ctx.catalogue, id)?;
    // The last log line is the verdict in words and starts with the status.
    let last = record.log.last().map(|l| l.line.as_str()).unwrap_or("");
    if globals.json {
        output::json(&record)?;
    } else {
        say!("operation {id}: {last}");
    }
    if matches!(status, Status::Aborted | Status::Failed) {
        let device = ctx.catalogue.device_by_id(record.operation.device_id)?;
        if let Some(hint) = hints::for_log_line(last, &device) {
            eprintln!("hint: {hint}");
        }
    }
    Ok(output::exit_code(status))
}

fn operation_record(
    catalogue: &fwu_engine::catalogue::Catalogue,
    id: i64,
) -> Result<OperationRecord, Failure> {
    let operation = catalogue.operation(id)?;
    Ok(OperationRecord {
        image: operation.image_id,
        log: catalogue.operation_log(id)?,
        operation,
    })
}

fn human_operation(record: &OperationRecord) -> String {
    let o = &record.operation;
    let mut text = format!(
        "operation {} on {}: image {}, {} at {} ({}%), attempt {}\n",
        o.id,
        o.device,
        record.image,
        o.status,
        o.stage.as_str(),
        o.progress,
        o.attempts
    );
    for line in &record.log {
        text.push_str(&format!("{} {}\n", line.at, line.line));
    }
    text.trim_end().to_string()
}
