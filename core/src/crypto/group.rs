//! Group key distribution: the key-wrap key each member shares with the leader, and the wrapped
//! epoch keys the leader sends it (AES Key Wrap, RFC 3394).
//!
//! ```text
//! KEK      = HKDF-SHA1(salt = SRP salt, IKM = K, info = "lifeline v1 key wrap" | session u64 | member u8)[..16]
//! wrapped  = AES-KW(KEK, epoch u32 | member u8 | flags u8 | 00 00 | encryption key [16] | MAC key [32])   (64 bytes)
//! KeyUpdate body = epoch u32 | wrapped [64]
//! ```
//! K is the member's SRP-6a session key, known only to that member and the leader. The
//! wrapped plaintext repeats the epoch and names the member, so a wrapped key cannot be replayed
//! to another member or presented as another epoch; the receiver also requires the epoch to be
//! newer than the one it has, so an old KeyUpdate replayed by a relay is refused.
//!
//! Flag bit 0 ([`FLAG_DEPARTURE`]): the group moved to this epoch because a member left or was
//! removed. Receivers then drop the previous epoch's keys at once instead of keeping them for
//! the grace period, so the departed member cannot inject under the old keys.

use core::fmt;

use rand_core::CryptoRng;
use zeroize::{Zeroize, ZeroizeOnDrop};

use super::kdf::hkdf_sha1;
use super::keywrap::{self, KEK_LEN};
use super::packet::EpochSecret;
use super::primitives::{AES_KEY_LEN, MAC_KEY_LEN};
use super::srp::{SALT_LEN, SESSION_KEY_LEN};
use crate::wire::{MemberId, Reader};

/// Label of the key-wrap key derivation.
pub const KEK_LABEL: &[u8] = b"lifeline v1 key wrap";
/// HKDF info label of the check code (a short authentication string people compare by phone).
pub const CHECK_CODE_LABEL: &[u8] = b"lifeline v1 check code";
/// The check code has this many decimal digits.
pub const CHECK_CODE_DIGITS: u32 = 6;

/// The check code of one member's join: six decimal digits (`0..1_000_000`) derived from the
/// member's SRP session key with the leader, which only those two endpoints hold. The leader
/// and the member get the same value; someone in the middle who knew the PIN and ran two SRP
/// exchanges (one with each side) would hold two different keys, so the two screens would show
/// different codes (`docs/PROTOCOL.md` §8.5).
pub fn check_code(srp_key: &[u8; SESSION_KEY_LEN], salt: &[u8; SALT_LEN], session: u64, member: MemberId) -> u32 {
    let mut okm = zeroize::Zeroizing::new([0u8; 4]);
    // 4 bytes is far below HKDF-SHA1's limit: this cannot fail.
    let _ = hkdf_sha1(salt, srp_key, &[CHECK_CODE_LABEL, &session.to_be_bytes(), &[member.0]], okm.as_mut_slice());
    u32::from_be_bytes(*okm) % 10u32.pow(CHECK_CODE_DIGITS)
}
/// Plaintext length of a wrapped epoch secret.
pub const EPOCH_PLAINTEXT_LEN: usize = 4 + 4 + AES_KEY_LEN + MAC_KEY_LEN;
/// Length of a wrapped epoch secret.
pub const WRAPPED_LEN: usize = EPOCH_PLAINTEXT_LEN + keywrap::WRAP_OVERHEAD;
/// Length of a KeyUpdate body.
pub const KEY_UPDATE_LEN: usize = 4 + WRAPPED_LEN;
/// Wrapped-plaintext flag: a member departed; accept nothing more under the previous epoch.
pub const FLAG_DEPARTURE: u8 = 0x01;

/// The key a member and the leader share for wrapping group keys. Zeroized on drop.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct KeyWrapKey([u8; KEK_LEN]);

impl fmt::Debug for KeyWrapKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyWrapKey(..)")
    }
}

impl KeyWrapKey {
    /// Derives the key-wrap key for `member` from its SRP session key.
    pub fn derive(srp_key: &[u8; SESSION_KEY_LEN], salt: &[u8; SALT_LEN], session: u64, member: MemberId) -> Self {
        let mut kek = [0u8; KEK_LEN];
        // 16 bytes is far below HKDF-SHA1's 5100-byte limit: this cannot fail.
        let _ = hkdf_sha1(salt, srp_key, &[KEK_LABEL, &session.to_be_bytes(), &[member.0]], &mut kek);
        KeyWrapKey(kek)
    }

    /// The key bytes, for test vectors. Never log them.
    pub fn as_bytes(&self) -> &[u8; KEK_LEN] {
        &self.0
    }

