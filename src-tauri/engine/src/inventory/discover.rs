//! Discovery: finding the OpenWrt devices on an address range, so that a
//! fleet need not be typed in.
//!
//! Every address of the range gets a TCP connection to the SSH port with a
//! short time limit; where one opens, an SSH handshake follows. With the
//! user's consent to accept unknown host keys, the scan logs in with the
//! given login and runs the identity probe; a device that reports a board
//! or an OpenWrt release counts as found. Without that consent nothing is
//! sent but the handshake, and the host key's fingerprint is reported so
//! that the user can check it. The scan is bounded three ways: a range of
//! at most [`MAX_ADDRESSES`], a number of addresses in flight at once, and
//! an overall time limit after which it stops and reports what it found.

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::net::TcpStream;
use tokio::task::JoinSet;

use super::InventoryError;
use crate::catalogue::{Catalogue, Device, DeviceAuth, NewDevice};
use crate::transport::{Auth, Connector, Endpoint, HostKeyCheck, Target, TransportError};
use crate::upgrade::identity::{self, Identity};
use crate::vault::Vault;

/// The most addresses one scan covers: a /16.
pub const MAX_ADDRESSES: u64 = 65_536;

/// The host name OpenWrt ships with; it tells devices apart no better
/// than no host name at all.
const DEFAULT_HOSTNAMES: [&str; 2] = ["OpenWrt", "LEDE"];

/// A range of IPv4 addresses, both ends included.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AddressRange {
    first: u32,
    last: u32,
}

impl AddressRange {
    /// Reads `127.0.0.0/24` (network and broadcast addresses left out for
    /// prefixes up to /30), `127.0.0.5-127.0.0.20` or `127.0.0.5-20`.
    pub fn parse(text: &str) -> Result<AddressRange, InventoryError> {
        let bad = |reason: &str| InventoryError::BadRange {
            range: text.to_string(),
            reason: reason.to_string(),
        };
        let address = |part: &str| -> Result<u32, InventoryError> {
            part.trim()
                .parse::<Ipv4Addr>()
                .map(u32::from)
                .map_err(|_| bad("not an IPv4 address, CIDR block or a-b range"))
        };
        let range = if let Some((base, prefix)) = text.split_once('/') {
            let prefix: u32 = prefix
                .trim()
                .parse()
                .ok()
                .filter(|p| *p <= 32)
                .ok_or_else(|| bad("the prefix length is not a number from 0 to 32"))?;
            let base = address(base)?;
            let mask = if prefix == 0 {
                0
            } else {
                u32::MAX << (32 - prefix)
            };
            let (network, broadcast) = (base & mask, base | !mask);
            if prefix <= 30 {
                AddressRange {
                    first: network + 1,
                    last: broadcast - 1,
                }
            } else {
                AddressRange {
                    first: network,
                    last: broadcast,
                }
            }
        } else if let Some((from, to)) = text.split_once('-') {
            let first = address(from)?;
            let last = if to.contains('.') {
                address(to)?
            } else {
                let octet: u8 = to
                    .trim()
                    .parse()
                    .map_err(|_| bad("the end of the range is not an address or a number"))?;
                (first & 0xFFFF_FF00) | u32::from(octet)
            };
            if last < first {
                return Err(bad("the range ends before it begins"));
            }
            AddressRange { first, last }
        } else {
            let one = address(text)?;
            AddressRange {
                first: one,
                last: one,
            }
        };
        if range.len() > MAX_ADDRESSES {
            return Err(InventoryError::BadRange {
                range: text.to_string(),
                reason: format!(
                    "{} addresses is more than a scan covers ({MAX_ADDRESSES}, a /16); \
                     scan it in parts",
                    range.len()
                ),
            });
        }
        Ok(range)
    }

    /// How many addresses the range holds.
    pub fn len(&self) -> u64 {
        u64::from(self.last - self.first) + 1
    }

    /// Whether the range holds no address; never true for a parsed range.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Every address, in order.
    pub fn addresses(&self) -> impl Iterator<Item = Ipv4Addr> {
        (self.first..=self.last).map(Ipv4Addr::from)
    }
}

