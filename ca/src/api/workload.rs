//! The CA API for workloads: `ssh -p 2200 workload@ca cert --token-file - < token.jwt`.
//!
//! Any key may log in as `workload` (the login proves possession of the key; the certificate
//! is issued for it). The token on stdin is verified against the `[[workloads]]` rules of its
//! issuer (signature against the issuer's JWKS, `iss`, `aud`, `exp`/`nbf`/`iat`), the first
//! rule whose `match` conditions hold names the workload and its roles, and the role rules
//! decide the certificate as for a person. Every refusal is audited and answered in one line.

use std::net::IpAddr;
use std::sync::Arc;

use jitssh_authority::authority::Authority;
use jitssh_authority::workload::{self, WorkloadIdentity};
use jitssh_core::policy::CertRequest;
use jitssh_core::policy::workloads as rules;
use jitssh_core::ssh_key::PublicKey;

use super::commands::{self, ApiCommand, CertArgs, CommandOutput};
use super::token;
use super::{Identity, commands::dry_run_output};

/// Runs `command` for a key logged in as `workload`.
pub async fn run(
    authority: Arc<Authority>,
    key: PublicKey,
    command: ApiCommand,
    stdin: Vec<u8>,
    peer: Option<IpAddr>,
) -> CommandOutput {
    match command {
        ApiCommand::Cert(args) => cert(authority, key, args, stdin).await,
        other @ (ApiCommand::CaKeys | ApiCommand::Krl) => {
            let identity = Identity::Workload { key };
            blocking(move || commands::run(&authority, &identity, other, &[], peer)).await
        }
        _ => CommandOutput::fail(
            "as user `workload` you may run: cert --token-file - (a JWT on stdin), ca-keys, krl",
        ),
    }
}

async fn blocking(task: impl FnOnce() -> CommandOutput + Send + 'static) -> CommandOutput {
    tokio::task::spawn_blocking(task)
        .await
        .unwrap_or_else(|err| CommandOutput::fail(format!("internal error: {err}")))
}

async fn cert(
    authority: Arc<Authority>,
    key: PublicKey,
    args: CertArgs,
    stdin: Vec<u8>,
) -> CommandOutput {
    if args.token_file.as_deref() != Some("-") {
        return CommandOutput::fail(
            "workloads send a token: ssh workload@<ca> cert --token-file - < token.jwt",
        );
    }
    if args.request.is_some() {
        return CommandOutput::fail("workloads cannot use access requests (--request)");
    }
    let policy = authority.policy();
    let usage = "no token on stdin: ssh workload@<ca> cert --token-file - < token.jwt";
    let verified = match token::verify(policy.workloads(), "workloads", &stdin, usage).await {
        Ok(verified) => verified,
        Err(token::Failure::Usage(why)) => return CommandOutput::fail(why),
        Err(token::Failure::Internal(why)) => {
            return CommandOutput::fail(format!("internal error: {why}"));
        }
        Err(token::Failure::Refused(why, claims)) => {
            return token::refused(
                &authority,
                &key,
                why,
                claims.as_ref(),
                workload::audit_refused_token,
            )
            .await;
        }
    };
    let (rule_index, rule, name) = match rules::resolve(
        policy.workloads(),
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
                workload::audit_refused_token,
            )
            .await;
        }
    };
    let identity = WorkloadIdentity {
        name,
        issuer: verified.issuer.clone(),
        sub: verified.sub(),
        jti: verified.jti(),
        expires_at: verified.expires_at(),
        rule: rule_index,
        roles: rule.roles.clone(),
    };
    let request = CertRequest {
        principals: args.principals.clone(),
        ttl: args.ttl,
        reason: args.reason.clone(),
        role: args.role.clone(),
        approved: None,
        direct: args.direct,
    };
    let subject = key.key_data().clone();
    blocking(move || {
        if args.dry_run {
            let (planned, shadow) =
                workload::plan_with_shadow(&authority, &identity, subject, &request);
            return dry_run_output(planned, shadow);
        }
        match workload::issue(&authority, &identity, subject, &request) {
            Ok(issued) => CommandOutput::ok(format!("{}\n", issued.line)),
            Err(err) => commands::issue_error(&err),
        }
    })
    .await
}
