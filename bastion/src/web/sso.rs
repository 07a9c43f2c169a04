//! "Sign in with" the organisation's identity provider (`[web.sso]`): the OpenID Connect
//! authorization code flow with PKCE (S256).
//!
//! `/signin/sso` makes a fresh `state`, `nonce` and PKCE verifier, keeps them in memory under
//! a random pre-login id set as a short-lived cookie (HttpOnly, Secure, SameSite=Lax so it
//! comes back on the provider's redirect) and sends the browser to the provider.
//! `/signin/sso/callback` takes that pre-login (once: a replayed callback finds nothing),
//! checks `state`, trades the code at the token endpoint with the verifier, verifies the ID
//! token with [`jitssh_identity`] (signature, `iss`, `aud` = client id, `exp`, `nonce`), names
//! the person as the CA's `[sso]` does ([`SsoPerson::from_claims`]) and admits them only if
//! their groups map through the policy's `[[sso.groups]]` to a role with `auditor = true`.
//! The browser session then ends with the ID token (at most 12 h).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, UNIX_EPOCH};

use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine as _;
use jitssh_authority::sso::{SsoConfig, SsoPerson};
use jitssh_core::audit::AuditEvent;
use jitssh_core::policy::Policy;
use jitssh_core::policy::sso::check_person_name;
use jitssh_core::unix_now;
use jitssh_identity::http::MAX_DOCUMENT_BYTES;
use jitssh_identity::verify::DEFAULT_SKEW;
use jitssh_identity::{Expectations, FetchError, HttpClient, JwksSource, Verifier};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::auth::{COOKIE, random_id, same_secret};
use super::html::esc;
use super::pages::{cookie, error, html};
use super::{Console, Credential};

/// The pre-login cookie's name.
pub const PRELOGIN_COOKIE: &str = "jitssh_sso";
/// How long a person has at the identity provider before the pre-login is forgotten.
pub const PRELOGIN_TTL: Duration = Duration::from_secs(600);
/// Pre-logins waiting at once. Anyone may start one, so the table is bounded and, when full,
/// the oldest is forgotten (a flood can make a slow person start again, never take memory or
/// lock everyone out for [`PRELOGIN_TTL`]).
const MAX_PRELOGINS: usize = 4096;
/// How long the provider's discovery document is reused (each unauthenticated start would
/// otherwise cost a fetch at the provider).
const DISCOVERY_TTL: Duration = Duration::from_secs(300);
/// Where the provider sends the browser back, under `[web] public_url`.
pub const CALLBACK_PATH: &str = "/signin/sso/callback";

/// What a pre-login remembers.
struct Prelogin {
    state: String,
    nonce: String,
    verifier: String,
    expires: u64,
}

/// The console's client at the identity provider.
pub struct WebSso {
    config: SsoConfig,
    http: HttpClient,
    verifier: Verifier,
    redirect_uri: String,
    prelogins: Mutex<HashMap<String, Prelogin>>,
    discovery: tokio::sync::Mutex<Option<(jitssh_identity::Discovery, u64)>>,
}

