//! Thin wrappers over the RustCrypto primitives the packet layer uses:
//! AES-128 in CTR mode, HMAC-SHA1, SHA-1 and constant-time comparison.
//!
//! Keyed types compute their expensive state once (the AES key schedule, the
//! HMAC inner/outer pad states) and clone it per packet. All key-dependent
//! state is zeroized on drop, and `Debug` never prints key material.

use core::fmt;

use aes::Aes128Enc;
use aes::cipher::{Block, InnerIvInit, KeyInit, StreamCipherCore, array::Array};
use ctr::{CtrCore, flavors::Ctr32BE};
use hmac::{Hmac, Mac};
use sha1::{Digest, Sha1};
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

/// AES-128 key length in bytes.
pub const AES_KEY_LEN: usize = 16;
/// HMAC-SHA1 key length the protocol uses, in bytes ([`HmacSha1Key`] accepts any length).
pub const MAC_KEY_LEN: usize = 32;
/// HMAC-SHA1 tag length in bytes (also the SHA-1 digest length).
pub const TAG_LEN: usize = 20;
/// AES block length in bytes (the size of a CTR counter block).
pub const BLOCK_LEN: usize = 16;

/// SHA-1 / HMAC-SHA1 block length in bytes.
const SHA1_BLOCK_LEN: usize = 64;

type CtrAes128 = CtrCore<Aes128Enc, Ctr32BE>;

// Compile-time guard: these bounds only hold when the `zeroize` features of
// `aes`, `ctr` and `sha1` (which pulls in `digest/zeroize`) are enabled, so a
// build that would leave key schedules or HMAC pad states behind in memory
// fails here instead of silently compiling.
const _: fn() = assert_zeroize_on_drop::<Aes128Enc>;
const _: fn() = assert_zeroize_on_drop::<CtrAes128>;
const _: fn() = assert_zeroize_on_drop::<Sha1>;
const fn assert_zeroize_on_drop<T: ZeroizeOnDrop>() {}

/// AES-128 with its key schedule computed once (per epoch), zeroized on drop.
///
/// Only the encryption key schedule is kept: CTR mode never runs the inverse
/// cipher.
#[derive(Clone)]
pub struct Aes128Ctr {
    cipher: Aes128Enc,
}

impl Aes128Ctr {
    /// Expands `key` into an AES-128 encryption key schedule.
    pub fn new(key: &[u8; AES_KEY_LEN]) -> Self {
        Self { cipher: Aes128Enc::new(key.into()) }
    }

    /// XORs the CTR keystream into `data`; `counter_block` is the first counter block; the counter
    /// increments as a 32-bit big-endian integer in its last 4 bytes (ctr::Ctr32BE).
    ///
    /// The counter wraps modulo 2^32 without carrying into the first 12 bytes,
    /// so keystream repeats after 2^32 blocks (64 GiB) from one counter block;
    /// callers keep packets far below that. Never panics, whatever the length
    /// of `data`. Applying the same keystream twice restores the input, so this
    /// both encrypts and decrypts.
    pub fn apply_keystream(&self, counter_block: &[u8; BLOCK_LEN], data: &mut [u8]) {
        // Cloning the expanded schedule is a plain copy; the key schedule is
        // not recomputed. The clone is zeroized when `core` drops.
        let mut core = CtrAes128::inner_iv_init(self.cipher.clone(), counter_block.into());
        let (blocks, tail) = Array::slice_as_chunks_mut(data);
        // The block-level API does not check the remaining-block count (which
        // is what could panic in `StreamCipher::apply_keystream`); the Ctr32BE
        // counter itself only does wrapping arithmetic.
        core.apply_keystream_blocks(blocks);
        if !tail.is_empty() {
            let mut keystream = Block::<CtrAes128>::default();
            core.write_keystream_block(&mut keystream);
            for (byte, ks) in tail.iter_mut().zip(keystream.iter()) {
                *byte ^= ks;
            }
            // The unused part of this block is keystream for a counter value
            // the caller may use later: don't leave it on the stack.
            keystream.as_mut_slice().zeroize();
        }
    }
}

