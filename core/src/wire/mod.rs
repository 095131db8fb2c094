//! Bytes on the wire: the frame layout, the cleartext routing header, and the stream decoder.
//!
//! Every frame is a 16-byte routing header followed by a body of at most [`MAX_BODY_LEN`] bytes:
//!
//! ```text
//!  0      1      2      4                 12       13      14     16
//! +------+------+------+-----------------+--------+-------+------+------------- - -
//! | ver  | kind | body | session number  | sender | dest  | zero | body (body_len bytes)
//! | 0x01 |      | len  | u64 big-endian  | member | member| u16  |
//! +------+------+------+-----------------+--------+-------+------+------------- - -
//! ```
//!
//! The relay reads only this header ([`RoutingHeader::parse`]); everything after it is either a
//! handshake message (public SRP values, authenticated afterwards by the key confirmation), a
//! wrapped group key, or ciphertext with an HMAC-SHA1 tag over header and ciphertext. The layout
//! follows smoltcp: [`Frame`] is a checked view over a byte buffer (no accessor panics after
//! [`Frame::new_checked`]) and [`RoutingHeader`] is its parsed form, with `parse` and `emit`.

mod stream;

pub mod control;
pub mod handshake;
pub mod relay;

pub use stream::{DecodeError, StreamDecoder};

use core::fmt;

/// The only wire version this engine speaks.
pub const VERSION: u8 = 1;
/// Length of the cleartext routing header.
pub const HEADER_LEN: usize = 16;
/// Largest application payload carried by one frame.
pub const MAX_PAYLOAD_LEN: usize = 16 * 1024;
/// Bytes a protected body adds around its payload: epoch (4), sequence (8), content type and
/// flags (2), HMAC-SHA1 tag (20).
pub const PROTECTED_OVERHEAD: usize = 4 + 8 + 2 + 20;
/// Largest body after the routing header.
pub const MAX_BODY_LEN: usize = MAX_PAYLOAD_LEN + PROTECTED_OVERHEAD;
/// Largest frame, header included. Decoders refuse anything longer before buffering it.
pub const MAX_FRAME_LEN: usize = HEADER_LEN + MAX_BODY_LEN;
/// Smallest receive limit a member may announce (PROTOCOL.md 11.1): every control
/// and join message fits below it.
pub const MIN_RECEIVE_LIMIT: usize = 1024;

/// The length of a protected frame carrying `payload_len` bytes of (uncompressed) payload: the
/// largest frame a member whose receive limit is `payload_len` is sent.
pub const fn protected_frame_len(payload_len: usize) -> usize {
    HEADER_LEN + PROTECTED_OVERHEAD + payload_len
}

/// Identifies one endpoint within a session. The leader is always [`MemberId::LEADER`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct MemberId(pub u8);

impl MemberId {
    /// The session leader (the endpoint that created the session and holds the verifier).
    pub const LEADER: MemberId = MemberId(0);
    /// Reserved: frames the relay itself originates or consumes.
    pub const RELAY: MemberId = MemberId(0xFE);
    /// Largest id an endpoint may have.
    pub const MAX_ENDPOINT: MemberId = MemberId(0xFD);

    /// Whether this id may name an endpoint (not the relay, not the broadcast address).
    pub const fn is_endpoint(self) -> bool {
        self.0 <= Self::MAX_ENDPOINT.0
    }
}

impl fmt::Display for MemberId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "m{}", self.0)
    }
}

/// Where the relay should deliver a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Destination {
    /// Every member of the session except the sender (the seed's multicast).
    AllMembers,
    /// One member.
    Member(MemberId),
}

impl Destination {
    const ALL_MEMBERS_BYTE: u8 = 0xFF;

    /// The byte written in the header.
    pub const fn to_byte(self) -> u8 {
        match self {
            Destination::AllMembers => Self::ALL_MEMBERS_BYTE,
            Destination::Member(id) => id.0,
        }
    }

    /// Parses the header byte.
    pub const fn from_byte(byte: u8) -> Destination {
        if byte == Self::ALL_MEMBERS_BYTE { Destination::AllMembers } else { Destination::Member(MemberId(byte)) }
    }

    /// Whether a frame with this destination is meant for `member`.
    pub fn includes(self, member: MemberId) -> bool {
        match self {
            Destination::AllMembers => true,
            Destination::Member(id) => id == member,
        }
    }
}

