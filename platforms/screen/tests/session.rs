#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Sharer and viewer together, over a lossy in-memory channel, with a capturer that serves
//! frames from memory.

use std::cell::RefCell;
use std::rc::Rc;

use lifeline_core::time::{Duration, Instant};
use lifeline_screen::backend::{BackendError, Capturer, CursorImage, Monitor};
use lifeline_screen::codec::{EncoderConfig, Limits};
use lifeline_screen::frame::{Frame, Rect};
use lifeline_screen::rate::RateConfig;
use lifeline_screen::session::{Sharer, Viewer, ViewerEvent};

#[derive(Clone)]
struct MemoryScreen {
    frame: Rc<RefCell<Frame>>,
    pointer: Rc<RefCell<(i16, i16)>>,
}

impl Capturer for MemoryScreen {
    fn monitors(&mut self) -> Result<Vec<Monitor>, BackendError> {
        let frame = self.frame.borrow();
        Ok(vec![Monitor { x: 0, y: 0, width: frame.width(), height: frame.height(), primary: true, name: "M".into() }])
    }

    fn capture(&mut self, _monitor: &Monitor, frame: &mut Frame) -> Result<(), BackendError> {
        *frame = self.frame.borrow().clone();
        Ok(())
    }

    fn cursor(&mut self) -> Result<CursorImage, BackendError> {
        let (x, y) = *self.pointer.borrow();
        Ok(CursorImage { x, y, serial: 1, hot_x: 0, hot_y: 0, width: 2, height: 2, rgba: vec![255; 16] })
    }
}

fn screen() -> MemoryScreen {
    let mut frame = Frame::new(320, 200);
    frame.fill(Rect::new(0, 0, 320, 200), [10, 20, 30]);
    for x in (0..300).step_by(7) {
        frame.fill(Rect::new(x, 50, 3, 9), [250, 250, 250]);
    }
    MemoryScreen { frame: Rc::new(RefCell::new(frame)), pointer: Rc::new(RefCell::new((5, 6))) }
}

/// Runs `steps` ticks of 10 ms; `drop_update(n)` drops the n-th Update payload in transit.
fn run(
    sharer: &mut Sharer<MemoryScreen>,
    viewer: &mut Viewer,
    start: u64,
    steps: u64,
    mut drop_update: impl FnMut(usize) -> bool,
    updates: &mut usize,
) {
    for tick in 0..steps {
        let now = Instant::from_millis(start + tick * 10);
        let mut out = Vec::new();
        sharer.poll_transmit(now, &mut out).unwrap();
        let mut replies = Vec::new();
        for payload in out {
            if payload[0] == 0x01 {
                *updates += 1;
                if drop_update(*updates) {
                    continue;
                }
            }
            viewer.handle_payload(now, &payload, &mut replies).unwrap();
        }
        for reply in replies {
            assert!(sharer.handle_message(now, &reply));
        }
    }
}

#[test]
fn viewer_follows_the_sharer_with_acks_layout_and_cursor() {
    let screen = screen();
    let config = EncoderConfig::default();
    let mut sharer = Sharer::new(screen.clone(), config, RateConfig::default(), Instant::ZERO).unwrap();
    let mut viewer = Viewer::new(Limits::default());
    let mut updates = 0;
    run(&mut sharer, &mut viewer, 0, 5, |_| false, &mut updates);
    assert_eq!(viewer.monitors().len(), 1);
    assert_eq!((viewer.cursor().x, viewer.cursor().y), (5, 6));
    assert!(viewer.cursor().shape.is_some());
    assert_eq!(viewer.frame().max_channel_difference(&screen.frame.borrow()), Some(0));

    screen.frame.borrow_mut().fill(Rect::new(100, 100, 30, 30), [1, 2, 3]);
    *screen.pointer.borrow_mut() = (50, 60);
    run(&mut sharer, &mut viewer, 50, 5, |_| false, &mut updates);
    assert_eq!(viewer.frame().max_channel_difference(&screen.frame.borrow()), Some(0));
    assert_eq!((viewer.cursor().x, viewer.cursor().y), (50, 60));
    // Acks came back: nothing stays in flight.
    assert_eq!(sharer.estimate().in_flight, 0);
    assert_eq!(updates, 2, "one refresh, one change; a still screen sends no update");
}

#[test]
fn a_lost_update_is_repaired_by_a_refresh() {
    let screen = screen();
    let mut sharer =
        Sharer::new(screen.clone(), EncoderConfig::default(), RateConfig::default(), Instant::ZERO).unwrap();
    let mut viewer = Viewer::new(Limits::default());
    let mut updates = 0;
    run(&mut sharer, &mut viewer, 0, 3, |_| false, &mut updates);
    // The second update is lost in transit, the third arrives: the viewer asks for a refresh.
    screen.frame.borrow_mut().fill(Rect::new(0, 0, 40, 40), [200, 0, 0]);
    run(&mut sharer, &mut viewer, 30, 4, |n| n == 2, &mut updates);
    screen.frame.borrow_mut().fill(Rect::new(200, 150, 40, 40), [0, 200, 0]);
    run(&mut sharer, &mut viewer, 70, 20, |n| n == 2, &mut updates);
    assert_eq!(viewer.frame().max_channel_difference(&screen.frame.borrow()), Some(0));
    assert!(updates >= 4, "a refresh frame followed: {updates}");
}

