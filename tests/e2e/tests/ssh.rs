//! The SSH transport against lab devices: logging in every way a device
//! allows, the host key checks, commands, uploads, and the faults a real
//! link has (a cut mid-upload, a device switched off, a server that never
//! answers).
//!
//! Every test starts its own lab in a temporary directory, so the tests run
//! in parallel without sharing a device. Every value put into a remote
//! command goes through `quote`, as the engine's upgraders do.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fwu_engine::transport::ssh::{fingerprint, SshConnector};
use fwu_engine::transport::{
    quote, Auth, CommandEnd, Connector, Endpoint, HostKey, HostKeyCheck, Session, Target,
    TransportError,
};
use fwu_lab::{Device, DeviceSpec, Faults, Lab};
use tempfile::TempDir;

/// Long enough for a loaded two-core machine, short enough that a hang
/// fails the test instead of the whole run.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);
const COMMAND_TIMEOUT: Duration = Duration::from_secs(20);

/// A running lab of one device and the directory that holds it; the lab
/// stops when this is dropped.
struct OneDevice {
    lab: Lab,
    dir: TempDir,
}

impl OneDevice {
    async fn start(spec: DeviceSpec) -> OneDevice {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let lab = Lab::start(&dir.path().join("lab"), vec![spec])
            .await
            .expect("the lab starts");
        OneDevice { lab, dir }
    }

    async fn archer() -> OneDevice {
        OneDevice::start(archer_spec()).await
    }

    fn device(&self) -> &Device {
        &self.lab.devices()[0]
    }

