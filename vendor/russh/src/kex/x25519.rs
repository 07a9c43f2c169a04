//! X25519 scalar multiplication of a peer's point (jitssh patch, see `PATCHED.md`).
//!
//! With the `aws-lc-rs` feature the Diffie-Hellman step runs on AWS-LC's assembly
//! implementation, which costs a fraction of curve25519-dalek's portable Montgomery ladder
//! (the largest single cost of a key exchange on x86_64); otherwise on curve25519-dalek.
//! Both clamp the scalar as RFC 7748 says, so the results are identical.

use curve25519_dalek::montgomery::MontgomeryPoint;

/// `secret` (clamped) times `peer`. An all-zero point when the result is the identity (a
/// low-order `peer`): callers refuse that as non-contributory.
#[cfg(feature = "aws-lc-rs")]
pub(crate) fn mul_clamped(peer: &MontgomeryPoint, secret: [u8; 32]) -> MontgomeryPoint {
    use aws_lc_rs::agreement::{PrivateKey, UnparsedPublicKey, X25519, agree};
    let Ok(private) = PrivateKey::from_private_key(&X25519, &secret) else {
        return MontgomeryPoint([0; 32]);
    };
    // AWS-LC refuses an all-zero result itself.
    agree(&private, UnparsedPublicKey::new(&X25519, &peer.0), (), |shared| {
        let mut point = MontgomeryPoint([0; 32]);
        if shared.len() == 32 {
            point.0.copy_from_slice(shared);
        }
        Ok(point)
    })
    .unwrap_or(MontgomeryPoint([0; 32]))
}

/// `secret` (clamped) times `peer`, on curve25519-dalek.
#[cfg(not(feature = "aws-lc-rs"))]
pub(crate) fn mul_clamped(peer: &MontgomeryPoint, secret: [u8; 32]) -> MontgomeryPoint {
    peer.mul_clamped(secret)
}
