//! Running a batch: starting its operations with bounded concurrency, in
//! waves, pausing on too many failures, retrying devices that are offline
//! until the deadline, and picking up where a dead process left off.
//!
//! The scheduler holds the batch through a lease like an operation's. Each
//! pass of its loop reads the batch and its operations from the catalogue,
//! so pausing or cancelling from another process takes effect within a
//! second, and a process that dies loses nothing: the next [`run`] finds
//! every operation in the catalogue and treats those whose process is gone
//! as the single-device recovery does.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::{operations, summary, BatchError, Rollout, Summary};
use crate::catalogue::{self, BatchState, Status, UpgradeOperation};
use crate::events::Event;
use crate::upgrade::{is_orphaned, run_batch_operation, Context};

const LEASE: Duration = Duration::from_secs(30);
/// How often the loop looks at the catalogue when nothing else wakes it.
const TICK: Duration = Duration::from_millis(500);

/// Runs a batch until every operation has its verdict, or until it is
/// paused and its running operations have finished. Cancelling `cancel`
/// stops new starts and cancels operations not yet flashing, like
/// cancelling the batch, but leaves the batch resumable.
pub async fn run(ctx: &Context, id: i64, cancel: CancellationToken) -> Result<Summary, BatchError> {
    claim(ctx, id)?;
    let lease = tokio::spawn({
        let catalogue = ctx.catalogue.clone();
        async move {
            loop {
                tokio::time::sleep(LEASE / 6).await;
                let _ = catalogue.renew_batch_lease(id, Some(&lease_end()));
            }
        }
    });
    let result = schedule(ctx, id, cancel).await;
    lease.abort();
    let _ = ctx.catalogue.renew_batch_lease(id, None);
    result
}

fn claim(ctx: &Context, id: i64) -> Result<(), BatchError> {
    let batch = ctx.catalogue.batch(id)?;
    let me = std::process::id();
    if let Some(pid) = batch.runner_pid.filter(|pid| *pid != me) {
        let lease_over = batch
            .lease_until
            .as_deref()
            .and_then(catalogue::parse_time)
            .is_none_or(|until| until < time::OffsetDateTime::now_utc());
        if !lease_over && crate::platform::process_alive(pid) {
            return Err(BatchError::Refused(format!(
                "batch {id} is being run by process {pid}"
            )));
        }
    }
    if !ctx
        .catalogue
        .claim_batch(id, me, &lease_end(), batch.runner_pid)?
    {
        return Err(BatchError::Refused(format!(
            "batch {id} was taken by another process"
        )));
    }
    Ok(())
}

