//! The live-session control channel: auditors watch a running session's output and end
//! sessions, through a local admin socket served by `ssh-bastion serve`.
//!
//! # Who may use it
//!
//! The socket is a Unix domain socket (`[admin] socket`, default `admin.sock` in the data
//! directory). Authorisation is the operating system's, twice over:
//!
//! 1. the filesystem: the socket is mode 0600 (owner: the bastion's user), so only that user
//!    and root can connect; with a non-empty `[admin] allow_uids` it is 0666 and step 2 alone
//!    decides (put the socket in a directory only auditors can reach if that matters);
//! 2. the kernel's word on the peer (`SO_PEERCRED`): the connecting process's uid must be
//!    the bastion's own, root's, or listed in `allow_uids`. Anyone else is refused and the
//!    refusal is audited.
//!
//! A session's own user is a certificate identity reaching the bastion over SSH; they have no
//! local account on the bastion, so they can neither watch nor kill sessions.
//!
//! # Protocol
//!
//! One JSON request line from the client, JSON lines back; the types and the table are in
//! the auditor crate ([`jitssh_auditor::protocol`]), which both sides use. Watching and
//! killing are audited (`session.watch`, `session.kill`, with the auditor's uid); the kill
//! record is durable before the session is ended, and if it cannot be written the session is
//! not ended.
//!
//! # The registry
//!
//! Sessions register in [`LiveSessions`] when they start and unregister when their
//! [`Registration`] is closed or dropped. Output reaches watchers through a bounded broadcast
//! channel: a watcher that cannot keep up loses chunks (and is told how many), it never slows
//! the session, and publishing costs nothing while nobody watches.

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jitssh_core::audit::AuditEvent;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{broadcast, oneshot, watch};

use crate::audit::Audit;
pub use crate::config::AdminSettings;
use crate::pump::Tap;
pub use jitssh_auditor::protocol::{LiveInfo, Reply, Request};

/// Output chunks buffered per session for watchers; a slower watcher loses the oldest.
const WATCH_BUFFER: usize = 256;
/// Longest request line.
const MAX_REQUEST: u64 = 4096;
/// Time a client has to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a kill waits for the session to tell the person and disconnect.
const KILL_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest kill reason (it is shown on the person's terminal).
const MAX_REASON: usize = 200;

/// A request to end a session, handed to the session by [`Registration::kill_requested`].
#[derive(Debug)]
pub struct KillRequest {
    /// Why, as the auditor put it (control characters removed).
    pub reason: String,
    /// Who asked (`uid N`).
    pub by: String,
    done: oneshot::Sender<()>,
}

impl KillRequest {
    /// The end reason to tell the person and record.
    pub fn message(&self) -> String {
        format!("ended by an auditor: {}", self.reason)
    }

    /// Tells the auditor the session has ended.
    pub fn done(self) {
        let _ = self.done.send(());
    }
}

/// One registered session.
struct Entry {
    info: LiveInfo,
    output: broadcast::Sender<Arc<[u8]>>,
    kill: Mutex<Option<oneshot::Sender<KillRequest>>>,
    ended: watch::Receiver<bool>,
    ending: std::sync::atomic::AtomicBool,
}

/// The sessions running in this bastion.
#[derive(Default)]
pub struct LiveSessions {
    sessions: Mutex<HashMap<String, Arc<Entry>>>,
}

impl std::fmt::Debug for LiveSessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveSessions")
            .field("sessions", &self.lock().len())
            .finish()
    }
}

