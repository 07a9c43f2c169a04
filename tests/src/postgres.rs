//! A throwaway PostgreSQL server for tests: `initdb` in a temp dir, `postgres` on a free
//! loopback port, removed on drop. No system service is needed, only the Debian
//! `postgresql` package's binaries (`pg_config --bindir`, or /usr/lib/postgresql/*/bin).
//!
//! initdb and the server refuse to run as root: as root, both run as the `postgres` system
//! user (through `setpriv`, which execs, so the pid we hold is the server's), in a temp
//! dir chowned to it. The server can be stopped and started again on the same port and
//! data, for tests of a database restart.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::process::{run, run_ok, wait_for};

/// The role every test database belongs to (a superuser, trust authentication on loopback).
pub const PG_USER: &str = "jitssh";

/// A running (or stopped) throwaway PostgreSQL cluster.
pub struct Postgres {
    dir: Option<tempfile::TempDir>,
    bin: PathBuf,
    port: u16,
    server: Option<Child>,
    databases: usize,
    /// Server arguments that turn TLS on ([`Postgres::start_tls`]).
    tls: Vec<String>,
}

/// Where the PostgreSQL binaries are.
fn bindir() -> PathBuf {
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output()
        && out.status.success()
    {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if dir.join("initdb").exists() {
            return dir;
        }
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|dir| {
            dir.filter_map(|e| e.ok())
                .map(|e| e.path().join("bin"))
                .filter(|bin| bin.join("initdb").exists())
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    found
        .pop()
        .expect("PostgreSQL binaries (initdb): install the postgresql package")
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// `program` as the `postgres` user when we are root.
fn as_postgres(program: &Path) -> Command {
    if is_root() {
        let mut cmd = Command::new("setpriv");
        cmd.args([
            "--reuid=postgres",
            "--regid=postgres",
            "--init-groups",
            "--",
        ])
        .arg(program);
        cmd
    } else {
        Command::new(program)
    }
}

impl Postgres {
    /// Creates a cluster in a temp dir and starts it on a free port.
    pub fn start() -> Postgres {
        let mut pg = Postgres::create();
        pg.start_server();
        pg
    }

    /// Like [`Postgres::start`], with TLS on: the server's certificate (made with `openssl`,
    /// naming only `DNS:localhost`) is signed by a throwaway root, whose PEM file is returned.
    pub fn start_tls() -> (Postgres, PathBuf) {
        let mut pg = Postgres::create();
        let dir = pg.path().to_path_buf();
        let ca_key = dir.join("root.key");
        let ca_crt = dir.join("root.crt");
        let key = dir.join("server.key");
        let csr = dir.join("server.csr");
        let crt = dir.join("server.crt");
        let ext = dir.join("server.ext");
        std::fs::write(&ext, "subjectAltName=DNS:localhost\n").expect("write ext");
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ];
        run_ok(
            Command::new("openssl")
                .args(["req", "-x509"])
                .args(ec)
                .arg("-keyout")
                .arg(&ca_key)
                .arg("-out")
                .arg(&ca_crt)
                .args(["-subj", "/CN=jitssh test database root", "-days", "1"]),
        );
        run_ok(
            Command::new("openssl")
                .arg("req")
                .args(ec)
                .arg("-keyout")
                .arg(&key)
                .arg("-out")
                .arg(&csr)
                .args(["-subj", "/CN=localhost"]),
        );
        run_ok(
            Command::new("openssl")
                .args(["x509", "-req", "-in"])
                .arg(&csr)
                .arg("-CA")
                .arg(&ca_crt)
                .arg("-CAkey")
                .arg(&ca_key)
                .args(["-CAcreateserial", "-days", "1", "-out"])
                .arg(&crt)
                .arg("-extfile")
                .arg(&ext),
        );
        if is_root() {
            run_ok(
                Command::new("chown")
                    .arg("postgres:postgres")
                    .arg(&key)
                    .arg(&crt),
            );
        }
        run_ok(Command::new("chmod").arg("600").arg(&key));
        pg.tls = vec![
            "-c".into(),
            "ssl=on".into(),
            "-c".into(),
            format!("ssl_cert_file={}", crt.display()),
            "-c".into(),
            format!("ssl_key_file={}", key.display()),
        ];
        pg.start_server();
        (pg, ca_crt)
    }

    fn create() -> Postgres {
        let bin = bindir();
        let dir = tempfile::Builder::new()
            .prefix("jitssh-pg-")
            .tempdir()
            .expect("create the PostgreSQL temp dir");
        if is_root() {
            run_ok(
                Command::new("chown")
                    .arg("postgres:postgres")
                    .arg(dir.path()),
            );
        }
        let data = dir.path().join("data");
        run_ok(as_postgres(&bin.join("initdb")).arg("-D").arg(&data).args([
            "-A",
            "trust",
            "-U",
            PG_USER,
            "-E",
            "UTF8",
            "--no-sync",
        ]));
        Postgres {
            dir: Some(dir),
            bin,
            port: crate::net::free_port(),
            server: None,
            databases: 0,
            tls: Vec::new(),
        }
    }

    fn path(&self) -> &Path {
        self.dir.as_ref().expect("temp dir").path()
    }

    /// The server's log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.path().join("server.log")).unwrap_or_default()
    }

    /// Starts the server (again) on its port, and waits until it accepts connections.
    pub fn start_server(&mut self) {
        assert!(self.server.is_none(), "the server is running already");
        let log_path = self.path().join("server.log");
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .expect("open the server log");
        if is_root() {
            run_ok(
                Command::new("chown")
                    .arg("postgres:postgres")
                    .arg(&log_path),
            );
        }
        let err: File = log.try_clone().expect("dup the log");
        let child = as_postgres(&self.bin.join("postgres"))
            .arg("-D")
            .arg(self.path().join("data"))
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-k")
            .arg(self.path())
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "max_connections=200",
            ])
            .args(&self.tls)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .expect("spawn postgres");
        self.server = Some(child);
        let isready = self.bin.join("pg_isready");
        let port = self.port.to_string();
        wait_for(
            || {
                if let Some(Ok(Some(status))) = self.server.as_mut().map(Child::try_wait) {
                    panic!("postgres exited ({status}); log:\n{}", self.log());
                }
                run(Command::new(&isready).args([
                    "-q",
                    "-h",
                    "127.0.0.1",
                    "-U",
                    PG_USER,
                    "-p",
                    &port,
                ]))
                .success()
            },
            Duration::from_secs(30),
            "PostgreSQL to accept connections",
        );
    }

    /// Stops the server (fast shutdown: sessions are cut, nothing committed is lost).
    pub fn stop_server(&mut self) {
        let Some(mut child) = self.server.take() else {
            return;
        };
        let pid = libc::pid_t::try_from(child.id()).expect("pid");
        // SAFETY: kill(2) has no memory-safety preconditions; the child is not reaped yet.
        unsafe { libc::kill(pid, libc::SIGINT) };
        let deadline = Instant::now() + Duration::from_secs(20);
        while child.try_wait().ok().flatten().is_none() {
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `psql` on database `db`, running `sql`; panics on failure.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        run_ok(
            Command::new(self.bin.join("psql"))
                .args([
                    "-X",
                    "-q",
                    "-A",
                    "-t",
                    "-v",
                    "ON_ERROR_STOP=1",
                    "-h",
                    "127.0.0.1",
                ])
                .args([
                    "-p",
                    &self.port.to_string(),
                    "-U",
                    PG_USER,
                    "-d",
                    db,
                    "-c",
                    sql,
                ]),
        )
        .stdout_str()
        .trim()
        .to_string()
    }

    /// Creates a fresh database and returns its store url (`sslmode=disable`: loopback).
    pub fn create_database(&mut self) -> String {
        self.databases += 1;
        let name = format!("jitssh{}", self.databases);
        self.psql("postgres", &format!("CREATE DATABASE {name}"));
        self.url(&name)
    }

    /// The store url of database `name`.
    pub fn url(&self, name: &str) -> String {
        format!(
            "postgres://{PG_USER}@127.0.0.1:{}/{name}?sslmode=disable",
            self.port
        )
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop_server();
        if std::thread::panicking() {
            let log = self.log();
            let lines: Vec<&str> = log.lines().collect();
            let tail = &lines[lines.len().saturating_sub(40)..];
            eprintln!(
                "--- last lines of the PostgreSQL log ---\n{}",
                tail.join("\n")
            );
        }
        // The TempDir removes the cluster.
        self.dir.take();
    }
}
