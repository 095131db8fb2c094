//! AES Key Wrap (RFC 3394, NIST SP 800-38F "KW") over the `aes-kw` crate.
//!
//! The protocol wraps keys under an AES-128 KEK ([`wrap`], [`unwrap`]);
//! [`wrap_with_kek`] and [`unwrap_with_kek`] also accept 192- and 256-bit KEKs
//! so the RFC's test vectors can be checked. Key data must be a multiple of
//! 8 bytes and at least 16 bytes (two 64-bit semiblocks, as RFC 3394 requires);
//! a wrapped key is [`WRAP_OVERHEAD`] bytes longer than the key data.

use core::fmt;

use aes::cipher::typenum::U16;
use aes::cipher::{BlockCipherDecrypt, BlockCipherEncrypt, KeyInit};
use aes_kw::{AesKw, KwAes128, KwAes192, KwAes256};
use zeroize::{Zeroize, ZeroizeOnDrop};

/// Length in bytes of the AES-128 key-encryption key the protocol uses.
pub const KEK_LEN: usize = 16;
/// How many bytes wrapping adds to the key data (the 64-bit integrity check value).
pub const WRAP_OVERHEAD: usize = 8;

/// RFC 3394 works on 64-bit semiblocks.
const SEMIBLOCK_LEN: usize = 8;
/// RFC 3394 requires at least two semiblocks of key data.
const MIN_KEY_DATA_LEN: usize = 2 * SEMIBLOCK_LEN;

// Compile-time guard: holds only with the `zeroize` feature of `aes-kw`
// (which also turns on `aes/zeroize`), so the KEK schedule is wiped on drop.
const _: fn() = assert_zeroize_on_drop::<KwAes128>;
const _: fn() = assert_zeroize_on_drop::<KwAes256>;
const fn assert_zeroize_on_drop<T: ZeroizeOnDrop>() {}

/// Key wrap / unwrap failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum KeyWrapError {
    /// The key data (or wrapped key) is not a multiple of 8 bytes, or is
    /// shorter than 16 bytes of key data (24 bytes wrapped).
    InvalidLength,
    /// The output buffer is too small; it was left untouched.
    InsufficientSize {
        /// The output length needed, in bytes.
        required: usize,
    },
    /// Unwrapping did not reproduce the RFC 3394 integrity check value: wrong
    /// KEK or corrupted wrapped key. No key data was released.
    IntegrityCheckFailed,
    /// The KEK is not 16, 24 or 32 bytes long.
    InvalidKekLength,
}

impl fmt::Display for KeyWrapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidLength => {
                f.write_str("key wrap input must be a multiple of 8 bytes and hold at least 16 bytes of key data")
            }
            Self::InsufficientSize { required } => {
                write!(f, "key wrap output buffer too small: {required} bytes required")
            }
            Self::IntegrityCheckFailed => f.write_str("key unwrap integrity check failed"),
            Self::InvalidKekLength => f.write_str("key-encryption key must be 16, 24 or 32 bytes"),
        }
    }
}

impl core::error::Error for KeyWrapError {}

/// Wraps `key_data` under the AES-128 `kek` into `out`, returning the wrapped
/// length (`key_data.len() + WRAP_OVERHEAD`).
///
/// Errors: [`KeyWrapError::InvalidLength`] if `key_data` is not a multiple of
/// 8 bytes or is shorter than 16; [`KeyWrapError::InsufficientSize`] if `out`
/// is too small (then `out` is untouched). Bytes of `out` past the returned
/// length are never written.
pub fn wrap(kek: &[u8; KEK_LEN], key_data: &[u8], out: &mut [u8]) -> Result<usize, KeyWrapError> {
    wrap_inner(&KwAes128::new(kek.into()), key_data, out)
}

/// Unwraps `wrapped` under the AES-128 `kek` into `out`, returning the key
/// data length (`wrapped.len() - WRAP_OVERHEAD`).
///
/// Errors: [`KeyWrapError::InvalidLength`] if `wrapped` is not a multiple of
/// 8 bytes or is shorter than 24; [`KeyWrapError::InsufficientSize`] if `out`
/// is too small (then `out` is untouched); [`KeyWrapError::IntegrityCheckFailed`]
/// if the integrity check fails, in which case the bytes of `out` that held
/// intermediate data are zeroized.
pub fn unwrap(kek: &[u8; KEK_LEN], wrapped: &[u8], out: &mut [u8]) -> Result<usize, KeyWrapError> {
    unwrap_inner(&KwAes128::new(kek.into()), wrapped, out)
}

