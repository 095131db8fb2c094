//! Screen pipeline benchmark on a private 1920 × 1080 Xvfb (run by `scripts/bench-screen.sh`;
//! not part of the tests). For each workload: capture (MIT-SHM, core GetImage, and XDamage-driven
//! SHM reads of the changed rectangles, checked equal to the full capture), encode,
//! decode, bytes per frame, and, as the reference measured in the same run, LZ4 of the whole
//! frame (what a codec without change detection would send).
//!
//! Workloads: `static` (nothing changes), `typing` (two characters a frame), `scrolling` (a
//! document scrolls by three lines a frame, as an editor repaints with CopyArea), `noise`
//! (every pixel random every frame: the worst case), `noise-q25` (the same at the JPEG
//! quality the rate controller falls to on a slow link) and `noise-2-threads` (q75, tile rows
//! coded on two threads).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Instant;

use lifeline_screen::backend::Capturer as _;
use lifeline_screen::codec::{Decoder, Encoder, EncoderConfig, Limits, Quality};
use lifeline_screen::frame::{Frame, Rect};
use lifeline_screen::message::ScreenMessage;
use lifeline_screen::x11::{CaptureMethod, X11Capturer};
use lifeline_screen::xvfb::{TestWindow, Xvfb};

const WIDTH: u16 = 1920;
const HEIGHT: u16 = 1080;
/// The document area of the editor window.
const DOC: Rect = Rect::new(300, 120, 1100, 900);
const LINE: u16 = 15;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn words(rng: &mut Rng, len: usize) -> Vec<u8> {
    const WORDS: [&str; 12] =
        ["remote", "support", "the", "customer", "session", "consent", "screen", "of", "and", "relay", "key", "a"];
    let mut line = Vec::new();
    while line.len() < len {
        line.extend_from_slice(WORDS[(rng.next() % 12) as usize].as_bytes());
        line.push(b' ');
    }
    line.truncate(len);
    line
}

/// A desktop: wallpaper, an editor window with text, a photo, a task bar.
fn draw_desktop(window: &TestWindow, rng: &mut Rng) {
    window.fill(Rect::new(0, 0, WIDTH, HEIGHT), [40, 70, 110]).unwrap();
    window.fill(Rect::new(280, 80, 1140, 960), [220, 220, 225]).unwrap();
    window.fill(Rect::new(280, 80, 1140, 30), [60, 60, 70]).unwrap();
    window.text(290, 100, b"notes.txt - Editor", [255, 255, 255], [60, 60, 70]).unwrap();
    window.fill(DOC, [255, 255, 255]).unwrap();
    for line in 0..DOC.height / LINE {
        let text = words(rng, 150);
        window.text(DOC.x as i16 + 6, (DOC.y + 12 + line * LINE) as i16, &text, [20, 20, 20], [255, 255, 255]).unwrap();
    }
    // A photo-like picture (smooth gradients plus grain), 440 x 330.
    let (pw, ph) = (440u16, 330u16);
    let mut image = Vec::with_capacity(usize::from(pw) * usize::from(ph) * 4);
    for y in 0..u32::from(ph) {
        for x in 0..u32::from(pw) {
            let grain = (rng.next() % 12) as u8;
            let r = ((x * 255 / 440) as u8).wrapping_add(grain);
            let g = ((y * 200 / 330) as u8 + 30).wrapping_add(grain);
            let b = (((x + y) * 255 / 770) as u8).wrapping_add(grain / 2);
            image.extend_from_slice(&[b, g, r, 0]);
        }
    }
    window.put_image(1450, 120, pw, ph, &image).unwrap();
    window.fill(Rect::new(0, HEIGHT - 40, WIDTH, 40), [30, 30, 35]).unwrap();
    window.text(1820, (HEIGHT - 15) as i16, b"12:34", [230, 230, 230], [30, 30, 35]).unwrap();
    window.sync().unwrap();
}

