//! Benchmark, not a test (ignored; out of CI): capture-to-display latency, frame rate, bandwidth
//! and CPU of screen sharing through the whole chain on loopback: a 1920 × 1080 Xvfb drawn by this
//! process, `lifeline join` sharing it, a `lifeline-relay`, `lifeline support` decoding, and the
//! web console's canvas in headless Chromium.
//!
//! ```sh
//! CARGO_TARGET_DIR=... cargo test -p lifeline-desktop --test screen_bench -- --ignored --nocapture
//! ```
//!
//! Four workloads, each for `LIFELINE_BENCH_SECS` (default 20) seconds: static (nothing changes),
//! typing, scrolling a document, and full-screen noise (every pixel random every frame, as far
//! as the benchmark can draw it). The three moving ones draw `LIFELINE_BENCH_FPS` (default 60)
//! frames a second with the same content per second at any rate (typing 60 characters a second,
//! scrolling 90 lines of 15 px a second), so the sharer's own cap (60 fps) and not the drawing is
//! what limits the frame rate; every frame also paints a 16 × 16 probe square at the top left in a new colour and
//! notes the wall clock; the page notes when each new probe colour reaches its canvas
//! (`window.lifelineScreenProbe`, `Date.now()`). Latency is the difference (same machine, same
//! clock, millisecond resolution; for noise the probe's tile is JPEG, so colours match within
//! ±12 per channel); fps is the number of probe colours the page drew per second (frames merged
//! on the way count once; static draws no probe, so its fps is 0 by construction); bandwidth is the relay's `lifeline_relay_bytes_in_total` per second (both directions:
//! frames and acknowledgements); CPU is user + system time of the two `lifeline` processes
//! (from `/proc`) per second of wall time.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use lifeline_screen::frame::Rect;
use lifeline_screen::xvfb::{TestWindow, Xvfb};
use support::webdriver::Driver;
use support::{Relay, TempDir, dev_pki, join_on_display};

/// Typing speed of the typing workload (characters a second), whatever the drawing rate.
const TYPING_PER_SEC: u64 = 60;
/// Scrolling speed of the scrolling workload (15-pixel lines a second).
const SCROLL_LINES_PER_SEC: u64 = 90;

const WIDTH: u16 = 1920;
const HEIGHT: u16 = 1080;

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64
}

/// CPU seconds (user + system) of a process so far.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
        + fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    ticks / 100.0
}

#[derive(Clone, Copy, Debug)]
enum Workload {
    /// Nothing changes: no probe either; what it costs to keep an idle screen shared.
    Static,
    Typing,
    Scrolling,
    /// Every pixel random every frame (video-like worst case), then the probe square.
    Noise,
}

/// xorshift64: cheap full-screen noise, reproducible from run to run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Colours within this distance (per channel) are the same probe: the noise workload's probe
/// tile is coded lossily (JPEG), the others' exactly. No two of the 200 probe colours in a cycle
/// are this close (checked by hand), so a match is never another frame's colour.
const PROBE_TOLERANCE: u8 = 12;

fn same_probe(a: [u8; 3], b: [u8; 3]) -> bool {
    a.iter().zip(b).all(|(x, y)| x.abs_diff(y) <= PROBE_TOLERANCE)
}