impl std::fmt::Display for AddressRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}-{}",
            Ipv4Addr::from(self.first),
            Ipv4Addr::from(self.last)
        )
    }
}

/// How discovered devices are logged into, and how they log in once added.
#[derive(Clone, Debug)]
pub enum Login {
    /// A password in the vault under this entry, shared by the devices.
    SharedPassword(String),
    /// A private key file without passphrase.
    KeyFile(PathBuf),
    /// The keys of the SSH agent.
    Agent,
}

impl Login {
    /// Reads the secret the login needs, once for the whole scan.
    pub async fn resolve(&self, vault: &Vault) -> Result<Auth, InventoryError> {
        Ok(match self {
            Login::SharedPassword(entry) => {
                let (vault, entry) = (vault.clone(), entry.clone());
                let secret = tokio::task::spawn_blocking(move || vault.get(&entry))
                    .await
                    .map_err(|error| InventoryError::BadCredential {
                        entry: String::new(),
                        reason: format!("the keyring lookup ended abnormally: {error}"),
                    })??;
                Auth::Password(secret)
            }
            Login::KeyFile(path) => Auth::KeyFile {
                path: path.clone(),
                passphrase: None,
            },
            Login::Agent => Auth::Agent,
        })
    }

    fn device_auth(&self) -> DeviceAuth {
        match self {
            Login::SharedPassword(entry) => DeviceAuth::Password {
                credential: entry.clone(),
            },
            Login::KeyFile(path) => DeviceAuth::Key {
                key_file: path.display().to_string(),
                credential: None,
            },
            Login::Agent => DeviceAuth::Agent,
        }
    }
}

/// How a scan runs.
#[derive(Clone, Debug)]
pub struct DiscoverOptions {
    /// The SSH port tried on every address.
    pub port: u16,
    pub user: String,
    /// Addresses in flight at once.
    pub concurrency: usize,
    /// How long a TCP connection to one address may take to open.
    pub connect_timeout: Duration,
    /// How long the handshake, the login and the probe command of one
    /// address may take.
    pub login_timeout: Duration,
    /// When the whole scan stops, finished or not.
    pub time_limit: Duration,
    /// Log in even though the host key is not known, and pin it when the
    /// device is added.
    pub accept_new_host_key: bool,
}

impl Default for DiscoverOptions {
    fn default() -> DiscoverOptions {
        DiscoverOptions {
            port: 22,
            user: "root".to_string(),
            concurrency: 64,
            connect_timeout: Duration::from_secs(1),
            login_timeout: Duration::from_secs(10),
            time_limit: Duration::from_secs(60),
            accept_new_host_key: false,
        }
    }
}

/// An address where an SSH server answered.
#[derive(Clone, Debug, Serialize)]
pub struct Found {
    pub address: String,
    pub port: u16,
    /// Whether it identified itself as OpenWrt (a board or a release).
    pub openwrt: bool,
    /// What the identity probe read, when the login succeeded.
    pub identity: Option<Identity>,
    /// The host name the device reports.
    pub hostname: Option<String>,
    pub host_key_fingerprint: Option<String>,
    /// The host key as OpenSSH text, pinned when the device is added.
    pub host_key: Option<String>,
    /// Why it was not identified, when it was not.
    pub note: Option<String>,
}

/// What a scan found.
#[derive(Clone, Debug, Serialize)]
pub struct Discovery {
    pub range: String,
    /// Addresses in the range.
    pub total: u64,
    /// Addresses whose check ended before the time limit.
    pub scanned: u64,
    /// Whether every address was checked within the time limit.
    pub complete: bool,
    pub elapsed_ms: u64,
    /// OpenWrt devices, by address.
    pub devices: Vec<Found>,
    /// SSH servers that were not identified as OpenWrt, by address.
    pub others: Vec<Found>,
}

