//! `ssh-bastion`: see `ssh-bastion --help`.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use clap::error::ErrorKind;
use ssh_bastion::auditor::{Auditor, AuditorError, Outcome};
use ssh_bastion::cli::{AuditCommand, Cli, Command};
use ssh_bastion::config::BastionConfig;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => return usage_error(err),
    };
    init_logging(cli.log_json);
    match run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("ssh-bastion: error: {}", one_line(&err));
            ExitCode::FAILURE
        }
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
        Command::Audit {
            command: AuditCommand::Verify,
        } => auditor(&config, |a, out| a.audit_verify(out)),
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
    let auditor = Auditor::from_config(config);
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

/// Help and version go to stdout as usual; real usage errors become one line.
fn usage_error(err: clap::Error) -> ExitCode {
    match err.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let _ = err.print();
            ExitCode::SUCCESS
        }
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = err.print();
            ExitCode::from(2)
        }
        _ => {
            let rendered = err.render().to_string();
            let before_usage = rendered.split("\n\n").next().unwrap_or("invalid arguments");
            let message = before_usage.strip_prefix("error: ").unwrap_or(before_usage);
            let message = message.split_whitespace().collect::<Vec<_>>().join(" ");
            eprintln!("ssh-bastion: error: {message} (see ssh-bastion --help)");
            ExitCode::from(2)
        }
    }
}

fn one_line(err: &anyhow::Error) -> String {
    let text = format!("{err:#}");
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SSH_BASTION_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}
