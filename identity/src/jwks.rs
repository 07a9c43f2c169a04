//! An issuer's signing keys, cached. Keys are fetched on first use, again when a token names a
//! key id the cache does not know (the issuer rotated its keys), and when the cached set is
//! older than [`MAX_AGE`]. Fetches are at least [`MIN_REFRESH`] apart, successful or not: a
//! flood of tokens with made-up key ids (or an issuer that is down) costs the issuer one fetch
//! per interval, and fetches are serialised, so never more than one is in flight. Time is the
//! caller's clock (the project's injectable one), so tests move it instead of sleeping; a clock
//! that goes back counts as no time passed (no extra fetch).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::Mutex;

use crate::discovery::discover;
use crate::error::{FetchError, VerifyError};
use crate::http::{HttpClient, MAX_DOCUMENT_BYTES};
use crate::jwk::{Jwk, KeySet};

/// Least time between two fetches of an issuer's keys.
pub const MIN_REFRESH: Duration = Duration::from_secs(10);
/// Age after which the cached keys are fetched again (a key the issuer removed stops working).
pub const MAX_AGE: Duration = Duration::from_secs(3600);

/// Where an issuer's keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksSource {
    /// The `jwks_uri` of the issuer's discovery document.
    Discovery,
    /// A JWKS URL.
    Url(String),
    /// A JWKS file (read again on refresh), for issuers the CA cannot reach.
    File(PathBuf),
}

/// One issuer's key cache (share it: one per issuer per process).
#[derive(Debug)]
pub struct JwksCache {
    issuer: String,
    source: JwksSource,
    http: HttpClient,
    min_refresh: Duration,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    keys: Option<Arc<KeySet>>,
    /// When the keys were fetched.
    fetched: Option<SystemTime>,
    /// When a fetch was last tried, and its error when it failed.
    tried: Option<(SystemTime, Option<FetchError>)>,
    /// The JWKS URL found by discovery.
    jwks_uri: Option<String>,
    /// Fetches done (for tests and logs).
    fetches: u64,
}

impl JwksCache {
    /// A cache for `issuer`'s keys from `source`; nothing is fetched yet.
    pub fn new(issuer: impl Into<String>, source: JwksSource, http: HttpClient) -> JwksCache {
        JwksCache {
            issuer: issuer.into(),
            source,
            http,
            min_refresh: MIN_REFRESH,
            state: Mutex::new(State::default()),
        }
    }

    /// The same with another least time between fetches.
    pub fn with_min_refresh(mut self, min_refresh: Duration) -> JwksCache {
        self.min_refresh = min_refresh;
        self
    }

    /// The issuer.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// How many fetches were done so far.
    pub async fn fetches(&self) -> u64 {
        self.state.lock().await.fetches
    }

    /// The key for a token's `kid` (or the only key, when the token names none), fetching the
    /// keys when they are missing, stale, or do not have that `kid` (at most once per
    /// [`MIN_REFRESH`]). `now` is the caller's clock.
    pub async fn key(&self, kid: Option<&str>, now: SystemTime) -> Result<Jwk, VerifyError> {
        let mut state = self.state.lock().await;
        let stale = state.fetched.is_none_or(|at| elapsed(at, now) >= MAX_AGE);
        let known = state
            .keys
            .as_ref()
            .is_some_and(|keys| pick(keys, kid, &self.issuer).is_ok());
        if stale || !known {
            match self.refresh_locked(&mut state, now).await {
                Ok(()) => {}
                // Without keys (or with stale ones: fail closed) the fetch error is the answer.
                Err(source) if stale || state.keys.is_none() => {
                    return Err(VerifyError::Keys {
                        issuer: self.issuer.clone(),
                        source,
                    });
                }
                // An unknown kid while the issuer is unreachable or rate-limited: the kid
                // is unknown.
                Err(err) => {
                    tracing::debug!(issuer = %self.issuer, %err, "no refresh for an unknown kid")
                }
            }
        }
        let keys = state.keys.clone().ok_or_else(|| VerifyError::Keys {
            issuer: self.issuer.clone(),
            source: FetchError::Malformed {
                url: self.issuer.clone(),
                reason: "no keys".into(),
            },
        })?;
        pick(&keys, kid, &self.issuer).cloned()
    }

    /// Fetches the keys now unless a fetch was tried less than the interval ago.
    async fn refresh_locked(&self, state: &mut State, now: SystemTime) -> Result<(), FetchError> {
        if let Some((at, last_error)) = &state.tried {
            let since = elapsed(*at, now);
            if since < self.min_refresh {
                let retry_in_secs = (self.min_refresh - since).as_secs().max(1);
                return Err(FetchError::Backoff {
                    reason: match last_error {
                        Some(err) => err.to_string(),
                        None => "keys fetched a moment ago".to_string(),
                    },
                    retry_in_secs,
                });
            }
        }
        state.fetches += 1;
        let result = self.fetch(state).await;
        match result {
            Ok(keys) => {
                tracing::info!(issuer = %self.issuer, keys = keys.keys.len(), skipped = keys.skipped, "issuer keys fetched");
                state.keys = Some(Arc::new(keys));
                state.fetched = Some(now);
                state.tried = Some((now, None));
                Ok(())
            }
            Err(err) => {
                tracing::warn!(issuer = %self.issuer, %err, "cannot fetch the issuer's keys");
                state.tried = Some((now, Some(err.clone())));
                Err(err)
            }
        }
    }

    async fn fetch(&self, state: &mut State) -> Result<KeySet, FetchError> {
        let url = match &self.source {
            JwksSource::File(path) => return read_file(path),
            JwksSource::Url(url) => url.clone(),
            JwksSource::Discovery => match &state.jwks_uri {
                Some(url) => url.clone(),
                None => {
                    let found = discover(&self.http, &self.issuer).await?.jwks_uri;
                    state.jwks_uri = Some(found.clone());
                    found
                }
            },
        };
        let bytes = self.http.get_bytes(&url).await?;
        KeySet::from_json(&bytes).map_err(|reason| FetchError::Malformed { url, reason })
    }
}

/// Time from `at` to `now`; zero when the clock went back.
fn elapsed(at: SystemTime, now: SystemTime) -> Duration {
    now.duration_since(at).unwrap_or(Duration::ZERO)
}

/// The key a token names, or the only key when it names none.
fn pick<'k>(keys: &'k KeySet, kid: Option<&str>, issuer: &str) -> Result<&'k Jwk, VerifyError> {
    match kid {
        Some(kid) => keys.find(kid).ok_or_else(|| VerifyError::UnknownKid {
            kid: kid.chars().take(64).collect(),
            issuer: issuer.to_string(),
        }),
        None => match keys.keys.as_slice() {
            [only] => Ok(only),
            all => Err(VerifyError::NoKid {
                issuer: issuer.to_string(),
                count: all.len(),
            }),
        },
    }
}

fn read_file(path: &std::path::Path) -> Result<KeySet, FetchError> {
    let shown = path.display().to_string();
    let file_error = |reason: String| FetchError::File {
        path: shown.clone(),
        reason,
    };
    let meta = std::fs::metadata(path).map_err(|err| file_error(err.to_string()))?;
    if meta.len() > MAX_DOCUMENT_BYTES as u64 {
        return Err(file_error(format!(
            "larger than {MAX_DOCUMENT_BYTES} bytes"
        )));
    }
    let bytes = std::fs::read(path).map_err(|err| file_error(err.to_string()))?;
    KeySet::from_json(&bytes).map_err(|reason| FetchError::Malformed {
        url: shown.clone(),
        reason,
    })
}
