//! The one in-memory answer to "is this certificate (or key) revoked?", for the CA and the
//! bastion alike.
//!
//! A [`RevocationSet`] indexes revocations by serial, key id and key (hash maps), so a check
//! costs the same with ten thousand revocations as with none. It is built either from the
//! store ([`RevocationCache`], used by the CA and the all-in-one bastion) or from the KRL a
//! remote CA serves ([`RevocationSet::from_krl`]), so both bastion modes check the same way.
//!
//! [`RevocationCache`] keeps one set current with a single cheap read per check (the store's
//! revocation generation, bumped in the same transaction as every revocation, by whichever
//! process revokes), and on a change reads only the revocations added since.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use crate::krl::Krl;
use crate::ssh_key::public::KeyData;
use crate::ssh_key::{Certificate, HashAlg, PublicKey};
use crate::store::{Revocation, Revoked, Store, StoreError};

/// Serial and key id revocations for one CA (or any CA).
#[derive(Debug, Clone, Default)]
struct Section {
    /// Serial to the revocation's reason.
    serials: HashMap<u64, Option<String>>,
    /// Key id to the revocation's reason.
    key_ids: HashMap<String, Option<String>>,
}

/// Revocations, indexed for constant-time checks. See the module documentation.
#[derive(Debug, Clone, Default)]
pub struct RevocationSet {
    /// The store generation (or KRL version) this set reflects.
    generation: u64,
    /// Where to continue reading the store ([`Store::revocations_since`]).
    cursor: u64,
    /// Revocations for certificates of any CA (all of the store's).
    any_ca: Section,
    /// Revocations for one CA's certificates (a KRL's sections).
    by_ca: HashMap<KeyData, Section>,
    /// Plain keys revoked outright (and every certificate for them), with the reason.
    keys: HashMap<KeyData, Option<String>>,
    /// A KRL's fingerprint sections, checked by the KRL code (never written by this CA).
    fingerprints: Option<Krl>,
    /// How many revocations it holds.
    len: usize,
}

impl RevocationSet {
    /// The store generation (or KRL version) this set reflects.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// How many revocations it holds.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it holds no revocation.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Adds one revocation from the store. Serials and key ids apply to certificates of any
    /// CA (serials are unique across the CA's two keys). A key line that does not parse can
    /// match nothing and is skipped, as the KRL skips it.
    pub fn add(&mut self, revocation: &Revocation) {
        let reason = revocation.reason.clone();
        let wildcard = &mut self.any_ca;
        match &revocation.item {
            Revoked::Serial(serial) => {
                wildcard.serials.insert(*serial, reason);
            }
            Revoked::KeyId(id) => {
                wildcard.key_ids.insert(id.clone(), reason);
            }
            Revoked::Key(line) => match PublicKey::from_openssh(line) {
                Ok(key) => {
                    self.keys.insert(plain(key.key_data()).clone(), reason);
                }
                Err(_) => return,
            },
        }
        self.len += 1;
    }

    /// The set a KRL describes (a remote CA's), with its version as the generation. KRLs
    /// carry no reasons.
    pub fn from_krl(krl: &Krl) -> RevocationSet {
        let mut set = RevocationSet {
            generation: krl.version,
            ..RevocationSet::default()
        };
        for group in &krl.certificates {
            let section = match &group.ca_key {
                Some(ca) => set.by_ca.entry(plain(ca).clone()).or_default(),
                None => &mut set.any_ca,
            };
            section.serials.extend(
                group
                    .serials
                    .iter()
                    .filter(|s| **s != 0)
                    .map(|s| (*s, None)),
            );
            section
                .key_ids
                .extend(group.key_ids.iter().map(|id| (id.clone(), None)));
            set.len += group.serials.len() + group.key_ids.len();
        }
        for key in &krl.keys {
            set.keys.insert(plain(key).clone(), None);
        }
        set.len += krl.keys.len();
        if !krl.sha1_fingerprints.is_empty() || !krl.sha256_fingerprints.is_empty() {
            set.len += krl.sha1_fingerprints.len() + krl.sha256_fingerprints.len();
            set.fingerprints = Some(Krl {
                sha1_fingerprints: krl.sha1_fingerprints.clone(),
                sha256_fingerprints: krl.sha256_fingerprints.clone(),
                ..Krl::default()
            });
        }
        set
    }

