//! `fwu`, Firmware Upgrader's command line: a thin adapter over the engine
//! for scripts, CI and people at a terminal.
//!
//! Each subcommand parses its arguments, makes one or two engine calls and
//! prints the result: a line for people, or with `--json` the record
//! itself. Exit status: 0 success or not needed, 2 aborted, 3 failed, 4
//! cancelled, 1 for anything that kept an operation from starting.
//! Commands are grouped by domain in the files beside this one.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod batches;
mod credentials;
mod demo;
mod devices;
mod firmware;
mod hints;
mod lab;
mod output;
mod settings;
mod upgrades;

/// Upgrade the firmware of OpenWrt devices over SSH.
#[derive(Parser)]
#[command(name = "fwu", version, about, max_term_width = 100)]
struct Cli {
    /// The data directory: catalogue, images, settings, logs.
    #[arg(long, global = true, env = "FWU_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,

    /// Print records as JSON on standard output.
    #[arg(long, global = true)]
    json: bool,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Firmware categories, such as "WiFi".
    #[command(subcommand)]
    Category(firmware::CategoryCommand),
    /// Builds: versions of a category's firmware.
    #[command(subcommand)]
    Build(firmware::BuildCommand),
    /// Image files of a build.
    #[command(subcommand)]
    Image(firmware::ImageCommand),
    /// Routers and access points.
    #[command(subcommand)]
    Device(devices::DeviceCommand),
    /// Passwords shared by many devices, kept in the OS keyring.
    #[command(subcommand)]
    Credential(credentials::CredentialCommand),
    /// Upgrade one device and wait for the verdict.
    Upgrade(upgrades::UpgradeArgs),
    /// Mass upgrades: dry run, start, pause, resume, cancel, watch, report.
    #[command(subcommand)]
    Batch(batches::BatchCommand),
    /// Upgrade operations: list, show, cancel, resume.
    #[command(subcommand)]
    Operation(upgrades::OperationCommand),
    /// Timeouts, retries, limits.
    #[command(subcommand)]
    Settings(settings::SettingsCommand),
    /// Simulated OpenWrt devices on this machine (Linux only).
    #[command(subcommand)]
    Lab(lab::LabCommand),
    /// Show the whole flow on a simulated device, in a fresh catalogue.
    Demo(demo::DemoArgs),
}

/// An error that ends the command with exit status 1 and a message.
pub(crate) type Failure = anyhow::Error;

/// Everything a subcommand needs from the global options.
pub(crate) struct Globals {
    pub data_dir: PathBuf,
    pub json: bool,
}

impl Globals {
    /// Opens the engine on the data directory.
    pub fn engine(&self) -> Result<fwu_engine::actions::Engine, Failure> {
        Ok(fwu_engine::actions::Engine::open(&self.data_dir, vault())?)
    }
}

/// The vault; `FWU_KEYRING_SERVICE` names another keyring service, which
/// keeps tests and rehearsals apart from the real entries.
pub(crate) fn vault() -> fwu_engine::vault::Vault {
    match std::env::var("FWU_KEYRING_SERVICE") {
        Ok(service) if !service.is_empty() => fwu_engine::vault::Vault::with_service(service),
        _ => fwu_engine::vault::Vault::new(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let Some(data_dir) = cli.data_dir.or_else(fwu_engine::platform::default_data_dir) else {
        eprintln!("fwu: no data directory: set --data-dir or FWU_DATA_DIR");
        return ExitCode::from(1);
    };
    let _log = fwu_engine::logging::init(&data_dir);
    let globals = Globals {
        data_dir,
        json: cli.json,
    };
    let runtime = fwu_engine::runtime::build().expect("the async runtime starts");
    let result = runtime.block_on(run(cli.command, &globals));
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("fwu: {}", output::error_chain(&error));
            if let Some(hint) = hints::for_error(&error, &globals.data_dir) {
                eprintln!("hint: {hint}");
            }
            ExitCode::from(1)
        }
    }
}

async fn run(command: Command, globals: &Globals) -> Result<ExitCode, Failure> {
    match command {
        Command::Category(command) => firmware::category(command, globals),
        Command::Build(command) => firmware::build(command, globals),
        Command::Image(command) => firmware::image(command, globals),
        Command::Device(command) => devices::run(command, globals).await,
        Command::Credential(command) => credentials::run(command, globals),
        Command::Upgrade(args) => upgrades::upgrade(args, globals).await,
        Command::Operation(command) => upgrades::operation(command, globals).await,
        Command::Batch(command) => batches::run(command, globals).await,
        Command::Settings(command) => settings::run(command, globals),
        Command::Lab(command) => lab::run(command, globals).await,
        Command::Demo(args) => demo::run(args, globals).await,
    }
}
