//! Join messages (frame kind [`FrameKind::Handshake`](super::FrameKind::Handshake)).
//!
//! These carry only SRP-6a public values and proofs, in the clear inside TLS. Nothing in them is
//! secret, and everything that matters is bound by the key confirmation: M1 covers the session
//! identity, salt, A and B, and the key-wrap key is derived with the member id.
//!
//! | type | message     | direction        | fields after the type byte                    |
//! |------|-------------|------------------|-----------------------------------------------|
//! | 0x01 | `Hello`     | member → leader  | version u8, role u8                           |
//! | 0x02 | `Challenge` | leader → member  | group u8, salt [16], B [group bytes]          |
//! | 0x03 | `Proof`     | member → leader  | A [group bytes], M1 [20]                      |
//! | 0x04 | `Accept`    | leader → member  | M2 [20]                                       |
//! | 0x05 | `Reject`    | leader → member  | reason u8                                     |
//! | 0x06 | `KeyRequest`| member → leader  | (empty): resend my wrapped epoch keys         |
//!
//! `KeyRequest` is unauthenticated on purpose: a joined member that reconnected, or saw frames
//! of an epoch it lacks, asks for the current keys; the answer is wrapped under that member's own
//! key-wrap key, so only it can use the answer and a forged request costs one key wrap.

use crate::crypto::srp::{Group, PROOF_LEN, SALT_LEN};

use super::{Reader, VERSION, Writer};

/// The endpoint's part in the session, announced when joining and after.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum Role {
    /// A support provider (asks for capabilities).
    Provider,
    /// The customer, or the appliance agent: the only judge of consent over its machine.
    Customer,
}

impl Role {
    /// Wire byte.
    pub const fn to_byte(self) -> u8 {
        match self {
            Role::Provider => 1,
            Role::Customer => 2,
        }
    }

    /// Parses the wire byte.
    pub const fn from_byte(byte: u8) -> Option<Role> {
        match byte {
            1 => Some(Role::Provider),
            2 => Some(Role::Customer),
            _ => None,
        }
    }
}

/// Why the leader refused a join. Deliberately coarse.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum RejectReason {
    /// The key confirmation failed: wrong PIN (or a tampered exchange).
    BadProof,
    /// Too many failed attempts: the PIN is dead for this session.
    PinExpired,
    /// No room for another member, or the id is in use.
    SessionFull,
    /// The join did not follow the protocol (unsupported version, unexpected message).
    Protocol,
}

impl RejectReason {
    const fn to_byte(self) -> u8 {
        match self {
            RejectReason::BadProof => 1,
            RejectReason::PinExpired => 2,
            RejectReason::SessionFull => 3,
            RejectReason::Protocol => 4,
        }
    }

    const fn from_byte(byte: u8) -> Option<RejectReason> {
        match byte {
            1 => Some(RejectReason::BadProof),
            2 => Some(RejectReason::PinExpired),
            3 => Some(RejectReason::SessionFull),
            4 => Some(RejectReason::Protocol),
            _ => None,
        }
    }
}

/// A parsed join message, borrowing its big values from the frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HandshakeRepr<'a> {
    /// A member asks to join.
    Hello {
        /// Protocol version the member speaks.
        version: u8,
        /// What the member is.
        role: Role,
    },
    /// The leader's SRP group, salt and public value B.
    Challenge {
        /// SRP group.
        group: Group,
        /// Salt of the verifier.
        salt: &'a [u8; SALT_LEN],
        /// B, `group.byte_len()` bytes.
        server_public: &'a [u8],
    },
    /// The member's public value A and proof M1.
    Proof {
        /// A, `group.byte_len()` bytes.
        client_public: &'a [u8],
        /// M1.
        client_proof: &'a [u8; PROOF_LEN],
    },
    /// The leader's proof M2: the member now checks it and waits for its wrapped keys.
    Accept {
        /// M2.
        server_proof: &'a [u8; PROOF_LEN],
    },
    /// The join was refused.
    Reject {
        /// Why.
        reason: RejectReason,
    },
    /// A joined member asks the leader to send its wrapped epoch keys again.
    KeyRequest,
}

mod message_type {
    pub(super) const HELLO: u8 = 0x01;
    pub(super) const CHALLENGE: u8 = 0x02;
    pub(super) const PROOF: u8 = 0x03;
    pub(super) const ACCEPT: u8 = 0x04;
    pub(super) const REJECT: u8 = 0x05;
    pub(super) const KEY_REQUEST: u8 = 0x06;
}

