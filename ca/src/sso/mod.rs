//! Sign-in through the organisation's identity provider for `ssh sso@ca login`: the device
//! flow ([`device`]) to get an ID token, [`jitssh_identity`] to verify it, and the mapping of
//! its claims to an [`SsoPerson`] (the configured naming and groups claims).

pub mod device;

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use jitssh_authority::sso::{ClaimError, SsoConfig, SsoPerson};
use jitssh_identity::http::MAX_DOCUMENT_BYTES;
use jitssh_identity::verify::DEFAULT_SKEW;
use jitssh_identity::{
    Claims, Expectations, FetchError, HttpClient, JwksSource, Verifier, VerifyError,
};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use device::{Authorization, Client, DeviceError};

pub use jitssh_authority::sso::{MAX_GROUP_LEN, MAX_GROUPS};

/// Why an SSO login failed after the device flow.
#[derive(Debug, thiserror::Error)]
pub enum SsoError {
    /// The device flow failed (provider down, refusal, expiry).
    #[error(transparent)]
    Device(#[from] DeviceError),
    /// The ID token did not verify.
    #[error("the ID token was refused: {0}")]
    Token(#[from] VerifyError),
    /// A claim the configuration needs is missing or unusable.
    #[error(transparent)]
    Claim(#[from] ClaimError),
}

/// The SSO client of one CA process: configuration, HTTP client and the issuer's key cache
/// (shared by every login, so the keys are fetched once and refreshed on an unknown `kid`).
#[derive(Debug)]
pub struct Sso {
    config: SsoConfig,
    http: HttpClient,
    verifier: Verifier,
    /// Sign-ins in progress at once: each holds an API connection for up to the code's
    /// lifetime, and anyone with any key may start one, so they get a bounded share of the
    /// API's connections and enrolled users keep the rest.
    pending: Arc<Semaphore>,
}

/// A sign-in's place among those in progress (given back on drop).
#[derive(Debug)]
pub struct Pending(#[allow(dead_code)] OwnedSemaphorePermit);

/// A device sign-in in progress.
#[derive(Debug)]
pub struct Started {
    /// What the person is shown and the CA polls with.
    pub authorization: Authorization,
    token_endpoint: String,
}

impl Sso {
    /// The client for `config` (nothing is fetched yet), with at most `max_pending`
    /// sign-ins in progress at once.
    pub fn new(config: &SsoConfig, max_pending: usize) -> Result<Sso, FetchError> {
        let timeout = config.timeout.as_duration();
        let http = HttpClient::with_limits(timeout, timeout, MAX_DOCUMENT_BYTES)?;
        let verifier = Verifier::new(config.issuer.clone(), JwksSource::Discovery, http.clone());
        Ok(Sso {
            config: config.clone(),
            http,
            verifier,
            pending: Arc::new(Semaphore::new(max_pending.max(1))),
        })
    }

    /// A place for one more sign-in, or `None` when the limit is reached.
    pub fn admit(&self) -> Option<Pending> {
        self.pending.clone().try_acquire_owned().ok().map(Pending)
    }

    /// The configuration.
    pub fn config(&self) -> &SsoConfig {
        &self.config
    }

    fn client(&self) -> Client<'_> {
        Client {
            id: &self.config.client_id,
            secret: self.config.client_secret.as_deref(),
        }
    }

    /// Reads the provider's discovery document and starts a device sign-in. Fails within the
    /// configured timeout when the provider is down.
    pub async fn start(&self) -> Result<Started, DeviceError> {
        let discovery = jitssh_identity::discover(&self.http, &self.config.issuer).await?;
        let endpoint = discovery
            .device_authorization_endpoint
            .ok_or(DeviceError::Unsupported("device_authorization_endpoint"))?;
        let token_endpoint = discovery
            .token_endpoint
            .ok_or(DeviceError::Unsupported("token_endpoint"))?;
        let authorization =
            device::start(&self.http, &endpoint, &self.client(), &self.config.scopes).await?;
        Ok(Started {
            authorization,
            token_endpoint,
        })
    }

    /// Waits for the person (see [`device::wait_for_id_token`]), verifies the ID token and
    /// reads who they are.
    pub async fn finish(&self, started: &Started) -> Result<SsoPerson, SsoError> {
        let token = device::wait_for_id_token(
            &self.http,
            &started.token_endpoint,
            &self.client(),
            &started.authorization,
        )
        .await?;
        let now = UNIX_EPOCH + Duration::from_secs(jitssh_core::unix_now());
        let claims = self
            .verifier
            .verify(
                &token,
                &Expectations {
                    audience: &self.config.client_id,
                    // The device flow has no nonce (RFC 8628 sends none to the provider).
                    nonce: None,
                    now,
                    skew: DEFAULT_SKEW,
                },
            )
            .await?;
        person(&self.config, &claims)
    }
}

/// Reads the person from verified `claims` (the mapping lives in
/// [`jitssh_authority::sso::SsoPerson::from_claims`], shared with the bastion's web console).
pub fn person(config: &SsoConfig, claims: &Claims) -> Result<SsoPerson, SsoError> {
    Ok(SsoPerson::from_claims(config, claims)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(name_claim: &str) -> SsoConfig {
        let text = format!(
            "issuer = \"https://idp.example\"\nclient_id = \"jitssh\"\nname_claim = \"{name_claim}\"\n"
        );
        toml::from_str(&text).unwrap()
    }

    fn claims(json: &str) -> Claims {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn the_configured_claims_name_the_person_and_their_groups() {
        let token = claims(
            r#"{"iss":"https://idp.example","sub":"s1","email":"c@x","preferred_username":"carol","groups":["ops","devs"]}"#,
        );
        let found = person(&config("email"), &token).unwrap();
        assert_eq!(found.name, "c@x");
        assert_eq!(found.sub, "s1");
        assert_eq!(found.groups, vec!["ops".to_string(), "devs".to_string()]);
        assert_eq!(
            person(&config("preferred_username"), &token).unwrap().name,
            "carol"
        );
        assert_eq!(person(&config("sub"), &token).unwrap().name, "s1");
    }

    #[test]
    fn unverified_emails_missing_names_and_odd_groups_are_refused() {
        let unverified = claims(r#"{"iss":"i","sub":"s1","email":"c@x","email_verified":false}"#);
        let err = person(&config("email"), &unverified)
            .unwrap_err()
            .to_string();
        assert!(err.contains("not verified"), "{err}");
        let nameless = claims(r#"{"iss":"i","sub":"s1"}"#);
        let err = person(&config("preferred_username"), &nameless)
            .unwrap_err()
            .to_string();
        assert!(err.contains("preferred_username"), "{err}");
        let odd = claims(r#"{"iss":"i","sub":"s1","email":"c@x","groups":[1]}"#);
        assert!(person(&config("email"), &odd).is_err());
        let one = claims(r#"{"iss":"i","sub":"s1","email":"c@x","groups":"ops"}"#);
        assert_eq!(
            person(&config("email"), &one).unwrap().groups,
            vec!["ops".to_string()]
        );
    }
}
