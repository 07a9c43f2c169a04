//! From the store's revocations to a KRL that sshd enforces, and to revocation checks.

use jitssh_shared::keys::CaKeys;
use jitssh_shared::krl::{CertRevocations, Krl};
use jitssh_shared::ssh_key::public::KeyData;
use jitssh_shared::ssh_key::{Certificate, HashAlg, PublicKey};
use jitssh_shared::store::{Revocation, Revoked, Store, StoreError};

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

/// Why `cert` is revoked, if any revocation names its serial, key id or key.
pub fn revoked_reason(revocations: &[Revocation], cert: &Certificate) -> Option<String> {
    let subject = cert.public_key();
    for revocation in revocations {
        let hit = match &revocation.item {
            Revoked::Serial(serial) => {
                (*serial == cert.serial()).then(|| format!("serial {serial}"))
            }
            Revoked::KeyId(id) => (id == cert.key_id()).then(|| format!("key id {id:?}")),
            Revoked::Key(_) => None,
        };
        if let Some(what) = hit {
            return Some(with_reason(what, revocation));
        }
    }
    revocations
        .iter()
        .find_map(|revocation| match &revocation.item {
            Revoked::Key(line) => PublicKey::from_openssh(line)
                .ok()
                .filter(|key| key.key_data() == subject)
                .map(|_| with_reason("key".to_string(), revocation)),
            _ => None,
        })
}

fn with_reason(what: String, revocation: &Revocation) -> String {
    match &revocation.reason {
        Some(reason) => format!("certificate {what} revoked: {reason}"),
        None => format!("certificate {what} revoked"),
    }
}

/// Why `key` may neither log in to the CA nor be certified, if a revocation names the key
/// itself or (when given) the key id the certificate would carry. A certificate for such a key
/// or key id would be dead on arrival at every sshd that has the KRL, and a revoked key is no
/// longer proof of anyone's identity.
pub fn key_refusal(
    revocations: &[Revocation],
    key: &KeyData,
    key_id: Option<&str>,
) -> Option<String> {
    revocations.iter().find_map(|revocation| {
        let what = match &revocation.item {
            Revoked::Key(line) => PublicKey::from_openssh(line)
                .ok()
                .filter(|revoked| revoked.key_data() == key)
                .map(|_| format!("key {} is revoked", key.fingerprint(HashAlg::Sha256))),
            Revoked::KeyId(id) => {
                (Some(id.as_str()) == key_id).then(|| format!("key id {id:?} is revoked"))
            }
            Revoked::Serial(_) => None,
        }?;
        Some(match &revocation.reason {
            Some(reason) => format!("{what}: {reason}"),
            None => what,
        })
    })
}
