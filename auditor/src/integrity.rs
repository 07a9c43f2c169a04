//! `verify` (recordings) and `audit verify` (audit logs): is anything altered, removed,
//! inserted or cut off, and where.
//!
//! Recordings are checked against the hash chain written with them and the seal signed by
//! the bastion's key (see [`jitssh_recording::verify`]); the key is the bastion's
//! (`host_ed25519_key.pub` in its data directory) unless `--key` names one, which is how an
//! outside auditor checks a copied recording against a key they obtained independently. A
//! recording without a seal is reported as unsealed with what the chain still vouches for; it
//! counts as a failure unless the running bastion says the session is still live or ending
//! (being sealed), and then only what a writer at work leaves is forgiven.
//!
//! Audit logs are checked with [`jitssh_core::audit::verify`]: the bastion's, and in
//! all-in-one mode the embedded CA's too.

use std::io::Write;
use std::path::{Path, PathBuf};

use jitssh_core::ssh_key::PublicKey;

use super::args::VerifyArgs;
use super::{Auditor, AuditorError, Outcome, Status, output};
use jitssh_recording::{SealStatus, verify_session};

impl Auditor {
    /// `verify [ID...]`: every named recording, or every one on disk.
    pub fn verify(&self, args: &VerifyArgs, out: &mut dyn Write) -> Result<Outcome, AuditorError> {
        let key_path = args.key.clone().unwrap_or_else(|| self.seal_key.clone());
        let key = read_public_key(&key_path)?;
        // Recordings in a bucket are fetched one at a time, as their turn comes.
        let dirs: Vec<(String, Option<PathBuf>)> = if args.ids.is_empty() {
            self.every_recording()?
        } else {
            args.ids.iter().map(|id| (id.clone(), None)).collect()
        };
        if dirs.is_empty() {
            let place = match &self.store {
                Some(store) => format!("{} or {}", self.recordings.display(), store.url()),
                None => self.recordings.display().to_string(),
            };
            writeln!(out, "no recordings in {place}").map_err(output)?;
            return Ok(Outcome::Ok);
        }
        let live = self.liveness();
        let mut outcome = Outcome::Ok;
        let (mut intact, mut bad) = (0usize, 0usize);
        for (id, dir) in &dirs {
            let dir = match dir {
                Some(dir) => dir.clone(),
                None => self.recording_dir(id)?,
            };
            let report = verify_session(&dir, &key)?;
            write!(out, "{report}").map_err(output)?;
            // A writer at work leaves a partial last line, lines the next chain entry covers
            // and, while sealing, the seal's temporary files: no failure while it is live.
            let unfinished = report.seal == SealStatus::Unsealed
                && report.problems.iter().all(|p| p.in_flight());
            let live_note = match live.status_of(id) {
                _ if !unfinished => None,
                Status::Active => Some("the session is still running: it is sealed when it ends"),
                Status::Ending => {
                    Some("the session is ending: the bastion is sealing its recording")
                }
                _ => None,
            };
            if let Some(note) = live_note {
                writeln!(out, "  ({note})").map_err(output)?;
            }
            let still_live = live_note.is_some();
            if report.is_intact() || still_live {
                intact += 1;
            } else {
                bad += 1;
                outcome = Outcome::Failed;
            }
        }
        if dirs.len() > 1 {
            writeln!(out, "{intact} intact, {bad} not").map_err(output)?;
        }
        Ok(outcome)
    }

