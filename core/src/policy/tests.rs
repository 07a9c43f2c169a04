use super::*;

const ALICE_KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIH9IXZUqz/ePREb8+Ij4fs6tI6Qe7x5eBNYb+/WV9ni6 alice";
const BOB_KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILjwZDLlLaFYhAqZ67aGQsubu2FjmOq+N6XrEOjDJrWU bob";
const CAROL_KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILk7xURtIDzBAT8po2VRsePa2yLaheLo/w+95/Hhgx5O carol";

/// 2026-11-23 10:00 UTC, a Monday.
const MONDAY_10AM: u64 = 1_795_392_000 + 10 * 3600;

fn policy() -> Policy {
    let text = format!(
        r#"
[defaults]
default_ttl = "30m"

[[roles]]
name = "dev"
logins = ["{{user}}", "deploy"]
hosts = ["web*", "!web-secret"]
max_ttl = "8h"
default_ttl = "1h"
direct = true

[[roles]]
name = "ops"
logins = ["root"]
hosts = ["db*"]
max_ttl = "1h"
require_reason = true
extensions = ["permit-pty"]

[[roles]]
name = "prod-admin"
logins = ["root"]
hosts = ["prod*"]
max_ttl = "2h"
approvals = 2
approvers = ["lead"]

[[roles]]
name = "lead"
logins = ["{{user}}"]
max_ttl = "1h"

[[roles]]
name = "office"
logins = ["office"]
max_ttl = "12h"
allowed_hours = "Mon-Fri 08:00-18:00 UTC"

[[roles]]
name = "ci"
logins = ["ci"]
max_ttl = "15m"
force_command = "/usr/bin/deploy"
source_address = ["10.0.0.0/8"]

[[roles]]
name = "ci2"
logins = ["ci"]
max_ttl = "15m"
force_command = "/usr/bin/other"

[[users]]
name = "alice"
keys = ["{ALICE_KEY}"]
roles = ["dev", "ops", "prod-admin", "office"]

[[users]]
name = "bob"
keys = ["{BOB_KEY}"]
roles = ["lead", "ci", "ci2"]

[[users]]
name = "carol"
keys = ["{CAROL_KEY}"]
roles = ["ci"]
"#
    );
    Policy::parse(&text, "policy.toml").unwrap()
}

fn request() -> CertRequest {
    CertRequest::default()
}

fn eval(user: &str, req: CertRequest) -> Result<Grant, Denial> {
    policy().evaluate(user, &req, MONDAY_10AM)
}

fn denial(user: &str, req: CertRequest) -> String {
    eval(user, req).unwrap_err().reason
}

#[test]
fn finds_users_by_key() {
    let policy = policy();
    let key = PublicKey::from_openssh(BOB_KEY).unwrap();
    assert_eq!(policy.user_by_key(&key).unwrap().name, "bob");
    let stranger = PublicKey::from_openssh(
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDkEGxsTmFq8wLbVsZ0ANgFKVIa4dlhV5O6Qlb0o6Xg9 x",
    )
    .unwrap();
    assert!(policy.user_by_key(&stranger).is_none());
}

#[test]
fn default_request_uses_usable_roles_and_expands_user_template() {
    let grant = eval("alice", request()).unwrap();
    assert_eq!(grant.principals, ["alice", "deploy", "office"]);
    let names: Vec<&str> = grant.roles.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(
        names,
        ["dev", "office"],
        "ops needs a reason, prod-admin an approval"
    );
    assert_eq!(
        grant.ttl,
        Duration::from_secs(1800),
        "smallest default_ttl (office: [defaults] 30m)"
    );
    assert_eq!(grant.key_id, "alice");
    assert!(
        grant
            .trace
            .iter()
            .any(|d| d.rule.contains("requires a reason"))
    );
    assert!(
        grant
            .trace
            .iter()
            .any(|d| d.rule.contains("approved access request"))
    );
}