impl LiveSessions {
    /// An empty registry.
    pub fn new() -> Arc<LiveSessions> {
        Arc::new(LiveSessions::default())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Entry>>> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a session; it is listed, watchable and killable until the registration is
    /// closed or dropped.
    pub fn register(self: &Arc<Self>, info: LiveInfo) -> Registration {
        let (output, _) = broadcast::channel(WATCH_BUFFER);
        let (kill_tx, kill_rx) = oneshot::channel();
        let (ended_tx, ended_rx) = watch::channel(false);
        let id = info.id.clone();
        let entry = Arc::new(Entry {
            info,
            output: output.clone(),
            kill: Mutex::new(Some(kill_tx)),
            ended: ended_rx,
            ending: std::sync::atomic::AtomicBool::new(false),
        });
        self.lock().insert(id.clone(), entry);
        Registration {
            live: Arc::clone(self),
            id,
            publisher: Publisher(output),
            kill: tokio::sync::Mutex::new(Some(kill_rx)),
            ended: ended_tx,
        }
    }

    /// The live sessions, oldest first, including those [ending](Registration::ending).
    pub fn list(&self) -> Vec<LiveInfo> {
        let mut list: Vec<LiveInfo> = self
            .lock()
            .values()
            .map(|e| LiveInfo {
                ending: e.ending.load(std::sync::atomic::Ordering::Acquire),
                ..e.info.clone()
            })
            .collect();
        list.sort_by(|a, b| (a.started_at, &a.id).cmp(&(b.started_at, &b.id)));
        list
    }

    fn get(&self, id: &str) -> Option<Arc<Entry>> {
        self.lock().get(id).cloned()
    }

    /// Watches session `id` in process (the web console): its output, and whether it ended.
    pub fn subscribe(&self, id: &str) -> Option<Watching> {
        self.get(id)
            .map(|e| (e.output.subscribe(), e.ended.clone()))
    }
}

/// A watcher's view of a session: its output chunks, and whether it ended.
pub type Watching = (broadcast::Receiver<Arc<[u8]>>, watch::Receiver<bool>);

/// Sends a session's output to its watchers. Cheap to clone, for the tasks that relay the
/// session's channels.
#[derive(Clone, Debug)]
pub struct Publisher(broadcast::Sender<Arc<[u8]>>);

impl Publisher {
    /// Offers output to the watchers, if any; never blocks.
    pub fn publish(&self, data: &[u8]) {
        if self.0.receiver_count() > 0 && !data.is_empty() {
            let _ = self.0.send(Arc::from(data));
        }
    }
}

/// A channel's tap (the recorder) that also shows the channel's output to watchers.
pub struct WatchedTap<T> {
    inner: T,
    publisher: Publisher,
}

impl<T: Tap> WatchedTap<T> {
    /// Wraps `inner`; output and stderr also go to `publisher`.
    pub fn new(inner: T, publisher: Publisher) -> WatchedTap<T> {
        WatchedTap { inner, publisher }
    }
}

impl<T: Tap> Tap for WatchedTap<T> {
    fn input(&mut self, data: &[u8]) -> Result<(), crate::pump::TapError> {
        self.inner.input(data)
    }
    fn output(&mut self, data: &[u8]) -> Result<(), crate::pump::TapError> {
        self.publisher.publish(data);
        self.inner.output(data)
    }
    fn stderr(&mut self, data: &[u8]) -> Result<(), crate::pump::TapError> {
        self.publisher.publish(data);
        self.inner.stderr(data)
    }
    fn exit_status(&mut self, status: u32) -> Result<(), crate::pump::TapError> {
        self.inner.exit_status(status)
    }
    fn exit_signal(&mut self, signal: &str) -> Result<(), crate::pump::TapError> {
        self.inner.exit_signal(signal)
    }
    fn resize(&mut self, cols: u32, rows: u32) -> Result<(), crate::pump::TapError> {
        self.inner.resize(cols, rows)
    }
    fn finish(&mut self) -> Result<(), crate::pump::TapError> {
        self.inner.finish()
    }
    fn backlog(&self) -> Option<std::sync::Arc<crate::pump::Backlog>> {
        self.inner.backlog()
    }
}

/// A session's place in [`LiveSessions`].
pub struct Registration {
    live: Arc<LiveSessions>,
    id: String,
    publisher: Publisher,
    kill: tokio::sync::Mutex<Option<oneshot::Receiver<KillRequest>>>,
    ended: watch::Sender<bool>,
}

impl std::fmt::Debug for Registration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registration")
            .field("id", &self.id)
            .finish()
    }
}

impl Registration {
    /// Offers output to the session's watchers.
    pub fn publish(&self, data: &[u8]) {
        self.publisher.publish(data);
    }

    /// A handle for publishing from other tasks.
    pub fn publisher(&self) -> Publisher {
        self.publisher.clone()
    }

    /// Resolves when an auditor asks to end the session (never, once one request was taken).
    /// Call [`KillRequest::done`] after ending the session.
    pub async fn kill_requested(&self) -> KillRequest {
        let mut slot = self.kill.lock().await;
        if let Some(rx) = slot.as_mut()
            && let Ok(request) = rx.await
        {
            *slot = None;
            return request;
        }
        *slot = None;
        drop(slot);
        std::future::pending().await
    }

