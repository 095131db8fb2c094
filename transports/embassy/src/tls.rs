//! TLS 1.3 to the relay with embedded-tls: no heap, `TLS_AES_128_GCM_SHA256`, ECDHE P-256,
//! ALPN `lifeline/1`, and the relay's certificate verified against the pinned fleet CA key(s)
//! with the host name checked ([`crate::verify`]).
//!
//! The board has no wall clock, so certificate validity dates are not checked; the trust anchor
//! is the fleet CA key the device was provisioned with, and a relay certificate is short-lived
//! in a production fleet.

use core::cell::RefCell;

use embassy_net::tcp::TcpSocket;
use embedded_tls::{Aes128GcmSha256, CryptoProvider, TlsError, TlsVerifier};

use crate::rng::Drbg;
use crate::verify::{CaKey, PinnedCaVerifier};

/// ALPN protocol offered to the relay: the endpoint protocol `lifeline/1` with TLS records of
/// at most [`RELAY_RECORD_LIMIT`] plaintext bytes from the relay (docs/PROTOCOL.md 3). rustls,
/// which the relays run, does not implement the max_fragment_length extension (RFC 6066), so
/// the record size is asked for this way; a relay that does not know it refuses the handshake
/// rather than send records this endpoint cannot hold.
pub const ALPN: &[u8] = b"lifeline/1-small";

/// Largest TLS record plaintext the relay sends under [`ALPN`]. embedded-tls parses each
/// record's handshake messages whole, so the relay's certificate message (its chain) must fit
/// in one record: about 1 KiB for a P-256 relay certificate signed directly by the fleet CA.
pub const RELAY_RECORD_LIMIT: usize = 2048;

/// Bytes of the TLS record read buffer: one whole record (header 5, plaintext, content type 1,
/// AES-GCM tag 16).
pub const TLS_READ_BUFFER: usize = 5 + RELAY_RECORD_LIMIT + 1 + 16;
/// Bytes of the TLS record write buffer: records this endpoint sends are at most this big.
pub const TLS_WRITE_BUFFER: usize = 2048;

/// The crypto provider embedded-tls asks for randomness and for the certificate verifier.
pub(crate) struct Provider<'a> {
    pub(crate) rng: &'a mut Drbg,
    pub(crate) verifier: PinnedCaVerifier<'a>,
}

impl<'a> Provider<'a> {
    pub(crate) fn new(rng: &'a mut Drbg, ca_keys: &'a [CaKey]) -> Provider<'a> {
        Provider { rng, verifier: PinnedCaVerifier::new(ca_keys) }
    }
}

impl CryptoProvider for Provider<'_> {
    type CipherSuite = Aes128GcmSha256;
    // No client certificate: endpoints authenticate to the relay with their ticket.
    type Signature = &'static [u8];

    fn rng(&mut self) -> impl embedded_tls::CryptoRngCore {
        &mut *self.rng
    }

    fn verifier(&mut self) -> Result<&mut impl TlsVerifier<Self::CipherSuite>, TlsError> {
        Ok(&mut self.verifier)
    }
}

/// The TCP socket shared by the TLS connection (reads and writes) and the run loop (which waits
/// for readability without reading, because embedded-tls's `read` is not cancel-safe).
///
/// Only one of them uses it at a time: the run loop's wait ends before TLS reads or writes, so
/// a borrow held across an `.await` never meets another; `try_borrow*` turns a broken invariant
/// into an I/O error instead of a panic.
#[derive(Clone, Copy)]
pub(crate) struct SharedSocket<'a, 's> {
    pub(crate) socket: &'a RefCell<TcpSocket<'s>>,
}

impl embedded_io_async::ErrorType for SharedSocket<'_, '_> {
    type Error = embassy_net::tcp::Error;
}

impl embedded_io_async::Read for SharedSocket<'_, '_> {
    #[allow(clippy::await_holding_refcell_ref)] // see `SharedSocket`
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> {
        let Ok(mut socket) = self.socket.try_borrow_mut() else { return Err(embassy_net::tcp::Error::ConnectionReset) };
        socket.read(buf).await
    }
}

impl embedded_io_async::Write for SharedSocket<'_, '_> {
    #[allow(clippy::await_holding_refcell_ref)] // see `SharedSocket`
    async fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error> {
        let Ok(mut socket) = self.socket.try_borrow_mut() else { return Err(embassy_net::tcp::Error::ConnectionReset) };
        socket.write(buf).await
    }

    #[allow(clippy::await_holding_refcell_ref)] // see `SharedSocket`
    async fn flush(&mut self) -> Result<(), Self::Error> {
        let Ok(mut socket) = self.socket.try_borrow_mut() else { return Err(embassy_net::tcp::Error::ConnectionReset) };
        socket.flush().await
    }
}
