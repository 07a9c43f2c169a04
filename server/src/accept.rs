//! The accept loop of both SSH servers (the bastion's front door and the CA API): connection
//! slots, a separate budget for connections that have not authenticated yet, and a pre-auth
//! deadline that closes the TCP socket itself.
//!
//! Why: before key exchange an SSH library cannot send a disconnect, so a client that sends
//! only its banner (or half a KEXINIT) would hold a slot for as long as it likes, and a
//! thousand such sockets lock everyone out. Here:
//! - every connection holds one of `max_connections` slots;
//! - unauthenticated connections are capped overall in the manner of OpenSSH's `MaxStartups`
//!   (`start:rate:full`: from `start` on, new ones are dropped with a probability rising from
//!   `rate`% to 100% at `full`), and never take more than three quarters of the slots, so
//!   authenticated sessions always keep a reserve;
//! - unauthenticated connections are capped per source address, so one host cannot take the
//!   whole unauthenticated budget;
//! - a connection not authenticated by the deadline has its socket shut down both ways,
//!   whatever phase it is in, which ends the SSH session and tells the peer (EOF);
//! - on authentication the server [promotes](Ticket::promote) the connection, which frees its
//!   unauthenticated budget and cancels the deadline.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::net::{IpAddr, Shutdown, SocketAddr};
use std::os::fd::{AsFd, OwnedFd};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jitssh_core::metrics::names;
use serde::Deserialize;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

/// The `max_startups` setting: `start:rate:full` as in OpenSSH's `MaxStartups`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct Startups {
    /// Unauthenticated connections always admitted.
    pub start: usize,
    /// Percent of new connections dropped once `start` are unauthenticated.
    pub rate: u8,
    /// Unauthenticated connections at which every new one is dropped.
    pub full: usize,
}

impl Default for Startups {
    fn default() -> Self {
        // Above OpenSSH's 10:30:100: a CA API serves bursts of automation (CI fleets, Ansible
        // forks) that finish their handshake in tens of milliseconds.
        Startups {
            start: 64,
            rate: 30,
            full: 256,
        }
    }
}

impl fmt::Display for Startups {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.start, self.rate, self.full)
    }
}

/// Why a `max_startups` value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid max_startups {input:?}: {why} (expected start:rate:full, e.g. \"64:30:256\")")]
pub struct StartupsError {
    input: String,
    why: &'static str,
}

impl FromStr for Startups {
    type Err = StartupsError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let fail = |why| StartupsError {
            input: input.to_string(),
            why,
        };
        let parts: Vec<&str> = input.trim().split(':').collect();
        let [start, rate, full] = parts[..] else {
            return Err(fail("it needs three numbers separated by ':'"));
        };
        let number = |text: &str| {
            text.trim()
                .parse::<usize>()
                .map_err(|_| fail("not a number"))
        };
        let (start, rate, full) = (number(start)?, number(rate)?, number(full)?);
        if start == 0 {
            return Err(fail("start must be at least 1"));
        }
        let rate = u8::try_from(rate)
            .ok()
            .filter(|r| (1..=100).contains(r))
            .ok_or_else(|| fail("rate must be a percentage from 1 to 100"))?;
        if full < start {
            return Err(fail("full must be at least start"));
        }
        Ok(Startups { start, rate, full })
    }
}

impl TryFrom<String> for Startups {
    type Error = StartupsError;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        value.parse()
    }
}

/// The limits of one listening server.
#[derive(Debug, Clone, Copy)]
pub struct GateLimits {
    /// Connections served at once; more wait in the kernel's backlog.
    pub max_connections: usize,
    /// The overall budget of unauthenticated connections.
    pub max_startups: Startups,
    /// Unauthenticated connections from one source address.
    pub per_source: usize,
    /// Time from TCP connect to authenticated; then the socket is shut down.
    pub auth_timeout: Duration,
}

impl GateLimits {
    /// The most unauthenticated connections ever held: `full`, but never more than three
    /// quarters of the slots (at least one slot stays for authenticated sessions).
    fn unauthenticated_cap(&self) -> usize {
        let reserve = (self.max_connections / 4).max(1);
        self.max_startups
            .full
            .min(self.max_connections.saturating_sub(reserve))
    }
}

/// Unauthenticated connections now: overall and per source (entries with zero are removed,
/// so the map never holds more entries than the cap).
#[derive(Default)]
struct Unauthenticated {
    total: usize,
    by_source: HashMap<IpAddr, usize>,
}