    /// The person has left: watchers are told the session ended and it can no longer be
    /// killed, but it stays listed (as ending) until [`Registration::close`], so that its
    /// recording, unsealed until then, is not taken for a crash's.
    pub fn ending(&self) {
        let _ = self.ended.send(true);
        if let Some(entry) = self.live.get(&self.id)
            && entry.output.same_channel(&self.publisher.0)
        {
            entry
                .ending
                .store(true, std::sync::atomic::Ordering::Release);
            entry.kill.lock().unwrap_or_else(|p| p.into_inner()).take();
        }
    }

    /// Unregisters now (watchers are told the session ended); dropping does the same.
    pub fn close(&self) {
        let _ = self.ended.send(true);
        let mut sessions = self.live.lock();
        if sessions
            .get(&self.id)
            .is_some_and(|e| e.output.same_channel(&self.publisher.0))
        {
            sessions.remove(&self.id);
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.close();
    }
}

/// Errors starting the admin socket.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The socket could not be created.
    #[error("admin socket {}: cannot {action}: {source}", path.display())]
    Io {
        /// The socket path.
        path: PathBuf,
        /// What was being done.
        action: &'static str,
        /// Why.
        source: std::io::Error,
    },
    /// Something else is at the socket's path.
    #[error("admin socket {}: {why}", path.display())]
    InUse {
        /// The socket path.
        path: PathBuf,
        /// What is there.
        why: &'static str,
    },
}

/// The running admin socket; removed when dropped.
#[derive(Debug)]
pub struct AdminServer {
    path: PathBuf,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for AdminServer {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Creates the socket and serves it in the background.
pub fn serve(
    settings: &AdminSettings,
    live: Arc<LiveSessions>,
    audit: Audit,
) -> Result<AdminServer, AdminError> {
    let path = settings.socket.clone();
    let listener = bind(&path, !settings.allow_uids.is_empty())?;
    let own = rustix::process::geteuid().as_raw();
    let mut allowed = vec![own, 0];
    allowed.extend(&settings.allow_uids);
    let task = tokio::spawn(async move {
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    let (live, audit, allowed) = (live.clone(), audit.clone(), allowed.clone());
                    tokio::spawn(async move {
                        if let Err(err) = connection(stream, &live, &audit, &allowed).await {
                            tracing::debug!("admin connection: {err}");
                        }
                    });
                }
                Err(err) => {
                    tracing::warn!("admin socket accept failed: {err}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    });
    tracing::info!(socket = %settings.socket.display(), "admin socket listening");
    Ok(AdminServer { path, task })
}

/// Binds the socket with its final mode already set: created under a temporary name, then
/// renamed into place, so it is never reachable with looser permissions.
fn bind(path: &Path, open_to_all: bool) -> Result<UnixListener, AdminError> {
    let io = |action| {
        let path = path.to_path_buf();
        move |source| AdminError::Io {
            path,
            action,
            source,
        }
    };
    match std::fs::symlink_metadata(path) {
        Ok(meta) => {
            use std::os::unix::fs::FileTypeExt;
            if !meta.file_type().is_socket() {
                return Err(AdminError::InUse {
                    path: path.to_path_buf(),
                    why: "something that is not a socket is in the way",
                });
            }
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(AdminError::InUse {
                    path: path.to_path_buf(),
                    why: "another bastion is serving it",
                });
            }
            std::fs::remove_file(path).map_err(io("remove the stale socket"))?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io("inspect")(e)),
    }
    if let Some(dir) = path.parent()
        && !dir.exists()
    {
        jitssh_core::fsmode::create_private_dir_all(dir).map_err(io("create its directory"))?;
        if open_to_all {
            // Other uids must reach the socket: traverse, not list.
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o711))
                .map_err(io("set permissions"))?;
        }
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".{}.tmp", std::process::id()));
    let tmp = PathBuf::from(tmp);
    let _ = std::fs::remove_file(&tmp);
    // Bind under a name nobody connects to, tighten, then publish.
    let listener = UnixListener::bind(&tmp).map_err(io("bind"))?;
    let mode = if open_to_all { 0o666 } else { 0o600 };
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))
        .map_err(io("set permissions"))?;
    std::fs::rename(&tmp, path).map_err(io("rename into place"))?;
    Ok(listener)
}

