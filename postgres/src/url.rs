//! `[store] url`: a libpq-style `postgres://user[:password]@host[:port]/database?...` URL.
//!
//! tokio-postgres parses most of it; the TLS parameters are ours, because its `sslmode`
//! knows no `verify-full` and its TLS is plugged in separately:
//! - `sslmode=disable`: plain TCP (a loopback or a private network you trust);
//! - `sslmode=require` or `verify-full` (the default): TLS, with the server's certificate
//!   verified against the roots and its name checked. `require` is verified too (stricter
//!   than libpq, where it only encrypts): a store that accepts any certificate would hand
//!   the CA's state to whoever sits in the path. `prefer` and `allow` are refused, as they
//!   would fall back to plain text silently.
//! - `sslrootcert=PATH`: PEM file of the roots to trust (default: the system's roots).

use std::path::PathBuf;
use std::str::FromStr;

use crate::PgError;

/// TLS to the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tls {
    /// Plain TCP.
    Disable,
    /// TLS with the certificate verified (against `roots`, or the system's roots).
    Verify {
        /// PEM file of trusted roots.
        roots: Option<PathBuf>,
    },
}

/// A parsed store URL.
#[derive(Debug, Clone)]
pub struct StoreUrl {
    /// The connection settings (without the TLS parameters).
    pub config: tokio_postgres::Config,
    /// TLS to use.
    pub tls: Tls,
    /// The URL without its password, for messages.
    pub display: String,
}

/// Whether `url` names a PostgreSQL database (rather than a SQLite file).
pub fn is_postgres(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

impl StoreUrl {
    /// Parses `url`.
    pub fn parse(url: &str) -> Result<StoreUrl, PgError> {
        if !is_postgres(url) {
            return Err(PgError::Url(
                "must start with postgres:// (or postgresql://)".into(),
            ));
        }
        let (base, query) = match url.split_once('?') {
            Some((base, query)) => (base, query),
            None => (url, ""),
        };
        let mut mode = "verify-full".to_string();
        let mut roots = None;
        let mut rest = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            match key {
                "sslmode" => mode = value.to_string(),
                "sslrootcert" => roots = Some(PathBuf::from(value)),
                _ => rest.push(pair),
            }
        }
        let tls = match mode.as_str() {
            "disable" => Tls::Disable,
            "require" | "verify-ca" | "verify-full" => Tls::Verify { roots },
            other => {
                return Err(PgError::Url(format!(
                    "sslmode={other} is not supported: use disable, require or verify-full"
                )));
            }
        };
        let rebuilt = if rest.is_empty() {
            base.to_string()
        } else {
            format!("{base}?{}", rest.join("&"))
        };
        let config = tokio_postgres::Config::from_str(&rebuilt)
            .map_err(|err| PgError::Url(format!("{err}")))?;
        if config.get_hosts().is_empty() {
            return Err(PgError::Url("no host".into()));
        }
        let display = display(&config);
        Ok(StoreUrl {
            config,
            tls,
            display,
        })
    }
}

/// `postgres://user@host:port/database`, never the password.
fn display(config: &tokio_postgres::Config) -> String {
    use tokio_postgres::config::Host;
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(name)) => name.clone(),
        Some(Host::Unix(path)) => path.display().to_string(),
        None => String::new(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let user = config
        .get_user()
        .map(|u| format!("{u}@"))
        .unwrap_or_default();
    let db = config.get_dbname().unwrap_or("");
    format!("postgres://{user}{host}:{port}/{db}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_parameters_are_ours_and_the_password_is_never_shown() {
        let url = StoreUrl::parse(
            "postgres://ca:secret@db.example.com:6432/jitssh?sslmode=verify-full&sslrootcert=/etc/ca.pem&application_name=x",
        )
        .unwrap();
        assert_eq!(url.display, "postgres://ca@db.example.com:6432/jitssh");
        assert_eq!(
            url.tls,
            Tls::Verify {
                roots: Some("/etc/ca.pem".into())
            }
        );
        assert_eq!(url.config.get_application_name(), Some("x"));
        let plain = StoreUrl::parse("postgres://ca@127.0.0.1/j?sslmode=disable").unwrap();
        assert_eq!(plain.tls, Tls::Disable);
        let default = StoreUrl::parse("postgres://ca@db/j").unwrap();
        assert_eq!(default.tls, Tls::Verify { roots: None });
        for bad in [
            "postgres://ca@db/j?sslmode=prefer",
            "mysql://db/j",
            "postgres://ca@db/j?nonsense=1",
        ] {
            assert!(StoreUrl::parse(bad).is_err(), "{bad}");
        }
    }
}
