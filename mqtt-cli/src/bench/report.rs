//! The final report of a run: its fields (`--json` prints them as they
//! are), whether the run failed, and the text for a person.

use serde::Serialize;

use super::latency::Latency;
use super::stamp::STAMP_LEN;
use super::tally::Tally;
use super::track::MAX_GAPS;

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
    /// Gaps (runs of missing messages) the subscribers stopped tracking
    /// one by one at the gap limit ([`MAX_GAPS`] per publisher and
    /// subscriber): the messages in them count for good as missing to that
    /// subscriber (lost, unless another member of its shared-subscription
    /// group received them). Absent if none was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) gaps_forgotten: Option<u64>,
    /// With `gaps_forgotten`: deliveries that came below what was still
    /// tracked one by one, each a late message for a forgotten gap or a
    /// duplicate, which cannot be told apart. Neither takes a loss back
    /// nor counts as a duplicate: `losses` may be over by up to this many,
    /// never under.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) unplaced: Option<u64>,
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
    /// Gives the gaps forgotten at the gap limit and the deliveries
    /// unplaced since, if any gap was forgotten: the report of a run that
    /// stayed under the limit does not change.
    pub(crate) fn note_gap_limit(&mut self, tally: &Tally) {
        if tally.gaps_forgotten > 0 {
            self.gaps_forgotten = Some(tally.gaps_forgotten);
            self.unplaced = Some(tally.unplaced);
        }
    }

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
            if let Some(g) = self.gaps_forgotten {
                line(format!(
                    "  gap limit      {g} gaps forgotten (over {MAX_GAPS} per publisher and subscriber; missing for good)  unplaced {} (losses may be over by as many)",
                    self.unplaced.unwrap_or(0)
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
