//! Reports of a batch a consultant can hand to a customer: one row per
//! device with the firmware before and after, the verdict, how long it took
//! and, where it went wrong, why. CSV for spreadsheets; HTML with a summary
//! chart, in one file with no external resources.

use serde::Serialize;

use super::{operations, summary, BatchError, Summary};
use crate::catalogue::{self, Catalogue, Status};

/// One device's line in a report.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Row {
    pub device: String,
    pub site: String,
    pub firmware_before: String,
    pub firmware_after: String,
    /// The operation's status, or `skipped`.
    pub status: String,
    pub duration_seconds: Option<i64>,
    /// Why it failed, was aborted, cancelled or skipped; empty otherwise.
    pub reason: String,
}

/// The rows of a batch's report: its operations in rollout order, then the
/// devices it left out.
pub fn rows(catalogue: &Catalogue, id: i64) -> Result<Vec<Row>, BatchError> {
    let batch = catalogue.batch(id)?;
    let build = catalogue.build_by_id(batch.build_id)?;
    let target = build
        .os_identifier
        .clone()
        .unwrap_or_else(|| format!("{} {}", build.category, build.version));
    let mut rows = Vec::new();
    for operation in operations(catalogue, id)? {
        let device = catalogue.device_by_id(operation.device_id)?;
        let log = catalogue.operation_log(operation.id)?;
        let went_wrong = matches!(
            operation.status,
            Status::Failed | Status::Aborted | Status::Cancelled
        );
        let reason = if went_wrong {
            log.last().map(|l| l.line.clone()).unwrap_or_default()
        } else {
            String::new()
        };
        let duration = operation.finished_at.as_deref().and_then(|end| {
            let start = catalogue::parse_time(&operation.created_at)?;
            Some((catalogue::parse_time(end)? - start).whole_seconds())
        });
        let after = match operation.status {
            Status::Success | Status::NotNeeded => target.clone(),
            _ => device.os_identifier.clone().unwrap_or_default(),
        };
        rows.push(Row {
            device: device.name,
            site: device.site.unwrap_or_default(),
            firmware_before: operation.firmware_before.clone().unwrap_or_default(),
            firmware_after: after,
            status: operation.status.as_str().to_string(),
            duration_seconds: duration,
            reason,
        });
    }
    for skip in catalogue.batch_skips(id)? {
        let device = catalogue.device_by_id(skip.device_id)?;
        let running = device.os_identifier.clone().unwrap_or_default();
        rows.push(Row {
            device: device.name,
            site: device.site.unwrap_or_default(),
            firmware_before: running.clone(),
            firmware_after: running,
            status: "skipped".to_string(),
            duration_seconds: None,
            reason: skip.reason,
        });
    }
    Ok(rows)
}

/// The report as CSV, with a header row.
pub fn csv(catalogue: &Catalogue, id: i64) -> Result<String, BatchError> {
    let mut writer = ::csv::WriterBuilder::new()
        .quote_style(::csv::QuoteStyle::Necessary)
        .from_writer(Vec::new());
    for row in rows(catalogue, id)? {
        writer
            .serialize(Row {
                device: neutralise(&row.device),
                site: neutralise(&row.site),
                reason: neutralise(&row.reason),
                ..row
            })
            .map_err(|error| BatchError::Refused(format!("writing the CSV report: {error}")))?;
    }
    let bytes = writer
        .into_inner()
        .map_err(|error| BatchError::Refused(format!("writing the CSV report: {error}")))?;
    Ok(String::from_utf8(bytes).expect("the CSV writer writes the UTF-8 it was given"))
}

/// Keeps a spreadsheet from reading a cell as a formula.
fn neutralise(text: &str) -> String {
    if text.starts_with(['=', '+', '-', '@']) {
        format!("'{text}")
    } else {
        text.to_string()
    }
}

