//! Adaptive frame rate and quality from the viewer's acknowledgements. Sans-I/O: the caller
//! passes the time to every call; nothing here reads a clock.
//!
//! The sharer reports every frame it sends ([`RateController::on_sent`]) and every `Ack` it
//! receives ([`RateController::on_ack`]); before capturing it asks
//! [`RateController::poll_capture`], and sleeps until [`RateController::poll_timeout`].
//!
//! - **Delivery rate**: bytes acknowledged between acks at least 50 ms apart; the estimate is
//!   the largest such sample of the last two seconds (BBR's max filter: a quiet screen sends
//!   little and must not be mistaken for a slow link).
//! - **In flight**: bytes sent and not yet acknowledged. No frame is captured while it exceeds
//!   `rate × target_delay` (at least 64 KB): frames are skipped instead of queueing in the
//!   relay, which keeps latency low; the next frame carries all changes since the last one.
//!   If no ack arrives for `ack_timeout` with data in flight, it counts as lost: the estimate is
//!   halved and sending resumes.
//! - **Interval**: the shortest interval (60 fps by default) while less than half the window
//!   is in flight (the link keeps up: a quiet, app-limited screen is not paced by its own small
//!   delivery samples); otherwise the shortest interval unless the average frame
//!   (exponential average of bytes per frame) at that rate would exceed 1.25 × the delivery
//!   rate; then `average / (1.25 × rate)`, up to `max_interval`. The 25 % above the estimate is
//!   the probe (as BBR's pacing gain): on a link with spare capacity the next samples are
//!   larger and the rate climbs; on a saturated link the in-flight limit skips frames instead.
//! - **Quality**: JPEG quality falls by 10 (at most every 500 ms) while the link affords fewer
//!   than `target_fps` frames of the current average size, and rises by 5 (at most every 2 s)
//!   while it affords at least twice that or frames already go at the
//!   shortest interval with the in-flight data under half its limit. Refinement of lossy tiles is allowed only while
//!   the in-flight data is below half its limit.

use std::collections::VecDeque;

use lifeline_core::time::{Duration, Instant};

use crate::codec::Quality;

/// Controller settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateConfig {
    /// Shortest frame interval (16.7 ms: 60 fps).
    pub min_interval: Duration,
    /// Longest frame interval while something changes (1 s).
    pub max_interval: Duration,
    /// How much sending may run ahead of acknowledgements, as time at the delivery rate (150 ms).
    pub target_delay: Duration,
    /// Frame rate below which quality is lowered (15).
    pub target_fps: u32,
    /// No ack for this long with data in flight: assume it was lost (1 s).
    pub ack_timeout: Duration,
    /// Delivery rate assumed before the first measurement, bytes per second (1 MB/s).
    pub initial_rate: u64,
    /// Lowest JPEG quality (25).
    pub min_quality: u8,
    /// Highest JPEG quality (85).
    pub max_quality: u8,
    /// Lossy tiles re-sent per calm frame (32).
    pub refine_tiles: usize,
}

impl Default for RateConfig {
    fn default() -> Self {
        RateConfig {
            min_interval: Duration::from_micros(16_667),
            max_interval: Duration::from_secs(1),
            target_delay: Duration::from_millis(150),
            target_fps: 15,
            ack_timeout: Duration::from_secs(1),
            initial_rate: 1_000_000,
            min_quality: 25,
            max_quality: 85,
            refine_tiles: 32,
        }
    }
}

/// The controller's current view, for display and logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Estimate {
    /// Delivery rate, bytes per second.
    pub rate: u64,
    /// Bytes sent and not acknowledged.
    pub in_flight: u64,
    /// Current frame interval.
    pub interval: Duration,
    /// Current JPEG quality.
    pub jpeg_quality: u8,
    /// Average bytes per frame.
    pub average_frame: u64,
}

/// Picks when to capture and at which quality.
#[derive(Debug)]
pub struct RateController {
    config: RateConfig,
    /// (frame, total bytes sent including it, when)
    sent: VecDeque<(u32, u64, Instant)>,
    total_sent: u64,
    total_acked: u64,
    /// (when, total acked) of the last ack used as a sample start.
    sample_start: Option<(Instant, u64)>,
    /// (when, rate) samples of the last two seconds.
    samples: VecDeque<(Instant, u64)>,
    rate: u64,
    average_frame: u64,
    quality: u8,
    last_capture: Option<Instant>,
    last_ack: Instant,
    last_quality_change: Instant,
}

const SAMPLE_MIN_SPAN: u64 = 50_000;
const SAMPLE_WINDOW: u64 = 2_000_000;
const MIN_WINDOW: u64 = 64 * 1024;

impl RateController {
    /// A controller starting at `now`.
    pub fn new(config: RateConfig, now: Instant) -> RateController {
        RateController {
            config,
            sent: VecDeque::new(),
            total_sent: 0,
            total_acked: 0,
            sample_start: None,
            samples: VecDeque::new(),
            rate: config.initial_rate.max(1),
            average_frame: 0,
            quality: config.max_quality,
            last_capture: None,
            last_ack: now,
            last_quality_change: now,
        }
    }

    /// A frame of `bytes` payload bytes was sent.
    pub fn on_sent(&mut self, now: Instant, frame: u32, bytes: usize) {
        self.total_sent += bytes as u64;
        if self.sent.is_empty() {
            self.last_ack = now;
        }
        self.sent.push_back((frame, self.total_sent, now));
        // Bounded: a viewer that never acks cannot grow this (frames stop at the window anyway).
        while self.sent.len() > 1024 {
            self.sent.pop_front();
        }
        self.average_frame =
            if self.average_frame == 0 { bytes as u64 } else { (self.average_frame * 7 + bytes as u64) / 8 };
    }

