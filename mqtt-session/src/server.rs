//! The server role: one client connection, from CONNECT to close.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use mqtt_codec::{
    Auth, ConnAck, ConnAckProperties, Connect, DecodeLimits, Disconnect, MqttString, Packet,
    PacketId, ProtocolVersion, Publish, QoS, ReasonCode, SubAck, Subscribe, UnsubAck, Unsubscribe,
    Will,
};

use crate::error::ProtocolError;
use crate::inbound::{Inbound, PubRelOutcome};
use crate::outbound::{AckOutcome, Outbound, Transmit};
use crate::state::{
    Delivery, DropReason, InflightStage, Message, QueueLimits, SessionState, SubscriptionRecord,
};

/// What a server allows its clients; sent to MQTT 5.0 clients in CONNACK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// QoS 1/2 publications a client may have unacknowledged towards the
    /// server (Receive Maximum): received, and not yet acknowledged with
    /// PUBACK or PUBREC. Default: 1024.
    pub receive_maximum: u16,
    /// QoS 1/2 deliveries the server keeps unacknowledged towards a client,
    /// at most (the client's Receive Maximum may lower it). Default: 1024.
    pub max_inflight: u16,
    /// Largest packet the server accepts, in bytes. Default: 1 MiB.
    pub max_packet_size: u32,
    /// Highest topic alias a client may use towards the server, and most
    /// aliases the server assigns towards a client. Default: 64.
    pub topic_alias_maximum: u16,
    /// Largest keep alive, in seconds. A 5.0 client asking for more (or for
    /// 0) is told this value as Server Keep Alive; a 3.1.1 client is refused
    /// with "identifier rejected", as mosquitto does. 65,535 (the default)
    /// imposes nothing.
    pub max_keepalive: u16,
    /// Time a new connection has to send CONNECT. Default: 10 s.
    pub connect_timeout: Duration,
    /// Highest QoS clients may publish with. Default: 2.
    pub maximum_qos: QoS,
    /// Whether retained messages are supported. Default: true.
    pub retain_available: bool,
    /// Whether wildcard subscriptions are supported. Default: true.
    pub wildcard_subscription_available: bool,
    /// Whether subscription identifiers are supported. Default: true.
    pub subscription_identifiers_available: bool,
    /// Whether shared subscriptions are supported. Default: true.
    pub shared_subscription_available: bool,
    /// Longest session expiry granted, in seconds; `u32::MAX` (the default)
    /// lets sessions of 3.1.1 clients without clean session live forever.
    pub max_session_expiry: u32,
    /// Limits of each session's queue of outgoing messages.
    pub queue: QueueLimits,
    /// Packets a client may send after CONNECT before it is accepted; they
    /// are processed on acceptance. Default: 64.
    pub max_early_packets: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            receive_maximum: 1024,
            max_inflight: 1024,
            max_packet_size: DecodeLimits::DEFAULT_MAX_PACKET_SIZE,
            topic_alias_maximum: 64,
            max_keepalive: u16::MAX,
            connect_timeout: Duration::from_secs(10),
            maximum_qos: QoS::ExactlyOnce,
            retain_available: true,
            wildcard_subscription_available: true,
            subscription_identifiers_available: true,
            shared_subscription_available: true,
            max_session_expiry: u32::MAX,
            queue: QueueLimits::default(),
            max_early_packets: 64,
        }
    }
}

/// The application's decision to accept a CONNECT.
#[derive(Debug, Default)]
pub struct Accept {
    /// The stored session for this client id, if any. It is resumed unless
    /// the client asked for a clean start, in which case it is discarded.
    pub session: Option<SessionState>,
    /// The identifier to give a client that sent an empty one
    /// ([`ServerEvent::Connect::needs_client_id`]).
    pub assigned_client_id: Option<MqttString>,
    /// Extra CONNACK properties (reason string, response information,
    /// authentication method and data...); the limits are filled in by the
    /// session from [`ServerConfig`].
    pub properties: ConnAckProperties,
}

