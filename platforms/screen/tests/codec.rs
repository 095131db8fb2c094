#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Encoder and decoder on synthetic frames: change detection, scroll copies, lossless and lossy
//! round trips, payload sizes, loss recovery, limits and hostile input.

use lifeline_core::wire::MAX_PAYLOAD_LEN;
use lifeline_screen::codec::{DecodeError, Decoder, Encoder, EncoderConfig, Limits, Quality};
use lifeline_screen::frame::{Frame, Rect};
use lifeline_screen::message::{Op, ScreenMessage};
use lifeline_screen::tiles::{TileGrid, changed_tiles, detect_vertical_scroll};

/// Deterministic pseudo-random bytes (xorshift).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn byte(&mut self) -> u8 {
        (self.next() >> 24) as u8
    }
}

/// A desktop-like frame: background, a window with "text" lines, a photo-like area.
fn desktop(width: u16, height: u16, seed: u64) -> Frame {
    let mut frame = Frame::new(width, height);
    frame.fill(Rect::new(0, 0, width, height), [30, 60, 120]);
    frame.fill(Rect::new(40, 40, width / 2, height - 80), [250, 250, 250]);
    let mut rng = Rng(seed | 1);
    for line in 0..(height - 100) / 16 {
        for x in (50..width / 2).step_by(7) {
            if rng.byte() < 200 {
                for dy in 0..9 {
                    for dx in 0..5 {
                        if rng.byte() < 100 {
                            let shade = [0u8, 80, 160][usize::from(rng.byte() % 3)];
                            frame.set_rgb(x + dx, 60 + line * 16 + dy, [shade, shade, shade]);
                        }
                    }
                }
            }
        }
    }
    // Photo-like: smooth gradient plus noise.
    let (px, py) = (width / 2 + 80, 60);
    for y in 0..(height / 2) {
        for x in 0..(width / 2 - 120) {
            let n = rng.byte() / 8;
            frame.set_rgb(px + x, py + y, [(x / 3) as u8 ^ n, (y / 2) as u8, (x + y) as u8 / 2 + n]);
        }
    }
    frame
}

fn decode_all(decoder: &mut Decoder, payloads: &[Vec<u8>]) {
    for payload in payloads {
        assert!(payload.len() <= MAX_PAYLOAD_LEN, "payload {} bytes", payload.len());
        let Some(ScreenMessage::Update(update)) = ScreenMessage::parse(payload) else {
            panic!("encoder output does not parse");
        };
        decoder.apply(&update).unwrap();
    }
}

const LOSSLESS: Quality = Quality { lossy: false, jpeg_quality: 75, refine_tiles: 0 };

// --- change detection ---

#[test]
fn changed_tiles_are_exactly_the_touched_ones() {
    let previous = desktop(640, 480, 7);
    let mut current = previous.clone();
    // One pixel in tile (3, 2), a rectangle across tiles (0..=1, 5..=6), an edge tile (9, 7).
    current.set_rgb(3 * 64 + 10, 2 * 64 + 63, [1, 2, 3]);
    current.fill(Rect::new(60, 5 * 64 + 60, 10, 10), [255, 0, 0]);
    current.set_rgb(639, 479, [9, 9, 9]);
    let grid = TileGrid::new(640, 480, 64);
    let mut dirty = Vec::new();
    let count = changed_tiles(&previous, &current, &grid, &mut dirty);
    let marked: Vec<(usize, usize)> =
        dirty.iter().enumerate().filter(|(_, d)| **d).map(|(i, _)| (i % grid.columns, i / grid.columns)).collect();
    assert_eq!(marked, vec![(3, 2), (0, 5), (1, 5), (0, 6), (1, 6), (9, 7)]);
    assert_eq!(count, 6);
}

#[test]
fn unchanged_frame_sends_nothing() {
    let frame = desktop(320, 240, 1);
    let mut encoder = Encoder::new(0, EncoderConfig::default());
    let mut out = Vec::new();
    encoder.encode(&frame, &LOSSLESS, &mut out);
    assert!(!out.is_empty());
    out.clear();
    let stats = encoder.encode(&frame, &LOSSLESS, &mut out);
    assert!(out.is_empty());
    assert_eq!(stats.changed_tiles, 0);
}

// --- round trips ---

