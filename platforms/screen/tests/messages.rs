#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Screen and input message formats: byte-exact examples, round trips, hostile input.

use lifeline_screen::frame::Rect;
use lifeline_screen::input::{InputEvent, MAX_INPUT_LEN, MouseButton, keysym_for_char};
use lifeline_screen::message::{
    Cursor, CursorShape, Layout, MonitorInfo, Op, ScreenMessage, UPDATE_LAST, UpdateHeader,
};

fn round_trip(message: &ScreenMessage<'_>) -> Vec<u8> {
    let mut out = vec![0u8; 20_000];
    let len = message.emit(&mut out).expect("emits");
    out.truncate(len);
    assert_eq!(ScreenMessage::parse(&out).as_ref(), Some(message));
    out
}

// --- byte-exact examples (docs/PROTOCOL.md §10.5) ---

#[test]
fn update_bytes_are_as_documented() {
    let mut payload = Vec::new();
    UpdateHeader { monitor: 1, frame: 0x0102_0304, part: 2, flags: UPDATE_LAST, width: 1920, height: 1080 }
        .append_to(&mut payload);
    Op::Fill { rect: Rect::new(64, 128, 256, 64), rgb: [0xFF, 0x80, 0x00] }.append_to(&mut payload).unwrap();
    Op::Copy { src: Rect::new(0, 100, 640, 400), dst_x: 0, dst_y: 52 }.append_to(&mut payload).unwrap();
    assert_eq!(
        payload,
        [
            0x01, 0x01, 0x01, 0x02, 0x03, 0x04, 0x00, 0x02, 0x01, 0x07, 0x80, 0x04, 0x38, // header
            0x02, 0x00, 0x40, 0x00, 0x80, 0x01, 0x00, 0x00, 0x40, 0xFF, 0x80, 0x00, // Fill
            0x01, 0x00, 0x00, 0x00, 0x64, 0x02, 0x80, 0x01, 0x90, 0x00, 0x00, 0x00, 0x34, // Copy
        ]
    );
    let Some(ScreenMessage::Update(update)) = ScreenMessage::parse(&payload) else { panic!() };
    assert!(update.is_last() && !update.is_refresh());
    assert_eq!(update.ops().count(), 2);
    round_trip(&ScreenMessage::Update(update));
}

#[test]
fn input_bytes_are_as_documented() {
    let cases = [
        (InputEvent::Move { x: 300, y: 200 }, vec![0x01, 0x01, 0x2C, 0x00, 0xC8]),
        (
            InputEvent::Button { button: MouseButton::Left, pressed: true, x: 10, y: 20 },
            vec![0x02, 0x01, 0x01, 0x00, 0x0A, 0x00, 0x14],
        ),
        (InputEvent::Wheel { dx: 0, dy: -2 }, vec![0x03, 0x00, 0x00, 0xFF, 0xFE]),
        (
            InputEvent::Key { pressed: true, keysym: 0x61, code: 0x04 },
            vec![0x04, 0x01, 0x00, 0x00, 0x00, 0x61, 0x00, 0x04],
        ),
        (InputEvent::ReleaseAll, vec![0x05]),
    ];
    for (event, bytes) in cases {
        let (buf, len) = event.to_bytes().unwrap();
        assert_eq!(&buf[..len], &bytes[..], "{event:?}");
        assert_eq!(InputEvent::parse(&bytes), Some(event));
        assert!(len <= MAX_INPUT_LEN);
    }
}

// --- round trips ---

#[test]
fn every_screen_message_round_trips() {
    let lz4 = lz4_flex::block::compress(&[7u8; 16 * 16 * 4]);
    round_trip(&ScreenMessage::Cursor(Cursor {
        x: -5,
        y: 300,
        visible: true,
        serial: 42,
        shape: Some(CursorShape { hot_x: 1, hot_y: 2, width: 16, height: 16, lz4: &lz4 }),
    }));
    round_trip(&ScreenMessage::Cursor(Cursor { x: 1, y: 2, visible: false, serial: 42, shape: None }));
    let monitors = vec![
        MonitorInfo { x: 0, y: 0, width: 1920, height: 1080, primary: true },
        MonitorInfo { x: 1920, y: -100, width: 1280, height: 1024, primary: false },
    ];
    let layout = round_trip(&ScreenMessage::Layout(Layout { monitors }));
    assert_eq!(layout.len(), 2 + 2 * 9);
    let ack = round_trip(&ScreenMessage::Ack { monitor: 0, frame: 7, received: 0xFFFF_FFFF });
    assert_eq!(ack, [0x10, 0x00, 0, 0, 0, 7, 0xFF, 0xFF, 0xFF, 0xFF]);
    assert_eq!(round_trip(&ScreenMessage::Refresh { monitor: 3 }), [0x11, 0x03]);
}

