//! Admission tickets: what lets an endpoint into a session's routing on a relay.
//!
//! The broker signs a ticket (Ed25519) when it creates a session or resolves one for a joining
//! customer; relays verify it with the broker's public key before routing a single frame. A
//! ticket grants a place in the routing of one session, with one role, on one home relay, until
//! it expires. It grants no key: session keys come from SRP between the endpoints.
//!
//! Until the broker exists, `lifeline-relay ticket mint` and the desktop app's dev mode sign
//! tickets with a development key made by `lifeline-relay pki init`.
//!
//! Encoding (big-endian):
//!
//! ```text
//! version u8 (1) | session u64 | role u8 (1 leader, 2 member) | expires u64 (Unix seconds)
//! | ticket id [16] | home relay length u8 | home relay (ASCII, 1..=64) | signature [64]
//! signature = Ed25519(key, "lifeline ticket v1" 0x00 | everything before the signature)
//! ```
#![forbid(unsafe_code)]

use std::fmt;

use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use rand_core::TryRng;

/// The encoding version this crate writes and reads.
pub const TICKET_VERSION: u8 = 1;
/// Longest home-relay name.
pub const MAX_RELAY_NAME_LEN: usize = 64;
/// Longest lifetime a verifier accepts (a ticket expiring later is refused as malformed).
pub const MAX_LIFETIME_SECS: u64 = 24 * 3600;
const DOMAIN: &[u8] = b"lifeline ticket v1\0";
const SIGNATURE_LEN: usize = 64;
const FIXED_LEN: usize = 1 + 8 + 1 + 8 + 16 + 1;

/// The part the ticket admits its holder to play in the session.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TicketRole {
    /// The session leader (member id 0).
    Leader,
    /// Any other member.
    Member,
}

/// A ticket's contents.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ticket {
    /// Session number.
    pub session: u64,
    /// Role.
    pub role: TicketRole,
    /// Name of the relay the session is homed on.
    pub home_relay: String,
    /// Expiry, Unix seconds.
    pub expires_unix: u64,
    /// Random id (for audit logs).
    pub id: [u8; 16],
}

/// Why a ticket was refused. Relays do not tell the endpoint which check failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TicketError {
    /// Not a well-formed ticket (length, version, role, name, lifetime).
    Malformed,
    /// The signature does not verify with the broker's key.
    BadSignature,
    /// Past its expiry.
    Expired,
}

impl fmt::Display for TicketError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TicketError::Malformed => "malformed ticket",
            TicketError::BadSignature => "ticket signature does not verify",
            TicketError::Expired => "ticket expired",
        })
    }
}

impl std::error::Error for TicketError {}

/// A key file could not be read.
#[derive(Debug)]
pub struct KeyError(String);

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid ticket key: {}", self.0)
    }
}

impl std::error::Error for KeyError {}

impl Ticket {
    /// A new ticket with a random id.
    pub fn new(session: u64, role: TicketRole, home_relay: &str, expires_unix: u64) -> Ticket {
        let mut id = [0u8; 16];
        // The OS generator failing is not recoverable; an all-zero id only weakens audit logs.
        let _ = getrandom::SysRng.try_fill_bytes(&mut id);
        Ticket { session, role, home_relay: home_relay.to_owned(), expires_unix, id }
    }

    fn encode_body(&self) -> Option<Vec<u8>> {
        if !valid_relay_name(&self.home_relay) {
            return None;
        }
        let mut body = Vec::with_capacity(FIXED_LEN + self.home_relay.len() + SIGNATURE_LEN);
        body.push(TICKET_VERSION);
        body.extend_from_slice(&self.session.to_be_bytes());
        body.push(match self.role {
            TicketRole::Leader => 1,
            TicketRole::Member => 2,
        });
        body.extend_from_slice(&self.expires_unix.to_be_bytes());
        body.extend_from_slice(&self.id);
        body.push(u8::try_from(self.home_relay.len()).ok()?);
        body.extend_from_slice(self.home_relay.as_bytes());
        Some(body)
    }

