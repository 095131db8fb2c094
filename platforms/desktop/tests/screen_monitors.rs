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

use std::time::Duration;

use lifeline_screen::frame::Rect;
use lifeline_screen::xvfb::{Recorded, TestWindow, Xvfb};
use serde_json::json;
use support::screen::{Quadrants, pattern_difference, post_input, wait_for};
use support::webdriver::Driver;
use support::{LIMIT, Relay, TempDir, dev_pki, join_on_display};

/// The primary monitor, at the left.
const LEFT: Rect = Rect { x: 0, y: 0, width: 480, height: 300 };
/// The second monitor, to its right, smaller.
const RIGHT: Rect = Rect { x: 480, y: 0, width: 400, height: 240 };
/// Left monitor: four quadrants.
const LEFT_PATTERN: Quadrants =
    [(0, 0, [220, 30, 30]), (1, 0, [30, 200, 60]), (0, 1, [40, 60, 230]), (1, 1, [240, 220, 40])];
/// Right monitor: other colours in the same places.
const RIGHT_PATTERN: Quadrants =
    [(0, 0, [230, 40, 220]), (1, 0, [40, 220, 230]), (0, 1, [250, 140, 20]), (1, 1, [250, 250, 250])];

fn draw(window: &TestWindow, monitor: Rect, pattern: &Quadrants) {
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
