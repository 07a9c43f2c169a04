//! Allowed hours for a role, such as `Mon-Fri 08:00-18:00 UTC`.
//!
//! Just-in-time access often means "only during the working day". A window names its days, a
//! time range and a fixed UTC offset (`UTC`, `+02:00`); a range whose end is before its start
//! runs past midnight and belongs to the day it starts on. Certificates issued inside a window
//! end when the window ends, so access never outlives the hours that allowed it.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer};

const DAY: i64 = 86_400;
const DAY_NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
const FULL_DAY_NAMES: [&str; 7] = [
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
];

/// One window: a set of weekdays, a daily time range and a UTC offset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HoursWindow {
    /// Bit i set = weekday i allowed (0 = Monday).
    days: u8,
    /// Minutes after midnight, local to `offset`.
    start: u32,
    /// Minutes after midnight; may be <= start for a window crossing midnight; 1440 = 24:00.
    end: u32,
    /// Seconds east of UTC.
    offset: i32,
    text: String,
}

/// Why an hours window could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid allowed_hours {input:?}: {why} (expected e.g. \"Mon-Fri 08:00-18:00 UTC\")")]
pub struct HoursError {
    input: String,
    why: String,
}

fn parse_day(name: &str) -> Option<u8> {
    let lower = name.to_ascii_lowercase();
    DAY_NAMES
        .iter()
        .zip(FULL_DAY_NAMES)
        .position(|(short, full)| lower == *short || lower == full)
        .map(|i| i as u8)
}

fn parse_days(spec: &str) -> Option<u8> {
    match spec.to_ascii_lowercase().as_str() {
        "*" | "daily" | "any" => return Some(0x7f),
        "weekdays" => return Some(0x1f),
        "weekends" => return Some(0x60),
        _ => {}
    }
    let mut days = 0u8;
    for part in spec.split(',') {
        match part.split_once('-') {
            Some((from, to)) => {
                let (from, to) = (parse_day(from)?, parse_day(to)?);
                let mut day = from;
                loop {
                    days |= 1 << day;
                    if day == to {
                        break;
                    }
                    day = (day + 1) % 7;
                }
            }
            None => days |= 1 << parse_day(part)?,
        }
    }
    Some(days)
}

fn parse_clock(text: &str) -> Option<u32> {
    let (hours, minutes) = text.split_once(':')?;
    let (hours, minutes): (u32, u32) = (hours.parse().ok()?, minutes.parse().ok()?);
    let total = hours * 60 + minutes;
    (minutes < 60 && total <= 24 * 60).then_some(total)
}

fn parse_offset(text: &str) -> Option<i32> {
    if text.eq_ignore_ascii_case("utc") || text.eq_ignore_ascii_case("z") {
        return Some(0);
    }
    let sign = match text.chars().next()? {
        '+' => 1,
        '-' => -1,
        _ => return None,
    };
    let minutes = parse_clock(&text[1..])?;
    (minutes <= 14 * 60).then_some(sign * minutes as i32 * 60)
}

impl FromStr for HoursWindow {
    type Err = HoursError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let fail = |why: &str| HoursError {
            input: input.to_string(),
            why: why.to_string(),
        };
        let words: Vec<&str> = input.split_whitespace().collect();
        let (days, range, offset) = match words.as_slice() {
            [days, range] => (*days, *range, "UTC"),
            [days, range, offset] => (*days, *range, *offset),
            _ => return Err(fail("expected DAYS START-END [OFFSET]")),
        };
        let days = parse_days(days).ok_or_else(|| fail("unknown day name"))?;
        let (start, end) = range
            .split_once('-')
            .ok_or_else(|| fail("time range must be START-END"))?;
        let start = parse_clock(start).ok_or_else(|| fail("bad start time"))?;
        let end = parse_clock(end).ok_or_else(|| fail("bad end time"))?;
        if start == end {
            return Err(fail("the time range is empty"));
        }
        let offset = parse_offset(offset).ok_or_else(|| fail("offset must be UTC or +HH:MM"))?;
        Ok(HoursWindow {
            days,
            start,
            end,
            offset,
            text: input.to_string(),
        })
    }
}

impl HoursWindow {
    /// If `now` (unix seconds) lies inside this window, the unix time the window ends.
    pub fn end_if_inside(&self, now: u64) -> Option<u64> {
        let local = now as i64 + self.offset as i64;
        let day_start = local.div_euclid(DAY) * DAY;
        // A window crossing midnight may have started yesterday; check both candidate starts.
        for days_back in [0i64, 1] {
            let start_day = day_start - days_back * DAY;
            let weekday = ((start_day / DAY + 3).rem_euclid(7)) as u8; // 1970-01-01 was a Thursday
            if self.days & (1 << weekday) == 0 {
                continue;
            }
            let crosses = self.end <= self.start;
            let window_start = start_day + self.start as i64 * 60;
            let window_end = start_day + self.end as i64 * 60 + if crosses { DAY } else { 0 };
            if local >= window_start && local < window_end {
                return u64::try_from(window_end - self.offset as i64).ok();
            }
        }
        None
    }
}

