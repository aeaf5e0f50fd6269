//! The vault: secrets (device and site passwords, key passphrases) kept in
//! the operating system's keyring, never in the catalogue.
//!
//! The catalogue stores only an entry *name* such as `device/ap1/password`
//! or `site/acme/password`; the vault turns that name into the secret when a
//! connection needs it. A secret passes through here and nowhere else: it is
//! not logged, not put in an error, not written to SQLite and never placed
//! on a command line.
//!
//! Every call blocks on the keyring (a D-Bus round trip on Linux, a system
//! call on macOS and Windows); async callers run it with
//! `tokio::task::spawn_blocking`. What differs between operating systems is
//! kept in the `platform` module at the end of this file.

use thiserror::Error;

/// The keyring service under which the application keeps its entries.
pub const DEFAULT_SERVICE: &str = "firmware-upgrader";

/// Why the vault could not do what it was asked.
#[derive(Debug, Error)]
pub enum VaultError {
    /// The keyring holds no entry of this name for this service.
    #[error("no secret is stored in the OS keyring under {name}")]
    NotFound {
        /// The entry name that was looked up.
        name: String,
    },
    /// There is no keyring to talk to: no Secret Service on Linux (or no
    /// session bus to find one on), no reachable Keychain or Credential
    /// Manager elsewhere.
    #[error(
        "no OS keyring is available: {}: {detail}",
        platform::NO_KEYRING_ADVICE
    )]
    NoKeyring {
        /// What the keyring layer reported, for diagnosis.
        detail: String,
    },
    /// The keyring is there but refused or failed the request for this
    /// entry.
    #[error("the OS keyring failed on entry {name}: {detail}")]
    Other {
        /// The entry name the request was about.
        name: String,
        /// What went wrong, in words (never the secret).
        detail: String,
    },
}

/// Secrets of one keyring service, addressed by entry name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vault {
    service: String,
}

impl Default for Vault {
    fn default() -> Self {
        Vault::with_service(DEFAULT_SERVICE)
    }
}

impl Vault {
    /// Opens the application's own vault, under [`DEFAULT_SERVICE`].
    pub fn new() -> Vault {
        Vault::default()
    }

    /// Opens a vault under another keyring service; tests use a service of
    /// their own so that they never touch the user's entries or each
    /// other's.
    pub fn with_service(service: impl Into<String>) -> Vault {
        Vault {
            service: service.into(),
        }
    }

    /// Returns the keyring service this vault's entries live under.
    pub fn service(&self) -> &str {
        &self.service
    }

    /// Stores `secret` under `name`, replacing any secret stored there.
    pub fn set(&self, name: &str, secret: &str) -> Result<(), VaultError> {
        let result = self.entry(name)?.set_password(secret);
        self.finish("set", name, result)
    }

    /// Returns the secret stored under `name`.
    pub fn get(&self, name: &str) -> Result<String, VaultError> {
        let result = self.entry(name)?.get_password();
        self.finish("get", name, result)
    }

    /// Removes the secret stored under `name`; [`VaultError::NotFound`] when
    /// there was none, which callers tidying up may ignore.
    pub fn delete(&self, name: &str) -> Result<(), VaultError> {
        let result = self.entry(name)?.delete_credential();
        self.finish("delete", name, result)
    }

    /// Tells whether a secret is stored under `name`, without returning it.
    pub fn exists(&self, name: &str) -> Result<bool, VaultError> {
        let result = self.entry(name)?.get_attributes();
        match self.finish("check", name, result) {
            Ok(_) => Ok(true),
            Err(VaultError::NotFound { .. }) => Ok(false),
            Err(err) => Err(err),
        }
    }

    /// Builds the keyring entry for `name`. No keyring is contacted yet.
    fn entry(&self, name: &str) -> Result<keyring::Entry, VaultError> {
        if name.is_empty() {
            return Err(VaultError::Other {
                name: String::new(),
                detail: "an entry name must not be empty".to_string(),
            });
        }
        keyring::Entry::new(&self.service, name).map_err(|err| map_error(name, err))
    }

    /// Maps a keyring result into the vault's terms and logs the outcome by
    /// entry name only.
    fn finish<T>(
        &self,
        action: &str,
        name: &str,
        result: keyring::Result<T>,
    ) -> Result<T, VaultError> {
        match result {
            Ok(value) => {
                tracing::debug!(service = %self.service, entry = name, "vault {action}: done");
                Ok(value)
            }
            Err(err) => {
                let err = map_error(name, err);
                tracing::debug!(service = %self.service, entry = name, "vault {action}: {err}");
                Err(err)
            }
        }
    }
}

