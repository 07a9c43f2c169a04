//! JSON Web Keys (RFC 7517/7518/8037): the public keys an issuer signs with, and the
//! signature check for each algorithm. Only asymmetric keys exist here: a JWK of type `oct`
//! (a shared secret) or meant for encryption (`use: enc`) is skipped when a set is read, so
//! no token can ever be checked against one.

use std::fmt;

use aws_lc_rs::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;

use crate::error::VerifyError;

/// The signature algorithms accepted. `none` and `HS*` have no variant: they cannot be
/// represented, so they cannot be accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alg {
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    RS256,
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    RS384,
    /// RSASSA-PKCS1-v1_5 with SHA-512.
    RS512,
    /// RSASSA-PSS with SHA-256.
    PS256,
    /// RSASSA-PSS with SHA-384.
    PS384,
    /// RSASSA-PSS with SHA-512.
    PS512,
    /// ECDSA P-256 with SHA-256.
    ES256,
    /// ECDSA P-384 with SHA-384.
    ES384,
    /// Ed25519 (RFC 8037).
    EdDSA,
}

impl Alg {
    /// Parses a header's `alg`, refusing `none` and symmetric algorithms by name.
    pub fn parse(name: &str) -> Result<Alg, VerifyError> {
        Ok(match name {
            "RS256" => Alg::RS256,
            "RS384" => Alg::RS384,
            "RS512" => Alg::RS512,
            "PS256" => Alg::PS256,
            "PS384" => Alg::PS384,
            "PS512" => Alg::PS512,
            "ES256" => Alg::ES256,
            "ES384" => Alg::ES384,
            "EdDSA" => Alg::EdDSA,
            other if other.eq_ignore_ascii_case("none") => return Err(VerifyError::AlgNone),
            other if other.to_ascii_uppercase().starts_with("HS") => {
                return Err(VerifyError::AlgSymmetric(printable(other)));
            }
            other => return Err(VerifyError::AlgUnsupported(printable(other))),
        })
    }

    /// The JOSE name.
    pub fn name(self) -> &'static str {
        match self {
            Alg::RS256 => "RS256",
            Alg::RS384 => "RS384",
            Alg::RS512 => "RS512",
            Alg::PS256 => "PS256",
            Alg::PS384 => "PS384",
            Alg::PS512 => "PS512",
            Alg::ES256 => "ES256",
            Alg::ES384 => "ES384",
            Alg::EdDSA => "EdDSA",
        }
    }
}

impl fmt::Display for Alg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A public key's material, by type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyMaterial {
    /// RSA: modulus and exponent, big-endian without leading zeros.
    Rsa {
        /// Modulus.
        n: Vec<u8>,
        /// Public exponent.
        e: Vec<u8>,
    },
    /// P-256: the uncompressed point (0x04 || x || y).
    P256(Vec<u8>),
    /// P-384: the uncompressed point (0x04 || x || y).
    P384(Vec<u8>),
    /// Ed25519: the 32-byte public key.
    Ed25519(Vec<u8>),
}

impl KeyMaterial {
    /// The key's type as JOSE names it (for messages).
    pub fn kind(&self) -> &'static str {
        match self {
            KeyMaterial::Rsa { .. } => "RSA",
            KeyMaterial::P256(_) => "EC P-256",
            KeyMaterial::P384(_) => "EC P-384",
            KeyMaterial::Ed25519(_) => "OKP Ed25519",
        }
    }

    /// Whether `alg` is one this type of key signs with.
    pub fn fits(&self, alg: Alg) -> bool {
        matches!(
            (self, alg),
            (
                KeyMaterial::Rsa { .. },
                Alg::RS256 | Alg::RS384 | Alg::RS512 | Alg::PS256 | Alg::PS384 | Alg::PS512
            ) | (KeyMaterial::P256(_), Alg::ES256)
                | (KeyMaterial::P384(_), Alg::ES384)
                | (KeyMaterial::Ed25519(_), Alg::EdDSA)
        )
    }
}

/// One usable signing key of an issuer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Jwk {
    /// Its key id (`kid`), when the issuer gives one.
    pub kid: Option<String>,
    /// The algorithm the JWK pins, when it does (then only that one is accepted).
    pub alg: Option<Alg>,
    /// The key.
    pub key: KeyMaterial,
}