#[test]
fn garbage_from_the_network_is_refused() {
    let mut viewer = Viewer::new(Limits { max_width: 64, max_height: 64 });
    let mut replies = Vec::new();
    assert!(viewer.handle_payload(Instant::ZERO, &[0x01, 0, 0], &mut replies).is_err());
    // A frame beyond the limits: refused, and the viewer asks for a refresh (rate-limited).
    let huge = [0x01, 0, 0, 0, 0, 0, 0, 0, 0x03, 0x10, 0x00, 0x10, 0x00, 0x02, 0, 0, 0, 0, 0, 1, 0, 1, 1, 2, 3];
    assert!(viewer.handle_payload(Instant::ZERO, &huge, &mut replies).is_err());
    assert!(viewer.handle_payload(Instant::from_millis(10), &huge, &mut replies).is_err());
    assert_eq!(replies, vec![vec![0x11, 0x00]]);
    let later = Instant::ZERO + Duration::from_millis(600);
    assert!(viewer.handle_payload(later, &huge, &mut replies).is_err());
    assert_eq!(replies.len(), 2);
    let mut sharer = Sharer::new(screen(), EncoderConfig::default(), RateConfig::default(), Instant::ZERO).unwrap();
    assert!(!sharer.handle_message(Instant::ZERO, &[0x01]));
    assert!(!sharer.handle_message(Instant::ZERO, &[0x04, 1, 0, 0, 0, 0x61, 0, 0]));
    let _ = ViewerEvent::Ignored;
}

/// Two monitors side by side, each a plain colour with a small square that changes every capture.
struct TwoMonitors(u8);

impl Capturer for TwoMonitors {
    fn monitors(&mut self) -> Result<Vec<Monitor>, BackendError> {
        Ok(vec![
            Monitor { x: 0, y: 0, width: 160, height: 100, primary: true, name: "LEFT".into() },
            Monitor { x: 160, y: 0, width: 120, height: 80, primary: false, name: "RIGHT".into() },
        ])
    }

    fn capture(&mut self, monitor: &Monitor, frame: &mut Frame) -> Result<(), BackendError> {
        let mut captured = Frame::new(monitor.width, monitor.height);
        let colour = if monitor.x == 0 { [200, 0, 0] } else { [0, 0, 200] };
        captured.fill(Rect::new(0, 0, monitor.width, monitor.height), colour);
        self.0 = self.0.wrapping_add(1);
        captured.fill(Rect::new(100, 60, 10, 10), [self.0, self.0, self.0]);
        *frame = captured;
        Ok(())
    }

    fn cursor(&mut self) -> Result<CursorImage, BackendError> {
        Ok(CursorImage { x: 0, y: 0, serial: 1, hot_x: 0, hot_y: 0, width: 1, height: 1, rgba: vec![255; 4] })
    }
}

#[test]
fn the_viewer_picks_the_monitor_and_the_sharer_switches() {
    let mut sharer =
        Sharer::new(TwoMonitors(0), EncoderConfig::default(), RateConfig::default(), Instant::ZERO).unwrap();
    let mut viewer = Viewer::new(Limits::default());
    let mut replies = Vec::new();
    let mut deliver = |sharer: &mut Sharer<TwoMonitors>, viewer: &mut Viewer, now: Instant| {
        let mut out = Vec::new();
        sharer.poll_transmit(now, &mut out).unwrap();
        for payload in out {
            viewer.handle_payload(now, &payload, &mut replies).unwrap();
        }
        for reply in replies.drain(..) {
            assert!(sharer.handle_message(now, &reply));
        }
    };
    deliver(&mut sharer, &mut viewer, Instant::ZERO);
    assert_eq!(viewer.monitors().len(), 2);
    assert_eq!((viewer.monitor(), viewer.frame().width(), viewer.frame().rgb(5, 5)), (0, 160, Some([200, 0, 0])));

    // The viewer asks for the second monitor; an update of the first still in flight is dropped.
    let mut stale = Vec::new();
    sharer.poll_transmit(Instant::from_millis(40), &mut stale).unwrap();
    let refresh = viewer.select_monitor(Instant::from_millis(40), 1).unwrap();
    assert_eq!(refresh, [0x11, 0x01]);
    let mut ignored = Vec::new();
    for payload in &stale {
        let event = viewer.handle_payload(Instant::from_millis(41), payload, &mut ignored).unwrap();
        if payload[0] == 0x01 {
            assert_eq!(event, ViewerEvent::Ignored);
        }
    }
    assert_eq!(viewer.frame().width(), 160, "still the first monitor's frame");
    assert!(sharer.estimate().in_flight > 0, "the stale update was never acknowledged");
    assert!(sharer.handle_message(Instant::from_millis(42), &refresh));
    assert_eq!(sharer.monitor(), 1);
    // The old monitor's frames in flight are forgotten: no wait for the ack timeout.
    assert_eq!(sharer.estimate().in_flight, 0);
    deliver(&mut sharer, &mut viewer, Instant::from_millis(80));
    assert_eq!((viewer.monitor(), viewer.frame().width(), viewer.frame().rgb(5, 5)), (1, 120, Some([0, 0, 200])));

    // A monitor the sharer does not have: refused by both ends, nothing changes.
    assert_eq!(viewer.select_monitor(Instant::from_millis(90), 2), None);
    assert!(!sharer.handle_message(Instant::from_millis(90), &[0x11, 0x07]));
    assert_eq!(sharer.monitor(), 1);
}
