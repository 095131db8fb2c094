//! A private Xvfb server and a tiny X11 client, for tests and benchmarks (here and in the
//! end-to-end tests of the desktop apps). Not used by the product.
//!
//! [`Xvfb::start`] runs `Xvfb -displayfd` so the server picks a free display number itself;
//! if Xvfb is missing or fails, the error says so (tests must fail, not skip).
//! [`TestWindow`] is an override-redirect window that draws rectangles, images and text, and
//! records the input events it receives.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use x11rb::connection::{Connection, RequestConnection};
use x11rb::protocol::Event;
use x11rb::protocol::xproto::{
    self, ChangeGCAux, ConnectionExt as _, CreateGCAux, CreateWindowAux, EventMask, ImageFormat, InputFocus,
    WindowClass,
};
use x11rb::rust_connection::RustConnection;
use x11rb::wrapper::ConnectionExt as _;

use crate::frame::Rect;

/// A running Xvfb, killed on drop.
#[derive(Debug)]
pub struct Xvfb {
    child: Child,
    display: String,
    log: PathBuf,
}

impl Xvfb {
    /// Starts `Xvfb` with one `width × height × 24` screen on a free display.
    pub fn start(width: u16, height: u16) -> Result<Xvfb, String> {
        let log = std::env::temp_dir().join(format!(
            "lifeline-xvfb-{}-{}.log",
            std::process::id(),
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0)
        ));
        let stderr = File::create(&log).map_err(|e| format!("cannot create {}: {e}", log.display()))?;
        let mut child = Command::new("Xvfb")
            .args(["-displayfd", "1", "-screen", "0"])
            .arg(format!("{width}x{height}x24"))
            .args(["-nolisten", "tcp", "-noreset", "-br", "+extension", "MIT-SHM", "+extension", "XTEST"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .map_err(|e| {
                format!("cannot start Xvfb ({e}): install it with `bash scripts/setup-x11.sh` (Debian package xvfb)")
            })?;
        let mut line = String::new();
        let read = match child.stdout.take() {
            Some(stdout) => BufReader::new(stdout).read_line(&mut line),
            None => Ok(0),
        };
        let number = line.trim();
        if read.is_err() || number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
            let _ = child.kill();
            let _ = child.wait();
            let mut output = String::new();
            let _ = File::open(&log).and_then(|mut f| f.read_to_string(&mut output));
            return Err(format!("Xvfb did not report a display number; its output:\n{output}"));
        }
        Ok(Xvfb { display: format!(":{number}"), child, log })
    }

    /// The display name (`:N`).
    pub fn display(&self) -> &str {
        &self.display
    }

    /// Splits the screen into RandR 1.5 monitors `(name, rect, primary)`, as real outputs
    /// would be (Xvfb has one output: it goes to the first monitor, which replaces the automatic
    /// whole-screen one).
    pub fn set_monitors(&self, monitors: &[(&str, Rect, bool)]) -> Result<(), String> {
        use x11rb::protocol::randr::{self, ConnectionExt as _};
        let fail = |e: &dyn std::fmt::Display| format!("RandR monitors on {}: {e}", self.display);
        let (conn, screen) = RustConnection::connect(Some(&self.display)).map_err(|e| fail(&e))?;
        let root = conn.setup().roots[screen].root;
        let version = conn.randr_query_version(1, 5).map_err(|e| fail(&e))?.reply().map_err(|e| fail(&e))?;
        if (version.major_version, version.minor_version) < (1, 5) {
            return Err(fail(&"the server lacks RandR 1.5"));
        }
        let listed = conn.randr_get_monitors(root, true).map_err(|e| fail(&e))?.reply().map_err(|e| fail(&e))?;
        let mut outputs = listed.monitors.first().map(|m| m.outputs.clone()).unwrap_or_default();
        for &(name, rect, primary) in monitors {
            let atom =
                conn.intern_atom(false, name.as_bytes()).map_err(|e| fail(&e))?.reply().map_err(|e| fail(&e))?.atom;
            let (Ok(x), Ok(y)) = (i16::try_from(rect.x), i16::try_from(rect.y)) else {
                return Err(fail(&"monitor position out of range"));
            };
            let info = randr::MonitorInfo {
                name: atom,
                primary,
                automatic: false,
                x,
                y,
                width: rect.width,
                height: rect.height,
                width_in_millimeters: u32::from(rect.width) / 4,
                height_in_millimeters: u32::from(rect.height) / 4,
                outputs: std::mem::take(&mut outputs),
            };
            conn.randr_set_monitor(root, info).map_err(|e| fail(&e))?.check().map_err(|e| fail(&e))?;
        }
        Ok(())
    }
}

