#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The X11 back-end against a private Xvfb (started by each test on a free display; if Xvfb
//! cannot start the test fails with the reason: `bash scripts/setup-x11.sh` installs it).
//! A test window of our own draws the pattern and records the input it receives.

use std::time::Duration;

use lifeline_screen::backend::{Capturer, Injector, Monitor};
use lifeline_screen::codec::{Decoder, Encoder, EncoderConfig, Limits, Quality};
use lifeline_screen::frame::{Frame, Rect};
use lifeline_screen::input::{InputEvent, MouseButton, keysym_for_char};
use lifeline_screen::message::ScreenMessage;
use lifeline_screen::tiles::{TileGrid, changed_tiles};
use lifeline_screen::x11::{CaptureMethod, X11Capturer, X11Injector};
use lifeline_screen::xvfb::{Recorded, TestWindow, Xvfb};
use x11rb::connection::Connection as _;
use x11rb::protocol::randr::{self, ConnectionExt as _};
use x11rb::protocol::xproto::ConnectionExt as _;

fn xvfb(width: u16, height: u16) -> Xvfb {
    Xvfb::start(width, height).unwrap_or_else(|e| panic!("Xvfb is required for the X11 tests: {e}"))
}

const RED: [u8; 3] = [255, 0, 0];
const GREEN: [u8; 3] = [0, 200, 0];
const BLUE: [u8; 3] = [0, 0, 255];
const WHITE: [u8; 3] = [255, 255, 255];
const ORANGE: [u8; 3] = [255, 128, 16];

/// Four quadrants and a small orange square at (400, 300)-(409, 309), in the white one.
fn draw_pattern(window: &TestWindow, width: u16, height: u16) {
    let (w, h) = (width / 2, height / 2);
    window.fill(Rect::new(0, 0, w, h), RED).unwrap();
    window.fill(Rect::new(w, 0, w, h), GREEN).unwrap();
    window.fill(Rect::new(0, h, w, h), BLUE).unwrap();
    window.fill(Rect::new(w, h, w, h), WHITE).unwrap();
    window.fill(Rect::new(400, 300, 10, 10), ORANGE).unwrap();
    window.sync().unwrap();
}

fn check_pattern(frame: &Frame) {
    assert_eq!((frame.width(), frame.height()), (640, 480));
    assert_eq!(frame.rgb(10, 10), Some(RED));
    assert_eq!(frame.rgb(630, 10), Some(GREEN));
    assert_eq!(frame.rgb(10, 470), Some(BLUE));
    assert_eq!(frame.rgb(630, 470), Some(WHITE));
    assert_eq!(frame.rgb(400, 300), Some(ORANGE));
    assert_eq!(frame.rgb(409, 309), Some(ORANGE));
    assert_eq!(frame.rgb(410, 309), Some(WHITE));
    assert_eq!(frame.rgb(399, 300), Some(WHITE));
    assert_eq!(frame.rgb(319, 239), Some(RED));
    assert_eq!(frame.rgb(320, 239), Some(GREEN));
}

#[test]
fn captures_the_test_pattern_with_shm_and_get_image() {
    let server = xvfb(640, 480);
    let window = TestWindow::open(server.display(), Rect::new(0, 0, 640, 480)).unwrap();
    draw_pattern(&window, 640, 480);

    let mut shm = X11Capturer::connect(Some(server.display())).unwrap();
    assert_eq!(shm.method(), CaptureMethod::Shm, "Xvfb offers MIT-SHM with fd passing");
    let mut plain = X11Capturer::connect_with(Some(server.display()), CaptureMethod::GetImage).unwrap();
    assert_eq!(plain.method(), CaptureMethod::GetImage);

    let monitors = shm.monitors().unwrap();
    assert_eq!(monitors.len(), 1);
    assert_eq!((monitors[0].width, monitors[0].height), (640, 480));
    let mut a = Frame::new(0, 0);
    let mut b = Frame::new(0, 0);
    shm.capture(&monitors[0], &mut a).unwrap();
    plain.capture(&monitors[0], &mut b).unwrap();
    check_pattern(&a);
    check_pattern(&b);
    assert_eq!(a.max_channel_difference(&b), Some(0));

    // A region (as for a second monitor): the orange square at its corner.
    let region = Monitor { x: 400, y: 300, width: 100, height: 50, primary: false, name: String::new() };
    shm.capture(&region, &mut a).unwrap();
    assert_eq!((a.width(), a.height()), (100, 50));
    assert_eq!(a.rgb(0, 0), Some(ORANGE));
    assert_eq!(a.rgb(10, 0), Some(WHITE));
}

