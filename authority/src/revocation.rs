//! From the store's revocations to a KRL that sshd enforces. Checks against revocations go
//! through [`jitssh_core::revocation::RevocationSet`].

use jitssh_core::keys::CaKeys;
use jitssh_core::krl::{CertRevocations, Krl};
use jitssh_core::ssh_key::PublicKey;
use jitssh_core::store::{Revoked, Store, StoreError};

/// Builds the KRL for every revocation in the store. Serials are attributed to the CA that
/// issued them (looked up in the store); an unknown serial, and every key id, is listed under
/// both CAs, which is safe since serials are never reused across them.
pub fn build_krl(store: &dyn Store, keys: &CaKeys, now: u64) -> Result<Krl, StoreError> {
    let revocations = store.revocations()?;
    let mut user = CertRevocations {
        ca_key: Some(keys.user.key_data().clone()),
        ..CertRevocations::default()
    };
    let mut host = CertRevocations {
        ca_key: Some(keys.host.key_data().clone()),
        ..CertRevocations::default()
    };
    let mut explicit = Vec::new();
    for revocation in &revocations {
        match &revocation.item {
            Revoked::Serial(serial) => match store.issued(*serial)?.map(|c| c.cert_type) {
                Some(kind) if kind == "host" => {
                    host.serials.insert(*serial);
                }
                Some(_) => {
                    user.serials.insert(*serial);
                }
                None => {
                    user.serials.insert(*serial);
                    host.serials.insert(*serial);
                }
            },
            Revoked::KeyId(id) => {
                user.key_ids.insert(id.clone());
                host.key_ids.insert(id.clone());
            }
            Revoked::Key(line) => {
                if let Ok(key) = PublicKey::from_openssh(line) {
                    explicit.push(key.key_data().clone());
                }
            }
        }
    }
    let certificates = [user, host]
        .into_iter()
        .filter(|s| !s.serials.is_empty() || !s.key_ids.is_empty())
        .collect();
    Ok(Krl {
        version: revocations.len() as u64,
        generated_date: now,
        comment: "jitssh ssh-ca".to_string(),
        certificates,
        keys: explicit,
        sha1_fingerprints: Vec::new(),
        sha256_fingerprints: Vec::new(),
    })
}
