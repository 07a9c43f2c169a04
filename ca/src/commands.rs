//! The operator commands of `ssh-ca`, one function each.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use jitssh_core::audit;
use jitssh_core::cert::{CertSpec, split_extension};
use jitssh_core::keys::{CaKeys, CaKind, CaSigner, KeyError};
use jitssh_core::policy::{BREAK_GLASS, MAX_DIRECT_TTL, MAX_REASON_LEN, check_source_address};
use jitssh_core::ssh_key::certificate::CertType;
use jitssh_core::ssh_key::{HashAlg, PublicKey};
use jitssh_core::store::Revoked;
use jitssh_core::unix_now;
use serde_json::json;

use crate::cli::{
    HostAddArgs, IssuedArgs, KindArg, KnownHostsArgs, KrlArgs, RenewArgs, RevokeArgs, SignArgs,
    SshdConfigArgs,
};
use crate::renew::{self, RenewOutcome};
use jitssh_authority::authority::{Authority, OpenOptions, write_atomic};
use jitssh_authority::config::CaConfig;
use jitssh_authority::hosts;
use jitssh_core::fsmode::PUBLIC_FILE;

/// Longest public key input we read; real keys are a few hundred bytes.
const MAX_KEY_INPUT: u64 = 64 * 1024;

/// Who is running an offline command, for audit records.
fn operator() -> String {
    let name = std::env::var("SUDO_USER")
        .or_else(|_| std::env::var("USER"))
        .unwrap_or_else(|_| "unknown".into());
    format!("operator:{name}")
}

fn open(config: &CaConfig) -> Result<Authority> {
    Ok(Authority::open(
        config.clone(),
        OpenOptions {
            init_keys: false,
            serial_block: 1,
        },
    )?)
}

/// Reads an OpenSSH public key from a file, or standard input for `-`.
pub fn read_public_key(path: &Path) -> Result<PublicKey> {
    let (name, text) = if path == Path::new("-") {
        let mut text = String::new();
        std::io::stdin()
            .take(MAX_KEY_INPUT)
            .read_to_string(&mut text)
            .context("cannot read a public key from standard input")?;
        ("standard input".to_string(), text)
    } else {
        let file =
            std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
        let mut text = String::new();
        file.take(MAX_KEY_INPUT)
            .read_to_string(&mut text)
            .with_context(|| format!("cannot read {}", path.display()))?;
        (path.display().to_string(), text)
    };
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .with_context(|| format!("no public key in {name}"))?;
    PublicKey::from_openssh(line)
        .map_err(|err| anyhow::anyhow!("malformed public key in {name}: {err}"))
}

fn ca_kind(arg: &KindArg) -> CaKind {
    if arg.host {
        CaKind::Host
    } else if arg.target {
        CaKind::Target
    } else {
        CaKind::User
    }
}

/// One CA key, read without opening the store; a data directory from before the target CA
/// gets that key through [`Authority::open`], which creates and audits it.
fn load_signer(config: &CaConfig, kind: CaKind) -> Result<CaSigner> {
    match CaKeys::load_one(&config.data_dir, kind) {
        Err(KeyError::Missing(_))
            if kind == CaKind::Target
                && CaKeys::load_one(&config.data_dir, CaKind::User).is_ok() =>
        {
            Ok(open(config)?.keys().target.clone())
        }
        other => Ok(other?),
    }
}

fn kind(arg: &KindArg) -> CertType {
    if arg.host {
        CertType::Host
    } else {
        CertType::User
    }
}

/// `ssh-ca init`.
pub fn init(config: &CaConfig) -> Result<()> {
    if let Some(existing) = CaKeys::paths(&config.data_dir)
        .into_iter()
        .find(|p| p.exists())
    {
        return Err(jitssh_core::keys::KeyError::Exists(existing).into());
    }
    let authority = Authority::open(
        config.clone(),
        OpenOptions {
            init_keys: true,
            serial_block: 1,
        },
    )?;
    let keys = authority.keys().clone();
    authority.audit().append(
        audit::AuditEvent::new("ca.init")
            .with("user_ca", keys.user.fingerprint())
            .with("host_ca", keys.host.fingerprint())
            .with("target_ca", keys.target.fingerprint())
            .with("by", operator()),
    )?;
    authority.write_krl_file()?;
    println!("user CA {}", keys.user.fingerprint());
    println!("{}", keys.user.public_line());
    println!("host CA {}", keys.host.fingerprint());
    println!("{}", keys.host.public_line());
    println!("target CA {}", keys.target.fingerprint());
    println!("{}", keys.target.public_line());
    Ok(())
}

