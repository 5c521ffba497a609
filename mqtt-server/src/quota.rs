//! Rate limits: messages and bytes a client may publish per second
//! (`max_publish_rate`, `max_publish_bytes_rate`), and new connections a
//! listener accepts per second (`max_connection_rate`).
//!
//! Each is a token bucket that holds at most one second's worth of tokens,
//! so a client may burst up to its rate and then goes at the rate.
//!
//! A client over its publish quota is throttled, not disconnected: its
//! connection task stops decoding (and so reading from the socket) until
//! the buckets have refilled; TCP flow control then slows the client down.
//! A message is let through whenever the bucket is not in debt, and takes
//! its tokens even if that puts the bucket in debt, so a message larger
//! than one second's byte quota still passes, and waits afterwards are
//! short: the keep-alive of a throttled client does not expire.

use std::time::{Duration, Instant};

use crate::config::Config;

/// Tokens refilled at `rate` per second, at most `rate` held.
#[derive(Debug, Clone)]
pub(crate) struct TokenBucket {
    rate: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket of `rate` tokens per second; `rate` > 0.
    pub(crate) fn new(rate: u64, now: Instant) -> Self {
        let rate = rate as f64;
        Self {
            rate,
            tokens: rate.max(1.0),
            last: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.rate.max(1.0));
    }

    /// Takes `n` tokens, into debt if need be.
    pub(crate) fn take(&mut self, n: u64, now: Instant) {
        self.refill(now);
        self.tokens -= n as f64;
    }

    /// Takes one token if one is there.
    pub(crate) fn try_take_one(&mut self, now: Instant) -> bool {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// When the bucket is out of debt again; `None` if it is now.
    pub(crate) fn ready_at(&mut self, now: Instant) -> Option<Instant> {
        self.refill(now);
        if self.tokens >= 0.0 {
            None
        } else {
            // A little past the exact instant, so that the refill at wake-up
            // is not a hair short.
            let wait = (-self.tokens / self.rate) + 1e-4;
            Some(now + Duration::from_secs_f64(wait))
        }
    }
}

/// One connection's publish quota.
#[derive(Debug, Clone)]
pub(crate) struct PublishQuota(Option<Box<Buckets>>);

/// The buckets of a connection with a quota (boxed: by default there is
/// none, and every connection would otherwise carry room for them).
#[derive(Debug, Clone)]
struct Buckets {
    messages: Option<TokenBucket>,
    bytes: Option<TokenBucket>,
}

impl PublishQuota {
    pub(crate) fn new(config: &Config, now: Instant) -> Self {
        let bucket = |rate: u64| (rate > 0).then(|| TokenBucket::new(rate, now));
        let buckets = Buckets {
            messages: bucket(u64::from(config.max_publish_rate)),
            bytes: bucket(config.max_publish_bytes_rate),
        };
        let any = buckets.messages.is_some() || buckets.bytes.is_some();
        Self(any.then(|| Box::new(buckets)))
    }

    /// Counts one received PUBLISH of `bytes` (topic and payload).
    pub(crate) fn on_publish(&mut self, bytes: usize, now: Instant) {
        let Some(q) = &mut self.0 else { return };
        if let Some(b) = &mut q.messages {
            b.take(1, now);
        }
        if let Some(b) = &mut q.bytes {
            b.take(bytes as u64, now);
        }
    }

    /// Until when the connection must stop reading; `None` if it may read.
    pub(crate) fn throttled_until(&mut self, now: Instant) -> Option<Instant> {
        let q = self.0.as_mut()?;
        let m = q.messages.as_mut().and_then(|b| b.ready_at(now));
        let b = q.bytes.as_mut().and_then(|b| b.ready_at(now));
        m.max(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_its_rate_per_second_on_average() {
        // A client that sends whenever it may, for 10 s at 10/s: the
        // first second's burst, then the rate.
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10, t0);
        let mut now = t0;
        let mut sent = 0;
        while now < t0 + Duration::from_secs(10) {
            match b.ready_at(now) {
                None => {
                    b.take(1, now);
                    sent += 1;
                }
                Some(until) => now = until,
            }
        }
        assert!((105..=112).contains(&sent), "{sent}");
    }

    #[test]
    fn a_message_larger_than_the_bucket_passes_then_waits() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(100, t0);
        b.take(1000, t0);
        let until = b.ready_at(t0).expect("in debt");
        let wait = until - t0;
        assert!(wait >= Duration::from_secs(9) && wait < Duration::from_secs(10));
    }

    #[test]
    fn the_bucket_holds_at_most_one_second() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(5, t0);
        let later = t0 + Duration::from_secs(100);
        let mut taken = 0;
        while b.try_take_one(later) {
            taken += 1;
        }
        assert_eq!(taken, 5);
    }

    #[test]
    fn unlimited_quota_never_throttles() {
        let t0 = Instant::now();
        let mut q = PublishQuota::new(&Config::default(), t0);
        for _ in 0..10_000 {
            q.on_publish(1 << 20, t0);
        }
        assert!(q.throttled_until(t0).is_none());
    }

    #[test]
    fn either_limit_throttles() {
        let t0 = Instant::now();
        let config = Config {
            max_publish_bytes_rate: 100,
            ..Config::default()
        };
        let mut q = PublishQuota::new(&config, t0);
        q.on_publish(50, t0);
        assert!(q.throttled_until(t0).is_none());
        q.on_publish(100, t0);
        assert!(q.throttled_until(t0).is_some());
    }
}