/// What a frame's body holds. The relay uses it only to pick a queue (control before data).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum FrameKind {
    /// SRP-6a join messages (public values and proofs); see [`handshake`].
    Handshake,
    /// A group key wrapped (RFC 3394) for one member.
    KeyUpdate,
    /// Protected session control: roster, consent, leave, close, keepalive; see [`control`].
    SecureControl,
    /// Protected application data: chat, screen, input, files, diagnostics, console.
    SecureData,
    /// Between an endpoint and its relay only (admission, relay notices); never end to end.
    Relay,
}

impl FrameKind {
    /// The byte written in the header.
    pub const fn to_byte(self) -> u8 {
        match self {
            FrameKind::Handshake => 0x01,
            FrameKind::KeyUpdate => 0x02,
            FrameKind::SecureControl => 0x03,
            FrameKind::SecureData => 0x04,
            FrameKind::Relay => 0x10,
        }
    }

    /// Parses the header byte.
    pub const fn from_byte(byte: u8) -> Option<FrameKind> {
        match byte {
            0x01 => Some(FrameKind::Handshake),
            0x02 => Some(FrameKind::KeyUpdate),
            0x03 => Some(FrameKind::SecureControl),
            0x04 => Some(FrameKind::SecureData),
            0x10 => Some(FrameKind::Relay),
            _ => None,
        }
    }

    /// Whether the body is sealed with the group keys (AES-128-CTR + HMAC-SHA1).
    pub const fn is_protected(self) -> bool {
        matches!(self, FrameKind::SecureControl | FrameKind::SecureData)
    }

    /// Whether a relay should queue it with control traffic (ahead of bulk data).
    pub const fn is_control(self) -> bool {
        !matches!(self, FrameKind::SecureData)
    }
}

/// Why bytes are not a valid frame. Shown to local logs and the relay's metrics; peers are never
/// told which check failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum WireError {
    /// Fewer bytes than the header or the body length says.
    Truncated,
    /// A version this engine does not speak.
    UnsupportedVersion,
    /// An unknown frame kind.
    UnknownKind,
    /// A body longer than [`MAX_BODY_LEN`] or too short for its kind.
    BadLength,
    /// Reserved bits set, session number zero, or an impossible sender.
    BadField,
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            WireError::Truncated => "frame truncated",
            WireError::UnsupportedVersion => "unsupported frame version",
            WireError::UnknownKind => "unknown frame kind",
            WireError::BadLength => "frame length out of bounds",
            WireError::BadField => "invalid header field",
        })
    }
}

impl core::error::Error for WireError {}

mod field {
    use core::ops::Range;
    pub(super) const VERSION: usize = 0;
    pub(super) const KIND: usize = 1;
    pub(super) const BODY_LEN: Range<usize> = 2..4;
    pub(super) const SESSION: Range<usize> = 4..12;
    pub(super) const SENDER: usize = 12;
    pub(super) const DESTINATION: usize = 13;
    pub(super) const RESERVED: Range<usize> = 14..16;
}

/// A checked view over the bytes of one whole frame (header and body).
#[derive(Debug, Clone)]
pub struct Frame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Frame<T> {
    /// Wraps `buffer` without checking it; call [`Frame::check_len`] before the accessors.
    pub const fn new_unchecked(buffer: T) -> Self {
        Frame { buffer }
    }

    /// Wraps `buffer` and checks that it holds exactly one frame with a valid header:
    /// no accessor panics afterwards.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let frame = Self::new_unchecked(buffer);
        frame.check_len()?;
        RoutingHeader::parse(frame.buffer.as_ref())?;
        Ok(frame)
    }

    /// Checks that the buffer is exactly as long as the header says.
    pub fn check_len(&self) -> Result<(), WireError> {
        let bytes = self.buffer.as_ref();
        if bytes.len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        let body_len = usize::from(u16::from_be_bytes([bytes[2], bytes[3]]));
        if body_len > MAX_BODY_LEN {
            return Err(WireError::BadLength);
        }
        match bytes.len().cmp(&(HEADER_LEN + body_len)) {
            core::cmp::Ordering::Less => Err(WireError::Truncated),
            core::cmp::Ordering::Greater => Err(WireError::BadLength),
            core::cmp::Ordering::Equal => Ok(()),
        }
    }

    /// The 16 header bytes.
    pub fn header_bytes(&self) -> &[u8] {
        &self.buffer.as_ref()[..HEADER_LEN]
    }

    /// The body after the header.
    pub fn body(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..]
    }

    /// The whole frame.
    pub fn as_bytes(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    /// Consumes the view, returning the buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Frame<T> {
    /// The body, mutable (for in-place decryption).
    pub fn body_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[HEADER_LEN..]
    }

    /// Header and body, split, so the body can be decrypted while the header is MACed.
    pub fn split_mut(&mut self) -> (&[u8], &mut [u8]) {
        let (header, body) = self.buffer.as_mut().split_at_mut(HEADER_LEN);
        (header, body)
    }
}