impl fmt::Debug for Aes128Ctr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Aes128Ctr { .. }")
    }
}

impl ZeroizeOnDrop for Aes128Ctr {}

/// HMAC-SHA1 keyed once (inner/outer pads precomputed) so each packet costs no extra key blocks.
#[derive(Clone)]
pub struct HmacSha1Key {
    mac: Hmac<Sha1>,
}

impl HmacSha1Key {
    /// Precomputes the HMAC-SHA1 inner and outer pad states for `key`.
    ///
    /// Any key length is accepted (RFC 2104): keys longer than the 64-byte
    /// SHA-1 block are hashed first, shorter ones are zero-padded.
    pub fn new(key: &[u8]) -> Self {
        // Normalise the key to exactly one block ourselves (RFC 2104 §2), so
        // the infallible `KeyInit::new` applies and the padded copy is wiped.
        let mut block = Zeroizing::new([0u8; SHA1_BLOCK_LEN]);
        if key.len() <= SHA1_BLOCK_LEN {
            block[..key.len()].copy_from_slice(key);
        } else {
            let digest = Zeroizing::new(sha1(&[key]));
            block[..TAG_LEN].copy_from_slice(&digest[..]);
        }
        let mac = <Hmac<Sha1> as KeyInit>::new((&*block).into());
        Self { mac }
    }

    /// Returns the HMAC-SHA1 tag over the concatenation of `parts`.
    pub fn compute(&self, parts: &[&[u8]]) -> [u8; TAG_LEN] {
        self.compute_iter(parts.iter().copied())
    }

    /// Checks `tag` against the HMAC-SHA1 over the concatenation of `parts`,
    /// in constant time. A tag of the wrong length (including a truncated
    /// tag) is rejected.
    pub fn verify(&self, parts: &[&[u8]], tag: &[u8]) -> bool {
        let mut mac = self.mac.clone();
        for part in parts {
            mac.update(part);
        }
        mac.verify_slice(tag).is_ok()
    }

    /// Tag over the concatenation of the parts an iterator yields, for callers
    /// in this module tree whose parts are not in one slice (HKDF-Expand).
    pub(crate) fn compute_iter<'a, I>(&self, parts: I) -> [u8; TAG_LEN]
    where
        I: IntoIterator<Item = &'a [u8]>,
    {
        let mut mac = self.mac.clone();
        for part in parts {
            mac.update(part);
        }
        mac.finalize().into_bytes().into()
    }
}

impl fmt::Debug for HmacSha1Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HmacSha1Key { .. }")
    }
}

impl ZeroizeOnDrop for HmacSha1Key {}

/// One-shot HMAC-SHA1 of the concatenation of `parts` under `key` (any length).
pub fn hmac_sha1(key: &[u8], parts: &[&[u8]]) -> [u8; TAG_LEN] {
    HmacSha1Key::new(key).compute(parts)
}

/// SHA-1 digest of the concatenation of `parts`.
pub fn sha1(parts: &[&[u8]]) -> [u8; 20] {
    let mut hasher = Sha1::new();
    for part in parts {
        hasher.update(part);
    }
    hasher.finalize().into()
}

