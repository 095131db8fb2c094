//! TLS 1.3 configurations (rustls with the `ring` provider only): the endpoint listener, and
//! the mesh link in both directions (mutual TLS with the fleet CA).

use std::path::Path;
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use crate::config::Config;

/// ALPN protocol of endpoint connections.
pub const ALPN_ENDPOINT: &[u8] = b"lifeline/1";
/// ALPN protocol of constrained endpoints (microcontrollers): `lifeline/1` with TLS records of
/// at most [`SMALL_RECORD_LIMIT`] plaintext bytes from the relay, so the endpoint's record
/// buffer shrinks from 16 KiB (PROTOCOL.md 2). rustls has no max_fragment_length extension.
pub const ALPN_ENDPOINT_SMALL_RECORDS: &[u8] = b"lifeline/1-small";
/// Largest record plaintext sent under [`ALPN_ENDPOINT_SMALL_RECORDS`].
pub const SMALL_RECORD_LIMIT: usize = 2048;
/// rustls counts the 5-byte record header in `max_fragment_size`.
const RECORD_HEADER_LEN: usize = 5;
/// ALPN protocol of mesh links.
pub const ALPN_MESH: &[u8] = b"lifeline-mesh/1";

/// The TLS configurations a relay uses.
#[derive(Clone, Debug)]
pub(crate) struct TlsSetup {
    pub(crate) endpoint: Arc<ServerConfig>,
    /// For clients that offer [`ALPN_ENDPOINT_SMALL_RECORDS`] (picked after the ClientHello).
    pub(crate) endpoint_small_records: Arc<ServerConfig>,
    pub(crate) mesh_server: Arc<ServerConfig>,
    pub(crate) mesh_client: Arc<ClientConfig>,
}

/// Reads the certificate, key and CA files named in `config`. Errors name the file.
pub(crate) fn load(config: &Config) -> Result<TlsSetup, String> {
    let chain = read_certs(&config.tls.cert)?;
    if config.mesh.is_some() && !chain.first().is_some_and(|leaf| certificate_names(leaf, &config.name)) {
        return Err(format!(
            "{}: the certificate is not valid for the relay name {:?}; mesh peers would refuse it",
            config.tls.cert.display(),
            config.name
        ));
    }
    let key = PrivateKeyDer::from_pem_file(&config.tls.key)
        .map_err(|error| format!("{}: no usable private key ({error})", config.tls.key.display()))?;
    let mut roots = RootCertStore::empty();
    for cert in read_certs(&config.tls.ca)? {
        roots.add(cert).map_err(|error| format!("{}: bad CA certificate ({error})", config.tls.ca.display()))?;
    }
    let roots = Arc::new(roots);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls_error = |what: &str, error: rustls::Error| format!("{what}: {error}");

    let mut endpoint = server_builder(&provider)
        .map_err(|e| tls_error("TLS setup", e))?
        .with_no_client_auth()
        .with_single_cert(chain.clone(), key.clone_key())
        .map_err(|e| tls_error(&config.tls.cert.display().to_string(), e))?;
    endpoint.alpn_protocols = vec![ALPN_ENDPOINT.to_vec()];
    let mut endpoint_small_records = endpoint.clone();
    endpoint_small_records.alpn_protocols = vec![ALPN_ENDPOINT_SMALL_RECORDS.to_vec()];
    endpoint_small_records.max_fragment_size = Some(SMALL_RECORD_LIMIT + RECORD_HEADER_LEN);
    // A microcontroller does not resume TLS sessions: no tickets to parse.
    endpoint_small_records.send_tls13_tickets = 0;

    let client_verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
        .build()
        .map_err(|e| format!("{}: {e}", config.tls.ca.display()))?;
    let mut mesh_server = server_builder(&provider)
        .map_err(|e| tls_error("TLS setup", e))?
        .with_client_cert_verifier(client_verifier)
        .with_single_cert(chain.clone(), key.clone_key())
        .map_err(|e| tls_error(&config.tls.cert.display().to_string(), e))?;
    mesh_server.alpn_protocols = vec![ALPN_MESH.to_vec()];

    let server_verifier = WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
        .build()
        .map_err(|e| format!("{}: {e}", config.tls.ca.display()))?;
    let mut mesh_client = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| tls_error("TLS setup", e))?
        .with_webpki_verifier(server_verifier)
        .with_client_auth_cert(chain, key)
        .map_err(|e| tls_error(&config.tls.cert.display().to_string(), e))?;
    mesh_client.alpn_protocols = vec![ALPN_MESH.to_vec()];

    Ok(TlsSetup {
        endpoint: Arc::new(endpoint),
        endpoint_small_records: Arc::new(endpoint_small_records),
        mesh_server: Arc::new(mesh_server),
        mesh_client: Arc::new(mesh_client),
    })
}

fn server_builder(
    provider: &Arc<CryptoProvider>,
) -> Result<rustls::ConfigBuilder<ServerConfig, rustls::WantsVerifier>, rustls::Error> {
    ServerConfig::builder_with_provider(provider.clone()).with_protocol_versions(&[&rustls::version::TLS13])
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|error| format!("{}: cannot read certificates ({error})", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate in the file", path.display()));
    }
    Ok(certs)
}

/// Whether `cert` (a peer's end-entity certificate, already chain-verified by rustls) is valid
/// for the relay name `name`.
pub(crate) fn certificate_names(cert: &CertificateDer<'_>, name: &str) -> bool {
    let Ok(server_name) = ServerName::try_from(name) else { return false };
    webpki::EndEntityCert::try_from(cert).is_ok_and(|cert| cert.verify_is_valid_for_subject_name(&server_name).is_ok())
}
