//! A bridge's connection to the remote broker: a loop that moves bytes
//! between the socket and `mqtt-session`'s [`ClientConnection`], messages
//! between it and the local session, and what must be stored between both
//! and the store.
//!
//! # The store, for what goes out
//!
//! A message pulled from the mailbox keeps its place in the store (its
//! [`Delivery::tag`] is its sequence number there) until the remote broker
//! completes it: [`ClientEvent::Published`] gives the tag back, and the
//! entry is removed. A restart resends what is left, as new messages.
//!
//! The packet identifiers of QoS 2 messages are the one thing more that is
//! stored, with `clean_start = false` (with a clean start the remote broker
//! forgets them at each connection): a QoS 2 PUBLISH leaves only once its
//! identifier is stored as one the remote broker may hold. After a
//! restart, those identifiers are released (PUBREL) before being used
//! again; otherwise a new message sent under one that the remote broker
//! still held unreleased would be taken there for a duplicate, and lost.
//! The message itself is not stored under it (its queue entry is): resent
//! as a new message after a restart, it may reach the remote broker twice.
//! Storing the whole in-flight state, as the broker does for its own
//! clients, would make it exactly once, at the cost of re-keying the
//! messages a remote broker without our session makes the client resend
//! (`mqtt-session` does that resend itself, keeping each message's tag):
//! a rare case, left for later.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use mqtt_codec::{
    Connect, Disconnect, MqttString, Packet, PacketId, QoS, ReasonCode, RetainHandling,
    Subscription, SubscriptionOptions,
};
use mqtt_session::{
    ClientCloseReason, ClientConfig, ClientConnection, ClientEvent, Delivery, InflightStage,
    Message, QueueLimits, SessionState, Transmit,
};
use mqtt_store::{Batch, StoreError};
use mqtt_topic::TopicName;
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, watch};

use super::config::{BridgeConfig, BridgeProtocol};
use super::local::Local;
use super::transport::Io;
use super::{BridgeStats, publish_state};
use crate::broker::Broker;

/// What the client connection may hold for the remote broker beyond the
/// mailbox: what a restart restores, at most the store's backstop for one
/// queue, plus what is in flight. Never reached in practice: the mailbox's
/// limits bound what is pulled, and only when the client's queue is empty.
const CLIENT_QUEUE: QueueLimits = QueueLimits {
    max_messages: 200_000,
    max_bytes: 512 * 1024 * 1024,
    overflow: mqtt_session::Overflow::DropNewest,
};
/// Read buffer growth step.
const READ_CHUNK: usize = 16 * 1024;

fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// How a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Outcome {
    /// The broker is shutting down.
    Shutdown,
    /// It was accepted (CONNACK) and later lost: reconnect soon.
    WasConnected,
    /// CONNACK 0x01 / 0x84 (protocol version): the remote broker does not
    /// understand the bridge bit, if it was set.
    RefusedBridgeBit,
    /// It never got accepted.
    Failed,
}

/// A QoS 2 message in flight to the remote broker.
#[derive(Debug, Clone, Copy)]
struct Qos2 {
    /// Its queue entry in the store (0: none).
    tag: u64,
    /// PUBREC received, PUBREL sent: the client session keeps only the
    /// identifier, not the tag.
    released: bool,
    /// Its identifier is stored as one the remote broker may hold.
    held: bool,
}

/// What the store or the broker tells the connection's loop.
enum Done {
    /// A batch of the loop's committed.
    Batch(u64, Result<(), StoreError>),
    /// A message from the remote broker was taken (stored) by this broker.
    Taken(PacketId, Result<(), StoreError>),
}

/// A bridge's state across connections.
pub(super) struct Bridge {
    config: Arc<BridgeConfig>,
    stats: Arc<BridgeStats>,
    local: Local,
    /// The client session between connections: messages queued for, or in
    /// flight to, the remote broker (remote topics, tags of the store).
    carry: Option<SessionState>,
    /// QoS 2 messages in flight, by packet identifier.
    qos2: BTreeMap<PacketId, Qos2>,
}

