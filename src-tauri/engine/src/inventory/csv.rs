//! Devices as a CSV file: importing a fleet a spreadsheet describes, and
//! exporting the catalogue's devices in the same columns, so that an export
//! imports again unchanged.
//!
//! The columns are [`COLUMNS`]; only `name` and `host` must be present.
//! Secrets never appear: `credential` names a vault entry (often one shared
//! by a site's devices), `key_file` names a private key on this machine,
//! and a device with neither logs in with the SSH agent.
//!
//! Files come from spreadsheets and from strangers, so every row is checked
//! on its own: a bad row is refused with its line number and the reason,
//! and the good rows still go in, all in one transaction. Values that a
//! spreadsheet would run as a formula (`=cmd|' /C calc'!A0`) are refused on
//! import and defused on export.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::net::IpAddr;
use std::path::Path;

use serde::Serialize;

use super::InventoryError;
use crate::catalogue::{Catalogue, Device, DeviceAuth, NewDevice};

/// The columns, in the order export writes them.
pub const COLUMNS: [&str; 9] = [
    "name",
    "host",
    "alternate_hosts",
    "port",
    "user",
    "site",
    "tags",
    "credential",
    "key_file",
];

/// Header names that would carry a secret; refused by name so that the
/// user learns where secrets go instead.
const SECRET_COLUMNS: [&str; 4] = ["password", "passphrase", "secret", "private_key"];

/// Characters that make a spreadsheet cell a formula when they lead it.
const FORMULA_STARTS: [char; 4] = ['=', '+', '-', '@'];

/// The longest device name an import accepts; longer ones are typing
/// accidents (a whole row pasted into one cell).
const MAX_NAME: usize = 128;

/// How an import treats the file's bad rows.
#[derive(Clone, Copy, Debug, Default)]
pub struct ImportOptions {
    /// Import nothing when any row is bad.
    pub strict: bool,
    /// Check every row, import nothing.
    pub dry_run: bool,
}

/// A row that was not imported, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RefusedRow {
    /// The line of the file the row starts on; the header is line 1.
    pub line: u64,
    pub reason: String,
}

impl std::fmt::Display for RefusedRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.reason)
    }
}

/// What an import did.
#[derive(Clone, Debug, Serialize)]
pub struct ImportReport {
    /// The devices of the good rows, by name, in file order.
    pub devices: Vec<String>,
    /// Whether they were added to the catalogue (not with a dry run, nor
    /// with a strict import that found a bad row).
    pub imported: bool,
    pub refused: Vec<RefusedRow>,
}

/// A good row: the device it describes and where it was.
#[derive(Clone, Debug)]
pub struct Row {
    pub line: u64,
    pub device: NewDevice,
}

/// Imports the CSV text `data` into the catalogue. Names already in the
/// catalogue are refused row by row. An error is returned only when the
/// file as a whole cannot be read (no header, unknown columns, UTF-16) or
/// the catalogue fails; then nothing is imported.
pub fn import(
    catalogue: &Catalogue,
    data: &[u8],
    options: ImportOptions,
) -> Result<ImportReport, InventoryError> {
    let existing: HashSet<String> = catalogue
        .devices()?
        .into_iter()
        .map(|device| device.name)
        .collect();
    let (rows, refused) = read(data, &existing)?;
    let devices: Vec<String> = rows.iter().map(|row| row.device.name.clone()).collect();
    // A strict import refuses the whole file for one bad row.
    let strict_refusal = options.strict && !refused.is_empty();
    let write = !options.dry_run && !strict_refusal && !rows.is_empty();
    if write {
        let new: Vec<NewDevice> = rows.into_iter().map(|row| row.device).collect();
        catalogue.add_devices(&new)?;
    }
    tracing::info!(
        good = devices.len(),
        refused = refused.len(),
        imported = write,
        "device CSV import"
    );
    Ok(ImportReport {
        devices,
        imported: write,
        refused,
    })
}

/// Imports the CSV file at `path`; see [`import`].
pub fn import_file(
    catalogue: &Catalogue,
    path: &Path,
    options: ImportOptions,
) -> Result<ImportReport, InventoryError> {
    let data = std::fs::read(path).map_err(|source| InventoryError::Read {
        path: path.display().to_string(),
        source,
    })?;
    import(catalogue, &data, options)
}

