//! New connections per source address: a token bucket per address (IPv6 per /64, since one
//! host usually owns a whole /64), in a table with a bounded size.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

use crate::outbox::lock;

/// Above this many tracked addresses, full buckets (addresses quiet for a while) are forgotten.
const PRUNE_ABOVE: usize = 4096;
/// Hard cap: past it the table is cleared (limits restart from a full burst for everyone).
const MAX_TRACKED: usize = 100_000;

#[derive(Debug)]
pub(crate) struct RateLimiter {
    per_sec: f64,
    burst: f64,
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
}

#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

impl RateLimiter {
    pub(crate) fn new(per_sec: f64, burst: u32) -> RateLimiter {
        RateLimiter { per_sec, burst: f64::from(burst), buckets: Mutex::default() }
    }

    /// Whether a new connection from `addr` is allowed now (and takes a token if so).
    pub(crate) fn allow(&self, addr: IpAddr, now: Instant) -> bool {
        let key = bucket_key(addr);
        let mut buckets = lock(&self.buckets);
        if buckets.len() >= PRUNE_ABOVE && !buckets.contains_key(&key) {
            let (per_sec, burst) = (self.per_sec, self.burst);
            buckets.retain(|_, bucket| refill(bucket, now, per_sec, burst) < burst);
            if buckets.len() >= MAX_TRACKED {
                buckets.clear();
            }
        }
        let bucket = buckets.entry(key).or_insert(Bucket { tokens: self.burst, updated: now });
        let tokens = refill(bucket, now, self.per_sec, self.burst);
        if tokens >= 1.0 {
            bucket.tokens = tokens - 1.0;
            true
        } else {
            false
        }
    }
}

fn refill(bucket: &mut Bucket, now: Instant, per_sec: f64, burst: f64) -> f64 {
    let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
    bucket.tokens = (bucket.tokens + elapsed * per_sec).min(burst);
    bucket.updated = now;
    bucket.tokens
}

fn bucket_key(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V4(_) => addr,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut segments = v6.segments();
                segments[4..].fill(0);
                IpAddr::V6(segments.into())
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn burst_then_rate() {
        let limiter = RateLimiter::new(2.0, 3);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let start = Instant::now();
        assert!((0..3).all(|_| limiter.allow(ip, start)));
        assert!(!limiter.allow(ip, start));
        assert!(limiter.allow("192.0.2.2".parse().unwrap(), start), "other addresses are not affected");
        assert!(limiter.allow(ip, start + Duration::from_millis(500)));
        assert!(!limiter.allow(ip, start + Duration::from_millis(600)));
    }

    #[test]
    fn ipv6_is_limited_per_64() {
        let limiter = RateLimiter::new(1.0, 1);
        let now = Instant::now();
        assert!(limiter.allow("2001:db8::1".parse().unwrap(), now));
        assert!(!limiter.allow("2001:db8::2".parse().unwrap(), now));
        assert!(limiter.allow("2001:db8:0:1::1".parse().unwrap(), now));
    }

    #[test]
    fn the_table_stays_bounded() {
        let limiter = RateLimiter::new(1000.0, 1);
        let mut now = Instant::now();
        for i in 0..20_000u32 {
            now += Duration::from_millis(1);
            limiter.allow(IpAddr::from(i.to_be_bytes()), now);
        }
        assert!(lock(&limiter.buckets).len() <= PRUNE_ABOVE + 1);
    }
}
