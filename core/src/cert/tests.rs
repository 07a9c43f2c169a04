use super::*;
use crate::keys::CaSigner;
use crate::ssh_key::PublicKey;
use std::net::Ipv4Addr;

const NOW: u64 = 1_795_392_000;

fn subject() -> KeyData {
    PublicKey::from_openssh(
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIH9IXZUqz/ePREb8+Ij4fs6tI6Qe7x5eBNYb+/WV9ni6 alice",
    )
    .unwrap()
    .key_data()
    .clone()
}

fn spec(cert_type: CertType) -> CertSpec {
    CertSpec {
        cert_type,
        subject: subject(),
        key_id: "alice".into(),
        principals: vec!["deploy".into(), "alice".into()],
        valid_after: NOW - 60,
        valid_before: NOW + 3600,
        critical_options: BTreeMap::new(),
        extensions: BTreeMap::from([("permit-pty".to_string(), String::new())]),
    }
}

struct Fixture {
    user_ca: CaSigner,
    other_ca: CaSigner,
}

fn fixture() -> Fixture {
    Fixture {
        user_ca: CaSigner::generate("user-ca"),
        other_ca: CaSigner::generate("other"),
    }
}

fn expect<'a>(cas: &'a [KeyData], principal: &'a str) -> Expectations<'a> {
    Expectations {
        trusted_cas: cas,
        cert_type: CertType::User,
        now: NOW,
        principal,
        peer: Some(IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3))),
    }
}

#[test]
fn signed_certificate_carries_the_spec() {
    let f = fixture();
    let cert = spec(CertType::User).sign(42, &f.user_ca).unwrap();
    assert_eq!(cert.serial(), 42);
    assert_eq!(cert.key_id(), "alice");
    assert_eq!(cert.valid_principals(), ["deploy", "alice"]);
    assert_eq!(cert.valid_after(), NOW - 60);
    assert_eq!(cert.valid_before(), NOW + 3600);
    assert!(cert.extensions().contains_key("permit-pty"));
    let cas = [f.user_ca.key_data().clone()];
    assert_eq!(verify(&cert, &expect(&cas, "deploy")), Ok(()));
}

#[test]
fn empty_principals_and_reversed_validity_are_refused() {
    let f = fixture();
    let mut s = spec(CertType::User);
    s.principals.clear();
    assert!(matches!(
        s.sign(1, &f.user_ca),
        Err(CertError::EmptyPrincipals)
    ));
    let mut s = spec(CertType::User);
    s.valid_before = s.valid_after;
    assert!(matches!(
        s.sign(1, &f.user_ca),
        Err(CertError::BadValidity { .. })
    ));
    let mut s = spec(CertType::User);
    s.principals = vec!["a,b".into()];
    assert!(matches!(
        s.sign(1, &f.user_ca),
        Err(CertError::BadPrincipal(_))
    ));
}

#[test]
fn untrusted_ca_is_rejected() {
    let f = fixture();
    let cert = spec(CertType::User).sign(1, &f.other_ca).unwrap();
    let cas = [f.user_ca.key_data().clone()];
    assert!(matches!(
        verify(&cert, &expect(&cas, "deploy")),
        Err(Rejection::UntrustedCa(_))
    ));
}

#[test]
fn host_certificate_is_not_a_user_certificate() {
    let f = fixture();
    let cert = spec(CertType::Host).sign(1, &f.user_ca).unwrap();
    let cas = [f.user_ca.key_data().clone()];
    assert_eq!(
        verify(&cert, &expect(&cas, "deploy")),
        Err(Rejection::WrongType {
            expected: "user",
            got: "host"
        })
    );
}

#[test]
fn validity_window_is_enforced_at_both_ends() {
    let f = fixture();
    let cert = spec(CertType::User).sign(1, &f.user_ca).unwrap();
    let cas = [f.user_ca.key_data().clone()];
    let mut want = expect(&cas, "deploy");
    want.now = NOW - 61;
    assert_eq!(verify(&cert, &want), Err(Rejection::NotYetValid(NOW - 60)));
    want.now = NOW + 3600;
    assert_eq!(verify(&cert, &want), Err(Rejection::Expired(NOW + 3600)));
    want.now = NOW + 3599;
    assert_eq!(verify(&cert, &want), Ok(()));
}

