//! Hints: the line after an error that says what to do about it, for the
//! troubles a user can fix alone (a host key to confirm or forget, a
//! password to store, a keyring to start).
//!
//! The trouble is read from the engine's error types where `fwu` has the
//! error itself, and from an operation's last log line where the engine
//! already turned the error into words. Callers: `main` for every error,
//! `upgrades` for an operation that aborted.

use std::path::Path;

use fwu_engine::actions::EngineError;
use fwu_engine::catalogue::{Catalogue, Device, DeviceAuth};
use fwu_engine::inventory::InventoryError;
use fwu_engine::transport::TransportError;
use fwu_engine::upgrade::UpgradeError;
use fwu_engine::vault::VaultError;

use crate::Failure;

/// What the keyring layer says when there is no keyring at all; it reaches
/// an operation only as text, inside a credential error's reason.
const NO_KEYRING: &str = "no OS keyring is available";

/// A trouble the user can fix, with what is known of where it happened.
#[derive(Debug, PartialEq)]
enum Trouble {
    HostKeyUnknown,
    /// The device's name, when known.
    HostKeyChanged(Option<String>),
    /// The device refused our credentials.
    Refused,
    /// The keyring holds no secret under this entry.
    MissingSecret(String),
    NoKeyring,
}

/// The hint for an error, if it is a trouble the user can fix. Devices an
/// error names by address are looked up in the catalogue of `data_dir`.
pub fn for_error(error: &Failure, data_dir: &Path) -> Option<String> {
    let (trouble, endpoint) = error.chain().find_map(|cause| {
        if let Some(error) = cause.downcast_ref::<EngineError>() {
            engine(error)
        } else if let Some(error) = cause.downcast_ref::<UpgradeError>() {
            upgrade(error)
        } else if let Some(error) = cause.downcast_ref::<TransportError>() {
            transport(error)
        } else if let Some(error) = cause.downcast_ref::<InventoryError>() {
            match error {
                InventoryError::Vault(error) => vault(error),
                _ => None,
            }
        } else {
            cause.downcast_ref::<VaultError>().and_then(vault)
        }
    })?;
    let device = endpoint.and_then(|endpoint| device_at(data_dir, &endpoint));
    let trouble = match trouble {
        Trouble::HostKeyChanged(None) => {
            Trouble::HostKeyChanged(device.as_ref().map(|d| d.name.clone()))
        }
        other => other,
    };
    hint(&trouble, device.as_ref())
}

/// The hint for an operation that ended with `last_line` on `device`.
pub fn for_log_line(last_line: &str, device: &Device) -> Option<String> {
    let trouble = if last_line.contains(NO_KEYRING) {
        Trouble::NoKeyring
    } else if last_line.contains("host key") && last_line.contains("is unknown") {
        Trouble::HostKeyUnknown
    } else if last_line.contains("host key") {
        Trouble::HostKeyChanged(Some(device.name.clone()))
    } else if last_line.contains("refused our credentials") {
        Trouble::Refused
    } else if last_line.contains("OS keyring") {
        Trouble::MissingSecret(credential_entry(device)?.to_string())
    } else {
        return None;
    };
    hint(&trouble, Some(device))
}

fn engine(error: &EngineError) -> Option<(Trouble, Option<String>)> {
    match error {
        EngineError::Upgrade(error) => upgrade(error),
        EngineError::Vault(error) => vault(error),
        _ => None,
    }
}

fn upgrade(error: &UpgradeError) -> Option<(Trouble, Option<String>)> {
    match error {
        UpgradeError::Transport(error) => transport(error),
        _ => None,
    }
}