/// Reads every row of a CSV file: the good ones as devices, the bad ones
/// with their reasons. `existing` holds the names already taken.
pub fn read(
    data: &[u8],
    existing: &HashSet<String>,
) -> Result<(Vec<Row>, Vec<RefusedRow>), InventoryError> {
    if data.starts_with(&[0xFF, 0xFE]) || data.starts_with(&[0xFE, 0xFF]) {
        return Err(InventoryError::BadFile(
            "the file is UTF-16 text; save it as CSV in UTF-8".to_string(),
        ));
    }
    // Spreadsheets on Windows start UTF-8 files with a byte order mark.
    let data = data.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(data);
    let mut reader = ::csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(data);
    let mut records = reader.byte_records();
    let header = match records.next() {
        Some(Ok(header)) => header,
        Some(Err(error)) => return Err(InventoryError::BadFile(format!("header: {error}"))),
        None => {
            return Err(InventoryError::BadFile(
                "the file is empty: the header line is missing".to_string(),
            ))
        }
    };
    let columns = header_columns(&header)?;

    let mut rows = Vec::new();
    let mut refused = Vec::new();
    let mut first_line_of: HashMap<String, u64> = HashMap::new();
    let mut last_line = 1;
    for record in records {
        let record = match record {
            Ok(record) => record,
            Err(error) => {
                let line = error.position().map(|p| p.line()).unwrap_or(last_line + 1);
                refused.push(RefusedRow {
                    line,
                    reason: format!("unreadable CSV: {error}"),
                });
                continue;
            }
        };
        let line = record.position().map(|p| p.line()).unwrap_or(last_line + 1);
        last_line = line;
        let device = match parse_row(&columns, &record) {
            Ok(device) => device,
            Err(reason) => {
                refused.push(RefusedRow { line, reason });
                continue;
            }
        };
        if existing.contains(&device.name) {
            refused.push(RefusedRow {
                line,
                reason: format!("device {} already exists in the catalogue", device.name),
            });
            continue;
        }
        if let Some(first) = first_line_of.get(&device.name) {
            refused.push(RefusedRow {
                line,
                reason: format!("duplicate name {} (first on line {first})", device.name),
            });
            continue;
        }
        first_line_of.insert(device.name.clone(), line);
        rows.push(Row { line, device });
    }
    Ok((rows, refused))
}

/// Which column each field of a row is, from the header.
fn header_columns(header: &::csv::ByteRecord) -> Result<Vec<&'static str>, InventoryError> {
    let bad = |reason: String| Err(InventoryError::BadFile(format!("header: {reason}")));
    let mut columns = Vec::with_capacity(header.len());
    for field in header {
        let Ok(text) = std::str::from_utf8(field) else {
            return bad("not UTF-8 text".to_string());
        };
        let name = text.trim().to_ascii_lowercase();
        if SECRET_COLUMNS.contains(&name.as_str()) {
            return bad(format!(
                "column {name:?} would hold a secret; secrets never go in the file: \
                 put them in the keyring and name the entry in the credential column"
            ));
        }
        let Some(known) = COLUMNS.iter().find(|column| **column == name) else {
            return bad(format!(
                "unknown column {name:?}; the columns are {}",
                COLUMNS.join(", ")
            ));
        };
        if columns.contains(known) {
            return bad(format!("column {name:?} appears twice"));
        }
        columns.push(*known);
    }
    for required in ["name", "host"] {
        if !columns.contains(&required) {
            return bad(format!("the column {required:?} is missing"));
        }
    }
    Ok(columns)
}

