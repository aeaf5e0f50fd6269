//! One lab device: the cheap handle tests hold, and the supervisor task that
//! runs its sandbox, notices it end, and brings it back as the flash, the
//! faults and the power switch say.
//!
//! A boot is one bubblewrap sandbox whose first process serves the device's
//! `/proc/meminfo` and becomes Dropbear.
//!
//! FIXME: `/proc/meminfo` is a FIFO: `test -f` calls it no regular file,
//! and a reader stalled for over 50 ms between its reads may get the figures
//! twice; upgraders that read it with one `cat` and take the first match
//! are not affected.
//!
//! FIXME: `/proc/uptime` and `sysinfo()` (BusyBox `uptime`, `free`) show the
//! host's figures; only `ubus call system info` gives the device's own
//! uptime, so an upgrader that checks reboots by `/proc/uptime` alone would
//! be misled (the boot id is right). sysupgrade ends every Dropbear
//! process to flash, which ends the sandbox; the supervisor then reads the
//! flash request the device left, waits the reboot time and boots again.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command as Process};
use tokio::sync::{mpsc, oneshot, watch, Semaphore};
use tokio::task::JoinHandle;

use crate::address::{RELAY_BACKEND_PORT, SSH_PORT};
use crate::base::{BWRAP, TOP_DIRECTORIES};
use crate::catalog::{Board, Release};
use crate::error::LabError;
use crate::files::{Boot, DevicePaths, FlashRequest};
use crate::relay;
use crate::spec::{DeviceSpec, Faults, Memory, Service};

/// How long a boot may take before the device counts as broken.
const BOOT_TIMEOUT: Duration = Duration::from_secs(20);
/// How often a booting device is checked for a listening server.
const BOOT_POLL: Duration = Duration::from_millis(20);
/// How long the lab waits for a stopped device's port to close.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(3);
/// The capabilities Dropbear needs; every other one is dropped.
const CAPABILITIES: &[&str] = &[
    "CAP_NET_BIND_SERVICE",
    "CAP_SETUID",
    "CAP_SETGID",
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FOWNER",
    "CAP_KILL",
    "CAP_SYS_CHROOT",
];

/// A handle on one lab device; cloning it is cheap.
#[derive(Clone)]
pub struct Device {
    inner: Arc<Inner>,
}

/// What a device's handles and its supervisor share.
struct Inner {
    name: String,
    board: &'static Board,
    address: Ipv4Addr,
    alternate: Ipv4Addr,
    password: Option<String>,
    password_hash: Option<String>,
    authorized_keys: Vec<String>,
    memory: Memory,
    services: Vec<Service>,
    reboot_time: Duration,
    paths: DevicePaths,
    base: PathBuf,
    faults: Arc<Mutex<Faults>>,
    status: Mutex<Status>,
    up: watch::Sender<bool>,
    commands: mpsc::UnboundedSender<Command>,
}

/// What changes from boot to boot.
struct Status {
    /// The release it runs, or will run once back.
    release: Release,
    /// The compat version of that firmware.
    compat_version: String,
    /// The boot id of the current or last boot.
    boot_id: String,
    /// How many flashes commenced.
    flash_count: u32,
    /// The address it listens on while up.
    listening_on: Option<Ipv4Addr>,
    /// Whether it boots on its alternate address.
    on_alternate: bool,
    /// The OpenSSH public line of its host key.
    host_key: String,
    /// The outer bubblewrap process while a boot runs.
    bwrap_pid: Option<u32>,
    /// How many boots have started.
    boots: u32,
}

/// What a device's handles ask its supervisor to do.
enum Command {
    /// End the boot and stay down; answered at once.
    PowerOff(oneshot::Sender<()>),
    /// Boot if down; answered once up (or once the boot failed).
    PowerOn(oneshot::Sender<()>),
    /// New host key and a new boot; answered once up.
    ChangeHostKey(oneshot::Sender<()>),
    /// End the boot and the supervisor; answered when the sandbox is gone.
    Stop(oneshot::Sender<()>),
}