    /// The viewer acknowledged `frame` (and everything before it).
    pub fn on_ack(&mut self, now: Instant, frame: u32) {
        let mut acked = None;
        while let Some(&(sent_frame, total, _)) = self.sent.front() {
            // Wrapping comparison: frames at most 2^31 behind count as acknowledged.
            if frame.wrapping_sub(sent_frame) < 1 << 31 {
                acked = Some(total);
                self.sent.pop_front();
            } else {
                break;
            }
        }
        let Some(total) = acked else { return };
        self.total_acked = self.total_acked.max(total);
        self.last_ack = now;
        match self.sample_start {
            None => self.sample_start = Some((now, self.total_acked)),
            Some((start, bytes)) => {
                let span = now.saturating_duration_since(start).as_micros();
                if span >= SAMPLE_MIN_SPAN {
                    let sample = (self.total_acked - bytes) * 1_000_000 / span;
                    self.samples.push_back((now, sample));
                    self.sample_start = Some((now, self.total_acked));
                }
            }
        }
        while self.samples.front().is_some_and(|(at, _)| now.saturating_duration_since(*at).as_micros() > SAMPLE_WINDOW)
        {
            self.samples.pop_front();
        }
        if let Some(max) = self.samples.iter().map(|(_, rate)| *rate).max() {
            self.rate = max.max(1);
        }
        self.adjust_quality(now);
    }

    /// Whether to capture and send a frame now. Call [`RateController::on_sent`] after sending
    /// (or nothing, if the frame had no changes).
    pub fn poll_capture(&mut self, now: Instant) -> bool {
        self.check_ack_timeout(now);
        if self.in_flight() > self.window() {
            return false;
        }
        let due = self.last_capture.is_none_or(|last| now.saturating_duration_since(last) >= self.interval());
        if due {
            self.last_capture = Some(now);
        }
        due
    }

    /// When to call [`RateController::poll_capture`] next.
    pub fn poll_timeout(&self) -> Instant {
        match self.last_capture {
            None => self.last_ack,
            Some(last) if self.in_flight() > self.window() => {
                (last + self.interval()).max_with(self.last_ack + self.config.ack_timeout)
            }
            Some(last) => last + self.interval(),
        }
    }

    /// Settings for the next frame.
    pub fn quality(&self) -> Quality {
        Quality {
            lossy: true,
            jpeg_quality: self.quality,
            refine_tiles: if self.in_flight() * 2 < self.window() { self.config.refine_tiles } else { 0 },
        }
    }

    /// The current estimates.
    pub fn estimate(&self) -> Estimate {
        Estimate {
            rate: self.rate,
            in_flight: self.in_flight(),
            interval: self.interval(),
            jpeg_quality: self.quality,
            average_frame: self.average_frame,
        }
    }

    fn in_flight(&self) -> u64 {
        self.total_sent - self.total_acked.min(self.total_sent)
    }

    fn window(&self) -> u64 {
        (self.rate * self.config.target_delay.as_micros() / 1_000_000).max(MIN_WINDOW)
    }

    fn interval(&self) -> Duration {
        let min = self.config.min_interval.as_micros();
        if self.in_flight() * 2 < self.window() {
            // The link keeps up (less than half the window unacknowledged): nothing to pace.
            // Without this, a quiet screen (typing: a kilobyte or two a frame) is app-limited,
            // its small delivery samples look like a slow link, and a large frame earlier in the
            // average stretched the interval to ~1 s, where it stayed for tens of seconds
            // (measured: 1 fps while typing through the whole chain).
            return self.config.min_interval;
        }
        // Paced 25 % above the estimate, so that spare capacity shows up in the next samples
        // (the in-flight limit, not the interval, is what keeps a saturated link's queue short).
        let needed = self.average_frame * 1_000_000 * 4 / (self.rate.max(1) * 5);
        Duration::from_micros(needed.clamp(min, self.config.max_interval.as_micros().max(min)))
    }

    /// Running at the shortest interval with the window less than half full: the link is
    /// not what limits us.
    fn at_frame_rate_cap(&self) -> bool {
        self.interval() == self.config.min_interval && self.in_flight() * 2 < self.window()
    }

    fn check_ack_timeout(&mut self, now: Instant) {
        if self.in_flight() > 0 && now.saturating_duration_since(self.last_ack) >= self.config.ack_timeout {
            // Whatever is in flight is lost (or the viewer is gone): forget it, slow down.
            self.total_acked = self.total_sent;
            self.sent.clear();
            self.sample_start = None;
            self.samples.clear();
            self.rate = (self.rate / 2).max(1);
            self.last_ack = now;
            self.quality = self.quality.saturating_sub(10).max(self.config.min_quality);
        }
    }

    fn adjust_quality(&mut self, now: Instant) {
        if self.average_frame == 0 {
            return;
        }
        let affordable_fps = self.rate / self.average_frame.max(1);
        let since = now.saturating_duration_since(self.last_quality_change).as_micros();
        let target = u64::from(self.config.target_fps);
        if affordable_fps < target && since >= 500_000 && self.quality > self.config.min_quality {
            self.quality = self.quality.saturating_sub(10).max(self.config.min_quality);
            self.last_quality_change = now;
        } else if (affordable_fps >= 2 * target || self.at_frame_rate_cap())
            && since >= 2_000_000
            && self.quality < self.config.max_quality
        {
            self.quality = (self.quality + 5).min(self.config.max_quality);
            self.last_quality_change = now;
        }
    }
}

trait MaxWith {
    fn max_with(self, other: Self) -> Self;
}

impl MaxWith for Instant {
    fn max_with(self, other: Instant) -> Instant {
        if self.as_micros() >= other.as_micros() { self } else { other }
    }
}