/// The trouble and, when the error names one, the endpoint it happened on.
fn transport(error: &TransportError) -> Option<(Trouble, Option<String>)> {
    match error {
        TransportError::HostKeyUnknown { .. } => Some((Trouble::HostKeyUnknown, None)),
        TransportError::HostKeyChanged { endpoint, .. } => {
            Some((Trouble::HostKeyChanged(None), Some(endpoint.clone())))
        }
        TransportError::AuthenticationFailed { endpoint, .. } => {
            Some((Trouble::Refused, Some(endpoint.clone())))
        }
        TransportError::Credential { reason, .. } if reason.contains(NO_KEYRING) => {
            Some((Trouble::NoKeyring, None))
        }
        TransportError::Credential { entry, .. } => {
            Some((Trouble::MissingSecret(entry.clone()), None))
        }
        _ => None,
    }
}

fn vault(error: &VaultError) -> Option<(Trouble, Option<String>)> {
    match error {
        VaultError::NoKeyring { .. } => Some((Trouble::NoKeyring, None)),
        _ => None,
    }
}

fn hint(trouble: &Trouble, device: Option<&Device>) -> Option<String> {
    let store = |entry: &str| {
        format!("store the password with: fwu credential set {entry} --password-stdin")
    };
    Some(match trouble {
        Trouble::HostKeyUnknown => {
            "check the fingerprint with the device's owner, then add --accept-new-host-key"
                .to_string()
        }
        Trouble::HostKeyChanged(name) => format!(
            "if the device was reinstalled on purpose: fwu device forget-host-key {}",
            name.as_deref().unwrap_or("NAME")
        ),
        Trouble::MissingSecret(entry) => store(entry),
        Trouble::Refused => match device.map(|d| &d.auth) {
            Some(DeviceAuth::Key { key_file, .. }) => format!(
                "add the public key of {key_file} to the device's authorized keys \
                 (/etc/dropbear/authorized_keys on OpenWrt)"
            ),
            Some(DeviceAuth::Agent) => {
                "check that the SSH agent holds a key the device accepts (ssh-add -l)".to_string()
            }
            Some(DeviceAuth::Password { credential }) => store(credential),
            None => store("ENTRY"),
        },
        Trouble::NoKeyring => no_keyring()?,
    })
}

/// The keyring advice where `.ci/with-session` applies: Linux without a
/// desktop session. Elsewhere the error's own words say what to do.
fn no_keyring() -> Option<String> {
    cfg!(target_os = "linux").then(|| {
        "on a machine without a desktop session run: .ci/with-session bash, and use fwu \
         inside that shell"
            .to_string()
    })
}

/// The vault entry a device logs in with, if it has one.
fn credential_entry(device: &Device) -> Option<&str> {
    match &device.auth {
        DeviceAuth::Password { credential } => Some(credential),
        DeviceAuth::Key { credential, .. } => credential.as_deref(),
        DeviceAuth::Agent => None,
    }
}

