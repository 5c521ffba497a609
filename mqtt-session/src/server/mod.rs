//! The server role: one client connection, from CONNECT to close.
//!
//! One way in for each kind of input ([`ServerConnection::handle_packet`]
//! for packets, [`ServerConnection::deliver`] for messages to send,
//! [`ServerConnection::handle_timeout`] for time) and one way out for each
//! kind of output ([`ServerConnection::poll_event`],
//! [`ServerConnection::poll_transmit`], [`ServerConnection::poll_timeout`]),
//! as quinn-proto sorts its API into handlers and polls.

mod connect;
mod types;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mqtt_codec::{
    ConnAck, Connect, DecodeLimits, Disconnect, MqttString, Packet, PacketId, ProtocolVersion,
    Publish, QoS, ReasonCode, SubAck, Subscribe, UnsubAck, Will,
};

pub use self::types::{Accept, CloseReason, Closed, ScheduledWill, ServerConfig, ServerEvent};
use crate::error::ProtocolError;
use crate::inbound::{Inbound, PubRelOutcome};
use crate::outbound::{AckOutcome, Outbound, Transmit};
use crate::state::{
    Delivery, DropReason, InflightStage, Message, SessionState, SubscriptionRecord,
};

/// The events waiting for the application, in order. The first sits in a
/// slot of its own: a connection that reports one event at a time (a
/// PUBLISH, routed as it comes) never allocates a queue; the queue behind
/// it is given back whenever it empties, as idle connections are most
/// connections.
#[derive(Debug, Default)]
struct Events {
    first: Option<ServerEvent>,
    rest: VecDeque<ServerEvent>,
}

impl Events {
    #[inline]
    fn push(&mut self, event: ServerEvent) {
        if self.first.is_none() && self.rest.is_empty() {
            self.first = Some(event);
        } else {
            self.rest.push_back(event);
        }
    }

    #[inline]
    fn pop(&mut self) -> Option<ServerEvent> {
        if let Some(e) = self.first.take() {
            return Some(e);
        }
        let e = self.rest.pop_front();
        if self.rest.is_empty() && self.rest.capacity() > 0 {
            self.rest = VecDeque::new();
        }
        e
    }

    fn peek(&self) -> Option<&ServerEvent> {
        self.first.as_ref().or_else(|| self.rest.front())
    }
}

#[derive(Debug)]
enum State {
    /// Waiting for CONNECT until the deadline.
    AwaitingConnect { deadline: Instant },
    /// CONNECT received; waiting for the application to accept or reject.
    Connecting,
    /// Accepted.
    Connected,
    /// Ended; only transmissions may remain to be written.
    Closed,
}

/// The server side of one client connection, without I/O.
///
/// # Call order
///
/// 1. [`ServerConnection::new`] when the transport connection is accepted.
/// 2. For each decoded packet: [`ServerConnection::handle_packet`]. On a
///    decode error: [`ServerConnection::handle_decode_error`].
/// 3. After every input, and after each command: drain
///    [`ServerConnection::poll_event`] and act on each event, then write
///    what [`ServerConnection::poll_transmit`] gives, then wait until
///    [`ServerConnection::poll_timeout`] (calling
///    [`ServerConnection::handle_timeout`] then) or the next input.
/// 4. Commands: [`ServerConnection::accept`], [`ServerConnection::reject`],
///    [`ServerConnection::acknowledge`],
///    [`ServerConnection::acknowledge_subscribe`],
///    [`ServerConnection::deliver`], [`ServerConnection::send_auth`],
///    [`ServerConnection::close`], and
///    [`ServerConnection::connection_lost`] when the transport fails.
/// 5. After [`ServerEvent::Closed`], write what remains to transmit and
///    close the transport.
///
/// ```text
///            CONNECT                  accept()
///  new() ───────────▶ Connecting ───────────────▶ Connected
///    │                 │    ▲ │                      │
///    │ connect timeout │ AUTH ⇄ send_auth()          │ DISCONNECT, error, keep-alive
///    │                 │ reject()                    │ timeout, close(), connection_lost()
///    ▼                 ▼                             ▼
///  Closed ◀──────────────────────────────────────── Closed
/// ```
#[derive(Debug)]
pub struct ServerConnection {
    /// Shared by every connection of a server.
    config: Arc<ServerConfig>,
    state: State,
    version: ProtocolVersion,
    /// The keep alive in force, in seconds; 0 disables it.
    keep_alive: u16,
    last_received: Instant,
    /// The CONNECT, between its arrival and acceptance.
    connect: Option<Box<Connect>>,
    /// The will, once accepted, in buffers of its own (boxed: most
    /// connections have none, and should not carry room for one).
    will: Option<Box<Will>>,
    /// The session expiry asked for at CONNECT was 0: DISCONNECT may not
    /// raise it.
    connect_expiry_zero: bool,
    /// Whether [`ServerEvent::Delivered`] is emitted.
    report_deliveries: bool,
    /// The client set mosquitto's bridge bit ([`Connect::bridge`]).
    bridge: bool,
    session: Option<SessionState>,
    inbound: Inbound,
    outbound: Outbound,
    early: Vec<Packet>,
    pending_subscribes: Vec<Subscribe>,
    transmit: Vec<Packet>,
    events: Events,
}

