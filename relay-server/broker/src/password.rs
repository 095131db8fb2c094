//! Password policy and hashing.
//!
//! **Policy**, checked whenever a password is set or changed: 8 to 128 characters, at least one
//! letter and one digit, and not a common password: the lower-case form, and the lower-case form
//! without trailing digits (`Dragon2024` → `dragon`), must not be among the 5 000 most common
//! passwords (`common-passwords.txt`, compiled in).
//!
//! **Hashing**: Argon2id (RFC 9106), version 0x13, **m = 19 MiB, t = 2, p = 1**, 16-byte random
//! salt, 32-byte output. These are OWASP's first recommended Argon2id setting (the same as
//! `argon2`'s defaults): about 20 ms of one core per hash on a 2020s server core, which bounds an
//! online attacker (who is also stopped by the lockout) and makes an offline attack on a stolen
//! database cost 19 MiB of memory per guess, which is what defeats GPU and ASIC farms. More
//! memory would cut the logins per second a small broker can serve (each login holds 19 MiB
//! for its duration); `docs/BENCHMARKS.md` measures the rate. The parameters are stored with each
//! hash (`argon2id$v=19$m=..,t=..,p=..$salt$hash`), so they can be raised later without
//! invalidating existing hashes.

use std::collections::HashSet;
use std::fmt;
use std::sync::OnceLock;

use argon2::{Algorithm, Argon2, Params, Version};
use rand_core::TryRng as _;
use subtle::ConstantTimeEq as _;
use zeroize::Zeroizing;

/// Memory cost in KiB.
pub const M_COST_KIB: u32 = 19 * 1024;
/// Passes.
pub const T_COST: u32 = 2;
/// Lanes.
pub const P_COST: u32 = 1;
/// Shortest password accepted.
pub const MIN_LEN: usize = 8;
/// Longest password accepted (bounds hashing work per request).
pub const MAX_LEN: usize = 128;

const COMMON: &str = include_str!("common-passwords.txt");

/// Why a password was refused (safe to show to the user setting it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PolicyError {
    /// Fewer than [`MIN_LEN`] characters.
    TooShort,
    /// More than [`MAX_LEN`] characters.
    TooLong,
    /// No letter, or no digit.
    NeedsLettersAndDigits,
    /// Among the most common passwords.
    Common,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PolicyError::TooShort => "password too short: at least 8 characters",
            PolicyError::TooLong => "password too long: at most 128 characters",
            PolicyError::NeedsLettersAndDigits => "password needs at least one letter and one digit",
            PolicyError::Common => "password is too common",
        })
    }
}

impl std::error::Error for PolicyError {}

/// Checks `password` against the policy.
pub fn check_policy(password: &str) -> Result<(), PolicyError> {
    let chars = password.chars().count();
    if chars < MIN_LEN {
        return Err(PolicyError::TooShort);
    }
    if chars > MAX_LEN {
        return Err(PolicyError::TooLong);
    }
    if !password.chars().any(char::is_alphabetic) || !password.chars().any(|c| c.is_ascii_digit()) {
        return Err(PolicyError::NeedsLettersAndDigits);
    }
    let lower = Zeroizing::new(password.to_lowercase());
    let stem = lower.trim_end_matches(|c: char| c.is_ascii_digit());
    let common = common_passwords();
    if common.contains(lower.as_str()) || common.contains(stem) {
        return Err(PolicyError::Common);
    }
    Ok(())
}

fn common_passwords() -> &'static HashSet<&'static str> {
    static SET: OnceLock<HashSet<&'static str>> = OnceLock::new();
    SET.get_or_init(|| COMMON.lines().filter(|line| !line.is_empty() && !line.starts_with('#')).collect())
}

/// Hashing failed (the OS random generator, or an invalid parameter set).
#[derive(Clone, Debug)]
pub struct HashError(String);

impl fmt::Display for HashError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "password hashing failed: {}", self.0)
    }
}

impl std::error::Error for HashError {}

