//! Counters shared by the benchmark's clients, the live progress line, the
//! per-message accounting of what arrived, and the final report.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::BufMut;
use hdrhistogram::Histogram;
use serde::Serialize;
use tokio::sync::watch;

/// Counters every client task adds to; read by the progress line.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    /// Connections open (CONNACK received, not yet closed).
    pub(crate) connected: AtomicU64,
    /// Connections that failed to open or were refused.
    pub(crate) connect_failed: AtomicU64,
    /// Messages handed to the connections.
    pub(crate) sent: AtomicU64,
    /// QoS 1/2 messages acknowledged (PUBACK / PUBCOMP) with success.
    pub(crate) acked: AtomicU64,
    /// QoS 1/2 messages acknowledged with an error reason code.
    pub(crate) publish_failed: AtomicU64,
    /// Messages received by subscribers.
    pub(crate) received: AtomicU64,
    /// Messages received by subscribers for the first time: neither a
    /// duplicate nor another run's (per-message accounting only).
    pub(crate) fresh: AtomicU64,
    /// Connections lost or closed by the server mid-run.
    pub(crate) disconnects: AtomicU64,
}

/// Nanoseconds since the UNIX epoch: the timestamp publishers write into
/// the first 8 bytes of each payload. Publishers and subscribers run on the
/// same machine, so one clock serves both.
pub(crate) fn unix_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// A latency histogram in nanoseconds, 3 significant digits.
pub(crate) fn new_histogram() -> Histogram<u64> {
    // Auto-resizing covers any value.
    let mut h = Histogram::new(3).expect("3 significant figures are valid");
    h.auto(true);
    h
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

/// What one subscriber received of one publisher's messages, by sequence
/// number. The messages missing so far are kept as ranges, 16 bytes each:
/// a QoS 0 burst dropped by a full queue is one range, not one entry per
/// message, and a run without loss keeps none. New gaps are always above
/// the others (pushed at the end); a late message fills one, usually a
/// recent one (found by binary search, near the end).
#[derive(Debug, Clone, Default)]
pub(crate) struct Track {
    /// The first sequence number tracked: 0 for this run's publishers (the
    /// subscribers were ready before they started); in `bench sub`, the
    /// lowest received (it may have subscribed mid-stream).
    base: u64,
    /// One past the highest sequence number received.
    next: u64,
    /// The sequence numbers in `base..next` not received: (start, end
    /// exclusive), sorted, disjoint and never adjacent.
    gaps: Vec<(u64, u64)>,
    /// Deliveries, duplicates included.
    received: u64,
    /// Deliveries of a sequence number already received.
    duplicates: u64,
    /// Deliveries that filled a gap: they came after a later message.
    reordered: u64,
}

impl Track {
    /// A track whose first message is `seq` (`bench sub`).
    fn starting_at(seq: u64) -> Self {
        Self {
            base: seq,
            next: seq,
            ..Self::default()
        }
    }

    /// Records the arrival of `seq`; true unless it is a duplicate.
    pub(crate) fn arrive(&mut self, seq: u64) -> bool {
        self.received += 1;
        if seq == self.next {
            // In order: the usual case, and the cheapest.
            self.next = seq + 1;
            return true;
        }
        if seq > self.next {
            self.gaps.push((self.next, seq));
            self.next = seq + 1;
            return true;
        }
        if seq < self.base {
            // Before the first one seen (`bench sub` only): late, and what
            // lies between is missing.
            if seq + 1 < self.base {
                self.gaps.insert(0, (seq + 1, self.base));
            }
            self.base = seq;
            self.reordered += 1;
            return true;
        }
        // The gap that would hold `seq`: the last one starting at or below.
        let i = self.gaps.partition_point(|&(start, _)| start <= seq);
        match i.checked_sub(1).map(|i| (i, self.gaps[i])) {
            Some((i, (start, end))) if seq < end => {
                match (start == seq, seq + 1 == end) {
                    (true, true) => {
                        self.gaps.remove(i);
                    }
                    (true, false) => self.gaps[i].0 = seq + 1,
                    (false, true) => self.gaps[i].1 = seq,
                    (false, false) => {
                        self.gaps[i].1 = seq;
                        self.gaps.insert(i + 1, (seq + 1, end));
                    }
                }
                self.reordered += 1;
                true
            }
            _ => {
                self.duplicates += 1;
                false
            }
        }
    }

    /// The sequence numbers received, as sorted disjoint ranges.
    fn received_ranges(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        let mut at = self.base;
        self.gaps
            .iter()
            .copied()
            .chain(std::iter::once((self.next, self.next)))
            .filter_map(move |(s, e)| {
                let r = (at, s);
                at = e;
                (r.0 < r.1).then_some(r)
            })
    }

    /// Sequence numbers missing between the first and the last received.
    fn missing(&self) -> u64 {
        self.gaps.iter().map(|(s, e)| e - s).sum()
    }
}

/// What one subscriber received, by publisher.
#[derive(Debug, Default)]
pub(crate) struct Tracker {
    /// This run's id: its publishers are tracked from sequence number 0
    /// and anything else is foreign. `None` (`bench sub`): every run's
    /// publishers are tracked, each from its first message.
    own: Option<u32>,
    /// This run's publishers.
    publishers: usize,
    /// Tracks of this run's publishers, by index (grown on demand).
    mine: Vec<Track>,
    /// Tracks by (run, publisher), in `bench sub`.
    others: HashMap<(u32, u32), Track>,
    /// Deliveries that no publisher of this run made, or without a stamp.
    pub(crate) foreign: u64,
}

impl Tracker {
    /// A tracker of run `own`'s `publishers`, or of every run (`None`).
    pub(crate) fn new(own: Option<u32>, publishers: usize) -> Self {
        Self {
            own,
            publishers,
            ..Self::default()
        }
    }

    /// Records the arrival of a message; true if it is new: neither a
    /// duplicate nor foreign.
    pub(crate) fn arrive(&mut self, payload: &[u8]) -> bool {
        let Some(stamp) = Stamp::parse(payload) else {
            self.foreign += 1;
            return false;
        };
        let index = stamp.publisher as usize;
        match self.own {
            Some(run) if run == stamp.run && index < self.publishers => {
                if index >= self.mine.len() {
                    self.mine.resize_with(index + 1, Track::default);
                }
                self.mine[index].arrive(stamp.seq)
            }
            Some(_) => {
                self.foreign += 1;
                false
            }
            None => self
                .others
                .entry((stamp.run, stamp.publisher))
                .or_insert_with(|| Track::starting_at(stamp.seq))
                .arrive(stamp.seq),
        }
    }

    /// The track of this run's publisher `index`, if anything came from it.
    pub(crate) fn track(&self, index: usize) -> Option<&Track> {
        self.mine.get(index).filter(|t| t.received > 0)
    }

    /// What came from every run's publishers (`bench sub`): duplicates,
    /// reordered, and the messages missing between the first and the last
    /// received of each.
    pub(crate) fn seen(&self) -> Tally {
        let mut t = Tally::default();
        for track in self.others.values().chain(&self.mine) {
            t.received += track.received;
            t.duplicates += track.duplicates;
            t.reordered += track.reordered;
            t.losses += track.missing();
        }
        t
    }
}

/// What one subscription (one subscriber, or the members of one shared
/// subscription) received of one publisher's messages, or a sum of those.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Tally {
    /// Deliveries, duplicates included.
    pub(crate) received: u64,
    /// Deliveries due.
    pub(crate) expected: u64,
    /// Deliveries due that did not come.
    pub(crate) losses: u64,
    /// Deliveries of a message already delivered.
    pub(crate) duplicates: u64,
    /// Deliveries after a later message.
    pub(crate) reordered: u64,
}