/// Translates a keyring error about entry `name` into a [`VaultError`],
/// by variant and never by message text.
fn map_error(name: &str, err: keyring::Error) -> VaultError {
    if let Some(detail) = platform::keyring_absent(&err) {
        return VaultError::NoKeyring { detail };
    }
    let other = |detail: String| VaultError::Other {
        name: name.to_string(),
        detail,
    };
    match err {
        keyring::Error::NoEntry => VaultError::NotFound {
            name: name.to_string(),
        },
        keyring::Error::NoStorageAccess(cause) => {
            other(format!("{}: {cause}", platform::ACCESS_REFUSED_ADVICE))
        }
        keyring::Error::PlatformFailure(cause) => other(cause.to_string()),
        // The bytes are the secret itself, so they stay out of the message.
        keyring::Error::BadEncoding(_) => other("the stored secret is not UTF-8 text".to_string()),
        keyring::Error::TooLong(attribute, limit) => other(format!(
            "the {attribute} is longer than the keyring's limit of {limit}"
        )),
        keyring::Error::Invalid(attribute, reason) => {
            other(format!("the {attribute} is not accepted: {reason}"))
        }
        keyring::Error::Ambiguous(items) => other(format!(
            "{} keyring items match this entry; remove all but one",
            items.len()
        )),
        // keyring::Error is non-exhaustive; a future variant still gets a
        // readable message.
        err => other(err.to_string()),
    }
}

/// What differs between operating systems: which errors mean "there is no
/// keyring at all", and what the user should do about it.
mod platform {
    /// The advice in a [`super::VaultError::NoKeyring`] message.
    #[cfg(any(target_os = "linux", target_os = "freebsd", target_os = "openbsd"))]
    pub(super) const NO_KEYRING_ADVICE: &str = "install and start gnome-keyring (or another \
        Secret Service) and unlock it; without a desktop session, run the program under \
        `dbus-run-session` with an unlocked gnome-keyring-daemon (see .ci/with-session)";

    /// The advice in a [`super::VaultError::NoKeyring`] message.
    #[cfg(target_os = "macos")]
    pub(super) const NO_KEYRING_ADVICE: &str =
        "the login Keychain could not be reached; log in to a desktop session and unlock it";

    /// The advice in a [`super::VaultError::NoKeyring`] message.
    #[cfg(target_os = "windows")]
    pub(super) const NO_KEYRING_ADVICE: &str =
        "the Windows Credential Manager could not be reached; run as a logged-in user";

    /// The advice in a [`super::VaultError::NoKeyring`] message.
    #[cfg(not(any(
        target_os = "linux",
        target_os = "freebsd",
        target_os = "openbsd",
        target_os = "macos",
        target_os = "windows",
    )))]
    pub(super) const NO_KEYRING_ADVICE: &str =
        "this operating system has no keyring the application supports";

    /// What is said when the keyring is there but will not open.
    #[cfg(any(target_os = "linux", target_os = "freebsd", target_os = "openbsd"))]
    pub(super) const ACCESS_REFUSED_ADVICE: &str = "the keyring is locked or has no default \
        collection; unlock the login keyring (gnome-keyring-daemon --unlock does it without \
        a desktop)";

    /// What is said when the keyring is there but will not open.
    #[cfg(any(target_os = "macos", target_os = "ios"))]
    pub(super) const ACCESS_REFUSED_ADVICE: &str =
        "access to the Keychain was refused; unlock it and allow access when macOS asks";

    /// What is said when the keyring is there but will not open.
    #[cfg(not(any(
        target_os = "linux",
        target_os = "freebsd",
        target_os = "openbsd",
        target_os = "macos",
        target_os = "ios",
    )))]
    pub(super) const ACCESS_REFUSED_ADVICE: &str = "access to the OS keyring was refused";

    /// D-Bus errors that mean no session bus, or no Secret Service on it.
    /// They are the protocol's own error names, so they do not change with
    /// the language or version of the bus.
    #[cfg(any(target_os = "linux", target_os = "freebsd", target_os = "openbsd"))]
    const ABSENT_BUS_ERRORS: &[&str] = &[
        // Connecting to the session bus: the address is missing, malformed,
        // or names a socket nobody listens on; or autolaunching a bus failed.
        "org.freedesktop.DBus.Error.BadAddress",
        "org.freedesktop.DBus.Error.FileNotFound",
        "org.freedesktop.DBus.Error.NoServer",
        "org.freedesktop.DBus.Error.NoNetwork",
        "org.freedesktop.DBus.Error.Disconnected",
        // The bus is there but nobody provides org.freedesktop.secrets, and
        // the bus cannot start a provider (or the one it started died).
        "org.freedesktop.DBus.Error.ServiceUnknown",
        "org.freedesktop.DBus.Error.NameHasNoOwner",
    ];

    /// What libdbus reports when no bus address is set and it cannot start
    /// a bus itself (no X11 display). A Secret Service may return the same
    /// name for an encryption it does not offer, so the name alone means
    /// "no bus" only when no bus address was set.
    #[cfg(any(target_os = "linux", target_os = "freebsd", target_os = "openbsd"))]
    const AUTOLAUNCH_REFUSED: &str = "org.freedesktop.DBus.Error.NotSupported";

    /// Tells whether this process was given a session bus address.
    #[cfg(any(target_os = "linux", target_os = "freebsd", target_os = "openbsd"))]
    fn session_address_set() -> bool {
        std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_some_and(|address| !address.is_empty())
    }

    /// Returns what the keyring layer said when `err` means there is no
    /// keyring to talk to, or `None` when it is any other failure.
    #[cfg(any(target_os = "linux", target_os = "freebsd", target_os = "openbsd"))]
    pub(super) fn keyring_absent(err: &keyring::Error) -> Option<String> {
        use dbus_secret_service::Error as SsError;

        let keyring::Error::PlatformFailure(cause) = err else {
            return None;
        };
        match cause.downcast_ref::<SsError>()? {
            SsError::Unavailable => Some("no D-Bus session or Secret Service found".to_string()),
            SsError::Dbus(bus) => {
                let name = bus.name()?;
                let absent = ABSENT_BUS_ERRORS.contains(&name)
                    || name.starts_with("org.freedesktop.DBus.Error.Spawn.")
                    || (name == AUTOLAUNCH_REFUSED && !session_address_set());
                absent.then(|| format!("{name}: {}", bus.message().unwrap_or("no message")))
            }
            _ => None,
        }
    }

    /// Returns what the keyring layer said when `err` means there is no
    /// keyring to talk to, or `None` when it is any other failure.
    // FIXME: on macOS and Windows every keyring failure is reported as
    // `Other`, even one caused by a missing Keychain, because nobody has yet
    // seen which platform codes such a machine returns; the user gets the
    // system's words instead of advice.
    #[cfg(not(any(target_os = "linux", target_os = "freebsd", target_os = "openbsd")))]
    pub(super) fn keyring_absent(_err: &keyring::Error) -> Option<String> {
        None
    }
}

