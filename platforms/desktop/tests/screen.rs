//! Screen sharing and remote control with real processes on loopback: a `lifeline-relay`,
//! `lifeline support`, and `lifeline join` running on a private Xvfb (its `DISPLAY`), with the
//! provider's web console in headless Chromium where the page matters. What must hold:
//! - nothing of the screen leaves the customer before it allows "view screen", nor after it takes
//!   it back (the relay's own byte counters), and frames do flow in between;
//! - a test pattern on the customer's display appears on the console's canvas (a Chromium
//!   screenshot of it, compared within a tolerance);
//! - a click and typed text from the console arrive in a window on the customer's display, only
//!   while remote control is allowed and no consent prompt is open; taking control back (command
//!   or hotkey) stops injection at once;
//! - the customer ends the session while frames stream: both sides stop cleanly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use lifeline_screen::backend::Injector as _;
use lifeline_screen::frame::Rect;
use lifeline_screen::input::InputEvent;
use lifeline_screen::x11::X11Injector;
use lifeline_screen::xvfb::{Recorded, TestWindow, Xvfb};
use serde_json::json;
use support::screen::{Quadrants, canvas_screenshot, pattern_difference, post_input, wait_for};
use support::webdriver::Driver;
use support::{App, LIMIT, Relay, TempDir, dev_pki, join_on_display};

const WIDTH: u16 = 640;
const HEIGHT: u16 = 360;
/// The test pattern: four quadrants.
const QUADRANTS: Quadrants =
    [(0, 0, [220, 30, 30]), (1, 0, [30, 200, 60]), (0, 1, [40, 60, 230]), (1, 1, [240, 220, 40])];

struct Setup {
    // Dropped in this order: the apps, then the relay, then the display.
    provider: App,
    customer: App,
    url: String,
    relay: Relay,
    window: TestWindow,
    xvfb: Xvfb,
    temp: TempDir,
}

fn start(label: &str) -> Setup {
    let temp = TempDir::new(label);
    let xvfb = Xvfb::start(WIDTH, HEIGHT).expect("Xvfb (scripts/setup-x11.sh installs it)");
    let window = TestWindow::open(xvfb.display(), Rect::new(0, 0, WIDTH, HEIGHT)).unwrap();
    for (qx, qy, colour) in QUADRANTS {
        window.fill(Rect::new(qx * WIDTH / 2, qy * HEIGHT / 2, WIDTH / 2, HEIGHT / 2), colour).unwrap();
    }
    window.focus().unwrap();
    let dev = dev_pki(temp.path(), "dev");
    let relay = Relay::start(&dev);
    let (provider, customer, url) = join_on_display(&dev, &relay, xvfb.display());
    Setup { provider, customer, url, relay, window, xvfb, temp }
}

fn grant(setup: &mut Setup, word: &str, what: &str) {
    setup.provider.type_line(&format!("/request {word}"));
    setup.customer.expect(&format!("/allow {word} or /deny {word}"));
    setup.customer.type_line(&format!("/allow {word}"));
    setup.provider.expect(&format!("Grace allowed: {what}"));
}

/// Redraws a strip of the customer's display with changing noise until `stop` (a busy screen).
fn animate(display: &str, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    let window = TestWindow::open(display, Rect::new(0, HEIGHT - 64, WIDTH, 64)).unwrap();
    std::thread::spawn(move || {
        let mut state = 0x2545_F491_4F6C_DD1D_u64;
        let mut pixels = vec![0u8; usize::from(WIDTH) * 64 * 4];
        while !stop.load(Ordering::Relaxed) {
            for byte in &mut pixels {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                *byte = state as u8;
            }
            window.put_image(0, 0, WIDTH, 64, &pixels).unwrap();
            window.sync().unwrap();
            std::thread::sleep(Duration::from_millis(30));
        }
    })
}

fn bytes_in(relay: &Relay) -> u64 {
    relay.metric("lifeline_relay_bytes_in_total")
}

