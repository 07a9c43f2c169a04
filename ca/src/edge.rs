//! The binaries' edge, shared by `ssh-ca` and `ssh-bastion`: one-line errors, clap usage
//! errors as one line, and logging set-up.

use std::process::ExitCode;

use clap::error::ErrorKind;

/// A clap error's message as one line, without the usage block that follows it.
pub fn clap_error_line(err: &clap::Error) -> String {
    let rendered = err.render().to_string();
    let head = rendered.split("\n\n").next().unwrap_or("invalid arguments");
    let head = head.strip_prefix("error: ").unwrap_or(head);
    head.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Help and version go to stdout as usual (exit 0); a missing sub-command prints the help
/// (exit 2); a real usage error becomes one line on stderr (exit 2).
pub fn usage_error(program: &str, err: clap::Error) -> ExitCode {
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
            eprintln!(
                "{program}: error: {} (see {program} --help)",
                clap_error_line(&err)
            );
            ExitCode::from(2)
        }
    }
}

/// An error and its causes as one line.
pub fn one_line(err: &anyhow::Error) -> String {
    format!("{err:#}")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// Logs to stderr, filtered by the environment variable `filter_var` (default `info`), as
/// text (coloured only on a terminal) or JSON lines.
pub fn init_logging(filter_var: &str, json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env(filter_var)
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