impl Jwk {
    /// The key id for messages (`-` when none).
    pub fn kid_or_dash(&self) -> &str {
        self.kid.as_deref().unwrap_or("-")
    }

    /// Checks that `alg` fits this key, then the signature over `message`.
    pub fn verify(&self, alg: Alg, message: &[u8], sig: &[u8]) -> Result<(), VerifyError> {
        let pinned_other = self.alg.is_some_and(|pinned| pinned != alg);
        if pinned_other || !self.key.fits(alg) {
            return Err(VerifyError::AlgKeyMismatch {
                alg: alg.name().to_string(),
                kid: self.kid_or_dash().to_string(),
                key: match self.alg {
                    Some(pinned) => format!("{} {pinned}", self.key.kind()),
                    None => self.key.kind().to_string(),
                },
            });
        }
        let checked = match &self.key {
            KeyMaterial::Rsa { n, e } => {
                let params = match alg {
                    Alg::RS256 => &signature::RSA_PKCS1_2048_8192_SHA256,
                    Alg::RS384 => &signature::RSA_PKCS1_2048_8192_SHA384,
                    Alg::RS512 => &signature::RSA_PKCS1_2048_8192_SHA512,
                    Alg::PS256 => &signature::RSA_PSS_2048_8192_SHA256,
                    Alg::PS384 => &signature::RSA_PSS_2048_8192_SHA384,
                    _ => &signature::RSA_PSS_2048_8192_SHA512,
                };
                RsaPublicKeyComponents { n, e }.verify(params, message, sig)
            }
            KeyMaterial::P256(point) => {
                UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                    .verify(message, sig)
            }
            KeyMaterial::P384(point) => {
                UnparsedPublicKey::new(&signature::ECDSA_P384_SHA384_FIXED, point)
                    .verify(message, sig)
            }
            KeyMaterial::Ed25519(public) => {
                UnparsedPublicKey::new(&signature::ED25519, public).verify(message, sig)
            }
        };
        checked.map_err(|_| VerifyError::BadSignature {
            kid: self.kid_or_dash().to_string(),
        })
    }
}

/// An issuer's usable signing keys.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeySet {
    /// The keys.
    pub keys: Vec<Jwk>,
    /// How many keys of the document were skipped (secret, encryption or unsupported keys).
    pub skipped: usize,
}

#[derive(Deserialize)]
struct RawSet {
    keys: Vec<serde_json::Value>,
}

#[derive(Deserialize)]
struct RawJwk {
    kty: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    alg: Option<String>,
    #[serde(default, rename = "use")]
    use_: Option<String>,
    #[serde(default)]
    n: Option<String>,
    #[serde(default)]
    e: Option<String>,
    #[serde(default)]
    crv: Option<String>,
    #[serde(default)]
    x: Option<String>,
    #[serde(default)]
    y: Option<String>,
}

/// Most keys taken from one JWKS document.
pub const MAX_KEYS: usize = 64;

impl KeySet {
    /// Reads a JWKS document (`{"keys": [...]}`). Keys that cannot verify signatures here are
    /// skipped (counted in `skipped`); a document that is not a key set is an error.
    pub fn from_json(document: &[u8]) -> Result<KeySet, String> {
        let raw: RawSet = serde_json::from_slice(document)
            .map_err(|err| format!("not a JWKS document: {err}"))?;
        let mut set = KeySet::default();
        for value in raw.keys {
            match serde_json::from_value::<RawJwk>(value)
                .ok()
                .and_then(|raw| jwk(&raw))
            {
                Some(key) if set.keys.len() < MAX_KEYS => set.keys.push(key),
                _ => set.skipped += 1,
            }
        }
        Ok(set)
    }

    /// The key with id `kid`.
    pub fn find(&self, kid: &str) -> Option<&Jwk> {
        self.keys.iter().find(|k| k.kid.as_deref() == Some(kid))
    }
}