/// Turns one row into a device, or says what is wrong with it.
fn parse_row(columns: &[&'static str], record: &::csv::ByteRecord) -> Result<NewDevice, String> {
    if record
        .iter()
        .any(|field| std::str::from_utf8(field).is_err())
    {
        return Err("not UTF-8 text".to_string());
    }
    if record.len() < columns.len() {
        return Err(format!("missing column {}", columns[record.len()]));
    }
    if record.len() > columns.len() {
        return Err(format!(
            "{} fields, but the header names {} columns",
            record.len(),
            columns.len()
        ));
    }
    let mut values: HashMap<&str, &str> = HashMap::new();
    for (column, field) in columns.iter().zip(record.iter()) {
        let value = std::str::from_utf8(field)
            .map_err(|_| "not UTF-8 text".to_string())?
            .trim();
        check_text(column, value)?;
        values.insert(column, value);
    }
    let value = |column: &str| values.get(column).copied().unwrap_or("");

    let name = value("name");
    if name.is_empty() {
        return Err("the name is empty".to_string());
    }
    if name.chars().count() > MAX_NAME {
        return Err(format!("the name is longer than {MAX_NAME} characters"));
    }
    let host = value("host");
    if host.is_empty() {
        return Err("the host is empty".to_string());
    }
    check_host(host)?;
    let alternate_hosts: Vec<String> = value("alternate_hosts")
        .split(|c: char| c == ';' || c.is_whitespace())
        .filter(|host| !host.is_empty())
        .map(str::to_string)
        .collect();
    for alternate in &alternate_hosts {
        check_host(alternate)?;
    }
    let port = match value("port") {
        "" => 22,
        text => match text.parse::<u16>() {
            Ok(port) if port > 0 => port,
            _ => {
                return Err(format!(
                    "bad port {text:?}: a port is a number from 1 to 65535"
                ))
            }
        },
    };
    let user = match value("user") {
        "" => "root",
        user => user,
    };
    if !user
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
    {
        return Err(format!(
            "bad user {user:?}: letters, digits, '.', '-' and '_' only"
        ));
    }
    let site = Some(value("site"))
        .filter(|site| !site.is_empty())
        .map(str::to_string);
    let tags = value("tags")
        .split(';')
        .map(str::trim)
        .filter(|tag| !tag.is_empty())
        .map(str::to_string)
        .collect();
    let credential = Some(value("credential"))
        .filter(|entry| !entry.is_empty())
        .map(str::to_string);
    let key_file = value("key_file");
    let auth = if key_file.is_empty() {
        match credential {
            Some(credential) => DeviceAuth::Password { credential },
            None => DeviceAuth::Agent,
        }
    } else {
        if !Path::new(key_file).is_absolute() {
            return Err(format!(
                "key_file {key_file:?} is not an absolute path; the file may be read from \
                 anywhere, so relative paths are ambiguous"
            ));
        }
        DeviceAuth::Key {
            key_file: key_file.to_string(),
            credential,
        }
    };
    Ok(NewDevice {
        name: name.to_string(),
        host: host.to_string(),
        alternate_hosts,
        port,
        user: user.to_string(),
        auth,
        site,
        tags,
    })
}

/// Refuses control characters and anything a spreadsheet would evaluate.
fn check_text(column: &str, value: &str) -> Result<(), String> {
    if let Some(c) = value.chars().find(|c| c.is_control()) {
        return Err(format!(
            "column {column} holds the control character {:?}",
            c
        ));
    }
    if let Some(first) = value.chars().next().filter(|c| FORMULA_STARTS.contains(c)) {
        return Err(format!(
            "column {column} begins with {first:?}, which a spreadsheet runs as a formula; \
             refused"
        ));
    }
    Ok(())
}

/// Accepts an IP address or a DNS host name, nothing a shell or SSH could
/// read as more than an address.
fn check_host(host: &str) -> Result<(), String> {
    if host.parse::<IpAddr>().is_ok() {
        return Ok(());
    }
    let labels_ok = host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        });
    if labels_ok {
        Ok(())
    } else {
        Err(format!("bad host {host:?}: not an IP address or host name"))
    }
}

/// Writes every device of the catalogue as CSV to `out`; returns a warning
/// for each value that had to be defused (see [`write`]).
pub fn export(catalogue: &Catalogue, out: impl Write) -> Result<Vec<String>, InventoryError> {
    let devices = catalogue.devices()?;
    write(&devices, out).map_err(|source| InventoryError::Write {
        path: "the CSV output".to_string(),
        source,
    })
}

