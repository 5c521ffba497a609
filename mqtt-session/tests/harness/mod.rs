//! A client and a server connection run against each other in virtual time,
//! the way quinn-proto's `tests/util.rs` `Pair` does.
//!
//! Every packet goes through the wire format: what one side's
//! `poll_transmit` gives is encoded with `mqtt-codec` into a byte buffer
//! standing for that direction of the TCP connection, and decoded from it
//! when the other side reads. Packets still in a buffer when the connection
//! breaks are lost, as bytes in a socket buffer would be.
//!
//! Time moves only when a test calls [`Pair::advance`]; nothing sleeps.
//!
//! The server application is a small policy ([`Policy`]): it accepts
//! CONNECTs with the session it kept for the client id, acknowledges
//! publications (unless told to leave that to the test), grants
//! subscriptions at the QoS asked for, and routes what the client publishes
//! back to the client when one of its subscriptions matches.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use mqtt_codec::{
    Connect, MqttString, Packet, PacketId, ProtocolVersion, Publish, QoS, ReasonCode,
    SubscribeProperties, Subscription, SubscriptionOptions,
};
use mqtt_session::{
    Accept, ClientCloseReason, ClientConfig, ClientConnection, ClientEvent, Closed, Delivery,
    DropReason, Message, ServerConfig, ServerConnection, ServerEvent, SessionState,
};

/// One end of the pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The `ClientConnection`.
    Client,
    /// The `ServerConnection`.
    Server,
}

/// One thing that happened on the wire.
#[derive(Debug, Clone)]
pub enum Trace {
    /// `side` wrote the packet.
    Wrote(Side, Packet),
    /// `side` read and handled the packet.
    Read(Side, Packet),
    /// The connection broke; what was on the wire is lost.
    Broken,
}

/// What each new connection of a pair is made from.
#[derive(Debug, Clone)]
pub struct Setup {
    /// The server's configuration.
    pub server: ServerConfig,
    /// The client's configuration.
    pub client: ClientConfig,
    /// The CONNECT the client sends; `clean_start` is overridden by
    /// [`Pair::reconnect`].
    pub connect: Connect,
}

impl Setup {
    /// MQTT 5.0, clean start, keep alive 60 s, no session expiry.
    pub fn v5(client_id: &'static str) -> Self {
        Self {
            server: ServerConfig::default(),
            client: ClientConfig::default(),
            connect: Connect::new(ProtocolVersion::V5, MqttString::from_static(client_id)),
        }
    }

    /// MQTT 3.1.1, clean session, keep alive 60 s.
    pub fn v3(client_id: &'static str) -> Self {
        Self {
            connect: Connect::new(ProtocolVersion::V3_1_1, MqttString::from_static(client_id)),
            ..Self::v5(client_id)
        }
    }

    /// A session that outlives the connection: Session Expiry Interval
    /// `expiry` under 5.0, clean session off under 3.1.1.
    pub fn persistent(mut self, expiry: u32) -> Self {
        if self.connect.protocol.is_v5() {
            self.connect.properties.session_expiry_interval = Some(expiry);
        }
        self
    }

    /// The keep alive the client asks for, in seconds.
    pub fn keep_alive(mut self, secs: u16) -> Self {
        self.connect.keep_alive = secs;
        self
    }
}

/// How the harness's server application answers events.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Accept every CONNECT with the stored session.
    pub auto_accept: bool,
    /// The identifier given to a client that sent an empty one.
    pub assigned_client_id: MqttString,
    /// Leave QoS 1/2 acknowledgements to the test.
    pub manual_ack: bool,
    /// The reason code of automatic acknowledgements.
    pub ack_reason: ReasonCode,
    /// Answer SUBSCRIBE automatically.
    pub auto_subscribe: bool,
    /// Topic filters refused with "not authorized".
    pub refused_filters: Vec<MqttString>,
    /// Route received publications to the client's matching subscriptions.
    pub route: bool,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            auto_accept: true,
            assigned_client_id: MqttString::from_static("auto-1"),
            manual_ack: false,
            ack_reason: ReasonCode::Success,
            auto_subscribe: true,
            refused_filters: Vec::new(),
            route: true,
        }
    }
}

