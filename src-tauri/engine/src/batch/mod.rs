//! Batches: a build rolled out over a selection of devices.
//!
//! [`plan`] decides which devices a batch touches and which it leaves out,
//! and why; a dry run shows the plan and [`start`] records exactly that
//! plan, so the two can never select different devices. [`run`] (in
//! `scheduler.rs`) executes a batch's operations with bounded concurrency,
//! an optional first wave, a failure threshold that pauses the batch, and
//! persistent retries; it can stop at any moment and be resumed by another
//! process. [`report`] writes what a consultant hands to a customer.
//!
//! A batch's counts and status are derived from its operations
//! ([`summary`]); the batch row only keeps what the user asked for and how
//! they steer it (running, paused, cancelled).

use serde::{Deserialize, Serialize};

use crate::catalogue::{
    Batch, BatchState, Build, Catalogue, CatalogueError, Device, NewBatch, Status,
    SysupgradeOptions, UpgradeOperation,
};
use crate::upgrade::is_orphaned;

pub mod report;
mod scheduler;

pub use scheduler::run;

/// Which devices a batch is about.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Selection {
    /// Only devices of this site.
    pub site: Option<String>,
    /// Only devices with at least one of these tags.
    pub tags: Vec<String>,
    /// These devices, by name. Alone, they are the whole selection; with a
    /// site or tags, they are added to what those select.
    pub devices: Vec<String>,
    /// Also devices whose firmware is unknown, when their board has an
    /// image in the build.
    pub firmwareless: bool,
}

/// How a batch rolls out.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rollout {
    /// Operations running at once.
    pub concurrency: usize,
    /// Size of the first wave: the rest starts only once it is done and
    /// its failures stay under the threshold.
    pub first_wave: Option<usize>,
    /// Pause the batch when failed and aborted operations pass this share
    /// of the finished ones.
    pub max_failures_percent: Option<u8>,
    /// After this time (catalogue format) nothing new starts; waiting
    /// devices end as aborted.
    pub deadline: Option<String>,
}

impl Default for Rollout {
    fn default() -> Rollout {
        Rollout {
            concurrency: 8,
            first_wave: None,
            max_failures_percent: None,
            deadline: None,
        }
    }
}

/// One device a batch upgrades.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Planned {
    pub device_id: i64,
    pub device: String,
    pub board: String,
    pub image_id: i64,
    pub image_type: String,
    /// What it runs now, as far as the catalogue knows.
    pub running: Option<String>,
}

/// One device a batch leaves out.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Skipped {
    pub device_id: i64,
    pub device: String,
    pub reason: String,
}

/// What a batch would do.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Plan {
    pub build: Build,
    pub upgrades: Vec<Planned>,
    pub skipped: Vec<Skipped>,
}

