//! An open SSH session: running commands and streaming files on session
//! channels.
//!
//! Each command gets its own channel. A device that disappears ends the
//! russh session (through keepalives or a closed socket), which closes every
//! channel; the output read so far is kept and the end says what happened.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use russh::client::{Handle, Msg};
use russh::{Channel, ChannelMsg, ChannelReadHalf, Disconnect};
use tokio::io::{AsyncRead, AsyncReadExt};
use tracing::{debug, warn};

use super::HostKeyGuard;
use crate::transport::{CommandEnd, CommandOutput, Session, TransportError, UploadProgress};

/// How much of the image is read and handed to russh at a time: one
/// packet of Dropbear's largest size. Measured against Dropbear 2022.83 on
/// loopback, 32 KiB was as fast as or faster than 64 and 256 KiB (about
/// 0.26 s for 30 MiB, where OpenSSH's `ssh host 'cat > f'` takes 0.4 s).
const CHUNK: usize = 32 * 1024;

/// How much of the image is read from the source at a time. A
/// `tokio::fs::File` hands every read to the blocking thread pool; reading
/// one packet at a time cost a round trip there per 32 KiB, about a tenth
/// of the client's CPU time of an upload and a tenth of its speed against
/// OpenSSH (measured by `tests/bench`). Stored images are now read on the
/// uploading task itself (`image::StoredImage`), where 64 KiB uploads as
/// fast as 256 KiB did and each upload in flight holds less: the fleet's
/// peak memory went from 31.8 to 29.2 MiB.
const READ_AHEAD: usize = 64 * 1024;

/// The least time between two progress reports, so that a fast upload does
/// not flood the catalogue and the window with updates.
const PROGRESS_EVERY: Duration = Duration::from_millis(100);

/// How long closing a session may take before we stop waiting for the
/// device to acknowledge it.
const CLOSE_LIMIT: Duration = Duration::from_secs(2);

/// A logged-in russh session with one device.
pub(super) struct SshSession {
    handle: Handle<HostKeyGuard>,
    endpoint: String,
    stall_timeout: Duration,
}

impl SshSession {
    pub(super) fn new(
        handle: Handle<HostKeyGuard>,
        endpoint: String,
        stall_timeout: Duration,
    ) -> SshSession {
        SshSession {
            handle,
            endpoint,
            stall_timeout,
        }
    }

    /// Opens a channel and starts `command` on it.
    async fn start(&self, command: &str) -> Result<Channel<Msg>, TransportError> {
        let channel = self
            .handle
            .channel_open_session()
            .await
            .map_err(|e| self.error(format!("cannot open a channel: {e}")))?;
        channel
            .exec(true, command)
            .await
            .map_err(|e| self.error(format!("cannot start a command: {e}")))?;
        Ok(channel)
    }

    fn error(&self, reason: String) -> TransportError {
        TransportError::Session {
            endpoint: self.endpoint.clone(),
            reason,
        }
    }
}

#[async_trait]
impl Session for SshSession {
    async fn exec(
        &mut self,
        command: &str,
        timeout: Duration,
    ) -> Result<CommandOutput, TransportError> {
        debug!(endpoint = %self.endpoint, %command, "running a command");
        let channel = self.start(command).await?;
        let (mut reader, writer) = channel.split();
        // The command's standard input is closed at once, so that a command
        // that reads it (by mistake or by design) sees its end and cannot
        // wait forever.
        if let Err(e) = writer.eof().await {
            debug!(endpoint = %self.endpoint, error = %e, "could not close standard input");
        }

        let mut collected = Collected::default();
        let finished = tokio::time::timeout(timeout, collected.read_to_end(&mut reader)).await;
        if finished.is_err() {
            warn!(endpoint = %self.endpoint, %command, ?timeout, "command timed out");
            // Closing the channel makes Dropbear hang up on the command.
            let _ = writer.close().await;
            return Ok(collected.into_output(Some(CommandEnd::TimedOut)));
        }
        Ok(collected.into_output(None))
    }