impl ServerConnection {
    /// A connection accepted at `now`, waiting for CONNECT. A server with
    /// many connections gives each an `Arc` of one configuration.
    pub fn new(config: impl Into<Arc<ServerConfig>>, now: Instant) -> Self {
        let config = config.into();
        let deadline = now + config.connect_timeout;
        let inbound = Inbound::new(config.receive_maximum, config.topic_alias_maximum);
        Self {
            state: State::AwaitingConnect { deadline },
            version: ProtocolVersion::V5,
            keep_alive: 0,
            last_received: now,
            connect: None,
            will: None,
            connect_expiry_zero: true,
            report_deliveries: true,
            bridge: false,
            session: None,
            inbound,
            outbound: Outbound::new(1, u32::MAX, 0),
            early: Vec::new(),
            pending_subscribes: Vec::new(),
            transmit: Vec::new(),
            events: Events::default(),
            config,
        }
    }

    /// The protocol version (MQTT 5.0 until CONNECT says otherwise): the
    /// version to decode and encode this connection's packets with.
    pub fn version(&self) -> ProtocolVersion {
        self.version
    }

    /// The keep alive in force, in seconds (0: none): the client's, or
    /// the server's own when it lowered it (Server Keep Alive).
    pub fn keep_alive(&self) -> u16 {
        self.keep_alive
    }

    /// The decode limits this connection enforces.
    pub fn decode_limits(&self) -> DecodeLimits {
        DecodeLimits {
            max_packet_size: self.config.max_packet_size,
            ..DecodeLimits::default()
        }
    }

    /// Whether the client set mosquitto's bridge bit in its CONNECT
    /// ([`Connect::bridge`]): its subscriptions are then No Local and
    /// Retain As Published, whatever it asked.
    pub fn is_bridge(&self) -> bool {
        self.bridge
    }

    /// The client identifier, once accepted.
    pub fn client_id(&self) -> Option<&MqttString> {
        self.session.as_ref().map(|s| &s.client_id)
    }

    /// The session, while connected.
    pub fn session(&self) -> Option<&SessionState> {
        self.session.as_ref()
    }

