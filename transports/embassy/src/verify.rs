//! The relay's identity, checked against the **fleet CA's public key** (P-256) the device was
//! provisioned with, by a small X.509 reader of our own instead of a general DER/X.509 library
//! (which cost about 24 KiB of flash; `docs/firmware.md`, "Footprint").
//!
//! What is checked, as before with embedded-tls's `rustpki` verifier, and nothing less:
//!
//! 1. the relay's certificate (the first of the chain it sends) is signed with ECDSA P-256 /
//!    SHA-256 by one of the pinned CA keys (a fleet CA signs relay certificates directly; the
//!    rest of the chain, if any, is ignored: the pinned key is the trust anchor);
//! 2. its subject alternative names contain the relay name the device dialled (DNS name, exact,
//!    ASCII case-insensitive; no wildcards, no common-name fallback: stricter than before);
//! 3. its key is P-256, and the relay's `CertificateVerify` (ECDSA P-256 / SHA-256 over the
//!    handshake transcript) verifies with it: the relay holds the certificate's private key.
//!
//! Validity dates are not checked: the board has no trusted clock (as before). Keys are pinned
//! as a list so that an OEM can ship the next CA key before a rotation (`docs/oem-guide.md`).
//!
//! Every reader here takes untrusted bytes: lengths are checked before use, nothing indexes
//! without `get`, and any malformed input is `InvalidCertificate`/`InvalidSignature`.

use embedded_tls::{
    Aes128GcmSha256, CertificateEntryRef, CertificateRef, CertificateVerifyRef, SignatureScheme, TlsError, TlsVerifier,
};
use heapless::String;
use p256::ecdsa::signature::Verifier as _;
use p256::ecdsa::{Signature, VerifyingKey};
use sha2::{Digest as _, Sha256};

/// Bytes of an uncompressed SEC1 P-256 public key (`04 || x || y`).
pub const CA_KEY_LEN: usize = 65;

/// A fleet CA's P-256 public key: the trust anchor the relays' certificates must be signed with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CaKey([u8; CA_KEY_LEN]);

impl CaKey {
    /// The key from its uncompressed SEC1 encoding (65 bytes starting `04`), if it is a point
    /// on P-256.
    pub fn from_sec1(bytes: &[u8]) -> Option<CaKey> {
        let key: [u8; CA_KEY_LEN] = bytes.try_into().ok()?;
        (key[0] == 0x04 && VerifyingKey::from_sec1_bytes(&key).is_ok()).then_some(CaKey(key))
    }

    /// The key of a CA certificate (DER), for provisioning from the certificate as distributed.
    /// Nothing else of the certificate is used or kept.
    pub fn from_certificate(der: &[u8]) -> Option<CaKey> {
        CaKey::from_sec1(&parse_certificate(der)?.public_key)
    }

    /// What provisioning gives: either the key itself (65 SEC1 bytes) or the CA certificate
    /// (DER) it is taken from.
    pub fn from_key_or_certificate(bytes: &[u8]) -> Option<CaKey> {
        CaKey::from_sec1(bytes).or_else(|| CaKey::from_certificate(bytes))
    }

    /// The SEC1 bytes.
    pub fn as_bytes(&self) -> &[u8; CA_KEY_LEN] {
        &self.0
    }
}

/// embedded-tls's verifier hook: the certificate check (1, 2) when the relay's certificate
/// arrives, the signature check (3) when its `CertificateVerify` does.
pub(crate) struct PinnedCaVerifier<'a> {
    ca_keys: &'a [CaKey],
    host: String<64>,
    /// The relay certificate's key and the transcript hash up to its certificate, between the
    /// two checks.
    pending: Option<([u8; CA_KEY_LEN], Sha256)>,
}

impl<'a> PinnedCaVerifier<'a> {
    pub(crate) fn new(ca_keys: &'a [CaKey]) -> PinnedCaVerifier<'a> {
        PinnedCaVerifier { ca_keys, host: String::new(), pending: None }
    }
}

impl TlsVerifier<Aes128GcmSha256> for PinnedCaVerifier<'_> {
    fn set_hostname_verification(&mut self, hostname: &str) -> Result<(), TlsError> {
        self.host = String::try_from(hostname).map_err(|_| TlsError::InsufficientSpace)?;
        Ok(())
    }