/// Scans `range`. Finishes when every address is checked or the time limit
/// passes, whichever comes first; what is in flight then is abandoned.
pub async fn discover(
    range: &AddressRange,
    options: &DiscoverOptions,
    auth: Auth,
    connector: Arc<dyn Connector>,
) -> Discovery {
    let started = Instant::now();
    let deadline = tokio::time::Instant::now() + options.time_limit;
    let concurrency = options.concurrency.max(1);
    let mut addresses = range.addresses();
    let mut running = JoinSet::new();
    let mut scanned = 0;
    let mut answers = Vec::new();
    let mut complete = true;
    tracing::info!(%range, concurrency, limit_s = options.time_limit.as_secs(), "discovery");
    loop {
        while running.len() < concurrency {
            let Some(address) = addresses.next() else {
                break;
            };
            let (options, auth, connector) = (options.clone(), auth.clone(), connector.clone());
            running.spawn(async move { check_address(address, &options, auth, &*connector).await });
        }
        match tokio::time::timeout_at(deadline, running.join_next()).await {
            Ok(None) => break,
            Ok(Some(joined)) => {
                scanned += 1;
                match joined {
                    Ok(Some(found)) => answers.push(found),
                    Ok(None) => {}
                    Err(error) => tracing::warn!("a discovery task ended abnormally: {error}"),
                }
            }
            Err(_) => {
                complete = false;
                tracing::info!(%range, scanned, "discovery stopped at its time limit");
                running.abort_all();
                break;
            }
        }
    }
    // Aborted tasks end at their next await; waiting for them keeps no
    // connection of this scan open after it returns.
    while running.join_next().await.is_some() {}
    answers.sort_by_key(|found| {
        found
            .address
            .parse::<Ipv4Addr>()
            .map(u32::from)
            .unwrap_or(0)
    });
    let (devices, others) = answers.into_iter().partition(|found| found.openwrt);
    Discovery {
        range: range.to_string(),
        total: range.len(),
        scanned,
        complete,
        elapsed_ms: started.elapsed().as_millis() as u64,
        devices,
        others,
    }
}

/// Checks one address; `None` when nothing listens on the port.
async fn check_address(
    address: Ipv4Addr,
    options: &DiscoverOptions,
    auth: Auth,
    connector: &dyn Connector,
) -> Option<Found> {
    let socket = (address, options.port);
    match tokio::time::timeout(options.connect_timeout, TcpStream::connect(socket)).await {
        Ok(Ok(stream)) => drop(stream),
        _ => return None,
    }
    let mut found = Found {
        address: address.to_string(),
        port: options.port,
        openwrt: false,
        identity: None,
        hostname: None,
        host_key_fingerprint: None,
        host_key: None,
        note: None,
    };
    let target = Target {
        endpoint: Endpoint {
            host: address.to_string(),
            port: options.port,
            user: options.user.clone(),
        },
        auth,
        host_key: if options.accept_new_host_key {
            HostKeyCheck::AcceptNew
        } else {
            HostKeyCheck::RefuseUnknown
        },
        connect_timeout: options.login_timeout,
    };
    let (mut session, key) = match connector.connect(&target).await {
        Ok(connected) => connected,
        Err(TransportError::HostKeyUnknown { fingerprint, .. }) => {
            found.host_key_fingerprint = Some(fingerprint);
            found.note = Some(
                "host key not known: accept new host keys to log in and identify it".to_string(),
            );
            return Some(found);
        }
        Err(error) => {
            found.note = Some(error.to_string());
            return Some(found);
        }
    };
    found.host_key_fingerprint = Some(key.fingerprint);
    found.host_key = Some(key.openssh);
    let probe = identity::Probe::new();
    let output = session.exec(probe.command(), options.login_timeout).await;
    session.close().await;
    match output {
        Ok(output) if output.success() => {
            let text = output.stdout_text();
            let identity = probe.parse(&text);
            found.openwrt = identity.board.is_some() || identity.os_identifier.is_some();
            if !found.openwrt {
                found.note = Some("no board and no OpenWrt release: not OpenWrt".to_string());
            }
            found.hostname = hostname(&text);
            found.identity = Some(identity);
        }
        Ok(output) => {
            found.note = Some(format!(
                "the identity probe did not finish ({:?}): {}",
                output.end,
                output.stderr_text().trim()
            ))
        }
        Err(error) => found.note = Some(format!("the identity probe failed: {error}")),
    }
    Some(found)
}

