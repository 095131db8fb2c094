//! Several monitors (issue 7): the customer's display is split into two RandR 1.5 monitors, each
//! with its own pattern. With real processes on loopback (`lifeline-relay`, `lifeline support`,
//! `lifeline join` on a private Xvfb) and the provider's console in headless Chromium:
//! - the console lists both monitors (size, primary) and shows the primary one first;
//! - choosing the second in the console switches the customer's capture: its pattern appears on
//!   the canvas (a Chromium screenshot, within a tolerance), and a click on the canvas lands on
//!   the second monitor of the customer's desktop;
//! - a monitor the customer does not have is ignored there, with a line saying so.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::{Duration, Instant};

use lifeline_screen::frame::Rect;
use lifeline_screen::xvfb::{Recorded, TestWindow, Xvfb};
use serde_json::json;
use support::webdriver::Driver;
use support::{LIMIT, Relay, TempDir, dev_pki, http_request, join_on_display};

/// The primary monitor, at the left.
const LEFT: Rect = Rect { x: 0, y: 0, width: 480, height: 300 };
/// The second monitor, to its right, smaller.
const RIGHT: Rect = Rect { x: 480, y: 0, width: 400, height: 240 };
/// Left monitor: four quadrants.
const LEFT_PATTERN: [(u16, u16, [u8; 3]); 4] =
    [(0, 0, [220, 30, 30]), (1, 0, [30, 200, 60]), (0, 1, [40, 60, 230]), (1, 1, [240, 220, 40])];
/// Right monitor: other colours in the same places.
const RIGHT_PATTERN: [(u16, u16, [u8; 3]); 4] =
    [(0, 0, [230, 40, 220]), (1, 0, [40, 220, 230]), (0, 1, [250, 140, 20]), (1, 1, [250, 250, 250])];

/// The canvas as Chromium renders it: a JPEG screenshot of its box, decoded to RGB.
fn canvas_screenshot(driver: &Driver) -> (usize, usize, Vec<u8>) {
    use base64::Engine as _;
    driver.script("window.scrollTo(0, 0); return null");
    let rect = driver.script(
        "const r = document.getElementById('screen').getBoundingClientRect(); \
         return [r.left + window.scrollX, r.top + window.scrollY, r.width, r.height]",
    );
    let rect: Vec<f64> = rect.as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    if rect[2] < 50.0 || rect[3] < 50.0 {
        return (0, 0, Vec::new());
    }
    let shot = driver.cmd(
        "POST",
        "/goog/cdp/execute",
        Some(json!({ "cmd": "Page.captureScreenshot", "params": {
            "format": "jpeg", "quality": 95, "captureBeyondViewport": true,
            "clip": { "x": rect[0], "y": rect[1], "width": rect[2], "height": rect[3], "scale": 1 },
        }})),
    );
    let jpeg = base64::engine::general_purpose::STANDARD.decode(shot["data"].as_str().unwrap()).unwrap();
    let mut decoder = zune_jpeg::JpegDecoder::new(zune_jpeg::zune_core::bytestream::ZCursor::new(&jpeg[..]));
    let rgb = decoder.decode().unwrap();
    let (width, height) = decoder.dimensions().unwrap();
    (width, height, rgb)
}

/// The worst channel difference between the canvas and `pattern` at the middle of each quadrant.
fn pattern_difference(driver: &Driver, pattern: &[(u16, u16, [u8; 3]); 4]) -> u8 {
    let (width, height, rgb) = canvas_screenshot(driver);
    if width == 0 {
        return u8::MAX;
    }
    let mut worst = 0;
    for &(qx, qy, colour) in pattern {
        let x = (usize::from(qx) * 2 + 1) * width / 4;
        let y = (usize::from(qy) * 2 + 1) * height / 4;
        let at = (y * width + x) * 3;
        for c in 0..3 {
            worst = worst.max(rgb[at + c].abs_diff(colour[c]));
        }
    }
    worst
}