impl std::ops::AddAssign for Tally {
    fn add_assign(&mut self, o: Self) {
        self.received += o.received;
        self.expected += o.expected;
        self.losses += o.losses;
        self.duplicates += o.duplicates;
        self.reordered += o.reordered;
    }
}

impl Tally {
    /// What `tracks` (the members of one subscription) received of a
    /// publisher whose messages `0..end`, except the `refused` ones, were
    /// to be delivered once each. A message two members both received
    /// is a duplicate.
    pub(crate) fn of(tracks: &[&Track], end: u64, refused: &[u64]) -> Self {
        let mut t = Self::default();
        let mut ranges = Vec::new();
        let mut sum = 0;
        for track in tracks {
            t.received += track.received;
            t.duplicates += track.duplicates;
            t.reordered += track.reordered;
            for (s, e) in track.received_ranges() {
                sum += e - s;
                ranges.push((s, e));
            }
        }
        // The union of what the members received.
        ranges.sort_unstable();
        let mut union: Vec<(u64, u64)> = Vec::with_capacity(ranges.len());
        for (s, e) in ranges {
            match union.last_mut() {
                Some(last) if s <= last.1 => last.1 = last.1.max(e),
                _ => union.push((s, e)),
            }
        }
        let union_len: u64 = union.iter().map(|(s, e)| e - s).sum();
        t.duplicates += sum - union_len;
        let due_received: u64 = union
            .iter()
            .filter(|(s, _)| *s < end)
            .map(|(s, e)| (*e).min(end) - s)
            .sum();
        let got = |seq: u64| {
            let i = union.partition_point(|(s, _)| *s <= seq);
            i > 0 && seq < union[i - 1].1
        };
        let refused_due = refused.iter().filter(|&&r| r < end).count() as u64;
        let refused_missing = refused.iter().filter(|&&r| r < end && !got(r)).count() as u64;
        t.expected = end - refused_due;
        t.losses = (end - due_received) - refused_missing;
        t
    }
}

