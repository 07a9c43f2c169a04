//! What a revocation check costs with no revocations and with 10,000 in the store.
//!
//! `cargo bench -p ssh-ca --bench revocation`. `admission` is the check the all-in-one
//! bastion makes at every login and every `session.revocation_check` for every live session
//! (`Authority::revoked_reason`); `api login` is the CA API's refusal of revoked keys
//! (`Authority::revoked_subject`); `remote` is the remote-CA bastion's check against the KRL
//! it fetched. `before: read all + scan` re-creates the check as it was before the cache
//! (every revocation selected, JSON-decoded and each revoked key re-parsed), for comparison.

// criterion's macros generate public functions without docs.
#![allow(missing_docs)]

use std::collections::BTreeMap;

use criterion::{Criterion, criterion_group, criterion_main};
use jitssh_authority::authority::{Authority, OpenOptions};
use jitssh_authority::config::CaConfig;
use jitssh_core::cert::CertSpec;
use jitssh_core::keys::CaSigner;
use jitssh_core::revocation::RevocationSet;
use jitssh_core::ssh_key::certificate::CertType;
use jitssh_core::ssh_key::{Certificate, PublicKey};
use jitssh_core::store::{Revocation, Revoked, SqliteStore, Store};

/// Revocations in the loaded store: a third each by serial, key id and key.
const LOADED: u64 = 10_000;

fn certificate(ca: &CaSigner, subject: &CaSigner) -> Certificate {
    CertSpec {
        cert_type: CertType::User,
        subject: subject.key_data().clone(),
        key_id: "alice".into(),
        principals: vec!["alice".into()],
        valid_after: 1,
        valid_before: u64::MAX,
        critical_options: BTreeMap::new(),
        extensions: BTreeMap::new(),
    }
    .sign(LOADED * 10, ca)
    .expect("sign")
}

/// An authority in `dir` whose store holds `count` revocations, none of which names alice.
fn authority(dir: &std::path::Path, count: u64) -> Authority {
    let config_path = dir.join("ca.toml");
    std::fs::write(&config_path, "data_dir = \"data\"\n").expect("config");
    let config = CaConfig::load(Some(&config_path)).expect("config");
    let options = OpenOptions {
        init_keys: true,
        serial_block: 256,
    };
    let authority = Authority::open(config.clone(), options).expect("authority");
    // Straight into the store (another connection, as `ssh-ca revoke` would be): going
    // through `Authority::revoke` would rewrite the KRL file 10,000 times.
    let store = SqliteStore::open(&config.store_path()).expect("store");
    for n in 0..count {
        let item = match n % 3 {
            0 => Revoked::Serial(n + 1),
            1 => Revoked::KeyId(format!("user{n}")),
            _ => Revoked::Key(CaSigner::generate("revoked").public_line()),
        };
        let revocation = Revocation {
            item,
            reason: Some("bench".into()),
            revoked_by: "operator".into(),
            revoked_at: 1,
        };
        store.revoke(&revocation).expect("revoke");
    }
    authority
}

/// The check as it was before the cache: every revocation read and decoded, keys re-parsed.
fn read_all_and_scan(store: &SqliteStore, cert: &Certificate) -> bool {
    store
        .revocations()
        .expect("revocations")
        .iter()
        .any(|r| match &r.item {
            Revoked::Serial(s) => *s == cert.serial(),
            Revoked::KeyId(id) => id == cert.key_id(),
            Revoked::Key(line) => {
                PublicKey::from_openssh(line).is_ok_and(|k| k.key_data() == cert.public_key())
            }
        })
}

fn revocation_checks(c: &mut Criterion) {
    let alice = CaSigner::generate("alice");
    for count in [0, 100, LOADED] {
        let dir = tempfile::tempdir().expect("tempdir");
        let authority = authority(dir.path(), count);
        let cert = certificate(&authority.keys().user, &alice);
        let mut group = c.benchmark_group(format!("revocations={count}"));
        group.bench_function("admission (Authority::revoked_reason)", |b| {
            b.iter(|| {
                assert!(authority.revoked_reason(&cert).expect("check").is_none());
            })
        });
        group.bench_function("api login (Authority::revoked_subject)", |b| {
            b.iter(|| {
                let refusal = authority
                    .revoked_subject(alice.key_data(), Some("alice"))
                    .expect("check");
                assert!(refusal.is_none());
            })
        });
        let remote = RevocationSet::from_krl(&authority.krl().expect("krl"));
        group.bench_function("remote (KRL revocation set)", |b| {
            b.iter(|| assert!(remote.revoked_reason(&cert).is_none()))
        });
        let store = SqliteStore::open(&dir.path().join("data").join("store.db")).expect("store");
        group.sample_size(10);
        group.bench_function("before: read all + scan", |b| {
            b.iter(|| assert!(!read_all_and_scan(&store, &cert)))
        });
        group.finish();
    }
}

criterion_group!(benches, revocation_checks);
criterion_main!(benches);