/// A client and a server connection joined by an in-memory wire.
pub struct Pair {
    /// The client side.
    pub client: ClientConnection,
    /// The server side.
    pub server: ServerConnection,
    /// Virtual time; moved only by [`Pair::advance`].
    pub now: Instant,
    /// What each new connection is made from.
    pub setup: Setup,
    /// How the server application answers.
    pub policy: Policy,
    /// Bytes written by the client and not yet read by the server.
    c2s: BytesMut,
    /// Bytes written by the server and not yet read by the client.
    s2c: BytesMut,
    /// Packets each side gave out (`poll_transmit`) and the harness has
    /// not written yet: [`Pair::write`] may write fewer than there are.
    unwritten: [VecDeque<Packet>; 2],
    /// Every packet written, by whom, in order (across connections).
    pub sent: Vec<(Side, Packet)>,
    /// Writes, reads and breaks, interleaved as they happened.
    pub trace: Vec<Trace>,
    /// Every server event, in order (across connections).
    pub server_events: Vec<ServerEvent>,
    /// Every client event, in order (across connections).
    pub client_events: Vec<ClientEvent>,
    /// The server's session store, keyed by client id.
    pub store: HashMap<MqttString, SessionState>,
    /// The client's session, from its last `Closed` event.
    pub client_session: Option<SessionState>,
    /// The client id in use (the assigned one once known).
    pub client_id: MqttString,
    /// Connections made so far (the first is 1).
    pub connections: usize,
}

impl Pair {
    /// A pair whose client has not sent anything yet.
    pub fn new(setup: Setup) -> Self {
        let now = Instant::now();
        let client = ClientConnection::new(setup.client.clone(), setup.connect.clone(), None, now);
        let server = ServerConnection::new(setup.server.clone(), now);
        Self {
            client,
            server,
            now,
            client_id: setup.connect.client_id.clone(),
            setup,
            policy: Policy::default(),
            c2s: BytesMut::new(),
            s2c: BytesMut::new(),
            unwritten: Default::default(),
            sent: Vec::new(),
            trace: Vec::new(),
            server_events: Vec::new(),
            client_events: Vec::new(),
            store: HashMap::new(),
            client_session: None,
            connections: 1,
        }
    }

    /// A pair driven until connected.
    pub fn connected(setup: Setup) -> Self {
        let mut pair = Self::new(setup);
        pair.drive();
        assert!(
            pair.client.is_connected(),
            "not connected: {:?}",
            pair.client_events
        );
        pair
    }

    // ---- moving packets -------------------------------------------------

    /// Writes up to `max` packets of `side` onto the wire: what its
    /// `poll_transmit` gives, in order, the rest kept for the next write.
    pub fn write(&mut self, side: Side, max: usize) -> usize {
        let now = self.now;
        let unwritten = &mut self.unwritten[side as usize];
        match side {
            Side::Client => self
                .client
                .poll_transmit(now, |t| unwritten.push_back(t.to_packet())),
            Side::Server => self
                .server
                .poll_transmit(now, |t| unwritten.push_back(t.to_packet())),
        }
        let mut n = 0;
        while n < max {
            let Some(packet) = self.unwritten[side as usize].pop_front() else {
                break;
            };
            self.put_on_wire(side, packet);
            n += 1;
        }
        n
    }

    /// Writes `packet` onto the wire as if `side` had sent it, bypassing
    /// its state machine: for peers that misbehave.
    pub fn inject(&mut self, side: Side, packet: Packet) {
        self.put_on_wire(side, packet);
    }

    fn put_on_wire(&mut self, side: Side, packet: Packet) {
        let (version, wire) = match side {
            Side::Client => (self.client.version(), &mut self.c2s),
            Side::Server => (self.server.version(), &mut self.s2c),
        };
        packet
            .encode(version, wire)
            .unwrap_or_else(|e| panic!("{side:?} wrote an unencodable packet {packet:?}: {e}"));
        self.trace.push(Trace::Wrote(side, packet.clone()));
        self.sent.push((side, packet));
    }

    fn take_from_wire(&mut self, writer: Side) -> Option<Packet> {
        let (version, limits, wire) = match writer {
            Side::Client => (
                self.server.version(),
                self.server.decode_limits(),
                &mut self.c2s,
            ),
            Side::Server => (
                self.client.version(),
                self.client.decode_limits(),
                &mut self.s2c,
            ),
        };
        match Packet::decode(wire, version, &limits) {
            Ok(Some(p)) => Some(p),
            Ok(None) => {
                assert!(wire.is_empty(), "partial packet left on the wire");
                None
            }
            Err(e) => {
                wire.clear();
                match writer {
                    Side::Client => self.server.handle_decode_error(self.now, e),
                    Side::Server => self.client.handle_decode_error(e),
                }
                self.process_events();
                None
            }
        }
    }

