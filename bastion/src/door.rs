//! The front door's state before a session exists: refusals so far, whether the person was
//! told why, the accepted login waiting for russh to confirm it. Pure: [`crate::front`] holds
//! one [`Door`] per connection and acts on what its methods return.

use jitssh_core::ssh_key::Certificate;

use crate::admission::{Admitted, JumpAdmitted, Refusal};

/// A login the front door accepted, waiting for the SSH layer to confirm authentication.
#[derive(Debug)]
pub struct Accepted {
    /// The new session's id.
    pub id: String,
    /// What the login was admitted for.
    pub admitted: Admitted,
    /// The person's certificate.
    pub cert: Certificate,
}

/// A jump login the front door accepted (no target: see [`crate::jump`]).
#[derive(Debug)]
pub struct JumpAccepted {
    /// The jump connection's id (in its audit records and its inner logins').
    pub id: String,
    /// What the login was admitted for.
    pub admitted: JumpAdmitted,
    /// The person's certificate.
    pub cert: Certificate,
}

/// What a confirmed login opens.
#[derive(Debug)]
pub enum Opened {
    /// A session to a target.
    Session(Accepted),
    /// A jump connection.
    Jump(JumpAccepted),
    /// A sign-in to the web console (`ssh web@bastion`).
    Web(crate::web::WebAdmitted),
}

/// Where a connection is on its way in.
#[derive(Debug)]
pub enum Door {
    /// Authenticating: the refusals so far, and whether the person was told why.
    Knocking {
        /// Every refusal, oldest first.
        refusals: Vec<Refusal>,
        /// Whether the refusal was sent (once per connection).
        told: bool,
    },
    /// A certificate was accepted; the session starts once the login is confirmed.
    Accepted(Box<Accepted>),
    /// A jump login was accepted; the connection opens once the login is confirmed.
    Jumping(Box<JumpAccepted>),
    /// A web console sign-in was accepted.
    Web(Box<crate::web::WebAdmitted>),
    /// The session started.
    Open,
}

impl Default for Door {
    fn default() -> Door {
        Door::Knocking {
            refusals: Vec::new(),
            told: false,
        }
    }
}

impl Door {
    /// A credential was refused.
    pub fn refuse(&mut self, refusal: Refusal) {
        if let Door::Knocking { refusals, .. } = self {
            refusals.push(refusal);
        }
    }

    /// Whether this refusal was already made on this connection (so it is audited once).
    pub fn has_refused(&self, refusal: &Refusal) -> bool {
        matches!(self, Door::Knocking { refusals, .. } if refusals.contains(refusal))
    }

    /// Whether a certificate may still be considered (one login per connection).
    pub fn knocking(&self) -> bool {
        matches!(self, Door::Knocking { .. })
    }

    /// A certificate was accepted.
    pub fn accept(&mut self, accepted: Accepted) {
        if self.knocking() {
            *self = Door::Accepted(Box::new(accepted));
        }
    }

    /// A jump login was accepted.
    pub fn accept_jump(&mut self, accepted: JumpAccepted) {
        if self.knocking() {
            *self = Door::Jumping(Box::new(accepted));
        }
    }

    /// A web console sign-in was accepted.
    pub fn accept_web(&mut self, accepted: crate::web::WebAdmitted) {
        if self.knocking() {
            *self = Door::Web(Box::new(accepted));
        }
    }

    /// The person came back (keyboard-interactive) to hear why they were refused: the
    /// message, once, if there was a refusal.
    pub fn tell(&mut self) -> Option<String> {
        match self {
            Door::Knocking { refusals, told } if !refusals.is_empty() && !*told => {
                *told = true;
                Some(refusal_message(refusals))
            }
            _ => None,
        }
    }

    /// The login was confirmed: the accepted login, to start its session.
    pub fn open(&mut self) -> Option<Opened> {
        match std::mem::replace(self, Door::Open) {
            Door::Accepted(accepted) => Some(Opened::Session(*accepted)),
            Door::Jumping(accepted) => Some(Opened::Jump(*accepted)),
            Door::Web(accepted) => Some(Opened::Web(*accepted)),
            other => {
                *self = other;
                None
            }
        }
    }
}

/// The message for a refused person: the last certificate refusal if there was one (it is
/// the most specific), otherwise the plain-key hint.
pub fn refusal_message(refusals: &[Refusal]) -> String {
    refusals
        .iter()
        .rev()
        .find(|r| !matches!(r, Refusal::PlainKey))
        .or(refusals.last())
        .map_or_else(|| "authentication refused".to_string(), ToString::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nobody_is_told_anything_before_a_refusal() {
        let mut door = Door::default();
        assert_eq!(door.tell(), None);
    }

    #[test]
    fn the_refusal_is_told_once() {
        let mut door = Door::default();
        door.refuse(Refusal::PlainKey);
        assert_eq!(door.tell(), Some(Refusal::PlainKey.to_string()));
        assert_eq!(door.tell(), None);
    }

    #[test]
    fn a_certificate_refusal_beats_the_plain_key_hint() {
        let refusals = [Refusal::UnknownTarget("db".into()), Refusal::PlainKey];
        assert_eq!(refusal_message(&refusals), "unknown target \"db\"");
        assert_eq!(refusal_message(&[]), "authentication refused");
    }

    #[test]
    fn a_session_opens_only_after_an_accepted_login() {
        let mut door = Door::default();
        assert!(door.open().is_none());
        assert!(door.knocking());
    }
}
