//! Decisions about a person's channel requests, as pure functions: what a session channel
//! may start and with which command, which environment variables pass. The front door
//! ([`crate::front`]) audits, records and forwards what these decide.

/// Longest command line accepted in an `exec` request.
pub const MAX_COMMAND: usize = 64 * 1024;
/// Longest environment variable name passed on.
pub const MAX_ENV_NAME: usize = 256;
/// Longest environment variable value passed on.
pub const MAX_ENV_VALUE: usize = 8 * 1024;

/// What the person asked a session channel to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Asked {
    /// A login shell (`shell`).
    Shell,
    /// A command (`exec`), as sent.
    Exec(Vec<u8>),
    /// A subsystem such as `sftp` (`subsystem`).
    Subsystem(String),
}

impl Asked {
    /// The audit event kind of this request.
    pub fn event_kind(&self) -> &'static str {
        match self {
            Asked::Shell => "session.shell",
            Asked::Exec(_) => "session.exec",
            Asked::Subsystem(_) => "session.subsystem",
        }
    }
}

/// What the bastion asks the target to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Start {
    /// The login's shell.
    Shell,
    /// This command line.
    Exec(Vec<u8>),
    /// This subsystem.
    Subsystem(String),
}

/// Why a start request is refused before it reaches the target.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StartRefused {
    /// The command line is longer than [`MAX_COMMAND`].
    #[error("command longer than {MAX_COMMAND} bytes")]
    CommandTooLong,
}

/// What the target starts for `asked`: the certificate's `force-command`, when it has one,
/// replaces whatever was asked (shell, command or subsystem), as sshd does.
pub fn start(asked: &Asked, forced: Option<&str>) -> Result<Start, StartRefused> {
    if let Asked::Exec(command) = asked
        && command.len() > MAX_COMMAND
    {
        return Err(StartRefused::CommandTooLong);
    }
    Ok(match (forced, asked) {
        (Some(command), _) => Start::Exec(command.as_bytes().to_vec()),
        (None, Asked::Shell) => Start::Shell,
        (None, Asked::Exec(command)) => Start::Exec(command.clone()),
        (None, Asked::Subsystem(name)) => Start::Subsystem(name.clone()),
    })
}

/// Whether an `env` request passes: bounded sizes and a name the bastion's policy lists.
pub fn env_allowed(name: &str, value: &str, allowed: &[String]) -> bool {
    name.len() <= MAX_ENV_NAME
        && value.len() <= MAX_ENV_VALUE
        && jitssh_core::pattern::list_matches(allowed, name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_force_command_the_target_starts_what_was_asked() {
        assert_eq!(start(&Asked::Shell, None), Ok(Start::Shell));
        assert_eq!(
            start(&Asked::Exec(b"uptime".to_vec()), None),
            Ok(Start::Exec(b"uptime".to_vec()))
        );
        assert_eq!(
            start(&Asked::Subsystem("sftp".into()), None),
            Ok(Start::Subsystem("sftp".into()))
        );
    }

    #[test]
    fn force_command_replaces_shell_exec_and_subsystem() {
        let forced = Some("backup --run");
        let expected = Ok(Start::Exec(b"backup --run".to_vec()));
        assert_eq!(start(&Asked::Shell, forced), expected);
        assert_eq!(start(&Asked::Exec(b"rm -rf /".to_vec()), forced), expected);
        assert_eq!(start(&Asked::Subsystem("sftp".into()), forced), expected);
    }

    #[test]
    fn an_overlong_command_is_refused_even_with_force_command() {
        let long = vec![b'x'; MAX_COMMAND + 1];
        assert_eq!(
            start(&Asked::Exec(long.clone()), None),
            Err(StartRefused::CommandTooLong)
        );
        assert_eq!(
            start(&Asked::Exec(long), Some("true")),
            Err(StartRefused::CommandTooLong)
        );
        let longest = vec![b'x'; MAX_COMMAND];
        assert!(start(&Asked::Exec(longest), None).is_ok());
    }

    #[test]
    fn env_passes_only_listed_names_of_bounded_size() {
        let allowed = vec!["LANG".to_string(), "LC_*".to_string()];
        assert!(env_allowed("LANG", "C.UTF-8", &allowed));
        assert!(env_allowed("LC_ALL", "C", &allowed));
        assert!(!env_allowed("LD_PRELOAD", "/tmp/x.so", &allowed));
        assert!(!env_allowed(
            "LANG",
            &"x".repeat(MAX_ENV_VALUE + 1),
            &allowed
        ));
        let long_name = format!("LC_{}", "X".repeat(MAX_ENV_NAME));
        assert!(!env_allowed(&long_name, "C", &allowed));
    }

    #[test]
    fn audit_kinds_name_the_request() {
        assert_eq!(Asked::Shell.event_kind(), "session.shell");
        assert_eq!(Asked::Exec(Vec::new()).event_kind(), "session.exec");
        assert_eq!(
            Asked::Subsystem(String::new()).event_kind(),
            "session.subsystem"
        );
    }
}