/// A device as read from the host side at one moment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceState {
    /// Whether its SSH server accepts connections.
    pub up: bool,
    /// The release it runs (or will run when it comes back).
    pub release: Release,
    /// The compat version of its firmware.
    pub compat_version: String,
    /// The boot id of its current (or last) boot.
    pub boot_id: String,
    /// How many upgrades it has flashed.
    pub flash_count: u32,
    /// The arguments of every sysupgrade run, oldest first, without the
    /// program name: `["-n", "/tmp/firmware.bin"]`.
    pub sysupgrade_calls: Vec<Vec<String>>,
    /// The address it listens on, none while it is down.
    pub listening_on: Option<Ipv4Addr>,
    /// MemAvailable, in KiB.
    pub available_kib: u64,
    /// The non-critical services that run; none while it is down.
    pub running_services: Vec<String>,
}

/// A device's sandbox while it runs.
struct Running {
    /// The outer bubblewrap process.
    child: Child,
    /// The relay task, when link faults asked for one.
    relay: Option<JoinHandle<()>>,
    /// The address Dropbear listens on.
    address: Ipv4Addr,
    /// The port Dropbear listens on.
    port: u16,
}

/// How a boot ended.
enum Ended {
    /// The sandbox ended by itself: sysupgrade or a reboot inside.
    Exited,
    /// A handle asked for something that ends the boot.
    Command(Command),
    /// Every handle is gone.
    Abandoned,
}

/// Everything needed to make a device, prepared by the lab.
pub(crate) struct Plan {
    pub(crate) spec: DeviceSpec,
    pub(crate) board: &'static Board,
    pub(crate) address: Ipv4Addr,
    pub(crate) alternate: Ipv4Addr,
    pub(crate) paths: DevicePaths,
    pub(crate) base: PathBuf,
    pub(crate) password_hash: Option<String>,
}

/// A device made but not yet running, with what its supervisor needs.
pub(crate) struct Made {
    pub(crate) device: Device,
    commands: mpsc::UnboundedReceiver<Command>,
}

impl Made {
    /// Starts the device's supervisor; `first_boot` hears whether the first
    /// boot worked, which happens while a permit of `boots` is held.
    pub(crate) fn supervise(
        self,
        boots: Arc<Semaphore>,
        first_boot: oneshot::Sender<Result<(), LabError>>,
    ) -> JoinHandle<()> {
        let inner = self.device.inner.clone();
        tokio::spawn(supervise(inner, self.commands, boots, first_boot))
    }
}

/// Makes a device's files (host key, `/etc`, state); blocking.
pub(crate) fn make(plan: Plan) -> Result<Made, LabError> {
    let spec = plan.spec;
    plan.paths.create()?;
    let host_key = plan.paths.make_host_key(&spec.name)?;
    plan.paths.write_defaults(
        plan.password_hash.as_deref(),
        &spec.authorized_keys,
        &spec.services,
    )?;
    plan.paths.write_faults(&spec.faults)?;
    let (commands_tx, commands) = mpsc::unbounded_channel();
    let inner = Inner {
        name: spec.name,
        board: plan.board,
        address: plan.address,
        alternate: plan.alternate,
        password: spec.password,
        password_hash: plan.password_hash,
        authorized_keys: spec.authorized_keys,
        memory: spec.memory,
        services: spec.services,
        reboot_time: spec.reboot_time,
        paths: plan.paths,
        base: plan.base,
        faults: Arc::new(Mutex::new(spec.faults)),
        status: Mutex::new(Status {
            release: spec.release,
            compat_version: spec.compat_version,
            boot_id: String::new(),
            flash_count: 0,
            listening_on: None,
            on_alternate: false,
            host_key,
            bwrap_pid: None,
            boots: 0,
        }),
        up: watch::Sender::new(false),
        commands: commands_tx,
    };
    Ok(Made {
        device: Device {
            inner: Arc::new(inner),
        },
        commands,
    })
}

impl Device {
    /// Returns the device's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Returns the address it normally listens on.
    pub fn address(&self) -> Ipv4Addr {
        self.inner.address
    }

    /// Returns the address it listens on after the
    /// `returns_on_alternate_address` fault.
    pub fn alternate_address(&self) -> Ipv4Addr {
        self.inner.alternate
    }

    /// Returns the SSH port, 22.
    pub fn port(&self) -> u16 {
        SSH_PORT
    }

    /// Returns the user to log in as, "root".
    pub fn user(&self) -> &str {
        "root"
    }

    /// Returns root's password, if password logins are allowed.
    pub fn password(&self) -> Option<&str> {
        self.inner.password.as_deref()
    }

