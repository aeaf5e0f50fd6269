//! Running upgrade operations: one image onto one device, through the
//! stages of an [`Upgrader`], with retries, a time limit, cancellation up to
//! the flash, and recovery after the process died.
//!
//! [`run`] is the runner that owns the operation's life in the catalogue;
//! [`openwrt`] is the upgrader for OpenWrt; [`identity`] reads what a device
//! says about itself. The runner talks to devices only through
//! [`crate::transport`], never to russh.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::catalogue::{Catalogue, CatalogueError, Image, Status};
use crate::events::EventSink;
use crate::transport::{Connector, TransportError};

pub mod identity;
pub mod openwrt;
mod run;

pub use identity::Identity;
pub use run::{
    find_resumable, is_orphaned, probe_device, recover_orphans, run_batch_operation, run_operation,
    start_operation, Probed, UpgradeRequest,
};

/// How long things may take and how often they are tried. Defaults are the
/// design's (those of OpenWISP's upgrader).
#[derive(Clone, Debug, PartialEq)]
pub struct Timings {
    /// Retries of a recoverable failure before flashing.
    pub max_retries: u32,
    /// First wait before a retry; doubled each time.
    pub backoff: Duration,
    /// Longest wait before a retry.
    pub backoff_cap: Duration,
    /// Whether retry waits are spread at random.
    pub jitter: bool,
    /// Time limit of one attempt, from connecting to the verdict.
    pub task_timeout: Duration,
    /// Wait after flashing before the first reconnection.
    pub reconnect_delay: Duration,
    /// Wait between reconnection attempts.
    pub reconnect_retry_delay: Duration,
    /// Reconnection attempts after flashing.
    pub reconnect_attempts: u32,
    /// Time limit of the sysupgrade command.
    pub upgrade_timeout: Duration,
    /// Time limit of connecting and logging in.
    pub connect_timeout: Duration,
    /// Time limit of an ordinary remote command.
    pub command_timeout: Duration,
    /// The least time between two starts of a batch's operations.
    pub start_spacing: Duration,
}

impl Default for Timings {
    fn default() -> Timings {
        Timings {
            max_retries: 4,
            backoff: Duration::from_secs(60),
            backoff_cap: Duration::from_secs(600),
            jitter: true,
            task_timeout: Duration::from_secs(600),
            reconnect_delay: Duration::from_secs(120),
            reconnect_retry_delay: Duration::from_secs(20),
            reconnect_attempts: 15,
            upgrade_timeout: Duration::from_secs(90),
            connect_timeout: Duration::from_secs(15),
            command_timeout: Duration::from_secs(30),
            start_spacing: Duration::from_millis(100),
        }
    }
}

/// Where secrets come from when a device is connected to. The vault
/// implements it; so may a test.
pub trait Secrets: Send + Sync {
    /// Returns the secret stored under `name`.
    fn secret(&self, name: &str) -> Result<String, String>;
}

/// Everything a run needs, shared by every operation of a process.
#[derive(Clone)]
pub struct Context {
    pub catalogue: Catalogue,
    pub data_dir: PathBuf,
    pub timings: Timings,
    pub secrets: Arc<dyn Secrets>,
    pub connector: Arc<dyn Connector>,
    pub events: Arc<dyn EventSink>,
}

/// Why an operation could not be run at all (as opposed to a verdict).
#[derive(Debug, thiserror::Error)]
pub enum UpgradeError {
    #[error(transparent)]
    Catalogue(#[from] CatalogueError),
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The operation's own thread or runtime could not start, or ended
    /// without a verdict.
    #[error("the operation's thread failed: {0}")]
    Thread(std::io::Error),
}

/// What an upgrader needs to know about the job at hand.
#[derive(Clone, Debug)]
pub struct Job {
    pub operation: i64,
    pub image: Image,
    /// The stored image file on this machine.
    pub local_path: PathBuf,
    /// The file name the image gets on the device; generated, never the
    /// user's.
    pub remote_path: String,
    pub options: crate::catalogue::SysupgradeOptions,
    pub force: bool,
}

/// How a stage ended when it did not simply succeed.
#[derive(Debug, thiserror::Error)]
pub enum StageError {
    /// Worth another attempt later: a broken link, a corrupt upload.
    #[error("{0}")]
    Recoverable(String),
    /// A precondition failed; nothing on the device was changed.
    #[error("{0}")]
    Abort(String),
    /// The operation was cancelled before flashing.
    #[error("cancelled")]
    Cancelled,
    /// The catalogue could not record the operation.
    #[error(transparent)]
    Catalogue(#[from] CatalogueError),
}

/// The verdict of one operation, as the runner leaves it in the catalogue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub status: Status,
}

/// What happened when sysupgrade was started.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FlashOutcome {
    /// The upgrader said it commenced; the device is flashing.
    Commenced,
    /// The session ended without a clear word either way; only
    /// verification after the reboot can tell.
    Unclear(String),
    /// The upgrader refused before commencing; nothing was changed.
    Refused(String),
}

/// The stages a firmware family implements. The runner calls them in order
/// and owns everything else: connections, the catalogue, retries, the time
/// limit and cancellation.
#[async_trait::async_trait]
pub trait Upgrader: Send + Sync {
    /// Reads who the device is and what it runs.
    async fn identify(
        &self,
        session: &mut dyn crate::transport::Session,
        report: &run::Reporter,
    ) -> Result<Identity, StageError>;

    /// Makes sure the device has room for the image. Returns the services
    /// it stopped to get it, which [`Upgrader::restore`] starts again if the
    /// operation ends before flashing. `identity` is what
    /// [`Upgrader::identify`] read just before; `first_attempt` says no
    /// earlier attempt of this operation can have changed the device.
    async fn make_room(
        &self,
        session: &mut dyn crate::transport::Session,
        job: &Job,
        identity: &Identity,
        first_attempt: bool,
        report: &run::Reporter,
    ) -> Result<Vec<String>, StageError>;

    /// Streams the image to `job.remote_path` and checks it arrived whole.
    async fn upload(
        &self,
        session: &mut dyn crate::transport::Session,
        job: &Job,
        report: &run::Reporter,
    ) -> Result<(), StageError>;

    /// Asks the device whether it would take the image.
    async fn test(
        &self,
        session: &mut dyn crate::transport::Session,
        job: &Job,
        report: &run::Reporter,
    ) -> Result<(), StageError>;

    /// The command [`Upgrader::flash`] runs, for the log line that marks
    /// the point of no return.
    fn flash_command(&self, job: &Job) -> String;

    /// Starts flashing. The session dropping is normal here.
    async fn flash(
        &self,
        session: &mut dyn crate::transport::Session,
        job: &Job,
        report: &run::Reporter,
    ) -> Result<FlashOutcome, StageError>;

    /// Leaves the proof of the upgrade on the device after verification.
    async fn mark_upgraded(
        &self,
        session: &mut dyn crate::transport::Session,
        job: &Job,
    ) -> Result<(), StageError>;

    /// Undoes what the operation did before flashing: starts stopped
    /// services, removes the uploaded file.
    async fn restore(
        &self,
        session: &mut dyn crate::transport::Session,
        job: &Job,
        stopped_services: &[String],
        report: &run::Reporter,
    );
}