/// `ssh-ca pubkey --user|--host|--target`.
pub fn pubkey(config: &CaConfig, arg: &KindArg) -> Result<()> {
    let signer = load_signer(config, ca_kind(arg))?;
    println!("{}", signer.public_line());
    Ok(())
}

/// `ssh-ca sign`.
pub fn sign(config: &CaConfig, args: &SignArgs) -> Result<()> {
    let key = read_public_key(&args.key)?;
    let principals: Vec<String> = args
        .principals
        .iter()
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect();
    if principals.is_empty() {
        bail!("refusing to sign a certificate with no principals (--principals is empty)");
    }
    if args.ttl.as_secs() == 0 {
        bail!("--ttl must be more than 0s");
    }
    if let Some(reason) = &args.reason
        && (reason.len() > MAX_REASON_LEN || reason.chars().any(char::is_control))
    {
        bail!("--reason must be at most {MAX_REASON_LEN} printable characters");
    }
    for entry in &args.source_address {
        check_source_address(entry).map_err(|why| anyhow::anyhow!("--source-address: {why}"))?;
    }
    let cert_type = kind(&args.kind);
    let break_glass = args.kind.target;
    if break_glass {
        if args.ttl.as_secs() > MAX_DIRECT_TTL.as_secs() {
            bail!(
                "--ttl {} is too long for a --target (break-glass) certificate: at most {}",
                args.ttl,
                jitssh_core::duration::HumanDuration::from_secs(MAX_DIRECT_TTL.as_secs())
            );
        }
        if args.reason.is_none() {
            bail!("--target (break-glass) needs --reason (the incident), for the audit log");
        }
    }
    let authority = open(config)?;
    let mut critical_options = BTreeMap::new();
    if let Some(command) = &args.force_command {
        critical_options.insert("force-command".to_string(), command.clone());
    }
    if !args.source_address.is_empty() {
        critical_options.insert("source-address".to_string(), args.source_address.join(","));
    }
    if cert_type.is_host() && !critical_options.is_empty() {
        bail!("--force-command and --source-address apply to user certificates only");
    }
    let extensions: BTreeMap<String, String> = if !args.extension.is_empty() {
        args.extension.iter().map(|e| split_extension(e)).collect()
    } else if cert_type.is_host() {
        BTreeMap::new()
    } else {
        authority
            .policy()
            .defaults()
            .extensions
            .iter()
            .map(|e| split_extension(e))
            .collect()
    };
    let comment = key.comment().as_str_lossy().trim().to_string();
    let mut key_id = args
        .key_id
        .clone()
        .or_else(|| (!comment.is_empty()).then_some(comment))
        .unwrap_or_else(|| principals[0].clone());
    if break_glass && !key_id.split_whitespace().any(|w| w == BREAK_GLASS) {
        key_id = format!("{key_id} {BREAK_GLASS}");
    }
    let now = unix_now();
    let spec = CertSpec {
        cert_type,
        subject: key.key_data().clone(),
        key_id,
        principals,
        valid_after: now.saturating_sub(config.clock_skew.as_secs()),
        valid_before: now + args.ttl.as_secs(),
        critical_options,
        extensions,
    };
    let issued = if break_glass {
        authority.issue_signed_by(
            CaKind::Target,
            spec,
            &operator(),
            args.reason.as_deref(),
            json!({ "offline": true, "break_glass": true }),
        )?
    } else {
        authority.issue(
            spec,
            &operator(),
            args.reason.as_deref(),
            json!({ "offline": true }),
        )?
    };
    let line = format!("{}\n", issued.line);
    match &args.out {
        Some(path) => write_atomic(path, line.as_bytes(), PUBLIC_FILE)
            .with_context(|| format!("cannot write {}", path.display()))?,
        None => std::io::stdout().write_all(line.as_bytes())?,
    }
    Ok(())
}

