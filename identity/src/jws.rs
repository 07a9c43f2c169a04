//! Compact JWS parsing (RFC 7515 §7.1): `BASE64URL(header).BASE64URL(payload).BASE64URL(sig)`.
//! Parsing checks shape only; nothing here is trusted until [`crate::verify`] has checked the
//! signature.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;

use crate::error::VerifyError;
use crate::verify::Claims;

/// Longest token accepted. Real ID and workload tokens are 1-4 KiB.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// The JOSE header fields jitssh reads.
#[derive(Debug, Clone, Deserialize)]
pub struct Header {
    /// The signature algorithm.
    pub alg: String,
    /// The key id.
    #[serde(default)]
    pub kid: Option<String>,
    /// Critical extensions: any is refused (none is understood).
    #[serde(default)]
    pub crit: Option<serde_json::Value>,
}

/// A parsed, not yet verified token.
#[derive(Debug, Clone)]
pub struct Parsed<'a> {
    /// The header.
    pub header: Header,
    /// The claims (unverified until the signature is checked).
    pub claims: Claims,
    /// `header.payload` as sent: what the signature covers.
    pub signing_input: &'a [u8],
    /// The signature bytes.
    pub signature: Vec<u8>,
}

/// Splits and decodes a compact JWS.
pub fn parse(token: &str) -> Result<Parsed<'_>, VerifyError> {
    let token = token.trim();
    if token.len() > MAX_TOKEN_BYTES {
        return Err(VerifyError::TooLong(MAX_TOKEN_BYTES));
    }
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(malformed("not three dot-separated parts (a compact JWS)"));
    };
    let header: Header = serde_json::from_slice(&decode(header, "header")?)
        .map_err(|err| malformed(&format!("header is not a JOSE header: {err}")))?;
    let claims: Claims = serde_json::from_slice(&decode(payload, "payload")?)
        .map_err(|err| malformed(&format!("payload is not a JSON object: {err}")))?;
    let signature = decode(signature, "signature")?;
    let signed_len = token.len() - token.rsplit('.').next().map_or(0, str::len) - 1;
    Ok(Parsed {
        header,
        claims,
        signing_input: &token.as_bytes()[..signed_len],
        signature,
    })
}

/// The claims of `token` without any check: only to choose which issuer's verifier to use
/// (the chosen verifier then checks everything).
pub fn unverified_claims(token: &str) -> Result<Claims, VerifyError> {
    parse(token).map(|parsed| parsed.claims)
}

fn decode(part: &str, what: &str) -> Result<Vec<u8>, VerifyError> {
    URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| malformed(&format!("{what} is not base64url")))
}

fn malformed(why: &str) -> VerifyError {
    VerifyError::Malformed(why.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(text: &str) -> String {
        URL_SAFE_NO_PAD.encode(text)
    }

    #[test]
    fn parses_three_parts_and_keeps_the_signing_input() {
        let token = format!(
            "{}.{}.{}",
            b64(r#"{"alg":"RS256","kid":"k1"}"#),
            b64(r#"{"sub":"x"}"#),
            b64("sig")
        );
        let parsed = parse(&token).unwrap();
        assert_eq!(parsed.header.alg, "RS256");
        assert_eq!(parsed.header.kid.as_deref(), Some("k1"));
        assert_eq!(parsed.claims["sub"], "x");
        assert_eq!(parsed.signature, b"sig");
        let dot = token.rfind('.').unwrap();
        assert_eq!(parsed.signing_input, &token.as_bytes()[..dot]);
    }

    #[test]
    fn refuses_bad_shapes_with_a_reason() {
        for (token, why) in [
            ("a.b", "three"),
            ("a.b.c.d", "three"),
            ("!!.e30.e30", "header is not base64url"),
            (&format!("{}.{}.", b64("[]"), b64("{}")), "JOSE header"),
            (
                &format!("{}.{}.", b64(r#"{"alg":"RS256"}"#), b64("[1]")),
                "JSON object",
            ),
        ] {
            let err = parse(token).unwrap_err().to_string();
            assert!(err.contains(why), "{token}: {err}");
        }
        let long = "a".repeat(MAX_TOKEN_BYTES + 1);
        assert!(matches!(parse(&long), Err(VerifyError::TooLong(_))));
    }
}