#[test]
fn detects_changed_tiles_and_round_trips_captured_frames() {
    let server = xvfb(640, 480);
    let window = TestWindow::open(server.display(), Rect::new(0, 0, 640, 480)).unwrap();
    draw_pattern(&window, 640, 480);
    // A photo-like area for the lossy path: a gradient with noise, 256 x 128 at (32, 280).
    let mut seed = 12345u32;
    let mut image = Vec::with_capacity(256 * 128 * 4);
    for y in 0..128u32 {
        for x in 0..256u32 {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
            let n = (seed >> 27) as u8;
            image.extend_from_slice(&[(x as u8) ^ n, (y * 2) as u8, ((x / 2 + y) as u8).wrapping_add(n), 0]);
        }
    }
    window.put_image(32, 280, 256, 128, &image).unwrap();
    window.sync().unwrap();

    let mut capturer = X11Capturer::connect(Some(server.display())).unwrap();
    let monitor = capturer.monitors().unwrap().remove(0);
    let mut before = Frame::new(0, 0);
    capturer.capture(&monitor, &mut before).unwrap();

    // Change: a 1-pixel dot in tile (7, 1) and a bar across tiles (1..=2, 3).
    window.fill(Rect::new(7 * 64 + 5, 64 + 5, 1, 1), [1, 2, 3]).unwrap();
    window.fill(Rect::new(100, 3 * 64 + 10, 60, 4), [9, 9, 9]).unwrap();
    window.sync().unwrap();
    let mut after = Frame::new(0, 0);
    capturer.capture(&monitor, &mut after).unwrap();
    let grid = TileGrid::new(640, 480, 64);
    let mut dirty = Vec::new();
    assert_eq!(changed_tiles(&before, &after, &grid, &mut dirty), 3);
    let marked: Vec<(usize, usize)> =
        dirty.iter().enumerate().filter(|(_, d)| **d).map(|(i, _)| (i % grid.columns, i / grid.columns)).collect();
    assert_eq!(marked, vec![(7, 1), (1, 3), (2, 3)]);

    for (quality, tolerance) in [
        (Quality { lossy: false, jpeg_quality: 75, refine_tiles: 0 }, 0.0),
        (Quality { lossy: true, jpeg_quality: 75, refine_tiles: 0 }, 4.0),
    ] {
        let mut encoder = Encoder::new(0, EncoderConfig::default());
        let mut decoder = Decoder::new(Limits::default());
        for frame in [&before, &after] {
            let mut payloads = Vec::new();
            let stats = encoder.encode(frame, &quality, &mut payloads);
            assert_eq!(stats.jpegs > 0, quality.lossy && frame == &before, "{stats:?}");
            for payload in &payloads {
                let Some(ScreenMessage::Update(update)) = ScreenMessage::parse(payload) else { panic!() };
                decoder.apply(&update).unwrap();
            }
            let mean = decoder.frame().mean_channel_difference(frame).unwrap();
            assert!(mean <= tolerance, "mean error {mean} (lossy: {})", quality.lossy);
            if !quality.lossy {
                assert_eq!(decoder.frame().max_channel_difference(frame), Some(0));
            }
        }
    }
}

