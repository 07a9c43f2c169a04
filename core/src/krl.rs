//! Encoder and decoder for OpenSSH Key Revocation Lists (KRLs).
//!
//! The binary format is specified in OpenSSH's `PROTOCOL.krl`; OpenSSH's
//! `krl.c` (used by `sshd`'s `RevokedKeys` and by `ssh-keygen -k` / `-Q`) is
//! the reference for what is accepted and how revocation is checked, so that
//! what this module writes loads in `sshd` and what `ssh-keygen` writes loads
//! here.
//!
//! Decoding treats its input as untrusted: it never panics, never allocates
//! on the strength of a length field before the bytes are known to exist,
//! and caps how many serials ranges and bitmaps may expand to
//! ([`MAX_DECODED_SERIALS`]).
//!
//! KRL signature sections (deprecated, refused by OpenSSH >= 9.4) are parsed
//! and skipped but **not verified**: authenticate KRLs by other means.
//!
//! The format has no overall length or checksum, so a KRL cut off exactly at
//! a section boundary decodes as a valid KRL with fewer revocations. Protect
//! KRLs in transit and storage accordingly.

use crate::ssh_key;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// `"SSHKRL\n\0"`, the first eight bytes of every KRL.
const KRL_MAGIC: &[u8; 8] = b"SSHKRL\n\0";
/// The only KRL format version that exists.
const KRL_FORMAT_VERSION: u32 = 1;

const SECTION_CERTIFICATES: u8 = 1;
const SECTION_EXPLICIT_KEY: u8 = 2;
const SECTION_FINGERPRINT_SHA1: u8 = 3;
const SECTION_SIGNATURE: u8 = 4;
const SECTION_FINGERPRINT_SHA256: u8 = 5;
const SECTION_EXTENSION: u8 = 255;

const CERT_SERIAL_LIST: u8 = 0x20;
const CERT_SERIAL_RANGE: u8 = 0x21;
const CERT_SERIAL_BITMAP: u8 = 0x22;
const CERT_KEY_ID: u8 = 0x23;
const CERT_EXTENSION: u8 = 0x39;

/// Most certificate serials one decoded KRL may revoke, counted across all
/// list, range and bitmap sub-sections.
///
/// A 16-byte range section can name 2^64 serials, and [`CertRevocations`]
/// stores serials individually, so decoding refuses KRLs beyond this limit
/// rather than exhausting memory.
pub const MAX_DECODED_SERIALS: u64 = 1 << 20;

/// Encoder cost model, in bytes: a range sub-section (type, length, min, max).
const RANGE_COST: u64 = 1 + 4 + 8 + 8;
/// Encoder cost model: one serial in a list sub-section.
const LIST_ENTRY_COST: u64 = 8;
/// Encoder cost model: bitmap sub-section overhead (type, length, offset,
/// mpint length, possible mpint sign byte), excluding the bitmap bits.
const BITMAP_OVERHEAD: u64 = 1 + 4 + 8 + 4 + 1;
/// Runs at least this long are always written as ranges: they would cost
/// more as bitmap bits than a whole range sub-section.
const LONG_RUN: u64 = RANGE_COST * 8;
/// Largest gap (in serials) the encoder bridges inside one bitmap; 64 unset
/// bits cost as much as one list entry.
const MAX_BITMAP_GAP: u64 = 64;
/// Largest bitmap the encoder writes, in bits. OpenSSH refuses mpints longer
/// than 2048 bytes (plus a sign byte), so larger bitmaps would not load.
const MAX_BITMAP_BITS: u64 = 2048 * 8;

/// Errors from decoding a KRL. Each renders as a one-line message that names
/// the part of the KRL and the byte offset where decoding failed.
#[derive(Debug, thiserror::Error)]
pub enum KrlError {
    /// The input does not start with `"SSHKRL\n\0"`.
    #[error("not a KRL: missing \"SSHKRL\\n\\0\" magic")]
    BadMagic,
    /// The header names a format version other than 1.
    #[error("unsupported KRL format version {0} (only version 1 exists)")]
    UnsupportedFormatVersion(u32),
    /// A field or section extends past the end of its enclosing data.
    #[error("KRL truncated in {context} at byte {offset}")]
    Truncated {
        /// Part of the KRL being read.
        context: &'static str,
        /// Byte offset (from the start of the KRL) of the field that did not fit.
        offset: usize,
    },
    /// A field is well-formed on the wire but its value is not acceptable.
    #[error("invalid KRL {context} at byte {offset}: {reason}")]
    Invalid {
        /// Part of the KRL being read.
        context: &'static str,
        /// Byte offset (from the start of the KRL) of the offending field.
        offset: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// A section or sub-section type this decoder (like OpenSSH) does not know.
    #[error("unsupported KRL {context} type {kind:#04x} at byte {offset}")]
    UnsupportedSection {
        /// "section" or "certificate sub-section".
        context: &'static str,
        /// The type byte.
        kind: u8,
        /// Byte offset of the type byte.
        offset: usize,
    },
    /// The KRL revokes more serials than [`MAX_DECODED_SERIALS`].
    #[error("KRL revokes more than {limit} certificate serials (limit exceeded at byte {offset})")]
    TooManySerials {
        /// The limit, [`MAX_DECODED_SERIALS`].
        limit: u64,
        /// Byte offset of the sub-section that exceeded it.
        offset: usize,
    },
    /// A public key blob (CA key or explicitly revoked key) does not parse.
    #[error("invalid public key in KRL {context} at byte {offset}: {source}")]
    Key {
        /// Part of the KRL being read.
        context: &'static str,
        /// Byte offset of the key blob.
        offset: usize,
        /// Why `ssh-key` rejected it.
        source: ssh_key::Error,
    },
}

/// A decoded or to-be-encoded KRL.
///
/// [`Krl::decode`] returns it in canonical form (CA groups merged and sorted,
/// wildcard first; keys sorted by wire encoding; fingerprints sorted; no
/// duplicates), which is also the form [`Krl::encode`] writes, so
/// `Krl::decode(&krl.encode())` equals `krl` whenever `krl` is canonical.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Krl {
    /// `krl_version`: increases each time the KRL is modified.
    pub version: u64,
    /// When the KRL was generated, in Unix seconds. Written as-is (OpenSSH
    /// substitutes "now" for 0; this encoder stays deterministic).
    pub generated_date: u64,
    /// Free-form comment. NUL characters are dropped on encoding because
    /// OpenSSH reads the comment as a C string.
    pub comment: String,
    /// Certificate revocations grouped by the CA that signed them. `ca_key: None` means "any CA" (wildcard CA in the spec).
    pub certificates: Vec<CertRevocations>,
    /// Plain public keys revoked outright (KRL_SECTION_EXPLICIT_KEY)
    pub keys: Vec<ssh_key::public::KeyData>,
    /// SHA-1 and SHA-256 fingerprints of revoked keys (KRL_SECTION_FINGERPRINT_SHA1 / _SHA256), raw hash bytes
    pub sha1_fingerprints: Vec<[u8; 20]>,
    /// SHA-256 hashes of the wire encoding of revoked plain keys.
    pub sha256_fingerprints: Vec<[u8; 32]>,
}

/// Certificates revoked for one CA (or, with `ca_key: None`, for any CA).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CertRevocations {
    /// The CA whose certificates are revoked; `None` is the spec's wildcard CA.
    pub ca_key: Option<ssh_key::public::KeyData>,
    /// Revoked serial numbers. Serial 0 means "unnumbered certificate" and
    /// can never be revoked by serial: OpenSSH refuses KRLs that list it, so
    /// the encoder drops it and the decoder rejects it. Revoke such
    /// certificates by key ID.
    pub serials: BTreeSet<u64>,
    /// Revoked certificate key IDs. IDs containing NUL are dropped on
    /// encoding: OpenSSH reads key IDs as C strings, so they could never
    /// match a certificate.
    pub key_ids: BTreeSet<String>,
}

/// Why something is revoked (for messages: "certificate serial 42 is revoked").
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Revoked {
    /// A certificate section for the certificate's CA (or the wildcard CA)
    /// lists this serial.
    Serial(u64),
    /// A certificate section for the certificate's CA (or the wildcard CA)
    /// lists this key ID.
    KeyId(String),
    /// The key (or, for a certificate, its subject key or its CA key) is
    /// listed in an explicit key section.
    Key,
    /// The SHA-1 or SHA-256 hash of the key (or, for a certificate, of its
    /// subject key or its CA key) is listed in a fingerprint section.
    Fingerprint,
}

impl fmt::Display for Revoked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Revoked::Serial(serial) => write!(f, "certificate serial {serial} is revoked"),
            Revoked::KeyId(id) => write!(f, "certificate key ID {id:?} is revoked"),
            Revoked::Key => f.write_str("key is explicitly revoked"),
            Revoked::Fingerprint => f.write_str("key fingerprint is revoked"),
        }
    }
}