/// The host name in the `ubus call system board` section of the probe.
fn hostname(probe_output: &str) -> Option<String> {
    let start = probe_output.find("#fwu:board\n")? + "#fwu:board\n".len();
    let rest = &probe_output[start..];
    let section = &rest[..rest.find("#fwu:").unwrap_or(rest.len())];
    let board: serde_json::Value = serde_json::from_str(section.trim()).ok()?;
    board
        .get("hostname")?
        .as_str()
        .map(str::trim)
        .filter(|name| !name.is_empty())
        .map(str::to_string)
}

/// A discovered device the catalogue now holds, or why it was left out.
#[derive(Clone, Debug, Serialize)]
pub struct Addition {
    pub address: String,
    /// The new device's name, when added.
    pub device: Option<String>,
    /// Why it was not added.
    pub skipped: Option<String>,
}

/// What discovered devices get when they are added.
#[derive(Clone, Debug, Default)]
pub struct AddOptions {
    pub site: Option<String>,
    pub tags: Vec<String>,
}

/// Adds the OpenWrt devices of a scan that logged in (so that their host
/// key is known and pinned), in one transaction, and records what their
/// probe read. A device whose address the catalogue already has is left
/// out. A name is the device's host name when it has a distinctive one,
/// else its board and address.
pub fn add_found(
    catalogue: &Catalogue,
    discovery: &Discovery,
    login: &Login,
    user: &str,
    options: &AddOptions,
) -> Result<Vec<Addition>, InventoryError> {
    let known = catalogue.devices()?;
    let mut names: HashSet<String> = known.iter().map(|device| device.name.clone()).collect();
    let mut additions = Vec::new();
    let mut new = Vec::new();
    for found in &discovery.devices {
        let skip = |reason: String| Addition {
            address: found.address.clone(),
            device: None,
            skipped: Some(reason),
        };
        if let Some(owner) = owner_of(&known, &found.address, found.port) {
            additions.push(skip(format!("already in the catalogue as {}", owner.name)));
            continue;
        }
        let (Some(identity), Some(host_key)) = (&found.identity, &found.host_key) else {
            additions.push(skip("not logged in, so not identified".to_string()));
            continue;
        };
        let name = device_name(found, identity, &names);
        names.insert(name.clone());
        let device = NewDevice {
            name: name.clone(),
            host: found.address.clone(),
            alternate_hosts: Vec::new(),
            port: found.port,
            user: user.to_string(),
            auth: login.device_auth(),
            site: options.site.clone(),
            tags: options.tags.clone(),
        };
        additions.push(Addition {
            address: found.address.clone(),
            device: Some(name),
            skipped: None,
        });
        new.push((device, host_key.clone(), identity.to_probe()));
    }
    let pinned: Vec<(NewDevice, String)> = new
        .iter()
        .map(|(device, key, _)| (device.clone(), key.clone()))
        .collect();
    let added = catalogue.add_pinned_devices(&pinned)?;
    for (device, (_, _, probe)) in added.iter().zip(&new) {
        catalogue.record_probe(device.id, probe)?;
    }
    tracing::info!(added = added.len(), "discovered devices added");
    Ok(additions)
}

/// The catalogue's device reached at this address and port, if any.
fn owner_of<'a>(known: &'a [Device], address: &str, port: u16) -> Option<&'a Device> {
    known
        .iter()
        .find(|device| device.port == port && device.addresses().iter().any(|a| a == address))
}