    async fn upload(
        &mut self,
        command: &str,
        source: &mut (dyn AsyncRead + Unpin + Send),
        len: u64,
        progress: UploadProgress<'_>,
    ) -> Result<CommandOutput, TransportError> {
        debug!(endpoint = %self.endpoint, %command, len, "uploading");
        let started = Instant::now();
        let channel = self.start(command).await?;
        let (mut reader, writer) = channel.split();
        let mut collected = Collected::default();
        let mut sender = Sender {
            sent: 0,
            total: len,
            last_report: None,
        };

        // The device's output is read while we send: Dropbear stops reading
        // our data when its own output is not taken, and a command that ends
        // early (a full disk) must be seen at once, not after the last byte.
        let mut sent_all = false;
        let mut source = tokio::io::BufReader::with_capacity(READ_AHEAD, source);
        {
            let sending = sender.send(&writer, &mut source, progress, self.stall_timeout);
            tokio::pin!(sending);
            while !sent_all {
                tokio::select! {
                    result = &mut sending => {
                        match result {
                            Ok(()) => sent_all = true,
                            Err(SendFailure::Source(e)) => {
                                let _ = writer.close().await;
                                return Err(TransportError::LocalRead(e));
                            }
                            Err(SendFailure::Link) => break,
                        }
                    }
                    more = collected.read_one(&mut reader) => {
                        if !more {
                            break;
                        }
                    }
                }
            }
        }

        if !sent_all {
            // The command ended, or the link went away, before the last byte.
            if collected.status.is_some() {
                return Ok(collected.into_output(None));
            }
            return Err(self.interrupted(&sender));
        }

        if let Err(e) = writer.eof().await {
            debug!(endpoint = %self.endpoint, error = %e, "could not send end of file");
            return Err(self.interrupted(&sender));
        }
        let waited = tokio::time::timeout(self.stall_timeout, collected.read_to_end(&mut reader));
        if waited.await.is_err() {
            let _ = writer.close().await;
            return Ok(collected.into_output(Some(CommandEnd::TimedOut)));
        }
        let output = collected.into_output(None);
        if output.end == CommandEnd::Disconnected {
            return Err(self.interrupted(&sender));
        }
        let seconds = started.elapsed().as_secs_f64();
        debug!(
            endpoint = %self.endpoint,
            bytes = len,
            seconds,
            mib_per_second = len as f64 / 1_048_576.0 / seconds.max(f64::EPSILON),
            "upload finished"
        );
        Ok(output)
    }

    async fn close(self: Box<Self>) {
        let goodbye = self.handle.disconnect(Disconnect::ByApplication, "", "en");
        let _ = tokio::time::timeout(CLOSE_LIMIT, goodbye).await;
    }
}

impl SshSession {
    fn interrupted(&self, sender: &Sender) -> TransportError {
        warn!(
            endpoint = %self.endpoint,
            sent = sender.sent,
            total = sender.total,
            "upload interrupted"
        );
        TransportError::UploadInterrupted {
            endpoint: self.endpoint.clone(),
            sent: sender.sent,
            total: sender.total,
        }
    }
}

/// Why sending an upload stopped before its end.
enum SendFailure {
    /// The local source failed or ended early.
    Source(std::io::Error),
    /// The channel or the session went away, or the device stopped taking
    /// data for longer than the stall limit.
    Link,
}

/// The sending half of an upload, counting what it has handed to russh.
struct Sender {
    sent: u64,
    total: u64,
    last_report: Option<Instant>,
}

