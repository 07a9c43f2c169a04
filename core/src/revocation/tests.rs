use super::*;
use crate::cert::CertSpec;
use crate::keys::CaSigner;
use crate::krl::CertRevocations;
use crate::ssh_key::certificate::CertType;
use crate::store::SqliteStore;
use std::collections::BTreeMap;

fn key(comment: &str) -> CaSigner {
    CaSigner::generate(comment)
}

fn cert(ca: &CaSigner, subject: &CaSigner, serial: u64, key_id: &str) -> Certificate {
    CertSpec {
        cert_type: CertType::User,
        subject: subject.key_data().clone(),
        key_id: key_id.into(),
        principals: vec!["root".into()],
        valid_after: 1,
        valid_before: u64::MAX,
        critical_options: BTreeMap::new(),
        extensions: BTreeMap::new(),
    }
    .sign(serial, ca)
    .unwrap()
}

fn revocation(item: Revoked, reason: Option<&str>) -> Revocation {
    Revocation {
        item,
        reason: reason.map(str::to_string),
        revoked_by: "operator".into(),
        revoked_at: 5,
    }
}

#[test]
fn store_revocations_match_by_serial_key_id_and_key_with_reasons() {
    let ca = key("ca");
    let alice = key("alice");
    let bob = key("bob");
    let mut set = RevocationSet::default();
    assert_eq!(set.revoked_reason(&cert(&ca, &alice, 7, "alice")), None);
    set.add(&revocation(Revoked::Serial(7), Some("lost")));
    set.add(&revocation(Revoked::KeyId("carol".into()), None));
    set.add(&revocation(Revoked::Key(bob.public_line()), Some("stolen")));
    set.add(&revocation(Revoked::Key("not a key".into()), None));
    assert_eq!(set.len(), 3, "an unparsable key line matches nothing");
    assert_eq!(
        set.revoked_reason(&cert(&ca, &alice, 7, "alice"))
            .as_deref(),
        Some("certificate serial 7 revoked: lost")
    );
    assert_eq!(
        set.revoked_reason(&cert(&ca, &alice, 8, "carol"))
            .as_deref(),
        Some("certificate key id \"carol\" revoked")
    );
    assert_eq!(
        set.revoked_reason(&cert(&ca, &bob, 9, "bob")).as_deref(),
        Some("certificate key revoked: stolen")
    );
    assert_eq!(set.revoked_reason(&cert(&ca, &alice, 0, "alice")), None);
    assert_eq!(set.revoked_reason(&cert(&ca, &alice, 10, "alice")), None);
    let refusal = set.key_refusal(bob.key_data(), None).unwrap();
    assert!(refusal.ends_with("is revoked: stolen"), "{refusal}");
    assert_eq!(
        set.key_refusal(alice.key_data(), Some("carol")).as_deref(),
        Some("key id \"carol\" is revoked")
    );
    assert_eq!(set.key_refusal(alice.key_data(), Some("alice")), None);
}

#[test]
fn a_krl_set_answers_as_the_krl_does() {
    let ca = key("ca");
    let other_ca = key("other");
    let alice = key("alice");
    let bob = key("bob");
    let krl = Krl {
        version: 4,
        certificates: vec![CertRevocations {
            ca_key: Some(ca.key_data().clone()),
            serials: [7].into(),
            key_ids: ["carol".to_string()].into(),
        }],
        keys: vec![bob.key_data().clone()],
        ..Krl::default()
    };
    let set = RevocationSet::from_krl(&krl);
    assert_eq!(set.generation(), 4);
    let cases = [
        cert(&ca, &alice, 7, "alice"),
        cert(&other_ca, &alice, 7, "alice"),
        cert(&ca, &alice, 8, "carol"),
        cert(&ca, &bob, 9, "bob"),
        cert(&ca, &alice, 10, "alice"),
        cert(&bob, &alice, 11, "alice"),
    ];
    for cert in &cases {
        assert_eq!(
            set.revoked_reason(cert).is_some(),
            krl.certificate_revoked(cert).is_some(),
            "serial {} key id {}",
            cert.serial(),
            cert.key_id()
        );
    }
}

#[test]
fn the_cache_follows_revocations_made_through_another_connection() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let ours = SqliteStore::open(&path).unwrap();
    // Another process's connection to the same database (as `ssh-ca revoke` would be).
    let theirs = SqliteStore::open(&path).unwrap();
    let ca = key("ca");
    let alice = key("alice");
    let cache = RevocationCache::default();
    let first = cache.current(&ours).unwrap();
    assert!(first.is_empty());
    assert!(
        Arc::ptr_eq(&first, &cache.current(&ours).unwrap()),
        "nothing changed: the same set, not a rebuild"
    );
    assert!(
        theirs
            .revoke(&revocation(Revoked::Serial(7), None))
            .unwrap()
    );
    let second = cache.current(&ours).unwrap();
    assert_eq!(second.len(), 1);
    assert!(second.revoked_reason(&cert(&ca, &alice, 7, "a")).is_some());
    // A repeated revocation changes nothing, not even the generation.
    assert!(
        !theirs
            .revoke(&revocation(Revoked::Serial(7), None))
            .unwrap()
    );
    assert!(Arc::ptr_eq(&second, &cache.current(&ours).unwrap()));
    assert!(
        theirs
            .revoke(&revocation(Revoked::KeyId("a".into()), None))
            .unwrap()
    );
    let third = cache.current(&ours).unwrap();
    assert_eq!(third.len(), 2);
    assert_eq!(third.generation(), 2);
    assert!(third.revoked_reason(&cert(&ca, &alice, 8, "a")).is_some());
}
