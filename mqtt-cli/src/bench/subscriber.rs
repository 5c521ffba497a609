//! The subscriber task: subscribes to one filter and counts, tracks and
//! times what arrives; and the result every subscriber task gives.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use hdrhistogram::Histogram;
use mqtt_codec::{MqttString, QoS, Subscription, SubscriptionOptions};
use tokio::sync::watch;

use super::counters::Counters;
use super::latency::new_histogram;
use super::shared::Shared;
use super::stamp::unix_nanos;
use super::tracker::Tracker;
use crate::client::Client;
use mqtt_session::ClientEvent;

/// What one subscriber did.
#[derive(Debug)]
pub(crate) struct SubResult {
    pub(crate) received: u64,
    pub(crate) latency: Histogram<u64>,
    /// The filter, if the subscription was granted.
    pub(crate) granted: Option<String>,
    /// When it received its last message.
    pub(crate) last: Option<Instant>,
    /// What it received, message by message.
    pub(crate) tracker: Tracker,
}

/// The messages one turn of a subscriber's loop received.
pub(super) struct Turn {
    received: u64,
    /// Those neither duplicates nor foreign.
    fresh: u64,
    /// When the turn began, in nanoseconds since the UNIX epoch: the
    /// arrival time of what it receives.
    now: u64,
}

impl Turn {
    pub(super) fn start() -> Self {
        Self {
            received: 0,
            fresh: 0,
            now: unix_nanos(),
        }
    }
}

impl SubResult {
    pub(super) fn new(tracker: Tracker) -> Self {
        Self {
            received: 0,
            latency: new_histogram(),
            granted: None,
            last: None,
            tracker,
        }
    }

    /// The client's next event; the messages before it are lent, not
    /// copied into events, counted in `turn` and tracked, and their latency
    /// recorded.
    pub(super) fn next_event(
        &mut self,
        client: &mut Client,
        turn: &mut Turn,
    ) -> Option<ClientEvent> {
        let (latency, tracker, now) = (&mut self.latency, &mut self.tracker, turn.now);
        let (received, fresh) = (&mut turn.received, &mut turn.fresh);
        client.poll_event_with(|m| {
            *received += 1;
            *fresh += u64::from(tracker.arrive(&m.payload));
            record_latency(latency, &m.payload, now);
        })
    }

    /// Adds what `turn` received to the result and to the shared counters.
    pub(super) fn end_turn(&mut self, turn: Turn, counters: &Counters) {
        if turn.received > 0 {
            counters.received.fetch_add(turn.received, Relaxed);
            counters.fresh.fetch_add(turn.fresh, Relaxed);
            self.received += turn.received;
            self.last = Some(Instant::now());
        }
    }
}

/// Subscribes to `filter` and counts what arrives, in `tracker`, until
/// `stop`. `ready` is sent once the SUBACK is in (or the attempt failed).
pub(crate) async fn subscriber(
    shared: Arc<Shared>,
    id: String,
    filter: String,
    qos: QoS,
    tracker: Tracker,
    ready: tokio::sync::mpsc::Sender<()>,
    mut stop: watch::Receiver<bool>,
) -> SubResult {
    let mut result = SubResult::new(tracker);
    let Some(mut client) = shared.open(id).await else {
        let _ = ready.send(()).await;
        return result;
    };
    let counters = &shared.counters;
    let subscription = match MqttString::try_from(filter.clone()) {
        Ok(f) => Subscription {
            filter: f,
            options: SubscriptionOptions::qos(qos),
        },
        Err(e) => {
            shared.errors.push(format!("filter {filter:?}: {e}"));
            let _ = ready.send(()).await;
            shared.close(client).await;
            return result;
        }
    };
    if client
        .session()
        .subscribe(vec![subscription], Default::default())
        .is_none()
    {
        shared.errors.push("cannot send SUBSCRIBE".into());
    }
    let mut ready = Some(ready);
    loop {
        let mut turn = Turn::start();
        while let Some(ev) = result.next_event(&mut client, &mut turn) {
            match ev {
                ClientEvent::Subscribed(ack) => {
                    match ack.reason_codes.first() {
                        Some(c) if !c.is_error() => result.granted = Some(filter.clone()),
                        Some(c) => shared
                            .errors
                            .push(format!("subscription to {filter:?} refused: {c}")),
                        None => shared.errors.push("empty SUBACK".into()),
                    }
                    if let Some(r) = ready.take() {
                        let _ = r.send(()).await;
                    }
                }
                ClientEvent::Closed { reason, .. } => {
                    shared.lost(&client.close_error(reason));
                    if let Some(r) = ready.take() {
                        let _ = r.send(()).await;
                    }
                    return result;
                }
                _ => {}
            }
        }
        result.end_turn(turn, counters);
        tokio::select! {
            r = client.step() => if let Err(e) = r {
                shared.lost(&e);
                return result;
            },
            _ = stop.changed() => break,
        }
    }
    shared.close(client).await;
    result
}

/// Records the latency of a message whose payload starts with its
/// publication time.
fn record_latency(hist: &mut Histogram<u64>, payload: &[u8], now: u64) {
    if payload.len() >= 8 {
        let mut ts = [0u8; 8];
        ts.copy_from_slice(&payload[..8]);
        let sent = u64::from_be_bytes(ts);
        let _ = hist.record(now.saturating_sub(sent).max(1));
    }
}
