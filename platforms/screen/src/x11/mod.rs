//! The X11 back-end, over x11rb's pure-Rust connection (no Xlib, no `unsafe` here).
//!
//! - Capture: MIT-SHM when the server offers it (version ≥ 1.2, file-descriptor passing): the
//!   server writes the image into a memfd we share with it, and we read it back with `pread`
//!   (one copy, no mapping, so no `unsafe`). Otherwise core `GetImage`, whose 8 MB reply for a
//!   1080p screen travels through the socket. [`X11Capturer::method`] tells which is in use.
//! - Changed areas: XDamage on the root window; [`X11Capturer::capture_damaged`] reads only the
//!   rectangles the server drew since the last call into the previous frame (the damage is
//!   taken before the pixels are read, so a racing draw is reported again, never lost).
//! - Monitors: RandR 1.5 `GetMonitors`; the whole root window if RandR is missing.
//! - Cursor: XFixes `GetCursorImage` (position, serial, ARGB image).
//! - Injection: XTest `FakeInput`. Keys by keysym through the server's keyboard mapping (Shift
//!   added for shifted symbols; a symbol missing from the layout is mapped onto a spare keycode,
//!   as xdotool does), or by USB HID usage through the evdev keycodes (`hid` table).
//!
//! - The customer's own input: [`LocalInputWatcher`] counts XInput2 raw events from real devices
//!   apart from XTest ones, so the session can let the local user win.
//! - Taking control back: [`Hotkey`] grabs Ctrl+Alt+Pause on the root window; [`Indicator`]
//!   shows a red bar at the top of the screen while the provider has control.
//!
//! Only 24-bit true colour with 32 bits per pixel, little-endian image byte order (what Xorg
//! and Xvfb use on x86 and ARM) is converted; anything else is [`BackendError::Unsupported`].

mod hid;
mod hotkey;
mod indicator;
mod local_input;

pub use hotkey::{Hotkey, PAUSE_KEYSYM};
pub use indicator::Indicator;
pub use local_input::{InputActivity, LocalInputWatcher};

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::os::unix::fs::FileExt;

use x11rb::connection::{Connection, RequestConnection};
use x11rb::protocol::damage::{self, ConnectionExt as _};
use x11rb::protocol::randr::ConnectionExt as _;
use x11rb::protocol::shm::{self, ConnectionExt as _};
use x11rb::protocol::xfixes::ConnectionExt as _;
use x11rb::protocol::xproto::{self, ConnectionExt as _, ImageFormat, ImageOrder};
use x11rb::protocol::xtest;
use x11rb::rust_connection::RustConnection;

use crate::backend::{BackendError, Capturer, CursorImage, Injector, Monitor};
use crate::frame::{Frame, Rect};
use crate::input::InputEvent;

/// How frames are read from the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CaptureMethod {
    /// MIT-SHM `GetImage` into a shared memfd.
    Shm,
    /// Core `GetImage` through the socket.
    GetImage,
}

fn protocol<E: core::fmt::Display>(error: E) -> BackendError {
    BackendError::Protocol(error.to_string())
}

fn connect(display: Option<&str>) -> Result<(RustConnection, usize), BackendError> {
    RustConnection::connect(display).map_err(|e| BackendError::Unavailable(e.to_string()))
}

/// Captures an X11 display.
#[derive(Debug)]
pub struct X11Capturer {
    conn: RustConnection,
    root: xproto::Window,
    root_width: u16,
    root_height: u16,
    shm: Option<ShmSegment>,
    xfixes: bool,
    randr: bool,
    damage: Option<DamageState>,
    scratch: Vec<u8>,
    /// The rectangles the last partial `capture_damaged` read.
    last_rects: Vec<Rect>,
}

/// XDamage tracking for [`X11Capturer::capture_damaged`].
#[derive(Debug)]
struct DamageState {
    damage: damage::Damage,
    region: x11rb::protocol::xfixes::Region,
    /// Damaged rectangles not yet captured, per monitor (keyed by its geometry), in monitor
    /// coordinates.
    pending: HashMap<(i16, i16, u16, u16), Vec<Rect>>,
}