    fn verify_certificate(&mut self, transcript: &Sha256, chain: CertificateRef<'_>) -> Result<(), TlsError> {
        let Some(CertificateEntryRef::X509(leaf)) = chain.entries.first() else {
            return Err(TlsError::InvalidCertificate);
        };
        let key = check_relay_certificate(leaf, self.ca_keys, &self.host).ok_or(TlsError::InvalidCertificate)?;
        self.pending = Some((key, transcript.clone()));
        Ok(())
    }

    fn verify_signature(&mut self, verify: CertificateVerifyRef<'_>) -> Result<(), TlsError> {
        let Some((key, transcript)) = self.pending.take() else { return Err(TlsError::InvalidSignature) };
        if verify.signature_scheme != SignatureScheme::EcdsaSecp256r1Sha256 {
            return Err(TlsError::InvalidSignature);
        }
        // RFC 8446 4.4.3: 64 spaces, the context string, a zero byte, the transcript hash.
        let mut message = [0x20u8; 64 + 34 + 32];
        message[64..98].copy_from_slice(b"TLS 1.3, server CertificateVerify\x00");
        message[98..].copy_from_slice(&transcript.finalize());
        verify_p256(&key, &message, verify.signature).then_some(()).ok_or(TlsError::InvalidSignature)
    }
}

/// The checks (1) and (2) on a relay certificate: its public key if they pass.
pub(crate) fn check_relay_certificate(der: &[u8], ca_keys: &[CaKey], host: &str) -> Option<[u8; CA_KEY_LEN]> {
    let certificate = parse_certificate(der)?;
    let signed = ca_keys.iter().any(|ca| verify_p256(&ca.0, certificate.tbs, certificate.signature));
    (signed && !host.is_empty() && certificate.has_dns_name(host)).then_some(certificate.public_key)
}

/// The parse alone, with no signature check (for the fuzz target only): the subject's key bytes
/// and whether the subject alternative names contain `host`.
#[cfg(feature = "fuzzing")]
pub(crate) fn read_certificate(der: &[u8], host: &str) -> Option<([u8; CA_KEY_LEN], bool)> {
    let certificate = parse_certificate(der)?;
    Some((certificate.public_key, certificate.has_dns_name(host)))
}

/// Whether `signature` (DER `ECDSA-Sig-Value`) is `key`'s ECDSA P-256 / SHA-256 over `message`.
pub(crate) fn verify_p256(key: &[u8; CA_KEY_LEN], message: &[u8], signature: &[u8]) -> bool {
    let (Ok(key), Some(signature)) = (VerifyingKey::from_sec1_bytes(key), ecdsa_signature(signature)) else {
        return false;
    };
    key.verify(message, &signature).is_ok()
}

/// What the checks need of a certificate; the slices borrow from its DER.
struct ParsedCertificate<'a> {
    /// The whole `tbsCertificate` element: the signed bytes.
    tbs: &'a [u8],
    /// The signature (DER `ECDSA-Sig-Value`).
    signature: &'a [u8],
    /// The subject's P-256 key.
    public_key: [u8; CA_KEY_LEN],
    /// The contents of the subjectAltName extension's `GeneralNames`, if present.
    alt_names: Option<&'a [u8]>,
}

mod tag {
    pub(super) const BOOLEAN: u8 = 0x01;
    pub(super) const INTEGER: u8 = 0x02;
    pub(super) const BIT_STRING: u8 = 0x03;
    pub(super) const OCTET_STRING: u8 = 0x04;
    pub(super) const OID: u8 = 0x06;
    pub(super) const SEQUENCE: u8 = 0x30;
    pub(super) const VERSION: u8 = 0xA0;
    pub(super) const ISSUER_UID: u8 = 0x81;
    pub(super) const SUBJECT_UID: u8 = 0x82;
    pub(super) const EXTENSIONS: u8 = 0xA3;
    /// `GeneralName` choice `dNSName` (`[2] IMPLICIT IA5String`).
    pub(super) const DNS_NAME: u8 = 0x82;
}

/// OID contents (after tag and length).
mod oid {
    /// ecdsa-with-SHA256 (1.2.840.10045.4.3.2).
    pub(super) const ECDSA_SHA256: &[u8] = &[0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x04, 0x03, 0x02];
    /// id-ecPublicKey (1.2.840.10045.2.1).
    pub(super) const EC_PUBLIC_KEY: &[u8] = &[0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x02, 0x01];
    /// prime256v1 (1.2.840.10045.3.1.7).
    pub(super) const P256: &[u8] = &[0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x03, 0x01, 0x07];
    /// subjectAltName (2.5.29.17).
    pub(super) const SUBJECT_ALT_NAME: &[u8] = &[0x55, 0x1D, 0x11];
}

