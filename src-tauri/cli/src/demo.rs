//! `fwu demo`: the whole flow on a simulated device in a fresh catalogue,
//! showing each step as the `fwu` command that would do it.
//!
//! It starts one lab device running OpenWrt 23.05.3, writes a real-format
//! 24.10.0 image for its board, imports it, adds and probes the device
//! (logging in with a key made for the demo, so no keyring is needed) and
//! upgrades it, every stage shown as it happens. Linux only, as the lab.
//!
//! The commands are echoed so that they can be pasted into a shell as they
//! are: the data directory is exported once, in `FWU_DATA_DIR`, and every
//! path is quoted for the shell.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::Args;
use fwu_engine::actions::{Credential, DeviceInput, Engine};
use fwu_engine::catalogue::SysupgradeOptions;
use fwu_engine::settings::Settings;
use fwu_engine::upgrade::{self, UpgradeRequest};
use fwu_lab::{DeviceSpec, Lab};
use tokio_util::sync::CancellationToken;

use crate::output::say;
use crate::output::Live;
use crate::{Failure, Globals};

const BOARD: &str = "tplink,archer-c7-v5";

#[derive(Args)]
pub struct DemoArgs {
    /// Keep the demo's data directory instead of removing it.
    #[arg(long)]
    keep: bool,
}

