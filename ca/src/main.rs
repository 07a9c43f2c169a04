//! `ssh-ca`: the binary's edge. Parses the command line, runs the command, and turns any error
//! into one line on stderr and a non-zero exit status.

use std::process::ExitCode;

use clap::Parser;
use jitssh_authority::config::CaConfig;
use ssh_ca::edge;

mod cli;
mod commands;
mod login;
mod renew;
mod shadow_report;
mod ssh_config;

use cli::{AuditCommand, Cli, Command, HostCommand, ShadowCommand};

/// The pid file of `ssh-ca serve` in the data directory, which `ssh-ca reload` signals.
pub const SERVE_PID_FILE: &str = "ssh-ca.pid";

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
    // Client commands run on people's machines: no CA configuration there.
    if let Command::Login(args) = &cli.command {
        eprintln!("{}", login::login(args)?);
        return Ok(ExitCode::SUCCESS);
    }
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
        Command::Migrate => commands::migrate(&config)?,
        Command::Host { command } => match command {
            HostCommand::Add(args) => commands::host_add(&config, args)?,
            HostCommand::List => commands::host_list(&config)?,
            HostCommand::Remove { name } => commands::host_remove(&config, name)?,
            HostCommand::Renew(args) => runtime()?.block_on(commands::host_renew(args))?,
        },
        // Handled above, before the configuration is loaded.
        Command::Login(_) => {}
        Command::SshConfig(args) => ssh_config::ssh_config(&config, args)?,
        Command::Reload => {
            let path = config.data_dir.join(SERVE_PID_FILE);
            let pid = jitssh_server::pidfile::signal_reload(&path, "ssh-ca")?;
            eprintln!("asked ssh-ca (pid {pid}) to reload its policy; its log says how it went");
        }
        Command::Shadow {
            command: ShadowCommand::Report(args),
        } => {
            let since = jitssh_core::unix_now().saturating_sub(args.since.as_secs());
            let report = shadow_report::report(&config.audit_path(), since)?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", shadow_report::table(&report, &args.since.to_string()));
            }
        }
        Command::Audit {
            command: AuditCommand::Verify,
        } => {
            if !commands::audit_verify(&config)? {
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::Audit {
            command: AuditCommand::Search(args),
        } => commands::audit_search(&config, args)?,
    }
    Ok(ExitCode::SUCCESS)
}

fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
}
