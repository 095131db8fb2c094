//! What travels inside protected frames: the content types of application data and the
//! session-control messages.
//!
//! The plaintext of every protected frame is `content type u8 | flags u8 | payload`. Flag bit 0
//! means the payload is an LZ4 block; every other flag bit must be zero.
//!
//! Session-control messages (frame kind `SecureControl`), payload after the content type:
//!
//! | type | message             | sender            | payload                                     |
//! |------|---------------------|-------------------|---------------------------------------------|
//! | 0x01 | `Announce`          | every member      | role u8, name length u8 (≤ 32), UTF-8 name, |
//! |      |                     |                   | optional receive limit u16 (1024..16383)    |
//! | 0x02 | `Roster`            | leader            | count u8 (≤ 64), member ids [count]         |
//! | 0x03 | `CapabilityRequest` | provider          | capability u8                               |
//! | 0x04 | `ConsentState`      | customer          | granted set u8, pending set u8              |
//! | 0x05 | `Leave`             | leaving member    | (empty)                                     |
//! | 0x06 | `Close`             | leader / customer | reason u8                                   |
//! | 0x07 | `Ping`              | anyone            | (empty)                                     |
//! | 0x08 | `RekeyRequest`      | member            | (empty)                                     |

use heapless::{String, Vec};

use super::handshake::Role;
use super::{MAX_PAYLOAD_LEN, MIN_RECEIVE_LIMIT, MemberId, Reader, Writer};
use crate::consent::{Capability, CapabilitySet};

/// Longest display name a member can announce, in bytes.
pub const MAX_NAME_LEN: usize = 32;
/// Most ids a roster can list (bounds the parser whatever the session's capacity).
pub const MAX_ROSTER_LEN: usize = 64;
/// Flag bit: the payload is compressed (LZ4 block format).
pub const FLAG_COMPRESSED: u8 = 0x01;

/// The kind of application data in a `SecureData` frame, and the capability it needs. The
/// payload formats of `File`, `Diagnostics` and `Console` are in [`crate::app`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum ContentType {
    /// Text chat: needs no capability, never compressed.
    Chat,
    /// Screen updates: need [`Capability::ViewScreen`].
    Screen,
    /// Mouse and keyboard events: need [`Capability::RemoteControl`], and no pending prompt.
    Input,
    /// File transfer chunks and control: need [`Capability::FileTransfer`].
    File,
    /// Diagnostic queries and reports: need [`Capability::Diagnostics`].
    Diagnostics,
    /// Restricted remote console (appliances): needs [`Capability::RemoteConsole`].
    Console,
}

impl ContentType {
    /// Wire byte.
    pub const fn to_byte(self) -> u8 {
        match self {
            ContentType::Chat => 0x01,
            ContentType::Screen => 0x02,
            ContentType::Input => 0x03,
            ContentType::File => 0x04,
            ContentType::Diagnostics => 0x05,
            ContentType::Console => 0x06,
        }
    }

    /// Parses the wire byte.
    pub const fn from_byte(byte: u8) -> Option<ContentType> {
        match byte {
            0x01 => Some(ContentType::Chat),
            0x02 => Some(ContentType::Screen),
            0x03 => Some(ContentType::Input),
            0x04 => Some(ContentType::File),
            0x05 => Some(ContentType::Diagnostics),
            0x06 => Some(ContentType::Console),
            _ => None,
        }
    }

    /// The capability the customer must have granted for this content to cross its endpoint,
    /// in either direction.
    pub const fn required_capability(self) -> Option<Capability> {
        match self {
            ContentType::Chat => None,
            ContentType::Screen => Some(Capability::ViewScreen),
            ContentType::Input => Some(Capability::RemoteControl),
            ContentType::File => Some(Capability::FileTransfer),
            ContentType::Diagnostics => Some(Capability::Diagnostics),
            ContentType::Console => Some(Capability::RemoteConsole),
        }
    }

