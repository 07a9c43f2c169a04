//! Session ids and where their recordings live.
//!
//! An id is `YYYYMMDDTHHMMSSZ-xxxxxxxx`: the UTC start second, then 32 random bits. Short
//! enough to type, unique in practice (and a collision fails loudly: the directory exists),
//! and ids sort by start time as plain strings.

use std::path::{Path, PathBuf};

use super::RecordingError;

/// Length of `YYYYMMDDTHHMMSSZ`.
const STAMP_LEN: usize = 16;
/// Length of a whole id.
const ID_LEN: usize = STAMP_LEN + 1 + 8;

/// A fresh session id for a session starting now.
pub fn new_session_id() -> String {
    new_session_id_at(jitssh_core::unix_now())
}

/// A fresh session id for a session starting at Unix time `unix`.
pub(crate) fn new_session_id_at(unix: u64) -> String {
    let stamp = i64::try_from(unix)
        .ok()
        .and_then(|secs| chrono::DateTime::from_timestamp(secs, 0))
        .unwrap_or_default()
        .format("%Y%m%dT%H%M%SZ");
    let mut random = [0u8; 4];
    rand::fill(&mut random);
    format!("{stamp}-{}", hex::encode(random))
}

/// Checks that `id` is a session id and returns its `(year, month, day)` as text.
fn date_of(id: &str) -> Result<(&str, &str, &str), RecordingError> {
    let invalid = || RecordingError::InvalidId(id.to_owned());
    let b = id.as_bytes();
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    let well_formed = b.len() == ID_LEN
        && digits(0..8)
        && b[8] == b'T'
        && digits(9..15)
        && b[15] == b'Z'
        && b[16] == b'-'
        && b[17..]
            .iter()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c));
    if !well_formed {
        return Err(invalid());
    }
    // All ASCII, so these byte ranges are char boundaries.
    Ok((&id[0..4], &id[4..6], &id[6..8]))
}

/// The recording directory of session `id` under the recordings `root`:
/// `root/YYYY/MM/DD/id`. Rejects anything that is not a session id, so an id typed by a
/// user can never point outside `root`.
pub fn session_dir(root: &Path, id: &str) -> Result<PathBuf, RecordingError> {
    let (year, month, day) = date_of(id)?;
    Ok(root.join(year).join(month).join(day).join(id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_well_formed_unique_and_sortable() {
        let a = new_session_id_at(1_795_456_800);
        assert!(a.starts_with("20261123T180000Z-"), "{a}");
        assert_eq!(a.len(), ID_LEN);
        assert!(date_of(&a).is_ok());
        let b = new_session_id_at(1_795_456_801);
        assert!(a < b);
        let same: std::collections::HashSet<String> =
            (0..100).map(|_| new_session_id_at(1)).collect();
        assert_eq!(same.len(), 100);
    }

    #[test]
    fn session_dir_is_dated_and_rejects_other_strings() {
        let root = Path::new("/rec");
        assert_eq!(
            session_dir(root, "20261123T180000Z-0a1b2c3d").unwrap(),
            Path::new("/rec/2026/11/23/20261123T180000Z-0a1b2c3d")
        );
        for bad in [
            "",
            "../../etc/passwd",
            "20261123T180000Z-0a1b2c3",
            "20261123T180000Z-0A1B2C3D",
            "20261123T180000Z/0a1b2c3d",
            "2026112xT180000Z-0a1b2c3d",
            "20261123T180000Z-0a1b2c3dé",
        ] {
            assert!(
                matches!(session_dir(root, bad), Err(RecordingError::InvalidId(_))),
                "{bad}"
            );
        }
    }
}
