//! The life of one session as a state machine: pure transitions, no I/O.
//!
//! The session's task (module `session::task`) owns a [`Phase`], turns what happens (the target leg
//! came up, the certificate expired, an auditor ended the session, the person left) into an
//! [`Event`], and carries out the [`Effect`] that [`Phase::on`] returns. Keeping the decisions
//! here, apart from sockets and timers, is what lets them be tested one by one (in the style
//! of [`crate::admission`]): who wins when two reasons to end arrive, what a session whose
//! target never came up records, what happens to events after the end.

use std::sync::Arc;

use jitssh_core::audit::AuditError;

use crate::upstream::UpstreamError;

/// Why a session's target leg is not available to its channels. Shown to the person (on the
/// channel's stderr) and recorded as the end reason.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LegError {
    /// The login names a target the configuration no longer has.
    #[error("unknown target {0:?}")]
    UnknownTarget(String),
    /// Connecting or logging in to the target failed.
    #[error(transparent)]
    Unreachable(Arc<UpstreamError>),
    /// The target leg is up but `session.start` could not be audited, so it was closed.
    #[error("the bastion cannot write its audit log: {0}")]
    AuditUnavailable(Arc<AuditError>),
    /// The recording could not start and the policy forbids an unrecorded session.
    #[error("the session cannot be recorded: {0}")]
    NotRecorded(String),
    /// A channel waited longer than the connect timeout (and a grace) for the leg.
    #[error("timed out connecting to {0}")]
    TimedOut(String),
    /// The session's task is gone (the session ended) before the leg came up.
    #[error("target connection abandoned")]
    Abandoned,
}

/// Why a session ended: what the person is told (`session ended: ...`) and what
/// `session.end` records.
#[derive(Debug, Clone, thiserror::Error)]
pub enum EndReason {
    /// The person's certificate expired.
    #[error("your certificate expired")]
    Expired,
    /// The person's certificate was revoked (the CA's reason).
    #[error("your certificate was revoked ({0})")]
    Revoked(String),
    /// The bastion is stopping.
    #[error("the bastion is shutting down")]
    Shutdown,
    /// An auditor ended the session (the message names the auditor's reason).
    #[error("{0}")]
    Killed(String),
    /// The target closed the session's connection.
    #[error("the target closed the connection")]
    TargetClosed,
    /// The recording could not be written and the policy forbids going on unrecorded.
    #[error("the recording failed ({0})")]
    RecordingFailed(String),
    /// The target leg never came up; the person left after hearing why.
    #[error("target unreachable: {0}")]
    TargetUnreachable(LegError),
    /// The person's client disconnected.
    #[error("the client disconnected")]
    ClientDisconnected,
    /// The person's connection failed.
    #[error("connection error: {0}")]
    ConnectionError(String),
}

/// Where a session is in its life.
#[derive(Debug, Clone)]
pub enum Phase {
    /// Logged in; the target leg (and the recording) are being set up.
    Connecting,
    /// The target leg is up: channels are relayed.
    Live,
    /// The target leg failed: the person's channels are told why, and the session ends when
    /// the person leaves (or for any other reason to end).
    Unreachable(LegError),
    /// The end is decided: the person is being told and both legs are closing.
    Ending(EndReason),
    /// The person's connection is gone and the end is recorded. Nothing happens any more.
    Done(EndReason),
}

/// What happened to a session.
#[derive(Debug, Clone)]
pub enum Event {
    /// The target leg is up and the recording started (or may be skipped).
    LegReady,
    /// The target leg (or the recording it needs) failed.
    LegFailed(LegError),
    /// A reason to end the session now (expiry, revocation, shutdown, auditor, target gone,
    /// recording failure).
    End(EndReason),
    /// The person's connection ended.
    ClientGone(EndReason),
}

/// What the session's task must do after a transition.
#[derive(Debug, Clone)]
pub enum Effect {
    /// Nothing.
    None,
    /// Let channels use the target leg.
    GoLive,
    /// Tell waiting channels why the target leg is not coming.
    ReportLegFailure(LegError),
    /// Tell the person why, close their channels, disconnect both legs.
    Close(EndReason),
    /// Record the session's end (seal the recording, `session.end`) and stop.
    Finish(EndReason),
}