/// What [`X11Capturer::capture_damaged`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DamageCapture {
    /// The whole monitor was read (first capture, too much damage, or no XDamage).
    pub full: bool,
    /// Rectangles read.
    pub rects: usize,
    /// Pixels read.
    pub pixels: usize,
}

/// Above this many damaged rectangles, or this share of the monitor (percent), read it whole.
const MAX_DAMAGE_RECTS: usize = 64;
const MAX_DAMAGE_PERCENT: usize = 50;

#[derive(Debug)]
struct ShmSegment {
    seg: shm::Seg,
    file: File,
    size: usize,
}

impl X11Capturer {
    /// Connects to `display` (`None`: `$DISPLAY`) and uses MIT-SHM if the server offers it.
    pub fn connect(display: Option<&str>) -> Result<X11Capturer, BackendError> {
        Self::connect_with(display, CaptureMethod::Shm)
    }

    /// Connects and uses `method` (`Shm` falls back to `GetImage` when unavailable).
    pub fn connect_with(display: Option<&str>, method: CaptureMethod) -> Result<X11Capturer, BackendError> {
        let (conn, screen_num) = connect(display)?;
        let setup = conn.setup();
        let screen = setup.roots.get(screen_num).ok_or(BackendError::Unsupported("no such screen"))?;
        let bpp32 = setup.pixmap_formats.iter().any(|f| f.depth == screen.root_depth && f.bits_per_pixel == 32);
        let true_color = screen.allowed_depths.iter().flat_map(|d| &d.visuals).any(|v| {
            v.visual_id == screen.root_visual
                && v.red_mask == 0xFF_0000
                && v.green_mask == 0xFF00
                && v.blue_mask == 0xFF
        });
        if !(screen.root_depth == 24 || screen.root_depth == 32)
            || !bpp32
            || !true_color
            || setup.image_byte_order != ImageOrder::LSB_FIRST
        {
            return Err(BackendError::Unsupported("pixel format other than 24-bit BGRX"));
        }
        let (root, root_width, root_height) = (screen.root, screen.width_in_pixels, screen.height_in_pixels);
        let xfixes = conn.extension_information(x11rb::protocol::xfixes::X11_EXTENSION_NAME).ok().flatten().is_some()
            && conn.xfixes_query_version(4, 0).ok().and_then(|c| c.reply().ok()).is_some();
        let randr = conn
            .randr_query_version(1, 5)
            .ok()
            .and_then(|c| c.reply().ok())
            .is_some_and(|v| (v.major_version, v.minor_version) >= (1, 5));
        let mut capturer = X11Capturer {
            conn,
            root,
            root_width,
            root_height,
            shm: None,
            xfixes,
            randr,
            damage: None,
            scratch: Vec::new(),
            last_rects: Vec::new(),
        };
        if method == CaptureMethod::Shm {
            capturer.shm = capturer.attach_shm().ok();
        }
        if xfixes {
            capturer.damage = capturer.create_damage().ok();
        }
        Ok(capturer)
    }

    /// The capture method in use.
    pub fn method(&self) -> CaptureMethod {
        if self.shm.is_some() { CaptureMethod::Shm } else { CaptureMethod::GetImage }
    }

    /// The root window's size.
    pub const fn root_size(&self) -> (u16, u16) {
        (self.root_width, self.root_height)
    }

    /// Whether [`X11Capturer::capture_damaged`] can use XDamage.
    pub fn has_damage(&self) -> bool {
        self.damage.is_some()
    }

