//! Commands of the firmware view: categories, builds and images, and
//! picking image files with the platform's file dialog.

use std::path::PathBuf;

use fwu_engine::catalogue::{Build, Category, Image};
use serde::Serialize;
use tauri::{State, WebviewWindow};

use crate::error::{CommandError, CommandResult};
use crate::state::AppState;

/// Everything the firmware view shows.
#[derive(Serialize)]
pub(crate) struct FirmwareCatalogue {
    categories: Vec<Category>,
    builds: Vec<BuildWithImages>,
}

/// A build with its images.
#[derive(Serialize)]
pub(crate) struct BuildWithImages {
    #[serde(flatten)]
    build: Build,
    images: Vec<Image>,
}

/// How importing one file went.
#[derive(Serialize)]
pub(crate) struct ImportOutcome {
    file: String,
    image: Option<Image>,
    error: Option<String>,
}

/// Lists categories, and every build with its images.
#[tauri::command]
pub(crate) async fn firmware_catalogue(
    state: State<'_, AppState>,
) -> CommandResult<FirmwareCatalogue> {
    let catalogue = &state.engine.catalogue;
    let mut builds = Vec::new();
    for build in catalogue.builds(None)? {
        let images = catalogue.images(build.id)?;
        builds.push(BuildWithImages { build, images });
    }
    Ok(FirmwareCatalogue {
        categories: catalogue.categories()?,
        builds,
    })
}

/// Adds a category.
#[tauri::command]
pub(crate) async fn add_category(
    state: State<'_, AppState>,
    name: String,
    description: String,
) -> CommandResult<Category> {
    Ok(state.engine.catalogue.add_category(&name, &description)?)
}

/// Adds a build to a category.
#[tauri::command]
pub(crate) async fn add_build(
    state: State<'_, AppState>,
    category: String,
    version: String,
    os_identifier: Option<String>,
    changelog: String,
) -> CommandResult<Build> {
    let os_identifier = os_identifier.filter(|text| !text.trim().is_empty());
    Ok(state.engine.catalogue.add_build(
        &category,
        &version,
        os_identifier.as_deref(),
        &changelog,
    )?)
}

/// Imports image files into a build, one by one; a file that is refused
/// does not stop the others, and its outcome says why.
#[tauri::command]
pub(crate) async fn import_images(
    state: State<'_, AppState>,
    category: String,
    version: String,
    files: Vec<String>,
) -> CommandResult<Vec<ImportOutcome>> {
    let engine = state.engine.clone();
    // Reading and hashing images of tens of MiB must not hold up the
    // async threads that forward events to the window.
    let outcomes = tauri::async_runtime::spawn_blocking(move || {
        files
            .into_iter()
            .map(|file| {
                let result = engine.import_image(&category, &version, &PathBuf::from(&file), None);
                match result {
                    Ok(image) => ImportOutcome {
                        file,
                        image: Some(image),
                        error: None,
                    },
                    Err(error) => ImportOutcome {
                        file,
                        image: None,
                        error: Some(error.to_string()),
                    },
                }
            })
            .collect()
    })
    .await
    .map_err(|error| CommandError::new(format!("importing images stopped: {error}")))?;
    Ok(outcomes)
}

/// Opens the platform's file dialog for image files and returns the paths
/// chosen (none when the user closes it).
#[tauri::command]
pub(crate) async fn pick_image_files(window: WebviewWindow) -> CommandResult<Vec<String>> {
    // rfd hands the dialog to the thread that runs GTK's main loop (the
    // window's) and waits for the answer, so it must wait elsewhere.
    let files = tauri::async_runtime::spawn_blocking(move || {
        rfd::FileDialog::new()
            .set_title("Import firmware images")
            .add_filter(
                "Firmware images",
                &["bin", "img", "gz", "itb", "trx", "chk"],
            )
            .add_filter("All files", &["*"])
            .set_parent(&window)
            .pick_files()
            .unwrap_or_default()
    })
    .await
    .map_err(|error| CommandError::new(format!("the file dialog failed: {error}")))?;
    Ok(files
        .into_iter()
        .map(|path| path.display().to_string())
        .collect())
}
