//! `[recordings] store = "s3://bucket/prefix"` and the keys beside it: what is checked when
//! the configuration is read, and how the client is built.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use object_store::aws::AmazonS3Builder;
use object_store::{BackoffConfig, ClientOptions, RetryConfig};

use crate::{Bucket, StoreError};

/// Where and how to reach the bucket. Built by [`ObjectStoreSettings::parse`], which refuses
/// anything it would not use safely.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectStoreSettings {
    /// The bucket.
    pub bucket: String,
    /// Key prefix below which the recordings go (no leading or trailing `/`; may be empty).
    pub prefix: String,
    /// The S3 endpoint (`https://...`; unset: AWS for the region).
    pub endpoint: Option<String>,
    /// The region (unset: `us-east-1`).
    pub region: Option<String>,
    /// An AWS shared-credentials file (`[default]` with `aws_access_key_id` and
    /// `aws_secret_access_key`); unset: `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` (and
    /// `AWS_SESSION_TOKEN`) from the environment.
    pub credentials_file: Option<PathBuf>,
    /// Plain HTTP to the endpoint: only for a loopback endpoint (a test or a local gateway).
    pub allow_http: bool,
}

/// A store setting that cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{key}: {why}")]
pub struct SettingsError {
    /// The configuration key.
    pub key: &'static str,
    /// Why.
    pub why: String,
}

fn bad(key: &'static str, why: impl Into<String>) -> SettingsError {
    SettingsError {
        key,
        why: why.into(),
    }
}

impl ObjectStoreSettings {
    /// Checks the configuration keys: `store` (`s3://bucket/prefix`), `s3_endpoint`,
    /// `s3_region`, `s3_credentials`, `s3_allow_http`.
    pub fn parse(
        url: &str,
        endpoint: Option<&str>,
        region: Option<&str>,
        credentials_file: Option<&Path>,
        allow_http: bool,
    ) -> Result<ObjectStoreSettings, SettingsError> {
        let rest = url.strip_prefix("s3://").ok_or_else(|| {
            bad(
                "store",
                format!("{url:?}: only s3://bucket/prefix is supported"),
            )
        })?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let bucket_ok = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
        if !bucket_ok {
            return Err(bad("store", format!("{bucket:?} is not an S3 bucket name")));
        }
        let prefix = prefix.trim_matches('/');
        if prefix
            .split('/')
            .any(|seg| seg == "." || seg == ".." || (seg.is_empty() && !prefix.is_empty()))
            || prefix.chars().any(char::is_control)
        {
            return Err(bad(
                "store",
                format!("prefix {prefix:?} is not a plain key prefix"),
            ));
        }
        if let Some(endpoint) = endpoint {
            let (scheme, host) = endpoint_host(endpoint)
                .ok_or_else(|| bad("s3_endpoint", format!("{endpoint:?} is not an http(s) URL")))?;
            if scheme == "http" && !allow_http {
                return Err(bad(
                    "s3_endpoint",
                    "plain http: use https, or s3_allow_http = true for a loopback endpoint",
                ));
            }
            if allow_http && !is_loopback(host) {
                return Err(bad(
                    "s3_allow_http",
                    format!(
                        "only for a loopback endpoint, not {host}: recordings and credentials would cross the network in clear"
                    ),
                ));
            }
        } else if allow_http {
            return Err(bad("s3_allow_http", "only for a loopback s3_endpoint"));
        }
        if region.is_some_and(str::is_empty) {
            return Err(bad("s3_region", "empty"));
        }
        Ok(ObjectStoreSettings {
            bucket: bucket.to_owned(),
            prefix: prefix.to_owned(),
            endpoint: endpoint.map(str::to_owned),
            region: region.map(str::to_owned),
            credentials_file: credentials_file.map(Path::to_path_buf),
            allow_http,
        })
    }

