//! The relay that carries link faults: a TCP forwarder on a device's SSH
//! address, in front of its Dropbear, that can cap the bandwidth and cut a
//! connection after a number of client-to-device bytes.
//!
//! Devices without link faults have no relay, so uploads to them run at
//! Dropbear's own speed.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};

use crate::spec::Faults;

/// The most a relay reads at once.
const CHUNK: usize = 16 * 1024;

/// Which way bytes flow through the relay.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Direction {
    /// From the client (the upgrader) to the device.
    ToDevice,
    /// From the device to the client.
    ToClient,
}

/// How a pump ended.
#[derive(PartialEq, Eq)]
enum End {
    /// The reading side closed or failed.
    Closed,
    /// The cut-link fault struck.
    Cut,
}

/// Accepts connections on `listener` and forwards each to `device`, until
/// the task is aborted.
pub(crate) async fn run(listener: TcpListener, device: SocketAddr, faults: Arc<Mutex<Faults>>) {
    loop {
        let (client, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(%device, %error, "relay stopped accepting");
                return;
            }
        };
        tracing::debug!(%device, %peer, "relay accepted a connection");
        tokio::spawn(forward(client, device, faults.clone()));
    }
}

/// Forwards one connection until either side closes or the link is cut.
async fn forward(client: TcpStream, device: SocketAddr, faults: Arc<Mutex<Faults>>) {
    let server = match TcpStream::connect(device).await {
        Ok(server) => server,
        Err(error) => {
            tracing::debug!(%device, %error, "relay could not reach the device");
            return;
        }
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    let to_device = pump(
        client_read,
        server_write,
        Direction::ToDevice,
        faults.clone(),
    );
    let to_client = pump(server_read, client_write, Direction::ToClient, faults);
    tokio::pin!(to_device, to_client);
    // A cut drops both halves at once; a plain close lets the other way
    // finish, as TCP would.
    tokio::select! {
        end = &mut to_device => if end == End::Closed { to_client.await; },
        end = &mut to_client => if end == End::Closed { to_device.await; },
    }
}

/// Copies bytes one way, applying the link faults.
async fn pump(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    direction: Direction,
    faults: Arc<Mutex<Faults>>,
) -> End {
    let mut buffer = vec![0; CHUNK];
    let mut total: u64 = 0;
    // The rate is measured over a window that restarts after idle time, so
    // a pause does not earn a burst above the cap.
    let mut window_start = Instant::now();
    let mut window_bytes: u64 = 0;
    loop {
        let bandwidth = lock(&faults).bandwidth_bytes_per_second;
        let chunk = match bandwidth {
            // Small reads keep a capped link smooth.
            Some(rate) => (rate as usize / 20).clamp(1, CHUNK),
            None => CHUNK,
        };
        let read = match from.read(&mut buffer[..chunk]).await {
            Ok(0) | Err(_) => {
                let _ = to.shutdown().await;
                return End::Closed;
            }
            Ok(read) => read,
        };
        let mut send = read;
        let mut cut = false;
        if direction == Direction::ToDevice {
            let mut faults = lock(&faults);
            if let Some(limit) = faults.cut_link_after_bytes {
                if total + read as u64 > limit {
                    send = limit.saturating_sub(total) as usize;
                    cut = true;
                    faults.cut_link_after_bytes = None;
                }
            }
        }
        if to.write_all(&buffer[..send]).await.is_err() {
            return End::Closed;
        }
        total += send as u64;
        window_bytes += send as u64;
        if cut {
            tracing::info!(bytes = total, "relay cut the link, as the fault asked");
            return End::Cut;
        }
        if let Some(rate) = bandwidth.filter(|rate| *rate > 0) {
            let due = Duration::from_secs_f64(window_bytes as f64 / rate as f64);
            let elapsed = window_start.elapsed();
            if due > elapsed {
                tokio::time::sleep(due - elapsed).await;
            } else if elapsed - due > Duration::from_secs(1) {
                window_start = Instant::now();
                window_bytes = 0;
            }
        }
    }
}

/// Locks the faults, even if a holder panicked.
fn lock(faults: &Mutex<Faults>) -> std::sync::MutexGuard<'_, Faults> {
    faults
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
