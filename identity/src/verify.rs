//! Token verification: a compact JWS from one configured issuer, checked in an order that
//! never trusts what it has not checked yet: the header's `alg` (no `none`, no `HS*`), the key
//! its `kid` names (refreshed once if unknown), the signature, then the claims (`iss`, `aud`,
//! `exp`/`nbf`/`iat` with a bounded skew, `nonce`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::error::VerifyError;
use crate::http::HttpClient;
use crate::jwk::Alg;
use crate::jwks::{JwksCache, JwksSource};
use crate::jws;

/// A token's verified claims.
pub type Claims = serde_json::Map<String, Value>;

/// The default clock skew allowed on `exp`, `nbf` and `iat`.
pub const DEFAULT_SKEW: Duration = Duration::from_secs(60);

/// What a token must show beyond its signature.
#[derive(Debug, Clone)]
pub struct Expectations<'a> {
    /// An audience the token's `aud` must contain.
    pub audience: &'a str,
    /// The `nonce` the token must carry (ID tokens of a login that sent one).
    pub nonce: Option<&'a str>,
    /// Now, from the caller's clock (the project's injectable clock).
    pub now: SystemTime,
    /// Clock skew allowed on `exp`, `nbf` and `iat`.
    pub skew: Duration,
}

/// Verifies tokens of one issuer.
#[derive(Debug)]
pub struct Verifier {
    keys: JwksCache,
}

impl Verifier {
    /// A verifier for `issuer` with keys from `source`.
    pub fn new(issuer: impl Into<String>, source: JwksSource, http: HttpClient) -> Verifier {
        Verifier {
            keys: JwksCache::new(issuer, source, http),
        }
    }

    /// A verifier over an existing key cache (e.g. one with another refresh interval).
    pub fn with_cache(keys: JwksCache) -> Verifier {
        Verifier { keys }
    }

    /// The issuer whose tokens this verifies.
    pub fn issuer(&self) -> &str {
        self.keys.issuer()
    }

    /// The key cache.
    pub fn keys(&self) -> &JwksCache {
        &self.keys
    }

    /// Verifies `token` and returns its claims.
    pub async fn verify(
        &self,
        token: &str,
        expect: &Expectations<'_>,
    ) -> Result<Claims, VerifyError> {
        let parsed = jws::parse(token)?;
        let alg = Alg::parse(&parsed.header.alg)?;
        if parsed.header.crit.is_some() {
            return Err(VerifyError::Malformed(
                "critical header extensions (crit) are not supported".into(),
            ));
        }
        let key = self.keys.key(parsed.header.kid.as_deref()).await?;
        key.verify(alg, parsed.signing_input, &parsed.signature)?;
        check_claims(&parsed.claims, self.issuer(), expect)?;
        Ok(parsed.claims)
    }
}

/// Checks the claims of a token whose signature is verified.
pub fn check_claims(
    claims: &Claims,
    issuer: &str,
    expect: &Expectations<'_>,
) -> Result<(), VerifyError> {
    match claims.get("iss").and_then(Value::as_str) {
        Some(iss) if iss == issuer => {}
        Some(other) => {
            return Err(VerifyError::Issuer {
                expected: issuer.to_string(),
                found: printable(other),
            });
        }
        None => return Err(VerifyError::Claim("iss")),
    }
    let audiences: Vec<&str> = match claims.get("aud") {
        Some(Value::String(one)) => vec![one.as_str()],
        Some(Value::Array(many)) => many.iter().filter_map(Value::as_str).collect(),
        _ => return Err(VerifyError::Claim("aud")),
    };
    if !audiences.contains(&expect.audience) {
        return Err(VerifyError::Audience {
            expected: expect.audience.to_string(),
            found: printable(&audiences.join(",")),
        });
    }
    let now = expect
        .now
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs()) as i64;
    let skew = expect.skew.as_secs() as i64;
    let exp = time_claim(claims, "exp")?.ok_or(VerifyError::Claim("exp"))?;
    if now > exp.saturating_add(skew) {
        return Err(VerifyError::Expired { at: rfc3339(exp) });
    }
    if let Some(nbf) = time_claim(claims, "nbf")?
        && now.saturating_add(skew) < nbf
    {
        return Err(VerifyError::NotYetValid { at: rfc3339(nbf) });
    }
    if let Some(iat) = time_claim(claims, "iat")?
        && now.saturating_add(skew) < iat
    {
        return Err(VerifyError::IssuedInFuture { at: rfc3339(iat) });
    }
    if let Some(nonce) = expect.nonce
        && claims.get("nonce").and_then(Value::as_str) != Some(nonce)
    {
        return Err(VerifyError::Nonce);
    }
    Ok(())
}

/// A NumericDate claim (seconds, possibly fractional), `None` when absent.
fn time_claim(claims: &Claims, name: &'static str) -> Result<Option<i64>, VerifyError> {
    match claims.get(name) {
        None => Ok(None),
        Some(value) => match (value.as_i64(), value.as_f64()) {
            (Some(secs), _) => Ok(Some(secs)),
            (None, Some(secs)) if secs.is_finite() => Ok(Some(secs as i64)),
            _ => Err(VerifyError::Claim(name)),
        },
    }
}

/// Seconds since the epoch as RFC 3339 (UTC).
pub fn rfc3339(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|| format!("{secs} (seconds since 1970)"))
}

fn printable(text: &str) -> String {
    text.chars()
        .take(120)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}