/// A document-like window: white page, black text lines.
fn draw_document(window: &TestWindow) {
    window.fill(Rect::new(0, 0, WIDTH, HEIGHT), [236, 239, 243]).unwrap();
    window.fill(Rect::new(200, 40, 1520, 1000), [255, 255, 255]).unwrap();
    for line in 0..64u16 {
        let text =
            format!("{line:03} The quick brown fox jumps over the lazy dog; lorem ipsum dolor sit amet, consectetur.");
        window.text(220, 60 + line as i16 * 15, text.as_bytes(), [20, 20, 20], [255, 255, 255]).unwrap();
    }
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[test]
#[ignore = "benchmark: run with --ignored --nocapture"]
fn screen_sharing_capture_to_display() {
    let secs: u64 = std::env::var("LIFELINE_BENCH_SECS").ok().and_then(|v| v.parse().ok()).unwrap_or(20);
    let fps: u64 = std::env::var("LIFELINE_BENCH_FPS").ok().and_then(|v| v.parse().ok()).unwrap_or(60).clamp(1, 240);
    println!("drawing {fps} frames a second, {secs} s per workload");
    let temp = TempDir::new("screen-bench");
    let xvfb = Xvfb::start(WIDTH, HEIGHT).expect("Xvfb");
    let window = TestWindow::open(xvfb.display(), Rect::new(0, 0, WIDTH, HEIGHT)).unwrap();
    draw_document(&window);
    window.sync().unwrap();
    let dev = dev_pki(temp.path(), "dev");
    let relay = Relay::start(&dev);
    let (mut provider, mut customer, url) = join_on_display(&dev, &relay, xvfb.display());
    provider.type_line("/request view");
    customer.expect("/allow view");
    customer.type_line("/allow view");
    customer.expect("Your screen is being shared");
    let driver = Driver::start(&temp.path().join("profile"));
    driver.navigate(&url);
    driver.wait_text("screen-size", "1920 × 1080");
    std::thread::sleep(Duration::from_secs(3));

    println!("load before: {}", std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim());
    let mut rng = Rng(0x5EED);
    let mut noise = vec![0u8; usize::from(WIDTH) * usize::from(HEIGHT) * 4];
    for workload in [Workload::Static, Workload::Typing, Workload::Scrolling, Workload::Noise] {
        draw_document(&window);
        window.sync().unwrap();
        std::thread::sleep(Duration::from_secs(2));
        driver.script("window.lifelineScreenProbe.length = 0; return null");
        let (bytes0, cpu_c0, cpu_p0) =
            (relay.metric("lifeline_relay_bytes_in_total"), cpu_seconds(customer.pid()), cpu_seconds(provider.pid()));
        let started = Instant::now();
        let mut sent: Vec<(u64, [u8; 3])> = Vec::new();
        let mut frame = 0u64;
        while started.elapsed() < Duration::from_secs(secs) {
            let due = started + Duration::from_micros(frame * 1_000_000 / fps);
            // Content per second is the same at any drawing rate: characters and lines due by
            // the end of this frame minus those due by the end of the last one.
            let (chars, chars_before) = ((frame + 1) * TYPING_PER_SEC / fps, frame * TYPING_PER_SEC / fps);
            let (lines, lines_before) = ((frame + 1) * SCROLL_LINES_PER_SEC / fps, frame * SCROLL_LINES_PER_SEC / fps);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            match workload {
                Workload::Static => {
                    // Nothing drawn, not even the probe; just wait out the benchmark time.
                    frame += 1;
                    continue;
                }
                Workload::Noise => {
                    for chunk in noise.chunks_exact_mut(8) {
                        chunk.copy_from_slice(&rng.next().to_le_bytes());
                    }
                    window.put_image(0, 0, WIDTH, HEIGHT, &noise).unwrap();
                }
                Workload::Typing => {
                    // The characters due in this frame, on lines of 80, then the next line.
                    for c in chars_before..chars {
                        let column = (c % 80) as i16;
                        let line = (c / 80 % 60) as i16;
                        let text = [b'a' + (c % 26) as u8];
                        window.text(220 + column * 6, 60 + line * 15, &text, [20, 20, 20], [255, 255, 255]).unwrap();
                    }
                }
                Workload::Scrolling => {
                    // The lines due in this frame (15 px each) up, as an editor scrolls, and as
                    // many new lines at the bottom.
                    let n = (lines - lines_before) as u16;
                    if n > 0 {
                        let dy = n * 15;
                        window.copy_area(Rect::new(200, 40 + dy, 1520, 1000 - dy), 200, 40).unwrap();
                        window.fill(Rect::new(200, 1040 - dy, 1520, dy), [255, 255, 255]).unwrap();
                        for l in lines_before..lines {
                            let row = (l - lines_before) as i16;
                            let top = 1040 - dy as i16 + 11 + row * 15;
                            let text =
                                format!("{l:05} scrolled line of text, with words that change: {}", l * 7919 % 100_003);
                            window.text(220, top, text.as_bytes(), [20, 20, 20], [255, 255, 255]).unwrap();
                        }
                    }
                }
            }
            let colour = [(frame * 37 % 200) as u8 + 30, (frame * 91 % 200) as u8 + 30, (frame * 53 % 200) as u8 + 30];
            window.fill(Rect::new(0, 0, 16, 16), colour).unwrap();
            window.sync().unwrap();
            sent.push((now_ms(), colour));
            frame += 1;
        }
        let wall = started.elapsed().as_secs_f64();
        std::thread::sleep(Duration::from_secs(1));
        let (bytes1, cpu_c1, cpu_p1) =
            (relay.metric("lifeline_relay_bytes_in_total"), cpu_seconds(customer.pid()), cpu_seconds(provider.pid()));
        let probe = driver.script("return window.lifelineScreenProbe");
        let shown: Vec<(u64, [u8; 3])> = probe
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                let rgb: Vec<u8> = p["rgb"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u8).collect();
                (p["t"].as_u64().unwrap(), [rgb[0], rgb[1], rgb[2]])
            })
            .collect();
        let mut latencies = Vec::new();
        let mut matched = vec![false; sent.len()];
        for (t, rgb) in &shown {
            // The latest frame drawn with this colour before it was shown; counted once (a lossy
            // probe refined later shows the same frame twice).
            if let Some(i) = sent.iter().rposition(|(drawn, c)| same_probe(*c, *rgb) && drawn <= t)
                && !matched[i]
            {
                matched[i] = true;
                latencies.push(t - sent[i].0);
            }
        }
        latencies.sort_unstable();
        let latency = if latencies.is_empty() {
            "latency: no change displayed".to_owned()
        } else {
            format!(
                "latency ms p50 {} p90 {} p99 {} max {}",
                percentile(&latencies, 0.5),
                percentile(&latencies, 0.9),
                percentile(&latencies, 0.99),
                latencies.last().copied().unwrap_or(0)
            )
        };
        println!(
            "{workload:?}: {} frames drawn in {wall:.1} s; page showed {} of them ({:.1} fps), {} probe changes on the page; \
             {latency}; relay in {:.1} KB/s ({} bytes); CPU customer {:.0} %, provider {:.0} % of one core",
            sent.len(),
            latencies.len(),
            latencies.len() as f64 / wall,
            shown.len(),
            (bytes1 - bytes0) as f64 / wall / 1000.0,
            bytes1 - bytes0,
            100.0 * (cpu_c1 - cpu_c0) / wall,
            100.0 * (cpu_p1 - cpu_p0) / wall,
        );
    }
    println!("load after: {}", std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim());
    customer.type_line("/end");
    let _ = customer.wait(Duration::from_secs(20));
}