    /// Returns the device's board.
    pub fn board(&self) -> &'static Board {
        self.inner.board
    }

    /// Returns the current host key as an OpenSSH public key line
    /// ("ssh-ed25519 AAAA...").
    pub fn host_key(&self) -> String {
        self.inner.status().host_key.clone()
    }

    /// Returns the faults the device shows now.
    pub fn faults(&self) -> Faults {
        self.inner.faults()
    }

    /// Reads the device's state from the host side.
    pub fn state(&self) -> DeviceState {
        let up = *self.inner.up.borrow();
        let status = self.inner.status();
        let (available_kib, running) = self
            .inner
            .paths
            .memory_state(&self.inner.memory, &self.inner.services);
        DeviceState {
            up,
            release: status.release.clone(),
            compat_version: status.compat_version.clone(),
            boot_id: status.boot_id.clone(),
            flash_count: status.flash_count,
            sysupgrade_calls: self.inner.paths.sysupgrade_calls(),
            listening_on: status.listening_on,
            available_kib,
            running_services: if up { running } else { Vec::new() },
        }
    }

    /// Sets the faults the device shows. sysupgrade faults apply to its next
    /// run, reboot faults to the next reboot, link figures to the next bytes
    /// relayed; see [`Faults`] for when a relay starts.
    pub fn set_faults(&self, faults: Faults) {
        if let Err(error) = self.inner.paths.write_faults(&faults) {
            tracing::warn!(device = %self.inner.name, %error, "could not hand faults over");
        }
        *self.inner.faults.lock().unwrap_or_else(|p| p.into_inner()) = faults;
    }

    /// Switches the device off, as pulling its plug would: every session
    /// ends and it stays down until [`Device::power_on`].
    pub async fn power_off(&self) {
        self.ask(Command::PowerOff).await;
    }

    /// Switches the device on and returns once it is up (or failed to boot).
    /// A device that is up is left alone.
    pub async fn power_on(&self) {
        self.ask(Command::PowerOn).await;
    }

    /// Gives the device a new host key and restarts it (a new boot) at once;
    /// returns once it is up again.
    pub async fn change_host_key(&self) {
        self.ask(Command::ChangeHostKey).await;
    }

    /// Waits until the device is up; tells whether it was within `timeout`.
    pub async fn wait_until_up(&self, timeout: Duration) -> bool {
        self.wait_for(true, timeout).await
    }

    /// Waits until the device is down; tells whether it was within
    /// `timeout`.
    pub async fn wait_until_down(&self, timeout: Duration) -> bool {
        self.wait_for(false, timeout).await
    }

    /// Waits until the device is up in a boot other than `boot_id`; tells
    /// whether it was within `timeout`. Unlike waiting for it to go down
    /// and then up, this cannot miss a short reboot that ended before the
    /// call.
    pub async fn wait_until_rebooted(&self, boot_id: &str, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if *self.inner.up.borrow() && self.inner.status().boot_id != boot_id {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Returns the directory whose files the device sees as `/lab/state`.
    pub fn state_dir(&self) -> &Path {
        &self.inner.paths.state
    }

    /// Returns the pid of the sandbox's bubblewrap process, while it runs.
    pub(crate) fn sandbox_pid(&self) -> Option<u32> {
        self.inner.status().bwrap_pid
    }

    /// Asks the device to stop for good and waits until it has.
    pub(crate) async fn stop(&self) {
        self.ask(Command::Stop).await;
    }

    /// Sends a command to the supervisor and waits for its answer.
    async fn ask(&self, command: impl FnOnce(oneshot::Sender<()>) -> Command) {
        let (ack, done) = oneshot::channel();
        if self.inner.commands.send(command(ack)).is_ok() {
            let _ = done.await;
        }
    }

    /// Waits until `up` reads `wanted`.
    async fn wait_for(&self, wanted: bool, timeout: Duration) -> bool {
        let mut up = self.inner.up.subscribe();
        let waited = tokio::time::timeout(timeout, up.wait_for(|up| *up == wanted)).await;
        matches!(waited, Ok(Ok(_)))
    }
}

impl std::fmt::Debug for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Device")
            .field("name", &self.inner.name)
            .field("address", &self.inner.address)
            .field("board", &self.inner.board.name)
            .finish()
    }
}