    /// `side` reads up to `max` packets from the wire and handles them.
    pub fn read(&mut self, side: Side, max: usize) -> usize {
        let mut n = 0;
        while n < max {
            let Some(packet) = self.take_from_wire(other(side)) else {
                break;
            };
            self.trace.push(Trace::Read(side, packet.clone()));
            // Errors are acted on by the connection and show in its events.
            let _ = match side {
                Side::Client => self.client.handle_packet(self.now, packet),
                Side::Server => self.server.handle_packet(self.now, packet),
            };
            self.process_events();
            n += 1;
        }
        n
    }

    /// Takes the packets `side` writes (and any already on the wire from
    /// it) without letting the other side read them.
    pub fn intercept(&mut self, side: Side) -> Vec<Packet> {
        self.write(side, usize::MAX);
        let mut out = Vec::new();
        let (version, wire) = match side {
            Side::Client => (self.client.version(), &mut self.c2s),
            Side::Server => (self.server.version(), &mut self.s2c),
        };
        while let Some(p) = Packet::decode(wire, version, &mqtt_codec::DecodeLimits::UNLIMITED)
            .unwrap_or_else(|e| panic!("{side:?} wrote an undecodable packet: {e}"))
        {
            out.push(p);
        }
        out
    }

    /// Moves packets both ways until neither side has anything to send;
    /// then, if one side has closed, the other sees its transport close.
    pub fn drive(&mut self) {
        self.process_events();
        loop {
            let moved = self.write(Side::Client, usize::MAX)
                + self.write(Side::Server, usize::MAX)
                + self.read(Side::Server, usize::MAX)
                + self.read(Side::Client, usize::MAX);
            if moved == 0 {
                break;
            }
        }
        if self.server.is_closed() && !self.client.is_closed() {
            self.client.connection_lost();
        }
        if self.client.is_closed() && !self.server.is_closed() {
            self.server.connection_lost(self.now);
        }
        self.process_events();
    }

    /// Whether both sides are quiet: nothing on the wire, nothing to write.
    pub fn wire_is_empty(&self) -> bool {
        self.c2s.is_empty() && self.s2c.is_empty()
    }

    // ---- time and connections --------------------------------------------

    /// Moves time forward and lets both sides act on their timers.
    pub fn advance(&mut self, by: Duration) {
        self.now += by;
        self.client.handle_timeout(self.now);
        self.server.handle_timeout(self.now);
        self.process_events();
    }

    /// The TCP connection breaks: bytes in flight are lost and both sides
    /// learn of it.
    pub fn break_connection(&mut self) {
        self.trace.push(Trace::Broken);
        self.c2s.clear();
        self.s2c.clear();
        self.unwritten = Default::default();
        self.process_events();
        self.client.connection_lost();
        self.server.connection_lost(self.now);
        self.process_events();
    }

    /// A new connection: a new client with the session the last one kept,
    /// and a new server connection. Nothing is sent yet.
    pub fn reconnect(&mut self, clean_start: bool) {
        if !self.client.is_closed() || !self.server.is_closed() {
            self.break_connection();
        }
        self.c2s.clear();
        self.s2c.clear();
        self.unwritten = Default::default();
        let mut connect = self.setup.connect.clone();
        connect.clean_start = clean_start;
        connect.client_id = self.client_id.clone();
        let session = self.client_session.take();
        self.client = ClientConnection::new(self.setup.client.clone(), connect, session, self.now);
        self.server = ServerConnection::new(self.setup.server.clone(), self.now);
        self.connections += 1;
    }

    // ---- the applications -------------------------------------------------

    /// Drains both sides' events, answering the server's by the policy.
    pub fn process_events(&mut self) {
        loop {
            let mut any = false;
            while let Some(ev) = self.server.poll_event() {
                self.on_server_event(ev);
                any = true;
            }
            while let Some(ev) = self.client.poll_event() {
                self.on_client_event(ev);
                any = true;
            }
            if !any {
                break;
            }
        }
    }

