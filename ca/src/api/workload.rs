//! The CA API for workloads: `ssh -p 2200 workload@ca cert --token-file - < token.jwt`.
//!
//! Any key may log in as `workload` (the login proves possession of the key; the certificate
//! is issued for it). The token on stdin is verified against the `[[workloads]]` rules of its
//! issuer (signature against the issuer's JWKS, `iss`, `aud`, `exp`/`nbf`/`iat`), the first
//! rule whose `match` conditions hold names the workload and its roles, and the role rules
//! decide the certificate as for a person. Every refusal is audited and answered in one line.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, OnceLock};

use jitssh_authority::authority::Authority;
use jitssh_authority::workload::{self, WorkloadIdentity};
use jitssh_core::policy::CertRequest;
use jitssh_core::policy::workloads::{self as rules, JwksLocation};
use jitssh_core::ssh_key::{HashAlg, PublicKey};
use jitssh_identity::jws::{self, MAX_TOKEN_BYTES};
use jitssh_identity::verify::DEFAULT_SKEW;
use jitssh_identity::{Claims, Expectations, HttpClient, JwksSource, Verifier};
use serde_json::Value;

use super::commands::{self, ApiCommand, CertArgs, CommandOutput};
use super::{Identity, commands::dry_run_output};

/// Most issuer verifiers kept (one per issuer and key location in the policy).
const MAX_VERIFIERS: usize = 64;

/// Verifiers by issuer and key location.
type VerifierMap = HashMap<(String, JwksLocation), Arc<Verifier>>;

/// The key caches, one per (issuer, key location), kept across connections and policy
/// reloads so keys are not fetched per token.
fn verifier(issuer: &str, location: &JwksLocation) -> Result<Arc<Verifier>, String> {
    static VERIFIERS: OnceLock<Mutex<VerifierMap>> = OnceLock::new();
    static HTTP: OnceLock<Result<HttpClient, String>> = OnceLock::new();
    let http = HTTP
        .get_or_init(|| HttpClient::new().map_err(|err| err.to_string()))
        .clone()?;
    let mut map = VERIFIERS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    let key = (issuer.to_string(), location.clone());
    if let Some(found) = map.get(&key) {
        return Ok(found.clone());
    }
    if map.len() >= MAX_VERIFIERS {
        // Only issuers named in the policy get here; a policy with more is pruned at random.
        map.clear();
    }
    let source = match location {
        JwksLocation::Discovery => JwksSource::Discovery,
        JwksLocation::Url(url) => JwksSource::Url(url.clone()),
        JwksLocation::File(path) => JwksSource::File(path.clone()),
    };
    let made = Arc::new(Verifier::new(issuer, source, http));
    map.insert(key, made.clone());
    Ok(made)
}

/// Runs `command` for a key logged in as `workload`.
pub async fn run(
    authority: Arc<Authority>,
    key: PublicKey,
    command: ApiCommand,
    stdin: Vec<u8>,
    peer: Option<IpAddr>,
) -> CommandOutput {
    match command {
        ApiCommand::Cert(args) => cert(authority, key, args, stdin).await,
        other @ (ApiCommand::CaKeys | ApiCommand::Krl) => {
            let identity = Identity::Workload { key };
            blocking(move || commands::run(&authority, &identity, other, &[], peer)).await
        }
        _ => CommandOutput::fail(
            "as user `workload` you may run: cert --token-file - (a JWT on stdin), ca-keys, krl",
        ),
    }
}

async fn blocking(task: impl FnOnce() -> CommandOutput + Send + 'static) -> CommandOutput {
    tokio::task::spawn_blocking(task)
        .await
        .unwrap_or_else(|err| CommandOutput::fail(format!("internal error: {err}")))
}

