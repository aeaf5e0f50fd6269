//! SSH sessions through russh: the [`SshConnector`] that upgraders use to
//! reach OpenWrt devices, and the [`fingerprint`] of a host key as OpenSSH
//! prints it.
//!
//! Connecting checks the host key the way [`HostKeyCheck`] says before any
//! credential is sent, then logs in (see `auth`). Commands and uploads run
//! on session channels (see `session`). Keepalives make a device that went
//! away show up within seconds instead of hanging a run.

use std::borrow::Cow;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use russh::client;
use russh::keys::{HashAlg, PublicKey, PublicKeyOrCertificate};
use tokio::net::TcpStream;
use tracing::{debug, info};

use super::{Connector, HostKey, HostKeyCheck, Session, Target, TransportError};

mod auth;
mod session;

/// Opens SSH sessions with russh. One connector serves every device of a
/// run; it holds only tuning, never a secret.
#[derive(Clone, Debug)]
pub struct SshConnector {
    keepalive: Keepalive,
    stall_timeout: Duration,
}

/// How often a silent device is asked whether it is still there, and how
/// many unanswered questions mean that it is gone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Keepalive {
    pub interval: Duration,
    pub max_unanswered: usize,
}

impl Default for Keepalive {
    /// Two seconds, three times: a vanished device is noticed within about
    /// eight seconds, which is short next to any upgrade stage yet long
    /// enough for a busy router that is writing flash to answer.
    fn default() -> Self {
        Keepalive {
            interval: Duration::from_secs(2),
            max_unanswered: 3,
        }
    }
}

impl Default for SshConnector {
    fn default() -> Self {
        SshConnector::new()
    }
}

impl SshConnector {
    /// A connector with the default keepalive and a 30 s stall limit.
    pub fn new() -> SshConnector {
        SshConnector {
            keepalive: Keepalive::default(),
            stall_timeout: Duration::from_secs(30),
        }
    }

    /// Uses `keepalive` to notice a device that stopped answering.
    pub fn with_keepalive(mut self, keepalive: Keepalive) -> SshConnector {
        self.keepalive = keepalive;
        self
    }

    /// Gives up an upload when the device accepts no byte for `timeout`,
    /// while it still answers keepalives (a link that is up but stuck).
    pub fn with_stall_timeout(mut self, timeout: Duration) -> SshConnector {
        self.stall_timeout = timeout;
        self
    }

    /// The russh configuration every session of this connector uses.
    fn config(&self) -> client::Config {
        client::Config {
            keepalive_interval: Some(self.keepalive.interval),
            keepalive_max: self.keepalive.max_unanswered,
            // Keepalives decide when a device is gone; an inactivity limit
            // would also end a healthy session that waits between stages.
            inactivity_timeout: None,
            nodelay: true,
            preferred: russh::Preferred {
                // Dropbear offers chacha20-poly1305 and AES-CTR; measured
                // against Dropbear 2022.83, chacha20 uploads fastest, and it
                // needs no separate MAC. GCM comes next for other servers.
                cipher: Cow::Borrowed(&[
                    russh::cipher::CHACHA20_POLY1305,
                    russh::cipher::AES_256_GCM,
                    russh::cipher::AES_128_GCM,
                    russh::cipher::AES_128_CTR,
                    russh::cipher::AES_256_CTR,
                ]),
                // Images are already compressed: zlib would only cost CPU on
                // both ends, and routers have little of it.
                compression: Cow::Borrowed(&[russh::compression::NONE]),
                ..russh::Preferred::default()
            },
            ..client::Config::default()
        }
    }

