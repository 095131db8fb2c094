//! The pluggable back-end interface: capture ([`Capturer`]) and input injection ([`Injector`]).
//!
//! | back-end | capture | injection | state |
//! |---|---|---|---|
//! | X11 ([`crate::x11`]) | MIT-SHM (`ShmGetImage` into a memfd), else core `GetImage`; XDamage; RandR monitors; XFixes cursor | XTest | implemented, tested under Xvfb |
//! | Wayland | xdg-desktop-portal ScreenCast + PipeWire | portal RemoteDesktop (or libei) | interface only |
//! | Windows | DXGI Desktop Duplication | `SendInput` | interface only |
//! | macOS | ScreenCaptureKit | `CGEvent` | interface only |
//!
//! A back-end that cannot do something says so with [`BackendError::Unsupported`]; the session
//! layer then tells the provider instead of pretending.

use core::fmt;

use crate::frame::{Frame, Rect};
use crate::input::InputEvent;

/// One monitor of the sharer's desktop.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Monitor {
    /// Left edge on the desktop.
    pub x: i16,
    /// Top edge on the desktop.
    pub y: i16,
    /// Width.
    pub width: u16,
    /// Height.
    pub height: u16,
    /// The primary monitor.
    pub primary: bool,
    /// The system's name for it (may be empty).
    pub name: String,
}

/// Pointer position and shape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CursorImage {
    /// Desktop position of the hot spot.
    pub x: i16,
    /// Desktop position of the hot spot.
    pub y: i16,
    /// Changes when the shape changes.
    pub serial: u32,
    /// Hot spot within the image.
    pub hot_x: u16,
    /// Hot spot within the image.
    pub hot_y: u16,
    /// Image width (0: the back-end has no shape).
    pub width: u16,
    /// Image height.
    pub height: u16,
    /// `R G B A` bytes, straight alpha, `width × height × 4`.
    pub rgba: Vec<u8>,
}

/// A back-end failure.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum BackendError {
    /// The display could not be reached.
    Unavailable(String),
    /// The display server refused a request or went away.
    Protocol(String),
    /// This back-end cannot do it (say, a pixel format it does not convert).
    Unsupported(&'static str),
}

impl fmt::Display for BackendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BackendError::Unavailable(why) => write!(f, "display unavailable: {why}"),
            BackendError::Protocol(why) => write!(f, "display protocol error: {why}"),
            BackendError::Unsupported(what) => write!(f, "not supported by this back-end: {what}"),
        }
    }
}

impl std::error::Error for BackendError {}

/// Reads the screen.
pub trait Capturer {
    /// The monitors, in the order a `Layout` message lists them.
    fn monitors(&mut self) -> Result<Vec<Monitor>, BackendError>;

    /// Captures `monitor` into `frame` (resized to the monitor).
    fn capture(&mut self, monitor: &Monitor, frame: &mut Frame) -> Result<(), BackendError>;

    /// Like [`Capturer::capture`], but `frame` holds this monitor's previous result of this
    /// method, so a back-end that knows what changed may read only that (X11: XDamage).
    /// Returns the rectangles written (monitor coordinates), or `None` if it may have written
    /// anywhere; nothing outside the returned rectangles was touched.
    fn capture_changed(&mut self, monitor: &Monitor, frame: &mut Frame) -> Result<Option<Vec<Rect>>, BackendError> {
        self.capture(monitor, frame)?;
        Ok(None)
    }

    /// The pointer's position and current shape.
    fn cursor(&mut self) -> Result<CursorImage, BackendError>;
}

/// Injects input as if the local user made it.
pub trait Injector {
    /// Injects one event.
    fn inject(&mut self, event: &InputEvent) -> Result<(), BackendError>;

    /// Releases every key and button injected and still held (control taken back, session
    /// ended, viewer gone).
    fn release_all(&mut self) -> Result<(), BackendError>;
}
