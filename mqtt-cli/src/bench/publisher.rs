//! The publisher task: publishes stamped messages at a rate or as fast as
//! the connection takes them, and records which were acknowledged.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use mqtt_codec::{MqttString, QoS};
use mqtt_session::{ClientEvent, Message};
use tokio::sync::watch;

use super::payload::{own_payload, payload, restamp};
use super::rng::XorShift;
use super::shared::Shared;
use super::stamp::{Stamp, unix_nanos};
use crate::client::Client;

/// Encoded bytes a publisher lets pile up before it waits for the socket:
/// enough for one large write, bounded so open loop cannot eat memory.
pub(super) const WRITE_HIGH_WATER: usize = 64 * 1024;

/// What one publisher does.
#[derive(Debug, Clone)]
pub(crate) struct PubPlan {
    pub(crate) qos: QoS,
    pub(crate) size: usize,
    /// Messages per second; 0 for as fast as the connection takes them.
    pub(crate) rate: f64,
    /// Messages to send; `None` for no limit.
    pub(crate) count: Option<u64>,
    /// When to stop sending.
    pub(crate) deadline: Option<Instant>,
    /// QoS 1/2 messages unacknowledged at most.
    pub(crate) inflight: usize,
    /// How long to wait for the last acknowledgements.
    pub(crate) drain: Duration,
}

/// What one publisher did.
#[derive(Debug, Default, Clone)]
pub(crate) struct PubResult {
    /// Messages handed to the connection: sequence numbers `0..sent`.
    pub(crate) sent: u64,
    /// QoS 1/2 messages acknowledged with success.
    pub(crate) acked: u64,
    /// QoS 1/2 messages whose flow completed (PUBACK or PUBCOMP), with
    /// success or not. Acknowledgements come in the order of the PUBLISH
    /// packets (the ordering rules of MQTT §4.6, [MQTT-4.6.0-2], which
    /// brokers follow), so these are sequence numbers `0..completed`; the
    /// others were never acknowledged. A broker acknowledging out of order
    /// would turn some unacknowledged messages into losses: a failure
    /// either way.
    pub(crate) completed: u64,
    /// The sequence numbers acknowledged with an error reason code: not
    /// to be delivered.
    pub(crate) refused: Vec<u64>,
    /// Whether it connected at all.
    pub(crate) connected: bool,
}