#[test]
fn lossless_round_trip_is_exact_across_frames() {
    let mut encoder = Encoder::new(0, EncoderConfig::default());
    let mut decoder = Decoder::new(Limits::default());
    let mut frame = desktop(1000, 700, 3);
    for step in 0..4u16 {
        let mut out = Vec::new();
        encoder.encode(&frame, &LOSSLESS, &mut out);
        decode_all(&mut decoder, &out);
        assert_eq!(decoder.frame().max_channel_difference(&frame), Some(0), "step {step}");
        assert!(!decoder.needs_refresh());
        frame.fill(Rect::new(100 + step * 37, 80, 150, 20), [step as u8 * 40, 0, 200]);
    }
}

#[test]
fn lossy_round_trip_within_tolerance_then_refined_to_exact() {
    let mut encoder = Encoder::new(0, EncoderConfig::default());
    let mut decoder = Decoder::new(Limits::default());
    let frame = desktop(800, 600, 5);
    let quality = Quality { lossy: true, jpeg_quality: 80, refine_tiles: 0 };
    let mut out = Vec::new();
    let stats = encoder.encode(&frame, &quality, &mut out);
    assert!(stats.jpegs > 0, "{stats:?}");
    decode_all(&mut decoder, &out);
    let mean = decoder.frame().mean_channel_difference(&frame).unwrap();
    assert!(mean < 3.0, "mean channel error {mean}");
    // The still screen is refined, 32 tiles a frame, until exact.
    let refine = Quality { refine_tiles: 32, ..quality };
    for _ in 0..200 {
        out.clear();
        encoder.encode(&frame, &refine, &mut out);
        if out.is_empty() {
            break;
        }
        decode_all(&mut decoder, &out);
    }
    assert_eq!(decoder.frame().max_channel_difference(&frame), Some(0));
}

#[test]
fn noise_splits_into_payloads_that_fit() {
    let mut rng = Rng(99);
    let mut frame = Frame::new(1920, 1080);
    for byte in frame.as_bytes_mut() {
        *byte = rng.byte();
    }
    for quality in [LOSSLESS, Quality { lossy: true, jpeg_quality: 100, refine_tiles: 0 }] {
        let mut encoder = Encoder::new(2, EncoderConfig::default());
        let mut decoder = Decoder::new(Limits::default());
        let mut out = Vec::new();
        let stats = encoder.encode(&frame, &quality, &mut out);
        assert!(stats.parts > 100, "{stats:?}");
        assert!(out.iter().all(|p| p.len() <= MAX_PAYLOAD_LEN));
        decode_all(&mut decoder, &out);
        if !quality.lossy {
            assert_eq!(decoder.frame().max_channel_difference(&frame), Some(0));
        }
    }
}

#[test]
fn small_payload_limit_still_encodes_everything() {
    let config = EncoderConfig { max_payload: 2000, ..EncoderConfig::default() };
    let mut encoder = Encoder::new(0, config);
    let mut decoder = Decoder::new(Limits::default());
    let frame = desktop(300, 200, 11);
    let mut out = Vec::new();
    encoder.encode(&frame, &LOSSLESS, &mut out);
    assert!(out.iter().all(|p| p.len() <= 2000), "{:?}", out.iter().map(Vec::len).max());
    decode_all(&mut decoder, &out);
    assert_eq!(decoder.frame().max_channel_difference(&frame), Some(0));
}

// --- scrolling ---

#[test]
fn vertical_scroll_becomes_one_copy_and_the_exposed_band() {
    let previous = desktop(1280, 720, 21);
    // Scroll the text window (x 40..680, y 40..680) up by 48 rows; new content at the bottom.
    let mut current = previous.clone();
    assert!(current.copy_within(Rect::new(40, 88, 640, 592), 40, 40));
    current.fill(Rect::new(40, 632, 640, 48), [250, 250, 250]);
    current.fill(Rect::new(60, 640, 300, 9), [0, 0, 0]);
    let grid = TileGrid::new(1280, 720, 64);
    let mut dirty = Vec::new();
    changed_tiles(&previous, &current, &grid, &mut dirty);
    let scroll = detect_vertical_scroll(&previous, &current, &grid, &dirty, 64).expect("scroll found");
    assert_eq!(scroll.src.y - scroll.dst_y, 48);

    let mut encoder = Encoder::new(0, EncoderConfig::default());
    let mut decoder = Decoder::new(Limits::default());
    let mut out = Vec::new();
    encoder.encode(&previous, &LOSSLESS, &mut out);
    decode_all(&mut decoder, &out);
    out.clear();
    let stats = encoder.encode(&current, &LOSSLESS, &mut out);
    assert!(stats.scrolled_rows >= 500, "{stats:?}");
    assert!(stats.changed_tiles <= 2 * 11, "{stats:?}");
    let first = match ScreenMessage::parse(&out[0]) {
        Some(ScreenMessage::Update(update)) => update.ops().next(),
        _ => None,
    };
    assert!(matches!(first, Some(Op::Copy { .. })), "{first:?}");
    decode_all(&mut decoder, &out);
    assert_eq!(decoder.frame().max_channel_difference(&current), Some(0));

    // Without scroll detection the same change costs far more.
    let mut plain = Encoder::new(0, EncoderConfig { scroll_detection: false, ..EncoderConfig::default() });
    let mut scratch = Vec::new();
    plain.encode(&previous, &LOSSLESS, &mut scratch);
    scratch.clear();
    let without = plain.encode(&current, &LOSSLESS, &mut scratch);
    assert!(without.bytes > 3 * stats.bytes, "with {} without {}", stats.bytes, without.bytes);
}

