//! File transfer messages (content type `File`, which needs the `FileTransfer` grant).
//!
//! | type | message    | sent by   | payload after the type byte                                 |
//! |------|------------|-----------|-------------------------------------------------------------|
//! | 0x01 | `Offer`    | sender    | id u32, size u64, SHA-256 [32], name (len u8, UTF-8)        |
//! | 0x02 | `Fetch`    | receiver  | id u32, name (len u8, UTF-8)                                |
//! | 0x03 | `Accept`   | receiver  | id u32, offset u64, window u32                              |
//! | 0x04 | `Chunk`    | sender    | id u32, offset u64, data (the rest, 1 to [`MAX_CHUNK_LEN`]) |
//! | 0x05 | `Ack`      | receiver  | id u32, received u64                                        |
//! | 0x06 | `Complete` | receiver  | id u32                                                      |
//! | 0x07 | `Cancel`   | either    | id u32, by u8 (0 sender, 1 receiver), reason u8             |
//!
//! A transfer is pushed (`Offer`) or pulled (`Fetch`, answered by an `Offer` with the same id
//! or a `Cancel`). The endpoint that starts it picks the id: an even id if its member id is lower
//! than the peer's, an odd one otherwise, so the two never collide. The receiver answers an
//! `Offer` with `Accept` (from `offset`: 0, or the length of a partial copy it kept, to resume)
//! or `Cancel`. The sender then sends `Chunk`s in order, never more than `window` bytes past the
//! receiver's last `Ack` (or the accepted offset). A chunk that is not at the expected offset
//! (the relay drops data for a slow member; a reconnect loses what was in flight) is discarded,
//! and the receiver sends `Accept` again with the offset it expects: the sender goes on from
//! there. After the last byte the receiver checks the SHA-256 of the whole file, then sends
//! `Complete`, or `Cancel` with [`CancelReason::Integrity`].
//!
//! File names are plain names ([`is_plain_file_name`]): no directories, so a peer can never
//! name a path. Where a received file is stored, and that an existing file is never silently
//! overwritten, is the receiving application's duty.

use crate::wire::{MAX_PAYLOAD_LEN, Reader, Writer};

use super::{read_text, write_text};

/// Longest file name, in bytes.
pub const MAX_NAME_LEN: usize = 255;
/// Bytes before a chunk's data: type, id, offset.
pub const CHUNK_OVERHEAD: usize = 1 + 4 + 8;
/// Most file bytes one `Chunk` carries.
pub const MAX_CHUNK_LEN: usize = MAX_PAYLOAD_LEN - CHUNK_OVERHEAD;

/// Why a transfer was cancelled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum CancelReason {
    /// The receiving person (or policy) declined.
    Declined,
    /// No such file to fetch.
    NotFound,
    /// The received bytes do not match the offered SHA-256.
    Integrity,
    /// The receiver could not store it (disk full, write error).
    Storage,
    /// A file of that name exists and the receiver will not overwrite it.
    Exists,
    /// The customer withdrew the file-transfer grant.
    Revoked,
    /// A person cancelled it.
    Aborted,
    /// Larger than the receiver accepts.
    TooLarge,
    /// The message broke the protocol (an offset out of range, an unknown id).
    Protocol,
    /// Any other value.
    Other,
}

impl CancelReason {
    /// Wire byte.
    pub const fn to_byte(self) -> u8 {
        match self {
            CancelReason::Declined => 1,
            CancelReason::NotFound => 2,
            CancelReason::Integrity => 3,
            CancelReason::Storage => 4,
            CancelReason::Exists => 5,
            CancelReason::Revoked => 6,
            CancelReason::Aborted => 7,
            CancelReason::TooLarge => 8,
            CancelReason::Protocol => 9,
            CancelReason::Other => 0,
        }
    }

