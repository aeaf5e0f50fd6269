//! What an OpenWrt device says about itself: board, model, release, boot id
//! and uptime, read with one remote command.
//!
//! `ubus call system board` is the first source; `/tmp/sysinfo/*` and
//! `/etc/openwrt_release` are the fallbacks older or trimmed images need.
//! The command prints sections headed by marker lines so that one round
//! trip reads everything, and a missing source leaves its section empty.

use serde::Serialize;

/// The sources a probe reads, in order: section name and shell command.
/// Fixed text: nothing from the user or the device goes into them.
const SOURCES: [(&str, &str); 10] = [
    ("board", "ubus call system board"),
    ("info", "ubus call system info"),
    ("board_name", "cat /tmp/sysinfo/board_name"),
    ("model", "cat /tmp/sysinfo/model"),
    ("release", "cat /etc/openwrt_release"),
    ("boot_id", "cat /proc/sys/kernel/random/boot_id"),
    ("uptime", "cat /proc/uptime"),
    ("checksum", "cat /etc/openwisp/firmware_checksum"),
    ("mac", "cat /sys/class/net/eth0/address"),
    ("meminfo", "cat /proc/meminfo"),
];

/// One probe of a device: the command to run, and how to read its output.
///
/// Each probe heads its sections with a marker nobody can guess, so that a
/// device whose files hold marker-like lines (a hostile `board_name`, say)
/// cannot pass one section off as another.
pub struct Probe {
    marker: String,
    command: String,
}

impl Probe {
    /// A probe with a fresh random marker.
    pub fn new() -> Probe {
        Probe::with_marker(&format!("fwu-{}", uuid::Uuid::new_v4().simple()))
    }

    fn with_marker(marker: &str) -> Probe {
        let mut command = String::new();
        for (name, source) in SOURCES {
            command.push_str(&format!("echo '#{marker}:{name}'; {source} 2>/dev/null; "));
        }
        command.push_str(&format!("echo '#{marker}:end'"));
        Probe {
            marker: marker.to_string(),
            command,
        }
    }

    /// The remote command.
    pub fn command(&self) -> &str {
        &self.command
    }

    /// Reads what the command printed.
    pub fn parse(&self, output: &str) -> Identity {
        parse_marked(output, &self.marker)
    }
}

impl Default for Probe {
    fn default() -> Probe {
        Probe::new()
    }
}

/// Who a device is and what it runs.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Identity {
    pub board: Option<String>,
    pub model: Option<String>,
    /// The release as devices describe it: `OpenWrt 23.05.3 r23809-234f1a2efa`.
    pub os_identifier: Option<String>,
    pub version: Option<String>,
    pub revision: Option<String>,
    pub boot_id: Option<String>,
    /// Seconds since the device booted.
    pub uptime: Option<u64>,
    /// The sha256 in the checksum file shared with OpenWISP.
    pub checksum: Option<String>,
    pub mac: Option<String>,
    /// Memory free for an upload when the device was read: MemAvailable,
    /// else MemFree, in KiB.
    pub memory_available_kib: Option<u64>,
}

impl Identity {
    /// Whether the device runs the release an image carries, judged by
    /// revision first (it names one exact build), then by OS identifier.
    pub fn runs(&self, revision: Option<&str>, os_identifier: Option<&str>) -> bool {
        if let (Some(ours), Some(wanted)) = (&self.revision, revision) {
            return ours == wanted;
        }
        match (&self.os_identifier, os_identifier) {
            (Some(ours), Some(wanted)) => ours == wanted,
            _ => false,
        }
    }

    /// What the catalogue keeps of a probe.
    pub fn to_probe(&self) -> crate::catalogue::Probe {
        crate::catalogue::Probe {
            board: self.board.clone(),
            model: self.model.clone(),
            os_identifier: self.os_identifier.clone(),
            mac: self.mac.clone(),
            boot_id: self.boot_id.clone(),
            uptime: self.uptime,
        }
    }
}

/// Reads output whose sections are headed by the plain `#fwu:` marker,
/// as tests and hand-made probes write it.
pub fn parse(output: &str) -> Identity {
    parse_marked(output, "fwu")
}

