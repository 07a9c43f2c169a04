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
        let key = self
            .keys
            .key(parsed.header.kid.as_deref(), expect.now)
            .await?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{self, TestKey};
    use serde_json::json;
    use std::time::Instant;

    const ISSUER: &str = "https://ci.example";

    struct Fixture {
        _dir: tempfile::TempDir,
        path: std::path::PathBuf,
        verifier: Verifier,
    }

    fn fixture(keys: &[&TestKey], min_refresh: Duration) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jwks.json");
        std::fs::write(&path, testing::jwks(keys).to_string()).unwrap();
        let http = HttpClient::new().unwrap();
        let cache = JwksCache::new(ISSUER, JwksSource::File(path.clone()), http)
            .with_min_refresh(min_refresh);
        Fixture {
            _dir: dir,
            path,
            verifier: Verifier::with_cache(cache),
        }
    }

    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_800_000_000)
    }

    fn expect() -> Expectations<'static> {
        Expectations {
            audience: "jitssh",
            nonce: None,
            now: now(),
            skew: DEFAULT_SKEW,
        }
    }

    fn claims() -> Value {
        json!({
            "iss": ISSUER, "aud": ["other", "jitssh"], "sub": "repo:acme/deploy:ref:refs/heads/main",
            "iat": 1_800_000_000 - 10, "nbf": 1_800_000_000 - 10, "exp": 1_800_000_000 + 300,
            "jti": "j1",
        })
    }

    fn with(change: &[(&str, Value)]) -> Value {
        let mut claims = claims();
        for (name, value) in change {
            claims[*name] = value.clone();
        }
        claims
    }

    async fn refused(f: &Fixture, token: &str) -> String {
        f.verifier
            .verify(token, &expect())
            .await
            .expect_err("token must be refused")
            .to_string()
    }

    #[tokio::test]
    async fn rs256_es256_and_eddsa_tokens_verify_and_return_their_claims() {
        let (rsa, ec, ed) = (TestKey::rsa("r"), TestKey::p256("e"), TestKey::ed25519("d"));
        let f = fixture(&[&rsa, &ec, &ed], MIN_REFRESH_FOR_TESTS);
        for key in [&rsa, &ec, &ed] {
            let verified = f.verifier.verify(&key.sign(&claims()), &expect()).await;
            let verified = verified.unwrap_or_else(|e| panic!("{}: {e}", key.alg()));
            assert_eq!(verified["sub"], "repo:acme/deploy:ref:refs/heads/main");
        }
        assert_eq!(f.verifier.keys().fetches().await, 1, "keys are cached");
    }

    const MIN_REFRESH_FOR_TESTS: Duration = Duration::from_secs(600);

    #[tokio::test]
    async fn claims_are_checked_with_one_clear_reason_each() {
        let key = TestKey::p256("e");
        let f = fixture(&[&key], MIN_REFRESH_FOR_TESTS);
        let cases = [
            (
                with(&[("aud", json!("someone-else"))]),
                "audience someone-else not accepted (expected jitssh)",
            ),
            (
                with(&[("iss", json!("https://evil.example"))]),
                "issuer https://evil.example not accepted (expected https://ci.example)",
            ),
            (
                with(&[("exp", json!(1_800_000_000 - 61))]),
                "token expired at 2027-01-15T07:58:59Z",
            ),
            (
                with(&[("nbf", json!(1_800_000_000 + 61))]),
                "token not valid before",
            ),
            (
                with(&[("iat", json!(1_800_000_000 + 61))]),
                "token issued in the future",
            ),
            (with(&[("exp", json!("tomorrow"))]), "claim exp missing"),
        ];
        for (claims, reason) in cases {
            let err = refused(&f, &key.sign(&claims)).await;
            assert!(err.starts_with(reason), "{claims}: {err}");
        }
        let mut no_exp = claims();
        no_exp.as_object_mut().unwrap().remove("exp");
        assert_eq!(
            refused(&f, &key.sign(&no_exp)).await,
            "claim exp missing or not of the right type"
        );
        // Within the skew: accepted.
        let skewed = with(&[
            ("exp", json!(1_800_000_000 - 59)),
            ("nbf", json!(1_800_000_000 + 59)),
        ]);
        assert!(
            f.verifier
                .verify(&key.sign(&skewed), &expect())
                .await
                .is_ok()
        );
    }

    #[tokio::test]
    async fn none_and_hs256_with_the_public_key_as_secret_are_refused() {
        let key = TestKey::rsa("r");
        let f = fixture(&[&key], MIN_REFRESH_FOR_TESTS);
        assert_eq!(
            refused(&f, &testing::unsigned("r", &claims())).await,
            "alg none refused"
        );
        // The classic key-confusion attack: HMAC keyed with the issuer's public key, in the
        // encodings an attacker would try.
        for secret in [
            key.public_bytes(),
            key.jwk()["n"].as_str().unwrap().as_bytes().to_vec(),
        ] {
            let token = testing::hs256(&secret, "r", &claims());
            assert_eq!(
                refused(&f, &token).await,
                "alg HS256 refused (symmetric algorithms are never accepted)"
            );
        }
        // A JWKS that slips in a secret key still cannot be used.
        std::fs::write(
            &f.path,
            json!({"keys": [key.jwk(), {"kty": "oct", "kid": "s", "k": "c2VjcmV0"}]}).to_string(),
        )
        .unwrap();
        let token = testing::hs256(b"secret", "s", &claims());
        assert!(refused(&f, &token).await.starts_with("alg HS256 refused"));
    }

    #[tokio::test]
    async fn tampered_payload_and_wrong_key_type_are_refused() {
        let (rsa, ec) = (TestKey::rsa("r"), TestKey::p256("e"));
        let f = fixture(&[&rsa, &ec], MIN_REFRESH_FOR_TESTS);
        let good = rsa.sign(&claims());
        let forged = testing::tampered(
            &good,
            &with(&[("sub", json!("repo:acme/other:ref:refs/heads/main"))]),
        );
        assert_eq!(refused(&f, &forged).await, "bad signature (key r)");
        // An ES256 signature presented as the RSA key's.
        let confused = ec.sign_with_header(&json!({"alg": "ES256", "kid": "r"}), &claims());
        assert_eq!(
            refused(&f, &confused).await,
            "alg ES256 does not match key r (RSA RS256)"
        );
        // No kid with several keys: refused rather than tried against each.
        let no_kid = ec.sign_with_header(&json!({"alg": "ES256"}), &claims());
        assert!(
            refused(&f, &no_kid)
                .await
                .starts_with("token has no key id")
        );
    }

    #[tokio::test]
    async fn an_unknown_kid_refreshes_once_then_is_refused_and_floods_are_rate_limited() {
        let (old, new) = (TestKey::p256("old"), TestKey::p256("new"));
        let f = fixture(&[&old], MIN_REFRESH_FOR_TESTS);
        f.verifier
            .verify(&old.sign(&claims()), &expect())
            .await
            .unwrap();
        assert_eq!(f.verifier.keys().fetches().await, 1);
        // Rotation: the issuer publishes the new key; a token under it triggers a refresh...
        std::fs::write(&f.path, testing::jwks(&[&old, &new]).to_string()).unwrap();
        let fresh = Fixture {
            verifier: Verifier::with_cache(
                JwksCache::new(
                    ISSUER,
                    JwksSource::File(f.path.clone()),
                    HttpClient::new().unwrap(),
                )
                .with_min_refresh(Duration::ZERO),
            ),
            ..f
        };
        fresh
            .verifier
            .verify(&old.sign(&claims()), &expect())
            .await
            .unwrap();
        fresh
            .verifier
            .verify(&new.sign(&claims()), &expect())
            .await
            .unwrap();
        let stranger = TestKey::p256("stranger");
        let err = refused(&fresh, &stranger.sign(&claims())).await;
        assert_eq!(err, "unknown key id stranger at https://ci.example");
        assert_eq!(
            fresh.verifier.keys().fetches().await,
            2,
            "one refresh for the unknown kid"
        );
        // ...and with the rate limit, a flood of made-up kids costs no further fetch.
        let limited = fixture(&[&old], MIN_REFRESH_FOR_TESTS);
        limited
            .verifier
            .verify(&old.sign(&claims()), &expect())
            .await
            .unwrap();
        for i in 0..50 {
            let token = stranger
                .sign_with_header(&json!({"alg": "ES256", "kid": format!("k{i}")}), &claims());
            assert!(
                refused(&limited, &token)
                    .await
                    .starts_with("unknown key id")
            );
        }
        assert_eq!(limited.verifier.keys().fetches().await, 1);
        // Once the interval has passed on the caller's clock, an unknown kid refreshes again.
        let later = Expectations {
            now: now() + MIN_REFRESH_FOR_TESTS + Duration::from_secs(1),
            ..expect()
        };
        let err = limited
            .verifier
            .verify(&stranger.sign(&claims()), &later)
            .await;
        assert!(matches!(
            err,
            Err(VerifyError::Expired { .. }) | Err(VerifyError::UnknownKid { .. })
        ));
        assert_eq!(limited.verifier.keys().fetches().await, 2);
    }

    #[tokio::test]
    async fn nonce_is_checked_when_expected() {
        let key = TestKey::ed25519("d");
        let f = fixture(&[&key], MIN_REFRESH_FOR_TESTS);
        let token = key.sign(&with(&[("nonce", json!("n-1"))]));
        let mut e = expect();
        e.nonce = Some("n-1");
        assert!(f.verifier.verify(&token, &e).await.is_ok());
        e.nonce = Some("n-2");
        let err = f.verifier.verify(&token, &e).await.unwrap_err();
        assert_eq!(err.to_string(), "nonce does not match");
    }

    #[tokio::test]
    async fn an_issuer_that_is_down_fails_fast_with_a_clear_reason() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let issuer = format!("http://127.0.0.1:{port}");
        let verifier = Verifier::new(
            issuer.clone(),
            JwksSource::Discovery,
            HttpClient::new().unwrap(),
        );
        let key = TestKey::p256("e");
        let token = key.sign(&with(&[("iss", json!(issuer))]));
        let started = Instant::now();
        let err = verifier
            .verify(&token, &expect())
            .await
            .unwrap_err()
            .to_string();
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        assert!(
            err.starts_with(&format!("cannot fetch the keys of {issuer}: cannot reach {issuer}/.well-known/openid-configuration: connection failed: Connection refused")),
            "{err}"
        );
        // The next try within the interval does not hit the issuer again.
        let err = verifier
            .verify(&token, &expect())
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("next try in"), "{err}");
        assert_eq!(verifier.keys().fetches().await, 1);
    }
}