    /// Updates `frame` with what changed on `monitor` since the last call for that monitor,
    /// reading only the rectangles the server reports damaged (XDamage). `frame` must hold the
    /// previous result of this method for the same monitor; otherwise (and on the first call,
    /// without XDamage, or when most of the monitor changed) the whole monitor is read.
    ///
    /// The damage is taken from the server before the pixels are read, so drawing that races
    /// with the read is reported again next time: the frame is never left stale.
    pub fn capture_damaged(&mut self, monitor: &Monitor, frame: &mut Frame) -> Result<DamageCapture, BackendError> {
        let Some(state) = self.damage.as_mut() else {
            self.capture(monitor, frame)?;
            return Ok(DamageCapture { full: true, rects: 1, pixels: monitor_pixels(monitor) });
        };
        // Drain the DamageNotify events (only their existence matters) and take the region.
        while self.conn.poll_for_event().map_err(protocol)?.is_some() {}
        self.conn.damage_subtract(state.damage, x11rb::NONE, state.region).map_err(protocol)?;
        let region = self.conn.xfixes_fetch_region(state.region).map_err(protocol)?.reply().map_err(protocol)?;
        for (key, pending) in state.pending.iter_mut() {
            // Past the limit the whole monitor is read anyway: stop collecting.
            if pending.len() <= MAX_DAMAGE_RECTS {
                pending.extend(region.rectangles.iter().filter_map(|r| clip_to(r, *key)));
            }
        }
        let key = (monitor.x, monitor.y, monitor.width, monitor.height);
        let tracked = state.pending.insert(key, Vec::new());
        let rects = match tracked {
            Some(rects) if frame.width() == monitor.width && frame.height() == monitor.height => rects,
            _ => {
                self.capture(monitor, frame)?;
                return Ok(DamageCapture { full: true, rects: 1, pixels: monitor_pixels(monitor) });
            }
        };
        let pixels: usize = rects.iter().map(Rect::area).sum();
        if rects.len() > MAX_DAMAGE_RECTS || pixels * 100 > monitor_pixels(monitor) * MAX_DAMAGE_PERCENT {
            self.capture(monitor, frame)?;
            return Ok(DamageCapture { full: true, rects: 1, pixels: monitor_pixels(monitor) });
        }
        for rect in &rects {
            self.read_rect(monitor, *rect, frame)?;
        }
        let count = rects.len();
        self.last_rects = rects;
        Ok(DamageCapture { full: false, rects: count, pixels })
    }

    /// Reads `rect` (monitor coordinates, inside the monitor) into the same place of `frame`.
    fn read_rect(&mut self, monitor: &Monitor, rect: Rect, frame: &mut Frame) -> Result<(), BackendError> {
        let (x, y) = (monitor.x + rect.x as i16, monitor.y + rect.y as i16);
        let bytes = rect.area() * 4;
        match &self.shm {
            Some(segment) if bytes <= segment.size => {
                let reply = self
                    .conn
                    .shm_get_image(
                        self.root,
                        x,
                        y,
                        rect.width,
                        rect.height,
                        !0,
                        ImageFormat::Z_PIXMAP.into(),
                        segment.seg,
                        0,
                    )
                    .map_err(protocol)?
                    .reply()
                    .map_err(protocol)?;
                if reply.size as usize != bytes {
                    return Err(BackendError::Unsupported("unexpected SHM image size"));
                }
                self.scratch.resize(bytes, 0);
                segment.file.read_exact_at(&mut self.scratch, 0).map_err(protocol)?;
            }
            _ => {
                let reply = self
                    .conn
                    .get_image(ImageFormat::Z_PIXMAP, self.root, x, y, rect.width, rect.height, !0)
                    .map_err(protocol)?
                    .reply()
                    .map_err(protocol)?;
                if reply.data.len() != bytes {
                    return Err(BackendError::Unsupported("unexpected GetImage size"));
                }
                self.scratch = reply.data;
            }
        }
        let stride = frame.stride();
        let row = usize::from(rect.width) * 4;
        let data = frame.as_bytes_mut();
        for (line, src) in self.scratch.chunks_exact(row).enumerate() {
            let start = (usize::from(rect.y) + line) * stride + usize::from(rect.x) * 4;
            data[start..start + row].copy_from_slice(src);
        }
        Ok(())
    }

