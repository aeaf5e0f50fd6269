//! Shared credentials: one keyring entry, such as a site's root password,
//! that many devices log in with, so that an admin types it once.
//!
//! The keyring cannot list its entries, so the list of shared credentials
//! is the list of entry names the catalogue's devices refer to, each with
//! whether the keyring holds a secret under it. Secrets pass from the
//! caller to the vault and go nowhere else.

use serde::Serialize;

use super::InventoryError;
use crate::catalogue::Catalogue;
use crate::vault::Vault;

/// The longest entry name accepted; the keyring takes more, but a longer
/// name is a paste accident.
const MAX_ENTRY: usize = 256;

/// A credential entry the catalogue refers to.
#[derive(Clone, Debug, Serialize)]
pub struct SharedCredential {
    pub entry: String,
    /// The devices that log in with it, by name.
    pub devices: Vec<String>,
    /// Whether the keyring holds a secret under the entry; a device whose
    /// entry is missing cannot log in.
    pub stored: bool,
}

/// Stores `secret` under `entry`, replacing what was there. Every device
/// naming the entry uses the new secret from its next connection.
pub fn set(vault: &Vault, entry: &str, secret: &str) -> Result<(), InventoryError> {
    check_entry(entry)?;
    if secret.is_empty() {
        return Err(InventoryError::BadCredential {
            entry: entry.to_string(),
            reason: "the secret is empty".to_string(),
        });
    }
    vault.set(entry, secret)?;
    tracing::info!(entry, "shared credential stored");
    Ok(())
}

/// Removes the secret under `entry`. While devices still name it, it is
/// only removed when `even_in_use` says so, since those devices could no
/// longer log in; the refusal names them.
pub fn delete(
    catalogue: &Catalogue,
    vault: &Vault,
    entry: &str,
    even_in_use: bool,
) -> Result<(), InventoryError> {
    check_entry(entry)?;
    let users = catalogue
        .credential_uses()?
        .into_iter()
        .find(|used| used.entry == entry)
        .map(|used| used.devices)
        .unwrap_or_default();
    if !users.is_empty() && !even_in_use {
        return Err(InventoryError::BadCredential {
            entry: entry.to_string(),
            reason: format!(
                "still used by {} device(s) ({}); they could no longer log in",
                users.len(),
                users.join(", ")
            ),
        });
    }
    vault.delete(entry)?;
    tracing::info!(entry, devices = users.len(), "shared credential deleted");
    Ok(())
}

/// Every entry the catalogue's devices refer to, with its devices and
/// whether the keyring holds it.
pub fn list(catalogue: &Catalogue, vault: &Vault) -> Result<Vec<SharedCredential>, InventoryError> {
    catalogue
        .credential_uses()?
        .into_iter()
        .map(|used| {
            Ok(SharedCredential {
                stored: vault.exists(&used.entry)?,
                entry: used.entry,
                devices: used.devices,
            })
        })
        .collect()
}

/// Refuses names the keyring or a terminal would garble.
fn check_entry(entry: &str) -> Result<(), InventoryError> {
    let reason = if entry.trim().is_empty() {
        Some("the name is empty")
    } else if entry.trim() != entry {
        Some("the name begins or ends with white space")
    } else if entry.chars().any(char::is_control) {
        Some("the name holds a control character")
    } else if entry.chars().count() > MAX_ENTRY {
        Some("the name is longer than 256 characters")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(InventoryError::BadCredential {
            entry: entry.to_string(),
            reason: reason.to_string(),
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_names_are_checked_before_the_keyring() {
        // A vault whose service nobody uses: a call that reached the
        // keyring would fail differently (or not at all).
        let vault = Vault::with_service("fwu-test-never-contacted");
        for entry in ["", " site/a", "site/\n", &"x".repeat(300)] {
            let error = set(&vault, entry, "secret").unwrap_err();
            assert!(
                matches!(error, InventoryError::BadCredential { .. }),
                "{entry:?}: {error}"
            );
        }
        let error = set(&vault, "site/acme/password", "").unwrap_err();
        assert!(error.to_string().contains("empty"), "{error}");
    }

    #[test]
    fn an_entry_in_use_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let catalogue = Catalogue::open_in(dir.path()).unwrap();
        crate::inventory::csv::import(
            &catalogue,
            b"name,host,credential\nap1,127.0.0.1,site/acme/password\n",
            Default::default(),
        )
        .unwrap();
        let vault = Vault::with_service("fwu-test-never-contacted");
        let error = delete(&catalogue, &vault, "site/acme/password", false).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("still used by 1 device(s) (ap1)"),
            "{error}"
        );
    }
}