    /// Why `cert` is revoked, if it is: its serial or key id (for its CA, or any CA), its
    /// subject key, or its CA's key.
    pub fn revoked_reason(&self, cert: &Certificate) -> Option<String> {
        let ca = plain(cert.signature_key());
        let sections = [self.by_ca.get(ca), Some(&self.any_ca)];
        for section in sections.into_iter().flatten() {
            let serial = cert.serial();
            if serial != 0
                && let Some(reason) = section.serials.get(&serial)
            {
                return Some(with_reason(format!("certificate serial {serial}"), reason));
            }
            if let Some(reason) = section.key_ids.get(cert.key_id()) {
                let what = format!("certificate key id {:?}", cert.key_id());
                return Some(with_reason(what, reason));
            }
        }
        if let Some(reason) = self.key_reason(cert.public_key()) {
            return Some(with_reason("certificate key".to_string(), &reason));
        }
        self.key_reason(ca)
            .map(|reason| with_reason("certificate's CA key".to_string(), &reason))
    }

    /// Why `key` may neither log in to the CA nor be certified, if a revocation names the key
    /// itself or (when given) the key id the certificate would carry. A certificate for such a
    /// key or key id would be dead on arrival at every sshd that has the KRL, and a revoked
    /// key is no longer proof of anyone's identity.
    pub fn key_refusal(&self, key: &KeyData, key_id: Option<&str>) -> Option<String> {
        if let Some(reason) = self.key_reason(key) {
            let what = format!("key {} is revoked", key.fingerprint(HashAlg::Sha256));
            return Some(suffixed(what, &reason));
        }
        let key_id = key_id?;
        let mut sections = std::iter::once(&self.any_ca).chain(self.by_ca.values());
        sections.find_map(|section| {
            let reason = section.key_ids.get(key_id)?;
            Some(suffixed(format!("key id {key_id:?} is revoked"), reason))
        })
    }

    /// The reason a plain key is revoked (outright or by fingerprint), if it is.
    fn key_reason(&self, key: &KeyData) -> Option<Option<String>> {
        let key = plain(key);
        if let Some(reason) = self.keys.get(key) {
            return Some(reason.clone());
        }
        self.fingerprints
            .as_ref()
            .and_then(|krl| krl.key_revoked(key))
            .map(|_| Some("by fingerprint".to_string()))
    }

    /// Adds what the store gained since this set was read, and moves it to `page`'s
    /// generation.
    fn advance(&mut self, page: &crate::store::RevocationPage) {
        for revocation in &page.revocations {
            self.add(revocation);
        }
        self.cursor = page.cursor;
        self.generation = page.generation;
    }
}

fn plain(key: &KeyData) -> &KeyData {
    match key {
        KeyData::Certificate(cert) => cert.public_key(),
        plain => plain,
    }
}

fn with_reason(what: String, reason: &Option<String>) -> String {
    match reason {
        Some(reason) => format!("{what} revoked: {reason}"),
        None => format!("{what} revoked"),
    }
}

fn suffixed(what: String, reason: &Option<String>) -> String {
    match reason {
        Some(reason) => format!("{what}: {reason}"),
        None => what,
    }
}

/// One [`RevocationSet`] kept current with the store: each [`RevocationCache::current`] costs
/// one indexed read (the revocation generation) while nothing changed, and reads only the new
/// revocations when something did, whichever process revoked.
#[derive(Debug, Default)]
pub struct RevocationCache {
    current: RwLock<Arc<RevocationSet>>,
    /// One refresh at a time; readers of an up-to-date set never wait for it.
    refresh: Mutex<()>,
}

impl RevocationCache {
    /// The revocations as the store has them now. An error (the store cannot be read) means
    /// "unknown": callers fail closed.
    pub fn current(&self, store: &dyn Store) -> Result<Arc<RevocationSet>, StoreError> {
        let generation = store.revocation_generation()?;
        let cached = self.snapshot();
        if cached.generation == generation {
            return Ok(cached);
        }
        let _refresh = self.refresh.lock().unwrap_or_else(|p| p.into_inner());
        // Another caller may have refreshed meanwhile, and nobody else changes the set now.
        let generation = store.revocation_generation()?;
        let cached = self.snapshot();
        if cached.generation == generation {
            return Ok(cached);
        }
        // The generation only grows; a smaller one is another database (restored from a
        // backup): start over rather than keep revocations it does not have.
        let restart = generation < cached.generation;
        let cursor = if restart { 0 } else { cached.cursor };
        let page = store.revocations_since(cursor)?;
        let mut guard = self.current.write().unwrap_or_else(|p| p.into_inner());
        if restart {
            *guard = Arc::new(RevocationSet::default());
        }
        Arc::make_mut(&mut guard).advance(&page);
        Ok(guard.clone())
    }

    fn snapshot(&self) -> Arc<RevocationSet> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

#[cfg(test)]
mod tests;