/// A token refused before any rule admitted it: audited, answered in one line.
async fn refused(
    authority: &Arc<Authority>,
    key: &PublicKey,
    reason: String,
    claims: Option<&Claims>,
) -> CommandOutput {
    let claim = |name: &str| {
        claims
            .and_then(|c| c.get(name))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let (iss, sub) = (claim("iss"), claim("sub"));
    let fingerprint = key.fingerprint(HashAlg::Sha256).to_string();
    let (authority, line) = (authority.clone(), reason.clone());
    let written = tokio::task::spawn_blocking(move || {
        workload::audit_refused_token(
            &authority,
            &fingerprint,
            &line,
            iss.as_deref(),
            sub.as_deref(),
        )
    })
    .await;
    if !matches!(written, Ok(Ok(()))) {
        tracing::error!("cannot audit a refused workload token");
        return CommandOutput::fail("internal error: cannot audit; nothing issued");
    }
    CommandOutput::fail(format!("token refused: {reason}"))
}

async fn cert(
    authority: Arc<Authority>,
    key: PublicKey,
    args: CertArgs,
    stdin: Vec<u8>,
) -> CommandOutput {
    if args.token_file.as_deref() != Some("-") {
        return CommandOutput::fail(
            "workloads send a token: ssh workload@<ca> cert --token-file - < token.jwt",
        );
    }
    if args.request.is_some() {
        return CommandOutput::fail("workloads cannot use access requests (--request)");
    }
    let token = match std::str::from_utf8(&stdin).map(str::trim) {
        Ok("") => {
            return CommandOutput::fail(
                "no token on stdin: ssh workload@<ca> cert --token-file - < token.jwt",
            );
        }
        Ok(token) if token.len() > MAX_TOKEN_BYTES => {
            return refused(
                &authority,
                &key,
                format!("token longer than {MAX_TOKEN_BYTES} bytes"),
                None,
            )
            .await;
        }
        Ok(token) => token.to_string(),
        Err(_) => return refused(&authority, &key, "token is not UTF-8".into(), None).await,
    };
    let unverified = match jws::unverified_claims(&token) {
        Ok(claims) => claims,
        Err(err) => return refused(&authority, &key, err.to_string(), None).await,
    };
    let Some(issuer) = unverified
        .get("iss")
        .and_then(Value::as_str)
        .map(str::to_string)
    else {
        return refused(
            &authority,
            &key,
            "token has no iss claim".into(),
            Some(&unverified),
        )
        .await;
    };
    let policy = authority.policy();
    let of_issuer: Vec<&rules::WorkloadRule> = policy
        .workloads()
        .iter()
        .filter(|r| r.issuer == issuer)
        .collect();
    let Some(first) = of_issuer.first() else {
        let why = format!(
            "issuer {} is not configured in [[workloads]]",
            issuer.chars().take(120).collect::<String>()
        );
        return refused(&authority, &key, why, Some(&unverified)).await;
    };
    let verifier = match verifier(&issuer, &first.jwks_location()) {
        Ok(verifier) => verifier,
        Err(why) => return CommandOutput::fail(format!("internal error: {why}")),
    };
    let mut audiences: Vec<&str> = of_issuer.iter().map(|r| r.audience.as_str()).collect();
    audiences.dedup();
    let now = jitssh_core::clock::now();
    let mut verified = None;
    let mut first_error = None;
    for audience in &audiences {
        let expect = Expectations {
            audience,
            nonce: None,
            now,
            skew: DEFAULT_SKEW,
        };
        match verifier.verify(&token, &expect).await {
            Ok(claims) => {
                verified = Some(claims);
                break;
            }
            Err(err) => {
                let wrong_audience = matches!(err, jitssh_identity::VerifyError::Audience { .. });
                first_error.get_or_insert(err);
                if !wrong_audience {
                    break;
                }
            }
        }
    }
    let Some(claims) = verified else {
        let why = first_error.map_or_else(|| "not verified".to_string(), |e| e.to_string());
        return refused(&authority, &key, why, Some(&unverified)).await;
    };
    let token_audiences: Vec<&str> = match claims.get("aud") {
        Some(Value::String(one)) => vec![one.as_str()],
        Some(Value::Array(many)) => many.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    let (rule_index, rule, name) =
        match rules::resolve(policy.workloads(), &issuer, &token_audiences, &claims) {
            Ok(found) => found,
            Err(why) => return refused(&authority, &key, why, Some(&claims)).await,
        };
    let identity = WorkloadIdentity {
        name,
        issuer: issuer.clone(),
        sub: claims
            .get("sub")
            .and_then(Value::as_str)
            .unwrap_or("-")
            .to_string(),
        jti: claims
            .get("jti")
            .and_then(Value::as_str)
            .map(str::to_string),
        // Verified present and numeric (possibly fractional): the jti is kept until then.
        expires_at: claims
            .get("exp")
            .and_then(|exp| {
                exp.as_u64()
                    .or_else(|| exp.as_f64().map(|f| f.ceil() as u64))
            })
            .unwrap_or(u64::MAX),
        rule: rule_index,
        roles: rule.roles.clone(),
    };
    let request = CertRequest {
        principals: args.principals.clone(),
        ttl: args.ttl,
        reason: args.reason.clone(),
        role: args.role.clone(),
        approved: None,
        direct: args.direct,
    };
    let subject = key.key_data().clone();
    blocking(move || {
        if args.dry_run {
            let (planned, shadow) =
                workload::plan_with_shadow(&authority, &identity, subject, &request);
            return dry_run_output(planned, shadow);
        }
        match workload::issue(&authority, &identity, subject, &request) {
            Ok(issued) => CommandOutput::ok(format!("{}\n", issued.line)),
            Err(err) => commands::issue_error(&err),
        }
    })
    .await
}
