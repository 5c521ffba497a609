//! Live updates for the dashboard: one sampler reads the broker's counters
//! and gauges every [`SAMPLE_INTERVAL`] and keeps the last [`HISTORY`]
//! samples; `GET /api/v1/events` is a server-sent event stream that sends
//! those first (`event: history`), then each new one (`event: sample`).
//! However many dashboards are open, the broker is sampled once.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::stream::{self, Stream, StreamExt};
use serde::Serialize;
use tokio::sync::watch;

use super::AdminState;
use crate::handle::lock;
use crate::stats::Stats;

/// How often the broker is sampled.
pub(crate) const SAMPLE_INTERVAL: Duration = Duration::from_secs(1);
/// Samples kept for a dashboard that opens (five minutes' worth).
pub(crate) const HISTORY: usize = 300;

/// Messages not delivered, by reason (as `mqtt_messages_dropped_total`).
#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct Dropped {
    queue_full: u64,
    acl_publish: u64,
    acl_read: u64,
    publish_wait_timeout: u64,
}

/// The broker at one instant. Counters are totals since start; the
/// dashboard draws their rates.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Sample {
    /// Milliseconds since the Unix epoch.
    t: u64,
    connections: u64,
    connections_total: u64,
    sessions: usize,
    /// PUBLISH packets received from clients, and sent to them.
    received: u64,
    sent: u64,
    dropped: Dropped,
    queued: usize,
    queued_bytes: usize,
    subscriptions: usize,
    retained: usize,
    /// The process's resident memory, where the system tells it (Linux).
    memory_bytes: Option<u64>,
}

/// The samples: the last ones, and a channel announcing each new one.
pub(crate) struct Samples {
    history: Mutex<VecDeque<Arc<Sample>>>,
    latest: watch::Sender<Option<Arc<Sample>>>,
}

impl Samples {
    pub(crate) fn new() -> Self {
        Self {
            history: Mutex::new(VecDeque::with_capacity(HISTORY)),
            latest: watch::channel(None).0,
        }
    }
}

/// The process's resident set size, in bytes (Linux's `/proc`); `None`
/// elsewhere.
pub(crate) fn resident_memory() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line
        .trim_start_matches("VmRSS:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

fn sample(state: &AdminState) -> Sample {
    let b = &state.broker;
    let s = &b.stats;
    let get = Stats::get;
    let g = b.gauges();
    Sample {
        t: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
        connections: get(&s.clients_connected),
        connections_total: get(&s.connections_total),
        sessions: g.sessions,
        received: get(&s.messages_received),
        sent: s.messages_sent_by_qos.iter().map(get).sum(),
        dropped: Dropped {
            queue_full: get(&s.dropped_queue_full),
            acl_publish: get(&s.dropped_acl_publish),
            acl_read: get(&s.dropped_acl_read),
            publish_wait_timeout: get(&s.dropped_publish_wait),
        },
        queued: g.queued,
        queued_bytes: g.queued_bytes,
        subscriptions: g.subscriptions,
        retained: g.retained,
        memory_bytes: resident_memory(),
    }
}

/// Samples the broker every [`SAMPLE_INTERVAL`]; never returns.
pub(crate) async fn run_sampler(state: Arc<AdminState>) {
    let mut ticks = tokio::time::interval(SAMPLE_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let now = Arc::new(sample(&state));
        {
            let mut history = lock(&state.samples.history);
            if history.len() == HISTORY {
                history.pop_front();
            }
            history.push_back(now.clone());
        }
        state.samples.latest.send_replace(Some(now));
    }
}

/// `GET /api/v1/events`: the samples kept, then each new one, as
/// server-sent events; a comment every 15 seconds keeps proxies from
/// closing a quiet stream.
pub(crate) async fn events(
    State(state): State<Arc<AdminState>>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    // Subscribed first: a sample made meanwhile is in the history or
    // comes next, never lost between them (at worst sent twice).
    let latest = state.samples.latest.subscribe();
    let history: Vec<Arc<Sample>> = lock(&state.samples.history).iter().cloned().collect();
    let history: Vec<&Sample> = history.iter().map(|s| &**s).collect();
    let first = Event::default()
        .event("history")
        .json_data(&history)
        .unwrap_or_default();
    let updates = stream::unfold(latest, |mut rx| async move {
        rx.changed().await.ok()?;
        let sample = rx.borrow_and_update().clone();
        let event = match sample {
            Some(s) => Event::default()
                .event("sample")
                .json_data(&*s)
                .unwrap_or_default(),
            None => Event::default().comment(""),
        };
        Some((Ok(event), rx))
    });
    Sse::new(stream::once(async move { Ok(first) }).chain(updates))
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}