    /// Parses a ticket without checking its signature or expiry: for relays that only need to
    /// know where to forward before the home relay verifies. Use [`TicketVerifier::verify`]
    /// before trusting anything in it.
    pub fn parse_unverified(bytes: &[u8]) -> Result<Ticket, TicketError> {
        Self::split(bytes).map(|(ticket, _, _)| ticket)
    }

    fn split(bytes: &[u8]) -> Result<(Ticket, &[u8], &[u8]), TicketError> {
        let malformed = TicketError::Malformed;
        if bytes.len() < FIXED_LEN + 1 + SIGNATURE_LEN || bytes[0] != TICKET_VERSION {
            return Err(malformed);
        }
        let (body, signature) = bytes.split_at(bytes.len() - SIGNATURE_LEN);
        let session = u64::from_be_bytes(body[1..9].try_into().map_err(|_| malformed)?);
        let role = match body[9] {
            1 => TicketRole::Leader,
            2 => TicketRole::Member,
            _ => return Err(malformed),
        };
        let expires_unix = u64::from_be_bytes(body[10..18].try_into().map_err(|_| malformed)?);
        let id: [u8; 16] = body[18..34].try_into().map_err(|_| malformed)?;
        let name_len = usize::from(body[34]);
        let name = body.get(FIXED_LEN..).filter(|rest| rest.len() == name_len).ok_or(malformed)?;
        let home_relay = std::str::from_utf8(name).map_err(|_| malformed)?;
        if !valid_relay_name(home_relay) || session == 0 {
            return Err(malformed);
        }
        Ok((Ticket { session, role, home_relay: home_relay.to_owned(), expires_unix, id }, body, signature))
    }
}

/// Whether `name` can name a relay: 1 to 64 of `a-z 0-9 - . _`.
pub fn valid_relay_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_RELAY_NAME_LEN
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-._".contains(&b))
}

/// The broker's signing key.
pub struct TicketSigner {
    key: SigningKey,
}

impl fmt::Debug for TicketSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TicketSigner(..)")
    }
}

impl TicketSigner {
    /// A fresh key from the OS generator.
    pub fn generate() -> Result<TicketSigner, KeyError> {
        let mut seed = [0u8; 32];
        getrandom::SysRng.try_fill_bytes(&mut seed).map_err(|e| KeyError(format!("OS random generator: {e}")))?;
        let key = SigningKey::from_bytes(&seed);
        seed.fill(0);
        Ok(TicketSigner { key })
    }

    /// Reads a PKCS#8 PEM private key.
    pub fn from_pem(pem: &str) -> Result<TicketSigner, KeyError> {
        SigningKey::from_pkcs8_pem(pem).map(|key| TicketSigner { key }).map_err(|e| KeyError(e.to_string()))
    }

    /// The private key as PKCS#8 PEM (write it with owner-only permissions).
    pub fn to_pem(&self) -> Result<String, KeyError> {
        self.key.to_pkcs8_pem(Default::default()).map(|pem| pem.to_string()).map_err(|e| KeyError(e.to_string()))
    }

    /// The matching verifier.
    pub fn verifier(&self) -> TicketVerifier {
        TicketVerifier { key: self.key.verifying_key() }
    }

    /// Signs `ticket`; `None` if its relay name is invalid.
    pub fn mint(&self, ticket: &Ticket) -> Option<Vec<u8>> {
        let mut bytes = ticket.encode_body()?;
        let mut message = DOMAIN.to_vec();
        message.extend_from_slice(&bytes);
        let signature: Signature = self.key.sign(&message);
        bytes.extend_from_slice(&signature.to_bytes());
        Some(bytes)
    }
}

/// The broker's public key, as relays hold it.
#[derive(Clone, Debug)]
pub struct TicketVerifier {
    key: VerifyingKey,
}

impl TicketVerifier {
    /// Reads an SPKI PEM public key.
    pub fn from_pem(pem: &str) -> Result<TicketVerifier, KeyError> {
        VerifyingKey::from_public_key_pem(pem).map(|key| TicketVerifier { key }).map_err(|e| KeyError(e.to_string()))
    }

