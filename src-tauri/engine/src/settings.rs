//! Settings: the timeouts, retries, concurrency, image size limit and custom
//! image types that govern upgrade operations and batches.
//!
//! They live in `<data_dir>/settings.json` as one flat JSON object of key to
//! value (`"retry.max_retries": 4`), the same file the desktop shell's
//! tauri-plugin-store reads and writes, so keys this module does not know
//! are left as they are. Durations are whole seconds in the file and
//! [`Duration`]s in code. Defaults mirror OpenWISP's firmware upgrader.
//!
//! [`Settings::load`] reads the file strictly: a bad value stops with an
//! error naming the key. [`Settings::set`] validates one key and value and
//! rewrites the file atomically (temporary file, then rename), so a crash
//! leaves either the old file or the new one.

use crate::image::ImageType;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Map, Value};
use thiserror::Error;

/// The settings file's name inside the data directory.
pub const FILE_NAME: &str = "settings.json";

/// The largest image size limit that may be set, in bytes (4 GiB).
const MAX_SIZE_LIMIT: u64 = 4 << 30;

/// Why settings could not be read, changed or written.
#[derive(Debug, Error)]
pub enum SettingsError {
    /// The settings file exists but could not be read.
    #[error("could not read settings file {}: {source}", .path.display())]
    Read {
        /// The settings file.
        path: PathBuf,
        /// What the operating system reported.
        source: io::Error,
    },
    /// The settings file is not JSON.
    #[error("settings file {} is not valid JSON: {source}", .path.display())]
    Parse {
        /// The settings file.
        path: PathBuf,
        /// Where and why parsing stopped.
        source: serde_json::Error,
    },
    /// The settings file is JSON but not an object of key to value.
    #[error("settings file {} does not hold a JSON object of key to value", .path.display())]
    NotAnObject {
        /// The settings file.
        path: PathBuf,
    },
    /// The settings file holds a value that is not allowed for its key.
    #[error("settings file {} has an invalid {key}: {reason}", .path.display())]
    InvalidInFile {
        /// The settings file.
        path: PathBuf,
        /// The key whose value is wrong.
        key: String,
        /// What is allowed, and what was found.
        reason: String,
    },
    /// The key names no setting.
    #[error("unknown setting {key}: the settings are {known}")]
    UnknownKey {
        /// The key that was asked for.
        key: String,
        /// Every known key, comma separated.
        known: String,
    },
    /// The value is not allowed for this key.
    #[error("invalid value for setting {key}: {reason}")]
    InvalidValue {
        /// The key being set.
        key: String,
        /// What is allowed, and what was given.
        reason: String,
    },
    /// The new settings file could not be written.
    #[error("could not write settings file {}: {source}", .path.display())]
    Write {
        /// The settings file.
        path: PathBuf,
        /// What the operating system reported.
        source: io::Error,
    },
}

/// One setting's key and what it is for, as shown by `fwu settings` and the
/// settings view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SettingKey {
    /// The key, as written in the settings file.
    pub name: &'static str,
    /// One line saying what the setting governs.
    pub description: &'static str,
}

/// Every setting, typed, with the design's defaults for those the file does
/// not give. Values are always within their allowed ranges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    max_retries: u32,
    retry_backoff: u64,
    retry_backoff_cap: u64,
    retry_jitter: bool,
    task_timeout: u64,
    reconnect_delay: u64,
    retry_delay: u64,
    reconnect_attempts: u32,
    upgrade_timeout: u64,
    image_size_limit: Option<u64>,
    custom_image_types: Vec<ImageType>,
    concurrency: u32,
    start_spacing_ms: u64,
    ssh_connect_timeout: u64,
    ssh_command_timeout: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            max_retries: 4,
            retry_backoff: 60,
            retry_backoff_cap: 600,
            retry_jitter: true,
            task_timeout: 600,
            reconnect_delay: 120,
            retry_delay: 20,
            reconnect_attempts: 15,
            upgrade_timeout: 90,
            image_size_limit: Some(30 * 1024 * 1024),
            custom_image_types: Vec::new(),
            concurrency: 8,
            start_spacing_ms: 100,
            ssh_connect_timeout: 15,
            ssh_command_timeout: 30,
        }
    }
}

