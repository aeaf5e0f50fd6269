//! How the engine reaches a device: a [`Connector`] opens a [`Session`] on
//! which commands run and files stream.
//!
//! Upgraders depend on these traits, never on russh, so that other
//! transports can be added. [`ssh`] is the SSH implementation; host keys are
//! pinned as described in [`HostKeyCheck`].

use std::time::Duration;

use async_trait::async_trait;
use tokio::io::AsyncRead;

mod quote;
pub mod ssh;

pub use quote::quote;

/// Where a device listens and as whom we log in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
    pub user: String,
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}:{}", self.user, self.host, self.port)
    }
}

/// How we prove who we are. Secrets come from the vault just before a
/// connection and are never stored with the device.
#[derive(Clone)]
pub enum Auth {
    Password(String),
    KeyFile {
        path: std::path::PathBuf,
        passphrase: Option<String>,
    },
    /// Keys offered by the SSH agent at `SSH_AUTH_SOCK`.
    Agent,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Secrets never reach a log line, not even through Debug.
        match self {
            Auth::Password(_) => f.write_str("Password(..)"),
            Auth::KeyFile { path, .. } => write!(f, "KeyFile({})", path.display()),
            Auth::Agent => f.write_str("Agent"),
        }
    }
}

/// What to do with the key the server presents.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostKeyCheck {
    /// Only this key (OpenSSH public key text, `ssh-ed25519 AAAA...`) is
    /// accepted; any other is refused as changed.
    Pinned(String),
    /// No key is pinned yet and the user agreed to accept the one presented.
    AcceptNew,
    /// No key is pinned and the user did not agree: the connection is
    /// refused with the presented key's fingerprint, so it can be shown.
    RefuseUnknown,
}

/// Everything needed to open a session to one address of a device.
#[derive(Clone, Debug)]
pub struct Target {
    pub endpoint: Endpoint,
    pub auth: Auth,
    pub host_key: HostKeyCheck,
    pub connect_timeout: Duration,
}

/// A host key as the server presented it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostKey {
    /// OpenSSH public key text, what the catalogue pins.
    pub openssh: String,
    /// `SHA256:...` as OpenSSH prints it.
    pub fingerprint: String,
}

/// How a remote command ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommandEnd {
    /// The command exited with this status.
    Exited(u32),
    /// The command was killed by a signal, or ended without a status.
    NoStatus,
    /// The session went away while the command ran.
    Disconnected,
    /// The command ran past its time limit; the channel was closed.
    TimedOut,
}

/// What a remote command printed, and how it ended. The output is kept even
/// when the session dropped: an upgrader reads what came before the drop.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandOutput {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub end: CommandEnd,
}

impl CommandOutput {
    /// Whether the command exited with status 0.
    pub fn success(&self) -> bool {
        self.end == CommandEnd::Exited(0)
    }

    /// Standard output as text, invalid UTF-8 replaced.
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// Standard error as text, invalid UTF-8 replaced.
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

/// Why a connection or a transfer failed.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("cannot reach {endpoint}: {reason}")]
    Unreachable { endpoint: String, reason: String },
    #[error("{endpoint} did not answer within {seconds} s")]
    ConnectTimeout { endpoint: String, seconds: u64 },
    #[error("host key of {endpoint} is unknown ({fingerprint}); accept it explicitly to pin it")]
    HostKeyUnknown {
        endpoint: String,
        fingerprint: String,
        key: HostKey,
    },
    #[error(
        "host key of {endpoint} has changed: pinned {expected}, presented {presented}; \
         refusing to connect"
    )]
    HostKeyChanged {
        endpoint: String,
        expected: String,
        presented: String,
    },
    #[error("not an OpenSSH public key ({reason}): {key}")]
    InvalidPublicKey { key: String, reason: String },
    #[error("{endpoint} refused our credentials for user {user}")]
    AuthenticationFailed { endpoint: String, user: String },
    #[error("cannot use key file {path}: {reason}")]
    KeyFile { path: String, reason: String },
    #[error("cannot read the secret {entry} from the OS keyring: {reason}")]
    Credential { entry: String, reason: String },
    #[error("ssh agent: {0}")]
    Agent(String),
    #[error("connection to {endpoint} dropped after {sent} of {total} bytes")]
    UploadInterrupted {
        endpoint: String,
        sent: u64,
        total: u64,
    },
    #[error("reading the local image: {0}")]
    LocalRead(std::io::Error),
    #[error("ssh session with {endpoint}: {reason}")]
    Session { endpoint: String, reason: String },
}

/// Opens sessions. One connector serves every device of a run.
#[async_trait]
pub trait Connector: Send + Sync {
    /// Connects and authenticates, checking the host key as `target`
    /// says. Returns the session and the key the server presented.
    async fn connect(&self, target: &Target)
        -> Result<(Box<dyn Session>, HostKey), TransportError>;

    /// Whether `host:port` takes a TCP connection within `timeout`: a
    /// cheap look, without a handshake or a login, at whether a rebooting
    /// device is back. Connectors that cannot look say false.
    async fn accepts(&self, _host: &str, _port: u16, _timeout: Duration) -> bool {
        false
    }
}

/// Receives the count of bytes sent so far during an upload.
pub type UploadProgress<'a> = &'a mut (dyn FnMut(u64) + Send);

/// An authenticated session with one device.
#[async_trait]
pub trait Session: Send {
    /// Runs `command` through the device's shell and collects its output,
    /// for at most `timeout`. Only a failure to start the command is an
    /// error; a drop or a time-out while it runs is in the output's end.
    async fn exec(
        &mut self,
        command: &str,
        timeout: Duration,
    ) -> Result<CommandOutput, TransportError>;

    /// Runs `command` with `len` bytes from `source` on its standard input,
    /// reporting bytes sent as they go, then waits for the command to end.
    /// Works on devices without SFTP: `command` is usually `cat > FILE`.
    async fn upload(
        &mut self,
        command: &str,
        source: &mut (dyn AsyncRead + Unpin + Send),
        len: u64,
        progress: UploadProgress<'_>,
    ) -> Result<CommandOutput, TransportError>;

    /// Ends the session politely; errors are of no interest at that point.
    async fn close(self: Box<Self>);
}