/// The parsed cleartext routing header: all a relay ever learns about a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct RoutingHeader {
    /// What the body holds.
    pub kind: FrameKind,
    /// Bytes after the header.
    pub body_len: u16,
    /// The session this frame belongs to (never zero).
    pub session: u64,
    /// The member that sent it ([`MemberId::RELAY`] for relay notices).
    pub sender: MemberId,
    /// Where it goes.
    pub destination: Destination,
}

impl RoutingHeader {
    /// Parses the header at the start of `bytes`, which may hold only the header or more (the
    /// body is not looked at). This is the relay's routing-only parser.
    pub fn parse(bytes: &[u8]) -> Result<RoutingHeader, WireError> {
        let header: &[u8; HEADER_LEN] =
            bytes.get(..HEADER_LEN).and_then(|h| h.try_into().ok()).ok_or(WireError::Truncated)?;
        if header[field::VERSION] != VERSION {
            return Err(WireError::UnsupportedVersion);
        }
        let kind = FrameKind::from_byte(header[field::KIND]).ok_or(WireError::UnknownKind)?;
        let body_len = u16::from_be_bytes([header[field::BODY_LEN.start], header[field::BODY_LEN.start + 1]]);
        if usize::from(body_len) > MAX_BODY_LEN {
            return Err(WireError::BadLength);
        }
        let mut session = [0u8; 8];
        session.copy_from_slice(&header[field::SESSION]);
        let session = u64::from_be_bytes(session);
        let sender = MemberId(header[field::SENDER]);
        let destination = Destination::from_byte(header[field::DESTINATION]);
        // Every destination byte means something (members, 0xFE the relay, 0xFF everyone).
        let reserved_clear = header[field::RESERVED] == [0, 0];
        if session == 0 || !reserved_clear || sender.0 == 0xFF {
            return Err(WireError::BadField);
        }
        if kind.is_protected() && usize::from(body_len) < PROTECTED_OVERHEAD {
            return Err(WireError::BadLength);
        }
        Ok(RoutingHeader { kind, body_len, session, sender, destination })
    }

    /// Writes the header into the first [`HEADER_LEN`] bytes of `out`.
    pub fn emit(&self, out: &mut [u8; HEADER_LEN]) {
        out[field::VERSION] = VERSION;
        out[field::KIND] = self.kind.to_byte();
        out[field::BODY_LEN].copy_from_slice(&self.body_len.to_be_bytes());
        out[field::SESSION].copy_from_slice(&self.session.to_be_bytes());
        out[field::SENDER] = self.sender.0;
        out[field::DESTINATION] = self.destination.to_byte();
        out[field::RESERVED].copy_from_slice(&[0, 0]);
    }

    /// Total frame length (header and body).
    pub const fn frame_len(&self) -> usize {
        HEADER_LEN + self.body_len as usize
    }

    /// Parses the header of a complete frame held by a checked [`Frame`].
    pub fn parse_frame<T: AsRef<[u8]>>(frame: &Frame<T>) -> Result<RoutingHeader, WireError> {
        Self::parse(frame.as_bytes())
    }
}

/// Writes a frame with the given header fields and body into `out`; returns its length.
///
/// A too-small `out` returns [`InsufficientSize`] and is left untouched.
pub fn emit_frame(
    kind: FrameKind,
    session: u64,
    sender: MemberId,
    destination: Destination,
    body: &[u8],
    out: &mut [u8],
) -> Result<usize, InsufficientSize> {
    let body_len = u16::try_from(body.len()).ok().filter(|len| usize::from(*len) <= MAX_BODY_LEN);
    // A body over the maximum is a caller bug in this crate, never peer input.
    let Some(body_len) = body_len else {
        return Err(InsufficientSize { required: HEADER_LEN + body.len() });
    };
    let header = RoutingHeader { kind, body_len, session, sender, destination };
    let total = header.frame_len();
    let Some(out) = out.get_mut(..total) else {
        return Err(InsufficientSize { required: total });
    };
    let (head, rest) = out.split_at_mut(HEADER_LEN);
    let head: &mut [u8; HEADER_LEN] = head.try_into().map_err(|_| InsufficientSize { required: total })?;
    header.emit(head);
    rest.copy_from_slice(body);
    Ok(total)
}

