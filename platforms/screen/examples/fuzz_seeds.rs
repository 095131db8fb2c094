//! Writes the seed corpus of the `screen_message` and `input_event` fuzz targets:
//! `cargo run -p lifeline-screen --example fuzz_seeds -- fuzz/seeds`. Seeds stay small
//! (frames of at most 192 × 64 or 64 × 640 pixels).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use lifeline_screen::codec::{Encoder, EncoderConfig, Quality};
use lifeline_screen::frame::{Frame, Rect};
use lifeline_screen::input::{InputEvent, MouseButton};
use lifeline_screen::message::{Cursor, CursorShape, Layout, MonitorInfo, ScreenMessage};

fn emit(message: &ScreenMessage<'_>) -> Vec<u8> {
    let mut out = vec![0u8; 20_000];
    let len = message.emit(&mut out).unwrap();
    out.truncate(len);
    out
}

fn main() {
    let root = std::env::args().nth(1).unwrap_or_else(|| "fuzz/seeds".into());
    let screen = Path::new(&root).join("screen_message");
    let input = Path::new(&root).join("input_event");
    std::fs::create_dir_all(&screen).unwrap();
    std::fs::create_dir_all(&input).unwrap();
    let mut seeds: Vec<(String, Vec<u8>)> = Vec::new();

    // Updates from the encoder: a refresh with fill, palette and JPEG ops, then a raw-only
    // lossless frame, then a scroll (copy).
    let mut frame = Frame::new(192, 64);
    frame.fill(Rect::new(0, 0, 192, 64), [200, 200, 255]);
    for x in 0..32u16 {
        for y in 0..32u16 {
            frame.set_rgb(64 + x, y, [(x * 8) as u8, (y * 8) as u8, ((x * y) % 256) as u8]);
        }
    }
    for x in (4..60u16).step_by(3) {
        frame.fill(Rect::new(x, 40, 2, 6), [0, 0, 0]);
    }
    let mut encoder = Encoder::new(0, EncoderConfig::default());
    let mut out = Vec::new();
    encoder.encode(&frame, &Quality { lossy: true, jpeg_quality: 50, refine_tiles: 0 }, &mut out);
    seeds.push(("update-refresh-fill-palette-jpeg".into(), out.remove(0)));
    let mut noise = Frame::new(32, 16);
    let mut seed = 7u32;
    for byte in noise.as_bytes_mut() {
        seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
        *byte = (seed >> 24) as u8;
    }
    let mut raw = Encoder::new(1, EncoderConfig::default());
    raw.encode(&noise, &Quality { lossy: false, jpeg_quality: 50, refine_tiles: 0 }, &mut out);
    seeds.push(("update-raw".into(), out.remove(0)));
    // A scroll: tall frame of distinct rows, shifted up by 5.
    let mut tall = Frame::new(64, 640);
    for y in 0..640u16 {
        tall.fill(Rect::new(0, y, 64, 1), [(y % 251) as u8, (y * 7 % 253) as u8, 9]);
        tall.set_rgb(y % 64, y, [1, 2, 3]);
    }
    let mut scroller = Encoder::new(0, EncoderConfig::default());
    scroller.encode(&tall, &Quality::default(), &mut out);
    out.clear();
    let mut shifted = tall.clone();
    shifted.copy_within(Rect::new(0, 5, 64, 635), 0, 0);
    shifted.fill(Rect::new(0, 635, 64, 5), [0, 0, 0]);
    scroller.encode(&shifted, &Quality::default(), &mut out);
    seeds.push(("update-copy".into(), out.remove(0)));

    let shape = lz4_flex::block::compress(&[255u8; 8 * 8 * 4]);
    seeds.push((
        "cursor-shape".into(),
        emit(&ScreenMessage::Cursor(Cursor {
            x: 10,
            y: -2,
            visible: true,
            serial: 3,
            shape: Some(CursorShape { hot_x: 1, hot_y: 1, width: 8, height: 8, lz4: &shape }),
        })),
    ));
    seeds.push((
        "cursor-move".into(),
        emit(&ScreenMessage::Cursor(Cursor { x: 500, y: 400, visible: true, serial: 3, shape: None })),
    ));
    seeds.push((
        "layout-two".into(),
        emit(&ScreenMessage::Layout(Layout {
            monitors: vec![
                MonitorInfo { x: 0, y: 0, width: 1920, height: 1080, primary: true },
                MonitorInfo { x: 1920, y: 0, width: 1280, height: 1024, primary: false },
            ],
        })),
    ));
    seeds.push(("ack".into(), emit(&ScreenMessage::Ack { monitor: 0, frame: 41, received: 123_456 })));
    seeds.push(("refresh".into(), emit(&ScreenMessage::Refresh { monitor: 1 })));
    for (name, bytes) in &seeds {
        assert!(bytes.len() < 4096, "{name}: {} bytes", bytes.len());
        std::fs::write(screen.join(name), bytes).unwrap();
    }

    let events = [
        ("move", InputEvent::Move { x: 640, y: 360 }),
        ("button-left-press", InputEvent::Button { button: MouseButton::Left, pressed: true, x: 10, y: 20 }),
        ("button-right-release", InputEvent::Button { button: MouseButton::Right, pressed: false, x: 10, y: 20 }),
        ("wheel", InputEvent::Wheel { dx: -1, dy: 3 }),
        ("key-keysym", InputEvent::Key { pressed: true, keysym: 0x41, code: 0 }),
        ("key-code", InputEvent::Key { pressed: false, keysym: 0, code: 0xE1 }),
        ("key-unicode", InputEvent::Key { pressed: true, keysym: 0x0100_20AC, code: 0x08 }),
        ("release-all", InputEvent::ReleaseAll),
    ];
    for (name, event) in events {
        let (bytes, len) = event.to_bytes().unwrap();
        std::fs::write(input.join(name), &bytes[..len]).unwrap();
    }
    println!("wrote {} screen and {} input seeds under {root}", seeds.len(), events.len());
}
