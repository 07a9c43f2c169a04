//! `prune`: deletes recordings older than the retention (`[recordings] retain`).
//!
//! A recording is old when its last activity (the newest of its files' modification times,
//! which is the seal for a finished session) is before now minus the retention. Never
//! deleted: a session the running bastion reports as live, whatever its age; and if a
//! bastion is configured but cannot be asked (permission denied), nothing at all. When no
//! bastion is running, no session is live (a recording left unsealed by a crash is pruned
//! like any other once old).
//!
//! Every deletion is first written to the bastion's audit log (`recording.pruned`, with the
//! seal's chain hash so the record still identifies what was deleted); if that write fails,
//! nothing is deleted. The session index keeps its rows: `sessions list` shows them as
//! pruned.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

use jitssh_core::audit::{AuditEvent, AuditLog};
use jitssh_core::duration::HumanDuration;

use super::args::PruneArgs;
use super::integrity::all_recordings;
use super::list::dir_size;
use super::timefmt::{format_bytes, format_duration, format_unix};
use super::{Auditor, AuditorError, Outcome, output};
use jitssh_recording::SEAL_FILE;

impl Auditor {
    /// `prune [--dry-run]`.
    pub fn prune(&self, args: &PruneArgs, out: &mut dyn Write) -> Result<Outcome, AuditorError> {
        let retain = match (&args.retain, self.retain) {
            (Some(text), _) => text
                .parse::<HumanDuration>()
                .map(|d| d.as_duration())
                .map_err(|e| AuditorError::BadArgument(format!("--retain: {e}")))?,
            (None, Some(retain)) => retain,
            (None, None) => {
                return Err(AuditorError::BadArgument(
                    "no retention set: set `retain` under [recordings] in bastion.toml, or pass --retain".into(),
                ));
            }
        };
        let now = jitssh_core::unix_now();
        let cutoff = now.saturating_sub(retain.as_secs());
        let live = self.live_sessions().map_err(|e| {
            AuditorError::BadArgument(format!(
                "not pruning: cannot ask the bastion which sessions are live: {e}"
            ))
        })?;
        let live: Vec<String> = live.unwrap_or_default().into_iter().map(|i| i.id).collect();
        let mut audit = None;
        let (mut pruned, mut kept, mut freed) = (0u64, 0u64, 0u64);
        let local = all_recordings(&self.recordings)?;
        for (id, dir) in &local {
            let (id, dir) = (id.clone(), dir.clone());
            if live.contains(&id) {
                writeln!(out, "kept   {id}: live").map_err(output)?;
                kept += 1;
                continue;
            }
            let last = last_activity(&dir);
            if last >= cutoff {
                kept += 1;
                continue;
            }
            let size = dir_size(&dir);
            let age = format_duration(now.saturating_sub(last));
            if args.dry_run {
                writeln!(
                    out,
                    "would prune {id}: last activity {} ({age} ago), {}",
                    format_unix(last),
                    format_bytes(size)
                )
                .map_err(output)?;
                pruned += 1;
                freed += size;
                continue;
            }
            let log = match &mut audit {
                Some(log) => log,
                None => audit.insert(AuditLog::open(&self.audit_log)?),
            };
            log.append(prune_event(
                &id,
                dir.display().to_string(),
                read_seal(&dir),
                last,
                size,
                retain,
            ))?;
            std::fs::remove_dir_all(&dir).map_err(AuditorError::io(&dir, "delete"))?;
            remove_empty_parents(&dir, &self.recordings);
            writeln!(
                out,
                "pruned {id}: last activity {} ({age} ago), {}",
                format_unix(last),
                format_bytes(size)
            )
            .map_err(output)?;
            pruned += 1;
            freed += size;
        }
        // Uploaded recordings: their last activity is the seal's end (what the seal's file
        // time is on disk), or the newest object's upload for an unsealed one.
        let store = self.store.as_ref();
        let stored = store.map(|s| s.sessions()).transpose()?.unwrap_or_default();
        for (stored, store) in stored.into_iter().filter_map(|s| Some((s, store?))) {
            let id = stored.id.clone();
            if local.iter().any(|(l, _)| *l == id) {
                continue;
            }
            if live.contains(&id) {
                writeln!(out, "kept   {id}: live").map_err(output)?;
                kept += 1;
                continue;
            }
            let seal: Option<serde_json::Value> = store
                .read_small(&id, SEAL_FILE, 1 << 20)?
                .and_then(|b| serde_json::from_slice(&b).ok());
            let last = seal
                .as_ref()
                .and_then(|s| s["ended_at"].as_u64())
                .unwrap_or(stored.last_modified);
            if last >= cutoff {
                kept += 1;
                continue;
            }
            let size = stored.bytes();
            let age = format_duration(now.saturating_sub(last));
            let verb = if args.dry_run {
                "would prune"
            } else {
                let log = match &mut audit {
                    Some(log) => log,
                    None => audit.insert(AuditLog::open(&self.audit_log)?),
                };
                log.append(prune_event(
                    &id,
                    stored.location.clone(),
                    seal,
                    last,
                    size,
                    retain,
                ))?;
                store.delete(&id)?;
                "pruned"
            };
            writeln!(
                out,
                "{verb} {id}: last activity {} ({age} ago), {}",
                format_unix(last),
                format_bytes(size)
            )
            .map_err(output)?;
            pruned += 1;
            freed += size;
        }
        let verb = if args.dry_run {
            "would prune"
        } else {
            "pruned"
        };
        writeln!(
            out,
            "{verb} {pruned} recording(s), {}; kept {kept} (retention {})",
            format_bytes(freed),
            format_duration(retain.as_secs())
        )
        .map_err(output)?;
        Ok(Outcome::Ok)
    }
}

/// The audit record of a deletion: enough to identify what was deleted.
fn prune_event(
    id: &str,
    location: String,
    seal: Option<serde_json::Value>,
    last: u64,
    size: u64,
    retain: Duration,
) -> AuditEvent {
    let mut event = AuditEvent::new("recording.pruned")
        .with("session", id)
        .with("dir", location)
        .with("last_activity", last)
        .with("bytes", size)
        .with("retain_secs", retain.as_secs())
        .with("sealed", seal.is_some());
    if let Some(seal) = seal {
        event = event.with("chain_last_hash", seal["chain_last_hash"].clone());
    }
    event
}

/// The seal of the recording in `dir`, if it has a readable one.
fn read_seal(dir: &Path) -> Option<serde_json::Value> {
    std::fs::read(dir.join(SEAL_FILE))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
}

/// Unix time of the newest modification in `dir` (the directory itself included).
fn last_activity(dir: &Path) -> u64 {
    let unix = |m: std::fs::Metadata| {
        m.modified()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_secs())
    };
    let own = std::fs::metadata(dir).map(unix).unwrap_or(0);
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter_map(|e| e.metadata().ok())
                .map(unix)
                .max()
                .unwrap_or(0)
        })
        .unwrap_or(0)
        .max(own)
}

/// Removes the now empty day, month and year directories above a deleted recording.
fn remove_empty_parents(dir: &Path, root: &Path) {
    let mut current = dir.parent();
    while let Some(parent) = current {
        if parent == root || !parent.starts_with(root) {
            break;
        }
        // Fails (and stops) when not empty.
        if std::fs::remove_dir(parent).is_err() {
            break;
        }
        current = parent.parent();
    }
}