impl Drop for Xvfb {
    /// SIGTERM first, so that Xvfb removes its socket and lock file; SIGKILL after 2 s.
    fn drop(&mut self) {
        let pid = rustix::process::Pid::from_child(&self.child);
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                let _ = std::fs::remove_file(&self.log);
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

/// An input event a [`TestWindow`] received.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recorded {
    /// A button went down at a window position.
    ButtonPress {
        /// Button number.
        button: u8,
        /// Window x.
        x: i16,
        /// Window y.
        y: i16,
    },
    /// A button went up.
    ButtonRelease {
        /// Button number.
        button: u8,
    },
    /// A key went down.
    KeyPress {
        /// Keycode.
        keycode: u8,
        /// Modifier state before the event.
        state: u16,
    },
    /// A key went up.
    KeyRelease {
        /// Keycode.
        keycode: u8,
    },
    /// The pointer moved to a window position.
    Motion {
        /// Window x.
        x: i16,
        /// Window y.
        y: i16,
    },
}

/// A window that draws and records input, on its own connection.
#[derive(Debug)]
pub struct TestWindow {
    conn: RustConnection,
    window: xproto::Window,
    gc: xproto::Gcontext,
    font: Option<xproto::Font>,
    /// Position and size on the screen.
    pub rect: Rect,
}

fn err<E: core::fmt::Display>(error: E) -> String {
    error.to_string()
}

impl TestWindow {
    /// Opens a mapped window at `rect` (override-redirect: no window manager moves it).
    pub fn open(display: &str, rect: Rect) -> Result<TestWindow, String> {
        let (conn, screen_num) = RustConnection::connect(Some(display)).map_err(err)?;
        let screen = conn.setup().roots.get(screen_num).ok_or("no screen")?.clone();
        let window = conn.generate_id().map_err(err)?;
        let mask = EventMask::BUTTON_PRESS
            | EventMask::BUTTON_RELEASE
            | EventMask::KEY_PRESS
            | EventMask::KEY_RELEASE
            | EventMask::POINTER_MOTION
            | EventMask::EXPOSURE
            | EventMask::STRUCTURE_NOTIFY;
        conn.create_window(
            screen.root_depth,
            window,
            screen.root,
            rect.x as i16,
            rect.y as i16,
            rect.width,
            rect.height,
            0,
            WindowClass::INPUT_OUTPUT,
            0,
            &CreateWindowAux::new().background_pixel(screen.black_pixel).override_redirect(1).event_mask(mask),
        )
        .map_err(err)?;
        let gc = conn.generate_id().map_err(err)?;
        conn.create_gc(gc, window, &CreateGCAux::new().foreground(screen.white_pixel).graphics_exposures(0))
            .map_err(err)?;
        let font = conn.generate_id().map_err(err)?;
        let font = conn.open_font(font, b"fixed").map_err(err)?.check().ok().map(|()| font);
        if let Some(font) = font {
            conn.change_gc(gc, &ChangeGCAux::new().font(font)).map_err(err)?;
        }
        conn.map_window(window).map_err(err)?;
        conn.flush().map_err(err)?;
        // Wait until it is viewable.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(Event::MapNotify(_)) = conn.poll_for_event().map_err(err)? {
                break;
            }
            if Instant::now() > deadline {
                return Err("test window was not mapped within 10 s".into());
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        let window = TestWindow { conn, window, gc, font, rect };
        window.sync()?;
        Ok(window)
    }

    /// Fills a rectangle (window coordinates) with `[r, g, b]`.
    pub fn fill(&self, rect: Rect, [r, g, b]: [u8; 3]) -> Result<(), String> {
        let pixel = u32::from(r) << 16 | u32::from(g) << 8 | u32::from(b);
        self.conn.change_gc(self.gc, &ChangeGCAux::new().foreground(pixel)).map_err(err)?;
        let rectangle =
            xproto::Rectangle { x: rect.x as i16, y: rect.y as i16, width: rect.width, height: rect.height };
        self.conn.poly_fill_rectangle(self.window, self.gc, &[rectangle]).map_err(err)?;
        Ok(())
    }

    /// Draws `B G R X` pixels at `(x, y)` (window coordinates), in strips that fit a request.
    pub fn put_image(&self, x: i16, y: i16, width: u16, height: u16, bgrx: &[u8]) -> Result<(), String> {
        let row = usize::from(width) * 4;
        if bgrx.len() < row * usize::from(height) || width == 0 {
            return Err("image shorter than width x height".into());
        }
        let max_bytes = self.conn.maximum_request_bytes().saturating_sub(64).max(row);
        let rows_per = (max_bytes / row).clamp(1, usize::from(height.max(1)));
        let depth = self.conn.setup().roots.first().map_or(24, |s| s.root_depth);
        let mut top = 0usize;
        while top < usize::from(height) {
            let rows = rows_per.min(usize::from(height) - top);
            self.conn
                .put_image(
                    ImageFormat::Z_PIXMAP,
                    self.window,
                    self.gc,
                    width,
                    rows as u16,
                    x,
                    y + top as i16,
                    0,
                    depth,
                    &bgrx[top * row..(top + rows) * row],
                )
                .map_err(err)?;
            top += rows;
        }
        Ok(())
    }