    fn create_damage(&self) -> Result<DamageState, BackendError> {
        let version = self.conn.damage_query_version(1, 1).map_err(protocol)?.reply().map_err(protocol)?;
        if (version.major_version, version.minor_version) < (1, 1) {
            return Err(BackendError::Unsupported("XDamage older than 1.1"));
        }
        let damage = self.conn.generate_id().map_err(protocol)?;
        self.conn.damage_create(damage, self.root, damage::ReportLevel::NON_EMPTY).map_err(protocol)?;
        let region = self.conn.generate_id().map_err(protocol)?;
        self.conn.xfixes_create_region(region, &[]).map_err(protocol)?.check().map_err(protocol)?;
        Ok(DamageState { damage, region, pending: HashMap::new() })
    }

    fn attach_shm(&self) -> Result<ShmSegment, BackendError> {
        let version = self.conn.shm_query_version().map_err(protocol)?.reply().map_err(protocol)?;
        if (version.major_version, version.minor_version) < (1, 2) {
            return Err(BackendError::Unsupported("MIT-SHM without fd passing"));
        }
        let size = usize::from(self.root_width) * usize::from(self.root_height) * 4;
        let fd = rustix::fs::memfd_create("lifeline-screen", rustix::fs::MemfdFlags::CLOEXEC)
            .map_err(|e| BackendError::Unavailable(e.to_string()))?;
        let file = File::from(fd);
        file.set_len(size as u64).map_err(|e| BackendError::Unavailable(e.to_string()))?;
        let shared = file.try_clone().map_err(|e| BackendError::Unavailable(e.to_string()))?;
        let seg = self.conn.generate_id().map_err(protocol)?;
        self.conn
            .shm_attach_fd(seg, std::os::fd::OwnedFd::from(shared), false)
            .map_err(protocol)?
            .check()
            .map_err(protocol)?;
        Ok(ShmSegment { seg, file, size })
    }
}

fn monitor_pixels(monitor: &Monitor) -> usize {
    usize::from(monitor.width) * usize::from(monitor.height)
}

/// `rect` (root coordinates) clipped to the monitor `(x, y, width, height)`, in monitor
/// coordinates; `None` if they do not meet.
fn clip_to(rect: &xproto::Rectangle, (mx, my, mw, mh): (i16, i16, u16, u16)) -> Option<Rect> {
    let left = i32::from(rect.x).max(i32::from(mx));
    let top = i32::from(rect.y).max(i32::from(my));
    let right = (i32::from(rect.x) + i32::from(rect.width)).min(i32::from(mx) + i32::from(mw));
    let bottom = (i32::from(rect.y) + i32::from(rect.height)).min(i32::from(my) + i32::from(mh));
    (right > left && bottom > top).then(|| {
        Rect::new(
            (left - i32::from(mx)) as u16,
            (top - i32::from(my)) as u16,
            (right - left) as u16,
            (bottom - top) as u16,
        )
    })
}

impl Capturer for X11Capturer {
    fn monitors(&mut self) -> Result<Vec<Monitor>, BackendError> {
        let whole = || {
            vec![Monitor {
                x: 0,
                y: 0,
                width: self.root_width,
                height: self.root_height,
                primary: true,
                name: String::new(),
            }]
        };
        if !self.randr {
            return Ok(whole());
        }
        let reply = self.conn.randr_get_monitors(self.root, true).map_err(protocol)?.reply().map_err(protocol)?;
        let mut monitors = Vec::new();
        for info in reply.monitors {
            let name = self
                .conn
                .get_atom_name(info.name)
                .ok()
                .and_then(|c| c.reply().ok())
                .map(|r| String::from_utf8_lossy(&r.name).into_owned())
                .unwrap_or_default();
            monitors.push(Monitor {
                x: info.x,
                y: info.y,
                width: info.width,
                height: info.height,
                primary: info.primary,
                name,
            });
        }
        if monitors.is_empty() {
            return Ok(whole());
        }
        // Primary first, then left to right, top to bottom.
        monitors.sort_by_key(|m| (!m.primary, m.x, m.y));
        Ok(monitors)
    }