fn parse_marked(output: &str, marker: &str) -> Identity {
    let prefix = format!("#{marker}:");
    let section = |name: &str| -> String {
        let heading = format!("{prefix}{name}\n");
        let Some(start) = output.find(&heading).map(|at| at + heading.len()) else {
            return String::new();
        };
        let rest = &output[start..];
        let end = rest.find(&prefix).unwrap_or(rest.len());
        rest[..end].trim().to_string()
    };

    let board_json: Option<serde_json::Value> = serde_json::from_str(&section("board")).ok();
    let info_json: Option<serde_json::Value> = serde_json::from_str(&section("info")).ok();
    let release_file = parse_release_file(&section("release"));
    let from_board = |path: &[&str]| -> Option<String> {
        let mut value = board_json.as_ref()?;
        for key in path {
            value = value.get(key)?;
        }
        value.as_str().map(str::to_string).filter(|s| !s.is_empty())
    };
    let from_release = |key: &str| release_file.get(key).cloned().filter(|s| !s.is_empty());
    let non_empty = |text: String| Some(text).filter(|s| !s.is_empty());

    let version = from_board(&["release", "version"]).or_else(|| from_release("DISTRIB_RELEASE"));
    let revision =
        from_board(&["release", "revision"]).or_else(|| from_release("DISTRIB_REVISION"));
    let distribution =
        from_board(&["release", "distribution"]).or_else(|| from_release("DISTRIB_ID"));
    let os_identifier = from_board(&["release", "description"])
        .or_else(|| from_release("DISTRIB_DESCRIPTION"))
        .or_else(|| match (&distribution, &version, &revision) {
            (Some(d), Some(v), Some(r)) => Some(format!("{d} {v} {r}")),
            _ => None,
        });
    let uptime = info_json
        .as_ref()
        .and_then(|info| info.get("uptime"))
        .and_then(|u| u.as_u64())
        .or_else(|| {
            let text = section("uptime");
            let first = text.split_whitespace().next()?;
            first.parse::<f64>().ok().map(|seconds| seconds as u64)
        });

    let board = from_board(&["board_name"]).or_else(|| non_empty(section("board_name")));
    let model = from_board(&["model"]).or_else(|| non_empty(section("model")));
    let checksum = non_empty(section("checksum")).map(|c| c.to_ascii_lowercase());
    Identity {
        board: board.and_then(clean),
        model: model.and_then(clean),
        os_identifier: os_identifier.and_then(clean),
        version: version.and_then(clean),
        revision: revision.and_then(clean),
        boot_id: non_empty(section("boot_id")).and_then(clean),
        uptime,
        checksum: checksum.and_then(clean),
        mac: non_empty(section("mac")).and_then(clean),
        memory_available_kib: parse_available_kib(&section("meminfo")),
    }
}

/// `MemAvailable`, else `MemFree`, in KiB, from `/proc/meminfo`.
pub(crate) fn parse_available_kib(meminfo: &str) -> Option<u64> {
    let field = |name: &str| {
        meminfo.lines().find_map(|line| {
            let rest = line.strip_prefix(name)?.strip_prefix(':')?;
            rest.split_whitespace().next()?.parse::<u64>().ok()
        })
    };
    field("MemAvailable").or_else(|| field("MemFree"))
}

/// The most characters a value the device reports is kept with: far more
/// than any real board name, model or release description.
const VALUE_MAX_CHARS: usize = 256;

/// Makes a value the device reported safe to store, log and print: control
/// characters (terminal escapes, NUL, line breaks) become U+FFFD and the
/// value is cut to [`VALUE_MAX_CHARS`]. A hostile or broken device could
/// otherwise write escape sequences into the admin's terminal through
/// `fwu device probe` and the operation log. `None` when nothing is left.
fn clean(value: String) -> Option<String> {
    let cleaned: String = value
        .trim()
        .chars()
        .take(VALUE_MAX_CHARS)
        .map(|c| {
            if c.is_control() {
                char::REPLACEMENT_CHARACTER
            } else {
                c
            }
        })
        .collect();
    Some(cleaned).filter(|text| !text.is_empty())
}