impl Inner {
    fn status(&self) -> MutexGuard<'_, Status> {
        self.status
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn faults(&self) -> Faults {
        self.faults
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Gives the device a new host key.
    fn renew_host_key(&self) {
        match self.paths.make_host_key(&self.name) {
            Ok(key) => self.status().host_key = key,
            Err(error) => {
                tracing::warn!(device = %self.name, %error, "could not renew the host key")
            }
        }
    }

    /// Boots the device: a new sandbox, and a relay if link faults ask for
    /// one. Returns once its server accepts connections.
    async fn boot(&self) -> Result<Running, LabError> {
        let faults = self.faults();
        let renew = {
            let mut status = self.status();
            status.boots += 1;
            status.boots > 1 && faults.host_key_changes_on_reboot
        };
        if renew {
            self.renew_host_key();
        }
        let boot_time = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_secs());
        let (address, release, compat_version, boot_id) = {
            let mut status = self.status();
            status.boot_id = uuid::Uuid::new_v4().to_string();
            let address = if status.on_alternate {
                self.alternate
            } else {
                self.address
            };
            (
                address,
                status.release.clone(),
                status.compat_version.clone(),
                status.boot_id.clone(),
            )
        };
        self.paths.prepare_boot(&Boot {
            board: self.board,
            release: &release,
            compat_version: &compat_version,
            memory: &self.memory,
            services: &self.services,
            boot_id: &boot_id,
            boot_time,
        })?;
        self.paths.write_faults(&faults)?;

        let use_relay = faults.need_relay();
        let port = if use_relay {
            RELAY_BACKEND_PORT
        } else {
            SSH_PORT
        };
        let console_path = self.paths.state.join("console.log");
        let console = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&console_path)
            .map_err(LabError::io("open", &console_path))?;
        let console_err = console
            .try_clone()
            .map_err(LabError::io("open", &console_path))?;
        let mut child = Process::new(BWRAP.path)
            .args(self.sandbox_arguments(address, port))
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("HOME", "/root")
            .stdin(Stdio::null())
            .stdout(console)
            .stderr(console_err)
            .kill_on_drop(true)
            .spawn()
            .map_err(LabError::io("run", Path::new(BWRAP.path)))?;
        self.status().bwrap_pid = child.id();

        let started = Instant::now();
        loop {
            if let Ok(Some(exit)) = child.try_wait() {
                self.status().bwrap_pid = None;
                return Err(self.did_not_start(&format!("the sandbox ended ({exit})")));
            }
            if TcpStream::connect((address, port)).await.is_ok() {
                break;
            }
            if started.elapsed() > BOOT_TIMEOUT {
                let _ = child.kill().await;
                self.status().bwrap_pid = None;
                return Err(self.did_not_start("it did not listen in time"));
            }
            tokio::time::sleep(BOOT_POLL).await;
        }

        let relay = if use_relay {
            let front = SocketAddrV4::new(address, SSH_PORT);
            let listener = match TcpListener::bind(front).await {
                Ok(listener) => listener,
                Err(error) => {
                    let _ = child.kill().await;
                    self.status().bwrap_pid = None;
                    return Err(self.did_not_start(&format!("its relay could not listen: {error}")));
                }
            };
            let back = SocketAddr::V4(SocketAddrV4::new(address, port));
            Some(tokio::spawn(relay::run(
                listener,
                back,
                self.faults.clone(),
            )))
        } else {
            None
        };

