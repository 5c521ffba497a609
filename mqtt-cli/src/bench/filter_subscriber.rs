//! The subscriber task of `bench filters`: subscribes to many filters in
//! windowed batches, reports how long it took, then counts what arrives.

use std::sync::Arc;
use std::time::{Duration, Instant};

use mqtt_codec::{MqttString, QoS, Subscription, SubscriptionOptions};
use mqtt_session::ClientEvent;
use tokio::sync::watch;

use super::shared::Shared;
use super::subscriber::{SubResult, Turn};
use super::tracker::Tracker;

/// What the subscriber of `bench filters` subscribes to.
#[derive(Debug, Clone)]
pub(crate) struct FilterPlan {
    /// Distinct filters, numbered from 0; see [`filter_for`].
    pub(crate) filters: usize,
    /// Filters per SUBSCRIBE packet.
    pub(crate) batch: usize,
    /// SUBSCRIBE packets sent and not yet acknowledged, at most.
    pub(crate) window: usize,
    pub(crate) qos: QoS,
    /// How long the whole subscription may take before the run gives up.
    pub(crate) timeout: Duration,
}

/// Filter number `i` of `bench filters`: a mix of exact filters and both
/// wildcards, each distinct, and each matched by topic [`topic_for`]`(i)`
/// and by no other topic of that form.
pub(crate) fn filter_for(i: usize) -> String {
    match i % 3 {
        0 => format!("f/{i}/x"),
        1 => format!("f/{i}/+"),
        _ => format!("f/{i}/#"),
    }
}

/// The topic `bench filters` publishes to for filter `i`.
pub(crate) fn topic_for(i: usize) -> String {
    format!("f/{i}/x")
}

/// How the subscription of `bench filters` went.
#[derive(Debug, Default)]
pub(crate) struct Subscribed {
    /// From the first SUBSCRIBE to the last SUBACK; `None` if not every
    /// SUBACK came.
    pub(crate) took: Option<Duration>,
    /// Which filters were granted.
    pub(crate) granted: Vec<bool>,
    /// Filters refused by a SUBACK failure code.
    pub(crate) refused: u64,
}

/// Subscribes to `plan.filters` filters, in SUBSCRIBE packets of
/// `plan.batch` with at most `plan.window` unacknowledged, reports how it
/// went on `ready`, then counts what arrives, in `tracker`, until `stop`.
pub(crate) async fn filter_subscriber(
    shared: Arc<Shared>,
    id: String,
    plan: FilterPlan,
    tracker: Tracker,
    ready: tokio::sync::oneshot::Sender<Subscribed>,
    mut stop: watch::Receiver<bool>,
) -> SubResult {
    let mut result = SubResult::new(tracker);
    let mut sub = Subscribed {
        granted: vec![false; plan.filters],
        ..Subscribed::default()
    };
    let Some(mut client) = shared.open(id).await else {
        let _ = ready.send(sub);
        return result;
    };
    let counters = &shared.counters;
    let batch = plan.batch.max(1);
    let window = plan.window.max(1);
    // Packet identifier of each SUBSCRIBE in flight -> its first filter.
    let mut pending = std::collections::HashMap::new();
    let mut next = 0usize;
    let mut acked_filters = 0usize;
    let start = Instant::now();
    let give_up = start + plan.timeout;
    let mut ready = Some(ready);
    loop {
        let mut turn = Turn::start();
        while let Some(ev) = result.next_event(&mut client, &mut turn) {
            match ev {
                ClientEvent::Subscribed(ack) => {
                    let Some(first) = pending.remove(&ack.packet_id) else {
                        continue;
                    };
                    for (k, code) in ack.reason_codes.iter().enumerate() {
                        let i = first + k;
                        if i >= plan.filters {
                            break;
                        }
                        if code.is_error() {
                            if sub.refused == 0 {
                                shared.errors.push(format!(
                                    "subscription to {:?} refused: {code}",
                                    filter_for(i)
                                ));
                            }
                            sub.refused += 1;
                        } else {
                            sub.granted[i] = true;
                        }
                    }
                    acked_filters = acked_filters.max(first + ack.reason_codes.len());
                }
                ClientEvent::Closed { reason, .. } => {
                    shared.lost(&client.close_error(reason));
                    if let Some(r) = ready.take() {
                        let _ = r.send(sub);
                    }
                    return result;
                }
                _ => {}
            }
        }
        result.end_turn(turn, counters);
        // Keep the window full: after the SUBACKs just handled and before
        // waiting, as nothing else would wake us.
        while ready.is_some() && next < plan.filters && pending.len() < window {
            let end = (next + batch).min(plan.filters);
            let subscriptions: Vec<Subscription> = (next..end)
                .filter_map(|i| {
                    MqttString::try_from(filter_for(i))
                        .ok()
                        .map(|filter| Subscription {
                            filter,
                            options: SubscriptionOptions::qos(plan.qos),
                        })
                })
                .collect();
            match client
                .session()
                .subscribe(subscriptions, Default::default())
            {
                Some(pid) => {
                    pending.insert(pid, next);
                    next = end;
                }
                None => {
                    shared.errors.push("cannot send SUBSCRIBE".into());
                    break;
                }
            }
        }
        if ready.is_some() && next >= plan.filters && pending.is_empty() {
            sub.took = Some(start.elapsed());
            result.granted = Some(format!("{} filters", plan.filters));
            if let Some(r) = ready.take() {
                let _ = r.send(std::mem::take(&mut sub));
            }
        }
        let subscribing = ready.is_some();
        let deadline = async {
            if subscribing {
                tokio::time::sleep_until(give_up.into()).await;
            } else {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            r = client.step() => if let Err(e) = r {
                shared.lost(&e);
                if let Some(r) = ready.take() {
                    let _ = r.send(sub);
                }
                return result;
            },
            () = deadline => {
                shared.errors.push(format!(
                    "{} of {} filters acknowledged after {} s; giving up",
                    acked_filters.min(plan.filters),
                    plan.filters,
                    plan.timeout.as_secs()
                ));
                if let Some(r) = ready.take() {
                    let _ = r.send(std::mem::take(&mut sub));
                }
                break;
            }
            _ = stop.changed() => break,
        }
    }
    if let Some(r) = ready.take() {
        let _ = r.send(sub);
    }
    shared.close(client).await;
    result
}