/// Parses the parts of an X.509 v3 certificate the checks use; `None` for anything else
/// (another key type or signature algorithm, malformed DER, trailing bytes).
fn parse_certificate(der: &[u8]) -> Option<ParsedCertificate<'_>> {
    let mut outer = Der::new(der);
    let mut certificate = outer.inner(tag::SEQUENCE)?;
    outer.finish()?;

    let tbs = certificate.element(tag::SEQUENCE)?;
    let mut algorithm = certificate.inner(tag::SEQUENCE)?;
    algorithm.expect_oid(oid::ECDSA_SHA256)?;
    algorithm.finish()?;
    let signature = bit_string(certificate.value(tag::BIT_STRING)?)?;
    certificate.finish()?;

    let mut fields = Der::new(tbs).inner(tag::SEQUENCE)?;
    if fields.peek() == Some(tag::VERSION) {
        fields.value(tag::VERSION)?;
    }
    fields.value(tag::INTEGER)?; // serial number
    fields.value(tag::SEQUENCE)?; // signature algorithm (repeated; the outer one is checked)
    fields.value(tag::SEQUENCE)?; // issuer
    fields.value(tag::SEQUENCE)?; // validity (no clock: not checked)
    fields.value(tag::SEQUENCE)?; // subject
    let mut key_info = fields.inner(tag::SEQUENCE)?;
    let mut key_algorithm = key_info.inner(tag::SEQUENCE)?;
    key_algorithm.expect_oid(oid::EC_PUBLIC_KEY)?;
    key_algorithm.expect_oid(oid::P256)?;
    key_algorithm.finish()?;
    let public_key = bit_string(key_info.value(tag::BIT_STRING)?)?.try_into().ok()?;
    key_info.finish()?;
    for optional in [tag::ISSUER_UID, tag::SUBJECT_UID] {
        if fields.peek() == Some(optional) {
            fields.value(optional)?;
        }
    }
    let mut alt_names = None;
    if fields.peek() == Some(tag::EXTENSIONS) {
        let mut extensions = Der::new(fields.value(tag::EXTENSIONS)?).inner(tag::SEQUENCE)?;
        while !extensions.is_empty() {
            let mut extension = extensions.inner(tag::SEQUENCE)?;
            let id = extension.value(tag::OID)?;
            if extension.peek() == Some(tag::BOOLEAN) {
                extension.value(tag::BOOLEAN)?; // critical
            }
            let value = extension.value(tag::OCTET_STRING)?;
            extension.finish()?;
            if id == oid::SUBJECT_ALT_NAME {
                if alt_names.is_some() {
                    return None; // an extension appears at most once (RFC 5280 4.2)
                }
                let mut names = Der::new(value);
                alt_names = Some(names.value(tag::SEQUENCE)?);
                names.finish()?;
            }
        }
    }
    fields.finish()?;
    Some(ParsedCertificate { tbs, signature, public_key, alt_names })
}

impl ParsedCertificate<'_> {
    fn has_dns_name(&self, host: &str) -> bool {
        let mut names = Der::new(self.alt_names.unwrap_or_default());
        while let Some((name_tag, name)) = names.any() {
            if name_tag == tag::DNS_NAME && name.eq_ignore_ascii_case(host.as_bytes()) {
                return true;
            }
        }
        false
    }
}

/// The contents of a BIT STRING with no unused bits.
fn bit_string(contents: &[u8]) -> Option<&[u8]> {
    match contents.split_first()? {
        (0, bits) => Some(bits),
        _ => None,
    }
}

/// A DER `ECDSA-Sig-Value` (`SEQUENCE { r INTEGER, s INTEGER }`) as a signature.
fn ecdsa_signature(der: &[u8]) -> Option<Signature> {
    let mut outer = Der::new(der);
    let mut pair = outer.inner(tag::SEQUENCE)?;
    outer.finish()?;
    let mut fixed = [0u8; 64];
    for half in fixed.chunks_exact_mut(32) {
        let integer = pair.value(tag::INTEGER)?;
        // Positive and minimal: a leading zero only before a byte with its top bit set.
        let digits = match integer {
            [0, rest @ ..] if rest.first().is_some_and(|b| b & 0x80 != 0) => rest,
            [first, ..] if first & 0x80 == 0 => integer,
            _ => return None,
        };
        let start = half.len().checked_sub(digits.len())?;
        half.get_mut(start..)?.copy_from_slice(digits);
    }
    pair.finish()?;
    // Rejects r or s of zero or not below the group order.
    Signature::from_slice(&fixed).ok()
}

