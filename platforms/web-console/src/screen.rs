//! The customer's screen in the page: the native process decodes the screen stream (the engine,
//! the keys and the decoder stay native) and publishes pixels here; each open page reads them from
//! `GET /api/screen`, a binary stream, and draws them on a canvas. The page's mouse and keyboard
//! come back as `POST /api/input` (JSON), handed to the native side, which sends them to the
//! customer only while the customer allows remote control. Both routes pass the same loopback,
//! `Host`, `Origin`, fetch-metadata and token checks as every other route.
//!
//! # The stream (`GET /api/screen`, `application/octet-stream`)
//! A sequence of messages, each `u32` length (little endian, of what follows) then one kind byte:
//! - `1` size: `u16` width, `u16` height (0 × 0: nothing is shared). Clears the canvas.
//! - `2` pixels: `u16` x, y, width, height, then width × height × 4 bytes `R G B A`.
//! - `3` status: one byte of flags: bit 0 the customer lets you view, bit 1 you have control
//!   (remote control allowed and no prompt open), bit 2 a request is waiting for the customer.
//! - `4` cursor: `i16` x, `i16` y (frame coordinates), `u8` visible.
//! - `5` monitors: `u8` count (0: none known), `u8` index of the one shown, then per monitor
//!   `u16` width, `u16` height, `u8` flags (bit 0 primary). The page offers the choice and asks
//!   for another one with the input event `{"type":"monitor","index":N}`.
//!
//! A page that falls behind gets the union of what changed since it last read (or the whole
//! frame): pixels are never queued per page, so a slow page costs frames, not memory.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Response, StatusCode};
use serde::Deserialize;
use tokio::sync::{mpsc, watch};

use crate::server::{self, Body, Shared};

/// A rectangle of the shared screen, in pixels.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ScreenRect {
    /// Left edge.
    pub x: u16,
    /// Top edge.
    pub y: u16,
    /// Width.
    pub width: u16,
    /// Height.
    pub height: u16,
}

impl ScreenRect {
    fn union(self, other: ScreenRect) -> ScreenRect {
        let x = self.x.min(other.x);
        let y = self.y.min(other.y);
        let right = (u32::from(self.x) + u32::from(self.width)).max(u32::from(other.x) + u32::from(other.width));
        let bottom = (u32::from(self.y) + u32::from(self.height)).max(u32::from(other.y) + u32::from(other.height));
        ScreenRect {
            x,
            y,
            width: u16::try_from(right - u32::from(x)).unwrap_or(u16::MAX),
            height: u16::try_from(bottom - u32::from(y)).unwrap_or(u16::MAX),
        }
    }

    /// Clipped to a `width` × `height` frame; `None` if nothing is left.
    fn clip(self, width: u16, height: u16) -> Option<ScreenRect> {
        let right = (u32::from(self.x) + u32::from(self.width)).min(u32::from(width));
        let bottom = (u32::from(self.y) + u32::from(self.height)).min(u32::from(height));
        let (x, y) = (u32::from(self.x), u32::from(self.y));
        (right > x && bottom > y).then(|| ScreenRect {
            x: self.x,
            y: self.y,
            width: (right - x) as u16,
            height: (bottom - y) as u16,
        })
    }
}

/// One of the customer's monitors, as the page lists it (index = position in the list).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ScreenMonitor {
    /// Width in pixels.
    pub width: u16,
    /// Height in pixels.
    pub height: u16,
    /// The customer's primary monitor.
    pub primary: bool,
}

/// Most monitors sent to the page (the screen layer's `Layout` lists at most 16).
const MAX_MONITORS: usize = 16;

/// Who may do what with the customer's screen, as the page shows it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ScreenStatus {
    /// The customer lets the provider view the screen.
    pub view: bool,
    /// The provider has control: remote control allowed and no consent prompt open.
    pub control: bool,
    /// A request is waiting for the customer's answer (input is blocked meanwhile).
    pub pending: bool,
}

impl ScreenStatus {
    fn flags(self) -> u8 {
        u8::from(self.view) | u8::from(self.control) << 1 | u8::from(self.pending) << 2
    }
}