    /// Whether the engine compresses this content before encryption (when that shrinks it).
    ///
    /// Only bulk content whose bytes an outsider cannot choose: files, diagnostics and console
    /// output. Chat and input are short and typed by people, so their lengths would leak more
    /// through compression than they save; screen updates come already compressed by their
    /// encoder. This is a fixed protocol policy, not a setting.
    pub const fn compressible(self) -> bool {
        matches!(self, ContentType::File | ContentType::Diagnostics | ContentType::Console)
    }
}

/// Why a session was closed, as carried by `Close`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum CloseReason {
    /// A person ended it.
    Ended,
    /// The leader removed this member.
    Removed,
    /// Ended for a reason the sender did not give.
    Other,
}

impl CloseReason {
    const fn to_byte(self) -> u8 {
        match self {
            CloseReason::Ended => 1,
            CloseReason::Removed => 2,
            CloseReason::Other => 0,
        }
    }

    const fn from_byte(byte: u8) -> CloseReason {
        match byte {
            1 => CloseReason::Ended,
            2 => CloseReason::Removed,
            _ => CloseReason::Other,
        }
    }
}

/// A parsed session-control message.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ControlRepr {
    /// The sender's role and display name.
    Announce {
        /// Provider or customer.
        role: Role,
        /// Display name (UTF-8, at most [`MAX_NAME_LEN`] bytes).
        name: String<MAX_NAME_LEN>,
        /// The largest payload the sender accepts in one frame, if it is below
        /// [`MAX_PAYLOAD_LEN`] (a constrained device): `MIN_RECEIVE_LIMIT..MAX_PAYLOAD_LEN`.
        /// Members send it nothing larger. `None` (absent on the wire): no limit.
        receive_limit: Option<u16>,
    },
    /// The leader's list of current members (itself included).
    Roster {
        /// Member ids.
        members: Vec<MemberId, MAX_ROSTER_LEN>,
    },
    /// A provider asks the customer for a capability.
    CapabilityRequest {
        /// What is asked for.
        capability: Capability,
    },
    /// The customer's consent state, for display on the other endpoints. Informational only: it
    /// never changes what the receiver itself has granted.
    ConsentState {
        /// Granted capabilities.
        granted: CapabilitySet,
        /// Capabilities with a prompt open.
        pending: CapabilitySet,
    },
    /// The sender leaves the session.
    Leave,
    /// The sender ends the session for everyone.
    Close {
        /// Why.
        reason: CloseReason,
    },
    /// Keepalive.
    Ping,
    /// A member's send counter nears the key-usage limit: the leader should rekey.
    RekeyRequest,
}

mod message_type {
    pub(super) const ANNOUNCE: u8 = 0x01;
    pub(super) const ROSTER: u8 = 0x02;
    pub(super) const CAPABILITY_REQUEST: u8 = 0x03;
    pub(super) const CONSENT_STATE: u8 = 0x04;
    pub(super) const LEAVE: u8 = 0x05;
    pub(super) const CLOSE: u8 = 0x06;
    pub(super) const PING: u8 = 0x07;
    pub(super) const REKEY_REQUEST: u8 = 0x08;
}

impl ControlRepr {
    /// The content-type byte of this message.
    pub const fn message_type(&self) -> u8 {
        match self {
            ControlRepr::Announce { .. } => message_type::ANNOUNCE,
            ControlRepr::Roster { .. } => message_type::ROSTER,
            ControlRepr::CapabilityRequest { .. } => message_type::CAPABILITY_REQUEST,
            ControlRepr::ConsentState { .. } => message_type::CONSENT_STATE,
            ControlRepr::Leave => message_type::LEAVE,
            ControlRepr::Close { .. } => message_type::CLOSE,
            ControlRepr::Ping => message_type::PING,
            ControlRepr::RekeyRequest => message_type::REKEY_REQUEST,
        }
    }

