//! The two ends of a screen stream, ready to plug into a session: [`Sharer`] (customer side:
//! capture, encode, rate control, cursor, layout) and [`Viewer`] (provider side: decode, cursor,
//! layout, acknowledgements and refresh requests). Neither does I/O beyond the capturer: they
//! take payloads and the time, and return payloads to send as `ContentType::Screen`.
//!
//! The application decides *whether* to run them: it feeds and polls the [`Sharer`] only while
//! the customer has granted `ViewScreen`, and drops it when the grant is revoked.
//!
//! ```text
//! sharer:  handle_message(now, payload)   for each Screen payload from the viewer (Ack, Refresh)
//!          poll_transmit(now, &mut out)   captures and encodes if due; send every payload in out
//!          poll_timeout()                 when to poll again
//! viewer:  handle_payload(now, payload, &mut replies)   for each Screen payload from the sharer;
//!                                                       send the replies (Ack, Refresh) back
//! ```

use lifeline_core::time::{Duration, Instant};

use crate::backend::{BackendError, Capturer, Monitor};
use crate::codec::{
    CursorEncoder, DecodeError, Decoder, Encoder, EncoderConfig, Limits, decode_cursor_shape, layout_message,
};
use crate::frame::{Frame, Rect};
use crate::message::{MonitorInfo, ScreenMessage};
use crate::rate::{RateConfig, RateController};

/// The customer's end: streams one monitor.
#[derive(Debug)]
pub struct Sharer<C: Capturer> {
    capturer: C,
    monitors: Vec<Monitor>,
    monitor: usize,
    encoder: Encoder,
    frame: Frame,
    rate: RateController,
    cursor: CursorEncoder,
    layout_sent: bool,
    config: EncoderConfig,
    rate_config: RateConfig,
}

impl<C: Capturer> Sharer<C> {
    /// Starts sharing the first (primary) monitor.
    pub fn new(mut capturer: C, encoder: EncoderConfig, rate: RateConfig, now: Instant) -> Result<Self, BackendError> {
        let monitors = capturer.monitors()?;
        if monitors.is_empty() {
            return Err(BackendError::Unsupported("no monitor"));
        }
        Ok(Sharer {
            capturer,
            monitors,
            monitor: 0,
            encoder: Encoder::new(0, encoder),
            frame: Frame::new(0, 0),
            rate: RateController::new(rate, now),
            cursor: CursorEncoder::new(),
            layout_sent: false,
            config: encoder,
            rate_config: rate,
        })
    }

    /// The monitors, as the `Layout` message lists them.
    pub fn monitors(&self) -> &[Monitor] {
        &self.monitors
    }

    /// Streams monitor `index` from now on (the customer picks it); `false` if there is none.
    pub fn select_monitor(&mut self, index: usize) -> bool {
        if index >= self.monitors.len() || index > usize::from(u8::MAX) {
            return false;
        }
        self.monitor = index;
        self.encoder = Encoder::new(index as u8, self.config);
        self.frame = Frame::new(0, 0);
        self.cursor.request_shape();
        true
    }

    /// The monitor being streamed (index into [`Sharer::monitors`]).
    pub const fn monitor(&self) -> usize {
        self.monitor
    }

    /// A `Screen` payload from the viewer. Returns `false` for anything a sharer does not take,
    /// including a `Refresh` for a monitor it does not have.
    ///
    /// `Refresh { monitor }` means "send me all of `monitor`": for the streamed monitor, a full
    /// frame; for another one, the sharer switches to it (the viewer's choice of monitor) and
    /// its first frame is full anyway.
    pub fn handle_message(&mut self, now: Instant, payload: &[u8]) -> bool {
        match ScreenMessage::parse(payload) {
            Some(ScreenMessage::Ack { monitor, frame, .. }) if usize::from(monitor) == self.monitor => {
                self.rate.on_ack(now, frame);
                true
            }
            Some(ScreenMessage::Refresh { monitor }) if usize::from(monitor) == self.monitor => {
                self.encoder.request_refresh();
                self.cursor.request_shape();
                self.layout_sent = false;
                true
            }
            Some(ScreenMessage::Refresh { monitor }) => {
                let switched = self.select_monitor(usize::from(monitor));
                if switched {
                    // Frames of the old monitor in flight will never be acknowledged (the viewer
                    // drops them, and the new encoder numbers frames afresh): start the
                    // controller over rather than wait for its ack timeout.
                    self.rate = RateController::new(self.rate_config, now);
                }
                switched
            }
            Some(ScreenMessage::Ack { .. }) => true,
            _ => false,
        }
    }

