//! What the session tells the application, and the errors of its operations.

use core::fmt;

use heapless::String;

use crate::consent::{Capability, CapabilitySet};
use crate::wire::MemberId;
use crate::wire::control::{ContentType, MAX_NAME_LEN};
use crate::wire::handshake::{RejectReason, Role};

/// Something the application should know about, from [`Session::poll_event`](super::Session::poll_event).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// This member completed its join: keys are in place and data may flow.
    Joined {
        /// The group key epoch.
        epoch: u32,
    },
    /// Another member is in the session.
    MemberJoined {
        /// Who.
        member: MemberId,
    },
    /// A member left or was removed.
    MemberLeft {
        /// Who.
        member: MemberId,
    },
    /// A member said who it is (names are what the member claims; the broker vouches for
    /// providers out of band).
    MemberAnnounced {
        /// Who.
        member: MemberId,
        /// Provider or customer.
        role: Role,
        /// Display name.
        name: String<MAX_NAME_LEN>,
    },
    /// Leader: a join attempt failed its key confirmation (a wrong PIN, or an impostor).
    JoinFailed {
        /// The member id that tried.
        member: MemberId,
        /// Failed attempts so far in this session.
        failures: u8,
    },
    /// Leader: the failed-join limit was reached; the PIN is dead and no one else can join.
    PinExpired,
    /// Customer: a provider asks for a capability. Answer with `grant` or `deny`.
    ConsentRequested {
        /// Who asks.
        from: MemberId,
        /// What for.
        capability: Capability,
    },
    /// Customer: the local consent state changed (after grant, deny, revoke).
    ConsentChanged {
        /// Granted now.
        granted: CapabilitySet,
        /// Prompts still open.
        pending: CapabilitySet,
    },
    /// Provider: a customer's consent state, as that customer announced it.
    PeerConsent {
        /// The customer.
        from: MemberId,
        /// What it has granted.
        granted: CapabilitySet,
        /// Prompts open on its side.
        pending: CapabilitySet,
    },
    /// Customer: data that needs a capability not granted (or remote input while a prompt is
    /// open) arrived and was dropped.
    DataRefused {
        /// Sender.
        from: MemberId,
        /// What it was.
        content: ContentType,
        /// The capability it needed.
        capability: Capability,
    },
    /// The check code of the join between this endpoint and `peer` (the leader, on a member;
    /// the member that just joined, on the leader): six decimal digits both endpoints derive
    /// from their SRP session key. Show it; the two people compare it by phone. Codes that
    /// differ mean someone is in the middle (who knew the PIN): end the session.
    CheckCode {
        /// The other endpoint of the join.
        peer: MemberId,
        /// `0..1_000_000`; show as six digits with leading zeros.
        code: u32,
    },
    /// The group moved to a new key epoch.
    Rekeyed {
        /// The new epoch.
        epoch: u32,
    },
    /// The session is over for this endpoint. Nothing more will be sent or delivered.
    Closed {
        /// Why.
        reason: SessionEnd,
    },
}

/// Why a session ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum SessionEnd {
    /// The local application closed it.
    Local,
    /// The leader or the customer ended it.
    EndedBy(MemberId),
    /// The leader removed this member.
    Removed,
    /// The leader refused the join.
    JoinRejected(RejectReason),
    /// The leader's key confirmation (M2) was wrong: it does not know the PIN.
    LeaderNotAuthentic,
    /// The join did not finish in time.
    HandshakeTimeout,
    /// Nothing heard from the leader for the idle timeout.
    LeaderLost,
    /// The leader sent something that breaks the protocol during the join, or (leader) the
    /// session ran out of epoch ids.
    ProtocolViolation,
}

impl fmt::Display for SessionEnd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SessionEnd::Local => f.write_str("closed locally"),
            SessionEnd::EndedBy(member) => write!(f, "ended by {member}"),
            SessionEnd::Removed => f.write_str("removed by the session leader"),
            SessionEnd::JoinRejected(RejectReason::BadProof) => f.write_str("join refused: wrong PIN"),
            SessionEnd::JoinRejected(RejectReason::PinExpired) => f.write_str("join refused: the PIN has expired"),
            SessionEnd::JoinRejected(RejectReason::SessionFull) => f.write_str("join refused: session full"),
            SessionEnd::JoinRejected(_) => f.write_str("join refused"),
            SessionEnd::LeaderNotAuthentic => f.write_str("the session leader failed to prove it knows the PIN"),
            SessionEnd::HandshakeTimeout => f.write_str("join timed out"),
            SessionEnd::LeaderLost => f.write_str("lost contact with the session leader"),
            SessionEnd::ProtocolViolation => f.write_str("protocol violation"),
        }
    }
}

