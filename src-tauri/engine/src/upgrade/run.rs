//! The runner: owns an upgrade operation from its claim to its verdict.
//!
//! It connects (trying every known address), calls the upgrader's stages
//! in order, records every stage and log line in the catalogue, retries
//! recoverable failures before the flash with exponential backoff and
//! jitter, bounds each attempt by the task time limit, honours cancellation
//! until the flash and never after, and after the flash waits for the
//! device, reconnects and judges the result by what the device reports.
//!
//! A process holds an operation through a lease it renews; an operation
//! whose lease ran out or whose process is gone is an orphan that the next
//! run takes over: before the flash it starts again, after the flash it
//! resumes at Reconnect, so nothing is ever flashed twice.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use rand::Rng;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::openwrt::{transport_failure, OpenWrt};
use super::{Context, FlashOutcome, Identity, Job, StageError, UpgradeError, Upgrader};
use crate::catalogue::{
    self, Device, DeviceAuth, Image, NewOperation, Stage, Status, SysupgradeOptions,
    UpgradeOperation,
};
use crate::events::Event;
use crate::transport::{Auth, Endpoint, HostKey, HostKeyCheck, Session, Target, TransportError};

/// How long a lease lasts, and how often it is renewed.
const LEASE: Duration = Duration::from_secs(30);
const LEASE_RENEWAL: Duration = Duration::from_secs(5);

/// What the user asked for: one image on one device.
#[derive(Clone, Debug)]
pub struct UpgradeRequest {
    pub device: String,
    pub image_id: i64,
    pub options: SysupgradeOptions,
    /// Flash even if the image does not list the device's board.
    pub force: bool,
    pub batch_id: Option<i64>,
}

/// Reports an operation's stages, log lines and upload progress to the
/// catalogue and the event sink, and tells whether it was cancelled.
pub struct Reporter {
    ctx: Context,
    operation: i64,
    cancel: CancellationToken,
    last_upload: Mutex<(u8, Instant)>,
}

impl Reporter {
    fn new(ctx: &Context, operation: i64, cancel: CancellationToken) -> Reporter {
        Reporter {
            ctx: ctx.clone(),
            operation,
            cancel,
            last_upload: Mutex::new((0, Instant::now())),
        }
    }

    /// Appends a line to the operation's log and announces it.
    pub fn log(&self, line: &str) -> Result<(), catalogue::CatalogueError> {
        tracing::info!(operation = self.operation, "{line}");
        self.ctx.catalogue.append_log(self.operation, line)?;
        self.ctx.events.emit(Event::Log {
            operation: self.operation,
            line: line.to_string(),
        });
        Ok(())
    }

    /// Gives the operation its verdict with the line that explains it.
    pub fn finish(&self, status: Status, line: &str) -> Result<Status, catalogue::CatalogueError> {
        tracing::info!(
            operation = self.operation,
            status = status.as_str(),
            "{line}"
        );
        self.ctx
            .catalogue
            .finish_operation(self.operation, status, line)?;
        self.announce_line(line);
        Ok(status)
    }

    /// Announces a line the catalogue already recorded.
    fn announce_line(&self, line: &str) {
        self.ctx.events.emit(Event::Log {
            operation: self.operation,
            line: line.to_string(),
        });
    }

    /// Announces a stage the catalogue already recorded.
    fn announce_stage(&self, stage: Stage, progress: u8) {
        self.ctx.events.emit(Event::Progress {
            operation: self.operation,
            stage: stage.as_str().to_string(),
            progress,
        });
    }

    /// Moves the operation to a stage and progress milestone.
    pub fn stage(&self, stage: Stage, progress: u8) -> Result<(), catalogue::CatalogueError> {
        self.ctx
            .catalogue
            .set_stage(self.operation, stage, progress)?;
        self.ctx.events.emit(Event::Progress {
            operation: self.operation,
            stage: stage.as_str().to_string(),
            progress,
        });
        Ok(())
    }

    /// Reports upload progress: bytes, rate and progress (20 to 60) as
    /// events a few times a second, and the progress in the catalogue at
    /// every fifth percent. Each catalogue write is a synced commit under
    /// the catalogue's one lock: at every percent, a fleet's uploads queued
    /// behind each other's commits.
    pub fn upload_progress(&self, sent: u64, total: u64, elapsed: Duration) {
        let progress = 20 + (sent.min(total) * 40 / total.max(1)) as u8;
        let mut last = self.last_upload.lock().unwrap_or_else(|p| p.into_inner());
        let due = last.1.elapsed() >= Duration::from_millis(200) || sent == total;
        if progress == last.0 && !due {
            return;
        }
        if progress / 5 != last.0 / 5 || sent == total {
            let _ = self
                .ctx
                .catalogue
                .set_stage(self.operation, Stage::Upload, progress);
        }
        *last = (progress, Instant::now());
        drop(last);
        let seconds = elapsed.as_secs_f64().max(0.001);
        self.ctx.events.emit(Event::Upload {
            operation: self.operation,
            sent,
            total,
            bytes_per_second: (sent as f64 / seconds) as u64,
        });
        self.ctx.events.emit(Event::Progress {
            operation: self.operation,
            stage: Stage::Upload.as_str().to_string(),
            progress,
        });
    }