/// How one key is described, read from [`Settings`] and checked and
/// written into it. The table of these is the single list of settings.
struct Spec {
    key: &'static str,
    description: &'static str,
    read: fn(&Settings) -> Value,
    write: fn(&mut Settings, &Value) -> Result<(), String>,
}

const SPECS: &[Spec] = &[
    Spec {
        key: "retry.max_retries",
        description: "How many times a failed upgrade operation is retried before it fails.",
        read: |s| s.max_retries.into(),
        write: |s, v| {
            s.max_retries = count(v, 0, 100)?;
            Ok(())
        },
    },
    Spec {
        key: "retry.backoff",
        description: "Seconds to wait before the first retry; each retry doubles the wait.",
        read: |s| s.retry_backoff.into(),
        write: |s, v| {
            s.retry_backoff = seconds(v, 1, 86_400)?;
            Ok(())
        },
    },
    Spec {
        key: "retry.backoff_cap",
        description: "The longest wait between retries, in seconds.",
        read: |s| s.retry_backoff_cap.into(),
        write: |s, v| {
            s.retry_backoff_cap = seconds(v, 1, 86_400)?;
            Ok(())
        },
    },
    Spec {
        key: "retry.jitter",
        description: "Whether retry waits are randomised so devices do not retry in step.",
        read: |s| s.retry_jitter.into(),
        write: |s, v| {
            s.retry_jitter = v
                .as_bool()
                .ok_or_else(|| format!("expected true or false, got {v}"))?;
            Ok(())
        },
    },
    Spec {
        key: "task_timeout",
        description: "Seconds an upgrade operation may take in all before it is stopped.",
        read: |s| s.task_timeout.into(),
        write: |s, v| {
            s.task_timeout = seconds(v, 1, 86_400)?;
            Ok(())
        },
    },
    Spec {
        key: "openwrt.reconnect_delay",
        description: "Seconds to wait after flashing before trying to reach the device again.",
        read: |s| s.reconnect_delay.into(),
        write: |s, v| {
            s.reconnect_delay = seconds(v, 0, 3_600)?;
            Ok(())
        },
    },
    Spec {
        key: "openwrt.retry_delay",
        description: "Most seconds between attempts to reach a rebooting device.",
        read: |s| s.retry_delay.into(),
        write: |s, v| {
            s.retry_delay = seconds(v, 0, 3_600)?;
            Ok(())
        },
    },
    Spec {
        key: "openwrt.reconnect_attempts",
        description: "How many times to try reaching a rebooting device before it has failed.",
        read: |s| s.reconnect_attempts.into(),
        write: |s, v| {
            s.reconnect_attempts = count(v, 1, 1_000)?;
            Ok(())
        },
    },
    Spec {
        key: "openwrt.upgrade_timeout",
        description: "Seconds the sysupgrade command may run before the session is left.",
        read: |s| s.upgrade_timeout.into(),
        write: |s, v| {
            s.upgrade_timeout = seconds(v, 1, 3_600)?;
            Ok(())
        },
    },
    Spec {
        key: "image.size_limit",
        description: "The largest image that may be imported, in bytes; null for no limit.",
        read: |s| s.image_size_limit.into(),
        write: |s, v| {
            s.image_size_limit = match v {
                Value::Null => None,
                _ => Some(whole(v, 1, MAX_SIZE_LIMIT, "of bytes ").map_err(|reason| {
                    format!(
                        "expected null (no limit) or {}",
                        reason.trim_start_matches("expected ")
                    )
                })?),
            };
            Ok(())
        },
    },
    Spec {
        key: "image.custom_types",
        description: "Image types added to the built-in table: file-name suffix, label, boards.",
        read: |s| serde_json::to_value(&s.custom_image_types).unwrap_or_default(),
        write: |s, v| {
            s.custom_image_types = custom_types(v)?;
            Ok(())
        },
    },
    Spec {
        key: "concurrency",
        description: "How many upgrade operations of a batch run at the same time.",
        read: |s| s.concurrency.into(),
        write: |s, v| {
            s.concurrency = count(v, 1, 1_024)?;
            Ok(())
        },
    },
    Spec {
        key: "batch.start_spacing",
        description: "Least milliseconds between two starts in a batch; 0 starts them together.",
        read: |s| s.start_spacing_ms.into(),
        write: |s, v| {
            s.start_spacing_ms = whole(v, 0, 60_000, "of milliseconds ")?;
            Ok(())
        },
    },
    Spec {
        key: "ssh.connect_timeout",
        description: "Seconds to wait for a device's SSH server to answer and log in.",
        read: |s| s.ssh_connect_timeout.into(),
        write: |s, v| {
            s.ssh_connect_timeout = seconds(v, 1, 600)?;
            Ok(())
        },
    },
    Spec {
        key: "ssh.command_timeout",
        description: "Seconds an ordinary command on a device may run before it is abandoned.",
        read: |s| s.ssh_command_timeout.into(),
        write: |s, v| {
            s.ssh_command_timeout = seconds(v, 1, 3_600)?;
            Ok(())
        },
    },
];

