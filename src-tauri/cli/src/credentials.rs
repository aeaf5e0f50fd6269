//! `fwu credential`: passwords that many devices share, kept in the OS
//! keyring, so that a site's password is typed once.
//!
//! A device names its credential with `fwu device add --credential ENTRY`
//! or in the `credential` column of an imported CSV file.

use std::process::ExitCode;

use clap::Subcommand;
use fwu_engine::inventory::credentials;

use crate::devices::read_secret;
use crate::output;
use crate::output::say;
use crate::{Failure, Globals};

#[derive(Subcommand)]
pub enum CredentialCommand {
    /// Store a password under an entry such as site/acme/password; the
    /// devices naming it use it from their next connection.
    Set {
        entry: String,
        /// Read the password from standard input (the only way: never on
        /// the command line, where other users can see it).
        #[arg(long, required = true)]
        password_stdin: bool,
    },
    /// Remove the password under an entry.
    Delete {
        entry: String,
        /// Remove it even though devices still log in with it.
        #[arg(long)]
        force: bool,
    },
    /// List the entries devices refer to, with their devices and whether
    /// the keyring holds a password for each.
    List,
}

pub fn run(command: CredentialCommand, globals: &Globals) -> Result<ExitCode, Failure> {
    let engine = globals.engine()?;
    match command {
        CredentialCommand::Set { entry, .. } => {
            let secret = read_secret()?;
            credentials::set(&engine.vault, &entry, &secret)?;
            say!("stored the password of credential {entry}");
            Ok(ExitCode::SUCCESS)
        }
        CredentialCommand::Delete { entry, force } => {
            credentials::delete(&engine.catalogue, &engine.vault, &entry, force)?;
            say!("deleted credential {entry}");
            Ok(ExitCode::SUCCESS)
        }
        CredentialCommand::List => {
            let list = credentials::list(&engine.catalogue, &engine.vault)?;
            output::record(globals.json, &list, |all| {
                all.iter()
                    .map(|credential| {
                        format!(
                            "{}\t{}\t{} device(s): {}",
                            credential.entry,
                            if credential.stored {
                                "stored"
                            } else {
                                "MISSING"
                            },
                            credential.devices.len(),
                            credential.devices.join(", ")
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            })
        }
    }
}