// --- loss, refresh, limits ---

#[test]
fn a_lost_part_asks_for_a_refresh_and_a_refresh_heals() {
    let mut encoder = Encoder::new(0, EncoderConfig::default());
    let mut decoder = Decoder::new(Limits::default());
    assert!(decoder.needs_refresh());
    let mut frame = desktop(640, 480, 8);
    let mut out = Vec::new();
    encoder.encode(&frame, &LOSSLESS, &mut out);
    decode_all(&mut decoder, &out);
    assert!(!decoder.needs_refresh());
    // Frame 2 is lost entirely; frame 3 arrives.
    frame.fill(Rect::new(0, 0, 100, 100), [1, 1, 1]);
    out.clear();
    encoder.encode(&frame, &LOSSLESS, &mut out);
    frame.fill(Rect::new(300, 300, 100, 100), [2, 2, 2]);
    out.clear();
    encoder.encode(&frame, &LOSSLESS, &mut out);
    decode_all(&mut decoder, &out);
    assert!(decoder.needs_refresh());
    encoder.request_refresh();
    out.clear();
    encoder.encode(&frame, &LOSSLESS, &mut out);
    decode_all(&mut decoder, &out);
    assert!(!decoder.needs_refresh());
    assert_eq!(decoder.frame().max_channel_difference(&frame), Some(0));
}

#[test]
fn oversized_frame_is_refused_before_allocating() {
    let mut decoder = Decoder::new(Limits { max_width: 1024, max_height: 768 });
    // A 65535 x 65535 frame would need 17 GB.
    let mut payload = vec![0x01, 0, 0, 0, 0, 0, 0, 0, 0x03, 0xFF, 0xFF, 0xFF, 0xFF];
    payload.extend_from_slice(&[0x02, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 1, 2, 3]);
    let Some(ScreenMessage::Update(update)) = ScreenMessage::parse(&payload) else { panic!("parses") };
    assert_eq!(decoder.apply(&update), Err(DecodeError::TooLarge));
    assert_eq!(decoder.frame().width(), 0);
}

#[test]
fn bad_op_data_is_refused_without_panicking() {
    let mut decoder = Decoder::new(Limits::default());
    let header = [0x01, 0, 0, 0, 0, 0, 0, 0, 0x03, 0, 64, 0, 64];
    let cases: Vec<Vec<u8>> = vec![
        // Raw: LZ4 that decodes to the wrong length.
        [&header[..], &[0x03, 0, 0, 0, 0, 0, 8, 0, 8, 0, 2, 0x10, 0xAA]].concat(),
        // Palette of 2 colours, index 5 appears.
        [&header[..], &[0x04, 0, 0, 0, 0, 0, 1, 0, 1, 1, 1, 2, 3, 4, 5, 6, 0, 2, 0x10, 5]].concat(),
        // JPEG: garbage.
        [&header[..], &[0x05, 0, 0, 0, 0, 0, 8, 0, 8, 0, 3, 0xFF, 0xD8, 0x00]].concat(),
    ];
    for payload in cases {
        let Some(ScreenMessage::Update(update)) = ScreenMessage::parse(&payload) else { panic!("parses") };
        assert_eq!(decoder.apply(&update), Err(DecodeError::Malformed));
        assert!(decoder.needs_refresh());
    }
    // A JPEG of the wrong size is refused too.
    let mut encoder = Encoder::new(0, EncoderConfig::default());
    let mut rng = Rng(5);
    let mut noise = Frame::new(32, 32);
    noise.as_bytes_mut().iter_mut().for_each(|b| *b = rng.byte());
    let mut out = Vec::new();
    encoder.encode(&noise, &Quality::default(), &mut out);
    let Some(ScreenMessage::Update(update)) = ScreenMessage::parse(&out[0]) else { panic!() };
    let Some(Op::Jpeg { data, .. }) = update.ops().next() else { panic!("noise is sent as JPEG") };
    let mut wrong = header.to_vec();
    wrong.extend_from_slice(&[0x05, 0, 0, 0, 0, 0, 8, 0, 8]);
    wrong.extend_from_slice(&(data.len() as u16).to_be_bytes());
    wrong.extend_from_slice(data);
    let Some(ScreenMessage::Update(update)) = ScreenMessage::parse(&wrong) else { panic!("parses") };
    assert_eq!(decoder.apply(&update), Err(DecodeError::Malformed));
}

