//! `fwu device`: adding, listing, probing and removing routers and access
//! points, one at a time or a fleet at once (CSV import and export,
//! discovery on an address range, probing a site or a tag).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{ArgGroup, Args, Subcommand};
use fwu_engine::actions::{Credential, DeviceInput, Engine};
use fwu_engine::catalogue::{Device, DeviceAuth, DeviceFirmware};
use fwu_engine::events::Discard;
use fwu_engine::inventory::csv::{self, ImportOptions};
use fwu_engine::inventory::discover::{
    self, AddOptions, Addition, AddressRange, DiscoverOptions, Discovery, Login,
};
use fwu_engine::inventory::probe::{self, ProbeOptions, ProbeOutcome, Selection};
use fwu_engine::transport::ssh::SshConnector;
use serde::Serialize;

use crate::output;
use crate::output::{or_dash, say};
use crate::{Failure, Globals};

#[derive(Subcommand)]
pub enum DeviceCommand {
    /// Add a device.
    Add(AddArgs),
    /// List the devices.
    List,
    /// Show one device.
    Show { name: String },
    /// Connect, read board, model, release and boot id, and record them:
    /// for one device, or for all, a site's or a tag's, many at a time.
    Probe(ProbeArgs),
    /// Add the devices a CSV file lists; every bad row is reported with
    /// its line number and the good ones are added.
    Import {
        file: PathBuf,
        /// Add nothing if any row is bad.
        #[arg(long)]
        strict: bool,
        /// Check every row and add nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Write every device as CSV, in the columns import reads (no secret
    /// is ever written).
    Export {
        /// The file to write; standard output without one.
        file: Option<PathBuf>,
    },
    /// Find OpenWrt devices on an address range (CIDR such as
    /// 192.0.2.0/24, or 192.0.2.10-192.0.2.60; at most a /16).
    Discover(DiscoverArgs),
    /// Forget the pinned host key, after a device was reinstalled on
    /// purpose; the next connection asks again.
    ForgetHostKey { name: String },
    /// Remove a device added by mistake, with its own password in the OS
    /// keyring; a device with upgrade operations or in a batch stays, as
    /// its history.
    Remove { name: String },
}

#[derive(Args)]
#[command(group(ArgGroup::new("which").required(true).multiple(true)
    .args(["name", "all", "site", "tag"])))]
pub struct ProbeArgs {
    /// The device to probe.
    #[arg(conflicts_with_all = ["all", "site", "tag", "concurrency"])]
    name: Option<String>,
    /// Probe every device.
    #[arg(long, conflicts_with_all = ["site", "tag"])]
    all: bool,
    /// Probe the devices of this site.
    #[arg(long)]
    site: Option<String>,
    /// Probe the devices with this tag.
    #[arg(long)]
    tag: Option<String>,
    /// Devices probed at the same time (default: the concurrency setting).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1024))]
    concurrency: Option<u32>,
    /// Pin the host key a device presents if none is pinned yet.
    #[arg(long)]
    accept_new_host_key: bool,
}

#[derive(Args)]
pub struct DiscoverArgs {
    /// The addresses to scan.
    range: String,
    /// The SSH port to try.
    #[arg(long, default_value_t = 22)]
    port: u16,
    /// The user to log in as.
    #[arg(long, default_value = "root")]
    user: String,
    /// Log in with the password in the OS keyring under this entry.
    #[arg(long, conflicts_with = "key")]
    credential: Option<String>,
    /// Log in with this private key file (without passphrase); without
    /// --credential or --key, the SSH agent's keys are used.
    #[arg(long)]
    key: Option<PathBuf>,
    /// Addresses checked at the same time.
    #[arg(long, default_value_t = 64,
          value_parser = clap::value_parser!(u32).range(1..=1024))]
    concurrency: u32,
    /// Seconds to wait for an address's port to open.
    #[arg(long, default_value_t = 1.0)]
    connect_timeout: f64,
    /// Seconds after which the scan stops and reports what it found.
    #[arg(long, default_value_t = 60.0)]
    time_limit: f64,
    /// Log in to devices whose host key is not known yet (needed to
    /// identify them); added devices get that key pinned.
    #[arg(long)]
    accept_new_host_key: bool,
    /// Add the OpenWrt devices found to the catalogue.
    #[arg(long)]
    add: bool,
    /// The site added devices belong to.
    #[arg(long, requires = "add")]
    site: Option<String>,
    /// A tag for added devices (repeatable).
    #[arg(long = "tag", requires = "add")]
    tags: Vec<String>,
}