    /// Wraps `secret` for `member`, as a KeyUpdate body, with `flags` ([`FLAG_DEPARTURE`]).
    pub fn wrap_epoch(&self, secret: &EpochSecret, member: MemberId, flags: u8) -> [u8; KEY_UPDATE_LEN] {
        let mut plaintext = zeroize::Zeroizing::new([0u8; EPOCH_PLAINTEXT_LEN]);
        plaintext[..4].copy_from_slice(&secret.epoch.to_be_bytes());
        plaintext[4] = member.0;
        plaintext[5] = flags & FLAG_DEPARTURE;
        plaintext[8..8 + AES_KEY_LEN].copy_from_slice(&secret.encryption_key);
        plaintext[8 + AES_KEY_LEN..].copy_from_slice(&secret.mac_key);
        let mut body = [0u8; KEY_UPDATE_LEN];
        body[..4].copy_from_slice(&secret.epoch.to_be_bytes());
        // Sizes are constants that satisfy key wrap's rules (multiple of 8, ≥ 16, room for the
        // 8-byte overhead): wrapping cannot fail.
        let _ = keywrap::wrap(&self.0, plaintext.as_slice(), &mut body[4..]);
        body
    }

    /// Unwraps a KeyUpdate body meant for `member`, returning the keys and the flags. `None` if it
    /// fails the integrity check, names another member, has unknown flags, or its inner and outer
    /// epochs differ.
    pub fn unwrap_epoch(&self, body: &[u8], member: MemberId) -> Option<(EpochSecret, u8)> {
        let mut reader = Reader::new(body);
        let epoch = reader.u32()?;
        let wrapped = reader.take(WRAPPED_LEN)?;
        if !reader.is_empty() || epoch == 0 {
            return None;
        }
        let mut plaintext = zeroize::Zeroizing::new([0u8; EPOCH_PLAINTEXT_LEN]);
        let len = keywrap::unwrap(&self.0, wrapped, plaintext.as_mut_slice()).ok()?;
        if len != EPOCH_PLAINTEXT_LEN
            || plaintext[..4] != epoch.to_be_bytes()
            || plaintext[4] != member.0
            || plaintext[5] & !FLAG_DEPARTURE != 0
            || plaintext[6..8] != [0, 0]
        {
            return None;
        }
        let mut secret = EpochSecret { epoch, encryption_key: [0; AES_KEY_LEN], mac_key: [0; MAC_KEY_LEN] };
        secret.encryption_key.copy_from_slice(&plaintext[8..8 + AES_KEY_LEN]);
        secret.mac_key.copy_from_slice(&plaintext[8 + AES_KEY_LEN..]);
        Some((secret, plaintext[5]))
    }
}

/// Draws fresh group keys for `epoch` from the CSPRNG.
pub fn generate_epoch<R: CryptoRng + ?Sized>(rng: &mut R, epoch: u32) -> EpochSecret {
    let mut secret = EpochSecret { epoch, encryption_key: [0; AES_KEY_LEN], mac_key: [0; MAC_KEY_LEN] };
    rng.fill_bytes(&mut secret.encryption_key);
    rng.fill_bytes(&mut secret.mac_key);
    secret
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kek(member: u8) -> KeyWrapKey {
        KeyWrapKey::derive(&[5; SESSION_KEY_LEN], &[6; SALT_LEN], 123, MemberId(member))
    }

    fn secret(epoch: u32) -> EpochSecret {
        EpochSecret { epoch, encryption_key: [1; 16], mac_key: [2; 32] }
    }

    #[test]
    fn wrap_round_trips_for_its_member_only() {
        let body = kek(1).wrap_epoch(&secret(4), MemberId(1), FLAG_DEPARTURE);
        let (unwrapped, flags) = kek(1).unwrap_epoch(&body, MemberId(1)).unwrap();
        assert_eq!(flags, FLAG_DEPARTURE);
        assert_eq!((unwrapped.epoch, unwrapped.encryption_key, unwrapped.mac_key), (4, [1; 16], [2; 32]));
        assert!(kek(2).unwrap_epoch(&body, MemberId(2)).is_none(), "another member's KEK");
        assert!(kek(1).unwrap_epoch(&body, MemberId(2)).is_none(), "names another member");
    }

    #[test]
    fn outer_epoch_must_match() {
        let mut body = kek(1).wrap_epoch(&secret(4), MemberId(1), 0);
        body[3] = 5;
        assert!(kek(1).unwrap_epoch(&body, MemberId(1)).is_none());
    }

    #[test]
    fn kek_depends_on_every_input() {
        let base = KeyWrapKey::derive(&[5; 20], &[6; 16], 123, MemberId(1)).0;
        assert_ne!(base, KeyWrapKey::derive(&[7; 20], &[6; 16], 123, MemberId(1)).0);
        assert_ne!(base, KeyWrapKey::derive(&[5; 20], &[7; 16], 123, MemberId(1)).0);
        assert_ne!(base, KeyWrapKey::derive(&[5; 20], &[6; 16], 124, MemberId(1)).0);
        assert_ne!(base, KeyWrapKey::derive(&[5; 20], &[6; 16], 123, MemberId(2)).0);
    }
}
