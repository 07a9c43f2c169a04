//! Verification of JSON Web Tokens from OpenID issuers: the identity proof behind SSO logins
//! (ID tokens) and workload certificates (CI and Kubernetes tokens), with no standing secret.
//!
//! - [`discovery`]: the issuer's `/.well-known/openid-configuration`, checked to name the
//!   issuer it was fetched for.
//! - [`jwks`]: the issuer's signing keys, cached, refreshed on an unknown key id (rate-limited,
//!   so a flood of made-up key ids cannot hammer the issuer).
//! - [`verify`]: a compact JWS checked against those keys (the header's `alg` must match the
//!   key type; `none` and `HS*` are always refused), then `iss`, `aud`, `exp`/`nbf`/`iat` with a
//!   bounded skew against the caller's clock, and `nonce` where one is expected.
//! - [`http`]: the bounded HTTPS client all fetching goes through (plain `http` only to
//!   loopback, no redirects, size and time limits).
//!
//! No CLI: the CA API and the SSO login use it.

pub mod discovery;
pub mod error;
pub mod http;
pub mod jwk;
pub mod jwks;
pub mod jws;
pub mod verify;

#[cfg(any(test, feature = "test-support"))]
pub mod testing;

pub use discovery::{Discovery, discover};
pub use error::{FetchError, VerifyError};
pub use http::{FormReply, HttpClient};
pub use jwk::{Alg, Jwk, KeyMaterial, KeySet};
pub use jwks::{JwksCache, JwksSource};
pub use verify::{Claims, Expectations, Verifier};