#[test]
fn no_frame_leaves_the_customer_without_view_consent_and_ending_while_streaming_stops_both() {
    let mut setup = start("screen-consent");
    let stop = Arc::new(AtomicBool::new(false));
    let animation = animate(setup.xvfb.display(), stop.clone());

    // Remote control alone (no view): the screen changes all the time, nothing of it is sent.
    grant(&mut setup, "control", "remote control");
    setup.customer.expect("The provider now controls your mouse and keyboard");
    let before = bytes_in(&setup.relay);
    std::thread::sleep(Duration::from_secs(3));
    let idle = bytes_in(&setup.relay) - before;
    assert!(idle < 16 * 1024, "{idle} bytes went through the relay before view was allowed");

    // Allowed: frames flow (the same counter sees them, so the check above could fail).
    grant(&mut setup, "view", "view screen");
    setup.customer.expect("Your screen is being shared");
    let before = bytes_in(&setup.relay);
    std::thread::sleep(Duration::from_secs(2));
    let streaming = bytes_in(&setup.relay) - before;
    assert!(streaming > 200 * 1024, "only {streaming} bytes of screen in 2 s");

    // Taken back: nothing more after the frames already in flight.
    setup.customer.type_line("/revoke view");
    setup.customer.expect("Screen sharing stopped");
    setup.provider.expect("Grace took back: view screen");
    std::thread::sleep(Duration::from_millis(500));
    let before = bytes_in(&setup.relay);
    std::thread::sleep(Duration::from_secs(2));
    let after_revoke = bytes_in(&setup.relay) - before;
    assert!(after_revoke < 16 * 1024, "{after_revoke} bytes went through the relay after view was taken back");

    // Streaming again, then the customer ends the session: both exit cleanly.
    grant(&mut setup, "view", "view screen");
    setup.customer.expect("Your screen is being shared");
    std::thread::sleep(Duration::from_millis(500));
    setup.customer.type_line("/end");
    setup.provider.expect("Session ended by Grace");
    assert_eq!(setup.customer.wait(LIMIT).code(), Some(0));
    assert_eq!(setup.provider.wait(LIMIT).code(), Some(0));
    stop.store(true, Ordering::Relaxed);
    animation.join().unwrap();
    drop(setup.temp);
}

/// The colour the canvas shows at frame position (`x`, `y`) (scaled as shown).
fn canvas_pixel(driver: &Driver, x: usize, y: usize) -> [u8; 3] {
    let (width, height, rgb) = canvas_screenshot(driver).expect("the canvas is laid out");
    let (sx, sy) = (x * width / usize::from(WIDTH), (y * height / usize::from(HEIGHT)).max(1));
    let at = (sy * width + sx) * 3;
    [rgb[at], rgb[at + 1], rgb[at + 2]]
}

/// Whether the red "remote control" bar covers the top of the green quadrant.
fn indicator_shown(driver: &Driver) -> bool {
    let [r, g, _] = canvas_pixel(driver, 480, 1);
    r > 120 && g < 100
}

fn clicks(events: &[Recorded]) -> Vec<(u8, i16, i16)> {
    events
        .iter()
        .filter_map(|e| match *e {
            Recorded::ButtonPress { button, x, y } => Some((button, x, y)),
            _ => None,
        })
        .collect()
}