    /// Parses the wire byte; unknown values are [`CancelReason::Other`].
    pub const fn from_byte(byte: u8) -> CancelReason {
        match byte {
            1 => CancelReason::Declined,
            2 => CancelReason::NotFound,
            3 => CancelReason::Integrity,
            4 => CancelReason::Storage,
            5 => CancelReason::Exists,
            6 => CancelReason::Revoked,
            7 => CancelReason::Aborted,
            8 => CancelReason::TooLarge,
            9 => CancelReason::Protocol,
            _ => CancelReason::Other,
        }
    }
}

/// Which side of a transfer sent a `Cancel`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Side {
    /// The side that has the file.
    Sender,
    /// The side that stores it.
    Receiver,
}

/// One file-transfer message, borrowing from the payload it was parsed from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FileRepr<'a> {
    /// "I have this file for you."
    Offer {
        /// Transfer id.
        id: u32,
        /// Length in bytes.
        size: u64,
        /// SHA-256 of the whole file.
        sha256: [u8; 32],
        /// A plain file name.
        name: &'a str,
    },
    /// "Send me this file" (answered by `Offer` with the same id, or `Cancel`).
    Fetch {
        /// Transfer id.
        id: u32,
        /// A plain file name.
        name: &'a str,
    },
    /// "Send from `offset`; at most `window` bytes beyond my last acknowledgement."
    Accept {
        /// Transfer id.
        id: u32,
        /// First byte wanted.
        offset: u64,
        /// Bytes the sender may have unacknowledged (at least 1).
        window: u32,
    },
    /// File bytes at `offset`.
    Chunk {
        /// Transfer id.
        id: u32,
        /// Position of `data` in the file.
        offset: u64,
        /// 1 to [`MAX_CHUNK_LEN`] bytes.
        data: &'a [u8],
    },
    /// "I have stored everything before `received`."
    Ack {
        /// Transfer id.
        id: u32,
        /// Bytes stored.
        received: u64,
    },
    /// "All bytes arrived and the SHA-256 matches."
    Complete {
        /// Transfer id.
        id: u32,
    },
    /// The transfer ends unfinished.
    Cancel {
        /// Transfer id.
        id: u32,
        /// Who cancelled.
        by: Side,
        /// Why.
        reason: CancelReason,
    },
}

mod message_type {
    pub(super) const OFFER: u8 = 0x01;
    pub(super) const FETCH: u8 = 0x02;
    pub(super) const ACCEPT: u8 = 0x03;
    pub(super) const CHUNK: u8 = 0x04;
    pub(super) const ACK: u8 = 0x05;
    pub(super) const COMPLETE: u8 = 0x06;
    pub(super) const CANCEL: u8 = 0x07;
}

/// Whether `name` is a plain file name: 1 to 255 bytes, no `/`, `\`, `:`, control characters,
/// not `.` or `..`, no leading or trailing space or dot-only forms. A receiver still decides
/// where it goes; this only guarantees the name cannot point anywhere.
pub fn is_plain_file_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name != "."
        && name != ".."
        && !name.starts_with(' ')
        && !name.ends_with(' ')
        && !name.chars().any(|c| c == '/' || c == '\\' || c == ':' || c.is_control())
}

impl<'a> FileRepr<'a> {
    /// The transfer this message belongs to.
    pub const fn id(&self) -> u32 {
        match *self {
            FileRepr::Offer { id, .. }
            | FileRepr::Fetch { id, .. }
            | FileRepr::Accept { id, .. }
            | FileRepr::Chunk { id, .. }
            | FileRepr::Ack { id, .. }
            | FileRepr::Complete { id }
            | FileRepr::Cancel { id, .. } => id,
        }
    }

