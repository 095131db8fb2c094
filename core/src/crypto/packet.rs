//! Packet protection (the seed's Multicast Packet Security Layer): AES-128-CTR, then HMAC-SHA1
//! over the routing header and ciphertext (encrypt-then-MAC).
//!
//! A protected body is `epoch u32 | sequence u64 | ciphertext | tag [20]`, where the ciphertext
//! is the CTR encryption of `content type u8 | flags u8 | payload` and the tag is
//! `HMAC-SHA1(mac_key, header [16] | epoch | sequence | ciphertext)`: it covers every byte of the
//! frame before it, so the routing header cannot be changed or a frame moved to another session.
//!
//! The CTR counter block is unique per (epoch, sender, sequence):
//! `epoch u32 | sender u8 | low 56 bits of sequence | block counter u32 (from 0)`. The leader
//! keeps member ids unique, each sender numbers its frames from 0 in every epoch, and a sender
//! stops at [`SEQUENCE_HARD_LIMIT`], so no counter block is ever used twice under one key.

use core::fmt;

use zeroize::{Zeroize, ZeroizeOnDrop};

use super::primitives::{AES_KEY_LEN, Aes128Ctr, BLOCK_LEN, HmacSha1Key, MAC_KEY_LEN, TAG_LEN};
use crate::wire::{HEADER_LEN, MAX_PAYLOAD_LEN, MemberId, RoutingHeader};

/// Offset of the inner plaintext (content type, flags, payload) within a frame.
pub const PLAINTEXT_OFFSET: usize = HEADER_LEN + 4 + 8;
/// Largest inner plaintext: content type, flags and a maximum payload.
pub const MAX_PLAINTEXT_LEN: usize = 2 + MAX_PAYLOAD_LEN;
/// A sender never uses a sequence number at or above this in one epoch; it must rekey first.
/// 2^32 frames keeps every CTR block counter and the HMAC-SHA1 usage far from any bound.
pub const SEQUENCE_HARD_LIMIT: u64 = 1 << 32;

/// The raw group keys of one epoch, as the leader generates and wraps them. Zeroized on drop.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct EpochSecret {
    /// Epoch id (never zero; strictly increasing within a session).
    pub epoch: u32,
    /// AES-128 key.
    pub encryption_key: [u8; AES_KEY_LEN],
    /// HMAC-SHA1 key.
    pub mac_key: [u8; MAC_KEY_LEN],
}

impl fmt::Debug for EpochSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EpochSecret").field("epoch", &self.epoch).finish_non_exhaustive()
    }
}

/// One epoch's keys, ready to use: key schedules computed once.
pub struct EpochKeys {
    secret: EpochSecret,
    cipher: Aes128Ctr,
    mac: HmacSha1Key,
}

impl fmt::Debug for EpochKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EpochKeys").field("epoch", &self.secret.epoch).finish_non_exhaustive()
    }
}

/// A protected frame failed its checks. Deliberately says nothing more.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Unauthentic;

impl fmt::Display for Unauthentic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("frame failed authentication")
    }
}

impl core::error::Error for Unauthentic {}

impl EpochKeys {
    /// Prepares `secret` for use.
    pub fn new(secret: EpochSecret) -> Self {
        let cipher = Aes128Ctr::new(&secret.encryption_key);
        let mac = HmacSha1Key::new(&secret.mac_key);
        EpochKeys { secret, cipher, mac }
    }

    /// The epoch id.
    pub fn epoch(&self) -> u32 {
        self.secret.epoch
    }

    /// The raw keys (for wrapping to a member).
    pub fn secret(&self) -> &EpochSecret {
        &self.secret
    }

    /// Protects a frame whose inner plaintext is already at
    /// `frame[PLAINTEXT_OFFSET..PLAINTEXT_OFFSET + plaintext_len]`: writes the header, epoch and
    /// sequence, encrypts in place and appends the tag. `frame` must be exactly
    /// `PLAINTEXT_OFFSET + plaintext_len + TAG_LEN` bytes and `header.body_len` must match; both
    /// are this crate's invariants, checked by the caller.
    pub fn seal_in_place(&self, header: &RoutingHeader, sequence: u64, frame: &mut [u8]) {
        debug_assert_eq!(frame.len(), header.frame_len());
        let tag_start = frame.len() - TAG_LEN;
        let (head, rest) = frame.split_at_mut(HEADER_LEN);
        if let Ok(head) = <&mut [u8; HEADER_LEN]>::try_from(head) {
            header.emit(head);
        }
        rest[..4].copy_from_slice(&self.secret.epoch.to_be_bytes());
        rest[4..12].copy_from_slice(&sequence.to_be_bytes());
        let counter = counter_block(self.secret.epoch, header.sender, sequence);
        self.cipher.apply_keystream(&counter, &mut frame[PLAINTEXT_OFFSET..tag_start]);
        let tag = self.mac.compute(&[&frame[..tag_start]]);
        frame[tag_start..].copy_from_slice(&tag);
    }

