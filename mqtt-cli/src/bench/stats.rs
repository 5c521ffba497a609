//! Counters shared by the benchmark's clients, the live progress line, and
//! the final report.

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

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
    /// Deliveries expected (pubsub): each message times the subscriptions
    /// that match its topic.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) expected: Option<u64>,
    /// Expected minus received, when positive (pubsub). Only a fault at
    /// QoS 1 and 2: QoS 0 messages may be dropped by a loaded broker.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) losses: Option<u64>,
    /// Received beyond expected (QoS 1 duplicates).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) duplicates: Option<u64>,
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
            if let Some(e) = self.expected {
                line(format!(
                    "  expected       {e}  losses {}  duplicates {}",
                    self.losses.unwrap_or(0),
                    self.duplicates.unwrap_or(0)
                ));
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