#[derive(Args)]
pub struct AddArgs {
    name: String,
    /// Address or host name.
    #[arg(long)]
    host: String,
    /// Another address the device may answer on (repeatable).
    #[arg(long = "alt-host")]
    alt_hosts: Vec<String>,
    #[arg(long, default_value_t = 22)]
    port: u16,
    #[arg(long, default_value = "root")]
    user: String,
    /// Log in with this private key file.
    #[arg(long, conflicts_with_all = ["password_stdin", "credential", "agent"])]
    key: Option<PathBuf>,
    /// Read the password (or, with --key, the key's passphrase) from
    /// standard input; it goes to the OS keyring.
    #[arg(long)]
    password_stdin: bool,
    /// Use a password already in the OS keyring under this entry, shared
    /// by several devices.
    #[arg(long, conflicts_with_all = ["password_stdin", "agent"])]
    credential: Option<String>,
    /// Log in with the keys of the SSH agent.
    #[arg(long)]
    agent: bool,
    #[arg(long)]
    site: Option<String>,
    /// A tag (group) for the device (repeatable).
    #[arg(long = "tag")]
    tags: Vec<String>,
}

pub async fn run(command: DeviceCommand, globals: &Globals) -> Result<ExitCode, Failure> {
    let engine = globals.engine()?;
    match command {
        DeviceCommand::Add(args) => {
            let credential = credential(&args)?;
            let device = engine.add_device(DeviceInput {
                name: args.name,
                host: args.host,
                alternate_hosts: args.alt_hosts,
                port: args.port,
                user: args.user,
                credential,
                site: args.site,
                tags: args.tags,
            })?;
            output::record(globals.json, &device, |d| {
                format!("added device {} at {}:{}", d.name, d.host, d.port)
            })
        }
        DeviceCommand::List => {
            let devices = engine.catalogue.devices()?;
            output::record(globals.json, &devices, |all| {
                output::table(
                    &["name", "host", "board", "os_identifier"],
                    all.iter().map(|d| {
                        vec![
                            d.name.clone(),
                            d.host.clone(),
                            or_dash(d.board.as_deref()),
                            or_dash(d.os_identifier.as_deref()),
                        ]
                    }),
                )
            })
        }
        DeviceCommand::Show { name } => {
            let device = engine.catalogue.device(&name)?;
            let firmware = engine.catalogue.device_firmware(device.id)?;
            output::record(globals.json, &device, |d| {
                human_device(d, firmware.as_ref())
            })
        }
        DeviceCommand::Remove { name } => remove(&engine, &name, globals),
        DeviceCommand::Probe(ProbeArgs {
            name: Some(name),
            accept_new_host_key,
            ..
        }) => {
            let ctx = engine.context(Arc::new(Discard))?;
            let probed =
                fwu_engine::upgrade::probe_device(&ctx, &name, accept_new_host_key).await?;
            output::record(globals.json, &probed, |p| {
                format!(
                    "{}: board {}, model {}, running {}, boot id {} (host key {})",
                    p.device.name,
                    p.identity.board.as_deref().unwrap_or("?"),
                    p.identity.model.as_deref().unwrap_or("?"),
                    p.identity.os_identifier.as_deref().unwrap_or("?"),
                    p.identity.boot_id.as_deref().unwrap_or("?"),
                    p.host_key_fingerprint
                )
            })
        }
        DeviceCommand::Probe(args) => probe_many(&engine, args, globals).await,
        DeviceCommand::Import {
            file,
            strict,
            dry_run,
        } => import(&engine, &file, ImportOptions { strict, dry_run }, globals),
        DeviceCommand::Export { file } => export(&engine, file.as_deref()),
        DeviceCommand::Discover(args) => discover(&engine, args, globals).await,
        DeviceCommand::ForgetHostKey { name } => {
            let device = engine.catalogue.device(&name)?;
            engine.catalogue.forget_host_key(device.id)?;
            say!(
                "forgot the host key of {}; the next connection asks again",
                device.name
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Removes a device, then the vault entries that were its own (made for it
/// by `device add`, named by no other device).
fn remove(engine: &Engine, name: &str, globals: &Globals) -> Result<ExitCode, Failure> {
    let device = engine.catalogue.remove_device(name)?;
    let own = [
        format!("device/{}/password", device.name),
        format!("device/{}/passphrase", device.name),
    ];
    let named = match &device.auth {
        DeviceAuth::Password { credential } => Some(credential),
        DeviceAuth::Key { credential, .. } => credential.as_ref(),
        DeviceAuth::Agent => None,
    };
    let mut deleted = None;
    if let Some(entry) = named {
        let used = engine
            .catalogue
            .credential_uses()?
            .iter()
            .any(|used| &used.entry == entry);
        if !used && own.contains(entry) {
            match engine.vault.delete(entry) {
                Ok(()) => deleted = Some(entry.clone()),
                Err(fwu_engine::vault::VaultError::NotFound { .. }) => {}
                // The device is gone either way; the entry only takes room.
                Err(error) => eprintln!("warning: {entry} stays in the OS keyring: {error}"),
            }
        } else if !used {
            // A shared entry the user chose: theirs to delete, but they
            // should know nothing logs in with it any more.
            eprintln!(
                "note: no device uses credential {entry} now; delete it with: \
                 fwu credential delete {entry}"
            );
        }
    }
    output::record(globals.json, &device, |d| match &deleted {
        Some(entry) => format!("removed device {} and its secret {entry}", d.name),
        None => format!("removed device {}", d.name),
    })
}

/// A device as `key: value` lines, with the firmware it runs if known.
fn human_device(device: &Device, firmware: Option<&DeviceFirmware>) -> String {
    let list = |items: &[String]| {
        if items.is_empty() {
            "-".to_string()
        } else {
            items.join(", ")
        }
    };
    let auth = match &device.auth {
        DeviceAuth::Password { credential } => format!("password in {credential}"),
        DeviceAuth::Key {
            key_file,
            credential: Some(entry),
        } => format!("key {key_file}, passphrase in {entry}"),
        DeviceAuth::Key { key_file, .. } => format!("key {key_file}"),
        DeviceAuth::Agent => "ssh agent".to_string(),
    };
    let firmware = firmware.map(|f| {
        let state = if f.installed { "runs" } else { "should run" };
        format!("{state} image {}", f.image_id)
    });
    output::fields(&[
        ("name", device.name.clone()),
        ("site", or_dash(device.site.as_deref())),
        ("tags", list(&device.tags)),
        ("host", device.host.clone()),
        ("alternate_hosts", list(&device.alternate_hosts)),
        ("port", device.port.to_string()),
        ("user", device.user.clone()),
        ("auth", auth),
        ("host_key", or_dash(device.host_key.as_deref())),
        ("board", or_dash(device.board.as_deref())),
        ("model", or_dash(device.model.as_deref())),
        ("os_identifier", or_dash(device.os_identifier.as_deref())),
        ("firmware", or_dash(firmware)),
        ("mac", or_dash(device.mac.as_deref())),
        ("boot_id", or_dash(device.boot_id.as_deref())),
        ("uptime", or_dash(device.uptime.map(|s| format!("{s} s")))),
        ("last_seen", or_dash(device.last_seen.as_deref())),
        ("created_at", device.created_at.clone()),
    ])
}

fn credential(args: &AddArgs) -> Result<Credential, Failure> {
    let secret = if args.password_stdin {
        Some(read_secret()?)
    } else {
        None
    };
    Ok(match (&args.key, &args.credential, args.agent) {
        (Some(path), _, _) => Credential::KeyFile {
            path: std::path::absolute(path)?,
            passphrase: secret,
        },
        (None, Some(entry), _) => Credential::SharedPassword(entry.clone()),
        (None, None, true) => Credential::Agent,
        (None, None, false) => match secret {
            Some(password) => Credential::Password(password),
            None => anyhow::bail!(
                "say how to log in: --password-stdin, --key FILE, --credential ENTRY or --agent"
            ),
        },
    })
}

/// Probes a selection of devices and prints a line for each as it ends.
async fn probe_many(
    engine: &Engine,
    args: ProbeArgs,
    globals: &Globals,
) -> Result<ExitCode, Failure> {
    let selection = Selection {
        site: args.site,
        tag: args.tag,
    };
    let devices = probe::select(&engine.catalogue, &selection)?;
    if devices.is_empty() {
        anyhow::bail!("no device matches the selection");
    }
    let concurrency = match args.concurrency {
        Some(n) => n as usize,
        None => engine.settings()?.concurrency(),
    };
    let ctx = engine.context(Arc::new(Discard))?;
    let options = ProbeOptions {
        concurrency,
        accept_new_host_key: args.accept_new_host_key,
    };
    let as_json = globals.json;
    let outcomes = probe::probe_many(&ctx, devices, options, |outcome| {
        if !as_json {
            say!("{}", probe_line(outcome));
        }
    })
    .await;
    let failed = outcomes.iter().filter(|o| !o.ok).count();
    let offline = outcomes.iter().filter(|o| o.offline).count();
    if as_json {
        output::json(&outcomes)?;
    } else {
        say!(
            "probed {} devices: {} ok, {offline} offline, {} failed otherwise",
            outcomes.len(),
            outcomes.len() - failed,
            failed - offline
        );
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// One device's probe as a line: name, verdict, then what it said or why
/// it did not answer.
fn probe_line(outcome: &ProbeOutcome) -> String {
    let unknown = |value: &Option<String>| value.clone().unwrap_or_else(|| "?".to_string());
    if outcome.ok {
        format!(
            "{}\tok\t{}\t{}\t{}",
            outcome.device,
            unknown(&outcome.board),
            unknown(&outcome.os_identifier),
            unknown(&outcome.address)
        )
    } else {
        let verdict = if outcome.offline { "offline" } else { "error" };
        format!("{}\t{verdict}\t{}", outcome.device, unknown(&outcome.error))
    }
}

fn import(
    engine: &Engine,
    file: &Path,
    options: ImportOptions,
    globals: &Globals,
) -> Result<ExitCode, Failure> {
    let report = csv::import_file(&engine.catalogue, file, options)?;
    if globals.json {
        output::json(&report)?;
    } else {
        for refused in &report.refused {
            eprintln!("refused {refused}");
        }
        let count = report.devices.len();
        let refused = report.refused.len();
        say!(
            "{}",
            match (report.imported, options.dry_run) {
                (true, _) => format!("imported {count} devices; refused {refused} rows"),
                (false, true) => {
                    format!("dry run: would import {count} devices; refused {refused} rows")
                }
                (false, false) if refused > 0 && options.strict => {
                    format!("strict: imported nothing; refused {refused} rows")
                }
                (false, false) => format!("imported nothing; refused {refused} rows"),
            }
        );
    }
    Ok(if report.refused.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn export(engine: &Engine, file: Option<&Path>) -> Result<ExitCode, Failure> {
    let warnings = match file {
        Some(path) => {
            let out = std::fs::File::create(path)
                .with_context(|| format!("cannot create {}", path.display()))?;
            let mut out = std::io::BufWriter::new(out);
            let warnings = csv::export(&engine.catalogue, &mut out)?;
            out.flush()
                .with_context(|| format!("cannot write {}", path.display()))?;
            warnings
        }
        None => csv::export(&engine.catalogue, std::io::stdout().lock())?,
    };
    for warning in warnings {
        eprintln!("warning: {warning}");
    }
    Ok(ExitCode::SUCCESS)
}

/// What `fwu --json device discover` prints.
#[derive(Serialize)]
struct DiscoverRecord {
    #[serde(flatten)]
    discovery: Discovery,
    added: Option<Vec<Addition>>,
}

async fn discover(
    engine: &Engine,
    args: DiscoverArgs,
    globals: &Globals,
) -> Result<ExitCode, Failure> {
    let range = AddressRange::parse(&args.range)?;
    let seconds = |value: f64, what: &str| -> Result<Duration, Failure> {
        Duration::try_from_secs_f64(value)
            .ok()
            .filter(|d| !d.is_zero())
            .with_context(|| format!("{what} must be a positive number of seconds"))
    };
    let options = DiscoverOptions {
        port: args.port,
        user: args.user.clone(),
        concurrency: args.concurrency as usize,
        connect_timeout: seconds(args.connect_timeout, "--connect-timeout")?,
        login_timeout: engine.settings()?.ssh_connect_timeout(),
        time_limit: seconds(args.time_limit, "--time-limit")?,
        accept_new_host_key: args.accept_new_host_key,
    };
    let login = match (args.credential, args.key) {
        (Some(entry), _) => Login::SharedPassword(entry),
        (None, Some(path)) => Login::KeyFile(std::path::absolute(path)?),
        (None, None) => Login::Agent,
    };
    let auth = login.resolve(&engine.vault).await?;
    let discovery = discover::discover(&range, &options, auth, Arc::new(SshConnector::new())).await;
    let added = if args.add {
        let add = AddOptions {
            site: args.site,
            tags: args.tags,
        };
        Some(discover::add_found(
            &engine.catalogue,
            &discovery,
            &login,
            &args.user,
            &add,
        )?)
    } else {
        None
    };
    if globals.json {
        output::json(&DiscoverRecord { discovery, added })?;
        return Ok(ExitCode::SUCCESS);
    }
    for found in &discovery.devices {
        let identity = found.identity.clone().unwrap_or_default();
        let unknown = |value: Option<String>| value.unwrap_or_else(|| "?".to_string());
        say!(
            "{}\t{}\t{}\t{}\t{}",
            found.address,
            unknown(identity.board),
            unknown(identity.model),
            unknown(identity.os_identifier),
            unknown(found.host_key_fingerprint.clone())
        );
    }
    for other in &discovery.others {
        say!(
            "{}\tnot identified: {}\t{}",
            other.address,
            other.note.as_deref().unwrap_or("?"),
            other.host_key_fingerprint.as_deref().unwrap_or("?")
        );
    }
    say!(
        "scanned {} of {} addresses in {:.1} s{}; found {} OpenWrt devices, {} other SSH servers",
        discovery.scanned,
        discovery.total,
        discovery.elapsed_ms as f64 / 1000.0,
        if discovery.complete {
            ""
        } else {
            " (stopped at the time limit)"
        },
        discovery.devices.len(),
        discovery.others.len()
    );
    for addition in added.iter().flatten() {
        match (&addition.device, &addition.skipped) {
            (Some(name), _) => say!("added {name} ({})", addition.address),
            (None, reason) => say!(
                "skipped {}: {}",
                addition.address,
                reason.as_deref().unwrap_or("?")
            ),
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Reads a secret from standard input: the first line, without its end.
pub(crate) fn read_secret() -> Result<String, Failure> {
    let mut text = String::new();
    std::io::stdin().read_to_string(&mut text)?;
    let secret = text.lines().next().unwrap_or("").to_string();
    if secret.is_empty() {
        anyhow::bail!("standard input held no password");
    }
    Ok(secret)
}
