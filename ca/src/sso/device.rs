//! The OAuth 2.0 Device Authorization Grant (RFC 8628) as a client: the CA asks the identity
//! provider for a user code, the person enters it in any browser, and the CA polls the token
//! endpoint until the person signed in, refused, or the code expired.
//!
//! Every call goes through [`HttpClient`] (HTTPS, bounded bodies, a timeout), and every value
//! the provider sends back is bounded before it is shown or used: a broken or hostile provider
//! cannot make the CA print megabytes, poll in a tight loop, or wait forever.

use std::time::Duration;

use jitssh_identity::{FetchError, FormReply, HttpClient};
use serde_json::Value;

/// The grant type of the token requests (RFC 8628 §3.4).
pub const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:device_code";
/// Poll interval when the provider names none (RFC 8628 §3.2).
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);
/// What `slow_down` adds to the interval (RFC 8628 §3.5).
pub const SLOW_DOWN_STEP: Duration = Duration::from_secs(5);
/// Longest poll interval honoured (a larger one is cut to this).
pub const MAX_INTERVAL: Duration = Duration::from_secs(60);
/// Longest wait for the person, whatever `expires_in` says.
pub const MAX_WAIT: Duration = Duration::from_secs(30 * 60);
/// Longest user code, URL or device code accepted.
const MAX_CODE_LEN: usize = 64;
const MAX_URL_LEN: usize = 2048;
const MAX_DEVICE_CODE_LEN: usize = 4096;

/// Why the device flow did not give tokens.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// The provider could not be reached or answered nonsense.
    #[error("identity provider: {0}")]
    Fetch(#[from] FetchError),
    /// The provider does not offer the device flow (no `device_authorization_endpoint`).
    #[error(
        "the identity provider does not offer the device flow (no {0} in its discovery document)"
    )]
    Unsupported(&'static str),
    /// The provider refused to start (e.g. unknown client, device grant not enabled).
    #[error("the identity provider refused to start a device sign-in: {0}")]
    Refused(String),
    /// The provider's answer lacks a field or has one out of bounds.
    #[error("the identity provider sent a malformed device answer: {0}")]
    Malformed(String),
    /// The person refused at the provider.
    #[error("sign-in refused at the identity provider ({0})")]
    Denied(String),
    /// Nobody signed in before the code expired.
    #[error("the code expired before anyone signed in")]
    Expired,
}

/// This CA's client at the provider.
#[derive(Debug, Clone)]
pub struct Client<'a> {
    /// The client id.
    pub id: &'a str,
    /// The client secret, if the provider requires one (sent with HTTP basic authentication).
    pub secret: Option<&'a str>,
}

impl Client<'_> {
    fn basic(&self) -> Option<(&str, &str)> {
        self.secret.map(|secret| (self.id, secret))
    }
}

/// A started device sign-in: what the person is shown, and what the CA polls with.
#[derive(Debug, Clone)]
pub struct Authorization {
    /// Secret to the CA: what it polls the token endpoint with.
    pub device_code: String,
    /// What the person types at the verification URL.
    pub user_code: String,
    /// Where the person goes.
    pub verification_uri: String,
    /// The same with the code filled in, when the provider offers it.
    pub verification_uri_complete: Option<String>,
    /// How long the code lives (capped at [`MAX_WAIT`]).
    pub expires_in: Duration,
    /// Least time between polls ([`DEFAULT_INTERVAL`] when the provider names none).
    pub interval: Duration,
}

