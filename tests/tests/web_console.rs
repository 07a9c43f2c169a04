//! The auditors' web console of a real `ssh-bastion serve`: signed in through the one-time
//! URL that real `ssh web@bastion` prints, driven in headless Chromium (Debian's, through
//! Playwright for Python: tests/web/console_browser.py) like an auditor would, and refused
//! the way it must be with plain HTTPS requests (`curl`). The browser test runs twice:
//! recordings on the bastion's disk, and uploaded to an object store (a real Garage;
//! `[recordings] store`) and gone from the spool before the auditor looks.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use jitssh_tests::{
    Bastion, CaFixture, Garage, KeyPair, Output, Scratch, Sshd, Tmux, free_port, keygen, run,
    run_ok, run_with, session_recordings, target, user,
};

/// Where the bastion keeps finished recordings.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Recordings {
    /// Its recordings directory (the default).
    Local,
    /// An S3 bucket (Garage); the directory is only the spool.
    Bucket,
}

struct World {
    scratch: Scratch,
    ca: CaFixture,
    bastion: Bastion,
    _web01: Sshd,
    /// Reaches web01 as root; not an auditor.
    alice: KeyPair,
    /// An auditor (a grant role with `auditor: true`).
    audrey: KeyPair,
    /// `https://127.0.0.1:PORT`.
    base: String,
    /// The object store, when recordings go to a bucket.
    garage: Option<Garage>,
}

fn world() -> World {
    world_on(Recordings::Local)
}