/// Prints a progress line on standard error once a second until `stop`.
pub(crate) async fn progress(counters: Arc<Counters>, mut stop: watch::Receiver<bool>) {
    let start = Instant::now();
    let tty = std::io::stderr().is_terminal();
    let mut tick = tokio::time::interval_at(
        tokio::time::Instant::now() + Duration::from_secs(1),
        Duration::from_secs(1),
    );
    let (mut last_sent, mut last_recv) = (0, 0);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => break,
        }
        let sent = counters.sent.load(Relaxed);
        let recv = counters.received.load(Relaxed);
        let line = format!(
            "[{:>4}s] conns {}  sent {}/s  recv {}/s  total sent {}  recv {}  failed conns {}  lost {}",
            start.elapsed().as_secs(),
            counters.connected.load(Relaxed),
            sent - last_sent,
            recv - last_recv,
            sent,
            recv,
            counters.connect_failed.load(Relaxed),
            counters.disconnects.load(Relaxed),
        );
        last_sent = sent;
        last_recv = recv;
        let mut err = std::io::stderr().lock();
        let _ = if tty {
            write!(err, "\r\x1b[2K{line}")
        } else {
            writeln!(err, "{line}")
        };
        let _ = err.flush();
    }
    if tty {
        eprintln!();
    }
}

/// Latency percentiles, in microseconds.
#[derive(Debug, Serialize)]
pub(crate) struct Latency {
    /// Samples.
    pub(crate) count: u64,
    /// Smallest.
    pub(crate) min_us: f64,
    /// Mean.
    pub(crate) mean_us: f64,
    /// Median.
    pub(crate) p50_us: f64,
    /// 90th percentile.
    pub(crate) p90_us: f64,
    /// 99th percentile.
    pub(crate) p99_us: f64,
    /// 99.9th percentile.
    pub(crate) p999_us: f64,
    /// Largest.
    pub(crate) max_us: f64,
}

impl Latency {
    /// Percentiles of a histogram of nanoseconds; `None` when empty.
    pub(crate) fn from_histogram(h: &Histogram<u64>) -> Option<Self> {
        if h.is_empty() {
            return None;
        }
        let us = |ns: u64| (ns as f64 / 1000.0 * 10.0).round() / 10.0;
        Some(Self {
            count: h.len(),
            min_us: us(h.min()),
            mean_us: (h.mean() / 100.0).round() / 10.0,
            p50_us: us(h.value_at_quantile(0.50)),
            p90_us: us(h.value_at_quantile(0.90)),
            p99_us: us(h.value_at_quantile(0.99)),
            p999_us: us(h.value_at_quantile(0.999)),
            max_us: us(h.max()),
        })
    }
}