/// A usable key from a raw JWK, or `None` (secret, encryption, malformed or unsupported).
fn jwk(raw: &RawJwk) -> Option<Jwk> {
    if raw.use_.as_deref().is_some_and(|u| u != "sig") {
        return None;
    }
    let alg = match raw.alg.as_deref() {
        None => None,
        Some(name) => Some(Alg::parse(name).ok()?),
    };
    let b64 = |field: &Option<String>| URL_SAFE_NO_PAD.decode(field.as_deref()?).ok();
    let key = match (raw.kty.as_str(), raw.crv.as_deref()) {
        ("RSA", _) => {
            let (n, e) = (strip_zeros(b64(&raw.n)?), strip_zeros(b64(&raw.e)?));
            if n.is_empty() || e.is_empty() {
                return None;
            }
            KeyMaterial::Rsa { n, e }
        }
        ("EC", Some("P-256")) => KeyMaterial::P256(point(b64(&raw.x)?, b64(&raw.y)?, 32)?),
        ("EC", Some("P-384")) => KeyMaterial::P384(point(b64(&raw.x)?, b64(&raw.y)?, 48)?),
        ("OKP", Some("Ed25519")) => {
            let x = b64(&raw.x)?;
            (x.len() == 32).then_some(())?;
            KeyMaterial::Ed25519(x)
        }
        _ => return None,
    };
    Some(Jwk {
        kid: raw.kid.clone(),
        alg,
        key,
    })
}

fn strip_zeros(mut bytes: Vec<u8>) -> Vec<u8> {
    let zeros = bytes.iter().take_while(|b| **b == 0).count();
    bytes.drain(..zeros);
    bytes
}

/// The uncompressed point from coordinates of `len` bytes each.
fn point(x: Vec<u8>, y: Vec<u8>, len: usize) -> Option<Vec<u8>> {
    (x.len() == len && y.len() == len).then(|| [&[4u8][..], &x, &y].concat())
}

fn printable(text: &str) -> String {
    text.chars()
        .take(32)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn none_and_symmetric_algorithms_cannot_be_parsed() {
        assert!(matches!(Alg::parse("none"), Err(VerifyError::AlgNone)));
        assert!(matches!(Alg::parse("NONE"), Err(VerifyError::AlgNone)));
        assert!(matches!(
            Alg::parse("HS256"),
            Err(VerifyError::AlgSymmetric(_))
        ));
        assert!(matches!(
            Alg::parse("hs512"),
            Err(VerifyError::AlgSymmetric(_))
        ));
        assert!(matches!(
            Alg::parse("RS1"),
            Err(VerifyError::AlgUnsupported(_))
        ));
        assert_eq!(Alg::parse("ES256").unwrap(), Alg::ES256);
    }

    #[test]
    fn secret_encryption_and_unknown_keys_are_skipped() {
        let doc = br#"{"keys":[
            {"kty":"oct","kid":"s","k":"c2VjcmV0"},
            {"kty":"RSA","kid":"enc","use":"enc","n":"AQAB","e":"AQAB"},
            {"kty":"EC","kid":"bad","crv":"P-256","x":"AQ","y":"AQ"},
            {"kty":"OKP","kid":"ed","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},
            {"kty":"RSA","kid":"r","alg":"RS256","n":"AMzM","e":"AQAB"}
        ]}"#;
        let set = KeySet::from_json(doc).unwrap();
        assert_eq!(set.skipped, 3);
        assert_eq!(set.keys.len(), 2);
        assert!(matches!(
            set.find("ed").unwrap().key,
            KeyMaterial::Ed25519(_)
        ));
        let rsa = set.find("r").unwrap();
        assert_eq!(rsa.alg, Some(Alg::RS256));
        assert_eq!(
            rsa.key,
            KeyMaterial::Rsa {
                n: vec![0xcc, 0xcc],
                e: vec![1, 0, 1]
            }
        );
        assert!(KeySet::from_json(b"{}").is_err());
    }

    #[test]
    fn alg_must_fit_the_key_type_and_the_pinned_alg() {
        let ed = Jwk {
            kid: Some("ed".into()),
            alg: None,
            key: KeyMaterial::Ed25519(vec![0; 32]),
        };
        let err = ed.verify(Alg::RS256, b"m", b"s").unwrap_err();
        assert!(matches!(err, VerifyError::AlgKeyMismatch { .. }), "{err}");
        let pinned = Jwk {
            kid: Some("r".into()),
            alg: Some(Alg::PS256),
            key: KeyMaterial::Rsa {
                n: vec![1],
                e: vec![3],
            },
        };
        let err = pinned.verify(Alg::RS256, b"m", b"s").unwrap_err();
        assert_eq!(
            err.to_string(),
            "alg RS256 does not match key r (RSA PS256)"
        );
    }
}
