//! Times, offsets and sizes as auditors type and read them.
//!
//! Instants (`--since`, `--until`) are UTC: `24h` (that long ago), `2026-11-23`,
//! `2026-11-23T18:00`, `2026-11-23 18:00:05Z`, or `@1795456800` (Unix seconds). Offsets in a
//! recording (`--from`, what `grep` prints) are `M:SS.s` or `H:MM:SS.s`, plain seconds
//! (`83.5`) or a duration (`1m23s`), so what `grep` prints can be pasted into `replay --from`.

use chrono::{NaiveDate, NaiveDateTime};
use jitssh_core::duration::HumanDuration;

use super::AuditorError;

/// Parses an instant (see the module docs) into Unix seconds; `now` resolves `24h`.
pub fn parse_instant(text: &str, now: u64) -> Result<u64, AuditorError> {
    let t = text.trim();
    let bad = || {
        AuditorError::BadArgument(format!(
            "invalid time {text:?}: expected e.g. 24h, 2026-11-23, 2026-11-23T18:00[:SS][Z] or @UNIX"
        ))
    };
    if let Some(unix) = t.strip_prefix('@') {
        return unix.parse().map_err(|_| bad());
    }
    if let Ok(ago) = t.parse::<HumanDuration>() {
        return Ok(now.saturating_sub(ago.as_secs()));
    }
    if let Ok(date) = NaiveDate::parse_from_str(t, "%Y-%m-%d") {
        let midnight = date.and_hms_opt(0, 0, 0).ok_or_else(bad)?;
        return unix_of(midnight).ok_or_else(bad);
    }
    let t = t.strip_suffix('Z').unwrap_or(t).replacen(' ', "T", 1);
    for format in ["%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M"] {
        if let Ok(at) = NaiveDateTime::parse_from_str(&t, format) {
            return unix_of(at).ok_or_else(bad);
        }
    }
    Err(bad())
}

fn unix_of(at: NaiveDateTime) -> Option<u64> {
    u64::try_from(at.and_utc().timestamp()).ok()
}

/// Instants and durations print as the CA prints them (one format for both programs).
pub use jitssh_core::timefmt::{format_duration, format_utc as format_unix};

/// An offset in a recording as `M:SS.s` (or `H:MM:SS.s`), rounded down to a tenth, so that
/// replaying from it never starts after the event it points at.
pub fn format_offset(secs: f64) -> String {
    let tenths = (secs.max(0.0) * 10.0).floor() as u64;
    let (whole, tenth) = (tenths / 10, tenths % 10);
    let (h, m, s) = (whole / 3600, whole / 60 % 60, whole % 60);
    if h > 0 {
        format!("{h}:{m:02}:{s:02}.{tenth}")
    } else {
        format!("{m}:{s:02}.{tenth}")
    }
}

/// Parses an offset (see the module docs) into seconds.
pub fn parse_offset(text: &str) -> Result<f64, AuditorError> {
    let t = text.trim();
    let bad = || {
        AuditorError::BadArgument(format!(
            "invalid offset {text:?}: expected e.g. 83.5, 1:23.5, 1:02:03 or 1m23s"
        ))
    };
    let seconds = |s: &str| -> Option<f64> {
        let v: f64 = s.parse().ok()?;
        (v.is_finite() && v >= 0.0).then_some(v)
    };
    if t.contains(':') {
        let parts: Vec<&str> = t.split(':').collect();
        if parts.len() > 3 {
            return Err(bad());
        }
        let (last, whole) = parts.split_last().ok_or_else(bad)?;
        let mut total = seconds(last).filter(|s| *s < 60.0).ok_or_else(bad)?;
        for (i, part) in whole.iter().rev().enumerate() {
            let n: u64 = part.parse().map_err(|_| bad())?;
            if i == 0 && whole.len() == 2 && n >= 60 {
                return Err(bad());
            }
            total += n as f64 * 60f64.powi(i as i32 + 1);
        }
        return Ok(total);
    }
    if let Some(s) = seconds(t.strip_suffix('s').unwrap_or(t)) {
        return Ok(s);
    }
    t.parse::<HumanDuration>()
        .map(|d| d.as_secs() as f64)
        .map_err(|_| bad())
}

/// A byte count as `812 B`, `4.0 KiB`, `1.2 MiB`.
pub fn format_bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_in_every_accepted_form() {
        let now = 1_795_456_800; // 2026-11-23T18:00:00Z
        assert_eq!(parse_instant("24h", now).unwrap(), now - 86_400);
        assert_eq!(parse_instant("2026-11-23", now).unwrap(), now - 18 * 3600);
        assert_eq!(parse_instant("2026-11-23T18:00", now).unwrap(), now);
        assert_eq!(parse_instant("2026-11-23 18:00:05Z", now).unwrap(), now + 5);
        assert_eq!(parse_instant("@42", now).unwrap(), 42);
        for bad in ["", "yesterday", "2026-13-01", "@x", "-5h"] {
            let err = parse_instant(bad, now).unwrap_err().to_string();
            assert!(err.contains("invalid time"), "{bad}: {err}");
        }
        assert_eq!(format_unix(now), "2026-11-23T18:00:00Z");
    }

    #[test]
    fn offsets_round_trip_through_their_printed_form() {
        for secs in [0.0, 0.05, 9.96, 83.45, 3725.5] {
            let printed = format_offset(secs);
            let back = parse_offset(&printed).unwrap();
            assert!(
                back <= secs && secs - back < 0.1,
                "{secs} -> {printed} -> {back}"
            );
        }
        assert_eq!(format_offset(83.45), "1:23.4");
        assert_eq!(format_offset(3725.5), "1:02:05.5");
        assert_eq!(parse_offset("83.5").unwrap(), 83.5);
        assert_eq!(parse_offset("12s").unwrap(), 12.0);
        assert_eq!(parse_offset("1m23s").unwrap(), 83.0);
        assert_eq!(parse_offset("1:02:03").unwrap(), 3723.0);
        for bad in ["", "x", "1:75", "1:2:3:4", "-3", "1:99:00", "NaN"] {
            assert!(parse_offset(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn durations_and_sizes_are_short() {
        assert_eq!(format_duration(725), "12m05s");
        assert_eq!(format_bytes(812), "812 B");
        assert_eq!(format_bytes(4096), "4.0 KiB");
        assert_eq!(format_bytes(1_258_291), "1.2 MiB");
    }
}
