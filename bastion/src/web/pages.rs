//! The console's routes: sign-in and sign-out, the sessions list, a session's page and its
//! cast, search, and the live view. Every response gets the security headers
//! ([`security_headers`]); every page but sign-in needs the session cookie (else a redirect
//! to `/signin`); every change (POST) needs the form's CSRF token and a same-origin `Origin`.

use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use jitssh_auditor::args::{ExportArgs, ExportFormat, FilterArgs, GrepArgs, VerifyArgs};
use jitssh_auditor::{Liveness, Outcome, Status};
use jitssh_core::audit::AuditEvent;
use jitssh_core::store::SessionRecord;
use jitssh_core::unix_now;
use serde::Deserialize;

use super::Console;
use super::SignedIn;
use super::auth::{COOKIE, same_secret};
use super::html::{Viewer, esc, page, query_value};

/// Columns the list sorts by.
const SORTS: [&str; 6] = ["started", "person", "target", "login", "duration", "bytes"];
/// Rows per page of the sessions list.
const PAGE_SIZE: usize = 50;
/// Sessions the list considers at most (newest first) before sorting and paging.
const MAX_LISTED: usize = 10_000;
/// Most search output read (bytes); the rest is left out, and the page says so.
const MAX_SEARCH_OUTPUT: usize = 1 << 20;
/// Longest search pattern.
const MAX_PATTERN: usize = 256;
/// The Content-Security-Policy of every response: no inline script, nothing from elsewhere.
/// `wasm-unsafe-eval` lets the player compile its terminal emulator (WebAssembly shipped in
/// its own file), which is not JavaScript `eval`.
pub const CSP: &str = "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; \
    style-src 'self'; img-src 'self' data:; connect-src 'self'; \
    object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

type Shared = State<Arc<Console>>;

/// The router of the console.
pub fn router(console: Arc<Console>) -> Router {
    Router::new()
        .route("/", get(|| async { Redirect::to("/sessions") }))
        .route("/signin", get(signin_help))
        .route("/signin/sso", get(super::sso::start))
        .route("/signin/sso/callback", get(super::sso::callback))
        .route("/signin/{link}", get(signin))
        .route("/signout", post(signout))
        .route("/sessions", get(list))
        .route("/sessions/{id}", get(session))
        .route("/sessions/{id}/cast", get(cast))
        .route("/sessions/{id}/end", post(super::live::end))
        .route("/sessions/{id}/live", get(super::live::socket))
        .route("/search", get(search))
        .route("/assets/{name}", get(asset))
        .route("/favicon.ico", get(|| async { StatusCode::NO_CONTENT }))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no such page") })
        .with_state(console)
        .layer(axum::middleware::map_response(security_headers))
}

/// Headers every response carries.
async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    for (name, value) in [
        ("content-security-policy", CSP),
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "DENY"),
        // Not no-referrer: with it browsers send `Origin: null` on form posts, which the
        // CSRF check must refuse.
        ("referrer-policy", "same-origin"),
        ("cache-control", "no-store"),
        ("cross-origin-opener-policy", "same-origin"),
        ("strict-transport-security", "max-age=31536000"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

/// An HTML page with `status`.
pub(super) fn html(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        body,
    )
        .into_response()
}

/// An error page (the message is escaped).
pub(super) fn error(status: StatusCode, message: &str) -> Response {
    html(
        status,
        page(
            status.canonical_reason().unwrap_or("Error"),
            None,
            &format!("<p class=\"bad\">{}</p>", esc(message)),
            false,
        ),
    )
}