    /// Connects, checks the host key and logs in, without a time limit;
    /// [`Connector::connect`] bounds it.
    async fn open(
        &self,
        target: &Target,
        endpoint: &str,
    ) -> Result<(session::SshSession, HostKey), TransportError> {
        let pinned = match &target.host_key {
            HostKeyCheck::Pinned(text) => Some(parse_public_key(text)?),
            HostKeyCheck::AcceptNew | HostKeyCheck::RefuseUnknown => None,
        };
        let seen = Arc::new(Mutex::new(None));
        let handler = HostKeyGuard {
            check: target.host_key.clone(),
            pinned,
            seen: Arc::clone(&seen),
        };

        let address = (target.endpoint.host.as_str(), target.endpoint.port);
        let stream =
            TcpStream::connect(address)
                .await
                .map_err(|e| TransportError::Unreachable {
                    endpoint: endpoint.to_owned(),
                    reason: e.to_string(),
                })?;
        let config = Arc::new(self.config());
        let handshake = client::connect_stream(config, stream, handler).await;
        // The guard has recorded what it saw whether or not it accepted.
        let seen = seen.lock().map(|mut s| s.take()).unwrap_or(None);
        let (mut handle, key) = match (handshake, seen) {
            (Ok(handle), Some(seen)) if seen.verdict == Verdict::Accepted => (handle, seen.key),
            // A refused key ends the handshake with russh's generic error;
            // what the guard saw says which key and why.
            (_, Some(seen)) if seen.verdict != Verdict::Accepted => {
                return Err(seen.refusal(endpoint))
            }
            (Ok(_), _) => {
                return Err(TransportError::Session {
                    endpoint: endpoint.to_owned(),
                    reason: "the server presented no host key".to_owned(),
                })
            }
            (Err(e), _) => {
                return Err(TransportError::Unreachable {
                    endpoint: endpoint.to_owned(),
                    reason: format!("ssh handshake failed: {e}"),
                })
            }
        };

        auth::authenticate(&mut handle, target, endpoint).await?;
        let session = session::SshSession::new(handle, endpoint.to_owned(), self.stall_timeout);
        Ok((session, key))
    }
}

#[async_trait]
impl Connector for SshConnector {
    async fn connect(
        &self,
        target: &Target,
    ) -> Result<(Box<dyn Session>, HostKey), TransportError> {
        let endpoint = target.endpoint.to_string();
        debug!(%endpoint, auth = ?target.auth, "connecting over ssh");
        let opened = tokio::time::timeout(target.connect_timeout, self.open(target, &endpoint))
            .await
            .map_err(|_| TransportError::ConnectTimeout {
                endpoint: endpoint.clone(),
                seconds: target.connect_timeout.as_secs(),
            })?;
        let (session, key) = opened?;
        info!(%endpoint, fingerprint = %key.fingerprint, "ssh session open");
        Ok((Box::new(session), key))
    }

    async fn accepts(&self, host: &str, port: u16, timeout: Duration) -> bool {
        matches!(
            tokio::time::timeout(timeout, TcpStream::connect((host, port))).await,
            Ok(Ok(_))
        )
    }
}

/// Returns the `SHA256:...` fingerprint of an OpenSSH public key text
/// (`ssh-ed25519 AAAA... comment`), as `ssh-keygen -l` prints it.
pub fn fingerprint(openssh: &str) -> Result<String, TransportError> {
    Ok(sha256_fingerprint(&parse_public_key(openssh)?))
}

/// Parses OpenSSH public key text, saying which text was not a key.
fn parse_public_key(openssh: &str) -> Result<PublicKey, TransportError> {
    PublicKey::from_openssh(openssh.trim()).map_err(|e| TransportError::InvalidPublicKey {
        key: openssh.to_owned(),
        reason: e.to_string(),
    })
}

fn sha256_fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

/// The key as the catalogue pins it: algorithm and base64, no comment, so
/// that the same key always gives the same text.
fn host_key(key: &PublicKey) -> HostKey {
    let mut bare = key.clone();
    bare.set_comment("");
    let openssh = bare
        .to_openssh()
        .map(|text| text.trim_end().to_owned())
        // Encoding a key that was just decoded from the wire cannot fail;
        // the fingerprint still identifies it should it ever happen.
        .unwrap_or_default();
    HostKey {
        openssh,
        fingerprint: sha256_fingerprint(key),
    }
}

/// What the handshake decided about the server's host key.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Accepted,
    Unknown,
    Changed {
        expected: String,
    },
    /// The server proved itself with a certificate, which we never asked for.
    Certificate,
}

/// The host key a server presented and what we made of it.
#[derive(Debug)]
struct Seen {
    key: HostKey,
    verdict: Verdict,
}