    /// Resolves once the operation is cancelled, here or by another
    /// process through the catalogue.
    pub async fn cancelled(&self) {
        loop {
            if self.cancel_requested() {
                return;
            }
            tokio::select! {
                _ = self.cancel.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
        }
    }

    fn cancel_requested(&self) -> bool {
        self.cancel.is_cancelled()
            || self
                .ctx
                .catalogue
                .operation(self.operation)
                .map(|operation| operation.cancel_requested)
                .unwrap_or(false)
    }
}

/// Creates the operation for a request, or hands back the device's
/// unfinished one that a dead process left behind.
pub fn start_operation(
    ctx: &Context,
    request: &UpgradeRequest,
) -> Result<UpgradeOperation, UpgradeError> {
    let device = ctx.catalogue.device(&request.device)?;
    let image = ctx.catalogue.image(request.image_id)?;
    if let Some(existing) = find_resumable(ctx, device.id)? {
        if let Some(batch) = existing.batch_id {
            return Err(UpgradeError::Refused(format!(
                "device {} is in batch {batch} (operation {}); the batch upgrades it: \
                 `fwu batch resume {batch}` or cancel the batch first",
                device.name, existing.id
            )));
        }
        if existing.flashed_at.is_some() || existing.image_id == image.id {
            ctx.catalogue.append_log(
                existing.id,
                "taken over: the process that ran this operation ended before its verdict",
            )?;
            return Ok(existing);
        }
        ctx.catalogue.finish_operation(
            existing.id,
            Status::Aborted,
            "interrupted before flashing: the process running it ended; nothing was flashed",
        )?;
    }
    let first_line = format!(
        "queued: image {} ({}) for device {}",
        image.id, image.file_name, device.name
    );
    Ok(ctx.catalogue.add_operation(
        &NewOperation {
            device_id: device.id,
            image_id: image.id,
            batch_id: request.batch_id,
            options: request.options,
            force: request.force,
        },
        &first_line,
    )?)
}

/// The device's unfinished operation, if its process is gone. An
/// operation held by a live process is refused with a message that says
/// which.
pub fn find_resumable(
    ctx: &Context,
    device_id: i64,
) -> Result<Option<UpgradeOperation>, UpgradeError> {
    let unfinished = ctx
        .catalogue
        .operations(&catalogue::OperationFilter {
            device_id: Some(device_id),
            ..Default::default()
        })?
        .into_iter()
        .find(|operation| !operation.status.is_final());
    match unfinished {
        None => Ok(None),
        Some(operation) if is_orphaned(&operation) => Ok(Some(operation)),
        Some(operation) => Err(UpgradeError::Refused(format!(
            "device {} is being upgraded by process {} (operation {})",
            operation.device,
            operation.runner_pid.unwrap_or_default(),
            operation.id
        ))),
    }
}

/// Whether no live process holds an unfinished operation.
pub fn is_orphaned(operation: &UpgradeOperation) -> bool {
    if operation.status.is_final() {
        return false;
    }
    let Some(pid) = operation.runner_pid else {
        return true;
    };
    let lease_over = operation
        .lease_until
        .as_deref()
        .and_then(catalogue::parse_time)
        .is_none_or(|until| until < time::OffsetDateTime::now_utc());
    lease_over || !crate::platform::process_alive(pid)
}

/// Finds every orphaned operation and settles what can be settled without
/// a device: one interrupted before the flash outside a batch is aborted
/// (nothing changed). Returns the orphans that still need running: those
/// after the flash, and those of batches.
pub fn recover_orphans(ctx: &Context) -> Result<Vec<UpgradeOperation>, UpgradeError> {
    let mut to_run = Vec::new();
    for operation in ctx.catalogue.unfinished_operations()? {
        if !is_orphaned(&operation) {
            continue;
        }
        if operation.flashed_at.is_some() || operation.batch_id.is_some() {
            to_run.push(operation);
        } else {
            ctx.catalogue.finish_operation(
                operation.id,
                Status::Aborted,
                "interrupted before flashing: the process running it ended; nothing was flashed",
            )?;
        }
    }
    Ok(to_run)
}

/// Runs an operation to its verdict and returns it. `accept_new_host_key`
/// is the user's consent to pin a key seen for the first time.
pub async fn run_operation(
    ctx: &Context,
    id: i64,
    accept_new_host_key: bool,
    cancel: CancellationToken,
) -> Result<Status, UpgradeError> {
    let ctx = ctx.clone();
    on_own_thread(move || async move {
        run_with(&ctx, id, accept_new_host_key, cancel, Retries::InProcess).await
    })
    .await
}

/// Runs a batch's operation once: a recoverable failure before the flash
/// puts it back to `pending` with its next attempt time and returns
/// `Pending`, so that the batch's scheduler gives the slot to another
/// device meanwhile. `until` is the batch's deadline: a retry that would
/// come after it ends the operation as aborted instead.
pub async fn run_batch_operation(
    ctx: &Context,
    id: i64,
    cancel: CancellationToken,
    until: Option<time::OffsetDateTime>,
) -> Result<Status, UpgradeError> {
    let ctx = ctx.clone();
    on_own_thread(move || async move {
        run_with(&ctx, id, false, cancel, Retries::Yield { until }).await
    })
    .await
}

/// Runs an operation on a thread of its own, on a runtime of that one
/// thread (`runtime::on_own_thread`), and waits for its verdict.
///
/// On a runtime with a worker per core, russh's session task and the
/// uploading task wake each other across the cores for every window the
/// device opens, and Dropbear on the same machine, or the other uploads,
/// want those cores too. On one thread the hop stays on the thread: one
/// upload alone went from 0.88–1.06 × OpenSSH to 1.09–1.14 ×
/// (`bench --only upload`, `BENCHMARKS.md`). A catalogue commit waiting
/// for the disk also stalls only its own operation.
async fn on_own_thread<F, Fut>(work: F) -> Result<Status, UpgradeError>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<Status, UpgradeError>>,
{
    crate::runtime::on_own_thread("fwu-operation", work)
        .await
        .unwrap_or_else(|error| Err(UpgradeError::Thread(error)))
}

/// What a recoverable failure before the flash leads to.
#[derive(Clone, Copy, Debug)]
enum Retries {
    /// Wait here and try again, up to the configured number of retries.
    InProcess,
    /// Schedule the retry and return; retry until the deadline, if any.
    Yield { until: Option<time::OffsetDateTime> },
}

async fn run_with(
    ctx: &Context,
    id: i64,
    accept_new_host_key: bool,
    cancel: CancellationToken,
    retries: Retries,
) -> Result<Status, UpgradeError> {
    let operation = ctx.catalogue.operation(id)?;
    if operation.status.is_final() {
        return Ok(operation.status);
    }
    let me = std::process::id();
    let held_elsewhere = operation.runner_pid.is_some_and(|pid| pid != me);
    if held_elsewhere && !is_orphaned(&operation) {
        return Err(UpgradeError::Refused(format!(
            "operation {id} is being run by process {}",
            operation.runner_pid.unwrap_or_default()
        )));
    }
    let image = ctx.catalogue.image(operation.image_id)?;
    let job = Job {
        operation: id,
        local_path: crate::image::stored_path(&ctx.data_dir, &image.sha256),
        // Generated from the operation, never from anything the user typed.
        remote_path: format!("/tmp/fwu-{id}.bin"),
        options: operation.options,
        force: operation.force,
        image,
    };
    let upgrader = OpenWrt {
        command_timeout: ctx.timings.command_timeout,
        upgrade_timeout: ctx.timings.upgrade_timeout,
    };
    let report = Reporter::new(ctx, id, cancel);
    if !ctx
        .catalogue
        .claim_operation(id, me, &lease_end(), operation.runner_pid)?
    {
        return Err(UpgradeError::Refused(format!(
            "operation {id} was taken by another process"
        )));
    }
    let _lease = LeaseKeeper::start(ctx, id);
    ctx.events.emit(Event::Status {
        operation: id,
        status: Status::InProgress.as_str().to_string(),
    });

    let status = if let Some(flashed_at) = operation.flashed_at.as_deref() {
        report.log("resuming after the flash: waiting for the device to come back")?;
        let flashed_at =
            catalogue::parse_time(flashed_at).unwrap_or_else(time::OffsetDateTime::now_utc);
        let device = ctx.catalogue.device_by_id(operation.device_id)?;
        let boot_id_before = operation.boot_id_before.clone();
        after_flash(
            ctx,
            &upgrader,
            &job,
            &device,
            flashed_at,
            boot_id_before,
            &report,
        )
        .await?
    } else {
        attempts(
            ctx,
            &upgrader,
            &job,
            operation.device_id,
            accept_new_host_key,
            &report,
            retries,
        )
        .await?
    };
    ctx.events.emit(Event::Status {
        operation: id,
        status: status.as_str().to_string(),
    });
    Ok(status)
}

/// Tries the operation until it is flashed or settled, retrying
/// recoverable failures.
async fn attempts(
    ctx: &Context,
    upgrader: &dyn Upgrader,
    job: &Job,
    device_id: i64,
    accept_new_host_key: bool,
    report: &Reporter,
    retries: Retries,
) -> Result<Status, UpgradeError> {
    let id = job.operation;
    loop {
        let device = ctx.catalogue.device_by_id(device_id)?;
        let deadline = tokio::time::Instant::now() + ctx.timings.task_timeout;
        let prepared = prepare(
            ctx,
            upgrader,
            job,
            &device,
            accept_new_host_key,
            report,
            deadline,
        );
        match prepared.await {
            Ok(Prepared::NotNeeded) => {
                report.finish(
                    Status::NotNeeded,
                    "not needed: the device already runs this image (checksum file matches)",
                )?;
                return Ok(Status::NotNeeded);
            }
            Ok(Prepared::Ready {
                session,
                identity,
                stopped_services,
            }) => {
                return flash_and_verify(
                    ctx,
                    upgrader,
                    job,
                    &device,
                    session,
                    *identity,
                    stopped_services,
                    report,
                )
                .await;
            }
            Err(StageError::Abort(reason)) => {
                report.finish(Status::Aborted, &format!("aborted: {reason}"))?;
                return Ok(Status::Aborted);
            }
            Err(StageError::Cancelled) => {
                report.finish(
                    Status::Cancelled,
                    "cancelled before flashing; nothing was flashed",
                )?;
                return Ok(Status::Cancelled);
            }
            Err(StageError::Catalogue(error)) => return Err(error.into()),
            Err(StageError::Recoverable(reason)) => {
                let attempts = ctx.catalogue.operation(id)?.attempts;
                if let Retries::Yield { until } = retries {
                    return yield_for_retry(ctx, report, attempts, &reason, until);
                }
                if attempts > ctx.timings.max_retries {
                    report.finish(
                        Status::Aborted,
                        &format!(
                            "aborted after {attempts} attempts; the last failed: {reason}; \
                             nothing was flashed"
                        ),
                    )?;
                    return Ok(Status::Aborted);
                }
                let wait = retry_delay(&ctx.timings, attempts);
                let at = time::OffsetDateTime::now_utc() + wait;
                let line = format!(
                    "attempt {attempts} failed: {reason}; retrying in {:.1} s",
                    wait.as_secs_f64()
                );
                ctx.catalogue
                    .schedule_retry(id, &catalogue::format_time(at), &line)?;
                report.announce_line(&line);
                ctx.events.emit(Event::Status {
                    operation: id,
                    status: Status::Pending.as_str().to_string(),
                });
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = report.cancelled() => {
                        report.finish(Status::Cancelled,
                            "cancelled while waiting for a retry; nothing was flashed",
                        )?;
                        return Ok(Status::Cancelled);
                    }
                }
                let me = std::process::id();
                if !ctx
                    .catalogue
                    .claim_operation(id, me, &lease_end(), Some(me))?
                {
                    return Err(UpgradeError::Refused(format!(
                        "operation {id} was taken by another process"
                    )));
                }
            }
        }
    }
}