/// The report as one HTML page with a summary chart, no external resources.
pub fn html(catalogue: &Catalogue, id: i64) -> Result<String, BatchError> {
    let batch = catalogue.batch(id)?;
    let summary = summary(catalogue, id)?;
    let rows = rows(catalogue, id)?;
    let mut page = String::new();
    page.push_str("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">");
    page.push_str(&format!(
        "<title>Batch {id}: {} {}</title>",
        escape(&batch.category),
        escape(&batch.version)
    ));
    page.push_str(STYLE);
    page.push_str("</head><body>");
    page.push_str(&format!(
        "<h1>Firmware upgrade: {} {}</h1><p>Batch {id}, started {}, {}. \
         {} devices upgraded or already up to date of {}; {} left out.</p>",
        escape(&batch.category),
        escape(&batch.version),
        escape(&batch.created_at),
        escape(&summary.status),
        summary.success + summary.not_needed,
        summary.total,
        summary.skipped
    ));
    page.push_str(&chart(&summary));
    page.push_str(
        "<table><thead><tr><th>Device</th><th>Site</th><th>Before</th><th>After</th>\
         <th>Status</th><th>Duration</th><th>Reason</th></tr></thead><tbody>",
    );
    for row in &rows {
        page.push_str(&format!(
            "<tr class=\"{}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
             <td>{}</td><td>{}</td></tr>",
            escape(&row.status),
            escape(&row.device),
            escape(&row.site),
            escape(&row.firmware_before),
            escape(&row.firmware_after),
            escape(&row.status),
            row.duration_seconds
                .map(|s| format!("{s} s"))
                .unwrap_or_default(),
            escape(&row.reason)
        ));
    }
    page.push_str("</tbody></table></body></html>\n");
    Ok(page)
}

const STYLE: &str = "<style>body{font-family:sans-serif;margin:2em;color:#222}\
table{border-collapse:collapse;width:100%}th,td{border-bottom:1px solid #ddd;\
padding:.3em .5em;text-align:left;vertical-align:top}tr.failed td,tr.aborted td\
{background:#fdecea}tr.success td{background:#eef8ee}svg{margin:1em 0}</style>";

/// A horizontal bar of the verdicts, as inline SVG.
fn chart(summary: &Summary) -> String {
    let parts = [
        ("success", summary.success + summary.not_needed, "#2e7d32"),
        ("failed", summary.failed, "#c62828"),
        ("aborted", summary.aborted, "#ef6c00"),
        ("cancelled", summary.cancelled, "#757575"),
        ("waiting", summary.pending + summary.in_progress, "#1565c0"),
        ("skipped", summary.skipped, "#bdbdbd"),
    ];
    let total: usize = parts.iter().map(|p| p.1).sum::<usize>().max(1);
    let mut svg = String::from(
        "<svg role=\"img\" aria-label=\"verdicts\" width=\"600\" height=\"60\" \
         xmlns=\"http://www.w3.org/2000/svg\">",
    );
    let mut x = 0.0;
    for (label, count, colour) in parts {
        if count == 0 {
            continue;
        }
        let width = 600.0 * count as f64 / total as f64;
        svg.push_str(&format!(
            "<rect x=\"{x:.1}\" y=\"0\" width=\"{width:.1}\" height=\"30\" fill=\"{colour}\">\
             <title>{label}: {count}</title></rect>\
             <text x=\"{:.1}\" y=\"48\" font-size=\"12\">{label} {count}</text>",
            x + 2.0
        ));
        x += width;
    }
    svg.push_str("</svg>");
    svg
}

fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            c => escaped.push(c),
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_escapes_everything_it_is_given() {
        assert_eq!(escape("<script>&\"'"), "&lt;script&gt;&amp;&quot;&#39;");
    }

    #[test]
    fn formulas_are_neutralised() {
        assert_eq!(neutralise("=cmd|' /c calc'!A1"), "'=cmd|' /c calc'!A1");
        assert_eq!(neutralise("ap1"), "ap1");
    }

    #[test]
    fn chart_has_a_bar_per_verdict() {
        let summary = Summary {
            success: 3,
            failed: 1,
            skipped: 2,
            ..Summary::default()
        };
        let svg = chart(&summary);
        assert_eq!(svg.matches("<rect").count(), 3);
        assert!(svg.contains("failed 1"));
    }
}
