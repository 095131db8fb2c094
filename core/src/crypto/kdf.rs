//! HKDF (RFC 5869) instantiated with HMAC-SHA1.
//!
//! [`hkdf_sha1`] is the usual extract-then-expand; [`hkdf_sha1_extract`] and
//! [`hkdf_sha1_expand`] expose the two steps. Intermediate key material (the
//! PRK and the `T(i)` blocks) is zeroized before returning.

use core::fmt;
use core::iter::once;

use zeroize::Zeroizing;

use super::primitives::{HmacSha1Key, TAG_LEN, hmac_sha1};

/// Length in bytes of the pseudorandom key HKDF-Extract produces (SHA-1's output length).
pub const PRK_LEN: usize = TAG_LEN;

/// Largest output HKDF-SHA1 can produce: `255 * HashLen` bytes.
pub const MAX_OUTPUT_LEN: usize = 255 * TAG_LEN;

/// HKDF failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum KdfError {
    /// More than [`MAX_OUTPUT_LEN`] (255 × 20) bytes of output were requested.
    OutputTooLong,
}

impl fmt::Display for KdfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::OutputTooLong => f.write_str("HKDF-SHA1 output longer than 255 * 20 bytes"),
        }
    }
}

impl core::error::Error for KdfError {}

/// HKDF-SHA1 (RFC 5869): fills `out` with keying material derived from `ikm`.
///
/// `salt` may be empty (RFC 5869 then uses 20 zero bytes, which HMAC treats
/// identically). `info` is the concatenation of its parts. Fails with
/// [`KdfError::OutputTooLong`], leaving `out` untouched, if
/// `out.len() > 255 * 20`.
pub fn hkdf_sha1(salt: &[u8], ikm: &[u8], info: &[&[u8]], out: &mut [u8]) -> Result<(), KdfError> {
    if out.len() > MAX_OUTPUT_LEN {
        return Err(KdfError::OutputTooLong);
    }
    let prk = hkdf_sha1_extract(salt, ikm);
    hkdf_sha1_expand(&prk[..], info, out)
}

/// HKDF-Extract with HMAC-SHA1: `PRK = HMAC-SHA1(salt, ikm)`.
///
/// The PRK is key material, so it is returned in a [`Zeroizing`] wrapper.
pub fn hkdf_sha1_extract(salt: &[u8], ikm: &[u8]) -> Zeroizing<[u8; PRK_LEN]> {
    Zeroizing::new(hmac_sha1(salt, &[ikm]))
}

/// HKDF-Expand with HMAC-SHA1: fills `out` from the pseudorandom key `prk`
/// (normally the [`PRK_LEN`]-byte output of [`hkdf_sha1_extract`]) and the
/// concatenation of the `info` parts.
///
/// Fails with [`KdfError::OutputTooLong`], leaving `out` untouched, if
/// `out.len() > 255 * 20`.
pub fn hkdf_sha1_expand(prk: &[u8], info: &[&[u8]], out: &mut [u8]) -> Result<(), KdfError> {
    if out.len() > MAX_OUTPUT_LEN {
        return Err(KdfError::OutputTooLong);
    }
    let key = HmacSha1Key::new(prk);
    // T(0) is empty; T(i) = HMAC(PRK, T(i-1) | info | i).
    let mut t = Zeroizing::new([0u8; TAG_LEN]);
    let mut t_len = 0;
    // The length check above bounds the chunk count by 255, so the counter
    // range never runs out before the chunks do.
    for (chunk, counter) in out.chunks_mut(TAG_LEN).zip(1u8..=u8::MAX) {
        let counter = [counter];
        let next =
            Zeroizing::new(key.compute_iter(once(&t[..t_len]).chain(info.iter().copied()).chain(once(&counter[..]))));
        *t = *next;
        t_len = TAG_LEN;
        chunk.copy_from_slice(&t[..chunk.len()]);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn too_long_output_is_rejected_and_untouched() {
        let mut out = [0xa5u8; MAX_OUTPUT_LEN + 1];
        assert_eq!(hkdf_sha1(b"salt", b"ikm", &[b"info"], &mut out), Err(KdfError::OutputTooLong));
        assert!(out.iter().all(|&b| b == 0xa5));
        assert_eq!(hkdf_sha1_expand(&[0; PRK_LEN], &[], &mut out), Err(KdfError::OutputTooLong));
        assert!(out.iter().all(|&b| b == 0xa5));
    }

    #[test]
    fn max_output_is_accepted() {
        let mut out = [0u8; MAX_OUTPUT_LEN];
        assert_eq!(hkdf_sha1(b"salt", b"ikm", &[b"info"], &mut out), Ok(()));
        // The last block is T(255), not a repeat of an earlier one.
        assert_ne!(out[MAX_OUTPUT_LEN - TAG_LEN..], out[MAX_OUTPUT_LEN - 2 * TAG_LEN..MAX_OUTPUT_LEN - TAG_LEN]);
    }

    #[test]
    fn empty_output_is_fine() {
        assert_eq!(hkdf_sha1(b"", b"", &[], &mut []), Ok(()));
    }

    #[test]
    fn outputs_are_prefixes_of_each_other() {
        let mut long = [0u8; 3 * TAG_LEN + 7];
        assert_eq!(hkdf_sha1(b"s", b"k", &[b"a", b"b"], &mut long), Ok(()));
        for len in 0..long.len() {
            let mut short = [0u8; 3 * TAG_LEN + 7];
            assert_eq!(hkdf_sha1(b"s", b"k", &[b"ab"], &mut short[..len]), Ok(()));
            assert_eq!(short[..len], long[..len]);
        }
    }

    #[test]
    fn empty_salt_equals_hashlen_zeros() {
        assert_eq!(*hkdf_sha1_extract(b"", b"ikm"), *hkdf_sha1_extract(&[0; PRK_LEN], b"ikm"));
    }

    #[test]
    fn error_display() {
        use core::fmt::Write;
        struct Buf([u8; 64], usize);
        impl Write for Buf {
            fn write_str(&mut self, s: &str) -> fmt::Result {
                let end = self.1 + s.len();
                self.0.get_mut(self.1..end).ok_or(fmt::Error)?.copy_from_slice(s.as_bytes());
                self.1 = end;
                Ok(())
            }
        }
        let mut buf = Buf([0; 64], 0);
        assert!(write!(buf, "{}", KdfError::OutputTooLong).is_ok());
        assert!(buf.1 > 0);
    }
}