/// Why a sign-in by the identity provider was refused (shown to the person, audited).
#[derive(Debug, thiserror::Error)]
pub enum SsoRefused {
    /// No pre-login for this browser: never started, expired, or already used.
    #[error("this sign-in is unknown, expired or already used: start again from the sign-in page")]
    Unknown,
    /// `state` is not the one this browser was sent with.
    #[error("the state does not match this browser's sign-in (forged or stale request)")]
    State,
    /// The provider sent an error back.
    #[error("the identity provider refused: {0}")]
    Provider(String),
    /// The token endpoint did not give an ID token for the code.
    #[error("the code was refused at the token endpoint: {0}")]
    Code(String),
    /// The provider could not be reached.
    #[error(transparent)]
    Fetch(#[from] FetchError),
    /// The ID token did not verify.
    #[error("the ID token was refused: {0}")]
    Token(#[from] jitssh_identity::VerifyError),
    /// A claim was missing or unusable.
    #[error(transparent)]
    Claim(#[from] jitssh_authority::sso::ClaimError),
    /// The name is unusable.
    #[error("{0}")]
    Name(String),
    /// The person holds no auditor role.
    #[error(
        "{person} is not an auditor: their groups at the identity provider ({groups}) map to no role with auditor = true"
    )]
    NotAuditor {
        /// The person.
        person: String,
        /// Their groups.
        groups: String,
    },
    /// No policy here.
    #[error("the bastion has no policy to decide who is an auditor (remote CA)")]
    NoPolicy,
}

impl WebSso {
    /// The client for `config`, called back at `public_url` + [`CALLBACK_PATH`].
    pub fn new(config: &SsoConfig, public_url: &str) -> Result<WebSso, FetchError> {
        let timeout = config.timeout.as_duration();
        let http = HttpClient::with_limits(timeout, timeout, MAX_DOCUMENT_BYTES)?;
        let verifier = Verifier::new(config.issuer.clone(), JwksSource::Discovery, http.clone());
        Ok(WebSso {
            config: config.clone(),
            http,
            verifier,
            redirect_uri: format!("{public_url}{CALLBACK_PATH}"),
            prelogins: Mutex::new(HashMap::new()),
            discovery: tokio::sync::Mutex::new(None),
        })
    }

    /// What the button says after "Sign in with": the issuer's host.
    pub fn name(&self) -> &str {
        let rest = self
            .config
            .issuer
            .split_once("://")
            .map_or(self.config.issuer.as_str(), |(_, r)| r);
        rest.split('/').next().unwrap_or(rest)
    }

