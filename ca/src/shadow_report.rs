//! `ssh-ca shadow report`: what the shadow policy would have done differently, from the
//! `policy.shadow` records of the audit log. Grouped by kind (would newly deny, would newly
//! allow, would change the certificate), user, roles and rule, with a count and the latest
//! example of each, as a table or `--json`.
//!
//! The log is read line by line (memory grows with the number of groups, not of records);
//! a line that is not a JSON record is counted and skipped: `ssh-ca audit verify` is the
//! integrity check.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;
use serde_json::Value;

/// One group of differences.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    /// `would_deny`, `would_allow` or `would_change`.
    pub kind: String,
    /// Who asked (user, SSO person, `workload:NAME`).
    pub user: String,
    /// Roles concerned, comma-joined (`-` when none).
    pub roles: String,
    /// The rule that makes the difference.
    pub rule: String,
    /// Decisions in this group.
    pub count: u64,
    /// The latest record of the group (time, how it came, both outcomes).
    pub latest: Value,
}

/// The whole report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// Unix time of the oldest record considered.
    pub since: u64,
    /// Groups, would-deny first, then would-allow, then would-change; most frequent first.
    pub rows: Vec<Row>,
    /// Lines of the log that were not JSON records (skipped).
    pub unreadable_lines: u64,
}

fn kind_order(kind: &str) -> u8 {
    match kind {
        "would_deny" => 0,
        "would_allow" => 1,
        _ => 2,
    }
}

fn text(record: &Value, key: &str) -> String {
    match record.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(items)) if !items.is_empty() => items
            .iter()
            .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string))
            .collect::<Vec<_>>()
            .join(","),
        _ => "-".into(),
    }
}

/// Unix time of a record's RFC 3339 `time`, if it has one.
fn record_time(record: &Value) -> Option<u64> {
    let time = record.get("time")?.as_str()?;
    let parsed = chrono::DateTime::parse_from_rfc3339(time).ok()?;
    u64::try_from(parsed.timestamp()).ok()
}

/// Summarises audit log lines: `policy.shadow` records at or after `since` (unix time).
pub fn summarise(lines: impl Iterator<Item = String>, since: u64) -> Report {
    let mut groups: BTreeMap<(u8, String, String, String, String), Row> = BTreeMap::new();
    let mut unreadable_lines = 0;
    for line in lines {
        if line.trim().is_empty() {
            continue;
        }
        let Ok(record) = serde_json::from_str::<Value>(&line) else {
            unreadable_lines += 1;
            continue;
        };
        if record.get("event").and_then(Value::as_str) != Some("policy.shadow") {
            continue;
        }
        if record_time(&record).is_none_or(|t| t < since) {
            continue;
        }
        let kind = text(&record, "kind");
        let (user, roles, rule) = (
            text(&record, "user"),
            text(&record, "roles"),
            text(&record, "rule"),
        );
        let latest = serde_json::json!({
            "time": record.get("time"),
            "seq": record.get("seq"),
            "via": record.get("via"),
            "changed": record.get("changed"),
            "enforced": record.get("enforced"),
            "shadow": record.get("shadow"),
        });
        let key = (
            kind_order(&kind),
            kind.clone(),
            user.clone(),
            roles.clone(),
            rule.clone(),
        );
        let row = groups.entry(key).or_insert_with(|| Row {
            kind,
            user,
            roles,
            rule,
            count: 0,
            latest: Value::Null,
        });
        row.count += 1;
        // The log is in order: the last one seen is the latest.
        row.latest = latest;
    }
    let mut rows: Vec<Row> = groups.into_values().collect();
    rows.sort_by(|a, b| {
        kind_order(&a.kind)
            .cmp(&kind_order(&b.kind))
            .then(b.count.cmp(&a.count))
            .then(a.user.cmp(&b.user))
    });
    Report {
        since,
        rows,
        unreadable_lines,
    }
}

/// Reads the audit log at `path` and summarises it from `since` (unix time).
pub fn report(path: &Path, since: u64) -> Result<Report> {
    let file = std::fs::File::open(path)
        .with_context(|| format!("cannot read the audit log {}", path.display()))?;
    let mut failed = None;
    let lines = BufReader::new(file)
        .lines()
        .map_while(|line| line.map_err(|err| failed = Some(err)).ok());
    let report = summarise(lines, since);
    if let Some(err) = failed {
        return Err(err).with_context(|| format!("cannot read the audit log {}", path.display()));
    }
    Ok(report)
}