    fn on_server_event(&mut self, ev: ServerEvent) {
        match &ev {
            ServerEvent::Connect {
                connect,
                needs_client_id,
            } if self.policy.auto_accept => {
                let id = if *needs_client_id {
                    self.policy.assigned_client_id.clone()
                } else {
                    connect.client_id.clone()
                };
                let accept = Accept {
                    session: self.store.remove(&id),
                    assigned_client_id: needs_client_id.then_some(id),
                    properties: Default::default(),
                };
                self.server.accept(self.now, accept);
            }
            ServerEvent::Publish { message, packet_id } => {
                if let (Some(id), false) = (packet_id, self.policy.manual_ack) {
                    assert!(self.server.acknowledge(*id, self.policy.ack_reason));
                }
                if self.policy.route {
                    self.route(message);
                }
            }
            ServerEvent::Subscribe(s) if self.policy.auto_subscribe => {
                let codes = s
                    .subscriptions
                    .iter()
                    .map(|sub| {
                        if self.policy.refused_filters.contains(&sub.filter) {
                            ReasonCode::NotAuthorized
                        } else {
                            granted(sub.options.qos)
                        }
                    })
                    .collect();
                assert!(self.server.acknowledge_subscribe(s.packet_id, codes));
            }
            ServerEvent::Closed(c) => {
                // A session whose expiry is already reached (interval 0)
                // ends with the connection; any other is kept.
                let ended = c.session_expires_at.is_some_and(|at| at <= self.now);
                match &c.session {
                    Some(s) if !ended => {
                        self.store.insert(s.client_id.clone(), s.clone());
                    }
                    Some(s) => {
                        self.store.remove(&s.client_id);
                    }
                    None => {}
                }
            }
            _ => {}
        }
        self.server_events.push(ev);
    }

    fn on_client_event(&mut self, ev: ClientEvent) {
        match &ev {
            ClientEvent::Connected(ack) => {
                if let Some(id) = &ack.properties.assigned_client_identifier {
                    self.client_id = id.clone();
                }
            }
            ClientEvent::Closed { session, .. } => self.client_session = Some(session.clone()),
            _ => {}
        }
        self.client_events.push(ev);
    }

    /// Delivers `message` to the client if one of its subscriptions matches,
    /// at the lesser of the two QoS.
    fn route(&mut self, message: &Message) {
        let subscriptions = match self.server.session() {
            Some(s) => &s.subscriptions,
            None => match self.store.get(&self.client_id) {
                Some(s) => &s.subscriptions,
                None => return,
            },
        };
        let granted = subscriptions
            .iter()
            .filter(|(filter, _)| topic_matches(filter, &message.topic))
            .map(|(_, r)| r.options.qos)
            .max();
        if let Some(qos) = granted {
            let _ = self.deliver(Delivery::new(Arc::new(message.clone()), qos));
        }
    }

    /// What the broker does with a message for this client: hands it to the
    /// live connection, or queues it in the stored session while the client
    /// is away.
    pub fn deliver(&mut self, delivery: Delivery) -> Result<(), DropReason> {
        if self.server.session().is_some() && !self.server.is_closed() {
            return self.server.deliver(delivery);
        }
        match self.store.get_mut(&self.client_id) {
            Some(s) => s.enqueue(delivery, &self.setup.server.queue),
            None => Err(DropReason::QueueFull),
        }
    }

    /// Delivers a new message from the server side on `topic`.
    pub fn server_publish(
        &mut self,
        topic: &str,
        payload: &str,
        qos: QoS,
    ) -> Result<(), DropReason> {
        self.deliver(Delivery::new(Arc::new(message(topic, payload, qos)), qos))
    }

    /// The client publishes a message.
    pub fn client_publish(
        &mut self,
        topic: &str,
        payload: &str,
        qos: QoS,
    ) -> Result<(), DropReason> {
        self.client.publish(message(topic, payload, qos))
    }

    /// The client subscribes to `filters` and the pair is driven.
    pub fn subscribe(&mut self, filters: &[(&str, QoS)]) -> PacketId {
        let subs = filters
            .iter()
            .map(|(f, q)| Subscription {
                filter: mqtt(f),
                options: SubscriptionOptions::qos(*q),
            })
            .collect();
        let id = self
            .client
            .subscribe(subs, SubscribeProperties::default())
            .unwrap();
        self.drive();
        id
    }

    // ---- looking at what happened ------------------------------------------

    /// Packets `side` wrote.
    pub fn sent_by(&self, side: Side) -> impl Iterator<Item = &Packet> {
        self.sent
            .iter()
            .filter(move |(s, _)| *s == side)
            .map(|(_, p)| p)
    }

