//! USB HID keyboard usages (page 7, what browsers' `KeyboardEvent.code` names) to Linux evdev
//! key codes; X servers using the evdev/xkb rules number keys evdev + 8.

/// The evdev code of a HID usage, for the keys of a 105-key keyboard.
pub(super) fn evdev_code(usage: u16) -> Option<u8> {
    const LETTERS: [u8; 26] =
        [30, 48, 46, 32, 18, 33, 34, 35, 23, 36, 37, 38, 50, 49, 24, 25, 16, 19, 31, 20, 22, 47, 17, 45, 21, 44];
    Some(match usage {
        0x04..=0x1D => LETTERS[usize::from(usage - 0x04)],
        0x1E..=0x27 => (usage - 0x1E + 2) as u8,  // 1..9, 0
        0x28 => 28,                               // Enter
        0x29 => 1,                                // Escape
        0x2A => 14,                               // Backspace
        0x2B => 15,                               // Tab
        0x2C => 57,                               // Space
        0x2D => 12,                               // -
        0x2E => 13,                               // =
        0x2F => 26,                               // [
        0x30 => 27,                               // ]
        0x31 => 43,                               // backslash
        0x33 => 39,                               // ;
        0x34 => 40,                               // '
        0x35 => 41,                               // `
        0x36 => 51,                               // ,
        0x37 => 52,                               // .
        0x38 => 53,                               // /
        0x39 => 58,                               // Caps Lock
        0x3A..=0x43 => (usage - 0x3A + 59) as u8, // F1..F10
        0x44 => 87,                               // F11
        0x45 => 88,                               // F12
        0x49 => 110,                              // Insert
        0x4A => 102,                              // Home
        0x4B => 104,                              // Page Up
        0x4C => 111,                              // Delete
        0x4D => 107,                              // End
        0x4E => 109,                              // Page Down
        0x4F => 106,                              // Right
        0x50 => 105,                              // Left
        0x51 => 108,                              // Down
        0x52 => 103,                              // Up
        0x64 => 86,                               // the ISO key between left Shift and Z
        0xE0 => 29,                               // Left Control
        0xE1 => 42,                               // Left Shift
        0xE2 => 56,                               // Left Alt
        0xE3 => 125,                              // Left Meta
        0xE4 => 97,                               // Right Control
        0xE5 => 54,                               // Right Shift
        0xE6 => 100,                              // Right Alt
        0xE7 => 126,                              // Right Meta
        _ => return None,
    })
}