    /// Copies a rectangle of the window to `(x, y)` (as an application scrolls).
    pub fn copy_area(&self, src: Rect, x: i16, y: i16) -> Result<(), String> {
        self.conn
            .copy_area(self.window, self.window, self.gc, src.x as i16, src.y as i16, x, y, src.width, src.height)
            .map_err(err)?;
        Ok(())
    }

    /// Draws text with the server's built-in `fixed` font (6 × 13), black on `[r, g, b]`
    /// background colour given by the last fill... here: white text on black unless changed.
    pub fn text(&self, x: i16, y: i16, text: &[u8], foreground: [u8; 3], background: [u8; 3]) -> Result<(), String> {
        if self.font.is_none() {
            return Err("font `fixed` unavailable".into());
        }
        let pixel = |[r, g, b]: [u8; 3]| u32::from(r) << 16 | u32::from(g) << 8 | u32::from(b);
        self.conn
            .change_gc(self.gc, &ChangeGCAux::new().foreground(pixel(foreground)).background(pixel(background)))
            .map_err(err)?;
        for chunk in text.chunks(250) {
            self.conn.image_text8(self.window, self.gc, x, y, chunk).map_err(err)?;
        }
        Ok(())
    }

    /// Gives the window the keyboard focus.
    pub fn focus(&self) -> Result<(), String> {
        self.conn.set_input_focus(InputFocus::POINTER_ROOT, self.window, x11rb::CURRENT_TIME).map_err(err)?;
        self.sync()
    }

    /// Waits until the server has processed every request of this window's connection.
    pub fn sync(&self) -> Result<(), String> {
        self.conn.sync().map_err(err)
    }

    /// Input events received until `wait` passes with none new.
    pub fn recorded(&self, wait: Duration) -> Result<Vec<Recorded>, String> {
        let mut events = Vec::new();
        let mut quiet_since = Instant::now();
        while quiet_since.elapsed() < wait {
            match self.conn.poll_for_event().map_err(err)? {
                Some(event) => {
                    let recorded = match event {
                        Event::ButtonPress(e) => {
                            Some(Recorded::ButtonPress { button: e.detail, x: e.event_x, y: e.event_y })
                        }
                        Event::ButtonRelease(e) => Some(Recorded::ButtonRelease { button: e.detail }),
                        Event::KeyPress(e) => Some(Recorded::KeyPress { keycode: e.detail, state: e.state.into() }),
                        Event::KeyRelease(e) => Some(Recorded::KeyRelease { keycode: e.detail }),
                        Event::MotionNotify(e) => Some(Recorded::Motion { x: e.event_x, y: e.event_y }),
                        _ => None,
                    };
                    if let Some(recorded) = recorded {
                        events.push(recorded);
                        quiet_since = Instant::now();
                    }
                }
                None => std::thread::sleep(Duration::from_millis(2)),
            }
        }
        Ok(events)
    }

    /// The text typed by the recorded key presses, read through the server's current keyboard
    /// mapping (column 1 when Shift was down), as a person would see it.
    pub fn typed_text(&self, events: &[Recorded]) -> Result<String, String> {
        let setup = self.conn.setup();
        let (min, max) = (setup.min_keycode, setup.max_keycode);
        let map = self.conn.get_keyboard_mapping(min, max - min + 1).map_err(err)?.reply().map_err(err)?;
        let per = usize::from(map.keysyms_per_keycode.max(1));
        let mut text = String::new();
        for event in events {
            if let Recorded::KeyPress { keycode, state } = *event {
                let shifted = state & u16::from(xproto::KeyButMask::SHIFT) != 0;
                let base = usize::from(keycode.saturating_sub(min)) * per;
                let sym = map.keysyms.get(base + usize::from(shifted)).copied().unwrap_or(0);
                let sym = if sym == 0 { map.keysyms.get(base).copied().unwrap_or(0) } else { sym };
                let c = match sym {
                    0x20..=0x7E | 0xA0..=0xFF => char::from_u32(sym),
                    0xFF0D => Some('\n'),
                    s if s >= 0x0100_0000 => char::from_u32(s - 0x0100_0000),
                    _ => None,
                };
                text.extend(c);
            }
        }
        Ok(text)
    }
}