    /// Parses one payload; `None` if it is malformed in any way.
    pub fn parse(payload: &'a [u8]) -> Option<FileRepr<'a>> {
        let mut reader = Reader::new(payload);
        let message = reader.u8()?;
        let id = reader.u32()?;
        let repr = match message {
            message_type::OFFER => {
                let size = reader.u64()?;
                let sha256 = reader.array::<32>()?;
                let name = read_text(&mut reader, 1, MAX_NAME_LEN)?;
                if !is_plain_file_name(name) {
                    return None;
                }
                FileRepr::Offer { id, size, sha256, name }
            }
            message_type::FETCH => {
                let name = read_text(&mut reader, 1, MAX_NAME_LEN)?;
                if !is_plain_file_name(name) {
                    return None;
                }
                FileRepr::Fetch { id, name }
            }
            message_type::ACCEPT => {
                let offset = reader.u64()?;
                let window = reader.u32()?;
                if window == 0 {
                    return None;
                }
                FileRepr::Accept { id, offset, window }
            }
            message_type::CHUNK => {
                let offset = reader.u64()?;
                let data = reader.rest();
                if data.is_empty() || data.len() > MAX_CHUNK_LEN || offset.checked_add(data.len() as u64).is_none() {
                    return None;
                }
                FileRepr::Chunk { id, offset, data }
            }
            message_type::ACK => FileRepr::Ack { id, received: reader.u64()? },
            message_type::COMPLETE => FileRepr::Complete { id },
            message_type::CANCEL => {
                let by = match reader.u8()? {
                    0 => Side::Sender,
                    1 => Side::Receiver,
                    _ => return None,
                };
                FileRepr::Cancel { id, by, reason: CancelReason::from_byte(reader.u8()?) }
            }
            _ => return None,
        };
        reader.is_empty().then_some(repr)
    }

    /// Writes the payload into `out` and returns its length; `None` (and `out` may be partly
    /// written) if it does not fit or a field is out of range.
    pub fn emit(&self, out: &mut [u8]) -> Option<usize> {
        let mut writer = Writer::new(out);
        match *self {
            FileRepr::Offer { id, size, sha256, name } => {
                if !is_plain_file_name(name) {
                    return None;
                }
                writer.u8(message_type::OFFER);
                writer.u32(id);
                writer.u64(size);
                writer.put(&sha256);
                write_text(&mut writer, name)?;
            }
            FileRepr::Fetch { id, name } => {
                if !is_plain_file_name(name) {
                    return None;
                }
                writer.u8(message_type::FETCH);
                writer.u32(id);
                write_text(&mut writer, name)?;
            }
            FileRepr::Accept { id, offset, window } => {
                if window == 0 {
                    return None;
                }
                writer.u8(message_type::ACCEPT);
                writer.u32(id);
                writer.u64(offset);
                writer.u32(window);
            }
            FileRepr::Chunk { id, offset, data } => {
                if data.is_empty() || data.len() > MAX_CHUNK_LEN {
                    return None;
                }
                writer.u8(message_type::CHUNK);
                writer.u32(id);
                writer.u64(offset);
                writer.put(data);
            }
            FileRepr::Ack { id, received } => {
                writer.u8(message_type::ACK);
                writer.u32(id);
                writer.u64(received);
            }
            FileRepr::Complete { id } => {
                writer.u8(message_type::COMPLETE);
                writer.u32(id);
            }
            FileRepr::Cancel { id, by, reason } => {
                writer.u8(message_type::CANCEL);
                writer.u32(id);
                writer.u8(match by {
                    Side::Sender => 0,
                    Side::Receiver => 1,
                });
                writer.u8(reason.to_byte());
            }
        }
        writer.finish()
    }
}

/// Whether the endpoint `local` (talking to `peer`) may start a transfer with `id`: even ids
/// belong to the lower member id, odd ids to the higher.
pub const fn id_is_ours(local: u8, peer: u8, id: u32) -> bool {
    (id & 1 == 0) == (local < peer)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(message: FileRepr<'_>) {
        let mut buf = [0u8; MAX_PAYLOAD_LEN + 1];
        let len = message.emit(&mut buf).unwrap();
        assert!(len <= MAX_PAYLOAD_LEN);
        assert_eq!(FileRepr::parse(&buf[..len]), Some(message));
        if !matches!(message, FileRepr::Chunk { .. }) {
            assert_eq!(FileRepr::parse(&buf[..len + 1]), None, "trailing byte {message:?}");
        }
        for cut in 0..len {
            if let Some(parsed) = FileRepr::parse(&buf[..cut]) {
                assert!(matches!(parsed, FileRepr::Chunk { .. }), "a truncated {message:?} parsed");
            }
        }
    }

    #[test]
    fn every_message_round_trips() {
        let data = [7u8; MAX_CHUNK_LEN];
        round_trip(FileRepr::Offer { id: 2, size: 1 << 30, sha256: [9; 32], name: "report 2026.pdf" });
        round_trip(FileRepr::Fetch { id: 3, name: "system.log" });
        round_trip(FileRepr::Accept { id: 2, offset: 65_536, window: 512 * 1024 });
        round_trip(FileRepr::Chunk { id: 2, offset: 0, data: &data });
        round_trip(FileRepr::Chunk { id: 2, offset: 5, data: b"x" });
        round_trip(FileRepr::Ack { id: 2, received: 1 << 30 });
        round_trip(FileRepr::Complete { id: 2 });
        round_trip(FileRepr::Cancel { id: 2, by: Side::Receiver, reason: CancelReason::Integrity });
    }

    #[test]
    fn names_cannot_point_anywhere() {
        for bad in ["", ".", "..", "../etc/passwd", "a/b", "a\\b", "C:x", "a\0b", "tab\tname", " lead", "trail "] {
            assert!(!is_plain_file_name(bad), "{bad:?}");
            let mut buf = [0u8; 400];
            assert_eq!(FileRepr::Offer { id: 1, size: 1, sha256: [0; 32], name: bad }.emit(&mut buf), None);
        }
        assert!(is_plain_file_name("..hidden"));
        assert!(is_plain_file_name("notes.txt"));
        // A hostile offer with a traversal name does not parse.
        let mut buf = [0u8; 64];
        buf[0] = 0x02;
        buf[5] = 5;
        buf[6..11].copy_from_slice(b"../x\0");
        assert_eq!(FileRepr::parse(&buf[..11]), None);
        buf[6..11].copy_from_slice(b"a/../");
        assert_eq!(FileRepr::parse(&buf[..11]), None);
    }

    #[test]
    fn hostile_values_are_refused() {
        let mut buf = [0u8; 32];
        let len = FileRepr::Accept { id: 1, offset: 0, window: 1 }.emit(&mut buf).unwrap();
        buf[len - 1] = 0;
        assert_eq!(FileRepr::parse(&buf[..len]), None, "a zero window");
        let len = FileRepr::Chunk { id: 1, offset: u64::MAX - 1, data: b"a" }.emit(&mut buf).unwrap();
        assert!(FileRepr::parse(&buf[..len]).is_some());
        let len2 = FileRepr::Chunk { id: 1, offset: u64::MAX - 1, data: b"ab" }.emit(&mut buf).unwrap();
        assert_eq!(FileRepr::parse(&buf[..len2]), None, "offset + length overflows");
        assert_eq!(FileRepr::parse(&[0x04, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0]), None, "an empty chunk");
        assert_eq!(FileRepr::parse(&[0x07, 0, 0, 0, 1, 2, 1]), None, "a bad side");
        assert_eq!(FileRepr::parse(&[0x09, 0, 0, 0, 1]), None, "unknown type");
        let too_long = [0u8; MAX_PAYLOAD_LEN + 1];
        let mut big = [0u8; MAX_PAYLOAD_LEN + 1];
        big[0] = 0x04;
        assert_eq!(FileRepr::parse(&big), None, "a chunk over the limit");
        assert_eq!(FileRepr::Chunk { id: 1, offset: 0, data: &too_long[..MAX_CHUNK_LEN + 1] }.emit(&mut big), None);
        assert_eq!(CancelReason::from_byte(200), CancelReason::Other);
    }

    #[test]
    fn ids_never_collide() {
        for id in 0..8 {
            assert_ne!(id_is_ours(1, 4, id), id_is_ours(4, 1, id));
        }
        assert!(id_is_ours(0, 1, 2));
        assert!(id_is_ours(1, 0, 3));
    }
}
