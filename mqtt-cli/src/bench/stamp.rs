//! The stamp at the start of each payload (send time, run, publisher,
//! sequence number), the clock it is read from, and the run id.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::BufMut;

/// Nanoseconds since the UNIX epoch: the timestamp publishers write into
/// the first 8 bytes of each payload. Publishers and subscribers run on the
/// same machine, so one clock serves both.
pub(crate) fn unix_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// Bytes of a payload's [`Stamp`]: payloads at least this long are counted
/// message by message; shorter ones only carry (part of) the time.
pub(crate) const STAMP_LEN: usize = 24;

/// What a publisher writes at the start of each payload, big-endian:
///
/// | bytes  | field       | what                                        |
/// |--------|-------------|---------------------------------------------|
/// | 0..8   | `at`        | send time, nanoseconds since the UNIX epoch |
/// | 8..12  | `run`       | the `mqtt bench` process's random run id    |
/// | 12..16 | `publisher` | the publisher's index in its run            |
/// | 16..24 | `seq`       | the message's sequence number, from 0       |
///
/// The run id keeps apart the publishers of different processes (several
/// `bench pub` feeding one `bench sub`, or another run sharing the broker),
/// whose indexes and sequence numbers collide: without it, their messages
/// would fill each other's gaps or show up as duplicates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stamp {
    /// When the message was due (rate mode: start + seq / rate) or handed
    /// to the connection (open loop), in nanoseconds since the UNIX epoch.
    pub(crate) at: u64,
    pub(crate) run: u32,
    pub(crate) publisher: u32,
    pub(crate) seq: u64,
}

impl Stamp {
    /// Writes the [`STAMP_LEN`] bytes of the stamp.
    pub(crate) fn write(&self, buf: &mut impl BufMut) {
        buf.put_u64(self.at);
        buf.put_u32(self.run);
        buf.put_u32(self.publisher);
        buf.put_u64(self.seq);
    }

    /// The stamp at the start of `payload`, if it is long enough to hold
    /// one (the highest sequence number is refused: no publisher gets
    /// there, and tracking it would overflow).
    pub(crate) fn parse(payload: &[u8]) -> Option<Self> {
        let head: &[u8; STAMP_LEN] = payload.get(..STAMP_LEN)?.try_into().ok()?;
        let u64_at = |i: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&head[i..i + 8]);
            u64::from_be_bytes(b)
        };
        let u32_at = |i: usize| {
            let mut b = [0u8; 4];
            b.copy_from_slice(&head[i..i + 4]);
            u32::from_be_bytes(b)
        };
        let stamp = Self {
            at: u64_at(0),
            run: u32_at(8),
            publisher: u32_at(12),
            seq: u64_at(16),
        };
        (stamp.seq != u64::MAX).then_some(stamp)
    }
}

/// A run id: random, so that two `mqtt bench` processes differ.
pub(crate) fn new_run_id() -> u32 {
    let mut b = [0u8; 4];
    match getrandom::fill(&mut b) {
        Ok(()) => u32::from_be_bytes(b),
        // No entropy source: the process id and the clock differ enough.
        Err(_) => std::process::id() ^ (unix_nanos() as u32),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_round_trip_and_short_payloads_have_none() {
        let s = Stamp {
            at: 0x0102_0304_0506_0708,
            run: 9,
            publisher: 10,
            seq: 11,
        };
        let mut b = Vec::new();
        s.write(&mut b);
        assert_eq!(b.len(), STAMP_LEN);
        assert_eq!(&b[..8], &0x0102_0304_0506_0708u64.to_be_bytes());
        assert_eq!(Stamp::parse(&b), Some(s));
        assert_eq!(Stamp::parse(&b[..STAMP_LEN - 1]), None);
    }
}