#[test]
fn requested_principals_select_roles() {
    let req = CertRequest {
        principals: Some(vec!["deploy".into()]),
        ..request()
    };
    let grant = eval("alice", req).unwrap();
    assert_eq!(grant.principals, ["deploy"]);
    assert_eq!(grant.roles.len(), 1);
    assert_eq!(grant.roles[0].name, "dev");
    assert_eq!(grant.roles[0].logins, ["deploy"]);
    assert_eq!(grant.roles[0].hosts, ["web*", "!web-secret"]);
}

#[test]
fn login_not_granted_is_denied_with_the_allowed_ones() {
    let reason = denial(
        "alice",
        CertRequest {
            principals: Some(vec!["postgres".into()]),
            ..request()
        },
    );
    assert!(reason.contains("login postgres is not granted"), "{reason}");
    assert!(reason.contains("dev: alice, deploy"), "{reason}");
}

#[test]
fn a_template_expands_to_the_requester_only() {
    let reason = denial(
        "alice",
        CertRequest {
            principals: Some(vec!["bob".into()]),
            ..request()
        },
    );
    assert!(reason.contains("login bob is not granted"), "{reason}");
}

#[test]
fn empty_and_malformed_principals_are_denied() {
    let reason = denial(
        "alice",
        CertRequest {
            principals: Some(vec![]),
            ..request()
        },
    );
    assert!(reason.contains("empty principal list"), "{reason}");
    for bad in ["", "a,b", "a b", "*", "x\n"] {
        let reason = denial(
            "alice",
            CertRequest {
                principals: Some(vec![bad.into()]),
                ..request()
            },
        );
        assert!(reason.contains("principal"), "{bad:?}: {reason}");
    }
}

#[test]
fn ttl_over_max_names_the_role() {
    let reason = denial(
        "alice",
        CertRequest {
            principals: Some(vec!["root".into()]),
            ttl: Some("5h".parse().unwrap()),
            reason: Some("INC-42".into()),
            ..request()
        },
    );
    assert_eq!(reason, "ttl 5h exceeds max_ttl 1h for role ops");
}

#[test]
fn ttl_zero_is_denied() {
    let reason = denial(
        "alice",
        CertRequest {
            ttl: Some(HumanDuration::from_secs(0)),
            ..request()
        },
    );
    assert!(reason.contains("more than 0s"), "{reason}");
}

#[test]
fn requested_ttl_within_max_is_kept() {
    let grant = eval(
        "alice",
        CertRequest {
            principals: Some(vec!["deploy".into()]),
            ttl: Some("7h".parse().unwrap()),
            ..request()
        },
    )
    .unwrap();
    assert_eq!(grant.ttl, Duration::from_secs(7 * 3600));
}

#[test]
fn reason_required() {
    let only_ops = CertRequest {
        role: Some("ops".into()),
        ..request()
    };
    assert_eq!(
        denial("alice", only_ops.clone()),
        "role ops requires a reason (--reason TEXT)"
    );
    let grant = eval(
        "alice",
        CertRequest {
            reason: Some("INC-42".into()),
            ..only_ops
        },
    )
    .unwrap();
    assert_eq!(grant.principals, ["root"]);
    assert_eq!(grant.reason.as_deref(), Some("INC-42"));
    assert_eq!(grant.extensions, ["permit-pty"]);
}

#[test]
fn bad_reasons_are_denied() {
    for (reason, expect) in [
        (" ".to_string(), "empty"),
        ("x".repeat(MAX_REASON_LEN + 1), "longer"),
        ("a\u{1b}[31m".to_string(), "control"),
    ] {
        let got = denial(
            "alice",
            CertRequest {
                reason: Some(reason),
                ..request()
            },
        );
        assert!(got.contains(expect), "{got}");
    }
}

#[test]
fn role_not_held_is_denied() {
    assert_eq!(
        denial(
            "carol",
            CertRequest {
                role: Some("dev".into()),
                ..request()
            }
        ),
        "user carol does not have role dev"
    );
}

#[test]
fn unknown_user_is_denied() {
    assert!(denial("mallory", request()).contains("unknown user"));
}

#[test]
fn approval_required_without_request() {
    let reason = denial(
        "alice",
        CertRequest {
            role: Some("prod-admin".into()),
            ..request()
        },
    );
    assert!(
        reason.contains("requires an approved access request (2 approvals from lead)"),
        "{reason}"
    );
}