/// Why a batch request cannot be carried out.
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    #[error(transparent)]
    Catalogue(#[from] CatalogueError),
    #[error(transparent)]
    Upgrade(#[from] crate::upgrade::UpgradeError),
    #[error("{0}")]
    Refused(String),
}

/// Decides which devices a batch of `category` `version` upgrades, with
/// which image, and which it leaves out and why.
pub fn plan(
    catalogue: &Catalogue,
    category: &str,
    version: &str,
    selection: &Selection,
) -> Result<Plan, BatchError> {
    let build = catalogue.build(category, version)?;
    let images = catalogue.images(build.id)?;
    for name in &selection.devices {
        catalogue.device(name)?;
    }
    let unfinished: Vec<UpgradeOperation> = catalogue.unfinished_operations()?;

    let mut upgrades = Vec::new();
    let mut skipped = Vec::new();
    for device in catalogue.devices()? {
        if !selected(&device, selection) {
            continue;
        }
        let skip = |reason: String| Skipped {
            device_id: device.id,
            device: device.name.clone(),
            reason,
        };
        if let Some(operation) = unfinished.iter().find(|o| o.device_id == device.id) {
            skipped.push(skip(format!(
                "already has unfinished upgrade operation {}",
                operation.id
            )));
            continue;
        }
        let Some(board) = device.board.clone() else {
            skipped.push(skip("board unknown: probe the device first".to_string()));
            continue;
        };
        let Some(image) = images.iter().find(|i| i.boards.contains(&board)) else {
            skipped.push(skip(format!(
                "no image of {} {} for board {board}",
                build.category, build.version
            )));
            continue;
        };
        let firmware = catalogue.device_firmware(device.id)?;
        let installed_build = match &firmware {
            Some(firmware) if firmware.installed => {
                Some(catalogue.image(firmware.image_id)?.build_id)
            }
            _ => None,
        };
        let runs_build = installed_build == Some(build.id)
            || (build.os_identifier.is_some() && device.os_identifier == build.os_identifier);
        if runs_build {
            skipped.push(skip(format!(
                "already runs {} {}",
                build.category, build.version
            )));
            continue;
        }
        if installed_build.is_none() && !selection.firmwareless {
            skipped.push(skip(
                "its firmware is unknown to the catalogue (include such devices with \
                 --firmwareless)"
                    .to_string(),
            ));
            continue;
        }
        upgrades.push(Planned {
            device_id: device.id,
            device: device.name.clone(),
            board,
            image_id: image.id,
            image_type: image.image_type.clone(),
            running: device.os_identifier.clone(),
        });
    }
    Ok(Plan {
        build,
        upgrades,
        skipped,
    })
}

fn selected(device: &Device, selection: &Selection) -> bool {
    let named = selection.devices.contains(&device.name);
    let filtered = selection.site.is_some() || !selection.tags.is_empty();
    if !filtered {
        return named || selection.devices.is_empty();
    }
    let site_ok = selection
        .site
        .as_ref()
        .is_none_or(|site| device.site.as_ref() == Some(site));
    let tags_ok =
        selection.tags.is_empty() || selection.tags.iter().any(|t| device.tags.contains(t));
    named || (site_ok && tags_ok)
}

/// Records a batch of the plan for `selection` and returns it with the
/// plan. Nothing runs yet: [`run`] does that.
pub fn start(
    catalogue: &Catalogue,
    category: &str,
    version: &str,
    selection: &Selection,
    options: SysupgradeOptions,
    rollout: &Rollout,
) -> Result<(Batch, Plan), BatchError> {
    if rollout.concurrency == 0 {
        return Err(BatchError::Refused(
            "concurrency must be at least 1".to_string(),
        ));
    }
    if rollout.max_failures_percent.is_some_and(|p| p > 100) {
        return Err(BatchError::Refused(
            "--max-failures is a percentage, 0 to 100".to_string(),
        ));
    }
    let plan = plan(catalogue, category, version, selection)?;
    if plan.upgrades.is_empty() {
        return Err(BatchError::Refused(format!(
            "no device to upgrade: {} selected, all left out (see the dry run)",
            plan.skipped.len()
        )));
    }
    let new = NewBatch {
        build_id: plan.build.id,
        selection: serde_json::to_value(selection).expect("a selection serialises"),
        options,
        rollout: serde_json::to_value(rollout).expect("a rollout serialises"),
        upgrades: plan
            .upgrades
            .iter()
            .map(|p| (p.device_id, p.image_id))
            .collect(),
        skipped: plan
            .skipped
            .iter()
            .map(|s| (s.device_id, s.reason.clone()))
            .collect(),
    };
    let first_line = format!(
        "batch of {} {} over {} devices ({} left out)",
        plan.build.category,
        plan.build.version,
        plan.upgrades.len(),
        plan.skipped.len()
    );
    let batch = catalogue.add_batch(&new, &first_line)?;
    Ok((batch, plan))
}

/// A batch's counts, derived from its operations.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Summary {
    pub batch: i64,
    pub state: String,
    /// `running`, `paused`, `cancelled`, `success` (every device upgraded
    /// or already there) or `failed` (some device failed or was aborted).
    pub status: String,
    pub total: usize,
    pub pending: usize,
    pub in_progress: usize,
    pub success: usize,
    pub not_needed: usize,
    pub failed: usize,
    pub aborted: usize,
    pub cancelled: usize,
    pub skipped: usize,
    /// Share of finished operations that succeeded or were not needed, in
    /// percent.
    pub success_rate: u8,
    pub pause_reason: Option<String>,
}

