//! The engine's clock: [`lifeline_core::time::Instant`] as microseconds from a fixed tokio origin.

use lifeline_core::time::Instant;

/// Converts between `tokio::time::Instant` and the engine's [`Instant`] (integer microseconds
/// since this clock was made). Using tokio's clock keeps `tokio::time::pause` working in tests.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    origin: tokio::time::Instant,
}

impl Clock {
    /// A clock whose origin is now.
    pub fn new() -> Self {
        Clock { origin: tokio::time::Instant::now() }
    }

    /// The current time for the engine.
    pub fn now(&self) -> Instant {
        self.to_engine(tokio::time::Instant::now())
    }

    /// A tokio instant as the engine sees it (instants before the origin map to the origin).
    pub fn to_engine(&self, at: tokio::time::Instant) -> Instant {
        let micros = at.saturating_duration_since(self.origin).as_micros();
        Instant::from_micros(u64::try_from(micros).unwrap_or(u64::MAX))
    }

    /// An engine instant as a tokio instant, for `sleep_until` (far future on overflow).
    pub fn to_tokio(&self, at: Instant) -> tokio::time::Instant {
        let offset = std::time::Duration::from_micros(at.as_micros());
        self.origin.checked_add(offset).unwrap_or_else(far_future)
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

/// About thirty years from now: "never" for a timer.
pub(crate) fn far_future() -> tokio::time::Instant {
    tokio::time::Instant::now() + std::time::Duration::from_secs(86_400 * 365 * 30)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn conversions_round_trip() {
        let clock = Clock::new();
        assert_eq!(clock.now(), Instant::ZERO);
        tokio::time::advance(std::time::Duration::from_millis(1500)).await;
        assert_eq!(clock.now(), Instant::from_millis(1500));
        let at = Instant::from_secs(7);
        assert_eq!(clock.to_engine(clock.to_tokio(at)), at);
        assert!(clock.to_tokio(Instant::from_micros(u64::MAX)) > tokio::time::Instant::now());
    }
}
