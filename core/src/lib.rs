//! `lifeline-core`: the session engine of Lifeline, an end-to-end encrypted remote-support
//! system.
//!
//! This crate contains no networking code and does not get any timestamps from the operating
//! system. It never allocates, never panics on input, and runs unchanged in the desktop apps,
//! in the relay (which uses only [`wire`]) and on microcontrollers (`#![no_std]`, no heap).
//! Transports (tokio + rustls, embassy-net) drive it: they feed it bytes, local decisions and the
//! time, and send what it returns.
//!
//! # Layers
//!
//! From the bytes up:
//! - [`wire`]: frames, the cleartext routing header (all a relay ever parses), the join and
//!   control messages, and a [`StreamDecoder`](wire::StreamDecoder) for TLS byte streams.
//! - [`crypto`]: SRP-6a (RFC 5054) between the leader and each joining member, AES Key Wrap
//!   (RFC 3394) of the group keys under a key derived from each member's SRP key, and the packet
//!   layer: compression, AES-128-CTR, HMAC-SHA1 over header and ciphertext, replay windows.
//! - [`consent`]: what the customer allowed; only the local user can answer a prompt.
//! - [`session`]: the endpoint state machine that ties them together; its rustdoc states the
//!   call contract (`handle_*` inputs, then drain `poll_transmit`, `poll_event`, `poll_timeout`).
//! - [`app`]: the application messages inside data frames (file transfer, diagnostics, the
//!   appliance console), shared by every endpoint; the engine itself does not interpret them.
//!
//! Time is [`time::Instant`], integer microseconds from an origin the caller picks. Randomness
//! comes in through [`rand_core::CryptoRng`].
//!
//! # Features
//! - `log` / `defmt`: route the engine's few log lines (ids, kinds and counts; never keys, PINs
//!   or payload) to one backend. Mutually exclusive.
//! - `alloc`, `std`: additive; nothing in the engine needs them.
#![no_std]
#![forbid(unsafe_code)]
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

#[cfg(feature = "std")]
extern crate std;

#[macro_use]
mod fmt;

pub mod app;
pub mod compress;
pub mod consent;
pub mod crypto;
pub mod session;
pub mod time;
pub mod wire;

pub use rand_core;
