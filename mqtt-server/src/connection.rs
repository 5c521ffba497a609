//! One client connection: a task that owns the transport and the
//! connection's [`ServerConnection`], and wires it to the broker.
//!
//! The task selects over four inputs — bytes from the client, room to write,
//! deliveries in the session's mailbox, and the protocol's next deadline —
//! plus control requests (takeover) and shutdown. Every whole packet in the
//! read buffer is decoded before the next read; every packet ready to send
//! is encoded into one buffer and written with as few syscalls as the
//! socket allows.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use mqtt_codec::{
    ConnAckProperties, Connect, MqttString, Packet, PacketId, QoS, ReasonCode, Subscribe,
};
use mqtt_session::{Accept, CloseReason, Closed, Delivery, Message, ServerConnection, ServerEvent};
use mqtt_topic::{Subscription, TopicFilter, TopicName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot, watch};

use crate::auth::{ClientAccess, ConnAuth};
use crate::broker::Broker;
use crate::handle::{Control, SessionHandle, SessionRef, lock};
use crate::quota::PublishQuota;
use crate::stats::Stats;
use crate::writer::WriteQueue;

/// Bytes waiting to be written beyond which no more deliveries are taken
/// from the mailbox: a client that does not read fills its own mailbox
/// (bounded, counted drops), not the broker's memory.
const WRITE_HIGH_WATER: usize = 256 * 1024;
/// Read buffer growth step.
const READ_CHUNK: usize = 4096;
/// How long a new connection waits for the previous owner of its client
/// identifier to hand the session over.
const TAKEOVER_TIMEOUT: Duration = Duration::from_secs(5);

fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

struct Task<'a> {
    broker: &'a Arc<Broker>,
    peer: SocketAddr,
    conn: ServerConnection,
    handle: Option<Arc<SessionHandle>>,
    control_tx: mpsc::Sender<Control>,
    /// Where to send the session when another connection takes it over.
    takeover: Option<oneshot::Sender<Option<mqtt_session::SessionState>>>,
    subscriptions: usize,
    wbuf: WriteQueue,
    /// How this connection's listener authenticates.
    auth: ConnAuth,
    /// The client's ACL view, once connected; `None` when no ACL applies.
    access: Option<Arc<ClientAccess>>,
    quota: PublishQuota,
    /// Over its publish quota: nothing is read or decoded until then.
    throttled: Option<Instant>,
}

/// Serves one client until the connection ends.
pub(crate) async fn serve<S>(
    broker: Arc<Broker>,
    stream: S,
    peer: SocketAddr,
    mut shutdown: watch::Receiver<bool>,
    auth: ConnAuth,
) where
    S: AsyncRead + AsyncWrite + Send + Unpin,
{
    let (mut reader, mut writer) = tokio::io::split(stream);
    let (control_tx, mut control_rx) = mpsc::channel(1);
    let mut task = Task {
        conn: ServerConnection::new(broker.session_config.clone(), now()),
        broker: &broker,
        peer,
        handle: None,
        control_tx,
        takeover: None,
        subscriptions: 0,
        wbuf: WriteQueue::default(),
        auth,
        access: None,
        quota: PublishQuota::new(&broker.config, now()),
        throttled: None,
    };
    let mut rbuf = BytesMut::new();
    let mut read_open = true;
    let mut stopping = false;
    // Written since the last flush: TLS and WebSocket streams may hold
    // what they accepted until flushed, so the stream is flushed whenever
    // the write queue runs empty (for TCP, flushing does nothing).
    let mut unflushed = false;
    loop {
        task.process_events().await;
        task.pull_mailbox();
        task.encode_transmit();
        if task.conn.is_closed() && (task.wbuf.is_empty() || !read_open) {
            break;
        }
        let deadline = task.conn.poll_timeout().map(tokio::time::Instant::from_std);
        let handle = task.handle.clone();
        let room = task.wbuf.len() < WRITE_HIGH_WATER && handle.is_some();
        let throttled = task.throttled.map(tokio::time::Instant::from_std);
        tokio::select! {
            r = async {
                if rbuf.capacity() - rbuf.len() < READ_CHUNK / 4 {
                    rbuf.reserve(READ_CHUNK);
                }
                reader.read_buf(&mut rbuf).await
            }, if read_open && !task.conn.is_closed() && throttled.is_none() => {
                match r {
                    Ok(0) | Err(_) => {
                        read_open = false;
                        task.conn.connection_lost(now());
                    }
                    Ok(n) => {
                        Stats::add(&broker.stats.bytes_received, n as u64);
                        task.decode(&mut rbuf);
                    }
                }
            }
            r = async {
                if task.wbuf.is_empty() {
                    writer.flush().await.map(|()| 0)
                } else {
                    task.wbuf.write_to(&mut writer).await
                }
            }, if !task.wbuf.is_empty() || unflushed => {
                match r {
                    Ok(0) => unflushed = false,
                    Ok(n) => {
                        Stats::add(&broker.stats.bytes_sent, n as u64);
                        unflushed = true;
                    }
                    Err(_) => {
                        task.wbuf.clear();
                        read_open = false;
                        task.conn.connection_lost(now());
                    }
                }
            }
            _ = async {
                match &handle {
                    Some(h) => h.notify.notified().await,
                    None => std::future::pending().await,
                }
            }, if room => {}
            _ = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            } => task.conn.handle_timeout(now()),
            // The publish quota has refilled: decode what was left unread.
            _ = async {
                match throttled {
                    Some(t) => tokio::time::sleep_until(t).await,
                    None => std::future::pending().await,
                }
            } => {
                task.throttled = None;
                task.decode(&mut rbuf);
            }
            Some(control) = control_rx.recv() => match control {
                Control::TakeOver(reply) => {
                    task.takeover = Some(reply);
                    task.conn.close(now(), ReasonCode::SessionTakenOver);
                }
            },
            // Once seen (or once the server is gone), shutdown is not polled
            // again: a closed channel would otherwise be ready forever.
            _ = shutdown.changed(), if !stopping => {
                stopping = true;
                task.conn.close(now(), ReasonCode::ServerShuttingDown);
            }
        }
    }
    if !task.conn.is_closed() {
        task.conn.connection_lost(now());
        task.process_events().await;
    }
    let _ = writer.shutdown().await;
}

