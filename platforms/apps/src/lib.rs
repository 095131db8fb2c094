//! `lifeline-apps`: the session applications of Lifeline's desktop endpoints, built on the core's
//! application messages ([`lifeline_core::app`]).
//!
//! - [`transfer`]: file transfer both ways: chunked, flow-controlled by the receiver's window,
//!   resumable after lost frames or a reconnect, SHA-256 of the whole file checked end to end,
//!   bounded memory whatever the file size, plain file names only and no silent overwrite.
//! - [`diagnostics`]: what a customer's machine reports when the provider asks (and the customer
//!   granted it), split into report parts, and put back together on the provider's side.
//!
//! Like the engine, these are driven by the caller: messages in (`handle_*`), messages and events
//! out (`poll_*`), the time as an argument. They do the file I/O themselves (blocking, one chunk at
//! a time), so an async caller runs them where blocking is allowed. The engine's consent rules
//! still apply underneath: a customer's engine refuses file data unless the customer granted
//! file transfer.

pub mod diagnostics;
pub mod transfer;
