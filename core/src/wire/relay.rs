//! Messages between an endpoint and its relay (frame kind [`FrameKind::Relay`](super::FrameKind::Relay)).
//!
//! These never travel end to end and carry nothing secret: the admission ticket is a bearer
//! token signed by the broker, bound to one session and role, and short-lived; it grants a place
//! in the session's routing, never a key. Both directions use sender `0xFE`
//! ([`MemberId::RELAY`]); endpoint-to-relay frames go to destination `0xFE`.
//!
//! | type | message      | direction        | payload                                           |
//! |------|--------------|------------------|---------------------------------------------------|
//! | 0x01 | `Admit`      | endpoint → relay | resume id u8 (0xFF: none), ticket length u16, ticket |
//! | 0x02 | `Welcome`    | relay → endpoint | member id u8                                      |
//! | 0x03 | `Refused`    | relay → endpoint | reason u8                                         |
//! | 0x04 | `MemberGone` | relay → endpoint | member id u8                                      |
//! | 0x05 | `GoAway`     | relay → endpoint | (empty): reconnect, to another relay if you can   |
//!
//! The body of a relay frame is `type u8 | payload`.

use super::{Destination, FrameKind, HEADER_LEN, InsufficientSize, MemberId, Reader, Writer, emit_frame};

/// Largest admission ticket accepted.
pub const MAX_TICKET_LEN: usize = 512;

/// Why a relay refused an endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum RefusalReason {
    /// The ticket is malformed, forged, for another session, or expired.
    BadTicket,
    /// The session has no room (members per session) or the relay none (sessions).
    Full,
    /// The resume id is taken by a live connection or not this ticket's role.
    ResumeRefused,
    /// The relay is shutting down.
    ShuttingDown,
    /// Anything else (the relay's log says what).
    Other,
}

impl RefusalReason {
    const fn to_byte(self) -> u8 {
        match self {
            RefusalReason::BadTicket => 1,
            RefusalReason::Full => 2,
            RefusalReason::ResumeRefused => 3,
            RefusalReason::ShuttingDown => 4,
            RefusalReason::Other => 0,
        }
    }

    const fn from_byte(byte: u8) -> RefusalReason {
        match byte {
            1 => RefusalReason::BadTicket,
            2 => RefusalReason::Full,
            3 => RefusalReason::ResumeRefused,
            4 => RefusalReason::ShuttingDown,
            _ => RefusalReason::Other,
        }
    }
}

/// A parsed relay message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RelayRepr<'a> {
    /// An endpoint presents its ticket; `resume` asks for the member id it had before a
    /// reconnect, so the session goes on without a new join.
    Admit {
        /// The id to take back, if resuming.
        resume: Option<MemberId>,
        /// The broker-signed ticket (opaque to the engine).
        ticket: &'a [u8],
    },
    /// The relay admitted the endpoint with this member id.
    Welcome {
        /// The endpoint's member id in the session.
        member: MemberId,
    },
    /// The relay refused the endpoint; it closes the connection next.
    Refused {
        /// Why.
        reason: RefusalReason,
    },
    /// A member's connection is gone.
    MemberGone {
        /// Who.
        member: MemberId,
    },
    /// The relay is going away: reconnect (to another relay of the fleet, if configured).
    GoAway,
}

mod message_type {
    pub(super) const ADMIT: u8 = 0x01;
    pub(super) const WELCOME: u8 = 0x02;
    pub(super) const REFUSED: u8 = 0x03;
    pub(super) const MEMBER_GONE: u8 = 0x04;
    pub(super) const GO_AWAY: u8 = 0x05;
}

const NO_RESUME: u8 = 0xFF;