/// `ssh-ca revoke`.
pub fn revoke(config: &CaConfig, args: &RevokeArgs) -> Result<()> {
    let (item, what) = if let Some(serial) = args.serial {
        (Revoked::Serial(serial), format!("serial {serial}"))
    } else if let Some(id) = &args.key_id {
        if id.is_empty() {
            bail!("--key-id is empty");
        }
        (Revoked::KeyId(id.clone()), format!("key id {id:?}"))
    } else if let Some(path) = &args.key {
        let key = read_public_key(path)?;
        let fingerprint = key.fingerprint(HashAlg::Sha256).to_string();
        let line = PublicKey::new(key.key_data().clone(), "").to_openssh()?;
        (Revoked::Key(line), format!("key {fingerprint}"))
    } else {
        bail!("name what to revoke: --serial, --key-id or --key");
    };
    let authority = open(config)?;
    if authority.revoke(item, args.reason.as_deref(), &operator())? {
        println!("revoked {what}");
    } else {
        println!("{what} was already revoked");
    }
    Ok(())
}

/// `ssh-ca krl`.
pub fn krl(config: &CaConfig, args: &KrlArgs) -> Result<()> {
    let authority = open(config)?;
    let bytes = authority.krl()?.encode();
    match &args.out {
        Some(path) => write_atomic(path, &bytes, PUBLIC_FILE)
            .with_context(|| format!("cannot write {}", path.display()))?,
        None => std::io::stdout().write_all(&bytes)?,
    }
    Ok(())
}

