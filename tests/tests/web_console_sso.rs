//! Sign-in to the web console by the identity provider (`[web.sso]`): a real `ssh-bastion
//! serve` with the embedded CA, a real OpenID Provider (tests/oidc/, `oidc-provider`) and
//! headless Chromium (tests/web/console_sso.py) going through the provider's own login and
//! consent pages.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use jitssh_tests::{Bastion, Idp, Scratch, free_port, run};

const POLICY: &str = "[[roles]]\nname = \"audit\"\nlogins = [\"audit\"]\nhosts = []\nmax_ttl = \"1h\"\nauditor = true\n\n\
     [[roles]]\nname = \"ops\"\nlogins = [\"root\"]\nhosts = [\"web*\"]\nmax_ttl = \"1h\"\n\n\
     [[sso.groups]]\nclaim = \"auditors\"\nroles = [\"audit\"]\n\n\
     [[sso.groups]]\nclaim = \"ops\"\nroles = [\"ops\"]\n";

const ACCOUNTS: &str = r#"{
  "audrey": {"email": "audrey@example.com", "preferred_username": "audrey", "groups": ["auditors"]},
  "otto": {"email": "otto@example.com", "preferred_username": "otto", "groups": ["ops"]}
}"#;

#[test]
fn an_auditor_signs_in_by_the_identity_provider_and_others_are_refused() {
    let scratch = Scratch::new();
    let web_port = free_port();
    let base = format!("https://127.0.0.1:{web_port}");
    let redirect = format!("{base}/signin/sso/callback");
    let idp = Idp::start_with(scratch.path(), ACCOUNTS, &["--redirect-uri", &redirect]);
    let ca = Bastion::ca(scratch.path(), POLICY);
    let bastion = Bastion::start(
        &ca,
        &[],
        &format!(
            "[web]\nlisten = \"127.0.0.1:{web_port}\"\n\n[web.sso]\nissuer = \"{}\"\n\
             client_id = \"jitssh-web\"\nname_claim = \"email\"\n",
            idp.issuer
        ),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while !bastion.log().contains("web console listening") {
        assert!(
            Instant::now() < deadline,
            "no web console:\n{}",
            bastion.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("web/console_sso.py");
    let spec = serde_json::json!({
        "base": base, "idp": idp.issuer, "auditor": "audrey", "outsider": "otto",
    });
    let out = run(Command::new("python3").arg(script).arg(spec.to_string()));
    assert!(
        out.success(),
        "browser: {out}\nbastion:\n{}\nidp:\n{}",
        bastion.log(),
        idp.log()
    );
    let text = out.stdout_str();
    let found: serde_json::Value =
        serde_json::from_str(text.lines().last().unwrap_or("")).expect("findings JSON");
    let say = |key: &str| found[key].as_str().unwrap_or("").to_string();

    // The auditor lands on the sessions list, signed in as the provider named them.
    assert!(
        say("auditor_landed").starts_with(&format!("{base}/sessions")),
        "{found}"
    );
    assert!(
        say("auditor_main").contains("audrey@example.com"),
        "{found}"
    );
    let session_cookie = found["cookies"]
        .as_array()
        .and_then(|all| all.iter().find(|c| c["name"] == "jitssh_web"))
        .expect("the session cookie");
    assert_eq!(session_cookie["httpOnly"], true);
    assert_eq!(session_cookie["secure"], true);
    assert_eq!(session_cookie["sameSite"], "Strict");
    // The session ends with the ID token (the provider's default lifetime: one hour), well
    // before the 12 h cap.
    let lasts = session_cookie["expires"].as_f64().unwrap_or(0.0)
        - found["signed_in_at"].as_f64().unwrap_or(f64::MAX);
    assert!(
        (3000.0..=3700.0).contains(&lasts),
        "session lasts {lasts} s"
    );
    // The pre-login cookie: short-lived, HttpOnly, Secure, Lax (sent on the redirect back).
    let prelogin = say("prelogin_cookie");
    for part in [
        "jitssh_sso=",
        "HttpOnly",
        "Secure",
        "SameSite=Lax",
        "Max-Age=600",
    ] {
        assert!(prelogin.contains(part), "{prelogin}");
    }
    // PKCE S256, state and nonce went to the provider.
    let authorize = say("authorize");
    for part in [
        "code_challenge_method=S256",
        "code_challenge=",
        "state=",
        "nonce=",
        "client_id=jitssh-web",
    ] {
        assert!(authorize.contains(part), "{authorize}");
    }

    // The refusals, each with its reason.
    assert!(
        say("replayed_callback").contains("unknown, expired or already used"),
        "{found}"
    );
    assert!(
        say("replayed_code").contains("the code was refused at the token endpoint")
            && say("replayed_code").contains("invalid_grant"),
        "{found}"
    );
    assert!(
        say("forged_state").contains("the state does not match"),
        "{found}"
    );
    assert!(
        say("outsider").contains("otto@example.com is not an auditor")
            && say("outsider").contains("(ops)"),
        "{found}"
    );
    assert_eq!(found["outsider_cookies"], serde_json::json!([]), "{found}");

    // The audit log: the sign-in with how and who, and the refusal.
    let audit = bastion.audit();
    let signin = audit
        .lines()
        .find(|l| l.contains("\"event\":\"web.signin\""))
        .unwrap_or_else(|| panic!("no web.signin:\n{audit}"));
    for part in [
        "\"via\":\"sso\"",
        "\"person\":\"audrey@example.com\"",
        "\"sub\":\"audrey\"",
        &format!("\"issuer\":\"{}\"", idp.issuer),
    ] {
        assert!(signin.contains(part), "{signin}");
    }
    assert!(
        audit
            .lines()
            .any(|l| l.contains("\"event\":\"web.signin.denied\"")
                && l.contains("otto@example.com")
                && l.contains("not an auditor")),
        "{audit}"
    );
}