    /// `s3://bucket/prefix`, for messages.
    pub fn url(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.prefix)
    }

    /// A client for the bucket. Reads the credentials (file or environment) now; makes no
    /// request.
    pub fn connect(&self) -> Result<Bucket, StoreError> {
        let (key_id, secret, token) = self.credentials()?;
        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(&self.bucket)
            .with_region(self.region.as_deref().unwrap_or("us-east-1"))
            .with_access_key_id(key_id)
            .with_secret_access_key(secret)
            // Our own uploader retries with back-off: a call fails in seconds, not minutes.
            .with_retry(RetryConfig {
                backoff: BackoffConfig::default(),
                max_retries: 2,
                retry_timeout: Duration::from_secs(20),
            })
            // Whole client options: after this, not before, the builder's own allow_http
            // (which lives in them) would be reset.
            .with_client_options(
                ClientOptions::new()
                    .with_allow_http(self.allow_http)
                    .with_connect_timeout(Duration::from_secs(5))
                    .with_timeout(Duration::from_secs(120)),
            );
        if let Some(token) = token {
            builder = builder.with_token(token);
        }
        if let Some(endpoint) = &self.endpoint {
            builder = builder.with_endpoint(endpoint);
        }
        Ok(Bucket::new(
            Arc::new(builder.build()?),
            &self.prefix,
            self.url(),
        ))
    }

    /// Access key id, secret and session token.
    fn credentials(&self) -> Result<(String, String, Option<String>), StoreError> {
        let missing = |why: String| {
            StoreError::Remote(object_store::Error::Generic {
                store: "S3",
                source: why.into(),
            })
        };
        match &self.credentials_file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(StoreError::local("read credentials file", path))?;
                let (id, secret, token) = parse_credentials(&text);
                match (id, secret) {
                    (Some(id), Some(secret)) => Ok((id, secret, token)),
                    _ => Err(missing(format!(
                        "{}: no aws_access_key_id and aws_secret_access_key under [default]",
                        path.display()
                    ))),
                }
            }
            None => {
                let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
                match (var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY")) {
                    (Some(id), Some(secret)) => Ok((id, secret, var("AWS_SESSION_TOKEN"))),
                    _ => Err(missing(
                        "no credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or s3_credentials under [recordings]".into(),
                    )),
                }
            }
        }
    }
}

/// The `[default]` profile of an AWS shared-credentials file (keys before any section count
/// as default too).
fn parse_credentials(text: &str) -> (Option<String>, Option<String>, Option<String>) {
    let (mut id, mut secret, mut token) = (None, None, None);
    let mut in_default = true;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(section) = line.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
            in_default = section.trim() == "default";
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        if !in_default {
            continue;
        }
        let value = Some(value.trim().to_owned());
        match key.trim() {
            "aws_access_key_id" => id = value,
            "aws_secret_access_key" => secret = value,
            "aws_session_token" => token = value,
            _ => {}
        }
    }
    (id, secret, token)
}

/// `(scheme, host)` of an `http(s)://host[:port][/...]` URL.
fn endpoint_host(url: &str) -> Option<(&str, &str)> {
    let (scheme, rest) = url.split_once("://")?;
    if scheme != "http" && scheme != "https" {
        return None;
    }
    let authority = rest.split('/').next()?;
    if authority.contains('@') {
        return None;
    }
    let host = if let Some(v6) = authority.strip_prefix('[') {
        v6.split(']').next()?
    } else {
        authority.split(':').next()?
    };
    (!host.is_empty()).then_some((scheme, host))
}

fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(
        url: &str,
        endpoint: Option<&str>,
        http: bool,
    ) -> Result<ObjectStoreSettings, SettingsError> {
        ObjectStoreSettings::parse(url, endpoint, Some("garage"), None, http)
    }

    #[test]
    fn bucket_and_prefix() {
        let s = parse("s3://recs/site-a/", None, false).unwrap();
        assert_eq!((s.bucket.as_str(), s.prefix.as_str()), ("recs", "site-a"));
        assert_eq!(parse("s3://recs", None, false).unwrap().prefix, "");
        assert_eq!(parse("file:///x", None, false).unwrap_err().key, "store");
        assert_eq!(parse("s3://UPPER/x", None, false).unwrap_err().key, "store");
        assert_eq!(
            parse("s3://recs/a/../b", None, false).unwrap_err().key,
            "store"
        );
        assert_eq!(
            parse("s3://recs/a//b", None, false).unwrap_err().key,
            "store"
        );
    }

    #[test]
    fn plain_http_only_to_loopback() {
        assert!(parse("s3://recs", Some("http://127.0.0.1:3900"), true).is_ok());
        assert!(parse("s3://recs", Some("http://[::1]:3900"), true).is_ok());
        assert!(parse("s3://recs", Some("http://localhost:3900"), true).is_ok());
        assert_eq!(
            parse("s3://recs", Some("http://10.0.0.5:3900"), true)
                .unwrap_err()
                .key,
            "s3_allow_http"
        );
        assert_eq!(
            parse("s3://recs", Some("http://127.0.0.1:3900"), false)
                .unwrap_err()
                .key,
            "s3_endpoint"
        );
        assert!(parse("s3://recs", Some("https://s3.example.net"), false).is_ok());
        assert_eq!(
            parse("s3://recs", None, true).unwrap_err().key,
            "s3_allow_http"
        );
    }

    #[test]
    fn credentials_file_default_profile() {
        let text = "[other]\naws_access_key_id = X\n[default]\naws_access_key_id = GK1\naws_secret_access_key = s3cr3t\n";
        assert_eq!(
            parse_credentials(text),
            (Some("GK1".into()), Some("s3cr3t".into()), None)
        );
    }
}