impl Settings {
    /// Reads the settings in `data_dir`; every key the file does not give
    /// has its default, and a missing file means all defaults.
    pub fn load(data_dir: &Path) -> Result<Settings, SettingsError> {
        let path = data_dir.join(FILE_NAME);
        let stored = read_object(&path)?;
        let mut settings = Settings::default();
        for (key, value) in &stored {
            let Some(spec) = find(key) else {
                // The shell's store shares the file and keeps its own keys.
                tracing::trace!(key = %key, "settings: leaving {key} alone: not an engine setting");
                continue;
            };
            (spec.write)(&mut settings, value).map_err(|reason| SettingsError::InvalidInFile {
                path: path.clone(),
                key: key.clone(),
                reason,
            })?;
        }
        if let Err((key, reason)) = settings.check_together() {
            return Err(SettingsError::InvalidInFile {
                path,
                key: key.to_string(),
                reason,
            });
        }
        Ok(settings)
    }

    /// Validates `value_text` for `key` and stores it in `data_dir`'s
    /// settings file. The text is JSON (`4`, `true`, `null`, a list); text
    /// that is not JSON is taken as a string, which no setting accepts, so
    /// the error says what is allowed.
    pub fn set(data_dir: &Path, key: &str, value_text: &str) -> Result<(), SettingsError> {
        let spec = find_known(key)?;
        let value = serde_json::from_str(value_text.trim())
            .unwrap_or_else(|_| Value::String(value_text.to_string()));
        let path = data_dir.join(FILE_NAME);
        let mut stored = read_object(&path)?;

        let mut settings = Settings::lenient(&stored);
        (spec.write)(&mut settings, &value).map_err(|reason| SettingsError::InvalidValue {
            key: key.to_string(),
            reason,
        })?;
        if let Err((_, reason)) = settings.check_together() {
            return Err(SettingsError::InvalidValue {
                key: key.to_string(),
                reason,
            });
        }

        stored.insert(key.to_string(), value);
        write_object(&path, &stored)?;
        tracing::info!(key, "settings: {key} changed");
        Ok(())
    }

    /// Removes `key` from `data_dir`'s settings file, so that it takes its
    /// default again.
    pub fn unset(data_dir: &Path, key: &str) -> Result<(), SettingsError> {
        let spec = find_known(key)?;
        let path = data_dir.join(FILE_NAME);
        let mut stored = read_object(&path)?;
        if stored.remove(spec.key).is_none() {
            return Ok(());
        }
        // The default may clash with a value kept for another key.
        if let Err((_, reason)) = Settings::lenient(&stored).check_together() {
            return Err(SettingsError::InvalidValue {
                key: key.to_string(),
                reason,
            });
        }
        write_object(&path, &stored)?;
        tracing::info!(key, "settings: {key} reset to its default");
        Ok(())
    }