impl<'a> HandshakeRepr<'a> {
    /// Parses a handshake body. `group` is the group the receiver expects for `Proof` (the
    /// leader's own); other messages carry or need none. Trailing bytes are an error.
    pub fn parse(body: &'a [u8], group: Option<Group>) -> Option<HandshakeRepr<'a>> {
        let mut reader = Reader::new(body);
        let repr = match reader.u8()? {
            message_type::HELLO => HandshakeRepr::Hello { version: reader.u8()?, role: Role::from_byte(reader.u8()?)? },
            message_type::CHALLENGE => {
                let group = Group::from_id(reader.u8()?)?;
                let salt = reader.take(SALT_LEN)?.try_into().ok()?;
                let server_public = reader.take(group.byte_len())?;
                HandshakeRepr::Challenge { group, salt, server_public }
            }
            message_type::PROOF => {
                let client_public = reader.take(group?.byte_len())?;
                let client_proof = reader.take(PROOF_LEN)?.try_into().ok()?;
                HandshakeRepr::Proof { client_public, client_proof }
            }
            message_type::ACCEPT => HandshakeRepr::Accept { server_proof: reader.take(PROOF_LEN)?.try_into().ok()? },
            message_type::REJECT => HandshakeRepr::Reject { reason: RejectReason::from_byte(reader.u8()?)? },
            message_type::KEY_REQUEST => HandshakeRepr::KeyRequest,
            _ => return None,
        };
        reader.is_empty().then_some(repr)
    }

    /// Writes the body into `out`; `None` if it does not fit.
    pub fn emit(&self, out: &mut [u8]) -> Option<usize> {
        let mut writer = Writer::new(out);
        match *self {
            HandshakeRepr::Hello { version, role } => {
                writer.u8(message_type::HELLO);
                writer.u8(version);
                writer.u8(role.to_byte());
            }
            HandshakeRepr::Challenge { group, salt, server_public } => {
                writer.u8(message_type::CHALLENGE);
                writer.u8(group.id());
                writer.put(salt);
                writer.put(server_public);
            }
            HandshakeRepr::Proof { client_public, client_proof } => {
                writer.u8(message_type::PROOF);
                writer.put(client_public);
                writer.put(client_proof);
            }
            HandshakeRepr::Accept { server_proof } => {
                writer.u8(message_type::ACCEPT);
                writer.put(server_proof);
            }
            HandshakeRepr::Reject { reason } => {
                writer.u8(message_type::REJECT);
                writer.u8(reason.to_byte());
            }
            HandshakeRepr::KeyRequest => writer.u8(message_type::KEY_REQUEST),
        }
        writer.finish()
    }

    /// The hello this engine sends.
    pub const fn hello(role: Role) -> HandshakeRepr<'static> {
        HandshakeRepr::Hello { version: VERSION, role }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_message_round_trips() {
        let salt = [7u8; SALT_LEN];
        let public = [3u8; 256];
        let proof = [9u8; PROOF_LEN];
        let group = Group::Rfc5054_2048;
        let messages = [
            HandshakeRepr::hello(Role::Customer),
            HandshakeRepr::Challenge { group, salt: &salt, server_public: &public },
            HandshakeRepr::Proof { client_public: &public, client_proof: &proof },
            HandshakeRepr::Accept { server_proof: &proof },
            HandshakeRepr::Reject { reason: RejectReason::PinExpired },
            HandshakeRepr::KeyRequest,
        ];
        for message in messages {
            let mut buf = [0u8; 400];
            let len = message.emit(&mut buf).unwrap();
            assert_eq!(HandshakeRepr::parse(&buf[..len], Some(group)), Some(message));
            if len > 1 {
                assert_eq!(HandshakeRepr::parse(&buf[..len - 1], Some(group)), None, "truncated {message:?}");
            }
            assert_eq!(HandshakeRepr::parse(&buf[..len + 1], Some(group)), None, "trailing byte {message:?}");
        }
    }

    #[test]
    fn proof_needs_the_leaders_group() {
        let mut buf = [0u8; 400];
        let len =
            HandshakeRepr::Proof { client_public: &[1; 256], client_proof: &[2; PROOF_LEN] }.emit(&mut buf).unwrap();
        assert_eq!(HandshakeRepr::parse(&buf[..len], None), None);
        assert_eq!(HandshakeRepr::parse(&buf[..len], Some(Group::Rfc5054_3072)), None);
    }

    #[test]
    fn unknown_group_and_role_are_refused() {
        assert_eq!(HandshakeRepr::parse(&[0x01, 1, 9], None), None);
        let mut challenge = [0u8; 2 + SALT_LEN + 256];
        challenge[0] = 0x02;
        challenge[1] = 1; // the 1024-bit test group is never accepted on the wire
        assert_eq!(HandshakeRepr::parse(&challenge, None), None);
    }
}