/// The value of cookie `name` in the request.
pub(super) fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The signed-in auditor and their cookie id, or the redirect to sign-in. The certificate
/// they signed in with is checked for revocation on every request (fail closed): a revoked
/// auditor's browser session ends.
pub(super) async fn signed_in(
    console: &Console,
    headers: &HeaderMap,
) -> Result<(String, SignedIn), Box<Response>> {
    let Some((cookie, signed)) = cookie(headers, COOKIE)
        .and_then(|id| Some((id.to_string(), console.sessions.find(id, unix_now())?)))
    else {
        return Err(Box::new(Redirect::to("/signin").into_response()));
    };
    let super::Credential::Certificate(cert) = &signed.credential else {
        // Signed in by the identity provider: the session already ends with the ID token.
        return Ok((cookie, signed));
    };
    match console.issuer.revoked(cert).await {
        Ok(None) => Ok((cookie, signed)),
        Ok(Some(why)) => {
            console.sessions.end(&cookie);
            let event = AuditEvent::new("web.signout")
                .with("person", signed.person.as_str())
                .with("reason", format!("certificate revoked: {why}"));
            console.audit.record_or_log(event).await;
            Err(Box::new(error(
                StatusCode::FORBIDDEN,
                "signed out: your certificate was revoked",
            )))
        }
        Err(err) => Err(Box::new(error(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!("cannot check your certificate's revocation: {err}"),
        ))),
    }
}

/// A change (POST) must come from the console's own pages: same `Origin`, and the form's
/// token is the session's.
pub(super) fn check_change(
    console: &Console,
    headers: &HeaderMap,
    signed: &SignedIn,
    token: &str,
) -> Result<(), Box<Response>> {
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    if origin != Some(console.settings.public_url.as_str()) {
        return Err(Box::new(error(
            StatusCode::FORBIDDEN,
            "cross-site request refused (Origin is not this console)",
        )));
    }
    if !same_secret(token, &signed.csrf) {
        return Err(Box::new(error(
            StatusCode::FORBIDDEN,
            "request refused: bad CSRF token",
        )));
    }
    Ok(())
}

/// Session ids as the bastion makes them: letters, digits, `-`, `_`, `.` (not leading),
/// at most 100 characters; anything else (`..`, `/`) is refused before any file is touched.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 100
        && !id.starts_with('.')
        && !id.contains("..")
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Runs blocking auditor work off the async threads.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, Response> {
    match tokio::task::spawn_blocking(work).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(message)) => Err(error(StatusCode::BAD_REQUEST, &message)),
        Err(_) => Err(error(StatusCode::INTERNAL_SERVER_ERROR, "internal error")),
    }
}

async fn signin_help(State(console): Shared) -> Response {
    let idp = match &console.sso {
        Some(sso) => format!(
            "<p><a id=\"signin-sso\" class=\"button\" href=\"/signin/sso\">Sign in with {}</a></p>\
             <p>Or sign in with your certificate:</p>",
            esc(sso.name())
        ),
        None => String::new(),
    };
    html(
        StatusCode::OK,
        page(
            "Sign in",
            None,
            &format!(
                "{idp}<p>Sign in with your certificate: run <code>ssh -p PORT web@BASTION</code> (the \
             bastion's SSH port) and open the one-time link it prints within a minute. \
             Only auditors (a role with <code>auditor = true</code>) get one.</p>"
            ),
            false,
        ),
    )
}

async fn signin(State(console): Shared, Path(link): Path<String>) -> Response {
    let now = unix_now();
    match console.sessions.redeem(&link, now) {
        Ok((cookie, signed)) => {
            let event = AuditEvent::new("web.signin")
                .with("person", signed.person.as_str())
                .with("until", signed.expires);
            console.audit.record_or_log(event).await;
            let max_age = signed.expires.saturating_sub(now);
            let set = format!(
                "{COOKIE}={cookie}; Path=/; Max-Age={max_age}; HttpOnly; Secure; SameSite=Strict"
            );
            let mut response = Redirect::to("/sessions").into_response();
            if let Ok(value) = HeaderValue::from_str(&set) {
                response.headers_mut().insert(header::SET_COOKIE, value);
            }
            response
        }
        Err(why) => error(StatusCode::FORBIDDEN, &why.to_string()),
    }
}

#[derive(Deserialize)]
struct TokenForm {
    #[serde(default)]
    csrf: String,
}

async fn signout(
    State(console): Shared,
    headers: HeaderMap,
    Form(form): Form<TokenForm>,
) -> Response {
    let (cookie, signed) = match signed_in(&console, &headers).await {
        Ok(found) => found,
        Err(redirect) => return *redirect,
    };
    if let Err(refused) = check_change(&console, &headers, &signed, &form.csrf) {
        return *refused;
    }
    console.sessions.end(&cookie);
    let mut response = Redirect::to("/signin").into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static(
            "jitssh_web=; Path=/; Max-Age=0; HttpOnly; Secure; SameSite=Strict",
        ),
    );
    response
}