    fn capture(&mut self, monitor: &Monitor, frame: &mut Frame) -> Result<(), BackendError> {
        let (width, height) = (monitor.width, monitor.height);
        if width == 0
            || height == 0
            || monitor.x < 0
            || monitor.y < 0
            || i32::from(monitor.x) + i32::from(width) > i32::from(self.root_width)
            || i32::from(monitor.y) + i32::from(height) > i32::from(self.root_height)
        {
            return Err(BackendError::Unsupported("monitor outside the root window"));
        }
        let bytes = usize::from(width) * usize::from(height) * 4;
        if let Some(segment) = &self.shm
            && bytes <= segment.size
        {
            let reply = self
                .conn
                .shm_get_image(
                    self.root,
                    monitor.x,
                    monitor.y,
                    width,
                    height,
                    !0,
                    ImageFormat::Z_PIXMAP.into(),
                    segment.seg,
                    0,
                )
                .map_err(protocol)?
                .reply()
                .map_err(protocol)?;
            if reply.size as usize != bytes {
                return Err(BackendError::Unsupported("unexpected SHM image size"));
            }
            if frame.width() != width || frame.height() != height {
                frame.resize(width, height);
            }
            segment.file.read_exact_at(frame.as_bytes_mut(), 0).map_err(protocol)?;
            return Ok(());
        }
        let reply = self
            .conn
            .get_image(ImageFormat::Z_PIXMAP, self.root, monitor.x, monitor.y, width, height, !0)
            .map_err(protocol)?
            .reply()
            .map_err(protocol)?;
        *frame =
            Frame::from_bgrx(width, height, reply.data).ok_or(BackendError::Unsupported("unexpected GetImage size"))?;
        Ok(())
    }

    fn capture_changed(&mut self, monitor: &Monitor, frame: &mut Frame) -> Result<Option<Vec<Rect>>, BackendError> {
        let done = self.capture_damaged(monitor, frame)?;
        Ok((!done.full).then(|| std::mem::take(&mut self.last_rects)))
    }

    fn cursor(&mut self) -> Result<CursorImage, BackendError> {
        if !self.xfixes {
            let pointer = self.conn.query_pointer(self.root).map_err(protocol)?.reply().map_err(protocol)?;
            return Ok(CursorImage {
                x: pointer.root_x,
                y: pointer.root_y,
                serial: 0,
                hot_x: 0,
                hot_y: 0,
                width: 0,
                height: 0,
                rgba: Vec::new(),
            });
        }
        let reply = self.conn.xfixes_get_cursor_image().map_err(protocol)?.reply().map_err(protocol)?;
        let mut rgba = Vec::with_capacity(reply.cursor_image.len() * 4);
        for argb in &reply.cursor_image {
            let [b, g, r, a] = argb.to_le_bytes();
            // Premultiplied to straight alpha.
            let unpremultiply = |c: u8| {
                if a == 0 { 0 } else { ((u16::from(c) * 255 + u16::from(a) / 2) / u16::from(a)).min(255) as u8 }
            };
            rgba.extend_from_slice(&[unpremultiply(r), unpremultiply(g), unpremultiply(b), a]);
        }
        Ok(CursorImage {
            x: reply.x,
            y: reply.y,
            serial: reply.cursor_serial,
            hot_x: reply.xhot,
            hot_y: reply.yhot,
            width: reply.width,
            height: reply.height,
            rgba,
        })
    }
}

impl Drop for X11Capturer {
    fn drop(&mut self) {
        if let Some(segment) = &self.shm {
            let _ = self.conn.shm_detach(segment.seg);
            let _ = self.conn.flush();
        }
    }
}

/// Injects input into an X11 display with XTest.
#[derive(Debug)]
pub struct X11Injector {
    conn: RustConnection,
    root: xproto::Window,
    min_keycode: u8,
    keysyms_per_keycode: u8,
    keysyms: Vec<u32>,
    spare_keycodes: Vec<u8>,
    next_spare: usize,
    held_keys: HashSet<u8>,
    held_buttons: HashSet<u8>,
    shift_keycode: Option<u8>,
    /// Spare keycodes given a keysym, cleared again on drop.
    remapped: HashSet<u8>,
}

const SHIFT_L: u32 = 0xFFE1;
const SHIFT_R: u32 = 0xFFE2;

