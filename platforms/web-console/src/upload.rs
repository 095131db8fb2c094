//! `POST /api/upload?name=NAME`: a file from the browser, streamed to the outbox.
//!
//! The body is written to disk frame by frame as it arrives (memory stays bounded by hyper's
//! buffers, whatever the file's size), under a name the console chooses (`upload-N.part`), with
//! the limit checked on the declared length before anything is written and on every frame after.
//! Only a complete file is renamed to `upload-N` and handed to the native side as
//! [`ConsoleCommand::SendFile`]; on any failure, a disconnect included, the partial file is deleted.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use bytes::Bytes;
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use hyper::http::request::Parts;
use hyper::{Response, StatusCode};
use tokio::io::AsyncWriteExt as _;

use crate::api::{ConsoleCommand, check_file_name};
use crate::server::{
    Body, Shared, content_type_is, declared_length, error, hand_over, query_value, respond, too_large,
};

pub(crate) async fn receive(parts: &Parts, mut body: Incoming, shared: &Shared) -> Response<Body> {
    if !content_type_is(&parts.headers, "application/octet-stream") {
        return error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", "send application/octet-stream");
    }
    let Some(name) = parts.uri.query().and_then(|query| query_value(query, "name")).and_then(percent_decode) else {
        return error(StatusCode::BAD_REQUEST, "bad_request", "name the file: ?name=<percent-encoded UTF-8>");
    };
    if let Err(message) = check_file_name(&name) {
        return error(StatusCode::BAD_REQUEST, "bad_request", &message);
    }
    let max = shared.limits.max_upload_bytes;
    if declared_length(&parts.headers).is_some_and(|len| len > max) {
        return too_large(max);
    }
    let Ok(_slot) = shared.upload_slots.try_acquire() else {
        return error(StatusCode::TOO_MANY_REQUESTS, "busy", "too many uploads at once; wait for one to finish");
    };

    let number = shared.next_upload.fetch_add(1, Ordering::Relaxed);
    let done = shared.outbox.join(format!("upload-{number}"));
    let mut part = PartFile { path: shared.outbox.join(format!("upload-{number}.part")), keep: false };
    let mut file = match create_new(&part.path).await {
        Ok(file) => file,
        Err(e) => return disk_error(&e),
    };
    let mut size: u64 = 0;
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else {
            return error(StatusCode::BAD_REQUEST, "interrupted", "the upload was interrupted");
        };
        let Ok(data) = frame.into_data() else { continue };
        size = size.saturating_add(data.len() as u64);
        if size > max {
            return too_large(max);
        }
        if let Err(e) = file.write_all(&data).await {
            return disk_error(&e);
        }
    }
    if let Err(e) = file.flush().await {
        return disk_error(&e);
    }
    drop(file);
    if let Err(e) = tokio::fs::rename(&part.path, &done).await {
        return disk_error(&e);
    }
    part.path.clone_from(&done);
    if let Err(not_handed_over) = hand_over(shared, ConsoleCommand::SendFile { name: name.clone(), path: done, size }) {
        return not_handed_over.response();
    }
    part.keep = true;
    let body = serde_json::json!({ "name": name, "size": size }).to_string();
    respond(StatusCode::CREATED, "application/json", Bytes::from(body))
}

/// Deletes the file when dropped, unless told to keep it: a failed or abandoned upload (the
/// request's future dropped on a disconnect or at shutdown) leaves nothing behind.
struct PartFile {
    path: PathBuf,
    keep: bool,
}

impl Drop for PartFile {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

async fn create_new(path: &Path) -> std::io::Result<tokio::fs::File> {
    let mut options = tokio::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    options.mode(0o600);
    options.open(path).await
}

fn disk_error(e: &std::io::Error) -> Response<Body> {
    if e.kind() == std::io::ErrorKind::StorageFull {
        error(StatusCode::INSUFFICIENT_STORAGE, "disk_full", "the provider's disk is full; the upload was discarded")
    } else {
        error(StatusCode::INTERNAL_SERVER_ERROR, "disk", "could not write the upload; it was discarded")
    }
}

/// Decodes `%XX` escapes (as `encodeURIComponent` makes them) into UTF-8; `None` for a bad escape
/// or bytes that are not UTF-8. `+` stays a `+`.
fn percent_decode(encoded: &str) -> Option<String> {
    let bytes = encoded.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = encoded.get(i + 1..i + 3).filter(|hex| hex.bytes().all(|b| b.is_ascii_hexdigit()))?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%20b.txt").as_deref(), Some("a b.txt"));
        assert_eq!(percent_decode("%C3%84nderung").as_deref(), Some("Änderung"));
        assert_eq!(percent_decode("a+b").as_deref(), Some("a+b"));
        assert_eq!(percent_decode("..%2Fetc").as_deref(), Some("../etc"));
        assert_eq!(percent_decode("bad%2"), None);
        assert_eq!(percent_decode("bad%zz"), None);
        assert_eq!(percent_decode("%+1"), None);
        assert_eq!(percent_decode("%FF"), None);
    }
}