/// Why a connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseReason {
    /// The client sent DISCONNECT with this reason code.
    ClientDisconnect(ReasonCode),
    /// The peer broke the protocol or a limit; it was told the reason code.
    Protocol(ProtocolError),
    /// The application refused the CONNECT with this code.
    Rejected(ReasonCode),
    /// The application closed the connection with this code (takeover,
    /// shutdown, administrative action).
    Server(ReasonCode),
    /// The transport failed or the peer closed it without DISCONNECT.
    ConnectionLost,
}

/// A will message to publish at `publish_at` unless the client reconnects
/// first (MQTT 5.0 §3.1.3.2.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduledWill {
    /// The will.
    pub will: Will,
    /// The earlier of the will delay and the session's end [MQTT-3.1.3-9].
    pub publish_at: Instant,
}

/// The end of a connection, and what outlives it.
#[derive(Debug)]
pub struct Closed {
    /// Why it ended.
    pub reason: CloseReason,
    /// The will to publish, if the connection did not end normally
    /// [MQTT-3.1.2-8] [MQTT-3.1.2-10].
    pub will: Option<ScheduledWill>,
    /// The session, if the connection was accepted: with what was still in
    /// flight or queued, and the subscriptions (also needed to remove them
    /// from a router when the session ends now).
    pub session: Option<SessionState>,
    /// When the session expires: at the close itself for a Session Expiry
    /// Interval of 0 (the session ends with the connection), `None` never.
    pub session_expires_at: Option<Instant>,
}

/// A received message to route, in the `Arc` its deliveries share, and
/// its packet identifier (QoS 1 and 2): what
/// [`ServerConnection::take_publish`] returns.
pub type Publication = (Arc<Message>, Option<PacketId>);

