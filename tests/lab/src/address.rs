//! Loopback addresses for lab devices, never shared between labs.
//!
//! Labs take whole /24 blocks of 127.64.0.0 – 127.126.255.255 (never
//! 127.0.0.1). A block is claimed by an exclusive `flock` on a lock file in
//! the temporary directory, held for the lab's life: that keeps labs apart
//! within one process (each open file has its own lock) and across test
//! processes. Each address is then checked free on the ports the lab uses,
//! in case something outside the lab listens there.

use std::fs::{File, OpenOptions};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener};
use std::os::fd::AsRawFd;
use std::path::PathBuf;

use rand::Rng;

use crate::error::LabError;

/// The port every device serves SSH on.
pub(crate) const SSH_PORT: u16 = 22;
/// The port Dropbear listens on when a relay stands in front of it.
pub(crate) const RELAY_BACKEND_PORT: u16 = 2222;
/// How many random blocks are tried before giving up.
const BLOCK_ATTEMPTS: usize = 200;

/// Addresses claimed for one lab, and the locks that keep them claimed.
pub(crate) struct Claim {
    /// The addresses, in the order they were handed out.
    pub(crate) addresses: Vec<Ipv4Addr>,
    /// The locked files; dropping them frees the blocks.
    pub(crate) locks: Vec<File>,
}

/// Claims `count` free loopback addresses.
pub(crate) fn claim(count: usize) -> Result<Claim, LabError> {
    let dir = lock_dir();
    std::fs::create_dir_all(&dir).map_err(LabError::io("create", &dir))?;
    let mut claim = Claim {
        addresses: Vec::with_capacity(count),
        locks: Vec::new(),
    };
    let mut rng = rand::thread_rng();
    for _ in 0..BLOCK_ATTEMPTS {
        if claim.addresses.len() >= count {
            break;
        }
        let (b, c) = (rng.gen_range(64..=126_u8), rng.gen_range(0..=255_u8));
        let Some(lock) = lock_block(&dir, b, c) else {
            continue;
        };
        claim.locks.push(lock);
        for d in 2..=254_u8 {
            if claim.addresses.len() >= count {
                break;
            }
            let address = Ipv4Addr::new(127, b, c, d);
            if is_free(address) {
                claim.addresses.push(address);
            } else {
                tracing::debug!(%address, "skipping address: a port the lab needs is taken");
            }
        }
    }
    if claim.addresses.len() < count {
        return Err(LabError::NoFreeAddresses(count));
    }
    Ok(claim)
}

/// Returns the directory of the block lock files.
fn lock_dir() -> PathBuf {
    std::env::temp_dir().join("fwu-lab-addresses")
}

/// Locks block 127.b.c.0/24, or returns none if another lab holds it.
fn lock_block(dir: &std::path::Path, b: u8, c: u8) -> Option<File> {
    let path = dir.join(format!("127.{b}.{c}.lock"));
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .ok()?;
    // SAFETY: flock only reads the descriptor, which `file` keeps open.
    let locked = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0;
    locked.then_some(file)
}

/// Tells whether nothing listens on the ports the lab needs at `address`.
fn is_free(address: Ipv4Addr) -> bool {
    [SSH_PORT, RELAY_BACKEND_PORT]
        .iter()
        .all(|port| TcpListener::bind(SocketAddrV4::new(address, *port)).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_claims_never_share_an_address() {
        let first = claim(3).unwrap();
        let second = claim(3).unwrap();
        for address in &first.addresses {
            assert!(!second.addresses.contains(address));
            assert_ne!(*address, Ipv4Addr::LOCALHOST);
            assert!(address.is_loopback());
        }
    }
}