impl Sender {
    /// Streams `total` bytes from `source` into the channel, reporting
    /// progress. russh waits for the device's window, so this never sends
    /// more than the device has room for.
    ///
    /// Every window the device opens (Dropbear's is 24 KiB) passes from
    /// russh's session task to this one before more data leaves. The
    /// engine runs each operation on a thread of its own with a runtime of
    /// that one thread (`upgrade::run`), so the hop never leaves the
    /// thread: one upload alone reaches 1.09–1.14 × OpenSSH there, and
    /// 0.88–1.06 × on a runtime with a worker per core, where the two tasks
    /// wake each other across the cores (`bench --only upload`). The fleet
    /// did not move either way; its uploads were slow because a wave's
    /// uploads all started at once (`BENCHMARKS.md`).
    async fn send(
        &mut self,
        writer: &russh::ChannelWriteHalf<Msg>,
        source: &mut (dyn AsyncRead + Unpin + Send),
        progress: UploadProgress<'_>,
        stall_timeout: Duration,
    ) -> Result<(), SendFailure> {
        while self.sent < self.total {
            let want = (self.total - self.sent).min(CHUNK as u64) as usize;
            let mut chunk = vec![0; want];
            self.fill(source, &mut chunk)
                .await
                .map_err(SendFailure::Source)?;
            match tokio::time::timeout(stall_timeout, writer.data_bytes(chunk)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    debug!(error = %e, "channel refused upload data");
                    return Err(SendFailure::Link);
                }
                Err(_) => {
                    warn!(?stall_timeout, "device took no upload data in time");
                    return Err(SendFailure::Link);
                }
            }
            self.sent += want as u64;
            self.report(progress);
        }
        Ok(())
    }

    /// Reads exactly `chunk.len()` bytes; an image shorter than it said is
    /// an error that names how much of it there was.
    async fn fill(
        &self,
        source: &mut (dyn AsyncRead + Unpin + Send),
        chunk: &mut [u8],
    ) -> std::io::Result<()> {
        let mut filled = 0;
        while filled < chunk.len() {
            let read = source.read(&mut chunk[filled..]).await?;
            if read == 0 {
                let message = format!(
                    "the image ended after {} of the {} bytes expected",
                    self.sent + filled as u64,
                    self.total
                );
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    message,
                ));
            }
            filled += read;
        }
        Ok(())
    }

    fn report(&mut self, progress: UploadProgress<'_>) {
        let due = self
            .last_report
            .is_none_or(|at| at.elapsed() >= PROGRESS_EVERY);
        if due || self.sent == self.total {
            self.last_report = Some(Instant::now());
            progress(self.sent);
        }
    }
}

/// The most of each output stream a command keeps. Whatever a device
/// prints beyond it is read and dropped, so that a device printing without
/// end cannot fill our memory; every command we run prints far less.
const KEPT_OUTPUT: usize = 1 << 20;

/// Appends what fits under [`KEPT_OUTPUT`].
fn keep(buffer: &mut Vec<u8>, data: &[u8]) {
    let room = KEPT_OUTPUT.saturating_sub(buffer.len());
    buffer.extend_from_slice(&data[..data.len().min(room)]);
}

/// What a channel has delivered so far.
#[derive(Default)]
struct Collected {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    status: Option<u32>,
    signalled: bool,
    closed: bool,
    /// Set when the channel went away without the device closing it: the
    /// session dropped.
    dropped: bool,
}

impl Collected {
    /// Takes one message from the channel; false once nothing more can
    /// come.
    async fn read_one(&mut self, reader: &mut ChannelReadHalf) -> bool {
        match reader.wait().await {
            Some(ChannelMsg::Data { data }) => keep(&mut self.stdout, &data),
            // Extended data of type 1 is standard error; no other type is
            // defined.
            Some(ChannelMsg::ExtendedData { data, .. }) => keep(&mut self.stderr, &data),
            Some(ChannelMsg::ExitStatus { exit_status }) => self.status = Some(exit_status),
            Some(ChannelMsg::ExitSignal { .. }) => self.signalled = true,
            Some(ChannelMsg::Close) => {
                self.closed = true;
                return false;
            }
            Some(_) => {}
            None => {
                self.dropped = !self.closed;
                return false;
            }
        }
        true
    }

    /// Reads until the channel is closed or the session is gone.
    async fn read_to_end(&mut self, reader: &mut ChannelReadHalf) {
        while self.read_one(reader).await {}
    }

    /// The output, ending as `end` says or else as the channel did.
    fn into_output(self, end: Option<CommandEnd>) -> CommandOutput {
        let end = end.unwrap_or(match self.status {
            Some(status) => CommandEnd::Exited(status),
            None if self.dropped => CommandEnd::Disconnected,
            None => CommandEnd::NoStatus,
        });
        if self.signalled && self.status.is_none() {
            debug!("command was killed by a signal");
        }
        CommandOutput {
            stdout: self.stdout,
            stderr: self.stderr,
            end,
        }
    }
}

#[cfg(test)]
mod output_limit_tests {
    use super::{keep, KEPT_OUTPUT};

    #[test]
    fn output_beyond_the_limit_is_dropped() {
        let mut buffer = Vec::new();
        keep(&mut buffer, &vec![b'a'; KEPT_OUTPUT - 1]);
        keep(&mut buffer, b"bcd");
        keep(&mut buffer, b"e");
        assert_eq!(buffer.len(), KEPT_OUTPUT);
        assert_eq!(buffer.last(), Some(&b'b'));
    }
}