/// Admission control shared by every connection of one server.
pub struct Gate {
    /// The server's name in metrics (`ca_api`, `bastion`).
    name: &'static str,
    limits: GateLimits,
    slots: Arc<Semaphore>,
    unauthenticated: Mutex<Unauthenticated>,
}

/// Why a new connection was closed at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dropped {
    /// The overall unauthenticated budget (random early drop).
    Startups,
    /// Too many unauthenticated connections from this address.
    PerSource,
}

impl Gate {
    /// A gate with `limits`; `name` labels the server's connection metrics.
    pub fn new(name: &'static str, limits: GateLimits) -> Arc<Gate> {
        Arc::new(Gate {
            name,
            limits,
            slots: Arc::new(Semaphore::new(limits.max_connections.max(1))),
            unauthenticated: Mutex::new(Unauthenticated::default()),
        })
    }

    /// Counts a new unauthenticated connection from `source`, or says why it must be dropped.
    /// `roll` is a random number in 0..100 (the early-drop dice).
    fn admit(&self, source: IpAddr, roll: u32) -> Result<(), Dropped> {
        let mut state = self
            .unauthenticated
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let from_source = state.by_source.get(&source).copied().unwrap_or(0);
        if from_source >= self.limits.per_source {
            return Err(Dropped::PerSource);
        }
        if drops(
            self.limits.max_startups,
            self.limits.unauthenticated_cap(),
            state.total,
            roll,
        ) {
            return Err(Dropped::Startups);
        }
        state.total += 1;
        *state.by_source.entry(source).or_insert(0) += 1;
        Ok(())
    }

    /// Gives back the unauthenticated budget of one connection from `source`.
    fn release(&self, source: IpAddr) {
        let mut state = self
            .unauthenticated
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        state.total = state.total.saturating_sub(1);
        if let Some(count) = state.by_source.get_mut(&source) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                state.by_source.remove(&source);
            }
        }
    }
}

/// The `MaxStartups` decision with `unauthenticated` connections already held: `start` and
/// `full` are clamped to `cap`; from `start` on, drop with a probability rising linearly from
/// `rate`% to 100% at `full`. `roll` is uniform in 0..100.
fn drops(startups: Startups, cap: usize, unauthenticated: usize, roll: u32) -> bool {
    let full = startups.full.min(cap);
    let start = startups.start.min(full);
    if unauthenticated >= full {
        return true;
    }
    if unauthenticated < start {
        return false;
    }
    let rate = u64::from(startups.rate);
    let span = (full - start) as u64;
    let above = (unauthenticated - start) as u64;
    // Percent dropped: rate + (100 - rate) * above / span (span > 0 here: start <= n < full).
    let percent = rate + (100 - rate) * above / span.max(1);
    u64::from(roll) < percent
}

/// One admitted connection's place: its slot, and (until promoted) its unauthenticated budget
/// and pre-auth deadline. Dropping it frees everything.
pub struct Ticket {
    gate: Arc<Gate>,
    source: IpAddr,
    _slot: OwnedSemaphorePermit,
    authenticated: watch::Sender<bool>,
}

impl Ticket {
    /// Marks the connection authenticated: frees its unauthenticated budget and cancels the
    /// pre-auth deadline. Idempotent.
    pub fn promote(&self) {
        let newly = self
            .authenticated
            .send_if_modified(|done| !std::mem::replace(done, true));
        if newly {
            self.gate.release(self.source);
        }
    }

    /// Whether [`Ticket::promote`] was called.
    pub fn is_authenticated(&self) -> bool {
        *self.authenticated.borrow()
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        metrics::gauge!(names::CONNECTIONS_OPEN, "server" => self.gate.name).decrement(1);
        if !self.is_authenticated() {
            self.gate.release(self.source);
        }
    }
}

/// An accepted, admitted connection, handed to the server.
pub struct Connection {
    /// The TCP stream.
    pub stream: TcpStream,
    /// The peer.
    pub peer: SocketAddr,
    /// Its place; promote it on authentication and keep it for the connection's life.
    pub ticket: Arc<Ticket>,
}

