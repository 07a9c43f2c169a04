//! The one HTTP client every fetch goes through, with limits: HTTPS (plain `http` only to
//! loopback, for tests and local issuers), no redirects (a redirect could leave HTTPS or the
//! issuer), a connect and a total timeout (a down issuer fails fast), and a cap on the body
//! size (a hostile or broken issuer cannot fill memory).

use std::net::IpAddr;
use std::time::Duration;

use reqwest::Url;
use serde::de::DeserializeOwned;

use crate::error::FetchError;

/// Largest document accepted from an issuer (discovery, JWKS, token endpoint replies).
pub const MAX_DOCUMENT_BYTES: usize = 512 * 1024;
/// Default time to establish a connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Default time for a whole request.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// A bounded HTTP client (cheap to clone: clones share connections).
#[derive(Clone, Debug)]
pub struct HttpClient {
    client: reqwest::Client,
    max_body: usize,
}

/// A form POST's answer: OAuth endpoints answer errors as JSON with a 4xx status, so the
/// status and the JSON body both come back.
#[derive(Debug, Clone)]
pub struct FormReply {
    /// The HTTP status code.
    pub status: u16,
    /// The JSON body (`Value::Null` when the body is empty).
    pub body: serde_json::Value,
}

impl HttpClient {
    /// A client with the default timeouts and size limit.
    pub fn new() -> Result<HttpClient, FetchError> {
        HttpClient::with_limits(CONNECT_TIMEOUT, REQUEST_TIMEOUT, MAX_DOCUMENT_BYTES)
    }

    /// A client with these limits.
    pub fn with_limits(
        connect: Duration,
        total: Duration,
        max_body: usize,
    ) -> Result<HttpClient, FetchError> {
        let client = reqwest::Client::builder()
            .connect_timeout(connect)
            .timeout(total)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("jitssh/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|err| FetchError::Unreachable {
                url: "-".into(),
                reason: format!("cannot set up the HTTP client: {err}"),
            })?;
        Ok(HttpClient { client, max_body })
    }

    /// GETs `url` and parses its JSON body as `T`.
    pub async fn get_json<T: DeserializeOwned>(&self, url: &str) -> Result<T, FetchError> {
        let body = self.get_bytes(url).await?;
        parse_json(url, &body)
    }

    /// GETs `url`: its body, when the status is 2xx and the body within the limit.
    pub async fn get_bytes(&self, url: &str) -> Result<Vec<u8>, FetchError> {
        let parsed = checked_url(url)?;
        let response = self
            .client
            .get(parsed)
            .header("accept", "application/json")
            .send()
            .await
            .map_err(|err| unreachable(url, &err))?;
        let status = response.status().as_u16();
        if !(200..300).contains(&status) {
            return Err(FetchError::Status {
                url: url.to_string(),
                status,
            });
        }
        self.read_body(url, response).await
    }

    /// POSTs a form to `url` (with HTTP basic authentication when `basic` is given) and
    /// returns the status and JSON body, whatever the status.
    pub async fn post_form(
        &self,
        url: &str,
        form: &[(&str, &str)],
        basic: Option<(&str, &str)>,
    ) -> Result<FormReply, FetchError> {
        let parsed = checked_url(url)?;
        let mut request = self
            .client
            .post(parsed)
            .header("accept", "application/json")
            .form(form);
        if let Some((user, password)) = basic {
            request = request.basic_auth(user, Some(password));
        }
        let response = request.send().await.map_err(|err| unreachable(url, &err))?;
        let status = response.status().as_u16();
        let body = self.read_body(url, response).await?;
        let body = if body.iter().all(u8::is_ascii_whitespace) {
            serde_json::Value::Null
        } else {
            parse_json(url, &body)?
        };
        Ok(FormReply { status, body })
    }

    /// Reads a body up to the size limit.
    async fn read_body(
        &self,
        url: &str,
        mut response: reqwest::Response,
    ) -> Result<Vec<u8>, FetchError> {
        let too_large = || FetchError::TooLarge {
            url: url.to_string(),
            limit: self.max_body,
        };
        if response
            .content_length()
            .is_some_and(|len| len > self.max_body as u64)
        {
            return Err(too_large());
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|err| unreachable(url, &err))?
        {
            if body.len() + chunk.len() > self.max_body {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

fn parse_json<T: DeserializeOwned>(url: &str, body: &[u8]) -> Result<T, FetchError> {
    serde_json::from_slice(body).map_err(|err| FetchError::Malformed {
        url: url.to_string(),
        reason: err.to_string(),
    })
}

/// The error in one line: what failed, and its root cause (reqwest's own messages wrap it in
/// layers such as "client error (Connect)" that say nothing to an operator).
fn unreachable(url: &str, err: &reqwest::Error) -> FetchError {
    let what = if err.is_timeout() {
        "timed out"
    } else if err.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    let mut root: &dyn std::error::Error = err;
    while let Some(cause) = root.source() {
        root = cause;
    }
    let reason = if std::ptr::addr_eq(root, err as &dyn std::error::Error) {
        what.to_string()
    } else {
        format!("{what}: {root}")
    };
    FetchError::Unreachable {
        url: url.to_string(),
        reason,
    }
}

/// Parses `url`: `https`, or `http` to a loopback host only.
pub fn checked_url(url: &str) -> Result<Url, FetchError> {
    let bad = |reason: &str| FetchError::BadUrl {
        url: url.to_string(),
        reason: reason.to_string(),
    };
    let parsed = Url::parse(url).map_err(|err| bad(&err.to_string()))?;
    match parsed.scheme() {
        "https" => Ok(parsed),
        "http" if is_loopback(&parsed) => Ok(parsed),
        "http" => Err(bad("plain http is allowed only to loopback; use https")),
        _ => Err(bad("not an https URL")),
    }
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(name)) => name == "localhost",
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_only_to_loopback() {
        assert!(checked_url("https://issuer.example/x").is_ok());
        assert!(checked_url("http://127.0.0.1:8080/x").is_ok());
        assert!(checked_url("http://[::1]:8080/x").is_ok());
        assert!(checked_url("http://localhost/x").is_ok());
        let err = checked_url("http://issuer.example/x").unwrap_err();
        assert!(err.to_string().contains("only to loopback"), "{err}");
        assert!(checked_url("file:///etc/passwd").is_err());
        assert!(checked_url("not a url").is_err());
    }
}
