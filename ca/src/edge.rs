//! The binaries' edge, shared by `ssh-ca` and `ssh-bastion`: one-line errors, clap usage
//! errors as one line, a quiet end when standard output is a closed pipe, and logging set-up.

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

/// An error and its causes as one line, each cause once: a cause whose text is already part
/// of the message before it (`cannot listen on ...: Address already in use (os error 98)`
/// wrapping the same io error) is not repeated.
pub fn one_line(err: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in err.chain() {
        let text = cause
            .to_string()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        if text.is_empty() || parts.iter().any(|p| p.contains(&text)) {
            continue;
        }
        parts.push(text);
    }
    parts.join(": ")
}

/// The binaries' failure: one line on stderr and exit status 1, or, when the error is only
/// that standard output is a closed pipe (`ssh-ca issued | head`), a quiet success.
pub fn fail(program: &str, err: &anyhow::Error) -> ExitCode {
    let broken_pipe = err.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    });
    if broken_pipe && stdout_is_closed_pipe() {
        return ExitCode::SUCCESS;
    }
    eprintln!("{program}: error: {}", one_line(err));
    ExitCode::FAILURE
}

/// Makes a `println!` to a closed pipe end the program quietly (exit 0) instead of panicking
/// with "failed printing to stdout: Broken pipe" (exit 101). SIGPIPE stays ignored, as Rust
/// sets it, so servers survive a peer closing a socket; only a failed print to a standard
/// output that really is a closed pipe ends the process. Other panics are reported as usual.
pub fn quiet_on_closed_stdout() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or("");
        if message.starts_with("failed printing to stdout") && stdout_is_closed_pipe() {
            std::process::exit(0);
        }
        report(info);
    }));
}

/// Is standard output a pipe whose reading end is closed? (`poll` reports `POLLERR` on such a
/// pipe's writing end.)
fn stdout_is_closed_pipe() -> bool {
    use rustix::event::{PollFd, PollFlags, poll};
    let stdout = rustix::stdio::stdout();
    let mut fds = [PollFd::new(&stdout, PollFlags::OUT)];
    let zero = rustix::event::Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    matches!(poll(&mut fds, Some(&zero)), Ok(1)) && fds[0].revents().contains(PollFlags::ERR)
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