    /// Parses a control message from its type byte and payload. Trailing bytes are an error.
    pub fn parse(message_type: u8, payload: &[u8]) -> Option<ControlRepr> {
        let mut reader = Reader::new(payload);
        let repr = match message_type {
            message_type::ANNOUNCE => {
                let role = Role::from_byte(reader.u8()?)?;
                let len = usize::from(reader.u8()?);
                if len > MAX_NAME_LEN {
                    return None;
                }
                let name = core::str::from_utf8(reader.take(len)?).ok()?;
                let receive_limit = if reader.is_empty() {
                    None
                } else {
                    Some(reader.u16().filter(|&limit| valid_receive_limit(limit))?)
                };
                ControlRepr::Announce { role, name: String::try_from(name).ok()?, receive_limit }
            }
            message_type::ROSTER => {
                let count = usize::from(reader.u8()?);
                let mut members = Vec::new();
                for &id in reader.take(count)? {
                    let id = MemberId(id);
                    if !id.is_endpoint() || members.contains(&id) {
                        return None;
                    }
                    members.push(id).ok()?;
                }
                ControlRepr::Roster { members }
            }
            message_type::CAPABILITY_REQUEST => {
                ControlRepr::CapabilityRequest { capability: Capability::from_byte(reader.u8()?)? }
            }
            message_type::CONSENT_STATE => ControlRepr::ConsentState {
                granted: CapabilitySet::from_bits(reader.u8()?)?,
                pending: CapabilitySet::from_bits(reader.u8()?)?,
            },
            message_type::LEAVE => ControlRepr::Leave,
            message_type::CLOSE => ControlRepr::Close { reason: CloseReason::from_byte(reader.u8()?) },
            message_type::PING => ControlRepr::Ping,
            message_type::REKEY_REQUEST => ControlRepr::RekeyRequest,
            _ => return None,
        };
        reader.is_empty().then_some(repr)
    }

    /// Writes the payload (after the type and flags bytes) into `out`; `None` if it does not fit.
    pub fn emit_payload(&self, out: &mut [u8]) -> Option<usize> {
        let mut writer = Writer::new(out);
        match self {
            ControlRepr::Announce { role, name, receive_limit } => {
                writer.u8(role.to_byte());
                writer.u8(u8::try_from(name.len()).ok()?);
                writer.put(name.as_bytes());
                if let Some(limit) = *receive_limit {
                    if !valid_receive_limit(limit) {
                        return None;
                    }
                    writer.u16(limit);
                }
            }
            ControlRepr::Roster { members } => {
                writer.u8(u8::try_from(members.len()).ok()?);
                for id in members {
                    writer.u8(id.0);
                }
            }
            ControlRepr::CapabilityRequest { capability } => writer.u8(capability.to_byte()),
            ControlRepr::ConsentState { granted, pending } => {
                writer.u8(granted.bits());
                writer.u8(pending.bits());
            }
            ControlRepr::Close { reason } => writer.u8(reason.to_byte()),
            ControlRepr::Leave | ControlRepr::Ping | ControlRepr::RekeyRequest => {}
        }
        writer.finish()
    }
}