/// Schedules a batch operation's next attempt and hands it back to the
/// scheduler, or ends it when the next attempt would miss the deadline.
fn yield_for_retry(
    ctx: &Context,
    report: &Reporter,
    attempts: u32,
    reason: &str,
    until: Option<time::OffsetDateTime>,
) -> Result<Status, UpgradeError> {
    let wait = retry_delay(&ctx.timings, attempts);
    let at = time::OffsetDateTime::now_utc() + wait;
    if until.is_some_and(|until| at > until) {
        return Ok(report.finish(
            Status::Aborted,
            &format!(
                "aborted: the batch's deadline passes before another attempt; the last \
                 failed: {reason}; nothing was flashed"
            ),
        )?);
    }
    let line = format!(
        "attempt {attempts} failed: {reason}; the batch retries in {:.1} s",
        wait.as_secs_f64()
    );
    ctx.catalogue
        .schedule_retry(report.operation, &catalogue::format_time(at), &line)?;
    report.announce_line(&line);
    ctx.events.emit(Event::Status {
        operation: report.operation,
        status: Status::Pending.as_str().to_string(),
    });
    Ok(Status::Pending)
}

/// How an attempt before the flash ended well.
enum Prepared {
    NotNeeded,
    Ready {
        session: Box<dyn Session>,
        identity: Box<Identity>,
        stopped_services: Vec<String>,
    },
}

