//! Telling file transfers from terminal sessions, and accounting for their streams.
//!
//! A transfer's bytes are a protocol, not something a person reads on a terminal, and can be
//! gigabytes: they are counted and hashed (so an auditor can match them with `sha256sum` of
//! the file), and stored only when the policy asks.

use sha2::{Digest, Sha256};

/// True for an exec command that runs a file-transfer program: `scp` (`-t`/`-f` server
/// side), `sftp-server`, `internal-sftp`, or `rsync --server`. Only the program's base name
/// counts, so `/usr/bin/scp -t /tmp` is a transfer and `echo scp` is not.
pub(crate) fn is_transfer_command(command: &str) -> bool {
    let mut words = command.split_whitespace();
    let Some(program) = words.next() else {
        return false;
    };
    let base = program.rsplit('/').next().unwrap_or(program);
    match base {
        "scp" | "sftp-server" | "internal-sftp" => true,
        "rsync" => words.any(|w| w == "--server"),
        _ => false,
    }
}

/// SHA-256 of one direction of a transfer (the channel counts the bytes).
#[derive(Debug, Clone, Default)]
pub(crate) struct StreamDigest {
    sha: Sha256,
}

impl StreamDigest {
    /// Adds the next bytes of the stream.
    pub fn update(&mut self, data: &[u8]) {
        self.sha.update(data);
    }

    /// Lowercase hex SHA-256 of the stream so far (the stream can go on).
    pub fn hex(&self) -> String {
        hex::encode(self.sha.clone().finalize())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transfer_commands_are_recognised_by_program_name() {
        for yes in [
            "scp -t /tmp",
            "scp -f file.txt",
            "/usr/bin/scp -v -t .",
            "/usr/lib/openssh/sftp-server",
            "internal-sftp",
            "rsync --server -vlogDtpre.iLsfxC . /srv",
        ] {
            assert!(is_transfer_command(yes), "{yes}");
        }
        for no in [
            "",
            "ls -l",
            "echo scp",
            "rsync -av a b",
            "scpx -t .",
            "bash",
        ] {
            assert!(!is_transfer_command(no), "{no}");
        }
    }

    #[test]
    fn digest_matches_one_shot_sha256() {
        let mut d = StreamDigest::default();
        d.update(b"hello ");
        d.update(b"world");
        assert_eq!(d.hex(), hex::encode(Sha256::digest(b"hello world")));
    }
}
