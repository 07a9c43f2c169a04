//! `ssh-bastion`: see `ssh-bastion --help`.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use ssh_bastion::auditor::{Auditor, AuditorError, Outcome};
use ssh_bastion::cli::{AuditCommand, Cli, Command};
use ssh_bastion::config::BastionConfig;
use ssh_ca::edge;

fn main() -> ExitCode {
    // Before anything is created: data is for the service user only.
    jitssh_core::fsmode::restrict_umask();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => return edge::usage_error("ssh-bastion", err),
    };
    edge::quiet_on_closed_stdout();
    edge::init_logging("SSH_BASTION_LOG", cli.log_json);
    match run(cli) {
        Ok(code) => code,
        Err(err) => edge::fail("ssh-bastion", &err),
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let config = BastionConfig::load(cli.config.as_deref())?;
    match cli.command {
        Command::Serve => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("cannot start the async runtime")?;
            runtime.block_on(async {
                let mut terminate =
                    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                        .context("cannot handle SIGTERM")?;
                let stop = async move {
                    tokio::select! {
                        _ = tokio::signal::ctrl_c() => tracing::info!("interrupted; stopping"),
                        _ = terminate.recv() => tracing::info!("terminated; stopping"),
                    }
                };
                ssh_bastion::server::serve(config, stop).await?;
                anyhow::Ok(())
            })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Reload => {
            if !matches!(config.ca, ssh_bastion::config::CaSettings::Embedded(_)) {
                anyhow::bail!(
                    "this bastion uses a remote CA, which holds the policy: reload the CA (ssh-ca reload)"
                );
            }
            let path = config.pid_file_path();
            let pid = jitssh_server::pidfile::signal_reload(&path, "ssh-bastion")?;
            eprintln!(
                "asked ssh-bastion (pid {pid}) to reload its policy; its log says how it went"
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Audit {
            command: AuditCommand::Verify,
        } => auditor(&config, |a, out| a.audit_verify(out)),
        Command::Audit {
            command: AuditCommand::Search(args),
        } => auditor(&config, |a, out| a.audit_search(&args.query(), out)),
        Command::Sessions { command } => {
            auditor(&config, |a, out| a.sessions_command(&command, out))
        }
        Command::Replay(args) => auditor(&config, |a, _| a.replay(&args)),
        Command::Export(args) => auditor(&config, |a, out| a.export(&args, out)),
        Command::Verify(args) => auditor(&config, |a, out| a.verify(&args, out)),
        Command::Prune(args) => auditor(&config, |a, out| a.prune(&args, out)),
    }
}

/// Runs an auditor command on standard output. Damage found (or, for grep, nothing found)
/// exits 1; a closed pipe (`| head`) is not an error.
fn auditor(
    config: &BastionConfig,
    command: impl FnOnce(&Auditor, &mut dyn Write) -> Result<Outcome, AuditorError>,
) -> anyhow::Result<ExitCode> {
    let auditor = config.auditor()?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let result = command(&auditor, &mut out)
        .and_then(|outcome| out.flush().map(|()| outcome).map_err(AuditorError::Output));
    match result {
        Ok(Outcome::Ok) => Ok(ExitCode::SUCCESS),
        Ok(Outcome::Failed) => Ok(ExitCode::FAILURE),
        Err(err) if ssh_bastion::auditor::is_closed_pipe(&err) => Ok(ExitCode::SUCCESS),
        Err(err) => Err(err.into()),
    }
}
