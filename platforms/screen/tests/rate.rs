#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The rate controller against a simulated link: a bottleneck of fixed bandwidth and delay,
//! virtual time in microseconds.

use std::collections::VecDeque;

use lifeline_core::time::{Duration, Instant};
use lifeline_screen::rate::{RateConfig, RateController};

/// Sends frames of `frame_bytes` whenever the controller allows, through a link of
/// `bandwidth` bytes/s and `delay` one way; acks come back after the frame is through.
/// Returns (frames sent per second, final quality, worst queueing delay in µs after the first
/// two seconds).
fn simulate(
    controller: &mut RateController,
    start: u64,
    seconds: u64,
    bandwidth: u64,
    frame_bytes: usize,
) -> (f64, u8, u64) {
    let delay = 20_000u64;
    let mut link_free_at = start;
    let mut acks: VecDeque<(u64, u32)> = VecDeque::new();
    let mut frame = 0u32;
    let mut sent = 0u64;
    let mut worst_queue = 0u64;
    let end = start + seconds * 1_000_000;
    let mut now = start;
    while now < end {
        while acks.front().is_some_and(|(at, _)| *at <= now) {
            let (_, acked) = acks.pop_front().unwrap();
            controller.on_ack(Instant::from_micros(now), acked);
        }
        if controller.poll_capture(Instant::from_micros(now)) {
            let _quality = controller.quality();
            controller.on_sent(Instant::from_micros(now), frame, frame_bytes);
            let begin = link_free_at.max(now);
            if now >= start + 2_000_000 {
                worst_queue = worst_queue.max(begin - now);
            }
            link_free_at = begin + frame_bytes as u64 * 1_000_000 / bandwidth;
            acks.push_back((link_free_at + 2 * delay, frame));
            frame += 1;
            sent += 1;
        }
        now += 1_000;
    }
    (sent as f64 / seconds as f64, controller.estimate().jpeg_quality, worst_queue)
}

#[test]
fn fast_link_runs_at_the_frame_rate_cap() {
    let mut controller = RateController::new(RateConfig::default(), Instant::ZERO);
    let (fps, quality, queue) = simulate(&mut controller, 0, 5, 50_000_000, 20_000);
    assert!((56.0..=61.0).contains(&fps), "fps {fps}");
    assert_eq!(quality, 85);
    assert!(queue < 5_000, "queue {queue}");
}

#[test]
fn slow_link_lowers_rate_and_quality_and_keeps_the_queue_short() {
    let mut controller = RateController::new(RateConfig::default(), Instant::ZERO);
    // 200 kB/s, frames of 50 kB: at most 4 fps fit.
    let (fps, quality, queue) = simulate(&mut controller, 0, 10, 200_000, 50_000);
    assert!((2.5..=4.5).contains(&fps), "fps {fps}");
    assert!(quality < 85, "quality {quality}");
    // Queueing stays near the target delay (150 ms) plus one frame (250 ms), not seconds.
    assert!(queue < 600_000, "queue {queue} us");
    let estimate = controller.estimate();
    assert!((150_000..=260_000).contains(&estimate.rate), "{estimate:?}");
}

#[test]
fn recovers_when_the_link_gets_faster() {
    let mut controller = RateController::new(RateConfig::default(), Instant::ZERO);
    simulate(&mut controller, 0, 10, 200_000, 50_000);
    let low = controller.estimate().jpeg_quality;
    let (fps, quality, _) = simulate(&mut controller, 10_000_000, 20, 20_000_000, 50_000);
    assert!(fps > 25.0, "fps {fps}");
    assert!(quality > low, "quality {quality} after {low}");
}

#[test]
fn lost_acks_do_not_stall_forever() {
    let config = RateConfig::default();
    let mut controller = RateController::new(config, Instant::ZERO);
    // Send whenever allowed; no ack ever comes back.
    let mut frames = 0u32;
    let mut last_sent = 0u64;
    for ms in 0..900u64 {
        let now = Instant::from_millis(ms);
        if controller.poll_capture(now) {
            controller.on_sent(now, frames, 100_000);
            frames += 1;
            last_sent = ms;
        }
    }
    // The window (150 ms at the assumed 1 MB/s) stopped sending after two frames.
    assert_eq!(frames, 2, "frames sent without acks");
    assert!(last_sent < 200);
    // After the ack timeout, sending resumes at a lower estimate.
    let later = Instant::from_millis(last_sent) + config.ack_timeout + Duration::from_millis(1);
    assert!(controller.poll_capture(later));
    assert!(controller.estimate().rate < config.initial_rate);
    assert!(controller.poll_timeout().as_micros() > later.as_micros());
}

#[test]
fn a_quiet_screen_after_a_large_frame_runs_at_the_frame_rate_cap() {
    // A whole desktop first (300 kB), then typing (1.5 kB a frame) on a fast link: the small,
    // app-limited delivery samples must not be taken for a slow link (this ran at ~1 fps once).
    let mut controller = RateController::new(RateConfig::default(), Instant::ZERO);
    simulate(&mut controller, 0, 1, 50_000_000, 300_000);
    // Then a still screen for 3 s: captures, but nothing to send (the sharer reports no frame).
    for ms in 1_000..4_000u64 {
        let _ = controller.poll_capture(Instant::from_micros(ms * 1_000));
    }
    let (fps, _, queue) = simulate(&mut controller, 4_000_000, 10, 50_000_000, 1_500);
    assert!((56.0..=61.0).contains(&fps), "fps {fps}");
    assert!(queue < 5_000, "queue {queue}");
}
