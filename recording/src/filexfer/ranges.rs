//! The bytes of one file seen moving: a digest while they come in order from offset 0, and
//! the set of ranges they cover (bounded), to tell a whole transfer from a partial one.

use sha2::{Digest, Sha256};

/// Disjoint ranges kept per file and direction before further ones are only counted (each
/// counted as one more range, as if it merged with nothing): 1 KiB per direction of each of
/// up to [`super::sftp::MAX_HANDLES`] open files.
pub(crate) const MAX_RANGES: usize = 64;

/// What was moved of one file.
#[derive(Debug, Clone, Default)]
pub(crate) struct Moved {
    /// SHA-256 of bytes `0..next` while they came in order.
    sha: Sha256,
    /// End of the in-order run from offset 0.
    next: u64,
    /// False once a chunk came anywhere but at `next`.
    in_order: bool,
    /// Bytes moved, counted once per chunk (overlaps count twice).
    bytes: u64,
    /// Sorted, disjoint, non-adjacent `[start, end)` ranges, at most [`MAX_RANGES`].
    ranges: Vec<(u64, u64)>,
    /// Chunks that would have made a range past the bound.
    uncounted: u64,
    /// Lowest and highest offsets.
    low: u64,
    high: u64,
}

impl Moved {
    pub fn new() -> Moved {
        Moved {
            in_order: true,
            low: u64::MAX,
            ..Moved::default()
        }
    }

    /// `data` moved at `offset`.
    pub fn add(&mut self, offset: u64, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        let len = data.len() as u64;
        let end = offset.saturating_add(len);
        if self.in_order && offset == self.next {
            self.sha.update(data);
            self.next = end;
        } else {
            self.in_order = false;
        }
        self.bytes = self.bytes.saturating_add(len);
        self.low = self.low.min(offset);
        self.high = self.high.max(end);
        self.insert(offset, end);
    }

    fn insert(&mut self, start: u64, end: u64) {
        // First range whose end reaches `start` (it may merge).
        let at = self.ranges.partition_point(|&(_, e)| e < start);
        let mut merged = (start, end);
        let mut last = at;
        while last < self.ranges.len() && self.ranges[last].0 <= end {
            merged.0 = merged.0.min(self.ranges[last].0);
            merged.1 = merged.1.max(self.ranges[last].1);
            last += 1;
        }
        if last == at && self.ranges.len() >= MAX_RANGES {
            self.uncounted += 1;
            return;
        }
        self.ranges.splice(at..last, [merged]);
    }

    /// True when every byte seen came in order from offset 0.
    pub fn in_order(&self) -> bool {
        self.in_order
    }

    /// End of the in-order run from 0 (the size of a whole file).
    pub fn next(&self) -> u64 {
        self.next
    }

    /// Bytes moved.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// How many disjoint ranges (those past the bound counted one each).
    pub fn range_count(&self) -> u64 {
        self.ranges.len() as u64 + self.uncounted
    }

    /// Lowest and highest offset, if any byte moved.
    pub fn span(&self) -> Option<[u64; 2]> {
        (self.bytes > 0).then_some([self.low, self.high])
    }

    /// Lowercase hex SHA-256 of the in-order run.
    pub fn sha256_hex(&self) -> String {
        hex::encode(self.sha.clone().finalize())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_chunks_make_one_range_and_the_files_digest() {
        let mut m = Moved::new();
        m.add(0, b"hello ");
        m.add(6, b"world");
        assert!(m.in_order());
        assert_eq!(
            (m.next(), m.range_count(), m.span()),
            (11, 1, Some([0, 11]))
        );
        assert_eq!(m.sha256_hex(), hex::encode(Sha256::digest(b"hello world")));
    }

    #[test]
    fn gaps_and_overlaps_are_counted_and_stop_the_digest() {
        let mut m = Moved::new();
        m.add(0, b"ab");
        m.add(10, b"cd");
        assert!(!m.in_order());
        assert_eq!(m.range_count(), 2);
        m.add(2, &[0; 8]);
        assert_eq!(m.range_count(), 1, "the gap filled merges the ranges");
        m.add(5, b"x");
        assert_eq!((m.range_count(), m.bytes()), (1, 13));
        let mut m = Moved::new();
        m.add(4, b"late");
        assert!(!m.in_order(), "not from offset 0");
    }

    #[test]
    fn ranges_stay_bounded() {
        let mut m = Moved::new();
        for i in 0..(MAX_RANGES as u64 + 10) {
            m.add(i * 10, b"x");
        }
        assert_eq!(m.ranges.len(), MAX_RANGES);
        assert_eq!(m.range_count(), MAX_RANGES as u64 + 10);
    }
}
