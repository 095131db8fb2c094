//! The input event format: the payload of `ContentType::Input` data (viewer to sharer). The
//! engine delivers it only while the customer has granted remote control and no consent prompt
//! is open; the sharer's application decides whether to inject it (its own user wins).
//!
//! | type | event        | payload after the type byte                                   |
//! |------|--------------|---------------------------------------------------------------|
//! | 0x01 | `Move`       | x u16, y u16 (desktop coordinates)                             |
//! | 0x02 | `Button`     | button u8 (1 left, 2 middle, 3 right, 8 back, 9 forward), pressed u8 (0/1), x u16, y u16 |
//! | 0x03 | `Wheel`      | dx i16, dy i16 (notches; positive: right, down)                |
//! | 0x04 | `Key`        | pressed u8 (0/1), keysym u32, code u16 (USB HID usage, page 7) |
//! | 0x05 | `ReleaseAll` | (empty)                                                        |
//!
//! A key names what it types by its X11 keysym (the portable namespace RFB also uses; Unicode
//! characters are `0x0100_0000 + code point`), and the physical key by its USB HID usage (what
//! a browser's `KeyboardEvent.code` maps to). Either may be 0, not both. A back-end prefers the
//! keysym (the customer's keyboard layout does not matter then) and falls back to the code.
//! `ReleaseAll` releases every key and button the viewer holds (sent when the viewer loses
//! focus; the sharer does the same itself when control is taken back).

use lifeline_core::wire::{Reader, Writer};

/// Longest input payload.
pub const MAX_INPUT_LEN: usize = 8;

/// One input event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum InputEvent {
    /// Move the pointer to a desktop position.
    Move {
        /// Desktop x.
        x: u16,
        /// Desktop y.
        y: u16,
    },
    /// Press or release a mouse button at a position.
    Button {
        /// Which button.
        button: MouseButton,
        /// Press (`true`) or release.
        pressed: bool,
        /// Desktop x.
        x: u16,
        /// Desktop y.
        y: u16,
    },
    /// Scroll by notches.
    Wheel {
        /// Horizontal notches, positive to the right.
        dx: i16,
        /// Vertical notches, positive down.
        dy: i16,
    },
    /// Press or release a key.
    Key {
        /// Press (`true`) or release.
        pressed: bool,
        /// X11 keysym (0: none).
        keysym: u32,
        /// USB HID usage, keyboard page (0: none).
        code: u16,
    },
    /// Release everything held.
    ReleaseAll,
}

/// A mouse button.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MouseButton {
    /// Primary.
    Left,
    /// Wheel click.
    Middle,
    /// Secondary.
    Right,
    /// Browser back.
    Back,
    /// Browser forward.
    Forward,
}

impl MouseButton {
    /// Wire byte (the X11 button number).
    pub const fn to_byte(self) -> u8 {
        match self {
            MouseButton::Left => 1,
            MouseButton::Middle => 2,
            MouseButton::Right => 3,
            MouseButton::Back => 8,
            MouseButton::Forward => 9,
        }
    }

    /// Parses the wire byte.
    pub const fn from_byte(byte: u8) -> Option<MouseButton> {
        match byte {
            1 => Some(MouseButton::Left),
            2 => Some(MouseButton::Middle),
            3 => Some(MouseButton::Right),
            8 => Some(MouseButton::Back),
            9 => Some(MouseButton::Forward),
            _ => None,
        }
    }
}

mod event_type {
    pub(super) const MOVE: u8 = 0x01;
    pub(super) const BUTTON: u8 = 0x02;
    pub(super) const WHEEL: u8 = 0x03;
    pub(super) const KEY: u8 = 0x04;
    pub(super) const RELEASE_ALL: u8 = 0x05;
}

fn read_flag(reader: &mut Reader<'_>) -> Option<bool> {
    match reader.u8()? {
        0 => Some(false),
        1 => Some(true),
        _ => None,
    }
}

impl InputEvent {
    /// Parses one payload; `None` if it is malformed in any way.
    pub fn parse(payload: &[u8]) -> Option<InputEvent> {
        let mut reader = Reader::new(payload);
        let event = match reader.u8()? {
            event_type::MOVE => InputEvent::Move { x: reader.u16()?, y: reader.u16()? },
            event_type::BUTTON => InputEvent::Button {
                button: MouseButton::from_byte(reader.u8()?)?,
                pressed: read_flag(&mut reader)?,
                x: reader.u16()?,
                y: reader.u16()?,
            },
            event_type::WHEEL => InputEvent::Wheel { dx: reader.i16()?, dy: reader.i16()? },
            event_type::KEY => {
                let pressed = read_flag(&mut reader)?;
                let keysym = reader.u32()?;
                let code = reader.u16()?;
                if keysym == 0 && code == 0 {
                    return None;
                }
                InputEvent::Key { pressed, keysym, code }
            }
            event_type::RELEASE_ALL => InputEvent::ReleaseAll,
            _ => return None,
        };
        reader.is_empty().then_some(event)
    }

    /// Writes the payload; `None` if `out` is too short or a key names neither keysym nor code.
    pub fn emit(&self, out: &mut [u8]) -> Option<usize> {
        let mut writer = Writer::new(out);
        match *self {
            InputEvent::Move { x, y } => {
                writer.u8(event_type::MOVE);
                writer.u16(x);
                writer.u16(y);
            }
            InputEvent::Button { button, pressed, x, y } => {
                writer.u8(event_type::BUTTON);
                writer.u8(button.to_byte());
                writer.u8(u8::from(pressed));
                writer.u16(x);
                writer.u16(y);
            }
            InputEvent::Wheel { dx, dy } => {
                writer.u8(event_type::WHEEL);
                writer.i16(dx);
                writer.i16(dy);
            }
            InputEvent::Key { pressed, keysym, code } => {
                if keysym == 0 && code == 0 {
                    return None;
                }
                writer.u8(event_type::KEY);
                writer.u8(u8::from(pressed));
                writer.u32(keysym);
                writer.u16(code);
            }
            InputEvent::ReleaseAll => writer.u8(event_type::RELEASE_ALL),
        }
        writer.finish()
    }

    /// The payload as a small array and its length (never fails for a valid event).
    pub fn to_bytes(&self) -> Option<([u8; MAX_INPUT_LEN], usize)> {
        let mut out = [0u8; MAX_INPUT_LEN];
        let len = self.emit(&mut out)?;
        Some((out, len))
    }
}

/// The keysym of a Unicode character (Latin-1 characters are their own keysyms).
pub fn keysym_for_char(c: char) -> u32 {
    let code = u32::from(c);
    match code {
        0x20..=0x7E | 0xA0..=0xFF => code,
        0x08 => 0xFF08,        // BackSpace
        0x09 => 0xFF09,        // Tab
        0x0A | 0x0D => 0xFF0D, // Return
        0x1B => 0xFF1B,        // Escape
        0x7F => 0xFFFF,        // Delete
        _ => 0x0100_0000 + code,
    }
}