#[test]
fn approved_request_limits_role_window_and_names_request() {
    let approved = ApprovedWindow {
        request_id: "r-1234".into(),
        role: "prod-admin".into(),
        not_after: MONDAY_10AM + 1800,
        reason: Some("CHG-7".into()),
    };
    let grant = eval(
        "alice",
        CertRequest {
            approved: Some(approved.clone()),
            ..request()
        },
    )
    .unwrap();
    assert_eq!(grant.principals, ["root"]);
    assert_eq!(grant.roles.len(), 1);
    assert_eq!(grant.roles[0].hosts, ["prod*"]);
    assert_eq!(
        grant.ttl,
        Duration::from_secs(1800),
        "cut to the approved window"
    );
    assert_eq!(grant.key_id, "alice request=r-1234");
    assert_eq!(grant.reason.as_deref(), Some("CHG-7"));

    let expired = ApprovedWindow {
        not_after: MONDAY_10AM,
        ..approved.clone()
    };
    assert!(
        denial(
            "alice",
            CertRequest {
                approved: Some(expired),
                ..request()
            }
        )
        .contains("expired")
    );

    let other_role = CertRequest {
        approved: Some(approved),
        role: Some("dev".into()),
        ..request()
    };
    assert!(denial("alice", other_role).contains("approved for role prod-admin"));
}

#[test]
fn allowed_hours_deny_outside_and_cut_inside() {
    let policy = policy();
    let req = CertRequest {
        role: Some("office".into()),
        ..request()
    };
    let saturday = MONDAY_10AM + 5 * 86_400;
    let reason = policy.evaluate("alice", &req, saturday).unwrap_err().reason;
    assert_eq!(
        reason,
        "role office may only be used during Mon-Fri 08:00-18:00 UTC"
    );
    let at_five = MONDAY_10AM + 7 * 3600;
    let grant = policy.evaluate("alice", &req, at_five).unwrap();
    assert_eq!(
        grant.ttl,
        Duration::from_secs(1800),
        "default 30m fits before 18:00"
    );
    let late = CertRequest {
        ttl: Some("4h".parse().unwrap()),
        ..req
    };
    let grant = policy.evaluate("alice", &late, at_five).unwrap();
    assert_eq!(grant.ttl, Duration::from_secs(3600), "cut at 18:00");
}

#[test]
fn force_command_and_source_address_come_from_the_role() {
    let grant = eval("carol", request()).unwrap();
    assert_eq!(grant.force_command.as_deref(), Some("/usr/bin/deploy"));
    assert_eq!(grant.source_address, Some(vec!["10.0.0.0/8".to_string()]));
    assert_eq!(
        grant.ttl,
        Duration::from_secs(15 * 60),
        "default_ttl capped by max_ttl"
    );
}

#[test]
fn conflicting_force_commands_need_a_role_choice() {
    let reason = denial(
        "bob",
        CertRequest {
            principals: Some(vec!["ci".into()]),
            ..request()
        },
    );
    assert!(
        reason.contains("set different force_command; choose one with --role"),
        "{reason}"
    );
    let grant = eval(
        "bob",
        CertRequest {
            principals: Some(vec!["ci".into()]),
            role: Some("ci2".into()),
            ..request()
        },
    )
    .unwrap();
    assert_eq!(grant.force_command.as_deref(), Some("/usr/bin/other"));
    assert_eq!(grant.source_address, None);
}

#[test]
fn extensions_are_the_intersection_of_roles() {
    let grant = eval(
        "alice",
        CertRequest {
            reason: Some("INC-1".into()),
            principals: Some(vec!["deploy".into(), "root".into()]),
            ..request()
        },
    )
    .unwrap();
    assert_eq!(grant.extensions, ["permit-pty"]);
    let dev_only = eval(
        "alice",
        CertRequest {
            principals: Some(vec!["deploy".into()]),
            ..request()
        },
    )
    .unwrap();
    assert_eq!(dev_only.extensions.len(), 5);
}

