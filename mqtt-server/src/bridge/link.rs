//! A bridge's connection to the remote broker: a loop that moves bytes
//! between the socket and `mqtt-session`'s [`ClientConnection`], messages
//! between it and the local session, and what must be stored between both
//! and the store.
//!
//! What goes out, and what the store keeps of it: `outgoing.rs`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use mqtt_codec::{
    Connect, Disconnect, MqttString, Packet, PacketId, ReasonCode, RetainHandling, Subscription,
    SubscriptionOptions,
};
use mqtt_session::{
    ClientCloseReason, ClientConfig, ClientConnection, ClientEvent, InflightStage, Message,
    QueueLimits, SessionState,
};
use mqtt_store::{Batch, StoreError};
use mqtt_topic::TopicName;
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, watch};

use super::config::{BridgeConfig, BridgeProtocol};
use super::local::Local;
use super::outgoing::Qos2;
use super::transport::Io;
use super::{BridgeStats, publish_state};
use crate::broker::Broker;
use crate::handle::Live;

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

/// What the store or the broker tells the connection's loop.
pub(super) enum Done {
    /// A batch of the loop's committed.
    Batch(u64, Result<(), StoreError>),
    /// A message from the remote broker was taken (stored) by this broker.
    Taken(PacketId, Result<(), StoreError>),
}

/// A bridge's state across connections.
pub(super) struct Bridge {
    pub(super) config: Arc<BridgeConfig>,
    pub(super) stats: Arc<BridgeStats>,
    pub(super) local: Local,
    /// The client session between connections: messages queued for, or in
    /// flight to, the remote broker (remote topics, tags of the store).
    pub(super) carry: Option<SessionState>,
    /// QoS 2 messages in flight, by packet identifier.
    pub(super) qos2: BTreeMap<PacketId, Qos2>,
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

    pub(super) fn broker(&self) -> &Broker {
        &self.local.broker
    }

    /// Submits a batch, if any; `done` hears of its commit.
    pub(super) fn submit(
        &self,
        batch: Option<Batch>,
        done: Option<(u64, &mpsc::UnboundedSender<Done>)>,
    ) {
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

    /// Runs `fut`, answering the control channel meanwhile (while not
    /// connected: nothing to disconnect).
    pub(super) async fn idle<F: std::future::Future>(&self, fut: F) -> F::Output {
        tokio::pin!(fut);
        loop {
            tokio::select! {
                out = &mut fut => return out,
                request = std::future::poll_fn(|cx| self.local.control.poll_recv(cx)) => {
                    let carry = self.carry.as_ref();
                    let live = Live {
                        inflight: carry.map_or(0, |s| s.inflight.len()),
                        queued: carry.map_or(0, |s| s.queued.len()),
                    };
                    self.local.answer(request, live);
                }
            }
        }
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
            max_inflight: self.config.max_inflight_messages,
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
pub(super) struct Link<'a> {
    pub(super) bridge: &'a mut Bridge,
    pub(super) conn: ClientConnection,
    pub(super) wbuf: BytesMut,
    /// Messages from the remote broker routed here whose acknowledgement
    /// waits for their store commit; at most `receive_maximum` before the
    /// loop stops reading.
    pub(super) awaiting: usize,
    pub(super) done_tx: mpsc::UnboundedSender<Done>,
    /// This turn's store changes.
    pub(super) batch: Option<Batch>,
    /// The ticket of this turn's batch, if packets wait for it.
    pub(super) ticket: Option<u64>,
    pub(super) next_ticket: u64,
    /// Every batch up to this ticket has committed (the group commit
    /// completes in order).
    pub(super) committed: u64,
    /// Packets waiting for the commit of their ticket, in order.
    pub(super) held: Vec<(u64, Packet)>,
    pub(super) outcome: Outcome,
    pub(super) connected: bool,
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
                request = std::future::poll_fn(|cx| self.bridge.local.control.poll_recv(cx)) => {
                    let live = Live {
                        inflight: self.conn.inflight(),
                        queued: self.conn.queued(),
                    };
                    if self.bridge.local.answer(request, live) {
                        self.conn.disconnect(Disconnect::new(ReasonCode::AdministrativeAction));
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
    pub(super) fn on_done(&mut self, done: Done) {
        match done {
            Done::Batch(ticket, result) => {
                if let Err(e) = result {
                    tracing::error!(error = %e, "store commit failed");
                }
                self.committed = self.committed.max(ticket);
                self.release_held();
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
}
