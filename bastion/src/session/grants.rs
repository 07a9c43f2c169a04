//! Which channels the target may open towards the person: only the kinds of forwarding the
//! person asked for and the target granted during this session. Pure bookkeeping, owned by
//! the session's task.

use std::collections::HashSet;

/// A change to what the session was granted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grant {
    /// The target accepted agent forwarding.
    Agent,
    /// The target accepted X11 forwarding.
    X11,
    /// A remote forward of `address:port` is being set up (port 0: any port, until the
    /// target says which). Granted before the target is asked: it may forward a connection
    /// the moment it listens, before its answer reaches the bastion.
    RemotePort(String, u32),
    /// The target bound the remote forward asked as `address:0` to `port`.
    RemotePortBound(String, u32),
    /// A remote forward ended (cancelled, or the target refused it).
    RemotePortGone(String, u32),
}

/// A channel the target wants to open towards the person.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opening<'a> {
    /// An agent connection.
    Agent,
    /// An X11 connection.
    X11,
    /// A connection to the remote-forwarded `address:port`.
    Forwarded(&'a str, u32),
}

/// Forwarding granted during a session.
#[derive(Debug, Default)]
pub struct Grants {
    agent: bool,
    x11: bool,
    remote_ports: HashSet<(String, u32)>,
}

impl Grants {
    /// Applies a change.
    pub fn apply(&mut self, grant: Grant) {
        match grant {
            Grant::Agent => self.agent = true,
            Grant::X11 => self.x11 = true,
            Grant::RemotePort(address, port) => {
                self.remote_ports.insert((address, port));
            }
            Grant::RemotePortBound(address, port) => {
                self.remote_ports.remove(&(address.clone(), 0));
                self.remote_ports.insert((address, port));
            }
            Grant::RemotePortGone(address, port) => {
                self.remote_ports.remove(&(address, port));
            }
        }
    }

    /// Whether the target may open `opening` towards the person.
    pub fn allows(&self, opening: Opening<'_>) -> bool {
        match opening {
            Opening::Agent => self.agent,
            Opening::X11 => self.x11,
            Opening::Forwarded(address, port) => {
                let granted = |port| self.remote_ports.contains(&(address.to_string(), port));
                granted(port) || granted(0)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_is_granted_at_first() {
        let grants = Grants::default();
        assert!(!grants.allows(Opening::Agent));
        assert!(!grants.allows(Opening::X11));
        assert!(!grants.allows(Opening::Forwarded("localhost", 8080)));
    }

    #[test]
    fn agent_and_x11_are_granted_separately() {
        let mut grants = Grants::default();
        grants.apply(Grant::Agent);
        assert!(grants.allows(Opening::Agent));
        assert!(!grants.allows(Opening::X11));
        grants.apply(Grant::X11);
        assert!(grants.allows(Opening::X11));
    }

    #[test]
    fn a_remote_forward_allows_only_its_own_address_and_port() {
        let mut grants = Grants::default();
        grants.apply(Grant::RemotePort("localhost".into(), 8080));
        assert!(grants.allows(Opening::Forwarded("localhost", 8080)));
        assert!(!grants.allows(Opening::Forwarded("localhost", 8081)));
        assert!(!grants.allows(Opening::Forwarded("0.0.0.0", 8080)));
        grants.apply(Grant::RemotePortGone("localhost".into(), 8080));
        assert!(!grants.allows(Opening::Forwarded("localhost", 8080)));
    }

    #[test]
    fn port_zero_allows_any_port_until_the_target_names_one() {
        let mut grants = Grants::default();
        grants.apply(Grant::RemotePort("localhost".into(), 0));
        assert!(grants.allows(Opening::Forwarded("localhost", 40001)));
        grants.apply(Grant::RemotePortBound("localhost".into(), 40001));
        assert!(grants.allows(Opening::Forwarded("localhost", 40001)));
        assert!(!grants.allows(Opening::Forwarded("localhost", 40002)));
    }
}