/// Writes `devices` as CSV. A value beginning with a formula character
/// (only possible for devices added by other means than an import) is
/// written with a leading `'` so that no spreadsheet runs it; each such
/// change is returned as a warning, because that row no longer round-trips.
pub fn write(devices: &[Device], out: impl Write) -> std::io::Result<Vec<String>> {
    let mut writer = ::csv::WriterBuilder::new()
        .quote_style(::csv::QuoteStyle::Necessary)
        .from_writer(out);
    writer.write_record(COLUMNS)?;
    let mut warnings = Vec::new();
    for device in devices {
        let (credential, key_file) = match &device.auth {
            DeviceAuth::Password { credential } => (credential.clone(), String::new()),
            DeviceAuth::Key {
                key_file,
                credential,
            } => (credential.clone().unwrap_or_default(), key_file.clone()),
            DeviceAuth::Agent => (String::new(), String::new()),
        };
        let values = [
            device.name.clone(),
            device.host.clone(),
            device.alternate_hosts.join(";"),
            device.port.to_string(),
            device.user.clone(),
            device.site.clone().unwrap_or_default(),
            device.tags.join(";"),
            credential,
            key_file,
        ];
        let mut fields = Vec::with_capacity(values.len());
        for (column, value) in COLUMNS.iter().zip(values) {
            fields.push(defuse(&device.name, column, value, &mut warnings));
        }
        writer.write_record(&fields)?;
    }
    writer.flush()?;
    Ok(warnings)
}