impl Bridge {
    /// Claims the local session and takes what the store restored of it.
    pub(super) fn new(
        broker: &Arc<Broker>,
        config: Arc<BridgeConfig>,
        stats: Arc<BridgeStats>,
    ) -> Self {
        let (local, restored) = Local::claim(broker, &config);
        let _ = stats.session.set(local.handle().clone());
        let mut bridge = Self {
            config,
            stats,
            local,
            carry: None,
            qos2: BTreeMap::new(),
        };
        let mut carry = SessionState::new(bridge.remote_client_id(), 0);
        let mut batch = None;
        for inflight in restored.inflight {
            // Identifiers the remote broker may still hold: released first.
            let id = inflight.packet_id;
            bridge.qos2.insert(
                id,
                Qos2 {
                    tag: 0,
                    released: true,
                    held: true,
                },
            );
            carry.inflight.push(mqtt_session::Inflight {
                packet_id: id,
                stage: InflightStage::Released,
            });
        }
        for d in restored.queued {
            if let Some(d) = bridge.outgoing(d, &mut batch) {
                let _ = carry.enqueue(d, &CLIENT_QUEUE);
            }
        }
        bridge.stats.in_transit.store(
            (carry.queued.len() + carry.inflight.len()) as u64,
            Ordering::Relaxed,
        );
        bridge.carry = Some(carry);
        bridge.submit(batch, None);
        bridge
    }

    fn remote_client_id(&self) -> MqttString {
        MqttString::try_from(self.config.remote_client_id()).unwrap_or_default()
    }

    fn broker(&self) -> &Broker {
        &self.local.broker
    }

    /// The remote delivery of a local one: its topic remapped by the first
    /// rule that sends it out. `None` (dropped, counted, forgotten from the
    /// store) if none does.
    fn outgoing(&self, d: Delivery, batch: &mut Option<Batch>) -> Option<Delivery> {
        let remote = self
            .config
            .topics
            .iter()
            .find_map(|r| r.to_remote(d.message.topic.as_str()))
            .and_then(|t| MqttString::try_from(t).ok());
        let Some(topic) = remote else {
            self.stats.unmapped.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(topic = %d.message.topic, "no rule maps this topic out; dropped");
            self.local.forget_queued(d.tag, batch);
            return None;
        };
        let message = Message {
            topic,
            ..Message::clone(&d.message)
        };
        Some(Delivery {
            message: Arc::new(message),
            qos: d.qos,
            retain: d.retain,
            subscription_ids: Default::default(),
            shared_group: None,
            tag: d.tag,
        })
    }

    /// Submits a batch, if any; `done` hears of its commit.
    fn submit(&self, batch: Option<Batch>, done: Option<(u64, &mpsc::UnboundedSender<Done>)>) {
        let (Some(persist), Some(b)) = (&self.broker().persist, batch) else {
            return;
        };
        match done {
            Some((ticket, tx)) => {
                let tx = tx.clone();
                persist.submit(b, move |r| {
                    let _ = tx.send(Done::Batch(ticket, r));
                });
            }
            None => persist.submit_logged(b),
        }
    }

    /// The CONNECT of a new connection.
    fn connect_packet(&self, try_private: bool) -> Connect {
        let c = &self.config;
        let mut connect = Connect::new(c.protocol.version(), self.remote_client_id());
        connect.clean_start = c.clean_start;
        connect.keep_alive = c.keep_alive;
        connect.username = c
            .username
            .as_ref()
            .and_then(|u| MqttString::try_from(u.clone()).ok());
        connect.password = c.password.as_ref().map(|p| p.clone().into_bytes().into());
        if c.protocol == BridgeProtocol::V5 {
            connect.properties.session_expiry_interval = Some(c.session_expiry);
        } else {
            connect.bridge = try_private;
        }
        connect
    }

    /// The local session stops (the broker shuts down).
    pub(super) fn stop(&self) {
        self.local.set_connected(false);
        self.stats.connected.store(false, Ordering::Relaxed);
    }