/// Connect, Identify, Already there?, Room, Upload and Test. On any
/// failure after connecting, what was done on the device is undone.
async fn prepare(
    ctx: &Context,
    upgrader: &dyn Upgrader,
    job: &Job,
    device: &Device,
    accept_new_host_key: bool,
    report: &Reporter,
    deadline: tokio::time::Instant,
) -> Result<Prepared, StageError> {
    report.stage(Stage::Connect, 10)?;
    let alternates = if device.alternate_hosts.is_empty() {
        String::new()
    } else {
        format!(" (else {})", device.alternate_hosts.join(", "))
    };
    report.log(&format!(
        "connecting to {}@{}:{}{alternates}",
        device.user, device.host, device.port
    ))?;
    let check = host_key_check(device, accept_new_host_key);
    let connected = guarded(report, deadline, async {
        connect_device(ctx, device, check)
            .await
            .map_err(transport_failure)
    })
    .await?;
    let (mut session, host_key, address) = connected;
    if device.host_key.is_none() {
        ctx.catalogue.pin_host_key(device.id, &host_key.openssh)?;
        report.log(&format!("pinned the new host key {}", host_key.fingerprint))?;
    }
    report.log(&format!(
        "connected to {}@{}:{}",
        device.user, address, device.port
    ))?;

    let mut stopped = Vec::new();
    let result = prepare_connected(
        ctx,
        upgrader,
        job,
        device,
        session.as_mut(),
        &mut stopped,
        report,
        deadline,
    )
    .await;
    match result {
        Ok(Some(identity)) => Ok(Prepared::Ready {
            session,
            identity: Box::new(identity),
            stopped_services: stopped,
        }),
        Ok(None) => {
            session.close().await;
            Ok(Prepared::NotNeeded)
        }
        Err(error) => {
            upgrader
                .restore(session.as_mut(), job, &stopped, report)
                .await;
            session.close().await;
            Err(error)
        }
    }
}

