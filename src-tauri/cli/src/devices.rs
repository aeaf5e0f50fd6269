//! `fwu device`: adding, listing and probing routers and access points.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Subcommand};
use fwu_engine::actions::{Credential, DeviceInput};
use fwu_engine::events::Discard;

use crate::output;
use crate::{Failure, Globals};

#[derive(Subcommand)]
pub enum DeviceCommand {
    /// Add a device.
    Add(AddArgs),
    /// List the devices.
    List,
    /// Show one device.
    Show { name: String },
    /// Connect, read board, model, release and boot id, and record them.
    Probe {
        name: String,
        /// Pin the host key the device presents if none is pinned yet.
        #[arg(long)]
        accept_new_host_key: bool,
    },
    /// Forget the pinned host key, after a device was reinstalled on
    /// purpose; the next connection asks again.
    ForgetHostKey { name: String },
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
                all.iter()
                    .map(|d| {
                        format!(
                            "{}\t{}\t{}\t{}",
                            d.name,
                            d.host,
                            d.board.as_deref().unwrap_or("-"),
                            d.os_identifier.as_deref().unwrap_or("-")
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            })
        }
        DeviceCommand::Show { name } => {
            let device = engine.catalogue.device(&name)?;
            output::record(globals.json, &device, |d| {
                serde_json::to_string_pretty(d).unwrap_or_default()
            })
        }
        DeviceCommand::Probe {
            name,
            accept_new_host_key,
        } => {
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
        DeviceCommand::ForgetHostKey { name } => {
            let device = engine.catalogue.device(&name)?;
            engine.catalogue.forget_host_key(device.id)?;
            println!(
                "forgot the host key of {}; the next connection asks again",
                device.name
            );
            Ok(ExitCode::SUCCESS)
        }
    }
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

/// Reads a secret from standard input: the first line, without its end.
fn read_secret() -> Result<String, Failure> {
    let mut text = String::new();
    std::io::stdin().read_to_string(&mut text)?;
    let secret = text.lines().next().unwrap_or("").to_string();
    if secret.is_empty() {
        anyhow::bail!("standard input held no password");
    }
    Ok(secret)
}
