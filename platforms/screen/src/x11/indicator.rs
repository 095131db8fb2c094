//! A visible sign on the customer's own display while the provider has control: a small red
//! bar at the top of the screen, above other windows (override-redirect, so no window manager
//! moves or decorates it), that input passes through to nothing (it takes no focus).

use x11rb::connection::Connection as _;
use x11rb::protocol::Event;
use x11rb::protocol::xproto::{ConnectionExt as _, CreateGCAux, CreateWindowAux, EventMask, WindowClass};
use x11rb::rust_connection::RustConnection;

use crate::backend::BackendError;

use super::protocol;

const HEIGHT: u16 = 18;

/// The bar; dropping it (or closing its connection) removes it.
#[derive(Debug)]
pub struct Indicator {
    conn: RustConnection,
    window: u32,
    gc: u32,
    text: Vec<u8>,
}

impl Indicator {
    /// Shows `text` (Latin-1, in the server's `fixed` font) at the top centre of `display`.
    pub fn show(display: Option<&str>, text: &str) -> Result<Indicator, BackendError> {
        let (conn, screen_num) = super::connect(display)?;
        let screen = conn.setup().roots.get(screen_num).ok_or(BackendError::Unsupported("no such screen"))?.clone();
        let text: Vec<u8> = text.chars().map(|c| u8::try_from(u32::from(c)).unwrap_or(b'?')).take(255).collect();
        // `fixed` is 6 pixels wide.
        let width = (text.len() as u16 * 6 + 16).min(screen.width_in_pixels);
        let x = (screen.width_in_pixels - width) / 2;
        let window = conn.generate_id().map_err(protocol)?;
        let red = 0x00c0_1c28;
        conn.create_window(
            screen.root_depth,
            window,
            screen.root,
            x as i16,
            0,
            width,
            HEIGHT,
            0,
            WindowClass::INPUT_OUTPUT,
            0,
            &CreateWindowAux::new().background_pixel(red).override_redirect(1).event_mask(EventMask::EXPOSURE),
        )
        .map_err(protocol)?;
        let gc = conn.generate_id().map_err(protocol)?;
        conn.create_gc(gc, window, &CreateGCAux::new().foreground(screen.white_pixel).background(red))
            .map_err(protocol)?;
        let font = conn.generate_id().map_err(protocol)?;
        if conn.open_font(font, b"fixed").map_err(protocol)?.check().is_ok() {
            conn.change_gc(gc, &x11rb::protocol::xproto::ChangeGCAux::new().font(font)).map_err(protocol)?;
        }
        conn.map_window(window).map_err(protocol)?;
        conn.flush().map_err(protocol)?;
        let indicator = Indicator { conn, window, gc, text };
        Ok(indicator)
    }

    /// Redraws the text after the server asked (call now and then; never blocks).
    pub fn poll(&mut self) -> Result<(), BackendError> {
        let mut draw = false;
        while let Some(event) = self.conn.poll_for_event().map_err(protocol)? {
            draw |= matches!(event, Event::Expose(_) | Event::MapNotify(_));
        }
        if draw {
            self.conn.image_text8(self.window, self.gc, 8, 13, &self.text).map_err(protocol)?;
            self.conn.flush().map_err(protocol)?;
        }
        Ok(())
    }
}

impl Drop for Indicator {
    fn drop(&mut self) {
        let _ = self.conn.destroy_window(self.window);
        let _ = self.conn.flush();
    }
}
