//! `fwu settings`: reading and changing timeouts, retries and limits.

use std::process::ExitCode;

use clap::Subcommand;
use fwu_engine::settings::Settings;

use crate::output::say;
use crate::{Failure, Globals};

#[derive(Subcommand)]
pub enum SettingsCommand {
    /// Print one setting's value.
    Get { key: String },
    /// Change one setting (JSON or plain text; `null` where allowed).
    Set { key: String, value: String },
    /// Forget a setting, so that its default applies again.
    Unset { key: String },
    /// Every setting with its value and what it governs.
    List,
}

pub fn run(command: SettingsCommand, globals: &Globals) -> Result<ExitCode, Failure> {
    std::fs::create_dir_all(&globals.data_dir)?;
    match command {
        SettingsCommand::Get { key } => {
            let value = Settings::load(&globals.data_dir)?.get(&key)?;
            say!("{value}");
        }
        SettingsCommand::Set { key, value } => {
            Settings::set(&globals.data_dir, &key, &value)?;
            let value = Settings::load(&globals.data_dir)?.get(&key)?;
            if !globals.json {
                say!("{key} = {value}");
            }
        }
        SettingsCommand::Unset { key } => {
            Settings::unset(&globals.data_dir, &key)?;
        }
        SettingsCommand::List => {
            let settings = Settings::load(&globals.data_dir)?;
            let mut all = serde_json::Map::new();
            for key in Settings::keys() {
                all.insert(key.name.to_string(), settings.get(key.name)?);
            }
            if globals.json {
                crate::output::json(&all)?;
            } else {
                for key in Settings::keys() {
                    say!("{} = {}\t# {}", key.name, all[key.name], key.description);
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
