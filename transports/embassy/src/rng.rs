//! Randomness on a board: one seeded ChaCha20 generator, spoken through both `rand_core`
//! versions in the firmware (the engine's 0.10, embedded-tls's 0.6).
//!
//! The seed is the board's business ([`crate::EntropySource`]): a TRNG on a real MCU; on the
//! emulated board, bytes provisioned over the console by the test harness (QEMU's MPS2 has no
//! random number generator). Each consumer gets its own stream ([`Drbg::fork`]), so the TLS
//! stack and the session engine never share generator state.

use rand_chacha::ChaCha20Rng;
use rand_core::{Rng as _, SeedableRng as _};

/// A ChaCha20 deterministic random bit generator, seeded once from the board's entropy.
pub struct Drbg {
    inner: ChaCha20Rng,
}

impl Drbg {
    /// A generator from a 32-byte seed (which must be unpredictable: the board's TRNG).
    pub fn from_seed(seed: [u8; 32]) -> Drbg {
        Drbg { inner: ChaCha20Rng::from_seed(seed) }
    }

    /// An independent generator seeded from this one's output.
    pub fn fork(&mut self) -> Drbg {
        let mut seed = [0u8; 32];
        self.inner.fill_bytes(&mut seed);
        let child = Drbg::from_seed(seed);
        seed.fill(0);
        child
    }

    /// A uniform value in `0..bound` (`bound > 0`), by rejection sampling.
    pub fn below(&mut self, bound: u64) -> u64 {
        if bound <= 1 {
            return 0;
        }
        let zone = u64::MAX - (u64::MAX % bound);
        loop {
            let value = self.inner.next_u64();
            if value < zone {
                return value % bound;
            }
        }
    }
}

impl rand_core::TryRng for Drbg {
    type Error = core::convert::Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        Ok(self.inner.next_u32())
    }

    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        Ok(self.inner.next_u64())
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        self.inner.fill_bytes(dst);
        Ok(())
    }
}

impl rand_core::TryCryptoRng for Drbg {}

impl rand_core_06::RngCore for Drbg {
    fn next_u32(&mut self) -> u32 {
        self.inner.next_u32()
    }

    fn next_u64(&mut self) -> u64 {
        self.inner.next_u64()
    }

    fn fill_bytes(&mut self, dest: &mut [u8]) {
        self.inner.fill_bytes(dest);
    }

    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core_06::Error> {
        self.inner.fill_bytes(dest);
        Ok(())
    }
}

impl rand_core_06::CryptoRng for Drbg {}
