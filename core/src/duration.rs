//! Human-readable durations (`90s`, `15m`, `1h30m`, `7d`) for TTLs, clock skew and retention.
//!
//! Operators write durations in config files and on the command line; a typo such as `banana`
//! must be refused with a message that shows the accepted form, never read as zero.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The largest duration we accept: longer lifetimes are a configuration mistake for a
/// just-in-time system, and this keeps every `now + duration` far from overflowing.
const MAX_SECONDS: u64 = 10 * 366 * 24 * 3600;

/// A duration with a human-friendly text form, such as `1h30m`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct HumanDuration(Duration);

/// Why a duration could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {input:?}: {why} (expected e.g. 30s, 15m, 1h, 1h30m, 7d, 2w)")]
pub struct DurationError {
    input: String,
    why: &'static str,
}

impl HumanDuration {
    /// A duration of whole seconds.
    pub const fn from_secs(secs: u64) -> Self {
        Self(Duration::from_secs(secs))
    }

    /// The duration in whole seconds.
    pub const fn as_secs(&self) -> u64 {
        self.0.as_secs()
    }

    /// The duration as a standard library value.
    pub const fn as_duration(&self) -> Duration {
        self.0
    }
}

impl From<HumanDuration> for Duration {
    fn from(value: HumanDuration) -> Self {
        value.0
    }
}

fn unit_seconds(unit: &str) -> Option<u64> {
    Some(match unit {
        "s" | "sec" | "secs" => 1,
        "m" | "min" | "mins" => 60,
        "h" | "hr" | "hrs" => 3600,
        "d" | "day" | "days" => 86_400,
        "w" | "week" | "weeks" => 7 * 86_400,
        _ => return None,
    })
}

impl FromStr for HumanDuration {
    type Err = DurationError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let fail = |why| DurationError {
            input: input.to_string(),
            why,
        };
        let text = input.trim();
        if text.is_empty() {
            return Err(fail("it is empty"));
        }
        let mut total: u64 = 0;
        let mut rest = text;
        while !rest.is_empty() {
            let digits_end = rest
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(rest.len());
            if digits_end == 0 {
                return Err(fail("a number must come first"));
            }
            let number: u64 = rest[..digits_end]
                .parse()
                .map_err(|_| fail("the number is too large"))?;
            rest = &rest[digits_end..];
            let unit_end = rest
                .find(|c: char| c.is_ascii_digit())
                .unwrap_or(rest.len());
            let unit = rest[..unit_end].trim();
            if unit.is_empty() {
                return Err(fail("a unit (s, m, h, d, w) must follow the number"));
            }
            let scale = unit_seconds(unit).ok_or_else(|| fail("unknown unit"))?;
            total = number
                .checked_mul(scale)
                .and_then(|part| total.checked_add(part))
                .filter(|&secs| secs <= MAX_SECONDS)
                .ok_or_else(|| fail("it is longer than 10 years"))?;
            rest = &rest[unit_end..];
        }
        Ok(Self::from_secs(total))
    }
}

impl fmt::Display for HumanDuration {
    /// Prints the shortest exact form, e.g. `1h30m` or `0s`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut secs = self.as_secs();
        if secs == 0 {
            return f.write_str("0s");
        }
        for (unit, scale) in [("d", 86_400), ("h", 3600), ("m", 60), ("s", 1)] {
            if secs >= scale {
                write!(f, "{}{unit}", secs / scale)?;
                secs %= scale;
            }
        }
        Ok(())
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(text: &str) -> u64 {
        text.parse::<HumanDuration>().unwrap().as_secs()
    }

    #[test]
    fn parses_single_and_compound_units() {
        assert_eq!(secs("30s"), 30);
        assert_eq!(secs("15m"), 900);
        assert_eq!(secs("1h"), 3600);
        assert_eq!(secs("1h30m"), 5400);
        assert_eq!(secs("1h 30m"), 5400);
        assert_eq!(secs("7d"), 7 * 86_400);
        assert_eq!(secs("2w"), 14 * 86_400);
        assert_eq!(secs("0s"), 0);
    }

    #[test]
    fn refuses_garbage_with_the_accepted_form() {
        for bad in [
            "banana",
            "",
            "10",
            "h",
            "5x",
            "-1h",
            "1.5h",
            "99999999999999999999s",
        ] {
            let err = bad.parse::<HumanDuration>().unwrap_err().to_string();
            assert!(err.contains("expected e.g. 30s"), "{bad}: {err}");
        }
        assert!("3661d".parse::<HumanDuration>().is_err());
    }

    #[test]
    fn display_round_trips() {
        for text in ["0s", "45s", "1h30m", "1d2h3m4s", "7d"] {
            let parsed: HumanDuration = text.parse().unwrap();
            assert_eq!(parsed.to_string(), text);
        }
    }
}