/// A transition: the next phase and what to do about it.
#[derive(Debug, Clone)]
pub struct Step {
    /// The phase after the event.
    pub next: Phase,
    /// What the task must do.
    pub effect: Effect,
}

impl Phase {
    /// The phase after `event`, and the effect to carry out. The first reason to end wins;
    /// a session whose target never came up records that as its end unless something else
    /// ended it first; nothing happens after [`Phase::Done`].
    pub fn on(&self, event: Event) -> Step {
        let stay = || Step {
            next: self.clone(),
            effect: Effect::None,
        };
        match (self, event) {
            (Phase::Done(_), _) => stay(),
            (Phase::Connecting, Event::LegReady) => Step {
                next: Phase::Live,
                effect: Effect::GoLive,
            },
            (Phase::Connecting, Event::LegFailed(why)) => Step {
                next: Phase::Unreachable(why.clone()),
                effect: Effect::ReportLegFailure(why),
            },
            // A leg that comes up (or fails) after the session was decided changes nothing;
            // the task closes a late leg itself.
            (_, Event::LegReady | Event::LegFailed(_)) => stay(),
            (Phase::Ending(_), Event::End(_)) => stay(),
            (Phase::Connecting | Phase::Live | Phase::Unreachable(_), Event::End(reason)) => Step {
                next: Phase::Ending(reason.clone()),
                effect: Effect::Close(reason),
            },
            (Phase::Ending(first), Event::ClientGone(_)) => Step {
                next: Phase::Done(first.clone()),
                effect: Effect::Finish(first.clone()),
            },
            (Phase::Unreachable(why), Event::ClientGone(_)) => {
                let reason = EndReason::TargetUnreachable(why.clone());
                Step {
                    next: Phase::Done(reason.clone()),
                    effect: Effect::Finish(reason),
                }
            }
            (Phase::Connecting | Phase::Live, Event::ClientGone(reason)) => Step {
                next: Phase::Done(reason.clone()),
                effect: Effect::Finish(reason),
            },
        }
    }

    /// Whether the session's end is decided (channels must not start anything new).
    pub fn is_ending(&self) -> bool {
        matches!(self, Phase::Ending(_) | Phase::Done(_))
    }
}

/// How many seconds are left before the certificate expires, if that is within the warning
/// window: a channel that starts then is warned at once (the periodic warning may have gone
/// out before it existed).
pub fn expiry_notice(now: u64, valid_before: u64, warn_before: u64) -> Option<u64> {
    let left = valid_before.saturating_sub(now);
    (left <= warn_before).then_some(left)
}