/// The list's query string.
#[derive(Debug, Default, Deserialize)]
struct ListQuery {
    person: Option<String>,
    target: Option<String>,
    login: Option<String>,
    since: Option<String>,
    until: Option<String>,
    /// `live`, `ended`, or anything else for both.
    status: Option<String>,
    /// `yes` (intact), `no` (damaged), or anything else for both.
    verified: Option<String>,
    sort: Option<String>,
    order: Option<String>,
    page: Option<usize>,
}

fn nonempty(value: &Option<String>) -> Option<String> {
    value
        .as_ref()
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

impl ListQuery {
    /// The query string of this filter with `sort`, `order` and `page` replaced.
    fn link(&self, sort: &str, order: &str, page: usize) -> String {
        let mut out = String::from("/sessions?");
        for (key, value) in [
            ("person", &self.person),
            ("target", &self.target),
            ("login", &self.login),
            ("since", &self.since),
            ("until", &self.until),
            ("status", &self.status),
            ("verified", &self.verified),
        ] {
            if let Some(v) = nonempty(value) {
                let _ = write!(out, "{key}={}&", query_value(&v));
            }
        }
        let _ = write!(out, "sort={sort}&order={order}&page={page}");
        out
    }
}

/// The column to sort by: one of [`SORTS`].
fn sort_name(asked: Option<&str>) -> &'static str {
    SORTS
        .iter()
        .find(|k| asked == Some(**k))
        .copied()
        .unwrap_or("started")
}

fn status_of(live: &Liveness, row: &SessionRecord) -> (&'static str, &'static str) {
    match live.status(row) {
        Status::Ended => ("ended", ""),
        Status::Active => ("live", "live"),
        Status::MaybeActive => ("live?", "live"),
        Status::Ending => ("ending", "live"),
        Status::Unfinished => ("unfinished", "bad"),
    }
}

fn when(unix: u64) -> String {
    i64::try_from(unix)
        .ok()
        .and_then(|s| chrono::DateTime::from_timestamp(s, 0))
        .map_or_else(
            || unix.to_string(),
            |t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
        )
}

/// How many sessions match the filter: exactly, or more than one page's window shows.
#[derive(Debug, Clone, Copy)]
enum Total {
    Exactly(usize),
    AtLeast(usize),
}

impl Total {
    fn lower_bound(self) -> usize {
        match self {
            Total::Exactly(n) | Total::AtLeast(n) => n,
        }
    }
}

impl std::fmt::Display for Total {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Total::Exactly(n) => write!(f, "{n}"),
            Total::AtLeast(n) => write!(f, "more than {}", n.saturating_sub(1)),
        }
    }
}

fn liveness(console: &Console) -> Liveness {
    Liveness::Known(console.live.list())
}

/// Whether session `id`'s recording verifies (sealed and intact, or live and intact so far).
fn intact(auditor: &jitssh_auditor::Auditor, id: &str) -> Option<bool> {
    let args = VerifyArgs {
        ids: vec![id.to_string()],
        key: None,
    };
    match auditor.verify(&args, &mut std::io::sink()) {
        Ok(outcome) => Some(outcome == Outcome::Ok),
        Err(_) => None,
    }
}

