//! Unit tests of batch planning and counting, on a catalogue without
//! devices behind it.

use super::*;
use crate::catalogue::{DeviceAuth, NewDevice, NewImage, Probe};

fn catalogue() -> (tempfile::TempDir, Catalogue) {
    let dir = tempfile::tempdir().unwrap();
    let catalogue = Catalogue::open_in(dir.path()).unwrap();
    catalogue.add_category("WiFi", "").unwrap();
    for (version, revision) in [("23.05.3", "r1"), ("24.10.0", "r2")] {
        let os = format!("OpenWrt {version} {revision}");
        let build = catalogue.add_build("WiFi", version, Some(&os), "").unwrap();
        catalogue
            .add_image(&NewImage {
                build_id: build.id,
                image_type: "c7.bin".into(),
                file_name: "c7.bin".into(),
                size: 1,
                sha256: format!("{:0>64}", build.id),
                boards: vec!["tplink,archer-c7-v5".into()],
                metadata: None,
            })
            .unwrap();
    }
    (dir, catalogue)
}

fn add(catalogue: &Catalogue, name: &str, board: Option<&str>, os: Option<&str>, tags: &[&str]) {
    let device = catalogue
        .add_device(&NewDevice {
            name: name.into(),
            host: "127.0.0.2".into(),
            alternate_hosts: vec![],
            port: 22,
            user: "root".into(),
            auth: DeviceAuth::Agent,
            site: Some("acme".into()),
            tags: tags.iter().map(|t| t.to_string()).collect(),
        })
        .unwrap();
    catalogue
        .record_probe(
            device.id,
            &Probe {
                board: board.map(str::to_string),
                os_identifier: os.map(str::to_string),
                ..Probe::default()
            },
        )
        .unwrap();
}

fn reasons(plan: &Plan) -> Vec<(String, String)> {
    plan.skipped
        .iter()
        .map(|s| (s.device.clone(), s.reason.clone()))
        .collect()
}

#[test]
fn plan_explains_every_skip() {
    let (_dir, catalogue) = catalogue();
    let c7 = Some("tplink,archer-c7-v5");
    add(
        &catalogue,
        "old",
        c7,
        Some("OpenWrt 23.05.3 r1"),
        &["floor-1"],
    );
    add(
        &catalogue,
        "current",
        c7,
        Some("OpenWrt 24.10.0 r2"),
        &["floor-1"],
    );
    add(
        &catalogue,
        "unknown-fw",
        c7,
        Some("OpenWrt 19.07 r0"),
        &["floor-2"],
    );
    add(&catalogue, "other-board", Some("ubnt,unifi"), None, &[]);
    add(&catalogue, "never-probed", None, None, &[]);

    let plan = plan(&catalogue, "WiFi", "24.10.0", &Selection::default()).unwrap();
    let upgraded: Vec<_> = plan.upgrades.iter().map(|p| p.device.as_str()).collect();
    assert_eq!(upgraded, vec!["old"]);
    let reasons = reasons(&plan);
    assert_eq!(reasons.len(), 4);
    assert!(reasons[0].0 == "current" && reasons[0].1.starts_with("already runs"));
    assert!(reasons[1].1.starts_with("board unknown"));
    assert!(reasons[2].1.starts_with("no image"));
    assert!(reasons[3].1.contains("--firmwareless"));

    let firmwareless = Selection {
        firmwareless: true,
        ..Selection::default()
    };
    let plan = super::plan(&catalogue, "WiFi", "24.10.0", &firmwareless).unwrap();
    assert_eq!(plan.upgrades.len(), 2);
}

#[test]
fn selection_by_tag_site_and_name() {
    let (_dir, catalogue) = catalogue();
    let c7 = Some("tplink,archer-c7-v5");
    let old = Some("OpenWrt 23.05.3 r1");
    add(&catalogue, "a", c7, old, &["floor-1"]);
    add(&catalogue, "b", c7, old, &["floor-2"]);
    add(&catalogue, "c", c7, old, &[]);
    let names = |selection: Selection| -> Vec<String> {
        plan(&catalogue, "WiFi", "24.10.0", &selection)
            .unwrap()
            .upgrades
            .into_iter()
            .map(|p| p.device)
            .collect()
    };
    let by_tag = Selection {
        tags: vec!["floor-2".into()],
        ..Selection::default()
    };
    assert_eq!(names(by_tag), vec!["b"]);
    let by_name = Selection {
        devices: vec!["c".into()],
        ..Selection::default()
    };
    assert_eq!(names(by_name), vec!["c"]);
    let tag_and_name = Selection {
        tags: vec!["floor-1".into()],
        devices: vec!["c".into()],
        ..Selection::default()
    };
    assert_eq!(names(tag_and_name), vec!["a", "c"]);
    let wrong_site = Selection {
        site: Some("elsewhere".into()),
        ..Selection::default()
    };
    assert!(names(wrong_site).is_empty());
    let unknown = Selection {
        devices: vec!["nope".into()],
        ..Selection::default()
    };
    assert!(plan(&catalogue, "WiFi", "24.10.0", &unknown).is_err());
}

