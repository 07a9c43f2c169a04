//! `ssh-ca`: the binary's edge. Parses the command line, runs the command, and turns any error
//! into one line on stderr and a non-zero exit status.

use std::process::ExitCode;

use clap::Parser;
use clap::error::ErrorKind;
use ssh_ca::cli::{AuditCommand, Cli, Command, HostCommand};
use ssh_ca::commands;
use ssh_ca::config::CaConfig;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => return usage_error(err),
    };
    init_logging(cli.log_json);
    match run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("ssh-ca: error: {}", one_line(&err));
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let config = CaConfig::load(cli.config.as_deref())?;
    match &cli.command {
        Command::Init => commands::init(&config)?,
        Command::Pubkey(kind) => commands::pubkey(&config, kind)?,
        Command::Sign(args) => commands::sign(&config, args)?,
        Command::Revoke(args) => commands::revoke(&config, args)?,
        Command::Krl(args) => commands::krl(&config, args)?,
        Command::SshdConfig(args) => commands::sshd_config(&config, args)?,
        Command::KnownHosts(args) => commands::known_hosts(&config, args)?,
        Command::Issued(args) => commands::issued(&config, args)?,
        Command::Serve => runtime()?.block_on(commands::serve(&config))?,
        Command::Host { command } => match command {
            HostCommand::Add(args) => commands::host_add(&config, args)?,
            HostCommand::List => commands::host_list(&config)?,
            HostCommand::Remove { name } => commands::host_remove(&config, name)?,
            HostCommand::Renew(args) => runtime()?.block_on(commands::host_renew(args))?,
        },
        Command::Audit {
            command: AuditCommand::Verify,
        } => {
            if !commands::audit_verify(&config)? {
                return Ok(ExitCode::FAILURE);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
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
            eprintln!("ssh-ca: error: {message} (see ssh-ca --help)");
            ExitCode::from(2)
        }
    }
}

fn one_line(err: &anyhow::Error) -> String {
    let text = format!("{err:#}");
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SSH_CA_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}