/// Publishes on `topics` following `plan`, until its count, its deadline or
/// `stop`. With one topic every message goes to it; with several, each
/// message goes to one picked at random. `index` is the publisher's number
/// in the run, written in each payload's [`Stamp`] (and seeds the picks).
pub(crate) async fn publisher(
    shared: Arc<Shared>,
    id: String,
    topics: Arc<[MqttString]>,
    index: usize,
    plan: Arc<PubPlan>,
    mut stop: watch::Receiver<bool>,
) -> PubResult {
    let mut result = PubResult::default();
    let Some(mut client) = shared.open(id).await else {
        return result;
    };
    result.connected = true;
    let counters = &shared.counters;
    let start = Instant::now();
    // The same moment on the clock subscribers read: the origin of the
    // schedule written in the payloads in rate mode.
    let start_unix = unix_nanos();
    let window = if plan.qos == QoS::AtMostOnce {
        usize::MAX
    } else {
        plan.inflight.max(1)
    };
    let limit = plan.count.unwrap_or(u64::MAX);
    let mut arena = BytesMut::new();
    // QoS 0 to one topic: the message the session was last lent, reused
    // (its stamp rewritten in place) while no one else holds it.
    let mut reused: Option<Arc<Message>> = None;
    let mut rng = XorShift::new(index as u64 + 1);
    let publisher_id = u32::try_from(index).unwrap_or(u32::MAX);
    let mut stopped = *stop.borrow();
    if topics.is_empty() {
        shared.errors.push("no topic to publish to".into());
        stopped = true;
    }
    loop {
        if !take_acks(&shared, &mut client, &mut result) {
            return result;
        }

        let now = Instant::now();
        if result.sent >= limit || stopped || plan.deadline.is_some_and(|d| now >= d) {
            break;
        }
        let due = if plan.rate > 0.0 {
            (now.duration_since(start).as_secs_f64() * plan.rate) as u64 + 1
        } else {
            u64::MAX
        };
        let before = result.sent;
        // Open loop: one time for the messages made in one go (they leave
        // in the same write, and the clock is not read once per message).
        // Rate mode: each message carries the time it was due, start +
        // seq / rate, so that a publisher held back (by the window, the
        // socket, the broker) sends its late messages with the time they
        // should have left, and their latency shows the stall instead of
        // hiding it (coordinated omission).
        let go_time = if plan.rate > 0.0 { 0 } else { unix_nanos() };
        // Every payload differs (its sequence number): no payload, nor
        // message, is shared by the messages of a go any more. QoS 0 to one
        // topic, the common open-loop case, keeps a fast path: the session
        // encodes a message sent at once straight from it and keeps no
        // reference, so one message is reused, its stamp rewritten in place
        // (no allocation, no reference count). Otherwise each message is
        // made on its own: its payload written into the arena, a `Message`
        // (a reference count on the topic and one on the arena), and at
        // QoS 1/2 an `Arc` the session keeps until the acknowledgement.
        // Measured (release build, one publisher, open loop), generator
        // CPU per message: QoS 0 to one topic about 125 ns with one shared
        // message per go, 150 ns reused and restamped, 190 ns made each on
        // its own; with the subscriber's tracking, QoS 0 pubsub 220 -> 250
        // ns, QoS 1 pubsub 560 -> 620 ns.
        while result.sent < due.min(limit)
            && client.unacknowledged() < window
            && client.buffered() < WRITE_HIGH_WATER
        {
            let seq = result.sent;
            let at = if plan.rate > 0.0 {
                start_unix + (seq as f64 * 1e9 / plan.rate) as u64
            } else {
                go_time
            };
            let stamp = Stamp {
                at,
                run: shared.run,
                publisher: publisher_id,
                seq,
            };
            let published = if plan.qos == QoS::AtMostOnce && topics.len() == 1 {
                let fresh = || {
                    let payload = own_payload(plan.size, &stamp);
                    Arc::new(Message::new(topics[0].clone(), payload, plan.qos, false))
                };
                let message = match reused.take() {
                    Some(mut m) => {
                        if restamp(&mut m, &stamp) {
                            m
                        } else {
                            fresh()
                        }
                    }
                    None => fresh(),
                };
                let published = client.publish_at(message.clone(), now);
                reused = Some(message);
                published
            } else {
                // Through the session's queue, encoded at once while the
                // server's window has room.
                let topic = if topics.len() == 1 {
                    topics[0].clone()
                } else {
                    topics[rng.below(topics.len())].clone()
                };
                let payload = payload(&mut arena, plan.size, &stamp);
                client.publish_at(Message::new(topic, payload, plan.qos, false), now)
            };
            if published.is_err() {
                // The session's own queue is full: wait for the socket.
                break;
            }
            result.sent += 1;
        }
        counters.sent.fetch_add(result.sent - before, Relaxed);

        // Sleep until the next message is due, unless the connection has
        // work or the window is what holds us back.
        let waiting_on_rate = result.sent >= due && result.sent < limit;
        let wake = match (waiting_on_rate, plan.deadline) {
            (true, d) => {
                let next = start + Duration::from_secs_f64(result.sent as f64 / plan.rate);
                Some(d.map_or(next, |d| d.min(next)))
            }
            (false, d) => d,
        };
        let sleep = async {
            match wake {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            r = client.step() => if let Err(e) = r {
                shared.lost(&e);
                return result;
            },
            () = sleep => {}
            _ = stop.changed(), if !stopped => stopped = true,
        }
    }

    // The last acknowledgements, within the drain time.
    let drain_until = Instant::now() + plan.drain;
    loop {
        if !take_acks(&shared, &mut client, &mut result) {
            return result;
        }
        if client.unacknowledged() == 0 || Instant::now() >= drain_until {
            break;
        }
        match tokio::time::timeout_at(drain_until.into(), client.step()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                shared.lost(&e);
                return result;
            }
            Err(_) => break,
        }
    }
    let left = client.unacknowledged();
    if left > 0 {
        shared.errors.push(format!(
            "{left} message(s) unacknowledged after {} s",
            plan.drain.as_secs_f64()
        ));
    }
    shared.close(client).await;
    result
}

/// Counts the acknowledgements (and refusals) the client has reported;
/// false once the connection has closed.
fn take_acks(shared: &Shared, client: &mut Client, result: &mut PubResult) -> bool {
    let counters = &shared.counters;
    let mut acked = 0;
    let mut open = true;
    while let Some(ev) = client.poll_event() {
        match ev {
            ClientEvent::Published { reason_code, .. } => {
                // Completions come in the order of sending: this one is
                // sequence number `completed`.
                let seq = result.completed;
                result.completed += 1;
                if reason_code.is_error() {
                    counters.publish_failed.fetch_add(1, Relaxed);
                    result.refused.push(seq);
                } else {
                    acked += 1;
                }
            }
            ClientEvent::Closed { reason, .. } => {
                shared.lost(&client.close_error(reason));
                open = false;
                break;
            }
            _ => {}
        }
    }
    counters.acked.fetch_add(acked, Relaxed);
    result.acked += acked;
    open
}
