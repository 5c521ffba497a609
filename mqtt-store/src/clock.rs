//! The bridge between the monotonic clock a broker runs on and the wall
//! clock a store writes.
//!
//! An [`Instant`] means nothing after a restart, so every deadline is
//! written as UNIX time in milliseconds and turned back into an `Instant`
//! when read. Time the broker spends down therefore counts: a message that
//! had 60 s left when written and is read 100 s later has expired; a
//! session whose expiry deadline passed while the broker was down is gone
//! at recovery. A wall clock that jumps moves deadlines with it, which is
//! the price of surviving restarts.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// One moment read on both clocks, to convert between them.
///
/// The caller reads both clocks (`Clock::new(Instant::now(),
/// SystemTime::now())`); nothing in this crate reads a clock itself, so
/// tests choose the time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Clock {
    instant: Instant,
    unix_ms: u64,
}

impl Clock {
    /// The moment `instant` on the monotonic clock, which is `wall` on the
    /// wall clock.
    pub fn new(instant: Instant, wall: SystemTime) -> Self {
        let unix_ms = wall
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        Self { instant, unix_ms }
    }

    /// The moment `instant` on the monotonic clock, which is `unix_ms`
    /// milliseconds after the UNIX epoch.
    pub fn from_unix_ms(instant: Instant, unix_ms: u64) -> Self {
        Self { instant, unix_ms }
    }

    /// The monotonic side.
    pub fn instant(&self) -> Instant {
        self.instant
    }

    /// The wall side, in milliseconds since the UNIX epoch.
    pub fn unix_ms(&self) -> u64 {
        self.unix_ms
    }

    /// The same clock `d` later on both sides.
    pub fn advance(&self, d: Duration) -> Self {
        Self {
            instant: self.instant + d,
            unix_ms: self.unix_ms.saturating_add(millis(d)),
        }
    }

    /// `t` as UNIX milliseconds.
    pub fn to_unix_ms(&self, t: Instant) -> u64 {
        if t >= self.instant {
            self.unix_ms.saturating_add(millis(t - self.instant))
        } else {
            self.unix_ms.saturating_sub(millis(self.instant - t))
        }
    }

    /// UNIX milliseconds as an `Instant`. A time too far in the past for the
    /// monotonic clock to represent becomes `self.instant()`: it has passed
    /// either way.
    pub fn to_instant(&self, unix_ms: u64) -> Instant {
        if unix_ms >= self.unix_ms {
            let ahead = Duration::from_millis(unix_ms - self.unix_ms);
            self.instant.checked_add(ahead).unwrap_or(self.instant)
        } else {
            let behind = Duration::from_millis(self.unix_ms - unix_ms);
            self.instant.checked_sub(behind).unwrap_or(self.instant)
        }
    }

    /// Whether the UNIX time `unix_ms` has come.
    pub fn has_passed(&self, unix_ms: u64) -> bool {
        unix_ms <= self.unix_ms
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_and_unix_times_convert_both_ways() {
        let now = Instant::now();
        let c = Clock::from_unix_ms(now, 1_000_000);
        assert_eq!(c.to_unix_ms(now + Duration::from_millis(1500)), 1_001_500);
        assert_eq!(c.to_instant(1_001_500), now + Duration::from_millis(1500));
        assert!(c.has_passed(1_000_000));
        assert!(!c.has_passed(1_000_001));
        // Far in the past: clamps to now, which has passed it anyway.
        assert!(c.to_instant(0) <= now);
    }
}