    /// `audit verify`: the bastion's audit log, and the embedded CA's; then every chain in
    /// the session index's audit index (every bastion's, on a shared PostgreSQL store): its
    /// records, and that no head went backwards.
    pub fn audit_verify(&self, out: &mut dyn Write) -> Result<Outcome, AuditorError> {
        let mut outcome = Outcome::Ok;
        for path in std::iter::once(&self.audit_log).chain(self.ca_audit_log.as_ref()) {
            if verify_log(path, out)? == Outcome::Failed {
                outcome = Outcome::Failed;
            }
        }
        let Some(index) = self.index()? else {
            return Ok(outcome);
        };
        use jitssh_core::audit::index::{chain_label, verify_index};
        let label = chain_label("ssh-bastion", &self.audit_log);
        for chain in verify_index(index.as_ref(), Some((&self.audit_log, &label)))? {
            let name = format!("chain {} ({})", chain.chain, chain.label);
            if chain.problems.is_empty() {
                writeln!(
                    out,
                    "{name}: OK, {} records, {} heads recorded, head seq {}",
                    chain.records, chain.heads, chain.head_seq
                )
                .map_err(output)?;
            }
            for problem in &chain.problems {
                writeln!(out, "{name}: {problem}").map_err(output)?;
                outcome = Outcome::Failed;
            }
        }
        Ok(outcome)
    }

    /// `audit search`: records of every chain in the session index's audit index matching
    /// `query`, newest first, each as its stored line.
    pub fn audit_search(
        &self,
        query: &jitssh_core::store::AuditQuery,
        out: &mut dyn Write,
    ) -> Result<Outcome, AuditorError> {
        let Some(index) = self.index()? else {
            return Ok(Outcome::Failed);
        };
        let found = index.search_audit(query)?;
        for record in &found {
            writeln!(out, "{}", record.line).map_err(output)?;
        }
        Ok(if found.is_empty() {
            Outcome::Failed
        } else {
            Outcome::Ok
        })
    }
}

/// Verifies one audit log and says what it found.
fn verify_log(path: &Path, out: &mut dyn Write) -> Result<Outcome, AuditorError> {
    let report = match jitssh_core::audit::verify(path) {
        Ok(report) => report,
        Err(err) => {
            writeln!(out, "{}: cannot verify: {err}", path.display()).map_err(output)?;
            return Ok(Outcome::Failed);
        }
    };
    for problem in &report.problems {
        writeln!(out, "{}: {problem}", path.display()).map_err(output)?;
    }
    if report.is_intact() {
        writeln!(
            out,
            "{}: intact, {} records, last hash {}",
            path.display(),
            report.records,
            report.last_hash
        )
        .map_err(output)?;
        Ok(Outcome::Ok)
    } else {
        writeln!(
            out,
            "{}: DAMAGED, {} problem(s) in {} records",
            path.display(),
            report.problems.len(),
            report.records
        )
        .map_err(output)?;
        Ok(Outcome::Failed)
    }
}

/// An OpenSSH public key file (`ssh-ed25519 AAAA... comment`).
pub(crate) fn read_public_key(path: &Path) -> Result<PublicKey, AuditorError> {
    let text = std::fs::read_to_string(path).map_err(|e| AuditorError::Key {
        path: path.to_path_buf(),
        why: format!("cannot read the seal key ({e}); name one with --key"),
    })?;
    PublicKey::from_openssh(text.trim()).map_err(|e| AuditorError::Key {
        path: path.to_path_buf(),
        why: format!("not an OpenSSH public key: {e}"),
    })
}

/// Every recording directory under `root` (`YYYY/MM/DD/<id>`), oldest first.
pub(crate) fn all_recordings(root: &Path) -> Result<Vec<(String, PathBuf)>, AuditorError> {
    let mut found = Vec::new();
    let mut dirs = vec![(root.to_path_buf(), 0)];
    while let Some((dir, depth)) = dirs.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && depth == 0 => {
                return Ok(Vec::new());
            }
            Err(e) => return Err(AuditorError::io(&dir, "read directory")(e)),
        };
        for entry in entries {
            let entry = entry.map_err(AuditorError::io(&dir, "read directory"))?;
            if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let name = entry.file_name().to_string_lossy().into_owned();
            if depth == 3 {
                // Only names that are session ids.
                if jitssh_recording::session_dir(root, &name).is_ok() {
                    found.push((name, entry.path()));
                }
            } else if name.bytes().all(|b| b.is_ascii_digit()) {
                dirs.push((entry.path(), depth + 1));
            }
        }
    }
    found.sort();
    Ok(found)
}