/// Starts a device sign-in at `endpoint` (the provider's `device_authorization_endpoint`).
pub async fn start(
    http: &HttpClient,
    endpoint: &str,
    client: &Client<'_>,
    scopes: &[String],
) -> Result<Authorization, DeviceError> {
    let scope = scopes.join(" ");
    let form = [("client_id", client.id), ("scope", scope.as_str())];
    let reply = http.post_form(endpoint, &form, client.basic()).await?;
    if !(200..300).contains(&reply.status) {
        return Err(DeviceError::Refused(oauth_error(&reply)));
    }
    let body = &reply.body;
    let text = |name: &'static str, max: usize| -> Result<String, DeviceError> {
        let value = body
            .get(name)
            .and_then(Value::as_str)
            .ok_or_else(|| DeviceError::Malformed(format!("no {name}")))?;
        if value.is_empty() || value.len() > max || value.chars().any(char::is_control) {
            return Err(DeviceError::Malformed(format!(
                "{name} is empty, too long or not printable"
            )));
        }
        Ok(value.to_string())
    };
    let device_code = text("device_code", MAX_DEVICE_CODE_LEN)?;
    let user_code = text("user_code", MAX_CODE_LEN)?;
    let verification_uri = text("verification_uri", MAX_URL_LEN)?;
    jitssh_identity::http::checked_url(&verification_uri)?;
    let verification_uri_complete = match body.get("verification_uri_complete") {
        Some(_) => Some(text("verification_uri_complete", MAX_URL_LEN)?),
        None => None,
    };
    let expires_in = body
        .get("expires_in")
        .and_then(Value::as_u64)
        .ok_or_else(|| DeviceError::Malformed("no expires_in".into()))?;
    let interval = body
        .get("interval")
        .and_then(Value::as_u64)
        .map_or(DEFAULT_INTERVAL, Duration::from_secs);
    Ok(Authorization {
        device_code,
        user_code,
        verification_uri,
        verification_uri_complete,
        expires_in: Duration::from_secs(expires_in).min(MAX_WAIT),
        interval: interval.clamp(Duration::from_secs(1), MAX_INTERVAL),
    })
}

/// One answer of the token endpoint.
#[derive(Debug)]
pub enum Poll {
    /// The person has not finished yet.
    Pending,
    /// Poll less often.
    SlowDown,
    /// Signed in: the ID token.
    IdToken(String),
}

/// Asks the token endpoint once.
pub async fn poll(
    http: &HttpClient,
    token_endpoint: &str,
    client: &Client<'_>,
    device_code: &str,
) -> Result<Poll, DeviceError> {
    let form = [
        ("grant_type", GRANT_TYPE),
        ("device_code", device_code),
        ("client_id", client.id),
    ];
    let reply = http
        .post_form(token_endpoint, &form, client.basic())
        .await?;
    if (200..300).contains(&reply.status) {
        return match reply.body.get("id_token").and_then(Value::as_str) {
            Some(token) => Ok(Poll::IdToken(token.to_string())),
            None => Err(DeviceError::Malformed(
                "the token answer has no id_token (is the openid scope granted?)".into(),
            )),
        };
    }
    match reply.body.get("error").and_then(Value::as_str) {
        Some("authorization_pending") => Ok(Poll::Pending),
        Some("slow_down") => Ok(Poll::SlowDown),
        Some("access_denied") => Err(DeviceError::Denied(oauth_error(&reply))),
        Some("expired_token") => Err(DeviceError::Expired),
        _ => Err(DeviceError::Refused(oauth_error(&reply))),
    }
}

/// Polls until the person signed in (their ID token), refused, or the code expired. Waits
/// `interval` between polls, `slow_down` adding [`SLOW_DOWN_STEP`].
pub async fn wait_for_id_token(
    http: &HttpClient,
    token_endpoint: &str,
    client: &Client<'_>,
    authorization: &Authorization,
) -> Result<String, DeviceError> {
    let deadline = tokio::time::Instant::now() + authorization.expires_in;
    let mut interval = authorization.interval;
    loop {
        let next = tokio::time::Instant::now() + interval;
        if next > deadline {
            return Err(DeviceError::Expired);
        }
        tokio::time::sleep_until(next).await;
        match poll(http, token_endpoint, client, &authorization.device_code).await? {
            Poll::Pending => {}
            Poll::SlowDown => interval = (interval + SLOW_DOWN_STEP).min(MAX_INTERVAL),
            Poll::IdToken(token) => return Ok(token),
        }
    }
}

/// An OAuth error answer in one printable line: `error: error_description`.
fn oauth_error(reply: &FormReply) -> String {
    let field = |name| {
        reply.body.get(name).and_then(Value::as_str).map(|s| {
            s.chars()
                .take(200)
                .filter(|c| !c.is_control())
                .collect::<String>()
        })
    };
    match (field("error"), field("error_description")) {
        (Some(error), Some(description)) => format!("{error}: {description}"),
        (Some(error), None) => error,
        _ => format!("HTTP {}", reply.status),
    }
}