/// What the server application must act on.
#[derive(Debug)]
pub enum ServerEvent {
    /// A valid CONNECT arrived: authenticate, look up the session, then call
    /// [`ServerConnection::accept`] or [`ServerConnection::reject`]. During
    /// enhanced authentication, [`ServerConnection::send_auth`] may come first.
    Connect {
        /// The packet.
        connect: Box<Connect>,
        /// The client identifier is empty: [`Accept::assigned_client_id`]
        /// must give one.
        needs_client_id: bool,
    },
    /// An application message to route. For QoS 1 and 2, call
    /// [`ServerConnection::acknowledge`] with `packet_id` once it is safely
    /// routed (stored, where persistence requires it).
    Publish {
        /// The message, in the `Arc` its deliveries share (made once here:
        /// the event then moves as a pointer, not as the whole message).
        message: Arc<Message>,
        /// Its identifier (QoS 1 and 2).
        packet_id: Option<PacketId>,
    },
    /// Topic filters to subscribe to: check them, then call
    /// [`ServerConnection::acknowledge_subscribe`].
    Subscribe(Subscribe),
    /// Topic filters removed from the session (UNSUBACK is already sent).
    Unsubscribed(Unsubscribe),
    /// An outgoing QoS 1/2 message was fully acknowledged (PUBACK,
    /// PUBCOMP, or a PUBREC with an error code): the server may forget it.
    Delivered {
        /// The identifier it had (now free).
        packet_id: PacketId,
        /// The QoS it was sent with.
        qos: QoS,
        /// Its [`Delivery::tag`].
        tag: u64,
    },
    /// An incoming QoS 2 message was released (PUBREL): its identifier is
    /// no longer a duplicate's. With
    /// [`ServerConnection::set_confirm_releases`], call
    /// [`ServerConnection::complete_release`] once it is forgotten (PUBCOMP
    /// waits for that); otherwise PUBCOMP is already sent.
    Released {
        /// The identifier.
        packet_id: PacketId,
    },
    /// An AUTH packet: answer with [`ServerConnection::send_auth`], or
    /// accept, reject or close.
    Auth(Auth),
    /// The connection ended. The last event.
    Closed(Box<Closed>),
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
    session: Option<SessionState>,
    inbound: Inbound,
    outbound: Outbound,
    early: Vec<Packet>,
    pending_subscribes: Vec<Subscribe>,
    transmit: Vec<Packet>,
    transmit_at: usize,
    events: VecDeque<ServerEvent>,
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
            session: None,
            inbound,
            outbound: Outbound::new(1, u32::MAX, 0),
            early: Vec::new(),
            pending_subscribes: Vec::new(),
            transmit: Vec::new(),
            transmit_at: 0,
            events: VecDeque::new(),
            config,
        }
    }

    /// The protocol version (MQTT 5.0 until CONNECT says otherwise): the
    /// version to decode and encode this connection's packets with.
    pub fn version(&self) -> ProtocolVersion {
        self.version
    }

    /// The decode limits this connection enforces.
    pub fn decode_limits(&self) -> DecodeLimits {
        DecodeLimits {
            max_packet_size: self.config.max_packet_size,
            ..DecodeLimits::default()
        }
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
        self.events.front()
    }

    /// The next event for the application.
    pub fn poll_event(&mut self) -> Option<ServerEvent> {
        let event = self.events.pop_front();
        if event.is_none() && self.events.capacity() > 0 {
            // Idle connections are most connections: give the room back.
            self.events = VecDeque::new();
        }
        event
    }

    /// The next packet to write. Queued deliveries are turned into PUBLISH
    /// packets here, as the client's Receive Maximum allows.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Packet> {
        if self.transmit_at == self.transmit.len() {
            self.transmit.clear();
            self.transmit_at = 0;
            if let (State::Connected, Some(session)) = (&self.state, self.session.as_mut()) {
                // One at a time: each PUBLISH is made as it is asked for,
                // so a long queue is never a long vector of packets.
                let transmit = &mut self.transmit;
                self.outbound
                    .send_queued(session, self.version, now, 1, |p| {
                        transmit.push(Packet::Publish(p.to_owned()));
                    });
            }
            if self.transmit.is_empty() && self.transmit.capacity() > 0 {
                // Nothing to send: an idle connection keeps no buffer.
                self.transmit = Vec::new();
            }
        }
        let p = self.transmit.get_mut(self.transmit_at)?;
        self.transmit_at += 1;
        Some(std::mem::replace(p, Packet::PingResp))
    }

    /// Hands every packet there is to write to `f`, in order: the same
    /// packets as [`ServerConnection::poll_transmit`] until it returns
    /// `None`, but the PUBLISH of a queued message is lent
    /// ([`Transmit::Publish`]) rather than built: encoding it from the
    /// session's copy clones nothing.
    pub fn transmit_with(&mut self, now: Instant, mut f: impl FnMut(Transmit<'_>)) {
        let had = self.transmit_at < self.transmit.len();
        while self.transmit_at < self.transmit.len() {
            let p = &self.transmit[self.transmit_at];
            self.transmit_at += 1;
            f(Transmit::Packet(p));
        }
        self.transmit.clear();
        self.transmit_at = 0;
        if !had && self.transmit.capacity() > 0 {
            // Nothing to send: an idle connection keeps no buffer.
            self.transmit = Vec::new();
        }
        if let (State::Connected, Some(session)) = (&self.state, self.session.as_mut()) {
            self.outbound
                .send_queued(session, self.version, now, usize::MAX, |p| {
                    f(Transmit::Publish(p));
                });
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

    /// [`ServerConnection::handle_packet`] of a PUBLISH, taking its parts
    /// out of `publish` (left empty) rather than moving the packet, which
    /// is over 200 bytes: for a server that decodes many of them.
    pub fn handle_publish(
        &mut self,
        now: Instant,
        publish: &mut Publish,
    ) -> Result<(), ProtocolError> {
        if !matches!(self.state, State::Connected) {
            let p = std::mem::replace(publish, Publish::new(MqttString::new(), Bytes::new()));
            return self.handle_packet(now, Packet::Publish(p));
        }
        self.last_received = now;
        let result = self.on_publish(now, publish);
        if let Err(e) = &result {
            self.fail(now, e.clone());
        }
        result
    }

    /// [`ServerConnection::handle_publish`] for a server that routes each
    /// message as it comes: the message (in the `Arc` its deliveries
    /// share) and its packet identifier are returned instead of queued as
    /// a [`ServerEvent::Publish`], when no event waits before them.
    /// Otherwise (an event waits, or the connection is not up) this is
    /// `handle_publish`, and returns `None`.
    pub fn take_publish(
        &mut self,
        now: Instant,
        publish: &mut Publish,
    ) -> Result<Option<Publication>, ProtocolError> {
        if !matches!(self.state, State::Connected) || !self.events.is_empty() {
            return self.handle_publish(now, publish).map(|()| None);
        }
        self.last_received = now;
        let result = self.accept_publish(now, publish);
        if let Err(e) = &result {
            self.fail(now, e.clone());
        }
        result
    }

    /// A packet arrived. An error has already been acted on (DISCONNECT or
    /// CONNACK queued, [`ServerEvent::Closed`] emitted); it is returned for
    /// logging.
    pub fn handle_packet(&mut self, now: Instant, packet: Packet) -> Result<(), ProtocolError> {
        self.last_received = now;
        let result = match self.state {
            State::AwaitingConnect { .. } => match packet {
                Packet::Connect(c) => self.on_connect(now, c),
                other => Err(ProtocolError::FirstPacketNotConnect {
                    packet: other.packet_type(),
                }),
            },
            State::Connecting => match packet {
                Packet::Auth(a) => {
                    self.events.push_back(ServerEvent::Auth(a));
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

    fn on_connect(&mut self, now: Instant, connect: Box<Connect>) -> Result<(), ProtocolError> {
        self.version = connect.protocol;
        self.state = State::Connecting;
        let v5 = self.version.is_v5();
        if !v5 {
            // A 3.1.1 client is never told our Receive Maximum (nor topic
            // aliases), so it cannot be held to it.
            self.inbound = Inbound::new(u16::MAX, 0);
        }
        let max_ka = self.config.max_keepalive;
        let needs_client_id = connect.client_id.is_empty();
        if needs_client_id && !v5 && !connect.clean_start {
            // [MQTT-3.1.3-8]: a 3.1.1 client without an identifier must
            // ask for a clean session.
            self.reject_now(now, ReasonCode::ClientIdentifierNotValid);
            return Ok(());
        }
        if !v5 && max_ka < u16::MAX && (connect.keep_alive == 0 || connect.keep_alive > max_ka) {
            self.reject_now(now, ReasonCode::ClientIdentifierNotValid);
            return Ok(());
        }
        self.connect_expiry_zero = match connect.properties.session_expiry_interval {
            Some(s) => s == 0,
            None => v5 || connect.clean_start,
        };
        self.connect = Some(connect.clone());
        self.events.push_back(ServerEvent::Connect {
            connect,
            needs_client_id,
        });
        Ok(())
    }

    fn reject_now(&mut self, now: Instant, code: ReasonCode) {
        self.transmit
            .push(Packet::ConnAck(ConnAck::new(code, false)));
        self.finish(now, CloseReason::Rejected(code));
    }

    /// Refuses the CONNECT with `code` (mapped to a 3.1.1 return code for
    /// 3.1.1 clients) and ends the connection.
    pub fn reject(&mut self, now: Instant, code: ReasonCode, properties: ConnAckProperties) {
        if !matches!(self.state, State::Connecting) {
            return;
        }
        let mut ack = ConnAck::new(code, false);
        ack.properties = properties;
        self.transmit.push(Packet::ConnAck(ack));
        self.finish(now, CloseReason::Rejected(code));
    }

    /// Accepts the CONNECT: sends CONNACK with the server's limits, resumes
    /// or starts the session, resends what was in flight, and processes
    /// packets the client sent meanwhile.
    pub fn accept(&mut self, now: Instant, accept: Accept) {
        if !matches!(self.state, State::Connecting) {
            return;
        }
        // The CONNECT is not kept: its fields are slices of the read buffer
        // that would stay allocated for the connection's lifetime.
        let Some(connect) = self.connect.take() else {
            return;
        };
        let v5 = self.version.is_v5();
        let cfg = &self.config;
        let mut props = accept.properties;

        let client_id = match (&accept.assigned_client_id, connect.client_id.is_empty()) {
            (Some(id), true) => {
                if v5 {
                    props.assigned_client_identifier = Some(id.clone());
                }
                id.clone()
            }
            // Kept for the whole session: not sharing the read buffer.
            _ => connect.client_id.detached(),
        };

        let asked_expiry = match connect.properties.session_expiry_interval {
            Some(s) => s,
            None if v5 || connect.clean_start => 0,
            None => u32::MAX,
        };
        let expiry = asked_expiry.min(cfg.max_session_expiry);
        if v5 && expiry != asked_expiry {
            props.session_expiry_interval = Some(expiry);
        }

        self.keep_alive = connect.keep_alive;
        if cfg.max_keepalive < u16::MAX
            && (connect.keep_alive == 0 || connect.keep_alive > cfg.max_keepalive)
        {
            self.keep_alive = cfg.max_keepalive;
            if v5 {
                props.server_keep_alive = Some(cfg.max_keepalive);
            }
        }

        if v5 {
            if cfg.receive_maximum != u16::MAX {
                props.receive_maximum = std::num::NonZeroU16::new(cfg.receive_maximum);
            }
            if cfg.max_packet_size < DecodeLimits::PROTOCOL_MAX_PACKET_SIZE {
                props.maximum_packet_size = std::num::NonZeroU32::new(cfg.max_packet_size);
            }
            if cfg.topic_alias_maximum > 0 {
                props.topic_alias_maximum = Some(cfg.topic_alias_maximum);
            }
            if cfg.maximum_qos != QoS::ExactlyOnce {
                props.maximum_qos = Some(cfg.maximum_qos);
            }
            let off = |available: bool| (!available).then_some(false);
            props.retain_available = off(cfg.retain_available);
            props.wildcard_subscription_available = off(cfg.wildcard_subscription_available);
            props.subscription_identifier_available = off(cfg.subscription_identifiers_available);
            props.shared_subscription_available = off(cfg.shared_subscription_available);
        }

        let resumed = accept.session.filter(|_| !connect.clean_start);
        let session_present = resumed.is_some();
        let mut session = resumed.unwrap_or_else(|| SessionState::new(client_id.clone(), expiry));
        session.client_id = client_id;
        session.expiry_interval = expiry;

        let client_receive_max = connect
            .properties
            .receive_maximum
            .map_or(u16::MAX, |r| r.get());
        let client_max_packet = connect
            .properties
            .maximum_packet_size
            .map_or(u32::MAX, |m| m.get());
        let alias_max = connect
            .properties
            .topic_alias_maximum
            .unwrap_or(0)
            .min(cfg.topic_alias_maximum);
        self.outbound = Outbound::new(
            client_receive_max.min(cfg.max_inflight),
            client_max_packet,
            alias_max,
        );

        let mut ack = ConnAck::new(ReasonCode::Success, session_present);
        ack.properties = props;
        self.transmit.push(Packet::ConnAck(ack));
        self.outbound
            .resume(&mut session, self.version, now, &mut self.transmit);
        self.inbound.resume(&session.incoming_qos2);
        session.incoming_qos2.clear();
        self.session = Some(session);
        self.will = connect.will.map(|w| Box::new(detach_will(w)));
        self.state = State::Connected;

        for packet in std::mem::take(&mut self.early) {
            if let Err(e) = self.on_packet(now, packet) {
                self.fail(now, e);
                break;
            }
        }
    }

    /// Sends an AUTH packet (enhanced authentication, MQTT 5.0).
    pub fn send_auth(&mut self, auth: Auth) {
        if self.version.is_v5() && !self.is_closed() {
            self.transmit.push(Packet::Auth(auth));
        }
    }

    /// A PUBLISH of a connected client.
    #[inline]
    fn on_publish(&mut self, now: Instant, p: &mut Publish) -> Result<(), ProtocolError> {
        if let Some((message, packet_id)) = self.accept_publish(now, p)? {
            self.events
                .push_back(ServerEvent::Publish { message, packet_id });
        }
        Ok(())
    }

    /// The message a PUBLISH carries, if it is to be routed (not a QoS 2
    /// duplicate), with its packet identifier.
    #[inline]
    fn accept_publish(
        &mut self,
        now: Instant,
        p: &mut Publish,
    ) -> Result<Option<Publication>, ProtocolError> {
        if p.qos > self.config.maximum_qos {
            return Err(ProtocolError::QoSNotSupported { qos: p.qos });
        }
        if p.retain && !self.config.retain_available {
            return Err(ProtocolError::RetainNotSupported);
        }
        let packet_id = p.packet_id;
        Ok(self
            .inbound
            .on_publish(p, &mut self.transmit)?
            .then(|| (Arc::new(Message::take_from(p, now)), packet_id)))
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
                    self.events.push_back(ServerEvent::Released {
                        packet_id: a.packet_id,
                    });
                }
            }
            Packet::Subscribe(s) => {
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
                self.pending_subscribes.push(s.clone());
                self.events.push_back(ServerEvent::Subscribe(s));
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
                self.events.push_back(ServerEvent::Unsubscribed(u));
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
            Packet::Auth(a) => self.events.push_back(ServerEvent::Auth(a)),
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
            self.events.push_back(ServerEvent::Delivered {
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

    /// Delivers a message as [`ServerConnection::deliver`] does, but sends
    /// it at once when nothing is queued or waiting to be written before it
    /// and the client's Receive Maximum allows: its PUBLISH is lent to `f`
    /// ([`Transmit::Publish`]) without entering the queue. Otherwise it is
    /// queued, for [`ServerConnection::transmit_with`] or
    /// [`ServerConnection::poll_transmit`]. An expired message is dropped
    /// and counted, as it would be when taken from the queue.
    pub fn deliver_with(
        &mut self,
        now: Instant,
        delivery: Delivery,
        mut f: impl FnMut(Transmit<'_>),
    ) -> Result<(), DropReason> {
        let (State::Connected, Some(session)) = (&self.state, self.session.as_mut()) else {
            return self.deliver(delivery);
        };
        if !session.queued.is_empty() || self.transmit_at < self.transmit.len() {
            return session.enqueue(delivery, &self.config.queue);
        }
        self.outbound
            .send_or_queue(
                session,
                delivery,
                self.version,
                now,
                &self.config.queue,
                &mut |p| f(Transmit::Publish(p)),
            )
            .map(|_| ())
    }

    /// Closes the connection from the server side with `code` (0x8E session
    /// taken over, 0x8B server shutting down, ...): sent in DISCONNECT to a
    /// 5.0 client.
    pub fn close(&mut self, now: Instant, code: ReasonCode) {
        if self.is_closed() {
            return;
        }
        if self.version.is_v5() && matches!(self.state, State::Connected) {
            self.transmit
                .push(Packet::Disconnect(Disconnect::new(code)));
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
                self.transmit
                    .push(Packet::Disconnect(Disconnect::new(code)));
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
                self.transmit
                    .push(Packet::ConnAck(ConnAck::new(code, false)));
            }
            State::Connecting if self.version.is_v5() => {
                self.transmit
                    .push(Packet::ConnAck(ConnAck::new(code, false)));
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
        self.events.push_back(ServerEvent::Closed(Box::new(Closed {
            reason,
            will,
            session,
            session_expires_at,
        })));
    }
}

/// Copies a will out of the packet buffer it was decoded from, so that a
/// small will does not keep a whole read buffer alive for the connection's
/// lifetime.
fn detach_will(mut will: Will) -> Will {
    let copy = MqttString::detached;
    will.topic = copy(&will.topic);
    will.payload = bytes::Bytes::copy_from_slice(&will.payload);
    let p = &mut will.properties;
    p.content_type = p.content_type.as_ref().map(copy);
    p.response_topic = p.response_topic.as_ref().map(copy);
    p.correlation_data = p
        .correlation_data
        .as_ref()
        .map(|b| bytes::Bytes::copy_from_slice(b));
    for u in &mut p.user_properties {
        u.name = copy(&u.name);
        u.value = copy(&u.value);
    }
    will
}