impl Summary {
    /// Operations with their verdict.
    pub fn finished(&self) -> usize {
        self.success + self.not_needed + self.failed + self.aborted + self.cancelled
    }
}

/// Counts a batch's operations.
pub fn summary(catalogue: &Catalogue, id: i64) -> Result<Summary, BatchError> {
    let batch = catalogue.batch(id)?;
    let operations = operations(catalogue, id)?;
    let mut summary = Summary {
        batch: id,
        state: batch.state.as_str().to_string(),
        total: operations.len(),
        skipped: catalogue.batch_skips(id)?.len(),
        pause_reason: batch.pause_reason.clone(),
        ..Summary::default()
    };
    for operation in &operations {
        match operation.status {
            Status::Pending => summary.pending += 1,
            Status::InProgress => summary.in_progress += 1,
            Status::Success => summary.success += 1,
            Status::NotNeeded => summary.not_needed += 1,
            Status::Failed => summary.failed += 1,
            Status::Aborted => summary.aborted += 1,
            Status::Cancelled => summary.cancelled += 1,
        }
    }
    let finished = summary.finished();
    let good = summary.success + summary.not_needed;
    summary.success_rate = (good * 100).checked_div(finished).unwrap_or(0) as u8;
    let all_done = finished == summary.total;
    summary.status = match batch.state {
        BatchState::Paused => "paused",
        BatchState::Cancelled if all_done => "cancelled",
        BatchState::Running | BatchState::Cancelled if !all_done => "running",
        _ if summary.failed + summary.aborted + summary.cancelled == 0 => "success",
        _ => "failed",
    }
    .to_string();
    Ok(summary)
}

/// A batch's operations in rollout order.
pub fn operations(catalogue: &Catalogue, id: i64) -> Result<Vec<UpgradeOperation>, BatchError> {
    let mut operations = catalogue.operations(&crate::catalogue::OperationFilter {
        batch_id: Some(id),
        ..Default::default()
    })?;
    operations.sort_by_key(|o| o.id);
    Ok(operations)
}

/// Pauses a batch: nothing new starts; running operations finish.
pub fn pause(catalogue: &Catalogue, id: i64) -> Result<(), BatchError> {
    let batch = catalogue.batch(id)?;
    if batch.state != BatchState::Running {
        return Err(BatchError::Refused(format!(
            "batch {id} is {}, not running",
            batch.state.as_str()
        )));
    }
    catalogue.set_batch_state(id, BatchState::Paused, Some("paused by the user"), "paused")?;
    Ok(())
}

/// Marks a paused batch running again; [`run`] then carries it on.
pub fn resume(catalogue: &Catalogue, id: i64) -> Result<(), BatchError> {
    let batch = catalogue.batch(id)?;
    match batch.state {
        BatchState::Paused => {
            catalogue.set_batch_state(id, BatchState::Running, None, "resumed")?;
        }
        BatchState::Running => {
            catalogue.append_batch_log(id, "taken up again")?;
        }
        // A cancelled batch may still have flashed devices waiting for a
        // verdict; running it settles them and starts nothing new.
        BatchState::Cancelled | BatchState::Finished => {}
    }
    Ok(())
}

/// Cancels a batch: every operation not yet flashing is cancelled; those
/// flashing reach their verdict. When no process runs the batch, the
/// cancelled operations are settled here.
pub fn cancel(catalogue: &Catalogue, id: i64) -> Result<(), BatchError> {
    let batch = catalogue.batch(id)?;
    if batch.state == BatchState::Finished {
        return Err(BatchError::Refused(format!(
            "batch {id} has already finished"
        )));
    }
    catalogue.set_batch_state(id, BatchState::Cancelled, None, "cancelled by the user")?;
    for operation in operations(catalogue, id)? {
        if operation.status.is_final() || operation.flashed_at.is_some() {
            continue;
        }
        catalogue.request_cancel(operation.id)?;
        if is_orphaned(&operation) || operation.status == Status::Pending {
            catalogue.finish_operation(
                operation.id,
                Status::Cancelled,
                "cancelled with its batch; nothing was flashed",
            )?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