/// [`wrap`] with a 16-, 24- or 32-byte KEK (AES-128/192/256), for the RFC's
/// test vectors; any other KEK length gives [`KeyWrapError::InvalidKekLength`].
pub fn wrap_with_kek(kek: &[u8], key_data: &[u8], out: &mut [u8]) -> Result<usize, KeyWrapError> {
    match kek.len() {
        16 => wrap_inner(&new_kw::<KwAes128>(kek)?, key_data, out),
        24 => wrap_inner(&new_kw::<KwAes192>(kek)?, key_data, out),
        32 => wrap_inner(&new_kw::<KwAes256>(kek)?, key_data, out),
        _ => Err(KeyWrapError::InvalidKekLength),
    }
}

/// [`unwrap`] with a 16-, 24- or 32-byte KEK (AES-128/192/256), for the RFC's
/// test vectors; any other KEK length gives [`KeyWrapError::InvalidKekLength`].
pub fn unwrap_with_kek(kek: &[u8], wrapped: &[u8], out: &mut [u8]) -> Result<usize, KeyWrapError> {
    match kek.len() {
        16 => unwrap_inner(&new_kw::<KwAes128>(kek)?, wrapped, out),
        24 => unwrap_inner(&new_kw::<KwAes192>(kek)?, wrapped, out),
        32 => unwrap_inner(&new_kw::<KwAes256>(kek)?, wrapped, out),
        _ => Err(KeyWrapError::InvalidKekLength),
    }
}

fn new_kw<K: KeyInit>(kek: &[u8]) -> Result<K, KeyWrapError> {
    K::new_from_slice(kek).map_err(|_| KeyWrapError::InvalidKekLength)
}

/// Checks that `len` bytes of key data are a whole number of semiblocks, at least two.
fn check_key_data_len(len: usize) -> Result<(), KeyWrapError> {
    if !len.is_multiple_of(SEMIBLOCK_LEN) || len < MIN_KEY_DATA_LEN { Err(KeyWrapError::InvalidLength) } else { Ok(()) }
}

fn wrap_inner<C>(kw: &AesKw<C>, key_data: &[u8], out: &mut [u8]) -> Result<usize, KeyWrapError>
where
    C: BlockCipherEncrypt<BlockSize = U16>,
{
    check_key_data_len(key_data.len())?;
    let required = key_data.len().checked_add(WRAP_OVERHEAD).ok_or(KeyWrapError::InvalidLength)?;
    let dst = out.get_mut(..required).ok_or(KeyWrapError::InsufficientSize { required })?;
    kw.wrap_key(key_data, dst).map_err(map_error)?;
    Ok(required)
}

fn unwrap_inner<C>(kw: &AesKw<C>, wrapped: &[u8], out: &mut [u8]) -> Result<usize, KeyWrapError>
where
    C: BlockCipherDecrypt<BlockSize = U16>,
{
    let required = wrapped.len().checked_sub(WRAP_OVERHEAD).ok_or(KeyWrapError::InvalidLength)?;
    check_key_data_len(required)?;
    let dst = out.get_mut(..required).ok_or(KeyWrapError::InsufficientSize { required })?;
    match kw.unwrap_key(wrapped, dst) {
        Ok(_) => Ok(required),
        Err(err) => {
            // aes-kw already clears the buffer on an integrity failure; wipe
            // it again (non-elidably) so no partial plaintext can survive.
            dst.zeroize();
            Err(map_error(err))
        }
    }
}

