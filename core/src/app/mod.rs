//! Application messages: what the payload of a `SecureData` frame holds for each
//! [`ContentType`](crate::wire::control::ContentType) that carries more than raw bytes.
//!
//! The engine seals and opens these payloads and enforces consent by content type; it does not
//! interpret them. They live here, beside the wire format, so that every endpoint (the desktop
//! apps, the appliance agent) speaks them from one definition, without a heap: parsing borrows
//! from the decrypted buffer, emitting writes into a caller buffer.
//!
//! Every payload starts with a message-type byte of its content type; then, big-endian integers
//! and length-prefixed UTF-8 text. A parser refuses unknown types, bad lengths, bad UTF-8,
//! values out of range and trailing bytes (it returns `None`, never panics); the receiving
//! application drops what does not parse.
//!
//! - [`file`]: chunked, flow-controlled, resumable file transfer, SHA-256 of the whole file
//!   checked by the receiver (content type `File`).
//! - [`diagnostics`]: queries by section and reports as key/value records (`Diagnostics`).
//! - [`console`]: the restricted remote console of appliances: only commands the maker
//!   registered, no shell (`Console`).
//!
//! Each message fits one payload ([`MAX_PAYLOAD_LEN`](crate::wire::MAX_PAYLOAD_LEN) bytes).

pub mod console;
pub mod diagnostics;
pub mod file;

use crate::wire::{Reader, Writer};

/// Reads `len u8 | UTF-8` text of at most `max` bytes (and at least `min`).
fn read_text<'a>(reader: &mut Reader<'a>, min: usize, max: usize) -> Option<&'a str> {
    let len = usize::from(reader.u8()?);
    if !(min..=max).contains(&len) {
        return None;
    }
    core::str::from_utf8(reader.take(len)?).ok()
}

/// Writes `len u8 | UTF-8`; `None` if the text is longer than 255 bytes.
fn write_text(writer: &mut Writer<'_>, text: &str) -> Option<()> {
    writer.u8(u8::try_from(text.len()).ok()?);
    writer.put(text.as_bytes());
    Some(())
}

/// `0` or `1` as a flag byte; anything else is malformed.
fn read_flag(reader: &mut Reader<'_>) -> Option<bool> {
    match reader.u8()? {
        0 => Some(false),
        1 => Some(true),
        _ => None,
    }
}
