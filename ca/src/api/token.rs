//! Verifying a signed identity token sent on stdin, for every kind of token rule
//! (`[[workloads]]`, `[[hosts_by_token]]`): one verifier path. The token is checked against the
//! rules of its issuer (signature against the issuer's JWKS, `iss`, `aud`, `exp`/`nbf`/`iat`);
//! which rule admits it is the caller's business.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use jitssh_authority::authority::Authority;
use jitssh_core::policy::workloads::{JwksLocation, TokenRule};
use jitssh_core::ssh_key::{HashAlg, PublicKey};
use jitssh_identity::jws::{self, MAX_TOKEN_BYTES};
use jitssh_identity::verify::DEFAULT_SKEW;
use jitssh_identity::{Claims, Expectations, HttpClient, JwksSource, Verifier};
use serde_json::Value;

use super::commands::CommandOutput;

/// Most issuer verifiers kept (one per issuer and key location in the policy).
const MAX_VERIFIERS: usize = 64;

/// Verifiers by issuer and key location.
type VerifierMap = HashMap<(String, JwksLocation), Arc<Verifier>>;

/// The key caches, one per (issuer, key location), kept across connections, policy reloads
/// and kinds of rule, so keys are not fetched per token.
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

/// A token whose signature and standard claims verified.
pub(super) struct Verified {
    /// Its issuer (`iss`), one of the rules' issuers.
    pub issuer: String,
    /// Its claims.
    pub claims: Claims,
}

impl Verified {
    /// The token's audiences (`aud`, one or many).
    pub fn audiences(&self) -> Vec<&str> {
        match self.claims.get("aud") {
            Some(Value::String(one)) => vec![one.as_str()],
            Some(Value::Array(many)) => many.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        }
    }

    /// Its subject, `-` without one.
    pub fn sub(&self) -> String {
        self.string("sub").unwrap_or_else(|| "-".to_string())
    }

    /// Its token id, if any.
    pub fn jti(&self) -> Option<String> {
        self.string("jti")
    }

    /// Its expiry: verified present and numeric (possibly fractional); a spent `jti` is kept
    /// until then.
    pub fn expires_at(&self) -> u64 {
        self.claims
            .get("exp")
            .and_then(|exp| {
                exp.as_u64()
                    .or_else(|| exp.as_f64().map(|f| f.ceil() as u64))
            })
            .unwrap_or(u64::MAX)
    }

    fn string(&self, name: &str) -> Option<String> {
        self.claims
            .get(name)
            .and_then(Value::as_str)
            .map(str::to_string)
    }
}

/// Why a token was not verified.
pub(super) enum Failure {
    /// No token at all: a usage message, not audited.
    Usage(String),
    /// Refused: the reason (one line) and the token's unverified claims when readable; to be
    /// audited.
    Refused(String, Option<Claims>),
    /// The CA could not verify (no HTTP client).
    Internal(String),
}

/// The unverified claim `name` of `claims`, for audit records of refusals.
pub(super) fn claimed(claims: Option<&Claims>, name: &str) -> Option<String> {
    claims
        .and_then(|c| c.get(name))
        .and_then(Value::as_str)
        .map(str::to_string)
}

/// Verifies the token on `stdin` against the `rules` (of one kind, called `section` in
/// messages) of its issuer. `usage` is the message for an empty stdin.
pub(super) async fn verify<R: TokenRule>(
    rules: &[R],
    section: &str,
    stdin: &[u8],
    usage: &str,
) -> Result<Verified, Failure> {
    let token = match std::str::from_utf8(stdin).map(str::trim) {
        Ok("") => return Err(Failure::Usage(usage.to_string())),
        Ok(token) if token.len() > MAX_TOKEN_BYTES => {
            return Err(Failure::Refused(
                format!("token longer than {MAX_TOKEN_BYTES} bytes"),
                None,
            ));
        }
        Ok(token) => token,
        Err(_) => return Err(Failure::Refused("token is not UTF-8".into(), None)),
    };
    let unverified =
        jws::unverified_claims(token).map_err(|err| Failure::Refused(err.to_string(), None))?;
    let Some(issuer) = claimed(Some(&unverified), "iss") else {
        return Err(Failure::Refused(
            "token has no iss claim".into(),
            Some(unverified),
        ));
    };
    let of_issuer: Vec<&R> = rules.iter().filter(|r| r.issuer() == issuer).collect();
    let Some(first) = of_issuer.first() else {
        let why = format!(
            "issuer {} is not configured in [[{section}]]",
            issuer.chars().take(120).collect::<String>()
        );
        return Err(Failure::Refused(why, Some(unverified)));
    };
    let verifier = verifier(&issuer, &first.jwks_location()).map_err(Failure::Internal)?;
    let mut audiences: Vec<&str> = of_issuer.iter().map(|r| r.audience()).collect();
    audiences.dedup();
    let now = jitssh_core::clock::now();
    let mut first_error = None;
    for audience in &audiences {
        let expect = Expectations {
            audience,
            nonce: None,
            now,
            skew: DEFAULT_SKEW,
        };
        match verifier.verify(token, &expect).await {
            Ok(claims) => return Ok(Verified { issuer, claims }),
            Err(err) => {
                let wrong_audience = matches!(err, jitssh_identity::VerifyError::Audience { .. });
                first_error.get_or_insert(err);
                if !wrong_audience {
                    break;
                }
            }
        }
    }
    let why = first_error.map_or_else(|| "not verified".to_string(), |e| e.to_string());
    Err(Failure::Refused(why, Some(unverified)))
}

/// How a refused token is audited (the workload and host variants differ in who asked).
pub(super) type AuditRefusal = fn(
    &Authority,
    &str,
    &str,
    Option<&str>,
    Option<&str>,
) -> Result<(), jitssh_authority::authority::IssueError>;

/// A token refused before any rule admitted it: audited with `audit`, answered in one line.
pub(super) async fn refused(
    authority: &Arc<Authority>,
    key: &PublicKey,
    reason: String,
    claims: Option<&Claims>,
    audit: AuditRefusal,
) -> CommandOutput {
    let (iss, sub) = (claimed(claims, "iss"), claimed(claims, "sub"));
    let fingerprint = key.fingerprint(HashAlg::Sha256).to_string();
    let (authority, line) = (authority.clone(), reason.clone());
    let written = tokio::task::spawn_blocking(move || {
        audit(
            &authority,
            &fingerprint,
            &line,
            iss.as_deref(),
            sub.as_deref(),
        )
    })
    .await;
    if !matches!(written, Ok(Ok(()))) {
        tracing::error!("cannot audit a refused token");
        return CommandOutput::fail("internal error: cannot audit; nothing issued");
    }
    CommandOutput::fail(format!("token refused: {reason}"))
}
