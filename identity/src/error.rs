//! Why a fetch or a token verification failed: one line each, clear enough to act on.

/// Fetching a document from an issuer (or reading a JWKS file) failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum FetchError {
    /// The URL cannot be parsed, or is plain `http` to a host other than loopback.
    #[error("refusing URL {url}: {reason}")]
    BadUrl {
        /// The URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// The issuer could not be reached (connection refused, DNS, TLS, timeout).
    #[error("cannot reach {url}: {reason}")]
    Unreachable {
        /// The URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// The issuer answered with an HTTP error status.
    #[error("{url} answered HTTP {status}")]
    Status {
        /// The URL.
        url: String,
        /// The status code.
        status: u16,
    },
    /// The document is larger than the limit.
    #[error("{url} sent more than {limit} bytes")]
    TooLarge {
        /// The URL.
        url: String,
        /// The limit in bytes.
        limit: usize,
    },
    /// The document is not the JSON expected.
    #[error("{url} sent a malformed document: {reason}")]
    Malformed {
        /// The URL (or file path).
        url: String,
        /// Why.
        reason: String,
    },
    /// A JWKS file could not be read.
    #[error("cannot read {path}: {reason}")]
    File {
        /// The path.
        path: String,
        /// Why.
        reason: String,
    },
    /// The discovery document names another issuer than the one configured (RFC 8414 §3.3:
    /// a document served for one issuer must not be accepted for another).
    #[error("discovery at {url} names issuer {found}, not the configured {expected}")]
    IssuerMismatch {
        /// The discovery URL.
        url: String,
        /// The configured issuer.
        expected: String,
        /// The issuer in the document.
        found: String,
    },
    /// A fetch failed a moment ago; the next try waits (so a down issuer is not hammered).
    #[error("{reason} (next try in {retry_in_secs}s)")]
    Backoff {
        /// The last failure.
        reason: String,
        /// Seconds until the next fetch is allowed.
        retry_in_secs: u64,
    },
}

/// A token was refused. Each variant is one line naming what was wrong.
#[derive(Debug, Clone, thiserror::Error)]
pub enum VerifyError {
    /// Longer than the limit (tokens are small; a huge one is an attack or a mistake).
    #[error("token longer than {0} bytes")]
    TooLong(usize),
    /// Not a compact JWS (three base64url parts, JSON header and payload).
    #[error("malformed token: {0}")]
    Malformed(String),
    /// `alg: none`: an unsigned token.
    #[error("alg none refused")]
    AlgNone,
    /// `HS256` and friends: the "secret" would be public (the classic key-confusion attack).
    #[error("alg {0} refused (symmetric algorithms are never accepted)")]
    AlgSymmetric(String),
    /// An algorithm this verifier does not implement.
    #[error("alg {0} not supported")]
    AlgUnsupported(String),
    /// No key with this id at the issuer, even after refreshing its keys.
    #[error("unknown key id {kid} at {issuer}")]
    UnknownKid {
        /// The key id in the token header.
        kid: String,
        /// The issuer.
        issuer: String,
    },
    /// No `kid` in the header and the issuer has more than one usable key.
    #[error("token has no key id and {issuer} has {count} keys")]
    NoKid {
        /// The issuer.
        issuer: String,
        /// How many keys it has.
        count: usize,
    },
    /// The header's `alg` does not fit the key (e.g. `ES256` with an RSA key).
    #[error("alg {alg} does not match key {kid} ({key})")]
    AlgKeyMismatch {
        /// The header's alg.
        alg: String,
        /// The key id.
        kid: String,
        /// The key's type (and alg, when the JWK pins one).
        key: String,
    },
    /// The signature does not verify (tampered header or payload, or another key).
    #[error("bad signature (key {kid})")]
    BadSignature {
        /// The key id.
        kid: String,
    },
    /// `iss` is not the configured issuer.
    #[error("issuer {found} not accepted (expected {expected})")]
    Issuer {
        /// The configured issuer.
        expected: String,
        /// The token's `iss`.
        found: String,
    },
    /// `aud` does not contain the expected audience.
    #[error("audience {found} not accepted (expected {expected})")]
    Audience {
        /// The expected audience.
        expected: String,
        /// The token's `aud`.
        found: String,
    },
    /// `exp` is past (beyond the allowed skew).
    #[error("token expired at {at}")]
    Expired {
        /// When, RFC 3339.
        at: String,
    },
    /// `nbf` is in the future (beyond the allowed skew).
    #[error("token not valid before {at}")]
    NotYetValid {
        /// When, RFC 3339.
        at: String,
    },
    /// `iat` is in the future (beyond the allowed skew).
    #[error("token issued in the future ({at})")]
    IssuedInFuture {
        /// When, RFC 3339.
        at: String,
    },
    /// A required claim is missing or has the wrong type.
    #[error("claim {0} missing or not of the right type")]
    Claim(&'static str),
    /// `nonce` does not match the one this login sent.
    #[error("nonce does not match")]
    Nonce,
    /// The issuer's keys could not be fetched.
    #[error("cannot fetch the keys of {issuer}: {source}")]
    Keys {
        /// The issuer.
        issuer: String,
        /// Why.
        source: FetchError,
    },
}