        self.status().listening_on = Some(address);
        self.up.send_replace(true);
        tracing::info!(
            device = %self.name,
            %address,
            release = %release.os_identifier(),
            relay = use_relay,
            "device is up"
        );
        Ok(Running {
            child,
            relay,
            address,
            port,
        })
    }

    /// Returns the bubblewrap arguments of one boot.
    fn sandbox_arguments(&self, address: Ipv4Addr, port: u16) -> Vec<String> {
        let path = |path: &Path| path.display().to_string();
        let state = &self.paths.state;
        let mut args: Vec<String> = [
            "--unshare-pid",
            "--unshare-uts",
            "--unshare-ipc",
            "--unshare-cgroup-try",
            "--hostname",
            "OpenWrt",
            "--die-with-parent",
            "--new-session",
            "--cap-drop",
            "ALL",
        ]
        .iter()
        .map(|arg| arg.to_string())
        .collect();
        for capability in CAPABILITIES {
            args.extend(["--cap-add".to_string(), capability.to_string()]);
        }
        for top in TOP_DIRECTORIES {
            args.extend([
                "--ro-bind".to_string(),
                path(&self.base.join(top)),
                format!("/{top}"),
            ]);
        }
        let binds = [
            ("--bind", path(&self.paths.etc), "/etc"),
            ("--bind", path(&self.paths.home), "/root"),
            ("--bind", path(&self.paths.tmp), "/tmp"),
            ("--bind", path(state), "/lab/state"),
        ];
        for (kind, from, to) in binds {
            args.extend([kind.to_string(), from, to.to_string()]);
        }
        args.extend(
            [
                "--symlink",
                "/tmp",
                "/var",
                "--proc",
                "/proc",
                "--dev",
                "/dev",
            ]
            .map(String::from),
        );
        let overlays = [
            ("--bind", "meminfo", "/proc/meminfo"),
            ("--ro-bind", "boot_id", "/proc/sys/kernel/random/boot_id"),
            ("--bind", "drop_caches", "/proc/sys/vm/drop_caches"),
        ];
        for (kind, file, to) in overlays {
            args.extend([kind.to_string(), path(&state.join(file)), to.to_string()]);
        }
        args.extend(
            [
                "--remount-ro",
                "/",
                "--chdir",
                "/root",
                "/bin/sh",
                "/lib/lab/init",
            ]
            .map(String::from),
        );
        args.extend([
            "-F".to_string(),
            "-E".to_string(),
            "-p".to_string(),
            format!("{address}:{port}"),
            "-r".to_string(),
            "/lab/state/dropbear_ed25519_host_key".to_string(),
            "-P".to_string(),
            "/var/run/dropbear.1.pid".to_string(),
        ]);
        if self.password_hash.is_none() {
            // No password: only keys may log in.
            args.push("-s".to_string());
        }
        args
    }

    /// Returns the error of a boot that failed, with the console's tail.
    fn did_not_start(&self, why: &str) -> LabError {
        let console =
            std::fs::read_to_string(self.paths.state.join("console.log")).unwrap_or_default();
        let tail: Vec<&str> = console.lines().rev().take(5).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        LabError::DeviceDidNotStart {
            device: self.name.clone(),
            detail: format!("{why}; console: {}", tail.join(" | ")),
        }
    }

    /// Ends a boot: the sandbox, the relay, the listening port.
    async fn shut_down(&self, running: &mut Running) {
        self.up.send_replace(false);
        {
            let mut status = self.status();
            status.listening_on = None;
            status.bwrap_pid = None;
        }
        if let Some(relay) = running.relay.take() {
            relay.abort();
            let _ = relay.await;
        }
        let _ = running.child.start_kill();
        let _ = running.child.wait().await;
        // The sandbox's last processes die just after bubblewrap; the next
        // boot needs the port free.
        let started = Instant::now();
        while started.elapsed() < CLOSE_TIMEOUT
            && TcpStream::connect((running.address, running.port))
                .await
                .is_ok()
        {
            tokio::time::sleep(BOOT_POLL).await;
        }
    }

    /// Carries out a flash the device asked for; tells whether the device
    /// must then stay down (the `never_returns` fault).
    fn apply_flash(&self, request: FlashRequest) -> bool {
        let faults = self.faults();
        let mut status = self.status();
        status.flash_count += 1;
        status.on_alternate = faults.returns_on_alternate_address;
        if faults.returns_with_old_firmware {
            tracing::info!(device = %self.name, "flash did not take, as the fault asked");
            return faults.never_returns;
        }
        match request.release {
            Some(release) => {
                status.release = release;
                if let Some(compat_version) = request.compat_version {
                    status.compat_version = compat_version;
                }
            }
            None => {
                // FIXME: an image without metadata (flashed with -F) says
                // nothing of its release, so the device comes back reporting
                // version and revision "unknown"; a test cannot make it
                // return as a particular legacy release.
                status.release = Release {
                    dist: "OpenWrt".to_string(),
                    version: "unknown".to_string(),
                    revision: "unknown".to_string(),
                    target: status.release.target.clone(),
                };
            }
        }
        drop(status);
        if !request.keep_config {
            let reset = self.paths.write_defaults(
                self.password_hash.as_deref(),
                &self.authorized_keys,
                &self.services,
            );
            if let Err(error) = reset {
                tracing::warn!(device = %self.name, %error, "could not reset the configuration");
            }
        }
        tracing::info!(device = %self.name, keep_config = request.keep_config, "device flashed");
        faults.never_returns
    }
}

