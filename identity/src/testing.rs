//! Test support (feature `test-support`, and this crate's own unit tests): signing keys a test
//! creates, their JWKS, and tokens signed with them, including the bad ones a verifier must
//! refuse (`alg: none`, HS256 with the public key as the secret). Never in a release build of
//! the binaries: only the test harness enables the feature.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

/// A signing key a test created.
pub struct TestKey {
    kid: String,
    pair: Pair,
}

enum Pair {
    Rsa(RsaKeyPair),
    P256(EcdsaKeyPair),
    Ed25519(Ed25519KeyPair),
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

impl TestKey {
    /// A fresh RSA 2048 key (signs RS256).
    pub fn rsa(kid: &str) -> TestKey {
        let pair = RsaKeyPair::generate(KeySize::Rsa2048).expect("RSA key generation");
        TestKey {
            kid: kid.into(),
            pair: Pair::Rsa(pair),
        }
    }

    /// A fresh P-256 key (signs ES256).
    pub fn p256(kid: &str) -> TestKey {
        let pair = EcdsaKeyPair::generate(&signature::ECDSA_P256_SHA256_FIXED_SIGNING)
            .expect("P-256 key generation");
        TestKey {
            kid: kid.into(),
            pair: Pair::P256(pair),
        }
    }

    /// A fresh Ed25519 key (signs EdDSA).
    pub fn ed25519(kid: &str) -> TestKey {
        let pair = Ed25519KeyPair::generate().expect("Ed25519 key generation");
        TestKey {
            kid: kid.into(),
            pair: Pair::Ed25519(pair),
        }
    }

    /// The key id.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The algorithm it signs with.
    pub fn alg(&self) -> &'static str {
        match self.pair {
            Pair::Rsa(_) => "RS256",
            Pair::P256(_) => "ES256",
            Pair::Ed25519(_) => "EdDSA",
        }
    }

    /// Its public JWK.
    pub fn jwk(&self) -> Value {
        match &self.pair {
            Pair::Rsa(pair) => {
                let public = pair.public_key();
                json!({
                    "kty": "RSA", "kid": self.kid, "use": "sig", "alg": "RS256",
                    "n": b64(public.modulus().big_endian_without_leading_zero()),
                    "e": b64(public.exponent().big_endian_without_leading_zero()),
                })
            }
            Pair::P256(pair) => {
                let point = pair.public_key().as_ref();
                json!({
                    "kty": "EC", "kid": self.kid, "use": "sig", "crv": "P-256",
                    "x": b64(&point[1..33]), "y": b64(&point[33..65]),
                })
            }
            Pair::Ed25519(pair) => json!({
                "kty": "OKP", "kid": self.kid, "use": "sig", "crv": "Ed25519",
                "x": b64(pair.public_key().as_ref()),
            }),
        }
    }

    /// The public key as a "secret": what the HS256 key-confusion attack signs with.
    pub fn public_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(&self.jwk()).unwrap_or_default()
    }

    /// `claims` signed with this key (header: its alg and kid).
    pub fn sign(&self, claims: &Value) -> String {
        self.sign_with_header(
            &json!({"alg": self.alg(), "kid": self.kid, "typ": "JWT"}),
            claims,
        )
    }

    /// `claims` under `header`, signed with this key (whatever the header says).
    pub fn sign_with_header(&self, header: &Value, claims: &Value) -> String {
        let input = signing_input(header, claims);
        let signature = match &self.pair {
            Pair::Rsa(pair) => {
                let mut sig = vec![0; pair.public_modulus_len()];
                pair.sign(
                    &signature::RSA_PKCS1_SHA256,
                    &SystemRandom::new(),
                    input.as_bytes(),
                    &mut sig,
                )
                .expect("RSA signing");
                sig
            }
            Pair::P256(pair) => pair
                .sign(&SystemRandom::new(), input.as_bytes())
                .expect("ECDSA signing")
                .as_ref()
                .to_vec(),
            Pair::Ed25519(pair) => pair.sign(input.as_bytes()).as_ref().to_vec(),
        };
        format!("{input}.{}", b64(&signature))
    }
}

fn signing_input(header: &Value, claims: &Value) -> String {
    format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    )
}

/// A JWKS document with these keys.
pub fn jwks(keys: &[&TestKey]) -> Value {
    json!({ "keys": keys.iter().map(|k| k.jwk()).collect::<Vec<_>>() })
}

/// An unsigned token (`alg: none`, empty signature).
pub fn unsigned(kid: &str, claims: &Value) -> String {
    format!(
        "{}.",
        signing_input(&json!({"alg": "none", "kid": kid, "typ": "JWT"}), claims)
    )
}

/// A token MACed with HS256 under `secret` (e.g. [`TestKey::public_bytes`]).
pub fn hs256(secret: &[u8], kid: &str, claims: &Value) -> String {
    let input = signing_input(&json!({"alg": "HS256", "kid": kid, "typ": "JWT"}), claims);
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret);
    let tag = aws_lc_rs::hmac::sign(&key, input.as_bytes());
    format!("{input}.{}", b64(tag.as_ref()))
}

/// `token` with its payload replaced by `claims` (the signature kept): a tampered token.
pub fn tampered(token: &str, claims: &Value) -> String {
    let mut parts = token.split('.');
    let header = parts.next().unwrap_or_default();
    let signature = parts.nth(1).unwrap_or_default();
    format!(
        "{header}.{}.{signature}",
        b64(claims.to_string().as_bytes())
    )
}