impl<'a> RelayRepr<'a> {
    /// Parses a relay frame body. Trailing bytes are an error.
    pub fn parse(body: &'a [u8]) -> Option<RelayRepr<'a>> {
        let mut reader = Reader::new(body);
        let repr = match reader.u8()? {
            message_type::ADMIT => {
                let resume = match reader.u8()? {
                    NO_RESUME => None,
                    id if MemberId(id).is_endpoint() => Some(MemberId(id)),
                    _ => return None,
                };
                let len = usize::from(u16::from_be_bytes(reader.array::<2>()?));
                if len > MAX_TICKET_LEN {
                    return None;
                }
                RelayRepr::Admit { resume, ticket: reader.take(len)? }
            }
            message_type::WELCOME => RelayRepr::Welcome { member: endpoint_id(reader.u8()?)? },
            message_type::REFUSED => RelayRepr::Refused { reason: RefusalReason::from_byte(reader.u8()?) },
            message_type::MEMBER_GONE => RelayRepr::MemberGone { member: endpoint_id(reader.u8()?)? },
            message_type::GO_AWAY => RelayRepr::GoAway,
            _ => return None,
        };
        reader.is_empty().then_some(repr)
    }

    /// Writes the body into `out`; `None` if it does not fit or the ticket is too long.
    pub fn emit(&self, out: &mut [u8]) -> Option<usize> {
        let mut writer = Writer::new(out);
        match *self {
            RelayRepr::Admit { resume, ticket } => {
                if ticket.len() > MAX_TICKET_LEN {
                    return None;
                }
                writer.u8(message_type::ADMIT);
                writer.u8(resume.map_or(NO_RESUME, |id| id.0));
                writer.put(&u16::try_from(ticket.len()).ok()?.to_be_bytes());
                writer.put(ticket);
            }
            RelayRepr::Welcome { member } => {
                writer.u8(message_type::WELCOME);
                writer.u8(member.0);
            }
            RelayRepr::Refused { reason } => {
                writer.u8(message_type::REFUSED);
                writer.u8(reason.to_byte());
            }
            RelayRepr::MemberGone { member } => {
                writer.u8(message_type::MEMBER_GONE);
                writer.u8(member.0);
            }
            RelayRepr::GoAway => writer.u8(message_type::GO_AWAY),
        }
        writer.finish()
    }

    /// Writes a whole relay frame for `session` into `out`: sender [`MemberId::RELAY`]; the
    /// destination is the relay for `Admit`, else `destination`.
    pub fn emit_frame(
        &self,
        session: u64,
        destination: Destination,
        out: &mut [u8],
    ) -> Result<usize, InsufficientSize> {
        let mut body = [0u8; 4 + MAX_TICKET_LEN];
        let Some(len) = self.emit(&mut body) else {
            return Err(InsufficientSize { required: HEADER_LEN + body.len() });
        };
        let destination = match self {
            RelayRepr::Admit { .. } => Destination::Member(MemberId::RELAY),
            _ => destination,
        };
        emit_frame(FrameKind::Relay, session, MemberId::RELAY, destination, &body[..len], out)
    }
}

fn endpoint_id(byte: u8) -> Option<MemberId> {
    let id = MemberId(byte);
    id.is_endpoint().then_some(id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::RoutingHeader;

    #[test]
    fn every_message_round_trips() {
        let ticket = [7u8; 98];
        let messages = [
            RelayRepr::Admit { resume: None, ticket: &ticket },
            RelayRepr::Admit { resume: Some(MemberId(3)), ticket: &ticket },
            RelayRepr::Welcome { member: MemberId(2) },
            RelayRepr::Refused { reason: RefusalReason::BadTicket },
            RelayRepr::MemberGone { member: MemberId(4) },
            RelayRepr::GoAway,
        ];
        for message in messages {
            let mut buf = [0u8; 700];
            let len = message.emit_frame(99, Destination::Member(MemberId(1)), &mut buf).unwrap();
            let header = RoutingHeader::parse(&buf[..len]).unwrap();
            assert_eq!((header.kind, header.sender), (FrameKind::Relay, MemberId::RELAY));
            assert_eq!(RelayRepr::parse(&buf[HEADER_LEN..len]), Some(message));
            assert_eq!(RelayRepr::parse(&buf[HEADER_LEN..len - 1]), None, "truncated {message:?}");
        }
    }

    #[test]
    fn hostile_bodies_are_refused() {
        assert_eq!(RelayRepr::parse(&[0x01, 0xFF, 0x02, 0x01]), None, "ticket over the limit");
        assert_eq!(RelayRepr::parse(&[0x01, 0xFE, 0, 0]), None, "resume as the relay");
        assert_eq!(RelayRepr::parse(&[0x02, 0xFF]), None, "welcome as broadcast");
        assert_eq!(RelayRepr::parse(&[0x05, 0]), None, "trailing byte");
        assert_eq!(RelayRepr::parse(&[]), None);
    }

    #[test]
    fn oversized_tickets_are_not_emitted() {
        let ticket = [0u8; MAX_TICKET_LEN + 1];
        assert_eq!(RelayRepr::Admit { resume: None, ticket: &ticket }.emit(&mut [0u8; 1024]), None);
    }
}
