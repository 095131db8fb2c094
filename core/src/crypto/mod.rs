//! Cryptography: thin wrappers over audited RustCrypto primitives, and the constructions built
//! from them.
//!
//! - [`primitives`]: AES-128-CTR, HMAC-SHA1, SHA-1, constant-time comparison.
//! - [`kdf`]: HKDF with HMAC-SHA1 (RFC 5869).
//! - [`keywrap`]: AES Key Wrap (RFC 3394).
//! - [`srp`]: SRP-6a key agreement (RFC 5054) on fixed-size, heap-free big integers.
//! - [`group`]: the key-wrap key per member and the wrapped epoch keys.
//! - [`packet`]: sealing and opening protected frames.
//! - [`replay`]: the per-sender replay window.
//!
//! Every algorithm and parameter is fixed at compile time: nothing configurable can weaken it.

pub mod group;
pub mod kdf;
pub mod keywrap;
pub mod packet;
pub mod primitives;
pub mod replay;
pub mod srp;
