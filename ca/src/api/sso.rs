//! `ssh -p 2200 sso@ca login`: a certificate for a person with no enrolled key, after they
//! sign in at the organisation's identity provider (RFC 8628 device flow).
//!
//! User `sso` takes any key: the SSH login proves the client holds it, and the certificate is
//! for that key. The verification URL and code go out on stderr at once; the certificate comes
//! on stdout once the person signed in, the ID token verified and the policy allowed it.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use jitssh_authority::authority::{Authority, IssueError};
use jitssh_core::audit::AuditEvent;
use jitssh_core::policy::CertRequest;
use jitssh_core::ssh_key::{HashAlg, PublicKey};
use russh::ChannelId;
use russh::server::Handle;

use super::commands::{CommandOutput, LoginArgs};
use crate::sso::Sso;

/// Runs `login` for the connection's `key`: device flow, verification, issuance.
pub async fn login(
    authority: Arc<Authority>,
    sso: Option<Arc<Sso>>,
    key: PublicKey,
    args: LoginArgs,
    handle: Handle,
    channel: ChannelId,
    peer: IpAddr,
) -> CommandOutput {
    let Some(sso) = sso else {
        return CommandOutput::fail("SSO is not configured on this CA ([sso] in ca.toml)");
    };
    let Some(_pending) = sso.admit() else {
        let why = "too many SSO sign-ins in progress; try again in a minute";
        audit(&authority, &key, peer, why).await;
        return CommandOutput::fail(why);
    };
    let started = match sso.start().await {
        Ok(started) => started,
        Err(err) => {
            let why = format!("cannot start SSO sign-in: {err}");
            audit(&authority, &key, peer, &why).await;
            return CommandOutput::fail(why);
        }
    };
    let auth = &started.authorization;
    let mut text = format!(
        "To sign in, open {} and enter the code {}\n",
        auth.verification_uri, auth.user_code
    );
    if let Some(complete) = &auth.verification_uri_complete {
        text.push_str(&format!("(or open {complete})\n"));
    }
    text.push_str(&format!(
        "Waiting up to {}s for the sign-in...\n",
        auth.expires_in.as_secs()
    ));
    if handle
        .extended_data(channel, 1, text.into_bytes())
        .await
        .is_err()
    {
        return CommandOutput::fail("the client went away");
    }
    // Empty writes keep the connection from counting as idle while the person signs in
    // (however long the IdP's poll interval); when they fail, the client is gone and the
    // sign-in is given up rather than polled to its expiry.
    let every = (authority.config().limits.idle_timeout.as_duration() / 2)
        .clamp(Duration::from_millis(500), Duration::from_secs(15));
    let keepalive_handle = handle.clone();
    let client_gone = async move {
        loop {
            tokio::time::sleep(every).await;
            if keepalive_handle
                .extended_data(channel, 1, Vec::new())
                .await
                .is_err()
            {
                return;
            }
        }
    };
    let finished = tokio::select! {
        finished = sso.finish(&started) => finished,
        () = client_gone => {
            audit(&authority, &key, peer, "the client left before the sign-in ended").await;
            return CommandOutput::fail("the client went away");
        }
    };
    let person = match finished {
        Ok(person) => person,
        Err(err) => {
            let why = format!("SSO sign-in failed: {err}");
            audit(&authority, &key, peer, &why).await;
            return CommandOutput::fail(why);
        }
    };
    let request = CertRequest {
        principals: args.principals,
        ttl: args.ttl,
        reason: args.reason,
        role: args.role,
        approved: None,
        direct: false,
    };
    let subject = key.key_data().clone();
    let task = tokio::task::spawn_blocking(move || {
        authority
            .issue_for_sso(&person, subject, &request)
            .map(|issued| (issued, person))
    });
    match task.await {
        Ok(Ok((issued, person))) => {
            let _ = handle
                .extended_data(
                    channel,
                    1,
                    format!("Signed in as {} at {}\n", person.name, person.issuer).into_bytes(),
                )
                .await;
            CommandOutput::ok_text(format!("{}\n", issued.line))
        }
        Ok(Err(IssueError::Denied(denial))) => CommandOutput::fail(format!("denied: {denial}")),
        Ok(Err(err)) => {
            tracing::error!(%err, "SSO issuance failed");
            CommandOutput::fail(format!("internal error: {err}"))
        }
        Err(err) => CommandOutput::fail(format!("internal error: {err}")),
    }
}

/// Audits an SSO sign-in that failed before the policy was asked (`sso.failed`).
async fn audit(authority: &Arc<Authority>, key: &PublicKey, peer: IpAddr, why: &str) {
    let authority = authority.clone();
    let event = AuditEvent::new("sso.failed")
        .with("peer", peer.to_string())
        .with("subject", key.fingerprint(HashAlg::Sha256).to_string())
        .with("reason", why);
    let written = tokio::task::spawn_blocking(move || authority.audit().append(event)).await;
    if !matches!(written, Ok(Ok(_))) {
        tracing::error!("cannot audit a failed SSO sign-in");
    }
}