pub async fn run(args: DemoArgs, globals: &Globals) -> Result<ExitCode, Failure> {
    let work = std::env::temp_dir().join(format!("fwu-demo-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    let result = demo(&work, globals).await;
    if args.keep {
        say!("\nthe demo's files are kept in {}", work.display());
    } else {
        let _ = std::fs::remove_dir_all(&work);
    }
    result
}

async fn demo(work: &Path, globals: &Globals) -> Result<ExitCode, Failure> {
    let data_dir = work.join("data");
    let key = make_key(work)?;
    step(
        "starting a simulated OpenWrt 23.05.3 device (Dropbear in bubblewrap)",
        None,
    );
    let mut spec = DeviceSpec::new("ap1", BOARD, "23.05.3");
    spec.authorized_keys = vec![std::fs::read_to_string(key.with_extension("pub"))?];
    let lab = Lab::start(&work.join("lab"), vec![spec]).await?;
    let device = lab.device("ap1");
    say!(
        "  device ap1 listens on {}:{}",
        device.address(),
        device.port()
    );

    let result = upgrade_demo(&data_dir, work, &key, device).await;
    lab.stop().await;
    let _ = globals;
    result
}

async fn upgrade_demo(
    data_dir: &Path,
    work: &Path,
    key: &Path,
    device: &fwu_lab::Device,
) -> Result<ExitCode, Failure> {
    let board = fwu_lab::board(BOARD).expect("the lab knows its own board");
    let target = fwu_lab::release("24.10.0").expect("the lab knows 24.10.0");
    let sample = fwu_lab::SampleImage::new(board, &target);
    let image_path = work.join(fwu_lab::sample_image_name(board, &sample.release));
    fwu_lab::write_sample_image(&image_path, &sample)?;

    step(
        "a fresh catalogue; short waits, since a simulated device reboots in seconds",
        Some(&format!("export FWU_DATA_DIR={}", quote(data_dir))),
    );
    std::fs::create_dir_all(data_dir)?;
    for (key, value) in [
        ("openwrt.reconnect_delay", "3"),
        ("openwrt.retry_delay", "1"),
        ("retry.backoff", "2"),
    ] {
        step("", Some(&format!("fwu settings set {key} {value}")));
        Settings::set(data_dir, key, value)?;
    }
    let engine = Engine::open(data_dir, crate::vault())?;

    step("", Some("fwu category add WiFi"));
    engine.catalogue.add_category("WiFi", "")?;
    step("", Some("fwu build add WiFi 24.10.0"));
    engine.catalogue.add_build("WiFi", "24.10.0", None, "")?;
    step(
        "",
        Some(&format!(
            "fwu image import WiFi 24.10.0 {}",
            quote(&image_path)
        )),
    );
    let image = engine.import_image("WiFi", "24.10.0", &image_path, None)?;
    say!(
        "  image {}: {} bytes, sha256 {}…, boards {}",
        image.id,
        image.size,
        &image.sha256[..16],
        image.boards.join(", ")
    );

    let mut command = format!(
        "fwu device add ap1 --host {} --alt-host {} --key {} --site demo --tag lab",
        device.address(),
        device.alternate_address(),
        quote(key)
    );
    if device.port() != 22 {
        command.push_str(&format!(" --port {}", device.port()));
    }
    if device.user() != "root" {
        command.push_str(&format!(" --user {}", device.user()));
    }
    step("", Some(&command));
    engine.add_device(DeviceInput {
        name: "ap1".to_string(),
        host: device.address().to_string(),
        alternate_hosts: vec![device.alternate_address().to_string()],
        port: device.port(),
        user: device.user().to_string(),
        credential: Credential::KeyFile {
            path: key.to_path_buf(),
            passphrase: None,
        },
        site: Some("demo".to_string()),
        tags: vec!["lab".to_string()],
    })?;

    step("", Some("fwu device probe ap1 --accept-new-host-key"));
    let live = Arc::new(Live::new());
    let ctx = engine.context(live.clone())?;
    let probed = upgrade::probe_device(&ctx, "ap1", true).await?;
    say!(
        "  board {}, running {}, host key {} pinned",
        probed.identity.board.as_deref().unwrap_or("?"),
        probed.identity.os_identifier.as_deref().unwrap_or("?"),
        probed.host_key_fingerprint
    );

    step("", Some("fwu upgrade ap1 --build WiFi 24.10.0"));
    let operation = upgrade::start_operation(
        &ctx,
        &UpgradeRequest {
            device: "ap1".to_string(),
            image_id: image.id,
            options: SysupgradeOptions::default(),
            force: false,
            batch_id: None,
        },
    )?;
    let status =
        upgrade::run_operation(&ctx, operation.id, false, CancellationToken::new()).await?;
    live.finish();
    let log = engine.catalogue.operation_log(operation.id)?;
    let verdict = log.last().map_or(status.as_str(), |l| l.line.as_str());
    say!("  operation {}: {verdict}", operation.id);

    step("", Some("fwu device probe ap1"));
    let probed = upgrade::probe_device(&ctx, "ap1", false).await?;
    say!(
        "  ap1 now runs {} (boot id {})",
        probed.identity.os_identifier.as_deref().unwrap_or("?"),
        probed.identity.boot_id.as_deref().unwrap_or("?")
    );
    Ok(crate::output::exit_code(status))
}

/// Makes an ed25519 key pair for the demo with OpenSSH's ssh-keygen.
fn make_key(work: &Path) -> Result<PathBuf, Failure> {
    let key = work.join("demo_ed25519");
    let status = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "fwu-demo", "-f"])
        .arg(&key)
        .status()
        .map_err(|error| {
            anyhow::anyhow!("cannot run ssh-keygen (install openssh-client): {error}")
        })?;
    if !status.success() {
        anyhow::bail!("ssh-keygen failed ({status})");
    }
    Ok(key)
}

/// A path as a shell reads it back: as it is when it holds only plain
/// characters, else in single quotes.
fn quote(path: &Path) -> String {
    let text = path.display().to_string();
    let plain = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+=:,".contains(c));
    if plain {
        text
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

fn step(text: &str, command: Option<&str>) {
    if !text.is_empty() {
        say!("\n# {text}");
    }
    if let Some(command) = command {
        say!("$ {command}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_quoted_only_when_needed() {
        assert_eq!(
            quote(Path::new("/tmp/fwu-demo-1/data")),
            "/tmp/fwu-demo-1/data"
        );
        assert_eq!(quote(Path::new("/tmp/my dir")), "'/tmp/my dir'");
        assert_eq!(quote(Path::new("/tmp/it's")), r"'/tmp/it'\''s'");
    }
}