/// Runs a device until it is stopped or its handles are all gone.
async fn supervise(
    inner: Arc<Inner>,
    mut commands: mpsc::UnboundedReceiver<Command>,
    boots: Arc<Semaphore>,
    first_boot: oneshot::Sender<Result<(), LabError>>,
) {
    let mut first_boot = Some(first_boot);
    let mut waiting: Vec<oneshot::Sender<()>> = Vec::new();
    let mut powered = true;
    loop {
        if !powered {
            match commands.recv().await {
                Some(Command::PowerOn(ack)) => {
                    powered = true;
                    waiting.push(ack);
                }
                Some(Command::PowerOff(ack)) => {
                    let _ = ack.send(());
                }
                Some(Command::ChangeHostKey(ack)) => {
                    inner.renew_host_key();
                    let _ = ack.send(());
                }
                Some(Command::Stop(ack)) => {
                    let _ = ack.send(());
                    return;
                }
                None => return,
            }
            continue;
        }

        let booted = if first_boot.is_some() {
            let _permit = boots.acquire().await;
            inner.boot().await
        } else {
            inner.boot().await
        };
        let mut running = match booted {
            Ok(running) => running,
            Err(error) => {
                tracing::warn!(device = %inner.name, %error, "device did not boot");
                if let Some(first_boot) = first_boot.take() {
                    let _ = first_boot.send(Err(error));
                    return;
                }
                powered = false;
                for ack in waiting.drain(..) {
                    let _ = ack.send(());
                }
                continue;
            }
        };
        if let Some(first_boot) = first_boot.take() {
            let _ = first_boot.send(Ok(()));
        }
        for ack in waiting.drain(..) {
            let _ = ack.send(());
        }

        let ended = loop {
            tokio::select! {
                _ = running.child.wait() => break Ended::Exited,
                command = commands.recv() => match command {
                    Some(Command::PowerOn(ack)) => {
                        let _ = ack.send(());
                    }
                    Some(command) => break Ended::Command(command),
                    None => break Ended::Abandoned,
                },
            }
        };
        inner.shut_down(&mut running).await;

        match ended {
            Ended::Exited => {
                let mut stay_down = match inner.paths.take_flash_request() {
                    Some(request) => inner.apply_flash(request),
                    None => {
                        tracing::info!(device = %inner.name, "device rebooted");
                        false
                    }
                };
                let reboot = tokio::time::sleep(inner.reboot_time);
                tokio::pin!(reboot);
                loop {
                    tokio::select! {
                        _ = &mut reboot => break,
                        command = commands.recv() => match command {
                            Some(Command::PowerOn(ack)) => {
                                stay_down = false;
                                waiting.push(ack);
                            }
                            Some(Command::PowerOff(ack)) => {
                                stay_down = true;
                                let _ = ack.send(());
                                break;
                            }
                            Some(Command::ChangeHostKey(ack)) => {
                                inner.renew_host_key();
                                let _ = ack.send(());
                            }
                            Some(Command::Stop(ack)) => {
                                let _ = ack.send(());
                                return;
                            }
                            None => return,
                        },
                    }
                }
                if stay_down {
                    tracing::info!(device = %inner.name, "device stays down");
                    powered = false;
                    for ack in waiting.drain(..) {
                        let _ = ack.send(());
                    }
                }
            }
            Ended::Command(Command::PowerOff(ack)) => {
                tracing::info!(device = %inner.name, "device powered off");
                powered = false;
                let _ = ack.send(());
            }
            Ended::Command(Command::ChangeHostKey(ack)) => {
                inner.renew_host_key();
                waiting.push(ack);
            }
            Ended::Command(Command::Stop(ack)) => {
                let _ = ack.send(());
                return;
            }
            Ended::Command(Command::PowerOn(ack)) => {
                let _ = ack.send(());
            }
            Ended::Abandoned => return,
        }
    }
}