#[test]
fn start_records_exactly_the_plan() {
    let (_dir, catalogue) = catalogue();
    let c7 = Some("tplink,archer-c7-v5");
    add(&catalogue, "a", c7, Some("OpenWrt 23.05.3 r1"), &[]);
    add(&catalogue, "b", None, None, &[]);
    let selection = Selection::default();
    let dry = plan(&catalogue, "WiFi", "24.10.0", &selection).unwrap();
    let (batch, started) = start(
        &catalogue,
        "WiFi",
        "24.10.0",
        &selection,
        SysupgradeOptions::default(),
        &Rollout::default(),
    )
    .unwrap();
    assert_eq!(dry, started);
    let operations = operations(&catalogue, batch.id).unwrap();
    assert_eq!(operations.len(), 1);
    assert_eq!(operations[0].device, "a");
    assert_eq!(
        operations[0].firmware_before.as_deref(),
        Some("OpenWrt 23.05.3 r1")
    );
    assert_eq!(catalogue.batch_skips(batch.id).unwrap()[0].device, "b");
    let counts = summary(&catalogue, batch.id).unwrap();
    assert_eq!((counts.total, counts.pending, counts.skipped), (1, 1, 1));
    assert_eq!(counts.status, "running");

    // The device now has an unfinished operation: a second batch skips it.
    let again = plan(&catalogue, "WiFi", "24.10.0", &selection).unwrap();
    assert!(again.upgrades.is_empty());
}

#[test]
fn cancelling_settles_waiting_operations() {
    let (_dir, catalogue) = catalogue();
    add(
        &catalogue,
        "a",
        Some("tplink,archer-c7-v5"),
        Some("OpenWrt 23.05.3 r1"),
        &[],
    );
    let (batch, _) = start(
        &catalogue,
        "WiFi",
        "24.10.0",
        &Selection::default(),
        SysupgradeOptions::default(),
        &Rollout::default(),
    )
    .unwrap();
    pause(&catalogue, batch.id).unwrap();
    assert_eq!(summary(&catalogue, batch.id).unwrap().status, "paused");
    cancel(&catalogue, batch.id).unwrap();
    let counts = summary(&catalogue, batch.id).unwrap();
    assert_eq!((counts.cancelled, counts.status.as_str()), (1, "cancelled"));
}

#[test]
fn threshold_counts_only_fresh_verdicts() {
    let rollout = Rollout {
        first_wave: Some(2),
        max_failures_percent: Some(40),
        ..Rollout::default()
    };
    let (_dir, catalogue) = catalogue();
    for name in ["a", "b", "c"] {
        add(
            &catalogue,
            name,
            Some("tplink,archer-c7-v5"),
            Some("OpenWrt 23.05.3 r1"),
            &[],
        );
    }
    let (batch, _) = start(
        &catalogue,
        "WiFi",
        "24.10.0",
        &Selection::default(),
        SysupgradeOptions::default(),
        &rollout,
    )
    .unwrap();
    let all = operations(&catalogue, batch.id).unwrap();
    catalogue
        .finish_operation(all[0].id, Status::Failed, "x")
        .unwrap();
    let all = operations(&catalogue, batch.id).unwrap();
    assert_eq!(
        scheduler_over_threshold(&rollout, &all, &HashSet::new()),
        None
    );
    catalogue
        .finish_operation(all[1].id, Status::Success, "x")
        .unwrap();
    let all = operations(&catalogue, batch.id).unwrap();
    assert!(scheduler_over_threshold(&rollout, &all, &HashSet::new()).is_some());
    let seen: HashSet<i64> = [all[0].id, all[1].id].into();
    assert_eq!(scheduler_over_threshold(&rollout, &all, &seen), None);
}

use std::collections::HashSet;

fn scheduler_over_threshold(
    rollout: &Rollout,
    all: &[UpgradeOperation],
    baseline: &HashSet<i64>,
) -> Option<String> {
    scheduler::over_threshold(rollout, all, baseline)
}