impl X11Injector {
    /// Connects to `display` (`None`: `$DISPLAY`); fails if XTest is missing.
    pub fn connect(display: Option<&str>) -> Result<X11Injector, BackendError> {
        let (conn, screen_num) = connect(display)?;
        let root = conn.setup().roots.get(screen_num).ok_or(BackendError::Unsupported("no such screen"))?.root;
        if conn.extension_information(xtest::X11_EXTENSION_NAME).map_err(protocol)?.is_none() {
            return Err(BackendError::Unsupported("XTest extension missing"));
        }
        let mut injector = X11Injector {
            conn,
            root,
            min_keycode: 8,
            keysyms_per_keycode: 0,
            keysyms: Vec::new(),
            spare_keycodes: Vec::new(),
            next_spare: 0,
            held_keys: HashSet::new(),
            held_buttons: HashSet::new(),
            shift_keycode: None,
            remapped: HashSet::new(),
        };
        injector.load_keymap()?;
        Ok(injector)
    }

    fn load_keymap(&mut self) -> Result<(), BackendError> {
        let setup = self.conn.setup();
        let (min, max) = (setup.min_keycode, setup.max_keycode);
        let reply = self.conn.get_keyboard_mapping(min, max - min + 1).map_err(protocol)?.reply().map_err(protocol)?;
        self.min_keycode = min;
        self.keysyms_per_keycode = reply.keysyms_per_keycode;
        self.keysyms = reply.keysyms;
        let per = usize::from(self.keysyms_per_keycode.max(1));
        self.spare_keycodes = self
            .keysyms
            .chunks(per)
            .enumerate()
            .filter(|(_, syms)| syms.iter().all(|s| *s == 0))
            .map(|(i, _)| min + i as u8)
            .rev()
            .collect();
        self.shift_keycode = self.find_keysym(SHIFT_L).map(|(code, _)| code);
        Ok(())
    }

    /// The keycode typing `keysym` and whether Shift is needed (column 1).
    fn find_keysym(&self, keysym: u32) -> Option<(u8, bool)> {
        let per = usize::from(self.keysyms_per_keycode.max(1));
        for column in 0..per.min(2) {
            for (index, syms) in self.keysyms.chunks(per).enumerate() {
                if syms.get(column) == Some(&keysym) {
                    return Some((self.min_keycode + index as u8, column == 1));
                }
            }
        }
        None
    }

    /// Maps `keysym` onto a spare keycode (round robin) and returns it.
    fn map_spare(&mut self, keysym: u32) -> Result<u8, BackendError> {
        if self.spare_keycodes.is_empty() {
            return Err(BackendError::Unsupported("keysym not in the keyboard layout and no spare keycode"));
        }
        let keycode = self.spare_keycodes[self.next_spare % self.spare_keycodes.len()];
        self.next_spare += 1;
        let per = self.keysyms_per_keycode.max(1);
        let mut syms = vec![0u32; usize::from(per)];
        for sym in syms.iter_mut().take(2) {
            *sym = keysym;
        }
        self.conn.change_keyboard_mapping(1, keycode, per, &syms).map_err(protocol)?.check().map_err(protocol)?;
        self.remapped.insert(keycode);
        let index = usize::from(keycode - self.min_keycode) * usize::from(per);
        if let Some(slot) = self.keysyms.get_mut(index..index + usize::from(per)) {
            slot.copy_from_slice(&syms);
        }
        Ok(keycode)
    }

    fn fake(&self, kind: u8, detail: u8, x: i16, y: i16) -> Result<(), BackendError> {
        xtest::fake_input(&self.conn, kind, detail, x11rb::CURRENT_TIME, self.root, x, y, 0).map_err(protocol)?;
        Ok(())
    }

    fn key(&mut self, keycode: u8, pressed: bool) -> Result<(), BackendError> {
        let kind = if pressed { xproto::KEY_PRESS_EVENT } else { xproto::KEY_RELEASE_EVENT };
        self.fake(kind, keycode, 0, 0)?;
        if pressed {
            self.held_keys.insert(keycode);
        } else {
            self.held_keys.remove(&keycode);
        }
        Ok(())
    }