/// Reads `KEY='value'` lines as OpenWrt's release file writes them.
fn parse_release_file(text: &str) -> std::collections::HashMap<String, String> {
    text.lines()
        .filter_map(|line| {
            let (key, value) = line.split_once('=')?;
            let value = value.trim().trim_matches(|c| c == '\'' || c == '"');
            Some((key.trim().to_string(), value.to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: &str = r#"#fwu:board
{
	"kernel": "5.15.150",
	"hostname": "OpenWrt",
	"model": "TP-Link Archer C7 v5",
	"board_name": "tplink,archer-c7-v5",
	"release": {
		"distribution": "OpenWrt",
		"version": "23.05.3",
		"revision": "r23809-234f1a2efa",
		"target": "ath79/generic",
		"description": "OpenWrt 23.05.3 r23809-234f1a2efa"
	}
}
#fwu:info
{"uptime": 4242, "memory": {"total": 1}}
#fwu:board_name
tplink,archer-c7-v5
#fwu:model
TP-Link Archer C7 v5
#fwu:release
DISTRIB_ID='OpenWrt'
#fwu:boot_id
0b1c
#fwu:uptime
9999.12 1.00
#fwu:checksum
ABCD
#fwu:mac
#fwu:meminfo
MemTotal:         125000 kB
MemFree:            1000 kB
MemAvailable:      98304 kB
#fwu:end
"#;

    #[test]
    fn ubus_is_the_first_source() {
        let identity = parse(FULL);
        assert_eq!(identity.board.as_deref(), Some("tplink,archer-c7-v5"));
        assert_eq!(identity.model.as_deref(), Some("TP-Link Archer C7 v5"));
        assert_eq!(
            identity.os_identifier.as_deref(),
            Some("OpenWrt 23.05.3 r23809-234f1a2efa")
        );
        assert_eq!(identity.uptime, Some(4242));
        assert_eq!(identity.boot_id.as_deref(), Some("0b1c"));
        assert_eq!(identity.checksum.as_deref(), Some("abcd"));
        assert_eq!(identity.mac, None);
        assert_eq!(identity.memory_available_kib, Some(98304));
    }

    #[test]
    fn files_are_the_fallback() {
        let output = "#fwu:board\n#fwu:info\n#fwu:board_name\nubnt-unifi\n#fwu:model\n\
            Ubiquiti UniFi\n#fwu:release\nDISTRIB_ID='OpenWrt'\nDISTRIB_RELEASE='19.07.10'\n\
            DISTRIB_REVISION='r11427-9ce6aa9d8d'\n#fwu:boot_id\n#fwu:uptime\n12.5 3.0\n\
            #fwu:checksum\n#fwu:mac\n#fwu:end\n";
        let identity = parse(output);
        assert_eq!(identity.board.as_deref(), Some("ubnt-unifi"));
        assert_eq!(identity.version.as_deref(), Some("19.07.10"));
        assert_eq!(
            identity.os_identifier.as_deref(),
            Some("OpenWrt 19.07.10 r11427-9ce6aa9d8d")
        );
        assert_eq!(identity.uptime, Some(12));
        assert_eq!(identity.memory_available_kib, None, "no meminfo section");
    }

    #[test]
    fn device_files_cannot_pose_as_sections() {
        let probe = Probe::with_marker("fwu-secret");
        let output = "#fwu-secret:board_name\nx\n#fwu:release\nDISTRIB_REVISION='fake'\n\
            #fwu-secret:release\nDISTRIB_REVISION='r1'\n#fwu-secret:end\n";
        let identity = probe.parse(output);
        assert_eq!(identity.revision.as_deref(), Some("r1"));
        assert!(probe
            .command()
            .starts_with("echo '#fwu-secret:board'; ubus call system board"));
        assert_ne!(Probe::new().command(), Probe::new().command());
    }

    #[test]
    fn garbage_gives_nothing() {
        assert_eq!(
            parse("$(reboot)\n#fwu:board\n{not json"),
            Identity::default()
        );
    }

    #[test]
    fn control_characters_and_long_values_are_cleaned() {
        let long = "9".repeat(100_000);
        let output = format!(
            "#fwu:board\n#fwu:info\n#fwu:board_name\nacme\u{1b}[2J,router\n#fwu:model\n\
             M\u{0}odel\u{7}\n#fwu:release\nDISTRIB_ID='Open\u{1b}]0;x\u{7}Wrt'\n\
             DISTRIB_RELEASE='{long}'\nDISTRIB_REVISION='r1'\n#fwu:boot_id\n\
             #fwu:uptime\n#fwu:checksum\n#fwu:mac\n#fwu:end\n"
        );
        let identity = parse(&output);
        assert_eq!(identity.board.as_deref(), Some("acme\u{fffd}[2J,router"));
        assert_eq!(identity.model.as_deref(), Some("M\u{fffd}odel\u{fffd}"));
        assert_eq!(
            identity.version.as_ref().map(|v| v.len()),
            Some(VALUE_MAX_CHARS)
        );
        let os = identity.os_identifier.unwrap();
        assert!(!os.chars().any(char::is_control), "{os:?}");
    }

    #[test]
    fn runs_prefers_revision() {
        let identity = parse(FULL);
        assert!(identity.runs(Some("r23809-234f1a2efa"), None));
        assert!(!identity.runs(
            Some("r28427-6df0e3d02a"),
            Some("OpenWrt 23.05.3 r23809-234f1a2efa")
        ));
        assert!(identity.runs(None, Some("OpenWrt 23.05.3 r23809-234f1a2efa")));
    }
}