#[cfg(test)]
mod tests {
    //! The round-trip tests talk to a real Secret Service: run them under
    //! `.ci/with-session`. The error-mapping tests need no keyring.

    use super::*;

    /// Unwraps a vault result, panicking with the error's own words, which
    /// say how to get a keyring when there is none.
    fn ok<T>(result: Result<T, VaultError>) -> T {
        result.unwrap_or_else(|err| panic!("{err}"))
    }

    /// A vault under a service of its own, so tests running in parallel
    /// (and the user's real entries) never meet.
    fn isolated_vault() -> Vault {
        Vault::with_service(format!("fwu-test-{}", uuid::Uuid::new_v4()))
    }

    #[test]
    fn secret_round_trips_and_is_deleted() {
        let vault = isolated_vault();
        let name = "device/ap1/password";

        assert!(!ok(vault.exists(name)));
        ok(vault.set(name, "first secret"));
        assert!(ok(vault.exists(name)));
        assert_eq!(ok(vault.get(name)), "first secret");

        ok(vault.set(name, "second secret"));
        assert_eq!(ok(vault.get(name)), "second secret");

        ok(vault.delete(name));
        assert!(!ok(vault.exists(name)));
        assert!(matches!(vault.get(name), Err(VaultError::NotFound { name: n }) if n == name));
        assert!(matches!(
            vault.delete(name),
            Err(VaultError::NotFound { .. })
        ));
    }

    #[test]
    fn entries_and_services_are_kept_apart() {
        let vault = isolated_vault();
        let other_service = isolated_vault();
        let entries = [
            ("device/ap1/password", "p@ss word with spaces"),
            ("site/acme/password", "pässwörd ünïcode ✓"),
            (
                "device/ap1/passphrase",
                "'quote\" $dollar `tick` \\ backslash\nnewline",
            ),
        ];
        for (name, secret) in entries {
            ok(vault.set(name, secret));
        }

        for (name, secret) in entries {
            assert_eq!(ok(vault.get(name)), secret, "entry {name}");
            assert!(!ok(other_service.exists(name)), "entry {name} leaked");
        }
        for (name, _) in entries {
            ok(vault.delete(name));
        }
    }

    #[test]
    fn empty_name_is_refused_before_the_keyring() {
        let err = isolated_vault().set("", "secret").unwrap_err();
        assert_eq!(
            err.to_string(),
            "the OS keyring failed on entry : an entry name must not be empty"
        );
    }