    /// The public key as SPKI PEM.
    pub fn to_pem(&self) -> Result<String, KeyError> {
        self.key.to_public_key_pem(Default::default()).map_err(|e| KeyError(e.to_string()))
    }

    /// Verifies a ticket's signature, then its expiry against `now_unix`.
    pub fn verify(&self, bytes: &[u8], now_unix: u64) -> Result<Ticket, TicketError> {
        let (ticket, body, signature) = Ticket::split(bytes)?;
        let signature = Signature::from_slice(signature).map_err(|_| TicketError::BadSignature)?;
        let mut message = DOMAIN.to_vec();
        message.extend_from_slice(body);
        self.key.verify(&message, &signature).map_err(|_| TicketError::BadSignature)?;
        if ticket.expires_unix <= now_unix {
            return Err(TicketError::Expired);
        }
        if ticket.expires_unix > now_unix.saturating_add(MAX_LIFETIME_SECS) {
            return Err(TicketError::Malformed);
        }
        Ok(ticket)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000;

    fn ticket() -> Ticket {
        Ticket::new(123_456_789, TicketRole::Member, "relay-a", NOW + 600)
    }

    #[test]
    fn minted_tickets_verify() {
        let signer = TicketSigner::generate().unwrap();
        let bytes = signer.mint(&ticket()).unwrap();
        let verified = signer.verifier().verify(&bytes, NOW).unwrap();
        assert_eq!(verified.session, 123_456_789);
        assert_eq!(verified.home_relay, "relay-a");
        assert_eq!(Ticket::parse_unverified(&bytes).unwrap(), verified);
    }

    #[test]
    fn any_changed_byte_is_refused() {
        let signer = TicketSigner::generate().unwrap();
        let bytes = signer.mint(&ticket()).unwrap();
        for index in 0..bytes.len() {
            let mut forged = bytes.clone();
            forged[index] ^= 0x01;
            assert!(signer.verifier().verify(&forged, NOW).is_err(), "byte {index}");
        }
    }

    #[test]
    fn another_key_is_refused() {
        let bytes = TicketSigner::generate().unwrap().mint(&ticket()).unwrap();
        let other = TicketSigner::generate().unwrap().verifier();
        assert_eq!(other.verify(&bytes, NOW), Err(TicketError::BadSignature));
    }

    #[test]
    fn expiry_and_lifetime_are_enforced() {
        let signer = TicketSigner::generate().unwrap();
        let bytes = signer.mint(&ticket()).unwrap();
        assert_eq!(signer.verifier().verify(&bytes, NOW + 600), Err(TicketError::Expired));
        let forever = signer.mint(&Ticket::new(1, TicketRole::Leader, "relay-a", NOW + MAX_LIFETIME_SECS + 1)).unwrap();
        assert_eq!(signer.verifier().verify(&forever, NOW), Err(TicketError::Malformed));
    }

    #[test]
    fn keys_round_trip_through_pem() {
        let signer = TicketSigner::generate().unwrap();
        let again = TicketSigner::from_pem(&signer.to_pem().unwrap()).unwrap();
        let verifier = TicketVerifier::from_pem(&signer.verifier().to_pem().unwrap()).unwrap();
        let bytes = again.mint(&ticket()).unwrap();
        assert!(verifier.verify(&bytes, NOW).is_ok());
        assert!(TicketSigner::from_pem("not a key").is_err());
    }

    #[test]
    fn bad_names_and_garbage_are_refused() {
        let signer = TicketSigner::generate().unwrap();
        assert!(signer.mint(&Ticket::new(1, TicketRole::Member, "Relay A", NOW + 60)).is_none());
        assert!(signer.mint(&Ticket::new(1, TicketRole::Member, &"a".repeat(65), NOW + 60)).is_none());
        for len in 0..120 {
            assert!(signer.verifier().verify(&vec![1u8; len], NOW).is_err());
        }
    }
}
