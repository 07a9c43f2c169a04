//! Who is signed in: one-time sign-in links and browser sessions, both held in memory,
//! bounded, and found by 256-bit random ids (a forged or altered cookie finds nothing).
//!
//! A link is minted by `ssh web@bastion` for an admitted auditor, lives [`LINK_TTL`] and is
//! used once; it becomes a browser session that ends when the person's certificate expires
//! (or at [`MAX_SESSION`], whichever is first). Each browser session has its own CSRF token,
//! which every form carries.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use rand::RngExt as _;

/// How long a sign-in link can be used.
pub const LINK_TTL: Duration = Duration::from_secs(60);
/// Longest browser session, whatever the certificate says.
pub const MAX_SESSION: Duration = Duration::from_secs(12 * 60 * 60);
/// Sign-in links waiting at once.
const MAX_LINKS: usize = 256;
/// Browser sessions at once.
const MAX_SESSIONS: usize = 1024;
/// The cookie's name.
pub const COOKIE: &str = "jitssh_web";

/// A signed-in auditor; `C` is the credential kept to check revocation on each request
/// (the certificate, in the bastion).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed<C> {
    /// The person (the certificate's key id's first word, or the identity provider's name
    /// for them).
    pub person: String,
    /// Unix time the session ends (the certificate's or ID token's expiry, at most
    /// [`MAX_SESSION`]).
    pub expires: u64,
    /// The token forms carry.
    pub csrf: String,
    /// The credential signed in with.
    pub credential: C,
}

/// Why a sign-in link was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LinkRefused {
    /// Unknown, already used, or expired.
    #[error("this sign-in link is unknown, used or expired: run ssh web@bastion again")]
    Unknown,
    /// Too many people signed in.
    #[error("too many browser sessions; try again later")]
    Full,
}

/// The store.
pub struct Sessions<C> {
    inner: Mutex<Inner<C>>,
}

/// A link waiting to be used.
struct Link<C> {
    person: String,
    valid_before: u64,
    expires: u64,
    credential: C,
}

struct Inner<C> {
    /// link id -> link
    links: HashMap<String, Link<C>>,
    /// cookie id -> session
    sessions: HashMap<String, Signed<C>>,
}

/// 256 random bits, hex.
pub fn random_id() -> String {
    let bytes: [u8; 32] = rand::rng().random();
    hex::encode(bytes)
}

/// Ids are 64 lowercase hex digits; anything else is not looked up.
fn plausible(id: &str) -> bool {
    id.len() == 64 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

impl<C: Clone> Default for Sessions<C> {
    fn default() -> Self {
        Sessions {
            inner: Mutex::new(Inner {
                links: HashMap::new(),
                sessions: HashMap::new(),
            }),
        }
    }
}

impl<C: Clone> Sessions<C> {
    /// An empty store.
    pub fn new() -> Sessions<C> {
        Sessions::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner<C>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A one-time link id for `person` whose certificate expires at `valid_before`, or
    /// `None` when too many are waiting.
    pub fn mint_link(
        &self,
        person: &str,
        valid_before: u64,
        now: u64,
        credential: C,
    ) -> Option<String> {
        let mut inner = self.lock();
        inner.links.retain(|_, link| link.expires > now);
        if inner.links.len() >= MAX_LINKS {
            return None;
        }
        let id = random_id();
        inner.links.insert(
            id.clone(),
            Link {
                person: person.to_string(),
                valid_before,
                expires: now + LINK_TTL.as_secs(),
                credential,
            },
        );
        Some(id)
    }

    /// Uses link `id` (once): the new session's cookie id and the session.
    pub fn redeem(&self, id: &str, now: u64) -> Result<(String, Signed<C>), LinkRefused> {
        let mut inner = self.lock();
        let found = if plausible(id) {
            inner.links.remove(id)
        } else {
            None
        };
        let Some(Link {
            person,
            valid_before,
            expires,
            credential,
        }) = found
        else {
            return Err(LinkRefused::Unknown);
        };
        if expires <= now || valid_before <= now {
            return Err(LinkRefused::Unknown);
        }
        drop(inner);
        self.open(&person, valid_before, now, credential)
    }

    /// Opens a browser session for `person` (admitted by a link or by the identity
    /// provider) ending at `until` (at most [`MAX_SESSION`] from `now`): its cookie id and
    /// the session.
    pub fn open(
        &self,
        person: &str,
        until: u64,
        now: u64,
        credential: C,
    ) -> Result<(String, Signed<C>), LinkRefused> {
        let mut inner = self.lock();
        inner.sessions.retain(|_, s| s.expires > now);
        if inner.sessions.len() >= MAX_SESSIONS {
            return Err(LinkRefused::Full);
        }
        let signed = Signed {
            person: person.to_string(),
            expires: until.min(now + MAX_SESSION.as_secs()),
            csrf: random_id(),
            credential,
        };
        let cookie = random_id();
        inner.sessions.insert(cookie.clone(), signed.clone());
        Ok((cookie, signed))
    }

    /// The session of cookie id `id`, if it exists and has not expired.
    pub fn find(&self, id: &str, now: u64) -> Option<Signed<C>> {
        if !plausible(id) {
            return None;
        }
        let mut inner = self.lock();
        match inner.sessions.get(id) {
            Some(s) if s.expires > now => Some(s.clone()),
            Some(_) => {
                inner.sessions.remove(id);
                None
            }
            None => None,
        }
    }

    /// Ends the session of cookie id `id`.
    pub fn end(&self, id: &str) {
        self.lock().sessions.remove(id);
    }
}

/// Compares secrets in time independent of where they differ.
pub fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_is_used_once_and_not_after_a_minute() {
        let store = Sessions::<()>::new();
        let link = store.mint_link("alice", 10_000, 100, ()).unwrap();
        let (cookie, signed) = store.redeem(&link, 101).unwrap();
        assert_eq!(signed.person, "alice");
        assert_eq!(signed.expires, 10_000);
        assert_eq!(store.find(&cookie, 102), Some(signed));
        assert_eq!(store.redeem(&link, 101), Err(LinkRefused::Unknown));
        let late = store.mint_link("alice", 10_000, 100, ()).unwrap();
        assert_eq!(store.redeem(&late, 160), Err(LinkRefused::Unknown));
    }

    #[test]
    fn a_session_ends_with_the_certificate_and_forged_ids_find_nothing() {
        let store = Sessions::<()>::new();
        let link = store.mint_link("alice", 200, 100, ()).unwrap();
        let (cookie, _) = store.redeem(&link, 100).unwrap();
        assert!(store.find(&cookie, 199).is_some());
        assert!(store.find(&cookie, 200).is_none());
        assert!(store.find(&"0".repeat(64), 100).is_none());
        assert!(store.find("../x", 100).is_none());
        assert!(same_secret("abc", "abc") && !same_secret("abc", "abd") && !same_secret("a", "ab"));
    }
}