    /// Returns the value of `key` as it would be written in the file.
    pub fn get(&self, key: &str) -> Result<Value, SettingsError> {
        Ok((find_known(key)?.read)(self))
    }

    /// Changes one setting in memory only, with the same checks as
    /// [`Settings::set`]; for callers, such as tests, that run with
    /// settings of their own.
    pub fn apply(&mut self, key: &str, value: &Value) -> Result<(), SettingsError> {
        let invalid = |reason| SettingsError::InvalidValue {
            key: key.to_string(),
            reason,
        };
        let mut changed = self.clone();
        (find_known(key)?.write)(&mut changed, value).map_err(invalid)?;
        changed
            .check_together()
            .map_err(|(_, reason)| invalid(reason))?;
        *self = changed;
        Ok(())
    }

    /// Lists every setting's key with a one-line description, in the order
    /// a settings view shows them.
    pub fn keys() -> impl Iterator<Item = SettingKey> {
        SPECS.iter().map(|spec| SettingKey {
            name: spec.key,
            description: spec.description,
        })
    }

    /// How many times a failed upgrade operation is retried.
    pub fn max_retries(&self) -> u32 {
        self.max_retries
    }

    /// The wait before the first retry.
    pub fn retry_backoff(&self) -> Duration {
        Duration::from_secs(self.retry_backoff)
    }

    /// The longest wait between retries.
    pub fn retry_backoff_cap(&self) -> Duration {
        Duration::from_secs(self.retry_backoff_cap)
    }

    /// Whether retry waits are randomised.
    pub fn retry_jitter(&self) -> bool {
        self.retry_jitter
    }

    /// How long an upgrade operation may take in all.
    pub fn task_timeout(&self) -> Duration {
        Duration::from_secs(self.task_timeout)
    }

    /// How long to wait after flashing before reconnecting.
    pub fn reconnect_delay(&self) -> Duration {
        Duration::from_secs(self.reconnect_delay)
    }

    /// How long to wait between reconnection attempts.
    pub fn retry_delay(&self) -> Duration {
        Duration::from_secs(self.retry_delay)
    }

    /// How many reconnection attempts are made after flashing.
    pub fn reconnect_attempts(&self) -> u32 {
        self.reconnect_attempts
    }

    /// How long the sysupgrade command may run.
    pub fn upgrade_timeout(&self) -> Duration {
        Duration::from_secs(self.upgrade_timeout)
    }

    /// The largest image that may be imported, in bytes, or `None` for no
    /// limit.
    pub fn image_size_limit(&self) -> Option<u64> {
        self.image_size_limit
    }

    /// The image types users added to the built-in table.
    pub fn custom_image_types(&self) -> &[ImageType] {
        &self.custom_image_types
    }

    /// How many upgrade operations of a batch run at the same time.
    pub fn concurrency(&self) -> usize {
        self.concurrency as usize
    }

    /// The least time between two starts of a batch's operations.
    pub fn start_spacing(&self) -> Duration {
        Duration::from_millis(self.start_spacing_ms)
    }

    /// How long to wait for a device's SSH server to answer and log in.
    pub fn ssh_connect_timeout(&self) -> Duration {
        Duration::from_secs(self.ssh_connect_timeout)
    }

    /// How long an ordinary command on a device may run.
    pub fn ssh_command_timeout(&self) -> Duration {
        Duration::from_secs(self.ssh_command_timeout)
    }

    /// Builds settings from a stored object, skipping values that are not
    /// allowed (with a warning), so that one bad value in the file never
    /// keeps the user from setting another key, or from fixing it.
    fn lenient(stored: &Map<String, Value>) -> Settings {
        let mut settings = Settings::default();
        for (key, value) in stored {
            let Some(spec) = find(key) else { continue };
            if let Err(reason) = (spec.write)(&mut settings, value) {
                tracing::warn!(key = %key, "settings: ignoring stored {key}: {reason}");
            }
        }
        settings
    }