/// `ssh-ca sshd-config`: what a stock sshd needs to trust our certificates, and what its host
/// needs to renew its own certificate and refresh the KRL with nothing but `ssh` (targets
/// install nothing of ours). Targets trust only the target CA (the bastion's session
/// certificates and break-glass ones), never the user CA that signs people's certificates.
pub fn sshd_config(config: &CaConfig, args: &SshdConfigArgs) -> Result<()> {
    let authority = open(config)?;
    let files = TargetFiles::new(&args.dir);
    let keys = authority.keys();
    let target_ca = format!("{}\n", keys.target.public_line());
    let host_ca = format!("{}\n", keys.host.public_line());
    let known_hosts = format!("@cert-authority * {}\n", keys.host.public_line());
    let ca = config
        .names
        .first()
        .map(String::as_str)
        .unwrap_or("CA-HOST");
    let port = config.listen.port();
    let host_key = files.dir.join("ssh_host_ed25519_key");
    let plain_ssh = format!(
        "ssh -i {} -o IdentitiesOnly=yes -o UserKnownHostsFile={} -p {port} host@{ca}",
        host_key.display(),
        files.known_hosts.display()
    );
    let cert = files.dir.join("ssh_host_ed25519_key-cert.pub");
    println!("# sshd_config lines (e.g. in /etc/ssh/sshd_config.d/50-jitssh.conf):");
    println!("TrustedUserCAKeys {}", files.target_ca.display());
    println!("RevokedKeys {}", files.krl.display());
    println!("HostCertificate {}", cert.display());
    println!(
        "# {} (the target CA: bastion sessions and break-glass certificates only):",
        files.target_ca.display()
    );
    print!("{target_ca}");
    println!(
        "# {} (trusts the CA API's host certificate; also `ssh-ca host renew --ca-key {}`):",
        files.known_hosts.display(),
        files.host_ca.display()
    );
    print!("{known_hosts}");
    println!("# the host certificate, first with the token from `ssh-ca host add`, then to renew:");
    println!(
        "#   {plain_ssh} join TOKEN > {c}.new && mv {c}.new {c}",
        c = cert.display()
    );
    println!(
        "#   {plain_ssh} host-cert > {c}.new && mv {c}.new {c}",
        c = cert.display()
    );
    println!(
        "# {k}: binary; refresh it (jitssh-krl-refresh.timer) with:\n#   {plain_ssh} krl > {k}.new && mv {k}.new {k}",
        k = files.krl.display()
    );
    if args.write {
        std::fs::create_dir_all(&files.dir)
            .with_context(|| format!("cannot create {}", files.dir.display()))?;
        let krl = authority.krl()?.encode();
        for (path, bytes) in [
            (&files.target_ca, target_ca.as_bytes()),
            (&files.host_ca, host_ca.as_bytes()),
            (&files.known_hosts, known_hosts.as_bytes()),
            (&files.krl, &krl[..]),
        ] {
            write_atomic(path, bytes, PUBLIC_FILE)
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
    }
    Ok(())
}

/// The trust files a target keeps in its sshd directory. All are public material, readable by
/// sshd.
struct TargetFiles {
    dir: PathBuf,
    target_ca: PathBuf,
    host_ca: PathBuf,
    known_hosts: PathBuf,
    krl: PathBuf,
}

impl TargetFiles {
    fn new(dir: &Path) -> TargetFiles {
        TargetFiles {
            dir: dir.to_path_buf(),
            target_ca: dir.join("jitssh-target-ca.pub"),
            host_ca: dir.join("jitssh-host-ca.pub"),
            known_hosts: dir.join("jitssh_known_hosts"),
            krl: dir.join("jitssh-revoked.krl"),
        }
    }
}

/// `ssh-ca known-hosts`.
pub fn known_hosts(config: &CaConfig, args: &KnownHostsArgs) -> Result<()> {
    let host = CaKeys::load_one(&config.data_dir, CaKind::Host)?;
    if args.domain.is_empty() || args.domain.chars().any(char::is_whitespace) {
        bail!("--domain must be a host pattern without spaces, e.g. *.example.com");
    }
    println!("@cert-authority {} {}", args.domain, host.public_line());
    Ok(())
}

/// `ssh-ca issued`.
pub fn issued(config: &CaConfig, args: &IssuedArgs) -> Result<()> {
    let authority = open(config)?;
    if args.break_glass {
        return issued_break_glass(&authority, args.limit);
    }
    println!(
        "{:>8}  {:<5}  {:<24}  {:<20}  {:<20}  REASON",
        "SERIAL", "TYPE", "KEY ID", "PRINCIPALS", "EXPIRES"
    );
    for cert in authority.store().list_issued(args.limit)? {
        let expires = jitssh_authority::cert_text::format_time(cert.valid_before);
        println!(
            "{:>8}  {:<5}  {:<24}  {:<20}  {:<20}  {}",
            cert.serial,
            cert.cert_type,
            cert.key_id,
            cert.principals.join(","),
            expires,
            cert.reason.unwrap_or_default()
        );
    }
    Ok(())
}

/// `ssh-ca issued --break-glass`: direct certificates, who asked for them, when, why, under
/// which roles, and whether they came from the CA API or an operator's `sign --target`.
fn issued_break_glass(authority: &Authority, limit: usize) -> Result<()> {
    println!(
        "{:>8}  {:<20}  {:<20}  {:<20}  {:<20}  {:<12}  REASON",
        "SERIAL", "ISSUED", "EXPIRES", "REQUESTED BY", "PRINCIPALS", "ROLES"
    );
    for cert in authority.store().list_break_glass(limit)? {
        let roles = cert
            .details
            .get("roles")
            .and_then(|r| r.as_array())
            .map_or_else(
                || "-".to_string(),
                |roles| {
                    roles
                        .iter()
                        .filter_map(|r| r.as_str())
                        .collect::<Vec<_>>()
                        .join(",")
                },
            );
        println!(
            "{:>8}  {:<20}  {:<20}  {:<20}  {:<20}  {:<12}  {}",
            cert.serial,
            jitssh_authority::cert_text::format_time(cert.issued_at),
            jitssh_authority::cert_text::format_time(cert.valid_before),
            cert.requested_by,
            cert.principals.join(","),
            roles,
            cert.reason.unwrap_or_else(|| "-".into())
        );
    }
    Ok(())
}

/// `ssh-ca audit verify`: exit status 1 when anything is wrong.
pub fn audit_verify(config: &CaConfig) -> Result<bool> {
    let path = config.audit_path();
    let report = audit::verify(&path)?;
    let mut intact = report.problems.is_empty();
    if intact {
        println!(
            "{}: OK, {} records, head {}",
            path.display(),
            report.records,
            report.last_hash
        );
    }
    for problem in &report.problems {
        println!("{}: {problem}", path.display());
    }
    let Some(index) = open_audit_index(config)? else {
        return Ok(intact);
    };
    let label = audit::index::chain_label("ssh-ca", &path);
    for chain in audit::index::verify_index(index.as_ref(), Some((&path, &label)))? {
        let name = format!("chain {} ({})", chain.chain, chain.label);
        if chain.problems.is_empty() {
            println!(
                "{name}: OK, {} records, {} heads recorded, head seq {}",
                chain.records, chain.heads, chain.head_seq
            );
        }
        for problem in &chain.problems {
            println!("{name}: {problem}");
        }
        intact &= chain.problems.is_empty();
    }
    Ok(intact)
}

/// `ssh-ca audit search`: every instance's records in the store's audit index.
pub fn audit_search(config: &CaConfig, args: &crate::cli::AuditSearchArgs) -> Result<()> {
    let Some(index) = open_audit_index(config)? else {
        bail!(
            "no store at {}: nothing indexed yet (ssh-ca serve fills the audit index)",
            config.store_name()
        );
    };
    let since = args.since.map(|d| {
        jitssh_core::store::record_time(jitssh_core::unix_now().saturating_sub(d.as_secs()))
    });
    let query = jitssh_core::store::AuditQuery {
        event: args.event.clone(),
        since,
        contains: args.contains.clone(),
        chain: args.chain.clone(),
        limit: args.limit,
    };
    let mut out = std::io::stdout().lock();
    for record in index.search_audit(&query)? {
        writeln!(out, "{}", record.line)?;
    }
    Ok(())
}

/// The store's audit index, without opening the authority (no keys needed to read it);
/// `None` when there is no SQLite store yet.
fn open_audit_index(
    config: &CaConfig,
) -> Result<Option<std::sync::Arc<dyn jitssh_core::store::AuditIndex>>> {
    if config.store.url.is_none() && !config.store_path().exists() {
        return Ok(None);
    }
    let (store, _) = jitssh_authority::backend::open(config)?;
    Ok(Some(store))
}

/// `ssh-ca serve`: the SSH API until the process is stopped; creates CA keys on first start.
pub async fn serve(config: &CaConfig) -> Result<()> {
    let authority = std::sync::Arc::new(Authority::open(
        config.clone(),
        OpenOptions {
            init_keys: true,
            serial_block: 64,
        },
    )?);
    tracing::info!(
        user_ca = %authority.keys().user.fingerprint(),
        host_ca = %authority.keys().host.fingerprint(),
        target_ca = %authority.keys().target.fingerprint(),
        dir = %jitssh_authority::authority::absolute(&config.data_dir).display(),
        config = %config.origin,
        "{}",
        if authority.created_keys() {
            "CA keys created"
        } else {
            "CA keys loaded"
        }
    );
    let policy = authority.policy();
    tracing::info!(
        users = policy.users().count(),
        roles = policy.roles().count(),
        policy = %jitssh_authority::authority::absolute(&config.policy).display(),
        "policy loaded"
    );
    if let (Some(shadow), Some(path)) = (authority.shadow_policy(), &config.shadow_policy) {
        tracing::info!(
            users = shadow.users().count(),
            roles = shadow.roles().count(),
            shadow_policy = %jitssh_authority::authority::absolute(path).display(),
            "shadow policy loaded (evaluated and compared, never enforced)"
        );
    }
    authority.write_krl_file()?;
    // Stopped when serve returns; the cursor beside the log says where the next start resumes.
    let _forwarder = jitssh_core::audit::forward::Forwarder::start_configured(
        &config.audit_path(),
        config.audit_forward.as_ref(),
        "ssh-ca",
    )?;
    let shipper = jitssh_core::audit::index::Shipper::start_configured(
        "ssh-ca",
        &config.audit_path(),
        config.audit_index,
        authority.audit_index(),
    )?;
    if let Some(listen) = config.metrics_listen {
        let reader = authority.clone();
        let refresh: jitssh_server::metrics::Refresh =
            std::sync::Arc::new(move || jitssh_authority::metrics::refresh(&reader));
        jitssh_server::metrics::serve(listen, vec![refresh]).await?;
    }
    ssh_ca::api::spawn_policy_reloader(authority.clone())?;
    tokio::spawn(flush_join_denials(authority.clone()));
    let api = ssh_ca::api::Api::bind(authority.clone(), config.listen).await?;
    // For `ssh-ca reload`; removed when serve returns.
    let _pid_file = jitssh_server::pidfile::PidFile::create(
        &config.data_dir.join(crate::SERVE_PID_FILE),
        "ssh-ca",
    )?;
    tracing::info!(addr = %api.local_addr()?, "CA API listening");
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = api.run() => {}
        _ = tokio::signal::ctrl_c() => tracing::info!("interrupted; stopping"),
        _ = terminate.recv() => tracing::info!("terminated; stopping"),
    }
    authority.flush_denials(true);
    if let Some(shipper) = shipper {
        shipper.shutdown();
    }
    Ok(())
}