async fn list(State(console): Shared, headers: HeaderMap, Query(q): Query<ListQuery>) -> Response {
    let (_, signed) = match signed_in(&console, &headers).await {
        Ok(found) => found,
        Err(redirect) => return *redirect,
    };
    let filter = FilterArgs {
        user: nonempty(&q.person),
        target: nonempty(&q.target),
        login: nonempty(&q.login),
        since: nonempty(&q.since),
        until: nonempty(&q.until),
        active: q.status.as_deref() == Some("live"),
    };
    let sort = sort_name(q.sort.as_deref()).to_string();
    let descending = q.order.as_deref() != Some("asc");
    let page_no = q.page.unwrap_or(1).max(1);
    let live = liveness(&console);
    let auditor = console.auditor.clone();
    let wants_ended = q.status.as_deref() == Some("ended");
    let wants_verified = match q.verified.as_deref() {
        Some("yes") => Some(true),
        Some("no") => Some(false),
        _ => None,
    };
    let _heavy = match wants_verified {
        Some(_) => console.heavy.acquire().await.ok(),
        None => None,
    };
    // Newest first is the index's own order: read only this page's rows (and one more, to
    // know whether an older page exists) rather than the whole window, so the first page costs
    // the same with 100 or 100,000 sessions. Other orders sort the newest MAX_LISTED in memory.
    let index_order = sort == "started" && descending && wants_verified.is_none() && !wants_ended;
    let wanted = if index_order {
        (page_no * PAGE_SIZE + 1).min(MAX_LISTED)
    } else {
        MAX_LISTED
    };
    let found = blocking(move || {
        let mut rows = auditor
            .sessions(&filter, Some(wanted))
            .map_err(|e| e.to_string())?;
        if wants_ended {
            rows.retain(|r| r.ended_at.is_some());
        }
        let now = unix_now();
        let duration = |r: &SessionRecord| r.ended_at.unwrap_or(now).saturating_sub(r.started_at);
        rows.sort_by(|a, b| {
            let order = match sort.as_str() {
                "person" => a.user.cmp(&b.user),
                "target" => a.target.cmp(&b.target),
                "login" => a.login.cmp(&b.login),
                "duration" => duration(a).cmp(&duration(b)),
                "bytes" => (a.bytes_in + a.bytes_out).cmp(&(b.bytes_in + b.bytes_out)),
                _ => a.started_at.cmp(&b.started_at),
            }
            .then_with(|| a.id.cmp(&b.id));
            if descending { order.reverse() } else { order }
        });
        let mut checked: Vec<(SessionRecord, Option<bool>)> = Vec::new();
        let total;
        if let Some(want) = wants_verified {
            let all: Vec<_> = rows
                .into_iter()
                .map(|r| {
                    let ok = intact(&auditor, &r.id);
                    (r, ok)
                })
                .filter(|(_, ok)| *ok == Some(want))
                .collect();
            total = all.len();
            checked.extend(
                all.into_iter()
                    .skip((page_no - 1) * PAGE_SIZE)
                    .take(PAGE_SIZE),
            );
        } else {
            total = rows.len();
            for r in rows
                .into_iter()
                .skip((page_no - 1) * PAGE_SIZE)
                .take(PAGE_SIZE)
            {
                let ok = intact(&auditor, &r.id);
                checked.push((r, ok));
            }
        }
        // When only a window was read, the total is known only if the window was not full.
        let total = if index_order && total == wanted {
            Total::AtLeast(total)
        } else {
            Total::Exactly(total)
        };
        Ok((checked, total))
    })
    .await;
    let (rows, total) = match found {
        Ok(found) => found,
        Err(response) => return response,
    };
    let mut body = String::new();
    let field = |name: &str, label: &str, value: &Option<String>, hint: &str| {
        format!(
            "<label>{label}<input name=\"{name}\" value=\"{}\" placeholder=\"{hint}\"></label>",
            esc(value.as_deref().unwrap_or(""))
        )
    };
    let select = |name: &str, label: &str, value: &Option<String>, options: &[(&str, &str)]| {
        let mut s = format!("<label>{label}<select name=\"{name}\">");
        for (v, text) in options {
            let selected = if value.as_deref().unwrap_or("") == *v {
                " selected"
            } else {
                ""
            };
            let _ = write!(s, "<option value=\"{v}\"{selected}>{text}</option>");
        }
        s.push_str("</select></label>");
        s
    };
    let _ = write!(
        body,
        "<form class=\"filters\" method=\"get\" action=\"/sessions\">{}{}{}{}{}{}{}\
         <button type=\"submit\">Filter</button> <a href=\"/sessions\">clear</a></form>",
        field("person", "Person", &q.person, "alice"),
        field("target", "Target", &q.target, "web01"),
        field("login", "Login", &q.login, "root"),
        field("since", "Since", &q.since, "2h, 2026-12-01"),
        field("until", "Until", &q.until, ""),
        select(
            "status",
            "Status",
            &q.status,
            &[("", "any"), ("live", "live"), ("ended", "ended")]
        ),
        select(
            "verified",
            "Integrity",
            &q.verified,
            &[("", "any"), ("yes", "intact"), ("no", "damaged")]
        ),
    );
    let order = if descending { "desc" } else { "asc" };
    let sort_now = sort_name(q.sort.as_deref());
    let head = |key: &str, label: &str| {
        let next = if key == sort_now && descending {
            "asc"
        } else {
            "desc"
        };
        let mark = if key == sort_now {
            if descending { " ▼" } else { " ▲" }
        } else {
            ""
        };
        format!(
            "<th><a href=\"{}\">{label}{mark}</a></th>",
            esc(&q.link(key, next, 1))
        )
    };
    let _ = write!(
        body,
        "<p>{} session(s)</p><table id=\"sessions\"><thead><tr><th>Session</th>{}{}{}{}{}{}<th>Status</th><th>Integrity</th></tr></thead><tbody>",
        total,
        head("started", "Started"),
        head("person", "Person"),
        head("login", "Login"),
        head("target", "Target"),
        head("duration", "Duration"),
        head("bytes", "Bytes"),
    );
    let now = unix_now();
    for (row, ok) in &rows {
        let (status, class) = status_of(&live, row);
        let integrity = match ok {
            Some(true) => "<span class=\"ok\">intact</span>",
            Some(false) => "<span class=\"bad\">damaged</span>",
            None => "<span class=\"bad\">unknown</span>",
        };
        let _ = write!(
            body,
            "<tr><td><a href=\"/sessions/{id}\">{id}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}s</td><td>{}</td><td class=\"{class}\">{status}</td><td>{integrity}</td></tr>",
            esc(&when(row.started_at)),
            esc(&row.user),
            esc(&row.login),
            esc(&row.target),
            row.ended_at.unwrap_or(now).saturating_sub(row.started_at),
            row.bytes_in + row.bytes_out,
            id = esc(&row.id),
        );
    }
    body.push_str("</tbody></table><div class=\"pages\">");
    if page_no > 1 {
        let _ = write!(
            body,
            "<a href=\"{}\">← newer</a>",
            esc(&q.link(sort_now, order, page_no - 1))
        );
    }
    let _ = write!(body, "<span>page {page_no}</span>");
    if page_no * PAGE_SIZE < total.lower_bound() {
        let _ = write!(
            body,
            "<a href=\"{}\">older →</a>",
            esc(&q.link(sort_now, order, page_no + 1))
        );
    }
    body.push_str("</div>");
    let viewer = Viewer {
        person: &signed.person,
        csrf: &signed.csrf,
    };
    html(
        StatusCode::OK,
        page("Sessions", Some(&viewer), &body, false),
    )
}

