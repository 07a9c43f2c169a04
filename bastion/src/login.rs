//! The SSH user string `LOGIN@TARGET`: which remote login on which target the user wants.
//!
//! It arrives from the network before authentication, so it is bounded and checked character
//! by character before anything else looks at it; anything odd is a clean refusal.

use std::fmt;

pub use crate::names::printable;
use crate::names::valid_target_name;

/// Longest accepted user string (login, `@`, target).
pub const MAX_USER_STRING: usize = 320;
/// Longest accepted login (POSIX allows 32 on most systems; be generous).
const MAX_LOGIN: usize = 64;

/// A parsed `LOGIN@TARGET`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginTarget {
    /// The remote login (a principal of the user's certificate).
    pub login: String,
    /// The target name, as configured.
    pub target: String,
}

/// Why a user string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadUserString {
    /// Longer than [`MAX_USER_STRING`].
    #[error("user string longer than {MAX_USER_STRING} bytes")]
    TooLong,
    /// No `@`: the target is missing.
    #[error("user string must be LOGIN@TARGET (e.g. deploy@web01)")]
    NoTarget,
    /// The login part is empty or has characters logins never have.
    #[error("invalid login {0:?} (letters, digits, '.', '-', '_')")]
    BadLogin(String),
    /// The target part is empty or has characters host names never have.
    #[error("invalid target name {0:?}")]
    BadTarget(String),
    /// A login inside a jump connection named a target: the target is the `-J` destination.
    #[error("through a jump (ssh -J) the user string is just LOGIN: the target is the destination")]
    TargetGiven,
}

/// Parses a user string that is just a login: the outer login of a jump connection (the
/// person's name) or the inner login through it (the target is the jump's destination).
pub fn parse_login(user: &str) -> Result<String, BadUserString> {
    if user.len() > MAX_USER_STRING {
        return Err(BadUserString::TooLong);
    }
    if !valid_login(user) {
        return Err(BadUserString::BadLogin(printable(user)));
    }
    Ok(user.to_string())
}

impl LoginTarget {
    /// Parses `LOGIN@TARGET`, splitting at the last `@` (so logins may not contain one, but
    /// the rule is unambiguous for every input).
    pub fn parse(user: &str) -> Result<LoginTarget, BadUserString> {
        if user.len() > MAX_USER_STRING {
            return Err(BadUserString::TooLong);
        }
        let (login, target) = user.rsplit_once('@').ok_or(BadUserString::NoTarget)?;
        if !valid_login(login) {
            return Err(BadUserString::BadLogin(printable(login)));
        }
        if !valid_target_name(target) {
            return Err(BadUserString::BadTarget(printable(target)));
        }
        Ok(LoginTarget {
            login: login.to_string(),
            target: target.to_string(),
        })
    }
}

impl fmt::Display for LoginTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.login, self.target)
    }
}

/// POSIX portable user names, plus the trailing `$` Samba machine accounts use.
fn valid_login(login: &str) -> bool {
    let body = login.strip_suffix('$').unwrap_or(login);
    !body.is_empty()
        && login.len() <= MAX_LOGIN
        && !body.starts_with('-')
        && body
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_at_the_last_at() {
        let lt = LoginTarget::parse("deploy@web01").unwrap();
        assert_eq!((lt.login.as_str(), lt.target.as_str()), ("deploy", "web01"));
        assert_eq!(lt.to_string(), "deploy@web01");
        assert_eq!(
            LoginTarget::parse("a@b@web01"),
            Err(BadUserString::BadLogin("a@b".into()))
        );
        assert_eq!(LoginTarget::parse("host$@db").unwrap().login, "host$");
    }

    #[test]
    fn refuses_garbage_cleanly() {
        assert_eq!(LoginTarget::parse("deploy"), Err(BadUserString::NoTarget));
        assert_eq!(LoginTarget::parse(""), Err(BadUserString::NoTarget));
        assert!(matches!(
            LoginTarget::parse("@web01"),
            Err(BadUserString::BadLogin(_))
        ));
        assert!(matches!(
            LoginTarget::parse("deploy@"),
            Err(BadUserString::BadTarget(_))
        ));
        assert!(matches!(
            LoginTarget::parse("-oProxy@web01"),
            Err(BadUserString::BadLogin(_))
        ));
        assert!(matches!(
            LoginTarget::parse("de ploy@web01"),
            Err(BadUserString::BadLogin(_))
        ));
        assert!(matches!(
            LoginTarget::parse("deploy@web 01"),
            Err(BadUserString::BadTarget(_))
        ));
        assert!(matches!(
            LoginTarget::parse("deploy@web\u{0}01"),
            Err(BadUserString::BadTarget(_))
        ));
        assert!(matches!(
            LoginTarget::parse("dépl@web01"),
            Err(BadUserString::BadLogin(_))
        ));
        let huge = format!("{}@web01", "a".repeat(100_000));
        assert_eq!(LoginTarget::parse(&huge), Err(BadUserString::TooLong));
        let long_login = format!("{}@web01", "a".repeat(65));
        assert!(matches!(
            LoginTarget::parse(&long_login),
            Err(BadUserString::BadLogin(_))
        ));
    }

    #[test]
    fn a_bare_login_is_checked_like_the_login_part() {
        assert_eq!(parse_login("alice"), Ok("alice".to_string()));
        assert!(matches!(parse_login("-o"), Err(BadUserString::BadLogin(_))));
        assert!(matches!(parse_login(""), Err(BadUserString::BadLogin(_))));
        assert!(matches!(
            parse_login("a@web01"),
            Err(BadUserString::BadLogin(_))
        ));
    }

    #[test]
    fn printable_escapes_and_bounds() {
        assert_eq!(printable("a\nb"), "a\\nb");
        assert_eq!(printable(&"x".repeat(100)).chars().count(), 65);
    }
}