#[test]
fn injected_clicks_and_typing_reach_the_window() {
    let server = xvfb(640, 480);
    let window = TestWindow::open(server.display(), Rect::new(100, 100, 300, 200)).unwrap();
    window.fill(Rect::new(0, 0, 300, 200), WHITE).unwrap();
    window.focus().unwrap();
    let mut injector = X11Injector::connect(Some(server.display())).unwrap();

    // A click at desktop (150, 130) is window (50, 30).
    injector.inject(&InputEvent::Button { button: MouseButton::Left, pressed: true, x: 150, y: 130 }).unwrap();
    injector.inject(&InputEvent::Button { button: MouseButton::Left, pressed: false, x: 150, y: 130 }).unwrap();
    injector.inject(&InputEvent::Wheel { dx: 0, dy: 2 }).unwrap();
    injector.sync().unwrap();
    let events = window.recorded(Duration::from_millis(300)).unwrap();
    let presses: Vec<_> = events.iter().filter(|e| matches!(e, Recorded::ButtonPress { .. })).collect();
    assert_eq!(
        presses,
        [
            &Recorded::ButtonPress { button: 1, x: 50, y: 30 },
            &Recorded::ButtonPress { button: 5, x: 50, y: 30 },
            &Recorded::ButtonPress { button: 5, x: 50, y: 30 },
        ],
        "{events:?}"
    );

    // Typed text by keysym (Shift added where needed), a key by HID code only, and a
    // character missing from the US layout (mapped onto a spare keycode).
    let text = "Hello, World! 42";
    for c in text.chars() {
        let keysym = keysym_for_char(c);
        injector.inject(&InputEvent::Key { pressed: true, keysym, code: 0 }).unwrap();
        injector.inject(&InputEvent::Key { pressed: false, keysym, code: 0 }).unwrap();
    }
    injector.inject(&InputEvent::Key { pressed: true, keysym: 0, code: 0x04 }).unwrap();
    injector.inject(&InputEvent::Key { pressed: false, keysym: 0, code: 0x04 }).unwrap();
    let e_acute = keysym_for_char('é');
    injector.inject(&InputEvent::Key { pressed: true, keysym: e_acute, code: 0 }).unwrap();
    injector.inject(&InputEvent::Key { pressed: false, keysym: e_acute, code: 0 }).unwrap();
    injector.sync().unwrap();
    let events = window.recorded(Duration::from_millis(300)).unwrap();
    assert_eq!(window.typed_text(&events).unwrap(), "Hello, World! 42aé");

    // A held key and button are released by release_all.
    injector.inject(&InputEvent::Key { pressed: true, keysym: 0xFFE3, code: 0 }).unwrap(); // Control_L
    injector.inject(&InputEvent::Button { button: MouseButton::Right, pressed: true, x: 120, y: 120 }).unwrap();
    injector.release_all().unwrap();
    injector.sync().unwrap();
    let events = window.recorded(Duration::from_millis(300)).unwrap();
    assert!(events.iter().any(|e| matches!(e, Recorded::ButtonRelease { button: 3 })), "{events:?}");
    assert!(events.iter().any(|e| matches!(e, Recorded::KeyRelease { .. })), "{events:?}");
}

#[test]
fn cursor_follows_injected_moves() {
    let server = xvfb(640, 480);
    let mut capturer = X11Capturer::connect(Some(server.display())).unwrap();
    let mut injector = X11Injector::connect(Some(server.display())).unwrap();
    injector.inject(&InputEvent::Move { x: 321, y: 123 }).unwrap();
    injector.sync().unwrap();
    let cursor = capturer.cursor().unwrap();
    assert_eq!((cursor.x, cursor.y), (321, 123));
    assert!(cursor.width > 0 && cursor.height > 0, "XFixes gives the shape");
    assert_eq!(cursor.rgba.len(), usize::from(cursor.width) * usize::from(cursor.height) * 4);
}