/// The warning sent before a certificate expires.
pub fn expiry_warning(seconds_left: u64) -> String {
    format!(
        "your certificate expires in {seconds_left}s; this session will end then. Get a new certificate and reconnect."
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn revoked() -> EndReason {
        EndReason::Revoked("laptop stolen".into())
    }

    fn refused() -> LegError {
        LegError::NotRecorded("disk full".into())
    }

    #[test]
    fn a_leg_that_comes_up_makes_the_session_live() {
        let step = Phase::Connecting.on(Event::LegReady);
        assert!(matches!(step.next, Phase::Live));
        assert!(matches!(step.effect, Effect::GoLive));
    }

    #[test]
    fn a_target_that_fails_while_connecting_is_reported_not_closed() {
        // The person's channels explain why (exit 255), so the connection is not cut.
        let step = Phase::Connecting.on(Event::LegFailed(refused()));
        assert!(matches!(
            step.next,
            Phase::Unreachable(LegError::NotRecorded(_))
        ));
        assert!(matches!(step.effect, Effect::ReportLegFailure(_)));
    }

    #[test]
    fn the_person_leaving_an_unreachable_session_records_target_unreachable() {
        let step =
            Phase::Unreachable(refused()).on(Event::ClientGone(EndReason::ClientDisconnected));
        let Effect::Finish(reason) = step.effect else {
            panic!("expected Finish, got {:?}", step.effect);
        };
        assert_eq!(
            reason.to_string(),
            "target unreachable: the session cannot be recorded: disk full"
        );
        assert!(matches!(
            step.next,
            Phase::Done(EndReason::TargetUnreachable(_))
        ));
    }

    #[test]
    fn revocation_while_live_closes_the_session() {
        let step = Phase::Live.on(Event::End(revoked()));
        assert!(matches!(step.next, Phase::Ending(EndReason::Revoked(_))));
        let Effect::Close(reason) = step.effect else {
            panic!("expected Close, got {:?}", step.effect);
        };
        assert_eq!(
            reason.to_string(),
            "your certificate was revoked (laptop stolen)"
        );
    }

    #[test]
    fn expiry_while_connecting_or_unreachable_closes_the_session() {
        for phase in [Phase::Connecting, Phase::Unreachable(refused())] {
            let step = phase.on(Event::End(EndReason::Expired));
            assert!(matches!(step.next, Phase::Ending(EndReason::Expired)));
            assert!(matches!(step.effect, Effect::Close(EndReason::Expired)));
        }
    }

    #[test]
    fn the_first_reason_to_end_wins() {
        let ending = Phase::Live.on(Event::End(revoked())).next;
        let again = ending.on(Event::End(EndReason::Shutdown));
        assert!(matches!(again.next, Phase::Ending(EndReason::Revoked(_))));
        assert!(matches!(again.effect, Effect::None));
        let done = again
            .next
            .on(Event::ClientGone(EndReason::ClientDisconnected));
        assert!(matches!(done.effect, Effect::Finish(EndReason::Revoked(_))));
    }

    #[test]
    fn a_person_who_leaves_a_live_session_ends_it_with_their_reason() {
        let step = Phase::Live.on(Event::ClientGone(EndReason::ConnectionError(
            "reset".into(),
        )));
        let Effect::Finish(reason) = step.effect else {
            panic!("expected Finish, got {:?}", step.effect);
        };
        assert_eq!(reason.to_string(), "connection error: reset");
        let early = Phase::Connecting.on(Event::ClientGone(EndReason::ClientDisconnected));
        assert!(matches!(
            early.effect,
            Effect::Finish(EndReason::ClientDisconnected)
        ));
    }

    #[test]
    fn a_leg_arriving_after_the_end_changes_nothing() {
        for phase in [
            Phase::Live,
            Phase::Ending(EndReason::Shutdown),
            Phase::Unreachable(refused()),
        ] {
            let step = phase.on(Event::LegReady);
            assert!(matches!(step.effect, Effect::None));
            assert_eq!(format!("{:?}", step.next), format!("{phase:?}"));
        }
    }

    #[test]
    fn nothing_happens_after_done() {
        let done = Phase::Done(EndReason::Expired);
        for event in [
            Event::LegReady,
            Event::End(EndReason::Shutdown),
            Event::ClientGone(EndReason::ClientDisconnected),
        ] {
            let step = done.on(event);
            assert!(matches!(step.next, Phase::Done(EndReason::Expired)));
            assert!(matches!(step.effect, Effect::None));
        }
        assert!(done.is_ending());
        assert!(!Phase::Unreachable(refused()).is_ending());
    }

    #[test]
    fn end_reasons_read_as_before() {
        // The texts people and auditors already rely on (tests/tests/bastion_session.rs).
        assert_eq!(EndReason::Expired.to_string(), "your certificate expired");
        assert_eq!(
            EndReason::Shutdown.to_string(),
            "the bastion is shutting down"
        );
        assert_eq!(
            EndReason::TargetClosed.to_string(),
            "the target closed the connection"
        );
        assert_eq!(
            EndReason::RecordingFailed("disk full".into()).to_string(),
            "the recording failed (disk full)"
        );
        assert_eq!(
            EndReason::ClientDisconnected.to_string(),
            "the client disconnected"
        );
        assert_eq!(
            LegError::TimedOut("web01".into()).to_string(),
            "timed out connecting to web01"
        );
    }

    #[test]
    fn channels_starting_inside_the_warning_window_are_warned() {
        assert_eq!(expiry_notice(1_000, 1_030, 60), Some(30));
        assert_eq!(expiry_notice(1_000, 1_060, 60), Some(60));
        assert_eq!(expiry_notice(1_000, 1_061, 60), None);
        assert_eq!(expiry_notice(2_000, 1_000, 60), Some(0));
    }
}