#[test]
fn mutated_updates_never_panic() {
    let mut encoder = Encoder::new(0, EncoderConfig::default());
    let mut frame = desktop(256, 192, 4);
    let mut seeds = Vec::new();
    for quality in [LOSSLESS, Quality::default()] {
        encoder.request_refresh();
        encoder.encode(&frame, &quality, &mut seeds);
    }
    frame.fill(Rect::new(0, 0, 256, 100), [1, 2, 3]);
    encoder.encode(&frame, &LOSSLESS, &mut seeds);
    let mut rng = Rng(0xDEAD_BEEF);
    let mut decoder = Decoder::new(Limits { max_width: 512, max_height: 512 });
    for round in 0..3000 {
        let mut payload = seeds[round % seeds.len()].clone();
        for _ in 0..1 + rng.next() % 8 {
            let at = (rng.next() as usize) % payload.len();
            match rng.next() % 3 {
                0 => payload[at] = rng.byte(),
                1 => payload.truncate(at.max(1)),
                _ => payload.insert(at, rng.byte()),
            }
        }
        if let Some(ScreenMessage::Update(update)) = ScreenMessage::parse(&payload) {
            let _ = decoder.apply(&update);
        }
    }
}

#[test]
fn fuzz_regressions_are_refused_without_panicking() {
    // Found by the screen_message fuzz target: a JPEG op that made zune-jpeg 0.4.21 index out
    // of bounds while colour-converting.
    let payload = include_bytes!("zune-jpeg-mcu-panic.bin");
    let Some(ScreenMessage::Update(update)) = ScreenMessage::parse(payload) else { panic!("parses") };
    let mut decoder = Decoder::new(Limits { max_width: 512, max_height: 512 });
    let _ = decoder.apply(&update);
}

// --- cursor and layout ---

#[test]
fn cursor_shape_is_sent_once_per_serial() {
    use lifeline_screen::backend::{CursorImage, Monitor};
    use lifeline_screen::codec::{CursorEncoder, decode_cursor_shape, layout_message};
    let rgba: Vec<u8> = (0..24 * 24 * 4).map(|i| (i % 251) as u8).collect();
    let mut image =
        CursorImage { x: 10, y: 20, serial: 5, hot_x: 3, hot_y: 4, width: 24, height: 24, rgba: rgba.clone() };
    let mut cursor = CursorEncoder::new();
    let first = cursor.encode(&image, true).unwrap();
    let Some(ScreenMessage::Cursor(parsed)) = ScreenMessage::parse(&first) else { panic!() };
    assert_eq!(decode_cursor_shape(&parsed.shape.unwrap()).unwrap(), rgba);
    assert_eq!(cursor.encode(&image, true), None, "nothing changed");
    image.x = 11;
    let moved = cursor.encode(&image, true).unwrap();
    let Some(ScreenMessage::Cursor(parsed)) = ScreenMessage::parse(&moved) else { panic!() };
    assert!(parsed.shape.is_none() && parsed.x == 11);
    image.serial = 6;
    let bytes = cursor.encode(&image, true).unwrap();
    let Some(ScreenMessage::Cursor(parsed)) = ScreenMessage::parse(&bytes) else { panic!() };
    assert!(parsed.shape.is_some());
    // A shape too large is left out, the position still goes.
    image.serial = 7;
    image.width = 300;
    let bytes = cursor.encode(&image, true).unwrap();
    let Some(ScreenMessage::Cursor(parsed)) = ScreenMessage::parse(&bytes) else { panic!() };
    assert!(parsed.shape.is_none());

    let monitors = [
        Monitor { x: 0, y: 0, width: 1920, height: 1080, primary: true, name: "A".into() },
        Monitor { x: 1920, y: 0, width: 1280, height: 1024, primary: false, name: "B".into() },
    ];
    let Some(ScreenMessage::Layout(layout)) = ScreenMessage::parse(&layout_message(&monitors).unwrap()) else {
        panic!()
    };
    assert_eq!(layout.monitors.len(), 2);
    assert!(layout.monitors[0].primary && layout.monitors[1].x == 1920);
}

