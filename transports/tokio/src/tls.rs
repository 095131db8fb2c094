//! The TLS client configuration: TLS 1.3 only, the ring provider, ALPN `lifeline/1`, and a
//! server certificate checked against one configured CA or the Mozilla root set.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// The ALPN protocol id endpoints offer to relays.
pub const ALPN: &[u8] = b"lifeline/1";

/// Which certificate authorities may vouch for a relay.
#[derive(Clone, Debug)]
pub enum TrustAnchors {
    /// The Mozilla root program's CAs, compiled in (`webpki-roots`): the same set on every
    /// platform, and immune to roots a local administrator or malware added to the OS store.
    /// For relays with certificates from a public CA.
    Mozilla,
    /// Only the CA certificates in this PEM file (e.g. a deployment's own CA, or the dev PKI's
    /// `ca.pem`).
    CaFile(PathBuf),
    /// Only these PEM-encoded CA certificates.
    CaPem(Vec<u8>),
}

/// Why a TLS configuration could not be made.
#[derive(Debug)]
#[non_exhaustive]
pub enum TlsConfigError {
    /// The CA file could not be read.
    Read {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        error: std::io::Error,
    },
    /// The PEM holds no usable CA certificate.
    NoCertificates,
    /// A certificate could not be parsed or added.
    BadCertificate(String),
    /// rustls refused the configuration.
    Rustls(rustls::Error),
}

impl fmt::Display for TlsConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsConfigError::Read { path, error } => write!(f, "cannot read CA file {}: {error}", path.display()),
            TlsConfigError::NoCertificates => f.write_str("no CA certificate found in the PEM data"),
            TlsConfigError::BadCertificate(detail) => write!(f, "invalid CA certificate: {detail}"),
            TlsConfigError::Rustls(error) => write!(f, "TLS configuration refused: {error}"),
        }
    }
}

impl std::error::Error for TlsConfigError {}

/// Builds the client configuration every relay connection uses: TLS 1.3 only, ring provider,
/// ALPN [`ALPN`], no client certificate (endpoints are admitted by ticket, not by certificate).
pub fn client_config(anchors: &TrustAnchors) -> Result<Arc<rustls::ClientConfig>, TlsConfigError> {
    let roots = match anchors {
        TrustAnchors::Mozilla => RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() },
        TrustAnchors::CaFile(path) => roots_from_pem(&read_file(path)?)?,
        TrustAnchors::CaPem(pem) => roots_from_pem(pem)?,
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(TlsConfigError::Rustls)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![ALPN.to_vec()];
    Ok(Arc::new(config))
}

fn read_file(path: &Path) -> Result<Vec<u8>, TlsConfigError> {
    std::fs::read(path).map_err(|error| TlsConfigError::Read { path: path.to_owned(), error })
}

fn roots_from_pem(pem: &[u8]) -> Result<RootCertStore, TlsConfigError> {
    let mut roots = RootCertStore::empty();
    for certificate in CertificateDer::pem_slice_iter(pem) {
        let certificate = certificate.map_err(|e| TlsConfigError::BadCertificate(e.to_string()))?;
        roots.add(certificate).map_err(|e| TlsConfigError::BadCertificate(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(TlsConfigError::NoCertificates);
    }
    Ok(roots)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mozilla_roots_build() {
        let config = client_config(&TrustAnchors::Mozilla).unwrap();
        assert_eq!(config.alpn_protocols, vec![ALPN.to_vec()]);
    }

    #[test]
    fn empty_or_missing_ca_is_an_error() {
        assert!(matches!(
            client_config(&TrustAnchors::CaPem(b"nothing".to_vec())),
            Err(TlsConfigError::NoCertificates)
        ));
        let missing = TrustAnchors::CaFile(PathBuf::from("/nonexistent/ca.pem"));
        assert!(matches!(client_config(&missing), Err(TlsConfigError::Read { .. })));
    }
}