/// One input event from the page, in frame coordinates. The native side checks consent and turns
/// it into the screen layer's input event.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
#[non_exhaustive]
pub enum ScreenInput {
    /// The pointer moved.
    Move {
        /// Frame x.
        x: u16,
        /// Frame y.
        y: u16,
    },
    /// A mouse button (1 left, 2 middle, 3 right, 8 back, 9 forward).
    Button {
        /// X11 button number.
        button: u8,
        /// Press or release.
        pressed: bool,
        /// Frame x.
        x: u16,
        /// Frame y.
        y: u16,
    },
    /// The wheel, in notches (positive: right, down).
    Wheel {
        /// Horizontal notches.
        dx: i16,
        /// Vertical notches.
        dy: i16,
    },
    /// A key, as an X11 keysym.
    Key {
        /// X11 keysym.
        keysym: u32,
        /// Press or release.
        pressed: bool,
    },
    /// Release every key and button (the page lost focus).
    ReleaseAll,
    /// Show the customer's monitor `index` (see the `5` monitors message); needs only view.
    Monitor {
        /// Index in the customer's list.
        index: u8,
    },
}

/// At most this many events in one `POST /api/input`.
pub(crate) const MAX_INPUT_EVENTS: usize = 256;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct InputBody {
    pub(crate) events: Vec<ScreenInput>,
}

/// Damage entries kept for pages that fell behind; older pages get the whole frame.
const DAMAGE_HISTORY: usize = 64;

struct State {
    width: u16,
    height: u16,
    /// `R G B A`, rows packed.
    rgba: Vec<u8>,
    /// Changes when the size changes or sharing stops.
    epoch: u64,
    version: u64,
    damage: VecDeque<(u64, ScreenRect)>,
    status: ScreenStatus,
    cursor: (i16, i16, bool),
    cursor_version: u64,
    monitors: Vec<ScreenMonitor>,
    shown: u8,
    layout_version: u64,
}

/// The current screen, shared by the native side (writer) and every page's stream (readers).
pub(crate) struct ScreenHub {
    state: Mutex<State>,
    changed: watch::Sender<u64>,
    input: mpsc::Sender<Vec<ScreenInput>>,
    input_receiver: Mutex<Option<mpsc::Receiver<Vec<ScreenInput>>>>,
}