#[test]
fn evaluation_is_deterministic() {
    let a = eval("alice", request()).unwrap();
    let b = eval("alice", request()).unwrap();
    assert_eq!(a, b);
}

fn parse_err(text: &str) -> String {
    Policy::parse(text, "policy.toml").unwrap_err().to_string()
}

#[test]
fn policy_errors_name_file_line_and_key() {
    let err = parse_err("[[roles]]\nname = \"r\"\nlogins = []\nmax_ttl = \"1h\"\n");
    assert!(
        err.starts_with("policy.toml:3: key roles[0].logins"),
        "{err}"
    );
    let err = parse_err("[[roles]]\nname = \"r\"\nlogins = [\"a\"]\nmax_ttl = \"banana\"\n");
    assert!(err.starts_with("policy.toml:4:"), "{err}");
    assert!(err.contains("banana"), "{err}");
    let err = parse_err("[[roles]]\nname = \"r\"\nlogins = [\"a\"]\nmax_ttl = \"1h\"\ncolor = 1\n");
    assert!(err.contains("color"), "{err}");
    let err = parse_err("[[users]]\nname = \"u\"\nkeys = [\"ssh-ed25519 AAAAnotakey\"]\n");
    assert!(err.starts_with("policy.toml:3: key users[0].keys"), "{err}");
    let err = parse_err("[[users]]\nname = \"u\"\nroles = [\"ghost\"]\n");
    assert!(err.contains("unknown role \"ghost\""), "{err}");
    let err = parse_err(
        "[[roles]]\nname = \"r\"\nlogins = [\"a\"]\nmax_ttl = \"1h\"\ndefault_ttl = \"2h\"\n",
    );
    assert!(err.contains("default_ttl"), "{err}");
    let err = parse_err(
        "[[roles]]\nname = \"r\"\nlogins = [\"a\"]\nmax_ttl = \"1h\"\nsource_address = [\"nope\"]\n",
    );
    assert!(err.contains("not an IP address"), "{err}");
    let err =
        parse_err("[[roles]]\nname = \"r\"\nlogins = [\"a\"]\nmax_ttl = \"1h\"\napprovals = 1\n");
    assert!(err.contains("names no approvers"), "{err}");
    let err = parse_err("[[roles]]\nname = \"r\"\nlogins = [\"a b\"]\nmax_ttl = \"1h\"\n");
    assert!(err.contains("contains"), "{err}");
}

#[test]
fn a_key_may_belong_to_one_user_only() {
    let text = format!(
        "[[users]]\nname = \"a\"\nkeys = [\"{ALICE_KEY}\"]\n[[users]]\nname = \"b\"\nkeys = [\"{ALICE_KEY}\"]\n"
    );
    assert!(parse_err(&text).contains("belongs to both a and b"));
}

#[test]
fn duplicate_names_are_refused() {
    let err = parse_err(
        "[[roles]]\nname = \"r\"\nlogins = [\"a\"]\nmax_ttl = \"1h\"\n[[roles]]\nname = \"r\"\nlogins = [\"a\"]\nmax_ttl = \"1h\"\n",
    );
    assert!(err.contains("duplicate role"), "{err}");
}

#[test]
fn the_api_s_own_user_names_are_reserved() {
    for name in RESERVED_USER_NAMES {
        let err = parse_err(&format!("[[users]]\nname = \"{name}\"\n"));
        assert!(err.starts_with("policy.toml:2: key users[0].name"), "{err}");
        assert!(err.contains("reserved"), "{err}");
    }
}

