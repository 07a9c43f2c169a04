//! The one wall clock every decision reads: certificate validity, request expiry, approval
//! windows, allowed hours, renewal at half-life, audit and journal timestamps.
//!
//! In a normal build this is `SystemTime::now()`. Built with the `test-clock` feature (only
//! the integration tests enable it, through a dev-dependency, so `cargo build --release`
//! never has it) the clock is shifted by the whole seconds written in the file named by
//! [`TEST_CLOCK_ENV`], so tests of expiry move time forward instead of sleeping. The file is
//! read on every call: tests change it while the daemons run. A missing file or variable
//! means no shift; the binaries' `--version` says `test-clock` so a test harness can refuse
//! a binary built without it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Names the file holding the test clock's offset in seconds (signed), in `test-clock`
/// builds only.
pub const TEST_CLOCK_ENV: &str = "JITSSH_TEST_CLOCK";

/// Whether this build has the test clock (shown by `--version`).
pub const TEST_CLOCK_BUILT: bool = cfg!(feature = "test-clock");

/// The wall-clock time now (shifted by the test offset in `test-clock` builds).
pub fn now() -> SystemTime {
    shift(SystemTime::now(), offset_secs())
}

/// Seconds since the Unix epoch, now (0 before 1970).
pub fn unix_now() -> u64 {
    now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// `time` moved by `offset` seconds (saturating at the epoch and far future).
fn shift(time: SystemTime, offset: i64) -> SystemTime {
    let by = Duration::from_secs(offset.unsigned_abs());
    let shifted = if offset >= 0 {
        time.checked_add(by)
    } else {
        time.checked_sub(by).filter(|t| *t >= UNIX_EPOCH)
    };
    shifted.unwrap_or(if offset >= 0 { time } else { UNIX_EPOCH })
}

#[cfg(not(feature = "test-clock"))]
fn offset_secs() -> i64 {
    0
}

/// The offset in the file named by [`TEST_CLOCK_ENV`]; 0 when unset, missing or malformed
/// (malformed says so on stderr: the test that wrote it is broken).
#[cfg(feature = "test-clock")]
fn offset_secs() -> i64 {
    let Some(path) = std::env::var_os(TEST_CLOCK_ENV) else {
        return 0;
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => text.trim().parse().unwrap_or_else(|_| {
            eprintln!("test clock: {:?} is not whole seconds: {text:?}", path);
            0
        }),
        Err(_) => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shift_moves_both_ways_and_saturates() {
        let t = UNIX_EPOCH + Duration::from_secs(1000);
        assert_eq!(shift(t, 5), UNIX_EPOCH + Duration::from_secs(1005));
        assert_eq!(shift(t, -5), UNIX_EPOCH + Duration::from_secs(995));
        assert_eq!(shift(t, 0), t);
        assert_eq!(shift(t, i64::MIN), UNIX_EPOCH);
    }

    #[test]
    fn unix_now_is_close_to_system_time_without_an_offset_file() {
        let real = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        assert!(unix_now().abs_diff(real) <= 1);
    }
}