impl Krl {
    /// Encodes the KRL in OpenSSH's binary format, in canonical form: CA
    /// groups merged and sorted (wildcard first), keys and fingerprints
    /// sorted and deduplicated, serials written as the cheapest mix of list,
    /// range and bitmap sub-sections. Identical content always gives
    /// identical bytes.
    ///
    /// # Panics
    ///
    /// Only if a public key or a section is too large for SSH's 32-bit
    /// length fields (over 4 GiB), which no real KRL approaches.
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        let krl = self.canonical();
        let mut out = Vec::new();
        out.extend_from_slice(KRL_MAGIC);
        put_u32(&mut out, KRL_FORMAT_VERSION);
        put_u64(&mut out, krl.version);
        put_u64(&mut out, krl.generated_date);
        put_u64(&mut out, 0); // flags: none defined
        put_string(&mut out, b""); // reserved
        put_string(&mut out, krl.comment.as_bytes());
        for group in &krl.certificates {
            put_section(&mut out, SECTION_CERTIFICATES, &encode_cert_section(group));
        }
        if !krl.keys.is_empty() {
            let blobs: Vec<Vec<u8>> = krl.keys.iter().map(encode_key).collect();
            put_section(&mut out, SECTION_EXPLICIT_KEY, &concat_strings(&blobs));
        }
        if !krl.sha1_fingerprints.is_empty() {
            let body = concat_strings(&krl.sha1_fingerprints);
            put_section(&mut out, SECTION_FINGERPRINT_SHA1, &body);
        }
        if !krl.sha256_fingerprints.is_empty() {
            let body = concat_strings(&krl.sha256_fingerprints);
            put_section(&mut out, SECTION_FINGERPRINT_SHA256, &body);
        }
        out
    }

    /// Decodes a binary KRL, such as one written by `ssh-keygen -k` or by
    /// [`Krl::encode`], into canonical form.
    ///
    /// Accepts every serial encoding (list, range, bitmap), key IDs, the
    /// wildcard CA, explicit keys, SHA-1/SHA-256 fingerprints, non-critical
    /// extensions and (unverified, skipped) signature sections. Like OpenSSH
    /// it rejects unknown section types, critical extensions, trailing bytes
    /// inside sections and revocations of serial 0. It also rejects key IDs
    /// that are not UTF-8 and KRLs revoking more than [`MAX_DECODED_SERIALS`]
    /// serials.
    ///
    /// # Errors
    ///
    /// [`KrlError`] describing the first problem and its byte offset.
    pub fn decode(bytes: &[u8]) -> Result<Krl, KrlError> {
        if !bytes.starts_with(KRL_MAGIC) {
            return Err(KrlError::BadMagic);
        }
        let mut r = Cursor::new(bytes, "header");
        r.take(KRL_MAGIC.len())?;
        let format_version = r.u32()?;
        if format_version != KRL_FORMAT_VERSION {
            return Err(KrlError::UnsupportedFormatVersion(format_version));
        }
        let version = r.u64()?;
        let generated_date = r.u64()?;
        let _flags = r.u64()?; // none defined; OpenSSH ignores them too
        r.string()?; // reserved
        let comment_at = r.offset();
        let comment = c_string(r.string()?).map_err(|reason| r.invalid(comment_at, reason))?;
        let comment = String::from_utf8_lossy(comment).into_owned();

        let mut collector = Collector::default();
        let mut budget = SerialBudget::new();
        decode_sections(&mut r, &mut collector, &mut budget)?;
        Ok(collector.into_krl(version, generated_date, comment))
    }

    /// Is this certificate revoked? Checks serials/key ids for sections whose CA matches the cert's signature key (or wildcard), and the certificate's subject key against explicit keys and fingerprints (as OpenSSH does).
    ///
    /// Also like OpenSSH (`ssh_krl_check_key`), a certificate whose CA key is
    /// itself revoked (explicitly or by fingerprint) is revoked. Certificates
    /// with serial 0 never match by serial, only by key ID. The certificate's
    /// signature and validity are not checked here.
    #[must_use]
    pub fn certificate_revoked(&self, cert: &ssh_key::Certificate) -> Option<Revoked> {
        self.plain_key_revoked(cert.public_key())
            .or_else(|| self.revoked_by_ca_sections(cert))
            .or_else(|| self.plain_key_revoked(cert.signature_key()))
    }

    /// Is this plain public key revoked (explicit key or fingerprint)?
    ///
    /// Serial and key ID revocations only apply to certificates, so they are
    /// not consulted. If `key` is in fact a certificate, this defers to
    /// [`Krl::certificate_revoked`].
    #[must_use]
    pub fn key_revoked(&self, key: &ssh_key::public::KeyData) -> Option<Revoked> {
        match key {
            ssh_key::public::KeyData::Certificate(cert) => self.certificate_revoked(cert),
            plain => self.plain_key_revoked(plain),
        }
    }

    /// OpenSSH's `is_key_revoked` order: SHA-1, SHA-256, then explicit keys,
    /// always on the plain (certificate-stripped) key.
    fn plain_key_revoked(&self, key: &ssh_key::public::KeyData) -> Option<Revoked> {
        let key = plain_key(key);
        let wants_hashes =
            !self.sha1_fingerprints.is_empty() || !self.sha256_fingerprints.is_empty();
        // Encoding only fails for fields over 4 GiB, which no parsed key has.
        if wants_hashes
            && let Ok(blob) = try_encode_key(key)
            && (self.sha1_fingerprints.contains(&sha1(&blob))
                || self.sha256_fingerprints.contains(&sha256(&blob)))
        {
            return Some(Revoked::Fingerprint);
        }
        self.keys
            .iter()
            .any(|revoked| plain_key(revoked) == key)
            .then_some(Revoked::Key)
    }

    /// Serial/key ID revocations: sections for the certificate's own CA
    /// first, then wildcard sections, as OpenSSH checks them.
    fn revoked_by_ca_sections(&self, cert: &ssh_key::Certificate) -> Option<Revoked> {
        let ca = plain_key(cert.signature_key());
        let own_ca = self.certificates.iter().filter(|group| {
            group
                .ca_key
                .as_ref()
                .is_some_and(|key| plain_key(key) == ca)
        });
        let wildcard = self.certificates.iter().filter(|g| g.ca_key.is_none());
        own_ca.chain(wildcard).find_map(|group| group.revokes(cert))
    }

    /// The canonical form that [`Krl::encode`] writes and [`Krl::decode`]
    /// returns.
    fn canonical(&self) -> Krl {
        let mut collector = Collector::default();
        for group in &self.certificates {
            let ca = group.ca_key.as_ref().map(plain_key);
            let blob = ca.map(encode_key).unwrap_or_default();
            let merged = collector.cert_group(blob, ca.cloned());
            merged.serials.extend(group.serials.range(1..));
            let usable_ids = group.key_ids.iter().filter(|id| !id.contains('\0'));
            merged.key_ids.extend(usable_ids.cloned());
        }
        for key in &self.keys {
            let key = plain_key(key);
            collector.keys.insert(encode_key(key), key.clone());
        }
        collector.sha1.extend(&self.sha1_fingerprints);
        collector.sha256.extend(&self.sha256_fingerprints);
        let comment = self.comment.replace('\0', "");
        collector.into_krl(self.version, self.generated_date, comment)
    }
}

impl CertRevocations {
    /// Key ID first, then serial, as OpenSSH's `is_cert_revoked` does.
    fn revokes(&self, cert: &ssh_key::Certificate) -> Option<Revoked> {
        if self.key_ids.contains(cert.key_id()) {
            return Some(Revoked::KeyId(cert.key_id().to_owned()));
        }
        let serial = cert.serial();
        (serial != 0 && self.serials.contains(&serial)).then_some(Revoked::Serial(serial))
    }
}

/// A certificate's subject key, or the key itself if it is not a certificate.
/// KRL blobs and fingerprints always refer to plain keys.
fn plain_key(key: &ssh_key::public::KeyData) -> &ssh_key::public::KeyData {
    match key {
        ssh_key::public::KeyData::Certificate(cert) => cert.public_key(),
        plain => plain,
    }
}

// ---------------------------------------------------------------------------
// Canonicalisation shared by encoder and decoder
// ---------------------------------------------------------------------------

/// Accumulates revocations keyed by wire encoding, which both merges
/// duplicates and yields OpenSSH's canonical (memcmp) order.
#[derive(Default)]
struct Collector {
    /// CA key blob (empty for the wildcard CA) to its revocations.
    certs: BTreeMap<Vec<u8>, CertRevocations>,
    keys: BTreeMap<Vec<u8>, ssh_key::public::KeyData>,
    sha1: BTreeSet<[u8; 20]>,
    sha256: BTreeSet<[u8; 32]>,
}

impl Collector {
    fn cert_group(
        &mut self,
        ca_blob: Vec<u8>,
        ca_key: Option<ssh_key::public::KeyData>,
    ) -> &mut CertRevocations {
        self.certs
            .entry(ca_blob)
            .or_insert_with(|| CertRevocations {
                ca_key,
                ..CertRevocations::default()
            })
    }

    fn into_krl(self, version: u64, generated_date: u64, comment: String) -> Krl {
        Krl {
            version,
            generated_date,
            comment,
            certificates: self
                .certs
                .into_values()
                .filter(|group| !group.serials.is_empty() || !group.key_ids.is_empty())
                .collect(),
            keys: self.keys.into_values().collect(),
            sha1_fingerprints: self.sha1.into_iter().collect(),
            sha256_fingerprints: self.sha256.into_iter().collect(),
        }
    }
}

// ---------------------------------------------------------------------------
// Encoding
// ---------------------------------------------------------------------------

fn put_u32(out: &mut Vec<u8>, value: u32) {
    out.extend_from_slice(&value.to_be_bytes());
}

fn put_u64(out: &mut Vec<u8>, value: u64) {
    out.extend_from_slice(&value.to_be_bytes());
}

/// SSH `string`: u32 length then the bytes.
fn put_string(out: &mut Vec<u8>, data: &[u8]) {
    let len = u32::try_from(data.len()).expect("KRL field longer than 4 GiB");
    put_u32(out, len);
    out.extend_from_slice(data);
}

/// A (sub-)section: type byte, then the body as a `string`.
fn put_section(out: &mut Vec<u8>, kind: u8, body: &[u8]) {
    out.push(kind);
    put_string(out, body);
}

fn concat_strings<T: AsRef<[u8]>>(items: &[T]) -> Vec<u8> {
    let mut body = Vec::new();
    for item in items {
        put_string(&mut body, item.as_ref());
    }
    body
}

fn try_encode_key(key: &ssh_key::public::KeyData) -> Result<Vec<u8>, ssh_key::encoding::Error> {
    ssh_key::encoding::Encode::encode_vec(key)
}

/// SSH wire encoding of a public key; see [`Krl::encode`] for the panic.
fn encode_key(key: &ssh_key::public::KeyData) -> Vec<u8> {
    try_encode_key(key).expect("public key too large to SSH-encode")
}

