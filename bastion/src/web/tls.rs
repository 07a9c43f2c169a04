//! The console's TLS: rustls with the aws-lc-rs provider (the one russh already builds), a
//! certificate from `[web] cert`/`key`, or a self-signed one for loopback use made on first
//! start and kept in the data directory (its SHA-256 fingerprint is logged, so a person can
//! check what the browser shows).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::{self, ServerConfig};

use super::WebSettings;

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read or holds nothing usable.
    #[error("web console: cannot read {path}: {why}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// Why.
        why: String,
    },
    /// The self-signed certificate could not be made or kept.
    #[error("web console: cannot make a self-signed certificate in {path}: {why}")]
    SelfSigned {
        /// The directory.
        path: PathBuf,
        /// Why.
        why: String,
    },
    /// rustls refused the certificate and key.
    #[error("web console: TLS: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The acceptor for `settings`, logging the certificate's fingerprint.
pub fn acceptor(settings: &WebSettings) -> Result<TlsAcceptor, TlsError> {
    let (cert_path, key_path) = match &settings.cert_key {
        Some((cert, key)) => (cert.clone(), key.clone()),
        None => self_signed(&settings.dir)?,
    };
    let pem = |path: &Path, why: String| TlsError::Pem {
        path: path.to_path_buf(),
        why,
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert_path)
        .map_err(|e| pem(&cert_path, e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| pem(&cert_path, e.to_string()))?;
    let Some(leaf) = chain.first() else {
        return Err(pem(&cert_path, "no certificate in it".into()));
    };
    let fingerprint = hex::encode(Sha256::digest(leaf.as_ref()));
    let key = PrivateKeyDer::from_pem_file(&key_path).map_err(|e| pem(&key_path, e.to_string()))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    tracing::info!(
        cert = %cert_path.display(),
        sha256 = %fingerprint,
        "web console TLS certificate SHA-256 {fingerprint}"
    );
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// The self-signed certificate in `dir` (`web.crt`, `web.key`), made on first use for
/// `localhost` and `127.0.0.1`.
fn self_signed(dir: &Path) -> Result<(PathBuf, PathBuf), TlsError> {
    let (cert, key) = (dir.join("web.crt"), dir.join("web.key"));
    if cert.exists() && key.exists() {
        return Ok((cert, key));
    }
    let fail = |why: String| TlsError::SelfSigned {
        path: dir.to_path_buf(),
        why,
    };
    create_private_dir(dir).map_err(|e| fail(e.to_string()))?;
    let made = rcgen::generate_simple_self_signed(vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ])
    .map_err(|e| fail(e.to_string()))?;
    write_private(&key, made.signing_key.serialize_pem().as_bytes())
        .map_err(|e| fail(e.to_string()))?;
    write_private(&cert, made.cert.pem().as_bytes()).map_err(|e| fail(e.to_string()))?;
    tracing::info!(cert = %cert.display(), "web console: made a self-signed certificate");
    Ok((cert, key))
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(data)?;
    file.sync_all()
}