#[test]
fn the_console_shows_the_customers_screen_and_controls_it_only_while_allowed() {
    let mut setup = start("screen-browser");
    let driver = Driver::start(&setup.temp.path().join("profile"));
    driver.navigate(&setup.url);
    driver.wait_text("members", "Grace");
    driver.wait_text("screen-status", "Not shared");

    // View: asked from the page, allowed at the customer's terminal; the pattern appears.
    driver.click("#requests button[data-capability=\"view_screen\"]");
    setup.customer.expect("/allow view or /deny view");
    setup.customer.type_line("/allow view");
    driver.wait_text("screen-status", "Viewing");
    driver.wait_text("screen-size", &format!("{WIDTH} × {HEIGHT}"));
    let mut worst = u8::MAX;
    wait_for("the test pattern on the canvas", Duration::from_secs(20), || {
        worst = pattern_difference(&driver, &QUADRANTS);
        worst <= 24
    });
    println!("canvas screenshot: worst channel difference {worst}");

    // Input before remote control is allowed: the native side sends nothing.
    assert_eq!(
        post_input(&setup.url, json!([{ "type": "button", "button": 1, "pressed": true, "x": 5, "y": 5 }])),
        202
    );
    let early = setup.window.recorded(Duration::from_millis(800)).unwrap();
    assert!(clicks(&early).is_empty(), "injected before remote control was allowed: {early:?}");

    // Control: a click in the middle of the canvas and typed text arrive in the window.
    driver.click("#requests button[data-capability=\"remote_control\"]");
    setup.customer.expect("/allow control or /deny control");
    setup.customer.type_line("/allow control");
    setup.customer.expect("The provider now controls your mouse and keyboard");
    driver.wait_text("screen-status", "You have control");
    // The red bar on the customer's display, seen through the stream.
    wait_for("the control indicator on the customer's display", Duration::from_secs(20), || indicator_shown(&driver));
    // WebDriver clicks the middle of the element's visible part: have all of it in view.
    driver.script("document.getElementById('screen').scrollIntoView({ block: 'center' }); return null");
    driver.click("#screen");
    driver.type_into("#screen", "Hello, Grace!");
    let mut events = Vec::new();
    wait_for("the click and the text in the window", LIMIT, || {
        events.extend(setup.window.recorded(Duration::from_millis(300)).unwrap());
        setup.window.typed_text(&events).unwrap().contains("Hello, Grace!")
    });
    let pressed = clicks(&events);
    assert!(
        pressed.iter().any(|&(b, x, y)| b == 1 && (i32::from(x) - 320).abs() <= 2 && (i32::from(y) - 180).abs() <= 2),
        "no left click near the middle: {pressed:?}"
    );

    // A consent prompt open: nothing is injected until it is answered.
    driver.click("#requests button[data-capability=\"file_transfer\"]");
    setup.customer.expect("/allow files or /deny files");
    setup.customer.expect("Remote control is paused while you answer");
    driver.wait_text("screen-status", "input paused");
    assert_eq!(
        post_input(
            &setup.url,
            json!([{ "type": "key", "keysym": 0x78, "pressed": true },
        { "type": "key", "keysym": 0x78, "pressed": false }])
        ),
        202
    );
    let during = setup.window.recorded(Duration::from_millis(800)).unwrap();
    assert!(setup.window.typed_text(&during).unwrap().is_empty(), "typed while a prompt was open: {during:?}");
    setup.customer.type_line("/deny files");
    setup.customer.expect("The provider now controls your mouse and keyboard");
    driver.wait_text("screen-status", "You have control");

    // Taken back at the customer's terminal: input right after it is not injected.
    setup.customer.type_line("/revoke control");
    setup.customer.expect("You have control again");
    assert_eq!(
        post_input(
            &setup.url,
            json!([{ "type": "key", "keysym": 0x79, "pressed": true },
        { "type": "key", "keysym": 0x79, "pressed": false }])
        ),
        202
    );
    driver.type_into("#screen", "zzz");
    let after = setup.window.recorded(Duration::from_millis(800)).unwrap();
    assert!(setup.window.typed_text(&after).unwrap().is_empty(), "typed after control was taken back: {after:?}");
    driver.wait_text("screen-status", "Viewing");
    wait_for("the control indicator to go", Duration::from_secs(20), || !indicator_shown(&driver));

    // Allowed again, then the hotkey on the customer's display (Ctrl+Alt+Pause) takes it back.
    driver.click("#requests button[data-capability=\"remote_control\"]");
    setup.customer.expect("/allow control or /deny control");
    setup.customer.type_line("/allow control");
    driver.wait_text("screen-status", "You have control");
    std::thread::sleep(Duration::from_millis(300));
    let mut local = X11Injector::connect(Some(setup.xvfb.display())).unwrap();
    for (keysym, pressed) in
        [(0xffe3, true), (0xffe9, true), (0xff13, true), (0xff13, false), (0xffe9, false), (0xffe3, false)]
    {
        local.inject(&InputEvent::Key { pressed, keysym, code: 0 }).unwrap();
    }
    local.sync().unwrap();
    setup.customer.expect("you took control back");
    setup.provider.expect("Grace took back: remote control");
    driver.wait_text("screen-status", "Viewing");
    let target = Path::new(env!("CARGO_TARGET_TMPDIR")).parent().unwrap().to_owned();
    driver.screenshot(&target.join("desktop-screen-sharing.png"));

    // The customer takes view back: the canvas empties.
    setup.customer.type_line("/revoke view");
    driver.wait_text("screen-status", "Not shared");
    assert_eq!(driver.script("return document.getElementById('screen').width"), json!(0));
    setup.customer.type_line("/end");
    assert_eq!(setup.customer.wait(LIMIT).code(), Some(0));
    assert_eq!(setup.provider.wait(LIMIT).code(), Some(0));
}
