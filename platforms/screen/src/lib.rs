//! The screen layer of Lifeline: capture and input injection back-ends, changed-region
//! detection, the screen update and input event codecs, and the adaptive rate/quality
//! controller. The session wiring (consent checks, sending through the engine, the web console)
//! lives in the desktop app; this crate provides the pieces it plugs together.
//!
//! # Layers
//!
//! ```text
//!  sharer (customer)                                       viewer (provider console)
//!  Capturer ──Frame──▶ Encoder ──Update payloads──▶ engine ──▶ ScreenMessage::parse ──▶ Decoder ──▶ Frame
//!            (x11)     (tiles, scroll, palette/        ContentType::Screen             (limits, gap → Refresh)
//!                       LZ4, JPEG, parts ≤ 16 KiB)
//!  RateController ◀──────────────── Ack ◀────────────────────────────────── viewer
//!  Injector ◀── InputEvent::parse ◀── engine ◀── ContentType::Input ◀── InputEvent::emit
//! ```
//!
//! - [`backend`]: the [`Capturer`](backend::Capturer) and [`Injector`](backend::Injector) traits.
//!   Implemented: X11 ([`x11`], feature `x11`, default). Interface only, not implemented:
//!   Wayland (xdg-desktop-portal ScreenCast/RemoteDesktop + PipeWire), Windows (DXGI Desktop
//!   Duplication, `SendInput`), macOS (ScreenCaptureKit, `CGEvent`).
//! - [`tiles`]: which 64 × 64 tiles changed, and vertical scroll detection.
//! - [`codec`]: [`Encoder`](codec::Encoder) and [`Decoder`](codec::Decoder).
//! - [`message`]: the byte-exact screen message format (payload of `ContentType::Screen`).
//! - [`input`]: the byte-exact input event format (payload of `ContentType::Input`).
//! - [`rate`]: the sans-I/O rate/quality controller.
//! - [`session`]: [`Sharer`](session::Sharer) and [`Viewer`](session::Viewer), the two ends
//!   assembled from the above, for the desktop app to drive.
//! - [`xvfb`]: a private Xvfb and a drawing/recording test window, for tests and benchmarks.
//!
//! # Sharer loop
//!
//! ```no_run
//! # #[cfg(feature = "x11")] {
//! use lifeline_core::time::Instant;
//! use lifeline_screen::backend::Capturer;
//! use lifeline_screen::codec::{Encoder, EncoderConfig};
//! use lifeline_screen::frame::Frame;
//! use lifeline_screen::rate::{RateConfig, RateController};
//! use lifeline_screen::x11::X11Capturer;
//!
//! # fn now() -> Instant { Instant::ZERO }
//! # fn send(_: &[u8]) {}
//! let mut capturer = X11Capturer::connect(None)?;
//! let monitor = capturer.monitors()?.remove(0);
//! let mut encoder = Encoder::new(0, EncoderConfig::default());
//! let mut rate = RateController::new(RateConfig::default(), now());
//! let (mut frame, mut payloads) = (Frame::new(0, 0), Vec::new());
//! loop {
//!     // Also: on an `Ack`, rate.on_ack(now(), frame); on a `Refresh`, encoder.request_refresh().
//!     if rate.poll_capture(now()) {
//!         capturer.capture_damaged(&monitor, &mut frame)?; // reads only what the server redrew
//!         let number = encoder.next_frame();
//!         let stats = encoder.encode(&frame, &rate.quality(), &mut payloads);
//!         for payload in payloads.drain(..) {
//!             send(&payload); // Session::send(ContentType::Screen, ..), only while ViewScreen is granted
//!         }
//!         if stats.bytes > 0 {
//!             rate.on_sent(now(), number, stats.bytes);
//!         }
//!     }
//!     // sleep until rate.poll_timeout() or a message arrives
//! #   break;
//! }
//! # }
//! # Ok::<(), lifeline_screen::backend::BackendError>(())
//! ```

pub mod backend;
pub mod codec;
pub mod frame;
pub mod input;
pub mod message;
pub mod rate;
pub mod session;
pub mod tiles;
#[cfg(feature = "x11")]
pub mod x11;
#[cfg(feature = "x11")]
pub mod xvfb;