/// The device of the catalogue in `data_dir` at an endpoint such as
/// `root@127.0.0.2:22`, if exactly one answers there. No catalogue is
/// created: a hint must not leave files behind.
fn device_at(data_dir: &Path, endpoint: &str) -> Option<Device> {
    let (user, rest) = endpoint.split_once('@')?;
    let (host, port) = rest.rsplit_once(':')?;
    let port: u16 = port.parse().ok()?;
    let file = data_dir.join("catalogue.sqlite");
    if !file.is_file() {
        return None;
    }
    let devices = Catalogue::open(&file).ok()?.devices().ok()?;
    let mut found = devices.into_iter().filter(|device| {
        device.user == user && device.port == port && device.addresses().iter().any(|a| a == host)
    });
    let device = found.next()?;
    found.next().is_none().then_some(device)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(auth: DeviceAuth) -> Device {
        Device {
            id: 1,
            name: "ap1".to_string(),
            site: None,
            tags: vec![],
            host: "127.0.0.2".to_string(),
            alternate_hosts: vec![],
            port: 22,
            user: "root".to_string(),
            auth,
            host_key: None,
            board: None,
            model: None,
            os_identifier: None,
            mac: None,
            boot_id: None,
            uptime: None,
            last_seen: None,
            created_at: String::new(),
        }
    }

    fn password() -> DeviceAuth {
        DeviceAuth::Password {
            credential: "device/ap1/password".to_string(),
        }
    }

    #[test]
    fn errors_buried_in_engine_errors_are_found() {
        let dir = tempfile::tempdir().unwrap();
        let error: Failure =
            EngineError::Upgrade(UpgradeError::Transport(TransportError::Credential {
                entry: "site/acme/password".to_string(),
                reason: "no secret is stored in the OS keyring under site/acme/password"
                    .to_string(),
            }))
            .into();
        assert_eq!(
            for_error(&error, dir.path()).unwrap(),
            "store the password with: fwu credential set site/acme/password --password-stdin"
        );
        let error: Failure = UpgradeError::Transport(TransportError::HostKeyChanged {
            endpoint: "root@127.0.0.2:22".to_string(),
            expected: "a".to_string(),
            presented: "b".to_string(),
        })
        .into();
        assert_eq!(
            for_error(&error, dir.path()).unwrap(),
            "if the device was reinstalled on purpose: fwu device forget-host-key NAME"
        );
        assert!(!dir.path().join("catalogue.sqlite").exists());
        let error: Failure = anyhow::anyhow!("something else");
        assert_eq!(for_error(&error, dir.path()), None);
    }

    #[test]
    fn a_device_is_found_by_its_endpoint() {
        let dir = tempfile::tempdir().unwrap();
        let catalogue = Catalogue::open_in(dir.path()).unwrap();
        catalogue
            .add_device(&fwu_engine::catalogue::NewDevice {
                name: "ap1".to_string(),
                host: "127.0.0.2".to_string(),
                alternate_hosts: vec!["127.0.0.3".to_string()],
                port: 22,
                user: "root".to_string(),
                auth: password(),
                site: None,
                tags: vec![],
            })
            .unwrap();
        let error: Failure = UpgradeError::Transport(TransportError::AuthenticationFailed {
            endpoint: "root@127.0.0.3:22".to_string(),
            user: "root".to_string(),
        })
        .into();
        assert_eq!(
            for_error(&error, dir.path()).unwrap(),
            "store the password with: fwu credential set device/ap1/password --password-stdin"
        );
        let error: Failure = TransportError::HostKeyChanged {
            endpoint: "root@127.0.0.2:22".to_string(),
            expected: "a".to_string(),
            presented: "b".to_string(),
        }
        .into();
        assert_eq!(
            for_error(&error, dir.path()).unwrap(),
            "if the device was reinstalled on purpose: fwu device forget-host-key ap1"
        );
    }

    #[test]
    fn log_lines_of_aborted_operations_give_hints() {
        let ap1 = device(password());
        let store = "store the password with: fwu credential set device/ap1/password \
                     --password-stdin";
        let cases = [
            (
                "aborted: host key of root@127.0.0.2:22 is unknown (SHA256:x); accept it \
                 explicitly to pin it",
                Some(
                    "check the fingerprint with the device's owner, then add \
                      --accept-new-host-key",
                ),
            ),
            (
                "aborted: host key of root@127.0.0.2:22 has changed: pinned a, presented b",
                Some("if the device was reinstalled on purpose: fwu device forget-host-key ap1"),
            ),
            (
                "aborted: root@127.0.0.2:22 refused our credentials for user root",
                Some(store),
            ),
            (
                "aborted: cannot read the secret device/ap1/password from the OS keyring: no \
                 secret is stored in the OS keyring under device/ap1/password",
                Some(store),
            ),
            ("success: the device runs OpenWrt 24.10.0", None),
        ];
        for (line, expected) in cases {
            assert_eq!(for_log_line(line, &ap1).as_deref(), expected, "{line}");
        }
        let keyless = for_log_line(
            "aborted: cannot read the secret x from the OS keyring: no OS keyring is available: y",
            &ap1,
        );
        assert_eq!(keyless, no_keyring());
    }
}
