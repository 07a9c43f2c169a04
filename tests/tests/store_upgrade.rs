//! A data directory made before schemas were versioned keeps working: the CA's store and the
//! bastion's session index upgrade in place, with their revocations and sessions.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use jitssh_tests::{Bastion, Scratch, keygen, project_bin, run, target, user};

/// Every table, as the release before versioned schemas created it in *every* database
/// (`shared/src/store.rs`, now `core/src/store.rs`, `store/hosts.rs`, `store/requests.rs`, `store/sessions.rs` at
/// df65db2), with `journal_mode` as it set it.
const LEGACY_SCHEMA: &str = "
PRAGMA journal_mode = WAL;
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO counters (name, value) VALUES ('next_serial', 1);
CREATE TABLE IF NOT EXISTS issued (
    serial INTEGER PRIMARY KEY,
    record TEXT NOT NULL,
    issued_at INTEGER NOT NULL,
    state INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS revocations (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    item TEXT NOT NULL UNIQUE,
    record TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS hosts (
    name TEXT PRIMARY KEY,
    record TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS requests (
    id TEXT PRIMARY KEY,
    created_at INTEGER NOT NULL,
    record TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY,
    user TEXT NOT NULL,
    key_id TEXT NOT NULL,
    cert_serial INTEGER NOT NULL,
    client_addr TEXT NOT NULL,
    target TEXT NOT NULL,
    login TEXT NOT NULL,
    started_at INTEGER NOT NULL,
    ended_at INTEGER,
    bytes_in INTEGER NOT NULL DEFAULT 0,
    bytes_out INTEGER NOT NULL DEFAULT 0,
    exit_status INTEGER,
    end_reason TEXT,
    recording TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS sessions_started ON sessions (started_at);
CREATE INDEX IF NOT EXISTS sessions_user ON sessions (user, started_at);
CREATE INDEX IF NOT EXISTS sessions_target ON sessions (target, started_at);
";

/// Replaces the database at `path` with one in the legacy layout, then runs `rows`.
fn legacy_database(path: &Path, rows: &str) {
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    let conn = rusqlite::Connection::open(path).expect("create the legacy database");
    conn.execute_batch(LEGACY_SCHEMA).expect("legacy schema");
    conn.execute_batch(rows).expect("legacy rows");
    drop(conn);
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
}

#[test]
fn a_data_dir_from_before_schema_versions_keeps_its_revocations_and_sessions() {
    let scratch = Scratch::new();
    let ca = Bastion::ca(scratch.path(), "");
    // The CA's store as the old release left it: a revocation by key id, in its JSON format.
    legacy_database(
        &ca.data_dir().join("store.db"),
        r#"INSERT INTO revocations (item, record) VALUES (
            '{"kind":"key_id","value":"mallory"}',
            '{"item":{"kind":"key_id","value":"mallory"},"reason":"left","revoked_by":"operator","revoked_at":1700000000}');"#,
    );
    // The bastion's session index as the old release left it, with one finished session.
    let bastion_data = scratch.path().join("bastion-data");
    std::fs::create_dir_all(&bastion_data).expect("bastion-data");
    std::fs::set_permissions(&bastion_data, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    legacy_database(
        &bastion_data.join("sessions.db"),
        "INSERT INTO sessions (id, user, key_id, cert_serial, client_addr, target, login, \
         started_at, ended_at, recording) VALUES ('20231114-old-session', 'bob', 'bob', 3, \
         '127.0.0.1:40000', 'web01', 'root', 1700000000, 1700000060, \
         'recordings/20231114-old-session');",
    );

    // The old revocation still refuses: offline signing under the revoked key id.
    let mallory = keygen(scratch.path(), "mallory");
    let mut sign = ca.cmd([
        "sign",
        "--user",
        "--principals",
        "root",
        "--ttl",
        "1h",
        "--key-id",
        "mallory",
    ]);
    sign.arg("--key").arg(&mallory.public);
    let out = run(&mut sign);
    assert!(!out.success(), "{out}");
    assert!(
        out.stderr.contains("key id \"mallory\" is revoked: left"),
        "{out}"
    );

    // The bastion (embedded CA) starts on the old data dir, admits alice and indexes her
    // session next to the old one.
    let web01 = target(&ca, scratch.path(), "web01", |b| b);
    let alice = user(&ca, scratch.path(), "alice", &["root"], &["web*"], &[]);
    let bastion = Bastion::start(&ca, &[("web01", format!("127.0.0.1:{}", web01.port()))], "");
    let out = bastion.ssh("root@web01", &alice).args(["true"]).run();
    assert!(out.success(), "{out}");
    bastion.wait_for_audit(
        "\"event\":\"session.end\"",
        std::time::Duration::from_secs(10),
    );
    let out = run(Command::new(project_bin("ssh-bastion"))
        .arg("--config")
        .arg(&bastion.config)
        .args(["sessions", "list", "--json"]));
    assert!(out.success(), "{out}");
    let users: Vec<String> = out
        .stdout_str()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("JSON line");
            v["user"].as_str().unwrap_or_default().to_string()
        })
        .collect();
    assert_eq!(users, ["alice", "bob"], "{out}");

    // And a new revocation lands next to the old one.
    let out = run(&mut ca.cmd(["revoke", "--key-id", "eve"]));
    assert!(out.success(), "{out}");
    let mut sign = ca.cmd([
        "sign",
        "--user",
        "--principals",
        "root",
        "--ttl",
        "1h",
        "--key-id",
        "mallory",
    ]);
    sign.arg("--key").arg(&mallory.public);
    assert!(!run(&mut sign).success(), "mallory stays revoked");
}