    /// Checks the rules that tie settings to each other; on failure returns
    /// the key to blame and why.
    fn check_together(&self) -> Result<(), (&'static str, String)> {
        if self.retry_backoff > self.retry_backoff_cap {
            return Err((
                "retry.backoff_cap",
                format!(
                    "retry.backoff ({} s) must not exceed retry.backoff_cap ({} s)",
                    self.retry_backoff, self.retry_backoff_cap
                ),
            ));
        }
        Ok(())
    }
}

/// Finds the description of `key`, if it is a setting.
fn find(key: &str) -> Option<&'static Spec> {
    SPECS.iter().find(|spec| spec.key == key)
}

/// Finds the description of `key`, or says which keys exist.
fn find_known(key: &str) -> Result<&'static Spec, SettingsError> {
    find(key).ok_or_else(|| SettingsError::UnknownKey {
        key: key.to_string(),
        known: SPECS
            .iter()
            .map(|spec| spec.key)
            .collect::<Vec<_>>()
            .join(", "),
    })
}

/// Checks a whole number within `min..=max`; `unit` completes "a whole
/// number " in the message.
fn whole(value: &Value, min: u64, max: u64, unit: &str) -> Result<u64, String> {
    match value.as_u64() {
        Some(number) if (min..=max).contains(&number) => Ok(number),
        _ => Err(format!(
            "expected a whole number {unit}from {min} to {max}, got {value}"
        )),
    }
}

/// Checks a duration in whole seconds within `min..=max`.
fn seconds(value: &Value, min: u64, max: u64) -> Result<u64, String> {
    whole(value, min, max, "of seconds ")
}

/// Checks a count within `min..=max`.
fn count(value: &Value, min: u32, max: u32) -> Result<u32, String> {
    let number = whole(value, min.into(), max.into(), "")?;
    // In range, so it fits.
    Ok(number as u32)
}

/// Checks a list of custom image types: every field filled in, at least one
/// board each, and no file-name suffix twice.
fn custom_types(value: &Value) -> Result<Vec<ImageType>, String> {
    let types: Vec<ImageType> = serde_json::from_value(value.clone()).map_err(|err| {
        format!(
            "expected a list of {{\"name\": file-name suffix, \"label\": text, \
             \"boards\": [board names]}}: {err}"
        )
    })?;
    for (index, image_type) in types.iter().enumerate() {
        let blank = |text: &str| text.trim().is_empty();
        if blank(&image_type.name) || blank(&image_type.label) {
            return Err(format!("image type {index} needs a name and a label"));
        }
        if image_type.boards.is_empty() || image_type.boards.iter().any(|board| blank(board)) {
            return Err(format!(
                "image type {} needs at least one board, and no blank board names",
                image_type.name
            ));
        }
        if types[..index]
            .iter()
            .any(|earlier| earlier.name == image_type.name)
        {
            return Err(format!("image type {} is listed twice", image_type.name));
        }
    }
    Ok(types)
}

