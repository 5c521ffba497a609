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

use super::stats::{Counters, Errors, STAMP_LEN, Stamp, Tracker, new_histogram, unix_nanos};
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
    /// This process's run id, in every payload's [`Stamp`].
    pub(crate) run: u32,
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
                let published = client.publish_shared_at(&message, now);
                reused = Some(message);
                published
            } else if plan.qos == QoS::AtMostOnce {
                // Encoded straight from the message when nothing waits
                // before it.
                let topic = topics[rng.below(topics.len())].clone();
                let payload = payload(&mut arena, plan.size, &stamp);
                client.publish_at(Message::new(topic, payload, plan.qos, false), now)
            } else {
                let topic = if topics.len() == 1 {
                    topics[0].clone()
                } else {
                    topics[rng.below(topics.len())].clone()
                };
                let payload = payload(&mut arena, plan.size, &stamp);
                let message = Message::new(topic, payload, plan.qos, false);
                // In flight at once, holding this `Arc`, when the window
                // allows: not through the session's queue.
                client.publish_shared_at(&Arc::new(message), now)
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

/// A small, fast pseudo-random generator (xorshift64*): picks topics, where
/// statistical quality hardly matters and a system call per pick would.
#[derive(Debug, Clone)]
pub(crate) struct XorShift(u64);

impl XorShift {
    pub(crate) fn new(seed: u64) -> Self {
        // Never zero, and distinct seeds give distinct streams.
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n` (`n` > 0).
    pub(crate) fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }
}

/// Writes the start of a payload: `stamp` (see [`Stamp`]), or as much of
/// its time as fits if `head` is shorter than [`STAMP_LEN`].
fn write_stamp(head: &mut [u8], stamp: &Stamp) {
    if head.len() >= STAMP_LEN {
        stamp.write(&mut &mut head[..STAMP_LEN]);
    } else {
        let n = head.len().min(8);
        head[..n].copy_from_slice(&stamp.at.to_be_bytes()[..n]);
    }
}

/// A payload of `size` bytes that starts with `stamp` (see
/// [`write_stamp`]), then filler. Payloads are cut from one buffer to
/// spare an allocation per message.
fn payload(arena: &mut BytesMut, size: usize, stamp: &Stamp) -> bytes::Bytes {
    if arena.capacity() < size {
        arena.reserve(size.max(WRITE_HIGH_WATER));
    }
    arena.put_bytes(b'x', size);
    write_stamp(arena, stamp);
    arena.split().freeze()
}

/// A payload of `size` bytes in a buffer of its own, that [`restamp`] can
/// take back while no one else holds it.
fn own_payload(size: usize, stamp: &Stamp) -> bytes::Bytes {
    let mut b = vec![b'x'; size];
    write_stamp(&mut b, stamp);
    bytes::Bytes::from(b)
}

/// Rewrites the stamp of `message` in place, if no one else holds the
/// message nor its payload (the session sent it at once, and queued no
/// reference); false otherwise, and then it is left as it was.
fn restamp(message: &mut Arc<Message>, stamp: &Stamp) -> bool {
    let Some(m) = Arc::get_mut(message) else {
        return false;
    };
    match std::mem::take(&mut m.payload).try_into_mut() {
        Ok(mut b) => {
            write_stamp(&mut b, stamp);
            m.payload = b.freeze();
            true
        }
        Err(shared) => {
            m.payload = shared;
            false
        }
    }
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
    /// What it received, message by message.
    pub(crate) tracker: Tracker,
}

/// The messages one turn of a subscriber's loop received.
struct Turn {
    received: u64,
    /// Those neither duplicates nor foreign.
    fresh: u64,
    /// When the turn began, in nanoseconds since the UNIX epoch: the
    /// arrival time of what it receives.
    now: u64,
}

impl Turn {
    fn start() -> Self {
        Self {
            received: 0,
            fresh: 0,
            now: unix_nanos(),
        }
    }
}

impl SubResult {
    fn new(tracker: Tracker) -> Self {
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
    fn next_event(&mut self, client: &mut Client, turn: &mut Turn) -> Option<ClientEvent> {
        let (latency, tracker, now) = (&mut self.latency, &mut self.tracker, turn.now);
        let (received, fresh) = (&mut turn.received, &mut turn.fresh);
        client.poll_event_with(|m| {
            *received += 1;
            *fresh += u64::from(tracker.arrive(&m.payload));
            record_latency(latency, &m.payload, now);
        })
    }

    /// Adds what `turn` received to the result and to the shared counters.
    fn end_turn(&mut self, turn: Turn, counters: &Counters) {
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

/// Connects, reports the time to CONNACK (`None` on failure) on
/// `opened`, and holds the connection (answering keep-alive) until `stop`.
/// `permit`, if any, is released once the attempt is over (`--concurrency`).
pub(crate) async fn connection(
    shared: Arc<Shared>,
    id: String,
    opened: tokio::sync::mpsc::Sender<Option<Duration>>,
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
    mut stop: watch::Receiver<bool>,
) {
    let began = Instant::now();
    let client = shared.open(id).await;
    drop(permit);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(seq: u64) -> Stamp {
        Stamp {
            at: 5,
            run: 6,
            publisher: 7,
            seq,
        }
    }

    #[test]
    fn payloads_start_with_their_stamp() {
        let mut arena = BytesMut::new();
        let a = payload(&mut arena, 64, &stamp(1));
        let b = payload(&mut arena, 64, &stamp(2));
        assert_eq!((a.len(), b.len()), (64, 64));
        assert_eq!(Stamp::parse(&a), Some(stamp(1)));
        assert_eq!(Stamp::parse(&b), Some(stamp(2)));
        assert!(a[STAMP_LEN..].iter().all(|&c| c == b'x'));
        // Too short for a stamp: as much of the time as fits.
        let c = payload(&mut arena, 12, &stamp(3));
        assert_eq!(&c[..8], &5u64.to_be_bytes());
        assert_eq!(Stamp::parse(&c), None);
        assert_eq!(payload(&mut arena, 3, &stamp(3)).as_ref(), &[0, 0, 0]);
    }

    #[test]
    fn a_message_is_restamped_only_while_no_one_else_holds_it() {
        let topic = MqttString::try_from("t".to_owned()).expect("a topic");
        let payload = own_payload(32, &stamp(0));
        let mut m = Arc::new(Message::new(topic, payload, QoS::AtMostOnce, false));
        assert!(restamp(&mut m, &stamp(1)));
        assert_eq!(Stamp::parse(&m.payload), Some(stamp(1)));
        // Queued by the session: left alone.
        let queued = m.clone();
        assert!(!restamp(&mut m, &stamp(2)));
        drop(queued);
        // Its payload held elsewhere: left alone too.
        let held = m.payload.clone();
        assert!(!restamp(&mut m, &stamp(2)));
        assert_eq!(Stamp::parse(&m.payload), Some(stamp(1)));
        assert_eq!(Stamp::parse(&held), Some(stamp(1)));
        drop(held);
        assert!(restamp(&mut m, &stamp(3)));
        assert_eq!(Stamp::parse(&m.payload), Some(stamp(3)));
        assert_eq!(m.payload.len(), 32);
    }
}