#[test]
fn many_frames_of_random_edits_and_scrolls_stay_exact() {
    let mut rng = Rng(0xC0FFEE);
    let mut frame = desktop(700, 500, 13);
    let mut encoder = Encoder::new(0, EncoderConfig::default());
    let mut decoder = Decoder::new(Limits::default());
    for step in 0..40 {
        match rng.next() % 3 {
            0 => {
                let (x, y) = ((rng.next() % 690) as u16, (rng.next() % 490) as u16);
                frame.fill(Rect::new(x, y, 10, 10), [rng.byte(), rng.byte(), rng.byte()]);
            }
            1 => {
                let shift = 1 + (rng.next() % 60) as u16;
                assert!(frame.copy_within(Rect::new(40, 40 + shift, 350, 420 - shift), 40, 40));
            }
            _ => {}
        }
        let mut out = Vec::new();
        encoder.encode(&frame, &LOSSLESS, &mut out);
        decode_all(&mut decoder, &out);
        assert_eq!(decoder.frame().max_channel_difference(&frame), Some(0), "step {step}");
    }
}

#[test]
fn parallel_coding_gives_the_same_bytes() {
    let mut rng = Rng(77);
    let mut frame = desktop(1100, 650, 17);
    let one = EncoderConfig::default();
    let three = EncoderConfig { threads: 3, ..one };
    let (mut a, mut b) = (Encoder::new(0, one), Encoder::new(0, three));
    for step in 0..6 {
        let quality = if step % 2 == 0 { Quality::default() } else { LOSSLESS };
        let (mut out_a, mut out_b) = (Vec::new(), Vec::new());
        let stats_a = a.encode(&frame, &quality, &mut out_a);
        let stats_b = b.encode(&frame, &quality, &mut out_b);
        assert_eq!(out_a, out_b, "step {step}");
        assert_eq!(stats_a, stats_b, "step {step}");
        let (x, y) = ((rng.next() % 900) as u16, (rng.next() % 500) as u16);
        frame.fill(Rect::new(x, y, 150, 120), [rng.byte(), rng.byte(), rng.byte()]);
        if step == 3 {
            assert!(frame.copy_within(Rect::new(40, 100, 500, 400), 40, 60));
        }
    }
}

#[test]
fn change_hints_give_the_same_bytes_as_a_full_comparison() {
    let mut rng = Rng(4242);
    let mut frame = desktop(900, 600, 23);
    let (mut hinted, mut full) = (Encoder::new(0, EncoderConfig::default()), Encoder::new(0, EncoderConfig::default()));
    let mut changed: Vec<Rect> = Vec::new();
    for step in 0..12 {
        let (mut a, mut b) = (Vec::new(), Vec::new());
        let hint = if step == 0 { None } else { Some(changed.as_slice()) };
        let stats_a = hinted.encode_changed(&frame, hint, &Quality::default(), &mut a);
        let stats_b = full.encode(&frame, &Quality::default(), &mut b);
        assert_eq!(a, b, "step {step}");
        assert_eq!(stats_a, stats_b, "step {step}");
        changed.clear();
        for _ in 0..1 + rng.next() % 3 {
            let rect = Rect::new((rng.next() % 800) as u16, (rng.next() % 500) as u16, 1 + (rng.next() % 90) as u16, 7);
            frame.fill(rect, [rng.byte(), rng.byte(), rng.byte()]);
            changed.push(rect);
        }
        if step == 6 {
            let src = Rect::new(40, 100, 450, 400);
            assert!(frame.copy_within(src, 40, 70));
            changed.push(Rect::new(40, 70, 450, 400));
        }
    }
}