/// Writes the aggregated refusal summaries (`host.join_denied`, `api.login_refused`) whose
/// window has ended, every few seconds, for as long as the server runs.
async fn flush_join_denials(authority: std::sync::Arc<Authority>) {
    loop {
        tokio::time::sleep(std::time::Duration::from_secs(5)).await;
        let authority = authority.clone();
        let _ = tokio::task::spawn_blocking(move || authority.flush_denials(false)).await;
    }
}

/// `ssh-ca host add`: the token goes alone on the last line of stdout.
pub fn host_add(config: &CaConfig, args: &HostAddArgs) -> Result<()> {
    let authority = open(config)?;
    let token = hosts::add(
        &authority,
        &args.name,
        &args.aliases,
        args.ttl,
        args.token_ttl,
        &operator(),
    )?;
    println!(
        "enrolled {} (certificates valid {}); join token valid {}:",
        args.name, args.ttl, args.token_ttl
    );
    println!("{token}");
    Ok(())
}

/// `ssh-ca host list`.
pub fn host_list(config: &CaConfig) -> Result<()> {
    let authority = open(config)?;
    println!(
        "{:<24}  {:<8}  {:<7}  {:<30}  KEY",
        "NAME", "TTL", "JOINED", "ALIASES"
    );
    for host in authority.store().hosts()? {
        let key = match &host.key {
            Some(line) => PublicKey::from_openssh(line)
                .map(|k| k.fingerprint(HashAlg::Sha256).to_string())
                .unwrap_or_else(|_| "unreadable".into()),
            None => "-".into(),
        };
        println!(
            "{:<24}  {:<8}  {:<7}  {:<30}  {key}",
            host.name,
            jitssh_core::duration::HumanDuration::from_secs(host.ttl_secs).to_string(),
            if host.key.is_some() { "yes" } else { "no" },
            host.aliases.join(",")
        );
    }
    Ok(())
}

