//! The store's contracts, run against both backends: SQLite (the default) and PostgreSQL
//! (a real server from the harness, [`jitssh_tests::Postgres`]). Each case is one function
//! over the store traits; the macro at the bottom makes a test per backend.

use std::collections::HashSet;
use std::sync::Arc;

use jitssh_core::store::{
    AccessRequest, AuditIndex, AuditQuery, CaKeyFingerprints, ChainHead, HeadOutcome, HostRecord,
    HostStore, IndexedRecord, IssuedCert, RequestDecision, RequestStore, Revocation, Revoked,
    SessionEnd, SessionFilter, SessionIndex, SessionRecord, SqliteStore, Store, TokenStore,
};
use jitssh_postgres::{PgOptions, PgStore};
use jitssh_tests::Postgres;

trait Ca: Store + RequestStore + HostStore + TokenStore + AuditIndex {}
impl<T: Store + RequestStore + HostStore + TokenStore + AuditIndex> Ca for T {}

/// One database of either kind; `ca()` opens another handle on it (another "process").
enum Backend {
    Sqlite(tempfile::TempDir),
    /// The server lives as long as the backend.
    Postgres {
        _server: Postgres,
        url: String,
    },
}

impl Backend {
    fn sqlite() -> Backend {
        Backend::Sqlite(tempfile::tempdir().unwrap())
    }

    fn postgres() -> Backend {
        let mut pg = Postgres::start();
        let url = pg.create_database();
        Backend::Postgres { _server: pg, url }
    }

    fn ca_owned_by(&self, owner: &str) -> Arc<dyn Ca> {
        match self {
            Backend::Sqlite(dir) => Arc::new(SqliteStore::open(&dir.path().join("s.db")).unwrap()),
            Backend::Postgres { url, .. } => {
                let options = PgOptions {
                    owner: owner.into(),
                    ..PgOptions::default()
                };
                Arc::new(PgStore::open(url, &options).unwrap().0)
            }
        }
    }

    fn ca(&self) -> Arc<dyn Ca> {
        self.ca_owned_by("test")
    }

    fn index(&self) -> Arc<dyn SessionIndex> {
        match self {
            Backend::Sqlite(dir) => {
                Arc::new(SqliteStore::open_session_index(&dir.path().join("i.db")).unwrap())
            }
            Backend::Postgres { url, .. } => Arc::new(
                PgStore::open_session_index(url, &PgOptions::default())
                    .unwrap()
                    .0,
            ),
        }
    }
}

fn issued(serial: u64) -> IssuedCert {
    IssuedCert {
        serial,
        cert_type: "user".into(),
        key_id: "alice".into(),
        principals: vec!["alice".into()],
        valid_after: 1,
        valid_before: 2,
        requested_by: "alice".into(),
        reason: Some("INC-1".into()),
        details: serde_json::json!({"roles": ["dev"]}),
        subject_fingerprint: "SHA256:x".into(),
        certificate: "ssh-ed25519-cert-v01@openssh.com AAAA".into(),
        issued_at: 3,
    }
}