async fn schedule(
    ctx: &Context,
    id: i64,
    cancel: CancellationToken,
) -> Result<Summary, BatchError> {
    let batch = ctx.catalogue.batch(id)?;
    let rollout: Rollout = serde_json::from_value(batch.rollout.clone()).unwrap_or_default();
    let deadline = rollout.deadline.as_deref().and_then(catalogue::parse_time);
    // Verdicts reached before this run are not counted against the failure
    // threshold again: a user who resumed a paused batch has seen them.
    let baseline: HashSet<i64> = operations(&ctx.catalogue, id)?
        .iter()
        .filter(|o| o.status.is_final())
        .map(|o| o.id)
        .collect();
    let mut running: Running = JoinSet::new();
    let mut tokens: HashMap<i64, CancellationToken> = HashMap::new();
    let mut last_announced = (String::new(), usize::MAX);
    let mut pace = Pace::new(ctx.timings.start_spacing);

    loop {
        pace.held_back = false;
        let batch = ctx.catalogue.batch(id)?;
        let all = operations(&ctx.catalogue, id)?;
        // Whether this pass started or settled operations, so that `all`
        // no longer says what the catalogue holds.
        let mut changed = false;
        // A flashed device left by a dead process needs its verdict whatever
        // the batch's state: it is past the point of no return.
        for operation in &all {
            let flashed_orphan = operation.flashed_at.is_some()
                && !tokens.contains_key(&operation.id)
                && is_orphaned(operation);
            if flashed_orphan {
                changed = true;
                spawn(
                    ctx,
                    &mut running,
                    &mut tokens,
                    &cancel,
                    operation.id,
                    deadline,
                );
            }
        }
        let cancelled = batch.state == BatchState::Cancelled || cancel.is_cancelled();
        if cancelled {
            changed = true;
            for token in tokens.values() {
                token.cancel();
            }
            settle_waiting(
                ctx,
                &all,
                &tokens,
                Status::Cancelled,
                "cancelled with its batch",
            )?;
        } else if deadline.is_some_and(|d| d < time::OffsetDateTime::now_utc()) {
            changed = true;
            settle_waiting(
                ctx,
                &all,
                &tokens,
                Status::Aborted,
                "aborted: the batch's deadline passed before the device could be upgraded",
            )?;
        } else if batch.state == BatchState::Running {
            if let Some(reason) = over_threshold(&rollout, &all, &baseline) {
                ctx.catalogue.set_batch_state(
                    id,
                    BatchState::Paused,
                    Some(&reason),
                    &format!("paused: {reason}"),
                )?;
                continue;
            }
            let free = rollout.concurrency.saturating_sub(running.len());
            let ready = startable(&rollout, &all, &tokens);
            let starts = pace.starts(ready.len().min(free), tokio::time::Instant::now());
            changed |= starts > 0;
            for operation in ready.into_iter().take(starts) {
                if operation.status == Status::InProgress && operation.flashed_at.is_none() {
                    ctx.catalogue.append_log(
                        operation.id,
                        "interrupted before flashing when its process ended; queued again",
                    )?;
                }
                spawn(
                    ctx,
                    &mut running,
                    &mut tokens,
                    &cancel,
                    operation.id,
                    deadline,
                );
            }
        }

        // Read again only when needed: on a batch of 10,000 operations a
        // read takes about 15 ms, and a pass runs every 100 ms while starts
        // are held back (`bench --only catalogue`).
        let all = if changed {
            operations(&ctx.catalogue, id)?
        } else {
            all
        };
        announce(ctx, id, &all, &mut last_announced)?;
        let unfinished = all.iter().filter(|o| !o.status.is_final()).count();
        if running.is_empty() {
            if unfinished == 0 {
                let state = ctx.catalogue.batch(id)?.state;
                if state != BatchState::Finished {
                    let summary = summary(&ctx.catalogue, id)?;
                    ctx.catalogue.set_batch_state(
                        id,
                        BatchState::Finished,
                        None,
                        &format!(
                            "finished: {} upgraded, {} not needed, {} failed, {} aborted, \
                             {} cancelled",
                            summary.success,
                            summary.not_needed,
                            summary.failed,
                            summary.aborted,
                            summary.cancelled
                        ),
                    )?;
                    announce(ctx, id, &all, &mut last_announced)?;
                }
                break;
            }
            let state = ctx.catalogue.batch(id)?.state;
            let stalled = state == BatchState::Paused
                || cancel.is_cancelled()
                || (state == BatchState::Cancelled && waiting_on_others(&all));
            if stalled {
                break;
            }
        }

        tokio::select! {
            Some(joined) = running.join_next(), if !running.is_empty() => {
                if let Ok((operation, result)) = joined {
                    tokens.remove(&operation);
                    if let Err(error) = result {
                        tracing::warn!(batch = id, operation, "batch operation not run: {error}");
                        ctx.catalogue.append_batch_log(
                            id,
                            &format!("operation {operation} could not run: {error}"),
                        )?;
                    }
                }
            }
            _ = tokio::time::sleep(pace.wait(TICK, tokio::time::Instant::now())) => {}
        }
    }
    summary(&ctx.catalogue, id)
}

