//! Randomness: the operating system's generator, nothing seeded.

/// The operating system's cryptographic generator as a [`rand_core::CryptoRng`].
///
/// `getrandom::SysRng` is fallible (`TryCryptoRng`); [`rand_core::UnwrapErr`] makes it
/// infallible by panicking if the OS generator ever fails, which on supported systems it does
/// not once the process is running (and continuing without randomness would be worse).
pub type OsRng = rand_core::UnwrapErr<getrandom::SysRng>;

/// The operating system's generator.
pub fn os_rng() -> OsRng {
    rand_core::UnwrapErr(getrandom::SysRng)
}

/// A uniform random number in `0..bound` (`bound > 0`), for jitter and session numbers.
pub fn uniform_below(bound: u64) -> u64 {
    use rand_core::Rng as _;
    if bound <= 1 {
        return 0;
    }
    let mut rng = os_rng();
    // Rejection sampling: accept only values below the largest multiple of `bound`.
    let zone = u64::MAX - (u64::MAX % bound);
    loop {
        let value = rng.next_u64();
        if value < zone {
            return value % bound;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniform_below_stays_in_range() {
        for bound in [1, 2, 7, 1000] {
            for _ in 0..100 {
                assert!(uniform_below(bound) < bound);
            }
        }
        assert_eq!(uniform_below(0), 0);
    }
}
