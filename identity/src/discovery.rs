//! OpenID Connect discovery: `{issuer}/.well-known/openid-configuration`, the document that
//! says where an issuer keeps its keys and endpoints. The document must name the issuer it was
//! fetched for (OpenID Connect Discovery §4.3), or an attacker able to serve one document could
//! stand in for another issuer.

use serde::Deserialize;

use crate::error::FetchError;
use crate::http::HttpClient;

/// The parts of an issuer's discovery document jitssh uses.
#[derive(Debug, Clone, Deserialize)]
pub struct Discovery {
    /// The issuer identifier (equal to the configured one once [`discover`] returns it).
    pub issuer: String,
    /// Where its signing keys are (JWKS).
    pub jwks_uri: String,
    /// The authorization endpoint (authorization code flow: where the browser is sent).
    #[serde(default)]
    pub authorization_endpoint: Option<String>,
    /// The token endpoint (device flow: polled for the tokens).
    #[serde(default)]
    pub token_endpoint: Option<String>,
    /// The device authorization endpoint (RFC 8628), when the issuer supports the device flow.
    #[serde(default)]
    pub device_authorization_endpoint: Option<String>,
    /// The userinfo endpoint.
    #[serde(default)]
    pub userinfo_endpoint: Option<String>,
}

/// The discovery URL for `issuer` (a trailing `/` on the issuer is not doubled).
pub fn discovery_url(issuer: &str) -> String {
    format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    )
}

/// Fetches and checks `issuer`'s discovery document.
pub async fn discover(http: &HttpClient, issuer: &str) -> Result<Discovery, FetchError> {
    let url = discovery_url(issuer);
    let document: Discovery = http.get_json(&url).await?;
    if document.issuer != issuer {
        return Err(FetchError::IssuerMismatch {
            url,
            expected: issuer.to_string(),
            found: document.issuer,
        });
    }
    Ok(document)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_joins_without_doubling_the_slash() {
        assert_eq!(
            discovery_url("https://token.actions.githubusercontent.com"),
            "https://token.actions.githubusercontent.com/.well-known/openid-configuration"
        );
        assert_eq!(
            discovery_url("https://gitlab.example/"),
            "https://gitlab.example/.well-known/openid-configuration"
        );
    }
}