/// Spaces the starts of operations by at least `batch.start_spacing`
/// (100 ms unless set).
///
/// Started all at once, the operations of a wave upload at the same time,
/// share the link and all finish their uploads late, together; their
/// reboots and the next wave's uploads stay bunched in the same way. Spread
/// out, the first devices upload at the link's full speed and go on to
/// flash while the next ones upload, and the waves stay spread. On a slow
/// link the spacing costs nothing, the uploads overlap as before; on the
/// lab's fast one it took a device from connect to uploaded in 0.33 s
/// instead of 0.8 s (`BENCHMARKS.md`). It also spares the network a burst
/// of `concurrency` SSH handshakes at the start.
struct Pace {
    spacing: Duration,
    next: Option<tokio::time::Instant>,
    /// Whether operations that could start now were held back this pass.
    held_back: bool,
}

impl Pace {
    fn new(spacing: Duration) -> Pace {
        Pace {
            spacing,
            next: None,
            held_back: false,
        }
    }

    /// How many of `wanted` operations may start at `now`: one when the
    /// spacing since the last start has passed, else none.
    fn starts(&mut self, wanted: usize, now: tokio::time::Instant) -> usize {
        let due = self.next.is_none_or(|next| next <= now);
        let starts = if due { wanted.min(1) } else { 0 };
        if starts > 0 {
            self.next = Some(now + self.spacing);
        }
        self.held_back = wanted > starts;
        starts
    }

    /// How long the loop may sleep: until the next start is due when one
    /// was held back, else `tick`.
    fn wait(&self, tick: Duration, now: tokio::time::Instant) -> Duration {
        match self.next {
            Some(next) if self.held_back => next.saturating_duration_since(now).min(tick),
            _ => tick,
        }
    }
}

type Running = JoinSet<(i64, Result<Status, crate::upgrade::UpgradeError>)>;

/// Starts one operation of the batch on its own task.
fn spawn(
    ctx: &Context,
    running: &mut Running,
    tokens: &mut HashMap<i64, CancellationToken>,
    cancel: &CancellationToken,
    operation_id: i64,
    deadline: Option<time::OffsetDateTime>,
) {
    let token = cancel.child_token();
    tokens.insert(operation_id, token.clone());
    let ctx = ctx.clone();
    running.spawn(async move {
        let status = run_batch_operation(&ctx, operation_id, token, deadline).await;
        (operation_id, status)
    });
}

/// Operations that may start now, in rollout order: waiting ones whose
/// retry time has come, and ones a dead process left in progress. While
/// the first wave is unfinished, only its operations start.
fn startable<'a>(
    rollout: &Rollout,
    all: &'a [UpgradeOperation],
    running: &HashMap<i64, CancellationToken>,
) -> Vec<&'a UpgradeOperation> {
    let now = catalogue::now();
    let ready = |o: &&UpgradeOperation| {
        if running.contains_key(&o.id) {
            return false;
        }
        match o.status {
            Status::Pending => {
                let due = o
                    .next_attempt_at
                    .as_deref()
                    .is_none_or(|at| at <= now.as_str());
                let mine_or_free =
                    o.runner_pid.is_none_or(|pid| pid == std::process::id()) || is_orphaned(o);
                due && mine_or_free
            }
            Status::InProgress => o.flashed_at.is_none() && is_orphaned(o),
            _ => false,
        }
    };
    let wave = rollout.first_wave.unwrap_or(0).min(all.len());
    let wave_done = all[..wave].iter().all(|o| o.status.is_final());
    let candidates = if wave_done { all } else { &all[..wave] };
    candidates.iter().filter(ready).collect()
}

/// The reason to pause when failures among the operations finished in this
/// run pass the threshold; judged once the first wave (or at least one
/// operation) has finished.
pub(super) fn over_threshold(
    rollout: &Rollout,
    all: &[UpgradeOperation],
    baseline: &HashSet<i64>,
) -> Option<String> {
    let limit = rollout.max_failures_percent?;
    let fresh: Vec<_> = all
        .iter()
        .filter(|o| o.status.is_final() && !baseline.contains(&o.id))
        .collect();
    let sample = rollout.first_wave.unwrap_or(1).max(1).min(all.len());
    if fresh.len() < sample {
        return None;
    }
    let failures = fresh
        .iter()
        .filter(|o| matches!(o.status, Status::Failed | Status::Aborted))
        .count();
    let percent = failures * 100 / fresh.len();
    (percent > usize::from(limit)).then(|| {
        format!(
            "{failures} of {} finished operations failed ({percent}%), more than the \
             {limit}% allowed",
            fresh.len()
        )
    })
}