/// `ssh-ca host remove`.
pub fn host_remove(config: &CaConfig, name: &str) -> Result<()> {
    let authority = open(config)?;
    if !hosts::remove(&authority, name, &operator())? {
        bail!("no host named {name}");
    }
    println!("removed {name}; it can no longer renew");
    Ok(())
}

/// `ssh-ca host renew` (on the host; needs no CA files).
pub async fn host_renew(args: &RenewArgs) -> Result<()> {
    match renew::renew(args).await? {
        RenewOutcome::StillValid { valid_before } => println!(
            "{} is valid until {}; more than a third of its life is left, nothing to do (--force to renew)",
            args.out.display(),
            jitssh_authority::cert_text::format_time(valid_before)
        ),
        RenewOutcome::Renewed {
            serial,
            valid_before,
        } => println!(
            "wrote {} (serial {serial}, valid until {})",
            args.out.display(),
            jitssh_authority::cert_text::format_time(valid_before)
        ),
    }
    Ok(())
}

/// `ssh-ca migrate`: applies the store's missing migrations and says what it did.
pub fn migrate(config: &CaConfig) -> Result<()> {
    use jitssh_authority::backend::{self, SchemaReport};
    let (_store, report) = backend::open(config)?;
    let name = config.store_name();
    match report {
        SchemaReport::Sqlite => {
            println!("{name}: CA store (SQLite) is up to date");
        }
        SchemaReport::Postgres(migrated) if migrated.applied.is_empty() => {
            println!(
                "{name}: {} schema version {} is up to date; nothing to apply",
                migrated.what, migrated.to
            );
        }
        SchemaReport::Postgres(migrated) => {
            println!(
                "{name}: {} schema migrated from version {} to {}",
                migrated.what, migrated.from, migrated.to
            );
            for (step, what) in (migrated.from + 1..).zip(migrated.applied) {
                println!("  applied {step}: {what}");
            }
        }
    }
    Ok(())
}