    /// Serves one connection until it ends.
    pub(super) async fn serve(
        &mut self,
        stream: Box<dyn Io>,
        try_private: bool,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Outcome {
        let started = now();
        let broker = self.broker();
        let config = ClientConfig {
            receive_maximum: self.config.receive_maximum,
            max_packet_size: broker.config.max_packet_size,
            topic_alias_maximum: broker.config.topic_alias_maximum,
            queue: CLIENT_QUEUE,
        };
        let carried = self.carry.take();
        let (resume, replay) = if self.config.clean_start {
            (None, carried)
        } else {
            (carried, None)
        };
        let mut conn =
            ClientConnection::new(config, self.connect_packet(try_private), resume, started);
        conn.set_manual_acks(true);
        if let Some(s) = replay {
            // A clean start: what the last connection left is sent anew
            // (flows past PUBREC are settled at CONNACK, by `qos2`).
            let first = s.inflight.into_iter().filter_map(|i| match i.stage {
                InflightStage::Published(d) => Some(d),
                InflightStage::Released => None,
            });
            for d in first.chain(s.queued) {
                let _ = conn.publish(d);
            }
        }
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        let mut link = Link {
            bridge: self,
            conn,
            wbuf: BytesMut::new(),
            awaiting: 0,
            done_tx,
            batch: None,
            ticket: None,
            next_ticket: 0,
            committed: 0,
            held: Vec::new(),
            outcome: Outcome::Failed,
            connected: false,
        };
        link.run(stream, done_rx, shutdown, started).await
    }
}

/// One connection's state.
struct Link<'a> {
    bridge: &'a mut Bridge,
    conn: ClientConnection,
    wbuf: BytesMut,
    /// Messages from the remote broker routed here whose acknowledgement
    /// waits for their store commit; at most `receive_maximum` before the
    /// loop stops reading.
    awaiting: usize,
    done_tx: mpsc::UnboundedSender<Done>,
    /// This turn's store changes.
    batch: Option<Batch>,
    /// The ticket of this turn's batch, if packets wait for it.
    ticket: Option<u64>,
    next_ticket: u64,
    /// Every batch up to this ticket has committed (the group commit
    /// completes in order).
    committed: u64,
    /// Packets waiting for the commit of their ticket, in order.
    held: Vec<(u64, Packet)>,
    outcome: Outcome,
    connected: bool,
}

