//! What the window's commands share while the app runs: the opened engine,
//! the cancellation tokens of upgrades and batches this process runs, host
//! keys waiting for the user's word, what was resumed at start, the last
//! address range scan, and the guided tour's lab.
//!
//! Commands reach it as `tauri::State<AppState>`; nothing here talks to a
//! device or to SQLite by itself.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use fwu_engine::actions::Engine;
use fwu_engine::transport::HostKey;
use fwu_engine::upgrade::Context;
use tauri::AppHandle;
use tokio_util::sync::CancellationToken;

use crate::error::CommandResult;
use crate::events::WindowSink;

/// The app's shared state, managed by Tauri.
pub(crate) struct AppState {
    /// The opened data directory.
    pub(crate) engine: Engine,
    /// When the process started, for the first-paint figure.
    pub(crate) started: Instant,
    /// Upgrade operations this process runs, by id, with the token that
    /// cancels them (honoured only until flashing starts).
    pub(crate) runs: Running,
    /// Batches this process runs, by id, with the token that stops them.
    pub(crate) batches: Running,
    /// Host keys a device presented for the first time, by device name,
    /// until the user accepts or refuses the fingerprint.
    pub(crate) unconfirmed_keys: Mutex<HashMap<String, HostKey>>,
    /// Work a previous process left unfinished that this one took up at
    /// start, for the page to show.
    pub(crate) resumed: Mutex<Vec<crate::recovery::Resumed>>,
    /// The last address range scan, with how it logged in: devices are
    /// added from it by address, so that the host keys pinned are those
    /// the scan saw, never ones the page sends.
    pub(crate) discovery: Mutex<Option<crate::inventory::LastScan>>,
    /// Set once the user agreed to close the window while work runs.
    pub(crate) close_confirmed: AtomicBool,
    /// The guided tour's simulated devices while the tour runs.
    pub(crate) tour: tokio::sync::Mutex<Option<crate::lab::Tour>>,
    /// The window, for forwarding engine events.
    pub(crate) app: AppHandle,
}

impl AppState {
    /// Opens the engine on `data_dir`.
    pub(crate) fn open(
        app: AppHandle,
        data_dir: PathBuf,
        started: Instant,
    ) -> Result<AppState, fwu_engine::actions::EngineError> {
        Ok(AppState {
            engine: Engine::open(&data_dir, vault())?,
            started,
            runs: Running::default(),
            batches: Running::default(),
            unconfirmed_keys: Mutex::new(HashMap::new()),
            resumed: Mutex::new(Vec::new()),
            discovery: Mutex::new(None),
            close_confirmed: AtomicBool::new(false),
            tour: tokio::sync::Mutex::new(None),
            app,
        })
    }

    /// A run context whose events go to the window.
    pub(crate) fn context(&self) -> CommandResult<Context> {
        Ok(self
            .engine
            .context(Arc::new(WindowSink::new(self.app.clone())))?)
    }
}

/// Work this process runs (upgrade operations or batches), by id, each with
/// the token that cancels it.
#[derive(Default)]
pub(crate) struct Running(Mutex<HashMap<i64, CancellationToken>>);

impl Running {
    /// Records that `id` runs here; returns the token that cancels it.
    pub(crate) fn start(&self, id: i64) -> CancellationToken {
        let token = CancellationToken::new();
        self.lock().insert(id, token.clone());
        token
    }

    /// Records that `id` no longer runs here.
    pub(crate) fn end(&self, id: i64) {
        self.lock().remove(&id);
    }

    /// Cancels `id` if it runs here.
    pub(crate) fn cancel(&self, id: i64) {
        if let Some(token) = self.lock().get(&id) {
            token.cancel();
        }
    }

    pub(crate) fn contains(&self, id: i64) -> bool {
        self.lock().contains_key(&id)
    }

    /// The ids running here, in order.
    pub(crate) fn ids(&self) -> Vec<i64> {
        let mut ids: Vec<i64> = self.lock().keys().copied().collect();
        ids.sort_unstable();
        ids
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<i64, CancellationToken>> {
        self.0.lock().expect("the list of running work is poisoned")
    }
}

/// The vault; `FWU_KEYRING_SERVICE` names another keyring service, as for
/// `fwu`, which keeps tests and rehearsals apart from the real entries.
fn vault() -> fwu_engine::vault::Vault {
    match std::env::var("FWU_KEYRING_SERVICE") {
        Ok(service) if !service.is_empty() => fwu_engine::vault::Vault::with_service(service),
        _ => fwu_engine::vault::Vault::new(),
    }
}