/// The final report of a benchmark run; `--json` prints it as is.
#[derive(Debug, Default, Serialize)]
pub(crate) struct Report {
    /// conn, pub, sub or pubsub.
    pub(crate) mode: &'static str,
    /// Publishing clients.
    pub(crate) publishers: usize,
    /// Subscribing clients.
    pub(crate) subscribers: usize,
    /// QoS used.
    pub(crate) qos: u8,
    /// Payload bytes per message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) payload_size: Option<usize>,
    /// Seconds from the first message (or connection) to the end of
    /// publishing (or of the last connection).
    pub(crate) elapsed_s: f64,
    /// Connections attempted.
    pub(crate) connections: u64,
    /// Connections that failed or were refused.
    pub(crate) connect_failures: u64,
    /// Connections opened per second (conn mode).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) connect_rate: Option<f64>,
    /// Time from TCP connect to CONNACK (conn mode).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) connect_latency: Option<Latency>,
    /// Messages published.
    pub(crate) sent: u64,
    /// Messages published per second.
    pub(crate) sent_rate: f64,
    /// QoS 1/2 messages acknowledged with success.
    pub(crate) acked: u64,
    /// QoS 1/2 messages acknowledged with an error code.
    pub(crate) publish_failures: u64,
    /// Messages received by subscribers.
    pub(crate) received: u64,
    /// Messages received per second, from the first publication to the
    /// last message received.
    pub(crate) received_rate: f64,
    /// Whether the messages were counted one by one (pubsub, filters,
    /// sub): payloads of at least 24 bytes carry their publisher and
    /// sequence number. Otherwise `losses` and `duplicates` are
    /// differences of totals, where a duplicate hides a loss.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) per_message: Option<bool>,
    /// Deliveries expected (pubsub, filters): each message sent (QoS 0) or
    /// acknowledged with success (QoS 1/2) times the subscriptions that
    /// match its topic.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) expected: Option<u64>,
    /// Expected deliveries that never came, counted per message and
    /// subscription. A fault at QoS 1 and 2 (the broker acknowledged the
    /// message); at QoS 0 a loaded broker may drop messages. In `bench
    /// sub`: messages missing between the first and the last received from
    /// each publisher.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) losses: Option<u64>,
    /// Deliveries of a message the subscription had already received.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) duplicates: Option<u64>,
    /// Deliveries that came after a later message of the same publisher.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) reordered: Option<u64>,
    /// Deliveries not from this run's publishers (another process's, or a
    /// payload without a stamp), or to a subscriber whose filter does not
    /// match the topic. Not in `expected`, `losses` nor `duplicates`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) foreign: Option<u64>,
    /// QoS 1/2 messages sent and never acknowledged, even after the drain
    /// time (pub, pubsub, filters): a failure, not counted in `losses`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) unacknowledged: Option<u64>,
    /// Connections lost during the run.
    pub(crate) disconnects: u64,
    /// End-to-end latency from the publisher's timestamp to receipt.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) latency: Option<Latency>,
    /// What went wrong, one line each (first few).
    pub(crate) errors: Vec<String>,
    /// The broker's resident memory before the first connection, KiB
    /// (conn mode with --rss-pid).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) rss_before_kb: Option<u64>,
    /// The broker's resident memory with every connection open and idle,
    /// KiB (conn mode with --rss-pid).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) rss_after_kb: Option<u64>,
    /// (after - before) / connections open, in bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) rss_per_conn_bytes: Option<f64>,
    /// Filters asked for (filters mode).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) filters: Option<u64>,
    /// Filters granted by the SUBACKs (filters mode).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) filters_granted: Option<u64>,
    /// Filters refused by the SUBACKs (filters mode).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) filters_refused: Option<u64>,
    /// Seconds from the first SUBSCRIBE to the last SUBACK (filters mode);
    /// absent if not every SUBACK came.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) subscribe_s: Option<f64>,
    /// Filters subscribed per second (filters mode).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) subscribe_rate: Option<f64>,
    /// Messages delivered per second once subscribed (filters mode).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) publish_rate: Option<f64>,
    /// CPU seconds (user + system) the load generator itself used: it
    /// shares the machine with the broker.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) generator_cpu_s: Option<f64>,
}