fn map_error(err: aes_kw::Error) -> KeyWrapError {
    match err {
        aes_kw::Error::InvalidDataSize => KeyWrapError::InvalidLength,
        aes_kw::Error::InvalidOutputSize { expected_len } => KeyWrapError::InsufficientSize { required: expected_len },
        aes_kw::Error::IntegrityCheckFailed => KeyWrapError::IntegrityCheckFailed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEK: [u8; KEK_LEN] = [0x0f; KEK_LEN];
    const KEY: [u8; 32] = [0x5c; 32];

    #[test]
    fn round_trip_lengths() {
        for len in (MIN_KEY_DATA_LEN..=KEY.len()).step_by(SEMIBLOCK_LEN) {
            let mut wrapped = [0u8; 40];
            assert_eq!(wrap(&KEK, &KEY[..len], &mut wrapped), Ok(len + WRAP_OVERHEAD));
            let mut unwrapped = [0u8; 40];
            assert_eq!(unwrap(&KEK, &wrapped[..len + WRAP_OVERHEAD], &mut unwrapped), Ok(len));
            assert_eq!(unwrapped[..len], KEY[..len]);
            assert!(unwrapped[len..].iter().all(|&b| b == 0));
        }
    }

    #[test]
    fn wrap_rejects_bad_key_data_lengths() {
        for len in [0, 1, 7, 8, 15, 17, 23, 31] {
            let mut out = [0xa5u8; 64];
            assert_eq!(wrap(&KEK, &KEY[..len], &mut out), Err(KeyWrapError::InvalidLength), "len {len}");
            assert!(out.iter().all(|&b| b == 0xa5));
        }
    }

    #[test]
    fn unwrap_rejects_bad_wrapped_lengths() {
        let input = [0u8; 48];
        for len in [0, 1, 7, 8, 9, 16, 23, 25, 33] {
            let mut out = [0xa5u8; 64];
            assert_eq!(unwrap(&KEK, &input[..len], &mut out), Err(KeyWrapError::InvalidLength), "len {len}");
            assert!(out.iter().all(|&b| b == 0xa5));
        }
    }

    #[test]
    fn short_output_is_untouched() {
        let mut wrapped = [0u8; 24];
        assert_eq!(wrap(&KEK, &KEY[..16], &mut wrapped), Ok(24));

        let mut out = [0xa5u8; 23];
        assert_eq!(wrap(&KEK, &KEY[..16], &mut out), Err(KeyWrapError::InsufficientSize { required: 24 }));
        assert!(out.iter().all(|&b| b == 0xa5));

        let mut out = [0xa5u8; 15];
        assert_eq!(unwrap(&KEK, &wrapped, &mut out), Err(KeyWrapError::InsufficientSize { required: 16 }));
        assert!(out.iter().all(|&b| b == 0xa5));

        assert_eq!(wrap_with_kek(&[0; 32], &KEY, &mut [0u8; 39]), Err(KeyWrapError::InsufficientSize { required: 40 }));
    }

    #[test]
    fn larger_output_is_only_written_up_to_the_length() {
        let mut wrapped = [0xa5u8; 40];
        assert_eq!(wrap(&KEK, &KEY[..16], &mut wrapped), Ok(24));
        assert!(wrapped[24..].iter().all(|&b| b == 0xa5));
        let mut out = [0xa5u8; 40];
        assert_eq!(unwrap(&KEK, &wrapped[..24], &mut out), Ok(16));
        assert!(out[16..].iter().all(|&b| b == 0xa5));
    }

    #[test]
    fn integrity_failure_zeroizes_output() {
        let mut wrapped = [0u8; 40];
        assert_eq!(wrap(&KEK, &KEY, &mut wrapped), Ok(40));
        let mut out = [0xa5u8; 48];
        // Wrong KEK.
        assert_eq!(unwrap(&[0x10; KEK_LEN], &wrapped, &mut out), Err(KeyWrapError::IntegrityCheckFailed));
        assert!(out[..32].iter().all(|&b| b == 0));
        assert!(out[32..].iter().all(|&b| b == 0xa5));
        // Corrupted wrapped key.
        wrapped[39] ^= 0x80;
        let mut out = [0xa5u8; 32];
        assert_eq!(unwrap(&KEK, &wrapped, &mut out), Err(KeyWrapError::IntegrityCheckFailed));
        assert!(out.iter().all(|&b| b == 0));
    }

    #[test]
    fn kek_lengths() {
        let mut out = [0u8; 40];
        for len in [0, 1, 8, 15, 17, 20, 23, 25, 31, 33, 64] {
            let kek = [1u8; 64];
            assert_eq!(wrap_with_kek(&kek[..len], &KEY, &mut out), Err(KeyWrapError::InvalidKekLength));
            assert_eq!(unwrap_with_kek(&kek[..len], &out, &mut [0u8; 32]), Err(KeyWrapError::InvalidKekLength));
        }
        for len in [16, 24, 32] {
            let kek = [1u8; 32];
            assert_eq!(wrap_with_kek(&kek[..len], &KEY, &mut out), Ok(40));
            let mut back = [0u8; 32];
            assert_eq!(unwrap_with_kek(&kek[..len], &out, &mut back), Ok(32));
            assert_eq!(back, KEY);
        }
        // A 16-byte KEK through the generic entry point matches `wrap`.
        let mut a = [0u8; 40];
        let mut b = [0u8; 40];
        assert_eq!(wrap_with_kek(&KEK, &KEY, &mut a), wrap(&KEK, &KEY, &mut b));
        assert_eq!(a, b);
    }
}