/// Whether `limit` may be announced: at least [`MIN_RECEIVE_LIMIT`], below [`MAX_PAYLOAD_LEN`]
/// (a member without a limit announces none).
const fn valid_receive_limit(limit: u16) -> bool {
    let limit = limit as usize;
    limit >= MIN_RECEIVE_LIMIT && limit < MAX_PAYLOAD_LEN
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_message_round_trips() {
        let mut roster = Vec::new();
        roster.extend_from_slice(&[MemberId(0), MemberId(4)]).unwrap();
        let messages = [
            ControlRepr::Announce {
                role: Role::Provider,
                name: String::try_from("Ada, Helpdesk").unwrap(),
                receive_limit: None,
            },
            ControlRepr::Announce {
                role: Role::Customer,
                name: String::try_from("Pump 7").unwrap(),
                receive_limit: Some(2048),
            },
            ControlRepr::Roster { members: roster },
            ControlRepr::CapabilityRequest { capability: Capability::RemoteControl },
            ControlRepr::ConsentState {
                granted: CapabilitySet::EMPTY.with(Capability::ViewScreen),
                pending: CapabilitySet::EMPTY.with(Capability::FileTransfer),
            },
            ControlRepr::Leave,
            ControlRepr::Close { reason: CloseReason::Ended },
            ControlRepr::Ping,
            ControlRepr::RekeyRequest,
        ];
        for message in messages {
            let mut buf = [0u8; 80];
            let len = message.emit_payload(&mut buf).unwrap();
            assert_eq!(ControlRepr::parse(message.message_type(), &buf[..len]).as_ref(), Some(&message));
            let mut trailing = buf;
            trailing[len] = 0;
            assert_eq!(
                ControlRepr::parse(message.message_type(), &trailing[..len + 1]),
                None,
                "trailing byte {message:?}"
            );
        }
    }

    #[test]
    fn hostile_payloads_are_refused() {
        assert_eq!(ControlRepr::parse(0x01, &[1, 40]), None, "name over the limit");
        assert_eq!(ControlRepr::parse(0x01, &[1, 2, 0xFF, 0xFE]), None, "name not UTF-8");
        assert_eq!(ControlRepr::parse(0x02, &[2, 1, 1]), None, "duplicate id");
        assert_eq!(ControlRepr::parse(0x02, &[1, 0xFF]), None, "broadcast id");
        assert_eq!(ControlRepr::parse(0x03, &[0x80]), None, "unknown capability");
        assert_eq!(ControlRepr::parse(0x04, &[0x80, 0]), None, "unknown capability bit");
        assert_eq!(ControlRepr::parse(0x99, &[]), None);
    }

    #[test]
    fn the_receive_limit_is_optional_and_bounded() {
        // Without the field: exactly the bytes of a member that announces no limit.
        assert_eq!(
            ControlRepr::parse(0x01, &[2, 1, b'a']),
            Some(ControlRepr::Announce {
                role: Role::Customer,
                name: String::try_from("a").unwrap(),
                receive_limit: None
            })
        );
        assert_eq!(
            ControlRepr::parse(0x01, &[2, 1, b'a', 0x08, 0x00]),
            Some(ControlRepr::Announce {
                role: Role::Customer,
                name: String::try_from("a").unwrap(),
                receive_limit: Some(2048)
            })
        );
        assert!(ControlRepr::parse(0x01, &[2, 1, b'a', 0x04, 0x00]).is_some(), "1024, the minimum");
        assert_eq!(ControlRepr::parse(0x01, &[2, 1, b'a', 0x03, 0xFF]), None, "below the minimum");
        assert_eq!(ControlRepr::parse(0x01, &[2, 1, b'a', 0x40, 0x00]), None, "16384 is no limit: not sent");
        assert_eq!(ControlRepr::parse(0x01, &[2, 1, b'a', 0x08]), None, "one byte of two");
        assert_eq!(ControlRepr::parse(0x01, &[2, 1, b'a', 0x08, 0x00, 0x00]), None, "trailing byte");
        // The example of PROTOCOL.md 11.1, byte for byte.
        let mut buf = [0u8; 40];
        let pump = ControlRepr::Announce {
            role: Role::Customer,
            name: String::try_from("Pump").unwrap(),
            receive_limit: Some(2048),
        };
        let len = pump.emit_payload(&mut buf).unwrap();
        assert_eq!(&buf[..len], &[0x02, 0x04, 0x50, 0x75, 0x6D, 0x70, 0x08, 0x00]);
        let invalid = ControlRepr::Announce { role: Role::Customer, name: String::new(), receive_limit: Some(100) };
        assert_eq!(invalid.emit_payload(&mut buf), None, "an invalid limit is never emitted");
    }

    #[test]
    fn content_policy() {
        assert_eq!(ContentType::Chat.required_capability(), None);
        assert_eq!(ContentType::Input.required_capability(), Some(Capability::RemoteControl));
        assert!(!ContentType::Chat.compressible());
        assert!(ContentType::File.compressible());
        for byte in 0..=255u8 {
            if let Some(content) = ContentType::from_byte(byte) {
                assert_eq!(content.to_byte(), byte);
            }
        }
    }
}
