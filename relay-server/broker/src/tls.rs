//! TLS 1.3 for the broker (rustls, `ring` provider only): a server certificate for everyone, and
//! an optional client certificate that must chain to the fleet CA when presented (relays).

use std::path::Path;
use std::sync::Arc;

use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use crate::config::TlsFiles;

/// The server configuration: TLS 1.3, ALPN `http/1.1`, client certificates optional but
/// verified against the fleet CA when offered.
pub fn server_config(files: &TlsFiles) -> Result<Arc<ServerConfig>, String> {
    let chain = read_certs(&files.cert)?;
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| format!("{}: no usable private key ({e})", files.key.display()))?;
    let roots = Arc::new(roots(&files.ca)?);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider.clone())
        .allow_unauthenticated()
        .build()
        .map_err(|e| format!("{}: {e}", files.ca.display()))?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| format!("TLS setup: {e}"))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| format!("{}: {e}", files.cert.display()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The certificates in a PEM file, as a root store.
pub fn roots(path: &Path) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    for cert in read_certs(path)? {
        roots.add(cert).map_err(|e| format!("{}: bad CA certificate ({e})", path.display()))?;
    }
    Ok(roots)
}

/// Every certificate in a PEM file (at least one).
pub fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{}: cannot read certificates ({e})", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate in the file", path.display()));
    }
    Ok(certs)
}

/// Whether `cert` (DER, already chain-verified) is valid for the DNS name `name`.
pub(crate) fn certificate_names(cert: &[u8], name: &str) -> bool {
    let Ok(server_name) = ServerName::try_from(name) else { return false };
    let der = CertificateDer::from(cert);
    webpki::EndEntityCert::try_from(&der).is_ok_and(|cert| cert.verify_is_valid_for_subject_name(&server_name).is_ok())
}