    /// Whether the connection has ended.
    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed)
    }

    /// QoS 1/2 deliveries sent and not yet acknowledged by the client.
    pub fn inflight(&self) -> usize {
        self.outbound.held()
    }

    /// Whether as many received QoS 1/2 publications as our Receive
    /// Maximum wait for [`ServerConnection::acknowledge`]. The caller then
    /// stops handing in packets (and reading) until one is acknowledged: a
    /// client that sends beyond the window is slowed down by the transport,
    /// not disconnected. A QoS 1/2 PUBLISH handed in while it is full is
    /// refused with DISCONNECT 0x93. QoS 2 flows waiting for PUBREL are not
    /// counted (their PUBREL is behind the client's next packets).
    pub fn receive_window_full(&self) -> bool {
        matches!(self.state, State::Connected) && self.inbound.window_full()
    }

    /// The event [`ServerConnection::poll_event`] would return next, left
    /// in place (to handle some events as they come and leave others,
    /// such as a CONNECT that waits for authentication, for later).
    pub fn peek_event(&self) -> Option<&ServerEvent> {
        self.events.peek()
    }

    /// The next event for the application.
    pub fn poll_event(&mut self) -> Option<ServerEvent> {
        self.events.pop()
    }

    /// Hands every packet there is to write to `f`, in order: the packets
    /// the connection made (acknowledgements, CONNACK, PINGRESP, resent
    /// PUBLISH packets...), then the PUBLISH of each queued message the
    /// client's Receive Maximum lets out. A queued message's PUBLISH is lent
    /// from the session's copy ([`Transmit::Publish`]): encoding it clones
    /// nothing, and a large payload can be written without a copy. A caller
    /// that must keep a packet takes it with [`Transmit::to_packet`].
    ///
    /// The one way out for packets: call it after every input and command.
    pub fn poll_transmit(&mut self, now: Instant, mut f: impl FnMut(Transmit<'_>)) {
        let had = !self.transmit.is_empty();
        for p in &self.transmit {
            f(Transmit::Packet(p));
        }
        self.transmit.clear();
        if !had && self.transmit.capacity() > 0 {
            // Nothing was waiting: an idle connection keeps no buffer.
            self.transmit = Vec::new();
        }
        if let (State::Connected, Some(session)) = (&self.state, self.session.as_mut()) {
            let was_empty = session.queued.is_empty();
            self.outbound
                .send_queued(session, self.version, now, usize::MAX, |p| {
                    f(Transmit::Publish(p));
                });
            if was_empty && session.queued.capacity() > 0 {
                // Nothing was waiting: the queue's room is given back (most
                // connections are idle most of the time), but not while
                // messages keep coming, which would grow it again each time.
                session.queued = VecDeque::new();
            }
        }
    }

    /// When [`ServerConnection::handle_timeout`] must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::AwaitingConnect { deadline } => Some(deadline),
            State::Connected if self.keep_alive > 0 => Some(self.keep_alive_deadline()),
            _ => None,
        }
    }

    fn keep_alive_deadline(&self) -> Instant {
        // One and a half times the keep alive [MQTT-3.1.2-22].
        self.last_received + Duration::from_millis(u64::from(self.keep_alive) * 1500)
    }

    /// Time has reached `now`: enforces the connect timeout and keep alive.
    pub fn handle_timeout(&mut self, now: Instant) {
        match self.state {
            State::AwaitingConnect { deadline } if now >= deadline => {
                self.finish(now, CloseReason::Protocol(ProtocolError::ConnectTimeout));
            }
            State::Connected if self.keep_alive > 0 && now >= self.keep_alive_deadline() => {
                let e = ProtocolError::KeepAliveTimeout {
                    keep_alive: self.keep_alive,
                };
                self.fail(now, e);
            }
            _ => {}
        }
    }

    /// The bytes received could not be decoded: the connection ends with the
    /// error's reason code.
    pub fn handle_decode_error(&mut self, now: Instant, error: mqtt_codec::DecodeError) {
        self.fail(now, ProtocolError::Decode(error));
    }

    /// A packet arrived. An error has already been acted on (DISCONNECT or
    /// CONNACK queued, [`ServerEvent::Closed`] emitted); it is returned for
    /// logging.
    #[inline(always)]
    pub fn handle_packet(&mut self, now: Instant, mut packet: Packet) -> Result<(), ProtocolError> {
        self.last_received = now;
        // The hot path: a PUBLISH is taken apart where it lies, not moved
        // again (a `Packet` is some 300 bytes).
        if let (State::Connected, Packet::Publish(p)) = (&self.state, &mut packet) {
            let result = self.on_publish(now, p);
            if let Err(e) = &result {
                self.fail(now, e.clone());
            }
            return result;
        }
        let result = match self.state {
            State::AwaitingConnect { .. } => match packet {
                Packet::Connect(c) => self.on_connect(now, c),
                other => Err(ProtocolError::FirstPacketNotConnect {
                    packet: other.packet_type(),
                }),
            },
            State::Connecting => match packet {
                Packet::Auth(a) => {
                    self.events.push(ServerEvent::Auth(Box::new(*a)));
                    Ok(())
                }
                Packet::Disconnect(d) => {
                    self.finish(now, CloseReason::ClientDisconnect(d.reason_code));
                    Ok(())
                }
                Packet::Connect(_) => Err(ProtocolError::SecondConnect),
                other if self.early.len() < self.config.max_early_packets => {
                    self.early.push(other);
                    Ok(())
                }
                _ => Err(ProtocolError::ReceiveMaximumExceeded {
                    max: self.config.max_early_packets,
                }),
            },
            State::Connected => self.on_packet(now, packet),
            State::Closed => Ok(()),
        };
        if let Err(e) = &result {
            self.fail(now, e.clone());
        }
        result
    }

    /// A PUBLISH of a connected client: its message, unless it is a QoS 2
    /// duplicate, becomes a [`ServerEvent::Publish`].
    #[inline]
    fn on_publish(&mut self, now: Instant, p: &mut Publish) -> Result<(), ProtocolError> {
        if p.qos > self.config.maximum_qos {
            return Err(ProtocolError::QoSNotSupported { qos: p.qos });
        }
        if p.retain && !self.config.retain_available {
            return Err(ProtocolError::RetainNotSupported);
        }
        let packet_id = p.packet_id;
        if self.inbound.on_publish(p, &mut self.transmit)? {
            let message = Arc::new(Message::take_from(p, now));
            self.events
                .push(ServerEvent::Publish { message, packet_id });
        }
        Ok(())
    }

    fn on_packet(&mut self, now: Instant, packet: Packet) -> Result<(), ProtocolError> {
        match packet {
            Packet::Publish(mut p) => self.on_publish(now, &mut p)?,
            Packet::PubAck(a) => {
                let outcome = self.outbound.on_puback(a.packet_id);
                self.on_ack_outcome(a.packet_id, outcome);
            }
            Packet::PubRec(a) => {
                let outcome = self.outbound.on_pubrec(&a, &mut self.transmit);
                self.on_ack_outcome(a.packet_id, outcome);
            }
            Packet::PubComp(a) => {
                let outcome = self.outbound.on_pubcomp(a.packet_id);
                self.on_ack_outcome(a.packet_id, outcome);
            }
            Packet::PubRel(a) => {
                if self.inbound.on_pubrel(a.packet_id, &mut self.transmit) != PubRelOutcome::Unknown
                {
                    self.events.push(ServerEvent::Released {
                        packet_id: a.packet_id,
                    });
                }
            }
            Packet::Subscribe(mut s) => {
                if s.properties.subscription_identifier.is_some()
                    && !self.config.subscription_identifiers_available
                {
                    return Err(ProtocolError::SubscriptionIdentifiersNotSupported);
                }
                if let Some(sub) = s
                    .subscriptions
                    .iter()
                    .find(|sub| sub.options.no_local && sub.filter.starts_with("$share/"))
                {
                    return Err(ProtocolError::NoLocalOnSharedSubscription {
                        filter: sub.filter.to_string(),
                    });
                }
                if self.bridge {
                    // A bridge (mosquitto's `try_private`) is never sent
                    // back what it published, and gets the RETAIN flag as
                    // published, as mosquitto treats one: so two brokers
                    // bridged both ways do not pass a message back and
                    // forth, and retained messages stay retained across
                    // the bridge, under MQTT 3.1.1 too, which has neither
                    // option. (Not for shared subscriptions, where No
                    // Local is a protocol error.)
                    for sub in &mut s.subscriptions {
                        if !sub.filter.starts_with("$share/") {
                            sub.options.no_local = true;
                            sub.options.retain_as_published = true;
                        }
                    }
                }
                self.pending_subscribes.push(s.clone());
                self.events.push(ServerEvent::Subscribe(Box::new(s)));
            }
            Packet::Unsubscribe(u) => {
                let mut reason_codes = Vec::with_capacity(u.filters.len());
                if let Some(session) = self.session.as_mut() {
                    for f in &u.filters {
                        reason_codes.push(match session.subscriptions.remove(f) {
                            Some(_) => ReasonCode::Success,
                            None => ReasonCode::NoSubscriptionExisted,
                        });
                    }
                }
                self.transmit.push(Packet::UnsubAck(UnsubAck {
                    packet_id: u.packet_id,
                    properties: Default::default(),
                    reason_codes,
                }));
                self.events.push(ServerEvent::Unsubscribed(Box::new(u)));
            }
            Packet::PingReq => self.transmit.push(Packet::PingResp),
            Packet::Disconnect(d) => {
                if let Some(s) = d.properties.session_expiry_interval {
                    if self.connect_expiry_zero && s != 0 {
                        return Err(ProtocolError::SessionExpiryAfterZero);
                    }
                    if let Some(session) = self.session.as_mut() {
                        session.expiry_interval = s.min(self.config.max_session_expiry);
                    }
                }
                self.finish(now, CloseReason::ClientDisconnect(d.reason_code));
            }
            Packet::Auth(a) => self.events.push(ServerEvent::Auth(Box::new(*a))),
            Packet::Connect(_) => return Err(ProtocolError::SecondConnect),
            other @ (Packet::ConnAck(_)
            | Packet::SubAck(_)
            | Packet::UnsubAck(_)
            | Packet::PingResp) => {
                return Err(ProtocolError::UnexpectedPacket {
                    packet: other.packet_type(),
                });
            }
        }
        Ok(())
    }

    fn on_ack_outcome(&mut self, packet_id: PacketId, outcome: AckOutcome) {
        if let AckOutcome::Completed { qos, tag } = outcome
            && self.report_deliveries
        {
            self.events.push(ServerEvent::Delivered {
                packet_id,
                qos,
                tag,
            });
        }
    }

    /// Whether a completed outgoing QoS 1/2 flow is reported as
    /// [`ServerEvent::Delivered`] (on by default). A server that keeps
    /// nothing about its deliveries (no store) turns it off, and is spared
    /// an event per acknowledged delivery.
    pub fn set_report_deliveries(&mut self, on: bool) {
        self.report_deliveries = on;
    }

    /// Makes the PUBCOMP answering each PUBREL wait for
    /// [`ServerConnection::complete_release`]: for a server that stores
    /// incoming QoS 2 identifiers, which must forget one durably before the
    /// client may reuse it. Off by default (PUBCOMP at once).
    pub fn set_confirm_releases(&mut self, on: bool) {
        self.inbound.set_confirm_releases(on);
    }

    /// With [`ServerConnection::set_confirm_releases`]: the application has forgotten
    /// the identifier of a released incoming QoS 2 message
    /// ([`ServerEvent::Released`]), so PUBCOMP goes out. Returns false if
    /// no such release was waiting.
    pub fn complete_release(&mut self, packet_id: PacketId) -> bool {
        if self.is_closed() {
            return false;
        }
        self.inbound.complete_release(packet_id, &mut self.transmit)
    }

    /// The delivery in flight under `packet_id` before its PUBREC (the
    /// PUBLISH sent or about to be), if any: for a server that stores
    /// outgoing QoS 2 messages under the identifier they were sent with.
    pub fn inflight_delivery(&self, packet_id: PacketId) -> Option<&Delivery> {
        match self.outbound.stage(packet_id)? {
            InflightStage::Published(d) => Some(d),
            InflightStage::Released => None,
        }
    }

    /// The application is done with a received QoS 1/2 message: PUBACK or
    /// PUBREC goes out with `reason` (MQTT 5.0; a 3.1.1 client only learns
    /// that it was received). Acknowledgements leave in arrival order.
    /// Returns false if no message with that identifier was waiting.
    pub fn acknowledge(&mut self, packet_id: PacketId, reason: ReasonCode) -> bool {
        // Nothing may follow a DISCONNECT [MQTT-3.14.4-1].
        if self.is_closed() {
            return false;
        }
        self.inbound
            .acknowledge(packet_id, reason, &mut self.transmit)
    }

    /// Answers a [`ServerEvent::Subscribe`]: one code per topic filter, in
    /// order (the granted QoS, or a failure). Granted filters are recorded
    /// in the session. Returns false if no such SUBSCRIBE was waiting.
    pub fn acknowledge_subscribe(
        &mut self,
        packet_id: PacketId,
        reason_codes: Vec<ReasonCode>,
    ) -> bool {
        // Nothing may follow a DISCONNECT [MQTT-3.14.4-1].
        if self.is_closed() {
            return false;
        }
        let Some(i) = self
            .pending_subscribes
            .iter()
            .position(|s| s.packet_id == packet_id)
        else {
            return false;
        };
        let s = self.pending_subscribes.swap_remove(i);
        if let Some(session) = self.session.as_mut() {
            for (sub, code) in s.subscriptions.iter().zip(&reason_codes) {
                let granted = match code {
                    ReasonCode::Success => QoS::AtMostOnce,
                    ReasonCode::GrantedQoS1 => QoS::AtLeastOnce,
                    ReasonCode::GrantedQoS2 => QoS::ExactlyOnce,
                    _ => continue,
                };
                let mut options = sub.options;
                options.qos = granted;
                session.subscriptions.insert(
                    sub.filter.clone(),
                    SubscriptionRecord {
                        options,
                        id: s.properties.subscription_identifier,
                    },
                );
            }
        }
        self.transmit.push(Packet::SubAck(SubAck {
            packet_id,
            properties: Default::default(),
            reason_codes,
        }));
        true
    }

    /// Queues a message for the client, within the session's queue limits.
    /// It is sent by [`ServerConnection::poll_transmit`] as the client's
    /// Receive Maximum allows.
    pub fn deliver(&mut self, delivery: Delivery) -> Result<(), DropReason> {
        if self.is_closed() {
            return Err(DropReason::NoSession);
        }
        match self.session.as_mut() {
            Some(s) => s.enqueue(delivery, &self.config.queue),
            None => Err(DropReason::NoSession),
        }
    }

    /// Closes the connection from the server side with `code` (0x8E session
    /// taken over, 0x8B server shutting down, ...): sent in DISCONNECT to a
    /// 5.0 client.
    pub fn close(&mut self, now: Instant, code: ReasonCode) {
        if self.is_closed() {
            return;
        }
        if self.version.is_v5() && matches!(self.state, State::Connected) {
            self.transmit.push(Packet::from(Disconnect::new(code)));
        }
        self.finish(now, CloseReason::Server(code));
    }

    /// The transport failed or the client closed it without DISCONNECT.
    pub fn connection_lost(&mut self, now: Instant) {
        self.finish(now, CloseReason::ConnectionLost);
    }

    /// Ends the connection for a protocol error, telling the peer why if
    /// the protocol allows.
    fn fail(&mut self, now: Instant, error: ProtocolError) {
        if self.is_closed() {
            return;
        }
        let code = error.reason_code();
        match self.state {
            State::Connected if self.version.is_v5() => {
                self.transmit.push(Packet::from(Disconnect::new(code)));
            }
            State::AwaitingConnect { .. }
                if matches!(error, ProtocolError::Decode(_))
                    && code == ReasonCode::UnsupportedProtocolVersion =>
            {
                // [MQTT-3.1.2-2]: answer with CONNACK 0x84 (return code 1
                // under 3.1.1, which the encoder maps) before closing. Only
                // for the first CONNECT: once one was read, the connection
                // has its version (and may have packets of it queued).
                self.version = ProtocolVersion::V3_1_1;
                self.transmit.push(Packet::from(ConnAck::new(code, false)));
            }
            State::Connecting if self.version.is_v5() => {
                self.transmit.push(Packet::from(ConnAck::new(code, false)));
            }
            _ => {}
        }
        self.finish(now, CloseReason::Protocol(error));
    }

    fn finish(&mut self, now: Instant, reason: CloseReason) {
        if self.is_closed() {
            return;
        }
        let accepted = matches!(self.state, State::Connected);
        self.state = State::Closed;
        // Only DISCONNECT 0x00 discards the will [MQTT-3.14.4-3]; 0x04 and
        // error codes are not a normal end (MQTT 5.0 §3.1.2.5).
        let normal = matches!(reason, CloseReason::ClientDisconnect(ReasonCode::Success));
        let mut session = self.session.take();
        if let Some(s) = session.as_mut() {
            self.outbound.suspend(s);
            s.incoming_qos2 = self.inbound.unreleased();
        }
        let expiry = session.as_ref().map_or(0, |s| s.expiry_interval);
        let session_end = now + Duration::from_secs(u64::from(expiry));
        let will = self
            .will
            .take()
            .filter(|_| accepted && !normal)
            .map(|will| {
                let delay = will.properties.will_delay_interval.unwrap_or(0);
                let delay = now + Duration::from_secs(u64::from(delay));
                ScheduledWill {
                    publish_at: delay.min(session_end),
                    will: *will,
                }
            });
        // Expiry 0 ends the session now; u32::MAX never.
        let session_expires_at = session
            .as_ref()
            .filter(|s| s.expiry_interval != u32::MAX)
            .map(|_| session_end);
        self.events.push(ServerEvent::Closed(Box::new(Closed {
            reason,
            will,
            session,
            session_expires_at,
        })));
    }
}