#[test]
fn several_monitors_through_randr() {
    let server = xvfb(1280, 480);
    // Split the screen into two RandR monitors, as two real outputs would be. Xvfb's single
    // output goes to the left one, which replaces the automatic whole-screen monitor.
    let (conn, screen) = x11rb::rust_connection::RustConnection::connect(Some(server.display())).unwrap();
    let root = conn.setup().roots[screen].root;
    let version = conn.randr_query_version(1, 5).unwrap().reply().unwrap();
    assert!((version.major_version, version.minor_version) >= (1, 5), "Xvfb has RandR 1.5");
    let listed = conn.randr_get_monitors(root, true).unwrap().reply().unwrap();
    let outputs = listed.monitors.first().map(|m| m.outputs.clone()).unwrap_or_default();
    for (name, x, primary, outputs) in [("LEFT", 0i16, true, outputs), ("RIGHT", 640, false, vec![])] {
        let atom = conn.intern_atom(false, name.as_bytes()).unwrap().reply().unwrap().atom;
        let info = randr::MonitorInfo {
            name: atom,
            primary,
            automatic: false,
            x,
            y: 0,
            width: 640,
            height: 480,
            width_in_millimeters: 160,
            height_in_millimeters: 120,
            outputs,
        };
        conn.randr_set_monitor(root, info).unwrap().check().unwrap();
    }
    let window = TestWindow::open(server.display(), Rect::new(0, 0, 1280, 480)).unwrap();
    window.fill(Rect::new(0, 0, 640, 480), RED).unwrap();
    window.fill(Rect::new(640, 0, 640, 480), BLUE).unwrap();
    window.sync().unwrap();

    let mut capturer = X11Capturer::connect(Some(server.display())).unwrap();
    let monitors = capturer.monitors().unwrap();
    let summary: Vec<_> = monitors.iter().map(|m| (m.name.as_str(), m.x, m.width, m.primary)).collect();
    assert_eq!(summary, [("LEFT", 0, 640, true), ("RIGHT", 640, 640, false)]);
    let mut frame = Frame::new(0, 0);
    capturer.capture(&monitors[1], &mut frame).unwrap();
    assert_eq!((frame.width(), frame.height()), (640, 480));
    assert_eq!(frame.rgb(0, 0), Some(BLUE));
    capturer.capture(&monitors[0], &mut frame).unwrap();
    assert_eq!(frame.rgb(639, 479), Some(RED));
}

#[test]
fn damage_capture_reads_only_what_changed_and_stays_exact() {
    let server = xvfb(640, 480);
    let window = TestWindow::open(server.display(), Rect::new(0, 0, 640, 480)).unwrap();
    draw_pattern(&window, 640, 480);
    let mut capturer = X11Capturer::connect(Some(server.display())).unwrap();
    assert!(capturer.has_damage(), "Xvfb has XDamage");
    let mut reference = X11Capturer::connect_with(Some(server.display()), CaptureMethod::GetImage).unwrap();
    let monitor = capturer.monitors().unwrap().remove(0);
    let mut frame = Frame::new(0, 0);
    let mut full = Frame::new(0, 0);
    assert!(capturer.capture_damaged(&monitor, &mut frame).unwrap().full, "first capture reads everything");
    check_pattern(&frame);

    let idle = capturer.capture_damaged(&monitor, &mut frame).unwrap();
    assert_eq!((idle.full, idle.rects, idle.pixels), (false, 0, 0));

    let steps: [&dyn Fn(&TestWindow); 3] = [
        &|w| w.fill(Rect::new(10, 10, 5, 5), [7, 7, 7]).unwrap(),
        &|w| w.text(100, 300, b"typed text", [0, 0, 0], [255, 255, 255]).unwrap(),
        &|w| w.copy_area(Rect::new(0, 100, 300, 100), 0, 90).unwrap(),
    ];
    for (index, step) in steps.iter().enumerate() {
        step(&window);
        window.sync().unwrap();
        let done = capturer.capture_damaged(&monitor, &mut frame).unwrap();
        assert!(!done.full && done.rects >= 1, "step {index}: {done:?}");
        assert!(done.pixels < 640 * 480 / 4, "step {index}: {done:?}");
        reference.capture(&monitor, &mut full).unwrap();
        assert_eq!(frame.max_channel_difference(&full), Some(0), "step {index}");
    }
    // Most of the screen changes: read whole.
    window.fill(Rect::new(0, 0, 640, 400), [1, 2, 3]).unwrap();
    window.sync().unwrap();
    assert!(capturer.capture_damaged(&monitor, &mut frame).unwrap().full);
    reference.capture(&monitor, &mut full).unwrap();
    assert_eq!(frame.max_channel_difference(&full), Some(0));
}