#[test]
fn login_must_be_a_principal() {
    let f = fixture();
    let cert = spec(CertType::User).sign(1, &f.user_ca).unwrap();
    let cas = [f.user_ca.key_data().clone()];
    assert!(matches!(
        verify(&cert, &expect(&cas, "root")),
        Err(Rejection::PrincipalNotAllowed(..))
    ));
}

#[test]
fn tampered_certificate_fails_signature() {
    let f = fixture();
    let cert = spec(CertType::User).sign(1, &f.user_ca).unwrap();
    let text = cert.to_openssh().unwrap();
    // Re-sign a different spec, then splice the old signature in: simplest tamper is to
    // change key id bytes in the encoded blob.
    let mut bytes = cert.to_bytes().unwrap();
    let needle = b"alice";
    let at = bytes
        .windows(needle.len())
        .position(|w| w == needle)
        .unwrap();
    bytes[at] = b'A';
    let tampered = Certificate::from_bytes(&bytes).unwrap();
    let cas = [f.user_ca.key_data().clone()];
    assert_eq!(
        verify(&tampered, &expect(&cas, "deploy")),
        Err(Rejection::BadSignature)
    );
    assert!(text.starts_with("ssh-ed25519-cert-v01@openssh.com "));
}

#[test]
fn unknown_critical_option_is_rejected() {
    let f = fixture();
    let mut s = spec(CertType::User);
    s.critical_options
        .insert("verify-required".into(), String::new());
    let cert = s.sign(1, &f.user_ca).unwrap();
    let cas = [f.user_ca.key_data().clone()];
    assert_eq!(
        verify(&cert, &expect(&cas, "deploy")),
        Err(Rejection::UnknownCriticalOption("verify-required".into()))
    );
}

#[test]
fn source_address_is_enforced() {
    let f = fixture();
    let mut s = spec(CertType::User);
    s.critical_options
        .insert("source-address".into(), "192.168.0.0/16,10.1.2.3".into());
    let cert = s.sign(1, &f.user_ca).unwrap();
    let cas = [f.user_ca.key_data().clone()];
    let mut want = expect(&cas, "deploy");
    assert_eq!(verify(&cert, &want), Ok(()));
    want.peer = Some("::ffff:10.1.2.3".parse().unwrap());
    assert_eq!(verify(&cert, &want), Ok(()), "v4-mapped v6 peer");
    want.peer = Some("10.1.2.4".parse().unwrap());
    assert!(matches!(
        verify(&cert, &want),
        Err(Rejection::SourceAddress(..))
    ));
    want.peer = None;
    assert!(matches!(
        verify(&cert, &want),
        Err(Rejection::SourceAddress(..))
    ));
    assert!(check_source_address("garbage", Some("10.0.0.1".parse().unwrap())).is_err());
}

#[test]
fn grant_claims_round_trip_and_decide_targets() {
    let claims = GrantClaims {
        roles: vec![
            RoleGrant {
                name: "dev".into(),
                logins: vec!["deploy".into()],
                hosts: vec!["web*".into(), "!web-secret".into()],
                auditor: false,
            },
            RoleGrant {
                name: "ops".into(),
                logins: vec!["root".into()],
                hosts: vec!["db*".into()],
                auditor: false,
            },
        ],
    };
    let f = fixture();
    let mut s = spec(CertType::User);
    s.extensions.insert(
        GRANT_EXTENSION.into(),
        serde_json::to_string(&claims).unwrap(),
    );
    let cert = s.sign(1, &f.user_ca).unwrap();
    let read = GrantClaims::from_certificate(&cert).unwrap().unwrap();
    assert_eq!(read, claims);
    assert!(read.allows("deploy", "web01"));
    assert!(!read.allows("deploy", "web-secret"));
    assert!(
        !read.allows("root", "web01"),
        "a login reaches only its own role's hosts"
    );
    assert!(read.allows("root", "db1"));
}

#[test]
fn a_certificate_without_principals_is_refused_not_read_as_anyone() {
    let f = fixture();
    let mut builder = Builder::new(vec![0u8; 16], subject(), NOW - 60, NOW + 60).unwrap();
    builder.cert_type(CertType::User).unwrap();
    builder.all_principals_valid().unwrap();
    let cert = builder.sign(&f.user_ca).unwrap();
    let cas = [f.user_ca.key_data().clone()];
    assert_eq!(
        verify(&cert, &expect(&cas, "root")),
        Err(Rejection::NoPrincipals)
    );
}