fn world_on(recordings: Recordings) -> World {
    let scratch = Scratch::new();
    let garage = (recordings == Recordings::Bucket).then(|| Garage::start("recordings"));
    let store = match &garage {
        Some(garage) => {
            let credentials = scratch.file("s3-credentials");
            garage.credentials_file(&credentials);
            format!(
                "[recordings]\n{}",
                garage.recordings_keys("web", &credentials)
            )
        }
        None => String::new(),
    };
    let ca = Bastion::ca(scratch.path(), "");
    let web01 = target(&ca, scratch.path(), "web01", |b| b);
    let alice = user(&ca, scratch.path(), "alice", &["root"], &["web*"], &[]);
    let audrey = keygen(scratch.path(), "audrey");
    let grant = "jit-grant@jitssh={\"roles\":[{\"name\":\"audit\",\"logins\":[\"audrey\"],\"hosts\":[],\"auditor\":true}]}";
    ca.sign(
        &audrey,
        "user",
        "audrey",
        &[
            "--key-id",
            "audrey",
            "--extension",
            grant,
            "--extension",
            "permit-pty",
        ],
    );
    let web_port = free_port();
    let bastion = Bastion::start(
        &ca,
        &[("web01", format!("127.0.0.1:{}", web01.port()))],
        &format!("[web]\nlisten = \"127.0.0.1:{web_port}\"\n{store}"),
    );
    let base = format!("https://127.0.0.1:{web_port}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !bastion.log().contains("web console listening") {
        assert!(
            Instant::now() < deadline,
            "no web console:\n{}",
            bastion.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    World {
        scratch,
        ca,
        bastion,
        _web01: web01,
        alice,
        audrey,
        base,
        garage,
    }
}

/// A response as curl saw it.
struct Http {
    status: u16,
    head: String,
    body: String,
}

impl Http {
    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    }
}

impl World {
    /// `ssh web@bastion` as `key`, as a person runs it (no BatchMode, so a refused client
    /// comes back to hear why).
    fn ssh_web(&self, key: &KeyPair) -> Output {
        self.bastion.ssh("web", key).option("BatchMode=no").run()
    }

    /// A fresh one-time sign-in URL for the auditor.
    fn signin_url(&self) -> String {
        let out = self.ssh_web(&self.audrey);
        assert!(out.success(), "ssh web@bastion: {out}");
        let text = out.stdout_str();
        let url = text.lines().next().unwrap_or("").trim().to_string();
        assert!(url.starts_with(&format!("{}/signin/", self.base)), "{text}");
        url
    }

    /// `curl` to `path` (or a whole URL) with `args` (headers, data).
    fn curl(&self, path: &str, args: &[&str]) -> Http {
        let url = if path.starts_with("https://") {
            path.to_string()
        } else {
            format!("{}{path}", self.base)
        };
        let out = run(Command::new("curl")
            .args(["-sk", "-i", "--max-time", "20", "--path-as-is"])
            .args(args)
            .arg(&url));
        assert!(out.success(), "curl {url}: {out}");
        let text = out.stdout_str();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("HTTP status");
        Http {
            status,
            head: head.to_string(),
            body: body.to_string(),
        }
    }

    /// Signs in with curl: the `Cookie:` header value.
    fn cookie(&self) -> String {
        let r = self.curl(&self.signin_url(), &[]);
        assert_eq!(r.status, 303, "{}", r.head);
        let set = r.header("set-cookie").expect("a cookie");
        set.split(';').next().expect("name=value").to_string()
    }

    /// A finished `ssh -tt root@web01 COMMAND` by alice; its session id.
    fn exec(&self, command: &str) -> String {
        let before = self
            .bastion
            .audit()
            .matches("\"event\":\"session.end\"")
            .count();
        let out = self
            .bastion
            .ssh("root@web01", &self.alice)
            .flag("-tt")
            .args([command])
            .run();
        assert!(out.success(), "{out}");
        let deadline = Instant::now() + Duration::from_secs(10);
        while self
            .bastion
            .audit()
            .matches("\"event\":\"session.end\"")
            .count()
            <= before
        {
            assert!(Instant::now() < deadline, "no session.end");
            std::thread::sleep(Duration::from_millis(20));
        }
        if self.garage.is_some() {
            // Uploaded and gone from the spool: what the console shows comes from the bucket.
            let spool = self.bastion.data_dir().join("recordings");
            let deadline = Instant::now() + Duration::from_secs(60);
            while !session_recordings(&spool).is_empty() {
                assert!(Instant::now() < deadline, "recordings still in the spool");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        self.newest_session()
    }

    fn newest_session(&self) -> String {
        let ids = self.bastion.session_ids(&[]);
        ids.into_iter().next().expect("a session")
    }

    /// Where the browser's screenshots go: the documentation's images for the local run,
    /// scratch space for the bucket run (the same pages).
    fn shots(&self) -> PathBuf {
        let dir = match self.garage {
            Some(_) => self.scratch.path().join("shots"),
            None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/img"),
        };
        std::fs::create_dir_all(&dir).expect("docs/img");
        dir
    }

    /// Starts the browser script with `spec`; stdin and stdout piped.
    fn browser(&self, spec: &serde_json::Value) -> std::process::Child {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("web/console_browser.py");
        Command::new("python3")
            .arg(script)
            .arg(spec.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 with playwright (pip install playwright)")
    }
}

/// The browser script's findings (its last stdout line), after it exited successfully.
fn findings(child: std::process::Child) -> serde_json::Value {
    let out = child.wait_with_output().expect("browser script");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "browser script failed:\n{text}");
    let last = text.lines().last().unwrap_or("");
    serde_json::from_str(last).unwrap_or_else(|e| panic!("{e}: {text}"))
}

#[test]
fn an_auditor_signs_in_plays_a_session_and_searches_in_a_browser() {
    signs_in_plays_and_searches(Recordings::Local);
}

#[test]
fn the_same_with_recordings_in_a_bucket() {
    signs_in_plays_and_searches(Recordings::Bucket);
}

fn signs_in_plays_and_searches(recordings: Recordings) {
    let w = world_on(recordings);
    let id = w.exec("echo '<script>window.__pwned=true</script>'; echo PLAYED-$((6*7))");
    let spec = serde_json::json!({
        "base": w.base,
        "signin": w.signin_url(),
        "session": id,
        "expect": "PLAYED-42",
        "search": "PLAYED-42",
        "shots": w.shots(),
    });
    let found = findings(w.browser(&spec));
    assert_eq!(
        found["after_signin"],
        format!("{}/sessions", w.base),
        "{found}"
    );
    let cookie = &found["cookie"][0];
    assert_eq!(cookie["name"], "jitssh_web");
    assert_eq!(cookie["httpOnly"], true);
    assert_eq!(cookie["secure"], true);
    assert_eq!(cookie["sameSite"], "Strict");
    assert_eq!(found["listed"], 1, "{found}");
    // Nothing refused by the CSP, nothing missing.
    assert_eq!(found["console_errors"], serde_json::json!([]), "{found}");
    assert_eq!(found["played"], true);
    assert_eq!(found["integrity"], "intact");
    assert_eq!(found["scripts_run"], false, "a typed <script> ran");
    let show = found["show_html"].as_str().unwrap_or("");
    assert!(show.contains("&lt;script&gt;"), "{show}");
    assert!(found["hits"].as_u64().unwrap_or(0) >= 1, "{found}");
    let href = found["hit_href"].as_str().unwrap_or("");
    assert!(href.starts_with(&format!("/sessions/{id}#t=")), "{href}");
    assert_eq!(
        found["hash"].as_str(),
        href.split_once('#')
            .map(|(_, h)| format!("#{h}"))
            .as_deref()
    );
    let started: f64 = found["jumped_to"]
        .as_str()
        .unwrap_or("0")
        .parse()
        .unwrap_or(0.0);
    let wanted: f64 = href
        .rsplit("#t=")
        .next()
        .unwrap_or("0")
        .parse()
        .unwrap_or(-1.0);
    assert!(
        (started - wanted).abs() < 0.001,
        "player started at {started}, hit at {wanted}"
    );
    assert!(w.shots().join("web-console-sessions.png").exists());
    assert!(w.shots().join("web-console-player.png").exists());
    let audit = w.bastion.audit();
    assert!(
        audit.contains("\"event\":\"web.signin\"") && audit.contains("audrey"),
        "{audit}"
    );
}

#[test]
fn a_live_session_is_watched_and_ended_from_the_page() {
    let w = world();
    let ssh = w.bastion.ssh("root@web01", &w.alice).flag("-tt").command();
    let tmux = Tmux::start(w.scratch.path(), &ssh, 100, 30);
    w.bastion
        .wait_for_audit("\"event\":\"session.shell\"", Duration::from_secs(20));
    let id = w.newest_session();
    let spec = serde_json::json!({
        "base": w.base,
        "signin": w.signin_url(),
        "live": id,
        "live_expect": "LIVE-42",
        "reason": "incident 7: stop now",
        "shots": w.shots(),
    });
    let mut child = w.browser(&spec);
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    while line.trim() != "WATCHING" {
        line.clear();
        let n = stdout.read_line(&mut line).expect("browser output");
        assert!(n > 0, "the browser script ended before watching");
    }
    tmux.type_line("echo LIVE-$((40+2))");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(b"go\n").expect("tell the browser");
    drop(stdin);
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).expect("browser output");
    assert!(child.wait().expect("browser").success(), "{rest}");
    let found: serde_json::Value =
        serde_json::from_str(rest.lines().last().unwrap_or("")).unwrap_or_default();
    assert_eq!(found["live_seen"], true, "{rest}");
    assert_eq!(
        found["after_end"],
        format!("{}/sessions/{id}", w.base),
        "{found}"
    );
    tmux.wait_for("incident 7: stop now", Duration::from_secs(20));
    assert_ne!(tmux.wait_exit(Duration::from_secs(20)), 0);
    let audit = w
        .bastion
        .wait_for_audit("\"event\":\"session.kill\"", Duration::from_secs(10));
    let kill = audit
        .lines()
        .find(|l| l.contains("\"event\":\"session.kill\""))
        .expect("kill record");
    assert!(
        kill.contains("\"auditor\":\"audrey\"") && kill.contains("incident 7"),
        "{kill}"
    );
    assert!(audit.contains("\"event\":\"session.watch\""), "{audit}");
}

#[test]
fn refusals() {
    let w = world();
    // The self-signed certificate was made on first start, its key private, and the SHA-256
    // fingerprint logged is the certificate's.
    let web_dir = w.bastion.data_dir().join("web");
    let mode = std::fs::metadata(web_dir.join("web.key"))
        .expect("web.key")
        .permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
        0o600
    );
    let der = run(Command::new("openssl")
        .args(["x509", "-outform", "der", "-in"])
        .arg(web_dir.join("web.crt")));
    assert!(der.success(), "{der}");
    let digest = run_with(
        &mut Command::new("sha256sum"),
        Some(&der.stdout),
        Duration::from_secs(10),
    );
    let fingerprint = digest
        .stdout_str()
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_string();
    assert_eq!(fingerprint.len(), 64);
    assert!(
        w.bastion.log().contains(&format!(
            "web console TLS certificate SHA-256 {fingerprint}"
        )),
        "{}",
        w.bastion.log()
    );

    // Not an auditor: refused at the front door, and told why.
    let out = w.ssh_web(&w.alice);
    assert!(!out.success(), "{out}");
    assert!(out.stderr.contains("web console is for auditors"), "{out}");
    assert!(w.bastion.audit().contains("web console is for auditors"));

    // No cookie: to sign-in, for pages and the recording alike.
    for path in ["/sessions", "/search?q=x", "/sessions/x/cast"] {
        let r = w.curl(path, &[]);
        assert_eq!(
            (r.status, r.header("location").as_deref()),
            (303, Some("/signin")),
            "{path}"
        );
    }

    // A link works once.
    let url = w.signin_url();
    assert_eq!(w.curl(&url, &[]).status, 303);
    let again = w.curl(&url, &[]);
    assert_eq!(again.status, 403, "{}", again.body);
    assert!(again.header("set-cookie").is_none());

    // A link expires after a minute.
    let url = w.signin_url();
    w.bastion.clock().advance(61);
    assert_eq!(w.curl(&url, &[]).status, 403);

    // A forged or altered cookie is nobody.
    let cookie = w.cookie();
    let mut altered = cookie.clone();
    let last = altered.pop().expect("cookie value");
    altered.push(if last == '0' { '1' } else { '0' });
    for bad in [
        altered.as_str(),
        "jitssh_web=forged",
        "jitssh_web=../../etc/passwd",
    ] {
        let r = w.curl("/sessions", &["-H", &format!("Cookie: {bad}")]);
        assert_eq!(
            (r.status, r.header("location").as_deref()),
            (303, Some("/signin")),
            "{bad}"
        );
    }
    let header = format!("Cookie: {cookie}");
    let page = w.curl("/sessions", &["-H", &header]);
    assert_eq!(page.status, 200);
    // Every response says: our scripts only, no framing, no sniffing.
    let csp = page.header("content-security-policy").expect("CSP");
    assert!(
        csp.contains("default-src 'self'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    assert!(
        !csp.contains("unsafe-inline") && !csp.contains("'unsafe-eval'"),
        "{csp}"
    );
    assert_eq!(
        page.header("x-content-type-options").as_deref(),
        Some("nosniff")
    );
    assert!(!page.body.contains("<script>"), "inline script in the page");

    // Session ids that walk the file system are refused before any file is read.
    for path in [
        "/sessions/..%2F..%2F..%2Fetc%2Fpasswd",
        "/sessions/..",
        "/sessions/%2e%2e%2fbastion-data/cast",
        "/sessions/..%2Fhost_ed25519_key/cast",
    ] {
        let r = w.curl(path, &["-H", &header]);
        assert_eq!(r.status, 400, "{path}: {}", r.body);
    }

    // A change from another site is refused; from the console's page it works.
    let csrf = page
        .body
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("CSRF token")
        .to_string();
    let form = format!("csrf={csrf}");
    let own = format!("Origin: {}", w.base);
    for (origin, body) in [
        (Some("Origin: https://evil.example"), form.as_str()),
        (None, form.as_str()),
        (Some(own.as_str()), "csrf=0000"),
    ] {
        let mut args = vec!["-H", &header, "--data", body];
        if let Some(o) = origin {
            args.extend(["-H", o]);
        }
        let r = w.curl("/signout", &args);
        assert_eq!(r.status, 403, "{origin:?} {body}");
    }
    assert_eq!(
        w.curl("/sessions", &["-H", &header]).status,
        200,
        "still signed in"
    );
    let r = w.curl("/signout", &["-H", &header, "-H", &own, "--data", &form]);
    assert_eq!(r.status, 303);
    assert_eq!(
        w.curl("/sessions", &["-H", &header]).status,
        303,
        "signed out"
    );

    // What a session showed is text, everywhere: the page, the search results.
    let id = w.exec("echo '<script>alert(1)</script><img src=x onerror=alert(2)>'");
    let header = format!("Cookie: {}", w.cookie());
    for path in [format!("/sessions/{id}"), "/search?q=alert".to_string()] {
        let r = w.curl(&path, &["-H", &header]);
        assert_eq!(r.status, 200, "{path}");
        assert!(
            !r.body.contains("<script>alert") && !r.body.contains("<img src=x"),
            "{path}"
        );
        assert!(
            r.body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{path}: {}",
            r.body
        );
    }

    // A revoked auditor is signed out at their next request.
    run_ok(&mut w.ca.cmd(["revoke", "--key-id", "audrey"]));
    let r = w.curl("/sessions", &["-H", &header]);
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.body.contains("revoked"), "{}", r.body);
    assert_eq!(
        w.curl("/sessions", &["-H", &header]).status,
        303,
        "the session is gone"
    );
    assert!(w.bastion.audit().contains("\"event\":\"web.signout\""));
}
