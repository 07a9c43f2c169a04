//! The recording's hash chain: entry format, hashing, parsing (see the `recording` module
//! docs for the design).

use serde::Deserialize;
use sha2::{Digest, Sha256};

/// First 128 bits of a line's SHA-256: enough against second preimages, half the size.
pub(crate) type LineHash = [u8; 16];

/// Length of a hex entry hash.
const HASH_HEX_LEN: usize = 64;

/// The hash of one data line (without its newline).
pub(crate) fn line_hash(line: &[u8]) -> LineHash {
    let full = Sha256::digest(line);
    let mut out = [0u8; 16];
    out.copy_from_slice(&full[..16]);
    out
}

/// `prev` of a session's first entry: binds the chain to the session id.
pub(crate) fn genesis(id: &str) -> String {
    hex::encode(Sha256::digest(format!("jitssh-recording:{id}")))
}

/// The writer's end of the chain.
#[derive(Debug)]
pub(crate) struct Chain {
    seq: u64,
    last: String,
}

impl Chain {
    /// A chain for session `id`, before its first entry.
    pub fn new(id: &str) -> Chain {
        Chain {
            seq: 0,
            last: genesis(id),
        }
    }

    /// Entries so far.
    pub fn len(&self) -> u64 {
        self.seq
    }

    /// Hash of the last entry (the genesis value before the first).
    pub fn last_hash(&self) -> &str {
        &self.last
    }

    /// Encodes the entry covering `hashes`, lines `first..` of `file`, and advances the chain.
    pub fn entry(&mut self, file: &str, first: u64, hashes: &[LineHash]) -> Vec<u8> {
        let seq = self.seq + 1;
        let (line, hash) = encode_entry(seq, &self.last, file, first, hashes);
        self.seq = seq;
        self.last = hash;
        line
    }
}

/// The stored line (without newline) and hash of an entry.
fn encode_entry(
    seq: u64,
    prev: &str,
    file: &str,
    first: u64,
    hashes: &[LineHash],
) -> (Vec<u8>, String) {
    // File names are ours (`events.jsonl`, `chan-3.cast`): no escaping needed, but escape
    // anyway so the line is JSON whatever the name.
    let file_json = serde_json::Value::from(file).to_string();
    let mut out = format!(
        "{{\"seq\":{seq},\"prev\":\"{prev}\",\"file\":{file_json},\"first\":{first},\"lines\":["
    );
    out.reserve(hashes.len() * 35 + 80);
    for (i, h) in hashes.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push('"');
        out.push_str(&hex::encode(h));
        out.push('"');
    }
    out.push_str("]}");
    let hash = hex::encode(Sha256::digest(out.as_bytes()));
    out.pop();
    out.push_str(",\"hash\":\"");
    out.push_str(&hash);
    out.push_str("\"}");
    (out.into_bytes(), hash)
}

/// An entry read back from `chain.jsonl`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ChainEntry {
    /// 1-based position in the chain, as stored.
    pub seq: u64,
    /// Stored hash of the previous entry.
    pub prev: String,
    /// The data file the entry covers.
    pub file: String,
    /// Line number of its first line.
    pub first: u64,
    /// Hashes of the lines, in order.
    pub lines: Vec<LineHash>,
    /// The stored hash.
    pub hash: String,
    /// False when `hash` is not the hash of the stored bytes (the entry was altered).
    pub hash_ok: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntry {
    seq: u64,
    prev: String,
    file: String,
    first: u64,
    lines: Vec<String>,
    hash: String,
}

/// Why a line of `chain.jsonl` is not a chain entry at all.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub(crate) enum NotAnEntry {
    /// Not the entry's JSON object.
    #[error("not a chain entry ({0})")]
    Json(String),
    /// A line hash that is not 32 hex digits.
    #[error("not a chain entry (bad line hash: {0})")]
    LineHash(hex::FromHexError),
}

/// Parses one stored entry (without its newline) and checks its hash. `Err` says why the
/// line is not an entry at all.
pub(crate) fn parse_entry(line: &[u8]) -> Result<ChainEntry, NotAnEntry> {
    let raw: RawEntry =
        serde_json::from_slice(line).map_err(|e| NotAnEntry::Json(e.to_string()))?;
    let lines = raw
        .lines
        .iter()
        .map(|h| {
            let mut out = [0u8; 16];
            hex::decode_to_slice(h, &mut out).map(|()| out)
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(NotAnEntry::LineHash)?;
    // The hash is defined on the stored bytes: drop `,"hash":"<64 hex>"}` and close the
    // object again.
    let suffix_len = ",\"hash\":\"\"}".len() + HASH_HEX_LEN;
    let hash_ok = line.len() > suffix_len && {
        let (body, suffix) = line.split_at(line.len() - suffix_len);
        suffix.starts_with(b",\"hash\":\"") && {
            let mut hasher = Sha256::new();
            hasher.update(body);
            hasher.update(b"}");
            hex::encode(hasher.finalize()) == raw.hash
        }
    };
    Ok(ChainEntry {
        seq: raw.seq,
        prev: raw.prev,
        file: raw.file,
        first: raw.first,
        lines,
        hash: raw.hash,
        hash_ok,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_link_and_parse_back() {
        let mut chain = Chain::new("s");
        let a = chain.entry("chan-1.cast", 1, &[line_hash(b"x"), line_hash(b"y")]);
        let first_hash = chain.last_hash().to_owned();
        let b = chain.entry("events.jsonl", 4, &[]);
        let ea = parse_entry(&a).unwrap();
        assert!(ea.hash_ok);
        assert_eq!(ea.seq, 1);
        assert_eq!(ea.prev, genesis("s"));
        assert_eq!(ea.file, "chan-1.cast");
        assert_eq!(ea.lines, vec![line_hash(b"x"), line_hash(b"y")]);
        assert_eq!(ea.hash, first_hash);
        let eb = parse_entry(&b).unwrap();
        assert!(eb.hash_ok);
        assert_eq!((eb.seq, eb.first), (2, 4));
        assert_eq!(eb.prev, first_hash);
        assert_eq!(chain.len(), 2);
        assert_eq!(chain.last_hash(), eb.hash);
    }

    #[test]
    fn altered_entry_fails_its_hash_and_garbage_is_no_entry() {
        let mut chain = Chain::new("s");
        let line = chain.entry("chan-1.cast", 1, &[line_hash(b"x")]);
        let text = String::from_utf8(line).unwrap();
        let altered = text.replace("\"first\":1", "\"first\":2");
        assert!(!parse_entry(altered.as_bytes()).unwrap().hash_ok);
        assert!(parse_entry(b"{\"seq\":1}").is_err());
        assert!(parse_entry(b"garbage").is_err());
    }
}