    /// Appends what is due to `out`: the layout first, then (when the rate controller allows)
    /// the changed parts of the frame and the cursor.
    pub fn poll_transmit(&mut self, now: Instant, out: &mut Vec<Vec<u8>>) -> Result<(), BackendError> {
        if !self.layout_sent {
            out.extend(layout_message(&self.monitors));
            self.layout_sent = true;
        }
        if !self.rate.poll_capture(now) {
            return Ok(());
        }
        let monitor = &self.monitors[self.monitor];
        let changed = self.capturer.capture_changed(monitor, &mut self.frame)?;
        let number = self.encoder.next_frame();
        let stats = self.encoder.encode_changed(&self.frame, changed.as_deref(), &self.rate.quality(), out);
        if stats.bytes > 0 {
            self.rate.on_sent(now, number, stats.bytes);
        }
        let image = self.capturer.cursor()?;
        out.extend(self.cursor.encode(&image, true));
        Ok(())
    }

    /// When to call [`Sharer::poll_transmit`] next (or earlier, when a message arrives).
    pub fn poll_timeout(&self) -> Instant {
        self.rate.poll_timeout()
    }

    /// The rate controller's view, for the status line.
    pub fn estimate(&self) -> crate::rate::Estimate {
        self.rate.estimate()
    }
}

/// The pointer as the viewer should draw it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ViewerCursor {
    /// Hot spot, desktop coordinates.
    pub x: i16,
    /// Hot spot, desktop coordinates.
    pub y: i16,
    /// Shown.
    pub visible: bool,
    /// Shape `(width, height, hot_x, hot_y, RGBA)`, if one was received for the current serial.
    pub shape: Option<(u16, u16, u16, u16, Vec<u8>)>,
    serial: u32,
}

/// What a payload changed for the viewer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ViewerEvent {
    /// Pixels changed; present when `complete`.
    Frame {
        /// Bounding box of the change.
        damage: Option<Rect>,
        /// The frame is complete (last part).
        complete: bool,
    },
    /// The monitor layout arrived.
    Layout,
    /// The cursor moved or changed shape.
    Cursor,
    /// Nothing for the viewer (a message for the other direction).
    Ignored,
}

/// How often a viewer repeats a `Refresh` while it still needs one.
pub const REFRESH_RETRY: Duration = Duration::from_millis(500);

/// The provider's end: rebuilds the shared monitor.
#[derive(Debug)]
pub struct Viewer {
    limits: Limits,
    decoder: Decoder,
    monitor: u8,
    /// The monitor the viewer asked for: updates of any other one are dropped until it comes.
    wanted: Option<u8>,
    monitors: Vec<MonitorInfo>,
    cursor: ViewerCursor,
    received: u32,
    last_refresh: Option<Instant>,
}

impl Viewer {
    /// A viewer that accepts frames up to `limits`.
    pub fn new(limits: Limits) -> Viewer {
        Viewer {
            limits,
            decoder: Decoder::new(limits),
            monitor: 0,
            wanted: None,
            monitors: Vec::new(),
            cursor: ViewerCursor::default(),
            received: 0,
            last_refresh: None,
        }
    }

    /// The current frame of the shared monitor.
    pub fn frame(&self) -> &Frame {
        self.decoder.frame()
    }

    /// The sharer's monitors (empty until a `Layout` arrived).
    pub fn monitors(&self) -> &[MonitorInfo] {
        &self.monitors
    }

    /// The monitor being shown.
    pub const fn monitor(&self) -> u8 {
        self.monitor
    }

    /// The monitor asked for with [`Viewer::select_monitor`], if any.
    pub const fn wanted_monitor(&self) -> Option<u8> {
        self.wanted
    }