#[test]
fn the_test_pattern_reaches_a_viewer_through_sharer_and_viewer() {
    use lifeline_core::time::Instant;
    use lifeline_screen::rate::RateConfig;
    use lifeline_screen::session::{Sharer, Viewer};
    let server = xvfb(640, 480);
    let window = TestWindow::open(server.display(), Rect::new(0, 0, 640, 480)).unwrap();
    draw_pattern(&window, 640, 480);
    let capturer = X11Capturer::connect(Some(server.display())).unwrap();
    let mut sharer = Sharer::new(capturer, EncoderConfig::default(), RateConfig::default(), Instant::ZERO).unwrap();
    let mut viewer = Viewer::new(Limits::default());
    for step in 0..6u64 {
        if step == 3 {
            window.fill(Rect::new(400, 300, 10, 10), BLUE).unwrap();
            window.sync().unwrap();
        }
        let now = Instant::from_millis(step * 40);
        let mut out = Vec::new();
        sharer.poll_transmit(now, &mut out).unwrap();
        let mut replies = Vec::new();
        for payload in &out {
            viewer.handle_payload(now, payload, &mut replies).unwrap();
        }
        for reply in &replies {
            sharer.handle_message(now, reply);
        }
        if step == 2 {
            check_pattern(viewer.frame());
        }
    }
    assert_eq!(viewer.frame().rgb(405, 305), Some(BLUE));
    assert_eq!(viewer.frame().rgb(630, 470), Some(WHITE));
    assert_eq!(viewer.monitors().len(), 1);
}

#[test]
fn injected_input_is_told_apart_from_the_local_user() {
    use lifeline_screen::x11::LocalInputWatcher;
    let server = xvfb(640, 480);
    let window = TestWindow::open(server.display(), Rect::new(0, 0, 640, 480)).unwrap();
    window.focus().unwrap();
    let mut watcher = LocalInputWatcher::connect(Some(server.display())).unwrap();
    let devices = watcher.devices().unwrap();
    assert!(devices.iter().any(|(name, xtest)| *xtest && name.contains("XTEST")), "{devices:?}");
    assert_eq!(watcher.poll().unwrap(), Default::default());

    let mut injector = X11Injector::connect(Some(server.display())).unwrap();
    injector.inject(&InputEvent::Move { x: 10, y: 10 }).unwrap();
    injector.inject(&InputEvent::Button { button: MouseButton::Left, pressed: true, x: 20, y: 20 }).unwrap();
    injector.inject(&InputEvent::Button { button: MouseButton::Left, pressed: false, x: 20, y: 20 }).unwrap();
    injector.inject(&InputEvent::Key { pressed: true, keysym: 0x61, code: 0 }).unwrap();
    injector.inject(&InputEvent::Key { pressed: false, keysym: 0x61, code: 0 }).unwrap();
    injector.sync().unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let activity = watcher.poll().unwrap();
    // Motions (2), one button press, one key press: all from XTest, none local. (Xvfb has no
    // real input device, so the local side cannot be exercised here.)
    assert_eq!(activity.local, 0, "{activity:?}");
    assert!(activity.synthetic >= 3, "{activity:?}");
}

#[test]
fn borrowed_keycodes_are_given_back() {
    let server = xvfb(320, 200);
    let window = TestWindow::open(server.display(), Rect::new(0, 0, 320, 200)).unwrap();
    window.focus().unwrap();
    let keymap = |display: &str| {
        let (conn, _) = x11rb::rust_connection::RustConnection::connect(Some(display)).unwrap();
        let (min, max) = (conn.setup().min_keycode, conn.setup().max_keycode);
        conn.get_keyboard_mapping(min, max - min + 1).unwrap().reply().unwrap().keysyms
    };
    let before = keymap(server.display());
    {
        let mut injector = X11Injector::connect(Some(server.display())).unwrap();
        let euro = keysym_for_char('€');
        injector.inject(&InputEvent::Key { pressed: true, keysym: euro, code: 0 }).unwrap();
        injector.inject(&InputEvent::Key { pressed: false, keysym: euro, code: 0 }).unwrap();
        injector.sync().unwrap();
        assert_ne!(keymap(server.display()), before, "a spare keycode was borrowed");
        injector.inject(&InputEvent::Key { pressed: true, keysym: 0xFFE1, code: 0 }).unwrap(); // held Shift
    }
    window.sync().unwrap();
    assert_eq!(keymap(server.display()), before, "and given back on drop");
    let events = window.recorded(Duration::from_millis(200)).unwrap();
    assert!(matches!(events.last(), Some(Recorded::KeyRelease { .. })), "held Shift released: {events:?}");
}
