//! The benchmark's client tasks: a publisher, a subscriber, and a client
//! that only connects. Each owns one connection.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use bytes::{BufMut, BytesMut};
use hdrhistogram::Histogram;
use mqtt_codec::{Connect, MqttString, QoS, Subscription, SubscriptionOptions};
use mqtt_session::{ClientConfig, ClientEvent, Message};
use tokio::sync::watch;

use super::stats::{Counters, Errors, new_histogram, unix_nanos};
use crate::client::{self, Client, ClientError};
use crate::transport::Endpoint;

/// Encoded bytes a publisher lets pile up before it waits for the socket:
/// enough for one large write, bounded so open loop cannot eat memory.
const WRITE_HIGH_WATER: usize = 64 * 1024;

/// What every client of a run shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) endpoint: Endpoint,
    /// A CONNECT template; the client id is replaced per client.
    pub(crate) connect: Connect,
    pub(crate) timeout: Duration,
    pub(crate) counters: Arc<Counters>,
    pub(crate) errors: Errors,
}

impl Shared {
    /// Opens the connection of client `id`, counting the outcome.
    pub(crate) async fn open(&self, id: String) -> Option<Client> {
        let mut connect = self.connect.clone();
        connect.client_id = match MqttString::try_from(id) {
            Ok(id) => id,
            Err(e) => {
                self.errors.push(format!("client id: {e}"));
                return None;
            }
        };
        match client::open(
            &self.endpoint,
            connect,
            ClientConfig::default(),
            self.timeout,
        )
        .await
        {
            Ok((c, _)) => {
                self.counters.connected.fetch_add(1, Relaxed);
                Some(c)
            }
            Err(e) => {
                self.counters.connect_failed.fetch_add(1, Relaxed);
                self.errors.push(e);
                None
            }
        }
    }

    /// A connection ended under us.
    fn lost(&self, e: &ClientError) {
        self.counters.connected.fetch_sub(1, Relaxed);
        self.counters.disconnects.fetch_add(1, Relaxed);
        self.errors.push(e.to_string());
    }

    async fn close(&self, client: Client) {
        self.counters.connected.fetch_sub(1, Relaxed);
        let _ = client.disconnect().await;
    }
}

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
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct PubResult {
    pub(crate) sent: u64,
    pub(crate) acked: u64,
    /// Whether it connected at all.
    pub(crate) connected: bool,
}

/// Publishes on `topic` following `plan`, until its count, its deadline or
/// `stop`.
pub(crate) async fn publisher(
    shared: Arc<Shared>,
    id: String,
    topic: MqttString,
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
    let window = if plan.qos == QoS::AtMostOnce {
        usize::MAX
    } else {
        plan.inflight.max(1)
    };
    let limit = plan.count.unwrap_or(u64::MAX);
    let mut arena = BytesMut::new();
    let mut stopped = *stop.borrow();
    loop {
        let mut acked = 0;
        while let Some(ev) = client.poll_event() {
            match ev {
                ClientEvent::Published { reason_code, .. } if reason_code.is_error() => {
                    counters.publish_failed.fetch_add(1, Relaxed);
                }
                ClientEvent::Published { .. } => acked += 1,
                ClientEvent::Closed { reason, .. } => {
                    shared.lost(&client.close_error(reason));
                    counters.acked.fetch_add(acked, Relaxed);
                    result.acked += acked;
                    return result;
                }
                _ => {}
            }
        }
        counters.acked.fetch_add(acked, Relaxed);
        result.acked += acked;

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
        while result.sent < due.min(limit)
            && client.unacknowledged() < window
            && client.buffered() < WRITE_HIGH_WATER
        {
            let payload = payload(&mut arena, plan.size);
            let message = Message::new(topic.clone(), payload, plan.qos, false);
            if client.publish(message).is_err() {
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
        let mut acked = 0;
        while let Some(ev) = client.poll_event() {
            match ev {
                ClientEvent::Published { reason_code, .. } if reason_code.is_error() => {
                    counters.publish_failed.fetch_add(1, Relaxed);
                }
                ClientEvent::Published { .. } => acked += 1,
                ClientEvent::Closed { reason, .. } => {
                    shared.lost(&client.close_error(reason));
                    counters.acked.fetch_add(acked, Relaxed);
                    result.acked += acked;
                    return result;
                }
                _ => {}
            }
        }
        counters.acked.fetch_add(acked, Relaxed);
        result.acked += acked;
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
            plan.drain.as_secs()
        ));
    }
    shared.close(client).await;
    result
}

/// A payload of `size` bytes whose first 8 are the time now, in
/// nanoseconds since the UNIX epoch (big-endian). Payloads are cut from one
/// buffer to spare an allocation per message.
fn payload(arena: &mut BytesMut, size: usize) -> bytes::Bytes {
    if arena.capacity() < size {
        arena.reserve(size.max(WRITE_HIGH_WATER));
    }
    let ts = unix_nanos().to_be_bytes();
    let head = size.min(8);
    arena.put_slice(&ts[..head]);
    arena.put_bytes(b'x', size - head);
    arena.split().freeze()
}

/// What one subscriber did.
#[derive(Debug)]
pub(crate) struct SubResult {
    pub(crate) received: u64,
    pub(crate) latency: Histogram<u64>,
    /// The filter, if the subscription was granted.
    pub(crate) granted: Option<String>,
    /// When it received its last message.
    pub(crate) last: Option<Instant>,
}

/// Subscribes to `filter` and counts what arrives until `stop`. `ready`
/// is sent once the SUBACK is in (or the attempt failed).
pub(crate) async fn subscriber(
    shared: Arc<Shared>,
    id: String,
    filter: String,
    qos: QoS,
    ready: tokio::sync::mpsc::Sender<()>,
    mut stop: watch::Receiver<bool>,
) -> SubResult {
    let mut result = SubResult {
        received: 0,
        latency: new_histogram(),
        granted: None,
        last: None,
    };
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
        let mut received = 0;
        let now = unix_nanos();
        while let Some(ev) = client.poll_event() {
            match ev {
                ClientEvent::Message(m) => {
                    received += 1;
                    if m.payload.len() >= 8 {
                        let mut ts = [0u8; 8];
                        ts.copy_from_slice(&m.payload[..8]);
                        let sent = u64::from_be_bytes(ts);
                        let _ = result.latency.record(now.saturating_sub(sent).max(1));
                    }
                }
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
        if received > 0 {
            counters.received.fetch_add(received, Relaxed);
            result.received += received;
            result.last = Some(Instant::now());
        }
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

/// Connects, reports the time to CONNACK (`None` on failure) on
/// `opened`, and holds the connection (answering keep-alive) until `stop`.
pub(crate) async fn connection(
    shared: Arc<Shared>,
    id: String,
    opened: tokio::sync::mpsc::Sender<Option<Duration>>,
    mut stop: watch::Receiver<bool>,
) {
    let began = Instant::now();
    let client = shared.open(id).await;
    let _ = opened.send(client.as_ref().map(|_| began.elapsed())).await;
    let Some(mut client) = client else {
        return;
    };
    loop {
        while let Some(ev) = client.poll_event() {
            if let ClientEvent::Closed { reason, .. } = ev {
                shared.lost(&client.close_error(reason));
                return;
            }
        }
        if *stop.borrow() {
            break;
        }
        tokio::select! {
            r = client.step() => if let Err(e) = r {
                shared.lost(&e);
                return;
            },
            _ = stop.changed() => break,
        }
    }
    shared.close(client).await;
}
