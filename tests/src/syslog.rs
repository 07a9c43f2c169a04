//! A real syslog collector for the audit-forwarding tests: Debian's `rsyslogd` in the
//! foreground with a throwaway config, listening for RFC 6587 framed messages on a loopback
//! TCP port and writing each message's raw text to a file.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::process::Daemon;
use crate::tools::tool;

/// A running `rsyslogd -n` on `127.0.0.1:port`.
pub struct Rsyslog {
    daemon: Daemon,
    out: PathBuf,
}

impl Rsyslog {
    /// Starts a collector on `port` whose messages go to `dir/<name>.messages` (one per line,
    /// as received); waits until it accepts connections.
    pub fn start(dir: &Path, name: &str, port: u16) -> Rsyslog {
        let work = dir.join(format!("{name}.work"));
        std::fs::create_dir_all(&work).expect("rsyslog work dir");
        let out = dir.join(format!("{name}.messages"));
        let config = dir.join(format!("{name}.conf"));
        std::fs::write(
            &config,
            format!(
                r#"global(workDirectory="{work}")
module(load="imtcp")
input(type="imtcp" port="{port}" address="127.0.0.1")
template(name="raw" type="string" string="%rawmsg%\n")
*.* action(type="omfile" file="{out}" template="raw")
"#,
                work = work.display(),
                out = out.display(),
            ),
        )
        .expect("write rsyslog.conf");
        let mut cmd = Command::new(tool("rsyslogd"));
        cmd.arg("-n")
            .arg("-f")
            .arg(&config)
            .arg("-i")
            .arg(dir.join(format!("{name}.pid")));
        let daemon = Daemon::spawn("rsyslogd", &mut cmd, &dir.join(format!("{name}.log")));
        crate::process::wait_for(
            || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok(),
            Duration::from_secs(20),
            "rsyslogd to listen",
        );
        Rsyslog { daemon, out }
    }

    /// The messages received so far, one per line.
    pub fn messages(&self) -> Vec<String> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// Stops the collector (SIGTERM).
    pub fn stop(&mut self) {
        self.daemon.stop();
    }
}
