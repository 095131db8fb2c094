//! The development PKI: one command makes every certificate and key a local fleet needs.
//!
//! `lifeline-relay pki init DIR --relay NAME... --san HOST...` writes into `DIR`:
//!
//! | file | what |
//! |---|---|
//! | `ca.pem`, `ca.key` | the development CA (the fleet CA and the endpoints' trust anchor) |
//! | `relay-NAME.pem`, `relay-NAME.key` | each relay's certificate: server (endpoints, mesh) and client (mesh), valid for `NAME` and every `--san` |
//! | `broker.pem`, `broker.key` | the broker's certificate (server and client), valid for `broker` and every `--san` |
//! | `ticket-signing.key` | the broker's Ed25519 ticket signing key (PKCS#8 PEM) |
//! | `ticket-verify.pem` | its public key (SPKI PEM), which relays verify tickets with |
//!
//! Private keys are written with mode 0600. Certificates are ECDSA P-256. This is for
//! development and tests: a production fleet uses its own CA and keeps the CA key offline.

use std::fmt;
use std::fs::OpenOptions;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use lifeline_ticket::TicketSigner;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};

/// The CA certificate's file name.
pub const CA_CERT: &str = "ca.pem";
/// The CA key's file name.
pub const CA_KEY: &str = "ca.key";
/// The ticket signing key's file name.
pub const TICKET_SIGNING_KEY: &str = "ticket-signing.key";
/// The ticket verification key's file name.
pub const TICKET_VERIFY_KEY: &str = "ticket-verify.pem";
/// The broker certificate's file name.
pub const BROKER_CERT: &str = "broker.pem";
/// The broker key's file name.
pub const BROKER_KEY: &str = "broker.key";
/// The SANs used when none are given.
pub const DEFAULT_SANS: [&str; 2] = ["localhost", "127.0.0.1"];

/// A relay certificate's file name.
pub fn relay_cert_file(name: &str) -> String {
    format!("relay-{name}.pem")
}

/// A relay key's file name.
pub fn relay_key_file(name: &str) -> String {
    format!("relay-{name}.key")
}

/// The development PKI could not be written.
#[derive(Debug)]
#[non_exhaustive]
pub enum PkiError {
    /// A file could not be written (or already exists).
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// A name or SAN is not usable.
    BadName(String),
    /// Certificate or key generation failed.
    Generate(String),
}

impl fmt::Display for PkiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PkiError::Io { path, error } => write!(f, "{}: {error}", path.display()),
            PkiError::BadName(message) => write!(f, "bad name: {message}"),
            PkiError::Generate(message) => write!(f, "generation failed: {message}"),
        }
    }
}

impl std::error::Error for PkiError {}

/// Creates the development PKI in `dir` (created if missing) for the given relay names, with
/// `sans` (DNS names or IP addresses) added to every relay and broker certificate. Refuses to
/// overwrite an existing file.
pub fn init(dir: &Path, relays: &[String], sans: &[String]) -> Result<(), PkiError> {
    for name in relays {
        if !lifeline_ticket::valid_relay_name(name) {
            return Err(PkiError::BadName(format!("relay {name:?}: use 1 to 64 of a-z 0-9 - . _")));
        }
    }
    std::fs::create_dir_all(dir).map_err(|error| PkiError::Io { path: dir.to_path_buf(), error })?;
    let existing = dir.join(CA_CERT);
    if existing.exists() {
        let error = std::io::Error::new(std::io::ErrorKind::AlreadyExists, "a PKI is already there");
        return Err(PkiError::Io { path: existing, error });
    }
    let generate = |error: rcgen::Error| PkiError::Generate(error.to_string());

    let ca_key = KeyPair::generate().map_err(generate)?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(generate)?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(DnType::CommonName, "Lifeline development CA");
    ca_params.key_usages =
        vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    let ca_cert = ca_params.self_signed(&ca_key).map_err(generate)?;
    write_file(&dir.join(CA_CERT), ca_cert.pem().as_bytes(), false)?;
    write_file(&dir.join(CA_KEY), ca_key.serialize_pem().as_bytes(), true)?;
    let issuer = Issuer::new(ca_params, ca_key);

    let mut leaves: Vec<(String, String, String)> =
        relays.iter().map(|name| (name.clone(), relay_cert_file(name), relay_key_file(name))).collect();
    leaves.push(("broker".to_owned(), BROKER_CERT.to_owned(), BROKER_KEY.to_owned()));
    for (name, cert_file, key_file) in leaves {
        let mut names = vec![name.clone()];
        names.extend(sans.iter().filter(|san| **san != name).cloned());
        let key = KeyPair::generate().map_err(generate)?;
        let mut params =
            CertificateParams::new(names).map_err(|e| PkiError::BadName(format!("{name} or a SAN: {e}")))?;
        params.distinguished_name.push(DnType::CommonName, name.as_str());
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(&key, &issuer).map_err(generate)?;
        write_file(&dir.join(cert_file), cert.pem().as_bytes(), false)?;
        write_file(&dir.join(key_file), key.serialize_pem().as_bytes(), true)?;
    }

    let signer = TicketSigner::generate().map_err(|e| PkiError::Generate(e.to_string()))?;
    let signing_pem = signer.to_pem().map_err(|e| PkiError::Generate(e.to_string()))?;
    let verify_pem = signer.verifier().to_pem().map_err(|e| PkiError::Generate(e.to_string()))?;
    write_file(&dir.join(TICKET_SIGNING_KEY), signing_pem.as_bytes(), true)?;
    write_file(&dir.join(TICKET_VERIFY_KEY), verify_pem.as_bytes(), false)?;
    Ok(())
}

/// Writes a new file (never overwrites); `secret` files get mode 0600 on Unix.
fn write_file(path: &Path, contents: &[u8], secret: bool) -> Result<(), PkiError> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(if secret { 0o600 } else { 0o644 });
    }
    #[cfg(not(unix))]
    let _ = secret;
    let io = |error| PkiError::Io { path: path.to_path_buf(), error };
    let mut file = options.open(path).map_err(io)?;
    file.write_all(contents).map_err(io)?;
    file.sync_all().map_err(io)
}