    fn shift_held(&self) -> bool {
        [SHIFT_L, SHIFT_R]
            .iter()
            .any(|sym| self.find_keysym(*sym).is_some_and(|(code, _)| self.held_keys.contains(&code)))
    }

    fn flush(&self) -> Result<(), BackendError> {
        self.conn.flush().map_err(protocol)
    }

    /// Waits until the server has processed everything sent so far.
    pub fn sync(&self) -> Result<(), BackendError> {
        self.conn.get_input_focus().map_err(protocol)?.reply().map_err(protocol)?;
        Ok(())
    }
}

impl Drop for X11Injector {
    /// Releases whatever is still held and gives the borrowed spare keycodes back their empty
    /// mapping, so the customer's keyboard is as it was.
    fn drop(&mut self) {
        let _ = self.release_all();
        let per = self.keysyms_per_keycode.max(1);
        let empty = vec![0u32; usize::from(per)];
        for keycode in self.remapped.drain().collect::<Vec<_>>() {
            let _ = self.conn.change_keyboard_mapping(1, keycode, per, &empty);
        }
        // Wait until the server has done it: other clients must not see the borrowed mapping
        // after the injector is gone.
        let _ = self.sync();
    }
}

impl Injector for X11Injector {
    fn inject(&mut self, event: &InputEvent) -> Result<(), BackendError> {
        let clamp = |v: u16| i16::try_from(v).unwrap_or(i16::MAX);
        match *event {
            InputEvent::Move { x, y } => self.fake(xproto::MOTION_NOTIFY_EVENT, 0, clamp(x), clamp(y))?,
            InputEvent::Button { button, pressed, x, y } => {
                self.fake(xproto::MOTION_NOTIFY_EVENT, 0, clamp(x), clamp(y))?;
                let detail = button.to_byte();
                let kind = if pressed { xproto::BUTTON_PRESS_EVENT } else { xproto::BUTTON_RELEASE_EVENT };
                self.fake(kind, detail, 0, 0)?;
                if pressed {
                    self.held_buttons.insert(detail);
                } else {
                    self.held_buttons.remove(&detail);
                }
            }
            InputEvent::Wheel { dx, dy } => {
                let clicks = [(dy, 5u8, 4u8), (dx, 7, 6)];
                for (amount, positive, negative) in clicks {
                    let button = if amount > 0 { positive } else { negative };
                    for _ in 0..amount.unsigned_abs().min(100) {
                        self.fake(xproto::BUTTON_PRESS_EVENT, button, 0, 0)?;
                        self.fake(xproto::BUTTON_RELEASE_EVENT, button, 0, 0)?;
                    }
                }
            }
            InputEvent::Key { pressed, keysym, code } => {
                let by_keysym = if keysym != 0 {
                    match self.find_keysym(keysym) {
                        Some(found) => Some(found),
                        None if pressed => Some((self.map_spare(keysym)?, false)),
                        None => None,
                    }
                } else {
                    None
                };
                let found = by_keysym.or_else(|| hid::evdev_code(code).map(|evdev| (evdev.saturating_add(8), false)));
                let Some((keycode, needs_shift)) = found else {
                    return Err(BackendError::Unsupported("key not in the keyboard layout"));
                };
                let add_shift = pressed && needs_shift && !self.shift_held();
                match (add_shift, self.shift_keycode) {
                    (true, Some(shift)) => {
                        self.key(shift, true)?;
                        self.key(keycode, true)?;
                        self.key(shift, false)?;
                    }
                    _ => self.key(keycode, pressed)?,
                }
            }
            InputEvent::ReleaseAll => return self.release_all(),
        }
        self.flush()
    }

    fn release_all(&mut self) -> Result<(), BackendError> {
        for keycode in self.held_keys.drain().collect::<Vec<_>>() {
            self.fake(xproto::KEY_RELEASE_EVENT, keycode, 0, 0)?;
        }
        for button in self.held_buttons.drain().collect::<Vec<_>>() {
            self.fake(xproto::BUTTON_RELEASE_EVENT, button, 0, 0)?;
        }
        self.flush()
    }
}