/// Prefixes a value a spreadsheet would evaluate with `'`, noting it.
fn defuse(device: &str, column: &str, value: String, warnings: &mut Vec<String>) -> String {
    let dangerous = value
        .chars()
        .next()
        .is_some_and(|c| FORMULA_STARTS.contains(&c) || c == '\t' || c == '\r');
    if !dangerous {
        return value;
    }
    warnings.push(format!(
        "device {device}: column {column} begins with a formula character; written with a \
         leading ' so that spreadsheets show it as text (an import will not accept it as is)"
    ));
    format!("'{value}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "name,host,alternate_hosts,port,user,site,tags,credential,key_file\n";

    fn read_text(text: &str) -> (Vec<Row>, Vec<RefusedRow>) {
        read(text.as_bytes(), &HashSet::new()).unwrap()
    }

    fn reasons(refused: &[RefusedRow]) -> Vec<String> {
        refused.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn good_rows_become_devices() {
        let text = format!(
            "{HEADER}ap1,127.0.0.1,127.0.1.1;127.0.2.1,2222,admin,acme,floor-1;ap,\
             site/acme/password,\n\
             ap2, 127.0.0.2 ,127.0.1.2 127.0.2.2,,,,,,/home/me/.ssh/id_ed25519\n\
             ap3,ap3.example.net,,,,,,,\n"
        );
        let (rows, refused) = read_text(&text);
        assert!(refused.is_empty(), "{refused:?}");
        let ap1 = &rows[0].device;
        assert_eq!(rows[0].line, 2);
        assert_eq!(ap1.alternate_hosts, vec!["127.0.1.1", "127.0.2.1"]);
        assert_eq!((ap1.port, ap1.user.as_str()), (2222, "admin"));
        assert_eq!(ap1.site.as_deref(), Some("acme"));
        assert_eq!(ap1.tags, vec!["floor-1", "ap"]);
        assert_eq!(
            ap1.auth,
            DeviceAuth::Password {
                credential: "site/acme/password".to_string()
            }
        );
        let ap2 = &rows[1].device;
        assert_eq!(
            (ap2.host.as_str(), ap2.port, ap2.user.as_str()),
            ("127.0.0.2", 22, "root")
        );
        assert_eq!(ap2.alternate_hosts, vec!["127.0.1.2", "127.0.2.2"]);
        assert!(matches!(
            ap2.auth,
            DeviceAuth::Key {
                credential: None,
                ..
            }
        ));
        assert_eq!(rows[2].device.auth, DeviceAuth::Agent);
    }

    #[test]
    fn header_may_be_partial_and_in_any_order() {
        let (rows, refused) = read_text("\u{feff}Host,Name\n127.0.0.1,ap1\n");
        assert!(refused.is_empty());
        assert_eq!(rows[0].device.name, "ap1");
        assert_eq!(rows[0].device.host, "127.0.0.1");
    }

    #[test]
    fn every_bad_row_is_reported_with_its_line() {
        let text = format!(
            "{HEADER}\
             ok1,127.0.0.1,,,,,,,\n\
             bad-host,127.0.0.1;reboot,,,,,,,\n\
             bad-port,127.0.0.2,,99999,,,,,\n\
             short,127.0.0.3\n\
             ok1,127.0.0.4,,,,,,,\n\
             ,127.0.0.5,,,,,,,\n\
             long,127.0.0.6,,,,,,,,extra\n\
             bad-user,127.0.0.7,,,ro ot,,,,\n\
             relative,127.0.0.8,,,,,,,id_rsa\n\
             bad-alt,127.0.0.9,$(id),,,,,,\n\
             ok2,127.0.0.10,,,,,,,\n"
        );
        let (rows, refused) = read_text(&text);
        let names: Vec<&str> = rows.iter().map(|r| r.device.name.as_str()).collect();
        assert_eq!(names, vec!["ok1", "ok2"]);
        let lines: Vec<u64> = refused.iter().map(|r| r.line).collect();
        assert_eq!(lines, vec![3, 4, 5, 6, 7, 8, 9, 10, 11]);
        let reasons = reasons(&refused);
        assert!(reasons[0].starts_with("line 3: bad host"), "{reasons:?}");
        assert!(reasons[1].starts_with("line 4: bad port \"99999\""));
        assert_eq!(reasons[2], "line 5: missing column alternate_hosts");
        assert_eq!(reasons[3], "line 6: duplicate name ok1 (first on line 2)");
        assert_eq!(reasons[4], "line 7: the name is empty");
        assert!(reasons[5].contains("10 fields"));
        assert!(reasons[6].starts_with("line 9: bad user"));
        assert!(reasons[7].contains("not an absolute path"));
        assert!(reasons[8].starts_with("line 11: bad host \"$(id)\""));
    }

    #[test]
    fn formulas_are_refused_in_every_column() {
        let payloads = ["=cmd|' /C calc'!A0", "+1+1", "-2+3", "@SUM(A1)", " =1+1"];
        for (index, column) in COLUMNS.iter().enumerate() {
            for payload in payloads {
                let mut fields = vec!["ap1", "127.0.0.1", "", "", "", "", "", "", "/k"];
                fields[index] = payload;
                let text = format!("{HEADER}{}\n", fields.join(","));
                let (rows, refused) = read_text(&text);
                assert!(rows.is_empty(), "{column}: {payload} was accepted");
                assert!(
                    refused[0].reason.contains("formula"),
                    "{column}: {payload}: {}",
                    refused[0].reason
                );
            }
        }
    }

    #[test]
    fn control_characters_and_foreign_encodings_are_refused() {
        let mut data = HEADER.as_bytes().to_vec();
        data.extend_from_slice(b"caf\xe9,127.0.0.1,,,,,,,\n");
        data.extend_from_slice(b"\"tab\there\",127.0.0.2,,,,,,,\n");
        data.extend_from_slice(b"\"new\nline\",127.0.0.3,,,,,,,\n");
        data.extend_from_slice(b"bell,127.0.0.4,,,,site\x07,,,\n");
        data.extend_from_slice("caf\u{e9},127.0.0.5,,,,,,,\n".as_bytes());
        let (rows, refused) = read(&data, &HashSet::new()).unwrap();
        let reasons = reasons(&refused);
        assert_eq!(reasons[0], "line 2: not UTF-8 text");
        assert!(reasons[1].starts_with("line 3: column name holds the control character"));
        assert!(reasons[2].starts_with("line 4: column name holds the control character"));
        assert!(reasons[3].starts_with("line 6: column site holds the control character"));
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].device.name, "caf\u{e9}");
        assert_eq!(rows[0].line, 7);

        let utf16: Vec<u8> = [0xFF, 0xFE, b'n', 0, b'a', 0].to_vec();
        let error = read(&utf16, &HashSet::new()).unwrap_err();
        assert!(error.to_string().contains("UTF-16"), "{error}");
    }

    #[test]
    fn bad_headers_refuse_the_whole_file() {
        for (text, expected) in [
            ("", "empty"),
            ("name\nap1\n", "\"host\" is missing"),
            ("name,host,password\n", "secret"),
            ("name,host,colour\n", "unknown column \"colour\""),
            ("name,host,name\n", "appears twice"),
        ] {
            let error = read(text.as_bytes(), &HashSet::new()).unwrap_err();
            assert!(error.to_string().contains(expected), "{text:?}: {error}");
        }
    }

    #[test]
    fn names_already_in_the_catalogue_are_refused() {
        let existing: HashSet<String> = ["ap1".to_string()].into();
        let text = format!("{HEADER}ap1,127.0.0.1,,,,,,,\nap2,127.0.0.2,,,,,,,\n");
        let (rows, refused) = read(text.as_bytes(), &existing).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(
            refused[0].to_string(),
            "line 2: device ap1 already exists in the catalogue"
        );
    }

    const MIXED: &str = "name,host,credential\n\
        ap1,127.0.0.1,site/acme/password\n\
        ap2,not a host,site/acme/password\n\
        ap3,127.0.0.3,site/acme/password\n";

    #[test]
    fn import_adds_good_rows_in_one_go() {
        let dir = tempfile::tempdir().unwrap();
        let catalogue = Catalogue::open_in(dir.path()).unwrap();
        let report = import(&catalogue, MIXED.as_bytes(), ImportOptions::default()).unwrap();
        assert!(report.imported);
        assert_eq!(report.devices, vec!["ap1", "ap3"]);
        assert_eq!(report.refused.len(), 1);
        assert_eq!(catalogue.devices().unwrap().len(), 2);
        // The same file again: every row now names a device that exists.
        let again = import(&catalogue, MIXED.as_bytes(), ImportOptions::default()).unwrap();
        assert_eq!(again.refused.len(), 3);
        assert!(!again.imported);
    }

    #[test]
    fn strict_and_dry_run_change_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let catalogue = Catalogue::open_in(dir.path()).unwrap();
        let strict = ImportOptions {
            strict: true,
            dry_run: false,
        };
        let report = import(&catalogue, MIXED.as_bytes(), strict).unwrap();
        assert!(!report.imported);
        assert_eq!(report.refused.len(), 1);
        let dry = ImportOptions {
            strict: false,
            dry_run: true,
        };
        let report = import(&catalogue, MIXED.as_bytes(), dry).unwrap();
        assert_eq!((report.imported, report.devices.len()), (false, 2));
        assert!(catalogue.devices().unwrap().is_empty());
        // Strict with a clean file imports.
        let clean = "name,host\nap1,127.0.0.1\n";
        assert!(
            import(&catalogue, clean.as_bytes(), strict)
                .unwrap()
                .imported
        );
    }

    #[test]
    fn export_then_import_gives_the_same_devices() {
        let dir = tempfile::tempdir().unwrap();
        let catalogue = Catalogue::open_in(dir.path()).unwrap();
        let text = format!(
            "{HEADER}ap1,127.0.0.1,127.0.1.1;127.0.2.1,2222,admin,\"Acme, Inc.\",ap;floor-1,\
             site/acme/password,\n\
             ap2,127.0.0.2,,,,,,site/acme/passphrase,/keys/id_ed25519\n\
             \"ap \"\"three\"\"\",127.0.0.3,,,,,,,\n"
        );
        let report = import(&catalogue, text.as_bytes(), ImportOptions::default()).unwrap();
        assert!(report.refused.is_empty(), "{:?}", report.refused);
        let mut exported = Vec::new();
        assert!(export(&catalogue, &mut exported).unwrap().is_empty());

        let other_dir = tempfile::tempdir().unwrap();
        let other = Catalogue::open_in(other_dir.path()).unwrap();
        let report = import(&other, &exported, ImportOptions::default()).unwrap();
        assert!(report.refused.is_empty(), "{:?}", report.refused);
        let shape = |catalogue: &Catalogue| -> Vec<String> {
            catalogue
                .devices()
                .unwrap()
                .into_iter()
                .map(|d| {
                    format!(
                        "{} {} {:?} {} {} {:?} {:?} {:?}",
                        d.name, d.host, d.alternate_hosts, d.port, d.user, d.site, d.tags, d.auth
                    )
                })
                .collect()
        };
        assert_eq!(shape(&catalogue), shape(&other));
    }

    #[test]
    fn export_defuses_formulas() {
        let dir = tempfile::tempdir().unwrap();
        let catalogue = Catalogue::open_in(dir.path()).unwrap();
        catalogue
            .add_device(&NewDevice {
                name: "=HYPERLINK(\"http://x\")".to_string(),
                host: "127.0.0.1".to_string(),
                alternate_hosts: Vec::new(),
                port: 22,
                user: "root".to_string(),
                auth: DeviceAuth::Agent,
                site: Some("@acme".to_string()),
                tags: Vec::new(),
            })
            .unwrap();
        let mut exported = Vec::new();
        let warnings = export(&catalogue, &mut exported).unwrap();
        assert_eq!(warnings.len(), 2);
        let text = String::from_utf8(exported).unwrap();
        let row = text.lines().nth(1).unwrap();
        assert_eq!(
            row,
            "\"'=HYPERLINK(\"\"http://x\"\")\",127.0.0.1,,22,root,'@acme,,,"
        );
    }
}