/// The stages after connecting; `None` when the image is already there.
#[allow(clippy::too_many_arguments)]
async fn prepare_connected(
    ctx: &Context,
    upgrader: &dyn Upgrader,
    job: &Job,
    device: &Device,
    session: &mut dyn Session,
    stopped: &mut Vec<String>,
    report: &Reporter,
    deadline: tokio::time::Instant,
) -> Result<Option<Identity>, StageError> {
    report.stage(Stage::Identify, 15)?;
    let identity = guarded(report, deadline, upgrader.identify(session, report)).await?;
    ctx.catalogue
        .record_probe(device.id, &identity.to_probe())?;
    report.log(&format!(
        "device reports board {}, model {}, running {}",
        identity.board.as_deref().unwrap_or("(unknown)"),
        identity.model.as_deref().unwrap_or("(unknown)"),
        identity
            .os_identifier
            .as_deref()
            .unwrap_or("(unknown release)")
    ))?;
    check_board(job, &identity, report)?;

    report.stage(Stage::Checksum, 20)?;
    if identity.checksum.as_deref() == Some(job.image.sha256.as_str()) {
        return Ok(None);
    }

    report.stage(Stage::Room, 20)?;
    // Every attempt claims the operation, which counts it.
    let first_attempt = ctx.catalogue.operation(job.operation)?.attempts <= 1;
    let room = upgrader.make_room(session, job, &identity, first_attempt, report);
    *stopped = guarded(report, deadline, room).await?;

    report.stage(Stage::Upload, 20)?;
    guarded(report, deadline, upgrader.upload(session, job, report)).await?;

    guarded(report, deadline, upgrader.test(session, job, report)).await?;
    if report.cancel_requested() {
        return Err(StageError::Cancelled);
    }
    Ok(Some(identity))
}

/// Refuses an image that does not list the device's board, unless forced.
fn check_board(job: &Job, identity: &Identity, report: &Reporter) -> Result<(), StageError> {
    let board = identity.board.as_deref();
    let listed = board.is_some_and(|board| job.image.boards.iter().any(|b| b == board));
    if listed {
        return Ok(());
    }
    let boards = job.image.boards.join(", ");
    let board = board.unwrap_or("(unknown)");
    if job.force {
        report.log(&format!(
            "the image lists boards [{boards}], the device is {board}: flashing anyway as forced"
        ))?;
        return Ok(());
    }
    Err(StageError::Abort(format!(
        "the image is for boards [{boards}] but the device is {board}; nothing was uploaded \
         (force it only if you know better)"
    )))
}

/// The point of no return, then the wait for the verdict.
#[allow(clippy::too_many_arguments)]
async fn flash_and_verify(
    ctx: &Context,
    upgrader: &dyn Upgrader,
    job: &Job,
    device: &Device,
    mut session: Box<dyn Session>,
    identity: Identity,
    stopped_services: Vec<String>,
    report: &Reporter,
) -> Result<Status, UpgradeError> {
    let id = job.operation;
    // The mark is committed right before the command leaves: a process
    // killed in between leaves an operation that resumes at Reconnect and
    // ends as failed ("never rebooted") although nothing was flashed.
    // FIXME: that window is one local function call wide, not zero; closing
    // it needs the device to tell whether sysupgrade ever started.
    let line = format!(
        "flashing with `{}`: from here on the operation cannot be cancelled",
        upgrader.flash_command(job)
    );
    ctx.catalogue
        .mark_flashing(id, identity.boot_id.as_deref(), &line)?;
    let flashed_at = time::OffsetDateTime::now_utc();
    report.announce_line(&line);
    report.announce_stage(Stage::Flash, 65);
    let outcome = upgrader.flash(session.as_mut(), job, report).await;
    let outcome = match outcome {
        Ok(outcome) => outcome,
        Err(StageError::Catalogue(error)) => return Err(error.into()),
        Err(error) => FlashOutcome::Unclear(error.to_string()),
    };
    match outcome {
        FlashOutcome::Refused(reason) => {
            upgrader
                .restore(session.as_mut(), job, &stopped_services, report)
                .await;
            session.close().await;
            report.finish(Status::Aborted, &format!("aborted: {reason}"))?;
            return Ok(Status::Aborted);
        }
        FlashOutcome::Commenced => report.log("sysupgrade commenced; the device is flashing")?,
        FlashOutcome::Unclear(reason) => report.log(&format!(
            "{reason}; whether it flashed is judged after the reboot"
        ))?,
    }
    session.close().await;
    after_flash(
        ctx,
        upgrader,
        job,
        device,
        flashed_at,
        identity.boot_id,
        report,
    )
    .await
}