    /// PUBLISH packets `side` wrote.
    pub fn publishes_sent_by(&self, side: Side) -> Vec<&Publish> {
        self.sent_by(side)
            .filter_map(|p| match p {
                Packet::Publish(p) => Some(p),
                _ => None,
            })
            .collect()
    }

    /// Messages the server application received.
    pub fn server_messages(&self) -> Vec<&Message> {
        self.server_events
            .iter()
            .filter_map(|e| match e {
                ServerEvent::Publish { message, .. } => Some(&**message),
                _ => None,
            })
            .collect()
    }

    /// Payloads the server application received, as strings.
    pub fn server_payloads(&self) -> Vec<String> {
        self.server_messages()
            .iter()
            .map(|m| text(&m.payload))
            .collect()
    }

    /// Messages the client application received.
    pub fn client_messages(&self) -> Vec<&Message> {
        self.client_events
            .iter()
            .filter_map(|e| match e {
                ClientEvent::Message(m) => Some(m),
                _ => None,
            })
            .collect()
    }

    /// Payloads the client application received, as strings.
    pub fn client_payloads(&self) -> Vec<String> {
        self.client_messages()
            .iter()
            .map(|m| text(&m.payload))
            .collect()
    }

    /// Outcomes of the client's QoS 1/2 publications.
    pub fn published(&self) -> Vec<(PacketId, ReasonCode)> {
        self.client_events
            .iter()
            .filter_map(|e| match e {
                ClientEvent::Published {
                    packet_id,
                    reason_code,
                    ..
                } => Some((*packet_id, *reason_code)),
                _ => None,
            })
            .collect()
    }

    /// The CONNACK of the latest connection.
    pub fn connack(&self) -> &mqtt_codec::ConnAck {
        self.client_events
            .iter()
            .rev()
            .find_map(|e| match e {
                ClientEvent::Connected(ack) => Some(ack),
                _ => None,
            })
            .expect("no CONNACK accepted")
    }

    /// The last `Closed` of the server side.
    pub fn server_closed(&self) -> &Closed {
        self.server_events
            .iter()
            .rev()
            .find_map(|e| match e {
                ServerEvent::Closed(c) => Some(&**c),
                _ => None,
            })
            .expect("server connection not closed")
    }

    /// The reason of the client's last `Closed`.
    pub fn client_closed(&self) -> &ClientCloseReason {
        self.client_events
            .iter()
            .rev()
            .find_map(|e| match e {
                ClientEvent::Closed { reason, .. } => Some(reason),
                _ => None,
            })
            .expect("client connection not closed")
    }
}

fn other(side: Side) -> Side {
    match side {
        Side::Client => Side::Server,
        Side::Server => Side::Client,
    }
}

/// The SUBACK code granting `qos`.
pub fn granted(qos: QoS) -> ReasonCode {
    match qos {
        QoS::AtMostOnce => ReasonCode::GRANTED_QOS_0,
        QoS::AtLeastOnce => ReasonCode::GrantedQoS1,
        QoS::ExactlyOnce => ReasonCode::GrantedQoS2,
    }
}

/// A topic filter match, with `+` and `#`, ignoring `$` rules.
pub fn topic_matches(filter: &str, topic: &str) -> bool {
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// An `MqttString` from any `&str`.
pub fn mqtt(s: &str) -> MqttString {
    MqttString::from_bytes(Bytes::copy_from_slice(s.as_bytes())).unwrap()
}

/// A payload as text.
pub fn text(b: &Bytes) -> String {
    String::from_utf8(b.to_vec()).unwrap()
}

/// A message without properties.
pub fn message(topic: &str, payload: &str, qos: QoS) -> Message {
    Message::new(
        mqtt(topic),
        Bytes::copy_from_slice(payload.as_bytes()),
        qos,
        false,
    )
}

/// A packet identifier.
pub fn pid(id: u16) -> PacketId {
    PacketId::new(id).unwrap()
}

/// A PUBLISH as a peer would write it.
pub fn raw_publish(topic: &str, payload: &str, qos: QoS, id: Option<u16>) -> Publish {
    let mut p = Publish::new(mqtt(topic), Bytes::copy_from_slice(payload.as_bytes()));
    p.qos = qos;
    p.packet_id = id.map(pid);
    p
}

/// Seconds.
pub fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}