async fn session(State(console): Shared, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let (_, signed) = match signed_in(&console, &headers).await {
        Ok(found) => found,
        Err(redirect) => return *redirect,
    };
    if !valid_id(&id) {
        return error(StatusCode::BAD_REQUEST, "not a session id");
    }
    let auditor = console.auditor.clone();
    let lookup = id.clone();
    let found = blocking(move || {
        let row = auditor.indexed(&lookup).map_err(|e| e.to_string())?;
        let mut shown = Vec::new();
        auditor
            .show(&lookup, &mut shown)
            .map_err(|e| e.to_string())?;
        let mut verified = Vec::new();
        let outcome = auditor
            .verify(
                &VerifyArgs {
                    ids: vec![lookup.clone()],
                    key: None,
                },
                &mut verified,
            )
            .map_err(|e| e.to_string());
        let terminal = auditor
            .recording(&lookup)
            .ok()
            .and_then(|r| r.timeline(None).ok())
            .is_some_and(|t| !t.is_empty());
        Ok((row, shown, verified, outcome, terminal))
    })
    .await;
    let (row, shown, verified, outcome, terminal) = match found {
        Ok(found) => found,
        Err(response) => return response,
    };
    let live = liveness(&console);
    let mut body = String::new();
    if let Some(row) = &row {
        let (status, class) = status_of(&live, row);
        let _ = write!(
            body,
            "<table class=\"meta\"><tr><th>Person</th><td>{}</td><th>Login</th><td>{}</td><th>Target</th><td>{}</td></tr>\
             <tr><th>Started</th><td>{}</td><th>Ended</th><td>{}</td><th>Status</th><td class=\"{class}\">{status}</td></tr>\
             <tr><th>Client</th><td>{}</td><th>Certificate</th><td>{} (serial {})</td><th>Exit</th><td>{}</td></tr></table>",
            esc(&row.user),
            esc(&row.login),
            esc(&row.target),
            esc(&when(row.started_at)),
            esc(&row.ended_at.map(when).unwrap_or_else(|| "-".into())),
            esc(&row.client_addr),
            esc(&row.key_id),
            row.cert_serial,
            esc(&row
                .exit_status
                .map(|s| s.to_string())
                .unwrap_or_else(|| "-".into())),
        );
        if status == "live" {
            let _ = write!(
                body,
                "<h2>Live</h2><p>State: <span id=\"live-state\">live</span></p>\
                 <pre id=\"live\" data-ws=\"/sessions/{id}/live\"></pre>\
                 <form method=\"post\" action=\"/sessions/{id}/end\" id=\"end-form\">\
                 <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
                 <label>Reason (the user is shown it) <input name=\"reason\" id=\"end-reason\" required maxlength=\"200\"></label> \
                 <label><input type=\"checkbox\" name=\"confirm\" value=\"yes\" id=\"end-confirm\" required> I mean it</label> \
                 <button type=\"submit\" id=\"end-button\">End this session</button></form>",
                id = esc(&id),
                csrf = esc(&signed.csrf),
            );
        }
    }
    if terminal {
        let _ = write!(
            body,
            "<h2>Replay</h2><form class=\"filters\"><label>Speed<select id=\"speed\">\
             <option value=\"0.5\">0.5×</option><option value=\"1\" selected>1×</option>\
             <option value=\"2\">2×</option><option value=\"4\">4×</option></select></label>\
             <label>Idle cap<select id=\"idle\"><option value=\"0\">none</option>\
             <option value=\"1\">1 s</option><option value=\"2\" selected>2 s</option>\
             <option value=\"5\">5 s</option></select></label></form>\
             <div id=\"player\" data-cast=\"/sessions/{}/cast\"></div>",
            esc(&id)
        );
    } else {
        body.push_str("<p>No terminal was recorded for this session.</p>");
    }
    let integrity = match outcome {
        Ok(Outcome::Ok) => "<span class=\"ok\" id=\"integrity\">intact</span>",
        Ok(Outcome::Failed) => "<span class=\"bad\" id=\"integrity\">DAMAGED</span>",
        Err(_) => "<span class=\"bad\" id=\"integrity\">cannot verify</span>",
    };
    let _ = write!(
        body,
        "<h2>Integrity: {integrity}</h2><pre>{}</pre>\
         <h2>Commands, transfers and audit events</h2><pre id=\"show\">{}</pre>",
        esc(&String::from_utf8_lossy(&verified)),
        esc(&String::from_utf8_lossy(&shown)),
    );
    let viewer = Viewer {
        person: &signed.person,
        csrf: &signed.csrf,
    };
    html(
        StatusCode::OK,
        page(&format!("Session {id}"), Some(&viewer), &body, terminal),
    )
}