/// Reconnect and Verify: waits, tries every known address the configured
/// number of times, and judges by boot id (or uptime) and release.
async fn after_flash(
    ctx: &Context,
    upgrader: &dyn Upgrader,
    job: &Job,
    device: &Device,
    flashed_at: time::OffsetDateTime,
    boot_id_before: Option<String>,
    report: &Reporter,
) -> Result<Status, UpgradeError> {
    let timings = &ctx.timings;
    report.stage(Stage::Reconnect, 90)?;
    report.log(&format!(
        "waiting {} s for the device to reboot",
        timings.reconnect_delay.as_secs()
    ))?;
    tokio::time::sleep(timings.reconnect_delay).await;

    let (revision, os_identifier) = expected_release(ctx, &job.image)?;
    let mut answered_unrebooted = false;
    for attempt in 1..=timings.reconnect_attempts {
        let check = host_key_check(device, false);
        match connect_device(ctx, device, check).await {
            Ok((mut session, _key, address)) => {
                if address != device.host {
                    report.log(&format!(
                        "the device answered on its alternate address {address}"
                    ))?;
                }
                let identity = match upgrader.identify(session.as_mut(), report).await {
                    Ok(identity) => identity,
                    Err(error) => {
                        report.log(&format!(
                            "attempt {attempt}: reading the device failed: {error}"
                        ))?;
                        session.close().await;
                        tokio::time::sleep(timings.reconnect_retry_delay).await;
                        continue;
                    }
                };
                if !rebooted(&identity, boot_id_before.as_deref(), flashed_at) {
                    answered_unrebooted = true;
                    report.log(&format!(
                        "attempt {attempt}: the device answers but has not rebooted yet"
                    ))?;
                    session.close().await;
                    tokio::time::sleep(timings.reconnect_retry_delay).await;
                    continue;
                }
                report.stage(Stage::Verify, 95)?;
                ctx.catalogue
                    .record_probe(device.id, &identity.to_probe())?;
                let running = identity
                    .os_identifier
                    .as_deref()
                    .unwrap_or("(unknown release)");
                if revision.is_none() && os_identifier.is_none() {
                    session.close().await;
                    report.finish(
                        Status::Failed,
                        &format!(
                            "failed: the device rebooted and runs {running}, but the image has \
                             no metadata and its build no OS identifier, so the new release \
                             cannot be confirmed"
                        ),
                    )?;
                    return Ok(Status::Failed);
                }
                if !identity.runs(revision.as_deref(), os_identifier.as_deref()) {
                    session.close().await;
                    report.finish(
                        Status::Failed,
                        &format!(
                            "failed: the device rebooted into the old firmware: it runs \
                             {running}, not {}",
                            os_identifier
                                .as_deref()
                                .or(revision.as_deref())
                                .unwrap_or("")
                        ),
                    )?;
                    return Ok(Status::Failed);
                }
                let marked = upgrader.mark_upgraded(session.as_mut(), job).await;
                session.close().await;
                if let Err(error) = marked {
                    report.log(&format!("could not write the checksum file: {error}"))?;
                }
                report.finish(
                    Status::Success,
                    &format!(
                        "success: the device rebooted (boot id {}) and runs {running}",
                        identity.boot_id.as_deref().unwrap_or("unknown")
                    ),
                )?;
                return Ok(Status::Success);
            }
            Err(error @ TransportError::HostKeyChanged { .. }) => {
                report.finish(
                    Status::Failed,
                    &format!("failed: the device came back with another host key: {error}"),
                )?;
                return Ok(Status::Failed);
            }
            Err(error) => {
                report.log(&format!(
                    "attempt {attempt} of {}: {error}",
                    timings.reconnect_attempts
                ))?;
            }
        }
        if attempt < timings.reconnect_attempts {
            wait_for_return(ctx, device, timings.reconnect_retry_delay).await;
        }
    }
    let reason = if answered_unrebooted {
        "failed: the device never rebooted: it still answers with its old boot id".to_string()
    } else {
        format!(
            "failed: the device did not come back after {} attempts on {}",
            timings.reconnect_attempts,
            device.addresses().join(", ")
        )
    };
    report.finish(Status::Failed, &reason)?;
    Ok(Status::Failed)
}

/// How often a device that did not answer is looked at between
/// reconnection attempts.
const RETURN_LOOK: Duration = Duration::from_millis(50);

/// Waits `wait` before the next reconnection attempt, or less: when none of
/// the device's addresses takes a TCP connection now but one does at a later
/// look (every [`RETURN_LOOK`]), the device is back and the wait ends
/// there. A device whose port was open all along (it answered but failed
/// otherwise) gets the whole wait, so a fault that persists does not use
/// up the attempts. Bounded: at most `wait / RETURN_LOOK` looks.
async fn wait_for_return(ctx: &Context, device: &Device, wait: Duration) {
    let until = tokio::time::Instant::now() + wait;
    let answering = || async {
        for address in device.addresses() {
            let left = until.saturating_duration_since(tokio::time::Instant::now());
            let timeout = RETURN_LOOK.min(left);
            if ctx.connector.accepts(&address, device.port, timeout).await {
                return true;
            }
        }
        false
    };
    if answering().await {
        tokio::time::sleep_until(until).await;
        return;
    }
    loop {
        let next = (tokio::time::Instant::now() + RETURN_LOOK).min(until);
        tokio::time::sleep_until(next).await;
        if next >= until || answering().await {
            return;
        }
    }
}

/// The revision and OS identifier a device runs once it took the image.
fn expected_release(
    ctx: &Context,
    image: &Image,
) -> Result<(Option<String>, Option<String>), UpgradeError> {
    let version = image.metadata.as_ref().and_then(|m| m.get("version"));
    let field = |name: &str| {
        version
            .and_then(|v| v.get(name))
            .and_then(|v| v.as_str())
            .map(str::to_string)
    };
    let revision = field("revision");
    let from_metadata = match (field("dist"), field("version"), &revision) {
        (Some(dist), Some(version), Some(revision)) => Some(format!("{dist} {version} {revision}")),
        _ => None,
    };
    let build = ctx.catalogue.build_by_id(image.build_id)?;
    Ok((revision, from_metadata.or(build.os_identifier)))
}

/// Whether the device booted since the flash: the boot id changed, or,
/// where no boot id is known, it has been up for less time than has passed.
fn rebooted(
    identity: &Identity,
    boot_id_before: Option<&str>,
    flashed_at: time::OffsetDateTime,
) -> bool {
    if let (Some(before), Some(now)) = (boot_id_before, identity.boot_id.as_deref()) {
        return before != now;
    }
    let since_flash = (time::OffsetDateTime::now_utc() - flashed_at).whole_seconds();
    identity
        .uptime
        .is_some_and(|uptime| (uptime as i64) < since_flash)
}