/// A caller-supplied buffer was too small; nothing was written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct InsufficientSize {
    /// Bytes the operation needs.
    pub required: usize,
}

impl fmt::Display for InsufficientSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "buffer too small: {} bytes required", self.required)
    }
}

impl core::error::Error for InsufficientSize {}

/// A bounds-checked reader of big-endian fields over untrusted bytes: every read is `Option`,
/// never a panic. Public so that the application codecs outside the core (screen, input) parse
/// the same way.
#[derive(Debug)]
pub struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    /// Reads `bytes` from the start.
    pub const fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes }
    }

    /// One byte.
    pub fn u8(&mut self) -> Option<u8> {
        let (&first, rest) = self.bytes.split_first()?;
        self.bytes = rest;
        Some(first)
    }

    /// A big-endian `u16`.
    pub fn u16(&mut self) -> Option<u16> {
        self.array::<2>().map(u16::from_be_bytes)
    }

    /// A big-endian `i16`.
    pub fn i16(&mut self) -> Option<i16> {
        self.array::<2>().map(i16::from_be_bytes)
    }

    /// A big-endian `u32`.
    pub fn u32(&mut self) -> Option<u32> {
        self.array::<4>().map(u32::from_be_bytes)
    }

    /// A big-endian `u64`.
    pub fn u64(&mut self) -> Option<u64> {
        self.array::<8>().map(u64::from_be_bytes)
    }

    /// Everything left.
    pub fn rest(&mut self) -> &'a [u8] {
        core::mem::take(&mut self.bytes)
    }

    /// The next `len` bytes, or `None` (and nothing consumed) if fewer are left.
    pub fn take(&mut self, len: usize) -> Option<&'a [u8]> {
        if len > self.bytes.len() {
            return None;
        }
        let (head, rest) = self.bytes.split_at(len);
        self.bytes = rest;
        Some(head)
    }

    /// The next `N` bytes as an array.
    pub fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }

    /// Whether everything has been read.
    pub const fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

/// A bounds-checked writer of big-endian fields into a caller buffer. Writes past the end set
/// an overflow flag instead of panicking; callers check [`Writer::finish`].
#[derive(Debug)]
pub struct Writer<'a> {
    bytes: &'a mut [u8],
    len: usize,
    overflow: bool,
}

impl<'a> Writer<'a> {
    /// Writes into `bytes` from the start.
    pub fn new(bytes: &'a mut [u8]) -> Self {
        Writer { bytes, len: 0, overflow: false }
    }

    /// Raw bytes.
    pub fn put(&mut self, data: &[u8]) {
        let end = self.len + data.len();
        match self.bytes.get_mut(self.len..end) {
            Some(dst) if !self.overflow => {
                dst.copy_from_slice(data);
                self.len = end;
            }
            _ => self.overflow = true,
        }
    }

    /// One byte.
    pub fn u8(&mut self, value: u8) {
        self.put(&[value]);
    }

    /// A big-endian `u16`.
    pub fn u16(&mut self, value: u16) {
        self.put(&value.to_be_bytes());
    }

    /// A big-endian `i16`.
    pub fn i16(&mut self, value: i16) {
        self.put(&value.to_be_bytes());
    }

    /// A big-endian `u32`.
    pub fn u32(&mut self, value: u32) {
        self.put(&value.to_be_bytes());
    }

    /// A big-endian `u64`.
    pub fn u64(&mut self, value: u64) {
        self.put(&value.to_be_bytes());
    }