    /// The redirect URI to register at the provider.
    pub fn redirect_uri(&self) -> &str {
        &self.redirect_uri
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Prelogin>> {
        self.prelogins.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The provider's discovery document, fetched at most every [`DISCOVERY_TTL`].
    async fn discovery(&self, now: u64) -> Result<jitssh_identity::Discovery, FetchError> {
        let mut cached = self.discovery.lock().await;
        if let Some((document, fetched)) = cached.as_ref()
            && now < fetched + DISCOVERY_TTL.as_secs()
        {
            return Ok(document.clone());
        }
        let document = jitssh_identity::discover(&self.http, &self.config.issuer).await?;
        *cached = Some((document.clone(), now));
        Ok(document)
    }

    /// A new pre-login: its id and the URL to send the browser to.
    async fn begin(&self, now: u64) -> Result<(String, String), SsoRefused> {
        let discovery = self.discovery(now).await?;
        let endpoint = discovery.authorization_endpoint.ok_or_else(|| {
            SsoRefused::Provider("its discovery document has no authorization_endpoint".into())
        })?;
        let prelogin = Prelogin {
            state: random_id(),
            nonce: random_id(),
            verifier: random_id(),
            expires: now + PRELOGIN_TTL.as_secs(),
        };
        let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(Sha256::digest(prelogin.verifier.as_bytes()));
        let scopes = self.config.scopes.join(" ");
        let url = url::Url::parse_with_params(
            &endpoint,
            [
                ("response_type", "code"),
                ("client_id", self.config.client_id.as_str()),
                ("redirect_uri", self.redirect_uri.as_str()),
                ("scope", scopes.as_str()),
                ("state", prelogin.state.as_str()),
                ("nonce", prelogin.nonce.as_str()),
                ("code_challenge", challenge.as_str()),
                ("code_challenge_method", "S256"),
            ],
        )
        .map_err(|err| SsoRefused::Provider(format!("bad authorization_endpoint: {err}")))?;
        let id = self.remember(prelogin, now);
        Ok((id, url.into()))
    }

    /// Keeps `prelogin` under a fresh id (forgetting the oldest when the table is full).
    fn remember(&self, prelogin: Prelogin, now: u64) -> String {
        let id = random_id();
        let mut prelogins = self.lock();
        prelogins.retain(|_, p| p.expires > now);
        if prelogins.len() >= MAX_PRELOGINS
            && let Some(oldest) = prelogins
                .iter()
                .min_by_key(|(_, p)| p.expires)
                .map(|(id, _)| id.clone())
        {
            prelogins.remove(&oldest);
        }
        prelogins.insert(id.clone(), prelogin);
        id
    }

    /// Takes the pre-login `id` (once).
    fn take(&self, id: Option<&str>, now: u64) -> Option<Prelogin> {
        let id = id?;
        self.lock().remove(id).filter(|p| p.expires > now)
    }

    /// Trades `code` for a verified person, given the browser's pre-login.
    async fn finish(
        &self,
        prelogin: &Prelogin,
        code: &str,
        now: u64,
    ) -> Result<(SsoPerson, u64), SsoRefused> {
        let discovery = self.discovery(now).await?;
        let endpoint = discovery.token_endpoint.ok_or_else(|| {
            SsoRefused::Provider("its discovery document has no token_endpoint".into())
        })?;
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", self.redirect_uri.as_str()),
            ("code_verifier", prelogin.verifier.as_str()),
        ];
        let basic = match &self.config.client_secret {
            Some(secret) => Some((self.config.client_id.as_str(), secret.as_str())),
            None => {
                form.push(("client_id", self.config.client_id.as_str()));
                None
            }
        };
        let reply = self.http.post_form(&endpoint, &form, basic).await?;
        let token = match reply.body.get("id_token").and_then(|t| t.as_str()) {
            Some(token) if reply.status == 200 => token.to_string(),
            _ => {
                let field = |name: &str| {
                    reply
                        .body
                        .get(name)
                        .and_then(|v| v.as_str())
                        .unwrap_or("")
                        .chars()
                        .take(200)
                        .filter(|c| !c.is_control())
                        .collect::<String>()
                };
                return Err(SsoRefused::Code(format!(
                    "HTTP {} {} {}",
                    reply.status,
                    field("error"),
                    field("error_description")
                )));
            }
        };
        self.verify_id_token(&token, &prelogin.nonce, now).await
    }

    /// Verifies an ID token from the token endpoint (signature, `iss`, `aud` = our client
    /// id, `exp`, `nonce`) and reads the person and the token's expiry from it.
    async fn verify_id_token(
        &self,
        token: &str,
        nonce: &str,
        now: u64,
    ) -> Result<(SsoPerson, u64), SsoRefused> {
        let claims = self
            .verifier
            .verify(
                token,
                &Expectations {
                    audience: &self.config.client_id,
                    nonce: Some(nonce),
                    now: UNIX_EPOCH + Duration::from_secs(now),
                    skew: DEFAULT_SKEW,
                },
            )
            .await?;
        let person = SsoPerson::from_claims(&self.config, &claims)?;
        check_person_name(&person.name).map_err(SsoRefused::Name)?;
        let exp = claims
            .get("exp")
            .and_then(|v| v.as_u64().or_else(|| v.as_f64().map(|f| f as u64)))
            .unwrap_or(now);
        Ok((person, exp))
    }
}

/// Whether `person`'s groups map, through `[[sso.groups]]`, to a role with `auditor = true`.
pub fn is_auditor(policy: &Policy, person: &SsoPerson) -> bool {
    let (user, _) = policy.sso().person(&person.name, &person.groups);
    user.roles
        .iter()
        .any(|r| policy.role(r).is_some_and(|role| role.auditor))
}

fn prelogin_cookie(value: &str, max_age: u64) -> Option<HeaderValue> {
    HeaderValue::from_str(&format!(
        "{PRELOGIN_COOKIE}={value}; Path=/signin/sso; Max-Age={max_age}; HttpOnly; Secure; SameSite=Lax"
    ))
    .ok()
}

type Shared = State<std::sync::Arc<Console>>;

/// `GET /signin/sso`: off to the identity provider.
pub async fn start(State(console): Shared) -> Response {
    let Some(sso) = &console.sso else {
        return error(
            StatusCode::NOT_FOUND,
            "sign-in by the identity provider is off",
        );
    };
    match sso.begin(unix_now()).await {
        Ok((id, url)) => {
            let mut response = Redirect::to(&url).into_response();
            if let Some(value) = prelogin_cookie(&id, PRELOGIN_TTL.as_secs()) {
                response.headers_mut().insert(header::SET_COOKIE, value);
            }
            response
        }
        Err(why) => error(StatusCode::BAD_GATEWAY, &why.to_string()),
    }
}

/// The provider's redirect back.
#[derive(Debug, Deserialize)]
pub struct Callback {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// `GET /signin/sso/callback`: the code becomes a browser session, or a refusal with why.
pub async fn callback(
    State(console): Shared,
    headers: HeaderMap,
    Query(back): Query<Callback>,
) -> Response {
    let Some(sso) = &console.sso else {
        return error(
            StatusCode::NOT_FOUND,
            "sign-in by the identity provider is off",
        );
    };
    let now = unix_now();
    let prelogin = sso.take(cookie(&headers, PRELOGIN_COOKIE), now);
    let outcome = admit(&console, sso, prelogin, back, now).await;
    let mut response = match outcome {
        Ok((person, until)) => {
            match console.sessions.open(
                &person.name,
                until,
                now,
                Credential::Sso {
                    issuer: person.issuer.clone(),
                    sub: person.sub.clone(),
                },
            ) {
                Ok((id, signed)) => {
                    let event = AuditEvent::new("web.signin")
                        .with("person", signed.person.as_str())
                        .with("via", "sso")
                        .with("issuer", person.issuer.as_str())
                        .with("sub", person.sub.as_str())
                        .with("until", signed.expires);
                    console.audit.record_or_log(event).await;
                    signed_in_page(&id, signed.expires.saturating_sub(now))
                }
                Err(why) => error(StatusCode::SERVICE_UNAVAILABLE, &why.to_string()),
            }
        }
        Err((why, person)) => {
            let mut event = AuditEvent::new("web.signin.denied")
                .with("via", "sso")
                .with("reason", why.to_string());
            if let Some(person) = person {
                event = event
                    .with("person", person.name.as_str())
                    .with("issuer", person.issuer.as_str())
                    .with("sub", person.sub.as_str());
            }
            console.audit.record_or_log(event).await;
            error(StatusCode::FORBIDDEN, &format!("sign-in refused: {why}"))
        }
    };
    if let Some(value) = prelogin_cookie("", 0) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

type Refusal = (SsoRefused, Option<SsoPerson>);

/// Every check of the callback, in order; the person (when known) and the session's end.
async fn admit(
    console: &Console,
    sso: &WebSso,
    prelogin: Option<Prelogin>,
    back: Callback,
    now: u64,
) -> Result<(SsoPerson, u64), Refusal> {
    let prelogin = prelogin.ok_or((SsoRefused::Unknown, None))?;
    if !same_secret(back.state.as_deref().unwrap_or(""), &prelogin.state) {
        return Err((SsoRefused::State, None));
    }
    if let Some(code) = back.error {
        let said = format!("{code} {}", back.error_description.unwrap_or_default());
        let said: String = said.chars().take(300).filter(|c| !c.is_control()).collect();
        return Err((SsoRefused::Provider(said.trim().to_string()), None));
    }
    let code = back
        .code
        .ok_or((SsoRefused::Code("no code in the callback".into()), None))?;
    let (person, exp) = sso
        .finish(&prelogin, &code, now)
        .await
        .map_err(|why| (why, None))?;
    let Some(policy) = console.issuer.policy() else {
        return Err((SsoRefused::NoPolicy, Some(person)));
    };
    if !is_auditor(&policy, &person) {
        let groups = if person.groups.is_empty() {
            "none".to_string()
        } else {
            person.groups.join(", ")
        };
        return Err((
            SsoRefused::NotAuditor {
                person: person.name.clone(),
                groups,
            },
            Some(person),
        ));
    }
    Ok((person, exp))
}

/// The session cookie, and a page that moves on to the list. Not a redirect: the browser
/// arrived here from the provider (cross-site), and a redirect in that chain would not send
/// the SameSite=Strict cookie to the list; the page's own refresh is same-site.
fn signed_in_page(id: &str, max_age: u64) -> Response {
    let body = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"refresh\" content=\"0;url=/sessions\"><title>Signed in</title></head>\
         <body><p>Signed in. <a href=\"{}\">Continue to the sessions</a>.</p></body></html>",
        esc("/sessions")
    );
    let mut response = html(StatusCode::OK, body);
    if let Ok(value) = HeaderValue::from_str(&format!(
        "{COOKIE}={id}; Path=/; Max-Age={max_age}; HttpOnly; Secure; SameSite=Strict"
    )) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use jitssh_identity::testing::{self, TestKey};
    use serde_json::json;

    const ISSUER: &str = "https://idp.example";
    const NOW: u64 = 1_800_000_000;

    fn sso(dir: &std::path::Path, key: &TestKey) -> WebSso {
        let jwks = dir.join("jwks.json");
        std::fs::write(&jwks, testing::jwks(&[key]).to_string()).unwrap();
        let config: SsoConfig = toml::from_str(&format!(
            "issuer = \"{ISSUER}\"\nclient_id = \"jitssh-web\"\nname_claim = \"email\"\n"
        ))
        .unwrap();
        let mut sso = WebSso::new(&config, "https://console.example").unwrap();
        sso.verifier = Verifier::new(ISSUER, JwksSource::File(jwks), HttpClient::new().unwrap());
        sso
    }

    fn token(key: &TestKey, aud: &str, nonce: &str) -> String {
        key.sign(&json!({
            "iss": ISSUER, "aud": aud, "sub": "s1", "email": "a@example.com",
            "groups": ["auditors"], "nonce": nonce, "iat": NOW - 5, "exp": NOW + 300,
        }))
    }

    #[tokio::test]
    async fn an_id_token_for_another_audience_or_nonce_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let key = TestKey::p256("k");
        let sso = sso(dir.path(), &key);
        let (person, exp) = sso
            .verify_id_token(&token(&key, "jitssh-web", "n1"), "n1", NOW)
            .await
            .unwrap();
        assert_eq!((person.name.as_str(), exp), ("a@example.com", NOW + 300));
        let other = sso
            .verify_id_token(&token(&key, "another-app", "n1"), "n1", NOW)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            other.contains("audience another-app not accepted"),
            "{other}"
        );
        let replayed = sso
            .verify_id_token(&token(&key, "jitssh-web", "n1"), "n2", NOW)
            .await
            .unwrap_err()
            .to_string();
        assert!(replayed.contains("nonce does not match"), "{replayed}");
        let late = sso
            .verify_id_token(&token(&key, "jitssh-web", "n1"), "n1", NOW + 3600)
            .await
            .unwrap_err()
            .to_string();
        assert!(late.contains("expired"), "{late}");
    }