    #[test]
    fn missing_entry_maps_to_not_found() {
        let err = map_error("site/acme/password", keyring::Error::NoEntry);
        assert_eq!(
            err.to_string(),
            "no secret is stored in the OS keyring under site/acme/password"
        );
    }

    #[test]
    fn undecodable_secret_stays_out_of_the_message() {
        let err = map_error(
            "device/ap1/password",
            keyring::Error::BadEncoding(vec![0xff, b'x']),
        );
        assert!(matches!(err, VaultError::Other { .. }));
        assert_eq!(
            err.to_string(),
            "the OS keyring failed on entry device/ap1/password: \
             the stored secret is not UTF-8 text"
        );
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn bus_errors_are_mapped_by_name() {
        use dbus_secret_service::Error as SsError;

        let bus = |name: &str| {
            let cause = SsError::Dbus(dbus::Error::new_custom(name, "reported by the bus"));
            keyring::Error::PlatformFailure(Box::new(cause))
        };
        let cases = [
            ("org.freedesktop.DBus.Error.FileNotFound", true),
            ("org.freedesktop.DBus.Error.NoServer", true),
            ("org.freedesktop.DBus.Error.ServiceUnknown", true),
            ("org.freedesktop.DBus.Error.Spawn.ChildExited", true),
            ("org.freedesktop.DBus.Error.AccessDenied", false),
            ("org.freedesktop.Secret.Error.NoSuchObject", false),
        ];
        for (name, absent) in cases {
            let err = map_error("device/ap1/password", bus(name));
            assert_eq!(
                matches!(err, VaultError::NoKeyring { .. }),
                absent,
                "{name}: {err}"
            );
        }

        let unavailable = keyring::Error::PlatformFailure(Box::new(SsError::Unavailable));
        assert!(matches!(
            map_error("x", unavailable),
            VaultError::NoKeyring { .. }
        ));
        let locked = keyring::Error::NoStorageAccess(Box::new(SsError::Locked));
        assert_eq!(
            map_error("site/acme/password", locked).to_string(),
            "the OS keyring failed on entry site/acme/password: the keyring is locked or has no \
             default collection; unlock the login keyring (gnome-keyring-daemon --unlock does it \
             without a desktop): Secret Service: object locked"
        );
    }

    /// Set in the child process that [`no_session_bus_means_no_keyring`]
    /// starts; its value says how the session bus is made unreachable.
    const CHILD_MODE: &str = "FWU_VAULT_TEST_NO_BUS";

    /// The line a child prints once it has checked the error, so that the
    /// parent can tell a real pass from a child that ran no test at all.
    const CHILD_CONFIRMS: &str = "vault child: no keyring confirmed";

    /// With no reachable session bus the vault says there is no keyring and
    /// what to do. libdbus reads the bus address once per process, so each
    /// case runs this same test again in a child process whose environment
    /// has no usable bus.
    #[cfg(target_os = "linux")]
    #[test]
    fn no_session_bus_means_no_keyring() {
        if std::env::var_os(CHILD_MODE).is_some() {
            let err = Vault::with_service("fwu-test-no-bus")
                .get("device/ap1/password")
                .unwrap_err();
            assert!(matches!(err, VaultError::NoKeyring { .. }), "{err:?}");
            let text = err.to_string();
            assert!(
                text.starts_with(
                    "no OS keyring is available: install and start gnome-keyring \
                     (or another Secret Service)"
                ),
                "{text}"
            );
            println!("{CHILD_CONFIRMS}: {text}");
            return;
        }

        let missing_socket = std::env::temp_dir()
            .join(format!("fwu-no-bus-{}", uuid::Uuid::new_v4()))
            .join("bus");
        let cases = [
            (
                "socket",
                Some(format!("unix:path={}", missing_socket.display())),
            ),
            ("unset", None),
        ];
        for (mode, address) in cases {
            let mut child = std::process::Command::new(std::env::current_exe().unwrap());
            child
                .args(["--exact", "vault::tests::no_session_bus_means_no_keyring"])
                .args(["--nocapture", "--test-threads=1"])
                .env(CHILD_MODE, mode)
                // Without a display, libdbus cannot autolaunch a bus either.
                .env_remove("DISPLAY");
            match address {
                Some(address) => child.env("DBUS_SESSION_BUS_ADDRESS", address),
                None => child.env_remove("DBUS_SESSION_BUS_ADDRESS"),
            };
            let output = child.output().unwrap();
            let stdout = String::from_utf8_lossy(&output.stdout);
            assert!(
                output.status.success() && stdout.contains(CHILD_CONFIRMS),
                "bus {mode}: child failed:\n{stdout}\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
    }
}