    /// A file in the test's own directory, outside the lab's.
    fn scratch(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Connects with the lab's password and the device's current key
    /// pinned.
    async fn session(&self) -> Box<dyn Session> {
        let device = self.device();
        let target = target(
            device,
            password(device),
            HostKeyCheck::Pinned(device.host_key()),
        );
        let (session, _) = SshConnector::new().connect(&target).await.expect("login");
        session
    }
}

fn archer_spec() -> DeviceSpec {
    DeviceSpec::new("ap1", "tplink,archer-c7-v5", "23.05.3")
}

fn target(device: &Device, auth: Auth, host_key: HostKeyCheck) -> Target {
    Target {
        endpoint: Endpoint {
            host: device.address().to_string(),
            port: device.port(),
            user: device.user().to_string(),
        },
        auth,
        host_key,
        connect_timeout: CONNECT_TIMEOUT,
    }
}

fn password(device: &Device) -> Auth {
    Auth::Password(
        device
            .password()
            .expect("the lab allows passwords")
            .to_string(),
    )
}

async fn connect_err(target: &Target) -> TransportError {
    match SshConnector::new().connect(target).await {
        Ok(_) => panic!("connecting to {} should have failed", target.endpoint),
        Err(error) => error,
    }
}

/// The fingerprint as OpenSSH's own `ssh-keygen -l` prints it, so that ours
/// is checked against the reference rather than against itself.
fn openssh_fingerprint(dir: &Path, openssh: &str) -> String {
    let file = dir.join("fingerprint.pub");
    std::fs::write(&file, format!("{openssh}\n")).expect("write a public key");
    let listed = Command::new("ssh-keygen")
        .arg("-lf")
        .arg(&file)
        .output()
        .expect("ssh-keygen");
    assert!(listed.status.success(), "ssh-keygen -l failed");
    let text = String::from_utf8(listed.stdout).expect("utf-8");
    text.split_whitespace()
        .nth(1)
        .expect("a fingerprint field")
        .to_string()
}

/// Makes an ed25519 key pair with `ssh-keygen`; returns the private key's
/// path and the public key line.
fn make_key(dir: &Path, name: &str, passphrase: &str) -> (PathBuf, String) {
    let path = dir.join(name);
    let made = Command::new("ssh-keygen")
        .args([
            "-q", "-t", "ed25519", "-C", "fwu-test", "-N", passphrase, "-f",
        ])
        .arg(&path)
        .status()
        .expect("ssh-keygen");
    assert!(made.success(), "ssh-keygen could not make a key");
    let public = std::fs::read_to_string(path.with_extension("pub")).expect("public key");
    (path, public.trim().to_string())
}

/// Deterministic bytes that do not compress or repeat within an upload.
fn image_bytes(len: usize) -> Vec<u8> {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

fn local_sha256(path: &Path) -> String {
    let out = Command::new("sha256sum")
        .arg(path)
        .output()
        .expect("sha256sum");
    assert!(out.status.success(), "sha256sum failed");
    String::from_utf8(out.stdout).expect("utf-8")[..64].to_string()
}

/// An `ssh-agent` of the test's own, ended when dropped, whatever the test
/// did.
struct SshAgent {
    child: std::process::Child,
    socket: PathBuf,
}

impl SshAgent {
    /// Starts the agent and returns once it accepts connections on `socket`.
    async fn start(socket: &Path) -> SshAgent {
        // No inherited output: a stray agent must not hold the test
        // harness's pipes open.
        let child = Command::new("ssh-agent")
            .arg("-D")
            .arg("-a")
            .arg(socket)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("ssh-agent");
        let agent = SshAgent {
            child,
            socket: socket.to_path_buf(),
        };
        // The socket file appears before the agent listens on it.
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::os::unix::net::UnixStream::connect(socket).is_err() {
            assert!(Instant::now() < deadline, "ssh-agent did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        agent
    }
}

impl Drop for SshAgent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn password_login_returns_the_presented_host_key() {
    let lab = OneDevice::archer().await;
    let device = lab.device();

    let target = target(device, password(device), HostKeyCheck::AcceptNew);
    let (session, key) = SshConnector::new().connect(&target).await.expect("login");
    session.close().await;

    let presented = device.host_key();
    let expected_text: Vec<&str> = presented.split_whitespace().take(2).collect();
    assert_eq!(key.openssh, expected_text.join(" "));
    assert_eq!(
        key.fingerprint,
        openssh_fingerprint(lab.dir.path(), &device.host_key())
    );
    assert_eq!(fingerprint(&device.host_key()).unwrap(), key.fingerprint);
}

#[tokio::test]
async fn key_file_login_with_and_without_passphrase() {
    let dir = tempfile::tempdir().unwrap();
    let (plain, plain_public) = make_key(dir.path(), "plain", "");
    let (locked, locked_public) = make_key(dir.path(), "locked", "correct horse");
    let mut spec = archer_spec();
    spec.password = None;
    spec.authorized_keys = vec![plain_public, locked_public];
    let lab = OneDevice::start(spec).await;
    let device = lab.device();
    let pinned = HostKeyCheck::Pinned(device.host_key());

    for (path, passphrase) in [(&plain, None), (&locked, Some("correct horse"))] {
        let auth = Auth::KeyFile {
            path: path.clone(),
            passphrase: passphrase.map(str::to_string),
        };
        let (mut session, _) = SshConnector::new()
            .connect(&target(device, auth, pinned.clone()))
            .await
            .unwrap_or_else(|e| panic!("login with {}: {e}", path.display()));
        let whoami = session.exec("id -u", COMMAND_TIMEOUT).await.unwrap();
        assert_eq!(whoami.stdout_text().trim(), "0");
        session.close().await;
    }

    let wrong = Auth::KeyFile {
        path: locked.clone(),
        passphrase: Some("wrong".to_string()),
    };
    let error = connect_err(&target(device, wrong, pinned.clone())).await;
    assert!(matches!(error, TransportError::KeyFile { .. }), "{error}");

    let missing = Auth::KeyFile {
        path: locked,
        passphrase: None,
    };
    let error = connect_err(&target(device, missing, pinned)).await;
    assert!(error.to_string().contains("no passphrase"), "{error}");
}

#[tokio::test]
async fn key_not_authorized_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (stranger, _) = make_key(dir.path(), "stranger", "");
    let lab = OneDevice::archer().await;
    let device = lab.device();

    let auth = Auth::KeyFile {
        path: stranger,
        passphrase: None,
    };
    let error = connect_err(&target(
        device,
        auth,
        HostKeyCheck::Pinned(device.host_key()),
    ))
    .await;
    assert!(
        matches!(error, TransportError::AuthenticationFailed { .. }),
        "{error}"
    );
}

#[tokio::test]
async fn agent_login_tries_each_identity() {
    let dir = tempfile::tempdir().unwrap();
    let (stranger, _) = make_key(dir.path(), "stranger", "");
    let (admin, admin_public) = make_key(dir.path(), "admin", "");
    let mut spec = archer_spec();
    spec.password = None;
    spec.authorized_keys = vec![admin_public];
    let lab = OneDevice::start(spec).await;
    let device = lab.device();

    let agent = SshAgent::start(&dir.path().join("agent.sock")).await;
    let socket = agent.socket.clone();
    // The key the device does not know goes first, so that the login has to
    // move on to the next identity.
    for key in [&stranger, &admin] {
        let added = Command::new("ssh-add")
            .arg("-q")
            .arg(key)
            .env("SSH_AUTH_SOCK", &socket)
            .status()
            .expect("ssh-add");
        assert!(added.success(), "ssh-add {}", key.display());
    }
    // Only this test in this binary reads the variable.
    std::env::set_var("SSH_AUTH_SOCK", &socket);

    let pinned = HostKeyCheck::Pinned(device.host_key());
    let (mut session, _) = SshConnector::new()
        .connect(&target(device, Auth::Agent, pinned))
        .await
        .expect("login with the agent's second key");
    assert!(session
        .exec("true", COMMAND_TIMEOUT)
        .await
        .unwrap()
        .success());
    session.close().await;
}

#[tokio::test]
async fn wrong_password_is_refused() {
    let lab = OneDevice::archer().await;
    let device = lab.device();

    let auth = Auth::Password("not the password".to_string());
    let error = connect_err(&target(
        device,
        auth,
        HostKeyCheck::Pinned(device.host_key()),
    ))
    .await;
    match error {
        TransportError::AuthenticationFailed { endpoint, user } => {
            assert_eq!(user, "root");
            assert!(
                endpoint.contains(&device.address().to_string()),
                "{endpoint}"
            );
        }
        other => panic!("expected a refused login, got: {other}"),
    }
}

#[tokio::test]
async fn unknown_host_key_is_refused_with_its_fingerprint() {
    let lab = OneDevice::archer().await;
    let device = lab.device();

    let error = connect_err(&target(
        device,
        password(device),
        HostKeyCheck::RefuseUnknown,
    ))
    .await;
    let expected = openssh_fingerprint(lab.dir.path(), &device.host_key());
    match &error {
        TransportError::HostKeyUnknown {
            fingerprint,
            key:
                HostKey {
                    openssh,
                    fingerprint: key_fingerprint,
                },
            ..
        } => {
            assert_eq!(fingerprint, &expected);
            assert_eq!(key_fingerprint, &expected);
            assert!(device.host_key().starts_with(openssh.as_str()), "{openssh}");
        }
        other => panic!("expected an unknown host key, got: {other}"),
    }
    assert!(error.to_string().contains(&expected), "{error}");
}

#[tokio::test]
async fn pinned_key_connects_and_a_changed_key_is_refused() {
    let lab = OneDevice::archer().await;
    let device = lab.device();
    let old_key = device.host_key();
    let old_fingerprint = openssh_fingerprint(lab.dir.path(), &old_key);

    let pinned = target(
        device,
        password(device),
        HostKeyCheck::Pinned(old_key.clone()),
    );
    let (session, key) = SshConnector::new()
        .connect(&pinned)
        .await
        .expect("pinned login");
    session.close().await;
    assert_eq!(key.fingerprint, old_fingerprint);

    device.change_host_key().await;
    let new_fingerprint = openssh_fingerprint(lab.dir.path(), &device.host_key());
    assert_ne!(
        new_fingerprint, old_fingerprint,
        "the lab did not change the key"
    );

    let error = connect_err(&pinned).await;
    match &error {
        TransportError::HostKeyChanged {
            expected,
            presented,
            ..
        } => {
            assert_eq!(expected, &old_fingerprint);
            assert_eq!(presented, &new_fingerprint);
        }
        other => panic!("expected a changed host key, got: {other}"),
    }
    let message = error.to_string();
    assert!(message.contains(&old_fingerprint) && message.contains(&new_fingerprint));
}

#[tokio::test]
async fn exec_returns_output_and_exit_status() {
    let lab = OneDevice::archer().await;
    let mut session = lab.session().await;

    let said = "it's $(not run); `nor this` | & \"quoted\"";
    let complained = "a line\nand another";
    let command = format!(
        "printf '%s' {}; printf '%s' {} >&2; exit {}",
        quote(said),
        quote(complained),
        quote("7")
    );
    let output = session.exec(&command, COMMAND_TIMEOUT).await.unwrap();
    assert_eq!(output.stdout_text(), said);
    assert_eq!(output.stderr_text(), complained);
    assert_eq!(output.end, CommandEnd::Exited(7));

    let board = session
        .exec("ubus call system board", COMMAND_TIMEOUT)
        .await
        .unwrap();
    assert!(board.success(), "{}", board.stderr_text());
    assert!(
        board.stdout_text().contains("tplink,archer-c7-v5"),
        "{}",
        board.stdout_text()
    );
    session.close().await;
}

#[tokio::test]
async fn exec_is_stopped_at_its_timeout() {
    let lab = OneDevice::archer().await;
    let mut session = lab.session().await;

    let started = Instant::now();
    let command = format!("echo started; sleep {}", quote("30"));
    let output = session
        .exec(&command, Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(output.end, CommandEnd::TimedOut);
    assert_eq!(output.stdout_text(), "started\n");
    // Far below the command's 30 s, with room for a loaded machine.
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "took {:?}",
        started.elapsed()
    );

    // The session outlives a command that timed out.
    let after = session
        .exec("echo still here", COMMAND_TIMEOUT)
        .await
        .unwrap();
    assert_eq!(after.stdout_text(), "still here\n");
    session.close().await;
}

#[tokio::test]
async fn exec_reports_a_device_switched_off() {
    let lab = OneDevice::archer().await;
    let device = lab.device().clone();
    let mut session = lab.session().await;

    // Late enough that the command has surely printed, on a loaded machine.
    let switch_off = async {
        tokio::time::sleep(Duration::from_secs(2)).await;
        device.power_off().await;
    };
    let started = Instant::now();
    let command = format!("echo flashing; sleep {}", quote("60"));
    let (output, ()) = tokio::join!(session.exec(&command, Duration::from_secs(60)), switch_off);
    let output = output.unwrap();
    assert_eq!(output.end, CommandEnd::Disconnected);
    assert_eq!(output.stdout_text(), "flashing\n");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn upload_arrives_whole() {
    let lab = OneDevice::archer().await;
    let mut session = lab.session().await;
    let image = image_bytes(3 * 1024 * 1024 + 12345);
    let local = lab.scratch("image.bin");
    std::fs::write(&local, &image).unwrap();
    let remote = "/tmp/fwu upload's image.bin";

    let mut source = tokio::fs::File::open(&local).await.unwrap();
    let mut reports = Vec::new();
    let output = session
        .upload(
            &format!("cat > {}", quote(remote)),
            &mut source,
            image.len() as u64,
            &mut |sent| reports.push(sent),
        )
        .await
        .unwrap();
    assert!(output.success(), "{}", output.stderr_text());
    assert_eq!(reports.last(), Some(&(image.len() as u64)));
    assert!(
        reports.windows(2).all(|w| w[0] < w[1]),
        "progress went back"
    );

    let sum = session
        .exec(&format!("sha256sum {}", quote(remote)), COMMAND_TIMEOUT)
        .await
        .unwrap();
    assert!(sum.success(), "{}", sum.stderr_text());
    assert_eq!(sum.stdout_text()[..64], local_sha256(&local));
    session.close().await;
}

#[tokio::test]
async fn upload_reports_a_command_that_fails() {
    let lab = OneDevice::archer().await;
    let mut session = lab.session().await;
    let image = image_bytes(2 * 1024 * 1024);

    let command = format!("cat > {}", quote("/no/such/dir/image.bin"));
    let output = session
        .upload(
            &command,
            &mut image.as_slice(),
            image.len() as u64,
            &mut |_| {},
        )
        .await
        .unwrap();
    assert_eq!(output.end, CommandEnd::Exited(1));
    assert!(
        output.stderr_text().contains("/no/such/dir"),
        "{}",
        output.stderr_text()
    );
    session.close().await;
}

#[tokio::test]
async fn upload_of_a_short_source_is_an_error() {
    let lab = OneDevice::archer().await;
    let mut session = lab.session().await;
    let image = image_bytes(100_000);

    let command = format!("cat > {}", quote("/tmp/short.bin"));
    let error = session
        .upload(&command, &mut image.as_slice(), 150_000, &mut |_| {})
        .await
        .unwrap_err();
    match &error {
        TransportError::LocalRead(io) => {
            assert!(io.to_string().contains("100000 of the 150000"), "{io}");
        }
        other => panic!("expected a local read error, got: {other}"),
    }
    session.close().await;
}

#[tokio::test]
async fn link_cut_mid_upload_is_an_interrupted_upload() {
    let mut spec = archer_spec();
    spec.faults = Faults {
        cut_link_after_bytes: Some(1024 * 1024),
        ..Faults::default()
    };
    let lab = OneDevice::start(spec).await;
    let mut session = lab.session().await;
    let image = image_bytes(4 * 1024 * 1024);

    let started = Instant::now();
    let command = format!("cat > {}", quote("/tmp/cut.bin"));
    let error = session
        .upload(
            &command,
            &mut image.as_slice(),
            image.len() as u64,
            &mut |_| {},
        )
        .await
        .unwrap_err();
    match error {
        TransportError::UploadInterrupted { sent, total, .. } => {
            assert_eq!(total, image.len() as u64);
            assert!(sent > 0 && sent < total, "sent {sent} of {total}");
        }
        other => panic!("expected an interrupted upload, got: {other}"),
    }
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "took {:?}",
        started.elapsed()
    );

    // The fault disarms itself: the next session uploads whole.
    let mut session = lab.session().await;
    let output = session
        .upload(
            &command,
            &mut image.as_slice(),
            image.len() as u64,
            &mut |_| {},
        )
        .await
        .unwrap();
    assert!(output.success());
    session.close().await;
}

#[tokio::test]
async fn server_that_never_answers_times_out() {
    // A listener that accepts and then says nothing, as a hung device does.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = silent.local_addr().unwrap().port();
    let holder = tokio::spawn(async move {
        let accepted = silent.accept().await;
        tokio::time::sleep(Duration::from_secs(30)).await;
        drop(accepted);
    });
    let target = Target {
        endpoint: Endpoint {
            host: "127.0.0.1".to_string(),
            port,
            user: "root".to_string(),
        },
        auth: Auth::Password("irrelevant".to_string()),
        host_key: HostKeyCheck::AcceptNew,
        connect_timeout: Duration::from_secs(1),
    };

    let started = Instant::now();
    let error = connect_err(&target).await;
    holder.abort();
    assert!(
        matches!(error, TransportError::ConnectTimeout { .. }),
        "{error}"
    );
    // Far below the 30 s the silent server would hold the connection.
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn nothing_listening_is_unreachable() {
    // Bind then drop, so that the port is known to be closed.
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let target = Target {
        endpoint: Endpoint {
            host: "127.0.0.1".to_string(),
            port,
            user: "root".to_string(),
        },
        auth: Auth::Password("irrelevant".to_string()),
        host_key: HostKeyCheck::AcceptNew,
        connect_timeout: CONNECT_TIMEOUT,
    };
    let error = connect_err(&target).await;
    assert!(
        matches!(error, TransportError::Unreachable { .. }),
        "{error}"
    );
}