fn wait_for(what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
    let started = Instant::now();
    while !check() {
        assert!(started.elapsed() < limit, "{what} did not happen within {limit:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Input sent straight to the console's input route, as the page would.
fn post_input(url: &str, events: serde_json::Value) -> u16 {
    let port: u16 = url.trim_start_matches("http://127.0.0.1:").split('/').next().unwrap().parse().unwrap();
    let token = url.split("?t=").nth(1).unwrap();
    let origin = format!("http://127.0.0.1:{port}");
    let body = json!({ "events": events }).to_string();
    let headers = [("X-Lifeline-Token", token), ("Origin", origin.as_str()), ("Content-Type", "application/json")];
    http_request(port, "POST", "/api/input", &headers, &body).0
}

fn draw(window: &TestWindow, monitor: Rect, pattern: &[(u16, u16, [u8; 3]); 4]) {
    let (w, h) = (monitor.width / 2, monitor.height / 2);
    for &(qx, qy, colour) in pattern {
        window.fill(Rect::new(monitor.x + qx * w, monitor.y + qy * h, w, h), colour).unwrap();
    }
}

#[test]
fn the_console_lists_the_customers_monitors_and_switches_to_the_second() {
    let temp = TempDir::new("screen-monitors");
    let xvfb = Xvfb::start(RIGHT.x + RIGHT.width, LEFT.height).expect("Xvfb (scripts/setup-x11.sh installs it)");
    xvfb.set_monitors(&[("LEFT", LEFT, true), ("RIGHT", RIGHT, false)]).unwrap();
    let window = TestWindow::open(xvfb.display(), Rect::new(0, 0, RIGHT.x + RIGHT.width, LEFT.height)).unwrap();
    window.fill(Rect::new(0, 0, RIGHT.x + RIGHT.width, LEFT.height), [0, 0, 0]).unwrap();
    draw(&window, LEFT, &LEFT_PATTERN);
    draw(&window, RIGHT, &RIGHT_PATTERN);
    window.focus().unwrap();
    window.sync().unwrap();

    let dev = dev_pki(temp.path(), "dev");
    let relay = Relay::start(&dev);
    let (mut provider, mut customer, url) = join_on_display(&dev, &relay, xvfb.display());

    let driver = Driver::start(&temp.path().join("profile"));
    driver.navigate(&url);
    driver.wait_text("members", "Grace");
    driver.click("#requests button[data-capability=\"view_screen\"]");
    customer.expect("/allow view or /deny view");
    customer.type_line("/allow view");
    customer.expect("Your screen is being shared");

    // The primary monitor first; both listed, the shown one pressed.
    driver.wait_text("screen-size", "480 × 300");
    driver.wait_text("screen-monitors", "Monitor 1 · 480 × 300 · primary");
    driver.wait_text("screen-monitors", "Monitor 2 · 400 × 240");
    let pressed = "return [...document.querySelectorAll('#screen-monitors button')]\
                   .map(b => b.getAttribute('aria-pressed')).join()";
    assert_eq!(driver.script(pressed), json!("true,false"));
    wait_for("the left monitor's pattern", Duration::from_secs(20), || {
        pattern_difference(&driver, &LEFT_PATTERN) <= 24
    });

    // Switched in the console: the customer's app says so, the second pattern appears.
    driver.click("#screen-monitors button[data-monitor=\"1\"]");
    customer.expect("The provider now sees monitor 2 of 2 (400 × 240)");
    // The customer's status says which monitor is shared.
    customer.type_line("/status");
    customer.expect("screen shared (monitor 2 of 2)");
    driver.wait_text("screen-size", "400 × 240");
    wait_for("the right monitor's pattern", Duration::from_secs(20), || {
        pattern_difference(&driver, &RIGHT_PATTERN) <= 24
    });
    assert_eq!(driver.script(pressed), json!("false,true"));

    // Input maps to the shown monitor: a click in the middle of the canvas lands in the middle
    // of the right monitor on the customer's desktop.
    driver.click("#requests button[data-capability=\"remote_control\"]");
    customer.expect("/allow control or /deny control");
    customer.type_line("/allow control");
    driver.wait_text("screen-status", "You have control");
    // The red control bar covers the top of the shown monitor: wait for the canvas to settle.
    std::thread::sleep(Duration::from_millis(500));
    driver.script("document.getElementById('screen').scrollIntoView({ block: 'center' }); return null");
    driver.click("#screen");
    let mut clicks = Vec::new();
    wait_for("the click on the customer's display", LIMIT, || {
        for event in window.recorded(Duration::from_millis(300)).unwrap() {
            if let Recorded::ButtonPress { button, x, y } = event {
                clicks.push((button, x, y));
            }
        }
        !clicks.is_empty()
    });
    let (mx, my) = (i32::from(RIGHT.x + RIGHT.width / 2), i32::from(RIGHT.height / 2));
    assert!(
        clicks.iter().any(|&(b, x, y)| b == 1 && (i32::from(x) - mx).abs() <= 2 && (i32::from(y) - my).abs() <= 2),
        "no left click near ({mx}, {my}): {clicks:?}"
    );

    // A monitor the customer does not have: ignored there, said so; the view stays.
    assert_eq!(post_input(&url, json!([{ "type": "monitor", "index": 5 }])), 202);
    customer.expect("The provider asked for monitor 6 but this screen has 2: ignored.");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(driver.script("return document.getElementById('screen-size').textContent"), json!("400 × 240"));

    // And back to the primary.
    driver.click("#screen-monitors button[data-monitor=\"0\"]");
    customer.expect("The provider now sees monitor 1 of 2 (480 × 300)");
    driver.wait_text("screen-size", "480 × 300");

    customer.type_line("/end");
    provider.expect("Session ended by Grace");
    assert_eq!(customer.wait(LIMIT).code(), Some(0));
    assert_eq!(provider.wait(LIMIT).code(), Some(0));
    drop(relay);
    drop(xvfb);
}
