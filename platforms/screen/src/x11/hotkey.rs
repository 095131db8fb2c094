//! The customer's "take control back" key: a passive grab on the root window, so the key press
//! reaches this connection whichever window has the focus (and the focused application never
//! sees it).

use x11rb::connection::Connection as _;
use x11rb::protocol::Event;
use x11rb::protocol::xproto::{self, ConnectionExt as _, GrabMode, ModMask};
use x11rb::rust_connection::RustConnection;

use crate::backend::BackendError;

use super::protocol;

/// The X11 keysym of Pause (Break).
pub const PAUSE_KEYSYM: u32 = 0xff13;

/// A key combination grabbed on the root window: Ctrl+Alt+`keysym` (Pause by default), with or
/// without Caps Lock and Num Lock.
#[derive(Debug)]
pub struct Hotkey {
    conn: RustConnection,
    keycode: u8,
}

impl Hotkey {
    /// Grabs Ctrl+Alt+Pause on `display` (`None`: `$DISPLAY`).
    pub fn grab(display: Option<&str>) -> Result<Hotkey, BackendError> {
        Hotkey::grab_keysym(display, PAUSE_KEYSYM)
    }

    /// Grabs Ctrl+Alt+`keysym`; fails if the keyboard has no key for it or another client holds it.
    pub fn grab_keysym(display: Option<&str>, keysym: u32) -> Result<Hotkey, BackendError> {
        let (conn, screen_num) = super::connect(display)?;
        let setup = conn.setup();
        let root = setup.roots.get(screen_num).ok_or(BackendError::Unsupported("no such screen"))?.root;
        let (min, max) = (setup.min_keycode, setup.max_keycode);
        let mapping = conn.get_keyboard_mapping(min, max - min + 1).map_err(protocol)?.reply().map_err(protocol)?;
        let per = usize::from(mapping.keysyms_per_keycode.max(1));
        let keycode = mapping
            .keysyms
            .chunks(per)
            .position(|syms| syms.contains(&keysym))
            .and_then(|index| u8::try_from(usize::from(min) + index).ok())
            .ok_or(BackendError::Unsupported("no key for the hotkey in this keyboard layout"))?;
        let base = ModMask::CONTROL | ModMask::M1;
        for extra in [ModMask::from(0u16), ModMask::LOCK, ModMask::M2, ModMask::LOCK | ModMask::M2] {
            conn.grab_key(true, root, base | extra, keycode, GrabMode::ASYNC, GrabMode::ASYNC)
                .map_err(protocol)?
                .check()
                .map_err(protocol)?;
        }
        Ok(Hotkey { conn, keycode })
    }

    /// Whether the combination was pressed since the last call (never blocks).
    pub fn pressed(&mut self) -> Result<bool, BackendError> {
        let mut pressed = false;
        while let Some(event) = self.conn.poll_for_event().map_err(protocol)? {
            if let Event::KeyPress(xproto::KeyPressEvent { detail, .. }) = event
                && detail == self.keycode
            {
                pressed = true;
            }
        }
        Ok(pressed)
    }
}
