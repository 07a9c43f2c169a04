//! Live sessions from the web console: watch one's output over a WebSocket, and end it with a
//! reason. Both go through the same registry and the same kill path as the admin socket
//! ([`crate::admin`]); the audit records name the auditor person (`via = "web"`).

use std::sync::Arc;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Form, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use jitssh_auditor::protocol::Reply;
use jitssh_core::audit::AuditEvent;
use serde::Deserialize;
use tokio::sync::broadcast;

use super::Console;
use super::pages::{check_change, error, signed_in, valid_id};

/// The end form.
#[derive(Deserialize)]
pub struct EndForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    confirm: String,
}

/// `POST /sessions/ID/end`: ends a live session (confirmed, CSRF-checked), audited with the
/// auditor's identity; the person is told the reason.
pub async fn end(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<EndForm>,
) -> Response {
    let (_, signed) = match signed_in(&console, &headers).await {
        Ok(found) => found,
        Err(redirect) => return *redirect,
    };
    if let Err(refused) = check_change(&console, &headers, &signed, &form.csrf) {
        return *refused;
    }
    if !valid_id(&id) {
        return error(StatusCode::BAD_REQUEST, "not a session id");
    }
    if form.confirm != "yes" {
        return error(StatusCode::BAD_REQUEST, "not ended: tick the confirmation");
    }
    let by = format!("auditor {}", signed.person);
    let person = signed.person.clone();
    let answer = crate::admin::kill(&console.live, &console.audit, &id, &form.reason, &by, |e| {
        e.with("auditor", person.as_str()).with("via", "web")
    })
    .await;
    match answer {
        Reply::Killed(_) => Redirect::to(&format!("/sessions/{id}")).into_response(),
        Reply::Error(why) => error(StatusCode::CONFLICT, &why),
        _ => error(StatusCode::INTERNAL_SERVER_ERROR, "unexpected answer"),
    }
}

/// `GET /sessions/ID/live`: the session's output as binary WebSocket messages until it ends.
pub async fn socket(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    upgrade: WebSocketUpgrade,
) -> Response {
    let (_, signed) = match signed_in(&console, &headers).await {
        Ok(found) => found,
        Err(redirect) => return *redirect,
    };
    // A WebSocket is not bound by the same-origin policy: only this console's pages may open it.
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    if origin != Some(console.settings.public_url.as_str()) {
        return error(StatusCode::FORBIDDEN, "cross-site request refused");
    }
    if !valid_id(&id) {
        return error(StatusCode::BAD_REQUEST, "not a session id");
    }
    let Some((output, ended)) = console.live.subscribe(&id) else {
        return error(StatusCode::NOT_FOUND, "no such live session");
    };
    console
        .audit
        .record_or_log(
            AuditEvent::new("session.watch")
                .with("session", id.as_str())
                .with("auditor", signed.person.as_str())
                .with("via", "web"),
        )
        .await;
    upgrade
        .max_message_size(4096)
        .on_upgrade(move |socket| relay(socket, output, ended))
        .into_response()
}

async fn relay(
    mut socket: WebSocket,
    mut output: broadcast::Receiver<Arc<[u8]>>,
    mut ended: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            incoming = socket.recv() => {
                if matches!(incoming, None | Some(Err(_)) | Some(Ok(Message::Close(_)))) {
                    return;
                }
            }
            chunk = output.recv() => match chunk {
                Ok(data) => {
                    if socket.send(Message::Binary(data.to_vec().into())).await.is_err() {
                        return;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => break,
            },
            changed = ended.changed() => {
                if changed.is_err() || *ended.borrow() {
                    while let Ok(data) = output.try_recv() {
                        let _ = socket.send(Message::Binary(data.to_vec().into())).await;
                    }
                    break;
                }
            }
        }
    }
    let _ = socket.send(Message::Close(None)).await;
}