impl ScreenHub {
    pub(crate) fn new() -> ScreenHub {
        let (input, input_receiver) = mpsc::channel(64);
        ScreenHub {
            state: Mutex::new(State {
                width: 0,
                height: 0,
                rgba: Vec::new(),
                epoch: 1,
                version: 0,
                damage: VecDeque::new(),
                status: ScreenStatus::default(),
                cursor: (0, 0, false),
                cursor_version: 0,
                monitors: Vec::new(),
                shown: 0,
                layout_version: 0,
            }),
            changed: watch::channel(0).0,
            input,
            input_receiver: Mutex::new(Some(input_receiver)),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn bump(&self) {
        self.changed.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// Copies `damage` (the whole frame when `None`) of a `B G R X` frame.
    pub(crate) fn frame(&self, width: u16, height: u16, bgrx: &[u8], damage: Option<ScreenRect>) {
        let (w, h) = (usize::from(width), usize::from(height));
        if bgrx.len() != w * h * 4 {
            return;
        }
        let mut state = self.lock();
        let whole = ScreenRect { x: 0, y: 0, width, height };
        let damage = if state.width != width || state.height != height {
            state.width = width;
            state.height = height;
            state.rgba = vec![0; w * h * 4];
            state.epoch += 1;
            state.damage.clear();
            whole
        } else {
            match damage.unwrap_or(whole).clip(width, height) {
                Some(damage) => damage,
                None => return,
            }
        };
        for row in usize::from(damage.y)..usize::from(damage.y) + usize::from(damage.height) {
            let start = (row * w + usize::from(damage.x)) * 4;
            let end = start + usize::from(damage.width) * 4;
            let (from, to) = (&bgrx[start..end], &mut state.rgba[start..end]);
            for (src, dst) in from.chunks_exact(4).zip(to.chunks_exact_mut(4)) {
                dst.copy_from_slice(&[src[2], src[1], src[0], 255]);
            }
        }
        state.version += 1;
        let version = state.version;
        state.damage.push_back((version, damage));
        if state.damage.len() > DAMAGE_HISTORY {
            state.damage.pop_front();
        }
        drop(state);
        self.bump();
    }

    /// Nothing is shared any more: pages clear their canvas.
    pub(crate) fn clear(&self) {
        let mut state = self.lock();
        state.width = 0;
        state.height = 0;
        state.rgba = Vec::new();
        state.epoch += 1;
        state.damage.clear();
        if !state.monitors.is_empty() {
            state.monitors.clear();
            state.shown = 0;
            state.layout_version += 1;
        }
        drop(state);
        self.bump();
    }

    /// The customer's monitors and the one shown.
    pub(crate) fn layout(&self, monitors: &[ScreenMonitor], shown: u8) {
        let monitors = &monitors[..monitors.len().min(MAX_MONITORS)];
        let mut state = self.lock();
        if state.monitors == monitors && state.shown == shown {
            return;
        }
        state.monitors = monitors.to_vec();
        state.shown = shown;
        state.layout_version += 1;
        drop(state);
        self.bump();
    }

    pub(crate) fn status(&self, status: ScreenStatus) {
        let mut state = self.lock();
        if state.status == status {
            return;
        }
        state.status = status;
        drop(state);
        self.bump();
    }

    pub(crate) fn cursor(&self, x: i16, y: i16, visible: bool) {
        let mut state = self.lock();
        if state.cursor == (x, y, visible) {
            return;
        }
        state.cursor = (x, y, visible);
        state.cursor_version += 1;
        drop(state);
        self.bump();
    }

    pub(crate) fn take_input(&self) -> Option<mpsc::Receiver<Vec<ScreenInput>>> {
        self.input_receiver.lock().unwrap_or_else(PoisonError::into_inner).take()
    }

    pub(crate) fn input_sender(&self) -> &mpsc::Sender<Vec<ScreenInput>> {
        &self.input
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }
}

/// What one page has been sent so far.
#[derive(Default)]
pub(crate) struct Reader {
    epoch: u64,
    version: u64,
    status: Option<u8>,
    cursor_version: u64,
    layout_version: u64,
}

impl Reader {
    /// The messages that bring this page up to date (empty when it is).
    pub(crate) fn catch_up(&mut self, hub: &ScreenHub) -> Vec<Bytes> {
        let state = hub.lock();
        let mut out = Vec::new();
        let mut rect = None;
        if self.epoch != state.epoch {
            self.epoch = state.epoch;
            let mut size = Vec::with_capacity(9);
            header(&mut size, 5, 1);
            size.extend_from_slice(&state.width.to_le_bytes());
            size.extend_from_slice(&state.height.to_le_bytes());
            out.push(Bytes::from(size));
            self.cursor_version = 0;
            if state.width > 0 && state.height > 0 {
                rect = Some(ScreenRect { x: 0, y: 0, width: state.width, height: state.height });
            }
        } else if self.version != state.version {
            let oldest = state.damage.front().map_or(u64::MAX, |(v, _)| *v);
            rect = if oldest > self.version + 1 {
                Some(ScreenRect { x: 0, y: 0, width: state.width, height: state.height })
            } else {
                state.damage.iter().filter(|(v, _)| *v > self.version).map(|(_, r)| *r).reduce(ScreenRect::union)
            };
        }
        self.version = state.version;
        if let Some(rect) = rect.and_then(|r| r.clip(state.width, state.height)) {
            out.push(pixels(&state, rect));
        }
        let flags = state.status.flags();
        if self.status != Some(flags) {
            self.status = Some(flags);
            let mut status = Vec::with_capacity(6);
            header(&mut status, 2, 3);
            status.push(flags);
            out.push(Bytes::from(status));
        }
        if self.cursor_version != state.cursor_version && state.width > 0 {
            self.cursor_version = state.cursor_version;
            let (x, y, visible) = state.cursor;
            let mut cursor = Vec::with_capacity(10);
            header(&mut cursor, 6, 4);
            cursor.extend_from_slice(&x.to_le_bytes());
            cursor.extend_from_slice(&y.to_le_bytes());
            cursor.push(u8::from(visible));
            out.push(Bytes::from(cursor));
        }
        if self.layout_version != state.layout_version {
            self.layout_version = state.layout_version;
            let count = state.monitors.len();
            let mut layout = Vec::with_capacity(7 + count * 5);
            header(&mut layout, 3 + 5 * count as u32, 5);
            layout.push(count as u8);
            layout.push(state.shown);
            for monitor in &state.monitors {
                layout.extend_from_slice(&monitor.width.to_le_bytes());
                layout.extend_from_slice(&monitor.height.to_le_bytes());
                layout.push(u8::from(monitor.primary));
            }
            out.push(Bytes::from(layout));
        }
        out
    }
}

fn header(out: &mut Vec<u8>, len: u32, kind: u8) {
    out.extend_from_slice(&len.to_le_bytes());
    out.push(kind);
}

fn pixels(state: &State, rect: ScreenRect) -> Bytes {
    let (w, rw) = (usize::from(state.width), usize::from(rect.width));
    let len = 9 + rw * usize::from(rect.height) * 4;
    let mut out = Vec::with_capacity(4 + len);
    header(&mut out, u32::try_from(len).unwrap_or(u32::MAX), 2);
    for value in [rect.x, rect.y, rect.width, rect.height] {
        out.extend_from_slice(&value.to_le_bytes());
    }
    for row in usize::from(rect.y)..usize::from(rect.y) + usize::from(rect.height) {
        let start = (row * w + usize::from(rect.x)) * 4;
        out.extend_from_slice(&state.rgba[start..start + rw * 4]);
    }
    Bytes::from(out)
}

// ---- the routes ----

/// `GET /api/screen`: the binary stream described above, until the page goes or the console stops.
pub(crate) fn stream(shared: &Arc<Shared>) -> Response<Body> {
    let (frames, body) = mpsc::channel::<Bytes>(4);
    let shared = shared.clone();
    let mut changed = shared.screen.subscribe();
    let mut stop = shared.stop.clone();
    tokio::spawn(async move {
        let mut reader = Reader::default();
        loop {
            changed.borrow_and_update();
            for message in reader.catch_up(&shared.screen) {
                tokio::select! {
                    sent = frames.send(message) => if sent.is_err() { return },
                    _ = stop.wait_for(|stop| *stop) => return,
                }
            }
            tokio::select! {
                changed = changed.changed() => if changed.is_err() { return },
                _ = frames.closed() => return,
                _ = stop.wait_for(|stop| *stop) => return,
            }
        }
    });
    let mut response = Response::new(Body::Stream(body));
    server::set_common_headers(response.headers_mut());
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
    response
}

/// `POST /api/input`: `{"events":[...]}` (JSON, at most the command body size and
/// [`MAX_INPUT_EVENTS`] events), handed to the native side; `503` when it is behind.
pub(crate) async fn input(headers: &HeaderMap, body: Incoming, shared: &Shared) -> Response<Body> {
    if !server::content_type_is(headers, "application/json") {
        return server::error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", "send application/json");
    }
    let max = shared.limits.max_command_body;
    if server::declared_length(headers).is_some_and(|len| len > max as u64) {
        return server::too_large(max as u64);
    }
    let Ok(body) = Limited::new(body, max).collect().await else {
        return server::too_large(max as u64);
    };
    let events = match serde_json::from_slice::<InputBody>(&body.to_bytes()) {
        Ok(body) if body.events.len() <= MAX_INPUT_EVENTS => body.events,
        Ok(_) => return server::error(StatusCode::BAD_REQUEST, "bad_request", "too many events"),
        Err(e) => {
            let message =
                format!("bad input JSON ({:?} error at line {} column {})", e.classify(), e.line(), e.column());
            return server::error(StatusCode::BAD_REQUEST, "bad_request", &message);
        }
    };
    match shared.screen.input_sender().try_send(events) {
        Ok(()) => server::respond(StatusCode::ACCEPTED, "application/json", Bytes::from_static(br#"{"ok":true}"#)),
        Err(mpsc::error::TrySendError::Full(_)) => server::NotHandedOver::Busy.response(),
        Err(mpsc::error::TrySendError::Closed(_)) => server::NotHandedOver::Gone.response(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn kinds(messages: &[Bytes]) -> Vec<u8> {
        messages.iter().map(|m| m[4]).collect()
    }

    #[test]
    fn a_page_gets_the_size_the_pixels_and_then_only_what_changed() {
        let hub = ScreenHub::new();
        let mut reader = Reader::default();
        // Nothing shared yet: size 0 x 0 and the status.
        assert_eq!(kinds(&reader.catch_up(&hub)), [1, 3]);
        assert!(reader.catch_up(&hub).is_empty());
        let mut bgrx = vec![0u8; 4 * 3 * 4];
        bgrx[(2 * 4 + 1) * 4..(2 * 4 + 2) * 4].copy_from_slice(&[10, 20, 30, 0]);
        hub.frame(4, 3, &bgrx, None);
        let messages = reader.catch_up(&hub);
        assert_eq!(kinds(&messages), [1, 2]);
        let pixels = &messages[1];
        assert_eq!(u32::from_le_bytes(pixels[..4].try_into().unwrap()) as usize, pixels.len() - 4);
        assert_eq!(&pixels[5..13], &[0, 0, 0, 0, 4, 0, 3, 0]);
        // Pixel (1, 2) converted to R G B A.
        let at = 13 + (2 * 4 + 1) * 4;
        assert_eq!(&pixels[at..at + 4], &[30, 20, 10, 255]);
        // Two small changes while the page was busy: one rectangle covering both.
        hub.frame(4, 3, &bgrx, Some(ScreenRect { x: 0, y: 0, width: 1, height: 1 }));
        hub.frame(4, 3, &bgrx, Some(ScreenRect { x: 2, y: 1, width: 1, height: 1 }));
        let messages = reader.catch_up(&hub);
        assert_eq!(kinds(&messages), [2]);
        assert_eq!(&messages[0][5..13], &[0, 0, 0, 0, 3, 0, 2, 0]);
        // Damage outside the frame is clipped, or dropped when nothing is left.
        hub.frame(4, 3, &bgrx, Some(ScreenRect { x: 9, y: 9, width: 5, height: 5 }));
        assert!(reader.catch_up(&hub).is_empty());
        // Status and cursor.
        hub.status(ScreenStatus { view: true, control: true, pending: false });
        hub.cursor(-1, 2, true);
        let messages = reader.catch_up(&hub);
        assert_eq!(kinds(&messages), [3, 4]);
        assert_eq!(messages[0][5], 0b011);
        assert_eq!(&messages[1][5..10], &[0xff, 0xff, 2, 0, 1]);
        // Sharing stops: size 0 x 0, no pixels.
        hub.clear();
        assert_eq!(kinds(&reader.catch_up(&hub)), [1]);
        // A wrong buffer length is ignored.
        hub.frame(4, 3, &bgrx[..10], None);
        assert!(reader.catch_up(&hub).is_empty());
    }

    #[test]
    fn a_page_gets_the_monitors_and_which_one_is_shown() {
        let hub = ScreenHub::new();
        let mut reader = Reader::default();
        reader.catch_up(&hub);
        let monitors = [
            ScreenMonitor { width: 1920, height: 1080, primary: true },
            ScreenMonitor { width: 1280, height: 1024, primary: false },
        ];
        hub.layout(&monitors, 1);
        let messages = reader.catch_up(&hub);
        assert_eq!(kinds(&messages), [5]);
        assert_eq!(&messages[0][..], &[13, 0, 0, 0, 5, 2, 1, 0x80, 7, 0x38, 4, 1, 0, 5, 0, 4, 0]);
        // The same again: nothing new.
        hub.layout(&monitors, 1);
        assert!(reader.catch_up(&hub).is_empty());
        // Sharing stops: the list empties too.
        hub.clear();
        let messages = reader.catch_up(&hub);
        assert_eq!(kinds(&messages), [1, 5]);
        assert_eq!(&messages[1][4..], &[5, 0, 0]);
    }

    #[test]
    fn a_page_far_behind_gets_the_whole_frame() {
        let hub = ScreenHub::new();
        let bgrx = vec![7u8; 8 * 8 * 4];
        hub.frame(8, 8, &bgrx, None);
        let mut reader = Reader::default();
        reader.catch_up(&hub);
        for _ in 0..DAMAGE_HISTORY + 2 {
            hub.frame(8, 8, &bgrx, Some(ScreenRect { x: 1, y: 1, width: 1, height: 1 }));
        }
        let messages = reader.catch_up(&hub);
        assert_eq!(&messages[0][5..13], &[0, 0, 0, 0, 8, 0, 8, 0]);
    }

    #[test]
    fn input_parses_strictly() {
        let body: InputBody = serde_json::from_str(
            r#"{"events":[{"type":"move","x":3,"y":4},{"type":"button","button":1,"pressed":true,"x":3,"y":4},
                {"type":"wheel","dx":0,"dy":-2},{"type":"key","keysym":97,"pressed":false},{"type":"release_all"},
                {"type":"monitor","index":1}]}"#,
        )
        .unwrap();
        assert_eq!(body.events.len(), 6);
        assert_eq!(body.events[5], ScreenInput::Monitor { index: 1 });
        assert_eq!(body.events[0], ScreenInput::Move { x: 3, y: 4 });
        for bad in [
            r#"{"events":[{"type":"move","x":-1,"y":4}]}"#,
            r#"{"events":[{"type":"move","x":1,"y":4,"z":1}]}"#,
            r#"{"events":[{"type":"exec"}]}"#,
            r#"{"events":[{"type":"monitor","index":256}]}"#,
            r#"{"events":[],"more":1}"#,
        ] {
            assert!(serde_json::from_str::<InputBody>(bad).is_err(), "{bad}");
        }
    }
}