fn serials_are_unique_and_increasing_across_threads_and_reopen(b: &Backend) {
    let first = b.ca();
    let second = b.ca(); // another instance on the same database
    let threads: Vec<_> = (0..8)
        .map(|i| {
            let store = if i % 2 == 0 {
                first.clone()
            } else {
                second.clone()
            };
            std::thread::spawn(move || {
                (0..50)
                    .map(|_| store.reserve_serials(1).unwrap().start)
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut all = HashSet::new();
    for t in threads {
        for serial in t.join().unwrap() {
            assert!(all.insert(serial), "serial {serial} handed out twice");
        }
    }
    assert_eq!(all.len(), 400);
    let max = *all.iter().max().unwrap();
    drop((first, second));
    let other = b.ca();
    let block = other.reserve_serials(100).unwrap();
    assert!(block.start > max);
    assert_eq!(block.end - block.start, 100);
    assert!(other.reserve_serials(1).unwrap().start >= block.end);
}

fn issued_certs_round_trip(b: &Backend) {
    let store = b.ca();
    store.record_issued(&issued(7)).unwrap();
    store.record_issued(&issued(9)).unwrap();
    assert_eq!(store.issued(7).unwrap(), Some(issued(7)));
    assert_eq!(store.issued(8).unwrap(), None);
    assert!(
        store.record_issued(&issued(7)).is_err(),
        "a serial is recorded once"
    );
    let serials: Vec<u64> = store
        .list_issued(10)
        .unwrap()
        .iter()
        .map(|c| c.serial)
        .collect();
    assert_eq!(serials, [9, 7]);
    assert_eq!(store.issued_count().unwrap(), 2);
    let mut glass = issued(11);
    glass.details = serde_json::json!({"break_glass": true});
    store.record_issued(&glass).unwrap();
    let found: Vec<u64> = store
        .list_break_glass(10)
        .unwrap()
        .iter()
        .map(|c| c.serial)
        .collect();
    assert_eq!(found, [11]);
}

fn pending_certificates_settle_and_stay_pending_until_then(b: &Backend) {
    let store = b.ca();
    store
        .record_issued_pending(&[issued(20), issued(21), issued(22)])
        .unwrap();
    let pending = |s: &Arc<dyn Ca>| -> Vec<u64> {
        s.pending_issued()
            .unwrap()
            .iter()
            .map(|c| c.serial)
            .collect()
    };
    assert_eq!(pending(&store), [20, 21, 22]);
    store.settle_issued(&[20, 22], true).unwrap();
    store.settle_issued(&[21], false).unwrap();
    assert!(pending(&store).is_empty());
    assert_eq!(
        store.issued(21).unwrap(),
        Some(issued(21)),
        "kept, unreleased"
    );
}

fn revocations_are_deduplicated_ordered_and_counted(b: &Backend) {
    let store = b.ca();
    let rev = |item| Revocation {
        item,
        reason: None,
        revoked_by: "operator".into(),
        revoked_at: 5,
    };
    assert_eq!(store.revocation_generation().unwrap(), 0);
    assert!(store.revoke(&rev(Revoked::Serial(3))).unwrap());
    assert!(store.revoke(&rev(Revoked::KeyId("bob".into()))).unwrap());
    assert!(!store.revoke(&rev(Revoked::Serial(3))).unwrap());
    assert_eq!(
        store.revocation_generation().unwrap(),
        2,
        "a duplicate adds none"
    );
    let items: Vec<Revoked> = store
        .revocations()
        .unwrap()
        .into_iter()
        .map(|r| r.item)
        .collect();
    assert_eq!(items, [Revoked::Serial(3), Revoked::KeyId("bob".into())]);
    let page = store.revocations_since(0).unwrap();
    assert_eq!((page.revocations.len(), page.generation), (2, 2));
    // Another instance revokes: this one sees it through the generation and the cursor.
    let other = b.ca();
    assert!(other.revoke(&rev(Revoked::Serial(9))).unwrap());
    assert_eq!(store.revocation_generation().unwrap(), 3);
    let next = store.revocations_since(page.cursor).unwrap();
    assert_eq!(next.revocations, [rev(Revoked::Serial(9))]);
    assert_eq!(next.generation, 3);
}

/// Revokers on two instances at once, and a reader following with its cursor: the reader
/// ends with every revocation, none skipped (ids grow in commit order).
fn a_reader_following_concurrent_revokers_misses_none(b: &Backend) {
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let store = b.ca();
            std::thread::spawn(move || {
                for i in 0..50u64 {
                    let rev = Revocation {
                        item: Revoked::Serial(w * 1000 + i),
                        reason: None,
                        revoked_by: format!("writer {w}"),
                        revoked_at: 1,
                    };
                    assert!(store.revoke(&rev).unwrap());
                }
            })
        })
        .collect();
    let reader = b.ca();
    let mut seen = HashSet::new();
    let mut cursor = 0;
    let mut follow = |seen: &mut HashSet<u64>| {
        let page = reader.revocations_since(cursor).unwrap();
        cursor = page.cursor;
        for r in page.revocations {
            let Revoked::Serial(s) = r.item else {
                panic!("unexpected {:?}", r.item)
            };
            assert!(seen.insert(s), "revocation {s} read twice");
        }
        page.generation
    };
    while writers.iter().any(|w| !w.is_finished()) {
        follow(&mut seen);
    }
    for w in writers {
        w.join().unwrap();
    }
    let generation = follow(&mut seen);
    assert_eq!(generation, 200);
    assert_eq!(seen.len(), 200, "the cursor skipped revocations");
}

fn the_target_ca_is_recorded_once_next_to_the_same_user_and_host_ca(b: &Backend) {
    let store = b.ca();
    let keys = |user: &str, target: Option<&str>| CaKeyFingerprints {
        user: user.into(),
        host: "h".into(),
        target: target.map(str::to_string),
    };
    assert_eq!(store.ca_keys().unwrap(), None);
    assert_eq!(
        store.record_ca_keys(&keys("u", None)).unwrap(),
        keys("u", None)
    );
    assert_eq!(
        store.record_ca_keys(&keys("u", Some("t"))).unwrap(),
        keys("u", Some("t"))
    );
    assert_eq!(
        store.record_ca_keys(&keys("u", Some("t2"))).unwrap(),
        keys("u", Some("t"))
    );
    assert_eq!(
        store.record_ca_keys(&keys("x", Some("t"))).unwrap(),
        keys("u", Some("t"))
    );
}

fn request(id: &str) -> AccessRequest {
    AccessRequest {
        id: id.into(),
        requester: "alice".into(),
        role: "prod".into(),
        ttl_secs: 600,
        reason: "CHG-1".into(),
        created_at: 100,
        decide_by: 200,
        approvals_needed: 2,
        approvals: vec![],
        denial: None,
        approved_at: None,
        certificates_issued: 0,
    }
}

fn request_updates_are_atomic_and_refusals_save_nothing(b: &Backend) {
    let store = b.ca();
    store.create_request(&request("r1")).unwrap();
    let refused = store
        .update_request("r1", &mut |r| {
            r.reason = "changed".into();
            Err("nope".into())
        })
        .unwrap();
    assert_eq!(refused, Some(Err("nope".into())));
    assert_eq!(store.request("r1").unwrap().unwrap().reason, "CHG-1");
    // Approvers on two instances at once: every approval is kept.
    let approvers: Vec<_> = (0..8)
        .map(|i| {
            let store = b.ca();
            std::thread::spawn(move || {
                store
                    .update_request("r1", &mut |r| {
                        r.approvals.push(RequestDecision {
                            by: format!("approver{i}"),
                            at: 5,
                            reason: None,
                        });
                        Ok(())
                    })
                    .unwrap()
                    .unwrap()
                    .unwrap();
            })
        })
        .collect();
    for a in approvers {
        a.join().unwrap();
    }
    assert_eq!(store.request("r1").unwrap().unwrap().approvals.len(), 8);
    assert_eq!(store.update_request("nope", &mut |_| Ok(())).unwrap(), None);
    store.create_request(&request("r2")).unwrap();
    assert_eq!(store.requests(10).unwrap().len(), 2);
    assert!(
        store.create_request(&request("r2")).is_err(),
        "ids are unique"
    );
}

fn host(name: &str, token: &str) -> HostRecord {
    HostRecord {
        name: name.into(),
        aliases: vec![format!("{name}.example.com")],
        ttl_secs: 3600,
        key: None,
        token_sha256: Some(token.into()),
        token_expires_at: 1000,
        created_at: 1,
    }
}

fn a_join_token_joins_once_and_only_before_expiry(b: &Backend) {
    let store = b.ca();
    assert!(store.add_host(&host("web01", "t1")).unwrap());
    assert!(!store.add_host(&host("web01", "t9")).unwrap(), "name taken");
    assert!(store.add_host(&host("web02", "t2")).unwrap());
    assert_eq!(store.join_host("t2", "ssh-ed25519 K2", 1000).unwrap(), None);
    let joined = store
        .join_host("t1", "ssh-ed25519 K1", 10)
        .unwrap()
        .unwrap();
    assert_eq!(joined.key.as_deref(), Some("ssh-ed25519 K1"));
    assert_eq!(b.ca().join_host("t1", "ssh-ed25519 K3", 11).unwrap(), None);
    assert_eq!(
        store.host_by_key("ssh-ed25519 K1").unwrap().unwrap().name,
        "web01"
    );
    assert!(store.remove_host("web01").unwrap());
    assert!(!store.remove_host("web01").unwrap());
    assert_eq!(store.host("web02").unwrap().unwrap().name, "web02");
    assert_eq!(store.hosts().unwrap().len(), 1);
}

fn a_token_id_is_spent_once_until_it_expires(b: &Backend) {
    let store = b.ca();
    assert!(store.spend_token("https://ci", "j1", 200, 100).unwrap());
    assert!(!b.ca().spend_token("https://ci", "j1", 200, 150).unwrap());
    assert!(store.spend_token("https://other", "j1", 200, 150).unwrap());
    assert!(store.spend_token("https://ci", "j1", 400, 201).unwrap());
}

fn session(id: &str, user: &str, target: &str, started_at: u64) -> SessionRecord {
    SessionRecord {
        id: id.into(),
        user: user.into(),
        key_id: format!("{user}@example"),
        cert_serial: 42,
        client_addr: "192.0.2.7:50000".into(),
        target: target.into(),
        login: "deploy".into(),
        started_at,
        ended_at: None,
        bytes_in: 0,
        bytes_out: 0,
        exit_status: None,
        end_reason: None,
        recording: format!("/rec/{id}"),
    }
}

fn end(ended_at: u64) -> SessionEnd {
    SessionEnd {
        ended_at,
        bytes_in: 10,
        bytes_out: 2000,
        exit_status: Some(3),
        end_reason: "client closed".into(),
    }
}

fn the_session_index_records_ends_once_and_filters(b: &Backend) {
    let index = b.index();
    let mut r = session("s1", "alice", "web01", 100);
    r.cert_serial = u64::MAX;
    index.insert_session(&r).unwrap();
    assert_eq!(index.session("s1").unwrap(), Some(r.clone()));
    assert!(index.insert_session(&r).is_err(), "ids are unique");
    assert!(index.end_session("s1", &end(160)).unwrap());
    assert!(
        !index.end_session("s1", &end(999)).unwrap(),
        "the first end wins"
    );
    assert!(!index.end_session("nope", &end(1)).unwrap());
    let got = index.session("s1").unwrap().unwrap();
    assert_eq!(got.ended_at, Some(160));
    assert_eq!(got.exit_status, Some(3));
    assert_eq!(got.cert_serial, u64::MAX);

    for (id, user, target, at) in [
        ("b", "bob", "web01", 200),
        ("c", "alice", "db01", 300),
        ("d", "alice", "WEB01", 400),
    ] {
        index
            .insert_session(&session(id, user, target, at))
            .unwrap();
    }
    index.end_session("c", &end(350)).unwrap();
    let ids = |f: SessionFilter| -> Vec<String> {
        index
            .list_sessions(&f)
            .unwrap()
            .into_iter()
            .map(|r| r.id)
            .collect()
    };
    assert_eq!(ids(SessionFilter::default()), ["d", "c", "b", "s1"]);
    assert_eq!(
        ids(SessionFilter {
            user: Some("alice".into()),
            target: Some("Web01".into()),
            ..Default::default()
        }),
        ["d", "s1"]
    );
    assert_eq!(
        ids(SessionFilter {
            user: Some("Alice".into()),
            ..Default::default()
        }),
        Vec::<String>::new()
    );
    assert_eq!(
        ids(SessionFilter {
            login: Some("deploy".into()),
            active: Some(true),
            ..Default::default()
        }),
        ["d", "b"]
    );
    assert_eq!(
        ids(SessionFilter {
            since: Some(170),
            until: Some(320),
            ..Default::default()
        }),
        ["c", "b"]
    );
    assert_eq!(
        ids(SessionFilter {
            limit: Some(2),
            active: Some(false),
            ..Default::default()
        }),
        ["c", "s1"]
    );
}

fn audit_record(chain: &str, seq: u64, event: &str, time: &str) -> IndexedRecord {
    IndexedRecord {
        chain: chain.into(),
        seq,
        time: time.into(),
        event: event.into(),
        hash: format!("{seq:064x}"),
        line: format!(r#"{{"seq":{seq},"event":"{event}","who":"alice-{seq}"}}"#),
    }
}

fn chain_head(chain: &str, seq: u64, hash: &str) -> ChainHead {
    ChainHead {
        chain: chain.into(),
        label: format!("ssh-ca on test: {chain}"),
        seq,
        hash: hash.into(),
        recorded_at: seq,
    }
}

fn the_audit_index_keeps_records_once_searches_them_and_refuses_heads_that_go_back(b: &Backend) {
    let index = b.ca();
    let batch = [
        audit_record("a", 1, "cert.issued", "2026-12-01T10:00:00.000Z"),
        audit_record("a", 2, "cert.denied", "2026-12-01T10:01:00.000Z"),
        audit_record("b", 1, "cert.issued", "2026-12-01T10:02:00.000Z"),
    ];
    index.add_audit_records(&batch).unwrap();
    // A batch sent again (a shipper retrying) changes nothing.
    index.add_audit_records(&batch[..2]).unwrap();
    assert_eq!(index.indexed_seq("a").unwrap(), 2);
    assert_eq!(index.indexed_seq("nope").unwrap(), 0);
    let issued = index
        .search_audit(&AuditQuery {
            event: Some("cert.issued".into()),
            limit: 10,
            ..AuditQuery::default()
        })
        .unwrap();
    let seen: Vec<_> = issued.iter().map(|r| (r.chain.as_str(), r.seq)).collect();
    assert_eq!(seen, [("b", 1), ("a", 1)]);
    let found = index
        .search_audit(&AuditQuery {
            contains: vec!["alice-2".into(), "denied".into()],
            since: Some("2026-12-01T10:00:30.000Z".into()),
            chain: Some("a".into()),
            limit: 10,
            ..AuditQuery::default()
        })
        .unwrap();
    assert_eq!(found, batch[1..2]);
    assert!(
        index
            .search_audit(&AuditQuery {
                contains: vec!["%".into()],
                limit: 10,
                ..AuditQuery::default()
            })
            .unwrap()
            .is_empty(),
        "a plain substring, no wildcards"
    );
    assert_eq!(index.audit_records("a", 2, 10).unwrap(), batch[1..2]);
    // Heads: forward only, per chain.
    let other = b.ca();
    assert_eq!(
        other.record_audit_head(&chain_head("a", 5, "h5")).unwrap(),
        HeadOutcome::Advanced
    );
    assert_eq!(
        index.record_audit_head(&chain_head("a", 5, "h5")).unwrap(),
        HeadOutcome::Unchanged
    );
    assert_eq!(
        index.record_audit_head(&chain_head("b", 1, "b1")).unwrap(),
        HeadOutcome::Advanced
    );
    assert_eq!(
        index.record_audit_head(&chain_head("a", 4, "h4")).unwrap(),
        HeadOutcome::WentBack(chain_head("a", 5, "h5"))
    );
    assert_eq!(
        index
            .record_audit_head(&chain_head("a", 5, "forged"))
            .unwrap(),
        HeadOutcome::WentBack(chain_head("a", 5, "h5"))
    );
    assert_eq!(
        other.record_audit_head(&chain_head("a", 9, "h9")).unwrap(),
        HeadOutcome::Advanced
    );
    let heads: Vec<_> = index
        .audit_heads()
        .unwrap()
        .into_iter()
        .map(|h| (h.chain, h.seq))
        .collect();
    assert_eq!(
        heads,
        [
            ("a".to_string(), 5),
            ("a".to_string(), 9),
            ("b".to_string(), 1)
        ]
    );
}

/// PostgreSQL: the CAs' and the bastions' chains land in one table, whichever schema a
/// handle was opened for, so one search sees the whole deployment.
#[test]
fn postgres_ca_store_and_session_index_share_one_audit_index() {
    let b = Backend::postgres();
    let ca = b.ca();
    let Backend::Postgres { url, .. } = &b else {
        unreachable!()
    };
    let bastion = PgStore::open_session_index(url, &PgOptions::default())
        .unwrap()
        .0;
    ca.add_audit_records(&[audit_record(
        "ca1",
        1,
        "cert.issued",
        "2026-12-01T10:00:00.000Z",
    )])
    .unwrap();
    bastion
        .add_audit_records(&[audit_record(
            "bastion1",
            1,
            "session.start",
            "2026-12-01T10:00:01.000Z",
        )])
        .unwrap();
    let all: Vec<_> = ca
        .search_audit(&AuditQuery {
            limit: 10,
            ..AuditQuery::default()
        })
        .unwrap()
        .into_iter()
        .map(|r| r.chain)
        .collect();
    assert_eq!(all, ["bastion1", "ca1"]);
}

macro_rules! both_backends {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(#[test] fn $case() { super::$case(&super::Backend::sqlite()) })*
        }
        mod postgres {
            $(#[test] fn $case() { super::$case(&super::Backend::postgres()) })*
        }
    };
}

both_backends!(
    serials_are_unique_and_increasing_across_threads_and_reopen,
    issued_certs_round_trip,
    pending_certificates_settle_and_stay_pending_until_then,
    revocations_are_deduplicated_ordered_and_counted,
    a_reader_following_concurrent_revokers_misses_none,
    the_target_ca_is_recorded_once_next_to_the_same_user_and_host_ca,
    request_updates_are_atomic_and_refusals_save_nothing,
    a_join_token_joins_once_and_only_before_expiry,
    a_token_id_is_spent_once_until_it_expires,
    the_session_index_records_ends_once_and_filters,
    the_audit_index_keeps_records_once_searches_them_and_refuses_heads_that_go_back,
);

/// PostgreSQL: pending certificates belong to the instance that wrote them, so a CA that
/// starts while another is mid-commit never audits the other's as unreleased.
#[test]
fn postgres_pending_certificates_belong_to_their_instance() {
    let b = Backend::postgres();
    let one = b.ca_owned_by("ca1");
    let two = b.ca_owned_by("ca2");
    one.record_issued_pending(&[issued(1)]).unwrap();
    two.record_issued_pending(&[issued(2)]).unwrap();
    let serials = |s: &Arc<dyn Ca>| -> Vec<u64> {
        s.pending_issued()
            .unwrap()
            .iter()
            .map(|c| c.serial)
            .collect()
    };
    assert_eq!(serials(&one), [1]);
    assert_eq!(serials(&two), [2]);
    // The same instance restarted finds its own.
    assert_eq!(serials(&b.ca_owned_by("ca1")), [1]);
}

/// PostgreSQL: a database a newer release migrated is refused, with one clear line, and
/// nothing is written to it.
#[test]
fn postgres_refuses_a_schema_newer_than_the_program() {
    let mut pg = Postgres::start();
    let url = pg.create_database();
    let (store, migrated) = PgStore::open(&url, &PgOptions::default()).unwrap();
    assert_eq!((migrated.from, migrated.to), (0, 2));
    drop(store);
    let (_again, migrated) = PgStore::open(&url, &PgOptions::default()).unwrap();
    assert!(migrated.applied.is_empty());
    let name = url.rsplit('/').next().unwrap().split('?').next().unwrap();
    pg.psql(
        name,
        "UPDATE jitssh_schema SET version = 99 WHERE what = 'CA store'",
    );
    let err = PgStore::open(&url, &PgOptions::default())
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("CA store schema version 99 is newer than this program knows (2)"),
        "{err}"
    );
    assert!(!err.contains('\n'), "{err}");
}

/// TLS to the database: with the root that signed the server's certificate and the name it
/// carries, the store opens; a certificate from an unknown root, or one for another name, is
/// refused in one line, never used unverified.
#[test]
fn postgres_tls_verifies_the_servers_certificate_and_name() {
    let (mut pg, root) = Postgres::start_tls();
    let plain = pg.create_database();
    let db = plain
        .rsplit('/')
        .next()
        .unwrap()
        .split('?')
        .next()
        .unwrap()
        .to_string();
    let url = |host: &str, params: &str| {
        format!(
            "postgres://{}@{host}:{}/{db}?{params}",
            jitssh_tests::PG_USER,
            pg.port()
        )
    };
    let options = PgOptions::default();
    let root = root.display();
    let (store, _) = PgStore::open(
        &url(
            "localhost",
            &format!("sslmode=verify-full&sslrootcert={root}"),
        ),
        &options,
    )
    .unwrap();
    assert_eq!(store.reserve_serials(1).unwrap().start, 1);
    // The connection is encrypted (the server says so for our own backend).
    let name = db.clone();
    let ssl = pg.psql(
        &name,
        "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
         WHERE s.ssl AND a.application_name = 'jitssh'",
    );
    assert_ne!(ssl, "0", "no TLS connection of ours");
    // `require` verifies too.
    assert!(
        PgStore::open(
            &url("localhost", &format!("sslmode=require&sslrootcert={root}")),
            &options
        )
        .is_ok()
    );
    for (case, target, why) in [
        (
            "system roots only",
            url("localhost", "sslmode=verify-full"),
            "UnknownIssuer",
        ),
        (
            "another name",
            url(
                "127.0.0.1",
                &format!("sslmode=verify-full&sslrootcert={root}"),
            ),
            "certificate not valid for name \"127.0.0.1\"",
        ),
    ] {
        let err = PgStore::open(&target, &options).err().unwrap().to_string();
        assert!(
            err.contains("database unavailable") && err.contains(why) && !err.contains('\n'),
            "{case}: {err}"
        );
    }
}
