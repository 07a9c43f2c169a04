//! Human-readable renderings of certificates and times, shared by the CLI and the SSH API.

use jitssh_core::cert::CertSpec;
use jitssh_core::timefmt::format_duration;

/// Unix seconds as `2026-11-23T18:00:00Z`, the format the auditor prints and reads too.
pub use jitssh_core::timefmt::format_utc as format_time;

/// The parts of a certificate a person checks: type, key id, principals, validity, options.
pub fn spec_summary(spec: &CertSpec) -> String {
    let kind = if spec.cert_type.is_host() {
        "host"
    } else {
        "user"
    };
    let mut out = format!(
        "  type            {kind}\n  key id          {}\n",
        spec.key_id
    );
    out.push_str(&format!(
        "  principals      {}\n",
        spec.principals.join(",")
    ));
    out.push_str(&format!(
        "  valid           {} to {} ({})\n",
        format_time(spec.valid_after),
        format_time(spec.valid_before),
        format_duration(spec.valid_before.saturating_sub(spec.valid_after))
    ));
    for (name, value) in &spec.critical_options {
        out.push_str(&format!("  critical option {name} {value}\n"));
    }
    for (name, value) in &spec.extensions {
        if value.is_empty() {
            out.push_str(&format!("  extension       {name}\n"));
        } else {
            out.push_str(&format!("  extension       {name} {value}\n"));
        }
    }
    out
}