/// Reads the settings file as a JSON object; a missing file is an empty
/// object.
fn read_object(path: &Path) -> Result<Map<String, Value>, SettingsError> {
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Map::new()),
        Err(source) => {
            return Err(SettingsError::Read {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    match serde_json::from_str(&text) {
        Ok(Value::Object(object)) => Ok(object),
        Ok(_) => Err(SettingsError::NotAnObject {
            path: path.to_path_buf(),
        }),
        Err(source) => Err(SettingsError::Parse {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Replaces the settings file with `object` atomically: the new text goes
/// to a temporary file in the same directory, reaches the disk, and is then
/// renamed over the old file.
fn write_object(path: &Path, object: &Map<String, Value>) -> Result<(), SettingsError> {
    let failed = |source| SettingsError::Write {
        path: path.to_path_buf(),
        source,
    };
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    fs::create_dir_all(dir).map_err(failed)?;
    let mut text = serde_json::to_vec_pretty(object)
        .map_err(io::Error::from)
        .map_err(failed)?;
    text.push(b'\n');

    let temporary = dir.join(format!(".{FILE_NAME}.{}.tmp", uuid::Uuid::new_v4()));
    let replaced = fs::File::create_new(&temporary)
        .and_then(|mut file| {
            file.write_all(&text)?;
            file.sync_all()
        })
        .and_then(|()| fs::rename(&temporary, path))
        .and_then(|()| sync_dir(dir));
    if replaced.is_err() {
        // Best effort: the error below is what matters to the caller.
        let _ = fs::remove_file(&temporary);
    }
    replaced.map_err(failed)
}

/// Makes a rename in `dir` durable.
#[cfg(unix)]
fn sync_dir(dir: &Path) -> io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

/// Makes a rename in `dir` durable; Windows commits renames with the file.
#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Every key with its default, as the design gives them.
    const DEFAULTS: &[(&str, &str)] = &[
        ("retry.max_retries", "4"),
        ("retry.backoff", "60"),
        ("retry.backoff_cap", "600"),
        ("retry.jitter", "true"),
        ("task_timeout", "600"),
        ("openwrt.reconnect_delay", "120"),
        ("openwrt.retry_delay", "20"),
        ("openwrt.reconnect_attempts", "15"),
        ("openwrt.upgrade_timeout", "90"),
        ("image.size_limit", "31457280"),
        ("image.custom_types", "[]"),
        ("concurrency", "8"),
        ("batch.start_spacing", "100"),
        ("ssh.connect_timeout", "15"),
        ("ssh.command_timeout", "30"),
    ];

    fn stored(dir: &Path) -> Value {
        serde_json::from_str(&fs::read_to_string(dir.join(FILE_NAME)).unwrap()).unwrap()
    }

    #[test]
    fn defaults_follow_the_design() {
        let dir = tempfile::tempdir().unwrap();
        let settings = Settings::load(dir.path()).unwrap();
        assert_eq!(settings, Settings::default());
        let keys: Vec<_> = Settings::keys().map(|key| key.name).collect();
        let expected: Vec<_> = DEFAULTS.iter().map(|(key, _)| *key).collect();
        assert_eq!(keys, expected);
        for (key, value) in DEFAULTS {
            assert_eq!(settings.get(key).unwrap().to_string(), *value, "{key}");
        }
        assert!(
            !dir.path().join(FILE_NAME).exists(),
            "loading must not create the file"
        );
    }

    #[test]
    fn durations_are_seconds() {
        let settings = Settings::default();
        assert_eq!(settings.retry_backoff(), Duration::from_secs(60));
        assert_eq!(settings.retry_backoff_cap(), Duration::from_secs(600));
        assert_eq!(settings.task_timeout(), Duration::from_secs(600));
        assert_eq!(settings.reconnect_delay(), Duration::from_secs(120));
        assert_eq!(settings.retry_delay(), Duration::from_secs(20));
        assert_eq!(settings.upgrade_timeout(), Duration::from_secs(90));
        assert_eq!(settings.ssh_connect_timeout(), Duration::from_secs(15));
        assert_eq!(settings.ssh_command_timeout(), Duration::from_secs(30));
        assert_eq!(settings.start_spacing(), Duration::from_millis(100));
        assert_eq!(
            (
                settings.max_retries(),
                settings.reconnect_attempts(),
                settings.concurrency()
            ),
            (4, 15, 8)
        );
        assert!(settings.retry_jitter());
        assert_eq!(settings.image_size_limit(), Some(31_457_280));
    }

    #[test]
    fn every_key_is_described_on_one_line() {
        for key in Settings::keys() {
            let text = key.description;
            assert!(!text.is_empty() && !text.contains('\n'), "{}", key.name);
            assert!(text.len() <= 80, "{} description is too long", key.name);
        }
    }

    #[test]
    fn set_values_survive_a_reload() {
        let dir = tempfile::tempdir().unwrap();
        let changes = [
            ("retry.max_retries", "0", json!(0)),
            ("retry.backoff", "5", json!(5)),
            ("retry.backoff_cap", "50", json!(50)),
            ("retry.jitter", "false", json!(false)),
            ("task_timeout", "3600", json!(3600)),
            ("openwrt.reconnect_delay", "0", json!(0)),
            ("openwrt.retry_delay", "1", json!(1)),
            ("openwrt.reconnect_attempts", "3", json!(3)),
            ("openwrt.upgrade_timeout", "10", json!(10)),
            ("image.size_limit", " null ", json!(null)),
            ("concurrency", "64", json!(64)),
            ("batch.start_spacing", "0", json!(0)),
            ("ssh.connect_timeout", "2", json!(2)),
            ("ssh.command_timeout", "5", json!(5)),
            (
                "image.custom_types",
                r#"[{"name": "ubnt-unifi-squashfs-sysupgrade.bin", "label": "UniFi AP",
                    "boards": ["ubnt,unifi", "UBNT-UF"]}]"#,
                json!([{"name": "ubnt-unifi-squashfs-sysupgrade.bin", "label": "UniFi AP",
                        "boards": ["ubnt,unifi", "UBNT-UF"]}]),
            ),
        ];
        for (key, text, _) in &changes {
            Settings::set(dir.path(), key, text).unwrap();
        }

        let settings = Settings::load(dir.path()).unwrap();
        for (key, _, value) in &changes {
            assert_eq!(&settings.get(key).unwrap(), value, "{key}");
            assert_eq!(&stored(dir.path())[key], value, "{key} in the file");
        }
        assert_eq!(settings.image_size_limit(), None);
        assert_eq!(settings.reconnect_delay(), Duration::ZERO);
        assert_eq!(
            settings.custom_image_types()[0].boards,
            ["ubnt,unifi", "UBNT-UF"]
        );
    }

    #[test]
    fn the_file_stays_a_flat_object_shared_with_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        fs::write(&path, r#"{"ui.theme": "dark", "window": {"width": 1200}}"#).unwrap();

        Settings::set(dir.path(), "concurrency", "2").unwrap();
        Settings::set(dir.path(), "concurrency", "3").unwrap();

        assert_eq!(
            stored(dir.path()),
            json!({"ui.theme": "dark", "window": {"width": 1200}, "concurrency": 3})
        );
        assert_eq!(Settings::load(dir.path()).unwrap().concurrency(), 3);
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, [FILE_NAME], "no temporary file may be left behind");
    }

    #[test]
    fn set_creates_the_data_directory() {
        let dir = tempfile::tempdir().unwrap();
        let data_dir = dir.path().join("not").join("yet");
        Settings::set(&data_dir, "retry.jitter", "false").unwrap();
        assert!(!Settings::load(&data_dir).unwrap().retry_jitter());
    }

    #[test]
    fn unknown_key_lists_the_known_ones() {
        let dir = tempfile::tempdir().unwrap();
        let err = Settings::set(dir.path(), "retry.maximum", "3").unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with("unknown setting retry.maximum: the settings are "),
            "{text}"
        );
        for (key, _) in DEFAULTS {
            assert!(text.contains(key), "{key} missing from: {text}");
        }
        assert!(matches!(
            Settings::default().get("nope"),
            Err(SettingsError::UnknownKey { .. })
        ));
        assert!(!dir.path().join(FILE_NAME).exists());
    }

    #[test]
    fn wrong_values_are_refused_with_what_is_allowed() {
        let cases = [
            (
                "retry.max_retries",
                "-1",
                "expected a whole number from 0 to 100, got -1",
            ),
            (
                "retry.max_retries",
                "101",
                "expected a whole number from 0 to 100, got 101",
            ),
            ("retry.jitter", "yes", "expected true or false, got \"yes\""),
            (
                "concurrency",
                "0",
                "expected a whole number from 1 to 1024, got 0",
            ),
            (
                "batch.start_spacing",
                "60001",
                "expected a whole number of milliseconds from 0 to 60000, got 60001",
            ),
            (
                "ssh.connect_timeout",
                "1.5",
                "expected a whole number of seconds from 1 to 600, got 1.5",
            ),
            (
                "task_timeout",
                "ten",
                "expected a whole number of seconds from 1 to 86400, got \"ten\"",
            ),
            (
                "image.size_limit",
                "0",
                "expected null (no limit) or a whole number of bytes from 1 to 4294967296, got 0",
            ),
            (
                "retry.backoff",
                "601",
                "retry.backoff (601 s) must not exceed retry.backoff_cap (600 s)",
            ),
            (
                "image.custom_types",
                r#"[{"name": "a.bin", "label": "A", "boards": []}]"#,
                "image type a.bin needs at least one board, and no blank board names",
            ),
            (
                "image.custom_types",
                r#"[{"name": "a.bin", "label": "A", "boards": ["x"]},
                    {"name": "a.bin", "label": "B", "boards": ["y"]}]"#,
                "image type a.bin is listed twice",
            ),
            (
                "image.custom_types",
                r#"[{"name": " ", "label": "A", "boards": ["x"]}]"#,
                "image type 0 needs a name and a label",
            ),
        ];
        let dir = tempfile::tempdir().unwrap();
        for (key, text, reason) in cases {
            let err = Settings::set(dir.path(), key, text).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!("invalid value for setting {key}: {reason}")
            );
        }
        let err =
            Settings::set(dir.path(), "image.custom_types", r#"[{"name": "a"}]"#).unwrap_err();
        assert!(
            err.to_string()
                .contains("expected a list of {\"name\": file-name suffix"),
            "{err}"
        );
        assert!(
            !dir.path().join(FILE_NAME).exists(),
            "a refused value must not be written"
        );
    }

    #[test]
    fn apply_checks_like_set_and_changes_nothing_on_error() {
        let mut settings = Settings::default();
        settings
            .apply("openwrt.reconnect_delay", &json!(1))
            .unwrap();
        assert_eq!(settings.reconnect_delay(), Duration::from_secs(1));

        let before = settings.clone();
        assert!(settings.apply("retry.backoff_cap", &json!(30)).is_err());
        assert!(settings.apply("concurrency", &json!("8")).is_err());
        assert_eq!(settings, before);
    }

    #[test]
    fn broken_files_are_reported_with_the_key_or_the_reason() {
        let cases = [
            ("{not json", "is not valid JSON"),
            ("[1, 2]", "does not hold a JSON object of key to value"),
            (
                r#"{"retry.max_retries": "four"}"#,
                "has an invalid retry.max_retries: expected a whole number from 0 to 100, \
                 got \"four\"",
            ),
            (
                r#"{"retry.backoff": 700}"#,
                "has an invalid retry.backoff_cap: retry.backoff (700 s) must not exceed \
                 retry.backoff_cap (600 s)",
            ),
        ];
        for (text, expected) in cases {
            let dir = tempfile::tempdir().unwrap();
            fs::write(dir.path().join(FILE_NAME), text).unwrap();
            let err = Settings::load(dir.path()).unwrap_err().to_string();
            assert!(err.contains(expected), "{text}: {err}");
            assert!(err.contains(FILE_NAME), "{err}");
        }
    }

    #[test]
    fn a_bad_stored_value_can_be_fixed_with_set() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        fs::write(&path, r#"{"concurrency": 0, "ssh.connect_timeout": -3}"#).unwrap();

        Settings::set(dir.path(), "concurrency", "4").unwrap();
        Settings::unset(dir.path(), "ssh.connect_timeout").unwrap();

        let settings = Settings::load(dir.path()).unwrap();
        assert_eq!(settings.concurrency(), 4);
        assert_eq!(settings.ssh_connect_timeout(), Duration::from_secs(15));
        assert_eq!(stored(dir.path()), json!({"concurrency": 4}));
    }

    #[test]
    fn unset_refuses_a_default_that_clashes() {
        let dir = tempfile::tempdir().unwrap();
        Settings::set(dir.path(), "retry.backoff_cap", "3000").unwrap();
        Settings::set(dir.path(), "retry.backoff", "1200").unwrap();

        let err = Settings::unset(dir.path(), "retry.backoff_cap").unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid value for setting retry.backoff_cap: \
             retry.backoff (1200 s) must not exceed retry.backoff_cap (600 s)"
        );
        assert_eq!(
            Settings::load(dir.path())
                .unwrap()
                .retry_backoff_cap()
                .as_secs(),
            3000
        );
    }
}