    #[test]
    fn pre_logins_are_bounded_used_once_and_expire() {
        let dir = tempfile::tempdir().unwrap();
        let sso = sso(dir.path(), &TestKey::p256("k"));
        let make = |expires| Prelogin {
            state: "s".into(),
            nonce: "n".into(),
            verifier: "v".into(),
            expires,
        };
        let first = sso.remember(make(NOW + 600), NOW);
        for i in 0..MAX_PRELOGINS as u64 {
            sso.remember(make(NOW + 601 + i), NOW);
        }
        assert_eq!(sso.lock().len(), MAX_PRELOGINS);
        assert!(
            sso.take(Some(&first), NOW).is_none(),
            "the oldest went first"
        );
        let one = sso.remember(make(NOW + 600), NOW);
        assert!(sso.take(Some(&one), NOW).is_some());
        assert!(sso.take(Some(&one), NOW).is_none(), "used once");
        let late = sso.remember(make(NOW + 600), NOW);
        assert!(sso.take(Some(&late), NOW + 600).is_none(), "expired");
    }

    #[test]
    fn the_redirect_uri_is_under_the_public_url() {
        let dir = tempfile::tempdir().unwrap();
        let sso = sso(dir.path(), &TestKey::p256("k"));
        assert_eq!(
            sso.redirect_uri(),
            "https://console.example/signin/sso/callback"
        );
        assert_eq!(sso.name(), "idp.example");
    }
}
