//! X25519 (jitssh patch, see `PATCHED.md`): an ephemeral public key, and the
//! Diffie-Hellman step (the peer's point times our scalar).
//!
//! With the `aws-lc-rs` feature both run on AWS-LC's assembly implementation, which costs a
//! fraction of curve25519-dalek's portable Montgomery ladder (the largest single cost of a
//! key exchange on x86_64); otherwise on curve25519-dalek. Both clamp the scalar as RFC 7748
//! says, so the results are identical.

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

/// The public key of `secret` (clamped): the base point times it.
#[cfg(feature = "aws-lc-rs")]
pub(crate) fn public_key(secret: [u8; 32]) -> MontgomeryPoint {
    use aws_lc_rs::agreement::{PrivateKey, X25519};
    let public = PrivateKey::from_private_key(&X25519, &secret)
        .and_then(|private| private.compute_public_key().map_err(Into::into));
    match public {
        Ok(public) if public.as_ref().len() == 32 => {
            let mut point = MontgomeryPoint([0; 32]);
            point.0.copy_from_slice(public.as_ref());
            point
        }
        _ => MontgomeryPoint::mul_base_clamped(secret),
    }
}

/// The public key of `secret` (clamped), on curve25519-dalek.
#[cfg(not(feature = "aws-lc-rs"))]
pub(crate) fn public_key(secret: [u8; 32]) -> MontgomeryPoint {
    MontgomeryPoint::mul_base_clamped(secret)
}

/// `secret` (clamped) times `peer`, on curve25519-dalek.
#[cfg(not(feature = "aws-lc-rs"))]
pub(crate) fn mul_clamped(peer: &MontgomeryPoint, secret: [u8; 32]) -> MontgomeryPoint {
    peer.mul_clamped(secret)
}