/// Text from the log as one printable line: control characters (a terminal's escape
/// sequences, line breaks) become `?`, whatever put them in a record.
fn printable(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

fn kind_title(kind: &str) -> &str {
    match kind {
        "would_deny" => "newly deny",
        "would_allow" => "newly allow",
        "would_change" => "change grant",
        other => other,
    }
}

/// The report as a table for a terminal.
pub fn table(report: &Report, since_text: &str) -> String {
    let total: u64 = report.rows.iter().map(|r| r.count).sum();
    let mut out =
        format!("shadow policy: {total} decision(s) would differ in the last {since_text}\n");
    if report.rows.is_empty() {
        out.push_str("the shadow policy decided as the enforced one every time\n");
    } else {
        let width = |f: &dyn Fn(&Row) -> usize, title: &str| {
            report
                .rows
                .iter()
                .map(f)
                .max()
                .unwrap_or(0)
                .max(title.len())
        };
        let user_w = width(&|r| printable(&r.user).len(), "USER");
        let roles_w = width(&|r| printable(&r.roles).len(), "ROLES");
        out.push_str(&format!(
            "{:<12}  {:<user_w$}  {:<roles_w$}  {:>5}  {:<24}  RULE\n",
            "WOULD", "USER", "ROLES", "COUNT", "LATEST"
        ));
        for row in &report.rows {
            let latest = row
                .latest
                .get("time")
                .and_then(Value::as_str)
                .unwrap_or("-");
            out.push_str(&format!(
                "{:<12}  {:<user_w$}  {:<roles_w$}  {:>5}  {:<24}  {}\n",
                printable(kind_title(&row.kind)),
                printable(&row.user),
                printable(&row.roles),
                row.count,
                printable(latest),
                printable(&row.rule)
            ));
        }
    }
    if report.unreadable_lines > 0 {
        out.push_str(&format!(
            "warning: {} line(s) of the audit log are not records (skipped); run `ssh-ca audit verify`\n",
            report.unreadable_lines
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(seq: u64, time: &str, kind: &str, user: &str, rule: &str) -> String {
        serde_json::json!({
            "seq": seq, "time": time, "event": "policy.shadow", "via": "cert",
            "user": user, "kind": kind, "roles": ["dev"], "rule": rule,
            "enforced": {"allowed": true}, "shadow": {"allowed": false, "reason": rule},
        })
        .to_string()
    }

    #[test]
    fn groups_count_and_keep_the_latest() {
        let lines = vec![
            record(
                1,
                "2026-12-01T10:00:00.000Z",
                "would_deny",
                "alice",
                "max_ttl",
            ),
            r#"{"seq":2,"time":"2026-12-01T10:00:01.000Z","event":"cert.issued"}"#.to_string(),
            record(
                3,
                "2026-12-01T11:00:00.000Z",
                "would_deny",
                "alice",
                "max_ttl",
            ),
            record(
                4,
                "2026-12-01T11:30:00.000Z",
                "would_allow",
                "bob",
                "unknown role",
            ),
            "not json".to_string(),
            String::new(),
        ];
        let report = summarise(lines.into_iter(), 0);
        assert_eq!(report.unreadable_lines, 1);
        assert_eq!(report.rows.len(), 2);
        assert_eq!(report.rows[0].kind, "would_deny");
        assert_eq!(report.rows[0].count, 2);
        assert_eq!(report.rows[0].roles, "dev");
        assert_eq!(report.rows[0].latest["seq"], 3);
        assert_eq!(report.rows[1].kind, "would_allow");
        let table = table(&report, "7d");
        assert!(table.contains("newly deny"), "{table}");
        assert!(table.contains("newly allow"), "{table}");
        assert!(table.contains("3 decision(s)"), "{table}");
        assert!(table.contains("warning: 1 line(s)"), "{table}");
    }

    #[test]
    fn records_before_since_are_left_out() {
        let lines = vec![
            record(1, "2026-11-01T10:00:00.000Z", "would_deny", "alice", "old"),
            record(2, "2026-12-01T10:00:00.000Z", "would_deny", "alice", "new"),
        ];
        let since = record_time(&serde_json::json!({"time": "2026-11-20T00:00:00Z"})).unwrap();
        let report = summarise(lines.into_iter(), since);
        assert_eq!(report.rows.len(), 1);
        assert_eq!(report.rows[0].rule, "new");
    }

    #[test]
    fn control_characters_never_reach_the_terminal() {
        let lines = vec![record(
            1,
            "2026-12-01T10:00:00.000Z",
            "would_deny",
            "eve\u{1b}[2J",
            "rule\nforged line",
        )];
        let table = table(&summarise(lines.into_iter(), 0), "7d");
        assert!(!table.contains('\u{1b}'), "{table:?}");
        assert!(
            table.contains("eve?[2J") && table.contains("rule?forged line"),
            "{table}"
        );
    }

    #[test]
    fn no_difference_says_so() {
        let report = summarise(std::iter::empty(), 0);
        assert!(table(&report, "7d").contains("decided as the enforced one"));
    }
}