impl Report {
    /// Whether the run failed: a connection failed or dropped, a
    /// publication was refused or never acknowledged, or a QoS 1/2 message
    /// the broker acknowledged never reached a subscription. QoS 0 losses
    /// are reported, not failures: a broker may drop QoS 0 at a queue
    /// limit. Nor are the gaps `bench sub` sees: it cannot tell which of
    /// the messages were acknowledged to their publisher.
    pub(crate) fn failed(&self) -> bool {
        self.connect_failures > 0
            || self.publish_failures > 0
            || self.disconnects > 0
            || self.unacknowledged.is_some_and(|u| u > 0)
            || (self.qos > 0 && self.mode != "sub" && self.losses.is_some_and(|l| l > 0))
    }

    /// The report for a person.
    pub(crate) fn print_text(&self) {
        let mut s = String::new();
        let mut line = |l: String| {
            s.push_str(&l);
            s.push('\n');
        };
        if self.mode == "conn" {
            line("mqtt bench conn".to_owned());
        } else {
            line(format!(
                "mqtt bench {}: {} publisher(s), {} subscriber(s), QoS {}{}",
                self.mode,
                self.publishers,
                self.subscribers,
                self.qos,
                self.payload_size
                    .map(|s| format!(", {s}-byte payloads"))
                    .unwrap_or_default(),
            ));
        }
        line(format!("  elapsed        {:.3} s", self.elapsed_s));
        line(format!(
            "  connections    {} ({} failed)",
            self.connections, self.connect_failures
        ));
        if let Some(r) = self.connect_rate {
            line(format!("  connect rate   {r:.1} conn/s"));
        }
        if let (Some(b), Some(a)) = (self.rss_before_kb, self.rss_after_kb) {
            line(format!(
                "  broker RSS     {b} KiB before, {a} KiB with the connections open ({} bytes per connection)",
                self.rss_per_conn_bytes
                    .map_or("n/a".into(), |r| format!("{r:.0}"))
            ));
        }
        if let Some(n) = self.filters {
            line(format!(
                "  filters        {n} ({} granted, {} refused)",
                self.filters_granted.unwrap_or(0),
                self.filters_refused.unwrap_or(0)
            ));
            match self.subscribe_s {
                Some(s) => line(format!(
                    "  subscribe      {s:.3} s ({:.0} filters/s)",
                    self.subscribe_rate.unwrap_or(0.0)
                )),
                None => line("  subscribe      incomplete".to_owned()),
            }
        }
        if let Some(l) = &self.connect_latency {
            line(format!(
                "  connect time   p50 {:.0} µs  p99 {:.0} µs  max {:.0} µs",
                l.p50_us, l.p99_us, l.max_us
            ));
        }
        if self.mode != "conn" {
            if self.publishers > 0 {
                line(format!(
                    "  sent           {} ({:.0} msg/s)",
                    self.sent, self.sent_rate
                ));
                if self.qos > 0 {
                    line(format!(
                        "  acknowledged   {} ({} failed)",
                        self.acked, self.publish_failures
                    ));
                }
            }
            if self.subscribers > 0 {
                line(format!(
                    "  received       {} ({:.0} msg/s)",
                    self.received, self.received_rate
                ));
            }
            if let Some(u) = self.unacknowledged {
                line(format!("  unacknowledged {u}"));
            }
            match (self.expected, self.per_message) {
                (Some(e), Some(true)) => line(format!(
                    "  expected       {e}  losses {}  duplicates {}  reordered {}  foreign {}",
                    self.losses.unwrap_or(0),
                    self.duplicates.unwrap_or(0),
                    self.reordered.unwrap_or(0),
                    self.foreign.unwrap_or(0),
                )),
                (Some(e), _) => line(format!(
                    "  expected       {e}  losses {}  duplicates {}  (from totals: payloads under {STAMP_LEN} bytes are not counted one by one)",
                    self.losses.unwrap_or(0),
                    self.duplicates.unwrap_or(0)
                )),
                (None, Some(true)) => line(format!(
                    "  missing        {} (between each publisher's first and last message)  duplicates {}  reordered {}  foreign {}",
                    self.losses.unwrap_or(0),
                    self.duplicates.unwrap_or(0),
                    self.reordered.unwrap_or(0),
                    self.foreign.unwrap_or(0),
                )),
                (None, _) => {}
            }
            if let Some(l) = &self.latency {
                line(format!(
                    "  latency (µs)   p50 {:.1}  p90 {:.1}  p99 {:.1}  p99.9 {:.1}  max {:.1}  mean {:.1}",
                    l.p50_us, l.p90_us, l.p99_us, l.p999_us, l.max_us, l.mean_us
                ));
            }
        }
        line(format!("  disconnects    {}", self.disconnects));
        for e in &self.errors {
            line(format!("  error: {e}"));
        }
        print!("{s}");
    }
}