/// Accepts connections on `listener` until `shutdown` resolves, admitting each through `gate`
/// and handing it to `serve` (which should spawn its task). Connections over budget are
/// closed at once; accept errors (e.g. out of file descriptors) are logged and retried.
pub async fn accept_loop(
    listener: &TcpListener,
    gate: Arc<Gate>,
    shutdown: impl Future<Output = ()>,
    mut serve: impl FnMut(Connection),
) {
    tokio::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            _ = &mut shutdown => return,
            slot = gate.slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => return,
            },
        };
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    tracing::warn!("accept failed: {err}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let source = peer.ip();
        if let Err(why) = gate.admit(source, dice()) {
            metrics::counter!(names::CONNECTIONS, "server" => gate.name, "outcome" => "dropped")
                .increment(1);
            tracing::debug!(%peer, ?why, "connection dropped: too many unauthenticated");
            drop(stream);
            continue;
        }
        metrics::counter!(names::CONNECTIONS, "server" => gate.name, "outcome" => "admitted")
            .increment(1);
        metrics::gauge!(names::CONNECTIONS_OPEN, "server" => gate.name).increment(1);
        let (authenticated, watcher) = watch::channel(false);
        let ticket = Arc::new(Ticket {
            gate: gate.clone(),
            source,
            _slot: slot,
            authenticated,
        });
        match stream.as_fd().try_clone_to_owned() {
            Ok(fd) => {
                tokio::spawn(deadline(fd, watcher, gate.limits.auth_timeout, peer));
            }
            Err(err) => {
                // Without a way to close it later, do not serve it (fail closed).
                tracing::warn!(%peer, "cannot arm the authentication deadline: {err}");
                continue;
            }
        }
        serve(Connection {
            stream,
            peer,
            ticket,
        });
    }
}

/// Shuts the socket down both ways if the connection is not authenticated within `timeout`.
/// Ends early (releasing its copy of the descriptor) on promotion or when the connection's
/// ticket is dropped.
async fn deadline(
    fd: OwnedFd,
    mut watcher: watch::Receiver<bool>,
    timeout: Duration,
    peer: SocketAddr,
) {
    let settled = tokio::time::timeout(timeout, async {
        let _ = watcher.wait_for(|done| *done).await;
    })
    .await;
    if settled.is_err() && !*watcher.borrow() {
        tracing::info!(%peer, "closed: not authenticated in time");
        let socket = std::net::TcpStream::from(fd);
        let _ = socket.shutdown(Shutdown::Both);
    }
}

/// A random number in 0..100.
fn dice() -> u32 {
    let mut bytes = [0u8; 4];
    rand::fill(&mut bytes);
    u32::from_le_bytes(bytes) % 100
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn startups_parse_and_refuse_nonsense() {
        let parsed: Startups = "64:30:256".parse().unwrap();
        assert_eq!(parsed, Startups::default());
        assert_eq!(parsed.to_string(), "64:30:256");
        for bad in [
            "",
            "10",
            "10:30",
            "a:30:100",
            "10:0:100",
            "10:101:100",
            "10:30:5",
            "0:30:5",
        ] {
            let err = bad.parse::<Startups>().unwrap_err().to_string();
            assert!(err.contains("max_startups"), "{bad}: {err}");
        }
    }

    #[test]
    fn early_drop_rises_from_rate_to_full() {
        let s = Startups {
            start: 10,
            rate: 30,
            full: 20,
        };
        assert!(!drops(s, 100, 9, 0), "below start: always admitted");
        assert!(
            drops(s, 100, 10, 29) && !drops(s, 100, 10, 30),
            "30% at start"
        );
        assert!(
            drops(s, 100, 15, 64) && !drops(s, 100, 15, 65),
            "65% half way"
        );
        assert!(drops(s, 100, 20, 99), "full: always dropped");
        assert!(drops(s, 12, 12, 99), "the cap lowers full");
    }

    #[test]
    fn budgets_per_source_and_overall_with_a_reserve() {
        let gate = Gate::new(
            "test",
            GateLimits {
                max_connections: 8,
                max_startups: Startups {
                    start: 100,
                    rate: 30,
                    full: 100,
                },
                per_source: 2,
                auth_timeout: Duration::from_secs(1),
            },
        );
        let a: IpAddr = [127, 0, 0, 2].into();
        assert_eq!(gate.admit(a, 99), Ok(()));
        assert_eq!(gate.admit(a, 99), Ok(()));
        assert_eq!(gate.admit(a, 99), Err(Dropped::PerSource));
        for i in 3..=6u8 {
            assert_eq!(gate.admit([127, 0, 0, i].into(), 99), Ok(()));
        }
        // 6 of 8 slots unauthenticated: the last quarter stays for authenticated sessions.
        assert_eq!(gate.admit([127, 0, 0, 9].into(), 0), Err(Dropped::Startups));
        gate.release(a);
        assert_eq!(gate.admit(a, 99), Ok(()), "released budget is reusable");
        assert!(gate.unauthenticated.lock().unwrap().by_source.len() <= 6);
    }
}
