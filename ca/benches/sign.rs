//! Certificate signing throughput, in process, on one core.
//!
//! `cargo bench -p ssh-ca --bench sign`. Criterion prints elements/s = certificates per second.
//! `sign` is the certificate alone (encode + ed25519 signature); `issue` is the authority's
//! full path (durable serial lease, store record, fsynced audit record).

// criterion's macros generate public functions without docs.
#![allow(missing_docs)]

use std::collections::BTreeMap;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use jitssh_authority::authority::{Authority, OpenOptions};
use jitssh_authority::config::CaConfig;
use jitssh_core::cert::CertSpec;
use jitssh_core::keys::CaSigner;
use jitssh_core::ssh_key::PublicKey;
use jitssh_core::ssh_key::certificate::CertType;

const KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIH9IXZUqz/ePREb8+Ij4fs6tI6Qe7x5eBNYb+/WV9ni6 alice";

fn spec() -> CertSpec {
    let now = jitssh_core::unix_now();
    CertSpec {
        cert_type: CertType::User,
        subject: PublicKey::from_openssh(KEY)
            .expect("key")
            .key_data()
            .clone(),
        key_id: "alice".into(),
        principals: vec!["alice".into(), "deploy".into()],
        valid_after: now - 120,
        valid_before: now + 3600,
        critical_options: BTreeMap::new(),
        extensions: [
            "permit-pty",
            "permit-port-forwarding",
            "permit-agent-forwarding",
        ]
        .iter()
        .map(|e| (e.to_string(), String::new()))
        .chain([(
            "jit-grant@jitssh".to_string(),
            r#"{"roles":[{"name":"dev","logins":["alice","deploy"],"hosts":["web*"]}]}"#
                .to_string(),
        )])
        .collect(),
    }
}

fn signing(c: &mut Criterion) {
    let ca = CaSigner::generate("bench");
    let spec = spec();
    let mut group = c.benchmark_group("certificates");
    group.throughput(Throughput::Elements(1));
    let mut serial = 0u64;
    group.bench_function("sign", |b| {
        b.iter(|| {
            serial += 1;
            spec.sign(serial, &ca).expect("sign")
        })
    });

    let dir = tempfile::tempdir().expect("tempdir");
    let config_path = dir.path().join("ca.toml");
    std::fs::write(&config_path, "data_dir = \"data\"\n").expect("config");
    let config = CaConfig::load(Some(&config_path)).expect("config");
    let authority = Authority::open(
        config,
        OpenOptions {
            init_keys: true,
            serial_block: 256,
        },
    )
    .expect("authority");
    group.sample_size(20);
    group.bench_function("issue (store + fsynced audit)", |b| {
        b.iter(|| {
            authority
                .issue(spec.clone(), "bench", None, serde_json::Value::Null)
                .expect("issue")
        })
    });
    group.finish();
}

criterion_group!(benches, signing);
criterion_main!(benches);