/// Body of one KRL_SECTION_CERTIFICATES section.
fn encode_cert_section(group: &CertRevocations) -> Vec<u8> {
    let mut body = Vec::new();
    let ca_blob = group.ca_key.as_ref().map(encode_key).unwrap_or_default();
    put_string(&mut body, &ca_blob);
    put_string(&mut body, b""); // reserved
    for section in plan_serial_sections(&group.serials) {
        let (kind, data) = section.encode();
        put_section(&mut body, kind, &data);
    }
    if !group.key_ids.is_empty() {
        let ids: Vec<&[u8]> = group.key_ids.iter().map(|id| id.as_bytes()).collect();
        put_section(&mut body, CERT_KEY_ID, &concat_strings(&ids));
    }
    body
}

/// A maximal run of consecutive serials, `lo..=hi`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Run {
    lo: u64,
    hi: u64,
}

impl Run {
    /// Number of serials; cannot overflow because runs never include 0.
    fn len(self) -> u64 {
        self.hi - self.lo + 1
    }

    /// Cheapest encoding outside a bitmap: a range, or list entries.
    fn piecewise_cost(self) -> u64 {
        RANGE_COST.min(LIST_ENTRY_COST.saturating_mul(self.len()))
    }

    fn prefers_range(self) -> bool {
        LIST_ENTRY_COST.saturating_mul(self.len()) > RANGE_COST
    }
}

/// One certificate serial sub-section to write.
#[derive(Debug, Clone, PartialEq, Eq)]
enum SerialSection {
    List(Vec<u64>),
    Range(Run),
    /// Bitmap starting at the first run's `lo`; spans at most
    /// [`MAX_BITMAP_BITS`].
    Bitmap(Vec<Run>),
}

impl SerialSection {
    fn encode(&self) -> (u8, Vec<u8>) {
        let mut data = Vec::new();
        match self {
            SerialSection::List(serials) => {
                for &serial in serials {
                    put_u64(&mut data, serial);
                }
                (CERT_SERIAL_LIST, data)
            }
            SerialSection::Range(run) => {
                put_u64(&mut data, run.lo);
                put_u64(&mut data, run.hi);
                (CERT_SERIAL_RANGE, data)
            }
            SerialSection::Bitmap(runs) => {
                let offset = runs.first().map_or(0, |run| run.lo);
                put_u64(&mut data, offset);
                put_string(&mut data, &bitmap_mpint(offset, runs));
                (CERT_SERIAL_BITMAP, data)
            }
        }
    }
}

/// Maximal runs of consecutive serials, ignoring serial 0.
fn runs(serials: &BTreeSet<u64>) -> Vec<Run> {
    let mut out: Vec<Run> = Vec::new();
    for &serial in serials.range(1..) {
        match out.last_mut() {
            Some(run) if run.hi.checked_add(1) == Some(serial) => run.hi = serial,
            _ => out.push(Run {
                lo: serial,
                hi: serial,
            }),
        }
    }
    out
}

/// Chooses sub-sections for a CA's serials: long runs become ranges; the
/// rest is grouped into clusters of nearby serials, each written as a bitmap
/// if that is smaller, otherwise as ranges (runs of 3+) and list entries.
/// Output order: the list (if any), then ranges and bitmaps ascending.
fn plan_serial_sections(serials: &BTreeSet<u64>) -> Vec<SerialSection> {
    let mut list = Vec::new();
    let mut sections = Vec::new();
    let mut cluster: Vec<Run> = Vec::new();
    for run in runs(serials) {
        if run.len() >= LONG_RUN {
            flush_cluster(&mut cluster, &mut list, &mut sections);
            sections.push(SerialSection::Range(run));
            continue;
        }
        if let (Some(first), Some(last)) = (cluster.first(), cluster.last()) {
            let gap = run.lo - last.hi - 1;
            let span = run.hi - first.lo + 1;
            if gap > MAX_BITMAP_GAP || span > MAX_BITMAP_BITS {
                flush_cluster(&mut cluster, &mut list, &mut sections);
            }
        }
        cluster.push(run);
    }
    flush_cluster(&mut cluster, &mut list, &mut sections);
    if !list.is_empty() {
        sections.insert(0, SerialSection::List(list));
    }
    sections
}

/// Writes out a cluster of short runs as whichever is cheaper: one bitmap,
/// or ranges plus list entries.
fn flush_cluster(cluster: &mut Vec<Run>, list: &mut Vec<u64>, sections: &mut Vec<SerialSection>) {
    let (Some(first), Some(last)) = (cluster.first(), cluster.last()) else {
        return;
    };
    let bitmap_cost = BITMAP_OVERHEAD + (last.hi - first.lo + 1).div_ceil(8);
    let piecewise_cost: u64 = cluster.iter().map(|run| run.piecewise_cost()).sum();
    if bitmap_cost < piecewise_cost {
        sections.push(SerialSection::Bitmap(std::mem::take(cluster)));
        return;
    }
    for run in cluster.drain(..) {
        if run.prefers_range() {
            sections.push(SerialSection::Range(run));
        } else {
            list.extend(run.lo..=run.hi);
        }
    }
}

/// Big-endian mpint whose bit N is set when serial `offset + N` is revoked.
fn bitmap_mpint(offset: u64, runs: &[Run]) -> Vec<u8> {
    let Some(last) = runs.last() else {
        return Vec::new();
    };
    // Bounded by MAX_BITMAP_BITS, so these fit in usize.
    let nbits = (last.hi - offset + 1) as usize;
    let nbytes = nbits.div_ceil(8);
    let mut bytes = vec![0u8; nbytes];
    for run in runs {
        for serial in run.lo..=run.hi {
            let bit = (serial - offset) as usize;
            bytes[nbytes - 1 - bit / 8] |= 1 << (bit % 8);
        }
    }
    if bytes.first().is_some_and(|&b| b & 0x80 != 0) {
        bytes.insert(0, 0); // keep the mpint positive
    }
    bytes
}

// ---------------------------------------------------------------------------
// Decoding
// ---------------------------------------------------------------------------

/// Bounds-checked reader over one (sub-)section of the input. Offsets are
/// absolute so errors can point at the exact byte; slices borrow the input,
/// so length fields never drive allocations.
struct Cursor<'a> {
    data: &'a [u8],
    pos: usize,
    end: usize,
    context: &'static str,
}

impl<'a> Cursor<'a> {
    fn new(data: &'a [u8], context: &'static str) -> Self {
        Cursor {
            data,
            pos: 0,
            end: data.len(),
            context,
        }
    }

    fn offset(&self) -> usize {
        self.pos
    }

    fn is_empty(&self) -> bool {
        self.pos >= self.end
    }

    fn truncated_at(&self, offset: usize) -> KrlError {
        KrlError::Truncated {
            context: self.context,
            offset,
        }
    }

    fn invalid(&self, offset: usize, reason: impl Into<String>) -> KrlError {
        KrlError::Invalid {
            context: self.context,
            offset,
            reason: reason.into(),
        }
    }

    fn take(&mut self, len: usize) -> Result<&'a [u8], KrlError> {
        let end = self
            .pos
            .checked_add(len)
            .filter(|&end| end <= self.end)
            .ok_or_else(|| self.truncated_at(self.pos))?;
        let bytes = self
            .data
            .get(self.pos..end)
            .ok_or_else(|| self.truncated_at(self.pos))?;
        self.pos = end;
        Ok(bytes)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], KrlError> {
        let at = self.pos;
        self.take(N)?.try_into().map_err(|_| self.truncated_at(at))
    }

    fn u8(&mut self) -> Result<u8, KrlError> {
        Ok(u8::from_be_bytes(self.array()?))
    }

    fn u32(&mut self) -> Result<u32, KrlError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, KrlError> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    /// SSH `string`; a truncation error points at its length field.
    fn string(&mut self) -> Result<&'a [u8], KrlError> {
        let at = self.pos;
        let len = usize::try_from(self.u32()?).map_err(|_| self.truncated_at(at))?;
        self.take(len).map_err(|_| self.truncated_at(at))
    }

    /// Reads a `string` and returns a cursor over its contents, reporting
    /// errors inside it under `context`.
    fn section(&mut self, context: &'static str) -> Result<Cursor<'a>, KrlError> {
        let at = self.pos;
        let body = self.string().map_err(|_| KrlError::Truncated {
            context,
            offset: at,
        })?;
        let start = self.pos - body.len();
        Ok(Cursor {
            data: self.data,
            pos: start,
            end: self.pos,
            context,
        })
    }

    /// Sections must be consumed exactly, as OpenSSH requires.
    fn finish(&self) -> Result<(), KrlError> {
        if self.is_empty() {
            Ok(())
        } else {
            let extra = self.end - self.pos;
            Err(self.invalid(self.pos, format!("{extra} bytes of unparsed data")))
        }
    }
}

/// Enforces [`MAX_DECODED_SERIALS`] across the whole KRL.
struct SerialBudget {
    remaining: u64,
}

impl SerialBudget {
    fn new() -> Self {
        SerialBudget {
            remaining: MAX_DECODED_SERIALS,
        }
    }

    fn spend(&mut self, count: u64, offset: usize) -> Result<(), KrlError> {
        self.remaining = self
            .remaining
            .checked_sub(count)
            .ok_or(KrlError::TooManySerials {
                limit: MAX_DECODED_SERIALS,
                offset,
            })?;
        Ok(())
    }
}

const SERIAL_ZERO: &str = "serial 0 cannot be revoked (revoke unnumbered certificates by key ID); OpenSSH rejects this KRL";

/// OpenSSH's `sshbuf_get_cstring`: one trailing NUL is tolerated, any other
/// NUL is an error.
fn c_string(raw: &[u8]) -> Result<&[u8], &'static str> {
    let trimmed = raw.strip_suffix(b"\0").unwrap_or(raw);
    if trimmed.contains(&0) {
        Err("string contains an embedded NUL")
    } else {
        Ok(trimmed)
    }
}

