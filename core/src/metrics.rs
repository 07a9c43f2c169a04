//! The catalogue of Prometheus metrics: every name in one place, with its help text.
//!
//! Code anywhere counts through the `metrics` facade with these names (a no-op until
//! `jitssh_server::metrics::install` puts a recorder in place); most counters are not counted
//! in the code paths at all but derived from audit records as they become durable
//! ([`crate::audit::AuditLog::observe`]), so a metric and the audit log never disagree.
//!
//! Names follow Prometheus conventions: a `jitssh_` prefix, the program (`ca`, `bastion`),
//! base units (`_seconds`, `_bytes`), `_total` on counters. Label values are bounded sets
//! (certificate types, CA names, role names from the policy, denial categories, target names
//! from the config), never free text.

use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};

/// The metric names, each described in [`describe_all`].
pub mod names {
    /// Certificates issued, by `cert_type` (user, host), `ca` (user, host, target) and `role`.
    pub const CA_ISSUED: &str = "jitssh_ca_certificates_issued_total";
    /// Certificate requests refused, by `reason` (a category, see `authority::denials`).
    pub const CA_DENIED: &str = "jitssh_ca_certificates_denied_total";
    /// Time to sign, store and audit one certificate (the audit fsync included).
    pub const CA_ISSUANCE_SECONDS: &str = "jitssh_ca_issuance_duration_seconds";
    /// Seconds since the CA last wrote its KRL file.
    pub const CA_KRL_AGE: &str = "jitssh_ca_krl_age_seconds";
    /// Revocations in the store.
    pub const CA_REVOCATIONS: &str = "jitssh_ca_revocations";
    /// Connections accepted by an SSH server, by `server` (ca_api, bastion) and `outcome`
    /// (admitted, dropped by the unauthenticated budget).
    pub const CONNECTIONS: &str = "jitssh_connections_total";
    /// Connections open now, by `server`.
    pub const CONNECTIONS_OPEN: &str = "jitssh_connections_open";
    /// Unix time at which a server's own host certificate expires, by `server`.
    pub const HOST_CERT_EXPIRY: &str = "jitssh_host_certificate_expiry_timestamp_seconds";
    /// Logins at the bastion's front door, by `outcome` (accepted, refused).
    pub const BASTION_LOGINS: &str = "jitssh_bastion_logins_total";
    /// Sessions started through the bastion, by `target`.
    pub const BASTION_SESSIONS: &str = "jitssh_bastion_sessions_total";
    /// Sessions running now, by `target`.
    pub const BASTION_SESSIONS_LIVE: &str = "jitssh_bastion_sessions_live";
    /// Bytes relayed between people and targets, by `direction` (to_target, from_target).
    pub const BASTION_RELAYED: &str = "jitssh_bastion_relayed_bytes_total";
    /// Bytes of session streams the recording writers recorded.
    pub const RECORDING_BYTES: &str = "jitssh_recording_bytes_total";
    /// Recording write failures (disk full, I/O errors), each audited as well.
    pub const RECORDING_FAILURES: &str = "jitssh_recording_failures_total";
    /// Bytes queued for the recording writers now, all sessions together.
    pub const RECORDING_QUEUED: &str = "jitssh_recording_queued_bytes";
    /// Unix time at which the bastion last fetched the CA's KRL (remote CA mode); alert on
    /// `time() - jitssh_bastion_krl_fetched_timestamp_seconds`.
    pub const BASTION_KRL_FETCHED: &str = "jitssh_bastion_krl_fetched_timestamp_seconds";
}

/// Gives every metric its help text and unit (call once, after installing a recorder).
pub fn describe_all() {
    use names::*;
    describe_counter!(CA_ISSUED, "Certificates issued.");
    describe_counter!(
        CA_DENIED,
        "Certificate requests refused, by reason category."
    );
    describe_histogram!(
        CA_ISSUANCE_SECONDS,
        Unit::Seconds,
        "Time to sign, store and durably audit one certificate."
    );
    describe_gauge!(
        CA_KRL_AGE,
        Unit::Seconds,
        "Seconds since the KRL file was written."
    );
    describe_gauge!(CA_REVOCATIONS, "Revocations in the CA's store.");
    describe_counter!(CONNECTIONS, "Connections accepted, by server and outcome.");
    describe_gauge!(CONNECTIONS_OPEN, "Connections open now, by server.");
    describe_gauge!(
        HOST_CERT_EXPIRY,
        Unit::Seconds,
        "Unix time at which the server's own host certificate expires."
    );
    describe_counter!(BASTION_LOGINS, "Logins at the bastion, by outcome.");
    describe_counter!(BASTION_SESSIONS, "Sessions started, by target.");
    describe_gauge!(BASTION_SESSIONS_LIVE, "Sessions running now, by target.");
    describe_counter!(
        BASTION_RELAYED,
        Unit::Bytes,
        "Bytes relayed between people and targets."
    );
    describe_counter!(
        RECORDING_BYTES,
        Unit::Bytes,
        "Bytes of session streams recorded."
    );
    describe_counter!(RECORDING_FAILURES, "Recording write failures.");
    describe_gauge!(
        RECORDING_QUEUED,
        Unit::Bytes,
        "Bytes waiting for the recording writers."
    );
    describe_gauge!(
        BASTION_KRL_FETCHED,
        Unit::Seconds,
        "Unix time at which the bastion last fetched the CA's KRL."
    );
}