/// A reader of DER elements (single-byte tags, definite lengths up to 64 KiB).
struct Der<'a> {
    rest: &'a [u8],
}

impl<'a> Der<'a> {
    fn new(bytes: &'a [u8]) -> Der<'a> {
        Der { rest: bytes }
    }

    fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    fn peek(&self) -> Option<u8> {
        self.rest.first().copied()
    }

    /// The next element: tag, contents and the whole element.
    fn next(&mut self) -> Option<(u8, &'a [u8], &'a [u8])> {
        let (&element_tag, after_tag) = self.rest.split_first()?;
        if element_tag & 0x1F == 0x1F {
            return None; // multi-byte tags: nothing a certificate here needs
        }
        let (&first, after_length) = after_tag.split_first()?;
        let (len, header) = match first {
            0..=0x7F => (usize::from(first), 2usize),
            0x81 => (usize::from(*after_length.first().filter(|&&len| len >= 0x80)?), 3),
            0x82 => {
                let len = usize::from(u16::from_be_bytes([*after_length.first()?, *after_length.get(1)?]));
                (Some(len).filter(|&len| len >= 0x100)?, 4)
            }
            _ => return None,
        };
        let end = header.checked_add(len)?;
        let element = self.rest.get(..end)?;
        let contents = element.get(header..)?;
        self.rest = self.rest.get(end..)?;
        Some((element_tag, contents, element))
    }

    /// The next element of any tag: tag and contents.
    fn any(&mut self) -> Option<(u8, &'a [u8])> {
        self.next().map(|(element_tag, contents, _)| (element_tag, contents))
    }

    /// The contents of the next element, which must have tag `expected`.
    fn value(&mut self, expected: u8) -> Option<&'a [u8]> {
        let (element_tag, contents, _) = self.next()?;
        (element_tag == expected).then_some(contents)
    }