/// Keeps the first errors of a run, and counts the rest.
#[derive(Debug, Default)]
pub(crate) struct Errors {
    list: std::sync::Mutex<(Vec<String>, u64)>,
}

impl Errors {
    /// The most distinct error lines kept.
    const KEEP: usize = 10;

    /// Records one error.
    pub(crate) fn push(&self, e: String) {
        // Held for a push, never across an await.
        let mut g = self.list.lock().unwrap_or_else(|p| p.into_inner());
        if g.0.len() < Self::KEEP && !g.0.contains(&e) {
            g.0.push(e);
        } else {
            g.1 += 1;
        }
    }

    /// The errors kept, and a line for those that were not.
    pub(crate) fn take(&self) -> Vec<String> {
        let mut g = self.list.lock().unwrap_or_else(|p| p.into_inner());
        let mut v = std::mem::take(&mut g.0);
        if g.1 > 0 {
            v.push(format!("... and {} more (or repeated)", g.1));
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn track(seqs: &[u64]) -> Track {
        let mut t = Track::default();
        for &s in seqs {
            t.arrive(s);
        }
        t
    }

    fn stamped(run: u32, publisher: u32, seq: u64) -> Vec<u8> {
        let mut b = Vec::new();
        Stamp {
            at: 1,
            run,
            publisher,
            seq,
        }
        .write(&mut b);
        b.extend_from_slice(b"filler");
        b
    }

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

    #[test]
    fn a_duplicate_does_not_hide_a_loss() {
        // 3 lost, 5 twice, 7 after 8.
        let t = track(&[0, 1, 2, 4, 5, 5, 6, 8, 7, 9]);
        let tally = Tally::of(&[&t], 10, &[]);
        assert_eq!(
            tally,
            Tally {
                received: 10,
                expected: 10,
                losses: 1,
                duplicates: 1,
                reordered: 1,
            }
        );
    }

    #[test]
    fn gaps_split_and_fill() {
        let mut t = track(&[0, 10, 5]);
        assert_eq!(t.missing(), 8);
        for s in [1, 2, 3, 4, 6, 7, 8, 9] {
            assert!(t.arrive(s));
        }
        assert!(!t.arrive(4));
        assert_eq!(t.missing(), 0);
        assert!(t.gaps.is_empty());
        assert_eq!((t.reordered, t.duplicates), (9, 1));
        assert_eq!(t.received_ranges().collect::<Vec<_>>(), [(0, 11)]);
    }

    #[test]
    fn the_messages_after_the_last_received_are_lost_up_to_the_end() {
        let t = track(&[0, 1, 2, 3, 4]);
        assert_eq!(Tally::of(&[&t], 8, &[]).losses, 3);
        // QoS 1/2: received beyond the acknowledged is no loss.
        let t = track(&(0..10).collect::<Vec<_>>());
        let tally = Tally::of(&[&t], 5, &[]);
        assert_eq!((tally.expected, tally.losses), (5, 0));
        // Nothing received at all.
        assert_eq!(Tally::of(&[], 7, &[]).losses, 7);
    }

    #[test]
    fn refused_messages_are_not_due() {
        let t = track(&[0, 1, 2, 4]);
        let tally = Tally::of(&[&t], 5, &[3]);
        assert_eq!((tally.expected, tally.losses), (4, 0));
        // A refused message delivered anyway is no loss either.
        let t = track(&[0, 1, 2, 3, 4]);
        let tally = Tally::of(&[&t], 5, &[3]);
        assert_eq!((tally.expected, tally.losses), (4, 0));
    }

    #[test]
    fn shared_members_are_counted_together() {
        // Evens to one member, odds (and 4 again) to the other, 9 lost.
        let a = track(&[0, 2, 4, 6, 8]);
        let b = track(&[1, 3, 4, 5, 7]);
        let tally = Tally::of(&[&a, &b], 10, &[]);
        assert_eq!((tally.received, tally.losses, tally.duplicates), (10, 1, 1));
    }

    /// Random drops, duplicates and swaps against a plain set of what
    /// arrived.
    #[test]
    fn tracks_agree_with_a_set() {
        let mut rng = super::super::clients::XorShift::new(3);
        for round in 0..200 {
            let n = 1 + rng.below(300) as u64;
            let mut arrivals = Vec::new();
            for seq in 0..n {
                match rng.below(10) {
                    0 => {}
                    1 => arrivals.extend([seq, seq]),
                    _ => arrivals.push(seq),
                }
            }
            for _ in 0..rng.below(20) {
                let (a, b) = (rng.below(arrivals.len() + 1), rng.below(arrivals.len() + 1));
                if a < arrivals.len() && b < arrivals.len() {
                    arrivals.swap(a, b);
                }
            }
            let mut seen = std::collections::BTreeSet::new();
            let (mut dups, mut late, mut max) = (0, 0, None);
            let mut t = Track::default();
            for &seq in &arrivals {
                let fresh = seen.insert(seq);
                assert_eq!(t.arrive(seq), fresh, "round {round}");
                if !fresh {
                    dups += 1;
                } else if max.is_some_and(|m| seq < m) {
                    late += 1;
                }
                max = max.max(Some(seq));
            }
            let end = n - rng.below(3).min(n as usize) as u64;
            let tally = Tally::of(&[&t], end, &[]);
            let lost = (0..end).filter(|s| !seen.contains(s)).count() as u64;
            assert_eq!(
                (tally.losses, tally.duplicates, tally.reordered),
                (lost, dups, late),
                "round {round}: {arrivals:?}"
            );
            assert_eq!(tally.received, arrivals.len() as u64);
            assert!(t.gaps.windows(2).all(|w| w[0].1 < w[1].0));
        }
    }

    #[test]
    fn trackers_keep_runs_and_publishers_apart() {
        let mut t = Tracker::new(Some(7), 2);
        assert!(t.arrive(&stamped(7, 0, 0)));
        assert!(t.arrive(&stamped(7, 1, 0)));
        assert!(!t.arrive(&stamped(7, 1, 0)));
        // Another run, a publisher out of range, no stamp: foreign.
        assert!(!t.arrive(&stamped(8, 0, 1)));
        assert!(!t.arrive(&stamped(7, 2, 0)));
        assert!(!t.arrive(b"short"));
        assert_eq!(t.foreign, 3);
        assert_eq!(t.track(0).map(|t| t.received), Some(1));
        assert_eq!(t.track(1).map(|t| t.duplicates), Some(1));

        // `bench sub`: every run, each from its first message.
        let mut t = Tracker::new(None, 0);
        for (run, seq) in [(1, 100), (1, 101), (1, 103), (1, 99), (2, 5), (2, 5)] {
            t.arrive(&stamped(run, 0, seq));
        }
        let seen = t.seen();
        assert_eq!(
            (seen.received, seen.losses, seen.duplicates, seen.reordered),
            (6, 1, 1, 1)
        );
    }
}
