//! Probing many devices at once: every device of a selection is connected
//! to, asked who it is and what it runs, and the answer recorded, with a
//! bounded number at a time.
//!
//! One device's failure is one line of the result, never the end of the
//! run: an offline device is reported as offline and the others go on.
//! Recording a probe also records the device firmware when the release a
//! device reports is a build's OS identifier (see
//! `Catalogue::record_probe`).

use std::time::Duration;

use serde::Serialize;
use tokio::task::JoinSet;

use crate::catalogue::{Catalogue, CatalogueError, Device, DeviceFirmware};
use crate::transport::TransportError;
use crate::upgrade::{probe_device, Context, UpgradeError};

/// Which devices to probe: all of them, or those of a site, or those with
/// a tag; both a site and a tag narrow to devices with both.
#[derive(Clone, Debug, Default)]
pub struct Selection {
    pub site: Option<String>,
    pub tag: Option<String>,
}

/// How a run of probes behaves.
#[derive(Clone, Copy, Debug)]
pub struct ProbeOptions {
    /// How many devices are probed at the same time; at least one.
    pub concurrency: usize,
    /// Pin the host key of a device that has none pinned yet.
    pub accept_new_host_key: bool,
}

/// What probing one device gave.
#[derive(Clone, Debug, Serialize)]
pub struct ProbeOutcome {
    pub device: String,
    /// Whether the device answered and its identity was recorded.
    pub ok: bool,
    /// Whether the device could not be reached at any of its addresses.
    pub offline: bool,
    /// Why the probe failed, in words.
    pub error: Option<String>,
    /// The address that answered.
    pub address: Option<String>,
    pub board: Option<String>,
    pub model: Option<String>,
    pub os_identifier: Option<String>,
    pub host_key_fingerprint: Option<String>,
    /// The device firmware the catalogue holds after the probe.
    pub device_firmware: Option<DeviceFirmware>,
}

impl ProbeOutcome {
    fn failed(device: &str, offline: bool, error: String) -> ProbeOutcome {
        ProbeOutcome {
            device: device.to_string(),
            ok: false,
            offline,
            error: Some(error),
            address: None,
            board: None,
            model: None,
            os_identifier: None,
            host_key_fingerprint: None,
            device_firmware: None,
        }
    }
}

/// The devices a selection names, by name.
pub fn select(catalogue: &Catalogue, selection: &Selection) -> Result<Vec<Device>, CatalogueError> {
    Ok(catalogue
        .devices()?
        .into_iter()
        .filter(|device| {
            selection
                .site
                .as_ref()
                .is_none_or(|site| device.site.as_ref() == Some(site))
        })
        .filter(|device| {
            selection
                .tag
                .as_ref()
                .is_none_or(|tag| device.tags.contains(tag))
        })
        .collect())
}

/// Probes every device, at most `options.concurrency` at a time, calling
/// `on_outcome` as each one ends; returns the outcomes by device name.
pub async fn probe_many(
    ctx: &Context,
    devices: Vec<Device>,
    options: ProbeOptions,
    mut on_outcome: impl FnMut(&ProbeOutcome),
) -> Vec<ProbeOutcome> {
    let concurrency = options.concurrency.max(1);
    let mut waiting = devices.into_iter();
    let mut running = JoinSet::new();
    let mut outcomes = Vec::new();
    loop {
        while running.len() < concurrency {
            let Some(device) = waiting.next() else { break };
            let ctx = ctx.clone();
            running
                .spawn(async move { probe_one(&ctx, &device, options.accept_new_host_key).await });
        }
        let Some(joined) = running.join_next().await else {
            break;
        };
        let outcome = joined.unwrap_or_else(|error| {
            // A probe task that panicked is a bug; it is reported like a
            // failed probe so the other devices still get theirs.
            ProbeOutcome::failed(
                "?",
                false,
                format!("the probe task ended abnormally: {error}"),
            )
        });
        on_outcome(&outcome);
        outcomes.push(outcome);
    }
    outcomes.sort_by(|a, b| a.device.cmp(&b.device));
    outcomes
}