/// Gives every operation that is waiting (not running here, not flashed,
/// not held by a live process) the verdict `status`.
fn settle_waiting(
    ctx: &Context,
    all: &[UpgradeOperation],
    running: &HashMap<i64, CancellationToken>,
    status: Status,
    line: &str,
) -> Result<(), BatchError> {
    for operation in all {
        let waiting = !operation.status.is_final()
            && operation.flashed_at.is_none()
            && !running.contains_key(&operation.id)
            && (operation.status == Status::Pending || is_orphaned(operation));
        if waiting {
            ctx.catalogue.finish_operation(operation.id, status, line)?;
        }
    }
    Ok(())
}

/// Whether unfinished operations remain that another live process holds,
/// or that were flashed and wait for a process to judge them.
fn waiting_on_others(all: &[UpgradeOperation]) -> bool {
    all.iter().any(|o| !o.status.is_final())
}

fn announce(
    ctx: &Context,
    id: i64,
    all: &[UpgradeOperation],
    last: &mut (String, usize),
) -> Result<(), BatchError> {
    let state = ctx.catalogue.batch(id)?.state.as_str().to_string();
    let finished = all.iter().filter(|o| o.status.is_final()).count();
    if (state.clone(), finished) != *last {
        *last = (state.clone(), finished);
        ctx.events.emit(Event::Batch {
            batch: id,
            state,
            finished,
            total: all.len(),
        });
    }
    Ok(())
}

fn lease_end() -> String {
    catalogue::format_time(time::OffsetDateTime::now_utc() + LEASE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pace_starts_one_at_a_time_spaced_out() {
        let spacing = Duration::from_millis(100);
        let mut pace = Pace::new(spacing);
        let start = tokio::time::Instant::now();
        assert_eq!(pace.starts(32, start), 1, "the first start is at once");
        assert!(pace.held_back);
        assert_eq!(pace.wait(TICK, start), spacing);
        let early = start + Duration::from_millis(60);
        assert_eq!(pace.starts(31, early), 0, "not before the spacing passed");
        assert_eq!(pace.wait(TICK, early), Duration::from_millis(40));
        assert_eq!(pace.starts(31, start + spacing), 1);
    }

    #[test]
    fn pace_without_waiting_work_sleeps_a_tick() {
        let mut pace = Pace::new(Duration::from_millis(100));
        let now = tokio::time::Instant::now();
        assert_eq!(pace.starts(1, now), 1);
        assert!(!pace.held_back, "nothing else waited");
        assert_eq!(pace.wait(TICK, now), TICK);
        assert_eq!(pace.starts(0, now), 0);
        assert_eq!(pace.wait(TICK, now), TICK);
    }

    #[test]
    fn pace_spreads_a_wave_over_its_length() {
        let spacing = Duration::from_millis(100);
        let mut pace = Pace::new(spacing);
        let start = tokio::time::Instant::now();
        let mut now = start;
        let mut started = Vec::new();
        let mut waiting = 32;
        // The loop as the scheduler runs it: start what the pace allows,
        // then sleep as long as it says.
        for _ in 0..1_000 {
            let starts = pace.starts(waiting, now);
            for _ in 0..starts {
                started.push(now - start);
            }
            waiting -= starts;
            if waiting == 0 {
                break;
            }
            now += pace.wait(TICK, now);
        }
        assert_eq!(started.len(), 32);
        assert_eq!(
            started[31],
            spacing * 31,
            "the 32nd starts 3.1 s in, not later"
        );
        assert!(started.windows(2).all(|pair| pair[1] - pair[0] == spacing));
    }
}
