//! How both programs print instants and lengths of time to people: one format each, so a
//! time the CA prints can be pasted into the auditor's `--since`, and durations look alike.
//!
//! Configuration files keep [`HumanDuration`](crate::duration::HumanDuration)'s exact form;
//! [`format_duration`] is the short, rounded one for listings and summaries.

/// Unix seconds as `2026-11-23T18:27:09Z` (UTC, ISO 8601); `@UNIX` if out of chrono's range.
pub fn format_utc(unix: u64) -> String {
    i64::try_from(unix)
        .ok()
        .and_then(|secs| chrono::DateTime::<chrono::Utc>::from_timestamp(secs, 0))
        .map_or_else(
            || format!("@{unix}"),
            |t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        )
}

/// A length of time in its two largest units, as `45s`, `12m05s`, `3h02m`, `4d07h` (rounded
/// down).
pub fn format_duration(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    let pair = |big: u64, unit: &str, small: u64, small_unit: &str| {
        if small == 0 {
            format!("{big}{unit}")
        } else {
            format!("{big}{unit}{small:02}{small_unit}")
        }
    };
    if d > 0 {
        pair(d, "d", h, "h")
    } else if h > 0 {
        pair(h, "h", m, "m")
    } else if m > 0 {
        pair(m, "m", s, "s")
    } else {
        format!("{s}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_are_iso_8601_utc() {
        assert_eq!(format_utc(1_795_456_800), "2026-11-23T18:00:00Z");
        assert_eq!(format_utc(u64::MAX), format!("@{}", u64::MAX));
    }

    #[test]
    fn durations_are_short() {
        assert_eq!(format_duration(45), "45s");
        assert_eq!(format_duration(725), "12m05s");
        assert_eq!(format_duration(3 * 3600 + 120), "3h02m");
        assert_eq!(format_duration(4 * 86_400 + 7 * 3600), "4d07h");
        assert_eq!(format_duration(90 * 86_400), "90d");
        assert_eq!(format_duration(3600), "1h");
    }
}