/// Application data delivered by [`Session::handle_frame`](super::Session::handle_frame): the
/// payload is `out[..len]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[must_use]
pub struct Delivery {
    /// Sender.
    pub from: MemberId,
    /// What it is.
    pub content: ContentType,
    /// Payload length in the caller's buffer.
    pub len: usize,
}

/// A frame written by [`Session::poll_transmit`](super::Session::poll_transmit): `out[..len]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[must_use]
pub struct Transmit {
    /// Frame length.
    pub len: usize,
}

/// Why an incoming frame was not accepted. Local information only: peers are never told.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum FrameError {
    /// Not a well-formed frame or message.
    Malformed,
    /// Another session, not addressed to us, or from an id that cannot send it.
    NotForUs,
    /// Failed authentication (MAC, key wrap) or from an unknown epoch.
    Unauthentic,
    /// A frame seen before (or too old to tell).
    Replayed,
    /// Valid, but not expected in the current state.
    Unexpected,
    /// `out` is smaller than [`MAX_PAYLOAD_LEN`](crate::wire::MAX_PAYLOAD_LEN); nothing was
    /// changed, the frame can be handed in again.
    InsufficientSize {
        /// Bytes `out` needs.
        required: usize,
    },
    /// The session is closed.
    Closed,
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::Malformed => f.write_str("malformed frame"),
            FrameError::NotForUs => f.write_str("frame not for this endpoint"),
            FrameError::Unauthentic => f.write_str("frame failed authentication"),
            FrameError::Replayed => f.write_str("replayed frame"),
            FrameError::Unexpected => f.write_str("frame not expected now"),
            FrameError::InsufficientSize { required } => {
                write!(f, "output buffer too small: {required} bytes required")
            }
            FrameError::Closed => f.write_str("session closed"),
        }
    }
}

impl core::error::Error for FrameError {}

/// Why data or a request could not be sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum SendError {
    /// The join has not completed.
    NotEstablished,
    /// The session is closed.
    Closed,
    /// Control frames are waiting: drain [`poll_transmit`](super::Session::poll_transmit) first
    /// (they must go out before data, e.g. new keys before data sealed with them).
    TransmitPending,
    /// The customer has not granted the capability this content needs.
    NotGranted,
    /// More than [`MAX_PAYLOAD_LEN`](crate::wire::MAX_PAYLOAD_LEN) bytes, or more than a
    /// receiving member announced it accepts ([`Session::max_payload`](super::Session::max_payload)).
    PayloadTooLarge,
    /// Not a valid destination (ourselves, or not an endpoint id).
    InvalidDestination,
    /// Only a provider asks for capabilities.
    NotProvider,
    /// The epoch's key-usage limit is reached; wait for the rekey.
    KeysExhausted,
    /// Too many requests queued.
    QueueFull,
    /// `out` is too small; nothing was written.
    InsufficientSize {
        /// Bytes `out` needs.
        required: usize,
    },
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::NotEstablished => f.write_str("session not established"),
            SendError::Closed => f.write_str("session closed"),
            SendError::TransmitPending => f.write_str("control frames pending: drain poll_transmit first"),
            SendError::NotGranted => f.write_str("capability not granted by the customer"),
            SendError::PayloadTooLarge => f.write_str("payload too large"),
            SendError::InvalidDestination => f.write_str("invalid destination"),
            SendError::NotProvider => f.write_str("only a provider requests capabilities"),
            SendError::KeysExhausted => f.write_str("key usage limit reached, waiting for rekey"),
            SendError::QueueFull => f.write_str("request queue full"),
            SendError::InsufficientSize { required } => write!(f, "output buffer too small: {required} bytes required"),
        }
    }
}

impl core::error::Error for SendError {}

/// Counters for monitoring (no secrets, no payload).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Stats {
    /// Frames accepted.
    pub frames_in: u64,
    /// Frames written.
    pub frames_out: u64,
    /// Frames refused as malformed or not for us.
    pub malformed: u64,
    /// Frames that failed authentication.
    pub unauthentic: u64,
    /// Replayed frames.
    pub replayed: u64,
    /// Data dropped for lack of consent.
    pub refused_by_consent: u64,
    /// Events dropped because the application did not drain them.
    pub events_lost: u64,
}