async fn cast(State(console): Shared, headers: HeaderMap, Path(id): Path<String>) -> Response {
    if let Err(redirect) = signed_in(&console, &headers).await {
        return *redirect;
    }
    if !valid_id(&id) {
        return error(StatusCode::BAD_REQUEST, "not a session id");
    }
    let auditor = console.auditor.clone();
    let found = blocking(move || {
        let mut out = Vec::new();
        let args = ExportArgs {
            id,
            format: ExportFormat::Asciicast,
            out: None,
            channel: None,
        };
        auditor.export(&args, &mut out).map_err(|e| e.to_string())?;
        Ok(out)
    })
    .await;
    match found {
        Ok(bytes) => ([(header::CONTENT_TYPE, "application/x-asciicast")], bytes).into_response(),
        Err(response) => response,
    }
}

#[derive(Deserialize)]
struct SearchQuery {
    q: Option<String>,
}

/// A `Write` that takes at most `room` bytes, then fails (the search stops there).
struct Capped {
    out: Vec<u8>,
    room: usize,
    full: bool,
}

impl std::io::Write for Capped {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if buf.len() > self.room {
            self.full = true;
            return Err(std::io::Error::other("search output cap reached"));
        }
        self.room -= buf.len();
        self.out.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

async fn search(
    State(console): Shared,
    headers: HeaderMap,
    Query(query): Query<SearchQuery>,
) -> Response {
    let (_, signed) = match signed_in(&console, &headers).await {
        Ok(found) => found,
        Err(redirect) => return *redirect,
    };
    let pattern = query.q.unwrap_or_default();
    let mut body = format!(
        "<form class=\"filters\" method=\"get\" action=\"/search\"><label>Regular expression \
         (case-insensitive), over the text every session showed\
         <input name=\"q\" id=\"q\" value=\"{}\" maxlength=\"{MAX_PATTERN}\"></label>\
         <button type=\"submit\">Search</button></form>",
        esc(&pattern)
    );
    if !pattern.is_empty() {
        if pattern.len() > MAX_PATTERN {
            return error(StatusCode::BAD_REQUEST, "pattern too long");
        }
        let _heavy = console.heavy.acquire().await;
        let auditor = console.auditor.clone();
        let found = blocking(move || {
            let mut out = Capped {
                out: Vec::new(),
                room: MAX_SEARCH_OUTPUT,
                full: false,
            };
            let args = GrepArgs {
                pattern,
                filter: FilterArgs::default(),
                ignore_case: true,
                ids: Vec::new(),
                raw: false,
            };
            match auditor.grep(&args, &mut out) {
                Ok(_) => {}
                Err(_) if out.full => {}
                Err(e) => return Err(e.to_string()),
            }
            let _ = out.flush();
            Ok((out.out, out.full))
        })
        .await;
        let (text, full) = match found {
            Ok(found) => found,
            Err(response) => return response,
        };
        let text = String::from_utf8_lossy(&text);
        let mut hits = 0usize;
        body.push_str("<table id=\"hits\"><thead><tr><th>Session</th><th>At</th><th>Line</th></tr></thead><tbody>");
        for line in text.lines() {
            let Some((id, rest)) = line.split_once("  ") else {
                continue;
            };
            let Some((offset, rest)) = rest.trim_start().split_once("  ") else {
                continue;
            };
            let Some((_channel, shown)) = rest.split_once("  ") else {
                continue;
            };
            let Ok(secs) = jitssh_auditor::timefmt::parse_offset(offset.trim()) else {
                continue;
            };
            hits += 1;
            let _ = write!(
                body,
                "<tr><td>{id}</td><td><a class=\"hit\" href=\"/sessions/{id}#t={secs:.3}\">{}</a></td><td><code>{}</code></td></tr>",
                esc(offset.trim()),
                esc(shown),
                id = esc(id),
            );
        }
        let _ = write!(
            body,
            "</tbody></table><p>{hits} line(s){}</p>",
            if full { " (more left out)" } else { "" }
        );
    }
    let viewer = Viewer {
        person: &signed.person,
        csrf: &signed.csrf,
    };
    html(StatusCode::OK, page("Search", Some(&viewer), &body, false))
}

async fn asset(Path(name): Path<String>) -> Response {
    match super::assets::find(&name) {
        Some(a) => ([(header::CONTENT_TYPE, a.content_type)], a.bytes).into_response(),
        None => error(StatusCode::NOT_FOUND, "no such file"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_ids_cannot_walk_the_file_system() {
        assert!(valid_id("20261201T201703Z-ab12cd"));
        for bad in [
            "",
            "..",
            "../etc",
            "a/b",
            ".hidden",
            "a..b",
            "a%2fb",
            &"x".repeat(101),
        ] {
            assert!(!valid_id(bad), "{bad}");
        }
    }
}