impl Link<'_> {
    async fn run(
        &mut self,
        stream: Box<dyn Io>,
        mut done_rx: mpsc::UnboundedReceiver<Done>,
        shutdown: &mut watch::Receiver<bool>,
        started: Instant,
    ) -> Outcome {
        let (mut reader, mut writer) = tokio::io::split(stream);
        let mut rbuf = BytesMut::new();
        let mut read_open = true;
        let mut write_failed = false;
        let mut unflushed = false;
        let mut stopping = false;
        let connack_deadline = started + Duration::from_secs(self.bridge.config.connect_timeout);
        let handle = self.bridge.local.handle().clone();
        loop {
            let turn = now();
            self.decode(&mut rbuf, turn);
            self.events(turn);
            self.pull(turn);
            self.transmit(turn);
            self.flush_batch();
            self.bridge.stats.in_transit.store(
                (self.conn.queued() + self.conn.inflight()) as u64,
                Ordering::Relaxed,
            );
            if self.conn.is_closed() && (write_failed || (self.wbuf.is_empty() && !unflushed)) {
                break;
            }
            let deadline = match self.conn.poll_timeout() {
                _ if !self.connected && !self.conn.is_closed() => Some(connack_deadline),
                t => t,
            };
            let sleep = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            let max_awaiting = usize::from(self.bridge.config.receive_maximum);
            let can_read = read_open && !self.conn.is_closed() && self.awaiting < max_awaiting;
            let can_pull = self.conn.is_connected()
                && self.conn.queued() == 0
                && self.conn.inflight() < usize::from(self.bridge.config.max_inflight_messages);
            tokio::select! {
                r = reader.read_buf(&mut rbuf), if can_read => {
                    match r {
                        Ok(0) | Err(_) => {
                            read_open = false;
                            self.conn.connection_lost();
                        }
                        Ok(_) => {
                            if rbuf.capacity() - rbuf.len() < READ_CHUNK / 4 {
                                rbuf.reserve(READ_CHUNK);
                            }
                        }
                    }
                }
                // Writes while there is something to write, then flushes
                // (TLS may hold what it was given until then).
                r = std::future::poll_fn(|cx| {
                    if self.wbuf.is_empty() {
                        std::pin::Pin::new(&mut writer).poll_flush(cx).map_ok(|()| 0)
                    } else {
                        std::pin::Pin::new(&mut writer).poll_write(cx, &self.wbuf)
                    }
                }), if (!self.wbuf.is_empty() || unflushed) && !write_failed => {
                    match r {
                        Ok(0) if self.wbuf.is_empty() => unflushed = false,
                        Ok(n) if n > 0 => {
                            self.wbuf.advance(n);
                            unflushed = true;
                        }
                        _ => {
                            write_failed = true;
                            self.wbuf.clear();
                            self.conn.connection_lost();
                        }
                    }
                }
                _ = handle.notify.notified(), if can_pull => {}
                () = sleep => {
                    let at = now();
                    if !self.connected && at >= connack_deadline {
                        tracing::warn!("no CONNACK from the remote broker within connect_timeout");
                        self.conn.connection_lost();
                    }
                    self.conn.handle_timeout(at);
                }
                Some(done) = done_rx.recv() => {
                    self.on_done(done);
                    while let Ok(done) = done_rx.try_recv() {
                        self.on_done(done);
                    }
                }
                _ = shutdown.changed(), if !stopping => {
                    stopping = true;
                    self.outcome = Outcome::Shutdown;
                    self.conn.disconnect(Disconnect::new(ReasonCode::Success));
                }
            }
        }
        // The DISCONNECT or what else was written goes; the close follows.
        let _ = tokio::time::timeout(Duration::from_secs(1), writer.shutdown()).await;
        if self.connected {
            self.bridge.local.set_connected(false);
            self.bridge.stats.connected.store(false, Ordering::Relaxed);
            publish_state(self.bridge.broker(), &self.bridge.config.name, false);
        }
        let carry = self.bridge.carry.as_ref();
        self.bridge.stats.in_transit.store(
            carry.map_or(0, |s| s.queued.len() + s.inflight.len()) as u64,
            Ordering::Relaxed,
        );
        if *shutdown.borrow() {
            return Outcome::Shutdown;
        }
        self.outcome
    }

    /// Hands every whole packet read to the connection, while messages
    /// waiting for this broker leave room.
    fn decode(&mut self, rbuf: &mut BytesMut, now: Instant) {
        let limits = self.conn.decode_limits();
        let max = usize::from(self.bridge.config.receive_maximum);
        while !rbuf.is_empty() && !self.conn.is_closed() && self.awaiting < max {
            match Packet::decode(rbuf, self.conn.version(), &limits) {
                Ok(Some(packet)) => {
                    if let Err(e) = self.conn.handle_packet(now, packet) {
                        tracing::warn!(error = %e, "the remote broker broke the protocol");
                    }
                    self.events(now);
                }
                Ok(None) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "malformed packet from the remote broker");
                    self.conn.handle_decode_error(e);
                    rbuf.clear();
                }
            }
        }
    }

    fn events(&mut self, now: Instant) {
        while let Some(event) = self.conn.poll_event() {
            match event {
                ClientEvent::Connected(ack) => self.on_connected(ack.session_present, now),
                ClientEvent::Publish { message, packet_id } => {
                    self.on_message(message, packet_id, now)
                }
                ClientEvent::Message(message) => self.on_message(message, None, now),
                ClientEvent::Published {
                    packet_id,
                    reason_code,
                    tag,
                } => self.on_completed(packet_id, reason_code, tag),
                ClientEvent::Subscribed(ack) => {
                    for (code, f) in ack.reason_codes.iter().zip(self.remote_filters()) {
                        if code.is_error() {
                            tracing::warn!(filter = %f.filter, reason = %code, "the remote broker refused a subscription of the bridge");
                        }
                    }
                }
                ClientEvent::Unsubscribed(_) | ClientEvent::Auth(_) => {}
                ClientEvent::Released { packet_id } => {
                    self.conn.complete_release(packet_id);
                }
                ClientEvent::Closed { reason, session } => self.on_closed(reason, session),
            }
        }
    }

    /// The subscriptions at the remote broker: the remote filters of the
    /// rules that take messages in, No Local (5.0: what the bridge
    /// publishes there does not come back) and Retain As Published
    /// (retained messages stay retained here).
    fn remote_filters(&self) -> Vec<Subscription> {
        let mut subs: Vec<Subscription> = Vec::new();
        for rule in self
            .bridge
            .config
            .topics
            .iter()
            .filter(|r| r.direction.incoming())
        {
            let Ok(filter) = MqttString::try_from(rule.remote_filter()) else {
                continue;
            };
            match subs.iter_mut().find(|s| s.filter == filter) {
                Some(s) => s.options.qos = s.options.qos.max(rule.qos()),
                None => subs.push(Subscription {
                    filter,
                    options: SubscriptionOptions {
                        qos: rule.qos(),
                        no_local: true,
                        retain_as_published: true,
                        // Retained messages once, not at every reconnection
                        // of a session the remote broker kept (5.0).
                        retain_handling: RetainHandling::SendIfNew,
                    },
                }),
            }
        }
        subs
    }

    fn on_connected(&mut self, session_present: bool, now: Instant) {
        self.connected = true;
        self.outcome = Outcome::WasConnected;
        let b = &mut *self.bridge;
        tracing::info!(session_present, "bridge connected");
        b.stats.connected.store(true, Ordering::Relaxed);
        b.local.set_connected(true);
        publish_state(&b.local.broker, &b.config.name, true);
        if !session_present {
            // The remote broker has no session of ours: what was past
            // PUBREC there is settled (it has the message, or lost it with
            // its session), and no identifier is held any more.
            for (id, flow) in std::mem::take(&mut b.qos2) {
                if flow.released {
                    b.local.forget_queued(flow.tag, &mut self.batch);
                }
                if flow.held {
                    b.local.release_id(id, &mut self.batch);
                }
            }
            // Nor our retained messages, perhaps.
            for d in b.local.retained(&b.config, now) {
                if let Some(d) = b.outgoing(d, &mut self.batch) {
                    let _ = self.conn.publish(d);
                }
            }
        }
        let subs = self.remote_filters();
        if !subs.is_empty() {
            self.conn.subscribe(subs, Default::default());
        }
        // Whatever waits in the mailbox goes now.
        self.bridge.local.handle().notify.notify_one();
    }

    /// A message from the remote broker: published here under its local
    /// topic, acknowledged once taken.
    fn on_message(&mut self, message: Message, packet_id: Option<PacketId>, now: Instant) {
        let b = &*self.bridge;
        b.stats.received.fetch_add(1, Ordering::Relaxed);
        let max_levels = b.local.broker.config.max_topic_levels;
        let topic = b
            .config
            .topics
            .iter()
            .find_map(|r| r.to_local(message.topic.as_str()))
            .and_then(|t| TopicName::new(&t).ok())
            .filter(|t| t.level_count() <= max_levels);
        let Some(topic) = topic else {
            b.stats.unmapped.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(topic = %message.topic, "no rule maps this topic in; dropped");
            if let Some(id) = packet_id {
                self.conn.acknowledge(id, ReasonCode::Success);
            }
            return;
        };
        let Ok(name) = MqttString::try_from(topic.as_str().to_owned()) else {
            return;
        };
        let message = Message {
            topic: name,
            ..message
        };
        let done =
            packet_id
                .filter(|_| b.local.persistent)
                .map(|id| -> crate::broker::CommitDone {
                    let tx = self.done_tx.clone();
                    Box::new(move |r| {
                        let _ = tx.send(Done::Taken(id, r));
                    })
                });
        let routed = b.local.publish(&topic, Arc::new(message), done, now);
        if let Some(id) = packet_id {
            if routed.committing {
                self.awaiting += 1;
            } else {
                self.conn.acknowledge(id, ReasonCode::Success);
            }
        }
    }

    /// One of our messages completed: the remote broker has it (or
    /// refused it: dropped, as an MQTT 5.0 client would).
    fn on_completed(&mut self, packet_id: PacketId, reason: ReasonCode, tag: u64) {
        let b = &mut *self.bridge;
        let flow = b.qos2.remove(&packet_id);
        let tag = if tag != 0 {
            tag
        } else {
            flow.map_or(0, |f| f.tag)
        };
        b.local.forget_queued(tag, &mut self.batch);
        if flow.is_some_and(|f| f.held) {
            b.local.release_id(packet_id, &mut self.batch);
        }
        if reason.is_error() {
            tracing::warn!(%reason, "the remote broker refused a message of the bridge; dropped");
        }
    }

    fn on_closed(&mut self, reason: ClientCloseReason, session: SessionState) {
        match &reason {
            ClientCloseReason::Refused(code) => {
                tracing::warn!(reason = %code, "the remote broker refused the bridge's CONNECT");
                if *code == ReasonCode::UnsupportedProtocolVersion {
                    self.outcome = Outcome::RefusedBridgeBit;
                }
            }
            ClientCloseReason::Disconnected => {}
            other if self.connected => {
                tracing::warn!(reason = ?other, "bridge connection lost")
            }
            other => tracing::warn!(reason = ?other, "bridge connection failed"),
        }
        self.bridge.carry = Some(session);
    }

    /// A store commit completed, or this broker took a message.
    fn on_done(&mut self, done: Done) {
        match done {
            Done::Batch(ticket, result) => {
                if let Err(e) = result {
                    tracing::error!(error = %e, "store commit failed");
                }
                self.committed = self.committed.max(ticket);
                let committed = self.committed;
                let ready = self
                    .held
                    .iter()
                    .take_while(|(t, _)| *t <= committed)
                    .count();
                let version = self.conn.version();
                for (_, packet) in self.held.drain(..ready) {
                    if let Err(e) = packet.encode(version, &mut self.wbuf) {
                        tracing::warn!(error = %e, "cannot encode packet");
                    }
                }
            }
            Done::Taken(id, result) => {
                self.awaiting = self.awaiting.saturating_sub(1);
                match result {
                    Ok(()) => {
                        self.conn.acknowledge(id, ReasonCode::Success);
                    }
                    Err(e) => {
                        // Not acknowledged: the remote broker sends it again
                        // after a reconnection.
                        tracing::error!(error = %e, "a message from the remote broker could not be stored; reconnecting");
                        self.conn.disconnect(Disconnect::new(e.reason_code()));
                    }
                }
            }
        }
    }

    /// Moves deliveries from the mailbox into the connection as the window
    /// allows (only when the connection's own queue is empty: the mailbox
    /// stays the one bounded queue).
    fn pull(&mut self, now: Instant) {
        if !self.conn.is_connected() || self.conn.queued() > 0 {
            return;
        }
        let room = usize::from(self.bridge.config.max_inflight_messages)
            .saturating_sub(self.conn.inflight());
        let mut pulled = Vec::new();
        self.bridge
            .local
            .pull(room, now, &mut self.batch, |d| pulled.push(d));
        for d in pulled {
            if let Some(d) = self.bridge.outgoing(d, &mut self.batch) {
                let tag = d.tag;
                if let Err(e) = self.conn.publish(d) {
                    tracing::warn!(reason = ?e, "a message for the remote broker was dropped");
                    self.bridge.local.forget_queued(tag, &mut self.batch);
                }
            }
        }
    }

    /// Encodes what the connection sends; with stored identifiers, a new
    /// QoS 2 PUBLISH (and what follows it) waits for the commit that
    /// stores its identifier.
    fn transmit(&mut self, now: Instant) {
        let store_ids = self.bridge.local.persistent && !self.bridge.config.clean_start;
        let version = self.conn.version();
        let mut fresh_qos2 = Vec::new();
        let mut released = Vec::new();
        let mut packets = Vec::new();
        let lend = !store_ids && self.held.is_empty();
        let (wbuf, stats) = (&mut self.wbuf, &self.bridge.stats);
        self.conn.poll_transmit(now, |t| {
            match &t {
                Transmit::Publish(p) => {
                    stats.sent.fetch_add(1, Ordering::Relaxed);
                    if p.qos == QoS::ExactlyOnce {
                        fresh_qos2.extend(p.packet_id);
                    }
                }
                Transmit::Packet(Packet::PubRel(a)) if a.reason_code == ReasonCode::Success => {
                    released.push(a.packet_id);
                }
                Transmit::Packet(_) => {}
            }
            if lend {
                if let Err(e) = t.encode(version, wbuf) {
                    tracing::warn!(error = %e, "cannot encode packet");
                }
            } else {
                packets.push(t.to_packet());
            }
        });
        for id in &fresh_qos2 {
            let tag = self.conn.inflight_delivery(*id).map_or(0, |d| d.tag);
            self.bridge.qos2.insert(
                *id,
                Qos2 {
                    tag,
                    released: false,
                    held: store_ids,
                },
            );
            if store_ids {
                self.bridge.local.hold_id(*id, &mut self.batch);
            }
        }
        for id in released {
            if let Some(flow) = self.bridge.qos2.get_mut(&id) {
                flow.released = true;
            }
        }
        let mut gate = self.held.last().map(|(t, _)| *t);
        for packet in packets {
            let fresh = matches!(&packet, Packet::Publish(p)
                if p.qos == QoS::ExactlyOnce && !p.dup && store_ids);
            if fresh {
                gate = Some(*self.ticket.get_or_insert_with(|| {
                    self.next_ticket += 1;
                    self.next_ticket
                }));
            }
            match gate {
                Some(t) if t > self.committed => self.held.push((t, packet)),
                _ => {
                    if let Err(e) = packet.encode(version, &mut self.wbuf) {
                        tracing::warn!(error = %e, "cannot encode packet");
                    }
                }
            }
        }
    }

    /// Submits this turn's batch.
    fn flush_batch(&mut self) {
        let ticket = self.ticket.take();
        let batch = self.batch.take();
        if batch.is_none()
            && let Some(t) = ticket
        {
            // Nothing to wait for after all.
            self.on_done(Done::Batch(t, Ok(())));
            return;
        }
        self.bridge
            .submit(batch, ticket.map(|t| (t, &self.done_tx)));
    }
}
