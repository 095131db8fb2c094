//! The screen-sharing tests' views of the provider's console: the canvas as Chromium renders
//! it, a test pattern on it, and input posted to the console as the page would.

use std::time::{Duration, Instant};

use serde_json::json;

use super::http_request;
use super::webdriver::Driver;

/// A pattern of four quadrants: (column, row, colour).
pub type Quadrants = [(u16, u16, [u8; 3]); 4];

/// The canvas as Chromium renders it: a JPEG screenshot of its box, decoded to RGB
/// (`(width, height, rgb)`); `None` while the box is not laid out yet.
pub fn canvas_screenshot(driver: &Driver) -> Option<(usize, usize, Vec<u8>)> {
    use base64::Engine as _;
    driver.script("window.scrollTo(0, 0); return null");
    let rect = driver.script(
        "const r = document.getElementById('screen').getBoundingClientRect(); \
         return [r.left + window.scrollX, r.top + window.scrollY, r.width, r.height]",
    );
    let rect: Vec<f64> = rect.as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    if rect[2] < 50.0 || rect[3] < 50.0 {
        return None;
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
    Some((width, height, rgb))
}

/// The worst channel difference between the canvas and `pattern` at the middle of each
/// quadrant, as shown (scaled); `u8::MAX` while there is no canvas.
pub fn pattern_difference(driver: &Driver, pattern: &Quadrants) -> u8 {
    let Some((width, height, rgb)) = canvas_screenshot(driver) else { return u8::MAX };
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

/// Polls `check` every 100 ms; fails the test if it is not true within `limit`.
pub fn wait_for(what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
    let started = Instant::now();
    while !check() {
        assert!(started.elapsed() < limit, "{what} did not happen within {limit:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Input sent straight to the console's input route (`url` is the console's, with its token),
/// as the page would: the HTTP status.
pub fn post_input(url: &str, events: serde_json::Value) -> u16 {
    let port: u16 = url.trim_start_matches("http://127.0.0.1:").split('/').next().unwrap().parse().unwrap();
    let token = url.split("?t=").nth(1).unwrap();
    let origin = format!("http://127.0.0.1:{port}");
    let body = json!({ "events": events }).to_string();
    let headers = [("X-Lifeline-Token", token), ("Origin", origin.as_str()), ("Content-Type", "application/json")];
    http_request(port, "POST", "/api/input", &headers, &body).0
}