#[test]
fn keysyms_for_characters() {
    assert_eq!(keysym_for_char('a'), 0x61);
    assert_eq!(keysym_for_char('é'), 0xE9);
    assert_eq!(keysym_for_char('€'), 0x0100_20AC);
    assert_eq!(keysym_for_char('\n'), 0xFF0D);
}

// --- hostile input ---

#[test]
fn malformed_screen_messages_are_refused() {
    let header = [0x01, 0, 0, 0, 0, 0, 0, 0, 0x01, 0, 100, 0, 100];
    let cases: Vec<Vec<u8>> = vec![
        vec![],
        vec![0x99],
        header[..12].to_vec(),
        // Unknown flag bit.
        [&header[..8], &[0x04, 0, 100, 0, 100]].concat(),
        // Zero width frame.
        [&header[..9], &[0, 0, 0, 100]].concat(),
        // Fill past the right edge.
        [&header[..], &[0x02, 0, 90, 0, 0, 0, 20, 0, 1, 1, 2, 3]].concat(),
        // Empty rectangle.
        [&header[..], &[0x02, 0, 0, 0, 0, 0, 0, 0, 1, 1, 2, 3]].concat(),
        // Copy whose destination leaves the frame.
        [&header[..], &[0x01, 0, 0, 0, 0, 0, 10, 0, 10, 0, 95, 0, 0]].concat(),
        // Raw with a length past the end.
        [&header[..], &[0x03, 0, 0, 0, 0, 0, 10, 0, 10, 0, 50, 1, 2]].concat(),
        // Unknown op.
        [&header[..], &[0x09, 0, 0, 0, 0, 0, 1, 0, 1]].concat(),
        // Cursor: unknown flag, hot spot outside, side too large.
        vec![0x02, 0, 0, 0, 0, 0x04, 0, 0, 0, 0],
        vec![0x02, 0, 0, 0, 0, 0x02, 0, 0, 0, 0, 0, 16, 0, 0, 0, 16, 0, 16, 0, 0],
        vec![0x02, 0, 0, 0, 0, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0, 16, 0, 0],
        // Layout: none, seventeen, zero-size monitor.
        vec![0x03, 0],
        vec![0x03, 17],
        vec![0x03, 1, 0, 0, 0, 0, 0, 0, 0, 10, 0],
        // Trailing bytes.
        vec![0x11, 0, 0],
        vec![0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    ];
    for payload in cases {
        assert_eq!(ScreenMessage::parse(&payload), None, "{payload:02x?}");
    }
}

#[test]
fn malformed_input_events_are_refused() {
    let cases: Vec<Vec<u8>> = vec![
        vec![],
        vec![0x00],
        vec![0x06],
        vec![0x01, 0, 0, 0],
        vec![0x01, 0, 0, 0, 0, 0],
        vec![0x02, 4, 1, 0, 0, 0, 0],    // button 4 is the wheel: use Wheel
        vec![0x02, 1, 2, 0, 0, 0, 0],    // pressed must be 0 or 1
        vec![0x04, 1, 0, 0, 0, 0, 0, 0], // neither keysym nor code
        vec![0x05, 0],
    ];
    for payload in cases {
        assert_eq!(InputEvent::parse(&payload), None, "{payload:02x?}");
    }
    // Every 1- and 2-byte input, and all prefixes of valid events, parse or fail without panic.
    for a in 0..=255u8 {
        let _ = InputEvent::parse(&[a]);
        for b in 0..=255u8 {
            let _ = InputEvent::parse(&[a, b]);
            let _ = ScreenMessage::parse(&[a, b]);
        }
    }
}

#[test]
fn an_update_cannot_ask_for_more_work_than_two_frames() {
    // 1 000 full-frame fills of 7680 x 4320 would be 33 billion pixel writes from 12 kB.
    let mut payload = Vec::new();
    UpdateHeader { monitor: 0, frame: 0, part: 0, flags: 0, width: 7680, height: 4320 }.append_to(&mut payload);
    let fill = Op::Fill { rect: Rect::new(0, 0, 7680, 4320), rgb: [1, 2, 3] };
    fill.append_to(&mut payload).unwrap();
    fill.append_to(&mut payload).unwrap();
    assert!(ScreenMessage::parse(&payload).is_some(), "twice the frame is allowed (copy + tiles)");
    fill.append_to(&mut payload).unwrap();
    assert_eq!(ScreenMessage::parse(&payload), None);
}