#[test]
fn direct_certificates_only_from_direct_roles_capped_and_marked() {
    let direct = |role: Option<&str>, ttl: Option<&str>| CertRequest {
        direct: true,
        role: role.map(str::to_string),
        ttl: ttl.map(|t| t.parse().unwrap()),
        ..request()
    };
    let grant = eval("alice", direct(None, None)).unwrap();
    assert!(grant.direct);
    assert_eq!(grant.key_id, "alice break-glass");
    let names: Vec<&str> = grant.roles.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["dev"], "only the direct role");
    assert_eq!(grant.principals, ["alice", "deploy"]);
    assert_eq!(grant.ttl, Duration::from_secs(3600));

    let grant = eval("alice", direct(None, Some("4h"))).unwrap();
    assert_eq!(grant.ttl, MAX_DIRECT_TTL, "cut to the break-glass cap");
    assert!(grant.trace.iter().any(|d| d.rule.contains("break-glass")));
    assert!(denial("alice", direct(None, Some("9h"))).contains("exceeds max_ttl 8h"));

    assert_eq!(
        denial("bob", direct(None, None)),
        "no role of user bob allows direct (break-glass) certificates (direct = true): go through the bastion"
    );
    assert!(
        denial("alice", direct(Some("office"), None))
            .starts_with("role office does not allow direct")
    );

    let plain = eval("alice", request()).unwrap();
    assert!(!plain.direct);
    assert_eq!(plain.key_id, "alice");
}

#[test]
fn the_documented_policy_parses_with_its_sso_groups() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/policy.toml");
    let policy = Policy::load(&path).unwrap();
    assert_eq!(policy.sso().groups()[0].claim, "ops");
}

#[test]
fn sso_groups_naming_an_unknown_role_are_refused_with_the_key() {
    let text = "[[roles]]\nname = \"dev\"\nlogins = [\"{user}\"]\nmax_ttl = \"1h\"\n\n\
                [[sso.groups]]\nclaim = \"ops\"\nroles = [\"nope\"]\n";
    let err = Policy::parse(text, "policy.toml").unwrap_err().to_string();
    assert!(err.contains("sso.groups[0].roles"), "{err}");
    assert!(err.contains("nope"), "{err}");
}

#[test]
fn a_person_from_sso_gets_every_rule_of_their_roles() {
    let text = "[[roles]]\nname = \"dev\"\nlogins = [\"{user}\"]\nmax_ttl = \"1h\"\nrequire_reason = true\n\n\
                [[sso.groups]]\nclaim = \"ops\"\nroles = [\"dev\"]\n";
    let policy = Policy::parse(text, "policy.toml").unwrap();
    let (person, matched) = policy
        .sso()
        .person("carol@example.com", &["ops".to_string()]);
    assert_eq!(matched, vec!["ops".to_string()]);
    let denial = policy
        .evaluate_for(&person, &CertRequest::default(), 0)
        .unwrap_err();
    assert!(denial.reason.contains("reason"), "{denial}");
    let grant = policy
        .evaluate_for(
            &person,
            &CertRequest {
                reason: Some("INC-1".into()),
                ttl: Some(HumanDuration::from_secs(7200)),
                ..CertRequest::default()
            },
            0,
        )
        .unwrap_err();
    assert!(grant.reason.contains("max_ttl"), "{grant}");
    let grant = policy
        .evaluate_for(
            &person,
            &CertRequest {
                reason: Some("INC-1".into()),
                ..CertRequest::default()
            },
            0,
        )
        .unwrap();
    assert_eq!(grant.principals, vec!["carol@example.com".to_string()]);
}

#[test]
fn an_auditor_role_is_carried_in_the_grant_and_only_then() {
    let text = format!(
        r#"
[[roles]]
name = "audit"
logins = ["{{user}}"]
max_ttl = "8h"
auditor = true

[[roles]]
name = "dev"
logins = ["deploy"]
hosts = ["web*"]
max_ttl = "8h"

[[users]]
name = "alice"
keys = ["{ALICE_KEY}"]
roles = ["audit", "dev"]
"#
    );
    let policy = Policy::parse(&text, "policy.toml").unwrap();
    let grant = policy.evaluate("alice", &request(), MONDAY_10AM).unwrap();
    let json = serde_json::to_string(&grant.roles).unwrap();
    assert!(
        json.contains(r#""name":"audit","logins":["alice"],"hosts":[],"auditor":true"#),
        "{json}"
    );
    // Roles that are not auditors say nothing (grants read as before by older bastions).
    assert!(
        json.contains(r#""name":"dev","logins":["deploy"],"hosts":["web*"]}"#),
        "{json}"
    );
    let back: Vec<RoleGrant> = serde_json::from_str(&json).unwrap();
    assert_eq!(back, grant.roles);
}