fn section_context(kind: u8) -> &'static str {
    match kind {
        SECTION_CERTIFICATES => "certificate section",
        SECTION_EXPLICIT_KEY => "explicit key section",
        SECTION_FINGERPRINT_SHA1 => "SHA-1 fingerprint section",
        SECTION_FINGERPRINT_SHA256 => "SHA-256 fingerprint section",
        SECTION_SIGNATURE => "signature section",
        SECTION_EXTENSION => "extension section",
        _ => "section",
    }
}

fn cert_subsection_context(kind: u8) -> &'static str {
    match kind {
        CERT_SERIAL_LIST => "certificate serial list",
        CERT_SERIAL_RANGE => "certificate serial range",
        CERT_SERIAL_BITMAP => "certificate serial bitmap",
        CERT_KEY_ID => "certificate key ID list",
        CERT_EXTENSION => "certificate extension",
        _ => "certificate sub-section",
    }
}

/// Top-level sections after the header.
fn decode_sections(
    r: &mut Cursor<'_>,
    out: &mut Collector,
    budget: &mut SerialBudget,
) -> Result<(), KrlError> {
    let mut seen_signature = false;
    while !r.is_empty() {
        let at = r.offset();
        let kind = r.u8()?;
        let context = section_context(kind);
        if kind == SECTION_SIGNATURE {
            skip_signature(r)?;
            seen_signature = true;
            continue;
        }
        if seen_signature {
            let reason = "only signature sections may follow a signature section";
            return Err(KrlError::Invalid {
                context,
                offset: at,
                reason: reason.into(),
            });
        }
        let mut sect = r.section(context)?;
        match kind {
            SECTION_CERTIFICATES => decode_cert_section(&mut sect, out, budget)?,
            SECTION_EXPLICIT_KEY => decode_explicit_keys(&mut sect, out)?,
            SECTION_FINGERPRINT_SHA1 => decode_hashes(&mut sect, &mut out.sha1)?,
            SECTION_FINGERPRINT_SHA256 => decode_hashes(&mut sect, &mut out.sha256)?,
            SECTION_EXTENSION => skip_extension(&mut sect)?,
            _ => {
                return Err(KrlError::UnsupportedSection {
                    context: "section",
                    kind,
                    offset: at,
                });
            }
        }
        sect.finish()?;
    }
    Ok(())
}

/// A signature section carries two strings (signing key, signature) instead
/// of one body. Parsed for framing only; signatures are not verified.
fn skip_signature(r: &mut Cursor<'_>) -> Result<(), KrlError> {
    r.section("signature section")?;
    r.section("signature section")?;
    Ok(())
}

/// Extension (sub-)section: name, critical flag, contents. Unknown critical
/// extensions must fail the KRL; others are ignored.
fn skip_extension(sect: &mut Cursor<'_>) -> Result<(), KrlError> {
    let at = sect.offset();
    let name = sect.string()?;
    let critical = sect.u8()? != 0;
    sect.string()?;
    if critical {
        let name = String::from_utf8_lossy(name);
        return Err(sect.invalid(at, format!("unsupported critical extension {name:?}")));
    }
    Ok(())
}

/// Parses a public key blob that must be a plain key (not a certificate)
/// and must be consumed exactly.
fn parse_plain_key(
    blob: &[u8],
    context: &'static str,
    offset: usize,
) -> Result<ssh_key::public::KeyData, KrlError> {
    let mut reader = blob;
    let key = <ssh_key::public::KeyData as ssh_key::encoding::Decode>::decode(&mut reader)
        .map_err(|source| KrlError::Key {
            context,
            offset,
            source,
        })?;
    let invalid = |reason: &str| KrlError::Invalid {
        context,
        offset,
        reason: reason.into(),
    };
    if !reader.is_empty() {
        return Err(invalid("trailing bytes after public key"));
    }
    if key.is_certificate() {
        return Err(invalid("certificate where a plain public key is required"));
    }
    Ok(key)
}

fn decode_cert_section(
    sect: &mut Cursor<'_>,
    out: &mut Collector,
    budget: &mut SerialBudget,
) -> Result<(), KrlError> {
    let ca_at = sect.offset();
    let ca_blob = sect.string()?;
    sect.string()?; // reserved
    let ca_key = match ca_blob {
        [] => None, // wildcard CA
        blob => Some(parse_plain_key(blob, sect.context, ca_at)?),
    };
    let group = out.cert_group(ca_blob.to_vec(), ca_key);
    while !sect.is_empty() {
        let at = sect.offset();
        let kind = sect.u8()?;
        let mut sub = sect.section(cert_subsection_context(kind))?;
        match kind {
            CERT_SERIAL_LIST => decode_serial_list(&mut sub, group, budget)?,
            CERT_SERIAL_RANGE => decode_serial_range(&mut sub, group, budget)?,
            CERT_SERIAL_BITMAP => decode_serial_bitmap(&mut sub, group, budget)?,
            CERT_KEY_ID => decode_key_ids(&mut sub, group)?,
            CERT_EXTENSION => skip_extension(&mut sub)?,
            _ => {
                return Err(KrlError::UnsupportedSection {
                    context: "certificate sub-section",
                    kind,
                    offset: at,
                });
            }
        }
        sub.finish()?;
    }
    Ok(())
}

fn decode_serial_list(
    sub: &mut Cursor<'_>,
    group: &mut CertRevocations,
    budget: &mut SerialBudget,
) -> Result<(), KrlError> {
    while !sub.is_empty() {
        let at = sub.offset();
        let serial = sub.u64()?;
        if serial == 0 {
            return Err(sub.invalid(at, SERIAL_ZERO));
        }
        budget.spend(1, at)?;
        group.serials.insert(serial);
    }
    Ok(())
}

fn decode_serial_range(
    sub: &mut Cursor<'_>,
    group: &mut CertRevocations,
    budget: &mut SerialBudget,
) -> Result<(), KrlError> {
    let at = sub.offset();
    let lo = sub.u64()?;
    let hi = sub.u64()?;
    if lo == 0 {
        return Err(sub.invalid(at, SERIAL_ZERO));
    }
    if lo > hi {
        return Err(sub.invalid(at, format!("serial range {lo}-{hi} is reversed")));
    }
    let run = Run { lo, hi };
    budget.spend(run.len(), at)?;
    group.serials.extend(lo..=hi);
    Ok(())
}

fn decode_serial_bitmap(
    sub: &mut Cursor<'_>,
    group: &mut CertRevocations,
    budget: &mut SerialBudget,
) -> Result<(), KrlError> {
    let at = sub.offset();
    let offset = sub.u64()?;
    let bitmap = sub.string()?;
    if bitmap.first().is_some_and(|&b| b & 0x80 != 0) {
        return Err(sub.invalid(at, "bitmap mpint is negative"));
    }
    let set_bits: u64 = bitmap.iter().map(|b| u64::from(b.count_ones())).sum();
    budget.spend(set_bits, at)?;
    // Least significant byte last: byte i from the end holds bits 8i..8i+7.
    for (byte_index, &byte) in (0u64..).zip(bitmap.iter().rev()) {
        for bit in (0..8u64).filter(|bit| byte & (1 << bit) != 0) {
            let serial = offset
                .checked_add(byte_index * 8 + bit)
                .ok_or_else(|| sub.invalid(at, "bitmap extends past serial 2^64-1"))?;
            if serial == 0 {
                return Err(sub.invalid(at, SERIAL_ZERO));
            }
            group.serials.insert(serial);
        }
    }
    Ok(())
}

fn decode_key_ids(sub: &mut Cursor<'_>, group: &mut CertRevocations) -> Result<(), KrlError> {
    while !sub.is_empty() {
        let at = sub.offset();
        let raw = c_string(sub.string()?).map_err(|reason| sub.invalid(at, reason))?;
        let id = std::str::from_utf8(raw).map_err(|_| sub.invalid(at, "key ID is not UTF-8"))?;
        group.key_ids.insert(id.to_owned());
    }
    Ok(())
}

fn decode_explicit_keys(sect: &mut Cursor<'_>, out: &mut Collector) -> Result<(), KrlError> {
    while !sect.is_empty() {
        let at = sect.offset();
        let blob = sect.string()?;
        let key = parse_plain_key(blob, sect.context, at)?;
        out.keys.insert(blob.to_vec(), key);
    }
    Ok(())
}