/// What a probe found.
#[derive(Clone, Debug, Serialize)]
pub struct Probed {
    pub device: Device,
    pub identity: Identity,
    pub address: String,
    pub host_key_fingerprint: String,
}

/// Connects to a device, reads who it is and records it in the catalogue.
pub async fn probe_device(
    ctx: &Context,
    name: &str,
    accept_new_host_key: bool,
) -> Result<Probed, UpgradeError> {
    let device = ctx.catalogue.device(name)?;
    let check = host_key_check(&device, accept_new_host_key);
    let (mut session, host_key, address) = connect_device(ctx, &device, check).await?;
    if device.host_key.is_none() {
        ctx.catalogue.pin_host_key(device.id, &host_key.openssh)?;
    }
    let probe = super::identity::Probe::new();
    let output = session
        .exec(probe.command(), ctx.timings.command_timeout)
        .await;
    session.close().await;
    let identity = probe.parse(&output?.stdout_text());
    ctx.catalogue
        .record_probe(device.id, &identity.to_probe())?;
    Ok(Probed {
        device: ctx.catalogue.device_by_id(device.id)?,
        identity,
        address,
        host_key_fingerprint: host_key.fingerprint,
    })
}

fn host_key_check(device: &Device, accept_new: bool) -> HostKeyCheck {
    match (&device.host_key, accept_new) {
        (Some(key), _) => HostKeyCheck::Pinned(key.clone()),
        (None, true) => HostKeyCheck::AcceptNew,
        (None, false) => HostKeyCheck::RefuseUnknown,
    }
}

/// Connects to the first of the device's addresses that answers. A host
/// key or credential problem ends the search at once: another address of
/// the same device will not fix it, and must not be tried around it.
async fn connect_device(
    ctx: &Context,
    device: &Device,
    check: HostKeyCheck,
) -> Result<(Box<dyn Session>, HostKey, String), TransportError> {
    let auth = device_auth(ctx, device).await?;
    let mut last_error = None;
    for address in device.addresses() {
        let target = Target {
            endpoint: Endpoint {
                host: address.clone(),
                port: device.port,
                user: device.user.clone(),
            },
            auth: auth.clone(),
            host_key: check.clone(),
            connect_timeout: ctx.timings.connect_timeout,
        };
        match ctx.connector.connect(&target).await {
            Ok((session, key)) => return Ok((session, key, address)),
            Err(
                error @ (TransportError::Unreachable { .. }
                | TransportError::ConnectTimeout { .. }
                | TransportError::Session { .. }),
            ) => last_error = Some(error),
            Err(error) => return Err(error),
        }
    }
    Err(last_error.expect("a device has at least one address"))
}

/// Turns the device's way of logging in into credentials, reading secrets
/// from the vault on a blocking thread: the keyring may take a D-Bus round
/// trip, which must not stall the tasks talking to other devices.
async fn device_auth(ctx: &Context, device: &Device) -> Result<Auth, TransportError> {
    let secret = |name: String| {
        let secrets = ctx.secrets.clone();
        async move {
            let looked_up = tokio::task::spawn_blocking({
                let name = name.clone();
                move || secrets.secret(&name)
            })
            .await
            .unwrap_or_else(|error| Err(format!("the keyring lookup failed: {error}")));
            looked_up.map_err(|reason| TransportError::Credential {
                entry: name.clone(),
                reason,
            })
        }
    };
    Ok(match &device.auth {
        DeviceAuth::Password { credential } => Auth::Password(secret(credential.clone()).await?),
        DeviceAuth::Key {
            key_file,
            credential,
        } => Auth::KeyFile {
            path: key_file.into(),
            passphrase: match credential {
                Some(name) => Some(secret(name.clone()).await?),
                None => None,
            },
        },
        DeviceAuth::Agent => Auth::Agent,
    })
}

/// Runs a stage future, ending it at the attempt's deadline (a recoverable
/// failure) or when the operation is cancelled.
async fn guarded<T>(
    report: &Reporter,
    deadline: tokio::time::Instant,
    stage: impl std::future::Future<Output = Result<T, StageError>>,
) -> Result<T, StageError> {
    tokio::select! {
        result = tokio::time::timeout_at(deadline, stage) => result.unwrap_or_else(|_| {
            Err(StageError::Recoverable(
                "the attempt passed its time limit (task_timeout)".to_string(),
            ))
        }),
        _ = report.cancelled() => Err(StageError::Cancelled),
    }
}

/// The wait before retry number `attempt`: doubling from the backoff up to
/// the cap, spread over its upper half when jitter is on.
fn retry_delay(timings: &super::Timings, attempt: u32) -> Duration {
    let doubling = 2u32.saturating_pow(attempt.saturating_sub(1).min(16));
    let base = timings
        .backoff
        .saturating_mul(doubling)
        .min(timings.backoff_cap);
    if !timings.jitter || base.is_zero() {
        return base;
    }
    let fraction = rand::thread_rng().gen_range(0.5..=1.0);
    base.mul_f64(fraction)
}

fn lease_end() -> String {
    catalogue::format_time(time::OffsetDateTime::now_utc() + LEASE)
}

/// Renews an operation's lease while it runs; stops when dropped.
struct LeaseKeeper(tokio::task::JoinHandle<()>);

