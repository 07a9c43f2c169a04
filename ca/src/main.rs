//! `ssh-ca`: the binary's edge. Parses the command line, runs the command, and turns any error
//! into one line on stderr and a non-zero exit status.

use std::process::ExitCode;

use clap::Parser;
use jitssh_authority::config::CaConfig;
use ssh_ca::edge;

mod cli;
mod commands;
mod renew;

use cli::{AuditCommand, Cli, Command, HostCommand};

fn main() -> ExitCode {
    // Before anything is created: data is for the service user only.
    jitssh_core::fsmode::restrict_umask();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => return edge::usage_error("ssh-ca", err),
    };
    edge::quiet_on_closed_stdout();
    edge::init_logging("SSH_CA_LOG", cli.log_json);
    match run(cli) {
        Ok(code) => code,
        Err(err) => edge::fail("ssh-ca", &err),
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