fn decode_hashes<const N: usize>(
    sect: &mut Cursor<'_>,
    out: &mut BTreeSet<[u8; N]>,
) -> Result<(), KrlError> {
    while !sect.is_empty() {
        let at = sect.offset();
        let hash = sect.string()?;
        let hash: [u8; N] = hash.try_into().map_err(|_| {
            let len = hash.len();
            sect.invalid(at, format!("hash is {len} bytes, expected {N}"))
        })?;
        out.insert(hash);
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Hashes
// ---------------------------------------------------------------------------

fn sha256(data: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(data).into()
}

/// SHA-1, needed only to match KRL_SECTION_FINGERPRINT_SHA1 entries that `ssh-keygen` can
/// still write. Used for lookups only, never to authenticate anything.
fn sha1(data: &[u8]) -> [u8; 20] {
    use sha1::Digest;
    sha1::Sha1::digest(data).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{RngExt, SeedableRng};
    use ssh_key::public::{Ed25519PublicKey, KeyData, SkEd25519};
    use std::cell::Cell;
    use std::process::{Command, Output};

    // -- fixtures -----------------------------------------------------------

    fn ed_key(seed: u8) -> KeyData {
        KeyData::Ed25519(Ed25519PublicKey([seed; 32]))
    }

    fn sk_key(seed: u8) -> KeyData {
        KeyData::SkEd25519(SkEd25519::new(Ed25519PublicKey([seed; 32]), "ssh:"))
    }

    fn serials(items: impl IntoIterator<Item = u64>) -> BTreeSet<u64> {
        items.into_iter().collect()
    }

    fn ids(items: &[&str]) -> BTreeSet<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    fn group(ca_key: Option<KeyData>, serials: BTreeSet<u64>, key_ids: &[&str]) -> CertRevocations {
        CertRevocations {
            ca_key,
            serials,
            key_ids: ids(key_ids),
        }
    }

    /// Serials for CA 1: runs, gaps, a long run, a dense cluster, isolated
    /// serials and the top of the u64 range.
    fn ca1_serials() -> BTreeSet<u64> {
        let mut s = serials([1, 2, 3, 4, 5, 7, 9, 5000, 9000]);
        s.extend([1000, 1002, 1005, 1007, 1010, 1011, 1020]);
        s.extend(100..=400);
        s.extend(2000..=2007);
        s.extend(u64::MAX - 2..=u64::MAX);
        s
    }

    /// A canonical KRL using every feature.
    fn sample_krl() -> Krl {
        Krl {
            version: 7,
            generated_date: 1_700_000_000,
            comment: "test KRL".into(),
            certificates: vec![
                group(None, serials([3, 77]), &["compromised-laptop"]),
                group(Some(ed_key(1)), ca1_serials(), &["", "alice", "bob"]),
                group(Some(ed_key(2)), serials([42]), &[]),
            ],
            keys: vec![ed_key(3), sk_key(4)],
            sha1_fingerprints: vec![[0x11; 20], [0xaa; 20]],
            sha256_fingerprints: vec![[0x01; 32], [0xbb; 32]],
        }
    }

    fn header() -> Vec<u8> {
        let mut out = KRL_MAGIC.to_vec();
        put_u32(&mut out, KRL_FORMAT_VERSION);
        put_u64(&mut out, 1);
        put_u64(&mut out, 2);
        put_u64(&mut out, 0);
        put_string(&mut out, b"");
        put_string(&mut out, b"");
        out
    }

    fn krl_bytes(sections: &[(u8, Vec<u8>)]) -> Vec<u8> {
        let mut out = header();
        for (kind, body) in sections {
            put_section(&mut out, *kind, body);
        }
        out
    }

    fn cert_body(ca: Option<&KeyData>, subsections: &[(u8, Vec<u8>)]) -> Vec<u8> {
        let mut body = Vec::new();
        put_string(&mut body, &ca.map(encode_key).unwrap_or_default());
        put_string(&mut body, b"");
        for (kind, data) in subsections {
            put_section(&mut body, *kind, data);
        }
        body
    }

    fn u64s(values: &[u64]) -> Vec<u8> {
        let mut out = Vec::new();
        for &v in values {
            put_u64(&mut out, v);
        }
        out
    }

    fn bitmap(offset: u64, mpint: &[u8]) -> Vec<u8> {
        let mut out = u64s(&[offset]);
        put_string(&mut out, mpint);
        out
    }

    fn extension(name: &str, critical: bool) -> Vec<u8> {
        let mut out = Vec::new();
        put_string(&mut out, name.as_bytes());
        out.push(u8::from(critical));
        put_string(&mut out, b"contents");
        out
    }

    fn strings(items: &[&[u8]]) -> Vec<u8> {
        concat_strings(items)
    }

    fn ca1_krl(subsections: &[(u8, Vec<u8>)]) -> Vec<u8> {
        krl_bytes(&[(
            SECTION_CERTIFICATES,
            cert_body(Some(&ed_key(1)), subsections),
        )])
    }

    fn decode_err(bytes: &[u8]) -> String {
        match Krl::decode(bytes) {
            Ok(krl) => panic!("expected an error, decoded {krl:?}"),
            Err(err) => err.to_string(),
        }
    }

    /// Offsets at which a prefix of `bytes` is itself a complete KRL.
    fn section_boundaries(bytes: &[u8]) -> BTreeSet<usize> {
        let mut r = Cursor::new(bytes, "test");
        r.take(8 + 4 + 8 + 8 + 8).unwrap();
        r.string().unwrap();
        r.string().unwrap();
        let mut out = BTreeSet::from([r.offset()]);
        while !r.is_empty() {
            r.u8().unwrap();
            r.string().unwrap();
            out.insert(r.offset());
        }
        out
    }

    // -- round trip -----------------------------------------------------------

    #[test]
    fn round_trip_preserves_everything() {
        let krl = sample_krl();
        assert_eq!(krl.canonical(), krl, "fixture should be canonical");
        let bytes = krl.encode();
        assert_eq!(Krl::decode(&bytes).unwrap(), krl);
        assert_eq!(krl.encode(), bytes, "encoding must be deterministic");
    }

    #[test]
    fn encoding_is_canonical_and_drops_unrepresentable_entries() {
        let mut messy = sample_krl();
        messy.certificates.reverse();
        messy.certificates[0].serials.insert(0);
        messy
            .certificates
            .push(group(Some(ed_key(2)), serials([43]), &[]));
        messy
            .certificates
            .push(group(Some(ed_key(9)), serials([0]), &["nul\0id"]));
        messy.keys.reverse();
        messy.keys.push(ed_key(3));
        messy.sha1_fingerprints.reverse();
        messy.sha256_fingerprints.push([0x01; 32]);
        messy.comment = "test\0 KRL".into();

        let mut expected = sample_krl();
        expected.certificates[2].serials.insert(43);
        expected.comment = "test KRL".into();

        assert_eq!(Krl::decode(&messy.encode()).unwrap(), expected);
        assert_eq!(messy.encode(), expected.encode());
    }

    #[test]
    fn empty_krl_round_trips() {
        let krl = Krl::default();
        assert_eq!(krl.encode(), header_with(0, 0));
        assert_eq!(Krl::decode(&krl.encode()).unwrap(), krl);
    }

    fn header_with(version: u64, date: u64) -> Vec<u8> {
        let mut out = KRL_MAGIC.to_vec();
        put_u32(&mut out, 1);
        put_u64(&mut out, version);
        put_u64(&mut out, date);
        put_u64(&mut out, 0);
        put_string(&mut out, b"");
        put_string(&mut out, b"");
        out
    }

    #[test]
    fn serial_plan_uses_cheapest_encodings() {
        let plan = plan_serial_sections(&ca1_serials());
        let kinds: Vec<u8> = plan.iter().map(|s| s.encode().0).collect();
        assert!(kinds.contains(&CERT_SERIAL_LIST), "{plan:?}");
        assert!(kinds.contains(&CERT_SERIAL_RANGE), "{plan:?}");
        assert!(kinds.contains(&CERT_SERIAL_BITMAP), "{plan:?}");
        assert_eq!(plan[0], SerialSection::List(vec![5000, 9000]));
        assert!(plan.contains(&SerialSection::Range(Run { lo: 100, hi: 400 })));

        let long_run = serials(1..=1_000_000);
        let range = Run {
            lo: 1,
            hi: 1_000_000,
        };
        assert_eq!(
            plan_serial_sections(&long_run),
            vec![SerialSection::Range(range)]
        );
        let sparse = serials([10, 20_000]);
        assert_eq!(
            plan_serial_sections(&sparse),
            vec![SerialSection::List(vec![10, 20_000])]
        );
        assert_eq!(plan_serial_sections(&serials([0])), vec![]);
    }

    #[test]
    fn bitmaps_stay_within_openssh_mpint_limit() {
        let every_other = serials((1..=100_000u64).map(|i| i * 2));
        for section in plan_serial_sections(&every_other) {
            let (kind, data) = section.encode();
            assert_eq!(kind, CERT_SERIAL_BITMAP);
            assert!(data.len() <= 8 + 4 + 2049, "bitmap of {} bytes", data.len());
        }
        let krl = Krl {
            certificates: vec![group(None, every_other, &[])],
            ..Krl::default()
        };
        assert_eq!(Krl::decode(&krl.encode()).unwrap(), krl);
    }

    #[test]
    fn bitmap_mpint_is_positive_and_minimal() {
        let runs = [Run { lo: 100, hi: 107 }];
        assert_eq!(bitmap_mpint(100, &runs), vec![0x00, 0xff]);
        let runs = [Run { lo: 100, hi: 100 }, Run { lo: 102, hi: 102 }];
        assert_eq!(bitmap_mpint(100, &runs), vec![0b101]);
    }

    // -- hostile input ------------------------------------------------------------

    #[test]
    fn every_prefix_fails_unless_it_ends_on_a_section_boundary() {
        let bytes = sample_krl().encode();
        let boundaries = section_boundaries(&bytes);
        for len in 0..=bytes.len() {
            let result = Krl::decode(&bytes[..len]);
            assert_eq!(
                result.is_ok(),
                boundaries.contains(&len),
                "prefix of {len} bytes: {result:?}"
            );
        }
        let first_section = *boundaries.first().unwrap();
        let message = decode_err(&bytes[..first_section + 20]);
        assert_eq!(
            message,
            format!(
                "KRL truncated in certificate section at byte {}",
                first_section + 1
            )
        );
    }

    #[test]
    fn garbage_and_wrong_magic_are_rejected() {
        assert!(matches!(Krl::decode(b""), Err(KrlError::BadMagic)));
        assert!(matches!(Krl::decode(b"SSHKRL\n"), Err(KrlError::BadMagic)));
        let mut bytes = sample_krl().encode();
        bytes[0] = b'X';
        assert!(matches!(Krl::decode(&bytes), Err(KrlError::BadMagic)));

        let mut rng = StdRng::seed_from_u64(1);
        for _ in 0..2000 {
            let len = rng.random_range(0..200);
            let mut junk: Vec<u8> = (0..len).map(|_| rng.random()).collect();
            assert!(Krl::decode(&junk).is_err());
            let mut with_magic = KRL_MAGIC.to_vec();
            with_magic.append(&mut junk);
            let _ = Krl::decode(&with_magic);
        }
    }

    #[test]
    fn huge_length_fields_fail_without_allocating() {
        let mut bytes = header();
        let comment_at = bytes.len() - 4;
        bytes[comment_at..].copy_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(
            decode_err(&bytes),
            format!("KRL truncated in header at byte {comment_at}")
        );

        let mut bytes = header();
        let section_at = bytes.len();
        bytes.push(SECTION_CERTIFICATES);
        put_u32(&mut bytes, 0xffff_fff0);
        assert_eq!(
            decode_err(&bytes),
            format!(
                "KRL truncated in certificate section at byte {}",
                section_at + 1
            )
        );

        let mut ids = Vec::new();
        put_u32(&mut ids, u32::MAX);
        let message = decode_err(&ca1_krl(&[(CERT_KEY_ID, ids)]));
        assert!(
            message.starts_with("KRL truncated in certificate key ID list"),
            "{message}"
        );

        let everything = u64s(&[1, u64::MAX]);
        let message = decode_err(&ca1_krl(&[(CERT_SERIAL_RANGE, everything)]));
        assert!(
            message.contains("more than 1048576 certificate serials"),
            "{message}"
        );

        let half = u64s(&[1, MAX_DECODED_SERIALS / 2 + 1]);
        let other_half = u64s(&[1 << 40, (1 << 40) + MAX_DECODED_SERIALS / 2]);
        let split = ca1_krl(&[(CERT_SERIAL_RANGE, half), (CERT_SERIAL_RANGE, other_half)]);
        assert!(matches!(
            Krl::decode(&split),
            Err(KrlError::TooManySerials { .. })
        ));

        let dense = vec![0x7f; (MAX_DECODED_SERIALS / 7 + 1) as usize];
        let dense = ca1_krl(&[(CERT_SERIAL_BITMAP, bitmap(1, &dense))]);
        assert!(matches!(
            Krl::decode(&dense),
            Err(KrlError::TooManySerials { .. })
        ));
    }

    #[test]
    fn invalid_contents_are_rejected_like_openssh() {
        let in_ca1 = |sub: (u8, Vec<u8>)| ca1_krl(&[sub]);
        let mut bad_key = Vec::new();
        put_string(&mut bad_key, b"\0\0\0\x0bssh-ed25519\0\0\0\x01x");
        let mut trailing_key = encode_key(&ed_key(5));
        trailing_key.push(0);
        let cert_blob = {
            let ca = test_ca(1);
            encode_key(&KeyData::Certificate(Box::new(make_cert(
                &ca,
                &ed_key(5),
                1,
                "x",
            ))))
        };
        let mut wrong_version = header();
        wrong_version[8..12].copy_from_slice(&2u32.to_be_bytes());
        let signature_then_keys = {
            let mut out = header();
            out.push(SECTION_SIGNATURE);
            put_string(&mut out, &encode_key(&ed_key(1)));
            put_string(&mut out, b"signature");
            put_section(
                &mut out,
                SECTION_EXPLICIT_KEY,
                &strings(&[&encode_key(&ed_key(2))]),
            );
            out
        };
        let cases: Vec<(&str, Vec<u8>, &str)> = vec![
            ("version", wrong_version, "unsupported KRL format version 2"),
            (
                "list 0",
                in_ca1((CERT_SERIAL_LIST, u64s(&[5, 0]))),
                "serial 0",
            ),
            (
                "range 0",
                in_ca1((CERT_SERIAL_RANGE, u64s(&[0, 5]))),
                "serial 0",
            ),
            (
                "bitmap 0",
                in_ca1((CERT_SERIAL_BITMAP, bitmap(0, &[1]))),
                "serial 0",
            ),
            (
                "reversed",
                in_ca1((CERT_SERIAL_RANGE, u64s(&[9, 3]))),
                "9-3 is reversed",
            ),
            (
                "negative",
                in_ca1((CERT_SERIAL_BITMAP, bitmap(1, &[0x80]))),
                "negative",
            ),
            (
                "wraps",
                in_ca1((CERT_SERIAL_BITMAP, bitmap(u64::MAX, &[3]))),
                "past serial",
            ),
            (
                "range tail",
                in_ca1((CERT_SERIAL_RANGE, u64s(&[1, 2, 3]))),
                "unparsed",
            ),
            (
                "list tail",
                in_ca1((CERT_SERIAL_LIST, vec![1; 9])),
                "truncated",
            ),
            (
                "sub type",
                in_ca1((0x30, vec![])),
                "certificate sub-section type 0x30",
            ),
            (
                "section type",
                krl_bytes(&[(7, vec![])]),
                "KRL section type 0x07",
            ),
            (
                "critical",
                krl_bytes(&[(SECTION_EXTENSION, extension("x@example.com", true))]),
                "critical extension \"x@example.com\"",
            ),
            (
                "cert critical",
                in_ca1((CERT_EXTENSION, extension("y@example.com", true))),
                "critical extension",
            ),
            (
                "bad key",
                krl_bytes(&[(SECTION_EXPLICIT_KEY, bad_key)]),
                "invalid public key",
            ),
            (
                "key tail",
                krl_bytes(&[(SECTION_EXPLICIT_KEY, strings(&[&trailing_key]))]),
                "trailing bytes",
            ),
            (
                "cert as key",
                krl_bytes(&[(SECTION_EXPLICIT_KEY, strings(&[&cert_blob]))]),
                "certificate where a plain public key",
            ),
            (
                "sha1 len",
                krl_bytes(&[(SECTION_FINGERPRINT_SHA1, strings(&[&[0; 32]]))]),
                "expected 20",
            ),
            (
                "sha256 len",
                krl_bytes(&[(SECTION_FINGERPRINT_SHA256, strings(&[&[0; 20]]))]),
                "expected 32",
            ),
            (
                "nul id",
                in_ca1((CERT_KEY_ID, strings(&[b"a\0b"]))),
                "embedded NUL",
            ),
            (
                "utf8 id",
                in_ca1((CERT_KEY_ID, strings(&[b"\xff"]))),
                "not UTF-8",
            ),
            ("after signature", signature_then_keys, "follow a signature"),
        ];
        for (name, bytes, expected) in cases {
            let message = decode_err(&bytes);
            assert!(message.contains(expected), "{name}: {message}");
            assert!(!message.contains('\n'), "{name}: {message}");
        }
    }

    #[test]
    fn optional_parts_are_accepted() {
        let mut bytes = krl_bytes(&[
            (SECTION_EXTENSION, extension("bloom@example.com", false)),
            (SECTION_CERTIFICATES, cert_body(Some(&ed_key(1)), &[])),
            (
                SECTION_CERTIFICATES,
                cert_body(
                    Some(&ed_key(1)),
                    &[
                        (CERT_EXTENSION, extension("cert-bloom", false)),
                        (CERT_SERIAL_BITMAP, bitmap(10, &[0, 0, 0b101])),
                        (CERT_KEY_ID, strings(&[b"trailing-nul\0", b""])),
                    ],
                ),
            ),
            (
                SECTION_CERTIFICATES,
                cert_body(Some(&ed_key(1)), &[(CERT_SERIAL_LIST, u64s(&[11, 10]))]),
            ),
        ]);
        bytes.push(SECTION_SIGNATURE);
        put_string(&mut bytes, &encode_key(&ed_key(8)));
        put_string(&mut bytes, b"unverified signature");
        let krl = Krl::decode(&bytes).unwrap();
        assert_eq!(
            krl.certificates,
            vec![group(
                Some(ed_key(1)),
                serials([10, 11, 12]),
                &["", "trailing-nul"]
            )]
        );
    }

    fn mutate(rng: &mut StdRng, bytes: &mut Vec<u8>) {
        if bytes.is_empty() {
            bytes.push(rng.random());
            return;
        }
        let at = rng.random_range(0..bytes.len());
        match rng.random_range(0..8) {
            0 => bytes[at] ^= 1 << rng.random_range(0..8),
            1 => bytes[at] = rng.random(),
            2 => bytes[at] = if rng.random() { 0 } else { 0xff },
            3 => {
                let huge: u32 = if rng.random() { u32::MAX } else { 0x7fff_ffff };
                for (i, b) in huge.to_be_bytes().into_iter().enumerate() {
                    if let Some(slot) = bytes.get_mut(at + i) {
                        *slot = b;
                    }
                }
            }
            4 => bytes.truncate(at),
            5 => bytes.insert(at, rng.random()),
            6 => {
                bytes.remove(at);
            }
            _ => {
                let end = rng.random_range(at..=bytes.len());
                let chunk = bytes[at..end].to_vec();
                bytes.extend_from_slice(&chunk);
            }
        }
    }

    #[test]
    fn fuzzed_krls_never_panic_and_reencode_stably() {
        let base = sample_krl().encode();
        let mut rng = StdRng::seed_from_u64(0x4b52_4c21);
        let mut accepted = 0;
        for _ in 0..4000 {
            let mut bytes = base.clone();
            for _ in 0..rng.random_range(1..=4) {
                mutate(&mut rng, &mut bytes);
            }
            if let Ok(krl) = Krl::decode(&bytes) {
                accepted += 1;
                let again = Krl::decode(&krl.encode()).expect("re-encoded KRL must decode");
                assert_eq!(again, krl);
            }
        }
        assert!(accepted > 0, "mutations should sometimes yield valid KRLs");
    }

    // -- revocation checks ----------------------------------------------------

    fn test_ca(seed: u8) -> ssh_key::PrivateKey {
        ssh_key::private::Ed25519Keypair::from_seed(&[seed; 32]).into()
    }

    fn ca_pub(ca: &ssh_key::PrivateKey) -> KeyData {
        ca.public_key().key_data().clone()
    }

    fn make_cert(
        ca: &ssh_key::PrivateKey,
        subject: &KeyData,
        serial: u64,
        key_id: &str,
    ) -> ssh_key::Certificate {
        let mut builder =
            ssh_key::certificate::Builder::new([7u8; 16], subject.clone(), 0, u64::MAX).unwrap();
        builder
            .serial(serial)
            .unwrap()
            .key_id(key_id)
            .unwrap()
            .valid_principal("user")
            .unwrap();
        builder.sign(ca).unwrap()
    }

    fn cert_krl(groups: Vec<CertRevocations>) -> Krl {
        Krl {
            certificates: groups,
            ..Krl::default()
        }
    }

    #[test]
    fn serial_revoked_under_another_ca_does_not_apply() {
        let (ca_a, ca_b) = (test_ca(1), test_ca(2));
        let cert = make_cert(&ca_a, &ed_key(50), 42, "user");
        let under_b = cert_krl(vec![group(Some(ca_pub(&ca_b)), serials([42]), &["user"])]);
        assert_eq!(under_b.certificate_revoked(&cert), None);
        let under_a = cert_krl(vec![group(Some(ca_pub(&ca_a)), serials([42]), &[])]);
        assert_eq!(
            under_a.certificate_revoked(&cert),
            Some(Revoked::Serial(42))
        );
        let wildcard = cert_krl(vec![group(None, serials([42]), &[])]);
        assert_eq!(
            wildcard.certificate_revoked(&cert),
            Some(Revoked::Serial(42))
        );
    }

    #[test]
    fn key_ids_are_scoped_to_their_ca_or_wildcard() {
        let (ca_a, ca_b) = (test_ca(1), test_ca(2));
        let cert = make_cert(&ca_a, &ed_key(50), 5, "bad-id");
        let under_b = cert_krl(vec![group(Some(ca_pub(&ca_b)), serials([]), &["bad-id"])]);
        assert_eq!(under_b.certificate_revoked(&cert), None);
        let under_a = cert_krl(vec![group(Some(ca_pub(&ca_a)), serials([]), &["bad-id"])]);
        let expected = Some(Revoked::KeyId("bad-id".into()));
        assert_eq!(under_a.certificate_revoked(&cert), expected);
        let wildcard = cert_krl(vec![group(None, serials([]), &["bad-id"])]);
        assert_eq!(wildcard.certificate_revoked(&cert), expected);
    }

    #[test]
    fn serial_zero_matches_only_by_key_id() {
        let ca = test_ca(1);
        let cert = make_cert(&ca, &ed_key(50), 0, "unnumbered");
        let by_serial = cert_krl(vec![group(Some(ca_pub(&ca)), serials([0]), &[])]);
        assert_eq!(by_serial.certificate_revoked(&cert), None);
        let by_id = cert_krl(vec![group(
            Some(ca_pub(&ca)),
            serials([0]),
            &["unnumbered"],
        )]);
        let expected = Some(Revoked::KeyId("unnumbered".into()));
        assert_eq!(by_id.certificate_revoked(&cert), expected);
    }

    #[test]
    fn precedence_follows_openssh() {
        let (ca_a, ca_b) = (test_ca(1), test_ca(2));
        let subject = ed_key(50);
        let cert = make_cert(&ca_a, &subject, 42, "both");
        let blob = encode_key(&subject);

        let mut krl = cert_krl(vec![
            group(None, serials([42]), &[]),
            group(Some(ca_pub(&ca_a)), serials([42]), &["both"]),
        ]);
        assert_eq!(
            krl.certificate_revoked(&cert),
            Some(Revoked::KeyId("both".into()))
        );
        krl.keys.push(subject.clone());
        assert_eq!(krl.certificate_revoked(&cert), Some(Revoked::Key));
        krl.sha256_fingerprints.push(sha256(&blob));
        assert_eq!(krl.certificate_revoked(&cert), Some(Revoked::Fingerprint));

        // Subject key revocations apply whichever CA signed the certificate.
        let other = make_cert(&ca_b, &subject, 1, "x");
        let by_sha1 = Krl {
            sha1_fingerprints: vec![sha1(&blob)],
            ..Krl::default()
        };
        assert_eq!(
            by_sha1.certificate_revoked(&other),
            Some(Revoked::Fingerprint)
        );

        // A revoked CA key revokes everything it signed.
        let ca_revoked = Krl {
            keys: vec![ca_pub(&ca_b)],
            ..Krl::default()
        };
        assert_eq!(ca_revoked.certificate_revoked(&other), Some(Revoked::Key));
        assert_eq!(ca_revoked.certificate_revoked(&cert), None);
    }

    #[test]
    fn key_revoked_checks_only_key_revocations() {
        let ca = test_ca(1);
        let key = ed_key(50);
        let krl = cert_krl(vec![group(None, serials([1]), &["x"])]);
        assert_eq!(krl.key_revoked(&key), None);

        let explicit = Krl {
            keys: vec![key.clone()],
            ..Krl::default()
        };
        assert_eq!(explicit.key_revoked(&key), Some(Revoked::Key));
        assert_eq!(explicit.key_revoked(&ed_key(51)), None);
        let sha256_krl = Krl {
            sha256_fingerprints: vec![sha256(&encode_key(&key))],
            ..Krl::default()
        };
        assert_eq!(sha256_krl.key_revoked(&key), Some(Revoked::Fingerprint));

        let cert = KeyData::Certificate(Box::new(make_cert(&ca, &ed_key(60), 1, "x")));
        assert_eq!(krl.key_revoked(&cert), Some(Revoked::KeyId("x".into())));
    }

    #[test]
    fn revoked_renders_messages() {
        assert_eq!(
            Revoked::Serial(42).to_string(),
            "certificate serial 42 is revoked"
        );
        assert_eq!(
            Revoked::KeyId("bad".into()).to_string(),
            "certificate key ID \"bad\" is revoked"
        );
    }

    #[test]
    fn sha1_matches_fips_vectors() {
        let hex = |d: [u8; 20]| d.iter().map(|b| format!("{b:02x}")).collect::<String>();
        assert_eq!(hex(sha1(b"")), "da39a3ee5e6b4b0d3255bfef95601890afd80709");
        assert_eq!(
            hex(sha1(b"abc")),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
        assert_eq!(
            hex(sha1(
                b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"
            )),
            "84983e441c3bd26ebaae4aa1f95129e5e54670f1"
        );
        assert_eq!(
            hex(sha1(&[b'a'; 1_000_000])),
            "34aa973cd4c4daa4f61eeb2bdbad27316534016f"
        );
    }

    // -- interop with OpenSSH's ssh-keygen ----------------------------------------

    const KEYGEN_MISSING: &str = "ssh-keygen not found: apt-get install openssh-client";

    /// A scratch directory in which ssh-keygen is run.
    struct Keygen {
        dir: tempfile::TempDir,
        next_cert: Cell<u32>,
    }

    impl Keygen {
        fn new() -> Self {
            Keygen {
                dir: tempfile::tempdir().unwrap(),
                next_cert: Cell::new(0),
            }
        }

        fn run(&self, args: &[&str]) -> Output {
            match Command::new("ssh-keygen")
                .args(args)
                .current_dir(self.dir.path())
                .output()
            {
                Ok(output) => output,
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                    panic!("{KEYGEN_MISSING}")
                }
                Err(err) => panic!("running ssh-keygen {args:?}: {err}"),
            }
        }

        fn run_ok(&self, args: &[&str]) -> Output {
            let output = self.run(args);
            assert!(
                output.status.success(),
                "ssh-keygen {args:?} failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            output
        }

        fn path(&self, name: &str) -> std::path::PathBuf {
            self.dir.path().join(name)
        }

        /// Generates `name` / `name.pub` and returns the public key.
        fn keypair(&self, name: &str) -> KeyData {
            self.run_ok(&["-q", "-t", "ed25519", "-N", "", "-C", name, "-f", name]);
            let public = ssh_key::PublicKey::read_openssh_file(self.path(&format!("{name}.pub")));
            public.unwrap().key_data().clone()
        }

        /// Has `ca` sign a certificate for `subject`'s key; returns the
        /// certificate's file name and the parsed certificate.
        fn cert(
            &self,
            ca: &str,
            subject: &str,
            key_id: &str,
            serial: u64,
        ) -> (String, ssh_key::Certificate) {
            let n = self.next_cert.get();
            self.next_cert.set(n + 1);
            let base = format!("cert{n}");
            let source = self.path(&format!("{subject}.pub"));
            std::fs::copy(source, self.path(&format!("{base}.pub"))).unwrap();
            let serial = serial.to_string();
            let pub_file = format!("{base}.pub");
            let args = [
                "-q", "-s", ca, "-I", key_id, "-z", &serial, "-n", "user", &pub_file,
            ];
            self.run_ok(&args);
            let file = format!("{base}-cert.pub");
            let cert = ssh_key::Certificate::read_file(&self.path(&file)).unwrap();
            (file, cert)
        }

        fn write(&self, name: &str, bytes: &[u8]) {
            std::fs::write(self.path(name), bytes).unwrap();
        }

        fn read_krl(&self, name: &str) -> Krl {
            Krl::decode(&std::fs::read(self.path(name)).unwrap()).unwrap()
        }

        /// `ssh-keygen -Q`: true for REVOKED, false for ok; panics if the KRL
        /// does not load.
        fn revoked(&self, krl: &str, key_file: &str) -> bool {
            let output = self.run(&["-Q", "-f", krl, key_file]);
            let stdout = String::from_utf8_lossy(&output.stdout);
            match output.status.code() {
                Some(0) if stdout.contains(": ok") => false,
                Some(1) if stdout.contains("REVOKED") => true,
                _ => panic!(
                    "ssh-keygen -Q -f {krl} {key_file}: {:?} {stdout} {}",
                    output.status,
                    String::from_utf8_lossy(&output.stderr)
                ),
            }
        }

        /// `ssh-keygen -Q` refuses to load the KRL at all.
        fn rejects(&self, krl: &str, key_file: &str) -> bool {
            let output = self.run(&["-Q", "-f", krl, key_file]);
            !output.status.success() && !String::from_utf8_lossy(&output.stdout).contains("REVOKED")
        }

        /// Serials listed by `ssh-keygen -Q -l` (a dump of the parsed KRL).
        fn dumped_serials(&self, krl: &str, any_key: &str) -> BTreeSet<u64> {
            let output = self.run(&["-Q", "-l", "-f", krl, any_key]);
            let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
            let mut out = BTreeSet::new();
            for spec in stdout.lines().filter_map(|l| l.strip_prefix("serial: ")) {
                let (lo, hi) = spec.split_once('-').unwrap_or((spec, spec));
                out.extend(lo.parse::<u64>().unwrap()..=hi.parse::<u64>().unwrap());
            }
            out
        }
    }

    /// Both ssh-keygen and [`Krl::certificate_revoked`] give `expected`.
    fn assert_verdict(
        kg: &Keygen,
        krl_file: &str,
        krl: &Krl,
        cert: &(String, ssh_key::Certificate),
        expected: bool,
    ) {
        let (file, cert) = cert;
        let what = format!("{file} (serial {}, id {:?})", cert.serial(), cert.key_id());
        assert_eq!(
            kg.revoked(krl_file, file),
            expected,
            "ssh-keygen on {krl_file}: {what}"
        );
        let ours = krl.certificate_revoked(cert);
        assert_eq!(
            ours.is_some(),
            expected,
            "ours on {krl_file}: {what}: {ours:?}"
        );
    }

    fn assert_key_verdict(
        kg: &Keygen,
        krl_file: &str,
        krl: &Krl,
        name: &str,
        key: &KeyData,
        expected: bool,
    ) {
        let file = format!("{name}.pub");
        assert_eq!(
            kg.revoked(krl_file, &file),
            expected,
            "ssh-keygen on {krl_file}: {name}"
        );
        let ours = krl.key_revoked(key);
        assert_eq!(
            ours.is_some(),
            expected,
            "ours on {krl_file}: {name}: {ours:?}"
        );
    }

    #[test]
    fn ssh_keygen_applies_our_serial_revocations() {
        let kg = Keygen::new();
        let ca_a = kg.keypair("ca_a");
        kg.keypair("ca_b");
        kg.keypair("alice");
        let mut revoked = serials([7, 5000, 9000, 20, 22, 25, 27, 30, u64::MAX]);
        revoked.extend(100..=400);
        revoked.extend(600..=607);
        // One bitmap of exactly MAX_BITMAP_BITS with the top bit set: the
        // largest mpint (2048 bytes plus sign byte) OpenSSH accepts.
        revoked.extend((0..=381).map(|k| 1_000_000 + 43 * k));
        let krl = cert_krl(vec![group(Some(ca_a), revoked.clone(), &[])]);
        let plan = plan_serial_sections(&revoked);
        let kinds: BTreeSet<u8> = plan.iter().map(|s| s.encode().0).collect();
        assert_eq!(
            kinds.len(),
            3,
            "fixture should exercise list, range and bitmap"
        );
        let largest = plan.iter().map(|s| s.encode().1.len()).max();
        assert_eq!(largest, Some(8 + 4 + 2049));
        kg.write("serials.krl", &krl.encode());

        assert_eq!(kg.dumped_serials("serials.krl", "alice.pub"), revoked);
        let cases = [
            (7, true),
            (8, false),
            (22, true),
            (23, false),
            (250, true),
            (401, false),
            (600, true),
            (607, true),
            (608, false),
            (5000, true),
            (u64::MAX, true),
            (1, false),
        ];
        for (serial, expected) in cases {
            let cert = kg.cert("ca_a", "alice", "alice", serial);
            assert_verdict(&kg, "serials.krl", &krl, &cert, expected);
        }
        let other_ca = kg.cert("ca_b", "alice", "alice", 7);
        assert_verdict(&kg, "serials.krl", &krl, &other_ca, false);
    }

    #[test]
    fn ssh_keygen_applies_our_key_id_and_key_revocations() {
        let kg = Keygen::new();
        let ca_a = kg.keypair("ca_a");
        let ca_b = kg.keypair("ca_b");
        let alice = kg.keypair("alice");
        let bob = kg.keypair("bob");
        let carol = kg.keypair("carol");
        let dave = kg.keypair("dave");

        let by_id = cert_krl(vec![
            group(None, serials([]), &["stolen"]),
            group(Some(ca_a.clone()), serials([]), &["bad-id"]),
        ]);
        kg.write("ids.krl", &by_id.encode());
        for (ca, key_id, serial, expected) in [
            ("ca_a", "bad-id", 1, true),
            ("ca_a", "good-id", 2, false),
            ("ca_b", "bad-id", 3, false),
            ("ca_b", "stolen", 4, true),
            ("ca_a", "stolen", 0, true),
        ] {
            let cert = kg.cert(ca, "alice", key_id, serial);
            assert_verdict(&kg, "ids.krl", &by_id, &cert, expected);
        }

        let by_key = Krl {
            keys: vec![bob.clone()],
            sha1_fingerprints: vec![sha1(&encode_key(&carol))],
            sha256_fingerprints: vec![sha256(&encode_key(&dave))],
            ..Krl::default()
        };
        kg.write("keys.krl", &by_key.encode());
        assert_key_verdict(&kg, "keys.krl", &by_key, "alice", &alice, false);
        assert_key_verdict(&kg, "keys.krl", &by_key, "bob", &bob, true);
        assert_key_verdict(&kg, "keys.krl", &by_key, "carol", &carol, true);
        assert_key_verdict(&kg, "keys.krl", &by_key, "dave", &dave, true);
        let bob_cert = kg.cert("ca_a", "bob", "bob", 10);
        assert_verdict(&kg, "keys.krl", &by_key, &bob_cert, true);
        let alice_cert = kg.cert("ca_a", "alice", "alice", 11);
        assert_verdict(&kg, "keys.krl", &by_key, &alice_cert, false);

        let ca_gone = Krl {
            keys: vec![ca_b],
            ..Krl::default()
        };
        kg.write("ca.krl", &ca_gone.encode());
        let from_b = kg.cert("ca_b", "alice", "alice", 12);
        assert_verdict(&kg, "ca.krl", &ca_gone, &from_b, true);
        assert_verdict(&kg, "ca.krl", &ca_gone, &alice_cert, false);
    }

    #[test]
    fn ssh_keygen_rejects_serial_zero_as_we_do() {
        let kg = Keygen::new();
        let ca_a = kg.keypair("ca_a");
        kg.keypair("alice");
        let bytes = krl_bytes(&[(
            SECTION_CERTIFICATES,
            cert_body(Some(&ca_a), &[(CERT_SERIAL_LIST, u64s(&[0]))]),
        )]);
        kg.write("zero.krl", &bytes);
        assert!(
            kg.rejects("zero.krl", "alice.pub"),
            "ssh-keygen accepted serial 0"
        );
        assert!(decode_err(&bytes).contains("serial 0"));
    }

    #[test]
    fn we_read_ssh_keygen_krls_and_agree() {
        let kg = Keygen::new();
        let ca_a = kg.keypair("ca_a");
        kg.keypair("ca_b");
        let alice = kg.keypair("alice");
        let bob = kg.keypair("bob");
        let carol = kg.keypair("carol");
        let dave = kg.keypair("dave");
        let erin = kg.keypair("erin");
        let pub_line =
            |name: &str| std::fs::read_to_string(kg.path(&format!("{name}.pub"))).unwrap();
        let erin_fp = erin.fingerprint(ssh_key::HashAlg::Sha256).to_string();
        let spec = format!(
            "serial: 1-5\nserial: 9\nserial: 20\nserial: 22\nserial: 25\nserial: 27\n\
             serial: 1000-2000\nserial: 100000\nserial: 200000\nid: someid\n\
             sha1: {}sha256: {}hash: {erin_fp}\n",
            pub_line("carol"),
            pub_line("dave"),
        );
        kg.write("spec", spec.as_bytes());
        kg.run_ok(&["-k", "-f", "ssh.krl", "-s", "ca_a.pub", "spec"]);
        let krl = kg.read_krl("ssh.krl");

        let mut expected = serials([1, 2, 3, 4, 5, 9, 20, 22, 25, 27, 100_000, 200_000]);
        expected.extend(1000..=2000);
        assert_eq!(
            krl.certificates,
            vec![group(Some(ca_a), expected, &["someid"])]
        );
        assert_eq!(krl.sha1_fingerprints, vec![sha1(&encode_key(&carol))]);
        let mut sha256s = vec![sha256(&encode_key(&dave)), sha256(&encode_key(&erin))];
        sha256s.sort();
        assert_eq!(krl.sha256_fingerprints, sha256s);

        kg.write("ours.krl", &krl.encode());
        let certs = [
            ("ca_a", 1, "x"),
            ("ca_a", 5, "x"),
            ("ca_a", 6, "x"),
            ("ca_a", 9, "x"),
            ("ca_a", 10, "x"),
            ("ca_a", 22, "x"),
            ("ca_a", 23, "x"),
            ("ca_a", 1500, "x"),
            ("ca_a", 2001, "x"),
            ("ca_a", 200_000, "x"),
            ("ca_a", 0, "someid"),
            ("ca_a", 0, "x"),
            ("ca_a", 3000, "someid"),
            ("ca_b", 3, "x"),
            ("ca_b", 0, "someid"),
        ];
        for (ca, serial, key_id) in certs {
            let cert = kg.cert(ca, "alice", key_id, serial);
            let expected = kg.revoked("ssh.krl", &cert.0);
            assert_verdict(&kg, "ssh.krl", &krl, &cert, expected);
            assert_verdict(&kg, "ours.krl", &krl, &cert, expected);
        }
        for (name, key, expected) in [
            ("alice", &alice, false),
            ("carol", &carol, true),
            ("dave", &dave, true),
            ("erin", &erin, true),
        ] {
            assert_key_verdict(&kg, "ssh.krl", &krl, name, key, expected);
            assert_key_verdict(&kg, "ours.krl", &krl, name, key, expected);
        }

        kg.run_ok(&["-k", "-f", "ssh2.krl", "bob.pub"]);
        let explicit = kg.read_krl("ssh2.krl");
        assert_eq!(explicit.keys, vec![bob.clone()]);
        assert_eq!(explicit.key_revoked(&bob), Some(Revoked::Key));
        assert_key_verdict(&kg, "ssh2.krl", &explicit, "bob", &bob, true);
        assert_key_verdict(&kg, "ssh2.krl", &explicit, "alice", &alice, false);
    }
}
