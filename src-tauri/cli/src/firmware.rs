//! `fwu category`, `fwu build` and `fwu image`: the firmware the catalogue
//! holds.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;

use crate::output;
use crate::{Failure, Globals};

#[derive(Subcommand)]
pub enum CategoryCommand {
    /// Add a category.
    Add {
        name: String,
        #[arg(long, default_value = "")]
        description: String,
    },
    /// List the categories.
    List,
}

#[derive(Subcommand)]
pub enum BuildCommand {
    /// Add a build (a version) to a category.
    Add {
        category: String,
        version: String,
        /// What devices running this build report, e.g. "OpenWrt 24.10.0 r28427-6df0e3d02a";
        /// filled from the first image's metadata when not given.
        #[arg(long)]
        os_identifier: Option<String>,
        #[arg(long, default_value = "")]
        changelog: String,
    },
    /// List the builds, newest first.
    List {
        /// Only this category's builds.
        category: Option<String>,
    },
}

#[derive(Subcommand)]
pub enum ImageCommand {
    /// Import an image file into a build: read once, hashed, stored.
    Import {
        category: String,
        version: String,
        file: PathBuf,
        /// The image type, for files whose name does not tell it.
        #[arg(long = "type")]
        image_type: Option<String>,
    },
    /// List the images of a build.
    List { category: String, version: String },
    /// Show one image with its metadata.
    Show { id: i64 },
    /// Read an image file and print what it is, without importing it.
    Inspect { file: PathBuf },
}

pub fn category(command: CategoryCommand, globals: &Globals) -> Result<ExitCode, Failure> {
    let engine = globals.engine()?;
    match command {
        CategoryCommand::Add { name, description } => {
            let category = engine.catalogue.add_category(&name, &description)?;
            output::record(globals.json, &category, |c| {
                format!("added category {}", c.name)
            })
        }
        CategoryCommand::List => {
            let categories = engine.catalogue.categories()?;
            output::record(globals.json, &categories, |all| {
                all.iter()
                    .map(|c| c.name.clone())
                    .collect::<Vec<_>>()
                    .join("\n")
            })
        }
    }
}

pub fn build(command: BuildCommand, globals: &Globals) -> Result<ExitCode, Failure> {
    let engine = globals.engine()?;
    match command {
        BuildCommand::Add {
            category,
            version,
            os_identifier,
            changelog,
        } => {
            let build = engine.catalogue.add_build(
                &category,
                &version,
                os_identifier.as_deref(),
                &changelog,
            )?;
            output::record(globals.json, &build, |b| {
                format!("added build {} {}", b.category, b.version)
            })
        }
        BuildCommand::List { category } => {
            let builds = engine.catalogue.builds(category.as_deref())?;
            output::record(globals.json, &builds, |all| {
                all.iter()
                    .map(|b| {
                        format!(
                            "{}\t{}\t{}",
                            b.category,
                            b.version,
                            b.os_identifier.as_deref().unwrap_or("-")
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            })
        }
    }
}

pub fn image(command: ImageCommand, globals: &Globals) -> Result<ExitCode, Failure> {
    match command {
        ImageCommand::Import {
            category,
            version,
            file,
            image_type,
        } => {
            let engine = globals.engine()?;
            let image = engine.import_image(&category, &version, &file, image_type.as_deref())?;
            output::record(globals.json, &image, |i| {
                format!(
                    "imported image {} ({}, {} bytes, sha256 {}) for boards {}",
                    i.id,
                    i.image_type,
                    i.size,
                    i.sha256,
                    i.boards.join(", ")
                )
            })
        }
        ImageCommand::List { category, version } => {
            let engine = globals.engine()?;
            let build = engine.catalogue.build(&category, &version)?;
            let images = engine.catalogue.images(build.id)?;
            output::record(globals.json, &images, |all| {
                all.iter()
                    .map(|i| format!("{}\t{}\t{}", i.id, i.image_type, i.boards.join(",")))
                    .collect::<Vec<_>>()
                    .join("\n")
            })
        }
        ImageCommand::Show { id } => {
            let engine = globals.engine()?;
            let image = engine.catalogue.image(id)?;
            output::record(globals.json, &image, |i| {
                serde_json::to_string_pretty(i).unwrap_or_default()
            })
        }
        ImageCommand::Inspect { file } => {
            let inspection = fwu_engine::image::inspect_file(&file, None)?;
            let record = serde_json::json!({
                "size": inspection.size,
                "sha256": inspection.sha256,
                "signed": inspection.signed,
                "metadata": inspection.metadata.as_ref().map(|m| m.raw.clone()),
            });
            output::record(globals.json, &record, |r| {
                serde_json::to_string_pretty(r).unwrap_or_default()
            })
        }
    }
}