    /// Verifies the tag of a whole protected frame (constant time) and, only if it is
    /// authentic, decrypts the inner plaintext in place. Returns the sequence number and the
    /// plaintext range within `frame`. The caller has parsed the header and looked up this epoch;
    /// the sender id for the counter block is read from the (authenticated) header.
    pub fn open_in_place(&self, frame: &mut [u8]) -> Result<(u64, core::ops::Range<usize>), Unauthentic> {
        let Some(tag_start) = frame.len().checked_sub(TAG_LEN).filter(|start| *start >= PLAINTEXT_OFFSET + 2) else {
            return Err(Unauthentic);
        };
        let (authenticated, tag) = frame.split_at(tag_start);
        if !self.mac.verify(&[authenticated], tag) {
            return Err(Unauthentic);
        }
        let mut sequence = [0u8; 8];
        sequence.copy_from_slice(&frame[HEADER_LEN + 4..PLAINTEXT_OFFSET]);
        let sequence = u64::from_be_bytes(sequence);
        if sequence >= SEQUENCE_HARD_LIMIT {
            return Err(Unauthentic);
        }
        let sender = MemberId(frame[12]);
        let counter = counter_block(self.secret.epoch, sender, sequence);
        self.cipher.apply_keystream(&counter, &mut frame[PLAINTEXT_OFFSET..tag_start]);
        Ok((sequence, PLAINTEXT_OFFSET..tag_start))
    }
}

/// Reads the epoch of a protected frame (after the header), if the frame is long enough.
pub fn frame_epoch(frame: &[u8]) -> Option<u32> {
    let bytes = frame.get(HEADER_LEN..HEADER_LEN + 4)?;
    Some(u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
}

/// The first CTR counter block of a frame: `epoch | sender | sequence (low 56 bits) | 0u32`.
pub fn counter_block(epoch: u32, sender: MemberId, sequence: u64) -> [u8; BLOCK_LEN] {
    let mut block = [0u8; BLOCK_LEN];
    block[..4].copy_from_slice(&epoch.to_be_bytes());
    block[4] = sender.0;
    block[5..12].copy_from_slice(&sequence.to_be_bytes()[1..]);
    block
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::vec::Vec;

    use super::*;
    use crate::wire::{Destination, FrameKind};
    use proptest::prelude::*;

    fn keys(epoch: u32) -> EpochKeys {
        EpochKeys::new(EpochSecret { epoch, encryption_key: [epoch as u8; 16], mac_key: [0x22 ^ epoch as u8; 32] })
    }

    fn sealed(keys: &EpochKeys, sequence: u64, payload: &[u8]) -> Vec<u8> {
        let plaintext_len = 2 + payload.len();
        let header = RoutingHeader {
            kind: FrameKind::SecureData,
            body_len: (12 + plaintext_len + TAG_LEN) as u16,
            session: 42,
            sender: MemberId(2),
            destination: Destination::AllMembers,
        };
        let mut frame = std::vec![0u8; header.frame_len()];
        frame[PLAINTEXT_OFFSET] = 1;
        frame[PLAINTEXT_OFFSET + 2..PLAINTEXT_OFFSET + 2 + payload.len()].copy_from_slice(payload);
        keys.seal_in_place(&header, sequence, &mut frame);
        frame
    }

    #[test]
    fn seal_then_open() {
        let keys = keys(1);
        let mut frame = sealed(&keys, 7, b"secret words");
        assert!(!frame.windows(12).any(|w| w == b"secret words"), "no plaintext on the wire");
        let (sequence, range) = keys.open_in_place(&mut frame).unwrap();
        assert_eq!(sequence, 7);
        assert_eq!(&frame[range][2..], b"secret words");
    }

    #[test]
    fn empty_payload_is_protected_too() {
        let keys = keys(1);
        let mut frame = sealed(&keys, 0, b"");
        frame[PLAINTEXT_OFFSET] ^= 1;
        assert_eq!(keys.open_in_place(&mut frame), Err(Unauthentic));
    }

    #[test]
    fn wrong_epoch_keys_or_sender_fail() {
        let mut frame = sealed(&keys(1), 0, b"x");
        assert_eq!(keys(2).open_in_place(&mut frame.clone()), Err(Unauthentic));
        frame[12] = 3; // another sender: the header is authenticated too
        assert_eq!(keys(1).open_in_place(&mut frame), Err(Unauthentic));
    }

    #[test]
    fn counter_blocks_differ_by_every_input() {
        let base = counter_block(1, MemberId(1), 1);
        assert_ne!(base, counter_block(2, MemberId(1), 1));
        assert_ne!(base, counter_block(1, MemberId(2), 1));
        assert_ne!(base, counter_block(1, MemberId(1), 2));
        assert_eq!(&base[12..], &[0, 0, 0, 0]);
    }

    proptest! {
        #[test]
        fn any_single_bit_flip_is_rejected(payload in proptest::collection::vec(any::<u8>(), 0..300), bit in any::<usize>()) {
            let keys = keys(3);
            let frame = sealed(&keys, 5, &payload);
            let mut tampered = frame.clone();
            let bit = bit % (tampered.len() * 8);
            tampered[bit / 8] ^= 1 << (bit % 8);
            prop_assert_eq!(keys.open_in_place(&mut tampered), Err(Unauthentic));
        }
    }
}