    /// The whole next element (tag and length included), which must have tag `expected`.
    fn element(&mut self, expected: u8) -> Option<&'a [u8]> {
        let (element_tag, _, element) = self.next()?;
        (element_tag == expected).then_some(element)
    }

    /// A reader over the contents of the next element, which must have tag `expected`.
    fn inner(&mut self, expected: u8) -> Option<Der<'a>> {
        self.value(expected).map(Der::new)
    }

    fn expect_oid(&mut self, expected: &[u8]) -> Option<()> {
        (self.value(tag::OID)? == expected).then_some(())
    }

    /// `Some` if every byte was read.
    fn finish(&self) -> Option<()> {
        self.is_empty().then_some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Made with openssl (P-256): a fleet CA, and a relay certificate it signed with the names
    // relay-a, localhost and 127.0.0.1; `msg.sig` is the relay key's signature over `msg.txt`.
    const CA: &[u8] = include_bytes!("testdata/ca.der");
    const RELAY: &[u8] = include_bytes!("testdata/relay.der");
    const MESSAGE: &[u8] = include_bytes!("testdata/msg.txt");
    const MESSAGE_SIGNATURE: &[u8] = include_bytes!("testdata/msg.sig");
    const OTHER_KEY: &str = "043fa7a30a9482013168c0d295625ca31b7af16dfe55498c3ac9ace92e77ecbc730b15882db2942112df3e14ad2b992977e18b0ca13c29071a5bee16f26f3733bf";

    fn key(hex: &str) -> CaKey {
        let mut bytes = [0u8; CA_KEY_LEN];
        for (byte, pair) in bytes.iter_mut().zip(hex.as_bytes().chunks(2)) {
            *byte = u8::from_str_radix(core::str::from_utf8(pair).unwrap(), 16).unwrap();
        }
        CaKey::from_sec1(&bytes).unwrap()
    }

    #[test]
    fn a_relay_certificate_signed_by_the_pinned_key_with_the_name_passes() {
        let ca = CaKey::from_certificate(CA).unwrap();
        assert!(check_relay_certificate(RELAY, &[ca], "localhost").is_some());
        assert!(check_relay_certificate(RELAY, &[ca], "RELAY-A").is_some());
        // Rotation: the next CA key listed first does not hide the current one.
        assert!(check_relay_certificate(RELAY, &[key(OTHER_KEY), ca], "relay-a").is_some());
        // The relay's own key comes out, and signs what the relay says it signed.
        let relay_key = check_relay_certificate(RELAY, &[ca], "localhost").unwrap();
        assert!(verify_p256(&relay_key, MESSAGE, MESSAGE_SIGNATURE));
        assert!(!verify_p256(&relay_key, b"another message", MESSAGE_SIGNATURE));
        assert!(!verify_p256(ca.as_bytes(), MESSAGE, MESSAGE_SIGNATURE), "signed by the relay, not the CA");
    }

    #[test]
    fn another_ca_or_another_name_is_refused() {
        let ca = CaKey::from_certificate(CA).unwrap();
        assert!(check_relay_certificate(RELAY, &[key(OTHER_KEY)], "localhost").is_none());
        assert!(check_relay_certificate(RELAY, &[], "localhost").is_none());
        for host in ["relay-b", "localhost.", "local", "", "127.0.0.1", "*"] {
            assert!(check_relay_certificate(RELAY, &[ca], host).is_none(), "{host}");
        }
        // The CA's own certificate is self-signed but carries no relay name.
        assert!(check_relay_certificate(CA, &[ca], "localhost").is_none());
    }

    #[test]
    fn any_changed_byte_of_the_certificate_is_refused() {
        let ca = CaKey::from_certificate(CA).unwrap();
        let mut copy = [0u8; 1024];
        let copy = &mut copy[..RELAY.len()];
        for index in 0..RELAY.len() {
            copy.copy_from_slice(RELAY);
            copy[index] ^= 0x01;
            assert!(check_relay_certificate(copy, &[ca], "localhost").is_none(), "byte {index}");
        }
    }

    #[test]
    fn truncated_or_hostile_input_never_panics() {
        let ca = CaKey::from_certificate(CA).unwrap();
        for len in 0..RELAY.len() {
            assert!(check_relay_certificate(&RELAY[..len], &[ca], "localhost").is_none());
            assert!(CaKey::from_certificate(&CA[..len.min(CA.len())]).is_none() || len >= CA.len());
        }
        for hostile in
            [&[0x30, 0x84, 0xFF, 0xFF, 0xFF, 0xFF][..], &[0x30, 0x82, 0x00, 0x05], &[0x30, 0x81, 0x05], &[0x1F, 0]]
        {
            assert!(parse_certificate(hostile).is_none());
            assert!(ecdsa_signature(hostile).is_none());
        }
        // Signatures: zero, over-long and negative integers are refused.
        assert!(ecdsa_signature(&[0x30, 0x06, 0x02, 0x01, 0x00, 0x02, 0x01, 0x01]).is_none());
        assert!(ecdsa_signature(&[0x30, 0x06, 0x02, 0x01, 0x80, 0x02, 0x01, 0x01]).is_none());
        let mut long = [0u8; 2 + 2 + 33 + 3];
        long[..4].copy_from_slice(&[0x30, 38, 0x02, 33]);
        long[4..37].fill(0x11);
        long[37..].copy_from_slice(&[0x02, 0x01, 0x01]);
        assert!(ecdsa_signature(&long).is_none());
        assert!(CaKey::from_sec1(&[0x04; CA_KEY_LEN]).is_none(), "not a curve point");
    }

    #[test]
    fn random_mutations_never_panic_and_never_pass() {
        // A fuzz-style sweep without a fuzzer (this crate is bare-metal): 5 000 certificates with
        // 1 to 4 random bytes replaced, cut or lengths bent, from a fixed xorshift seed.
        let ca = CaKey::from_certificate(CA).unwrap();
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut copy = [0u8; 1024];
        for _ in 0..5_000 {
            let len = RELAY.len() - (next() % 3 == 0) as usize * (next() as usize % RELAY.len());
            copy[..len].copy_from_slice(&RELAY[..len]);
            let mutations = 1 + next() % 4;
            for _ in 0..mutations {
                let at = next() as usize % len.max(1);
                copy[at] = match next() % 4 {
                    0 => 0x80 | (next() as u8 & 0x03), // long-form length bytes
                    1 => 0xFF,
                    2 => 0x00,
                    _ => next() as u8,
                };
            }
            let result = check_relay_certificate(&copy[..len], &[ca], "localhost");
            assert!(result.is_none() || copy[..len] == *RELAY);
        }
    }
}