/// Hashes `password` with Argon2id and a fresh salt; the result holds the parameters.
pub fn hash(password: &str) -> Result<String, HashError> {
    let mut salt = [0u8; 16];
    getrandom::SysRng.try_fill_bytes(&mut salt).map_err(|e| HashError(e.to_string()))?;
    let out = derive(password.as_bytes(), &salt, M_COST_KIB, T_COST, P_COST)?;
    Ok(format!("argon2id$v=19$m={M_COST_KIB},t={T_COST},p={P_COST}${}${}", hex(&salt), hex(&out[..])))
}

/// Whether `password` matches `stored` (from [`hash`]); compares in constant time. A malformed
/// `stored` never matches.
pub fn verify(password: &str, stored: &str) -> bool {
    let Some((m, t, p, salt, expected)) = parse(stored) else { return false };
    match derive(password.as_bytes(), &salt, m, t, p) {
        Ok(out) => out.len() == expected.len() && bool::from(out[..].ct_eq(&expected)),
        Err(_) => false,
    }
}

/// A hash of a random password: unknown accounts are checked against it so that a login for an
/// unknown email takes as long as one for a known email.
pub fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| hash("dummy password 0 never matches").unwrap_or_default())
}

fn derive(password: &[u8], salt: &[u8], m: u32, t: u32, p: u32) -> Result<Zeroizing<[u8; 32]>, HashError> {
    let params = Params::new(m, t, p, Some(32)).map_err(|e| HashError(e.to_string()))?;
    let mut out = Zeroizing::new([0u8; 32]);
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password_into(password, salt, &mut out[..])
        .map_err(|e| HashError(e.to_string()))?;
    Ok(out)
}

/// Memory, passes, lanes, salt, hash.
type Parsed = (u32, u32, u32, Vec<u8>, Vec<u8>);

fn parse(stored: &str) -> Option<Parsed> {
    let mut parts = stored.split('$');
    if parts.next()? != "argon2id" || parts.next()? != "v=19" {
        return None;
    }
    let mut m = None;
    let mut t = None;
    let mut p = None;
    for pair in parts.next()?.split(',') {
        let (key, value) = pair.split_once('=')?;
        let value: u32 = value.parse().ok()?;
        match key {
            "m" => m = Some(value),
            "t" => t = Some(value),
            "p" => p = Some(value),
            _ => return None,
        }
    }
    let salt = unhex(parts.next()?)?;
    let hash = unhex(parts.next()?)?;
    // Refuse absurd parameters from a tampered row rather than hashing with them.
    let (m, t, p) = (m?, t?, p?);
    if m > 1 << 21 || t > 16 || p > 16 || parts.next().is_some() {
        return None;
    }
    Some((m, t, p, salt, hash))
}

pub use crate::hex::{hex, unhex};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_refuses_short_letterless_digitless_and_common() {
        assert_eq!(check_policy("ab1"), Err(PolicyError::TooShort));
        assert_eq!(check_policy("abcdefghij"), Err(PolicyError::NeedsLettersAndDigits));
        assert_eq!(check_policy("1234567890"), Err(PolicyError::NeedsLettersAndDigits));
        assert_eq!(check_policy("password1"), Err(PolicyError::Common));
        assert_eq!(check_policy("Password123"), Err(PolicyError::Common));
        assert_eq!(check_policy("Dragon2024"), Err(PolicyError::Common));
        assert_eq!(check_policy("abcd1234"), Err(PolicyError::Common));
        assert_eq!(check_policy(&"a1".repeat(65)), Err(PolicyError::TooLong));
        assert_eq!(check_policy("tangerine-Lamp-47"), Ok(()));
        assert_eq!(check_policy("zq8Xw3vbn"), Ok(()));
    }

    #[test]
    fn the_list_is_compiled_in() {
        assert!(common_passwords().len() >= 4900);
        assert!(common_passwords().contains("letmein"));
    }

    #[test]
    fn hashes_verify_and_differ_by_salt() {
        let first = hash("tangerine-Lamp-47").unwrap();
        let second = hash("tangerine-Lamp-47").unwrap();
        assert_ne!(first, second);
        assert!(first.starts_with("argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(verify("tangerine-Lamp-47", &first));
        assert!(!verify("tangerine-Lamp-48", &first));
        assert!(!verify("tangerine-Lamp-47", "argon2id$v=19$m=19456,t=2,p=1$zz$00"));
        assert!(!verify("x", ""));
    }
}
