//! The CA API for hosts with an identity token:
//! `ssh -p 2200 host@ca join --token-file - < token.jwt`.
//!
//! A cloud VM (or a Kubernetes node, a SPIFFE-style workload) logs in as `host` with its host
//! key (any key may) and sends the token its platform signed. The token is verified on the same
//! path as workload tokens ([`super::token`]) against the `[[hosts_by_token]]` rules of its
//! issuer; the first rule whose `match` conditions hold names the host, and the certificate is a
//! host certificate for the key that logged in. Renewal is the same command with a fresh token.
//! Every refusal is audited and answered in one line.

use std::sync::Arc;

use jitssh_authority::authority::Authority;
use jitssh_authority::host_token::{self, HostTokenIdentity};
use jitssh_core::policy::host_tokens;
use jitssh_core::ssh_key::PublicKey;

use super::commands::{self, CommandOutput};
use super::token::{self, Failure};

const USAGE: &str = "hosts send an identity token: ssh host@<ca> join --token-file - < token.jwt";

/// `join --token-file -` for a key logged in as `host`, the token in `stdin`.
pub async fn join(
    authority: Arc<Authority>,
    key: PublicKey,
    token_file: &str,
    stdin: Vec<u8>,
) -> CommandOutput {
    if token_file != "-" {
        return CommandOutput::fail(USAGE);
    }
    let policy = authority.policy();
    let rules = policy.hosts_by_token();
    let verified = match token::verify(rules, "hosts_by_token", &stdin, USAGE).await {
        Ok(verified) => verified,
        Err(Failure::Usage(why)) => return CommandOutput::fail(why),
        Err(Failure::Internal(why)) => {
            return CommandOutput::fail(format!("internal error: {why}"));
        }
        Err(Failure::Refused(why, claims)) => {
            return token::refused(
                &authority,
                &key,
                why,
                claims.as_ref(),
                host_token::audit_refused_token,
            )
            .await;
        }
    };
    let (rule_index, rule, names) = match host_tokens::resolve(
        rules,
        &verified.issuer,
        &verified.audiences(),
        &verified.claims,
    ) {
        Ok(found) => found,
        Err(why) => {
            return token::refused(
                &authority,
                &key,
                why,
                Some(&verified.claims),
                host_token::audit_refused_token,
            )
            .await;
        }
    };
    let identity = HostTokenIdentity {
        names,
        issuer: verified.issuer.clone(),
        sub: verified.sub(),
        jti: verified.jti(),
        expires_at: verified.expires_at(),
        rule: rule_index,
        ttl_secs: rule.ttl.as_secs(),
    };
    let task = tokio::task::spawn_blocking(move || {
        commands::host_result(host_token::issue(&authority, &identity, &key))
    });
    task.await
        .unwrap_or_else(|err| CommandOutput::fail(format!("internal error: {err}")))
}