/// A name no other device has: the host name when distinctive, else the
/// board and the address (`tplink-archer-c7-v5-127.0.0.5`).
fn device_name(found: &Found, identity: &Identity, taken: &HashSet<String>) -> String {
    let distinctive = found
        .hostname
        .as_deref()
        .filter(|name| !DEFAULT_HOSTNAMES.contains(name) && !name.chars().any(char::is_control));
    if let Some(name) = distinctive.filter(|name| !taken.contains(*name)) {
        return name.to_string();
    }
    let board = identity
        .board
        .as_deref()
        .unwrap_or("openwrt")
        .replace(',', "-");
    let base = format!("{board}-{}", found.address);
    let mut name = base.clone();
    let mut n = 2;
    while taken.contains(&name) {
        name = format!("{base}-{n}");
        n += 1;
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(text: &str) -> Result<(String, u64), String> {
        AddressRange::parse(text)
            .map(|r| (r.to_string(), r.len()))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn ranges_read_as_users_write_them() {
        assert_eq!(
            range("127.0.0.0/24"),
            Ok(("127.0.0.1-127.0.0.254".into(), 254))
        );
        assert_eq!(
            range("127.0.0.77/24"),
            Ok(("127.0.0.1-127.0.0.254".into(), 254))
        );
        assert_eq!(range("127.0.0.8/31"), Ok(("127.0.0.8-127.0.0.9".into(), 2)));
        assert_eq!(range("127.0.0.9/32"), Ok(("127.0.0.9-127.0.0.9".into(), 1)));
        assert_eq!(
            range("127.0.0.5-127.0.1.4"),
            Ok(("127.0.0.5-127.0.1.4".into(), 256))
        );
        assert_eq!(
            range("127.0.0.5-20"),
            Ok(("127.0.0.5-127.0.0.20".into(), 16))
        );
        assert_eq!(range("127.0.0.5"), Ok(("127.0.0.5-127.0.0.5".into(), 1)));
        assert_eq!(range("127.0.0.0/16").unwrap().1, 65_534);
        assert_eq!(range("127.0.0.0-127.0.255.255").unwrap().1, 65_536);
    }

    #[test]
    fn bad_and_huge_ranges_are_refused() {
        for text in [
            "127.0.0.0/15",
            "0.0.0.0/0",
            "127.0.0.0-127.1.0.0",
            "127.0.0.9-3",
            "127.0.0.0/33",
            "::1/128",
            "example.net",
            "127.0.0.1-x",
        ] {
            assert!(range(text).is_err(), "{text} was accepted");
        }
        let error = range("127.0.0.0/8").unwrap_err();
        assert!(error.contains("16777214 addresses is more than"), "{error}");
    }

    fn found(address: &str, hostname: Option<&str>) -> (Found, Identity) {
        let identity = Identity {
            board: Some("tplink,archer-c7-v5".to_string()),
            ..Identity::default()
        };
        let found = Found {
            address: address.to_string(),
            port: 22,
            openwrt: true,
            identity: Some(identity.clone()),
            hostname: hostname.map(str::to_string),
            host_key_fingerprint: None,
            host_key: None,
            note: None,
        };
        (found, identity)
    }

    #[test]
    fn names_come_from_host_name_or_board_and_address() {
        let mut taken = HashSet::new();
        let (ap, identity) = found("127.0.0.5", Some("lobby-ap"));
        assert_eq!(device_name(&ap, &identity, &taken), "lobby-ap");
        let (default, identity) = found("127.0.0.6", Some("OpenWrt"));
        let expected = "tplink-archer-c7-v5-127.0.0.6";
        assert_eq!(device_name(&default, &identity, &taken), expected);
        taken.insert("lobby-ap".to_string());
        taken.insert(expected.to_string());
        assert_eq!(
            device_name(&ap, &identity, &taken),
            "tplink-archer-c7-v5-127.0.0.5"
        );
        assert_eq!(
            device_name(&default, &identity, &taken),
            "tplink-archer-c7-v5-127.0.0.6-2"
        );
    }

    #[test]
    fn host_name_is_read_from_the_board_section() {
        let output = "#fwu:board\n{\"hostname\": \"lobby-ap\", \"board_name\": \"x\"}\n\
                      #fwu:info\n{}\n#fwu:end\n";
        assert_eq!(hostname(output).as_deref(), Some("lobby-ap"));
        assert_eq!(hostname("#fwu:board\n#fwu:info\n"), None);
    }
}