/// Probes one device within a time limit that covers trying each of its
/// addresses and running the probe command.
async fn probe_one(ctx: &Context, device: &Device, accept_new_host_key: bool) -> ProbeOutcome {
    let addresses = device.addresses().len() as u32;
    let limit = ctx.timings.connect_timeout * addresses
        + ctx.timings.command_timeout
        + Duration::from_secs(5);
    let probed = tokio::time::timeout(limit, probe_device(ctx, &device.name, accept_new_host_key));
    let outcome = match probed.await {
        Err(_) => ProbeOutcome::failed(
            &device.name,
            true,
            format!("no answer within {} s", limit.as_secs()),
        ),
        Ok(Err(error)) => {
            let offline = matches!(
                error,
                UpgradeError::Transport(
                    TransportError::Unreachable { .. } | TransportError::ConnectTimeout { .. }
                )
            );
            ProbeOutcome::failed(&device.name, offline, error.to_string())
        }
        Ok(Ok(probed)) => ProbeOutcome {
            device: device.name.clone(),
            ok: true,
            offline: false,
            error: None,
            address: Some(probed.address),
            board: probed.identity.board,
            model: probed.identity.model,
            os_identifier: probed.identity.os_identifier,
            host_key_fingerprint: Some(probed.host_key_fingerprint),
            device_firmware: ctx.catalogue.device_firmware(device.id).unwrap_or_else(|error| {
                tracing::warn!(device = %device.name, "cannot read the device firmware: {error}");
                None
            }),
        },
    };
    tracing::info!(device = %device.name, ok = outcome.ok, offline = outcome.offline, "probed");
    outcome
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use async_trait::async_trait;

    use super::*;
    use crate::inventory::csv;
    use crate::transport::{
        CommandEnd, CommandOutput, Connector, HostKey, Session, Target, UploadProgress,
    };
    use crate::upgrade::{Secrets, Timings};

    /// Devices at 127.0.0.x answer as Archer C7s on 23.05.3; any other
    /// address refuses the connection. Counts connections in flight.
    #[derive(Default)]
    struct FakeFleet {
        in_flight: AtomicUsize,
        most_in_flight: AtomicUsize,
    }

    struct FakeSession;

    const RELEASE: &str = "OpenWrt 23.05.3 r23809-234f1a2efa";

    #[async_trait]
    impl Connector for FakeFleet {
        async fn connect(
            &self,
            target: &Target,
        ) -> Result<(Box<dyn Session>, HostKey), TransportError> {
            let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            self.most_in_flight.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(30)).await;
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            if !target.endpoint.host.starts_with("127.0.0.") {
                return Err(TransportError::Unreachable {
                    endpoint: target.endpoint.to_string(),
                    reason: "connection refused".to_string(),
                });
            }
            let key = HostKey {
                openssh: "ssh-ed25519 \
                    AAAAC3NzaC1lZDI1NTE5AAAAIPqMCaYZfVtWKv0y5GI2TJ4ib3eTSfIGZ7gJNGMMJFOq"
                    .to_string(),
                fingerprint: "SHA256:fake".to_string(),
            };
            Ok((Box::new(FakeSession), key))
        }
    }

    #[async_trait]
    impl Session for FakeSession {
        async fn exec(
            &mut self,
            command: &str,
            _timeout: Duration,
        ) -> Result<CommandOutput, TransportError> {
            // Answer as a device would: under the probe's own markers,
            // which the command names (`echo '#MARKER:board'; ...`).
            let marker = command
                .strip_prefix("echo '#")
                .and_then(|rest| rest.split(':').next())
                .expect("a probe command");
            let board = format!(
                "#{marker}:board\n{{\"board_name\": \"tplink,archer-c7-v5\", \
                 \"release\": {{\"description\": \"{RELEASE}\"}}}}\n#{marker}:end\n"
            );
            Ok(CommandOutput {
                stdout: board.into_bytes(),
                stderr: Vec::new(),
                end: CommandEnd::Exited(0),
            })
        }

        async fn upload(
            &mut self,
            _command: &str,
            _source: &mut (dyn tokio::io::AsyncRead + Unpin + Send),
            _len: u64,
            _progress: UploadProgress<'_>,
        ) -> Result<CommandOutput, TransportError> {
            Err(TransportError::Session {
                endpoint: "fake".to_string(),
                reason: "a probe must upload nothing".to_string(),
            })
        }

        async fn close(self: Box<Self>) {}
    }

    struct FakeSecrets;

    impl Secrets for FakeSecrets {
        fn secret(&self, _name: &str) -> Result<String, String> {
            Ok("lab".to_string())
        }
    }

    #[tokio::test]
    async fn many_probes_stay_bounded_and_survive_offline_devices() {
        let dir = tempfile::tempdir().unwrap();
        let catalogue = Catalogue::open_in(dir.path()).unwrap();
        let mut text = "name,host,credential\n".to_string();
        for n in 1..=9 {
            // Every third device is at an address that refuses.
            let net = if n % 3 == 0 { 1 } else { 0 };
            text.push_str(&format!("ap{n},127.0.{net}.{n},site/lab/password\n"));
        }
        csv::import(&catalogue, text.as_bytes(), Default::default()).unwrap();
        catalogue.add_category("WiFi", "").unwrap();
        let build = catalogue
            .add_build("WiFi", "23.05.3", Some(RELEASE), "")
            .unwrap();
        let image = catalogue
            .add_image(&crate::catalogue::NewImage {
                build_id: build.id,
                image_type: "c7.bin".to_string(),
                file_name: "c7.bin".to_string(),
                size: 1,
                sha256: "00".repeat(32),
                boards: vec!["tplink,archer-c7-v5".to_string()],
                metadata: None,
            })
            .unwrap();
        let fleet = Arc::new(FakeFleet::default());
        let ctx = Context {
            catalogue: catalogue.clone(),
            data_dir: dir.path().to_path_buf(),
            timings: Timings::default(),
            secrets: Arc::new(FakeSecrets),
            connector: fleet.clone(),
            events: Arc::new(crate::events::Discard),
        };
        let options = ProbeOptions {
            concurrency: 2,
            accept_new_host_key: true,
        };
        let mut seen = 0;
        let devices = select(&catalogue, &Selection::default()).unwrap();
        let outcomes = probe_many(&ctx, devices, options, |_| seen += 1).await;

        assert_eq!(seen, 9);
        assert_eq!(fleet.most_in_flight.load(Ordering::SeqCst), 2);
        let offline: Vec<&str> = outcomes
            .iter()
            .filter(|o| o.offline)
            .map(|o| o.device.as_str())
            .collect();
        assert_eq!(offline, vec!["ap3", "ap6", "ap9"]);
        for outcome in outcomes.iter().filter(|o| !o.offline) {
            assert!(outcome.ok, "{outcome:?}");
            let firmware = outcome.device_firmware.as_ref().unwrap();
            assert_eq!((firmware.image_id, firmware.installed), (image.id, true));
        }
    }

    #[test]
    fn selection_narrows_by_site_and_tag() {
        let dir = tempfile::tempdir().unwrap();
        let catalogue = Catalogue::open_in(dir.path()).unwrap();
        let text = "name,host,site,tags\n\
            a1,127.0.0.1,acme,ap;floor-1\n\
            a2,127.0.0.2,acme,gateway\n\
            b1,127.0.0.3,bravo,ap\n\
            c1,127.0.0.4,,\n";
        csv::import(&catalogue, text.as_bytes(), Default::default()).unwrap();
        let names = |selection: Selection| -> Vec<String> {
            select(&catalogue, &selection)
                .unwrap()
                .into_iter()
                .map(|d| d.name)
                .collect()
        };
        assert_eq!(names(Selection::default()), vec!["a1", "a2", "b1", "c1"]);
        let acme = Selection {
            site: Some("acme".to_string()),
            tag: None,
        };
        assert_eq!(names(acme), vec!["a1", "a2"]);
        let ap = Selection {
            site: None,
            tag: Some("ap".to_string()),
        };
        assert_eq!(names(ap), vec!["a1", "b1"]);
        let both = Selection {
            site: Some("bravo".to_string()),
            tag: Some("ap".to_string()),
        };
        assert_eq!(names(both), vec!["b1"]);
    }
}