impl Seen {
    /// The error that tells the user why this key stopped the connection.
    fn refusal(self, endpoint: &str) -> TransportError {
        let endpoint = endpoint.to_owned();
        match self.verdict {
            Verdict::Unknown => TransportError::HostKeyUnknown {
                endpoint,
                fingerprint: self.key.fingerprint.clone(),
                key: self.key,
            },
            Verdict::Changed { expected } => TransportError::HostKeyChanged {
                endpoint,
                expected,
                presented: self.key.fingerprint,
            },
            Verdict::Certificate => TransportError::Session {
                endpoint,
                reason: "the server presented a host certificate; only plain host keys are \
                         supported"
                    .to_owned(),
            },
            // Not a refusal; `open` never asks, but the match must be whole.
            Verdict::Accepted => TransportError::Session {
                endpoint,
                reason: "the host key was accepted".to_owned(),
            },
        }
    }
}

/// The russh client handler: it judges the host key and records what it saw
/// so that a refusal can name the key.
struct HostKeyGuard {
    check: HostKeyCheck,
    /// The pinned key, parsed before connecting so that a damaged pin is
    /// reported as such rather than as a changed key.
    pinned: Option<PublicKey>,
    seen: Arc<Mutex<Option<Seen>>>,
}

impl HostKeyGuard {
    fn judge(&self, presented: &PublicKey) -> Verdict {
        match (&self.check, &self.pinned) {
            (HostKeyCheck::Pinned(_), Some(pinned)) => {
                if pinned.key_data() == presented.key_data() {
                    Verdict::Accepted
                } else {
                    Verdict::Changed {
                        expected: sha256_fingerprint(pinned),
                    }
                }
            }
            // `open` always parses a pin; refusing keeps a mistake safe.
            (HostKeyCheck::Pinned(_), None) => Verdict::Unknown,
            (HostKeyCheck::AcceptNew, _) => Verdict::Accepted,
            (HostKeyCheck::RefuseUnknown, _) => Verdict::Unknown,
        }
    }
}

impl client::Handler for HostKeyGuard {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        server_public_key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let seen = match server_public_key {
            PublicKeyOrCertificate::PublicKey { key, .. } => Seen {
                key: host_key(key),
                verdict: self.judge(key),
            },
            PublicKeyOrCertificate::Certificate(cert) => {
                let key = PublicKey::from(cert.public_key().clone());
                Seen {
                    key: host_key(&key),
                    verdict: Verdict::Certificate,
                }
            }
        };
        debug!(fingerprint = %seen.key.fingerprint, verdict = ?seen.verdict, "host key checked");
        let accepted = seen.verdict == Verdict::Accepted;
        if let Ok(mut slot) = self.seen.lock() {
            *slot = Some(seen);
        }
        Ok(accepted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "ssh-ed25519 \
        AAAAC3NzaC1lZDI1NTE5AAAAIPqMCaYZfVtWKv0y5GI2TJ4ib3eTSfIGZ7gJNGMMJFOq";
    // What `ssh-keygen -lf` prints for KEY.
    const KEY_FINGERPRINT: &str = "SHA256:zty//TjMXx5nmF1lx5iaifiz+7syk5awj35ySa3vb2Y";

    #[test]
    fn fingerprint_ignores_comment_and_whitespace() {
        let plain = fingerprint(KEY).unwrap();
        let commented = fingerprint(&format!("  {KEY} root@vm\n")).unwrap();
        assert_eq!(plain, KEY_FINGERPRINT);
        assert_eq!(commented, KEY_FINGERPRINT);
    }

    #[test]
    fn fingerprint_rejects_text_that_is_no_key() {
        let err = fingerprint("ssh-ed25519 not-base64").unwrap_err();
        assert!(
            matches!(err, TransportError::InvalidPublicKey { .. }),
            "{err}"
        );
    }

    #[test]
    fn host_key_text_has_no_comment() {
        let key = parse_public_key(&format!("{KEY} someone@somewhere")).unwrap();
        assert_eq!(host_key(&key).openssh, KEY);
        assert_eq!(host_key(&key).fingerprint, KEY_FINGERPRINT);
    }

    #[test]
    fn pinned_key_is_compared_by_key_not_by_text() {
        let guard = HostKeyGuard {
            check: HostKeyCheck::Pinned(format!("{KEY} a comment")),
            pinned: Some(parse_public_key(&format!("{KEY} a comment")).unwrap()),
            seen: Arc::default(),
        };
        let presented = parse_public_key(KEY).unwrap();
        assert_eq!(guard.judge(&presented), Verdict::Accepted);
    }
}