impl LeaseKeeper {
    fn start(ctx: &Context, id: i64) -> LeaseKeeper {
        let catalogue = ctx.catalogue.clone();
        LeaseKeeper(tokio::spawn(async move {
            loop {
                tokio::time::sleep(LEASE_RENEWAL).await;
                if let Err(error) = catalogue.renew_lease(id, &lease_end()) {
                    tracing::warn!(operation = id, "cannot renew lease: {error}");
                }
            }
        }))
    }
}

impl Drop for LeaseKeeper {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upgrade::Timings;

    #[tokio::test]
    async fn an_operation_whose_thread_panics_ends_in_an_error() {
        let ended = on_own_thread(|| async { panic!("the operation broke") }).await;
        assert!(matches!(ended, Err(UpgradeError::Thread(_))), "{ended:?}");
    }

    #[test]
    fn retry_delay_doubles_up_to_the_cap() {
        let timings = Timings {
            jitter: false,
            ..Timings::default()
        };
        let seconds: Vec<u64> = (1..=6)
            .map(|a| retry_delay(&timings, a).as_secs())
            .collect();
        assert_eq!(seconds, vec![60, 120, 240, 480, 600, 600]);
    }

    #[test]
    fn jitter_stays_in_the_upper_half() {
        let timings = Timings::default();
        for _ in 0..100 {
            let delay = retry_delay(&timings, 2);
            assert!(delay >= Duration::from_secs(60) && delay <= Duration::from_secs(120));
        }
    }

    /// A connector whose device takes TCP connections from the `opens_at`th
    /// look on; it counts the looks. Nothing here connects anywhere.
    struct Returning {
        opens_at: usize,
        looks: std::sync::atomic::AtomicUsize,
    }

    #[async_trait::async_trait]
    impl crate::transport::Connector for Returning {
        async fn connect(
            &self,
            _target: &Target,
        ) -> Result<(Box<dyn Session>, HostKey), TransportError> {
            unreachable!("waiting for a device only looks at its port")
        }

        async fn accepts(&self, _host: &str, _port: u16, _timeout: Duration) -> bool {
            let look = self.looks.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
            look >= self.opens_at
        }
    }

    struct NoSecrets;

    impl crate::upgrade::Secrets for NoSecrets {
        fn secret(&self, name: &str) -> Result<String, String> {
            Err(format!("no secret {name} here"))
        }
    }

    /// Waits `wait` for a device that opens its port at the `opens_at`th
    /// look; returns the looks made and the time taken.
    async fn wait_for(opens_at: usize, wait: Duration) -> (usize, Duration) {
        let dir = tempfile::tempdir().unwrap();
        let catalogue = crate::catalogue::Catalogue::open_in(dir.path()).unwrap();
        let device = catalogue
            .add_device(&crate::catalogue::NewDevice {
                name: "ap1".to_string(),
                host: "127.0.0.1".to_string(),
                alternate_hosts: vec![],
                port: 22,
                user: "root".to_string(),
                auth: crate::catalogue::DeviceAuth::Agent,
                site: None,
                tags: vec![],
            })
            .unwrap();
        let connector = std::sync::Arc::new(Returning {
            opens_at,
            looks: Default::default(),
        });
        let ctx = Context {
            catalogue,
            data_dir: dir.path().to_path_buf(),
            timings: Timings::default(),
            secrets: std::sync::Arc::new(NoSecrets),
            connector: connector.clone(),
            events: std::sync::Arc::new(crate::events::Discard),
        };
        let started = Instant::now();
        wait_for_return(&ctx, &device, wait).await;
        let looks = connector.looks.load(std::sync::atomic::Ordering::SeqCst);
        (looks, started.elapsed())
    }

    #[tokio::test]
    async fn a_device_that_comes_back_ends_the_wait_at_the_next_look() {
        let wait = Duration::from_secs(5);
        let (looks, took) = wait_for(4, wait).await;
        assert_eq!(looks, 4, "it stops looking once the port opens");
        assert!(took < wait, "took {took:?}");
        assert!(took >= RETURN_LOOK * 3, "took {took:?}");
    }

    #[tokio::test]
    async fn a_port_open_from_the_start_gets_the_whole_wait() {
        let wait = Duration::from_millis(700);
        let (looks, took) = wait_for(1, wait).await;
        assert_eq!(looks, 1);
        assert!(took >= wait, "took {took:?}");
    }

    #[tokio::test]
    async fn a_device_that_stays_away_is_looked_at_a_bounded_number_of_times() {
        let wait = Duration::from_millis(900);
        let (looks, took) = wait_for(usize::MAX, wait).await;
        assert!(took >= wait, "took {took:?}");
        let most = (wait.as_millis() / RETURN_LOOK.as_millis()) as usize + 1;
        assert!((2..=most).contains(&looks), "{looks} looks, at most {most}");
    }

    #[test]
    fn reboot_is_judged_by_boot_id_first() {
        let flashed_at = time::OffsetDateTime::now_utc() - time::Duration::seconds(100);
        let identity = Identity {
            boot_id: Some("new".into()),
            uptime: Some(10_000),
            ..Identity::default()
        };
        assert!(rebooted(&identity, Some("old"), flashed_at));
        assert!(!rebooted(&identity, Some("new"), flashed_at));
        let no_boot_id = Identity {
            uptime: Some(50),
            ..Identity::default()
        };
        assert!(rebooted(&no_boot_id, None, flashed_at));
        let long_up = Identity {
            uptime: Some(500),
            ..Identity::default()
        };
        assert!(!rebooted(&long_up, None, flashed_at));
    }
}