/// Serves one client.
async fn connection(
    stream: UnixStream,
    live: &LiveSessions,
    audit: &Audit,
    allowed: &[u32],
) -> std::io::Result<()> {
    let uid = stream.peer_cred()?.uid();
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    let mut reader = BufReader::new(read.take(MAX_REQUEST));
    let got = tokio::time::timeout(REQUEST_TIMEOUT, reader.read_line(&mut line)).await;
    if !matches!(got, Ok(Ok(n)) if n > 0) {
        return reply(&mut write, Reply::Error("no request".into())).await;
    }
    if !allowed.contains(&uid) {
        audit
            .record_or_log(
                AuditEvent::new("admin.denied")
                    .with("uid", uid)
                    .with("request", line.trim().chars().take(200).collect::<String>()),
            )
            .await;
        return reply(
            &mut write,
            Reply::Error(format!(
                "uid {uid} may not use the admin socket (see [admin] allow_uids)"
            )),
        )
        .await;
    }
    let request: Request = match serde_json::from_str(line.trim()) {
        Ok(r) => r,
        Err(e) => return reply(&mut write, Reply::Error(format!("bad request: {e}"))).await,
    };
    let by = format!("uid {uid}");
    match request {
        Request::List => reply(&mut write, Reply::Sessions(live.list())).await,
        Request::Kill { session, reason } => {
            let answer = kill(live, audit, &session, &reason, &by, |e| e.with("uid", uid)).await;
            reply(&mut write, answer).await
        }
        Request::Watch { session } => {
            let Some(entry) = live.get(&session) else {
                return reply(
                    &mut write,
                    Reply::Error(format!("no live session {session}")),
                )
                .await;
            };
            audit
                .record_or_log(
                    AuditEvent::new("session.watch")
                        .with("session", session.as_str())
                        .with("uid", uid),
                )
                .await;
            watch_session(&entry, reader, &mut write).await
        }
    }
}

/// Ends a session for an auditor (`by`, and `who` adds their identity to the audit record:
/// a uid here, a person for the web console); the reply to send.
pub(crate) async fn kill(
    live: &LiveSessions,
    audit: &Audit,
    session: &str,
    reason: &str,
    by: &str,
    who: impl FnOnce(AuditEvent) -> AuditEvent,
) -> Reply {
    let reason = clean_reason(reason);
    let Some(entry) = live.get(session) else {
        return Reply::Error(format!("no live session {session}"));
    };
    let sender = entry.kill.lock().unwrap_or_else(|p| p.into_inner()).take();
    let Some(sender) = sender else {
        return Reply::Error(format!("session {session} is already being ended"));
    };
    let event = who(AuditEvent::new("session.kill").with("session", session))
        .with("reason", reason.as_str());
    if let Err(err) = audit.record(event).await {
        return Reply::Error(format!("not ended: the audit log cannot be written: {err}"));
    }
    let (done_tx, done_rx) = oneshot::channel();
    let request = KillRequest {
        reason,
        by: by.to_owned(),
        done: done_tx,
    };
    if sender.send(request).is_err() {
        return Reply::Error(format!("session {session} ended meanwhile"));
    }
    match tokio::time::timeout(KILL_TIMEOUT, done_rx).await {
        Ok(_) => Reply::Killed(session.to_owned()),
        Err(_) => Reply::Error(format!(
            "session {session} did not end within {}s",
            KILL_TIMEOUT.as_secs()
        )),
    }
}

/// Streams a session's output to a watcher until it ends or the watcher goes away.
async fn watch_session(
    entry: &Entry,
    mut from_watcher: impl tokio::io::AsyncRead + Unpin,
    write: &mut tokio::net::unix::OwnedWriteHalf,
) -> std::io::Result<()> {
    let mut output = entry.output.subscribe();
    let mut ended = entry.ended.clone();
    reply(write, Reply::Watching(entry.info.clone())).await?;
    let mut ignored = [0u8; 64];
    loop {
        tokio::select! {
            // The watcher went away (it sends nothing after its request).
            read = from_watcher.read(&mut ignored) => {
                if matches!(read, Ok(0) | Err(_)) {
                    return Ok(());
                }
            }
            chunk = output.recv() => match chunk {
                Ok(data) => reply(write, Reply::data(&data)).await?,
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    reply(write, Reply::Lagged(n)).await?;
                }
                Err(broadcast::error::RecvError::Closed) => break,
            },
            changed = ended.changed() => {
                if changed.is_err() || *ended.borrow() {
                    // Whatever was published before the end still goes out.
                    while let Ok(data) = output.try_recv() {
                        reply(write, Reply::data(&data)).await?;
                    }
                    break;
                }
            }
        }
    }
    reply(write, Reply::Ended("the session ended".into())).await
}