impl fmt::Display for HoursWindow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// A role's allowed hours: one or more windows; `now` is allowed if inside any of them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AllowedHours(Vec<HoursWindow>);

impl AllowedHours {
    /// The end of the latest-ending window that contains `now`, or `None` when outside them all.
    pub fn end_if_inside(&self, now: u64) -> Option<u64> {
        self.0.iter().filter_map(|w| w.end_if_inside(now)).max()
    }
}

impl fmt::Display for AllowedHours {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let texts: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        f.write_str(&texts.join(" or "))
    }
}

impl<'de> Deserialize<'de> for AllowedHours {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum OneOrMany {
            One(String),
            Many(Vec<String>),
        }
        let texts = match OneOrMany::deserialize(deserializer)? {
            OneOrMany::One(text) => vec![text],
            OneOrMany::Many(texts) => texts,
        };
        if texts.is_empty() {
            return Err(serde::de::Error::custom("allowed_hours is empty"));
        }
        texts
            .iter()
            .map(|t| t.parse().map_err(serde::de::Error::custom))
            .collect::<Result<_, _>>()
            .map(AllowedHours)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // 2026-11-23 is a Monday.
    const MONDAY_MIDNIGHT_UTC: u64 = 1_795_392_000;

    fn at(day: u64, hour: u64, minute: u64) -> u64 {
        MONDAY_MIDNIGHT_UTC + day * 86_400 + hour * 3600 + minute * 60
    }

    #[test]
    fn the_test_clock_is_a_monday() {
        assert_eq!(((MONDAY_MIDNIGHT_UTC / 86_400) + 3) % 7, 0);
    }

    #[test]
    fn working_hours() {
        let window: HoursWindow = "Mon-Fri 08:00-18:00 UTC".parse().unwrap();
        assert_eq!(window.end_if_inside(at(0, 9, 0)), Some(at(0, 18, 0)));
        assert_eq!(window.end_if_inside(at(4, 17, 59)), Some(at(4, 18, 0)));
        assert_eq!(window.end_if_inside(at(0, 7, 59)), None);
        assert_eq!(window.end_if_inside(at(0, 18, 0)), None);
        assert_eq!(window.end_if_inside(at(5, 12, 0)), None, "Saturday");
    }

    #[test]
    fn offsets_shift_the_window() {
        let window: HoursWindow = "Mon 08:00-18:00 +02:00".parse().unwrap();
        assert_eq!(window.end_if_inside(at(0, 6, 30)), Some(at(0, 16, 0)));
        assert_eq!(window.end_if_inside(at(0, 16, 30)), None);
    }

    #[test]
    fn overnight_windows_belong_to_their_start_day() {
        let window: HoursWindow = "Fri 22:00-06:00".parse().unwrap();
        assert_eq!(window.end_if_inside(at(4, 23, 0)), Some(at(5, 6, 0)));
        assert_eq!(window.end_if_inside(at(5, 5, 0)), Some(at(5, 6, 0)));
        assert_eq!(window.end_if_inside(at(5, 23, 0)), None);
        assert_eq!(
            window.end_if_inside(at(4, 5, 0)),
            None,
            "Friday early = Thursday's night"
        );
    }

    #[test]
    fn day_lists_and_wraparound_ranges() {
        let window: HoursWindow = "Sat-Mon 00:00-24:00".parse().unwrap();
        assert!(window.end_if_inside(at(6, 12, 0)).is_some(), "Sunday");
        assert!(window.end_if_inside(at(0, 12, 0)).is_some(), "Monday");
        assert!(window.end_if_inside(at(1, 12, 0)).is_none(), "Tuesday");
        let window: HoursWindow = "Tue,Thu 10:00-11:00".parse().unwrap();
        assert!(window.end_if_inside(at(3, 10, 30)).is_some());
        assert!(window.end_if_inside(at(2, 10, 30)).is_none());
    }

    #[test]
    fn bad_specs_are_refused() {
        for bad in [
            "Mon-Fri",
            "Funday 08:00-18:00",
            "Mon 8-18",
            "Mon 08:00-25:00",
            "Mon 08:00-08:00",
            "Mon 08:00-18:00 CET",
            "",
        ] {
            assert!(bad.parse::<HoursWindow>().is_err(), "{bad}");
        }
    }
}