    /// Bytes written, or `None` if anything did not fit.
    pub fn finish(self) -> Option<usize> {
        (!self.overflow).then_some(self.len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> RoutingHeader {
        RoutingHeader {
            kind: FrameKind::SecureData,
            body_len: 40,
            session: 123_456_789,
            sender: MemberId(3),
            destination: Destination::AllMembers,
        }
    }

    // -- routing header --

    #[test]
    fn header_round_trips() {
        let mut bytes = [0u8; HEADER_LEN];
        header().emit(&mut bytes);
        assert_eq!(bytes[..4], [1, 4, 0, 40]);
        assert_eq!(RoutingHeader::parse(&bytes), Ok(header()));
    }

    #[test]
    fn header_rejects_bad_fields() {
        let mut good = [0u8; HEADER_LEN];
        header().emit(&mut good);
        let cases: [(usize, u8, WireError); 5] = [
            (0, 2, WireError::UnsupportedVersion),
            (1, 0x7F, WireError::UnknownKind),
            (2, 0xFF, WireError::BadLength),
            (12, 0xFF, WireError::BadField),
            (15, 1, WireError::BadField),
        ];
        for (index, value, expected) in cases {
            let mut bytes = good;
            bytes[index] = value;
            assert_eq!(RoutingHeader::parse(&bytes), Err(expected), "byte {index}");
        }
        let mut zero_session = good;
        zero_session[4..12].fill(0);
        assert_eq!(RoutingHeader::parse(&zero_session), Err(WireError::BadField));
        assert_eq!(RoutingHeader::parse(&good[..15]), Err(WireError::Truncated));
    }

    #[test]
    fn protected_body_must_hold_its_overhead() {
        let mut bytes = [0u8; HEADER_LEN];
        RoutingHeader { body_len: (PROTECTED_OVERHEAD - 1) as u16, ..header() }.emit(&mut bytes);
        assert_eq!(RoutingHeader::parse(&bytes), Err(WireError::BadLength));
    }

    // -- frame view --

    #[test]
    fn frame_checks_exact_length() {
        let mut buf = [0u8; 64];
        let len =
            emit_frame(FrameKind::Handshake, 9, MemberId(1), Destination::Member(MemberId::LEADER), b"hello", &mut buf)
                .unwrap();
        assert_eq!(len, HEADER_LEN + 5);
        let frame = Frame::new_checked(&buf[..len]).unwrap();
        assert_eq!(frame.body(), b"hello");
        assert_eq!(Frame::new_checked(&buf[..len - 1]).unwrap_err(), WireError::Truncated);
        assert_eq!(Frame::new_checked(&buf[..len + 1]).unwrap_err(), WireError::BadLength);
    }

    #[test]
    fn emit_into_short_buffer_leaves_it_untouched() {
        let mut buf = [0xAAu8; 20];
        let err =
            emit_frame(FrameKind::Handshake, 9, MemberId(1), Destination::AllMembers, &[1; 10], &mut buf).unwrap_err();
        assert_eq!(err, InsufficientSize { required: 26 });
        assert!(buf.iter().all(|&b| b == 0xAA));
    }

    #[test]
    fn reader_never_reads_past_end() {
        let mut reader = Reader::new(&[1, 2, 3]);
        assert_eq!(reader.u32(), None);
        assert_eq!(reader.u8(), Some(1));
        assert_eq!(reader.take(5), None);
        assert_eq!(reader.take(2), Some(&[2u8, 3][..]));
        assert!(reader.is_empty());
    }

    proptest::proptest! {
        #[test]
        fn any_valid_header_round_trips(
            kind in proptest::sample::select(&[FrameKind::Handshake, FrameKind::KeyUpdate, FrameKind::SecureControl, FrameKind::SecureData, FrameKind::Relay][..]),
            body_len in (PROTECTED_OVERHEAD as u16)..=(MAX_BODY_LEN as u16),
            session in 1u64..,
            sender in 0u8..=0xFE,
            destination in proptest::prelude::any::<u8>(),
        ) {
            let header = RoutingHeader { kind, body_len, session, sender: MemberId(sender), destination: Destination::from_byte(destination) };
            let mut bytes = [0u8; HEADER_LEN];
            header.emit(&mut bytes);
            proptest::prop_assert_eq!(RoutingHeader::parse(&bytes), Ok(header));
        }

        #[test]
        fn frames_round_trip_through_emit_and_the_checked_view(
            body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..2000),
            session in 1u64..,
        ) {
            let mut buf = [0u8; 2100];
            let len = emit_frame(FrameKind::Handshake, session, MemberId(2), Destination::AllMembers, &body, &mut buf).unwrap();
            let frame = Frame::new_checked(&buf[..len]).unwrap();
            proptest::prop_assert_eq!(frame.body(), &body[..]);
            proptest::prop_assert_eq!(RoutingHeader::parse_frame(&frame).unwrap().session, session);
        }

        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..40)) {
            let _ = RoutingHeader::parse(&bytes);
            let _ = Frame::new_checked(&bytes[..]);
            let _ = handshake::HandshakeRepr::parse(&bytes, Some(crate::crypto::srp::Group::Rfc5054_2048));
            if let Some((&t, rest)) = bytes.split_first() {
                let _ = control::ControlRepr::parse(t, rest);
            }
        }
    }

    #[test]
    fn writer_reports_overflow() {
        let mut buf = [0u8; 3];
        let mut writer = Writer::new(&mut buf);
        writer.u8(1);
        writer.put(&[2, 3, 4]);
        assert_eq!(writer.finish(), None);
    }
}
