//! The session PIN: generated on the leader's endpoint, told to the customer out of band,
//! never sent to any server.

use core::fmt;

use rand_core::CryptoRng;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// Digits in a generated PIN. With at most [`MAX_JOIN_FAILURES`](super::MAX_JOIN_FAILURES)
/// guesses per session, an attacker's chance is at most 5 in 10^8.
pub const PIN_DIGITS: usize = 8;
const MAX_PIN_LEN: usize = 32;

/// A session PIN. Zeroized on drop; its `Debug` does not show it.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct Pin {
    bytes: [u8; MAX_PIN_LEN],
    len: usize,
}

impl Pin {
    /// Draws a uniformly random PIN of [`PIN_DIGITS`] decimal digits.
    pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Pin {
        let mut pin = Pin { bytes: [0; MAX_PIN_LEN], len: PIN_DIGITS };
        for slot in pin.bytes.iter_mut().take(PIN_DIGITS) {
            // Rejection sampling keeps every digit uniform: 250 is the largest multiple of 10 ≤ 256.
            let digit = loop {
                let mut byte = [0u8; 1];
                rng.fill_bytes(&mut byte);
                if byte[0] < 250 {
                    break byte[0] % 10;
                }
            };
            *slot = b'0' + digit;
        }
        pin
    }

    /// A PIN as typed by a person: surrounding white space and inner spaces or dashes (as in
    /// "1234-5678") are ignored; anything past 32 characters is cut.
    pub fn from_str_truncated(text: &str) -> Pin {
        let mut pin = Pin { bytes: [0; MAX_PIN_LEN], len: 0 };
        for byte in text.bytes().filter(|b| !b.is_ascii_whitespace() && *b != b'-') {
            if pin.len == MAX_PIN_LEN {
                break;
            }
            pin.bytes[pin.len] = byte;
            pin.len += 1;
        }
        pin
    }

    /// The PIN text (the bytes fed to SRP as the password). Filtering may have cut a multi-byte
    /// character; such a PIN maps to the empty string and simply fails to join.
    pub fn as_str(&self) -> &str {
        core::str::from_utf8(&self.bytes[..self.len]).unwrap_or("")
    }
}

impl fmt::Debug for Pin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pin(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    #[test]
    fn generated_pins_are_digits() {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let pin = Pin::generate(&mut rng);
        assert_eq!(pin.as_str().len(), PIN_DIGITS);
        assert!(pin.as_str().bytes().all(|b| b.is_ascii_digit()));
        assert_ne!(pin.as_str(), Pin::generate(&mut rng).as_str());
    }

    #[test]
    fn typed_pins_are_normalised() {
        assert_eq!(Pin::from_str_truncated(" 1234-5678\n").as_str(), "12345678");
        assert_eq!(Pin::from_str_truncated(&"9".repeat(100)).as_str().len(), 32);
    }

    #[test]
    fn debug_hides_the_pin() {
        extern crate std;
        assert_eq!(std::format!("{:?}", Pin::from_str_truncated("1234")), "Pin(..)");
    }
}