async fn reply(write: &mut tokio::net::unix::OwnedWriteHalf, reply: Reply) -> std::io::Result<()> {
    write.write_all(&reply.to_line()).await
}

/// A kill reason safe to print on the person's terminal: no control characters (no escape
/// sequences), bounded.
fn clean_reason(reason: &str) -> String {
    let text: String = reason
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_REASON)
        .collect();
    let text = text.trim();
    if text.is_empty() {
        "no reason given".into()
    } else {
        text.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(id: &str) -> LiveInfo {
        LiveInfo {
            id: id.into(),
            user: "alice".into(),
            login: "root".into(),
            target: "web01".into(),
            started_at: 1,
            ending: false,
        }
    }

    #[tokio::test]
    async fn registrations_list_publish_and_unregister() {
        let live = LiveSessions::new();
        let a = live.register(info("a"));
        let b = live.register(info("b"));
        assert_eq!(live.list().len(), 2);
        let entry = live.get("a").unwrap();
        let mut rx = entry.output.subscribe();
        a.publish(b"hello");
        a.publisher().publish(b" world");
        assert_eq!(&*rx.recv().await.unwrap(), b"hello");
        assert_eq!(&*rx.recv().await.unwrap(), b" world");
        drop(a);
        assert_eq!(live.list(), vec![info("b")]);
        assert!(*entry.ended.borrow());
        b.close();
        assert!(live.list().is_empty());
    }

    #[tokio::test]
    async fn a_slow_watcher_lags_and_never_blocks_the_session() {
        let live = LiveSessions::new();
        let reg = live.register(info("s"));
        let mut rx = live.get("s").unwrap().output.subscribe();
        for i in 0..(WATCH_BUFFER * 4) {
            reg.publish(format!("{i}").as_bytes());
        }
        match rx.recv().await {
            Err(broadcast::error::RecvError::Lagged(n)) => {
                assert_eq!(n as usize, WATCH_BUFFER * 3)
            }
            other => panic!("expected a lag, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn kill_requests_reach_the_session_once() {
        let live = LiveSessions::new();
        let reg = Arc::new(live.register(info("k")));
        let entry = live.get("k").unwrap();
        let sender = entry.kill.lock().unwrap().take().unwrap();
        let (done_tx, done_rx) = oneshot::channel();
        sender
            .send(KillRequest {
                reason: "policy".into(),
                by: "uid 0".into(),
                done: done_tx,
            })
            .unwrap();
        let request = reg.kill_requested().await;
        assert_eq!(request.message(), "ended by an auditor: policy");
        request.done();
        done_rx.await.unwrap();
        assert!(
            tokio::time::timeout(Duration::from_millis(50), reg.kill_requested())
                .await
                .is_err(),
            "a second request never comes"
        );
    }

    #[test]
    fn reasons_cannot_carry_escape_sequences() {
        assert_eq!(clean_reason("bye\u{1b}[2J\r\nnow"), "bye [2J  now");
        assert_eq!(clean_reason("  "), "no reason given");
        assert_eq!(clean_reason(&"x".repeat(500)).len(), MAX_REASON);
    }

    #[tokio::test]
    async fn the_socket_is_private_and_refuses_to_take_over_a_live_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("admin.sock");
        let listener = bind(&path, false).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let err = bind(&path, false).unwrap_err().to_string();
        assert!(err.contains("another bastion"), "{err}");
        drop(listener);
        // A stale socket (nobody listening) is replaced.
        bind(&path, false).unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, "x").unwrap();
        assert!(
            bind(&file, false)
                .unwrap_err()
                .to_string()
                .contains("not a socket")
        );
    }
}