/// Constant-time equality for secrets of equal or unequal length (false if lengths differ).
///
/// Only the lengths (treated as public) influence timing; the contents do not.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_key_material() {
        let aes = Aes128Ctr::new(&[0x42; AES_KEY_LEN]);
        let mac = HmacSha1Key::new(&[0x42; MAC_KEY_LEN]);
        let mut buf = [0u8; 64];
        let mut w = Writer { buf: &mut buf, len: 0 };
        assert!(fmt::write(&mut w, format_args!("{aes:?} {mac:?}")).is_ok());
        let len = w.len;
        assert_eq!(&buf[..len], b"Aes128Ctr { .. } HmacSha1Key { .. }");
    }

    struct Writer<'a> {
        buf: &'a mut [u8],
        len: usize,
    }

    impl fmt::Write for Writer<'_> {
        fn write_str(&mut self, s: &str) -> fmt::Result {
            let end = self.len + s.len();
            let dst = self.buf.get_mut(self.len..end).ok_or(fmt::Error)?;
            dst.copy_from_slice(s.as_bytes());
            self.len = end;
            Ok(())
        }
    }

    #[test]
    fn verify_rejects_wrong_lengths_and_tags() {
        let key = HmacSha1Key::new(b"key");
        let tag = key.compute(&[b"msg"]);
        assert!(key.verify(&[b"msg"], &tag));
        assert!(key.verify(&[b"m", b"", b"sg"], &tag));
        assert!(!key.verify(&[b"msg"], &tag[..TAG_LEN - 1]));
        assert!(!key.verify(&[b"msg"], &tag[..12]));
        assert!(!key.verify(&[b"msg"], &[]));
        let mut long = [0u8; TAG_LEN + 1];
        long[..TAG_LEN].copy_from_slice(&tag);
        assert!(!key.verify(&[b"msg"], &long));
        for i in 0..TAG_LEN {
            let mut bad = tag;
            bad[i] ^= 0x01;
            assert!(!key.verify(&[b"msg"], &bad));
        }
        assert!(!key.verify(&[b"msh"], &tag));
    }

    #[test]
    fn long_key_is_hashed_first() {
        // RFC 2104: a key longer than the block is replaced by its hash.
        let long_key = [0x5au8; 100];
        let hashed = sha1(&[&long_key]);
        assert_eq!(hmac_sha1(&long_key, &[b"x"]), hmac_sha1(&hashed, &[b"x"]));
        // A key of exactly one block is used as is (not hashed).
        let block_key = [0x5au8; SHA1_BLOCK_LEN];
        assert_ne!(hmac_sha1(&block_key, &[b"x"]), hmac_sha1(&sha1(&[&block_key]), &[b"x"]));
    }

    #[test]
    fn ct_eq_lengths() {
        assert!(ct_eq(b"", b""));
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"ab"));
        assert!(!ct_eq(b"", b"a"));
    }

    #[test]
    fn ctr_empty_and_partial_blocks() {
        let aes = Aes128Ctr::new(&[7; AES_KEY_LEN]);
        let ctr = [0x11; BLOCK_LEN];
        aes.apply_keystream(&ctr, &mut []);

        // Keystream of 3 blocks, then every prefix length must agree with it.
        let mut ks = [0u8; 3 * BLOCK_LEN];
        aes.apply_keystream(&ctr, &mut ks);
        for len in 0..=ks.len() {
            let mut buf = [0u8; 3 * BLOCK_LEN];
            aes.apply_keystream(&ctr, &mut buf[..len]);
            assert_eq!(buf[..len], ks[..len]);
            assert!(buf[len..].iter().all(|&b| b == 0));
        }
    }

    #[test]
    fn ctr_counter_wraps_in_low_32_bits() {
        let aes = Aes128Ctr::new(&[9; AES_KEY_LEN]);
        let mut start = [0xab; BLOCK_LEN];
        start[12..].copy_from_slice(&[0xff; 4]);
        let mut two = [0u8; 2 * BLOCK_LEN];
        aes.apply_keystream(&start, &mut two);

        // The second block uses counter ...ab | 00000000: the low 32 bits wrap
        // and the upper 96 bits are untouched.
        let mut wrapped = [0xab; BLOCK_LEN];
        wrapped[12..].copy_from_slice(&[0; 4]);
        let mut one = [0u8; BLOCK_LEN];
        aes.apply_keystream(&wrapped, &mut one);
        assert_eq!(two[BLOCK_LEN..], one);
    }

    #[test]
    fn ctr_is_an_involution() {
        let aes = Aes128Ctr::new(&[3; AES_KEY_LEN]);
        let ctr = [0x22; BLOCK_LEN];
        let original = *b"the quick brown fox jumps over the lazy dog";
        let mut buf = original;
        aes.apply_keystream(&ctr, &mut buf);
        assert_ne!(buf, original);
        aes.apply_keystream(&ctr, &mut buf);
        assert_eq!(buf, original);
    }
}