impl Task<'_> {
    fn decode(&mut self, rbuf: &mut BytesMut) {
        let limits = self.conn.decode_limits();
        loop {
            if self.conn.is_closed() {
                rbuf.clear();
                return;
            }
            if let Some(until) = self.quota.throttled_until(now()) {
                if self.throttled.is_none() {
                    Stats::add(&self.broker.stats.publish_throttled, 1);
                }
                self.throttled = Some(until);
                return;
            }
            match Packet::decode(rbuf, self.conn.version(), &limits) {
                Ok(Some(packet)) => {
                    if let Packet::Publish(p) = &packet {
                        let stats = &self.broker.stats;
                        let size = p.topic.len() + p.payload.len();
                        let q = p.qos as usize;
                        Stats::add(&stats.messages_received, 1);
                        Stats::add(&stats.messages_received_by_qos[q], 1);
                        Stats::add(&stats.publish_bytes_received_by_qos[q], size as u64);
                        self.quota.on_publish(size, now());
                    }
                    if let Err(e) = self.conn.handle_packet(now(), packet) {
                        Stats::add(&self.broker.stats.protocol_errors, 1);
                        tracing::info!(peer = %self.peer, error = %e, "closing connection: protocol error");
                    }
                }
                Ok(None) => return,
                Err(e) => {
                    Stats::add(&self.broker.stats.protocol_errors, 1);
                    tracing::info!(peer = %self.peer, error = %e, "closing connection: malformed packet");
                    self.conn.handle_decode_error(now(), e);
                    rbuf.clear();
                    return;
                }
            }
        }
    }

    /// Moves deliveries from the mailbox into the connection while its
    /// queue is empty and the client's Receive Maximum leaves room, so the
    /// mailbox stays the one bounded queue of the session.
    fn pull_mailbox(&mut self) {
        let Some(handle) = &self.handle else { return };
        if self.conn.is_closed() || self.wbuf.len() >= WRITE_HIGH_WATER {
            return;
        }
        let Some(session) = self.conn.session() else {
            return;
        };
        if !session.queued.is_empty() {
            return;
        }
        let room = usize::from(self.broker.session_config.max_inflight)
            .saturating_sub(self.conn.inflight())
            .max(16);
        let now = now();
        let mut mailbox = lock(&handle.mailbox);
        for _ in 0..room {
            let Some(d) = mailbox.pop(now) else { break };
            let _ = self.conn.deliver(d);
        }
        if !mailbox.is_empty() {
            // Not all taken: make sure the select loop comes back for more.
            handle.notify.notify_one();
        }
    }

    fn encode_transmit(&mut self) {
        let now = now();
        let version = self.conn.version();
        while let Some(packet) = self.conn.poll_transmit(now) {
            if let Packet::Publish(p) = &packet {
                let stats = &self.broker.stats;
                let q = p.qos as usize;
                Stats::add(&stats.messages_sent_by_qos[q], 1);
                Stats::add(
                    &stats.publish_bytes_sent_by_qos[q],
                    (p.topic.len() + p.payload.len()) as u64,
                );
            }
            if let Err(e) = self.wbuf.push(&packet, version) {
                tracing::warn!(peer = %self.peer, error = %e, "cannot encode packet");
            }
        }
    }

    async fn process_events(&mut self) {
        while let Some(event) = self.conn.poll_event() {
            match event {
                ServerEvent::Connect {
                    connect,
                    needs_client_id,
                } => self.on_connect(connect, needs_client_id).await,
                ServerEvent::Publish { message, packet_id } => self.on_publish(message, packet_id),
                ServerEvent::Subscribe(s) => self.on_subscribe(s),
                ServerEvent::Unsubscribed(u) => {
                    if let Some(h) = &self.handle {
                        let me = SessionRef(h.clone());
                        let mut router = self
                            .broker
                            .router
                            .write()
                            .unwrap_or_else(|p| p.into_inner());
                        for f in &u.filters {
                            if router.unsubscribe(&me, f) {
                                self.subscriptions = self.subscriptions.saturating_sub(1);
                            }
                        }
                    }
                }
                ServerEvent::Auth(_) => {
                    // No enhanced authentication method is supported.
                    self.conn.reject(
                        now(),
                        ReasonCode::BadAuthenticationMethod,
                        ConnAckProperties::default(),
                    );
                    self.conn.close(now(), ReasonCode::BadAuthenticationMethod);
                }
                ServerEvent::Closed(closed) => self.on_closed(*closed),
            }
        }
    }

    async fn on_connect(&mut self, connect: Box<Connect>, needs_client_id: bool) {
        let broker = self.broker;
        let now = now();
        if connect.properties.authentication_method.is_some() {
            self.conn.reject(
                now,
                ReasonCode::BadAuthenticationMethod,
                ConnAckProperties::default(),
            );
            return;
        }
        let identity = match broker
            .security
            .authenticate(&self.auth, self.peer, &connect, now)
            .await
        {
            Ok(identity) => identity,
            Err(code) => {
                crate::auth::count_refusal(&broker.stats, code);
                self.conn.reject(now, code, ConnAckProperties::default());
                return;
            }
        };
        let client_id = if needs_client_id {
            match MqttString::try_from(format!("auto-{:016x}", broker.next_id())) {
                Ok(id) => id,
                Err(_) => return,
            }
        } else {
            connect.client_id.clone()
        };
        let access = identity.access(client_id.as_str());
        if let (Some(a), Some(will)) = (&access, &connect.will)
            && !a.can_publish(will.topic.as_str())
        {
            tracing::info!(peer = %self.peer, topic = %will.topic, "CONNECT refused: the ACL denies the will topic");
            crate::auth::count_refusal(&broker.stats, ReasonCode::NotAuthorized);
            self.conn
                .reject(now, ReasonCode::NotAuthorized, ConnAckProperties::default());
            return;
        }

        let existing = lock(&broker.sessions).get(&client_id).cloned();
        let mut state = None;
        if let Some(h) = &existing {
            let owner = lock(&h.control).take();
            match owner {
                Some(ctl) => {
                    let (tx, rx) = oneshot::channel();
                    if ctl.send(Control::TakeOver(tx)).await.is_ok() {
                        state = tokio::time::timeout(TAKEOVER_TIMEOUT, rx)
                            .await
                            .ok()
                            .and_then(|r| r.ok())
                            .flatten();
                    }
                }
                None => state = lock(&h.offline).take(),
            }
        }
        // After the takeover, so that the will the previous connection
        // scheduled as it closed is seen too.
        broker.on_reconnect_will(&client_id, connect.clean_start, now);
        let handle = match (existing, connect.clean_start) {
            (Some(h), false) if state.is_some() => h,
            (old, _) => {
                if let (Some(old), Some(s)) = (old, state.take()) {
                    broker.end_session(&old, s.subscriptions.into_keys());
                }
                let h = Arc::new(SessionHandle::new(broker.next_id(), client_id.clone()));
                lock(&broker.sessions).insert(client_id.clone(), h.clone());
                h
            }
        };
        self.subscriptions = state.as_ref().map_or(0, |s| s.subscriptions.len());
        handle.connected.store(true, Ordering::Release);
        *lock(&handle.control) = Some(self.control_tx.clone());
        *lock(&handle.access) = access.clone();
        self.access = access;
        self.handle = Some(handle);
        Stats::add(&broker.stats.clients_connected, 1);
        tracing::debug!(peer = %self.peer, client_id = %client_id, version = %connect.protocol, "client connected");
        self.conn.accept(
            now,
            Accept {
                session: state,
                assigned_client_id: needs_client_id.then_some(client_id),
                properties: ConnAckProperties::default(),
            },
        );
    }

    fn on_publish(&mut self, message: Message, packet_id: Option<PacketId>) {
        let broker = self.broker;
        let now = now();
        let topic = TopicName::from_bytes(message.topic.as_bytes().clone())
            .ok()
            .filter(|t| t.levels().count() <= broker.config.max_topic_levels);
        let Some(topic) = topic else {
            if let Some(id) = packet_id {
                self.conn.acknowledge(id, ReasonCode::TopicNameInvalid);
            }
            return;
        };
        if let Some(a) = &self.access
            && !a.can_publish(topic.as_str())
        {
            // Dropped. MQTT 5.0 clients learn it from the acknowledgement;
            // 3.1.1 clients get a plain PUBACK/PUBREC, as from mosquitto.
            Stats::add(&broker.stats.dropped_acl_publish, 1);
            tracing::debug!(peer = %self.peer, topic = %topic.as_str(), "PUBLISH denied by the ACL");
            if let Some(id) = packet_id {
                self.conn.acknowledge(id, ReasonCode::NotAuthorized);
            }
            return;
        }
        let me = self.handle.clone().map(SessionRef);
        let n = broker.publish(&topic, Arc::new(message), me.as_ref(), now);
        if let Some(id) = packet_id {
            let code = if n == 0 {
                ReasonCode::NoMatchingSubscribers
            } else {
                ReasonCode::Success
            };
            self.conn.acknowledge(id, code);
        }
    }

    fn on_subscribe(&mut self, s: Subscribe) {
        let broker = self.broker;
        let Some(handle) = self.handle.clone() else {
            return;
        };
        let me = SessionRef(handle);
        let now = now();
        let mut codes = Vec::with_capacity(s.subscriptions.len());
        let mut retained: Vec<Delivery> = Vec::new();
        let v5 = self.conn.version().is_v5();
        for sub in &s.subscriptions {
            let parsed = if v5 {
                Subscription::from_bytes(sub.filter.as_bytes().clone())
            } else {
                // 3.1.1 has no shared subscriptions: `$share/...` is a plain filter.
                TopicFilter::from_bytes(sub.filter.as_bytes().clone()).map(Subscription::Plain)
            };
            let Ok(parsed) = parsed.map_err(|e| {
                tracing::debug!(peer = %self.peer, filter = %sub.filter, error = %e, "invalid topic filter");
            }) else {
                codes.push(ReasonCode::TopicFilterInvalid);
                continue;
            };
            if parsed.filter().levels().count() > broker.config.max_topic_levels {
                codes.push(ReasonCode::TopicFilterInvalid);
                continue;
            }
            if let Some(a) = &self.access
                && !a.can_subscribe(parsed.filter().as_str())
            {
                tracing::debug!(peer = %self.peer, filter = %sub.filter, "SUBSCRIBE denied by the ACL");
                codes.push(ReasonCode::NotAuthorized);
                continue;
            }
            // Replacing a subscription the session holds adds none.
            let replaces = self
                .conn
                .session()
                .is_some_and(|session| session.subscriptions.contains_key(&sub.filter));
            if !replaces && self.subscriptions >= broker.config.max_subscriptions_per_client {
                codes.push(ReasonCode::QuotaExceeded);
                continue;
            }
            let granted = broker.grant(sub.options.qos);
            let mut options = sub.options;
            options.qos = granted;
            let outcome = {
                let mut router = broker.router.write().unwrap_or_else(|p| p.into_inner());
                router.subscribe(
                    me.clone(),
                    &sub.filter,
                    options,
                    s.properties.subscription_identifier,
                )
            };
            let Ok(outcome) = outcome else {
                codes.push(ReasonCode::TopicFilterInvalid);
                continue;
            };
            if outcome == mqtt_router::SubscribeOutcome::New {
                self.subscriptions += 1;
            }
            codes.push(match granted {
                QoS::AtMostOnce => ReasonCode::GRANTED_QOS_0,
                QoS::AtLeastOnce => ReasonCode::GrantedQoS1,
                QoS::ExactlyOnce => ReasonCode::GrantedQoS2,
            });
            // Retained messages for the new subscription [MQTT-3.3.1-9];
            // none for shared subscriptions (MQTT 5.0 §4.8.2), and per
            // Retain Handling [MQTT-3.3.1-10] [MQTT-3.3.1-11].
            use mqtt_codec::RetainHandling::*;
            let send = match sub.options.retain_handling {
                SendAtSubscribe => true,
                SendIfNew => outcome == mqtt_router::SubscribeOutcome::New,
                DoNotSend => false,
            };
            if let (true, Subscription::Plain(filter)) = (send, &parsed) {
                let store = broker.retained.read().unwrap_or_else(|p| p.into_inner());
                let access = self.access.as_deref();
                store.matching(filter, now, |m| {
                    if access.is_some_and(|a| !a.can_read(m.topic.as_str())) {
                        return;
                    }
                    retained.push(Delivery {
                        message: m.clone(),
                        qos: granted.min(m.qos),
                        retain: true,
                        subscription_ids: s
                            .properties
                            .subscription_identifier
                            .into_iter()
                            .collect(),
                        shared_group: None,
                    });
                });
            }
        }
        self.conn.acknowledge_subscribe(s.packet_id, codes);
        for d in retained {
            let _ = self.conn.deliver(d);
        }
    }

    fn on_closed(&mut self, closed: Closed) {
        let broker = self.broker;
        let now = now();
        match &closed.reason {
            CloseReason::Protocol(e) => {
                tracing::debug!(peer = %self.peer, error = %e, "connection closed")
            }
            other => tracing::debug!(peer = %self.peer, reason = ?other, "connection closed"),
        }
        let Some(handle) = self.handle.take() else {
            return;
        };
        Stats::sub(&broker.stats.clients_connected, 1);
        handle.connected.store(false, Ordering::Release);
        {
            let mut control = lock(&handle.control);
            if control
                .as_ref()
                .is_some_and(|c| c.same_channel(&self.control_tx))
            {
                *control = None;
            }
        }
        if let Some(w) = closed.will {
            if w.publish_at <= now {
                broker.publish_will(w.will, now);
            } else {
                broker.schedule_will(handle.client_id.clone(), w.will, w.publish_at);
            }
        }
        let Some(mut session) = closed.session else {
            return;
        };
        // Messages chosen for this member of a shared subscription and not
        // acknowledged go to another member (MQTT 5.0 §4.8.2); those in the
        // mailbox too. Those with no other member to go to stay.
        let me = SessionRef(handle.clone());
        let mut shared = session.take_shared();
        {
            let mut mailbox = lock(&handle.mailbox);
            let all: Vec<Delivery> = mailbox.drain().collect();
            for d in all {
                if d.shared_group.is_some() {
                    shared.push(d);
                } else {
                    let _ = mailbox.push(d, &broker.queue_limits);
                }
            }
        }
        if !shared.is_empty() {
            for d in broker.reassign_shared(&me, shared, now) {
                let _ = session.enqueue(d, &broker.queue_limits);
            }
        }
        let takeover = self.takeover.take();
        match closed.session_expires_at {
            Some(at) if at <= now => {
                broker.end_session(&handle, session.subscriptions.into_keys());
                if let Some(reply) = takeover {
                    let _ = reply.send(None);
                }
            }
            // The new connection decides what becomes of the session.
            _ if takeover.is_some() => {
                if let Some(reply) = takeover {
                    let _ = reply.send(Some(session));
                }
            }
            at => {
                *lock(&handle.offline) = Some(session);
                if let Some(at) = at {
                    broker.schedule_expiry(handle.clone(), at);
                }
                // Deliveries keep arriving in the mailbox while offline.
            }
        }
    }
}