#[derive(Default)]
struct Totals {
    frames: usize,
    shm: Vec<f64>,
    damage: Vec<f64>,
    damage_pixels: usize,
    hinted: Vec<f64>,
    get_image: Vec<f64>,
    encode: Vec<f64>,
    decode: Vec<f64>,
    bytes: usize,
    parts: usize,
    lz4_bytes: usize,
    lz4_ms: Vec<f64>,
    jpegs: usize,
    copies: usize,
    error: f64,
}

fn median(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(|a, b| a.total_cmp(b));
    values[values.len() / 2]
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1000.0
}

fn main() {
    let frames: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(60);
    let server = Xvfb::start(WIDTH, HEIGHT).unwrap_or_else(|e| panic!("{e}"));
    let window = TestWindow::open(server.display(), Rect::new(0, 0, WIDTH, HEIGHT)).unwrap();
    let mut shm = X11Capturer::connect(Some(server.display())).unwrap();
    assert_eq!(shm.method(), CaptureMethod::Shm);
    let mut plain = X11Capturer::connect_with(Some(server.display()), CaptureMethod::GetImage).unwrap();
    let mut damaged = X11Capturer::connect(Some(server.display())).unwrap();
    assert!(damaged.has_damage());
    let monitor = shm.monitors().unwrap().remove(0);
    let quality = Quality::default();
    println!(
        "screen benchmark: {WIDTH}x{HEIGHT} Xvfb, {frames} frames per workload, JPEG quality {}, {} cores",
        quality.jpeg_quality,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    compare_codecs(&window, &mut shm, &monitor);
    println!();
    println!(
        "| workload | capture SHM ms | capture GetImage ms | capture XDamage+SHM ms (share of screen read) | encode ms | encode with XDamage hint ms | decode ms | fps (capture+encode) | bytes/frame | KB/s at 30 fps | ops | worst mean error | LZ4 whole frame: bytes/frame, ms |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    let mut notes = Vec::new();
    for workload in ["static", "typing", "scrolling", "noise", "noise-q25", "noise-2-threads"] {
        let mut rng = Rng(0x5EED);
        draw_desktop(&window, &mut rng);
        let quality = if workload == "noise-q25" { Quality { jpeg_quality: 25, ..quality } } else { quality };
        let threads = if workload == "noise-2-threads" { 2 } else { 1 };
        let mut encoder = Encoder::new(0, EncoderConfig { threads, ..EncoderConfig::default() });
        let mut decoder = Decoder::new(Limits::default());
        let mut frame = Frame::new(0, 0);
        let mut damage_frame = Frame::new(0, 0);
        damaged.capture_damaged(&monitor, &mut damage_frame).unwrap();
        // A second encoder fed the XDamage frame with the damage as a hint (the Sharer's path);
        // it goes through the same frames, so its output must be identical.
        let mut hinted = Encoder::new(0, EncoderConfig { threads, ..EncoderConfig::default() });
        let mut hinted_payloads = Vec::new();
        hinted.encode(&damage_frame, &quality, &mut hinted_payloads);
        hinted_payloads.clear();
        let mut payloads = Vec::new();
        // The first frame (a full refresh) is not counted; it is reported on its own below.
        shm.capture(&monitor, &mut frame).unwrap();
        let started = Instant::now();
        let first = encoder.encode(&frame, &quality, &mut payloads);
        let first_ms = ms(started);
        for payload in payloads.drain(..) {
            let Some(ScreenMessage::Update(update)) = ScreenMessage::parse(&payload) else { panic!() };
            decoder.apply(&update).unwrap();
        }
        // Then the still screen is refined (lossy photo tiles re-sent lossless) until the
        // encoder has nothing left to send; also not counted, reported on its own.
        let (mut refine_frames, mut refine_bytes) = (0, 0);
        loop {
            shm.capture(&monitor, &mut frame).unwrap();
            let stats = encoder.encode(&frame, &quality, &mut payloads);
            let changed = damaged.capture_changed(&monitor, &mut damage_frame).unwrap();
            hinted.encode_changed(&damage_frame, changed.as_deref(), &quality, &mut hinted_payloads);
            hinted_payloads.clear();
            if payloads.is_empty() || refine_frames > 500 {
                break;
            }
            refine_frames += 1;
            refine_bytes += stats.bytes;
            for payload in payloads.drain(..) {
                let Some(ScreenMessage::Update(update)) = ScreenMessage::parse(&payload) else { panic!() };
                decoder.apply(&update).unwrap();
            }
        }
        if workload == "static" {
            notes.push(format!(
                "Before the static workload: first frame (full refresh): {} bytes in {} parts ({} JPEG ops), encode {first_ms:.1} ms; then refinement to lossless: {refine_bytes} bytes over {refine_frames} frames",
                first.bytes, first.parts, first.jpegs
            ));
        }
        let mut totals = Totals::default();
        let mut noise = vec![0u8; usize::from(WIDTH) * usize::from(HEIGHT) * 4];
        let (mut col, mut row) = (0u16, 0u16);
        for _ in 0..frames {
            match workload {
                "typing" => {
                    let y = (DOC.y + 12 + (row % 40) * LINE) as i16;
                    let text = words(&mut rng, 2);
                    window.text(DOC.x as i16 + 6 + col as i16 * 6, y, &text, [0, 0, 0], [255, 255, 200]).unwrap();
                    col += 2;
                    if col >= 150 {
                        col = 0;
                        row += 1;
                    }
                }
                "scrolling" => {
                    let shift = 3 * LINE;
                    let src = Rect::new(DOC.x, DOC.y + shift, DOC.width, DOC.height - shift);
                    window.copy_area(src, DOC.x as i16, DOC.y as i16).unwrap();
                    window
                        .fill(Rect::new(DOC.x, DOC.y + DOC.height - shift, DOC.width, shift), [255, 255, 255])
                        .unwrap();
                    for line in 0..3 {
                        let y = (DOC.y + DOC.height - shift + 12 + line * LINE) as i16;
                        window.text(DOC.x as i16 + 6, y, &words(&mut rng, 150), [20, 20, 20], [255, 255, 255]).unwrap();
                    }
                }
                "noise" | "noise-q25" | "noise-2-threads" => {
                    for chunk in noise.chunks_exact_mut(8) {
                        chunk.copy_from_slice(&rng.next().to_le_bytes());
                    }
                    window.put_image(0, 0, WIDTH, HEIGHT, &noise).unwrap();
                }
                _ => {}
            }
            window.sync().unwrap();

            let started = Instant::now();
            plain.capture(&monitor, &mut frame).unwrap();
            totals.get_image.push(ms(started));
            let started = Instant::now();
            shm.capture(&monitor, &mut frame).unwrap();
            totals.shm.push(ms(started));
            let started = Instant::now();
            let changed = damaged.capture_changed(&monitor, &mut damage_frame).unwrap();
            totals.damage.push(ms(started));
            totals.damage_pixels += changed
                .as_ref()
                .map_or(usize::from(WIDTH) * usize::from(HEIGHT), |rects| rects.iter().map(Rect::area).sum());
            assert_eq!(damage_frame.max_channel_difference(&frame), Some(0), "damage capture is exact");

            let started = Instant::now();
            hinted_payloads.clear();
            hinted.encode_changed(&damage_frame, changed.as_deref(), &quality, &mut hinted_payloads);
            totals.hinted.push(ms(started));

            let started = Instant::now();
            let stats = encoder.encode(&frame, &quality, &mut payloads);
            totals.encode.push(ms(started));
            assert_eq!(payloads, hinted_payloads, "the damage hint changes nothing in the output");
            totals.bytes += stats.bytes;
            totals.parts += stats.parts;
            totals.jpegs += stats.jpegs;
            totals.copies += usize::from(stats.scrolled_rows > 0);

            let started = Instant::now();
            for payload in payloads.drain(..) {
                let Some(ScreenMessage::Update(update)) = ScreenMessage::parse(&payload) else { panic!() };
                decoder.apply(&update).unwrap();
            }
            totals.decode.push(ms(started));
            let error = decoder.frame().mean_channel_difference(&frame).unwrap();
            totals.error = totals.error.max(error);

            let started = Instant::now();
            totals.lz4_bytes += lz4_flex::block::compress(frame.as_bytes()).len();
            totals.lz4_ms.push(ms(started));
            totals.frames += 1;
        }
        let n = totals.frames.max(1);
        let (shm_ms, get_ms) = (median(&mut totals.shm), median(&mut totals.get_image));
        let (encode_ms, decode_ms) = (median(&mut totals.encode), median(&mut totals.decode));
        let per_frame = totals.bytes / n;
        println!(
            "| {workload} | {shm_ms:.2} | {get_ms:.2} | {:.2} ({:.1} %) | {encode_ms:.2} | {:.2} | {decode_ms:.2} | {:.0} | {per_frame} | {:.1} | {} parts, {} JPEG, {} copies | {:.2} | {}, {:.2} |",
            median(&mut totals.damage),
            totals.damage_pixels as f64 * 100.0 / (n as f64 * f64::from(WIDTH) * f64::from(HEIGHT)),
            median(&mut totals.hinted),
            1000.0 / (shm_ms + encode_ms).max(0.001),
            per_frame as f64 * 30.0 / 1000.0,
            totals.parts,
            totals.jpegs,
            totals.copies,
            totals.error,
            totals.lz4_bytes / n,
            median(&mut totals.lz4_ms),
        );
    }
    println!();
    for note in notes {
        println!("{note}");
    }
}

/// The choice of tile coding, on the desktop frame sent whole (a viewer joining).
fn compare_codecs(window: &TestWindow, capturer: &mut X11Capturer, monitor: &lifeline_screen::backend::Monitor) {
    let mut rng = Rng(0x5EED);
    draw_desktop(window, &mut rng);
    let mut frame = Frame::new(0, 0);
    capturer.capture(monitor, &mut frame).unwrap();
    let auto = EncoderConfig::default();
    let lossy = Quality::default();
    let lossless = Quality { lossy: false, ..lossy };
    let variants = [
        ("chosen: fill + palette/LZ4 + JPEG q75 for photo-like tiles", auto, lossy),
        ("lossless: fill + palette/LZ4 (+ raw/LZ4 over 256 colours)", auto, lossless),
        ("lossless without palette: fill + raw RGB/LZ4", EncoderConfig { palette: false, ..auto }, lossless),
        ("all JPEG q75 (text too)", EncoderConfig { photo_colors: 1, ..auto }, lossy),
        ("all JPEG q90 (text too)", EncoderConfig { photo_colors: 1, ..auto }, Quality { jpeg_quality: 90, ..lossy }),
    ];
    println!(
        "| desktop frame 1920x1080, sent whole | bytes | encode ms | decode ms | mean error | text area max error |"
    );
    println!("|---|---|---|---|---|---|");
    for (name, config, quality) in variants {
        let mut times = Vec::new();
        let mut decode_times = Vec::new();
        let mut bytes = 0;
        let mut decoder = Decoder::new(Limits::default());
        for _ in 0..5 {
            let mut encoder = Encoder::new(0, config);
            let mut payloads = Vec::new();
            let started = Instant::now();
            bytes = encoder.encode(&frame, &quality, &mut payloads).bytes;
            times.push(ms(started));
            decoder = Decoder::new(Limits::default());
            let started = Instant::now();
            for payload in &payloads {
                let Some(ScreenMessage::Update(update)) = ScreenMessage::parse(payload) else { panic!() };
                decoder.apply(&update).unwrap();
            }
            decode_times.push(ms(started));
        }
        let mut text_error = 0u8;
        for y in DOC.y..DOC.y + DOC.height {
            for x in DOC.x..DOC.x + DOC.width {
                let (a, b) = (decoder.frame().rgb(x, y).unwrap(), frame.rgb(x, y).unwrap());
                for c in 0..3 {
                    text_error = text_error.max(a[c].abs_diff(b[c]));
                }
            }
        }
        println!(
            "| {name} | {bytes} | {:.1} | {:.1} | {:.2} | {text_error} |",
            median(&mut times),
            median(&mut decode_times),
            decoder.frame().mean_channel_difference(&frame).unwrap()
        );
    }
    let started = Instant::now();
    let whole = lz4_flex::block::compress(frame.as_bytes()).len();
    println!("| reference: LZ4 of the whole BGRX frame | {whole} | {:.1} | | 0 | 0 |", ms(started));
}