    /// Shows monitor `index` from now on: returns the `Refresh { monitor: index }` to send (the
    /// sharer switches to that monitor). Updates of other monitors still in flight are dropped,
    /// and the request is repeated every [`REFRESH_RETRY`] while they keep coming. An index the
    /// sharer does not have is ignored there (and here: the current monitor stays shown).
    pub fn select_monitor(&mut self, now: Instant, index: u8) -> Option<Vec<u8>> {
        if !self.monitors.is_empty() && usize::from(index) >= self.monitors.len() {
            return None;
        }
        self.wanted = Some(index);
        self.last_refresh = Some(now);
        emit(&ScreenMessage::Refresh { monitor: index })
    }

    /// The pointer.
    pub fn cursor(&self) -> &ViewerCursor {
        &self.cursor
    }

    /// Takes one `Screen` payload from the sharer; appends replies (`Ack` after a complete
    /// frame, `Refresh` when parts were lost, at most every [`REFRESH_RETRY`]) to `replies`.
    /// A malformed payload is an error and changes nothing but the refresh state.
    pub fn handle_payload(
        &mut self,
        now: Instant,
        payload: &[u8],
        replies: &mut Vec<Vec<u8>>,
    ) -> Result<ViewerEvent, DecodeError> {
        self.received = self.received.wrapping_add(payload.len() as u32);
        let Some(message) = ScreenMessage::parse(payload) else {
            return Err(DecodeError::Malformed);
        };
        let event = match message {
            ScreenMessage::Update(update) => {
                if let Some(wanted) = self.wanted
                    && update.monitor != wanted
                {
                    // Sent before the sharer switched: not what the viewer shows any more.
                    if self.refresh_due(now) {
                        replies.extend(emit(&ScreenMessage::Refresh { monitor: wanted }));
                        self.last_refresh = Some(now);
                    }
                    return Ok(ViewerEvent::Ignored);
                }
                if update.monitor != self.monitor {
                    // The sharer switched monitors: start over on the new one.
                    self.monitor = update.monitor;
                    self.decoder = Decoder::new(self.limits);
                }
                let applied = self.decoder.apply(&update);
                if let Ok(applied) = applied
                    && applied.frame_complete
                {
                    let ack =
                        ScreenMessage::Ack { monitor: self.monitor, frame: update.frame, received: self.received };
                    replies.extend(emit(&ack));
                }
                self.maybe_refresh(now, replies);
                let applied = applied?;
                ViewerEvent::Frame { damage: applied.damage, complete: applied.frame_complete }
            }
            ScreenMessage::Cursor(cursor) => {
                self.cursor.x = cursor.x;
                self.cursor.y = cursor.y;
                self.cursor.visible = cursor.visible;
                if let Some(shape) = cursor.shape {
                    self.cursor.shape = decode_cursor_shape(&shape)
                        .map(|rgba| (shape.width, shape.height, shape.hot_x, shape.hot_y, rgba));
                } else if cursor.serial != self.cursor.serial {
                    self.cursor.shape = None;
                }
                self.cursor.serial = cursor.serial;
                ViewerEvent::Cursor
            }
            ScreenMessage::Layout(layout) => {
                self.monitors = layout.monitors;
                ViewerEvent::Layout
            }
            _ => ViewerEvent::Ignored,
        };
        Ok(event)
    }

    fn maybe_refresh(&mut self, now: Instant, replies: &mut Vec<Vec<u8>>) {
        if !self.decoder.needs_refresh() {
            self.last_refresh = None;
            return;
        }
        if self.refresh_due(now) {
            replies.extend(emit(&ScreenMessage::Refresh { monitor: self.monitor }));
            self.last_refresh = Some(now);
        }
    }
}

impl Viewer {
    fn refresh_due(&self, now: Instant) -> bool {
        self.last_refresh
            .is_none_or(|last| now.saturating_duration_since(last).as_micros() >= REFRESH_RETRY.as_micros())
    }
}

fn emit(message: &ScreenMessage<'_>) -> Option<Vec<u8>> {
    let mut out = vec![0u8; 64];
    let len = message.emit(&mut out)?;
    out.truncate(len);
    Some(out)
}
